// YAML -> daemon_config, with every error located as "file:line: field.path: what".
//
// Two layers:
//  * yaml_reader walks the document: key names, types, syntax and per-field ranges. It records
//    the line of every field path it sees and the paths whose values it could not read.
//  * checker works on the value types only (so validate() can run it on configs changed at
//    runtime): ranges again, then cross-field rules. In parse_config it skips any rule that
//    reads a field the reader already rejected (no cascades from a placeholder value), and its
//    findings are placed on lines through the reader's path -> line map.
#include "control/config.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

namespace tandem::config {

namespace {

// ---- limits (docs/config.md lists the same numbers) --------------------------------------

constexpr uint64_t min_flow_table_size = 1024;
constexpr uint64_t max_flow_table_size = 64ull << 20;  // 67108864 entries per worker
constexpr uint32_t max_weight = 65535;
constexpr uint32_t max_canary_basis_points = 10'000;
constexpr size_t max_segments = 64;
constexpr uint32_t max_maglev_size = 1u << 24;   // 64 MiB of entries per pool table
constexpr uint32_t max_timeout_ms = 86'400'000;  // 24h: flow ages compare as int32 ms
constexpr uint32_t max_socket_mode = 0777;
constexpr size_t max_socket_path = 107;  // sizeof(sockaddr_un::sun_path) - 1
constexpr size_t max_name = 63;
constexpr uint32_t min_health_interval_ms = 50;
constexpr uint32_t max_health_interval_ms = 3'600'000;  // 1h
constexpr uint32_t max_rise_fall = 100;
constexpr uint32_t max_hook_timeout_ms = 3'600'000;
constexpr size_t max_hooks = 64;
constexpr size_t max_http_text = 1024;  // health path / host, hook URL

constexpr uint32_t ms_per_s = 1000;
constexpr uint32_t ms_per_m = 60 * ms_per_s;
constexpr uint32_t ms_per_h = 60 * ms_per_m;

// ---- small value helpers -----------------------------------------------------------------

const char* family_name(const ip_address& a) { return a.is_v4() ? "IPv4" : "IPv6"; }

bool is_unspecified(const ip_address& a) {
  if (a.is_v4()) return a.v4_be() == 0;
  static constexpr uint8_t zero[16] = {};
  return std::memcmp(a.bytes, zero, 16) == 0;
}

// Unspecified, multicast and IPv4 limited broadcast addresses can be neither a VIP, a backend
// nor a tunnel source.
const char* unusable_reason(const ip_address& a) {
  if (is_unspecified(a)) return "is the unspecified address";
  if (a.is_v4()) {
    if (a.bytes[12] >= 224 && a.bytes[12] < 240) return "is a multicast address";
    if (a.v4_be() == 0xffffffffu) return "is the broadcast address";
  } else if (a.bytes[0] == 0xff) {
    return "is a multicast address";
  }
  return nullptr;
}

const char* unusable_reason(const mac_address& m) {
  if (m == mac_address{}) return "is the all-zero address";
  if (m.bytes[0] & 1) return "is a multicast/broadcast address";
  return nullptr;
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > max_name) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// Text that goes into an HTTP request line or header as is: printable ASCII, no spaces.
bool http_safe(std::string_view t) {
  return std::all_of(t.begin(), t.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::string share_text(uint32_t bp) {  // 8000 -> "0.8"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", bp / 10000.0);
  return buf;
}

uint32_t next_prime(uint32_t n) {
  if (n <= 2) return 2;
  uint64_t p = n;
  while (p <= std::numeric_limits<uint32_t>::max() && !is_prime(static_cast<uint32_t>(p))) ++p;
  return p > std::numeric_limits<uint32_t>::max() ? 0 : static_cast<uint32_t>(p);
}

const char* proto_name(uint8_t p) { return p == 6 ? "tcp" : p == 17 ? "udp" : "?"; }

const char* mode_name(forwarding_mode m) {
  switch (m) {
    case forwarding_mode::l2:
      return "l2";
    case forwarding_mode::ipip:
      return "ipip";
    case forwarding_mode::gue:
      return "gue";
  }
  return "?";
}

std::string percent_text(uint32_t basis_points) {
  std::string frac = std::to_string(basis_points % 100);
  if (frac.size() < 2) frac.insert(0, 1, '0');
  return std::to_string(basis_points / 100) + "." + frac + "%";
}

// Host bits of a prefix as stored in value types (runtime changes do not go through the parser).
bool host_bits_zero(const ip_prefix& p) {
  const unsigned width = p.address.is_v4() ? 32u : 128u;
  if (p.length > width) return false;
  const unsigned first = (p.address.is_v4() ? 96u : 0u) + p.length;
  for (unsigned i = first; i < 128; ++i)
    if (p.address.bytes[i / 8] & (0x80 >> (i % 8))) return false;
  return true;
}

ip_prefix masked(const ip_address& a, uint8_t len) {
  ip_prefix p{a, len};
  const unsigned first = (a.is_v4() ? 96u : 0u) + len;
  for (unsigned i = first; i < 128; ++i)
    p.address.bytes[i / 8] = static_cast<uint8_t>(p.address.bytes[i / 8] & ~(0x80 >> (i % 8)));
  return p;
}

struct addr_less {
  bool operator()(const ip_address& a, const ip_address& b) const {
    return std::memcmp(a.bytes, b.bytes, 16) < 0;
  }
};

struct prefix_less {
  bool operator()(const std::pair<ip_address, uint8_t>& a,
                  const std::pair<ip_address, uint8_t>& b) const {
    const int c = std::memcmp(a.first.bytes, b.first.bytes, 16);
    return c != 0 ? c < 0 : a.second < b.second;
  }
};

std::string service_label(const daemon_config& cfg, size_t i) {
  const std::string& n = cfg.services[i].name;
  return n.empty() ? "services[" + std::to_string(i) + "]" : "service " + n;
}

std::string join_path(const std::string& parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return parent + "." + std::string(key);
}

std::string index_path(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

// ---- durations ---------------------------------------------------------------------------

enum class duration_status { ok, garbage, negative, overflow };

duration_status parse_unsigned_duration(std::string_view t, uint32_t& out) {
  size_t digits = 0;
  while (digits < t.size() && t[digits] >= '0' && t[digits] <= '9') ++digits;
  if (digits == 0) return duration_status::garbage;
  const std::string_view unit = t.substr(digits);
  uint64_t scale = 0;
  if (unit.empty() || unit == "s")
    scale = ms_per_s;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m")
    scale = ms_per_m;
  else if (unit == "h")
    scale = ms_per_h;
  else
    return duration_status::garbage;
  uint64_t v = 0;
  for (size_t i = 0; i < digits; ++i) {
    v = v * 10 + static_cast<uint64_t>(t[i] - '0');
    if (v > std::numeric_limits<uint32_t>::max()) return duration_status::overflow;
  }
  v *= scale;  // < 2^32 * 3.6e6, fits in 64 bits
  if (v > std::numeric_limits<uint32_t>::max()) return duration_status::overflow;
  out = static_cast<uint32_t>(v);
  return duration_status::ok;
}

duration_status parse_duration_detail(std::string_view t, uint32_t& out) {
  if (!t.empty() && t.front() == '-') {
    // Only call it negative when the rest would have been a duration.
    uint32_t ignored = 0;
    return parse_unsigned_duration(t.substr(1), ignored) == duration_status::garbage
               ? duration_status::garbage
               : duration_status::negative;
  }
  return parse_unsigned_duration(t, out);
}

// ---- cross-field checks on value types ---------------------------------------------------

struct issue {
  int service = -1;  // index into cfg.services, or -1 for a top-level field
  std::string path;  // relative to the service, or from the document root
  std::string message;
};

// Answers "did the reader reject this field (or a parent of it)?"; empty in validate().
using rejected_fn = std::function<bool(int service, std::string_view path)>;

class checker {
 public:
  checker(const daemon_config& cfg, rejected_fn rejected)
      : cfg_(cfg), rejected_(std::move(rejected)) {}

  std::vector<issue> run() {
    check_global();
    size_t total_backends = 0;
    for (size_t i = 0; i < cfg_.services.size(); ++i) {
      check_service(static_cast<int>(i));
      total_backends += cfg_.services[i].blue.size() + cfg_.services[i].green.size();
    }
    if (cfg_.services.size() > max_services)
      add(-1, "services",
          std::to_string(cfg_.services.size()) + " services; at most " +
              std::to_string(max_services) + " are supported");
    if (total_backends > max_backends)
      add(-1, "services",
          std::to_string(total_backends) + " backends in all services; at most " +
              std::to_string(max_backends) + " are supported");
    check_listeners();
    return std::move(issues_);
  }

 private:
  // A rule runs only when every field it reads was read successfully.
  bool usable(int svc, std::initializer_list<std::string_view> paths) const {
    if (!rejected_) return true;
    for (std::string_view p : paths)
      if (rejected_(svc, p)) return false;
    return true;
  }
  void add(int svc, std::string path, std::string message) {
    issues_.push_back(issue{svc, std::move(path), std::move(message)});
  }
  std::string label(size_t i) const { return service_label(cfg_, i); }

  void check_timeout(const char* path, uint32_t ms) {
    if (!usable(-1, {path})) return;
    if (ms == 0 || ms > max_timeout_ms)
      add(-1, path,
          "must be more than 0 and at most " + format_duration(max_timeout_ms) + ", got " +
              format_duration(ms));
  }

  void check_global() {
    if (usable(-1, {"dataplane.flow_table_size"}) &&
        (cfg_.flow_table_size < min_flow_table_size || cfg_.flow_table_size > max_flow_table_size))
      add(-1, "dataplane.flow_table_size",
          "must be between " + std::to_string(min_flow_table_size) + " and " +
              std::to_string(max_flow_table_size) + ", got " +
              std::to_string(cfg_.flow_table_size));

    check_timeout("dataplane.timeouts.tcp_syn", cfg_.timeouts.tcp_syn_ms);
    check_timeout("dataplane.timeouts.tcp_established", cfg_.timeouts.tcp_established_ms);
    check_timeout("dataplane.timeouts.tcp_closing", cfg_.timeouts.tcp_closing_ms);
    check_timeout("dataplane.timeouts.udp", cfg_.timeouts.udp_ms);

    std::set<std::string, std::less<>> seen_ports;
    for (size_t i = 0; i < cfg_.ports.size(); ++i) {
      const std::string path = index_path("dataplane.ports", i);
      if (!usable(-1, {path})) continue;
      if (cfg_.ports[i].empty())
        add(-1, path, "empty device name");
      else if (!seen_ports.insert(cfg_.ports[i]).second)
        add(-1, path, "duplicate port '" + cfg_.ports[i] + "'");
    }

    const tunnel_settings& t = cfg_.tunnel;
    if (t.source_v4 && usable(-1, {"dataplane.tunnel.source_v4"})) {
      if (!t.source_v4->is_v4())
        add(-1, "dataplane.tunnel.source_v4", to_string(*t.source_v4) + " is not an IPv4 address");
      else if (const char* why = unusable_reason(*t.source_v4))
        add(-1, "dataplane.tunnel.source_v4", to_string(*t.source_v4) + " " + why);
    }
    if (t.source_v6 && usable(-1, {"dataplane.tunnel.source_v6"})) {
      if (t.source_v6->is_v4())
        add(-1, "dataplane.tunnel.source_v6", to_string(*t.source_v6) + " is not an IPv6 address");
      else if (const char* why = unusable_reason(*t.source_v6))
        add(-1, "dataplane.tunnel.source_v6", to_string(*t.source_v6) + " " + why);
    }
    if (t.nexthop_mac && usable(-1, {"dataplane.tunnel.nexthop_mac"}))
      if (const char* why = unusable_reason(*t.nexthop_mac))
        add(-1, "dataplane.tunnel.nexthop_mac", to_string(*t.nexthop_mac) + " " + why);
    if (t.gue_port == 0 && usable(-1, {"dataplane.tunnel.gue_port"}))
      add(-1, "dataplane.tunnel.gue_port", "must be between 1 and 65535, got 0");

    if (usable(-1, {"control.socket"})) {
      if (cfg_.socket.path.empty())
        add(-1, "control.socket", "must not be empty");
      else if (cfg_.socket.path.size() > max_socket_path)
        add(-1, "control.socket",
            "path is " + std::to_string(cfg_.socket.path.size()) +
                " bytes; a unix socket path is at most " + std::to_string(max_socket_path));
    }
    if (cfg_.socket.mode > max_socket_mode && usable(-1, {"control.mode"}))
      add(-1, "control.mode", "must be at most 0777");
    check_metrics_and_hooks();
  }

  void check_metrics_and_hooks() {
    const metrics_settings& m = cfg_.metrics;
    if (m.enabled && m.port == 0 && usable(-1, {"metrics.listen"}))
      add(-1, "metrics.listen", "port must be between 1 and 65535, got 0");
    if (m.enabled && usable(-1, {"metrics.listen"}))
      if (const char* why = unusable_reason(m.address); why && !is_unspecified(m.address))
        add(-1, "metrics.listen", to_string(m.address) + " " + why);
    const hook_settings& h = cfg_.hooks;
    if ((h.timeout_ms == 0 || h.timeout_ms > max_hook_timeout_ms) && usable(-1, {"hooks.timeout"}))
      add(-1, "hooks.timeout",
          "must be more than 0 and at most " + format_duration(max_hook_timeout_ms) + ", got " +
              format_duration(h.timeout_ms));
    if (h.hooks.size() > max_hooks && usable(-1, {"hooks.run"}))
      add(-1, "hooks.run",
          std::to_string(h.hooks.size()) + " hooks; at most " + std::to_string(max_hooks));
    for (size_t k = 0; k < h.hooks.size(); ++k) {
      const hook& x = h.hooks[k];
      const std::string p = index_path("hooks.run", k);
      if (!usable(-1, {p, p + ".url", p + ".command"})) continue;
      if (x.command.empty() == x.url.empty()) {
        add(-1, p, "give exactly one of command and url");
        continue;
      }
      if (!x.url.empty() && !parse_http_url(x.url))
        add(-1, p + ".url",
            "'" + x.url +
                "' is not an http:// URL with an IP address (e.g. http://127.0.0.1:9000/hook; "
                "https and host names are not supported)");
      std::set<std::string, std::less<>> seen;
      for (size_t e = 0; e < x.events.size(); ++e) {
        const std::string ep = index_path(p + ".events", e);
        if (!usable(-1, {ep})) continue;
        const bool known = std::any_of(std::begin(hook_event_names), std::end(hook_event_names),
                                       [&](const char* n) { return x.events[e] == n; });
        if (!known) {
          std::string list;
          for (const char* n : hook_event_names) list += std::string(list.empty() ? "" : ", ") + n;
          add(-1, ep, "'" + x.events[e] + "' is not one of: " + list);
        } else if (!seen.insert(x.events[e]).second) {
          add(-1, ep, "duplicate event '" + x.events[e] + "'");
        }
      }
    }
  }

  void check_health(int i, const service& s) {
    if (!s.health || !usable(i, {"health"})) return;
    const health_check& h = *s.health;
    if ((h.interval_ms < min_health_interval_ms || h.interval_ms > max_health_interval_ms) &&
        usable(i, {"health.interval"}))
      add(i, "health.interval",
          "must be between " + format_duration(min_health_interval_ms) + " and " +
              format_duration(max_health_interval_ms) + ", got " + format_duration(h.interval_ms));
    if (usable(i, {"health.timeout", "health.interval"})) {
      if (h.timeout_ms == 0)
        add(i, "health.timeout", "must be more than 0");
      else if (h.timeout_ms > h.interval_ms)
        add(i, "health.timeout",
            format_duration(h.timeout_ms) + " is longer than health.interval (" +
                format_duration(h.interval_ms) + "): a check must end before the next starts");
    }
    if ((h.rise == 0 || h.rise > max_rise_fall) && usable(i, {"health.rise"}))
      add(i, "health.rise", "must be between 1 and 100, got " + std::to_string(h.rise));
    if ((h.fall == 0 || h.fall > max_rise_fall) && usable(i, {"health.fall"}))
      add(i, "health.fall", "must be between 1 and 100, got " + std::to_string(h.fall));
    if (h.port == 0 && s.port == 0 && usable(i, {"health.port", "port"}))
      add(i, "health.port",
          "required when the service's port is 0 (every port): which port should be checked?");
    else if (h.port == 0 && s.proto == 17 && usable(i, {"health.port", "protocol"}))
      add(i, "health.port",
          "required for a udp service: checks are TCP or HTTP, give the backend's TCP health port");
    if (h.bake_min_healthy_bp > 10000 && usable(i, {"health.bake_min_healthy"}))
      add(i, "health.bake_min_healthy",
          "must be between 0 and 1, got " + share_text(h.bake_min_healthy_bp));
    if (h.min_healthy_to_switch > max_backends && usable(i, {"health.min_healthy_to_switch"}))
      add(i, "health.min_healthy_to_switch",
          "must be at most " + std::to_string(max_backends) + ", got " +
              std::to_string(h.min_healthy_to_switch));
    if (h.kind != health_check_kind::http) {
      if (usable(i, {"health.check"}) && (h.path != "/" || !h.host.empty()))
        add(i, "health.check", "path and host apply to http checks only (check: http)");
      return;
    }
    if (usable(i, {"health.path"})) {
      if (h.path.empty() || h.path[0] != '/' || h.path.size() > max_http_text || !http_safe(h.path))
        add(i, "health.path",
            "'" + h.path + "' is not a request path: it starts with '/', has no spaces or control "
                           "characters and is at most 1024 bytes");
    }
    if (!h.host.empty() && (h.host.size() > max_http_text || !http_safe(h.host)) &&
        usable(i, {"health.host"}))
      add(i, "health.host", "'" + h.host + "' has spaces or control characters");
    if ((h.status_min < 100 || h.status_max > 599 || h.status_min > h.status_max) &&
        usable(i, {"health.expect_status"}))
      add(i, "health.expect_status",
          "expected a status or a range within 100-599 (e.g. 200 or 200-399), got " +
              std::to_string(h.status_min) + "-" + std::to_string(h.status_max));
  }

  void check_service(int i) {
    const service& s = cfg_.services[static_cast<size_t>(i)];
    const bool vip_ok = usable(i, {"vip"});

    if (usable(i, {"name"})) {
      if (!valid_name(s.name)) {
        add(i, "name", "'" + s.name + "' is not a valid name: 1 to 63 characters of a-z 0-9 _ -");
      } else {
        for (int j = 0; j < i; ++j) {
          if (cfg_.services[static_cast<size_t>(j)].name == s.name && usable(j, {"name"})) {
            add(i, "name",
                "duplicate service name '" + s.name + "' (also services[" + std::to_string(j) +
                    "])");
            break;
          }
        }
      }
    }
    if (vip_ok)
      if (const char* why = unusable_reason(s.vip)) add(i, "vip", to_string(s.vip) + " " + why);
    if (s.proto != 6 && s.proto != 17 && usable(i, {"protocol"}))
      add(i, "protocol", "must be tcp (6) or udp (17), got " + std::to_string(s.proto));

    check_maglev(i, s);

    if (s.canary_basis_points > max_canary_basis_points && usable(i, {"canary.percent"}))
      add(i, "canary.percent",
          "must be between 0 and 100, got " + percent_text(s.canary_basis_points));

    check_segments(i, s, vip_ok);
    check_preview(i, s, vip_ok);

    if (s.drain.timeout_ms > max_timeout_ms && usable(i, {"drain.timeout"}))
      add(i, "drain.timeout",
          "must be at most " + format_duration(max_timeout_ms) + ", got " +
              format_duration(s.drain.timeout_ms));
    if (s.drain.spread_ms > max_timeout_ms && usable(i, {"drain.spread"}))
      add(i, "drain.spread",
          "must be at most " + format_duration(max_timeout_ms) + ", got " +
              format_duration(s.drain.spread_ms));

    check_pools(i, s, vip_ok);
    check_health(i, s);
  }

  void check_maglev(int i, const service& s) {
    if (!usable(i, {"maglev_size"})) return;
    const uint32_t m = s.maglev_size;
    if (m > max_maglev_size) {
      add(i, "maglev_size",
          std::to_string(m) + " is too large: at most " + std::to_string(max_maglev_size));
      return;
    }
    if (!is_prime(m)) {
      add(i, "maglev_size",
          std::to_string(m) + " is not prime (next prime: " + std::to_string(next_prime(m)) + ")");
      return;
    }
    if (!usable(i, {"pools"})) return;
    // Weight > 0 whatever the admin state: a drain/maint backend can come back to ready at
    // runtime without a resize.
    auto takers = [](const std::vector<backend>& pool) {
      return static_cast<uint64_t>(
          std::count_if(pool.begin(), pool.end(), [](const backend& b) { return b.weight > 0; }));
    };
    const uint64_t nb = takers(s.blue), ng = takers(s.green);
    const uint64_t n = std::max(nb, ng);
    const uint64_t need = 100 * n;
    if (m < need) {
      const uint32_t suggestion =
          next_prime(static_cast<uint32_t>(std::min<uint64_t>(need, max_maglev_size)));
      add(i, "maglev_size",
          std::to_string(m) + " is too small for " + std::to_string(n) +
              " backends with weight > 0 in pool " + (nb >= ng ? "blue" : "green") +
              ": needs a prime >= " + std::to_string(need) + " (100 per backend), e.g. " +
              std::to_string(suggestion));
    }
  }

  void check_segments(int i, const service& s, bool vip_ok) {
    if (s.segments.size() > max_segments && usable(i, {"segments"}))
      add(i, "segments",
          std::to_string(s.segments.size()) + " segments; at most " + std::to_string(max_segments) +
              " are allowed");
    std::map<std::pair<ip_address, uint8_t>, size_t, prefix_less> seen;
    for (size_t k = 0; k < s.segments.size(); ++k) {
      const std::string path = index_path("segments", k) + ".cidr";
      if (!usable(i, {path})) continue;
      const ip_prefix& p = s.segments[k].prefix;
      if (!host_bits_zero(p)) {
        add(i, path,
            to_string(p) +
                " is not a valid prefix (length beyond the family's width or "
                "host bits set)");
        continue;
      }
      if (vip_ok && p.address.is_v4() != s.vip.is_v4()) {
        add(i, path,
            to_string(p) + " is " + family_name(p.address) + " but the vip " + to_string(s.vip) +
                " is " + family_name(s.vip) + ": it can never match a client");
        continue;
      }
      auto [it, fresh] = seen.emplace(std::make_pair(p.address, p.length), k);
      if (!fresh)
        add(i, path,
            "duplicate segment " + to_string(p) + ": segments[" + std::to_string(it->second) +
                "] matches first, so this one never applies");
    }
  }

  void check_preview(int i, const service& s, bool vip_ok) {
    if (!s.preview || !usable(i, {"preview"})) return;
    const preview_listener& pv = *s.preview;
    const bool pv_vip_ok = usable(i, {"preview.vip"});
    if (pv_vip_ok) {
      if (const char* why = unusable_reason(pv.vip)) {
        add(i, "preview.vip", to_string(pv.vip) + " " + why);
        return;
      }
      if (vip_ok && pv.vip.is_v4() != s.vip.is_v4()) {
        add(i, "preview.vip",
            to_string(pv.vip) + " is " + family_name(pv.vip) + " but the service vip " +
                to_string(s.vip) + " is " + family_name(s.vip) +
                ": a preview listener must be the same family");
        return;
      }
    }
    if (pv_vip_ok && vip_ok && usable(i, {"preview.port", "port"}) && pv.vip == s.vip &&
        pv.port == s.port)
      add(i, "preview",
          "preview listener " + to_string(pv.vip) + " port " + std::to_string(pv.port) +
              " is the service's own listener; it must differ (another vip or port)");
  }

  void check_pools(int i, const service& s, bool vip_ok) {
    const bool tunnel = s.mode != forwarding_mode::l2;
    std::string first_v4, first_v6;  // first backend of each family, for tunnel source checks
    for (colour c : {colour::blue, colour::green}) {
      const std::vector<backend>& pool = s.pool(c);
      const std::string pool_path = std::string("pools.") + colour_name(c);
      std::map<ip_address, size_t, addr_less> seen;
      for (size_t k = 0; k < pool.size(); ++k) {
        const backend& b = pool[k];
        // The backend's field paths, built only for a message or a parse-error lookup: a switch
        // re-validates every backend of a 4000-backend config, almost always without either.
        auto bp = [&](const char* field) { return index_path(pool_path, k) + field; };
        auto field_ok = [&](const char* field) { return !rejected_ || usable(i, {bp(field)}); };
        const bool addr_ok = field_ok(".address");
        if (addr_ok) {
          if (const char* why = unusable_reason(b.address)) {
            add(i, bp(".address"), to_string(b.address) + " " + why);
          } else {
            auto [it, fresh] = seen.emplace(b.address, k);
            if (!fresh)
              add(i, bp(".address"),
                  "duplicate backend " + to_string(b.address) + " in pool " + colour_name(c) +
                      " (also " + pool_path + "[" + std::to_string(it->second) + "])");
          }
        }
        if (b.weight > max_weight && field_ok(".weight"))
          add(i, bp(".weight"), "must be between 0 and 65535, got " + std::to_string(b.weight));
        if (b.mac && field_ok(".mac"))
          if (const char* why = unusable_reason(*b.mac))
            add(i, bp(".mac"), to_string(*b.mac) + " " + why);
        if (!tunnel) {
          if (!b.mac && field_ok(".mac") && usable(i, {"forwarding"}))
            add(i, bp(".mac"), "required with l2 forwarding (the backend's Ethernet address)");
          if (addr_ok && vip_ok && usable(i, {"forwarding"}) && b.address.is_v4() != s.vip.is_v4())
            add(i, bp(".address"),
                std::string(family_name(b.address)) + " backend " + to_string(b.address) +
                    " for the " + family_name(s.vip) + " vip " + to_string(s.vip) +
                    ": l2 forwarding keeps the packet's addresses, so the families must match "
                    "(use ipip or gue to mix families)");
        } else if (addr_ok) {
          std::string& first = b.address.is_v4() ? first_v4 : first_v6;
          if (first.empty()) first = bp(".address");
        }
      }
    }
    if (!tunnel || !usable(i, {"forwarding"})) return;
    const char* m = mode_name(s.mode);
    if (!cfg_.tunnel.nexthop_mac && usable(-1, {"dataplane.tunnel.nexthop_mac"}))
      add(i, "forwarding",
          std::string(m) +
              " forwarding needs dataplane.tunnel.nexthop_mac "
              "(destination MAC of encapsulated packets)");
    if (!first_v4.empty() && !cfg_.tunnel.source_v4 && usable(-1, {"dataplane.tunnel.source_v4"}))
      add(i, first_v4,
          std::string("IPv4 backend with ") + m +
              " forwarding needs dataplane.tunnel.source_v4 (outer source address)");
    if (!first_v6.empty() && !cfg_.tunnel.source_v6 && usable(-1, {"dataplane.tunnel.source_v6"}))
      add(i, first_v6,
          std::string("IPv6 backend with ") + m +
              " forwarding needs dataplane.tunnel.source_v6 (outer source address)");
  }

  struct listener_key {
    ip_address vip;
    uint8_t proto;
    uint16_t port;
    bool operator<(const listener_key& o) const {
      const int c = std::memcmp(vip.bytes, o.vip.bytes, 16);
      if (c != 0) return c < 0;
      return proto != o.proto ? proto < o.proto : port < o.port;
    }
  };

  // (vip, protocol, port) is one service's listener or one preview listener, never both.
  void check_listeners() {
    std::map<listener_key, std::string> owners;
    for (size_t i = 0; i < cfg_.services.size(); ++i) {
      const service& s = cfg_.services[i];
      const int si = static_cast<int>(i);
      if (!usable(si, {"vip", "protocol", "port"})) continue;
      auto [it, fresh] =
          owners.emplace(listener_key{s.vip, s.proto, s.port}, "the listener of " + label(i));
      if (!fresh)
        add(si, "vip",
            to_string(s.vip) + " " + proto_name(s.proto) + " port " + std::to_string(s.port) +
                " is already " + it->second);
      if (!s.preview || !usable(si, {"preview", "preview.vip", "preview.port"})) continue;
      if (s.preview->vip == s.vip && s.preview->port == s.port) continue;  // check_preview said so
      auto [pit, pfresh] = owners.emplace(listener_key{s.preview->vip, s.proto, s.preview->port},
                                          "the preview listener of " + label(i));
      if (!pfresh)
        add(si, "preview.vip",
            to_string(s.preview->vip) + " " + proto_name(s.proto) + " port " +
                std::to_string(s.preview->port) + " is already " + pit->second);
    }
  }

  const daemon_config& cfg_;
  rejected_fn rejected_;
  std::vector<issue> issues_;
};

// ---- YAML reader ------------------------------------------------------------------------

// One value in the document with where it is.
struct item {
  YAML::Node node;
  std::string path;
  int line = 1;
};

struct object {
  std::string path;
  int line = 1;
  std::vector<std::pair<std::string, item>> fields;
  const item* find(std::string_view key) const {
    for (const auto& [k, v] : fields)
      if (k == key) return &v;
    return nullptr;
  }
};

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

const char* kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "?";
}

class yaml_reader {
 public:
  explicit yaml_reader(std::string_view file) : file_(file) {}

  void fail(int line, const std::string& path, const std::string& what) {
    errors_.emplace_back(line, (path.empty() ? std::string("top level") : path) + ": " + what);
    rejected_.insert(path);
  }
  // Marks a field as unusable without a message of its own (its cause was reported already).
  void poison(const std::string& path) { rejected_.insert(path); }

  bool rejected(std::string_view path) const {
    std::string p(path);
    for (;;) {
      if (rejected_.count(p)) return true;
      const size_t cut = p.find_last_of(".[");
      if (cut == std::string::npos) return false;
      p.resize(cut);
    }
  }

  // Line of `path`, or of its nearest ancestor the reader saw; 1 when none.
  int line_for(std::string_view path) const {
    std::string p(path);
    for (;;) {
      auto it = lines_.find(p);
      if (it != lines_.end()) return it->second;
      const size_t cut = p.find_last_of(".[");
      if (cut == std::string::npos) return 1;
      p.resize(cut);
    }
  }

  void add_located(const std::string& path, const std::string& what) {
    errors_.emplace_back(line_for(path), path + ": " + what);
  }

  std::string render() {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string out;
    for (const auto& [line, text] : errors_) {
      if (!out.empty()) out += '\n';
      out += file_ + ":" + std::to_string(line) + ": " + text;
    }
    return out;
  }
  bool has_errors() const { return !errors_.empty(); }

  static int line_of(const YAML::Node& n, int fallback) {
    const YAML::Mark m = n.Mark();
    return m.is_null() ? fallback : m.line + 1;
  }

  // A map with only `allowed` keys; null counts as an empty map. nullopt (reported) otherwise.
  std::optional<object> read_map(const item& it, std::initializer_list<std::string_view> allowed) {
    object o{it.path, it.line, {}};
    if (it.node.IsNull()) {
      // "- " with nothing after it is a mistake, not an entry made of defaults.
      if (!it.path.empty() && it.path.back() == ']') {
        fail(it.line, it.path, "empty list entry");
        return std::nullopt;
      }
      return o;
    }
    if (!it.node.IsMap()) {
      fail(it.line, it.path, std::string("expected a map, got ") + kind(it.node));
      return std::nullopt;
    }
    std::string allowed_list;
    for (std::string_view a : allowed) {
      if (!allowed_list.empty()) allowed_list += ", ";
      allowed_list += a;
    }
    for (auto kv = it.node.begin(); kv != it.node.end(); ++kv) {
      // Copies: the iterator hands out a proxy temporary.
      const YAML::Node key = kv->first;
      const YAML::Node value = kv->second;
      const int line = line_of(key, it.line);
      if (!key.IsScalar()) {
        fail(line, it.path, std::string("keys must be plain names, got ") + kind(key));
        continue;
      }
      const std::string& name = key.Scalar();
      const std::string path = join_path(it.path, name);
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        std::string msg = "unknown key '" + name + "' (allowed: " + allowed_list + ")";
        std::string_view best;
        size_t best_d = 3;  // suggest only close matches
        for (std::string_view a : allowed) {
          const size_t d = edit_distance(name, a);
          if (d < best_d) best_d = d, best = a;
        }
        if (!best.empty()) msg += "; did you mean '" + std::string(best) + "'?";
        fail(line, path, msg);
        continue;
      }
      if (const item* prev = o.find(name)) {
        fail(line, path, "duplicate key (first given at line " + std::to_string(prev->line) + ")");
        continue;
      }
      lines_.emplace(path, line);
      o.fields.emplace_back(name, item{value, path, line});
    }
    return o;
  }

  // A list; null counts as empty. Items carry their own lines.
  std::optional<std::vector<item>> read_list(const item& it) {
    std::vector<item> out;
    if (it.node.IsNull()) return out;
    if (!it.node.IsSequence()) {
      fail(it.line, it.path, std::string("expected a list, got ") + kind(it.node));
      return std::nullopt;
    }
    size_t k = 0;
    for (auto e = it.node.begin(); e != it.node.end(); ++e, ++k) {
      const YAML::Node node = *e;
      item x{node, index_path(it.path, k), line_of(node, it.line)};
      // A null item ("- " alone) has the mark of what follows; the list's line is closer.
      if (node.IsNull()) x.line = it.line;
      lines_.emplace(x.path, x.line);
      out.push_back(std::move(x));
    }
    return out;
  }

  void require(const object& o, std::initializer_list<std::string_view> keys) {
    for (std::string_view k : keys)
      if (!o.find(k)) fail(o.line, join_path(o.path, k), "missing (required)");
  }

  std::optional<std::string> read_string(const item& it) {
    if (it.node.IsScalar()) return it.node.Scalar();
    fail(it.line, it.path,
         it.node.IsNull() ? std::string("missing value")
                          : std::string("expected a single value, got ") + kind(it.node));
    return std::nullopt;
  }

  // A whole number in [lo, hi] written in decimal.
  std::optional<uint64_t> read_uint(const item& it, uint64_t lo, uint64_t hi) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    const std::string range = "between " + std::to_string(lo) + " and " + std::to_string(hi);
    uint64_t v = 0;
    const char* b = text->data();
    const char* e = b + text->size();
    auto [end, ec] = std::from_chars(b, e, v);
    const bool digits_only = !text->empty() && (*text)[0] != '-' && (*text)[0] != '+';
    if (!digits_only || end != e || (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
      fail(it.line, it.path, "expected a whole number " + range + ", got '" + *text + "'");
      return std::nullopt;
    }
    if (ec == std::errc::result_out_of_range || v < lo || v > hi) {
      fail(it.line, it.path, "must be " + range + ", got " + *text);
      return std::nullopt;
    }
    return v;
  }

  std::optional<size_t> read_enum(const item& it, std::initializer_list<std::string_view> names) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    size_t i = 0;
    for (std::string_view n : names) {
      if (n == *text) return i;
      ++i;
    }
    std::string list;
    for (std::string_view n : names) {
      if (!list.empty()) list += ", ";
      list += n;
    }
    fail(it.line, it.path, "'" + *text + "' is not one of: " + list);
    return std::nullopt;
  }

  std::optional<ip_address> read_ip(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    if (auto a = parse_ip_address(*text)) return a;
    fail(it.line, it.path, "'" + *text + "' is not an IPv4 or IPv6 address");
    return std::nullopt;
  }

  std::optional<ip_prefix> read_prefix(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    if (auto p = parse_ip_prefix(*text)) return p;
    // Say which part is wrong.
    const size_t slash = text->find('/');
    auto addr = slash == std::string::npos
                    ? std::nullopt
                    : parse_ip_address(std::string_view(*text).substr(0, slash));
    if (!addr) {
      fail(it.line, it.path, "'" + *text + "' is not a CIDR prefix (e.g. 203.0.113.0/24)");
      return std::nullopt;
    }
    const unsigned width = addr->is_v4() ? 32 : 128;
    unsigned len = 0;
    const std::string_view lt = std::string_view(*text).substr(slash + 1);
    auto [end, ec] = std::from_chars(lt.data(), lt.data() + lt.size(), len);
    if (lt.empty() || ec != std::errc{} || end != lt.data() + lt.size() || len > width) {
      fail(it.line, it.path,
           "'" + *text + "': prefix length must be 0.." + std::to_string(width) + " for " +
               family_name(*addr));
      return std::nullopt;
    }
    fail(it.line, it.path,
         "'" + *text + "' has host bits set (did you mean " +
             to_string(masked(*addr, static_cast<uint8_t>(len))) + "?)");
    return std::nullopt;
  }

  std::optional<mac_address> read_mac(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    if (auto m = parse_mac(*text)) return m;
    fail(it.line, it.path,
         "'" + *text + "' is not a MAC address (six hex pairs, e.g. 02:00:00:00:00:01)");
    return std::nullopt;
  }

  std::optional<uint32_t> read_duration(const item& it, uint32_t lo, uint32_t hi) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    uint32_t ms = 0;
    switch (parse_duration_detail(*text, ms)) {
      case duration_status::ok:
        break;
      case duration_status::negative:
        fail(it.line, it.path, "'" + *text + "': a duration must not be negative");
        return std::nullopt;
      case duration_status::overflow:
        fail(it.line, it.path,
             "'" + *text + "' is too long (at most " +
                 format_duration(std::numeric_limits<uint32_t>::max()) + ")");
        return std::nullopt;
      case duration_status::garbage:
        fail(it.line, it.path,
             "'" + *text +
                 "' is not a duration (e.g. 300s, 250ms, 5m, 1h, or a number "
                 "of seconds)");
        return std::nullopt;
    }
    if (ms < lo || ms > hi) {
      fail(it.line, it.path,
           (lo == 0 ? "must be at most " + format_duration(hi)
                    : "must be more than 0 and at most " + format_duration(hi)) +
               ", got " + *text);
      return std::nullopt;
    }
    return ms;
  }

