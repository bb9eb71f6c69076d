#include "control/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "dataplane/packet_parser.h"
#include "dataplane/worker_counters.h"

namespace tandem {

// --- histogram / writer -------------------------------------------------------------------------

void histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++count;
}

std::string prom_writer::format(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Shortest text that reads back exactly.
  for (int precision = 6; precision < 17; ++precision) {
    char shorter[64];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

std::string prom_writer::escape(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void prom_writer::family(const std::string& name, const char* type, const std::string& help) {
  family_ = name;
  type_ = type;
  help_ = help;
  header_written_ = false;
}

void prom_writer::header_once() {
  if (header_written_) return;
  header_written_ = true;
  out_ += "# HELP " + family_ + " " + help_ + "\n";
  out_ += "# TYPE " + family_ + " " + type_ + "\n";
}

void prom_writer::sample_as(const std::string& name, const labels& l, const std::string& value) {
  header_once();
  out_ += name;
  if (!l.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : l) {
      if (!first) out_ += ',';
      first = false;
      out_ += k + "=\"" + escape(v) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += value;
  out_ += '\n';
}

// --- rendering ----------------------------------------------------------------------------------

namespace {

using labels = prom_writer::labels;

const char* const bake_states[] = {"baking", "promoted", "rolled_back", "aborted"};

double healthy_ratio(const std::vector<metrics_snapshot::backend>& pool) {
  uint64_t up = 0, known = 0;
  for (const auto& b : pool) {
    if (b.admin_state == "maint" || b.health < 0) continue;
    ++known;
    up += b.health == 1;
  }
  return known ? static_cast<double>(up) / static_cast<double>(known) : 0.0;
}

}  // namespace

std::string render_metrics(const metrics_snapshot& s, const std::vector<const worker*>& workers,
                           uint32_t now_ms) {
  prom_writer w;
  auto clamp0 = [](int64_t v) { return v < 0 ? int64_t{0} : v; };

  w.family("tandem_build_info", "gauge", "tandemd build information (always 1).");
  w.sample({{"version", "0.1.0"}}, uint64_t{1});
  w.family("tandem_generation", "gauge", "Number of the table generation the workers use now.");
  w.sample({}, uint64_t{s.generation});
  w.family("tandem_generations_published_total", "counter",
           "Table generations published since tandemd started.");
  w.sample({}, s.generations_published);

  // --- per service and colour
  w.family("tandem_service_active", "gauge", "1 for the colour that takes new flows, else 0.");
  for (const auto& sv : s.services)
    for (colour c : {colour::blue, colour::green})
      w.sample({{"service", sv.name}, {"colour", colour_name(c)}}, uint64_t{sv.active == c});
  w.family("tandem_service_canary_ratio", "gauge",
           "Share of clients whose new flows go to the idle colour (0..1), by that colour.");
  for (const auto& sv : s.services)
    w.sample({{"service", sv.name}, {"colour", colour_name(other(sv.active))}},
             sv.canary_bp / 10000.0);

  auto per_colour = [&](const char* name, const char* type, const char* help, auto get) {
    w.family(name, type, help);
    for (const auto& sv : s.services)
      for (colour c : {colour::blue, colour::green}) {
        auto total = decltype(get(std::declval<const service_colour_counters&>())){0};
        for (const worker* wk : workers)
          total += get(wk->counters().services[sv.id][static_cast<size_t>(c)]);
        w.sample({{"service", sv.name}, {"colour", colour_name(c)}}, total);
      }
  };
  w.family("tandem_service_live_flows", "gauge", "Flow-table entries of the service and colour.");
  for (const auto& sv : s.services)
    for (colour c : {colour::blue, colour::green}) {
      int64_t total = 0;
      for (const worker* wk : workers)
        total += read_counter(wk->counters().services[sv.id][static_cast<size_t>(c)].live_flows);
      w.sample({{"service", sv.name}, {"colour", colour_name(c)}}, clamp0(total));
    }
  per_colour("tandem_service_new_flows_total", "counter", "Flows created, by colour.",
             [](const service_colour_counters& c) { return read_counter(c.new_flows); });
  per_colour("tandem_service_packets_total", "counter", "Packets forwarded, by colour.",
             [](const service_colour_counters& c) { return read_counter(c.packets); });
  per_colour("tandem_service_bytes_total", "counter", "Bytes forwarded, by colour.",
             [](const service_colour_counters& c) { return read_counter(c.bytes); });

  // --- per backend
  auto per_backend = [&](auto emit) {
    for (const auto& sv : s.services)
      for (colour c : {colour::blue, colour::green})
        for (const auto& b : sv.pools[static_cast<size_t>(c)])
          emit(sv, labels{{"service", sv.name}, {"colour", colour_name(c)}, {"backend", b.address}},
               b);
  };
  w.family("tandem_backend_up", "gauge",
           "1 when the backend passes its health checks (or its service has none), 0 when it is "
           "down or not checked yet.");
  per_backend([&](const auto&, const labels& l, const auto& b) {
    w.sample(l, uint64_t{b.checked_service ? b.health == 1 : b.health != 0});
  });
  w.family("tandem_backend_health_checks_total", "counter", "Health checks run, by result.");
  per_backend([&](const auto&, const labels& l, const auto& b) {
    if (!b.checked_service) return;
    labels ok = l, fail = l;
    ok.emplace_back("result", "success");
    fail.emplace_back("result", "failure");
    w.sample(ok, b.checks_ok);
    w.sample(fail, b.checks_failed);
  });
  w.family("tandem_backend_health_check_latency_seconds", "gauge",
           "Duration of the backend's last health check.");
  per_backend([&](const auto&, const labels& l, const auto& b) {
    if (b.checked_service && b.checks_ok + b.checks_failed > 0) w.sample(l, b.latency_s);
  });
  w.family("tandem_backend_weight", "gauge", "Configured weight (0 = takes no new flows).");
  per_backend([&](const auto&, const labels& l, const auto& b) { w.sample(l, uint64_t{b.weight}); });
  w.family("tandem_backend_maintenance", "gauge", "1 when the backend's admin state is maint.");
  per_backend([&](const auto&, const labels& l, const auto& b) {
    w.sample(l, uint64_t{b.admin_state == "maint"});
  });
  w.family("tandem_backend_packets_total", "counter", "Packets forwarded to the backend.");
  per_backend([&](const auto&, const labels& l, const auto& b) {
    uint64_t total = 0;
    for (const worker* wk : workers) total += read_counter(wk->backends().packets[b.id]);
    w.sample(l, total);
  });
  w.family("tandem_backend_live_flows", "gauge", "Flow-table entries pinned to the backend.");
  per_backend([&](const auto&, const labels& l, const auto& b) {
    int64_t total = 0;
    for (const worker* wk : workers) total += read_counter(wk->backends().live_flows[b.id]);
    w.sample(l, clamp0(total));
  });

  // --- per worker
  auto per_worker = [&](const char* name, const char* help, auto get) {
    w.family(name, "counter", help);
    for (const worker* wk : workers)
      w.sample({{"worker", std::to_string(wk->index())}}, uint64_t{get(wk->counters())});
  };
  per_worker("tandem_worker_rx_packets_total", "Packets received.",
             [](const worker_counters& c) { return read_counter(c.rx_packets); });
  per_worker("tandem_worker_rx_bytes_total", "Bytes received.",
             [](const worker_counters& c) { return read_counter(c.rx_bytes); });
  per_worker("tandem_worker_tx_packets_total", "Packets transmitted.",
             [](const worker_counters& c) { return read_counter(c.tx_packets); });
  w.family("tandem_worker_drops_total", "counter", "Packets dropped, by reason.");
  for (const worker* wk : workers)
    for (size_t r = 1; r < static_cast<size_t>(drop_reason::count_); ++r)
      w.sample({{"worker", std::to_string(wk->index())},
                {"reason", drop_reason_name(static_cast<drop_reason>(r))}},
               read_counter(wk->counters().drops[r]));
  per_worker("tandem_worker_evictions_total", "Flow-table entries evicted to make room.",
             [](const worker_counters& c) { return read_counter(c.evictions); });
  per_worker("tandem_worker_failed_inserts_total", "New flows that found no flow-table slot.",
             [](const worker_counters& c) { return read_counter(c.failed_inserts); });
  per_worker("tandem_worker_expired_total", "Flow-table entries expired by idle timeout.",
             [](const worker_counters& c) { return read_counter(c.expired); });
  per_worker("tandem_worker_rehashed_down_total",
             "Flows moved off a backend marked down by health checks.",
             [](const worker_counters& c) { return read_counter(c.rehashed_down); });
  per_worker("tandem_worker_midflow_pickups_total",
             "Non-SYN TCP packets without a flow entry, pinned to the current choice.",
             [](const worker_counters& c) { return read_counter(c.midflow_pickups); });
  per_worker("tandem_worker_drain_expired_total", "Flows removed at a drain deadline (expire).",
             [](const worker_counters& c) { return read_counter(c.drain_expired); });
  per_worker("tandem_worker_drain_resets_total", "Flows reset at a drain deadline (reset).",
             [](const worker_counters& c) { return read_counter(c.drain_resets); });
  std::vector<int64_t> entries;
  for (const worker* wk : workers) {
    int64_t total = 0;
    for (const auto& per_service : wk->counters().services)
      for (const auto& sc : per_service) total += read_counter(sc.live_flows);
    entries.push_back(clamp0(total));
  }
  w.family("tandem_worker_flow_table_entries", "gauge", "Entries in the worker's flow table.");
  for (size_t i = 0; i < workers.size(); ++i)
    w.sample({{"worker", std::to_string(workers[i]->index())}}, entries[i]);
  w.family("tandem_worker_flow_table_capacity", "gauge", "Slots in the worker's flow table.");
  for (const worker* wk : workers)
    w.sample({{"worker", std::to_string(wk->index())}}, uint64_t{wk->flows().capacity()});
  w.family("tandem_worker_flow_table_occupancy_ratio", "gauge",
           "Entries / slots of the worker's flow table (0..1).");
  for (size_t i = 0; i < workers.size(); ++i) {
    const double cap = static_cast<double>(workers[i]->flows().capacity());
    w.sample({{"worker", std::to_string(workers[i]->index())}},
             cap > 0 ? static_cast<double>(entries[i]) / cap : 0.0);
  }

  // --- releases
  w.family("tandem_switches_total", "counter",
           "Switch requests by result: ok, refused (too few healthy backends), error.");
  for (const auto& sv : s.services)
    for (const char* r : {"ok", "refused", "error"}) {
      auto it = sv.switches.find(r);
      w.sample({{"service", sv.name}, {"result", r}}, it == sv.switches.end() ? uint64_t{0} : it->second);
    }
  w.family("tandem_rollbacks_total", "counter",
           "Rollbacks by trigger (manual, auto = bake health, abort) and result (ok, error).");
  for (const auto& sv : s.services)
    for (const char* t : {"manual", "auto", "abort"})
      for (const char* r : {"ok", "error"}) {
        auto it = sv.rollbacks.find({t, r});
        w.sample({{"service", sv.name}, {"trigger", t}, {"result", r}},
                 it == sv.rollbacks.end() ? uint64_t{0} : it->second);
      }
  w.family("tandem_drain_in_progress", "gauge", "1 while a colour of the service drains.");
  for (const auto& sv : s.services) w.sample({{"service", sv.name}}, uint64_t{sv.draining});
  w.family("tandem_drain_remaining_flows", "gauge", "Flows left on the draining colour.");
  for (const auto& sv : s.services) {
    if (!sv.draining) continue;
    int64_t total = 0;
    for (const worker* wk : workers)
      total += read_counter(
          wk->counters().services[sv.id][static_cast<size_t>(sv.drain_colour)].live_flows);
    w.sample({{"service", sv.name}, {"colour", colour_name(sv.drain_colour)}}, clamp0(total));
  }
  w.family("tandem_drain_deadline_seconds", "gauge",
           "Seconds until the drain deadline (negative once it passed).");
  for (const auto& sv : s.services)
    if (sv.draining)
      w.sample({{"service", sv.name}, {"colour", colour_name(sv.drain_colour)}},
               ms_since(sv.drain_deadline_ms, now_ms) / 1000.0);
  w.family("tandem_drain_deadline_timestamp_seconds", "gauge",
           "Unix time of the drain deadline.");
  for (const auto& sv : s.services)
    if (sv.draining)
      w.sample({{"service", sv.name}, {"colour", colour_name(sv.drain_colour)}},
               sv.drain_deadline_unix);

  w.family("tandem_bake_state", "gauge",
           "1 for the state of the service's last bake window (baking, promoted, rolled_back, "
           "aborted), 0 for the others.");
  for (const auto& sv : s.services)
    if (sv.has_bake)
      for (const char* st : bake_states)
        w.sample({{"service", sv.name}, {"colour", colour_name(sv.bake_colour)}, {"state", st}},
                 uint64_t{sv.bake_state == st});
  auto per_bake = [&](const char* name, const char* help, auto get) {
    w.family(name, "gauge", help);
    for (const auto& sv : s.services)
      if (sv.has_bake)
        w.sample({{"service", sv.name}, {"colour", colour_name(sv.bake_colour)}}, get(sv));
  };
  per_bake("tandem_bake_elapsed_seconds", "Time since the bake window started (frozen at its end).",
           [&](const metrics_snapshot::service& sv) {
             const uint32_t ms = sv.bake_state == "baking"
                                     ? static_cast<uint32_t>(std::max(0, ms_since(now_ms, sv.bake_started_ms)))
                                     : sv.bake_elapsed_ms;
             return ms / 1000.0;
           });
  per_bake("tandem_bake_window_seconds", "Length of the bake window.",
           [](const metrics_snapshot::service& sv) { return sv.bake_window_ms / 1000.0; });
  per_bake("tandem_bake_min_healthy_ratio", "Healthy share below which the bake rolls back.",
           [](const metrics_snapshot::service& sv) { return sv.bake_min_healthy; });
  per_bake("tandem_bake_healthy_ratio", "Healthy share of the baking colour's checked backends.",
           [](const metrics_snapshot::service& sv) {
             return healthy_ratio(sv.pools[static_cast<size_t>(sv.bake_colour)]);
           });

  w.family("tandem_switch_publish_seconds", "histogram",
           "Time from a switch or rollback request to its generation being in use by every "
           "worker (build + publish + RCU grace period).");
  {
    uint64_t cumulative = 0;
    const histogram& h = s.switch_publish;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      w.sample_as("tandem_switch_publish_seconds_bucket", {{"le", prom_writer::format(h.bounds[i])}},
                  std::to_string(cumulative));
    }
    cumulative += h.counts.empty() ? 0 : h.counts.back();
    w.sample_as("tandem_switch_publish_seconds_bucket", {{"le", "+Inf"}}, std::to_string(cumulative));
    w.sample_as("tandem_switch_publish_seconds_sum", {}, prom_writer::format(h.sum));
    w.sample_as("tandem_switch_publish_seconds_count", {}, std::to_string(h.count));
  }
  w.family("tandem_hook_runs_total", "counter",
           "Hook runs by result: success, failure (exit status, timeout, HTTP error), dropped "
           "(queue full).");
  w.sample({{"result", "success"}}, s.hooks_ok);
  w.sample({{"result", "failure"}}, s.hooks_failed);
  w.sample({{"result", "dropped"}}, s.hooks_dropped);
  return w.take();
}

// --- HTTP server --------------------------------------------------------------------------------

namespace {

struct http_client {
  int fd = -1;
  std::string in;
  std::string out;
  size_t out_offset = 0;
  bool close_after_write = false;
  // After an answer that closes: our side is shut down and what the client still sends is read
  // and dropped until it closes too, so the kernel does not answer it with a reset that could
  // destroy the response before the client reads it.
  bool lingering = false;
  std::chrono::steady_clock::time_point last_activity;
};

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

bool is_token(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || std::strchr("()<>@,;:\\\"/[]?={}", c)) return false;
  return true;
}

std::string response(int code, const char* reason, const std::string& body, bool keep_alive,
                     const char* content_type = "text/plain; charset=utf-8",
                     const char* extra = "") {
  std::string r = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\n";
  r += std::string("Content-Type: ") + content_type + "\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += extra;
  r += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  r += "\r\n";
  r += body;
  return r;
}

// End of the request head ("\r\n\r\n" or a bare "\n\n"), or npos.
size_t head_end(const std::string& in, size_t& sep) {
  const size_t a = in.find("\r\n\r\n");
  const size_t b = in.find("\n\n");
  if (a == std::string::npos && b == std::string::npos) return std::string::npos;
  if (b == std::string::npos || (a != std::string::npos && a < b)) {
    sep = 4;
    return a;
  }
  sep = 2;
  return b;
}

}  // namespace

metrics_server::metrics_server(const metrics_exchange& exchange, std::vector<const worker*> workers,
                               const ms_clock& clock)
    : exchange_(exchange), workers_(std::move(workers)), clock_(clock) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

metrics_server::~metrics_server() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

status metrics_server::open(const ip_address& address, uint16_t port) {
  const bool v4 = address.is_v4();
  const std::string where = (v4 ? to_string(address) : "[" + to_string(address) + "]") + ":" +
                            std::to_string(port);
  listen_fd_ = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return make_error("metrics.listen: socket: " + std::string(std::strerror(errno)));
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    std::memcpy(&a->sin_addr, address.bytes + 12, 4);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    std::memcpy(&a->sin6_addr, address.bytes, 16);
    len = sizeof *a;
  }
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&ss), len) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    listen_fd_ = -1;
    return make_error("metrics.listen: cannot listen on " + where + ": " + std::strerror(err));
  }
  sockaddr_storage bound{};
  socklen_t bl = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bl);
  bound_port_ = ntohs(v4 ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                         : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return ok_status();
}

