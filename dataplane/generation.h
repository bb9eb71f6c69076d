// One immutable table generation: every service, both pools' Maglev tables, active colours,
// canary splits, segments, the backend registry and the dataplane settings, with a number.
// The control thread builds it, publishes it through generation_publisher, and frees it after
// an RCU grace period. Workers only read it.
#pragma once

#include <rte_ether.h>

#include <array>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/ip_address.h"
#include "dataplane/maglev_table.h"

namespace tandem {

inline constexpr uint32_t max_services = 1024;  // service ids are < max_services
inline constexpr uint32_t max_backends = 1u << 16;  // backend ids are < max_backends

enum class forwarding_mode : uint8_t { l2 = 0, ipip, gue };
const char* forwarding_mode_name(forwarding_mode m);

// Health/administrative state of one backend. Only `up == false` may move pinned flows.
struct backend_info {
  ip_address address;
  rte_ether_addr mac{};     // for l2 mode
  uint16_t service_id = 0;
  colour pool = colour::blue;
  uint8_t in_registry = 0;  // 0 = unused id
  uint8_t up = 1;           // health: 0 = down, pinned flows are re-hashed in their colour
};

// What happens to the flows of a draining colour when the drain deadline passes.
enum class drain_action : uint8_t { keep = 0, expire, reset };

// Flows of a (service, colour) created in a generation < before_generation are flushed with
// `action`, each at start_ms + (flow hash % spread_ms): the drain deadline, spread.
struct colour_flush {
  uint32_t before_generation = 0;  // 0 = no flush
  uint32_t start_ms = 0;
  uint32_t spread_ms = 0;
  drain_action action = drain_action::keep;
};

struct segment_rule {
  ip_prefix prefix;
  colour to = colour::blue;
};

struct service_entry {
  uint16_t id = 0;
  std::string name;
  ip_address vip;
  uint8_t proto = 6;   // IPPROTO_TCP / IPPROTO_UDP
  uint16_t port = 0;   // host order; 0 = any port
  forwarding_mode mode = forwarding_mode::l2;
  colour active = colour::blue;
  // Share of new flows (by client cohort) that go to the other colour, in 1/10000 (0..10000).
  uint32_t canary_basis_points = 0;
  std::vector<segment_rule> segments;  // first match wins; checked before the canary
  // Indexed by colour; never null. Shared with the control plane's table cache and with other
  // generations, so a change that leaves a pool alone does not rebuild or copy its table.
  std::array<std::shared_ptr<const maglev_table>, 2> pools{std::make_shared<const maglev_table>(),
                                                          std::make_shared<const maglev_table>()};
  std::array<colour_flush, 2> flush;   // indexed by colour
};

// A VIP address and protocol. Flow entries store its id (generation::vips) instead of them.
struct vip_key {
  ip_address address;
  uint8_t proto = 6;
};
inline constexpr uint32_t max_vips = 1u << 16;  // vip ids are < max_vips

// A listener address that maps to a service: the service's own VIP:port, or a preview
// listener (always the idle colour).
struct listener {
  ip_address vip;
  uint8_t proto = 6;
  uint16_t port = 0;  // host order; 0 = any
  uint16_t service_index = 0;  // index into generation::services
  uint8_t preview = 0;         // 1 = new flows go to the service's idle colour
  uint16_t vip_id = 0;         // index into generation::vips of (vip, proto)
};

struct dataplane_settings {
  flow_timeouts timeouts;
  ip_address tunnel_source_v4;     // outer source for ipip/gue to IPv4 backends
  ip_address tunnel_source_v6;     // outer source for ipip/gue to IPv6 backends
  rte_ether_addr nexthop_mac{};    // destination MAC of encapsulated packets
  uint16_t gue_port = 6080;        // outer UDP destination port for gue
};

struct generation {
  uint32_t number = 0;
  dataplane_settings settings;
  std::vector<service_entry> services;
  std::vector<backend_info> backends;  // indexed by backend id (size <= max_backends)
  // Indexed by vip id: every (VIP, protocol) the daemon has served. Ids are never reused, so a
  // flow entry's id names the same VIP in every generation.
  std::vector<vip_key> vips;

  // Listener lookup: exact (vip, proto, port) first, then (vip, proto, 0).
  // Open-addressed, power-of-two sized, built by finalize().
  std::vector<listener> listeners;
  std::vector<int32_t> listener_slots;  // index into listeners or -1
  uint32_t listener_mask = 0;
  // service id -> index into services, or -1 (for flows whose packets are not in hand).
  std::vector<int16_t> service_index_by_id;

  // Builds the listener index and checks consistency. Call once before publishing.
  void finalize();
  const listener* find_listener(const ip_address& vip, uint8_t proto, uint16_t port_be) const;
  // True when `addr` is the address of some listener (for ARP/ND answers).
  bool is_vip(const ip_address& addr) const;
  // The 5-tuple of a flow-table entry's key (VIP address and protocol from `vips`).
  flow_key full_key(const stored_flow_key& k) const;
  const service_entry* service_by_id(uint16_t id) const {
    if (id >= service_index_by_id.size()) return nullptr;
    int16_t i = service_index_by_id[id];
    return i < 0 ? nullptr : &services[static_cast<size_t>(i)];
  }
};

// The colour a new flow from `client` takes: preview listeners go to the idle colour; then the
// first matching segment; then the canary cohort (hash of the client address); else active.
colour choose_colour(const service_entry& s, const listener& l, const ip_address& client);

}  // namespace tandem
