// tests/core/thread_pool_test.cc — ThreadPool and ThreadPoolRegistry.
//
// Jobs are held at Gates, report with absl::Notification and are counted with a mutex-backed
// Counter, so every test waits for an event, never for time. The test's own waits carry a
// generous timeout only so that a broken pool fails the test instead of hanging it.
#include "core/thread_pool.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/thread_pool_registry.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(30);

// A count that tests can wait on.
class Counter {
 public:
  void Add(int n = 1) {
    absl::MutexLock lock(&mu_);
    value_ += n;
  }
  int value() const {
    absl::MutexLock lock(&mu_);
    return value_;
  }
  bool AwaitAtLeast(int target) const {
    absl::MutexLock lock(&mu_);
    auto reached = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return value_ >= target;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kTimeout);
  }

 private:
  mutable absl::Mutex mu_;
  int value_ ABSL_GUARDED_BY(mu_) = 0;
};

// Where blocked jobs wait. It opens when destroyed, so a failed ASSERT never leaves a
// worker stuck; declare it after the pool so that it opens before the pool drains. Jobs wait
// without a timeout: a timeout here would let a broken pool make progress on its own.
class Gate {
 public:
  ~Gate() { Open(); }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&open_));
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

// Polls a condition that has no event of its own (a worker retiring, a Submit starting to
// wait): yields between checks, never sleeps.
bool WaitUntil(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + kTimeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

std::unique_ptr<ThreadPool> MakePool(uint32_t concurrency, uint32_t backlog,
                                     uint64_t stack_size_bytes = 0) {
  absl::StatusOr<std::unique_ptr<ThreadPool>> pool =
      ThreadPool::Create({"test", concurrency, backlog, stack_size_bytes});
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

// A job that reports it started, then waits for `gate`.
ThreadPool::Job Blocker(absl::Notification* started, Gate* gate) {
  return [started, gate] {
    if (started != nullptr) started->Notify();
    gate->Wait();
  };
}

ThreadPool::Job Count(Counter* counter) {
  return [counter] { counter->Add(); };
}

TEST(ThreadPoolTest, TrySubmitAnswersBacklogFullAndLeavesTheJobWithTheCaller) {
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/3);
  absl::Notification started, first_queued_ran;
  Gate gate;
  ASSERT_EQ(pool->TrySubmit(Blocker(&started, &gate)), SubmitResult::kAccepted);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
  Counter ran;
  ASSERT_EQ(pool->TrySubmit([&] {
    ran.Add();
    first_queued_ran.Notify();
  }),
            SubmitResult::kAccepted);
  ASSERT_EQ(pool->TrySubmit(Count(&ran)), SubmitResult::kAccepted);
  ASSERT_EQ(pool->TrySubmit(Count(&ran)), SubmitResult::kAccepted);

  ThreadPool::Job extra = Count(&ran);
  EXPECT_EQ(pool->TrySubmit(std::move(extra)), SubmitResult::kBacklogFull);
  ASSERT_NE(extra, nullptr);  // still ours: a braking loop retries it later
  EXPECT_EQ(pool->TrySubmit(Count(&ran)), SubmitResult::kBacklogFull);
  EXPECT_EQ(pool->Stats().rejected, 2u);
  EXPECT_EQ(pool->Stats().queued, 3u);

  gate.Open();
  ASSERT_TRUE(first_queued_ran.WaitForNotificationWithTimeout(kTimeout));
  // One slot freed by the pop that started the first queued job.
  EXPECT_EQ(pool->TrySubmit(std::move(extra)), SubmitResult::kAccepted);
  EXPECT_EQ(extra, nullptr);
  ASSERT_TRUE(ran.AwaitAtLeast(4));
  pool->Stop();
  EXPECT_EQ(ran.value(), 4);
}

TEST(ThreadPoolTest, SubmitWaitsForRoom) {
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/2);
  absl::Notification started, submit_returned;
  Gate gate;
  ASSERT_EQ(pool->TrySubmit(Blocker(&started, &gate)), SubmitResult::kAccepted);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
  Counter ran;
  ASSERT_EQ(pool->Submit(Count(&ran)), SubmitResult::kAccepted);  // room: returns at once
  ASSERT_EQ(pool->Submit(Count(&ran)), SubmitResult::kAccepted);

  SubmitResult result = SubmitResult::kStopped;
  std::thread submitter([&] {
    result = pool->Submit(Count(&ran));
    submit_returned.Notify();
  });
  ASSERT_TRUE(WaitUntil([&] { return pool->Stats().blocked_submitters == 1; }));
  EXPECT_FALSE(submit_returned.HasBeenNotified());
  EXPECT_EQ(pool->Stats().queued, 2u);

  gate.Open();
  ASSERT_TRUE(submit_returned.WaitForNotificationWithTimeout(kTimeout));
  submitter.join();
  EXPECT_EQ(result, SubmitResult::kAccepted);
  pool->Stop();
  EXPECT_EQ(ran.value(), 3);
  EXPECT_EQ(pool->Stats().blocked_submitters, 0u);
}

