// TlsSession against TlsSession in memory: handshakes (TLS 1.2 and 1.3), data both ways
// through bounded buffers, certificate and host-name verification, garbage and truncated
// input, close_notify, and context errors. Certificates come from a throwaway CA made by
// TestPki for this run.
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/tls/test_pki_util.h"
#include "tls/context.h"
#include "tls/session.h"

namespace ringmail::tls {
namespace {

using tls_test::TestCertificate;
using tls_test::TestPki;

class TlsSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(std::move(*pki));
    auto cert = pki_->IssueServer("server", {"mx.test", "alt.test"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    server_cert_ = new TestCertificate(*cert);
    auto self = pki_->SelfSigned("rogue", "mx.test");
    ASSERT_TRUE(self.ok()) << self.status();
    rogue_cert_ = new TestCertificate(*self);
  }
  static void TearDownTestSuite() {
    delete rogue_cert_;
    delete server_cert_;
    delete pki_;
  }

  static std::shared_ptr<const TlsContext> ServerContext(const TestCertificate& c,
                                                         TlsVersion max = TlsVersion::kTls13) {
    TlsContextOptions o;
    o.role = TlsRole::kServer;
    o.certificate_chain_file = c.chain_file;
    o.private_key_file = c.key_file;
    o.max_version = max;
    auto ctx = TlsContext::Create(o);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }
  static std::shared_ptr<const TlsContext> ClientContext(TlsVersion max = TlsVersion::kTls13) {
    TlsContextOptions o;
    o.role = TlsRole::kClient;
    o.ca_file = pki_->ca_file();
    o.use_system_ca = false;
    o.max_version = max;
    auto ctx = TlsContext::Create(o);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return ctx.ok() ? *ctx : nullptr;
  }

  // Moves ciphertext both ways and drives both handshakes until neither makes progress.
  static void Handshake(TlsSession& client, TlsSession& server, TlsResult* cr, TlsResult* sr) {
    *cr = client.Handshake();
    *sr = TlsResult::kWantRead;
    for (int round = 0; round < 20; ++round) {
      bool moved = false;
      if (client.has_ciphertext_out()) {
        std::string bytes = client.TakeCiphertext();
        EXPECT_EQ(server.FeedCiphertext(bytes), bytes.size());
        moved = true;
      }
      *sr = server.Handshake();
      if (server.has_ciphertext_out()) {
        std::string bytes = server.TakeCiphertext();
        EXPECT_EQ(client.FeedCiphertext(bytes), bytes.size());
        moved = true;
      }
      *cr = client.Handshake();
      if (!moved) break;
    }
  }

  static std::unique_ptr<TlsSession> Server(std::shared_ptr<const TlsContext> ctx,
                                            TlsLimits limits = {}) {
    auto s = TlsSession::NewServer(std::move(ctx), limits);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  static std::unique_ptr<TlsSession> Client(std::shared_ptr<const TlsContext> ctx,
                                            std::string name, VerifyMode mode,
                                            TlsLimits limits = {}) {
    ClientOptions co;
    co.server_name = std::move(name);
    co.verify = mode;
    auto s = TlsSession::NewClient(std::move(ctx), co, limits);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  static TestPki* pki_;
  static TestCertificate* server_cert_;
  static TestCertificate* rogue_cert_;
};

TestPki* TlsSessionTest::pki_ = nullptr;
TestCertificate* TlsSessionTest::server_cert_ = nullptr;
TestCertificate* TlsSessionTest::rogue_cert_ = nullptr;

TEST_F(TlsSessionTest, Tls13HandshakeVerifiesChainAndHostName) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRequire);
  ASSERT_TRUE(server && client);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(cr, TlsResult::kOk) << client->error();
  ASSERT_EQ(sr, TlsResult::kOk) << server->error();
  EXPECT_TRUE(client->established());
  EXPECT_EQ(server->version(), "TLS1.3");
  EXPECT_EQ(client->version(), "TLS1.3");
  EXPECT_EQ(server->cipher(), "TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(server->cipher(), client->cipher());
  EXPECT_EQ(server->Description(), "TLS1.3 TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(client->verification(), Verification::kOk) << client->verify_error();
  EXPECT_EQ(server->verification(), Verification::kNotChecked);
}

TEST_F(TlsSessionTest, Tls12HandshakeWhenTheClientStopsAt12) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(TlsVersion::kTls12), "alt.test", VerifyMode::kRequire);
  ASSERT_TRUE(server && client);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(cr, TlsResult::kOk) << client->error();
  ASSERT_EQ(sr, TlsResult::kOk) << server->error();
  EXPECT_EQ(server->version(), "TLS1.2");
  EXPECT_EQ(server->cipher(), "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(client->verification(), Verification::kOk) << client->verify_error();
}

TEST_F(TlsSessionTest, ServerChoosesTheSuiteInItsOwnOrder) {
  TlsContextOptions o;
  o.role = TlsRole::kClient;
  o.use_system_ca = false;
  o.cipher_list = "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256";
  auto ctx = TlsContext::Create(o);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(*ctx, "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk) << server->error();
  EXPECT_EQ(server->cipher(), "TLS_CHACHA20_POLY1305_SHA256");
  // A client that offers only AES-GCM still gets it.
  o.cipher_list = "TLS13-AES128-GCM-SHA256";
  auto aes = TlsContext::Create(o);
  ASSERT_TRUE(aes.ok());
  auto server2 = Server(ServerContext(*server_cert_));
  auto client2 = Client(*aes, "mx.test", VerifyMode::kRecord);
  Handshake(*client2, *server2, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk) << server2->error();
  EXPECT_EQ(server2->cipher(), "TLS_AES_128_GCM_SHA256");
}

TEST_F(TlsSessionTest, DataBothWaysThroughBoundedBuffers) {
  TlsLimits limits;
  limits.ciphertext_in_bytes_max = 32 * 1024;
  limits.ciphertext_out_bytes_max = 32 * 1024;
  auto server = Server(ServerContext(*server_cert_), limits);
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRequire, limits);
  ASSERT_TRUE(server && client);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(cr, TlsResult::kOk);
  ASSERT_EQ(sr, TlsResult::kOk);
  std::string payload;
  for (int i = 0; payload.size() < 1024 * 1024; ++i) {
    payload += "line " + std::to_string(i) + "\r\n";
  }
  // client -> server, 1 MiB, moving ciphertext only as the bounded buffers allow.
  std::string received;
  size_t offset = 0;
  size_t max_out = 0;
  std::string in_flight;
  for (int steps = 0; received.size() < payload.size() && steps < 10000; ++steps) {
    if (offset < payload.size()) {
      size_t used = 0;
      TlsResult w = client->Write(std::string_view(payload).substr(offset), &used);
      ASSERT_TRUE(w == TlsResult::kOk || w == TlsResult::kWantWrite) << client->error();
      offset += used;
    }
    max_out = std::max(max_out, client->ciphertext_out_bytes());
    in_flight += client->TakeCiphertext();
    in_flight.erase(0, server->FeedCiphertext(in_flight));
    TlsResult r = server->Read(&received, 8192);
    ASSERT_TRUE(r == TlsResult::kOk || r == TlsResult::kWantRead) << server->error();
    EXPECT_LE(server->ciphertext_in_bytes(), limits.ciphertext_in_bytes_max);
  }
  EXPECT_EQ(received, payload);
  EXPECT_LE(max_out, limits.ciphertext_out_bytes_max + 16384 + 256);  // one record's overshoot
  // server -> client: a reply.
  size_t used = 0;
  ASSERT_EQ(server->Write("250 ok\r\n", &used), TlsResult::kOk);
  EXPECT_EQ(used, 8u);
  client->FeedCiphertext(server->TakeCiphertext());
  std::string reply;
  // TLS 1.3: the server's session tickets arrive first; Read skips them.
  ASSERT_EQ(client->Read(&reply, 100), TlsResult::kOk) << client->error();
  EXPECT_EQ(reply, "250 ok\r\n");
  EXPECT_EQ(client->Read(&reply, 100), TlsResult::kWantRead);
}

TEST_F(TlsSessionTest, ReadHandsOutAtMostWhatIsAsked) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk);
  size_t used = 0;
  ASSERT_EQ(client->Write("0123456789", &used), TlsResult::kOk);
  server->FeedCiphertext(client->TakeCiphertext());
  std::string out;
  ASSERT_EQ(server->Read(&out, 4), TlsResult::kOk);
  EXPECT_EQ(out, "0123");
  EXPECT_TRUE(server->HasBufferedInput());
  ASSERT_EQ(server->Read(&out, 100), TlsResult::kOk);
  EXPECT_EQ(out, "0123456789");
  EXPECT_FALSE(server->HasBufferedInput());
}

TEST_F(TlsSessionTest, UntrustedCertificateFailsWhenRequired) {
  auto server = Server(ServerContext(*rogue_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRequire);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  EXPECT_EQ(cr, TlsResult::kError);
  EXPECT_TRUE(client->failed());
  EXPECT_FALSE(client->established());
  EXPECT_EQ(client->verification(), Verification::kFailed);
  EXPECT_FALSE(client->verify_error().empty());
  EXPECT_TRUE(absl::StrContains(client->error(), "certificate")) << client->error();
  // The client's alert reached the server, which fails too instead of waiting.
  EXPECT_EQ(sr, TlsResult::kError) << TlsResultName(sr);
}

TEST_F(TlsSessionTest, UntrustedCertificateIsRecordedWhenOpportunistic) {
  auto server = Server(ServerContext(*rogue_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(cr, TlsResult::kOk) << client->error();
  ASSERT_EQ(sr, TlsResult::kOk) << server->error();
  EXPECT_EQ(client->verification(), Verification::kFailed);
  EXPECT_FALSE(client->verify_error().empty());
}

TEST_F(TlsSessionTest, HostNameMismatch) {
  {
    auto server = Server(ServerContext(*server_cert_));
    auto client = Client(ClientContext(), "other.test", VerifyMode::kRequire);
    TlsResult cr, sr;
    Handshake(*client, *server, &cr, &sr);
    EXPECT_EQ(cr, TlsResult::kError);
    EXPECT_EQ(client->verification(), Verification::kFailed);
    EXPECT_NE(sr, TlsResult::kOk);
  }
  {
    auto server = Server(ServerContext(*server_cert_));
    auto client = Client(ClientContext(), "other.test", VerifyMode::kRecord);
    TlsResult cr, sr;
    Handshake(*client, *server, &cr, &sr);
    ASSERT_EQ(cr, TlsResult::kOk) << client->error();
    EXPECT_EQ(client->verification(), Verification::kFailed);
    EXPECT_TRUE(absl::StrContains(client->verify_error(), "-322") ||
                absl::StrContains(absl::AsciiStrToLower(client->verify_error()), "domain"))
        << client->verify_error();
  }
}

TEST_F(TlsSessionTest, NoTrustAnchorsMeansVerificationFails) {
  TlsContextOptions o;
  o.role = TlsRole::kClient;
  o.use_system_ca = false;
  auto ctx = TlsContext::Create(o);
  ASSERT_TRUE(ctx.ok());
  EXPECT_FALSE((*ctx)->has_trust_anchors());
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(*ctx, "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(cr, TlsResult::kOk) << client->error();
  EXPECT_EQ(client->verification(), Verification::kFailed);
}

TEST_F(TlsSessionTest, GarbageIsACleanError) {
  auto server = Server(ServerContext(*server_cert_));
  ASSERT_TRUE(server);
  const std::string garbage = "EHLO client.example\r\nMAIL FROM:<a@b>\r\n";
  EXPECT_EQ(server->FeedCiphertext(garbage), garbage.size());
  EXPECT_EQ(server->Handshake(), TlsResult::kError);
  EXPECT_TRUE(server->failed());
  EXPECT_FALSE(server->error().empty());
  EXPECT_EQ(server->Handshake(), TlsResult::kError);  // stays failed
  std::string out;
  EXPECT_EQ(server->Read(&out, 10), TlsResult::kError);
  size_t used = 1;
  EXPECT_EQ(server->Write("x", &used), TlsResult::kError);
  EXPECT_EQ(used, 0u);
}

TEST_F(TlsSessionTest, GarbageAfterTheHandshakeIsAnError) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk);
  // A record header claiming application data followed by bytes that do not decrypt.
  std::string bogus("\x17\x03\x03\x00\x20", 5);
  bogus.append(32, 'x');
  server->FeedCiphertext(bogus);
  std::string out;
  EXPECT_EQ(server->Read(&out, 100), TlsResult::kError);
  EXPECT_TRUE(out.empty());
}

TEST_F(TlsSessionTest, TruncatedHandshakeWaitsThenFailsAtEof) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  ASSERT_EQ(client->Handshake(), TlsResult::kWantRead);
  std::string hello = client->TakeCiphertext();
  ASSERT_GT(hello.size(), 20u);
  server->FeedCiphertext(std::string_view(hello).substr(0, hello.size() / 2));
  EXPECT_EQ(server->Handshake(), TlsResult::kWantRead);  // a partial record: wait
  EXPECT_FALSE(server->has_ciphertext_out());
  server->FeedEof();
  EXPECT_EQ(server->Handshake(), TlsResult::kError);
  EXPECT_TRUE(absl::StrContains(server->error(), "closed")) << server->error();
}

TEST_F(TlsSessionTest, CiphertextInputIsBounded) {
  TlsLimits limits;
  limits.ciphertext_in_bytes_max = 1000;
  auto server = Server(ServerContext(*server_cert_), limits);
  const std::string big(5000, '\x16');
  EXPECT_EQ(server->FeedCiphertext(big), 1000u);
  EXPECT_EQ(server->ciphertext_in_room(), 0u);
  EXPECT_EQ(server->FeedCiphertext(big), 0u);
}

TEST_F(TlsSessionTest, CloseNotifyAndEofAfterTheHandshake) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk);
  size_t used = 0;
  ASSERT_EQ(client->Write("QUIT\r\n", &used), TlsResult::kOk);
  client->Shutdown();
  server->FeedCiphertext(client->TakeCiphertext());
  std::string out;
  EXPECT_EQ(server->Read(&out, 100), TlsResult::kOk);
  EXPECT_EQ(out, "QUIT\r\n");
  EXPECT_EQ(server->Read(&out, 100), TlsResult::kClosed);
  // A plain EOF (no close_notify) after the handshake is also a close.
  auto server2 = Server(ServerContext(*server_cert_));
  auto client2 = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  Handshake(*client2, *server2, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk);
  server2->FeedEof();
  EXPECT_EQ(server2->Read(&out, 100), TlsResult::kClosed);
}

