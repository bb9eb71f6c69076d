// Health checks end to end on the real worker loop: the controller, its health checker thread
// and the metrics endpoint as tandemd runs them, a worker on its own lcore behind a net_ring
// port, and backends that are real TCP listeners on 127.0.0.x (the checks go through the host
// kernel). The test thread is the control thread: it calls controller::tick() like tandemd's
// main loop does.
#include <gtest/gtest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "control/controller.h"
#include "control/health_checker.h"
#include "control/metrics.h"
#include "control/protocol.h"
#include "dataplane/port_setup.h"
#include "tests/support/dataplane_harness.h"
#include "tests/support/eal_fixture.h"
#include "tests/support/packet_builder.h"
#include "tests/support/health_server.h"

namespace tandem::test {
namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

constexpr const char* vip = "198.51.100.10";
constexpr uint32_t interval_ms = 200;
constexpr uint32_t fall = 2;
constexpr int blue_c = 0, green_c = 1;

uint16_t health_port() { return static_cast<uint16_t>(20000 + (::getpid() * 13 + 5) % 20000); }

std::string backend_address(colour c, int i) {
  return std::string(c == colour::blue ? "127.0.0.1" : "127.0.0.2") + std::to_string(i);
}

config::daemon_config make_config() {
  config::daemon_config cfg;
  config::service s;
  s.name = "web";
  s.vip = addr(vip);
  s.port = 80;
  s.mode = forwarding_mode::l2;
  s.maglev_size = 1009;
  for (int i = 1; i <= 3; ++i) {
    s.blue.push_back({addr(backend_address(colour::blue, i)), 1, backend_mac(colour::blue, i)});
    s.green.push_back({addr(backend_address(colour::green, i)), 1, backend_mac(colour::green, i)});
  }
  config::health_check h;
  h.kind = config::health_check_kind::tcp;
  h.port = health_port();
  h.interval_ms = interval_ms;
  h.timeout_ms = 150;
  h.rise = 2;
  h.fall = fall;
  h.min_healthy_to_switch = 2;
  s.health = h;
  cfg.services.push_back(s);
  cfg.timeouts.tcp_closing_ms = 50;
  return cfg;
}

frame_spec tcp(int client, uint16_t sport, uint8_t flags) {
  frame_spec f;
  f.src = "10.9." + std::to_string((client >> 8) & 0xff) + "." + std::to_string(client & 0xff);
  f.dst = vip;
  f.src_port = sport;
  f.dst_port = 80;
  f.tcp_flags = flags;
  f.ack = flags & tcp_ack ? 5000 : 0;
  return f;
}

std::string promtool() {
  for (const char* p : {"/usr/bin/promtool", "/usr/local/bin/promtool"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

double sample_value(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(line.rfind(' ') + 1));
  return -1;
}

class HealthIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    ensure_eal();
    clock_ = std::make_unique<ms_clock>();  // after EAL: it reads the TSC frequency
    spdlog::set_level(spdlog::level::warn);
    static int instance = 0;
    const std::string id = "hi" + std::to_string(instance++);
    rx_ = rte_ring_create((id + "rx").c_str(), 4096, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx_ = rte_ring_create((id + "tx").c_str(), 4096, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_TRUE(rx_ && tx_);
    const int pid = rte_eth_from_rings(("net_ring_" + id).c_str(), &rx_, 1, &tx_, 1, SOCKET_ID_ANY);
    ASSERT_GE(pid, 0);
    port_id_ = static_cast<uint16_t>(pid);
    char name[RTE_ETH_NAME_MAX_LEN];
    rte_eth_dev_get_name_by_port(port_id_, name);
    auto layout = setup_ports({name}, 1, test_mempool());
    ASSERT_TRUE(layout.ok()) << layout.error_message();
    publisher_ = std::make_unique<generation_publisher>(1);
    worker_options wo;
    wo.ports = layout->per_worker[0];
    wo.flow_table_size = 1 << 15;
    wo.reset_pool = test_mempool();
    worker_ = std::make_unique<worker>(wo, *publisher_, *clock_);

    for (int i = 1; i <= 3; ++i)
      for (colour c : {colour::blue, colour::green})
        backends_[backend_address(c, i)] = std::make_unique<loopback_backend>(
            backend_address(c, i), health_port(), backend_mode::accept_close);

    ctl_ = std::make_unique<controller>(make_config(), *publisher_, std::vector<worker*>{worker_.get()},
                                        *clock_);
    ctl_->attach_metrics(&exchange_);
    ASSERT_TRUE(ctl_->start().ok());
    ctl_->attach_health_checker(&checker_);
    checker_.start();
    metrics_ = std::make_unique<metrics_server>(exchange_, std::vector<const worker*>{worker_.get()},
                                                *clock_);
    ASSERT_TRUE(metrics_->open(addr("127.0.0.1"), 0).ok());
    metrics_->start();

    const unsigned lcore = rte_get_next_lcore(-1, 1, 0);
    ASSERT_EQ(rte_eal_remote_launch(
                  [](void* self) {
                    auto* t = static_cast<HealthIntegration*>(self);
                    t->worker_->run(t->stop_);
                    return 0;
                  },
                  this, lcore),
              0);
    ASSERT_TRUE(control_until([&] { return read_counter(worker_->counters().loops) > 0; }));
  }

  void TearDown() override {
    if (metrics_) metrics_->stop();
    checker_.stop();
    stop_ = true;
    rte_eal_mp_wait_lcore();
    rte_eth_dev_stop(port_id_);
    void* m;
    while (rte_ring_dequeue(tx_, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    while (rte_ring_dequeue(rx_, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_eth_dev_close(port_id_);
    ctl_.reset();
    worker_.reset();
    publisher_.reset();
    rte_ring_free(rx_);
    rte_ring_free(tx_);
  }

  // Runs the control loop (tick every 10 ms, as tandemd's ~100 ms loop but faster) until
  // pred() holds or timeout_ms passes.
  template <typename P>
  bool control_until(P pred, int timeout_ms = 15000) {
    const auto deadline = steady::now() + std::chrono::milliseconds(timeout_ms);
    while (steady::now() < deadline) {
      ctl_->tick();
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }

  std::string health_state(colour c, int i) {
    auto st = ctl_->status("web");
    for (const json& b : (*st)["services"][0]["colours"][colour_name(c)]["backends"])
      if (b["address"] == backend_address(c, i)) return b["health"]["state"];
    return "?";
  }
  bool all_up() {
    for (colour c : {colour::blue, colour::green})
      for (int i = 1; i <= 3; ++i)
        if (health_state(c, i) != "up") return false;
    return true;
  }
  uint32_t backend_id(colour c, int i) const {
    return *ctl_->runtime().registry.find("web", c, addr(backend_address(c, i)));
  }

  // Sends frames through the worker and returns (colour, backend index) of every frame it sent.
  std::vector<std::pair<int, int>> exchange(const std::vector<std::vector<uint8_t>>& frames) {
    std::vector<std::pair<int, int>> out;
    auto drain = [&] {
      void* objs[64];
      unsigned n;
      while ((n = rte_ring_dequeue_burst(tx_, objs, 64, nullptr)) != 0)
        for (unsigned i = 0; i < n; ++i) {
          auto* m = static_cast<rte_mbuf*>(objs[i]);
          out.push_back(decode_backend_mac(rte_pktmbuf_mtod(m, const uint8_t*)));
          rte_pktmbuf_free(m);
        }
    };
    size_t next = 0;
    while (next < frames.size()) {
      while (next < frames.size() && sent_ - read_counter(worker_->counters().rx_packets) < 1000) {
        rte_mbuf* m = to_mbuf(test_mempool(), frames[next]);
        if (!m) break;
        if (rte_ring_enqueue(rx_, m) != 0) {
          rte_pktmbuf_free(m);
          break;
        }
        ++next;
        ++sent_;
      }
      drain();
    }
    const auto deadline = steady::now() + std::chrono::seconds(10);
    while (read_counter(worker_->counters().rx_packets) < sent_ && steady::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    const uint64_t loops = read_counter(worker_->counters().loops);
    while (read_counter(worker_->counters().loops) <= loops + 1 && steady::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    drain();
    return out;
  }
  std::vector<std::pair<int, int>> send_all(int n, uint16_t sport, uint8_t flags) {
    std::vector<std::vector<uint8_t>> frames;
    for (int i = 0; i < n; ++i) frames.push_back(build_frame(tcp(i, sport, flags)));
    return exchange(frames);
  }
  std::vector<std::pair<int, int>> open_flows(int n, uint16_t sport) {
    auto first = send_all(n, sport, tcp_syn);
    EXPECT_EQ(send_all(n, sport, tcp_ack), first) << "the ACK follows its SYN";
    return first;
  }

  std::string scrape() {
    return http_body(http_exchange("127.0.0.1", metrics_->port(),
                                   "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"));
  }

  std::unique_ptr<ms_clock> clock_;
  rte_ring* rx_ = nullptr;
  rte_ring* tx_ = nullptr;
  uint16_t port_id_ = 0;
  uint64_t sent_ = 0;
  std::atomic<bool> stop_{false};
  std::unique_ptr<generation_publisher> publisher_;
  std::unique_ptr<worker> worker_;
  std::map<std::string, std::unique_ptr<loopback_backend>> backends_;
  health_checker checker_;
  metrics_exchange exchange_;
  std::unique_ptr<controller> ctl_;
  std::unique_ptr<metrics_server> metrics_;
  actor who{0, 1};
};

TEST_F(HealthIntegration, KilledBackendIsMarkedDownInTimeAndOnlyItsFlowsMove) {
  ASSERT_TRUE(control_until([&] { return all_up(); })) << "every backend passes its checks";
  constexpr int n = 3000;
  const auto flows = open_flows(n, 40000);
  int on_victim = 0;
  for (auto [c, b] : flows) {
    ASSERT_EQ(c, blue_c);
    on_victim += b == 2;
  }
  ASSERT_GT(on_victim, 500) << "Maglev gives blue 2 about a third";
  const uint32_t victim = backend_id(colour::blue, 2);

  const auto killed = steady::now();
  backends_[backend_address(colour::blue, 2)]->close();  // its listener is gone: refused
  ASSERT_TRUE(control_until([&] { return ctl_->runtime().down.contains(victim); }));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - killed);
  std::printf("[ measure  ] blue 2 marked down %lld ms after its listener closed (bound %u ms)\n",
              static_cast<long long>(took.count()), interval_ms * fall + 1000);
  EXPECT_LE(took.count(), interval_ms * fall + 1000) << "down within interval x fall (+1 s)";
  EXPECT_EQ(publisher_->current()->backends[victim].up, 0);
  EXPECT_EQ(health_state(colour::blue, 2), "down");
  EXPECT_EQ(ctl_->health_of(victim)->last_result, "connect: Connection refused");

  // The established flows: blue 2's move to another blue backend, every other stays put.
  const auto after = send_all(n, 40000, tcp_ack);
  ASSERT_EQ(after.size(), flows.size());
  int moved = 0;
  for (int i = 0; i < n; ++i) {
    if (flows[i].second == 2) {
      EXPECT_EQ(after[i].first, blue_c) << "re-hashed within its colour";
      EXPECT_NE(after[i].second, 2);
      ++moved;
    } else {
      EXPECT_EQ(after[i], flows[i]) << "flow " << i << " was not on the down backend";
    }
  }
  EXPECT_EQ(moved, on_victim);
  EXPECT_EQ(read_counter(worker_->counters().rehashed_down), static_cast<uint64_t>(on_victim));
  // ... and they stay where they moved.
  const auto again = send_all(n, 40000, tcp_ack);
  EXPECT_EQ(again, after);
  for (auto [c, b] : send_all(n, 41000, tcp_syn)) ASSERT_NE(b, 2) << "no new flow to a down backend";
  EXPECT_EQ(read_counter(worker_->counters().rehashed_down), static_cast<uint64_t>(on_victim));

  const std::string m = scrape();
  EXPECT_EQ(sample_value(m, "tandem_backend_up{service=\"web\",colour=\"blue\",backend=\"127.0.0.12\"} "), 0);
  EXPECT_EQ(sample_value(m, "tandem_backend_up{service=\"web\",colour=\"blue\",backend=\"127.0.0.11\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_worker_rehashed_down_total{worker=\"0\"} "), on_victim);

  // It comes back after `rise` successes and takes new flows again.
  backends_[backend_address(colour::blue, 2)] =
      std::make_unique<loopback_backend>(backend_address(colour::blue, 2), health_port(),
                                         backend_mode::accept_close);
  ASSERT_TRUE(control_until([&] { return !ctl_->runtime().down.contains(victim); }));
  EXPECT_EQ(health_state(colour::blue, 2), "up");
  int to_victim = 0;
  for (auto [c, b] : send_all(n, 42000, tcp_syn)) to_victim += b == 2;
  EXPECT_GT(to_victim, 500);
  const auto history = ctl_->history(10).dump();
  EXPECT_NE(history.find("web blue 127.0.0.12 up -> down (connect: Connection refused)"), std::string::npos)
      << history;
  EXPECT_NE(history.find("web blue 127.0.0.12 down -> up (connected)"), std::string::npos) << history;
}

TEST_F(HealthIntegration, BakeRollsBackWhenGreenDiesAndBlueFlowsNeverMove) {
  ASSERT_TRUE(control_until([&] { return all_up(); }));
  constexpr int n = 2000;
  const auto blue_flows = open_flows(n, 40000);
  for (auto [c, b] : blue_flows) ASSERT_EQ(c, blue_c);

  json r = handle_request(*ctl_, R"({"version":1,"command":"switch","args":{"service":"web","to":"green",)"
                                  R"("bake":"30s","auto_rollback":true,"min_healthy":0.8}})",
                          who);
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  const auto green_flows = open_flows(500, 41000);
  for (auto [c, b] : green_flows) ASSERT_EQ(c, green_c);
  EXPECT_EQ(send_all(n, 40000, tcp_ack | tcp_psh), blue_flows) << "blue flows stay on blue";

  const auto killed = steady::now();
  for (int i = 1; i <= 3; ++i) backends_[backend_address(colour::green, i)]->close();
  ASSERT_TRUE(control_until([&] { return ctl_->running().services[0].active == colour::blue; }, 30000))
      << "rolled back within the 30 s bake window";
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - killed);
  std::printf("[ measure  ] auto-rollback %lld ms after the green listeners closed\n",
              static_cast<long long>(took.count()));
  EXPECT_LE(took.count(), interval_ms * fall + 1000);

  // The long-lived blue flows never moved, before, during or after.
  EXPECT_EQ(send_all(n, 40000, tcp_ack | tcp_psh), blue_flows);
  for (auto [c, b] : send_all(n, 42000, tcp_syn)) ASSERT_EQ(c, blue_c) << "new flows are blue again";

  auto st = ctl_->status("web");
  const json& s = (*st)["services"][0];
  EXPECT_EQ(s["bake"]["state"], "rolled_back");
  const std::string reason = s["bake"]["reason"];
  EXPECT_EQ(reason.rfind("auto-rollback: green healthy ", 0), 0u) << reason;
  bool in_history = false;
  for (const json& h : ctl_->history(20))
    if (h["command"] == "auto-rollback web" &&
        h["change"].get<std::string>().find("web: active green -> blue (auto-rollback: green healthy") == 0)
      in_history = true;
  EXPECT_TRUE(in_history) << ctl_->history(20).dump(1);

  const std::string m = scrape();
  EXPECT_EQ(sample_value(m, "tandem_rollbacks_total{service=\"web\",trigger=\"auto\",result=\"ok\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_bake_state{service=\"web\",colour=\"green\",state=\"rolled_back\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_service_active{service=\"web\",colour=\"blue\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_switches_total{service=\"web\",result=\"ok\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_drain_remaining_flows{service=\"web\",colour=\"green\"} "),
            ctl_->live_flows(0, colour::green));
  EXPECT_EQ(sample_value(m, "tandem_switch_publish_seconds_count "), 2) << "the switch and the rollback";
}

TEST_F(HealthIntegration, MetricsMatchTheCountersAndPassPromtool) {
  ASSERT_TRUE(control_until([&] { return all_up(); }));
  open_flows(1500, 40000);
  send_all(700, 40000, tcp_ack | tcp_psh);
  send_all(300, 40000, tcp_fin | tcp_ack);
  // Junk the worker drops: not for a VIP.
  std::vector<std::vector<uint8_t>> junk;
  for (int i = 0; i < 25; ++i) {
    frame_spec f = tcp(i, 43000, tcp_syn);
    f.dst = "198.51.100.99";
    junk.push_back(build_frame(f));
  }
  exchange(junk);
  // The 300 closed flows leave after tcp_closing (50 ms): wait, so the counters hold still.
  ASSERT_TRUE(control_until([&] { return ctl_->live_flows(0, colour::blue) == 1200; }));
  switch_options o;
  o.to = colour::green;
  ASSERT_TRUE(ctl_->switch_to("web", o, who).ok());
  ctl_->tick();

  // Bad requests first: 4xx, and the endpoint keeps working.
  const uint16_t port = metrics_->port();
  EXPECT_EQ(http_exchange("127.0.0.1", port, "DELETE /metrics HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 405");
  EXPECT_EQ(http_exchange("127.0.0.1", port, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").substr(0, 12), "HTTP/1.1 404");
  EXPECT_EQ(http_exchange("127.0.0.1", port, std::string(9000, 'x')).substr(0, 12), "HTTP/1.1 400");
  EXPECT_EQ(http_exchange("127.0.0.1", port, "\x16\x03\x01\x02\x01\r\n\r\n").substr(0, 12), "HTTP/1.1 400");

  // The worker is idle now: every counter is stable while we compare.
  const std::string m = scrape();
  ASSERT_FALSE(m.empty());
  const worker_counters& c = worker_->counters();
  EXPECT_EQ(sample_value(m, "tandem_worker_rx_packets_total{worker=\"0\"} "), read_counter(c.rx_packets));
  EXPECT_EQ(sample_value(m, "tandem_worker_rx_bytes_total{worker=\"0\"} "), read_counter(c.rx_bytes));
  EXPECT_EQ(sample_value(m, "tandem_worker_tx_packets_total{worker=\"0\"} "), read_counter(c.tx_packets));
  EXPECT_EQ(sample_value(m, "tandem_worker_drops_total{worker=\"0\",reason=\"not_for_vip\"} "),
            read_counter(c.drops[static_cast<size_t>(drop_reason::not_for_vip)]));
  EXPECT_EQ(read_counter(c.drops[static_cast<size_t>(drop_reason::not_for_vip)]), 25u);
  const auto& sc = c.services[0][0];
  EXPECT_EQ(sample_value(m, "tandem_service_new_flows_total{service=\"web\",colour=\"blue\"} "), read_counter(sc.new_flows));
  EXPECT_EQ(read_counter(sc.new_flows), 1500u);
  EXPECT_EQ(sample_value(m, "tandem_service_packets_total{service=\"web\",colour=\"blue\"} "), read_counter(sc.packets));
  EXPECT_EQ(sample_value(m, "tandem_service_bytes_total{service=\"web\",colour=\"blue\"} "), read_counter(sc.bytes));
  EXPECT_EQ(sample_value(m, "tandem_service_live_flows{service=\"web\",colour=\"blue\"} "), read_counter(sc.live_flows));
  EXPECT_EQ(sample_value(m, "tandem_worker_flow_table_entries{worker=\"0\"} "), read_counter(sc.live_flows));
  EXPECT_EQ(sample_value(m, "tandem_worker_flow_table_capacity{worker=\"0\"} "), worker_->flows().capacity());
  uint64_t backend_packets = 0;
  for (int i = 1; i <= 3; ++i) {
    const uint32_t id = backend_id(colour::blue, i);
    const std::string l = "{service=\"web\",colour=\"blue\",backend=\"" + backend_address(colour::blue, i) + "\"} ";
    EXPECT_EQ(sample_value(m, "tandem_backend_packets_total" + l), read_counter(worker_->backends().packets[id]));
    EXPECT_EQ(sample_value(m, "tandem_backend_live_flows" + l), read_counter(worker_->backends().live_flows[id]));
    EXPECT_EQ(sample_value(m, "tandem_backend_up" + l), 1);
    EXPECT_EQ(sample_value(m, "tandem_backend_weight" + l), 1);
    backend_packets += read_counter(worker_->backends().packets[id]);
  }
  EXPECT_EQ(backend_packets, read_counter(sc.packets));
  EXPECT_EQ(sample_value(m, "tandem_generation "), ctl_->generation_number());
  EXPECT_EQ(sample_value(m, "tandem_service_active{service=\"web\",colour=\"green\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_drain_in_progress{service=\"web\"} "), 1);
  EXPECT_EQ(sample_value(m, "tandem_drain_remaining_flows{service=\"web\",colour=\"blue\"} "),
            read_counter(sc.live_flows));
  EXPECT_GT(sample_value(m, "tandem_drain_deadline_seconds{service=\"web\",colour=\"blue\"} "), 200)
      << "the default drain timeout is 300 s";
  EXPECT_GE(sample_value(m, "tandem_backend_health_checks_total{service=\"web\",colour=\"green\",backend=\"127.0.0.21\",result=\"success\"} "), 2);
  EXPECT_GE(metrics_->bad_requests(), 2u);

  if (promtool().empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  const std::string file = "/tmp/tandem-health-it-" + std::to_string(::getpid()) + ".prom";
  std::ofstream(file) << m;
  const std::string out = file + ".out";
  const int rc = std::system((promtool() + " check metrics < " + file + " > " + out + " 2>&1").c_str());
  std::ifstream report(out);
  std::stringstream findings;
  findings << report.rdbuf();
  EXPECT_EQ(WEXITSTATUS(rc), 0) << findings.str();
  EXPECT_EQ(findings.str(), "");
  std::remove(file.c_str());
  std::remove(out.c_str());
}

}  // namespace
}  // namespace tandem::test
