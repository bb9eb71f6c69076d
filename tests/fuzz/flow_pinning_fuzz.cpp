// Fuzz target for invariant 1: no established flow changes backend because of a switch, a
// rollback, a canary or segment change, a preview listener, or an edit of a pool (members
// added or removed, weights, admin states). A backend that is down (or in maintenance) and a
// drain deadline that passed with action expire are the only exceptions; with action reset,
// both ends get resets and the flow stays pinned, closed. The target plays TCP and UDP packets
// of 20 flows through the real worker loop (its own lcore, net_ring port), changes the control
// plane between them, and checks every packet against a model of the pins the worker must keep:
//
// - a packet of a pinned flow goes to the pinned backend while that backend is available, and
//   otherwise to a backend that takes new flows in the flow's own colour (then pinned there);
// - a packet of a flow with no pin, and a SYN that restarts one (port reuse after FIN or RST, or
//   a colour the client would no longer choose), goes to a backend that takes new flows in the
//   colour the client chooses now (segments, canary cohort, preview listener, active colour);
// - a packet is dropped only when no backend of that colour takes new flows;
// - a reset for a flow that is not pinned is forwarded but not tracked.
//
// Flows: 0-9 web (IPv4, VIP 198.51.100.10:80), 10-11 web's preview listener
// (198.51.100.11:8080), 12-15 web6 (IPv6, [2001:db8::10]:443), 16-19 dns (UDP,
// 198.51.100.53:53). Client addresses change with every input, so the flows of one input never
// meet an entry of an earlier one, and every input starts from the same configuration.
//
// Input: records of 3 bytes (op, a, b), at most 256. Even op: a packet of flow a % 20 with TCP
// flags b & 0x3f if b & 0x80, else one of SYN, ACK, PSH|ACK, FIN|ACK, RST, RST|ACK, SYN|ACK,
// FIN (b & 7). Odd op, by (op >> 1) % 8, for service s = a % 3 (web, web6, dns), colour
// (a >> 2) & 1 and backend n = b % 6 + 1: 0 switch s (b % 4: the old colour drains with action
// 0 keep, 1 expire with the deadline passed, 2 expire a minute from now, 3 reset with the
// deadline passed), 1 canary of s to (b % 11) * 1000 basis points, 2 toggle a segment rule of s
// to colour b & 1, 3 add backend n to (or remove it from) the colour's pool, 4 set its weight to
// (b >> 3) % 4, 5 set its admin state to (b >> 3) % 3 (ready, drain, maint), 6 mark it down (or
// up again), 7 send the packets so far, queued all at once (many bursts in one poll) when b is
// odd. Packets are sent before every control change.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "control/config.h"
#include "dataplane/flow_hash.h"
#include "tests/support/dataplane_harness.h"
#include "tests/support/packet_builder.h"

namespace {

using namespace tandem;

constexpr std::string_view fuzz_config = R"(dataplane:
  timeouts: {tcp_syn: 2s, tcp_established: 2s, tcp_closing: 2s, udp: 2s}
services:
  - name: web
    vip: 198.51.100.10
    protocol: tcp
    port: 80
    forwarding: l2
    maglev_size: 1009
    preview: {vip: 198.51.100.11, port: 8080}
    pools:
      blue:
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01"}
        - {address: 10.1.0.2, mac: "02:00:00:00:01:02"}
        - {address: 10.1.0.3, mac: "02:00:00:00:01:03"}
        - {address: 10.1.0.4, mac: "02:00:00:00:01:04"}
      green:
        - {address: 10.2.0.1, mac: "02:00:00:00:02:01"}
        - {address: 10.2.0.2, mac: "02:00:00:00:02:02"}
        - {address: 10.2.0.3, mac: "02:00:00:00:02:03"}
  - name: web6
    vip: "2001:db8::10"
    protocol: tcp
    port: 443
    forwarding: l2
    maglev_size: 1009
    pools:
      blue:
        - {address: "fd00:1:0::1", mac: "02:00:00:00:01:15"}
        - {address: "fd00:1:0::2", mac: "02:00:00:00:01:16"}
      green:
        - {address: "fd00:1:1::1", mac: "02:00:00:00:02:15"}
  - name: dns
    vip: 198.51.100.53
    protocol: udp
    port: 53
    forwarding: l2
    maglev_size: 1009
    pools:
      blue:
        - {address: 10.3.0.1, mac: "02:00:00:00:01:29"}
        - {address: 10.3.0.2, mac: "02:00:00:00:01:2a"}
      green:
        - {address: 10.4.0.1, mac: "02:00:00:00:02:29"}
)";
// (The MACs above follow backend_ref's numbering: 02:00:00:00:CC:NN, CC 01 blue / 02 green,
// NN = 20 * service + n.)

