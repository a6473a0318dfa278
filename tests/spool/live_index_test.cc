#include "spool/live_index.h"

#include "gtest/gtest.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool {
namespace {

using core::RecipientState;
using testing::TestId;

constexpr SegmentId kS1{0, 1};
constexpr SegmentId kS2{0, 2};
constexpr SegmentId kS3{0, 3};

SpoolLocation At(SegmentId segment, uint64_t offset, uint64_t bytes) {
  return SpoolLocation{segment, offset, bytes, offset + 100, bytes - 100};
}

std::vector<RecipientStatus> Pending(size_t n) { return std::vector<RecipientStatus>(n); }

TEST(LiveIndexTest, LiveBytesFollowMessages) {
  LiveIndex index;
  index.AddSegment(kS1, 0);
  index.NoteAppended(kS1, 1000);
  index.NoteAppended(kS1, 600);
  ASSERT_TRUE(index.AddMessage(TestId(1), At(kS1, 64, 1000), Pending(2)));
  ASSERT_TRUE(index.AddMessage(TestId(2), At(kS1, 1064, 600), Pending(1)));
  EXPECT_FALSE(index.AddMessage(TestId(2), At(kS1, 1064, 600), Pending(1)));
  const LiveIndex::SegmentStats* s = index.FindSegment(kS1);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->written_bytes, 1600u);
  EXPECT_EQ(s->live_bytes, 1600u);
  EXPECT_EQ(s->live_messages, 2u);
  EXPECT_EQ(index.size(), 2u);

  EXPECT_TRUE(index.MarkDone(TestId(2), kS1));
  EXPECT_FALSE(index.MarkDone(TestId(2), kS1));
  EXPECT_EQ(index.Find(TestId(2)), nullptr);
  EXPECT_EQ(s->live_bytes, 1000u);
  EXPECT_EQ(s->live_messages, 1u);
  EXPECT_EQ(index.FindSegment(kS2), nullptr);
}

TEST(LiveIndexTest, RecipientStatesAndAllFinal) {
  LiveIndex index;
  index.AddSegment(kS1, 0);
  ASSERT_TRUE(index.AddMessage(TestId(1), At(kS1, 64, 500), Pending(2)));
  EXPECT_FALSE(index.Find(TestId(1))->AllFinal());
  EXPECT_TRUE(index.UpdateRecipient(TestId(1), 0, {RecipientState::kDelivered, 1, 0}, kS1));
  EXPECT_TRUE(index.UpdateRecipient(TestId(1), 1, {RecipientState::kDeferred, 1, 9000}, kS1));
  EXPECT_FALSE(index.Find(TestId(1))->AllFinal());
  EXPECT_EQ(index.Find(TestId(1))->recipients[1].next_attempt_ms, 9000u);
  EXPECT_TRUE(index.UpdateRecipient(TestId(1), 1, {RecipientState::kFailed, 2, 0}, kS1));
  EXPECT_TRUE(index.Find(TestId(1))->AllFinal());
  EXPECT_FALSE(index.UpdateRecipient(TestId(7), 0, {}, kS1));
}

TEST(LiveIndexTest, RemovableSegmentsRespectActiveLiveAndPins) {
  LiveIndex index;
  index.AddSegment(kS1, 1000);
  index.AddSegment(kS2, 1000);
  index.AddSegment(kS3, 0);
  index.SetActiveSegment(kS3);
  ASSERT_TRUE(index.AddMessage(TestId(1), At(kS1, 64, 500), Pending(1)));
  ASSERT_TRUE(index.AddMessage(TestId(2), At(kS2, 64, 500), Pending(1)));
  EXPECT_TRUE(index.RemovableSegments().empty());

  // Message 1 finishes with its RECIPIENT and DONE records in segment 2, which also finishes.
  index.UpdateRecipient(TestId(1), 0, {RecipientState::kDelivered, 1, 0}, kS2);
  index.MarkDone(TestId(1), kS2);
  index.MarkDone(TestId(2), kS3);
  // Segment 2 holds the DONE of a message whose MESSAGE record is still in segment 1: removing
  // segment 2 first would resurrect message 1. Segment 3 is active.
  EXPECT_EQ(index.RemovableSegments(), (std::vector<SegmentId>{kS1}));
  index.RemoveSegment(kS1);
  // Segment 3 pins segment 2 (DONE of message 2), so 2 goes first.
  EXPECT_EQ(index.RemovableSegments(), (std::vector<SegmentId>{kS2}));
  index.RemoveSegment(kS2);
  EXPECT_TRUE(index.RemovableSegments().empty());  // only the active one is left
  EXPECT_EQ(index.segment_count(), 1u);
}

