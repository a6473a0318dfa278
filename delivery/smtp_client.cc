// delivery/smtp_client.cc — one outbound connection: hosts, connect, session, close.
#include "delivery/smtp_client.h"

#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/string_view.h"
#include "core/log.h"
#include "tls/context.h"

namespace ringmail::delivery {
namespace {

constexpr size_t kRecvBytes = 8 * 1024;
// Body bytes queued for sending before the next chunk is read: two chunks keep the socket
// busy while the next read runs, without holding a large body in memory.
constexpr size_t kSendBacklogMax = 2 * kBodyChunkBytes;

EnhancedStatus Status(uint8_t klass, uint16_t subject, uint16_t detail) {
  return EnhancedStatus{klass, subject, detail};
}

// Failures after which another server may do better with the same recipients.
bool NextHostMayHelp(ClientFailureKind kind) {
  switch (kind) {
    case ClientFailureKind::kGreetingRejected:
    case ClientFailureKind::kHeloRejected:
    case ClientFailureKind::kTlsUnavailable:
    case ClientFailureKind::kTlsFailed:
    case ClientFailureKind::kServerClosing:
    case ClientFailureKind::kResetFailed:
    case ClientFailureKind::kProtocolError:
    case ClientFailureKind::kTimeout:
    case ClientFailureKind::kConnectionLost:
      return true;
    case ClientFailureKind::kNone:
    case ClientFailureKind::kBodyFailed:  // the spool, not the server
      return false;
  }
  return false;
}

// Reserves `count` SQEs so that a linked chain is never split across two submissions.
void ReserveSqes(core::Loop& loop, unsigned count) {
  io_uring* ring = loop.ring().raw();
  for (int attempt = 0; io_uring_sq_space_left(ring) < count; ++attempt) {
    int rc = loop.ring().Submit();
    RM_CHECK(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
        << "io_uring_submit failed: " << std::strerror(-rc);
    RM_CHECK(attempt < 1000) << "the SQ stays full";
  }
}

// TLS error texts into a diagnostic: printable ASCII, no CR/LF, bounded.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 300)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

}  // namespace

SmtpClient::SmtpClient(core::Loop& loop, dns::Resolver& resolver, BodyFiles& files,
                       Owner& owner, Route route, SmtpClientSettings settings, Work first)
    : loop_(loop),
      resolver_(resolver),
      files_(files),
      owner_(owner),
      route_(std::move(route)),
      settings_(std::move(settings)),
      current_(std::move(first)) {
  RM_CHECK(settings_.deliveries_max >= 1 && settings_.addresses_max >= 1);
  mx_lookup_.Bind<&SmtpClient::MxDone>(this);
  host_lookup_.Bind<&SmtpClient::HostDone>(this);
  connect_op_.Bind<&SmtpClient::ConnectDone>(this, "smtp client connect");
  connect_timeout_op_.Bind<&SmtpClient::ConnectTimeoutDone>(this, "smtp client connect timeout");
  recv_op_.Bind<&SmtpClient::RecvDone>(this, "smtp client recv");
  send_op_.Bind<&SmtpClient::SendDone>(this, "smtp client send");
  close_op_.Bind<&SmtpClient::CloseDone>(this, "smtp client close");
  body_.Bind<&SmtpClient::BodyReadDone>(this);
  deadline_.Bind<&SmtpClient::DeadlineFired>(this);
}

SmtpClient::~SmtpClient() {
  RM_CHECK(connect_op_.idle() && connect_timeout_op_.idle() && recv_op_.idle() &&
           send_op_.idle() && close_op_.idle() && !body_.reading())
      << "smtp client freed with a ring operation in flight";
  RM_CHECK(!deadline_.armed() && fd_ < 0 && file_ == nullptr && body_file_ == nullptr);
  RM_CHECK(!mx_lookup_.pending() && !host_lookup_.pending());
}

void SmtpClient::Start() {
  RM_CHECK(phase_ == Phase::kNew) << "smtp client started twice";
  if (route_.kind == Route::Kind::kMx) {
    phase_ = Phase::kResolvingMx;
    resolver_.ResolveMx(route_.mx_domain, mx_lookup_);  // answers later, never inline
    return;
  }
  hosts_ = route_.hops;
  phase_ = Phase::kResolvingHost;  // not waiting yet: Advance() runs next
  loop_.Defer([this] {
    if (phase_ == Phase::kResolvingHost && !host_lookup_.pending()) Advance();
  });
}

bool SmtpClient::in_session() const {
  return phase_ == Phase::kSession && !session_over_ && machine_.has_value() &&
         machine_->state() >= ClientState::kReady && !machine_->closed();
}

// ---- hosts and addresses

bool SmtpClient::HasMoreCandidates() const {
  if (connects_ >= settings_.addresses_max) return false;
  return next_address_ < addresses_.size() || next_host_ < hosts_.size();
}

// The next address to connect to: a loop, not recursion, over hosts and their addresses.
void SmtpClient::Advance() {
  if (aborting_) return;
  for (;;) {
    if (plain_retry_.has_value() && current_.has_value()) {
      // Outside the addresses_max count: at most one per failed handshake.
      dns::IpAddress address = *plain_retry_;
      plain_retry_.reset();
      plain_next_ = true;
      if (Connect(address)) return;
      plain_next_ = false;
      continue;
    }
    if (!current_.has_value() || connects_ >= settings_.addresses_max) break;
    if (next_address_ < addresses_.size()) {
      const dns::IpAddress& address = addresses_[next_address_++];
      if (IsSelf(address)) continue;
      if (Connect(address)) return;
      continue;
    }
    if (next_host_ >= hosts_.size()) break;
    const RouteHop& hop = hosts_[next_host_++];
    host_name_ = hop.host;
    host_literal_ = hop.literal;
    port_ = hop.port;
    addresses_.clear();
    next_address_ = 0;
    if (hop.literal) {
      std::optional<dns::IpAddress> ip = dns::IpAddress::Parse(hop.host);
      if (ip.has_value()) {
        addresses_.push_back(*ip);
      } else {
        last_error_ = absl::StrCat("bad address literal ", hop.host);
      }
      continue;
    }
    phase_ = Phase::kResolvingHost;
    resolver_.ResolveHost(hop.host, host_lookup_);
    return;
  }
  // Nothing (more) to try.
  if (current_.has_value() && self_found_ && connects_ == 0) {
    // This server was the best (or only) next hop: nothing else can take the mail.
    FailCurrent(RecipientOutcome::kPermanent, Status(5, 4, 6),
                absl::StrCat("mail for ", route_.kind == Route::Kind::kMx ? route_.mx_domain
                                                                          : self_hop_,
                             " loops back to myself (", self_hop_, " is this server)"),
                false, true);
  } else if (current_.has_value()) {
    if (last_error_.empty()) last_error_ = "no host to deliver to";
    bool permanent = last_code_ >= 500 && !last_greeting_refused_;
    FailCurrent(permanent ? RecipientOutcome::kPermanent : RecipientOutcome::kTemporary,
                permanent ? Status(5, 0, 0) : Status(4, 4, 1), last_error_, last_code_ != 0,
                !used_);
  }
  Disconnect(/*final=*/true);
}

// Whether `address` on port_ is this daemon (delivery/self_endpoints.h): then it is never
// connected to. An MX host that is this server also ends the walk of the MX list: the hosts
// after it are no more preferred than this server (RFC 5321 §5.1).
bool SmtpClient::IsSelf(const dns::IpAddress& address) {
  if (settings_.self == nullptr || !settings_.self->Contains(address, port_)) return false;
  if (!self_found_) self_hop_ = absl::StrCat(host_name_, "[", address.ToString(), "]:", port_);
  self_found_ = true;
  if (route_.kind == Route::Kind::kMx) {
    next_address_ = addresses_.size();
    next_host_ = hosts_.size();
  }
  return true;
}

void SmtpClient::MxDone(dns::MxLookup& lookup) {
  if (aborting_) return;
  const absl::Status& s = lookup.status();
  if (s.ok()) {
    for (const dns::MxHost& mx : lookup.answer().hosts) {
      hosts_.push_back(RouteHop{mx.host, false, route_.port});
    }
    Advance();
    return;
  }
  std::string why(ToStd(s.message()));
  switch (s.code()) {
    case absl::StatusCode::kFailedPrecondition:  // RFC 7505 §4.3
      FailCurrent(RecipientOutcome::kPermanent, Status(5, 1, 10),
                  absl::StrCat("domain ", route_.mx_domain, " accepts no mail (null MX)"), false,
                  true);
      break;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
      FailCurrent(RecipientOutcome::kPermanent, Status(5, 1, 2),
                  absl::StrCat("domain ", route_.mx_domain, " not found: ", why), false, true);
      break;
    default:  // SERVFAIL, timeouts, queue full, the resolver stopping
      FailCurrent(RecipientOutcome::kTemporary, Status(4, 4, 3),
                  absl::StrCat("DNS lookup for ", route_.mx_domain, " failed: ", why), false,
                  true);
      break;
  }
  Disconnect(/*final=*/true);
}

void SmtpClient::HostDone(dns::HostLookup& lookup) {
  if (aborting_) return;
  if (lookup.status().ok()) {
    addresses_ = lookup.answer().addresses;
  } else {
    last_error_ = absl::StrCat("host ", host_name_, ": ", lookup.status().message());
    last_code_ = 0;
    last_greeting_refused_ = false;
  }
  Advance();
}

bool SmtpClient::Connect(const dns::IpAddress& address) {
  ++connects_;
  ++stats_.connects;
  remote_host_ = absl::StrCat(host_name_, "[", address.ToString(), "]:", port_);
  int fd = ::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    ++stats_.connect_failures;
    last_error_ = absl::StrCat("connect to ", remote_host_, ": socket: ", strerror(errno));
    last_code_ = 0;
    last_greeting_refused_ = false;
    return false;
  }
  fd_ = fd;
  address_ = address;
  peer_len_ = address.ToSockaddr(port_, &peer_);
  absl::Duration timeout = settings_.config->global.smtp_connect_timeout;
  int64_t ms = absl::ToInt64Milliseconds(timeout);
  connect_timeout_.tv_sec = ms / 1000;
  connect_timeout_.tv_nsec = (ms % 1000) * 1'000'000;
  phase_ = Phase::kConnecting;
  ReserveSqes(loop_, 2);  // the link must not be split across two submissions
  io_uring_sqe* sqe = loop_.Prepare(connect_op_);
  io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&peer_), peer_len_);
  sqe->flags |= IOSQE_IO_LINK;
  sqe = loop_.Prepare(connect_timeout_op_);
  io_uring_prep_link_timeout(sqe, &connect_timeout_, 0);
  return true;
}