  // Octal when quoted, prefixed 0o or written with a leading 0 ("0660", 0660, 0o660); a plain
  // number without a leading zero is decimal (432 == 0660).
  std::optional<uint32_t> read_mode(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    std::string_view t = *text;
    const bool quoted = it.node.Tag() == "!";
    int base = 10;
    if (t.size() > 2 && t[0] == '0' && (t[1] == 'o' || t[1] == 'O')) {
      base = 8;
      t.remove_prefix(2);
    } else if (quoted || (t.size() > 1 && t[0] == '0')) {
      base = 8;
    }
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v, base);
    if (t.empty() || ec != std::errc{} || end != t.data() + t.size()) {
      fail(it.line, it.path, "'" + *text + "' is not a file mode (e.g. \"0660\")");
      return std::nullopt;
    }
    if (v > max_socket_mode) {
      fail(it.line, it.path,
           "'" + *text + "' is above 0777" +
               (base == 10 ? std::string(" (a plain number without a leading 0 is decimal; write "
                                         "\"0") +
                                 *text + "\" for octal)"
                           : std::string()));
      return std::nullopt;
    }
    return v;
  }

  // ---- the schema ----

  void read_document(const YAML::Node& root, daemon_config& cfg) {
    auto top =
        read_map(item{root, "", 1}, {"dataplane", "control", "metrics", "hooks", "services"});
    if (!top) return;
    if (const item* d = top->find("dataplane")) read_dataplane(*d, cfg);
    if (const item* c = top->find("control")) read_control(*c, cfg);
    if (const item* m = top->find("metrics")) read_metrics(*m, cfg);
    if (const item* h = top->find("hooks")) read_hooks(*h, cfg);
    if (const item* s = top->find("services")) {
      if (auto list = read_list(*s)) {
        cfg.services.resize(list->size());
        for (size_t i = 0; i < list->size(); ++i) read_service((*list)[i], cfg.services[i]);
      }
    }
  }

