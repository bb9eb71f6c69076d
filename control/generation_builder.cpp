#include "control/generation_builder.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

namespace tandem {
namespace {

// Stable across processes and rebuilds: every worker and every generation agree on a
// backend's place in the Maglev permutation.
uint64_t identity_of(const ip_address& a) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (uint8_t b : a.bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

rte_ether_addr to_ether(const std::optional<config::mac_address>& m) {
  rte_ether_addr e{};
  if (m) std::memcpy(e.addr_bytes, m->bytes, 6);
  return e;
}

bool same_members(const std::vector<maglev_table::member>& a,
                  const std::vector<maglev_table::member>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
           return x.backend_id == y.backend_id && x.weight == y.weight && x.identity == y.identity;
         });
}

}  // namespace

result<uint16_t> runtime_state::service_id(const std::string& name) {
  if (auto it = service_ids.find(name); it != service_ids.end()) return it->second;
  // Reuse the lowest free id so services can come and go without exhausting ids.
  std::vector<bool> used(max_services, false);
  for (const auto& [n, id] : service_ids) used[id] = true;
  for (uint16_t id = 0; id < max_services; ++id) {
    if (!used[id]) {
      service_ids.emplace(name, id);
      return id;
    }
  }
  return make_error("too many services (at most " + std::to_string(max_services) + ")");
}

result<uint16_t> runtime_state::vip_id(const ip_address& vip, uint8_t proto) {
  std::pair<std::array<uint8_t, 16>, uint8_t> key{{}, proto};
  std::memcpy(key.first.data(), vip.bytes, 16);
  if (auto it = vip_ids.find(key); it != vip_ids.end()) return it->second;
  // Flow entries may hold an id long after its VIP left the config, so ids are never reused.
  if (vips.size() >= max_vips)
    return make_error("too many distinct VIPs since tandemd started (at most " +
                      std::to_string(max_vips) + "); restart tandemd");
  const auto id = static_cast<uint16_t>(vips.size());
  vips.push_back(vip_key{vip, proto});
  vip_ids.emplace(key, id);
  return id;
}

result<std::unique_ptr<generation>> build_generation(const config::daemon_config& cfg,
                                                     runtime_state& state) {
  auto g = std::make_unique<generation>();
  g->number = state.next_generation;
  dataplane_settings& s = g->settings;
  s.timeouts = cfg.timeouts;
  if (cfg.tunnel.source_v4) s.tunnel_source_v4 = *cfg.tunnel.source_v4;
  if (cfg.tunnel.source_v6) s.tunnel_source_v6 = *cfg.tunnel.source_v6;
  s.nexthop_mac = to_ether(cfg.tunnel.nexthop_mac);
  s.gue_port = cfg.tunnel.gue_port;

  // Forget ids of services that no longer exist, so their ids can be reused later.
  for (auto it = state.service_ids.begin(); it != state.service_ids.end();) {
    bool present = false;
    for (const auto& svc : cfg.services) present |= svc.name == it->first;
    it = present ? std::next(it) : state.service_ids.erase(it);
  }
  for (auto it = state.tables.begin(); it != state.tables.end();) {
    bool present = false;
    for (const auto& svc : cfg.services) present |= svc.name == it->first.first;
    it = present ? std::next(it) : state.tables.erase(it);
  }

  // By backend id (ids are dense): its backend in the config, nullptr when in no pool.
  std::vector<const config::backend*> in_pool;
  for (const config::service& cs : cfg.services) {
    auto sid = state.service_id(cs.name);
    if (!sid) return error{sid.error_message()};
    service_entry se;
    se.id = *sid;
    se.name = cs.name;
    se.vip = cs.vip;
    se.proto = cs.proto;
    se.port = cs.port;
    se.mode = cs.mode;
    se.active = cs.active;
    se.canary_basis_points = cs.canary_basis_points;
    for (const auto& seg : cs.segments) se.segments.push_back(segment_rule{seg.prefix, seg.to});
    if (auto f = state.flushes.find(cs.name); f != state.flushes.end()) se.flush = f->second;

    for (colour c : {colour::blue, colour::green}) {
      std::vector<maglev_table::member> members;
      for (const config::backend& b : cs.pool(c)) {
        auto id = state.registry.id_for(cs.name, c, b.address);
        if (!id) return error{id.error_message()};
        if (*id >= in_pool.size()) in_pool.resize(*id + 1, nullptr);
        in_pool[*id] = &b;
        const bool takes_new = b.state == config::backend_admin_state::ready &&
                               !state.down.contains(*id);
        members.push_back({*id, takes_new ? b.weight : 0u, identity_of(b.address)});
      }
      auto& cached = state.tables[{cs.name, c}];
      if (!cached.table || cached.size != cs.maglev_size || !same_members(cached.members, members)) {
        auto table = maglev_table::build(members, cs.maglev_size);
        if (!table)
          return make_error("service " + cs.name + ": pools." + colour_name(c) + ": " +
                            table.error_message());
        cached = {members, cs.maglev_size, std::make_shared<const maglev_table>(std::move(*table))};
      }
      se.pools[static_cast<size_t>(c)] = cached.table;
    }
    const auto index = static_cast<uint16_t>(g->services.size());
    auto vid = state.vip_id(cs.vip, cs.proto);
    if (!vid) return error{vid.error_message()};
    g->listeners.push_back(listener{cs.vip, cs.proto, cs.port, index, 0, *vid});
    if (cs.preview) {
      auto pid = state.vip_id(cs.preview->vip, cs.proto);
      if (!pid) return error{pid.error_message()};
      g->listeners.push_back(listener{cs.preview->vip, cs.proto, cs.preview->port, index, 1, *pid});
    }
    g->services.push_back(std::move(se));
  }

  // The registry: every id ever handed out stays resolvable (flows may still point at it),
  // with the MAC it last had in a pool.
  const auto& slots = state.registry.slots();
  g->backends.resize(slots.size());
  state.last_mac.resize(slots.size());
  for (uint32_t id = 0; id < slots.size(); ++id) {
    backend_info& bi = g->backends[id];
    bi.address = slots[id].address;
    bi.pool = slots[id].pool;
    bi.in_registry = 1;
    bi.up = state.down.contains(id) ? 0 : 1;
    auto sid = state.service_ids.find(slots[id].service);
    bi.service_id = sid == state.service_ids.end() ? 0 : sid->second;
    if (const config::backend* cur = id < in_pool.size() ? in_pool[id] : nullptr) {
      if (cur->mac) state.last_mac[id] = *cur->mac;
      if (cur->state == config::backend_admin_state::maint) bi.up = 0;
    }
    if (state.last_mac[id]) bi.mac = to_ether(*state.last_mac[id]);
  }
  g->vips = state.vips;
  state.next_generation++;
  return g;
}

}  // namespace tandem
