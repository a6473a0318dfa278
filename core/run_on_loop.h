// core/run_on_loop.h — the one sanctioned way for a thread to block on another loop: run a
// function there and wait for its result.
//
// Contract
// - RunOnLoopAndWait(loop, fn): posts `fn` to `loop` and blocks the calling thread until it
//   has run; returns its status. On `loop`'s own thread it runs `fn` inline. For start-up,
//   reload set-up and shutdown only: a loop thread that waits here stops serving meanwhile.
// - Called on another loop's thread, it first submits that loop's ring: a post from a loop
//   sends its MSG_RING wake-up with the poster's next submit (core/loop.h), which never
//   comes while the poster blocks, so without the submit the target would run `fn` only when
//   something else woke it (the post-then-block deadlock; once seen as a ~10 s stall of the
//   recovery hand-off). Blocking on a Notification after a bare Post is that bug: use this.
// - kUnavailable when `loop` does not accept the post (stopped, or its inbox is full).
#pragma once

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "core/loop.h"

namespace ringmail::core {

absl::Status RunOnLoopAndWait(Loop& loop, absl::AnyInvocable<absl::Status()> fn);

}  // namespace ringmail::core