  void read_strings(const item& it, std::vector<std::string>& out) {
    auto list = read_list(it);
    if (!list) return;
    for (const item& x : *list) {
      auto s = read_string(x);
      out.push_back(s ? *s : std::string());  // keep indices aligned with the document
    }
  }

  void read_dataplane(const item& it, daemon_config& cfg) {
    auto o = read_map(it, {"eal", "ports", "flow_table_size", "timeouts", "tunnel"});
    if (!o) return;
    if (const item* x = o->find("eal")) read_strings(*x, cfg.eal_args);
    if (const item* x = o->find("ports")) read_strings(*x, cfg.ports);
    if (const item* x = o->find("flow_table_size"))
      if (auto v = read_uint(*x, min_flow_table_size, max_flow_table_size))
        cfg.flow_table_size = *v;
    if (const item* x = o->find("timeouts")) {
      if (auto t = read_map(*x, {"tcp_syn", "tcp_established", "tcp_closing", "udp"})) {
        auto dur = [&](const char* key, uint32_t& out) {
          if (const item* y = t->find(key))
            if (auto v = read_duration(*y, 1, max_timeout_ms)) out = *v;
        };
        dur("tcp_syn", cfg.timeouts.tcp_syn_ms);
        dur("tcp_established", cfg.timeouts.tcp_established_ms);
        dur("tcp_closing", cfg.timeouts.tcp_closing_ms);
        dur("udp", cfg.timeouts.udp_ms);
      }
    }
    if (const item* x = o->find("tunnel")) {
      if (auto t = read_map(*x, {"source_v4", "source_v6", "nexthop_mac", "gue_port"})) {
        if (const item* y = t->find("source_v4")) cfg.tunnel.source_v4 = read_ip(*y);
        if (const item* y = t->find("source_v6")) cfg.tunnel.source_v6 = read_ip(*y);
        if (const item* y = t->find("nexthop_mac")) cfg.tunnel.nexthop_mac = read_mac(*y);
        if (const item* y = t->find("gue_port"))
          if (auto v = read_uint(*y, 1, 65535)) cfg.tunnel.gue_port = static_cast<uint16_t>(*v);
      }
    }
  }

