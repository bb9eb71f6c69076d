// Active health checks, run by the control plane from the host's kernel network stack (never
// by workers): TCP connect or HTTP GET against each backend's own address. One checker thread
// drives every probe with non-blocking sockets and poll(); the control thread hands it the
// target list and drains its results, both through a mutex, so neither ever waits on a backend.
// The checker only reports raw results; rise/fall damping (backend_health) is applied by the
// control thread, which owns the health state.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/config.h"
#include "dataplane/ip_address.h"

namespace tandem {

struct health_target {
  uint32_t backend_id = 0;  // registry id: the key of a backend's health
  ip_address address;       // the backend's own address (in DSR the VIP sits on its lo)
  uint16_t port = 0;
  config::health_check check;
  friend bool operator==(const health_target&, const health_target&) = default;
};

struct health_result {
  uint32_t backend_id = 0;
  bool ok = false;
  std::string detail;  // "connected", "HTTP 200", "connect: Connection refused", "timeout after 1s"
  uint32_t latency_us = 0;
  std::chrono::system_clock::time_point at;
};

enum class health_state : uint8_t { unknown = 0, up, down };
const char* health_state_name(health_state s);

// The health of one backend as the control thread sees it. unknown until `rise` successes or
// `fall` failures in a row; then up/down flips only after `fall` failures / `rise` successes in
// a row, which damps flapping.
struct backend_health {
  health_state state = health_state::unknown;
  uint32_t successes = 0;  // consecutive
  uint32_t failures = 0;   // consecutive
  uint64_t checks_ok = 0;
  uint64_t checks_failed = 0;
  bool checked = false;    // at least one result
  std::string last_result;
  uint32_t latency_us = 0;
  std::chrono::system_clock::time_point checked_at;

  // Applies one result; returns true when `state` changed.
  bool apply(const health_result& r, uint32_t rise, uint32_t fall);
};

class health_checker {
 public:
  health_checker();
  ~health_checker();
  health_checker(const health_checker&) = delete;
  health_checker& operator=(const health_checker&) = delete;

  void start();  // starts the checker thread (idempotent)
  void stop();   // stops it and closes every probe socket (idempotent)

  // Replaces the target list (control thread). A backend id present before keeps its schedule;
  // a new one (or one whose check changed) gets its first check
  // within a quarter of min(interval, 1 s).
  void set_targets(std::vector<health_target> targets);
  // Every result since the last call, oldest first (control thread).
  std::vector<health_result> take_results();

 private:
  void run();
  void wake();

  std::mutex mutex_;
  std::vector<health_target> targets_;  // guarded by mutex_
  bool targets_changed_ = false;        // guarded by mutex_
  std::vector<health_result> results_;  // guarded by mutex_
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;  // eventfd: set_targets/stop interrupt the thread's poll()
  std::thread thread_;
};

}  // namespace tandem
