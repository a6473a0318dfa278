// Segment recycling, the file side: records bound to one life of one segment (format 2), the
// reader telling an earlier life's bytes from a torn write, and recovery at every crash point
// of the recycle step (spool/segment_writer.h Recycle), with the files built by hand exactly
// as a crash would leave them.
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"
#include "spool/record.h"
#include "spool/recovery.h"
#include "spool/segment_format.h"
#include "spool/segment_reader.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool::recycle_format_test {
namespace {

using testing::FileExists;
using testing::MakeMessage;
using testing::OverwriteAt;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::TestId;

constexpr uint32_t kLoop = 3;
constexpr uint64_t kFileBytes = 256 * 1024;

SegmentHeader HeaderV2(uint64_t seq, uint32_t flags = 0) {
  return SegmentHeader{kLoop, seq, 1700000000000ull, kFileBytes, kSegmentFormatVersion2, flags};
}

std::string MessageRecord(uint64_t n, RecordLife life, size_t body_bytes = 700) {
  std::string body(body_bytes, static_cast<char>('a' + n % 26));
  const core::Message message = MakeMessage(n, 2, body);  // the record views into it
  absl::StatusOr<EncodedRecord> rec = EncodeMessage(message, life);
  EXPECT_TRUE(rec.ok()) << rec.status();
  return rec.ok() ? rec->Flatten() : "";
}

std::string DoneRecord(uint64_t n, RecordLife life) {
  return EncodeDone(DoneMark{TestId(n), 1000 + n}, life);
}

// Writes a whole segment file: header, then records from kSegmentHeaderBytes, then zeros to
// kFileBytes. Returns the end of the records.
uint64_t WriteSegment(const std::string& path, const SegmentHeader& header,
                      const std::vector<std::string>& records) {
  std::string bytes = EncodeSegmentHeader(header);
  for (const std::string& r : records) bytes += r;
  const uint64_t end = bytes.size();
  bytes.resize(kFileBytes, '\0');
  testing::WriteFileBytes(path, bytes);
  return end;
}

// What a recycle leaves before it appends anything: the old life's file with a new header.
void ReplaceHeader(const std::string& path, const SegmentHeader& header) {
  OverwriteAt(path, 0, EncodeSegmentHeader(header));
}

bool HasLive(const RecoveryResult& r, uint64_t n) {
  for (const RecoveredMessage& m : r.live) {
    if (m.message.id == TestId(n)) return true;
  }
  return false;
}

TEST(RecordLifeTest, AStaleRecordOfAnEarlierLifeFailsAndTheRightLifeAccepts) {
  const RecordLife old_life = LifeOf(HeaderV2(5));
  const RecordLife new_life = LifeOf(HeaderV2(9));
  ASSERT_EQ(old_life.version, kRecordVersionBound);
  ASSERT_NE(old_life.key, new_life.key);
  for (const std::string& rec :
       {MessageRecord(1, old_life), DoneRecord(1, old_life),
        EncodeRecipient(RecipientUpdate{TestId(1), 1, core::RecipientState::kDelivered, 1, 0,
                                        5, "250 ok"},
                        old_life)}) {
    DecodedRecord d;
    EXPECT_TRUE(DecodeRecord(rec, &d, old_life).ok());
    EXPECT_EQ(DecodeRecord(rec, &d, new_life).error, RecordError::kBadHeaderCrc);
    EXPECT_EQ(DecodeRecord(rec, &d, RecordLife{}).error, RecordError::kBadHeaderCrc);
    RecordHeader h;
    EXPECT_EQ(DecodeRecordHeader(rec, &h, new_life).error, RecordError::kBadHeaderCrc);
    // The key is the only difference: re-bound, the same bytes belong to the new life.
    std::string rebound = rec;
    BindRecord(rebound.data(), old_life.key, new_life.key);
    EXPECT_TRUE(DecodeRecord(rebound, &d, new_life).ok());
    EXPECT_FALSE(DecodeRecord(rebound, &d, old_life).ok());
  }
  // A version-1 record left in a file that is now format 2 does not belong either.
  const std::string v1 = MessageRecord(2, RecordLife{});
  DecodedRecord d;
  EXPECT_TRUE(DecodeRecord(v1, &d).ok());
  EXPECT_FALSE(DecodeRecord(v1, &d, new_life).ok());
  // Unbound format 2 (key 0) is version 2 all the same: not readable as version 1.
  EXPECT_EQ(DecodeRecord(MessageRecord(3, RecordLife{kRecordVersionBound, 0}), &d).error,
            RecordError::kBadVersion);
}

TEST(RecordLifeTest, KeysOfOneLoopDifferForEverySequence) {
  std::set<uint32_t> keys;
  for (uint64_t seq = 1; seq <= 200000; ++seq) keys.insert(LifeKey(SegmentId{kLoop, seq}));
  EXPECT_EQ(keys.size(), 200000u);
  EXPECT_EQ(LifeOf(SegmentHeader{kLoop, 7, 0, kFileBytes}), RecordLife{});  // version 1
}

TEST(RecordLifeTest, ValidatedRecordsPickTheirSegmentsFormat) {
  const SegmentId id{kLoop, 12};
  const std::string v2 = MessageRecord(4, LifeOf(HeaderV2(12)));
  const std::string v1 = MessageRecord(4, RecordLife{});
  DecodedRecord d;
  EXPECT_TRUE(DecodeRecord(v2, &d, LifeOfValidatedRecord(id, v2)).ok());
  EXPECT_TRUE(DecodeRecord(v1, &d, LifeOfValidatedRecord(id, v1)).ok());
  EXPECT_EQ(LifeOfValidatedRecord(id, ""), RecordLife{});
}

TEST(SegmentHeaderV2Test, FlagsAndVersionsRoundTrip) {
  for (uint32_t flags : {0u, kSegmentFlagRecycled}) {
    const SegmentHeader h = HeaderV2(40, flags);
    SegmentHeader out;
    ASSERT_EQ(DecodeSegmentHeader(EncodeSegmentHeader(h), &out), SegmentHeaderError::kNone);
    EXPECT_EQ(out, h);
  }
  SegmentHeader v1{kLoop, 40, 1, kFileBytes};
  SegmentHeader out;
  ASSERT_EQ(DecodeSegmentHeader(EncodeSegmentHeader(v1), &out), SegmentHeaderError::kNone);
  EXPECT_EQ(out.version, kSegmentFormatVersion1);
  // A flag the version does not have, with a valid CRC: refused.
  auto with_flags = [](const SegmentHeader& h, uint32_t flags) {
    std::string bytes = EncodeSegmentHeader(h);
    internal::StoreU32At(&bytes, 48, flags);
    internal::StoreU32At(&bytes, 60, Crc32c(std::string_view(bytes).substr(0, 60)));
    return bytes;
  };
  EXPECT_EQ(DecodeSegmentHeader(with_flags(v1, kSegmentFlagRecycled), &out),
            SegmentHeaderError::kBadField);
  EXPECT_EQ(DecodeSegmentHeader(with_flags(HeaderV2(1), 2), &out), SegmentHeaderError::kBadField);
  EXPECT_EQ(DecodeSegmentHeader(with_flags(HeaderV2(1), kSegmentFlagRecycled), &out),
            SegmentHeaderError::kNone);
  EXPECT_EQ(RecycleFileName(17), "000000000017.recycle");
  EXPECT_EQ(ParseRecycleFileName("000000000017.recycle"), 17u);
  EXPECT_EQ(ParseRecycleFileName("000000000017.seg"), std::nullopt);
  EXPECT_EQ(ParseRecycleFileName(".recycle"), std::nullopt);
  EXPECT_EQ(RecyclePath("/var/spool", SegmentId{2, 5}), "/var/spool/2/000000000005.recycle");
}

class RecycledFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeDirs(LoopDirPath(spool_, kLoop));
    path_ = SegmentPath(spool_, SegmentId{kLoop, 9});
    // Life 5: five messages, larger than what life 9 writes over them.
    const RecordLife old_life = LifeOf(HeaderV2(5));
    std::vector<std::string> old_records;
    for (uint64_t n = 100; n < 105; ++n) old_records.push_back(MessageRecord(n, old_life, 3000));
    WriteSegment(path_, HeaderV2(5), old_records);
  }

  // Life 9 written over it: its header, then `count` records from the start.
  uint64_t WriteNewLife(uint32_t flags, size_t count) {
    ReplaceHeader(path_, HeaderV2(9, flags));
    uint64_t at = kSegmentHeaderBytes;
    for (size_t i = 0; i < count; ++i) {
      const std::string rec = MessageRecord(200 + i, LifeOf(HeaderV2(9)), 100);
      OverwriteAt(path_, at, rec);
      at += rec.size();
    }
    return at;
  }

  struct Read {
    std::vector<core::MessageId> ids;
    SegmentEndInfo end;
  };
  Read ReadAll() {
    Read out;
    SegmentReader reader;
    EXPECT_EQ(reader.Open(path_).result, SegmentOpenResult::kOk);
    ScannedRecord rec;
    while (reader.Next(&rec)) out.ids.push_back(std::get<MessageMeta>(rec.meta).id);
    out.end = reader.end();
    return out;
  }

  TempDir dir_;
  std::string spool_ = dir_.path() + "/spool";
  std::string path_;
};

