// Crash and damage tests of ringmaild's spool, end to end: "250 queued as <id>" is only said
// once the message is durable, so every id a client heard must survive a kill -9 and a
// restart; a torn last record loses only that record; a segment full of garbage is
// quarantined and the daemon starts anyway. The spool is read back with `ringmail-spool`
// (list, show, verify) after the daemon has stopped.
//
// Bounded everywhere: the load runs until a message count or a deadline, whichever comes
// first (a condition variable with a deadline, not a sleep); every socket read and every
// process wait has a timeout.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"

namespace ringmail::integration {
namespace {

using ::testing::HasSubstr;

constexpr Millis kToolTimeout(30'000);

class CrashRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(RingmaildPath()))
        << RingmaildPath() << " is not built (build the ringmaild target)";
    // Small segments (the harness default) so that a second of load rolls over several.
    config_.spool_segment_size = "1MB";
  }

  void StartDaemon() {
    absl::Status s = daemon_.Start(config_);
    ASSERT_TRUE(s.ok()) << s;
  }

  void StopDaemon() {
    absl::StatusOr<int> status = daemon_.Stop();
    ASSERT_TRUE(status.ok()) << status.status() << "\n" << daemon_.StderrText();
    ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeWaitStatus(*status) << "\n" << daemon_.StderrText();
  }

  RunResult SpoolTool(std::vector<std::string> args) {
    args.insert(args.begin(), SpoolToolPath());
    return RunProgram(args, kToolTimeout);
  }

  std::set<std::string> ListedIdSet() {
    RunResult r = SpoolTool({"list", daemon_.spool_dir()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> ids = ListedIds(r.out);
    return std::set<std::string>(ids.begin(), ids.end());
  }

  // `ringmail-spool verify` must find no damage (a torn tail of a newest segment is fine).
  void ExpectVerifies() {
    RunResult r = SpoolTool({"verify", daemon_.spool_dir()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("\nOK\n"));
  }

  // Load from four senders, kill -9, restart on the same spool: nothing acknowledged is lost.
  void KillDuringLoadAndRecover();

  std::string SendOne(uint16_t port) {
    SmtpClient c;
    if (!c.Connect(port).ok() || !c.Hello()) return "";
    if (!c.Send("MAIL FROM:<s@client.test>\r\nRCPT TO:<u@local.test>\r\nDATA\r\n").ok()) {
      return "";
    }
    if (c.ReadReply().code != 250 || c.ReadReply().code != 250 || c.ReadReply().code != 354) {
      return "";
    }
    if (!c.Send("Subject: one\r\n\r\nbody\r\n.\r\n").ok()) return "";
    return QueuedId(c.ReadReply().last());
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.path()};
  DaemonConfig config_;
};

// Senders that run MAIL/RCPT/DATA as fast as the daemon answers, on reused connections,
// and keep the id of every message the daemon acknowledged.
class LoadGenerator {
 public:
  LoadGenerator(uint16_t port, int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this, port, i] { Run(port, i); });
  }
  ~LoadGenerator() { Join(); }

  // Returns when `count` messages were acknowledged or `deadline` passed.
  void WaitFor(size_t count, Millis deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, deadline, [&] { return acked_.size() >= count; });
  }
  void Join() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<std::string> acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  size_t protocol_errors() const { return protocol_errors_; }

