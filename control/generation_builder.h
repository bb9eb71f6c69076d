// Turns the control plane's desired state (a validated daemon_config) plus its runtime state
// (stable ids, drain flushes, health) into a new immutable table generation. Runs on the
// control thread only, never on a worker.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "control/backend_registry.h"
#include "control/config.h"
#include "dataplane/generation.h"
#include "dataplane/result.h"

namespace tandem {

struct runtime_state {
  uint32_t next_generation = 1;
  backend_registry registry;
  std::map<std::string, uint16_t> service_ids;  // stable ids by service name
  std::map<std::string, std::array<colour_flush, 2>> flushes;  // by service name
  std::set<uint32_t> down;                      // backend ids health checks mark down
  // By backend id: the MAC a backend last had in a pool (ids are dense, so a vector).
  std::vector<std::optional<config::mac_address>> last_mac;

  // The last Maglev table built for each (service, colour) and what it was built from: a
  // change that leaves a pool's members alone reuses it (a switch builds no table at all).
  struct cached_table {
    std::vector<maglev_table::member> members;
    uint32_t size = 0;
    std::shared_ptr<const maglev_table> table;
  };
  std::map<std::pair<std::string, colour>, cached_table> tables;

  result<uint16_t> service_id(const std::string& name);
  // Stable id of (vip, proto) for flow entries; never reused while tandemd runs.
  std::vector<vip_key> vips;
  std::map<std::pair<std::array<uint8_t, 16>, uint8_t>, uint16_t> vip_ids;
  result<uint16_t> vip_id(const ip_address& vip, uint8_t proto);
};

// Builds generation `state.next_generation` (incremented only on success). On error nothing in
// `state` that affects the dataplane changes (at most unused ids were allocated).
result<std::unique_ptr<generation>> build_generation(const config::daemon_config& cfg,
                                                     runtime_state& state);

}  // namespace tandem
