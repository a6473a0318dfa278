#include "core/loop.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ringmail::core {
namespace {

thread_local Loop* current_loop = nullptr;

constexpr size_t kInboxBatch = 4096;      // tasks per turn: no source starves another
constexpr size_t kTimerBatch = 4096;
constexpr unsigned kReapBatch = 256;      // CQEs copied per reap
constexpr size_t kMaxCompletionsPerTurn = 8192;

// A plain thread (thread-pool worker, main) has no ring of its own to send MSG_RING from:
// it gets a tiny ring used only for that, made on first use and freed at thread exit.
class WakeRing {
 public:
  WakeRing() { ok_ = io_uring_queue_init(8, &ring_, 0) == 0; }
  ~WakeRing() {
    if (ok_) io_uring_queue_exit(&ring_);
  }
  bool Send(int target_fd) {
    if (!ok_) return false;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      Drain();
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) return false;
    }
    io_uring_prep_msg_ring(sqe, target_fd, 0, Ring::kWake, 0);
    io_uring_sqe_set_data64(sqe, Ring::kUntracked);
    int rc = io_uring_submit_and_wait(&ring_, 1);
    Drain();
    return rc >= 0;
  }

 private:
  void Drain() {
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) io_uring_cqe_seen(&ring_, cqe);
  }
  io_uring ring_{};
  bool ok_ = false;
};

}  // namespace

uint64_t MonotonicUs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

uint64_t MonotonicMs() { return MonotonicUs() / 1000; }

Loop::Loop(LoopOptions options)
    : options_(std::move(options)), inbox_(options_.inbox_capacity) {}

Loop::~Loop() {
  RM_CHECK(!thread_.joinable()) << "loop " << options_.name << " destroyed while running";
  // Reserved posts that arrived after the last turn: destroyed unrun, like the inbox's.
  DropReserved();
}

Loop* Loop::Current() { return current_loop; }

absl::Status Loop::SetUp() {
  if (options_.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options_.cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0) {
      return absl::InternalError(absl::StrCat("loop ", options_.name, ": cannot pin to CPU ",
                                              options_.cpu, ": ", std::strerror(rc)));
    }
  }
  // Ring made here, on the loop's own (pinned) thread: SINGLE_ISSUER binds it to us.
  auto ring = Ring::Create(options_.ring);
  if (!ring.ok()) return ring.status();
  ring_ = std::move(ring).value();
  ring_fd_.store(ring_->fd(), std::memory_order_release);
  current_loop = this;
  // Name pool threads after their loop; the main thread keeps the program's name so that
  // ps/pgrep/systemd still show "ringmaild".
  if (gettid() != getpid()) {
    pthread_setname_np(pthread_self(), options_.name.substr(0, 15).c_str());
  }
  UpdateClock();
  return absl::OkStatus();
}

absl::Status Loop::Start() {
  RM_CHECK(!thread_.joinable()) << "loop started twice";
  std::atomic<int> state{0};  // 0 pending, 1 ok, 2 failed
  absl::Status status;
  thread_ = std::thread([this, &state, &status] { ThreadMain(&state, &status); });
  state.wait(0, std::memory_order_acquire);
  if (state.load(std::memory_order_acquire) == 2) {
    thread_.join();
    return status;
  }
  return absl::OkStatus();
}

void Loop::ThreadMain(std::atomic<int>* setup_state, absl::Status* setup_status) {
  absl::Status s = SetUp();
  if (!s.ok()) {
    *setup_status = s;
    setup_state->store(2, std::memory_order_release);
    setup_state->notify_all();
    return;
  }
  setup_state->store(1, std::memory_order_release);
  setup_state->notify_all();
  RunTurns();
}

absl::Status Loop::RunHere(Task ready) {
  absl::Status s = SetUp();
  if (!s.ok()) return s;
  if (ready) std::move(ready)();
  RunTurns();
  return absl::OkStatus();
}

void Loop::RequestStop() {
  stop_requested_.store(true, std::memory_order_release);
  Wake();
}

void Loop::Join() {
  if (thread_.joinable()) thread_.join();
}

PostResult Loop::Post(Task task) {
  if (finished_.load(std::memory_order_acquire)) return PostResult::kStopped;
  if (!inbox_.TryPush(std::move(task))) return PostResult::kFull;
  Wake();
  return PostResult::kOk;
}

