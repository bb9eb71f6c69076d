#include "dataplane/flow_table.h"

#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_prefetch.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace tandem {
namespace {

static_assert(sizeof(flow_entry) == 48 && alignof(flow_entry) == 16);
static_assert(flow_table::bucket_entries == 8, "signature matching assumes 8 slots per bucket");

using flow_table_detail::key_equal;
using flow_table_detail::match_mask;
using flow_table_detail::prefetch_entry;

constexpr size_t max_buckets = size_t{1} << 28;  // 2^31 entries, 100 GiB: beyond any real table

// Second-hop buckets make_room may inspect per insert. At 1M entries plain 2-choice placement
// first overflows a bucket at ~70% load; one hop reaches ~91-92%, one hop plus 16 second-hop
// lines ~94% (each extra line is a cache miss on an insert into two full buckets).
constexpr uint32_t second_hop_budget = 16;

}  // namespace

flow_table::flow_table(size_t capacity, flow_timeouts timeouts) {
  set_timeouts(timeouts);
  const size_t wanted = capacity / bucket_entries + (capacity % bucket_entries != 0);
  if (wanted > max_buckets) throw std::length_error("flow_table: capacity too large");
  const size_t buckets = wanted < 2 ? 2 : wanted + (wanted & 1);  // even: see pair_sum
  bucket_count_ = static_cast<uint32_t>(buckets);

  // One zeroed block: the signatures first (small, hot), then the entries.
  const size_t sig_bytes = (buckets * bucket_entries * sizeof(uint16_t) + 63) / 64 * 64;
  const size_t bytes = sig_bytes + buckets * bucket_entries * sizeof(flow_entry);
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
  sigs_ = static_cast<uint16_t*>(mem_);
  entries_ = reinterpret_cast<flow_entry*>(static_cast<unsigned char*>(mem_) + sig_bytes);
}

flow_table::~flow_table() {
  if (mem_from_rte_)
    rte_free(mem_);
  else
    std::free(mem_);
}






// Three passes per chunk so the misses of different keys overlap: prefetch every signature line,
// then match signatures and prefetch the first candidate entry of each bucket, then compare keys.
void flow_table::lookup_bulk(const stored_flow_key* const* keys, const uint32_t* hashes, uint32_t n,
                             uint32_t now_ms, flow_entry** out) {
  constexpr uint32_t chunk = 32;
  uint32_t match[chunk][2];
  for (uint32_t base = 0; base < n; base += chunk) {
    const uint32_t m = n - base < chunk ? n - base : chunk;
    const uint32_t* hs = hashes + base;
    for (uint32_t i = 0; i < m; ++i) prefetch(hs[i]);
    for (uint32_t i = 0; i < m; ++i) {
      const uint16_t sig = signature(hs[i]);
      const uint32_t bk[2] = {bucket_a(hs[i]), bucket_b(hs[i])};
      for (uint32_t c = 0; c < 2; ++c) {
        match[i][c] = match_mask(sigs_of(bk[c]), sig);
        if (match[i][c] != 0)
          prefetch_entry(&entries_[size_t{bk[c]} * bucket_entries +
                                   static_cast<uint32_t>(std::countr_zero(match[i][c]))]);
      }
    }
    for (uint32_t i = 0; i < m; ++i) {
      const stored_flow_key& key = *keys[base + i];
      const uint32_t bk[2] = {bucket_a(hs[i]), bucket_b(hs[i])};
      flow_entry* found = nullptr;
      for (uint32_t c = 0; c < 2 && found == nullptr; ++c) {
        flow_entry* b = &entries_[size_t{bk[c]} * bucket_entries];
        for (uint32_t mm = match[i][c]; mm != 0; mm &= mm - 1) {
          flow_entry* e = &b[std::countr_zero(mm)];
          if (key_equal(e->key, key)) {
            found = e;
            break;
          }
        }
      }
      if (found != nullptr &&
          (found->state == tcp_state::empty || expired(*found, now_ms)))
        found = nullptr;
      out[base + i] = found;
    }
  }
}

