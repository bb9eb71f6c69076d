#include "dataplane/flow_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_lcore.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dataplane/flow_hash.h"
#include "tests/support/eal_fixture.h"

namespace tandem {

// Reaches the table's private bucket layout so tests can check placement and eviction choices.
struct flow_table_test_access {
  static uint32_t bucket_count(const flow_table& t) { return t.bucket_count_; }
  static uint32_t bucket_a(const flow_table& t, uint32_t h) { return t.bucket_a(h); }
  static uint32_t bucket_b(const flow_table& t, uint32_t h) { return t.bucket_b(h); }
  static const flow_entry* bucket(const flow_table& t, uint32_t b) {
    return &t.entries_[size_t{b} * flow_table::bucket_entries];
  }
  static uint16_t sig(const flow_table& t, uint32_t b, uint32_t i) { return t.sigs_[size_t{b} * flow_table::bucket_entries + i]; }
  static bool from_rte(const flow_table& t) { return t.mem_from_rte_; }
  static flow_entry* slot(flow_table& t, uint32_t b, uint32_t i) {
    return &t.entries_[size_t{b} * flow_table::bucket_entries + i];
  }
};

namespace {

using access = flow_table_test_access;

// Distinct keys by construction: `i` goes through a bijection into the source address; the rest
// is random. IPv6 sources are 2001:db8::/32 so they never collide with IPv4-mapped ones. VIP ids:
// bit 0 = UDP, bit 1 = IPv6 VIP (as generation::vips would number four VIPs).
using flow_key = stored_flow_key;
bool is_tcp(const flow_key& k) { return (k.vip_id & 1) == 0; }

flow_key make_key(uint32_t i, bool v6, std::mt19937& rng) {
  flow_key k;
  const uint32_t id = i * 0x9e3779b1u;
  if (v6) {
    uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
    for (int j = 4; j < 12; ++j) b[j] = static_cast<uint8_t>(rng());
    std::memcpy(b + 12, &id, 4);
    k.client = ip_address::from_v6(b);
  } else {
    k.client = ip_address::from_v4_be(id);
  }
  k.client_port = static_cast<uint16_t>(rng());
  k.vip_port = htons(443);
  k.vip_id = static_cast<uint16_t>((v6 ? 2 : 0) | (rng() & 1));
  return k;
}

uint32_t hash_of(const flow_key& k) { return hash_flow_key(k, flow_table_seed); }

std::vector<flow_key> make_keys(uint32_t n, uint32_t first, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<flow_key> keys;
  keys.reserve(n);
  for (uint32_t i = 0; i < n; ++i) keys.push_back(make_key(first + i, (i & 1) != 0, rng));
  return keys;
}

// Inserts and sets the state; fails the test if the insert fails.
flow_entry* put(flow_table& t, const flow_key& k, uint32_t now, tcp_state s, uint32_t hash) {
  flow_table::insert_result r = t.insert(k, hash, now);
  EXPECT_NE(r.entry, nullptr);
  if (r.entry != nullptr) r.entry->state = s;
  return r.entry;
}
flow_entry* put(flow_table& t, const flow_key& k, uint32_t now, tcp_state s) {
  return put(t, k, now, s, hash_of(k));
}

size_t count_live(const flow_table& t) {
  size_t n = 0;
  t.for_each([&](const flow_entry&) { ++n; });
  return n;
}

// Keys inserted at `now` until every slot is taken (evictions of equally old entries allowed).
std::vector<flow_key> fill_completely(flow_table& t, uint32_t now, tcp_state s) {
  std::mt19937 rng(99);
  std::vector<flow_key> keys;
  for (uint32_t i = 0; t.size() < t.capacity() && i < 100'000; ++i) {
    flow_key k = make_key(500'000 + i, false, rng);
    if (put(t, k, now, s) == nullptr) break;
    keys.push_back(k);
  }
  EXPECT_EQ(t.size(), t.capacity());
  return keys;
}

// Runs first in file order, before any test starts EAL: the table then falls back to
// aligned_alloc. Whatever the order, the memory source must follow whether EAL is up.
// The worker builds stored keys as words in registers (key_words_v4 / key_words) and hashes
// them directly: both must give exactly what make_stored_key and hash_flow_key give, or flows
// would be looked up under a different key or bucket than the one they were stored with.
TEST(StoredKeyWords, MatchMakeStoredKeyAndItsHash) {
  std::mt19937 rng(5);
  for (int i = 0; i < 2000; ++i) {
    tandem::flow_key k;
    const bool v6 = i % 3 == 0;
    if (v6) {
      for (auto& b : k.src.bytes) b = static_cast<uint8_t>(rng());
    } else {
      k.src = ip_address::from_v4_be(static_cast<uint32_t>(rng()));
    }
    k.dst = ip_address::from_v4_be(static_cast<uint32_t>(rng()));
    k.src_port = static_cast<uint16_t>(rng());
    k.dst_port = static_cast<uint16_t>(rng());
    k.proto = 6;
    const uint16_t vip_id = static_cast<uint16_t>(rng());
    const stored_flow_key want = make_stored_key(k, vip_id);
    stored_key_words w = key_words(k.src, k.src_port, k.dst_port, vip_id);
    if (!v6) {
      const stored_key_words w4 = key_words_v4(k.src.v4_be(), k.src_port, k.dst_port, vip_id);
      ASSERT_EQ(std::memcmp(&w4, &w, sizeof w), 0) << i;
      w = w4;
    }
    ASSERT_EQ(to_stored_key(w), want) << i;
    ASSERT_EQ(hash_key_words(w, flow_table_seed), hash_flow_key(want, flow_table_seed)) << i;
    ASSERT_EQ(hash_key_words(w, 12345u), hash_flow_key(want, 12345u)) << i;
  }
}

TEST(FlowTableNoEal, WorksWithOrWithoutEal) {
  flow_table t(100);
  EXPECT_EQ(access::from_rte(t), rte_lcore_count() > 0);
  EXPECT_EQ(t.capacity(), 112u);
  std::mt19937 rng(2);
  const flow_key k = make_key(1, true, rng);
  flow_table::insert_result r = t.insert(k, hash_of(k), 1);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r.entry) % 16, 0u);
  EXPECT_EQ(t.lookup(k, hash_of(k), 1), r.entry);
  size_t zero = 0;
  t.for_each([&](const flow_entry&) { ++zero; });
  EXPECT_EQ(zero, 1u);
}

class FlowTable : public ::testing::Test {
 protected:
  void SetUp() override { test::ensure_eal(); }
};

TEST_F(FlowTable, EntryLayoutAndAllocation) {
  // Issue 6: at most 64 bytes per tracked flow. 48-byte entries + 2 bytes of signature.
  EXPECT_EQ(sizeof(flow_entry), 48u);
  EXPECT_EQ(alignof(flow_entry), 16u);
  EXPECT_EQ(sizeof(stored_flow_key), 24u);
  EXPECT_EQ(flow_table::bytes_per_slot(), 50u);

  flow_table t(1000);
  EXPECT_TRUE(access::from_rte(t)) << "EAL is running: the table should live in rte_malloc memory";
  for (uint32_t b = 0; b < access::bucket_count(t); ++b) {
    const flow_entry* e = access::bucket(t, b);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(e) % 64, 0u);
    for (uint32_t i = 0; i < flow_table::bucket_entries; ++i) {
      EXPECT_EQ(e[i].state, tcp_state::empty);
      EXPECT_EQ(access::sig(t, b, i), 0);
    }
  }
  std::mt19937 rng(1);
  flow_entry* e = put(t, make_key(1, false, rng), 5, tcp_state::udp);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e) % 16, 0u);
  // 1 M (2^20) flows at 80 % load: 1,310,720 slots, at most 64 bytes per flow, 128 MiB in all.
  flow_table big(1'310'720);
  EXPECT_EQ(big.capacity(), 1'310'720u);
  EXPECT_LE(big.memory_bytes(), (1u << 20) * 64);
  EXPECT_LE(big.memory_bytes(), 128u << 20);
}

