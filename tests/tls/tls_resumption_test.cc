// TLS 1.3 session resumption through TlsSession (tickets issued by the server context,
// saved and offered by clients), and the record-level paths the ESMTP listener and ringload
// use per message: WriteGather (one record across parts) and ReadView (no copy out).
// In memory, certificates from a throwaway TestPki.
#include <memory>
#include <string>
#include <thread>
#include <vector>

// options.h first: the Debian build's configuration shapes the other wolfSSL headers.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "gtest/gtest.h"
#include "tests/tls/test_pki_util.h"
#include "tls/context.h"
#include "tls/session.h"

namespace ringmail::tls {
namespace {

using tls_test::TestCertificate;
using tls_test::TestPki;

// TLS 1.3 record overhead for one record: header (5), inner content type (1), AEAD tag (16).
constexpr size_t kRecordOverhead = 22;

class TlsResumptionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(std::move(*pki));
    auto cert = pki_->IssueServer("server", {"mx.test"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    cert_ = new TestCertificate(*cert);
  }
  static void TearDownTestSuite() {
    delete cert_;
    delete pki_;
  }

  static std::shared_ptr<const TlsContext> ServerContext(TlsVersion max = TlsVersion::kTls13) {
    TlsContextOptions o;
    o.certificate_chain_file = cert_->chain_file;
    o.private_key_file = cert_->key_file;
    o.max_version = max;
    auto ctx = TlsContext::Create(o);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }
  static std::shared_ptr<const TlsContext> ClientContext() {
    TlsContextOptions o;
    o.role = TlsRole::kClient;
    o.ca_file = pki_->ca_file();
    o.use_system_ca = false;
    auto ctx = TlsContext::Create(o);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }

  struct Pair {
    std::unique_ptr<TlsSession> client;
    std::unique_ptr<TlsSession> server;
  };

  // A handshake to completion, then one server record ("220 ready") read by the client, as
  // after STARTTLS: the client takes in the ticket the server sent behind its last flight.
  static Pair Connect(std::shared_ptr<const TlsContext> server_ctx,
                      std::shared_ptr<const TlsContext> client_ctx,
                      std::shared_ptr<const SavedSession> resume) {
    Pair p;
    ClientOptions co;
    co.server_name = "mx.test";
    co.verify = VerifyMode::kRequire;
    co.resume = std::move(resume);
    auto c = TlsSession::NewClient(std::move(client_ctx), co);
    auto s = TlsSession::NewServer(std::move(server_ctx));
    EXPECT_TRUE(c.ok() && s.ok());
    if (!c.ok() || !s.ok()) return p;
    p.client = std::move(*c);
    p.server = std::move(*s);
    TlsResult cr = p.client->Handshake();
    TlsResult sr = TlsResult::kWantRead;
    for (int i = 0; i < 8 && !(cr == TlsResult::kOk && sr == TlsResult::kOk); ++i) {
      p.server->FeedCiphertext(p.client->TakeCiphertext());
      sr = p.server->Handshake();
      p.client->FeedCiphertext(p.server->TakeCiphertext());
      cr = p.client->Handshake();
    }
    EXPECT_EQ(cr, TlsResult::kOk) << p.client->error();
    EXPECT_EQ(sr, TlsResult::kOk) << p.server->error();
    p.server->FeedCiphertext(p.client->TakeCiphertext());  // the client's Finished, if left
    EXPECT_EQ(p.server->Handshake(), TlsResult::kOk);
    size_t used = 0;
    EXPECT_EQ(p.server->Write("220 ready\r\n", &used), TlsResult::kOk);
    p.client->FeedCiphertext(p.server->TakeCiphertext());
    std::string greeting;
    EXPECT_EQ(p.client->Read(&greeting, 100), TlsResult::kOk) << p.client->error();
    EXPECT_EQ(greeting, "220 ready\r\n");
    return p;
  }

  static TestPki* pki_;
  static TestCertificate* cert_;
};

TestPki* TlsResumptionTest::pki_ = nullptr;
TestCertificate* TlsResumptionTest::cert_ = nullptr;

TEST_F(TlsResumptionTest, SecondConnectionResumesWithTheTicket) {
  auto server_ctx = ServerContext();
  auto client_ctx = ClientContext();
  Pair first = Connect(server_ctx, client_ctx, nullptr);
  ASSERT_TRUE(first.client && first.server);
  EXPECT_FALSE(first.client->resumed());
  EXPECT_FALSE(first.server->resumed());
  std::shared_ptr<const SavedSession> saved = first.client->SaveSession();
  ASSERT_NE(saved, nullptr) << "the server issued no ticket";
  EXPECT_EQ(first.server->SaveSession(), nullptr);  // a server has nothing to save

  Pair second = Connect(server_ctx, client_ctx, saved);
  ASSERT_TRUE(second.client && second.server);
  EXPECT_TRUE(second.client->resumed());
  EXPECT_TRUE(second.server->resumed());
  EXPECT_EQ(second.server->version(), "TLS1.3");
  EXPECT_EQ(second.client->verification(), Verification::kOk);
  // Data still flows on the resumed session.
  size_t used = 0;
  ASSERT_EQ(second.client->Write("EHLO client.test\r\n", &used), TlsResult::kOk);
  second.server->FeedCiphertext(second.client->TakeCiphertext());
  std::string got;
  EXPECT_EQ(second.server->Read(&got, 100), TlsResult::kOk);
  EXPECT_EQ(got, "EHLO client.test\r\n");

  // The saved copy stays usable: a third connection resumes from the same one. A resumed
  // session is not saved again (see SaveSession: OpenSSL servers refuse its binders).
  Pair third = Connect(server_ctx, client_ctx, saved);
  EXPECT_TRUE(third.client->resumed());
  EXPECT_EQ(third.client->SaveSession(), nullptr);
}

TEST_F(TlsResumptionTest, NoTicketBeforeTheClientReadsAnything) {
  auto server_ctx = ServerContext();
  ClientOptions co;
  auto c = TlsSession::NewClient(ClientContext(), co);
  auto s = TlsSession::NewServer(server_ctx);
  ASSERT_TRUE(c.ok() && s.ok());
  EXPECT_EQ((*c)->SaveSession(), nullptr);  // not established
}

// A certificate reload makes a new server context, with a ticket key of its own: tickets of
// the old one are not accepted (a full handshake, not an error), new ones are.
TEST_F(TlsResumptionTest, TicketFromAnotherContextFallsBackToAFullHandshake) {
  auto client_ctx = ClientContext();
  auto old_ctx = ServerContext();
  Pair first = Connect(old_ctx, client_ctx, nullptr);
  auto saved = first.client->SaveSession();
  ASSERT_NE(saved, nullptr);
  auto reloaded = ServerContext();
  Pair second = Connect(reloaded, client_ctx, saved);
  ASSERT_TRUE(second.client && second.server);
  EXPECT_FALSE(second.client->resumed());
  EXPECT_FALSE(second.server->resumed());
  EXPECT_EQ(second.client->verification(), Verification::kOk);
  Pair third = Connect(reloaded, client_ctx, second.client->SaveSession());
  EXPECT_TRUE(third.server->resumed());
}

// wolfSSL pins a client to the version of the session it offers: a TLS 1.3 ticket against
// a server that now stops at TLS 1.2 fails the handshake (hence the header's advice to
// drop a saved session after a failed handshake); without it the same client succeeds.
TEST_F(TlsResumptionTest, Tls13TicketAgainstATls12ServerFails) {
  auto client_ctx = ClientContext();
  Pair first = Connect(ServerContext(), client_ctx, nullptr);
  auto saved = first.client->SaveSession();
  ASSERT_NE(saved, nullptr);
  auto tls12 = ServerContext(TlsVersion::kTls12);
  ClientOptions co;
  co.resume = saved;
  auto c = TlsSession::NewClient(client_ctx, co);
  auto s = TlsSession::NewServer(tls12);
  ASSERT_TRUE(c.ok() && s.ok());
  TlsResult cr = (*c)->Handshake(), sr = TlsResult::kWantRead;
  for (int i = 0; i < 8 && cr != TlsResult::kError && sr != TlsResult::kError; ++i) {
    (*s)->FeedCiphertext((*c)->TakeCiphertext());
    sr = (*s)->Handshake();
    (*c)->FeedCiphertext((*s)->TakeCiphertext());
    cr = (*c)->Handshake();
  }
  EXPECT_TRUE(cr == TlsResult::kError || sr == TlsResult::kError);
  Pair fresh = Connect(tls12, client_ctx, nullptr);
  ASSERT_TRUE(fresh.server);
  EXPECT_EQ(fresh.server->version(), "TLS1.2");
}

// One server context shared by two threads (as by two event loops), each minting and
// redeeming tickets at once: every resumption succeeds (the ticket key is the context's,
// guarded by wolfSSL; run under the sanitizer build as well).
TEST_F(TlsResumptionTest, ContextSharedAcrossThreads) {
  auto server_ctx = ServerContext();
  auto client_ctx = ClientContext();
  constexpr int kRounds = 20;
  int resumed[2] = {0, 0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::shared_ptr<const SavedSession> saved;
      for (int i = 0; i < kRounds; ++i) {
        Pair p = Connect(server_ctx, client_ctx, saved);
        if (p.client == nullptr) return;
        if (p.server->resumed()) ++resumed[t];
        if (auto s = p.client->SaveSession()) saved = std::move(s);
      }
      // Debian's wolfSSL keeps an ECC fixed-point cache per thread (FP_ECC) that only
      // this call, on the thread itself, releases.
      wc_ecc_fp_free();
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(resumed[0], kRounds - 1);
  EXPECT_EQ(resumed[1], kRounds - 1);
}

TEST_F(TlsResumptionTest, WriteGatherMakesOneRecordAcrossParts) {
  Pair p = Connect(ServerContext(), ClientContext(), nullptr);
  ASSERT_TRUE(p.client && p.server);
  const std::string body(10 * 1024, 'b');
  size_t used = 0;
  ASSERT_EQ(p.client->WriteGather({"BDAT 10240 LAST\r\n", body, ".\r\n"}, &used),
            TlsResult::kOk);
  const size_t total = 17 + body.size() + 3;
  EXPECT_EQ(used, total);
  const std::string wire = p.client->TakeCiphertext();
  EXPECT_EQ(wire.size(), total + kRecordOverhead);  // one record, not three
  p.server->FeedCiphertext(wire);
  std::string_view view;
  ASSERT_EQ(p.server->ReadView(&view), TlsResult::kOk);
  EXPECT_EQ(view, "BDAT 10240 LAST\r\n" + body + ".\r\n");
  EXPECT_EQ(p.server->ReadView(&view), TlsResult::kWantRead);
  EXPECT_TRUE(view.empty());
}

TEST_F(TlsResumptionTest, WriteGatherSplitsAt16KiBAndSkipsEmptyParts) {
  Pair p = Connect(ServerContext(), ClientContext(), nullptr);
  ASSERT_TRUE(p.client && p.server);
  std::string a(10000, 'a'), b(20000, 'b'), c(5, 'c');
  size_t used = 0;
  // Empty parts, one of them with a null data() (a default string_view), are skipped.
  ASSERT_EQ(p.client->WriteGather({std::string_view(), a, "", b, c}, &used), TlsResult::kOk);
  EXPECT_EQ(used, a.size() + b.size() + c.size());
  const std::string wire = p.client->TakeCiphertext();
  EXPECT_EQ(wire.size(), used + 2 * kRecordOverhead);  // 16384 + 13621 bytes
  p.server->FeedCiphertext(wire);
  std::string got;
  std::string_view view;
  std::vector<size_t> records;
  while (p.server->ReadView(&view) == TlsResult::kOk) {
    records.push_back(view.size());
    got.append(view);
  }
  EXPECT_EQ(got, a + b + c);
  EXPECT_EQ(records, (std::vector<size_t>{16384, 13621}));
}

TEST_F(TlsResumptionTest, WriteGatherStopsAtTheOutboundLimit) {
  auto server_ctx = ServerContext();
  TlsLimits limits;
  limits.ciphertext_out_bytes_max = 20000;
  ClientOptions co;
  auto c = TlsSession::NewClient(ClientContext(), co, limits);
  auto s = TlsSession::NewServer(server_ctx);
  ASSERT_TRUE(c.ok() && s.ok());
  TlsResult cr = (*c)->Handshake(), sr = TlsResult::kWantRead;
  for (int i = 0; i < 8 && !(cr == TlsResult::kOk && sr == TlsResult::kOk); ++i) {
    (*s)->FeedCiphertext((*c)->TakeCiphertext());
    sr = (*s)->Handshake();
    (*c)->FeedCiphertext((*s)->TakeCiphertext());
    cr = (*c)->Handshake();
  }
  ASSERT_EQ(cr, TlsResult::kOk);
  (void)(*c)->TakeCiphertext();
  const std::string big(100000, 'x');
  size_t used = 0;
  ASSERT_EQ((*c)->WriteGather({"head ", big}, &used), TlsResult::kOk);
  EXPECT_EQ(used, 2u * 16384);  // two records put it over the limit; the rest waits
  EXPECT_LE((*c)->ciphertext_out_bytes(), limits.ciphertext_out_bytes_max + 16384 + 256);
  ASSERT_EQ((*c)->WriteGather({"more"}, &used), TlsResult::kWantWrite);
  EXPECT_EQ(used, 0u);
}

TEST_F(TlsResumptionTest, ReadViewReportsCloseAndErrors) {
  Pair p = Connect(ServerContext(), ClientContext(), nullptr);
  ASSERT_TRUE(p.client && p.server);
  size_t used = 0;
  ASSERT_EQ(p.client->Write("QUIT\r\n", &used), TlsResult::kOk);
  p.client->Shutdown();
  p.server->FeedCiphertext(p.client->TakeCiphertext());
  std::string_view view;
  ASSERT_EQ(p.server->ReadView(&view), TlsResult::kOk);
  EXPECT_EQ(view, "QUIT\r\n");
  EXPECT_EQ(p.server->ReadView(&view), TlsResult::kClosed);

  Pair q = Connect(ServerContext(), ClientContext(), nullptr);
  ASSERT_TRUE(q.client && q.server);
  q.server->FeedCiphertext(std::string("\x17\x03\x03\x00\x20", 5) + std::string(32, 'z'));
  EXPECT_EQ(q.server->ReadView(&view), TlsResult::kError);
  EXPECT_FALSE(q.server->error().empty());
}

}  // namespace
}  // namespace ringmail::tls
