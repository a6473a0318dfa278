// tools/ringload/sink.h — `ringload sink`: a fast downstream SMTP server on one loop.
//
// One SinkWorker per loop: its own SO_REUSEPORT listening socket (made by main, so the
// port is known before any loop runs) with a multishot accept, a provided-buffer ring for
// multishot recv, and a pool of SinkSession slots. A session parses commands as they
// arrive, scans DATA for the end with memchr (never byte by byte), un-dot-stuffs only when
// --dump asks for the content, and sends all the replies produced by one received buffer
// in one send (a pipelined group gets one answer).
//
// Final replies: 250 with a queue id, or with --reply an injected 4xx/5xx drawn from a
// per-loop generator seeded by --seed (deterministic for a given order of arrival), after
// --delay ms if asked (input arriving meanwhile is held, bounded). A message counts as
// answered when the send carrying its final reply completes; --expect ends the run then.
//
// Threads: built by main, run on its loop (Start / Shutdown posted), stats read by main
// after the loops joined.
//
// TLS (--tls CERT KEY): EHLO offers STARTTLS; after "220 Ready to start TLS" a
// tls::TlsSession (the project's socket-free engine) sits between the ring and the
// protocol: received ciphertext is fed to it, decrypted input goes through the same
// parser, replies are encrypted into the same sends. Input pipelined behind STARTTLS is
// discarded (RFC 3207).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/buffers.h"
#include "core/loop.h"
#include "tools/ringload/file_io.h"
#include "tools/ringload/options.h"
#include "tools/ringload/run_state.h"
#include "tls/session.h"

namespace ringmail::ringload {

struct SinkStats {
  uint64_t connections = 0;
  uint64_t refused = 0;  // over --max-connections: closed at once
  uint64_t messages = 0;  // accepted (250)
  uint64_t bytes = 0;     // content bytes of accepted messages, after un-stuffing
  uint64_t rejected = 0;  // injected replies and limit refusals
  uint64_t command_errors = 0;
  uint64_t accept_errors = 0;
  uint64_t file_errors = 0;
  uint64_t tls_handshakes = 0;
  uint64_t tls_errors = 0;  // failed handshakes and TLS read errors
  CodeCounts codes;  // final replies to message content
  std::string first_error;
  void Merge(const SinkStats& o);
};

class SinkWorker;

class SinkSession {
 public:
  SinkSession(SinkWorker* worker, uint32_t slot);
  ~SinkSession();
  SinkSession(const SinkSession&) = delete;
  SinkSession& operator=(const SinkSession&) = delete;

  void Start(int fd);
  void Shutdown();
  bool free() const { return state_ == State::kFree; }

 private:
  enum class State : uint8_t { kFree, kCommand, kData, kBdat, kDelayed, kQuit, kClosing };
  enum class Scan : uint8_t { kLineStart, kMid, kDot, kDotCr };

  void RecvDone(core::Operation& op, core::IoResult r);
  void SendDone(core::Operation& op, core::IoResult r);
  void CloseDone(core::Operation& op, core::IoResult r);
  void TimerFired(core::Timer& t);

  void ArmRecv();
  void Input(std::string_view data);
  void InputPlain(std::string_view data);
  // TLS: handshake and decrypt what is buffered; false once the session is closing.
  bool TlsDrain();
  void StartTls(std::string_view line);
  void BeginTls();
  // Moves replies to wire_ (encrypted under TLS).
  void MoveToWire();
  // Consumes what it can; stops early when a reply must wait (--delay) or on QUIT.
  size_t Process(std::string_view data);
  size_t ProcessCommandBytes(std::string_view data);
  size_t ScanData(std::string_view data, bool* end);
  void Emit(std::string_view content);
  void Command(std::string_view line);
  void Mail(std::string_view args);
  void Rcpt(std::string_view args);
  void Data();
  void Bdat(std::string_view args);
  void BdatChunkDone();
  void EndOfMessage();
  void FinalReply(std::string_view reply);
  void Reply(std::string_view reply) { out_.append(reply); }
  void CommandError(std::string_view reply);
  void ResetTxn();
  void Flush();
  void Close();
  void MaybeCloseFd();
  void ArmIdle();

  SinkWorker* worker_;
  State state_ = State::kFree;
  int fd_ = -1;
  core::Operation recv_op_;
  core::Operation send_op_;
  core::Operation close_op_;
  core::Timer timer_;

  std::string line_;  // a partial command line
  bool skip_line_ = false;
  std::string pending_;  // input held while a delayed reply waits
  std::string replay_;
  std::string out_;
  std::string wire_;  // bytes for the socket: out_ as is, or its ciphertext
  std::string sending_;
  std::unique_ptr<tls::TlsSession> tls_;
  bool starttls_ = false;  // STARTTLS answered; the handshake starts after this input
  uint32_t out_finals_ = 0;
  uint32_t sending_finals_ = 0;
  std::string delayed_reply_;
  bool quit_after_final_ = false;
  uint32_t errors_ = 0;

  // Transaction.
  bool mail_ = false;
  uint32_t rcpts_ = 0;
  std::string envelope_;  // dump only: "MAIL FROM:<..>\r\nRCPT TO:<..>\r\n..."
  std::string message_;   // dump only: the content after un-stuffing
  uint64_t msg_bytes_ = 0;
  uint32_t line_bytes_ = 0;
  bool too_big_ = false;
  bool too_long_ = false;
  Scan scan_ = Scan::kLineStart;
  uint64_t bdat_left_ = 0;
  bool bdat_last_ = false;
  int bdat_refusal_ = 0;  // BDAT without a valid envelope: its chunk is read, then refused
};

class SinkWorker {
 public:
  SinkWorker(core::Loop& loop, const SinkOptions& options, RunControl& control, uint32_t index,
             int listen_fd, uint32_t max_sessions);
  ~SinkWorker();
  SinkWorker(const SinkWorker&) = delete;
  SinkWorker& operator=(const SinkWorker&) = delete;

  void Start();
  void Shutdown();

  const LiveCounters& live() const { return live_; }
  const SinkStats& stats() const { return stats_; }
  uint64_t first_accept_us() const { return first_accept_us_; }  // 0: none
  uint64_t last_answer_us() const { return last_answer_us_; }

 private:
  friend class SinkSession;

  void AcceptDone(core::Operation& op, core::IoResult r);
  void ArmAccept();
  void SessionFreed(SinkSession* s);
  void Answered(uint32_t n);
  void MaybeDone();
  void PollTimer(core::Timer& t);
  int DrawReply();
  void NoteError(const std::string& what);

  core::Loop& loop_;
  const SinkOptions& options_;
  RunControl& control_;
  const uint32_t index_;
  int listen_fd_;
  const uint32_t max_sessions_;
  core::Operation accept_op_;
  core::Operation listen_close_op_;
  core::Timer poll_timer_;
  std::unique_ptr<core::BufferRing> buffers_;
  std::vector<std::unique_ptr<SinkSession>> sessions_;
  std::vector<SinkSession*> free_;
  size_t live_sessions_ = 0;
  std::unique_ptr<DumpWriter> dump_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  std::vector<double> reply_cumulative_;
  uint64_t next_id_ = 0;
  bool stopping_ = false;
  bool done_ = false;
  std::string scratch_;
  uint64_t first_accept_us_ = 0;
  uint64_t last_answer_us_ = 0;

  LiveCounters live_;
  SinkStats stats_;
};

}  // namespace ringmail::ringload
