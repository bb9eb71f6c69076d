// Fuzz target: frames of any content through the real worker loop (on its own lcore, net_ring
// port), with an L2, a GUE (IPv4/IPv6 backends) and an IPIP service configured, and the
// control plane changing things between them: switches whose drain deadline has passed (keep,
// expire or reset, spread up to 255 ms), backends marked down and up, a backend removed from and
// put back into its pool. Every frame received is either transmitted or counted as a drop (drain
// resets add at most two frames each), no mbuf is leaked, and every encapsulated frame carries
// consistent outer lengths and valid checksums (outer IPv4 header, UDP over IPv6).
//
// Input: records of a kind byte, a 2-byte big-endian length and that many bytes (a short last
// record takes what is left). Kind % 4: 0 a frame (at most 1600 bytes), 1 switch service
// bytes[0] % 3 to its other colour with the old colour's deadline already passed, action
// bytes[1] % 3 (keep, expire, reset) and spread bytes[2] ms, 2 mark backend id bytes[0] % 8
// down (or up again), 3 remove the first blue backend of service bytes[0] % 3 (or put it back).
// At most 64 records.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <rte_cycles.h>
#include <spdlog/spdlog.h>

#include "control/config.h"
#include "tests/support/dataplane_harness.h"
#include "tests/support/eal_fixture.h"

namespace {

using namespace tandem;

constexpr std::string_view fuzz_config = R"(dataplane:
  tunnel: {source_v4: 10.0.0.1, source_v6: "fd00::1", nexthop_mac: "02:00:00:00:00:fe", gue_port: 6080}
services:
  - name: web
    vip: 198.51.100.10
    protocol: tcp
    port: 80
    forwarding: l2
    maglev_size: 251
    canary: {percent: 10}
    segments: [{cidr: 203.0.113.0/24, to: green}]
    preview: {vip: 198.51.100.11, port: 8080}
    pools:
      blue:
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01"}
        - {address: 10.1.0.2, mac: "02:00:00:00:01:02"}
      green:
        - {address: 10.2.0.1, mac: "02:00:00:00:02:01"}
  - name: api-v6
    vip: "2001:db8::10"
    protocol: tcp
    port: 443
    forwarding: gue
    maglev_size: 251
    pools:
      blue:
        - {address: "2001:db8:100::1"}
        - {address: 10.3.0.1}
      green:
        - {address: "2001:db8:200::1"}
  - name: dns
    vip: 198.51.100.53
    protocol: udp
    port: 0
    forwarding: ipip
    maglev_size: 251
    pools:
      blue:
        - {address: 10.4.0.1}
      green: []
)";

constexpr uint8_t nexthop_mac[6] = {0x02, 0, 0, 0, 0, 0xfe};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "worker_frames_fuzz: %s\n", what.c_str());
  std::abort();
}

uint64_t total_drops(const worker_counters& c) {
  uint64_t n = 0;
  for (const uint64_t d : c.drops) n += __atomic_load_n(&d, __ATOMIC_RELAXED);
  return n;
}

uint32_t be16(const uint8_t* p) { return uint32_t{p[0]} << 8 | p[1]; }

// Sent to the next hop from the tunnel source: what the GUE and IPIP services send. (ARP and
// neighbour replies can go to the next hop's MAC too, when it asked; they come from the VIP.)
bool is_encapsulated(const std::vector<uint8_t>& f) {
  constexpr uint8_t source_v4[4] = {10, 0, 0, 1};
  constexpr uint8_t source_v6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (f.size() < 14 || !std::equal(nexthop_mac, nexthop_mac + 6, f.begin())) return false;
  const uint32_t type = be16(&f[12]);
  if (type == 0x0800) return f.size() >= 34 && std::equal(source_v4, source_v4 + 4, f.begin() + 26);
  if (type == 0x86dd) return f.size() >= 54 && std::equal(source_v6, source_v6 + 16, f.begin() + 22);
  return false;
}

