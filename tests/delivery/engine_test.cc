// The delivery Engine end to end on a real loop: real sockets to a test SMTP server on
// 127.0.0.1, content read back from a real spool segment file, MX answers from a real
// dnsmasq, reports collected through the report sink seam (EngineOptions::report_sink)
// instead of a Ledger.
#include "delivery/engine.h"

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "core/ring.h"
#include "gtest/gtest.h"
#include "tests/delivery/engine_fixture_util.h"
#include "tests/delivery/engine_harness_util.h"
#include "tests/delivery/smtp_server_util.h"
#include "tests/dns/dns_server_util.h"

namespace ringmail::delivery {
namespace {

using core::RecipientState;
using testing::EngineHarness;
using testing::ServerOptions;
using testing::ServerTransaction;
using testing::SpoolFile;
using testing::TestSmtpServer;

// Dot-stuffing, 8-bit bytes and CRLF: what must arrive byte for byte.
const char kTrickyBody[] =
    "Subject: tricky\r\n"
    "\r\n"
    ".starts with a dot\r\n"
    "..two dots\r\n"
    ".\r\n"
    "caf\xc3\xa9 \xe9t\xe9 8-bit\r\n"
    "line . with a dot inside\r\n"
    "last line without CRLF";

uint64_t NowMs() { return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())); }

std::vector<DeliveryReport::Item> AllItems(const std::vector<DeliveryReport>& reports) {
  std::vector<DeliveryReport::Item> out;
  for (const DeliveryReport& r : reports) out.insert(out.end(), r.items.begin(), r.items.end());
  return out;
}

class EngineTest : public testing::EngineFixture {
 protected:
  // Config with smart.test routed to the server; `extra` goes at the top level.
  std::shared_ptr<config::Config> Config(const std::string& extra = "",
                                         const std::string& smart_scope = "") {
    std::string text = absl::StrFormat(
        "hostname = \"engine.test\"\nremote_smtp_port = %d\n%s\n"
        "Domain \"smart.test\" { routes = \"[127.0.0.1]:%d\" %s }\n",
        server_ ? server_->port() : 25, extra, server_ ? server_->port() : 25, smart_scope);
    auto c = testing::TestConfig(text);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  EngineOptions Options(std::shared_ptr<const config::Config> config,
                        const std::string& dns_server = "127.0.0.1:9") {
    EngineOptions o;
    o.config = std::move(config);
    o.resolver = testing::TestResolver(dns_server);
    o.random_seed = 1;
    o.retry_jitter = 0;
    return o;
  }

  void StartEngine(EngineOptions options) {
    absl::Status s = engine_.Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s;
  }
};

TEST_F(EngineTest, SmarthostDeliversEveryJobByteExact) {
  StartServer();
  StartEngine(Options(Config()));
  constexpr int kJobs = 6;
  std::vector<DeliveryJob> jobs;
  for (int i = 0; i < kJobs; ++i) {
    std::string body = absl::StrCat(kTrickyBody, " #", i);
    jobs.push_back(spool_.Add(absl::StrCat("sender", i, "@origin.test"),
                              {absl::StrCat("rcpt", i, "@smart.test")}, "smart.test", body,
                              /*eight_bit=*/true));
  }
  for (const DeliveryJob& j : jobs) engine_.Submit(j);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, kJobs));
  ASSERT_TRUE(server_->AwaitTransactions(kJobs));

  std::vector<ServerTransaction> txs = server_->transactions();
  ASSERT_EQ(txs.size(), static_cast<size_t>(kJobs));
  std::set<std::string> seen;
  for (const ServerTransaction& tx : txs) {
    int i = tx.mail_from[6] - '0';
    ASSERT_GE(i, 0);
    ASSERT_LT(i, kJobs);
    seen.insert(tx.mail_from);
    const DeliveryJob& job = jobs[i];
    std::string content = SpoolFile::ContentOf(job);
    ASSERT_FALSE(content.empty());
    // The content arrives exactly as spooled, plus the CRLF it lacked at its end.
    EXPECT_EQ(tx.content, content + "\r\n");
    EXPECT_NE(tx.data_wire.find("\r\n..starts with a dot\r\n...two dots\r\n..\r\n"),
              std::string::npos);
    EXPECT_NE(tx.mail_line.find("BODY=8BITMIME"), std::string::npos) << tx.mail_line;
    EXPECT_NE(tx.mail_line.find(absl::StrCat("SIZE=", job.content_length)), std::string::npos);
    EXPECT_EQ(tx.recipients, std::vector<std::string>{absl::StrCat("rcpt", i, "@smart.test")});
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kJobs));  // every message exactly once

  std::vector<DeliveryReport> reports = engine_.reports();
  ASSERT_EQ(reports.size(), static_cast<size_t>(kJobs));
  for (const DeliveryReport& r : reports) {
    ASSERT_EQ(r.items.size(), 1u);
    EXPECT_EQ(r.items[0].state, RecipientState::kDelivered);
    EXPECT_EQ(r.items[0].attempts, 1u);
    EXPECT_EQ(r.items[0].remote_host,
              absl::StrCat("127.0.0.1[127.0.0.1]:", server_->port()));
    EXPECT_EQ(r.items[0].reply, "250 2.0.0 ok");
  }
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.delivered, static_cast<uint64_t>(kJobs));
  EXPECT_EQ(stats.reports, static_cast<uint64_t>(kJobs));
  EXPECT_GT(stats.bytes_sent, 0u);
}

