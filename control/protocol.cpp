#include "control/protocol.h"

#include <algorithm>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <vector>

#include "control/config.h"
#include "control/controller.h"

namespace tandem {
namespace {

using json = nlohmann::json;

// Thrown inside this file only; handle_request turns it into an error response.
struct request_failure {
  std::string code;
  std::string message;
};

[[noreturn]] void bad_request(std::string message) {
  throw request_failure{"bad_request", std::move(message)};
}

const char* type_of(const json& j) {
  if (j.is_number_integer() || j.is_number_unsigned()) return "an integer";
  if (j.is_number_float()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_boolean()) return "a boolean";
  if (j.is_null()) return "null";
  if (j.is_array()) return "a list";
  if (j.is_object()) return "an object";
  return j.type_name();
}

// Reads the arguments of one command and rejects anything it does not know, so a typo in an
// argument name is an error rather than silently ignored.
class args_reader {
 public:
  args_reader(const json& args, std::string command, std::initializer_list<const char*> allowed)
      : args_(args), command_(std::move(command)) {
    for (const auto& item : args_.items()) {
      const std::string& key = item.key();
      if (std::find_if(allowed.begin(), allowed.end(),
                       [&](const char* a) { return key == a; }) == allowed.end()) {
        std::string list;
        for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
        bad_request("args." + key + ": unknown argument for " + command_ +
                    (list.empty() ? " (it takes none)" : " (expected: " + list + ")"));
      }
    }
  }

  bool has(const char* key) const { return args_.contains(key) && !args_[key].is_null(); }

  std::string string(const char* key) const {
    if (!has(key)) bad_request(field(key) + ": missing (required by " + command_ + ")");
    return string_value(key);
  }
  std::optional<std::string> opt_string(const char* key) const {
    if (!has(key)) return std::nullopt;
    return string_value(key);
  }

  bool boolean(const char* key, bool def) const {
    if (!has(key)) return def;
    const json& v = args_[key];
    if (!v.is_boolean()) bad_request(field(key) + ": must be true or false, got " + type_of(v));
    return v.get<bool>();
  }

  std::optional<uint64_t> opt_uint(const char* key, uint64_t max) const {
    if (!has(key)) return std::nullopt;
    const json& v = args_[key];
    uint64_t n = 0;
    if (v.is_number_unsigned()) {
      n = v.get<uint64_t>();
    } else if (v.is_number_integer()) {
      const int64_t s = v.get<int64_t>();
      if (s < 0) bad_request(field(key) + ": must not be negative, got " + std::to_string(s));
      n = static_cast<uint64_t>(s);
    } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
               v.get<double>() >= 0 && v.get<double>() <= static_cast<double>(max)) {
      n = static_cast<uint64_t>(v.get<double>());
    } else {
      bad_request(field(key) + ": must be a whole number, got " +
                  (v.is_number() ? v.dump() : std::string(type_of(v))));
    }
    if (n > max)
      bad_request(field(key) + ": must be at most " + std::to_string(max) + ", got " +
                  std::to_string(n));
    return n;
  }

  colour colour_arg(const char* key) const {
    const std::string s = string(key);
    auto c = parse_colour_name(s);
    if (!c) bad_request(field(key) + ": '" + s + "' is not a colour: use blue or green");
    return *c;
  }
  std::optional<colour> opt_colour(const char* key) const {
    if (!has(key)) return std::nullopt;
    return colour_arg(key);
  }

  std::optional<uint32_t> opt_duration(const char* key) const {
    auto s = opt_string(key);
    if (!s) return std::nullopt;
    auto ms = config::parse_duration_ms(*s);
    if (!ms) bad_request(field(key) + ": bad duration '" + *s + "': use e.g. 300s, 250ms, 5m");
    return ms;
  }

  // One of `choices` (the message lists them).
  std::string choice(const char* key, std::initializer_list<const char*> choices,
                     bool required = true) const {
    if (!required && !has(key)) return {};
    const std::string s = string(key);
    std::string list;
    for (const char* c : choices) {
      if (s == c) return s;
      list += std::string(list.empty() ? "" : ", ") + c;
    }
    bad_request(field(key) + ": '" + s + "' is not one of " + list);
  }

  const json& raw(const char* key) const { return args_[key]; }
  static std::string field(const std::string& key) { return "args." + key; }

 private:
  std::string string_value(const char* key) const {
    const json& v = args_[key];
    if (!v.is_string()) bad_request(field(key) + ": must be a string, got " + type_of(v));
    return v.get<std::string>();
  }

