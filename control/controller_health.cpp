// The controller's health side: check results -> damped backend health -> runtime_state.down
// (a new generation through commit(), so the usual all-or-nothing and RCU rules apply), bake
// windows with automatic rollback, promote/abort, event hooks and the metrics snapshot.
// Everything here runs on the control thread, like the rest of the controller.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

#include "control/controller.h"
#include "control/iso_time.h"

namespace tandem {
namespace {

using nlohmann::json;

std::string share_text(uint32_t bp) {  // 8000 -> "0.8"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", bp / 10000.0);
  return buf;
}

std::string seconds_text(uint32_t ms) { return config::format_duration(ms); }

}  // namespace

// --- collaborators -------------------------------------------------------------------------------

void controller::attach_health_checker(health_checker* c) {
  checker_ = c;
  if (checker_) checker_->set_targets(health_targets_);
}

void controller::attach_metrics(metrics_exchange* m) {
  metrics_ = m;
  metrics_dirty_ = true;
  publish_metrics();
}

const backend_health* controller::health_of(uint32_t backend_id) const {
  auto it = health_.find(backend_id);
  return it == health_.end() ? nullptr : &it->second;
}

void controller::after_commit() {
  sync_health_targets();
  metrics_dirty_ = true;
  publish_metrics();
}

// Every backend of every service with a health section, both pools, whatever its admin state:
// the idle pool must be known healthy before a switch, a maint backend before it comes back.
void controller::sync_health_targets() {
  std::vector<health_target> targets;
  for (const auto& s : running_.services) {
    if (!s.health) continue;
    for (colour c : {colour::blue, colour::green})
      for (const auto& b : s.pool(c)) {
        auto id = state_.registry.find(s.name, c, b.address);
        if (!id) continue;
        targets.push_back({*id, b.address, s.health->port ? s.health->port : s.port, *s.health});
      }
  }
  if (targets == health_targets_) return;
  health_targets_ = std::move(targets);
  std::set<uint32_t> ids;
  for (const auto& t : health_targets_) ids.insert(t.backend_id);
  for (auto it = health_.begin(); it != health_.end();)
    it = ids.contains(it->first) ? std::next(it) : health_.erase(it);
  if (checker_) checker_->set_targets(health_targets_);
}

// A backend that is no longer checked (left its pool, or its service lost the health section)
// is no longer down: health marks exist only for what health checks watch.
void controller::prune_down(const config::daemon_config& next, runtime_state& st) const {
  if (st.down.empty()) return;
  std::set<uint32_t> keep;
  for (const auto& s : next.services) {
    if (!s.health) continue;
    for (colour c : {colour::blue, colour::green})
      for (const auto& b : s.pool(c))
        if (auto id = st.registry.find(s.name, c, b.address); id && st.down.contains(*id))
          keep.insert(*id);
  }
  st.down = std::move(keep);
}

// --- health results ------------------------------------------------------------------------------

void controller::tick_health() {
  if (!checker_) return;
  auto results = checker_->take_results();
  if (!results.empty()) apply_health_results(results);
}

void controller::apply_health_results(const std::vector<health_result>& results) {
  std::map<uint32_t, const health_target*> by_id;
  for (const auto& t : health_targets_) by_id[t.backend_id] = &t;
  const auto& slots = state_.registry.slots();
  std::string changes;
  for (const health_result& r : results) {
    auto t = by_id.find(r.backend_id);
    if (t == by_id.end() || r.backend_id >= slots.size()) continue;  // no longer checked
    backend_health& h = health_[r.backend_id];
    const health_state before = h.state;
    metrics_dirty_ = true;
    if (!h.apply(r, t->second->check.rise, t->second->check.fall)) continue;
    const auto& slot = slots[r.backend_id];
    const std::string address = to_string(slot.address);
    const std::string what = slot.service + " " + colour_name(slot.pool) + " " + address + " " +
                             health_state_name(before) + " -> " + health_state_name(h.state) +
                             " (" + r.detail + ")";
    if (h.state == health_state::down) spdlog::warn("health: {}", what);
    else spdlog::info("health: {}", what);
    changes += (changes.empty() ? "" : "; ") + what;
    emit("health-change", {{"service", slot.service},
                           {"colour", colour_name(slot.pool)},
                           {"backend", address},
                           {"from", health_state_name(before)},
                           {"to", health_state_name(h.state)},
                           {"last_result", r.detail},
                           {"latency_ms", r.latency_us / 1000.0}});
  }
  // The down set follows the health states; comparing (rather than applying deltas) also
  // retries a generation that failed to build last time.
  std::set<uint32_t> down;
  for (const auto& [id, h] : health_)
    if (h.state == health_state::down) down.insert(id);
  if (down == state_.down) return;
  runtime_state st = state_;
  st.down = down;
  const config::daemon_config cfg = running_;
  auto committed = commit(cfg, std::move(st), actor{}, "health",
                          changes.empty() ? "down set updated" : changes);
  if (!committed)
    spdlog::error("health: cannot publish the new down set: {}", committed.error_message());
}

std::optional<std::string> controller::health_refusal(const config::service& s, colour to) const {
  if (!s.health || s.health->min_healthy_to_switch == 0) return std::nullopt;
  uint32_t up = 0, total = 0;
  for (const auto& b : s.pool(to)) {
    ++total;
    if (b.state == config::backend_admin_state::maint) continue;
    auto id = state_.registry.find(s.name, to, b.address);
    if (!id) continue;
    auto h = health_.find(*id);
    if (h != health_.end() && h->second.state == health_state::up) ++up;
  }
  if (up >= s.health->min_healthy_to_switch) return std::nullopt;
  return "service " + s.name + ": " + colour_name(to) + " has " + std::to_string(up) + " of " +
         std::to_string(total) + " backends healthy, fewer than health.min_healthy_to_switch (" +
         std::to_string(s.health->min_healthy_to_switch) +
         "); see `tandemctl backend " + s.name + "`, or switch with --force";
}

std::pair<uint32_t, uint32_t> controller::pool_health(const config::service& s, colour c) const {
  uint32_t up = 0, down = 0;
  for (const auto& b : s.pool(c)) {
    if (b.state == config::backend_admin_state::maint) continue;
    auto id = state_.registry.find(s.name, c, b.address);
    if (!id) continue;
    auto h = health_.find(*id);
    if (h == health_.end()) continue;
    up += h->second.state == health_state::up;
    down += h->second.state == health_state::down;
  }
  return {up, up + down};  // backends not checked yet count neither way
}

std::optional<std::string> controller::bake_refusal(const config::service& s, colour to,
                                                    uint32_t min_healthy_bp) const {
  const auto [up, known] = pool_health(s, to);
  if (known == 0 || (up > 0 && uint64_t{up} * 10000 >= uint64_t{min_healthy_bp} * known))
    return std::nullopt;
  return "service " + s.name + ": " + colour_name(to) + " healthy " + std::to_string(up) + "/" +
         std::to_string(known) + " is already below --min-healthy " + share_text(min_healthy_bp) +
         ": the bake would roll back at once; see `tandemctl backend " + s.name +
         "`, or switch with --force";
}

// --- switches, bakes -----------------------------------------------------------------------------

void controller::count_switch(const std::string& service, const switch_options& opts,
                              const char* result) {
  if (opts.trigger.empty()) {
    ++switch_counts_[service][result];
  } else {
    ++rollback_counts_[service][{opts.trigger, std::string(result) == "ok" ? "ok" : "error"}];
  }
  metrics_dirty_ = true;
}

void controller::started_switch(const std::string& name, colour from, const switch_options& opts,
                                uint32_t generation, const actor& who) {
  const uint32_t now = clock_.now();
  count_switch(name, opts, "ok");
  switch_publish_.observe(last_commit_s_);
  auto it = bakes_.find(name);
  if (it != bakes_.end() && it->second.state == "baking") {
    bake_state& b = it->second;
    b.state = opts.trigger == "abort" ? "aborted" : "rolled_back";
    b.reason = !opts.reason.empty()          ? opts.reason
               : opts.trigger == "manual"    ? "rolled back by " + who.describe()
                                             : "switched by " + who.describe();
    b.ended_ms = now;
  }
  if (opts.bake_ms) {
    bake_state b;
    b.target = opts.to;
    b.from = from;
    b.started_ms = now;
    b.started_wall = std::chrono::system_clock::now();
    b.window_ms = *opts.bake_ms;
    const config::service* s = find_service(name);
    b.min_healthy_bp = opts.min_healthy_bp.value_or(
        s && s->health ? s->health->bake_min_healthy_bp : config::health_check{}.bake_min_healthy_bp);
    b.auto_rollback = opts.auto_rollback;
    bakes_[name] = b;
  }
  const char* event = opts.trigger.empty()     ? "switch"
                      : opts.trigger == "auto" ? "auto-rollback"
                                               : "rollback";
  json body = {{"service", name},
               {"from", colour_name(from)},
               {"to", colour_name(opts.to)},
               {"generation", generation},
               {"actor", who.uid < 0 ? std::string("tandemd") : who.describe()}};
  if (!opts.reason.empty()) body["reason"] = opts.reason;
  else if (opts.trigger == "manual") body["reason"] = "manual";
  if (opts.bake_ms) body["bake"] = bake_json(name);
  emit(event, std::move(body));
  metrics_dirty_ = true;
  publish_metrics();
}

void controller::tick_bakes() {
  const uint32_t now = clock_.now();
  std::vector<std::string> baking;
  for (const auto& [n, b] : bakes_)
    if (b.state == "baking") baking.push_back(n);
  for (const std::string& n : baking) {
    auto it = bakes_.find(n);
    if (it == bakes_.end() || it->second.state != "baking") continue;
    bake_state& b = it->second;
    const config::service* s = find_service(n);
    if (!s) {
      bakes_.erase(it);
      metrics_dirty_ = true;
      continue;
    }
    if (s->active != b.target) {  // e.g. apply changed the colour back
      b.state = "rolled_back";
      b.reason = "active colour changed";
      b.ended_ms = now;
      metrics_dirty_ = true;
      continue;
    }
    if (b.auto_rollback) {
      const auto [up, known] = pool_health(*s, b.target);
      if (known > 0 && (up == 0 || uint64_t{up} * 10000 < uint64_t{b.min_healthy_bp} * known)) {
        const std::string reason =
            "auto-rollback: " + std::string(colour_name(b.target)) + " healthy " +
            std::to_string(up) + "/" + std::to_string(known) +
            (uint64_t{up} * 10000 < uint64_t{b.min_healthy_bp} * known
                 ? " < " + share_text(b.min_healthy_bp)
                 : " (every checked backend is down)");
        spdlog::warn("service {}: {}: back to {}", n, reason, colour_name(b.from));
        switch_options o;
        o.to = b.from;
        o.force = true;
        o.trigger = "auto";
        o.reason = reason;
        auto r = switch_to(n, o, actor{});  // started_switch() ends the bake as rolled_back
        if (!r) {
          spdlog::error("service {}: automatic rollback failed: {}", n, r.error_message());
          auto again = bakes_.find(n);
          if (again != bakes_.end()) {
            again->second.auto_rollback = false;  // once: an operator has to act now
            again->second.reason = "automatic rollback failed: " + r.error_message();
          }
          metrics_dirty_ = true;
        }
        continue;
      }
    }
    if (ms_since(now, b.started_ms) >= static_cast<int32_t>(b.window_ms)) {
      b.state = "promoted";
      b.reason = "bake window of " + seconds_text(b.window_ms) + " passed";
      b.ended_ms = now;
      record({iso_time(std::chrono::system_clock::now()), actor{}, "promote " + n,
              n + ": " + colour_name(b.target) + " promoted (" + b.reason + ")",
              generation_number()});
      emit("promote", {{"service", n}, {"colour", colour_name(b.target)}, {"reason", b.reason}});
      metrics_dirty_ = true;
    }
  }
}

result<nlohmann::json> controller::promote(const std::string& name, const actor& who) {
  if (!find_service(name)) return make_error("unknown service '" + name + "'");
  auto it = bakes_.find(name);
  if (it == bakes_.end() || it->second.state != "baking")
    return make_error("service " + name + ": no bake window in progress (start one with switch --bake)");
  bake_state& b = it->second;
  const uint32_t now = clock_.now();
  b.state = "promoted";
  b.reason = "promoted by " + who.describe();
  b.ended_ms = now;
  record({iso_time(std::chrono::system_clock::now()), who, "promote " + name,
          name + ": " + colour_name(b.target) + " promoted after " +
              seconds_text(static_cast<uint32_t>(std::max(0, ms_since(now, b.started_ms)))) +
              " of a " + seconds_text(b.window_ms) + " bake",
          generation_number()});
  emit("promote", {{"service", name}, {"colour", colour_name(b.target)}, {"reason", b.reason}});
  metrics_dirty_ = true;
  publish_metrics();
  return json{{"service", name},
              {"active", colour_name(b.target)},
              {"bake", bake_json(name)},
              {"generation", generation_number()}};
}

result<nlohmann::json> controller::abort_bake(const std::string& name, const actor& who) {
  if (!find_service(name)) return make_error("unknown service '" + name + "'");
  auto it = bakes_.find(name);
  if (it == bakes_.end() || it->second.state != "baking")
    return make_error("service " + name + ": no bake window in progress (abort ends one; use rollback otherwise)");
  switch_options o;
  o.to = it->second.from;
  o.force = true;
  o.trigger = "abort";
  o.reason = "aborted";
  auto r = switch_to(name, o, who);  // started_switch() ends the bake as aborted
  if (!r) return r;
  (*r)["bake"] = bake_json(name);
  return r;
}

// --- hooks, status, metrics ----------------------------------------------------------------------

void controller::emit(const std::string& event, nlohmann::json body) {
  body["time"] = iso_time(std::chrono::system_clock::now());
  if (!body.contains("generation")) body["generation"] = generation_number();
  if (hooks_) hooks_->post(running_.hooks, event, std::move(body));
}

nlohmann::json controller::backend_health_json(uint32_t id, bool checked) const {
  auto it = checked ? health_.find(id) : health_.end();
  if (it == health_.end())
    return {{"state", "unknown"},
            {"last_result", checked ? json("not checked yet") : json(nullptr)},
            {"latency_ms", nullptr},
            {"checked_at", nullptr}};
  const backend_health& h = it->second;
  return {{"state", health_state_name(h.state)},
          {"last_result", h.checked ? json(h.last_result) : json(nullptr)},
          {"latency_ms", h.checked ? json(h.latency_us / 1000.0) : json(nullptr)},
          {"checked_at", h.checked ? json(iso_time(h.checked_at)) : json(nullptr)},
          {"checks_ok", h.checks_ok},
          {"checks_failed", h.checks_failed}};
}

nlohmann::json controller::bake_json(const std::string& name) const {
  auto it = bakes_.find(name);
  if (it == bakes_.end()) return nullptr;
  const bake_state& b = it->second;
  const uint32_t end = b.state == "baking" ? clock_.now() : b.ended_ms;
  return {{"colour", colour_name(b.target)},
          {"from", colour_name(b.from)},
          {"state", b.state},
          {"elapsed_s", std::max(0, ms_since(end, b.started_ms)) / 1000.0},
          {"window_s", b.window_ms / 1000.0},
          {"min_healthy", b.min_healthy_bp / 10000.0},
          {"auto_rollback", b.auto_rollback},
          {"started", iso_time(b.started_wall)},
          {"reason", b.reason.empty() ? json(nullptr) : json(b.reason)}};
}

controller::metrics_batch::~metrics_batch() {
  if (--c_.metrics_holds_ != 0) return;
  try {
    c_.publish_metrics();
  } catch (const std::exception& e) {  // a destructor must not throw; the next change republishes
    spdlog::warn("metrics snapshot: {}", e.what());
  }
}

void controller::publish_metrics() {
  if (!metrics_ || metrics_holds_ != 0) return;
  if (hooks_) {
    const uint64_t seen = hooks_->succeeded() + hooks_->failed() + hooks_->dropped();
    if (seen != hooks_seen_) {
      hooks_seen_ = seen;
      metrics_dirty_ = true;
    }
  }
  if (!metrics_dirty_) return;
  metrics_dirty_ = false;
  auto snap = std::make_shared<metrics_snapshot>();
  snap->generation = generation_number();
  snap->generations_published = generations_published_;
  snap->switch_publish = switch_publish_;
  if (hooks_) {
    snap->hooks_ok = hooks_->succeeded();
    snap->hooks_failed = hooks_->failed();
    snap->hooks_dropped = hooks_->dropped();
  }
  for (const auto& s : running_.services) {
    auto sid = state_.service_ids.find(s.name);
    if (sid == state_.service_ids.end()) continue;
    metrics_snapshot::service m;
    m.name = s.name;
    m.id = sid->second;
    m.active = s.active;
    m.canary_bp = s.canary_basis_points;
    for (colour c : {colour::blue, colour::green})
      for (const auto& b : s.pool(c)) {
        auto id = state_.registry.find(s.name, c, b.address);
        if (!id) continue;
        metrics_snapshot::backend mb;
        mb.address = to_string(b.address);
        mb.id = *id;
        mb.weight = b.weight;
        mb.admin_state = config::backend_admin_state_name(b.state);
        mb.checked_service = s.health.has_value();
        auto h = health_.find(*id);
        if (h != health_.end()) {
          mb.health = h->second.state == health_state::up     ? 1
                      : h->second.state == health_state::down ? 0
                                                              : -1;
          mb.latency_s = h->second.latency_us / 1e6;
          mb.checks_ok = h->second.checks_ok;
          mb.checks_failed = h->second.checks_failed;
        } else if (!s.health) {
          mb.health = state_.down.contains(*id) ? 0 : 1;
        }
        m.pools[static_cast<size_t>(c)].push_back(std::move(mb));
      }
    if (auto d = drains_.find(s.name); d != drains_.end()) {
      m.draining = true;
      m.drain_colour = d->second.draining;
      m.drain_deadline_ms = d->second.deadline_ms;
      m.drain_deadline_unix =
          std::chrono::duration<double>(d->second.started_wall.time_since_epoch()).count() +
          ms_since(d->second.deadline_ms, d->second.started_ms) / 1000.0;
    }
    if (auto b = bakes_.find(s.name); b != bakes_.end()) {
      m.has_bake = true;
      m.bake_colour = b->second.target;
      m.bake_state = b->second.state;
      m.bake_started_ms = b->second.started_ms;
      m.bake_elapsed_ms = static_cast<uint32_t>(
          std::max(0, ms_since(b->second.ended_ms, b->second.started_ms)));
      m.bake_window_ms = b->second.window_ms;
      m.bake_min_healthy = b->second.min_healthy_bp / 10000.0;
    }
    if (auto c = switch_counts_.find(s.name); c != switch_counts_.end()) m.switches = c->second;
    if (auto c = rollback_counts_.find(s.name); c != rollback_counts_.end()) m.rollbacks = c->second;
    snap->services.push_back(std::move(m));
  }
  metrics_->publish(std::move(snap));
}

}  // namespace tandem
