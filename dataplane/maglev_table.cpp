#include "dataplane/maglev_table.h"

#include <algorithm>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace tandem {

namespace {

// Two independent 64-bit finalisers (splitmix64 and murmur3's fmix64, each with its own
// pre-increment) so offset and skip are uncorrelated for the same identity.
uint64_t mix_offset(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

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
  uint32_t skip_inverse;  // skip^-1 mod M, set when the tail phase starts
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

// x mod m for x < m^2 by Barrett reduction: a division per candidate would dominate the tail.
struct barrett {
  uint32_t m;
  uint64_t r;  // floor((2^64 - 1) / m)
  explicit barrett(uint32_t mod) : m(mod), r(~uint64_t{0} / mod) {}
  uint32_t reduce(uint64_t x) const {
    __extension__ using u128 = unsigned __int128;
    const uint64_t q = static_cast<uint64_t>((static_cast<u128>(x) * r) >> 64);
    // x*r/2^64 undershoots x/m by less than x/2^64 < 1, so q is floor(x/m) or one less
    // (possible once m^3 > 2^64, i.e. m > ~2.6M).
    uint64_t rem = x - q * m;
    rem -= rem >= m ? m : 0;
    return static_cast<uint32_t>(rem);
  }
};

// Fills the table: the paper's populate loop, with members taking turns in the order
// `next_member` yields. Two things make it fast without changing a single entry:
//  - probing tests an occupancy bitmap (8 KiB at M=65537, L1-resident), not the entries;
//  - walking costs ~M/free probes per entry once the table is nearly full (most of the
//    M*ln(M) total), so for the last `tail` entries every free slot s is instead ranked by
//    its distance (s - next) * skip^-1 mod M along the member's permutation and the nearest
//    is taken: exactly the slot the walk would have reached.
template <typename NextMember>
void populate(std::vector<cursor>& cursors, uint32_t size, uint32_t* entries,
              NextMember next_member) {
  // A scan of `free` candidates (each ~2 probes' worth of work) beats a walk of ~M/free
  // probes once free < ~sqrt(M/2). At M=65537, tail 128 and 256 measured the same, 512 was
  // ~15% slower and no tail ~15-25% slower.
  uint32_t tail = 16;
  while (2 * uint64_t{tail} * tail < size) tail *= 2;
  tail = std::min(tail, size);

  std::vector<uint64_t> bits((size + 63) / 64, 0);
  uint64_t* const taken = bits.data();
  for (uint32_t left = size - tail; left != 0; --left) {
    cursor& c = cursors[next_member()];
    // M is prime and 1 <= skip < M, so the walk is a full cycle and finds a free slot.
    uint32_t slot = c.next;
    const uint32_t skip = c.skip;
    const uint32_t wrap = size - skip;
    while ((taken[slot >> 6] >> (slot & 63)) & 1) {
      slot = slot >= wrap ? slot - wrap : slot + skip;
    }
    taken[slot >> 6] |= uint64_t{1} << (slot & 63);
    entries[slot] = c.backend_id;
    c.next = slot >= wrap ? slot - wrap : slot + skip;
  }

  std::vector<uint32_t> free_slots;
  free_slots.reserve(tail);
  const uint32_t words = static_cast<uint32_t>(bits.size());
  for (uint32_t w = 0; w < words; ++w) {
    uint64_t free_bits = ~taken[w];
    if (w == words - 1 && (size & 63) != 0) free_bits &= (uint64_t{1} << (size & 63)) - 1;
    while (free_bits != 0) {
      free_slots.push_back(w * 64 + static_cast<uint32_t>(__builtin_ctzll(free_bits)));
      free_bits &= free_bits - 1;
    }
  }
  for (cursor& c : cursors) c.skip_inverse = inverse_mod(c.skip, size);

  const barrett mod(size);
  while (!free_slots.empty()) {
    cursor& c = cursors[next_member()];
    // (distance << 32 | index) is unique per slot, so the minimum names one slot.
    uint64_t best = ~uint64_t{0};
    const uint32_t n = static_cast<uint32_t>(free_slots.size());
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t s = free_slots[i];
      const uint32_t delta = s >= c.next ? s - c.next : s + (size - c.next);
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
  std::sort(sorted.begin(), sorted.end(), [](const member& a, const member& b) {
    return a.identity != b.identity ? a.identity < b.identity : a.backend_id < b.backend_id;
  });

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
  {
    std::vector<uint32_t> ids;
    ids.reserve(sorted.size());
    for (const member& m : sorted) {
      if (m.backend_id == invalid_backend) {
        return make_error("maglev backend id " + std::to_string(m.backend_id) +
                          " is reserved (invalid_backend)");
      }
      ids.push_back(m.backend_id);
    }
    std::sort(ids.begin(), ids.end());
    const auto dup = std::adjacent_find(ids.begin(), ids.end());
    if (dup != ids.end()) {
      return make_error("maglev duplicate backend id " + std::to_string(*dup));
    }
  }

  std::vector<cursor> cursors;
  std::vector<uint32_t> weights;
  cursors.reserve(sorted.size());
  weights.reserve(sorted.size());
  for (const member& m : sorted) {
    if (m.weight == 0) continue;  // drained: not in the table
    cursor c{};
    c.next = static_cast<uint32_t>(mix_offset(m.identity) % size);
    // size is prime, so skip in [1, size-1] is coprime with it: the permutation is a full cycle.
    c.skip = static_cast<uint32_t>(mix_skip(m.identity) % (size - 1)) + 1;
    c.backend_id = m.backend_id;
    cursors.push_back(c);
    weights.push_back(m.weight);
  }

  const uint64_t need = 100ull * cursors.size();
  if (size < need) {
    return make_error("maglev size " + std::to_string(size) + " is too small for " +
                      std::to_string(cursors.size()) + " backends: need at least " +
                      std::to_string(need) + " (100 per backend) for <= 1% imbalance");
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
    uint32_t i = n - 1;
    populate(cursors, size, entries, [&] { return i = (i + 1 == n) ? 0 : i + 1; });
    return table;
  }

  uint64_t weight_sum = 0;
  for (uint32_t w : weights) weight_sum += w;
  const uint64_t rounds = uint64_t{size} * max_weight / weight_sum + 1;
  if (n * rounds <= 32 * uint64_t{size}) {
    // Similar weights: visiting every member each round is cheap (a visit costs ~1/50 of a
    // heap step below).
    std::vector<uint64_t> credit(n, 0);
    uint32_t i = n - 1;
    populate(cursors, size, entries, [&] {
      for (;;) {
        i = (i + 1 == n) ? 0 : i + 1;
        credit[i] += weights[i];
        if (credit[i] >= max_weight) {
          credit[i] -= max_weight;  // weight <= max_weight: at most one entry per round
          return i;
        }
      }
    });
    return table;
  }

  // Very skewed weights: most members would place nothing in most rounds, so visit only
  // those that do, in (round, member) order from a min-heap.
  struct event {
    uint64_t round;
    uint32_t index;
    bool operator>(const event& o) const {
      return round != o.round ? round > o.round : index > o.index;
    }
  };
  std::vector<uint64_t> placed(n, 0);
  const auto round_of = [&](uint32_t i) {  // round of member i's next entry, 1-based
    const uint64_t w = weights[i];
    return ((placed[i] + 1) * max_weight + w - 1) / w;
  };
  std::vector<event> heap;
  heap.reserve(n);
  for (uint32_t i = 0; i < n; ++i) heap.push_back(event{round_of(i), i});
  std::make_heap(heap.begin(), heap.end(), std::greater<>{});
  populate(cursors, size, entries, [&] {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
    const uint32_t i = heap.back().index;
    ++placed[i];
    heap.back().round = round_of(i);
    std::push_heap(heap.begin(), heap.end(), std::greater<>{});
    return i;
  });
  return table;
}

}  // namespace tandem