  const json& args_;
  std::string command_;
};

// Controller errors: the message decides the code (see protocol.h).
json from_result(const result<json>& r) {
  if (r.ok()) return ok_response(r.value());
  const std::string& m = r.error_message();
  std::string_view code = "invalid";
  if (m.rfind("unknown service", 0) == 0 || m.find(": no backend ") != std::string::npos ||
      m.find(": no segment ") != std::string::npos)
    code = "not_found";
  else if (m.rfind("already", 0) == 0 || m.find(" already ") != std::string::npos)
    code = "conflict";
  return error_response(code, m);
}

// "service" or "all": true, never both.
std::optional<std::string> service_or_all(const args_reader& a, const std::string& command) {
  const bool all = a.boolean("all", false);
  if (all && a.has("service"))
    bad_request("args: give either args.service or args.all: true to " + command + ", not both");
  if (all) return std::nullopt;
  if (!a.has("service"))
    bad_request("args.service: missing (required by " + command + ", or give args.all: true)");
  return a.string("service");
}

config::daemon_config parse_config_arg(const args_reader& a) {
  const std::string text = a.string("config");
  const std::string file = a.opt_string("file").value_or("<request>");
  auto cfg = config::parse_config(text, file);
  if (!cfg) throw request_failure{"invalid", cfg.error_message()};
  return std::move(cfg).value();
}

using handler = std::function<json(controller&, const json&, const actor&, request_info&)>;

json cmd_status(controller& ctl, const json& args, const actor&, request_info&) {
  args_reader a(args, "status", {"service"});
  return from_result(ctl.status(a.opt_string("service").value_or("")));
}

json cmd_stats(controller& ctl, const json& args, const actor&, request_info&) {
  args_reader a(args, "stats", {});
  return ok_response(ctl.stats());
}

json cmd_history(controller& ctl, const json& args, const actor&, request_info&) {
  args_reader a(args, "history", {"limit"});
  const uint64_t limit = a.opt_uint("limit", 1'000'000).value_or(50);
  return ok_response(ctl.history(static_cast<size_t>(limit)));
}

json cmd_switch(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "switch",
                {"service", "all", "to", "drain_timeout", "on_drain_timeout", "drain_spread", "bake",
                 "auto_rollback", "min_healthy", "force"});
  const auto service = service_or_all(a, "switch");
  switch_options opts;
  opts.to = a.colour_arg("to");
  opts.drain_timeout_ms = a.opt_duration("drain_timeout");
  opts.drain_spread_ms = a.opt_duration("drain_spread");
  opts.bake_ms = a.opt_duration("bake");
  if (opts.bake_ms && *opts.bake_ms == 0) bad_request("args.bake: must be more than 0");
  opts.auto_rollback = a.boolean("auto_rollback", false);
  opts.force = a.boolean("force", false);
  if (opts.auto_rollback && !opts.bake_ms)
    bad_request("args.auto_rollback: needs args.bake (the window during which health is watched)");
  if (a.has("min_healthy")) {
    const json& m = a.raw("min_healthy");
    if (!m.is_number())
      bad_request("args.min_healthy: must be a number between 0 and 1, got " + std::string(type_of(m)));
    const double v = m.get<double>();
    if (!std::isfinite(v) || v < 0 || v > 1)
      bad_request("args.min_healthy: must be between 0 and 1, got " + m.dump());
    if (!opts.auto_rollback) bad_request("args.min_healthy: only with args.auto_rollback: true");
    opts.min_healthy_bp = static_cast<uint32_t>(std::lround(v * 10000));
  }
  const std::string action = a.choice("on_drain_timeout", {"keep", "expire", "reset"}, false);
  if (action == "keep") opts.on_drain_timeout = drain_action::keep;
  else if (action == "expire") opts.on_drain_timeout = drain_action::expire;
  else if (action == "reset") opts.on_drain_timeout = drain_action::reset;
  return from_result(service ? ctl.switch_to(*service, opts, who) : ctl.switch_all(opts, who));
}

json cmd_rollback(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "rollback", {"service", "all"});
  const auto service = service_or_all(a, "rollback");
  return from_result(service ? ctl.rollback(*service, who) : ctl.rollback_all(who));
}

json cmd_promote(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "promote", {"service"});
  return from_result(ctl.promote(a.string("service"), who));
}

json cmd_abort(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "abort", {"service"});
  return from_result(ctl.abort_bake(a.string("service"), who));
}

json cmd_canary(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "canary", {"service", "to", "percent"});
  const std::string service = a.string("service");
  const colour to = a.colour_arg("to");
  if (!a.has("percent")) bad_request("args.percent: missing (required by canary)");
  const json& p = a.raw("percent");
  if (!p.is_number())
    bad_request("args.percent: must be a number between 0 and 100, got " +
                std::string(type_of(p)));
  auto bp = percent_to_basis_points(p.get<double>());
  if (!bp) bad_request("args.percent: " + bp.error_message() + ", got " + p.dump());
  return from_result(ctl.canary(service, to, *bp, who));
}

