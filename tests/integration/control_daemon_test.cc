// ringctl against the real daemon while it carries mail: live reload under a steady
// `ringload send` stream (lowering max_connections refuses new excess connections with 421
// while every in-flight message is answered exactly once and spooled), thread pool
// concurrency set live and shown by `threadpool list` in both forms, an invalid reload that
// changes nothing and names file:line:col, SIGHUP doing the same as `config reload`,
// `domain suspend` holding a domain's mail at a `ringload sink` until `resume`, and the
// control socket refusing other users and surviving garbage, over-long lines and a client
// that connects and never speaks.
//
// Every wait is bounded: the tests poll `ringctl summary --json` (relay_util's PollUntil) or
// read with poll() deadlines; nothing sleeps to synchronise. Tests that need a second user
// need root (CI runs the suite as root) and skip otherwise.
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"
#include "tests/integration/relay_util.h"

namespace ringmail::integration {
namespace {

using ::testing::HasSubstr;

constexpr Millis kWait(30'000);

// A `ringload send` running in the background, its --json summary read at the end.
class BackgroundLoad {
 public:
  absl::Status Start(uint16_t port, const std::string& record,
                     const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {RingloadPath(), "send", "--target",
                                     absl::StrCat("127.0.0.1:", port), "--json", "--quiet",
                                     "--record", record};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Subprocess::Options options;
    options.stderr_path = record + ".stderr";
    absl::StatusOr<Subprocess> p = Subprocess::Start(argv, options);
    if (!p.ok()) return p.status();
    process_ = *std::move(p);
    return absl::OkStatus();
  }
  // Waits for the exit; the summary JSON (empty when it did not exit 0 in time).
  std::string Finish(Millis timeout) {
    std::string out = process_.ReadAllStdout(timeout);
    std::optional<int> status = process_.Wait(Millis(5'000));
    if (!status.has_value() || DescribeWaitStatus(*status) != "exit 0") {
      ADD_FAILURE() << "ringload: " << (status ? DescribeWaitStatus(*status) : "timed out")
                    << "\n" << out;
      return "";
    }
    return out;
  }

 private:
  Subprocess process_;
};

uint64_t Number(const std::string& json, std::string_view key) {
  uint64_t v = UINT64_MAX;
  std::optional<std::string> s = JsonField(json, key);
  if (!s.has_value() || !absl::SimpleAtoi(*s, &v)) return UINT64_MAX;
  return v;
}

// Queue ids in a `ringload send --record` file ("SEQ <MESSAGE-ID> QUEUE-ID" lines).
std::vector<std::string> RecordedQueueIds(const std::string& path) {
  std::vector<std::string> ids;
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return ids;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.size() == 3) ids.push_back(words[2]);
  }
  return ids;
}

// One control-protocol exchange over a raw Unix socket (for what ringctl never sends).
class RawControlClient {
 public:
  ~RawControlClient() { Close(); }
  // 0 or the connect errno.
  int Connect(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return errno;
    return 0;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  bool Send(std::string_view bytes) {
    return send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // One "OK n\n<body>" / "ERR n\n<body>" frame: {"OK"/"ERR", body}; nullopt on EOF/timeout.
  std::optional<std::pair<std::string, std::string>> ReadFrame(Millis timeout) {
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::vector<std::string> head = absl::StrSplit(buffer_.substr(0, nl), ' ');
        size_t len = 0;
        if (head.size() != 2 || !absl::SimpleAtoi(head[1], &len)) return std::nullopt;
        if (buffer_.size() >= nl + 1 + len) {
          std::pair<std::string, std::string> out{head[0], buffer_.substr(nl + 1, len)};
          buffer_.erase(0, nl + 1 + len);
          return out;
        }
      }
      if (!Fill(timeout)) return std::nullopt;
    }
  }
  // True once the daemon closed the connection (bytes before EOF are dropped).
  bool WaitForClose(Millis timeout) {
    while (Fill(timeout)) buffer_.clear();
    return eof_;
  }

 private:
  bool Fill(Millis timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

class ControlDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& p : {RingmaildPath(), RingctlPath(), RingloadPath(),
                                 SpoolToolPath()}) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p << " is not built";
    }
    std::filesystem::create_directories(daemon_.root());
  }
  std::string Socket() const { return daemon_.root() + "/control.sock"; }
  RunResult Ringctl(std::vector<std::string> args) {
    args.insert(args.begin(), {RingctlPath(), "--socket", Socket()});
    return RunProgram(args, kWait);
  }
  uint64_t Counter(const std::string& key) {
    std::map<std::string, uint64_t> s = Summary(Socket());
    auto it = s.find(key);
    return it == s.end() ? UINT64_MAX : it->second;
  }
  void StartDaemon(const DaemonConfig& config) {
    config_ = config;
    absl::Status s = daemon_.Start(config);
    ASSERT_TRUE(s.ok()) << s << "\n" << daemon_.StderrText();
  }
  // Rewrites the config file with `esmtp_extra` instead of the running one.
  void RewriteEsmtp(const std::string& esmtp_extra, const std::string& tail = "") {
    DaemonConfig c = config_;
    c.esmtp_extra = esmtp_extra;
    ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(c) + tail).ok());
  }
  // The greeting a new connection gets (0: none).
  int GreetingCode() {
    SmtpClient c;
    if (!c.Connect(daemon_.port()).ok()) return 0;
    return c.ReadReply().code;
  }
  std::string ConfigValue(const std::string& key) {
    RunResult r = Ringctl({"config", "show", key});
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (absl::ConsumePrefix(&line, absl::StrCat(key, " = "))) return std::string(line);
    }
    return "";
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.Sub("d")};
  DaemonConfig config_;
};

