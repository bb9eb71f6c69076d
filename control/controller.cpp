#include "control/controller.h"
#include "control/iso_time.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <unistd.h>

namespace tandem {
namespace {

using nlohmann::json;

const char* drain_action_name(drain_action a) {
  switch (a) {
    case drain_action::keep: return "keep";
    case drain_action::expire: return "expire";
    case drain_action::reset: return "reset";
  }
  return "keep";
}

std::string percent_text(uint32_t basis_points) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", basis_points / 100.0);
  return buf;
}

const char* proto_name(uint8_t p) { return p == 17 ? "udp" : "tcp"; }

json backend_json(const config::backend& b) {
  json j = {{"address", to_string(b.address)},
            {"weight", b.weight},
            {"state", config::backend_admin_state_name(b.state)}};
  if (b.mac) j["mac"] = config::to_string(*b.mac);
  return j;
}

json service_config_json(const config::service& s) {
  json j = {{"vip", to_string(s.vip)},
            {"port", s.port},
            {"protocol", proto_name(s.proto)},
            {"forwarding", forwarding_mode_name(s.mode)},
            {"maglev_size", s.maglev_size},
            {"active", colour_name(s.active)},
            {"canary_percent", s.canary_basis_points / 100.0}};
  return j;
}

// Makes `to` the active colour of `s` in `st`: the old colour starts draining under `policy`
// (its flows created before generation `gen` are flushed at the deadline unless `keep`), the
// new one stops draining. Returns the drain to track.
drain_state start_drain(config::service& s, colour to, const config::drain_policy& policy,
                        runtime_state& st, uint32_t gen, uint32_t now_ms) {
  drain_state d;
  d.draining = s.active;
  d.started_ms = now_ms;
  d.started_wall = std::chrono::system_clock::now();
  d.deadline_ms = now_ms + policy.timeout_ms;
  d.on_timeout = policy.on_timeout;
  d.spread_ms = policy.spread_ms;
  d.before_generation = gen;
  auto& flush = st.flushes[s.name];
  flush[static_cast<size_t>(to)] = colour_flush{};
  flush[static_cast<size_t>(s.active)] =
      d.on_timeout == drain_action::keep
          ? colour_flush{}
          : colour_flush{gen, d.deadline_ms, d.spread_ms, d.on_timeout};
  s.active = to;
  s.canary_basis_points = 0;  // a switch is a full cut-over; a new canary is started explicitly
  return d;
}

config::drain_policy policy_for(const config::service& s, const switch_options& o) {
  config::drain_policy p = s.drain;
  if (o.drain_timeout_ms) p.timeout_ms = *o.drain_timeout_ms;
  if (o.on_drain_timeout) p.on_timeout = *o.on_drain_timeout;
  if (o.drain_spread_ms) p.spread_ms = *o.drain_spread_ms;
  return p;
}

}  // namespace

std::string actor::describe() const {
  return "uid=" + std::to_string(uid) + " pid=" + std::to_string(pid);
}

json history_entry::to_json() const {
  return {{"time", time},   {"uid", who.uid},     {"pid", who.pid},
          {"command", command}, {"change", change}, {"generation", generation}};
}

controller::controller(config::daemon_config initial, generation_publisher& publisher,
                       std::vector<worker*> workers, const ms_clock& clock)
    : running_(std::move(initial)),
      publisher_(publisher),
      workers_(std::move(workers)),
      clock_(clock),
      history_file_(running_.history_file) {}

tandem::status controller::start() {
  if (auto v = config::validate(running_); !v) return error{v.error_message()};
  auto g = build_generation(running_, state_);
  if (!g) return error{g.error_message()};
  const uint32_t number = (*g)->number;
  publisher_.publish(std::move(*g));
  ++generations_published_;
  record({iso_time(std::chrono::system_clock::now()), actor{static_cast<int>(getuid()), getpid()},
          "start", std::to_string(running_.services.size()) + " services", number});
  after_commit();
  return ok_status();
}

uint32_t controller::generation_number() const {
  const generation* g = publisher_.current();
  return g ? g->number : 0;
}

config::service* controller::find_service(config::daemon_config& cfg, const std::string& name) {
  for (auto& s : cfg.services)
    if (s.name == name) return &s;
  return nullptr;
}

const config::service* controller::find_service(const std::string& name) const {
  for (const auto& s : running_.services)
    if (s.name == name) return &s;
  return nullptr;
}

