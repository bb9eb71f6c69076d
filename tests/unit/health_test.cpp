// Health checks, bake windows, hooks and the metrics endpoint (issue 5), without a dataplane:
// config parsing, the rise/fall state machine, the checker against real loopback listeners,
// the controller's health/bake logic driven with synthetic results, the Prometheus writer and
// HTTP server (promtool when installed), and hooks running real commands and POSTs.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "control/config.h"
#include "control/controller.h"
#include "control/health_checker.h"
#include "control/hooks.h"
#include "control/metrics.h"
#include "control/protocol.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "tests/support/eal_fixture.h"
#include "tests/support/health_server.h"

namespace tandem {
namespace {

using json = nlohmann::json;
using test::backend_mode;
using test::loopback_backend;

// A port for this process's loopback listeners: parallel test binaries must not collide.
uint16_t test_port(int offset) {
  return static_cast<uint16_t>(20000 + (::getpid() * 7 + offset) % 20000);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("tandem-health-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

template <typename P>
bool eventually(P pred, int timeout_ms = 10000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// ---------------------------------------------------------------------------------------------
// Configuration

const char* good_yaml = R"(
metrics:
  listen: "127.0.0.1:9555"
hooks:
  timeout: 3s
  run:
    - command: "logger -t tandem"
      events: [switch, auto-rollback]
    - url: http://127.0.0.1:9000/tandem
services:
  - name: web
    vip: 198.51.100.10
    port: 80
    maglev_size: 1009
    health:
      check: http
      port: 8080
      path: /healthz
      host: web.example
      expect_status: 200-299
      interval: 500ms
      timeout: 200ms
      rise: 3
      fall: 2
      min_healthy_to_switch: 2
      bake_min_healthy: 0.75
    pools:
      blue:
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01"}
)";

TEST(HealthConfig, ParsesHealthMetricsAndHooks) {
  auto cfg = config::parse_config(good_yaml, "t.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.error_message();
  ASSERT_TRUE(cfg->services[0].health.has_value());
  const auto& h = *cfg->services[0].health;
  EXPECT_EQ(h.kind, config::health_check_kind::http);
  EXPECT_EQ(h.port, 8080);
  EXPECT_EQ(h.path, "/healthz");
  EXPECT_EQ(h.host, "web.example");
  EXPECT_EQ(h.status_min, 200);
  EXPECT_EQ(h.status_max, 299);
  EXPECT_EQ(h.interval_ms, 500u);
  EXPECT_EQ(h.timeout_ms, 200u);
  EXPECT_EQ(h.rise, 3u);
  EXPECT_EQ(h.fall, 2u);
  EXPECT_EQ(h.min_healthy_to_switch, 2u);
  EXPECT_EQ(h.bake_min_healthy_bp, 7500u);
  EXPECT_EQ(to_string(cfg->metrics.address), "127.0.0.1");
  EXPECT_EQ(cfg->metrics.port, 9555);
  EXPECT_TRUE(cfg->metrics.enabled);
  EXPECT_EQ(cfg->hooks.timeout_ms, 3000u);
  ASSERT_EQ(cfg->hooks.hooks.size(), 2u);
  EXPECT_EQ(cfg->hooks.hooks[0].command, "logger -t tandem");
  EXPECT_EQ(cfg->hooks.hooks[0].events, (std::vector<std::string>{"switch", "auto-rollback"}));
  EXPECT_EQ(cfg->hooks.hooks[1].url, "http://127.0.0.1:9000/tandem");
  EXPECT_TRUE(cfg->hooks.hooks[1].events.empty());
}

TEST(HealthConfig, DefaultsWhenSectionsAreEmptyOrAbsent) {
  auto cfg = config::parse_config(
      "services:\n  - {name: a, vip: 198.51.100.1, port: 80, health: {}}\n"
      "  - {name: b, vip: 198.51.100.2, port: 80}\n",
      "d.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.error_message();
  ASSERT_TRUE(cfg->services[0].health.has_value());
  EXPECT_EQ(*cfg->services[0].health, config::health_check{});
  EXPECT_EQ(cfg->services[0].health->kind, config::health_check_kind::tcp);
  EXPECT_FALSE(cfg->services[1].health.has_value());
  EXPECT_EQ(to_string(cfg->metrics.address), "127.0.0.1");
  EXPECT_EQ(cfg->metrics.port, 9469);
  EXPECT_TRUE(cfg->hooks.hooks.empty());
  auto ipv6 = config::parse_config("metrics: {listen: \"[::1]:9470\", enabled: false}\n", "m.yaml");
  ASSERT_TRUE(ipv6.ok()) << ipv6.error_message();
  EXPECT_EQ(to_string(ipv6->metrics.address), "::1");
  EXPECT_FALSE(ipv6->metrics.enabled);
}

struct bad_case {
  const char* yaml;
  const char* expected;  // a substring of the error
};

TEST(HealthConfig, ErrorsNameFileLineAndField) {
  const std::string svc = "services:\n  - name: web\n    vip: 198.51.100.10\n    port: 80\n";
  const bad_case cases[] = {
      {"    health: {intervall: 1s}\n",
       "b.yaml:5: services[0].health.intervall: unknown key 'intervall'"},
      {"    health: {intervall: 1s}\n", "did you mean 'interval'?"},
      {"    health: {interval: 1s, timeout: 2s}\n",
       "b.yaml:5: services[0].health.timeout: 2s is longer than health.interval (1s)"},
      {"    health: {check: udp}\n", "services[0].health.check: 'udp' is not one of: tcp, http"},
      {"    health: {check: http, expect_status: 200-99}\n",
       "services[0].health.expect_status: expected a status or a range within 100-599"},
      {"    health: {check: http, path: healthz}\n",
       "services[0].health.path: 'healthz' is not a request path"},
      {"    health: {path: /x}\n", "services[0].health.check: path and host apply to http checks only"},
      {"    health: {rise: 0}\n", "services[0].health.rise: must be between 1 and 100, got 0"},
      {"    health: {interval: 10ms}\n", "services[0].health.interval: must be"},
      {"    health: {bake_min_healthy: 1.5}\n", "services[0].health.bake_min_healthy: must be between 0 and 1"},
      {"    health: {bake_min_healthy: 80%}\n", "expected a share between 0 and 1"},
      {"    protocol: udp\n    health: {check: tcp}\n",
       "b.yaml:6: services[0].health.port: required for a udp service"},
  };
  for (const auto& c : cases) {
    auto r = config::parse_config(svc + c.yaml, "b.yaml");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.error_message().find(c.expected), std::string::npos)
        << "for\n" << c.yaml << "got: " << r.error_message();
  }
  auto any_port = config::parse_config(
      "services:\n  - name: web\n    vip: 198.51.100.10\n    port: 0\n    health: {check: tcp}\n",
      "p.yaml");
  ASSERT_FALSE(any_port.ok());
  EXPECT_NE(any_port.error_message().find("p.yaml:5: services[0].health.port: required when the "
                                          "service's port is 0"),
            std::string::npos)
      << any_port.error_message();

  const bad_case top[] = {
      {"metrics: {listen: \"localhost:9469\"}\n", "m.yaml:1: metrics.listen: 'localhost:9469' is not ADDRESS:PORT"},
      {"metrics: {listen: \"::1:9469\"}\n", "metrics.listen: '::1:9469' is not ADDRESS:PORT"},
      {"metrics: {listen: \"127.0.0.1:0\"}\n", "metrics.listen: port must be between 1 and 65535"},
      {"metrics: {enabled: yes}\n", "metrics.enabled: expected true or false"},
      {"hooks:\n  run:\n    - {command: x, url: \"http://127.0.0.1/\"}\n",
       "m.yaml:3: hooks.run[0]: give exactly one of command and url, not both"},
      {"hooks:\n  run:\n    - {events: [switch]}\n", "hooks.run[0]: give exactly one of command and url"},
      {"hooks:\n  run:\n    - {url: \"https://127.0.0.1/x\"}\n",
       "m.yaml:3: hooks.run[0].url: 'https://127.0.0.1/x' is not an http:// URL with an IP address"},
      {"hooks:\n  run:\n    - {url: \"http://example.com/x\"}\n", "is not an http:// URL with an IP address"},
      {"hooks:\n  run:\n    - {command: x, events: [switch, swtich]}\n",
       "hooks.run[0].events[1]: 'swtich' is not one of: switch, rollback, auto-rollback"},
      {"hooks:\n  run:\n    - {command: x, events: [switch, switch]}\n",
       "hooks.run[0].events[1]: duplicate event 'switch'"},
      {"hooks: {timeout: 0s}\n", "hooks.timeout: must be more than 0"},
  };
  for (const auto& c : top) {
    auto r = config::parse_config(c.yaml, "m.yaml");
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.error_message().find(c.expected), std::string::npos)
        << "for\n" << c.yaml << "got: " << r.error_message();
  }
}

TEST(HealthConfig, ValidateChecksRuntimeValuesToo) {
  auto cfg = config::parse_config(good_yaml, "t.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.error_message();
  cfg->services[0].health->timeout_ms = 5000;  // longer than the 500ms interval
  auto v = config::validate(*cfg);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error_message().find("service web: health.timeout: 5s is longer than health.interval"),
            std::string::npos)
      << v.error_message();
}

TEST(HealthConfig, HttpUrlParser) {
  auto u = config::parse_http_url("http://127.0.0.1:9000/a/b?c=d");
  ASSERT_TRUE(u);
  EXPECT_EQ(to_string(u->address), "127.0.0.1");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->path, "/a/b?c=d");
  EXPECT_EQ(u->host, "127.0.0.1:9000");
  auto v6 = config::parse_http_url("http://[::1]/");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->port, 80);
  EXPECT_EQ(to_string(v6->address), "::1");
  for (const char* bad : {"https://127.0.0.1/", "http://host/", "http://127.0.0.1:0/",
                          "http://127.0.0.1:70000/", "http://[::1/", "http://127.0.0.1/a b", "ftp://x"})
    EXPECT_FALSE(config::parse_http_url(bad)) << bad;
}

// ---------------------------------------------------------------------------------------------
// Rise/fall

health_result result_of(uint32_t id, bool ok, const char* detail = "x") {
  health_result r;
  r.backend_id = id;
  r.ok = ok;
  r.detail = detail;
  r.latency_us = 1500;
  r.at = std::chrono::system_clock::now();
  return r;
}

TEST(HealthState, RiseAndFallDampFlapping) {
  backend_health h;
  const uint32_t rise = 2, fall = 3;
  EXPECT_EQ(h.state, health_state::unknown);
  EXPECT_FALSE(h.apply(result_of(0, true), rise, fall));
  EXPECT_EQ(h.state, health_state::unknown) << "one success is not enough with rise 2";
  EXPECT_TRUE(h.apply(result_of(0, true), rise, fall));
  EXPECT_EQ(h.state, health_state::up);
  // Alternating results never take it down.
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(h.apply(result_of(0, i % 2 == 1, "flap"), rise, fall));
    EXPECT_EQ(h.state, health_state::up);
  }
  EXPECT_FALSE(h.apply(result_of(0, false), rise, fall));
  EXPECT_FALSE(h.apply(result_of(0, false), rise, fall));
  EXPECT_TRUE(h.apply(result_of(0, false, "refused"), rise, fall));
  EXPECT_EQ(h.state, health_state::down);
  EXPECT_EQ(h.last_result, "refused");
  EXPECT_EQ(h.latency_us, 1500u);
  EXPECT_FALSE(h.apply(result_of(0, true), rise, fall));
  EXPECT_EQ(h.state, health_state::down);
  EXPECT_TRUE(h.apply(result_of(0, true), rise, fall));
  EXPECT_EQ(h.state, health_state::up);
  EXPECT_EQ(h.checks_ok + h.checks_failed, 17u);
  // From unknown, `fall` failures make it down.
  backend_health fresh;
  EXPECT_FALSE(fresh.apply(result_of(0, false), rise, fall));
  EXPECT_FALSE(fresh.apply(result_of(0, false), rise, fall));
  EXPECT_TRUE(fresh.apply(result_of(0, false), rise, fall));
  EXPECT_EQ(fresh.state, health_state::down);
}

// ---------------------------------------------------------------------------------------------
// The checker against real loopback listeners

health_target target(uint32_t id, const std::string& address, uint16_t port,
                     config::health_check_kind kind = config::health_check_kind::tcp) {
  health_target t;
  t.backend_id = id;
  t.address = *parse_ip_address(address);
  t.port = port;
  t.check.kind = kind;
  t.check.interval_ms = 100;
  t.check.timeout_ms = 80;
  return t;
}

// The first result for each id in `ids` (waits up to 10 s).
std::map<uint32_t, health_result> first_results(health_checker& c, std::set<uint32_t> ids) {
  std::map<uint32_t, health_result> out;
  eventually([&] {
    for (auto& r : c.take_results())
      if (ids.contains(r.backend_id) && !out.contains(r.backend_id)) out[r.backend_id] = r;
    return out.size() == ids.size();
  });
  return out;
}

TEST(HealthChecker, TcpAndHttpOutcomes) {
  const uint16_t port = test_port(1);
  loopback_backend tcp_up("127.0.0.61", port, backend_mode::accept_close);
  loopback_backend http_ok("127.0.0.62", port, backend_mode::http, 204);
  loopback_backend http_503("127.0.0.63", port, backend_mode::http, 503);
  loopback_backend http_hang("127.0.0.64", port, backend_mode::hang);
  loopback_backend not_http("127.0.0.65", port, backend_mode::garbage);
  // 127.0.0.66 has no listener: connection refused.
  using k = config::health_check_kind;
  std::vector<health_target> targets = {
      target(1, "127.0.0.61", port),         target(2, "127.0.0.62", port, k::http),
      target(3, "127.0.0.63", port, k::http), target(4, "127.0.0.64", port, k::http),
      target(5, "127.0.0.65", port, k::http), target(6, "127.0.0.66", port)};
  targets[1].check.path = "/healthz?deep=1";
  targets[1].check.status_min = 200;
  targets[1].check.status_max = 299;
  health_checker checker;
  checker.set_targets(targets);
  checker.start();
  auto r = first_results(checker, {1, 2, 3, 4, 5, 6});
  checker.stop();
  ASSERT_EQ(r.size(), 6u);
  EXPECT_TRUE(r[1].ok) << r[1].detail;
  EXPECT_EQ(r[1].detail, "connected");
  EXPECT_TRUE(r[2].ok) << r[2].detail;
  EXPECT_EQ(r[2].detail, "HTTP 204");
  EXPECT_FALSE(r[3].ok);
  EXPECT_EQ(r[3].detail, "HTTP 503 (expected 200-399)");
  EXPECT_FALSE(r[4].ok);
  EXPECT_EQ(r[4].detail, "timeout after 80ms");
  EXPECT_FALSE(r[5].ok);
  EXPECT_EQ(r[5].detail, "not an HTTP response");
  EXPECT_FALSE(r[6].ok);
  EXPECT_EQ(r[6].detail, "connect: Connection refused");
  EXPECT_GT(r[1].latency_us, 0u);
  // The HTTP request itself: path, Host header (the backend address with the port).
  auto reqs = http_ok.requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs[0].rfind("GET /healthz?deep=1 HTTP/1.1\r\n", 0), 0u) << reqs[0];
  EXPECT_NE(reqs[0].find("Host: 127.0.0.62:" + std::to_string(port) + "\r\n"), std::string::npos)
      << reqs[0];
}

