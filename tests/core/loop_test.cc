// Loop tests: cross-loop posting (ordering, back-pressure, wake-ups from plain threads),
// ring timeouts and the timer queue, cancellation of in-flight operations, clean stop.
#include "core/loop.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
  }
};

std::unique_ptr<Loop> StartLoop(const std::string& name, size_t inbox = 1 << 12) {
  LoopOptions o;
  o.name = name;
  o.inbox_capacity = inbox;
  auto loop = std::make_unique<Loop>(o);
  absl::Status s = loop->Start();
  EXPECT_TRUE(s.ok()) << s;
  return loop;
}

void StopLoop(Loop& loop) {
  loop.RequestStop();
  loop.Join();
}

TEST_F(LoopTest, PostFromPlainThreadRunsOnLoopInOrder) {
  auto loop = StartLoop("t0");
  std::vector<int> seen;
  absl::Notification done;
  std::atomic<bool> on_loop{true};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(loop->Post([&, i] {
      if (!loop->IsCurrent()) on_loop = false;
      seen.push_back(i);
      if (i == 999) done.Notify();
    }), PostResult::kOk);
  }
  done.WaitForNotification();
  StopLoop(*loop);
  ASSERT_EQ(seen.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_TRUE(on_loop);
}

TEST_F(LoopTest, PostBetweenLoopsKeepsPerSenderOrder) {
  auto a = StartLoop("a");
  auto b = StartLoop("b");
  constexpr int kCount = 20000;
  std::vector<int> seen;
  seen.reserve(kCount);
  absl::Notification done;
  int full = 0;
  // Loop a posts kCount tasks to b, retrying (from a's next turn) when b's inbox is full.
  struct Sender {
    Loop* from;
    Loop* to;
    int next = 0;
    int* full;
    std::vector<int>* seen;
    absl::Notification* done;
    void Run() {
      while (next < kCount) {
        int v = next;
        PostResult r = to->Post([this, v] {
          seen->push_back(v);
          if (v == kCount - 1) done->Notify();
        });
        if (r == PostResult::kFull) {
          ++*full;
          from->Defer([this] { Run(); });  // brake: try again next turn
          return;
        }
        ++next;
      }
    }
  } sender{a.get(), b.get(), 0, &full, &seen, &done};
  ASSERT_EQ(a->Post([&] { sender.Run(); }), PostResult::kOk);
  done.WaitForNotification();
  StopLoop(*a);
  StopLoop(*b);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(seen[i], i);
}

TEST_F(LoopTest, FullInboxSaysFullAndNeverGrows) {
  LoopOptions o;
  o.name = "small";
  o.inbox_capacity = 8;
  Loop loop(o);  // not started: nothing drains the inbox
  for (int i = 0; i < 8; ++i) EXPECT_EQ(loop.Post([] {}), PostResult::kOk);
  EXPECT_EQ(loop.Post([] {}), PostResult::kFull);
  EXPECT_EQ(loop.Post([] {}), PostResult::kFull);
  ASSERT_TRUE(loop.Start().ok());
  // Once the loop runs and drains, there is room again.
  absl::Notification ran;
  while (loop.Post([&] { ran.Notify(); }) != PostResult::kOk) {
    std::this_thread::yield();
  }
  ran.WaitForNotification();
  StopLoop(loop);
  EXPECT_EQ(loop.Post([] {}), PostResult::kStopped);
}

// A reserved post finds room however full the inbox is: a worker's result is never dropped.
TEST_F(LoopTest, ReservedPostRunsWhenTheInboxIsFull) {
  LoopOptions o;
  o.name = "reserved";
  o.inbox_capacity = 8;
  Loop loop(o);  // not started: nothing drains the inbox
  ReservedPost reserved = loop.Reserve();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(loop.Post([] {}), PostResult::kOk);
  ASSERT_EQ(loop.Post([] {}), PostResult::kFull);
  absl::Notification ran;
  std::thread worker([&] {
    EXPECT_EQ(std::move(reserved).Post([&] { ran.Notify(); }), PostResult::kOk);
  });
  worker.join();
  EXPECT_TRUE(reserved.empty());
  EXPECT_FALSE(ran.HasBeenNotified());
  ASSERT_TRUE(loop.Start().ok());
  ran.WaitForNotification();
  StopLoop(loop);
}

