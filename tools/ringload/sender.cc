#include "tools/ringload/sender.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tools/ringload/http_conn.h"
#include "tools/ringload/text.h"

namespace ringmail::ringload {
namespace {

constexpr uint16_t kBufferGroup = kSendBufferGroup;
constexpr uint32_t kBufferCount = 1024;
constexpr uint32_t kBufferBytes = 4096;
constexpr size_t kReplyLineMax = 2048;  // RFC 5321 says 512; be lenient, but bounded
constexpr uint64_t kDrainPollMs = 5;

bool Positive(int code) { return code >= 200 && code < 300; }

void AppendUint(uint64_t v, std::string* out) {
  char buf[24];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out->append(p, static_cast<size_t>(end - p));
}

// The token after "queued as " in a 250 reply ("250 2.0.0 Ok: queued as 4F2A..."), or
// empty.
std::string_view QueueId(std::string_view text) {
  static constexpr std::string_view kMarker = "queued as ";
  for (size_t i = 0; i + kMarker.size() <= text.size(); ++i) {
    if (EqualsIgnoreCase(text.substr(i, kMarker.size()), kMarker)) {
      std::string_view rest = text.substr(i + kMarker.size());
      return rest.substr(0, rest.find_first_of(" \t\r\n"));
    }
  }
  return {};
}

// The --record field naming what the server said: its queue id when the reply has one,
// else the whole reply text with blanks made '_' (one field, so lines split on spaces),
// else "-". The reply text is bounded by kReplyLineMax.
void AppendReplyField(std::string_view reply_text, std::string* out) {
  std::string_view id = QueueId(reply_text);
  if (!id.empty()) {
    out->append(id);
    return;
  }
  if (reply_text.empty()) {
    out->push_back('-');
    return;
  }
  for (char c : reply_text) {
    const bool blank = c == ' ' || c == '\t' || c == '\r' || c == '\n';
    out->push_back(blank ? '_' : c);
  }
}

}  // namespace

void SendStats::Merge(const SendStats& o) {
  ok += o.ok;
  rejected_4xx += o.rejected_4xx;
  rejected_5xx += o.rejected_5xx;
  lost += o.lost;
  aborted += o.aborted;
  bytes += o.bytes;
  rcpts_rejected += o.rcpts_rejected;
  quit_unanswered += o.quit_unanswered;
  tls_handshakes += o.tls_handshakes;
  tls_resumed += o.tls_resumed;
  connections += o.connections;
  connect_errors += o.connect_errors;
  session_errors += o.session_errors;
  file_errors += o.file_errors;
  codes.Merge(o.codes);
  latency.Merge(o.latency);
  if (first_error.empty()) first_error = o.first_error;
}

// ---------------------------------------------------------------------------------------
// ClientConn: SendConn's hooks (the lifecycle itself is SendConn's, send_conn.cc)

ClientConn::ClientConn(SendWorker* worker, uint32_t /*slot*/)
    : SendConn(worker, "send-connect", "send-close"), expect_(worker->options_.rcpts + 8) {
  recv_op_.Bind<&ClientConn::RecvDone>(this, "send-recv");
  recv_op_.multishot = true;
  send_op_.Bind<&ClientConn::SendDone>(this, "send-send");
  msg_.msg_iov = iov_;
}

void ClientConn::Opened() {
  phase_ = Phase::kGreeting;
  if (worker_->options_.tls == SendOptions::Tls::kImplicit) {
    BeginTls();  // SMTPS: the greeting comes over TLS
    Flush();
  }
  UpdateTimer();
}

void ClientConn::Received(std::string_view data) {
  if (tls_ != nullptr) {
    TlsInput(data);
  } else {
    Feed(data);
  }
}

void ClientConn::PeerClosed() {
  if (In(Phase::kQuitting) && txn_count_ == 0) {
    // The server closed after QUIT; without a 221 that is worth a note, not an error
    // (a sink stopping at --expect closes sessions the same way).
    if (expect_count_ > 0) ++worker_->stats_.quit_unanswered;
    Close();
  } else {
    Fail("connection closed by the server", 0);
  }
}

void ClientConn::RecvFailed(int error) {
  if (In(Phase::kQuitting) && txn_count_ == 0) {
    Close();  // reset while quitting (the server closed first): nothing was lost
  } else {
    Fail("recv", error);
  }
}

void ClientConn::SendDone(core::Operation&, core::IoResult r) {
  if (link_ == Link::kClosing) return MaybeCloseFd();
  if (!r.ok() && In(Phase::kQuitting) && txn_count_ == 0) return Close();
  if (!r.ok()) return Fail("send", r.error());
  send_done_ += r.value();
  if (send_done_ < send_total_) return SubmitSend();  // short send: the rest
  sending_.Clear();
  Flush();
}

size_t ClientConn::TakeInFlight() {
  const size_t n = txn_count_;
  txn_count_ = 0;
  expect_count_ = 0;
  return n;
}

void ClientConn::ResetSession() {
  line_.clear();
  multiline_code_ = -1;
  expect_head_ = expect_count_ = 0;
  txn_head_ = txn_count_ = 0;
  compose_.Clear();
  sending_.Clear();
  send_total_ = send_done_ = 0;
  peer_pipelining_ = peer_chunking_ = peer_size_ = peer_starttls_ = false;
  // --tls-resume: the connection's session (its ticket came after the handshake, with the
  // records read since) is what the slot's next connection offers; a resumed connection
  // saves nothing (TlsSession::SaveSession), so the slot keeps its last full handshake's.
  if (tls_ != nullptr && worker_->options_.tls_resume && tls_->established()) {
    if (auto saved = tls_->SaveSession()) tls_saved_ = std::move(saved);
  }
  tls_.reset();
  messages_on_conn_ = 0;
  quit_queued_ = need_rset_ = server_closing_ = false;
}

bool ClientConn::CloseWhenAbandoned() const {
  // Before the session is up; in a session it finishes its messages and quits.
  return phase_ != Phase::kSession && phase_ != Phase::kQuitting;
}

bool ClientConn::AwaitingAnswer() const {
  return (phase_ != Phase::kSession && phase_ != Phase::kQuitting) || expect_count_ > 0;
}

// ---------------------------------------------------------------------------------------
// ClientConn: output

void ClientConn::Flush() {
  if (closing() || fd_ < 0) return;
  if (!send_op_.idle()) return;
  if (tls_ != nullptr && !SealForTls()) return;
  if (compose_.empty()) return;
  std::swap(compose_, sending_);
  send_total_ = sending_.head.size() + sending_.body.size() + sending_.tail.size();
  send_done_ = 0;
  SubmitSend();
}

void ClientConn::SubmitSend() {
  // Rebuild the iovecs past what has been sent already (only after a short send).
  size_t skip = send_done_;
  size_t n = 0;
  for (std::string_view part : {std::string_view(sending_.head), sending_.body,
                                std::string_view(sending_.tail)}) {
    if (skip >= part.size()) {
      skip -= part.size();
      continue;
    }
    iov_[n].iov_base = const_cast<char*>(part.data() + skip);
    iov_[n].iov_len = part.size() - skip;
    skip = 0;
    ++n;
  }
  msg_.msg_iovlen = n;
  io_uring_sqe* sqe = worker_->loop_.Prepare(send_op_);
  // MSG_WAITALL: the ring finishes a short send of a stream socket itself (polling for
  // room), so a large message costs one completion instead of one per socket-buffer fill.
  io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL | MSG_WAITALL);
}

