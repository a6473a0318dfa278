// fuzz/session_machine_fuzz.cc — libFuzzer target for the whole inbound ESMTP machine
// (listeners/esmtp/session_machine.h), driven the way listeners/esmtp/session drives it.
//
// Input layout (FuzzedDataProvider): a 16-bit setup word and then a stream of op bytes are
// taken from the END of the input; the bytes that ops feed to the machine come from the
// FRONT, so a seed file is a plain SMTP dialogue followed by a few op bytes. Ops: feed the
// next N bytes, feed a canned command, grant the transaction slot, finish the commit with
// a chosen Status, finish the TLS handshake, Timeout(), Shutdown(). Slot grants, commits and
// handshakes complete only when an op says so, so every interleaving of the machine's
// asynchronous requests with client bytes, timers and SIGTERM is reachable.
//
// Oracles beyond "no crash": every reply line is well formed; input kept by the machine
// stays bounded; nothing is answered or committed after close; a commit carries a held
// slot, at least one recipient and a body within the limits (canonical CRLF unless
// BINARYMIME); at most one "queued as" per successful CommitDone; a closed machine holds no
// slot. In "sync" mode (setup bit 0) every request completes at once and the same bytes fed
// in one piece must give the very same replies and messages (slicing never matters).
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "base/check.h"
#include "core/message.h"
#include "listeners/esmtp/policy.h"
#include "listeners/esmtp/session_machine.h"
#include "listeners/esmtp/smtp_parser.h"

namespace ringmail::listeners::esmtp {
namespace {

constexpr uint64_t kNowMs = 1700000000000;
constexpr size_t kOpsMax = 4096;
constexpr size_t kFeedSizes[16] = {1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 256, 512, 1500, 8192};
constexpr std::string_view kCanned[16] = {
    "EHLO client.example\r\n",
    "HELO h\r\n",
    "MAIL FROM:<a@b.example>\r\n",
    "MAIL FROM:<a@b.example> BODY=BINARYMIME SIZE=40\r\n",
    "RCPT TO:<x@example.com>\r\n",
    "RCPT TO:<y@other.example>\r\n",
    "DATA\r\n",
    "hello\r\n.\r\n",
    "BDAT 5\r\nhello",
    "BDAT 7 LAST\r\nhello\r\n",
    "STARTTLS\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "QUIT\r\n",
    "MAIL FROM:<j\xc3\xb6@b.example> SMTPUTF8\r\n",
    "\r\n.\r\n",
};

const Policy& PolicyFor(uint16_t setup) {
  static std::array<std::optional<Policy>, 16> policies;
  const size_t index = (setup >> 1) & 0xf;
  if (!policies[index].has_value()) {
    PolicyOptions options;
    options.relay_domains = {"example.com", ".sub.example.net"};
    if (index & 1) options.relay_hosts = {"192.0.2.0/24", "2001:db8::/32"};
    options.bare_lf = (index & 2) ? BareLineEndings::kNormalize : BareLineEndings::kReject;
    options.starttls_offered = (index & 4) != 0;
    options.require_tls = (index & 8) != 0;
    policies[index] = Policy::Create(options).value();
  }
  return *policies[index];
}

SessionLimits LimitsFor(uint16_t setup) {
  SessionLimits limits;
  if (setup & 0x20) {  // small limits, so the fuzzer hits every one of them quickly
    limits.max_message_size_bytes = 64;
    limits.max_recipients = 2;
    limits.max_errors = (setup & 0x40) ? 3 : 1000;
    limits.max_junk_commands = 4;
    limits.pending_input_bytes_max = 256;
  }
  return limits;
}

constexpr std::string_view kPeers[4] = {"192.0.2.9", "2001:db8::5", "::ffff:192.0.2.77",
                                        "not-an-ip"};

absl::Status CommitStatus(uint8_t choice) {
  switch (choice % 8) {
    case 0:
      return absl::UnavailableError("spool busy");
    case 1:
      return absl::ResourceExhaustedError("disk full");
    case 2:
      return absl::InternalError("bug");
    case 3:
      return absl::DataLossError("torn");
    case 4:
      return absl::InvalidArgumentError("too big");
    default:
      return absl::OkStatus();
  }
}

void CheckReplies(std::string_view out) {
  RM_CHECK(out.size() >= 5 && out.substr(out.size() - 2) == "\r\n") << out;
  for (size_t start = 0; start < out.size();) {
    const size_t end = out.find("\r\n", start);
    RM_CHECK(end != std::string_view::npos);
    const std::string_view line = out.substr(start, end - start);
    RM_CHECK(line.size() >= 4 && line.size() <= 512) << line;
    RM_CHECK(line[0] >= '2' && line[0] <= '5') << line;
    RM_CHECK(line[3] == ' ' || line[3] == '-') << line;
    for (char c : line) RM_CHECK(c >= 0x20 && c < 0x7f) << "reply echoes raw bytes: " << line;
    start = end + 2;
  }
}

void CheckMessage(const core::Message& m, const SessionLimits& limits) {
  RM_CHECK(!m.envelope.recipients.empty());
  RM_CHECK(m.envelope.recipients.size() <= limits.max_recipients);
  RM_CHECK(limits.max_message_size_bytes == 0 || m.body.size() <= limits.max_message_size_bytes);
  RM_CHECK(m.received_header.rfind("Received: from ", 0) == 0);
  if (m.envelope.mail_params.find("BINARYMIME") != std::string::npos) return;
  const std::string body = m.body.ToString();
  for (size_t i = 0; i < body.size(); ++i) {
    RM_CHECK(body[i] != '\0');
    if (body[i] == '\n') RM_CHECK(i > 0 && body[i - 1] == '\r') << "bare LF committed";
    if (body[i] == '\r') RM_CHECK(i + 1 < body.size() && body[i + 1] == '\n') << "bare CR";
  }
}

struct Outcome {
  std::string output;
  std::vector<std::string> bodies;
  bool closed = false;
  bool operator==(const Outcome&) const = default;
};

// Plays the I/O session: executes actions, keeps the unconsumed tail, and in async mode
// leaves slot grants, commits and handshakes outstanding until an op completes them.
class Driver {
 public:
  Driver(const SessionLimits& limits, const Policy& policy, bool sync)
      : limits_(limits), machine_(limits, policy, ids_), sync_(sync) {}

