// control/config: YAML schema, located error messages, cross-field validation, helpers.
// Documents are written with their first line right after R"( so line numbers can be counted.
#include "control/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tandem::config {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;

// The tests run from meson's build directory: walk up from there (and from the binary) until
// the source tree's file turns up. A build directory outside the tree can point at the sources
// with TANDEM_SOURCE_DIR.
fs::path find_source_file(const std::string& relative) {
  std::vector<fs::path> starts{fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  if (const char* env = std::getenv("TANDEM_SOURCE_DIR")) starts.emplace_back(env);
  for (fs::path dir : starts) {
    for (;;) {
      if (fs::exists(dir / relative)) return dir / relative;
      if (!dir.has_parent_path() || dir.parent_path() == dir) break;
      dir = dir.parent_path();
    }
  }
  return {};
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

result<daemon_config> parse(std::string_view text) { return parse_config(text, "t.yaml"); }

// The error text of a document that must fail (empty string and a test failure otherwise).
std::string errors_of(std::string_view text) {
  auto r = parse(text);
  EXPECT_FALSE(r.ok()) << "document unexpectedly valid:\n" << text;
  return r.ok() ? std::string() : r.error_message();
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

ip_address ip(const char* s) {
  auto a = parse_ip_address(s);
  EXPECT_TRUE(a.has_value()) << s;
  return a.value_or(ip_address{});
}

mac_address mac(const char* s) {
  auto m = parse_mac(s);
  EXPECT_TRUE(m.has_value()) << s;
  return m.value_or(mac_address{});
}

// A valid one-service document; tests append to it or replace parts of it.
constexpr std::string_view base = R"(services:
  - name: web
    vip: 198.51.100.10
    port: 80
    maglev_size: 1009
    pools:
      blue:
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01"}
        - {address: 10.1.0.2, mac: "02:00:00:00:01:02"}
      green:
        - {address: 10.2.0.1, mac: "02:00:00:00:02:01"}
)";

// ---- the shipped examples -------------------------------------------------------------

TEST(ConfigExample, TandemYamlParsesWithExpectedValues) {
  const fs::path path = find_source_file("docs/examples/tandem.yaml");
  ASSERT_FALSE(path.empty()) << "docs/examples/tandem.yaml not found above " << fs::current_path();
  auto r = load_config(path.string());
  ASSERT_TRUE(r.ok()) << r.error_message();
  const daemon_config& c = *r;

  EXPECT_EQ(c.eal_args, (std::vector<std::string>{"-l", "0-1", "--vdev", "net_ring0"}));
  EXPECT_EQ(c.ports, (std::vector<std::string>{"net_ring0"}));
  EXPECT_EQ(c.flow_table_size, 1310720u);
  EXPECT_EQ(c.timeouts.tcp_syn_ms, 60'000u);
  EXPECT_EQ(c.timeouts.tcp_established_ms, 300'000u);
  EXPECT_EQ(c.timeouts.tcp_closing_ms, 10'000u);
  EXPECT_EQ(c.timeouts.udp_ms, 30'000u);
  EXPECT_EQ(c.tunnel.source_v4, ip("10.0.0.1"));
  EXPECT_EQ(c.tunnel.source_v6, ip("fd00::1"));
  EXPECT_EQ(c.tunnel.nexthop_mac, mac("02:00:00:00:00:fe"));
  EXPECT_EQ(c.tunnel.gue_port, 6080);
  EXPECT_EQ(c.socket.path, "/run/tandem/tandemd.sock");
  EXPECT_EQ(c.socket.owner, "root");
  EXPECT_EQ(c.socket.group, "tandem");
  EXPECT_EQ(c.socket.mode, 0660u);
  EXPECT_EQ(c.history_file, "/var/lib/tandem/history.log");

  ASSERT_EQ(c.services.size(), 3u);
  const service& web = c.services[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.vip, ip("198.51.100.10"));
  EXPECT_EQ(web.proto, 6);
  EXPECT_EQ(web.port, 80);
  EXPECT_EQ(web.mode, forwarding_mode::l2);
  EXPECT_EQ(web.maglev_size, 65537u);
  EXPECT_EQ(web.active, colour::blue);
  EXPECT_EQ(web.canary_basis_points, 1000u);
  ASSERT_EQ(web.segments.size(), 1u);
  EXPECT_EQ(web.segments[0].prefix, parse_ip_prefix("203.0.113.0/24").value());
  EXPECT_EQ(web.segments[0].to, colour::green);
  ASSERT_TRUE(web.preview.has_value());
  EXPECT_EQ(web.preview->vip, ip("198.51.100.11"));
  EXPECT_EQ(web.preview->port, 8080);
  EXPECT_EQ(web.drain.timeout_ms, 300'000u);
  EXPECT_EQ(web.drain.on_timeout, drain_action::keep);
  EXPECT_EQ(web.drain.spread_ms, 30'000u);
  ASSERT_EQ(web.blue.size(), 3u);
  EXPECT_EQ(web.blue[0],
            (backend{ip("10.1.0.1"), 1, mac("02:00:00:00:01:01"), backend_admin_state::ready}));
  EXPECT_EQ(web.blue[1].weight, 2u);
  EXPECT_EQ(web.blue[2].state, backend_admin_state::drain);
  ASSERT_EQ(web.green.size(), 2u);
  EXPECT_EQ(web.green[0].weight, 1u);
  EXPECT_EQ(web.green[1].state, backend_admin_state::maint);

  const service& api = c.services[1];
  EXPECT_EQ(api.name, "api-v6");
  EXPECT_EQ(api.vip, ip("2001:db8::10"));
  EXPECT_EQ(api.mode, forwarding_mode::gue);
  EXPECT_EQ(api.active, colour::green);
  EXPECT_EQ(api.canary_basis_points, 250u);
  EXPECT_EQ(api.drain.timeout_ms, 3'600'000u);
  EXPECT_EQ(api.drain.on_timeout, drain_action::reset);
  EXPECT_EQ(api.drain.spread_ms, 300'000u);
  ASSERT_EQ(api.blue.size(), 2u);
  EXPECT_TRUE(api.blue[1].address.is_v4());  // mixed families through gue
  EXPECT_EQ(api.blue[1].weight, 0u);
  EXPECT_FALSE(api.blue[0].mac.has_value());

  const service& dns = c.services[2];
  EXPECT_EQ(dns.proto, 17);
  EXPECT_EQ(dns.port, 0);
  EXPECT_EQ(dns.mode, forwarding_mode::ipip);
  EXPECT_TRUE(dns.green.empty());
  EXPECT_FALSE(dns.preview.has_value());

  EXPECT_TRUE(validate(c).ok());
  // load_config is parse_config on the file's text.
  auto again = parse_config(read_text(path), path.string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, c);
}

TEST(ConfigExample, DemoYamlParsesWithExpectedValues) {
  const fs::path path = find_source_file("docs/examples/demo.yaml");
  ASSERT_FALSE(path.empty());
  auto r = load_config(path.string());
  ASSERT_TRUE(r.ok()) << r.error_message();
  const daemon_config& c = *r;
  EXPECT_TRUE(c.eal_args.empty());
  EXPECT_TRUE(c.ports.empty());
  EXPECT_EQ(c.flow_table_size, 65536u);
  EXPECT_EQ(c.socket.path, "/tmp/tandem-demo.sock");
  ASSERT_EQ(c.services.size(), 2u);
  const service& web = c.services[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.vip, ip("198.51.100.10"));
  EXPECT_EQ(web.proto, 6);
  EXPECT_EQ(web.port, 80);
  EXPECT_EQ(web.mode, forwarding_mode::l2);
  EXPECT_EQ(web.maglev_size, 1009u);
  ASSERT_EQ(web.blue.size(), 3u);
  ASSERT_EQ(web.green.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i + 1);
    EXPECT_EQ(web.blue[i].address, ip(("10.1.0." + n).c_str()));
    EXPECT_EQ(web.blue[i].mac, mac(("02:00:00:00:01:0" + n).c_str()));
    EXPECT_EQ(web.green[i].address, ip(("10.2.0." + n).c_str()));
    EXPECT_EQ(web.green[i].mac, mac(("02:00:00:00:02:0" + n).c_str()));
  }
  const service& dns = c.services[1];
  EXPECT_EQ(dns.name, "dns");
  EXPECT_EQ(dns.vip, ip("198.51.100.53"));
  EXPECT_EQ(dns.proto, 17);
  EXPECT_EQ(dns.port, 53);
  EXPECT_EQ(dns.blue.size(), 1u);
  EXPECT_EQ(dns.green.size(), 1u);
}

// ---- files --------------------------------------------------------------------------

TEST(ConfigLoad, MissingFileNamesPathAndReason) {
  auto r = load_config("/nonexistent-dir/tandem.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message(),
            "cannot read /nonexistent-dir/tandem.yaml: No such file or directory");
}

TEST(ConfigLoad, DirectoryIsNotReadable) {
  auto r = load_config("/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message(), "cannot read /: Is a directory");
}

TEST(ConfigLoad, ErrorsCarryTheFilePath) {
  const fs::path path = find_source_file("tests/data/bad_typo.yaml");
  ASSERT_FALSE(path.empty());
  auto r = load_config(path.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message(),
            path.string() +
                ":5: services[0].protcol: unknown key 'protcol' (allowed: name, vip, "
                "protocol, port, forwarding, maglev_size, active, canary, segments, "
                "preview, drain, pools, health); did you mean 'protocol'?");
}

TEST(ConfigLoad, GoodFixtureParses) {
  const fs::path path = find_source_file("tests/data/good_minimal.yaml");
  ASSERT_FALSE(path.empty());
  auto r = load_config(path.string());
  ASSERT_TRUE(r.ok()) << r.error_message();
  ASSERT_EQ(r->services.size(), 1u);
  EXPECT_EQ(r->services[0].name, "minimal");
}

// ---- defaults -----------------------------------------------------------------------

TEST(ConfigDefaults, EmptyDocumentIsTheDefaultConfig) {
  auto r = parse("");
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ(*r, daemon_config{});
  auto comments = parse("# nothing yet\n");
  ASSERT_TRUE(comments.ok());
  EXPECT_EQ(*comments, daemon_config{});
}

TEST(ConfigDefaults, MissingKeysTakeDocumentedDefaults) {
  auto r = parse(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 443
    forwarding: ipip
    pools:
      blue: [{address: 10.0.0.5}]
dataplane:
  tunnel: {source_v4: 10.0.0.1, nexthop_mac: "02:00:00:00:00:fe"}
)");
  ASSERT_TRUE(r.ok()) << r.error_message();
  const daemon_config& c = *r;
  EXPECT_TRUE(c.eal_args.empty());
  EXPECT_TRUE(c.ports.empty());
  EXPECT_EQ(c.flow_table_size, 1'310'720u);  // 1 M flows at 80 % load
  EXPECT_EQ(c.timeouts.tcp_syn_ms, 60'000u);
  EXPECT_EQ(c.timeouts.tcp_established_ms, 300'000u);
  EXPECT_EQ(c.timeouts.tcp_closing_ms, 10'000u);
  EXPECT_EQ(c.timeouts.udp_ms, 30'000u);
  EXPECT_FALSE(c.tunnel.source_v6.has_value());
  EXPECT_EQ(c.tunnel.gue_port, 6080);
  EXPECT_EQ(c.socket.path, "/run/tandem/tandemd.sock");
  EXPECT_EQ(c.socket.owner, "");
  EXPECT_EQ(c.socket.group, "");
  EXPECT_EQ(c.socket.mode, 0660u);
  EXPECT_EQ(c.history_file, "");
  ASSERT_EQ(c.services.size(), 1u);
  const service& s = c.services[0];
  EXPECT_EQ(s.proto, 6);
  EXPECT_EQ(s.maglev_size, default_maglev_size);
  EXPECT_EQ(s.active, colour::blue);
  EXPECT_EQ(s.canary_basis_points, 0u);
  EXPECT_TRUE(s.segments.empty());
  EXPECT_FALSE(s.preview.has_value());
  EXPECT_EQ(s.drain, drain_policy{});
  EXPECT_EQ(s.drain.timeout_ms, 300'000u);
  EXPECT_EQ(s.drain.on_timeout, drain_action::keep);
  EXPECT_EQ(s.drain.spread_ms, 0u);
  ASSERT_EQ(s.blue.size(), 1u);
  EXPECT_EQ(s.blue[0].weight, 1u);
  EXPECT_EQ(s.blue[0].state, backend_admin_state::ready);
  EXPECT_FALSE(s.blue[0].mac.has_value());
  EXPECT_TRUE(s.green.empty());
}

TEST(ConfigDefaults, ForwardingDefaultsToL2AndPreviewVipToTheServiceVip) {
  auto r = parse(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    preview: {port: 8080}
)");
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ(r->services[0].mode, forwarding_mode::l2);
  ASSERT_TRUE(r->services[0].preview.has_value());
  EXPECT_EQ(r->services[0].preview->vip, ip("192.0.2.1"));
  EXPECT_EQ(r->services[0].preview->port, 8080);
}

TEST(ConfigDefaults, RequiredKeysAreReportedAtTheEntry) {
  const std::string e = errors_of(R"(services:
  - name: a
    protocol: udp
)");
  EXPECT_EQ(e,
            "t.yaml:2: services[0].vip: missing (required)\n"
            "t.yaml:2: services[0].port: missing (required)");
  EXPECT_THAT(errors_of("services:\n  - {vip: 192.0.2.1, port: 1, pools: {blue: [{weight: 2}]}}\n"),
              HasSubstr("t.yaml:2: services[0].pools.blue[0].address: missing (required)"));
}

// ---- unknown keys, duplicates, types ------------------------------------------------

TEST(ConfigKeys, UnknownTopLevelKeyListsAllowedOnes) {
  EXPECT_EQ(errors_of("dataplane: {}\nservice: []\n"),
            "t.yaml:2: service: unknown key 'service' (allowed: dataplane, control, metrics, "
            "hooks, services); "
            "did you mean 'services'?");
}

TEST(ConfigKeys, UnknownKeyDeepInsideABackend) {
  std::string doc(base);
  doc.replace(doc.find("{address: 10.1.0.2"), 18, "{adress: 10.1.0.2");
  EXPECT_THAT(errors_of(doc),
              HasSubstr("t.yaml:9: services[0].pools.blue[1].adress: unknown key 'adress' "
                        "(allowed: address, weight, mac, state); did you mean 'address'?"));
}

TEST(ConfigKeys, UnknownKeyWithoutCloseMatchHasNoSuggestion) {
  EXPECT_EQ(errors_of("control:\n  socket: /tmp/x.sock\n  permissions: 0600\n"),
            "t.yaml:3: control.permissions: unknown key 'permissions' (allowed: socket, owner, "
            "group, mode, history_file)");
}

TEST(ConfigKeys, UnknownKeysInEverySection) {
  const std::string e = errors_of(R"(dataplane:
  timeouts: {tcp_fin: 5s}
  tunnel: {source: 10.0.0.1}
services:
  - name: a
    vip: 192.0.2.1
    port: 80
    canary: {percentage: 5}
    drain: {deadline: 5s}
    pools: {blue: [], red: []}
)");
  const auto lines = split_lines(e);
  ASSERT_EQ(lines.size(), 5u) << e;
  EXPECT_THAT(lines[0], HasSubstr("t.yaml:2: dataplane.timeouts.tcp_fin: unknown key 'tcp_fin' "
                                  "(allowed: tcp_syn, tcp_established, tcp_closing, udp)"));
  EXPECT_THAT(lines[1], HasSubstr("t.yaml:3: dataplane.tunnel.source: unknown key"));
  EXPECT_THAT(lines[2], HasSubstr("t.yaml:8: services[0].canary.percentage: unknown key "
                                  "'percentage' (allowed: percent)"));
  EXPECT_THAT(lines[3], HasSubstr("t.yaml:9: services[0].drain.deadline: unknown key 'deadline' "
                                  "(allowed: timeout, on_timeout, spread)"));
  EXPECT_THAT(lines[4], HasSubstr("t.yaml:10: services[0].pools.red: unknown key 'red' "
                                  "(allowed: blue, green)"));
}

TEST(ConfigKeys, DuplicateKeyIsAnError) {
  std::string doc(base);
  doc.insert(doc.find("    maglev_size"), "    port: 81\n");  // line 5
  EXPECT_EQ(errors_of(doc), "t.yaml:5: services[0].port: duplicate key (first given at line 4)");
}

TEST(ConfigTypes, WrongShapesAreReported) {
  EXPECT_EQ(errors_of("services: {name: a}\n"), "t.yaml:1: services: expected a list, got a map");
  EXPECT_EQ(errors_of("- a\n- b\n"), "t.yaml:1: top level: expected a map, got a list");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: [80]\n"),
            "t.yaml:4: services[0].port: expected a single value, got a list");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n    pools: []\n"),
            "t.yaml:5: services[0].pools: expected a map, got a list");
  EXPECT_EQ(errors_of("services:\n  - just-a-name\n"),
            "t.yaml:2: services[0]: expected a map, got a scalar");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip:\n    port: 80\n"),
            "t.yaml:3: services[0].vip: missing value");
  EXPECT_EQ(errors_of("dataplane:\n  eal: -l 0-1\n"),
            "t.yaml:2: dataplane.eal: expected a list, got a scalar");
  EXPECT_EQ(errors_of("dataplane:\n  ports: [net_ring0, {a: b}]\n"),
            "t.yaml:2: dataplane.ports[1]: expected a single value, got a map");
}

TEST(ConfigTypes, EmptyListEntriesAreErrors) {
  EXPECT_EQ(
      errors_of(
          "services:\n  - {name: a, vip: 192.0.2.1, port: 1, forwarding: ipip,\n"
          "     pools: {blue: [null, {address: 10.0.0.1}]}}\n"
          "dataplane:\n  tunnel: {source_v4: 10.0.0.9, nexthop_mac: \"02:00:00:00:00:fe\"}\n"),
      "t.yaml:3: services[0].pools.blue[0]: empty list entry");
  EXPECT_THAT(errors_of("services:\n  -\n  - {name: a, vip: 192.0.2.1, port: 1}\n"),
              HasSubstr("services[0]: empty list entry"));
}

TEST(ConfigTypes, NumbersMustBeWholeAndInRange) {
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: http\n"),
            "t.yaml:4: services[0].port: expected a whole number between 0 and 65535, got 'http'");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: 70000\n"),
            "t.yaml:4: services[0].port: must be between 0 and 65535, got 70000");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: -1\n"),
            "t.yaml:4: services[0].port: expected a whole number between 0 and 65535, got '-1'");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: 8.5\n"),
            "t.yaml:4: services[0].port: expected a whole number between 0 and 65535, got '8.5'");
  EXPECT_EQ(errors_of("dataplane:\n  flow_table_size: 100\n"),
            "t.yaml:2: dataplane.flow_table_size: must be between 1024 and 67108864, got 100");
  EXPECT_EQ(errors_of("dataplane:\n  flow_table_size: 67108865\n"),
            "t.yaml:2: dataplane.flow_table_size: must be between 1024 and 67108864, got 67108865");
  EXPECT_EQ(errors_of("dataplane:\n  flow_table_size: 99999999999999999999999\n"),
            "t.yaml:2: dataplane.flow_table_size: must be between 1024 and 67108864, got "
            "99999999999999999999999");
  EXPECT_EQ(errors_of("dataplane:\n  tunnel: {gue_port: 0}\n"),
            "t.yaml:2: dataplane.tunnel.gue_port: must be between 1 and 65535, got 0");
  EXPECT_TRUE(parse("dataplane:\n  flow_table_size: 1024\n").ok());
  EXPECT_TRUE(parse("dataplane:\n  flow_table_size: 67108864\n").ok());
}

TEST(ConfigTypes, BadEnumValuesListTheAllowedOnes) {
  auto svc = [](const std::string& extra) {
    return "services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n" + extra;
  };
  EXPECT_EQ(errors_of(svc("    protocol: sctp\n")),
            "t.yaml:5: services[0].protocol: 'sctp' is not one of: tcp, udp");
  EXPECT_EQ(errors_of(svc("    protocol: TCP\n")),
            "t.yaml:5: services[0].protocol: 'TCP' is not one of: tcp, udp");
  EXPECT_EQ(errors_of(svc("    forwarding: nat\n")),
            "t.yaml:5: services[0].forwarding: 'nat' is not one of: l2, ipip, gue");
  EXPECT_EQ(errors_of(svc("    active: red\n")),
            "t.yaml:5: services[0].active: 'red' is not one of: blue, green");
  EXPECT_EQ(errors_of(svc("    drain: {on_timeout: kill}\n")),
            "t.yaml:5: services[0].drain.on_timeout: 'kill' is not one of: keep, expire, reset");
  EXPECT_EQ(errors_of(svc("    segments: [{cidr: 10.0.0.0/8, to: red}]\n")),
            "t.yaml:5: services[0].segments[0].to: 'red' is not one of: blue, green");
  EXPECT_EQ(errors_of(svc("    pools:\n      blue:\n        - {address: 10.0.0.1, mac: "
                          "\"02:00:00:00:00:01\", state: down}\n")),
            "t.yaml:7: services[0].pools.blue[0].state: 'down' is not one of: ready, drain, maint");
}

// ---- addresses, prefixes, MACs, durations ---------------------------------------------

TEST(ConfigValues, BadAddresses) {
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 198.51.100.300\n    port: 80\n"),
            "t.yaml:3: services[0].vip: '198.51.100.300' is not an IPv4 or IPv6 address");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 0.0.0.0\n    port: 80\n"),
            "t.yaml:3: services[0].vip: 0.0.0.0 is the unspecified address");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 239.1.1.1\n    port: 80\n"),
            "t.yaml:3: services[0].vip: 239.1.1.1 is a multicast address");
  std::string doc(base);
  doc.replace(doc.find("10.2.0.1"), 8, "10.2.0.x");
  EXPECT_EQ(errors_of(doc),
            "t.yaml:11: services[0].pools.green[0].address: '10.2.0.x' is not an IPv4 or IPv6 "
            "address");
}

TEST(ConfigValues, BadCidrs) {
  auto seg = [](const std::string& cidr) {
    return "services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n    segments:\n"
           "      - {cidr: " +
           cidr + ", to: green}\n";
  };
  EXPECT_EQ(errors_of(seg("203.0.113.1/24")),
            "t.yaml:6: services[0].segments[0].cidr: '203.0.113.1/24' has host bits set (did you "
            "mean 203.0.113.0/24?)");
  EXPECT_EQ(errors_of(seg("203.0.113.0")),
            "t.yaml:6: services[0].segments[0].cidr: '203.0.113.0' is not a CIDR prefix (e.g. "
            "203.0.113.0/24)");
  EXPECT_EQ(errors_of(seg("203.0.113.0/33")),
            "t.yaml:6: services[0].segments[0].cidr: '203.0.113.0/33': prefix length must be "
            "0..32 for IPv4");
  EXPECT_EQ(errors_of(seg("nonsense/8")),
            "t.yaml:6: services[0].segments[0].cidr: 'nonsense/8' is not a CIDR prefix (e.g. "
            "203.0.113.0/24)");
  EXPECT_TRUE(parse(seg("0.0.0.0/0")).ok());
}

TEST(ConfigValues, BadMacs) {
  std::string doc(base);
  doc.replace(doc.find("02:00:00:00:01:02"), 17, "02:00:00:00:01");
  EXPECT_EQ(errors_of(doc),
            "t.yaml:9: services[0].pools.blue[1].mac: '02:00:00:00:01' is not a MAC address (six "
            "hex pairs, e.g. 02:00:00:00:00:01)");
  EXPECT_EQ(errors_of("dataplane:\n  tunnel: {nexthop_mac: \"zz:00:00:00:00:01\"}\n"),
            "t.yaml:2: dataplane.tunnel.nexthop_mac: 'zz:00:00:00:00:01' is not a MAC address "
            "(six hex pairs, e.g. 02:00:00:00:00:01)");
  EXPECT_EQ(errors_of("dataplane:\n  tunnel: {nexthop_mac: \"ff:ff:ff:ff:ff:ff\"}\n"),
            "t.yaml:2: dataplane.tunnel.nexthop_mac: ff:ff:ff:ff:ff:ff is a multicast/broadcast "
            "address");
  std::string zero(base);
  zero.replace(zero.find("02:00:00:00:02:01"), 17, "00:00:00:00:00:00");
  EXPECT_EQ(errors_of(zero),
            "t.yaml:11: services[0].pools.green[0].mac: 00:00:00:00:00:00 is the all-zero address");
}

TEST(ConfigValues, BadDurations) {
  auto t = [](const std::string& v) { return "dataplane:\n  timeouts:\n    udp: " + v + "\n"; };
  EXPECT_EQ(errors_of(t("-5s")),
            "t.yaml:3: dataplane.timeouts.udp: '-5s': a duration must not be negative");
  EXPECT_EQ(errors_of(t("5 minutes")),
            "t.yaml:3: dataplane.timeouts.udp: '5 minutes' is not a duration (e.g. 300s, 250ms, "
            "5m, 1h, or a number of seconds)");
  EXPECT_EQ(errors_of(t("1.5s")),
            "t.yaml:3: dataplane.timeouts.udp: '1.5s' is not a duration (e.g. 300s, 250ms, 5m, "
            "1h, or a number of seconds)");
  EXPECT_EQ(errors_of(t("4294968s")),
            "t.yaml:3: dataplane.timeouts.udp: '4294968s' is too long (at most 4294967295ms)");
  EXPECT_EQ(errors_of(t("0")),
            "t.yaml:3: dataplane.timeouts.udp: must be more than 0 and at most 24h, got 0");
  EXPECT_EQ(errors_of(t("25h")),
            "t.yaml:3: dataplane.timeouts.udp: must be more than 0 and at most 24h, got 25h");
  EXPECT_EQ(errors_of("services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n"
                      "    drain: {spread: 2d}\n"),
            "t.yaml:5: services[0].drain.spread: '2d' is not a duration (e.g. 300s, 250ms, 5m, "
            "1h, or a number of seconds)");
  auto ok = parse(
      "dataplane:\n  timeouts: {tcp_syn: 250ms, tcp_established: 2h, udp: 45}\n"
      "services:\n  - {name: a, vip: 192.0.2.1, port: 1, drain: {timeout: 0}}\n");
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(ok->timeouts.tcp_syn_ms, 250u);
  EXPECT_EQ(ok->timeouts.tcp_established_ms, 7'200'000u);
  EXPECT_EQ(ok->timeouts.udp_ms, 45'000u);
  EXPECT_EQ(ok->services[0].drain.timeout_ms, 0u);  // a zero drain deadline is allowed
}

TEST(ConfigValues, CanaryPercentToBasisPoints) {
  auto canary = [](const std::string& v) {
    return "services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n    canary: {percent: " + v +
           "}\n";
  };
  const std::pair<const char*, uint32_t> good[] = {
      {"0", 0},        {"10", 1000},   {"12.5", 1250},   {"0.01", 1},
      {"99.99", 9999}, {"100", 10000}, {"100.00", 10000}};
  for (const auto& [text, bp] : good) {
    auto r = parse(canary(text));
    ASSERT_TRUE(r.ok()) << text << ": " << r.error_message();
    EXPECT_EQ(r->services[0].canary_basis_points, bp) << text;
  }
  EXPECT_EQ(errors_of(canary("100.5")),
            "t.yaml:5: services[0].canary.percent: must be between 0 and 100, got 100.5");
  EXPECT_EQ(errors_of(canary("12.345")),
            "t.yaml:5: services[0].canary.percent: '12.345' has more than two decimals (the unit "
            "is 0.01%)");
  EXPECT_EQ(errors_of(canary("-1")),
            "t.yaml:5: services[0].canary.percent: expected a percentage 0..100 with up to two "
            "decimals, got '-1'");
  EXPECT_EQ(errors_of(canary("ten")),
            "t.yaml:5: services[0].canary.percent: expected a percentage 0..100 with up to two "
            "decimals, got 'ten'");
}

TEST(ConfigValues, SocketModeIsOctal) {
  auto mode = [](const std::string& v) { return "control:\n  mode: " + v + "\n"; };
  const std::pair<const char*, uint32_t> good[] = {{"\"0660\"", 0660}, {"0660", 0660},
                                                   {"'600'", 0600},    {"0o640", 0640},
                                                   {"432", 0660},      {"0", 0}};
  for (const auto& [text, m] : good) {
    auto r = parse(mode(text));
    ASSERT_TRUE(r.ok()) << text << ": " << r.error_message();
    EXPECT_EQ(r->socket.mode, m) << text;
  }
  EXPECT_EQ(errors_of(mode("660")),
            "t.yaml:2: control.mode: '660' is above 0777 (a plain number without a leading 0 is "
            "decimal; write \"0660\" for octal)");
  EXPECT_EQ(errors_of(mode("\"0680\"")),
            "t.yaml:2: control.mode: '0680' is not a file mode (e.g. \"0660\")");
  EXPECT_EQ(errors_of(mode("rw-rw----")),
            "t.yaml:2: control.mode: 'rw-rw----' is not a file mode (e.g. \"0660\")");
}

TEST(ConfigValues, ControlSection) {
  auto r = parse(
      "control:\n  socket: /tmp/t.sock\n  owner: '1000'\n  group: tandem\n"
      "  history_file: /tmp/h.log\n");
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ(r->socket.path, "/tmp/t.sock");
  EXPECT_EQ(r->socket.owner, "1000");
  EXPECT_EQ(r->socket.group, "tandem");
  EXPECT_EQ(r->history_file, "/tmp/h.log");
  EXPECT_EQ(errors_of("control:\n  socket: \"\"\n"), "t.yaml:2: control.socket: must not be empty");
  EXPECT_EQ(errors_of("control:\n  socket: /" + std::string(120, 'x') + "\n"),
            "t.yaml:2: control.socket: path is 121 bytes; a unix socket path is at most 107");
}

// ---- service-level rules ------------------------------------------------------------

TEST(ConfigServices, NameRules) {
  auto named = [](const std::string& n) {
    return "services:\n  - name: " + n + "\n    vip: 192.0.2.1\n    port: 80\n";
  };
  EXPECT_TRUE(parse(named("web_2-b")).ok());
  EXPECT_TRUE(parse(named(std::string(63, 'a'))).ok());
  EXPECT_EQ(errors_of(named("Web")),
            "t.yaml:2: services[0].name: 'Web' is not a valid name: 1 to 63 characters of a-z 0-9 "
            "_ -");
  EXPECT_THAT(errors_of(named(std::string(64, 'a'))), HasSubstr("is not a valid name"));
  EXPECT_THAT(errors_of(named("\"\"")), HasSubstr("t.yaml:2: services[0].name: '' is not a valid"));
  EXPECT_THAT(errors_of(named("a.b")), HasSubstr("t.yaml:2: services[0].name: 'a.b'"));
}

TEST(ConfigServices, DuplicateNames) {
  EXPECT_EQ(errors_of(R"(services:
  - {name: web, vip: 192.0.2.1, port: 80}
  - {name: api, vip: 192.0.2.2, port: 80}
  - name: web
    vip: 192.0.2.3
    port: 80
)"),
            "t.yaml:4: services[2].name: duplicate service name 'web' (also services[0])");
}

TEST(ConfigServices, ListenersMustBeUnique) {
  EXPECT_EQ(errors_of(R"(services:
  - {name: a, vip: 192.0.2.1, port: 80}
  - {name: b, vip: 192.0.2.1, port: 80}
)"),
            "t.yaml:3: services[1].vip: 192.0.2.1 tcp port 80 is already the listener of "
            "service a");
  // Same address and port, other protocol: a different listener.
  EXPECT_TRUE(parse(R"(services:
  - {name: a, vip: 192.0.2.1, port: 53}
  - {name: b, vip: 192.0.2.1, port: 53, protocol: udp}
  - {name: c, vip: 192.0.2.1, port: 0}
)")
                  .ok());
  // A preview listener may not take another service's listener, nor another preview's.
  EXPECT_EQ(errors_of(R"(services:
  - {name: a, vip: 192.0.2.1, port: 80}
  - name: b
    vip: 192.0.2.2
    port: 80
    preview: {vip: 192.0.2.1, port: 80}
)"),
            "t.yaml:6: services[1].preview.vip: 192.0.2.1 tcp port 80 is already the listener of "
            "service a");
  EXPECT_EQ(errors_of(R"(services:
  - {name: a, vip: 192.0.2.1, port: 80, preview: {port: 8080}}
  - name: b
    vip: 192.0.2.2
    port: 80
    preview: {vip: 192.0.2.1, port: 8080}
)"),
            "t.yaml:6: services[1].preview.vip: 192.0.2.1 tcp port 8080 is already the preview "
            "listener of service a");
  // And a service may not take a listener already used as a preview.
  EXPECT_EQ(errors_of(R"(services:
  - {name: a, vip: 192.0.2.1, port: 80, preview: {port: 8080}}
  - {name: b, vip: 192.0.2.1, port: 8080}
)"),
            "t.yaml:3: services[1].vip: 192.0.2.1 tcp port 8080 is already the preview listener "
            "of service a");
}

TEST(ConfigServices, PreviewMustDifferAndMatchFamily) {
  EXPECT_EQ(errors_of(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    preview:
      port: 80
)"),
            "t.yaml:5: services[0].preview: preview listener 192.0.2.1 port 80 is the service's "
            "own listener; it must differ (another vip or port)");
  EXPECT_EQ(errors_of(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    preview: {vip: "2001:db8::1", port: 80}
)"),
            "t.yaml:5: services[0].preview.vip: 2001:db8::1 is IPv6 but the service vip 192.0.2.1 "
            "is IPv4: a preview listener must be the same family");
  EXPECT_TRUE(parse("services:\n  - {name: a, vip: 192.0.2.1, port: 80, preview: {vip: "
                    "192.0.2.9, port: 80}}\n")
                  .ok());
}

TEST(ConfigServices, L2BackendsMustMatchTheVipFamilyAndHaveAMac) {
  EXPECT_EQ(errors_of(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    pools:
      blue:
        - {address: 10.0.0.1, mac: "02:00:00:00:00:01"}
        - {address: "2001:db8::5", mac: "02:00:00:00:00:02"}
        - {address: 10.0.0.3}
)"),
            "t.yaml:8: services[0].pools.blue[1].address: IPv6 backend 2001:db8::5 for the IPv4 "
            "vip 192.0.2.1: l2 forwarding keeps the packet's addresses, so the families must match "
            "(use ipip or gue to mix families)\n"
            "t.yaml:9: services[0].pools.blue[2].mac: required with l2 forwarding (the backend's "
            "Ethernet address)");
}

TEST(ConfigServices, TunnelModesMixFamiliesButNeedTunnelSettings) {
  const char* svc = R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    forwarding: gue
    pools:
      blue:
        - {address: 10.0.0.1}
        - {address: "2001:db8::5"}
        - {address: "2001:db8::6"}
)";
  EXPECT_EQ(errors_of(svc),
            "t.yaml:5: services[0].forwarding: gue forwarding needs dataplane.tunnel.nexthop_mac "
            "(destination MAC of encapsulated packets)\n"
            "t.yaml:8: services[0].pools.blue[0].address: IPv4 backend with gue forwarding needs "
            "dataplane.tunnel.source_v4 (outer source address)\n"
            "t.yaml:9: services[0].pools.blue[1].address: IPv6 backend with gue forwarding needs "
            "dataplane.tunnel.source_v6 (outer source address)");
  const std::string with_tunnel =
      std::string(svc) +
      "dataplane:\n  tunnel: {nexthop_mac: \"02:00:00:00:00:fe\", source_v4: "
      "10.0.0.254, source_v6: \"fd00::1\"}\n";
  auto r = parse(with_tunnel);
  ASSERT_TRUE(r.ok()) << r.error_message();
  // Only the family in use needs a source (ipip, IPv4 backends only).
  EXPECT_TRUE(parse("dataplane:\n  tunnel: {nexthop_mac: \"02:00:00:00:00:fe\", source_v4: "
                    "10.0.0.254}\nservices:\n  - {name: a, vip: \"2001:db8::1\", port: 80, "
                    "forwarding: ipip, pools: {blue: [{address: 10.0.0.1}]}}\n")
                  .ok());
}

TEST(ConfigServices, TunnelSourcesMustBeOfTheirFamily) {
  EXPECT_EQ(
      errors_of("dataplane:\n  tunnel:\n    source_v4: \"fd00::1\"\n    source_v6: 10.0.0.1\n"),
      "t.yaml:3: dataplane.tunnel.source_v4: fd00::1 is not an IPv4 address\n"
      "t.yaml:4: dataplane.tunnel.source_v6: 10.0.0.1 is not an IPv6 address");
}

TEST(ConfigServices, DuplicateBackendInAPoolButNotAcrossPools) {
  std::string dup(base);
  dup.replace(dup.find("10.1.0.2"), 8, "10.1.0.1");
  EXPECT_EQ(errors_of(dup),
            "t.yaml:9: services[0].pools.blue[1].address: duplicate backend 10.1.0.1 in pool blue "
            "(also pools.blue[0])");
  std::string across(base);
  across.replace(across.find("10.2.0.1"), 8, "10.1.0.1");
  auto r = parse(across);
  EXPECT_TRUE(r.ok()) << r.error_message();
}

TEST(ConfigServices, WeightRange) {
  std::string doc(base);
  doc.replace(doc.find("{address: 10.1.0.2,"), 19, "{address: 10.1.0.2, weight: 65536,");
  EXPECT_EQ(errors_of(doc),
            "t.yaml:9: services[0].pools.blue[1].weight: must be between 0 and 65535, got 65536");
  std::string max(base);
  max.replace(max.find("{address: 10.1.0.2,"), 19, "{address: 10.1.0.2, weight: 65535,");
  EXPECT_TRUE(parse(max).ok());
}

TEST(ConfigServices, MaglevSizeMustBePrimeAndLargeEnough) {
  std::string not_prime(base);
  not_prime.replace(not_prime.find("1009"), 4, "1000");
  EXPECT_EQ(errors_of(not_prime),
            "t.yaml:5: services[0].maglev_size: 1000 is not prime (next prime: 1009)");

  // 11 backends with weight > 0 in green need 1100 slots; blue (2) is fine.
  std::string big(base);
  for (int i = 2; i <= 11; ++i)
    big += "        - {address: 10.2.0." + std::to_string(i) + ", mac: \"02:00:00:00:02:01\"}\n";
  EXPECT_EQ(errors_of(big),
            "t.yaml:5: services[0].maglev_size: 1009 is too small for 11 backends with weight > 0 "
            "in pool green: needs a prime >= 1100 (100 per backend), e.g. 1103");
  // Weight 0 backends take no slots: the same pool with one of them at weight 0 fits.
  std::string drained = big;
  drained.replace(drained.find("{address: 10.2.0.11,"), 20, "{address: 10.2.0.11, weight: 0,");
  auto r = parse(drained);
  EXPECT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ(errors_of("services:\n  - {name: a, vip: 192.0.2.1, port: 80, maglev_size: 0}\n"),
            "t.yaml:2: services[0].maglev_size: must be between 1 and 16777216, got 0");
}

TEST(ConfigServices, SegmentsRules) {
  std::string doc = "services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n    segments:\n";
  for (int i = 0; i < 65; ++i)
    doc += "      - {cidr: 10." + std::to_string(i) + ".0.0/16, to: green}\n";
  EXPECT_EQ(errors_of(doc), "t.yaml:5: services[0].segments: 65 segments; at most 64 are allowed");
  doc.resize(doc.rfind("      - "));  // 64 segments
  EXPECT_TRUE(parse(doc).ok());

  EXPECT_EQ(errors_of(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    segments:
      - {cidr: 10.0.0.0/8, to: green}
      - {cidr: "2001:db8::/32", to: green}
      - {cidr: 10.0.0.0/8, to: blue}
)"),
            "t.yaml:7: services[0].segments[1].cidr: 2001:db8::/32 is IPv6 but the vip 192.0.2.1 "
            "is IPv4: it can never match a client\n"
            "t.yaml:8: services[0].segments[2].cidr: duplicate segment 10.0.0.0/8: segments[0] "
            "matches first, so this one never applies");
  EXPECT_EQ(
      errors_of("services:\n  - {name: a, vip: 192.0.2.1, port: 1, segments: [{to: green}]}\n"),
      "t.yaml:2: services[0].segments[0].cidr: missing (required)");
}

TEST(ConfigServices, EmptyPoolsAreValid) {
  auto both =
      parse("services:\n  - {name: a, vip: 192.0.2.1, port: 80, pools: {blue: [], green:}}\n");
  ASSERT_TRUE(both.ok()) << both.error_message();
  EXPECT_TRUE(both->services[0].blue.empty());
  EXPECT_TRUE(both->services[0].green.empty());
  // The active colour's pool empty: valid (the dataplane counts no_backend drops).
  auto active_empty = parse(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    active: green
    pools:
      blue: [{address: 10.0.0.1, mac: "02:00:00:00:00:01"}]
)");
  ASSERT_TRUE(active_empty.ok()) << active_empty.error_message();
  EXPECT_TRUE(active_empty->services[0].green.empty());
  EXPECT_EQ(active_empty->services[0].active, colour::green);
}

// ---- several errors, malformed YAML ---------------------------------------------------

TEST(ConfigErrors, AllErrorsAreReportedInLineOrder) {
  const std::string e = errors_of(R"(dataplane:
  flow_table_size: 12
services:
  - name: web
    vip: 198.51.100.10
    port: 80
    protocl: tcp
    maglev_size: 1000
    pools:
      blue:
        - {address: 10.1.0.1}
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01", weight: -3}
  - name: web
    vip: 198.51.100.10
    port: 80
control:
  mode: "999"
)");
  const auto lines = split_lines(e);
  ASSERT_EQ(lines.size(), 9u) << e;
  EXPECT_EQ(lines[0],
            "t.yaml:2: dataplane.flow_table_size: must be between 1024 and 67108864, got 12");
  EXPECT_THAT(lines[1], HasSubstr("t.yaml:7: services[0].protocl: unknown key 'protocl'"));
  EXPECT_EQ(lines[2], "t.yaml:8: services[0].maglev_size: 1000 is not prime (next prime: 1009)");
  EXPECT_EQ(lines[3],
            "t.yaml:11: services[0].pools.blue[0].mac: required with l2 forwarding "
            "(the backend's Ethernet address)");
  EXPECT_EQ(lines[4],
            "t.yaml:12: services[0].pools.blue[1].weight: expected a whole number "
            "between 0 and 65535, got '-3'");
  EXPECT_EQ(lines[5],
            "t.yaml:12: services[0].pools.blue[1].address: duplicate backend 10.1.0.1 "
            "in pool blue (also pools.blue[0])");
  EXPECT_EQ(lines[6],
            "t.yaml:13: services[1].name: duplicate service name 'web' (also services[0])");
  EXPECT_EQ(lines[7],
            "t.yaml:14: services[1].vip: 198.51.100.10 tcp port 80 is already the "
            "listener of service web");
  EXPECT_EQ(lines[8], "t.yaml:17: control.mode: '999' is not a file mode (e.g. \"0660\")");
}

TEST(ConfigErrors, AFieldThatFailedDoesNotCascade) {
  // The bad vip is reported once; the l2 family rule does not run against a placeholder.
  std::string doc(base);
  doc.replace(doc.find("198.51.100.10"), 13, "198.51.100.x");
  EXPECT_EQ(errors_of(doc),
            "t.yaml:3: services[0].vip: '198.51.100.x' is not an IPv4 or IPv6 address");
}

TEST(ConfigErrors, UnclosedBracketIsALocatedError) {
  auto r = parse(
      "services:\n  - name: a\n    vip: 192.0.2.1\n    port: 80\n    segments: [{cidr: "
      "10.0.0.0/8, to: green}\n    pools: {}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error_message(), ::testing::MatchesRegex("t\\.yaml:[5-7]: YAML syntax error: .+"));
  EXPECT_THAT(r.error_message(), HasSubstr("flow"));
}

TEST(ConfigErrors, TabIndentationIsALocatedError) {
  auto r = parse("control:\n  socket: /tmp/a.sock\n\tmode: \"0600\"\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message(),
            "t.yaml:3: YAML syntax error: illegal tab when looking for indentation");
}

TEST(ConfigErrors, UndefinedAliasAndSeveralDocuments) {
  auto alias = parse("control:\n  socket: *path\n");
  ASSERT_FALSE(alias.ok());
  EXPECT_THAT(alias.error_message(), HasSubstr("t.yaml:2: YAML syntax error: "));
  EXPECT_EQ(errors_of("control: {}\n---\ncontrol: {}\n"),
            "t.yaml:3: top level: the file holds 2 YAML documents; expected one");
}

// yaml-cpp 0.7's LoadAll never returns on a stream that starts with a stray ',' (it hands back
// the same empty document forever, allocating each time): found by tests/fuzz/config_fuzz.cpp.
// These must come back as located syntax errors, not hang the daemon's control thread.
TEST(ConfigErrors, StrayCommaIsASyntaxErrorNotAHang) {
  EXPECT_EQ(errors_of(",a\n"), "t.yaml:1: YAML syntax error: unexpected character here");
  EXPECT_EQ(errors_of("\n\n  ,\n"), "t.yaml:3: YAML syntax error: unexpected character here");
  // The fuzzer's own input: a config whose first line went wrong.
  EXPECT_EQ(errors_of(" ,eThs # defaults everywhere else.\nservices:\n  - name: minimal\n"),
            "t.yaml:1: YAML syntax error: unexpected character here");
  // After a good document the stray ',' starts further ones: still an error, still bounded.
  auto after = parse("control: {}\n---\n,\n");
  ASSERT_FALSE(after.ok());
  EXPECT_THAT(after.error_message(), HasSubstr("t.yaml:3: "));
}

TEST(ConfigErrors, ManyDocumentsAreCountedUpToALimit) {
  std::string three = "control: {}\n---\ncontrol: {}\n---\ncontrol: {}\n";
  EXPECT_EQ(errors_of(three), "t.yaml:3: top level: the file holds 3 YAML documents; expected one");
  std::string many;
  for (int i = 0; i < 100; ++i) many += "---\ncontrol: {}\n";
  EXPECT_EQ(errors_of(many),
            "t.yaml:4: top level: the file holds at least 64 YAML documents; expected one");
  // Empty documents and comments are not documents with content, as before.
  EXPECT_TRUE(parse("# nothing but a comment\n").ok());
}

TEST(ConfigErrors, AnchorsAndAliasesWork) {
  auto r = parse(R"(services:
  - name: a
    vip: 192.0.2.1
    port: 80
    drain: &slow {timeout: 1h, on_timeout: expire}
  - name: b
    vip: 192.0.2.2
    port: 80
    drain: *slow
)");
  ASSERT_TRUE(r.ok()) << r.error_message();
  EXPECT_EQ(r->services[1].drain.timeout_ms, 3'600'000u);
  EXPECT_EQ(r->services[1].drain.on_timeout, drain_action::expire);
}

// ---- validate() on value types --------------------------------------------------------

daemon_config valid_config() {
  auto r = parse(base);
  EXPECT_TRUE(r.ok()) << r.error_message();
  return r.ok() ? *r : daemon_config{};
}

TEST(ConfigValidate, AcceptsAParsedConfig) { EXPECT_TRUE(validate(valid_config()).ok()); }

TEST(ConfigValidate, RuntimeChangesAreCheckedWithoutLineNumbers) {
  daemon_config c = valid_config();
  for (int i = 3; i <= 11; ++i)
    c.services[0].blue.push_back(
        backend{ip(("10.1.0." + std::to_string(i)).c_str()), 1, mac("02:00:00:00:01:09"), {}});
  auto st = validate(c);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error_message(),
            "service web: maglev_size: 1009 is too small for 11 backends with weight > 0 in pool "
            "blue: needs a prime >= 1100 (100 per backend), e.g. 1103");
  c.services[0].maglev_size = 1103;
  EXPECT_TRUE(validate(c).ok());
}

TEST(ConfigValidate, ReportsEveryRuleBrokenOnValues) {
  daemon_config c = valid_config();
  service& s = c.services[0];
  s.blue.push_back(backend{ip("10.1.0.1"), 70000, std::nullopt, backend_admin_state::ready});
  s.green.push_back(backend{ip("2001:db8::1"), 1, mac("02:00:00:00:02:09"), {}});
  s.canary_basis_points = 10001;
  s.segments.push_back(segment{ip_prefix{ip("10.0.0.1"), 8}, colour::green});
  s.preview = preview_listener{s.vip, s.port};
  service other = c.services[0];
  other.name = "web";
  other.preview.reset();
  other.segments.clear();
  other.canary_basis_points = 0;
  other.blue.resize(1);
  other.green.resize(1);
  c.services.push_back(other);
  c.flow_table_size = 10;
  c.timeouts.udp_ms = 0;
  c.socket.mode = 01777;
  auto st = validate(c);
  ASSERT_FALSE(st.ok());
  const auto lines = split_lines(st.error_message());
  const std::vector<std::string> want = {
      "dataplane.flow_table_size: must be between 1024 and 67108864, got 10",
      "dataplane.timeouts.udp: must be more than 0 and at most 24h, got 0s",
      "control.mode: must be at most 0777",
      "service web: canary.percent: must be between 0 and 100, got 100.01%",
      "service web: segments[0].cidr: 10.0.0.1/8 is not a valid prefix (length beyond the "
      "family's width or host bits set)",
      "service web: preview: preview listener 198.51.100.10 port 80 is the service's own listener; "
      "it must differ (another vip or port)",
      "service web: pools.blue[2].address: duplicate backend 10.1.0.1 in pool blue (also "
      "pools.blue[0])",
      "service web: pools.blue[2].weight: must be between 0 and 65535, got 70000",
      "service web: pools.blue[2].mac: required with l2 forwarding (the backend's Ethernet "
      "address)",
      "service web: pools.green[1].address: IPv6 backend 2001:db8::1 for the IPv4 vip "
      "198.51.100.10: l2 forwarding keeps the packet's addresses, so the families must match (use "
      "ipip or gue to mix families)",
      "service web: name: duplicate service name 'web' (also services[0])",
      "service web: vip: 198.51.100.10 tcp port 80 is already the listener of service web",
  };
  EXPECT_EQ(lines, want) << st.error_message();
}

TEST(ConfigValidate, TunnelRulesOnValues) {
  daemon_config c = valid_config();
  c.services[0].mode = forwarding_mode::ipip;
  c.services[0].green[0].address = ip("2001:db8::7");
  auto st = validate(c);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error_message(),
            "service web: forwarding: ipip forwarding needs dataplane.tunnel.nexthop_mac "
            "(destination MAC of encapsulated packets)\n"
            "service web: pools.blue[0].address: IPv4 backend with ipip forwarding needs "
            "dataplane.tunnel.source_v4 (outer source address)\n"
            "service web: pools.green[0].address: IPv6 backend with ipip forwarding needs "
            "dataplane.tunnel.source_v6 (outer source address)");
  c.tunnel.nexthop_mac = mac("02:00:00:00:00:fe");
  c.tunnel.source_v4 = ip("10.0.0.1");
  c.tunnel.source_v6 = ip("fd00::1");
  EXPECT_TRUE(validate(c).ok());
  c.tunnel.gue_port = 0;
  EXPECT_EQ(validate(c).error_message(),
            "dataplane.tunnel.gue_port: must be between 1 and 65535, got 0");
}

TEST(ConfigValidate, NamesServicesWithoutANameByIndex) {
  daemon_config c = valid_config();
  c.services[0].name = "";
  EXPECT_EQ(validate(c).error_message(),
            "services[0]: name: '' is not a valid name: 1 to 63 characters of a-z 0-9 _ -");
}

// ---- helpers ----------------------------------------------------------------------

TEST(ConfigDuration, ParsesUnits) {
  EXPECT_EQ(parse_duration_ms("300s"), 300'000u);
  EXPECT_EQ(parse_duration_ms("250ms"), 250u);
  EXPECT_EQ(parse_duration_ms("5m"), 300'000u);
  EXPECT_EQ(parse_duration_ms("1h"), 3'600'000u);
  EXPECT_EQ(parse_duration_ms("30"), 30'000u);
  EXPECT_EQ(parse_duration_ms("0"), 0u);
  EXPECT_EQ(parse_duration_ms("4294967295ms"), 4'294'967'295u);
  EXPECT_EQ(parse_duration_ms("4294967s"), 4'294'967'000u);
  EXPECT_EQ(parse_duration_ms("1193h"), 4'294'800'000u);
}

TEST(ConfigDuration, RejectsGarbageNegativesAndOverflow) {
  for (const char* bad : {"",         "s",
                          "ms",       "-1s",
                          "-5",       "--5s",
                          "-",        "+5s",
                          "5 s",      " 5s",
                          "5s ",      "1.5s",
                          "5sec",     "5M",
                          "5H",       "1h30m",
                          "0x10",     "4294967296ms",
                          "4294968s", "1194h",
                          "71583m",   "99999999999999999999s",
                          "abc"})
    EXPECT_FALSE(parse_duration_ms(bad).has_value()) << "'" << bad << "'";
}

TEST(ConfigDuration, FormatsExactly) {
  EXPECT_EQ(format_duration(300'000), "300s");
  EXPECT_EQ(format_duration(250), "250ms");
  EXPECT_EQ(format_duration(90'000), "90s");
  EXPECT_EQ(format_duration(3'600'000), "1h");
  EXPECT_EQ(format_duration(600'000), "10m");
  EXPECT_EQ(format_duration(5'400'000), "90m");
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(1'500), "1500ms");
  EXPECT_EQ(format_duration(4'294'967'295u), "4294967295ms");
}

TEST(ConfigDuration, FormatThenParseRoundTrips) {
  const uint32_t edge[] = {
      0,         1,         999,       1000,       1001,           59'000,         60'000,
      90'000,    300'000,   540'000,   599'999,    600'000,        660'000,        3'599'000,
      3'600'000, 3'660'000, 7'200'000, 86'400'000, 4'294'800'000u, 4'294'967'000u, 4'294'967'295u};
  for (uint32_t ms : edge) EXPECT_EQ(parse_duration_ms(format_duration(ms)), ms) << ms;
  // And a spread of values across the range, including non-round ones.
  for (uint64_t ms = 0; ms <= 0xffffffffu; ms += 65'537 * 997)
    ASSERT_EQ(parse_duration_ms(format_duration(static_cast<uint32_t>(ms))), ms) << ms;
  // Parse then format then parse again is stable for the spellings people write.
  for (const char* text : {"300s", "250ms", "5m", "1h", "30", "10m", "90s"}) {
    auto ms = parse_duration_ms(text);
    ASSERT_TRUE(ms.has_value()) << text;
    EXPECT_EQ(parse_duration_ms(format_duration(*ms)), ms) << text;
  }
}

TEST(ConfigMac, AcceptsBothCasesAndPrintsLowercase) {
  auto lower = parse_mac("02:ab:cd:ef:00:9f");
  auto upper = parse_mac("02:AB:CD:EF:00:9F");
  ASSERT_TRUE(lower.has_value());
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(*lower, *upper);
  const mac_address want{{0x02, 0xab, 0xcd, 0xef, 0x00, 0x9f}};
  EXPECT_EQ(*lower, want);
  EXPECT_EQ(to_string(*upper), "02:ab:cd:ef:00:9f");
  EXPECT_EQ(to_string(mac_address{}), "00:00:00:00:00:00");
  EXPECT_EQ(parse_mac(to_string(want)), want);
}

TEST(ConfigMac, RejectsGarbage) {
  for (const char* bad :
       {"", "02:00:00:00:00", "02:00:00:00:00:01:02", "02-00-00-00-00-01", "0200.0000.0001",
        "2:0:0:0:0:1", "02:00:00:00:00:0g", "02:00:00:00:00:1", "02:00:00:00:00:001",
        " 02:00:00:00:00:01", "02:00:00:00:00:01 ", "02::00:00:00:00:01", "xx:xx:xx:xx:xx:xx"})
    EXPECT_FALSE(parse_mac(bad).has_value()) << "'" << bad << "'";
}

TEST(ConfigNames, BackendAdminStateNames) {
  EXPECT_STREQ(backend_admin_state_name(backend_admin_state::ready), "ready");
  EXPECT_STREQ(backend_admin_state_name(backend_admin_state::drain), "drain");
  EXPECT_STREQ(backend_admin_state_name(backend_admin_state::maint), "maint");
}

}  // namespace
}  // namespace tandem::config
