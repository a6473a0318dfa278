// listeners/esmtp/session_machine.h — the inbound ESMTP protocol of one connection as a
// pure machine: bytes in, reply bytes and actions out (STYLE.md principles 12–14).
//
// No sockets, no clock reads, no threads, no callbacks into the caller. One machine per
// connection, owned by the I/O session (listeners/esmtp/session, written separately) and
// touched only on that session's loop thread. The machine keeps references to a Policy and
// a core::MessageIdGenerator that must outlive it (the session pins its config generation;
// the generator belongs to the loop).
//
// Inputs                                   Outputs (poll after every input)
//   Start(peer_ip, peer_port, local_host)    TakeOutput()  reply bytes, send them in ONE send
//   Feed(bytes, now_ms) -> bytes consumed    TakeAction()  kNeedTransactionSlot,
//   Continue(now_ms)                                       kReleaseTransactionSlot,
//   SlotGranted()                                          kCommit(message), kStartTls,
//   CommitDone(status)                                     kClose
//   TlsEstablished(description)              CanContinue() more buffered input can run now
//   Timeout()                                WantsInput()  keep the recv armed?
//   Shutdown()                               deadline()    which RFC 5321 timer to arm
//
// Flushing (RFC 2920): replies accumulate in the output while a pipelined group is
// processed; the I/O layer sends whatever TakeOutput() returns after each input call, as one
// send. A group ends where the input runs out or at a command that must be last in a group
// (EHLO, HELO, DATA, NOOP, QUIT, VRFY, EXPN, HELP, STARTTLS): if more bytes follow such a
// command the machine stops there, keeps the rest in its bounded pending buffer and
// CanContinue() stays false until TakeOutput() has been called, so that group's replies
// leave before the next group is read.
//
// Back-pressure: while the machine waits for a transaction slot (max_processings), for the
// spool's CommitDone, or for a TLS handshake, it processes no further commands; bytes fed
// meanwhile are kept (up to SessionLimits::pending_input_bytes_max) and Feed returns fewer
// bytes than it was given once that is full. The I/O layer stops receiving while
// WantsInput() is false and keeps any unconsumed tail to feed again later. The machine never
// grows its output without bound either: replies are produced only in answer to input.
//
// Closing: after kClose, send the remaining output, then close. Everything fed afterwards is
// ignored. If the peer vanishes first, destroy the machine; if holds_transaction_slot()
// was true, return the slot.
//
// An I/O layer drives it like this (names on the left are the I/O layer's own):
//
//   void Session::OnStart() { machine_.Start(ip, port, hostname); Pump(); }
//   void Session::OnRecv(std::string_view bytes) {          // one recv completion
//     size_t used = machine_.Feed(bytes, loop_.now_ms());
//     if (used < bytes.size()) KeepForLater(bytes.substr(used));  // rare: buffer full
//     Pump();
//   }
//   void Session::Pump() {
//     for (;;) {
//       while (std::optional<Action> a = machine_.TakeAction()) Execute(std::move(*a));
//       if (machine_.CanContinue()) { machine_.Continue(loop_.now_ms()); continue; }
//       if (!machine_.HasOutput()) break;
//       QueueSend(machine_.TakeOutput());   // one send per pipelined group
//     }
//     ArmTimer(machine_.deadline());          // kCommand 5 min, kDataBlock 3 min, ...
//     SetReceiving(machine_.WantsInput());     // then re-feed any kept tail
//   }
//   // Execute: kNeedTransactionSlot -> grant now or queue; on grant machine_.SlotGranted()
//   //          kCommit -> spool; in its completion machine_.CommitDone(status), Pump()
//   //          kReleaseTransactionSlot -> give the slot (or the queued request) back
//   //          kStartTls -> handshake; then machine_.TlsEstablished(), Pump()
//   //          kClose -> close after the queued sends
//   // The deadline timer calls machine_.Timeout(); SIGTERM calls machine_.Shutdown().
//
// States (principle 13): kInit → kGreeting (greeted, no HELO yet) → kReady (after HELO/EHLO,
// no transaction) → kAwaitSlot (MAIL parsed, waiting for a slot) → kMail → kRcpt → kData /
// kBdat ⇄ kChunked → kCommitting → kReady; kBdatDiscard swallows the bytes of a refused
// BDAT; kStartTls waits for the handshake; kQuit and kClosing are terminal. Facts that are
// not sequencing (EHLO used, TLS active, shutting down) are flags. Every transition goes
// through EnterState(), which checks it against a literal table of legal transitions.
// The transaction (envelope, recipients, body, slot) is created at MAIL and destroyed on
// one path, EndTransaction(), run by entering kReady/kGreeting/kQuit/kClosing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "core/message.h"
#include "listeners/esmtp/policy.h"
#include "listeners/esmtp/replies.h"
#include "listeners/esmtp/smtp_parser.h"

