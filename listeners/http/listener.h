// listeners/http/listener.h — the HTTP front door on one loop (injection API, metrics,
// queue summary, health check).
//
// Contract
// - One HttpListener per loop of the HTTP_Listener's pool, created, used and destroyed on
//   that loop's thread, like the ESMTP listener: its own SO_REUSEPORT socket per Listen
//   address with one multishot accept (an accepted fd never crosses loops), connections
//   reading by multishot recv from the loop's provided-buffer ring group kBufferGroup (the
//   ESMTP listener uses group 1 on the same loop), ring sends, timers for deadlines.
// - Messages are made durable through the SpoolWriter of the same loop (ringmaild creates
//   one per loop and shares it with the ESMTP listener there): the HTTP reply is sent only
//   from the commit's completion.
// - max_connections is daemon-wide (HttpShared, touched once per connection); the excess
//   connection hears 503 and is closed.
// - A connection is owned by its listener and freed only after its last ring operation and
//   its last spool commit have completed (STYLE.md principle 3). A hook answer (metrics,
//   queues) does not hold a connection: it comes back by Post to this loop and finds the
//   connection by id, or nothing if it has gone.
// - Drain() (SIGTERM): stop accepting and listening (new connections are refused, not
//   queued); idle connections close, a request in progress is answered with
//   "Connection: close". `drained` is called once no connection is left.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/address.h"
#include "core/acceptor.h"
#include "core/buffers.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/message.h"
#include "listeners/http/inject_request.h"
#include "listeners/http/injection.h"
#include "listeners/http/responses.h"
#include "listeners/http/settings.h"
#include "spool/group_commit.h"

namespace ringmail::listeners::http {

class Connection;

inline constexpr uint16_t kBufferGroup = 2;

// What the daemon answers for GET /metrics and GET /api/v1/queues.
struct HookResponse {
  int status = 200;
  std::string content_type;
  std::string body;
};
using HookReply = absl::AnyInvocable<void(HookResponse) &&>;

// The daemon's side of the endpoints the listener cannot answer alone (listeners never
// include tools/). Each hook is called on a listener loop, possibly on several loops at
// once, and must call `reply` exactly once from any thread — typically after posting to the
// master loop — or drop it, in which case the request ends with 503 after kHookTimeoutMs.
// An empty hook answers 503 at once.
struct HttpHooks {
  std::function<void(HookReply)> metrics;  // Prometheus text exposition
  std::function<void(HookReply)> queues;   // JSON object
  // Runs a job on another thread (the daemon's IO pool); false when it cannot take it now.
  // An injection's messages (templates, MIME) are built there, so that a big request does
  // not hold the loop's other connections. Empty, or false: built on the loop.
  std::function<bool(absl::AnyInvocable<void() &&> job)> run_off_loop;
};
inline constexpr uint64_t kHookTimeoutMs = 10'000;

// Daemon-wide counters (relaxed atomics, bumped once per connection or request).
struct HttpCounters {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_refused{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> responses_2xx{0};
  std::atomic<uint64_t> responses_4xx{0};
  std::atomic<uint64_t> responses_5xx{0};
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> recipients{0};
  std::atomic<uint64_t> message_bytes{0};
  std::atomic<uint64_t> commit_errors{0};
};

// Shared by every loop's HttpListener. Thread-safe.
class HttpShared {
 public:
  bool TryAdmit(int64_t max_connections);
  void Release();
  int64_t connections() const { return connections_.load(std::memory_order_relaxed); }
  HttpCounters& counters() { return counters_; }
  // The listener's own series, in Prometheus text, appended to the daemon's /metrics.
  std::string MetricsText() const;