constexpr size_t flow_count = 20;
constexpr uint32_t timeout_ms = 2'000;  // every state's idle timeout, as configured above

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "flow_pinning_fuzz: %s\n", what.c_str());
  std::abort();
}

// A backend of the model: service index (0 web, 1 web6, 2 dns), colour, n (1-6).
struct backend_ref {
  int svc = -1;
  colour c = colour::blue;
  int n = 0;
  friend bool operator==(const backend_ref&, const backend_ref&) = default;
};

std::string describe(const backend_ref& b) {
  static const char* names[] = {"web", "web6", "dns"};
  if (b.svc < 0) return "(none)";
  return std::string(names[b.svc]) + "/" + colour_name(b.c) + "/" + std::to_string(b.n);
}

ip_address backend_address(const backend_ref& b) {
  const int c = b.c == colour::blue ? 0 : 1;
  switch (b.svc) {
    case 0: return test::addr("10." + std::to_string(1 + c) + ".0." + std::to_string(b.n));
    case 1: return test::addr("fd00:1:" + std::to_string(c) + "::" + std::to_string(b.n));
    default: return test::addr("10." + std::to_string(3 + c) + ".0." + std::to_string(b.n));
  }
}

config::backend make_backend(const backend_ref& b) {
  config::backend be;
  be.address = backend_address(b);
  be.mac = test::backend_mac(b.c, 20 * b.svc + b.n);
  return be;
}

std::optional<backend_ref> backend_of_frame(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return std::nullopt;
  const auto [c, nn] = test::decode_backend_mac(f.data());
  if (c < 0 || nn / 20 > 2 || nn % 20 < 1 || nn % 20 > 6) return std::nullopt;
  return backend_ref{nn / 20, c == 0 ? colour::blue : colour::green, nn % 20};
}

// Where a frame's L4 header starts and its protocol (untagged IPv4 or IPv6, no extension
// headers: what this target sends and the worker's resets are).
struct l4_header {
  size_t offset;
  uint8_t proto;
};
std::optional<l4_header> l4_of_frame(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return std::nullopt;
  const uint32_t type = uint32_t{f[12]} << 8 | f[13];
  if (type == 0x0800 && f.size() >= 34) return l4_header{14 + size_t{f[14] & 15u} * 4, f[23]};
  if (type == 0x86dd && f.size() >= 54) return l4_header{54, f[20]};
  return std::nullopt;
}

// The serial number the packet carries (TCP sequence number, or the UDP payload).
std::optional<uint32_t> serial_of_frame(const std::vector<uint8_t>& f) {
  const auto l4 = l4_of_frame(f);
  if (!l4) return std::nullopt;
  const size_t at = l4->offset + (l4->proto == 6 ? 4 : 8);
  if (f.size() < at + 4) return std::nullopt;
  return uint32_t{f[at]} << 24 | uint32_t{f[at + 1]} << 16 | uint32_t{f[at + 2]} << 8 | f[at + 3];
}

struct flow_def {
  int svc;        // 0 web, 1 web6, 2 dns
  bool preview;   // web's preview listener
};
flow_def flow_of(size_t f) {
  if (f < 10) return {0, false};
  if (f < 12) return {0, true};
  if (f < 16) return {1, false};
  return {2, false};
}

// What the worker must remember about a flow.
struct pin {
  bool tracked = false;
  backend_ref backend;
  colour c = colour::blue;
  tcp_state state = tcp_state::empty;
  uint32_t generation = 0;  // the generation it was pinned in (drain flushes are by generation)
};

