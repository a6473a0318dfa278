#include "spool/record.h"

#include <random>
#include <string>

#include "gtest/gtest.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool {
namespace {

using testing::MakeMessage;
using testing::CraftRecord;
using testing::TestId;

std::string DoneMeta(const core::MessageId& id, uint64_t ms) {
  std::string meta;
  internal::PutU64(&meta, id.hi);
  internal::PutU64(&meta, id.lo);
  internal::PutU64(&meta, ms);
  return meta;
}

// MESSAGE metadata: id, time, no Received header, `count` recipients announced (none present),
// a sender whose length field says `sender_length` followed by "a@b", three empty strings.
std::string CraftMessageMeta(uint32_t count, uint32_t sender_length) {
  std::string m;
  internal::PutU64(&m, 1);
  internal::PutU64(&m, 2);
  internal::PutU64(&m, 3);
  internal::PutU32(&m, 0);
  internal::PutU32(&m, count);
  internal::PutU32(&m, sender_length);
  m += "a@b";
  for (int i = 0; i < 3; ++i) internal::PutU32(&m, 0);
  return m;
}

void ExpectSameEnvelope(const core::Envelope& a, const core::Envelope& b) {
  EXPECT_EQ(a.mail_from, b.mail_from);
  EXPECT_EQ(a.mail_params, b.mail_params);
  EXPECT_EQ(a.helo, b.helo);
  EXPECT_EQ(a.peer, b.peer);
  ASSERT_EQ(a.recipients.size(), b.recipients.size());
  for (size_t i = 0; i < a.recipients.size(); ++i) {
    EXPECT_EQ(a.recipients[i].address, b.recipients[i].address);
    EXPECT_EQ(a.recipients[i].params, b.recipients[i].params);
    EXPECT_EQ(a.recipients[i].state, b.recipients[i].state);
    EXPECT_EQ(a.recipients[i].attempts, b.recipients[i].attempts);
    EXPECT_EQ(a.recipients[i].next_attempt_ms, b.recipients[i].next_attempt_ms);
  }
}

// Encodes, flattens, decodes and compares everything.
void RoundTrip(const core::Message& m) {
  absl::StatusOr<EncodedRecord> rec = EncodeMessage(m);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->size() % kRecordAlignBytes, 0u);
  EXPECT_EQ(rec->content_length, m.content_size());
  std::string flat = rec->Flatten();
  ASSERT_EQ(flat.size(), rec->size());
  DecodedRecord d;
  RecordStatus s = DecodeRecord(flat, &d);
  ASSERT_TRUE(s.ok()) << RecordErrorName(s.error) << " " << s.detail;
  EXPECT_EQ(d.header.type, RecordType::kMessage);
  EXPECT_EQ(d.header.padded_length(), flat.size());
  const auto& meta = std::get<MessageMeta>(d.meta);
  EXPECT_EQ(meta.id, m.id);
  EXPECT_EQ(meta.received_ms, m.received_ms);
  EXPECT_EQ(meta.received_header_length, m.received_header.size());
  EXPECT_EQ(meta.content_length, m.content_size());
  ExpectSameEnvelope(meta.envelope, m.envelope);
  EXPECT_EQ(d.content, m.received_header + m.body.ToString());
  EXPECT_EQ(rec->content_offset() + rec->content_length + rec->tail.size(), flat.size());
  EXPECT_EQ(std::string_view(flat).substr(rec->content_offset(), rec->content_length), d.content);
}

TEST(RecordTest, MessageRoundTripOrdinary) {
  RoundTrip(MakeMessage(1, 3, "Subject: hi\r\n\r\nhello\r\n"));
}

TEST(RecordTest, MessageRoundTripZeroRecipientsEmptyBodyNoReceived) {
  core::Message m = MakeMessage(2, 0, "");
  m.received_header.clear();
  m.envelope.mail_from.clear();  // null reverse-path
  RoundTrip(m);
}

TEST(RecordTest, MessageRoundTripManyRecipientsWithStates) {
  core::Message m = MakeMessage(3, 5000, "x");
  for (size_t i = 0; i < m.envelope.recipients.size(); ++i) {
    m.envelope.recipients[i].state = static_cast<core::RecipientState>(i % 4);
    m.envelope.recipients[i].attempts = static_cast<uint32_t>(i);
    m.envelope.recipients[i].next_attempt_ms = i * 1000;
  }
  RoundTrip(m);
}