  void read_control(const item& it, daemon_config& cfg) {
    auto o = read_map(it, {"socket", "owner", "group", "mode", "history_file"});
    if (!o) return;
    if (const item* x = o->find("socket"))
      if (auto s = read_string(*x)) cfg.socket.path = *s;
    if (const item* x = o->find("owner"))
      if (auto s = read_string(*x)) cfg.socket.owner = *s;
    if (const item* x = o->find("group"))
      if (auto s = read_string(*x)) cfg.socket.group = *s;
    if (const item* x = o->find("mode"))
      if (auto v = read_mode(*x)) cfg.socket.mode = *v;
    if (const item* x = o->find("history_file"))
      if (auto s = read_string(*x)) cfg.history_file = *s;
  }

  std::optional<bool> read_bool(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    if (*text == "true") return true;
    if (*text == "false") return false;
    fail(it.line, it.path, "expected true or false, got '" + *text + "'");
    return std::nullopt;
  }

  void read_metrics(const item& it, daemon_config& cfg) {
    auto o = read_map(it, {"enabled", "listen"});
    if (!o) return;
    if (const item* x = o->find("enabled"))
      if (auto v = read_bool(*x)) cfg.metrics.enabled = *v;
    if (const item* x = o->find("listen")) {
      auto text = read_string(*x);
      if (!text) return;
      // ADDRESS:PORT, with IPv6 in brackets: 127.0.0.1:9469, [::1]:9469.
      const std::string& t = *text;
      const size_t colon = t.rfind(':');
      std::string host = colon == std::string::npos ? std::string() : t.substr(0, colon);
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      else if (host.find(':') != std::string::npos)
        host.clear();  // IPv6 without brackets is ambiguous
      auto addr = parse_ip_address(host);
      uint32_t port = 0;
      const std::string pt = colon == std::string::npos ? std::string() : t.substr(colon + 1);
      auto [end, ec] = std::from_chars(pt.data(), pt.data() + pt.size(), port);
      if (!addr || pt.empty() || ec != std::errc{} || end != pt.data() + pt.size() || port > 65535) {
        fail(x->line, x->path,
             "'" + t + "' is not ADDRESS:PORT (e.g. 127.0.0.1:9469 or [::1]:9469)");
        return;
      }
      cfg.metrics.address = *addr;
      cfg.metrics.port = static_cast<uint16_t>(port);
    }
  }

