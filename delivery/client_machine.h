// delivery/client_machine.h — the outbound ESMTP client of one connection as a pure
// machine: server bytes in, command bytes and actions out (STYLE.md principles 12–14).
//
// No sockets, no clock reads, no threads, no callbacks into the caller. One ClientMachine
// per outbound connection, owned by the I/O layer (delivery/smtp_client, written separately)
// and touched only on that connection's loop thread. It holds no references to its caller.
//
// Inputs                                      Outputs (poll after every input)
//   Start()           connected; await 220      TakeOutput()  command bytes: ONE send each
//   Feed(bytes)       whatever recv returned    TakeAction()  kReady, kSendBody, kStartTls,
//   Begin(tx)         after kReady                            kTransactionDone, kClose
//   Quit()            after kReady              deadline()    which RFC 5321 timer to arm
//   BodySent()        after kSendBody           reusable()    idle and healthy (kReady)
//   BodyFailed()      spool read failed         failure()     why the session ended badly
//   TlsEstablished() / TlsFailed()              extensions()  what EHLO announced
//   Timeout()         the deadline() fired
//   ConnectionLost()  peer closed / I/O error
//
// An I/O layer drives it like this (names on the left are the I/O layer's own):
//
//   void Conn::Pump() {
//     for (;;) {
//       if (machine_.HasOutput()) QueueSend(machine_.TakeOutput());  // before any action
//       std::optional<ClientAction> a = machine_.TakeAction();
//       if (!a) break;
//       switch (a->kind) {
//         case kReady:   next transaction for this host ? machine_.Begin(tx) : machine_.Quit();
//         case kSendBody: stream the content from the spool after the queued output: through
//                         a DotStuffer (Encode each chunk, then Finish) for kDotStuffed, or
//                         exactly tx.body_bytes raw bytes for kRaw; when the last byte is
//                         queued, machine_.BodySent(); on a read error, machine_.BodyFailed()
//         case kStartTls: handshake over the socket, then TlsEstablished() or TlsFailed()
//         case kTransactionDone: record a->result (RECIPIENT records, retry, bounce)
//         case kClose:   close once the queued output is sent; the machine is done
//       }
//     }
//     ArmTimer(DeadlineDuration(machine_.deadline(), options)); // kNone: no timer
//   }
//
// Keep receiving for the whole session, also while the body is being sent (a server may
// reject mid-body) and while idle in kReady (a server may say 421 and hang up). A kReady
// action still queued when the connection ends is withdrawn, so a kReady taken from
// TakeAction() always finds the machine ready; a caller that holds on to readiness (an
// idle connection picked later) checks reusable() or Begin()'s result.
//
// Transactions (RFC 5321 §3.3): MAIL FROM:<sender> [SIZE=n] [BODY=8BITMIME|BINARYMIME]
// [SMTPUTF8], RCPT TO:<addr> per recipient, then DATA and the dot-stuffed content, or — when
// the server offers CHUNKING and the options prefer it, or the body is binary — one
// "BDAT <n> LAST" with the raw content, sent only once a recipient was accepted. With
// PIPELINING (RFC 2920) [RSET] MAIL, every RCPT and DATA leave in one send; without it each
// command waits for the previous reply. DATA is never sent in lockstep when no RCPT was
// accepted; when a pipelined DATA was answered 354 regardless, a lone "." ends an empty
// message that reaches nobody. A transaction that ended without a final reply after MAIL
// was accepted leaves the server mid-transaction: the next Begin() starts with RSET (Quit()
// needs none).
//
// Per-recipient results: a 4xx to MAIL or DATA defers every recipient, a 5xx fails them
// all; each RCPT reply decides its recipient; the final reply decides every accepted one.
// A 421 at any point, a timeout, a lost connection, a protocol error or a failed RSET ends
// the connection: undecided recipients become temporary (try the next MX, or later).
//
// Checked here before anything is sent, failing the transaction locally (remote = false):
// sender/recipient syntax unsafe for a command line (5.1.7 / 5.1.3), SIZE larger than the
// server's announced maximum (5.3.4, RFC 1870), non-ASCII addresses to a server without
// SMTPUTF8 (5.6.7, RFC 6531 §3.2), binary content to a server without BINARYMIME+CHUNKING
// (5.6.3), and 8-bit content to a server without 8BITMIME: RFC 6152 §3 leaves the client
// three choices — convert, bounce, or (not allowed, but what most MTAs do) send anyway. We
// cannot convert a stream we do not parse, so the default is to bounce (5.6.3);
// EightBitPolicy::kSendAnyway is the operator's escape hatch.
//
// TLS (RFC 3207): with OutboundTls kOpportunistic/kRequired/kVerify and STARTTLS offered
// (and TLS not yet active), the machine sends STARTTLS and, on 220, asks for the handshake;
// afterwards it forgets the old extensions and sends EHLO again. Bytes that arrive after
// the 220 in the same read (or a partial reply) are a protocol error: a man in the middle
// could inject them. Required TLS that is not offered or is refused ends the session with
// QUIT (failure kTlsUnavailable). The option defaults to kOff; the engine sets it from the
// domain's `tls` (or the global outbound_tls).
//
// States (principle 13): kInit → kGreeting → kEhlo [→ kHelo] [→ kStartTls →
// kTlsHandshake → kEhlo] → kReady ⇄ transaction (kReset → kMail → kRcpt → kData →
// kBody → kDataEnd) → kQuit → kClosed. With pipelining the state names the command whose
// reply is awaited next.
// Every transition goes through EnterState(), checked against a literal table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "config/config.h"
#include "delivery/reply_parser.h"

