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
#include "tls/crypto_offload.h"
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
                                                         TlsVersion max = TlsVersion::kTls13,
                                                         bool crypto_offload = true) {
    TlsContextOptions o;
    o.role = TlsRole::kServer;
    o.certificate_chain_file = c.chain_file;
    o.private_key_file = c.key_file;
    o.max_version = max;
    o.crypto_offload = crypto_offload;
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
  // The crypto offload is on by default: AES-GCM first.
  EXPECT_EQ(server->cipher(), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(server->cipher(), client->cipher());
  EXPECT_EQ(server->Description(), "TLS1.3 TLS_AES_128_GCM_SHA256");
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
  EXPECT_EQ(server->cipher(), "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
  EXPECT_EQ(client->verification(), Verification::kOk) << client->verify_error();
}

TEST_F(TlsSessionTest, ServerChoosesTheSuiteInItsOwnOrder) {
  TlsContextOptions o;
  o.role = TlsRole::kClient;
  o.use_system_ca = false;
  o.cipher_list = "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256";
  auto ctx = TlsContext::Create(o);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(*ctx, "mx.test", VerifyMode::kRecord);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk) << server->error();
  EXPECT_EQ(server->cipher(), "TLS_AES_128_GCM_SHA256");  // offload on: AES-GCM first
  // Without the offload the server puts ChaCha20-Poly1305 first, whatever the client's order.
  o.cipher_list = "TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256";
  auto aes_first = TlsContext::Create(o);
  ASSERT_TRUE(aes_first.ok());
  auto plain_server = Server(ServerContext(*server_cert_, TlsVersion::kTls13, false));
  auto client1 = Client(*aes_first, "mx.test", VerifyMode::kRecord);
  Handshake(*client1, *plain_server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk) << plain_server->error();
  EXPECT_EQ(plain_server->cipher(), "TLS_CHACHA20_POLY1305_SHA256");
  // A client that offers only AES-GCM still gets it.
  o.cipher_list = "TLS13-AES128-GCM-SHA256";
  auto aes = TlsContext::Create(o);
  ASSERT_TRUE(aes.ok());
  auto server2 = Server(ServerContext(*server_cert_, TlsVersion::kTls13, false));
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

// Read and ReadView skip wolfSSL_read when nothing is buffered (session.cc NothingToRead):
// records fed a byte at a time, and several records fed at once, all come out, so wolfSSL
// holds no complete record that the engine would not offer it again.
TEST_F(TlsSessionTest, RecordsFedInPiecesAndTogetherAllComeOut) {
  auto server = Server(ServerContext(*server_cert_));
  auto client = Client(ClientContext(), "mx.test", VerifyMode::kRecord);
  ASSERT_TRUE(server && client);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(sr, TlsResult::kOk);
  size_t used = 0;
  ASSERT_EQ(client->Write("first record\r\n", &used), TlsResult::kOk);
  const std::string one = client->TakeCiphertext();
  std::string got;
  std::string_view view;
  for (char c : one) {
    EXPECT_TRUE(got.empty());
    ASSERT_EQ(server->FeedCiphertext(std::string_view(&c, 1)), 1u);
    const TlsResult r = server->ReadView(&view);
    if (r == TlsResult::kOk) got.append(view);
    ASSERT_TRUE(r == TlsResult::kOk || r == TlsResult::kWantRead) << server->error();
  }
  EXPECT_EQ(got, "first record\r\n");
  EXPECT_EQ(server->ReadView(&view), TlsResult::kWantRead);
  std::string three;
  for (const char* text : {"a\r\n", "b\r\n", "c\r\n"}) {
    ASSERT_EQ(client->Write(text, &used), TlsResult::kOk);
    three += client->TakeCiphertext();
  }
  ASSERT_EQ(server->FeedCiphertext(three), three.size());
  got.clear();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(server->ReadView(&view), TlsResult::kOk) << i;
    got.append(view);
  }
  EXPECT_EQ(got, "a\r\nb\r\nc\r\n");
  EXPECT_EQ(server->ReadView(&view), TlsResult::kWantRead);
  // The same through Read, in one call.
  three.clear();
  for (const char* text : {"d\r\n", "e\r\n", "f\r\n"}) {
    ASSERT_EQ(client->Write(text, &used), TlsResult::kOk);
    three += client->TakeCiphertext();
  }
  ASSERT_EQ(server->FeedCiphertext(three), three.size());
  got.clear();
  ASSERT_EQ(server->Read(&got, 100), TlsResult::kOk);
  EXPECT_EQ(got, "d\r\ne\r\nf\r\n");
  // An end of stream is still reported with nothing buffered.
  server->FeedEof();
  EXPECT_EQ(server->ReadView(&view), TlsResult::kClosed);
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

// The libcrypto device (tls/crypto_offload.h) on either side, both or neither, TLS 1.2 and
// 1.3, with X25519 or P-256 key shares: the handshake verifies the chain, data goes both
// ways, and the device's counters move exactly when a side that uses it does the work.
struct OffloadCase {
  bool server;
  bool client;
  TlsVersion max;
  const char* groups;
};

class TlsOffloadHandshakeTest : public TlsSessionTest,
                                public ::testing::WithParamInterface<OffloadCase> {};

TEST_P(TlsOffloadHandshakeTest, HandshakeAndDataWithTheOffloadOnAndOff) {
  const OffloadCase& p = GetParam();
  auto server_ctx = ServerContext(*server_cert_, TlsVersion::kTls13, p.server);
  TlsContextOptions co;
  co.role = TlsRole::kClient;
  co.ca_file = pki_->ca_file();
  co.use_system_ca = false;
  co.max_version = p.max;
  co.groups = p.groups;
  co.crypto_offload = p.client;
  auto client_ctx = TlsContext::Create(co);
  ASSERT_TRUE(server_ctx && client_ctx.ok()) << client_ctx.status();
  EXPECT_EQ(server_ctx->crypto_offload(), p.server);
  EXPECT_EQ((*client_ctx)->crypto_offload(), p.client);
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  auto server = Server(server_ctx);
  auto client = Client(*client_ctx, "mx.test", VerifyMode::kRequire);
  ASSERT_TRUE(server && client);
  TlsResult cr, sr;
  Handshake(*client, *server, &cr, &sr);
  ASSERT_EQ(cr, TlsResult::kOk) << client->error();
  ASSERT_EQ(sr, TlsResult::kOk) << server->error();
  EXPECT_EQ(client->verification(), Verification::kOk) << client->verify_error();
  // The server's order decides: AES-GCM first with its offload on, ChaCha20 without.
  const bool tls13 = p.max == TlsVersion::kTls13;
  const std::string aes = tls13 ? "TLS_AES_128_GCM_SHA256"
                                : "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
  const std::string chacha = tls13 ? "TLS_CHACHA20_POLY1305_SHA256"
                                   : "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
  EXPECT_EQ(server->cipher(), p.server ? aes : chacha);
  std::string payload(40000, 'x');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
  for (TlsSession* from : {client.get(), server.get()}) {
    TlsSession* to = from == client.get() ? server.get() : client.get();
    size_t used = 0;
    ASSERT_EQ(from->Write(payload, &used), TlsResult::kOk) << from->error();
    ASSERT_EQ(used, payload.size());
    const std::string wire = from->TakeCiphertext();
    ASSERT_EQ(to->FeedCiphertext(wire), wire.size());
    std::string got;
    while (got.size() < payload.size()) {
      const TlsResult r = to->Read(&got, 1 << 20);
      ASSERT_TRUE(r == TlsResult::kOk) << to->error();
    }
    EXPECT_EQ(got, payload);
  }
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  const bool any = p.server || p.client;
  const bool aes_used = p.server;  // the suite is AES-GCM exactly when the server offloads
  EXPECT_EQ(after.aes_gcm_encrypt > before.aes_gcm_encrypt, any && aes_used);
  EXPECT_EQ(after.aes_gcm_decrypt > before.aes_gcm_decrypt, any && aes_used);
  EXPECT_EQ(after.ecdsa_sign > before.ecdsa_sign, p.server);
  EXPECT_EQ(after.ecdsa_verify > before.ecdsa_verify, p.client);
  const bool x25519 = std::string(p.groups).rfind("X25519", 0) == 0;
  // Every side that offloads makes its X25519 key and secret on the device: TLS 1.2's ECDHE
  // through the context's device id, TLS 1.3's key share through the heap tag
  // (tls/crypto_offload.h) — one key made and one secret computed per side.
  const uint64_t sides = (p.server ? 1u : 0u) + (p.client ? 1u : 0u);
  EXPECT_EQ(after.x25519_keygen - before.x25519_keygen, x25519 ? sides : 0u);
  EXPECT_EQ(after.x25519_shared - before.x25519_shared, x25519 ? sides : 0u);
  EXPECT_EQ(after.x25519_routed - before.x25519_routed, x25519 && tls13 ? sides : 0u);
  EXPECT_EQ(after.ecdh - before.ecdh, x25519 ? 0u : sides);
  EXPECT_EQ(after.x25519_zero_refused, before.x25519_zero_refused);
  EXPECT_EQ(after.aes_gcm_auth_failures, before.aes_gcm_auth_failures);
  EXPECT_EQ(after.errors, before.errors);
}

INSTANTIATE_TEST_SUITE_P(
    Sides, TlsOffloadHandshakeTest,
    ::testing::Values(OffloadCase{true, true, TlsVersion::kTls13, "X25519:P-256"},
                      OffloadCase{true, false, TlsVersion::kTls13, "X25519:P-256"},
                      OffloadCase{false, true, TlsVersion::kTls13, "X25519:P-256"},
                      OffloadCase{false, false, TlsVersion::kTls13, "X25519:P-256"},
                      OffloadCase{true, true, TlsVersion::kTls13, "P-256:X25519"},
                      OffloadCase{true, false, TlsVersion::kTls13, "P-256"},
                      OffloadCase{false, true, TlsVersion::kTls13, "P-256"},
                      OffloadCase{true, true, TlsVersion::kTls12, "X25519:P-256"},
                      OffloadCase{true, true, TlsVersion::kTls12, "P-256"},
                      OffloadCase{false, true, TlsVersion::kTls12, "P-256"}),
    [](const ::testing::TestParamInfo<OffloadCase>& info) {
      const OffloadCase& c = info.param;
      std::string name = std::string(c.server ? "ServerOn" : "ServerOff") +
                         (c.client ? "ClientOn" : "ClientOff") +
                         (c.max == TlsVersion::kTls13 ? "Tls13" : "Tls12") +
                         (std::string(c.groups).rfind("X25519", 0) == 0 ? "X25519" : "P256");
      return name;
    });

}  // namespace
}  // namespace ringmail::tls