TEST(HealthChecker, KeepsCheckingAtTheIntervalAndFollowsTargetChanges) {
  const uint16_t port = test_port(2);
  loopback_backend a("127.0.0.71", port, backend_mode::accept_close);
  health_checker checker;
  checker.start();
  checker.set_targets({target(7, "127.0.0.71", port)});
  std::vector<health_result> seen;
  ASSERT_TRUE(eventually([&] {
    for (auto& r : checker.take_results()) seen.push_back(r);
    return seen.size() >= 3;
  }));
  for (const auto& r : seen) EXPECT_TRUE(r.ok && r.backend_id == 7) << r.detail;
  // The listener goes away: the same target now fails.
  a.close();
  ASSERT_TRUE(eventually([&] {
    for (auto& r : checker.take_results())
      if (!r.ok) return r.detail == "connect: Connection refused";
    return false;
  }));
  // Targets replaced: results only for the new id.
  checker.set_targets({target(8, "127.0.0.72", port)});
  checker.take_results();
  std::set<uint32_t> ids;
  ASSERT_TRUE(eventually([&] {
    for (auto& r : checker.take_results()) ids.insert(r.backend_id);
    return ids.contains(8);
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (auto& r : checker.take_results()) ids.insert(r.backend_id);
  EXPECT_EQ(ids, std::set<uint32_t>{8}) << "no result for a target that was removed";
  checker.stop();
}

// ---------------------------------------------------------------------------------------------
// The controller's health logic, driven with synthetic results (no checker thread, no workers)

config::backend make_backend(const std::string& a, uint8_t n) {
  config::backend b;
  b.address = *parse_ip_address(a);
  b.mac = config::mac_address{{0x02, 0, 0, 0, 0x01, n}};
  return b;
}

config::daemon_config health_config() {
  config::daemon_config cfg;
  config::service s;
  s.name = "web";
  s.vip = *parse_ip_address("198.51.100.10");
  s.port = 80;
  s.maglev_size = 1009;
  s.blue = {make_backend("10.1.0.1", 1), make_backend("10.1.0.2", 2), make_backend("10.1.0.3", 3)};
  s.green = {make_backend("10.2.0.1", 4), make_backend("10.2.0.2", 5), make_backend("10.2.0.3", 6)};
  config::health_check h;
  h.rise = 2;
  h.fall = 2;
  h.min_healthy_to_switch = 2;
  s.health = h;
  cfg.services.push_back(s);
  config::service plain = s;  // a second service without checks
  plain.name = "plain";
  plain.port = 81;
  plain.health.reset();
  cfg.services.push_back(plain);
  return cfg;
}

class ControllerHealth : public ::testing::Test {
 protected:
  void SetUp() override {
    test::ensure_eal();
    spdlog::set_level(spdlog::level::warn);
    clock_ = std::make_unique<ms_clock>();  // after EAL: it reads the TSC frequency
    publisher_ = std::make_unique<generation_publisher>(1);
    ctl_ = std::make_unique<controller>(health_config(), *publisher_, std::vector<worker*>{}, *clock_);
    ctl_->attach_metrics(&metrics_);
    ASSERT_TRUE(ctl_->start().ok());
  }

  uint32_t id(colour c, const std::string& a) const {
    return *ctl_->runtime().registry.find("web", c, *parse_ip_address(a));
  }
  // `times` results for the backend, then a tick.
  void feed(colour c, const std::string& a, bool ok, int times, const char* detail = nullptr) {
    std::vector<health_result> rs;
    for (int i = 0; i < times; ++i)
      rs.push_back(result_of(id(c, a), ok, detail ? detail : ok ? "connected" : "connect: Connection refused"));
    ctl_->apply_health_results(rs);
    ctl_->tick();
  }
  void all_up(colour c) {
    for (const char* a : c == colour::blue ? std::vector<const char*>{"10.1.0.1", "10.1.0.2", "10.1.0.3"}
                                           : std::vector<const char*>{"10.2.0.1", "10.2.0.2", "10.2.0.3"})
      feed(c, a, true, 2);
  }
  json service_status(const std::string& name = "web") {
    auto st = ctl_->status(name);
    EXPECT_TRUE(st.ok());
    return (*st)["services"][0];
  }
  json backend_status(const std::string& c, const std::string& a) {
    const json s = service_status();
    for (const json& b : s["colours"][c]["backends"])
      if (b["address"] == a) return b;
    return nullptr;
  }
  // The newest history entry whose command is `command` (null if none in the last 20).
  json history_entry(const std::string& command) {
    const json h = ctl_->history(20);
    for (auto it = h.rbegin(); it != h.rend(); ++it)
      if ((*it)["command"] == command) return *it;
    return nullptr;
  }
  json last_history() { return ctl_->history(1)[0]; }
  actor who{0, 4242};

  std::unique_ptr<ms_clock> clock_;
  std::unique_ptr<generation_publisher> publisher_;
  metrics_exchange metrics_;
  std::unique_ptr<controller> ctl_;
};

TEST_F(ControllerHealth, TargetsCoverBothPoolsOfCheckedServicesOnly) {
  const auto& t = ctl_->health_targets();
  ASSERT_EQ(t.size(), 6u) << "3 blue + 3 green of web; none of 'plain'";
  std::set<std::string> addrs;
  for (const auto& x : t) {
    addrs.insert(to_string(x.address));
    EXPECT_EQ(x.port, 80) << "the service port when health.port is not set";
  }
  EXPECT_EQ(addrs, (std::set<std::string>{"10.1.0.1", "10.1.0.2", "10.1.0.3", "10.2.0.1",
                                          "10.2.0.2", "10.2.0.3"}));
  json b = backend_status("blue", "10.1.0.1");
  EXPECT_EQ(b["health"]["state"], "unknown");
  EXPECT_EQ(b["health"]["last_result"], "not checked yet");
  EXPECT_TRUE(b["up"].get<bool>()) << "unknown is not down: traffic flows before the first check";
  json plain = ctl_->status("plain")->at("services")[0];
  EXPECT_TRUE(plain["health"].is_null());
  EXPECT_TRUE(plain["colours"]["blue"]["backends"][0]["health"]["last_result"].is_null());
}

TEST_F(ControllerHealth, DownAfterFallFailuresIsANewGenerationAndUpAfterRise) {
  all_up(colour::blue);
  const uint32_t gen0 = ctl_->generation_number();
  const uint32_t victim = id(colour::blue, "10.1.0.2");
  feed(colour::blue, "10.1.0.2", false, 1);
  EXPECT_FALSE(ctl_->runtime().down.contains(victim)) << "one failure with fall 2";
  EXPECT_EQ(ctl_->generation_number(), gen0);
  feed(colour::blue, "10.1.0.2", false, 1);
  EXPECT_TRUE(ctl_->runtime().down.contains(victim));
  EXPECT_EQ(ctl_->runtime().down.size(), 1u);
  EXPECT_EQ(ctl_->generation_number(), gen0 + 1);
  const generation* g = publisher_->current();
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->backends[victim].up, 0) << "the published generation marks it down";
  json h = history_entry("health");
  EXPECT_EQ(h, last_history());
  EXPECT_NE(h["change"].get<std::string>().find("web blue 10.1.0.2 up -> down (connect: Connection refused)"),
            std::string::npos)
      << h.dump();
  json b = backend_status("blue", "10.1.0.2");
  EXPECT_EQ(b["health"]["state"], "down");
  EXPECT_EQ(b["health"]["last_result"], "connect: Connection refused");
  EXPECT_DOUBLE_EQ(b["health"]["latency_ms"].get<double>(), 1.5);
  EXPECT_TRUE(b["health"]["checked_at"].is_string());
  EXPECT_FALSE(b["up"].get<bool>());
  // Other backends are untouched.
  EXPECT_TRUE(backend_status("blue", "10.1.0.1")["up"].get<bool>());
  // Back after `rise` successes.
  feed(colour::blue, "10.1.0.2", true, 1);
  EXPECT_TRUE(ctl_->runtime().down.contains(victim));
  feed(colour::blue, "10.1.0.2", true, 1);
  EXPECT_FALSE(ctl_->runtime().down.contains(victim));
  EXPECT_EQ(publisher_->current()->backends[victim].up, 1);
  EXPECT_EQ(backend_status("blue", "10.1.0.2")["health"]["state"], "up");
}

TEST_F(ControllerHealth, SwitchRefusedBelowMinHealthyUnlessForced) {
  switch_options to_green;
  to_green.to = colour::green;
  auto r = ctl_->switch_to("web", to_green, who);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("green has 0 of 3 backends healthy, fewer than "
                                   "health.min_healthy_to_switch (2)"),
            std::string::npos)
      << r.error_message();
  feed(colour::green, "10.2.0.1", true, 2);
  EXPECT_FALSE(ctl_->switch_to("web", to_green, who).ok()) << "1 healthy < 2";
  json wire = handle_request(*ctl_, R"({"version":1,"command":"switch","args":{"service":"web","to":"green"}})", who);
  EXPECT_FALSE(wire["ok"].get<bool>());
  EXPECT_EQ(wire["code"], "invalid");
  feed(colour::green, "10.2.0.2", true, 2);
  EXPECT_TRUE(ctl_->switch_to("web", to_green, who).ok());
  // Forced: blue has no known-healthy backend, the switch back still goes through.
  switch_options back;
  back.to = colour::blue;
  EXPECT_FALSE(ctl_->switch_to("web", back, who).ok());
  back.force = true;
  EXPECT_TRUE(ctl_->switch_to("web", back, who).ok());
  // A service without health checks is never refused.
  switch_options plain;
  plain.to = colour::green;
  EXPECT_TRUE(ctl_->switch_to("plain", plain, who).ok());
  auto snap = metrics_.get();
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->services[0].switches.at("refused"), 4u);
  EXPECT_EQ(snap->services[0].switches.at("ok"), 2u);
}

