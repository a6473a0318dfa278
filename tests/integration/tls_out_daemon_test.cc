// ringmaild with TLS outside the inbound ESMTP listener (issue #8): outbound STARTTLS to a
// downstream sink (clients/starttls_sink.py, Python's ssl module, so the other end is not
// our own engine) under each policy, with the delivery log's TLS fields; and HTTPS
// injection on the HTTP listener with curl --cacert, and its certificate reload.
// Certificates come from a throwaway CA made per test (tests/tls/test_pki_util); host names
// resolve through a dnsmasq child.
// Everything listens on 127.0.0.1; every wait is bounded.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"
#include "tests/integration/relay_util.h"
#include "tests/tls/test_pki_util.h"

namespace ringmail::integration {
namespace {

constexpr Millis kTlsOutDeliveryTimeout(20'000);
constexpr char kTlsOutToken[] = "tls-out-token";

// clients/starttls_sink.py as a child: its port, and its "MSG ..." lines.
class PySink {
 public:
  absl::Status Start(const std::vector<std::string>& args, const std::string& stderr_path) {
    std::string python = FindProgram({"python3"});
    if (python.empty()) return absl::FailedPreconditionError("python3 missing");
    std::vector<std::string> argv = {python, ClientScriptPath("starttls_sink.py")};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess::Options o;
    o.stderr_path = stderr_path;
    auto p = Subprocess::Start(argv, o);
    if (!p.ok()) return p.status();
    process_ = std::move(*p);
    std::optional<std::string> line = process_.ReadStdoutLine(Millis(10'000));
    uint32_t port = 0;
    if (!line || !absl::StartsWith(*line, "port ") ||
        !absl::SimpleAtoi(line->substr(5), &port)) {
      return absl::InternalError(absl::StrCat("sink did not start: ", line.value_or("")));
    }
    port_ = static_cast<uint16_t>(port);
    return absl::OkStatus();
  }
  // The next "MSG ..." line within `timeout`.
  std::optional<std::string> NextMessage(Millis timeout) {
    return process_.ReadStdoutLine(timeout);
  }
  uint16_t port() const { return port_; }

 private:
  Subprocess process_;
  uint16_t port_ = 0;
};

class TlsOutDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pki = tls_test::TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<tls_test::TestPki>(*std::move(pki));
    auto cert = pki_->IssueServer("mx", {"mx.good.test"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    cert_ = *cert;
  }

  void TearDown() override {
    if (!daemon_.running()) return;
    absl::StatusOr<int> status = daemon_.Stop(Millis(15'000));
    EXPECT_TRUE(status.ok() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << daemon_.StderrText();
  }

  // dnsmasq on a free UDP port answering mx.good.test and mx.bad.test with 127.0.0.1.
  void StartDns() {
    const std::string dnsmasq = FindProgram({"/usr/sbin/dnsmasq", "dnsmasq"});
    if (dnsmasq.empty()) GTEST_SKIP() << "dnsmasq not installed";
    dns_port_ = PickFreeUdpPort();
    ASSERT_NE(dns_port_, 0);
    auto dns = StartTestDns(
        dnsmasq, dns_port_,
        {"--address=/mx.good.test/127.0.0.1", "--address=/mx.bad.test/127.0.0.1"},
        dir_.Sub("dnsmasq.stderr"));
    ASSERT_TRUE(dns.ok()) << dns.status();
    dns_ = std::move(*dns);
  }

  // Starts ringmaild with `extra` at the top level and waits for its ready lines.
  void StartDaemon(const std::string& extra, const std::string& http = "") {
    ASSERT_TRUE(std::filesystem::exists(RingmaildPath())) << RingmaildPath() << " not built";
    std::string text = absl::StrCat(
        "spool_dir = \"", dir_.Sub("spool"), "\"\nlog_dir = \"", dir_.Sub("log"), "\"\n",
        "hostname = \"mx.test\"\nspool_segment_size = 1MB\nretry_interval = 10m\n",
        dns_port_ != 0 ? absl::StrCat("resolvers = ( \"127.0.0.1:", dns_port_, "\" )\n"
                                      "dns_timeout = 1s\n")
                       : "",
        extra,
        "\nESMTP_Listener {\n  relay_hosts = ( \"127.0.0.0/8\" )\n"
        "  Listen \"127.0.0.1:0\" { }\n}\n",
        http);
    absl::Status started = daemon_.StartWithText(text, Millis(15'000));
    ASSERT_TRUE(started.ok()) << started;
  }

  // An HTTPS HTTP_Listener scope with the test certificate, and `extra` keys.
  std::string HttpsListener(const std::string& extra = "") const {
    return absl::StrCat("HTTP_Listener {\n  auth_token = \"", kTlsOutToken, "\"\n",
                        "  tls_certificate = \"", cert_.chain_file, "\"\n  tls_key = \"",
                        cert_.key_file, "\"\n", extra,
                        "  Listen \"127.0.0.1:0\" { tls = \"implicit\" }\n}\n");
  }

  // One message to r@<domain> over plain SMTP to the daemon.
  void Send(const std::string& domain) {
    SmtpClient c;
    ASSERT_TRUE(c.Connect(daemon_.port()).ok());
    EXPECT_EQ(c.ReadReply().code, 220);
    EXPECT_EQ(c.Command("EHLO client.test").code, 250);
    EXPECT_EQ(c.Command("MAIL FROM:<s@origin.test>").code, 250);
    EXPECT_EQ(c.Command(absl::StrCat("RCPT TO:<r@", domain, ">")).code, 250);
    EXPECT_EQ(c.Command("DATA").code, 354);
    EXPECT_EQ(c.Command("Subject: tls out\r\n\r\nhello over TLS\r\n.").code, 250);
    c.Command("QUIT");
  }

  // Polls the delivery log until a line with `event` for `domain` appears; returns it.
  std::string AwaitLogLine(const std::string& event, const std::string& domain) {
    std::string found;
    PollUntil(kTlsOutDeliveryTimeout, [&] {
      std::string log = ReadFile(dir_.Sub("log") + "/delivery.log").value_or("");
      for (size_t at = 0; at < log.size();) {
        size_t end = log.find('\n', at);
        if (end == std::string::npos) break;
        std::string line = log.substr(at, end - at);
        at = end + 1;
        if (absl::StrContains(line, absl::StrCat("\"event\":\"", event, "\"")) &&
            absl::StrContains(line, absl::StrCat("\"domain\":\"", domain, "\""))) {
          found = line;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  std::string Routes(const std::string& domain, const std::string& host, uint16_t port,
                     const std::string& policy) {
    return absl::StrCat("Domain \"", domain, "\" { routes = \"", host, ":", port,
                        "\" tls = \"", policy, "\" }\n");
  }

  ScratchDir dir_;
  std::unique_ptr<tls_test::TestPki> pki_;
  tls_test::TestCertificate cert_;
  Subprocess dns_;
  uint16_t dns_port_ = 0;
  RunningDaemon daemon_{dir_.path()};
};

TEST_F(TlsOutDaemonTest, VerifyDeliversToTheRightNameAndDefersTheWrongOne) {
  ASSERT_NO_FATAL_FAILURE(StartDns());
  PySink sink;
  ASSERT_TRUE(sink.Start({"--cert", cert_.chain_file, "--key", cert_.key_file},
                         dir_.Sub("sink.stderr")).ok());
  ASSERT_NO_FATAL_FAILURE(StartDaemon(absl::StrCat(
      "tls_ca_file = \"", pki_->ca_file(), "\"\n",
      Routes("good.test", "mx.good.test", sink.port(), "verify"),
      Routes("bad.test", "mx.bad.test", sink.port(), "verify"))));
  ASSERT_NO_FATAL_FAILURE(Send("good.test"));
  std::optional<std::string> msg = sink.NextMessage(kTlsOutDeliveryTimeout);
  ASSERT_TRUE(msg.has_value()) << daemon_.StderrText();
  EXPECT_TRUE(absl::StrContains(*msg, "tls=1")) << *msg;
  EXPECT_TRUE(absl::StrContains(*msg, "rcpt=r@good.test")) << *msg;
  std::string delivered = AwaitLogLine("delivered", "good.test");
  EXPECT_TRUE(absl::StrContains(delivered, "\"tls_version\":\"TLS1.")) << delivered;
  EXPECT_TRUE(absl::StrContains(delivered, "\"tls_cipher\":\"")) << delivered;
  EXPECT_TRUE(absl::StrContains(delivered, "\"tls_verify\":\"ok\"")) << delivered;

  ASSERT_NO_FATAL_FAILURE(Send("bad.test"));
  std::string deferred = AwaitLogLine("deferred", "bad.test");
  ASSERT_FALSE(deferred.empty()) << ReadFile(dir_.Sub("log") + "/delivery.log").value_or("");
  EXPECT_TRUE(absl::StrContains(deferred, "certificate verification failed")) << deferred;
  EXPECT_FALSE(sink.NextMessage(Millis(300)).has_value()) << "delivered despite the name";
}

TEST_F(TlsOutDaemonTest, ReloadReadsNewTrustAnchors) {
  PySink sink;
  ASSERT_TRUE(sink.Start({"--cert", cert_.chain_file, "--key", cert_.key_file},
                         dir_.Sub("sink.stderr")).ok());
  const std::string routes = Routes("ver.test", "[127.0.0.1]", sink.port(), "verify");
  ASSERT_NO_FATAL_FAILURE(StartDaemon(routes));  // no tls_ca_file: the test CA is unknown
  ASSERT_NO_FATAL_FAILURE(Send("ver.test"));
  std::string deferred = AwaitLogLine("deferred", "ver.test");
  EXPECT_TRUE(absl::StrContains(deferred, "certificate verification failed")) << deferred;
  // The same file plus the CA, then SIGHUP: the engines get the new context.
  std::string conf = ReadFile(daemon_.config_path()).value_or("");
  ASSERT_TRUE(WriteFile(daemon_.config_path(),
                        absl::StrCat("tls_ca_file = \"", pki_->ca_file(), "\"\n", conf))
                  .ok());
  daemon_.Signal(SIGHUP);
  ASSERT_TRUE(PollUntil(Millis(10'000), [&] {
    return absl::StrContains(daemon_.StderrText(), "config reload:");
  })) << daemon_.StderrText();
  ASSERT_NO_FATAL_FAILURE(Send("ver.test"));  // a new message: not waiting for a retry
  std::optional<std::string> msg = sink.NextMessage(kTlsOutDeliveryTimeout);
  ASSERT_TRUE(msg.has_value()) << ReadFile(dir_.Sub("log") + "/delivery.log").value_or("");
  EXPECT_TRUE(absl::StrContains(*msg, "tls=1")) << *msg;
  std::string delivered = AwaitLogLine("delivered", "ver.test");
  EXPECT_TRUE(absl::StrContains(delivered, "\"tls_verify\":\"ok\"")) << delivered;
}

TEST_F(TlsOutDaemonTest, RequiredDefersWhenTheSinkOffersNoStartTls) {
  PySink sink;
  ASSERT_TRUE(sink.Start({"--no-starttls"}, dir_.Sub("sink.stderr")).ok());
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon(Routes("req.test", "[127.0.0.1]", sink.port(), "required")));
  ASSERT_NO_FATAL_FAILURE(Send("req.test"));
  std::string deferred = AwaitLogLine("deferred", "req.test");
  EXPECT_TRUE(absl::StrContains(deferred, "STARTTLS required but not offered")) << deferred;
  EXPECT_FALSE(sink.NextMessage(Millis(300)).has_value());
}

TEST_F(TlsOutDaemonTest, OpportunisticFallsBackToPlaintextAndSaysSo) {
  PySink sink;
  ASSERT_TRUE(sink.Start({"--cert", cert_.chain_file, "--key", cert_.key_file, "--break-tls"},
                         dir_.Sub("sink.stderr")).ok());
  // No Domain tls: the global default, opportunistic.
  ASSERT_NO_FATAL_FAILURE(StartDaemon(absl::StrCat(
      "Domain \"opp.test\" { routes = \"[127.0.0.1]:", sink.port(), "\" }\n")));
  ASSERT_NO_FATAL_FAILURE(Send("opp.test"));
  std::optional<std::string> msg = sink.NextMessage(kTlsOutDeliveryTimeout);
  ASSERT_TRUE(msg.has_value());
  EXPECT_TRUE(absl::StrContains(*msg, "tls=0")) << *msg;
  std::string delivered = AwaitLogLine("delivered", "opp.test");
  EXPECT_TRUE(absl::StrContains(delivered, "\"tls_note\":\"STARTTLS handshake failed"))
      << delivered;
  EXPECT_FALSE(absl::StrContains(delivered, "tls_version")) << delivered;
}

TEST_F(TlsOutDaemonTest, OpportunisticUsesTlsWithAnUnknownCaAndRecordsIt) {
  PySink sink;
  ASSERT_TRUE(sink.Start({"--cert", cert_.chain_file, "--key", cert_.key_file},
                         dir_.Sub("sink.stderr")).ok());
  ASSERT_NO_FATAL_FAILURE(StartDaemon(absl::StrCat(
      "Domain \"opp.test\" { routes = \"[127.0.0.1]:", sink.port(), "\" }\n")));
  ASSERT_NO_FATAL_FAILURE(Send("opp.test"));
  std::optional<std::string> msg = sink.NextMessage(kTlsOutDeliveryTimeout);
  ASSERT_TRUE(msg.has_value());
  EXPECT_TRUE(absl::StrContains(*msg, "tls=1")) << *msg;
  std::string delivered = AwaitLogLine("delivered", "opp.test");
  EXPECT_TRUE(absl::StrContains(delivered, "\"tls_verify\":\"failed: ")) << delivered;
}

TEST_F(TlsOutDaemonTest, HttpsInjectionWithCurl) {
  const std::string curl = FindProgram({"curl"});
  if (curl.empty()) GTEST_SKIP() << "curl missing";
  ASSERT_NO_FATAL_FAILURE(StartDaemon("", HttpsListener()));
  ASSERT_TRUE(WriteFile(dir_.Sub("body.json"),
                        R"({"envelope_sender":"s@x.test","recipients":[{"email":"a@local.test"}],)"
                        R"("content":{"from":"s@x.test","subject":"hi","text_body":"t"}})")
                  .ok());
  std::string url = absl::StrCat("https://mx.good.test:", daemon_.http_port(), "/api/inject/v1");
  std::string resolve = absl::StrCat("mx.good.test:", daemon_.http_port(), ":127.0.0.1");
  std::vector<std::string> base = {curl, "-sS", "--max-time", "15", "--resolve", resolve,
                                   "-H", absl::StrCat("Authorization: Bearer ", kTlsOutToken)};
  // Verified against the test CA, twice over one keep-alive connection (curl --next).
  auto inject = [&] {
    return std::vector<std::string>{"--cacert", pki_->ca_file(), "-H",
                                    "Content-Type: application/json", "--data-binary",
                                    "@" + dir_.Sub("body.json"), "-w",
                                    "\n%{http_code} %{num_connects}\n", url};
  };
  std::vector<std::string> ok = base;
  for (std::string& a : inject()) ok.push_back(a);
  ok.push_back("--next");
  ok.insert(ok.end(), base.begin() + 1, base.end());
  for (std::string& a : inject()) ok.push_back(a);
  RunResult r = RunProgram(ok, Millis(30'000));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "\"id\"")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\n200 1\n")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\n200 0\n")) << "second request reused: " << r.out;
  // Without the CA curl refuses the certificate; plain HTTP on the TLS port gets nothing.
  std::vector<std::string> untrusted = base;
  untrusted.push_back(absl::StrCat("https://mx.good.test:", daemon_.http_port(), "/metrics"));
  EXPECT_NE(RunProgram(untrusted, Millis(30'000)).exit_code, 0);
  std::vector<std::string> plain = base;
  plain.push_back(absl::StrCat("http://127.0.0.1:", daemon_.http_port(), "/metrics"));
  RunResult p = RunProgram(plain, Millis(30'000));
  EXPECT_NE(p.exit_code, 0) << p.out;
}

// HTTPS: the handshake has tls_handshake_timeout from accept, as SMTPS and STARTTLS do. A
// client trickling a ClientHello a byte every 300 ms against a 1 s idle timeout is closed at
// the 2 s handshake timeout; before, each byte renewed the idle timer and the connection was
// held for as long as the bytes came (the audit held one for 8.5 hours with the defaults).
TEST_F(TlsOutDaemonTest, HttpsHandshakeTrickledAByteAtATimeIsClosedAtTheHandshakeTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(
      "tls_handshake_timeout = 2s\n",
      HttpsListener("  idle_timeout = 1s\n  request_timeout = 30s\n")));
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.http_port()).ok());
  // A record header announcing a 512-byte ClientHello, then its first bytes.
  const std::string hello =
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + std::string(64, 'r');
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (size_t i = 0; i < 40 && !closed; ++i) {  // plays a slow client: at most 12 s
    closed = !c.Send(hello.substr(i, 1)).ok() || c.WaitForClose(Millis(300));
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed) << "still open after 40 bytes in 12 s";
  EXPECT_LT(waited, Millis(6'000));
}

// After the handshake, ciphertext that never decrypts to a request starts the request's
// clock as plaintext does: a record header trickled a byte every 300 ms (idle timeout 1 s)
// is cut at request_timeout (2 s), not kept while the bytes come, as each byte renewed the
// idle timer before.
TEST_F(TlsOutDaemonTest, HttpsRecordTrickledAfterTheHandshakeIsCutAtTheRequestTimeout) {
  const std::string python = FindProgram({"python3"});
  if (python.empty()) GTEST_SKIP() << "python3 not installed";
  ASSERT_NO_FATAL_FAILURE(
      StartDaemon("", HttpsListener("  idle_timeout = 1s\n  request_timeout = 2s\n")));
  RunResult r = RunProgram({python, ClientScriptPath("tls_trickle_record.py"), "127.0.0.1",
                            std::to_string(daemon_.http_port()), pki_->ca_file(),
                            "mx.good.test", "0.3", "40"},
                           Millis(60'000));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(absl::StartsWith(r.out, "CLOSED ")) << r.out;
  double seconds = 0;
  ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(r.out.substr(7)), &seconds)) << r.out;
  EXPECT_LT(seconds, 6.0) << r.out;
}

// A reload re-reads the HTTP listener's certificate files: handshakes after it get the new
// certificate (curl checks the name), and the reload with a broken key changes nothing.
TEST_F(TlsOutDaemonTest, HttpsCertificateReloadServesTheNewCertificate) {
  const std::string curl = FindProgram({"curl"});
  if (curl.empty()) GTEST_SKIP() << "curl missing";
  auto other = pki_->IssueServer("other", {"mx.other.test"});
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string chain = dir_.Sub("https.crt");
  const std::string key = dir_.Sub("https.key");
  auto install = [&](const tls_test::TestCertificate& c) {
    const auto overwrite = std::filesystem::copy_options::overwrite_existing;
    std::filesystem::copy_file(c.chain_file, chain, overwrite);
    std::filesystem::copy_file(c.key_file, key, overwrite);
  };
  install(cert_);
  ASSERT_NO_FATAL_FAILURE(StartDaemon(
      "", absl::StrCat("HTTP_Listener {\n  auth_token = \"", kTlsOutToken, "\"\n",
                       "  tls_certificate = \"", chain, "\"\n  tls_key = \"", key, "\"\n",
                       "  Listen \"127.0.0.1:0\" { tls = \"implicit\" }\n}\n")));
  // GET /healthz as `name`, verified against the test CA: curl's exit code.
  auto healthz_as = [&](const std::string& name) {
    const std::string port = absl::StrCat(daemon_.http_port());
    return RunProgram({curl, "-sS", "--max-time", "15", "--cacert", pki_->ca_file(),
                       "--resolve", absl::StrCat(name, ":", port, ":127.0.0.1"),
                       absl::StrCat("https://", name, ":", port, "/healthz")},
                      Millis(30'000))
        .exit_code;
  };
  // SIGHUP, then wait for the daemon's log to say `outcome`.
  auto reload = [&](const std::string& outcome) {
    daemon_.Signal(SIGHUP);
    return PollUntil(Millis(10'000), [&] {
      return absl::StrContains(daemon_.StderrText(), outcome);
    });
  };
  EXPECT_EQ(healthz_as("mx.good.test"), 0);
  EXPECT_NE(healthz_as("mx.other.test"), 0);  // the name is not in the first certificate

  install(*other);
  ASSERT_TRUE(reload("config reload:")) << daemon_.StderrText();
  EXPECT_EQ(healthz_as("mx.other.test"), 0) << daemon_.StderrText();
  EXPECT_NE(healthz_as("mx.good.test"), 0);

  // A key file that is not a key: the reload is refused and the listener keeps serving.
  ASSERT_TRUE(WriteFile(key, "not a key\n").ok());
  ASSERT_TRUE(reload("reload refused")) << daemon_.StderrText();
  EXPECT_EQ(healthz_as("mx.other.test"), 0) << daemon_.StderrText();
}

}  // namespace
}  // namespace ringmail::integration
