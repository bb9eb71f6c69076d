#include "control/control_server.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "control/protocol.h"

namespace tandem {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<unsigned long> parse_id(const std::string& s) {
  if (!all_digits(s) || s.size() > 10) return std::nullopt;
  const unsigned long v = std::stoul(s);
  if (v >= std::numeric_limits<uint32_t>::max()) return std::nullopt;  // (uid_t)-1 is "no change"
  return v;
}

size_t lookup_buffer_size(int name) {
  const long n = sysconf(name);
  return n > 0 ? static_cast<size_t>(n) : 16384;
}

result<uid_t> resolve_user(const std::string& owner) {
  if (all_digits(owner)) {
    auto v = parse_id(owner);
    if (!v) return make_error("control.owner: uid '" + owner + "' is out of range");
    return static_cast<uid_t>(*v);
  }
  std::vector<char> buf(lookup_buffer_size(_SC_GETPW_R_SIZE_MAX));
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    const int rc = getpwnam_r(owner.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (size_t{1} << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0) return make_error("control.owner: cannot look up user '" + owner + "': " + errno_text(rc));
    if (!found) return make_error("control.owner: no such user '" + owner + "'");
    return pw.pw_uid;
  }
}

result<gid_t> resolve_group(const std::string& name) {
  if (all_digits(name)) {
    auto v = parse_id(name);
    if (!v) return make_error("control.group: gid '" + name + "' is out of range");
    return static_cast<gid_t>(*v);
  }
  std::vector<char> buf(lookup_buffer_size(_SC_GETGR_R_SIZE_MAX));
  for (;;) {
    struct group gr{};
    struct group* found = nullptr;
    const int rc = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (size_t{1} << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0) return make_error("control.group: cannot look up group '" + name + "': " + errno_text(rc));
    if (!found) return make_error("control.group: no such group '" + name + "'");
    return gr.gr_gid;
  }
}

// mkdir -p for the socket's directory; new directories get 0755.
status make_parent_dirs(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return ok_status();
  const std::string dir = path.substr(0, slash);
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) == 0) {
      ::chmod(part.c_str(), 0755);  // whatever the umask
      continue;
    }
    if (errno == EEXIST) {
      struct stat st{};
      if (::stat(part.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
      return make_error("control.socket: cannot create directory " + part +
                        ": it exists and is not a directory");
    }
    return make_error("control.socket: cannot create directory " + part + ": " + errno_text(errno));
  }
  return ok_status();
}

const char* describe_mode(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  return "not a socket";
}

}  // namespace

control_server::control_server(controller& ctl, config::control_socket settings)
    : ctl_(ctl), settings_(std::move(settings)) {}

control_server::~control_server() { close(); }

