// End-to-end TLS tests of ringmaild's ESMTP listener: STARTTLS (RFC 3207) and implicit TLS
// driven by `openssl s_client`, Python's smtplib and the project's own TlsSession client
// (tls_client_util); the CVE-2011-0411 injection case; require_tls; a stalled handshake cut
// by its deadline while other sessions go on; certificate reload.
//
// Certificates: a throwaway CA and server certificates made by tests/tls/test_pki_util for
// this run. Every wait is bounded; each test starts its own daemon (daemon_util's RAII).
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"
#include "tests/integration/relay_util.h"
#include "tests/integration/tls_client_util.h"
#include "tests/tls/test_pki_util.h"

namespace ringmail::integration {
namespace {

using ::testing::HasSubstr;
using tls_test::TestCertificate;
using tls_test::TestPki;

constexpr Millis kTlsToolTimeout(20'000);
constexpr char kBody[] = "Subject: tls test\r\n\r\nHello over TLS.\r\n";

class TlsDaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new TestPki(std::move(*pki));
    auto first = pki_->IssueServer("mx", {"mx.test"});
    ASSERT_TRUE(first.ok()) << first.status();
    first_ = new TestCertificate(*first);
    auto second = pki_->IssueServer("mx2", {"mx2.test", "mx.test"});
    ASSERT_TRUE(second.ok()) << second.status();
    second_ = new TestCertificate(*second);
  }
  static void TearDownTestSuite() {
    delete second_;
    delete first_;
    delete pki_;
  }

  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(RingmaildPath())) << RingmaildPath() << " not built";
    UseCertificate(*first_);
  }

  void TearDown() override {
    if (!daemon_.running()) return;
    absl::StatusOr<int> status = daemon_.Stop();
    ASSERT_TRUE(status.ok()) << status.status() << "\n" << daemon_.StderrText();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeWaitStatus(*status) << "\n" << daemon_.StderrText();
  }

  // The daemon reads its certificate from these paths; a reload test overwrites them.
  std::string CertPath() const { return dir_.Sub("server-chain.pem"); }
  std::string KeyPath() const { return dir_.Sub("server.key"); }
  void UseCertificate(const TestCertificate& c) {
    namespace fs = std::filesystem;
    fs::copy_file(c.chain_file, CertPath(), fs::copy_options::overwrite_existing);
    fs::copy_file(c.key_file, KeyPath(), fs::copy_options::overwrite_existing);
  }

  void StartDaemon(const std::string& esmtp_extra = "", bool implicit = false,
                   const std::string& global_extra = "") {
    DaemonConfig c;
    c.global_extra = global_extra;
    c.esmtp_extra = absl::StrCat("  tls_certificate = \"", CertPath(), "\"\n",
                                 "  tls_key = \"", KeyPath(), "\"\n", esmtp_extra);
    std::string text = daemon_.ConfigText(c);
    if (implicit) {
      text = absl::StrReplaceAll(text, {{"Listen \"127.0.0.1:0\" { }",
                                         "Listen \"127.0.0.1:0\" { tls = \"implicit\" }"}});
    }
    absl::Status s = daemon_.StartWithText(text);
    ASSERT_TRUE(s.ok()) << s << "\n" << daemon_.StderrText();
  }

  // Connects, EHLO, STARTTLS, then half a TLS record header and silence: a handshake that
  // stalls. Returns when the stall began.
  std::chrono::steady_clock::time_point StallHandshake(SmtpClient& c) {
    EXPECT_TRUE(c.Connect(daemon_.port()).ok());
    EXPECT_TRUE(c.Hello());
    EXPECT_TRUE(c.Send("STARTTLS\r\n").ok());
    EXPECT_EQ(c.ReadReply().code, 220);
    EXPECT_TRUE(c.Send(std::string("\x16\x03\x01", 3)).ok());
    return std::chrono::steady_clock::now();
  }

  // Connects, EHLO, STARTTLS, handshake (verifying the certificate for mx.test), EHLO.
  std::unique_ptr<TlsTestClient> StartTls(SmtpClient& c) {
    if (!c.Connect(daemon_.port()).ok() || !c.Hello()) {
      ADD_FAILURE() << "no greeting/EHLO";
      return nullptr;
    }
    SmtpClient::Reply r = c.Command("STARTTLS");
    EXPECT_EQ(r.code, 220) << r.text();
    if (r.code != 220) return nullptr;
    auto tls = TlsTestClient::Create(c.fd(), pki_->ca_file(), "mx.test");
    EXPECT_TRUE(tls.ok()) << tls.status();
    if (!tls.ok()) return nullptr;
    absl::Status hs = (*tls)->Handshake();
    EXPECT_TRUE(hs.ok()) << hs;
    if (!hs.ok()) return nullptr;
    SmtpClient::Reply ehlo = (*tls)->Command("EHLO client.test");
    EXPECT_EQ(ehlo.code, 250) << ehlo.text();
    EXPECT_THAT(ehlo.text(), ::testing::Not(HasSubstr("STARTTLS")));
    return *std::move(tls);
  }

  RunResult SpoolTool(std::vector<std::string> args) {
    args.insert(args.begin(), SpoolToolPath());
    return RunProgram(args, kTlsToolTimeout);
  }
  std::string SpooledContent(const std::string& id) {
    RunResult r = SpoolTool({"show", "--body", daemon_.spool_dir(), id});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }
  std::string PythonOrSkip() { return FindProgram({"python3"}); }
  static std::string Openssl() { return FindProgram({"openssl"}); }
  RunResult Ringctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {ToolPath("ringctl", "ringctl"), "--socket",
                                     daemon_.root() + "/control.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, kTlsToolTimeout);
  }
  // The subject CN of the certificate the daemon serves to a new STARTTLS client.
  std::string ServedSubject() {
    RunResult r = RunProgram({Openssl(), "s_client", "-starttls", "smtp", "-connect",
                              absl::StrCat("127.0.0.1:", daemon_.port()), "-brief"},
                             kTlsToolTimeout, "QUIT\r\n");
    const std::string all = r.out + r.err;
    const size_t at = all.find("Peer certificate: ");
    if (at == std::string::npos) return "none in: " + all;
    return all.substr(at + 18, all.find('\n', at) - at - 18);
  }

  static TestPki* pki_;
  static TestCertificate* first_;
  static TestCertificate* second_;
  ScratchDir dir_;
  RunningDaemon daemon_{dir_.path()};
};