int64_t controller::live_flows(uint16_t service_id, colour c) const {
  int64_t total = 0;
  for (const worker* w : workers_)
    total += read_counter(w->counters().services[service_id][static_cast<size_t>(c)].live_flows);
  return std::max<int64_t>(total, 0);
}

void controller::record(history_entry e) {
  spdlog::info("generation {}: {} ({}) by {}", e.generation, e.command, e.change, e.who.describe());
  if (!history_file_.empty()) {
    std::ofstream f(history_file_, std::ios::app);
    if (f) f << e.to_json().dump() << '\n';
    else spdlog::warn("cannot append to history file {}", history_file_);
  }
  history_.push_back(std::move(e));
  while (history_.size() > 10000) history_.pop_front();
}

result<uint32_t> controller::commit(const config::daemon_config& next, runtime_state next_state,
                                    const actor& who, std::string command, std::string change) {
  const auto commit_start = std::chrono::steady_clock::now();
  if (auto v = config::validate(next); !v) return error{v.error_message()};
  prune_down(next, next_state);  // health marks only for backends still checked
  auto g = build_generation(next, next_state);
  if (!g) return error{g.error_message()};
  const uint32_t number = (*g)->number;
  const uint64_t waited_us = publisher_.publish(std::move(*g));
  publish_latency_us_.push_back(waited_us);
  if (publish_latency_us_.size() > 1000) publish_latency_us_.erase(publish_latency_us_.begin());
  last_commit_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_start).count();
  ++generations_published_;
  running_ = next;
  state_ = std::move(next_state);
  record({iso_time(std::chrono::system_clock::now()), who, std::move(command), std::move(change),
          number});
  after_commit();  // health targets and the metrics snapshot follow the new config
  return number;
}

// --- release life cycle ------------------------------------------------------------------------

result<json> controller::switch_to(const std::string& name, const switch_options& opts,
                                   const actor& who) {
  config::daemon_config next = running_;
  config::service* s = find_service(next, name);
  if (!s) return make_error("unknown service '" + name + "'");
  if (s->active == opts.to)
    return make_error("service " + name + ": " + colour_name(opts.to) + " is already active");
  const colour from = s->active;
  if (opts.auto_rollback && !s->health) {
    count_switch(name, opts, "error");
    return make_error("service " + name +
                      ": --auto-rollback needs health checks (a health section for the service)");
  }
  if (!opts.force) {
    auto why = health_refusal(*s, opts.to);
    if (!why && opts.auto_rollback)
      why = bake_refusal(*s, opts.to, opts.min_healthy_bp.value_or(s->health->bake_min_healthy_bp));
    if (why) {
      count_switch(name, opts, "refused");
      return make_error(*why);
    }
  }
  runtime_state st = state_;
  const config::drain_policy policy = policy_for(*s, opts);
  const drain_state d = start_drain(*s, opts.to, policy, st, st.next_generation, clock_.now());
  const uint32_t timeout = policy.timeout_ms;

  std::string change = name + ": active " + colour_name(from) + " -> " + colour_name(opts.to);
  if (!opts.reason.empty()) change += " (" + opts.reason + ")";
  std::string command = "switch " + name + " --to " + colour_name(opts.to);
  if (opts.trigger == "manual") command = "rollback " + name;
  else if (opts.trigger == "auto") command = "auto-rollback " + name;
  else if (opts.trigger == "abort") command = "abort " + name;
  auto committed = commit(next, std::move(st), who, command, change);
  if (!committed) {
    count_switch(name, opts, "error");
    return error{committed.error_message()};
  }
  previous_active_[name] = from;
  drains_[name] = d;
  started_switch(name, from, opts, *committed, who);
  json out = {{"service", name},
              {"active", colour_name(opts.to)},
              {"draining", colour_name(from)},
              {"generation", *committed},
              {"drain_timeout_s", timeout / 1000.0},
              {"on_drain_timeout", drain_action_name(d.on_timeout)}};
  if (opts.bake_ms) out["bake"] = bake_json(name);
  return out;
}

