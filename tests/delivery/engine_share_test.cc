// The Engine's connections shared by route key (engine.h "Sharing by route"): domains whose
// mail goes to the same fixed hops, under the same TLS policy, use each other's
// connections. A real loop, real sockets to the test SMTP server on 127.0.0.1, connections
// counted at the server.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/ring.h"
#include "delivery/engine.h"
#include "gtest/gtest.h"
#include "tests/delivery/engine_harness_util.h"
#include "tests/delivery/smtp_server_util.h"
#include "tests/tls/test_pki_util.h"
#include "tls/context.h"

namespace ringmail::delivery {
namespace {

using core::RecipientState;
using testing::EngineHarness;
using testing::ServerOptions;
using testing::ServerTransaction;
using testing::SpoolFile;
using testing::TestSmtpServer;

// Holds the server's answer to the data of chosen transactions until Open(); counts
// the transactions held so far. Shared by the test and the server's threads.
class Gate {
 public:
  std::string Hold(const ServerTransaction&) {
    std::unique_lock<std::mutex> lock(mu_);
    ++held_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
    return "250 2.0.0 ok";
  }
  bool AwaitHeld(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return held_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int held_ = 0;
  bool open_ = false;
};

class EngineShareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = core::ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
  }
  void TearDown() override {
    if (gate_ != nullptr) gate_->Open();  // the server's threads must be able to end
    engine_.Stop();
  }

  std::unique_ptr<TestSmtpServer> StartServer(ServerOptions options = {}) {
    auto s = TestSmtpServer::Start(std::move(options));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // Every domain without a scope of its own goes to `server` by default_route; `extra` at
  // the top level (Domain scopes too).
  std::shared_ptr<config::Config> Config(const TestSmtpServer& server,
                                         const std::string& extra = "",
                                         const std::string& idle_timeout = "1m") {
    std::string text = absl::StrFormat(
        "hostname = \"engine.test\"\noutbound_idle_timeout = %s\n"
        "default_route = \"[127.0.0.1]:%d\"\n%s\n",
        idle_timeout, server.port(), extra);
    auto c = testing::TestConfig(text);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  void StartEngine(std::shared_ptr<const config::Config> config,
                   std::shared_ptr<const tls::TlsContext> tls_client = nullptr,
                   size_t transaction_recipients_max = 100) {
    ASSERT_NE(config, nullptr);
    EngineOptions o;
    o.config = std::move(config);
    o.resolver = testing::TestResolver("127.0.0.1:9");  // nothing here needs DNS
    o.random_seed = 1;
    o.retry_jitter = 0;
    o.tls_client = std::move(tls_client);
    o.transaction_recipients_max = transaction_recipients_max;
    absl::Status s = engine_.Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s;
  }

  DeliveryJob Job(const std::string& domain, int n, int recipients = 1) {
    std::vector<std::string> rcpts;
    for (int i = 0; i < recipients; ++i) rcpts.push_back(absl::StrCat("r", n, "-", i, "@", domain));
    return spool_.Add("a@origin.test", rcpts, domain,
                      absl::StrCat("Subject: ", n, "\r\n\r\nbody ", n, "\r\n"));
  }

  // Submits and waits until it was delivered (`delivered` items in all by then).
  void Deliver(const std::string& domain, int n, size_t delivered) {
    engine_.Submit(Job(domain, n));
    ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, delivered)) << domain;
  }

  // Every job submitted in one loop turn (one scheduler pass sees them all).
  void SubmitAll(std::vector<DeliveryJob> jobs) {
    auto box = std::make_shared<std::vector<DeliveryJob>>(std::move(jobs));
    engine_.OnLoop([box](Engine& e) {
      for (DeliveryJob& j : *box) e.Submit(std::move(j));
    });
  }

  DomainSummary SummaryOf(const std::string& domain) {
    for (const DomainSummary& d : engine_.Summary()) {
      if (d.domain == domain) return d;
    }
    return DomainSummary{};
  }