void ClientConn::Expecting(Expect e) {
  RM_CHECK(expect_count_ < expect_.size()) << "pipelined group larger than planned";
  expect_[(expect_head_ + expect_count_) % expect_.size()] = e;
  ++expect_count_;
}

// ---------------------------------------------------------------------------------------
// ClientConn: input

void ClientConn::Feed(std::string_view data) {
  while (!data.empty()) {
    const char* nl = static_cast<const char*>(std::memchr(data.data(), '\n', data.size()));
    if (nl == nullptr) {
      if (line_.size() + data.size() > kReplyLineMax) return Fail("reply line too long", 0);
      line_.append(data);
      break;
    }
    const size_t len = static_cast<size_t>(nl - data.data()) + 1;
    if (line_.empty()) {
      OnLine(data.substr(0, len));
    } else {
      if (line_.size() + len > kReplyLineMax) return Fail("reply line too long", 0);
      line_.append(data.substr(0, len));
      OnLine(line_);
      line_.clear();
    }
    data.remove_prefix(len);
    if (closing()) return;
    if (In(Phase::kTlsHandshake) && (!data.empty() || !line_.empty())) {
      // Plaintext after the 220 to STARTTLS would be taken as if it came over TLS.
      return Fail("data after the 220 to STARTTLS", 0);
    }
  }
  Flush();
  UpdateTimer();
}

