// bench_worker: tandemd's real worker loop on its own lcore(s), fed by an in-memory source,
// measured from the main lcore. See docs/performance.md for what exactly is measured.
//
//   bench_worker [EAL options] -- --config FILE [options]
//
// Modes:
//   pcap   (default) worker::run() polls the EAL's ports, e.g.
//          --vdev net_pcap0,rx_pcap=F,infinite_rx=1: RX replays the pcap forever (the PMD copies
//          each frame into a fresh mbuf), TX drops (net_pcap without tx_pcap/tx_iface frees the
//          mbufs). The same source and sink dpdk-testpmd gets in perf/bench_throughput.py.
//   replay --replay-pcap F with one drop port (--vdev net_null0): the frames are loaded into
//          mbufs once and worker::process_burst() is called on them directly (refcount 2, so the
//          sink's free leaves them for the next pass). No PMD RX cost and no flow-table scan:
//          this is the per-packet cost of tandem's own code.
//
// Output: one line per interval while measuring, then `RESULT {json}`.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "control/config.h"
#include "control/generation_builder.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "dataplane/port_setup.h"
#include "dataplane/worker.h"
#include "perf/perf_common.h"

namespace {

using namespace tandem;

struct options {
  std::string config;
  std::string mode = "pcap";
  std::string replay_pcap;
  size_t flow_table_size = 0;  // 0 = config
  uint32_t mbufs = 65535;
  uint16_t data_room = RTE_PKTMBUF_HEADROOM + 128;  // 64-byte frames: keep mbufs small
  double seconds = 5.0;
  uint32_t interval_ms = 500;
  uint64_t warmup_packets = 0;
  double warmup_max_seconds = 120.0;
  uint32_t workers = 1;
  double min_forwarded = 0.0;  // fail (exit 3) when forwarded/received is below this
  uint32_t scan_budget = worker_options{}.scan_budget;  // flow-table slots scanned per loop
  std::string turn_file;  // interleaved A/B: poll only while this file's first byte == turn_id
  char turn_id = 'a';
  bool scaling_turns = false;  // 2 workers: every other interval one of them pauses (1 vs 2)
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "bench_worker: %s\n"
               "usage: bench_worker [EAL options] -- --config FILE [--mode pcap|replay]\n"
               "  [--replay-pcap FILE] [--flow-table-size N] [--mbufs N] [--data-room BYTES]\n"
               "  [--seconds S] [--interval-ms MS] [--warmup-packets N] [--warmup-max-seconds S]\n"
               "  [--turn-file FILE --turn-id C]  (interleaved A/B: poll only in turn C)\n"
               "  [--workers N] [--min-forwarded FRACTION] [--scan-budget SLOTS]\n"
               "  [--scaling-turns]  (--workers 2: one worker and two take turns, per interval)\n",
               why.c_str());
  std::exit(2);
}

options parse(const std::vector<std::string>& a) {
  options o;
  for (size_t i = 0; i < a.size(); ++i) {
    auto v = [&]() -> const std::string& {
      if (i + 1 >= a.size()) usage("missing value for " + a[i]);
      return a[++i];
    };
    if (a[i] == "--config") o.config = v();
    else if (a[i] == "--mode") o.mode = v();
    else if (a[i] == "--replay-pcap") o.replay_pcap = v();
    else if (a[i] == "--flow-table-size") o.flow_table_size = std::stoull(v());
    else if (a[i] == "--mbufs") o.mbufs = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--data-room") o.data_room = static_cast<uint16_t>(std::stoul(v()));
    else if (a[i] == "--seconds") o.seconds = std::stod(v());
    else if (a[i] == "--interval-ms") o.interval_ms = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--warmup-packets") o.warmup_packets = std::stoull(v());
    else if (a[i] == "--warmup-max-seconds") o.warmup_max_seconds = std::stod(v());
    else if (a[i] == "--workers") o.workers = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--min-forwarded") o.min_forwarded = std::stod(v());
    else if (a[i] == "--scan-budget") o.scan_budget = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--turn-file") o.turn_file = v();
    else if (a[i] == "--turn-id") o.turn_id = v().at(0);
    else if (a[i] == "--scaling-turns") o.scaling_turns = true;
    else usage("unknown option " + a[i]);
  }
  if (o.config.empty()) usage("--config is required");
  if (o.mode != "pcap" && o.mode != "replay") usage("--mode must be pcap or replay");
  if (o.mode == "replay" && (o.replay_pcap.empty() || o.workers != 1))
    usage("--mode replay needs --replay-pcap and one worker");
  if (o.workers == 0) usage("--workers must be >= 1");
  if (o.scaling_turns && (o.workers != 2 || o.mode != "pcap" || !o.turn_file.empty()))
    usage("--scaling-turns needs --workers 2 in pcap mode, without --turn-file");
  return o;
}

