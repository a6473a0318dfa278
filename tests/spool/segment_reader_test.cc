#include "spool/segment_reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool {
namespace {

using testing::FlipByte;
using testing::MakeMessage;
using testing::OverwriteAt;
using testing::SegmentFileWriter;
using testing::TempDir;
using testing::TestId;

struct ScanOutcome {
  SegmentOpenStatus open;
  std::vector<ScannedRecord> records;
  SegmentEndInfo end;
};

ScanOutcome Scan(const std::string& path) {
  ScanOutcome out;
  SegmentReader reader;
  out.open = reader.Open(path);
  if (out.open.result != SegmentOpenResult::kOk) return out;
  ScannedRecord rec;
  while (reader.Next(&rec)) out.records.push_back(rec);
  out.end = reader.end();
  EXPECT_EQ(reader.valid_end(), out.end.offset);
  return out;
}

std::string Record(int n) {
  return EncodeMessage(MakeMessage(n, 2, "Subject: s" + std::to_string(n) + "\r\n\r\nbody\r\n"))
      ->Flatten();
}

class SegmentReaderTest : public ::testing::Test {
 protected:
  SegmentId id_{0, 1};
  TempDir dir_;
};

TEST_F(SegmentReaderTest, CleanEndAfterRecords) {
  SegmentFileWriter w(dir_.path(), id_);
  core::Message m = MakeMessage(1, 2, "Subject: a\r\n\r\nhello\r\n");
  uint64_t at = w.AppendMessage(m);
  w.AppendRecipient(m.id, 1, core::RecipientState::kDelivered, 1, 5, "250 2.0.0 ok");
  w.AppendDone(m.id);
  ScanOutcome s = Scan(w.path());
  ASSERT_EQ(s.open.result, SegmentOpenResult::kOk);
  ASSERT_EQ(s.records.size(), 3u);
  EXPECT_EQ(s.records[0].offset, at);
  EXPECT_EQ(s.records[0].offset, kSegmentHeaderBytes);
  EXPECT_EQ(std::get<MessageMeta>(s.records[0].meta).id, m.id);
  EXPECT_EQ(std::get<RecipientUpdate>(s.records[1].meta).reply, "250 2.0.0 ok");
  EXPECT_EQ(std::get<DoneMark>(s.records[2].meta).id, m.id);
  EXPECT_EQ(s.end.kind, SegmentEnd::kClean);
  EXPECT_EQ(s.end.offset, w.offset());

  SegmentReader reader;
  ASSERT_EQ(reader.Open(w.path()).result, SegmentOpenResult::kOk);
  std::string content;
  ASSERT_TRUE(reader.ReadAt(s.records[0].content_offset(), m.content_size(), &content).ok());
  EXPECT_EQ(content, m.received_header + m.body.ToString());
  EXPECT_EQ(reader.ReadAt(reader.file_size() - 2, 3, &content).code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(SegmentReaderTest, RecordsUpToTheLastByteAreClean) {
  SegmentFileWriter w(dir_.path(), id_, kSegmentHeaderBytes);
  w.Append(Record(1));
  w.Append(Record(2));
  ScanOutcome s = Scan(w.path());
  EXPECT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.end.kind, SegmentEnd::kClean);
}

// A write torn anywhere: the last record's first k bytes reached the disk, the rest are still
// the preallocated zeros.
TEST_F(SegmentReaderTest, TornAtEveryPrefixOfTheLastRecord) {
  std::string first = Record(1), last = Record(2);
  size_t last_nonzero = last.find_last_not_of('\0');
  size_t header_last_nonzero = last.substr(0, kRecordHeaderBytes).find_last_not_of('\0');
  for (size_t k = 0; k <= last.size(); ++k) {
    SCOPED_TRACE(k);
    SegmentFileWriter w(dir_.path(), id_, 16 * 1024);
    w.Append(first);
    uint64_t at = w.Append(std::string_view(last).substr(0, k));
    ScanOutcome s = Scan(w.path());
    ASSERT_EQ(s.open.result, SegmentOpenResult::kOk);
    if (k > last_nonzero) {  // only zeros were missing: the record is complete
      EXPECT_EQ(s.records.size(), 2u);
      EXPECT_EQ(s.end.kind, SegmentEnd::kClean);
      continue;
    }
    ASSERT_EQ(s.records.size(), 1u);
    EXPECT_EQ(s.end.offset, at);
    EXPECT_EQ(s.end.kind, k == 0 ? SegmentEnd::kClean : SegmentEnd::kTornTail);
    if (k > 0 && k <= header_last_nonzero) {
      EXPECT_EQ(s.end.cause.error, RecordError::kBadHeaderCrc);
    } else if (k > 0) {  // the header is whole (its last bytes happen to be zeros)
      EXPECT_EQ(s.end.cause.error, RecordError::kBadCrc);
    }
  }
}

// The file itself ends inside the last record (no preallocated zeros).
TEST_F(SegmentReaderTest, FileEndsInsideTheLastRecord) {
  std::string first = Record(1), last = Record(2);
  for (size_t k = 1; k < last.size(); k += 7) {
    SCOPED_TRACE(k);
    SegmentFileWriter w(dir_.path(), id_, kSegmentHeaderBytes);
    w.Append(first);
    w.Append(std::string_view(last).substr(0, k));
    ScanOutcome s = Scan(w.path());
    ASSERT_EQ(s.records.size(), 1u);
    EXPECT_EQ(s.end.kind, SegmentEnd::kTornTail);
    EXPECT_EQ(s.end.cause.error, RecordError::kTruncated);
  }
}

TEST_F(SegmentReaderTest, DamageBeforeValidRecordsIsCorruption) {
  for (uint64_t where : {uint64_t{2}, uint64_t{10}, uint64_t{60}, uint64_t{200}}) {
    SCOPED_TRACE(where);
    SegmentFileWriter w(dir_.path(), id_);
    w.Append(Record(1));
    uint64_t middle = w.Append(Record(2));
    uint64_t last = w.Append(Record(3));
    FlipByte(w.path(), middle + where);
    ScanOutcome s = Scan(w.path());
    ASSERT_EQ(s.records.size(), 1u);
    EXPECT_EQ(s.end.kind, SegmentEnd::kCorrupt);
    EXPECT_EQ(s.end.offset, middle);
    EXPECT_EQ(s.end.next_valid_offset, last);
  }
}

TEST_F(SegmentReaderTest, DamageInTheLastRecordIsATornTail) {
  SegmentFileWriter w(dir_.path(), id_);
  w.Append(Record(1));
  uint64_t last = w.Append(Record(2));
  FlipByte(w.path(), last + 100);
  ScanOutcome s = Scan(w.path());
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.end.kind, SegmentEnd::kTornTail);
  EXPECT_EQ(s.end.cause.error, RecordError::kBadCrc);
}

TEST_F(SegmentReaderTest, ZeroHeaderFollowedByDataIsNotClean) {
  {
    SegmentFileWriter w(dir_.path(), id_);
    w.Append(Record(1));
    uint64_t gap = w.Append(std::string(4096, '\0'));
    w.Append("stray bytes of a lost write");
    ScanOutcome s = Scan(w.path());
    EXPECT_EQ(s.records.size(), 1u);
    EXPECT_EQ(s.end.kind, SegmentEnd::kTornTail);
    EXPECT_EQ(s.end.offset, gap);
    EXPECT_NE(s.end.detail.find("data at offset"), std::string::npos) << s.end.detail;
  }
  {
    SegmentFileWriter w(dir_.path(), id_);
    w.Append(Record(1));
    w.Append(std::string(4096, '\0'));
    uint64_t after = w.Append(Record(2));
    ScanOutcome s = Scan(w.path());
    EXPECT_EQ(s.records.size(), 1u);
    EXPECT_EQ(s.end.kind, SegmentEnd::kCorrupt);
    EXPECT_EQ(s.end.next_valid_offset, after);
  }
}

TEST_F(SegmentReaderTest, CrcValidButUnparsableIsCorruption) {
  SegmentFileWriter w(dir_.path(), id_);
  w.Append(Record(1));
  std::string meta(24, '\0');
  w.Append(testing::CraftRecord(3, meta + "extra!!!", ""));
  ScanOutcome s = Scan(w.path());
  EXPECT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.end.kind, SegmentEnd::kCorrupt);
  EXPECT_EQ(s.end.cause.error, RecordError::kBadMeta);
}

