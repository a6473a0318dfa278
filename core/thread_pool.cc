// core/thread_pool.cc — see thread_pool.h for the contract.
//
// One mutex guards everything: the job ring, the worker and busy counts and the statistics.
// Every submit already takes it to touch the ring, so the counters ride along for free and
// a Stats() snapshot is consistent. Workers wait on work_cv_, blocked Submit calls on
// room_cv_; Stop waits with Mutex::Await for "no workers, nothing running".
#include "core/thread_pool.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"

namespace ringmail::core {
namespace {

// The pool whose worker this thread is, so that Submit and Stop can refuse to deadlock.
thread_local const ThreadPool* t_worker_of = nullptr;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.';
}

uint64_t RoundUpToPage(uint64_t bytes) {
  const long page = sysconf(_SC_PAGESIZE);
  const uint64_t page_bytes = page > 0 ? static_cast<uint64_t>(page) : 4096;
  return (bytes + page_bytes - 1) / page_bytes * page_bytes;
}

std::string ErrnoText(int error) {
  char buffer[128];
  // GNU strerror_r returns the message pointer, which may or may not be `buffer`.
  return strerror_r(error, buffer, sizeof(buffer));
}

// Workers start with every asynchronous signal blocked: the daemon takes process signals on
// its master loop (signalfd), and the kernel may deliver a process-directed signal to any
// thread that leaves it unblocked. Faults (SEGV, BUS, FPE, ILL, TRAP, SYS) and ABRT stay
// unblocked so that crashes still crash.
void SetWorkerSignalMask(sigset_t* mask) {
  sigfillset(mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT}) {
    sigdelset(mask, sig);
  }
}

}  // namespace

const char* SubmitResultName(SubmitResult result) {
  switch (result) {
    case SubmitResult::kAccepted:
      return "accepted";
    case SubmitResult::kBacklogFull:
      return "backlog_full";
    case SubmitResult::kStopped:
      return "stopped";
  }
  return "unknown";
}

absl::Status ValidateThreadPoolSpec(const ThreadPoolSpec& spec) {
  if (spec.name.empty() || spec.name.size() > kThreadPoolNameLengthMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "thread pool name must be 1..", kThreadPoolNameLengthMax, " characters"));
  }
  for (char c : spec.name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "thread pool name \"", spec.name, "\": only letters, digits, '_', '-', '.'"));
    }
  }
  const std::string where = absl::StrCat("thread pool \"", spec.name, "\": ");
  if (spec.concurrency > kThreadPoolConcurrencyMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "Concurrency ", spec.concurrency, " exceeds ", kThreadPoolConcurrencyMax));
  }
  if (spec.backlog == 0 || spec.backlog > kThreadPoolBacklogMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "Backlog ", spec.backlog, " is outside 1..", kThreadPoolBacklogMax));
  }
  if (spec.stack_size_bytes != 0 && (spec.stack_size_bytes < kThreadPoolStackSizeMin ||
                                     spec.stack_size_bytes > kThreadPoolStackSizeMax)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "Stack_Size ", spec.stack_size_bytes,
                                                   " is outside ", kThreadPoolStackSizeMin, "..",
                                                   kThreadPoolStackSizeMax, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ThreadPool>> ThreadPool::Create(const ThreadPoolSpec& spec) {
  RM_RETURN_IF_ERROR(ValidateThreadPoolSpec(spec));
  const uint64_t stack = spec.stack_size_bytes == 0 ? 0 : RoundUpToPage(spec.stack_size_bytes);
  std::unique_ptr<ThreadPool> pool(new ThreadPool(spec, stack));
  absl::Status status = pool->SetConcurrency(spec.concurrency);
  if (!status.ok()) {
    pool->Stop(StopMode::kDrop);  // joins whatever did start
    return status;
  }
  return pool;
}

ThreadPool::ThreadPool(const ThreadPoolSpec& spec, uint64_t stack_size_bytes)
    : name_(spec.name), stack_size_bytes_(stack_size_bytes), backlog_(spec.backlog) {
  absl::MutexLock lock(&mu_);
  ring_.resize(backlog_);
}

ThreadPool::~ThreadPool() { Stop(StopMode::kDrain); }

void ThreadPool::PushLocked(Job&& job) {
  RM_DCHECK(queued_ < backlog_);
  ring_[(head_ + queued_) % backlog_] = std::move(job);
  ++queued_;
}

ThreadPool::Job ThreadPool::PopLocked() {
  RM_DCHECK(queued_ > 0);
  Job job = std::move(ring_[head_]);
  ring_[head_] = nullptr;
  head_ = (head_ + 1) % backlog_;
  --queued_;
  return job;
}

void ThreadPool::RunInline(Job& job) {
  Job local = std::move(job);
  ++busy_;
  mu_.Unlock();
  std::move(local)();
  local = nullptr;  // captures die on this thread, outside the lock, before we count it done
  mu_.Lock();
  --busy_;
  ++completed_;
}

void ThreadPool::AcceptLocked(Job& job) {
  ++submitted_;
  if (concurrency_ == 0) {
    RunInline(job);
    return;
  }
  PushLocked(std::move(job));
  work_cv_.Signal();
}

SubmitResult ThreadPool::TrySubmit(Job&& job) {
  RM_CHECK(job != nullptr) << "empty job submitted to thread pool " << name_;
  absl::MutexLock lock(&mu_);
  if (stopping_) return SubmitResult::kStopped;
  // With concurrency 0 the queue only holds what retiring workers still drain; new jobs
  // run inline and never need a slot.
  if (concurrency_ > 0 && queued_ == backlog_) {
    ++rejected_;
    return SubmitResult::kBacklogFull;
  }
  AcceptLocked(job);
  return SubmitResult::kAccepted;
}

SubmitResult ThreadPool::Submit(Job&& job) {
  RM_CHECK(job != nullptr) << "empty job submitted to thread pool " << name_;
  absl::MutexLock lock(&mu_);
  while (!stopping_ && concurrency_ > 0 && queued_ == backlog_) {
    // Waiting here from one of our own workers could wait for itself forever.
    RM_CHECK(t_worker_of != this) << "blocking Submit from a worker of pool " << name_;
    ++blocked_submitters_;
    room_cv_.Wait(&mu_);
    --blocked_submitters_;
  }
  if (stopping_) return SubmitResult::kStopped;
  AcceptLocked(job);
  return SubmitResult::kAccepted;
}

bool ThreadPool::ShouldRetireLocked() const {
  // A surplus worker leaves between jobs; the others keep the queue going. When the target
  // is 0 there are no others, so the last workers leave only once the queue is empty.
  if (workers_ > concurrency_ && (concurrency_ > 0 || queued_ == 0)) return true;
  return stopping_ && queued_ == 0;
}

void* ThreadPool::WorkerMain(void* arg) {
  auto* pool = static_cast<ThreadPool*>(arg);
  t_worker_of = pool;
  pool->WorkerLoop();
  return nullptr;
}

void ThreadPool::WorkerLoop() {
  mu_.Lock();
  while (true) {
    while (queued_ == 0 && !ShouldRetireLocked()) work_cv_.Wait(&mu_);
    if (ShouldRetireLocked()) break;
    Job job = PopLocked();
    ++busy_;
    room_cv_.Signal();
    mu_.Unlock();
    std::move(job)();
    job = nullptr;  // captures die on the worker, outside the lock
    mu_.Lock();
    --busy_;
    ++completed_;
  }
  --workers_;
  // The Signal that woke us may have been meant for a job; pass it on to a staying worker.
  if (queued_ > 0) work_cv_.Signal();
  retired_.push_back(pthread_self());
  mu_.Unlock();
}

absl::Status ThreadPool::StartWorkerLocked() {
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (rc != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("thread pool ", name_, ": pthread_attr_init: ", ErrnoText(rc)));
  }
  if (stack_size_bytes_ != 0) rc = pthread_attr_setstacksize(&attr, stack_size_bytes_);
  if (rc == 0) {
    sigset_t mask;
    SetWorkerSignalMask(&mask);
    rc = pthread_attr_setsigmask_np(&attr, &mask);
  }
  pthread_t thread;
  if (rc == 0) rc = pthread_create(&thread, &attr, &ThreadPool::WorkerMain, this);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("thread pool ", name_, ": cannot start a worker: ", ErrnoText(rc)));
  }
  ++workers_;
  // The new thread cannot exit before we drop mu_ (it takes mu_ first), so `thread` is valid.
  // Thread names are limited to 15 bytes; the pool name (truncated) is what `top -H` shows.
  pthread_setname_np(thread, name_.substr(0, 15).c_str());
  return absl::OkStatus();
}

