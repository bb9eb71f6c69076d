// The blue/green guarantees on the real worker loop: a worker on its own lcore, a net_ring
// port, generations published under RCU while traffic flows.
#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <cstring>
#include <map>
#include <set>

#include "tests/support/dataplane_harness.h"
#include "tests/support/eal_fixture.h"
#include "tests/support/packet_builder.h"

namespace tandem::test {
namespace {

constexpr const char* vip = "198.51.100.10";

config::service web_service(int blue, int green) {
  config::service s;
  s.name = "web";
  s.vip = addr(vip);
  s.proto = 6;
  s.port = 80;
  s.mode = forwarding_mode::l2;
  s.maglev_size = 1009;
  for (int i = 1; i <= blue; ++i)
    s.blue.push_back({addr("10.1.0." + std::to_string(i)), 1, backend_mac(colour::blue, i)});
  for (int i = 1; i <= green; ++i)
    s.green.push_back({addr("10.2.0." + std::to_string(i)), 1, backend_mac(colour::green, i)});
  return s;
}

config::daemon_config make_config(int blue = 4, int green = 4) {
  config::daemon_config c;
  c.services.push_back(web_service(blue, green));
  c.timeouts.tcp_closing_ms = 50;  // let closed flows leave quickly
  return c;
}

std::string client(int i) {
  return "10.9." + std::to_string((i >> 8) & 0xff) + "." + std::to_string(i & 0xff);
}

frame_spec tcp(int client_index, uint16_t sport, uint8_t flags) {
  frame_spec f;
  f.src = client(client_index);
  f.dst = vip;
  f.src_port = sport;
  f.dst_port = 80;
  f.tcp_flags = flags;
  f.seq = 1000;
  f.ack = flags & 0x10 ? 5000 : 0;
  return f;
}

// (colour, backend index) of each output frame, from its destination MAC.
std::vector<std::pair<int, int>> destinations(const std::vector<std::vector<uint8_t>>& out) {
  std::vector<std::pair<int, int>> d;
  for (const auto& f : out) d.push_back(decode_backend_mac(f.data()));
  return d;
}

constexpr int blue_c = 0, green_c = 1;

class WorkerSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ensure_eal();
    start_in_use_ = mbufs_in_use(test_mempool());
  }
  void TearDown() override {
    h_.reset();
    EXPECT_EQ(mbufs_in_use(test_mempool()), start_in_use_) << "mbufs leaked";
  }
  std::unique_ptr<dataplane_harness> h_;
  unsigned start_in_use_ = 0;
};

// Opens n flows (SYN then ACK) from clients 0..n-1 and returns each flow's destination.
std::vector<std::pair<int, int>> open_flows(dataplane_harness& h, int n, uint16_t sport = 40000) {
  std::vector<std::vector<uint8_t>> syns, acks;
  for (int i = 0; i < n; ++i) {
    syns.push_back(build_frame(tcp(i, sport, tcp_syn)));
    acks.push_back(build_frame(tcp(i, sport, tcp_ack)));
  }
  auto first = destinations(h.exchange(syns));
  auto second = destinations(h.exchange(acks));
  EXPECT_EQ(first.size(), static_cast<size_t>(n));
  EXPECT_EQ(first, second) << "the ACK must follow its SYN";
  return first;
}

std::vector<std::pair<int, int>> send_all(dataplane_harness& h, int n, uint8_t flags,
                                          uint16_t sport = 40000) {
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < n; ++i) frames.push_back(build_frame(tcp(i, sport, flags)));
  return destinations(h.exchange(frames));
}

