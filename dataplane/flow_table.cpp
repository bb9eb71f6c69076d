#include "dataplane/flow_table.h"

#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_prefetch.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace tandem {
namespace {

static_assert(sizeof(flow_entry) == 32 && alignof(flow_entry) == 32);
static_assert(flow_table::bucket_entries * sizeof(flow_entry) == 64, "a bucket is one line");
static_assert(offsetof(flow_entry, vip_id) == 8 && offsetof(flow_entry, state) == 10,
              "flow_table_detail::matches reads the key and the state as two words");

constexpr size_t max_buckets = size_t{1} << 30;  // 2^31 entries, 96 GiB: beyond any real table

// Buckets make_room may visit per insert, a and b included: up to six levels of moves (2 + 4
// + ... + 128). Each is a cache miss on an insert into two full buckets, but only inserts near
// the limit search deep. A table filling up evicts for the first time at 85.7 % load with six
// levels, 82 % with five (the 80 % sizing rule's margin), and three levels left a few hundred
// of 1 M flows out of the default 1,310,720 slots.
constexpr uint32_t max_search_buckets = 254;

}  // namespace

flow_table::flow_table(size_t capacity, flow_timeouts timeouts) {
  set_timeouts(timeouts);
  const size_t wanted = capacity / bucket_entries + (capacity % bucket_entries != 0);
  if (wanted > max_buckets) throw std::length_error("flow_table: capacity too large");
  const size_t buckets = wanted < 2 ? 2 : wanted;
  bucket_count_ = static_cast<uint32_t>(buckets);

  // One zeroed block: the entries (hot), then the IPv6 clients (read for IPv6 flows only).
  const size_t slots = buckets * bucket_entries;
  const size_t entry_bytes = slots * sizeof(flow_entry);
  const size_t bytes = entry_bytes + slots * sizeof(ip_address);
  mem_bytes_ = bytes;
  if (rte_lcore_count() > 0) {  // EAL is initialised: use its (hugepage, NUMA-local) heap
    mem_ = rte_zmalloc_socket("flow_table", bytes, RTE_CACHE_LINE_SIZE,
                              static_cast<int>(rte_socket_id()));
    if (mem_ == nullptr) mem_ = rte_zmalloc("flow_table", bytes, RTE_CACHE_LINE_SIZE);
    mem_from_rte_ = mem_ != nullptr;
  }
  if (mem_ == nullptr) {
    mem_ = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (mem_ == nullptr) throw std::bad_alloc();
    std::memset(mem_, 0, bytes);
  }
  entries_ = static_cast<flow_entry*>(mem_);
  v6_clients_ = reinterpret_cast<ip_address*>(static_cast<unsigned char*>(mem_) + entry_bytes);
}

flow_table::~flow_table() {
  if (mem_from_rte_)
    rte_free(mem_);
  else
    std::free(mem_);
}

stored_flow_key flow_table::key_of(const flow_entry& e) const {
  stored_flow_key k;
  k.client = e.ipv6 ? v6_clients_[slot_index(&e)] : ip_address::from_v4_be(e.client);
  k.client_port = e.client_port;
  k.vip_port = e.vip_port;
  k.vip_id = e.vip_id;
  return k;
}

// Entries whose digest matched (bits of `m`): the one whose side-array address is the client.
flow_entry* flow_table::find_v6(const stored_flow_key& full, const probe& p, uint32_t m) const {
  for (; m != 0; m &= m - 1) {
    flow_entry* e = candidate(p, static_cast<uint32_t>(__builtin_ctz(m)));
    if (v6_clients_[slot_index(e)] == full.client) return e;
  }
  return nullptr;
}

uint32_t flow_table::other_bucket_of(size_t idx) const {
  const uint32_t here = static_cast<uint32_t>(idx / bucket_entries);
  const uint32_t h = hash_of(entries_[idx]);
  const uint32_t a = bucket_a(h);
  return here == a ? bucket_b(h, a) : a;
}

void flow_table::move_entry(flow_entry* from, flow_entry* to) {
  *to = *from;
  if (from->ipv6) v6_clients_[slot_index(to)] = v6_clients_[slot_index(from)];
  *from = flow_entry{};
  ++stats_.moves;
}

void flow_table::store_key(flow_entry* slot, const stored_flow_key& full,
                           const flow_table_key& k) {
  slot->client = static_cast<uint32_t>(k.k0);
  slot->client_port = static_cast<uint16_t>(k.k0 >> 32);
  slot->vip_port = static_cast<uint16_t>(k.k0 >> 48);
  slot->vip_id = k.vip_id();
  slot->ipv6 = k.ipv6() ? 1 : 0;
  if (k.ipv6()) v6_clients_[slot_index(slot)] = full.client;
}

