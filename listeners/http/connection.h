// listeners/http/connection.h — one HTTP/1.1 connection on one loop: multishot recv into
// the request parser, one request handled at a time (pipelined requests wait in the input
// stash, so responses leave in request order), responses batched into ring sends,
// deadlines, spool commits for injections, and the close lifecycle.
//
// Lifecycle (STYLE.md principle 3): running → closing (recv and send cancelled, timer
// disarmed) → once no ring operation and no spool commit is in flight, the fd is closed by
// a ring CLOSE → in its completion the listener frees the connection. A pending hook answer
// or injection plan holds nothing: it finds the connection by id or is dropped.
//
// Injection: the body is decoded on the loop (simdjson), then its messages (templates, MIME)
// are built on the daemon's IO pool when it lends a thread (HttpHooks::run_off_loop; else
// here), so that a big request does not hold the loop's other connections: 6 requests of
// 18 MB held a new SMTP greeting on the same loop up to 43-74 ms built here, 5-10 ms built
// there (bench/http_inject_stall.py). The plan comes back as a posted task, and its
// messages are committed here.
//
// Deadlines: idle_timeout between requests (and for a client that stops reading our
// responses); request_timeout from a request's first byte to its last (408, then close);
// kHookTimeoutMs for the daemon's answer to /metrics or /api/v1/queues (503). Building an
// injection's messages and a spool commit have no deadline: both always complete.
//
// HTTPS (a Listen with tls = "implicit"): a tls::TlsSession (server role, the settings'
// context) sits between the ring and the parser. Received ciphertext is fed to it and
// decrypted at once into the stash (so the engine holds less than a record plus one recv),
// the stash's bound and back-pressure apply to the plaintext as before, and responses are
// encrypted on their way to the send. The handshake runs under tls_handshake_timeout from
// accept, and later ciphertext starts request_timeout as plaintext does; a failed handshake
// closes the connection. A connection refused for the connection limit is closed without
// a handshake (no 503 can be said before it).
// Loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/loop.h"
#include "core/timers.h"
#include "listeners/http/injection.h"
#include "listeners/http/request_parser.h"
#include "listeners/http/responses.h"
#include "listeners/http/settings.h"
#include "spool/group_commit.h"
#include "tls/session.h"

namespace ringmail::listeners::http {

class HttpListener;
struct HookResponse;

class Connection {
 public:
  Connection(HttpListener& listener, uint64_t id, int fd, std::string peer_ip, uint16_t peer_port,
             std::shared_ptr<const HttpSettings> settings, bool tls = false);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Start();
  // Answers `response` and closes without reading (a limit refused the client).
  void Refuse(const HttpResponse& response);
  void Shutdown();  // drain: finish the request in progress, then close
  void Abort();     // loop stopping: close now
  void HookDone(uint64_t seq, HookResponse response);
  // The messages of the injection in progress, built off the loop (HttpListener::PlanOffLoop).
  void PlanDone(uint64_t seq, absl::StatusOr<InjectionPlan> plan);
  uint64_t id() const { return id_; }
  bool admitted() const { return admitted_; }
  void set_admitted(bool admitted) { admitted_ = admitted; }

 private:
  enum class Phase : uint8_t { kReading, kHook, kPlanning, kCommitting };
  struct PendingCommit {
    spool::CommitRequest request;
    std::vector<std::string> recipients;
    std::string from;
    uint64_t size = 0;
  };

  void Pump();
  bool FeedParser();
  void OnHeaders();
  void OnMessage();
  void StartInject(std::string body);
  void UsePlan(absl::StatusOr<InjectionPlan> plan, bool posted);
  void CommitAll(InjectionPlan plan);
  void CommitDone(spool::CommitRequest& request);
  void FinishInject();
  void LogReception(const PendingCommit& c, int code);
  void Respond(const HttpResponse& response);
  void EndRequest();
  void ArmRecv();
  void RecvDone(core::Operation& op, core::IoResult r);
  // TLS: feeds received ciphertext, runs the handshake, decrypts into the stash; false
  // when the connection must close (a failed handshake, garbage, an alert).
  bool TlsInput(std::string_view ciphertext);
  void TlsOutput();  // output_ encrypted (once established) and handshake bytes → tls_out_
  void StopReading();
  void Flush();
  void StartSend();
  void SendDone(core::Operation& op, core::IoResult r);
  void ArmDeadline();
  void DeadlineFired(core::Timer& t);
  void BeginClose();
  void MaybeFinishClose();
  void CloseDone(core::Operation& op, core::IoResult r);
  std::string_view Pending() const { return std::string_view(stash_).substr(stash_used_); }

  HttpListener& listener_;
  const uint64_t id_;
  int fd_;
  std::string peer_ip_;
  uint16_t peer_port_;
  std::shared_ptr<const HttpSettings> settings_;
  RequestParser parser_;

  core::Operation recv_op_;
  core::Operation send_op_;
  core::Operation close_op_;
  core::Timer deadline_;

  Phase phase_ = Phase::kReading;
  std::optional<Endpoint> endpoint_;   // of the request being read
  std::optional<HttpResponse> early_;  // decided at the headers, sent at the end
  bool head_request_ = false;
  Persistence persistence_ = Persistence::kKeepAlive;
  uint64_t request_started_ms_ = 0;  // 0: no request in progress
  uint64_t started_ms_ = 0;          // accepted: the TLS handshake's deadline counts from here
  uint64_t hook_seq_ = 0;
  uint64_t plan_seq_ = 0;
  uint64_t hook_started_ms_ = 0;

  std::vector<std::unique_ptr<PendingCommit>> commits_;
  size_t commits_in_flight_ = 0;
  BudgetCharge commit_charge_;  // the committing request's messages, given back per answer
  std::vector<RecipientFailure> failures_;

  std::string stash_;      // received bytes not yet parsed
  size_t stash_used_ = 0;  // of stash_, parsed already
  std::string sending_;    // bytes of the send in flight
  size_t sent_ = 0;        // of sending_
  std::string output_;     // responses produced while a send is in flight
  std::unique_ptr<tls::TlsSession> tls_;  // HTTPS only
  std::string tls_out_;                   // ciphertext waiting for the next send
  bool recv_armed_ = false;
  bool recv_cancel_sent_ = false;
  bool peer_closed_ = false;  // the client shut its side: answer what we have, then close
  bool close_after_send_ = false;
  bool closing_ = false;
  bool close_submitted_ = false;
  bool admitted_ = false;
  bool draining_ = false;
  bool tls_wanted_ = false;  // accepted on an HTTPS socket
};

}  // namespace ringmail::listeners::http