result<json> controller::switch_all(const switch_options& opts, const actor& who) {
  config::daemon_config next = running_;
  runtime_state st = state_;
  const uint32_t gen = st.next_generation;
  std::map<std::string, drain_state> new_drains;
  std::vector<std::string> switched;
  for (auto& s : next.services) {
    if (s.active == opts.to) continue;
    if (opts.auto_rollback && !s.health)
      return make_error("service " + s.name +
                        ": --auto-rollback needs health checks (nothing was switched)");
    if (!opts.force) {
      auto why = health_refusal(s, opts.to);
      if (!why && opts.auto_rollback)
        why = bake_refusal(s, opts.to, opts.min_healthy_bp.value_or(s.health->bake_min_healthy_bp));
      if (why) {
        count_switch(s.name, opts, "refused");
        return make_error(*why + " (nothing was switched)");
      }
    }
    new_drains[s.name] = start_drain(s, opts.to, policy_for(s, opts), st, gen, clock_.now());
    switched.push_back(s.name);
  }
  if (switched.empty())
    return make_error(std::string("every service already has ") + colour_name(opts.to) +
                      " active");
  std::string names;
  for (const auto& n : switched) names += (names.empty() ? "" : ",") + n;
  auto committed = commit(next, std::move(st), who,
                          std::string("switch --all --to ") + colour_name(opts.to),
                          names + ": active -> " + colour_name(opts.to));
  if (!committed) return error{committed.error_message()};
  for (auto& [n, d] : new_drains) {
    previous_active_[n] = d.draining;
    drains_[n] = d;
    started_switch(n, d.draining, opts, *committed, who);
  }
  return json{{"switched", switched}, {"active", colour_name(opts.to)}, {"generation", *committed}};
}

result<json> controller::rollback(const std::string& name, const actor& who) {
  const config::service* s = find_service(name);
  if (!s) return make_error("unknown service '" + name + "'");
  auto prev = previous_active_.find(name);
  if (prev == previous_active_.end() || prev->second == s->active)
    return make_error("service " + name + ": nothing to roll back (no switch since tandemd started)");
  switch_options opts;
  opts.to = prev->second;
  opts.trigger = "manual";
  opts.force = true;  // going back is never refused for health
  return switch_to(name, opts, who);
}

result<json> controller::rollback_all(const actor& who) {
  // Every service with a previous colour goes back to it, all in one generation.
  config::daemon_config next = running_;
  runtime_state st = state_;
  const uint32_t gen = st.next_generation;
  std::map<std::string, drain_state> new_drains;
  json rolled = json::array();
  for (auto& s : next.services) {
    auto prev = previous_active_.find(s.name);
    if (prev == previous_active_.end() || prev->second == s.active) continue;
    new_drains[s.name] = start_drain(s, prev->second, s.drain, st, gen, clock_.now());
    rolled.push_back(s.name);
  }
  if (rolled.empty()) return make_error("nothing to roll back (no switch since tandemd started)");
  auto committed = commit(next, std::move(st), who, "rollback --all",
                          std::to_string(rolled.size()) + " services back to their previous colour");
  if (!committed) return error{committed.error_message()};
  for (auto& [n, d] : new_drains) {
    previous_active_[n] = d.draining;
    drains_[n] = d;
    switch_options manual;
    manual.to = find_service(n)->active;
    manual.trigger = "manual";
    started_switch(n, d.draining, manual, *committed, who);
  }
  return json{{"rolled_back", rolled}, {"generation", *committed}};
}

result<json> controller::canary(const std::string& name, colour to, uint32_t basis_points,
                                const actor& who) {
  if (basis_points > 10000) return make_error("percent: must be between 0 and 100");
  config::daemon_config next = running_;
  config::service* s = find_service(next, name);
  if (!s) return make_error("unknown service '" + name + "'");
  if (to == s->active && basis_points != 0)
    return make_error("service " + name + ": " + colour_name(to) +
                      " is already active; a canary sends new flows to the idle colour (" +
                      colour_name(other(to)) + ")");
  const uint32_t old = s->canary_basis_points;
  s->canary_basis_points = basis_points;
  char change[128];
  std::snprintf(change, sizeof change, "%s: canary to %s %.2f%% -> %.2f%%", name.c_str(),
                colour_name(other(s->active)), old / 100.0, basis_points / 100.0);
  auto committed = commit(next, state_, who, "canary " + name, change);
  if (!committed) return error{committed.error_message()};
  return json{{"service", name},
              {"canary", {{"to", colour_name(other(s->active))}, {"percent", basis_points / 100.0}}},
              {"generation", *committed}};
}

