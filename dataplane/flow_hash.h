// Hashes used on the hot path. Different seeds keep the Maglev choice and the canary cohort
// independent of one another; the flow table's bucket hash is keyed (flow_table_secret).
#pragma once

#include <rte_hash_crc.h>

#include <cstdint>
#include <cstring>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

#include "dataplane/flow_key.h"

namespace tandem {

inline constexpr uint32_t backend_choice_seed = 0x85ebca6bu;
inline constexpr uint32_t cohort_seed = 0xc2b2ae35u;

// The flow table's bucket hash and IPv6 client digest are keyed with a secret chosen when the
// process starts. CRC-32C is linear: anyone can compute many keys with the CRC of a victim's
// flow, fill its two buckets and so evict it once it idles (after a switch its next packet
// would be balanced to the other colour). Keys that share a keyed pair-multiply-shift hash
// cannot be computed without the secret: two given keys collide with probability about 2^-31.
struct flow_table_secret {
  uint64_t bucket[5];  // flow_table::hash
  uint64_t digest[5];  // flow_table's IPv6 client digest
};
// Expands a seed into a secret (splitmix64).
flow_table_secret make_flow_table_secret(uint64_t seed);
// This process's secret: from the environment variable TANDEM_FLOW_HASH_SEED (a number, for
// reproducible runs: tests, fuzzing, benchmarks), else random. Fixed before main() runs.
extern const flow_table_secret process_flow_table_secret;

// Thorup's pair-multiply-shift over the four 32-bit halves of two words: universal onto the
// 32 bits returned (the high half of the sum).
inline uint32_t pair_multiply_shift(const uint64_t (&a)[5], uint64_t w0, uint64_t w1) {
  const uint64_t h = a[0] + (a[1] + (w0 >> 32)) * (a[2] + (w0 & 0xffffffffu)) +
                     (a[3] + (w1 >> 32)) * (a[4] + (w1 & 0xffffffffu));
  return static_cast<uint32_t>(h >> 32);
}

// splitmix64's finaliser: a bijection of 64-bit words in which every input bit flips about half
// of the output bits.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Final mix so that CRC's linearity does not leak into modulo/multiply-shift reductions.
inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

// CRC32-C over whole 64-bit words: the same value as rte_hash_crc(), without its per-word check
// of which CRC instruction to use (a load and a branch in the middle of the per-packet hash).
template <size_t Bytes>
inline uint32_t crc32c_words(const void* data, uint32_t seed) {
  static_assert(Bytes % 8 == 0);
#if defined(__SSE4_2__)
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t crc = seed;
  for (size_t i = 0; i < Bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    crc = _mm_crc32_u64(crc, w);
  }
  return static_cast<uint32_t>(crc);
#else
  return rte_hash_crc(data, Bytes, seed);
#endif
}

inline uint32_t hash_flow_key(const flow_key& k, uint32_t seed) {
  return mix32(crc32c_words<sizeof k>(&k, seed));
}

// Cohort of a client for canary splits: depends on the source address only, so every
// connection of one client lands in the same colour.
inline uint32_t hash_client(const ip_address& src) {
  return mix32(rte_hash_crc(src.bytes, sizeof src.bytes, cohort_seed));
}

}  // namespace tandem
