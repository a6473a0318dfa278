#include "listeners/esmtp/session_machine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/check.h"
#include "base/string_view.h"
#include "listeners/esmtp/trace_fields.h"

namespace ringmail::listeners::esmtp {
namespace {

using S = State;

constexpr uint32_t Bit(State s) { return uint32_t{1} << static_cast<unsigned>(s); }
template <typename... States>
constexpr uint32_t Bits(States... states) {
  return (Bit(states) | ... | uint32_t{0});
}
static_assert(static_cast<unsigned>(State::kCount) <= 32, "states must fit a bit set");

// States in which a command line is read.
constexpr uint32_t kCommandStates = Bits(S::kGreeting, S::kReady, S::kMail, S::kRcpt,
                                         S::kChunked);
constexpr uint32_t kTerminal = Bits(S::kQuit, S::kClosing);

// The literal transition table: kLegalNext[from] holds every state `from` may enter.
constexpr uint32_t kLegalNext[] = {
    /* kInit       */ Bits(S::kGreeting, S::kClosing),
    /* kGreeting   */ Bits(S::kGreeting, S::kReady, S::kBdatDiscard, S::kStartTls) | kTerminal,
    /* kReady      */ Bits(S::kReady, S::kAwaitSlot, S::kBdatDiscard, S::kStartTls) | kTerminal,
    /* kAwaitSlot  */ Bits(S::kMail) | kTerminal,
    /* kMail       */ Bits(S::kReady, S::kRcpt, S::kBdatDiscard) | kTerminal,
    /* kRcpt       */ Bits(S::kReady, S::kRcpt, S::kData, S::kBdat, S::kBdatDiscard) |
        kTerminal,
    /* kData       */ Bits(S::kReady, S::kCommitting, S::kClosing),
    /* kBdat       */ Bits(S::kReady, S::kChunked, S::kCommitting, S::kClosing),
    /* kChunked    */ Bits(S::kReady, S::kBdat, S::kBdatDiscard) | kTerminal,
    /* kBdatDiscard*/ Bits(S::kGreeting, S::kReady, S::kMail, S::kRcpt, S::kChunked, S::kClosing),
    /* kCommitting */ Bits(S::kReady, S::kClosing),
    /* kStartTls   */ Bits(S::kGreeting, S::kClosing),
    /* kQuit       */ 0,
    /* kClosing    */ 0,
};
static_assert(std::size(kLegalNext) == static_cast<size_t>(State::kCount));

constexpr const char* kStateNames[] = {
    "init",    "greeting",     "ready",      "await-slot", "mail",  "rcpt",   "data",
    "bdat",    "chunked",      "bdat-discard", "committing", "starttls", "quit", "closing",
};
static_assert(std::size(kStateNames) == static_cast<size_t>(State::kCount));

constexpr size_t kVerbBytesMax = 8;  // "STARTTLS"

// The Received date for a second since the epoch, RFC 5322 form in UTC. Formatting costs
// ~3,900 instructions (absl/cctz), a fifth of a message's cost in the machine, and the
// text changes once a second: each loop thread keeps the last one.
const std::string& ReceivedDate(uint64_t unix_s) {
  thread_local uint64_t cached_s = UINT64_MAX;
  thread_local std::string cached;
  if (unix_s != cached_s) {
    cached = absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000",
                              absl::FromUnixSeconds(static_cast<int64_t>(unix_s)),
                              absl::UTCTimeZone());
    cached_s = unix_s;
  }
  return cached;
}

// The client's HELO/EHLO word as it goes into our Received: field. It was checked to be
// one word of printable characters (or UTF-8), but it may be any such word: the header
// must still parse. Comment and list delimiters a bare domain never holds ('(' ')' '\\'
// '"' ';': an unclosed "(" would hide our "by ...; date" from a parser) become '?', and so
// do 8-bit bytes unless the message is SMTPUTF8 (RFC 6532 allows UTF-8 in its header).
std::string HeaderSafeHelo(std::string_view helo, bool utf8) {
  std::string safe(helo);
  for (char& c : safe) {
    const auto u = static_cast<unsigned char>(c);
    const bool delimiter = c == '(' || c == ')' || c == '\\' || c == '"' || c == ';';
    if (delimiter || u < 0x21 || u == 0x7f || (u >= 0x80 && !utf8)) c = '?';
  }
  return safe;
}

}  // namespace

