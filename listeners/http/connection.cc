#include "listeners/http/connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "listeners/http/listener.h"
#include "tls/context.h"

namespace ringmail::listeners::http {
namespace {

// Received bytes held unparsed while a request is being answered (pipelined requests).
// Past this the connection stops reading and TCP pushes back on the client.
constexpr size_t kStashBytesMax = 256 * 1024;
// Responses queued for a client that does not read them; past this no new request is
// handled until the sends drain.
constexpr size_t kOutputBytesMax = 1 << 20;
// The parsed prefix of the stash is dropped once it is this large (amortised compaction).
constexpr size_t kStashCompactBytes = 64 * 1024;

uint64_t WallMs() { return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())); }

}  // namespace

Connection::Connection(HttpListener& listener, uint64_t id, int fd, std::string peer_ip,
                       uint16_t peer_port, std::shared_ptr<const HttpSettings> settings,
                       bool tls)
    : listener_(listener),
      id_(id),
      fd_(fd),
      peer_ip_(std::move(peer_ip)),
      peer_port_(peer_port),
      settings_(std::move(settings)),
      parser_(settings_->parser) {
  recv_op_.Bind<&Connection::RecvDone>(this, "http.recv");
  recv_op_.multishot = true;
  send_op_.Bind<&Connection::SendDone>(this, "http.send");
  close_op_.Bind<&Connection::CloseDone>(this, "http.close");
  deadline_.Bind<&Connection::DeadlineFired>(this);
  if (tls && settings_->tls_server != nullptr) {
    auto session = tls::TlsSession::NewServer(settings_->tls_server);
    if (session.ok()) tls_ = *std::move(session);
    tls::ReleaseThreadEccCacheAtExit();
  }
  tls_wanted_ = tls;
}

Connection::~Connection() {
  RM_CHECK(recv_op_.idle() && send_op_.idle() && close_op_.idle())
      << "http connection freed with a ring operation in flight";
  RM_CHECK(commits_in_flight_ == 0) << "http connection freed with a spool commit in flight";
  RM_CHECK(!deadline_.armed());
}

void Connection::Start() {
  draining_ = listener_.draining();
  started_ms_ = listener_.loop().now_ms();
  if (tls_wanted_ && tls_ == nullptr) {
    BeginClose();  // no session could be made: nothing can be said to this client
    return;
  }
  Pump();
}

void Connection::Refuse(const HttpResponse& response) {
  if (tls_wanted_) {
    BeginClose();  // not worth a handshake
    return;
  }
  persistence_ = Persistence::kClose;
  Respond(response);
  Flush();
  ArmDeadline();
}

void Connection::Shutdown() {
  draining_ = true;
  if (closing_) return;
  if (phase_ == Phase::kReading && request_started_ms_ == 0 && sending_.empty() &&
      Pending().empty()) {
    BeginClose();  // idle keep-alive connection: nothing to finish
  }
}

void Connection::Abort() { BeginClose(); }

void Connection::Pump() {
  if (closing_) return;
  while (phase_ == Phase::kReading && !close_after_send_ &&
         sending_.size() + output_.size() + tls_out_.size() < kOutputBytesMax) {
    if (!FeedParser()) break;
  }
  if (peer_closed_ && phase_ == Phase::kReading && !close_after_send_ &&
      (Pending().empty() || parser_.error_status() != 0)) {
    close_after_send_ = true;  // nothing more will come; a partial request is dropped
  }
  Flush();
  if (close_after_send_ && sending_.empty() && phase_ == Phase::kReading) {
    BeginClose();
    return;
  }
  ArmDeadline();
  if (!recv_armed_ && !peer_closed_ && !close_after_send_ && Pending().size() < kStashBytesMax) {
    ArmRecv();
  }
}

// Feeds the stash to the parser and acts on what it found; false when it needs more input.
bool Connection::FeedParser() {
  const std::string_view input = Pending();
  if (input.empty()) return false;
  const RequestParser::Result r = parser_.Feed(input);
  stash_used_ += r.consumed;
  if (stash_used_ == stash_.size()) {
    stash_.clear();
    stash_used_ = 0;
  } else if (stash_used_ >= kStashCompactBytes && stash_used_ * 2 >= stash_.size()) {
    stash_.erase(0, stash_used_);
    stash_used_ = 0;
  }
  // Any byte the parser takes starts the request's clock, the empty lines it skips before a
  // request line too (RFC 9112 §2.2): else a client sending only CRLFs would renew the
  // idle timer for ever, holding a connection without ever making a request.
  if ((parser_.in_message() || r.consumed > 0) && request_started_ms_ == 0) {
    request_started_ms_ = listener_.loop().now_ms();
  }
  switch (r.event) {
    case RequestParser::Event::kNeedMore:
      return false;
    case RequestParser::Event::kHeaders:
      OnHeaders();
      return true;
    case RequestParser::Event::kMessage:
      OnMessage();
      return true;
    case RequestParser::Event::kError:
      persistence_ = Persistence::kClose;
      Respond(JsonError(parser_.error_status(), parser_.error_text()));
      return false;
  }
  return false;
}

