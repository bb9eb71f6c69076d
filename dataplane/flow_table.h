// Per-worker connection table: 5-tuple -> backend, colour, generation, TCP state.
// Owned by exactly one worker: no locks, no atomics, no allocation after construction.
//
// Layout: 2-choice cuckoo hashing with buckets of one cache line. An entry is 32 bytes, two to a
// line, and holds everything an IPv4 flow needs, its key included; so an IPv4 lookup is one
// memory round trip: both candidate lines are prefetched at once and compared without a branch
// (the tenth round of docs/performance.md measured the old layout's dependent second fetch, a
// signature line and then the entry, as most of the table's cost). An IPv6 client address does
// not fit: the entry keeps a 32-bit digest of it and a side array keeps the address, one per
// slot, read only for IPv6 flows. 48 bytes per slot in all.
//
// An insert into two full buckets reuses an expired entry of the four, else (below nearly_full)
// moves residents along a path of other buckets found breadth-first (a resident's buckets follow
// from its own entry), else evicts the oldest of the four unless that is a recently-seen
// established TCP flow (then the insert fails and is counted: established flows are protected
// from new-flow floods). Sizing: flows x 1.25 slots (80 % load) holds every flow; the search
// gives up at 87.5 %.
#pragma once

#include <rte_prefetch.h>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dataplane/flow_hash.h"
#include "dataplane/flow_key.h"

namespace tandem {

enum class tcp_state : uint8_t {
  empty = 0,     // slot unused
  syn_seen,      // TCP: SYN seen, not yet an ACK
  established,   // TCP: ACK without SYN seen
  closing,       // TCP: FIN seen
  closed,        // TCP: RST seen
  udp,           // UDP flow
};

enum class colour : uint8_t { blue = 0, green = 1 };
inline colour other(colour c) { return c == colour::blue ? colour::green : colour::blue; }
inline const char* colour_name(colour c) { return c == colour::blue ? "blue" : "green"; }

// The part of a flow's key the table compares in its entries: the client (an IPv4 address, or a
// digest of an IPv6 one), both ports, the VIP id, and which of the two the client is. Built in
// registers from the stored key's words (flow_table::key_for).
struct flow_table_key {
  uint64_t k0 = 0;      // client32 | client_port << 32 | vip_port << 48 (ports in network order)
  uint64_t k1 = 0;      // vip_id | ipv6 << 63: compared with the entry's second word, masked
  bool ipv6() const { return (k1 >> 63) != 0; }
  uint16_t vip_id() const { return static_cast<uint16_t>(k1); }
};

struct alignas(32) flow_entry {
  uint32_t client = 0;        // IPv4 client (network order), or a digest of the IPv6 client
  uint16_t client_port = 0;   // network byte order
  uint16_t vip_port = 0;      // network byte order
  uint16_t vip_id = 0;
  tcp_state state = tcp_state::empty;
  colour flow_colour = colour::blue;
  uint16_t backend_id = 0;    // stable id in the generation's backend registry (< max_backends)
  uint16_t service_id : 15 = 0;
  uint16_t ipv6 : 1 = 0;      // the client address is in the side array (flow_table::key_of)
  uint32_t last_seen_ms = 0;  // ms_clock time of the last packet
  uint32_t generation = 0;    // generation number the flow was created in
  uint32_t client_seq = 0;    // last client sequence number seen (for drain resets)
  uint32_t client_ack = 0;    // last client acknowledgement seen (= server's next seq)
};
static_assert(sizeof(flow_entry) == 32, "two entries per cache line");

struct flow_timeouts {
  uint32_t tcp_syn_ms = 60'000;
  uint32_t tcp_established_ms = 300'000;
  uint32_t tcp_closing_ms = 10'000;
  uint32_t udp_ms = 30'000;
  // config::daemon_config's defaulted == compares its timeouts.
  friend bool operator==(const flow_timeouts&, const flow_timeouts&) = default;