// An encapsulated frame (towards the next hop): outer lengths agree with the frame, and an
// IPv4 outer header sums to 0xffff.
void check_encapsulated(const std::vector<uint8_t>& f) {
  if (f.size() < 14) fail("transmitted frame shorter than an Ethernet header");
  const uint32_t type = be16(&f[12]);
  const uint8_t* ip = f.data() + 14;
  const size_t room = f.size() - 14;
  if (type == 0x0800) {
    if (room < 20 || (ip[0] >> 4) != 4) fail("encapsulated IPv4 frame without an IPv4 header");
    const size_t ihl = size_t{ip[0] & 15u} * 4;
    const uint32_t total = be16(ip + 2);
    if (ihl != 20 || total != room) fail("outer IPv4 total length disagrees with the frame");
    uint32_t sum = 0;
    for (size_t i = 0; i < ihl; i += 2) sum += be16(ip + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    if (sum != 0xffff) fail("outer IPv4 header checksum is wrong");
    if (ip[9] == 17 && (room < 28 || be16(ip + 24) != total - 20))
      fail("outer UDP length disagrees with the IPv4 packet");
  } else if (type == 0x86dd) {
    if (room < 40 || (ip[0] >> 4) != 6) fail("encapsulated IPv6 frame without an IPv6 header");
    if (be16(ip + 4) + 40u != room) fail("outer IPv6 payload length disagrees with the frame");
    if (ip[6] == 17) {
      if (room < 48 || be16(ip + 44) != room - 40)
        fail("outer UDP length disagrees with the IPv6 packet");
      // Mandatory over IPv6 (RFC 8200): a receiver drops a datagram whose checksum is wrong.
      uint32_t sum = 17 + static_cast<uint32_t>(room - 40);  // pseudo-header: next header, length
      for (size_t i = 8; i < 40; i += 2) sum += be16(ip + i);  // source and destination
      for (size_t i = 40; i + 1 < room; i += 2) sum += be16(ip + i);
      if ((room - 40) % 2) sum += uint32_t{ip[room - 1]} << 8;
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      if (sum != 0xffff || be16(ip + 46) == 0) fail("outer UDP checksum over IPv6 is wrong");
    }
  } else {
    fail("encapsulated frame is neither IPv4 nor IPv6");
  }
}

test::dataplane_harness* harness = nullptr;
config::daemon_config current;      // what the harness last published
config::daemon_config original;     // the pools before any removal
unsigned baseline_in_use = 0;
uint64_t frames_sent = 0, frames_back = 0;  // over the whole run
const bool verbose = std::getenv("TANDEM_FUZZ_VERBOSE") != nullptr;  // per input: what happened

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  auto cfg = config::parse_config(fuzz_config, "worker-fuzz.yaml");
  if (!cfg.ok()) fail("config: " + cfg.error_message());
  // One worker for the whole run, like a daemon: its flow table carries state across inputs.
  current = original = *cfg;
  harness = new test::dataplane_harness(*cfg, 4096);
  baseline_in_use = test::mbufs_in_use(harness->pool());
  // Stop the worker's lcore before static destructors run under it.
  std::atexit([] { delete harness; });
  return 0;
}

