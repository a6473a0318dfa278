// delivery/smtp_client.h — one outbound SMTP connection on the ring: finds the hosts of a
// route, connects, drives a ClientMachine, streams bodies from the spool, reports the
// result of every transaction.
//
// Made by the Engine (delivery/engine.h) with a first Work, on the Engine's delivery loop,
// and touched only there. It counts as one outbound connection from Start() until it
// tells its Owner ClientClosed(). The Owner (the Engine) outlives it and frees it only
// after ClientClosed(), never from inside an Owner call.
//
// The life of one client:
//   hosts      kSmarthost/kLiteral: the route's hops in order; kMx: ResolveMx (preference
//              order, equal preferences shuffled; implicit MX) — a permanent DNS answer
//              (NXDOMAIN, null MX, bad name) fails the Work, a temporary one defers it.
//   addresses  each host's A then AAAA records (ResolveHost), or the literal itself.
//              An address and port of this daemon's own listeners (settings.self) is
//              skipped, and for an MX host ends the list; when that leaves nothing tried,
//              the Work fails 5.4.6 "loops back to myself" (delivery/self_endpoints.h).
//   connect    socket() + IORING_OP_CONNECT linked to IORING_OP_LINK_TIMEOUT
//              (smtp_connect_timeout). Refused, unreachable or timed out: the next address,
//              then the next host, at most `addresses_max` connects per client.
//   session    a ClientMachine per connection: recv re-armed for the whole session (a 421
//              may come at any time), one send in flight, RFC 5321 deadlines on a loop
//              Timer from machine.deadline() and the config's smtp_*_timeout values.
//   work       at each kReady: the carried Work, else Owner::NextWork() while fewer than
//              `deliveries_max` transactions ran on this connection, else QUIT. The
//              content is read from the segment file (BodyFiles, BodyReader) chunk by chunk
//              as the send queue drains, through the DotStuffer for DATA.
//   idle       NextWork() had nothing: Owner::IdleMs() says how long the connection may
//              wait for more (outbound_idle_timeout; 0: QUIT now). Parked, it sends nothing
//              (no RSET, no NOOP) and keeps its recv armed; Wake() (the Owner has new work
//              for the destination) asks NextWork() again, CloseIdle() or the idle deadline
//              (from the first park, not renewed by a Wake() that found nothing) QUITs. A
//              421 or EOF while parked ends the session with no Work to report.
//   moving     between transactions (parked, or inside NextWork()) the Owner may hand the
//              connection to another destination whose session would be the same (the
//              Engine's route key): it changes `tag` and set_deliveries_max(); the client
//              keeps its route, hosts and socket, and deliveries() goes on counting the
//              transactions of the socket. Never while a Work is carried.
//   results    Owner::WorkDone() per transaction, one RecipientResult per recipient.
//              When the connection fails (421, timeout, lost, protocol error) the recipients
//              it left undecided are carried to the next address; when no address is left,
//              they are reported as temporary failures (permanent when the last server
//              refused us with a 5xx greeting or EHLO/HELO).
//   close      like listeners/esmtp/session.cc: cancel what is in flight, wait until every
//              operation is idle, close the socket with IORING_OP_CLOSE, then the next
//              address or ClientClosed().
//
// STARTTLS (RFC 3207): settings.machine.tls is the destination's policy. When the machine
// asks for the handshake (kStartTls), a tls::TlsSession (client role, the shared context
// in settings.tls_client) runs over the same recv/send operations: received bytes are fed
// to it as ciphertext, its output is queued like any other send, and after the handshake
// every command and body byte is encrypted on its way to the send queue. No other socket
// I/O and no other event source: the ring's recv completion drives the handshake.
//   - verify: the chain must lead to a trust anchor (system CA store + tls_ca_file) and the
//     certificate must name the host we connected to (the MX host, or the route's host);
//     otherwise the handshake fails and the recipients are deferred.
//   - required: TLS without verification (the result is recorded); a failed handshake or
//     a server without STARTTLS defers.
//   - opportunistic: as required, but a failed handshake makes the client reconnect to
//     the same address once with STARTTLS off (Postfix does the same), and the log notes
//     it; a server without STARTTLS is used in plaintext.
// The session's TLS facts (version, cipher, verification, fallback) go with every
// AttemptResult for the delivery log.
#pragma once

#include <linux/time_types.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/loop.h"
#include "core/ring.h"
#include "core/send_queue.h"
#include "core/timers.h"
#include "delivery/body_reader.h"
#include "delivery/client_machine.h"
#include "delivery/domain_queue.h"
#include "delivery/routes.h"
#include "delivery/self_endpoints.h"
#include "dns/resolver.h"
#include "tls/context.h"
#include "tls/session.h"