TestPki* TlsDaemonTest::pki_ = nullptr;
TestCertificate* TlsDaemonTest::first_ = nullptr;
TestCertificate* TlsDaemonTest::second_ = nullptr;

// MAIL, RCPT, DATA, body over TLS; returns the reply to the end of data.
SmtpClient::Reply TlsTransaction(TlsTestClient& t, const std::string& rcpt) {
  SmtpClient::Reply r = t.Command("MAIL FROM:<sender@client.test>");
  if (r.code != 250) return r;
  r = t.Command(absl::StrCat("RCPT TO:<", rcpt, ">"));
  if (r.code != 250) return r;
  r = t.Command("DATA");
  if (r.code != 354) return r;
  if (!t.Send(absl::StrCat(kBody, ".\r\n")).ok()) return {};
  return t.ReadReply();
}

TEST_F(TlsDaemonTest, OpensslStartTlsHandshakesAndSendsAMessage) {
  StartDaemon();
  // s_client does not repeat EHLO after the handshake; RFC 3207 §4.2 wants it.
  const std::string script =
      "EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\nRCPT TO:<user@local.test>\r\nDATA\r\n"
      "Subject: s_client\r\n\r\nvia openssl\r\n.\r\nQUIT\r\n";
  RunResult r = RunProgram({Openssl(), "s_client", "-starttls", "smtp", "-connect",
                            absl::StrCat("127.0.0.1:", daemon_.port()), "-CAfile",
                            pki_->ca_file(), "-verify_hostname", "mx.test",
                            "-verify_return_error", "-brief", "-ign_eof"},
                           kTlsToolTimeout, script);
  ASSERT_FALSE(r.timed_out);
  EXPECT_THAT(r.err, HasSubstr("Verification: OK")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Protocol version: TLSv1.3")) << r.err;
  const size_t at = r.out.find("250 2.0.0 Ok: queued as ");
  ASSERT_NE(at, std::string::npos) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("221 2.0.0"));
  const std::string id = QueuedId(r.out.substr(at, r.out.find('\n', at) - at));
  ASSERT_EQ(id.size(), 32u);
  const std::string content = SpooledContent(id);
  // tls_crypto_offload is on by default: AES-GCM first.
  EXPECT_THAT(content, HasSubstr("with ESMTPS (TLS1.3 TLS_AES_128_GCM_SHA256) id " + id));
  EXPECT_THAT(content, HasSubstr("via openssl"));
}

