#include "listeners/esmtp/session.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "core/log.h"
#include "listeners/esmtp/listener.h"

namespace ringmail::listeners::esmtp {
namespace {

// Received bytes kept for a machine that is paused (commit, slot wait) beyond its own
// pending buffer. Past this the session stops reading and TCP pushes back on the client.
constexpr size_t kStashBytesMax = 256 * 1024;
// Ciphertext queued for sending beyond which replies wait unencrypted (plain_out_).
constexpr size_t kTlsQueuedBytesMax = 64 * 1024;
// Replies waiting to be sent (plain and encrypted). Past it no more input is processed: a
// client that pipelines commands and never reads its replies (an 8-byte EHLO answered with
// ~130 bytes) fills the stash, the recv stops, and TCP holds the client back,
// instead of the replies growing in memory.
constexpr size_t kOutputBacklogMax = 256 * 1024;

}  // namespace

Session::Session(EsmtpListener& listener, int fd, std::string peer_ip, uint16_t peer_port,
                 std::shared_ptr<const Settings> settings, bool implicit_tls)
    : listener_(listener),
      fd_(fd),
      peer_ip_(std::move(peer_ip)),
      peer_port_(peer_port),
      settings_(std::move(settings)),
      machine_(settings_->limits, settings_->policy, listener.ids()),
      implicit_tls_(implicit_tls) {
  recv_op_.Bind<&Session::RecvDone>(this, "esmtp.recv");
  recv_op_.multishot = true;
  send_op_.Bind<&Session::SendDone>(this, "esmtp.send");
  close_op_.Bind<&Session::CloseDone>(this, "esmtp.close");
  deadline_.Bind<&Session::DeadlineFired>(this);
  commit_.Bind<&Session::CommitDone>(this);
  machine_.SetBanner(settings_->banner);
}

Session::~Session() {
  RM_CHECK(recv_op_.idle() && send_op_.idle() && close_op_.idle())
      << "session freed with a ring operation in flight";
  RM_CHECK(!commit_in_flight_) << "session freed with a spool commit in flight";
  RM_CHECK(!deadline_.armed());
}

uint64_t Session::WallMs() const { return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())); }

void Session::Start() {
  started_ms_ = listener_.loop().now_ms();
  if (implicit_tls_) {  // SMTPS: the greeting waits for the handshake (HandshakeDone)
    BeginTls();
    Pump();
    return;
  }
  machine_.Start(peer_ip_, peer_port_, settings_->hostname);
  if (listener_.draining()) machine_.Shutdown();
  Pump();
}

void Session::Refuse(std::string reply) {
  if (implicit_tls_) {  // a plaintext 421 means nothing to a TLS client: just close
    BeginClose();
    return;
  }
  close_after_send_ = true;
  QueueOutput(reply);
}

void Session::SlotGranted() {
  RM_DCHECK(slot_ == SlotState::kWaiting);
  slot_ = SlotState::kHeld;
  if (closing_) return;
  machine_.SlotGranted();
  Pump();
}

void Session::Shutdown() {
  if (closing_) return;
  machine_.Shutdown();
  Pump();
}

void Session::Abort() { BeginClose(); }

void Session::Pump() {
  if (closing_) return;
  for (;;) {
    while (std::optional<Action> a = machine_.TakeAction()) Execute(std::move(*a));
    if (closing_) return;
    const bool room = !OutputFull();  // else input waits until replies have left
    if (room && machine_.CanContinue()) {
      machine_.Continue(WallMs());
      continue;
    }
    if (room && !stash_.empty() && machine_.WantsInput()) {
      size_t used = machine_.Feed(stash_, WallMs());
      stash_.erase(0, used);
      if (used > 0) continue;
    }
    if (room && stash_.empty() && machine_.WantsInput() && PullPlaintext()) continue;
    if (!machine_.HasOutput()) break;
    QueueOutput(machine_.output());  // one send per pipelined group
    machine_.ConsumeOutput();
    answered_ = true;
  }
  if (close_after_send_ && tls_ != nullptr && tls_->established() && !tls_->failed() &&
      plain_out_.empty() && !tls_close_notify_sent_) {
    tls_close_notify_sent_ = true;  // after the last reply (221, 421)
    tls_->Shutdown();
    QueueRaw(tls_->TakeCiphertext());
  }
  if (close_after_send_ && !out_.sending()) {
    BeginClose();
    return;
  }
  ArmDeadline();
  if (!recv_armed_ && !close_after_send_ && (handshaking() || machine_.WantsInput()) &&
      stash_.size() < kStashBytesMax && cipher_stash_.size() < kStashBytesMax &&
      !OutputFull()) {
    ArmRecv();
  }
}

