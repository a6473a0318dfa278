// The crash campaign (issue #9 item 1): rounds of ringmaild relaying to a `ringload sink
// --dump` while `ringload send --record` loads it with mixed sizes, each round ended by a
// kill -9 at a random moment (seeded), the daemon restarted on the same spool every time.
// At the end everything is drained to the sink and checked:
// - lost: every Message-ID ringload recorded as answered 250 arrived at the sink — must be 0;
// - duplicates: arrivals beyond the first, at most (Unlink backlog + outbound connections)
//   per crash — the bound delivery/ledger.h derives (a delivery is repeated only if its
//   "delivered" record was not durable; the ledger brakes new deliveries once that backlog
//   reaches the Unlink pool's Backlog, and in-flight deliveries are bounded by the
//   connection limit);
// - `ringmail-spool verify` finds no damaged segment and `list` nothing live after the drain.
//
// Scale: a few rounds under ctest (CI, ASan); RINGMAIL_CAMPAIGN=full runs 50 rounds
// (bench/campaigns.sh crash). The seed is printed; RINGMAIL_CAMPAIGN_SEED replays a run.
// The random pause before each kill is the fault's timing, not synchronisation: every wait
// for a state is a bounded poll.
#include <sys/wait.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/campaigns/campaign_util.h"

namespace ringmail::campaigns {
namespace {

using integration::DaemonConfig;
using integration::PollUntil;
using integration::RunningDaemon;
using integration::ScratchDir;

constexpr int kUnlinkBacklog = 64;

// <spool>/<loop>/<seq>.seg files.
size_t SegmentFiles(const std::string& spool) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(spool, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".seg") ++n;
  }
  return n;
}
constexpr int kOutboundConnections = 4;

class CrashCampaign : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& p : {integration::RingmaildPath(), integration::RingloadPath(),
                                 integration::RingctlPath(), integration::SpoolToolPath()}) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p << " is not built";
    }
    std::filesystem::create_directories(daemon_.root());
  }

  DaemonConfig Config() const {
    DaemonConfig c;
    c.relay_domains = "( )";
    c.global_extra = absl::StrCat(
        "retry_interval = 1s\nmax_retry_interval = 2s\noutbound_tls = off\n",
        "ThreadPool \"Unlink\" { Backlog = ", kUnlinkBacklog, " }\n",
        "Domain \"example.test\" {\n  routes = \"", sink_.route(), "\"\n",
        "  max_outbound_connections = ", kOutboundConnections, "\n}\n");
    return c;
  }

  std::string Socket() const { return daemon_.root() + "/control.sock"; }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.Sub("d")};
  RestartableSink sink_;
};