result<json> controller::segment(const std::string& name, bool add, const std::string& cidr,
                                 colour to, const actor& who) {
  auto prefix = parse_ip_prefix(cidr);
  if (!prefix) return make_error("cidr: '" + cidr + "' is not a network prefix (e.g. 10.0.0.0/8, host bits zero)");
  config::daemon_config next = running_;
  config::service* s = find_service(next, name);
  if (!s) return make_error("unknown service '" + name + "'");
  auto it = std::find_if(s->segments.begin(), s->segments.end(),
                         [&](const config::segment& g) { return g.prefix == *prefix; });
  if (add) {
    if (it != s->segments.end())
      return make_error("service " + name + ": segment " + cidr + " is already present (to " +
                        colour_name(it->to) + ")");
    s->segments.push_back({*prefix, to});
  } else {
    if (it == s->segments.end())
      return make_error("service " + name + ": no segment " + cidr);
    s->segments.erase(it);
  }
  const std::string change = name + ": segment " + (add ? "+" : "-") + cidr + " -> " + colour_name(to);
  auto committed = commit(next, state_, who,
                          "segment " + name + (add ? " add " : " remove ") + cidr, change);
  if (!committed) return error{committed.error_message()};
  return json{{"service", name}, {"segments", s->segments.size()}, {"generation", *committed}};
}

// --- pools -------------------------------------------------------------------------------------

result<json> controller::pool_edit(const std::string& name, colour pool, const std::string& op,
                                   const std::vector<std::string>& addresses,
                                   std::optional<uint32_t> weight, std::optional<std::string> mac,
                                   const actor& who) {
  config::daemon_config next = running_;
  config::service* s = find_service(next, name);
  if (!s) return make_error("unknown service '" + name + "'");
  if (addresses.empty()) return make_error("addresses: give at least one backend address");
  if (op != "add" && op != "remove" && op != "set-weight")
    return make_error("op: '" + op + "' is not one of add, remove, set-weight");
  if (weight && *weight > 65535) return make_error("weight: must be between 0 and 65535");
  std::optional<config::mac_address> parsed_mac;
  if (mac) {
    parsed_mac = config::parse_mac(*mac);
    if (!parsed_mac) return make_error("mac: '" + *mac + "' is not a MAC address");
    if (addresses.size() > 1) return make_error("mac: give one address when setting a MAC");
  }
  auto& backends = s->pool(pool);
  for (const std::string& text : addresses) {
    auto a = parse_ip_address(text);
    if (!a) return make_error("address: '" + text + "' is not an IPv4 or IPv6 address");
    auto it = std::find_if(backends.begin(), backends.end(),
                           [&](const config::backend& b) { return b.address == *a; });
    if (op == "add") {
      if (it != backends.end())
        return make_error("service " + name + ": " + text + " is already in the " +
                          colour_name(pool) + " pool");
      backends.push_back({*a, weight.value_or(1), parsed_mac, config::backend_admin_state::ready});
    } else if (it == backends.end()) {
      return make_error("service " + name + ": " + text + " is not in the " + colour_name(pool) +
                        " pool");
    } else if (op == "remove") {
      backends.erase(it);
    } else {
      if (!weight) return make_error("weight: set-weight needs --weight");
      it->weight = *weight;
    }
  }
  std::string list;
  for (const auto& a : addresses) list += (list.empty() ? "" : " ") + a;
  const std::string command = "pool " + name + " " + colour_name(pool) + " " + op + " " + list;
  auto committed = commit(next, state_, who, command, command);
  if (!committed) return error{committed.error_message()};
  return json{{"service", name},
              {"pool", colour_name(pool)},
              {"backends", s->pool(pool).size()},
              {"generation", *committed}};
}

result<json> controller::backend_state(const std::string& name, const std::string& address,
                                       const std::string& state_name, const actor& who) {
  config::backend_admin_state st;
  if (state_name == "ready") st = config::backend_admin_state::ready;
  else if (state_name == "drain") st = config::backend_admin_state::drain;
  else if (state_name == "maint") st = config::backend_admin_state::maint;
  else return make_error("state: '" + state_name + "' is not one of ready, drain, maint");
  auto a = parse_ip_address(address);
  if (!a) return make_error("address: '" + address + "' is not an IPv4 or IPv6 address");
  config::daemon_config next = running_;
  config::service* s = find_service(next, name);
  if (!s) return make_error("unknown service '" + name + "'");
  int found = 0;
  for (colour c : {colour::blue, colour::green})
    for (auto& b : s->pool(c))
      if (b.address == *a) {
        b.state = st;
        ++found;
      }
  if (found == 0) return make_error("service " + name + ": no backend " + address + " in either pool");
  const std::string command = "backend " + name + " " + address + " state " + state_name;
  auto committed = commit(next, state_, who, command, command);
  if (!committed) return error{committed.error_message()};
  return json{{"service", name}, {"address", address}, {"state", state_name}, {"generation", *committed}};
}

