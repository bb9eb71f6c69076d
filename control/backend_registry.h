// Stable backend ids. A flow records a backend id, so an id must keep naming the same backend
// (service, pool colour, address) for as long as any flow may refer to it, even after the
// backend left every pool. Ids are handed out once and kept for the daemon's lifetime.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
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
  using key = std::tuple<std::string, uint8_t, std::string>;
  std::map<key, uint32_t> ids_;
  std::vector<slot> slots_;
};

}  // namespace tandem
