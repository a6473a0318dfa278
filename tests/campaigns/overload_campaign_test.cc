// The overload campaign (issue #9 item 3) against one ringmaild:
// - a connection flood: max_connections sessions held open (some of them `ringload send`
//   measuring latency), then many more connection attempts; every excess attempt must get
//   "421" promptly and be closed, the held sessions keep their latency, and a probe
//   session gets 250 once the flood is over;
// - slowloris: clients sending one byte every second, never finishing a command line (or a
//   body), must be cut by the configured command_timeout (data_term_timeout) — not kept
//   alive by the trickle;
// - a flood of pipelined garbage (long lines, NULs, binary, unknown and out-of-order
//   commands): sessions are answered with errors and closed after max_errors, and the
//   daemon keeps serving.
// Throughout, the daemon's RSS is sampled from /proc and must stay bounded. The test raises
// its fd limit (the daemon inherits it). Scale: small under ctest, the 20,000
// attempts against max_connections 1,000 with RINGMAIL_CAMPAIGN=full.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <map>
#include <memory>
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
using integration::SmtpClient;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// A non-blocking connect to 127.0.0.1:port; -1 on failure.
int ConnectNonBlocking(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

// Samples the daemon's RSS; keeps the peak.
struct RssWatch {
  const RunningDaemon* daemon = nullptr;
  int64_t first_kib = -1;
  int64_t peak_kib = -1;
  void Sample() {
    int64_t kib = daemon->RssKib();
    if (first_kib < 0) first_kib = kib;
    peak_kib = std::max(peak_kib, kib);
  }
};

// The outcome of connection attempts that expect one greeting line each.
struct FloodResult {
  uint64_t attempts = 0;
  uint64_t got_421 = 0;
  uint64_t got_220 = 0;
  uint64_t closed_silently = 0;  // EOF or reset before a whole line
  uint64_t timed_out = 0;
  uint64_t connect_failed = 0;
  std::vector<int64_t> latency_ms;  // connect start → 421 line
  int64_t Percentile(double p) const {
    if (latency_ms.empty()) return 0;
    std::vector<int64_t> v = latency_ms;
    size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
    return v[i];
  }
};

struct Pending {
  Clock::time_point start;
  std::string line;
};

// Reads what `fd` has; true once the attempt is decided (the fd is then closed).
bool ReadGreeting(int fd, Pending& p, FloodResult& r) {
  char buf[512];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      p.line.append(buf, static_cast<size_t>(n));
      size_t eol = p.line.find("\r\n");
      if (eol == std::string::npos && p.line.size() < 1024) continue;
      if (p.line.rfind("421", 0) == 0) {
        ++r.got_421;
        r.latency_ms.push_back(MsSince(p.start));
      } else if (p.line.rfind("220", 0) == 0) {
        ++r.got_220;
      } else {
        ++r.closed_silently;
      }
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    ++r.closed_silently;
    return true;
  }
}

// `attempts` connections, at most `window` at once; each waits up to `timeout` for its
// first line. `tick` runs every ~50 ms (RSS sampling).
FloodResult Flood(uint16_t port, uint64_t attempts, size_t window, Millis timeout,
                  const std::function<void()>& tick) {
  FloodResult r;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::map<int, Pending> pending;
  Clock::time_point last_tick = Clock::now();
  auto finish = [&](int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    pending.erase(fd);
  };
  while (r.attempts < attempts || !pending.empty()) {
    while (r.attempts < attempts && pending.size() < window) {
      ++r.attempts;
      int fd = ConnectNonBlocking(port);
      if (fd < 0) {
        ++r.connect_failed;
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.fd = fd;
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      pending[fd] = Pending{Clock::now(), ""};
    }
    epoll_event events[256];
    int n = epoll_wait(ep, events, 256, 20);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      auto it = pending.find(fd);
      if (it != pending.end() && ReadGreeting(fd, it->second, r)) finish(fd);
    }
    for (auto it = pending.begin(); it != pending.end();) {
      int fd = it->first;
      ++it;
      if (MsSince(pending[fd].start) > timeout.count()) {
        ++r.timed_out;
        finish(fd);
      }
    }
    if (MsSince(last_tick) >= 50) {
      tick();
      last_tick = Clock::now();
    }
  }
  close(ep);
  return r;
}