bool Session::OutputFull() const {
  return out_.backlog_bytes() + plain_out_.size() >= kOutputBacklogMax;
}

void Session::Execute(Action action) {
  switch (action.kind) {
    case Action::Kind::kNeedTransactionSlot:
      if (listener_.RequestSlot(this)) {
        slot_ = SlotState::kHeld;
        machine_.SlotGranted();
      } else {
        slot_ = SlotState::kWaiting;
      }
      return;
    case Action::Kind::kReleaseTransactionSlot:
      if (slot_ != SlotState::kNone) listener_.ReleaseSlot(this, slot_ == SlotState::kWaiting);
      slot_ = SlotState::kNone;
      return;
    case Action::Kind::kCommit:
      RM_CHECK(!commit_in_flight_) << "two commits at once";
      last_from_ = action.message->envelope.mail_from;
      last_rcpts_ = action.message->envelope.recipients.size();
      last_size_ = action.message->content_size();
      commit_.message = std::move(action.message);
      commit_in_flight_ = true;
      data_started_us_ = listener_.loop().now_us();
      listener_.spool().Commit(commit_);
      return;
    case Action::Kind::kStartTls:
      // RFC 3207 §4.2, CVE-2011-0411: nothing received in plaintext behind STARTTLS may run
      // after the handshake. The machine dropped its own buffer; the stash goes too.
      stash_.clear();
      QueueOutput(machine_.output());  // "220 2.0.0 Ready to start TLS", in clear
      machine_.ConsumeOutput();
      BeginTls();
      return;
    case Action::Kind::kClose:
      close_after_send_ = true;  // Pump sends the last replies (221, 421) first
      return;
    case Action::Kind::kRefused:
      LogRefusal(action);
      return;
  }
}

void Session::ArmRecv() {
  recv_armed_ = true;
  io_uring_sqe* sqe = listener_.loop().Prepare(recv_op_);
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = listener_.buffers().group_id();
}

void Session::RecvDone(core::Operation&, core::IoResult r) {
  if (!r.more()) recv_armed_ = false;
  if (r.ok() && r.has_buffer()) {
    std::string_view bytes = listener_.buffers().Take(r.buffer_id(), r.value());
    if (!closing_ && !close_after_send_) {
      if (tls_ != nullptr) {
        FeedCiphertext(bytes);
      } else {
        FeedBytes(bytes);
      }
    }
    listener_.buffers().Recycle(r.buffer_id());  // parsed: straight back to the kernel
    if (r.value() > 0) {
      Pump();
      return;
    }
  }
  if (closing_) {
    MaybeFinishClose();
    return;
  }
  if (r.error() == ENOBUFS) {  // every buffer was in use: back-pressure, read again
    Pump();
    return;
  }
  if (r.canceled()) {  // we stopped reading (stash full); Pump resumes when it drains
    recv_cancel_sent_ = false;
    Pump();
    return;
  }
  if (r.ok() && r.value() == 0) {  // the client closed its side
    BeginClose();
    return;
  }
  if (!r.ok()) {
    BeginClose();  // ECONNRESET and friends
    return;
  }
  Pump();
}

