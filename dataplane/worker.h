// A poll-mode worker: one RX and one TX queue on each of its ports, its own flow table and
// counters. Reads the current table generation once per loop and reports an RCU quiescent
// state at the end of each loop. Never locks, allocates (beyond mbufs) or blocks.
#pragma once

#include <rte_ether.h>
#include <rte_mbuf.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/clock.h"
#include "dataplane/flow_table.h"
#include "dataplane/generation.h"
#include "dataplane/generation_publisher.h"
#include "dataplane/packet_parser.h"
#include "dataplane/worker_counters.h"

namespace tandem {

inline constexpr uint16_t burst_size = 32;

struct worker_port {
  uint16_t port_id = 0;
  uint16_t queue = 0;   // this worker's RX and TX queue on the port
  rte_ether_addr mac{};
};

struct worker_options {
  uint32_t index = 0;                  // worker number; also its RCU thread id
  std::vector<worker_port> ports;
  size_t flow_table_size = 1u << 20;
  // The incremental scan (expiry, drain flushes) visits every slot once per sweep_ms, at most
  // scan_budget slots per loop; while a drain deadline's window is open it runs at scan_budget
  // per loop so flushes and resets happen on time.
  uint32_t scan_budget = 32;
  uint32_t sweep_ms = 1000;
  rte_mempool* reset_pool = nullptr;   // mbufs for drain resets (nullptr: resets become expiry)
};

// A request from the control thread for a sample of this worker's flows (tandemctl flows).
// The worker answers between polls, scanning its table incrementally, so it never stalls.
struct flow_sample_request {
  uint16_t service_id = 0;
  int8_t colour_filter = -1;             // -1 = both colours
  uint32_t backend_filter = 0xffffffffu; // backend id, or all
  uint32_t limit = 0;                    // entries to copy (<= max_flow_sample)
};
inline constexpr uint32_t max_flow_sample = 256;

struct flow_sample {
  uint64_t matched = 0;                  // every matching entry, counted
  uint32_t copied = 0;
  flow_entry entries[max_flow_sample];
  stored_flow_key keys[max_flow_sample];  // entries[i]'s key
};

// Cache-line aligned, like its per-packet state (port_state, burst): two workers' objects on the
// heap must not share a line, or every packet writes a line the other worker is using.
class alignas(64) worker {
 public:
  worker(worker_options options, const generation_publisher& publisher, const ms_clock& clock);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  // Registers with RCU and polls until `stop` is set. Runs on the worker's lcore.
  void run(const std::atomic<bool>& stop);

  // One loop over every port; the caller's thread must hold an rcu_reader for this worker's
  // index. Returns packets received. (run() calls this; tests may too.)
  uint32_t poll_once(const rcu_reader& reader);

  // Processes a burst as if received on ports[port_index]; transmits what it forwards.
  // Exposed for tests and benchmarks; `gen` must be protected by the caller's RCU read side.
  void process_burst(const generation& gen, uint32_t port_index, rte_mbuf** pkts, uint16_t n,
                     uint32_t now_ms);

  uint32_t index() const { return options_.index; }
  const worker_counters& counters() const { return *counters_; }
  const backend_counters& backends() const { return *backend_counters_; }
  // Safe only while the worker is not running (tests, shutdown).
  const flow_table& flows() const { return flows_; }

  // Control thread: posts a sample request; poll sample_ready() until true, then read
  // sample(). One request at a time per worker.
  void request_sample(const flow_sample_request& r);
  bool sample_ready() const;
  const flow_sample& sample() const { return *sample_; }

 private:
  struct alignas(64) port_state {
    worker_port port;
    rte_ether_addr peer_mac{};  // last source MAC seen on the port: where client resets go
    uint16_t peer_vlan = 0;
    uint8_t peer_has_vlan = 0;
  };

  struct burst;
  // Receives and processes up to max_chained_bursts bursts from one port.
  uint32_t poll_port(const generation& gen, uint32_t port_index, uint32_t now_ms);
  void begin_burst(burst& b, const generation& gen, uint32_t port_index, rte_mbuf** pkts,
                   uint16_t n, uint32_t now_ms);
  void run_stages(burst& b, bool forward_too);
  void finish_burst(burst& b, bool forward_all);
  void classify(burst& b, uint16_t i);
  void choose_for_new_flow(burst& b, uint16_t i);
  void prefetch_flow(burst& b, uint16_t i);
  void forward(burst& b, uint16_t i);
  void on_generation(const generation& gen);
  void end_flow(const flow_entry& e);
  void scan(const generation& gen, uint32_t now_ms);
  void send_resets(const generation& gen, const service_entry& s, const flow_entry& e);
  void reset_flow(const generation& gen, const service_entry& s, flow_entry& e, uint32_t now_ms);
  void drop(rte_mbuf* m, drop_reason r);

  worker_options options_;
  const generation_publisher& publisher_;
  const ms_clock& clock_;
  flow_table flows_;
  std::vector<port_state> ports_;
  std::unique_ptr<worker_counters> counters_;
  std::unique_ptr<backend_counters> backend_counters_;
  void serve_sample();

  uint32_t last_generation_ = 0;
  uint64_t scan_expired_ = 0;
  uint64_t scan_credit_ = 0;        // slots the time-based scan may still visit
  uint32_t last_scan_ms_ = 0;
  // While now is in [flush_from_ms_, flush_until_ms_) a drain flush is due somewhere: full-rate
  // scanning. flush_from_ms_ == flush_until_ms_ when none is armed.
  uint32_t flush_from_ms_ = 0;
  uint32_t flush_until_ms_ = 0;
  // Some service has a drain flush (expire/reset) in this generation: before its first
  // deadline, and with none, packets skip the per-flow deadline check.
  bool flush_armed_ = false;
  // Sample mailbox: the control thread bumps request_seq_ after filling request_; the worker
  // fills sample_ and then stores done_seq_ = request_seq_ (release).
  flow_sample_request request_;
  std::unique_ptr<flow_sample> sample_;
  std::atomic<uint32_t> request_seq_{0};
  std::atomic<uint32_t> done_seq_{0};
  size_t sample_pos_ = 0;
  std::unique_ptr<burst> bursts_[2];  // working arrays: one burst finishing, the next starting
};

}  // namespace tandem
