// The resolver when the server misbehaves: silence (timeouts), SERVFAIL, REFUSED, nothing
// listening, hostile and malformed answers, SOA negative TTLs; and stopping the loop with
// queries in flight (every pending lookup completes with kCancelled, cancelled and
// destroyed lookups are never called back; ASan checks the rest).
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/ring.h"
#include "dns/resolver.h"
#include "gtest/gtest.h"
#include "tests/dns/dns_packet_util.h"
#include "tests/dns/dns_server_util.h"
#include "tests/dns/resolver_harness_util.h"

namespace ringmail::dns {
namespace {

using testing::FakeDnsServer;
using testing::HostWaiter;
using testing::MxWaiter;
using testing::ResolverHarness;
using testing::TestOptions;

class ResolverFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = core::ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
  }

  void Serve(FakeDnsServer::Responder responder) {
    auto s = FakeDnsServer::Start(std::move(responder));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
  }

  ResolverOptions Options(uint32_t timeout_ms, uint32_t tries) {
    ResolverOptions o = TestOptions(server_->server());
    o.channel.timeout_ms = timeout_ms;
    o.channel.tries = tries;
    return o;
  }

  std::unique_ptr<FakeDnsServer> server_;
  ResolverHarness harness_;  // declared last: stopped before the server goes away
};

TEST_F(ResolverFaultTest, SilenceTimesOutAsTemporary) {
  Serve(testing::Silent());
  ASSERT_TRUE(harness_.Start(Options(100, 2)).ok());
  auto start = std::chrono::steady_clock::now();
  testing::MxResult r = harness_.Mx("example.test");
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_EQ(server_->queries(), 2);  // tries
  EXPECT_LT(elapsed, std::chrono::seconds(5));
  // A timeout says nothing about the domain: it is not cached, the next lookup asks again.
  r = harness_.Mx("example.test");
  EXPECT_EQ(r.status.code(), absl::StatusCode::kDeadlineExceeded) << r.status;
  EXPECT_EQ(server_->queries(), 4);
  testing::HostResult h = harness_.Host("mx.example.test");
  EXPECT_EQ(h.status.code(), absl::StatusCode::kDeadlineExceeded) << h.status;
}

TEST_F(ResolverFaultTest, ServfailAndRefusedAreTemporary) {
  Serve(testing::Rcode(testing::kRcodeServFail));
  ASSERT_TRUE(harness_.Start(Options(500, 2)).ok());
  testing::MxResult r = harness_.Mx("example.test");
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_GE(server_->queries(), 1);
  harness_.Stop();

  Serve(testing::Rcode(testing::kRcodeRefused));
  ASSERT_TRUE(harness_.Start(Options(500, 2)).ok());
  testing::HostResult h = harness_.Host("mx.example.test");
  EXPECT_EQ(h.status.code(), absl::StatusCode::kUnavailable) << h.status;
}

TEST_F(ResolverFaultTest, NothingListeningIsTemporary) {
  absl::StatusOr<uint16_t> port = testing::PickFreeUdpPort();
  ASSERT_TRUE(port.ok());
  ResolverOptions o = TestOptions("127.0.0.1:" + std::to_string(*port));
  o.channel.timeout_ms = 200;
  ASSERT_TRUE(harness_.Start(o).ok());
  testing::MxResult r = harness_.Mx("example.test");
  // ICMP port unreachable → connection refused; or, if it is lost, a timeout.
  EXPECT_TRUE(r.status.code() == absl::StatusCode::kUnavailable ||
              r.status.code() == absl::StatusCode::kDeadlineExceeded)
      << r.status;
}

FakeDnsServer::Responder MxServed(std::vector<testing::Rr> answers, int ancount = -1) {
  return [answers, ancount](const testing::Question& q) -> std::optional<std::string> {
    testing::Message m;
    m.id = q.id;
    m.qname = q.name;
    m.qtype = q.type;
    if (q.type == testing::kTypeMx) {
      m.answers = answers;
      m.ancount_override = ancount;
    }
    return testing::Encode(m);
  };
}

