// The resolver against a real DNS server (dnsmasq on 127.0.0.1, a free port): MX order,
// implicit MX, null MX, NXDOMAIN, A/AAAA, the cache (positive and negative) proven by
// dnsmasq's own query log and by stopping dnsmasq, coalescing, TCP, many lookups at once,
// the in-flight limit and the queue bound.
#include "dns/resolver.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "core/ring.h"
#include "gtest/gtest.h"
#include "tests/dns/dns_server_util.h"
#include "tests/dns/resolver_harness_util.h"

namespace ringmail::dns {
namespace {

using testing::Dnsmasq;
using testing::HostWaiter;
using testing::MxWaiter;
using testing::ResolverHarness;
using testing::TestOptions;

std::vector<std::string> Records() {
  return {
      "--mx-host=example.test,mx1.example.test,10",
      "--mx-host=example.test,mx3.example.test,10",
      "--mx-host=example.test,mx2.example.test,20",
      "--host-record=mx1.example.test,127.0.0.1,::1",
      "--host-record=mx2.example.test,127.0.0.2",
      "--host-record=mx3.example.test,127.0.0.3",
      "--host-record=implicit.test,127.0.0.5",
      "--host-record=v6only.test,::5",
      "--txt-record=txtonly.test,\"v=spf1 -all\"",
      "--mx-host=nullmx.test,.,0",
      "--address=/many.test/127.0.0.9",
      "--address=/many.test/::9",
  };
}

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = core::ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
    auto d = Dnsmasq::Start(Records());
    if (d.status().code() == absl::StatusCode::kFailedPrecondition) {
      GTEST_SKIP() << d.status();
    }
    ASSERT_TRUE(d.ok()) << d.status();
    dnsmasq_ = std::move(d).value();
  }

  absl::Status StartResolver(ResolverOptions o) { return harness_.Start(std::move(o)); }
  absl::Status StartResolver() { return StartResolver(TestOptions(dnsmasq_->server())); }

  std::unique_ptr<Dnsmasq> dnsmasq_;
  ResolverHarness harness_;
};

std::vector<std::string> Hosts(const MxAnswer& a) {
  std::vector<std::string> out;
  for (const MxHost& h : a.hosts) out.push_back(h.host);
  return out;
}

TEST_F(ResolverTest, MxSortedByPreferenceWithEqualPreferencesShuffled) {
  ASSERT_TRUE(StartResolver().ok());
  std::set<std::vector<std::string>> orders;
  for (int i = 0; i < 64; ++i) {
    testing::MxResult r = harness_.Mx(i % 2 ? "EXAMPLE.test." : "example.test");
    ASSERT_TRUE(r.status.ok()) << r.status;
    EXPECT_FALSE(r.answer.implicit);
    ASSERT_EQ(r.answer.hosts.size(), 3u);
    EXPECT_EQ(r.answer.hosts[0].preference, 10);
    EXPECT_EQ(r.answer.hosts[1].preference, 10);
    EXPECT_EQ(r.answer.hosts[2], (MxHost{20, "mx2.example.test"}));
    orders.insert(Hosts(r.answer));
  }
  // Both orders of the two preference-10 hosts appear (each lookup reshuffles).
  EXPECT_EQ(orders.size(), 2u);
  // One query reached the server; the other 63 lookups were cache hits.
  EXPECT_EQ(dnsmasq_->CountQueries("MX", "example.test"), 1);
  EXPECT_EQ(harness_.Stats().cache_hits, 63u);
}

TEST_F(ResolverTest, ImplicitMxWhenTheDomainHasOnlyAnAddress) {
  ASSERT_TRUE(StartResolver().ok());
  testing::MxResult r = harness_.Mx("implicit.test");
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_TRUE(r.answer.implicit);
  EXPECT_EQ(r.answer.hosts, (std::vector<MxHost>{{0, "implicit.test"}}));
  r = harness_.Mx("v6only.test");
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_TRUE(r.answer.implicit);
}

TEST_F(ResolverTest, NoMxAndNoAddressIsPermanent) {
  ASSERT_TRUE(StartResolver().ok());
  testing::MxResult r = harness_.Mx("txtonly.test");
  EXPECT_EQ(r.status.code(), absl::StatusCode::kNotFound) << r.status;
  EXPECT_TRUE(r.answer.hosts.empty());
}

