#include "tests/support/dataplane_harness.h"

#include <gtest/gtest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pause.h>

#include <atomic>
#include <string>

#include "dataplane/port_setup.h"
#include "tests/support/eal_fixture.h"
#include "tests/support/packet_builder.h"

namespace tandem::test {
namespace {
std::atomic<int> instance{0};
}

config::mac_address backend_mac(colour c, int n) {
  return config::mac_address{{0x02, 0, 0, 0, static_cast<uint8_t>(c == colour::blue ? 1 : 2),
                              static_cast<uint8_t>(n)}};
}

std::pair<int, int> decode_backend_mac(const uint8_t* mac) {
  if (mac[0] != 0x02 || mac[1] || mac[2] || mac[3] || (mac[4] != 1 && mac[4] != 2)) return {-1, -1};
  return {mac[4] == 1 ? 0 : 1, mac[5]};
}

// EAL starts before any member is built: clock_ reads the TSC rate, which is 0 until then (a
// harness made before any other EAL user divided by zero on the worker's first poll).
dataplane_harness::dataplane_harness(const config::daemon_config& cfg, size_t flow_table_size)
    : cfg_((ensure_eal(), cfg)) {
  pool_ = test_mempool();
  const std::string id = std::to_string(instance++);
  rx_ = rte_ring_create(("h_rx" + id).c_str(), 4096, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  tx_ = rte_ring_create(("h_tx" + id).c_str(), 4096, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (!rx_ || !tx_) throw std::runtime_error("ring create failed");
  int pid = rte_eth_from_rings(("net_ring_harness" + id).c_str(), &rx_, 1, &tx_, 1, SOCKET_ID_ANY);
  if (pid < 0) throw std::runtime_error("rte_eth_from_rings failed");
  port_id_ = static_cast<uint16_t>(pid);
  char name[RTE_ETH_NAME_MAX_LEN];
  rte_eth_dev_get_name_by_port(port_id_, name);
  auto layout = setup_ports({name}, 1, pool_);
  if (!layout) throw std::runtime_error(layout.error_message());

  publisher_ = std::make_unique<generation_publisher>(1);
  worker_options opts;
  opts.index = 0;
  opts.ports = layout->per_worker[0];
  opts.flow_table_size = flow_table_size;
  opts.reset_pool = pool_;
  worker_ = std::make_unique<worker>(opts, *publisher_, clock_);
  publish(cfg);
  const unsigned lcore = rte_get_next_lcore(-1, 1, 0);
  if (lcore >= RTE_MAX_LCORE || rte_eal_remote_launch(worker_main, this, lcore) != 0)
    throw std::runtime_error("cannot launch the worker on a second lcore");
  // Wait until the worker is registered and polling (it has passed one loop).
  wait_for([&] { return read_counter(worker_->counters().loops) > 0; });
}

dataplane_harness::~dataplane_harness() {
  stop_ = true;
  rte_eal_mp_wait_lcore();
  rte_eth_dev_stop(port_id_);
  // Return whatever is still queued to the pool, so leak checks see only real leaks.
  void* m;
  while (rte_ring_dequeue(tx_, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  while (rte_ring_dequeue(rx_, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  rte_eth_dev_close(port_id_);
  worker_.reset();
  publisher_.reset();
  rte_ring_free(rx_);
  rte_ring_free(tx_);
}

// worker::run(), plus a hold for exchange_queued.
int dataplane_harness::worker_main(void* self) {
  auto* h = static_cast<dataplane_harness*>(self);
  rcu_reader reader(*h->publisher_, h->worker_->index());
  while (!h->stop_.load(std::memory_order_relaxed)) {
    if (h->hold_.load(std::memory_order_acquire)) {
      h->holding_.store(true, std::memory_order_release);
      reader.quiescent();
      rte_pause();
      continue;
    }
    h->holding_.store(false, std::memory_order_relaxed);
    h->worker_->poll_once(reader);
  }
  return 0;
}

std::vector<std::vector<uint8_t>> dataplane_harness::exchange_queued(
    const std::vector<std::vector<uint8_t>>& frames) {
  if (frames.size() > 4000) throw std::invalid_argument("exchange_queued: at most 4000 frames");
  hold_.store(true, std::memory_order_release);
  wait_for([&] { return holding_.load(std::memory_order_acquire); });
  for (const auto& f : frames) {
    rte_mbuf* m = to_mbuf(pool_, f);
    if (m == nullptr || rte_ring_enqueue(rx_, m) != 0) {
      if (m != nullptr) rte_pktmbuf_free(m);
      ADD_FAILURE() << "exchange_queued: cannot queue frame " << sent_;
      break;
    }
    ++sent_;
  }
  hold_.store(false, std::memory_order_release);
  return exchange({});
}

void dataplane_harness::publish(const config::daemon_config& cfg) {
  auto g = build_generation(cfg, state_);
  ASSERT_TRUE(g.ok()) << g.error_message();
  cfg_ = cfg;
  publisher_->publish(std::move(*g));
}

std::vector<std::vector<uint8_t>> dataplane_harness::exchange(
    const std::vector<std::vector<uint8_t>>& frames) {
  std::vector<std::vector<uint8_t>> out;
  auto drain = [&] {
    void* objs[64];
    unsigned n;
    while ((n = rte_ring_dequeue_burst(tx_, objs, 64, nullptr)) != 0) {
      for (unsigned i = 0; i < n; ++i) {
        auto* m = static_cast<rte_mbuf*>(objs[i]);
        out.push_back(from_mbuf(m));
        rte_pktmbuf_free(m);
      }
    }
  };
  size_t next = 0;
  while (next < frames.size()) {
    // Keep at most ~1000 frames in flight and drain the TX ring after every 256 enqueued, so
    // neither ring overflows however fast the worker keeps up.
    for (size_t batch = 0; batch < 256 && next < frames.size() &&
                           sent_ - read_counter(worker_->counters().rx_packets) < 1000;
         ++batch) {
      rte_mbuf* m = to_mbuf(pool_, frames[next]);
      if (m == nullptr) break;
      if (rte_ring_enqueue(rx_, m) != 0) {
        rte_pktmbuf_free(m);
        break;
      }
      ++next;
      ++sent_;
    }
    drain();
  }
  wait_for([&] { return read_counter(worker_->counters().rx_packets) >= sent_; });
  // The worker transmits a burst right after receiving it; one more loop makes sure it did.
  const uint64_t loops = read_counter(worker_->counters().loops);
  wait_for([&] { return read_counter(worker_->counters().loops) > loops + 1; });
  drain();
  return out;
}

int64_t dataplane_harness::live_flows(uint16_t service_id, colour c) const {
  return read_counter(worker_->counters().services[service_id][static_cast<size_t>(c)].live_flows);
}

uint64_t dataplane_harness::drops(drop_reason r) const {
  return read_counter(worker_->counters().drops[static_cast<size_t>(r)]);
}

}  // namespace tandem::test