void SmtpClient::ConnectDone(core::Operation&, core::IoResult result) {
  if (phase_ == Phase::kDisconnecting) {
    MaybeFinishDisconnect();
    return;
  }
  RM_DCHECK(phase_ == Phase::kConnecting);
  if (!result.ok()) {
    ++stats_.connect_failures;
    last_error_ = absl::StrCat("connect to ", remote_host_, ": ",
                               result.canceled() ? "timed out" : strerror(result.error()));
    last_code_ = 0;
    last_greeting_refused_ = false;
    Disconnect(/*final=*/false);
    return;
  }
  ++stats_.sessions;
  phase_ = Phase::kSession;
  session_over_ = false;
  deliveries_ = 0;
  ClientOptions options = settings_.machine;
  tls_summary_ = TlsSummary();
  if (options.tls == config::OutboundTls::kOpportunistic && settings_.tls_client == nullptr) {
    options.tls = config::OutboundTls::kOff;  // nothing to offer a handshake with
  }
  if (plain_next_) {
    options.tls = config::OutboundTls::kOff;
    tls_summary_.note = plain_note_;
    plain_next_ = false;
  }
  machine_.emplace(std::move(options));
  machine_->Start();
  if (!recv_buffer_) recv_buffer_ = std::make_unique<char[]>(kRecvBytes);
  ArmRecv();
  Pump();
}