TEST(ThreadPoolTest, StopReleasesBlockedSubmitWithStoppedAndTheJobIntact) {
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/1);
  absl::Notification started;
  Gate gate;
  ASSERT_EQ(pool->TrySubmit(Blocker(&started, &gate)), SubmitResult::kAccepted);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
  Counter ran;
  ASSERT_EQ(pool->TrySubmit(Count(&ran)), SubmitResult::kAccepted);

  ThreadPool::Job waiting_job = Count(&ran);
  absl::Notification submit_returned;
  SubmitResult result = SubmitResult::kAccepted;
  std::thread submitter([&] {
    result = pool->Submit(std::move(waiting_job));
    submit_returned.Notify();
  });
  ASSERT_TRUE(WaitUntil([&] { return pool->Stats().blocked_submitters == 1; }));
  std::thread stopper([&] { pool->Stop(); });
  // Stop must wake the submitter even though the running job still holds the pool.
  ASSERT_TRUE(submit_returned.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(result, SubmitResult::kStopped);
  EXPECT_NE(waiting_job, nullptr);
  gate.Open();
  stopper.join();
  submitter.join();
  EXPECT_EQ(ran.value(), 1);  // the queued job was drained; the refused one never ran
}

TEST(ThreadPoolTest, GrowingAtRunTimeRunsMoreJobsAtOnce) {
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/16);
  constexpr int kJobs = 4;
  Counter arrived;
  absl::Notification all_arrived;
  std::atomic<int> met_the_others{0};
  for (int i = 0; i < kJobs; ++i) {
    // A barrier: each job waits until all kJobs are running at the same time.
    ASSERT_EQ(pool->TrySubmit([&] {
      arrived.Add();
      if (arrived.value() == kJobs) all_arrived.Notify();
      if (all_arrived.WaitForNotificationWithTimeout(kTimeout)) met_the_others.fetch_add(1);
    }),
              SubmitResult::kAccepted);
  }
  ASSERT_TRUE(arrived.AwaitAtLeast(1));
  ThreadPoolStats before = pool->Stats();
  EXPECT_EQ(before.busy, 1u);
  EXPECT_EQ(before.queued, 3u);
  EXPECT_EQ(before.threads, 1u);

  ASSERT_TRUE(pool->SetConcurrency(kJobs).ok());
  EXPECT_EQ(pool->Stats().concurrency, 4u);
  EXPECT_EQ(pool->Stats().threads, 4u);
  ASSERT_TRUE(all_arrived.WaitForNotificationWithTimeout(kTimeout));
  pool->Stop();
  EXPECT_EQ(met_the_others.load(), kJobs);
}

