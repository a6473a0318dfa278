// The fault campaign (issue #9 item 2): ringmaild relaying under `ringload send --record`
// load while one fault at a time is injected and then cleared:
// - disk full: the spool on a small tmpfs (a private mount namespace; skipped where mounting
//   is not allowed) while the downstream is down, so the spool fills: 452 for the excess;
// - read-only spool: the spool's directories made immutable mid-load (we run as root, which
//   chmod does not stop; see campaign_util.h SetImmutable for why not a read-only mount):
//   new segments and unlinks fail;
// - the downstream sink down for a while, then back on the same port;
// - the DNS server (dnsmasq) down, then back, for an MX-routed domain;
// - the sink answering slower than the daemon's data-termination timeout, then normally.
// Each checks: the daemon never dies, the replies are the right ones (250 or a 4xx the
// client retries, never a 5xx or a dropped session without one), every message answered
// 250 arrives at the sink once the fault clears, the spool drains, verifies and keeps
// nothing live. Faults are injected at bounded, condition-driven points (a counter reached,
// a reply seen), never by sleeping for a state.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <filesystem>
#include <map>
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
using integration::Subprocess;

constexpr Millis kDrainTimeout(120'000);

// "path size" per file under `dir`, for failure messages.
std::string SpoolFiles(const std::string& dir) {
  std::string out;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    absl::StrAppend(&out, e.path().string(), " ", e.file_size(), "\n");
  }
  return out;
}

