// delivery/client_machine.cc — the outbound ESMTP client machine and the DATA encoder.
#include "delivery/client_machine.h"

#include <array>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/string_view.h"

namespace ringmail::delivery {
namespace {

using S = ClientState;

constexpr uint32_t Bit(S state) { return uint32_t{1} << static_cast<int>(state); }

// The legal transitions, one row per state (principle 13). Within a pipelined group the
// state walks kReset → kMail → kRcpt → kData as the replies come in.
constexpr std::array<uint32_t, static_cast<size_t>(S::kCount)> kTransitions = {
    /* kInit         */ Bit(S::kGreeting) | Bit(S::kClosed),
    /* kGreeting     */ Bit(S::kEhlo) | Bit(S::kQuit) | Bit(S::kClosed),
    /* kEhlo         */ Bit(S::kHelo) | Bit(S::kStartTls) | Bit(S::kReady) | Bit(S::kQuit) |
        Bit(S::kClosed),
    /* kHelo         */ Bit(S::kReady) | Bit(S::kQuit) | Bit(S::kClosed),
    /* kStartTls     */ Bit(S::kTlsHandshake) | Bit(S::kReady) | Bit(S::kQuit) |
        Bit(S::kClosed),
    /* kTlsHandshake */ Bit(S::kEhlo) | Bit(S::kClosed),
    /* kReady        */ Bit(S::kReset) | Bit(S::kMail) | Bit(S::kQuit) | Bit(S::kClosed),
    /* kReset        */ Bit(S::kMail) | Bit(S::kQuit) | Bit(S::kClosed),
    /* kMail         */ Bit(S::kRcpt) | Bit(S::kReady) | Bit(S::kClosed),
    /* kRcpt         */ Bit(S::kData) | Bit(S::kBody) | Bit(S::kReady) | Bit(S::kClosed),
    /* kData         */ Bit(S::kBody) | Bit(S::kDataEnd) | Bit(S::kReady) | Bit(S::kClosed),
    /* kBody         */ Bit(S::kDataEnd) | Bit(S::kClosed),
    /* kDataEnd      */ Bit(S::kReady) | Bit(S::kClosed),
    /* kQuit         */ Bit(S::kClosed),
    /* kClosed       */ 0,
};

constexpr char kCrlf[] = "\r\n";

RecipientOutcome OutcomeFor(const Reply& reply) {
  if (reply.positive()) return RecipientOutcome::kDelivered;
  return reply.permanent() ? RecipientOutcome::kPermanent : RecipientOutcome::kTemporary;
}

EnhancedStatus Status(uint8_t klass, uint16_t subject, uint16_t detail) {
  EnhancedStatus status;
  status.klass = klass;
  status.subject = subject;
  status.detail = detail;
  return status;
}

bool HasNonAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return true;
  }
  return false;
}

// Safe to put between angle brackets on a command line: bounded, no controls, no brackets.
bool SafePath(std::string_view address) {
  if (address.size() > kAddressBytesMax) return false;
  for (char c : address) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '<' || c == '>') return false;
  }
  return true;
}

// Our EHLO argument: the configured name if it is printable ASCII without spaces.
std::string SafeHeloName(std::string_view name) {
  if (name.empty() || name.size() > 255) return "localhost";
  for (char c : name) {
    if (c <= 0x20 || c >= 0x7f) return "localhost";
  }
  return std::string(name);
}

const char* AwaitedReplyName(ClientState state) {
  switch (state) {
    case S::kGreeting: return "the greeting";
    case S::kEhlo: return "the EHLO reply";
    case S::kHelo: return "the HELO reply";
    case S::kStartTls: return "the STARTTLS reply";
    case S::kTlsHandshake: return "the TLS handshake";
    case S::kReset: return "the RSET reply";
    case S::kMail: return "the MAIL FROM reply";
    case S::kRcpt: return "the RCPT TO reply";
    case S::kData: return "the DATA reply";
    case S::kBody: return "the body send to complete";
    case S::kDataEnd: return "the reply to the end of data";
    case S::kQuit: return "the QUIT reply";
    default: return "nothing";
  }
}

}  // namespace

