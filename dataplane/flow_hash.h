// Hashes used on the hot path. Different seeds keep the flow-table bucket choice, the Maglev
// choice and the canary cohort independent of one another.
#pragma once

#include <rte_hash_crc.h>

#include <cstdint>

#include "dataplane/flow_key.h"

namespace tandem {

inline constexpr uint32_t flow_table_seed = 0x9e3779b9u;
inline constexpr uint32_t backend_choice_seed = 0x85ebca6bu;
inline constexpr uint32_t cohort_seed = 0xc2b2ae35u;

// Final mix so that CRC's linearity does not leak into modulo/multiply-shift reductions.
inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

inline uint32_t hash_flow_key(const flow_key& k, uint32_t seed) {
  return mix32(rte_hash_crc(&k, sizeof k, seed));
}

// A flow-table entry's own key (drain spread offsets): stable for the life of the flow.
inline uint32_t hash_flow_key(const stored_flow_key& k, uint32_t seed) {
  return mix32(rte_hash_crc(&k, sizeof k, seed));
}

// Cohort of a client for canary splits: depends on the source address only, so every
// connection of one client lands in the same colour.
inline uint32_t hash_client(const ip_address& src) {
  return mix32(rte_hash_crc(src.bytes, sizeof src.bytes, cohort_seed));
}

}  // namespace tandem