// tls_crypto_offload = false: wolfSSL's own crypto, ChaCha20-Poly1305 first; s_client still
// verifies the chain and sends a message, over TLS 1.3 and 1.2, and with s_client offering
// P-256 only (ringmaild's ECDH then runs in wolfSSL's software too).
TEST_F(TlsDaemonTest, OpensslHandshakesWithTheCryptoOffloadOff) {
  StartDaemon("", false, "tls_crypto_offload = false\n");
  const std::string script =
      "EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\nRCPT TO:<user@local.test>\r\nDATA\r\n"
      "Subject: s_client\r\n\r\nno offload\r\n.\r\nQUIT\r\n";
  struct Case {
    std::vector<std::string> flags;
    std::string suite;
  };
  const Case cases[] = {{{}, "Ciphersuite: TLS_CHACHA20_POLY1305_SHA256"},
                        {{"-groups", "P-256"}, "Ciphersuite: TLS_CHACHA20_POLY1305_SHA256"},
                        {{"-tls1_2"}, "Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305"}};
  for (const Case& c : cases) {
    std::vector<std::string> argv = {Openssl(), "s_client", "-starttls", "smtp", "-connect",
                                     absl::StrCat("127.0.0.1:", daemon_.port()), "-CAfile",
                                     pki_->ca_file(), "-verify_hostname", "mx.test",
                                     "-verify_return_error", "-brief", "-ign_eof"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    RunResult r = RunProgram(argv, kTlsToolTimeout, script);
    ASSERT_FALSE(r.timed_out);
    EXPECT_THAT(r.err, HasSubstr("Verification: OK")) << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.suite)) << r.err;
    EXPECT_THAT(r.out, HasSubstr("250 2.0.0 Ok: queued as ")) << r.out << r.err;
  }
}

// The same with the default (offload on) and s_client offering P-256 only: the server's
// ECDH and ECDSA both run on the device.
TEST_F(TlsDaemonTest, OpensslP256KeyShareWithTheCryptoOffloadOn) {
  StartDaemon();
  RunResult r = RunProgram({Openssl(), "s_client", "-starttls", "smtp", "-connect",
                            absl::StrCat("127.0.0.1:", daemon_.port()), "-CAfile",
                            pki_->ca_file(), "-verify_hostname", "mx.test",
                            "-verify_return_error", "-brief", "-groups", "P-256", "-ign_eof"},
                           kTlsToolTimeout,
                           "EHLO c.test\r\nMAIL FROM:<s@c.test>\r\nRCPT TO:<u@local.test>\r\n"
                           "DATA\r\nSubject: p256\r\n\r\nx\r\n.\r\nQUIT\r\n");
  ASSERT_FALSE(r.timed_out);
  EXPECT_THAT(r.err, HasSubstr("Verification: OK")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Ciphersuite: TLS_AES_128_GCM_SHA256")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Server Temp Key: ECDH, prime256v1")) << r.err;
  EXPECT_THAT(r.out, HasSubstr("250 2.0.0 Ok: queued as ")) << r.out << r.err;
}