  uint32_t for_state(tcp_state s) const {
    switch (s) {
      case tcp_state::syn_seen: return tcp_syn_ms;
      case tcp_state::established: return tcp_established_ms;
      case tcp_state::closing:
      case tcp_state::closed: return tcp_closing_ms;
      case tcp_state::udp: return udp_ms;
      case tcp_state::empty: return 0;
    }
    return 0;
  }
};

struct flow_table_stats {
  uint64_t inserts = 0;
  uint64_t evictions = 0;       // live entries replaced to make room
  uint64_t failed_inserts = 0;  // no room and nothing evictable
  uint64_t expired = 0;         // removed by timeout (lookup or incremental scan)
  uint64_t moves = 0;           // residents moved to their other bucket to make room
};

namespace flow_table_detail {

inline uint64_t load64(const void* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The entry's key words as flow_table_key holds them: vip_id and the ipv6 bit of the second word.
inline constexpr uint64_t k1_mask = 0xffffull | (1ull << 63);
inline constexpr uint64_t k1_state_shift = 16;  // the state byte inside the second word
static_assert(std::endian::native == std::endian::little);

// 1 when `e` is live and holds key (k0, k1), else 0; no branch.
inline uint32_t matches(const flow_entry* e, uint64_t k0, uint64_t k1) {
  const uint64_t w0 = load64(e);
  const uint64_t w1 = load64(reinterpret_cast<const unsigned char*>(e) + 8);
  const uint64_t live = (w1 >> k1_state_shift) & 0xff;
  return static_cast<uint32_t>(((w0 ^ k0) | ((w1 ^ k1) & k1_mask)) == 0) &
         static_cast<uint32_t>(live != 0);
}

}  // namespace flow_table_detail

class flow_table {
 public:
  static constexpr uint32_t bucket_entries = 2;  // one cache line
  // Entries younger than this in state established are not evicted by inserts.
  static constexpr uint32_t protect_established_ms = 1'000;

  // capacity is rounded up to a whole number of buckets (at least two).
  explicit flow_table(size_t capacity, flow_timeouts timeouts = {});
  ~flow_table();
  flow_table(const flow_table&) = delete;
  flow_table& operator=(const flow_table&) = delete;

  size_t capacity() const { return size_t{bucket_count_} * bucket_entries; }
  // Bytes of table memory (entries and IPv6 client addresses) per slot.
  static constexpr size_t bytes_per_slot() { return sizeof(flow_entry) + sizeof(ip_address); }
  size_t memory_bytes() const { return mem_bytes_; }
  size_t size() const { return size_; }
  const flow_table_stats& stats() const { return stats_; }
  const flow_timeouts& timeouts() const { return timeouts_; }
  void set_timeouts(const flow_timeouts& t) {
    timeouts_ = t;
    for (uint32_t s = 0; s < state_timeout_.size(); ++s)
      state_timeout_[s] = t.for_state(static_cast<tcp_state>(s));
  }

  // The compared key of a stored key given as words: IPv4(-mapped) clients inline, others as a
  // digest (their address is checked in the side array).
  static flow_table_key key_for(const stored_key_words& w) {
    const uint64_t ports = (w.tail & 0xffffffffu) << 32;
    const uint64_t vip = (w.tail >> 32) & 0xffffu;
    if (w.client_lo == 0 && static_cast<uint32_t>(w.client_hi) == 0xffff0000u)
      return flow_table_key{(w.client_hi >> 32) | ports, vip};
    return flow_table_key{digest(w.client_lo, w.client_hi) | ports, vip | (1ull << 63)};
  }
  // An IPv4 client (network order) without building the stored key's words.
  static flow_table_key key_for_v4(uint32_t client_be, uint16_t client_port, uint16_t vip_port,
                                   uint16_t vip_id) {
    return flow_table_key{uint64_t{client_be} | uint64_t{client_port} << 32 |
                              uint64_t{vip_port} << 48,
                          vip_id};
  }
  static flow_table_key key_for(const stored_flow_key& k) {
    stored_key_words w;
    std::memcpy(&w, &k, sizeof w);
    return key_for(w);
  }
  // The flow's table hash: picks its buckets, and is stable for the flow's life (drain spread
  // offsets, tunnel entropy), computable from the entry alone.
  // Keyed with the process's secret (flow_hash.h), so nobody can aim keys at a flow's buckets.
  static uint32_t hash(const flow_table_key& k) { return hash(k, process_flow_table_secret); }
  static uint32_t hash(const flow_table_key& k, const flow_table_secret& s) {
    return pair_multiply_shift(s.bucket, k.k0, k.k1);
  }
  static flow_table_key key_of_entry(const flow_entry& e) {
    return flow_table_key{flow_table_detail::load64(&e),
                          uint64_t{e.vip_id} | uint64_t{e.ipv6} << 63};
  }
  static uint32_t hash_of(const flow_entry& e) { return hash(key_of_entry(e)); }
  // The full stored key of an entry in this table (the IPv6 client from the side array, found
  // by the entry's address: pass the table's own entry, not a copy).
  stored_flow_key key_of(const flow_entry& e) const;