TEST_F(RecycledFileTest, EarlierLifeEndsTheSegmentCleanly) {
  const uint64_t end = WriteNewLife(kSegmentFlagRecycled, 2);
  Read r = ReadAll();
  ASSERT_EQ(r.ids.size(), 2u);
  EXPECT_EQ(r.ids[0], TestId(200));
  EXPECT_EQ(r.ids[1], TestId(201));
  EXPECT_EQ(r.end.kind, SegmentEnd::kClean) << r.end.detail;
  EXPECT_EQ(r.end.offset, end);
  EXPECT_NE(r.end.detail.find("earlier life"), std::string::npos) << r.end.detail;
}

// The same bytes without the recycled flag: something non-zero after the last record of a
// fresh segment is a torn write — the flag is what makes the difference.
TEST_F(RecycledFileTest, WithoutTheFlagTheSameBytesAreATornTail) {
  WriteNewLife(0, 2);
  Read r = ReadAll();
  EXPECT_EQ(r.ids.size(), 2u);
  EXPECT_EQ(r.end.kind, SegmentEnd::kTornTail);
}

// A record of this life whose body was torn is a torn tail, recycled file or not.
TEST_F(RecycledFileTest, ATornRecordOfThisLifeIsStillATornTail) {
  const uint64_t end = WriteNewLife(kSegmentFlagRecycled, 3);
  const std::string third = MessageRecord(202, LifeOf(HeaderV2(9)), 100);
  testing::FlipByte(path_, end - third.size() + kRecordHeaderBytes + 20);
  Read r = ReadAll();
  EXPECT_EQ(r.ids.size(), 2u);
  EXPECT_EQ(r.end.kind, SegmentEnd::kTornTail);
}