tcp_state next_state(tcp_state s, uint8_t flags) {
  if (flags & 0x04) return tcp_state::closed;
  if (flags & 0x01) return s == tcp_state::closed ? s : tcp_state::closing;
  if (s == tcp_state::syn_seen && (flags & 0x12) == 0x10) return tcp_state::established;
  return s;
}

test::dataplane_harness* harness = nullptr;
config::daemon_config original;
uint32_t input_number = 0;
uint64_t table_full_events = 0;  // the worker's evictions + failed inserts so far
// The table holds 2048 slots, and every input starts by topping it up to 80 % with UDP flows
// of its own (unchecked; the same tuples each time, so they stay while earlier inputs' flows
// time out): the input's inserts then often find both buckets full and move residents along
// their other buckets, so entries change place between the lookups of one burst. (Not 90 %: the
// table stops moving entries at 87.5 % and only evicts.)
constexpr size_t table_slots = 2048;
constexpr uint32_t ballast_target = table_slots * 8 / 10;
std::vector<std::vector<uint8_t>> ballast;
uint32_t ballast_sent = 0;  // by the last input: the first ballast_sent of `ballast`
const bool verbose = std::getenv("TANDEM_FUZZ_VERBOSE") != nullptr;

int64_t flows_in_table() {
  int64_t n = 0;
  for (uint16_t id = 0; id < 3; ++id)
    n += harness->live_flows(id, colour::blue) + harness->live_flows(id, colour::green);
  return n;
}

// The state of one input: the configuration now, the model's pins, the packets not yet sent.
struct run {
  config::daemon_config cfg = original;
  std::array<pin, flow_count> pins{};
  struct packet {
    size_t flow;
    uint8_t flags;
    uint32_t serial;
  };
  std::vector<packet> pending;
  std::vector<std::vector<uint8_t>> frames;
  uint32_t serial = 0;
  uint32_t started_ms = 0;
  uint64_t checked = 0;
  bool checking = true;  // false once the table evicted or refused a flow (see send)

  std::string client(size_t f) const {
    const uint32_t k = input_number;
    if (flow_of(f).svc == 1) {
      char text[64];
      std::snprintf(text, sizeof text, "2001:db8:c:%zx::%x:%x", f - 12, k >> 16, k & 0xffff);
      return text;
    }
    return "10." + std::to_string(f) + "." + std::to_string((k >> 8) & 0xff) + "." +
           std::to_string(k & 0xff);
  }
  uint16_t client_port(size_t f) const {
    return flow_of(f).svc == 1 ? static_cast<uint16_t>(1024 + f)
                               : static_cast<uint16_t>(1024 + ((input_number >> 16) & 0x3fff));
  }

  const config::backend* member(const backend_ref& b) const {
    const ip_address a = backend_address(b);
    for (const config::backend& m : cfg.services[b.svc].pool(b.c))
      if (m.address == a) return &m;
    return nullptr;
  }
  bool down(const backend_ref& b) const {
    const auto id =
        harness->state().registry.find(cfg.services[b.svc].name, b.c, backend_address(b));
    return id && harness->state().down.contains(*id);
  }
  // A flow pinned to b stays there (drain and weight 0 keep flows; maintenance does not).
  bool keeps_flows(const backend_ref& b) const {
    const config::backend* m = member(b);
    return !down(b) && !(m != nullptr && m->state == config::backend_admin_state::maint);
  }
  bool takes_new(const backend_ref& b) const {
    const config::backend* m = member(b);
    return m != nullptr && m->weight > 0 && m->state == config::backend_admin_state::ready &&
           !down(b);
  }
  bool colour_takes_new(int svc, colour c) const {
    for (int n = 1; n <= 6; ++n)
      if (takes_new({svc, c, n})) return true;
    return false;
  }
  // The colour a new connection of flow f chooses now (choose_colour's rules).
  colour choice(size_t f) const {
    const config::service& s = cfg.services[flow_of(f).svc];
    if (flow_of(f).preview) return other(s.active);
    const ip_address src = test::addr(client(f));
    for (const config::segment& r : s.segments)
      if (src.in_prefix(r.prefix.address, r.prefix.length)) return r.to;
    if (s.canary_basis_points != 0 && hash_client(src) % 10000u < s.canary_basis_points)
      return other(s.active);
    return s.active;
  }

