// The 5-tuple that identifies a flow, laid out for hashing and memcmp (no padding holes).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dataplane/ip_address.h"

namespace tandem {

struct flow_key {
  ip_address src;       // client address
  ip_address dst;       // VIP
  uint16_t src_port = 0;  // network byte order
  uint16_t dst_port = 0;  // network byte order
  uint8_t proto = 0;      // IPPROTO_TCP or IPPROTO_UDP
  uint8_t pad[3] = {};    // always zero so memcmp/hash see a canonical key

  friend bool operator==(const flow_key& a, const flow_key& b) {
    return std::memcmp(&a, &b, sizeof(flow_key)) == 0;
  }
};
static_assert(sizeof(flow_key) == 40);

}  // namespace tandem

namespace tandem {

// What a flow-table entry keeps to identify its flow: the 5-tuple with the VIP address and the
// protocol replaced by the VIP's stable 16-bit id (generation::vips), so an entry fits in
// 48 bytes. The id names one (address, protocol) for the daemon's life, so the stored key is
// as exact as the 5-tuple.
struct stored_flow_key {
  ip_address client;
  uint16_t client_port = 0;  // network byte order
  uint16_t vip_port = 0;     // network byte order
  uint16_t vip_id = 0;
  uint16_t pad = 0;          // always zero: compared as three 64-bit words

  friend bool operator==(const stored_flow_key& a, const stored_flow_key& b) {
    return std::memcmp(&a, &b, sizeof(stored_flow_key)) == 0;
  }
};
static_assert(sizeof(stored_flow_key) == 24);

// The stored key as three 64-bit words (client address low and high, then ports, VIP id and
// pad): the worker builds them in registers from the frame and hashes them without reading its
// own stores back (a 16-byte load of an address written by narrower stores stalls forwarding).
struct stored_key_words {
  uint64_t client_lo;
  uint64_t client_hi;
  uint64_t tail;
};
static_assert(sizeof(stored_key_words) == sizeof(stored_flow_key));

// Ports, VIP id and zero pad as the key's third word.
inline uint64_t key_tail(uint16_t client_port, uint16_t vip_port, uint16_t vip_id) {
  return uint64_t{client_port} | uint64_t{vip_port} << 16 | uint64_t{vip_id} << 32;
}

inline stored_key_words key_words(const ip_address& client, uint16_t client_port,
                                  uint16_t vip_port, uint16_t vip_id) {
  stored_key_words w;
  std::memcpy(&w.client_lo, client.bytes, 8);
  std::memcpy(&w.client_hi, client.bytes + 8, 8);
  w.tail = key_tail(client_port, vip_port, vip_id);
  return w;
}

// An IPv4 client (network-order address): the IPv4-mapped form, as ip_address stores it.
inline stored_key_words key_words_v4(uint32_t client_be, uint16_t client_port, uint16_t vip_port,
                                     uint16_t vip_id) {
  static_assert(std::endian::native == std::endian::little);
  return stored_key_words{0, uint64_t{0xffff0000u} | uint64_t{client_be} << 32,
                          key_tail(client_port, vip_port, vip_id)};
}

inline stored_flow_key to_stored_key(const stored_key_words& w) {
  static_assert(offsetof(stored_flow_key, client) == 0 &&
                offsetof(stored_flow_key, client_port) == 16 &&
                offsetof(stored_flow_key, vip_port) == 18 && offsetof(stored_flow_key, vip_id) == 20);
  stored_flow_key s;
  std::memcpy(reinterpret_cast<unsigned char*>(&s), &w, sizeof w);
  return s;
}

inline stored_flow_key make_stored_key(const flow_key& k, uint16_t vip_id) {
  return to_stored_key(key_words(k.src, k.src_port, k.dst_port, vip_id));
}

}  // namespace tandem
