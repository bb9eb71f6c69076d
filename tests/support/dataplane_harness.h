// Runs the real worker loop on a second lcore against a net_ring port owned by the test:
// the test enqueues frames on the port's RX ring and dequeues what the worker transmitted.
// The test thread plays the control thread: it builds and publishes generations.
#pragma once

#include <rte_ring.h>

#include <atomic>
#include <memory>
#include <vector>

#include "control/config.h"
#include "control/generation_builder.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "dataplane/worker.h"

namespace tandem::test {

class dataplane_harness {
 public:
  // Starts EAL (lcores 0-1), a ring port and one worker on lcore 1 with `cfg` published.
  explicit dataplane_harness(const config::daemon_config& cfg, size_t flow_table_size = 1 << 16);
  ~dataplane_harness();

  // Builds and publishes a generation from `cfg`; returns once every worker passed a grace
  // period (so every later packet sees it). Fails the test on a build error.
  void publish(const config::daemon_config& cfg);
  runtime_state& state() { return state_; }
  const config::daemon_config& config() const { return cfg_; }

  // Sends frames through the worker and returns what it transmitted, in order. Waits until
  // the worker has received all of them and the TX ring has gone quiet.
  std::vector<std::vector<uint8_t>> exchange(const std::vector<std::vector<uint8_t>>& frames);
  // The same with every frame queued before the worker polls again (at most 4000 frames): one
  // poll then finds many bursts waiting, as under load.
  std::vector<std::vector<uint8_t>> exchange_queued(const std::vector<std::vector<uint8_t>>& frames);

  const worker_counters& counters() const { return worker_->counters(); }
  const backend_counters& backends() const { return worker_->backends(); }
  int64_t live_flows(uint16_t service_id, colour c) const;
  uint64_t drops(drop_reason r) const;
  uint32_t now_ms() const { return clock_.now(); }
  rte_mempool* pool() const { return pool_; }
  // Polls (up to timeout_ms) until pred() holds; returns pred().
  template <typename P>
  bool wait_for(P pred, uint32_t timeout_ms = 20000);  // generous: CI machines can be busy

 private:
  static int worker_main(void* self);
  config::daemon_config cfg_;
  runtime_state state_;
  ms_clock clock_;
  rte_mempool* pool_ = nullptr;
  rte_ring* rx_ = nullptr;
  rte_ring* tx_ = nullptr;
  uint16_t port_id_ = 0;
  std::unique_ptr<generation_publisher> publisher_;
  std::unique_ptr<worker> worker_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> hold_{false};     // test: the worker stops polling (stays quiescent)
  std::atomic<bool> holding_{false};  // worker: it is not inside poll_once
  uint64_t sent_ = 0;
};

template <typename P>
bool dataplane_harness::wait_for(P pred, uint32_t timeout_ms) {
  const uint32_t start = clock_.now();
  while (!pred()) {
    if (clock_.now() - start > timeout_ms) return pred();
    rte_delay_us_sleep(200);
  }
  return true;
}

// MAC 02:00:00:00:CC:NN for backend NN of colour CC (1 blue, 2 green), as the tests configure.
config::mac_address backend_mac(colour c, int n);
// Colour and index encoded in a destination MAC by backend_mac(); {-1,-1} if not one.
std::pair<int, int> decode_backend_mac(const uint8_t* mac);

}  // namespace tandem::test