// --- declarative -------------------------------------------------------------------------------

json controller::diff(const config::daemon_config& desired) const {
  json changes = json::array();
  auto note = [&](std::string what) { changes.push_back(std::move(what)); };
  if (desired.timeouts.tcp_syn_ms != running_.timeouts.tcp_syn_ms ||
      desired.timeouts.tcp_established_ms != running_.timeouts.tcp_established_ms ||
      desired.timeouts.tcp_closing_ms != running_.timeouts.tcp_closing_ms ||
      desired.timeouts.udp_ms != running_.timeouts.udp_ms)
    note("dataplane.timeouts: changed");
  if (!(desired.tunnel == running_.tunnel)) note("dataplane.tunnel: changed");
  if (!(desired.hooks == running_.hooks)) note("hooks: changed");
  for (const auto& d : desired.services) {
    const config::service* r = find_service(d.name);
    if (!r) {
      note("+ service " + d.name + " " + to_string(d.vip) + ":" + std::to_string(d.port));
      continue;
    }
    if (d == *r) continue;
    if (!(d.vip == r->vip) || d.port != r->port || d.proto != r->proto)
      note("~ service " + d.name + ": listener " + to_string(r->vip) + ":" + std::to_string(r->port) +
           " -> " + to_string(d.vip) + ":" + std::to_string(d.port));
    if (d.mode != r->mode)
      note(std::string("~ service ") + d.name + ": forwarding " + forwarding_mode_name(r->mode) +
           " -> " + forwarding_mode_name(d.mode));
    if (d.maglev_size != r->maglev_size)
      note("~ service " + d.name + ": maglev_size " + std::to_string(r->maglev_size) + " -> " +
           std::to_string(d.maglev_size));
    if (d.active != r->active)
      note(std::string("~ service ") + d.name + ": active " + colour_name(r->active) + " -> " +
           colour_name(d.active));
    if (d.canary_basis_points != r->canary_basis_points)
      note("~ service " + d.name + ": canary " + percent_text(r->canary_basis_points) + " -> " +
           percent_text(d.canary_basis_points));
    if (!(d.segments == r->segments)) note("~ service " + d.name + ": segments changed");
    if (!(d.preview == r->preview)) note("~ service " + d.name + ": preview changed");
    if (!(d.drain == r->drain)) note("~ service " + d.name + ": drain policy changed");
    if (!(d.health == r->health)) note("~ service " + d.name + ": health checks changed");
    for (colour c : {colour::blue, colour::green}) {
      const auto& dp = d.pool(c);
      const auto& rp = r->pool(c);
      for (const auto& b : dp) {
        auto it = std::find_if(rp.begin(), rp.end(), [&](const auto& x) { return x.address == b.address; });
        if (it == rp.end())
          note("+ " + d.name + " " + colour_name(c) + " backend " + to_string(b.address));
        else if (!(*it == b))
          note("~ " + d.name + " " + colour_name(c) + " backend " + to_string(b.address) + ": " +
               backend_json(*it).dump() + " -> " + backend_json(b).dump());
      }
      for (const auto& b : rp) {
        auto it = std::find_if(dp.begin(), dp.end(), [&](const auto& x) { return x.address == b.address; });
        if (it == dp.end()) note("- " + d.name + " " + colour_name(c) + " backend " + to_string(b.address));
      }
    }
  }
  for (const auto& r : running_.services)
    if (std::none_of(desired.services.begin(), desired.services.end(),
                     [&](const auto& d) { return d.name == r.name; }))
      note("- service " + r.name);
  return changes;
}