namespace ringmail::listeners::esmtp {

namespace session_internal {
struct CommandSpec;  // one row of the command table, defined in session_machine.cc
}  // namespace session_internal

// Plain numbers ringmaild copies from the ESMTP_Listener config scope.
struct SessionLimits {
  uint64_t max_message_size_bytes = 20 * 1024 * 1024;  // advertised in SIZE; 0 = none
  uint32_t max_recipients = 100;    // per transaction; the excess gets 452 4.5.3
  uint32_t max_errors = 20;         // client errors before 421 4.7.0 and close
  uint32_t max_junk_commands = 100;  // NOOP/RSET/VRFY/EXPN/HELP and empty non-LAST BDAT
                                     // chunks beyond this count as errors
  // Recipients refused 452 past max_recipients before each further one counts as an error
  // (Postfix's smtpd_recipient_overshoot_limit): a client that ignores 452 is closed in
  // the end, one that resends the rest in a later transaction never meets it.
  uint32_t recipient_overshoot = 1000;
  uint32_t max_messages_per_connection = 0;  // MAIL commands accepted; then 421; 0 = none
  // A message whose header already holds more Received: fields than this is in a mail
  // loop (RFC 5321 §6.3: count them, with a threshold of at least 100): 554 5.4.6.
  uint32_t max_hops = 100;
  size_t pending_input_bytes_max = 64 * 1024;  // input kept while paused or between groups
};

enum class State : uint8_t {
  kInit,
  kGreeting,
  kReady,
  kAwaitSlot,
  kMail,
  kRcpt,
  kData,
  kBdat,
  kChunked,
  kBdatDiscard,
  kCommitting,
  kStartTls,
  kQuit,
  kClosing,
  kCount,
};
const char* StateName(State state);

// Which timer applies now (RFC 5321 §4.5.3.2; each is a configured wait for the client).
enum class DeadlineKind : uint8_t {
  kNone,       // closed, or not started
  kCommand,    // §4.5.3.2.7: awaiting HELO/EHLO, or the next BDAT (at least 5 minutes)
  kMail,       // awaiting MAIL, after HELO/EHLO or a transaction (mail_timeout)
  kRcpt,       // inside a transaction, awaiting RCPT or DATA/BDAT (rcpt_timeout)
  kDataInit,   // 354 sent, no body byte yet (data_init_timeout)
  kDataBlock,  // §4.5.3.2.5: inside DATA / a BDAT chunk (3 minutes per block)
  kServer,     // the client waits on us (slot, spool, TLS): the I/O layer's own bound
};

struct Action {
  enum class Kind : uint8_t {
    kNeedTransactionSlot,     // call SlotGranted() when one is free (may be at once)
    kReleaseTransactionSlot,  // the slot held, or the request made, is given up
    kCommit,                  // make `message` durable, then CommitDone(status)
    kStartTls,                // run the TLS handshake, then TlsEstablished()
    kClose,                   // send the pending output, then close the connection
    kRefused,                 // a message was refused at its end (for the reception log)
  };
  Kind kind;
  std::unique_ptr<core::Message> message;  // kCommit; kRefused: its envelope (no body)
  ReplyId refusal = ReplyId::kOk;          // kRefused: what the client was told
  uint64_t size_bytes = 0;                 // kRefused: body octets received
};

class SessionMachine {
 public:
  // `policy` and `ids` must outlive the machine.
  SessionMachine(const SessionLimits& limits, const Policy& policy,
                 core::MessageIdGenerator& ids);
  SessionMachine(const SessionMachine&) = delete;
  SessionMachine& operator=(const SessionMachine&) = delete;

  // ---- inputs
  // Greets (220). `peer_ip` is the textual address (IPv4, IPv6, or IPv4-mapped IPv6).
  void Start(std::string_view peer_ip, uint16_t peer_port, std::string_view local_host);
  // Returns how many bytes were consumed (all of them unless the pending buffer is full).
  // `now_ms` (Unix ms, the loop's cached time) dates a message completed by these bytes.
  size_t Feed(std::string_view bytes, uint64_t now_ms);
  // Processes buffered input; call while CanContinue().
  void Continue(uint64_t now_ms);
  void SlotGranted();
  void CommitDone(const absl::Status& status);
  // The STARTTLS handshake completed. `description` ("TLS1.3 TLS_AES_256_GCM_SHA384")
  // goes into the Received header of every message of this connection.
  void TlsEstablished(std::string_view description = {});
  // The greeting's text after "220 " (the banner, which should begin with the host name,
  // RFC 5321 §4.3.1); empty: "<local_host> ESMTP ringmail". Call before Start().
  void SetBanner(std::string_view text) { banner_ = std::string(text); }
  // Implicit TLS (SMTPS): the connection was TLS before the greeting. Call before Start();
  // STARTTLS is then neither offered nor accepted.
  void SetImplicitTls(std::string_view description);
  void Timeout();
  void Shutdown();

  // ---- outputs
  bool HasOutput() const { return !output_.empty(); }
  std::string TakeOutput();  // also ends the current pipelined group
  // The same without giving the buffer away: read output(), then ConsumeOutput(), which
  // empties it (keeping its capacity for the next replies) and ends the group likewise.
  std::string_view output() const { return output_; }
  void ConsumeOutput();
  std::optional<Action> TakeAction();
  bool CanContinue() const;
  bool WantsInput() const;
  DeadlineKind deadline() const;