void ClientConn::OnLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.size() < 3 || !absl::ascii_isdigit(line[0]) || !absl::ascii_isdigit(line[1]) ||
      !absl::ascii_isdigit(line[2]) || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    return Fail("malformed reply line", 0);
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  const bool last = line.size() == 3 || line[3] == ' ';
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  if (multiline_code_ >= 0 && multiline_code_ != code) {
    return Fail("reply lines of one reply disagree on the code", 0);
  }
  if (In(Phase::kEhlo)) OnEhloLine(text);
  if (!last) {
    multiline_code_ = code;
    return;
  }
  multiline_code_ = -1;
  OnReply(code, text);
}

void ClientConn::OnEhloLine(std::string_view text) {
  std::string_view word = text.substr(0, text.find(' '));
  if (EqualsIgnoreCase(word, "PIPELINING")) peer_pipelining_ = true;
  if (EqualsIgnoreCase(word, "CHUNKING")) peer_chunking_ = true;
  if (EqualsIgnoreCase(word, "SIZE")) peer_size_ = true;
  if (EqualsIgnoreCase(word, "STARTTLS")) peer_starttls_ = true;
}

// ---------------------------------------------------------------------------------------
// ClientConn: TLS

void ClientConn::BeginTls() {
  const bool resume = worker_->options_.tls_resume;
  auto stream = TlsClientStream::Start(worker_->options_.tls_client, "",
                                       resume ? tls_saved_ : nullptr);
  if (!stream.ok()) {
    return Fail(std::string(stream.status().message()).c_str(), 0);
  }
  tls_ = *std::move(stream);
  phase_ = Phase::kTlsHandshake;
}

void ClientConn::TlsInput(std::string_view data) {
  std::string plain;
  const TlsClientStream::Event event = tls_->Input(data, &plain);
  if (event == TlsClientStream::Event::kEnded) {
    // A handshake that failed while offering a saved session: start afresh next time
    // (wolfSSL pins the client to the saved session's version).
    if (!tls_->established()) tls_saved_.reset();
    // What arrived with the end (the 221 before close_notify) is read first.
    if (!plain.empty()) Feed(plain);
    if (closing()) return;
    Flush();  // an alert, if any; the close may cut it short
    if (In(Phase::kQuitting) && txn_count_ == 0) return Close();  // closed after QUIT
    const std::string why = absl::StrCat("TLS: ", tls_->error().empty() ? "session ended"
                                                                         : tls_->error());
    return Fail(why.c_str(), 0);
  }
  if (event == TlsClientStream::Event::kEstablished) {
    ++worker_->stats_.tls_handshakes;
    if (tls_->resumed()) ++worker_->stats_.tls_resumed;
  }
  if (event == TlsClientStream::Event::kEstablished && In(Phase::kTlsHandshake)) {
    if (worker_->options_.tls == SendOptions::Tls::kStartTls) {
      // RFC 3207 §4.2: forget what the plaintext EHLO said and ask again.
      peer_pipelining_ = peer_chunking_ = peer_size_ = peer_starttls_ = false;
      compose_.text().append("EHLO ").append(worker_->options_.ehlo).append("\r\n");
      phase_ = Phase::kEhlo;
    } else {
      phase_ = Phase::kGreeting;
    }
  }
  if (!plain.empty()) return Feed(plain);  // Feed flushes and re-arms the timer
  Flush();
  UpdateTimer();
}