  void add_packet(size_t f, uint8_t flags) {
    const flow_def d = flow_of(f);
    test::frame_spec spec;
    spec.src = client(f);
    spec.src_port = client_port(f);
    const uint32_t s = serial++;
    if (d.svc == 2) {
      spec.dst = "198.51.100.53";
      spec.dst_port = 53;
      spec.proto = 17;
      spec.payload = {static_cast<uint8_t>(s >> 24), static_cast<uint8_t>(s >> 16),
                      static_cast<uint8_t>(s >> 8), static_cast<uint8_t>(s)};
      flags = 0;
    } else {
      spec.dst = d.svc == 1 ? "2001:db8::10" : d.preview ? "198.51.100.11" : "198.51.100.10";
      spec.dst_port = d.svc == 1 ? 443 : d.preview ? 8080 : 80;
      spec.tcp_flags = flags;
      spec.seq = s;
      spec.ack = (flags & 0x10) ? 7777 : 0;
    }
    pending.push_back({f, flags, s});
    frames.push_back(test::build_frame(spec));
  }

  // Sends the pending packets and checks each against the model, in order.
  void send(bool queued) {
    if (pending.empty()) return;
    const auto out = queued ? harness->exchange_queued(frames) : harness->exchange(frames);
    // Flows idle past their timeout may legitimately lose their pin: an input this slow (a
    // stalled machine) is not checked. Nor is the rest of an input once the table evicted a
    // flow or refused one (it is small, so that inserts move entries between buckets): the
    // model cannot tell which flow that was.
    const worker_counters& wc = harness->counters();
    const uint64_t full = __atomic_load_n(&wc.evictions, __ATOMIC_RELAXED) +
                          __atomic_load_n(&wc.failed_inserts, __ATOMIC_RELAXED);
    if (full != table_full_events) checking = false;
    table_full_events = full;
    const bool in_time = checking && harness->now_ms() - started_ms < timeout_ms / 2;
    std::map<uint32_t, backend_ref> got;
    for (const auto& f : out) {
      const auto s = serial_of_frame(f);
      const auto b = backend_of_frame(f);
      if (!s || !b) fail("a transmitted frame that is not one of ours");
      if (!got.emplace(*s, *b).second) fail("packet " + std::to_string(*s) + " sent twice");
    }
    for (const packet& p : pending) {
      const auto it = got.find(p.serial);
      const std::optional<backend_ref> to =
          it == got.end() ? std::nullopt : std::optional<backend_ref>(it->second);
      if (in_time) check(p, to);
    }
    pending.clear();
    frames.clear();
  }

  void check(const packet& p, const std::optional<backend_ref>& to) {
    ++checked;
    const flow_def d = flow_of(p.flow);
    const bool tcp = d.svc != 2;
    const bool syn = tcp && (p.flags & 0x12) == 0x02;
    pin& pn = pins[p.flow];
    const std::string what = "flow " + std::to_string(p.flow) + " packet " +
                             std::to_string(p.serial) + " (flags " + std::to_string(p.flags) +
                             ") went to " + (to ? describe(*to) : "nowhere");
    if (verbose) std::printf("%s\n", what.c_str());
    const colour chosen = choice(p.flow);
    const bool restart = pn.tracked && syn &&
                         (pn.state == tcp_state::closing || pn.state == tcp_state::closed ||
                          pn.c != chosen);
    if (pn.tracked && !restart) {
      if (keeps_flows(pn.backend)) {
        if (!to || !(*to == pn.backend))
          fail(what + ", but it is pinned to " + describe(pn.backend) + ", which keeps its flows");
      } else if (!colour_takes_new(d.svc, pn.c)) {
        if (to)
          fail(what + ": pinned to unavailable " + describe(pn.backend) + " and no backend of " +
               colour_name(pn.c) + " takes flows, so it should have been dropped");
        return;  // dropped; the entry keeps its backend
      } else {
        if (!to || to->svc != d.svc || to->c != pn.c || !takes_new(*to))
          fail(what + ": its backend " + describe(pn.backend) +
               " is unavailable, so it belongs on a backend of " + colour_name(pn.c) +
               " that takes new flows");
        pn.backend = *to;
      }
      if (tcp) pn.state = next_state(pn.state, p.flags);
      return;
    }
    // A new flow (or a restarted one): the colour the client chooses now.
    if (restart) pn.tracked = false;
    if (!colour_takes_new(d.svc, chosen)) {
      if (to) fail(what + ", but no backend of " + colour_name(chosen) + " takes new flows");
      return;
    }
    if (!to || to->svc != d.svc || to->c != chosen || !takes_new(*to))
      fail(what + ", but a new flow belongs on a backend of " + colour_name(chosen) +
           " that takes new flows");
    if (tcp && !syn && (p.flags & 0x04)) return;  // a reset for an unknown flow: not tracked
    pn.tracked = true;
    pn.backend = *to;
    pn.c = chosen;
    pn.generation = harness->state().next_generation - 1;  // the one the packet saw
    pn.state = !tcp ? tcp_state::udp
               : syn ? tcp_state::syn_seen
                     : next_state(tcp_state::established, p.flags);
  }