  void Start(std::string_view peer, uint16_t port) {
    machine_.Start(peer, port, "mx.fuzz.example");
    Pump();
  }

  void Feed(std::string_view bytes, bool even_if_paused) {
    unfed_.append(bytes);
    if (even_if_paused || machine_.WantsInput()) FeedTail();
  }

  void GrantSlot() {
    if (!slot_requested_) return;
    slot_requested_ = false;
    slot_held_ = true;
    machine_.SlotGranted();
    Pump();
  }

  void FinishCommit(const absl::Status& status) {
    if (!commit_pending_) return;
    commit_pending_ = false;
    if (status.ok()) ++commits_ok_;
    machine_.CommitDone(status);
    Pump();
  }

  void FinishTls() {
    if (!tls_pending_) return;
    tls_pending_ = false;
    machine_.TlsEstablished();
    Pump();
  }

  void Timeout() {
    machine_.Timeout();
    Pump();
  }

  void Shutdown() {
    machine_.Shutdown();
    Pump();
  }

  // Completes everything outstanding and feeds what is left, until nothing moves.
  Outcome Finish() {
    for (int round = 0; round < 1000; ++round) {
      const bool busy = slot_requested_ || commit_pending_ || tls_pending_ ||
                        (!unfed_.empty() && machine_.WantsInput());
      if (!busy) break;
      GrantSlot();
      FinishCommit(absl::OkStatus());
      FinishTls();
      FeedTail();
    }
    outcome_.closed = machine_.closed();
    if (outcome_.closed) {
      RM_CHECK(!slot_held_ && !slot_requested_) << "closed machine keeps its slot";
      RM_CHECK(!machine_.WantsInput() && !machine_.CanContinue());
      RM_CHECK(machine_.deadline() == DeadlineKind::kNone);
    }
    return outcome_;
  }

 private:
  void FeedTail() {
    for (int guard = 0; guard < 100000 && !unfed_.empty(); ++guard) {
      const bool was_closed = machine_.closed();
      const size_t used = machine_.Feed(unfed_, kNowMs);
      RM_CHECK(used <= unfed_.size());
      if (was_closed) RM_CHECK(used == unfed_.size() && !machine_.HasOutput());
      fed_bytes_ += used;
      unfed_.erase(0, used);
      Pump();
      RM_CHECK(machine_.buffered_input_bytes() <=
               limits_.pending_input_bytes_max + kCommandLineBytesMax);
      if (used == 0 || !machine_.WantsInput()) return;
    }
  }

  void Pump() {
    for (int guard = 0; guard < 100000; ++guard) {
      while (std::optional<Action> a = machine_.TakeAction()) Execute(std::move(*a));
      if (machine_.CanContinue()) {
        machine_.Continue(kNowMs);
        continue;
      }
      if (!machine_.HasOutput()) return;
      // Both ways of reading the output: taken whole, or read in place and consumed (how
      // the session sends it, keeping the buffer); they must end a group alike.
      std::string out;
      if (events_ % 2 == 0) {
        out = machine_.TakeOutput();
      } else {
        out = std::string(machine_.output());
        machine_.ConsumeOutput();
      }
      RM_CHECK(!replied_after_close_) << "output after the close was sent";
      CheckReplies(out);
      outcome_.output += out;
      CheckAmplification(out);
      if (machine_.closed()) replied_after_close_ = closed_seen_;
    }
    RM_CHECK(false) << "pump does not settle";
  }

