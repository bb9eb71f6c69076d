// The declarative configuration: what tandemd runs and what `tandemctl apply` converges to.
// Plain value types; parse_config() validates everything and reports `file:line: field: what`.
#pragma once

#include <rte_ether.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/generation.h"
#include "dataplane/ip_address.h"
#include "dataplane/result.h"

namespace tandem::config {

enum class backend_admin_state : uint8_t { ready = 0, drain, maint };
const char* backend_admin_state_name(backend_admin_state s);

struct mac_address {
  uint8_t bytes[6] = {};
  friend bool operator==(const mac_address&, const mac_address&) = default;
};
std::optional<mac_address> parse_mac(std::string_view text);  // "02:00:00:00:00:01"
std::string to_string(const mac_address& m);

struct backend {
  ip_address address;
  uint32_t weight = 1;                 // 0..65535; 0 = in the pool but takes no new flows
  std::optional<mac_address> mac;      // required when the service's forwarding is l2
  backend_admin_state state = backend_admin_state::ready;
  friend bool operator==(const backend&, const backend&) = default;
};

struct segment {
  ip_prefix prefix;
  colour to = colour::green;
  friend bool operator==(const segment&, const segment&) = default;
};

struct preview_listener {
  ip_address vip;
  uint16_t port = 0;
  friend bool operator==(const preview_listener&, const preview_listener&) = default;
};

struct drain_policy {
  uint32_t timeout_ms = 300'000;
  drain_action on_timeout = drain_action::keep;
  uint32_t spread_ms = 0;
  friend bool operator==(const drain_policy&, const drain_policy&) = default;
};

// Active health checks of every backend of a service (both pools), run by tandemd's control
// plane from the host's network stack against the backend's own address.
enum class health_check_kind : uint8_t { tcp = 0, http };
const char* health_check_kind_name(health_check_kind k);

struct health_check {
  health_check_kind kind = health_check_kind::tcp;
  uint16_t port = 0;                   // 0 = the service's port
  std::string path = "/";              // http: request target
  std::string host;                    // http: Host header; empty = the backend address
  uint16_t status_min = 200;           // http: expected status range, inclusive
  uint16_t status_max = 399;
  uint32_t interval_ms = 2000;
  uint32_t timeout_ms = 1000;          // <= interval
  uint32_t rise = 2;                   // consecutive successes to be up
  uint32_t fall = 3;                   // consecutive failures to be down
  uint32_t min_healthy_to_switch = 1;  // `switch` refuses (unless forced) below this many up
  uint32_t bake_min_healthy_bp = 8000; // default --min-healthy of a bake, share x 10000
  friend bool operator==(const health_check&, const health_check&) = default;
};

struct service {
  std::string name;                    // [a-z0-9_-]{1,63}, unique
  ip_address vip;
  uint8_t proto = 6;                   // 6 = tcp, 17 = udp
  uint16_t port = 0;                   // 0 = any port
  forwarding_mode mode = forwarding_mode::l2;
  uint32_t maglev_size = default_maglev_size;  // prime, >= 100 * backends per pool
  std::vector<backend> blue;
  std::vector<backend> green;
  colour active = colour::blue;
  uint32_t canary_basis_points = 0;    // share of new flows to the idle colour, 0..10000
  std::vector<segment> segments;
  std::optional<preview_listener> preview;
  drain_policy drain;
  std::optional<health_check> health;  // none = no checks: every backend counts as up
  friend bool operator==(const service&, const service&) = default;

  std::vector<backend>& pool(colour c) { return c == colour::blue ? blue : green; }
  const std::vector<backend>& pool(colour c) const { return c == colour::blue ? blue : green; }
};

struct control_socket {
  std::string path = "/run/tandem/tandemd.sock";
  std::string owner;   // user name or numeric uid; empty = leave as created
  std::string group;   // group name or numeric gid; empty = leave as created
  uint32_t mode = 0660;
  friend bool operator==(const control_socket&, const control_socket&) = default;
};

struct tunnel_settings {
  std::optional<ip_address> source_v4;
  std::optional<ip_address> source_v6;
  std::optional<mac_address> nexthop_mac;
  uint16_t gue_port = 6080;
  friend bool operator==(const tunnel_settings&, const tunnel_settings&) = default;
};

// The Prometheus endpoint (GET /metrics).
struct metrics_settings {
  bool enabled = true;
  ip_address address = *parse_ip_address("127.0.0.1");  // loopback only by default
  uint16_t port = 9469;
  friend bool operator==(const metrics_settings&, const metrics_settings&) = default;
};

// Event hooks: a shell command (JSON event on stdin) or an HTTP POST (JSON body) per event.
inline constexpr const char* hook_event_names[] = {"switch",         "rollback",      "auto-rollback",
                                                   "drain-complete", "drain-timeout", "health-change",
                                                   "promote"};
struct hook {
  std::string command;              // run with /bin/sh -c; exactly one of command and url
  std::string url;                  // http://ADDRESS[:PORT][/PATH], an IP literal
  std::vector<std::string> events;  // empty = every event
  friend bool operator==(const hook&, const hook&) = default;
};
struct hook_settings {
  uint32_t timeout_ms = 10'000;     // a command or POST taking longer is killed / abandoned
  std::vector<hook> hooks;
  friend bool operator==(const hook_settings&, const hook_settings&) = default;
};

// Parts of a hook URL (http only); nullopt when the text is not one.
struct http_url {
  ip_address address;
  uint16_t port = 80;
  std::string path = "/";
  std::string host;                 // as written, for the Host header
};
std::optional<http_url> parse_http_url(std::string_view text);

struct daemon_config {
  // dataplane
  std::vector<std::string> eal_args;   // used when tandemd gets no EAL arguments on its command line
  std::vector<std::string> ports;      // DPDK device names to use; empty = every probed port
  // Slots per worker: 1 M (2^20) flows at 80 % load, 62.5 MiB (50 bytes per slot).
  uint64_t flow_table_size = 1'310'720;
  flow_timeouts timeouts;
  tunnel_settings tunnel;
  // control
  control_socket socket;
  std::string history_file;            // empty = in memory only
  metrics_settings metrics;
  hook_settings hooks;
  // services
  std::vector<service> services;
  friend bool operator==(const daemon_config&, const daemon_config&) = default;
};

// Parses and validates YAML text. Errors: "<file_name>:<line>: <field path>: <what is wrong>",
// one per line when there are several. Nothing is returned unless everything is valid.
result<daemon_config> parse_config(std::string_view yaml_text, std::string_view file_name);
result<daemon_config> load_config(const std::string& path);

// Cross-field validation shared with runtime changes (e.g. tandemctl pool add):
// unique names and listeners, maglev size vs pool sizes, MACs for l2, tunnel sources for
// ipip/gue. Errors name the service and field.
status validate(const daemon_config& cfg);

// Durations as written in the file: "300s", "250ms", "5m", "1h" or a bare number of seconds.
std::optional<uint32_t> parse_duration_ms(std::string_view text);
std::string format_duration(uint32_t ms);

}  // namespace tandem::config