MailParams ParseMailParams(std::string_view params) {
  MailParams out;
  while (!params.empty()) {
    size_t space = params.find(' ');
    std::string_view word = params.substr(0, space);
    params.remove_prefix(space == std::string_view::npos ? params.size() : space + 1);
    size_t eq = word.find('=');
    std::string_view key = word.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : word.substr(eq + 1);
    if (absl::EqualsIgnoreCase(ToAbsl(key), "BODY")) {
      if (absl::EqualsIgnoreCase(ToAbsl(value), "8BITMIME")) out.body = BodyType::k8BitMime;
      if (absl::EqualsIgnoreCase(ToAbsl(value), "BINARYMIME")) out.body = BodyType::kBinaryMime;
    } else if (absl::EqualsIgnoreCase(ToAbsl(key), "SMTPUTF8")) {
      out.smtputf8 = true;
    }
  }
  return out;
}

const char* RecipientOutcomeName(RecipientOutcome outcome) {
  switch (outcome) {
    case RecipientOutcome::kDelivered: return "delivered";
    case RecipientOutcome::kTemporary: return "temporary";
    case RecipientOutcome::kPermanent: return "permanent";
  }
  return "unknown";
}

const char* ClientDeadlineName(ClientDeadline deadline) {
  switch (deadline) {
    case ClientDeadline::kNone: return "none";
    case ClientDeadline::kGreeting: return "greeting";
    case ClientDeadline::kCommand: return "command";
    case ClientDeadline::kMail: return "mail";
    case ClientDeadline::kRcpt: return "rcpt";
    case ClientDeadline::kDataInit: return "data-init";
    case ClientDeadline::kDataBlock: return "data-block";
    case ClientDeadline::kDataTerm: return "data-term";
  }
  return "unknown";
}

absl::Duration DeadlineDuration(ClientDeadline deadline, const config::GlobalOptions& global) {
  switch (deadline) {
    case ClientDeadline::kNone: return absl::ZeroDuration();
    case ClientDeadline::kGreeting: return global.smtp_greeting_timeout;
    case ClientDeadline::kCommand:
    case ClientDeadline::kMail:
    case ClientDeadline::kRcpt: return global.smtp_command_timeout;
    case ClientDeadline::kDataInit: return global.smtp_data_init_timeout;
    case ClientDeadline::kDataBlock: return global.smtp_data_block_timeout;
    case ClientDeadline::kDataTerm: return global.smtp_data_term_timeout;
  }
  return absl::ZeroDuration();
}

const char* ClientFailureKindName(ClientFailureKind kind) {
  switch (kind) {
    case ClientFailureKind::kNone: return "none";
    case ClientFailureKind::kGreetingRejected: return "greeting-rejected";
    case ClientFailureKind::kHeloRejected: return "helo-rejected";
    case ClientFailureKind::kTlsUnavailable: return "tls-unavailable";
    case ClientFailureKind::kTlsFailed: return "tls-failed";
    case ClientFailureKind::kServerClosing: return "server-closing";
    case ClientFailureKind::kResetFailed: return "reset-failed";
    case ClientFailureKind::kProtocolError: return "protocol-error";
    case ClientFailureKind::kTimeout: return "timeout";
    case ClientFailureKind::kConnectionLost: return "connection-lost";
    case ClientFailureKind::kBodyFailed: return "body-failed";
  }
  return "unknown";
}

const char* ClientStateName(ClientState state) {
  switch (state) {
    case S::kInit: return "init";
    case S::kGreeting: return "greeting";
    case S::kEhlo: return "ehlo";
    case S::kHelo: return "helo";
    case S::kStartTls: return "starttls";
    case S::kTlsHandshake: return "tls-handshake";
    case S::kReady: return "ready";
    case S::kReset: return "reset";
    case S::kMail: return "mail";
    case S::kRcpt: return "rcpt";
    case S::kData: return "data";
    case S::kBody: return "body";
    case S::kDataEnd: return "data-end";
    case S::kQuit: return "quit";
    case S::kClosed: return "closed";
    case S::kCount: break;
  }
  return "unknown";
}

// ---- DotStuffer