void Session::FeedBytes(std::string_view bytes) {
  if (!stash_.empty() || OutputFull()) {
    stash_.append(bytes);  // Pump feeds the stash in order, once replies have room
    if (stash_.size() >= kStashBytesMax) StopReading();
    return;
  }
  size_t used = machine_.Feed(bytes, WallMs());
  if (used < bytes.size()) stash_.append(bytes.substr(used));
  if (stash_.size() >= kStashBytesMax) StopReading();
}

void Session::StopReading() {
  if (!recv_armed_ || recv_cancel_sent_) return;
  // The client must wait for our replies (TCP back-pressure); Pump re-arms the recv.
  listener_.loop().ring().Cancel(recv_op_);
  recv_cancel_sent_ = true;
}

void Session::BeginTls() {
  absl::StatusOr<std::unique_ptr<tls::TlsSession>> s =
      settings_->tls_context != nullptr
          ? tls::TlsSession::NewServer(settings_->tls_context)
          : absl::FailedPreconditionError("no TLS context");
  if (!s.ok()) {
    ++listener_.mutable_counters().tls_handshake_errors;
    close_after_send_ = true;
    return;
  }
  tls_ = *std::move(s);
  // Fixed from here: a client trickling handshake bytes does not move it.
  handshake_deadline_ms_ = listener_.loop().now_ms() + settings_->tls_handshake_timeout_ms;
}

void Session::FeedCiphertext(std::string_view bytes) {
  if (cipher_stash_.empty()) bytes.remove_prefix(tls_->FeedCiphertext(bytes));
  cipher_stash_.append(bytes.data(), bytes.size());
  if (cipher_stash_.size() >= kStashBytesMax) StopReading();
  if (handshaking()) AdvanceHandshake();
}

void Session::RefillTls() {
  if (!cipher_stash_.empty()) cipher_stash_.erase(0, tls_->FeedCiphertext(cipher_stash_));
}

void Session::AdvanceHandshake() {
  tls::TlsResult r;
  do {
    RefillTls();
    r = tls_->Handshake();
  } while (r == tls::TlsResult::kWantRead && !cipher_stash_.empty() &&
           tls_->ciphertext_in_room() > 0);
  QueueRaw(tls_->TakeCiphertext());
  if (r == tls::TlsResult::kOk) {
    HandshakeDone();
  } else if (r == tls::TlsResult::kError || r == tls::TlsResult::kClosed) {
    TlsFailed(/*timeout=*/false);
  }
}

void Session::HandshakeDone() {
  ++listener_.mutable_counters().tls_handshakes;
  if (tls_->resumed()) ++listener_.mutable_counters().tls_resumed;
  const std::string description = tls_->Description();
  if (!implicit_tls_) {
    machine_.TlsEstablished(description);  // back to kGreeting: the client sends EHLO
    return;
  }
  machine_.SetImplicitTls(description);
  machine_.Start(peer_ip_, peer_port_, settings_->hostname);
  if (listener_.draining()) machine_.Shutdown();
}

// Feeds the machine one record of decrypted input; false when there is none to give. The
// plaintext is fed straight from the TLS session's per-thread buffer (ReadView): whatever
// the machine does not take is copied to the stash by FeedBytes before the next read.
bool Session::PullPlaintext() {
  if (tls_ == nullptr || !tls_->established() || tls_->failed() || close_after_send_) {
    return false;
  }
  RefillTls();
  std::string_view plain;
  const tls::TlsResult r = tls_->ReadView(&plain);
  RefillTls();
  if (tls_->has_ciphertext_out()) QueueRaw(tls_->TakeCiphertext());  // alerts, key updates
  switch (r) {
    case tls::TlsResult::kOk:
      FeedBytes(plain);
      return true;
    case tls::TlsResult::kWantRead:
    case tls::TlsResult::kWantWrite:
      return false;
    case tls::TlsResult::kClosed:  // close_notify (or EOF): the client is gone
      close_after_send_ = true;
      return false;
    case tls::TlsResult::kError:
      TlsFailed(/*timeout=*/false);
      return false;
  }
  return false;
}