TEST(RecordTest, MessageRoundTripEightBitAndEveryByte) {
  std::string body;
  for (int i = 0; i < 256; ++i) body.push_back(static_cast<char>(i));
  core::Message m = MakeMessage(4, 2, body + "\r\nJ\xc3\xa9r\xc3\xb4me\r\n");
  m.envelope.recipients[0].address = "j\xc3\xa9r\xc3\xb4me@exampl\xc3\xa9.com";
  m.envelope.mail_params = std::string("SMTPUTF8 X=\x01\x02\xff", 15);
  RoundTrip(m);
}

TEST(RecordTest, BodyAcrossManyChunksIsNotCopied) {
  std::string body;
  for (int i = 0; body.size() < 1000000; ++i) body += "line " + std::to_string(i) + "\r\n";
  core::Message m = MakeMessage(5, 1, body);
  ASSERT_GT(m.body.chunk_count(), 5u);
  absl::StatusOr<EncodedRecord> rec = EncodeMessage(m);
  ASSERT_TRUE(rec.ok());
  ASSERT_EQ(rec->body_parts.size(), 1 + m.body.chunk_count());
  EXPECT_EQ(rec->body_parts[0].data(), m.received_header.data());
  for (size_t i = 0; i < m.body.chunk_count(); ++i) {
    EXPECT_EQ(rec->body_parts[i + 1].data(), m.body.chunk(i).data()) << "chunk " << i;
  }
  std::vector<iovec> iov;
  rec->AppendIovecs(&iov);
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  EXPECT_EQ(total, rec->size());
  RoundTrip(m);
}

TEST(RecordTest, RecipientAndDoneRoundTrip) {
  RecipientUpdate u{TestId(9), 7, core::RecipientState::kDeferred, 3, 123456, 120000,
                    "451 4.7.1 try again later"};
  std::string bytes = EncodeRecipient(u);
  EXPECT_EQ(bytes.size() % kRecordAlignBytes, 0u);
  DecodedRecord d;
  ASSERT_TRUE(DecodeRecord(bytes, &d).ok());
  EXPECT_EQ(d.header.type, RecordType::kRecipient);
  EXPECT_EQ(std::get<RecipientUpdate>(d.meta), u);
  EXPECT_TRUE(d.content.empty());

  DoneMark done{TestId(9), 99};
  bytes = EncodeDone(done);
  ASSERT_TRUE(DecodeRecord(bytes, &d).ok());
  EXPECT_EQ(std::get<DoneMark>(d.meta), done);
}

TEST(RecordTest, LongRemoteReplyIsCut) {
  RecipientUpdate u{TestId(1), 0, core::RecipientState::kFailed, 1, 0, 5,
                    std::string(kReplyBytesMax + 500, 'r')};
  DecodedRecord d;
  ASSERT_TRUE(DecodeRecord(EncodeRecipient(u), &d).ok());
  EXPECT_EQ(std::get<RecipientUpdate>(d.meta).reply.size(), kReplyBytesMax);
}

TEST(RecordTest, EncodeRefusesOverLimits) {
  core::Message m = MakeMessage(1, 1, "x");
  m.envelope.recipients[0].address = std::string(kAddressBytesMax + 1, 'a');
  EXPECT_EQ(EncodeMessage(m).status().code(), absl::StatusCode::kInvalidArgument);
  m = MakeMessage(1, 0, "x");
  m.envelope.recipients.resize(kRecipientsMax + 1);
  EXPECT_EQ(EncodeMessage(m).status().code(), absl::StatusCode::kInvalidArgument);
  m = MakeMessage(1, 0, "x");
  m.received_header = std::string(kReceivedHeaderBytesMax + 1, 'h');
  EXPECT_EQ(EncodeMessage(m).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RecordTest, EveryFlippedBitIsCaught) {
  std::string good = EncodeMessage(MakeMessage(6, 2, "Subject: x\r\n\r\nbody\r\n"))->Flatten();
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      DecodedRecord d;
      RecordStatus s = DecodeRecord(bad, &d);
      ASSERT_FALSE(s.ok()) << "byte " << i << " bit " << bit;
      if (i >= 4 && i < 8) {
        EXPECT_EQ(s.error, RecordError::kBadHeaderCrc);  // header_crc itself
      } else if (i >= 8 && i < kRecordHeaderBytes) {
        EXPECT_EQ(s.error, RecordError::kBadHeaderCrc) << i;
      } else {
        EXPECT_EQ(s.error, RecordError::kBadCrc) << i;
      }
    }
  }
}

TEST(RecordTest, TruncatedAtEveryOffset) {
  std::string good = EncodeRecipient(
      RecipientUpdate{TestId(2), 1, core::RecipientState::kDelivered, 1, 0, 7, "250 ok"});
  for (size_t n = 0; n < good.size(); ++n) {
    DecodedRecord d;
    RecordStatus s = DecodeRecord(std::string_view(good).substr(0, n), &d);
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_EQ(s.error, RecordError::kTruncated) << n;
  }
}

