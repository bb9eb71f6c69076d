#include "control/backend_registry.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "dataplane/generation.h"

namespace tandem {
namespace {

ip_address addr(const char* text) { return *parse_ip_address(text); }

uint32_t id_of(backend_registry& r, const std::string& service, colour pool, const char* a) {
  auto id = r.id_for(service, pool, addr(a));
  EXPECT_TRUE(id.ok()) << id.error_message();
  return id.ok() ? *id : ~0u;
}

TEST(BackendRegistry, AnIdNamesOneServicePoolAndAddressForGood) {
  backend_registry r;
  const uint32_t a = id_of(r, "web", colour::blue, "10.0.0.1");
  EXPECT_EQ(a, 0u) << "ids are dense, in order of first sight";
  EXPECT_EQ(id_of(r, "web", colour::blue, "10.0.0.1"), a) << "asked again: the same id";
  // Each part of the identity makes another backend.
  const uint32_t other_pool = id_of(r, "web", colour::green, "10.0.0.1");
  const uint32_t other_service = id_of(r, "api", colour::blue, "10.0.0.1");
  const uint32_t other_address = id_of(r, "web", colour::blue, "10.0.0.2");
  EXPECT_EQ(std::set<uint32_t>({a, other_pool, other_service, other_address}).size(), 4u);
  // Addresses that differ only in the words an IPv4-mapped address leaves alone or uses.
  const uint32_t v6_low = id_of(r, "web", colour::blue, "2001:db8::1");
  const uint32_t v6_high = id_of(r, "web", colour::blue, "2001:db9::1");
  const uint32_t v4_mapped_twin = id_of(r, "web", colour::blue, "::ffff:10.0.0.3");
  EXPECT_EQ(std::set<uint32_t>({v6_low, v6_high, v4_mapped_twin, a, other_address}).size(), 5u);
  EXPECT_EQ(id_of(r, "web", colour::blue, "10.0.0.3"), v4_mapped_twin)
      << "an IPv4 address and its IPv4-mapped form are one address";

  EXPECT_EQ(r.find("web", colour::green, addr("10.0.0.1")), other_pool);
  EXPECT_EQ(r.find("web", colour::blue, addr("2001:db9::1")), v6_high);
  EXPECT_FALSE(r.find("nope", colour::blue, addr("10.0.0.1")).has_value()) << "unknown service";
  EXPECT_FALSE(r.find("api", colour::green, addr("10.0.0.1")).has_value()) << "other pool";
  EXPECT_FALSE(r.find("web", colour::blue, addr("10.0.0.9")).has_value()) << "unknown address";

  ASSERT_EQ(r.slots().size(), 7u);
  EXPECT_EQ(r.slots()[other_service].service, "api");
  EXPECT_EQ(r.slots()[other_pool].pool, colour::green);
  EXPECT_EQ(r.slots()[v6_high].address, addr("2001:db9::1"));
}

TEST(BackendRegistry, ManyBackendsKeepTheirIdsAndAFullRegistrySaysSo) {
  backend_registry r;
  // Every id the dataplane can hold, spread over two services and both pools.
  for (uint32_t i = 0; i < max_backends; ++i) {
    const std::string service = i % 2 ? "odd" : "even";
    const colour pool = (i / 2) % 2 ? colour::green : colour::blue;
    auto id = r.id_for(service, pool, ip_address::from_v4_be(htonl(0x0a000000u + i)));
    ASSERT_TRUE(id.ok()) << i << ": " << id.error_message();
    ASSERT_EQ(*id, i);
  }
  for (uint32_t i = 0; i < max_backends; i += 997) {
    const std::string service = i % 2 ? "odd" : "even";
    const colour pool = (i / 2) % 2 ? colour::green : colour::blue;
    EXPECT_EQ(r.find(service, pool, ip_address::from_v4_be(htonl(0x0a000000u + i))), i);
    EXPECT_EQ(*r.id_for(service, pool, ip_address::from_v4_be(htonl(0x0a000000u + i))), i)
        << "a known backend still resolves when the registry is full";
  }
  auto full = r.id_for("even", colour::blue, addr("192.0.2.1"));
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error_message().find("backend registry is full (65536 backends since start)"),
            std::string::npos)
      << full.error_message();
  EXPECT_FALSE(r.find("even", colour::blue, addr("192.0.2.1")).has_value())
      << "a refused backend got no id";
  EXPECT_EQ(r.slots().size(), size_t{max_backends});
}

}  // namespace
}  // namespace tandem
