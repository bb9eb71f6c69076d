// Coarse monotonic milliseconds shared by workers and the control thread, from the TSC.
// 32 bits of milliseconds wrap after 49 days; every comparison uses wrap-safe differences.
#pragma once

#include <rte_cycles.h>

#include <cstdint>

namespace tandem {

class ms_clock {
 public:
  ms_clock() : cycles_per_ms_(rte_get_tsc_hz() / 1000), start_(rte_get_tsc_cycles()) {}
  uint32_t now() const {
    return static_cast<uint32_t>((rte_get_tsc_cycles() - start_) / cycles_per_ms_);
  }

 private:
  uint64_t cycles_per_ms_;
  uint64_t start_;
};

// a - b in milliseconds, correct across one wrap of the 32-bit clock.
inline int32_t ms_since(uint32_t now, uint32_t then) { return static_cast<int32_t>(now - then); }

}  // namespace tandem
