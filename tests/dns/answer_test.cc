// ParseAnswer and the wire walker on crafted messages: c-ares status mapping, MX parsing
// with hostile host names, null MX, caps, TTLs from the answer and the SOA.
#include "dns/answer.h"

#include <ares.h>

#include <string>

#include "dns/internal/wire.h"
#include "gtest/gtest.h"
#include "tests/dns/dns_packet_util.h"

namespace ringmail::dns {
namespace {

using testing::Encode;
using testing::Message;
using testing::Rr;

AnswerPtr Parse(RecordType type, int status, const std::string& msg) {
  return ParseAnswer(type, "example.test", status,
                     reinterpret_cast<const uint8_t*>(msg.data()), static_cast<int>(msg.size()));
}

Message MxMessage(std::vector<Rr> answers) {
  Message m;
  m.qname = "example.test";
  m.qtype = testing::kTypeMx;
  m.answers = std::move(answers);
  return m;
}

Rr Mx(uint16_t pref, const std::string& host, uint32_t ttl = 300) {
  return Rr{"example.test", testing::kTypeMx, ttl, testing::MxRdata(pref, host)};
}

TEST(AnswerTest, MxHostsValidatedCanonicalAndMinTtl) {
  std::string msg = Encode(MxMessage({Mx(20, "MX2.Example.Test", 600), Mx(10, "mx1.example.test"),
                                      Mx(10, "bad host.example.test"),
                                      Mx(30, std::string(64, 'x').substr(0, 63) + ".t")}));
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS, msg);
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData) << a->error;
  EXPECT_FALSE(a->null_mx);
  ASSERT_EQ(a->mx.size(), 3u);
  EXPECT_EQ(a->mx[0], (MxHost{10, "mx1.example.test"}));
  EXPECT_EQ(a->mx[1], (MxHost{20, "mx2.example.test"}));
  EXPECT_EQ(a->mx[2].preference, 30);
  EXPECT_EQ(a->dropped, 1u);
  EXPECT_EQ(a->ttl_s, 300u);
}

TEST(AnswerTest, HostNamesWithEscapedOctetsAreDropped) {
  // c-ares escapes '.', '\' and non-printables inside labels; none is a host name.
  std::string raw_label_dot = std::string("\x05") + "a.b\x01" + "c" + std::string(1, '\0');
  Rr weird{"example.test", testing::kTypeMx, 300, std::string("\x00\x05", 2) + raw_label_dot};
  std::string msg = Encode(MxMessage({weird, Mx(10, "ok.example.test")}));
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS, msg);
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData) << a->error;
  ASSERT_EQ(a->mx.size(), 1u);
  EXPECT_EQ(a->mx[0].host, "ok.example.test");
  EXPECT_EQ(a->dropped, 1u);
}

// A query echoed back (QR clear) is no answer, whatever status c-ares gave it: NODATA for an
// empty "answer" would have made the domain look mailless and bounced its mail.
TEST(AnswerTest, AQueryIsNotAnAnswer) {
  std::string query = Encode(MxMessage({}));
  ASSERT_GE(query.size(), 3u);
  query[2] = static_cast<char>(query[2] & 0x7f);  // QR = 0: a query
  for (int status : {ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND}) {
    AnswerPtr a = Parse(RecordType::kMx, status, query);
    ASSERT_EQ(a->kind, RecordAnswer::Kind::kError) << status;
    EXPECT_EQ(a->error.code(), absl::StatusCode::kUnavailable) << status;
  }
  AnswerPtr empty = Parse(RecordType::kMx, ARES_ENODATA, Encode(MxMessage({})));
  EXPECT_EQ(empty->kind, RecordAnswer::Kind::kNoData);  // the same, as a response
}

TEST(AnswerTest, NullMx) {
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS, Encode(MxMessage({Mx(0, ".")})));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData);
  EXPECT_TRUE(a->null_mx);
  EXPECT_TRUE(a->mx.empty());
}

TEST(AnswerTest, RootTargetNextToRealHostsIsIgnored) {
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS,
                      Encode(MxMessage({Mx(0, "."), Mx(10, "mx.example.test")})));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData);
  EXPECT_FALSE(a->null_mx);
  ASSERT_EQ(a->mx.size(), 1u);
}