TEST_F(WorkerSwitchTest, EstablishedFlowsKeepBlueAfterSwitchNewFlowsGoGreen) {
  auto cfg = make_config();
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 10000;
  auto before = open_flows(*h_, n);
  std::set<int> blue_backends;
  for (auto [c, b] : before) {
    ASSERT_EQ(c, blue_c);
    blue_backends.insert(b);
  }
  EXPECT_EQ(blue_backends.size(), 4u) << "Maglev spreads 10000 flows over all 4 blue backends";
  EXPECT_EQ(h_->live_flows(0, colour::blue), n);

  cfg.services[0].active = colour::green;
  h_->publish(cfg);

  // Every later packet of the established flows still goes to its own blue backend.
  EXPECT_EQ(send_all(*h_, n, tcp_ack | tcp_psh), before);
  // Every new connection (other source port) goes to green.
  auto fresh = send_all(*h_, n, tcp_syn, 50000);
  ASSERT_EQ(fresh.size(), static_cast<size_t>(n));
  for (auto [c, b] : fresh) ASSERT_EQ(c, green_c);

  // FIN and RST end the blue flows; after the closing timeout blue has no live flows.
  std::vector<std::vector<uint8_t>> ends;
  for (int i = 0; i < n; ++i)
    ends.push_back(build_frame(tcp(i, 40000, i % 2 ? (tcp_fin | tcp_ack) : tcp_rst)));
  EXPECT_EQ(destinations(h_->exchange(ends)), before) << "FIN/RST still reach the old backend";
  EXPECT_TRUE(h_->wait_for([&] { return h_->live_flows(0, colour::blue) == 0; }))
      << "blue still has " << h_->live_flows(0, colour::blue) << " live flows";
  EXPECT_EQ(h_->live_flows(0, colour::green), n);
}

// Flow entries store a VIP id instead of the VIP address: the same client address and port to
// two VIPs (and to one VIP over TCP and UDP) must still be separate flows, each pinned.
// Under load the worker receives the next burst before it forwards the previous one (their
// flow lookups overlap): a flow's first packet and its next ones in the following burst, or
// the same burst, must still meet in the table, in order.
TEST_F(WorkerSwitchTest, ChainedBurstsKeepFlowsTogetherAndInOrder) {
  h_ = std::make_unique<dataplane_harness>(make_config());
  constexpr int flows = 150;
  std::vector<std::vector<uint8_t>> frames;
  frames.push_back(build_frame(tcp(999, 41000, tcp_syn)));  // shifts pairs across burst edges
  for (int i = 0; i < flows; ++i) {
    frames.push_back(build_frame(tcp(i, 40000, tcp_syn)));
    frames.push_back(build_frame(tcp(i, 40000, tcp_ack)));
  }
  for (int i = 0; i < flows; ++i) frames.push_back(build_frame(tcp(i, 40000, tcp_ack)));
  ASSERT_GT(frames.size(), 8u * 32u);  // more than one poll's worth of chained bursts

  const auto out = h_->exchange_queued(frames);
  ASSERT_EQ(out.size(), frames.size());
  for (size_t k = 0; k < out.size(); ++k) {
    // In order: the client address and port of output k are those of input k.
    ASSERT_EQ(std::memcmp(out[k].data() + 14 + 12, frames[k].data() + 14 + 12, 4), 0) << k;
    ASSERT_EQ(std::memcmp(out[k].data() + 34, frames[k].data() + 34, 2), 0) << k;
  }
  const auto d = destinations(out);
  std::set<std::pair<int, int>> used;
  for (int i = 0; i < flows; ++i) {
    const auto syn = d[1 + 2 * i];
    EXPECT_EQ(syn.first, blue_c) << i;
    EXPECT_EQ(d[2 + 2 * i], syn) << "ACK right after its SYN, flow " << i;
    EXPECT_EQ(d[1 + 2 * flows + i], syn) << "later ACK, flow " << i;
    used.insert(syn);
  }
  EXPECT_GT(used.size(), 1u);
  EXPECT_EQ(read_counter(h_->counters().midflow_pickups), 0u) << "an ACK missed its SYN's entry";
  EXPECT_EQ(h_->live_flows(0, colour::blue), flows + 1);
}