void Connection::OnHeaders() {
  const HttpRequest& req = parser_.request();
  head_request_ = req.method == Method::kHead;
  if (!req.keep_alive || req.upgrade || draining_) {
    persistence_ = Persistence::kClose;
  } else {
    persistence_ = req.version_minor == 0 ? Persistence::kKeepAliveHttp10 : Persistence::kKeepAlive;
  }
  endpoint_.reset();
  early_.reset();
  std::optional<HttpResponse> refuse;
  Route route = RouteRequest(req.method, req.path);
  const std::string* expect = req.Header("expect");
  if (req.version_minor >= 1 && req.Header("host") == nullptr) {
    refuse = JsonError(400, "HTTP/1.1 request without a Host header");
  } else if (!route.endpoint) {
    refuse = std::move(route.error);
  } else if (NeedsToken(*route.endpoint) &&
             !BearerMatches(req.Header("authorization"), listener_.auth_token())) {
    refuse = Unauthorized();
  } else if (expect != nullptr && !EqualsIgnoreCase(*expect, "100-continue")) {
    refuse = JsonError(417, "only 'Expect: 100-continue' is understood");
  }
  if (!refuse) {
    endpoint_ = route.endpoint;
    if (expect != nullptr && req.body_expected() && req.version_minor >= 1) {
      output_.append("HTTP/1.1 100 Continue\r\n\r\n");  // the client waits for it
    }
    return;
  }
  if (req.body_expected()) {
    // A body we will not use is not read: answer now and close.
    refuse->close = true;
    Respond(*refuse);
    return;
  }
  early_ = std::move(refuse);
}

void Connection::OnMessage() {
  HttpRequest& req = parser_.mutable_request();
  if (req.upgrade) persistence_ = Persistence::kClose;  // we never switch protocols
  if (early_) {
    HttpResponse r = std::move(*early_);
    early_.reset();
    Respond(r);
    EndRequest();
    return;
  }
  if (!endpoint_) {  // cannot happen: kHeaders always precedes kMessage
    RM_BUG("http: request without an endpoint");
    persistence_ = Persistence::kClose;
    Respond(JsonError(500, "internal error"));
    return;
  }
  switch (*endpoint_) {
    case Endpoint::kHealthz: {
      HttpResponse r;
      r.content_type = "text/plain; charset=utf-8";
      r.body = "ok\n";
      Respond(r);
      EndRequest();
      return;
    }
    case Endpoint::kMetrics:
    case Endpoint::kQueues:
      phase_ = Phase::kHook;
      hook_started_ms_ = listener_.loop().now_ms();
      listener_.CallHook(*endpoint_, id_, ++hook_seq_);
      return;
    case Endpoint::kInject:
      StartInject(std::move(req.body));
      return;
  }
}

void Connection::EndRequest() {
  parser_.Next();
  request_started_ms_ = 0;
  endpoint_.reset();
  head_request_ = false;
}

void Connection::StartInject(std::string body) {
  const HttpSettings& s = *settings_;
  // Built messages wait in memory for the spool: past a few requests' worth on this loop,
  // a new request is turned away before anything is decoded. The messages are charged as
  // they are built, so that requests built together on the pool cannot all pass this check.
  const uint64_t budget_limit = kInFlightRequestsPerLoop * s.request_bytes_max;
  if (listener_.inject_budget()->used() + s.request_bytes_max > budget_limit) {
    HttpResponse busy = JsonError(503, "too many messages being committed; try again");
    busy.headers.push_back({"Retry-After", "1"});
    Respond(busy);
    EndRequest();
    return;
  }
  absl::StatusOr<InjectRequest> decoded =
      listener_.decoder(s.parser.body_bytes_max).Decode(body, DecodeLimits{s.max_recipients});
  if (!decoded.ok()) {
    Respond(ResponseForStatus(decoded.status(), ErrorStage::kRequest));
    EndRequest();
    return;
  }
  InjectContext ctx;
  ctx.policy = &s.policy;
  ctx.peer = esmtp::IpAddress::Parse(peer_ip_);
  ctx.peer_text = absl::StrCat(peer_ip_, ":", peer_port_);
  ctx.hostname = s.hostname;
  ctx.now_ms = WallMs();
  ctx.message_bytes_max = s.message_bytes_max;
  ctx.request_bytes_max = s.request_bytes_max;
  ctx.budget = listener_.inject_budget();
  ctx.budget_limit = budget_limit;
  // Templates and MIME are built off the loop when the daemon lends a thread: ids for every
  // message it can make (one per recipient at most) are drawn here, on the loop that owns
  // the generator.
  for (size_t i = 0; i < std::max<size_t>(decoded->recipients.size(), 1); ++i) {
    ctx.ids.push_back(listener_.ids().Next(ctx.now_ms));
  }
  if (listener_.PlanOffLoop(*decoded, ctx, settings_, id_, ++plan_seq_)) {
    phase_ = Phase::kPlanning;
    ArmDeadline();
    return;
  }
  UsePlan(PlanInjection(*decoded, ctx), /*posted=*/false);
}