TEST_F(FlowTable, CapacityRoundsUpToAnEvenNumberOfBuckets) {
  const std::pair<size_t, size_t> cases[] = {
      {0, 16},    {1, 16},     {8, 16},     {16, 16},   {17, 32},       {24, 32},
      {33, 48},   {64, 64},    {65, 80},    {100, 112}, {1000, 1008},   {1024, 1024},
      {1025, 1040}, {1u << 20, 1u << 20}, {(1u << 20) + 1, (1u << 20) + 16},
      {1'310'720, 1'310'720}, {1'000'001, 1'000'016},
  };
  for (const auto& [asked, expected] : cases) {
    flow_table t(asked);
    EXPECT_EQ(t.capacity(), expected) << "capacity " << asked;
    EXPECT_EQ(access::bucket_count(t), expected / flow_table::bucket_entries);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(count_live(t), 0u);
  }
}

TEST_F(FlowTable, BucketChoicesDifferAndAreSpread) {
  std::mt19937 rng(7);
  for (size_t cap : {16u, 64u, 1024u, 1u << 20}) {
    flow_table t(cap);
    const uint32_t n = access::bucket_count(t);
    std::set<uint32_t> partners_of_zero;
    for (int i = 0; i < 200'000; ++i) {
      const uint32_t h = rng();
      const uint32_t a = access::bucket_a(t, h), b = access::bucket_b(t, h);
      ASSERT_LT(a, n);
      ASSERT_LT(b, n);
      ASSERT_NE(a, b) << "hash " << h;
      if (a == 0) partners_of_zero.insert(b);
    }
    if (n == 2) {
      EXPECT_EQ(partners_of_zero, std::set<uint32_t>{1});
    } else if (n == 8) {
      // Buckets pair even with odd (the pair sum is odd): every odd bucket is a partner.
      EXPECT_EQ(partners_of_zero, (std::set<uint32_t>{1, 3, 5, 7}));
    } else if (n == 128) {
      EXPECT_GT(partners_of_zero.size(), 60u);
    } else {
      // ~1.5 hashes per bucket land on bucket 0: their partners must not cluster.
      EXPECT_GE(partners_of_zero.size(), 1u);
    }
  }
}

