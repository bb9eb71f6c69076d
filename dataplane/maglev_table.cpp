#include "dataplane/maglev_table.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "dataplane/flow_hash.h"

namespace tandem {

namespace {

// Two independent 64-bit finalisers (splitmix64 and murmur3's fmix64, each with its own
// pre-increment) so offset and skip are uncorrelated for the same identity.
uint64_t mix_offset(uint64_t x) { return splitmix64_mix(x + 0x9e3779b97f4a7c15ull); }

uint64_t mix_skip(uint64_t x) {
  uint64_t z = x + 0xd1b54a32d192ed03ull;
  z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
  z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
  return z ^ (z >> 33);
}

// Per-member permutation cursor: only the next candidate slot is kept, never the whole
// permutation (the paper's next[i]); the permutation is offset + j*skip mod M.
struct cursor {
  uint32_t next;
  uint32_t skip;
  uint32_t backend_id;
  uint32_t skip_inverse;  // skip^-1 mod M, or 0 until the member first takes a tail turn
};

// (a + b) mod m for a, b < m, as a compare against m - b so it cannot overflow uint32_t even
// for m > 2^31.
inline uint32_t add_mod(uint32_t a, uint32_t b, uint32_t m) {
  const uint32_t wrap = m - b;
  return a >= wrap ? a - wrap : a + b;
}

// a^-1 mod m for prime m and 0 < a < m (extended Euclid).
uint32_t inverse_mod(uint32_t a, uint32_t m) {
  int64_t t = 0, new_t = 1;
  int64_t r = m, new_r = a;
  while (new_r != 0) {
    const int64_t q = r / new_r;
    t -= q * new_t;
    std::swap(t, new_t);
    r -= q * new_r;
    std::swap(r, new_r);
  }
  return static_cast<uint32_t>(t < 0 ? t + m : t);
}

// x mod m by Barrett reduction: a division per candidate would dominate the tail, and one
// per member (offset and skip) costs more than the sort at 10000 members.
struct barrett {
  uint32_t m;
  uint64_t r;  // floor((2^64 - 1) / m)
  explicit barrett(uint32_t mod) : m(mod), r(~uint64_t{0} / mod) {}
  // For x < m^2: x*r/2^64 undershoots x/m by less than x/2^64 < 1, so the quotient estimate
  // is floor(x/m) or one less (possible once m^3 > 2^64, i.e. m > ~2.6M).
  uint32_t reduce(uint64_t x) const {
    uint64_t rem = x - quotient(x) * m;
    rem -= rem >= m ? m : 0;
    return static_cast<uint32_t>(rem);
  }
  // Any 64-bit x: the estimate undershoots by less than x*(1 + 1/m)/2^64 < 2.
  uint32_t reduce_any(uint64_t x) const {
    uint64_t rem = x - quotient(x) * m;
    rem -= rem >= m ? m : 0;
    rem -= rem >= m ? m : 0;
    return static_cast<uint32_t>(rem);
  }