  void read_hooks(const item& it, daemon_config& cfg) {
    auto o = read_map(it, {"timeout", "run"});
    if (!o) return;
    if (const item* x = o->find("timeout"))
      if (auto v = read_duration(*x, 1, max_hook_timeout_ms)) cfg.hooks.timeout_ms = *v;
    if (const item* x = o->find("run")) {
      auto list = read_list(*x);
      if (!list) return;
      cfg.hooks.hooks.resize(list->size());
      for (size_t k = 0; k < list->size(); ++k) {
        const item& e = (*list)[k];
        hook& h = cfg.hooks.hooks[k];
        auto m = read_map(e, {"command", "url", "events"});
        if (!m) continue;
        if (const item* y = m->find("command")) {
          if (auto v = read_string(*y)) {
            if (v->empty()) fail(y->line, y->path, "must not be empty");
            else h.command = *v;
          }
        }
        if (const item* y = m->find("url")) {
          if (auto v = read_string(*y)) {
            if (!parse_http_url(*v))
              fail(y->line, y->path,
                   "'" + *v +
                       "' is not an http:// URL with an IP address (e.g. "
                       "http://127.0.0.1:9000/hook; https and host names are not supported)");
            else
              h.url = *v;
          }
        }
        if (!m->find("command") && !m->find("url"))
          fail(e.line, e.path, "give exactly one of command and url");
        else if (m->find("command") && m->find("url"))
          fail(e.line, e.path, "give exactly one of command and url, not both");
        if (const item* y = m->find("events")) read_strings(*y, h.events);
      }
    }
  }