 private:
  std::atomic<int64_t> connections_{0};
  HttpCounters counters_;
};

class HttpListener {
 public:
  HttpListener(core::Loop& loop, HttpShared& shared, spool::SpoolWriter& spool, core::EventLog* log,
               std::shared_ptr<const HttpSettings> settings,
               std::shared_ptr<const HttpHooks> hooks);
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // Opens the sockets (SO_REUSEPORT) and arms their multishot accepts.
  absl::Status Listen(const std::vector<config::NetAddress>& addresses);
  const std::vector<uint16_t>& bound_ports() const { return bound_ports_; }
  // New connections use these settings; existing ones keep theirs.
  void UpdateSettings(std::shared_ptr<const HttpSettings> settings);
  void Drain(std::function<void()> drained);
  size_t connection_count() const { return connections_.size(); }

  // ---- for Connection (same loop) ----
  core::Loop& loop() { return loop_; }
  core::BufferRing& buffers() { return *buffers_; }
  spool::SpoolWriter& spool() { return spool_; }
  core::MessageIdGenerator& ids() { return ids_; }
  core::EventLog* log() { return log_; }
  HttpShared& shared() { return shared_; }
  InjectDecoder& decoder(uint64_t body_bytes_max);
  // Bytes of built messages this loop's requests hold until the spool answers, charged as
  // they are built (on the loop or the pool) and given back as each commit is answered.
  // Bounds what many concurrent injections keep in memory together.
  const std::shared_ptr<InjectBudget>& inject_budget() const { return inject_budget_; }
  bool draining() const { return draining_; }
  // The Date: header value, formatted at most once per second.
  const std::string& DateHeader();
  // Runs the hook for `endpoint`; the answer reaches Connection::HookDone(seq, ...) of the
  // connection `connection_id` on this loop, if it still exists then.
  void CallHook(Endpoint endpoint, uint64_t connection_id, uint64_t seq);
  // Builds `request`'s messages off the loop when the hooks can (HttpHooks::run_off_loop):
  // the plan reaches Connection::PlanDone(seq, ...) of `connection_id` on this loop, if it
  // still exists then. False: not taken,
  // `request` and `context` left as they were: plan on the loop.
  bool PlanOffLoop(InjectRequest& request, InjectContext& context,
                   std::shared_ptr<const HttpSettings> settings, uint64_t connection_id,
                   uint64_t seq);
  void ConnectionClosed(Connection* c);
  // The token of the running generation. Every request is checked against it, not against
  // the settings its connection was accepted with: a token rotated because it leaked is
  // revoked on keep-alive connections too (session 12's reload audit, F3).
  const std::string& auth_token() const { return settings_->auth_token; }

 private:
  // The handler of every Listen address's core::Acceptor (which owns the socket and backs
  // off on EMFILE and friends); `tls`: that address speaks TLS from the first byte (HTTPS).
  void AcceptDone(bool tls, core::Accepted a);
  void CloseAcceptors();
  void MaybeDrained();
  void HookAnswered(uint64_t connection_id, uint64_t seq, HookResponse response);
  void PlanAnswered(uint64_t connection_id, uint64_t seq, absl::StatusOr<InjectionPlan> plan);

  core::Loop& loop_;
  HttpShared& shared_;
  spool::SpoolWriter& spool_;
  core::EventLog* log_;
  std::shared_ptr<const HttpSettings> settings_;
  std::shared_ptr<const HttpHooks> hooks_;
  std::unique_ptr<core::BufferRing> buffers_;
  core::MessageIdGenerator ids_;
  std::unique_ptr<InjectDecoder> decoder_;
  uint64_t decoder_capacity_ = 0;
  std::shared_ptr<InjectBudget> inject_budget_ = std::make_shared<InjectBudget>();
  std::vector<std::unique_ptr<core::Acceptor>> acceptors_;
  std::vector<uint16_t> bound_ports_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> connections_;  // by id
  uint64_t next_connection_id_ = 1;
  bool draining_ = false;
  std::function<void()> drained_;
  uint64_t date_second_ = 0;
  std::string date_;
};

}  // namespace ringmail::listeners::http
