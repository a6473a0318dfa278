#include "tools/ringload/send_conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "tools/ringload/sender.h"

namespace ringmail::ringload {
namespace {

constexpr uint32_t kBackoffMinMs = 20;
constexpr uint32_t kBackoffMaxMs = 1000;

}  // namespace

SendConn::SendConn(SendWorker* worker, const char* connect_name, const char* close_name)
    : worker_(worker) {
  connect_op_.Bind<&SendConn::ConnectDone>(this, connect_name);
  close_op_.Bind<&SendConn::CloseDone>(this, close_name);
  timer_.Bind<&SendConn::TimerFired>(this);
}

SendConn::~SendConn() {
  // Only after the loop has stopped (every operation completed): a plain close is safe.
  if (fd_ >= 0) ::close(fd_);
}

void SendConn::Connect() {
  ResetSession();
  error_close_ = false;
  const Endpoint& target = worker_->options_.target;
  fd_ = ::socket(target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    ++worker_->stats_.connect_errors;
    worker_->NoteError(absl::StrCat("socket: ", std::strerror(errno)));
    worker_->CountError();
    error_close_ = true;
    link_ = Link::kClosing;
    Closed();
    return;
  }
  // Commands and content go out in whole groups; Nagle would only hold back their tails.
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  link_ = Link::kConnecting;
  io_uring_sqe* sqe = worker_->loop_.Prepare(connect_op_);
  io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&target.addr), target.len);
  UpdateTimer();
}

void SendConn::ConnectDone(core::Operation&, core::IoResult r) {
  if (link_ != Link::kConnecting) return MaybeCloseFd();
  if (!r.ok()) {
    ++worker_->stats_.connect_errors;
    worker_->NoteError(absl::StrCat("connect ", worker_->options_.target.text, ": ",
                                    std::strerror(r.error())));
    worker_->CountError();
    error_close_ = true;
    return Close();
  }
  ++worker_->stats_.connections;
  link_ = Link::kOpen;
  ArmRecv();
  Opened();
}

void SendConn::ArmRecv() {
  io_uring_sqe* sqe = worker_->loop_.Prepare(recv_op_);
  io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kSendBufferGroup;
}

void SendConn::RecvDone(core::Operation&, core::IoResult r) {
  const bool active = link_ == Link::kOpen;
  if (r.ok() && r.has_buffer()) {
    core::BufferRing* buffers = worker_->buffers_.get();
    if (buffers != nullptr) {  // null only once the loop is being torn down
      std::string_view data = buffers->Take(r.buffer_id(), r.value());
      if (active) Received(data);
      buffers->Recycle(r.buffer_id());
    }
  } else if (r.ok() && r.value() == 0) {
    if (active) PeerClosed();
  } else if (!r.ok() && r.error() != ENOBUFS && active) {
    RecvFailed(r.error());
  }
  if (r.more()) return;
  if (link_ == Link::kClosing) return MaybeCloseFd();
  if (link_ == Link::kOpen && fd_ >= 0) ArmRecv();
}

void SendConn::Fail(const char* what, int error) {
  if (link_ == Link::kClosing || link_ == Link::kFinished) return;
  ++worker_->stats_.session_errors;
  worker_->NoteError(error != 0 ? absl::StrCat(what, ": ", std::strerror(error))
                                : std::string(what));
  worker_->CountError();
  const size_t lost = TakeInFlight();
  worker_->stats_.lost += lost;
  for (size_t i = 0; i < lost; ++i) worker_->stats_.codes.Add(0);
  LiveCounters::Add(worker_->live_.failed, lost);
  worker_->CountError(lost);
  error_close_ = true;
  Close();
}

void SendConn::Close() {
  if (link_ == Link::kClosing || link_ == Link::kFinished) return;
  link_ = Link::kClosing;
  worker_->loop_.timers().Cancel(timer_);
  if (!connect_op_.idle() || !recv_op_.idle() || !send_op_.idle()) {
    io_uring_sqe* sqe = worker_->loop_.ring().PrepareUntracked();
    io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
  }
  MaybeCloseFd();
}

void SendConn::MaybeCloseFd() {
  if (link_ != Link::kClosing) return;
  if (!connect_op_.idle() || !recv_op_.idle() || !send_op_.idle() || !close_op_.idle()) return;
  if (fd_ < 0) return Closed();
  io_uring_sqe* sqe = worker_->loop_.Prepare(close_op_);
  io_uring_prep_close(sqe, fd_);
}

void SendConn::CloseDone(core::Operation&, core::IoResult) {
  fd_ = -1;  // closed even when close reports an error
  Closed();
}

void SendConn::Closed() {
  fd_ = -1;
  ResetSession();
  if (!worker_->stopping_ && worker_->wants_connections()) {
    if (error_close_) {
      backoff_ms_ = backoff_ms_ == 0 ? kBackoffMinMs : std::min(backoff_ms_ * 2, kBackoffMaxMs);
      link_ = Link::kDisconnected;
      worker_->loop_.timers().Arm(timer_, core::MonotonicMs() + backoff_ms_);
    } else {
      Connect();
    }
    return;
  }
  link_ = Link::kFinished;
  worker_->ConnFinished();
}

void SendConn::Finish() {
  worker_->loop_.timers().Cancel(timer_);
  link_ = Link::kFinished;
  worker_->ConnFinished();
}

void SendConn::Shutdown() {
  switch (link_) {
    case Link::kFinished:
    case Link::kClosing:
      return;
    case Link::kDisconnected:
      return Finish();
    default:
      worker_->stats_.aborted += TakeInFlight();
      error_close_ = false;
      Close();
  }
}

void SendConn::Abandon() {
  switch (link_) {
    case Link::kDisconnected:
      return Finish();
    case Link::kConnecting:
      error_close_ = false;
      return Close();
    case Link::kOpen:
      if (!CloseWhenAbandoned()) return;  // in a session: it finishes its messages
      error_close_ = false;
      return Close();
    default:
      return;
  }
}

void SendConn::TimerFired(core::Timer&) {
  if (link_ == Link::kDisconnected) return Connect();
  if (worker_->loop_.now_ms() < io_deadline_ms_) {
    // Answers came since the timer was armed: wait for the rest of the current deadline.
    worker_->loop_.timers().Arm(timer_, io_deadline_ms_);
    return;
  }
  Fail(link_ == Link::kConnecting ? "timed out connecting" : timeout_text(), 0);
}

void SendConn::UpdateTimer() {
  const bool waiting =
      link_ == Link::kConnecting || (link_ == Link::kOpen && AwaitingAnswer());
  if (!waiting) {
    if (link_ != Link::kDisconnected) worker_->loop_.timers().Cancel(timer_);  // not backoff
    return;
  }
  // Every answer pushes the deadline; the timer is armed lazily and, firing early, re-arms
  // itself for the rest (TimerFired): a heap update per timeout instead of per answer, and
  // the loop's cached clock instead of a clock read (the deadline needs ms, not µs).
  io_deadline_ms_ = worker_->loop_.now_ms() + worker_->io_timeout_ms_;
  if (!timer_.armed()) worker_->loop_.timers().Arm(timer_, io_deadline_ms_);
}

}  // namespace ringmail::ringload