TEST_F(EngineTest, RecipientsOfOneMessageShareATransactionAndConnectionsAreReused) {
  StartServer();
  // One connection at a time: every job must go over it, in turn.
  StartEngine(Options(Config("", "max_outbound_connections = 1")));
  DeliveryJob many = spool_.Add("a@origin.test", {"x@smart.test", "y@smart.test", "z@smart.test"},
                                "smart.test", "Subject: three\r\n\r\nhello\r\n");
  engine_.Submit(many);
  for (int i = 0; i < 4; ++i) {
    engine_.Submit(spool_.Add("b@origin.test", {absl::StrCat("r", i, "@smart.test")},
                              "smart.test", "Subject: one\r\n\r\nhi\r\n"));
  }
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 7));
  ASSERT_TRUE(server_->AwaitTransactions(5));
  std::vector<ServerTransaction> txs = server_->transactions();
  ASSERT_EQ(txs.size(), 5u);
  EXPECT_EQ(txs[0].recipients,
            (std::vector<std::string>{"x@smart.test", "y@smart.test", "z@smart.test"}));
  EXPECT_EQ(server_->connections_accepted(), 1);  // reused for all five messages
  EXPECT_EQ(server_->max_open(), 1);
  for (const ServerTransaction& tx : txs) EXPECT_EQ(tx.connection, 1);
  ASSERT_TRUE(server_->AwaitAllClosed());
  EXPECT_EQ(server_->quits(), 1);  // QUIT once the queue is empty
}

TEST_F(EngineTest, BdatSendsTheContentRawWhenChunkingIsPreferred) {
  ServerOptions so;
  so.chunking = true;
  StartServer(so);
  EngineOptions o = Options(Config());
  o.prefer_chunking = true;
  StartEngine(std::move(o));
  DeliveryJob job = spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", kTrickyBody,
                               /*eight_bit=*/true);
  engine_.Submit(job);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  ASSERT_TRUE(server_->AwaitTransactions(1));
  ServerTransaction tx = server_->transactions()[0];
  EXPECT_TRUE(tx.bdat);
  EXPECT_EQ(tx.content, SpoolFile::ContentOf(job));  // unstuffed, unterminated, exact
}

