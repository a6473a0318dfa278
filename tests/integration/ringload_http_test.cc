// `ringload send --http` against the real ringmaild HTTP injection listener (127.0.0.1, port
// 0): every request answered 200, every message durable in the spool under the id that
// --record wrote, raw and structured (templated) content, pipelined requests, the open-loop
// rate, and refusals (wrong token) counted as errors. The spool is read back with
// `ringmail-spool list/show`. Outbound delivery goes to a loopback port that is bound but
// never listens, so injected messages stay deferred in the spool while the test reads it.
// Every wait is bounded; nothing sleeps to synchronise.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/ring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"

namespace ringmail::integration {
namespace {

using ::testing::HasSubstr;

constexpr char kRingloadToken[] = "ringload-token-0123456789";
constexpr Millis kRunTimeout(60'000);

std::string HttpRingloadPath() { return ToolPath("ringload", "ringload"); }

// The number after "key": in a flat JSON summary (-1 when absent).
double HttpJsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtod(json.c_str() + at + needle.size(), nullptr);
}

struct Recorded {
  uint64_t seq = 0;
  std::string message_id;
  std::vector<std::string> ids;
};

class RingloadHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!core::ProbeKernel().ok()) GTEST_SKIP() << "io_uring unavailable";
    ASSERT_TRUE(std::filesystem::exists(HttpRingloadPath())) << HttpRingloadPath();
    ASSERT_TRUE(std::filesystem::exists(RingmaildPath())) << RingmaildPath();
    // Delivery is refused (DaemonConfig's default route): what is injected stays spooled.
    DaemonConfig config;
    config.relay_domains = "( \"domain0.test\" )";
    config.global_extra = absl::StrCat("retry_interval = 1h\nHTTP_Listener {\n  auth_token = \"",
                                       kRingloadToken, "\"\n  Listen \"127.0.0.1:0\" { }\n}\n");
    absl::Status started = daemon_.Start(config, Millis(15'000));
    ASSERT_TRUE(started.ok()) << started;
  }

  void TearDown() override {
    if (!daemon_.running()) return;
    absl::StatusOr<int> status = daemon_.Stop(Millis(15'000));
    EXPECT_TRUE(status.ok() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << (status.ok() ? DescribeWaitStatus(*status) : status.status().ToString()) << "\n"
        << daemon_.StderrText();
  }

  RunResult Send(std::vector<std::string> flags, bool token = true) {
    std::vector<std::string> argv = {HttpRingloadPath(), "send", "--http", "--target",
                                     absl::StrCat("127.0.0.1:", daemon_.http_port()), "--quiet",
                                     "--json"};
    if (token) argv.insert(argv.end(), {"--token", kRingloadToken});
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunProgram(argv, kRunTimeout);
  }

  // --record lines; each must have three fields and a Message-ID made of its seq.
  std::vector<Recorded> ReadRecord() {
    std::vector<Recorded> out;
    absl::StatusOr<std::string> text = ReadFile(dir_.Sub("record"));
    EXPECT_TRUE(text.ok());
    for (absl::string_view line : absl::StrSplit(text.value_or(""), '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      EXPECT_EQ(f.size(), 3u) << line;
      if (f.size() != 3) continue;
      Recorded r;
      EXPECT_TRUE(absl::SimpleAtoi(f[0], &r.seq)) << line;
      EXPECT_TRUE(absl::StartsWith(f[1], absl::StrCat("<", r.seq, "."))) << line;
      r.message_id = f[1];
      r.ids = absl::StrSplit(f[2], ',');
      out.push_back(std::move(r));
    }
    return out;
  }

  // Ids of the live messages in the spool.
  std::set<std::string> SpooledIds() {
    RunResult r = RunProgram({SpoolToolPath(), "list", daemon_.spool_dir()}, kRunTimeout);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::set<std::string> ids;
    for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      if (absl::StartsWith(line, "ID ") || absl::StartsWith(line, "--")) continue;
      ids.insert(std::string(line.substr(0, line.find(' '))));
    }
    return ids;
  }

  std::string SpooledContent(const std::string& id) {
    RunResult r = RunProgram({SpoolToolPath(), "show", "--body", daemon_.spool_dir(), id},
                             kRunTimeout);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const size_t at = r.out.find("*** MESSAGE CONTENTS ***\n");
    return at == std::string::npos ? "" : r.out.substr(at);
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.path()};
};

class RawInjection : public RingloadHttpTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RawInjection, EveryRequestIsAnsweredAndEveryMessageIsSpooledUnderItsId) {
  constexpr int kMessages = 300;
  std::vector<std::string> flags = {"--messages", std::to_string(kMessages), "--connections",
                                    "8", "--threads", "2", "--size", "1k:50,10k:50",
                                    "--record", dir_.Sub("record")};
  if (GetParam()) flags.push_back("--pipelining");
  RunResult r = Send(flags);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"protocol\":\"http\""));
  EXPECT_EQ(HttpJsonNumber(r.out, "messages"), kMessages) << r.out;
  EXPECT_EQ(HttpJsonNumber(r.out, "200"), kMessages) << r.out;
  EXPECT_EQ(HttpJsonNumber(r.out, "errors"), 0) << r.out;
  EXPECT_LE(HttpJsonNumber(r.out, "connections_opened"), 8) << "keep-alive: " << r.out;

  const std::vector<Recorded> record = ReadRecord();
  ASSERT_EQ(record.size(), static_cast<size_t>(kMessages));
  std::set<std::string> recorded_ids;
  std::set<uint64_t> seqs;
  for (const Recorded& rec : record) {
    ASSERT_EQ(rec.ids.size(), 1u);
    EXPECT_EQ(rec.ids[0].size(), 32u) << rec.ids[0];
    recorded_ids.insert(rec.ids[0]);
    seqs.insert(rec.seq);
  }
  EXPECT_EQ(seqs.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(SpooledIds(), recorded_ids);
  // Raw content is stored as sent: our headers, and the body's dot lines untouched.
  for (size_t i = 0; i < record.size(); i += 97) {
    const std::string content = SpooledContent(record[i].ids[0]);
    EXPECT_THAT(content, HasSubstr("Message-ID: " + record[i].message_id));
    EXPECT_THAT(content, HasSubstr(absl::StrCat("X-Ringload-Seq: ", record[i].seq)));
    EXPECT_THAT(content, HasSubstr(absl::StrCat("Subject: ringload test message ",
                                                record[i].seq)));
    EXPECT_THAT(content, HasSubstr("\n.. leading dots"));
  }
}

INSTANTIATE_TEST_SUITE_P(Pipelining, RawInjection, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Pipelined" : "OneAtATime"; });

TEST_F(RingloadHttpTest, TemplatedStructuredInjectionMakesOneMessagePerRecipient) {
  RunResult r = Send({"--messages", "20", "--connections", "3", "--kind", "structured",
                      "--template", "--rcpts", "3", "--record", dir_.Sub("record")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(HttpJsonNumber(r.out, "messages"), 20) << r.out;
  const std::vector<Recorded> record = ReadRecord();
  ASSERT_EQ(record.size(), 20u);
  std::set<std::string> recorded_ids;
  for (const Recorded& rec : record) {
    ASSERT_EQ(rec.ids.size(), 3u) << "one message per recipient";
    recorded_ids.insert(rec.ids.begin(), rec.ids.end());
  }
  EXPECT_EQ(recorded_ids.size(), 60u);
  EXPECT_EQ(SpooledIds(), recorded_ids);
  // Recipient k of message `seq` is user{3·seq+k}, and its values say "User {3·seq+k}".
  const Recorded& rec = record.back();
  for (size_t k = 0; k < 3; ++k) {
    const std::string content = SpooledContent(rec.ids[k]);
    const uint64_t n = rec.seq * 3 + k;
    EXPECT_THAT(content, HasSubstr(absl::StrCat("Subject: ringload test message ", rec.seq,
                                                " for User ", n)));
    EXPECT_THAT(content, HasSubstr(absl::StrCat("Hello User ", n, ",")));
    EXPECT_THAT(content, HasSubstr(absl::StrCat("To: user", n, "@domain0.test")));
    EXPECT_THAT(content, HasSubstr("Message-ID: " + rec.message_id));
    EXPECT_THAT(content, HasSubstr("Content-Transfer-Encoding: quoted-printable"));
  }
}

TEST_F(RingloadHttpTest, OpenLoopRateSchedulesRequests) {
  RunResult r = Send({"--rate", "200", "--duration", "1", "--connections", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(HttpJsonNumber(r.out, "messages"), 200) << r.out;
  EXPECT_GE(HttpJsonNumber(r.out, "elapsed_s"), 0.99) << r.out;
  EXPECT_LE(HttpJsonNumber(r.out, "elapsed_s"), 3) << r.out;
  EXPECT_EQ(SpooledIds().size(), 200u);
}

TEST_F(RingloadHttpTest, AWrongTokenIsCountedAsRefusedAndNothingIsSpooled) {
  RunResult r = Send({"--messages", "5", "--token", "not-the-token", "--max-errors", "10"},
                     /*token=*/false);
  EXPECT_EQ(r.exit_code, 0) << "5 errors are within --max-errors: " << r.out << r.err;
  EXPECT_EQ(HttpJsonNumber(r.out, "errors"), 5) << r.out;
  EXPECT_EQ(HttpJsonNumber(r.out, "401"), 5) << r.out;
  EXPECT_EQ(HttpJsonNumber(r.out, "rejected_4xx"), 5) << r.out;
  EXPECT_EQ(HttpJsonNumber(r.out, "messages"), 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("HTTP 401"));
  EXPECT_TRUE(SpooledIds().empty());
}

TEST_F(RingloadHttpTest, AWrongPathIsA404) {
  // Without --max-errors the first error ends the run, with exit status 1.
  RunResult r = Send({"--messages", "3", "--path", "/api/nothing"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(HttpJsonNumber(r.out, "404"), 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"incomplete\":true"));
}

}  // namespace
}  // namespace ringmail::integration