void DotStuffer::Encode(std::string_view chunk, std::string* out) {
  input_bytes_ += chunk.size();
  out->reserve(out->size() + chunk.size() + chunk.size() / 64 + 2);
  size_t i = 0;
  while (i < chunk.size()) {
    switch (position_) {
      case Position::kAfterCr:
        // A CR was written; whatever follows, the line ends with CRLF.
        out->push_back('\n');
        position_ = Position::kLineStart;
        if (chunk[i] == '\n') ++i;
        break;
      case Position::kLineStart:
        if (chunk[i] == '.') out->push_back('.');
        position_ = Position::kMidLine;
        break;
      case Position::kMidLine: {
        // The run up to the next CR or LF: memchr for the LF ending the line, then for a
        // CR before it (normally the one of the CRLF). Two vectorised scans beat any
        // byte loop or find_first_of on ~80-byte lines.
        const char* base = chunk.data() + i;
        size_t available = chunk.size() - i;
        const void* lf = std::memchr(base, '\n', available);
        size_t run = lf == nullptr ? available : static_cast<const char*>(lf) - base;
        if (const void* cr = std::memchr(base, '\r', run); cr != nullptr) {
          run = static_cast<const char*>(cr) - base;
        }
        out->append(base, run);
        i += run;
        if (i == chunk.size()) break;
        if (chunk[i] == '\r') {
          out->push_back('\r');
          position_ = Position::kAfterCr;
        } else {  // a bare LF: written as CRLF
          out->append(kCrlf);
          position_ = Position::kLineStart;
        }
        ++i;
        break;
      }
    }
  }
}

void DotStuffer::Finish(std::string* out) {
  switch (position_) {
    case Position::kLineStart:
      break;  // empty content, or it ended in CRLF (the DATA line's CRLF starts the body)
    case Position::kMidLine:
      out->append(kCrlf);
      break;
    case Position::kAfterCr:
      out->push_back('\n');
      break;
  }
  out->append(".\r\n");
  position_ = Position::kLineStart;
}

// ---- ClientMachine: plumbing

ClientMachine::ClientMachine(ClientOptions options) : options_(std::move(options)) {
  options_.helo_name = SafeHeloName(options_.helo_name);
}

void ClientMachine::EnterState(ClientState next) {
  RM_CHECK(kTransitions[static_cast<size_t>(state_)] & Bit(next))
      << "illegal client transition " << ClientStateName(state_) << " -> "
      << ClientStateName(next);
  state_ = next;
  // Entry actions. None of them enters another state.
  switch (next) {
    case S::kEhlo: Send(absl::StrCat("EHLO ", options_.helo_name, kCrlf)); break;
    case S::kHelo: Send(absl::StrCat("HELO ", options_.helo_name, kCrlf)); break;
    case S::kStartTls: Send("STARTTLS\r\n"); break;
    case S::kTlsHandshake: PushAction(ClientAction::Kind::kStartTls); break;
    case S::kReady: PushAction(ClientAction::Kind::kReady); break;
    case S::kBody: {
      ClientAction action;
      action.kind = ClientAction::Kind::kSendBody;
      action.encoding = tx_->use_bdat ? BodyEncoding::kRaw : BodyEncoding::kDotStuffed;
      if (tx_->use_bdat) Send(absl::StrCat("BDAT ", tx_->request.body_bytes, " LAST", kCrlf));
      actions_.push_back(std::move(action));
      break;
    }
    case S::kQuit:
      WithdrawReady();
      Send("QUIT\r\n");
      break;
    case S::kClosed:
      WithdrawReady();
      unsent_.clear();
      awaiting_.clear();
      PushAction(ClientAction::Kind::kClose);
      break;
    default: break;
  }
}

void ClientMachine::PushAction(ClientAction::Kind kind) {
  ClientAction action;
  action.kind = kind;
  actions_.push_back(std::move(action));
}

// A kReady not yet taken must not outlive the readiness it announced.
void ClientMachine::WithdrawReady() {
  std::erase_if(actions_, [](const ClientAction& action) {
    return action.kind == ClientAction::Kind::kReady;
  });
}

void ClientMachine::Send(std::string_view line) { output_.append(line); }

std::string ClientMachine::TakeOutput() { return std::exchange(output_, std::string()); }