namespace session_internal {

enum class Verb : uint8_t {
  kHelo, kEhlo, kMail, kRcpt, kData, kBdat, kRset, kNoop, kQuit, kVrfy, kExpn, kHelp,
  kStartTls, kNonSmtp,
};

enum CommandFlag : uint8_t {
  kJunk = 1 << 0,     // NOOP-like: counted against max_junk_commands
  kLast = 1 << 1,     // must be last in a pipelined group (RFC 2920 §3.1, RFC 3207 §4.2)
  kPreTls = 1 << 2,   // allowed before STARTTLS when TLS is required (RFC 3207 §4)
  kStays = 1 << 3,    // success does not change state (or the handler moves it itself)
};

struct CommandSpec {
  std::string_view name;
  Verb verb;
  uint32_t allowed;  // states in which the verb may run; elsewhere SequenceError()
  State next;        // the state success leads to (unless kStays)
  uint8_t flags;
};

}  // namespace session_internal

namespace {

using session_internal::CommandSpec;
using session_internal::Verb;
using session_internal::kJunk;
using session_internal::kLast;
using session_internal::kPreTls;
using session_internal::kStays;

constexpr uint32_t kHeloStates = Bits(S::kGreeting, S::kReady, S::kMail, S::kRcpt, S::kChunked);

// The command table (STYLE.md principle 13). BDAT drives its own states because a refused
// chunk must still be swallowed (kBdatDiscard) and a chunk of 0 octets completes at once.
constexpr CommandSpec kCommandTable[] = {
    {"HELO", Verb::kHelo, kHeloStates, S::kReady, kLast | kPreTls},
    {"EHLO", Verb::kEhlo, kHeloStates, S::kReady, kLast | kPreTls},
    {"MAIL", Verb::kMail, Bits(S::kReady), S::kAwaitSlot, 0},
    {"RCPT", Verb::kRcpt, Bits(S::kMail, S::kRcpt), S::kRcpt, 0},
    {"DATA", Verb::kData, Bits(S::kRcpt), S::kData, kLast},
    {"BDAT", Verb::kBdat, Bits(S::kRcpt, S::kChunked), S::kBdat, kStays},
    {"RSET", Verb::kRset, kCommandStates, S::kReady, kJunk | kPreTls},
    {"NOOP", Verb::kNoop, kCommandStates, S::kReady, kJunk | kLast | kPreTls | kStays},
    {"QUIT", Verb::kQuit, kCommandStates, S::kQuit, kLast | kPreTls},
    {"VRFY", Verb::kVrfy, kCommandStates, S::kReady, kJunk | kLast | kStays},
    {"EXPN", Verb::kExpn, kCommandStates, S::kReady, kJunk | kLast | kStays},
    {"HELP", Verb::kHelp, kCommandStates, S::kReady, kJunk | kLast | kPreTls | kStays},
    {"STARTTLS", Verb::kStartTls, Bits(S::kGreeting, S::kReady), S::kStartTls,
     kLast | kPreTls},
    // Another protocol talking to the SMTP port (browsers, proxies probing): hang up.
    {"GET", Verb::kNonSmtp, kCommandStates, S::kClosing, kPreTls},
    {"POST", Verb::kNonSmtp, kCommandStates, S::kClosing, kPreTls},
    {"HEAD", Verb::kNonSmtp, kCommandStates, S::kClosing, kPreTls},
    {"PUT", Verb::kNonSmtp, kCommandStates, S::kClosing, kPreTls},
    {"CONNECT", Verb::kNonSmtp, kCommandStates, S::kClosing, kPreTls},
};

constexpr bool TableIsSound() {
  for (const auto& c : kCommandTable) {
    if (c.name.size() > kVerbBytesMax) return false;
    if ((c.allowed & ~kCommandStates) != 0) return false;  // commands run in command states
    if (c.flags & kStays) continue;
    // Every non-staying command's transition must be legal from every allowed state.
    for (unsigned s = 0; s < static_cast<unsigned>(State::kCount); ++s) {
      if ((c.allowed & (uint32_t{1} << s)) == 0) continue;
      const State next = (c.verb == Verb::kRset && s == static_cast<unsigned>(S::kGreeting))
                             ? S::kGreeting
                             : c.next;
      if ((kLegalNext[s] & Bit(next)) == 0) return false;
    }
  }
  return true;
}
static_assert(TableIsSound(), "command table disagrees with the transition table");

bool IsCommandState(State s) { return (kCommandStates & Bit(s)) != 0; }

}  // namespace

const char* StateName(State state) {
  const auto i = static_cast<size_t>(state);
  return i < std::size(kStateNames) ? kStateNames[i] : "?";
}

SessionMachine::SessionMachine(const SessionLimits& limits, const Policy& policy,
                               core::MessageIdGenerator& ids)
    : limits_(limits), policy_(policy), ids_(ids) {}

// ---------------------------------------------------------------------------------------
// Transitions