TEST_F(WorkerSwitchTest, SameClientPortToTwoVipsAreTwoFlows) {
  auto cfg = make_config();
  config::service api = web_service(0, 0);
  api.name = "api";
  api.vip = addr("198.51.100.11");
  for (int i = 1; i <= 4; ++i) {
    api.blue.push_back({addr("10.3.0." + std::to_string(i)), 1, backend_mac(colour::blue, 10 + i)});
    api.green.push_back({addr("10.4.0." + std::to_string(i)), 1, backend_mac(colour::green, 10 + i)});
  }
  cfg.services.push_back(api);
  h_ = std::make_unique<dataplane_harness>(cfg);
  ASSERT_EQ(h_->state().vips.size(), 2u);

  constexpr int n = 200;
  auto to = [](int i, const char* dst, uint8_t flags) {
    frame_spec f = tcp(i, 40000, flags);
    f.dst = dst;
    return build_frame(f);
  };
  std::vector<std::vector<uint8_t>> web_syn, api_syn, web_ack, api_ack;
  for (int i = 0; i < n; ++i) {
    web_syn.push_back(to(i, vip, tcp_syn));
    api_syn.push_back(to(i, "198.51.100.11", tcp_syn));
    web_ack.push_back(to(i, vip, tcp_ack));
    api_ack.push_back(to(i, "198.51.100.11", tcp_ack));
  }
  const auto web_before = destinations(h_->exchange(web_syn));
  const auto api_before = destinations(h_->exchange(api_syn));
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(web_before[i].first, blue_c);
    ASSERT_LT(web_before[i].second, 10);
    ASSERT_GT(api_before[i].second, 10);
  }
  EXPECT_EQ(h_->live_flows(0, colour::blue), n);
  EXPECT_EQ(h_->live_flows(1, colour::blue), n);
  EXPECT_EQ(h_->counters().port_reuse, 0u) << "an api SYN must not replace the web flow";

  cfg.services[0].active = colour::green;
  cfg.services[1].active = colour::green;
  h_->publish(cfg);
  EXPECT_EQ(destinations(h_->exchange(web_ack)), web_before);
  EXPECT_EQ(destinations(h_->exchange(api_ack)), api_before);
  EXPECT_EQ(h_->counters().midflow_pickups, 0u);

  // Removing a VIP and bringing it back gives it its old id: ids are never reused for another.
  auto without = cfg;
  without.services.pop_back();
  h_->publish(without);
  config::service other = api;
  other.name = "other";
  other.vip = addr("198.51.100.12");
  without.services.push_back(other);
  h_->publish(without);
  h_->publish(cfg);
  ASSERT_EQ(h_->state().vips.size(), 3u);
  EXPECT_EQ(to_string(h_->state().vips[1].address), "198.51.100.11");
  EXPECT_EQ(to_string(h_->state().vips[2].address), "198.51.100.12");
}

TEST_F(WorkerSwitchTest, RollbackKeepsFlowsOfBothColours) {
  auto cfg = make_config();
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 2000;
  auto blue_flows = open_flows(*h_, n, 40000);
  cfg.services[0].active = colour::green;
  h_->publish(cfg);
  auto green_flows = open_flows(*h_, n, 41000);
  for (auto [c, b] : green_flows) ASSERT_EQ(c, green_c);

  // Rollback: blue is active again.
  cfg.services[0].active = colour::blue;
  h_->publish(cfg);
  EXPECT_EQ(send_all(*h_, n, tcp_ack, 40000), blue_flows);
  EXPECT_EQ(send_all(*h_, n, tcp_ack, 41000), green_flows)
      << "flows opened on green before the rollback keep their green backend";
  for (auto [c, b] : send_all(*h_, n, tcp_syn, 42000)) ASSERT_EQ(c, blue_c);
  EXPECT_EQ(h_->live_flows(0, colour::green), n);
}

TEST_F(WorkerSwitchTest, PortReuseAfterCloseOrSwitchStartsOnTheCurrentColour) {
  auto cfg = make_config();
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 500;
  open_flows(*h_, n);
  cfg.services[0].active = colour::green;
  h_->publish(cfg);
  // Half the clients reuse their 5-tuple after closing, half reuse it while the entry is still
  // established on the draining colour: both must start on green.
  std::vector<std::vector<uint8_t>> fins;
  for (int i = 0; i < n / 2; ++i) fins.push_back(build_frame(tcp(i, 40000, tcp_fin | tcp_ack)));
  h_->exchange(fins);
  auto reuse = send_all(*h_, n, tcp_syn);
  ASSERT_EQ(reuse.size(), static_cast<size_t>(n));
  for (auto [c, b] : reuse) ASSERT_EQ(c, green_c);
  EXPECT_EQ(read_counter(h_->counters().port_reuse), static_cast<uint64_t>(n));
  // A retransmitted SYN of a flow already on green stays where it is.
  EXPECT_EQ(send_all(*h_, n, tcp_syn), reuse);
}