TEST_F(EngineTest, TransactionRecipientCapAndDeliveriesPerConnection) {
  StartServer();
  EngineOptions o = Options(
      Config("", "max_outbound_connections = 1 max_deliveries_per_connection = 2"));
  o.transaction_recipients_max = 2;
  StartEngine(std::move(o));
  // Five recipients → transactions of 2, 2 and 1; two transactions per connection.
  engine_.Submit(spool_.Add("a@origin.test",
                            {"r0@smart.test", "r1@smart.test", "r2@smart.test", "r3@smart.test",
                             "r4@smart.test"},
                            "smart.test", "Subject: cap\r\n\r\nbody\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 5));
  ASSERT_TRUE(server_->AwaitTransactions(3));
  std::vector<ServerTransaction> txs = server_->transactions();
  ASSERT_EQ(txs.size(), 3u);
  EXPECT_EQ(txs[0].recipients, (std::vector<std::string>{"r0@smart.test", "r1@smart.test"}));
  EXPECT_EQ(txs[1].recipients, (std::vector<std::string>{"r2@smart.test", "r3@smart.test"}));
  EXPECT_EQ(txs[2].recipients, (std::vector<std::string>{"r4@smart.test"}));
  EXPECT_EQ(txs[0].connection, txs[1].connection);
  EXPECT_NE(txs[2].connection, txs[1].connection);
  EXPECT_EQ(server_->connections_accepted(), 2);
}

TEST_F(EngineTest, RcptRefusedFailsThatRecipientOnly) {
  ServerOptions so;
  so.rcpt_reply = [](const std::string& a) {
    return a.rfind("bad", 0) == 0 ? "550 5.1.1 no such user" : "250 2.1.5 ok";
  };
  StartServer(so);
  StartEngine(Options(Config()));
  engine_.Submit(spool_.Add("a@origin.test", {"good@smart.test", "bad@smart.test"}, "smart.test",
                            "Subject: x\r\n\r\nx\r\n"));
  ASSERT_TRUE(engine_.AwaitReports([](const std::vector<DeliveryReport>& r) {
    return AllItems(r).size() >= 2;
  }));
  std::vector<DeliveryReport::Item> items = AllItems(engine_.reports());
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].index, 0u);
  EXPECT_EQ(items[0].state, RecipientState::kDelivered);
  EXPECT_EQ(items[1].index, 1u);
  EXPECT_EQ(items[1].state, RecipientState::kFailed);
  EXPECT_EQ(items[1].reply, "550 5.1.1 no such user");
  EXPECT_EQ(items[1].attempts, 1u);
}

TEST_F(EngineTest, TemporaryFailureIsDeferredAndDeliveredOnRetry) {
  std::atomic<int> finals{0};
  ServerOptions so;
  so.data_reply = [&finals](const ServerTransaction&) {
    return finals++ == 0 ? "451 4.3.0 try again later" : "250 2.0.0 ok";
  };
  StartServer(so);
  StartEngine(Options(Config()));  // retry_interval 200 ms
  DeliveryJob job = spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test",
                               "Subject: retry\r\n\r\nagain\r\n");
  uint64_t before = NowMs();
  engine_.Submit(job);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  std::vector<DeliveryReport::Item> items = AllItems(engine_.reports());
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].state, RecipientState::kDeferred);
  EXPECT_EQ(items[0].attempts, 1u);
  EXPECT_EQ(items[0].reply, "451 4.3.0 try again later");
  EXPECT_GE(items[0].next_attempt_ms, before + 200);
  EXPECT_LE(items[0].next_attempt_ms, NowMs());
  EXPECT_EQ(items[1].state, RecipientState::kDelivered);
  EXPECT_EQ(items[1].attempts, 2u);
  std::vector<ServerTransaction> txs = server_->transactions();
  ASSERT_EQ(txs.size(), 2u);
  EXPECT_EQ(txs[0].content, txs[1].content);
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.deferred, 1u);
  EXPECT_EQ(stats.delivered, 1u);
}

TEST_F(EngineTest, TemporaryFailureAfterExpirationFails) {
  ServerOptions so;
  so.data_reply = [](const ServerTransaction&) { return "451 4.3.0 try again later"; };
  StartServer(so);
  StartEngine(Options(Config()));
  DeliveryJob job = spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n");
  job.received_ms = NowMs() - 6ull * 24 * 3600 * 1000;  // message_expiration is 5 days
  job.recipients[0].attempts = 40;
  engine_.Submit(job);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kFailed, 1));
  std::vector<DeliveryReport::Item> items = AllItems(engine_.reports());
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].attempts, 41u);
  EXPECT_EQ(items[0].reply.rfind("4.4.7 delivery time expired", 0), 0u) << items[0].reply;
  EXPECT_NE(items[0].reply.find("451 4.3.0 try again later"), std::string::npos);
  EXPECT_EQ(engine_.Stats().expired, 1u);
}