void SessionMachine::EnterState(State next) {
  // Entry actions may chain one more transition (e.g. kReady while draining → kClosing);
  // a loop, not recursion (principle 13).
  for (;;) {
    const State previous = state_;
    RM_CHECK(kLegalNext[static_cast<size_t>(previous)] & Bit(next))
        << "illegal transition " << StateName(previous) << " -> " << StateName(next);
    state_ = next;
    if (trace_hook_ != nullptr) trace_hook_(trace_context_, previous, next);
    std::optional<State> follow = OnEnter();
    if (!follow.has_value()) return;
    next = *follow;
  }
}

std::optional<State> SessionMachine::ShutdownIfDraining() {
  if (!shutting_down_) return std::nullopt;
  Reply(ReplyId::kShutdown, local_host_);
  return State::kClosing;
}

std::optional<State> SessionMachine::OnEnter() {
  switch (state_) {
    case State::kGreeting:  // fresh start, or after TLS: forget what the client said
      helo_.clear();
      esmtp_ = false;
      EndTransaction();
      return ShutdownIfDraining();
    case State::kReady:
      EndTransaction();
      return ShutdownIfDraining();
    case State::kMail:
    case State::kRcpt:
      return ShutdownIfDraining();
    case State::kAwaitSlot:
      RM_DCHECK(slot_ == Slot::kNone);
      slot_ = Slot::kRequested;
      PushAction(Action::Kind::kNeedTransactionSlot);
      return std::nullopt;
    case State::kData:
      body_reader_.Begin(&transaction_->message->body, MakeBodyOptions());
      data_started_ = false;
      return std::nullopt;
    case State::kStartTls:
      lines_.Reset();  // plaintext pipelined behind STARTTLS is dropped (RFC 3207 §4.2)
      PushAction(Action::Kind::kStartTls);
      return std::nullopt;
    case State::kQuit:
    case State::kClosing:
      EndTransaction();
      PushAction(Action::Kind::kClose);
      return std::nullopt;
    case State::kBdat:
    case State::kChunked:
    case State::kBdatDiscard:
    case State::kCommitting:
    case State::kInit:
    case State::kCount:
      break;
  }
  return std::nullopt;
}

// The single rollback path: whatever ends a transaction (commit done, RSET, HELO/EHLO, a
// refused body, timeout, close) comes through here.
void SessionMachine::EndTransaction() {
  transaction_.reset();
  bdat_last_ = false;
  chunk_bytes_ = 0;
  if (slot_ != Slot::kNone) {
    slot_ = Slot::kNone;
    PushAction(Action::Kind::kReleaseTransactionSlot);
  }
}

BodyOptions SessionMachine::MakeBodyOptions() const {
  BodyOptions options;
  options.size_bytes_max = limits_.max_message_size_bytes;
  options.bare_line_endings = policy_.bare_line_endings();
  options.binary = transaction_->body == BodyType::kBinaryMime;
  return options;
}

// ---------------------------------------------------------------------------------------
// Inputs

void SessionMachine::Start(std::string_view peer_ip, uint16_t peer_port,
                           std::string_view local_host) {
  RM_CHECK(state_ == State::kInit) << "Start() called twice";
  local_host_ = std::string(local_host);
  peer_ip_ = IpAddress::Parse(peer_ip);
  if (peer_ip_.has_value()) {
    peer_ = peer_ip_->v6 ? absl::StrCat("[", peer_ip_->ToString(), "]:", peer_port)
                         : absl::StrCat(peer_ip_->ToString(), ":", peer_port);
  } else {
    peer_ = absl::StrCat("unknown:", peer_port);
  }
  received_tcp_info_ =
      peer_ip_.has_value() ? absl::StrCat("[", peer_ip_->ToLiteral(), "]") : "unknown";
  if (shutting_down_) {
    Reply(ReplyId::kShutdown, local_host_);
    EnterState(State::kClosing);
    return;
  }
  if (banner_.empty()) {
    Reply(ReplyId::kGreeting, local_host_);
  } else {
    Reply(ReplyId::kBanner, banner_);
  }
  EnterState(State::kGreeting);
}

size_t SessionMachine::Feed(std::string_view bytes, uint64_t now_ms) {
  RM_CHECK(state_ != State::kInit) << "Feed() before Start()";
  if (closed()) return bytes.size();
  size_t used;
  if (pending_offset_ < pending_.size() || Paused()) {
    used = Stash(bytes);  // keep order: older buffered bytes go first
    if (!Paused()) Continue(now_ms);
  } else {
    used = ProcessInput(bytes, now_ms);
    if (used < bytes.size() && !closed() && state_ != State::kStartTls) {
      used += Stash(bytes.substr(used));
    }
  }
  if (closed() || state_ == State::kStartTls) {
    DropPendingInput();
    return bytes.size();
  }
  return used;
}