  std::shared_ptr<Gate> gate_;
  SpoolFile spool_;
  EngineHarness engine_;
};

// Twenty domains, one smarthost, one message each, one after another: one connection
// carries them all, moving from domain to domain while parked.
TEST_F(EngineShareTest, DomainsOfOneSmarthostShareOneConnection) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  StartEngine(Config(*server));
  for (int i = 0; i < 20; ++i) Deliver(absl::StrCat("d", i, ".test"), i, i + 1);
  ASSERT_TRUE(server->AwaitTransactions(20));
  EXPECT_EQ(server->connections_accepted(), 1);
  EXPECT_EQ(server->quits(), 0);
  for (const ServerTransaction& tx : server->transactions()) EXPECT_EQ(tx.connection, 1);
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.connections, 1u);
  EXPECT_EQ(stats.shared_reuses, 19u);
  EXPECT_EQ(stats.open_connections, 1u);
  // The connection counts for the domain it served last; the others were retired.
  EXPECT_EQ(SummaryOf("d19.test").connections, 1u);
  EXPECT_EQ(stats.domains, 1u);
}

// A burst over forty domains at a global limit of four: connections whose domain runs dry
// go on with the next waiting domain's mail (instead of QUIT and a new connection for it).
TEST_F(EngineShareTest, BurstOverManyDomainsStaysWithinTheGlobalLimitsConnections) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  StartEngine(Config(*server, "max_outbound_connections = 4"));
  std::vector<DeliveryJob> jobs;
  for (int i = 0; i < 120; ++i) jobs.push_back(Job(absl::StrCat("d", i % 40, ".test"), i));
  SubmitAll(std::move(jobs));  // every domain waits before the first connection frees
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 120));
  ASSERT_TRUE(server->AwaitTransactions(120));
  // Without sharing each domain after the first four needs a new connection (40 in all).
  EXPECT_LE(server->connections_accepted(), 4);
  EXPECT_LE(server->max_open(), 4);
  EngineStats stats = engine_.Stats();
  EXPECT_GT(stats.shared_takes, 0u);
  EXPECT_EQ(stats.delivered, 120u);
}

// Parked connections of one burst serve the next burst for other domains: no new ones.
TEST_F(EngineShareTest, ParkedConnectionsServeANewBurstOfOtherDomains) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  StartEngine(Config(*server));
  std::vector<DeliveryJob> first;
  for (int i = 0; i < 10; ++i) first.push_back(Job(absl::StrCat("a", i, ".test"), i));
  SubmitAll(std::move(first));  // one pass: a connection per domain
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 10));
  ASSERT_EQ(server->connections_accepted(), 10);
  std::vector<DeliveryJob> second;
  for (int i = 0; i < 10; ++i) second.push_back(Job(absl::StrCat("b", i, ".test"), 10 + i));
  SubmitAll(std::move(second));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 20));
  EXPECT_EQ(server->connections_accepted(), 10);
  EXPECT_EQ(server->quits(), 0);
  EXPECT_EQ(engine_.Stats().shared_reuses, 10u);
}

// Different hops (another server, or the same server in a different hop list) or a
// different TLS policy: never the same connection.
TEST_F(EngineShareTest, DifferentRoutesOrTlsPoliciesNeverShare) {
  auto server = StartServer();
  auto other = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_NE(other, nullptr);
  // A context makes opportunistic differ from off (without one both are plaintext, and
  // equal); the server offers no STARTTLS, so every policy below but required delivers.
  config::GlobalOptions global;
  auto ctx = MakeOutboundTlsContext(global);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  StartEngine(Config(*server, absl::StrFormat(
                                  "Domain \"elsewhere.test\" { routes = \"[127.0.0.1]:%d\" }\n"
                                  "Domain \"twohops.test\" { routes = ( \"[127.0.0.1]:%d\" "
                                  "\"[127.0.0.2]:%d\" ) }\n"
                                  "Domain \"plain.test\" { tls = off }\n",
                                  other->port(), server->port(), server->port())),
              *ctx);
  Deliver("first.test", 0, 1);       // opportunistic, default_route
  Deliver("elsewhere.test", 1, 2);   // another server
  Deliver("twohops.test", 2, 3);     // the same server first, but another hop list
  Deliver("plain.test", 3, 4);       // tls off
  Deliver("second.test", 4, 5);      // same as first.test: shares its connection
  EXPECT_EQ(other->connections_accepted(), 1);
  EXPECT_EQ(server->connections_accepted(), 3);
  std::vector<ServerTransaction> txs = server->transactions();
  ASSERT_EQ(txs.size(), 4u);
  EXPECT_EQ(txs[3].recipients, std::vector<std::string>{"r4-0@second.test"});
  EXPECT_EQ(txs[3].connection, txs[0].connection);
  EXPECT_EQ(engine_.Stats().shared_reuses, 1u);
}