  // "0.8", "1", "0", "0.75" -> share x 10000.
  std::optional<uint32_t> read_share(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    const std::string& t = *text;
    const size_t dot = t.find('.');
    const std::string whole = t.substr(0, dot);
    std::string frac = dot == std::string::npos ? std::string() : t.substr(dot + 1);
    auto digits = [](const std::string& x) {
      return std::all_of(x.begin(), x.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (whole.empty() || whole.size() > 1 || !digits(whole) || !digits(frac) ||
        (dot != std::string::npos && frac.empty()) || frac.size() > 4) {
      fail(it.line, it.path, "expected a share between 0 and 1 (e.g. 0.8), got '" + t + "'");
      return std::nullopt;
    }
    while (frac.size() < 4) frac += '0';
    const uint32_t bp = static_cast<uint32_t>(whole[0] - '0') * 10000 +
                        static_cast<uint32_t>(std::stoul(frac));
    if (bp > 10000) {
      fail(it.line, it.path, "must be between 0 and 1, got " + t);
      return std::nullopt;
    }
    return bp;
  }

  void read_health(const item& it, service& s) {
    auto o = read_map(it, {"check", "port", "path", "host", "expect_status", "interval", "timeout",
                           "rise", "fall", "min_healthy_to_switch", "bake_min_healthy"});
    if (!o) return;
    health_check h;
    if (const item* x = o->find("check"))
      if (auto v = read_enum(*x, {"tcp", "http"})) h.kind = static_cast<health_check_kind>(*v);
    if (const item* x = o->find("port"))
      if (auto v = read_uint(*x, 1, 65535)) h.port = static_cast<uint16_t>(*v);
    if (const item* x = o->find("path"))
      if (auto v = read_string(*x)) h.path = *v;
    if (const item* x = o->find("host"))
      if (auto v = read_string(*x)) h.host = *v;
    if (const item* x = o->find("expect_status")) {
      if (auto v = read_string(*x)) {
        const size_t dash = v->find('-');
        const std::string a = v->substr(0, dash);
        const std::string b = dash == std::string::npos ? a : v->substr(dash + 1);
        unsigned lo = 0, hi = 0;
        auto [e1, c1] = std::from_chars(a.data(), a.data() + a.size(), lo);
        auto [e2, c2] = std::from_chars(b.data(), b.data() + b.size(), hi);
        if (a.empty() || b.empty() || c1 != std::errc{} || c2 != std::errc{} ||
            e1 != a.data() + a.size() || e2 != b.data() + b.size() || lo < 100 || hi > 599 ||
            lo > hi)
          fail(x->line, x->path,
               "expected a status or a range within 100-599 (e.g. 200 or 200-399), got '" + *v +
                   "'");
        else
          h.status_min = static_cast<uint16_t>(lo), h.status_max = static_cast<uint16_t>(hi);
      }
    }
    if (const item* x = o->find("interval"))
      if (auto v = read_duration(*x, min_health_interval_ms, max_health_interval_ms))
        h.interval_ms = *v;
    if (const item* x = o->find("timeout"))
      if (auto v = read_duration(*x, 1, max_health_interval_ms)) h.timeout_ms = *v;
    if (const item* x = o->find("rise"))
      if (auto v = read_uint(*x, 1, max_rise_fall)) h.rise = static_cast<uint32_t>(*v);
    if (const item* x = o->find("fall"))
      if (auto v = read_uint(*x, 1, max_rise_fall)) h.fall = static_cast<uint32_t>(*v);
    if (const item* x = o->find("min_healthy_to_switch"))
      if (auto v = read_uint(*x, 0, max_backends)) h.min_healthy_to_switch = static_cast<uint32_t>(*v);
    if (const item* x = o->find("bake_min_healthy"))
      if (auto v = read_share(*x)) h.bake_min_healthy_bp = *v;
    s.health = h;
  }

  void read_service(const item& it, service& s) {
    auto o = read_map(it, {"name", "vip", "protocol", "port", "forwarding", "maglev_size", "active",
                           "canary", "segments", "preview", "drain", "pools", "health"});
    if (!o) return;
    require(*o, {"name", "vip", "port"});
    if (const item* x = o->find("name")) {
      if (auto n = read_string(*x)) {
        if (valid_name(*n))
          s.name = *n;
        else
          fail(x->line, x->path,
               "'" + *n + "' is not a valid name: 1 to 63 characters of a-z 0-9 _ -");
      }
    }
    if (const item* x = o->find("vip")) {
      if (auto a = read_ip(*x)) s.vip = *a;
    }
    if (const item* x = o->find("protocol"))
      if (auto v = read_enum(*x, {"tcp", "udp"})) s.proto = *v == 0 ? 6 : 17;
    if (const item* x = o->find("port"))
      if (auto v = read_uint(*x, 0, 65535)) s.port = static_cast<uint16_t>(*v);
    if (const item* x = o->find("forwarding"))
      if (auto v = read_enum(*x, {"l2", "ipip", "gue"})) s.mode = static_cast<forwarding_mode>(*v);
    if (const item* x = o->find("maglev_size"))
      if (auto v = read_uint(*x, 1, max_maglev_size)) s.maglev_size = static_cast<uint32_t>(*v);
    if (const item* x = o->find("active"))
      if (auto v = read_enum(*x, {"blue", "green"})) s.active = static_cast<colour>(*v);
    if (const item* x = o->find("canary")) {
      if (auto c = read_map(*x, {"percent"})) {
        if (const item* p = c->find("percent"))
          if (auto bp = read_percent(*p)) s.canary_basis_points = *bp;
      }
    }
    if (const item* x = o->find("segments")) {
      if (auto list = read_list(*x)) {
        s.segments.resize(list->size());
        for (size_t k = 0; k < list->size(); ++k) read_segment((*list)[k], s.segments[k]);
      }
    }
    if (const item* x = o->find("preview")) read_preview(*x, s, o->find("vip") != nullptr);
    if (const item* x = o->find("drain")) {
      if (auto d = read_map(*x, {"timeout", "on_timeout", "spread"})) {
        if (const item* y = d->find("timeout"))
          if (auto v = read_duration(*y, 0, max_timeout_ms)) s.drain.timeout_ms = *v;
        if (const item* y = d->find("on_timeout"))
          if (auto v = read_enum(*y, {"keep", "expire", "reset"}))
            s.drain.on_timeout = static_cast<drain_action>(*v);
        if (const item* y = d->find("spread"))
          if (auto v = read_duration(*y, 0, max_timeout_ms)) s.drain.spread_ms = *v;
      }
    }
    if (const item* x = o->find("health")) read_health(*x, s);
    if (const item* x = o->find("pools")) {
      if (auto p = read_map(*x, {"blue", "green"})) {
        for (colour c : {colour::blue, colour::green}) {
          const item* y = p->find(colour_name(c));
          if (!y) continue;
          auto list = read_list(*y);
          if (!list) continue;
          std::vector<backend>& pool = s.pool(c);
          pool.resize(list->size());
          for (size_t k = 0; k < list->size(); ++k) read_backend((*list)[k], pool[k]);
        }
      }
    }
  }

  // "10", "12.5", "0.25" -> basis points.
  std::optional<uint32_t> read_percent(const item& it) {
    auto text = read_string(it);
    if (!text) return std::nullopt;
    const std::string& t = *text;
    const size_t dot = t.find('.');
    const std::string whole = t.substr(0, dot);
    const std::string frac = dot == std::string::npos ? std::string() : t.substr(dot + 1);
    auto all_digits = [](const std::string& s) {
      return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (whole.empty() || whole.size() > 3 || !all_digits(whole) || !all_digits(frac) ||
        (dot != std::string::npos && frac.empty())) {
      fail(it.line, it.path,
           "expected a percentage 0..100 with up to two decimals, got '" + t + "'");
      return std::nullopt;
    }
    if (frac.size() > 2) {
      fail(it.line, it.path, "'" + t + "' has more than two decimals (the unit is 0.01%)");
      return std::nullopt;
    }
    uint32_t bp = static_cast<uint32_t>(std::stoul(whole)) * 100;
    if (!frac.empty()) bp += static_cast<uint32_t>(std::stoul(frac)) * (frac.size() == 1 ? 10 : 1);
    if (bp > max_canary_basis_points) {
      fail(it.line, it.path, "must be between 0 and 100, got " + t);
      return std::nullopt;
    }
    return bp;
  }

  void read_segment(const item& it, segment& seg) {
    auto o = read_map(it, {"cidr", "to"});
    if (!o) return;
    require(*o, {"cidr", "to"});
    if (const item* x = o->find("cidr"))
      if (auto p = read_prefix(*x)) seg.prefix = *p;
    if (const item* x = o->find("to"))
      if (auto v = read_enum(*x, {"blue", "green"})) seg.to = static_cast<colour>(*v);
  }

  void read_preview(const item& it, service& s, bool vip_given) {
    auto o = read_map(it, {"vip", "port"});
    if (!o) return;
    require(*o, {"port"});
    preview_listener pv;
    if (const item* x = o->find("vip")) {
      if (auto a = read_ip(*x)) pv.vip = *a;
    } else {
      // Defaults to the service's vip; unusable when that one is.
      pv.vip = s.vip;
      const std::string svc_vip = it.path.substr(0, it.path.rfind('.')) + ".vip";
      if (!vip_given || rejected(svc_vip)) poison(join_path(it.path, "vip"));
    }
    if (const item* x = o->find("port"))
      if (auto v = read_uint(*x, 0, 65535)) pv.port = static_cast<uint16_t>(*v);
    s.preview = pv;
  }

  void read_backend(const item& it, backend& b) {
    auto o = read_map(it, {"address", "weight", "mac", "state"});
    if (!o) return;
    require(*o, {"address"});
    if (const item* x = o->find("address"))
      if (auto a = read_ip(*x)) b.address = *a;
    if (const item* x = o->find("weight"))
      if (auto v = read_uint(*x, 0, max_weight)) b.weight = static_cast<uint32_t>(*v);
    if (const item* x = o->find("mac")) b.mac = read_mac(*x);
    if (const item* x = o->find("state"))
      if (auto v = read_enum(*x, {"ready", "drain", "maint"}))
        b.state = static_cast<backend_admin_state>(*v);
  }

 private:
  std::string file_;
  std::vector<std::pair<int, std::string>> errors_;
  std::map<std::string, int, std::less<>> lines_;
  std::set<std::string, std::less<>> rejected_;
};

}  // namespace

// ---- public API -------------------------------------------------------------------------

const char* backend_admin_state_name(backend_admin_state s) {
  switch (s) {
    case backend_admin_state::ready:
      return "ready";
    case backend_admin_state::drain:
      return "drain";
    case backend_admin_state::maint:
      return "maint";
  }
  return "?";
}

const char* health_check_kind_name(health_check_kind k) {
  return k == health_check_kind::http ? "http" : "tcp";
}

std::optional<http_url> parse_http_url(std::string_view text) {
  constexpr std::string_view scheme = "http://";
  if (text.size() > max_http_text || text.substr(0, scheme.size()) != scheme || !http_safe(text))
    return std::nullopt;
  std::string_view rest = text.substr(scheme.size());
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  http_url u;
  u.path = slash == std::string_view::npos ? std::string("/") : std::string(rest.substr(slash));
  u.host = std::string(authority);
  std::string_view host = authority, port;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    port = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!port.empty() && port.front() != ':') return std::nullopt;
  } else {
    const size_t colon = host.find(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon);
      host = host.substr(0, colon);
    }
  }
  auto addr = parse_ip_address(host);
  if (!addr) return std::nullopt;
  u.address = *addr;
  if (!port.empty()) {
    port.remove_prefix(1);
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || p == 0 || p > 65535)
      return std::nullopt;
    u.port = static_cast<uint16_t>(p);
  }
  return u;
}