TEST_F(SegmentReaderTest, LargeRecordAcrossWindows) {
  std::string body(5 * SegmentReader::kWindowBytes / 2, 'b');
  for (size_t i = 0; i < body.size(); i += 997) body[i] = static_cast<char>(i);
  core::Message m = MakeMessage(1, 1, body);
  SegmentFileWriter w(dir_.path(), id_, 8 << 20);
  uint64_t at = w.AppendMessage(m);
  w.AppendDone(m.id);
  ScanOutcome s = Scan(w.path());
  ASSERT_EQ(s.records.size(), 2u);
  EXPECT_EQ(s.records[0].header.content_length(), m.content_size());
  EXPECT_EQ(s.end.kind, SegmentEnd::kClean);
  FlipByte(w.path(), at + 2 * SegmentReader::kWindowBytes);
  s = Scan(w.path());
  EXPECT_EQ(s.records.size(), 0u);
  EXPECT_EQ(s.end.kind, SegmentEnd::kCorrupt);  // the DONE record after it is intact
}

TEST_F(SegmentReaderTest, OpenClassifiesHeaders) {
  std::string path = dir_.path() + "/x.seg";
  testing::WriteFileBytes(path, "");
  EXPECT_EQ(Scan(path).open.result, SegmentOpenResult::kEmpty);
  testing::WriteFileBytes(path, std::string(10000, '\0'));
  EXPECT_EQ(Scan(path).open.result, SegmentOpenResult::kEmpty);
  OverwriteAt(path, 5000, "data");
  ScanOutcome s = Scan(path);
  EXPECT_EQ(s.open.result, SegmentOpenResult::kBadHeader);
  EXPECT_EQ(s.open.header_error, SegmentHeaderError::kZero);
  testing::WriteFileBytes(path, "this is not a spool segment at all, just some text\n");
  s = Scan(path);
  EXPECT_EQ(s.open.result, SegmentOpenResult::kBadHeader);
  EXPECT_EQ(s.open.header_error, SegmentHeaderError::kTruncated);
  testing::WriteFileBytes(path, std::string(100, 'G'));
  EXPECT_EQ(Scan(path).open.header_error, SegmentHeaderError::kBadMagic);
  std::string header = EncodeSegmentHeader(SegmentHeader{0, 1, 0, 0});
  header[8] = 3;  // a newer format version
  testing::WriteFileBytes(path, header);
  EXPECT_EQ(Scan(path).open.header_error, SegmentHeaderError::kBadVersion);
  EXPECT_EQ(Scan(dir_.path() + "/missing.seg").open.result, SegmentOpenResult::kIoError);
  ASSERT_EQ(::mkdir((dir_.path() + "/d.seg").c_str(), 0700), 0);
  EXPECT_EQ(Scan(dir_.path() + "/d.seg").open.result, SegmentOpenResult::kBadHeader);
}

}  // namespace
}  // namespace ringmail::spool
