// HTTP injection end to end (issue #7): messages injected with curl through ringmaild's
// HTTP listener are delivered to a real `ringload sink --dump` and compared there — raw
// content byte for byte (dot-leading lines, 8-bit text, CRLF) under ringmaild's own
// Received header, with the envelope the request named; structured content parsed by
// Python's email package (MIME structure, texts, attachment bytes). Every wait is bounded
// and polls for its condition; the daemon and the sink are stopped by the test.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/ring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"
#include "tests/integration/relay_util.h"

namespace ringmail::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr char kBearer[] = "relay-test-token-0123456789";

// JSON string literal of `text` (UTF-8 passes through; controls are escaped).
std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char hex[8];
          snprintf(hex, sizeof(hex), "\\u%04x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// Checks a delivered structured message with Python's email package; prints OK or why not.
constexpr char kRelayMimeCheck[] = R"PY(
import email, email.policy, hashlib, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
bad = [str(d) for p in m.walk() for d in p.defects]
if str(m["subject"]) != "Caf\u00e9 report": bad.append("subject %r" % str(m["subject"]))
texts = {p.get_content_type(): p.get_content().replace("\r\n", "\n")
         for p in m.walk() if p.get_content_maintype() == "text"
         and p.get_content_disposition() != "attachment"}
if texts.get("text/plain") != "line one\n.dot line\nna\u00efve\n": bad.append("plain %r" % texts)
if texts.get("text/html") != "<p>hello</p>": bad.append("html %r" % texts)
atts = [(p.get_filename(), hashlib.sha256(p.get_payload(decode=True)).hexdigest())
        for p in m.walk() if p.get_content_disposition() == "attachment"]
want = hashlib.sha256(bytes(range(256)) * 4).hexdigest()
if atts != [("data.bin", want)]: bad.append("attachments %r" % atts)
print("OK" if not bad else "\n".join(bad))
)PY";

class HttpRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!core::ProbeKernel().ok()) GTEST_SKIP() << "io_uring unavailable";
    curl_ = FindProgram({"curl"});
    python_ = FindProgram({"python3"});
    if (curl_.empty() || python_.empty()) GTEST_SKIP() << "curl or python3 missing";
    absl::Status sink = sink_.Start(dir_.Sub("dump"), {});
    ASSERT_TRUE(sink.ok()) << sink;
    DaemonConfig config;
    config.default_route = sink_.route();
    config.global_extra = absl::StrCat("HTTP_Listener {\n  auth_token = \"", kBearer,
                                       "\"\n  Listen \"127.0.0.1:0\" { }\n}\n");
    absl::Status started = daemon_.Start(config);
    ASSERT_TRUE(started.ok()) << started;
    ASSERT_NE(daemon_.http_port(), 0);
  }

  void TearDown() override {
    if (daemon_.running()) {
      absl::StatusOr<int> status = daemon_.Stop();
      EXPECT_TRUE(status.ok()) << status.status();
    }
  }

  // POSTs `json` to the injection API; returns the response body.
  std::string Inject(const std::string& json) {
    const std::string body_file = dir_.Sub("request.json");
    EXPECT_TRUE(WriteFile(body_file, json).ok());
    RunResult r = RunProgram(
        {curl_, "-sS", "--max-time", "20", "-H", absl::StrCat("Authorization: Bearer ", kBearer),
         "-H", "Content-Type: application/json", "--data-binary", "@" + body_file,
         absl::StrCat("http://127.0.0.1:", daemon_.http_port(), "/api/inject/v1")},
        Millis(30'000));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  std::vector<DumpedMessage> WaitForDumps(size_t count) {
    EXPECT_TRUE(PollUntil(Millis(30'000), [&] { return sink_.DumpCount() >= count; }))
        << "sink has " << sink_.DumpCount() << " of " << count << "; daemon stderr:\n"
        << daemon_.StderrText();
    return ReadDumps(sink_.dump_dir());
  }

  ScratchDir dir_;
  RelaySink sink_;
  RunningDaemon daemon_{dir_.path()};
  std::string curl_;
  std::string python_;
};

TEST_F(HttpRelayTest, RawContentArrivesByteExactWithItsEnvelope) {
  // Lines the SMTP hop must dot-stuff and the sink unstuff, 8-bit UTF-8, an empty line, and
  // a last line ending in CRLF. Date and Message-ID are present, so the injection adds none.
  const std::string content =
      "Date: Sun, 22 Nov 2026 06:00:00 +0000\r\nMessage-ID: <raw.1@x.test>\r\n"
      "From: sender@x.test\r\nTo: a@local.test\r\nSubject: raw\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n"
      ".starts with a dot\r\n..two dots\r\n.\r\n\r\nna\xc3\xafve caf\xc3\xa9\r\nlast\r\n";
  const std::string json = absl::StrCat(
      R"({"envelope_sender":"bounce@x.test","recipients":[{"email":"a@local.test"},)",
      R"({"email":"b@local.test"}],"content":)", JsonString(content), "}");
  EXPECT_THAT(Inject(json), HasSubstr("\"success_count\":2"));

  std::vector<DumpedMessage> dumps = WaitForDumps(1);
  ASSERT_EQ(dumps.size(), 1u);  // one message, both recipients in one transaction
  EXPECT_EQ(dumps[0].mail_from, "bounce@x.test");
  EXPECT_THAT(dumps[0].rcpts, UnorderedElementsAre("a@local.test", "b@local.test"));
  std::optional<std::string> without_received = StripFirstReceived(dumps[0].content);
  ASSERT_TRUE(without_received.has_value()) << dumps[0].content;
  EXPECT_EQ(*without_received, content);
  EXPECT_THAT(HeaderValue(dumps[0].content, "Received"), HasSubstr("mx.test"));
}

TEST_F(HttpRelayTest, StructuredContentArrivesAsCorrectMime) {
  std::string attachment;
  for (int i = 0; i < 4; ++i) {
    for (int b = 0; b < 256; ++b) attachment += static_cast<char>(b);
  }
  // base64 of the attachment, made by Python so the test does not trust our own encoder.
  RunResult b64 = RunProgram(
      {python_, "-c", "import base64,sys; print(base64.b64encode(sys.stdin.buffer.read())"
                      ".decode(), end='')"},
      Millis(10'000), attachment);
  ASSERT_EQ(b64.exit_code, 0) << b64.err;
  const std::string json = absl::StrCat(
      R"({"envelope_sender":"bounce@x.test","recipients":[{"email":"a@local.test"}],)",
      R"("content":{"from":"shop@x.test","subject":"Caf\u00e9 report",)",
      R"("text_body":"line one\n.dot line\nna\u00efve\n","html_body":"<p>hello</p>",)",
      R"("attachments":[{"name":"data.bin","type":"application/octet-stream","data":")",
      b64.out, R"("}]}})");
  EXPECT_THAT(Inject(json), HasSubstr("\"success_count\":1"));

  std::vector<DumpedMessage> dumps = WaitForDumps(1);
  ASSERT_EQ(dumps.size(), 1u);
  EXPECT_EQ(dumps[0].mail_from, "bounce@x.test");
  EXPECT_THAT(dumps[0].rcpts, UnorderedElementsAre("a@local.test"));
  RunResult check = RunProgram({python_, "-c", kRelayMimeCheck}, Millis(10'000), dumps[0].content);
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_EQ(check.out, "OK\n") << dumps[0].content;
}

}  // namespace
}  // namespace ringmail::integration
