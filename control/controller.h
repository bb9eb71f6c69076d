// The control plane's state machine. Holds the desired configuration and the runtime state,
// turns every change into one new table generation (built off the hot path, published under
// RCU), and keeps the audit history. All-or-nothing: a change that fails validation or
// building leaves the running state exactly as it was.
//
// Not thread-safe by itself: the control server calls it from its single thread.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "control/config.h"
#include "control/generation_builder.h"
#include "control/health_checker.h"
#include "control/hooks.h"
#include "control/metrics.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "dataplane/worker.h"

namespace tandem {

// Who asked for a change (from SO_PEERCRED on the control socket).
struct actor {
  int uid = -1;
  int pid = -1;
  std::string describe() const;
};

struct switch_options {
  colour to = colour::green;
  std::optional<uint32_t> drain_timeout_ms;          // default: the service's drain policy
  std::optional<drain_action> on_drain_timeout;      // default: the service's drain policy
  std::optional<uint32_t> drain_spread_ms;           // default: the service's drain policy
  // Health-aware releases (controller_health.cpp).
  std::optional<uint32_t> bake_ms;        // watch the new colour this long after the switch
  bool auto_rollback = false;             // ... and roll back if it turns unhealthy meanwhile
  std::optional<uint32_t> min_healthy_bp; // healthy share x 10000; default health.bake_min_healthy
  bool force = false;                     // switch even below health.min_healthy_to_switch
  // Set by the controller's own rollback paths (history, hooks, metrics): "" for a switch,
  // "manual", "auto" or "abort"; `reason` is appended to the history entry.
  std::string trigger;
  std::string reason;
};

// The bake window after `switch --bake`: the new colour is watched, and (with auto_rollback)
// the switch is undone when its healthy share drops below min_healthy. The last one of each
// service stays visible (state promoted / rolled_back / aborted) until the next bake.
struct bake_state {
  colour target = colour::green;  // the colour being baked
  colour from = colour::blue;     // where a rollback goes
  uint32_t started_ms = 0;        // ms_clock
  uint32_t window_ms = 0;
  uint32_t ended_ms = 0;
  std::chrono::system_clock::time_point started_wall;
  uint32_t min_healthy_bp = 8000;
  bool auto_rollback = false;
  std::string state = "baking";   // baking | promoted | rolled_back | aborted
  std::string reason;
};

struct history_entry {
  std::string time;        // ISO 8601 UTC
  actor who;
  std::string command;     // e.g. "switch web --to green"
  std::string change;      // old -> new, e.g. "web: active blue -> green"
  uint32_t generation = 0;
  nlohmann::json to_json() const;
};

// A colour that stopped taking new flows and still has flows: its drain.
struct drain_state {
  colour draining = colour::blue;
  uint32_t started_ms = 0;       // ms_clock
  uint32_t deadline_ms = 0;      // started + timeout
  drain_action on_timeout = drain_action::keep;
  uint32_t spread_ms = 0;
  uint32_t before_generation = 0;  // flows of `draining` created before this generation
  std::chrono::system_clock::time_point started_wall;
  bool timeout_recorded = false;
};

class controller {
 public:
  controller(config::daemon_config initial, generation_publisher& publisher,
             std::vector<worker*> workers, const ms_clock& clock);

  // Publishes the first generation. Fails (with the reason) if the config does not build.
  tandem::status start();

  // --- release life cycle -------------------------------------------------------------------
  // All new flows of `service` go to opts.to at once; the other colour drains. Error when the
  // colour is already active (with --all: services already there are skipped, not an error).
  result<nlohmann::json> switch_to(const std::string& service, const switch_options& opts,
                                   const actor& who);
  result<nlohmann::json> switch_all(const switch_options& opts, const actor& who);
  // Back to the colour that was active before the last switch (the same guarantees).
  result<nlohmann::json> rollback(const std::string& service, const actor& who);
  result<nlohmann::json> rollback_all(const actor& who);
  // percent in basis points 0..10000 of clients whose new flows go to `to` (must be the idle
  // colour, or the active colour with 0 to clear).
  result<nlohmann::json> canary(const std::string& service, colour to, uint32_t basis_points,
                                const actor& who);
  result<nlohmann::json> segment(const std::string& service, bool add, const std::string& cidr,
                                 colour to, const actor& who);

  // --- pools --------------------------------------------------------------------------------
  // op: "add" (weight, mac optional), "remove", "set-weight".
  result<nlohmann::json> pool_edit(const std::string& service, colour pool, const std::string& op,
                                   const std::vector<std::string>& addresses,
                                   std::optional<uint32_t> weight,
                                   std::optional<std::string> mac, const actor& who);
  // state: ready | drain | maint, for the backend with that address in either pool.
  result<nlohmann::json> backend_state(const std::string& service, const std::string& address,
                                       const std::string& state, const actor& who);

  // --- declarative ----------------------------------------------------------------------------
  // Diff of `desired` against the running config; applies it as one generation unless dry_run.
  result<nlohmann::json> apply(const config::daemon_config& desired, bool dry_run,
                               const actor& who);
  nlohmann::json diff(const config::daemon_config& desired) const;