void SmtpClient::ConnectTimeoutDone(core::Operation&, core::IoResult) {
  // -ETIME: it fired (the connect then completes with -ECANCELED); -ECANCELED or
  // -ENOENT: the connect finished first. Only the close path waits for it.
  if (phase_ == Phase::kDisconnecting) MaybeFinishDisconnect();
}

// ---- the session

void SmtpClient::Pump() {
  if (phase_ != Phase::kSession) return;
  for (;;) {
    if (machine_->HasOutput()) QueueSend(machine_->TakeOutput());  // before any action
    std::optional<ClientAction> action = machine_->TakeAction();
    if (!action.has_value()) break;
    switch (action->kind) {
      case ClientAction::Kind::kReady:
        StartTransaction();
        break;
      case ClientAction::Kind::kSendBody:
        StartBody(action->encoding);
        break;
      case ClientAction::Kind::kStartTls:
        StartTls();
        break;
      case ClientAction::Kind::kTransactionDone:
        TransactionDone(std::move(action->result));
        break;
      case ClientAction::Kind::kClose:
        session_over_ = true;
        parked_ = false;  // a server that closes an idle connection ends it quietly
        if (tls_ != nullptr && tls_->established() &&
            machine_->failure().kind == ClientFailureKind::kNone) {
          tls_->Shutdown();  // close_notify after the 221: a clean end, not a truncation
          FlushTls();
        }
        break;
    }
  }
  // After QUIT was answered nothing is left to send; after a failure what is left (the
  // rest of a body, say) is useless and may never leave a peer that stopped reading.
  if (session_over_ &&
      (send_backlog() == 0 || machine_->failure().kind != ClientFailureKind::kNone)) {
    EndSession();
    return;
  }
  ArmDeadline();
}