void SessionMachine::Continue(uint64_t now_ms) {
  if (!CanContinue()) return;
  const std::string_view rest = std::string_view(pending_).substr(pending_offset_);
  pending_offset_ += ProcessInput(rest, now_ms);
  if (closed() || state_ == State::kStartTls || pending_offset_ == pending_.size()) {
    DropPendingInput();
  }
}

void SessionMachine::SlotGranted() {
  if (state_ != State::kAwaitSlot) {
    // Closed (or timed out) while queued: the grant is not wanted, hand it straight back.
    PushAction(Action::Kind::kReleaseTransactionSlot);
    return;
  }
  slot_ = Slot::kHeld;
  Reply(ReplyId::kMailOk);
  EnterState(State::kMail);
}

void SessionMachine::CommitDone(const absl::Status& status) {
  if (state_ != State::kCommitting) return;  // the session closed while the spool worked
  const ReplyId reply = ReplyForCommitStatus(status);
  if (reply == ReplyId::kQueued) {
    Reply(ReplyId::kQueued, transaction_->id.Hex().view());
    junk_commands_ = 0;  // a client that delivers mail is not idling
  } else {
    Reply(reply);
  }
  EnterState(State::kReady);
  CheckErrorLimit();
}

void SessionMachine::TlsEstablished(std::string_view description) {
  if (state_ != State::kStartTls) return;
  tls_ = true;
  tls_description_ = std::string(description);
  EnterState(State::kGreeting);  // RFC 3207 §4.2: the client starts over with EHLO
}

void SessionMachine::SetImplicitTls(std::string_view description) {
  RM_CHECK(state_ == State::kInit) << "SetImplicitTls() after Start()";
  tls_ = true;
  tls_description_ = std::string(description);
}

void SessionMachine::Timeout() {
  if (closed() || state_ == State::kInit) return;
  Reply(ReplyId::kTimeout, local_host_);
  EnterState(State::kClosing);
}

void SessionMachine::Shutdown() {
  shutting_down_ = true;
  switch (state_) {
    case State::kGreeting:
    case State::kReady:
    case State::kMail:
    case State::kRcpt:
    case State::kAwaitSlot:
      Reply(ReplyId::kShutdown, local_host_);
      EnterState(State::kClosing);
      return;
    default:
      // kInit: Start() refuses. A message in flight (DATA, BDAT chunks, commit) or a TLS
      // handshake finishes first; the next command-reading state closes (OnEnter).
      return;
  }
}

// ---------------------------------------------------------------------------------------
// Outputs

std::string SessionMachine::TakeOutput() {
  group_ended_ = false;
  std::string out;
  out.swap(output_);
  return out;
}

void SessionMachine::ConsumeOutput() {
  group_ended_ = false;
  output_.clear();
}

std::optional<Action> SessionMachine::TakeAction() {
  if (actions_.empty()) return std::nullopt;
  Action action = std::move(actions_.front());
  actions_.pop_front();
  return action;
}

bool SessionMachine::Paused() const {
  return state_ == State::kAwaitSlot || state_ == State::kCommitting ||
         state_ == State::kStartTls || group_ended_;
}

bool SessionMachine::CanContinue() const {
  return state_ != State::kInit && !closed() && !Paused() &&
         pending_offset_ < pending_.size();
}

bool SessionMachine::WantsInput() const {
  return state_ != State::kInit && !closed() && !Paused() &&
         pending_offset_ == pending_.size();
}

DeadlineKind SessionMachine::deadline() const {
  switch (state_) {
    case State::kGreeting:
    case State::kChunked:
      return DeadlineKind::kCommand;
    case State::kReady:
      return DeadlineKind::kMail;
    case State::kMail:
    case State::kRcpt:
      return DeadlineKind::kRcpt;
    case State::kData:
      return data_started_ ? DeadlineKind::kDataBlock : DeadlineKind::kDataInit;
    case State::kBdat:
    case State::kBdatDiscard:
      return DeadlineKind::kDataBlock;
    case State::kAwaitSlot:
    case State::kCommitting:
    case State::kStartTls:
      return DeadlineKind::kServer;
    default:
      return DeadlineKind::kNone;
  }
}

size_t SessionMachine::buffered_input_bytes() const {
  return pending_.size() - pending_offset_ + lines_.buffered_bytes();
}

void SessionMachine::Reply(ReplyId id) {
  AppendReply(id, &output_);
  if (GetReply(id).client_error) ++errors_;
}

void SessionMachine::Reply(ReplyId id, std::string_view arg) {
  AppendReply(id, arg, &output_);
  if (GetReply(id).client_error) ++errors_;
}