  // Applies one control change (packets already sent); an invalid result is skipped.
  void control(uint8_t kind, uint8_t a, uint8_t b) {
    const int svc = a % 3;
    const backend_ref be{svc, (a >> 2) & 1 ? colour::green : colour::blue, b % 6 + 1};
    config::daemon_config next = cfg;
    bool sweep_after = false;
    bool resets_after = false;
    config::service& s = next.services[static_cast<size_t>(svc)];
    auto find = [&]() -> config::backend* {
      for (config::backend& m : s.pool(be.c))
        if (m.address == backend_address(be)) return &m;
      return nullptr;
    };
    switch (kind) {
      case 0: {
        // A switch, with the old colour's drain as the controller sets it (start_drain): the
        // new colour stops draining, and the old one drains (b % 4) with action 0 keep, 1 expire
        // with the deadline passed (flows pinned to the old colour before this generation end:
        // the one exception besides a backend that is down), 2 expire a minute from now (they
        // stay), 3 reset with the deadline passed (TCP flows get resets and stay pinned, closed,
        // so what their ends still send reaches the old backend; UDP flows end).
        const colour old = s.active;
        s.active = other(old);
        s.canary_basis_points = 0;  // as the controller does: a switch is a full cut-over
        if (!config::validate(next).ok()) return;
        const uint32_t g = harness->state().next_generation;
        const uint32_t mode = b % 4u;
        auto& flush = harness->state().flushes[s.name];
        flush[static_cast<size_t>(s.active)] = colour_flush{};
        flush[static_cast<size_t>(old)] =
            mode == 0 ? colour_flush{}
                      : colour_flush{g, harness->now_ms() + (mode == 2 ? 60'000u : 0u), 0,
                                     mode == 3 ? drain_action::reset : drain_action::expire};
        if (mode == 1 || mode == 3) {
          sweep_after = true;
          resets_after = mode == 3;
          for (size_t f = 0; f < flow_count; ++f) {
            pin& pn = pins[f];
            if (flow_of(f).svc != svc || !pn.tracked || pn.c != old || pn.generation >= g)
              continue;
            if (mode == 3 && svc != 2)
              pn.state = tcp_state::closed;
            else
              pn.tracked = false;
          }
        }
        break;
      }
      case 1:
        s.canary_basis_points = (b % 11u) * 1000u;
        break;
      case 2:
        if (s.segments.empty()) {
          const char* prefix = svc == 1 ? "2001:db8:c::/63" : "10.0.0.0/13";  // flows 12-13, 0-7
          s.segments.push_back({*parse_ip_prefix(prefix), b & 1 ? colour::green : colour::blue});
        } else {
          s.segments.clear();
        }
        break;
      case 3: {
        auto& pool = s.pool(be.c);
        if (config::backend* m = find())
          pool.erase(pool.begin() + (m - pool.data()));
        else  // anywhere in the list: the order of a pool must not matter
          pool.insert(pool.begin() + static_cast<long>((b >> 3) % (pool.size() + 1)),
                      make_backend(be));
        break;
      }
      case 4:
        if (config::backend* m = find()) m->weight = (b >> 3) % 4u;
        break;
      case 5:
        if (config::backend* m = find())
          m->state = static_cast<config::backend_admin_state>((b >> 3) % 3u);
        break;
      case 6: {
        const auto id =
            harness->state().registry.find(s.name, be.c, backend_address(be));
        if (!id) return;
        auto& down = harness->state().down;
        if (!down.erase(*id)) down.insert(*id);
        break;
      }
      default:
        return;
    }
    if (!config::validate(next).ok()) return;
    const uint32_t gen = harness->state().next_generation;
    harness->publish(next);
    if (harness->state().next_generation == gen) fail("a valid configuration did not build");
    cfg = std::move(next);
    if (sweep_after) {
      // The worker applies a passed deadline to a flow at its next packet or when its sweep
      // (32 slots a loop while the deadline's window is open) reaches the flow. Let the sweep
      // cover the whole table, so that a later switch, which replaces this colour's deadline,
      // cannot spare a flow the model has already let go.
      const worker_counters& wc = harness->counters();
      const uint64_t loops = __atomic_load_n(&wc.loops, __ATOMIC_RELAXED);
      harness->wait_for([&] {
        return __atomic_load_n(&wc.loops, __ATOMIC_RELAXED) > loops + table_slots / 32 + 4;
      });
    }
    if (resets_after) {
      // The sweep's resets (to the clients and to the old backends; some for earlier inputs'
      // flows): bare TCP resets, taken off the ring so that only packets of ours follow.
      const auto resets = harness->exchange({});
      if (verbose) std::printf("drain resets: %zu frames\n", resets.size());
      for (const auto& f : resets) {
        const auto l4 = l4_of_frame(f);
        if (!l4 || l4->proto != 6 || f.size() < l4->offset + 20 || !(f[l4->offset + 13] & 0x04))
          fail("a frame other than a drain reset came out after a reset deadline passed");
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  auto cfg = config::parse_config(fuzz_config, "flow-pinning-fuzz.yaml");
  if (!cfg.ok()) fail("config: " + cfg.error_message());
  original = *cfg;
  // One worker for the whole run, like a daemon, with a small table (see ballast_flows).
  harness = new test::dataplane_harness(original, table_slots);
  for (uint32_t i = 0; i < ballast_target; ++i) {
    test::frame_spec spec;
    spec.src = "10.200." + std::to_string(i >> 8) + "." + std::to_string(i & 0xff);
    spec.src_port = 5353;
    spec.dst = "198.51.100.53";
    spec.dst_port = 53;
    spec.proto = 17;
    ballast.push_back(test::build_frame(spec));
  }
  std::atexit([] { delete harness; });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ++input_number;
  // Every input starts from the same control state.
  harness->state().down.clear();
  harness->state().flushes.clear();
  harness->publish(original);
  const int64_t others = std::max<int64_t>(0, flows_in_table() - ballast_sent);
  ballast_sent =
      static_cast<uint32_t>(std::clamp<int64_t>(ballast_target - others, 0, ballast_target));
  harness->exchange({ballast.begin(), ballast.begin() + ballast_sent});
  run r;
  r.started_ms = harness->now_ms();
  table_full_events = __atomic_load_n(&harness->counters().evictions, __ATOMIC_RELAXED) +
                      __atomic_load_n(&harness->counters().failed_inserts, __ATOMIC_RELAXED);
  size_t records = 0;
  for (size_t pos = 0; pos + 3 <= size && records < 256; pos += 3, ++records) {
    const uint8_t op = data[pos], a = data[pos + 1], b = data[pos + 2];
    if ((op & 1) == 0) {
      static constexpr uint8_t flags[8] = {0x02, 0x10, 0x18, 0x11, 0x04, 0x14, 0x12, 0x01};
      r.add_packet(a % flow_count, (b & 0x80) ? (b & 0x3f) : flags[b & 7]);
      continue;
    }
    const uint8_t kind = (op >> 1) % 8;
    if (kind == 7) {
      r.send(b & 1);
      continue;
    }
    r.send(false);
    r.control(kind, a, b);
  }
  r.send(false);
  if (verbose)
    std::printf("input %u: %lu packets checked%s; %ld flows in the table\n", input_number,
                static_cast<unsigned long>(r.checked),
                r.checking ? "" : " (then the table evicted or refused a flow)",
                static_cast<long>(flows_in_table()));
  return 0;
}
