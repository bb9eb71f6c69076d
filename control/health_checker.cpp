#include "control/health_checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace tandem {

const char* health_state_name(health_state s) {
  switch (s) {
    case health_state::up: return "up";
    case health_state::down: return "down";
    case health_state::unknown: return "unknown";
  }
  return "unknown";
}

bool backend_health::apply(const health_result& r, uint32_t rise, uint32_t fall) {
  checked = true;
  last_result = r.detail;
  latency_us = r.latency_us;
  checked_at = r.at;
  const health_state before = state;
  if (r.ok) {
    ++checks_ok;
    failures = 0;
    if (successes < rise) ++successes;
    if (successes >= rise) state = health_state::up;
  } else {
    ++checks_failed;
    successes = 0;
    if (failures < fall) ++failures;
    if (failures >= fall) state = health_state::down;
  }
  return state != before;
}

namespace {

using steady = std::chrono::steady_clock;

struct probe {
  enum class phase : uint8_t { idle, connecting, sending, reading };
  health_target target;
  steady::time_point next_due;
  steady::time_point started;
  steady::time_point deadline;
  phase ph = phase::idle;
  int fd = -1;
  std::string out;
  size_t out_offset = 0;
  std::string in;
};

std::string host_header(const health_target& t) {
  if (!t.check.host.empty()) return t.check.host;
  std::string h = to_string(t.address);
  if (!t.address.is_v4()) h = "[" + h + "]";
  if (t.port != 80) h += ":" + std::to_string(t.port);
  return h;
}

std::string duration_text(uint32_t ms) { return config::format_duration(ms); }

// "HTTP/1.1 200 OK" -> 200; -1 when it is not a status line.
int parse_status_line(const std::string& line) {
  if (line.size() < 12 || line.compare(0, 7, "HTTP/1.") != 0 || line[8] != ' ') return -1;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return -1;
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > 12 && line[12] != ' ' && line[12] != '\r') return -1;
  return code;
}

class prober {
 public:
  explicit prober(std::mutex& m, std::vector<health_result>& results)
      : mutex_(m), results_(results) {}
  ~prober() {
    for (auto& [id, p] : probes_) close_fd(p);
  }

  void set_targets(const std::vector<health_target>& targets) {
    const auto now = steady::now();
    std::map<uint32_t, probe> next;
    for (const health_target& t : targets) {
      auto it = probes_.find(t.backend_id);
      if (it != probes_.end()) {
        probe p = std::move(it->second);
        probes_.erase(it);
        if (!(p.target == t)) {
          // A changed check (address, port, kind...) starts afresh, soon.
          close_fd(p);
          p = probe{};
          p.target = t;
          p.next_due = now + first_delay(t);
        }
        next.emplace(t.backend_id, std::move(p));
      } else {
        probe p;
        p.target = t;
        p.next_due = now + first_delay(t);
        next.emplace(t.backend_id, std::move(p));
      }
    }
    for (auto& [id, p] : probes_) close_fd(p);  // targets that went away
    probes_ = std::move(next);
  }

