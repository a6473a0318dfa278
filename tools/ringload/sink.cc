#include "tools/ringload/sink.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/ringload/text.h"

namespace ringmail::ringload {
namespace {

constexpr uint16_t kBufferGroup = 1;
constexpr uint32_t kBufferCount = 2048;
constexpr uint32_t kBufferBytes = 16 * 1024;
constexpr uint32_t kCommandErrorsMax = 20;  // then 421 and close (Postfix hard_error_limit)
constexpr uint64_t kPollMs = 5;
constexpr size_t kTlsPlainChunkBytes = 64 * 1024;  // decrypted per TlsSession::Read

bool StartsWithWord(std::string_view line, std::string_view verb) {
  if (line.size() < verb.size() || !EqualsIgnoreCase(line.substr(0, verb.size()), verb)) {
    return false;
  }
  return line.size() == verb.size() || line[verb.size()] == ' ';
}

// "<addr>" followed by optional parameters; the path must be at most 256 bytes.
bool ParsePath(std::string_view args, std::string_view* path, std::string_view* params) {
  while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
  if (args.empty() || args[0] != '<') return false;
  size_t close = args.find('>');
  if (close == std::string_view::npos || close - 1 > kAddressBytesMax) return false;
  *path = args.substr(1, close - 1);
  *params = args.substr(close + 1);
  for (char c : *path) {
    if (static_cast<unsigned char>(c) < 0x20 || c == ' ' || c == '<') return false;
  }
  return true;
}

const char* DefaultText(int code) {
  if (code == 421) return "4.3.0 ringload sink: closing (injected)";
  if (code == 452) return "4.3.1 ringload sink: insufficient storage (injected)";
  if (code == 552) return "5.3.4 ringload sink: message too big (injected)";
  if (code == 554) return "5.6.0 ringload sink: transaction failed (injected)";
  return code < 500 ? "4.3.0 ringload sink: temporary failure (injected)"
                    : "5.7.1 ringload sink: rejected (injected)";
}

}  // namespace

void SinkStats::Merge(const SinkStats& o) {
  connections += o.connections;
  refused += o.refused;
  messages += o.messages;
  bytes += o.bytes;
  rejected += o.rejected;
  command_errors += o.command_errors;
  accept_errors += o.accept_errors;
  file_errors += o.file_errors;
  tls_handshakes += o.tls_handshakes;
  tls_errors += o.tls_errors;
  codes.Merge(o.codes);
  if (first_error.empty()) first_error = o.first_error;
}

// ---------------------------------------------------------------------------------------
// SinkSession: lifecycle and I/O

SinkSession::SinkSession(SinkWorker* worker, uint32_t /*slot*/) : worker_(worker) {
  recv_op_.Bind<&SinkSession::RecvDone>(this, "sink-recv");
  recv_op_.multishot = true;
  send_op_.Bind<&SinkSession::SendDone>(this, "sink-send");
  close_op_.Bind<&SinkSession::CloseDone>(this, "sink-close");
  timer_.Bind<&SinkSession::TimerFired>(this);
}

SinkSession::~SinkSession() {
  if (fd_ >= 0) ::close(fd_);  // only after the loop stopped: nothing refers to it
}

void SinkSession::Start(int fd) {
  fd_ = fd;
  state_ = State::kCommand;
  line_.clear();
  skip_line_ = false;
  pending_.clear();
  out_.clear();
  wire_.clear();
  sending_.clear();
  tls_.reset();
  starttls_ = false;
  out_finals_ = sending_finals_ = 0;
  errors_ = 0;
  quit_after_final_ = false;
  ResetTxn();
  absl::StrAppend(&out_, "220 ", worker_->options_.hostname, " ESMTP ringload sink\r\n");
  ArmRecv();
  Flush();
  ArmIdle();
}

void SinkSession::ArmRecv() {
  io_uring_sqe* sqe = worker_->loop_.Prepare(recv_op_);
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
}

void SinkSession::ArmIdle() {
  worker_->loop_.timers().Arm(
      timer_,
      core::MonotonicMs() + static_cast<uint64_t>(worker_->options_.idle_timeout_s * 1000));
}

void SinkSession::RecvDone(core::Operation&, core::IoResult r) {
  const bool active = state_ != State::kClosing && state_ != State::kFree;
  if (r.ok() && r.has_buffer()) {
    core::BufferRing* buffers = worker_->buffers_.get();
    if (buffers != nullptr) {
      std::string_view data = buffers->Take(r.buffer_id(), r.value());
      if (active) Input(data);
      buffers->Recycle(r.buffer_id());
    }
  } else if (r.ok() && r.value() == 0) {
    if (active) Close();  // the client went away
  } else if (!r.ok() && r.error() != ENOBUFS && active) {
    Close();  // reset by the peer and the like: nothing to answer
  }
  if (r.more()) return;
  if (state_ == State::kClosing) return MaybeCloseFd();
  if (state_ != State::kFree && fd_ >= 0) ArmRecv();
}

void SinkSession::Input(std::string_view data) {
  if (tls_ == nullptr) return InputPlain(data);
  while (!data.empty()) {
    const size_t took = tls_->FeedCiphertext(data);
    data.remove_prefix(took);
    if (!TlsDrain()) return;
    if (took == 0 && tls_->ciphertext_in_room() == 0) {  // cannot happen with whole records
      ++worker_->stats_.tls_errors;
      return Close();
    }
  }
}

bool SinkSession::TlsDrain() {
  if (!tls_->established()) {
    const tls::TlsResult r = tls_->Handshake();
    if (r == tls::TlsResult::kError || r == tls::TlsResult::kClosed) {
      if (worker_->stats_.tls_errors++ == 0) worker_->NoteError(tls_->error());
      Flush();  // the alert, if any, then close
      Close();
      return false;
    }
    Flush();
    if (r != tls::TlsResult::kOk) return true;
    ++worker_->stats_.tls_handshakes;
  }
  for (;;) {
    std::string plain;
    const tls::TlsResult r = tls_->Read(&plain, kTlsPlainChunkBytes);
    if (r == tls::TlsResult::kOk) {
      InputPlain(plain);
      if (state_ == State::kClosing || state_ == State::kFree) return false;
      continue;
    }
    if (r == tls::TlsResult::kWantRead) return true;
    if (r == tls::TlsResult::kError) ++worker_->stats_.tls_errors;
    Close();
    return false;
  }
}

void SinkSession::InputPlain(std::string_view data) {
  if (state_ == State::kDelayed) {
    // A reply is being held back (--delay): keep what the client pipelined meanwhile.
    if (pending_.size() + data.size() > worker_->options_.max_message_bytes + (1 << 20)) {
      Reply("421 4.7.0 ringload sink: too much pipelined input\r\n");
      state_ = State::kQuit;
      Flush();
      return;
    }
    pending_.append(data);
    return;
  }
  size_t used = Process(data);
  if (used < data.size() && state_ == State::kDelayed) pending_.append(data.substr(used));
  if (starttls_) BeginTls();
  Flush();
  if (state_ != State::kDelayed && state_ != State::kClosing) ArmIdle();
}

void SinkSession::MoveToWire() {
  if (tls_ == nullptr) {
    if (wire_.empty()) {
      wire_.swap(out_);
    } else {
      wire_.append(out_);
    }
    out_.clear();
    return;
  }
  if (tls_->established() && !tls_->failed()) {
    std::string_view rest = out_;
    while (!rest.empty()) {
      size_t used = 0;
      if (tls_->Write(rest, &used) == tls::TlsResult::kError) break;
      rest.remove_prefix(used);
      wire_.append(tls_->TakeCiphertext());
    }
  }
  out_.clear();  // replies cannot go out in clear once TLS started
  wire_.append(tls_->TakeCiphertext());
}

void SinkSession::Flush() {
  if (fd_ < 0 || state_ == State::kClosing || state_ == State::kFree) return;
  if (!send_op_.idle()) return;
  MoveToWire();
  if (wire_.empty()) {
    if (state_ == State::kQuit) Close();
    return;
  }
  sending_.swap(wire_);
  wire_.clear();
  sending_finals_ = out_finals_;
  out_finals_ = 0;
  io_uring_sqe* sqe = worker_->loop_.Prepare(send_op_);
  io_uring_prep_send(sqe, fd_, sending_.data(), sending_.size(), MSG_NOSIGNAL);
}

void SinkSession::SendDone(core::Operation&, core::IoResult r) {
  if (state_ == State::kClosing) return MaybeCloseFd();
  if (!r.ok()) return Close();
  if (r.value() < sending_.size()) {
    sending_.erase(0, r.value());  // rare: a short send of a reply; send the rest
    io_uring_sqe* sqe = worker_->loop_.Prepare(send_op_);
    io_uring_prep_send(sqe, fd_, sending_.data(), sending_.size(), MSG_NOSIGNAL);
    return;
  }
  sending_.clear();
  if (sending_finals_ > 0) worker_->Answered(sending_finals_);
  sending_finals_ = 0;
  Flush();
}

void SinkSession::TimerFired(core::Timer&) {
  if (state_ == State::kDelayed) {
    out_.append(delayed_reply_);
    ++out_finals_;
    if (quit_after_final_) {
      state_ = State::kQuit;
      pending_.clear();
      Flush();
      return;
    }
    state_ = State::kCommand;
    // Now the input that waited: it may hold another message whose reply waits again.
    replay_.swap(pending_);
    pending_.clear();
    size_t used = Process(replay_);
    if (used < replay_.size() && state_ == State::kDelayed) {
      pending_.append(std::string_view(replay_).substr(used));
    }
    replay_.clear();
    Flush();
    if (state_ != State::kDelayed && state_ != State::kClosing) ArmIdle();
    return;
  }
  if (state_ == State::kClosing || state_ == State::kFree) return;
  Reply("421 4.4.2 ringload sink: idle timeout\r\n");
  state_ = State::kQuit;
  Flush();
}

void SinkSession::Shutdown() {
  if (state_ == State::kFree || state_ == State::kClosing) return;
  Close();
}

void SinkSession::Close() {
  if (state_ == State::kClosing || state_ == State::kFree) return;
  state_ = State::kClosing;
  worker_->loop_.timers().Cancel(timer_);
  if (!recv_op_.idle() || !send_op_.idle()) {
    io_uring_sqe* sqe = worker_->loop_.ring().PrepareUntracked();
    io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
  }
  MaybeCloseFd();
}

void SinkSession::MaybeCloseFd() {
  if (state_ != State::kClosing) return;
  if (!recv_op_.idle() || !send_op_.idle() || !close_op_.idle()) return;
  io_uring_sqe* sqe = worker_->loop_.Prepare(close_op_);
  io_uring_prep_close(sqe, fd_);
}

void SinkSession::CloseDone(core::Operation&, core::IoResult) {
  fd_ = -1;
  tls_.reset();  // a free slot holds no TLS state
  state_ = State::kFree;
  worker_->SessionFreed(this);
}

// ---------------------------------------------------------------------------------------
// SinkSession: the protocol

size_t SinkSession::Process(std::string_view data) {
  size_t used = 0;
  while (used < data.size()) {
    // RFC 3207 §4.2: what was pipelined behind STARTTLS in clear is discarded.
    if (starttls_) return data.size();
    std::string_view rest = data.substr(used);
    switch (state_) {
      case State::kCommand:
        used += ProcessCommandBytes(rest);
        break;
      case State::kData: {
        bool end = false;
        used += ScanData(rest, &end);
        if (end) EndOfMessage();
        break;
      }
      case State::kBdat: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(bdat_left_, rest.size()));
        Emit(rest.substr(0, n));
        bdat_left_ -= n;
        used += n;
        if (bdat_left_ == 0) BdatChunkDone();
        break;
      }
      case State::kQuit:
        return data.size();  // after QUIT (or 421) nothing more is read
      default:
        return used;  // kDelayed: the caller keeps the rest
    }
  }
  return used;
}