TEST_F(WorkerSwitchTest, CanaryTenPercentByClientCohort) {
  auto cfg = make_config();
  cfg.services[0].canary_basis_points = 1000;  // 10 % of clients to the idle colour (green)
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 20000;
  auto first = send_all(*h_, n, tcp_syn, 40000);
  ASSERT_EQ(first.size(), static_cast<size_t>(n));
  int green = 0;
  for (auto [c, b] : first) green += c == green_c;
  EXPECT_NEAR(green, n / 10, n * 2 / 100) << "10 +- 2 % of clients in the canary";
  // The same clients' later connections (new source ports) stay in their cohort.
  auto later = send_all(*h_, n, tcp_syn, 45000);
  ASSERT_EQ(later.size(), first.size());
  for (int i = 0; i < n; ++i) ASSERT_EQ(later[i].first, first[i].first) << "client " << i;
}

TEST_F(WorkerSwitchTest, EditingTheIdlePoolChangesNothingForLiveTraffic) {
  auto cfg = make_config(4, 4);
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 3000;
  auto flows = open_flows(*h_, n);
  // The choice for brand-new flows before the edit: open, then reset and let them expire.
  auto new_before = send_all(*h_, n, tcp_syn, 47000);
  send_all(*h_, n, tcp_rst, 47000);
  ASSERT_TRUE(h_->wait_for([&] { return h_->live_flows(0, colour::blue) == n; }));
  // Remove two green backends, add three, reweight one.
  auto& green = cfg.services[0].green;
  green.erase(green.begin(), green.begin() + 2);
  for (int i = 5; i <= 7; ++i)
    green.push_back({addr("10.2.0." + std::to_string(i)), 1, backend_mac(colour::green, i)});
  green[0].weight = 5;
  h_->publish(cfg);
  EXPECT_EQ(send_all(*h_, n, tcp_ack), flows) << "established flows do not move";
  EXPECT_EQ(send_all(*h_, n, tcp_syn, 47000), new_before)
      << "new flows are chosen exactly as before: the active pool did not change";
}

TEST_F(WorkerSwitchTest, RemovedBackendKeepsItsFlowsUntilTheyEnd) {
  auto cfg = make_config(4, 4);
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 2000;
  auto flows = open_flows(*h_, n);
  // Remove blue backend 1 from its (active) pool: its flows stay pinned to it.
  cfg.services[0].blue.erase(cfg.services[0].blue.begin());
  h_->publish(cfg);
  EXPECT_EQ(send_all(*h_, n, tcp_ack), flows);
  for (auto [c, b] : send_all(*h_, n, tcp_syn, 43000)) ASSERT_NE(b, 1) << "no new flow to it";
}

TEST_F(WorkerSwitchTest, BackendMarkedDownIsTheOnlyExceptionToPinning) {
  auto cfg = make_config(4, 4);
  h_ = std::make_unique<dataplane_harness>(cfg);
  constexpr int n = 2000;
  auto flows = open_flows(*h_, n);
  const uint32_t id = *h_->state().registry.find("web", colour::blue, addr("10.1.0.2"));
  h_->state().down.insert(id);
  h_->publish(cfg);
  auto after = send_all(*h_, n, tcp_ack);
  ASSERT_EQ(after.size(), flows.size());
  uint64_t moved = 0;
  for (int i = 0; i < n; ++i) {
    if (flows[i].second == 2) {
      EXPECT_NE(after[i].second, 2);
      EXPECT_EQ(after[i].first, blue_c) << "re-hashed within its own colour";
      ++moved;
    } else {
      EXPECT_EQ(after[i], flows[i]) << "flows on healthy backends do not move";
    }
  }
  EXPECT_GT(moved, 0u);
  EXPECT_EQ(read_counter(h_->counters().rehashed_down), moved);
}

TEST_F(WorkerSwitchTest, UdpFlowsStickUntilIdleTimeout) {
  auto cfg = make_config();
  cfg.services[0].proto = 17;
  cfg.services[0].port = 53;
  cfg.timeouts.udp_ms = 300;
  h_ = std::make_unique<dataplane_harness>(cfg);
  auto udp = [](int i) {
    frame_spec f;
    f.src = client(i);
    f.dst = vip;
    f.proto = 17;
    f.src_port = 5353;
    f.dst_port = 53;
    f.payload = {1, 2, 3};
    return build_frame(f);
  };
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 500; ++i) frames.push_back(udp(i));
  auto first = destinations(h_->exchange(frames));
  cfg.services[0].active = colour::green;
  h_->publish(cfg);
  EXPECT_EQ(destinations(h_->exchange(frames)), first) << "UDP flows stay on blue";
  EXPECT_TRUE(h_->wait_for([&] { return h_->live_flows(0, colour::blue) == 0; }, 5000));
  for (auto [c, b] : destinations(h_->exchange(frames))) EXPECT_EQ(c, green_c);
}

