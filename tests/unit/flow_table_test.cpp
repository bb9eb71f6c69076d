#include "dataplane/flow_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_lcore.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dataplane/flow_hash.h"
#include "tests/support/eal_fixture.h"

namespace tandem {

// Reaches the table's private layout so tests can check placement, moves and eviction choices.
struct flow_table_test_access {
  static uint32_t bucket_count(const flow_table& t) { return t.bucket_count_; }
  static uint32_t bucket_a(const flow_table& t, uint32_t h) { return t.bucket_a(h); }
  static uint32_t bucket_b(const flow_table& t, uint32_t h) {
    return t.bucket_b(h, t.bucket_a(h));
  }
  static const flow_entry* entries(const flow_table& t) { return t.entries_; }
  static const ip_address* v6_clients(const flow_table& t) { return t.v6_clients_; }
  static const flow_entry* bucket(const flow_table& t, uint32_t b) {
    return &t.entries_[size_t{b} * flow_table::bucket_entries];
  }
  static flow_entry* slot(flow_table& t, uint32_t b, uint32_t i) {
    return &t.entries_[size_t{b} * flow_table::bucket_entries + i];
  }
  // Which bucket an entry pointer of `t` lies in.
  static uint32_t bucket_of(const flow_table& t, const flow_entry* e) {
    return static_cast<uint32_t>(static_cast<size_t>(e - t.entries_) / flow_table::bucket_entries);
  }
  // The side-array address of the slot `e` occupies.
  static const ip_address& v6_client_of(const flow_table& t, const flow_entry* e) {
    return t.v6_clients_[static_cast<size_t>(e - t.entries_)];
  }
  static uint64_t digest(const ip_address& a) {
    uint64_t lo, hi;
    std::memcpy(&lo, a.bytes, 8);
    std::memcpy(&hi, a.bytes + 8, 8);
    return flow_table::digest(lo, hi);
  }
  static bool from_rte(const flow_table& t) { return t.mem_from_rte_; }
};

// Readable keys in failure messages.
void PrintTo(const stored_flow_key& k, std::ostream* os) {
  *os << "{" << to_string(k.client) << " port " << ntohs(k.client_port) << " -> vip "
      << k.vip_id << " port " << ntohs(k.vip_port) << "}";
}

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

ip_address addr(const char* text) {
  const std::optional<ip_address> a = parse_ip_address(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(ip_address{});
}

// The table's hash of a key, the way the convenience overloads compute it.
uint32_t hash_of(const flow_key& k) { return flow_table::hash(flow_table::key_for(k)); }

bool same_key(const flow_table_key& a, const flow_table_key& b) {
  return a.k0 == b.k0 && a.k1 == b.k1;
}

std::vector<flow_key> make_keys(uint32_t n, uint32_t first, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<flow_key> keys;
  keys.reserve(n);
  for (uint32_t i = 0; i < n; ++i) keys.push_back(make_key(first + i, (i & 1) != 0, rng));
  return keys;
}

// Inserts and sets the state; fails the test if the insert fails.
flow_entry* put(flow_table& t, const flow_key& k, uint32_t now, tcp_state s) {
  flow_table::insert_result r = t.insert(k, now);
  EXPECT_NE(r.entry, nullptr);
  if (r.entry != nullptr) r.entry->state = s;
  return r.entry;
}

size_t count_live(const flow_table& t) {
  size_t n = 0;
  t.for_each([&](const flow_entry&) { ++n; });
  return n;
}

std::string key_bytes(const flow_key& k) {
  return std::string(reinterpret_cast<const char*>(&k), sizeof(flow_key));
}

// Every live entry sits in one of the two buckets its own hash names (moves must keep this, or
// lookups would miss it).
void expect_every_entry_in_its_buckets(const flow_table& t) {
  for (uint32_t b = 0; b < access::bucket_count(t); ++b) {
    const flow_entry* line = access::bucket(t, b);
    for (uint32_t s = 0; s < flow_table::bucket_entries; ++s) {
      if (line[s].state == tcp_state::empty) continue;
      const uint32_t h = flow_table::hash_of(line[s]);
      EXPECT_TRUE(access::bucket_a(t, h) == b || access::bucket_b(t, h) == b)
          << "bucket " << b << " slot " << s << " holds " << ::testing::PrintToString(t.key_of(line[s]));
    }
  }
}

// Keys inserted at `now` until every slot is taken (evictions of equally old entries allowed).
std::vector<flow_key> fill_completely(flow_table& t, uint32_t now, tcp_state s) {
  std::mt19937 rng(99);
  std::vector<flow_key> keys;
  for (uint32_t i = 0; t.size() < t.capacity() && i < 100'000; ++i) {
    flow_key k = make_key(500'000 + i, (i % 3) == 0, rng);
    if (put(t, k, now, s) == nullptr) break;
    keys.push_back(k);
  }
  EXPECT_EQ(t.size(), t.capacity());
  return keys;
}

// A fresh key (ids from `next_id`) whose buckets are exactly (a, b) in `t`.
flow_key key_with_buckets(const flow_table& t, uint32_t a, uint32_t b, bool v6,
                          uint32_t& next_id, std::mt19937& rng) {
  for (int i = 0; i < 1'000'000; ++i) {
    const flow_key k = make_key(next_id++, v6, rng);
    const uint32_t h = hash_of(k);
    if (access::bucket_a(t, h) == a && access::bucket_b(t, h) == b) return k;
  }
  ADD_FAILURE() << "no key has buckets (" << a << ", " << b << ")";
  return flow_key{};
}

// Keys placed in chosen buckets of a small table (as UDP flows, none evicted), remembered in
// insertion order for the final "every key still there" checks.
struct placed_keys {
  placed_keys(flow_table& table, uint32_t seed) : t(table), rng(seed) {}
  flow_key add(uint32_t a, uint32_t b, bool v6, uint32_t when) {
    const flow_key k = key_with_buckets(t, a, b, v6, next_id, rng);
    flow_table::insert_result r = t.insert(k, when);
    EXPECT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    if (r.entry != nullptr) r.entry->state = tcp_state::udp;
    all.push_back(k);
    return k;
  }
  // Every key of `all` is found, under its own key.
  void expect_all_found(uint32_t now) const {
    for (const flow_key& k : all) {
      const flow_entry* e = t.lookup(k, now);
      ASSERT_NE(e, nullptr) << ::testing::PrintToString(k);
      EXPECT_EQ(t.key_of(*e), k);
    }
  }
  flow_table& t;
  std::mt19937 rng;
  uint32_t next_id = 0;
  std::vector<flow_key> all;
};

uint32_t used_slots(const flow_table& t, uint32_t bucket) {
  uint32_t n = 0;
  const flow_entry* e = access::bucket(t, bucket);
  for (uint32_t i = 0; i < flow_table::bucket_entries; ++i) n += e[i].state != tcp_state::empty;
  return n;
}

bool in_bucket(const flow_table& t, uint32_t bucket, const flow_key& k) {
  const flow_entry* e = access::bucket(t, bucket);
  for (uint32_t i = 0; i < flow_table::bucket_entries; ++i)
    if (e[i].state != tcp_state::empty && t.key_of(e[i]) == k) return true;
  return false;
}

// Two different IPv6 clients (2001:db8::/32, random) with the same 32-bit digest.
std::pair<ip_address, ip_address> colliding_v6_clients(uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::unordered_map<uint32_t, ip_address> seen;
  seen.reserve(1u << 19);
  for (int i = 0; i < 2'000'000; ++i) {
    uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
    const uint64_t r0 = rng(), r1 = rng();
    std::memcpy(b + 4, &r0, 4);
    std::memcpy(b + 8, &r1, 8);
    const ip_address a = ip_address::from_v6(b);
    const uint64_t d = access::digest(a);
    EXPECT_LE(d, 0xffffffffull) << "a digest is 32 bits";
    auto [it, fresh] = seen.emplace(static_cast<uint32_t>(d), a);
    if (!fresh && !(it->second == a)) return {it->second, a};
  }
  ADD_FAILURE() << "no digest collision found";
  return {};
}

// Runs first in file order, before any test starts EAL.
// The worker builds an IPv6 flow's stored key as words in registers (key_words) and takes the
// table key from them: the words (and key_words_v4's) must give exactly what make_stored_key
// gives, or flows would be looked up under a different key than the one they were stored with.
TEST(StoredKeyWords, MatchMakeStoredKey) {
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
  }
}

// The compared key: the same from words, from the stored key and (IPv4) from key_for_v4, with
// each field where flow_table_key documents it and the entry holds it.
TEST(FlowTableKey, KeyForLayoutAndEveryFormAgree) {
  std::mt19937 rng(6);
  for (int i = 0; i < 3000; ++i) {
    const bool v6 = i % 2 == 0;
    flow_key k = make_key(static_cast<uint32_t>(i), v6, rng);
    k.vip_id = static_cast<uint16_t>(rng());
    k.vip_port = static_cast<uint16_t>(rng());
    const stored_key_words w = key_words(k.client, k.client_port, k.vip_port, k.vip_id);
    const flow_table_key fk = flow_table::key_for(k);
    ASSERT_TRUE(same_key(fk, flow_table::key_for(w))) << i;
    EXPECT_EQ(fk.ipv6(), v6) << i;
    EXPECT_EQ(fk.vip_id(), k.vip_id) << i;
    EXPECT_EQ(static_cast<uint16_t>(fk.k0 >> 32), k.client_port) << i;
    EXPECT_EQ(static_cast<uint16_t>(fk.k0 >> 48), k.vip_port) << i;
    EXPECT_EQ(fk.k1, uint64_t{k.vip_id} | (v6 ? 1ull << 63 : 0)) << "no other bits in k1 " << i;
    if (v6) {
      EXPECT_EQ(static_cast<uint32_t>(fk.k0), access::digest(k.client)) << i;
    } else {
      EXPECT_EQ(static_cast<uint32_t>(fk.k0), k.client.v4_be()) << i;
      ASSERT_TRUE(same_key(fk, flow_table::key_for_v4(k.client.v4_be(), k.client_port,
                                                      k.vip_port, k.vip_id)))
          << i;
    }
    EXPECT_EQ(flow_table::hash(fk), hash_of(k));
  }
  // Only ::ffff:0:0/96 is inline: the IPv4-compatible ::a.b.c.d, the IPv4-translated
  // ::ffff:0:a.b.c.d and :: are IPv6 clients.
  EXPECT_FALSE(flow_table::key_for(flow_key{addr("::ffff:1.2.3.4"), 1, 2, 3, 0}).ipv6());
  EXPECT_FALSE(flow_table::key_for(flow_key{addr("::ffff:0.0.0.0"), 1, 2, 3, 0}).ipv6());
  EXPECT_TRUE(flow_table::key_for(flow_key{addr("::1.2.3.4"), 1, 2, 3, 0}).ipv6());
  EXPECT_TRUE(flow_table::key_for(flow_key{addr("::ffff:0:1.2.3.4"), 1, 2, 3, 0}).ipv6());
  EXPECT_TRUE(flow_table::key_for(flow_key{addr("1::ffff:1.2.3.4"), 1, 2, 3, 0}).ipv6());
  EXPECT_TRUE(flow_table::key_for(flow_key{addr("::"), 1, 2, 3, 0}).ipv6());
}

// Runs before any test starts EAL: the table then falls back to aligned_alloc. Whatever the
// order, the memory source must follow whether EAL is up.
TEST(FlowTableNoEal, WorksWithOrWithoutEal) {
  flow_table t(100);
  EXPECT_EQ(access::from_rte(t), rte_lcore_count() > 0);
  EXPECT_EQ(t.capacity(), 100u);
  EXPECT_EQ(t.memory_bytes(), 100u * 48);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(access::entries(t)) % 64, 0u);
  std::mt19937 rng(2);
  const flow_key k = make_key(1, true, rng);
  flow_table::insert_result r = t.insert(k, 1);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r.entry) % 32, 0u);
  EXPECT_EQ(t.lookup(k, 1), r.entry);
  EXPECT_EQ(t.key_of(*r.entry), k);
  size_t n = 0;
  t.for_each([&](const flow_entry&) { ++n; });
  EXPECT_EQ(n, 1u);
}

