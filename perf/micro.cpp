// Microbenchmarks (Google Benchmark) of tandem's hot-path pieces and of the control-side builds.
// Run: build/perf/micro [--benchmark_filter=REGEX] [--benchmark_repetitions=5
//      --benchmark_report_aggregates_only=true]. See docs/performance.md.
//
// EAL is started once (no hugepages, own file prefix) because the RCU publisher allocates from
// DPDK's heap; the flow tables here then come from the EAL heap too, as in the worker.
#include <benchmark/benchmark.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "control/config.h"
#include "control/generation_builder.h"
#include "dataplane/flow_hash.h"
#include "dataplane/flow_table.h"
#include "dataplane/generation_publisher.h"
#include "dataplane/maglev_table.h"
#include "dataplane/packet_parser.h"
#include "perf/frame.h"

namespace {

using namespace tandem;

const uint8_t dst_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
constexpr uint32_t vip = 198u << 24 | 51u << 16 | 100u << 8 | 10u;

flow_key key_of(uint64_t i) {
  flow_key k{};
  k.src = ip_address::from_v4_be(__builtin_bswap32(perf::client_ip(i)));
  k.dst = ip_address::from_v4_be(__builtin_bswap32(vip));
  k.src_port = __builtin_bswap16(perf::client_port(i));
  k.dst_port = __builtin_bswap16(80);
  k.proto = 6;
  return k;
}

// The flow table's own key for flow i (VIP id 0).
stored_flow_key stored_key_of(uint64_t i) { return make_stored_key(key_of(i), 0); }

// --- memory --------------------------------------------------------------------------------

// Dependent loads over a random cycle of cache lines in a working set of N MiB: the latency a
// flow-table miss pays once the table outgrows the caches. lscpu's L3 size is the host's; a VM
// may get much less of it (docs/performance.md, seventh round). 2 MiB pages where the kernel
// gives them (hugetlbfs, else transparent huge pages), so the guest's page walks stay short; a
// host that backs the VM with 4 KiB pages still adds TLB misses (eighth round).
void BM_memory_latency(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0)) << 20;
  const char* pages = "hugetlb";
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
                   -1, 0);
  if (mem == MAP_FAILED) {
    pages = "thp";
    mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      state.SkipWithError("mmap failed");
      return;
    }
    if (madvise(mem, bytes, MADV_HUGEPAGE) != 0) pages = "4k";
  }
  const size_t lines = bytes / 64;
  std::vector<uint32_t> order(lines);
  for (size_t i = 0; i < lines; ++i) order[i] = static_cast<uint32_t>(i);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(1));
  auto* base = static_cast<unsigned char*>(mem);
  for (size_t i = 0; i < lines; ++i) {
    void* next = base + size_t{order[(i + 1) % lines]} * 64;
    std::memcpy(base + size_t{order[i]} * 64, &next, sizeof next);
  }
  void* p = base + size_t{order[0]} * 64;
  for (size_t i = 0; i < lines; ++i) p = *static_cast<void**>(p);  // warm the caches and TLB
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) p = *static_cast<void**>(p);
    benchmark::DoNotOptimize(p);
  }
  state.counters["per_load"] = benchmark::Counter(static_cast<double>(state.iterations()) * 64,
                                                  benchmark::Counter::kIsRate |
                                                      benchmark::Counter::kInvert);
  state.SetLabel(pages);
  munmap(mem, bytes);
}
// 2 MiB: within L2; 8: the VM's share of L3 here; 64: the 1 M-flow table; 512: DRAM.
BENCHMARK(BM_memory_latency)->Arg(2)->Arg(8)->Arg(16)->Arg(64)->Arg(512);

// --- parse -----------------------------------------------------------------------------------

