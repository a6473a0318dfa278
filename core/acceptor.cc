#include "core/acceptor.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace ringmail::core {
namespace {

// Errors that say "not now" rather than "not this connection": retrying at once would
// fail again at once, so the accept waits for the retry timer instead of spinning.
bool IsResourceError(int error) {
  return error == EMFILE || error == ENFILE || error == ENOMEM || error == ENOBUFS;
}

}  // namespace

Acceptor::Acceptor(Loop& loop, const char* name, uint64_t retry_ms)
    : loop_(loop), retry_ms_(retry_ms) {
  op_.Bind<&Acceptor::AcceptDone>(this, name);
  op_.multishot = true;
  retry_.Bind<&Acceptor::RetryFired>(this);
}

Acceptor::~Acceptor() {
  RM_CHECK(op_.idle()) << "acceptor " << op_.name << " destroyed with an accept in flight";
  // A stopped loop has already disarmed every timer (TimerQueue::Clear).
  if (retry_.armed()) loop_.timers().Cancel(retry_);
  if (fd_ >= 0) close(fd_);
}

void Acceptor::Start(int listen_fd) {
  RM_CHECK(handler_ != nullptr) << "acceptor " << op_.name << " started before Bind";
  RM_CHECK(fd_ < 0 && !closed_) << "acceptor " << op_.name << " started twice";
  RM_CHECK(listen_fd >= 0);
  fd_ = listen_fd;
  Arm();
}

void Acceptor::Arm() {
  io_uring_prep_multishot_accept(loop_.Prepare(op_), fd_, nullptr, nullptr, SOCK_CLOEXEC);
}

void Acceptor::Close() {
  if (closed_) return;
  closed_ = true;
  loop_.timers().Cancel(retry_);
  loop_.ring().Cancel(op_);
}

void Acceptor::StopListening() {
  Close();
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

void Acceptor::AcceptDone(Operation&, IoResult r) {
  if (r.ok()) {
    const int fd = static_cast<int>(r.res);
    if (closed_) {
      // Accepted before the cancel took effect; the owner has stopped listening to us.
      close(fd);
      ++stats_.dropped;
    } else {
      ++stats_.accepted;
      handler_(owner_, context_, Accepted{fd, 0});
    }
  }
  if (r.more()) return;
  if (closed_ || loop_.stopping()) return;
  if (!r.ok()) {
    ++stats_.errors;
    handler_(owner_, context_, Accepted{-1, r.error()});
    if (closed_) return;  // the handler closed us
  }
  if (IsResourceError(r.error())) {
    ++stats_.backoffs;
    loop_.timers().Arm(retry_, loop_.now_ms() + retry_ms_);
    return;
  }
  Arm();
}

void Acceptor::RetryFired(Timer&) {
  if (!closed_ && !loop_.stopping() && op_.idle()) Arm();
}

}  // namespace ringmail::core