TEST_F(EngineTest, LongDeferralIsHandedBackToTheLedger) {
  ServerOptions so;
  so.data_reply = [](const ServerTransaction&) { return "452 4.2.2 mailbox full"; };
  StartServer(so);
  auto config = Config();
  config->global.retry_interval = absl::Hours(1);
  config->global.max_retry_interval = absl::Hours(1);
  StartEngine(Options(config));  // hold_deferred_max_ms: 15 minutes
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kPending, 1));
  std::vector<DeliveryReport> reports = engine_.reports();
  ASSERT_EQ(reports.size(), 1u);
  ASSERT_EQ(reports[0].items.size(), 2u);
  EXPECT_EQ(reports[0].items[0].state, RecipientState::kDeferred);
  EXPECT_EQ(reports[0].items[1].state, RecipientState::kPending);
  EXPECT_EQ(reports[0].items[1].next_attempt_ms, reports[0].items[0].next_attempt_ms);
  EXPECT_GT(reports[0].items[0].next_attempt_ms, NowMs() + 3500 * 1000);
  std::vector<DomainSummary> summary = engine_.Summary();
  for (const DomainSummary& s : summary) EXPECT_EQ(s.delayed, 0u) << s.domain;
  EXPECT_EQ(engine_.Stats().handed_back, 1u);
}

TEST_F(EngineTest, ConnectionRefusedDefers) {
  StartServer();
  uint16_t port = server_->port();
  auto config = Config();
  server_.reset();  // nothing listens on the smarthost's port any more
  StartEngine(Options(config));
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 1));
  DeliveryReport::Item item = AllItems(engine_.reports())[0];
  EXPECT_NE(item.reply.find(absl::StrCat("connect to 127.0.0.1[127.0.0.1]:", port)),
            std::string::npos)
      << item.reply;
  EXPECT_NE(item.reply.find("refused"), std::string::npos) << item.reply;
  engine_.Stop();
}

TEST_F(EngineTest, DomainConnectionLimitIsRespected) {
  ServerOptions so;
  so.hold_greetings = true;  // connections pile up until released
  StartServer(so);
  StartEngine(Options(Config("", "max_outbound_connections = 3")));
  constexpr int kJobs = 10;
  for (int i = 0; i < kJobs; ++i) {
    engine_.Submit(spool_.Add("a@origin.test", {absl::StrCat("r", i, "@smart.test")},
                              "smart.test", "x\r\n"));
  }
  ASSERT_TRUE(server_->AwaitConnections(3));
  std::vector<DomainSummary> summary = engine_.Summary();  // after the scheduler's turn
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].connections, 3u);
  EXPECT_EQ(summary[0].ready, static_cast<uint64_t>(kJobs - 3));
  server_->ReleaseGreetings();
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, kJobs));
  EXPECT_EQ(server_->max_open(), 3);
  EXPECT_LE(server_->connections_accepted(), kJobs);
}

TEST_F(EngineTest, GlobalConnectionLimitIsRespected) {
  ServerOptions so;
  so.hold_greetings = true;
  StartServer(so);
  // Two domains of 3 connections each, but 2 in all (one engine: its share is all).
  StartEngine(Options(Config(absl::StrFormat(
      "max_outbound_connections = 2\ndomain_max_outbound_connections = 3\n"
      "Domain \"other.test\" { routes = \"[127.0.0.1]:%d\" }",
      server_->port()))));
  for (int i = 0; i < 4; ++i) {
    engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
    engine_.Submit(spool_.Add("a@origin.test", {"r@other.test"}, "other.test", "x\r\n"));
  }
  ASSERT_TRUE(server_->AwaitConnections(2));
  EXPECT_EQ(engine_.Stats().open_connections, 2u);
  std::vector<DomainSummary> summary = engine_.Summary();
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(summary[0].connections, 1u);  // the domains took turns
  EXPECT_EQ(summary[1].connections, 1u);
  server_->ReleaseGreetings();
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 8));
  EXPECT_EQ(server_->max_open(), 2);
}

