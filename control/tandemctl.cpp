// tandemctl: the command-line client of tandemd's control socket (protocol: control/protocol.h,
// usage: docs/cli.md). Exit codes: 0 success, 1 the daemon answered with an error (or
// wait-drained timed out), 2 usage error or the daemon cannot be reached.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/cli_format.h"
#include "control/config.h"
#include "control/protocol.h"
#include "dataplane/ip_address.h"

namespace po = boost::program_options;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

constexpr const char* default_socket = "/run/tandem/tandemd.sock";

// Ends the program with `code` after printing `message` (if any) to stderr.
struct exit_now {
  int code;
  std::string message;
};

[[noreturn]] void usage_error(const std::string& message) {
  const bool has_usage = message.find("\nusage:") != std::string::npos;
  throw exit_now{2, "tandemctl: " + message + (has_usage ? "" : "\n(see tandemctl --help)")};
}

const char* usage_text =
    "usage: tandemctl [--socket PATH] [--json] [--timeout 5s] COMMAND [ARGS...]\n"
    "\n"
    "commands:\n"
    "  status [SERVICE] [--watch]\n"
    "  switch SERVICE --to COLOUR [--drain-timeout D] [--on-drain-timeout keep|expire|reset]\n"
    "         [--drain-spread D] [--bake D [--auto-rollback [--min-healthy S]]] [--force]\n"
    "  switch --all --to COLOUR [the same options]\n"
    "  promote SERVICE                            end the bake window, keep the switch\n"
    "  abort SERVICE                              end the bake window, roll back (\"aborted\")\n"
    "  rollback SERVICE | rollback --all          (alias: undo)\n"
    "  canary SERVICE --to COLOUR --percent P\n"
    "  segment SERVICE add|remove CIDR --to COLOUR\n"
    "  pool SERVICE COLOUR add|remove|set-weight ADDR... [--weight W] [--mac MAC]\n"
    "  backend SERVICE [ADDR]                     backends with health, last check, latency\n"
    "  backend SERVICE ADDR state ready|drain|maint\n"
    "  wait-drained SERVICE COLOUR [--timeout D]\n"
    "  flows SERVICE [--colour C] [--backend ADDR] [--limit N]\n"
    "  history [--limit N]\n"
    "  apply -f FILE [--dry-run]\n"
    "  diff -f FILE\n"
    "  stats\n"
    "\n"
    "COLOUR is blue or green; durations look like 300s, 250ms, 5m, 1h.\n"
    "The socket defaults to $TANDEM_SOCKET, else /run/tandem/tandemd.sock.\n"
    "Exit codes: 0 success, 1 tandemd answered with an error (or wait-drained timed out),\n"
    "2 usage error or tandemd cannot be reached.\n";

struct global_options {
  std::string socket;
  bool json = false;
  uint32_t timeout_ms = 5000;
};

// --- connection ----------------------------------------------------------------------------

class connection {
 public:
  connection(std::string path, uint32_t timeout_ms) : path_(std::move(path)), timeout_ms_(timeout_ms) {}
  ~connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void open() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(addr.sun_path))
      throw exit_now{2, "tandemctl: socket path '" + path_ + "' is too long"};
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) unreachable(errno);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
      unreachable(errno);
  }

  // Sends one request and returns the whole response object.
  json call(const std::string& command, const json& args) {
    if (fd_ < 0) open();
    const auto deadline = steady::now() + std::chrono::milliseconds(timeout_ms_);
    const std::string line =
        json{{"version", tandem::protocol_version}, {"command", command}, {"args", args}}.dump() + "\n";
    size_t sent = 0;
    while (sent < line.size()) {
      wait_for(POLLOUT, deadline);
      const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) sent += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) lost(errno);
    }
    for (;;) {
      const size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        const std::string reply = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        try {
          json r = json::parse(reply);
          if (!r.is_object() || !r.contains("ok")) throw std::runtime_error("not a response");
          return r;
        } catch (const std::exception& e) {
          throw exit_now{2, "tandemctl: tandemd sent an unreadable response: " + std::string(e.what())};
        }
      }
      wait_for(POLLIN, deadline);
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) buffer_.append(buf, static_cast<size_t>(n));
      else if (n == 0) throw exit_now{2, "tandemctl: tandemd closed the connection without answering"};
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) lost(errno);
    }
  }

 private:
  [[noreturn]] void unreachable(int e) {
    std::string hint = "is tandemd running?";
    if (e == EACCES || e == EPERM)
      hint = "check the socket's owner, group and mode (control: owner/group/mode in tandemd's config)";
    throw exit_now{2, "tandemctl: cannot connect to " + path_ + ": " + std::strerror(e) + "; " + hint};
  }
  [[noreturn]] void lost(int e) {
    throw exit_now{2, "tandemctl: connection to " + path_ + " failed: " + std::strerror(e)};
  }
  void wait_for(short events, steady::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
      if (left <= 0)
        throw exit_now{2, "tandemctl: no answer from tandemd within " +
                              tandem::config::format_duration(timeout_ms_) + " (" + path_ + ")"};
      pollfd p{fd_, events, 0};
      const int n = ::poll(&p, 1, static_cast<int>(left));
      if (n > 0) return;
      if (n < 0 && errno != EINTR) lost(errno);
    }
  }

  std::string path_;
  uint32_t timeout_ms_;
  int fd_ = -1;
  std::string buffer_;
};