namespace ringmail::delivery {

struct SmtpClientSettings {
  ClientOptions machine;
  std::shared_ptr<const config::Config> config;  // the smtp_*_timeout values
  uint32_t deliveries_max = 100;  // transactions per connection (socket), >= 1
  uint32_t addresses_max = 10;    // connects per client, >= 1
  // Client-role context shared by every client of the process (immutable). Null: TLS is
  // never attempted; a policy that requires it then defers ("no TLS client context").
  std::shared_ptr<const tls::TlsContext> tls_client;
  // This daemon's own endpoints (delivery/self_endpoints.h); null: no check.
  std::shared_ptr<const SelfEndpoints> self;
};

// What the connection that decided a result did about TLS (all empty: plaintext).
struct TlsSummary {
  std::string version;       // "TLS1.3"
  std::string cipher;        // "TLS_AES_256_GCM_SHA384"
  std::string verification;  // "ok", "failed: <why>", "not-checked"
  std::string note;          // e.g. the failed handshake a plaintext retry follows
};

struct SmtpClientStats {
  uint64_t connects = 0;          // connect attempts
  uint64_t connect_failures = 0;
  uint64_t sessions = 0;          // connects that succeeded
  uint64_t transactions = 0;      // Begin()s
  uint64_t bytes_sent = 0;        // everything sent: commands and bodies
};

// The outcome of one attempt at one Work: one result per Work recipient, same order.
struct AttemptResult {
  std::vector<RecipientResult> recipients;
  std::string remote_host;    // "mx1.example.com[192.0.2.1]:25"; "" when none answered
  bool site_failure = false;  // the destination as a whole failed (DNS, no usable host)
  TlsSummary tls;
};

class SmtpClient {
 public:
  class Owner {
   public:
    // The next Work for this connection (ready, in session), or nullopt: then IdleMs().
    virtual std::optional<Work> NextWork(SmtpClient& client) = 0;
    // NextWork() had nothing: how long (ms) the connection may wait, parked, for Wake();
    // 0: QUIT now. Asked once per idle period.
    virtual uint64_t IdleMs(SmtpClient& client) = 0;
    // One attempt at `work` ended.
    virtual void WorkDone(SmtpClient& client, Work work, AttemptResult result) = 0;
    // Every operation is idle and the socket closed; free the client later (not inside
    // this call).
    virtual void ClientClosed(SmtpClient& client) = 0;

   protected:
    ~Owner() = default;
  };

  SmtpClient(core::Loop& loop, dns::Resolver& resolver, BodyFiles& files, Owner& owner,
             Route route, SmtpClientSettings settings, Work first);
  ~SmtpClient();  // only after ClientClosed()
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Begins (later in this loop turn: never calls the Owner from inside Start).
  void Start();
  // Stops now: the carried Work is dropped unreported (it stays in the spool), operations
  // are cancelled, the socket closed, then ClientClosed(). Idempotent.
  void Abort();

  // Parked only: new work for the destination; NextWork() is asked now (inside this call),
  // and the client parks again when it has nothing. No-op otherwise.
  void Wake();
  // Parked only (RM_CHECK): begins a transaction for `work`, which the Owner took for this
  // connection (after moving it: "moving" above). A new idle period: should the client park
  // again, IdleMs() is asked anew.
  void WakeWith(Work work);
  // Parked only: QUIT now (the Owner needs the slot, or the destination was suspended).
  void CloseIdle();

  // A server greeted us and the connection is usable (between or in transactions).
  bool in_session() const;
  // In session, kReady, waiting for Wake() (see "idle" above).
  bool parked() const {
    return parked_ && phase_ == Phase::kSession && !session_over_ && !aborting_;
  }
  bool closed() const { return phase_ == Phase::kClosed; }
  const SmtpClientStats& stats() const { return stats_; }
  // Transactions begun on the current socket (0 between sockets).
  uint32_t deliveries() const { return deliveries_; }
  // The per-connection transaction limit from now on (the Owner moved the client to a
  // destination with another max_deliveries_per_connection); >= 1.
  void set_deliveries_max(uint32_t max);
  const std::string& remote_host() const { return remote_host_; }

  void* tag = nullptr;  // the Owner's, e.g. its domain record

 private:
  enum class Phase : uint8_t {
    kNew,
    kResolvingMx,
    kResolvingHost,
    kConnecting,
    kSession,
    kDisconnecting,  // cancel, wait, close; then the next address or kClosed
    kClosed,
  };

  void Advance();
  bool HasMoreCandidates() const;
  bool IsSelf(const dns::IpAddress& address);
  void MxDone(dns::MxLookup& lookup);
  void HostDone(dns::HostLookup& lookup);
  bool Connect(const dns::IpAddress& address);
  void ConnectDone(core::Operation& op, core::IoResult result);
  void ConnectTimeoutDone(core::Operation& op, core::IoResult result);