void metrics_server::start() {
  if (thread_.joinable() || listen_fd_ < 0) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void metrics_server::stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
}

std::string metrics_server::respond(const std::string& head, bool& keep_alive) {
  keep_alive = false;
  requests_.fetch_add(1, std::memory_order_relaxed);
  auto bad = [&](const std::string& why) {
    bad_requests_.fetch_add(1, std::memory_order_relaxed);
    return response(400, "Bad Request", "bad request: " + why + "\n", false);
  };
  // Request line: METHOD SP TARGET SP HTTP/1.x
  const size_t eol = head.find('\n');
  const std::string line = trim(head.substr(0, eol));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos || line.find(' ', sp2 + 1) != std::string::npos)
    return bad("malformed request line");
  const std::string method = line.substr(0, sp1);
  const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string version = line.substr(sp2 + 1);
  if (!is_token(method)) return bad("malformed method");
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return bad("unsupported version");
  if (target.empty() || (target[0] != '/' && target != "*")) return bad("malformed target");
  for (unsigned char c : target)
    if (c <= 0x20 || c >= 0x7f) return bad("malformed target");

  bool conn_close = version == "HTTP/1.0", conn_keep = false, has_body = false;
  size_t pos = eol == std::string::npos ? head.size() : eol + 1;
  while (pos < head.size()) {
    size_t next = head.find('\n', pos);
    if (next == std::string::npos) next = head.size();
    const std::string h = head.substr(pos, next - pos);
    pos = next + 1;
    if (trim(h).empty()) continue;
    if (h[0] == ' ' || h[0] == '\t') return bad("folded header");
    const size_t colon = h.find(':');
    if (colon == std::string::npos || !is_token(h.substr(0, colon))) return bad("malformed header");
    const std::string name = lower(h.substr(0, colon));
    const std::string value = lower(trim(h.substr(colon + 1)));
    if (name == "connection") {
      if (value.find("close") != std::string::npos) conn_close = true;
      if (value.find("keep-alive") != std::string::npos) conn_keep = true;
    } else if (name == "content-length") {
      if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos)
        return bad("malformed Content-Length");
      if (value.find_first_not_of('0') != std::string::npos) has_body = true;
    } else if (name == "transfer-encoding") {
      has_body = true;
    }
  }
  const bool may_keep = !conn_close || (version == "HTTP/1.0" && conn_keep);
  if (method != "GET")
    return response(405, "Method Not Allowed", "only GET is allowed\n", false,
                    "text/plain; charset=utf-8", "Allow: GET\r\n");
  if (has_body) return bad("a GET request has no body");
  const std::string path = target.substr(0, target.find('?'));
  if (path != "/metrics") {
    keep_alive = may_keep;
    return response(404, "Not Found", "not found: try /metrics\n", keep_alive);
  }
  auto snap = exchange_.get();
  static const metrics_snapshot empty;
  std::string body = render_metrics(snap ? *snap : empty, workers_, clock_.now());
  keep_alive = may_keep;
  return response(200, "OK", body, keep_alive, "text/plain; version=0.0.4; charset=utf-8");
}