TEST(ThreadPoolTest, ShrinkingAtRunTimeLosesNoQueuedJobAndLowersBusy) {
  constexpr int kWorkers = 4;
  constexpr int kQueued = 20;
  auto pool = MakePool(kWorkers, /*backlog=*/64);
  Counter blockers_started;
  Gate gate;
  for (int i = 0; i < kWorkers; ++i) {
    ASSERT_EQ(pool->TrySubmit([&] {
      blockers_started.Add();
      gate.Wait();
    }),
              SubmitResult::kAccepted);
  }
  ASSERT_TRUE(blockers_started.AwaitAtLeast(kWorkers));

  Counter ran;
  std::atomic<int> running{0};
  std::atomic<int> running_max{0};
  std::atomic<uint32_t> busy_max{0};
  for (int i = 0; i < kQueued; ++i) {
    ASSERT_EQ(pool->TrySubmit([&] {
      const int now = running.fetch_add(1) + 1;
      int seen = running_max.load();
      while (now > seen && !running_max.compare_exchange_weak(seen, now)) {
      }
      const uint32_t busy = pool->Stats().busy;
      uint32_t busy_seen = busy_max.load();
      while (busy > busy_seen && !busy_max.compare_exchange_weak(busy_seen, busy)) {
      }
      running.fetch_sub(1);
      ran.Add();
    }),
              SubmitResult::kAccepted);
  }
  ASSERT_TRUE(pool->SetConcurrency(1).ok());
  ThreadPoolStats shrinking = pool->Stats();
  EXPECT_EQ(shrinking.concurrency, 1u);
  EXPECT_EQ(shrinking.threads, 4u);  // busy workers finish their job before retiring
  EXPECT_EQ(shrinking.busy, 4u);
  EXPECT_EQ(shrinking.queued, static_cast<uint32_t>(kQueued));

  gate.Open();
  ASSERT_TRUE(ran.AwaitAtLeast(kQueued));
  EXPECT_EQ(running_max.load(), 1);
  EXPECT_EQ(busy_max.load(), 1u);  // surplus workers retired instead of taking queued jobs
  EXPECT_EQ(pool->Stats().threads, 1u);
  pool->Stop();
  EXPECT_EQ(ran.value(), kQueued);
  EXPECT_EQ(pool->Stats().completed, static_cast<uint64_t>(kWorkers + kQueued));
}

TEST(ThreadPoolTest, ShrinkingToZeroDrainsTheQueueOnWorkersThenRunsInline) {
  auto pool = MakePool(/*concurrency=*/2, /*backlog=*/16);
  Counter started;
  Gate gate;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(pool->TrySubmit([&] {
      started.Add();
      gate.Wait();
    }),
              SubmitResult::kAccepted);
  }
  ASSERT_TRUE(started.AwaitAtLeast(2));
  const std::thread::id main_thread = std::this_thread::get_id();
  Counter ran_on_worker;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(pool->TrySubmit([&] {
      if (std::this_thread::get_id() != main_thread) ran_on_worker.Add();
    }),
              SubmitResult::kAccepted);
  }
  ASSERT_TRUE(pool->SetConcurrency(0).ok());
  bool inline_ran = false;
  EXPECT_EQ(pool->TrySubmit([&] { inline_ran = std::this_thread::get_id() == main_thread; }),
            SubmitResult::kAccepted);
  EXPECT_TRUE(inline_ran);

  gate.Open();
  ASSERT_TRUE(ran_on_worker.AwaitAtLeast(5));
  ASSERT_TRUE(WaitUntil([&] { return pool->Stats().threads == 0; }));
  pool->Stop();
  EXPECT_EQ(ran_on_worker.value(), 5);
}

TEST(ThreadPoolTest, ConcurrencyOneIsStrictlyFifo) {
  constexpr int kJobs = 200;
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/kJobs);
  absl::Notification started;
  Gate gate;
  ASSERT_EQ(pool->TrySubmit(Blocker(&started, &gate)), SubmitResult::kAccepted);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
  std::vector<int> order;  // touched only by the single worker until Stop returns
  for (int i = 0; i < kJobs - 1; ++i) {
    ASSERT_EQ(pool->TrySubmit([&order, i] { order.push_back(i); }), SubmitResult::kAccepted);
  }
  gate.Open();
  pool->Stop();
  std::vector<int> expected(kJobs - 1);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(order, expected);
}