// compose_ becomes one batch of ciphertext (with handshake bytes first).
bool ClientConn::SealForTls() {
  std::string wire;
  if (tls_->established()) {
    if (!tls_->Seal(compose_.head, compose_.body, compose_.tail, &wire)) {
      Fail("TLS: could not encrypt", 0);
      return false;
    }
  } else {
    tls_->TakeWire(&wire);  // nothing of ours goes out before the handshake ends
  }
  compose_.Clear();
  compose_.head = std::move(wire);
  return true;
}

void ClientConn::OnReply(int code, std::string_view text) {
  switch (phase_) {
    case Phase::kGreeting:
    case Phase::kEhlo:
    case Phase::kHelo:
      return OnGreetingOrEhlo(code, text);
    case Phase::kStartTls:
      if (code != 220) return Fail("STARTTLS refused", 0);
      return BeginTls();
    case Phase::kSession:
    case Phase::kQuitting:
      break;
    default:
      return Fail("reply in an unexpected state", 0);
  }
  if (expect_count_ == 0) {
    return Fail(code == 421 ? "server closed the session (421)" : "unsolicited reply", 0);
  }
  const Expect what = expect_[expect_head_];
  expect_head_ = (expect_head_ + 1) % expect_.size();
  --expect_count_;
  server_closing_ = code == 421;  // no new message on a session the server is closing
  OnSessionReply(what, code, text);
  if (code == 421 && link_ != Link::kClosing) Fail("server closed the session (421)", 0);
}

void ClientConn::OnGreetingOrEhlo(int code, std::string_view text) {
  const SendOptions& o = worker_->options_;
  if (In(Phase::kGreeting)) {
    if (code != 220) return Fail("greeting refused", 0);
    compose_.text().append("EHLO ").append(o.ehlo).append("\r\n");
    phase_ = Phase::kEhlo;
    return;
  }
  if (!Positive(code)) {
    if (In(Phase::kHelo)) return Fail("HELO refused", 0);
    peer_pipelining_ = peer_chunking_ = peer_size_ = false;
    compose_.text().append("HELO ").append(o.ehlo).append("\r\n");
    phase_ = Phase::kHelo;
    return;
  }
  (void)text;
  if (o.tls == SendOptions::Tls::kStartTls && tls_ == nullptr) {
    if (!peer_starttls_) return Fail("STARTTLS not offered", 0);
    compose_.text().append("STARTTLS\r\n");
    phase_ = Phase::kStartTls;
    return;
  }
  phase_ = Phase::kSession;
  backoff_ms_ = 0;
  StartReady();
}

void ClientConn::OnSessionReply(Expect what, int code, std::string_view text) {
  const bool pipelined = worker_->options_.pipelining && peer_pipelining_;
  switch (what) {
    case Expect::kRset:
      return;  // whatever it says, the next MAIL will tell
    case Expect::kQuit:
      return Close();
    case Expect::kMail: {
      Txn& t = front();
      if (Positive(code)) {
        t.mail_ok = true;
      } else if (t.fail_code == 0) {
        t.fail_code = code;
      }
      if (pipelined) return;
      if (!t.mail_ok) return FailTxnEarly(t, code);
      return SendNextStep(t);
    }
    case Expect::kRcpt: {
      Txn& t = front();
      ++t.rcpt_replies;
      if (Positive(code)) {
        ++t.rcpt_ok;
      } else {
        ++worker_->stats_.rcpts_rejected;
        if (t.rcpt_fail_code == 0) t.rcpt_fail_code = code;
      }
      if (t.rcpt_replies == worker_->options_.rcpts && t.rcpt_ok == 0 && t.fail_code == 0) {
        t.fail_code = t.rcpt_fail_code;
      }
      if (!pipelined) SendNextStep(t);
      return;
    }
    case Expect::kData: {
      Txn& t = front();
      if (code != 354) return FailTxnEarly(t, t.fail_code != 0 ? t.fail_code : code);
      if (!compose_.body.empty()) {
        return Fail("server answered DATA before it could have read the previous message", 0);
      }
      SendContent(t);
      Expecting(Expect::kDot);
      AppendNext();
      return;
    }
    case Expect::kBdat: {
      Txn& t = front();
      if (!Positive(code) && t.mail_ok) need_rset_ = true;
      return FinishTxn(t.fail_code != 0 ? t.fail_code : code, text);
    }
    case Expect::kDot:
      return FinishTxn(code, text);
  }
}