TEST_F(TlsDaemonTest, OpensslTls12IsAcceptedToo) {
  StartDaemon();
  RunResult r = RunProgram({Openssl(), "s_client", "-starttls", "smtp", "-connect",
                            absl::StrCat("127.0.0.1:", daemon_.port()), "-tls1_2", "-brief"},
                           kTlsToolTimeout, "QUIT\r\n");
  EXPECT_THAT(r.err, HasSubstr("Protocol version: TLSv1.2")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256")) << r.err;
  // TLS 1.1 and older are refused.
  RunResult old = RunProgram({Openssl(), "s_client", "-starttls", "smtp", "-connect",
                              absl::StrCat("127.0.0.1:", daemon_.port()), "-tls1_1",
                              "-brief"},
                             kTlsToolTimeout, "QUIT\r\n");
  EXPECT_THAT(old.err + old.out, ::testing::Not(HasSubstr("Protocol version: TLSv1.1")));
}

TEST_F(TlsDaemonTest, SmtplibStartTlsSendsMail) {
  const std::string python = PythonOrSkip();
  if (python.empty()) GTEST_SKIP() << "python3 not installed";
  StartDaemon();
  const std::string path = dir_.Sub("m.eml");
  ASSERT_TRUE(WriteFile(path, "Subject: smtplib starttls\r\n\r\nbody\r\n").ok());
  RunResult r = RunProgram({python, ClientScriptPath("smtplib_tls_send.py"), "starttls",
                            "127.0.0.1", std::to_string(daemon_.port()), pki_->ca_file(),
                            "sender@client.test", "user@local.test", path},
                           kTlsToolTimeout);
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("TLS TLSv1.3 "));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("starttls")));  // not offered twice
  const size_t at = r.out.find("DATA-REPLY 250 ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string id = QueuedId(r.out.substr(at, r.out.find('\n', at) - at));
  EXPECT_THAT(SpooledContent(id), HasSubstr("from smtplib.test ([127.0.0.1])"));
  EXPECT_THAT(SpooledContent(id), HasSubstr("with ESMTPS (TLS1.3 "));
  // The reception log records the TLS parameters too.
  auto log = ReadFile(daemon_.log_dir() + "/reception.log");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_THAT(*log, HasSubstr("\"tls\":\"TLS1.3 TLS_"));
}

// EHLO pipelined over TLS and never read: the replies (plaintext waiting for encryption,
// and ciphertext) are bounded like those of a plaintext session, and the client is held
// back by TCP instead of the daemon's memory growing.
TEST_F(TlsDaemonTest, PipelinedCommandsNeverReadOverTlsLeaveMemoryFlat) {
  const std::string python = PythonOrSkip();
  if (python.empty()) GTEST_SKIP() << "python3 not installed";
  StartDaemon();
  const int64_t peak_before = daemon_.PeakRssKib();
  ASSERT_GT(peak_before, 0);
  constexpr int64_t kLimit = 64 << 20;
  RunResult r = RunProgram({python, ClientScriptPath("tls_unread_flood.py"), "127.0.0.1",
                            std::to_string(daemon_.port()), pki_->ca_file(), "mx.test",
                            std::to_string(kLimit)},
                           kTlsToolTimeout);
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  int64_t sent = -1;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(r.out.substr(r.out.find(' ') + 1)),
                               &sent))
      << r.out;
  EXPECT_LT(sent, kLimit) << "64 MB of EHLO over TLS were read with no reply read";
  const int64_t peak_after = daemon_.PeakRssKib();
  EXPECT_LT(peak_after - peak_before, 32 * 1024)
      << "peak RSS grew from " << peak_before << " KiB to " << peak_after << " KiB";
  // Still serving.
  SmtpClient next;
  ASSERT_TRUE(next.Connect(daemon_.port()).ok());
  EXPECT_EQ(next.ReadReply().code, 220);
}

