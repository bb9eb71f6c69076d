// tandem_gen: tandem's own small traffic generator and checker. One lcore, one port (normally a
// net_memif client connected to tandemd's net_memif server). It plays TCP connection life
// cycles (SYN, data, FIN) for many flows towards one VIP and reads back what tandemd forwards:
// in l2 mode tandemd rewrites the destination MAC to the chosen backend's, and the benchmark
// configuration (perf/configs/bench.yaml) gives backends MACs 02:00:00:00:CC:NN (CC 01 blue,
// 02 green), so every returned packet tells which backend and colour it went to.
//
//   tandem_gen [EAL options] -- [options]      (perf/bench_memif.py runs it; see --help)
//
// Flows live in slots. `--flows N` long-lived slots send SYN then data forever; `--short-flows M`
// slots run connections of SYN, `--short-len K` data packets, FIN, then start the next
// connection with a new 5-tuple (source 198.18.0.0/15 + port). Slots take turns packet by
// packet; `--rate` paces the total, `--window` caps packets in flight (sent, not yet back).
//
// Checks, per connection: the backend of its first returned packet is remembered; any later
// packet of the same connection at another backend is a backend change (must be 0). With
// `--switch-every-ms T --ctl "tandemctl --socket S" --service NAME` it alternates
// `switch NAME --to <other colour>` and `rollback NAME` every T ms (run as child processes)
// and measures, per command, the time from starting the command to the first returned
// first-packet of a connection on the new colour.
//
// Prints `RESULT {json}`; exit 0, or 3 when --expect-clean is given and packets were lost or
// an established connection changed backend.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "perf/frame.h"
#include "perf/perf_common.h"

extern char** environ;

namespace {

using namespace tandem;

struct options {
  uint64_t flows = 1000;        // long-lived connections
  uint64_t short_flows = 0;     // slots running short connections
  uint32_t short_len = 20;      // data packets per short connection
  double rate = 0;              // packets per second, 0 = as fast as the window allows
  uint32_t window = 2048;       // packets in flight at most
  double seconds = 5;
  double warmup = 0.5;          // seconds not counted in the rate figures
  uint32_t switch_every_ms = 0;
  std::string ctl;              // command prefix, e.g. "tandemctl --socket /tmp/x.sock"
  std::string service = "web";
  std::string first_colour = "blue";  // the active colour when the run starts
  std::string vip = "198.51.100.10";
  uint16_t port = 80;
  bool expect_clean = false;
  double drain_wait = 1.0;      // seconds to wait for packets still in flight at the end
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "tandem_gen: %s\n"
               "usage: tandem_gen [EAL options] -- [--flows N] [--short-flows M] [--short-len K]\n"
               "  [--rate PPS] [--window W] [--seconds S] [--warmup S] [--vip A] [--port P]\n"
               "  [--switch-every-ms T --ctl \"tandemctl --socket PATH\" --service NAME\n"
               "   --first-colour blue|green] [--expect-clean]\n",
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
    if (a[i] == "--flows") o.flows = std::stoull(v());
    else if (a[i] == "--short-flows") o.short_flows = std::stoull(v());
    else if (a[i] == "--short-len") o.short_len = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--rate") o.rate = std::stod(v());
    else if (a[i] == "--window") o.window = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--seconds") o.seconds = std::stod(v());
    else if (a[i] == "--warmup") o.warmup = std::stod(v());
    else if (a[i] == "--switch-every-ms") o.switch_every_ms = static_cast<uint32_t>(std::stoul(v()));
    else if (a[i] == "--ctl") o.ctl = v();
    else if (a[i] == "--service") o.service = v();
    else if (a[i] == "--first-colour") o.first_colour = v();
    else if (a[i] == "--vip") o.vip = v();
    else if (a[i] == "--port") o.port = static_cast<uint16_t>(std::stoul(v()));
    else if (a[i] == "--expect-clean") o.expect_clean = true;
    else if (a[i] == "--drain-wait") o.drain_wait = std::stod(v());
    else if (a[i] == "-h" || a[i] == "--help") usage("help");
    else usage("unknown option " + a[i]);
  }
  if (o.flows + o.short_flows == 0) usage("no flows");
  if (o.switch_every_ms && o.ctl.empty()) usage("--switch-every-ms needs --ctl");
  if (o.first_colour != "blue" && o.first_colour != "green") usage("bad --first-colour");
  return o;
}

constexpr uint16_t unknown_backend = 0xffff;
constexpr uint32_t burst = 32;

// Per slot: the connection it is running and where that connection (and the one before it,
// whose last packets may still be in flight) went.
struct slot_state {
  uint32_t conn = 0;        // connection number within the slot
  uint32_t next = 0;        // next packet: 0 SYN, 1..len data, len+1 FIN
  uint16_t backend = unknown_backend;
  uint16_t prev_backend = unknown_backend;
};