void SmtpClient::StartTransaction() {
  parked_ = false;
  for (;;) {
    if (!current_.has_value()) {
      if (aborting_ || deliveries_ >= settings_.deliveries_max) break;
      current_ = owner_.NextWork(*this);
      if (!current_.has_value()) {
        if (Park()) return;
        break;
      }
    }
    Transaction tx;
    if (!MakeTransaction(&tx)) continue;  // its content cannot be read: reported; the next
    if (!machine_->Begin(std::move(tx))) {
      // The connection ended meanwhile: the Work stays carried (the next address or a
      // temporary failure, when the session's end is handled).
      ReleaseFile();
      return;
    }
    ++deliveries_;
    ++stats_.transactions;
    used_ = true;
    idle_until_ms_ = 0;  // a new idle period starts after this transaction
    return;
  }
  machine_->Quit();
}

// No work now: wait in kReady for Wake() until the idle deadline (kept across Wake()s that
// found nothing, so a braked domain cannot hold the connection forever).
bool SmtpClient::Park() {
  if (idle_until_ms_ == 0) {
    uint64_t idle_ms = owner_.IdleMs(*this);
    if (idle_ms == 0) return false;
    idle_until_ms_ = loop_.now_ms() + idle_ms;
  } else if (loop_.now_ms() >= idle_until_ms_) {
    return false;
  }
  parked_ = true;
  return true;  // Pump() arms the deadline at idle_until_ms_
}

void SmtpClient::Wake() {
  if (!parked_ || phase_ != Phase::kSession || session_over_ || aborting_) return;
  StartTransaction();
  Pump();
}

void SmtpClient::WakeWith(Work work) {
  RM_CHECK(parked() && !current_.has_value()) << "WakeWith on a client that is not parked";
  // It serves another domain from now on: if this Work cannot start and the client parks
  // again, that is a new idle period, asked of the owner (IdleMs), which indexes it again
  // under the new domain's rules.
  idle_until_ms_ = 0;
  current_ = std::move(work);
  StartTransaction();
  Pump();
}

void SmtpClient::set_deliveries_max(uint32_t max) {
  RM_CHECK(max >= 1);
  RM_DCHECK(!current_.has_value()) << "moved while carrying a Work";
  settings_.deliveries_max = max;
}

void SmtpClient::CloseIdle() {
  if (!parked_ || phase_ != Phase::kSession || session_over_ || aborting_) return;
  parked_ = false;
  machine_->Quit();
  Pump();
}