TEST_F(CrashCampaign, KillDashNineUnderLoadLosesNothing) {
  const int rounds = static_cast<int>(Scaled("ROUNDS", 4, 50));
  const uint64_t seed = CampaignSeed("crash");
  std::mt19937_64 rng(seed);
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
  const DaemonConfig config = Config();

  std::vector<RecordLine> acked;
  uint64_t sent_4xx = 0, killed_at_start = 0;
  for (int round = 0; round < rounds; ++round) {
    absl::Status started = daemon_.Start(config, Millis(60'000));
    ASSERT_TRUE(started.ok()) << "round " << round << ": " << started << "\n"
                              << daemon_.StderrText();
    // One round in six dies right after start-up, while recovered messages are being
    // adopted and dispatched; the others under load.
    bool at_start = std::uniform_int_distribution<int>(0, 5)(rng) == 0;
    // At least one round runs under load: a seed that drew "at start" for every round
    // (1 in 1,296 with 4 rounds; seed 15586973091091329251) had nothing acknowledged to check.
    if (round == rounds - 1 && killed_at_start == static_cast<uint64_t>(round)) at_start = false;
    const std::string record = dir_.Sub(absl::StrCat("record.", round));
    LoadRun load;
    if (!at_start) {
      ASSERT_TRUE(load.Start(daemon_.port(), record,
                             {"--duration", "60", "--connections", "8", "--threads", "1",
                              "--size", "1k:70,10k:25,100k:5", "--rcpt-template",
                              "user{n}@example.test", "--from", "sender@sender.test",
                              "--max-errors", "1000000000", "--io-timeout", "10", "--seed",
                              std::to_string(rng() % 1'000'000 + 1)},
                             record + ".stderr")
                      .ok());
      const int pause_ms = std::uniform_int_distribution<int>(50, 1500)(rng);
      std::this_thread::sleep_for(Millis(pause_ms));
    } else {
      ++killed_at_start;
    }
    daemon_.Crash();
    if (!at_start) {
      SendReport report = load.Stop();
      ASSERT_TRUE(report.finished) << "round " << round << ": ringload did not report\n"
                                   << report.json;
      sent_4xx += report.Code("421") + report.Code("451") + report.Code("452");
      absl::StatusOr<std::vector<RecordLine>> lines = ReadRecord(record);
      ASSERT_TRUE(lines.ok()) << lines.status();
      ASSERT_EQ(lines->size(), report.ok) << "round " << round << ": record vs summary";
      acked.insert(acked.end(), lines->begin(), lines->end());
    }
  }

  // Drain: a last start, until nothing is live and every acknowledged message arrived.
  ASSERT_TRUE(daemon_.Start(config, Millis(60'000)).ok()) << daemon_.StderrText();
  std::map<std::string, int> arrivals;
  auto all_arrived = [&] {
    if (Counter(Socket(), "spool_live_messages").value_or(1) != 0) return false;
    arrivals = ArrivalsByMessageId(dir_.Sub("sink"));
    for (const RecordLine& r : acked) {
      if (arrivals.count(r.message_id) == 0) return false;
    }
    return true;
  };
  const bool drained = PollUntil(Millis(180'000), all_arrived);
  // Drained segments are unlinked: the active one and its spare stay.
  size_t segments = 0;
  const bool unlinked = PollUntil(Millis(20'000), [&] {
    segments = SegmentFiles(daemon_.spool_dir());
    return segments <= 2;
  });
  const uint64_t failed = Counter(Socket(), "recipients_failed").value_or(UINT64_MAX);
  absl::StatusOr<int> stopped = daemon_.Stop(Millis(30'000));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  // Exit 0: under the sanitizers a report (leak, UB) at any clean stop fails here.
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0)
      << integration::DescribeWaitStatus(*stopped) << "\n" << daemon_.StderrText();
  arrivals = ArrivalsByMessageId(dir_.Sub("sink"));

  std::set<std::string> acked_ids;
  for (const RecordLine& r : acked) acked_ids.insert(r.message_id);
  uint64_t lost = 0, duplicates = 0, unknown = 0;
  for (const std::string& id : acked_ids) lost += arrivals.count(id) == 0 ? 1 : 0;
  for (const auto& [id, n] : arrivals) {
    duplicates += static_cast<uint64_t>(n - 1);
    // Messages answered 250 whose reply ringload never read (the kill came between) may
    // arrive without a record line: acknowledged to nobody, so neither lost nor wrong.
    if (acked_ids.count(id) == 0) ++unknown;
  }
  const uint64_t bound = static_cast<uint64_t>(rounds) * (kUnlinkBacklog + kOutboundConnections);
  SpoolCheck spool = CheckSpool(daemon_.spool_dir());
  PrintFigures("crash",
               absl::StrCat("rounds=", rounds, " seed=", seed, " killed_at_start=",
                            killed_at_start, " acknowledged=", acked_ids.size(), " lost=", lost,
                            " duplicates=", duplicates, " duplicate_bound=", bound,
                            " arrived_unrecorded=", unknown, " temp_rejections=", sent_4xx,
                            " spool_verify=", spool.verify_ok ? "OK" : "DAMAGED",
                            " live_after_drain=", spool.live_ids.size(),
                            " segments_after_drain=", segments));

  EXPECT_TRUE(drained) << "the spool did not drain or acknowledged messages are missing";
  EXPECT_TRUE(unlinked) << segments << " segment files stay after the drain";
  EXPECT_EQ(acked_ids.size(), acked.size()) << "ringload recorded a Message-ID twice";
  EXPECT_GT(acked_ids.size(), 0u) << "no message was acknowledged at all";
  EXPECT_EQ(lost, 0u);
  EXPECT_LE(duplicates, bound);
  EXPECT_EQ(failed, 0u);
  EXPECT_TRUE(spool.verify_ok) << spool.verify_output;
  EXPECT_TRUE(spool.live_ids.empty()) << spool.live_ids.size() << " messages stuck, first "
                                      << spool.live_ids.front();
}

}  // namespace
}  // namespace ringmail::campaigns
