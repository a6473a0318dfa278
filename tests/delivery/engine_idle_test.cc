// The Engine's idle hold (outbound_idle_timeout) end to end: a real loop, real sockets to
// the test SMTP server on 127.0.0.1, connections counted at the server.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/ring.h"
#include "delivery/engine.h"
#include "gtest/gtest.h"
#include "tests/delivery/engine_fixture_util.h"
#include "tests/delivery/engine_harness_util.h"
#include "tests/delivery/smtp_server_util.h"

namespace ringmail::delivery {
namespace {

using core::RecipientState;
using testing::EngineHarness;
using testing::ServerOptions;
using testing::ServerTransaction;
using testing::SpoolFile;
using testing::TestSmtpServer;

using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

class EngineIdleTest : public testing::EngineFixture {
 protected:
  // smart.test and other.test both routed to the server; `extra` at the top level,
  // `smart_scope` inside smart.test's Domain scope.
  // other_route_list: other.test's hops are ( server, 127.0.0.2 ) — the same server in
  // practice, another route key (engine.h "Sharing by route"): no shared connections.
  std::shared_ptr<config::Config> Config(const std::string& extra = "",
                                         const std::string& smart_scope = "",
                                         bool other_route_list = false) {
    std::string other_routes = absl::StrFormat("\"[127.0.0.1]:%d\"", server_->port());
    if (other_route_list) {
      other_routes = absl::StrFormat("( %s \"[127.0.0.2]:%d\" )", other_routes, server_->port());
    }
    std::string text = absl::StrFormat(
        "hostname = \"engine.test\"\n%s\n"
        "Domain \"smart.test\" { routes = \"[127.0.0.1]:%d\" %s }\n"
        "Domain \"other.test\" { routes = %s }\n",
        extra, server_->port(), smart_scope, other_routes);
    auto c = testing::TestConfig(text);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  void StartEngine(std::shared_ptr<const config::Config> config) {
    EngineOptions o;
    o.config = std::move(config);
    o.resolver = testing::TestResolver("127.0.0.1:9");
    o.random_seed = 1;
    o.retry_jitter = 0;
    absl::Status s = engine_.Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s;
  }

  DeliveryJob Job(const std::string& domain, int n) {
    return spool_.Add("a@origin.test", {absl::StrCat("r", n, "@", domain)}, domain,
                      absl::StrCat("Subject: ", n, "\r\n\r\nbody ", n, "\r\n"));
  }

  // Every report item so far has this state.
  bool AllItemsAre(RecipientState state) {
    for (const DeliveryReport& r : engine_.reports()) {
      for (const DeliveryReport::Item& i : r.items) {
        if (i.state != state) return false;
      }
    }
    return true;
  }
};

// The default (2 s): messages arriving one after another, each after the previous one was
// delivered, share one connection.
TEST_F(EngineIdleTest, MessagesArrivingApartReuseOneConnection) {
  StartServer();
  StartEngine(Config());
  for (int i = 0; i < 4; ++i) {
    engine_.Submit(Job("smart.test", i));
    ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, i + 1));
  }
  ASSERT_TRUE(server_->AwaitTransactions(4));
  EXPECT_EQ(server_->connections_accepted(), 1);
  EXPECT_EQ(server_->quits(), 0);
  for (const ServerTransaction& tx : server_->transactions()) EXPECT_EQ(tx.connection, 1);
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.connections, 1u);
  EXPECT_EQ(stats.idle_reuses, 3u);
  EXPECT_EQ(stats.open_connections, 1u);  // parked, still counted
}

TEST_F(EngineIdleTest, IdleTimeoutQuits) {
  StartServer();
  StartEngine(Config("outbound_idle_timeout = 300ms"));
  Clock::time_point start = Clock::now();
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  ASSERT_TRUE(server_->AwaitAllClosed());
  EXPECT_GE(MsSince(start), 300);  // it waited at least the idle timeout
  EXPECT_EQ(server_->quits(), 1);  // then ended politely
  engine_.Submit(Job("smart.test", 1));  // after the close: a new connection
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  EXPECT_EQ(server_->connections_accepted(), 2);
  EXPECT_EQ(engine_.Stats().idle_reuses, 0u);
}

// 0 restores QUIT-at-once; the Domain scope overrides the global key (here 1 minute).
TEST_F(EngineIdleTest, ZeroInTheDomainScopeDisablesTheHold) {
  StartServer();
  StartEngine(Config("outbound_idle_timeout = 1m", "outbound_idle_timeout = 0"));
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  ASSERT_TRUE(server_->AwaitAllClosed());
  EXPECT_EQ(server_->quits(), 1);
  engine_.Submit(Job("smart.test", 1));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  EXPECT_EQ(server_->connections_accepted(), 2);
  // other.test inherits the global minute: its connection stays.
  engine_.Submit(Job("other.test", 2));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 3));
  ASSERT_TRUE(server_->AwaitConnections(3));
  EXPECT_EQ(server_->open(), 1);
}

// A reloaded timeout applies to the next idle period...
TEST_F(EngineIdleTest, ReloadedTimeoutAppliesToTheNextIdlePeriod) {
  StartServer();
  StartEngine(Config("outbound_idle_timeout = 1m"));
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  std::shared_ptr<const config::Config> shorter = Config("outbound_idle_timeout = 200ms");
  engine_.OnLoop([shorter](Engine& e) { e.SetConfig(shorter); });
  engine_.Submit(Job("smart.test", 1));  // the parked connection takes it, then waits 200 ms
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  ASSERT_TRUE(server_->AwaitAllClosed());  // long before the old minute
  EXPECT_EQ(server_->connections_accepted(), 1);
  EXPECT_EQ(server_->quits(), 1);
}