TEST_F(WorkerSwitchTest, MalformedFramesAreCountedAndDroppedWithoutLeaks) {
  auto cfg = make_config();
  h_ = std::make_unique<dataplane_harness>(cfg);
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 300; ++i) {
    auto good = build_frame(tcp(i, 40000, tcp_syn));
    frames.push_back(good);
    auto truncated = good;
    truncated.resize(14 + 10 + (i % 20));  // cut inside the IP or TCP header
    frames.push_back(truncated);
    auto bad_ihl = good;
    bad_ihl[14] = 0x43;
    frames.push_back(bad_ihl);
    auto not_vip = build_frame([&] {
      auto f = tcp(i, 40000, tcp_syn);
      f.dst = "198.51.100.99";
      return f;
    }());
    frames.push_back(not_vip);
  }
  auto out = h_->exchange(frames);
  EXPECT_EQ(out.size(), 300u);
  const uint64_t bad = h_->drops(drop_reason::truncated_l3) + h_->drops(drop_reason::truncated_l4) +
                       h_->drops(drop_reason::bad_ip_length) + h_->drops(drop_reason::bad_ihl);
  EXPECT_EQ(bad, 600u);
  EXPECT_EQ(h_->drops(drop_reason::not_for_vip), 300u);
}

TEST_F(WorkerSwitchTest, ArpForTheVipIsAnswered) {
  auto cfg = make_config();
  h_ = std::make_unique<dataplane_harness>(cfg);
  std::vector<uint8_t> arp(42, 0);
  const uint8_t req[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x99, 0x08, 0x06,
                         0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x99, 192, 0, 2, 1,
                         0, 0, 0, 0, 0, 0, 198, 51, 100, 10};
  std::copy(std::begin(req), std::end(req), arp.begin());
  auto out = h_->exchange({arp});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][21], 2) << "ARP reply opcode";
  EXPECT_EQ(read_counter(h_->counters().arp_replies), 1u);
}

}  // namespace
}  // namespace tandem::test