TEST_F(EngineTest, SuspendResumeAndFlush) {
  std::atomic<int> finals{0};
  ServerOptions so;
  so.data_reply = [&finals](const ServerTransaction&) {
    return finals++ == 0 ? "421 4.3.2 busy, closing" : "250 2.0.0 ok";
  };
  StartServer(so);
  auto config = Config("", "max_outbound_connections = 1");
  config->global.retry_interval = absl::Minutes(5);  // only a flush brings it back soon
  StartEngine(Options(config));
  engine_.OnLoop([](Engine& e) { e.Suspend("SMART.test."); });
  engine_.Submit(spool_.Add("a@origin.test", {"r1@smart.test"}, "smart.test", "one\r\n"));
  engine_.Submit(spool_.Add("a@origin.test", {"r2@smart.test"}, "smart.test", "two\r\n"));
  std::vector<DomainSummary> summary = engine_.Summary();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].domain, "smart.test");
  EXPECT_TRUE(summary[0].suspended);
  EXPECT_EQ(summary[0].ready, 2u);
  EXPECT_EQ(summary[0].connections, 0u);
  EXPECT_GT(summary[0].oldest_ms, 0u);
  EXPECT_EQ(server_->connections_accepted(), 0);

  bool resumed = false;
  engine_.OnLoop([&](Engine& e) { resumed = e.Resume("smart.test"); });
  EXPECT_TRUE(resumed);
  // The first transaction gets a 421 (deferred 5 minutes), the second is delivered.
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 1));
  summary = engine_.Summary();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].delayed, 1u);
  EXPECT_GT(summary[0].next_attempt_ms, NowMs() + 60 * 1000);
  EXPECT_FALSE(summary[0].suspended);

  size_t flushed = 0;
  engine_.OnLoop([&](Engine& e) { flushed = e.Flush("smart.test"); });
  EXPECT_EQ(flushed, 1u);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 2));
  ASSERT_TRUE(server_->AwaitTransactions(3));
  EXPECT_EQ(server_->transactions()[2].content, server_->transactions()[0].content);
}

TEST_F(EngineTest, FullOwnerInboxKeepsReportsAndRetries) {
  StartServer();
  StartEngine(Options(Config()));
  engine_.RefuseNextBatches(3);
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  EXPECT_EQ(engine_.refused_batches(), 3);
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.report_retries, 3u);
  EXPECT_EQ(stats.reports, 1u);
  EXPECT_EQ(stats.outbox, 0u);
  EXPECT_EQ(engine_.reports().size(), 1u);  // exactly once
}

TEST_F(EngineTest, BrakeHoldsNewDeliveriesUntilReleased) {
  StartServer();
  auto brake = std::make_shared<std::atomic<bool>>(true);
  EngineOptions o = Options(Config());
  o.brake = [brake](uint32_t owner) { return owner == 0 && brake->load(); };
  StartEngine(std::move(o));
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  std::vector<DomainSummary> summary = engine_.Summary();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].ready, 1u);
  EXPECT_EQ(summary[0].connections, 0u);
  brake->store(false);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
}

TEST_F(EngineTest, StopWithConnectionsInFlightReportsNothingUndecided) {
  ServerOptions so;
  so.hold_greetings = true;
  StartServer(so);
  StartEngine(Options(Config()));
  for (int i = 0; i < 5; ++i) {
    engine_.Submit(spool_.Add("a@origin.test", {absl::StrCat("r", i, "@smart.test")},
                              "smart.test", "x\r\n"));
  }
  ASSERT_TRUE(server_->AwaitConnections(5));
  engine_.Stop();  // cancels, closes, frees: ASan checks the rest
  EXPECT_TRUE(engine_.reports().empty());  // nothing decided: the spool keeps them pending
  server_->ReleaseGreetings();  // the server's threads find their peers gone
  ASSERT_TRUE(server_->AwaitAllClosed());
  EXPECT_TRUE(server_->transactions().empty());
}

// A body larger than what the socket buffers hold, to a server that stops reading after
// its 354: the send stays in flight.
std::string HugeBody() {
  std::string big;
  while (big.size() < (48u << 20)) big += ".dotted line to stuff, over and over\r\n";
  return big;
}

TEST_F(EngineTest, StopWithABodySendStuck) {
  ServerOptions so;
  so.stall_in_data = true;
  StartServer(so);
  StartEngine(Options(Config()));
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", HugeBody()));
  ASSERT_TRUE(server_->AwaitDataStarted());
  engine_.Stop();  // cancels the stuck send and the reads, closes, frees: ASan checks
  EXPECT_TRUE(engine_.reports().empty());
}