void Connection::PlanDone(uint64_t seq, absl::StatusOr<InjectionPlan> plan) {
  if (closing_ || phase_ != Phase::kPlanning || seq != plan_seq_) return;  // late: dropped
  UsePlan(std::move(plan), /*posted=*/true);
}

// Answers the request from its plan, or commits its messages. `posted`: from a task of its
// own (built off the loop), so the connection is pumped after; else the parser's loop that
// called OnMessage goes on by itself.
void Connection::UsePlan(absl::StatusOr<InjectionPlan> plan, bool posted) {
  phase_ = Phase::kReading;
  if (!plan.ok()) {
    Respond(ResponseForStatus(plan.status(), ErrorStage::kRequest));
    EndRequest();
  } else {
    failures_ = std::move(plan->failures);
    if (plan->messages.empty()) {
      FinishInject();
    } else {
      CommitAll(*std::move(plan));
    }
  }
  if (posted) Pump();
}

void Connection::CommitAll(InjectionPlan plan) {
  phase_ = Phase::kCommitting;
  commit_charge_ = std::move(plan.charge);
  for (std::unique_ptr<core::Message>& m : plan.messages) {
    auto c = std::make_unique<PendingCommit>();
    c->request.Bind<&Connection::CommitDone>(this);
    for (const core::Recipient& r : m->envelope.recipients) c->recipients.push_back(r.address);
    c->from = m->envelope.mail_from;
    c->size = m->content_size();
    c->request.message = std::move(m);
    commits_.push_back(std::move(c));
  }
  commits_in_flight_ = commits_.size();
  // Every commit of this request joins the loop turn's batch: one write, one fdatasync.
  for (auto& c : commits_) listener_.spool().Commit(c->request);
}

void Connection::CommitDone(spool::CommitRequest& request) {
  RM_CHECK(commits_in_flight_ > 0);
  --commits_in_flight_;
  HttpCounters& counters = listener_.shared().counters();
  for (const auto& c : commits_) {
    if (&c->request != &request) continue;
    commit_charge_.Release(c->size);
    if (request.status.ok()) {
      counters.messages.fetch_add(1, std::memory_order_relaxed);
      counters.recipients.fetch_add(c->recipients.size(), std::memory_order_relaxed);
      counters.message_bytes.fetch_add(c->size, std::memory_order_relaxed);
    } else {
      counters.commit_errors.fetch_add(1, std::memory_order_relaxed);
    }
    LogReception(*c, request.status.ok()
                         ? 200
                         : ResponseForStatus(request.status, ErrorStage::kSpool).status);
  }
  request.message.reset();
  if (commits_in_flight_ > 0) return;
  if (closing_) {
    commits_.clear();
    MaybeFinishClose();
    return;
  }
  FinishInject();
  Pump();
}

void Connection::FinishInject() {
  size_t accepted = 0;
  std::vector<std::string> ids;
  const absl::Status* first_error = nullptr;
  for (const auto& c : commits_) {
    const absl::Status& st = c->request.status;
    if (st.ok()) {
      accepted += c->recipients.size();
      ids.push_back(c->request.id.ToHex());
      continue;
    }
    if (first_error == nullptr) first_error = &st;
    for (const std::string& r : c->recipients) {
      failures_.push_back({r, absl::StrCat("spool: ", st.message())});
    }
  }
  HttpResponse r;
  if (ids.empty() && first_error != nullptr) {
    r = ResponseForStatus(*first_error, ErrorStage::kSpool);
  } else {
    r.content_type = "application/json";
    r.body = InjectResultJson(accepted, failures_, ids);
  }
  commits_.clear();
  failures_.clear();
  phase_ = Phase::kReading;
  Respond(r);
  EndRequest();
}

