// Prometheus metrics: the text exposition format (version 0.0.4) over a small HTTP/1.1 server.
//
// Two sources, so scraping never waits for (or stops) the control thread:
//  * worker counters (rx/tx, drops, flows, per-backend packets), read live with read_counter()
//    by the metrics thread, exactly as `tandemctl stats` reads them;
//  * a metrics_snapshot of control-plane state (services, colours, backends and their health,
//    drains, bakes, switch/rollback counts, the publish-latency histogram) that the control
//    thread publishes into a metrics_exchange (a mutex-guarded shared_ptr) when it changes.
//
// The server thread polls its own non-blocking sockets: GET /metrics -> 200, other paths 404,
// other methods 405, malformed or oversized requests 400; idle connections are closed.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/config.h"
#include "dataplane/clock.h"
#include "dataplane/result.h"
#include "dataplane/worker.h"

namespace tandem {

// Cumulative histogram with fixed upper bounds (seconds).
struct histogram {
  std::vector<double> bounds;    // ascending, +Inf implied
  std::vector<uint64_t> counts;  // per bucket (not cumulative), bounds.size() + 1 entries
  double sum = 0;
  uint64_t count = 0;
  explicit histogram(std::vector<double> b = {})
      : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v);
};

struct metrics_snapshot {
  struct backend {
    std::string address;
    uint32_t id = 0;          // registry id: index into backend_counters
    uint32_t weight = 0;
    std::string admin_state;  // ready | drain | maint
    int health = -1;          // 1 up, 0 down, -1 unknown (not checked yet)
    bool checked_service = false;  // the service has health checks
    double latency_s = 0;     // last check
    uint64_t checks_ok = 0;
    uint64_t checks_failed = 0;
  };
  struct rollback_key {
    std::string trigger;  // manual | auto | abort
    std::string result;   // ok | error
    bool operator<(const rollback_key& o) const {
      return trigger != o.trigger ? trigger < o.trigger : result < o.result;
    }
  };
  struct service {
    std::string name;
    uint16_t id = 0;
    colour active = colour::blue;
    uint32_t canary_bp = 0;  // share of new flows to the idle colour, basis points
    std::array<std::vector<backend>, 2> pools;
    bool draining = false;
    colour drain_colour = colour::blue;
    uint32_t drain_deadline_ms = 0;  // ms_clock
    double drain_deadline_unix = 0;
    bool has_bake = false;
    colour bake_colour = colour::green;
    std::string bake_state;          // baking | promoted | rolled_back | aborted
    uint32_t bake_started_ms = 0;    // ms_clock
    uint32_t bake_elapsed_ms = 0;    // frozen when the bake ended
    uint32_t bake_window_ms = 0;
    double bake_min_healthy = 0;
    std::map<std::string, uint64_t> switches;     // result -> count
    std::map<rollback_key, uint64_t> rollbacks;
  };
  uint32_t generation = 0;
  uint64_t generations_published = 0;
  std::vector<service> services;
  histogram switch_publish;
  uint64_t hooks_ok = 0, hooks_failed = 0, hooks_dropped = 0;
};

// The control thread publishes, the metrics thread reads: a shared_ptr swapped under a mutex.
class metrics_exchange {
 public:
  void publish(std::shared_ptr<const metrics_snapshot> s) {
    std::lock_guard<std::mutex> lock(mutex_);
    snapshot_ = std::move(s);
    ++publishes_;
  }
  std::shared_ptr<const metrics_snapshot> get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return snapshot_;
  }
  // Snapshots published so far (each one is built from every backend of every service).
  uint64_t publishes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return publishes_;
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const metrics_snapshot> snapshot_;
  uint64_t publishes_ = 0;
};

// A minimal writer of the text format: HELP and TYPE once per family (on its first sample),
// label values escaped, integers printed exactly.
class prom_writer {
 public:
  using labels = std::vector<std::pair<std::string, std::string>>;
  // Declares the family; subsequent sample() calls belong to it.
  void family(const std::string& name, const char* type, const std::string& help);
  void sample(const labels& l, double value) { sample_as(family_, l, format(value)); }
  void sample(const labels& l, uint64_t value) { sample_as(family_, l, std::to_string(value)); }
  void sample(const labels& l, int64_t value) { sample_as(family_, l, std::to_string(value)); }
  // For histograms: name with suffix (_bucket, _sum, _count).
  void sample_as(const std::string& name, const labels& l, const std::string& value);
  static std::string format(double v);
  static std::string escape(const std::string& v);
  std::string take() { return std::move(out_); }

 private:
  void header_once();
  std::string out_;
  std::string family_;
  const char* type_ = "";
  std::string help_;
  bool header_written_ = false;
};

// Renders every metric. `workers` are read live (read_counter); `now_ms` is ms_clock time.
std::string render_metrics(const metrics_snapshot& s, const std::vector<const worker*>& workers,
                           uint32_t now_ms);

class metrics_server {
 public:
  static constexpr size_t max_request_bytes = 8192;  // request line + headers
  static constexpr size_t max_clients = 64;
  static constexpr uint32_t idle_timeout_ms = 10'000;

  metrics_server(const metrics_exchange& exchange, std::vector<const worker*> workers,
                 const ms_clock& clock);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  // Binds and listens (port 0 = any free port; see port()). Errors name metrics.listen.
  status open(const ip_address& address, uint16_t port);
  void start();  // serves on its own thread until stop()
  void stop();
  uint16_t port() const { return bound_port_; }
  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }
  uint64_t bad_requests() const { return bad_requests_.load(std::memory_order_relaxed); }

  // The response to one complete request head (request line + headers, without the blank
  // line); exposed for tests. Sets `keep_alive` to whether the connection may stay open.
  std::string respond(const std::string& head, bool& keep_alive);

 private:
  void run();
  const metrics_exchange& exchange_;
  std::vector<const worker*> workers_;
  const ms_clock& clock_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  uint16_t bound_port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bad_requests_{0};
  std::thread thread_;
};

}  // namespace tandem
