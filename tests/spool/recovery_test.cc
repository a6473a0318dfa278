#include "spool/recovery.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "gtest/gtest.h"
#include "spool/segment_reader.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool {
namespace {

using core::RecipientState;
using testing::FileExists;
using testing::FlipByte;
using testing::MakeMessage;
using testing::SegmentFileWriter;
using testing::TempDir;
using testing::TestId;

const RecoveredMessage* FindLive(const RecoveryResult& r, const core::MessageId& id) {
  for (const RecoveredMessage& m : r.live) {
    if (m.message.id == id) return &m;
  }
  return nullptr;
}

const SegmentReport* FindSegment(const RecoveryResult& r, SegmentId id) {
  for (const SegmentReport& s : r.report.segments) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

RecoveryResult Recover(const std::string& dir, const RecoveryOptions& options = {}) {
  absl::StatusOr<RecoveryResult> r = RecoverSpool(dir, options);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : RecoveryResult{};
}

class RecoveryTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(RecoveryTest, MissingDirectoryIsAnError) {
  EXPECT_EQ(RecoverSpool(dir_.path() + "/nope", {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RecoveryTest, EmptySpool) {
  RecoveryResult r = Recover(dir_.path());
  EXPECT_EQ(r.report.segments_scanned, 0u);
  EXPECT_TRUE(r.live.empty());
  EXPECT_TRUE(r.report.loops.empty());
}

TEST_F(RecoveryTest, LiveSetDoneAndRecipientUpdates) {
  core::Message a = MakeMessage(1, 3, "Subject: a\r\n\r\nA\r\n");
  core::Message b = MakeMessage(2, 1, "Subject: b\r\n\r\nB\r\n");
  core::Message c = MakeMessage(3, 2, "Subject: c\r\n\r\nC\r\n");
  uint64_t a_at, c_at;
  {
    SegmentFileWriter s1(dir_.path(), SegmentId{0, 1});
    a_at = s1.AppendMessage(a);
    s1.AppendMessage(b);
    s1.AppendRecipient(a.id, 0, RecipientState::kDeferred, 1, 100, "451 later");
    s1.AppendRecipient(b.id, 0, RecipientState::kDelivered, 1, 100, "250 ok");
    s1.AppendDone(b.id);
  }
  {
    SegmentFileWriter s2(dir_.path(), SegmentId{0, 2});
    c_at = s2.AppendMessage(c);
    s2.AppendRecipient(a.id, 0, RecipientState::kDelivered, 2, 200, "250 ok");
    s2.AppendRecipient(a.id, 1, RecipientState::kFailed, 1, 210, "550 no such user");
    // An older deferral written after the final state (e.g. from another loop) loses.
    s2.AppendRecipient(a.id, 1, RecipientState::kDeferred, 1, 300);
    s2.AppendRecipient(c.id, 1, RecipientState::kDeferred, 1, 400);
  }
  RecoveryResult r = Recover(dir_.path());
  EXPECT_EQ(r.report.segments_scanned, 2u);
  EXPECT_EQ(r.report.records, 10u);
  EXPECT_EQ(r.report.live_messages, 2u);
  EXPECT_EQ(r.report.done_messages, 1u);
  ASSERT_EQ(r.live.size(), 2u);
  EXPECT_EQ(r.live[0].message.id, a.id);  // scan order
  EXPECT_EQ(r.live[1].message.id, c.id);
  EXPECT_EQ(FindLive(r, b.id), nullptr);

  const CommittedMessage& ra = FindLive(r, a.id)->message;
  EXPECT_TRUE(ra.recovered);
  EXPECT_EQ(ra.envelope.mail_from, a.envelope.mail_from);
  EXPECT_EQ(ra.envelope.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(ra.envelope.recipients[0].attempts, 2u);
  EXPECT_EQ(ra.envelope.recipients[1].state, RecipientState::kFailed);
  EXPECT_EQ(ra.envelope.recipients[2].state, RecipientState::kPending);
  EXPECT_EQ(ra.location.segment, (SegmentId{0, 1}));
  EXPECT_EQ(ra.location.record_offset, a_at);
  EXPECT_EQ(ra.received_header_length, a.received_header.size());

  const CommittedMessage& rc = FindLive(r, c.id)->message;
  EXPECT_EQ(rc.envelope.recipients[1].state, RecipientState::kDeferred);
  EXPECT_EQ(rc.envelope.recipients[1].next_attempt_ms, 400u + 60000u);
  EXPECT_EQ(rc.location.record_offset, c_at);

  // The location names exactly the delivered bytes.
  SegmentReader reader;
  ASSERT_EQ(reader.Open(SegmentPath(dir_.path(), rc.location.segment)).result,
            SegmentOpenResult::kOk);
  std::string content;
  ASSERT_TRUE(reader.ReadAt(rc.location.content_offset, rc.location.content_length, &content).ok());
  EXPECT_EQ(content, c.received_header + c.body.ToString());

  // Segment 2's state records about message a pin segment 1.
  const SegmentReport* s2 = FindSegment(r, SegmentId{0, 2});
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(s2->pins, (std::vector<SegmentId>{SegmentId{0, 1}}));
  EXPECT_TRUE(s2->newest_in_loop);
  EXPECT_EQ(s2->end.kind, SegmentEnd::kClean);

  ASSERT_EQ(r.report.loops.size(), 1u);
  EXPECT_EQ(r.report.loops[0].loop, 0u);
  EXPECT_EQ(r.report.loops[0].last_seq, 2u);
  EXPECT_EQ(r.report.loops[0].next_seq, 3u);
  EXPECT_EQ(r.report.loops[0].append_offset, s2->valid_bytes);
  EXPECT_TRUE(r.report.loops[0].append_safe);
}

TEST_F(RecoveryTest, TornTailStopsTheSegmentButLaterSegmentsAreRead) {
  core::Message a = MakeMessage(1, 1, "A"), b = MakeMessage(2, 1, "B"), c = MakeMessage(3, 1, "C");
  uint64_t b_at;
  {
    SegmentFileWriter s1(dir_.path(), SegmentId{0, 1});
    s1.AppendMessage(a);
    b_at = s1.AppendMessage(b);
    s1.AppendDone(a.id);
    SegmentFileWriter s2(dir_.path(), SegmentId{0, 2});
    s2.AppendMessage(c);
  }
  FlipByte(SegmentPath(dir_.path(), SegmentId{0, 1}), b_at + 40);
  RecoveryResult r = Recover(dir_.path(), ReadOnlyRecoveryOptions());
  // b is damaged and the DONE of a after it is valid: corruption, and the scan of segment 1
  // stops at b (the DONE is not applied: a stays live). Segment 2 is still read.
  const SegmentReport* s1 = FindSegment(r, SegmentId{0, 1});
  ASSERT_NE(s1, nullptr);
  EXPECT_EQ(s1->end.kind, SegmentEnd::kCorrupt);
  EXPECT_EQ(s1->end.offset, b_at);
  EXPECT_EQ(s1->records, 1u);
  EXPECT_NE(FindLive(r, a.id), nullptr);
  EXPECT_EQ(FindLive(r, b.id), nullptr);
  EXPECT_NE(FindLive(r, c.id), nullptr);
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kCorrupt), 1u);

  // Now damage the last record of segment 1 instead: a torn tail, same stop rule.
  TempDir other;
  uint64_t done_at;
  {
    SegmentFileWriter s1(other.path(), SegmentId{0, 1});
    s1.AppendMessage(a);
    s1.AppendMessage(b);
    done_at = s1.AppendDone(a.id);
    SegmentFileWriter s2(other.path(), SegmentId{0, 2});
    s2.AppendMessage(c);
  }
  FlipByte(SegmentPath(other.path(), SegmentId{0, 1}), done_at + 30);
  r = Recover(other.path(), ReadOnlyRecoveryOptions());
  s1 = FindSegment(r, SegmentId{0, 1});
  EXPECT_EQ(s1->end.kind, SegmentEnd::kTornTail);
  EXPECT_EQ(s1->end.offset, done_at);
  EXPECT_FALSE(s1->newest_in_loop);
  EXPECT_EQ(r.live.size(), 3u);
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kTornTail), 1u);
}

TEST_F(RecoveryTest, SealsTheTornTailOfTheNewestSegment) {
  core::Message a = MakeMessage(1, 1, "A"), b = MakeMessage(2, 1, "B");
  std::string path = SegmentPath(dir_.path(), SegmentId{0, 1});
  uint64_t b_at;
  {
    SegmentFileWriter s1(dir_.path(), SegmentId{0, 1});
    s1.AppendMessage(a);
    std::string rec = EncodeMessage(b)->Flatten();
    b_at = s1.Append(std::string_view(rec).substr(0, rec.size() / 2));  // an interrupted write
  }
  std::string before = testing::ReadFileBytes(path);
  RecoveryResult ro = Recover(dir_.path(), ReadOnlyRecoveryOptions());
  EXPECT_EQ(testing::ReadFileBytes(path), before);  // read-only means read-only
  EXPECT_FALSE(ro.report.loops[0].append_safe);

  RecoveryResult r = Recover(dir_.path());
  const SegmentReport* s1 = FindSegment(r, SegmentId{0, 1});
  ASSERT_NE(s1, nullptr);
  EXPECT_EQ(s1->end.kind, SegmentEnd::kTornTail);
  EXPECT_EQ(s1->end.offset, b_at);
  EXPECT_TRUE(s1->newest_in_loop);
  EXPECT_TRUE(s1->sealed) << s1->seal_error;
  EXPECT_TRUE(r.report.loops[0].append_safe);
  EXPECT_EQ(r.report.loops[0].append_offset, b_at);
  EXPECT_EQ(r.live.size(), 1u);
  std::string after = testing::ReadFileBytes(path);
  EXPECT_EQ(after.size(), before.size());
  EXPECT_EQ(after.substr(0, b_at), before.substr(0, b_at));
  EXPECT_EQ(after.find_first_not_of('\0', b_at), std::string::npos);

  r = Recover(dir_.path());
  EXPECT_EQ(FindSegment(r, SegmentId{0, 1})->end.kind, SegmentEnd::kClean);
}

TEST_F(RecoveryTest, QuarantinesUnreadableSegments) {
  core::Message a = MakeMessage(1, 1, "A");
  { SegmentFileWriter s1(dir_.path(), SegmentId{0, 1}); s1.AppendMessage(a); }
  testing::MakeDirs(dir_.path() + "/0");
  std::string garbage = SegmentPath(dir_.path(), SegmentId{0, 2});
  testing::WriteFileBytes(garbage, std::string(5000, 'Z'));
  // A segment whose header names another place.
  {
    SegmentFileWriter s3(dir_.path(), SegmentId{0, 3});
    s3.AppendMessage(MakeMessage(3, 1, "C"));
  }
  std::string moved_from = SegmentPath(dir_.path(), SegmentId{0, 3});
  std::string misplaced = SegmentPath(dir_.path(), SegmentId{0, 4});
  ASSERT_EQ(::rename(moved_from.c_str(), misplaced.c_str()), 0);

  RecoveryResult r = Recover(dir_.path());
  ASSERT_EQ(r.report.quarantined.size(), 2u);
  const QuarantinedSegment& q = r.report.quarantined[0];
  EXPECT_EQ(q.id, (SegmentId{0, 2}));
  EXPECT_NE(q.reason.find("bad magic"), std::string::npos) << q.reason;
  EXPECT_EQ(q.quarantine_path, dir_.path() + "/quarantine/0-000000000002.seg");
  EXPECT_FALSE(FileExists(garbage));
  EXPECT_TRUE(FileExists(q.quarantine_path));
  EXPECT_NE(r.report.quarantined[1].reason.find("names 0/000000000003.seg"), std::string::npos)
      << r.report.quarantined[1].reason;
  EXPECT_EQ(r.live.size(), 1u);
  EXPECT_EQ(r.report.loops[0].next_seq, 5u);  // numbers of quarantined files are not reused
  EXPECT_FALSE(r.report.loops[0].append_safe);

  // A second bad file with the same name gets a distinct quarantine name.
  testing::WriteFileBytes(garbage, "junk");
  r = Recover(dir_.path());
  ASSERT_EQ(r.report.quarantined.size(), 1u);
  EXPECT_EQ(r.report.quarantined[0].quarantine_path,
            dir_.path() + "/quarantine/0-000000000002.seg.1");
  EXPECT_NE(r.report.quarantined[0].reason.find("truncated header"), std::string::npos);
}

TEST_F(RecoveryTest, ReadOnlyDoesNotMoveAnything) {
  testing::MakeDirs(dir_.path() + "/0");
  std::string garbage = SegmentPath(dir_.path(), SegmentId{0, 1});
  testing::WriteFileBytes(garbage, std::string(100, 'Z'));
  RecoveryResult r = Recover(dir_.path(), ReadOnlyRecoveryOptions());
  ASSERT_EQ(r.report.quarantined.size(), 1u);
  EXPECT_TRUE(r.report.quarantined[0].quarantine_path.empty());
  EXPECT_TRUE(FileExists(garbage));
  EXPECT_FALSE(FileExists(dir_.path() + "/quarantine"));
}

TEST_F(RecoveryTest, EmptySegmentsAndIgnoredEntries) {
  testing::MakeDirs(dir_.path() + "/1");
  testing::MakeDirs(dir_.path() + "/notaloop");
  testing::WriteFileBytes(dir_.path() + "/README", "hi");
  testing::WriteFileBytes(SegmentPath(dir_.path(), SegmentId{1, 7}), std::string(4096, '\0'));
  testing::WriteFileBytes(dir_.path() + "/1/7.seg", "not canonical");
  testing::WriteFileBytes(dir_.path() + "/1/000000000008.seg.tmp", "temp");
  RecoveryResult r = Recover(dir_.path());
  ASSERT_EQ(r.report.segments.size(), 1u);
  EXPECT_TRUE(r.report.segments[0].empty);
  EXPECT_TRUE(r.report.quarantined.empty());
  std::vector<std::string> ignored = r.report.ignored;
  std::sort(ignored.begin(), ignored.end());
  EXPECT_EQ(ignored, (std::vector<std::string>{"1/000000000008.seg.tmp", "1/7.seg", "README",
                                               "notaloop"}));
  ASSERT_EQ(r.report.loops.size(), 1u);
  EXPECT_EQ(r.report.loops[0].loop, 1u);
  EXPECT_EQ(r.report.loops[0].next_seq, 8u);
  EXPECT_FALSE(r.report.loops[0].append_safe);
}

TEST_F(RecoveryTest, DuplicateMessageCopiesMerge) {
  core::Message a = MakeMessage(1, 2, "A");
  uint64_t copy_at;
  {
    SegmentFileWriter s1(dir_.path(), SegmentId{0, 1});
    s1.AppendMessage(a);
    s1.AppendRecipient(a.id, 0, RecipientState::kDelivered, 1, 100);
    SegmentFileWriter s2(dir_.path(), SegmentId{0, 2});
    // The compaction copy carries the states known when it was made.
    a.envelope.recipients[0].state = RecipientState::kDelivered;
    a.envelope.recipients[0].attempts = 1;
    copy_at = s2.AppendMessage(a);
    s2.AppendRecipient(a.id, 1, RecipientState::kDeferred, 1, 200);
  }
  RecoveryResult r = Recover(dir_.path());
  EXPECT_EQ(r.report.duplicate_messages, 1u);
  ASSERT_EQ(r.live.size(), 1u);
  const RecoveredMessage& m = r.live[0];
  EXPECT_EQ(m.message.location.segment, (SegmentId{0, 2}));
  EXPECT_EQ(m.message.location.record_offset, copy_at);
  ASSERT_EQ(m.stale_copies.size(), 1u);
  EXPECT_EQ(m.stale_copies[0].segment, (SegmentId{0, 1}));
  EXPECT_EQ(m.message.envelope.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(m.message.envelope.recipients[1].state, RecipientState::kDeferred);
}

TEST_F(RecoveryTest, StateRecordsAcrossLoopDirectories) {
  core::Message a = MakeMessage(1, 2, "A"), b = MakeMessage(2, 1, "B");
  {
    // Loop 1 adopted loop 0's messages after a reconfiguration; its directory sorts first
    // only by number, not by time, and recovery must not care.
    SegmentFileWriter s0(dir_.path(), SegmentId{0, 1});
    s0.AppendMessage(a);
    s0.AppendMessage(b);
    SegmentFileWriter s1(dir_.path(), SegmentId{1, 1});
    s1.AppendRecipient(a.id, 1, RecipientState::kDelivered, 1, 100);
    s1.AppendDone(b.id);
    s1.AppendDone(TestId(99));  // for a message whose segment is long gone
    s1.AppendRecipient(a.id, 5, RecipientState::kDelivered, 1, 100);  // no such recipient
  }
  RecoveryResult r = Recover(dir_.path());
  ASSERT_EQ(r.live.size(), 1u);
  EXPECT_EQ(r.live[0].message.envelope.recipients[1].state, RecipientState::kDelivered);
  EXPECT_EQ(r.report.orphan_records, 1u);
  EXPECT_EQ(r.report.inconsistencies, 1u);
  EXPECT_EQ(FindSegment(r, SegmentId{1, 1})->pins, (std::vector<SegmentId>{SegmentId{0, 1}}));
  EXPECT_EQ(r.report.loops.size(), 2u);
}

TEST_F(RecoveryTest, KeepDoneAndObserver) {
  core::Message a = MakeMessage(1, 1, "A");
  {
    SegmentFileWriter s1(dir_.path(), SegmentId{0, 1});
    s1.AppendMessage(a);
    s1.AppendDone(a.id);
  }
  RecoveryOptions options = ReadOnlyRecoveryOptions();
  options.keep_done = true;
  std::vector<std::pair<SegmentId, RecordType>> seen;
  options.observer = [&seen](SegmentId id, const ScannedRecord& rec) {
    seen.emplace_back(id, rec.header.type);
  };
  RecoveryResult r = Recover(dir_.path(), options);
  EXPECT_TRUE(r.live.empty());
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_EQ(r.done[0].message.id, a.id);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].second, RecordType::kMessage);
  EXPECT_EQ(seen[1].second, RecordType::kDone);
  EXPECT_NE(r.report.Summary().find("1 done"), std::string::npos) << r.report.Summary();
}

}  // namespace
}  // namespace ringmail::spool