namespace ringmail::delivery {

// Most recipients one transaction may carry (the caller splits larger groups); a server
// that wants fewer says 452 4.5.3 and those recipients are deferred.
inline constexpr size_t kTransactionRecipientsMax = 1000;
// An address longer than this cannot be right (RFC 5321 §4.5.3.1.3: a path is at most 256
// octets) and would push RCPT TO past its 512-octet line.
inline constexpr size_t kAddressBytesMax = 256;

// How the message content is declared (RFC 6152, RFC 3030): from the original MAIL FROM.
enum class BodyType : uint8_t { k7Bit, k8BitMime, kBinaryMime };

struct Transaction {
  struct Recipient {
    uint32_t index = 0;   // the caller's name for it (its index in the envelope); echoed
    std::string address;  // without angle brackets
  };
  std::string sender;  // "" is the null reverse-path <>
  std::vector<Recipient> recipients;  // 1..kTransactionRecipientsMax
  uint64_t body_bytes = 0;  // content length as stored (Received: header + body)
  BodyType body = BodyType::k7Bit;
  bool smtputf8 = false;  // the original transaction was SMTPUTF8 (also implied by a
                          // non-ASCII address)
};

// BODY= and SMTPUTF8 from a spooled envelope's verbatim MAIL FROM parameters.
struct MailParams {
  BodyType body = BodyType::k7Bit;
  bool smtputf8 = false;
};
MailParams ParseMailParams(std::string_view params);

enum class RecipientOutcome : uint8_t { kDelivered, kTemporary, kPermanent };
const char* RecipientOutcomeName(RecipientOutcome outcome);

struct RecipientResult {
  uint32_t index = 0;  // Transaction::Recipient::index
  RecipientOutcome outcome = RecipientOutcome::kTemporary;
  uint16_t code = 0;       // the deciding reply's code; 0 when decided locally
  EnhancedStatus status;   // always present: the reply's, derived from its code, or local
  // Printable ASCII, no CR/LF, at most ~900 bytes: the reply's Summary() ("550 5.1.1 ...")
  // when remote, else what happened here ("timeout waiting for the DATA reply").
  std::string diagnostic;
  bool remote = false;  // decided by the server's reply (DSN: Remote-MTA, Diagnostic-Code)
};

struct TransactionResult {
  std::vector<RecipientResult> recipients;  // one per Transaction recipient, same order
};

enum class BodyEncoding : uint8_t {
  kDotStuffed,  // DATA: every chunk through a DotStuffer, then its Finish()
  kRaw,         // BDAT: exactly Transaction::body_bytes bytes, unchanged
};

struct ClientAction {
  enum class Kind : uint8_t {
    kReady,            // idle between transactions: call Begin() or Quit()
    kSendBody,         // stream the content now (after the queued output); then BodySent()
    kStartTls,         // TLS handshake now (after the queued output), then TlsEstablished()
    kTransactionDone,  // `result` holds every recipient's outcome
    kClose,            // send the queued output, then close; always the last action
  };
  Kind kind = Kind::kReady;
  BodyEncoding encoding = BodyEncoding::kDotStuffed;  // kSendBody only
  TransactionResult result;                           // kTransactionDone only
};

// Which RFC 5321 §4.5.3.2 timer applies now.
enum class ClientDeadline : uint8_t {
  kNone,       // idle in kReady, closed, or not started: no timer from the machine
  kGreeting,   // initial 220 (§4.5.3.2.1, 5 min)
  kCommand,    // EHLO/HELO/STARTTLS/RSET/QUIT replies and the TLS handshake (5 min)
  kMail,       // §4.5.3.2.2, 5 min
  kRcpt,       // §4.5.3.2.3, 5 min
  kDataInit,   // §4.5.3.2.4, 2 min: the 354
  kDataBlock,  // §4.5.3.2.5, 3 min: re-arm whenever a body send completes
  kDataTerm,   // §4.5.3.2.6, 10 min: the reply after "." or BDAT LAST
};
const char* ClientDeadlineName(ClientDeadline deadline);
// The configured duration for `deadline` (smtp_*_timeout); zero for kNone.
absl::Duration DeadlineDuration(ClientDeadline deadline, const config::GlobalOptions& global);

// Why the session ended badly (for logging and for the choice "next MX or defer").
enum class ClientFailureKind : uint8_t {
  kNone,
  kGreetingRejected,  // 4xx/5xx instead of 220
  kHeloRejected,      // EHLO and HELO refused
  kTlsUnavailable,    // TLS required but not offered or refused
  kTlsFailed,         // the handshake failed
  kServerClosing,     // 421 (any time)
  kResetFailed,       // RSET refused: the server's state is unknown
  kProtocolError,     // unparseable or out-of-sequence reply
  kTimeout,
  kConnectionLost,
  kBodyFailed,        // the content could not be read from the spool
};
const char* ClientFailureKindName(ClientFailureKind kind);

struct ClientFailure {
  ClientFailureKind kind = ClientFailureKind::kNone;
  uint16_t code = 0;       // the server's reply code, when a reply caused it
  std::string diagnostic;  // printable ASCII, no CR/LF
};

enum class EightBitPolicy : uint8_t { kBounce, kSendAnyway };

struct ClientOptions {
  std::string helo_name;  // our host name for EHLO/HELO (GlobalOptions::hostname)
  config::OutboundTls tls = config::OutboundTls::kOff;
  bool prefer_chunking = false;  // BDAT instead of DATA when the server offers CHUNKING
  EightBitPolicy eight_bit = EightBitPolicy::kBounce;
};

enum class ClientState : uint8_t {
  kInit,
  kGreeting,
  kEhlo,
  kHelo,
  kStartTls,
  kTlsHandshake,
  kReady,
  kReset,
  kMail,
  kRcpt,
  kData,
  kBody,
  kDataEnd,
  kQuit,
  kClosed,
  kCount,
};
const char* ClientStateName(ClientState state);

// Turns content chunks into DATA wire bytes (RFC 5321 §4.5.2): a '.' that starts a line
// gets a second '.', at any chunk split. Line endings leave as CRLF only: a bare LF or bare
// CR (which the spool should never hold) becomes CRLF, so nothing we relay can smuggle an
// end-of-data to a lenient server. Finish() adds the CRLF a content not ending in one
// lacks, then ".\r\n". One DotStuffer per message; Reset() for the next.
class DotStuffer {
 public:
  void Encode(std::string_view chunk, std::string* out);
  void Finish(std::string* out);
  void Reset() { *this = DotStuffer(); }
  uint64_t input_bytes() const { return input_bytes_; }

