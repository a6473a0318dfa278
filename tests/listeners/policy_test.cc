// Relay decisions, CIDR parsing, path syntax and ESMTP parameters.
#include "listeners/esmtp/policy.h"

#include <string>

#include "gtest/gtest.h"

namespace ringmail::listeners::esmtp {
namespace {

IpAddress Ip(std::string_view text) {
  std::optional<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(IpAddress{});
}

TEST(IpAddressTest, ParsesV4V6MappedBracketsAndZones) {
  EXPECT_FALSE(Ip("192.0.2.1").v6);
  EXPECT_TRUE(Ip("2001:db8::1").v6);
  EXPECT_EQ(Ip("::ffff:192.0.2.1"), Ip("192.0.2.1"));
  EXPECT_EQ(Ip("[::1]"), Ip("::1"));
  EXPECT_EQ(Ip("fe80::1%eth0"), Ip("fe80::1"));
  EXPECT_EQ(Ip("2001:db8::1").ToLiteral(), "IPv6:2001:db8::1");
  EXPECT_EQ(Ip("192.0.2.1").ToLiteral(), "192.0.2.1");
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "::g", "example.com", "[1.2.3.4"}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << bad;
  }
  EXPECT_FALSE(IpAddress::Parse(std::string(200, '1')).has_value());
}

TEST(CidrTest, ParsesAndMatches) {
  struct Row {
    const char* cidr;
    const char* address;
    bool inside;
  };
  const Row rows[] = {
      {"127.0.0.0/8", "127.1.2.3", true},
      {"127.0.0.0/8", "128.0.0.1", false},
      {"10.0.0.0/9", "10.127.255.255", true},
      {"10.0.0.0/9", "10.128.0.0", false},
      {"192.0.2.7", "192.0.2.7", true},
      {"192.0.2.7", "192.0.2.8", false},
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "::1", false},  // families never mix
      {"::1", "::1", true},
      {"::1/128", "::2", false},
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/33", "2001:db8:8000::1", false},
      {"127.0.0.0/8", "::ffff:127.0.0.1", true},   // dual-stack peer
      {"::ffff:10.0.0.0/104", "10.9.9.9", true},  // mapped block = IPv4 block
  };
  for (const Row& row : rows) {
    absl::StatusOr<Cidr> cidr = Cidr::Parse(row.cidr);
    ASSERT_TRUE(cidr.ok()) << row.cidr << ": " << cidr.status();
    EXPECT_EQ(cidr->Contains(Ip(row.address)), row.inside) << row.cidr << " " << row.address;
  }
  for (const char* bad : {"127.0.0.1/8", "10.0.0.0/33", "::/129", "1.2.3.4/", "1.2.3.4/x",
                          "host/8", "::ffff:10.0.0.0/64", "10.0.0.0/-1"}) {
    EXPECT_FALSE(Cidr::Parse(bad).ok()) << bad;
  }
}

TEST(PolicyTest, RelayDecision) {
  PolicyOptions options;
  options.relay_hosts = {"127.0.0.0/8", "::1", "2001:db8:1::/48"};
  options.relay_domains = {"Example.COM", ".sub.example.net"};
  absl::StatusOr<Policy> policy = Policy::Create(options);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(policy->RelayAllowed(Ip("127.0.0.1"), "u", "anywhere.org"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("::1"), "u", "anywhere.org"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("::ffff:127.0.0.9"), "u", "anywhere.org"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("2001:db8:1:2::3"), "u", "anywhere.org"));
  EXPECT_FALSE(policy->RelayAllowed(Ip("2001:db8:2::3"), "u", "anywhere.org"));
  EXPECT_FALSE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "anywhere.org"));
  EXPECT_FALSE(policy->RelayAllowed(std::nullopt, "u", "anywhere.org"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "example.com"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "EXAMPLE.com."));
  EXPECT_FALSE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "mail.example.com"));  // exact only
  EXPECT_TRUE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "a.sub.example.net"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "A.B.SUB.example.net"));
  EXPECT_FALSE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "sub.example.net"));
  EXPECT_FALSE(policy->RelayAllowed(Ip("192.0.2.1"), "u", "xsub.example.net"));
  EXPECT_FALSE(policy->RelayAllowed(Ip("192.0.2.1"), "u", ""));
  // No routing through a relay_domains domain from outside relay_hosts: the percent hack,
  // a bang path, a quoted '@'. A relay host may (it could relay anywhere anyway).
  for (const char* local : {"u%evil.test", "evil.test!u", "\"u@evil.test\"", "\"u%x\""}) {
    EXPECT_FALSE(policy->RelayAllowed(Ip("192.0.2.1"), local, "example.com")) << local;
    EXPECT_TRUE(policy->RelayAllowed(Ip("127.0.0.1"), local, "example.com")) << local;
  }
  EXPECT_TRUE(policy->RelayAllowed(Ip("192.0.2.1"), "\"u x\"", "example.com"));
  EXPECT_TRUE(policy->RelayAllowed(Ip("192.0.2.1"), "first.last+tag", "example.com"));
}