void Session::EncryptPending() {
  while (!plain_out_.empty() && out_.queued_bytes() < kTlsQueuedBytesMax) {
    size_t used = 0;
    const tls::TlsResult r = tls_->Write(plain_out_, &used);
    plain_out_.erase(0, used);
    QueueRaw(tls_->TakeCiphertext());
    if (r == tls::TlsResult::kError) {
      TlsFailed(/*timeout=*/false);
      return;
    }
    if (r != tls::TlsResult::kOk || used == 0) return;
  }
}

void Session::TlsFailed(bool timeout) {
  ListenerCounters& c = listener_.mutable_counters();
  if (timeout) {
    ++c.tls_handshake_timeouts;
  } else if (!tls_->established()) {
    ++c.tls_handshake_errors;
  }
  QueueRaw(tls_->TakeCiphertext());  // the alert, if wolfSSL made one
  plain_out_.clear();
  close_after_send_ = true;
}

void Session::QueueOutput(std::string_view bytes) {
  if (bytes.empty()) return;
  if (tls_ == nullptr) {
    if (out_.Queue(bytes)) StartSend();  // copied into the queue's reused buffers
    return;
  }
  if (!tls_->established() || tls_->failed()) return;  // nothing a TLS client could read
  plain_out_.append(bytes);
  EncryptPending();
}

void Session::QueueRaw(std::string bytes) {
  if (out_.Queue(std::move(bytes))) StartSend();
}

void Session::StartSend() { out_.PrepareSend(listener_.loop().Prepare(send_op_), fd_); }

void Session::SendDone(core::Operation&, core::IoResult r) {
  // An error, or a send that completed just before BeginClose's cancel reached it: nothing
  // more is sent once closing (a client that reads a little at a time must not keep the
  // session open past its close; the deadline was cancelled with it).
  if (!r.ok() || closing_) {
    out_.Clear();
    BeginClose();
    MaybeFinishClose();
    return;
  }
  const bool was_full = OutputFull();
  if (out_.Sent(r.value())) StartSend();  // the rest of a short send, or what queued
  // Replies that waited for room: their ciphertext queues behind whatever is in flight.
  if (!plain_out_.empty()) EncryptPending();
  if (was_full && !OutputFull()) {
    Pump();  // input held back for the replies goes on (and the recv is armed again)
    return;
  }
  if (!out_.sending() && close_after_send_) BeginClose();
}

void Session::ArmDeadline() {
  if (handshaking()) {
    listener_.loop().timers().Arm(deadline_, handshake_deadline_ms_);
    return;
  }
  const DeadlineKind kind = machine_.deadline();
  if (kind == DeadlineKind::kNone) {
    listener_.loop().timers().Cancel(deadline_);
    return;
  }
  const uint64_t now = listener_.loop().now_ms();
  // A wait starts when its kind changes or a reply went out (something was handled).
  // Received bytes that complete nothing do not extend it: a client trickling a byte at a
  // time (slowloris) is cut at command_timeout, and a body at data_term_timeout.
  if (kind != wait_kind_ || answered_) {
    wait_kind_ = kind;
    wait_started_ms_ = now;
  }
  answered_ = false;
  uint64_t at = now + settings_->server_timeout_ms;  // kServer
  switch (kind) {
    case DeadlineKind::kCommand: at = wait_started_ms_ + settings_->command_timeout_ms; break;
    case DeadlineKind::kMail: at = wait_started_ms_ + settings_->mail_timeout_ms; break;
    case DeadlineKind::kRcpt: at = wait_started_ms_ + settings_->rcpt_timeout_ms; break;
    case DeadlineKind::kDataInit:
      at = wait_started_ms_ + settings_->data_init_timeout_ms;
      break;
    case DeadlineKind::kDataBlock:
      at = std::min(now + settings_->data_block_timeout_ms,
                    wait_started_ms_ + settings_->data_term_timeout_ms);
      break;
    default: break;
  }
  if (close_after_send_) at = now + settings_->command_timeout_ms;  // a client that never reads
  if (settings_->connection_timeout_ms > 0) {
    at = std::min(at, started_ms_ + settings_->connection_timeout_ms);
  }
  listener_.loop().timers().Arm(deadline_, at);
}

