// Name validation: what the resolver accepts from callers and from MX answers.
#include "dns/name.h"

#include <string>

#include "gtest/gtest.h"

namespace ringmail::dns {
namespace {

TEST(NameTest, NormalizesCaseAndTrailingDot) {
  EXPECT_EQ(*NormalizeName("Example.COM."), "example.com");
  EXPECT_EQ(*NormalizeName("mx-1.example_x.org"), "mx-1.example_x.org");
  EXPECT_EQ(*NormalizeName("localhost"), "localhost");
}

TEST(NameTest, RejectsMalformedNames) {
  for (const char* bad : {"", ".", "a..b", ".a", "a b.com", "a\\.b", "ex\r\nample.com",
                          "a/b", "ünï.com", "a..", "x@y"}) {
    absl::StatusOr<std::string> n = NormalizeName(bad);
    EXPECT_FALSE(n.ok()) << bad;
    if (!n.ok()) {
      EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(NameTest, LengthLimits) {
  std::string label63(63, 'a');
  std::string label64(64, 'a');
  EXPECT_TRUE(NormalizeName(label63 + ".com").ok());
  EXPECT_FALSE(NormalizeName(label64 + ".com").ok());
  // 4 x 63 + 3 dots = 255 > 253; 3 x 63 + 61 + 3 = 253.
  std::string n255 = label63 + "." + label63 + "." + label63 + "." + label63;
  std::string n253 = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  EXPECT_FALSE(NormalizeName(n255).ok());
  EXPECT_TRUE(NormalizeName(n253).ok());
  EXPECT_TRUE(NormalizeName(n253 + ".").ok());  // the trailing dot does not count
  EXPECT_FALSE(NormalizeName(std::string(100000, 'a')).ok());
}

TEST(NameTest, CanonicalCheck) {
  EXPECT_TRUE(IsCanonicalName("mx1.example.test"));
  EXPECT_FALSE(IsCanonicalName("MX1.example.test"));
  EXPECT_FALSE(IsCanonicalName("mx1.example.test."));
}

}  // namespace
}  // namespace ringmail::dns