TEST_F(TlsDaemonTest, PlaintextPipelinedBehindStartTlsIsNeverExecuted) {
  StartDaemon();
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_TRUE(c.Hello());
  // CVE-2011-0411: the injected commands ride in the same segment as STARTTLS.
  ASSERT_TRUE(c.Send("STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n"
                     "RCPT TO:<victim@local.test>\r\nDATA\r\n")
                  .ok());
  SmtpClient::Reply ready = c.ReadReply();
  ASSERT_EQ(ready.code, 220) << ready.text();
  auto tls = TlsTestClient::Create(c.fd(), pki_->ca_file(), "mx.test");
  ASSERT_TRUE(tls.ok());
  ASSERT_TRUE((*tls)->Handshake().ok());
  // The first reply after the handshake answers our EHLO: nothing injected got a reply.
  SmtpClient::Reply ehlo = (*tls)->Command("EHLO client.test");
  ASSERT_EQ(ehlo.code, 250) << ehlo.text();
  EXPECT_THAT(ehlo.lines.front(), HasSubstr("mx.test"));
  // The injected MAIL did not run either: a MAIL now is the first of its session.
  SmtpClient::Reply mail = (*tls)->Command("MAIL FROM:<good@client.test>");
  EXPECT_EQ(mail.code, 250) << mail.text();
  EXPECT_EQ((*tls)->Command("RSET").code, 250);
  EXPECT_EQ((*tls)->Command("QUIT").code, 221);
  RunResult list = SpoolTool({"list", daemon_.spool_dir()});
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr("evil")));
}