class FlowTable : public ::testing::Test {
 protected:
  void SetUp() override { test::ensure_eal(); }
};

TEST_F(FlowTable, EntryLayoutAndAllocation) {
  // Issue 6: at most 64 bytes per tracked flow. 32-byte entries + 16 bytes of IPv6 client.
  EXPECT_EQ(sizeof(flow_entry), 32u);
  EXPECT_EQ(alignof(flow_entry), 32u);
  EXPECT_EQ(sizeof(stored_flow_key), 24u);
  EXPECT_EQ(flow_table::bucket_entries, 2u);
  EXPECT_EQ(flow_table::bytes_per_slot(), 48u);
  // The entry's first two words are what flow_table_detail::matches compares.
  EXPECT_EQ(offsetof(flow_entry, client), 0u);
  EXPECT_EQ(offsetof(flow_entry, client_port), 4u);
  EXPECT_EQ(offsetof(flow_entry, vip_port), 6u);
  EXPECT_EQ(offsetof(flow_entry, vip_id), 8u);
  EXPECT_EQ(offsetof(flow_entry, state), 10u);
  {
    flow_entry e;
    e.ipv6 = 1;
    EXPECT_EQ(flow_table_detail::load64(reinterpret_cast<const unsigned char*>(&e) + 8),
              1ull << 63)
        << "the ipv6 bit is bit 63 of the second word";
    e.ipv6 = 0;
    e.service_id = 0x7fff;
    EXPECT_EQ(flow_table_detail::load64(reinterpret_cast<const unsigned char*>(&e) + 8) &
                  flow_table_detail::k1_mask,
              0u)
        << "service_id must not reach the compared bits";
  }

  flow_table t(1000);
  EXPECT_TRUE(access::from_rte(t)) << "EAL is running: the table should live in rte_malloc memory";
  EXPECT_EQ(t.memory_bytes(), 1000u * 48);
  // One block: the entries, then one IPv6 address per slot.
  EXPECT_EQ(reinterpret_cast<const unsigned char*>(access::v6_clients(t)),
            reinterpret_cast<const unsigned char*>(access::entries(t)) + 1000 * 32);
  for (uint32_t b = 0; b < access::bucket_count(t); ++b) {
    const flow_entry* e = access::bucket(t, b);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(e) % 64, 0u);
    for (uint32_t i = 0; i < flow_table::bucket_entries; ++i) {
      EXPECT_EQ(e[i].state, tcp_state::empty);
      EXPECT_EQ(flow_table_detail::load64(&e[i]), 0u);
    }
  }
  for (size_t i = 0; i < t.capacity(); ++i) EXPECT_EQ(access::v6_clients(t)[i], ip_address{});
  std::mt19937 rng(1);
  flow_entry* e = put(t, make_key(1, false, rng), 5, tcp_state::udp);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e) % 32, 0u);
  // 1 M (2^20) flows at 80 % load: 1,310,720 slots, 48 bytes each: 60 MiB.
  flow_table big(1'310'720);
  EXPECT_EQ(big.capacity(), 1'310'720u);
  EXPECT_EQ(big.memory_bytes(), size_t{1'310'720} * 48);
  EXPECT_LE(big.memory_bytes(), (1u << 20) * 64);
  EXPECT_LE(big.memory_bytes(), 64u << 20);
}

TEST_F(FlowTable, CapacityRoundsUpToWholeBucketsOfTwo) {
  const std::pair<size_t, size_t> cases[] = {
      {0, 4},       {1, 4},           {2, 4},           {3, 4},
      {4, 4},       {5, 6},           {6, 6},           {7, 8},
      {100, 100},   {101, 102},       {1000, 1000},     {1001, 1002},
      {1u << 20, 1u << 20}, {(1u << 20) + 1, (1u << 20) + 2}, {1'310'720, 1'310'720},
      {1'000'001, 1'000'002},
  };
  for (const auto& [asked, expected] : cases) {
    flow_table t(asked);
    EXPECT_EQ(t.capacity(), expected) << "capacity " << asked;
    EXPECT_EQ(access::bucket_count(t), expected / flow_table::bucket_entries);
    EXPECT_EQ(t.memory_bytes(), expected * flow_table::bytes_per_slot());
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(count_live(t), 0u);
  }
  // More than 2^31 slots is refused before anything is allocated.
  EXPECT_THROW(flow_table((size_t{1} << 31) + 1), std::length_error);
  EXPECT_THROW(flow_table(std::numeric_limits<size_t>::max()), std::length_error);
}

TEST_F(FlowTable, BucketChoicesDifferAndAreSpread) {
  std::mt19937 rng(7);
  for (size_t cap : {4u, 6u, 16u, 2048u, 1u << 20}) {
    flow_table t(cap);
    const uint32_t n = access::bucket_count(t);
    std::set<uint32_t> partners_of_zero;
    std::vector<uint32_t> count_a(n <= 1024 ? n : 0), count_b(n <= 1024 ? n : 0);
    uint32_t close = 0;  // |a - b| < n / 100
    const int hashes = 200'000;
    for (int i = 0; i < hashes; ++i) {
      const uint32_t h = rng();
      const uint32_t a = access::bucket_a(t, h), b = access::bucket_b(t, h);
      ASSERT_LT(a, n);
      ASSERT_LT(b, n);
      ASSERT_NE(a, b) << "hash " << h;
      if (i < 100) {
        const flow_table::probe p = t.probe_for(h);
        ASSERT_EQ(p.a, access::bucket(t, a));
        ASSERT_EQ(p.b, access::bucket(t, b));
      }
      if (a == 0) partners_of_zero.insert(b);
      if (!count_a.empty()) {
        ++count_a[a];
        ++count_b[b];
      }
      close += (a > b ? a - b : b - a) < n / 100;
    }
    if (n == 2) {
      EXPECT_EQ(partners_of_zero, std::set<uint32_t>{1});
    } else if (n == 3) {
      EXPECT_EQ(partners_of_zero, (std::set<uint32_t>{1, 2}));
    } else if (n == 8) {
      EXPECT_EQ(partners_of_zero, (std::set<uint32_t>{1, 2, 3, 4, 5, 6, 7}));
    } else if (n == 1024) {
      // ~195 hashes per bucket, for a and for b; ~177 distinct partners of bucket 0 expected.
      for (uint32_t x = 0; x < n; ++x) {
        EXPECT_GT(count_a[x], 100u) << x;
        EXPECT_LT(count_a[x], 300u) << x;
        EXPECT_GT(count_b[x], 100u) << x;
        EXPECT_LT(count_b[x], 300u) << x;
      }
      EXPECT_GT(partners_of_zero.size(), 150u);
    } else {
      // b is not a neighbour of a: about 2 % of pairs are within n/100 of each other.
      EXPECT_LT(close, static_cast<uint32_t>(hashes / 20)) << "n " << n;
    }
  }
}

TEST_F(FlowTable, InsertLookupRemoveRoundTrip) {
  flow_table t(1u << 14);
  const std::vector<flow_key> keys = make_keys(12'000, 0, 11);  // ~73% load, v4 and v6
  const std::vector<flow_key> absent = make_keys(2'000, 1'000'000, 12);
  const uint32_t now = 1'000;

  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_table::insert_result r;
    if (i % 2 == 0) {
      r = t.insert(keys[i], now);
    } else {  // the hot-path overload, as the worker calls it
      const flow_table_key k = flow_table::key_for(keys[i]);
      const flow_table::probe p = t.probe_for(flow_table::hash(k));
      flow_table::prefetch(p);
      r = t.insert(keys[i], k, p, now);
    }
    ASSERT_NE(r.entry, nullptr) << i;
    EXPECT_FALSE(r.evicted) << i;
    EXPECT_EQ(t.key_of(*r.entry), keys[i]);
    EXPECT_EQ(flow_table::hash_of(*r.entry), hash_of(keys[i]));
    EXPECT_EQ(r.entry->ipv6, keys[i].client.is_v4() ? 0 : 1);
    EXPECT_EQ(r.entry->last_seen_ms, now);
    EXPECT_EQ(r.entry->state, tcp_state::syn_seen);  // placeholder until the caller sets it
    EXPECT_EQ(r.entry->backend_id, 0u);
    EXPECT_EQ(r.entry->generation, 0u);
    r.entry->backend_id = static_cast<uint16_t>(i);
    r.entry->state = is_tcp(keys[i]) ? tcp_state::established : tcp_state::udp;
    ASSERT_EQ(t.size(), i + 1u);
  }
  EXPECT_EQ(t.stats().inserts, keys.size());
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.stats().failed_inserts, 0u);
  EXPECT_EQ(count_live(t), keys.size());
  expect_every_entry_in_its_buckets(t);

  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e;
    if (i % 3 == 0) {
      e = t.lookup(keys[i], now + 10);
    } else {
      const flow_table_key k = flow_table::key_for(keys[i]);
      const flow_table::probe p = t.probe_for(flow_table::hash(k));
      t.prefetch_clients(p, k);
      e = t.lookup(keys[i], k, p, now + 10);
    }
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->backend_id, static_cast<uint16_t>(i));
    EXPECT_EQ(t.key_of(*e), keys[i]);
    const uint32_t h = hash_of(keys[i]);
    const uint32_t b = access::bucket_of(t, e);
    EXPECT_TRUE(b == access::bucket_a(t, h) || b == access::bucket_b(t, h)) << i;
  }
  for (const flow_key& k : absent) EXPECT_EQ(t.lookup(k, now), nullptr);

  // Remove every other key.
  for (uint32_t i = 0; i < keys.size(); i += 2) {
    flow_entry* e = t.lookup(keys[i], now);
    ASSERT_NE(e, nullptr);
    t.remove(e);
    EXPECT_EQ(e->state, tcp_state::empty);
  }
  EXPECT_EQ(t.size(), keys.size() / 2);
  EXPECT_EQ(count_live(t), keys.size() / 2);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], now);
    if (i % 2 == 0) {
      EXPECT_EQ(e, nullptr) << i;
    } else {
      ASSERT_NE(e, nullptr) << i;
      EXPECT_EQ(e->backend_id, static_cast<uint16_t>(i));
    }
  }
  // Re-insert the removed half.
  for (uint32_t i = 0; i < keys.size(); i += 2) {
    flow_table::insert_result r = t.insert(keys[i], now + 20);
    ASSERT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    r.entry->state = tcp_state::udp;
    r.entry->backend_id = static_cast<uint16_t>(i + 20'000);
  }
  EXPECT_EQ(t.size(), keys.size());
  EXPECT_EQ(t.stats().evictions, 0u);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], now + 20);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->backend_id, static_cast<uint16_t>(i % 2 == 0 ? i + 20'000 : i));
  }
}