json cmd_segment(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "segment", {"service", "op", "cidr", "to"});
  const std::string service = a.string("service");
  const std::string op = a.choice("op", {"add", "remove"});
  const std::string cidr = a.string("cidr");
  if (!parse_ip_prefix(cidr)) bad_request("args.cidr: " + explain_bad_prefix(cidr));
  const colour to = a.colour_arg("to");
  return from_result(ctl.segment(service, op == "add", cidr, to, who));
}

json cmd_pool(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "pool", {"service", "colour", "op", "addresses", "weight", "mac"});
  const std::string service = a.string("service");
  const colour pool = a.colour_arg("colour");
  const std::string op = a.choice("op", {"add", "remove", "set-weight"});
  if (!a.has("addresses")) bad_request("args.addresses: missing (required by pool)");
  const json& list = a.raw("addresses");
  if (!list.is_array())
    bad_request("args.addresses: must be a list of addresses, got " + std::string(type_of(list)));
  if (list.empty()) bad_request("args.addresses: must not be empty");
  std::vector<std::string> addresses;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string f = "args.addresses[" + std::to_string(i) + "]";
    if (!list[i].is_string()) bad_request(f + ": must be a string, got " + type_of(list[i]));
    const std::string s = list[i].get<std::string>();
    if (!parse_ip_address(s)) bad_request(f + ": '" + s + "' is not an IP address");
    addresses.push_back(s);
  }
  std::optional<uint32_t> weight;
  if (auto w = a.opt_uint("weight", 65535)) weight = static_cast<uint32_t>(*w);
  auto mac = a.opt_string("mac");
  if (mac && !config::parse_mac(*mac))
    bad_request("args.mac: '" + *mac + "' is not a MAC address (e.g. 02:00:00:00:01:01)");
  if (op == "set-weight" && !weight) bad_request("args.weight: missing (required by set-weight)");
  if (op != "add" && mac) bad_request("args.mac: only valid with op add");
  if (op == "remove" && weight) bad_request("args.weight: not valid with op remove");
  return from_result(ctl.pool_edit(service, pool, op, addresses, weight, mac, who));
}

json cmd_backend(controller& ctl, const json& args, const actor& who, request_info&) {
  args_reader a(args, "backend", {"service", "address", "state"});
  const std::string service = a.string("service");
  const std::string address = a.string("address");
  if (!parse_ip_address(address)) bad_request("args.address: '" + address + "' is not an IP address");
  const std::string state = a.choice("state", {"ready", "drain", "maint"});
  return from_result(ctl.backend_state(service, address, state, who));
}

json cmd_apply(controller& ctl, const json& args, const actor& who, request_info& info) {
  args_reader a(args, "apply", {"config", "file", "dry_run"});
  const bool dry_run = a.boolean("dry_run", false);
  info.changes_state = !dry_run;
  const config::daemon_config cfg = parse_config_arg(a);
  return from_result(ctl.apply(cfg, dry_run, who));
}

json cmd_diff(controller& ctl, const json& args, const actor&, request_info&) {
  args_reader a(args, "diff", {"config", "file"});
  const config::daemon_config cfg = parse_config_arg(a);
  return ok_response(ctl.diff(cfg));
}

// Per-colour and per-backend live-flow counts (from status) plus a sample of flow entries
// gathered from the workers.
json cmd_flows(controller& ctl, const json& args, const actor&, request_info&) {
  args_reader a(args, "flows", {"service", "colour", "backend", "limit"});
  const std::string service = a.string("service");
  const auto only_colour = a.opt_colour("colour");
  const auto backend = a.opt_string("backend");
  if (backend && !parse_ip_address(*backend))
    bad_request("args.backend: '" + *backend + "' is not an IP address");
  const uint64_t limit = a.opt_uint("limit", 1'000'000).value_or(100);
  auto st = ctl.status(service);
  if (!st) return from_result(st);

  json counts = json::array();
  int64_t total = 0;
  const json& services = st->value("services", json::array());
  for (const json& s : services) {
    if (!s.is_object() || s.value("name", "") != service) continue;
    const json& colours = s.value("colours", json::object());
    for (colour c : {colour::blue, colour::green}) {
      if (only_colour && *only_colour != c) continue;
      const json& col = colours.value(colour_name(c), json::object());
      if (!backend) {
        const int64_t n = col.value("live_flows", int64_t{0});
        counts.push_back({{"colour", colour_name(c)}, {"backend", nullptr}, {"live_flows", n}});
        total += n;
        continue;
      }
      const auto want = parse_ip_address(*backend);
      for (const json& b : col.value("backends", json::array())) {
        const auto addr = parse_ip_address(b.value("address", ""));
        if (!addr || !(*addr == *want)) continue;
        const int64_t n = b.value("live_flows", int64_t{0});
        counts.push_back({{"colour", colour_name(c)}, {"backend", b.value("address", "")},
                          {"live_flows", n}});
        total += n;
      }
    }
  }
  auto sample = ctl.flows(service, only_colour, backend.value_or(""),
                          static_cast<uint32_t>(std::min<uint64_t>(limit, max_flow_sample)));
  if (!sample) return from_result(sample);
  return ok_response({{"service", service},
                      {"limit", limit},
                      {"live_flows", total},
                      {"counts", counts},
                      {"matched", (*sample)["matched"]},
                      {"flows", (*sample)["flows"]}});
}

