#include "dataplane/generation.h"

#include <rte_hash_crc.h>

#include "dataplane/flow_hash.h"

namespace tandem {
namespace {

uint32_t listener_hash(const ip_address& vip, uint8_t proto, uint16_t port) {
  uint32_t h = rte_hash_crc(vip.bytes, sizeof vip.bytes, 0x5bd1e995u);
  h = rte_hash_crc_4byte(static_cast<uint32_t>(proto) << 16 | port, h);
  return mix32(h);
}

}  // namespace

const char* forwarding_mode_name(forwarding_mode m) {
  switch (m) {
    case forwarding_mode::l2: return "l2";
    case forwarding_mode::ipip: return "ipip";
    case forwarding_mode::gue: return "gue";
  }
  return "unknown";
}

void generation::finalize() {
  uint32_t slots = 16;
  while (slots < listeners.size() * 4) slots <<= 1;  // load <= 25%: short probes
  listener_slots.assign(slots, -1);
  listener_mask = slots - 1;
  for (size_t i = 0; i < listeners.size(); ++i) {
    const listener& l = listeners[i];
    uint32_t pos = listener_hash(l.vip, l.proto, l.port) & listener_mask;
    while (listener_slots[pos] >= 0) pos = (pos + 1) & listener_mask;
    listener_slots[pos] = static_cast<int32_t>(i);
  }
  service_index_by_id.assign(max_services, -1);
  for (size_t i = 0; i < services.size(); ++i)
    if (services[i].id < max_services) service_index_by_id[services[i].id] = static_cast<int16_t>(i);
}

const listener* generation::find_listener(const ip_address& vip, uint8_t proto,
                                          uint16_t port_be) const {
  if (listener_slots.empty()) return nullptr;
  const uint16_t port = static_cast<uint16_t>(port_be >> 8 | port_be << 8);
  for (int pass = 0; pass < 2; ++pass) {
    const uint16_t want = pass == 0 ? port : 0;
    uint32_t pos = listener_hash(vip, proto, want) & listener_mask;
    for (int32_t idx; (idx = listener_slots[pos]) >= 0; pos = (pos + 1) & listener_mask) {
      const listener& l = listeners[static_cast<size_t>(idx)];
      if (l.port == want && l.proto == proto && l.vip == vip) return &l;
    }
  }
  return nullptr;
}

bool generation::is_vip(const ip_address& addr) const {
  for (const listener& l : listeners)
    if (l.vip == addr) return true;
  return false;
}

flow_key generation::full_key(const stored_flow_key& k) const {
  flow_key f;
  f.src = k.client;
  f.src_port = k.client_port;
  f.dst_port = k.vip_port;
  if (k.vip_id < vips.size()) {
    f.dst = vips[k.vip_id].address;
    f.proto = vips[k.vip_id].proto;
  }
  return f;
}

colour choose_colour(const service_entry& s, const listener& l, const ip_address& client) {
  if (l.preview) return other(s.active);
  for (const segment_rule& r : s.segments)
    if (client.in_prefix(r.prefix.address, r.prefix.length)) return r.to;
  if (s.canary_basis_points != 0 && hash_client(client) % 10000u < s.canary_basis_points)
    return other(s.active);
  return s.active;
}

}  // namespace tandem