void metrics_server::run() {
  using steady = std::chrono::steady_clock;
  std::vector<http_client> clients;
  std::vector<pollfd> fds;
  auto close_client = [](http_client& c) {
    ::close(c.fd);
    c.fd = -1;
  };
  auto too_large = [&](http_client& c) {
    requests_.fetch_add(1, std::memory_order_relaxed);
    bad_requests_.fetch_add(1, std::memory_order_relaxed);
    c.out += response(400, "Bad Request", "bad request: request head too large\n", false);
    c.close_after_write = true;
  };
  // Answers every complete request head in c.in, in order; stops after one that closes the
  // connection. Responses go out when the socket is writable.
  auto serve_buffered = [&](http_client& c) {
    while (!c.close_after_write) {
      size_t sep = 0;
      const size_t end = head_end(c.in, sep);
      if (end == std::string::npos) {
        if (c.in.size() > max_request_bytes) too_large(c);
        break;
      }
      if (end > max_request_bytes) {
        too_large(c);
        break;
      }
      const std::string head = c.in.substr(0, end);
      c.in.erase(0, end + sep);
      bool keep = false;
      c.out += respond(head, keep);
      if (!keep) c.close_after_write = true;
    }
    if (c.close_after_write) c.in.clear();
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    fds.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    fds.push_back(pollfd{listen_fd_, POLLIN, 0});
    for (const auto& c : clients)
      fds.push_back(pollfd{c.fd, static_cast<short>(!c.lingering && c.out_offset < c.out.size() ? POLLOUT : POLLIN), 0});
    const int n = ::poll(fds.data(), fds.size(), 1000);
    if (n < 0 && errno != EINTR) {
      spdlog::warn("metrics server: poll: {}", std::strerror(errno));
      continue;
    }
    const auto now = steady::now();
    if (fds[1].revents & POLLIN) {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (clients.size() >= max_clients) {
          ::close(fd);
          continue;
        }
        http_client c;
        c.fd = fd;
        c.last_activity = now;
        clients.push_back(std::move(c));
      }
    }
    // Only clients that were polled have revents; new ones are looked at next round.
    const size_t polled = fds.size() - 2;
    for (size_t i = 0; i < polled && i < clients.size(); ++i) {
      http_client& c = clients[i];
      const short re = fds[i + 2].revents;
      if (!re) continue;
      if (c.lingering) {
        char sink[4096];
        const ssize_t r = ::recv(c.fd, sink, sizeof sink, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
          close_client(c);
        continue;  // the linger deadline is not extended by what the client sends
      }
      c.last_activity = now;
      if (c.out_offset < c.out.size()) {
        const ssize_t w = ::send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
          c.out_offset += static_cast<size_t>(w);
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          close_client(c);
          continue;
        }
        if (c.out_offset < c.out.size()) continue;
        c.out.clear();
        c.out_offset = 0;
        if (c.close_after_write) {
          ::shutdown(c.fd, SHUT_WR);
          c.lingering = true;
          c.last_activity = now;
          continue;
        }
        serve_buffered(c);  // pipelined requests that arrived meanwhile
        continue;
      }
      char buf[4096];
      const ssize_t r = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_client(c);
        continue;
      }
      if (r > 0) c.in.append(buf, static_cast<size_t>(r));
      serve_buffered(c);
    }
    // Idle or finished clients go.
    for (auto& c : clients) {
      const auto limit = std::chrono::milliseconds(c.lingering ? 2000 : idle_timeout_ms);
      if (c.fd >= 0 && now - c.last_activity > limit) close_client(c);
    }
    clients.erase(std::remove_if(clients.begin(), clients.end(), [](const http_client& c) { return c.fd < 0; }),
                  clients.end());
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof v);
    }
  }
  for (auto& c : clients)
    if (c.fd >= 0) ::close(c.fd);
}

}  // namespace tandem