TEST(LiveIndexTest, CompactionCandidatesSparsestFirst) {
  LiveIndex index;
  index.AddSegment(kS1, 10000);
  index.AddSegment(kS2, 10000);
  index.AddSegment(kS3, 10000);
  index.SetActiveSegment(kS3);
  index.AddMessage(TestId(1), At(kS1, 64, 3000), Pending(1));
  index.AddMessage(TestId(2), At(kS2, 64, 1000), Pending(1));
  index.AddMessage(TestId(3), At(kS2, 1064, 500), Pending(1));
  index.AddMessage(TestId(4), At(kS3, 64, 200), Pending(1));
  EXPECT_EQ(index.CompactionCandidates(10), (std::vector<SegmentId>{}));
  EXPECT_EQ(index.CompactionCandidates(20), (std::vector<SegmentId>{kS2}));
  EXPECT_EQ(index.CompactionCandidates(50), (std::vector<SegmentId>{kS2, kS1}));
}

TEST(LiveIndexTest, RelocateLeavesAStaleCopyThatTheDonePins) {
  LiveIndex index;
  index.AddSegment(kS1, 1000);
  index.AddSegment(kS2, 0);
  index.SetActiveSegment(kS2);
  index.AddMessage(TestId(1), At(kS1, 64, 800), Pending(1));
  ASSERT_TRUE(index.Relocate(TestId(1), At(kS2, 64, 800)));
  EXPECT_EQ(index.FindSegment(kS1)->live_messages, 0u);
  EXPECT_EQ(index.FindSegment(kS2)->live_bytes, 800u);
  EXPECT_EQ(index.Find(TestId(1))->stale_copies, (std::vector<SegmentId>{kS1}));
  index.AddSegment(kS3, 0);
  index.SetActiveSegment(kS3);
  index.MarkDone(TestId(1), kS3);
  EXPECT_EQ(index.FindSegment(kS3)->pins.size(), 2u);  // the live copy and the stale one
  EXPECT_EQ(index.RemovableSegments(), (std::vector<SegmentId>{kS1, kS2}));
}

TEST(LiveIndexTest, LoadsARecoveredSpool) {
  testing::TempDir dir;
  core::Message a = testing::MakeMessage(1, 2, "A"), b = testing::MakeMessage(2, 1, "B");
  {
    testing::SegmentFileWriter s1(dir.path(), kS1);
    s1.AppendMessage(a);
    s1.AppendMessage(b);
    testing::SegmentFileWriter s2(dir.path(), kS2);
    s2.AppendRecipient(a.id, 0, RecipientState::kDelivered, 1, 10);
    s2.AppendDone(b.id);
  }
  absl::StatusOr<RecoveryResult> r = RecoverSpool(dir.path(), ReadOnlyRecoveryOptions());
  ASSERT_TRUE(r.ok());
  LiveIndex index;
  for (const SegmentReport& s : r->report.segments) index.AddRecoveredSegment(s);
  for (const RecoveredMessage& m : r->live) ASSERT_TRUE(index.AddMessage(m));
  ASSERT_EQ(index.size(), 1u);
  const LiveIndex::Entry* e = index.Find(a.id);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(e->recipients[1].state, RecipientState::kPending);
  EXPECT_EQ(index.FindSegment(kS1)->live_messages, 1u);
  EXPECT_EQ(index.FindSegment(kS1)->live_bytes, e->location.record_bytes);
  index.AddSegment(SegmentId{0, 3}, 0);
  index.SetActiveSegment(SegmentId{0, 3});
  EXPECT_TRUE(index.RemovableSegments().empty());  // 1 is live, 2 pins 1
  index.UpdateRecipient(a.id, 1, {RecipientState::kDelivered, 1, 0}, SegmentId{0, 3});
  index.MarkDone(a.id, SegmentId{0, 3});
  EXPECT_EQ(index.RemovableSegments(), (std::vector<SegmentId>{kS1}));
}

}  // namespace
}  // namespace ringmail::spool