// ---------------------------------------------------------------------------------------
// ClientConn: transactions

void ClientConn::Resume() {
  parked_ = false;
  if (!In(Phase::kSession) || txn_count_ != 0 || expect_count_ != 0) return;
  StartReady();
  Flush();
  UpdateTimer();
}

void ClientConn::StartReady() {
  if (quit_queued_ || server_closing_) return;
  const uint64_t per_conn = worker_->options_.messages_per_connection;
  if (per_conn != 0 && messages_on_conn_ >= per_conn) return SendQuit();
  MessageTicket ticket;
  switch (worker_->TakeMessage(&ticket)) {
    case SendWorker::Take::kReady:
      return BeginTxn(ticket, false);
    case SendWorker::Take::kWait:
      if (!parked_) {
        parked_ = true;
        worker_->Park(this);
      }
      return;
    case SendWorker::Take::kDone:
      return SendQuit();
  }
}

bool ClientConn::AppendNext() {
  if (!worker_->options_.pipelining || !peer_pipelining_ || quit_queued_ || server_closing_) {
    return false;
  }
  const uint64_t per_conn = worker_->options_.messages_per_connection;
  if (per_conn != 0 && messages_on_conn_ >= per_conn) {
    SendQuit();
    return true;
  }
  MessageTicket ticket;
  switch (worker_->TakeMessage(&ticket)) {
    case SendWorker::Take::kReady:
      BeginTxn(ticket, true);
      return true;
    case SendWorker::Take::kWait:
      return false;  // StartReady parks us once the current message is answered
    case SendWorker::Take::kDone:
      SendQuit();
      return true;
  }
  return false;
}

void ClientConn::SendQuit() {
  compose_.text().append("QUIT\r\n");
  Expecting(Expect::kQuit);
  quit_queued_ = true;
  phase_ = Phase::kQuitting;
}

void ClientConn::BeginTxn(const MessageTicket& ticket, bool after_content) {
  RM_CHECK(txn_count_ < 2) << "more than two transactions on one connection";
  const SendOptions& o = worker_->options_;
  const MessageFactory& f = worker_->factory_;
  Txn& t = txns_[(txn_head_ + txn_count_) % 2];
  ++txn_count_;
  t = Txn{};
  t.ticket = ticket;
  t.start_us = core::MonotonicUs();
  t.size_class = static_cast<uint32_t>(
      f.size_classes() == 1 ? 0 : f.PickSizeClass(worker_->uniform_(worker_->rng_)));
  hdr_.clear();
  f.AppendHeaders(ticket.seq, &hdr_);
  t.bytes = hdr_.size() + f.body(t.size_class).raw.size();
  ++messages_on_conn_;
  std::string& out = compose_.text();
  if (need_rset_ && !after_content) {
    out.append("RSET\r\n");
    Expecting(Expect::kRset);
  }
  need_rset_ = false;
  out.append("MAIL FROM:<").append(f.from()).append(">");
  if (peer_size_) {
    out.append(" SIZE=");
    AppendUint(t.bytes, &out);
  }
  out.append("\r\n");
  Expecting(Expect::kMail);
  if (!o.pipelining || !peer_pipelining_) return;
  for (uint32_t i = 0; i < o.rcpts; ++i) {
    out.append("RCPT TO:<");
    f.AppendRecipient(ticket.seq, i, &out);
    out.append(">\r\n");
    Expecting(Expect::kRcpt);
  }
  if (o.chunking && peer_chunking_) {
    SendContent(t);
    Expecting(Expect::kBdat);
  } else {
    out.append("DATA\r\n");
    Expecting(Expect::kData);
  }
}

