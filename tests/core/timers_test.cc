#include "core/timers.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

struct Owner {
  Owner(std::vector<int>* f, int i) : fired(f), id(i) {}
  std::vector<int>* fired;
  int id;
  Timer t;
  void Fire(Timer&) { fired->push_back(id); }
};

TEST(TimerQueueTest, FiresDueTimersInOrderWithFifoTies) {
  TimerQueue q;
  std::vector<int> fired;
  std::vector<std::unique_ptr<Owner>> owners;
  for (int i = 0; i < 5; ++i) {
    owners.push_back(std::make_unique<Owner>(&fired, i));
    owners.back()->t.Bind<&Owner::Fire>(owners.back().get());
  }
  q.Arm(owners[0]->t, 50);
  q.Arm(owners[1]->t, 10);
  q.Arm(owners[2]->t, 10);
  q.Arm(owners[3]->t, 30);
  q.Arm(owners[4]->t, 100);
  EXPECT_EQ(q.NextDeadline(), 10u);
  EXPECT_EQ(q.FireDue(30, 100), 3u);
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  q.Arm(owners[0]->t, 200);  // re-arm moves it
  EXPECT_EQ(q.NextDeadline(), 100u);
  q.Cancel(owners[4]->t);
  EXPECT_FALSE(owners[4]->t.armed());
  EXPECT_EQ(q.FireDue(150, 100), 0u);
  EXPECT_EQ(q.FireDue(200, 100), 1u);
  EXPECT_EQ(fired.back(), 0);
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueueTest, BoundedBatchPerCall) {
  TimerQueue q;
  std::vector<int> fired;
  std::vector<std::unique_ptr<Owner>> owners;
  for (int i = 0; i < 10; ++i) {
    owners.push_back(std::make_unique<Owner>(&fired, i));
    owners.back()->t.Bind<&Owner::Fire>(owners.back().get());
    q.Arm(owners.back()->t, 1);
  }
  EXPECT_EQ(q.FireDue(1, 4), 4u);
  EXPECT_EQ(q.size(), 6u);
}

TEST(TimerQueueTest, RandomArmCancelKeepsHeapOrder) {
  TimerQueue q;
  std::vector<int> fired;
  std::vector<std::unique_ptr<Owner>> owners;
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    owners.push_back(std::make_unique<Owner>(&fired, i));
    owners.back()->t.Bind<&Owner::Fire>(owners.back().get());
    q.Arm(owners.back()->t, rng() % 1000);
  }
  for (int i = 0; i < 2000; i += 3) q.Cancel(owners[i]->t);
  uint64_t last = 0;
  size_t count = 0;
  while (q.size() > 0) {
    uint64_t next = q.NextDeadline();
    EXPECT_GE(next, last);
    last = next;
    count += q.FireDue(next, 1);
  }
  EXPECT_EQ(count, 2000u - 667u);
  for (int id : fired) EXPECT_NE(id % 3, 0);
}

TEST(TimerQueueTest, ClearDisarmsWithoutFiring) {
  TimerQueue q;
  std::vector<int> fired;
  Owner o(&fired, 1);
  o.t.Bind<&Owner::Fire>(&o);
  q.Arm(o.t, 5);
  q.Clear();
  EXPECT_FALSE(o.t.armed());
  EXPECT_EQ(q.FireDue(100, 10), 0u);
  EXPECT_TRUE(fired.empty());
}

}  // namespace
}  // namespace ringmail::core