TEST_F(ResolverTest, NullMxMeansTheDomainAcceptsNoMail) {
  ASSERT_TRUE(StartResolver().ok());
  testing::MxResult r = harness_.Mx("nullmx.test");
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition) << r.status;
  EXPECT_NE(r.status.message().find("null MX"), absl::string_view::npos);
  EXPECT_TRUE(r.answer.hosts.empty());
}

TEST_F(ResolverTest, NxDomainIsPermanentAndNegativelyCached) {
  ASSERT_TRUE(StartResolver().ok());
  testing::MxResult r = harness_.Mx("nope.test");
  EXPECT_EQ(r.status.code(), absl::StatusCode::kNotFound) << r.status;
  testing::HostResult h = harness_.Host("nohost.test");
  EXPECT_EQ(h.status.code(), absl::StatusCode::kNotFound) << h.status;
  // Cached for the default negative TTL (dnsmasq sends no SOA for --local names).
  uint64_t now = 0;
  std::optional<uint64_t> expiry;
  harness_.OnLoop([&] {
    now = harness_.loop().now_ms();
    expiry = harness_.resolver().cache().ExpiryMs(RecordType::kMx, "nope.test");
  });
  ASSERT_TRUE(expiry.has_value());
  EXPECT_GT(*expiry, now + 50'000);
  EXPECT_LE(*expiry, now + 61'000);
  // The server is gone, yet the answer stays NXDOMAIN: it came from the negative cache.
  dnsmasq_->Stop();
  r = harness_.Mx("nope.test");
  EXPECT_EQ(r.status.code(), absl::StatusCode::kNotFound) << r.status;
  h = harness_.Host("nohost.test");
  EXPECT_EQ(h.status.code(), absl::StatusCode::kNotFound) << h.status;
  EXPECT_EQ(harness_.Stats().queries_sent, 3u);  // MX nope, A and AAAA nohost
}

TEST_F(ResolverTest, PositiveAnswersAreCachedForTheirTtl) {
  ASSERT_TRUE(StartResolver().ok());
  testing::MxResult first = harness_.Mx("example.test");
  ASSERT_TRUE(first.status.ok()) << first.status;
  testing::HostResult host = harness_.Host("mx1.example.test");
  ASSERT_TRUE(host.status.ok()) << host.status;
  uint64_t now = 0;
  std::optional<uint64_t> expiry;
  harness_.OnLoop([&] {
    now = harness_.loop().now_ms();
    expiry = harness_.resolver().cache().ExpiryMs(RecordType::kMx, "example.test");
  });
  ASSERT_TRUE(expiry.has_value());
  EXPECT_GT(*expiry, now + 290'000);  // dnsmasq --local-ttl=300
  EXPECT_LE(*expiry, now + 300'000);
  dnsmasq_->Stop();
  testing::MxResult again = harness_.Mx("example.test");
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.answer.hosts.size(), 3u);
  testing::HostResult host_again = harness_.Host("mx1.example.test");
  ASSERT_TRUE(host_again.status.ok()) << host_again.status;
  EXPECT_EQ(host_again.answer.addresses, host.answer.addresses);
}

TEST_F(ResolverTest, ResolvesAAndAaaa) {
  ASSERT_TRUE(StartResolver().ok());
  testing::HostResult h = harness_.Host("mx1.example.test");
  ASSERT_TRUE(h.status.ok()) << h.status;
  ASSERT_EQ(h.answer.addresses.size(), 2u);
  EXPECT_EQ(h.answer.addresses[0].ToString(), "127.0.0.1");  // A first
  EXPECT_EQ(h.answer.addresses[1].ToString(), "::1");
  h = harness_.Host("mx2.example.test");  // A only: AAAA is NODATA
  ASSERT_TRUE(h.status.ok()) << h.status;
  ASSERT_EQ(h.answer.addresses.size(), 1u);
  EXPECT_EQ(h.answer.addresses[0].ToString(), "127.0.0.2");
  h = harness_.Host("txtonly.test");  // exists, no address
  EXPECT_EQ(h.status.code(), absl::StatusCode::kNotFound) << h.status;
}

TEST_F(ResolverTest, InvalidNamesAreRefusedWithoutAQuery) {
  ASSERT_TRUE(StartResolver().ok());
  for (const std::string& bad : {std::string("a b.test"), std::string("x..test"),
                                 std::string(300, 'a'), std::string("")}) {
    EXPECT_EQ(harness_.Mx(bad).status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(harness_.Host(bad).status.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(harness_.Stats().queries_sent, 0u);
}

TEST_F(ResolverTest, ConcurrentLookupsOfOneNameShareOneQuery) {
  ASSERT_TRUE(StartResolver().ok());
  constexpr int kLookups = 5;
  MxWaiter mx[kLookups];
  HostWaiter host[kLookups];
  harness_.OnLoop([&] {
    for (int i = 0; i < kLookups; ++i) {
      harness_.resolver().ResolveMx("example.test", mx[i].lookup);
      harness_.resolver().ResolveHost("mx1.example.test", host[i].lookup);
    }
  });
  for (int i = 0; i < kLookups; ++i) {
    mx[i].done.WaitForNotification();
    host[i].done.WaitForNotification();
    EXPECT_TRUE(mx[i].lookup.status().ok()) << mx[i].lookup.status();
    EXPECT_EQ(mx[i].lookup.answer().hosts.size(), 3u);
    EXPECT_EQ(host[i].lookup.answer().addresses.size(), 2u);
    EXPECT_EQ(mx[i].calls, 1);
  }
  ResolverStats s = harness_.Stats();
  EXPECT_EQ(s.queries_sent, 3u);  // MX, A, AAAA
  EXPECT_EQ(s.coalesced, 3u * (kLookups - 1));
  EXPECT_EQ(dnsmasq_->CountQueries("MX", "example.test"), 1);
  EXPECT_EQ(dnsmasq_->CountQueries("A", "mx1.example.test"), 1);
  EXPECT_EQ(dnsmasq_->CountQueries("AAAA", "mx1.example.test"), 1);
}

TEST_F(ResolverTest, WorksOverTcp) {
  ResolverOptions o = TestOptions(dnsmasq_->server());
  o.channel.tcp = true;
  ASSERT_TRUE(StartResolver(o).ok());
  testing::MxResult r = harness_.Mx("example.test");
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.answer.hosts.size(), 3u);
  testing::HostResult h = harness_.Host("mx1.example.test");
  ASSERT_TRUE(h.status.ok()) << h.status;
  EXPECT_EQ(h.answer.addresses.size(), 2u);
}

TEST_F(ResolverTest, SocketsCloseWhenIdleAndReopenForTheNextQuery) {
  ASSERT_TRUE(StartResolver().ok());
  for (const char* host : {"mx1.example.test", "mx2.example.test", "mx3.example.test"}) {
    ASSERT_TRUE(harness_.Host(host).status.ok()) << host;
    size_t open = 1;
    bool idle = false;
    harness_.OnLoop([&] {
      open = harness_.resolver().channel().sockets();
      idle = harness_.resolver().channel().idle();
    });
    // c-ares closes its socket when no query is left — inside the read readiness that
    // delivered the last answer, so no poll is left armed on it.
    EXPECT_EQ(open, 0u);
    EXPECT_TRUE(idle);
  }
  ChannelStats s;
  harness_.OnLoop([&] { s = harness_.resolver().channel().stats(); });
  EXPECT_EQ(s.sockets_opened, 3u);
  EXPECT_EQ(s.sockets_closed, 3u);
  EXPECT_GE(s.readiness, 3u);
  EXPECT_EQ(s.poll_errors, 0u);
}

// Many distinct names at once, with `in_flight_max` queries outstanding at most.
void ManyLookups(ResolverHarness& harness, int count, size_t in_flight_max) {
  std::vector<std::unique_ptr<HostWaiter>> waiters;
  for (int i = 0; i < count; ++i) waiters.push_back(std::make_unique<HostWaiter>());
  harness.OnLoop([&] {
    for (int i = 0; i < count; ++i) {
      harness.resolver().ResolveHost("h" + std::to_string(i) + ".many.test", waiters[i]->lookup);
    }
  });
  for (int i = 0; i < count; ++i) {
    waiters[i]->done.WaitForNotification();
    const HostLookup& l = waiters[i]->lookup;
    ASSERT_TRUE(l.status().ok()) << l.host() << ": " << l.status();
    ASSERT_EQ(l.answer().addresses.size(), 2u) << l.host();
    EXPECT_EQ(l.answer().addresses[0].ToString(), "127.0.0.9");
  }
  ResolverStats s = harness.Stats();
  EXPECT_EQ(s.queries_sent, 2u * count);
  EXPECT_LE(s.queries_in_flight_peak, in_flight_max);
  EXPECT_EQ(s.queries_in_flight, 0u);
}

TEST_F(ResolverTest, ManyConcurrentLookups) {
  // 1000 queries, 64 outstanding at a time. (800 at once overflow dnsmasq's default UDP
  // receive buffer: the server drops them and the test would measure retries.)
  ResolverOptions o = TestOptions(dnsmasq_->server());
  o.queries_in_flight_max = 64;
  ASSERT_TRUE(StartResolver(o).ok());
  ManyLookups(harness_, 500, 64);
  EXPECT_EQ(harness_.Stats().queries_in_flight_peak, 64u);
}

TEST_F(ResolverTest, InFlightLimitQueuesTheExcess) {
  ResolverOptions o = TestOptions(dnsmasq_->server());
  o.queries_in_flight_max = 8;
  ASSERT_TRUE(StartResolver(o).ok());
  ManyLookups(harness_, 200, 8);
  ResolverStats s = harness_.Stats();
  EXPECT_EQ(s.queries_in_flight_peak, 8u);
  EXPECT_GT(s.queries_queued, 0u);
}

TEST_F(ResolverTest, FullQueueRejectsWithResourceExhausted) {
  ResolverOptions o = TestOptions(dnsmasq_->server());
  o.queries_in_flight_max = 1;
  o.queries_queued_max = 2;
  ASSERT_TRUE(StartResolver(o).ok());
  constexpr int kLookups = 6;
  MxWaiter w[kLookups];
  harness_.OnLoop([&] {
    for (int i = 0; i < kLookups; ++i) {
      harness_.resolver().ResolveMx("m" + std::to_string(i) + ".many.test", w[i].lookup);
    }
  });
  int exhausted = 0;
  for (int i = 0; i < kLookups; ++i) {
    w[i].done.WaitForNotification();
    absl::StatusCode code = w[i].lookup.status().code();
    if (i < 3) {
      EXPECT_EQ(code, absl::StatusCode::kNotFound) << i << " " << w[i].lookup.status();
    } else {
      EXPECT_EQ(code, absl::StatusCode::kResourceExhausted) << i << " " << w[i].lookup.status();
    }
    exhausted += code == absl::StatusCode::kResourceExhausted;
  }
  EXPECT_EQ(exhausted, 3);
  EXPECT_EQ(harness_.Stats().queries_rejected, 3u);
}

TEST_F(ResolverTest, HandlerMayStartTheNextLookup) {
  ASSERT_TRUE(StartResolver().ok());
  // A delivery-shaped chain: MX, then each host's addresses, from inside the handlers.
  struct Chain {
    Resolver* resolver = nullptr;
    MxLookup mx;
    HostLookup host;
    std::vector<std::string> addresses;
    size_t next = 0;
    absl::Notification done;
    void MxDone(MxLookup& l) {
      if (!l.status().ok()) return done.Notify();
      resolver->ResolveHost(l.answer().hosts[next].host, host);
    }
    void HostDone(HostLookup& l) {
      for (const IpAddress& a : l.answer().addresses) addresses.push_back(a.ToString());
      if (++next < mx.answer().hosts.size()) {
        resolver->ResolveHost(mx.answer().hosts[next].host, host);
      } else {
        done.Notify();
      }
    }
  } chain;
  chain.mx.Bind<&Chain::MxDone>(&chain);
  chain.host.Bind<&Chain::HostDone>(&chain);
  harness_.OnLoop([&] {
    chain.resolver = &harness_.resolver();
    harness_.resolver().ResolveMx("example.test", chain.mx);
  });
  chain.done.WaitForNotification();
  std::multiset<std::string> got(chain.addresses.begin(), chain.addresses.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"127.0.0.1", "::1", "127.0.0.2", "127.0.0.3"}));
}

}  // namespace
}  // namespace ringmail::dns