bool SmtpClient::MakeTransaction(Transaction* tx) {
  const QueuedMessage& message = *current_->message;
  ReleaseFile();
  absl::StatusOr<BodyFiles::File*> file = files_.Acquire(message.segment_path, loop_.now_ms());
  if (!file.ok()) {
    // Not this server's fault: the spool cannot give us the content (now).
    FailCurrent(RecipientOutcome::kTemporary, Status(4, 3, 0),
                std::string(ToStd(file.status().message())), false, false);
    return false;
  }
  file_ = *file;
  tx->sender = message.mail_from;
  for (const DeliveryJob::Recipient& r : current_->recipients) {
    tx->recipients.push_back(
        Transaction::Recipient{r.index, RewritePostmaster(r.address, settings_.config->global)});
  }
  tx->body_bytes = message.content_length;
  MailParams params = ParseMailParams(message.mail_params);
  tx->body = params.body;
  if (message.eight_bit && tx->body == BodyType::k7Bit) tx->body = BodyType::k8BitMime;
  tx->smtputf8 = params.smtputf8;
  return true;
}

void SmtpClient::TransactionDone(TransactionResult result) {
  ReleaseFile();
  RM_CHECK(current_.has_value()) << "a transaction ended that was never begun";
  Work work = std::move(*current_);
  current_.reset();
  RM_CHECK(result.recipients.size() == work.recipients.size());
  const ClientFailure& failure = machine_->failure();
  if (aborting_ || !NextHostMayHelp(failure.kind) || !HasMoreCandidates()) {
    Report(std::move(work), std::move(result.recipients), false);
    return;
  }
  // The connection failed: what it left undecided (or what a 421 spoke for) goes to the
  // next address; what a server's reply decided stays decided.
  Work carried{work.message, {}, work.due_ms};
  Work decided{work.message, {}, work.due_ms};
  std::vector<RecipientResult> decided_results;
  for (size_t i = 0; i < work.recipients.size(); ++i) {
    RecipientResult& r = result.recipients[i];
    bool carry = r.outcome == RecipientOutcome::kTemporary && (!r.remote || r.code == 421);
    if (carry) {
      carried.recipients.push_back(std::move(work.recipients[i]));
    } else {
      decided.recipients.push_back(std::move(work.recipients[i]));
      decided_results.push_back(std::move(r));
    }
  }
  if (!decided.recipients.empty()) {
    Report(std::move(decided), std::move(decided_results), false);
  }
  if (!carried.recipients.empty()) current_ = std::move(carried);
}

void SmtpClient::StartBody(BodyEncoding encoding) {
  RM_CHECK(file_ != nullptr && current_.has_value()) << "body asked without a transaction";
  const QueuedMessage& message = *current_->message;
  // The body's own pin: the transaction may end (and drop file_) while a read is in flight.
  files_.Pin(file_);
  body_file_ = file_;
  body_.Begin(BodyFiles::fd(file_), message.content_offset, message.content_length, encoding);
  PumpBody();
}

// Moves encoded body bytes to the send queue, reads more while it has room, and tells the
// machine when the body is complete (or cannot be read). The caller Pumps afterwards.
void SmtpClient::PumpBody() {
  if (phase_ != Phase::kSession || !body_.active()) return;
  if (session_over_ || machine_->closed()) return;  // the body ends with the session
  if (body_.encoded_pending() > 0) {
    std::string bytes;
    body_.TakeEncoded(&bytes);
    QueueSend(std::move(bytes));
  }
  if (body_.failed()) {
    EndBody();
    machine_->BodyFailed();
    return;
  }
  if (body_.finished()) {
    EndBody();
    machine_->BodySent();
    return;
  }
  if (send_backlog() < kSendBacklogMax) body_.ReadNext(loop_);
}

// Only when no read is in flight.
void SmtpClient::EndBody() {
  RM_DCHECK(!body_.reading());
  body_.Reset();
  if (body_file_ != nullptr) {
    files_.Release(body_file_, loop_.now_ms());
    body_file_ = nullptr;
  }
}

void SmtpClient::BodyReadDone() {
  if (phase_ == Phase::kDisconnecting) {
    MaybeFinishDisconnect();
    return;
  }
  PumpBody();
  Pump();
}

// The machine is closed and its last bytes are sent (or the peer stopped reading them).
void SmtpClient::EndSession() {
  const ClientFailure& failure = machine_->failure();
  if (failure.kind != ClientFailureKind::kNone) {
    last_error_ = absl::StrCat(remote_host_, ": ", failure.diagnostic);
    last_code_ = failure.code;
    last_greeting_refused_ = failure.kind == ClientFailureKind::kGreetingRejected;
  }
  // With a Work still carried, Advance() (after the close) tries the next address or
  // reports it; without one the client is done.
  Disconnect(/*final=*/!current_.has_value());
}

