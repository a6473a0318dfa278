// End-to-end tests of ringmaild's ESMTP listener: the real daemon, started on 127.0.0.1
// port 0 with its own config, spool and log directories, driven by Python's smtplib, by
// swaks, and by a raw socket for what a polite client never sends. The spool is then read
// back with the `ringmail-spool` tool, and reception.log line by line.
//
// Every wait is bounded (poll() with a deadline); nothing sleeps to synchronise. Each test
// starts its own daemon, and every process it starts is reaped even when an assertion fails
// (daemon_util's RAII).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"

namespace ringmail::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Millis kEsmtpToolTimeout(20'000);

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif
#else
constexpr bool kUnderAsan = false;
#endif

class EsmtpDaemonTest : public ::testing::Test {
 protected:
  void StartDaemon(const DaemonConfig& config = {}) {
    ASSERT_TRUE(std::filesystem::exists(RingmaildPath()))
        << RingmaildPath() << " is not built (build the ringmaild target)";
    absl::Status s = daemon_.Start(config);
    ASSERT_TRUE(s.ok()) << s;
  }

  void TearDown() override {
    if (!daemon_.running()) return;
    absl::StatusOr<int> status = daemon_.Stop();
    ASSERT_TRUE(status.ok()) << status.status() << "\n" << daemon_.StderrText();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeWaitStatus(*status) << "\n" << daemon_.StderrText();
  }

  // A connected client that has been greeted and has said EHLO.
  void Greeted(SmtpClient& c) {
    absl::Status s = c.Connect(daemon_.port());
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(c.Hello()) << "no greeting/EHLO";
  }

  RunResult SpoolTool(std::vector<std::string> args) {
    args.insert(args.begin(), SpoolToolPath());
    return RunProgram(args, kEsmtpToolTimeout);
  }

  // The content the spool holds for `id` (Received: header and body), via `show --body`.
  std::string SpooledContent(const std::string& id) {
    RunResult r = SpoolTool({"show", "--body", daemon_.spool_dir(), id});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    constexpr std::string_view kBegin = "*** MESSAGE CONTENTS ***\n";
    constexpr std::string_view kEnd = "*** END OF MESSAGE ***\n";
    size_t b = r.out.find(kBegin);
    size_t e = r.out.rfind(kEnd);
    if (b == std::string::npos || e == std::string::npos || e < b) {
      ADD_FAILURE() << "no content in:\n" << r.out;
      return "";
    }
    return r.out.substr(b + kBegin.size(), e - b - kBegin.size());
  }

  std::vector<std::string> ListedSpoolIds() {
    RunResult r = SpoolTool({"list", daemon_.spool_dir()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ListedIds(r.out);
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.path()};
};

// MAIL, RCPT..., DATA, body, "." as one pipelined group; returns the reply to the end of
// data (or the first failing reply).
SmtpClient::Reply Transaction(SmtpClient& c, const std::vector<std::string>& rcpts,
                              const std::string& body) {
  std::string out = "MAIL FROM:<sender@client.test>\r\n";
  for (const std::string& r : rcpts) absl::StrAppend(&out, "RCPT TO:<", r, ">\r\n");
  absl::StrAppend(&out, "DATA\r\n");
  if (!c.Send(out).ok()) return {};
  for (size_t i = 0; i < rcpts.size() + 1; ++i) {
    SmtpClient::Reply r = c.ReadReply();
    if (r.code != 250) return r;
  }
  SmtpClient::Reply go = c.ReadReply();
  if (go.code != 354) return go;
  if (!c.Send(absl::StrCat(body, ".\r\n")).ok()) return {};
  return c.ReadReply();
}

constexpr char kSimpleBody[] = "Subject: test\r\n\r\nHello.\r\n";

// ---------------------------------------------------------------------------------------
// Real clients

TEST_F(EsmtpDaemonTest, SmtplibMessageIsSpooledByteExactWithReceivedHeaderFirst) {
  const std::string python = FindProgram({"python3"});
  if (python.empty()) GTEST_SKIP() << "python3 not installed (scripts/setup.sh)";
  StartDaemon();
  const std::string message =
      "From: Sender <sender@client.test>\r\n"
      "To: <user@local.test>\r\n"
      "Subject: smtplib to ringmail\r\n"
      "Message-ID: <smtplib-1@client.test>\r\n"
      "\r\n"
      "First line.\r\n"
      ".A line that starts with a dot (stuffed on the wire).\r\n"
      "..Two dots.\r\n"
      "\t8bit: caf\xc3\xa9\r\n"
      "Last line.\r\n";
  const std::string path = dir_.Sub("message.eml");
  ASSERT_TRUE(WriteFile(path, message).ok());
  RunResult r = RunProgram({python, ClientScriptPath("smtplib_send.py"), "127.0.0.1",
                            std::to_string(daemon_.port()), "sender@client.test",
                            "user@local.test", path},
                           kEsmtpToolTimeout);
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("pipelining"));
  size_t at = r.out.find("DATA-REPLY 250 ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string id = QueuedId(r.out.substr(at, r.out.find('\n', at) - at));
  ASSERT_EQ(id.size(), 32u) << r.out;

  EXPECT_THAT(ListedSpoolIds(), ::testing::ElementsAre(id));
  const std::string content = SpooledContent(id);
  ASSERT_THAT(content, StartsWith("Received: from smtplib.test ([127.0.0.1])"));
  EXPECT_THAT(content, HasSubstr(absl::StrCat(" id ", id)));
  EXPECT_THAT(content, HasSubstr("for <user@local.test>"));
  // The Received: header is folded with CRLF + TAB; its end is the first CRLF without one.
  size_t end = 0;
  for (;;) {
    end = content.find("\r\n", end);
    ASSERT_NE(end, std::string::npos);
    end += 2;
    if (end >= content.size() || content[end] != '\t') break;
  }
  EXPECT_EQ(content.substr(end), message) << "body bytes changed in the spool";
}

TEST_F(EsmtpDaemonTest, SwaksWithAndWithoutPipelining) {
  const std::string swaks = FindProgram({"swaks"});
  if (swaks.empty()) GTEST_SKIP() << "swaks not installed (scripts/setup.sh)";
  StartDaemon();
  std::vector<std::string> ids;
  for (bool pipeline : {false, true}) {
    std::vector<std::string> argv = {swaks, "--server",
                                     absl::StrCat("127.0.0.1:", daemon_.port()),
                                     "--from", "sender@client.test",
                                     "--to", "user@local.test",
                                     "--helo", "swaks.test",
                                     "--header", "Subject: swaks",
                                     "--body", "hello from swaks",
                                     "--timeout", "10"};
    if (pipeline) argv.push_back("--pipeline");
    RunResult r = RunProgram(argv, kEsmtpToolTimeout);
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 0) << "pipeline=" << pipeline << "\n" << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("250-PIPELINING"));
    size_t at = r.out.find("queued as ");
    ASSERT_NE(at, std::string::npos) << r.out;
    std::string line = r.out.substr(at, r.out.find('\n', at) - at);
    ids.push_back(QueuedId(line));
    ASSERT_EQ(ids.back().size(), 32u) << line;
    EXPECT_THAT(r.out, HasSubstr("221 2.0.0 Bye"));
  }
  EXPECT_NE(ids[0], ids[1]);
  std::vector<std::string> listed = ListedSpoolIds();
  std::sort(listed.begin(), listed.end());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(listed, ids);
  EXPECT_THAT(SpooledContent(ids[0]), HasSubstr("hello from swaks"));
}

// ---------------------------------------------------------------------------------------
// Malformed commands over a raw socket

TEST_F(EsmtpDaemonTest, MalformedCommandsGetTheirReplies) {
  StartDaemon();
  SmtpClient c;
  Greeted(c);
  SmtpClient::Reply r = c.Command("NOOP " + std::string(600, 'x'));
  EXPECT_EQ(r.code, 500) << r.text();
  EXPECT_THAT(r.last(), StartsWith("500 5.5.6"));
  r = c.Command("FROB something");
  EXPECT_THAT(r.last(), StartsWith("500 5.5.2")) << r.text();
  r = c.Command("RCPT TO:<user@local.test>");
  EXPECT_THAT(r.last(), StartsWith("503 5.5.1")) << r.text();
  r = c.Command("MAIL TO:<sender@client.test>");
  EXPECT_THAT(r.last(), StartsWith("501 5.5.4")) << r.text();
  r = c.Command(std::string("NOOP a\0b", 8));
  EXPECT_THAT(r.last(), StartsWith("501 5.5.4")) << r.text();
  // The session survived all that and still takes mail.
  r = Transaction(c, {"user@local.test"}, kSimpleBody);
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
  EXPECT_EQ(c.Command("QUIT").code, 221);
}

TEST_F(EsmtpDaemonTest, RelayDeniedUnlessRecipientDomainIsLocal) {
  DaemonConfig config;
  config.relay_hosts = "( \"10.0.0.0/8\" )";  // not us
  config.relay_domains = "( \"local.test\" )";
  StartDaemon(config);
  SmtpClient c;
  Greeted(c);
  EXPECT_EQ(c.Command("MAIL FROM:<sender@client.test>").code, 250);
  SmtpClient::Reply r = c.Command("RCPT TO:<user@example.org>");
  EXPECT_THAT(r.last(), StartsWith("550 5.7.1")) << r.text();
  r = c.Command("RCPT TO:<user@local.test>");
  EXPECT_THAT(r.last(), StartsWith("250 2.1.5")) << r.text();
  r = c.Command("RCPT TO:<user@LOCAL.TEST>");
  EXPECT_THAT(r.last(), StartsWith("250 2.1.5")) << r.text();
  r = c.Command("RCPT TO:<user@sub.local.test.example.org>");
  EXPECT_THAT(r.last(), StartsWith("550 5.7.1")) << r.text();
}

TEST_F(EsmtpDaemonTest, MaxRecipients) {
  DaemonConfig config;
  config.esmtp_extra = "max_recipients = 3\n";
  StartDaemon(config);
  SmtpClient c;
  Greeted(c);
  EXPECT_EQ(c.Command("MAIL FROM:<sender@client.test>").code, 250);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.Command(absl::StrCat("RCPT TO:<u", i, "@local.test>")).code, 250);
  }
  SmtpClient::Reply r = c.Command("RCPT TO:<u3@local.test>");
  EXPECT_THAT(r.last(), StartsWith("452 4.5.3")) << r.text();
  // The three accepted recipients still get the message.
  EXPECT_EQ(c.Command("DATA").code, 354);
  ASSERT_TRUE(c.Send(absl::StrCat(kSimpleBody, ".\r\n")).ok());
  r = c.ReadReply();
  const std::string id = QueuedId(r.last());
  ASSERT_EQ(id.size(), 32u) << r.text();
  c.Close();
  RunResult show = SpoolTool({"show", daemon_.spool_dir(), id});
  EXPECT_THAT(show.out, HasSubstr("recipient 2: <u2@local.test>"));
  EXPECT_THAT(show.out, ::testing::Not(HasSubstr("u3@local.test")));
}