void Connection::LogReception(const PendingCommit& c, int code) {
  core::EventLog* log = listener_.log();
  if (log == nullptr) return;
  core::JsonLine line;
  line.Str("event", "received")
      .Str("via", "http")
      .Str("id", c.request.id.ToHex())
      .Str("peer", peer_ip_)
      .Str("from", c.from)
      .Uint("rcpts", c.recipients.size())
      .Uint("size", c.size)
      .Int("code", code);
  if (!c.request.status.ok()) line.Str("error", std::string(c.request.status.message()));
  log->Append(line.Finish());
}

void Connection::Respond(const HttpResponse& response) {
  HttpCounters& counters = listener_.shared().counters();
  counters.requests.fetch_add(1, std::memory_order_relaxed);
  auto& klass = response.status < 400   ? counters.responses_2xx
                : response.status < 500 ? counters.responses_4xx
                                        : counters.responses_5xx;
  klass.fetch_add(1, std::memory_order_relaxed);
  Persistence p = persistence_;
  if (response.close || draining_) p = Persistence::kClose;
  output_.append(SerializeResponse(response, p, head_request_, listener_.DateHeader()));
  if (p == Persistence::kClose) close_after_send_ = true;
}

void Connection::HookDone(uint64_t seq, HookResponse response) {
  if (closing_ || phase_ != Phase::kHook || seq != hook_seq_) return;  // late: dropped
  phase_ = Phase::kReading;
  HttpResponse r;
  r.status = response.status;
  r.content_type = std::move(response.content_type);
  r.body = std::move(response.body);
  Respond(r);
  EndRequest();
  Pump();
}

void Connection::ArmRecv() {
  recv_armed_ = true;
  io_uring_sqe* sqe = listener_.loop().Prepare(recv_op_);
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = listener_.buffers().group_id();
}

void Connection::StopReading() {
  if (!recv_armed_ || recv_cancel_sent_ || recv_op_.idle()) return;
  listener_.loop().ring().Cancel(recv_op_);
  recv_cancel_sent_ = true;
}

void Connection::RecvDone(core::Operation&, core::IoResult r) {
  if (!r.more()) recv_armed_ = false;
  if (r.ok() && r.has_buffer()) {
    const std::string_view bytes = listener_.buffers().Take(r.buffer_id(), r.value());
    bool ok = true;
    if (tls_ != nullptr) {
      if (!closing_) ok = TlsInput(bytes);
    } else if (!closing_ && !close_after_send_) {
      stash_.append(bytes);
    }
    listener_.buffers().Recycle(r.buffer_id());  // copied: straight back to the kernel
    if (!ok) {
      Flush();  // an alert, if the engine made one; the close cancels it if it lingers
      BeginClose();
      return;
    }
    if (r.value() > 0) {
      if (Pending().size() >= kStashBytesMax) StopReading();  // TCP back-pressure
      Pump();
      return;
    }
  }
  if (closing_) {
    MaybeFinishClose();
    return;
  }
  if (r.error() == ENOBUFS) {  // every buffer was in use: back-pressure, read again
    Pump();
    return;
  }
  if (r.canceled()) {  // we stopped reading; Pump resumes when the stash drains
    recv_cancel_sent_ = false;
    Pump();
    return;
  }
  if (r.ok() && r.value() == 0) {  // the client shut its side
    peer_closed_ = true;
    Pump();
    return;
  }
  if (!r.ok()) {
    BeginClose();  // ECONNRESET and friends
    return;
  }
  Pump();
}

void Connection::Flush() {
  if (closing_) return;
  if (tls_ != nullptr) {
    TlsOutput();
    if (!sending_.empty() || tls_out_.empty()) return;
    sending_.swap(tls_out_);
  } else {
    if (!sending_.empty() || output_.empty()) return;
    sending_.swap(output_);
  }
  sent_ = 0;
  StartSend();
}

bool Connection::TlsInput(std::string_view ciphertext) {
  // Ciphertext starts the request's clock as plaintext does (FeedParser): else a partial
  // record trickled a byte at a time, which gives the parser nothing, would renew the idle
  // timer for ever.
  if (!ciphertext.empty() && request_started_ms_ == 0 && tls_->established()) {
    request_started_ms_ = listener_.loop().now_ms();
  }
  // Everything fed is decrypted before the next recv: the engine's buffer stays small, so
  // a refusal means a peer that broke the record layer.
  if (tls_->FeedCiphertext(ciphertext) < ciphertext.size()) return false;
  if (!tls_->established()) {
    tls::TlsResult r = tls_->Handshake();
    if (r == tls::TlsResult::kWantRead || r == tls::TlsResult::kWantWrite) return true;
    if (r != tls::TlsResult::kOk) return false;
  }
  for (;;) {
    std::string plain;
    tls::TlsResult r = tls_->Read(&plain, 16 * 1024);
    if (r == tls::TlsResult::kOk) {
      if (!close_after_send_) stash_.append(plain);
      continue;
    }
    if (r == tls::TlsResult::kClosed) {
      peer_closed_ = true;  // close_notify: answer what we have, then close
      return true;
    }
    return r != tls::TlsResult::kError;
  }
}