TEST_F(EngineTest, DataBlockTimeoutDefers) {
  ServerOptions so;
  so.stall_in_data = true;
  StartServer(so);
  auto config = Config("", "max_outbound_connections = 1");
  config->global.smtp_data_block_timeout = absl::Seconds(1);
  StartEngine(Options(config));
  absl::Time start = absl::Now();
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", HugeBody()));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 1));
  std::string reply = AllItems(engine_.reports())[0].reply;
  EXPECT_NE(reply.find("timeout"), std::string::npos) << reply;
  // The retry (200 ms later) needs the one connection slot: the stuck one was closed at
  // once, not after another command timeout (10 s) spent waiting for its send.
  ASSERT_TRUE(server_->AwaitConnections(2));
  EXPECT_LT(absl::Now() - start, absl::Seconds(6));
}

// RFC 5321 §4.5.3.2 times each reply: a greeting dribbled a byte at a time (24 bytes, one
// every 250 ms: 6 s) is cut at smtp_greeting_timeout (1 s); bytes that complete no reply
// do not extend the timer (they used to, so the greeting arrived and the mail went).
TEST_F(EngineTest, DribbledGreetingIsCutAtTheGreetingTimeout) {
  ServerOptions so;
  so.greeting_byte_interval_ms = 250;
  StartServer(so);
  auto config = Config("", "max_outbound_connections = 1");
  config->global.smtp_greeting_timeout = absl::Seconds(1);
  StartEngine(Options(config));
  const absl::Time start = absl::Now();
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  const std::string reply = AllItems(engine_.reports())[0].reply;
  EXPECT_NE(reply.find("timeout"), std::string::npos) << reply;
  EXPECT_EQ(server_->transactions().size(), 0u);
  engine_.Stop();
}

TEST_F(EngineTest, BadDomainFailsWithoutConnecting) {
  StartServer();
  StartEngine(Options(Config()));
  DeliveryJob job = spool_.Add("a@origin.test", {"r@bad..domain"}, "bad..domain", "x\r\n");
  engine_.Submit(job);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kFailed, 1));
  EXPECT_EQ(AllItems(engine_.reports())[0].reply.rfind("5.1.2 ", 0), 0u);
  EXPECT_EQ(server_->connections_accepted(), 0);
}

TEST_F(EngineTest, NextHostAfter421GreetingOrMidTransaction) {
  ServerOptions busy;
  busy.greeting = "421 4.3.2 too busy";
  auto first = TestSmtpServer::Start(busy);
  ASSERT_TRUE(first.ok());
  ServerOptions closing;  // accepts, then says 421 at the end of the data
  closing.data_reply = [](const ServerTransaction&) { return "421 4.3.2 shutting down"; };
  auto second = TestSmtpServer::Start(closing);
  ASSERT_TRUE(second.ok());
  StartServer();  // the third host takes it
  StartEngine(Options(testing::TestConfig(absl::StrFormat(
                          "Domain \"hops.test\" { routes = ( \"[127.0.0.1]:%d\" "
                          "\"[127.0.0.1]:%d\" \"[127.0.0.1]:%d\" ) }",
                          (*first)->port(), (*second)->port(), server_->port()))
                          .value()));
  DeliveryJob job = spool_.Add("a@origin.test", {"r@hops.test"}, "hops.test", "hop\r\n");
  engine_.Submit(job);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  std::vector<DeliveryReport::Item> items = AllItems(engine_.reports());
  ASSERT_EQ(items.size(), 1u);  // one attempt, three hosts
  EXPECT_EQ(items[0].attempts, 1u);
  EXPECT_EQ(items[0].remote_host, absl::StrCat("127.0.0.1[127.0.0.1]:", server_->port()));
  EXPECT_EQ((*first)->transactions().size(), 0u);
  EXPECT_EQ((*second)->transactions().size(), 1u);
  ASSERT_TRUE(server_->AwaitTransactions(1));
  EXPECT_EQ(server_->transactions()[0].content, SpoolFile::ContentOf(job));
}