std::optional<ClientAction> ClientMachine::TakeAction() {
  if (actions_.empty()) return std::nullopt;
  ClientAction action = std::move(actions_.front());
  actions_.pop_front();
  return action;
}

ClientDeadline ClientMachine::deadline() const {
  switch (state_) {
    case S::kGreeting: return ClientDeadline::kGreeting;
    case S::kEhlo:
    case S::kHelo:
    case S::kStartTls:
    case S::kTlsHandshake:
    case S::kReset:
    case S::kQuit: return ClientDeadline::kCommand;
    case S::kMail: return ClientDeadline::kMail;
    case S::kRcpt: return ClientDeadline::kRcpt;
    case S::kData: return ClientDeadline::kDataInit;
    case S::kBody: return ClientDeadline::kDataBlock;
    case S::kDataEnd: return ClientDeadline::kDataTerm;
    default: return ClientDeadline::kNone;
  }
}

// ---- inputs

void ClientMachine::Start() {
  RM_CHECK(state_ == S::kInit) << "Start() twice";
  EnterState(S::kGreeting);
}

void ClientMachine::Feed(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size() && state_ != S::kClosed) {
    if (state_ == S::kTlsHandshake) {
      // Plaintext after "220 ready for TLS" would be read as if it came over TLS.
      ProtocolError("data after the STARTTLS reply");
      return;
    }
    ReplyParser::Status status = parser_.Next(bytes, &pos);
    if (status == ReplyParser::Status::kError) {
      ProtocolError(ReplyErrorName(parser_.error()));
      return;
    }
    if (status == ReplyParser::Status::kNeedMore) break;
    ++replies_;
    OnReply(parser_.TakeReply());
  }
  if (state_ == S::kTlsHandshake && parser_.buffered_bytes() > 0) {
    ProtocolError("data after the STARTTLS reply");
  }
}

void ClientMachine::Quit() {
  if (state_ == S::kClosed || state_ == S::kQuit) return;
  RM_CHECK(state_ == S::kReady) << "Quit() in " << ClientStateName(state_);
  EnterState(S::kQuit);
}

void ClientMachine::BodySent() {
  if (state_ == S::kClosed) return;  // the server ended it while the body was going out
  RM_CHECK(state_ == S::kBody) << "BodySent() in " << ClientStateName(state_);
  EnterState(S::kDataEnd);
}

void ClientMachine::BodyFailed() {
  if (state_ == S::kClosed) return;
  RM_CHECK(state_ == S::kBody) << "BodyFailed() in " << ClientStateName(state_);
  // Half a body is on the wire: only closing the connection keeps it from being delivered.
  Fail(ClientFailureKind::kBodyFailed, nullptr, "could not read the message from the spool",
       false);
}

void ClientMachine::TlsEstablished() {
  if (state_ == S::kClosed) return;
  RM_CHECK(state_ == S::kTlsHandshake) << "TlsEstablished() in " << ClientStateName(state_);
  tls_active_ = true;
  extensions_ = Extensions();  // RFC 3207 §4.2: forget what the plaintext EHLO said
  esmtp_ = false;
  EnterState(S::kEhlo);
}

void ClientMachine::TlsFailed(std::string_view detail) {
  if (state_ == S::kClosed) return;
  RM_CHECK(state_ == S::kTlsHandshake) << "TlsFailed() in " << ClientStateName(state_);
  Fail(ClientFailureKind::kTlsFailed, nullptr,
       detail.empty() ? std::string("TLS handshake failed")
                      : absl::StrCat("TLS handshake failed: ", ToAbsl(detail)),
       false);
}

void ClientMachine::Timeout() {
  if (deadline() == ClientDeadline::kNone) return;  // a stale timer
  if (state_ == S::kQuit) {
    EnterState(S::kClosed);
    return;
  }
  Fail(ClientFailureKind::kTimeout, nullptr,
       absl::StrCat("timeout waiting for ", AwaitedReplyName(state_)), false);
}

void ClientMachine::ConnectionLost() {
  if (state_ == S::kClosed) return;
  if (state_ == S::kQuit) {
    EnterState(S::kClosed);
    return;
  }
  Fail(ClientFailureKind::kConnectionLost, nullptr,
       absl::StrCat("connection lost while waiting for ", AwaitedReplyName(state_)), false);
}