flow_table::insert_result flow_table::insert(const stored_flow_key& full, const flow_table_key& k,
                                             const probe& p, uint32_t now_ms) {
  insert_result r;
  flow_entry* slot = nullptr;
  bool displace = true;  // the chosen slot holds an entry the caller must hear about

  // The key may still sit here expired (lookup reports those as absent): reuse its slot so a
  // key never occupies two slots.
  slot = find(full, k, p);
  if (slot != nullptr) {
    // Live only if the caller broke the "not present" contract; still report it as displaced.
    if (expired(*slot, now_ms))
      ++stats_.expired;
    else
      ++stats_.evictions;
  } else {
    // A free slot: the emptier bucket keeps both choices balanced (ties go to bucket a).
    const uint32_t free_a = (p.a[0].state == tcp_state::empty) + (p.a[1].state == tcp_state::empty);
    const uint32_t free_b = (p.b[0].state == tcp_state::empty) + (p.b[1].state == tcp_state::empty);
    if (free_a + free_b != 0) {
      flow_entry* line = free_a >= free_b ? p.a : p.b;
      slot = line[0].state == tcp_state::empty ? &line[0] : &line[1];
      displace = false;
    } else {
      // Both buckets full (both lines are in cache already): the oldest expired entry, else a
      // resident moved away, else the oldest live entry unless it must be protected.
      flow_entry* oldest = p.a;
      flow_entry* oldest_expired = nullptr;
      int32_t oldest_age = INT32_MIN;
      int32_t oldest_expired_age = INT32_MIN;
      for (uint32_t i = 0; i < 4; ++i) {
        flow_entry* e = candidate(p, i);
        const int32_t age = static_cast<int32_t>(now_ms - e->last_seen_ms);
        if (age > oldest_age) {
          oldest_age = age;
          oldest = e;
        }
        if (age > oldest_expired_age && expired(*e, now_ms)) {
          oldest_expired_age = age;
          oldest_expired = e;
        }
      }
      if (oldest_expired != nullptr) {
        slot = oldest_expired;
        ++stats_.expired;
      } else if (!nearly_full() && (slot = make_room(p)) != nullptr) {
        // Beyond nearly_full() (87.5 %, close to the 89.7 % limit of two choices of two slots)
        // most searches fail, and each costs misses the worker cannot prefetch: a SYN flood into
        // a full table ran at x0.45 with even one level of search. There the oldest goes.
        displace = false;
      } else if (oldest->state == tcp_state::established &&
                 oldest_age < static_cast<int32_t>(protect_established_ms)) {
        // Everything here is recent and the oldest is an established flow: keep it.
        ++stats_.failed_inserts;
        return r;
      } else {
        slot = oldest;
        ++stats_.evictions;
      }
    }
    size_ += !displace;
  }

  if (displace) {
    r.evicted = true;
    r.displaced = *slot;
  }
  *slot = flow_entry{};
  store_key(slot, full, k);
  slot->last_seen_ms = now_ms;
  slot->state = tcp_state::syn_seen;  // marks the slot occupied until the caller sets the state
  ++stats_.inserts;
  r.entry = slot;
  return r;
}

// Both candidate buckets are full: find the nearest bucket with a free slot that residents can
// be moved along to (breadth-first over "a resident's other bucket", as in MemC3 and libcuckoo),
// then move them, last first, so the key's own buckets get a free slot. Each level's lines are
// prefetched as they are discovered. Returns the freed slot, or nullptr.
flow_entry* flow_table::make_room(const probe& p) {
  struct node {
    uint32_t bucket;
    int32_t parent;  // index of the node one of whose residents moves here (-1: bucket a or b)
    uint32_t slot;   // which of the parent's residents
  };
  node nodes[max_search_buckets];
  uint32_t n = 0;
  nodes[n++] = node{static_cast<uint32_t>(slot_index(p.a) / bucket_entries), -1, 0};
  nodes[n++] = node{static_cast<uint32_t>(slot_index(p.b) / bucket_entries), -1, 0};
  for (uint32_t x = 0; x < n; ++x) {
    flow_entry* line = bucket_line(nodes[x].bucket);
    if (x >= 2) {  // a and b are full
      flow_entry* dst = line[0].state == tcp_state::empty   ? &line[0]
                        : line[1].state == tcp_state::empty ? &line[1]
                                                            : nullptr;
      if (dst != nullptr) {
        // The parent's resident moves into the free slot, the grandparent's into the slot that
        // freed, and so on up to bucket a or b.
        for (int32_t y = static_cast<int32_t>(x); nodes[y].parent >= 0; y = nodes[y].parent) {
          flow_entry* src = &bucket_line(nodes[nodes[y].parent].bucket)[nodes[y].slot];
          move_entry(src, dst);
          dst = src;
        }
        return dst;
      }
    }
    for (uint32_t j = 0; j < bucket_entries && n < max_search_buckets; ++j) {
      const uint32_t to = other_bucket_of(size_t{nodes[x].bucket} * bucket_entries + j);
      // A bucket already on this path would be moved out of and into at once: skip it.
      bool on_path = nodes[0].bucket == to || nodes[1].bucket == to;
      for (int32_t y = static_cast<int32_t>(x); y >= 0 && !on_path; y = nodes[y].parent)
        on_path = nodes[y].bucket == to;
      if (on_path) continue;
      rte_prefetch0(bucket_line(to));
      nodes[n++] = node{to, static_cast<int32_t>(x), j};
    }
  }
  return nullptr;
}

}  // namespace tandem