size_t SinkSession::ProcessCommandBytes(std::string_view data) {
  const size_t limit = worker_->options_.max_line_bytes;
  const char* nl = static_cast<const char*>(std::memchr(data.data(), '\n', data.size()));
  if (nl == nullptr) {
    if (skip_line_) return data.size();
    if (line_.size() + data.size() > limit) {
      CommandError("500 5.5.2 ringload sink: line too long\r\n");
      skip_line_ = true;
      line_.clear();
      return data.size();
    }
    line_.append(data);
    return data.size();
  }
  const size_t len = static_cast<size_t>(nl - data.data()) + 1;
  if (skip_line_) {
    skip_line_ = false;  // the rest of the over-long line: already answered
  } else if (line_.empty()) {
    if (len > limit) {
      CommandError("500 5.5.2 ringload sink: line too long\r\n");
    } else {
      Command(data.substr(0, len));
    }
  } else if (line_.size() + len > limit) {
    line_.clear();
    CommandError("500 5.5.2 ringload sink: line too long\r\n");
  } else {
    line_.append(data.substr(0, len));
    Command(line_);
    line_.clear();
  }
  return len;
}

// The end of DATA is a line holding only "."; a line starting with "." lost that dot on
// the wire (dot-stuffing). Whole lines are found with memchr; only line starts are looked
// at byte by byte.
size_t SinkSession::ScanData(std::string_view data, bool* end) {
  const char* p = data.data();
  const char* const stop = p + data.size();
  const uint32_t max_line = worker_->options_.max_line_bytes;
  while (p < stop) {
    switch (scan_) {
      case Scan::kLineStart:
        if (*p == '.') {
          scan_ = Scan::kDot;
          line_bytes_ = 1;
          ++p;
        } else {
          scan_ = Scan::kMid;
        }
        break;
      case Scan::kDot:
        if (*p == '\r') {
          scan_ = Scan::kDotCr;
          ++p;
        } else {
          scan_ = Scan::kMid;  // a stuffed dot: dropped, the line goes on
        }
        break;
      case Scan::kDotCr:
        if (*p == '\n') {
          *end = true;
          return static_cast<size_t>(p + 1 - data.data());
        }
        Emit("\r");
        scan_ = Scan::kMid;
        break;
      case Scan::kMid: {
        const char* nl = static_cast<const char*>(std::memchr(p, '\n', stop - p));
        const char* to = nl != nullptr ? nl + 1 : stop;
        const size_t n = static_cast<size_t>(to - p);
        Emit(std::string_view(p, n));
        if (line_bytes_ + n > max_line) too_long_ = true;
        line_bytes_ += static_cast<uint32_t>(std::min<size_t>(n, max_line + 1));
        if (nl != nullptr) {
          scan_ = Scan::kLineStart;
          line_bytes_ = 0;
        }
        p = to;
        break;
      }
    }
  }
  return data.size();
}

