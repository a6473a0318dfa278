// tools/ringload/sender.h — `ringload send`: SMTP client sessions on one loop.
//
// One SendWorker per loop owns that loop's share of the connections (ClientConn slots),
// its receive BufferRing, its latency histogram and counters. main builds the workers
// on the main thread, starts each with Post(Start), may Post(Shutdown), and reads their
// stats only after the loops have been joined. A worker calls RunControl::WorkerDone once,
// when every connection is closed and its files are flushed.
//
// Messages: loop i of T sends sequence numbers i, i+T, i+2T, ... so numbers are unique
// without any cross-loop traffic. Closed loop, a connection takes the next message as soon
// as it is free. Open loop (--rate), message k is due at start + k/rate; a due message
// waits for a free connection and its latency counts from when it was due (no
// coordinated omission).
//
// Per connection, a message is: [RSET] MAIL RCPT... DATA (one send when pipelining), then
// headers + body + "." (+ the next message's envelope, or QUIT, when pipelining) in one
// sendmsg whose body iovec points at the shared pre-rendered body. With --chunking, BDAT
// n LAST carries the raw body instead.
//
// TLS (--tls starttls|implicit): a TlsClientStream (tools/ringload/tls_stream.h) sits
// between the ring and the reply parser once the 220 to STARTTLS arrived (EHLO is then
// sent again, RFC 3207) or from the connect (implicit); every batch is encrypted as a whole
// in Flush() (the shared body is copied into records: TLS cannot send it zero-copy), as
// records of up to 16 KiB across the batch's parts. --tls-resume: a connection offers the
// session its slot's previous connection ended with (saved in ResetSession).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/buffers.h"
#include "core/loop.h"
#include "tools/ringload/file_io.h"
#include "tools/ringload/histogram.h"
#include "tools/ringload/message_factory.h"
#include "tools/ringload/options.h"
#include "tools/ringload/run_state.h"
#include "tools/ringload/send_conn.h"
#include "tools/ringload/tls_stream.h"

namespace ringmail::ringload {

struct SendStats {
  uint64_t ok = 0;
  uint64_t rejected_4xx = 0;
  uint64_t rejected_5xx = 0;
  uint64_t lost = 0;     // in flight when the connection broke
  uint64_t aborted = 0;  // in flight when the run was stopped (timeout, signal)
  uint64_t bytes = 0;    // message bytes of accepted messages
  uint64_t rcpts_rejected = 0;
  uint64_t quit_unanswered = 0;  // sessions closed by the server before its 221
  uint64_t connections = 0;  // sessions opened
  uint64_t connect_errors = 0;
  uint64_t session_errors = 0;  // broken or timed-out sessions, protocol errors
  uint64_t file_errors = 0;     // --record / --dump failures
  uint64_t tls_handshakes = 0;  // completed (--tls)
  uint64_t tls_resumed = 0;     // of those, resumed with the previous session's ticket
  CodeCounts codes;             // the reply that decided each message (0: none)
  Histogram latency;            // accepted messages, microseconds
  std::string first_error;

  uint64_t errors() const {
    return rejected_4xx + rejected_5xx + lost + connect_errors + session_errors + file_errors;
  }
  void Merge(const SendStats& o);
};

class SendWorker;

// The provided-buffer group of the worker's receive buffers (one BufferRing per loop).
inline constexpr uint16_t kSendBufferGroup = 1;

// Which message a connection is to send next.
struct MessageTicket {
  uint64_t seq = 0;
  uint64_t due_us = 0;  // open loop: scheduled time; closed loop: 0 (use start time)
};

class ClientConn final : public SendConn {
 public:
  ClientConn(SendWorker* worker, uint32_t slot);
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;
  ~ClientConn() override = default;

  void Resume() override;

 private:
  // Where the session is while the connection is open (Link::kOpen).
  enum class Phase : uint8_t {
    kGreeting, kEhlo, kHelo, kSession, kQuitting, kStartTls, kTlsHandshake,
  };
  enum class Expect : uint8_t { kRset, kMail, kRcpt, kData, kDot, kBdat, kQuit };
  struct Txn {
    MessageTicket ticket;
    uint64_t start_us = 0;
    uint32_t size_class = 0;
    uint32_t rcpt_replies = 0;
    uint32_t rcpt_ok = 0;
    int fail_code = 0;       // MAIL's failure, or the recipients' when all failed
    int rcpt_fail_code = 0;  // the first recipient refusal
    uint64_t bytes = 0;      // headers + body
    bool mail_ok = false;
  };
  // One sendmsg: head text, an optional shared body, tail text.
  struct Batch {
    std::string head;
    std::string_view body;
    std::string tail;
    bool empty() const { return head.empty() && body.empty() && tail.empty(); }
    void Clear() {
      head.clear();
      body = {};
      tail.clear();
    }
    std::string& text() { return body.empty() ? head : tail; }
  };

  // SendConn's hooks.
  void ResetSession() override;
  void Opened() override;
  void Received(std::string_view data) override;
  void PeerClosed() override;
  void RecvFailed(int error) override;
  bool AwaitingAnswer() const override;
  size_t TakeInFlight() override;
  bool CloseWhenAbandoned() const override;
  const char* timeout_text() const override { return "timed out waiting for a reply"; }