// A server that greets with 5xx will not talk to us; that says nothing of the messages
// (Postfix: smtp_skip_5xx_greeting). The next host is tried; when none is left, every
// message waiting for the destination is deferred, none bounced.
TEST_F(EngineTest, FiveHundredGreetingDefersInsteadOfBouncing) {
  ServerOptions refusing;
  refusing.greeting = "554 5.7.1 no service for you";
  StartServer(refusing);
  StartEngine(Options(Config("", "max_outbound_connections = 1")));
  for (int i = 0; i < 3; ++i) {
    engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  }
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 3));
  std::vector<DeliveryReport::Item> items = AllItems(engine_.reports());
  for (const DeliveryReport::Item& item : items) {
    EXPECT_NE(item.state, RecipientState::kFailed) << item.reply;
  }
  EXPECT_NE(items[0].reply.find("greeting: 554 5.7.1"), std::string::npos) << items[0].reply;
}

TEST_F(EngineTest, RequiredTlsIsNeverPlaintext) {
  StartServer();  // offers no STARTTLS
  StartEngine(Options(Config("", "tls = \"required\"")));
  engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "secret\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 1));
  EXPECT_NE(AllItems(engine_.reports())[0].reply.find("STARTTLS required"), std::string::npos)
      << AllItems(engine_.reports())[0].reply;
  EXPECT_TRUE(server_->transactions().empty());
}

TEST_F(EngineTest, SharedGlobalCounterLimitsAcrossEngines) {
  ServerOptions so;
  so.hold_greetings = true;
  StartServer(so);
  std::atomic<int64_t> shared{1};  // another engine holds one of the two
  EngineOptions o = Options(Config("max_outbound_connections = 2"));
  o.outbound_connections = &shared;
  StartEngine(std::move(o));
  for (int i = 0; i < 3; ++i) {
    engine_.Submit(spool_.Add("a@origin.test", {"r@smart.test"}, "smart.test", "x\r\n"));
  }
  ASSERT_TRUE(server_->AwaitConnections(1));
  EXPECT_EQ(engine_.Stats().open_connections, 1u);
  EXPECT_EQ(shared.load(), 2);
  shared.fetch_sub(1);  // the other engine's connection closed: polled, not signalled
  ASSERT_TRUE(server_->AwaitConnections(2));
  server_->ReleaseGreetings();
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 3));
  EXPECT_EQ(engine_.Stats().deferred, 0u);
  EXPECT_EQ(server_->max_open(), 2);
  engine_.Stop();
  EXPECT_EQ(shared.load(), 0);
}

TEST_F(EngineTest, DeliveryLogHasOneLinePerRecipientResult) {
  ServerOptions so;
  so.rcpt_reply = [](const std::string& a) {
    return a.rfind("bad", 0) == 0 ? "550 5.1.1 no such user" : "250 2.1.5 ok";
  };
  StartServer(so);
  std::string path = spool_.path() + ".log";
  auto log = core::EventLog::Open(path);
  ASSERT_TRUE(log.ok()) << log.status();
  EngineOptions o = Options(Config());
  o.delivery_log = log->get();
  StartEngine(std::move(o));
  DeliveryJob job = spool_.Add("s@origin.test", {"good@smart.test", "bad@smart.test"},
                               "smart.test", "x\r\n");
  engine_.Submit(job);
  ASSERT_TRUE(engine_.AwaitReports([](const std::vector<DeliveryReport>& r) {
    return AllItems(r).size() >= 2;
  }));
  engine_.Stop();
  (*log)->Flush();
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);
  std::string remote = absl::StrCat("\"remote\":\"127.0.0.1[127.0.0.1]:", server_->port(), "\"");
  EXPECT_NE(lines[0].find("\"event\":\"delivered\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"rcpt\":\"good@smart.test\""), std::string::npos);
  EXPECT_NE(lines[0].find(remote), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"id\":\"" + job.id.ToHex() + "\""), std::string::npos);
  EXPECT_NE(lines[0].find("\"attempts\":1"), std::string::npos);
  EXPECT_NE(lines[0].find("\"queue_ms\":"), std::string::npos);
  EXPECT_NE(lines[1].find("\"event\":\"failed\""), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("\"reply\":\"550 5.1.1 no such user\""), std::string::npos);
}