TEST_F(ControlDaemonTest, ReloadLoweringMaxConnectionsUnderLoadRefusesExcessLosesNothing) {
  DaemonConfig config;
  config.esmtp_extra = "max_connections = 50\n";
  StartDaemon(config);
  const std::string record = dir_.Sub("record.txt");
  BackgroundLoad load;
  ASSERT_TRUE(load.Start(daemon_.port(), record,
                         {"--connections", "8", "--duration", "4", "--size", "2k"})
                  .ok());
  // All eight sessions are open and mail is flowing before the reload.
  ASSERT_TRUE(PollUntil(kWait, [&] {
    return Counter("connections") == 8 && Counter("messages_received") >= 50;
  })) << "connections " << Counter("connections");

  RewriteEsmtp("max_connections = 4\n");
  RunResult r = Ringctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ESMTP_Listener.max_connections: 50 -> 4 (applied)"));
  EXPECT_EQ(ConfigValue("ESMTP_Listener.max_connections"), "4");
  // Eight sessions are open, so every new one is excess: 421, while the eight go on.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(GreetingCode(), 421);
  const uint64_t received_at_reload = Counter("messages_received");

  const std::string summary = load.Finish(kWait);
  ASSERT_FALSE(summary.empty());
  const uint64_t acked = Number(summary, "messages");
  EXPECT_EQ(Number(summary, "errors"), 0u) << summary;
  EXPECT_EQ(Number(summary, "rejected_4xx"), 0u) << summary;
  EXPECT_GT(acked, received_at_reload) << "the stream went on after the reload";

  // Every 250 is one spooled message, and no message was answered twice.
  std::vector<std::string> recorded = RecordedQueueIds(record);
  EXPECT_EQ(recorded.size(), acked);
  std::set<std::string> recorded_set(recorded.begin(), recorded.end());
  EXPECT_EQ(recorded_set.size(), recorded.size()) << "a queue id was acknowledged twice";
  EXPECT_EQ(Counter("messages_received"), acked);
  absl::StatusOr<int> stopped = daemon_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  RunResult list = RunProgram({SpoolToolPath(), "list", daemon_.spool_dir()}, kWait);
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::vector<std::string> spooled = ListedIds(list.out);
  std::set<std::string> spooled_set(spooled.begin(), spooled.end());
  EXPECT_EQ(spooled.size(), spooled_set.size());
  EXPECT_EQ(spooled_set, recorded_set);
}