TEST_F(FlowTable, RemoveFreesTheSlot) {
  flow_table t(4);  // 2 buckets: every key may use every slot
  const std::vector<flow_key> keys = fill_completely(t, 0, tcp_state::udp);
  ASSERT_EQ(t.size(), 4u);
  ASSERT_EQ(keys.size(), 4u);
  flow_entry* e = t.lookup(keys.back(), 0);
  ASSERT_NE(e, nullptr);
  t.remove(e);
  EXPECT_EQ(t.size(), 3u);
  t.remove(e);  // a second remove must not corrupt the count
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.lookup(keys.back(), 0), nullptr);
  for (size_t i = 0; i + 1 < keys.size(); ++i) EXPECT_NE(t.lookup(keys[i], 0), nullptr);

  std::mt19937 rng(3);
  const flow_key k = make_key(77, true, rng);
  flow_table::insert_result r = t.insert(k, 1);
  EXPECT_EQ(r.entry, e);  // the freed slot is the only one
  EXPECT_FALSE(r.evicted);
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.key_of(*e), k);
}

// Inserts `first` then `second` (neither present) at time `now` and checks that they are two
// flows: each looks up to its own entry and key, and removing `first` leaves `second`.
void expect_two_flows(flow_table& t, const flow_key& first, const flow_key& second, uint32_t now) {
  flow_entry* e1 = put(t, first, now, tcp_state::established);
  ASSERT_NE(e1, nullptr);
  e1->backend_id = 1;
  EXPECT_EQ(t.lookup(second, now), nullptr);
  flow_table::insert_result r = t.insert(second, now + 1);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_FALSE(r.evicted);
  r.entry->state = tcp_state::established;
  r.entry->backend_id = 2;
  EXPECT_EQ(t.size(), 2u);
  flow_entry* f1 = t.lookup(first, now + 2);
  flow_entry* f2 = t.lookup(second, now + 2);
  ASSERT_NE(f1, nullptr);
  ASSERT_NE(f2, nullptr);
  EXPECT_NE(f1, f2);
  EXPECT_EQ(f1->backend_id, 1u);
  EXPECT_EQ(f2->backend_id, 2u);
  EXPECT_EQ(t.key_of(*f1), first);
  EXPECT_EQ(t.key_of(*f2), second);
  t.remove(f1);
  EXPECT_EQ(t.lookup(first, now + 2), nullptr);
  EXPECT_EQ(t.lookup(second, now + 2), f2);
}

// In a two-bucket table every key has the same four candidates, so lookups must tell keys apart
// by comparing every field: keys one field apart are separate flows.
TEST_F(FlowTable, EveryKeyFieldIsCompared) {
  std::mt19937 rng(5);
  for (bool v6 : {false, true}) {
    const flow_key base = make_key(1, v6, rng);
    std::vector<std::pair<const char*, flow_key>> variants;
    auto variant = [&](const char* what, auto change) {
      flow_key k = base;
      change(k);
      variants.emplace_back(what, k);
    };
    variant("client_port low bit", [](flow_key& k) { k.client_port ^= 1; });
    variant("client_port high bit", [](flow_key& k) { k.client_port ^= 0x8000; });
    variant("vip_port", [](flow_key& k) { k.vip_port ^= 0x0100; });
    variant("vip_id low bit", [](flow_key& k) { k.vip_id ^= 1; });
    variant("vip_id high bit", [](flow_key& k) { k.vip_id ^= 0x8000; });
    variant("client last byte", [](flow_key& k) { k.client.bytes[15] ^= 1; });
    variant("client first byte of its low 32 bits", [](flow_key& k) { k.client.bytes[12] ^= 0x80; });
    if (v6) {
      variant("client prefix", [](flow_key& k) { k.client.bytes[0] ^= 1; });
      variant("client middle", [](flow_key& k) { k.client.bytes[9] ^= 0x10; });
    }
    for (const auto& [what, other] : variants) {
      SCOPED_TRACE(std::string(v6 ? "IPv6 " : "IPv4 ") + what);
      ASSERT_FALSE(other == base);
      flow_table t(4);
      expect_two_flows(t, base, other, 10);
    }
  }
}

// The entry's second word also holds the state, colour, backend and service: none of it may
// take part in the compare (beyond "live"), whatever the values.
TEST_F(FlowTable, NonKeyFieldsDoNotAffectMatching) {
  std::mt19937 rng(8);
  const tcp_state states[] = {tcp_state::syn_seen, tcp_state::established, tcp_state::closing,
                              tcp_state::closed, tcp_state::udp};
  for (bool v6 : {false, true}) {
    for (tcp_state s : states) {
      flow_table t(64);
      const flow_key k = make_key(static_cast<uint32_t>(s), v6, rng);
      flow_entry* e = put(t, k, 100, s);
      ASSERT_NE(e, nullptr);
      e->flow_colour = colour::green;
      e->backend_id = 0xffff;
      e->service_id = 0x7fff;
      e->generation = 0xffffffffu;
      e->client_seq = 0xffffffffu;
      e->client_ack = 0xffffffffu;
      EXPECT_EQ(t.lookup(k, 101), e) << v6 << " state " << static_cast<int>(s);
      EXPECT_EQ(t.key_of(*e), k);
      EXPECT_EQ(flow_table::hash_of(*e), hash_of(k));
      EXPECT_EQ(e->ipv6, v6 ? 1 : 0);
      e->service_id = 0;
      EXPECT_EQ(t.lookup(k, 101), e);
    }
  }
}

TEST_F(FlowTable, KeyOfReturnsTheInsertedKey) {
  flow_table t(1024);
  std::mt19937 rng(9);
  std::vector<flow_key> keys;
  for (uint32_t i = 0; i < 100; ++i) keys.push_back(make_key(i, i % 2 == 1, rng));
  const uint16_t ports[2] = {htons(40000), htons(443)};
  // IPv4-mapped clients with IPv6 VIP ids: stored inline (the table knows the client only).
  keys.push_back(flow_key{addr("::ffff:192.0.2.1"), ports[0], ports[1], 2, 0});
  keys.push_back(flow_key{addr("::ffff:192.0.2.1"), ports[0], ports[1], 3, 0});
  keys.push_back(flow_key{addr("::ffff:0.0.0.0"), 0, 0, 0, 0});  // an all-zero compared key
  // Near misses of the mapped prefix, and the all-zero address: IPv6 clients, distinct flows.
  keys.push_back(flow_key{addr("::192.0.2.1"), ports[0], ports[1], 2, 0});
  keys.push_back(flow_key{addr("::ffff:0:192.0.2.1"), ports[0], ports[1], 2, 0});
  keys.push_back(flow_key{addr("1::ffff:192.0.2.1"), ports[0], ports[1], 2, 0});
  keys.push_back(flow_key{addr("::"), 0, 0, 0, 0});
  keys.push_back(flow_key{addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 0xffff, 0xffff, 0xffff, 0});

  std::vector<const flow_entry*> entries;
  for (const flow_key& k : keys) {
    flow_table::insert_result r = t.insert(k, 7);
    ASSERT_NE(r.entry, nullptr) << ::testing::PrintToString(k);
    EXPECT_FALSE(r.evicted);
    r.entry->state = tcp_state::udp;
    EXPECT_EQ(t.key_of(*r.entry), k);
  }
  EXPECT_EQ(t.size(), keys.size());
  std::set<std::string> seen;
  for (const flow_key& k : keys) {
    SCOPED_TRACE(::testing::PrintToString(k));
    const flow_entry* e = t.lookup(k, 8);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(t.key_of(*e), k);
    EXPECT_EQ(flow_table::hash_of(*e), flow_table::hash(flow_table::key_for(k)));
    EXPECT_TRUE(same_key(flow_table::key_of_entry(*e), flow_table::key_for(k)));
    EXPECT_EQ(e->ipv6, k.client.is_v4() ? 0 : 1);
    if (!k.client.is_v4()) {
      EXPECT_EQ(access::v6_client_of(t, e), k.client);
    }
    EXPECT_TRUE(seen.insert(key_bytes(t.key_of(*e))).second);
  }
  // for_each sees exactly these keys.
  std::set<std::string> walked;
  t.for_each([&](const flow_entry& e) { walked.insert(key_bytes(t.key_of(e))); });
  EXPECT_EQ(walked, seen);
}

