#include "control/hooks.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

extern char** environ;

namespace tandem {
namespace {

using steady = std::chrono::steady_clock;

int ms_left(steady::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1000));
}

bool subscribed(const config::hook& h, const std::string& event) {
  return h.events.empty() || std::find(h.events.begin(), h.events.end(), event) != h.events.end();
}

// Writes all of `data` to a non-blocking socket before the deadline. No SIGPIPE.
bool send_all(int fd, const std::string& data, steady::time_point deadline, std::string& why) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      why = std::string("write: ") + std::strerror(errno);
      return false;
    }
    if (steady::now() >= deadline) {
      why = "write timed out";
      return false;
    }
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, ms_left(deadline));
  }
  return true;
}

}  // namespace

hook_runner::~hook_runner() { stop(); }

void hook_runner::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void hook_runner::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void hook_runner::post(const config::hook_settings& settings, const std::string& event,
                       nlohmann::json body) {
  if (settings.hooks.empty()) return;
  body["event"] = event;
  const std::string payload = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const config::hook& h : settings.hooks) {
      if (!subscribed(h, event)) continue;
      if (queue_.size() >= max_queued) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("hook queue full ({} events): {} hook dropped", max_queued, event);
        continue;
      }
      queue_.push_back(job{h, settings.timeout_ms, event, payload});
      ++queued;
    }
  }
  if (queued) cv_.notify_all();
}

bool hook_runner::wait_idle(uint32_t timeout_ms) {
  const auto deadline = steady::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_until(lock, deadline, [&] { return queue_.empty() && !busy_; });
}

void hook_runner::run() {
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      busy_ = false;
      cv_.notify_all();  // wait_idle()
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      j = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    std::string why;
    const bool ok = j.hook.command.empty() ? run_post(j, why) : run_command(j, why);
    if (ok) {
      succeeded_.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("hook {} ({}): ok", j.event, j.hook.command.empty() ? j.hook.url : j.hook.command);
    } else {
      failed_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("hook for event {} failed: {}: {}", j.event,
                   j.hook.command.empty() ? "POST " + j.hook.url : j.hook.command, why);
    }
  }
}

bool hook_runner::run_command(const job& j, std::string& why) {
  const auto deadline = steady::now() + std::chrono::milliseconds(j.timeout_ms);
  // A socket pair rather than a pipe: send(MSG_NOSIGNAL) cannot raise SIGPIPE in tandemd
  // when the hook exits without reading its stdin.
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    why = std::string("socketpair: ") + std::strerror(errno);
    return false;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 0);  // dup2 clears close-on-exec on fd 0
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);  // its own process group: a timeout kills the whole hook
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> env_store;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, "TANDEM_EVENT=", 13) != 0) env_store.emplace_back(*e);
  env_store.push_back("TANDEM_EVENT=" + j.event);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = j.hook.command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    why = std::string("cannot start /bin/sh: ") + std::strerror(rc);
    return false;
  }
  std::string write_error;
  send_all(sv[0], j.payload, deadline, write_error);  // a hook may ignore its stdin
  ::close(sv[0]);
  int wstatus = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      why = std::string("waitpid: ") + std::strerror(errno);
      return false;
    }
    if (steady::now() >= deadline || stop_.load(std::memory_order_relaxed)) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      why = stop_ ? "killed: tandemd is stopping"
                  : "timed out after " + config::format_duration(j.timeout_ms) + " (killed)";
      return false;
    }
    ::usleep(5000);
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return true;
  why = WIFEXITED(wstatus) ? "exit status " + std::to_string(WEXITSTATUS(wstatus))
                           : "killed by signal " + std::to_string(WTERMSIG(wstatus));
  return false;
}

bool hook_runner::run_post(const job& j, std::string& why) {
  const auto deadline = steady::now() + std::chrono::milliseconds(j.timeout_ms);
  auto url = config::parse_http_url(j.hook.url);
  if (!url) {
    why = "bad URL";
    return false;
  }
  const bool v4 = url->address.is_v4();
  const int fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_fd{fd};
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(url->port);
    std::memcpy(&a->sin_addr, url->address.bytes + 12, 4);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(url->port);
    std::memcpy(&a->sin6_addr, url->address.bytes, 16);
    len = sizeof *a;
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) {
      why = std::string("connect: ") + std::strerror(errno);
      return false;
    }
    for (;;) {
      pollfd p{fd, POLLOUT, 0};
      const int n = ::poll(&p, 1, ms_left(deadline));
      if (n > 0) break;
      if (steady::now() >= deadline) {
        why = "connect timed out";
        return false;
      }
    }
    int err = 0;
    socklen_t el = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
      why = std::string("connect: ") + std::strerror(err);
      return false;
    }
  }
  const std::string request = "POST " + url->path + " HTTP/1.1\r\nHost: " + url->host +
                              "\r\nUser-Agent: tandemd\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(j.payload.size()) +
                              "\r\nConnection: close\r\n\r\n" + j.payload;
  if (!send_all(fd, request, deadline, why)) return false;
  std::string in;
  char buf[1024];
  while (in.find('\n') == std::string::npos && in.size() < 4096) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      why = std::string("recv: ") + std::strerror(errno);
      return false;
    }
    if (steady::now() >= deadline) {
      why = "no response within " + config::format_duration(j.timeout_ms);
      return false;
    }
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, ms_left(deadline));
  }
  // "HTTP/1.1 204 No Content": any 2xx is success.
  if (in.size() >= 12 && in.compare(0, 7, "HTTP/1.") == 0 && in[9] == '2') return true;
  why = in.empty() ? "no response" : "answered '" + in.substr(0, in.find_first_of("\r\n")) + "'";
  return false;
}

}  // namespace tandem
