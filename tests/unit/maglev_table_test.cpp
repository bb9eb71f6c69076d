#include "dataplane/maglev_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

namespace tandem {
namespace {

using member = maglev_table::member;

// Identities look like hashes of addresses in production; any distinct, scattered values do.
uint64_t identity_for(uint32_t id) { return 0x5bd1e995ull * (id + 1) ^ (uint64_t{id} << 40); }

std::vector<member> make_members(uint32_t n, uint32_t first_id = 0, uint32_t weight = 1) {
  std::vector<member> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    out.push_back(member{first_id + i, weight, identity_for(first_id + i)});
  }
  return out;
}

maglev_table build_ok(const std::vector<member>& members, uint32_t size) {
  auto r = maglev_table::build(members, size);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error_message());
  if (!r.ok()) return {};
  return std::move(r).value();
}

std::unordered_map<uint32_t, uint64_t> counts(const maglev_table& t) {
  std::unordered_map<uint32_t, uint64_t> c;
  for (uint32_t b : t.entries()) ++c[b];
  return c;
}

uint64_t differing(const maglev_table& a, const maglev_table& b) {
  EXPECT_EQ(a.size(), b.size());
  uint64_t d = 0;
  for (uint32_t i = 0; i < a.size() && i < b.size(); ++i) d += a.entries()[i] != b.entries()[i];
  return d;
}

TEST(MaglevPrime, KnownPrimesAndComposites) {
  EXPECT_TRUE(is_prime(2));
  EXPECT_TRUE(is_prime(3));
  EXPECT_TRUE(is_prime(65537));
  EXPECT_TRUE(is_prime(655373));
  EXPECT_TRUE(is_prime(1000003));
  EXPECT_TRUE(is_prime(4294967291u));  // largest 32-bit prime
  EXPECT_FALSE(is_prime(0));
  EXPECT_FALSE(is_prime(1));
  EXPECT_FALSE(is_prime(4));
  EXPECT_FALSE(is_prime(25));
  EXPECT_FALSE(is_prime(65536));
  EXPECT_FALSE(is_prime(65539 * 3));
  EXPECT_FALSE(is_prime(65521u * 65519u));  // product of two large primes, near 2^32
  EXPECT_FALSE(is_prime(4294967295u));
}

TEST(MaglevBuild, EveryEntryIsAMemberAndSizeIsM) {
  const auto members = make_members(37, 1000);
  const maglev_table t = build_ok(members, default_maglev_size);
  ASSERT_EQ(t.size(), default_maglev_size);
  ASSERT_EQ(t.entries().size(), default_maglev_size);
  std::set<uint32_t> ids;
  for (const member& m : members) ids.insert(m.backend_id);
  std::set<uint32_t> seen;
  for (uint32_t b : t.entries()) {
    ASSERT_TRUE(ids.count(b)) << "entry " << b << " is not a member";
    seen.insert(b);
  }
  EXPECT_EQ(seen, ids) << "every member must own at least one entry";
}

TEST(MaglevBuild, EqualBackendsWithinOnePercent) {
  const maglev_table t = build_ok(make_members(100), 65537);
  const auto c = counts(t);
  ASSERT_EQ(c.size(), 100u);
  const double ideal = 65537.0 / 100.0;
  for (const auto& [backend, count] : c) {
    EXPECT_LE(std::abs(static_cast<double>(count) - ideal), 0.01 * ideal)
        << "backend " << backend << " has " << count;
  }
}

TEST(MaglevBuild, DrainedMembersAreExcluded) {
  auto members = make_members(10);
  members[3].weight = 0;
  members[7].weight = 0;
  const maglev_table t = build_ok(members, 1009);
  const auto c = counts(t);
  EXPECT_EQ(c.size(), 8u);
  EXPECT_EQ(c.count(3), 0u);
  EXPECT_EQ(c.count(7), 0u);
  // Draining must behave exactly like removal.
  std::vector<member> without;
  for (const member& m : members) {
    if (m.weight != 0) without.push_back(m);
  }
  EXPECT_EQ(t.entries(), build_ok(without, 1009).entries());
}

struct disruption_case {
  uint32_t n;
  uint32_t size;
};

class MaglevDisruption : public ::testing::TestWithParam<disruption_case> {};