// ---- ending the session

void ClientMachine::ProtocolError(std::string_view detail) {
  Fail(ClientFailureKind::kProtocolError, nullptr,
       absl::StrCat("protocol error (", ClientStateName(state_), "): ", ToAbsl(detail)),
       false);
}

void ClientMachine::Fail(ClientFailureKind kind, const Reply* reply, std::string_view detail,
                         bool quit) {
  failure_.kind = kind;
  failure_.code = reply != nullptr ? reply->code : 0;
  failure_.diagnostic = std::string(detail);
  if (reply != nullptr) {
    if (!failure_.diagnostic.empty()) failure_.diagnostic += ": ";
    failure_.diagnostic += reply->Summary();
  }
  if (tx_.has_value()) {
    // A 421 speaks for the server about every recipient still open; anything else is ours.
    EnhancedStatus status = kind == ClientFailureKind::kProtocolError ? Status(4, 5, 0)
                            : kind == ClientFailureKind::kBodyFailed  ? Status(4, 3, 0)
                                                                      : Status(4, 4, 2);
    for (size_t i = 0; i < tx_->phases.size(); ++i) {
      if (tx_->phases[i] == RcptPhase::kDecided) continue;
      if (kind == ClientFailureKind::kServerClosing) {
        Decide(i, RecipientOutcome::kTemporary, *reply);
      } else {
        DecideLocal(i, RecipientOutcome::kTemporary, status, failure_.diagnostic);
      }
    }
    ClientAction done;
    done.kind = ClientAction::Kind::kTransactionDone;
    done.result.recipients = std::move(tx_->results);
    actions_.push_back(std::move(done));
    tx_.reset();
    ++transactions_done_;
  }
  unsent_.clear();
  awaiting_.clear();
  EnterState(quit ? S::kQuit : S::kClosed);
}

// ---- replies outside a transaction

void ClientMachine::OnReply(Reply reply) {
  if (reply.code == 421 && state_ != S::kQuit) {
    // RFC 5321 §3.8: the server is going away, whatever the command was.
    Fail(ClientFailureKind::kServerClosing, &reply, "", false);
    return;
  }
  switch (state_) {
    case S::kGreeting: OnGreetingReply(reply); break;
    case S::kEhlo: OnEhloReply(reply); break;
    case S::kHelo: OnHeloReply(reply); break;
    case S::kStartTls: OnStartTlsReply(reply); break;
    case S::kReset:
    case S::kMail:
    case S::kRcpt:
    case S::kData: OnTransactionReply(reply); break;
    case S::kBody: OnBodyReply(reply); break;
    case S::kDataEnd: OnFinalReply(reply); break;
    case S::kQuit: EnterState(S::kClosed); break;
    default:
      ProtocolError(absl::StrCat("unexpected reply ", reply.Summary(200)));
      break;
  }
}

void ClientMachine::OnGreetingReply(const Reply& reply) {
  if (reply.positive()) {
    EnterState(S::kEhlo);
  } else if (reply.intermediate()) {
    ProtocolError(absl::StrCat("greeting ", reply.Summary(200)));
  } else {
    // RFC 5321 §3.1: after a 554 greeting the client should still say QUIT.
    Fail(ClientFailureKind::kGreetingRejected, &reply, "greeting", true);
  }
}

void ClientMachine::OnEhloReply(const Reply& reply) {
  if (reply.positive()) {
    extensions_ = ParseEhloReply(reply);
    esmtp_ = true;
    AfterHello();
  } else if (reply.permanent() && !tls_active_) {
    EnterState(S::kHelo);  // an old server that knows only HELO (RFC 5321 §3.2)
  } else if (reply.intermediate()) {
    ProtocolError(absl::StrCat("EHLO ", reply.Summary(200)));
  } else {
    Fail(ClientFailureKind::kHeloRejected, &reply, "EHLO", true);
  }
}