TEST_F(TlsSessionTest, SessionKeepsItsContextAcrossAReload) {
  auto ctx = ServerContext(*server_cert_);
  auto server = Server(ctx);
  ctx.reset();  // the "reload" dropped the old context; the session still holds it
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRequire);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  EXPECT_EQ(cr, TlsResult::kOk);
  EXPECT_EQ(sr, TlsResult::kOk);
}

TEST_F(TlsSessionTest, ContextErrors) {
  TlsContextOptions o;
  o.role = TlsRole::kServer;
  auto r = TlsContext::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  o.certificate_chain_file = pki_->dir() + "/missing.pem";
  o.private_key_file = server_cert_->key_file;
  r = TlsContext::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "missing.pem")) << r.status();
  o.certificate_chain_file = server_cert_->chain_file;
  o.private_key_file = rogue_cert_->key_file;  // does not match
  r = TlsContext::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  o.private_key_file = server_cert_->key_file;
  o.cipher_list = "NO-SUCH-CIPHER";
  r = TlsContext::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  o.cipher_list.clear();
  o.groups = "X25519:NOPE";
  r = TlsContext::Create(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  o.groups = "P-384:X25519";
  EXPECT_TRUE(TlsContext::Create(o).ok());
  // Roles must match.
  auto server_ctx = ServerContext(*server_cert_);
  EXPECT_FALSE(TlsSession::NewClient(server_ctx, ClientOptions{}).ok());
  EXPECT_FALSE(TlsSession::NewServer(ClientContext()).ok());
}

TEST_F(TlsSessionTest, OldProtocolVersionsAreRefused) {
  // A TLS 1.3-only client against a TLS 1.2-only server: no common version.
  auto server = Server(ServerContext(*server_cert_, TlsVersion::kTls12));
  TlsContextOptions o;
  o.role = TlsRole::kClient;
  o.use_system_ca = false;
  o.min_version = TlsVersion::kTls13;
  auto ctx = TlsContext::Create(o);
  ASSERT_TRUE(ctx.ok());
  auto client = Client(*ctx, "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  EXPECT_EQ(sr, TlsResult::kError);
  EXPECT_EQ(cr, TlsResult::kError);
}

}  // namespace
}  // namespace ringmail::tls