// A reloaded TLS context (new CA files, say) makes a new key: connections opened before
// still serve their own domain, never a new one.
TEST_F(EngineShareTest, ANewTlsContextStopsSharingOlderConnections) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  config::GlobalOptions global;
  auto ctx = MakeOutboundTlsContext(global);
  auto ctx2 = MakeOutboundTlsContext(global);
  ASSERT_TRUE(ctx.ok() && ctx2.ok());
  StartEngine(Config(*server), *ctx);
  Deliver("a.test", 0, 1);
  std::shared_ptr<const tls::TlsContext> next = *ctx2;
  engine_.OnLoop([next](Engine& e) { e.SetTlsClient(next); });
  Deliver("b.test", 1, 2);  // a new connection
  Deliver("a.test", 2, 3);  // a's parked one
  EXPECT_EQ(server->connections_accepted(), 2);
  std::vector<ServerTransaction> txs = server->transactions();
  ASSERT_EQ(txs.size(), 3u);
  EXPECT_EQ(txs[2].connection, txs[0].connection);
  EXPECT_EQ(engine_.Stats().shared_reuses, 0u);
}

// Over TLS: two domains with the same policy share the session (one handshake); a third
// with another policy gets its own.
TEST_F(EngineShareTest, ATlsSessionIsSharedOnlyUnderTheSamePolicy) {
  auto pki = tls_test::TestPki::Create();
  ASSERT_TRUE(pki.ok()) << pki.status();
  auto cert = pki->IssueServer("smart", {"smart.test"});
  ASSERT_TRUE(cert.ok()) << cert.status();
  tls::TlsContextOptions so;
  so.role = tls::TlsRole::kServer;
  so.certificate_chain_file = cert->chain_file;
  so.private_key_file = cert->key_file;
  auto server_ctx = tls::TlsContext::Create(so);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  ServerOptions options;
  options.tls = *server_ctx;
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  config::GlobalOptions global;
  auto ctx = MakeOutboundTlsContext(global);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  StartEngine(Config(*server, "Domain \"req1.test\" { tls = required }\n"
                              "Domain \"req2.test\" { tls = required }\n"),
              *ctx);
  Deliver("req1.test", 0, 1);
  Deliver("req2.test", 1, 2);
  Deliver("opp.test", 2, 3);  // opportunistic: TLS too, but not the same policy
  ASSERT_TRUE(server->AwaitTransactions(3));
  std::vector<ServerTransaction> txs = server->transactions();
  ASSERT_EQ(txs.size(), 3u);
  for (const ServerTransaction& tx : txs) EXPECT_TRUE(tx.tls);
  EXPECT_EQ(txs[1].connection, txs[0].connection);
  EXPECT_NE(txs[2].connection, txs[0].connection);
  EXPECT_EQ(server->connections_accepted(), 2);
  EXPECT_EQ(server->tls_handshakes(), 2);
}

