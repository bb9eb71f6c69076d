#include "control/backend_registry.h"

#include "dataplane/generation.h"

namespace tandem {

backend_registry::member_key backend_registry::key_of(colour pool, const ip_address& address) {
  member_key k;
  k.bytes[0] = static_cast<uint8_t>(pool);
  std::memcpy(k.bytes.data() + 1, address.bytes, 16);
  return k;
}

result<uint32_t> backend_registry::id_for(const std::string& service, colour pool,
                                          const ip_address& address) {
  const member_key k = key_of(pool, address);
  auto svc = ids_.find(service);
  if (svc != ids_.end()) {
    if (auto it = svc->second.find(k); it != svc->second.end()) return it->second;
  }
  if (slots_.size() >= max_backends)
    return make_error("backend registry is full (" + std::to_string(max_backends) +
                      " backends since start); restart tandemd to compact it");
  const auto id = static_cast<uint32_t>(slots_.size());
  slots_.push_back(slot{service, pool, address});
  if (svc == ids_.end()) svc = ids_.try_emplace(service).first;
  svc->second.emplace(k, id);
  return id;
}

std::optional<uint32_t> backend_registry::find(const std::string& service, colour pool,
                                               const ip_address& address) const {
  auto svc = ids_.find(service);
  if (svc == ids_.end()) return std::nullopt;
  if (auto it = svc->second.find(key_of(pool, address)); it != svc->second.end()) return it->second;
  return std::nullopt;
}

}  // namespace tandem