// Frames of a classic pcap file (either byte order, micro- or nanosecond magic).
std::vector<std::vector<uint8_t>> read_pcap(const std::string& path) {
  std::vector<std::vector<uint8_t>> out;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) usage("cannot open " + path);
  uint32_t gh[6];
  if (std::fread(gh, sizeof gh, 1, f) != 1) usage(path + ": not a pcap file");
  const bool swapped = gh[0] == 0xd4c3b2a1u || gh[0] == 0x4d3cb2a1u;
  if (!swapped && gh[0] != 0xa1b2c3d4u && gh[0] != 0xa1b23c4du) usage(path + ": not a pcap file");
  uint32_t rec[4];
  while (std::fread(rec, sizeof rec, 1, f) == 1) {
    const uint32_t caplen = swapped ? __builtin_bswap32(rec[2]) : rec[2];
    std::vector<uint8_t> frame(caplen);
    if (caplen > 65535 || std::fread(frame.data(), 1, caplen, f) != caplen) break;
    out.push_back(std::move(frame));
  }
  std::fclose(f);
  return out;
}

struct worker_slot {
  std::unique_ptr<worker> w;
  std::atomic<long> tid{0};
  const generation_publisher* publisher = nullptr;
  const volatile char* turn = nullptr;  // interleaved A/B: poll only while *turn == turn_id
  char turn_id = 0;
  const std::atomic<bool>* paused = nullptr;  // --scaling-turns: spin without polling while set
};

struct replay_state {
  worker* w = nullptr;
  const generation_publisher* publisher = nullptr;
  const ms_clock* clock = nullptr;
  std::vector<rte_mbuf*> frames;
  std::atomic<long>* tid = nullptr;
};

std::atomic<bool> stop{false};

int run_worker(void* arg) {
  auto* s = static_cast<worker_slot*>(arg);
  s->tid = perf::gettid_now();
  if (s->turn == nullptr && s->paused == nullptr) {
    s->w->run(stop);
    return 0;
  }
  // Interleaved A/B (perf/ab_interleaved.py): two builds share the core in turns, so both see
  // the same machine (its memory latency drifts by tens of percent over seconds here). While it
  // is not its turn the worker sleeps: no packets and no CPU time, so packets per on-CPU second
  // count only its own turns. --scaling-turns pauses one of two workers every other interval,
  // so one worker and two are measured in adjacent intervals. The paused worker has a core of
  // its own and spins on the flag without PAUSE: a sleeping vCPU came back slower (x1.69-1.74
  // at 250 ms turns against x1.89 at 500 ms), and a PAUSE loop (the hypervisor's pause-loop
  // exits) slowed the other vCPU's lone worker from ~18 to ~10 Mpps at 4K flows.
  rcu_reader reader(*s->publisher, s->w->index());
  while (!stop.load(std::memory_order_relaxed)) {
    if (s->turn != nullptr && *s->turn != s->turn_id) {
      reader.quiescent();
      usleep(200);
      continue;
    }
    if (s->paused != nullptr && s->paused->load(std::memory_order_relaxed)) {
      reader.quiescent();
      continue;
    }
    s->w->poll_once(reader);
  }
  return 0;
}

// Drives process_burst() over preloaded frames, in loops of 8 bursts like a busy poll loop.
int run_replay(void* arg) {
  auto* r = static_cast<replay_state*>(arg);
  *r->tid = perf::gettid_now();
  rcu_reader reader(*r->publisher, 0);
  const size_t n = r->frames.size();
  size_t pos = 0;
  rte_mbuf* burst[burst_size];
  while (!stop.load(std::memory_order_relaxed)) {
    const generation* g = r->publisher->acquire();
    const uint32_t now = r->clock->now();
    for (int k = 0; k < 8; ++k) {
      uint16_t c = 0;
      for (; c < burst_size; ++c) {
        rte_mbuf* m = r->frames[pos];
        if (++pos == n) pos = 0;
        rte_mbuf_refcnt_set(m, 2);  // the sink's free drops it back to 1: we keep it
        burst[c] = m;
      }
      r->w->process_burst(*g, 0, burst, c, now);
    }
    reader.quiescent();
  }
  return 0;
}