flow_table::insert_result flow_table::insert(const stored_flow_key& key, uint32_t hash,
                                             uint32_t now_ms) {
  insert_result r;
  const uint32_t ba = bucket_a(hash);
  const uint32_t bb = bucket_b(hash);
  const uint16_t sig = signature(hash);
  bool displace = true;  // the chosen slot holds an entry the caller must hear about

  // The key may still sit here expired (lookup reports those as absent): reuse its slot so a
  // key never occupies two slots.
  flow_entry* slot = find_in(ba, sig, key);
  if (slot == nullptr) slot = find_in(bb, sig, key);
  if (slot != nullptr) {
    // Live only if the caller broke the "not present" contract; still report it as displaced.
    if (slot->state == tcp_state::empty || expired(*slot, now_ms))
      ++stats_.expired;
    else
      ++stats_.evictions;
  } else {
    const uint32_t free_a = match_mask(sigs_of(ba), 0);
    const uint32_t free_b = match_mask(sigs_of(bb), 0);
    if ((free_a | free_b) != 0) {
      // The less loaded bucket keeps both choices balanced (ties go to bucket_a).
      const bool use_a = std::popcount(free_a) >= std::popcount(free_b);
      const uint32_t bucket = use_a ? ba : bb;
      const uint32_t i = static_cast<uint32_t>(std::countr_zero(use_a ? free_a : free_b));
      slot = &entries_[size_t{bucket} * bucket_entries + i];
      displace = false;
    } else {
      // Both buckets full: reuse the oldest expired entry of the first bucket, else move a
      // resident away, else displace the first bucket's oldest live entry (one bucket: 6 cache
      // lines, see the header). Fetch the residents' other buckets while scanning ages.
      const bool may_move = size_ < capacity();  // a full table has no free slot to move into
      if (may_move) {
        for (const uint32_t bucket : {ba, bb})
          for (uint32_t i = 0; i < bucket_entries; ++i)
            rte_prefetch0(sigs_of(other_bucket(bucket, sigs_of(bucket)[i])));
      }
      flow_entry* oldest = &entries_[size_t{ba} * bucket_entries];  // set even if all ages tie
      flow_entry* oldest_expired = nullptr;
      int32_t oldest_age = INT32_MIN;
      int32_t oldest_expired_age = INT32_MIN;
      {
        flow_entry* base = &entries_[size_t{ba} * bucket_entries];  // = `oldest` as a default
        for (uint32_t i = 0; i < bucket_entries; ++i) {
          flow_entry* e = &base[i];
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
      }
      if (oldest_expired != nullptr) {
        slot = oldest_expired;
        ++stats_.expired;
      } else if (may_move && (slot = make_room(ba, bb)) != nullptr) {
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
    const size_t idx = static_cast<size_t>(slot - entries_);
    sigs_[idx] = sig;
    size_ += !displace;
  }

  if (displace) {
    r.evicted = true;
    r.displaced = *slot;
  }
  *slot = flow_entry{};
  slot->key = key;
  slot->last_seen_ms = now_ms;
  slot->state = tcp_state::syn_seen;  // marks the slot occupied until the caller sets the state
  ++stats_.inserts;
  r.entry = slot;
  return r;
}

void flow_table::move_entry(uint32_t from, uint32_t i, uint32_t to, uint32_t j) {
  entries_[size_t{to} * bucket_entries + j] = entries_[size_t{from} * bucket_entries + i];
  sigs_of(to)[j] = sigs_of(from)[i];
  sigs_of(from)[i] = 0;
  entries_[size_t{from} * bucket_entries + i].state = tcp_state::empty;
}

// Both candidate buckets are full: move a resident to its other bucket (one hop), or a resident
// of that bucket on to its own other bucket (two hops, bounded). Returns the freed slot in ba/bb.
flow_entry* flow_table::make_room(uint32_t ba, uint32_t bb) {
  struct hop {
    uint32_t from;
    uint32_t slot;
    uint32_t to;
  };
  hop first[2 * bucket_entries];
  uint32_t n = 0;
  for (const uint32_t bucket : {ba, bb}) {
    for (uint32_t i = 0; i < bucket_entries; ++i) {
      const uint32_t to = other_bucket(bucket, sigs_of(bucket)[i]);
      if (to == ba || to == bb) continue;  // its other bucket is full too
      rte_prefetch0(sigs_of(to));
      first[n++] = hop{bucket, i, to};
    }
  }
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t free = match_mask(sigs_of(first[k].to), 0);
    if (free != 0) {
      move_entry(first[k].from, first[k].slot, first[k].to,
                 static_cast<uint32_t>(std::countr_zero(free)));
      return &entries_[size_t{first[k].from} * bucket_entries + first[k].slot];
    }
  }

  uint32_t budget = second_hop_budget;
  for (uint32_t k = 0; k < n && budget != 0; ++k) {
    const uint32_t mid = first[k].to;
    bool seen = false;
    for (uint32_t p = 0; p < k; ++p) seen |= first[p].to == mid;
    if (seen) continue;
    uint32_t next[bucket_entries];
    for (uint32_t j = 0; j < bucket_entries; ++j) {
      next[j] = other_bucket(mid, sigs_of(mid)[j]);
      rte_prefetch0(sigs_of(next[j]));
    }
    for (uint32_t j = 0; j < bucket_entries && budget != 0; ++j) {
      if (next[j] == ba || next[j] == bb) continue;
      --budget;
      const uint32_t free = match_mask(sigs_of(next[j]), 0);
      if (free != 0) {
        move_entry(mid, j, next[j], static_cast<uint32_t>(std::countr_zero(free)));
        move_entry(first[k].from, first[k].slot, mid, j);
        return &entries_[size_t{first[k].from} * bucket_entries + first[k].slot];
      }
    }
  }
  return nullptr;
}

void flow_table::remove(flow_entry* e) {
  const size_t idx = static_cast<size_t>(e - entries_);
  uint16_t& sig = sigs_[idx];
  size_ -= sig != 0;  // a second remove of the same slot is harmless
  sig = 0;
  e->state = tcp_state::empty;
}

}  // namespace tandem