TEST_F(FlowTable, InsertLookupRemoveRoundTrip) {
  flow_table t(1u << 14);
  const std::vector<flow_key> keys = make_keys(12'000, 0, 11);  // ~73% load, v4 and v6
  const std::vector<flow_key> absent = make_keys(2'000, 1'000'000, 12);
  const uint32_t now = 1'000;

  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_table::insert_result r = t.insert(keys[i], hash_of(keys[i]), now);
    ASSERT_NE(r.entry, nullptr) << i;
    EXPECT_FALSE(r.evicted) << i;
    EXPECT_EQ(r.entry->key, keys[i]);
    EXPECT_EQ(r.entry->last_seen_ms, now);
    EXPECT_EQ(r.entry->state, tcp_state::syn_seen);  // placeholder until the caller sets it
    EXPECT_EQ(r.entry->backend_id, 0u);
    r.entry->backend_id = i;
    r.entry->state = is_tcp(keys[i]) ? tcp_state::established : tcp_state::udp;
    ASSERT_EQ(t.size(), i + 1u);
  }
  EXPECT_EQ(t.stats().inserts, keys.size());
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(count_live(t), keys.size());

  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], hash_of(keys[i]), now + 10);
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->backend_id, i);
    EXPECT_EQ(e->key, keys[i]);
  }
  for (const flow_key& k : absent) EXPECT_EQ(t.lookup(k, hash_of(k), now), nullptr);

  // Remove every other key.
  for (uint32_t i = 0; i < keys.size(); i += 2) {
    flow_entry* e = t.lookup(keys[i], hash_of(keys[i]), now);
    ASSERT_NE(e, nullptr);
    t.remove(e);
    EXPECT_EQ(e->state, tcp_state::empty);
  }
  EXPECT_EQ(t.size(), keys.size() / 2);
  EXPECT_EQ(count_live(t), keys.size() / 2);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], hash_of(keys[i]), now);
    if (i % 2 == 0) {
      EXPECT_EQ(e, nullptr) << i;
    } else {
      ASSERT_NE(e, nullptr) << i;
      EXPECT_EQ(e->backend_id, i);
    }
  }
  // Re-insert the removed half.
  for (uint32_t i = 0; i < keys.size(); i += 2) {
    flow_table::insert_result r = t.insert(keys[i], hash_of(keys[i]), now + 20);
    ASSERT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    r.entry->backend_id = i + 100'000;
  }
  EXPECT_EQ(t.size(), keys.size());
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], hash_of(keys[i]), now + 20);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->backend_id, i % 2 == 0 ? i + 100'000 : i);
  }
}

TEST_F(FlowTable, RemoveFreesTheSlot) {
  flow_table t(16);  // 2 buckets: every key may use every slot
  const std::vector<flow_key> keys = fill_completely(t, 0, tcp_state::udp);
  ASSERT_EQ(t.size(), 16u);
  flow_entry* e = t.lookup(keys.back(), hash_of(keys.back()), 0);
  ASSERT_NE(e, nullptr);
  t.remove(e);
  EXPECT_EQ(t.size(), 15u);
  t.remove(e);  // a second remove must not corrupt the count
  EXPECT_EQ(t.size(), 15u);
  EXPECT_EQ(t.lookup(keys.back(), hash_of(keys.back()), 0), nullptr);

  std::mt19937 rng(3);
  const flow_key k = make_key(77, true, rng);
  flow_table::insert_result r = t.insert(k, hash_of(k), 1);
  EXPECT_EQ(r.entry, e);  // the freed slot is the only one
  EXPECT_FALSE(r.evicted);
  EXPECT_EQ(t.size(), 16u);
  EXPECT_EQ(t.stats().evictions, 0u);
}

TEST_F(FlowTable, FullKeyCompareWithEqualHashes) {
  flow_table t(1024);
  std::mt19937 rng(5);
  const uint32_t h = 0x12345678u;  // every key forced into the same two buckets
  flow_key base = make_key(1, false, rng);
  std::vector<flow_key> keys;
  for (uint32_t i = 0; i < 16; ++i) {
    flow_key k = base;
    switch (i % 4) {
      case 0: k.client_port = static_cast<uint16_t>(k.client_port + i); break;
      case 1: k.vip_id = static_cast<uint16_t>(k.vip_id + 4 * i); break;
      case 2: k.client.bytes[i % 16] ^= 0x40; k.vip_port = static_cast<uint16_t>(i); break;
      case 3: k.vip_port = static_cast<uint16_t>(k.vip_port + 1000 * i); break;
    }
    keys.push_back(k);
  }
  std::sort(keys.begin(), keys.end(),
            [](const flow_key& a, const flow_key& b) { return std::memcmp(&a, &b, sizeof a) < 0; });
  ASSERT_EQ(std::unique(keys.begin(), keys.end()), keys.end());

  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = put(t, keys[i], 100 + i, tcp_state::udp, h);
    ASSERT_NE(e, nullptr);
    e->backend_id = i;
  }
  EXPECT_EQ(t.stats().evictions, 0u);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], h, 200);
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->backend_id, i);
  }
  // Same hash, not inserted: signatures match everywhere, the key compare must say no.
  flow_key other = base;
  other.client_port = static_cast<uint16_t>(base.client_port ^ 0x8000);
  EXPECT_EQ(t.lookup(other, h, 200), nullptr);

  // A 17th key with this hash has no room: the oldest (keys[0]) is displaced.
  flow_table::insert_result r = t.insert(other, h, 300);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_TRUE(r.evicted);
  EXPECT_EQ(r.displaced.key, keys[0]);
  EXPECT_EQ(r.displaced.backend_id, 0u);
  EXPECT_EQ(t.stats().evictions, 1u);
  EXPECT_EQ(t.lookup(keys[0], h, 300), nullptr);
  EXPECT_NE(t.lookup(other, h, 300), nullptr);
  for (uint32_t i = 1; i < keys.size(); ++i) EXPECT_NE(t.lookup(keys[i], h, 300), nullptr);
}

