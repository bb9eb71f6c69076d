// Event hooks (config `hooks:`): on switch, rollback, auto-rollback, promote, drain-complete,
// drain-timeout and health-change, tandemd runs a shell command (`/bin/sh -c`, the event as one
// JSON line on stdin, TANDEM_EVENT in the environment) or POSTs the JSON to an http:// URL.
// post() only queues: a dedicated thread runs the hooks one after the other, each bounded by
// hooks.timeout (a command's process group is killed then). Failures are logged and counted,
// never reported back: a hook can neither block nor fail a release.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "control/config.h"

namespace tandem {

class hook_runner {
 public:
  static constexpr size_t max_queued = 1024;  // beyond that, new events are dropped (logged)

  hook_runner() = default;
  ~hook_runner();
  hook_runner(const hook_runner&) = delete;
  hook_runner& operator=(const hook_runner&) = delete;

  void start();
  // Stops after the hook running now (killed if it is a command); queued ones are dropped.
  void stop();

  // Queues `body` (with "event": name added) for every hook of `settings` subscribed to
  // `event`. Control thread; never blocks on a hook.
  void post(const config::hook_settings& settings, const std::string& event, nlohmann::json body);

  // Blocks until the queue is empty and nothing runs, or timeout_ms passed (tests, shutdown).
  bool wait_idle(uint32_t timeout_ms);

  uint64_t succeeded() const { return succeeded_.load(std::memory_order_relaxed); }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  struct job {
    config::hook hook;
    uint32_t timeout_ms = 10'000;
    std::string event;
    std::string payload;  // one JSON line, with '\n'
  };
  void run();
  bool run_command(const job& j, std::string& why);
  bool run_post(const job& j, std::string& why);

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<job> queue_;  // guarded by mutex_
  bool busy_ = false;      // guarded by mutex_
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace tandem