void SessionMachine::PushAction(Action::Kind kind, std::unique_ptr<core::Message> message,
                                ReplyId refusal, uint64_t size_bytes) {
  // At most a handful are queued between two drains (slot release + close, ...).
  RM_DCHECK(actions_.size() < 16) << "the I/O layer is not draining actions";
  actions_.push_back(Action{kind, std::move(message), refusal, size_bytes});
}

// ---------------------------------------------------------------------------------------
// Input processing

size_t SessionMachine::Stash(std::string_view bytes) {
  if (pending_offset_ > 0) {
    pending_.erase(0, pending_offset_);
    pending_offset_ = 0;
  }
  const size_t room = limits_.pending_input_bytes_max > pending_.size()
                          ? limits_.pending_input_bytes_max - pending_.size()
                          : 0;
  const size_t n = std::min(room, bytes.size());
  pending_.append(bytes.data(), n);
  return n;
}

void SessionMachine::DropPendingInput() {
  pending_.clear();
  pending_offset_ = 0;
  if (closed() || state_ == State::kStartTls) lines_.Reset();
}

size_t SessionMachine::ProcessInput(std::string_view input, uint64_t now_ms) {
  size_t pos = 0;
  while (pos < input.size() && !closed() && !Paused()) {
    const std::string_view rest = input.substr(pos);
    switch (state_) {
      case State::kData: {
        const BodyReader::Result r = body_reader_.FeedData(rest);
        pos += r.consumed;
        data_started_ = true;
        if (r.done) FinishData(now_ms);
        break;
      }
      case State::kBdat: {
        const BodyReader::Result r = body_reader_.FeedChunk(rest);
        pos += r.consumed;
        if (r.done) FinishChunk(now_ms);
        break;
      }
      case State::kBdatDiscard: {
        const size_t n =
            static_cast<size_t>(std::min<uint64_t>(discard_remaining_, rest.size()));
        pos += n;
        discard_remaining_ -= n;
        if (discard_remaining_ == 0) FinishDiscard();
        break;
      }
      default: {
        RM_DCHECK(IsCommandState(state_)) << StateName(state_);
        const CommandLineReader::Event event = lines_.Next(input, &pos);
        if (event.kind == CommandLineReader::Kind::kNeedMore) break;
        const bool must_be_last = HandleLineEvent(event, now_ms);
        // RFC 2920: its reply must leave before anything behind it is read.
        if (must_be_last && pos < input.size() && HasOutput()) group_ended_ = true;
        break;
      }
    }
    CheckErrorLimit();
  }
  return pos;
}

void SessionMachine::CheckErrorLimit() {
  if (closed() || errors_ < std::max<uint32_t>(limits_.max_errors, 1)) return;
  if (!IsCommandState(state_)) return;  // mid-message: checked when it completes
  Reply(ReplyId::kTooManyErrors, local_host_);
  EnterState(State::kClosing);
}

bool SessionMachine::HandleLineEvent(const CommandLineReader::Event& event, uint64_t now_ms) {
  switch (event.kind) {
    case CommandLineReader::Kind::kNeedMore:
      return false;
    case CommandLineReader::Kind::kTooLong:
      Reply(ReplyId::kLineTooLong);
      return false;
    case CommandLineReader::Kind::kRunaway:
      Reply(ReplyId::kRunawayLine, local_host_);
      EnterState(State::kClosing);
      return false;
    case CommandLineReader::Kind::kLine:
      break;
  }
  const std::string_view line = event.line;
  if (line.find('\0') != std::string_view::npos || line.find('\r') != std::string_view::npos) {
    Reply(ReplyId::kBadCharacters);
    return false;
  }
  const size_t space = line.find(' ');
  const std::string_view verb = line.substr(0, space);
  std::string_view argument =
      space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  while (!argument.empty() && argument.front() == ' ') argument.remove_prefix(1);
  while (!argument.empty() && argument.back() == ' ') argument.remove_suffix(1);
  for (const auto& entry : kCommandTable) {
    if (!absl::EqualsIgnoreCase(ToAbsl(verb), ToAbsl(entry.name))) continue;
    HandleCommand(entry, argument, now_ms);
    return (entry.flags & kLast) != 0;
  }
  Reply(ReplyId::kUnknownCommand);
  return false;
}