TEST_F(ControlDaemonTest, ThreadpoolSetUnderLoadShowsInTableAndJson) {
  StartDaemon(DaemonConfig{});
  BackgroundLoad load;
  ASSERT_TRUE(load.Start(daemon_.port(), dir_.Sub("record.txt"),
                         {"--connections", "4", "--duration", "2"})
                  .ok());
  ASSERT_TRUE(PollUntil(kWait, [&] { return Counter("messages_received") >= 20; }));
  RunResult r = Ringctl({"threadpool", "set", "Unlink", "concurrency", "11"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "thread pool Unlink: concurrency 11\n");

  r = Ringctl({"threadpool", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> header;
  std::vector<std::string> unlink;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> cells = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (header.empty()) header = cells;
    if (!cells.empty() && cells[0] == "Unlink") unlink = cells;
  }
  ASSERT_EQ(header.size(), 6u) << r.out;
  EXPECT_EQ(header[1], "concurrency");
  ASSERT_EQ(unlink.size(), 6u) << r.out;
  EXPECT_EQ(unlink[1], "11");

  r = Ringctl({"--json", "threadpool", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("{\"name\":\"Unlink\",\"concurrency\":11,"));

  // An unknown pool or a malformed command is an error with a non-zero exit.
  EXPECT_EQ(Ringctl({"threadpool", "set", "NoSuchPool", "concurrency", "3"}).exit_code, 1);
  EXPECT_EQ(Ringctl({"threadpool", "set", "Unlink", "concurrency", "x"}).exit_code, 1);
  const std::string summary = load.Finish(kWait);
  EXPECT_EQ(Number(summary, "errors"), 0u) << summary;
}

TEST_F(ControlDaemonTest, InvalidReloadKeepsTheOldGenerationAndNamesFileLineColumn) {
  DaemonConfig config;
  config.esmtp_extra = "max_connections = 50\n";
  StartDaemon(config);
  const uint64_t generation = Counter("config_generation");

  // A bad value inside the ESMTP scope: the error points at it.
  RewriteEsmtp("max_connections = 7\n  max_recipients = lots\n");
  absl::StatusOr<std::string> text = ReadFile(daemon_.config_path());
  ASSERT_TRUE(text.ok());
  const size_t at = text->find("max_recipients = lots");
  const int line = 1 + static_cast<int>(std::count(text->begin(), text->begin() + at, '\n'));
  const int col = static_cast<int>(at - text->rfind('\n', at));
  RunResult r = Ringctl({"config", "reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the running configuration is unchanged"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(daemon_.config_path(), ":", line, ":")));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(":", line, ":", col + 17, ":"))) << r.err;

  // An unknown key at the end of the file.
  RewriteEsmtp("max_connections = 7\n", "bogus_key = 1\n");
  text = ReadFile(daemon_.config_path());
  const int last = static_cast<int>(std::count(text->begin(), text->end(), '\n'));
  r = Ringctl({"--json", "config", "reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat(daemon_.config_path(), ":", last, ":1:")));

  // Nothing changed: same generation, old limit, mail still accepted.
  EXPECT_EQ(Counter("config_generation"), generation);
  EXPECT_EQ(ConfigValue("ESMTP_Listener.max_connections"), "50");
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  ASSERT_TRUE(c.Hello());
  EXPECT_EQ(c.Command("MAIL FROM:<a@example.org>").code, 250);
}

// Reloads are prepared off the master loop, one at a time: requests that arrive while one
// runs (ringctl from several shells, SIGHUP from a service manager) share the next one, and
// every request is answered with the generation that runs afterwards.
TEST_F(ControlDaemonTest, ConcurrentReloadsAreAllAnsweredOneAtATime) {
  DaemonConfig config;
  config.esmtp_extra = "max_connections = 50\n";
  StartDaemon(config);
  const uint64_t generation = Counter("config_generation");
  RewriteEsmtp("max_connections = 9\n");
  constexpr int kClients = 4;
  std::vector<RunResult> results(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([this, &results, i] {
      results[i] = Ringctl({"--json", "config", "reload"});
    });
  }
  daemon_.Signal(SIGHUP);
  RunResult check = Ringctl({"config", "check", daemon_.config_path()});
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, HasSubstr("configuration OK"));
  std::set<uint64_t> answered;
  for (const RunResult& r : results) {
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    answered.insert(Number(r.out, "generation"));
  }
  // Each answer names a generation made by a reload that read the file after the request
  // was made; the SIGHUP's reload may still be running, so poll for the last one.
  ASSERT_TRUE(PollUntil(kWait, [&] {
    return Counter("config_generation") >= *answered.rbegin();
  }));
  EXPECT_GT(*answered.begin(), generation);
  EXPECT_LE(Counter("config_generation"), generation + kClients + 1);
  EXPECT_EQ(ConfigValue("ESMTP_Listener.max_connections"), "9");
}

// SIGTERM while reloads wait for their answers (one on an IO worker, one queued behind it):
// the daemon used to abort on its way out ("control listener destroyed with live
// connections": a connection waiting for a reply was never closed), exit status 134. Now the
// waiting clients are told the daemon is stopping, and it exits 0. (Session 12's reload
// audit, F1.)
TEST_F(ControlDaemonTest, StoppingWhileReloadsWaitExitsCleanlyAndTellsTheClients) {
  DaemonConfig config;
  // Enough Domain scopes that a reload keeps an IO worker busy for a while (~1 s).
  for (int i = 0; i < 40'000; ++i) {
    absl::StrAppend(&config.global_extra, "Domain \"d", i, ".test\" { routes = ",
                    "\"[127.0.0.1]:9\" }\n");
  }
  StartDaemon(config);
  RawControlClient first;
  RawControlClient second;
  ASSERT_EQ(first.Connect(Socket()), 0);
  ASSERT_EQ(second.Connect(Socket()), 0);
  ASSERT_TRUE(first.Send("config reload\n"));
  ASSERT_TRUE(second.Send("config reload\n"));
  // The first reload is on its IO worker (the second waits for it): stop now.
  ASSERT_TRUE(PollUntil(kWait, [&] {
    RunResult r = Ringctl({"threadpool", "list"});
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() >= 3 && f[0] == "IO" && f[2] != "0") return true;
    }
    return false;
  }));
  daemon_.Signal(SIGTERM);
  std::optional<int> status = daemon_.WaitExit(Millis(60'000));
  ASSERT_TRUE(status.has_value()) << "the daemon did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "wait status " << *status << "\n" << daemon_.StderrText();
  // The second reload waits behind the first, which was at work when the stop came: it is
  // told. (The first may have finished just before.)
  int told = 0;
  for (RawControlClient* c : {&first, &second}) {
    std::optional<std::pair<std::string, std::string>> frame = c->ReadFrame(kWait);
    if (!frame.has_value() || frame->first == "OK") continue;
    EXPECT_EQ(frame->first, "ERR");
    EXPECT_THAT(frame->second, HasSubstr("ringmaild is stopping")) << frame->second;
    ++told;
  }
  EXPECT_GE(told, 1) << "no waiting client was told the daemon was stopping";
}

// Control_Listener.max_connections is live: a reload that lowers it refuses the next client
// over it (it used to be read at start only, while the reload said "applied").
TEST_F(ControlDaemonTest, ControlMaxConnectionsChangesOnReload) {
  StartDaemon(DaemonConfig{});
  std::string text = daemon_.ConfigText(config_);
  const std::string scope = "Control_Listener {\n";
  ASSERT_NE(text.find(scope), std::string::npos);
  text.replace(text.find(scope), scope.size(), scope + "  max_connections = 2\n");
  ASSERT_TRUE(WriteFile(daemon_.config_path(), text).ok());
  RunResult reload = Ringctl({"config", "reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.out << reload.err;
  EXPECT_THAT(reload.out, HasSubstr("Control_Listener.max_connections: 16 -> 2 (applied)"));
  // Two clients in (each answered), so the next is a third. The reload's own connection
  // may not have been closed yet when they connect: a refused one tries again.
  RawControlClient a;
  RawControlClient b;
  for (RawControlClient* c : {&a, &b}) {
    ASSERT_TRUE(PollUntil(kWait, [&] {
      c->Close();
      if (c->Connect(Socket()) != 0 || !c->Send("summary\n")) return false;
      std::optional<std::pair<std::string, std::string>> frame = c->ReadFrame(kWait);
      return frame.has_value() && frame->first == "OK";
    }));
  }
  RunResult third = Ringctl({"summary"});
  EXPECT_NE(third.exit_code, 0) << third.out;
  EXPECT_THAT(third.err, HasSubstr("too many control clients")) << third.err;
}

// A reload that raises max_processings lets in the transaction already waiting for a slot
// (it used to wait until the slot's holder ended, while later sessions overtook it).
TEST_F(ControlDaemonTest, RaisingMaxProcessingsAdmitsTheTransactionsWaiting) {
  DaemonConfig config;
  config.esmtp_extra = "max_processings = 1\n";
  StartDaemon(config);
  SmtpClient holder, waiting;
  for (SmtpClient* c : {&holder, &waiting}) {
    ASSERT_TRUE(c->Connect(daemon_.port()).ok());
    ASSERT_EQ(c->ReadReply().code, 220);
    ASSERT_EQ(c->Command("EHLO client.test").code, 250);
  }
  ASSERT_EQ(holder.Command("MAIL FROM:<a@client.test>").code, 250);
  ASSERT_TRUE(waiting.Send("MAIL FROM:<b@client.test>\r\n").ok());
  // The daemon has read it and it waits for the slot.
  ASSERT_TRUE(PollUntil(kWait, [&] { return Counter("transactions_waiting") == 1; }));
  pollfd p{waiting.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 0), 0) << "the second MAIL was answered while the slot was taken";
  RewriteEsmtp("max_processings = 10\n");
  RunResult r = Ringctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(waiting.ReadReply().code, 250);  // while the holder still holds its slot
  EXPECT_EQ(holder.Command("RCPT TO:<u@local.test>").code, 250);
}

// A change that needs a restart is reported by every reload until the restart, and
// `config show` gives the value that runs. The first reload used to publish it as if it
// ran: `config show` showed the new value, and the next reload said "no changes".
TEST_F(ControlDaemonTest, ARestartOnlyChangeStaysPendingUntilTheRestart) {
  StartDaemon(DaemonConfig{});
  DaemonConfig changed = config_;
  changed.global_extra += "dns_timeout = 7s\n";
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(changed)).ok());
  for (int i = 0; i < 2; ++i) {  // reported again by the second reload of the same file
    RunResult r = Ringctl({"config", "reload"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("dns_timeout: 5s -> 7s (needs restart)")) << i;
  }
  EXPECT_EQ(Ringctl({"config", "show", "dns_timeout"}).out,
            "dns_timeout = 5s  (needs restart for 7s)\n");
  RunResult json = Ringctl({"--json", "config", "show", "dns_timeout"});
  EXPECT_THAT(json.out, HasSubstr("\"value\":\"5s\",\"live\":false,\"after_restart\":\"7s\""));
  // Back to the running value: nothing pending any more.
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config_)).ok());
  RunResult back = Ringctl({"config", "reload"});
  ASSERT_EQ(back.exit_code, 0) << back.out << back.err;
  EXPECT_THAT(back.out, HasSubstr("no changes"));
  EXPECT_EQ(Ringctl({"config", "show", "dns_timeout"}).out, "dns_timeout = 5s\n");
}