ReservedPost Loop::Reserve() {
  return ReservedPost(this, std::make_unique<ReservedPost::Node>());
}

PostResult ReservedPost::Post(absl::AnyInvocable<void() &&> task) && {
  RM_CHECK(node_ != nullptr) << "a ReservedPost used twice, or never reserved";
  node_->task = std::move(task);
  return loop_->PostReserved(std::move(node_));
}

PostResult Loop::PostReserved(std::unique_ptr<ReservedPost::Node> node) {
  if (finished_.load(std::memory_order_acquire)) return PostResult::kStopped;
  ReservedPost::Node* raw = node.release();
  raw->next = reserved_.load(std::memory_order_relaxed);
  // acq_rel on both sides: a push ordered after the loop's take reads from it, so it also
  // sees the loop's cleared wake flag and wakes it (DrainInbox clears the flag first).
  while (!reserved_.compare_exchange_weak(raw->next, raw, std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
  }
  Wake();
  return PostResult::kOk;
}

void Loop::Wake() {
  // One wake-up per drain: later posters see the flag set and skip the MSG_RING.
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  Loop* sender = current_loop;
  if (sender == this) return;  // we drain the inbox before we sleep
  int fd = ring_fd_.load(std::memory_order_acquire);
  if (fd < 0) return;  // not started yet: the first turn drains the inbox anyway
  if (sender != nullptr && !sender->stopping_) {
    // Batched: goes out with the sender's next submit, at the end of its handlers.
    io_uring_sqe* sqe = sender->ring_->PrepareUntracked();
    io_uring_prep_msg_ring(sqe, fd, 0, Ring::kWake, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return;
  }
  static thread_local WakeRing wake_ring;
  if (!wake_ring.Send(fd)) {
    std::fprintf(stderr, "loop %s: cannot send wake-up\n", options_.name.c_str());
  }
}

io_uring_sqe* Loop::Prepare(Operation& op) {
  RM_DCHECK(IsCurrent());
  ++in_flight_;
  return ring_->Prepare(op);
}

void Loop::Defer(Task task) {
  RM_DCHECK(IsCurrent());
  deferred_.push_back(std::move(task));
}

void Loop::OnStop(Task handler) {
  RM_DCHECK(IsCurrent());
  if (stopping_) {
    std::move(handler)();
    return;
  }
  stop_handlers_.push_back(std::move(handler));
}

LoopStats Loop::stats() const {
  LoopStats s = stats_;
  s.in_flight = in_flight_;
  s.sqes_submitted = ring_ ? ring_->submitted_total() : 0;
  return s;
}

void Loop::UpdateClock() {
  now_us_ = MonotonicUs();
  now_ms_ = now_us_ / 1000;
}

size_t Loop::DrainInbox(size_t max) {
  // Clear the flag before draining: a post that lands after this sees it clear and wakes.
  wake_pending_.store(false, std::memory_order_seq_cst);
  size_t n = 0;
  while (n < max) {
    std::optional<Task> task = inbox_.TryPop();
    if (!task.has_value()) break;
    std::move (*task)();
    ++n;
  }
  stats_.tasks_run += n;
  return n;
}

void Loop::DropReserved() {
  ReservedPost::Node* node = reserved_.exchange(nullptr, std::memory_order_acquire);
  while (node != nullptr) delete std::exchange(node, node->next);
}

size_t Loop::DrainReserved() {
  ReservedPost::Node* taken = reserved_.exchange(nullptr, std::memory_order_acq_rel);
  ReservedPost::Node* oldest_first = nullptr;
  while (taken != nullptr) {
    ReservedPost::Node* next = taken->next;
    taken->next = oldest_first;
    oldest_first = taken;
    taken = next;
  }
  size_t n = 0;
  while (oldest_first != nullptr) {
    std::unique_ptr<ReservedPost::Node> node(std::exchange(oldest_first, oldest_first->next));
    std::move(node->task)();
    ++n;
  }
  stats_.tasks_run += n;
  return n;
}

size_t Loop::RunDeferred() {
  size_t n = 0;
  // Tasks deferred by deferred tasks run next turn: bounded work per turn.
  running_deferred_.swap(deferred_);
  for (Task& t : running_deferred_) {
    std::move(t)();
    ++n;
  }
  running_deferred_.clear();
  return n;
}

void Loop::BeginStop() {
  stopping_ = true;
  std::vector<Task> handlers;
  handlers.swap(stop_handlers_);
  for (Task& h : handlers) std::move(h)();
  if (in_flight_ > 0) {
    // Whatever the owners did not cancel themselves: every request on this ring.
    io_uring_sqe* sqe = ring_->PrepareUntracked();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
  }
}

void Loop::Wait(bool ready) {
  if (ready) {
    ring_->Submit();  // TASKRUN_FLAG makes this run deferred completions too
    return;
  }
  int64_t timeout_ns = -1;
  uint64_t next = timers_.NextDeadline();
  if (next != UINT64_MAX) {
    uint64_t now = MonotonicMs();
    timeout_ns = next > now ? static_cast<int64_t>(next - now) * 1'000'000 : 0;
  }
  int rc = ring_->SubmitAndWait(1, timeout_ns);
  RM_CHECK(rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
      << "loop " << options_.name << ": io_uring_enter failed: " << std::strerror(-rc);
  if (options_.completion_wait_us > 0 && !stopping_ && ring_->ready() > 0) {
    // Trade latency for batching: let more completions gather before running any.
    int64_t wait_ns = options_.completion_wait_us * 1000;
    if (timeout_ns >= 0 && timeout_ns < wait_ns) wait_ns = timeout_ns;
    ring_->SubmitAndWait(ring_->ready() + 1, wait_ns);
  }
}

void Loop::Dispatch(const io_uring_cqe& cqe) {
  uint64_t data = cqe.user_data;
  if (data == Ring::kWake) return;  // the inbox is drained every turn
  if (data == Ring::kUntracked) {
    // Fire-and-forget ops: a failed wake or cancel is worth a line, nothing more.
    if (cqe.res < 0 && cqe.res != -ENOENT && cqe.res != -EALREADY && cqe.res != -ECANCELED) {
      std::fprintf(stderr, "loop %s: background ring op failed: %s\n", options_.name.c_str(),
                   std::strerror(-cqe.res));
    }
    return;
  }
  auto* op = reinterpret_cast<Operation*>(static_cast<uintptr_t>(data));
  RM_DCHECK(op->state == Operation::State::kSubmitted);
  IoResult result{cqe.res, cqe.flags};
  // A multishot op stays armed while the kernel says more will come; a send_zc's
  // notification CQE follows its result CQE (which carries F_MORE).
  if (!result.more()) {
    op->state = Operation::State::kIdle;
    RM_DCHECK(in_flight_ > 0);
    --in_flight_;
  }
  op->handler(op->owner, *op, result);
}

size_t Loop::ReapAndDispatch() {
  io_uring_cqe batch[kReapBatch];
  size_t total = 0;
  while (total < kMaxCompletionsPerTurn) {
    unsigned n = ring_->Reap(batch, kReapBatch);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) Dispatch(batch[i]);
    total += n;
  }
  stats_.completions += total;
  return total;
}

void Loop::RunTurns() {
  for (;;) {
    UpdateClock();
    ++stats_.turns;
    // A drain that stopped at its batch limit left tasks behind: no sleeping then, since
    // a full inbox means no poster will wake us again.
    bool inbox_left = DrainInbox(kInboxBatch) == kInboxBatch;
    DrainReserved();  // after DrainInbox cleared the wake flag: a later push wakes us
    RunDeferred();
    stats_.timers_fired += timers_.FireDue(now_ms_, kTimerBatch);
    if (!stopping_ && stop_requested_.load(std::memory_order_acquire)) BeginStop();
    if (stopping_ && in_flight_ == 0 && deferred_.empty() && ring_->sq_pending() == 0) break;
    UpdateClock();
    bool ready = inbox_left || !deferred_.empty() || timers_.NextDeadline() <= now_ms_ ||
                 wake_pending_.load(std::memory_order_acquire) || ring_->ready() > 0;
    Wait(ready);
    UpdateClock();  // handlers see the time they run at, not the time the loop slept
    ReapAndDispatch();
  }
  finished_.store(true, std::memory_order_release);
  // Handlers whose owners are gone must not run: drop what is left, unrun.
  while (inbox_.TryPop().has_value()) {
  }
  DropReserved();
  timers_.Clear();
  current_loop = nullptr;
}

}  // namespace ringmail::core
