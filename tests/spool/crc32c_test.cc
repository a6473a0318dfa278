#include "spool/crc32c.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::spool {
namespace {

using Fn = uint32_t (*)(uint32_t, const void*, size_t);

std::vector<std::pair<const char*, Fn>> Implementations() {
  std::vector<std::pair<const char*, Fn>> fns = {{"portable", &Crc32cExtendPortable},
                                                 {"dispatch", &Crc32cExtend}};
  if (Crc32cUsesHardware()) fns.push_back({"hardware", &Crc32cExtendHardware});
  return fns;
}

uint32_t Of(Fn fn, const std::string& s) { return fn(0, s.data(), s.size()); }

// RFC 3720 appendix B.4 and the customary check value.
TEST(Crc32cTest, KnownVectors) {
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  const unsigned char pdu[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  for (const auto& [name, fn] : Implementations()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(Of(fn, ""), 0u);
    EXPECT_EQ(Of(fn, std::string(32, '\0')), 0x8A9136AAu);
    EXPECT_EQ(Of(fn, std::string(32, '\xff')), 0x62A8AB43u);
    EXPECT_EQ(Of(fn, ascending), 0x46DD794Eu);
    EXPECT_EQ(Of(fn, descending), 0x113FDB5Cu);
    EXPECT_EQ(Of(fn, std::string(reinterpret_cast<const char*>(pdu), sizeof(pdu))), 0xD9963A56u);
    EXPECT_EQ(Of(fn, "123456789"), 0xE3069283u);
  }
}

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  std::mt19937_64 rng(7);
  std::string data(3000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  uint32_t whole = Crc32c(data);
  for (size_t split = 0; split <= data.size(); split += 37) {
    uint32_t first = Crc32c(std::string_view(data).substr(0, split));
    EXPECT_EQ(Crc32cExtend(first, std::string_view(data).substr(split)), whole) << split;
  }
}

// The hardware path has three tiers (3x4096, 3x256, single stream); every length around their
// edges and every alignment must agree with the portable tables.
TEST(Crc32cTest, HardwareMatchesPortable) {
  if (!Crc32cUsesHardware()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937_64 rng(42);
  std::string data(3 * 4096 * 3 + 64, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  std::vector<size_t> lengths;
  for (size_t n = 0; n < 1000; ++n) lengths.push_back(n);
  for (size_t edge : {768u, 1536u, 12288u, 24576u, 36864u}) {
    for (size_t d = 0; d < 20; ++d) {
      lengths.push_back(edge - 10 + d);
    }
  }
  for (size_t length : lengths) {
    for (size_t align = 0; align < 8; ++align) {
      if (align + length > data.size()) continue;
      const char* p = data.data() + align;
      uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(Crc32cExtendHardware(seed, p, length), Crc32cExtendPortable(seed, p, length))
          << "length " << length << " align " << align;
    }
  }
}

TEST(Crc32cTest, DetectsEverySingleBitFlip) {
  std::string data = "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n";
  uint32_t good = Crc32c(data);
  for (size_t i = 0; i < data.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = data;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_NE(Crc32c(bad), good) << i << ":" << bit;
    }
  }
}

}  // namespace
}  // namespace ringmail::spool