TEST(PolicyTest, EmptyPolicyIsNotAnOpenRelay) {
  absl::StatusOr<Policy> policy = Policy::Create({});
  ASSERT_TRUE(policy.ok());
  EXPECT_FALSE(policy->RelayAllowed(Ip("127.0.0.1"), "u", "example.com"));
}

TEST(PolicyTest, BadEntriesAreNamed) {
  PolicyOptions hosts;
  hosts.relay_hosts = {"127.0.0.0/8", "10.0.0.1/8"};
  absl::StatusOr<Policy> p = Policy::Create(hosts);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("10.0.0.1/8"), std::string::npos);
  PolicyOptions domains;
  domains.relay_domains = {"exa mple.com"};
  p = Policy::Create(domains);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("exa mple.com"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Paths and parameters

std::optional<ReplyId> Mail(std::string_view argument, MailArguments* out = nullptr) {
  MailArguments scratch;
  return ParseMailArguments(argument, out ? out : &scratch);
}

std::optional<ReplyId> Rcpt(std::string_view argument, bool smtputf8 = false,
                            RcptArguments* out = nullptr) {
  RcptArguments scratch;
  return ParseRcptArguments(argument, smtputf8, out ? out : &scratch);
}

TEST(PathTest, GoodMailPaths) {
  MailArguments m;
  EXPECT_EQ(Mail("FROM:<user@example.com>", &m), std::nullopt);
  EXPECT_EQ(m.sender.address, "user@example.com");
  EXPECT_EQ(m.sender.local_part, "user");
  EXPECT_EQ(m.sender.domain, "example.com");
  EXPECT_EQ(Mail("from:<>", &m), std::nullopt);
  EXPECT_EQ(m.sender.address, "");
  EXPECT_EQ(Mail("FROM: <a.b+c@[192.0.2.1]>", &m), std::nullopt);  // space after colon
  EXPECT_EQ(m.sender.domain, "[192.0.2.1]");
  EXPECT_EQ(Mail("FROM:<x@[IPv6:2001:db8::1]>"), std::nullopt);
  EXPECT_EQ(Mail("FROM:<\"john doe>\"@example.com>", &m), std::nullopt);  // quoted '>'
  EXPECT_EQ(m.sender.address, "\"john doe>\"@example.com");
  EXPECT_EQ(Mail("FROM:<@relay.one,@relay.two:user@example.com>", &m), std::nullopt);
  EXPECT_EQ(m.sender.address, "user@example.com");  // source route dropped
  EXPECT_EQ(Mail("FROM:<a@localhost>"), std::nullopt);
}

TEST(PathTest, BadPaths) {
  struct Row {
    const char* argument;
    ReplyId reply;
  };
  const Row rows[] = {
      {"FROM:user@example.com", ReplyId::kMailSyntax},  // brackets required
      {"TO:<a@b>", ReplyId::kMailSyntax},
      {"FROM:<user@example.com", ReplyId::kBadSender},
      {"FROM:<user>", ReplyId::kBadSender},
      {"FROM:<@example.com>", ReplyId::kBadSender},
      {"FROM:<a..b@example.com>", ReplyId::kBadSender},
      {"FROM:<.a@example.com>", ReplyId::kBadSender},
      {"FROM:<a.@example.com>", ReplyId::kBadSender},
      {"FROM:<a@-example.com>", ReplyId::kBadSender},
      {"FROM:<a@example-.com>", ReplyId::kBadSender},
      {"FROM:<a@example..com>", ReplyId::kBadSender},
      {"FROM:<a@example.com.>", ReplyId::kBadSender},
      {"FROM:<a b@example.com>", ReplyId::kBadSender},
      {"FROM:<a@[300.1.1.1]>", ReplyId::kBadSender},
      {"FROM:<a@[IPv6:zz::1]>", ReplyId::kBadSender},
      {"FROM:<\"unterminated@example.com>", ReplyId::kBadSender},
      {"FROM:<@relay:user@example.com>x", ReplyId::kMailSyntax},
      {"FROM:<a@b>SIZE=10", ReplyId::kMailSyntax},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(Mail(row.argument), row.reply) << row.argument;
  }
  EXPECT_EQ(Rcpt("TO:<>"), ReplyId::kBadRecipient);
  EXPECT_EQ(Rcpt("TO:a@b"), ReplyId::kRcptSyntax);
  EXPECT_EQ(Rcpt("FROM:<a@b>"), ReplyId::kRcptSyntax);
  EXPECT_EQ(Rcpt("TO:<a@b"), ReplyId::kBadRecipient);
}

TEST(PathTest, LengthLimits) {
  const std::string local64(64, 'l');
  const std::string label(63, 'd');
  std::string domain = label + "." + label + "." + label + "." + std::string(61, 'd');  // 253
  EXPECT_EQ(Rcpt("TO:<" + local64 + "@example.com>"), std::nullopt);
  EXPECT_EQ(Rcpt("TO:<" + local64 + "l@example.com>"), ReplyId::kRecipientTooLong);
  EXPECT_EQ(Mail("FROM:<" + local64 + "l@example.com>"), ReplyId::kSenderTooLong);
  // A 64-octet local part and a 253-octet domain make a 320-octet path: over 256.
  EXPECT_EQ(Rcpt("TO:<" + local64 + "@" + domain + ">"), ReplyId::kRecipientPathTooLong);
  EXPECT_EQ(Mail("FROM:<" + local64 + "@" + domain + ">"), ReplyId::kSenderPathTooLong);
  // Exactly 256 octets including the brackets is fine.
  const std::string short_domain =
      label + "." + label + "." + label + "." + std::string(60, 'x');  // 252
  const std::string path = "<a@" + short_domain + ">";
  ASSERT_EQ(path.size(), 256u);
  EXPECT_EQ(Rcpt("TO:" + path), std::nullopt);
  EXPECT_EQ(Rcpt("TO:<a@" + short_domain + "x>"), ReplyId::kRecipientPathTooLong);
  EXPECT_EQ(Rcpt("TO:<a@" + std::string(64, 'x') + ".com>"), ReplyId::kBadRecipient);
}

TEST(PathTest, PostmasterWithoutDomain) {
  RcptArguments r;
  EXPECT_EQ(Rcpt("TO:<PostMaster>", false, &r), std::nullopt);
  EXPECT_TRUE(r.recipient.postmaster);
  EXPECT_EQ(r.recipient.domain, "");
  EXPECT_EQ(Rcpt("TO:<postmaster@example.com>", false, &r), std::nullopt);
  EXPECT_FALSE(r.recipient.postmaster);  // with a domain it is an ordinary recipient
  EXPECT_EQ(Mail("FROM:<postmaster>"), ReplyId::kBadSender);
}

TEST(PathTest, Utf8NeedsSmtputf8) {
  const std::string utf8_local = "FROM:<j\xc3\xb6rg@example.com>";
  EXPECT_EQ(Mail(utf8_local), ReplyId::kNonAsciiAddress);
  MailArguments m;
  EXPECT_EQ(Mail(utf8_local + " SMTPUTF8", &m), std::nullopt);
  EXPECT_TRUE(m.smtputf8);
  EXPECT_TRUE(m.sender.non_ascii);
  const std::string utf8_domain = "TO:<a@b\xc3\xbc" "cher.example>";
  EXPECT_EQ(Rcpt(utf8_domain, false), ReplyId::kNonAsciiAddress);
  EXPECT_EQ(Rcpt(utf8_domain, true), std::nullopt);
  EXPECT_EQ(Rcpt("TO:<a\xc3@example.com>", true), ReplyId::kBadRecipient);    // truncated
  EXPECT_EQ(Rcpt("TO:<a\xc0\xaf@example.com>", true), ReplyId::kBadRecipient);  // overlong
  EXPECT_EQ(Rcpt("TO:<a\xed\xa0\x80@example.com>", true), ReplyId::kBadRecipient);  // surrogate
}

TEST(ParameterTest, MailParameters) {
  MailArguments m;
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE=12345 BODY=8bitmime", &m), std::nullopt);
  EXPECT_TRUE(m.size_given);
  EXPECT_EQ(m.size_bytes, 12345u);
  EXPECT_EQ(m.body, BodyType::k8BitMime);
  EXPECT_EQ(m.parameters, "SIZE=12345 BODY=8bitmime");
  EXPECT_EQ(Mail("FROM:<a@b.c>  body=BINARYMIME  ", &m), std::nullopt);
  EXPECT_EQ(m.body, BodyType::kBinaryMime);
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE=99999999999999999999", &m), std::nullopt);
  EXPECT_EQ(m.size_bytes, UINT64_MAX);
  EXPECT_EQ(Mail("FROM:<a@b.c> BODY=7BIT", &m), std::nullopt);
  EXPECT_EQ(m.body, BodyType::k7Bit);

  EXPECT_EQ(Mail("FROM:<a@b.c> AUTH=<>"), ReplyId::kUnknownMailParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> RET=FULL"), ReplyId::kUnknownMailParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE=12x"), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE="), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE=1 SIZE=2"), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> SIZE=123456789012345678901"), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> BODY=9BIT"), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> SMTPUTF8=yes"), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> -X=1"), ReplyId::kBadParameter);
  EXPECT_EQ(Mail("FROM:<a@b.c> X=a=b"), ReplyId::kBadParameter);
  std::string many = "FROM:<a@b.c>";
  for (int i = 0; i < 17; ++i) many += " SMTPUTF8";
  EXPECT_EQ(Mail(many), ReplyId::kBadParameter);
}