void ClientMachine::OnHeloReply(const Reply& reply) {
  if (reply.positive()) {
    extensions_ = Extensions();
    AfterHello();
  } else if (reply.intermediate()) {
    ProtocolError(absl::StrCat("HELO ", reply.Summary(200)));
  } else {
    Fail(ClientFailureKind::kHeloRejected, &reply, "HELO", true);
  }
}

void ClientMachine::AfterHello() {
  bool want_tls = options_.tls != config::OutboundTls::kOff && !tls_active_;
  bool tls_required = options_.tls == config::OutboundTls::kRequired ||
                      options_.tls == config::OutboundTls::kVerify;
  if (want_tls && extensions_.starttls) {
    EnterState(S::kStartTls);
  } else if (want_tls && tls_required) {
    Fail(ClientFailureKind::kTlsUnavailable, nullptr, "STARTTLS required but not offered",
         true);
  } else {
    EnterState(S::kReady);
  }
}

void ClientMachine::OnStartTlsReply(const Reply& reply) {
  if (reply.positive()) {
    EnterState(S::kTlsHandshake);  // Feed() then checks that nothing follows the 220
  } else if (reply.intermediate()) {
    ProtocolError(absl::StrCat("STARTTLS ", reply.Summary(200)));
  } else if (options_.tls == config::OutboundTls::kOpportunistic) {
    EnterState(S::kReady);  // RFC 3207 §4: go on in plaintext, as the EHLO said
  } else {
    Fail(ClientFailureKind::kTlsUnavailable, &reply, "STARTTLS refused", true);
  }
}

// ---- transactions

bool ClientMachine::Begin(Transaction tx) {
  if (state_ == S::kClosed || state_ == S::kQuit) return false;
  RM_CHECK(state_ == S::kReady) << "Begin() in " << ClientStateName(state_);
  RM_CHECK(!tx.recipients.empty() && tx.recipients.size() <= kTransactionRecipientsMax)
      << tx.recipients.size() << " recipients";
  OpenTransaction open;
  open.results.resize(tx.recipients.size());
  for (size_t i = 0; i < tx.recipients.size(); ++i) {
    open.results[i].index = tx.recipients[i].index;
  }
  open.phases.assign(tx.recipients.size(), RcptPhase::kUndecided);
  open.use_bdat = tx.body == BodyType::kBinaryMime ||
                  (options_.prefer_chunking && extensions_.chunking);
  open.request = std::move(tx);
  tx_ = std::move(open);
  if (!CheckLocally()) {
    // Nothing to send: every recipient was decided here; the connection stays ready.
    ClientAction done;
    done.kind = ClientAction::Kind::kTransactionDone;
    done.result.recipients = std::move(tx_->results);
    actions_.push_back(std::move(done));
    tx_.reset();
    ++transactions_done_;
    PushAction(ClientAction::Kind::kReady);
    return true;
  }
  QueueCommands();
  Flush();
  EnterState(awaiting_.front().awaits);
  return true;
}

// Decides locally what this server cannot take; false when nothing is left to send.
bool ClientMachine::CheckLocally() {
  const Transaction& tx = tx_->request;
  bool utf8_envelope = HasNonAscii(tx.sender);
  for (const Transaction::Recipient& r : tx.recipients) utf8_envelope |= HasNonAscii(r.address);
  tx_->smtputf8 = utf8_envelope || tx.smtputf8;
  EnhancedStatus status;
  std::string why;
  if (!SafePath(tx.sender)) {
    status = Status(5, 1, 7);
    why = "sender address unusable in an SMTP command";
  } else if (extensions_.size && extensions_.size_bytes_max != 0 &&
             tx.body_bytes > extensions_.size_bytes_max) {
    status = Status(5, 3, 4);
    why = absl::StrCat("message size ", tx.body_bytes, " exceeds the server's limit of ",
                       extensions_.size_bytes_max);
  } else if (utf8_envelope && !extensions_.smtputf8) {
    status = Status(5, 6, 7);
    why = "non-ASCII address, but the server does not support SMTPUTF8";
  } else if (tx.body == BodyType::kBinaryMime &&
             !(extensions_.binary_mime && extensions_.chunking)) {
    status = Status(5, 6, 3);
    why = "binary content, but the server does not support BINARYMIME";
  } else if (tx.body == BodyType::k8BitMime && !extensions_.eight_bit_mime &&
             options_.eight_bit == EightBitPolicy::kBounce) {
    status = Status(5, 6, 3);
    why = "8-bit content, but the server does not support 8BITMIME";
  }
  bool any_left = false;
  for (size_t i = 0; i < tx.recipients.size(); ++i) {
    if (status.present()) {
      DecideLocal(i, RecipientOutcome::kPermanent, status, why);
    } else if (tx.recipients[i].address.empty() || !SafePath(tx.recipients[i].address)) {
      DecideLocal(i, RecipientOutcome::kPermanent, Status(5, 1, 3),
                  "recipient address unusable in an SMTP command");
    } else {
      any_left = true;
    }
  }
  return any_left;
}