result<json> controller::apply(const config::daemon_config& file_config, bool dry_run,
                               const actor& who) {
  // Settings tandemd's command line overrode at start keep their running values when the file
  // still says what it said then (the file is not wrong, the daemon was told otherwise).
  config::daemon_config desired = file_config;
  if (startup_file_) {
    if (desired.socket == startup_file_->socket) desired.socket = running_.socket;
    if (desired.flow_table_size == startup_file_->flow_table_size)
      desired.flow_table_size = running_.flow_table_size;
  }
  // What a running daemon cannot change: say so instead of half-applying.
  if (desired.flow_table_size != running_.flow_table_size)
    return make_error("dataplane.flow_table_size: cannot change while tandemd runs (restart it)");
  if (desired.ports != running_.ports)
    return make_error("dataplane.ports: cannot change while tandemd runs (restart it)");
  if (!(desired.socket == running_.socket))
    return make_error("control.socket: cannot change while tandemd runs (restart it)");
  if (!(desired.metrics == running_.metrics))
    return make_error("metrics: cannot change while tandemd runs (restart it)");
  if (auto v = config::validate(desired); !v) return error{v.error_message()};
  json changes = diff(desired);
  if (dry_run || changes.empty())
    return json{{"dry_run", dry_run}, {"changes", changes}, {"generation", generation_number()}};

  runtime_state st = state_;
  const uint32_t gen = st.next_generation;
  std::map<std::string, drain_state> new_drains;
  for (const auto& d : desired.services) {
    const config::service* r = find_service(d.name);
    if (!r || r->active == d.active) continue;
    // A colour change through apply is a switch: the old colour drains under the policy.
    config::service old = *r;
    new_drains[d.name] = start_drain(old, d.active, d.drain, st, gen, clock_.now());
  }
  for (auto it = st.flushes.begin(); it != st.flushes.end();) {
    bool present = std::any_of(desired.services.begin(), desired.services.end(),
                               [&](const auto& d) { return d.name == it->first; });
    it = present ? std::next(it) : st.flushes.erase(it);
  }
  auto committed = commit(desired, std::move(st), who, "apply",
                          std::to_string(changes.size()) + " changes");
  if (!committed) return error{committed.error_message()};
  for (auto& [n, d] : new_drains) {
    previous_active_[n] = d.draining;
    drains_[n] = d;
  }
  for (auto it = drains_.begin(); it != drains_.end();)
    it = find_service(it->first) ? std::next(it) : drains_.erase(it);
  return json{{"dry_run", false}, {"changes", changes}, {"generation", *committed}};
}

// --- read-only ---------------------------------------------------------------------------------

result<json> controller::status(const std::string& name) const {
  if (!name.empty() && !find_service(name)) return make_error("unknown service '" + name + "'");
  const generation* g = publisher_.current();
  json services = json::array();
  for (const auto& s : running_.services) {
    if (!name.empty() && s.name != name) continue;
    auto sid_it = state_.service_ids.find(s.name);
    const uint16_t sid = sid_it == state_.service_ids.end() ? 0 : sid_it->second;
    json j = service_config_json(s);
    j["name"] = s.name;
    auto prev = previous_active_.find(s.name);
    j["previous"] = prev == previous_active_.end() ? json(nullptr) : json(colour_name(prev->second));
    j["canary"] = {{"to", colour_name(other(s.active))}, {"percent", s.canary_basis_points / 100.0}};
    json segs = json::array();
    for (const auto& seg : s.segments) segs.push_back({{"cidr", to_string(seg.prefix)}, {"to", colour_name(seg.to)}});
    j["segments"] = segs;
    j["preview"] = s.preview ? json{{"vip", to_string(s.preview->vip)}, {"port", s.preview->port}}
                             : json(nullptr);
    json colours;
    for (colour c : {colour::blue, colour::green}) {
      uint64_t new_flows = 0;
      for (const worker* w : workers_)
        new_flows += read_counter(w->counters().services[sid][static_cast<size_t>(c)].new_flows);
      json backends = json::array();
      for (const auto& b : s.pool(c)) {
        json bj = backend_json(b);
        auto id = state_.registry.find(s.name, c, b.address);
        int64_t lf = 0;
        bool up = true;
        if (id) {
          for (const worker* w : workers_) lf += read_counter(w->backends().live_flows[*id]);
          up = !state_.down.contains(*id) && b.state != config::backend_admin_state::maint;
        }
        bj["live_flows"] = std::max<int64_t>(lf, 0);
        bj["up"] = up;
        bj["health"] = backend_health_json(id ? *id : UINT32_MAX, s.health.has_value());
        backends.push_back(bj);
      }
      colours[colour_name(c)] = {{"live_flows", live_flows(sid, c)},
                                 {"new_flows", new_flows},
                                 {"backends", backends}};
    }
    j["colours"] = colours;
    auto d = drains_.find(s.name);
    if (d != drains_.end()) {
      const uint32_t now = clock_.now();
      j["drain"] = {{"colour", colour_name(d->second.draining)},
                    {"remaining", live_flows(sid, d->second.draining)},
                    {"started", iso_time(d->second.started_wall)},
                    {"elapsed_s", ms_since(now, d->second.started_ms) / 1000.0},
                    {"deadline_s", (d->second.deadline_ms - d->second.started_ms) / 1000.0},
                    {"timed_out", ms_since(now, d->second.deadline_ms) >= 0},
                    {"on_timeout", drain_action_name(d->second.on_timeout)},
                    {"spread_s", d->second.spread_ms / 1000.0}};
    } else {
      j["drain"] = nullptr;
    }
    j["bake"] = bake_json(s.name);
    if (s.health)
      j["health"] = {{"check", config::health_check_kind_name(s.health->kind)},
                     {"port", s.health->port ? s.health->port : s.port},
                     {"interval_s", s.health->interval_ms / 1000.0},
                     {"timeout_s", s.health->timeout_ms / 1000.0},
                     {"rise", s.health->rise},
                     {"fall", s.health->fall},
                     {"min_healthy_to_switch", s.health->min_healthy_to_switch}};
    else
      j["health"] = nullptr;
    services.push_back(j);
  }
  return json{{"generation", g ? g->number : 0}, {"services", services}};
}