  void Pump();
  void StartTransaction();
  bool Park();
  bool MakeTransaction(Transaction* tx);
  void TransactionDone(TransactionResult result);
  void StartBody(BodyEncoding encoding);
  void PumpBody();
  void BodyReadDone();
  void EndBody();
  void EndSession();

  void StartTls();
  void StepTls();
  void TlsHandshakeFailed(std::string why);
  void FlushTls();

  void ArmRecv();
  void RecvDone(core::Operation& op, core::IoResult result);
  // Plaintext from the machine or the body: encrypted first once TLS is up.
  void QueueSend(std::string bytes);
  void QueueRaw(std::string bytes);
  void StartSend();
  void SendDone(core::Operation& op, core::IoResult result);
  size_t send_backlog() const { return out_.backlog_bytes(); }
  // Arms the timer of the reply (or body send) awaited now. A reply's timer starts when
  // the awaited reply changes (another deadline kind, or a reply completed): bytes that
  // complete nothing do not extend it (RFC 5321 §4.5.3.2 times each reply; a peer
  // dribbling a byte at a time is cut at the timeout). The body's block timer restarts on
  // each send that completes (§4.5.3.2.5).
  void ArmDeadline();
  void DeadlineFired(core::Timer& timer);

  void Disconnect(bool final);
  void MaybeFinishDisconnect();
  void CloseDone(core::Operation& op, core::IoResult result);
  void ReleaseFile();

  // Ends the carried Work with the same outcome for every recipient.
  void FailCurrent(RecipientOutcome outcome, EnhancedStatus status, std::string diagnostic,
                   bool remote, bool site_failure);
  void Report(Work work, std::vector<RecipientResult> results, bool site_failure);

  core::Loop& loop_;
  dns::Resolver& resolver_;
  BodyFiles& files_;
  Owner& owner_;
  Route route_;
  SmtpClientSettings settings_;
  Phase phase_ = Phase::kNew;
  bool final_ = false;  // the disconnect in progress ends the client
  bool aborting_ = false;

  std::optional<Work> current_;  // taken, not yet reported
  BodyFiles::File* file_ = nullptr;       // pinned for the transaction in progress
  BodyFiles::File* body_file_ = nullptr;  // pinned while the body is being read
  bool used_ = false;  // some transaction began on some connection of this client

  std::vector<RouteHop> hosts_;
  size_t next_host_ = 0;
  std::string host_name_;
  bool host_literal_ = false;
  uint16_t port_ = 25;
  std::vector<dns::IpAddress> addresses_;
  size_t next_address_ = 0;
  uint32_t connects_ = 0;
  bool self_found_ = false;  // a next hop was this daemon (IsSelf)
  std::string self_hop_;     // the first such: "host[address]:port"
  std::string last_error_;  // why the last host or connection failed
  uint16_t last_code_ = 0;  // its reply code, when a reply said so
  // The last failure was a 5xx greeting: that server would not talk to us, which says
  // nothing of the message (Postfix's smtp_skip_5xx_greeting): the next MX is tried, and
  // when none is left the message waits (4.x.x) instead of bouncing.
  bool last_greeting_refused_ = false;
  dns::MxLookup mx_lookup_;
  dns::HostLookup host_lookup_;

  int fd_ = -1;
  sockaddr_storage peer_{};
  socklen_t peer_len_ = 0;
  __kernel_timespec connect_timeout_{};
  std::string remote_host_;
  std::optional<ClientMachine> machine_;
  dns::IpAddress address_;  // of the current connection
  std::unique_ptr<tls::TlsSession> tls_;  // from the STARTTLS 220 to the connection's end
  TlsSummary tls_summary_;                // of the current connection
  // Opportunistic TLS whose handshake failed: connect to this address again, once, without
  // STARTTLS; plain_next_ says the connect in progress is that retry.
  std::optional<dns::IpAddress> plain_retry_;
  bool plain_next_ = false;
  std::string plain_note_;
  uint32_t deliveries_ = 0;  // transactions begun on this socket
  bool parked_ = false;        // idle in kReady, waiting for Wake()
  uint64_t idle_until_ms_ = 0; // loop ms the current idle period ends; 0: not idle
  bool session_over_ = false;  // the machine said kClose: finish sending, then close

  core::Operation connect_op_;
  core::Operation connect_timeout_op_;
  core::Operation recv_op_;
  core::Operation send_op_;
  core::Operation close_op_;
  std::unique_ptr<char[]> recv_buffer_;
  core::SendQueue out_;  // commands, body and TLS records: one send in flight, the rest queued
  BodyReader body_;
  core::Timer deadline_;
  ClientDeadline armed_kind_ = ClientDeadline::kNone;  // what the armed timer times
  uint64_t armed_replies_ = 0;                         // machine replies() when armed
  bool body_progress_ = false;                         // a send completed since the last arm
  SmtpClientStats stats_;
};

}  // namespace ringmail::delivery
