// The 5-tuple that identifies a flow, laid out for hashing and memcmp (no padding holes).
#pragma once

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