TEST_F(FlowTable, IPv6ClientsWithTheSameDigestAreDistinctFlows) {
  const auto [c1, c2] = colliding_v6_clients(2024);
  ASSERT_FALSE(c1 == c2);
  ASSERT_EQ(access::digest(c1), access::digest(c2));
  const flow_key k1{c1, htons(5000), htons(443), 2, 0};
  const flow_key k2{c2, htons(5000), htons(443), 2, 0};
  // Same compared key, same hash, same buckets: only the side array tells them apart.
  ASSERT_TRUE(same_key(flow_table::key_for(k1), flow_table::key_for(k2)));
  ASSERT_EQ(hash_of(k1), hash_of(k2));

  for (size_t cap : {size_t{4}, size_t{1024}}) {
    SCOPED_TRACE("capacity " + std::to_string(cap));
    flow_table t(cap);
    flow_table::insert_result r1 = t.insert(k1, 10);
    ASSERT_NE(r1.entry, nullptr);
    EXPECT_FALSE(r1.evicted);
    r1.entry->state = tcp_state::established;
    r1.entry->backend_id = 1;
    EXPECT_EQ(t.lookup(k2, 10), nullptr) << "k2 is not in the table yet";
    flow_table::insert_result r2 = t.insert(k2, 11);
    ASSERT_NE(r2.entry, nullptr);
    EXPECT_FALSE(r2.evicted) << "inserting k2 must not take k1's entry";
    EXPECT_NE(r2.entry, r1.entry);
    r2.entry->state = tcp_state::established;
    r2.entry->backend_id = 2;
    EXPECT_EQ(t.size(), 2u);
    EXPECT_EQ(t.stats().evictions, 0u);

    const flow_table_key fk = flow_table::key_for(k1);
    const flow_table::probe p = t.probe_for(flow_table::hash(fk));
    t.prefetch_clients(p, fk);
    flow_entry* e1 = t.lookup(k1, fk, p, 12);
    flow_entry* e2 = t.lookup(k2, fk, p, 12);
    ASSERT_NE(e1, nullptr);
    ASSERT_NE(e2, nullptr);
    EXPECT_NE(e1, e2);
    EXPECT_EQ(e1->backend_id, 1u);
    EXPECT_EQ(e2->backend_id, 2u);
    EXPECT_EQ(t.key_of(*e1), k1);
    EXPECT_EQ(t.key_of(*e2), k2);

    // Removing one leaves the other, whichever is found first.
    t.remove(e1);
    EXPECT_EQ(t.lookup(k1, 12), nullptr);
    EXPECT_EQ(t.lookup(k2, 12), e2);
    r1 = t.insert(k1, 13);
    ASSERT_NE(r1.entry, nullptr);
    EXPECT_FALSE(r1.evicted);
    r1.entry->state = tcp_state::udp;
    r1.entry->backend_id = 3;
    e2 = t.lookup(k2, 13);
    ASSERT_NE(e2, nullptr);
    t.remove(e2);
    EXPECT_EQ(t.lookup(k2, 13), nullptr);
    ASSERT_NE(t.lookup(k1, 13), nullptr);
    EXPECT_EQ(t.lookup(k1, 13)->backend_id, 3u);
    EXPECT_EQ(t.size(), 1u);
  }
}

TEST_F(FlowTable, IPv6ClientWhoseDigestIsAnIPv4AddressIsADistinctFlow) {
  std::mt19937 rng(10);
  // A random IPv6 client, and the IPv4 client whose address equals its digest; the same for ::.
  const flow_key v6 = make_key(12345, true, rng);
  const flow_key v4{ip_address::from_v4_be(static_cast<uint32_t>(access::digest(v6.client))),
                    v6.client_port, v6.vip_port, v6.vip_id, 0};
  const flow_key zero6{addr("::"), htons(1), htons(2), 3, 0};
  const flow_key zero4{ip_address::from_v4_be(static_cast<uint32_t>(access::digest(zero6.client))),
                       htons(1), htons(2), 3, 0};
  for (const auto& [a, b] : {std::pair{v6, v4}, std::pair{zero6, zero4}}) {
    SCOPED_TRACE(::testing::PrintToString(a));
    const flow_table_key ka = flow_table::key_for(a), kb = flow_table::key_for(b);
    ASSERT_EQ(ka.k0, kb.k0) << "same client word and ports";
    ASSERT_EQ(ka.k1 ^ kb.k1, 1ull << 63) << "only the ipv6 bit differs";
    for (bool v6_first : {true, false}) {
      flow_table t(4);  // both have the same four candidates
      expect_two_flows(t, v6_first ? a : b, v6_first ? b : a, 1);
    }
  }
}

// The digest is what the bucket hash sees of an IPv6 client: clients numbered within 32 bits
// (a /96, or hosts ::1, ::2, ... of one /64) must not pile into shared digests, or they would
// share buckets and fail to insert however empty the table (a folding xor lost 3 bits). The
// keyed digest does not guarantee distinct values as CRC-32C did (200,000 random values would
// share about 5), but these structured sets gave none under 260 random secrets.
TEST_F(FlowTable, IPv6DigestsDifferWithin32Bits) {
  std::mt19937_64 rng(17);
  {  // Every address of a /96 slice: all digests distinct.
    const ip_address base = addr("2001:db8:1:2:3:4::");
    std::unordered_map<uint32_t, uint32_t> seen;
    seen.reserve(1u << 18);
    for (uint32_t i = 0; i < 200'000; ++i) {
      ip_address a = base;
      const uint32_t be = htonl(i);
      std::memcpy(a.bytes + 12, &be, 4);
      const auto [it, fresh] = seen.emplace(static_cast<uint32_t>(access::digest(a)), i);
      ASSERT_TRUE(fresh) << "hosts " << it->second << " and " << i << " share a digest";
    }
  }
  // Any difference confined to 32 consecutive bits, anywhere in the address.
  for (int trial = 0; trial < 100'000; ++trial) {
    ip_address a;
    const uint64_t r0 = rng(), r1 = rng();
    std::memcpy(a.bytes, &r0, 8);
    std::memcpy(a.bytes + 8, &r1, 8);
    const uint32_t shift = static_cast<uint32_t>(rng() % 97);  // bits [shift, shift + 32)
    const uint64_t burst = (rng() & 0xffffffffu) | 1;           // nonzero
    uint64_t lo, hi;
    std::memcpy(&lo, a.bytes, 8);
    std::memcpy(&hi, a.bytes + 8, 8);
    const uint64_t dlo = shift < 64 ? burst << shift : 0;
    const uint64_t dhi = shift == 0 ? 0 : shift < 64 ? burst >> (64 - shift) : burst << (shift - 64);
    ip_address b = a;
    lo ^= dlo;
    hi ^= dhi;
    std::memcpy(b.bytes, &lo, 8);
    std::memcpy(b.bytes + 8, &hi, 8);
    ASSERT_FALSE(a == b);
    ASSERT_NE(access::digest(a), access::digest(b)) << "trial " << trial << " shift " << shift;
  }
  // 200 hosts of one /64, one port and VIP: all insert into a 1,024-slot table, all found.
  flow_table t(1024);
  std::vector<flow_key> keys;
  for (uint32_t i = 1; i <= 200; ++i) {
    ip_address a = addr("2001:db8:0:1::");
    const uint32_t be = htonl(i);
    std::memcpy(a.bytes + 12, &be, 4);
    keys.push_back(flow_key{a, htons(33000), htons(443), 2, 0});
    flow_table::insert_result r = t.insert(keys.back(), 1);
    ASSERT_NE(r.entry, nullptr) << i;
    EXPECT_FALSE(r.evicted) << i;
    r.entry->state = tcp_state::established;
  }
  EXPECT_EQ(t.size(), 200u);
  EXPECT_EQ(t.stats().evictions, 0u);
  for (const flow_key& k : keys) {
    const flow_entry* e = t.lookup(k, 2);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(t.key_of(*e), k);
  }
}

#if defined(__SSE4_2__)
// The bucket hash and IPv6 digest before they were keyed: CRC-32C with constant seeds.
uint32_t unkeyed_crc_hash(const flow_table_key& k) {
  constexpr uint32_t old_seed = 0x9e3779b9u;
  return mix32(static_cast<uint32_t>(_mm_crc32_u64(_mm_crc32_u64(old_seed, k.k0), k.k1)));
}
uint32_t unkeyed_crc_digest(const ip_address& a) {
  uint64_t lo, hi;
  std::memcpy(&lo, a.bytes, 8);
  std::memcpy(&hi, a.bytes + 8, 8);
  return static_cast<uint32_t>(_mm_crc32_u64(_mm_crc32_u64(0x6a09e667u, lo), hi));
}

// What an attacker computes against a CRC: it is linear over GF(2), crc(c, x ^ d) = crc(c, x) ^
// crc(0, d), so the changes d to the low `bits` bits of a word that leave every CRC unchanged
// are the kernel of a 32-column matrix, and a change with a given effect `delta` solves it.
struct crc_solver {
  struct row {
    uint32_t v = 0;  // crc(0, m)
    uint64_t m = 0;  // the change
  };
  row pivots[32];  // by the top bit of v
  std::vector<uint64_t> kernel;

  explicit crc_solver(uint32_t bits) {
    for (uint32_t i = 0; i < bits; ++i) {
      row r{static_cast<uint32_t>(_mm_crc32_u64(0, uint64_t{1} << i)), uint64_t{1} << i};
      reduce(r);
      if (r.v == 0)
        kernel.push_back(r.m);
      else
        pivots[31 - std::countl_zero(r.v)] = r;
    }
  }
  void reduce(row& r) const {
    for (int b = 31; b >= 0; --b)
      if ((r.v >> b & 1) && pivots[b].v != 0) {
        r.v ^= pivots[b].v;
        r.m ^= pivots[b].m;
      }
  }
  // A change d with crc(0, d) == delta, if the bits reach it.
  std::optional<uint64_t> solve(uint32_t delta) const {
    row r{delta, 0};
    reduce(r);
    if (r.v != 0) return std::nullopt;
    return r.m;
  }
  // The n-th nonzero change that leaves the CRC as it is (n >= 1).
  uint64_t silent_change(uint32_t n) const {
    uint64_t d = 0;
    for (size_t j = 0; j < kernel.size(); ++j)
      if (n >> j & 1) d ^= kernel[j];
    return d;
  }
};