TEST_F(ControlDaemonTest, SighupDoesWhatConfigReloadDoes) {
  DaemonConfig config;
  config.esmtp_extra = "max_connections = 50\n";
  StartDaemon(config);
  const uint64_t generation = Counter("config_generation");
  RewriteEsmtp("max_connections = 2\n");
  daemon_.Signal(SIGHUP);
  ASSERT_TRUE(PollUntil(kWait, [&] { return Counter("config_generation") == generation + 1; }));
  EXPECT_EQ(ConfigValue("ESMTP_Listener.max_connections"), "2");
  EXPECT_THAT(daemon_.StderrText(),
              HasSubstr("ESMTP_Listener.max_connections: 50 -> 2 (applied)"));
  // The new limit is live: two sessions held open, the third is refused.
  SmtpClient a, b;
  ASSERT_TRUE(a.Connect(daemon_.port()).ok());
  ASSERT_EQ(a.ReadReply().code, 220);
  ASSERT_TRUE(b.Connect(daemon_.port()).ok());
  ASSERT_EQ(b.ReadReply().code, 220);
  EXPECT_EQ(GreetingCode(), 421);

  // An invalid file: SIGHUP logs where it is wrong and keeps the running generation.
  RewriteEsmtp("max_connections = 2\n", "bogus_key = 1\n");
  absl::StatusOr<std::string> text = ReadFile(daemon_.config_path());
  const int last = static_cast<int>(std::count(text->begin(), text->end(), '\n'));
  const std::string where = absl::StrCat(daemon_.config_path(), ":", last, ":1:");
  daemon_.Signal(SIGHUP);
  EXPECT_TRUE(PollUntil(kWait, [&] { return absl::StrContains(daemon_.StderrText(), where); }))
      << daemon_.StderrText();
  EXPECT_EQ(Counter("config_generation"), generation + 1);
  EXPECT_EQ(ConfigValue("ESMTP_Listener.max_connections"), "2");
}