  // ---- observers (tests, metrics, logging)
  State state() const { return state_; }
  bool closed() const { return state_ == State::kQuit || state_ == State::kClosing; }
  bool holds_transaction_slot() const { return slot_ == Slot::kHeld; }
  size_t buffered_input_bytes() const;
  uint32_t errors() const { return errors_; }
  // Optional: called on every transition (for the session's trace log).
  using TraceHook = void (*)(void* context, State from, State to);
  void set_trace_hook(TraceHook hook, void* context) {
    trace_hook_ = hook;
    trace_context_ = context;
  }

 private:
  enum class Slot : uint8_t { kNone, kRequested, kHeld };
  struct Transaction {
    std::unique_ptr<core::Message> message;  // moved out by kCommit
    core::MessageId id;                      // set at end of data, for "queued as"
    BodyType body = BodyType::kUnspecified;
    bool smtputf8 = false;
  };
  using CommandSpec = session_internal::CommandSpec;

  void EnterState(State next);
  std::optional<State> OnEnter();
  std::optional<State> ShutdownIfDraining();
  void EndTransaction();

  size_t ProcessInput(std::string_view input, uint64_t now_ms);
  size_t Stash(std::string_view bytes);
  void DropPendingInput();
  bool Paused() const;
  bool HandleLineEvent(const CommandLineReader::Event& event, uint64_t now_ms);
  void HandleCommand(const CommandSpec& spec, std::string_view argument, uint64_t now_ms);
  ReplyId SequenceError(const CommandSpec& spec) const;
  void CheckErrorLimit();

  // Each returns true when the command succeeded and the table's next state applies.
  bool DoHelo(std::string_view argument, bool extended);
  bool DoMail(std::string_view argument);
  bool DoRcpt(std::string_view argument);
  bool DoData(std::string_view argument);
  bool DoStartTls(std::string_view argument);
  bool DoSimple(const CommandSpec& spec, std::string_view argument);
  void DoBdat(std::string_view argument, bool in_sequence, uint64_t now_ms);
  BodyOptions MakeBodyOptions() const;
  void FinishData(uint64_t now_ms);
  void FinishChunk(uint64_t now_ms);
  void FinishDiscard();
  void Refuse(ReplyId reply);  // the message of this transaction: reply, and say so
  bool RefuseDefect();
  bool RefuseLoop();  // more than max_hops Received: fields: 554 5.4.6
  void BeginCommit(uint64_t now_ms);
  std::string ReceivedHeader(const core::Message& message, uint64_t now_ms) const;

  void Reply(ReplyId id);
  void Reply(ReplyId id, std::string_view arg);
  void PushAction(Action::Kind kind, std::unique_ptr<core::Message> message = nullptr,
                  ReplyId refusal = ReplyId::kOk, uint64_t size_bytes = 0);

  const SessionLimits limits_;
  const Policy& policy_;
  core::MessageIdGenerator& ids_;

  State state_ = State::kInit;
  // Orthogonal facts.
  bool esmtp_ = false;          // EHLO (not HELO) was used
  bool tls_ = false;            // TLS is active
  bool shutting_down_ = false;  // Shutdown() was called
  bool group_ended_ = false;    // a must-be-last command ran with input behind it
  bool bdat_aborted_ = false;   // a BDAT failed; pipelined BDATs behind it are refused
  Slot slot_ = Slot::kNone;
  uint32_t errors_ = 0;
  uint32_t junk_commands_ = 0;
  uint32_t mail_commands_ = 0;   // accepted this connection (max_messages_per_connection)
  uint32_t overshoot_ = 0;       // recipients refused past max_recipients, this transaction
  bool data_started_ = false;    // a body byte arrived since 354 (kDataInit → kDataBlock)

  std::string local_host_;
  std::string banner_;
  std::string tls_description_;  // version and cipher, for Received
  std::string helo_;
  std::optional<IpAddress> peer_ip_;
  std::string peer_;  // "ip:port" / "[ip]:port" for the envelope
  std::string received_tcp_info_;  // "[literal]" or "unknown": made once, used per message

  std::unique_ptr<Transaction> transaction_;
  CommandLineReader lines_;
  BodyReader body_reader_;
  bool bdat_last_ = false;     // the chunk being read is BDAT ... LAST
  uint64_t chunk_bytes_ = 0;   // size of the chunk being read (for its 250 reply)
  uint64_t discard_remaining_ = 0;
  ReplyId discard_reply_ = ReplyId::kNeedMail;
  State discard_resume_ = State::kReady;

  std::string pending_;  // unprocessed input, bounded by pending_input_bytes_max
  size_t pending_offset_ = 0;
  std::string output_;
  std::deque<Action> actions_;

  TraceHook trace_hook_ = nullptr;
  void* trace_context_ = nullptr;
};

}  // namespace ringmail::listeners::esmtp