TEST_P(MaglevDisruption, RemovingOneBackendMovesAboutOneNth) {
  const auto [n, size] = GetParam();
  const auto all = make_members(n);
  const maglev_table before = build_ok(all, size);
  // Remove a few different positions in the sorted order, not just one lucky backend.
  for (uint32_t victim : {0u, n / 2, n - 1}) {
    auto fewer = all;
    fewer.erase(fewer.begin() + victim);
    const maglev_table after = build_ok(fewer, size);
    const double changed = static_cast<double>(differing(before, after)) / size;
    EXPECT_LE(changed, 1.2 / n) << "n=" << n << " removed " << victim;
    // At least the removed backend's own share must move.
    EXPECT_GE(changed, 0.99 / n);
    for (uint32_t b : after.entries()) ASSERT_NE(b, all[victim].backend_id);
  }
}

TEST_P(MaglevDisruption, AddingOneBackendMovesAboutOneNthPlusOne) {
  const auto [n, size] = GetParam();
  const auto all = make_members(n);
  const maglev_table before = build_ok(all, size);
  for (uint32_t new_id : {n, n + 1000, n + 77777}) {
    auto more = all;
    more.push_back(member{new_id, 1, identity_for(new_id)});
    const maglev_table after = build_ok(more, size);
    const double changed = static_cast<double>(differing(before, after)) / size;
    EXPECT_LE(changed, 1.2 / (n + 1)) << "n=" << n << " added " << new_id;
    EXPECT_GE(changed, 0.99 / (n + 1));
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, MaglevDisruption,
                         ::testing::Values(disruption_case{10, 65537}, disruption_case{100, 65537},
                                           disruption_case{500, 655373}),
                         [](const auto& p) { return "n" + std::to_string(p.param.n); });

TEST(MaglevWeights, TwoBackendsOneToTwo) {
  const std::vector<member> members{{1, 1, identity_for(1)}, {2, 2, identity_for(2)}};
  const auto c = counts(build_ok(members, 65537));
  ASSERT_EQ(c.size(), 2u);
  const double ratio = static_cast<double>(c.at(2)) / static_cast<double>(c.at(1));
  EXPECT_GE(ratio, 1.96);
  EXPECT_LE(ratio, 2.04);
}

TEST(MaglevWeights, FiftyAndFiftyOneToTwo) {
  auto members = make_members(50, 0, 1);
  const auto heavy = make_members(50, 100, 2);
  members.insert(members.end(), heavy.begin(), heavy.end());
  const auto c = counts(build_ok(members, 65537));
  ASSERT_EQ(c.size(), 100u);
  uint64_t light_total = 0;
  uint64_t heavy_total = 0;
  for (const auto& [backend, count] : c) (backend < 100 ? light_total : heavy_total) += count;
  const double ratio = static_cast<double>(heavy_total) / static_cast<double>(light_total);
  EXPECT_GE(ratio, 1.96);
  EXPECT_LE(ratio, 2.04);
  // Individual shares follow the weights too, not only the group totals.
  const double light_ideal = 65537.0 / 150.0;
  for (const auto& [backend, count] : c) {
    const double ideal = backend < 100 ? light_ideal : 2 * light_ideal;
    EXPECT_LE(std::abs(static_cast<double>(count) - ideal), 0.02 * ideal) << backend;
  }
}

TEST(MaglevWeights, ScaledWeightsGiveTheSameTable) {
  // Only weight ratios matter: 1:2 and 5:10 must build identical tables.
  const std::vector<member> a{{1, 1, identity_for(1)}, {2, 2, identity_for(2)}, {3, 2, identity_for(3)}};
  const std::vector<member> b{{1, 5, identity_for(1)}, {2, 10, identity_for(2)}, {3, 10, identity_for(3)}};
  EXPECT_EQ(build_ok(a, 1009).entries(), build_ok(b, 1009).entries());
}

TEST(MaglevBuild, OrderIndependent) {
  auto members = make_members(200, 5);
  for (std::size_t i = 0; i < members.size(); i += 3) members[i].weight = 3;
  const maglev_table reference = build_ok(members, 65537);
  std::mt19937 rng(12345);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(members.begin(), members.end(), rng);
    EXPECT_EQ(build_ok(members, 65537).entries(), reference.entries()) << "shuffle " << round;
  }
  std::reverse(members.begin(), members.end());
  EXPECT_EQ(build_ok(members, 65537).entries(), reference.entries());
}

TEST(MaglevBuild, DeterministicAcrossRebuilds) {
  const auto members = make_members(50);
  EXPECT_EQ(build_ok(members, 65537).entries(), build_ok(members, 65537).entries());
}