 private:
  enum class Position : uint8_t { kLineStart, kMidLine, kAfterCr };
  Position position_ = Position::kLineStart;
  uint64_t input_bytes_ = 0;
};

class ClientMachine {
 public:
  explicit ClientMachine(ClientOptions options);
  ClientMachine(const ClientMachine&) = delete;
  ClientMachine& operator=(const ClientMachine&) = delete;

  // ---- inputs
  void Start();
  void Feed(std::string_view bytes);
  // In state kReady (announced by a kReady action). `tx` must have 1..kTransaction-
  // RecipientsMax recipients. Returns false, doing nothing, when the connection has ended
  // meanwhile (closed, or quitting after a server's 421 or an error): keep the transaction
  // for another connection. Any other state is a caller bug (RM_CHECK).
  bool Begin(Transaction tx);
  void Quit();  // kReady; a no-op once closed or quitting
  void BodySent();
  void BodyFailed();
  void TlsEstablished();
  // `detail` (printable ASCII, no CR/LF; may be empty) says why, for the diagnostic.
  void TlsFailed(std::string_view detail = {});
  void Timeout();
  void ConnectionLost();

  // ---- outputs
  bool HasOutput() const { return !output_.empty(); }
  std::string TakeOutput();
  std::optional<ClientAction> TakeAction();
  ClientDeadline deadline() const;
  // Complete replies read so far: the I/O layer starts a reply's timer afresh only when
  // this or deadline() changes, so bytes that complete no reply never extend it.
  uint64_t replies() const { return replies_; }