result<json> controller::flows(const std::string& name, std::optional<colour> c,
                               const std::string& backend, uint32_t limit) {
  const config::service* s = find_service(name);
  if (!s) return make_error("unknown service '" + name + "'");
  auto sid = state_.service_ids.find(name);
  if (sid == state_.service_ids.end()) return make_error("unknown service '" + name + "'");
  flow_sample_request req;
  req.service_id = sid->second;
  req.colour_filter = c ? static_cast<int8_t>(*c) : int8_t{-1};
  req.limit = std::min(limit, max_flow_sample);
  if (!backend.empty()) {
    auto a = parse_ip_address(backend);
    if (!a) return make_error("backend: '" + backend + "' is not an IPv4 or IPv6 address");
    std::optional<uint32_t> id;
    for (colour pc : {colour::blue, colour::green})
      if (!c || *c == pc)
        if (auto f = state_.registry.find(name, pc, *a)) id = f;
    if (!id) return make_error("service " + name + ": no backend " + backend);
    req.backend_filter = *id;
  }
  for (worker* w : workers_) w->request_sample(req);
  // Workers answer between polls (a 1 M table takes a few loops); give them up to 2 s.
  const uint32_t start = clock_.now();
  for (worker* w : workers_)
    while (!w->sample_ready()) {
      if (ms_since(clock_.now(), start) > 2000) return make_error("workers did not answer the flow sample in 2 s");
      rte_delay_us_sleep(200);
    }
  uint64_t matched = 0;
  json entries = json::array();
  const generation* g = publisher_.current();
  for (worker* w : workers_) {
    const flow_sample& smp = w->sample();
    matched += smp.matched;
    for (uint32_t i = 0; i < smp.copied && entries.size() < limit; ++i) {
      const flow_entry& e = smp.entries[i];
      const stored_flow_key& key = smp.keys[i];
      const flow_key k = g ? g->full_key(key) : flow_key{};
      std::string be = "?";
      if (g && e.backend_id < g->backends.size()) be = to_string(g->backends[e.backend_id].address);
      static const char* states[] = {"empty", "syn_seen", "established", "closing", "closed", "udp"};
      entries.push_back({{"worker", w->index()},
                         {"client", to_string(key.client)},
                         {"client_port", rte_be_to_cpu_16(key.client_port)},
                         {"vip", to_string(k.dst)},
                         {"vip_port", rte_be_to_cpu_16(key.vip_port)},
                         {"backend", be},
                         {"colour", colour_name(e.flow_colour)},
                         {"state", states[static_cast<size_t>(e.state)]},
                         {"generation", e.generation},
                         {"idle_ms", ms_since(clock_.now(), e.last_seen_ms)}});
    }
  }
  return json{{"service", name}, {"matched", matched}, {"flows", entries}};
}

