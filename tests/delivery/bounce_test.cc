// DSN composition: C++ checks of the envelope and the line discipline, and Python's
// `email` package as an independent MIME parser for the structure and the fields.
#include "delivery/bounce.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

constexpr uint64_t kNowMs = 1700000000000;  // Tue, 14 Nov 2023 22:13:20 +0000

const char kOriginal[] =
    "Received: from client.test by mx.test; Tue, 14 Nov 2023 20:00:00 +0000\r\n"
    "From: Alice <alice@src.test>\r\n"
    "To: bob@dst.test\r\n"
    "Subject: quarterly numbers\r\n"
    "Message-ID: <orig-1@src.test>\r\n"
    "\r\n"
    "SECRET BODY that must not be returned\r\n";

BounceRequest Request() {
  BounceRequest request;
  request.reporting_mta = "mx.test";
  request.original_id = core::MessageId{0x0123456789abcdef, 0xfedcba9876543210};
  request.original_sender = "alice@src.test";
  request.arrival_ms = kNowMs - 3600 * 1000;
  request.original_content = kOriginal;
  request.now_ms = kNowMs;
  BounceRecipient bob;
  bob.address = "bob@dst.test";
  bob.status = EnhancedStatus{5, 1, 1};
  bob.remote_mta = "mx1.dst.test";
  bob.diagnostic = "550 5.1.1 <bob@dst.test>: Recipient address rejected";
  bob.remote = true;
  bob.last_attempt_ms = kNowMs - 1000;
  BounceRecipient carol;
  carol.address = "carol@dst.test";
  carol.status = EnhancedStatus{4, 4, 7};
  carol.diagnostic = "message expired after 5 days in the queue";
  request.recipients = {bob, carol};
  return request;
}

// Every line CRLF-terminated, none over 998 octets, no bare CR or LF, no NUL.
void ExpectWellFormedLines(const std::string& text) {
  ASSERT_GE(text.size(), 2u);
  EXPECT_EQ(text.substr(text.size() - 2), "\r\n");
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    std::string_view line(text.data() + start, end - start);
    EXPECT_LE(line.size(), 998u) << line.substr(0, 60);
    EXPECT_EQ(line.find_first_of(std::string("\r\n\0", 3)), std::string_view::npos) << line;
    start = end + 2;
  }
}

// Runs Python's email parser over `message` and returns its canonical dump, one
// "key=value" per line; GTEST_SKIP is the caller's when python3 is missing.
const char kDumpScript[] = R"PY(
import sys, email
from email import policy
from email.utils import parsedate_to_datetime
raw = open(sys.argv[1], 'rb').read()
msg = email.message_from_bytes(raw, policy=policy.compat32)
out = []
def put(k, v): out.append('%s=%s' % (k, v))
defects = len(msg.defects)
put('type', msg.get_content_type())
put('report-type', msg.get_param('report-type'))
for h in ('From', 'To', 'Subject', 'Auto-Submitted', 'MIME-Version', 'X-Injected'):
    put(h, msg[h])
put('date-ok', parsedate_to_datetime(msg['Date']).timestamp())
parts = msg.get_payload()
put('parts', len(parts))
for i, p in enumerate(parts):
    defects += len(p.defects)
    put('part%d' % i, p.get_content_type())
put('text-charset', parts[0].get_content_charset())
text = parts[0].get_payload()
put('text-has-bob', '<bob@dst.test>' in text)
put('text-has-mx1', 'host mx1.dst.test said' in text)
blocks = parts[1].get_payload()
put('blocks', len(blocks))
for i, b in enumerate(blocks):
    for k, v in b.items():
        put('block%d.%s' % (i, k), v)
hdrs = email.message_from_string(parts[2].get_payload())
for k, v in hdrs.items():
    put('orig.%s' % k, v)
put('body-leaked', b'SECRET BODY' in raw)
put('defects', defects)
print('\n'.join(out))
)PY";

bool HavePython() { return std::system("python3 -c 'import email' >/dev/null 2>&1") == 0; }