namespace {

// Applies one control-plane record and publishes the result (the worker has seen it on return).
void apply_control(uint8_t kind, const uint8_t* b, size_t n) {
  auto byte = [&](size_t i) -> uint32_t { return i < n ? b[i] : 0; };
  runtime_state& st = harness->state();
  switch (kind % 4) {
    case 1: {  // switch, the old colour's drain deadline already passed
      config::service& svc = current.services[byte(0) % current.services.size()];
      const colour old = svc.active;
      svc.active = other(old);
      constexpr drain_action actions[3] = {drain_action::keep, drain_action::expire,
                                           drain_action::reset};
      st.flushes[svc.name][static_cast<size_t>(old)] =
          colour_flush{st.next_generation, harness->now_ms(), byte(2), actions[byte(1) % 3]};
      break;
    }
    case 2: {  // a backend marked down by health checks, or up again
      const uint32_t id = byte(0) % 8;
      if (!st.down.erase(id)) st.down.insert(id);
      break;
    }
    case 3: {  // the first blue backend leaves its pool, or comes back
      const size_t i = byte(0) % current.services.size();
      auto& pool = current.services[i].blue;
      const auto& first = original.services[i].blue.front();
      if (!pool.empty() && pool.front().address == first.address)
        pool.erase(pool.begin());
      else
        pool.insert(pool.begin(), first);
      break;
    }
    default:
      return;
  }
  harness->publish(current);
}

struct totals {
  uint64_t rx, tx, drops, resets;
};
totals read_totals() {
  const worker_counters& c = harness->counters();
  return {__atomic_load_n(&c.rx_packets, __ATOMIC_RELAXED),
          __atomic_load_n(&c.tx_packets, __ATOMIC_RELAXED), total_drops(c),
          __atomic_load_n(&c.drain_resets, __ATOMIC_RELAXED)};
}

void check_out(const std::vector<std::vector<uint8_t>>& out) {
  frames_back += out.size();
  for (const auto& f : out)
    if (is_encapsulated(f)) check_encapsulated(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::vector<uint8_t>> frames;
  size_t pos = 0, records = 0;
  auto flush_frames = [&] {
    if (frames.empty()) return;
    frames_sent += frames.size();
    const totals before = read_totals();
    const auto out = harness->exchange(frames);
    const uint64_t rx = read_totals().rx - before.rx;
    if (rx != frames.size())
      fail("worker received " + std::to_string(rx) + " of " + std::to_string(frames.size()));
    if (verbose)
      std::printf("frames %zu: back %zu (%ld encapsulated)\n", frames.size(), out.size(),
                  static_cast<long>(std::count_if(out.begin(), out.end(), is_encapsulated)));
    check_out(out);
    frames.clear();
  };
  while (pos + 3 <= size && records++ < 64) {
    const uint8_t kind = data[pos];
    const size_t len = std::min<size_t>(be16(data + pos + 1), size - pos - 3);
    const uint8_t* payload = data + pos + 3;
    pos += 3 + len;
    if (kind % 4 == 0) {
      frames.emplace_back(payload, payload + std::min<size_t>(len, 1600));
    } else {
      flush_frames();
      apply_control(kind, payload, len);
    }
  }
  flush_frames();

  // Drain resets go out whenever the worker's sweep reaches a flow, not only inside an
  // exchange: collect until the counts settle (a real leak or loss does not settle). Settled:
  // no mbuf in use, every frame sent came back, and nothing changed over a millisecond (a reset
  // the worker is sending bumps its counters a moment after its frames reach the ring).
  totals t{};
  unsigned in_use = 0;
  bool settled = false;
  for (int tries = 0; tries < 50 && !settled; ++tries) {
    check_out(harness->exchange({}));
    in_use = test::mbufs_in_use(harness->pool());
    t = read_totals();
    rte_delay_us_sleep(1'000);
    const totals again = read_totals();
    settled = in_use == baseline_in_use && t.tx == frames_back && again.tx == t.tx &&
              again.drops == t.drops && again.resets == t.resets &&
              test::mbufs_in_use(harness->pool()) == baseline_in_use;
    if (!settled) rte_delay_us_sleep(10'000);
  }
  if (verbose)
    std::printf("totals: received %lu, sent %lu, dropped %lu, drain resets %lu\n",
                static_cast<unsigned long>(t.rx), static_cast<unsigned long>(t.tx),
                static_cast<unsigned long>(t.drops), static_cast<unsigned long>(t.resets));
  if (t.rx != frames_sent)
    fail("worker received " + std::to_string(t.rx) + " frames, " + std::to_string(frames_sent) +
         " sent");
  if (t.tx != frames_back)
    fail("tx counter " + std::to_string(t.tx) + " but " + std::to_string(frames_back) +
         " frames came back");
  if (t.tx + t.drops < t.rx || t.tx + t.drops > t.rx + 2 * t.resets)
    fail("frames neither sent nor counted as dropped: received " + std::to_string(t.rx) +
         ", sent " + std::to_string(t.tx) + ", dropped " + std::to_string(t.drops) +
         ", drain resets " + std::to_string(t.resets));
  if (in_use != baseline_in_use)
    fail("mbufs in use " + std::to_string(in_use) + " after the exchange, " +
         std::to_string(baseline_in_use) + " at the start: leaked");
  return 0;
}