namespace tandem::test {
namespace {

// Drain deadline policies as the worker carries them out: flows of the draining colour created
// before the switch are expired or reset at the deadline; flows of the active colour are not.
class WorkerDrainTest : public ::testing::Test {
 protected:
  void SetUp() override { ensure_eal(); }
};

void set_flush(dataplane_harness& h, drain_action action, uint32_t spread_ms) {
  auto& flush = h.state().flushes["web"];
  flush[static_cast<size_t>(colour::blue)] =
      colour_flush{h.state().next_generation, h.now_ms(), spread_ms, action};
}

TEST_F(WorkerDrainTest, ExpireAtTheDeadlineMovesRemainingFlowsToTheActiveColour) {
  auto cfg = make_config();
  dataplane_harness h(cfg);
  constexpr int n = 300;
  auto blue = open_flows(h, n);
  cfg.services[0].active = colour::green;
  set_flush(h, drain_action::expire, 0);
  h.publish(cfg);
  auto green = open_flows(h, n, 41000);
  ASSERT_TRUE(h.wait_for([&] { return h.live_flows(0, colour::blue) == 0; }))
      << "the scanner expires every blue flow at the deadline";
  EXPECT_EQ(read_counter(h.counters().drain_expired), static_cast<uint64_t>(n));
  EXPECT_EQ(h.live_flows(0, colour::green), n) << "green flows are not touched";
  EXPECT_EQ(send_all(h, n, tcp_ack, 41000), green);
  // Later packets of the expired flows follow the current table (green).
  for (auto [c, b] : send_all(h, n, tcp_ack, 40000)) EXPECT_EQ(c, green_c);
}

TEST_F(WorkerDrainTest, ResetSendsRstToBothEndsWithTheSequenceNumbersSeen) {
  auto cfg = make_config();
  dataplane_harness h(cfg);
  constexpr int n = 50;
  auto blue = open_flows(h, n);
  cfg.services[0].active = colour::green;
  h.publish(cfg);
  auto green = open_flows(h, n, 41000);
  // The deadline passes with the flows still open: reset, spread over 300 ms.
  set_flush(h, drain_action::reset, 300);
  h.publish(cfg);
  ASSERT_TRUE(h.wait_for([&] { return h.live_flows(0, colour::blue) == 0; }));
  auto out = h.exchange({});
  int to_backend = 0, to_client = 0;
  for (const auto& f : out) {
    const auto [c, b] = decode_backend_mac(f.data());
    const uint8_t* ip = f.data() + 14;
    const uint8_t* tcp_h = ip + 20;
    ASSERT_EQ(tcp_h[13] & tcp_rst, tcp_rst);
    ASSERT_EQ(inet_checksum(ip, 20), 0) << "IPv4 header checksum";
    uint32_t seq = static_cast<uint32_t>(tcp_h[4] << 24 | tcp_h[5] << 16 | tcp_h[6] << 8 | tcp_h[7]);
    if (c == blue_c) {
      ++to_backend;  // as the client: seq = client's next sequence number after its last
      EXPECT_EQ(seq, 1000u);  // packet (the test's bare ACK carries seq 1000, no payload)
      EXPECT_EQ(ip[12], 10);  // from the client address
    } else {
      ++to_client;  // from the VIP: seq = the client's last ACK (5000)
      EXPECT_EQ(seq, 5000u);
      EXPECT_EQ(ip[12], 198);
      EXPECT_EQ(f[0], 0x02);  // to the MAC clients' packets came from (frame_spec src_mac)
      EXPECT_EQ(f[5], 0x01);
    }
  }
  EXPECT_EQ(to_backend, n);
  EXPECT_EQ(to_client, n);
  EXPECT_EQ(read_counter(h.counters().drain_resets), static_cast<uint64_t>(n));
  EXPECT_EQ(send_all(h, n, tcp_ack, 41000), green) << "green flows untouched";
}

config::daemon_config tunnel_config(forwarding_mode mode) {
  auto cfg = make_config();
  cfg.services[0].mode = mode;
  cfg.tunnel.source_v4 = addr("192.0.2.254");
  cfg.tunnel.nexthop_mac = config::mac_address{{0x02, 0, 0, 0, 0xee, 0xee}};
  cfg.tunnel.gue_port = 6080;
  return cfg;
}

TEST_F(WorkerDrainTest, IpipAndGueThroughTheWorker) {
  for (forwarding_mode mode : {forwarding_mode::ipip, forwarding_mode::gue}) {
    dataplane_harness h(tunnel_config(mode));
    auto in = build_frame(tcp(7, 40000, tcp_syn));
    auto out = h.exchange({in});
    ASSERT_EQ(out.size(), 1u);
    const auto& f = out[0];
    EXPECT_EQ(f[0], 0x02);
    EXPECT_EQ(f[4], 0xee) << "to the configured next hop";
    const uint8_t* ip = f.data() + 14;
    EXPECT_EQ(ip[0], 0x45);
    EXPECT_EQ(ip[9], mode == forwarding_mode::ipip ? 4 : 17);
    EXPECT_EQ(inet_checksum(ip, 20), 0);
    EXPECT_EQ(ip[12], 192);  // tunnel source
    EXPECT_EQ(ip[16], 10);   // a blue backend 10.1.0.x
    EXPECT_EQ(ip[17], 1);
    const size_t inner = 14 + 20 + (mode == forwarding_mode::gue ? 8 : 0);
    if (mode == forwarding_mode::gue) {
      EXPECT_EQ(ip[22] << 8 | ip[23], 6080);
      EXPECT_GE(ip[20] << 8 | ip[21], 49152);
    }
    const size_t inner_len = in.size() - 14 - 6;  // the 54-byte SYN's padding is trimmed
    ASSERT_EQ(f.size(), inner + 40);
    EXPECT_TRUE(std::equal(f.begin() + static_cast<long>(inner), f.end(), in.begin() + 14))
        << "inner packet unchanged";
    (void)inner_len;
  }
}

// IPv6 flows keep their client address outside the entry (the flow table's side array): the
// worker must find them again, pin them across a switch, and rebuild their full addresses for
// drain resets.
config::daemon_config v6_config() {
  auto c = make_config();
  auto& s = c.services[0];
  s.vip = addr("2001:db8::10");
  s.blue.clear();
  s.green.clear();
  for (int i = 1; i <= 4; ++i) {
    s.blue.push_back({addr("2001:db8:1::" + std::to_string(i)), 1, backend_mac(colour::blue, i)});
    s.green.push_back({addr("2001:db8:2::" + std::to_string(i)), 1, backend_mac(colour::green, i)});
  }
  return c;
}

// Client i of 2001:db8:9::/64; the decimal digits are valid hex and distinct.
frame_spec tcp6(int client_index, uint16_t sport, uint8_t flags) {
  frame_spec f = tcp(client_index, sport, flags);
  f.src = "2001:db8:9::" + std::to_string(client_index);
  f.dst = "2001:db8::10";
  return f;
}

std::vector<std::pair<int, int>> send_all6(dataplane_harness& h, int n, uint8_t flags,
                                           uint16_t sport) {
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < n; ++i) frames.push_back(build_frame(tcp6(i, sport, flags)));
  return destinations(h.exchange(frames));
}

TEST_F(WorkerDrainTest, Ipv6FlowsArePinnedAcrossASwitchAndResetWithTheirOwnAddresses) {
  auto cfg = v6_config();
  dataplane_harness h(cfg);
  constexpr int n = 200;
  const auto blue = send_all6(h, n, tcp_syn, 40000);
  ASSERT_EQ(blue.size(), static_cast<size_t>(n));
  EXPECT_EQ(send_all6(h, n, tcp_ack, 40000), blue) << "the ACK follows its SYN";
  std::set<int> backends;
  for (auto [c, b] : blue) {
    EXPECT_EQ(c, blue_c);
    backends.insert(b);
  }
  EXPECT_GT(backends.size(), 1u) << "flows spread over the blue pool";
  EXPECT_EQ(h.live_flows(0, colour::blue), n);

  cfg.services[0].active = colour::green;
  h.publish(cfg);
  EXPECT_EQ(send_all6(h, n, tcp_ack, 40000), blue) << "established IPv6 flows stay on blue";
  for (auto [c, b] : send_all6(h, n, tcp_syn, 41000)) EXPECT_EQ(c, green_c);

  // Reset the blue flows at the deadline: both ends get a RST built from the stored key.
  set_flush(h, drain_action::reset, 0);
  h.publish(cfg);
  ASSERT_TRUE(h.wait_for([&] { return h.live_flows(0, colour::blue) == 0; }));
  const auto out = h.exchange({});
  std::set<int> clients_to_backend, clients_to_client;
  for (const auto& f : out) {
    const auto [c, b] = decode_backend_mac(f.data());
    ASSERT_EQ(f[12] << 8 | f[13], 0x86dd) << "IPv6 resets for IPv6 flows";
    const uint8_t* ip = f.data() + 14;
    const uint8_t* tcp_h = ip + 40;
    ASSERT_EQ(tcp_h[13] & tcp_rst, tcp_rst);
    const uint8_t* client_addr = c == blue_c ? ip + 8 : ip + 24;  // source to the backend
    const uint8_t* vip_addr = c == blue_c ? ip + 24 : ip + 8;
    const ip_address want_vip = addr("2001:db8::10");
    EXPECT_EQ(std::memcmp(vip_addr, want_vip.bytes, 16), 0);
    // 2001:db8:9::<i>: the last two bytes hold i's decimal digits read as hex.
    ip_address got;
    std::memcpy(got.bytes, client_addr, 16);
    int found = -1;
    for (int i = 0; i < n && found < 0; ++i)
      if (got == addr("2001:db8:9::" + std::to_string(i))) found = i;
    ASSERT_GE(found, 0) << "a reset names a client that never sent anything";
    if (c == blue_c) {
      EXPECT_EQ(b, blue[static_cast<size_t>(found)].second) << "to the flow's own backend";
      clients_to_backend.insert(found);
    } else {
      clients_to_client.insert(found);
    }
    EXPECT_EQ(static_cast<uint16_t>(tcp_h[c == blue_c ? 0 : 2] << 8 | tcp_h[c == blue_c ? 1 : 3]),
              40000) << "the client's port";
  }
  EXPECT_EQ(clients_to_backend.size(), static_cast<size_t>(n)) << "one reset per flow, to the backend";
  EXPECT_EQ(clients_to_client.size(), static_cast<size_t>(n)) << "one reset per flow, to the client";
  for (auto [c, b] : send_all6(h, n, tcp_ack, 41000)) EXPECT_EQ(c, green_c) << "green untouched";
}

}  // namespace
}  // namespace tandem::test
