// Per-worker connection table: 5-tuple -> backend, colour, generation, TCP state.
// Owned by exactly one worker: no locks, no atomics, no allocation after construction.
//
// Layout: 2-choice bucketised hashing. Each bucket holds 8 entries of 48 bytes and 8 16-bit
// signatures (16 bytes; four buckets' signatures share a cache line), so a lookup touches one
// signature line and then one entry: 50 bytes per slot. Any even number of buckets
// (multiply-shift reduction, not a power-of-two mask), so a table can be sized to the flows it
// must hold. An insert into
// two full buckets first tries to move a resident to its other bucket (bounded cuckoo moves),
// then evicts the oldest entry of the key's first bucket (preferring one already expired), unless
// that entry is a recently-seen established TCP flow (then the insert fails and is counted:
// established flows are protected from new-flow floods). Only the first bucket is searched for a
// victim: its 8 entries are 6 cache lines, both buckets 12, and under a SYN flood those lines
// were most of the cost of a new flow (measured: 1.5x the SYN rate).
#pragma once

#include <rte_prefetch.h>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

struct alignas(16) flow_entry {
  stored_flow_key key;          // 24: client address and port, VIP port, VIP id
  uint32_t backend_id = 0;      // stable id in the generation's backend registry
  uint32_t last_seen_ms = 0;    // ms_clock time of the last packet
  uint32_t generation = 0;      // generation number the flow was created in
  uint32_t client_seq = 0;      // last client sequence number seen (for drain resets)
  uint32_t client_ack = 0;      // last client acknowledgement seen (= server's next seq)
  uint16_t service_id = 0;
  colour flow_colour = colour::blue;
  tcp_state state = tcp_state::empty;
};
static_assert(sizeof(flow_entry) == 48, "4 entries in 3 cache lines: at most 64 bytes per tracked flow");

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
};

// Small helpers of the lookup path, inline so the worker's per-packet calls compile to straight
// code (no calls, the bucket arithmetic done once per packet).
namespace flow_table_detail {

// Bit i set when sig[i] == s (s == 0 finds the empty slots); 8 slots.
inline uint32_t match_mask(const uint16_t* sig, uint16_t s) {
#if defined(__SSE2__)
  const __m128i line = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sig));
  const __m128i eq = _mm_cmpeq_epi16(line, _mm_set1_epi16(static_cast<short>(s)));
  // Narrow the 16-bit lanes to bytes so movemask yields one bit per slot.
  return static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(eq, _mm_setzero_si128())));
#else
  uint32_t m = 0;
  for (uint32_t i = 0; i < 8; ++i) m |= uint32_t{sig[i] == s} << i;
  return m;
#endif
}

// Full 24-byte key compare without a data-dependent loop.
inline bool key_equal(const stored_flow_key& a, const stored_flow_key& b) {
  uint64_t x[3], y[3];
  std::memcpy(x, &a, sizeof x);
  std::memcpy(y, &b, sizeof y);
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2])) == 0;
}
static_assert(sizeof(stored_flow_key) == 3 * sizeof(uint64_t));

// The sum of a key's two buckets modulo the bucket count, from its signature alone. Odd, and
// the bucket count even, so 2a == sum never holds: a key's two buckets always differ.
inline uint32_t pair_sum(uint16_t sig, uint32_t buckets) {
  uint32_t h = sig * 0x9e3779b1u;
  h ^= h >> 15;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  return static_cast<uint32_t>((uint64_t{h} * buckets) >> 32) | 1u;
}

// An entry may straddle two cache lines (48-byte entries, 64-byte lines): fetch both.
inline void prefetch_entry(const flow_entry* e) {
  rte_prefetch0(e);
  rte_prefetch0(reinterpret_cast<const unsigned char*>(e) + sizeof(flow_entry) - 1);
}

}  // namespace flow_table_detail

class flow_table {
 public:
  static constexpr uint32_t bucket_entries = 8;
  // Entries younger than this in state established are not evicted by inserts.
  static constexpr uint32_t protect_established_ms = 1'000;

  // capacity is rounded up to an even number of buckets of 8 (a multiple of 16 slots).
  explicit flow_table(size_t capacity, flow_timeouts timeouts = {});
  ~flow_table();
  flow_table(const flow_table&) = delete;
  flow_table& operator=(const flow_table&) = delete;

  size_t capacity() const { return size_t{bucket_count_} * bucket_entries; }
  // Bytes of table memory (signatures and entries) per slot.
  static constexpr size_t bytes_per_slot() { return sizeof(flow_entry) + sizeof(uint16_t); }
  size_t memory_bytes() const { return mem_bytes_; }
  size_t size() const { return size_; }
  const flow_table_stats& stats() const { return stats_; }
  const flow_timeouts& timeouts() const { return timeouts_; }
  void set_timeouts(const flow_timeouts& t) {
    timeouts_ = t;
    for (uint32_t s = 0; s < state_timeout_.size(); ++s)
      state_timeout_[s] = t.for_state(static_cast<tcp_state>(s));
  }