void SinkSession::Emit(std::string_view content) {
  msg_bytes_ += content.size();
  if (msg_bytes_ > worker_->options_.max_message_bytes) {
    too_big_ = true;
    return;
  }
  if (worker_->dump_ != nullptr) message_.append(content);
}

void SinkSession::CommandError(std::string_view reply) {
  ++worker_->stats_.command_errors;
  Reply(reply);
  if (++errors_ >= kCommandErrorsMax) {
    Reply("421 4.7.0 ringload sink: too many errors\r\n");
    state_ = State::kQuit;
  }
}

void SinkSession::Command(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  const SinkOptions& o = worker_->options_;
  if (StartsWithWord(line, "EHLO") || StartsWithWord(line, "HELO")) {
    if (line.size() < 6) return CommandError("501 5.5.4 Syntax: EHLO hostname\r\n");
    ResetTxn();
    if (EqualsIgnoreCase(line.substr(0, 4), "HELO")) {
      return Reply(absl::StrCat("250 ", o.hostname, "\r\n"));
    }
    if (o.tls_context != nullptr && tls_ == nullptr) {
      Reply(absl::StrCat("250-", o.hostname, "\r\n250-STARTTLS\r\n"));
    } else {
      Reply(absl::StrCat("250-", o.hostname, "\r\n"));
    }
    return Reply(absl::StrCat("250-PIPELINING\r\n250-SIZE ",
                              o.max_message_bytes,
                              "\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"));
  }
  if (line.size() >= 10 && EqualsIgnoreCase(line.substr(0, 10), "MAIL FROM:")) {
    return Mail(line.substr(10));
  }
  if (line.size() >= 8 && EqualsIgnoreCase(line.substr(0, 8), "RCPT TO:")) {
    return Rcpt(line.substr(8));
  }
  if (StartsWithWord(line, "STARTTLS")) return StartTls(line);
  if (StartsWithWord(line, "DATA")) return Data();
  if (StartsWithWord(line, "BDAT")) return Bdat(line.size() > 5 ? line.substr(5) : "");
  if (StartsWithWord(line, "RSET")) {
    ResetTxn();
    return Reply("250 2.0.0 Ok\r\n");
  }
  if (StartsWithWord(line, "NOOP")) return Reply("250 2.0.0 Ok\r\n");
  if (StartsWithWord(line, "QUIT")) {
    Reply("221 2.0.0 Bye\r\n");
    state_ = State::kQuit;
    return;
  }
  if (StartsWithWord(line, "VRFY")) return Reply("252 2.5.2 Cannot VRFY user\r\n");
  if (StartsWithWord(line, "HELP")) return Reply("214 2.0.0 ringload sink\r\n");
  CommandError("500 5.5.2 Error: command not recognized\r\n");
}