// An idle established flow, and 64 SYNs from other clients and ports whose keys an attacker
// computed to share its unkeyed CRC (and so both its buckets): with the keyed hash they land
// anywhere, and the flow stays.
TEST_F(FlowTable, KeysComputedToCollideWithAFlowDoNotEvictIt) {
  const crc_solver solver(48);  // the client controls its address and port: k0's low 48 bits
  ASSERT_GE(solver.kernel.size(), 16u);
  flow_key victim;
  victim.client = addr("192.0.2.77");
  victim.client_port = htons(40001);
  victim.vip_port = htons(443);
  victim.vip_id = 0;
  const flow_table_key vk = flow_table::key_for(victim);
  flow_table t(1024);
  ASSERT_NE(put(t, victim, 0, tcp_state::established), nullptr);
  uint32_t same_hash = 0;
  for (uint32_t n = 1; n <= 64; ++n) {
    const uint64_t k0 = vk.k0 ^ solver.silent_change(n);
    flow_key attacker = victim;
    attacker.client = ip_address::from_v4_be(static_cast<uint32_t>(k0));
    attacker.client_port = static_cast<uint16_t>(k0 >> 32);
    const flow_table_key ak = flow_table::key_for(attacker);
    ASSERT_EQ(ak.k0, k0);
    ASSERT_FALSE(same_key(ak, vk));
    ASSERT_EQ(unkeyed_crc_hash(ak), unkeyed_crc_hash(vk)) << "the attack works on the old hash";
    same_hash += flow_table::hash(ak) == flow_table::hash(vk);
    // 5 s later: the flow is past its 1 s of protection from eviction.
    ASSERT_NE(put(t, attacker, 5'000, tcp_state::syn_seen), nullptr) << n;
  }
  EXPECT_EQ(same_hash, 0u);
  EXPECT_EQ(t.stats().evictions, 0u);
  const flow_entry* e = t.lookup(victim, 5'001);
  ASSERT_NE(e, nullptr) << "the idle flow was evicted";
  EXPECT_EQ(e->state, tcp_state::established);
}

// The same against an IPv6 flow from another /64: the attacker picks interface ids in its own
// /64 whose unkeyed digest is the victim's, so with the victim's ports the compared key would
// be the victim's and share its buckets whatever the bucket hash. The keyed digest differs.
TEST_F(FlowTable, IPv6ClientsComputedToShareAFlowsDigestDoNotEvictIt) {
  const crc_solver solver(64);  // the interface id: the address's second 8 bytes
  flow_key victim;
  victim.client = addr("2001:db8:aaaa:1::1234");
  victim.client_port = htons(40001);
  victim.vip_port = htons(443);
  victim.vip_id = 2;
  const uint32_t vd = unkeyed_crc_digest(victim.client);
  const ip_address prefix = addr("2001:db8:bbbb:2::");
  // Interface id 0 in the attacker's /64, then the change that gives it the victim's digest.
  const std::optional<uint64_t> fix = solver.solve(unkeyed_crc_digest(prefix) ^ vd);
  ASSERT_TRUE(fix.has_value());
  flow_table t(1024);
  ASSERT_NE(put(t, victim, 0, tcp_state::established), nullptr);
  uint32_t same_digest = 0;
  for (uint32_t n = 0; n < 16; ++n) {
    const uint64_t iid = *fix ^ solver.silent_change(n);
    flow_key attacker = victim;
    attacker.client = prefix;
    std::memcpy(attacker.client.bytes + 8, &iid, 8);
    ASSERT_EQ(unkeyed_crc_digest(attacker.client), vd) << "the attack works on the old digest";
    ASSERT_FALSE(attacker.client == victim.client);
    same_digest += access::digest(attacker.client) == access::digest(victim.client);
    ASSERT_NE(put(t, attacker, 5'000, tcp_state::syn_seen), nullptr) << n;
  }
  EXPECT_EQ(same_digest, 0u);
  EXPECT_EQ(t.stats().evictions, 0u);
  const flow_entry* e = t.lookup(victim, 5'001);
  ASSERT_NE(e, nullptr) << "the idle flow was evicted";
  EXPECT_EQ(t.key_of(*e), victim);
}
#endif

// Every process draws its own secret: the same key lands in other buckets under another one.
TEST(FlowTableSecret, DifferentSecretsPlaceKeysDifferently) {
  const flow_table_secret s1 = make_flow_table_secret(1), s2 = make_flow_table_secret(2);
  const flow_table_secret s1_again = make_flow_table_secret(1);
  EXPECT_EQ(std::memcmp(&s1, &s1_again, sizeof s1), 0) << "a seed gives one secret";
  std::mt19937 rng(9);
  uint32_t same = 0;
  for (uint32_t i = 0; i < 1000; ++i) {
    const flow_table_key k = flow_table::key_for(make_key(i, i % 4 == 0, rng));
    same += flow_table::hash(k, s1) == flow_table::hash(k, s2);
  }
  EXPECT_LE(same, 1u);
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
  for (bool v6 : {false, true}) {
    for (const auto& c : cases) {
      SCOPED_TRACE(std::string(v6 ? "IPv6" : "IPv4") + " state " +
                   std::to_string(static_cast<int>(c.state)));
      flow_table t(64, to);
      const flow_key k = make_key(3, v6, rng);
      const uint32_t t0 = 1'000;
      flow_entry* e = put(t, k, t0, c.state);
      ASSERT_NE(e, nullptr);
      EXPECT_EQ(t.lookup(k, t0), e);
      EXPECT_EQ(t.lookup(k, t0 + c.timeout), e);
      EXPECT_FALSE(t.expired(*e, t0 + c.timeout));
      EXPECT_EQ(t.lookup(k, t0 + c.timeout + 1), nullptr);
      EXPECT_TRUE(t.expired(*e, t0 + c.timeout + 1));
      // Absent for lookups, but left in place for the scanner to report.
      EXPECT_EQ(t.size(), 1u);
      EXPECT_EQ(count_live(t), 1u);
      EXPECT_EQ(e->state, c.state);
      EXPECT_EQ(t.lookup(k, t0 + c.timeout), e);

      uint32_t reported = 0;
      EXPECT_EQ(t.expire_step(t0 + c.timeout, 64, [&](const flow_entry&) { ++reported; }), 0u);
      EXPECT_EQ(t.expire_step(t0 + c.timeout + 1, 64,
                              [&](const flow_entry& x) {
                                ++reported;
                                EXPECT_EQ(t.key_of(x), k);  // still in place when reported
                                EXPECT_EQ(x.state, c.state);
                              }),
                1u);
      EXPECT_EQ(reported, 1u);
      EXPECT_EQ(t.size(), 0u);
      EXPECT_EQ(t.lookup(k, t0), nullptr);
      EXPECT_EQ(t.stats().expired, 1u);
    }
  }
  // New timeouts apply to entries already in the table.
  flow_table t(64, to);
  const flow_key k = make_key(4, true, rng);
  flow_entry* e = put(t, k, 0, tcp_state::udp);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(t.lookup(k, 8), nullptr);
  flow_timeouts longer = to;
  longer.udp_ms = 1'000;
  t.set_timeouts(longer);
  EXPECT_EQ(t.timeouts(), longer);
  EXPECT_EQ(t.lookup(k, 8), e);
  EXPECT_EQ(t.lookup(k, 1'000), e);
  EXPECT_EQ(t.lookup(k, 1'001), nullptr);
}

TEST_F(FlowTable, TimeWrapIsHandled) {
  flow_timeouts to;
  to.udp_ms = 300;
  flow_table t(64, to);
  std::mt19937 rng(41);
  const flow_key k = make_key(9, true, rng);
  const uint32_t t0 = 0xffffff00u;
  ASSERT_NE(put(t, k, t0, tcp_state::udp), nullptr);
  EXPECT_NE(t.lookup(k, 0x10), nullptr);  // 272 ms later, across the wrap
  EXPECT_NE(t.lookup(k, 0x2c), nullptr);  // exactly 300 ms
  EXPECT_EQ(t.lookup(k, 0x2d), nullptr);  // 301 ms
  EXPECT_EQ(t.expire_step(0x2c, 64, [](const flow_entry&) {}), 0u);
  EXPECT_EQ(t.expire_step(0x2d, 64, [](const flow_entry&) {}), 1u);

  // Eviction order across the wrap: entries from before the wrap are the oldest.
  flow_table small(4);  // 2 buckets, all four slots are every key's candidates
  std::vector<flow_key> keys;
  const uint32_t when[4] = {0, 0xfffffff1u, 1, 0xfffffff0u};
  for (uint32_t i = 0; i < 4; ++i) {
    keys.push_back(make_key(100 + i, i % 2 == 0, rng));
    ASSERT_NE(put(small, keys.back(), when[i], tcp_state::udp), nullptr);
  }
  const flow_key extra = make_key(200, false, rng);
  flow_table::insert_result r = small.insert(extra, 20);
  ASSERT_NE(r.entry, nullptr);
  ASSERT_TRUE(r.evicted);
  EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(keys[3])));
  EXPECT_EQ(r.displaced.last_seen_ms, 0xfffffff0u);
  EXPECT_EQ(small.lookup(keys[3], 20), nullptr);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_NE(small.lookup(keys[i], 20), nullptr) << i;
}

TEST_F(FlowTable, ExpireStepIsIncremental) {
  flow_timeouts to;
  to.udp_ms = 100;
  flow_table t(1024, to);
  const std::vector<flow_key> keys = make_keys(600, 0, 51);
  std::set<std::string> expect_expired;
  // All inserted at 0 (an insert at 150 would reuse an expired candidate), then half seen at 150.
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_table::insert_result r = t.insert(keys[i], 0);
    ASSERT_NE(r.entry, nullptr);
    ASSERT_FALSE(r.evicted);
    r.entry->state = tcp_state::udp;
  }
  for (uint32_t i = 0; i < keys.size(); ++i) {
    if (i % 2 == 0) {
      expect_expired.insert(key_bytes(keys[i]));
    } else {
      flow_entry* e = t.lookup(keys[i], 0);
      ASSERT_NE(e, nullptr);
      e->last_seen_ms = 150;
    }
  }
  ASSERT_EQ(t.size(), keys.size());
  const uint32_t now = 200;
  const uint32_t budget = 100;
  std::multiset<std::string> reported;
  uint32_t total = 0;
  const uint32_t calls = static_cast<uint32_t>((t.capacity() + budget - 1) / budget);
  for (uint32_t c = 0; c < calls; ++c) {
    uint32_t this_call = 0;
    const uint32_t removed = t.expire_step(now, budget, [&](const flow_entry& e) {
      ++this_call;
      EXPECT_EQ(e.last_seen_ms, 0u);
      reported.insert(key_bytes(t.key_of(e)));
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
  for (uint32_t i = 1; i < keys.size(); i += 2) EXPECT_NE(t.lookup(keys[i], now), nullptr);
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
  EXPECT_EQ(count_live(t), 0u);
  EXPECT_EQ(t.stats().expired, 64u);
}

TEST_F(FlowTable, ScanStepRemovesWhatTheVisitorChooses) {
  flow_table t(512);
  const std::vector<flow_key> keys = make_keys(300, 0, 61);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = put(t, keys[i], 10, tcp_state::established);
    ASSERT_NE(e, nullptr);
    e->backend_id = static_cast<uint16_t>(i);
  }
  std::map<uint32_t, int> visits;
  uint32_t removed = 0;
  for (uint32_t c = 0; c < t.capacity() / 64; ++c) {
    removed += t.scan_step(64, [&](flow_entry& e) {
      ++visits[e.backend_id];
      EXPECT_EQ(t.key_of(e), keys[e.backend_id]);
      return e.backend_id % 3 == 0;
    });
  }
  EXPECT_EQ(visits.size(), keys.size());
  for (const auto& [id, n] : visits) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(removed, 100u);
  EXPECT_EQ(t.size(), 200u);
  EXPECT_EQ(t.stats().expired, 0u);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_entry* e = t.lookup(keys[i], 10);
    EXPECT_EQ(e == nullptr, i % 3 == 0) << i;
  }
}

TEST_F(FlowTable, ForEachInCoversSlotRanges) {
  flow_table t(256);
  const std::vector<flow_key> keys = make_keys(150, 0, 62);
  for (const flow_key& k : keys) ASSERT_NE(put(t, k, 1, tcp_state::udp), nullptr);
  std::multiset<std::string> walked;
  for (size_t begin = 0; begin < t.capacity(); begin += 37)
    t.for_each_in(begin, begin + 37, [&](const flow_entry& e) { walked.insert(key_bytes(t.key_of(e))); });
  std::multiset<std::string> want;
  for (const flow_key& k : keys) want.insert(key_bytes(k));
  EXPECT_EQ(walked, want);
  size_t n = 0;
  t.for_each_in(t.capacity() - 10, t.capacity() + 1000, [&](const flow_entry&) { ++n; });
  size_t m = 0;
  for (size_t i = t.capacity() - 10; i < t.capacity(); ++i)
    m += access::entries(t)[i].state != tcp_state::empty;
  EXPECT_EQ(n, m) << "an end past the capacity stops at the last slot";
}

TEST_F(FlowTable, NearlyFullAtSevenEighths) {
  flow_table t(64);
  std::mt19937 rng(63);
  // Inserts may evict before the table is full (how soon depends on the hash secret), so keep
  // inserting until the size is past 56.
  for (uint32_t i = 0; i < 2'000; ++i) {
    EXPECT_EQ(t.nearly_full(), t.size() >= 56u) << t.size();
    if (t.size() >= 57) break;
    ASSERT_NE(put(t, make_key(i, i % 2 == 0, rng), 1, tcp_state::udp), nullptr);
  }
  EXPECT_GE(t.size(), 57u);
  EXPECT_TRUE(t.nearly_full());
}

// The caller must not insert a key that is present and live; if it does, the key keeps one
// slot (its own, reported as displaced) rather than occupying two.
TEST_F(FlowTable, InsertingAPresentKeyReusesItsSlot) {
  flow_table t(64);
  std::mt19937 rng(64);
  for (bool v6 : {false, true}) {
    const flow_key k = make_key(v6 ? 1 : 2, v6, rng);
    flow_entry* e = put(t, k, 10, tcp_state::established);
    ASSERT_NE(e, nullptr);
    e->backend_id = 9;
    const size_t size = t.size();
    const uint64_t evictions = t.stats().evictions;
    flow_table::insert_result r = t.insert(k, 20);
    EXPECT_EQ(r.entry, e);
    EXPECT_TRUE(r.evicted);
    EXPECT_EQ(r.displaced.backend_id, 9u);
    EXPECT_EQ(t.size(), size);
    EXPECT_EQ(t.stats().evictions, evictions + 1);
    EXPECT_EQ(count_live(t), size);
    EXPECT_EQ(t.key_of(*e), k);
  }
}

// An insert into two full buckets moves a resident when some path to a free slot exists, and
// otherwise evicts the oldest of the four candidates, whichever bucket it is in.
// What fill_and_evict saw over its inserts.
struct eviction_tally {
  uint64_t moving_inserts = 0, multi_hop = 0, evicted_from_b = 0, evictions_without_search = 0;
};

// 800 inserts into 128 slots, each checked against what its four candidates held before it.
void fill_and_evict(uint32_t key_seed, eviction_tally& tally) {
  SCOPED_TRACE("key seed " + std::to_string(key_seed));
  flow_timeouts to;
  to.udp_ms = 1'000'000'000;
  flow_table t(128, to);  // 64 buckets
  const std::vector<flow_key> keys = make_keys(800, 0, key_seed);
  std::map<std::string, uint32_t> present;  // key bytes -> insert time
  uint64_t evictions = 0, evicted_from_b = 0, moving_inserts = 0, multi_hop = 0;
  uint64_t evictions_without_search = 0;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE("insert " + std::to_string(i));
    const uint32_t now = 1'000 + i;
    const uint32_t h = hash_of(keys[i]);
    const uint32_t ba = access::bucket_a(t, h), bb = access::bucket_b(t, h);
    // What the four candidates hold before the insert.
    const flow_entry* cand[4] = {access::bucket(t, ba), access::bucket(t, ba) + 1,
                                 access::bucket(t, bb), access::bucket(t, bb) + 1};
    const size_t size_before = t.size();
    bool full = true, one_hop_room = false;
    uint32_t free_a = 0, free_b = 0;
    const flow_entry* oldest = nullptr;
    for (uint32_t c = 0; c < 4; ++c) {
      if (cand[c]->state == tcp_state::empty) {
        full = false;
        free_a += c < 2;
        free_b += c >= 2;
        continue;
      }
      if (oldest == nullptr || cand[c]->last_seen_ms < oldest->last_seen_ms) oldest = cand[c];
      const uint32_t rh = flow_table::hash_of(*cand[c]);
      const uint32_t ra = access::bucket_a(t, rh), rb = access::bucket_b(t, rh);
      const uint32_t here = c < 2 ? ba : bb;
      const uint32_t other = here == ra ? rb : ra;
      one_hop_room |= used_slots(t, other) < flow_table::bucket_entries;
    }
    flow_entry oldest_copy = oldest != nullptr ? *oldest : flow_entry{};
    // Where a free candidate is taken: the emptier bucket (ties to a), its first free slot.
    const flow_entry* free_line = access::bucket(t, free_a >= free_b ? ba : bb);
    const flow_entry* want_slot =
        free_line[0].state == tcp_state::empty ? &free_line[0] : &free_line[1];
    const bool search = !t.nearly_full();  // residents are moved only below 7/8 full
    EXPECT_EQ(search, size_before < t.capacity() - t.capacity() / 8);
    const bool oldest_in_b = oldest == cand[2] || oldest == cand[3];
    const uint64_t moves_before = t.stats().moves;

    flow_table::insert_result r = t.insert(keys[i], now);
    ASSERT_NE(r.entry, nullptr);
    r.entry->state = tcp_state::udp;
    const uint64_t moved = t.stats().moves - moves_before;
    if (!full) {
      EXPECT_FALSE(r.evicted);
      EXPECT_EQ(moved, 0u);
      EXPECT_EQ(r.entry, want_slot);
    } else if (r.evicted) {
      ++evictions;
      evicted_from_b += oldest_in_b;
      EXPECT_EQ(moved, 0u);
      if (search) {
        EXPECT_FALSE(one_hop_room) << "a resident could have moved one hop instead";
      } else {
        evictions_without_search += 1;
      }
      EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced),
                           flow_table::key_of_entry(oldest_copy)));
      EXPECT_EQ(r.displaced.last_seen_ms, oldest_copy.last_seen_ms);
      EXPECT_EQ(r.displaced.state, tcp_state::udp);
      // The displaced key: the one in `present` inserted at that time.
      bool erased = false;
      for (auto it = present.begin(); it != present.end(); ++it) {
        if (it->second == oldest_copy.last_seen_ms) {
          present.erase(it);
          erased = true;
          break;
        }
      }
      ASSERT_TRUE(erased);
    } else {
      ++moving_inserts;
      EXPECT_TRUE(search) << "no moves from 7/8 full on";
      EXPECT_GE(moved, 1u);
      if (one_hop_room) {
        EXPECT_EQ(moved, 1u) << "breadth first: the one-hop move comes first";
      }
      multi_hop += moved > 1;
      const uint32_t b = access::bucket_of(t, r.entry);
      EXPECT_TRUE(b == ba || b == bb);
    }
    present[key_bytes(keys[i])] = now;
    ASSERT_EQ(t.size(), present.size());
    for (uint32_t j = 0; j <= i; ++j) {  // moves must not lose anything
      const flow_entry* e = t.lookup(keys[j], now);
      const bool expect = present.count(key_bytes(keys[j])) != 0;
      ASSERT_EQ(e != nullptr, expect) << "key " << j;
      if (e != nullptr) {
        ASSERT_EQ(t.key_of(*e), keys[j]) << "key " << j;
        ASSERT_EQ(e->last_seen_ms, 1'000 + j) << "key " << j;
      }
    }
  }
  expect_every_entry_in_its_buckets(t);
  std::printf("[ flow_table ] 800 inserts into 128 slots: %llu with moves (%llu of several hops), "
              "%llu evictions (%llu from bucket b, %llu at 7/8 full or more)\n",
              static_cast<unsigned long long>(moving_inserts),
              static_cast<unsigned long long>(multi_hop),
              static_cast<unsigned long long>(evictions),
              static_cast<unsigned long long>(evicted_from_b),
              static_cast<unsigned long long>(evictions_without_search));
  tally.moving_inserts += moving_inserts;
  tally.multi_hop += multi_hop;
  tally.evicted_from_b += evicted_from_b;
  tally.evictions_without_search += evictions_without_search;
  EXPECT_GE(t.size(), t.capacity() - t.capacity() / 8);
  EXPECT_EQ(evictions, keys.size() - t.size());
  EXPECT_EQ(t.stats().evictions, evictions);
  EXPECT_EQ(t.stats().failed_inserts, 0u);
  EXPECT_EQ(t.stats().inserts, keys.size());
  // Everything not displaced survived; displaced keys are gone.
  for (const flow_key& k : keys) EXPECT_EQ(t.lookup(k, 2'000) != nullptr, present.count(key_bytes(k)) != 0);
  // A key is displaced only as the oldest of four, so by then three newer keys were inserted:
  // the last four inserted are all present.
  for (size_t i = keys.size() - 4; i < keys.size(); ++i) EXPECT_NE(t.lookup(keys[i], 2'000), nullptr) << i;
}

// Over four key sets, since which of these cases one set of 800 keys meets depends on the
// process's hash secret.
TEST_F(FlowTable, FullTableEvictsTheOldestOfTheFourCandidates) {
  eviction_tally tally;
  for (uint32_t seed : {71u, 72u, 73u, 74u}) fill_and_evict(seed, tally);
  EXPECT_GT(tally.moving_inserts, 0u);
  EXPECT_GT(tally.multi_hop, 0u);
  EXPECT_GT(tally.evicted_from_b, 0u) << "the oldest of the four is sometimes in the second bucket";
  EXPECT_GT(tally.evictions_without_search, 0u);
}

TEST_F(FlowTable, FullBucketsMoveAResidentOneHop) {
  flow_table t(8);  // 4 buckets
  ASSERT_EQ(access::bucket_count(t), 4u);
  placed_keys placed(t, 111);
  [[maybe_unused]] auto& rng = placed.rng;
  [[maybe_unused]] auto& next_id = placed.next_id;
  [[maybe_unused]] auto& all = placed.all;
  auto add = [&](uint32_t a, uint32_t b, bool v6, uint32_t when) { return placed.add(a, b, v6, when); };
  // Each key goes to its bucket a, which is also never the fuller of its two.
  const flow_key x = add(0, 3, true, 1);  // lands in bucket 0, could live in 3
  ASSERT_TRUE(in_bucket(t, 0, x));
  const flow_key k1 = add(1, 0, false, 2);
  const flow_key k2 = add(1, 0, true, 3);
  const flow_key k3 = add(0, 1, false, 4);  // the last free slot of 0 and 1
  ASSERT_TRUE(in_bucket(t, 1, k1));
  ASSERT_TRUE(in_bucket(t, 1, k2));
  ASSERT_TRUE(in_bucket(t, 0, k3));
  ASSERT_EQ(used_slots(t, 2) + used_slots(t, 3), 0u);
  ASSERT_EQ(t.stats().moves, 0u);

  // Buckets 0 and 1 are full; x can move to 3.
  const flow_key y = add(0, 1, true, 100);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.stats().moves, 1u);
  EXPECT_EQ(t.size(), 5u);
  EXPECT_TRUE(in_bucket(t, 3, x)) << "x should have moved to its other bucket";
  EXPECT_TRUE(in_bucket(t, 0, y));
  const flow_entry* ex = t.lookup(x, 100);
  ASSERT_NE(ex, nullptr);
  EXPECT_EQ(access::bucket_of(t, ex), 3u);
  EXPECT_EQ(ex->last_seen_ms, 1u) << "a move keeps the entry as it was";
  EXPECT_EQ(access::v6_client_of(t, ex), x.client) << "the IPv6 address moved with it";
  placed.expect_all_found(100);
  EXPECT_EQ(count_live(t), 5u);

  // Nobody in buckets 0/1 can move now (x is gone): the next one evicts the oldest of the four.
  const flow_key z = key_with_buckets(t, 1, 0, true, next_id, rng);
  flow_table::insert_result r = t.insert(z, 200);
  ASSERT_NE(r.entry, nullptr);
  EXPECT_TRUE(r.evicted);
  EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(k1)))
      << "k1, inserted at time 2, is the oldest left in 0/1";
  EXPECT_EQ(t.stats().evictions, 1u);
  EXPECT_EQ(t.stats().moves, 1u);
  EXPECT_EQ(used_slots(t, 2), 0u);
  EXPECT_EQ(used_slots(t, 3), 1u);  // x only
  EXPECT_EQ(t.lookup(k1, 200), nullptr);
  EXPECT_NE(t.lookup(z, 200), nullptr);
}

// A resident that sits in its bucket b (its a was full) moves back to its a.
TEST_F(FlowTable, FullBucketsMoveAResidentBackToItsBucketA) {
  flow_table t(8);  // 4 buckets
  placed_keys placed(t, 115);
  [[maybe_unused]] auto& rng = placed.rng;
  [[maybe_unused]] auto& next_id = placed.next_id;
  [[maybe_unused]] auto& all = placed.all;
  auto add = [&](uint32_t a, uint32_t b, bool v6, uint32_t when) { return placed.add(a, b, v6, when); };
  auto drop = [&](const flow_key& k) {
    flow_entry* e = t.lookup(k, 1);
    ASSERT_NE(e, nullptr);
    t.remove(e);
    all.erase(std::find(all.begin(), all.end(), k));
  };
  // Bucket 3 full, so r (buckets 3 and 0) goes to 0; then a slot of 3 is freed. Each key goes to
  // its bucket a when that has a free slot and is not the fuller of the two.
  const flow_key g = add(2, 1, false, 1);
  const flow_key f1 = add(3, 2, false, 1);
  const flow_key f2 = add(3, 2, true, 1);
  ASSERT_TRUE(in_bucket(t, 3, f1));
  ASSERT_TRUE(in_bucket(t, 3, f2));
  const flow_key r = add(3, 0, true, 2);
  ASSERT_TRUE(in_bucket(t, 0, r));
  drop(f1);
  drop(g);
  const flow_key k1 = add(1, 0, false, 3);
  const flow_key k2 = add(1, 0, true, 4);
  const flow_key k3 = add(0, 1, false, 5);
  ASSERT_TRUE(in_bucket(t, 1, k1));
  ASSERT_TRUE(in_bucket(t, 1, k2));
  ASSERT_TRUE(in_bucket(t, 0, k3));
  ASSERT_EQ(t.size(), 5u);
  ASSERT_EQ(t.stats().moves, 0u);

  const flow_key y = add(0, 1, false, 100);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.stats().moves, 1u);
  EXPECT_TRUE(in_bucket(t, 3, r)) << "r moved back to its bucket a";
  EXPECT_TRUE(in_bucket(t, 0, y));
  placed.expect_all_found(100);
  expect_every_entry_in_its_buckets(t);
}

TEST_F(FlowTable, FullBucketsMoveResidentsTwoHops) {
  flow_table t(8);  // 4 buckets
  placed_keys placed(t, 121);
  [[maybe_unused]] auto& rng = placed.rng;
  [[maybe_unused]] auto& next_id = placed.next_id;
  [[maybe_unused]] auto& all = placed.all;
  auto add = [&](uint32_t a, uint32_t b, bool v6, uint32_t when) { return placed.add(a, b, v6, when); };
  // Bucket 2 full of entries whose other bucket is 3; bucket 3 empty. Each key goes to its
  // bucket a, which is also never the fuller of its two.
  const flow_key s1 = add(2, 3, true, 1);
  const flow_key s2 = add(3, 2, false, 1);
  const flow_key s3 = add(2, 3, false, 1);
  ASSERT_TRUE(in_bucket(t, 2, s1));
  ASSERT_TRUE(in_bucket(t, 2, s3));
  ASSERT_TRUE(in_bucket(t, 3, s2));
  t.remove(t.lookup(s2, 1));
  all.erase(std::find(all.begin(), all.end(), s2));
  ASSERT_EQ(used_slots(t, 3), 0u);
  const flow_key z = add(1, 2, true, 2);  // bucket 1 (2 is full); its other bucket is 2
  ASSERT_TRUE(in_bucket(t, 1, z));
  const flow_key k1 = add(0, 1, false, 3);
  const flow_key k2 = add(1, 0, true, 4);
  const flow_key k3 = add(0, 1, false, 5);
  ASSERT_TRUE(in_bucket(t, 0, k1));
  ASSERT_TRUE(in_bucket(t, 1, k2));
  ASSERT_TRUE(in_bucket(t, 0, k3));
  ASSERT_EQ(t.size(), 6u);
  ASSERT_EQ(t.stats().moves, 0u);

  // Only z -> 2 and then an entry of 2 -> 3 frees a slot for a {0, 1} key.
  const flow_key y = add(0, 1, true, 100);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.stats().moves, 2u);
  EXPECT_EQ(t.size(), 7u);
  EXPECT_TRUE(in_bucket(t, 2, z));
  EXPECT_TRUE(in_bucket(t, 1, y));
  EXPECT_EQ(used_slots(t, 3), 1u);
  EXPECT_TRUE(in_bucket(t, 3, s1) || in_bucket(t, 3, s3));
  for (const flow_key& k : all) {
    const flow_entry* e = t.lookup(k, 100);
    ASSERT_NE(e, nullptr) << ::testing::PrintToString(k);
    EXPECT_EQ(t.key_of(*e), k);
    if (!k.client.is_v4()) {
      EXPECT_EQ(access::v6_client_of(t, e), k.client);
    }
  }
  expect_every_entry_in_its_buckets(t);
}

// Moves copy the side-array address with the entry: a table of IPv6 flows filled far enough
// that inserts must move residents still finds every flow, under its own address.
TEST_F(FlowTable, MovesCarryTheIPv6ClientAddress) {
  flow_table t(2048);
  std::mt19937 rng(131);
  std::vector<flow_key> keys;
  std::set<std::string> displaced;
  for (uint32_t i = 0; t.size() < t.capacity() * 9 / 10; ++i) {
    keys.push_back(make_key(i, true, rng));
    flow_table::insert_result r = t.insert(keys.back(), 1);
    ASSERT_NE(r.entry, nullptr) << i;
    r.entry->state = tcp_state::udp;
    r.entry->backend_id = static_cast<uint16_t>(i);
    if (r.evicted) displaced.insert(key_bytes(keys[r.displaced.backend_id]));
  }
  std::printf("[ flow_table ] IPv6 fill of 2048 slots to 90 %%: %llu moves, %zu evictions\n",
              static_cast<unsigned long long>(t.stats().moves), displaced.size());
  EXPECT_GT(t.stats().moves, 100u);
  EXPECT_EQ(t.stats().evictions, displaced.size());
  for (uint32_t i = 0; i < keys.size(); ++i) {
    const flow_entry* e = t.lookup(keys[i], 2);
    if (displaced.count(key_bytes(keys[i])) != 0) {
      EXPECT_EQ(e, nullptr) << i;
      continue;
    }
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(e->backend_id, static_cast<uint16_t>(i));
    EXPECT_EQ(t.key_of(*e), keys[i]) << i;
    EXPECT_EQ(access::v6_client_of(t, e), keys[i].client) << i;
  }
  expect_every_entry_in_its_buckets(t);
}

TEST_F(FlowTable, RecentEstablishedFlowsAreProtected) {
  flow_table t(4);  // 2 buckets: one candidate set of 4 slots, and no moves
  std::mt19937 rng(81);
  const uint32_t t0 = 10'000;
  std::vector<flow_key> keys;
  for (uint32_t i = 0; i < 4; ++i) {
    keys.push_back(make_key(i, i % 2 == 1, rng));
    ASSERT_NE(put(t, keys.back(), t0 + i, tcp_state::established), nullptr);
  }
  const flow_key n1 = make_key(100, false, rng);
  for (uint32_t age : {0u, 500u, 999u}) {
    flow_table::insert_result r = t.insert(n1, t0 + age);
    EXPECT_EQ(r.entry, nullptr) << age;
    EXPECT_FALSE(r.evicted);
  }
  EXPECT_EQ(t.stats().failed_inserts, 3u);
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.stats().inserts, 4u);
  EXPECT_EQ(t.size(), 4u);
  for (const flow_key& k : keys) EXPECT_NE(t.lookup(k, t0 + 999), nullptr);
  EXPECT_EQ(t.lookup(n1, t0 + 999), nullptr);

  // Once the oldest established flow is protect_established_ms old it may go.
  flow_table::insert_result r = t.insert(n1, t0 + flow_table::protect_established_ms);
  ASSERT_NE(r.entry, nullptr);
  r.entry->state = tcp_state::udp;
  EXPECT_TRUE(r.evicted);
  EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(keys[0])));
  EXPECT_EQ(r.displaced.state, tcp_state::established);
  EXPECT_EQ(t.stats().evictions, 1u);
  EXPECT_EQ(t.size(), 4u);

  // The next oldest (keys[1]) is 999 ms old: protected again.
  const flow_key n2 = make_key(101, true, rng);
  EXPECT_EQ(t.insert(n2, t0 + 1 + 999).entry, nullptr);
  EXPECT_EQ(t.stats().failed_inserts, 4u);

  // A recent flow in any other state is evictable as the oldest.
  for (tcp_state s : {tcp_state::syn_seen, tcp_state::closing, tcp_state::closed, tcp_state::udp}) {
    SCOPED_TRACE(static_cast<int>(s));
    flow_table u(4);
    std::vector<flow_key> ukeys;
    std::vector<flow_entry*> ue;
    for (uint32_t i = 0; i < 4; ++i) {
      ukeys.push_back(make_key(200 + i, i % 2 == 0, rng));
      ue.push_back(put(u, ukeys.back(), t0 + i, tcp_state::established));
      ASSERT_NE(ue.back(), nullptr);
    }
    ue[0]->state = s;
    const flow_key n3 = make_key(300, false, rng);
    r = u.insert(n3, t0 + 100);
    ASSERT_NE(r.entry, nullptr);
    r.entry->state = tcp_state::established;
    EXPECT_TRUE(r.evicted);
    EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(ukeys[0])));
    EXPECT_EQ(r.displaced.state, s);
    // Now the oldest (ukeys[1]) is established and recent: kept.
    const flow_key n4 = make_key(301, true, rng);
    EXPECT_EQ(u.insert(n4, t0 + 200).entry, nullptr);
    EXPECT_EQ(u.stats().failed_inserts, 1u);
    EXPECT_NE(u.lookup(ukeys[1], t0 + 200), nullptr);
  }
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
    EXPECT_EQ(t.lookup(k, 101), nullptr);
    flow_table::insert_result r = t.insert(k, 101);
    EXPECT_EQ(r.entry, e);
    EXPECT_TRUE(r.evicted);
    EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(k)));
    EXPECT_EQ(r.displaced.backend_id, 7u);
    EXPECT_EQ(r.displaced.state, tcp_state::udp);
    EXPECT_EQ(e->backend_id, 0u);  // fresh entry, old fields cleared
    EXPECT_EQ(e->state, tcp_state::syn_seen);
    EXPECT_EQ(e->last_seen_ms, 101u);
    EXPECT_EQ(t.key_of(*e), k);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(count_live(t), 1u);
    EXPECT_EQ(t.stats().expired, 1u);
    EXPECT_EQ(t.stats().evictions, 0u);
    EXPECT_EQ(t.lookup(k, 101), e);
  }
  {  // Full buckets: the oldest expired entry is reused before any live one is evicted.
    flow_table t(4, to);  // 2 buckets, no moves
    std::vector<flow_entry*> es;
    std::vector<flow_key> keys;
    for (uint32_t i = 0; i < 4; ++i) {
      keys.push_back(make_key(10 + i, i % 2 == 1, rng));
      es.push_back(put(t, keys.back(), i, i < 2 ? tcp_state::udp : tcp_state::established));
      ASSERT_NE(es.back(), nullptr);
    }
    // Refresh keys[0] (udp) and keys[3] (established); udp keys[1] and established keys[2]
    // stay old.
    es[0]->last_seen_ms = 150;
    es[3]->last_seen_ms = 150;
    const flow_key n1 = make_key(100, false, rng);
    flow_table::insert_result r = t.insert(n1, 160);
    ASSERT_NE(r.entry, nullptr);
    r.entry->state = tcp_state::udp;
    EXPECT_TRUE(r.evicted);
    // keys[1]: expired (age 159 > 100) and older than keys[2] (age 158 > 50).
    EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(keys[1])));
    EXPECT_EQ(t.stats().expired, 1u);
    EXPECT_EQ(t.stats().evictions, 0u);
    EXPECT_EQ(t.size(), 4u);
    // keys[2] is an established entry seen 158 ms ago, but expired (timeout 50): reused, not
    // protected.
    const flow_key n2 = make_key(101, true, rng);
    r = t.insert(n2, 160);
    ASSERT_NE(r.entry, nullptr);
    r.entry->state = tcp_state::udp;
    EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(keys[2])));
    EXPECT_EQ(t.stats().expired, 2u);
    EXPECT_EQ(t.stats().failed_inserts, 0u);
    EXPECT_EQ(t.stats().evictions, 0u);
    EXPECT_NE(t.lookup(keys[0], 160), nullptr);
    EXPECT_NE(t.lookup(keys[3], 160), nullptr);
    EXPECT_NE(t.lookup(n1, 160), nullptr);
    EXPECT_NE(t.lookup(n2, 160), nullptr);
  }
  {  // An empty slot is preferred to an expired entry.
    flow_table t(4, to);
    for (uint32_t i = 0; i < 2; ++i)
      ASSERT_NE(put(t, make_key(200 + i, false, rng), 0, tcp_state::udp), nullptr);
    const flow_key n1 = make_key(300, false, rng);
    flow_table::insert_result r = t.insert(n1, 1'000);
    ASSERT_NE(r.entry, nullptr);
    EXPECT_FALSE(r.evicted);
    EXPECT_EQ(t.size(), 3u);
    EXPECT_EQ(t.stats().expired, 0u);
  }
  {  // An expired candidate is reused before residents are moved.
    flow_table t(8, to);  // 4 buckets
    uint32_t next_id = 0;
    const flow_key x = key_with_buckets(t, 0, 3, true, next_id, rng);   // 0, could move to 3
    const flow_key k1 = key_with_buckets(t, 1, 0, false, next_id, rng);  // 1
    const flow_key k2 = key_with_buckets(t, 1, 0, true, next_id, rng);   // 1
    const flow_key k3 = key_with_buckets(t, 0, 1, false, next_id, rng);  // 0
    ASSERT_NE(put(t, x, 150, tcp_state::udp), nullptr);
    ASSERT_NE(put(t, k1, 150, tcp_state::udp), nullptr);
    ASSERT_NE(put(t, k2, 0, tcp_state::udp), nullptr);  // expired by 160
    ASSERT_NE(put(t, k3, 150, tcp_state::udp), nullptr);
    ASSERT_TRUE(in_bucket(t, 0, x));
    ASSERT_TRUE(in_bucket(t, 1, k1));
    ASSERT_TRUE(in_bucket(t, 1, k2));
    ASSERT_TRUE(in_bucket(t, 0, k3));
    const flow_key y = key_with_buckets(t, 0, 1, false, next_id, rng);
    flow_table::insert_result r = t.insert(y, 160);
    ASSERT_NE(r.entry, nullptr);
    EXPECT_TRUE(r.evicted);
    EXPECT_TRUE(same_key(flow_table::key_of_entry(r.displaced), flow_table::key_for(k2)));
    EXPECT_EQ(t.stats().moves, 0u);
    EXPECT_EQ(t.stats().expired, 1u);
    EXPECT_TRUE(in_bucket(t, 0, x));
  }
}