TEST(ThreadPoolTest, RingWrapsAroundKeepingFifo) {
  // Backlog 3 with many more jobs: slots are reused many times over.
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/3);
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(pool->Submit([&order, i] { order.push_back(i); }), SubmitResult::kAccepted);
  }
  pool->Stop();
  ASSERT_EQ(order.size(), 100u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

size_t WorkerStackSize(ThreadPool& pool) {
  size_t stack_size = 0;
  absl::Notification done;
  EXPECT_EQ(pool.TrySubmit([&] {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      pthread_attr_getstacksize(&attr, &stack_size);
      pthread_attr_destroy(&attr);
    }
    done.Notify();
  }),
            SubmitResult::kAccepted);
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
  return stack_size;
}

// glibc keeps the stacks of exited threads and hands a cached one to a new thread when it is
// at least the requested size and at most four times it (nptl/allocatestack.c), so what a
// worker sees is "at least what was asked, never wildly more". A 256 KiB request can never
// be served by the 8 MiB default stack, which is what tells an ignored attribute apart.
TEST(ThreadPoolTest, WorkersGetTheRequestedStackSize) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  for (uint64_t requested : {uint64_t{256} * 1024, uint64_t{1} * 1024 * 1024}) {
    auto pool = MakePool(/*concurrency=*/2, /*backlog=*/4, requested);
    ASSERT_EQ(pool->stack_size_bytes(), requested);
    const uint64_t actual = WorkerStackSize(*pool);
    EXPECT_GE(actual, requested);
    EXPECT_LE(actual, 4 * (requested + page));
  }
  // Not a page multiple: rounded up to one.
  auto odd = MakePool(/*concurrency=*/1, /*backlog=*/4, 256 * 1024 + 1);
  EXPECT_EQ(odd->stack_size_bytes(), 256 * 1024 + page);
  const uint64_t actual = WorkerStackSize(*odd);
  EXPECT_GE(actual, 256 * 1024 + page);
  EXPECT_LT(actual, uint64_t{2} * 1024 * 1024);
}

TEST(ThreadPoolTest, WorkersBlockAsynchronousSignals) {
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/4);
  sigset_t mask;
  sigemptyset(&mask);
  absl::Notification done;
  ASSERT_EQ(pool->TrySubmit([&] {
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    done.Notify();
  }),
            SubmitResult::kAccepted);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(sigismember(&mask, SIGTERM), 1);
  EXPECT_EQ(sigismember(&mask, SIGHUP), 1);
  EXPECT_EQ(sigismember(&mask, SIGINT), 1);
  EXPECT_EQ(sigismember(&mask, SIGSEGV), 0);
  EXPECT_EQ(sigismember(&mask, SIGABRT), 0);
}

TEST(ThreadPoolTest, ConcurrencyZeroRunsInlineOnTheCallersThread) {
  auto pool = MakePool(/*concurrency=*/0, /*backlog=*/1);
  EXPECT_EQ(pool->Stats().threads, 0u);
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  EXPECT_EQ(pool->TrySubmit([&] { ran_on = std::this_thread::get_id(); }),
            SubmitResult::kAccepted);
  EXPECT_EQ(ran_on, caller);  // already ran when TrySubmit returned
  int ran = 0;
  EXPECT_EQ(pool->Submit([&] { ++ran; }), SubmitResult::kAccepted);
  EXPECT_EQ(ran, 1);
  // An inline job may submit to its own pool (the lock is not held while it runs), and the
  // backlog does not limit inline work.
  EXPECT_EQ(pool->TrySubmit([&] {
    EXPECT_EQ(pool->TrySubmit([&] { ++ran; }), SubmitResult::kAccepted);
    EXPECT_EQ(pool->TrySubmit([&] { ++ran; }), SubmitResult::kAccepted);
  }),
            SubmitResult::kAccepted);
  EXPECT_EQ(ran, 3);
  ThreadPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.submitted, 5u);
  EXPECT_EQ(stats.completed, 5u);
  EXPECT_EQ(stats.busy, 0u);
  EXPECT_EQ(stats.threads, 0u);
}