void Session::DeadlineFired(core::Timer&) {
  if (closing_) return;
  if (handshaking()) {  // stalled mid-handshake: this connection goes, nothing else
    TlsFailed(/*timeout=*/true);
    BeginClose();
    return;
  }
  if (close_after_send_) {  // the client does not read our last reply: give up
    BeginClose();
    return;
  }
  machine_.Timeout();
  Pump();
}

void Session::CommitDone(spool::CommitRequest& request) {
  commit_in_flight_ = false;
  auto& counters = listener_.mutable_counters();
  if (request.status.ok()) {
    ++counters.messages;
    counters.message_bytes += last_size_;
  } else {
    ++counters.commit_errors;
  }
  LogReception(request);
  request.message.reset();
  if (closing_) {
    MaybeFinishClose();
    return;
  }
  machine_.CommitDone(request.status);
  Pump();
}

void Session::LogReception(const spool::CommitRequest& request) {
  core::EventLog* log = listener_.log();
  if (log == nullptr) return;
  core::JsonLine line;
  line.Str("event", "received")
      .Str("id", request.id.Hex().view())
      .Str("peer", peer_ip_)
      .Str("from", last_from_)
      .Uint("rcpts", last_rcpts_)
      .Uint("size", last_size_)
      .Int("code", GetReply(ReplyForCommitStatus(request.status)).code)
      .Uint("latency_us", listener_.loop().now_us() - data_started_us_);
  if (tls_ != nullptr && tls_->established()) {
    line.Str("tls", tls_->Description());
    if (tls_->resumed()) line.Bool("tls_resumed", true);
  }
  if (!request.status.ok()) line.Str("error", std::string(request.status.message()));
  log->Append(line.Finish());
}

// A message refused at its end (size, bare line ends, NUL, a mail loop): no id was given,
// nothing was written; the line says what the client was told.
void Session::LogRefusal(const Action& action) {
  core::EventLog* log = listener_.log();
  if (log == nullptr || action.message == nullptr) return;
  const ReplySpec& reply = GetReply(action.refusal);
  core::JsonLine line;
  line.Str("event", "rejected")
      .Str("peer", peer_ip_)
      .Str("from", action.message->envelope.mail_from)
      .Uint("rcpts", action.message->envelope.recipients.size())
      .Uint("size", action.size_bytes)
      .Int("code", reply.code)
      .Str("status", reply.enhanced);
  if (tls_ != nullptr && tls_->established()) line.Str("tls", tls_->Description());
  log->Append(line.Finish());
}

void Session::BeginClose() {
  if (closing_) return;
  closing_ = true;
  listener_.loop().timers().Cancel(deadline_);
  if (slot_ != SlotState::kNone) {
    listener_.ReleaseSlot(this, slot_ == SlotState::kWaiting);
    slot_ = SlotState::kNone;
  }
  core::Ring& ring = listener_.loop().ring();
  ring.Cancel(recv_op_);
  ring.Cancel(send_op_);  // a client that does not read must not hold the session
  MaybeFinishClose();
}

void Session::MaybeFinishClose() {
  if (!closing_ || close_submitted_) return;
  if (!recv_op_.idle() || !send_op_.idle() || commit_in_flight_) return;
  close_submitted_ = true;
  io_uring_prep_close(listener_.loop().Prepare(close_op_), fd_);
}

void Session::CloseDone(core::Operation&, core::IoResult) {
  fd_ = -1;
  listener_.SessionClosed(this);  // frees this session: nothing may follow
}

}  // namespace ringmail::listeners::esmtp
