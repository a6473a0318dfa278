// core/thread_pool.h — a named pool of worker threads for work that would block a loop.
//
// Contract (DESIGN.md "Thread pools", STYLE.md principle 8):
//   - A pool has a name, a `concurrency` (worker threads; changeable at run time), a `backlog`
//     (bounded FIFO of jobs not yet started; fixed at construction) and a worker stack size.
//   - Jobs are `absl::AnyInvocable<void() &&>`; they start in submission order (strict FIFO
//     with concurrency 1). A job runs exactly once on a worker thread and is destroyed there.
//   - Loop threads call `TrySubmit`, which never blocks: a full backlog says kBacklogFull and
//     the loop brakes (stops taking that kind of work) instead of waiting. Non-loop threads may
//     call `Submit`, which waits for room. Neither may be called from a worker of the same pool
//     when it could wait (Submit), nor may Stop be called from one (it would join itself).
//   - Both leave the job untouched in the caller's variable unless it is accepted, so a braking
//     loop keeps its job and retries later: `if (pool.TrySubmit(std::move(job)) != kAccepted)`
//     leaves `job` valid.
//   - Concurrency 0 means "inline": the job runs on the submitting thread before TrySubmit /
//     Submit returns (the `Close` pool's default: close(2) is cheap enough for a loop).
//   - The pool knows nothing about loops. Completion goes back to the submitter by the job
//     itself or by a `done` callback (see JobWithDone) that runs on the worker right after the
//     job; a loop's caller makes `done` post to its loop's inbox. Jobs and callbacks capture
//     moved values or objects whose owner outlives the job (STYLE.md anti-pattern 1).
//   - Stop (and the destructor) stop accepting, then by default drain: every accepted job runs
//     before Stop returns. StopMode::kDrop destroys queued jobs without running them (on the
//     stopping thread); jobs already running always finish. After Stop returns no job of this
//     pool is running anywhere, inline ones included.
//   - Every method is thread-safe. Stats come from the same mutex the submit path already
//     takes, so counting costs the submit path nothing extra.
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace ringmail::core {

// Limits on what a spec (from the config file, through ringmaild) may ask for.
inline constexpr uint32_t kThreadPoolConcurrencyMax = 1024;
inline constexpr uint32_t kThreadPoolBacklogMax = 1u << 18;  // ring slots are allocated up front
inline constexpr size_t kThreadPoolNameLengthMax = 64;
// Below this, libc calls made by blocking jobs (getaddrinfo, syslog) and sanitizer
// instrumentation risk overflowing; PTHREAD_STACK_MIN (16 KiB) is far too small in practice.
inline constexpr uint64_t kThreadPoolStackSizeMin = 64 * 1024;
inline constexpr uint64_t kThreadPoolStackSizeMax = 1ull << 30;

// What one pool is made of. stack_size_bytes 0 means the libc default (RLIMIT_STACK, usually
// 8 MiB); other values are rounded up to a whole page.
struct ThreadPoolSpec {
  std::string name;
  uint32_t concurrency = 1;
  uint32_t backlog = 1024;
  uint64_t stack_size_bytes = 0;
};

// Checks a spec against the limits above; InvalidArgument names the pool and the field.
absl::Status ValidateThreadPoolSpec(const ThreadPoolSpec& spec);

enum class SubmitResult : uint8_t {
  kAccepted,     // queued (or, with concurrency 0, already run); the job was moved from
  kBacklogFull,  // TrySubmit only: the backlog is at capacity; the job is untouched
  kStopped,      // the pool is stopping or stopped; the job is untouched
};
const char* SubmitResultName(SubmitResult result);

enum class StopMode : uint8_t {
  kDrain,  // run every queued job, then retire the workers (the default)
  kDrop,   // destroy queued jobs without running them; running jobs still finish
};

// A snapshot for `ringctl threadpool list`. All counters are since construction.
struct ThreadPoolStats {
  std::string name;
  uint32_t concurrency = 0;  // target worker count (0 = inline)
  uint32_t threads = 0;      // live worker threads; above `concurrency` while shrinking
  uint32_t busy = 0;         // jobs running now (inline ones included)
  uint32_t queued = 0;       // accepted, not yet started
  uint32_t backlog = 0;      // capacity of the queue
  uint32_t blocked_submitters = 0;  // Submit calls waiting for room right now
  uint64_t submitted = 0;    // accepted jobs
  uint64_t completed = 0;    // jobs that ran to the end
  uint64_t rejected = 0;     // TrySubmit answers kBacklogFull
  uint64_t dropped = 0;      // jobs destroyed unrun by Stop(kDrop)
  bool stopping = false;
};

class ThreadPool {
 public:
  using Job = absl::AnyInvocable<void() &&>;

  // Starts `spec.concurrency` workers. InvalidArgument for a bad spec; ResourceExhausted if
  // the system refuses a thread (then nothing is left running).
  static absl::StatusOr<std::unique_ptr<ThreadPool>> Create(const ThreadPoolSpec& spec);

  // Stop(StopMode::kDrain).
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Never blocks (with concurrency 0 it runs the job, which blocks as long as the job does).
  // `job` is moved from only when the answer is kAccepted.
  SubmitResult TrySubmit(Job&& job);

  // Waits while the backlog is full; answers kAccepted or kStopped (if the pool stops while
  // waiting). Not for loop threads, nor for workers of this pool. `job` as for TrySubmit.
  SubmitResult Submit(Job&& job);

  // Changes the target number of workers without losing queued jobs. Growing starts new
  // workers at once. Shrinking never interrupts a job: surplus workers retire when they are
  // next between jobs (idle ones immediately); until then `threads` > `concurrency`. Shrinking
  // to 0 turns on inline mode for new jobs while the retiring workers finish the queue.
  // Does not wait for jobs; joins only threads that have already retired. FailedPrecondition
  // once stopping; InvalidArgument above kThreadPoolConcurrencyMax; ResourceExhausted if a
  // thread could not be started (the concurrency is then what did start).
  absl::Status SetConcurrency(uint32_t concurrency);

  // Stops accepting (pending Submit calls answer kStopped), drains or drops the queue, waits
  // for running jobs and joins every worker. Idempotent; a later call in another mode only
  // drops what is still queued. Must not be called from a job of this pool.
  void Stop(StopMode mode = StopMode::kDrain);

  ThreadPoolStats Stats() const;
  const std::string& name() const { return name_; }
  uint64_t stack_size_bytes() const { return stack_size_bytes_; }

 private:
  ThreadPool(const ThreadPoolSpec& spec, uint64_t stack_size_bytes);

  static void* WorkerMain(void* arg);
  void WorkerLoop();
  // Runs `job` on this thread for inline mode; called with mu_ held, returns with it held.
  void RunInline(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queue or run inline; the caller has checked stopping_ and room.
  void AcceptLocked(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ShouldRetireLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status StartWorkerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<pthread_t> TakeRetiredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushLocked(Job&& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Job PopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_;
  const uint64_t stack_size_bytes_;  // 0 = libc default; else page-rounded
  const uint32_t backlog_;

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;  // a job was queued, or workers must re-check retirement
  absl::CondVar room_cv_;  // a queue slot was freed, or the pool is stopping

  // The backlog as a ring of `backlog_` slots allocated at construction: pushing never
  // allocates and the bound is the array itself.
  std::vector<Job> ring_ ABSL_GUARDED_BY(mu_);
  uint32_t head_ ABSL_GUARDED_BY(mu_) = 0;  // index of the oldest queued job
  uint32_t queued_ ABSL_GUARDED_BY(mu_) = 0;

  uint32_t concurrency_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t workers_ ABSL_GUARDED_BY(mu_) = 0;  // started and not yet retired
  uint32_t busy_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t blocked_submitters_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Workers that left their loop and wait to be joined (by SetConcurrency or Stop).
  std::vector<pthread_t> retired_ ABSL_GUARDED_BY(mu_);

  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t completed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

// Builds a job that runs `work` on the worker and then hands its result (if any) to `done`
// on the same thread. `done` is where a loop's caller posts back to its loop; it must not
// block. Either may be move-only.
//   pool.TrySubmit(JobWithDone([path] { return UnlinkPath(path); },
//                              [&loop, id](absl::Status s) { loop.Post(...); }));
template <typename Work, typename Done>
ThreadPool::Job JobWithDone(Work work, Done done) {
  return [work = std::move(work), done = std::move(done)]() mutable {
    if constexpr (std::is_void_v<std::invoke_result_t<Work&&>>) {
      std::move(work)();
      std::move(done)();
    } else {
      std::move(done)(std::move(work)());
    }
  };
}

}  // namespace ringmail::core