std::vector<pthread_t> ThreadPool::TakeRetiredLocked() {
  std::vector<pthread_t> retired;
  retired.swap(retired_);
  return retired;
}

absl::Status ThreadPool::SetConcurrency(uint32_t concurrency) {
  if (concurrency > kThreadPoolConcurrencyMax) {
    return absl::InvalidArgumentError(absl::StrCat("thread pool ", name_, ": concurrency ",
                                                   concurrency, " exceeds ",
                                                   kThreadPoolConcurrencyMax));
  }
  absl::Status status;
  std::vector<pthread_t> retired;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::FailedPreconditionError(absl::StrCat("thread pool ", name_, " is stopped"));
    }
    concurrency_ = concurrency;
    while (workers_ < concurrency_) {
      status = StartWorkerLocked();
      if (!status.ok()) {
        concurrency_ = workers_;  // report what really runs
        break;
      }
    }
    // Idle surplus workers retire now; busy ones after their job.
    if (workers_ > concurrency_) work_cv_.SignalAll();
    retired = TakeRetiredLocked();
  }
  // These have left their loop already; joining only waits for them to return.
  for (pthread_t thread : retired) pthread_join(thread, nullptr);
  return status;
}

void ThreadPool::Stop(StopMode mode) {
  RM_CHECK(t_worker_of != this) << "Stop called from a worker of pool " << name_;
  std::vector<Job> dropped;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (mode == StopMode::kDrop) {
      dropped.reserve(queued_);
      while (queued_ > 0) dropped.push_back(PopLocked());
      dropped_ += dropped.size();
    }
    work_cv_.SignalAll();
    room_cv_.SignalAll();
  }
  // A dropped job's destructor may do anything, even submit here (it gets kStopped).
  dropped.clear();
  std::vector<pthread_t> retired;
  {
    absl::MutexLock lock(&mu_);
    auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return workers_ == 0 && busy_ == 0;
    };
    mu_.Await(absl::Condition(&all_done));
    retired = TakeRetiredLocked();
  }
  for (pthread_t thread : retired) pthread_join(thread, nullptr);
}

ThreadPoolStats ThreadPool::Stats() const {
  ThreadPoolStats stats;
  stats.name = name_;
  absl::MutexLock lock(&mu_);
  stats.concurrency = concurrency_;
  stats.threads = workers_;
  stats.busy = busy_;
  stats.queued = queued_;
  stats.backlog = backlog_;
  stats.blocked_submitters = blocked_submitters_;
  stats.submitted = submitted_;
  stats.completed = completed_;
  stats.rejected = rejected_;
  stats.dropped = dropped_;
  stats.stopping = stopping_;
  return stats;
}

}  // namespace ringmail::core