TEST(ThreadPoolTest, StopDrainsEveryQueuedJob) {
  constexpr int kQueued = 10;
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/kQueued);
  absl::Notification started;
  Gate gate;
  Counter ran;
  ASSERT_EQ(pool->TrySubmit([&] {
    started.Notify();
    gate.Wait();
    ran.Add();
  }),
            SubmitResult::kAccepted);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
  for (int i = 0; i < kQueued; ++i) {
    ASSERT_EQ(pool->TrySubmit(Count(&ran)), SubmitResult::kAccepted);
  }
  absl::Notification stop_returned;
  std::thread stopper([&] {
    pool->Stop();
    stop_returned.Notify();
  });
  ASSERT_TRUE(WaitUntil([&] { return pool->Stats().stopping; }));
  ThreadPool::Job late = Count(&ran);
  EXPECT_EQ(pool->TrySubmit(std::move(late)), SubmitResult::kStopped);
  EXPECT_NE(late, nullptr);
  EXPECT_FALSE(stop_returned.HasBeenNotified());  // a job is still running
  gate.Open();
  stopper.join();
  EXPECT_EQ(ran.value(), kQueued + 1);
  ThreadPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.threads, 0u);
  EXPECT_EQ(stats.completed, static_cast<uint64_t>(kQueued + 1));
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(pool->SetConcurrency(3).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ThreadPoolTest, StopDropDestroysQueuedJobsUnrun) {
  constexpr int kQueued = 10;
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/kQueued);
  absl::Notification started;
  Gate gate;
  ASSERT_EQ(pool->TrySubmit(Blocker(&started, &gate)), SubmitResult::kAccepted);
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));
  Counter ran, destroyed;
  for (int i = 0; i < kQueued; ++i) {
    ASSERT_EQ(pool->TrySubmit([&ran, guard = absl::Cleanup([&] { destroyed.Add(); })] {
      ran.Add();
    }),
              SubmitResult::kAccepted);
  }
  std::thread stopper([&] { pool->Stop(StopMode::kDrop); });
  // The queued jobs die on the stopping thread while the running one still runs.
  ASSERT_TRUE(destroyed.AwaitAtLeast(kQueued));
  gate.Open();
  stopper.join();
  EXPECT_EQ(ran.value(), 0);
  ThreadPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.dropped, static_cast<uint64_t>(kQueued));
  EXPECT_EQ(stats.completed, 1u);
  EXPECT_EQ(stats.queued, 0u);
}

TEST(ThreadPoolTest, DestructorDrains) {
  Counter ran;
  {
    auto pool = MakePool(/*concurrency=*/2, /*backlog=*/64);
    for (int i = 0; i < 50; ++i) {
      ASSERT_EQ(pool->Submit(Count(&ran)), SubmitResult::kAccepted);
    }
  }
  EXPECT_EQ(ran.value(), 50);
}

TEST(ThreadPoolTest, StatsCountWhatHappened) {
  auto pool = MakePool(/*concurrency=*/2, /*backlog=*/5);
  Gate gate;
  Counter started;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(pool->TrySubmit([&] {
      started.Add();
      gate.Wait();
    }),
              SubmitResult::kAccepted);
  }
  ASSERT_TRUE(started.AwaitAtLeast(2));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(pool->TrySubmit([] {}), SubmitResult::kAccepted);
  EXPECT_EQ(pool->TrySubmit([] {}), SubmitResult::kBacklogFull);

  ThreadPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.name, "test");
  EXPECT_EQ(stats.concurrency, 2u);
  EXPECT_EQ(stats.threads, 2u);
  EXPECT_EQ(stats.busy, 2u);
  EXPECT_EQ(stats.queued, 5u);
  EXPECT_EQ(stats.backlog, 5u);
  EXPECT_EQ(stats.submitted, 7u);
  EXPECT_EQ(stats.completed, 0u);
  EXPECT_EQ(stats.rejected, 1u);
  EXPECT_FALSE(stats.stopping);

  gate.Open();
  pool->Stop();
  stats = pool->Stats();
  EXPECT_EQ(stats.busy, 0u);
  EXPECT_EQ(stats.queued, 0u);
  EXPECT_EQ(stats.threads, 0u);
  EXPECT_EQ(stats.submitted, 7u);
  EXPECT_EQ(stats.completed, 7u);
  EXPECT_EQ(stats.rejected, 1u);
  EXPECT_TRUE(stats.stopping);
}