  // Where a key lives: its two bucket lines.
  struct probe {
    flow_entry* a = nullptr;
    flow_entry* b = nullptr;
  };
  probe probe_for(uint32_t hash) const {
    const uint32_t a = bucket_a(hash);
    return probe{bucket_line(a), bucket_line(bucket_b(hash, a))};
  }
  // Both lines at once: one round trip for the lookup and any insert.
  static void prefetch(const probe& p) {
    rte_prefetch0(p.a);
    rte_prefetch0(p.b);
  }
  // Second stage for IPv6 keys, once the lines are in cache: fetch the side-array addresses of
  // the entries whose digest matches, so lookup() does not wait for them.
  void prefetch_clients(const probe& p, const flow_table_key& k) const {
    const uint32_t m = match_bits(p, k);
    for (uint32_t i = 0; i < 4; ++i)
      if (m & (1u << i)) rte_prefetch0(&v6_clients_[slot_index(candidate(p, i))]);
  }

  // True when `e` has been idle longer than its state's timeout (read from a per-state table,
  // not a switch: this runs for every packet).
  bool expired(const flow_entry& e, uint32_t now_ms) const {
    return static_cast<int32_t>(now_ms - e.last_seen_ms) >
           static_cast<int32_t>(state_timeout_[static_cast<uint8_t>(e.state) & 7]);
  }
  // True at 87.5 % load and above: inserts often find both buckets full, and no longer move
  // entries to make room (the worker also picks a SYN's backend a stage early).
  bool nearly_full() const { return size_ >= capacity() - capacity() / 8; }

  // Live entry for the key, or nullptr. `full` is read only for IPv6 clients. An entry found
  // expired counts as absent; it stays in place (insert() reuses its slot, the scanner or the
  // caller removes it).
  flow_entry* lookup(const stored_flow_key& full, const flow_table_key& k, const probe& p,
                     uint32_t now_ms) const {
    flow_entry* e = find(full, k, p);
    return e != nullptr && !expired(*e, now_ms) ? e : nullptr;
  }
  flow_entry* lookup(const stored_flow_key& key, uint32_t now_ms) const {
    const flow_table_key k = key_for(key);
    return lookup(key, k, probe_for(hash(k)), now_ms);
  }

  struct insert_result {
    flow_entry* entry = nullptr;  // the new entry, or nullptr: key and last_seen_ms set, other
                                  // fields zero, state syn_seen as a placeholder (caller fills)
    bool evicted = false;         // a live (or expired) entry was displaced; copy in `displaced`
    flow_entry displaced;         // what was there, so the caller can fix its per-flow counters
                                  // (not a table slot: key_of() cannot give an IPv6 copy's client)
  };
  // Inserts the key (which must not be present as a live entry). On success the caller sets the
  // entry's fields; the key and last_seen_ms are already set. An insert may move other entries
  // to their other bucket, so pointers from earlier lookups are stale after an insert.
  insert_result insert(const stored_flow_key& full, const flow_table_key& k, const probe& p,
                       uint32_t now_ms);
  insert_result insert(const stored_flow_key& key, uint32_t now_ms) {
    const flow_table_key k = key_for(key);
    return insert(key, k, probe_for(hash(k)), now_ms);
  }

  // Frees the slot of `e` (a pointer returned by lookup/insert).
  void remove(flow_entry* e) {
    size_ -= e->state != tcp_state::empty;  // a second remove of the same slot is harmless
    *e = flow_entry{};
  }

  // Scans up to `budget` slots from where the last call stopped, removing expired entries.
  // `on_expire(const flow_entry&)` runs for each before it is cleared. Returns entries removed.
  template <typename F>
  uint32_t expire_step(uint32_t now_ms, uint32_t budget, F&& on_expire);

  // Visits up to `budget` slots from the same cursor as expire_step; `visit(flow_entry&)` returns
  // true to remove the entry (the worker uses it for drain-deadline flushes). Returns removed.
  template <typename F>
  uint32_t scan_step(uint32_t budget, F&& visit);

  // Walks every live entry (control-side snapshot reads are done by the owning worker).
  template <typename F>
  void for_each(F&& fn) const {
    for_each_in(0, capacity(), fn);
  }
  // Live entries in slots [begin, end) (for incremental walks).
  template <typename F>
  void for_each_in(size_t begin, size_t end, F&& fn) const {
    for (size_t i = begin; i < end && i < capacity(); ++i)
      if (entries_[i].state != tcp_state::empty) fn(static_cast<const flow_entry&>(entries_[i]));
  }