// --- argument helpers -----------------------------------------------------------------------

struct parsed {
  po::variables_map vm;
  std::vector<std::string> positional;
};

// Parses a command's own options; every non-option word lands in `positional`.
parsed parse_command(const std::string& name, const std::vector<std::string>& args,
                     po::options_description opts, const std::string& synopsis,
                     global_options& global) {
  opts.add_options()("json", po::bool_switch(), "print the raw result JSON")("help,h", "this help");
  po::options_description all;
  all.add(opts);
  all.add_options()("positional", po::value<std::vector<std::string>>());
  po::positional_options_description pos;
  pos.add("positional", -1);
  parsed p;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), p.vm);
    po::notify(p.vm);
  } catch (const po::error& e) {
    usage_error(name + ": " + e.what() + "\nusage: tandemctl " + synopsis);
  }
  if (p.vm.count("help")) {
    std::ostringstream out;
    out << "usage: tandemctl " << synopsis << "\n" << opts;
    throw exit_now{0, out.str()};
  }
  if (p.vm["json"].as<bool>()) global.json = true;
  if (p.vm.count("positional")) p.positional = p.vm["positional"].as<std::vector<std::string>>();
  return p;
}

void expect_positional(const parsed& p, const std::string& name, size_t min, size_t max,
                       const std::string& synopsis) {
  if (p.positional.size() < min)
    usage_error(name + ": missing arguments\nusage: tandemctl " + synopsis);
  if (p.positional.size() > max)
    usage_error(name + ": unexpected argument '" + p.positional[max] + "'\nusage: tandemctl " + synopsis);
}

std::string colour_arg(const std::string& what, const std::string& value) {
  if (!tandem::parse_colour_name(value))
    usage_error(what + ": '" + value + "' is not a colour: use blue or green");
  return value;
}

std::string duration_arg(const std::string& what, const std::string& value) {
  if (!tandem::config::parse_duration_ms(value))
    usage_error(what + ": bad duration '" + value + "': use e.g. 300s, 250ms, 5m");
  return value;
}

std::string address_arg(const std::string& what, const std::string& value) {
  if (!tandem::parse_ip_address(value))
    usage_error(what + ": '" + value + "' is not an IPv4 or IPv6 address");
  return value;
}

uint64_t number_arg(const std::string& what, const std::string& value, uint64_t max) {
  uint64_t n = 0;
  bool ok = !value.empty() && value.size() <= 19;
  for (char c : value) {
    if (c < '0' || c > '9') ok = false;
    else n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!ok || n > max)
    usage_error(what + ": '" + value + "' is not a whole number between 0 and " + std::to_string(max));
  return n;
}

std::string opt(const parsed& p, const char* name) {
  return p.vm.count(name) ? p.vm[name].as<std::string>() : std::string();
}

// --- running requests -----------------------------------------------------------------------

