// DomainQueue and MakeWorks: splitting jobs into transactions, ready vs delayed, promotion
// by time, flush, the brake window, counters.
#include "delivery/domain_queue.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

DeliveryJob Job(size_t recipients, uint32_t owner = 0) {
  DeliveryJob job;
  job.id = core::MessageId{1, 2};
  job.received_ms = 1000;
  job.mail_from = "a@b.test";
  job.domain = "d.test";
  job.segment_path = "/spool/0/000000000001.seg";
  job.content_offset = 64;
  job.content_length = 10;
  job.owner_loop = owner;
  for (uint32_t i = 0; i < recipients; ++i) {
    job.recipients.push_back({i, "r" + std::to_string(i) + "@d.test", "", 0, 0});
  }
  return job;
}

std::vector<uint32_t> Indices(const Work& w) {
  std::vector<uint32_t> out;
  for (const auto& r : w.recipients) out.push_back(r.index);
  return out;
}

bool NeverBraked(uint32_t) { return false; }

TEST(MakeWorksTest, SplitsAtTheRecipientCapInEnvelopeOrder) {
  std::vector<Work> works = MakeWorks(Job(5), 5000, 2);
  ASSERT_EQ(works.size(), 3u);
  EXPECT_EQ(Indices(works[0]), (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(Indices(works[1]), (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(Indices(works[2]), (std::vector<uint32_t>{4}));
  for (const Work& w : works) {
    EXPECT_EQ(w.due_ms, 0u);
    EXPECT_EQ(w.message, works[0].message);  // shared, not copied
  }
  EXPECT_EQ(works[0].message->segment_path, "/spool/0/000000000001.seg");
  EXPECT_EQ(works[0].message->content_offset, 64u);
}

TEST(MakeWorksTest, GroupsLaterRecipientsByTheirNextAttempt) {
  DeliveryJob job = Job(4);
  job.recipients[1].next_attempt_ms = 9000;
  job.recipients[2].next_attempt_ms = 4000;  // already due at 5000
  job.recipients[3].next_attempt_ms = 9000;
  std::vector<Work> works = MakeWorks(std::move(job), 5000, 100);
  ASSERT_EQ(works.size(), 2u);
  EXPECT_EQ(works[0].due_ms, 0u);
  EXPECT_EQ(Indices(works[0]), (std::vector<uint32_t>{0, 2}));
  EXPECT_EQ(works[1].due_ms, 9000u);
  EXPECT_EQ(Indices(works[1]), (std::vector<uint32_t>{1, 3}));
}

// One group that fits one transaction (every new message) is one Work: all its recipients in
// envelope order, due now or, when all wait for the same retry time, due then. An empty job
// gives nothing.
TEST(MakeWorksTest, OneWorkWhenAllAreDueTogether) {
  std::vector<Work> works = MakeWorks(Job(3), 5000, 3);
  ASSERT_EQ(works.size(), 1u);
  EXPECT_EQ(works[0].due_ms, 0u);
  EXPECT_EQ(Indices(works[0]), (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(works[0].recipients[2].address, "r2@d.test");
  EXPECT_EQ(works[0].message->mail_from, "a@b.test");

  DeliveryJob later = Job(2);
  later.recipients[0].next_attempt_ms = 9000;
  later.recipients[1].next_attempt_ms = 9000;
  works = MakeWorks(std::move(later), 5000, 100);
  ASSERT_EQ(works.size(), 1u);
  EXPECT_EQ(works[0].due_ms, 9000u);
  EXPECT_EQ(Indices(works[0]), (std::vector<uint32_t>{0, 1}));

  EXPECT_TRUE(MakeWorks(Job(0), 5000, 1).empty());
}

TEST(DomainQueueTest, ReadyAndDelayedByTime) {
  DomainQueue q("d.test");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.NextDueMs(), UINT64_MAX);
  std::vector<Work> works = MakeWorks(Job(3), 5000, 1);
  works[1].due_ms = 7000;
  works[2].due_ms = 6000;
  for (Work& w : works) q.File(std::move(w), 5000);
  EXPECT_EQ(q.ready_recipients(), 1u);
  EXPECT_EQ(q.delayed_recipients(), 2u);
  EXPECT_EQ(q.NextDueMs(), 6000u);
  EXPECT_EQ(q.PromoteDue(5999), 0u);
  EXPECT_EQ(q.PromoteDue(6000), 1u);
  EXPECT_EQ(q.NextDueMs(), 7000u);
  std::optional<Work> a = q.TakeReady(NeverBraked);
  std::optional<Work> b = q.TakeReady(NeverBraked);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(Indices(*a), std::vector<uint32_t>{0});
  EXPECT_EQ(Indices(*b), std::vector<uint32_t>{2});  // promoted at 6000
  EXPECT_FALSE(q.TakeReady(NeverBraked).has_value());
  EXPECT_EQ(q.FlushDelayed(), 1u);
  EXPECT_EQ(q.ready_recipients(), 1u);
  EXPECT_EQ(q.delayed_recipients(), 0u);
  EXPECT_EQ(q.OldestReceivedMs(), 1000u);
  EXPECT_EQ(q.TakeAllReady().size(), 1u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.OldestReceivedMs(), 0u);
}

TEST(DomainQueueTest, TakeReadySkipsBrakedOwnersWithinItsWindow) {
  DomainQueue q("d.test");
  for (Work& w : MakeWorks(Job(1, /*owner=*/1), 0, 100)) q.File(std::move(w), 0);
  for (Work& w : MakeWorks(Job(1, /*owner=*/2), 0, 100)) q.File(std::move(w), 0);
  auto braked = [](uint32_t owner) { return owner == 1; };
  std::optional<Work> w = q.TakeReady(braked);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->message->owner_loop, 2u);
  EXPECT_FALSE(q.TakeReady(braked).has_value());
  EXPECT_EQ(q.ready_works(), 1u);
  // Beyond the window a braked head hides the rest: bounded work per pick.
  DomainQueue deep("d.test");
  for (size_t i = 0; i < kBrakeScanMax; ++i) {
    for (Work& x : MakeWorks(Job(1, 1), 0, 100)) deep.File(std::move(x), 0);
  }
  for (Work& x : MakeWorks(Job(1, 2), 0, 100)) deep.File(std::move(x), 0);
  EXPECT_FALSE(deep.TakeReady(braked).has_value());
  EXPECT_EQ(deep.ready_works(), kBrakeScanMax + 1);
}

}  // namespace
}  // namespace ringmail::delivery