TEST_F(FlowTable, LookupBulkMatchesLookup) {
  flow_timeouts to;
  to.udp_ms = 50;
  flow_table t(4096, to);
  const std::vector<flow_key> keys = make_keys(3000, 0, 21);
  // A third present and fresh, a third present but expired, a third absent.
  for (uint32_t i = 0; i < keys.size(); ++i) {
    if (i % 3 == 2) continue;
    flow_entry* e = put(t, keys[i], i % 3 == 0 ? 1000 : 100, tcp_state::udp);
    ASSERT_NE(e, nullptr);
    e->backend_id = i;
  }
  const uint32_t now = 1010;
  std::mt19937 rng(22);
  size_t found = 0;
  for (uint32_t n : {0u, 1u, 7u, 32u, 64u, 200u}) {
    for (int round = 0; round < 20; ++round) {
      std::vector<const flow_key*> kp(n);
      std::vector<uint32_t> hs(n);
      std::vector<flow_entry*> out(n, reinterpret_cast<flow_entry*>(uintptr_t{64}));
      for (uint32_t i = 0; i < n; ++i) {
        kp[i] = &keys[rng() % keys.size()];
        hs[i] = hash_of(*kp[i]);
      }
      t.lookup_bulk(kp.data(), hs.data(), n, now, out.data());
      for (uint32_t i = 0; i < n; ++i) {
        EXPECT_EQ(out[i], t.lookup(*kp[i], hs[i], now));
        const size_t idx = static_cast<size_t>(kp[i] - keys.data());
        EXPECT_EQ(out[i] != nullptr, idx % 3 == 0);
        found += out[i] != nullptr;
      }
    }
  }
  EXPECT_GT(found, 0u);
}

struct timeout_case {
  tcp_state state;
  uint32_t timeout;
};

TEST_F(FlowTable, EachStateExpiresExactlyAfterItsTimeout) {
  flow_timeouts to;
  to.tcp_syn_ms = 10;
  to.tcp_established_ms = 20;
  to.tcp_closing_ms = 5;
  to.udp_ms = 7;
  const timeout_case cases[] = {{tcp_state::syn_seen, 10},
                                {tcp_state::established, 20},
                                {tcp_state::closing, 5},
                                {tcp_state::closed, 5},
                                {tcp_state::udp, 7}};
  std::mt19937 rng(31);
  for (const auto& c : cases) {
    flow_table t(64, to);
    const flow_key k = make_key(3, false, rng);
    const uint32_t t0 = 1'000;
    flow_entry* e = put(t, k, t0, c.state);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(t.lookup(k, hash_of(k), t0), e);
    EXPECT_EQ(t.lookup(k, hash_of(k), t0 + c.timeout), e) << static_cast<int>(c.state);
    EXPECT_EQ(t.lookup(k, hash_of(k), t0 + c.timeout + 1), nullptr) << static_cast<int>(c.state);
    // Absent for lookups, but left in place for the scanner to report.
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(count_live(t), 1u);
    EXPECT_EQ(e->state, c.state);
    EXPECT_EQ(t.lookup(k, hash_of(k), t0 + c.timeout), e);

    uint32_t reported = 0;
    EXPECT_EQ(t.expire_step(t0 + c.timeout, 64, [&](const flow_entry&) { ++reported; }), 0u);
    EXPECT_EQ(t.expire_step(t0 + c.timeout + 1, 64,
                            [&](const flow_entry& x) {
                              ++reported;
                              EXPECT_EQ(x.key, k);
                              EXPECT_EQ(x.state, c.state);
                            }),
              1u);
    EXPECT_EQ(reported, 1u);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.stats().expired, 1u);
  }
}

TEST_F(FlowTable, TimeWrapIsHandled) {
  flow_timeouts to;
  to.udp_ms = 300;
  flow_table t(64, to);
  std::mt19937 rng(41);
  const flow_key k = make_key(9, true, rng);
  const uint32_t t0 = 0xffffff00u;
  ASSERT_NE(put(t, k, t0, tcp_state::udp), nullptr);
  EXPECT_NE(t.lookup(k, hash_of(k), 0x10), nullptr);  // 272 ms later, across the wrap
  EXPECT_NE(t.lookup(k, hash_of(k), 0x2c), nullptr);  // exactly 300 ms
  EXPECT_EQ(t.lookup(k, hash_of(k), 0x2d), nullptr);  // 301 ms
  EXPECT_EQ(t.expire_step(0x2c, 64, [](const flow_entry&) {}), 0u);
  EXPECT_EQ(t.expire_step(0x2d, 64, [](const flow_entry&) {}), 1u);

  // Eviction order across the wrap: entries from before the wrap are the oldest.
  flow_table small(16);
  std::vector<flow_key> keys;
  for (uint32_t i = 0; i < 16; ++i) {
    keys.push_back(make_key(100 + i, false, rng));
    const uint32_t when = i < 8 ? 0xfffffff0u + i : i - 8;  // ..., 0xfffffff7, 0, 1, ..., 7
    ASSERT_NE(put(small, keys.back(), when, tcp_state::udp), nullptr);
  }
  const flow_key extra = make_key(200, false, rng);
  flow_table::insert_result r = small.insert(extra, hash_of(extra), 20);
  ASSERT_NE(r.entry, nullptr);
  ASSERT_TRUE(r.evicted);
  EXPECT_EQ(r.displaced.key, keys[0]);
  EXPECT_EQ(r.displaced.last_seen_ms, 0xfffffff0u);
}

TEST_F(FlowTable, ExpireStepIsIncremental) {
  flow_timeouts to;
  to.udp_ms = 100;
  flow_table t(1024, to);
  const std::vector<flow_key> keys = make_keys(600, 0, 51);
  std::set<std::string> expect_expired;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    const bool old = i % 2 == 0;
    ASSERT_NE(put(t, keys[i], old ? 0 : 150, tcp_state::udp), nullptr);
    if (old) expect_expired.insert(std::string(reinterpret_cast<const char*>(&keys[i]), sizeof(flow_key)));
  }
  const uint32_t now = 200;
  const uint32_t budget = 100;
  std::multiset<std::string> reported;
  uint32_t total = 0;
  const uint32_t calls = (t.capacity() + budget - 1) / budget;
  for (uint32_t c = 0; c < calls; ++c) {
    uint32_t this_call = 0;
    const uint32_t removed = t.expire_step(now, budget, [&](const flow_entry& e) {
      ++this_call;
      EXPECT_EQ(e.last_seen_ms, 0u);
      reported.insert(std::string(reinterpret_cast<const char*>(&e.key), sizeof(flow_key)));
    });
    EXPECT_LE(removed, budget);
    EXPECT_EQ(removed, this_call);
    total += removed;
    if (c == 0) {
      EXPECT_LT(total, expect_expired.size()) << "one step must not scan everything";
    }
  }
  EXPECT_EQ(total, expect_expired.size());
  EXPECT_EQ(std::set<std::string>(reported.begin(), reported.end()), expect_expired);
  EXPECT_EQ(reported.size(), expect_expired.size());  // once per entry
  EXPECT_EQ(t.stats().expired, expect_expired.size());
  EXPECT_EQ(t.size(), keys.size() - expect_expired.size());
  for (uint32_t i = 1; i < keys.size(); i += 2) EXPECT_NE(t.lookup(keys[i], hash_of(keys[i]), now), nullptr);
  EXPECT_EQ(t.expire_step(now, 2048, [](const flow_entry&) {}), 0u);
}

