// The control socket: a Unix stream socket speaking the line protocol of control/protocol.h.
// Single-threaded: tandemd's control thread calls poll_once() and controller::tick() in a loop.
// Every socket is non-blocking and every client has its own read and write buffer, so a slow or
// stuck client never holds up the others.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "control/config.h"
#include "control/controller.h"
#include "dataplane/result.h"

namespace tandem {

class control_server {
 public:
  static constexpr size_t max_outgoing_bytes = size_t{16} << 20;  // then the client is dropped
  static constexpr size_t max_clients = 256;

  control_server(controller& ctl, config::control_socket settings);
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  // Creates the socket: removes a stale socket file (never anything else), creates the parent
  // directory if missing (0755), binds, applies owner, group and mode, listens. Errors name the
  // config field (control.socket, control.owner, control.group, control.mode).
  status open();

  // Waits up to timeout_ms for activity, then accepts, reads, answers and writes what it can.
  void poll_once(int timeout_ms);

  // Closes every connection and the listening socket and removes the socket file (if it is
  // still the one open() created). Safe to call more than once.
  void close();

  const std::string& path() const { return settings_.path; }
  size_t client_count() const { return clients_.size(); }

 private:
  struct client {
    int fd = -1;
    actor who;
    std::string in;          // bytes of the current, incomplete line
    bool discarding = false; // inside an oversized line: drop bytes up to the next newline
    std::string out;         // response bytes not yet written
    size_t out_offset = 0;
    bool read_closed = false;
    bool dead = false;
  };

  void accept_clients();
  void read_from(client& c);
  void consume(client& c, const char* data, size_t n);
  void handle_line(client& c, std::string& line);
  void queue(client& c, std::string bytes);
  void flush(client& c);
  void drop(client& c, const char* why);

  controller& ctl_;
  config::control_socket settings_;
  int listen_fd_ = -1;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::vector<std::unique_ptr<client>> clients_;
};

}  // namespace tandem
