#include "tools/ringload/http_conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tools/ringload/text.h"

namespace ringmail::ringload {
namespace {

constexpr uint32_t kBackoffMinMs = 20;
constexpr uint32_t kBackoffMaxMs = 1000;

// The number after `"key":` in a flat JSON object, or 0.
uint64_t JsonCount(std::string_view body, std::string_view key) {
  const size_t at = body.find(key);
  if (at == std::string_view::npos) return 0;
  size_t p = at + key.size();
  size_t end = p;
  while (end < body.size() && end - p < 19 && body[end] >= '0' && body[end] <= '9') ++end;
  uint64_t v = 0;
  return ParseDecimal(body.substr(p, end - p), &v) ? v : 0;
}

}  // namespace

std::string HttpRequestPrefix(const SendOptions& o) {
  std::string out = absl::StrCat("POST ", o.http_path, " HTTP/1.1\r\nHost: ", o.target.text,
                                 "\r\nUser-Agent: ringload\r\n");
  if (!o.http_token.empty()) absl::StrAppend(&out, "Authorization: Bearer ", o.http_token, "\r\n");
  out.append("Content-Type: application/json\r\nContent-Length: ");
  return out;
}

// ---------------------------------------------------------------------------------------
// HttpConn: connection lifecycle (the same shape as ClientConn's)

HttpConn::HttpConn(SendWorker* worker, uint32_t /*slot*/) : worker_(worker) {
  connect_op_.Bind<&HttpConn::ConnectDone>(this, "http-connect");
  recv_op_.Bind<&HttpConn::RecvDone>(this, "http-recv");
  recv_op_.multishot = true;
  send_op_.Bind<&HttpConn::SendDone>(this, "http-send");
  close_op_.Bind<&HttpConn::CloseDone>(this, "http-close");
  timer_.Bind<&HttpConn::TimerFired>(this);
}

HttpConn::~HttpConn() {
  // Only after the loop has stopped (every operation completed): a plain close is safe.
  if (fd_ >= 0) ::close(fd_);
}

size_t HttpConn::depth() const { return worker_->options_.pipelining ? kPipelineDepth : 1; }

void HttpConn::Connect() {
  ResetSession();
  error_close_ = false;
  const Endpoint& target = worker_->options_.target;
  fd_ = ::socket(target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    ++worker_->stats_.connect_errors;
    worker_->NoteError(absl::StrCat("socket: ", std::strerror(errno)));
    worker_->CountError();
    error_close_ = true;
    state_ = State::kClosing;
    Closed();
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  state_ = State::kConnecting;
  io_uring_sqe* sqe = worker_->loop_.Prepare(connect_op_);
  io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&target.addr), target.len);
  UpdateTimer();
}

void HttpConn::ConnectDone(core::Operation&, core::IoResult r) {
  if (state_ != State::kConnecting) return MaybeCloseFd();
  if (!r.ok()) {
    ++worker_->stats_.connect_errors;
    worker_->NoteError(absl::StrCat("connect ", worker_->options_.target.text, ": ",
                                    std::strerror(r.error())));
    worker_->CountError();
    error_close_ = true;
    return Close();
  }
  ++worker_->stats_.connections;
  state_ = State::kReady;
  backoff_ms_ = 0;
  ArmRecv();
  Fill();
  Flush();
  UpdateTimer();
}

void HttpConn::ArmRecv() {
  io_uring_sqe* sqe = worker_->loop_.Prepare(recv_op_);
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kSendBufferGroup;
}

void HttpConn::RecvDone(core::Operation&, core::IoResult r) {
  const bool active = state_ == State::kReady;
  if (r.ok() && r.has_buffer()) {
    core::BufferRing* buffers = worker_->buffers_.get();
    if (buffers != nullptr) {  // null only once the loop is being torn down
      std::string_view data = buffers->Take(r.buffer_id(), r.value());
      if (active) Feed(data);
      buffers->Recycle(r.buffer_id());
    }
  } else if (r.ok() && r.value() == 0) {
    if (active) {
      if (request_count_ == 0) {
        Close();  // an idle keep-alive connection closed by the server: reconnect
      } else {
        Fail("connection closed by the server", 0);
      }
    }
  } else if (!r.ok() && r.error() != ENOBUFS && active) {
    Fail("recv", r.error());
  }
  if (r.more()) return;
  if (state_ == State::kClosing) return MaybeCloseFd();
  if (state_ == State::kReady && fd_ >= 0) ArmRecv();
}

void HttpConn::SendDone(core::Operation&, core::IoResult r) {
  if (state_ == State::kClosing) return MaybeCloseFd();
  if (!r.ok()) return Fail("send", r.error());
  send_done_ += r.value();
  if (send_done_ < sending_.bytes) return SubmitSend();  // short send: the rest
  sending_.Clear();
  Flush();
}