status control_server::open() {
  if (listen_fd_ >= 0) return make_error("control.socket: already open");
  const std::string& path = settings_.path;
  if (path.empty()) return make_error("control.socket: the path is empty");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return make_error("control.socket: '" + path + "' is longer than " +
                      std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (settings_.mode > 07777)
    return make_error("control.mode: " + std::to_string(settings_.mode) + " is not a file mode");

  // Resolve names before touching the file system so a typo leaves nothing behind.
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  if (!settings_.owner.empty()) {
    auto u = resolve_user(settings_.owner);
    if (!u) return error{u.error_message()};
    uid = *u;
  }
  if (!settings_.group.empty()) {
    auto g = resolve_group(settings_.group);
    if (!g) return error{g.error_message()};
    gid = *g;
  }

  // A socket file left by a previous run is removed; anything else is somebody's data.
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error("control.socket: " + path + " exists and is " + describe_mode(st.st_mode) +
                        ", not a socket; not removing it");
    if (::unlink(path.c_str()) != 0)
      return make_error("control.socket: cannot remove stale socket " + path + ": " +
                        errno_text(errno));
  } else if (errno != ENOENT) {
    return make_error("control.socket: cannot check " + path + ": " + errno_text(errno));
  }
  if (auto d = make_parent_dirs(path); !d) return d;

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error("control.socket: socket(): " + errno_text(errno));
  auto fail = [&](std::string message) -> status {
    ::close(fd);
    ::unlink(path.c_str());
    return make_error(std::move(message));
  };
  // Created owner-only, then opened up with chmod: nobody else can connect in between.
  const mode_t old_umask = ::umask(0177);
  const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) {
    ::close(fd);
    return make_error("control.socket: cannot bind " + path + ": " + errno_text(bind_errno));
  }
  if ((uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1)) &&
      ::chown(path.c_str(), uid, gid) != 0) {
    const int e = errno;
    const char* field = uid != static_cast<uid_t>(-1) ? "control.owner" : "control.group";
    return fail(std::string(field) + ": cannot chown " + path + " to " +
                (settings_.owner.empty() ? "-" : settings_.owner) + ":" +
                (settings_.group.empty() ? "-" : settings_.group) + ": " + errno_text(e));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(settings_.mode)) != 0)
    return fail("control.mode: cannot chmod " + path + ": " + errno_text(errno));
  if (::listen(fd, 64) != 0) return fail("control.socket: listen(): " + errno_text(errno));
  if (::lstat(path.c_str(), &st) != 0)
    return fail("control.socket: " + path + " vanished after bind: " + errno_text(errno));
  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;
  listen_fd_ = fd;
  spdlog::info("control socket {} (mode {:04o}{}{})", path, settings_.mode,
               settings_.owner.empty() ? "" : ", owner " + settings_.owner,
               settings_.group.empty() ? "" : ", group " + settings_.group);
  return ok_status();
}

void control_server::close() {
  for (auto& c : clients_)
    if (c->fd >= 0) ::close(c->fd);
  clients_.clear();
  if (listen_fd_ < 0) return;
  ::close(listen_fd_);
  listen_fd_ = -1;
  // Only remove the file if it is still ours (another tandemd may have replaced it).
  struct stat st{};
  if (::lstat(settings_.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == socket_dev_ && st.st_ino == socket_ino_)
    ::unlink(settings_.path.c_str());
}

void control_server::poll_once(int timeout_ms) {
  if (listen_fd_ < 0) {
    if (timeout_ms > 0) ::poll(nullptr, 0, timeout_ms);
    return;
  }
  std::vector<pollfd> fds;
  fds.reserve(clients_.size() + 1);
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const auto& c : clients_) {
    short events = 0;
    if (!c->read_closed) events |= POLLIN;
    if (c->out.size() > c->out_offset) events |= POLLOUT;
    fds.push_back({c->fd, events, 0});
  }
  const int n = ::poll(fds.data(), fds.size(), timeout_ms);
  if (n < 0) {
    if (errno != EINTR) spdlog::warn("control socket: poll: {}", errno_text(errno));
    return;
  }
  if (n == 0) return;

  // Clients accepted below are not in `fds`; they are polled next time.
  const size_t known = clients_.size();
  for (size_t i = 0; i < known; ++i) {
    client& c = *clients_[i];
    const short re = fds[i + 1].revents;
    if (re & POLLNVAL) {
      c.dead = true;
      continue;
    }
    if (re & (POLLIN | POLLHUP | POLLERR)) read_from(c);
    if (!c.dead && (re & POLLOUT)) flush(c);
  }
  if (fds[0].revents & POLLIN) accept_clients();

  for (auto& c : clients_)
    if (!c->dead && c->read_closed && c->out.size() == c->out_offset) c->dead = true;
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(),
                                [](const std::unique_ptr<client>& c) {
                                  if (c->dead) ::close(c->fd);
                                  return c->dead;
                                }),
                 clients_.end());
}