void BM_parse_tcp4(benchmark::State& state) {
  // 256 different frames, so the branch predictor cannot learn one packet.
  std::vector<std::array<uint8_t, perf::tcp64_len>> frames(256);
  for (uint32_t i = 0; i < frames.size(); ++i) {
    perf::tcp4_spec s{dst_mac, src_mac, perf::client_ip(i), vip, perf::client_port(i), 80,
                      static_cast<uint8_t>(i % 3 == 0 ? 0x02 : 0x10), 1000 + i, 5000, 1};
    perf::build_tcp4(s, frames[i].data());
  }
  parsed_packet p;
  uint32_t i = 0;
  for (auto _ : state) {
    const auto r = parse_packet(frames[i++ & 255].data(), perf::tcp64_len, p);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_parse_tcp4);

void BM_hash_flow_key(benchmark::State& state) {
  std::vector<flow_key> keys;
  for (uint32_t i = 0; i < 1024; ++i) keys.push_back(key_of(i));
  uint32_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(hash_flow_key(keys[i++ & 1023], backend_choice_seed));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_hash_flow_key);

// --- flow table at 1M entries -----------------------------------------------------------------

// A table of `slots` capacity holding keys 0..n-1, with their hashes.
struct filled_table {
  std::unique_ptr<flow_table> t;
  std::vector<stored_flow_key> keys;
  std::vector<flow_table_key> tkeys;  // what the table compares, as the worker computes it once
  std::vector<uint32_t> hashes;
  size_t n = 0;
};

// Tables are kept across benchmarks (filling 1M entries takes a while); freed before EAL stops.
std::map<std::pair<size_t, size_t>, std::unique_ptr<filled_table>> table_cache;

filled_table& table_with(size_t slots, size_t n) {
  auto& slot = table_cache[{slots, n}];
  if (!slot) {
    slot = std::make_unique<filled_table>();
    slot->t = std::make_unique<flow_table>(slots);
    slot->keys.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      slot->keys.push_back(stored_key_of(i));
      slot->tkeys.push_back(flow_table::key_for(slot->keys.back()));
      slot->hashes.push_back(flow_table::hash(slot->tkeys.back()));
      auto r = slot->t->insert(slot->keys.back(), 0);
      if (r.entry) r.entry->state = tcp_state::established;
    }
    slot->n = slot->t->size();
  }
  return *slot;
}

// Random order over the table's keys, so each lookup misses the cache like a busy worker's.
std::vector<uint32_t> random_order(size_t n, size_t count) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<uint32_t> d(0, static_cast<uint32_t>(n - 1));
  std::vector<uint32_t> v(count);
  for (auto& x : v) x = d(rng);
  return v;
}

