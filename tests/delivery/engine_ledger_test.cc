// The Engine with a real Ledger on a real owner loop: messages committed by a real
// SpoolWriter, their jobs (as the Ledger dispatched them) submitted to the Engine, the
// reports taking the production path (PostReportsToLedger through the topology), the
// Ledger writing RECIPIENT and DONE records and a DSN for the refused recipient, which
// the Engine then delivers to the sender.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/ring.h"
#include "delivery/engine.h"
#include "delivery/ledger.h"
#include "delivery/topology.h"
#include "gtest/gtest.h"
#include "tests/delivery/engine_harness_util.h"
#include "tests/delivery/ledger_test_util.h"
#include "tests/delivery/smtp_server_util.h"

namespace ringmail::delivery {
namespace {

using testing::EngineHarness;
using testing::LedgerNode;
using testing::ServerOptions;
using testing::ServerTransaction;
using testing::TestSmtpServer;

TEST(EngineLedgerTest, ReportsReachTheLedgerWhichRecordsAndBounces) {
  absl::Status probe = core::ProbeKernel();
  if (!probe.ok()) GTEST_SKIP() << probe;
  ServerOptions so;
  so.rcpt_reply = [](const std::string& a) {
    return absl::StartsWith(a, "bad@") ? "550 5.1.1 no such user" : "250 2.1.5 ok";
  };
  auto server = TestSmtpServer::Start(so);
  ASSERT_TRUE(server.ok()) << server.status();

  testing::TempDir spool_dir;
  LedgerNode::Setup setup;
  setup.spool_dir = spool_dir.path();
  setup.options.hostname = "engine.test";
  LedgerNode node(std::move(setup));
  ASSERT_TRUE(node.lt().started());

  DeliveryTopology topology;
  topology.owner_loops = {&node.lt().loop()};
  topology.ledgers = {&node.ledger()};
  auto config = testing::TestConfig(
      "hostname = \"engine.test\"\n"
      "Domain \"smart.test\" { routes = \"[127.0.0.1]:" +
      std::to_string((*server)->port()) + "\" }\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EngineOptions options;
  options.config = *config;
  options.topology = &topology;  // reports and the brake through the topology
  options.resolver = testing::TestResolver("127.0.0.1:9");
  EngineHarness engine;
  ASSERT_TRUE(engine.Start(std::move(options), /*production_reports=*/true).ok());

  std::vector<std::unique_ptr<core::Message>> messages;
  messages.push_back(testing::TestMessage(1, "s@smart.test", {"a@smart.test"}));
  messages.push_back(testing::TestMessage(2, "s@smart.test", {"b@smart.test", "bad@smart.test"}));
  std::vector<std::string> contents;
  for (const auto& m : messages) contents.push_back(testing::ContentOf(*m));
  node.Commit(std::move(messages));
  ASSERT_TRUE(node.AwaitJobs(2));
  for (DeliveryJob& job : node.TakeJobs()) engine.Submit(std::move(job));

  // Message 2's failure makes a DSN to s@smart.test: the Ledger dispatches it; deliver it.
  ASSERT_TRUE(node.AwaitJobs(1));
  std::vector<DeliveryJob> dsn = node.TakeJobs();
  ASSERT_EQ(dsn.size(), 1u);
  EXPECT_EQ(dsn[0].mail_from, "");
  engine.Submit(std::move(dsn[0]));
  ASSERT_TRUE(node.AwaitStats([](const LedgerStats& s) {
    return s.done_written >= 3 && s.live_messages == 0 && s.bounces_sent == 1;
  }));
  LedgerStats stats = node.Stats();
  EXPECT_EQ(stats.recipient_records, 4u);  // a, b, bad, and the DSN's s

  ASSERT_TRUE((*server)->AwaitTransactions(3));
  std::vector<ServerTransaction> txs = (*server)->transactions();
  ASSERT_EQ(txs.size(), 3u);
  int originals = 0;
  for (const ServerTransaction& tx : txs) {
    if (tx.mail_from.empty()) {
      EXPECT_EQ(tx.recipients, std::vector<std::string>{"s@smart.test"});
      EXPECT_NE(tx.content.find("multipart/report"), std::string::npos);
      EXPECT_NE(tx.content.find("bad@smart.test"), std::string::npos);
      EXPECT_NE(tx.content.find("550 5.1.1 no such user"), std::string::npos);
      continue;
    }
    ++originals;
    std::string expected = tx.recipients[0] == "a@smart.test" ? contents[0] : contents[1];
    if (!absl::EndsWith(expected, "\r\n")) expected += "\r\n";
    EXPECT_EQ(tx.content, expected);
  }
  EXPECT_EQ(originals, 2);
  engine.Stop();
  node.Stop();
}

}  // namespace
}  // namespace ringmail::delivery