json controller::stats() const {
  json workers = json::array();
  for (const worker* w : workers_) {
    const worker_counters& c = w->counters();
    json drops;
    for (size_t r = 1; r < c.drops.size(); ++r) {
      const uint64_t v = read_counter(c.drops[r]);
      if (v) drops[drop_reason_name(static_cast<drop_reason>(r))] = v;
    }
    workers.push_back({{"worker", w->index()},
                       {"rx_packets", read_counter(c.rx_packets)},
                       {"rx_bytes", read_counter(c.rx_bytes)},
                       {"tx_packets", read_counter(c.tx_packets)},
                       {"drops", drops},
                       {"arp_replies", read_counter(c.arp_replies)},
                       {"nd_replies", read_counter(c.nd_replies)},
                       {"midflow_pickups", read_counter(c.midflow_pickups)},
                       {"port_reuse", read_counter(c.port_reuse)},
                       {"rehashed_down", read_counter(c.rehashed_down)},
                       {"drain_expired", read_counter(c.drain_expired)},
                       {"drain_resets", read_counter(c.drain_resets)},
                       {"evictions", read_counter(c.evictions)},
                       {"failed_inserts", read_counter(c.failed_inserts)},
                       {"expired", read_counter(c.expired)},
                       {"generation_seen", read_counter(c.generation_seen)}});
  }
  json services = json::array();
  for (const auto& s : running_.services) {
    auto sid_it = state_.service_ids.find(s.name);
    if (sid_it == state_.service_ids.end()) continue;
    json per_colour;
    for (colour c : {colour::blue, colour::green}) {
      uint64_t packets = 0, bytes = 0, new_flows = 0;
      for (const worker* w : workers_) {
        const auto& sc = w->counters().services[sid_it->second][static_cast<size_t>(c)];
        packets += read_counter(sc.packets);
        bytes += read_counter(sc.bytes);
        new_flows += read_counter(sc.new_flows);
      }
      per_colour[colour_name(c)] = {{"packets", packets},
                                    {"bytes", bytes},
                                    {"new_flows", new_flows},
                                    {"live_flows", live_flows(sid_it->second, c)}};
    }
    services.push_back({{"name", s.name}, {"colours", per_colour}});
  }
  json latency = json::array();
  for (uint64_t us : publish_latency_us_) latency.push_back(us);
  return json{{"generation", generation_number()},
              {"workers", workers},
              {"services", services},
              {"publish_wait_us", latency}};
}

json controller::history(size_t limit) const {
  json out = json::array();
  const size_t start = history_.size() > limit ? history_.size() - limit : 0;
  for (size_t i = start; i < history_.size(); ++i) out.push_back(history_[i].to_json());
  return out;
}

void controller::tick() {
  tick_health();  // check results -> health state -> a generation if the down set changed
  tick_bakes();   // bake windows: promote at the end, auto-rollback on bad health
  const uint32_t now = clock_.now();
  for (auto it = drains_.begin(); it != drains_.end();) {
    auto sid = state_.service_ids.find(it->first);
    drain_state& d = it->second;
    const config::service* s = find_service(it->first);
    if (sid == state_.service_ids.end() || !s || s->active == d.draining) {
      it = drains_.erase(it);  // service gone, or the colour became active again
      continue;
    }
    const int64_t remaining = live_flows(sid->second, d.draining);
    if (remaining == 0) {
      record({iso_time(std::chrono::system_clock::now()), actor{}, "drain-complete",
              it->first + ": " + colour_name(d.draining) + " drained", generation_number()});
      emit("drain-complete", {{"service", it->first}, {"colour", colour_name(d.draining)}});
      it = drains_.erase(it);
      metrics_dirty_ = true;
      continue;
    }
    if (!d.timeout_recorded && ms_since(now, d.deadline_ms) >= 0) {
      record({iso_time(std::chrono::system_clock::now()), actor{}, "drain-timeout",
              it->first + ": " + colour_name(d.draining) + " " + std::to_string(remaining) +
                  " flows left, " + drain_action_name(d.on_timeout),
              generation_number()});
      d.timeout_recorded = true;
      emit("drain-timeout", {{"service", it->first},
                             {"colour", colour_name(d.draining)},
                             {"remaining", remaining},
                             {"action", drain_action_name(d.on_timeout)}});
    }
    ++it;
  }
  publish_metrics();  // only when something changed since the last snapshot
}

}  // namespace tandem