void HttpConn::DropInFlight(uint64_t* counter) {
  for (size_t i = 0; i < request_count_; ++i) {
    ++*counter;
    if (counter == &worker_->stats_.lost) {
      worker_->stats_.codes.Add(0);
      LiveCounters::Add(worker_->live_.failed, 1);
    }
  }
  if (counter == &worker_->stats_.lost) worker_->CountError(request_count_);
  request_count_ = 0;
}

void HttpConn::Fail(const char* what, int error) {
  if (state_ == State::kClosing || state_ == State::kFinished) return;
  ++worker_->stats_.session_errors;
  worker_->NoteError(error != 0 ? absl::StrCat(what, ": ", std::strerror(error))
                                : std::string(what));
  worker_->CountError();
  DropInFlight(&worker_->stats_.lost);
  error_close_ = true;
  Close();
}

void HttpConn::Close() {
  if (state_ == State::kClosing || state_ == State::kFinished) return;
  state_ = State::kClosing;
  worker_->loop_.timers().Cancel(timer_);
  if (!connect_op_.idle() || !recv_op_.idle() || !send_op_.idle()) {
    io_uring_sqe* sqe = worker_->loop_.ring().PrepareUntracked();
    io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
  }
  MaybeCloseFd();
}

void HttpConn::MaybeCloseFd() {
  if (state_ != State::kClosing) return;
  if (!connect_op_.idle() || !recv_op_.idle() || !send_op_.idle() || !close_op_.idle()) return;
  if (fd_ < 0) return Closed();
  io_uring_sqe* sqe = worker_->loop_.Prepare(close_op_);
  io_uring_prep_close(sqe, fd_);
}

void HttpConn::CloseDone(core::Operation&, core::IoResult) {
  fd_ = -1;  // closed even when close reports an error
  Closed();
}

void HttpConn::Closed() {
  fd_ = -1;
  ResetSession();
  if (!worker_->stopping_ && worker_->wants_connections()) {
    if (error_close_) {
      backoff_ms_ = backoff_ms_ == 0 ? kBackoffMinMs : std::min(backoff_ms_ * 2, kBackoffMaxMs);
      state_ = State::kDisconnected;
      worker_->loop_.timers().Arm(timer_, core::MonotonicMs() + backoff_ms_);
    } else {
      Connect();
    }
    return;
  }
  state_ = State::kFinished;
  worker_->ConnFinished();
}

void HttpConn::ResetSession() {
  reader_.Clear();
  request_head_ = request_count_ = 0;
  compose_.Clear();
  sending_.Clear();
  send_done_ = 0;
  messages_on_conn_ = 0;
  server_closing_ = false;
}

void HttpConn::Shutdown() {
  switch (state_) {
    case State::kFinished:
    case State::kClosing:
      return;
    case State::kDisconnected:
      worker_->loop_.timers().Cancel(timer_);
      state_ = State::kFinished;
      worker_->ConnFinished();
      return;
    default:
      DropInFlight(&worker_->stats_.aborted);
      Close();
  }
}

void HttpConn::Abandon() {
  switch (state_) {
    case State::kDisconnected:
      worker_->loop_.timers().Cancel(timer_);
      state_ = State::kFinished;
      worker_->ConnFinished();
      return;
    case State::kConnecting:
      Close();
      return;
    case State::kReady:
      if (request_count_ == 0) Close();
      return;
    default:
      return;
  }
}

void HttpConn::TimerFired(core::Timer&) {
  if (state_ == State::kDisconnected) return Connect();
  if (worker_->loop_.now_ms() < io_deadline_ms_) {
    worker_->loop_.timers().Arm(timer_, io_deadline_ms_);  // answers came meanwhile
    return;
  }
  Fail(state_ == State::kConnecting ? "timed out connecting" : "timed out waiting for a response",
       0);
}

void HttpConn::UpdateTimer() {
  if (state_ == State::kConnecting || (state_ == State::kReady && request_count_ > 0)) {
    // Armed lazily, as ClientConn::UpdateTimer explains.
    io_deadline_ms_ = worker_->loop_.now_ms() + worker_->io_timeout_ms_;
    if (!timer_.armed()) worker_->loop_.timers().Arm(timer_, io_deadline_ms_);
  } else if (state_ != State::kDisconnected) {
    worker_->loop_.timers().Cancel(timer_);
  }
}

// ---------------------------------------------------------------------------------------
// HttpConn: requests

void HttpConn::Resume() {
  parked_ = false;
  if (state_ != State::kReady) return;
  Fill();
  Flush();
  UpdateTimer();
}