void SinkSession::StartTls(std::string_view line) {
  if (worker_->options_.tls_context == nullptr || tls_ != nullptr) {
    return CommandError("502 5.5.1 Error: STARTTLS not available\r\n");
  }
  if (line.size() > 8) return CommandError("501 5.5.4 Syntax: STARTTLS\r\n");
  if (mail_) return CommandError("503 5.5.1 Error: STARTTLS inside a transaction\r\n");
  Reply("220 2.0.0 Ready to start TLS\r\n");
  starttls_ = true;
}

void SinkSession::BeginTls() {
  starttls_ = false;
  MoveToWire();  // the 220 leaves in clear
  auto s = tls::TlsSession::NewServer(worker_->options_.tls_context);
  if (!s.ok()) {
    if (worker_->stats_.tls_errors++ == 0) worker_->NoteError(std::string(s.status().message()));
    state_ = State::kQuit;  // the 220 goes, then the connection closes
    return;
  }
  tls_ = *std::move(s);
  line_.clear();  // RFC 3207: the client starts over (EHLO)
  skip_line_ = false;
  ResetTxn();
}

void SinkSession::Mail(std::string_view args) {
  if (mail_) return CommandError("503 5.5.1 Error: nested MAIL command\r\n");
  std::string_view path, params;
  if (!ParsePath(args, &path, &params)) return CommandError("501 5.1.7 Bad sender address\r\n");
  // SIZE=n declared larger than we take: refuse now rather than after the upload.
  for (absl::string_view param : absl::StrSplit(Absl(params), ' ', absl::SkipEmpty())) {
    std::string_view p = Std(param);
    if (p.size() > 5 && EqualsIgnoreCase(p.substr(0, 5), "SIZE=")) {
      uint64_t size = 0;
      if (!ParseDecimal(p.substr(5), &size)) {
        return CommandError("501 5.5.4 Bad SIZE parameter\r\n");
      }
      if (size > worker_->options_.max_message_bytes) {
        return Reply("552 5.3.4 Message size exceeds fixed limit\r\n");
      }
    }
  }
  mail_ = true;
  if (worker_->dump_ != nullptr) absl::StrAppend(&envelope_, "MAIL FROM:<", Absl(path), ">\r\n");
  Reply("250 2.1.0 Ok\r\n");
}

