// Stable backend ids. A flow records a backend id, so an id must keep naming the same backend
// (service, pool colour, address) for as long as any flow may refer to it, even after the
// backend left every pool. Ids are handed out once and kept for the daemon's lifetime.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/ip_address.h"
#include "dataplane/result.h"

namespace tandem {

class backend_registry {
 public:
  struct slot {
    std::string service;
    colour pool = colour::blue;
    ip_address address;
  };

  // The id of (service, pool, address), allocating one on first sight.
  result<uint32_t> id_for(const std::string& service, colour pool, const ip_address& address);
  std::optional<uint32_t> find(const std::string& service, colour pool,
                               const ip_address& address) const;
  const std::vector<slot>& slots() const { return slots_; }

 private:
  // A backend within its service: pool colour and address bytes. Hashed rather than ordered:
  // a switch looks up every backend of every pool (4000 lookups for 2 x 2 x 1000), and the
  // ordered map's string compares were the largest part of the control side of a switch.
  struct member_key {
    std::array<uint8_t, 17> bytes{};
    friend bool operator==(const member_key&, const member_key&) = default;
  };
  struct member_hash {
    size_t operator()(const member_key& k) const noexcept {
      uint64_t lo, hi;
      std::memcpy(&lo, k.bytes.data() + 1, 8);
      std::memcpy(&hi, k.bytes.data() + 9, 8);
      // IPv4-mapped addresses differ only in the high word: multiply so every byte of it moves
      // the bucket bits.
      const uint64_t h = (lo ^ (hi * 0x9e3779b97f4a7c15ull) ^ k.bytes[0]) * 0xc2b2ae3d27d4eb4full;
      return static_cast<size_t>(h ^ (h >> 29));
    }
  };
  static member_key key_of(colour pool, const ip_address& address);

  std::unordered_map<std::string, std::unordered_map<member_key, uint32_t, member_hash>> ids_;
  std::vector<slot> slots_;
};

}  // namespace tandem