TEST_F(ControllerHealth, ARequestPublishesOneMetricsSnapshotCurrentWhenItAnswers) {
  all_up(colour::green);
  const uint64_t before = metrics_.publishes();
  json r = handle_request(
      *ctl_, R"({"version":1,"command":"switch","args":{"service":"web","to":"green","bake":"60s"}})",
      who);
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  // The commit and the switch's own bookkeeping (counts, the bake) used to publish one each.
  EXPECT_EQ(metrics_.publishes(), before + 1);
  auto snap = metrics_.get();
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->services[0].active, colour::green) << "the committed switch";
  EXPECT_EQ(snap->services[0].switches.at("ok"), 1u) << "the switch's bookkeeping";
  EXPECT_TRUE(snap->services[0].has_bake);
  EXPECT_TRUE(snap->services[0].draining);
  // A request that changes nothing publishes nothing.
  const uint64_t after = metrics_.publishes();
  EXPECT_TRUE(handle_request(*ctl_, R"({"version":1,"command":"status","args":{}})", who)["ok"].get<bool>());
  EXPECT_EQ(metrics_.publishes(), after);
  // Outside a request (the controller's own API, as tandemd's tick uses it) nothing waits.
  ASSERT_TRUE(ctl_->rollback("web", who).ok());
  EXPECT_EQ(metrics_.get()->services[0].active, colour::blue);
}