void ClientConn::SendNextStep(Txn& t) {
  const SendOptions& o = worker_->options_;
  std::string& out = compose_.text();
  if (t.rcpt_replies < o.rcpts) {
    out.append("RCPT TO:<");
    worker_->factory_.AppendRecipient(t.ticket.seq, t.rcpt_replies, &out);
    out.append(">\r\n");
    Expecting(Expect::kRcpt);
    return;
  }
  if (t.rcpt_ok == 0) return FailTxnEarly(t, t.rcpt_fail_code);
  if (o.chunking && peer_chunking_) {
    SendContent(t);
    Expecting(Expect::kBdat);
  } else {
    out.append("DATA\r\n");
    Expecting(Expect::kData);
  }
}

void ClientConn::SendContent(Txn& t) {
  const MessageFactory::Body& body = worker_->factory_.body(t.size_class);
  const bool bdat = worker_->options_.chunking && peer_chunking_;
  std::string& out = compose_.text();
  if (bdat) {
    out.append("BDAT ");
    AppendUint(t.bytes, &out);
    out.append(" LAST\r\n");
  }
  // hdr_ still holds this message's headers: with pipelining BeginTxn renders them right
  // before; without, nothing renders another message's headers in between.
  out.append(hdr_);
  compose_.body = bdat ? std::string_view(body.raw) : std::string_view(body.stuffed);
  if (!bdat) compose_.tail.append(".\r\n");
  if (worker_->dump_ != nullptr) {
    const MessageFactory& f = worker_->factory_;
    std::string content = absl::StrCat("MAIL FROM:<", f.from(), ">\r\n");
    for (uint32_t i = 0; i < f.rcpts(); ++i) {
      content.append("RCPT TO:<");
      f.AppendRecipient(t.ticket.seq, i, &content);
      content.append(">\r\n");
    }
    absl::StrAppend(&content, "\r\n", hdr_, body.raw);
    worker_->dump_->Write(absl::StrCat(worker_->options_.common.dump_dir, "/", t.ticket.seq,
                                       ".eml"),
                          std::move(content));
  }
}

void ClientConn::FailTxnEarly(Txn& t, int code) {
  if (t.mail_ok) need_rset_ = true;
  FinishTxn(code, {});
}

void ClientConn::FinishTxn(int code, std::string_view text) {
  RM_CHECK(txn_count_ > 0);
  Txn& t = front();
  const uint64_t now = core::MonotonicUs();
  const uint64_t from = t.ticket.due_us != 0 ? t.ticket.due_us : t.start_us;
  const uint64_t latency = now > from ? now - from : 0;
  worker_->stats_.codes.Add(code);
  if (Positive(code)) {
    worker_->Accepted(t.ticket, latency, t.bytes, text);
  } else {
    if (code >= 500) {
      ++worker_->stats_.rejected_5xx;
    } else {
      ++worker_->stats_.rejected_4xx;
    }
    LiveCounters::Add(worker_->live_.failed, 1);
    worker_->CountError();
  }
  txn_head_ = (txn_head_ + 1) % 2;
  --txn_count_;
  if (txn_count_ == 0 && expect_count_ == 0 && In(Phase::kSession)) StartReady();
}

// ---------------------------------------------------------------------------------------
// SendWorker