void SessionMachine::HandleCommand(const CommandSpec& spec, std::string_view argument,
                                   uint64_t now_ms) {
  if (shutting_down_ && !(spec.verb == Verb::kBdat && state_ == State::kChunked)) {
    Reply(ReplyId::kShutdown, local_host_);  // only a BDAT transaction may still finish
    EnterState(State::kClosing);
    return;
  }
  if (spec.verb != Verb::kBdat) bdat_aborted_ = false;
  if ((spec.flags & kJunk) && ++junk_commands_ > limits_.max_junk_commands) ++errors_;
  const bool in_sequence = (spec.allowed & Bit(state_)) != 0;
  if (spec.verb == Verb::kBdat) {
    DoBdat(argument, in_sequence, now_ms);  // refusals must still swallow the chunk
    return;
  }
  if (policy_.require_tls() && !tls_ && !(spec.flags & kPreTls)) {
    Reply(ReplyId::kNeedStartTls);
    return;
  }
  if (!in_sequence) {
    Reply(SequenceError(spec));
    return;
  }
  bool ok = false;
  switch (spec.verb) {
    case Verb::kHelo: ok = DoHelo(argument, false); break;
    case Verb::kEhlo: ok = DoHelo(argument, true); break;
    case Verb::kMail: ok = DoMail(argument); break;
    case Verb::kRcpt: ok = DoRcpt(argument); break;
    case Verb::kData: ok = DoData(argument); break;
    case Verb::kStartTls: ok = DoStartTls(argument); break;
    default: ok = DoSimple(spec, argument); break;
  }
  if (!ok || (spec.flags & kStays)) return;
  State next = spec.next;
  if (spec.verb == Verb::kRset && helo_.empty()) next = State::kGreeting;
  EnterState(next);
}

ReplyId SessionMachine::SequenceError(const CommandSpec& spec) const {
  switch (spec.verb) {
    case Verb::kMail:
      return state_ == State::kGreeting ? ReplyId::kNeedHelo : ReplyId::kNestedMail;
    case Verb::kRcpt:
      return state_ == State::kGreeting ? ReplyId::kNeedHelo : ReplyId::kNeedMail;
    case Verb::kData:
    case Verb::kBdat:
      if (state_ == State::kChunked) return ReplyId::kDataAfterBdat;
      if (state_ == State::kMail) return ReplyId::kNeedRcpt;
      return state_ == State::kGreeting ? ReplyId::kNeedHelo : ReplyId::kNeedMail;
    default:
      return ReplyId::kBadSequence;
  }
}

// ---------------------------------------------------------------------------------------
// Commands

bool SessionMachine::DoHelo(std::string_view argument, bool extended) {
  if (!ValidHeloArgument(argument)) {
    Reply(ReplyId::kHeloSyntax);
    return false;
  }
  helo_ = std::string(argument);
  esmtp_ = extended;
  if (extended) {
    EhloExtensions extensions;
    extensions.size_bytes_max = limits_.max_message_size_bytes;
    extensions.starttls = policy_.starttls_offered() && !tls_;
    AppendEhloReply(local_host_, extensions, &output_);
  } else {
    Reply(ReplyId::kHelo, local_host_);
  }
  return true;  // → kReady, which also ends any transaction (RFC 5321 §4.1.4)
}

bool SessionMachine::DoMail(std::string_view argument) {
  MailArguments mail;
  if (std::optional<ReplyId> refusal = ParseMailArguments(argument, &mail)) {
    Reply(*refusal);
    return false;
  }
  if (!esmtp_ && !mail.parameters.empty()) {
    // After HELO no extension was offered (RFC 5321 §4.1.1.1): SIZE=, BODY=, SMTPUTF8 too.
    Reply(ReplyId::kUnknownMailParameter);
    return false;
  }
  if (mail.size_given && limits_.max_message_size_bytes != 0 &&
      mail.size_bytes > limits_.max_message_size_bytes) {
    Reply(ReplyId::kMessageTooBig);  // RFC 1870 §6.1
    return false;
  }
  if (limits_.max_messages_per_connection != 0 &&
      mail_commands_ >= limits_.max_messages_per_connection) {
    Reply(ReplyId::kTooManyMessages, local_host_);
    EnterState(State::kClosing);
    return false;
  }
  ++mail_commands_;
  overshoot_ = 0;
  RM_DCHECK(transaction_ == nullptr);
  transaction_ = std::make_unique<Transaction>();
  transaction_->message = std::make_unique<core::Message>();
  core::Envelope& envelope = transaction_->message->envelope;
  envelope.mail_from = std::string(mail.sender.address);
  envelope.mail_params = std::string(mail.parameters);
  transaction_->body = mail.body;
  transaction_->smtputf8 = mail.smtputf8;
  return true;  // → kAwaitSlot; "250" when the slot is granted
}