  // Starts due probes and expires late ones; returns how long poll() may sleep.
  int service_timers() {
    const auto now = steady::now();
    auto wait = std::chrono::milliseconds(1000);
    for (auto& [id, p] : probes_) {
      if (p.ph == probe::phase::idle && p.next_due <= now) start(p, now);
      if (p.ph != probe::phase::idle && p.deadline <= now)
        finish(p, false, "timeout after " + duration_text(p.target.check.timeout_ms));
      const auto due = p.ph == probe::phase::idle ? p.next_due : p.deadline;
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(due - now) +
                                std::chrono::milliseconds(1));
    }
    return static_cast<int>(std::max<int64_t>(wait.count(), 0));
  }

  void fill(std::vector<pollfd>& fds, std::vector<uint32_t>& ids) {
    for (auto& [id, p] : probes_) {
      if (p.ph == probe::phase::idle || p.fd < 0) continue;
      const short ev = p.ph == probe::phase::reading ? POLLIN : POLLOUT;
      fds.push_back(pollfd{p.fd, ev, 0});
      ids.push_back(id);
    }
  }

  void on_event(uint32_t id, short revents) {
    auto it = probes_.find(id);
    if (it == probes_.end() || it->second.ph == probe::phase::idle) return;
    probe& p = it->second;
    switch (p.ph) {
      case probe::phase::connecting: {
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0 && (revents & (POLLERR | POLLHUP)) && !(revents & POLLOUT)) err = ECONNREFUSED;
        if (err != 0) {
          finish(p, false, std::string("connect: ") + std::strerror(err));
          return;
        }
        connected(p);
        return;
      }
      case probe::phase::sending:
        send_some(p);
        return;
      case probe::phase::reading:
        read_some(p);
        return;
      case probe::phase::idle:
        return;
    }
  }

 private:
  static steady::duration first_delay(const health_target& t) {
    // Soon (state is known quickly after a start or a pool change), but spread over a quarter
    // of min(interval, 1 s) so a large pool does not probe in one burst.
    const uint32_t span = std::min<uint32_t>(t.check.interval_ms, 1000) / 4;
    return std::chrono::milliseconds(span ? (t.backend_id * 2654435761u) % span : 0);
  }

  static void close_fd(probe& p) {
    if (p.fd >= 0) ::close(p.fd);
    p.fd = -1;
  }

  void start(probe& p, steady::time_point now) {
    p.started = now;
    p.deadline = now + std::chrono::milliseconds(p.target.check.timeout_ms);
    p.in.clear();
    p.out.clear();
    p.out_offset = 0;
    const bool v4 = p.target.address.is_v4();
    p.fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    p.ph = probe::phase::connecting;
    if (p.fd < 0) {
      finish(p, false, std::string("socket: ") + std::strerror(errno));
      return;
    }
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v4) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(p.target.port);
      std::memcpy(&a->sin_addr, p.target.address.bytes + 12, 4);
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(p.target.port);
      std::memcpy(&a->sin6_addr, p.target.address.bytes, 16);
      len = sizeof *a;
    }
    if (::connect(p.fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0) {
      connected(p);
    } else if (errno != EINPROGRESS) {
      finish(p, false, std::string("connect: ") + std::strerror(errno));
    }
  }

  void connected(probe& p) {
    if (p.target.check.kind == config::health_check_kind::tcp) {
      finish(p, true, "connected");
      return;
    }
    p.out = "GET " + p.target.check.path + " HTTP/1.1\r\nHost: " + host_header(p.target) +
            "\r\nUser-Agent: tandem-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    p.ph = probe::phase::sending;
    send_some(p);
  }

  void send_some(probe& p) {
    while (p.out_offset < p.out.size()) {
      const ssize_t n = ::send(p.fd, p.out.data() + p.out_offset, p.out.size() - p.out_offset,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        p.out_offset += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      finish(p, false, std::string("send: ") + std::strerror(errno));
      return;
    }
    p.ph = probe::phase::reading;
  }

  void read_some(probe& p) {
    char buf[2048];
    for (;;) {
      const ssize_t n = ::recv(p.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        p.in.append(buf, static_cast<size_t>(n));
        if (p.in.find('\n') != std::string::npos || p.in.size() >= 1024) break;
        continue;
      }
      if (n == 0) break;  // EOF: judge what arrived
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      finish(p, false, std::string("recv: ") + std::strerror(errno));
      return;
    }
    const std::string line = p.in.substr(0, p.in.find('\n'));
    const int code = parse_status_line(line);
    const auto& c = p.target.check;
    if (code < 0) {
      finish(p, false, p.in.empty() ? "closed without a response" : "not an HTTP response");
    } else if (code < c.status_min || code > c.status_max) {
      finish(p, false, "HTTP " + std::to_string(code) + " (expected " +
                           std::to_string(c.status_min) + "-" + std::to_string(c.status_max) + ")");
    } else {
      finish(p, true, "HTTP " + std::to_string(code));
    }
  }

  void finish(probe& p, bool ok, std::string detail) {
    const auto now = steady::now();
    close_fd(p);
    p.ph = probe::phase::idle;
    // Fixed rate: the next check starts one interval after this one started.
    p.next_due = std::max(p.started + std::chrono::milliseconds(p.target.check.interval_ms), now);
    health_result r;
    r.backend_id = p.target.backend_id;
    r.ok = ok;
    r.detail = std::move(detail);
    r.latency_us = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - p.started).count());
    r.at = std::chrono::system_clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    // Bounded: if the control thread stalls, keep the newest results only.
    if (results_.size() >= 100'000) results_.erase(results_.begin(), results_.begin() + 50'000);
    results_.push_back(std::move(r));
  }

  std::mutex& mutex_;
  std::vector<health_result>& results_;
  std::map<uint32_t, probe> probes_;
};

}  // namespace

health_checker::health_checker() {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

health_checker::~health_checker() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void health_checker::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void health_checker::stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  wake();
  thread_.join();
}

void health_checker::wake() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
}

void health_checker::set_targets(std::vector<health_target> targets) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    targets_ = std::move(targets);
    targets_changed_ = true;
  }
  wake();
}

std::vector<health_result> health_checker::take_results() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<health_result> out;
  out.swap(results_);
  return out;
}

void health_checker::run() {
  prober pr(mutex_, results_);
  std::vector<pollfd> fds;
  std::vector<uint32_t> ids;
  while (!stop_.load(std::memory_order_relaxed)) {
    {
      std::vector<health_target> targets;
      bool changed = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (targets_changed_) {
          targets = targets_;
          targets_changed_ = false;
          changed = true;
        }
      }
      if (changed) pr.set_targets(targets);
    }
    const int timeout = pr.service_timers();
    fds.clear();
    ids.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    pr.fill(fds, ids);
    const int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0) {
      if (errno != EINTR) spdlog::warn("health checker: poll: {}", std::strerror(errno));
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof v);
    }
    for (size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents) pr.on_event(ids[i - 1], fds[i].revents);
  }
}

}  // namespace tandem