  bool In(Phase p) const { return link_ == Link::kOpen && phase_ == p; }
  bool closing() const { return link_ == Link::kClosing || link_ == Link::kFinished; }
  void SendDone(core::Operation& op, core::IoResult r);
  void Flush();
  void SubmitSend();
  void Feed(std::string_view data);
  void OnLine(std::string_view line);
  void OnReply(int code, std::string_view text);
  void OnSessionReply(Expect what, int code, std::string_view text);
  void OnGreetingOrEhlo(int code, std::string_view text);
  void OnEhloLine(std::string_view text);
  void BeginTls();                    // the handshake starts: STARTTLS's 220, or connected
  void TlsInput(std::string_view data);
  bool SealForTls();                  // compose_ → one ciphertext batch; false: failed

  void StartReady();  // session idle: take a message, park, or quit
  bool AppendNext();  // pipelining: queue the next envelope or QUIT after content
  void BeginTxn(const MessageTicket& ticket, bool no_rset);
  void SendNextStep(Txn& txn);
  void SendContent(Txn& txn);
  void FinishTxn(int code, std::string_view text);
  void FailTxnEarly(Txn& txn, int code);
  void SendQuit();
  void Expecting(Expect e);

  Txn& front() { return txns_[txn_head_]; }

  Phase phase_ = Phase::kGreeting;

  bool peer_pipelining_ = false;
  bool peer_chunking_ = false;
  bool peer_size_ = false;
  bool peer_starttls_ = false;
  std::unique_ptr<TlsClientStream> tls_;  // from the handshake's start to the close
  // --tls-resume: the session this slot's last connection got (kept across reconnects).
  std::shared_ptr<const tls::SavedSession> tls_saved_;
  uint64_t messages_on_conn_ = 0;
  bool quit_queued_ = false;
  bool need_rset_ = false;
  bool server_closing_ = false;  // a 421 arrived: the session ends
  bool parked_ = false;
  std::string hdr_;  // header block of the message being started

  std::string line_;  // partial reply line
  int multiline_code_ = -1;
  // Replies we wait for, in order; a ring sized for the largest pipelined group.
  std::vector<Expect> expect_;
  size_t expect_head_ = 0;
  size_t expect_count_ = 0;
  Txn txns_[2];  // the one awaiting its final reply, and the next one (pipelining)
  size_t txn_head_ = 0;
  size_t txn_count_ = 0;

  Batch compose_;
  Batch sending_;
  iovec iov_[3]{};
  msghdr msg_{};
  size_t send_total_ = 0;
  size_t send_done_ = 0;
};

class SendWorker {
 public:
  SendWorker(core::Loop& loop, const SendOptions& options, const MessageFactory& factory,
             RunControl& control, uint32_t index, uint32_t workers, uint32_t connections,
             uint64_t quota, int record_fd);
  ~SendWorker();
  SendWorker(const SendWorker&) = delete;
  SendWorker& operator=(const SendWorker&) = delete;

  // ---- posted from the main thread; run on the loop ----
  void Start(uint64_t start_us);
  void Shutdown();

  // ---- main thread, after the loop has been joined ----
  // Writes --record lines a forced stop left unwritten (none after a clean finish).
  void AfterJoin();

  // ---- main thread, while running (relaxed) or after join ----
  const LiveCounters& live() const { return live_; }
  const SendStats& stats() const { return stats_; }
  uint64_t issued() const { return issued_; }
  uint64_t finish_us() const { return finish_us_; }  // 0 if it never finished

 private:
  friend class SendConn;
  friend class ClientConn;
  friend class HttpConn;
  enum class Take { kReady, kWait, kDone };

  Take TakeMessage(MessageTicket* out);
  Take Peek(uint64_t now_us, uint64_t* due_us) const;
  void Park(SendConn* conn);
  void RateTimerFired(core::Timer& t);
  void ConnFinished();
  void MaybeDone();
  void OnStopLoop();
  void CountError(uint64_t n = 1);
  void NoteError(const std::string& what);
  void Accepted(const MessageTicket& ticket, uint64_t latency_us, uint64_t bytes,
                std::string_view reply_text);
  bool wants_connections() const;

  core::Loop& loop_;
  const SendOptions& options_;
  const MessageFactory& factory_;
  RunControl& control_;
  const uint32_t index_;
  const uint32_t workers_;
  const uint64_t quota_;  // messages this loop sends (UINT64_MAX: bounded by duration)
  std::unique_ptr<core::BufferRing> buffers_;
  std::vector<std::unique_ptr<SendConn>> conns_;
  std::vector<SendConn*> parked_;  // FIFO ring of connections waiting for a due message
  size_t parked_head_ = 0;
  size_t parked_count_ = 0;
  core::Timer rate_timer_;
  std::unique_ptr<DumpWriter> dump_;
  std::unique_ptr<RecordLog> record_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};

  uint64_t start_us_ = 0;
  uint64_t end_us_ = UINT64_MAX;  // duration bound
  double interval_us_ = 0;        // open loop: between two messages over all loops
  uint64_t io_timeout_ms_ = 0;    // --io-timeout
  uint64_t issued_ = 0;
  bool stopping_ = false;
  bool done_ = false;
  bool sweep_scheduled_ = false;
  uint64_t finish_us_ = 0;
  size_t finished_conns_ = 0;
  std::string scratch_;
  std::string http_prefix_;  // --http: request line and constant headers, through "Length: "

  LiveCounters live_;
  SendStats stats_;
};

}  // namespace ringmail::ringload