// ---- TLS

// The machine's kStartTls: the 220 to STARTTLS arrived and nothing followed it.
void SmtpClient::StartTls() {
  if (settings_.tls_client == nullptr) {
    machine_->TlsFailed("no TLS client context");
    return;
  }
  tls::ClientOptions options;
  // SNI and the host-name check name the host we chose (MX or route host); an address
  // literal has no name to check, only the chain.
  if (!host_literal_) options.server_name = host_name_;
  options.verify = settings_.machine.tls == config::OutboundTls::kVerify
                       ? tls::VerifyMode::kRequire
                       : tls::VerifyMode::kRecord;
  auto session = tls::TlsSession::NewClient(settings_.tls_client, options);
  if (!session.ok()) {
    machine_->TlsFailed(Printable(ToStd(session.status().message())));
    return;
  }
  tls_ = *std::move(session);
  tls::ReleaseThreadEccCacheAtExit();
  StepTls();
}

// Runs the engine on the ciphertext buffered so far: the handshake, then application data
// for the machine. The caller Pumps afterwards.
void SmtpClient::StepTls() {
  if (machine_->closed()) return;
  if (!tls_->established()) {
    tls::TlsResult r = tls_->Handshake();
    FlushTls();
    if (r == tls::TlsResult::kWantRead || r == tls::TlsResult::kWantWrite) return;
    if (r != tls::TlsResult::kOk) {
      std::string why = tls_->error();
      if (tls_->verification() == tls::Verification::kFailed) {
        why = absl::StrCat("certificate verification failed: ", tls_->verify_error());
      }
      TlsHandshakeFailed(std::move(why));
      return;
    }
    tls_summary_.version = tls_->version();
    tls_summary_.cipher = tls_->cipher();
    switch (tls_->verification()) {
      case tls::Verification::kOk: tls_summary_.verification = "ok"; break;
      case tls::Verification::kNotChecked: tls_summary_.verification = "not-checked"; break;
      case tls::Verification::kFailed:
        tls_summary_.verification = absl::StrCat("failed: ", Printable(tls_->verify_error()));
        break;
    }
    if (settings_.machine.tls == config::OutboundTls::kVerify &&
        tls_->verification() != tls::Verification::kOk) {
      TlsHandshakeFailed("certificate not verified");  // kRequire should have said so
      return;
    }
    armed_kind_ = ClientDeadline::kNone;  // the handshake's wait is over: EHLO's starts
    machine_->TlsEstablished();
  }
  std::string plain;
  tls::TlsResult r = tls::TlsResult::kOk;
  while (r == tls::TlsResult::kOk && plain.size() < kRecvBytes * 8) {
    r = tls_->Read(&plain, kRecvBytes);
  }
  FlushTls();
  if (!plain.empty()) machine_->Feed(plain);
  if (r == tls::TlsResult::kClosed || r == tls::TlsResult::kError) machine_->ConnectionLost();
}

void SmtpClient::TlsHandshakeFailed(std::string why) {
  why = Printable(why);
  tls_summary_.verification = tls_->verification() == tls::Verification::kFailed
                                  ? absl::StrCat("failed: ", Printable(tls_->verify_error()))
                                  : "";
  if (settings_.machine.tls == config::OutboundTls::kOpportunistic) {
    plain_retry_ = address_;
    plain_note_ = absl::StrCat("STARTTLS handshake failed (", why,
                               "): retried without TLS");
  }
  machine_->TlsFailed(why);
}

void SmtpClient::FlushTls() {
  if (tls_ != nullptr && tls_->has_ciphertext_out()) QueueRaw(tls_->TakeCiphertext());
}

// ---- socket I/O

void SmtpClient::ArmRecv() {
  io_uring_sqe* sqe = loop_.Prepare(recv_op_);
  io_uring_prep_recv(sqe, fd_, recv_buffer_.get(), kRecvBytes, 0);
}