// A control command in flight (a child tandemctl) and what it should change.
struct command {
  pid_t pid = -1;
  uint64_t start_tsc = 0;
  uint64_t done_tsc = 0;
  int exit_code = -1;
  int to_colour = 0;        // 1 blue, 2 green (as in the backend MACs)
  uint64_t first_new_tsc = 0;
  std::string text;
};

uint64_t to_us(uint64_t cycles, uint64_t hz) { return cycles * 1000000 / hz; }

pid_t spawn(const std::string& cmdline) {
  std::vector<std::string> words;
  std::istringstream in(cmdline);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  if (posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

volatile std::sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> eal_args, own;
  perf::split_args(argc, argv, eal_args, own);
  const options o = parse(own);
  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "tandem_gen: EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (rte_eth_dev_count_avail() < 1) usage("no port (give --vdev net_memif0,role=client,...)");
  const uint16_t port = 0;
  rte_mempool* pool = rte_pktmbuf_pool_create("gen_mbufs", 16383, 256, 0,
                                              RTE_PKTMBUF_HEADROOM + 128,
                                              static_cast<int>(rte_socket_id()));
  if (pool == nullptr) usage(std::string("mempool: ") + rte_strerror(rte_errno));
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
      rte_eth_rx_queue_setup(port, 0, 2048, rte_eth_dev_socket_id(port), nullptr, pool) != 0 ||
      rte_eth_tx_queue_setup(port, 0, 2048, rte_eth_dev_socket_id(port), nullptr) != 0 ||
      rte_eth_dev_start(port) != 0)
    usage("cannot set up port 0");
  rte_eth_promiscuous_enable(port);

  const uint64_t hz = rte_get_tsc_hz();
  // Wait for the peer (memif connects asynchronously).
  for (uint64_t end = rte_rdtsc() + 20 * hz; rte_rdtsc() < end && !interrupted;) {
    rte_eth_link link{};
    rte_eth_link_get_nowait(port, &link);
    if (link.link_status == RTE_ETH_LINK_UP) break;
    rte_delay_ms(10);
  }
  {
    rte_eth_link link{};
    rte_eth_link_get_nowait(port, &link);
    if (link.link_status != RTE_ETH_LINK_UP) usage("port 0: link did not come up (is tandemd running?)");
  }

  uint8_t src_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
  uint8_t dst_mac[6];
  {
    rte_ether_addr m{};
    rte_eth_macaddr_get(port, &m);
    std::memcpy(src_mac, m.addr_bytes, 6);
    std::memset(dst_mac, 0xff, 6);  // tandemd's port is promiscuous; any destination does
    dst_mac[0] = 0x02;
  }
  uint32_t vip = 0;
  {
    unsigned b[4];
    if (std::sscanf(o.vip.c_str(), "%u.%u.%u.%u", &b[0], &b[1], &b[2], &b[3]) != 4)
      usage("--vip must be IPv4");
    vip = b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
  }

  const uint64_t nslots = o.flows + o.short_flows;
  // Connection numbers wrap so that flow indices stay inside the source range.
  const uint64_t max_index = uint64_t{perf::ports_per_client} * 131072;
  const uint64_t conn_wrap = max_index / nslots;
  std::vector<slot_state> slots(nslots);
  auto is_short = [&](uint64_t s) { return s >= o.flows; };
  // Stagger the short connections' phases so that new connections (SYNs) are spread evenly in
  // time instead of all slots opening and closing in lockstep. Their first connection starts
  // mid-flow (tandem picks it up as such); the warm-up covers that.
  for (uint64_t s = o.flows; s < nslots; ++s)
    slots[s].next = static_cast<uint32_t>((s - o.flows) * (o.short_len + 2) / o.short_flows);

  // Counters.
  uint64_t sent = 0, received = 0, tx_full = 0, unknown = 0, stale = 0, changes = 0;
  uint64_t conns_started = 0, conns_seen = 0, conns_finished = 0;
  uint64_t per_colour_new[3] = {0, 0, 0};
  uint64_t sent_measured = 0, received_measured = 0;
  std::vector<command> commands;
  int active_colour = o.first_colour == "blue" ? 1 : 2;
  bool next_is_switch = true;

  uint64_t cursor = 0;  // next slot to send for
  const uint64_t t_start = rte_rdtsc();
  const uint64_t t_measure = t_start + static_cast<uint64_t>(o.warmup * static_cast<double>(hz));
  const uint64_t t_end = t_measure + static_cast<uint64_t>(o.seconds * static_cast<double>(hz));
  uint64_t measure_sent0 = 0, measure_recv0 = 0;
  bool measuring = false;
  const double cycles_per_packet = o.rate > 0 ? static_cast<double>(hz) / o.rate : 0.0;
  double credit_tsc = static_cast<double>(t_start);
  uint64_t next_switch = o.switch_every_ms ? t_measure + o.switch_every_ms * hz / 1000 : UINT64_MAX;

  auto receive = [&](uint64_t now) {
    rte_mbuf* rx[burst];
    const uint16_t n = rte_eth_rx_burst(port, 0, rx, burst);
    for (uint16_t i = 0; i < n; ++i) {
      const uint8_t* f = rte_pktmbuf_mtod(rx[i], const uint8_t*);
      ++received;
      if (rte_pktmbuf_data_len(rx[i]) < perf::tcp64_len - 6 || f[0] != 0x02 || f[1] || f[2] ||
          f[3] || (f[4] != 1 && f[4] != 2)) {
        ++unknown;
        continue;
      }
      const uint16_t backend = static_cast<uint16_t>(f[4] << 8 | f[5]);
      const uint32_t sip = static_cast<uint32_t>(f[26]) << 24 | f[27] << 16 | f[28] << 8 | f[29];
      const uint16_t sport = static_cast<uint16_t>(f[34] << 8 | f[35]);
      uint64_t index;
      if (!perf::flow_index(sip, sport, index)) {
        ++unknown;
        continue;
      }
      const uint64_t s = index % nslots;
      const uint32_t conn = static_cast<uint32_t>(index / nslots);
      slot_state& st = slots[s];
      uint16_t* where = nullptr;
      if (conn == st.conn % conn_wrap) where = &st.backend;
      else if (conn == (st.conn + conn_wrap - 1) % conn_wrap) where = &st.prev_backend;
      if (where == nullptr) {
        ++stale;
        continue;
      }
      if (*where == unknown_backend) {
        *where = backend;
        ++conns_seen;
        ++per_colour_new[f[4]];
        // The first connection after a command that lands on that command's colour (commands
        // may overlap when one is slow; each waits for its own colour).
        for (auto& c : commands)
          if (c.first_new_tsc == 0 && c.to_colour == f[4] && c.start_tsc <= now) c.first_new_tsc = now;
      } else if (*where != backend) {
        ++changes;
      }
    }
    rte_pktmbuf_free_bulk(rx, n);
  };

  auto reap = [&](uint64_t now) {
    for (auto& c : commands) {
      if (c.pid <= 0 || c.done_tsc) continue;
      int status = 0;
      if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
        c.done_tsc = now;
        c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      }
    }
  };

  rte_mbuf* tx[burst];
  while (!interrupted) {
    const uint64_t now = rte_rdtsc();
    if (now >= t_end) break;
    if (!measuring && now >= t_measure) {
      measuring = true;
      measure_sent0 = sent;
      measure_recv0 = received;
    }
    receive(now);
    reap(now);

    if (now >= next_switch) {
      next_switch += o.switch_every_ms * hz / 1000;
      command c;
      const int to = active_colour == 1 ? 2 : 1;
      c.text = o.ctl + (next_is_switch ? " switch " + o.service + " --to " + (to == 1 ? "blue" : "green")
                                        : " rollback " + o.service);
      c.to_colour = to;
      c.start_tsc = rte_rdtsc();
      c.pid = spawn(c.text);
      commands.push_back(c);
      active_colour = to;
      next_is_switch = !next_is_switch;
    }

    // How many packets may go now: the window and the rate (at most 1 ms of catch-up).
    if (cycles_per_packet > 0 && static_cast<double>(now) - credit_tsc > static_cast<double>(hz / 1000))
      credit_tsc = static_cast<double>(now - hz / 1000);
    uint64_t allowed = sent - received < o.window ? o.window - (sent - received) : 0;
    if (cycles_per_packet > 0) {
      const double due = (static_cast<double>(now) - credit_tsc) / cycles_per_packet;
      if (due < 1) allowed = 0;
      else allowed = std::min<uint64_t>(allowed, static_cast<uint64_t>(due));
    }
    allowed = std::min<uint64_t>(allowed, burst);
    if (allowed == 0) continue;
    if (rte_pktmbuf_alloc_bulk(pool, tx, static_cast<unsigned>(allowed)) != 0) continue;
    for (uint64_t i = 0; i < allowed; ++i) {
      const uint64_t s = cursor;
      if (++cursor == nslots) cursor = 0;
      slot_state& st = slots[s];
      const bool shrt = is_short(s);
      uint8_t flags;
      if (st.next == 0) {
        flags = 0x02;  // SYN
        ++conns_started;
      } else if (shrt && st.next == o.short_len + 1) {
        flags = 0x11;  // FIN|ACK
      } else {
        flags = 0x18;  // PSH|ACK
      }
      const uint64_t index = (st.conn % conn_wrap) * nslots + s;
      perf::tcp4_spec spec{dst_mac, src_mac, perf::client_ip(index), vip, perf::client_port(index),
                           o.port, flags, 1000 + st.next, flags == 0x02 ? 0u : 5000u,
                           static_cast<uint16_t>(st.next)};
      // A fresh mbuf from this pool always has room for 60 bytes.
      auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(tx[i], perf::tcp64_len));
      if (d != nullptr) perf::build_tcp4(spec, d);
      if (shrt && st.next == o.short_len + 1) {
        // Next connection in this slot: a new 5-tuple.
        ++conns_finished;
        st.conn = static_cast<uint32_t>((st.conn + 1) % conn_wrap);
        st.next = 0;
        st.prev_backend = st.backend;
        st.backend = unknown_backend;
      } else {
        ++st.next;
        if (!shrt && st.next > 1000000) st.next = 1;  // long-lived: data forever
      }
    }
    const uint16_t n = rte_eth_tx_burst(port, 0, tx, static_cast<uint16_t>(allowed));
    // Packets the port did not take are not counted as sent (nor lost); their slots have moved
    // on, so the connection skips a packet, which tandem does not check.
    if (n < allowed) {
      tx_full += allowed - n;
      rte_pktmbuf_free_bulk(tx + n, static_cast<unsigned>(allowed - n));
    }
    sent += n;
    if (cycles_per_packet > 0) credit_tsc += cycles_per_packet * static_cast<double>(allowed);
  }
  const uint64_t t_stop = rte_rdtsc();
  sent_measured = sent - measure_sent0;
  received_measured = received - measure_recv0;
  // Let what is in flight come back, and the last command finish.
  for (uint64_t end = rte_rdtsc() + static_cast<uint64_t>(o.drain_wait * static_cast<double>(hz));
       rte_rdtsc() < end;) {
    const uint64_t now = rte_rdtsc();
    receive(now);
    reap(now);
    if (received >= sent) {
      bool pending = false;
      for (auto& c : commands) pending |= c.pid > 0 && !c.done_tsc;
      if (!pending) break;
    }
  }
  for (auto& c : commands) {
    if (c.pid > 0 && !c.done_tsc) {
      int status = 0;
      waitpid(c.pid, &status, 0);
      c.done_tsc = rte_rdtsc();
      c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    }
  }

  const double secs = static_cast<double>(t_stop - std::max(t_measure, t_start)) / static_cast<double>(hz);
  const uint64_t lost = sent > received ? sent - received : 0;
  std::vector<double> cmd_ms, first_new_ms;
  uint32_t failed_cmds = 0, no_new_flow = 0;
  std::string detail;  // per command: [done ms, first new flow ms] after its start
  for (auto& c : commands) {
    if (c.exit_code != 0) ++failed_cmds;
    cmd_ms.push_back(static_cast<double>(to_us(c.done_tsc - c.start_tsc, hz)) / 1000.0);
    if (c.first_new_tsc) first_new_ms.push_back(static_cast<double>(to_us(c.first_new_tsc - c.start_tsc, hz)) / 1000.0);
    else ++no_new_flow;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s[%.2f,%.2f]", detail.empty() ? "" : ",", cmd_ms.back(),
                  c.first_new_tsc ? first_new_ms.back() : -1.0);
    detail += buf;
  }
  auto mx = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  std::printf(
      "RESULT {\"seconds\":%.3f,\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64
      ",\"tx_full\":%" PRIu64 ",\"sent_mpps\":%.4f,\"received_mpps\":%.4f,"
      "\"connections_started\":%" PRIu64 ",\"connections_seen\":%" PRIu64
      ",\"connections_finished\":%" PRIu64 ",\"new_on_blue\":%" PRIu64 ",\"new_on_green\":%" PRIu64
      ",\"backend_changes\":%" PRIu64 ",\"unknown\":%" PRIu64 ",\"stale\":%" PRIu64
      ",\"commands\":%zu,\"failed_commands\":%u,\"command_ms_median\":%.2f,\"command_ms_max\":%.2f,"
      "\"first_new_flow_ms_median\":%.2f,\"first_new_flow_ms_max\":%.2f,\"commands_without_new_flow\":%u,"
      "\"command_detail\":[%s]}\n",
      secs, sent, received, lost, tx_full, static_cast<double>(sent_measured) / secs / 1e6,
      static_cast<double>(received_measured) / secs / 1e6, conns_started, conns_seen, conns_finished,
      per_colour_new[1], per_colour_new[2], changes, unknown, stale, commands.size(), failed_cmds,
      perf::median(cmd_ms), mx(cmd_ms), perf::median(first_new_ms), mx(first_new_ms), no_new_flow, detail.c_str());
  std::fflush(stdout);
  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  rte_eal_cleanup();
  if (o.expect_clean && (lost != 0 || changes != 0 || failed_cmds != 0)) return 3;
  return 0;
}