testing::Rr MxRr(uint16_t pref, const std::string& host) {
  return {"example.test", testing::kTypeMx, 300, testing::MxRdata(pref, host)};
}

TEST_F(ResolverFaultTest, HostileMxHostsAreDropped) {
  std::string too_long = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                         std::string(63, 'c') + "." + std::string(63, 'd');
  Serve(MxServed({MxRr(5, "bad host.example"), MxRr(10, "good.example"), MxRr(1, too_long),
                  MxRr(7, "crlf\r\n.example")}));
  ASSERT_TRUE(harness_.Start(Options(500, 1)).ok());
  testing::MxResult r = harness_.Mx("example.test");
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.answer.hosts, (std::vector<MxHost>{{10, "good.example"}}));
}

TEST_F(ResolverFaultTest, AnswerWithOnlyHostileHostsIsTemporary) {
  Serve(MxServed({MxRr(5, "bad host.example"), MxRr(10, "x\\y.example")}));
  ASSERT_TRUE(harness_.Start(Options(500, 1)).ok());
  EXPECT_EQ(harness_.Mx("example.test").status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(ResolverFaultTest, MalformedAnswerIsTemporary) {
  Serve(MxServed({MxRr(10, "good.example")}, /*ancount=*/4));
  ASSERT_TRUE(harness_.Start(Options(300, 1)).ok());
  absl::Status s = harness_.Mx("example.test").status;
  // c-ares rejects it (bad response) or, if it drops the packet, the query times out.
  EXPECT_TRUE(s.code() == absl::StatusCode::kUnavailable ||
              s.code() == absl::StatusCode::kDeadlineExceeded)
      << s;
}

TEST_F(ResolverFaultTest, HugeMxSetIsCapped) {
  // 50 records with short names still fit the 1232-byte EDNS payload c-ares asks for.
  std::vector<testing::Rr> many;
  for (int i = 0; i < 50; ++i) {
    many.push_back({"e.t", testing::kTypeMx, 300,
                    testing::MxRdata(static_cast<uint16_t>(i), "m" + std::to_string(i) + ".x")});
  }
  Serve(MxServed(many));
  ASSERT_TRUE(harness_.Start(Options(500, 1)).ok());
  testing::MxResult r = harness_.Mx("e.t");
  ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_EQ(r.answer.hosts.size(), kMxHostsMax);
  EXPECT_EQ(r.answer.hosts.front(), (MxHost{0, "m0.x"}));
  EXPECT_EQ(r.answer.hosts.back(), (MxHost{kMxHostsMax - 1, "m31.x"}));
}

TEST_F(ResolverFaultTest, NegativeTtlComesFromTheSoa) {
  Serve([](const testing::Question& q) -> std::optional<std::string> {
    testing::Message m;
    m.id = q.id;
    m.rcode = testing::kRcodeNxDomain;
    m.qname = q.name;
    m.qtype = q.type;
    m.authority = {{"test", testing::kTypeSoa, 3600, testing::SoaRdata(1, 7)}};
    return testing::Encode(m);
  });
  ASSERT_TRUE(harness_.Start(Options(500, 1)).ok());
  EXPECT_EQ(harness_.Mx("gone.test").status.code(), absl::StatusCode::kNotFound);
  uint64_t now = 0;
  std::optional<uint64_t> expiry;
  harness_.OnLoop([&] {
    now = harness_.loop().now_ms();
    expiry = harness_.resolver().cache().ExpiryMs(RecordType::kMx, "gone.test");
  });
  ASSERT_TRUE(expiry.has_value());
  EXPECT_GT(*expiry, now + 5'000);
  EXPECT_LE(*expiry, now + 7'000);
  EXPECT_EQ(harness_.Mx("gone.test").status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(server_->queries(), 1);
}

TEST_F(ResolverFaultTest, StopWithQueriesInFlightCancelsEveryPendingLookup) {
  Serve(testing::Silent());
  ResolverOptions o = Options(5000, 3);
  o.queries_in_flight_max = 20;  // some start, the rest wait in the queue
  ASSERT_TRUE(harness_.Start(o).ok());
  constexpr int kLookups = 40;
  std::vector<std::unique_ptr<MxWaiter>> mx;
  std::vector<std::unique_ptr<HostWaiter>> host;
  for (int i = 0; i < kLookups; ++i) {
    mx.push_back(std::make_unique<MxWaiter>());
    host.push_back(std::make_unique<HostWaiter>());
  }
  auto cancelled = std::make_unique<MxWaiter>();
  harness_.OnLoop([&] {
    Resolver& r = harness_.resolver();
    for (int i = 0; i < kLookups; ++i) {
      r.ResolveMx("d" + std::to_string(i) + ".test", mx[i]->lookup);
      r.ResolveHost("h" + std::to_string(i) + ".test", host[i]->lookup);
    }
    r.ResolveMx("d0.test", cancelled->lookup);
    r.Cancel(cancelled->lookup);
    // Destroying a pending lookup cancels it; its query keeps going.
    auto doomed = std::make_unique<HostWaiter>();
    r.ResolveHost("doomed.test", doomed->lookup);
    doomed.reset();
  });
  EXPECT_GT(harness_.Stats().queries_in_flight, 0u);
  harness_.Stop();  // loop stop → resolver Shutdown → handlers with kCancelled
  for (int i = 0; i < kLookups; ++i) {
    ASSERT_TRUE(mx[i]->done.HasBeenNotified()) << i;
    ASSERT_TRUE(host[i]->done.HasBeenNotified()) << i;
    EXPECT_EQ(mx[i]->lookup.status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(host[i]->lookup.status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(mx[i]->calls, 1);
    EXPECT_EQ(host[i]->calls, 1);
  }
  EXPECT_EQ(cancelled->calls, 0);
  EXPECT_FALSE(cancelled->lookup.pending());
}

TEST_F(ResolverFaultTest, BadOptionsAreRefused) {
  ResolverHarness h;
  ResolverOptions o;
  o.channel.servers = {"not-an-address"};
  EXPECT_EQ(h.Start(o).code(), absl::StatusCode::kInvalidArgument);
  h.Stop();
  o.channel.servers = {"127.0.0.1:0"};
  EXPECT_EQ(h.Start(o).code(), absl::StatusCode::kInvalidArgument);
  h.Stop();
  o.channel.servers = {"127.0.0.1:53"};
  o.channel.timeout_ms = 0;
  EXPECT_EQ(h.Start(o).code(), absl::StatusCode::kInvalidArgument);
  h.Stop();
  o.channel.timeout_ms = 100;
  o.queries_in_flight_max = 0;
  EXPECT_EQ(h.Start(o).code(), absl::StatusCode::kInvalidArgument);
  h.Stop();
}

TEST(ParseServerTest, Forms) {
  struct Case {
    const char* text;
    int family;
    int port;
  } good[] = {{"127.0.0.1", AF_INET, 53},    {"127.0.0.1:5353", AF_INET, 5353},
              {"[::1]:5353", AF_INET6, 5353}, {"[::1]", AF_INET6, 53},
              {"::1", AF_INET6, 53},          {"2001:db8::1", AF_INET6, 53}};
  for (const Case& c : good) {
    absl::StatusOr<ares_addr_port_node> n = ParseServer(c.text);
    ASSERT_TRUE(n.ok()) << c.text << ": " << n.status();
    EXPECT_EQ(n->family, c.family) << c.text;
    EXPECT_EQ(n->udp_port, c.port) << c.text;
    EXPECT_EQ(n->tcp_port, c.port) << c.text;
  }
  for (const char* bad : {"", "localhost", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:53x", "[127.0.0.1]:53", "[::1", "[::1]53", "1.2.3:53",
                          "127.0.0.1:-1"}) {
    EXPECT_FALSE(ParseServer(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseServer(std::string(1000, '1')).ok());
}

}  // namespace
}  // namespace ringmail::dns