void SmtpClient::RecvDone(core::Operation&, core::IoResult result) {
  if (phase_ == Phase::kDisconnecting) {
    MaybeFinishDisconnect();
    return;
  }
  if (phase_ != Phase::kSession || session_over_) return;  // closing: nothing more to read
  if (result.ok() && result.value() > 0) {
    std::string_view bytes(recv_buffer_.get(), result.value());
    if (tls_ != nullptr) {
      // Each step drains what Read can decrypt, so less than one record plus one recv is
      // ever buffered: a refusal here means the peer broke the protocol.
      if (tls_->FeedCiphertext(bytes) < bytes.size()) {
        if (tls_->established()) {
          machine_->ConnectionLost();
        } else {
          TlsHandshakeFailed("TLS input over the buffer limit");
        }
      } else {
        StepTls();
      }
    } else {
      machine_->Feed(bytes);
    }
    if (!machine_->closed()) ArmRecv();
    Pump();
    return;
  }
  if (!result.ok() && (result.error() == EINTR || result.error() == EAGAIN)) {
    ArmRecv();
    return;
  }
  machine_->ConnectionLost();  // EOF, reset, or any other error
  Pump();
}

void SmtpClient::QueueSend(std::string bytes) {
  if (tls_ == nullptr) {
    QueueRaw(std::move(bytes));
    return;
  }
  // Never plaintext into a TLS stream: during the handshake the machine sends nothing, and
  // what a failed session still says (QUIT) is dropped.
  if (!tls_->established() || tls_->failed()) return;
  std::string_view rest(bytes);
  while (!rest.empty()) {
    size_t used = 0;
    tls::TlsResult r = tls_->Write(rest, &used);
    rest.remove_prefix(used);
    FlushTls();  // empties the outbound buffer, so the next Write has room
    if (r == tls::TlsResult::kError || r == tls::TlsResult::kClosed ||
        (used == 0 && r != tls::TlsResult::kOk)) {
      machine_->ConnectionLost();
      return;
    }
  }
}

void SmtpClient::QueueRaw(std::string bytes) {
  if (out_.Queue(std::move(bytes))) StartSend();
}

void SmtpClient::StartSend() { out_.PrepareSend(loop_.Prepare(send_op_), fd_); }

void SmtpClient::SendDone(core::Operation&, core::IoResult result) {
  if (phase_ == Phase::kDisconnecting) {
    MaybeFinishDisconnect();
    return;
  }
  if (phase_ != Phase::kSession) return;
  if (!result.ok()) {
    if (result.error() == EINTR || result.error() == EAGAIN) {
      StartSend();
      return;
    }
    out_.Clear();
    if (session_over_) {
      EndSession();
      return;
    }
    machine_->ConnectionLost();
    Pump();
    return;
  }
  stats_.bytes_sent += result.value();
  body_progress_ = result.value() > 0;  // restarts the body's block timer only
  const bool short_send = static_cast<size_t>(result.value()) < out_.in_flight_bytes();
  if (out_.Sent(result.value())) StartSend();  // the rest, or what queued meanwhile
  if (short_send) {
    ArmDeadline();  // progress: RFC 5321 §4.5.3.2.5 times each send of the body
    return;
  }
  PumpBody();
  Pump();
}

void SmtpClient::ArmDeadline() {
  if (phase_ != Phase::kSession) {
    armed_kind_ = ClientDeadline::kNone;
    loop_.timers().Cancel(deadline_);
    return;
  }
  const config::GlobalOptions& global = settings_.config->global;
  absl::Duration timeout = global.smtp_command_timeout;  // session over: a peer not reading
  if (parked_ || session_over_) armed_kind_ = ClientDeadline::kNone;  // not a reply's timer
  if (parked_) {
    loop_.timers().Arm(deadline_, std::max(idle_until_ms_, loop_.now_ms() + 1));
    return;
  }
  if (!session_over_) {
    ClientDeadline which = machine_->deadline();
    if (which == ClientDeadline::kNone) {
      armed_kind_ = ClientDeadline::kNone;
      loop_.timers().Cancel(deadline_);
      return;
    }
    const bool progress = which == ClientDeadline::kDataBlock && body_progress_;
    body_progress_ = false;
    if (deadline_.armed() && which == armed_kind_ && machine_->replies() == armed_replies_ &&
        !progress) {
      return;  // the same wait goes on: its timer keeps its start
    }
    armed_kind_ = which;
    armed_replies_ = machine_->replies();
    timeout = DeadlineDuration(which, global);
  }
  int64_t ms = absl::ToInt64Milliseconds(timeout);
  loop_.timers().Arm(deadline_, loop_.now_ms() + static_cast<uint64_t>(ms > 0 ? ms : 1));
}