void control_server::accept_clients() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        spdlog::warn("control socket: accept: {}", errno_text(errno));
      return;
    }
    if (clients_.size() >= max_clients) {
      const std::string line = encode_line(error_response(
          "internal", "too many control connections (" + std::to_string(max_clients) + ")"));
      (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      spdlog::warn("control socket: refused a connection: {} clients connected", max_clients);
      continue;
    }
    auto c = std::make_unique<client>();
    c->fd = fd;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c->who.uid = static_cast<int>(cred.uid);
      c->who.pid = static_cast<int>(cred.pid);
    }
    clients_.push_back(std::move(c));
  }
}

void control_server::read_from(client& c) {
  char buf[65536];
  // Bounded per poll round so one busy client cannot starve the others.
  for (int round = 0; round < 32 && !c.dead && !c.read_closed; ++round) {
    const ssize_t n = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      consume(c, buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      // End of input: a last line without '\n' still counts as a request.
      c.read_closed = true;
      if (!c.discarding && !c.in.empty()) handle_line(c, c.in);
      c.in.clear();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    drop(c, ("read failed: " + errno_text(errno)).c_str());
    return;
  }
}

void control_server::consume(client& c, const char* data, size_t n) {
  size_t i = 0;
  while (i < n && !c.dead) {
    const char* nl = static_cast<const char*>(std::memchr(data + i, '\n', n - i));
    if (c.discarding) {
      if (!nl) return;  // still inside the oversized line
      c.discarding = false;
      i = static_cast<size_t>(nl - data) + 1;
      continue;
    }
    const size_t take = nl ? static_cast<size_t>(nl - (data + i)) : n - i;
    if (c.in.size() + take > max_request_bytes) {
      // Answer once, then skip to the end of this line; the connection stays usable.
      queue(c, encode_line(error_response("bad_request", "request larger than 1 MiB")));
      c.in.clear();
      c.in.shrink_to_fit();
      c.discarding = true;
      continue;  // finds the same newline (if any) and resumes after it
    }
    c.in.append(data + i, take);
    if (!nl) return;
    i += take + 1;
    handle_line(c, c.in);
    c.in.clear();
  }
}

void control_server::handle_line(client& c, std::string& line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.find_first_not_of(" \t") == std::string::npos) return;  // blank: not a request
  request_info info;
  const nlohmann::json response = handle_request(ctl_, line, c.who, &info);
  if (info.changes_state) {
    if (info.ok)
      spdlog::info("control: uid={} pid={} command={} ok=true", c.who.uid, c.who.pid,
                   info.command);
    else
      spdlog::warn("control: uid={} pid={} command={} ok=false error={}", c.who.uid, c.who.pid,
                   info.command, response.value("error", ""));
  }
  queue(c, encode_line(response));
}

void control_server::queue(client& c, std::string bytes) {
  if (c.dead) return;
  if (c.out_offset == c.out.size()) {
    c.out.clear();
    c.out_offset = 0;
  }
  c.out += bytes;
  flush(c);
  if (!c.dead && c.out.size() - c.out_offset > max_outgoing_bytes)
    drop(c, "it does not read its responses (more than 16 MiB pending)");
}

void control_server::flush(client& c) {
  while (!c.dead && c.out_offset < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out_offset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EPIPE) {
      c.dead = true;  // the client went away; nothing to report
      return;
    }
    drop(c, ("write failed: " + errno_text(errno)).c_str());
    return;
  }
  // Compact once the written prefix dominates, so the buffer does not grow without bound.
  if (c.out_offset == c.out.size()) {
    c.out.clear();
    c.out_offset = 0;
  } else if (c.out_offset > (size_t{1} << 20) && c.out_offset * 2 > c.out.size()) {
    c.out.erase(0, c.out_offset);
    c.out_offset = 0;
  }
}

void control_server::drop(client& c, const char* why) {
  if (c.dead) return;
  spdlog::warn("control: dropping client uid={} pid={}: {}", c.who.uid, c.who.pid, why);
  c.dead = true;
}

}  // namespace tandem