TEST_F(TlsDaemonTest, InjectionInTheSameSegmentAsTheClientHelloFailsTheHandshake) {
  StartDaemon();
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_TRUE(c.Hello());
  ASSERT_TRUE(c.Send("STARTTLS\r\n").ok());
  ASSERT_EQ(c.ReadReply().code, 220);
  // Plaintext where the ClientHello belongs is garbage to TLS: the connection ends.
  ASSERT_TRUE(c.Send("MAIL FROM:<evil@attacker.test>\r\n").ok());
  EXPECT_TRUE(c.WaitForClose(Millis(5'000)));
  // Others are unaffected.
  SmtpClient ok;
  auto t = StartTls(ok);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(TlsTransaction(*t, "user@local.test").code, 250);
}

TEST_F(TlsDaemonTest, RequireTlsRefusesMailBeforeStartTls) {
  StartDaemon("  require_tls = true\n");
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_TRUE(c.Hello());
  SmtpClient::Reply mail = c.Command("MAIL FROM:<sender@client.test>");
  EXPECT_EQ(mail.code, 530) << mail.text();
  EXPECT_THAT(mail.text(), HasSubstr("5.7.0"));
  EXPECT_EQ(c.Command("RCPT TO:<user@local.test>").code, 530);
  c.Close();
  SmtpClient c2;
  auto t = StartTls(c2);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(TlsTransaction(*t, "user@local.test").code, 250);
}

TEST_F(TlsDaemonTest, ImplicitTlsListener) {
  StartDaemon("", /*implicit=*/true);
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  auto t = TlsTestClient::Create(c.fd(), pki_->ca_file(), "mx.test");
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Handshake().ok());
  SmtpClient::Reply greeting = (*t)->ReadReply();
  EXPECT_EQ(greeting.code, 220) << greeting.text();
  SmtpClient::Reply ehlo = (*t)->Command("EHLO client.test");
  EXPECT_EQ(ehlo.code, 250);
  EXPECT_THAT(ehlo.text(), ::testing::Not(HasSubstr("STARTTLS")));
  EXPECT_EQ((*t)->Command("STARTTLS").code, 503);  // TLS already active
  SmtpClient::Reply done = TlsTransaction(**t, "user@local.test");
  ASSERT_EQ(done.code, 250) << done.text();
  EXPECT_THAT(SpooledContent(QueuedId(done.last())), HasSubstr("with ESMTPS (TLS1.3 "));
  EXPECT_EQ((*t)->Command("QUIT").code, 221);
  // Python's SMTP_SSL too.
  const std::string python = PythonOrSkip();
  if (python.empty()) return;
  const std::string path = dir_.Sub("m.eml");
  ASSERT_TRUE(WriteFile(path, "Subject: smtps\r\n\r\nbody\r\n").ok());
  RunResult r = RunProgram({python, ClientScriptPath("smtplib_tls_send.py"), "implicit",
                            "127.0.0.1", std::to_string(daemon_.port()), pki_->ca_file(),
                            "sender@client.test", "user@local.test", path},
                           kTlsToolTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("DATA-REPLY 250 "));
  // A plaintext client on the implicit port gets no SMTP greeting and is closed.
  SmtpClient plain;
  ASSERT_TRUE(plain.Connect(daemon_.port()).ok());
  ASSERT_TRUE(plain.Send("EHLO plain.test\r\n").ok());
  size_t discarded = 0;
  EXPECT_TRUE(plain.WaitForClose(Millis(5'000), &discarded));
}

TEST_F(TlsDaemonTest, StalledHandshakeIsCutWhileOthersCarryOn) {
  // The handshake has its own deadline (tls_handshake_timeout), whatever command_timeout is.
  StartDaemon("  tls_handshake_timeout = 2s\n");
  SmtpClient stalled;
  const auto began = StallHandshake(stalled);
  ASSERT_FALSE(HasFailure());
  // Meanwhile another client completes a TLS transaction.
  SmtpClient other;
  auto t = StartTls(other);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(TlsTransaction(*t, "user@local.test").code, 250);
  EXPECT_TRUE(stalled.WaitForClose(Millis(10'000)));
  const auto waited = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() -
                                                         began);
  EXPECT_GE(waited.count(), 1500);
  EXPECT_LT(waited.count(), 8000);
  // The stall cost that connection only: the other one still works.
  EXPECT_EQ(t->Command("NOOP").code, 250);
  EXPECT_EQ(t->Command("QUIT").code, 221);
}

// tls_handshake_timeout is live: a reload shortens it for handshakes that start afterwards
// (and the global key is the listener's default).
TEST_F(TlsDaemonTest, HandshakeTimeoutChangesOnReload) {
  DaemonConfig c;
  c.esmtp_extra = absl::StrCat("  tls_certificate = \"", CertPath(), "\"\n", "  tls_key = \"",
                               KeyPath(), "\"\n");
  const std::string text = daemon_.ConfigText(c);
  ASSERT_TRUE(daemon_.StartWithText("tls_handshake_timeout = 5m\n" + text).ok())
      << daemon_.StderrText();
  ASSERT_TRUE(WriteFile(daemon_.config_path(), "tls_handshake_timeout = 2s\n" + text).ok());
  RunResult reload = Ringctl({"config", "reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.out << reload.err;
  SmtpClient stalled;
  const auto began = StallHandshake(stalled);
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(stalled.WaitForClose(Millis(10'000)));  // 5 min before the reload
  const auto waited = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() -
                                                         began);
  EXPECT_GE(waited.count(), 1500);
  EXPECT_LT(waited.count(), 8000);
  RunResult metrics = Ringctl({"metrics"});
  ASSERT_EQ(metrics.exit_code, 0) << metrics.err;
  EXPECT_EQ(MetricSum(metrics.out, "ringmail_esmtp_tls_handshake_timeouts_total"), 1)
      << metrics.out;
  EXPECT_EQ(MetricSum(metrics.out, "ringmail_esmtp_tls_handshakes_total"), 0);
}

// TLS 1.3 resumption: ringmaild issues a ticket after a full handshake; a second connection
// offering it resumes (no certificate sent) and works as any other; the reception log says
// so. After a certificate reload the old ticket is not accepted: a full handshake, verified.
TEST_F(TlsDaemonTest, SecondConnectionResumesWithTheTicket) {
  StartDaemon();
  SmtpClient first;
  auto t1 = StartTls(first);  // EHLO after the handshake also read the ticket
  ASSERT_NE(t1, nullptr);
  EXPECT_FALSE(t1->session().resumed());
  EXPECT_EQ(TlsTransaction(*t1, "user@local.test").code, 250);
  std::shared_ptr<const tls::SavedSession> saved = t1->session().SaveSession();
  ASSERT_NE(saved, nullptr) << "ringmaild issued no session ticket";
  EXPECT_EQ(t1->Command("QUIT").code, 221);

  auto resume = [&](SmtpClient& c) -> std::unique_ptr<TlsTestClient> {
    if (!c.Connect(daemon_.port()).ok() || !c.Hello()) return nullptr;
    if (c.Command("STARTTLS").code != 220) return nullptr;
    auto t = TlsTestClient::Create(c.fd(), pki_->ca_file(), "mx.test", saved);
    if (!t.ok() || !(*t)->Handshake().ok()) return nullptr;
    if ((*t)->Command("EHLO client.test").code != 250) return nullptr;
    return *std::move(t);
  };
  SmtpClient second;
  auto t2 = resume(second);
  ASSERT_NE(t2, nullptr);
  EXPECT_TRUE(t2->session().resumed());
  EXPECT_EQ(t2->session().version(), "TLS1.3");
  SmtpClient::Reply done = TlsTransaction(*t2, "user@local.test");
  ASSERT_EQ(done.code, 250) << done.text();
  EXPECT_THAT(SpooledContent(QueuedId(done.last())), HasSubstr("with ESMTPS (TLS1.3 "));
  EXPECT_EQ(t2->Command("QUIT").code, 221);
  auto log = ReadFile(daemon_.log_dir() + "/reception.log");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_THAT(*log, HasSubstr("\"tls_resumed\":true"));
  RunResult metrics = Ringctl({"metrics"});
  ASSERT_EQ(metrics.exit_code, 0) << metrics.err;
  EXPECT_EQ(MetricSum(metrics.out, "ringmail_esmtp_tls_handshakes_total"), 2) << metrics.out;
  EXPECT_EQ(MetricSum(metrics.out, "ringmail_esmtp_tls_resumed_total"), 1) << metrics.out;
  EXPECT_EQ(MetricSum(metrics.out, "ringmail_esmtp_tls_handshake_errors_total"), 0);

  UseCertificate(*second_);
  RunResult reload = Ringctl({"config", "reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.out << reload.err;
  SmtpClient third;
  auto t3 = resume(third);
  ASSERT_NE(t3, nullptr);
  EXPECT_FALSE(t3->session().resumed());
  EXPECT_EQ(t3->session().verification(), tls::Verification::kOk);
  EXPECT_EQ(TlsTransaction(*t3, "user@local.test").code, 250);
}

TEST_F(TlsDaemonTest, CertificateReloadServesTheNewCertificateToNewHandshakes) {
  StartDaemon();
  EXPECT_EQ(ServedSubject(), "CN = mx.test");
  SmtpClient before;
  auto old_session = StartTls(before);  // established on the old certificate
  ASSERT_NE(old_session, nullptr);

  UseCertificate(*second_);
  RunResult reload = Ringctl({"config", "reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.out << reload.err;
  EXPECT_EQ(ServedSubject(), "CN = mx2.test");
  // The session from before the reload goes on.
  EXPECT_EQ(TlsTransaction(*old_session, "user@local.test").code, 250);

  // A broken pair (key of the other certificate) is refused; the running one stays.
  std::filesystem::copy_file(first_->key_file, KeyPath(),
                             std::filesystem::copy_options::overwrite_existing);
  RunResult bad = Ringctl({"config", "reload"});
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  EXPECT_THAT(bad.out + bad.err, HasSubstr("reload refused"));
  EXPECT_EQ(ServedSubject(), "CN = mx2.test");

  // SIGHUP reloads too (back to the first certificate); a ringctl round trip afterwards
  // orders the check after the reload, since the master loop handles both in turn.
  UseCertificate(*first_);
  daemon_.Signal(SIGHUP);
  for (int i = 0; i < 50 && ServedSubject() != "CN = mx.test"; ++i) {
    (void)Ringctl({"summary"});
  }
  EXPECT_EQ(ServedSubject(), "CN = mx.test");
}

// A certificate path that names a FIFO (or anything but a regular file) is refused at once
// with its reason. It used to block the reload's IO worker in fopen() for good, so that no
// later reload ever ran, and a missing key file was "ok (0)". (Session 12's reload audit,
// F2 and F9.)
TEST_F(TlsDaemonTest, ReloadRefusesAFifoOrMissingTlsFileAtOnceAndReloadsAfterwards) {
  StartDaemon();
  std::filesystem::remove(CertPath());
  ASSERT_EQ(mkfifo(CertPath().c_str(), 0600), 0) << strerror(errno);
  RunResult fifo = Ringctl({"config", "reload"});
  EXPECT_NE(fifo.exit_code, 0) << fifo.out;
  EXPECT_THAT(fifo.out + fifo.err, HasSubstr("'" + CertPath() + "': not a regular file"));
  RunResult check = Ringctl({"config", "check", daemon_.config_path()});
  EXPECT_NE(check.exit_code, 0) << check.out;
  std::filesystem::remove(CertPath());
  UseCertificate(*second_);
  std::filesystem::remove(KeyPath());
  RunResult missing = Ringctl({"config", "reload"});
  EXPECT_NE(missing.exit_code, 0) << missing.out;
  EXPECT_THAT(missing.out + missing.err,
              HasSubstr("TLS key '" + KeyPath() + "': No such file or directory"));
  // A key that does not match its certificate: both checks say what start-up and the
  // reload would (they used to say "configuration OK").
  UseCertificate(*second_);
  std::filesystem::copy_file(first_->key_file, KeyPath(),
                             std::filesystem::copy_options::overwrite_existing);
  RunResult ctl_check = Ringctl({"config", "check", daemon_.config_path()});
  EXPECT_NE(ctl_check.exit_code, 0) << ctl_check.out;
  EXPECT_THAT(ctl_check.err, HasSubstr("ESMTP_Listener: TLS self-test handshake"));
  RunResult start_check = RunProgram(
      {RingmaildPath(), "--check-config", "--config", daemon_.config_path()}, Millis(30'000));
  EXPECT_EQ(start_check.exit_code, 1) << start_check.out;
  EXPECT_THAT(start_check.err, HasSubstr("ESMTP_Listener: TLS self-test handshake"));
  UseCertificate(*second_);
  RunResult good = Ringctl({"config", "reload"});
  ASSERT_EQ(good.exit_code, 0) << good.out << good.err;
  EXPECT_EQ(ServedSubject(), "CN = mx2.test");
}

// `ringload sink --tls CERT KEY`: the downstream the outbound STARTTLS tests deliver to.
TEST_F(TlsDaemonTest, RingloadSinkOffersStartTls) {
  const std::string python = PythonOrSkip();
  if (python.empty()) GTEST_SKIP() << "python3 not installed";
  RelaySink sink;
  absl::Status started = sink.Start(dir_.Sub("dump"), {"--tls", CertPath(), KeyPath()});
  ASSERT_TRUE(started.ok()) << started;
  const std::string path = dir_.Sub("m.eml");
  ASSERT_TRUE(WriteFile(path, "Subject: to the sink\r\n\r\nover TLS\r\n").ok());
  RunResult r = RunProgram({python, ClientScriptPath("smtplib_tls_send.py"), "starttls",
                            "127.0.0.1", std::to_string(sink.port()), pki_->ca_file(),
                            "sender@client.test", "user@remote.test", path},
                           kTlsToolTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("TLS TLSv1.3 "));
  // The sink answers 250 and then writes its dump file off the reply path.
  EXPECT_TRUE(PollUntil(Millis(10'000), [&] { return sink.DumpCount() >= 1; }));
  EXPECT_EQ(sink.DumpCount(), 1u);
  // Plaintext pipelined behind STARTTLS is discarded there too.
  SmtpClient c;
  ASSERT_TRUE(c.Connect(sink.port()).ok());
  ASSERT_TRUE(c.Hello());
  ASSERT_TRUE(c.Send("STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n").ok());
  ASSERT_EQ(c.ReadReply().code, 220);
  auto t = TlsTestClient::Create(c.fd(), pki_->ca_file(), "mx.test");
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Handshake().ok());
  EXPECT_EQ((*t)->Command("EHLO client.test").code, 250);
  EXPECT_EQ((*t)->Command("MAIL FROM:<good@client.test>").code, 250);  // not "nested MAIL"
  EXPECT_EQ((*t)->Command("QUIT").code, 221);
}

}  // namespace
}  // namespace ringmail::integration
