// Outbound STARTTLS end to end: the Engine's SmtpClient against the test SMTP server with a
// server certificate from a throwaway CA (tests/tls/test_pki_util), MX and host answers
// from a real dnsmasq for the host-name checks. Covers the four policies (opportunistic,
// required, verify, off), the plaintext retry after a broken handshake, and what the
// AttemptResult's TLS facts say.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/log.h"
#include "core/ring.h"
#include "delivery/engine.h"
#include "gtest/gtest.h"
#include "tests/delivery/engine_harness_util.h"
#include "tests/delivery/smtp_server_util.h"
#include "tests/dns/dns_server_util.h"
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

std::vector<DeliveryReport::Item> TlsAllItems(const std::vector<DeliveryReport>& reports) {
  std::vector<DeliveryReport::Item> out;
  for (const DeliveryReport& r : reports) out.insert(out.end(), r.items.begin(), r.items.end());
  return out;
}

class SmtpClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = core::ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
    auto pki = tls_test::TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<tls_test::TestPki>(*std::move(pki));
    auto cert = pki_->IssueServer("mx", {"mx.good.test", "relay.good.test"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    tls::TlsContextOptions so;
    so.role = tls::TlsRole::kServer;
    so.certificate_chain_file = cert->chain_file;
    so.private_key_file = cert->key_file;
    auto server_ctx = tls::TlsContext::Create(so);
    ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
    server_tls_ = *server_ctx;
    auto d = dns::testing::Dnsmasq::Start({
        "--mx-host=good.test,mx.good.test,10",
        "--host-record=mx.good.test,127.0.0.1",
        "--mx-host=bad.test,mx.bad.test,10",
        "--host-record=mx.bad.test,127.0.0.1",
        "--host-record=relay.good.test,127.0.0.1",
    });
    if (d.status().code() == absl::StatusCode::kFailedPrecondition) GTEST_SKIP() << d.status();
    ASSERT_TRUE(d.ok()) << d.status();
    dnsmasq_ = std::move(d).value();
  }

  void StartServer(ServerOptions options) {
    auto s = TestSmtpServer::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
  }

  ServerOptions TlsServer() {
    ServerOptions o;
    o.tls = server_tls_;
    return o;
  }

  // smart.test: the server by address literal; relay.test: by host name (a smarthost
  // route); good.test / bad.test: by MX. `extra` goes at the top level, `scope` into
  // every Domain block.
  void StartEngine(const std::string& extra, const std::string& scope,
                   bool with_ca_file = true, bool with_context = true) {
    uint16_t port = server_->port();
    std::string text = absl::StrFormat(
        "hostname = \"engine.test\"\nremote_smtp_port = %d\n%s\n%s\n"
        "Domain \"smart.test\" { routes = \"[127.0.0.1]:%d\" %s }\n"
        "Domain \"relay.test\" { routes = \"relay.good.test:%d\" %s }\n"
        "Domain \"good.test\" { %s }\nDomain \"bad.test\" { %s }\n",
        port, extra, with_ca_file ? absl::StrCat("tls_ca_file = \"", pki_->ca_file(), "\"") : "",
        port, scope, port, scope, scope, scope);
    auto config = testing::TestConfig(text);
    ASSERT_TRUE(config.ok()) << config.status();
    // No retry within a test: every count below is of the first attempt only.
    (*config)->global.retry_interval = absl::Minutes(10);
    (*config)->global.max_retry_interval = absl::Minutes(10);
    EngineOptions o;
    o.config = *config;
    o.resolver = testing::TestResolver(dnsmasq_->server());
    o.random_seed = 1;
    o.retry_jitter = 0;
    auto log = core::EventLog::Open(log_path());
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
    o.delivery_log = log_.get();
    if (with_context) {
      auto ctx = MakeOutboundTlsContext((*config)->global);
      ASSERT_TRUE(ctx.ok()) << ctx.status();
      o.tls_client = *ctx;
    }
    absl::Status s = engine_.Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s;
  }

  DeliveryReport::Item SendOne(const std::string& domain, RecipientState expect) {
    std::string body = absl::StrCat("Subject: tls to ", domain, "\r\n\r\n.dot line\r\nend\r\n");
    engine_.Submit(spool_.Add("a@origin.test", {absl::StrCat("r@", domain)}, domain, body));
    EXPECT_TRUE(engine_.AwaitItems(expect, 1)) << domain;
    std::vector<DeliveryReport::Item> items = TlsAllItems(engine_.reports());
    return items.empty() ? DeliveryReport::Item() : items.back();
  }

  std::string log_path() const { return pki_->dir() + "/delivery.log"; }
  // The delivery log's lines so far (the engine's writes flushed first).
  std::string LogText() {
    log_->Flush();
    std::ifstream in(log_path());
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::unique_ptr<tls_test::TestPki> pki_;
  std::shared_ptr<const tls::TlsContext> server_tls_;
  std::unique_ptr<dns::testing::Dnsmasq> dnsmasq_;
  std::unique_ptr<TestSmtpServer> server_;
  SpoolFile spool_;
  std::unique_ptr<core::EventLog> log_;  // outlives the engine
  EngineHarness engine_;
};

TEST_F(SmtpClientTlsTest, OpportunisticUsesStartTlsAndStaysEncryptedOnReuse) {
  StartServer(TlsServer());
  StartEngine("", "");  // the default policy: opportunistic
  constexpr int kJobs = 4;
  std::vector<DeliveryJob> jobs;
  for (int i = 0; i < kJobs; ++i) {
    // Larger than one TLS record (16 KiB) and one body chunk's worth of dot lines.
    std::string body = absl::StrCat("Subject: ", i, "\r\n\r\n");
    for (int line = 0; line < 3000; ++line) absl::StrAppend(&body, ".line ", line, "\r\n");
    jobs.push_back(spool_.Add("a@origin.test", {absl::StrCat("r", i, "@smart.test")},
                              "smart.test", body));
  }
  for (const DeliveryJob& j : jobs) engine_.Submit(j);
  ASSERT_TRUE(engine_.AwaitItems(RecipientState::kDelivered, kJobs));
  ASSERT_TRUE(server_->AwaitTransactions(kJobs));
  std::vector<ServerTransaction> txs = server_->transactions();
  for (const ServerTransaction& tx : txs) {
    EXPECT_TRUE(tx.tls) << "transaction " << tx.mail_from << " in plaintext";
    int i = tx.recipients.empty() ? -1 : tx.recipients[0][1] - '0';
    ASSERT_GE(i, 0);
    ASSERT_LT(i, kJobs);
    EXPECT_EQ(tx.content, SpoolFile::ContentOf(jobs[i]));
  }
  // Every connection made its handshake; no plaintext session was needed.
  EXPECT_EQ(server_->tls_handshakes(), server_->connections_accepted());
  EXPECT_LT(server_->connections_accepted(), kJobs + 1);
}

TEST_F(SmtpClientTlsTest, OpportunisticRetriesInPlaintextWhenTheHandshakeBreaks) {
  ServerOptions o = TlsServer();
  o.break_tls_handshake = true;
  StartServer(std::move(o));
  StartEngine("", "");
  DeliveryReport::Item item = SendOne("smart.test", RecipientState::kDelivered);
  EXPECT_EQ(item.attempts, 1u);  // one attempt: the plaintext retry is part of it
  ASSERT_TRUE(server_->AwaitTransactions(1));
  EXPECT_FALSE(server_->transactions()[0].tls);
  EXPECT_EQ(server_->connections_accepted(), 2);  // the broken one, then plaintext
  std::string log = LogText();
  EXPECT_TRUE(absl::StrContains(log, "\"event\":\"delivered\"")) << log;
  EXPECT_TRUE(absl::StrContains(
      log, "\"tls_note\":\"STARTTLS handshake failed (TLS handshake: ")) << log;
  EXPECT_TRUE(absl::StrContains(log, "retried without TLS")) << log;
  EXPECT_FALSE(absl::StrContains(log, "\"tls_version\"")) << log;
}

TEST_F(SmtpClientTlsTest, RequiredDefersWhenStartTlsIsNotOffered) {
  StartServer(ServerOptions());  // no STARTTLS
  StartEngine("", "tls = \"required\"");
  DeliveryReport::Item item = SendOne("smart.test", RecipientState::kDeferred);
  EXPECT_TRUE(absl::StrContains(item.reply, "STARTTLS required but not offered")) << item.reply;
  EXPECT_TRUE(server_->transactions().empty());
}

TEST_F(SmtpClientTlsTest, RequiredDoesNotFallBackWhenTheHandshakeBreaks) {
  ServerOptions o = TlsServer();
  o.break_tls_handshake = true;
  StartServer(std::move(o));
  StartEngine("", "tls = \"required\"");
  DeliveryReport::Item item = SendOne("smart.test", RecipientState::kDeferred);
  EXPECT_TRUE(absl::StrContains(item.reply, "TLS handshake failed")) << item.reply;
  EXPECT_TRUE(server_->transactions().empty());
  EXPECT_EQ(server_->connections_accepted(), 1);
}

TEST_F(SmtpClientTlsTest, RequiredAcceptsAnUnverifiedCertificate) {
  StartServer(TlsServer());
  // No tls_ca_file: the test CA is unknown, so verification fails — and is only recorded.
  StartEngine("", "tls = \"required\"", /*with_ca_file=*/false);
  SendOne("smart.test", RecipientState::kDelivered);
  ASSERT_TRUE(server_->AwaitTransactions(1));
  EXPECT_TRUE(server_->transactions()[0].tls);
  std::string log = LogText();
  EXPECT_TRUE(absl::StrContains(log, "\"tls_verify\":\"failed: ")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"tls_version\":\"TLS1.")) << log;
}