void Connection::TlsOutput() {
  if (tls_->established() && !tls_->failed()) {
    std::string_view rest(output_);
    while (!rest.empty()) {
      size_t used = 0;
      tls::TlsResult r = tls_->Write(rest, &used);
      rest.remove_prefix(used);
      if (tls_->has_ciphertext_out()) tls_out_.append(tls_->TakeCiphertext());
      if (r == tls::TlsResult::kError || (used == 0 && r != tls::TlsResult::kOk)) break;
    }
  }
  output_.clear();  // before the handshake nothing can be said; after an error nothing will
  if (tls_->has_ciphertext_out()) tls_out_.append(tls_->TakeCiphertext());
}

void Connection::StartSend() {
  io_uring_sqe* sqe = listener_.loop().Prepare(send_op_);
  io_uring_prep_send(sqe, fd_, sending_.data() + sent_, sending_.size() - sent_, MSG_NOSIGNAL);
}

void Connection::SendDone(core::Operation&, core::IoResult r) {
  if (!r.ok() || closing_) {
    sending_.clear();
    output_.clear();
    tls_out_.clear();
    if (closing_) {
      MaybeFinishClose();
    } else {
      BeginClose();  // EPIPE, ECONNRESET: the client is gone
    }
    return;
  }
  sent_ += r.value();
  if (sent_ < sending_.size()) {
    StartSend();
    return;
  }
  sending_.clear();
  sent_ = 0;
  Pump();  // sends what queued meanwhile, resumes a paused pipeline, or closes
}

void Connection::ArmDeadline() {
  core::Loop& loop = listener_.loop();
  if (closing_ || phase_ == Phase::kPlanning || phase_ == Phase::kCommitting) {
    loop.timers().Cancel(deadline_);  // our own work, bounded: the client waits for it
    return;
  }
  uint64_t at = loop.now_ms() + settings_->idle_timeout_ms;
  if (phase_ == Phase::kHook) {
    at = hook_started_ms_ + kHookTimeoutMs;
  } else if (!close_after_send_ && sending_.empty() && request_started_ms_ != 0) {
    at = request_started_ms_ + settings_->request_timeout_ms;
  }
  // HTTPS: the handshake has its own deadline from accept, whatever bytes trickle in
  // (tls_handshake_timeout, as for SMTPS and STARTTLS).
  if (tls_ != nullptr && !tls_->established()) {
    at = std::min(at, started_ms_ + settings_->tls_handshake_timeout_ms);
  }
  loop.timers().Arm(deadline_, at);
}

void Connection::DeadlineFired(core::Timer&) {
  if (closing_) return;
  if (phase_ == Phase::kHook) {
    ++hook_seq_;  // a late answer is ignored
    phase_ = Phase::kReading;
    Respond(JsonError(503, "the daemon did not answer in time"));
    EndRequest();
    Pump();
    return;
  }
  if (phase_ == Phase::kReading && !close_after_send_ && sending_.empty() &&
      request_started_ms_ != 0) {
    persistence_ = Persistence::kClose;
    Respond(JsonError(408, "request not received in time"));
    Pump();
    return;
  }
  BeginClose();  // idle too long, or a client that does not read its responses
}

void Connection::BeginClose() {
  if (closing_) return;
  closing_ = true;
  listener_.loop().timers().Cancel(deadline_);
  core::Ring& ring = listener_.loop().ring();
  ring.Cancel(recv_op_);
  ring.Cancel(send_op_);  // a client that does not read must not hold the connection
  MaybeFinishClose();
}

void Connection::MaybeFinishClose() {
  if (!closing_ || close_submitted_) return;
  if (!recv_op_.idle() || !send_op_.idle() || commits_in_flight_ > 0) return;
  close_submitted_ = true;
  io_uring_prep_close(listener_.loop().Prepare(close_op_), fd_);
}

void Connection::CloseDone(core::Operation&, core::IoResult) {
  fd_ = -1;
  listener_.ConnectionClosed(this);  // frees this connection: nothing may follow
}

}  // namespace ringmail::listeners::http