void HttpConn::Fill() {
  const uint64_t per_conn = worker_->options_.messages_per_connection;
  while (state_ == State::kReady && !server_closing_ && request_count_ < depth()) {
    if (per_conn != 0 && messages_on_conn_ >= per_conn) break;
    MessageTicket ticket;
    const SendWorker::Take take = worker_->TakeMessage(&ticket);
    if (take == SendWorker::Take::kReady) {
      Compose(ticket);
      continue;
    }
    if (take == SendWorker::Take::kWait && request_count_ == 0 && !parked_) {
      parked_ = true;
      worker_->Park(this);
    }
    if (take == SendWorker::Take::kDone && request_count_ == 0) Close();
    return;
  }
  // Used up (--messages-per-connection) or closing: a new connection takes over.
  if (state_ == State::kReady && request_count_ == 0) Close();
}

void HttpConn::AddText(size_t from) {
  if (compose_.text.size() > from) {
    compose_.pieces.push_back({from, compose_.text.size() - from, {}});
    compose_.bytes += compose_.text.size() - from;
  }
}

void HttpConn::Compose(const MessageTicket& ticket) {
  const MessageFactory& f = worker_->factory_;
  Request& r = requests_[(request_head_ + request_count_) % kPipelineDepth];
  ++request_count_;
  ++messages_on_conn_;
  r.ticket = ticket;
  r.start_us = core::MonotonicUs();
  const size_t size_class =
      f.size_classes() == 1 ? 0 : f.PickSizeClass(worker_->uniform_(worker_->rng_));
  const MessageFactory::Body& body = f.body(size_class);
  json_.clear();
  // The message size as in SMTP mode: header block + body (not the JSON around them).
  r.bytes = f.AppendJsonPrefix(ticket.seq, &json_) + body.raw.size();
  const std::string_view tail = f.json_tail();
  const size_t from = compose_.text.size();
  compose_.text.append(worker_->http_prefix_);
  compose_.text.append(std::to_string(json_.size() + body.json.size() + tail.size()));
  compose_.text.append("\r\n\r\n");
  compose_.text.append(json_);
  AddText(from);
  if (!body.json.empty()) {
    compose_.pieces.push_back({0, 0, body.json});
    compose_.bytes += body.json.size();
  }
  const size_t tail_from = compose_.text.size();
  compose_.text.append(tail);
  AddText(tail_from);
}

void HttpConn::Flush() {
  if (state_ != State::kReady || fd_ < 0) return;
  if (!send_op_.idle() || compose_.bytes == 0) return;
  std::swap(compose_, sending_);
  compose_.Clear();
  send_done_ = 0;
  SubmitSend();
}

void HttpConn::SubmitSend() {
  // The iovecs past what has been sent already (rebuilt only after a short send).
  iov_.clear();
  size_t skip = send_done_;
  for (const Piece& p : sending_.pieces) {
    std::string_view part = p.shared.empty()
                                ? std::string_view(sending_.text).substr(p.offset, p.len)
                                : p.shared;
    if (skip >= part.size()) {
      skip -= part.size();
      continue;
    }
    iov_.push_back({const_cast<char*>(part.data() + skip), part.size() - skip});
    skip = 0;
  }
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  io_uring_sqe* sqe = worker_->loop_.Prepare(send_op_);
  io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL | MSG_WAITALL);
}

void HttpConn::Feed(std::string_view data) {
  if (!reader_.Feed(data)) return Fail(reader_.error(), 0);
  HttpResponseReader::Response response;
  for (;;) {
    const HttpResponseReader::Result r = reader_.Next(&response);
    if (r == HttpResponseReader::Result::kNeedMore) break;
    if (r == HttpResponseReader::Result::kError) return Fail(reader_.error(), 0);
    OnResponse(response);
    if (state_ != State::kReady) return;
  }
  Fill();
  Flush();
  UpdateTimer();
}

void HttpConn::OnResponse(const HttpResponseReader::Response& response) {
  if (request_count_ == 0) return Fail("response to no request", 0);
  const Request r = requests_[request_head_];
  request_head_ = (request_head_ + 1) % kPipelineDepth;
  --request_count_;
  const uint64_t now = core::MonotonicUs();
  const uint64_t from = r.ticket.due_us != 0 ? r.ticket.due_us : r.start_us;
  worker_->stats_.codes.Add(response.status);
  if (response.status >= 200 && response.status < 300) {
    worker_->stats_.rcpts_rejected += JsonCount(response.body, "\"failure_count\":");
    worker_->Accepted(r.ticket, now > from ? now - from : 0, r.bytes, response.body);
  } else {
    ++(response.status >= 500 ? worker_->stats_.rejected_5xx : worker_->stats_.rejected_4xx);
    LiveCounters::Add(worker_->live_.failed, 1);
    worker_->CountError();
    if (worker_->stats_.first_error.empty()) {
      worker_->NoteError(absl::StrCat("HTTP ", response.status, ": ",
                                      Absl(response.body.substr(0, 200))));
    }
  }
  if (!response.close) return;
  server_closing_ = true;
  if (request_count_ > 0) return Fail("server closed the connection with requests pending", 0);
  Close();  // not an error: a new connection takes over
}

}  // namespace ringmail::ringload