TEST_F(SmtpClientTlsTest, VerifySucceedsWhenTheCertificateNamesTheMxHost) {
  StartServer(TlsServer());
  StartEngine("", "tls = \"verify\"");
  DeliveryReport::Item item = SendOne("good.test", RecipientState::kDelivered);
  EXPECT_EQ(item.remote_host, absl::StrCat("mx.good.test[127.0.0.1]:", server_->port()));
  ASSERT_TRUE(server_->AwaitTransactions(1));
  EXPECT_TRUE(server_->transactions()[0].tls);
  std::string log = LogText();
  EXPECT_TRUE(absl::StrContains(log, "\"tls_version\":\"TLS1.3\"")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"tls_cipher\":\"TLS_")) << log;
  EXPECT_TRUE(absl::StrContains(log, "\"tls_verify\":\"ok\"")) << log;
}

TEST_F(SmtpClientTlsTest, VerifyFailsOnAWrongHostNameAndDefers) {
  StartServer(TlsServer());
  StartEngine("", "tls = \"verify\"");
  DeliveryReport::Item item = SendOne("bad.test", RecipientState::kDeferred);
  EXPECT_TRUE(absl::StrContains(item.reply, "TLS handshake failed")) << item.reply;
  EXPECT_TRUE(absl::StrContains(item.reply, "verif")) << item.reply;
  EXPECT_TRUE(server_->transactions().empty());
  EXPECT_EQ(server_->connections_accepted(), 1);  // no plaintext retry under verify
  std::string log = LogText();
  EXPECT_TRUE(absl::StrContains(log, "\"event\":\"deferred\"")) << log;
  EXPECT_TRUE(absl::StrContains(log, "certificate verification failed")) << log;
}