// Prints the result (or the error) and returns the exit code.
int report(const global_options& g, const std::string& command, const json& response) {
  if (!response.value("ok", false)) {
    if (g.json) std::cout << response.dump() << "\n";
    std::cerr << "tandemctl: " << response.value("error", std::string("request failed"));
    const std::string code = response.value("code", std::string());
    if (!code.empty()) std::cerr << " (" << code << ")";
    std::cerr << "\n";
    return 1;
  }
  const json& result = response.contains("result") ? response["result"] : json();
  if (g.json) std::cout << result.dump(2) << "\n";
  else std::cout << tandem::cli::format_result(command, result);
  return 0;
}

int send_one(const global_options& g, const std::string& command, const json& args) {
  connection c(g.socket, g.timeout_ms);
  return report(g, command, c.call(command, args));
}

std::string read_file(const std::string& path) {
  std::ostringstream out;
  if (path == "-") {
    out << std::cin.rdbuf();
    return out.str();
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw exit_now{2, "tandemctl: cannot read " + path + ": " + std::strerror(errno)};
  out << f.rdbuf();
  return out.str();
}

// --- commands -------------------------------------------------------------------------------

using command_fn = std::function<int(global_options&, const std::vector<std::string>&)>;

int cmd_status(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "status [SERVICE] [--watch]";
  po::options_description o("status options");
  o.add_options()("watch,w", po::bool_switch(), "redraw every second until Ctrl-C");
  parsed p = parse_command("status", args, o, syn, g);
  expect_positional(p, "status", 0, 1, syn);
  json a = json::object();
  if (!p.positional.empty()) a["service"] = p.positional[0];
  if (!p.vm["watch"].as<bool>()) return send_one(g, "status", a);

  connection c(g.socket, g.timeout_ms);
  for (;;) {
    const json response = c.call("status", a);
    if (!g.json) {
      const std::time_t now = std::time(nullptr);
      char stamp[32];
      std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&now));
      std::cout << "\033[H\033[2J" << "tandemctl status (every 1s, Ctrl-C to stop)   " << stamp << "\n\n";
    }
    if (const int rc = report(g, "status", response); rc != 0) return rc;
    std::cout.flush();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

void add_drain_options(po::options_description& o) {
  o.add_options()("drain-timeout", po::value<std::string>(), "how long the old colour may drain (default: the service's drain.timeout)")
      ("on-drain-timeout", po::value<std::string>(), "keep|expire|reset: what happens to flows left at the deadline")
      ("drain-spread", po::value<std::string>(), "spread expiries/resets over this long after the deadline");
}

void drain_args(const parsed& p, json& a) {
  if (auto v = opt(p, "drain-timeout"); !v.empty()) a["drain_timeout"] = duration_arg("--drain-timeout", v);
  if (auto v = opt(p, "drain-spread"); !v.empty()) a["drain_spread"] = duration_arg("--drain-spread", v);
  if (p.vm.count("on-drain-timeout")) {
    const std::string v = opt(p, "on-drain-timeout");
    if (v != "keep" && v != "expire" && v != "reset")
      usage_error("--on-drain-timeout: '" + v + "' is not one of keep, expire, reset");
    a["on_drain_timeout"] = v;
  }
}

void add_health_options(po::options_description& o) {
  o.add_options()("bake", po::value<std::string>(), "watch the new colour this long (e.g. 60s); status shows the window")
      ("auto-rollback", po::bool_switch(), "roll back by itself if the new colour turns unhealthy during --bake")
      ("min-healthy", po::value<std::string>(), "with --auto-rollback: healthy share below which to roll back, 0..1 (default: the service's health.bake_min_healthy)")
      ("force", po::bool_switch(), "switch even when the target colour has fewer healthy backends than health.min_healthy_to_switch");
}

void health_args(const parsed& p, json& a) {
  if (auto v = opt(p, "bake"); !v.empty()) {
    duration_arg("--bake", v);
    if (*tandem::config::parse_duration_ms(v) == 0) usage_error("--bake: must be more than 0");
    a["bake"] = v;
  }
  if (p.vm["auto-rollback"].as<bool>()) {
    if (!a.contains("bake")) usage_error("--auto-rollback: needs --bake D (the window to watch)");
    a["auto_rollback"] = true;
  }
  if (p.vm.count("min-healthy")) {
    const std::string text = opt(p, "min-healthy");
    if (!a.contains("auto_rollback")) usage_error("--min-healthy: only with --auto-rollback");
    double v = -1;
    size_t used = 0;
    try {
      v = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || !(v >= 0 && v <= 1))
      usage_error("--min-healthy: '" + text + "' is not a share between 0 and 1 (e.g. 0.8)");
    a["min_healthy"] = v;
  }
  if (p.vm["force"].as<bool>()) a["force"] = true;
}

int cmd_switch(global_options& g, const std::vector<std::string>& args) {
  const std::string syn =
      "switch SERVICE --to COLOUR [drain options] [--bake D [--auto-rollback [--min-healthy S]]] "
      "[--force] | switch --all --to COLOUR [options]";
  po::options_description o("switch options");
  o.add_options()("to", po::value<std::string>(), "blue or green (required)")
      ("all", po::bool_switch(), "every service");
  add_drain_options(o);
  add_health_options(o);
  parsed p = parse_command("switch", args, o, syn, g);
  const bool all = p.vm["all"].as<bool>();
  expect_positional(p, "switch", all ? 0 : 1, all ? 0 : 1, syn);
  if (!p.vm.count("to")) usage_error("switch: --to COLOUR is required\nusage: tandemctl " + syn);
  json a = json::object();
  if (all) a["all"] = true;
  else a["service"] = p.positional[0];
  a["to"] = colour_arg("--to", opt(p, "to"));
  drain_args(p, a);
  health_args(p, a);
  return send_one(g, "switch", a);
}

int bake_command(global_options& g, const std::vector<std::string>& args, const std::string& name) {
  const std::string syn = name + " SERVICE";
  parsed p = parse_command(name, args, po::options_description(name + " options"), syn, g);
  expect_positional(p, name, 1, 1, syn);
  return send_one(g, name, {{"service", p.positional[0]}});
}

int cmd_rollback(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "rollback SERVICE | rollback --all";
  po::options_description o("rollback options");
  o.add_options()("all", po::bool_switch(), "every service that was switched");
  parsed p = parse_command("rollback", args, o, syn, g);
  const bool all = p.vm["all"].as<bool>();
  expect_positional(p, "rollback", all ? 0 : 1, all ? 0 : 1, syn);
  json a = json::object();
  if (all) a["all"] = true;
  else a["service"] = p.positional[0];
  return send_one(g, "rollback", a);
}

int cmd_canary(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "canary SERVICE --to COLOUR --percent P";
  po::options_description o("canary options");
  o.add_options()("to", po::value<std::string>(), "the idle colour that gets the canary share")
      ("percent", po::value<std::string>(), "0..100, up to 2 decimals; 0 ends the canary");
  parsed p = parse_command("canary", args, o, syn, g);
  expect_positional(p, "canary", 1, 1, syn);
  if (!p.vm.count("to")) usage_error("canary: --to COLOUR is required\nusage: tandemctl " + syn);
  if (!p.vm.count("percent")) usage_error("canary: --percent P is required\nusage: tandemctl " + syn);
  const std::string text = opt(p, "percent");
  double pct = 0;
  size_t used = 0;
  try {
    pct = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    usage_error("--percent: '" + text + "' is not a number (0..100, e.g. 5 or 2.5)");
  if (auto bp = tandem::percent_to_basis_points(pct); !bp)
    usage_error("--percent: " + bp.error_message() + ", got " + text);
  json a = {{"service", p.positional[0]}, {"to", colour_arg("--to", opt(p, "to"))}, {"percent", pct}};
  return send_one(g, "canary", a);
}

int cmd_segment(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "segment SERVICE add|remove CIDR --to COLOUR";
  po::options_description o("segment options");
  o.add_options()("to", po::value<std::string>(), "the colour whose pool serves the segment");
  parsed p = parse_command("segment", args, o, syn, g);
  expect_positional(p, "segment", 3, 3, syn);
  const std::string& op = p.positional[1];
  if (op != "add" && op != "remove")
    usage_error("segment: '" + op + "' is not add or remove\nusage: tandemctl " + syn);
  const std::string& cidr = p.positional[2];
  if (!tandem::parse_ip_prefix(cidr)) usage_error("CIDR: " + tandem::explain_bad_prefix(cidr));
  if (!p.vm.count("to")) usage_error("segment: --to COLOUR is required\nusage: tandemctl " + syn);
  json a = {{"service", p.positional[0]}, {"op", op}, {"cidr", cidr}, {"to", colour_arg("--to", opt(p, "to"))}};
  return send_one(g, "segment", a);
}

int cmd_pool(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "pool SERVICE COLOUR add|remove|set-weight ADDR... [--weight W] [--mac MAC]";
  po::options_description o("pool options");
  o.add_options()("weight", po::value<std::string>(), "0..65535 (add: default 1; required by set-weight)")
      ("mac", po::value<std::string>(), "backend MAC for l2 services (add, one address)");
  parsed p = parse_command("pool", args, o, syn, g);
  expect_positional(p, "pool", 4, 1'000'000, syn);
  const std::string colour = colour_arg("COLOUR", p.positional[1]);
  const std::string& op = p.positional[2];
  if (op != "add" && op != "remove" && op != "set-weight")
    usage_error("pool: '" + op + "' is not add, remove or set-weight\nusage: tandemctl " + syn);
  json addresses = json::array();
  for (size_t i = 3; i < p.positional.size(); ++i) addresses.push_back(address_arg("ADDR", p.positional[i]));
  json a = {{"service", p.positional[0]}, {"colour", colour}, {"op", op}, {"addresses", addresses}};
  if (p.vm.count("weight")) a["weight"] = number_arg("--weight", opt(p, "weight"), 65535);
  if (op == "set-weight" && !p.vm.count("weight")) usage_error("pool set-weight: --weight W is required");
  if (p.vm.count("mac")) {
    if (!tandem::config::parse_mac(opt(p, "mac")))
      usage_error("--mac: '" + opt(p, "mac") + "' is not a MAC address (e.g. 02:00:00:00:01:01)");
    if (op != "add") usage_error("--mac: only with pool ... add");
    a["mac"] = opt(p, "mac");
  }
  return send_one(g, "pool", a);
}

int cmd_backend(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "backend SERVICE [ADDR] | backend SERVICE ADDR state ready|drain|maint";
  parsed p = parse_command("backend", args, po::options_description("backend options"), syn, g);
  if (p.positional.size() == 1 || p.positional.size() == 2) {
    // Show: the service's backends (or one) with admin state, health, last check and latency.
    const std::string service = p.positional[0];
    const std::string only = p.positional.size() == 2 ? address_arg("ADDR", p.positional[1]) : "";
    connection c(g.socket, g.timeout_ms);
    const json response = c.call("status", {{"service", service}});
    if (!response.value("ok", false)) return report(g, "status", response);
    bool found = false;
    const std::string text = tandem::cli::format_backends(response["result"], service, only, found);
    if (!only.empty() && !found)
      throw exit_now{1, "tandemctl: service " + service + ": no backend " + only};
    if (g.json) {
      json list = json::array();
      for (const json& s : response["result"].value("services", json::array()))
        for (const char* col : {"blue", "green"})
          for (json b : s["colours"][col].value("backends", json::array())) {
            const auto want = tandem::parse_ip_address(only);
            const auto have = tandem::parse_ip_address(b.value("address", ""));
            if (!only.empty() && !(want && have && *want == *have)) continue;
            b["colour"] = col;
            list.push_back(b);
          }
      std::cout << json{{"service", service}, {"backends", list}}.dump(2) << "\n";
    } else {
      std::cout << text;
    }
    return 0;
  }
  expect_positional(p, "backend", 4, 4, syn);
  if (p.positional[2] != "state")
    usage_error("backend: expected the word 'state', got '" + p.positional[2] + "'\nusage: tandemctl " + syn);
  const std::string& state = p.positional[3];
  if (state != "ready" && state != "drain" && state != "maint")
    usage_error("backend: state '" + state + "' is not one of ready, drain, maint");
  json a = {{"service", p.positional[0]}, {"address", address_arg("ADDR", p.positional[1])}, {"state", state}};
  return send_one(g, "backend", a);
}

int cmd_wait_drained(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "wait-drained SERVICE COLOUR [--timeout D]";
  po::options_description o("wait-drained options");
  o.add_options()("timeout", po::value<std::string>()->default_value("10m"), "give up after this long (exit 1)");
  parsed p = parse_command("wait-drained", args, o, syn, g);
  expect_positional(p, "wait-drained", 2, 2, syn);
  const std::string service = p.positional[0];
  const std::string colour = colour_arg("COLOUR", p.positional[1]);
  const uint32_t limit_ms = *tandem::config::parse_duration_ms(duration_arg("--timeout", opt(p, "timeout")));
  const auto deadline = steady::now() + std::chrono::milliseconds(limit_ms);

  connection c(g.socket, g.timeout_ms);
  std::string last;
  bool warned = false;
  for (;;) {
    const json response = c.call("status", {{"service", service}});
    if (!response.value("ok", false)) return report(g, "status", response);
    const json& result = response["result"];
    bool found = false;
    long long live = -1;
    const std::string line = tandem::cli::drain_progress(result, service, colour, found, live);
    if (!found) throw exit_now{1, "tandemctl: unknown service '" + service + "'"};
    if (live < 0) throw exit_now{1, "tandemctl: tandemd's status has no live_flows for " + colour};
    if (live == 0) {
      if (g.json) std::cout << json{{"service", service}, {"colour", colour}, {"live_flows", 0}, {"drained", true}}.dump() << "\n";
      else std::cout << service << ": " << colour << " drained\n";
      return 0;
    }
    if (!warned && line.find(" active,") != std::string::npos) {
      std::cerr << "tandemctl: warning: " << colour << " is " << service
                << "'s active colour; it takes new flows and may never drain\n";
      warned = true;
    }
    if (line != last && !g.json) {
      std::cout << line << std::endl;
      last = line;
    }
    if (steady::now() >= deadline) {
      if (g.json) std::cout << json{{"service", service}, {"colour", colour}, {"live_flows", live}, {"drained", false}}.dump() << "\n";
      throw exit_now{1, "tandemctl: " + service + ": " + colour + " still has " + std::to_string(live) +
                            " flows after " + tandem::config::format_duration(limit_ms)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int cmd_flows(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "flows SERVICE [--colour C] [--backend ADDR] [--limit N]";
  po::options_description o("flows options");
  o.add_options()("colour", po::value<std::string>(), "only this colour")
      ("backend", po::value<std::string>(), "only this backend")
      ("limit", po::value<std::string>(), "at most N flows (default 100)");
  parsed p = parse_command("flows", args, o, syn, g);
  expect_positional(p, "flows", 1, 1, syn);
  json a = {{"service", p.positional[0]}};
  if (p.vm.count("colour")) a["colour"] = colour_arg("--colour", opt(p, "colour"));
  if (p.vm.count("backend")) a["backend"] = address_arg("--backend", opt(p, "backend"));
  if (p.vm.count("limit")) a["limit"] = number_arg("--limit", opt(p, "limit"), 1'000'000);
  return send_one(g, "flows", a);
}

int cmd_history(global_options& g, const std::vector<std::string>& args) {
  const std::string syn = "history [--limit N]";
  po::options_description o("history options");
  o.add_options()("limit", po::value<std::string>(), "the last N entries (default 50)");
  parsed p = parse_command("history", args, o, syn, g);
  expect_positional(p, "history", 0, 0, syn);
  json a = json::object();
  if (p.vm.count("limit")) a["limit"] = number_arg("--limit", opt(p, "limit"), 1'000'000);
  return send_one(g, "history", a);
}

int config_command(global_options& g, const std::vector<std::string>& args, const std::string& name,
                   bool with_dry_run) {
  const std::string syn = name + " -f FILE" + (with_dry_run ? " [--dry-run]" : "");
  po::options_description o(name + " options");
  o.add_options()("file,f", po::value<std::string>(), "the configuration (YAML); - reads stdin");
  if (with_dry_run) o.add_options()("dry-run", po::bool_switch(), "show the changes, apply nothing");
  parsed p = parse_command(name, args, o, syn, g);
  expect_positional(p, name, 0, 0, syn);
  if (!p.vm.count("file")) usage_error(name + ": -f FILE is required\nusage: tandemctl " + syn);
  const std::string file = opt(p, "file");
  json a = {{"config", read_file(file)}, {"file", file == "-" ? "<stdin>" : file}};
  if (with_dry_run) a["dry_run"] = p.vm["dry-run"].as<bool>();
  return send_one(g, name, a);
}

int cmd_stats(global_options& g, const std::vector<std::string>& args) {
  parsed p = parse_command("stats", args, po::options_description("stats options"), "stats", g);
  expect_positional(p, "stats", 0, 0, "stats");
  return send_one(g, "stats", json::object());
}

const std::map<std::string, command_fn>& command_table() {
  static const std::map<std::string, command_fn> t = {
      {"status", cmd_status},
      {"switch", cmd_switch},
      {"rollback", cmd_rollback},
      {"promote", [](global_options& g, const std::vector<std::string>& a) { return bake_command(g, a, "promote"); }},
      {"abort", [](global_options& g, const std::vector<std::string>& a) { return bake_command(g, a, "abort"); }},
      {"undo", cmd_rollback},
      {"canary", cmd_canary},
      {"segment", cmd_segment},
      {"pool", cmd_pool},
      {"backend", cmd_backend},
      {"wait-drained", cmd_wait_drained},
      {"flows", cmd_flows},
      {"history", cmd_history},
      {"apply", [](global_options& g, const std::vector<std::string>& a) { return config_command(g, a, "apply", true); }},
      {"diff", [](global_options& g, const std::vector<std::string>& a) { return config_command(g, a, "diff", false); }},
      {"stats", cmd_stats},
  };
  return t;
}

int run(int argc, char** argv) {
  global_options g;
  const char* env = std::getenv("TANDEM_SOCKET");
  g.socket = env && *env ? env : default_socket;

  // Global options stop at the first word that is not one, the command; what follows belongs
  // to the command (so `wait-drained --timeout` is the command's own option).
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t cmd = 0;
  while (cmd < args.size() && !args[cmd].empty() && args[cmd][0] == '-') {
    const std::string& a = args[cmd];
    const bool takes_value = a == "--socket" || a == "--timeout";
    cmd += takes_value ? 2 : 1;
  }
  po::options_description global("global options");
  global.add_options()("socket", po::value<std::string>(), "control socket (default $TANDEM_SOCKET or /run/tandem/tandemd.sock)")
      ("json", po::bool_switch(), "print the raw result JSON")
      ("timeout", po::value<std::string>()->default_value("5s"), "how long to wait for tandemd's answer")
      ("help,h", "this help");
  po::variables_map vm;
  try {
    const std::vector<std::string> head(args.begin(), args.begin() + static_cast<long>(std::min(cmd, args.size())));
    po::store(po::command_line_parser(head).options(global).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    usage_error(e.what());
  }
  if (vm.count("help")) {
    std::cout << usage_text << "\n" << global;
    return 0;
  }
  if (vm.count("socket")) g.socket = vm["socket"].as<std::string>();
  g.json = vm["json"].as<bool>();
  const std::string timeout = vm["timeout"].as<std::string>();
  auto ms = tandem::config::parse_duration_ms(timeout);
  if (!ms || *ms == 0) usage_error("--timeout: bad duration '" + timeout + "': use e.g. 5s, 500ms");
  g.timeout_ms = *ms;

  if (cmd >= args.size()) {
    std::cerr << usage_text;
    return 2;
  }
  const auto& table = command_table();
  auto it = table.find(args[cmd]);
  if (it == table.end()) usage_error("unknown command '" + args[cmd] + "'");
  const std::vector<std::string> rest(args.begin() + static_cast<long>(cmd) + 1, args.end());
  return it->second(g, rest);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const exit_now& e) {
    if (!e.message.empty()) (e.code == 0 ? std::cout : std::cerr) << e.message << (e.message.back() == '\n' ? "" : "\n");
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "tandemctl: " << e.what() << "\n";
    return 2;
  }
}
