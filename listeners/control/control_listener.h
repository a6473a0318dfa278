// listeners/control/control_listener.h — the daemon's control socket, on the master loop.
//
// A Unix stream socket (mode 0600: only the daemon's user may connect) with one multishot
// accept. Each client sends request lines (listeners/control/protocol.h); each complete
// line is parsed and handed to the `handler`, which answers through the Reply it is given —
// at once or later (after asking other loops). One request at a time per client: the next
// line is read only after the reply went out. A slow or silent client costs one connection
// slot and is cut after `idle_timeout_ms`; it never blocks other clients or the loop.
// Over-long lines and garbage get an ERR reply, then the connection is closed.
//
// Loop thread only; a Reply too must be called on this loop (the handler posts its answer
// back here when another thread made it). A connection is freed once none of its
// operations is in flight; a reply may still be pending then (the handler asked an IO
// worker, the daemon is stopping): the Reply finds its connection by id, through a weak
// reference to the listener, and is dropped when either has gone. When the loop stops, a
// client still waiting for its reply is told so before its connection closes. Accepting is
// core::Acceptor's: out of descriptors (EMFILE and friends) it retries after a pause
// instead of spinning the loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "core/acceptor.h"
#include "core/loop.h"
#include "core/timers.h"
#include "listeners/control/protocol.h"

namespace ringmail::control {

class ControlListener {
 public:
  using Reply = absl::AnyInvocable<void(Response) &&>;
  using Handler = absl::AnyInvocable<void(const Request&, Reply)>;

  struct Options {
    std::vector<std::string> socket_paths;
    int64_t max_connections = 16;
    uint64_t idle_timeout_ms = 60'000;
  };

  ControlListener(core::Loop& loop, Options options, Handler handler);
  ~ControlListener();
  ControlListener(const ControlListener&) = delete;
  ControlListener& operator=(const ControlListener&) = delete;

  // Binds every socket path (an existing socket file there is replaced; any other file is
  // an error) and starts accepting. The socket is bound in a private 0700 directory beside
  // the path, made 0600, then renamed into place: never reachable by others, not even
  // for a moment, and without touching the process-wide umask.
  absl::Status Listen();
  size_t connection_count() const { return connections_.size(); }
  // A reload's Control_Listener.max_connections: for clients that connect from now on.
  void SetMaxConnections(int64_t n) { options_.max_connections = n; }

 private:
  class Connection;
  // The handler of every socket path's core::Acceptor (which owns the socket).
  void AcceptDone(core::Accepted a);
  void Closed(uint64_t id);
  // A reply reaching its connection, if that is still there (see the contract above).
  void Deliver(uint64_t id, Response response);

  core::Loop& loop_;
  Options options_;
  Handler handler_;
  std::vector<std::unique_ptr<core::Acceptor>> acceptors_;
  std::vector<std::string> bound_paths_;  // unlinked when the listener goes
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> connections_;  // by id
  uint64_t next_id_ = 1;
  // What a pending Reply holds instead of the listener: empty once the listener has gone.
  std::shared_ptr<ControlListener*> self_ = std::make_shared<ControlListener*>(this);
};

}  // namespace ringmail::control
