// Counters owned and written by one worker, read by the control thread without stopping it.
// Writes are relaxed atomic stores of the worker's own value (plain moves on x86), so readers
// see whole values; totals are sums over workers.
#pragma once

#include <array>
#include <cstdint>

#include "dataplane/generation.h"
#include "dataplane/packet_parser.h"

namespace tandem {

inline void bump(uint64_t& c, uint64_t n = 1) { __atomic_store_n(&c, c + n, __ATOMIC_RELAXED); }
inline void bump(int64_t& c, int64_t n) { __atomic_store_n(&c, c + n, __ATOMIC_RELAXED); }
template <typename T>
inline T read_counter(const T& c) { return __atomic_load_n(&c, __ATOMIC_RELAXED); }

struct service_colour_counters {
  int64_t live_flows = 0;     // entries in the flow table now
  uint64_t new_flows = 0;     // flows created
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct alignas(64) worker_counters {
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t loops = 0;
  std::array<uint64_t, static_cast<size_t>(drop_reason::count_)> drops{};
  uint64_t arp_replies = 0;
  uint64_t nd_replies = 0;
  uint64_t midflow_pickups = 0;   // non-SYN TCP without an entry: pinned to the current choice
  uint64_t port_reuse = 0;        // SYN on a closing/closed or other-colour entry: new flow
  uint64_t rehashed_down = 0;     // flows moved off a backend marked down (the one exception)
  uint64_t drain_expired = 0;     // flows removed at a drain deadline (expire policy)
  uint64_t drain_resets = 0;      // flows reset at a drain deadline (reset policy)
  uint64_t evictions = 0;
  uint64_t failed_inserts = 0;
  uint64_t expired = 0;
  uint32_t generation_seen = 0;   // number of the generation used in the last loop
  // [service id][colour]
  std::array<std::array<service_colour_counters, 2>, max_services> services{};
};

// Per-backend flow counts: [backend id]. Separate from worker_counters to keep it compact.
struct backend_counters {
  std::array<int64_t, max_backends> live_flows{};
  std::array<uint64_t, max_backends> packets{};
};

}  // namespace tandem