TEST(AnswerTest, OnlyInvalidHostsIsATemporaryError) {
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS,
                      Encode(MxMessage({Mx(10, "a b"), Mx(20, "c\\d")})));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kError);
  EXPECT_EQ(a->error.code(), absl::StatusCode::kUnavailable);
}

TEST(AnswerTest, MxListIsCapped) {
  std::vector<Rr> many;
  for (int i = 0; i < 200; ++i) {
    many.push_back(Mx(static_cast<uint16_t>(1000 - i), "mx" + std::to_string(i) + ".t"));
  }
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS, Encode(MxMessage(many)));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData);
  ASSERT_EQ(a->mx.size(), kMxHostsMax);
  EXPECT_EQ(a->mx.front().preference, 801);  // the most preferred are kept
}

TEST(AnswerTest, TruncatedAnswerIsATemporaryError) {
  Message m = MxMessage({Mx(10, "mx.example.test")});
  m.ancount_override = 3;  // claims three, carries one
  AnswerPtr a = Parse(RecordType::kMx, ARES_SUCCESS, Encode(m));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kError);
  EXPECT_EQ(a->error.code(), absl::StatusCode::kUnavailable);
  std::string cut = Encode(MxMessage({Mx(10, "mx.example.test")}));
  cut.resize(cut.size() - 5);
  a = Parse(RecordType::kMx, ARES_SUCCESS, cut);
  EXPECT_EQ(a->kind, RecordAnswer::Kind::kError);
}

TEST(AnswerTest, AddressesAndTtl) {
  Message m;
  m.qname = "example.test";
  m.qtype = testing::kTypeA;
  m.answers = {{"example.test", testing::kTypeA, 50, testing::ARdata("192.0.2.1")},
               {"example.test", testing::kTypeA, 40, testing::ARdata("192.0.2.2")}};
  AnswerPtr a = Parse(RecordType::kA, ARES_SUCCESS, Encode(m));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData) << a->error;
  ASSERT_EQ(a->addresses.size(), 2u);
  EXPECT_EQ(a->addresses[0].ToString(), "192.0.2.1");
  EXPECT_EQ(a->addresses[1].ToString(), "192.0.2.2");
  EXPECT_EQ(a->ttl_s, 40u);

  m.qtype = testing::kTypeAaaa;
  m.answers = {{"example.test", testing::kTypeAaaa, 70, testing::AaaaRdata("2001:db8::5")}};
  a = Parse(RecordType::kAaaa, ARES_SUCCESS, Encode(m));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData) << a->error;
  ASSERT_EQ(a->addresses.size(), 1u);
  EXPECT_EQ(a->addresses[0].family, AF_INET6);
  EXPECT_EQ(a->addresses[0].ToString(), "2001:db8::5");
  EXPECT_EQ(a->ttl_s, 70u);
}

TEST(AnswerTest, AddressListIsCapped) {
  Message m;
  m.qname = "example.test";
  m.qtype = testing::kTypeA;
  for (int i = 0; i < 100; ++i) {
    m.answers.push_back({"example.test", testing::kTypeA, 60,
                         testing::ARdata("10.0.0." + std::to_string(i))});
  }
  AnswerPtr a = Parse(RecordType::kA, ARES_SUCCESS, Encode(m));
  ASSERT_EQ(a->kind, RecordAnswer::Kind::kData);
  EXPECT_EQ(a->addresses.size(), kAddressesMax);
}

TEST(AnswerTest, NegativeAnswersTakeTheirTtlFromTheSoa) {
  Message m;
  m.rcode = testing::kRcodeNxDomain;
  m.qname = "nx.test";
  m.qtype = testing::kTypeMx;
  m.authority = {{"test", testing::kTypeSoa, 3600, testing::SoaRdata(1, 7)}};
  AnswerPtr a = Parse(RecordType::kMx, ARES_ENOTFOUND, Encode(m));
  EXPECT_EQ(a->kind, RecordAnswer::Kind::kNxDomain);
  EXPECT_EQ(a->ttl_s, 7u);
  m.authority = {{"test", testing::kTypeSoa, 5, testing::SoaRdata(1, 900)}};
  a = Parse(RecordType::kMx, ARES_ENODATA, Encode(m));
  EXPECT_EQ(a->kind, RecordAnswer::Kind::kNoData);
  EXPECT_EQ(a->ttl_s, 5u);  // min(SOA TTL, MINIMUM)
  m.authority.clear();
  a = Parse(RecordType::kMx, ARES_ENODATA, Encode(m));
  EXPECT_EQ(a->ttl_s, kTtlUnknown);
  a = Parse(RecordType::kMx, ARES_ENOTFOUND, "");
  EXPECT_EQ(a->kind, RecordAnswer::Kind::kNxDomain);
}

