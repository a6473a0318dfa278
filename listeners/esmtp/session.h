// listeners/esmtp/session.h — one inbound ESMTP connection on one loop: binds a pure
// SessionMachine to the ring (multishot recv from the loop's buffer ring, batched sends,
// deadlines, spool commits) and owns the connection's lifecycle.
//
// Lifecycle (STYLE.md principle 3): running → closing (recv cancelled, timer disarmed) →
// once no operation is in flight (recv, send, commit) the fd is closed by a ring CLOSE →
// in its completion the listener frees the session. Nothing touches a session after that.
// Loop thread only.
//
// TLS (STARTTLS, RFC 3207, or implicit TLS on a `tls = "implicit"` listen): a socket-free
// tls::TlsSession sits between the ring and the machine. Received bytes are ciphertext fed
// to it; plaintext it decrypts is fed to the machine; replies are encrypted and the
// ciphertext goes out through the same ring sends. At STARTTLS every plaintext byte already
// received behind the command is discarded (CVE-2011-0411) and the machine starts over
// (RFC 3207 §4.2). The handshake has its own deadline (tls_handshake_timeout, fixed when
// it starts); a failed or stalled handshake closes this connection only. Decrypted input
// goes to the machine a record at a time straight from TlsSession::ReadView; replies of one
// pipelined group are encrypted together (one record per 16 KiB).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/loop.h"
#include "core/send_queue.h"
#include "core/timers.h"
#include "listeners/esmtp/session_machine.h"
#include "listeners/esmtp/settings.h"
#include "spool/group_commit.h"
#include "tls/session.h"

namespace ringmail::listeners::esmtp {

class EsmtpListener;

class Session {
 public:
  Session(EsmtpListener& listener, int fd, std::string peer_ip, uint16_t peer_port,
          std::shared_ptr<const Settings> settings, bool implicit_tls = false);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void Start();
  // Sends `reply` and closes without running the protocol (limits refused the client).
  void Refuse(std::string reply);
  void SlotGranted();
  void Shutdown();  // drain: new commands get 421, DATA finishes
  void Abort();     // loop stopping: close now
  const std::string& peer_ip() const { return peer_ip_; }
  bool admitted() const { return admitted_; }
  void set_admitted(bool admitted) { admitted_ = admitted; }

 private:
  void Pump();
  void Execute(Action action);
  void ArmRecv();
  void RecvDone(core::Operation& op, core::IoResult r);
  void FeedBytes(std::string_view bytes);
  void FeedStash();
  // ---- TLS
  void BeginTls();
  void FeedCiphertext(std::string_view bytes);
  void RefillTls();
  void AdvanceHandshake();
  void HandshakeDone();
  bool PullPlaintext();
  void EncryptPending();
  void TlsFailed(bool timeout);
  bool handshaking() const { return tls_ != nullptr && !tls_->established() && !tls_->failed(); }
  void StopReading();
  // Replies (plaintext): encrypted when TLS is on. QueueRaw sends bytes as they are.
  void QueueOutput(std::string_view bytes);
  void QueueRaw(std::string bytes);
  void StartSend();
  bool OutputFull() const;  // replies waiting past kOutputBacklogMax: input waits
  void SendDone(core::Operation& op, core::IoResult r);
  void ArmDeadline();
  void DeadlineFired(core::Timer& t);
  void CommitDone(spool::CommitRequest& request);
  void LogReception(const spool::CommitRequest& request);
  void LogRefusal(const Action& action);
  void BeginClose();
  void MaybeFinishClose();
  void CloseDone(core::Operation& op, core::IoResult r);
  uint64_t WallMs() const;

  EsmtpListener& listener_;
  int fd_;
  std::string peer_ip_;
  uint16_t peer_port_;
  std::shared_ptr<const Settings> settings_;
  SessionMachine machine_;
  const bool implicit_tls_;
  std::unique_ptr<tls::TlsSession> tls_;  // from STARTTLS (or accept) on
  std::string cipher_stash_;   // received ciphertext the TLS session had no room for
  std::string plain_out_;      // replies waiting to be encrypted (send queue full)
  uint64_t handshake_deadline_ms_ = 0;
  bool tls_close_notify_sent_ = false;

  core::Operation recv_op_;
  core::Operation send_op_;
  core::Operation close_op_;
  core::Timer deadline_;
  spool::CommitRequest commit_;

  core::SendQueue out_;       // replies (or TLS records): one send in flight, the rest queued
  std::string stash_;         // received bytes the machine could not take yet
  bool recv_armed_ = false;   // a multishot recv is (or will be) in flight
  bool recv_cancel_sent_ = false;
  bool commit_in_flight_ = false;
  bool close_after_send_ = false;
  bool closing_ = false;
  bool close_submitted_ = false;
  bool admitted_ = false;
  uint64_t started_ms_ = 0;
  uint64_t data_started_us_ = 0;
  // The wait the deadline measures (ArmDeadline): its kind and when it began; a reply
  // (answered_) or a new kind starts the next one, bytes alone do not.
  DeadlineKind wait_kind_ = DeadlineKind::kNone;
  uint64_t wait_started_ms_ = 0;
  bool answered_ = false;
  enum class SlotState : uint8_t { kNone, kWaiting, kHeld };
  SlotState slot_ = SlotState::kNone;
  std::string last_from_;
  size_t last_rcpts_ = 0;
  uint64_t last_size_ = 0;
};

}  // namespace ringmail::listeners::esmtp