TEST(RecordTest, ZeroesAreNoRecord) {
  DecodedRecord d;
  EXPECT_EQ(DecodeRecord(std::string(64, '\0'), &d).error, RecordError::kZeroHeader);
  RecordHeader h;
  EXPECT_EQ(DecodeRecordHeader(std::string(24, '\0'), &h).error, RecordError::kZeroHeader);
}

TEST(RecordTest, HeaderFieldChecks) {
  std::string meta = DoneMeta(TestId(1), 5);
  DecodedRecord d;
  ASSERT_TRUE(DecodeRecord(CraftRecord(3, meta, ""), &d).ok());
  EXPECT_EQ(DecodeRecord(CraftRecord(0, meta, ""), &d).error, RecordError::kBadType);
  EXPECT_EQ(DecodeRecord(CraftRecord(9, meta, ""), &d).error, RecordError::kBadType);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "", 2), &d).error, RecordError::kBadVersion);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "", kRecordVersion, 1), &d).error,
            RecordError::kBadFlags);
  // Content on a DONE record.
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "xx"), &d).error, RecordError::kBadLength);
  // Absurd lengths: huge, beyond the limit, shorter than the metadata.
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "", 1, 0, UINT64_MAX), &d).error,
            RecordError::kLimitExceeded);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "", 1, 0, kRecordBytesMax + 1), &d).error,
            RecordError::kLimitExceeded);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "", 1, 0, 30), &d).error, RecordError::kBadLength);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta, "", 1, 0, 4096), &d).error, RecordError::kBadLength);
  // A plausible length that runs past the bytes present.
  EXPECT_EQ(DecodeRecord(CraftRecord(1, CraftMessageMeta(0, 3), "", 1, 0, 4096), &d).error,
            RecordError::kTruncated);
}

TEST(RecordTest, MetadataChecksBehindAValidCrc) {
  DecodedRecord d;
  std::string meta = DoneMeta(TestId(1), 5);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta + "x", ""), &d).error, RecordError::kBadMeta);
  EXPECT_EQ(DecodeRecord(CraftRecord(3, meta.substr(0, 20), ""), &d).error, RecordError::kBadMeta);

  // MESSAGE with a recipient count its metadata cannot hold, or over the limit.
  ASSERT_TRUE(DecodeRecord(CraftRecord(1, CraftMessageMeta(0, 3), "body"), &d).ok());
  EXPECT_EQ(DecodeRecord(CraftRecord(1, CraftMessageMeta(5, 3), "body"), &d).error,
            RecordError::kBadMeta);
  EXPECT_EQ(DecodeRecord(CraftRecord(1, CraftMessageMeta(kRecipientsMax + 1, 3), ""), &d).error,
            RecordError::kLimitExceeded);
  EXPECT_EQ(DecodeRecord(CraftRecord(1, CraftMessageMeta(0, 1u << 30), ""), &d).error,
            RecordError::kLimitExceeded);
  EXPECT_EQ(DecodeRecord(CraftRecord(1, CraftMessageMeta(0, 200), ""), &d).error,
            RecordError::kBadMeta);

  // RECIPIENT with an unknown state value.
  std::string rm;
  internal::PutU64(&rm, 1);
  internal::PutU64(&rm, 2);
  internal::PutU32(&rm, 0);
  internal::PutU8(&rm, 7);
  internal::PutU8(&rm, 0);
  internal::PutU16(&rm, 0);
  internal::PutU32(&rm, 1);
  internal::PutU64(&rm, 0);
  internal::PutU64(&rm, 0);
  internal::PutU32(&rm, 0);
  EXPECT_EQ(DecodeRecord(CraftRecord(2, rm, ""), &d).error, RecordError::kBadMeta);
  rm[20] = 1;  // a valid state: the same record now decodes
  EXPECT_TRUE(DecodeRecord(CraftRecord(2, rm, ""), &d).ok());
}

// Random bytes and random damage to valid records: never a crash, never a false success of a
// damaged record.
TEST(RecordTest, GarbageNeverCrashes) {
  std::mt19937_64 rng(1234);
  std::string good = EncodeMessage(MakeMessage(8, 4, "Subject: y\r\n\r\nzz\r\n"))->Flatten();
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      bytes.resize(rng() % 300);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {
      bytes = good;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
      }
      if (bytes == good) continue;
    }
    DecodedRecord d;
    EXPECT_FALSE(DecodeRecord(bytes, &d).ok()) << round;
  }
}

}  // namespace
}  // namespace ringmail::spool