TEST_F(FlowTable, ExpireStepRespectsBudgetExactly) {
  flow_timeouts to;
  to.udp_ms = 100;
  flow_table t(64, to);
  fill_completely(t, 0, tcp_state::udp);
  ASSERT_EQ(t.size(), 64u);
  // Every slot holds an expired entry, so each step removes exactly what it may scan.
  for (uint32_t c = 0; c < 12; ++c) {
    uint32_t cb = 0;
    EXPECT_EQ(t.expire_step(1'000, 5, [&](const flow_entry&) { ++cb; }), 5u);
    EXPECT_EQ(cb, 5u);
    EXPECT_EQ(t.size(), 64u - 5 * (c + 1));
  }
  EXPECT_EQ(t.expire_step(1'000, 5, [](const flow_entry&) {}), 4u);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.stats().expired, 64u);
}

TEST_F(FlowTable, ScanStepRemovesWhatTheVisitorChooses) {
  flow_table t(512);
  const std::vector<flow_key> keys = make_keys(300, 0, 61);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = put(t, keys[i], 10, tcp_state::established);
    ASSERT_NE(e, nullptr);
    e->backend_id = i;
  }
  std::map<uint32_t, int> visits;
  uint32_t removed = 0;
  for (uint32_t c = 0; c < t.capacity() / 64; ++c) {
    removed += t.scan_step(64, [&](flow_entry& e) {
      ++visits[e.backend_id];
      return e.backend_id % 3 == 0;
    });
  }
  EXPECT_EQ(visits.size(), keys.size());
  for (const auto& [id, n] : visits) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(removed, 100u);
  EXPECT_EQ(t.size(), 200u);
  EXPECT_EQ(t.stats().expired, 0u);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], hash_of(keys[i]), 10);
    EXPECT_EQ(e == nullptr, i % 3 == 0) << i;
  }
}