bool SessionMachine::DoRcpt(std::string_view argument) {
  RcptArguments rcpt;
  if (std::optional<ReplyId> refusal =
          ParseRcptArguments(argument, transaction_->smtputf8, &rcpt)) {
    Reply(*refusal);
    return false;
  }
  std::vector<core::Recipient>& recipients = transaction_->message->envelope.recipients;
  if (recipients.size() >= std::max<uint32_t>(limits_.max_recipients, 1)) {
    Reply(ReplyId::kTooManyRecipients);  // RFC 5321 §4.5.3.1.10
    if (++overshoot_ > limits_.recipient_overshoot) ++errors_;
    return false;
  }
  if (!rcpt.recipient.postmaster &&
      !policy_.RelayAllowed(peer_ip_, rcpt.recipient.local_part, rcpt.recipient.domain)) {
    Reply(ReplyId::kRelayDenied);
    return false;
  }
  core::Recipient recipient;
  recipient.address = std::string(rcpt.recipient.address);
  recipient.params = std::string(rcpt.parameters);
  recipients.push_back(std::move(recipient));
  Reply(ReplyId::kRcptOk);
  return true;
}

bool SessionMachine::DoData(std::string_view argument) {
  if (!argument.empty()) {
    Reply(ReplyId::kNoArguments);
    return false;
  }
  if (transaction_->body == BodyType::kBinaryMime) {
    Reply(ReplyId::kBinaryMimeData);  // RFC 3030 §3
    return false;
  }
  Reply(ReplyId::kStartData);
  return true;
}

bool SessionMachine::DoStartTls(std::string_view argument) {
  if (tls_) {
    Reply(ReplyId::kTlsActive);  // no longer advertised: TLS is up (RFC 3207 §4.2)
    return false;
  }
  if (!policy_.starttls_offered()) {
    Reply(ReplyId::kNotImplemented);  // not advertised: no certificate
    return false;
  }
  if (!argument.empty()) {
    Reply(ReplyId::kNoArguments);
    return false;
  }
  Reply(ReplyId::kStartTls);
  return true;
}

bool SessionMachine::DoSimple(const CommandSpec& spec, std::string_view argument) {
  switch (spec.verb) {
    case Verb::kRset:
      if (!argument.empty()) {
        Reply(ReplyId::kNoArguments);
        return false;
      }
      Reply(ReplyId::kOk);
      return true;
    case Verb::kNoop:  // RFC 5321 §4.1.1.9: an argument is allowed and ignored
      Reply(ReplyId::kOk);
      return true;
    case Verb::kQuit:
      Reply(ReplyId::kBye);
      return true;
    case Verb::kVrfy:
      Reply(argument.empty() ? ReplyId::kVrfySyntax : ReplyId::kVrfy);
      return !argument.empty();
    case Verb::kExpn:
      Reply(ReplyId::kNotImplemented);
      return false;
    case Verb::kHelp:
      Reply(ReplyId::kHelp);
      return true;
    case Verb::kNonSmtp:
      Reply(ReplyId::kNonSmtpCommand, local_host_);
      return true;
    default:
      RM_BUG("verb without handler");
      Reply(ReplyId::kUnknownCommand);
      return false;
  }
}