  // --- read-only ------------------------------------------------------------------------------
  result<nlohmann::json> status(const std::string& service) const;  // "" = every service
  // Live-flow counts and a sample of flow entries of a service, optionally of one colour or
  // backend, gathered from every worker without stopping it.
  result<nlohmann::json> flows(const std::string& service, std::optional<colour> c,
                               const std::string& backend, uint32_t limit);
  nlohmann::json stats() const;
  nlohmann::json history(size_t limit) const;
  const config::daemon_config& running() const { return running_; }
  uint32_t generation_number() const;

  // Called periodically by the control thread (e.g. every 100 ms): ends drains whose colour
  // reached zero live flows and records drain completion/timeouts in the history.
  void tick();

  // Live flows of (service, colour) summed over workers.
  int64_t live_flows(uint16_t service_id, colour c) const;

  void set_history_file(std::string path) { history_file_ = std::move(path); }
  // The config file as read at start, before command-line overrides (--socket,
  // --flow-table-size): `apply` of that same file must not count the overrides as changes.
  void set_startup_file_config(config::daemon_config file) { startup_file_ = std::move(file); }

  // --- health, bake windows, hooks, metrics (controller_health.cpp) -------------------------
  // Ends a bake window early keeping the switch / rolls it back with reason "aborted".
  result<nlohmann::json> promote(const std::string& service, const actor& who);
  result<nlohmann::json> abort_bake(const std::string& service, const actor& who);
  // Optional collaborators (tandemd wires all three; tests may leave any out). Not owned.
  void attach_health_checker(health_checker* c);
  void attach_hooks(hook_runner* h) { hooks_ = h; }
  void attach_metrics(metrics_exchange* m);
  // While one is open, metrics snapshots wait for the last one to close and are then built once:
  // a control request builds at most one (a switch built two, each of every backend).
  class metrics_batch {
   public:
    explicit metrics_batch(controller& c) : c_(c) { ++c_.metrics_holds_; }
    ~metrics_batch();
    metrics_batch(const metrics_batch&) = delete;
    metrics_batch& operator=(const metrics_batch&) = delete;

   private:
    controller& c_;
  };
  // Applies check results (tick() drains the checker into this; tests may call it directly):
  // rise/fall damping, then one generation with runtime_state.down updated if it changed.
  void apply_health_results(const std::vector<health_result>& results);
  const backend_health* health_of(uint32_t backend_id) const;
  const std::vector<health_target>& health_targets() const { return health_targets_; }
  const runtime_state& runtime() const { return state_; }

 private:
  // Builds and publishes a generation for `next`; on success makes it the running config and
  // records the history entry. Nothing changes on failure.
  result<uint32_t> commit(const config::daemon_config& next, runtime_state next_state,
                          const actor& who, std::string command, std::string change);
  config::service* find_service(config::daemon_config& cfg, const std::string& name);
  const config::service* find_service(const std::string& name) const;
  void record(history_entry e);
  // controller_health.cpp
  void tick_health();
  void tick_bakes();
  void after_commit();
  void sync_health_targets();
  void publish_metrics();
  void prune_down(const config::daemon_config& next, runtime_state& st) const;
  std::optional<std::string> health_refusal(const config::service& s, colour to) const;
  // Why a bake with auto-rollback would roll back at once (the target is already below
  // min_healthy_bp), or nothing.
  std::optional<std::string> bake_refusal(const config::service& s, colour to,
                                          uint32_t min_healthy_bp) const;
  // up / known (up + down) health among the pool's backends that are not in maint.
  std::pair<uint32_t, uint32_t> pool_health(const config::service& s, colour c) const;
  void count_switch(const std::string& service, const switch_options& opts, const char* result);
  void started_switch(const std::string& service, colour from, const switch_options& opts,
                      uint32_t generation, const actor& who);
  void emit(const std::string& event, nlohmann::json body);
  nlohmann::json backend_health_json(uint32_t id, bool checked) const;
  nlohmann::json bake_json(const std::string& service) const;

  config::daemon_config running_;
  runtime_state state_;
  generation_publisher& publisher_;
  std::vector<worker*> workers_;
  const ms_clock& clock_;
  std::map<std::string, colour> previous_active_;     // for rollback
  std::map<std::string, drain_state> drains_;         // by service name
  std::deque<history_entry> history_;
  std::optional<config::daemon_config> startup_file_;
  std::string history_file_;
  std::vector<uint64_t> publish_latency_us_;          // recent publish waits, for stats
  // Health, bakes, hooks, metrics.
  health_checker* checker_ = nullptr;
  hook_runner* hooks_ = nullptr;
  metrics_exchange* metrics_ = nullptr;
  std::vector<health_target> health_targets_;          // what the checker probes
  std::map<uint32_t, backend_health> health_;          // by backend id, targets only
  std::map<std::string, bake_state> bakes_;            // by service name
  std::map<std::string, std::map<std::string, uint64_t>> switch_counts_;  // service -> result
  std::map<std::string, std::map<metrics_snapshot::rollback_key, uint64_t>> rollback_counts_;
  histogram switch_publish_{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  double last_commit_s_ = 0;                            // build + publish of the last commit
  uint64_t generations_published_ = 0;
  uint64_t hooks_seen_ = 0;                             // hook counters at the last snapshot
  bool metrics_dirty_ = true;
  uint32_t metrics_holds_ = 0;                          // open metrics_batch scopes
};

}  // namespace tandem
