// core/send_queue.cc — see send_queue.h.
#include "core/send_queue.h"

#include <sys/socket.h>

#include <utility>

#include "base/check.h"

namespace ringmail::core {

bool SendQueue::Queue(std::string_view bytes) {
  if (bytes.empty()) return false;
  if (sending()) {
    queued_.append(bytes);
    return false;
  }
  sending_.assign(bytes);
  sent_ = 0;
  return true;
}

bool SendQueue::Queue(std::string&& bytes) {
  if (bytes.empty()) return false;
  if (sending()) {
    queued_.append(bytes);
    return false;
  }
  sending_ = std::move(bytes);
  sent_ = 0;
  return true;
}

void SendQueue::PrepareSend(io_uring_sqe* sqe, int fd) const {
  RM_DCHECK(sent_ < sending_.size());
  io_uring_prep_send(sqe, fd, sending_.data() + sent_, sending_.size() - sent_, MSG_NOSIGNAL);
}

bool SendQueue::Sent(size_t n) {
  RM_DCHECK(n <= sending_.size() - sent_);
  sent_ += n;
  if (sent_ < sending_.size()) return true;
  sending_.clear();
  sent_ = 0;
  if (queued_.empty()) return false;
  sending_.swap(queued_);  // queued_ keeps the sent buffer's capacity for the next replies
  return true;
}

void SendQueue::Clear() {
  sending_.clear();
  sent_ = 0;
  queued_.clear();
}

}  // namespace ringmail::core