// One lookup at a time, key and hash precomputed (the worker computes them once for both).
void BM_flow_lookup(benchmark::State& state) {
  auto& ft = table_with(static_cast<size_t>(state.range(0)), static_cast<size_t>(state.range(1)));
  const auto order = random_order(ft.keys.size(), 1 << 20);
  uint32_t i = 0;
  for (auto _ : state) {
    const uint32_t k = order[i++ & ((1 << 20) - 1)];
    benchmark::DoNotOptimize(
        ft.t->lookup(ft.keys[k], ft.tkeys[k], ft.t->probe_for(ft.hashes[k]), 1));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["entries"] = static_cast<double>(ft.t->size());
}
BENCHMARK(BM_flow_lookup)->Args({1 << 21, 1 << 20})->Args({1 << 20, 1 << 20})->Args({1 << 17, 1 << 16});

// The worker's pattern: prefetch the buckets of a burst of 32, then look them up in order.
void BM_flow_lookup_burst_prefetch(benchmark::State& state) {
  auto& ft = table_with(static_cast<size_t>(state.range(0)), static_cast<size_t>(state.range(1)));
  const auto order = random_order(ft.keys.size(), 1 << 20);
  uint32_t i = 0;
  for (auto _ : state) {
    const uint32_t* o = &order[i & ((1 << 20) - 1)];
    i += 32;
    flow_table::probe p[32];
    for (int j = 0; j < 32; ++j) {
      p[j] = ft.t->probe_for(ft.hashes[o[j]]);
      flow_table::prefetch(p[j]);
    }
    for (int j = 0; j < 32; ++j)
      benchmark::DoNotOptimize(ft.t->lookup(ft.keys[o[j]], ft.tkeys[o[j]], p[j], 1));
  }
  state.SetItemsProcessed(state.iterations() * 32);
}
BENCHMARK(BM_flow_lookup_burst_prefetch)->Args({1 << 21, 1 << 20})->Args({1 << 17, 1 << 16});

// Steady churn at 1M live entries: each iteration removes the oldest flow and inserts a new one.
void BM_flow_insert_remove_1M(benchmark::State& state) {
  const size_t live = 1 << 20;
  flow_table t(static_cast<size_t>(state.range(0)));
  std::vector<flow_entry*> dummy;
  uint64_t next = 0;
  auto insert = [&](uint64_t i) {
    const stored_flow_key k = stored_key_of(i);
    auto r = t.insert(k, 1);
    if (r.entry) r.entry->state = tcp_state::established;
  };
  for (; next < live; ++next) insert(next);
  for (auto _ : state) {
    const stored_flow_key old = stored_key_of(next - live);
    if (flow_entry* e = t.lookup(old, 1)) t.remove(e);
    insert(next++);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["entries"] = static_cast<double>(t.size());
  state.counters["failed"] = static_cast<double>(t.stats().failed_inserts);
}
BENCHMARK(BM_flow_insert_remove_1M)->Arg(1 << 21);

// Insert into a full table (1M slots, every slot taken by an old SYN flow): the eviction path.
void BM_flow_insert_full_table(benchmark::State& state) {
  flow_table t(static_cast<size_t>(state.range(0)));
  uint64_t next = 0;
  uint32_t now = 0;
  while (t.size() < t.capacity() && next < 4 * t.capacity()) {
    const stored_flow_key k = stored_key_of(next++);
    t.insert(k, now);  // state syn_seen: evictable
  }
  now = 10;
  for (auto _ : state) {
    const stored_flow_key k = stored_key_of(next++);
    benchmark::DoNotOptimize(t.insert(k, now));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["load"] = static_cast<double>(t.size()) / static_cast<double>(t.capacity());
  state.counters["evictions"] = static_cast<double>(t.stats().evictions);
}
BENCHMARK(BM_flow_insert_full_table)->Arg(1 << 20);

// --- Maglev -----------------------------------------------------------------------------------

std::vector<maglev_table::member> members(uint32_t n) {
  std::vector<maglev_table::member> m;
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t ident = hash_flow_key(key_of(i), 7) * 0x9e3779b97f4a7c15ull + i;
    m.push_back({i, 1, ident});
  }
  return m;
}

void BM_maglev_lookup(benchmark::State& state) {
  auto t = maglev_table::build(members(static_cast<uint32_t>(state.range(0))),
                               static_cast<uint32_t>(state.range(1)));
  if (!t) {
    state.SkipWithError(t.error_message().c_str());
    return;
  }
  std::vector<uint32_t> hashes(4096);
  for (uint32_t i = 0; i < hashes.size(); ++i) hashes[i] = mix32(i * 2654435761u);
  uint32_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(t->lookup(hashes[i++ & 4095]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_maglev_lookup)->Args({100, 65537})->Args({1000, 655373});

// Build for N backends at table size M (issue 6 target: 1000 backends at M=65537 in <= 1 ms).
// maglev_table::build takes any prime M >= N; the 100*N imbalance rule is the configuration
// check's, so M < 100*N (1000 at 65537, 10000 at either size) is measured like the rest.
void BM_maglev_build(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  const auto m = static_cast<uint32_t>(state.range(1));
  const auto mem = members(n);
  for (auto _ : state) {
    auto t = maglev_table::build(mem, m);
    if (!t) {
      state.SkipWithError(t.error_message().c_str());
      return;
    }
    benchmark::DoNotOptimize(t->entries().data());
  }
}
BENCHMARK(BM_maglev_build)
    ->ArgsProduct({{10, 100, 1000, 10000}, {65537, 655373}})
    ->Args({1000, 100003})  // the smallest prime M the config rule allows for 1000 backends
    ->Args({655, 65537})    // the most backends the config rule allows at M=65537
    ->Unit(benchmark::kMicrosecond);

// --- generation build and publish -----------------------------------------------------------

// 2 services x 2 pools x 1000 backends, l2, M = 100003 (the smallest prime >= 100 * 1000).
config::daemon_config big_config() {
  config::daemon_config cfg;
  for (int s = 0; s < 2; ++s) {
    config::service svc;
    svc.name = "svc" + std::to_string(s);
    svc.vip = ip_address::from_v4_be(__builtin_bswap32(vip + static_cast<uint32_t>(s)));
    svc.port = 80;
    svc.maglev_size = 100003;
    for (int c = 0; c < 2; ++c) {
      for (uint32_t b = 0; b < 1000; ++b) {
        config::backend be;
        // 192.0.2.0/24-style documentation space is too small: 100.64.0.0/10 shared space,
        // never sent to (l2 mode uses only the MAC).
        const uint32_t a = (100u << 24 | 64u << 16) + static_cast<uint32_t>(s * 4096 + c * 2048) + b;
        be.address = ip_address::from_v4_be(__builtin_bswap32(a));
        be.mac = config::mac_address{{0x02, 0, static_cast<uint8_t>(s), static_cast<uint8_t>(c + 1),
                                      static_cast<uint8_t>(b >> 8), static_cast<uint8_t>(b)}};
        svc.pool(c == 0 ? colour::blue : colour::green).push_back(be);
      }
    }
    cfg.services.push_back(svc);
  }
  return cfg;
}

// The controller validates the whole next configuration before every commit (switch included).
void BM_config_validate_2x2x1000(benchmark::State& state) {
  const auto cfg = big_config();
  for (auto _ : state) {
    auto st = config::validate(cfg);
    if (!st) {
      state.SkipWithError(st.error_message().c_str());
      return;
    }
  }
}
BENCHMARK(BM_config_validate_2x2x1000)->Unit(benchmark::kMillisecond);

// The controller copies the running configuration for every change.
void BM_config_copy_2x2x1000(benchmark::State& state) {
  const auto cfg = big_config();
  for (auto _ : state) {
    config::daemon_config next = cfg;
    benchmark::DoNotOptimize(next.services.data());
  }
}
BENCHMARK(BM_config_copy_2x2x1000)->Unit(benchmark::kMillisecond);

void BM_generation_build_2x2x1000(benchmark::State& state) {
  const auto cfg = big_config();
  if (auto st = config::validate(cfg); !st) {
    state.SkipWithError(st.error_message().c_str());
    return;
  }
  runtime_state rs;
  for (auto _ : state) {
    auto g = build_generation(cfg, rs);
    if (!g) {
      state.SkipWithError(g.error_message().c_str());
      return;
    }
    benchmark::DoNotOptimize(g->get());
  }
  state.SetLabel("M=100003");
}
BENCHMARK(BM_generation_build_2x2x1000)->Unit(benchmark::kMillisecond)->UseRealTime();

// Build + publish with one registered reader spinning like a worker (quiescent every ~1 us),
// so publish() really waits for a grace period. This is the daemon-side `switch` cost.
void BM_generation_build_publish_2x2x1000(benchmark::State& state) {
  auto cfg = big_config();
  generation_publisher pub(1);
  std::atomic<bool> stop{false}, ready{false};
  std::thread reader([&] {
    rcu_reader r(pub, 0);
    ready = true;
    while (!stop.load(std::memory_order_relaxed)) {
      benchmark::DoNotOptimize(pub.acquire());
      r.quiescent();
      for (int i = 0; i < 200; ++i) asm volatile("pause");
    }
  });
  while (!ready) std::this_thread::yield();
  runtime_state rs;
  bool green = false;
  for (auto _ : state) {
    // A switch: flip the active colour of the first service.
    green = !green;
    cfg.services[0].active = green ? colour::green : colour::blue;
    auto g = build_generation(cfg, rs);
    if (!g) {
      state.SkipWithError(g.error_message().c_str());
      break;
    }
    pub.publish(std::move(*g));
  }
  stop = true;
  reader.join();
}
BENCHMARK(BM_generation_build_publish_2x2x1000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  // TANDEM_MICRO_HUGEPAGES=1: the flow tables on hugepages, as in tandemd (needs free 2 MiB
  // pages); by default none, so the benchmarks run anywhere.
  const bool huge = std::getenv("TANDEM_MICRO_HUGEPAGES") != nullptr &&
                    std::string(std::getenv("TANDEM_MICRO_HUGEPAGES")) == "1";
  std::vector<std::string> eal = {"micro", "-l", "0-1", "--no-pci", "--log-level", "lib.eal:error",
                                  "--file-prefix", "tandem_perf_micro_" + std::to_string(getpid())};
  if (!huge) eal.insert(eal.end(), {"--no-huge", "-m", "2048"});
  std::vector<char*> eal_argv;
  for (auto& a : eal) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "micro: EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  table_cache.clear();
  rte_eal_cleanup();
  return 0;
}