// Posted from plain threads to a sleeping loop, each post wakes it; each thread's posts run
// in the order they were made, every one exactly once.
TEST_F(LoopTest, ReservedPostsFromManyThreadsWakeTheLoopAndKeepOrder) {
  auto loop = StartLoop("reserved-many");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<int>> seen(kThreads);
  std::atomic<int> total{0};
  absl::Notification done;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ReservedPost r = loop->Reserve();
        ASSERT_EQ(std::move(r).Post([&, t, i] {
          seen[t].push_back(i);
          if (total.fetch_add(1) + 1 == kThreads * kPerThread) done.Notify();
        }), PostResult::kOk);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done.WaitForNotification();
  StopLoop(*loop);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i);
  }
}

// After the loop finished, a reserved post says so and destroys its task unrun; a
// reservation never used gives its room back (LeakSanitizer checks both).
TEST_F(LoopTest, ReservedPostAfterStopIsDestroyedUnrun) {
  auto loop = StartLoop("reserved-stop");
  ReservedPost unused = loop->Reserve();
  ReservedPost late = loop->Reserve();
  StopLoop(*loop);
  auto held = std::make_shared<int>(1);
  bool ran = false;
  EXPECT_EQ(std::move(late).Post([&ran, held] { ran = true; }), PostResult::kStopped);
  EXPECT_EQ(held.use_count(), 1);
  EXPECT_FALSE(ran);
}

// More tasks than one turn drains (4096), posted while the loop is busy: the loop must not
// go to sleep with tasks left, since a full inbox means nobody will wake it again.
TEST_F(LoopTest, BacklogLargerThanOneTurnIsDrainedWithoutNewWakeups) {
  auto loop = StartLoop("big", 1 << 14);
  absl::Notification release;
  absl::Notification blocked;
  loop->Post([&] {
    blocked.Notify();
    release.WaitForNotification();
  });
  blocked.WaitForNotification();
  std::atomic<int> ran{0};
  int posted = 0;
  while (loop->Post([&] { ran.fetch_add(1); }) == PostResult::kOk) ++posted;
  EXPECT_EQ(posted, 1 << 14);  // the blocking task already left the inbox
  release.Notify();
  // No further post may wake the loop until it has drained everything by itself.
  while (ran.load() < posted) std::this_thread::yield();
  StopLoop(*loop);
  EXPECT_EQ(ran.load(), posted);
}

