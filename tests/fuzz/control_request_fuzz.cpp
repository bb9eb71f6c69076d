// Fuzz target: any sequence of control request lines (one per input line) gets one JSON
// response each, ok or an error with a code and a message, from a controller with a running
// config; the controller then still answers `status`. No workers, health checker or hooks are
// attached, so a fuzzed request cannot reach the network or run a command.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "control/config.h"
#include "control/controller.h"
#include "control/protocol.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "tests/support/eal_fixture.h"

namespace {

using namespace tandem;

constexpr std::string_view base_config = R"(control:
  socket: /nonexistent/tandem-fuzz.sock
services:
  - name: web
    vip: 198.51.100.10
    protocol: tcp
    port: 80
    forwarding: l2
    maglev_size: 1009
    active: blue
    pools:
      blue:
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01"}
        - {address: 10.1.0.2, mac: "02:00:00:00:01:02"}
      green:
        - {address: 10.2.0.1, mac: "02:00:00:00:02:01"}
        - {address: 10.2.0.2, mac: "02:00:00:00:02:02"}
  - name: dns
    vip: 2001:db8::53
    protocol: udp
    port: 53
    forwarding: l2
    maglev_size: 251
    pools:
      blue:
        - {address: 2001:db8:1::1, mac: "02:00:00:00:03:01"}
      green:
        - {address: 2001:db8:2::1, mac: "02:00:00:00:04:01"}
)";

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "control_request_fuzz: %s\n", what.c_str());
  std::abort();
}

void check_response(const nlohmann::json& r, const std::string& request) {
  if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean())
    fail("response without a boolean ok for " + request + ": " + r.dump());
  if (r["ok"].get<bool>()) return;
  if (!r.contains("code") || !r["code"].is_string() || !r.contains("error") ||
      !r["error"].is_string() || r["error"].get<std::string>().empty())
    fail("error response without code and message for " + request + ": " + r.dump());
  if (r["code"].get<std::string>() == "internal")
    fail("internal error (an exception escaped a handler) for " + request + ": " + r.dump());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  test::ensure_eal();
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  static const config::daemon_config initial = [] {
    auto c = config::parse_config(base_config, "fuzz-base.yaml");
    if (!c.ok()) fail("base config: " + c.error_message());
    return *c;
  }();
  ms_clock clock;
  generation_publisher publisher(1);
  controller ctl(initial, publisher, std::vector<worker*>{}, clock);
  if (auto s = ctl.start(); !s.ok()) fail("start: " + s.error_message());
  const actor who{0, 1};

  const std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t pos = 0;
  for (int lines = 0; pos <= input.size() && lines < 16; ++lines) {
    size_t nl = input.find('\n', pos);
    if (nl == std::string_view::npos) nl = input.size();
    const std::string line(input.substr(pos, nl - pos));
    pos = nl + 1;
    const nlohmann::json r = handle_request(ctl, line, who);
    check_response(r, line);
    // Every response must be sendable (invalid UTF-8 from an echoed request is replaced).
    if (encode_line(r).back() != '\n') fail("encoded response without its newline");
  }
  const nlohmann::json st = handle_request(ctl, R"({"version":1,"command":"status"})", who);
  if (!st.value("ok", false)) fail("status fails after the requests: " + st.dump());
  return 0;
}