SendWorker::SendWorker(core::Loop& loop, const SendOptions& options,
                       const MessageFactory& factory, RunControl& control, uint32_t index,
                       uint32_t workers, uint32_t connections, uint64_t quota, int record_fd)
    : loop_(loop),
      options_(options),
      factory_(factory),
      control_(control),
      index_(index),
      workers_(workers),
      quota_(quota),
      rng_(options.common.seed * 0x9E3779B97F4A7C15ull + index) {
  conns_.reserve(connections);
  for (uint32_t i = 0; i < connections; ++i) {
    if (options.http) {
      conns_.push_back(std::make_unique<HttpConn>(this, i));
    } else {
      conns_.push_back(std::make_unique<ClientConn>(this, i));
    }
  }
  if (options.http) http_prefix_ = HttpRequestPrefix(options);
  parked_.resize(connections);
  rate_timer_.Bind<&SendWorker::RateTimerFired>(this);
  io_timeout_ms_ = static_cast<uint64_t>(options.io_timeout_s * 1000);
  if (!options.common.dump_dir.empty()) dump_ = std::make_unique<DumpWriter>(loop);
  if (record_fd >= 0) record_ = std::make_unique<RecordLog>(loop, record_fd);
}

SendWorker::~SendWorker() = default;

void SendWorker::Start(uint64_t start_us) {
  start_us_ = start_us;
  if (options_.duration_s > 0) {
    end_us_ = start_us + static_cast<uint64_t>(options_.duration_s * 1e6);
  }
  if (options_.rate > 0) interval_us_ = 1e6 / options_.rate;
  loop_.OnStop([this] { OnStopLoop(); });
  auto buffers = core::BufferRing::Create(loop_.ring(), kBufferGroup, kBufferCount, kBufferBytes);
  if (!buffers.ok()) {
    NoteError(std::string(buffers.status().message()));
    ++stats_.session_errors;
    CountError();
    stopping_ = true;
    for (auto& c : conns_) c->Shutdown();
    MaybeDone();
    return;
  }
  buffers_ = std::move(buffers).value();
  if (quota_ == 0) stopping_ = true;
  for (auto& c : conns_) {
    if (stopping_) {
      c->Shutdown();
    } else {
      c->Connect();
    }
  }
  MaybeDone();
}

void SendWorker::Shutdown() {
  if (stopping_ && finished_conns_ == conns_.size()) return MaybeDone();
  stopping_ = true;
  for (auto& c : conns_) c->Shutdown();
  while (parked_count_ > 0) {
    parked_head_ = (parked_head_ + 1) % parked_.size();
    --parked_count_;
  }
  MaybeDone();
}

bool SendWorker::wants_connections() const {
  uint64_t due = 0;
  return Peek(core::MonotonicUs(), &due) != Take::kDone;
}

SendWorker::Take SendWorker::Peek(uint64_t now_us, uint64_t* due_us) const {
  if (stopping_ || issued_ >= quota_ || control_.errors() > options_.max_errors) {
    return Take::kDone;
  }
  if (interval_us_ > 0) {
    const uint64_t k = index_ + issued_ * workers_;
    const uint64_t due = start_us_ + static_cast<uint64_t>(static_cast<double>(k) * interval_us_);
    if (due >= end_us_) return Take::kDone;
    *due_us = due;
    return due <= now_us ? Take::kReady : Take::kWait;
  }
  if (now_us >= end_us_) return Take::kDone;
  *due_us = 0;
  return Take::kReady;
}

SendWorker::Take SendWorker::TakeMessage(MessageTicket* out) {
  uint64_t due = 0;
  Take t = Peek(core::MonotonicUs(), &due);
  if (t == Take::kDone && !sweep_scheduled_) {
    // Nothing left to send: connections still waiting for a greeting have no work. Close
    // them rather than wait: behind a full accept queue a peer may never greet (a SYN-
    // cookie connection it forgot), and the run would hang until --timeout.
    sweep_scheduled_ = true;
    loop_.Defer([this] {
      for (auto& c : conns_) c->Abandon();
    });
  }
  if (t != Take::kReady) return t;
  out->seq = index_ + issued_ * workers_;
  out->due_us = due;
  ++issued_;
  return t;
}

