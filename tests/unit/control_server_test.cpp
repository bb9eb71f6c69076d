// The control socket end to end: a real controller (no workers) behind a control_server on a
// socket in a fresh temp dir, driven by plain socket clients and by the tandemctl binary.
#include <gtest/gtest.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "control/config.h"
#include "control/control_server.h"
#include "control/controller.h"
#include "control/protocol.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "tests/support/eal_fixture.h"

namespace tandem {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

config::backend make_backend(const char* addr, uint8_t mac_last) {
  config::backend b;
  b.address = *parse_ip_address(addr);
  config::mac_address m;
  const uint8_t bytes[6] = {0x02, 0, 0, 0, 0x01, mac_last};
  std::copy(bytes, bytes + 6, m.bytes);
  b.mac = m;
  return b;
}

config::daemon_config make_config() {
  config::daemon_config cfg;
  config::service s;
  s.name = "web";
  s.vip = *parse_ip_address("198.51.100.10");
  s.proto = 6;
  s.port = 80;
  s.mode = forwarding_mode::l2;
  s.maglev_size = 1009;
  s.blue = {make_backend("10.1.0.1", 1), make_backend("10.1.0.2", 2)};
  s.green = {make_backend("10.2.0.1", 3), make_backend("10.2.0.2", 4)};
  cfg.services.push_back(s);
  return cfg;
}

class temp_dir {
 public:
  temp_dir() {
    char tmpl[] = "/tmp/tandem-ctl-test-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) std::abort();
    path_ = p;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A blocking test client with a receive timeout, so a server bug fails a test instead of
// hanging it.
class client {
 public:
  explicit client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  // False when the server has closed the connection.
  bool send_raw(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // The next response line, parsed; null when the connection ends or times out.
  json read_response() {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        json j = json::parse(buf_.substr(0, nl));
        buf_.erase(0, nl + 1);
        return j;
      }
      char tmp[65536];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return nullptr;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  json call(const std::string& command, const json& args = json::object()) {
    if (!send_raw(json{{"version", 1}, {"command", command}, {"args", args}}.dump() + "\n"))
      return nullptr;
    return read_response();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

class ControlServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test::ensure_eal();
    spdlog::set_level(spdlog::level::warn);
  }

  void SetUp() override {
    clock_ = std::make_unique<ms_clock>();
    publisher_ = std::make_unique<generation_publisher>(1);
    ctl_ = std::make_unique<controller>(make_config(), *publisher_, std::vector<worker*>{},
                                        *clock_);
    auto started = ctl_->start();
    ASSERT_TRUE(started.ok()) << started.error_message();
    socket_path_ = dir_.path() + "/run/tandemd.sock";
  }

  void TearDown() override {
    stop_server();
    server_.reset();
  }

  // Opens the server with `settings` and runs its poll loop on a thread.
  void start_server(config::control_socket settings) {
    server_ = std::make_unique<control_server>(*ctl_, std::move(settings));
    auto opened = server_->open();
    ASSERT_TRUE(opened.ok()) << opened.error_message();
    stop_ = false;
    thread_ = std::thread([this] {
      while (!stop_.load()) server_->poll_once(10);
    });
  }
  void start_server() {
    config::control_socket s;
    s.path = socket_path_;
    start_server(s);
  }
  void stop_server() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  json status_result(client& c) {
    json r = c.call("status");
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    return r.value("result", json());
  }

  temp_dir dir_;
  std::string socket_path_;
  std::unique_ptr<ms_clock> clock_;
  std::unique_ptr<generation_publisher> publisher_;
  std::unique_ptr<controller> ctl_;
  std::unique_ptr<control_server> server_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

TEST_F(ControlServerTest, StatusDescribesTheService) {
  start_server();
  client c(socket_path_);
  ASSERT_TRUE(c.connected());
  json r = c.call("status");
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r["version"], 1);
  const json& s = r["result"]["services"].at(0);
  EXPECT_EQ(s["name"], "web");
  EXPECT_EQ(s["active"], "blue");
  EXPECT_EQ(s["colours"]["blue"]["backends"].size(), 2u);
  EXPECT_EQ(s["colours"]["green"]["backends"].size(), 2u);
  EXPECT_GE(r["result"]["generation"].get<int>(), 1);
}

TEST_F(ControlServerTest, SwitchChangesTheActiveColourAndASecondSwitchConflicts) {
  start_server();
  client c(socket_path_);
  const int before = status_result(c)["generation"].get<int>();

  json r = c.call("switch", {{"service", "web"}, {"to", "green"}, {"drain_timeout", "30s"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  json st = status_result(c);
  EXPECT_EQ(st["services"][0]["active"], "green");
  EXPECT_EQ(st["services"][0]["previous"], "blue");
  EXPECT_GT(st["generation"].get<int>(), before);
  ASSERT_TRUE(st["services"][0]["drain"].is_object());
  EXPECT_EQ(st["services"][0]["drain"]["colour"], "blue");

  r = c.call("switch", {{"service", "web"}, {"to", "green"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_EQ(r["code"], "conflict");
  EXPECT_NE(r["error"].get<std::string>().find("already active"), std::string::npos) << r.dump();
  EXPECT_EQ(status_result(c)["services"][0]["active"], "green");

  r = c.call("rollback", {{"service", "web"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(status_result(c)["services"][0]["active"], "blue");
}

TEST_F(ControlServerTest, UnknownServiceIsNotFound) {
  start_server();
  client c(socket_path_);
  json r = c.call("status", {{"service", "nope"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_EQ(r["code"], "not_found");
  EXPECT_NE(r["error"].get<std::string>().find("nope"), std::string::npos);
  r = c.call("switch", {{"service", "nope"}, {"to", "green"}});
  EXPECT_EQ(r["code"], "not_found") << r.dump();
}

// Found by tests/fuzz/control_request_fuzz.cpp: nlohmann::json reports a number that overflows a
// double as out_of_range, not parse_error, and it used to come back as an internal error.
TEST_F(ControlServerTest, NumberOverflowIsAMalformedRequestNotAnInternalError) {
  start_server();
  client c(socket_path_);
  ASSERT_TRUE(c.send_raw("{\"version\":1,\"command\":\"canary\",\"args\":{\"percent\":1e400}}\n"));
  json r = c.read_response();
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["code"], "bad_request") << r.dump();
  EXPECT_EQ(r["error"].get<std::string>().rfind("malformed JSON: ", 0), 0u) << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("number overflow"), std::string::npos) << r.dump();
  EXPECT_TRUE(c.call("status").value("ok", false));
}

TEST_F(ControlServerTest, MalformedRequestsAreRejectedAndTheConnectionKeepsWorking) {
  start_server();
  client c(socket_path_);
  ASSERT_TRUE(c.send_raw("{\"version\":1,\"command\":\n"));
  json r = c.read_response();
  ASSERT_TRUE(r.is_object());
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_EQ(r["error"].get<std::string>().rfind("malformed JSON: ", 0), 0u) << r.dump();

  r = c.call("status");
  EXPECT_TRUE(r.value("ok", false)) << r.dump();

  ASSERT_TRUE(c.send_raw("{\"command\":\"status\"}\n"));
  r = c.read_response();
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["error"].get<std::string>().find("version"), std::string::npos) << r.dump();

  ASSERT_TRUE(c.send_raw("{\"version\":7,\"command\":\"status\"}\n"));
  r = c.read_response();
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["error"].get<std::string>().find("version"), std::string::npos) << r.dump();

  r = c.call("explode");
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_NE(r["error"].get<std::string>().find("switch"), std::string::npos)
      << "lists the commands: " << r.dump();

  // Invalid UTF-8 in the echoed parser message must not break the response encoding.
  ASSERT_TRUE(c.send_raw("\xff\xfe garbage\n"));
  r = c.read_response();
  EXPECT_EQ(r["code"], "bad_request") << r.dump();

  EXPECT_TRUE(c.call("status").value("ok", false));
}

TEST_F(ControlServerTest, OversizedLineIsRejectedAndTheConnectionKeepsWorking) {
  start_server();
  client c(socket_path_);
  // A complete line just over the limit.
  ASSERT_TRUE(c.send_raw(std::string(max_request_bytes + 1, 'x') + "\n"));
  json r = c.read_response();
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_EQ(r["error"], "request larger than 1 MiB");
  EXPECT_TRUE(c.call("status").value("ok", false));

  // An unterminated one: the error comes before the newline does, and the rest is discarded.
  ASSERT_TRUE(c.send_raw(std::string(2 * max_request_bytes, '{')));
  r = c.read_response();
  EXPECT_EQ(r["error"], "request larger than 1 MiB");
  ASSERT_TRUE(c.send_raw(std::string(1000, '{') + "\n"));
  r = c.call("status", {{"service", "web"}});
  EXPECT_TRUE(r.value("ok", false)) << r.dump();

  // One byte over the limit is too large; exactly at the limit is still a request.
  ASSERT_TRUE(c.send_raw(std::string(max_request_bytes, ' ') + "x\n"));
  r = c.read_response();
  EXPECT_EQ(r["code"], "bad_request");
  EXPECT_EQ(r["error"], "request larger than 1 MiB");
  std::string at_limit = json{{"version", 1}, {"command", "status"}}.dump();
  at_limit += std::string(max_request_bytes - at_limit.size(), ' ');
  ASSERT_TRUE(c.send_raw(at_limit + "\n"));
  r = c.read_response();
  EXPECT_TRUE(r.value("ok", false)) << r.dump().substr(0, 200);
}

TEST_F(ControlServerTest, SeveralClientsGetTheirOwnAnswers) {
  start_server();
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<client>(socket_path_));
    ASSERT_TRUE(clients.back()->connected());
  }
  // Every client sends before any reads; each pipelines two requests in one write.
  for (size_t i = 0; i < clients.size(); ++i) {
    const std::string name = "missing-" + std::to_string(i);
    ASSERT_TRUE(clients[i]->send_raw(
        json{{"version", 1}, {"command", "status"}, {"args", {{"service", name}}}}.dump() + "\n" +
        json{{"version", 1}, {"command", "history"}, {"args", {{"limit", i + 1}}}}.dump() + "\n"));
  }
  for (size_t i = clients.size(); i-- > 0;) {
    json first = clients[i]->read_response();
    ASSERT_TRUE(first.is_object());
    EXPECT_EQ(first["code"], "not_found");
    EXPECT_NE(first["error"].get<std::string>().find("missing-" + std::to_string(i)),
              std::string::npos)
        << first.dump();
    json second = clients[i]->read_response();
    ASSERT_TRUE(second.value("ok", false)) << second.dump();
    EXPECT_EQ(second["result"].size(), 1u);  // only the "start" entry exists
  }
}

TEST_F(ControlServerTest, AClientThatNeverReadsIsDroppedWithoutBlockingOthers) {
  start_server();
  client slow(socket_path_);
  client other(socket_path_);
  ASSERT_TRUE(slow.connected());
  const std::string one = json{{"version", 1}, {"command", "status"}}.dump() + "\n";
  const size_t answer = json(other.call("status")).dump().size() + 1;
  // Enough requests that the answers exceed the 16 MiB outgoing limit several times over.
  const size_t n = 3 * control_server::max_outgoing_bytes / answer + 1;
  std::string burst;
  for (size_t i = 0; i < 1000; ++i) burst += one;
  bool writes_failed = false;
  for (size_t sent = 0; sent < n && !writes_failed; sent += 1000) writes_failed = !slow.send_raw(burst);

  // The other client is served, and the slow one was cut off: it reads at most what was in
  // flight before the drop, then the end of the stream.
  EXPECT_TRUE(other.call("status").value("ok", false));
  size_t got = 0;
  char buf[65536];
  ssize_t r;
  while ((r = ::recv(slow.fd(), buf, sizeof buf, 0)) > 0) got += static_cast<size_t>(r);
  EXPECT_TRUE(r == 0 || errno == ECONNRESET) << "ended by " << std::strerror(errno);
  EXPECT_LT(got, control_server::max_outgoing_bytes + (size_t{8} << 20));
  EXPECT_TRUE(other.call("status").value("ok", false));
}

TEST_F(ControlServerTest, BadArgumentsAreRejectedNamingTheFieldAndChangeNothing) {
  start_server();
  client c(socket_path_);
  const json before = status_result(c);
  struct bad_case {
    const char* command;
    json args;
    const char* field;
  };
  const std::vector<bad_case> cases = {
      {"switch", {{"service", "web"}, {"to", "purple"}}, "args.to"},
      {"switch", {{"service", "web"}, {"to", 3}}, "args.to"},
      {"switch", {{"service", "web"}, {"to", "green"}, {"drain_timeout", "3x"}}, "args.drain_timeout"},
      {"switch", {{"to", "green"}}, "args.service"},
      {"switch", {{"service", "web"}, {"to", "green"}, {"colour", "green"}}, "args.colour"},
      {"canary", {{"service", "web"}, {"to", "green"}, {"percent", 150}}, "args.percent"},
      {"canary", {{"service", "web"}, {"to", "green"}, {"percent", 1.234}}, "args.percent"},
      {"canary", {{"service", "web"}, {"to", "green"}, {"percent", "5"}}, "args.percent"},
      {"segment", {{"service", "web"}, {"op", "add"}, {"cidr", "10.0.0.1/8"}, {"to", "green"}}, "args.cidr"},
      {"segment", {{"service", "web"}, {"op", "insert"}, {"cidr", "10.0.0.0/8"}, {"to", "green"}}, "args.op"},
      {"pool", {{"service", "web"}, {"colour", "green"}, {"op", "add"}, {"addresses", "10.2.0.9"}}, "args.addresses"},
      {"pool", {{"service", "web"}, {"colour", "green"}, {"op", "add"}, {"addresses", json::array({"10.2.0.9", "x"})}}, "args.addresses[1]"},
      {"pool", {{"service", "web"}, {"colour", "green"}, {"op", "set-weight"}, {"addresses", json::array({"10.2.0.1"})}, {"weight", -1}}, "args.weight"},
      {"backend", {{"service", "web"}, {"address", "10.1.0.1"}, {"state", "broken"}}, "args.state"},
      {"history", {{"limit", "ten"}}, "args.limit"},
      {"apply", {{"config", 42}}, "args.config"},
  };
  for (const auto& bc : cases) {
    SCOPED_TRACE(std::string(bc.command) + " " + bc.args.dump());
    json r = c.call(bc.command, bc.args);
    ASSERT_TRUE(r.is_object());
    EXPECT_FALSE(r.value("ok", true));
    EXPECT_EQ(r["code"], "bad_request");
    EXPECT_EQ(r["error"].get<std::string>().rfind(bc.field, 0), 0u) << r["error"];
  }
  // Refused by the controller (conflict) or by the config validation (invalid).
  json r = c.call("canary", {{"service", "web"}, {"to", "blue"}, {"percent", 10}});
  EXPECT_EQ(r["code"], "conflict") << r.dump();  // blue is already active
  r = c.call("apply", {{"config", "services: [\n"}, {"file", "broken.yaml"}});
  EXPECT_EQ(r["code"], "invalid") << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("broken.yaml"), std::string::npos) << r.dump();

  EXPECT_EQ(status_result(c), before);
}

TEST_F(ControlServerTest, MutationsThroughTheSocket) {
  start_server();
  client c(socket_path_);
  json r = c.call("canary", {{"service", "web"}, {"to", "green"}, {"percent", 12.5}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  json s = status_result(c)["services"][0];
  EXPECT_DOUBLE_EQ(s["canary"]["percent"].get<double>(), 12.5);

  r = c.call("segment", {{"service", "web"}, {"op", "add"}, {"cidr", "203.0.113.0/24"}, {"to", "green"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  s = status_result(c)["services"][0];
  ASSERT_EQ(s["segments"].size(), 1u);
  EXPECT_EQ(s["segments"][0]["cidr"], "203.0.113.0/24");
  r = c.call("segment", {{"service", "web"}, {"op", "remove"}, {"cidr", "198.18.0.0/15"}, {"to", "green"}});
  EXPECT_EQ(r["code"], "not_found") << r.dump();

  r = c.call("pool", {{"service", "web"}, {"colour", "green"}, {"op", "add"},
                      {"addresses", json::array({"10.2.0.3"})}, {"weight", 2}, {"mac", "02:00:00:00:02:03"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(status_result(c)["services"][0]["colours"]["green"]["backends"].size(), 3u);

  r = c.call("backend", {{"service", "web"}, {"address", "10.1.0.2"}, {"state", "drain"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(status_result(c)["services"][0]["colours"]["blue"]["backends"][1]["state"], "drain");

  r = c.call("history", {{"limit", 2}});
  ASSERT_TRUE(r.value("ok", false));
  EXPECT_EQ(r["result"].size(), 2u);

  r = c.call("flows", {{"service", "web"}, {"colour", "blue"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r["result"]["live_flows"], 0);
  ASSERT_EQ(r["result"]["counts"].size(), 1u);
  EXPECT_EQ(r["result"]["counts"][0]["colour"], "blue");

  r = c.call("stats");
  EXPECT_TRUE(r.value("ok", false)) << r.dump();
}

TEST_F(ControlServerTest, SocketFileHasTheConfiguredMode) {
  config::control_socket s;
  s.path = socket_path_;
  start_server(s);
  struct stat st{};
  ASSERT_EQ(::lstat(socket_path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(::stat((dir_.path() + "/run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "created parent directory";
  stop_server();
  server_->close();
  EXPECT_NE(::access(socket_path_.c_str(), F_OK), 0) << "close() removes the socket";

  s.path = dir_.path() + "/other.sock";
  s.mode = 0640;
  server_ = std::make_unique<control_server>(*ctl_, s);
  ASSERT_TRUE(server_->open().ok());
  ASSERT_EQ(::lstat(s.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(ControlServerTest, StaleSocketIsReplacedButOtherFilesAreNot) {
  // A socket left behind by a dead daemon.
  fs::create_directories(dir_.path() + "/run");
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path_.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
  }
  start_server();
  client c(socket_path_);
  ASSERT_TRUE(c.connected());
  EXPECT_TRUE(c.call("status").value("ok", false));

  const std::string file = dir_.path() + "/not-a-socket";
  std::ofstream(file) << "keep me";
  config::control_socket s;
  s.path = file;
  control_server other(*ctl_, s);
  auto opened = other.open();
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error_message().find("control.socket"), std::string::npos);
  EXPECT_NE(opened.error_message().find("not a socket"), std::string::npos) << opened.error_message();
  std::ifstream in(file);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "keep me");
}

TEST_F(ControlServerTest, UnknownOwnerOrGroupIsAnErrorNamingTheField) {
  config::control_socket s;
  s.path = socket_path_;
  s.owner = "no-such-user-tandem";
  control_server a(*ctl_, s);
  auto r = a.open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message().rfind("control.owner", 0), 0u) << r.error_message();
  EXPECT_NE(::access(socket_path_.c_str(), F_OK), 0) << "nothing created";

  s.owner.clear();
  s.group = "no-such-group-tandem";
  control_server b(*ctl_, s);
  r = b.open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error_message().rfind("control.group", 0), 0u) << r.error_message();
}

// Exit code of a child that drops to nobody and connects: 0 = EACCES, 1 = connected, else 10+errno.
int connect_as_nobody(const std::string& path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(9);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) ::_exit(1);
    ::_exit(errno == EACCES ? 0 : 10 + errno);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_F(ControlServerTest, OwnerGroupAndModeDecideWhoMayConnect) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown and to setuid a child";
  // The temp dir is 0700 from mkdtemp: open it up so only the socket's own mode matters.
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);

  config::control_socket s;
  s.path = socket_path_;
  s.owner = "root";
  s.group = "0";
  s.mode = 0600;
  start_server(s);
  struct stat st{};
  ASSERT_EQ(::lstat(socket_path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(connect_as_nobody(socket_path_), 0) << "nobody must get EACCES";
  stop_server();
  server_.reset();

  // Control: the same path owned by nobody's group with 0660 lets nobody in.
  s.owner = "root";
  s.group = "nogroup";
  s.mode = 0660;
  start_server(s);
  ASSERT_EQ(::lstat(socket_path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_EQ(connect_as_nobody(socket_path_), 1) << "a member of the group may connect";
}

// --- tandemctl, through its binary --------------------------------------------------------------

std::string tandemctl_path() {
  char exe[PATH_MAX] = {};
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return {};
  const fs::path p = fs::path(std::string(exe, static_cast<size_t>(n))).parent_path() / ".." /
                     "control" / "tandemctl";
  return fs::exists(p) ? fs::canonical(p).string() : std::string();
}

struct run_result {
  int code = -1;
  std::string output;  // stdout and stderr
};

run_result run(const std::string& args) {
  run_result r;
  const std::string cmd = tandemctl_path() + " " + args + " 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  const int st = ::pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(Tandemctl, LocalValidationFailsWithExitCode2) {
  if (tandemctl_path().empty()) GTEST_SKIP() << "tandemctl is not built next to this test";
  // Nothing listens on this socket: exit 2 must come from the argument checks, before connecting.
  const std::string sock = "--socket /nonexistent/tandem.sock ";
  run_result r = run(sock + "switch web --to purple");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--to: 'purple' is not a colour"), std::string::npos) << r.output;

  r = run(sock + "canary web --to green --percent 150");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--percent"), std::string::npos) << r.output;

  r = run(sock + "segment web add 10.0.0.1/8 --to green");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("10.0.0.0/8"), std::string::npos) << r.output;

  r = run(sock + "pool web green add 10.2.0.x");
  EXPECT_EQ(r.code, 2) << r.output;
  r = run(sock + "switch web --to green --drain-timeout 3x");
  EXPECT_EQ(r.code, 2) << r.output;
  r = run(sock + "frobnicate");
  EXPECT_EQ(r.code, 2) << r.output;

  r = run(sock + "status");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot connect to /nonexistent/tandem.sock"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("is tandemd running?"), std::string::npos) << r.output;
}

TEST_F(ControlServerTest, TandemctlTalksToTheServer) {
  if (tandemctl_path().empty()) GTEST_SKIP() << "tandemctl is not built next to this test";
  start_server();
  const std::string sock = "--socket " + socket_path_ + " ";

  run_result r = run(sock + "--json status web");
  ASSERT_EQ(r.code, 0) << r.output;
  json st = json::parse(r.output);
  EXPECT_EQ(st["services"][0]["name"], "web");

  r = run(sock + "status");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("blue (active)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("10.2.0.2"), std::string::npos) << r.output;

  r = run(sock + "switch nope --to green");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("unknown service 'nope'"), std::string::npos) << r.output;

  r = run(sock + "switch web --to green");
  EXPECT_EQ(r.code, 0) << r.output;
  r = run(sock + "switch web --to green");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("conflict"), std::string::npos) << r.output;

  // No workers, so nothing is live: blue is drained at once.
  r = run(sock + "wait-drained web blue --timeout 5s");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("web: blue drained"), std::string::npos) << r.output;

  r = run(sock + "history --limit 5");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("switch web --to green"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tandem