TEST_F(LoopTest, ManyProducersAllDelivered) {
  auto loop = StartLoop("mp", 1 << 10);
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::atomic<int> count{0};
  std::vector<int> last(kThreads, -1);
  std::atomic<bool> ordered{true};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        while (loop->Post([&, t, i] {
          if (last[t] != i - 1) ordered = false;
          last[t] = i;
          count.fetch_add(1);
        }) == PostResult::kFull) {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  absl::Notification done;
  while (loop->Post([&] { done.Notify(); }) == PostResult::kFull) std::this_thread::yield();
  done.WaitForNotification();
  StopLoop(*loop);
  EXPECT_EQ(count.load(), kThreads * kEach);
  EXPECT_TRUE(ordered);
}

// A ring timeout op completes after its delay; a timer-queue timer fires in deadline order.
struct TimeoutOwner {
  Loop* loop;
  Operation op;
  __kernel_timespec ts{};
  uint64_t armed_ms = 0;
  uint64_t fired_ms = 0;
  int error = -1;
  absl::Notification* done;
  void Arm(int ms) {
    op.Bind<&TimeoutOwner::Done>(this, "timeout");
    ts.tv_sec = 0;
    ts.tv_nsec = ms * 1'000'000LL;
    armed_ms = MonotonicMs();
    io_uring_prep_timeout(loop->Prepare(op), &ts, 0, 0);
  }
  void Done(Operation&, IoResult r) {
    fired_ms = MonotonicMs();
    error = r.error();
    done->Notify();
  }
};

TEST_F(LoopTest, RingTimeoutCompletes) {
  auto loop = StartLoop("tm");
  absl::Notification done;
  TimeoutOwner owner{loop.get(), {}, {}, 0, 0, -1, &done};
  loop->Post([&] { owner.Arm(30); });
  done.WaitForNotification();
  StopLoop(*loop);
  EXPECT_EQ(owner.error, ETIME);
  EXPECT_GE(owner.fired_ms - owner.armed_ms, 29u);
}

struct TimerOwner {
  std::vector<int>* order;
  int id;
  Timer timer;
  absl::Notification* last;
  void Fired(Timer&) {
    order->push_back(id);
    if (last != nullptr) last->Notify();
  }
};

TEST_F(LoopTest, TimerQueueFiresInDeadlineOrderAndCancelWorks) {
  auto loop = StartLoop("tq");
  std::vector<int> order;
  absl::Notification done;
  TimerOwner t1{&order, 1, {}, nullptr};
  TimerOwner t2{&order, 2, {}, nullptr};
  TimerOwner t3{&order, 3, {}, &done};
  TimerOwner cancelled{&order, 99, {}, nullptr};
  uint64_t start = 0;
  loop->Post([&] {
    start = loop->now_ms();
    for (TimerOwner* t : {&t1, &t2, &t3, &cancelled}) t->timer.Bind<&TimerOwner::Fired>(t);
    loop->timers().Arm(t3.timer, start + 40);
    loop->timers().Arm(t1.timer, start + 10);
    loop->timers().Arm(t2.timer, start + 20);
    loop->timers().Arm(cancelled.timer, start + 15);
    loop->timers().Cancel(cancelled.timer);
  });
  done.WaitForNotification();
  uint64_t end = MonotonicMs();
  StopLoop(*loop);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(end - start, 40u);
}

// A multishot-free recv on a socket that never gets data stays in flight until stop:
// stop must cancel it, deliver ECANCELED to its owner, and only then return.
struct RecvOwner {
  Loop* loop;
  int fd;
  Operation op;
  char buf[16];
  std::atomic<int> error{0};
  std::atomic<bool> completed{false};
  void Arm() {
    op.Bind<&RecvOwner::Done>(this, "recv");
    io_uring_prep_recv(loop->Prepare(op), fd, buf, sizeof(buf), 0);
  }
  void Done(Operation&, IoResult r) {
    error = r.error();
    completed = true;
  }
};

TEST_F(LoopTest, StopCancelsInFlightOperationsBeforeReturning) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  auto loop = StartLoop("st");
  RecvOwner owner{loop.get(), sv[0], {}, {}, {}, {}};
  absl::Notification armed;
  loop->Post([&] {
    owner.Arm();
    armed.Notify();
  });
  armed.WaitForNotification();
  StopLoop(*loop);  // returns only once the recv completed
  EXPECT_TRUE(owner.completed.load());
  EXPECT_EQ(owner.error.load(), ECANCELED);
  EXPECT_TRUE(owner.op.idle());
  close(sv[0]);
  close(sv[1]);
}

TEST_F(LoopTest, StopHandlersRunOnLoopThread) {
  auto loop = StartLoop("sh");
  std::atomic<bool> ran_on_loop{false};
  absl::Notification registered;
  loop->Post([&] {
    loop->OnStop([&] { ran_on_loop = loop->IsCurrent() && loop->stopping(); });
    registered.Notify();
  });
  registered.WaitForNotification();
  StopLoop(*loop);
  EXPECT_TRUE(ran_on_loop.load());
}

TEST_F(LoopTest, CompletionWaitStillDeliversEverything) {
  LoopOptions o;
  o.name = "cw";
  o.completion_wait_us = 200;
  Loop loop(o);
  ASSERT_TRUE(loop.Start().ok());
  std::atomic<int> n{0};
  absl::Notification done;
  for (int i = 0; i < 100; ++i) {
    loop.Post([&] {
      if (++n == 100) done.Notify();
    });
  }
  done.WaitForNotification();
  StopLoop(loop);
  EXPECT_EQ(n.load(), 100);
}

TEST_F(LoopTest, ArmingASubmittedOperationIsABug) {
  EXPECT_DEATH(
      {
        Operation op;
        op.Bind<&RecvOwner::Done>(static_cast<RecvOwner*>(nullptr), "twice");
        op.state = Operation::State::kSubmitted;
        auto ring = Ring::Create(RingOptions{});
        if (ring.ok()) (*ring)->Prepare(op);
      },
      "armed twice");
}

}  // namespace
}  // namespace ringmail::core