 private:
  // A 32-bit digest of an IPv6 client for the entry (the side array holds the address). The
  // bucket hash is computed from it, so clients with equal digests (and ports) share buckets.
  // Keyed like the bucket hash: an attacker in a /64 could otherwise compute addresses with a
  // victim's digest (CRC-32C is linear) and share its buckets whatever the bucket hash. Any two
  // clients share a digest with probability about 2^-31 (a folding xor once lost 3 bits, so
  // hosts numbered in one /64 shared buckets).
  static uint64_t digest(uint64_t lo, uint64_t hi) {
    return pair_multiply_shift(process_flow_table_secret.digest, lo, hi);
  }
  // Multiply-shift onto [0, bucket_count_): uses the hash's high bits.
  uint32_t bucket_a(uint32_t hash) const {
    return static_cast<uint32_t>((uint64_t{hash} * bucket_count_) >> 32);
  }
  // An independent second choice from a remix of the hash; never bucket a.
  uint32_t bucket_b(uint32_t hash, uint32_t a) const {
    const uint32_t h2 = (hash ^ (hash >> 15)) * 0x2c1b3c6du;
    const uint32_t b = static_cast<uint32_t>((uint64_t{h2 ^ (h2 >> 12)} * bucket_count_) >> 32);
    return b != a ? b : (a + 1 == bucket_count_ ? 0 : a + 1);
  }
  flow_entry* bucket_line(uint32_t bucket) const {
    return &entries_[size_t{bucket} * bucket_entries];
  }
  size_t slot_index(const flow_entry* e) const { return static_cast<size_t>(e - entries_); }
  // Candidate i of 4: a[0], a[1], b[0], b[1]. Selected with a mask, not a branch: which of the
  // four holds a flow is random, and a branch on it mispredicted every other packet (x0.89 in
  // the tenth round's prototype).
  static flow_entry* candidate(const probe& p, uint32_t i) {
    const auto a = reinterpret_cast<uintptr_t>(p.a);
    const auto b = reinterpret_cast<uintptr_t>(p.b - 2);
    const uintptr_t in_b = uintptr_t{0} - uintptr_t{i >> 1};
    return reinterpret_cast<flow_entry*>(a ^ ((a ^ b) & in_b)) + i;
  }
  static uint32_t match_bits(const probe& p, const flow_table_key& k) {
    using flow_table_detail::matches;
    return matches(p.a, k.k0, k.k1) | matches(p.a + 1, k.k0, k.k1) << 1 |
           matches(p.b, k.k0, k.k1) << 2 | matches(p.b + 1, k.k0, k.k1) << 3;
  }
  flow_entry* find(const stored_flow_key& full, const flow_table_key& k, const probe& p) const {
    const uint32_t m = match_bits(p, k);
    if (m == 0) return nullptr;
    flow_entry* e = candidate(p, static_cast<uint32_t>(__builtin_ctz(m)));
    if (!k.ipv6()) return e;  // the entry holds the whole key
    return find_v6(full, p, m);
  }
  flow_entry* find_v6(const stored_flow_key& full, const probe& p, uint32_t m) const;
  // The other bucket of the entry at slot index `idx`.
  uint32_t other_bucket_of(size_t idx) const;
  flow_entry* make_room(const probe& p);
  void move_entry(flow_entry* from, flow_entry* to);
  void store_key(flow_entry* slot, const stored_flow_key& full, const flow_table_key& k);

  uint32_t bucket_count_ = 0;
  size_t mem_bytes_ = 0;
  size_t size_ = 0;
  size_t scan_pos_ = 0;
  flow_timeouts timeouts_;
  std::array<uint32_t, 8> state_timeout_{};  // timeouts_.for_state(s) by tcp_state value
  flow_table_stats stats_;
  flow_entry* entries_ = nullptr;     // bucket_count_ * bucket_entries
  ip_address* v6_clients_ = nullptr;  // one per slot: the client of an IPv6 entry
  void* mem_ = nullptr;               // one block: the entries, then the IPv6 clients
  bool mem_from_rte_ = false;         // rte_zmalloc'd (EAL running) rather than aligned_alloc'd

  friend struct flow_table_test_access;  // unit tests inspect bucket placement
};

template <typename F>
uint32_t flow_table::scan_step(uint32_t budget, F&& visit) {
  uint32_t removed = 0;
  const size_t total = capacity();
  for (uint32_t i = 0; i < budget; ++i) {
    flow_entry& e = entries_[scan_pos_];
    if (e.state != tcp_state::empty && visit(e)) {
      remove(&e);
      ++removed;
    }
    if (++scan_pos_ == total) scan_pos_ = 0;
  }
  return removed;
}

template <typename F>
uint32_t flow_table::expire_step(uint32_t now_ms, uint32_t budget, F&& on_expire) {
  return scan_step(budget, [&](flow_entry& e) {
    if (!expired(e, now_ms)) return false;
    on_expire(static_cast<const flow_entry&>(e));
    ++stats_.expired;
    return true;
  });
}

}  // namespace tandem