// ---- MX routing through a real DNS server

class EngineMxTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    if (IsSkipped()) return;
    auto d = dns::testing::Dnsmasq::Start({
        "--mx-host=single.test,mx.single.test,10",
        "--host-record=mx.single.test,127.0.0.1",
        // The preferred host refuses connections (nothing listens on 127.0.0.2).
        "--mx-host=fallback.test,mx1.fallback.test,10",
        "--mx-host=fallback.test,mx2.fallback.test,20",
        "--host-record=mx1.fallback.test,127.0.0.2",
        "--host-record=mx2.fallback.test,127.0.0.1",
        "--host-record=implicit.test,127.0.0.1",
        "--mx-host=nullmx.test,.,0",
    });
    if (d.status().code() == absl::StatusCode::kFailedPrecondition) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status();
    dnsmasq_ = std::move(d).value();
    StartServer();
    StartEngine(Options(Config(), dnsmasq_->server()));  // remote_smtp_port: the server's
  }

  std::unique_ptr<dns::testing::Dnsmasq> dnsmasq_;
};

TEST_F(EngineMxTest, DeliversToTheMxHostOnRemoteSmtpPort) {
  engine_.Submit(spool_.Add("a@origin.test", {"r@single.test"}, "single.test", "mx\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  EXPECT_EQ(AllItems(engine_.reports())[0].remote_host,
            absl::StrCat("mx.single.test[127.0.0.1]:", server_->port()));
  ASSERT_TRUE(server_->AwaitTransactions(1));
  EXPECT_EQ(server_->transactions()[0].recipients, std::vector<std::string>{"r@single.test"});
}

TEST_F(EngineMxTest, FallsBackToTheNextMxWhenTheFirstRefuses) {
  engine_.Submit(spool_.Add("a@origin.test", {"r@fallback.test"}, "fallback.test", "fb\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  EXPECT_EQ(AllItems(engine_.reports())[0].remote_host,
            absl::StrCat("mx2.fallback.test[127.0.0.1]:", server_->port()));
  EngineStats stats = engine_.Stats();
  EXPECT_EQ(stats.connect_failures, 1u);  // mx1 first, by preference
  EXPECT_EQ(stats.sessions, 1u);
}

TEST_F(EngineMxTest, ImplicitMx) {
  engine_.Submit(spool_.Add("a@origin.test", {"r@implicit.test"}, "implicit.test", "a\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, 1));
  EXPECT_EQ(AllItems(engine_.reports())[0].remote_host,
            absl::StrCat("implicit.test[127.0.0.1]:", server_->port()));
}

TEST_F(EngineMxTest, NullMxFailsEveryQueuedMessage) {
  for (int i = 0; i < 3; ++i) {
    engine_.Submit(spool_.Add("a@origin.test", {absl::StrCat("r", i, "@nullmx.test")},
                              "nullmx.test", "n\r\n"));
  }
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kFailed, 3));
  for (const DeliveryReport::Item& i : AllItems(engine_.reports())) {
    EXPECT_EQ(i.state, RecipientState::kFailed);
    EXPECT_EQ(i.reply.rfind("5.1.10 ", 0), 0u) << i.reply;
  }
  EXPECT_EQ(server_->connections_accepted(), 0);
}

TEST_F(EngineMxTest, NxdomainFails) {
  engine_.Submit(spool_.Add("a@origin.test", {"r@nosuch.test"}, "nosuch.test", "n\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kFailed, 1));
  DeliveryReport::Item item = AllItems(engine_.reports())[0];
  EXPECT_EQ(item.reply.rfind("5.1.2 ", 0), 0u) << item.reply;
  EXPECT_EQ(item.remote_host, "");
}

TEST_F(EngineMxTest, DnsTimeoutDefers) {
  dnsmasq_->Stop();  // no answer at all: a temporary failure
  engine_.Submit(spool_.Add("a@origin.test", {"r@single.test"}, "single.test", "t\r\n"));
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDeferred, 1));
  EXPECT_EQ(AllItems(engine_.reports())[0].reply.rfind("4.4.3 ", 0), 0u);
}

}  // namespace
}  // namespace ringmail::delivery