// EHLO offers no RCPT extension (no DSN): every parameter is 555, a malformed one 501.
TEST(ParameterTest, RcptParameters) {
  RcptArguments r;
  EXPECT_EQ(Rcpt("TO:<a@b.c>  ", false, &r), std::nullopt);
  EXPECT_EQ(r.parameters, "");
  EXPECT_EQ(Rcpt("TO:<a@b.c> NOTIFY=SUCCESS,FAILURE"), ReplyId::kUnknownRcptParameter);
  EXPECT_EQ(Rcpt("TO:<a@b.c> ORCPT=rfc822;a@b.c"), ReplyId::kUnknownRcptParameter);
  EXPECT_EQ(Rcpt("TO:<a@b.c> FOO=1"), ReplyId::kUnknownRcptParameter);
  EXPECT_EQ(Rcpt("TO:<a@b.c> NOTIFY"), ReplyId::kUnknownRcptParameter);
  EXPECT_EQ(Rcpt("TO:<a@b.c> X=a=b"), ReplyId::kBadParameter);
}

TEST(HeloTest, Arguments) {
  EXPECT_TRUE(ValidHeloArgument("client.example"));
  EXPECT_TRUE(ValidHeloArgument("[192.0.2.1]"));
  EXPECT_FALSE(ValidHeloArgument(""));
  EXPECT_FALSE(ValidHeloArgument("two words"));
  EXPECT_FALSE(ValidHeloArgument("tab\there"));
  EXPECT_FALSE(ValidHeloArgument(std::string(256, 'a')));
  EXPECT_FALSE(ValidHeloArgument("bad\xff"));
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