TEST(AnswerTest, AresFailuresMapToStatusCodes) {
  struct Case {
    int ares;
    absl::StatusCode code;
  } cases[] = {{ARES_ETIMEOUT, absl::StatusCode::kDeadlineExceeded},
               {ARES_ESERVFAIL, absl::StatusCode::kUnavailable},
               {ARES_EREFUSED, absl::StatusCode::kUnavailable},
               {ARES_ECONNREFUSED, absl::StatusCode::kUnavailable},
               {ARES_EFORMERR, absl::StatusCode::kUnavailable},
               {ARES_EBADRESP, absl::StatusCode::kUnavailable},
               {ARES_ENOMEM, absl::StatusCode::kResourceExhausted},
               {ARES_EDESTRUCTION, absl::StatusCode::kCancelled},
               {ARES_EBADNAME, absl::StatusCode::kInvalidArgument}};
  for (const Case& c : cases) {
    AnswerPtr a = ParseAnswer(RecordType::kMx, "example.test", c.ares, nullptr, 0);
    ASSERT_EQ(a->kind, RecordAnswer::Kind::kError) << c.ares;
    EXPECT_EQ(a->error.code(), c.code) << ares_strerror(c.ares);
  }
}

TEST(WireTest, WalkerRejectsMalformedMessages) {
  std::string ok = Encode(MxMessage({Mx(10, "mx.example.test", 123)}));
  auto p = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  EXPECT_EQ(internal::MinAnswerTtl(p(ok), ok.size(), testing::kTypeMx), 123u);
  EXPECT_EQ(internal::MinAnswerTtl(p(ok), ok.size(), testing::kTypeA), std::nullopt);
  for (size_t cut = 0; cut < ok.size(); ++cut) {
    EXPECT_EQ(internal::MinAnswerTtl(p(ok), cut, testing::kTypeMx), std::nullopt) << cut;
  }
  Rr top_bit{"example.test", testing::kTypeMx, 0x80000001u, testing::MxRdata(1, "a.t")};
  std::string neg = Encode(MxMessage({top_bit}));
  EXPECT_EQ(internal::MinAnswerTtl(p(neg), neg.size(), testing::kTypeMx), 0u);
  Message soa;
  soa.qname = "x.test";
  soa.authority = {{"test", testing::kTypeSoa, 100, "short"}};
  std::string bad_soa = Encode(soa);
  EXPECT_EQ(internal::SoaNegativeTtl(p(bad_soa), bad_soa.size()), std::nullopt);
}

TEST(IpAddressTest, ParseFormatAndSockaddr) {
  auto v4 = IpAddress::Parse("127.0.0.1");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->family, AF_INET);
  sockaddr_storage ss;
  EXPECT_EQ(v4->ToSockaddr(25, &ss), sizeof(sockaddr_in));
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port), 25);
  auto v6 = IpAddress::Parse("::1");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->ToString(), "::1");
  EXPECT_EQ(v6->ToSockaddr(25, &ss), sizeof(sockaddr_in6));
  EXPECT_FALSE(IpAddress::Parse("mx.example.com").has_value());
  EXPECT_FALSE(IpAddress::Parse("").has_value());
  EXPECT_FALSE(IpAddress::Parse(std::string(200, '1')).has_value());
  // Found by fuzzing: inet_pton stops at a NUL, so "127.0.0.1\0junk" parsed as 127.0.0.1.
  EXPECT_FALSE(IpAddress::Parse(std::string_view("127.0.0.1\0junk", 14)).has_value());
}

}  // namespace
}  // namespace ringmail::dns