// b.test at its max_outbound_connections (1, busy) does not take a's parked connection
// for its next message: that waits for b's own connection.
TEST_F(EngineShareTest, ADomainAtItsLimitTakesNoForeignConnection) {
  gate_ = std::make_shared<Gate>();
  ServerOptions options;
  std::shared_ptr<Gate> gate = gate_;
  options.data_reply = [gate](const ServerTransaction& tx) -> std::string {
    if (!tx.recipients.empty() && absl::EndsWith(tx.recipients[0], "@b.test")) {
      return gate->Hold(tx);
    }
    return "250 2.0.0 ok";
  };
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  // One job with two recipients, one Work each: two connections for a.test at once.
  StartEngine(Config(*server, "Domain \"b.test\" { max_outbound_connections = 1 }\n"),
              nullptr, /*transaction_recipients_max=*/1);
  engine_.Submit(Job("a.test", 0, /*recipients=*/2));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  ASSERT_EQ(server->connections_accepted(), 2);
  engine_.Submit(Job("b.test", 1));  // takes one of a's parked connections
  ASSERT_TRUE(gate_->AwaitHeld(1));
  engine_.Submit(Job("b.test", 2));  // b is at its limit: a's other one must stay a's
  DomainSummary a = SummaryOf("a.test");
  DomainSummary b = SummaryOf("b.test");
  EXPECT_EQ(a.connections, 1u);
  EXPECT_EQ(b.connections, 1u);
  EXPECT_EQ(b.ready, 1u);
  EXPECT_EQ(engine_.Stats().shared_reuses, 1u);
  gate_->Open();
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 4));
  EXPECT_EQ(server->connections_accepted(), 2);
  std::vector<ServerTransaction> txs = server->transactions();
  ASSERT_EQ(txs.size(), 4u);
  EXPECT_EQ(txs[3].connection, txs[2].connection);  // b's second over b's connection
}

// max_deliveries_per_connection counts the socket's transactions across a move, and the
// new domain's limit applies: a.test (10) → b.test (2) after one delivery: b's first
// message is the socket's second and last.
TEST_F(EngineShareTest, DeliveriesPerConnectionCountAcrossTheMoveUnderTheNewLimit) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  StartEngine(Config(*server, "max_deliveries_per_connection = 10\n"
                              "Domain \"b.test\" { max_deliveries_per_connection = 2 }\n"));
  Deliver("a.test", 0, 1);
  Deliver("b.test", 1, 2);  // moves: the socket's 2nd transaction, b's limit: QUIT
  ASSERT_TRUE(server->AwaitQuits(1));
  Deliver("b.test", 2, 3);  // a new connection
  Deliver("a.test", 3, 4);  // shares b's new one (1 of a's 10)
  Deliver("b.test", 4, 5);  // moves back: the 3rd transaction there, over b's 2: not moved
  std::vector<ServerTransaction> txs = server->transactions();
  ASSERT_EQ(txs.size(), 5u);
  EXPECT_EQ(txs[0].connection, 1);
  EXPECT_EQ(txs[1].connection, 1);
  EXPECT_EQ(txs[2].connection, 2);
  EXPECT_EQ(txs[3].connection, 2);
  EXPECT_EQ(txs[4].connection, 3);
  EXPECT_EQ(server->connections_accepted(), 3);
}

// A moved connection is its new domain's: Suspend of that domain closes it, a reload to 0
// closes every parked one, stop aborts the rest.
TEST_F(EngineShareTest, SuspendReloadAndStopCloseMovedConnections) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  StartEngine(Config(*server));
  Deliver("a.test", 0, 1);
  Deliver("b.test", 1, 2);  // a's connection is b's now
  EXPECT_EQ(SummaryOf("b.test").connections, 1u);
  engine_.OnLoop([](Engine& e) { e.Suspend("b.test"); });
  ASSERT_TRUE(server->AwaitQuits(1));
  ASSERT_TRUE(server->AwaitAllClosed());
  // c's new connection, taken by d; then a reload to 0.
  Deliver("c.test", 2, 3);
  Deliver("d.test", 3, 4);
  EXPECT_EQ(server->connections_accepted(), 2);
  EXPECT_EQ(SummaryOf("d.test").connections, 1u);
  auto zero = Config(*server, "", "0");
  engine_.OnLoop([zero](Engine& e) { e.SetConfig(zero); });
  ASSERT_TRUE(server->AwaitQuits(2));
  ASSERT_TRUE(server->AwaitAllClosed());
  // And stop with a moved parked connection.
  auto back = Config(*server);
  engine_.OnLoop([back](Engine& e) { e.SetConfig(back); });
  Deliver("e.test", 4, 5);
  Deliver("f.test", 5, 6);
  EXPECT_EQ(server->connections_accepted(), 3);
  EXPECT_EQ(engine_.Stats().open_connections, 1u);
  engine_.Stop();
  EXPECT_TRUE(server->AwaitAllClosed());
  EXPECT_EQ(server->quits(), 2);  // aborted, not QUIT
}

}  // namespace
}  // namespace ringmail::delivery
