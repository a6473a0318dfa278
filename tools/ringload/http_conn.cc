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
// HttpConn: SendConn's hooks

HttpConn::HttpConn(SendWorker* worker, uint32_t /*slot*/)
    : SendConn(worker, "http-connect", "http-close") {
  recv_op_.Bind<&HttpConn::RecvDone>(this, "http-recv");
  recv_op_.multishot = true;
  send_op_.Bind<&HttpConn::SendDone>(this, "http-send");
}

size_t HttpConn::depth() const { return worker_->options_.pipelining ? kPipelineDepth : 1; }

void HttpConn::Opened() {
  backoff_ms_ = 0;
  Fill();
  Flush();
  UpdateTimer();
}

void HttpConn::PeerClosed() {
  if (request_count_ == 0) {
    Close();  // an idle keep-alive connection closed by the server: reconnect
  } else {
    Fail("connection closed by the server", 0);
  }
}

void HttpConn::SendDone(core::Operation&, core::IoResult r) {
  if (link_ == Link::kClosing) return MaybeCloseFd();
  if (!r.ok()) return Fail("send", r.error());
  send_done_ += r.value();
  if (send_done_ < sending_.bytes) return SubmitSend();  // short send: the rest
  sending_.Clear();
  Flush();
}

size_t HttpConn::TakeInFlight() {
  const size_t n = request_count_;
  request_count_ = 0;
  return n;
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

// ---------------------------------------------------------------------------------------
// HttpConn: requests

void HttpConn::Resume() {
  parked_ = false;
  if (!open()) return;
  Fill();
  Flush();
  UpdateTimer();
}

void HttpConn::Fill() {
  const uint64_t per_conn = worker_->options_.messages_per_connection;
  while (open() && !server_closing_ && request_count_ < depth()) {
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
  if (open() && request_count_ == 0) Close();
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
  if (!open() || fd_ < 0) return;
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

void HttpConn::Received(std::string_view data) {
  if (!reader_.Feed(data)) return Fail(reader_.error(), 0);
  HttpResponseReader::Response response;
  for (;;) {
    const HttpResponseReader::Result r = reader_.Next(&response);
    if (r == HttpResponseReader::Result::kNeedMore) break;
    if (r == HttpResponseReader::Result::kError) return Fail(reader_.error(), 0);
    OnResponse(response);
    if (!open()) return;
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