// Damage in the middle with a record of this life after it is still corruption.
TEST_F(RecycledFileTest, AValidRecordOfThisLifeAfterDamageIsCorrupt) {
  WriteNewLife(kSegmentFlagRecycled, 3);
  testing::FlipByte(path_, kSegmentHeaderBytes + 30);  // inside the first record
  Read r = ReadAll();
  EXPECT_TRUE(r.ids.empty());
  EXPECT_EQ(r.end.kind, SegmentEnd::kCorrupt);
}

// Recovery at each crash point of the recycle step. Segment 2 is the drained segment being
// recycled into 4: message 1 (done in 2), message 2 (done in 3). It also holds message 7,
// never done: a segment that is really drained cannot hold it, but if recovery ever read
// an old life out of a recycled or half-recycled file, 7 would come back — the test's tell.
// Segment 3 holds DONE(2) and live message 3.
class RecycleCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::MakeDirs(LoopDirPath(spool_, kLoop));
    const RecordLife life2 = LifeOf(HeaderV2(2));
    WriteSegment(Seg(2), HeaderV2(2),
                 {MessageRecord(1, life2), MessageRecord(2, life2), MessageRecord(7, life2),
                  DoneRecord(1, life2)});
    const RecordLife life3 = LifeOf(HeaderV2(3));
    WriteSegment(Seg(3), HeaderV2(3), {DoneRecord(2, life3), MessageRecord(3, life3)});
  }

  std::string Seg(uint64_t seq) { return SegmentPath(spool_, SegmentId{kLoop, seq}); }
  std::string Recycling(uint64_t seq) {
    return RecyclePath(spool_, SegmentId{kLoop, seq});
  }
  void Rename(const std::string& from, const std::string& to) {
    ASSERT_EQ(::rename(from.c_str(), to.c_str()), 0) << from;
  }

  RecoveryResult Recover(const RecoveryOptions& options = {}) {
    absl::StatusOr<RecoveryResult> r = RecoverSpool(spool_, options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(r).value() : RecoveryResult{};
  }

  // What every crash point after the first rename must give: 3 live, 7 not, nothing
  // quarantined, and segment number 4 never handed out again.
  void ExpectOldLifeGone(const RecoveryResult& r) {
    EXPECT_TRUE(HasLive(r, 3));
    EXPECT_FALSE(HasLive(r, 7)) << "an old life was replayed";
    EXPECT_EQ(r.live.size(), 1u);
    EXPECT_TRUE(r.report.quarantined.empty()) << r.report.Summary();
    EXPECT_EQ(r.report.CountEnds(SegmentEnd::kCorrupt), 0u);
    ASSERT_EQ(r.report.loops.size(), 1u);
    EXPECT_GE(r.report.loops[0].next_seq, 5u);
  }

  TempDir dir_;
  std::string spool_ = dir_.path() + "/spool";
};