// "BDAT <size> [LAST]". The size decides where the next command starts, so it is parsed
// first; any refusal after that swallows exactly <size> octets (RFC 3030 §2).
void SessionMachine::DoBdat(std::string_view argument, bool in_sequence, uint64_t now_ms) {
  const size_t space = argument.find(' ');
  const std::string_view digits = argument.substr(0, space);
  uint64_t size = 0;
  const bool size_ok = !digits.empty() && digits.size() <= 20 &&
                       std::all_of(digits.begin(), digits.end(),
                                   [](char c) { return absl::ascii_isdigit(c); }) &&
                       absl::SimpleAtoi(ToAbsl(digits), &size);
  if (!size_ok) {
    // Without the size the chunk's bytes would be read as commands (a smuggling vector).
    Reply(ReplyId::kBadBdatSize, local_host_);
    EnterState(State::kClosing);
    return;
  }
  std::string_view rest = space == std::string_view::npos ? "" : argument.substr(space + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  const bool last = absl::EqualsIgnoreCase(ToAbsl(rest), "LAST");
  std::optional<ReplyId> refusal;
  if (!rest.empty() && !last) {
    refusal = ReplyId::kBdatSyntax;
  } else if (!esmtp_ && state_ != State::kGreeting) {
    refusal = ReplyId::kNotImplemented;  // CHUNKING is offered by EHLO only (RFC 3030)
  } else if (policy_.require_tls() && !tls_) {
    refusal = ReplyId::kNeedStartTls;
  } else if (bdat_aborted_) {
    refusal = ReplyId::kBdatAborted;
  } else if (!in_sequence) {
    refusal = SequenceError(CommandSpec{"BDAT", Verb::kBdat, 0, State::kBdat, 0});
  }
  if (last) bdat_aborted_ = false;  // the client's failed transaction ends here
  if (refusal.has_value()) {
    if (size == 0) {
      Reply(*refusal);
      return;
    }
    discard_remaining_ = size;
    discard_reply_ = *refusal;
    discard_resume_ = state_;
    EnterState(State::kBdatDiscard);
    return;
  }
  if (state_ == State::kRcpt) {
    body_reader_.Begin(&transaction_->message->body, MakeBodyOptions());
  }
  // An empty chunk that does not end the message moves nothing: like NOOP, a client may
  // send only so many.
  if (size == 0 && !last && ++junk_commands_ > limits_.max_junk_commands) ++errors_;
  body_reader_.BeginChunk(size);
  chunk_bytes_ = size;
  bdat_last_ = last;
  EnterState(State::kBdat);
  if (size == 0) FinishChunk(now_ms);
}

// ---------------------------------------------------------------------------------------
// End of body

void SessionMachine::Refuse(ReplyId reply) {
  Reply(reply);
  std::unique_ptr<core::Message> message = std::move(transaction_->message);
  message->body.Clear();  // only the envelope is reported
  PushAction(Action::Kind::kRefused, std::move(message), reply, body_reader_.body_bytes());
}

bool SessionMachine::RefuseDefect() {
  switch (body_reader_.defect()) {
    case BodyDefect::kNone:
      return false;
    case BodyDefect::kTooBig:
      Refuse(ReplyId::kMessageTooBig);
      return true;
    case BodyDefect::kNul:
      Refuse(ReplyId::kNulByte);
      return true;
    case BodyDefect::kBareLf:
      Refuse(ReplyId::kBareLf);
      return true;
    case BodyDefect::kBareCr:
      Refuse(ReplyId::kBareCr);
      return true;
  }
  return true;
}

void SessionMachine::FinishData(uint64_t now_ms) {
  if (RefuseDefect() || RefuseLoop()) {
    EnterState(State::kReady);
    return;
  }
  BeginCommit(now_ms);
}

void SessionMachine::FinishChunk(uint64_t now_ms) {
  if (bdat_last_) body_reader_.FinishChunks();  // settles a CR that was the last octet
  if (RefuseDefect()) {
    // RFC 3030 §2: the transaction has failed; BDATs already pipelined behind this one
    // are swallowed and refused without counting as errors.
    bdat_aborted_ = !bdat_last_;
    EnterState(State::kReady);
    return;
  }
  if (bdat_last_) {
    if (RefuseLoop()) {
      EnterState(State::kReady);
      return;
    }
    BeginCommit(now_ms);
    return;
  }
  Reply(ReplyId::kChunkOk, absl::StrCat(chunk_bytes_));
  EnterState(State::kChunked);
}

bool SessionMachine::RefuseLoop() {
  if (CountTraceFields(transaction_->message->body, limits_.max_hops + 1) <= limits_.max_hops) {
    return false;
  }
  Refuse(ReplyId::kTooManyHops);
  return true;
}

void SessionMachine::FinishDiscard() {
  Reply(discard_reply_);
  EnterState(discard_resume_);
}

void SessionMachine::BeginCommit(uint64_t now_ms) {
  core::Message& message = *transaction_->message;
  message.id = ids_.Next(now_ms);
  message.received_ms = now_ms;
  message.envelope.helo = helo_;
  message.envelope.peer = peer_;
  message.received_header = ReceivedHeader(message, now_ms);
  transaction_->id = message.id;
  PushAction(Action::Kind::kCommit, std::move(transaction_->message));
  EnterState(State::kCommitting);
}

// RFC 5321 §4.4 trace header; 'with' values from RFC 3848 and RFC 6531 §4.3.
std::string SessionMachine::ReceivedHeader(const core::Message& message,
                                           uint64_t now_ms) const {
  const char* with = transaction_->smtputf8 ? (tls_ ? "UTF8SMTPS" : "UTF8SMTP")
                     : esmtp_               ? (tls_ ? "ESMTPS" : "ESMTP")
                                            : "SMTP";
  std::string header = absl::StrCat("Received: from ",
                                    HeaderSafeHelo(helo_, transaction_->smtputf8), " (",
                                    received_tcp_info_,
                                    ")\r\n\tby ",
                                    local_host_, " (ringmail) with ", with);
  if (tls_ && !tls_description_.empty()) absl::StrAppend(&header, " (", tls_description_, ")");
  absl::StrAppend(&header, " id ", ToAbsl(message.id.Hex().view()));
  const auto& recipients = message.envelope.recipients;
  if (recipients.size() == 1) {
    absl::StrAppend(&header, "\r\n\tfor <", recipients[0].address, ">");
  }
  absl::StrAppend(&header, ";\r\n\t", ReceivedDate(now_ms / 1000), "\r\n");
  return header;
}

}  // namespace ringmail::listeners::esmtp
