// Loopback backends and an HTTP client for the health, hook and metrics tests: real kernel TCP
// on 127.0.0.x, each backend served by its own thread, so checks go through the host stack
// exactly as tandemd's do. Header-only; used by tests/unit/health_test.cpp and
// tests/integration/health_test.cpp.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tandem::test {

enum class backend_mode {
  accept_close,  // accept, then close: a TCP check passes
  http,          // read a request (head + Content-Length body), answer with `status`
  hang,          // accept and never answer: an HTTP check times out
  garbage,       // read a request, answer with a line that is not HTTP
};

class loopback_backend {
 public:
  loopback_backend(const std::string& address, uint16_t port, backend_mode mode, int status = 200)
      : address_(address), mode_(mode), status_(status) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 128) != 0)
      throw std::runtime_error("cannot listen on " + address + ":" + std::to_string(port) + ": " +
                               std::strerror(errno));
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~loopback_backend() { close(); }
  loopback_backend(const loopback_backend&) = delete;
  loopback_backend& operator=(const loopback_backend&) = delete;

  // Stops listening: new connections are refused from now on (the backend "died").
  void close() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }
  int accepted() const { return accepted_.load(); }
  void set_status(int s) { status_ = s; }
  std::vector<std::string> requests() const {
    std::lock_guard<std::mutex> l(mutex_);
    return requests_;
  }

 private:
  struct conn {
    int fd;
    std::string in;
  };
  void run() {
    std::vector<conn> conns;
    while (!stop_) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (const auto& c : conns) fds.push_back({c.fd, POLLIN, 0});
      ::poll(fds.data(), fds.size(), 20);
      if (fds[0].revents & POLLIN) {
        for (;;) {
          const int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          ++accepted_;
          if (mode_ == backend_mode::accept_close) {
            ::close(c);
          } else {
            conns.push_back({c, {}});
          }
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        conn& c = conns[i - 1];
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        c.in.append(buf, static_cast<size_t>(n));
        if (mode_ == backend_mode::hang) continue;
        const size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        size_t body = 0;
        const size_t cl = c.in.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) body = std::stoul(c.in.substr(cl + 16));
        if (c.in.size() < end + 4 + body) continue;
        {
          std::lock_guard<std::mutex> l(mutex_);
          requests_.push_back(c.in);
        }
        const std::string r = mode_ == backend_mode::garbage
                                  ? std::string("hello, this is not http\n")
                                  : "HTTP/1.1 " + std::to_string(status_.load()) +
                                        " Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        (void)!::send(c.fd, r.data(), r.size(), MSG_NOSIGNAL);
        ::close(c.fd);
        c.fd = -1;
      }
      std::erase_if(conns, [](const conn& c) { return c.fd < 0; });
    }
    for (auto& c : conns) ::close(c.fd);
    ::close(fd_);
  }

  std::string address_;
  backend_mode mode_;
  std::atomic<int> status_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

// Sends `request` as is to address:port and returns everything the server sent until it
// closed the connection or `timeout_ms` passed (empty on connect failure).
inline std::string http_exchange(const std::string& address, uint16_t port,
                                 const std::string& request, int timeout_ms = 5000,
                                 bool half_close = false) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// The body of a complete HTTP response ("" if there is none).
inline std::string http_body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

}  // namespace tandem::test