 private:
  uint64_t quotient(uint64_t x) const {
    __extension__ using u128 = unsigned __int128;
    return static_cast<uint64_t>((static_cast<u128>(x) * r) >> 64);
  }
};

// Turn orders (which member places the next entry): plain value types, not lambdas capturing
// by reference, so their state can stay in registers across the entry stores.
struct round_robin {
  static constexpr bool may_repeat = false;  // no member twice within n consecutive turns
  uint32_t i;
  uint32_t n;
  uint32_t operator()() { return i = (i + 1 == n) ? 0 : i + 1; }
};

// Every member earns weight/max_weight of an entry per round and places one per whole credit.
struct credit_rounds {
  static constexpr bool may_repeat = true;  // a heavy member can place in consecutive turns
  const uint32_t* weights;
  uint64_t* credit;
  uint32_t n;
  uint32_t max_weight;
  uint32_t i;
  uint32_t operator()() {
    for (;;) {
      i = (i + 1 == n) ? 0 : i + 1;
      credit[i] += weights[i];
      if (credit[i] >= max_weight) {
        credit[i] -= max_weight;  // weight <= max_weight: at most one entry per round
        return i;
      }
    }
  }
};

// The same order as credit_rounds, visiting only the members that place: member i places its
// k-th entry in round ceil(k * max_weight / weight), members in sorted order within a round.
struct event_heap {
  struct event {
    uint64_t round;
    uint32_t index;
    bool operator>(const event& o) const {
      return round != o.round ? round > o.round : index > o.index;
    }
  };
  static constexpr bool may_repeat = true;
  const uint32_t* weights;
  uint64_t* placed;
  event* heap;  // n events, a min-heap on (round, index)
  uint32_t n;
  uint32_t max_weight;
  uint64_t round_of(uint32_t i) const {  // round of member i's next entry, 1-based
    const uint64_t w = weights[i];
    return ((placed[i] + 1) * max_weight + w - 1) / w;
  }
  uint32_t operator()() {
    std::pop_heap(heap, heap + n, std::greater<>{});
    const uint32_t i = heap[n - 1].index;
    ++placed[i];
    heap[n - 1].round = round_of(i);
    std::push_heap(heap, heap + n, std::greater<>{});
    return i;
  }
};

// Slots are handled as q = slot - M, in [-M, 0): a step along a permutation is then an add and
// a sign test, and `free_end` (the free map's end) is indexed by q directly.
inline int64_t step(int64_t q, int64_t skip, int64_t m) {
  const int64_t t = q + skip;
  return t >= 0 ? t - m : t;
}

// First free slot from q on (q itself included) along the permutation with this skip.
inline int64_t walk(const uint8_t* free_end, int64_t q, int64_t skip, int64_t m) {
  while (!free_end[q]) q = step(q, skip, m);
  return q;
}

// Four 32-bit slots in one SSE register (GCC/Clang vector extension, no intrinsics).
typedef uint32_t slots4 __attribute__((vector_size(16)));

// t mod m for t < 2m <= 2^32: the smaller of t and t - m (which wraps when t < m).
inline slots4 reduce_once(slots4 t, slots4 m) {
  const slots4 u = t - m;
  return t < u ? t : u;
}

// Fills the table: the paper's populate loop, with members taking turns in the order
// `next_member` yields, and not one entry different from it (the unit tests compare with a
// literal transcription and pin checksums of earlier builds). A member's walk to its next
// free slot takes ~M/free probes, ~M*ln(M) in all, and where it stops is a branch no
// predictor learns, so the fill runs in three stages:
//  - up to 7/8 full (short walks, where that mispredicted stop dominated): the walks of
//    `lanes` consecutive turns run side by side, branch-free, each against the table as it
//    was before the batch, until every lane has found a free slot. A lane's find stays right
//    unless an earlier turn of the batch took that very slot (every slot before it on its
//    walk was already taken), which the commit, in turn order, re-checks and walks on from;
//  - then walks are long and the probes themselves dominate: the member's permutation is
//    computed 16 slots at a time, 4 per vector instruction, and scanned;
//  - for the last `tail` entries every free slot s is instead ranked by its distance
//    (s - next) * skip^-1 mod M along the member's permutation and the nearest is taken:
//    exactly the slot the walk would have reached.
// `active` is the number of members the schedule can name.
template <typename Schedule>
void populate(std::vector<cursor>& cursors, uint32_t size, uint32_t* entries,
              Schedule next_member, uint32_t active) {
  // A scan of `free` candidates (~5 cycles each) beats the 16-slot walk (~1 cycle per probe,
  // ~M/free probes) below free ~ sqrt(M/5); measured best: the power of two >= sqrt(M/8)
  // (128 at M=65537, 512 at M=655373).
  uint32_t tail = 16;
  while (8 * uint64_t{tail} * tail < size) tail *= 2;
  tail = std::min(tail, size);

  const int64_t m = size;
  // One byte per slot, 1 = free: a probe is a single load (bits would need a shift and mask).
  std::vector<uint8_t> free_map(size, 1);
  uint8_t* const free_end = free_map.data() + size;
  cursor* const cur = cursors.data();
  const auto place = [free_end, entries, m](cursor& c, int64_t q, int64_t skip) {
    free_end[q] = 0;
    entries[q + m] = c.backend_id;
    c.next = static_cast<uint32_t>(step(q, skip, m) + m);
  };
  uint32_t left = size;  // free slots

  constexpr uint32_t lanes = 6;  // measured: 4 is ~5% slower, 8 slower at M=655373
  const uint32_t batch_stop = std::max(size / 8, tail);
  if (active >= lanes) {
    while (left - batch_stop >= lanes) {
      cursor* cp[lanes];
      int64_t q[lanes], skip[lanes], found[lanes];
      uint32_t stale = 0;  // lanes whose member already has an earlier lane in this batch
#pragma GCC unroll 8
      for (uint32_t b = 0; b < lanes; ++b) {
        cp[b] = &cur[next_member()];
        q[b] = int64_t{cp[b]->next} - m;
        skip[b] = cp[b]->skip;
        found[b] = q[b];
        if constexpr (Schedule::may_repeat) {
#pragma GCC unroll 8
          for (uint32_t a = 0; a < b; ++a) stale |= uint32_t{cp[a] == cp[b]} << b;
        }
      }
      // Every lane steps every round; `found` freezes at the lane's first free slot. (Keep
      // the break inside: with the test in the loop condition GCC stops unrolling the lanes.)
      uint32_t done = stale;
      for (;;) {
#pragma GCC unroll 8
        for (uint32_t b = 0; b < lanes; ++b) {
          const uint32_t is_free = free_end[q[b]];
          found[b] = (done >> b) & 1 ? found[b] : q[b];
          done |= is_free << b;
          q[b] = step(q[b], skip[b], m);
        }
        if (done == (1u << lanes) - 1) break;
      }
#pragma GCC unroll 8
      for (uint32_t b = 0; b < lanes; ++b) {
        cursor& c = *cp[b];
        // A stale lane walked from its member's old cursor: restart from the current one.
        const int64_t from = (stale >> b) & 1 ? int64_t{c.next} - m : found[b];
        place(c, walk(free_end, from, skip[b], m), skip[b]);
      }
      left -= lanes;
    }
  }
  // Fewer members than lanes (or the batches' remainder): plain walks.
  for (; left > batch_stop; --left) {
    cursor& c = cur[next_member()];
    const int64_t skip = c.skip;
    place(c, walk(free_end, int64_t{c.next} - m, skip, m), skip);
  }

  // slots4 adds two slots < M in 32 bits, so this holds up to M = 2^31 (the configuration
  // allows 2^24); beyond, the plain walk below.
  if (size <= 1u << 31) {
    constexpr uint32_t block = 16;
    const slots4 mv = {size, size, size, size};
    const uint8_t* const free_at = free_map.data();
    for (; left > tail; --left) {
      cursor& c = cur[next_member()];
      const uint32_t k1 = c.skip;
      const uint32_t k2 = add_mod(k1, k1, size);
      const uint32_t k3 = add_mod(k2, k1, size);
      const uint32_t k4 = add_mod(k3, k1, size);
      const slots4 step4 = {k4, k4, k4, k4};
      const uint32_t n0 = c.next;
      slots4 at = reduce_once(slots4{n0, n0, n0, n0} + slots4{0, k1, k2, k3}, mv);
      alignas(16) uint32_t candidate[block];
      uint32_t j = block;
      while (j == block) {
#pragma GCC unroll 8
        for (uint32_t i = 0; i < block; i += 4) {
          std::memcpy(&candidate[i], &at, sizeof at);
          at = reduce_once(at + step4, mv);
        }
        j = 0;
        while (j < block && !free_at[candidate[j]]) ++j;
      }
      place(c, int64_t{candidate[j]} - m, k1);
    }
  }
  for (; left > tail; --left) {
    cursor& c = cur[next_member()];
    const int64_t skip = c.skip;
    place(c, walk(free_end, int64_t{c.next} - m, skip, m), skip);
  }

  std::vector<uint32_t> free_slots;
  free_slots.reserve(tail);
  const uint8_t* const map = free_map.data();
  uint32_t s = 0;
  for (; size - s >= 8; s += 8) {  // mostly taken: test 8 slots at once
    uint64_t word;
    std::memcpy(&word, map + s, 8);
    if (word == 0) continue;
    for (uint32_t k = 0; k < 8; ++k) {
      if (map[s + k]) free_slots.push_back(s + k);
    }
  }
  for (; s < size; ++s) {
    if (map[s]) free_slots.push_back(s);
  }

  const barrett mod(size);
  while (!free_slots.empty()) {
    cursor& c = cur[next_member()];
    // Only members that take a tail turn need the inverse (at most `tail` of them).
    if (c.skip_inverse == 0) c.skip_inverse = inverse_mod(c.skip, size);
    // (distance << 32 | index) is unique per slot, so the minimum names one slot.
    uint64_t best = ~uint64_t{0};
    const uint32_t n = static_cast<uint32_t>(free_slots.size());
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t slot = free_slots[i];
      const uint32_t delta = slot >= c.next ? slot - c.next : slot + (size - c.next);
      const uint64_t distance = mod.reduce(uint64_t{delta} * c.skip_inverse);
      best = std::min(best, distance << 32 | i);
    }
    const uint32_t i = static_cast<uint32_t>(best);
    const uint32_t slot = free_slots[i];
    free_slots[i] = free_slots.back();
    free_slots.pop_back();
    entries[slot] = c.backend_id;
    c.next = add_mod(slot, c.skip, size);
  }
}

bool identity_less(const maglev_table::member& a, const maglev_table::member& b) {
  return a.identity != b.identity ? a.identity < b.identity : a.backend_id < b.backend_id;
}

// Members in (identity, backend_id) order. Identities are hashes, so std::sort's comparisons
// mispredict about half the time (~5% of a 1000-member build, more than the fill at 10000);
// beyond a few dozen members a stable LSD radix sort on the identity's 8 bytes is cheaper.
// Only equal identities need backend_id as tie-break; they are rejected by the caller, and
// for them the comparison sort is used so the error names the same pair as always.
void sort_members(std::vector<maglev_table::member>& v) {
  if (v.size() >= 64) {
    std::vector<maglev_table::member> tmp(v.size());
    for (int shift = 0; shift < 64; shift += 8) {
      uint32_t start[257] = {};
      for (const maglev_table::member& m : v) ++start[((m.identity >> shift) & 0xff) + 1];
      for (int d = 0; d < 256; ++d) start[d + 1] += start[d];
      for (const maglev_table::member& m : v) tmp[start[(m.identity >> shift) & 0xff]++] = m;
      v.swap(tmp);
    }
    bool tie = false;
    for (std::size_t i = 1; i < v.size(); ++i) tie |= v[i].identity == v[i - 1].identity;
    if (!tie) return;
  }
  std::sort(v.begin(), v.end(), identity_less);
}

// The smallest backend id listed twice, or invalid_backend (which no member may use). Ids
// are registry numbers, usually dense: a bitmap then answers without sorting, and only a
// duplicate (an error) or sparse ids take the sort.
uint32_t smallest_duplicate_id(const std::vector<maglev_table::member>& v) {
  uint32_t max_id = 0;
  for (const maglev_table::member& m : v) max_id = std::max(max_id, m.backend_id);
  if (max_id / 64 <= v.size() + 64) {  // at most ~8 bytes of bitmap per member
    std::vector<uint64_t> seen(max_id / 64 + 1, 0);
    bool duplicate = false;
    for (const maglev_table::member& m : v) {
      uint64_t& word = seen[m.backend_id / 64];
      const uint64_t bit = uint64_t{1} << (m.backend_id % 64);
      duplicate |= (word & bit) != 0;
      word |= bit;
    }
    if (!duplicate) return invalid_backend;
  }
  std::vector<uint32_t> ids;
  ids.reserve(v.size());
  for (const maglev_table::member& m : v) ids.push_back(m.backend_id);
  std::sort(ids.begin(), ids.end());
  const auto dup = std::adjacent_find(ids.begin(), ids.end());
  return dup != ids.end() ? *dup : invalid_backend;
}

}  // namespace

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n < 4) return true;
  if (n % 2 == 0 || n % 3 == 0) return false;
  // 6k +/- 1 trial division; i*i in 64 bits so n near 2^32 cannot overflow.
  for (uint64_t i = 5; i * i <= n; i += 6) {
    if (n % i == 0 || n % (i + 2) == 0) return false;
  }
  return true;
}