  // Where a hash lives: its two candidate buckets and its signature, computed once per packet.
  struct probe {
    uint32_t a = 0;
    uint32_t b = 0;
    uint16_t sig = 0;
  };
  probe probe_for(uint32_t hash) const {
    const uint32_t a = bucket_a(hash);
    const uint16_t sig = signature(hash);
    return probe{a, other_bucket(a, sig), sig};
  }

  // Prefetches the two candidate buckets' signature lines for a later lookup.
  void prefetch(const probe& p) const {
    rte_prefetch0(sigs_of(p.a));
    rte_prefetch0(sigs_of(p.b));
  }
  void prefetch(uint32_t hash) const { prefetch(probe_for(hash)); }
  // Second stage, once the signature lines are in cache: prefetches the matching entries (the
  // entry whose signature matches is almost always the flow), so the key compare in lookup()
  // does not wait for memory. Returns the first of them (bucket a's before b's) as a hint for
  // lookup(): nullptr when neither bucket has the signature.
  flow_entry* prefetch_entries(const probe& p) const {
    using flow_table_detail::match_mask;
    flow_entry* hint = nullptr;
    if (const uint32_t m = match_mask(sigs_of(p.b), p.sig); m != 0) {
      hint = entry_at(p.b, static_cast<uint32_t>(std::countr_zero(m)));
      flow_table_detail::prefetch_entry(hint);
    }
    if (const uint32_t m = match_mask(sigs_of(p.a), p.sig); m != 0) {
      hint = entry_at(p.a, static_cast<uint32_t>(std::countr_zero(m)));
      flow_table_detail::prefetch_entry(hint);
    }
    return hint;
  }
  flow_entry* prefetch_entries(uint32_t hash) const { return prefetch_entries(probe_for(hash)); }
  // Every line of the key's first bucket: an insert into two full buckets reads its 8 entries'
  // ages to pick a victim, and fetched one by one they cost several memory round trips per new
  // flow.
  void prefetch_victims(const probe& p) const {
    constexpr size_t bytes = bucket_entries * sizeof(flow_entry);  // 384: 6 aligned lines
    const auto* a = reinterpret_cast<const unsigned char*>(entry_at(p.a, 0));
    for (size_t off = 0; off < bytes; off += 64) rte_prefetch0(a + off);
  }
  // True when `e` has been idle longer than its state's timeout (read from a per-state table,
  // not a switch: this runs for every packet).
  bool expired(const flow_entry& e, uint32_t now_ms) const {
    return static_cast<int32_t>(now_ms - e.last_seen_ms) >
           static_cast<int32_t>(state_timeout_[static_cast<uint8_t>(e.state) & 7]);
  }
  // True when inserts are likely to find both buckets full (the victim search reads them).
  bool nearly_full() const { return size_ >= capacity() - capacity() / 16; }

  // Live entry for `key`, or nullptr. An entry found expired counts as absent; it stays in place
  // (the caller or the scanner removes it through remove()/expire_step(), which report it).
  flow_entry* lookup(const stored_flow_key& key, const probe& p, uint32_t now_ms) {
    flow_entry* e = find_in(p.a, p.sig, key);
    if (e == nullptr) e = find_in(p.b, p.sig, key);
    // Insert keeps a key in at most one slot, so a found-but-expired entry means "absent".
    if (e == nullptr || e->state == tcp_state::empty || expired(*e, now_ms)) return nullptr;
    return e;
  }
  // lookup() given prefetch_entries()'s hint, taken before other inserts and removals may have
  // moved entries: a live slot holding the key is the key's only slot, so a hint whose key
  // matches and whose slot is in use is the answer without matching signatures again; anything
  // else is looked up in full.
  flow_entry* lookup(const stored_flow_key& key, const probe& p, flow_entry* hint,
                     uint32_t now_ms) {
    if (hint == nullptr || !flow_table_detail::key_equal(hint->key, key) ||
        hint->state == tcp_state::empty)
      return lookup(key, p, now_ms);
    return expired(*hint, now_ms) ? nullptr : hint;
  }
  flow_entry* lookup(const stored_flow_key& key, uint32_t hash, uint32_t now_ms) {
    return lookup(key, probe_for(hash), now_ms);
  }

  // Looks up n keys at once (prefetching all buckets first). out[i] as lookup() would return.
  void lookup_bulk(const stored_flow_key* const* keys, const uint32_t* hashes, uint32_t n,
                   uint32_t now_ms, flow_entry** out);