TEST_F(EsmtpDaemonTest, MaxMessageSizeBySizeParameterAndByData) {
  DaemonConfig config;
  config.esmtp_extra = "max_message_size = 10KB\n";
  StartDaemon(config);
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_EQ(c.ReadReply().code, 220);
  SmtpClient::Reply ehlo = c.Command("EHLO client.test");
  EXPECT_THAT(ehlo.text(), HasSubstr("250-SIZE 10240"));
  SmtpClient::Reply r = c.Command("MAIL FROM:<sender@client.test> SIZE=20000");
  EXPECT_THAT(r.last(), StartsWith("552 5.3.4")) << r.text();
  // No SIZE given, then too much data: refused after the end of data, session goes on.
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() < 20'000) big += std::string(70, 'b') + "\r\n";
  r = Transaction(c, {"user@local.test"}, big);
  EXPECT_THAT(r.last(), StartsWith("552 5.3.4")) << r.text();
  r = Transaction(c, {"user@local.test"}, kSimpleBody);
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
  EXPECT_EQ(ListedSpoolIds().size(), 1u);
}

TEST_F(EsmtpDaemonTest, MaxErrorsEndsTheSession) {
  DaemonConfig config;
  config.esmtp_extra = "max_errors = 3\n";
  StartDaemon(config);
  SmtpClient c;
  Greeted(c);
  EXPECT_EQ(c.Command("FROB 1").code, 500);
  EXPECT_EQ(c.Command("FROB 2").code, 500);
  EXPECT_EQ(c.Command("FROB 3").code, 500);
  SmtpClient::Reply r = c.ReadReply();
  EXPECT_THAT(r.last(), StartsWith("421 4.7.0")) << r.text();
  EXPECT_TRUE(c.WaitForClose(Millis(5'000)));
}

TEST_F(EsmtpDaemonTest, PipelinedCommandsGetEveryReplyInOrder) {
  StartDaemon();
  SmtpClient c;
  Greeted(c);
  ASSERT_TRUE(c.Send("MAIL FROM:<sender@client.test>\r\n"
                     "RCPT TO:<a@local.test>\r\n"
                     "RCPT TO:<b@local.test>\r\n"
                     "DATA\r\n")
                  .ok());
  EXPECT_THAT(c.ReadReply().last(), StartsWith("250 2.1.0"));
  EXPECT_THAT(c.ReadReply().last(), StartsWith("250 2.1.5"));
  EXPECT_THAT(c.ReadReply().last(), StartsWith("250 2.1.5"));
  EXPECT_THAT(c.ReadReply().last(), StartsWith("354"));
  // Body, end of data, and the next transaction and QUIT in one write.
  ASSERT_TRUE(c.Send(absl::StrCat(kSimpleBody, ".\r\n",
                                  "MAIL FROM:<>\r\nRCPT TO:<c@local.test>\r\nDATA\r\n"))
                  .ok());
  SmtpClient::Reply first = c.ReadReply();
  EXPECT_EQ(QueuedId(first.last()).size(), 32u) << first.text();
  EXPECT_THAT(c.ReadReply().last(), StartsWith("250 2.1.0"));
  EXPECT_THAT(c.ReadReply().last(), StartsWith("250 2.1.5"));
  EXPECT_THAT(c.ReadReply().last(), StartsWith("354"));
  ASSERT_TRUE(c.Send(absl::StrCat(kSimpleBody, ".\r\nQUIT\r\n")).ok());
  SmtpClient::Reply second = c.ReadReply();
  EXPECT_EQ(QueuedId(second.last()).size(), 32u) << second.text();
  EXPECT_THAT(c.ReadReply().last(), StartsWith("221 2.0.0"));
  EXPECT_TRUE(c.WaitForClose(Millis(5'000)));
  EXPECT_EQ(ListedSpoolIds().size(), 2u);
}

// ---------------------------------------------------------------------------------------
// DATA: smuggling and bad octets

// A body that hides a second transaction behind a fake end of data `fake`. A server that
// took `fake` as the end would queue the message, then run the smuggled MAIL/RCPT/DATA.
std::string SmugglingBody(const char* fake) {
  return absl::StrCat("Subject: smuggle\r\n\r\nline", fake,
                      "MAIL FROM:<evil@attacker.test>\r\n"
                      "RCPT TO:<victim@local.test>\r\n"
                      "DATA\r\n"
                      "Subject: smuggled\r\n\r\nevil\r\n");
}

TEST_F(EsmtpDaemonTest, SmugglingSequencesDoNotEndData) {
  StartDaemon();
  SmtpClient c;
  Greeted(c);
  for (const char* fake : {"\n.\n", "\r.\r", "\n.\r\n"}) {
    SCOPED_TRACE(absl::CEscape(fake));
    SmtpClient::Reply r = Transaction(c, {"user@local.test"}, SmugglingBody(fake));
    // One reply for the whole body (its bare line ending refused); nothing smuggled ran.
    EXPECT_THAT(r.last(), StartsWith("554 5.6.0")) << r.text();
    r = c.Command("NOOP");
    EXPECT_THAT(r.last(), StartsWith("250 2.0.0")) << r.text();
  }
  EXPECT_TRUE(ListedSpoolIds().empty());
}

TEST_F(EsmtpDaemonTest, SmugglingWithBareLfNormalizedStaysInsideTheBody) {
  DaemonConfig config;
  config.esmtp_extra = "bare_lf = \"normalize\"\n";
  StartDaemon(config);
  SmtpClient c;
  Greeted(c);
  SmtpClient::Reply r = Transaction(c, {"user@local.test"}, SmugglingBody("\n.\n"));
  const std::string id = QueuedId(r.last());
  ASSERT_EQ(id.size(), 32u) << r.text();
  r = c.Command("NOOP");
  EXPECT_THAT(r.last(), StartsWith("250 2.0.0")) << r.text();
  EXPECT_THAT(ListedSpoolIds(), ::testing::ElementsAre(id));
  const std::string content = SpooledContent(id);
  EXPECT_THAT(content, HasSubstr("line\r\n.\r\nMAIL FROM:<evil@attacker.test>\r\n"));
  EXPECT_THAT(content, HasSubstr("evil\r\n"));
}

TEST_F(EsmtpDaemonTest, BareLfAndNulInDataAreRejected) {
  StartDaemon();
  SmtpClient c;
  Greeted(c);
  SmtpClient::Reply r = Transaction(c, {"user@local.test"}, "Subject: x\r\n\r\nbare\nlf\r\n");
  EXPECT_THAT(r.last(), StartsWith("554 5.6.0")) << r.text();
  EXPECT_THAT(r.last(), HasSubstr("LF"));
  r = Transaction(c, {"user@local.test"}, std::string("Subject: x\r\n\r\nnul\0here\r\n", 24));
  EXPECT_THAT(r.last(), StartsWith("554 5.6.0")) << r.text();
  EXPECT_THAT(r.last(), HasSubstr("NUL"));
  r = Transaction(c, {"user@local.test"}, kSimpleBody);
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
  EXPECT_EQ(ListedSpoolIds().size(), 1u);
}

// ---------------------------------------------------------------------------------------
// Resource limits

TEST_F(EsmtpDaemonTest, HundredMegabytesWithoutNewlineIsCutWithFlatMemory) {
  StartDaemon();
  const int64_t baseline_kib = daemon_.RssKib();
  ASSERT_GT(baseline_kib, 0);
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_EQ(c.ReadReply().code, 220);
  const std::string chunk(1 << 20, 'a');
  constexpr size_t kTotal = 100u << 20;
  size_t sent = 0;
  int64_t peak_kib = baseline_kib;
  while (sent < kTotal) {
    if (!c.Send(chunk, Millis(5'000)).ok()) break;  // cut off (reset) or not read
    sent += chunk.size();
    peak_kib = std::max(peak_kib, daemon_.RssKib());
  }
  // Either the daemon hung up on us, or it answered (with an error) what it got.
  size_t ignored = 0;
  const bool closed = c.WaitForClose(Millis(5'000), &ignored);
  EXPECT_TRUE(closed || sent == kTotal);
  EXPECT_LT(sent, kTotal) << "100 MB without a newline was read to the end";
  peak_kib = std::max(peak_kib, daemon_.RssKib());
  EXPECT_LT(peak_kib - baseline_kib, 64 * 1024)
      << "RSS grew from " << baseline_kib << " KiB to " << peak_kib << " KiB";
  if (!kUnderAsan) {
    EXPECT_LT(peak_kib, 100 * 1024);
  }
  // Still serving.
  SmtpClient next;
  Greeted(next);
  SmtpClient::Reply r = Transaction(next, {"user@local.test"}, kSimpleBody);
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
}

// A client that pipelines commands and never reads the replies: an 8-byte EHLO is answered
// with ~130 bytes, so the replies must not pile up in the daemon. Past a bound the
// session stops reading and TCP holds the client back; memory stays flat.
TEST_F(EsmtpDaemonTest, PipelinedCommandsNeverReadLeaveMemoryFlat) {
  StartDaemon();
  const int64_t baseline_kib = daemon_.RssKib();
  ASSERT_GT(baseline_kib, 0);
  SmtpClient c;
  Greeted(c);
  std::string chunk;
  for (int i = 0; i < 8192; ++i) chunk += "EHLO x\r\n";  // 64 KiB
  constexpr size_t kTotal = 64u << 20;
  size_t sent = 0;
  int64_t peak_kib = baseline_kib;
  while (sent < kTotal) {
    if (!c.Send(chunk, Millis(2'000)).ok()) break;  // held back: the daemon stopped reading
    sent += chunk.size();
    peak_kib = std::max(peak_kib, daemon_.RssKib());
  }
  peak_kib = std::max(peak_kib, daemon_.RssKib());
  EXPECT_LT(sent, kTotal) << "64 MB of EHLO were read with none of the replies read";
  EXPECT_LT(peak_kib - baseline_kib, 32 * 1024)
      << "RSS grew from " << baseline_kib << " KiB to " << peak_kib << " KiB";
  // Still serving.
  SmtpClient next;
  Greeted(next);
  SmtpClient::Reply r = Transaction(next, {"user@local.test"}, kSimpleBody);
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
}

// The other side of that bound: a client that does read, only slower than it writes, gets
// every reply. Input held back while replies were waiting must go on once they have left.
TEST_F(EsmtpDaemonTest, PipelinedCommandsHeldBackResumeWhenRepliesAreRead) {
  StartDaemon();
  SmtpClient c;
  Greeted(c);
  constexpr int kCommands = 40000;  // 320 KB of EHLO, ~5 MB of replies: far past the bound
  std::string burst;
  for (int i = 0; i < kCommands; ++i) burst += "EHLO x\r\n";
  absl::Status sent;
  std::thread writer([&] { sent = c.Send(burst, Millis(30'000)); });  // Send uses no buffer
  int replies = 0;
  while (replies < kCommands && c.ReadReply(Millis(5'000)).code == 250) ++replies;
  writer.join();
  EXPECT_TRUE(sent.ok()) << sent;
  EXPECT_EQ(replies, kCommands) << "the session stopped answering after " << replies;
  EXPECT_EQ(c.Command("QUIT").code, 221);
}

TEST_F(EsmtpDaemonTest, LargeDataOverTheLimitIsReadAndRefusedWithFlatMemory) {
  DaemonConfig config;
  config.esmtp_extra = "max_message_size = 1MB\n";
  StartDaemon(config);
  const int64_t baseline_kib = daemon_.RssKib();
  SmtpClient c;
  Greeted(c);
  ASSERT_TRUE(c.Send("MAIL FROM:<sender@client.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n")
                  .ok());
  EXPECT_EQ(c.ReadReply().code, 250);
  EXPECT_EQ(c.ReadReply().code, 250);
  EXPECT_EQ(c.ReadReply().code, 354);
  std::string line = std::string(998, 'd') + "\r\n";
  std::string chunk;
  while (chunk.size() < (1u << 20)) chunk += line;
  int64_t peak_kib = baseline_kib;
  for (int i = 0; i < 32; ++i) {
    ASSERT_TRUE(c.Send(chunk, Millis(10'000)).ok()) << "after " << i << " MiB";
    peak_kib = std::max(peak_kib, daemon_.RssKib());
  }
  ASSERT_TRUE(c.Send(".\r\n").ok());
  SmtpClient::Reply r = c.ReadReply(Millis(10'000));
  EXPECT_THAT(r.last(), StartsWith("552 5.3.4")) << r.text();
  EXPECT_LT(peak_kib - baseline_kib, 32 * 1024)
      << "RSS grew from " << baseline_kib << " KiB to " << peak_kib << " KiB";
  EXPECT_EQ(c.Command("NOOP").code, 250);
}

TEST_F(EsmtpDaemonTest, MaxConnectionsRefusesTheExcessWith421) {
  DaemonConfig config;
  config.esmtp_extra = "max_connections = 5\n";
  StartDaemon(config);
  std::vector<std::unique_ptr<SmtpClient>> admitted;
  for (int i = 0; i < 5; ++i) {
    admitted.push_back(std::make_unique<SmtpClient>());
    ASSERT_TRUE(admitted.back()->Connect(daemon_.port()).ok());
    SmtpClient::Reply r = admitted.back()->ReadReply();
    ASSERT_EQ(r.code, 220) << i << ": " << r.text();
  }
  for (int i = 5; i < 10; ++i) {
    SmtpClient extra;
    ASSERT_TRUE(extra.Connect(daemon_.port()).ok());
    SmtpClient::Reply r = extra.ReadReply();
    EXPECT_THAT(r.last(), StartsWith("421 4.3.2")) << i << ": " << r.text();
    EXPECT_TRUE(extra.WaitForClose(Millis(5'000))) << i;
  }
  // The five admitted sessions were not disturbed.
  for (auto& c : admitted) EXPECT_EQ(c->Command("EHLO client.test").code, 250);
}

// Several loops accept on one port (SO_REUSEPORT); limits are daemon-wide.
TEST_F(EsmtpDaemonTest, SeveralLoopsShareThePortAndTheConnectionLimit) {
  DaemonConfig config;
  config.esmtp_loops = 3;
  config.esmtp_extra = "max_connections = 8\n";
  if (!TestLicenseAccepted()) GTEST_SKIP() << "built with a vendor license key";
  StartDaemon(config);
  std::vector<std::unique_ptr<SmtpClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<SmtpClient>());
    Greeted(*clients.back());
  }
  for (int i = 0; i < 4; ++i) {
    SmtpClient extra;
    ASSERT_TRUE(extra.Connect(daemon_.port()).ok());
    EXPECT_THAT(extra.ReadReply().last(), StartsWith("421 4.3.2")) << i;
  }
  std::set<std::string> ids;
  for (int round = 0; round < 3; ++round) {
    for (auto& c : clients) {
      SmtpClient::Reply r = Transaction(*c, {"user@local.test"}, kSimpleBody);
      ASSERT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
      ids.insert(QueuedId(r.last()));
    }
  }
  EXPECT_EQ(ids.size(), 24u);
  std::vector<std::string> listed = ListedSpoolIds();
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), ids);
}

TEST_F(EsmtpDaemonTest, MaxProcessingsMakesTheNextTransactionWaitItsTurn) {
  DaemonConfig config;
  config.esmtp_extra = "max_processings = 1\n";
  StartDaemon(config);
  SmtpClient first, second;
  Greeted(first);
  Greeted(second);
  EXPECT_THAT(first.Command("MAIL FROM:<a@client.test>").last(), StartsWith("250 2.1.0"));
  ASSERT_TRUE(second.Send("MAIL FROM:<b@client.test>\r\n").ok());
  // Round trips on the first session: had the second MAIL been answered, its reply would
  // be here by now (same loop, one thread).
  EXPECT_EQ(first.Command("RCPT TO:<u@local.test>").code, 250);
  EXPECT_EQ(first.Command("DATA").code, 354);
  pollfd p{second.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the second MAIL was answered while the slot was taken";
  ASSERT_TRUE(first.Send(".\r\n").ok());
  SmtpClient::Reply r = first.ReadReply();
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
  // The slot passes on when the first transaction ends.
  EXPECT_THAT(second.ReadReply().last(), StartsWith("250 2.1.0"));
  // And the first session waits for its next MAIL in turn.
  ASSERT_TRUE(first.Send("MAIL FROM:<a2@client.test>\r\n").ok());
  EXPECT_EQ(second.Command("RSET").code, 250);  // gives the slot back
  EXPECT_THAT(first.ReadReply().last(), StartsWith("250 2.1.0"));
}

TEST_F(EsmtpDaemonTest, ClientsVanishingAtAnyPointLeaveTheDaemonServing) {
  StartDaemon();
  const std::vector<std::string> steps = {
      "",
      "EHL",
      "EHLO client.test\r\nMAIL FROM:<s@client.test>\r\n",
      "EHLO client.test\r\nMAIL FROM:<s@client.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n"
      "Subject: cut\r\n\r\nhalf a bo",
      "EHLO client.test\r\nMAIL FROM:<s@client.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n"
      "Subject: cut\r\n\r\nwhole body\r\n.\r\n",
  };
  for (bool reset : {false, true}) {
    for (const std::string& step : steps) {
      SmtpClient c;
      ASSERT_TRUE(c.Connect(daemon_.port()).ok());
      if (!step.empty()) {
        ASSERT_TRUE(c.Send(step).ok());
      }
      if (reset) {  // RST instead of FIN
        linger l{1, 0};
        setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      }
      c.Close();
    }
  }
  SmtpClient c;
  Greeted(c);
  SmtpClient::Reply r = Transaction(c, {"user@local.test"}, kSimpleBody);
  EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
  EXPECT_EQ(c.Command("QUIT").code, 221);
  // TearDown: SIGTERM still drains to exit 0 (no session left hanging).
}

TEST_F(EsmtpDaemonTest, SilentClientIsCutAtTheCommandTimeout) {
  DaemonConfig config;
  config.esmtp_extra = "command_timeout = 1s\n";
  StartDaemon(config);
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_EQ(c.ReadReply().code, 220);
  const auto start = std::chrono::steady_clock::now();
  SmtpClient::Reply r = c.ReadReply(Millis(10'000));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(r.last(), StartsWith("421 4.4.2")) << r.text();
  EXPECT_GE(waited, Millis(900));
  EXPECT_TRUE(c.WaitForClose(Millis(5'000)));
}

// Each wait has its own timer (RFC 5321 §4.5.3.2): with a long command_timeout, a client
// silent after EHLO (awaiting MAIL), after MAIL (awaiting RCPT) and after 354 (awaiting
// the body) is cut at mail_timeout, rcpt_timeout and data_init_timeout.
TEST_F(EsmtpDaemonTest, EachWaitIsCutAtItsOwnTimeout) {
  DaemonConfig config;
  config.esmtp_extra =
      "command_timeout = 10m\nmail_timeout = 1s\nrcpt_timeout = 1s\ndata_init_timeout = 1s\n";
  StartDaemon(config);
  SmtpClient after_ehlo, after_mail, after_354;
  Greeted(after_ehlo);
  Greeted(after_mail);
  ASSERT_EQ(after_mail.Command("MAIL FROM:<s@client.test>").code, 250);
  Greeted(after_354);
  ASSERT_TRUE(after_354.Send("MAIL FROM:<s@client.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n")
                  .ok());
  ASSERT_EQ(after_354.ReadReply().code, 250);
  ASSERT_EQ(after_354.ReadReply().code, 250);
  ASSERT_EQ(after_354.ReadReply().code, 354);
  for (SmtpClient* c : {&after_ehlo, &after_mail, &after_354}) {
    SmtpClient::Reply r = c->ReadReply(Millis(10'000));
    EXPECT_THAT(r.last(), StartsWith("421 4.4.2")) << r.text();
    EXPECT_TRUE(c->WaitForClose(Millis(5'000)));
  }
  EXPECT_TRUE(ListedSpoolIds().empty());
}

// The configured banner is the greeting; max_messages_per_connection stops a session's
// MAIL commands with 421; max_connection_rate_per_ip refuses an address's connections
// past the limit within a minute, whether or not the earlier ones are still open.
TEST_F(EsmtpDaemonTest, BannerMessagesPerConnectionAndConnectionRate) {
  DaemonConfig config;
  config.esmtp_extra =
      "banner = \"mx.local.test ready for testing\"\n"
      "max_messages_per_connection = 2\nmax_connection_rate_per_ip = 3\n";
  StartDaemon(config);
  SmtpClient first;
  ASSERT_TRUE(first.Connect(daemon_.port()).ok());
  SmtpClient::Reply greeting = first.ReadReply();
  EXPECT_EQ(greeting.last(), "220 mx.local.test ready for testing") << greeting.text();
  EXPECT_EQ(first.Command("EHLO client.test").code, 250);
  for (int i = 0; i < 2; ++i) {
    SmtpClient::Reply r = Transaction(first, {"user@local.test"}, kSimpleBody);
    EXPECT_EQ(QueuedId(r.last()).size(), 32u) << r.text();
  }
  SmtpClient::Reply third = first.Command("MAIL FROM:<s@client.test>");
  EXPECT_THAT(third.last(), StartsWith("421 4.7.0")) << third.text();
  EXPECT_TRUE(first.WaitForClose(Millis(5'000)));
  EXPECT_EQ(ListedSpoolIds().size(), 2u);
  // The first connection counts for the rate though it is closed: two more are admitted.
  SmtpClient second, third_connection, fourth;
  Greeted(second);
  Greeted(third_connection);
  ASSERT_TRUE(fourth.Connect(daemon_.port()).ok());
  SmtpClient::Reply refused = fourth.ReadReply();
  EXPECT_THAT(refused.last(), StartsWith("421 4.7.0")) << refused.text();
  EXPECT_TRUE(fourth.WaitForClose(Millis(5'000)));
}

// ---------------------------------------------------------------------------------------
// SIGTERM and the reception log

TEST_F(EsmtpDaemonTest, SigtermFinishesDataInProgressAndRefusesNewCommands) {
  StartDaemon();
  SmtpClient sending;
  Greeted(sending);
  SmtpClient idle;
  Greeted(idle);
  ASSERT_TRUE(
      sending.Send("MAIL FROM:<sender@client.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n").ok());
  EXPECT_EQ(sending.ReadReply().code, 250);
  EXPECT_EQ(sending.ReadReply().code, 250);
  ASSERT_EQ(sending.ReadReply().code, 354);
  ASSERT_TRUE(sending.Send("Subject: drain\r\n\r\nfirst half\r\n").ok());

  daemon_.Signal(SIGTERM);
  // The idle session hears 421 as soon as the drain starts: proof the signal arrived
  // while the other session is still inside DATA.
  SmtpClient::Reply r = idle.ReadReply(Millis(10'000));
  EXPECT_THAT(r.last(), StartsWith("421 4.3.2")) << r.text();
  EXPECT_TRUE(idle.WaitForClose(Millis(5'000)));
  // A client arriving during the drain is not left waiting in the accept queue: it is
  // refused, or hears 421, or is closed, at once.
  SmtpClient late;
  if (late.Connect(daemon_.port()).ok()) {
    SmtpClient::Reply hello = late.ReadReply(Millis(3'000));
    EXPECT_TRUE(hello.code == 421 || late.WaitForClose(Millis(0)))
        << "a connection made during the drain got no answer: " << hello.text();
  }

  ASSERT_TRUE(sending.Send("second half\r\n.\r\n").ok());
  r = sending.ReadReply(Millis(10'000));
  const std::string id = QueuedId(r.last());
  EXPECT_EQ(id.size(), 32u) << r.text();
  // The session is not taken back to command state: it hears 421 and is closed.
  r = sending.ReadReply(Millis(10'000));
  EXPECT_THAT(r.last(), StartsWith("421 4.3.2")) << r.text();
  EXPECT_TRUE(sending.WaitForClose(Millis(5'000)));

  std::optional<int> status = daemon_.WaitExit(Millis(15'000));
  ASSERT_TRUE(status.has_value()) << "daemon still running after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeWaitStatus(*status)
                                                               << "\n" << daemon_.StderrText();
  EXPECT_THAT(ListedSpoolIds(), ::testing::ElementsAre(id));
  EXPECT_THAT(SpooledContent(id), HasSubstr("first half\r\nsecond half\r\n"));
}

TEST_F(EsmtpDaemonTest, ReceptionLogHasOneJsonLinePerAcceptedOrRejectedMessage) {
  StartDaemon();
  SmtpClient c;
  Greeted(c);
  std::vector<std::string> ids;
  std::vector<std::string> bodies = {kSimpleBody, "Subject: two\r\n\r\n2\r\n",
                                     "Subject: three\r\n\r\n" + std::string(5000, '3') + "\r\n"};
  for (size_t i = 0; i < bodies.size(); ++i) {
    SmtpClient::Reply r = Transaction(c, {"user@local.test"}, bodies[i]);
    ids.push_back(QueuedId(r.last()));
    ASSERT_EQ(ids.back().size(), 32u) << r.text();
    if (i == 0) {  // a refused one in between has its own line, "rejected"
      r = Transaction(c, {"user@local.test"}, "bare\nlf\r\n");
      EXPECT_EQ(r.code, 554);
    }
  }
  EXPECT_EQ(c.Command("QUIT").code, 221);
  absl::StatusOr<int> status = daemon_.Stop();  // the log writer flushes on exit
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0) << DescribeWaitStatus(*status);
  absl::StatusOr<std::string> log = ReadFile(daemon_.log_dir() + "/reception.log");
  ASSERT_TRUE(log.ok()) << log.status();
  std::vector<std::string> lines = absl::StrSplit(*log, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), ids.size() + 1) << *log;
  const std::string rejected = lines[1];
  EXPECT_EQ(JsonField(rejected, "event"), "rejected") << rejected;
  EXPECT_EQ(JsonField(rejected, "code"), "554") << rejected;
  EXPECT_EQ(JsonField(rejected, "status"), "5.6.0") << rejected;
  EXPECT_EQ(JsonField(rejected, "from"), "sender@client.test") << rejected;
  EXPECT_EQ(JsonField(rejected, "id"), std::nullopt) << rejected;
  lines.erase(lines.begin() + 1);
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i]);
    EXPECT_THAT(lines[i], StartsWith("{"));
    EXPECT_EQ(lines[i].back(), '}');
    EXPECT_EQ(JsonField(lines[i], "id"), ids[i]);
    EXPECT_EQ(JsonField(lines[i], "peer"), "127.0.0.1");
    EXPECT_EQ(JsonField(lines[i], "from"), "sender@client.test");
    EXPECT_EQ(JsonField(lines[i], "code"), "250");
    uint64_t size = 0;
    ASSERT_TRUE(absl::SimpleAtoi(JsonField(lines[i], "size").value_or(""), &size));
    EXPECT_GE(size, bodies[i].size());
  }
}

}  // namespace
}  // namespace ringmail::integration
