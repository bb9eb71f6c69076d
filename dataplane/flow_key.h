// The 5-tuple that identifies a flow, laid out for hashing and memcmp (no padding holes).
#pragma once

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

inline stored_flow_key make_stored_key(const flow_key& k, uint16_t vip_id) {
  stored_flow_key s;
  s.client = k.src;
  // Ports, id and pad as one 64-bit store: separate 16-bit stores followed by the table's 64-bit
  // key compare/hash load stall store forwarding (measured: ~4 % of the worker's time).
  const uint64_t tail = uint64_t{k.src_port} | uint64_t{k.dst_port} << 16 | uint64_t{vip_id} << 32;
  std::memcpy(reinterpret_cast<unsigned char*>(&s) + offsetof(stored_flow_key, client_port), &tail,
              sizeof tail);
  return s;
}

}  // namespace tandem
