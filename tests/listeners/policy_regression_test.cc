// Regression tests for inputs the ESMTP policy fuzz target (fuzz/esmtp_policy_fuzz.cc) found.
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "listeners/esmtp/policy.h"

namespace ringmail::listeners::esmtp {
namespace {

using namespace std::string_view_literals;

// Found by fuzzing: IsAtext used strchr, which finds the terminating NUL, so a NUL octet
// was atext and "<a\0b@example.com>" parsed as an address. Both doors refuse NUL before the
// parser today (the session answers 501 5.5.4, the HTTP door checks control bytes), so it
// was latent; the parser must not depend on that.
TEST(PolicyRegressionTest, NulIsNotAtext) {
  MailArguments mail;
  EXPECT_TRUE(ParseMailArguments("FROM:<a\0b@example.com>"sv, &mail).has_value());
  EXPECT_TRUE(ParseMailArguments("FROM:<j\xc3\xb6\0@ex\xc3\xa4mple.com> SMTPUTF8"sv, &mail)
                  .has_value());
  RcptArguments rcpt;
  EXPECT_TRUE(ParseRcptArguments("TO:<\0@example.com>"sv, true, &rcpt).has_value());
  EXPECT_TRUE(ParseRcptArguments("TO:<x.\0@example.com>"sv, false, &rcpt).has_value());
  // The same addresses without the NUL are fine.
  EXPECT_FALSE(ParseMailArguments("FROM:<ab@example.com>"sv, &mail).has_value());
  EXPECT_FALSE(ParseRcptArguments("TO:<x.y@example.com>"sv, false, &rcpt).has_value());
}

// Found by fuzzing: address literals and IP addresses went to inet_pton as C strings, so a
// NUL ended them early and "[10.0.2.1\0junk]" was a valid domain.
TEST(PolicyRegressionTest, NulEndsNoAddressLiteral) {
  RcptArguments rcpt;
  EXPECT_TRUE(ParseRcptArguments("TO:<e@[10.0.2.1\0\0\0]>"sv, false, &rcpt).has_value());
  EXPECT_TRUE(ParseRcptArguments("TO:<e@[IPv6:2001:db8::1\0x]>"sv, false, &rcpt).has_value());
  EXPECT_FALSE(ParseRcptArguments("TO:<e@[10.0.2.1]>"sv, false, &rcpt).has_value());
  EXPECT_FALSE(IpAddress::Parse("10.0.2.1\0junk"sv).has_value());
  EXPECT_FALSE(Cidr::Parse("10.0.0.0\0/8"sv).ok());
  EXPECT_TRUE(IpAddress::Parse("10.0.2.1"sv).has_value());
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