// Before the first rename is durable: the drained segment as it was (as after an unlink
// that did not reach the disk). Replaying it is what the pins make harmless.
TEST_F(RecycleCrashTest, BeforeTheFirstRenameTheOldSegmentIsReadAsItWas) {
  RecoveryResult r = Recover();
  EXPECT_TRUE(HasLive(r, 3)) << r.report.Summary();
  EXPECT_FALSE(HasLive(r, 1));
  EXPECT_FALSE(HasLive(r, 2));
  EXPECT_TRUE(r.report.quarantined.empty());
}

TEST_F(RecycleCrashTest, RenamedAwayWithTheOldHeaderIsRemovedUnread) {
  Rename(Seg(2), Recycling(4));
  RecoveryResult r = Recover();
  ExpectOldLifeGone(r);
  ASSERT_EQ(r.report.recycle_leftovers.size(), 1u);
  EXPECT_TRUE(r.report.recycle_leftovers[0].removed);
  EXPECT_EQ(r.report.recycle_leftovers[0].id, (SegmentId{kLoop, 4}));
  EXPECT_FALSE(FileExists(Recycling(4)));
  EXPECT_NE(r.report.Summary().find("1 interrupted recycles"), std::string::npos);
}

TEST_F(RecycleCrashTest, ATornHeaderUnderTheRecycleNameIsNotQuarantined) {
  Rename(Seg(2), Recycling(4));
  std::string half = EncodeSegmentHeader(HeaderV2(4, kSegmentFlagRecycled)).substr(0, 30);
  OverwriteAt(Recycling(4), 0, half);  // the new header, torn after 30 bytes
  RecoveryResult r = Recover();
  ExpectOldLifeGone(r);
  EXPECT_FALSE(FileExists(Recycling(4)));
  EXPECT_FALSE(FileExists(QuarantineDirPath(spool_)));
}