void ClientMachine::QueueCommands() {
  const Transaction& tx = tx_->request;
  if (reset_needed_) unsent_.push_back(Command{S::kReset, 0, "RSET\r\n"});
  std::string mail = absl::StrCat("MAIL FROM:<", tx.sender, ">");
  if (extensions_.size) absl::StrAppend(&mail, " SIZE=", tx.body_bytes);
  if (tx.body == BodyType::kBinaryMime) {
    absl::StrAppend(&mail, " BODY=BINARYMIME");
  } else if (tx.body == BodyType::k8BitMime && extensions_.eight_bit_mime) {
    absl::StrAppend(&mail, " BODY=8BITMIME");
  }
  if (extensions_.smtputf8 && tx_->smtputf8) {
    absl::StrAppend(&mail, " SMTPUTF8");
  }
  unsent_.push_back(Command{S::kMail, 0, absl::StrCat(mail, kCrlf)});
  for (size_t i = 0; i < tx.recipients.size(); ++i) {
    if (tx_->phases[i] == RcptPhase::kDecided) continue;
    unsent_.push_back(
        Command{S::kRcpt, i, absl::StrCat("RCPT TO:<", tx.recipients[i].address, ">", kCrlf)});
  }
  // BDAT goes out only after the RCPT replies, so no body is sent for nobody.
  if (!tx_->use_bdat) unsent_.push_back(Command{S::kData, 0, "DATA\r\n"});
}

// Writes what may be written now: with PIPELINING the whole group (DATA is last in it, as
// RFC 2920 §3.1 asks), without it the next command once the previous one was answered.
void ClientMachine::Flush() {
  while (!unsent_.empty()) {
    if (!extensions_.pipelining && !awaiting_.empty()) break;
    Command next = std::move(unsent_.front());
    unsent_.pop_front();
    if (next.awaits == S::kData && !extensions_.pipelining && tx_->accepted == 0) continue;
    Send(next.line);
    awaiting_.push_back(std::move(next));
  }
}

void ClientMachine::OnTransactionReply(const Reply& reply) {
  RM_CHECK(!awaiting_.empty()) << "no command awaits a reply in " << ClientStateName(state_);
  Command command = std::move(awaiting_.front());
  awaiting_.pop_front();
  switch (command.awaits) {
    case S::kReset:
      if (!reply.positive()) {
        Fail(ClientFailureKind::kResetFailed, &reply, "RSET", true);
        return;
      }
      reset_needed_ = false;
      break;
    case S::kMail: OnMailReply(reply); break;
    case S::kRcpt: OnRcptReply(reply, command.recipient); break;
    case S::kData: OnDataReply(reply); return;  // it chose the next state itself
    default: RM_BUG("unexpected awaited command"); return;
  }
  if (state_ == S::kClosed || state_ == S::kQuit) return;
  Advance();
}

void ClientMachine::OnMailReply(const Reply& reply) {
  if (reply.positive()) {
    reset_needed_ = true;  // the server now holds a transaction until "." or RSET
    return;
  }
  if (reply.intermediate()) {
    ProtocolError(absl::StrCat("MAIL FROM ", reply.Summary(200)));
    return;
  }
  DecideAll(reply);
  tx_->mail_failed = true;
  unsent_.clear();  // lockstep: no RCPT or DATA after a refused MAIL
}