void SendWorker::Park(SendConn* conn) {
  RM_CHECK(parked_count_ < parked_.size());
  parked_[(parked_head_ + parked_count_) % parked_.size()] = conn;
  ++parked_count_;
  uint64_t due = 0;
  if (Peek(core::MonotonicUs(), &due) == Take::kWait) {
    const uint64_t due_ms = (due + 999) / 1000;
    if (!rate_timer_.armed() || rate_timer_.deadline_ms > due_ms) {
      loop_.timers().Arm(rate_timer_, due_ms);
    }
  } else {
    loop_.timers().Arm(rate_timer_, core::MonotonicMs());
  }
}

void SendWorker::RateTimerFired(core::Timer&) {
  if (finished_conns_ == conns_.size()) return MaybeDone();  // draining files
  while (parked_count_ > 0) {
    uint64_t due = 0;
    const Take t = Peek(core::MonotonicUs(), &due);
    if (t == Take::kWait) {
      loop_.timers().Arm(rate_timer_, (due + 999) / 1000);
      return;
    }
    SendConn* conn = parked_[parked_head_];
    parked_head_ = (parked_head_ + 1) % parked_.size();
    --parked_count_;
    conn->Resume();  // takes the due message, or quits when the run is over
  }
}

void SendWorker::ConnFinished() {
  ++finished_conns_;
  MaybeDone();
}

void SendWorker::MaybeDone() {
  if (done_ || finished_conns_ < conns_.size()) return;
  if (record_ != nullptr) record_->Flush();
  const bool files_idle =
      (record_ == nullptr || record_->idle()) && (dump_ == nullptr || dump_->idle());
  if (!files_idle) {
    loop_.timers().Arm(rate_timer_, core::MonotonicMs() + kDrainPollMs);
    return;
  }
  done_ = true;
  finish_us_ = core::MonotonicUs();
  loop_.timers().Cancel(rate_timer_);
  if (dump_ != nullptr && dump_->failures() > 0) {
    stats_.file_errors += dump_->failures();
    NoteError(dump_->first_error());
    CountError(dump_->failures());
  }
  if (record_ != nullptr && record_->failures() > 0) {
    stats_.file_errors += record_->failures();
    NoteError("--record: write failed");
    CountError(record_->failures());
  }
  buffers_.reset();  // unregistered on the loop thread, which owns the ring
  control_.WorkerDone();
}

void SendWorker::AfterJoin() {
  if (record_ == nullptr) return;
  const uint64_t counted = done_ ? record_->failures() : 0;  // MaybeDone added these
  record_->DrainBlocking();
  const uint64_t missing = record_->failures() - counted;
  if (missing > 0) {
    stats_.file_errors += missing;
    NoteError("--record: write failed");
  }
}

void SendWorker::OnStopLoop() {
  // The loop is stopping before we finished (forced stop): whatever completes from now on
  // is cancelled; no buffer may be read once the ring is gone.
  buffers_.reset();
  stopping_ = true;
}

void SendWorker::CountError(uint64_t n) {
  if (n == 0) return;
  LiveCounters::Add(live_.errors, n);
  control_.AddErrors(static_cast<int64_t>(n));
}

void SendWorker::NoteError(const std::string& what) {
  if (stats_.first_error.empty()) stats_.first_error = what;
}

void SendWorker::Accepted(const MessageTicket& ticket, uint64_t latency_us, uint64_t bytes,
                          std::string_view reply_text) {
  ++stats_.ok;
  stats_.bytes += bytes;
  stats_.latency.Record(latency_us);
  LiveCounters::Add(live_.messages, 1);
  LiveCounters::Add(live_.bytes, bytes);
  if (record_ == nullptr) return;
  std::string* line = record_->pending();
  if (line->size() >= RecordLog::kPendingMax) {
    ++stats_.file_errors;
    CountError();
    return;
  }
  AppendUint(ticket.seq, line);
  line->push_back(' ');
  factory_.AppendMessageId(ticket.seq, line);
  line->push_back(' ');
  if (options_.http) {
    AppendHttpIds(reply_text, line);
  } else {
    AppendReplyField(reply_text, line);
  }
  line->push_back('\n');
  record_->Flush();
}

}  // namespace ringmail::ringload