// An insert into two full buckets evicts the oldest entry of the key's first bucket (the second
// is not searched: see flow_table.h), and moving residents away comes first.
TEST_F(FlowTable, FullTableEvictsTheOldestOfTheFirstBucket) {
  flow_timeouts to;
  to.udp_ms = 1'000'000'000;
  flow_table t(128, to);  // 16 buckets
  const std::vector<flow_key> keys = make_keys(800, 0, 71);
  std::map<std::string, uint32_t> present;  // key bytes -> insert time
  auto kb = [](const flow_key& k) { return std::string(reinterpret_cast<const char*>(&k), sizeof(flow_key)); };
  uint64_t evictions = 0;
  uint64_t moves = 0;  // full candidate buckets, yet no eviction: a resident was moved away
  for (uint32_t i = 0; i < keys.size(); ++i) {
    const uint32_t now = 1'000 + i;
    const uint32_t h = hash_of(keys[i]);
    // What the two candidate buckets hold before the insert.
    const flow_entry* cand[2] = {access::bucket(t, access::bucket_a(t, h)),
                                 access::bucket(t, access::bucket_b(t, h))};
    bool full = true;
    uint32_t oldest_time = UINT32_MAX;  // in the first bucket
    flow_key oldest_key;
    for (const flow_entry* b : cand) {
      for (uint32_t s = 0; s < flow_table::bucket_entries; ++s) {
        if (b[s].state == tcp_state::empty) {
          full = false;
        } else if (b == cand[0] && b[s].last_seen_ms < oldest_time) {
          oldest_time = b[s].last_seen_ms;
          oldest_key = b[s].key;
        }
      }
    }
    flow_table::insert_result r = t.insert(keys[i], h, now);
    ASSERT_NE(r.entry, nullptr);
    r.entry->state = tcp_state::udp;
    if (full && !r.evicted) ++moves;
    if (r.evicted) {
      EXPECT_TRUE(full) << i;
      ++evictions;
      EXPECT_EQ(r.displaced.key, oldest_key) << i;
      EXPECT_EQ(r.displaced.last_seen_ms, oldest_time) << i;
      EXPECT_EQ(r.displaced.state, tcp_state::udp);
      ASSERT_EQ(present.erase(kb(r.displaced.key)), 1u);
    }
    present[kb(keys[i])] = now;
    ASSERT_EQ(t.size(), present.size());
    for (uint32_t j = 0; j <= i; ++j) {  // moves must not lose anything
      ASSERT_EQ(t.lookup(keys[j], hash_of(keys[j]), now) != nullptr,
                present.count(kb(keys[j])) != 0)
          << "after insert " << i << ", key " << j;
    }
  }
  EXPECT_GT(moves, 0u);
  EXPECT_GT(evictions, 600u);
  EXPECT_EQ(t.stats().evictions, evictions);
  EXPECT_EQ(t.stats().failed_inserts, 0u);
  // Everything not displaced survived; displaced keys are gone.
  for (const flow_key& k : keys) {
    const bool expect = present.count(kb(k)) != 0;
    EXPECT_EQ(t.lookup(k, hash_of(k), 2'000) != nullptr, expect);
  }
  // The newest entries survive: the last 8 inserted can only have lost to even newer ones,
  // which do not exist yet when each was the newest, and no bucket pair lacks an older entry.
  for (size_t i = keys.size() - 8; i < keys.size(); ++i)
    EXPECT_NE(t.lookup(keys[i], hash_of(keys[i]), 2'000), nullptr) << i;
}

// A hash whose two buckets are exactly (a, b).
uint32_t hash_for(const flow_table& t, uint32_t a, uint32_t b, std::mt19937& rng) {
  for (int i = 0; i < 10'000'000; ++i) {
    const uint32_t h = rng();
    if (access::bucket_a(t, h) == a && access::bucket_b(t, h) == b) return h;
  }
  ADD_FAILURE() << "no hash has buckets (" << a << ", " << b << ")";
  return 0;
}

uint32_t used_slots(const flow_table& t, uint32_t bucket) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < flow_table::bucket_entries; ++i) n += access::sig(t, bucket, i) != 0;
  return n;
}

bool in_bucket(const flow_table& t, uint32_t bucket, const flow_key& k) {
  const flow_entry* e = access::bucket(t, bucket);
  for (uint32_t i = 0; i < flow_table::bucket_entries; ++i)
    if (access::sig(t, bucket, i) != 0 && e[i].key == k) return true;
  return false;
}

struct keyed {
  flow_key key;
  uint32_t hash;
};

TEST_F(FlowTable, FullBucketsMoveAResidentOneHop) {
  flow_table t(32);  // 4 buckets
  ASSERT_EQ(access::bucket_count(t), 4u);
  std::mt19937 rng(111);
  std::vector<keyed> all;
  auto add = [&](uint32_t a, uint32_t b, uint32_t when) {
    keyed k{make_key(static_cast<uint32_t>(all.size()), false, rng), hash_for(t, a, b, rng)};
    flow_table::insert_result r = t.insert(k.key, k.hash, when);
    EXPECT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    if (r.entry != nullptr) r.entry->state = tcp_state::udp;
    all.push_back(k);
    return k;
  };
  // Buckets pair even with odd, so x's alternatives are 0 and 3.
  const keyed x = add(0, 3, 1);  // lands in bucket 0, could live in bucket 3
  ASSERT_TRUE(in_bucket(t, 0, x.key));
  for (uint32_t i = 0; i < 15; ++i) add(i % 2, 1 - i % 2, 2 + i);  // buckets 0 and 1 only
  ASSERT_EQ(used_slots(t, 0), 8u);
  ASSERT_EQ(used_slots(t, 1), 8u);
  ASSERT_EQ(used_slots(t, 3), 0u);

  const keyed y = add(0, 1, 100);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.size(), 17u);
  EXPECT_TRUE(in_bucket(t, 3, x.key)) << "x should have moved to its other bucket";
  EXPECT_TRUE(in_bucket(t, 0, y.key));
  for (const keyed& k : all) EXPECT_NE(t.lookup(k.key, k.hash, 100), nullptr);
  EXPECT_EQ(count_live(t), 17u);

  // Nobody in buckets 0/1 can move now (x is gone): the next one evicts the oldest there.
  const keyed z{make_key(999, true, rng), hash_for(t, 1, 0, rng)};
  flow_table::insert_result r = t.insert(z.key, z.hash, 200);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_TRUE(r.evicted);
  EXPECT_EQ(r.displaced.key, all[1].key);  // inserted at time 2, the oldest left in 0/1
  EXPECT_EQ(t.stats().evictions, 1u);
  EXPECT_EQ(used_slots(t, 2), 0u);
  EXPECT_EQ(used_slots(t, 3), 1u);  // x only
}

// The worker looks a key up with the entry its signature matched a few packets earlier; inserts
// and removals in between may have moved the key, freed that slot or given it to another key.
TEST_F(FlowTable, StaleHintsStillFindTheKey) {
  flow_timeouts to;
  to.udp_ms = 50;
  flow_table t(32, to);  // 4 buckets
  std::mt19937 rng(7);
  const flow_key x = make_key(1, false, rng);
  const uint32_t hx = hash_for(t, 0, 3, rng);
  const flow_table::probe px = t.probe_for(hx);
  flow_entry* e = put(t, x, 10, tcp_state::udp, hx);
  ASSERT_NE(e, nullptr);
  ASSERT_TRUE(in_bucket(t, 0, x));

  // The matched entry itself: found, and expired exactly when lookup() says so.
  EXPECT_EQ(t.prefetch_entries(px), e);
  EXPECT_EQ(t.lookup(x, px, e, 60), e);
  EXPECT_EQ(t.lookup(x, px, e, 61), nullptr);
  EXPECT_EQ(t.lookup(x, px, nullptr, 20), e);

  // A free slot still holding x's bytes (x moved away from it): not taken for x.
  flow_entry* old = access::slot(t, 3, 5);
  *old = *e;
  old->state = tcp_state::empty;
  EXPECT_EQ(t.lookup(x, px, old, 20), e);

  // A slot now holding another key, and a slot of x's that was freed.
  const flow_key y = make_key(2, true, rng);
  flow_entry* ey = put(t, y, 10, tcp_state::udp, hash_for(t, 0, 3, rng));
  ASSERT_NE(ey, nullptr);
  EXPECT_EQ(t.lookup(x, px, ey, 20), e);
  t.remove(e);
  EXPECT_EQ(t.lookup(x, px, e, 20), nullptr);
}

TEST_F(FlowTable, FullBucketsMoveResidentsTwoHops) {
  flow_table t(32);  // 4 buckets
  std::mt19937 rng(121);
  std::vector<keyed> all;
  uint32_t next_id = 0;
  auto add = [&](uint32_t a, uint32_t b, uint32_t when) {
    keyed k{make_key(next_id++, false, rng), hash_for(t, a, b, rng)};
    flow_table::insert_result r = t.insert(k.key, k.hash, when);
    EXPECT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    if (r.entry != nullptr) r.entry->state = tcp_state::udp;
    all.push_back(k);
    return k;
  };
  // Bucket 2 full of entries whose other bucket is 3; bucket 3 empty.
  for (uint32_t i = 0; i < 16; ++i) add(2 + i % 2, 3 - i % 2, 1);
  std::vector<keyed> kept;
  for (const keyed& k : all) {
    if (in_bucket(t, 3, k.key)) {
      t.remove(t.lookup(k.key, k.hash, 1));
    } else {
      kept.push_back(k);
    }
  }
  all = kept;
  ASSERT_EQ(used_slots(t, 2), 8u);
  ASSERT_EQ(used_slots(t, 3), 0u);
  const keyed z = add(1, 2, 2);  // bucket 1 (2 is full); its other bucket is 2
  ASSERT_TRUE(in_bucket(t, 1, z.key));
  for (uint32_t i = 0; i < 15; ++i) add(i % 2, 1 - i % 2, 3 + i);
  ASSERT_EQ(used_slots(t, 0), 8u);
  ASSERT_EQ(used_slots(t, 1), 8u);
  ASSERT_EQ(t.size(), 24u);

  // Only z -> 2 and then some entry of 2 -> 3 frees a slot for a {0, 1} key.
  const keyed y = add(0, 1, 100);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.size(), 25u);
  EXPECT_TRUE(in_bucket(t, 2, z.key));
  EXPECT_TRUE(in_bucket(t, 1, y.key));
  EXPECT_EQ(used_slots(t, 3), 1u);
  for (const keyed& k : all) EXPECT_NE(t.lookup(k.key, k.hash, 100), nullptr);
}