// log_level chooses the diagnostics written, from start-up on, and a reload changes it (it
// used to be parsed and ignored: every info line was written whatever it said).
TEST_F(ControlDaemonTest, LogLevelFiltersDiagnosticsAndIsLive) {
  DaemonConfig config;
  config.global_extra = "log_level = warning\n";
  StartDaemon(config);
  EXPECT_THAT(daemon_.StderrText(), ::testing::Not(HasSubstr(" info "))) << daemon_.StderrText();
  config_.global_extra = "log_level = info\n";
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config_)).ok());
  RunResult r = Ringctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("log_level: \"warning\" -> \"info\" (applied)"));
  // The reload's own report is an info line, written once the new level applies.
  EXPECT_TRUE(PollUntil(kWait, [&] {
    return absl::StrContains(daemon_.StderrText(), " info config reload: generation ");
  })) << daemon_.StderrText();
}

TEST_F(ControlDaemonTest, DomainSuspendHoldsItsMailAndResumeReleasesIt) {
  RelaySink sink;
  ASSERT_TRUE(sink.Start(dir_.Sub("dumps"), {}).ok());
  DaemonConfig config;
  config.relay_domains = "( )";
  config.default_route = sink.route();
  config.global_extra = "retry_interval = 1s\nmax_retry_interval = 2s\noutbound_tls = off\n";
  StartDaemon(config);
  // Not a domain: refused, no record made. A domain is normalised as queues are keyed.
  for (const char* junk : {"has space", "", "a/../b", "\xc0\xaf.test"}) {
    RunResult bad = Ringctl({"domain", "suspend", junk});
    EXPECT_NE(bad.exit_code, 0) << junk << ": " << bad.out;
    EXPECT_THAT(bad.out + bad.err, HasSubstr("not a domain")) << junk;
  }
  RunResult empty = Ringctl({"queue", "flush", ""});  // not "flush every queue"
  EXPECT_NE(empty.exit_code, 0) << empty.out;
  EXPECT_THAT(empty.out + empty.err, HasSubstr("not a domain"));
  RunResult r = Ringctl({"domain", "suspend", "Held.TEST."});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "domain held.test suspended\n");

  auto send = [&](const std::string& domain) {
    RunResult s = RunProgram({RingloadPath(), "send", "--target",
                              absl::StrCat("127.0.0.1:", daemon_.port()), "--quiet",
                              "--messages", "10", "--rcpt-template",
                              absl::StrCat("user{n}@", domain)},
                             kWait);
    ASSERT_EQ(s.exit_code, 0) << s.out << s.err;
  };
  send("held.test");  // first: had it not been held, it would arrive first
  send("free.test");
  ASSERT_TRUE(PollUntil(kWait, [&] { return sink.DumpCount() >= 10; }));
  for (const DumpedMessage& m : ReadDumps(sink.dump_dir())) {
    ASSERT_EQ(m.rcpts.size(), 1u);
    EXPECT_TRUE(absl::EndsWith(m.rcpts[0], "@free.test")) << m.rcpts[0];
  }
  r = Ringctl({"--json", "queue", "summary", "held.test"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"domain\":\"held.test\""));
  EXPECT_THAT(r.out, HasSubstr("\"suspended\":true"));
  EXPECT_EQ(Number(r.out, "ready") + Number(r.out, "delayed"), 10u) << r.out;
  EXPECT_EQ(Counter("spool_live_messages"), 10u);

  r = Ringctl({"domain", "resume", "held.test"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "domain held.test resumed\n");
  ASSERT_TRUE(PollUntil(kWait, [&] { return sink.DumpCount() >= 20; }))
      << sink.DumpCount() << " of 20 arrived";
  EXPECT_TRUE(PollUntil(kWait, [&] { return Counter("spool_live_messages") == 0; }));
  size_t held = 0;
  for (const DumpedMessage& m : ReadDumps(sink.dump_dir())) {
    held += absl::EndsWith(m.rcpts.at(0), "@held.test") ? 1 : 0;
  }
  EXPECT_EQ(held, 10u);
  EXPECT_EQ(sink.DumpCount(), 20u);
}