std::optional<mac_address> parse_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  mac_address m;
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[i * 3 - 1] != ':') return std::nullopt;
    uint8_t v = 0;
    for (size_t j = 0; j < 2; ++j) {
      const char c = text[i * 3 + j];
      uint8_t d;
      if (c >= '0' && c <= '9')
        d = static_cast<uint8_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        d = static_cast<uint8_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        d = static_cast<uint8_t>(c - 'A' + 10);
      else
        return std::nullopt;
      v = static_cast<uint8_t>(v * 16 + d);
    }
    m.bytes[i] = v;
  }
  return m;
}

std::string to_string(const mac_address& m) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  s.reserve(17);
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0) s += ':';
    s += hex[m.bytes[i] >> 4];
    s += hex[m.bytes[i] & 0xf];
  }
  return s;
}

std::optional<uint32_t> parse_duration_ms(std::string_view text) {
  uint32_t ms = 0;
  if (parse_duration_detail(text, ms) != duration_status::ok) return std::nullopt;
  return ms;
}

// The largest unit that is exact; minutes only from 10m up so 300000 reads "300s" as people
// write drain timeouts. parse_duration_ms(format_duration(x)) == x for every x.
std::string format_duration(uint32_t ms) {
  if (ms == 0) return "0s";
  if (ms % ms_per_h == 0) return std::to_string(ms / ms_per_h) + "h";
  if (ms % ms_per_m == 0 && ms >= 10 * ms_per_m) return std::to_string(ms / ms_per_m) + "m";
  if (ms % ms_per_s == 0) return std::to_string(ms / ms_per_s) + "s";
  return std::to_string(ms) + "ms";
}

