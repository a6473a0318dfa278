// core/run_on_loop.cc — see run_on_loop.h.
#include "core/run_on_loop.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace ringmail::core {

absl::Status RunOnLoopAndWait(Loop& loop, absl::AnyInvocable<absl::Status()> fn) {
  if (loop.IsCurrent()) return fn();
  absl::Status status;
  absl::Notification done;
  const PostResult posted = loop.Post([&] {
    status = fn();
    done.Notify();
  });
  if (posted != PostResult::kOk) {
    return absl::UnavailableError(
        absl::StrCat("loop ", loop.name(),
                     posted == PostResult::kFull ? " has a full inbox" : " is not running"));
  }
  if (Loop* self = Loop::Current()) self->ring().Submit();  // the post's wake-up goes now
  done.WaitForNotification();
  return status;
}

}  // namespace ringmail::core