uint64_t FreeBytes(const std::string& dir) {
  struct statvfs s;
  if (::statvfs(dir.c_str(), &s) != 0) return 0;
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

class FaultCampaign : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& p : {integration::RingmaildPath(), integration::RingloadPath(),
                                 integration::RingctlPath(), integration::SpoolToolPath()}) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p << " is not built";
    }
    std::filesystem::create_directories(daemon_.root());
  }

  void TearDown() override {
    if (daemon_.running()) daemon_.Crash();
    for (const std::string& m : mounts_) (void)Unmount(m);
    // A failed assertion must not leave directories ScratchDir cannot remove.
    for (const std::string& d : immutable_) (void)SetImmutable(d, false);
  }

  DaemonConfig Config(const std::string& extra) const {
    DaemonConfig c;
    c.relay_domains = "( )";
    c.global_extra = absl::StrCat(
        "retry_interval = 1s\nmax_retry_interval = 2s\noutbound_tls = off\n",
        "Domain \"example.test\" {\n  routes = \"", sink_.route(), "\"\n",
        "  max_outbound_connections = 4\n}\n", extra);
    return c;
  }

  void StartDaemon(const DaemonConfig& config) {
    absl::Status s = daemon_.Start(config, Millis(30'000));
    ASSERT_TRUE(s.ok()) << s << "\n" << daemon_.StderrText();
  }

  std::string Socket() const { return daemon_.root() + "/control.sock"; }
  uint64_t Count(const std::string& key) { return Counter(Socket(), key).value_or(UINT64_MAX); }

  std::vector<std::string> LoadFlags(const std::string& domain, const std::string& size) {
    return {"--connections", "4", "--threads", "1", "--size", size, "--rcpt-template",
            "user{n}@" + domain, "--from", "sender@sender.test", "--max-errors", "1000000000",
            "--io-timeout", "20", "--seed", std::to_string(++runs_)};
  }

  // Runs ringload to completion; adds its record to acked_ and its 4xx to temp_replies_;
  // fails the test on a 5xx or an unanswered message.
  SendReport Load(uint64_t messages, const std::string& domain, const std::string& size) {
    std::vector<std::string> flags = LoadFlags(domain, size);
    flags.insert(flags.end(), {"--messages", std::to_string(messages)});
    const std::string record = dir_.Sub(absl::StrCat("record.", runs_));
    SendReport r = RunLoad(daemon_.port(), record, flags, record + ".stderr", Millis(120'000));
    Collect(r, record);
    return r;
  }

  void Collect(const SendReport& r, const std::string& record) {
    EXPECT_TRUE(r.finished) << r.json;
    for (const auto& [code, n] : r.codes) {
      if (code == "250") continue;
      EXPECT_TRUE(code[0] == '4') << n << " messages answered " << code << ": " << r.json;
      temp_replies_[code] += n;
    }
    absl::StatusOr<std::vector<RecordLine>> lines = ReadRecord(record);
    ASSERT_TRUE(lines.ok()) << lines.status();
    EXPECT_EQ(lines->size(), r.ok);
    acked_.insert(acked_.end(), lines->begin(), lines->end());
  }

  // Waits until nothing is live and every acknowledged message is in the sink's dump.
  // Both, not the spool alone: the sink answers 250 before its dump file is written (ringload
  // sink writes it in the background and renames it when complete), so the spool can drain
  // while the sink's last files are still being written. A fault that kills the sink then
  // loses them (left as empty .part files) though the daemon delivered them.
  bool Drained() {
    return PollUntil(kDrainTimeout, [&] {
      if (Count("spool_live_messages") != 0) return false;
      std::map<std::string, int> arrivals = ArrivalsByMessageId(dir_.Sub("sink"));
      for (const RecordLine& r : acked_) {
        if (arrivals.count(r.message_id) == 0) return false;
      }
      return true;
    });
  }

  // Waits until Drained(); stops the daemon (which must exit 0: it never crashed), checks
  // the spool; returns the figures.
  std::string DrainAndCheck() {
    bool drained = Drained();
    EXPECT_TRUE(drained) << "live=" << Count("spool_live_messages")
                         << " deferred=" << Count("recipients_deferred");
    EXPECT_EQ(Count("recipients_failed"), 0u);
    EXPECT_TRUE(daemon_.running()) << "ringmaild died:\n" << daemon_.StderrText();
    absl::StatusOr<int> stopped = daemon_.Stop(Millis(30'000));
    EXPECT_TRUE(stopped.ok() && WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0)
        << daemon_.StderrText();
    std::map<std::string, int> arrivals = ArrivalsByMessageId(dir_.Sub("sink"));
    uint64_t lost = 0, duplicates = 0;
    for (const RecordLine& r : acked_) lost += arrivals.count(r.message_id) == 0 ? 1 : 0;
    for (const auto& [id, n] : arrivals) duplicates += static_cast<uint64_t>(n - 1);
    EXPECT_EQ(lost, 0u);
    SpoolCheck spool = CheckSpool(daemon_.spool_dir());
    EXPECT_TRUE(spool.verify_ok) << spool.verify_output;
    EXPECT_TRUE(spool.live_ids.empty()) << spool.live_ids.size() << " live after the drain";
    std::string temp;
    for (const auto& [code, n] : temp_replies_) absl::StrAppend(&temp, code, "x", n, ",");
    return absl::StrCat("acknowledged=", acked_.size(), " lost=", lost,
                        " duplicates=", duplicates, " temp_replies=",
                        temp.empty() ? "none" : temp,
                        " spool_verify=", spool.verify_ok ? "OK" : "DAMAGED");
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.Sub("d")};
  RestartableSink sink_;
  std::vector<RecordLine> acked_;
  std::map<std::string, uint64_t> temp_replies_;
  std::vector<std::string> mounts_;
  std::vector<std::string> immutable_;
  int runs_ = 0;
};

TEST_F(FaultCampaign, DiskFullAnswers452AndRecoversWhenSpaceReturns) {
  if (absl::Status s = EnterPrivateMountNamespace(); !s.ok()) GTEST_SKIP() << s;
  std::filesystem::create_directories(daemon_.spool_dir());
  if (absl::Status s = MountTmpfs(daemon_.spool_dir(), 8 << 20); !s.ok()) GTEST_SKIP() << s;
  mounts_.push_back(daemon_.spool_dir());
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
  sink_.Kill();  // down: nothing drains, so the 8 MiB spool fills
  ASSERT_NO_FATAL_FAILURE(StartDaemon(Config("")));
  const int64_t messages = Scaled("DISK_FULL_MESSAGES", 300, 2000);
  SendReport full = Load(static_cast<uint64_t>(messages), "example.test", "60k");
  EXPECT_GT(full.Code("452"), 0u) << "the spool never filled: " << full.json;
  EXPECT_GT(full.ok, 0u);
  EXPECT_TRUE(daemon_.running()) << daemon_.StderrText();
  // Space returns: the sink comes back, the spool drains and its segments are unlinked.
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
  ASSERT_TRUE(PollUntil(kDrainTimeout, [&] { return Count("spool_live_messages") == 0; }));
  // The drained segments are removed (unlinked, or one recycled as the next spare) and
  // delivery closes its descriptors on them at once, so the space is back: at most an
  // active segment and a spare per loop stay. (A recycled spare lets the probe below pass
  // before that; the 50 messages after it need fresh segments.)
  const uint64_t free_needed = 4 << 20;
  EXPECT_TRUE(PollUntil(Millis(30'000), [&] {
    return FreeBytes(daemon_.spool_dir()) >= free_needed;
  }))
      << "the drained spool's space never came back: " << FreeBytes(daemon_.spool_dir())
      << " bytes free\n" << SpoolFiles(daemon_.spool_dir());
  EXPECT_GT(integration::MetricSum(integration::Metrics(Socket()),
                                   "ringmail_delivery_segment_files_released_total"), 0)
      << "delivery did not close the removed segments it had open";
  integration::SmtpClient probe;
  std::string last_reply;
  std::string probe_body = "Message-ID: <probe@campaign>\r\n\r\n";
  for (int i = 0; i < 600; ++i) absl::StrAppend(&probe_body, std::string(98, 'p'), "\r\n");
  probe_body += ".\r\n";
  const bool accepting = PollUntil(Millis(30'000), [&] {
    if (!probe.connected() && (!probe.Connect(daemon_.port()).ok() || !probe.Hello())) {
      return false;
    }
    if (probe.Command("MAIL FROM:<probe@sender.test>").code != 250) return false;
    if (probe.Command("RCPT TO:<probe@example.test>").code != 250) return false;
    if (probe.Command("DATA").code != 354) return false;
    if (!probe.Send(probe_body).ok()) return false;
    integration::SmtpClient::Reply reply = probe.ReadReply();
    last_reply = reply.text();
    return reply.code == 250;
  });
  probe.Close();
  EXPECT_TRUE(accepting) << "still refusing 30 s after the spool drained: " << last_reply
                         << "\n" << SpoolFiles(daemon_.spool_dir()) << daemon_.StderrText();
  SendReport after = Load(50, "example.test", "60k");
  EXPECT_EQ(after.Code("250"), 50u) << "not accepting after the disk emptied: " << after.json
                                    << "\n" << SpoolFiles(daemon_.spool_dir());
  PrintFigures("fault_disk_full", absl::StrCat("faults=1 refused_452=", full.Code("452"), " ",
                                               DrainAndCheck()));
}

TEST_F(FaultCampaign, ReadOnlySpoolDefersAndRecoversWhenWritable) {
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
  ASSERT_NO_FATAL_FAILURE(StartDaemon(Config("")));
  const std::string record = dir_.Sub("record.ro");
  LoadRun load;
  std::vector<std::string> flags = LoadFlags("example.test", "1k:70,10k:25,100k:5");
  flags.insert(flags.end(), {"--duration", "60"});
  ASSERT_TRUE(load.Start(daemon_.port(), record, flags, record + ".stderr").ok());
  // Read-only once messages flow: the spool and every loop directory in it (see
  // SetImmutable for why not a read-only mount); writable again once commits failed.
  ASSERT_TRUE(PollUntil(Millis(30'000), [&] { return Count("messages_received") >= 200; }));
  std::vector<std::string> dirs = {daemon_.spool_dir()};
  for (const auto& e : std::filesystem::directory_iterator(daemon_.spool_dir())) {
    if (e.is_directory()) dirs.push_back(e.path().string());
  }
  const uint64_t errors_before = Count("commit_errors");
  for (const std::string& d : dirs) {
    absl::Status s = SetImmutable(d, true);
    immutable_.push_back(d);
    if (!s.ok()) {
      load.Stop();
      GTEST_SKIP() << s;
    }
  }
  const bool refused = PollUntil(Millis(30'000), [&] {
    return Count("commit_errors") > errors_before;
  });
  const uint64_t during = Count("messages_received");
  for (const std::string& d : dirs) ASSERT_TRUE(SetImmutable(d, false).ok());
  immutable_.clear();
  // Accepting again after the spool is writable.
  EXPECT_TRUE(PollUntil(Millis(30'000), [&] {
    return Count("messages_received") >= during + 200;
  })) << "no recovery: received stays " << Count("messages_received");
  SendReport r = load.Stop();
  Collect(r, record);
  EXPECT_TRUE(refused) << "the read-only spool never refused a commit: " << r.json;
  const uint64_t commit_errors = Count("commit_errors");
  PrintFigures("fault_read_only_spool",
               absl::StrCat("faults=1 commit_errors=", commit_errors, " ", DrainAndCheck()));
}

TEST_F(FaultCampaign, SinkDownDefersThenDeliversWhenBack) {
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
  ASSERT_NO_FATAL_FAILURE(StartDaemon(Config("")));
  const int cycles = static_cast<int>(Scaled("SINK_CYCLES", 2, 10));
  for (int i = 0; i < cycles; ++i) {
    sink_.Kill();
    const uint64_t deferred = Count("recipients_deferred");
    SendReport r = Load(100, "example.test", "1k:70,10k:25,100k:5");
    EXPECT_EQ(r.Code("250"), 100u) << "acceptance must not depend on the downstream";
    ASSERT_TRUE(PollUntil(Millis(30'000), [&] {
      return Count("recipients_deferred") > deferred;
    })) << "nothing deferred while the sink was down";
    ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
    // The sink's files too, not just the spool: the next cycle's kill must not cut short
    // the dump of a message it acknowledged (Drained()).
    ASSERT_TRUE(Drained()) << "live=" << Count("spool_live_messages");
  }
  const uint64_t deferred = Count("recipients_deferred");
  PrintFigures("fault_sink_down",
               absl::StrCat("faults=", cycles, " deferred=", deferred, " ", DrainAndCheck()));
}

TEST_F(FaultCampaign, SlowSinkTimesOutThenDeliversAtNormalSpeed) {
  // Slower than the data-termination timeout: every attempt times out and is deferred (the
  // sink may keep a copy it answered too late: a duplicate SMTP itself cannot avoid).
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {"--delay", "2500"}).ok());
  ASSERT_NO_FATAL_FAILURE(StartDaemon(Config("smtp_data_term_timeout = 1s\n")));
  SendReport r = Load(40, "example.test", "1k:70,10k:25,100k:5");
  EXPECT_EQ(r.Code("250"), 40u);
  ASSERT_TRUE(PollUntil(Millis(30'000), [&] { return Count("recipients_deferred") >= 4; }));
  EXPECT_EQ(Count("recipients_delivered"), 0u) << "a reply after the timeout counted";
  // Slow but within the timeout: delivered.
  sink_.Kill();
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {"--delay", "300"}).ok());
  const uint64_t deferred = Count("recipients_deferred");
  PrintFigures("fault_slow_sink",
               absl::StrCat("faults=1 deferred=", deferred, " ", DrainAndCheck()));
}

TEST_F(FaultCampaign, DnsDownDefersThenDeliversWhenBack) {
  const std::string dnsmasq = integration::FindProgram({"/usr/sbin/dnsmasq", "dnsmasq"});
  if (dnsmasq.empty()) GTEST_SKIP() << "dnsmasq not installed";
  ASSERT_TRUE(sink_.Start(dir_.Sub("sink"), {}).ok());
  const uint16_t dns_port = integration::PickFreeUdpPort();
  ASSERT_NE(dns_port, 0);
  auto start_dns = [&]() -> absl::StatusOr<Subprocess> {
    Subprocess::Options options;
    options.stderr_path = dir_.Sub("dnsmasq.stderr");
    options.pipe_stdout = false;
    return Subprocess::Start(
        {dnsmasq, absl::StrCat("--port=", dns_port), "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-daemon",
         "--conf-file=/dev/null", "--local=/test/", "--pid-file=", "--max-ttl=1",
         "--mx-host=mxdomain.test,mxhost.test,10", "--address=/mxhost.test/127.0.0.1"},
        options);
  };
  // The DNS server is down from the start: MX lookups time out and the messages wait.
  ASSERT_NO_FATAL_FAILURE(StartDaemon(Config(absl::StrCat(
      "resolvers = ( \"127.0.0.1:", dns_port, "\" )\ndns_timeout = 1s\n",
      "remote_smtp_port = ", sink_.port(), "\n", "Domain \"mxdomain.test\" { routes = \"\" }\n"))));
  SendReport r = Load(50, "mxdomain.test", "1k:70,10k:25,100k:5");
  EXPECT_EQ(r.Code("250"), 50u);
  ASSERT_TRUE(PollUntil(Millis(30'000), [&] { return Count("recipients_deferred") > 0; }))
      << "nothing deferred while DNS was down";
  EXPECT_EQ(Count("recipients_delivered"), 0u);
  absl::StatusOr<Subprocess> dns = start_dns();
  ASSERT_TRUE(dns.ok()) << dns.status();
  std::string figures = DrainAndCheck();
  EXPECT_TRUE(dns->running()) << integration::ReadFile(dir_.Sub("dnsmasq.stderr")).value_or("");
  dns->Kill();
  PrintFigures("fault_dns_down", absl::StrCat("faults=1 ", figures));
}

}  // namespace
}  // namespace ringmail::campaigns