status validate(const daemon_config& cfg) {
  checker c(cfg, nullptr);
  std::string out;
  for (const issue& is : c.run()) {
    if (!out.empty()) out += '\n';
    if (is.service >= 0) out += service_label(cfg, static_cast<size_t>(is.service)) + ": ";
    out += is.path + ": " + is.message;
  }
  if (out.empty()) return ok_status();
  return make_error(std::move(out));
}

namespace {

// Where each document of a YAML stream starts (its first node), from the parser's events.
class document_starts : public YAML::EventHandler {
 public:
  YAML::Mark first;  // null until the document's first node
  void OnDocumentStart(const YAML::Mark& m) override { start_ = m; first = YAML::Mark::null_mark(); }
  void OnDocumentEnd() override {
    if (first.is_null()) first = start_;
  }
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { note(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { note(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& m) {
    if (first.is_null()) first = m;
  }
  YAML::Mark start_ = YAML::Mark::null_mark();
};

struct yaml_documents {
  YAML::Node first;                 // the first document (null when there is none)
  size_t count = 0;                 // how many documents the stream holds (up to max_documents)
  int second_line = 1;              // 1-based line of the second document's first node
  static constexpr size_t max_documents = 64;
};

// YAML::LoadAll, bounded. In yaml-cpp 0.7 (Debian 12) LoadAll never returns on some malformed
// streams, e.g. one that starts with a ',' (jbeder/yaml-cpp#1040, fixed upstream by #1319): the
// parser hands back the same empty document forever, allocating each time, so one bad `tandemctl
// apply` would take the daemon's memory. Here the documents are counted through the parser's
// events instead; a document that starts where the previous one did is that loop, and becomes a
// syntax error at that place.
yaml_documents load_documents(const std::string& text) {
  yaml_documents out;
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_starts starts;
  YAML::Mark previous = YAML::Mark::null_mark();
  while (out.count < yaml_documents::max_documents && parser.HandleNextDocument(starts)) {
    if (!previous.is_null() && starts.first.pos == previous.pos)
      throw YAML::ParserException(starts.first, "unexpected character here");
    if (++out.count == 2) out.second_line = starts.first.is_null() ? 1 : starts.first.line + 1;
    previous = starts.first;
  }
  if (out.count == 1) out.first = YAML::Load(text);
  return out;
}

}  // namespace

result<daemon_config> parse_config(std::string_view yaml_text, std::string_view file_name) {
  const std::string file(file_name);
  yaml_reader reader(file_name);
  daemon_config cfg;
  try {
    const yaml_documents docs = load_documents(std::string(yaml_text));
    if (docs.count > 1) {
      reader.fail(docs.second_line, "",
                  "the file holds " +
                      (docs.count >= yaml_documents::max_documents
                           ? "at least " + std::to_string(docs.count)
                           : std::to_string(docs.count)) +
                      " YAML documents; expected one");
    } else if (docs.count == 1) {
      reader.read_document(docs.first, cfg);
    }
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() ? 1 : e.mark.line + 1;
    return make_error(file + ":" + std::to_string(line) + ": YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    return make_error(file + ":1: cannot parse: " + std::string(e.what()));
  }

  checker c(cfg, [&reader](int svc, std::string_view path) {
    if (svc < 0) return reader.rejected(path);
    return reader.rejected("services[" + std::to_string(svc) + "]." + std::string(path));
  });
  for (const issue& is : c.run()) {
    reader.add_located(
        is.service < 0 ? is.path : "services[" + std::to_string(is.service) + "]." + is.path,
        is.message);
  }
  if (reader.has_errors()) return make_error(reader.render());
  return cfg;
}

result<daemon_config> load_config(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return make_error("cannot read " + path + ": " + std::generic_category().message(errno));
  std::string text;
  char buf[1 << 14];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return make_error("cannot read " + path + ": " + std::generic_category().message(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return parse_config(text, path);
}

}  // namespace tandem::config