const std::map<std::string, handler, std::less<>>& commands() {
  static const std::map<std::string, handler, std::less<>> table = {
      {"status", cmd_status},   {"stats", cmd_stats},     {"history", cmd_history},
      {"switch", cmd_switch},   {"rollback", cmd_rollback}, {"canary", cmd_canary},
      {"segment", cmd_segment}, {"pool", cmd_pool},       {"backend", cmd_backend},
      {"apply", cmd_apply},     {"diff", cmd_diff},       {"flows", cmd_flows},
      {"promote", cmd_promote}, {"abort", cmd_abort},
  };
  return table;
}

bool changes_state(std::string_view command) {
  return command == "switch" || command == "rollback" || command == "canary" ||
         command == "segment" || command == "pool" || command == "backend" ||
         command == "apply" || command == "promote" || command == "abort";
}

json dispatch(controller& ctl, const std::string& line, const actor& who, request_info& info) {
  json req;
  try {
    req = json::parse(line);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number that does not fit a double (1e400).
    bad_request(std::string("malformed JSON: ") + e.what());
  }
  if (!req.is_object())
    bad_request(std::string("request must be a JSON object, got ") + type_of(req));
  if (!req.contains("version"))
    bad_request("missing 'version': send {\"version\":1,\"command\":...}");
  const json& version = req["version"];
  if (!version.is_number_integer() || version.get<int64_t>() != protocol_version)
    bad_request("unsupported version " + version.dump() + ": this tandemd speaks version " +
                std::to_string(protocol_version));
  if (!req.contains("command")) bad_request("missing 'command'");
  if (!req["command"].is_string())
    bad_request(std::string("'command' must be a string, got ") + type_of(req["command"]));
  const std::string command = req["command"].get<std::string>();
  for (const auto& [key, value] : req.items()) {
    (void)value;
    if (key != "version" && key != "command" && key != "args")
      bad_request("unknown request field '" + key + "' (expected version, command, args)");
  }

  const auto& table = commands();
  auto it = table.find(command);
  if (it == table.end()) {
    std::string list;
    for (const auto& [name, h] : table) list += (list.empty() ? "" : ", ") + name;
    bad_request("unknown command '" + command + "': expected one of " + list);
  }
  info.command = command;
  info.changes_state = changes_state(command);

  static const json no_args = json::object();
  const json* args = &no_args;
  if (req.contains("args") && !req["args"].is_null()) {
    if (!req["args"].is_object())
      bad_request(std::string("'args' must be an object, got ") + type_of(req["args"]));
    args = &req["args"];
  }
  return it->second(ctl, *args, who, info);
}

}  // namespace

json ok_response(json result) {
  return json{{"version", protocol_version}, {"ok", true}, {"result", std::move(result)}};
}

json error_response(std::string_view code, std::string message) {
  return json{{"version", protocol_version},
              {"ok", false},
              {"error", std::move(message)},
              {"code", std::string(code)}};
}

std::string encode_line(const json& j) {
  try {
    std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
    s += '\n';
    return s;
  } catch (...) {
    return "{\"version\":1,\"ok\":false,\"error\":\"cannot encode the response\","
           "\"code\":\"internal\"}\n";
  }
}

json handle_request(controller& ctl, const std::string& line, const actor& who,
                    request_info* info) {
  request_info local;
  request_info& i = info ? *info : local;
  i = request_info{};
  json response;
  try {
    const controller::metrics_batch batch(ctl);
    response = dispatch(ctl, line, who, i);
  } catch (const request_failure& f) {
    response = error_response(f.code, f.message);
  } catch (const std::exception& e) {
    response = error_response("internal", std::string("internal error: ") + e.what());
  } catch (...) {
    response = error_response("internal", "internal error");
  }
  i.ok = response.value("ok", false);
  return response;
}

}  // namespace tandem