void SinkSession::Rcpt(std::string_view args) {
  if (!mail_) return CommandError("503 5.5.1 Error: need MAIL command\r\n");
  if (rcpts_ >= worker_->options_.max_rcpts) {
    return Reply("452 4.5.3 Error: too many recipients\r\n");
  }
  std::string_view path, params;
  if (!ParsePath(args, &path, &params) || path.empty()) {
    return CommandError("501 5.1.3 Bad recipient address\r\n");
  }
  ++rcpts_;
  if (worker_->dump_ != nullptr) absl::StrAppend(&envelope_, "RCPT TO:<", Absl(path), ">\r\n");
  Reply("250 2.1.5 Ok\r\n");
}

void SinkSession::Data() {
  if (!mail_) return CommandError("503 5.5.1 Error: need MAIL command\r\n");
  if (rcpts_ == 0) return Reply("554 5.5.1 Error: no valid recipients\r\n");
  state_ = State::kData;
  scan_ = Scan::kLineStart;
  Reply("354 End data with <CR><LF>.<CR><LF>\r\n");
}

void SinkSession::Bdat(std::string_view args) {
  const size_t space = args.find(' ');
  const std::string_view size_text = args.substr(0, space);
  const std::string_view last = space == std::string_view::npos ? "" : args.substr(space + 1);
  uint64_t size = 0;
  if (!ParseDecimal(size_text, &size) || (!last.empty() && !EqualsIgnoreCase(last, "LAST"))) {
    // Without a size the chunk cannot be skipped; its bytes will read as bad commands.
    return CommandError("501 5.5.4 Syntax: BDAT size [LAST]\r\n");
  }
  bdat_last_ = !last.empty();
  bdat_left_ = size;
  bdat_refusal_ = !mail_ ? 503 : rcpts_ == 0 ? 554 : 0;
  state_ = State::kBdat;
  if (size == 0) BdatChunkDone();
}