  // ---- observers
  ClientState state() const { return state_; }
  bool closed() const { return state_ == ClientState::kClosed; }
  bool reusable() const { return state_ == ClientState::kReady; }
  bool tls_active() const { return tls_active_; }
  const Extensions& extensions() const { return extensions_; }
  const ClientFailure& failure() const { return failure_; }
  uint32_t transactions_done() const { return transactions_done_; }

 private:
  // One command whose reply is awaited (or will be, once sent).
  struct Command {
    ClientState awaits;    // the state naming its reply: kReset, kMail, kRcpt or kData
    size_t recipient = 0;  // kRcpt: position in the transaction
    std::string line;      // with CRLF
  };
  enum class RcptPhase : uint8_t { kUndecided, kAccepted, kDecided };
  struct OpenTransaction {
    Transaction request;
    std::vector<RecipientResult> results;
    std::vector<RcptPhase> phases;
    size_t accepted = 0;
    bool mail_failed = false;
    bool use_bdat = false;
    bool smtputf8 = false;       // declared, or an address is not ASCII
    bool discard_final = false;  // "." sent only to close an empty DATA: ignore its reply
  };

  void EnterState(ClientState next);
  void PushAction(ClientAction::Kind kind);
  void WithdrawReady();
  void Send(std::string_view line);
  void OnReply(Reply reply);
  void OnGreetingReply(const Reply& reply);
  void OnEhloReply(const Reply& reply);
  void OnHeloReply(const Reply& reply);
  void OnStartTlsReply(const Reply& reply);
  void AfterHello();
  void OnTransactionReply(const Reply& reply);
  void OnMailReply(const Reply& reply);
  void OnRcptReply(const Reply& reply, size_t recipient);
  void OnDataReply(const Reply& reply);
  void OnFinalReply(const Reply& reply);
  void OnBodyReply(const Reply& reply);

  bool CheckLocally();
  void QueueCommands();
  void Flush();
  void Advance();
  void FinishTransaction();
  void Decide(size_t recipient, RecipientOutcome outcome, const Reply& reply);
  void DecideLocal(size_t recipient, RecipientOutcome outcome, EnhancedStatus status,
                   std::string_view diagnostic);
  void DecideAccepted(const Reply& reply);
  void DecideAll(const Reply& reply);

  // Ending the session: undecided recipients become temporary, then kClosed (or QUIT).
  void Fail(ClientFailureKind kind, const Reply* reply, std::string_view detail, bool quit);
  void ProtocolError(std::string_view detail);

  ClientOptions options_;
  ClientState state_ = ClientState::kInit;
  ReplyParser parser_;
  uint64_t replies_ = 0;
  Extensions extensions_;
  bool esmtp_ = false;
  bool tls_active_ = false;
  bool reset_needed_ = false;  // the server holds a transaction we abandoned
  std::optional<OpenTransaction> tx_;
  std::deque<Command> unsent_;    // commands of the transaction not yet written
  std::deque<Command> awaiting_;  // written, reply not yet read (pipelined group)
  std::string output_;
  std::deque<ClientAction> actions_;
  ClientFailure failure_;
  uint32_t transactions_done_ = 0;
};

}  // namespace ringmail::delivery