// ...and a reload to 0 ends the holds in progress.
TEST_F(EngineIdleTest, ReloadToZeroClosesParkedConnections) {
  StartServer();
  StartEngine(Config("outbound_idle_timeout = 1m"));
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  std::shared_ptr<const config::Config> zero = Config("outbound_idle_timeout = 0");
  engine_.OnLoop([zero](Engine& e) { e.SetConfig(zero); });
  ASSERT_TRUE(server_->AwaitQuits(1));  // at once, not after the minute
  ASSERT_TRUE(server_->AwaitAllClosed());
  EXPECT_EQ(server_->connections_accepted(), 1);
}

// Work ready but braked (its owner loop's unlink backlog is full) while the domain's only
// connection is parked at the domain limit: released, it goes out over that connection at
// once, not after the idle minute.
TEST_F(EngineIdleTest, BrakedWorkTakenByTheParkedConnectionWhenReleased) {
  StartServer();
  auto brake = std::make_shared<std::atomic<bool>>(false);
  EngineOptions o;
  o.config = Config("outbound_idle_timeout = 1m\ndomain_max_outbound_connections = 1");
  o.resolver = testing::TestResolver("127.0.0.1:9");
  o.random_seed = 1;
  o.brake = [brake](uint32_t owner) { return owner == 0 && brake->load(); };
  ASSERT_TRUE(engine_.Start(std::move(o)).ok());
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  brake->store(true);
  engine_.Submit(Job("smart.test", 1));
  std::vector<DomainSummary> summary = engine_.Summary();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].ready, 1u);  // braked: the parked connection did not take it
  Clock::time_point start = Clock::now();
  brake->store(false);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  EXPECT_LT(MsSince(start), 30'000);
  EXPECT_EQ(server_->connections_accepted(), 1);
}

class EngineIdleCloseTest : public EngineIdleTest,
                            public ::testing::WithParamInterface<bool> {};

// The server ends a parked connection (its own idle timer: 421, or a bare hang-up): nothing
// is reported for it, and the next message goes over a new connection.
TEST_P(EngineIdleCloseTest, ServerClosingAnIdleConnectionAffectsNothing) {
  ServerOptions so;
  so.close_after_transactions = 1;
  so.close_with_421 = GetParam();
  StartServer(so);
  StartEngine(Config("outbound_idle_timeout = 1m"));
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  ASSERT_TRUE(server_->AwaitAllClosed());
  engine_.Submit(Job("smart.test", 1));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  EXPECT_EQ(server_->connections_accepted(), 2);
  EXPECT_EQ(server_->quits(), 0);
  EXPECT_TRUE(AllItemsAre(RecipientState::kDelivered));  // no deferral, no failure
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.deferred, 0u);
  EXPECT_EQ(stats.delivered, 2u);
}

INSTANTIATE_TEST_SUITE_P(With421OrEof, EngineIdleCloseTest, ::testing::Bool());

// One connection in all: domain A's parked connection must not keep B (another route)
// waiting for its idle minute. It is closed (QUIT) to make room.
TEST_F(EngineIdleTest, GlobalLimitClosesAnIdleConnectionForAnotherDomain) {
  StartServer();
  StartEngine(Config("max_outbound_connections = 1\noutbound_idle_timeout = 1m", "", true));
  engine_.Submit(Job("smart.test", 0));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  EXPECT_EQ(engine_.Stats().open_connections, 1u);  // parked
  Clock::time_point start = Clock::now();
  engine_.Submit(Job("other.test", 1));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  EXPECT_LT(MsSince(start), 30'000);  // well inside the idle minute
  EXPECT_EQ(server_->connections_accepted(), 2);
  EXPECT_EQ(server_->max_open(), 1);
  EXPECT_EQ(server_->quits(), 1);  // A's idle connection ended politely
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.idle_evictions, 1u);
  std::vector<ServerTransaction> txs = server_->transactions();
  ASSERT_EQ(txs.size(), 2u);
  EXPECT_EQ(txs[1].recipients, std::vector<std::string>{"r1@other.test"});
}

TEST_F(EngineIdleTest, StopWithParkedConnectionsIsPrompt) {
  StartServer();
  StartEngine(Config("outbound_idle_timeout = 5m", "", true));
  engine_.Submit(Job("smart.test", 0));
  engine_.Submit(Job("other.test", 1));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  ASSERT_EQ(engine_.Stats().open_connections, 2u);
  Clock::time_point start = Clock::now();
  engine_.Stop();  // aborts the parked connections: cancel, close, free (ASan checks)
  EXPECT_LT(MsSince(start), 10'000);
  EXPECT_TRUE(server_->AwaitAllClosed());
}

TEST_F(EngineIdleTest, SuspendClosesTheDomainsParkedConnections) {
  StartServer();
  StartEngine(Config("outbound_idle_timeout = 5m", "", true));
  engine_.Submit(Job("smart.test", 0));
  engine_.Submit(Job("other.test", 1));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  engine_.OnLoop([](Engine& e) { e.Suspend("smart.test"); });
  ASSERT_TRUE(server_->AwaitConnections(2));
  // smart.test's connection QUITs; other.test's stays parked.
  engine_.Submit(Job("other.test", 2));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 3));
  EXPECT_EQ(server_->connections_accepted(), 2);
  EXPECT_EQ(engine_.Stats().idle_reuses, 1u);
  std::vector<DomainSummary> summary = engine_.Summary();
  for (const DomainSummary& d : summary) {
    if (d.domain == "smart.test") {
      EXPECT_TRUE(d.suspended);
    }
  }
  ASSERT_TRUE(server_->AwaitQuits(1));
  EXPECT_EQ(server_->quits(), 1);
  EXPECT_EQ(server_->open(), 1);
}

}  // namespace
}  // namespace ringmail::delivery