// A key whose first bucket is `bucket`.
flow_key key_with_first_bucket(const flow_table& t, uint32_t bucket, uint32_t seed, std::mt19937& rng) {
  for (uint32_t i = 0;; ++i) {
    const flow_key k = make_key(seed + i, false, rng);
    if (access::bucket_a(t, hash_of(k)) == bucket) return k;
  }
}

TEST_F(FlowTable, RecentEstablishedFlowsAreProtected) {
  flow_table t(16);  // 2 buckets: one candidate set of 16 slots
  std::mt19937 rng(81);
  const uint32_t t0 = 10'000;
  std::vector<flow_key> keys;
  for (uint32_t i = 0; i < 16; ++i) {
    keys.push_back(make_key(i, i % 2 == 1, rng));
    ASSERT_NE(put(t, keys.back(), t0 + i, tcp_state::established), nullptr);
  }
  // The victim search looks at n1's first bucket: its residents, oldest first.
  const flow_key n1 = make_key(100, false, rng);
  const uint32_t first = access::bucket_a(t, hash_of(n1));
  std::vector<uint32_t> residents;
  for (uint32_t i = 0; i < 16; ++i)
    if (in_bucket(t, first, keys[i])) residents.push_back(i);
  ASSERT_EQ(residents.size(), 8u);
  const uint32_t oldest = residents[0], next = residents[1];
  for (uint32_t age : {500u, 999u}) {
    flow_table::insert_result r = t.insert(n1, hash_of(n1), t0 + oldest + age);
    EXPECT_EQ(r.entry, nullptr) << age;
    EXPECT_FALSE(r.evicted);
  }
  EXPECT_EQ(t.stats().failed_inserts, 2u);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.size(), 16u);
  for (const flow_key& k : keys) EXPECT_NE(t.lookup(k, hash_of(k), t0 + oldest + 999), nullptr);

  // Once the oldest established flow is protect_established_ms old it may go.
  flow_table::insert_result r =
      t.insert(n1, hash_of(n1), t0 + oldest + flow_table::protect_established_ms);
  ASSERT_NE(r.entry, nullptr);
  r.entry->state = tcp_state::udp;
  EXPECT_TRUE(r.evicted);
  EXPECT_EQ(r.displaced.key, keys[oldest]);
  EXPECT_EQ(t.stats().evictions, 1u);
  EXPECT_EQ(t.size(), 16u);

  // The next oldest of that bucket is 999 ms old: protected again.
  const flow_key n2 = key_with_first_bucket(t, first, 1'000, rng);
  EXPECT_EQ(t.insert(n2, hash_of(n2), t0 + next + 999).entry, nullptr);
  EXPECT_EQ(t.stats().failed_inserts, 3u);

  // A recent non-established flow as the oldest is evictable.
  flow_table u(16);
  std::vector<flow_key> ukeys;
  for (uint32_t i = 0; i < 16; ++i) {
    ukeys.push_back(make_key(200 + i, false, rng));
    ASSERT_NE(put(u, ukeys.back(), t0 + i, tcp_state::established), nullptr);
  }
  const flow_key n3 = key_with_first_bucket(u, first, 2'000, rng);
  residents.clear();
  for (uint32_t i = 0; i < 16; ++i)
    if (in_bucket(u, first, ukeys[i])) residents.push_back(i);
  ASSERT_EQ(residents.size(), 8u);
  flow_entry* syn = u.lookup(ukeys[residents[0]], hash_of(ukeys[residents[0]]), t0 + 50);
  ASSERT_NE(syn, nullptr);
  syn->state = tcp_state::syn_seen;
  r = u.insert(n3, hash_of(n3), t0 + 100);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_EQ(r.displaced.key, ukeys[residents[0]]);
  EXPECT_EQ(r.displaced.state, tcp_state::syn_seen);
  // Now the oldest is established and recent: even though it is old among them, it is kept.
  const flow_key n4 = key_with_first_bucket(u, first, 3'000, rng);
  EXPECT_EQ(u.insert(n4, hash_of(n4), t0 + 200).entry, nullptr);
  EXPECT_EQ(u.stats().failed_inserts, 1u);
}

TEST_F(FlowTable, ExpiredEntriesAreReused) {
  flow_timeouts to;
  to.udp_ms = 100;
  to.tcp_established_ms = 50;
  std::mt19937 rng(91);

  {  // The same key, expired but still in place, gets its own slot back.
    flow_table t(64, to);
    const flow_key k = make_key(1, true, rng);
    flow_entry* e = put(t, k, 0, tcp_state::udp);
    ASSERT_NE(e, nullptr);
    e->backend_id = 7;
    EXPECT_EQ(t.lookup(k, hash_of(k), 101), nullptr);
    flow_table::insert_result r = t.insert(k, hash_of(k), 101);
    EXPECT_EQ(r.entry, e);
    EXPECT_TRUE(r.evicted);
    EXPECT_EQ(r.displaced.key, k);
    EXPECT_EQ(r.displaced.backend_id, 7u);
    EXPECT_EQ(r.displaced.state, tcp_state::udp);
    EXPECT_EQ(e->backend_id, 0u);  // fresh entry, old fields cleared
    EXPECT_EQ(e->state, tcp_state::syn_seen);
    EXPECT_EQ(e->last_seen_ms, 101u);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(count_live(t), 1u);
    EXPECT_EQ(t.stats().expired, 1u);
    EXPECT_EQ(t.stats().evictions, 0u);
    EXPECT_EQ(t.lookup(k, hash_of(k), 101), e);
  }
  {  // Full buckets: the oldest expired entry is reused before any live one is evicted.
    flow_table t(16, to);
    std::vector<flow_entry*> es;
    std::vector<flow_key> keys;
    for (uint32_t i = 0; i < 16; ++i) {
      keys.push_back(make_key(10 + i, false, rng));
      es.push_back(put(t, keys.back(), i, i < 8 ? tcp_state::udp : tcp_state::established));
      ASSERT_NE(es.back(), nullptr);
    }
    // Refresh everything except udp keys[5] and established keys[9].
    for (uint32_t i = 0; i < 16; ++i) {
      if (i != 5 && i != 9) es[i]->last_seen_ms = 150;
    }
    const flow_key n1 = make_key(100, false, rng);
    flow_table::insert_result r = t.insert(n1, hash_of(n1), 160);
    ASSERT_NE(r.entry, nullptr);
    r.entry->state = tcp_state::udp;
    EXPECT_TRUE(r.evicted);
    EXPECT_EQ(r.displaced.key, keys[5]);  // expired (age 155 > 100) and older than keys[9]
    EXPECT_EQ(t.stats().expired, 1u);
    EXPECT_EQ(t.stats().evictions, 0u);
    EXPECT_EQ(t.size(), 16u);
    // keys[9] is an established entry seen 151 ms ago, but expired (timeout 50): reused, not
    // protected.
    const flow_key n2 = make_key(101, false, rng);
    r = t.insert(n2, hash_of(n2), 160);
    ASSERT_NE(r.entry, nullptr);
    EXPECT_EQ(r.displaced.key, keys[9]);
    EXPECT_EQ(t.stats().expired, 2u);
    EXPECT_EQ(t.stats().failed_inserts, 0u);
  }
  {  // An empty slot is preferred to an expired entry.
    flow_table t(16, to);
    for (uint32_t i = 0; i < 10; ++i)
      ASSERT_NE(put(t, make_key(200 + i, false, rng), 0, tcp_state::udp), nullptr);
    const flow_key n1 = make_key(300, false, rng);
    flow_table::insert_result r = t.insert(n1, hash_of(n1), 1'000);
    ASSERT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    EXPECT_EQ(t.size(), 11u);
    EXPECT_EQ(t.stats().expired, 0u);
  }
}

TEST_F(FlowTable, MillionEntriesFillTo90PercentWithoutEviction) {
  flow_table t(1u << 20);
  ASSERT_EQ(t.capacity(), 1u << 20);
  std::mt19937 rng(101);
  const size_t cap = t.capacity();
  size_t first_eviction_at = 0;
  std::vector<flow_key> sample;
  for (uint32_t i = 0; i < cap; ++i) {
    const flow_key k = make_key(i, (i & 3) == 0, rng);
    flow_table::insert_result r = t.insert(k, hash_of(k), 5);
    ASSERT_NE(r.entry, nullptr) << i;
    r.entry->state = tcp_state::udp;
    if (r.evicted) {
      first_eviction_at = t.size();  // size did not grow: the load when the table gave way
      break;
    }
    if (i % 997 == 0) sample.push_back(k);
  }
  const double load = first_eviction_at == 0 ? 1.0 : double(first_eviction_at) / double(cap);
  std::printf("[ flow_table ] 1M entries: first eviction at load factor %.4f (%zu entries)\n", load,
              first_eviction_at);
  RecordProperty("first_eviction_load", std::to_string(load));
  EXPECT_GE(load, 0.90);
  EXPECT_EQ(t.stats().failed_inserts, 0u);
  for (const flow_key& k : sample) EXPECT_NE(t.lookup(k, hash_of(k), 5), nullptr);
}

}  // namespace
}  // namespace tandem