TEST(ThreadPoolTest, JobWithDoneHandsTheResultOverOnTheWorker) {
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/4);
  absl::Notification done;
  int result = 0;
  std::thread::id work_thread, done_thread;
  auto payload = std::make_unique<int>(41);  // move-only capture
  ASSERT_EQ(pool->TrySubmit(JobWithDone(
                [&, payload = std::move(payload)] {
                  work_thread = std::this_thread::get_id();
                  return *payload + 1;
                },
                [&](int value) {
                  done_thread = std::this_thread::get_id();
                  result = value;
                  done.Notify();
                })),
            SubmitResult::kAccepted);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_EQ(result, 42);
  EXPECT_EQ(work_thread, done_thread);
  EXPECT_NE(done_thread, std::this_thread::get_id());

  absl::Notification void_done;
  bool worked = false;
  ASSERT_EQ(pool->TrySubmit(JobWithDone([&] { worked = true; }, [&] { void_done.Notify(); })),
            SubmitResult::kAccepted);
  ASSERT_TRUE(void_done.WaitForNotificationWithTimeout(kTimeout));
  EXPECT_TRUE(worked);
}

TEST(ThreadPoolTest, BadSpecsAreRefused) {
  const ThreadPoolSpec bad[] = {
      {"", 1, 10, 0},
      {"has space", 1, 10, 0},
      {std::string(kThreadPoolNameLengthMax + 1, 'a'), 1, 10, 0},
      {"x", kThreadPoolConcurrencyMax + 1, 10, 0},
      {"x", 1, 0, 0},
      {"x", 1, kThreadPoolBacklogMax + 1, 0},
      {"x", 1, 10, kThreadPoolStackSizeMin - 1},
      {"x", 1, 10, kThreadPoolStackSizeMax + 1},
  };
  for (const ThreadPoolSpec& spec : bad) {
    EXPECT_EQ(ThreadPool::Create(spec).status().code(), absl::StatusCode::kInvalidArgument)
        << spec.name << " " << spec.concurrency << " " << spec.backlog << " "
        << spec.stack_size_bytes;
  }
  auto pool = MakePool(/*concurrency=*/1, /*backlog=*/1);
  EXPECT_EQ(pool->SetConcurrency(kThreadPoolConcurrencyMax + 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->Stats().concurrency, 1u);
}

TEST(ThreadPoolTest, SubmitResultNames) {
  EXPECT_STREQ(SubmitResultName(SubmitResult::kAccepted), "accepted");
  EXPECT_STREQ(SubmitResultName(SubmitResult::kBacklogFull), "backlog_full");
  EXPECT_STREQ(SubmitResultName(SubmitResult::kStopped), "stopped");
}

TEST(ThreadPoolDeathTest, StopFromOwnWorkerCrashesInsteadOfDeadlocking) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto pool = MakePool(/*concurrency=*/1, /*backlog=*/1);
        absl::Notification done;
        pool->TrySubmit([&] {
          pool->Stop();
          done.Notify();
        });
        done.WaitForNotificationWithTimeout(kTimeout);
      },
      "Stop called from a worker");
}

// ---- ThreadPoolRegistry ----