void SinkSession::BdatChunkDone() {
  state_ = State::kCommand;
  if (bdat_refusal_ != 0) {
    Reply(bdat_refusal_ == 503 ? "503 5.5.1 Error: need MAIL command\r\n"
                               : "554 5.5.1 Error: no valid recipients\r\n");
    ++worker_->stats_.command_errors;
    bdat_refusal_ = 0;
    return;
  }
  if (!bdat_last_) {
    return Reply(absl::StrCat("250 2.0.0 ", msg_bytes_, " octets received\r\n"));
  }
  EndOfMessage();
}

void SinkSession::EndOfMessage() {
  state_ = State::kCommand;
  SinkWorker& w = *worker_;
  const SinkOptions& o = w.options_;
  std::string& reply = w.scratch_;
  reply.clear();
  int code = 250;
  if (too_big_) {
    code = 552;
    reply = "552 5.3.4 Error: message too big\r\n";
  } else if (too_long_) {
    code = 550;
    absl::StrAppend(&reply, "550 5.6.0 Error: a line is longer than ", o.max_line_bytes,
                    " bytes\r\n");
  } else if (int injected = w.DrawReply(); injected != 0) {
    code = injected;
    absl::StrAppend(&reply, code, " ", DefaultText(code), "\r\n");
  }
  w.stats_.codes.Add(code);
  w.last_answer_us_ = core::MonotonicUs();
  if (code == 250) {
    char id[32];
    std::snprintf(id, sizeof(id), "%02X%010llX", w.index_ & 0xff,
                  static_cast<unsigned long long>(w.next_id_++));
    absl::StrAppend(&reply, "250 2.0.0 Ok: queued as ", id, "\r\n");
    ++w.stats_.messages;
    w.stats_.bytes += msg_bytes_;
    LiveCounters::Add(w.live_.messages, 1);
    LiveCounters::Add(w.live_.bytes, msg_bytes_);
    if (w.dump_ != nullptr) {
      std::string file = std::move(envelope_);
      file.append("\r\n");
      file.append(message_);
      w.dump_->Write(absl::StrCat(o.common.dump_dir, "/", id, ".eml"), std::move(file));
    }
  } else {
    ++w.stats_.rejected;
    LiveCounters::Add(w.live_.failed, 1);
  }
  ResetTxn();
  quit_after_final_ = code == 421;  // 421 means the server closes the session
  FinalReply(reply);
}

void SinkSession::FinalReply(std::string_view reply) {
  if (worker_->options_.delay_ms == 0) {
    out_.append(reply);
    ++out_finals_;
    if (quit_after_final_) state_ = State::kQuit;
    return;
  }
  delayed_reply_.assign(reply);
  state_ = State::kDelayed;
  worker_->loop_.timers().Arm(timer_, core::MonotonicMs() + worker_->options_.delay_ms);
}

void SinkSession::ResetTxn() {
  mail_ = false;
  rcpts_ = 0;
  envelope_.clear();
  message_.clear();
  msg_bytes_ = 0;
  line_bytes_ = 0;
  too_big_ = too_long_ = false;
  scan_ = Scan::kLineStart;
  bdat_left_ = 0;
  bdat_last_ = false;
  bdat_refusal_ = 0;
}

// ---------------------------------------------------------------------------------------
// SinkWorker

SinkWorker::SinkWorker(core::Loop& loop, const SinkOptions& options, RunControl& control,
                       uint32_t index, int listen_fd, uint32_t max_sessions)
    : loop_(loop),
      options_(options),
      control_(control),
      index_(index),
      listen_fd_(listen_fd),
      max_sessions_(max_sessions),
      rng_(options.common.seed * 0x9E3779B97F4A7C15ull + index) {
  accept_op_.Bind<&SinkWorker::AcceptDone>(this, "sink-accept");
  accept_op_.multishot = true;
  listen_close_op_.Bind<&SinkWorker::AcceptDone>(this, "sink-listen-close");
  poll_timer_.Bind<&SinkWorker::PollTimer>(this);
  double total = 0;
  for (const ReplyRule& r : options.replies) {
    total += r.fraction;
    reply_cumulative_.push_back(total);
  }
  if (!options.common.dump_dir.empty()) dump_ = std::make_unique<DumpWriter>(loop);
}