void SmtpClient::DeadlineFired(core::Timer&) {
  if (phase_ != Phase::kSession) return;
  if (parked_) {  // idle for outbound_idle_timeout: QUIT as without the hold
    CloseIdle();
    return;
  }
  if (session_over_) {
    EndSession();
    return;
  }
  machine_->Timeout();
  Pump();
}

// ---- closing

void SmtpClient::Disconnect(bool final) {
  if (phase_ == Phase::kClosed) return;
  final_ = final_ || final;
  if (phase_ == Phase::kDisconnecting) return;
  phase_ = Phase::kDisconnecting;
  loop_.timers().Cancel(deadline_);
  if (mx_lookup_.pending()) resolver_.Cancel(mx_lookup_);
  if (host_lookup_.pending()) resolver_.Cancel(host_lookup_);
  loop_.ring().Cancel(connect_op_);
  loop_.ring().Cancel(connect_timeout_op_);
  loop_.ring().Cancel(recv_op_);
  loop_.ring().Cancel(send_op_);  // a peer that does not read must not hold the connection
  body_.Cancel(loop_);
  MaybeFinishDisconnect();
}

void SmtpClient::MaybeFinishDisconnect() {
  if (phase_ != Phase::kDisconnecting) return;
  if (!connect_op_.idle() || !connect_timeout_op_.idle() || !recv_op_.idle() ||
      !send_op_.idle() || body_.reading() || !close_op_.idle()) {
    return;
  }
  if (fd_ >= 0) {
    io_uring_prep_close(loop_.Prepare(close_op_), fd_);  // the last op on this socket
    return;
  }
  machine_.reset();
  tls_.reset();
  out_.Clear();
  EndBody();
  session_over_ = false;
  parked_ = false;
  idle_until_ms_ = 0;
  deliveries_ = 0;
  if (final_ || aborting_) {
    ReleaseFile();
    phase_ = Phase::kClosed;
    owner_.ClientClosed(*this);  // may schedule our destruction: nothing may follow
    return;
  }
  phase_ = Phase::kResolvingHost;  // between addresses
  Advance();
}

void SmtpClient::CloseDone(core::Operation&, core::IoResult) {
  fd_ = -1;
  MaybeFinishDisconnect();
}

void SmtpClient::Abort() {
  if (aborting_ || phase_ == Phase::kClosed) return;
  aborting_ = true;
  current_.reset();  // unreported: it stays in the spool for the next start
  ReleaseFile();
  Disconnect(/*final=*/true);
}

void SmtpClient::ReleaseFile() {
  if (file_ == nullptr) return;
  files_.Release(file_, loop_.now_ms());
  file_ = nullptr;
}

// ---- results

void SmtpClient::FailCurrent(RecipientOutcome outcome, EnhancedStatus status,
                             std::string diagnostic, bool remote, bool site_failure) {
  if (!current_.has_value()) return;
  ReleaseFile();
  Work work = std::move(*current_);
  current_.reset();
  std::vector<RecipientResult> results(work.recipients.size());
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].index = work.recipients[i].index;
    results[i].outcome = outcome;
    results[i].code = remote ? last_code_ : 0;
    results[i].status = status;
    results[i].diagnostic = diagnostic;
    results[i].remote = remote;
  }
  Report(std::move(work), std::move(results), site_failure);
}

void SmtpClient::Report(Work work, std::vector<RecipientResult> results, bool site_failure) {
  AttemptResult attempt;
  attempt.recipients = std::move(results);
  attempt.remote_host = remote_host_;
  attempt.site_failure = site_failure;
  attempt.tls = tls_summary_;
  owner_.WorkDone(*this, std::move(work), std::move(attempt));
}

}  // namespace ringmail::delivery
