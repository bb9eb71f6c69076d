#include "control/backend_registry.h"

#include "dataplane/generation.h"

namespace tandem {

result<uint32_t> backend_registry::id_for(const std::string& service, colour pool,
                                          const ip_address& address) {
  key k{service, static_cast<uint8_t>(pool), std::string(reinterpret_cast<const char*>(address.bytes), 16)};
  if (auto it = ids_.find(k); it != ids_.end()) return it->second;
  if (slots_.size() >= max_backends)
    return make_error("backend registry is full (" + std::to_string(max_backends) +
                      " backends since start); restart tandemd to compact it");
  const auto id = static_cast<uint32_t>(slots_.size());
  slots_.push_back(slot{service, pool, address});
  ids_.emplace(std::move(k), id);
  return id;
}

std::optional<uint32_t> backend_registry::find(const std::string& service, colour pool,
                                               const ip_address& address) const {
  key k{service, static_cast<uint8_t>(pool), std::string(reinterpret_cast<const char*>(address.bytes), 16)};
  if (auto it = ids_.find(k); it != ids_.end()) return it->second;
  return std::nullopt;
}

}  // namespace tandem
