// `ringload send --tls starttls|implicit` (issue #8): against `ringload sink --tls` (N
// messages each way, pipelined, over several connections), against a sink that offers no
// STARTTLS (the run fails and says why), and against ringmaild's STARTTLS and implicit-TLS
// listeners, where the Received header of every recorded message proves it came over TLS.
// Certificates come from a throwaway CA per test; everything listens on 127.0.0.1.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"
#include "tests/integration/relay_util.h"
#include "tests/tls/test_pki_util.h"

namespace ringmail::integration {
namespace {

constexpr Millis kTlsRunTimeout(60'000);

class RingloadTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(RingloadPath())) << RingloadPath() << " not built";
    auto pki = tls_test::TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = std::make_unique<tls_test::TestPki>(*std::move(pki));
    auto cert = pki_->IssueServer("server", {"mx.test"});
    ASSERT_TRUE(cert.ok()) << cert.status();
    cert_ = *cert;
  }

  RunResult Send(uint16_t port, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {RingloadPath(), "send", "--target",
                                     absl::StrCat("127.0.0.1:", port), "--quiet",
                                     "--io-timeout", "10", "--timeout", "50"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProgram(argv, kTlsRunTimeout);
  }

  // The queue ids of a --record file ("SEQ <MESSAGE-ID> QUEUE-ID" lines).
  std::vector<std::string> RecordedIds(const std::string& path) {
    std::vector<std::string> ids;
    for (absl::string_view line :
         absl::StrSplit(ReadFile(path).value_or(""), '\n', absl::SkipEmpty())) {
      std::vector<std::string> words = absl::StrSplit(line, ' ');
      if (words.size() == 3) ids.push_back(words[2]);
    }
    return ids;
  }

  std::string SpooledContent(const RunningDaemon& d, const std::string& id) {
    RunResult r = RunProgram({SpoolToolPath(), "show", "--body", d.spool_dir(), id},
                             Millis(20'000));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  ScratchDir dir_;
  std::unique_ptr<tls_test::TestPki> pki_;
  tls_test::TestCertificate cert_;
};

TEST_F(RingloadTlsTest, StartTlsSendToTlsSinkExchangesEveryMessage) {
  constexpr int kMessages = 300;
  RelaySink sink;
  ASSERT_TRUE(sink.Start(dir_.Sub("dump"), {"--tls", cert_.chain_file, cert_.key_file,
                                            "--expect", absl::StrCat(kMessages)})
                  .ok());
  RunResult r = Send(sink.port(), {"--tls", "starttls", "--messages", absl::StrCat(kMessages),
                                   "--connections", "4", "--pipelining", "--size",
                                   "1k:50,20k:50"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat(kMessages, " messages accepted"))) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "errors 0")) << r.out;
  ASSERT_TRUE(PollUntil(Millis(10'000), [&] { return sink.DumpCount() >= kMessages; }));
  EXPECT_EQ(sink.DumpCount(), static_cast<size_t>(kMessages));
  // The decrypted content is what ringload made: headers and a body of the drawn size.
  std::vector<DumpedMessage> dumps = ReadDumps(sink.dump_dir());
  ASSERT_FALSE(dumps.empty());
  EXPECT_TRUE(absl::StrContains(dumps[0].content, "Message-ID:")) << dumps[0].content;
}

TEST_F(RingloadTlsTest, StartTlsFailsAgainstASinkWithoutIt) {
  RelaySink sink;
  ASSERT_TRUE(sink.Start(dir_.Sub("dump"), {}).ok());
  RunResult r = Send(sink.port(), {"--tls", "starttls", "--messages", "1"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out + r.err, "STARTTLS not offered")) << r.out << r.err;
  EXPECT_EQ(sink.DumpCount(), 0u);
}

TEST_F(RingloadTlsTest, BadTlsModeIsRefused) {
  RunResult r = Send(25, {"--tls", "sometimes", "--messages", "1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.out + r.err, "starttls or implicit")) << r.out << r.err;
}

// Both modes against ringmaild: STARTTLS on its plain listener, then SMTPS on an implicit one.
TEST_F(RingloadTlsTest, BothModesAgainstRingmaildArriveOverTls) {
  for (bool implicit : {false, true}) {
    SCOPED_TRACE(implicit ? "implicit" : "starttls");
    const std::string root = dir_.Sub(implicit ? "implicit" : "starttls");
    std::filesystem::create_directories(root);
    RunningDaemon daemon(root);
    DaemonConfig c;
    c.esmtp_extra = absl::StrCat("  tls_certificate = \"", cert_.chain_file, "\"\n",
                                 "  tls_key = \"", cert_.key_file, "\"\n");
    std::string text = daemon.ConfigText(c);
    if (implicit) {
      text = absl::StrReplaceAll(text, {{"Listen \"127.0.0.1:0\" { }",
                                         "Listen \"127.0.0.1:0\" { tls = \"implicit\" }"}});
    }
    absl::Status s = daemon.StartWithText(text);
    ASSERT_TRUE(s.ok()) << s << "\n" << daemon.StderrText();
    const std::string record = dir_.Sub(implicit ? "implicit.rec" : "starttls.rec");
    RunResult r = Send(daemon.port(), {"--tls", implicit ? "implicit" : "starttls",
                                       "--messages", "20", "--connections", "2",
                                       "--pipelining", "--rcpt-template", "u{n}@local.test",
                                       "--record", record});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err << daemon.StderrText();
    std::vector<std::string> ids = RecordedIds(record);
    ASSERT_EQ(ids.size(), 20u) << ReadFile(record).value_or("");
    for (const std::string& id : {ids.front(), ids.back()}) {
      EXPECT_TRUE(absl::StrContains(SpooledContent(daemon, id), "with ESMTPS (TLS1."))
          << id;
    }
    absl::StatusOr<int> stopped = daemon.Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.status();
  }
}

// The libcrypto crypto offload (tls_crypto_offload, ringload --no-tls-offload) on either
// side, both or neither: every message arrives over TLS 1.3, with AES-128-GCM exactly when
// ringmaild offloads (its suite order decides) and ChaCha20-Poly1305 when it does not.
TEST_F(RingloadTlsTest, CryptoOffloadOnAndOffInteroperate) {
  for (bool daemon_offload : {true, false}) {
    const std::string root = dir_.Sub(daemon_offload ? "offload_on" : "offload_off");
    std::filesystem::create_directories(root);
    RunningDaemon daemon(root);
    DaemonConfig c;
    if (!daemon_offload) c.global_extra = "tls_crypto_offload = false\n";
    c.esmtp_extra = absl::StrCat("  tls_certificate = \"", cert_.chain_file, "\"\n",
                                 "  tls_key = \"", cert_.key_file, "\"\n");
    absl::Status s = daemon.StartWithText(daemon.ConfigText(c));
    ASSERT_TRUE(s.ok()) << s << "\n" << daemon.StderrText();
    const std::string suite = daemon_offload ? "TLS1.3 TLS_AES_128_GCM_SHA256"
                                             : "TLS1.3 TLS_CHACHA20_POLY1305_SHA256";
    for (bool client_offload : {true, false}) {
      SCOPED_TRACE(absl::StrCat("daemon offload ", daemon_offload, ", ringload offload ",
                                client_offload));
      const std::string record = absl::StrCat(root, client_offload ? "/on.rec" : "/off.rec");
      std::vector<std::string> args = {"--tls", "starttls", "--messages", "8", "--connections",
                                       "2", "--messages-per-connection", "2", "--rcpt-template",
                                       "u{n}@local.test", "--record", record};
      if (!client_offload) args.push_back("--no-tls-offload");
      RunResult r = Send(daemon.port(), args);
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err << daemon.StderrText();
      std::vector<std::string> ids = RecordedIds(record);
      ASSERT_EQ(ids.size(), 8u) << ReadFile(record).value_or("");
      for (const std::string& id : {ids.front(), ids.back()}) {
        EXPECT_TRUE(absl::StrContains(SpooledContent(daemon, id),
                                      absl::StrCat("with ESMTPS (", suite, ") id ", id)))
            << SpooledContent(daemon, id);
      }
    }
    absl::StatusOr<int> stopped = daemon.Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.status();
  }
}

// --tls-resume: with a new connection per message, every connection after a slot's first
// resumes with the ticket its predecessor got (ringmaild issues TLS 1.3 tickets); the
// summary counts handshakes and resumptions, and so does ringmaild's reception log.
TEST_F(RingloadTlsTest, ResumeReusesTicketsAcrossConnections) {
  const std::string root = dir_.Sub("resume");
  std::filesystem::create_directories(root);
  RunningDaemon daemon(root);
  DaemonConfig c;
  c.esmtp_extra = absl::StrCat("  tls_certificate = \"", cert_.chain_file, "\"\n",
                               "  tls_key = \"", cert_.key_file, "\"\n");
  absl::Status s = daemon.StartWithText(daemon.ConfigText(c));
  ASSERT_TRUE(s.ok()) << s << "\n" << daemon.StderrText();
  for (bool resume : {false, true}) {
    SCOPED_TRACE(resume ? "resume" : "no resume");
    std::vector<std::string> args = {"--tls", "starttls", "--messages", "12", "--connections",
                                     "2", "--messages-per-connection", "1", "--json",
                                     "--rcpt-template", "u{n}@local.test"};
    if (resume) args.push_back("--tls-resume");
    RunResult r = Send(daemon.port(), args);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err << daemon.StderrText();
    EXPECT_TRUE(absl::StrContains(r.out, "\"messages\":12,")) << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, "\"errors\":0,")) << r.out;
    // 12 messages on 2 slots: 12 handshakes at least (a slot may open one more to QUIT).
    const size_t at = r.out.find("\"tls_resumed\":");
    ASSERT_NE(at, std::string::npos) << r.out;
    const int resumed = std::atoi(r.out.c_str() + at + 14);
    if (resume) {
      EXPECT_GE(resumed, 10) << r.out;  // all but each slot's first
    } else {
      EXPECT_EQ(resumed, 0) << r.out;
    }
  }
  EXPECT_TRUE(absl::StrContains(ReadFile(daemon.log_dir() + "/reception.log").value_or(""),
                                "\"tls_resumed\":true"));
  EXPECT_EQ(Send(daemon.port(), {"--tls-resume", "--messages", "1"}).exit_code, 2);
  absl::StatusOr<int> stopped = daemon.Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.status();
}

}  // namespace
}  // namespace ringmail::integration