SinkWorker::~SinkWorker() {
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void SinkWorker::Start() {
  loop_.OnStop([this] {
    buffers_.reset();  // forced stop: no buffer is read once the ring is gone
    stopping_ = true;
  });
  auto buffers = core::BufferRing::Create(loop_.ring(), kBufferGroup, kBufferCount, kBufferBytes);
  if (!buffers.ok()) {
    NoteError(std::string(buffers.status().message()));
    ++stats_.accept_errors;
    control_.AddErrors(1);
    control_.RequestEnd();
    stopping_ = done_ = true;
    control_.WorkerDone();
    return;
  }
  buffers_ = std::move(buffers).value();
  ArmAccept();
}

void SinkWorker::ArmAccept() {
  io_uring_sqe* sqe = loop_.Prepare(accept_op_);
  io_uring_prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
}

void SinkWorker::AcceptDone(core::Operation& op, core::IoResult r) {
  if (&op == &listen_close_op_) {
    listen_fd_ = -1;
    return MaybeDone();
  }
  if (r.ok()) {
    const int fd = r.res;
    if (stopping_ || (free_.empty() && sessions_.size() >= max_sessions_)) {
      ++stats_.refused;
      io_uring_sqe* sqe = loop_.ring().PrepareUntracked();
      io_uring_prep_close(sqe, fd);
    } else {
      SinkSession* s;
      if (!free_.empty()) {
        s = free_.back();
        free_.pop_back();
      } else {
        sessions_.push_back(
            std::make_unique<SinkSession>(this, static_cast<uint32_t>(sessions_.size())));
        s = sessions_.back().get();
      }
      ++live_sessions_;
      if (stats_.connections++ == 0) first_accept_us_ = core::MonotonicUs();
      s->Start(fd);
    }
  } else if (!r.canceled()) {
    if (stats_.accept_errors++ == 0) {
      NoteError(absl::StrCat("accept: ", std::strerror(r.error())));
    }
  }
  if (r.more()) return;
  if (!stopping_) return ArmAccept();
  MaybeDone();
}

void SinkWorker::SessionFreed(SinkSession* s) {
  --live_sessions_;
  free_.push_back(s);
  MaybeDone();
}

void SinkWorker::Answered(uint32_t n) {
  if (options_.expect == 0) return;
  if (control_.AddAnswered(n) >= options_.expect) control_.RequestEnd();
}

int SinkWorker::DrawReply() {
  if (reply_cumulative_.empty()) return 0;
  const double draw = uniform_(rng_);
  for (size_t i = 0; i < reply_cumulative_.size(); ++i) {
    if (draw < reply_cumulative_[i]) return options_.replies[i].code;
  }
  return 0;
}

void SinkWorker::Shutdown() {
  if (stopping_) return MaybeDone();
  stopping_ = true;
  if (listen_fd_ >= 0 && !accept_op_.idle()) {
    io_uring_sqe* sqe = loop_.ring().PrepareUntracked();
    io_uring_prep_cancel_fd(sqe, listen_fd_, IORING_ASYNC_CANCEL_ALL);
  }
  for (auto& s : sessions_) s->Shutdown();
  MaybeDone();
}

void SinkWorker::MaybeDone() {
  if (!stopping_ || done_) return;
  if (!accept_op_.idle() || live_sessions_ > 0) return;
  if (listen_fd_ >= 0) {
    if (listen_close_op_.idle()) {
      io_uring_sqe* sqe = loop_.Prepare(listen_close_op_);
      io_uring_prep_close(sqe, listen_fd_);
    }
    return;
  }
  if (dump_ != nullptr && !dump_->idle()) {
    loop_.timers().Arm(poll_timer_, core::MonotonicMs() + kPollMs);
    return;
  }
  done_ = true;
  if (dump_ != nullptr && dump_->failures() > 0) {
    stats_.file_errors += dump_->failures();
    NoteError(dump_->first_error());
  }
  buffers_.reset();
  control_.WorkerDone();
}

void SinkWorker::PollTimer(core::Timer&) { MaybeDone(); }

void SinkWorker::NoteError(const std::string& what) {
  if (stats_.first_error.empty()) stats_.first_error = what;
}

}  // namespace ringmail::ringload