std::unique_ptr<ThreadPoolRegistry> MakeRegistry(const std::vector<ThreadPoolSpec>& specs) {
  absl::StatusOr<std::unique_ptr<ThreadPoolRegistry>> registry =
      ThreadPoolRegistry::Create(specs);
  EXPECT_TRUE(registry.ok()) << registry.status();
  return registry.ok() ? *std::move(registry) : nullptr;
}

TEST(ThreadPoolRegistryTest, StandardPoolsHaveTheirDefaults) {
  auto registry = MakeRegistry(StandardThreadPoolSpecs());
  ASSERT_EQ(registry->size(), 8u);
  struct Want {
    std::string_view name;
    uint32_t concurrency;
    uint32_t backlog;
  };
  constexpr uint32_t kDefault = kThreadPoolBacklogDefault;
  const Want wants[] = {
      {"SwapOut", 5, kDefault}, {"SwapIn", 5, kDefault}, {"Unlink", 6, 100},
      {"Batch_Unlink", 4, kDefault}, {"Close", 0, kDefault}, {"CPU", 4, kDefault},
      {"IO", 50, kDefault}, {"SpoolIn", 1, kDefault},
  };
  std::vector<ThreadPoolStats> list = registry->ListStats();
  ASSERT_EQ(list.size(), std::size(wants));
  for (size_t i = 0; i < list.size(); ++i) {
    EXPECT_EQ(list[i].name, wants[i].name);
    EXPECT_EQ(list[i].concurrency, wants[i].concurrency) << wants[i].name;
    EXPECT_EQ(list[i].threads, wants[i].concurrency) << wants[i].name;
    EXPECT_EQ(list[i].backlog, wants[i].backlog) << wants[i].name;
  }
  EXPECT_EQ(registry->Find("Unlink")->Stats().backlog, 100u);
  EXPECT_EQ(registry->Find("Close")->Stats().concurrency, 0u);
  EXPECT_EQ(registry->Find("SpoolIn")->Stats().concurrency, 1u);
}

TEST(ThreadPoolRegistryTest, LookupIgnoresCaseAndRejectsUnknownNames) {
  auto registry = MakeRegistry(StandardThreadPoolSpecs());
  ThreadPool* unlink = registry->Find(kUnlinkPool);
  ASSERT_NE(unlink, nullptr);
  EXPECT_EQ(registry->Find("unlink"), unlink);
  EXPECT_EQ(registry->Find("UNLINK"), unlink);
  EXPECT_EQ(registry->Find("batch_unlink"), registry->Find(kBatchUnlinkPool));
  EXPECT_EQ(unlink->name(), "Unlink");

  EXPECT_EQ(registry->Find("Nosuch"), nullptr);
  EXPECT_EQ(registry->Find(""), nullptr);
  EXPECT_EQ(registry->Find(std::string(10000, 'x')), nullptr);
  absl::StatusOr<ThreadPool*> missing = registry->Get("Nosuch");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find("Nosuch"), std::string::npos);
  EXPECT_EQ(*registry->Get("io"), registry->Find(kIoPool));
}

