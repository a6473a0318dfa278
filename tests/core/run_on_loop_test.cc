// RunOnLoopAndWait: a blocking call onto another loop, from a plain thread and from another
// loop's thread (where the poster's pending wake-up must leave before it blocks), inline on
// the loop's own thread, and refused by a loop whose inbox is full or that has stopped.
#include "core/run_on_loop.h"

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

class RunOnLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
    a_ = Started("a");
    b_ = Started("b");
  }
  void TearDown() override {
    for (Loop* l : {a_.get(), b_.get()}) {
      if (l == nullptr) continue;
      l->RequestStop();
      l->Join();
    }
  }
  static std::unique_ptr<Loop> Started(const std::string& name) {
    LoopOptions o;
    o.name = name;
    auto loop = std::make_unique<Loop>(o);
    absl::Status s = loop->Start();
    EXPECT_TRUE(s.ok()) << s;
    return loop;
  }
  std::unique_ptr<Loop> a_, b_;
};

TEST_F(RunOnLoopTest, FromAPlainThreadRunsThereAndReturnsItsStatus) {
  bool on_b = false;
  absl::Status s = RunOnLoopAndWait(*b_, [&] {
    on_b = b_->IsCurrent();
    return absl::InvalidArgumentError("from b");
  });
  EXPECT_TRUE(on_b);
  EXPECT_EQ(s, absl::InvalidArgumentError("from b"));
}

// Loop a blocks in the call while b, idle in its ring wait, is woken only by a's MSG_RING:
// without the submit before blocking, neither would ever move again (the test would hang).
TEST_F(RunOnLoopTest, FromAnotherLoopTheWakeUpLeavesBeforeItBlocks) {
  absl::Status result = absl::UnknownError("not run");
  bool on_b = false;
  absl::Notification done;
  ASSERT_EQ(a_->Post([&] {
    result = RunOnLoopAndWait(*b_, [&] {
      on_b = b_->IsCurrent();
      return absl::OkStatus();
    });
    done.Notify();
  }), PostResult::kOk);
  done.WaitForNotification();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_TRUE(on_b);
}

TEST_F(RunOnLoopTest, OnTheLoopItselfRunsInline) {
  absl::Notification done;
  bool inline_run = false;
  ASSERT_EQ(b_->Post([&] {
    int depth = 0;
    absl::Status s = RunOnLoopAndWait(*b_, [&] {
      ++depth;
      return absl::OkStatus();
    });
    inline_run = s.ok() && depth == 1;  // ran before the call returned, on this thread
    done.Notify();
  }), PostResult::kOk);
  done.WaitForNotification();
  EXPECT_TRUE(inline_run);
}

TEST_F(RunOnLoopTest, AFullInboxIsUnavailableAndNothingRuns) {
  LoopOptions o;
  o.name = "full";
  o.inbox_capacity = 8;
  Loop full(o);  // not started: nothing drains its inbox
  while (full.Post([] {}) == PostResult::kOk) {
  }
  bool ran = false;
  absl::Status s = RunOnLoopAndWait(full, [&] {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("full inbox"), absl::string_view::npos) << s;
  EXPECT_FALSE(ran);
}

TEST_F(RunOnLoopTest, AStoppedLoopIsUnavailable) {
  b_->RequestStop();
  b_->Join();
  bool ran = false;
  absl::Status s = RunOnLoopAndWait(*b_, [&] {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_FALSE(ran);
  b_.reset();
}

}  // namespace
}  // namespace ringmail::core