TEST_F(ControllerHealth, BakeRollsBackAutomaticallyWhenTheNewColourTurnsUnhealthy) {
  hook_runner hooks;
  const std::string events = temp_path("events.jsonl");
  std::remove(events.c_str());
  auto cfg = health_config();
  cfg.hooks.hooks.push_back({"cat >> " + events, "", {"switch", "auto-rollback", "health-change"}});
  ASSERT_TRUE(ctl_->apply(cfg, false, who).ok());
  ctl_->attach_hooks(&hooks);
  hooks.start();

  all_up(colour::blue);
  all_up(colour::green);
  switch_options o;
  o.to = colour::green;
  o.bake_ms = 60'000;
  o.auto_rollback = true;
  o.min_healthy_bp = 8000;
  auto r = ctl_->switch_to("web", o, who);
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ((*r)["bake"]["state"], "baking");
  json bake = service_status()["bake"];
  EXPECT_EQ(bake["colour"], "green");
  EXPECT_EQ(bake["state"], "baking");
  EXPECT_DOUBLE_EQ(bake["window_s"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(bake["min_healthy"].get<double>(), 0.8);

  // One green backend down: 2/3 = 0.67 < 0.8 -> back to blue at once.
  feed(colour::green, "10.2.0.3", false, 2);
  json st = service_status();
  EXPECT_EQ(st["active"], "blue");
  EXPECT_EQ(st["bake"]["state"], "rolled_back");
  EXPECT_EQ(st["bake"]["reason"], "auto-rollback: green healthy 2/3 < 0.8");
  // Green drains like after any switch (no workers here: it has no flows, so it is done at once).
  EXPECT_TRUE(history_entry("drain-complete")["change"] == "web: green drained");
  json h = history_entry("auto-rollback web");
  EXPECT_EQ(h["command"], "auto-rollback web");
  EXPECT_EQ(h["change"], "web: active green -> blue (auto-rollback: green healthy 2/3 < 0.8)");
  EXPECT_EQ(h["uid"], -1) << "done by tandemd itself";
  auto snap = metrics_.get();
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->services[0].rollbacks.at({"auto", "ok"}), 1u);
  EXPECT_EQ(snap->services[0].bake_state, "rolled_back");
  // Later health results do not roll back again.
  feed(colour::green, "10.2.0.2", false, 2);
  EXPECT_EQ(service_status()["active"], "blue");

  ASSERT_TRUE(hooks.wait_idle(10'000));
  std::vector<json> seen;
  std::istringstream lines(read_text(events));
  for (std::string line; std::getline(lines, line);) seen.push_back(json::parse(line));
  std::vector<std::string> names;
  for (const json& e : seen) names.push_back(e["event"]);
  ASSERT_GE(names.size(), 3u) << read_text(events);
  // health-change of 10.2.0.3 comes before the auto-rollback it caused.
  auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  EXPECT_LT(pos("switch"), pos("auto-rollback"));
  const json& ar = seen[static_cast<size_t>(pos("auto-rollback"))];
  EXPECT_EQ(ar["service"], "web");
  EXPECT_EQ(ar["from"], "green");
  EXPECT_EQ(ar["to"], "blue");
  EXPECT_EQ(ar["reason"], "auto-rollback: green healthy 2/3 < 0.8");
  EXPECT_TRUE(ar["time"].is_string());
  EXPECT_EQ(hooks.failed(), 0u);
  hooks.stop();
  std::remove(events.c_str());
}

TEST_F(ControllerHealth, BakeRefusedWhenTheTargetIsAlreadyBelowItsThreshold) {
  all_up(colour::blue);
  all_up(colour::green);
  feed(colour::green, "10.2.0.3", false, 2);  // green 2/3 healthy
  switch_options o;
  o.to = colour::green;
  o.bake_ms = 60'000;
  o.auto_rollback = true;
  o.min_healthy_bp = 8000;
  auto r = ctl_->switch_to("web", o, who);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("green healthy 2/3 is already below --min-healthy 0.8"),
            std::string::npos)
      << r.error_message();
  EXPECT_EQ(service_status()["active"], "blue");
  o.min_healthy_bp = 6000;
  ASSERT_TRUE(ctl_->switch_to("web", o, who).ok()) << "2/3 >= 0.6";
  EXPECT_EQ(service_status()["bake"]["state"], "baking");
  ctl_->tick();
  EXPECT_EQ(service_status()["active"], "green") << "and it does not roll back by itself";
}

TEST_F(ControllerHealth, EveryBackendDownRollsBackEvenWithAZeroThreshold) {
  all_up(colour::blue);
  all_up(colour::green);
  switch_options o;
  o.to = colour::green;
  o.bake_ms = 60'000;
  o.auto_rollback = true;
  o.min_healthy_bp = 0;
  ASSERT_TRUE(ctl_->switch_to("web", o, who).ok());
  feed(colour::green, "10.2.0.1", false, 2);
  feed(colour::green, "10.2.0.2", false, 2);
  EXPECT_EQ(service_status()["active"], "green") << "1/3 healthy is above a 0 threshold";
  feed(colour::green, "10.2.0.3", false, 2);
  json st = service_status();
  EXPECT_EQ(st["active"], "blue");
  EXPECT_EQ(st["bake"]["reason"], "auto-rollback: green healthy 0/3 (every checked backend is down)");
}

TEST_F(ControllerHealth, PromoteAbortAndWindowEnd) {
  all_up(colour::blue);
  all_up(colour::green);
  // promote: the switch stays, the bake ends.
  switch_options o;
  o.to = colour::green;
  o.bake_ms = 60'000;
  o.auto_rollback = true;
  ASSERT_TRUE(ctl_->switch_to("web", o, who).ok());
  json p = handle_request(*ctl_, R"({"version":1,"command":"promote","args":{"service":"web"}})", who);
  ASSERT_TRUE(p["ok"].get<bool>()) << p.dump();
  EXPECT_EQ(p["result"]["bake"]["state"], "promoted");
  EXPECT_EQ(service_status()["active"], "green");
  EXPECT_FALSE(history_entry("promote web").is_null());
  // After a promote, unhealthy green no longer rolls back.
  feed(colour::green, "10.2.0.1", false, 2);
  EXPECT_EQ(service_status()["active"], "green");
  feed(colour::green, "10.2.0.1", true, 2);
  json again = handle_request(*ctl_, R"({"version":1,"command":"promote","args":{"service":"web"}})", who);
  EXPECT_FALSE(again["ok"].get<bool>());
  EXPECT_NE(again["error"].get<std::string>().find("no bake window in progress"), std::string::npos);

  // abort: back to the previous colour with reason "aborted".
  switch_options b;
  b.to = colour::blue;
  b.bake_ms = 60'000;
  ASSERT_TRUE(ctl_->switch_to("web", b, who).ok());
  json a = handle_request(*ctl_, R"({"version":1,"command":"abort","args":{"service":"web"}})", who);
  ASSERT_TRUE(a["ok"].get<bool>()) << a.dump();
  EXPECT_EQ(a["result"]["active"], "green");
  EXPECT_EQ(a["result"]["bake"]["state"], "aborted");
  EXPECT_EQ(history_entry("abort web")["change"], "web: active blue -> green (aborted)");
  EXPECT_EQ(metrics_.get()->services[0].rollbacks.at({"abort", "ok"}), 1u);

  // The window passing promotes by itself.
  switch_options w;
  w.to = colour::blue;
  w.bake_ms = 30;
  ASSERT_TRUE(ctl_->switch_to("web", w, who).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  ctl_->tick();
  json st = service_status();
  EXPECT_EQ(st["bake"]["state"], "promoted");
  EXPECT_EQ(st["bake"]["reason"], "bake window of 30ms passed");
  EXPECT_EQ(st["active"], "blue");
  // A manual rollback during a bake ends it as rolled_back.
  switch_options x;
  x.to = colour::green;
  x.bake_ms = 60'000;
  ASSERT_TRUE(ctl_->switch_to("web", x, who).ok());
  ASSERT_TRUE(ctl_->rollback("web", who).ok());
  EXPECT_EQ(service_status()["bake"]["state"], "rolled_back");
  EXPECT_EQ(metrics_.get()->services[0].rollbacks.at({"manual", "ok"}), 1u);
}

TEST_F(ControllerHealth, ProtocolValidatesHealthArguments) {
  auto call = [&](const std::string& args) {
    return handle_request(*ctl_, R"({"version":1,"command":"switch","args":)" + args + "}", who);
  };
  json r = call(R"({"service":"web","to":"green","auto_rollback":true})");
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["error"].get<std::string>().find("args.auto_rollback: needs args.bake"), std::string::npos);
  r = call(R"({"service":"web","to":"green","bake":"60s","auto_rollback":true,"min_healthy":1.5})");
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["error"].get<std::string>().find("args.min_healthy: must be between 0 and 1"), std::string::npos);
  r = call(R"({"service":"web","to":"green","bake":"soon"})");
  EXPECT_EQ(r["code"], "bad_request");
  r = call(R"({"service":"web","to":"green","min_healthy":0.5})");
  EXPECT_EQ(r["code"], "bad_request");
  r = call(R"({"service":"plain","to":"green","bake":"60s","auto_rollback":true})");
  EXPECT_EQ(r["code"], "invalid");
  EXPECT_NE(r["error"].get<std::string>().find("--auto-rollback needs health checks"), std::string::npos);
  r = call(R"({"service":"web","to":"green","bake":"60s","auto_rollback":true,"min_healthy":0.5,"force":true})");
  ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
  EXPECT_DOUBLE_EQ(r["result"]["bake"]["min_healthy"].get<double>(), 0.5);
  r = handle_request(*ctl_, R"({"version":1,"command":"abort","args":{"service":"nope"}})", who);
  EXPECT_EQ(r["code"], "not_found");
  r = handle_request(*ctl_, R"({"version":1,"command":"promote","args":{}})", who);
  EXPECT_EQ(r["code"], "bad_request");
}

TEST_F(ControllerHealth, RemovedBackendLeavesTheDownSetAndTheTargets) {
  all_up(colour::blue);
  const uint32_t victim = id(colour::blue, "10.1.0.3");
  feed(colour::blue, "10.1.0.3", false, 2);
  ASSERT_TRUE(ctl_->runtime().down.contains(victim));
  ASSERT_TRUE(ctl_->pool_edit("web", colour::blue, "remove", {"10.1.0.3"}, std::nullopt, std::nullopt, who).ok());
  EXPECT_FALSE(ctl_->runtime().down.contains(victim));
  EXPECT_EQ(ctl_->health_targets().size(), 5u);
  EXPECT_EQ(ctl_->health_of(victim), nullptr);
  // Late results for it change nothing.
  const uint32_t gen = ctl_->generation_number();
  ctl_->apply_health_results({result_of(victim, false), result_of(victim, false)});
  EXPECT_EQ(ctl_->generation_number(), gen);
  // Removing the health section clears every mark, through apply.
  feed(colour::blue, "10.1.0.1", false, 2);
  ASSERT_FALSE(ctl_->runtime().down.empty());
  auto cfg = ctl_->running();
  cfg.services[0].health.reset();
  auto applied = ctl_->apply(cfg, false, who);
  ASSERT_TRUE(applied.ok()) << applied.error_message();
  EXPECT_NE((*applied)["changes"].dump().find("health checks changed"), std::string::npos);
  EXPECT_TRUE(ctl_->runtime().down.empty());
  EXPECT_TRUE(ctl_->health_targets().empty());
  auto metrics_change = cfg;
  metrics_change.metrics.port = 9999;
  auto refused = ctl_->apply(metrics_change, false, who);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error_message().find("metrics: cannot change while tandemd runs"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Prometheus text: writer, rendering, promtool

std::string promtool() {
  for (const char* p : {"/usr/bin/promtool", "/usr/local/bin/promtool"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> promtool_check(const std::string& text) {
  const std::string in = temp_path("metrics.txt"), out = temp_path("promtool.out");
  std::ofstream(in) << text;
  const int rc = std::system((promtool() + " check metrics < " + in + " > " + out + " 2>&1").c_str());
  std::string output = read_text(out);
  std::remove(in.c_str());
  std::remove(out.c_str());
  return {WEXITSTATUS(rc), output};
}

TEST(Prometheus, WriterFormatsAndEscapes) {
  EXPECT_EQ(prom_writer::format(3.0), "3");
  EXPECT_EQ(prom_writer::format(0.25), "0.25");
  EXPECT_EQ(prom_writer::format(0.1), "0.1");
  EXPECT_EQ(prom_writer::format(1e-6), "1e-06");
  EXPECT_EQ(prom_writer::format(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(prom_writer::format(std::nan("")), "NaN");
  EXPECT_EQ(prom_writer::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  prom_writer w;
  w.family("x_total", "counter", "Things.");
  w.sample({{"k", "v\"1"}}, uint64_t{18446744073709551615ull});
  w.sample({{"k", "v2"}}, uint64_t{0});
  w.family("y", "gauge", "Nothing here.");  // no samples: no header either
  w.family("z", "gauge", "Z.");
  w.sample({}, 0.5);
  EXPECT_EQ(w.take(),
            "# HELP x_total Things.\n# TYPE x_total counter\n"
            "x_total{k=\"v\\\"1\"} 18446744073709551615\nx_total{k=\"v2\"} 0\n"
            "# HELP z Z.\n# TYPE z gauge\nz 0.5\n");
  histogram h({0.1, 1});
  h.observe(0.05);
  h.observe(0.1);
  h.observe(0.5);
  h.observe(7);
  EXPECT_EQ(h.counts, (std::vector<uint64_t>{2, 1, 1}));
  EXPECT_EQ(h.count, 4u);
  EXPECT_DOUBLE_EQ(h.sum, 7.65);
}

metrics_snapshot sample_snapshot() {
  metrics_snapshot s;
  s.generation = 7;
  s.generations_published = 9;
  s.switch_publish = histogram({0.001, 0.01});
  s.switch_publish.observe(0.0004);
  s.switch_publish.observe(0.02);
  metrics_snapshot::service sv;
  sv.name = "web";
  sv.id = 3;
  sv.active = colour::green;
  sv.canary_bp = 250;
  sv.pools[0].push_back({"10.1.0.1", 0, 1, "ready", 1, true, 0.0012, 10, 1});
  sv.pools[1].push_back({"10.2.0.1", 1, 2, "maint", 0, true, 0.08, 3, 9});
  sv.pools[1].push_back({"2001:db8::1", 2, 1, "ready", -1, true, 0, 0, 0});
  sv.draining = true;
  sv.drain_colour = colour::blue;
  sv.drain_deadline_ms = 5000;
  sv.drain_deadline_unix = 1.7e9;
  sv.has_bake = true;
  sv.bake_colour = colour::green;
  sv.bake_state = "rolled_back";
  sv.bake_elapsed_ms = 1500;
  sv.bake_window_ms = 60000;
  sv.bake_min_healthy = 0.8;
  sv.switches["ok"] = 2;
  sv.rollbacks[{"auto", "ok"}] = 1;
  s.services.push_back(sv);
  return s;
}

// Value of the sample line that starts with `prefix` (e.g. `tandem_generation ` or a name with
// its labels), -1 when absent.
double sample_value(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return std::stod(line.substr(line.rfind(' ') + 1));
  return -1;
}

TEST(Prometheus, RenderedSnapshotHasTheExpectedSeriesAndPassesPromtool) {
  const std::string text = render_metrics(sample_snapshot(), {}, 2000);
  EXPECT_EQ(sample_value(text, "tandem_generation "), 7);
  EXPECT_EQ(sample_value(text, "tandem_service_active{service=\"web\",colour=\"green\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_service_active{service=\"web\",colour=\"blue\"} "), 0);
  EXPECT_EQ(sample_value(text, "tandem_service_canary_ratio{service=\"web\",colour=\"blue\"} "), 0.025);
  EXPECT_EQ(sample_value(text, "tandem_backend_up{service=\"web\",colour=\"blue\",backend=\"10.1.0.1\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_backend_up{service=\"web\",colour=\"green\",backend=\"10.2.0.1\"} "), 0);
  EXPECT_EQ(sample_value(text, "tandem_backend_up{service=\"web\",colour=\"green\",backend=\"2001:db8::1\"} "), 0)
      << "not checked yet counts as not up";
  EXPECT_EQ(sample_value(text, "tandem_backend_maintenance{service=\"web\",colour=\"green\",backend=\"10.2.0.1\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_backend_health_checks_total{service=\"web\",colour=\"green\",backend=\"10.2.0.1\",result=\"failure\"} "), 9);
  EXPECT_EQ(sample_value(text, "tandem_switches_total{service=\"web\",result=\"ok\"} "), 2);
  EXPECT_EQ(sample_value(text, "tandem_switches_total{service=\"web\",result=\"refused\"} "), 0);
  EXPECT_EQ(sample_value(text, "tandem_rollbacks_total{service=\"web\",trigger=\"auto\",result=\"ok\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_drain_deadline_seconds{service=\"web\",colour=\"blue\"} "), 3);
  EXPECT_EQ(sample_value(text, "tandem_bake_state{service=\"web\",colour=\"green\",state=\"rolled_back\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_bake_state{service=\"web\",colour=\"green\",state=\"baking\"} "), 0);
  EXPECT_EQ(sample_value(text, "tandem_bake_elapsed_seconds{service=\"web\",colour=\"green\"} "), 1.5);
  EXPECT_EQ(sample_value(text, "tandem_bake_healthy_ratio{service=\"web\",colour=\"green\"} "), 0)
      << "the maint backend and the unchecked one do not count; none left";
  EXPECT_EQ(sample_value(text, "tandem_switch_publish_seconds_bucket{le=\"0.001\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_switch_publish_seconds_bucket{le=\"0.01\"} "), 1);
  EXPECT_EQ(sample_value(text, "tandem_switch_publish_seconds_bucket{le=\"+Inf\"} "), 2);
  EXPECT_EQ(sample_value(text, "tandem_switch_publish_seconds_count "), 2);
  // Every family has exactly one HELP and one TYPE line.
  std::map<std::string, int> helps, types;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) ++helps[line.substr(7, line.find(' ', 7) - 7)];
    if (line.rfind("# TYPE ", 0) == 0) ++types[line.substr(7, line.find(' ', 7) - 7)];
  }
  EXPECT_GT(helps.size(), 25u);
  for (const auto& [name, n] : helps) {
    EXPECT_EQ(n, 1) << name;
    EXPECT_EQ(types[name], 1) << name;
  }
  if (promtool().empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  auto [rc, out] = promtool_check(text);
  EXPECT_EQ(rc, 0) << out << "\n" << text;
  EXPECT_EQ(out, "") << "promtool lint findings";
}

// ---------------------------------------------------------------------------------------------
// The HTTP endpoint

class MetricsServer : public ::testing::Test {
 protected:
  void SetUp() override {
    test::ensure_eal();  // ms_clock reads the TSC frequency from EAL
    clock_ = std::make_unique<ms_clock>();
    exchange_.publish(std::make_shared<metrics_snapshot>(sample_snapshot()));
    server_ = std::make_unique<metrics_server>(exchange_, std::vector<const worker*>{}, *clock_);
    ASSERT_TRUE(server_->open(*parse_ip_address("127.0.0.1"), 0).ok());
    server_->start();
  }
  std::string get(const std::string& raw, bool half_close = false) {
    return test::http_exchange("127.0.0.1", server_->port(), raw, 5000, half_close);
  }
  std::unique_ptr<ms_clock> clock_;
  metrics_exchange exchange_;
  std::unique_ptr<metrics_server> server_;
};

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

TEST_F(MetricsServer, ServesMetricsAndRejectsEverythingElse) {
  const std::string ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_line(ok), "HTTP/1.1 200 OK");
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  const std::string body = test::http_body(ok);
  EXPECT_NE(ok.find("Content-Length: " + std::to_string(body.size()) + "\r\n"), std::string::npos);
  EXPECT_EQ(sample_value(body, "tandem_generation "), 7);

  EXPECT_EQ(status_line(get("GET /metrics?x=1 HTTP/1.0\r\n\r\n")), "HTTP/1.1 200 OK");
  EXPECT_EQ(status_line(get("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(status_line(get("GET /metricsx HTTP/1.0\r\n\r\n")), "HTTP/1.1 404 Not Found");
  const std::string post = get("POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(status_line(post), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_NE(post.find("Allow: GET\r\n"), std::string::npos);
  EXPECT_EQ(status_line(get("HEAD /metrics HTTP/1.1\r\n\r\n")), "HTTP/1.1 405 Method Not Allowed");
  for (const char* bad : {"garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
                          "GET  /metrics HTTP/1.1\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                          "GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                          "G\x01T /metrics HTTP/1.1\r\n\r\n"})
    EXPECT_EQ(status_line(get(bad)), "HTTP/1.1 400 Bad Request") << bad;
  // Oversized: a head that never ends.
  const std::string huge = "GET /metrics HTTP/1.1\r\nX-Fill: " + std::string(20000, 'a');
  EXPECT_EQ(status_line(get(huge)), "HTTP/1.1 400 Bad Request");
  // A client that sends half a request and goes away, and one that connects and says nothing.
  EXPECT_EQ(get("GET /met", true), "");
  test::http_exchange("127.0.0.1", server_->port(), "", 100);
  EXPECT_GE(server_->bad_requests(), 11u);
  // Still serving.
  EXPECT_EQ(status_line(get("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")), "HTTP/1.1 200 OK");
}

TEST_F(MetricsServer, KeepAliveAndPipelining) {
  // Two requests on one HTTP/1.1 connection; the second asks to close.
  const std::string both = get(
      "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_line(both), "HTTP/1.1 200 OK");
  EXPECT_NE(both.find("Connection: keep-alive\r\n"), std::string::npos);
  EXPECT_NE(both.find("HTTP/1.1 404 Not Found"), std::string::npos) << "the pipelined request was answered";
  // After an error the connection closes: nothing after the 400 is answered.
  const std::string after_bad = get("bogus\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(status_line(after_bad), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(after_bad.find("200 OK"), std::string::npos);
}

TEST_F(MetricsServer, EndpointOutputPassesPromtool) {
  if (promtool().empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  const std::string body = test::http_body(get("GET /metrics HTTP/1.0\r\n\r\n"));
  ASSERT_FALSE(body.empty());
  auto [rc, out] = promtool_check(body);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "");
}

// ---------------------------------------------------------------------------------------------
// Hooks

TEST(Hooks, CommandGetsTheEventOnStdinAndOnlyItsEvents) {
  const std::string out = temp_path("hook-out");
  std::remove(out.c_str());
  config::hook_settings s;
  s.timeout_ms = 5000;
  s.hooks.push_back({"cat >> " + out + "; echo \"env=$TANDEM_EVENT\" >> " + out, "", {"rollback"}});
  hook_runner r;
  r.start();
  r.post(s, "switch", {{"service", "web"}});  // not subscribed
  r.post(s, "rollback", {{"service", "web"}, {"reason", "manual"}});
  ASSERT_TRUE(r.wait_idle(10'000));
  const std::string text = read_text(out);
  std::istringstream lines(text);
  std::string first, second, third;
  std::getline(lines, first);
  std::getline(lines, second);
  EXPECT_FALSE(std::getline(lines, third)) << text;
  json e = json::parse(first);
  EXPECT_EQ(e["event"], "rollback");
  EXPECT_EQ(e["service"], "web");
  EXPECT_EQ(e["reason"], "manual");
  EXPECT_EQ(second, "env=rollback");
  EXPECT_EQ(r.succeeded(), 1u);
  EXPECT_EQ(r.failed(), 0u);
  std::remove(out.c_str());
}

TEST(Hooks, FailuresAndTimeoutsAreCountedAndNeverStopTheRunner) {
  const std::string out = temp_path("hook-after");
  std::remove(out.c_str());
  config::hook_settings s;
  s.timeout_ms = 200;
  s.hooks.push_back({"exit 3", "", {}});
  s.hooks.push_back({"sleep 30", "", {}});                  // killed at the timeout
  s.hooks.push_back({"exec 0<&-; echo ran > " + out, "", {}});  // ignores its stdin
  s.hooks.push_back({"", "http://127.0.0.1:1/nothing-listens", {}});
  hook_runner r;
  r.start();
  const auto t0 = std::chrono::steady_clock::now();
  r.post(s, "drain-timeout", {{"service", "web"}});
  ASSERT_TRUE(r.wait_idle(20'000));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20)) << "sleep 30 was killed";
  EXPECT_EQ(r.failed(), 3u);
  EXPECT_EQ(r.succeeded(), 1u);
  EXPECT_EQ(read_text(out), "ran\n");
  std::remove(out.c_str());
}

TEST(Hooks, HttpPostCarriesTheJsonBody) {
  const uint16_t port = test_port(3);
  loopback_backend sink("127.0.0.81", port, backend_mode::http, 204);
  config::hook_settings s;
  s.hooks.push_back({"", "http://127.0.0.81:" + std::to_string(port) + "/tandem/events", {}});
  hook_runner r;
  r.start();
  r.post(s, "health-change", {{"backend", "10.2.0.1"}, {"to", "down"}});
  ASSERT_TRUE(r.wait_idle(10'000));
  EXPECT_EQ(r.succeeded(), 1u);
  auto reqs = sink.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].rfind("POST /tandem/events HTTP/1.1\r\n", 0), 0u) << reqs[0];
  EXPECT_NE(reqs[0].find("Content-Type: application/json\r\n"), std::string::npos);
  json body = json::parse(test::http_body(reqs[0]));
  EXPECT_EQ(body["event"], "health-change");
  EXPECT_EQ(body["backend"], "10.2.0.1");
  // A non-2xx answer is a failure.
  sink.set_status(500);
  r.post(s, "health-change", {{"backend", "10.2.0.1"}});
  ASSERT_TRUE(r.wait_idle(10'000));
  EXPECT_EQ(r.failed(), 1u);
}

// ---------------------------------------------------------------------------------------------
// The documentation: the config example parses, the alert rules and the dashboard's queries are
// valid PromQL (promtool), the dashboard is JSON Grafana can import.

std::filesystem::path find_source_file(const std::string& relative) {
  namespace fs = std::filesystem;
  std::vector<fs::path> starts{fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  for (fs::path dir : starts) {
    for (;;) {
      if (fs::exists(dir / relative)) return dir / relative;
      if (!dir.has_parent_path() || dir.parent_path() == dir) break;
      dir = dir.parent_path();
    }
  }
  return {};
}

// The first ```yaml block of `markdown` after `after` that contains `needle`.
std::string yaml_block(const std::string& markdown, const std::string& after, const std::string& needle) {
  size_t pos = markdown.find(after);
  while (pos != std::string::npos) {
    pos = markdown.find("```yaml\n", pos);
    if (pos == std::string::npos) break;
    const size_t start = pos + 8;
    const size_t end = markdown.find("```", start);
    const std::string block = markdown.substr(start, end - start);
    if (block.find(needle) != std::string::npos) return block;
    pos = end + 3;
  }
  return {};
}

std::pair<int, std::string> promtool_run(const std::string& args) {
  const std::string out = temp_path("promtool-run.out");
  const int rc = std::system((promtool() + " " + args + " > " + out + " 2>&1").c_str());
  std::string text = read_text(out);
  std::remove(out.c_str());
  return {WEXITSTATUS(rc), text};
}

TEST(Docs, ConfigExampleParses) {
  const auto path = find_source_file("docs/config.md");
  ASSERT_FALSE(path.empty());
  const std::string example = yaml_block(read_text(path.string()), "## Example", "services:");
  ASSERT_FALSE(example.empty());
  auto cfg = config::parse_config(example, "docs/config.md example");
  ASSERT_TRUE(cfg.ok()) << cfg.error_message();
  ASSERT_TRUE(cfg->services[0].health.has_value());
  EXPECT_EQ(cfg->services[0].health->path, "/healthz");
  EXPECT_EQ(cfg->hooks.hooks.size(), 2u);
}

TEST(Docs, AlertRulesAreValidAndFire) {
  const auto path = find_source_file("docs/operations.md");
  ASSERT_FALSE(path.empty());
  const std::string rules = yaml_block(read_text(path.string()), "## Alerts worth setting", "groups:");
  ASSERT_FALSE(rules.empty());
  EXPECT_NE(rules.find("TandemAutoRollback"), std::string::npos);
  if (promtool().empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  const std::string file = temp_path("rules.yml");
  std::ofstream(file) << rules;
  auto [rc, out] = promtool_run("check rules " + file);
  EXPECT_EQ(rc, 0) << out;
  // Two of them against series shaped like tandemd's: an auto-rollback, and an active colour
  // whose backends all went down.
  const std::string test_file = temp_path("rules_test.yml");
  std::ofstream(test_file) << "rule_files: [" << file << "]\n"
      "evaluation_interval: 15s\n"
      "tests:\n"
      "  - interval: 15s\n"
      "    input_series:\n"
      "      - series: 'tandem_backend_up{job=\"tandem\",instance=\"lb1\",service=\"web\",colour=\"green\",backend=\"10.2.0.1\"}'\n"
      "        values: '1 1 0 0 0 0 0 0 0 0'\n"
      "      - series: 'tandem_service_active{job=\"tandem\",instance=\"lb1\",service=\"web\",colour=\"green\"}'\n"
      "        values: '1x10'\n"
      "      - series: 'tandem_service_active{job=\"tandem\",instance=\"lb1\",service=\"web\",colour=\"blue\"}'\n"
      "        values: '0x10'\n"
      "      - series: 'tandem_rollbacks_total{job=\"tandem\",instance=\"lb1\",service=\"web\",trigger=\"auto\",result=\"ok\"}'\n"
      "        values: '0 0 0 1 1 1 1 1 1 1'\n"
      "    alert_rule_test:\n"
      "      - eval_time: 2m\n"
      "        alertname: TandemActiveColourHasNoHealthyBackend\n"
      "        exp_alerts:\n"
      "          - exp_labels: {severity: critical, instance: lb1, service: web, colour: green}\n"
      "            exp_annotations: {summary: \"web: no healthy backend in the active colour green\"}\n"
      "      - eval_time: 2m\n"
      "        alertname: TandemAutoRollback\n"
      "        exp_alerts:\n"
      "          - exp_labels: {severity: warning, job: tandem, instance: lb1, service: web, trigger: auto, result: ok}\n"
      "            exp_annotations: {summary: \"web rolled back automatically (see tandemctl history)\"}\n";
  auto [trc, tout] = promtool_run("test rules " + test_file);
  EXPECT_EQ(trc, 0) << tout;
  std::remove(file.c_str());
  std::remove(test_file.c_str());
}

TEST(Docs, GrafanaDashboardImportsAndItsQueriesParse) {
  const auto path = find_source_file("docs/grafana/tandem.json");
  ASSERT_FALSE(path.empty());
  json d = json::parse(read_text(path.string()));  // throws (fails) on invalid JSON
  EXPECT_EQ(d["title"], "tandem");
  EXPECT_TRUE(d["uid"].is_string());
  EXPECT_TRUE(d["schemaVersion"].is_number_integer());
  EXPECT_TRUE(d.contains("id") && d["id"].is_null()) << "import creates a new dashboard";
  std::set<std::string> titles;
  std::set<int> ids;
  std::vector<std::string> exprs;
  for (const json& p : d["panels"]) {
    titles.insert(p["title"].get<std::string>());
    EXPECT_TRUE(ids.insert(p["id"].get<int>()).second) << "duplicate panel id " << p["id"];
    ASSERT_TRUE(p["gridPos"].is_object()) << p["title"];
    if (p["type"] == "row") continue;
    ASSERT_FALSE(p["targets"].empty()) << p["title"];
    for (const json& t : p["targets"]) exprs.push_back(t["expr"]);
  }
  for (const json& a : d["annotations"]["list"])
    if (a.contains("expr")) exprs.push_back(a["expr"]);
  for (const char* needed : {"Release", "Traffic per colour", "Drain", "Health", "Switch events",
                             "Packets per second", "Drain: flows remaining", "Backend health",
                             "Healthy backends"})
    EXPECT_TRUE(titles.contains(needed)) << needed;
  // Every query is valid PromQL once Grafana's variables are substituted.
  if (promtool().empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  for (size_t i = 0; i < exprs.size(); ++i) {
    std::string e = exprs[i];
    for (auto [from, to] : {std::pair<std::string, std::string>{"$__rate_interval", "5m"}, {"$service", ".*"}})
      for (size_t at; (at = e.find(from)) != std::string::npos;) e.replace(at, from.size(), to);
    rules += "      - record: tandem:dashboard_" + std::to_string(i) + "\n        expr: " + json(e).dump() + "\n";
  }
  const std::string file = temp_path("dashboard_rules.yml");
  std::ofstream(file) << rules;
  auto [rc, out] = promtool_run("check rules " + file);
  EXPECT_EQ(rc, 0) << out;
  std::remove(file.c_str());
}

}  // namespace
}  // namespace tandem