  // Replies come only in answer to input: bounded by the bytes consumed and the events.
  void CheckAmplification(std::string_view out) {
    ++events_;
    RM_CHECK(outcome_.output.size() <= 600 * (fed_bytes_ + events_ + 1));
    for (size_t at = out.find(" Ok: queued as "); at != std::string_view::npos;
         at = out.find(" Ok: queued as ", at + 1)) {
      ++queued_;
    }
    RM_CHECK(queued_ <= commits_ok_) << "queued before the commit completed";
  }

  void Execute(Action action) {
    switch (action.kind) {
      case Action::Kind::kNeedTransactionSlot:
        RM_CHECK(!slot_requested_ && !slot_held_) << "second slot request";
        slot_requested_ = true;
        if (sync_) GrantSlot();
        break;
      case Action::Kind::kReleaseTransactionSlot:
        RM_CHECK(slot_requested_ || slot_held_) << "release without a slot";
        if (slot_requested_) {
          slot_requested_ = false;
        } else {
          slot_held_ = false;
        }
        break;
      case Action::Kind::kCommit:
        RM_CHECK(slot_held_ && !commit_pending_) << "commit without a slot";
        RM_CHECK(!machine_.closed());
        CheckMessage(*action.message, limits_);
        outcome_.bodies.push_back(action.message->body.ToString());
        commit_pending_ = true;
        if (sync_)
          FinishCommit(outcome_.bodies.size() % 5 == 0 ? CommitStatus(0) : absl::OkStatus());
        break;
      case Action::Kind::kStartTls:
        RM_CHECK(!tls_pending_);
        tls_pending_ = true;
        if (sync_) FinishTls();
        break;
      case Action::Kind::kClose:
        RM_CHECK(machine_.closed());
        RM_CHECK(!closed_seen_) << "second kClose";
        closed_seen_ = true;
        break;
      case Action::Kind::kRefused:
        RM_CHECK(action.message != nullptr && action.message->body.empty());
        RM_CHECK(GetReply(action.refusal).code >= 500) << "a refusal is permanent";
        break;
    }
  }

  SessionLimits limits_;
  core::MessageIdGenerator ids_{7, 0x5eed};
  SessionMachine machine_;
  bool sync_;
  std::string unfed_;
  bool slot_requested_ = false;
  bool slot_held_ = false;
  bool commit_pending_ = false;
  bool tls_pending_ = false;
  bool closed_seen_ = false;
  bool replied_after_close_ = false;
  size_t commits_ok_ = 0;
  size_t queued_ = 0;
  size_t fed_bytes_ = 0;
  size_t events_ = 0;
  Outcome outcome_;
};

// Runs the op stream; returns every byte fed (for the sync-mode comparison).
std::string RunOps(FuzzedDataProvider& provider, Driver& driver, bool sync) {
  std::string fed;
  for (size_t ops = 0; ops < kOpsMax && provider.remaining_bytes() > 0; ++ops) {
    const uint8_t op = provider.ConsumeIntegral<uint8_t>();
    const uint8_t arg = op & 0x0f;
    std::string bytes;
    switch (op >> 4) {
      case 10:
        driver.GrantSlot();
        continue;
      case 11:
        driver.FinishCommit(CommitStatus(arg));
        continue;
      case 12:
        driver.FinishTls();
        continue;
      case 13:
        if (!sync) driver.Timeout();
        continue;
      case 14:
        if (!sync) driver.Shutdown();
        continue;
      case 15:
        bytes = std::string(kCanned[arg]);
        break;
      default:
        bytes = provider.ConsumeBytesAsString(kFeedSizes[arg]);
        break;
    }
    fed += bytes;
    driver.Feed(bytes, /*even_if_paused=*/(op >> 4) & 1);
  }
  return fed;
}

}  // namespace
}  // namespace ringmail::listeners::esmtp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::listeners::esmtp;  // NOLINT: the target's whole vocabulary
  FuzzedDataProvider provider(data, size);
  const uint16_t setup = provider.ConsumeIntegral<uint16_t>();
  const bool sync = (setup & 1) != 0;
  const SessionLimits limits = LimitsFor(setup);
  // STARTTLS makes slicing matter for real (later bytes are TLS records): not in sync mode.
  const Policy& policy = PolicyFor(sync ? setup & ~uint16_t{0x8} : setup);
  const std::string_view peer = kPeers[(setup >> 7) & 3];
  Driver driver(limits, policy, sync);
  if (!sync && (setup & 0x200) != 0) driver.Shutdown();  // SIGTERM before the greeting
  driver.Start(peer, static_cast<uint16_t>(setup >> 4));
  const std::string fed = RunOps(provider, driver, sync);
  const Outcome outcome = driver.Finish();
  if (!sync) return 0;
  Driver whole(limits, policy, /*sync=*/true);
  whole.Start(peer, static_cast<uint16_t>(setup >> 4));
  whole.Feed(fed, /*even_if_paused=*/false);
  const Outcome expected = whole.Finish();
  RM_CHECK(outcome == expected) << "slicing changed the session";
  return 0;
}