result<maglev_table> maglev_table::build(std::span<const member> members, uint32_t size) {
  if (!is_prime(size)) {
    return make_error("maglev size " + std::to_string(size) + " is not prime");
  }

  // Sort a copy by (identity, backend_id): every worker and rebuild then sees one order,
  // whatever order the configuration listed the backends in.
  std::vector<member> sorted(members.begin(), members.end());
  sort_members(sorted);

  // Duplicates are checked across drained members too: a drained backend still owns its id
  // and identity, so a clash is a configuration error either way.
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i].identity == sorted[i - 1].identity) {
      return make_error("maglev duplicate backend identity " +
                        std::to_string(sorted[i].identity) + " (backend ids " +
                        std::to_string(sorted[i - 1].backend_id) + " and " +
                        std::to_string(sorted[i].backend_id) + ")");
    }
  }
  for (const member& m : sorted) {
    if (m.backend_id == invalid_backend) {
      return make_error("maglev backend id " + std::to_string(m.backend_id) +
                        " is reserved (invalid_backend)");
    }
  }
  if (const uint32_t dup = smallest_duplicate_id(sorted); dup != invalid_backend) {
    return make_error("maglev duplicate backend id " + std::to_string(dup));
  }

  const barrett mod_size(size);
  const barrett mod_size_less_1(size - 1);
  std::vector<cursor> cursors;
  std::vector<uint32_t> weights;
  cursors.reserve(sorted.size());
  weights.reserve(sorted.size());
  for (const member& m : sorted) {
    if (m.weight == 0) continue;  // drained: not in the table
    cursor c{};
    c.next = mod_size.reduce_any(mix_offset(m.identity));
    // size is prime, so skip in [1, size-1] is coprime with it: the permutation is a full cycle.
    c.skip = mod_size_less_1.reduce_any(mix_skip(m.identity)) + 1;
    c.backend_id = m.backend_id;
    cursors.push_back(c);
    weights.push_back(m.weight);
  }

  // Every member with weight > 0 needs room for an entry (enough with equal weights, where
  // the first round gives each one; very uneven weights can still leave a light member
  // without). The operator rule, >= 100 entries per backend for <= 1% imbalance, is the
  // configuration check's (control/config.cpp), not the builder's.
  if (size < cursors.size()) {
    return make_error("maglev size " + std::to_string(size) + " is too small for " +
                      std::to_string(cursors.size()) +
                      " backends with weight > 0: each needs at least one entry, so the size "
                      "must be at least the number of backends");
  }

  maglev_table table;
  if (cursors.empty()) return table;
  table.entries_.assign(size, invalid_backend);
  uint32_t* const entries = table.entries_.data();
  const uint32_t n = static_cast<uint32_t>(cursors.size());

  // Weighting (NSDI'16 section 3.4) as credits: each round every member earns
  // weight/max_weight of an entry and places one when it holds a whole credit, so a
  // max-weight member places every round and shares follow the weights. Equivalently a
  // member places its k-th entry in round ceil(k * max_weight / weight), members in sorted
  // order within a round. The three schedules below produce that same order.
  const auto [min_it, max_it] = std::minmax_element(weights.begin(), weights.end());
  const uint32_t max_weight = *max_it;
  if (*min_it == max_weight) {
    // Equal weights: plain round robin.
    populate(cursors, size, entries, round_robin{n - 1, n}, n);
    return table;
  }

  uint64_t weight_sum = 0;
  for (uint32_t w : weights) weight_sum += w;
  const uint64_t rounds = uint64_t{size} * max_weight / weight_sum + 1;
  if (n * rounds <= 32 * uint64_t{size}) {
    // Similar weights: visiting every member each round is cheap (a visit costs ~1/50 of a
    // heap step below).
    std::vector<uint64_t> credit(n, 0);
    populate(cursors, size, entries,
             credit_rounds{weights.data(), credit.data(), n, max_weight, n - 1}, n);
    return table;
  }

  // Very skewed weights: most members would place nothing in most rounds, so visit only
  // those that do, in (round, member) order from a min-heap.
  std::vector<uint64_t> placed(n, 0);
  std::vector<event_heap::event> heap;
  heap.reserve(n);
  event_heap events{weights.data(), placed.data(), nullptr, n, max_weight};
  for (uint32_t i = 0; i < n; ++i) heap.push_back(event_heap::event{events.round_of(i), i});
  std::make_heap(heap.begin(), heap.end(), std::greater<>{});
  events.heap = heap.data();
  populate(cursors, size, entries, events, n);
  return table;
}

}  // namespace tandem