void ClientMachine::OnRcptReply(const Reply& reply, size_t recipient) {
  if (tx_->mail_failed) return;  // pipelined after a refused MAIL: already decided
  if (reply.intermediate()) {
    ProtocolError(absl::StrCat("RCPT TO ", reply.Summary(200)));
  } else if (reply.positive()) {
    tx_->phases[recipient] = RcptPhase::kAccepted;
    ++tx_->accepted;
  } else {
    Decide(recipient, OutcomeFor(reply), reply);
  }
}

void ClientMachine::OnDataReply(const Reply& reply) {
  if (reply.intermediate()) {
    if (!tx_->mail_failed && tx_->accepted > 0) {
      EnterState(S::kBody);
    } else {
      // RFC 2920 §3.1: a pipelined DATA was accepted though nobody can receive the
      // message; end it empty so the server's transaction closes cleanly.
      Send(".\r\n");
      tx_->discard_final = true;
      EnterState(S::kDataEnd);
    }
    return;
  }
  if (reply.positive()) {
    ProtocolError(absl::StrCat("DATA ", reply.Summary(200)));
    return;
  }
  if (!tx_->mail_failed) DecideAccepted(reply);
  Advance();
}

void ClientMachine::OnBodyReply(const Reply& reply) {
  // The server answered before the body was complete. It can only be a refusal; either
  // way the rest of the body is still coming from us, so the connection cannot go on.
  if (!reply.positive() && !reply.intermediate()) DecideAccepted(reply);
  ProtocolError(absl::StrCat("reply before the end of the body: ", reply.Summary(200)));
}

void ClientMachine::OnFinalReply(const Reply& reply) {
  if (reply.intermediate()) {
    ProtocolError(absl::StrCat("end of data ", reply.Summary(200)));
    return;
  }
  reset_needed_ = false;  // after "." (or BDAT LAST) the server's transaction is over
  if (!tx_->discard_final) DecideAccepted(reply);
  FinishTransaction();
}

// After a reply within the command phase: send what lockstep allows, name the next awaited
// reply, or move on to the body or the end of the transaction.
void ClientMachine::Advance() {
  Flush();
  if (!awaiting_.empty()) {
    if (awaiting_.front().awaits != state_) EnterState(awaiting_.front().awaits);
    return;
  }
  if (tx_->use_bdat && !tx_->mail_failed && tx_->accepted > 0) {
    EnterState(S::kBody);
    return;
  }
  FinishTransaction();
}

void ClientMachine::FinishTransaction() {
  for (RcptPhase phase : tx_->phases) RM_DCHECK(phase == RcptPhase::kDecided);
  ClientAction done;
  done.kind = ClientAction::Kind::kTransactionDone;
  done.result.recipients = std::move(tx_->results);
  actions_.push_back(std::move(done));
  tx_.reset();
  unsent_.clear();
  awaiting_.clear();
  ++transactions_done_;
  EnterState(S::kReady);
}

void ClientMachine::Decide(size_t recipient, RecipientOutcome outcome, const Reply& reply) {
  RecipientResult& result = tx_->results[recipient];
  result.outcome = outcome;
  result.code = reply.code;
  result.status = reply.StatusOrDefault();
  result.diagnostic = reply.Summary();
  result.remote = true;
  tx_->phases[recipient] = RcptPhase::kDecided;
}

void ClientMachine::DecideLocal(size_t recipient, RecipientOutcome outcome,
                                EnhancedStatus status, std::string_view diagnostic) {
  RecipientResult& result = tx_->results[recipient];
  result.outcome = outcome;
  result.code = 0;
  result.status = status;
  result.diagnostic = std::string(diagnostic);
  result.remote = false;
  tx_->phases[recipient] = RcptPhase::kDecided;
}

void ClientMachine::DecideAccepted(const Reply& reply) {
  for (size_t i = 0; i < tx_->phases.size(); ++i) {
    if (tx_->phases[i] == RcptPhase::kAccepted) Decide(i, OutcomeFor(reply), reply);
  }
}

void ClientMachine::DecideAll(const Reply& reply) {
  for (size_t i = 0; i < tx_->phases.size(); ++i) {
    if (tx_->phases[i] != RcptPhase::kDecided) Decide(i, OutcomeFor(reply), reply);
  }
}

}  // namespace ringmail::delivery
