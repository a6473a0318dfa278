#include "spool/segment_format.h"

#include "gtest/gtest.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"

namespace ringmail::spool {
namespace {

TEST(SegmentFormatTest, HeaderRoundTrip) {
  SegmentHeader h{7, 123456789, 1700000000123ull, kDefaultSegmentBytes};
  std::string bytes = EncodeSegmentHeader(h);
  ASSERT_EQ(bytes.size(), kSegmentHeaderBytes);
  EXPECT_EQ(bytes.substr(0, 7), "RMSPOOL");
  SegmentHeader out;
  EXPECT_EQ(DecodeSegmentHeader(bytes + "trailing records", &out), SegmentHeaderError::kNone);
  EXPECT_EQ(out, h);
}

TEST(SegmentFormatTest, EveryDamagedByteIsCaught) {
  std::string good = EncodeSegmentHeader(SegmentHeader{1, 2, 3, 4});
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    SegmentHeader out;
    SegmentHeaderError e = DecodeSegmentHeader(bad, &out);
    EXPECT_NE(e, SegmentHeaderError::kNone) << i;
    SegmentHeaderError expected = i < 8    ? SegmentHeaderError::kBadMagic
                                  : i < 12 ? SegmentHeaderError::kBadVersion
                                           : SegmentHeaderError::kBadCrc;
    EXPECT_EQ(e, expected) << i;
  }
}

TEST(SegmentFormatTest, ZeroTruncatedAndFieldErrors) {
  SegmentHeader out;
  EXPECT_EQ(DecodeSegmentHeader(std::string(64, '\0'), &out), SegmentHeaderError::kZero);
  EXPECT_EQ(DecodeSegmentHeader(EncodeSegmentHeader({}).substr(0, 63), &out),
            SegmentHeaderError::kTruncated);
  EXPECT_EQ(DecodeSegmentHeader("", &out), SegmentHeaderError::kTruncated);
  // Valid CRC over a wrong alignment field: written by something that is not us.
  std::string bad = EncodeSegmentHeader({});
  internal::StoreU32At(&bad, 20, 16);
  internal::StoreU32At(&bad, 60, Crc32c(std::string_view(bad).substr(0, 60)));
  EXPECT_EQ(DecodeSegmentHeader(bad, &out), SegmentHeaderError::kBadField);
  bad = EncodeSegmentHeader({});
  bad[50] = 1;
  internal::StoreU32At(&bad, 60, Crc32c(std::string_view(bad).substr(0, 60)));
  EXPECT_EQ(DecodeSegmentHeader(bad, &out), SegmentHeaderError::kBadField);
}

TEST(SegmentFormatTest, FileNames) {
  EXPECT_EQ(SegmentFileName(17), "000000000017.seg");
  EXPECT_EQ(ParseSegmentFileName("000000000017.seg"), 17u);
  EXPECT_EQ(ParseSegmentFileName("17.seg"), 17u);
  EXPECT_EQ(ParseSegmentFileName("18446744073709551615.seg"), UINT64_MAX);
  EXPECT_EQ(ParseSegmentFileName("18446744073709551616.seg"), std::nullopt);
  EXPECT_EQ(ParseSegmentFileName(".seg"), std::nullopt);
  EXPECT_EQ(ParseSegmentFileName("12.seg.tmp"), std::nullopt);
  EXPECT_EQ(ParseSegmentFileName("1a.seg"), std::nullopt);
  EXPECT_EQ(ParseSegmentFileName("-1.seg"), std::nullopt);
  EXPECT_EQ(ParseSegmentFileName(SegmentFileName(UINT64_MAX)), UINT64_MAX);

  EXPECT_EQ(LoopDirName(3), "3");
  EXPECT_EQ(ParseLoopDirName("3"), 3u);
  EXPECT_EQ(ParseLoopDirName("0"), 0u);
  EXPECT_EQ(ParseLoopDirName("65535"), 65535u);
  EXPECT_EQ(ParseLoopDirName("65536"), std::nullopt);
  EXPECT_EQ(ParseLoopDirName("03"), std::nullopt);
  EXPECT_EQ(ParseLoopDirName("quarantine"), std::nullopt);
  EXPECT_EQ(ParseLoopDirName(""), std::nullopt);

  EXPECT_EQ(SegmentPath("/var/spool", SegmentId{2, 5}), "/var/spool/2/000000000005.seg");
  // The paths are built in one piece; they must spell what the names say, at every width.
  for (SegmentId id : {SegmentId{0, 0}, SegmentId{65535, UINT64_MAX}, SegmentId{UINT32_MAX, 7}}) {
    EXPECT_EQ(SegmentPath("/s", id), LoopDirPath("/s", id.loop) + "/" + SegmentFileName(id.seq));
    EXPECT_EQ(RecyclePath("/s", id), LoopDirPath("/s", id.loop) + "/" + RecycleFileName(id.seq));
  }
  EXPECT_EQ(QuarantineDirPath("/s"), "/s/quarantine");
  EXPECT_EQ((SegmentId{2, 5}).ToString(), "2/000000000005.seg");
  EXPECT_EQ(AlignRecord(0), 0u);
  EXPECT_EQ(AlignRecord(1), 8u);
  EXPECT_EQ(AlignRecord(24), 24u);
}

}  // namespace
}  // namespace ringmail::spool