// How far a 1 M-slot table fills before the first eviction: past the 80 % of the sizing rule.
TEST_F(FlowTable, MillionEntriesFillPast80PercentWithoutEviction) {
  const auto start = std::chrono::steady_clock::now();
  flow_table t(1u << 20);
  ASSERT_EQ(t.capacity(), 1u << 20);
  std::mt19937 rng(101);
  const size_t cap = t.capacity();
  size_t first_eviction_at = 0;
  std::vector<flow_key> sample;
  for (uint32_t i = 0; i < cap; ++i) {
    const flow_key k = make_key(i, (i & 3) == 0, rng);
    flow_table::insert_result r = t.insert(k, 5);
    ASSERT_NE(r.entry, nullptr) << i;
    r.entry->state = tcp_state::udp;
    if (r.evicted) {
      first_eviction_at = t.size();  // size did not grow: the load when the table gave way
      break;
    }
    if (i % 997 == 0) sample.push_back(k);
  }
  const double load = first_eviction_at == 0 ? 1.0 : double(first_eviction_at) / double(cap);
  std::printf("[ flow_table ] 1M entries: first eviction at load factor %.4f (%zu entries), "
              "%llu moves, %.2f s\n",
              load, first_eviction_at, static_cast<unsigned long long>(t.stats().moves),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  RecordProperty("first_eviction_load", std::to_string(load));
  // 0.83-0.86 over 60 random hash secrets (and over 30 key sets with the old unkeyed CRC): the
  // 80 % sizing rule keeps a margin whatever the secret.
  EXPECT_GE(load, 0.82) << "the 80 % sizing rule keeps a margin";
  EXPECT_EQ(t.stats().failed_inserts, 0u);
  for (const flow_key& k : sample) EXPECT_NE(t.lookup(k, 5), nullptr);
}

// The default sizing rule (config: flow_table_size 1,310,720): 1 M flows at 80 % load insert
// without a single eviction or failure, and all of them stay findable.
TEST_F(FlowTable, DefaultSizeHoldsAMillionFlowsAt80Percent) {
  const auto start = std::chrono::steady_clock::now();
  flow_table t(1'310'720);
  ASSERT_EQ(t.capacity(), 1'310'720u);
  std::mt19937 rng(141);
  std::vector<flow_key> keys;
  keys.reserve(1u << 20);
  for (uint32_t i = 0; i < (1u << 20); ++i) keys.push_back(make_key(i, (i & 1) != 0, rng));
  for (uint32_t i = 0; i < keys.size(); ++i) {
    flow_table::insert_result r = t.insert(keys[i], 5);
    ASSERT_NE(r.entry, nullptr) << i;
    ASSERT_FALSE(r.evicted) << i;
    r.entry->state = tcp_state::established;
    r.entry->backend_id = static_cast<uint16_t>(i);
  }
  EXPECT_EQ(t.size(), keys.size());
  EXPECT_EQ(t.stats().evictions, 0u);
  EXPECT_EQ(t.stats().failed_inserts, 0u);
  EXPECT_FALSE(t.nearly_full());
  size_t missing = 0;
  for (uint32_t i = 0; i < keys.size(); ++i) {
    const flow_entry* e = t.lookup(keys[i], 6);
    if (e == nullptr || e->backend_id != static_cast<uint16_t>(i)) ++missing;
  }
  EXPECT_EQ(missing, 0u);
  size_t in_a = 0;
  t.for_each([&](const flow_entry& e) {
    in_a += access::bucket_of(t, &e) == access::bucket_a(t, flow_table::hash_of(e));
  });
  std::printf("[ flow_table ] 1,048,576 flows in 1,310,720 slots: %llu moves, %.1f %% in bucket a, "
              "%.2f s\n",
              static_cast<unsigned long long>(t.stats().moves), 100.0 * double(in_a) / double(t.size()),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace
}  // namespace tandem