  struct insert_result {
    flow_entry* entry = nullptr;  // the new entry, or nullptr: key and last_seen_ms set, other
                                  // fields zero, state syn_seen as a placeholder (caller fills)
    bool evicted = false;         // a live (or expired) entry was displaced; copy in `displaced`
    flow_entry displaced;         // what was there, so the caller can fix its per-flow counters
  };
  // Inserts `key` (which must not be present as a live entry). On success the caller sets the
  // entry's fields; the key and last_seen_ms are already set. An insert may move other entries
  // to their alternative bucket, so pointers from earlier lookups are stale after an insert.
  insert_result insert(const stored_flow_key& key, uint32_t hash, uint32_t now_ms);

  // Frees the slot of `e` (a pointer returned by lookup/insert).
  void remove(flow_entry* e);

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
  void for_each(F&& fn) const;
  // Live entries in slots [begin, end) (for incremental walks).
  template <typename F>
  void for_each_in(size_t begin, size_t end, F&& fn) const {
    for (size_t i = begin; i < end && i < capacity(); ++i)
      if (entries_[i].state != tcp_state::empty) fn(static_cast<const flow_entry&>(entries_[i]));
  }

 private:
  // Multiply-shift onto [0, bucket_count_): uses the hash's high bits.
  uint32_t bucket_a(uint32_t hash) const {
    return static_cast<uint32_t>((uint64_t{hash} * bucket_count_) >> 32);
  }
  // The other candidate bucket, from the current one and the signature alone (a + b is a
  // per-signature constant modulo the bucket count), so an entry can move without its hash.
  uint32_t other_bucket(uint32_t bucket, uint16_t sig) const {
    // a + b == pair_sum (mod buckets): an involution, so b's other bucket is a again.
    const uint32_t sum = flow_table_detail::pair_sum(sig, bucket_count_);
    return sum >= bucket ? sum - bucket : sum + bucket_count_ - bucket;
  }
  uint32_t bucket_b(uint32_t hash) const { return other_bucket(bucket_a(hash), signature(hash)); }
  // Multiplied first so that it does not repeat the high bits that chose the bucket.
  static uint16_t signature(uint32_t hash) {
    return static_cast<uint16_t>(((hash * 0x9e3779b1u) >> 16) | 1);
  }
  uint16_t* sigs_of(uint32_t bucket) const { return sigs_ + size_t{bucket} * bucket_entries; }
  flow_entry* entry_at(uint32_t bucket, uint32_t i) const {
    return &entries_[size_t{bucket} * bucket_entries + i];
  }
  flow_entry* find_in(uint32_t bucket, uint16_t sig, const stored_flow_key& key) const {
    flow_entry* base = entry_at(bucket, 0);
    for (uint32_t m = flow_table_detail::match_mask(sigs_of(bucket), sig); m != 0; m &= m - 1) {
      flow_entry* e = &base[std::countr_zero(m)];
      if (flow_table_detail::key_equal(e->key, key)) return e;
    }
    return nullptr;
  }
  flow_entry* make_room(uint32_t ba, uint32_t bb);
  void move_entry(uint32_t from, uint32_t i, uint32_t to, uint32_t j);

  uint32_t bucket_count_ = 0;
  size_t mem_bytes_ = 0;
  size_t size_ = 0;
  size_t scan_pos_ = 0;
  flow_timeouts timeouts_;
  std::array<uint32_t, 8> state_timeout_{};  // timeouts_.for_state(s) by tcp_state value
  flow_table_stats stats_;
  uint16_t* sigs_ = nullptr;       // bucket_entries per bucket; 0 = empty slot
  flow_entry* entries_ = nullptr;  // bucket_count_ * bucket_entries
  void* mem_ = nullptr;            // one block: the signature lines, then the entries
  bool mem_from_rte_ = false;      // rte_zmalloc'd (EAL running) rather than aligned_alloc'd

  friend struct flow_table_test_access;  // unit tests inspect bucket placement
};

template <typename F>
uint32_t flow_table::scan_step(uint32_t budget, F&& visit) {
  uint32_t removed = 0;
  const size_t total = capacity();
  for (uint32_t i = 0; i < budget; ++i) {
    flow_entry& e = entries_[scan_pos_];
    // The dense signature array says which slots are empty without reading their entries.
    if (sigs_[scan_pos_] != 0 && visit(e)) {
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

template <typename F>
void flow_table::for_each(F&& fn) const {
  const size_t total = capacity();
  for (size_t i = 0; i < total; ++i)
    if (entries_[i].state != tcp_state::empty) fn(static_cast<const flow_entry&>(entries_[i]));
}

}  // namespace tandem