TEST(ThreadPoolRegistryTest, SetConcurrencyByName) {
  auto registry = MakeRegistry(StandardThreadPoolSpecs());
  ASSERT_TRUE(registry->SetConcurrency("cpu", 7).ok());
  EXPECT_EQ(registry->Find(kCpuPool)->Stats().concurrency, 7u);
  EXPECT_EQ(registry->Find(kCpuPool)->Stats().threads, 7u);
  EXPECT_EQ(registry->SetConcurrency("nosuch", 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry->SetConcurrency("cpu", kThreadPoolConcurrencyMax + 1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ThreadPoolRegistryTest, ClosePoolRunsInline) {
  auto registry = MakeRegistry(StandardThreadPoolSpecs());
  std::thread::id ran_on;
  EXPECT_EQ(registry->Find(kClosePool)->TrySubmit([&] { ran_on = std::this_thread::get_id(); }),
            SubmitResult::kAccepted);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(ThreadPoolRegistryTest, OverridesChangeStandardPoolsAndAddNewOnes) {
  const ThreadPoolOverride overrides[] = {
      {"unlink", 2, std::nullopt, std::nullopt},          // case-insensitive match
      {"Custom", std::nullopt, 7, uint64_t{512} * 1024},  // a new pool
      {"custom", 3, std::nullopt, std::nullopt},          // later scopes win
  };
  absl::StatusOr<std::vector<ThreadPoolSpec>> specs =
      ApplyThreadPoolOverrides(StandardThreadPoolSpecs(), overrides);
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 9u);
  auto registry = MakeRegistry(*specs);
  ThreadPoolStats unlink = registry->Find(kUnlinkPool)->Stats();
  EXPECT_EQ(unlink.name, "Unlink");
  EXPECT_EQ(unlink.concurrency, 2u);
  EXPECT_EQ(unlink.backlog, 100u);  // unset fields keep the standard value
  ThreadPool* custom = registry->Find("CUSTOM");
  ASSERT_NE(custom, nullptr);
  EXPECT_EQ(custom->name(), "Custom");
  EXPECT_EQ(custom->Stats().concurrency, 3u);
  EXPECT_EQ(custom->Stats().backlog, 7u);
  EXPECT_EQ(custom->stack_size_bytes(), 512u * 1024);

  const ThreadPoolOverride bad[] = {{"IO", std::nullopt, 0, std::nullopt}};
  EXPECT_EQ(ApplyThreadPoolOverrides(StandardThreadPoolSpecs(), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  const ThreadPoolOverride new_default[] = {{"Fresh", std::nullopt, std::nullopt, std::nullopt}};
  specs = ApplyThreadPoolOverrides({}, new_default);
  ASSERT_TRUE(specs.ok());
  EXPECT_EQ(specs->at(0).concurrency, kThreadPoolConcurrencyDefault);
  EXPECT_EQ(specs->at(0).backlog, kThreadPoolBacklogDefault);
}

TEST(ThreadPoolRegistryTest, DuplicateInvalidOrTooManySpecsAreRefused) {
  EXPECT_EQ(ThreadPoolRegistry::Create({{"A", 1, 10, 0}, {"a", 1, 10, 0}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ThreadPoolRegistry::Create({{"A", 1, 10, 0}, {"B", 1, 0, 0}}).status().code(),
            absl::StatusCode::kInvalidArgument);

  std::vector<ThreadPoolOverride> many;
  for (size_t i = 0; i + 8 < kThreadPoolCountMax; ++i) {
    many.push_back({"extra" + std::to_string(i), 0, std::nullopt, std::nullopt});
  }
  absl::StatusOr<std::vector<ThreadPoolSpec>> specs =
      ApplyThreadPoolOverrides(StandardThreadPoolSpecs(), many);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ(specs->size(), kThreadPoolCountMax);
  many.push_back({"one_too_many", 0, std::nullopt, std::nullopt});
  EXPECT_EQ(ApplyThreadPoolOverrides(StandardThreadPoolSpecs(), many).status().code(),
            absl::StatusCode::kInvalidArgument);
  specs->push_back({"one_too_many", 0, 1, 0});
  EXPECT_EQ(ThreadPoolRegistry::Create(*specs).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ThreadPoolRegistryTest, StopAllDrainsAndRefusesNewWork) {
  auto registry = MakeRegistry({{"One", 1, 100, 0}, {"Two", 3, 100, 0}});
  Counter ran;
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(registry->Find("one")->Submit(Count(&ran)), SubmitResult::kAccepted);
    ASSERT_EQ(registry->Find("two")->Submit(Count(&ran)), SubmitResult::kAccepted);
  }
  registry->StopAll();
  EXPECT_EQ(ran.value(), 40);
  for (const ThreadPoolStats& stats : registry->ListStats()) {
    EXPECT_TRUE(stats.stopping) << stats.name;
    EXPECT_EQ(stats.threads, 0u) << stats.name;
  }
  EXPECT_EQ(registry->Find("two")->TrySubmit(Count(&ran)), SubmitResult::kStopped);
}

}  // namespace
}  // namespace ringmail::core