std::vector<std::string> PythonDump(const std::string& message) {
  // Unique names: test binaries may run in parallel (ctest -j) in the same TempDir.
  static int calls = 0;
  std::string stem = absl::StrCat(::testing::TempDir(), "/ringmail_bounce_", getpid(), "_",
                                  ++calls);
  std::string script = stem + ".py";
  std::string file = stem + ".eml";
  std::ofstream(script, std::ios::binary) << kDumpScript;
  std::ofstream(file, std::ios::binary) << message;
  std::string command = absl::StrCat("python3 ", script, " ", file, " 2>&1");
  std::FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t n;
  while (pipe != nullptr && (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    output.append(buffer, n);
  }
  int status = pipe != nullptr ? pclose(pipe) : -1;
  EXPECT_EQ(status, 0) << output;
  std::remove(script.c_str());
  std::remove(file.c_str());
  return absl::StrSplit(output, '\n', absl::SkipEmpty());
}

void ExpectHas(const std::vector<std::string>& dump, const std::string& line) {
  EXPECT_NE(std::find(dump.begin(), dump.end(), line), dump.end())
      << "missing: " << line << "\nin:\n" << absl::StrJoin(dump, "\n");
}

TEST(BounceTest, EnvelopeAndLines) {
  absl::StatusOr<core::Message> dsn = ComposeBounce(Request());
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_TRUE(dsn->id.IsZero());
  EXPECT_EQ(dsn->envelope.mail_from, "");
  ASSERT_EQ(dsn->envelope.recipients.size(), 1u);
  EXPECT_EQ(dsn->envelope.recipients[0].address, "alice@src.test");
  EXPECT_EQ(dsn->envelope.mail_params, "");
  EXPECT_EQ(dsn->received_ms, kNowMs);
  std::string text = dsn->body.ToString();
  ExpectWellFormedLines(text);
  EXPECT_NE(text.find("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), std::string::npos);
  EXPECT_NE(text.find("Auto-Submitted: auto-replied\r\n"), std::string::npos);
  EXPECT_NE(text.find("Final-Recipient: rfc822; bob@dst.test\r\n"), std::string::npos);
  EXPECT_NE(text.find("Status: 4.4.7\r\n"), std::string::npos);
  EXPECT_NE(text.find("Diagnostic-Code: X-Ringmail; message expired"), std::string::npos);
  EXPECT_EQ(text.find("SECRET BODY"), std::string::npos);
}

TEST(BounceTest, PythonParsesTheStructure) {
  if (!HavePython()) GTEST_SKIP() << "python3 with the email package is not installed";
  absl::StatusOr<core::Message> dsn = ComposeBounce(Request());
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  std::vector<std::string> dump = PythonDump(dsn->body.ToString());
  for (std::string line : {
           "type=multipart/report", "report-type=delivery-status",
           "From=Mail Delivery System <MAILER-DAEMON@mx.test>", "To=<alice@src.test>",
           "Subject=Undelivered Mail Returned to Sender", "Auto-Submitted=auto-replied",
           "MIME-Version=1.0", "X-Injected=None", "date-ok=1700000000.0", "parts=3",
           "part0=text/plain", "part1=message/delivery-status", "part2=text/rfc822-headers",
           "text-charset=us-ascii", "text-has-bob=True", "text-has-mx1=True", "blocks=3",
           "block0.Reporting-MTA=dns; mx.test",
           "block0.X-Ringmail-Queue-ID=0123456789abcdeffedcba9876543210",
           "block0.Arrival-Date=Tue, 14 Nov 2023 21:13:20 +0000",
           "block1.Final-Recipient=rfc822; bob@dst.test", "block1.Action=failed",
           "block1.Status=5.1.1", "block1.Remote-MTA=dns; mx1.dst.test",
           "block1.Diagnostic-Code=smtp; 550 5.1.1 <bob@dst.test>: Recipient address rejected",
           "block1.Last-Attempt-Date=Tue, 14 Nov 2023 22:13:19 +0000",
           "block2.Final-Recipient=rfc822; carol@dst.test", "block2.Action=failed",
           "block2.Status=4.4.7",
           "block2.Diagnostic-Code=X-Ringmail; message expired after 5 days in the queue",
           "orig.Subject=quarterly numbers", "orig.Message-ID=<orig-1@src.test>",
           "orig.From=Alice <alice@src.test>", "body-leaked=False", "defects=0"}) {
    ExpectHas(dump, line);
  }
  for (const std::string& line : dump) {
    EXPECT_NE(line.rfind("block2.Remote-MTA", 0), 0u) << "local failure has no Remote-MTA";
  }
}

TEST(BounceTest, NoBounceForTheNullSender) {
  BounceRequest request = Request();
  request.original_sender = "";
  absl::StatusOr<core::Message> dsn = ComposeBounce(request);
  EXPECT_EQ(dsn.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(BounceTest, RejectsBadRequests) {
  BounceRequest none = Request();
  none.recipients.clear();
  EXPECT_EQ(ComposeBounce(none).status().code(), absl::StatusCode::kInvalidArgument);
  BounceRequest injected = Request();
  injected.original_sender = "alice@src.test>\r\nBcc: <victim@x.test";
  EXPECT_EQ(ComposeBounce(injected).status().code(), absl::StatusCode::kInvalidArgument);
  BounceRequest many = Request();
  many.recipients.resize(kBounceRecipientsMax + 1, Request().recipients[0]);
  EXPECT_EQ(ComposeBounce(many).status().code(), absl::StatusCode::kInvalidArgument);
}

// A hostile remote reply, host name and original headers cannot add header lines or break
// the MIME structure.
TEST(BounceTest, HostileValuesAreNeutralised) {
  BounceRequest request = Request();
  request.reporting_mta = "mx.test\r\nX-Injected: 1";
  request.recipients[0].diagnostic = "550 no\r\nX-Injected: yes\r\n\r\nfake body";
  request.recipients[0].remote_mta = "evil\r\nX-Injected: 2";
  request.recipients[0].address = "bob@dst.test\r\nX-Injected: 3";
  std::string boundary = absl::StrCat("=_ringmail_", request.original_id.ToHex(), "_", kNowMs);
  std::string original = absl::StrCat("Subject: hi\r\nX-Trap: --", boundary, "\r\n--", boundary,
                                      "--\r\nX-Long: ", std::string(5000, 'x'),
                                      "\r\nX-Nul: a", std::string(1, '\0'), "b\r\n\r\nbody\r\n");
  request.original_content = original;
  absl::StatusOr<core::Message> dsn = ComposeBounce(request);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  std::string text = dsn->body.ToString();
  ExpectWellFormedLines(text);
  EXPECT_EQ(text.find("\r\nX-Injected"), std::string::npos);
  EXPECT_NE(text.find(absl::StrCat("boundary=\"", boundary, "_1\"")), std::string::npos);
  if (!HavePython()) GTEST_SKIP() << "python3 with the email package is not installed";
  std::vector<std::string> dump = PythonDump(text);
  for (std::string line :
       {"parts=3", "blocks=3", "X-Injected=None", "defects=0", "orig.Subject=hi",
        "block0.Reporting-MTA=dns; mx.test", "block1.Remote-MTA=dns; evil",
        "From=Mail Delivery System <MAILER-DAEMON@mx.test>"}) {
    ExpectHas(dump, line);
  }
  for (const std::string& line : dump) {
    EXPECT_EQ(line.rfind("block1.X-Injected", 0), std::string::npos) << line;
  }
}

TEST(BounceTest, NonAsciiAddressesAndEightBitHeaders) {
  BounceRequest request = Request();
  request.original_sender = "j\xc3\xb6rg@src.test";
  request.recipients[0].address = "b\xc3\xbc\x62@dst.test";
  request.original_content = "Subject: caf\xc3\xa9\r\n\r\n";
  absl::StatusOr<core::Message> dsn = ComposeBounce(request);
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  EXPECT_EQ(dsn->envelope.mail_params, "BODY=8BITMIME SMTPUTF8");
  std::string text = dsn->body.ToString();
  ExpectWellFormedLines(text);
  EXPECT_NE(text.find("Final-Recipient: utf-8; b\\x{00FC}b@dst.test\r\n"), std::string::npos);
  EXPECT_NE(text.find("charset=utf-8"), std::string::npos);
}

TEST(BounceTest, DelayedNotice) {
  BounceRequest request = Request();
  request.delayed = true;
  request.will_retry_until_ms = kNowMs + 4 * 86400 * 1000ull;
  request.recipients.resize(1);
  request.recipients[0].status = EnhancedStatus{4, 7, 1};
  absl::StatusOr<core::Message> dsn = ComposeBounce(request);
  ASSERT_TRUE(dsn.ok());
  std::string text = dsn->body.ToString();
  ExpectWellFormedLines(text);
  EXPECT_NE(text.find("Subject: Delayed Mail (still being retried)\r\n"), std::string::npos);
  EXPECT_NE(text.find("Action: delayed\r\n"), std::string::npos);
  EXPECT_NE(text.find("Status: 4.7.1\r\n"), std::string::npos);
  EXPECT_NE(text.find("Will-Retry-Until: Sat, 18 Nov 2023 22:13:20 +0000\r\n"),
            std::string::npos);
}

TEST(BounceTest, FromClientResult) {
  RecipientResult result;
  result.index = 3;
  result.outcome = RecipientOutcome::kPermanent;
  result.code = 550;
  result.status = EnhancedStatus{5, 7, 1};
  result.diagnostic = "550 5.7.1 denied";
  result.remote = true;
  BounceRecipient r = BounceRecipientFromResult("x@y.test", result, "mx.y.test", kNowMs);
  EXPECT_EQ(r.address, "x@y.test");
  EXPECT_EQ(r.status.ToString(), "5.7.1");
  EXPECT_EQ(r.remote_mta, "mx.y.test");
  EXPECT_TRUE(r.remote);
  EXPECT_EQ(r.last_attempt_ms, kNowMs);
  result.remote = false;
  EXPECT_EQ(BounceRecipientFromResult("x@y.test", result, "mx.y.test", 0).remote_mta, "");
  // A status that is not a failure class is reported as a generic failure.
  BounceRequest request = Request();
  request.recipients[0].status = EnhancedStatus{2, 0, 0};
  std::string text = ComposeBounce(request)->body.ToString();
  EXPECT_NE(text.find("Status: 5.0.0\r\n"), std::string::npos);
}

TEST(BounceTest, Rfc5322Date) {
  EXPECT_EQ(Rfc5322Date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(Rfc5322Date(kNowMs), "Tue, 14 Nov 2023 22:13:20 +0000");
}

}  // namespace
}  // namespace ringmail::delivery