TEST(MaglevErrors, NonPrimeSize) {
  auto r = maglev_table::build(make_members(3), 65536);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message(), "maglev size 65536 is not prime");
  // Rejected even with no active members: the configuration is wrong regardless.
  auto empty = maglev_table::build({}, 1000);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error_message().find("1000"), std::string::npos);
}

TEST(MaglevErrors, SizeTooSmall) {
  auto r = maglev_table::build(make_members(700), 65537);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message(),
            "maglev size 65537 is too small for 700 backends: need at least 70000 (100 per "
            "backend) for <= 1% imbalance");
  // Drained members do not count towards the limit.
  auto members = make_members(700);
  for (std::size_t i = 0; i < 50; ++i) members[i].weight = 0;
  EXPECT_TRUE(maglev_table::build(members, 65537).ok());
  // The boundary: exactly 100 per backend is enough (101 is prime).
  EXPECT_TRUE(maglev_table::build(make_members(1), 101).ok());
  EXPECT_FALSE(maglev_table::build(make_members(2), 197).ok());
}

TEST(MaglevErrors, DuplicateBackendId) {
  auto members = make_members(5, 10);
  members[3].backend_id = 11;  // identity still distinct
  auto r = maglev_table::build(members, 1009);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("duplicate backend id 11"), std::string::npos)
      << r.error_message();
}

TEST(MaglevErrors, DuplicateIdentity) {
  auto members = make_members(5, 10);
  members[4].identity = members[1].identity;
  auto r = maglev_table::build(members, 1009);
  ASSERT_FALSE(r.ok());
  const std::string& msg = r.error_message();
  EXPECT_NE(msg.find("duplicate backend identity " + std::to_string(members[1].identity)),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("11"), std::string::npos) << msg;
  EXPECT_NE(msg.find("14"), std::string::npos) << msg;
}

TEST(MaglevErrors, ReservedBackendId) {
  auto members = make_members(3);
  members[0].backend_id = invalid_backend;
  EXPECT_FALSE(maglev_table::build(members, 1009).ok());
}

TEST(MaglevLookup, EmptyTableReturnsInvalid) {
  const maglev_table def;
  EXPECT_TRUE(def.empty());
  EXPECT_EQ(def.lookup(0), invalid_backend);
  EXPECT_EQ(def.lookup(12345), invalid_backend);

  auto members = make_members(4);
  for (member& m : members) m.weight = 0;  // all drained
  auto r = maglev_table::build(members, 65537);
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(r->size(), 0u);
  EXPECT_EQ(r->lookup(0), invalid_backend);
  EXPECT_EQ(r->lookup(0xffffffffu), invalid_backend);

  auto none = maglev_table::build({}, 65537);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->lookup(7), invalid_backend);
}

TEST(MaglevLookup, EndsOfHashRangeMapToEndsOfTable) {
  const maglev_table t = build_ok(make_members(20), 65537);
  EXPECT_EQ(t.lookup(0), t.entries().front());
  EXPECT_EQ(t.lookup(0xffffffffu), t.entries().back());
  EXPECT_NE(t.lookup(0), invalid_backend);
  EXPECT_NE(t.lookup(0xffffffffu), invalid_backend);
}

TEST(MaglevLookup, EveryIndexIsReachable) {
  // Multiply-shift must hit every slot: hash ceil(i * 2^32 / M) lands on index i.
  const uint32_t size = 1009;
  auto members = make_members(10);
  const maglev_table t = build_ok(members, size);
  for (uint64_t i = 0; i < size; ++i) {
    const uint32_t hash = static_cast<uint32_t>(((i << 32) + size - 1) / size);
    ASSERT_EQ(t.lookup(hash), t.entries()[i]) << "index " << i;
  }
}

TEST(MaglevLookup, SpreadsHashesAcrossBackends) {
  const maglev_table t = build_ok(make_members(10), 65537);
  std::mt19937 rng(99);
  std::unordered_map<uint32_t, uint64_t> hits;
  const int samples = 1'000'000;
  for (int i = 0; i < samples; ++i) ++hits[t.lookup(static_cast<uint32_t>(rng()))];
  ASSERT_EQ(hits.size(), 10u);
  for (const auto& [backend, count] : hits) {
    EXPECT_NEAR(static_cast<double>(count) / samples, 0.1, 0.005) << backend;
  }
}

}  // namespace
}  // namespace tandem
