// core/loop.h — one event loop: a thread, pinned to one CPU, owning one io_uring ring.
//
// Contract
// - Everything a loop owns (connections, sessions, timers, its ring) is touched only by the
//   loop's thread. The only entry points usable from other threads are Post(),
//   RequestStop(), Join() and the const identity accessors.
// - Post() hands a closure to the loop through a bounded MPSC inbox and wakes the ring with
//   IORING_OP_MSG_RING (from another loop: batched into that loop's next submit; from a
//   plain thread: through a tiny per-thread ring used only for that). A full inbox returns
//   PostResult::kFull: the caller brakes, the inbox never grows.
// - Reserve() (any thread; usually the loop's own) makes a ReservedPost: room for one task,
//   allocated when the loop hands work to another thread, used once by that thread to bring
//   the result back. It never answers kFull. Why: a worker's result must not be dropped (a
//   dropped unlink result strands its segments; a dropped reload plan wedges every later
//   reload), and a worker must not sleep-and-retry against a full inbox. The loop never
//   holds more reserved tasks than the work it chose to start, so the inbox's bound still
//   holds for everything else.
// - A turn: run inbox tasks and deferred tasks (bounded batches), fire due timers, submit
//   and wait (never sleeping while work is ready, never spinning while idle), optionally
//   wait `completion_wait` more for further completions, then reap a batch of CQEs and run
//   their handlers (reap first, run later: handlers never re-enter the reaper).
// - Stop: RequestStop() from any thread; on the loop thread the stop handlers run once
//   (owners cancel their operations and close), every remaining operation is cancelled,
//   and the loop keeps turning until no operation is in flight. Then Run returns.
//   Tasks still in the inbox then are destroyed without running.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "core/mpsc_queue.h"
#include "core/ring.h"
#include "core/timers.h"

namespace ringmail::core {

struct LoopOptions {
  std::string name = "loop";
  uint16_t index = 0;       // process-wide loop number: ids, spool dirs, metrics
  int cpu = -1;             // CPU to pin the thread to; -1 leaves it unpinned
  int64_t completion_wait_us = 0;
  size_t inbox_capacity = 1 << 16;  // power of two
  RingOptions ring;
};

enum class PostResult { kOk, kFull, kStopped };

struct LoopStats {
  uint64_t turns = 0;
  uint64_t completions = 0;
  uint64_t tasks_run = 0;
  uint64_t timers_fired = 0;
  uint64_t sqes_submitted = 0;
  uint64_t in_flight = 0;
};

class Loop;

// Room for one task on a loop, made by Loop::Reserve(); see the contract above. Move-only;
// dropping it unused gives the room back. Post() from any thread, once.
class ReservedPost {
 public:
  ReservedPost() = default;
  ReservedPost(ReservedPost&& other) noexcept = default;
  ReservedPost& operator=(ReservedPost&& other) noexcept = default;
  ~ReservedPost() = default;

  // kOk: `task` will run on the loop. kStopped: the loop has finished; `task` is destroyed
  // here (on the calling thread), unrun. The reservation is used up either way.
  PostResult Post(absl::AnyInvocable<void() &&> task) &&;
  bool empty() const { return node_ == nullptr; }

 private:
  friend class Loop;
  struct Node {
    Node* next = nullptr;
    absl::AnyInvocable<void() &&> task;
  };
  ReservedPost(Loop* loop, std::unique_ptr<Node> node) : loop_(loop), node_(std::move(node)) {}
  Loop* loop_ = nullptr;
  std::unique_ptr<Node> node_;
};

class Loop {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  explicit Loop(LoopOptions options);
  ~Loop();  // the loop must not be running (Join() first)
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Starts the loop on a new thread; returns once its ring exists (or why it could not).
  absl::Status Start();
  // Runs the loop on the calling thread until stopped (the master loop uses the main
  // thread). `ready` runs on the loop once its ring exists.
  absl::Status RunHere(Task ready = nullptr);
  void RequestStop();  // any thread
  void Join();         // any thread but this loop's; after Start()

  PostResult Post(Task task);  // any thread
  ReservedPost Reserve();      // any thread; usually the loop's own, when it hands work off

  // ---- loop thread only ----
  static Loop* Current();
  bool IsCurrent() const { return Current() == this; }
  Ring& ring() { return *ring_; }
  TimerQueue& timers() { return timers_; }
  // An SQE for `op`, counted as in flight until its final completion.
  io_uring_sqe* Prepare(Operation& op);
  // Runs `task` later in this turn, after the current handler returns.
  void Defer(Task task);
  // Registers work to do when the loop begins stopping (cancel, close). Loop thread only.
  void OnStop(Task handler);
  bool stopping() const { return stopping_; }
  uint64_t now_ms() const { return now_ms_; }  // cached at the start of each turn
  uint64_t now_us() const { return now_us_; }
  LoopStats stats() const;

  // ---- any thread ----
  const LoopOptions& options() const { return options_; }
  const std::string& name() const { return options_.name; }
  uint16_t index() const { return options_.index; }
  int ring_fd() const { return ring_fd_.load(std::memory_order_acquire); }

 private:
  void ThreadMain(std::atomic<int>* setup_state, absl::Status* setup_status);
  absl::Status SetUp();
  friend class ReservedPost;
  void RunTurns();
  size_t DrainInbox(size_t max);
  size_t DrainReserved();
  void DropReserved();  // destroys what was reserved and posted, unrun
  PostResult PostReserved(std::unique_ptr<ReservedPost::Node> node);
  size_t RunDeferred();
  void BeginStop();
  void Wait(bool ready);
  size_t ReapAndDispatch();
  void Dispatch(const io_uring_cqe& cqe);
  void Wake();
  void UpdateClock();

  LoopOptions options_;
  std::unique_ptr<Ring> ring_;
  std::atomic<int> ring_fd_{-1};
  MpscQueue<Task> inbox_;
  // Reserved posts, pushed by any thread (a lock-free stack: newest first), taken whole by
  // the loop each turn and run oldest first.
  std::atomic<ReservedPost::Node*> reserved_{nullptr};
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;

  TimerQueue timers_;
  std::vector<Task> deferred_;
  std::vector<Task> running_deferred_;
  std::vector<Task> stop_handlers_;
  bool stopping_ = false;
  uint64_t in_flight_ = 0;
  uint64_t now_ms_ = 0;
  uint64_t now_us_ = 0;
  LoopStats stats_;
};

// The loop's clock: monotonic milliseconds (the same source as now_ms()).
uint64_t MonotonicMs();
uint64_t MonotonicUs();

}  // namespace ringmail::core