// logrotate's dance: rename the logs, ask for a reopen (ringctl, then SIGUSR1), and the next
// events land in fresh files while the renamed ones stop growing.
TEST_F(ControlDaemonTest, LogReopenAndSigusr1FollowRotatedFiles) {
  StartDaemon(DaemonConfig{});
  const std::string reception = daemon_.log_dir() + "/reception.log";
  const std::string delivery = daemon_.log_dir() + "/delivery.log";
  auto has_line = [](const std::string& path) {
    absl::StatusOr<std::string> text = ReadFile(path);
    return text.ok() && absl::StrContains(*text, "\n");
  };
  auto send_one = [&] {
    SmtpClient c;
    ASSERT_TRUE(c.Connect(daemon_.port()).ok());
    ASSERT_TRUE(c.Hello());
    ASSERT_EQ(c.Command("MAIL FROM:<a@example.org>").code, 250);
    ASSERT_EQ(c.Command("RCPT TO:<b@local.test>").code, 250);
    ASSERT_EQ(c.Command("DATA").code, 354);
    ASSERT_EQ(c.Command("Subject: rotate\r\n\r\nx\r\n.").code, 250);
  };
  for (int round = 0; round < 2; ++round) {
    const std::string suffix = absl::StrCat(".", round + 1);
    std::filesystem::rename(reception, reception + suffix);
    std::filesystem::rename(delivery, delivery + suffix);
    if (round == 0) {
      RunResult r = Ringctl({"log", "reopen"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, "log files reopened\n");
    } else {
      daemon_.Signal(SIGUSR1);
    }
    // Reopen happens on the log writer: the fresh files appear once it has.
    ASSERT_TRUE(PollUntil(kWait, [&] {
      return std::filesystem::exists(reception) && std::filesystem::exists(delivery);
    })) << "round " << round;
    const uintmax_t old_size = std::filesystem::file_size(reception + suffix);
    send_one();
    // The reception line, and the delivery attempt's line (the route refuses: deferred).
    EXPECT_TRUE(PollUntil(kWait, [&] { return has_line(reception) && has_line(delivery); }))
        << "round " << round;
    EXPECT_EQ(std::filesystem::file_size(reception + suffix), old_size);
  }
}

TEST_F(ControlDaemonTest, ControlSocketRefusesOtherUsers) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to play another user";
  passwd* pw = getpwnam("nobody");
  if (pw == nullptr || pw->pw_uid == 0) GTEST_SKIP() << "no user nobody";
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  StartDaemon(DaemonConfig{});
  // Only the socket's own mode may stand in the way: the directories are searchable.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(chmod(daemon_.root().c_str(), 0755), 0);
  struct stat st;
  ASSERT_EQ(stat(Socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string path = Socket();
  // The child becomes nobody and tries; its exit code is the connect errno (0: connected).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(200);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    _exit(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 ? 0 : errno);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), EACCES) << "nobody's connect: " << WEXITSTATUS(status);
  // The owner still gets answers.
  EXPECT_EQ(Ringctl({"summary"}).exit_code, 0);
}

TEST_F(ControlDaemonTest, SurvivesGarbageOverlongLinesAndASilentClient) {
  StartDaemon(DaemonConfig{});
  RawControlClient silent;  // connects and never speaks
  ASSERT_EQ(silent.Connect(Socket()), 0);
  RawControlClient half;  // starts a line and stalls
  ASSERT_EQ(half.Connect(Socket()), 0);
  ASSERT_TRUE(half.Send("summa"));

  // Others get answers meanwhile.
  RunResult r = Ringctl({"--json", "summary"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"config_generation\":1"));

  RawControlClient garbage;
  ASSERT_EQ(garbage.Connect(Socket()), 0);
  ASSERT_TRUE(garbage.Send("\x01\xff\x7f \"unterminated\n"));
  std::optional<std::pair<std::string, std::string>> frame = garbage.ReadFrame(kWait);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->first, "ERR");
  // Words that are not UTF-8 come back escaped (UTF-8 as it is), never as raw bytes.
  ASSERT_TRUE(garbage.Send("no\xff\xc0\xaf caf\xc3\xa9\nsummary --json\n"));
  frame = garbage.ReadFrame(kWait);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->first, "ERR");
  EXPECT_THAT(frame->second, HasSubstr("unknown command 'no\\xff\\xc0\\xaf caf\xc3\xa9'"));
  frame = garbage.ReadFrame(kWait);  // the pipelined request after the bad one
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->first, "OK");
  EXPECT_THAT(frame->second, HasSubstr("\"uptime_s\""));
  // Words after a command that takes none are an error, not ignored: `shutdown --nwo` (a
  // typo of --now) does not drain the daemon, `summary extra` is not a summary.
  for (std::vector<std::string> typo : {std::vector<std::string>{"shutdown", "--nwo"},
                                        {"summary", "extra"}, {"config", "reload", "now"}}) {
    RunResult t = Ringctl(typo);
    EXPECT_NE(t.exit_code, 0) << t.out;
    EXPECT_THAT(t.err, HasSubstr("unknown command")) << t.err;
  }
  EXPECT_TRUE(daemon_.running());

  RawControlClient overlong;
  ASSERT_EQ(overlong.Connect(Socket()), 0);
  // The daemon may answer and close after its limit while the rest is still being sent (a
  // Unix stream socket hands a large write over in pieces): the send may then fail with
  // EPIPE. What matters is the answer, already in our receive buffer, and the close.
  (void)overlong.Send(std::string(64 << 10, 'a'));
  frame = overlong.ReadFrame(kWait);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->first, "ERR");
  EXPECT_THAT(frame->second, HasSubstr("request longer than"));
  EXPECT_TRUE(overlong.WaitForClose(kWait));

  // Still serving, with the silent clients still connected; mail still flows.
  EXPECT_EQ(Ringctl({"threadpool", "list"}).exit_code, 0);
  SmtpClient c;
  ASSERT_TRUE(c.Connect(daemon_.port()).ok());
  EXPECT_TRUE(c.Hello());
  EXPECT_TRUE(daemon_.running());
  absl::StatusOr<int> stopped = daemon_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(DescribeWaitStatus(*stopped), "exit 0");
}

// `config check FILE` with a relative FILE checks the caller's file: ringctl makes it
// absolute against its own working directory. Before, the daemon read FILE from its own
// directory: a broken rel.conf beside the caller was reported "configuration OK" because a
// good rel.conf lay beside the daemon.
TEST_F(ControlDaemonTest, ConfigCheckOfARelativePathReadsTheCallersFile) {
  StartDaemon(DaemonConfig{});
  const std::string here = dir_.Sub("caller");
  std::filesystem::create_directories(here);
  ASSERT_TRUE(WriteFile(here + "/rel.conf", "no_such_key = 1\n").ok());
  ASSERT_TRUE(WriteFile(daemon_.root() + "/rel.conf", "log_level = \"info\"\n").ok());
  RunResult r = RunProgram({"/bin/sh", "-c",
                            absl::StrCat("cd '", here, "' && exec '", RingctlPath(),
                                         "' --socket '", Socket(), "' config check rel.conf")},
                           kWait);
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out + r.err, HasSubstr(here + "/rel.conf"));
  EXPECT_THAT(r.out + r.err, HasSubstr("no_such_key"));
}

}  // namespace
}  // namespace ringmail::integration