class OverloadCampaign : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& p : {integration::RingmaildPath(), integration::RingloadPath()}) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p << " is not built";
    }
    std::filesystem::create_directories(daemon_.root());
    fd_limit_ = RaiseFdLimit(65'536);
    watch_.daemon = &daemon_;
  }

  void StartDaemon(const std::string& esmtp_extra, int max_connections) {
    DaemonConfig c;
    c.relay_domains = "( \"local.test\" )";
    c.esmtp_extra = absl::StrCat("  max_connections = ", max_connections,
                                 "\n  max_connections_per_ip = ", max_connections, "\n",
                                 esmtp_extra);
    absl::Status s = daemon_.Start(c, Millis(30'000));
    ASSERT_TRUE(s.ok()) << s << "\n" << daemon_.StderrText();
    watch_.Sample();
  }

  // Every test ends with a clean stop: exit 0 (under the sanitizers a report at exit fails).
  void TearDown() override {
    if (!daemon_.running()) return;
    absl::StatusOr<int> stopped = daemon_.Stop(Millis(30'000));
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0)
        << integration::DescribeWaitStatus(*stopped) << "\n" << daemon_.StderrText();
  }

  // A whole transaction on a fresh session: 250 expected.
  int ProbeCode() {
    SmtpClient c;
    if (!c.Connect(daemon_.port()).ok() || !c.Hello()) return 0;
    if (c.Command("MAIL FROM:<probe@client.test>").code != 250) return 1;
    if (c.Command("RCPT TO:<probe@local.test>").code != 250) return 2;
    if (c.Command("DATA").code != 354) return 3;
    if (!c.Send("Subject: probe\r\n\r\nprobe\r\n.\r\n").ok()) return 4;
    return c.ReadReply(Millis(10'000)).code;
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.Sub("d")};
  RssWatch watch_;
  uint64_t fd_limit_ = 0;
};

std::vector<std::string> LatencyFlags(double seconds) {
  return {"--connections", "8", "--threads", "1", "--size", "1k:70,10k:25,100k:5",
          "--rcpt-template", "user{n}@local.test", "--duration", absl::StrCat(seconds),
          "--max-errors", "0", "--io-timeout", "20"};
}

// Opens `n` sessions and reads their 220; nullptr-free vector of connected clients.
std::vector<std::unique_ptr<SmtpClient>> HoldSessions(uint16_t port, int n) {
  std::vector<std::unique_ptr<SmtpClient>> held;
  for (int i = 0; i < n; ++i) {
    auto c = std::make_unique<SmtpClient>();
    if (!c->Connect(port).ok() || c->ReadReply().code != 220) break;
    held.push_back(std::move(c));
  }
  return held;
}

TEST_F(OverloadCampaign, ConnectionFloodGetsPrompt421AndAcceptedSessionsKeepServing) {
  const int max_connections = static_cast<int>(Scaled("MAX_CONNECTIONS", 200, 1000));
  const uint64_t attempts = static_cast<uint64_t>(Scaled("ATTEMPTS", 2000, 20000));
  constexpr size_t kWindow = 256;
  if (fd_limit_ < static_cast<uint64_t>(max_connections) + kWindow + 256) {
    GTEST_SKIP() << "fd limit " << fd_limit_ << " too low";
  }
  ASSERT_NO_FATAL_FAILURE(StartDaemon("", max_connections));
  const std::string socket = daemon_.root() + "/control.sock";
  SendReport base = RunLoad(daemon_.port(), dir_.Sub("record.base"), LatencyFlags(2),
                            dir_.Sub("base.stderr"), Millis(60'000));
  ASSERT_TRUE(base.finished && base.ok > 0) << base.json;

  // 8 ringload sessions measuring latency, the rest of max_connections held idle.
  LoadRun load;
  ASSERT_TRUE(load.Start(daemon_.port(), dir_.Sub("record.flood"), LatencyFlags(120),
                         dir_.Sub("flood.stderr"))
                  .ok());
  ASSERT_TRUE(PollUntil(Millis(20'000), [&] {
    return Counter(socket, "connections").value_or(0) >= 8;
  }));
  std::vector<std::unique_ptr<SmtpClient>> held =
      HoldSessions(daemon_.port(), max_connections - 8);
  ASSERT_EQ(held.size(), static_cast<size_t>(max_connections - 8));
  FloodResult flood = Flood(daemon_.port(), attempts, kWindow, Millis(10'000),
                            [&] { watch_.Sample(); });
  SendReport during = load.Stop();
  // The held sessions still answer; then they go and a new session is served.
  size_t held_alive = 0;
  const size_t held_sampled = (held.size() + 9) / 10;
  for (size_t i = 0; i < held.size(); i += 10) {
    held_alive += held[i]->Command("NOOP").code == 250 ? 1 : 0;
  }
  held.clear();
  const int probe = ProbeCode();
  watch_.Sample();
  PrintFigures("overload_flood",
               absl::StrCat("max_connections=", max_connections, " attempts=", flood.attempts,
                            " got_421=", flood.got_421, " got_220=", flood.got_220,
                            " silent=", flood.closed_silently, " timed_out=", flood.timed_out,
                            " connect_failed=", flood.connect_failed,
                            " refusal_ms_p50=", flood.Percentile(50),
                            " refusal_ms_p99=", flood.Percentile(99),
                            " refusal_ms_max=", flood.Percentile(100),
                            " latency_ms_p50_before=", base.p50_us / 1000.0,
                            " p50_during=", during.p50_us / 1000.0,
                            " p99_before=", base.p99_us / 1000.0,
                            " p99_during=", during.p99_us / 1000.0,
                            " messages_during=", during.ok, " rss_kib_first=", watch_.first_kib,
                            " rss_kib_peak=", watch_.peak_kib, " probe=", probe));
  EXPECT_EQ(flood.got_421, attempts) << "every excess attempt must be refused with 421";
  EXPECT_EQ(flood.got_220, 0u) << "the limit let sessions in";
  EXPECT_LT(flood.Percentile(99), 2'000) << "421 not prompt";
  EXPECT_TRUE(during.finished) << during.json;
  EXPECT_GT(during.ok, 0u);
  EXPECT_EQ(during.Code("421"), 0u) << "an accepted session was refused: " << during.json;
  // Latency of accepted sessions: the flood shares the machine's two cores with them, so
  // the bound is loose; the figures above are the measurement.
  EXPECT_LT(during.p99_us, std::max<uint64_t>(20 * base.p99_us, 1'000'000)) << during.json;
  EXPECT_EQ(held_alive, held_sampled) << "held sessions stopped answering";
  EXPECT_EQ(probe, 250);
  EXPECT_LT(watch_.peak_kib - watch_.first_kib, 512 * 1024) << "RSS grew without bound";
}

// One slowloris client: trickles `text` one byte per tick from `since`.
struct SlowClient {
  std::unique_ptr<SmtpClient> client;
  bool in_data = false;
  std::string text;
  size_t sent = 0;
  Clock::time_point since;
  int64_t cut_ms = -1;  // when the daemon closed the session, from `since`
};

TEST_F(OverloadCampaign, SlowlorisClientsAreCutAtTheConfiguredTimeouts) {
  const int clients = static_cast<int>(Scaled("SLOWLORIS", 20, 200));
  constexpr int64_t kCommandMs = 3'000, kDataTermMs = 4'000, kSlackMs = 3'000;
  ASSERT_NO_FATAL_FAILURE(StartDaemon(
      "  command_timeout = 3s\n  data_block_timeout = 2s\n  data_term_timeout = 4s\n", 1000));
  std::vector<SlowClient> slow(static_cast<size_t>(clients));
  for (size_t i = 0; i < slow.size(); ++i) {
    SlowClient& s = slow[i];
    s.client = std::make_unique<SmtpClient>();
    ASSERT_TRUE(s.client->Connect(daemon_.port()).ok());
    s.in_data = i % 2 == 1;
    if (s.in_data) {
      ASSERT_TRUE(s.client->Hello());
      ASSERT_EQ(s.client->Command("MAIL FROM:<slow@client.test>").code, 250);
      ASSERT_EQ(s.client->Command("RCPT TO:<slow@local.test>").code, 250);
      ASSERT_EQ(s.client->Command("DATA").code, 354);
      s.text = "Subject: slow\r\n\r\n" + std::string(200, 'y');
    } else {
      ASSERT_EQ(s.client->ReadReply().code, 220);
      s.text = "EHLO " + std::string(200, 'x');
    }
    s.since = Clock::now();
  }
  // One byte per client per second until every session was cut or 20 s passed.
  const Clock::time_point start = Clock::now();
  int probe = 0;
  while (MsSince(start) < 20'000) {
    size_t open = 0;
    for (SlowClient& s : slow) {
      if (s.cut_ms >= 0) continue;
      if (s.client->WaitForClose(Millis(0))) {
        s.cut_ms = MsSince(s.since);
        continue;
      }
      ++open;
      if (s.sent < s.text.size()) (void)s.client->Send(s.text.substr(s.sent++, 1), Millis(100));
    }
    watch_.Sample();
    if (probe == 0 && MsSince(start) > 1'500) probe = ProbeCode();  // served meanwhile
    if (open == 0) break;
    std::this_thread::sleep_for(Millis(1'000));  // the attack's pace, not a synchronisation
  }
  int64_t command_max = 0, data_max = 0;
  size_t never_cut = 0;
  for (const SlowClient& s : slow) {
    if (s.cut_ms < 0) {
      ++never_cut;
      continue;
    }
    int64_t& worst = s.in_data ? data_max : command_max;
    worst = std::max(worst, s.cut_ms);
    EXPECT_GE(s.cut_ms, (s.in_data ? kDataTermMs : kCommandMs) - 1'000)
        << "cut before its timeout";
  }
  PrintFigures("overload_slowloris",
               absl::StrCat("clients=", clients, " never_cut=", never_cut,
                            " command_cut_ms_max=", command_max, " data_cut_ms_max=", data_max,
                            " probe=", probe, " rss_kib_peak=", watch_.peak_kib));
  EXPECT_EQ(never_cut, 0u) << "slowloris sessions kept alive by a trickle";
  EXPECT_LE(command_max, kCommandMs + kSlackMs);
  EXPECT_LE(data_max, kDataTermMs + kSlackMs);
  EXPECT_EQ(probe, 250);
}

// One burst of pipelined garbage: every kind of bad input, `lines` lines in all.
std::string GarbageBurst(std::mt19937_64& rng, int lines, uint64_t* bad_inputs) {
  std::string out;
  std::uniform_int_distribution<int> kind(0, 9);
  for (int i = 0; i < lines; ++i) {
    switch (kind(rng)) {
      case 0: out += std::string(4'000, 'A') + "\r\n"; break;        // over 512 octets
      case 1: out += std::string("NOOP\0\0\0", 7) + "\r\n"; break;  // NUL
      case 2: out += "MAIL FROM:<a@b>\nRCPT TO:<c@d>\n"; break;       // bare LF
      case 3: out += "RCPT TO:<x@local.test>\r\nDATA\r\n"; break;    // out of order
      case 4: out += "BDAT 99999999999999999999 LAST\r\n"; break;
      case 5: out += "XYZZY plugh\r\n"; break;
      case 6: out += "MAIL FROM:<" + std::string(600, 'm') + "@x>\r\n"; break;
      case 7: out += "EHLO \xff\xfe\xfd\r\n"; break;
      case 8: {
        std::string bin(64, '\0');
        for (char& c : bin) c = static_cast<char>(rng());
        out += bin + "\r\n";
        break;
      }
      default: out += "AUTH PLAIN " + std::string(1'000, '=') + "\r\n"; break;
    }
    ++*bad_inputs;
  }
  return out;
}

TEST_F(OverloadCampaign, PipelinedGarbageFloodIsRefusedAndTheDaemonKeepsServing) {
  const int sessions = static_cast<int>(Scaled("GARBAGE_SESSIONS", 100, 2'000));
  constexpr int kThreads = 4;
  const uint64_t seed = CampaignSeed("garbage");
  ASSERT_NO_FATAL_FAILURE(StartDaemon("  command_timeout = 5s\n", 1000));
  std::atomic<uint64_t> bad_inputs{0}, closed{0}, not_closed{0}, bytes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + static_cast<uint64_t>(t));
      for (int i = t; i < sessions; i += kThreads) {
        SmtpClient c;
        if (!c.Connect(daemon_.port()).ok()) continue;
        uint64_t n = 0;
        std::string burst = GarbageBurst(rng, 200, &n);
        bad_inputs += n;
        bytes += burst.size();
        (void)c.Send(burst, Millis(5'000));  // the daemon may close before reading it all
        // Closed by the daemon (max_errors, line limits) well before command_timeout.
        if (c.WaitForClose(Millis(10'000))) {
          ++closed;
        } else {
          ++not_closed;
        }
      }
    });
  }
  int probe_during = 0;
  while (closed + not_closed < static_cast<uint64_t>(sessions)) {
    watch_.Sample();
    if (probe_during == 0) probe_during = ProbeCode();
    std::this_thread::sleep_for(Millis(50));  // the RSS sampling period
  }
  for (std::thread& t : threads) t.join();
  watch_.Sample();
  const int probe_after = ProbeCode();
  PrintFigures("overload_garbage",
               absl::StrCat("seed=", seed, " sessions=", sessions, " bad_inputs=",
                            bad_inputs.load(), " bytes=", bytes.load(), " closed=",
                            closed.load(), " not_closed=", not_closed.load(),
                            " probe_during=", probe_during, " probe_after=", probe_after,
                            " rss_kib_first=", watch_.first_kib,
                            " rss_kib_peak=", watch_.peak_kib));
  EXPECT_EQ(not_closed.load(), 0u) << "garbage sessions were kept open";
  EXPECT_EQ(probe_during, 250);
  EXPECT_EQ(probe_after, 250);
  EXPECT_TRUE(daemon_.running()) << daemon_.StderrText();
  EXPECT_LT(watch_.peak_kib - watch_.first_kib, 256 * 1024) << "RSS grew without bound";
}

}  // namespace
}  // namespace ringmail::campaigns