TEST_F(RecycleCrashTest, TheNewHeaderUnderTheRecycleNameIsRemoved) {
  Rename(Seg(2), Recycling(4));
  ReplaceHeader(Recycling(4), HeaderV2(4, kSegmentFlagRecycled));
  RecoveryResult r = Recover();
  ExpectOldLifeGone(r);
  EXPECT_FALSE(FileExists(Recycling(4)));
}

// The final rename reached the disk: an empty spare whose bytes are all an earlier life's.
TEST_F(RecycleCrashTest, RenamedHomeWithNoRecordIsAnEmptySpare) {
  Rename(Seg(2), Seg(4));
  ReplaceHeader(Seg(4), HeaderV2(4, kSegmentFlagRecycled));
  RecoveryResult r = Recover();
  ExpectOldLifeGone(r);
  bool seen = false;
  for (const SegmentReport& s : r.report.segments) {
    if (s.id != SegmentId{kLoop, 4}) continue;
    seen = true;
    EXPECT_EQ(s.records, 0u);
    EXPECT_EQ(s.end.kind, SegmentEnd::kClean) << s.end.detail;
  }
  EXPECT_TRUE(seen);
  EXPECT_EQ(r.report.loops[0].next_seq, 5u);
}

// In use: records of life 4 over the old ones come back, and only they.
TEST_F(RecycleCrashTest, RecordsOfTheNewLifeAreRecoveredAndOnlyThey) {
  Rename(Seg(2), Seg(4));
  ReplaceHeader(Seg(4), HeaderV2(4, kSegmentFlagRecycled));
  const std::string rec = MessageRecord(8, LifeOf(HeaderV2(4)), 40);
  OverwriteAt(Seg(4), kSegmentHeaderBytes, rec);
  RecoveryResult r = Recover();
  EXPECT_TRUE(HasLive(r, 8));
  EXPECT_TRUE(HasLive(r, 3));
  EXPECT_FALSE(HasLive(r, 7));
  EXPECT_EQ(r.live.size(), 2u);
  EXPECT_TRUE(r.report.quarantined.empty());
  for (const RecoveredMessage& m : r.live) {
    if (m.message.id != TestId(8)) continue;
    EXPECT_EQ(m.message.location.segment, (SegmentId{kLoop, 4}));
    EXPECT_EQ(m.message.location.record_offset, kSegmentHeaderBytes);
  }
}

TEST_F(RecycleCrashTest, ReadOnlyScansLeaveTheRecycleFile) {
  Rename(Seg(2), Recycling(4));
  RecoveryResult r = Recover(ReadOnlyRecoveryOptions());
  ExpectOldLifeGone(r);
  ASSERT_EQ(r.report.recycle_leftovers.size(), 1u);
  EXPECT_FALSE(r.report.recycle_leftovers[0].removed);
  EXPECT_TRUE(FileExists(Recycling(4)));
}

// A format-1 spool from an older build still recovers, next to format-2 segments.
TEST_F(RecycleCrashTest, FormatOneSegmentsStillRecover) {
  testing::SegmentFileWriter old(spool_, SegmentId{kLoop, 1});
  old.AppendMessage(MakeMessage(20, 1, "an old build's message"));
  RecoveryResult r = Recover();
  EXPECT_TRUE(HasLive(r, 20));
  EXPECT_TRUE(HasLive(r, 3));
  EXPECT_TRUE(HasLive(r, 7));  // segment 2 is intact here: 7 is live in it
  EXPECT_TRUE(r.report.quarantined.empty());
}

}  // namespace
}  // namespace ringmail::spool::recycle_format_test