struct sample {
  double t;                       // seconds since start
  std::vector<uint64_t> rx;       // per worker
  std::vector<uint64_t> cpu_ns;   // per worker thread
};

int run(const options& o, const config::daemon_config& cfg);

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> eal_args, own;
  perf::split_args(argc, argv, eal_args, own);
  const options o = parse(own);

  auto cfg = config::load_config(o.config);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error_message().c_str());
    return 1;
  }
  if (o.flow_table_size != 0) cfg->flow_table_size = o.flow_table_size;

  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "bench_worker: EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  if (rte_lcore_count() < o.workers + 1) {
    std::fprintf(stderr, "bench_worker: need %u lcores (main + workers)\n", o.workers + 1);
    return 1;
  }

  const int rc = run(o, *cfg);
  rte_eal_cleanup();
  return rc;
}

namespace {

int run(const options& o, const config::daemon_config& cfg_in) {
  const config::daemon_config* cfg = &cfg_in;
  std::vector<std::vector<uint8_t>> frames;
  uint32_t mbufs = o.mbufs;
  if (o.mode == "replay") {
    frames = read_pcap(o.replay_pcap);
    if (frames.empty()) usage(o.replay_pcap + ": no frames");
    mbufs = std::max<uint32_t>(mbufs, static_cast<uint32_t>(frames.size()) + 8192);
  }
  rte_mempool* pool = rte_pktmbuf_pool_create("bench_mbufs", mbufs, 256, 0, o.data_room,
                                              static_cast<int>(rte_socket_id()));
  if (pool == nullptr) {
    std::fprintf(stderr, "bench_worker: mempool of %u mbufs: %s\n", mbufs, rte_strerror(rte_errno));
    return 1;
  }
  auto layout = setup_ports(cfg->ports, o.workers, pool);
  if (!layout) {
    std::fprintf(stderr, "bench_worker: %s\n", layout.error_message().c_str());
    return 1;
  }

  ms_clock clock;
  generation_publisher publisher(o.workers);
  runtime_state state;
  auto gen = build_generation(*cfg, state);
  if (!gen) {
    std::fprintf(stderr, "bench_worker: %s\n", gen.error_message().c_str());
    return 1;
  }
  publisher.publish(std::move(*gen));

  // --scaling-turns: which workers are paused. Both warm up their tables; then the intervals
  // go worker 0 alone, both, worker 1 alone, both, ..., so the lone worker's figure covers both
  // cores (worker 0 shares its core with the main lcore).
  std::atomic<bool> paused[2] = {false, false};
  auto both_run = [](size_t k) { return k % 2 == 1; };  // interval k of the measurement
  auto alone = [](size_t k) { return (k / 2) % 2; };    // the lone worker when !both_run(k)
  auto set_phase = [&](size_t k) {
    for (size_t w = 0; w < 2; ++w) paused[w] = !both_run(k) && w != alone(k);
  };
  std::vector<std::unique_ptr<worker_slot>> slots;
  for (uint32_t w = 0; w < o.workers; ++w) {
    worker_options wo;
    wo.index = w;
    wo.ports = layout->per_worker[w];
    if (wo.ports.empty()) {
      std::fprintf(stderr, "bench_worker: no queue for worker %u (the device has fewer queues)\n", w);
      return 1;
    }
    wo.flow_table_size = cfg->flow_table_size;
    wo.reset_pool = pool;
    wo.scan_budget = o.scan_budget;
    auto s = std::make_unique<worker_slot>();
    s->w = std::make_unique<worker>(wo, publisher, clock);
    s->publisher = &publisher;
    if (!o.turn_file.empty()) {
      const int fd = open(o.turn_file.c_str(), O_RDONLY);
      void* m = fd < 0 ? MAP_FAILED : mmap(nullptr, 1, PROT_READ, MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) usage("cannot map --turn-file " + o.turn_file);
      close(fd);
      s->turn = static_cast<const volatile char*>(m);
      s->turn_id = o.turn_id;
    }
    if (o.scaling_turns) s->paused = &paused[w];
    slots.push_back(std::move(s));
  }

  replay_state rs;
  if (o.mode == "replay") {
    rs.w = slots[0]->w.get();
    rs.publisher = &publisher;
    rs.clock = &clock;
    rs.tid = &slots[0]->tid;
    for (const auto& f : frames) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool);
      if (m == nullptr || f.size() > rte_pktmbuf_tailroom(m)) usage("cannot load the frames");
      std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
      rs.frames.push_back(m);
    }
    frames.clear();
    frames.shrink_to_fit();
  }

  {
    uint32_t w = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
      if (w >= o.workers) break;
      if (o.mode == "replay")
        rte_eal_remote_launch(run_replay, &rs, lcore);
      else
        rte_eal_remote_launch(run_worker, slots[w].get(), lcore);
      ++w;
    }
  }
  for (auto& s : slots)
    while (s->tid.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  auto total_rx = [&] {
    uint64_t t = 0;
    for (auto& s : slots) t += read_counter(s->w->counters().rx_packets);
    return t;
  };
  using clk = std::chrono::steady_clock;
  const auto t0 = clk::now();
  auto take = [&] {
    sample s;
    s.t = std::chrono::duration<double>(clk::now() - t0).count();
    for (auto& sl : slots) {
      s.rx.push_back(read_counter(sl->w->counters().rx_packets));
      s.cpu_ns.push_back(perf::thread_cpu_ns(sl->tid.load()));
    }
    return s;
  };

  // Warm-up: every flow of the pcap seen once (the table holds the steady state).
  while (total_rx() < o.warmup_packets &&
         std::chrono::duration<double>(clk::now() - t0).count() < o.warmup_max_seconds)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const double warmup_s = std::chrono::duration<double>(clk::now() - t0).count();
  const bool warmed = total_rx() >= o.warmup_packets;

  if (o.scaling_turns) set_phase(0);
  std::vector<sample> samples{take()};
  const auto interval = std::chrono::milliseconds(o.interval_ms);
  auto next = clk::now() + interval;
  const uint64_t tsc_hz = rte_get_tsc_hz();
  std::vector<double> mpps_wall, mpps_cpu, cycles_pp, cpu_share;
  const size_t intervals = std::max<size_t>(1, static_cast<size_t>(o.seconds * 1000 / o.interval_ms));
  for (size_t k = 0; k < intervals; ++k) {
    std::this_thread::sleep_until(next);
    next += interval;
    samples.push_back(take());
    const sample& a = samples[samples.size() - 2];
    const sample& b = samples.back();
    const double dt = b.t - a.t;
    uint64_t pk = 0;
    double per_cpu = 0, cpu_s = 0;
    for (size_t w = 0; w < slots.size(); ++w) {
      const uint64_t p = b.rx[w] - a.rx[w];
      const double c = static_cast<double>(b.cpu_ns[w] - a.cpu_ns[w]) / 1e9;
      pk += p;
      cpu_s += c;
      if (c > 0) per_cpu += static_cast<double>(p) / c;
    }
    const double wall = static_cast<double>(pk) / dt / 1e6;
    const double cpu_rate = per_cpu / 1e6;
    const double cpp = pk ? cpu_s * static_cast<double>(tsc_hz) / static_cast<double>(pk) : 0;
    mpps_wall.push_back(wall);
    mpps_cpu.push_back(cpu_rate);
    cycles_pp.push_back(cpp);
    cpu_share.push_back(cpu_s / dt / static_cast<double>(slots.size()));
    std::printf("interval %zu: %.3f Mpps wall, %.3f Mpps per on-CPU second, %.1f cycles/packet, "
                "cpu %.0f%%%s\n",
                k, wall, cpu_rate, cpp, 100.0 * cpu_share.back(),
                !o.scaling_turns ? "" : both_run(k) ? ", 2 workers" : alone(k) ? ", worker 1" : ", worker 0");
    std::fflush(stdout);
    if (o.scaling_turns) set_phase(k + 1);
  }
  // Two workers against one from adjacent intervals (the first one may hold the end of the
  // warm-up): the sum of both workers' on-CPU rates over the lone worker's.
  std::vector<double> scaling, one_rate, two_rate;
  for (size_t k = 1; o.scaling_turns && k < mpps_cpu.size(); ++k) {
    (both_run(k) ? two_rate : one_rate).push_back(mpps_cpu[k]);
    if (k >= 2) {
      const double two = both_run(k) ? mpps_cpu[k] : mpps_cpu[k - 1];
      const double one = both_run(k) ? mpps_cpu[k - 1] : mpps_cpu[k];
      if (one > 0) scaling.push_back(two / one);
    }
  }
  std::sort(scaling.begin(), scaling.end());
  std::string scaling_json;
  if (o.scaling_turns && !scaling.empty()) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  ",\"scaling\":{\"ratio\":%.3f,\"q1\":%.3f,\"q3\":%.3f,\"pairs\":%zu,"
                  "\"one_mpps_cpu\":%.4f,\"two_mpps_cpu\":%.4f}",
                  perf::median(scaling), scaling[scaling.size() / 4],
                  scaling[3 * scaling.size() / 4], scaling.size(), perf::median(one_rate),
                  perf::median(two_rate));
    scaling_json = buf;
    // The run's own figures are the two-worker intervals'.
    auto two_only = [&](std::vector<double>& v) {
      std::vector<double> kept;
      for (size_t k = 1; k < v.size(); ++k)
        if (both_run(k)) kept.push_back(v[k]);
      v = std::move(kept);
    };
    two_only(mpps_wall);
    two_only(mpps_cpu);
    two_only(cycles_pp);
    two_only(cpu_share);
  }

  stop = true;
  rte_eal_mp_wait_lcore();

  uint64_t rx = 0, tx = 0, evictions = 0, failed = 0, new_flows = 0, midflow = 0, flows = 0;
  uint64_t drops[static_cast<size_t>(drop_reason::count_)] = {};
  for (auto& s : slots) {
    const worker_counters& c = s->w->counters();
    rx += c.rx_packets;
    tx += c.tx_packets;
    evictions += c.evictions;
    failed += c.failed_inserts;
    midflow += c.midflow_pickups;
    for (auto& sc : c.services) new_flows += sc[0].new_flows + sc[1].new_flows;
    for (size_t r = 0; r < std::size(drops); ++r) drops[r] += c.drops[r];
    flows += s->w->flows().size();
  }
  // Drops at the TX queue are the sink's, not the worker's, but a worker that drops what it
  // should forward is not measuring the forwarding path: report the forwarded share.
  const double forwarded = rx ? static_cast<double>(tx) / static_cast<double>(rx) : 0.0;
  std::string drop_json;
  for (size_t r = 1; r < std::size(drops); ++r) {
    if (drops[r] == 0) continue;
    drop_json += (drop_json.empty() ? "" : ",") + std::string("\"") +
                 drop_reason_name(static_cast<drop_reason>(r)) + "\":" + std::to_string(drops[r]);
  }
  const size_t table_capacity = slots[0]->w->flows().capacity();
  std::printf(
      "RESULT {\"mode\":\"%s\",\"workers\":%u,\"warmed\":%s,\"warmup_s\":%.2f,"
      "\"mpps_wall\":%.4f,\"mpps_cpu\":%.4f,\"cycles_per_packet\":%.1f,\"cpu_share\":%.3f,"
      "\"intervals\":%zu,\"rx\":%" PRIu64 ",\"tx\":%" PRIu64 ",\"forwarded\":%.4f,"
      "\"flows_in_table\":%" PRIu64 ",\"table_capacity\":%zu,\"table_bytes\":%zu,"
      "\"new_flows\":%" PRIu64 ",\"midflow_pickups\":%" PRIu64 ",\"evictions\":%" PRIu64
      ",\"failed_inserts\":%" PRIu64 ",\"drops\":{%s},\"tsc_hz\":%" PRIu64 "%s}\n",
      o.mode.c_str(), o.workers, warmed ? "true" : "false", warmup_s, perf::median(mpps_wall),
      perf::median(mpps_cpu), perf::median(cycles_pp), perf::median(cpu_share), mpps_wall.size(),
      rx, tx, forwarded, flows, table_capacity,
      table_capacity * flow_table::bytes_per_slot(),
      new_flows, midflow, evictions, failed, drop_json.c_str(), tsc_hz, scaling_json.c_str());

  for (rte_mbuf* m : rs.frames) {
    rte_mbuf_refcnt_set(m, 1);
    rte_pktmbuf_free(m);
  }
  slots.clear();
  stop_ports(*layout);
  if (!warmed) {
    std::fprintf(stderr, "bench_worker: warm-up did not reach %" PRIu64 " packets\n",
                 o.warmup_packets);
    return 3;
  }
  if (forwarded < o.min_forwarded) {
    std::fprintf(stderr, "bench_worker: forwarded share %.4f below %.4f\n", forwarded,
                 o.min_forwarded);
    return 3;
  }
  return 0;
}

}  // namespace
