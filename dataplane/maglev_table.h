// Weighted Maglev consistent hashing (Eisenbud et al., NSDI'16, section 3.4) over stable
// backend ids. Built by the control thread off the hot path; immutable afterwards, so
// workers read it without synchronisation.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dataplane/result.h"

namespace tandem {

inline constexpr uint32_t default_maglev_size = 65537;
inline constexpr uint32_t invalid_backend = 0xffffffffu;

class maglev_table {
 public:
  struct member {
    uint32_t backend_id = invalid_backend;
    uint32_t weight = 1;    // 0 = not in the table (drained)
    uint64_t identity = 0;  // stable hash of the backend (e.g. of its address): drives the permutation
  };

  maglev_table() = default;

  // size must be prime and at least the number of members with weight > 0 (each needs an
  // entry); errors name the violated rule. The operator rule of >= 100 entries per backend
  // (<= 1 % imbalance) belongs to the configuration check (control/config.cpp), not here.
  // The table is a function of the members' (identity, backend_id, weight) and size alone:
  // not of their order, and not of the version (flows keep their backend over an upgrade).
  static result<maglev_table> build(std::span<const member> members,
                                    uint32_t size = default_maglev_size);

  // Backend id for a flow hash, or invalid_backend when the table is empty.
  // Multiply-shift maps the 32-bit hash onto [0, size) without a division.
  uint32_t lookup(uint32_t hash) const {
    if (entries_.empty()) return invalid_backend;
    return entries_[slot_of(hash)];
  }

  // Fetches the entry lookup(hash) will read: a new flow's lookup, 256 KiB into a table that a
  // SYN flood's victim searches keep evicting from L2, cost ~7 % of SYN-only time.
  void prefetch(uint32_t hash) const {
    if (!entries_.empty()) __builtin_prefetch(&entries_[slot_of(hash)]);
  }

  bool empty() const { return entries_.empty(); }
  uint32_t size() const { return static_cast<uint32_t>(entries_.size()); }
  const std::vector<uint32_t>& entries() const { return entries_; }

 private:
  uint32_t slot_of(uint32_t hash) const {
    return static_cast<uint32_t>((static_cast<uint64_t>(hash) * entries_.size()) >> 32);
  }

  std::vector<uint32_t> entries_;
};

bool is_prime(uint32_t n);

}  // namespace tandem