TEST_F(SmtpClientTlsTest, VerifyFailsWithoutTheIssuingCa) {
  StartServer(TlsServer());
  StartEngine("", "tls = \"verify\"", /*with_ca_file=*/false);
  DeliveryReport::Item item = SendOne("good.test", RecipientState::kDeferred);
  EXPECT_TRUE(absl::StrContains(item.reply, "verif")) << item.reply;
  EXPECT_TRUE(server_->transactions().empty());
}

TEST_F(SmtpClientTlsTest, VerifyChecksTheSmarthostRouteName) {
  StartServer(TlsServer());
  StartEngine("", "tls = \"verify\"");
  DeliveryReport::Item item = SendOne("relay.test", RecipientState::kDelivered);
  EXPECT_EQ(item.remote_host, absl::StrCat("relay.good.test[127.0.0.1]:", server_->port()));
}

TEST_F(SmtpClientTlsTest, GlobalOutboundTlsOffSendsPlaintextDespiteTheOffer) {
  StartServer(TlsServer());
  StartEngine("outbound_tls = off", "");
  SendOne("smart.test", RecipientState::kDelivered);
  ASSERT_TRUE(server_->AwaitTransactions(1));
  EXPECT_FALSE(server_->transactions()[0].tls);
  EXPECT_EQ(server_->tls_handshakes(), 0);
}

TEST_F(SmtpClientTlsTest, WithoutAClientContextRequiredDefersAndOpportunisticIsPlain) {
  StartServer(TlsServer());
  StartEngine("", "tls = \"required\"", true, /*with_context=*/false);
  DeliveryReport::Item item = SendOne("smart.test", RecipientState::kDeferred);
  EXPECT_TRUE(absl::StrContains(item.reply, "no TLS client context")) << item.reply;
  EXPECT_TRUE(server_->transactions().empty());
}

}  // namespace
}  // namespace ringmail::delivery