 private:
  void Run(uint16_t port, int thread) {
    SmtpClient c;
    if (!c.Connect(port).ok() || !c.Hello()) return;
    const std::string envelope = absl::StrCat("MAIL FROM:<load", thread,
                                              "@client.test>\r\nRCPT TO:<u@local.test>\r\n"
                                              "DATA\r\n");
    for (uint64_t n = 0; !stop_; ++n) {
      if (!c.Send(envelope).ok()) return;
      SmtpClient::Reply mail = c.ReadReply(), rcpt = c.ReadReply(), data = c.ReadReply();
      if (mail.code == 0 || rcpt.code == 0 || data.code == 0) return;  // killed
      if (mail.code == 421) return;  // shutting down
      if (mail.code != 250 || rcpt.code != 250 || data.code != 354) {
        ++protocol_errors_;
        return;
      }
      std::string body = absl::StrCat("Subject: load ", thread, "/", n, "\r\n\r\n",
                                      std::string(200 + n % 300, 'x'), "\r\n.\r\n");
      if (!c.Send(body).ok()) return;
      SmtpClient::Reply done = c.ReadReply();
      if (done.code == 0) return;  // killed before the reply: not acknowledged
      std::string id = QueuedId(done.last());
      if (id.empty()) {
        ++protocol_errors_;
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      acked_.push_back(id);
      cv_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> protocol_errors_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> acked_;
};

TEST_F(CrashRecoveryTest, EveryAcknowledgedMessageSurvivesKillDashNine) {
  KillDuringLoadAndRecover();
}

TEST_F(CrashRecoveryTest, EveryAcknowledgedMessageSurvivesKillDashNineWithThreeLoops) {
  if (!TestLicenseAccepted()) GTEST_SKIP() << "built with a vendor license key";
  config_.esmtp_loops = 3;
  KillDuringLoadAndRecover();
}

void CrashRecoveryTest::KillDuringLoadAndRecover() {
  StartDaemon();
  std::vector<std::string> acked;
  {
    LoadGenerator load(daemon_.port(), 4);
    load.WaitFor(3000, Millis(1500));
    daemon_.Crash();  // kill -9 while the senders are mid-transaction
    load.Join();
    acked = load.acked();
    EXPECT_EQ(load.protocol_errors(), 0u);
  }
  ASSERT_GT(acked.size(), 50u) << "the load barely ran";
  std::set<std::string> unique(acked.begin(), acked.end());
  EXPECT_EQ(unique.size(), acked.size()) << "an id was handed out twice";

  // Restart on the same spool: recovery runs, the daemon serves, then stops cleanly.
  StartDaemon();
  EXPECT_THAT(daemon_.StderrText(), HasSubstr("spool recovery:"));
  const std::string after = SendOne(daemon_.port());
  EXPECT_EQ(after.size(), 32u);
  StopDaemon();

  ExpectVerifies();
  std::set<std::string> listed = ListedIdSet();
  size_t missing = 0;
  for (const std::string& id : acked) {
    if (listed.count(id) == 0 && ++missing <= 5) ADD_FAILURE() << "acknowledged but lost: " << id;
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged";
  EXPECT_EQ(listed.count(after), 1u);
  // At most the messages in flight at the kill (one per sender) were written unacknowledged.
  EXPECT_LE(listed.size(), acked.size() + 1 + 4);
}

TEST_F(CrashRecoveryTest, SigtermUnderLoadKeepsEveryAcknowledgedMessageAndExitsZero) {
  StartDaemon();
  std::vector<std::string> acked;
  {
    LoadGenerator load(daemon_.port(), 4);
    load.WaitFor(500, Millis(1000));
    daemon_.Signal(SIGTERM);
    std::optional<int> status = daemon_.WaitExit(Millis(15'000));
    load.Join();
    ASSERT_TRUE(status.has_value()) << "no exit within 15 s of SIGTERM";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeWaitStatus(*status) << "\n" << daemon_.StderrText();
    acked = load.acked();
    EXPECT_EQ(load.protocol_errors(), 0u);
  }
  ASSERT_GT(acked.size(), 20u) << "the load barely ran";
  ExpectVerifies();
  // A drain finishes every transaction in DATA and answers it: what is spooled is exactly
  // what was acknowledged.
  EXPECT_EQ(ListedIdSet(), std::set<std::string>(acked.begin(), acked.end()));
}

// The location of a message as `ringmail-spool show` prints it.
struct Location {
  std::string segment;  // "0/000000000001.seg", relative to the spool directory
  uint64_t record_offset = 0;
  uint64_t record_bytes = 0;
};

std::optional<Location> ParseLocation(const std::string& show_output) {
  for (absl::string_view line : absl::StrSplit(show_output, '\n')) {
    // location: 0/000000000001.seg record at 64 (512 bytes), content at ...
    constexpr absl::string_view kPrefix = "location: ";
    if (!absl::ConsumePrefix(&line, kPrefix)) continue;
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
    if (words.size() < 5 || words[1] != "record" || words[2] != "at") return std::nullopt;
    Location at;
    at.segment = std::string(words[0]);
    absl::string_view bytes = words[4];
    absl::ConsumePrefix(&bytes, "(");
    if (!absl::SimpleAtoi(words[3], &at.record_offset) ||
        !absl::SimpleAtoi(bytes, &at.record_bytes)) {
      return std::nullopt;
    }
    return at;
  }
  return std::nullopt;
}

TEST_F(CrashRecoveryTest, TornLastRecordLosesOnlyThatRecord) {
  StartDaemon();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(SendOne(daemon_.port()));
    ASSERT_EQ(ids.back().size(), 32u) << daemon_.StderrText();
  }
  StopDaemon();

  // Tear the newest record: cut its segment file in the middle of it.
  RunResult show = SpoolTool({"show", daemon_.spool_dir(), ids.back()});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  std::optional<Location> at = ParseLocation(show.out);
  ASSERT_TRUE(at.has_value()) << show.out;
  const std::string segment = daemon_.spool_dir() + "/" + at->segment;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {  // it is the last record of its segment
    RunResult other = SpoolTool({"show", daemon_.spool_dir(), ids[i]});
    std::optional<Location> o = ParseLocation(other.out);
    ASSERT_TRUE(o.has_value()) << other.out;
    if (o->segment == at->segment) {
      ASSERT_LT(o->record_offset, at->record_offset);
    }
  }
  ASSERT_GT(at->record_bytes, 16u);
  ASSERT_EQ(truncate(segment.c_str(), static_cast<off_t>(at->record_offset +
                                                          at->record_bytes / 2)),
            0)
      << segment << ": " << strerror(errno);
  RunResult torn = SpoolTool({"verify", daemon_.spool_dir()});
  EXPECT_THAT(torn.out, HasSubstr("torn")) << torn.out;

  StartDaemon();
  std::set<std::string> listed = ListedIdSet();  // read-only: safe beside the daemon
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(listed.count(ids[i]), 1u) << ids[i];
  EXPECT_EQ(listed.count(ids.back()), 0u) << "a torn record was recovered";
  const std::string fresh = SendOne(daemon_.port());
  ASSERT_EQ(fresh.size(), 32u) << daemon_.StderrText();
  StopDaemon();

  ExpectVerifies();
  listed = ListedIdSet();
  EXPECT_EQ(listed.size(), ids.size());  // four old ones and the fresh one
  EXPECT_EQ(listed.count(fresh), 1u);
}

TEST_F(CrashRecoveryTest, GarbageSegmentIsQuarantinedAndTheDaemonStarts) {
  // A message from an earlier life that must survive next to the garbage.
  StartDaemon();
  const std::string before = SendOne(daemon_.port());
  ASSERT_EQ(before.size(), 32u);
  StopDaemon();

  const std::string garbage_path = daemon_.spool_dir() + "/0/000000000900.seg";
  std::string garbage(256 * 1024, '\0');
  std::mt19937_64 rng(20240601);
  for (char& ch : garbage) ch = static_cast<char>(rng());
  ASSERT_TRUE(WriteFile(garbage_path, garbage).ok());

  StartDaemon();
  const std::string stderr_text = daemon_.StderrText();
  EXPECT_THAT(stderr_text, HasSubstr("quarantined"));
  EXPECT_FALSE(std::filesystem::exists(garbage_path)) << "garbage left in place";
  const std::string quarantined = daemon_.spool_dir() + "/quarantine/0-000000000900.seg";
  EXPECT_TRUE(std::filesystem::exists(quarantined)) << stderr_text;
  const std::string after = SendOne(daemon_.port());
  ASSERT_EQ(after.size(), 32u) << stderr_text;
  StopDaemon();

  ExpectVerifies();
  std::set<std::string> listed = ListedIdSet();
  EXPECT_EQ(listed, (std::set<std::string>{before, after}));
  absl::StatusOr<std::string> kept = ReadFile(quarantined);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, garbage) << "quarantine must keep the bytes for a post-mortem";
}

}  // namespace
}  // namespace ringmail::integration
