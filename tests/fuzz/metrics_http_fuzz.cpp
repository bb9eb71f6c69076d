// Fuzz target: any bytes sent to the Prometheus endpoint (a real metrics_server on a loopback
// socket) get back a stream of well-formed HTTP responses (status line, headers, a body of
// exactly Content-Length bytes) and a closed connection once the client has closed its side;
// the server still answers GET /metrics afterwards.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "control/metrics.h"
#include "dataplane/clock.h"
#include "dataplane/ip_address.h"
#include "tests/support/eal_fixture.h"

namespace {

using namespace tandem;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "metrics_http_fuzz: %s\n", what.c_str());
  std::abort();
}

metrics_exchange* exchange = nullptr;
metrics_server* server = nullptr;
constexpr int timeout_ms = 3000;

struct exchange_result {
  std::string out;
  bool closed = false;  // the server closed the connection (within timeout_ms)
};

// Sends `request`, half-closes when asked, and reads until the server closes or timeout_ms.
// Not test::http_exchange: this one must tell a close from a timeout, retry after libFuzzer's
// alarm interrupts a call, and vary its source address.
// Thousands of connections a second leave TIME_WAIT entries behind (28 k ephemeral ports ran
// out after about 50 k inputs), so each connection comes from its own 127.x.y.z source.
exchange_result exchange_with(const std::string& request, bool half_close) {
  static uint32_t next_source = 0;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl(0x7f000000u | (1u + next_source++ % 0xfffffeu));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0)
    fail(std::string("bind a loopback source: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(server->port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno == EINTR) {  // the connection goes on: wait for it, then read its result
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, timeout_ms) < 0 && errno == EINTR) {
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = err == 0 ? 0 : -1;
    errno = err;
  }
  if (rc != 0) fail(std::string("connect to the metrics server: ") + std::strerror(errno));
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may close early (a request head too large)
    sent += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  exchange_result r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;  // libFuzzer's -timeout alarm
    if (ready <= 0) break;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      r.closed = true;
      break;
    }
    r.out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return r;
}

// Checks that `stream` is whole responses back to back; returns how many.
size_t check_responses(const std::string& stream, const std::string& request) {
  size_t pos = 0, count = 0;
  while (pos < stream.size()) {
    const size_t head_end = stream.find("\r\n\r\n", pos);
    if (head_end == std::string::npos) fail("response head without its blank line for " + request);
    const std::string head = stream.substr(pos, head_end - pos);
    if (head.rfind("HTTP/1.1 ", 0) != 0 || head.size() < 12 || head[12] != ' ' ||
        head.find_first_not_of("0123456789", 9) != 12)
      fail("bad status line '" + head.substr(0, head.find("\r\n")) + "' for " + request);
    const size_t cl = head.find("\r\nContent-Length: ");
    if (cl == std::string::npos) fail("response without Content-Length for " + request);
    const size_t length = std::strtoul(head.c_str() + cl + 18, nullptr, 10);
    pos = head_end + 4 + length;
    if (pos > stream.size()) fail("response body shorter than its Content-Length for " + request);
    ++count;
  }
  return count;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  test::ensure_eal();  // ms_clock reads the TSC rate from EAL
  spdlog::set_level(spdlog::level::off);
  static ms_clock clock;
  exchange = new metrics_exchange();
  server = new metrics_server(*exchange, {}, clock);
  if (auto s = server->open(*parse_ip_address("127.0.0.1"), 0); !s.ok())
    fail("open: " + s.error_message() + " (inside unshare --net, bring lo up first)");
  server->start();
  std::atexit([] {
    server->stop();
    delete server;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string request(reinterpret_cast<const char*>(data), size);
  const exchange_result r = exchange_with(request, /*half_close=*/true);
  if (!r.closed) fail("the server kept the connection open after the client closed its side");
  check_responses(r.out, request.substr(0, 200));
  const auto t0 = std::chrono::steady_clock::now();
  const exchange_result get = exchange_with("GET /metrics HTTP/1.0\r\n\r\n", false);
  if (get.out.rfind("HTTP/1.1 200 ", 0) != 0)
    fail("GET /metrics fails after the input: '" + get.out.substr(0, 100) + "' (" +
         (get.closed ? "closed" : "not closed") + " after " +
         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0).count()) +
         " ms, " + std::to_string(server->requests()) + " requests served)");
  return 0;
}
