// ringmaild as a service: the sd_notify sequence systemd sees (READY after the listeners,
// RELOADING/READY around every reload from ringctl or SIGHUP, STOPPING at the end), the drop
// from root to `user` (checked in /proc/PID/status, with mail still accepted and spooled),
// the refusal of a `user` that a non-root daemon cannot become, and the start-up permission
// checks: no world-writable (or foreign-group-writable) spool, a 0600 control socket,
// relay_hosts loopback-only by default, no HTTP injection listener without auth_token.
//
// The test plays the service manager: it binds its own NOTIFY_SOCKET datagram socket and
// passes it in the daemon's environment. Every wait is bounded (poll with a deadline).
// The privilege tests need root (CI runs the suite as root) and skip otherwise.
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
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
using ::testing::Not;

constexpr Millis kBound(20'000);

// The service manager's end of $NOTIFY_SOCKET: a datagram socket that learns each sender's
// pid (SO_PASSCRED), as systemd does to accept only the main process.
class NotifyReceiver {
 public:
  struct Notification {
    std::string text;
    pid_t pid = 0;
  };
  ~NotifyReceiver() {
    if (fd_ >= 0) close(fd_);
  }
  // `address`: "@name" (abstract) or an absolute path.
  absl::Status Bind(const std::string& address) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return absl::UnavailableError("socket");
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, address.data(), address.size());
    if (address[0] == '@') addr.sun_path[0] = '\0';
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      return absl::UnavailableError(absl::StrCat("bind ", address, ": ", strerror(errno)));
    }
    address_ = address;
    return absl::OkStatus();
  }
  const std::string& address() const { return address_; }

  std::optional<Notification> Next(Millis timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd_, &msg, 0);
    if (n < 0) return std::nullopt;
    Notification out;
    out.text.assign(buf, static_cast<size_t>(n));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred;
        std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
        out.pid = cred.pid;
      }
    }
    return out;
  }

 private:
  int fd_ = -1;
  std::string address_;
};

// The value of `key` in a notification ("READY" → "1"), or nullopt.
std::optional<std::string> Field(const std::string& text, std::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, absl::StrCat(ToAbsl(key), "="))) return std::string(line);
  }
  return std::nullopt;
}

uint64_t MonotonicMicros() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// Sets NOTIFY_SOCKET for the daemons started while it lives (they inherit the environment).
class ScopedNotifyEnv {
 public:
  explicit ScopedNotifyEnv(const std::string& value) {
    setenv("NOTIFY_SOCKET", value.c_str(), 1);
  }
  ~ScopedNotifyEnv() { unsetenv("NOTIFY_SOCKET"); }
};

std::string UniqueAbstractName() {
  static std::atomic<int> n{0};
  return absl::StrCat("@ringmail-it-notify-", getpid(), "-", n++);
}

// One message through a raw SMTP session; returns its queue id (empty on failure).
std::string SendOne(uint16_t port, const std::string& rcpt = "user@local.test") {
  SmtpClient c;
  if (!c.Connect(port).ok() || !c.Hello()) return "";
  if (c.Command("MAIL FROM:<sender@example.org>").code != 250) return "";
  if (c.Command(absl::StrCat("RCPT TO:<", rcpt, ">")).code != 250) return "";
  if (c.Command("DATA").code != 354) return "";
  SmtpClient::Reply r = c.Command("Subject: service test\r\n\r\nhello\r\n.");
  return r.code == 250 ? QueuedId(r.last()) : "";
}

RunResult Ringctl(const std::string& socket, std::vector<std::string> args) {
  args.insert(args.begin(), {RingctlPath(), "--socket", socket});
  return RunProgram(args, kBound);
}

// "Uid:" / "Gid:" / "Groups:" values from /proc/PID/status.
std::string ProcStatusField(pid_t pid, std::string_view field) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, absl::StrCat(ToAbsl(field), ":"))) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

// An unprivileged account to drop to: "nobody", else the first non-root passwd entry.
std::optional<passwd> UnprivilegedUser() {
  if (passwd* pw = getpwnam("nobody"); pw != nullptr && pw->pw_uid != 0) return *pw;
  setpwent();
  while (passwd* pw = getpwent()) {
    if (pw->pw_uid != 0 && pw->pw_gid != 0) {
      passwd copy = *pw;
      endpwent();
      return copy;
    }
  }
  endpwent();
  return std::nullopt;
}

class ServiceDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const std::string& p : {RingmaildPath(), RingctlPath(), SpoolToolPath()}) {
      ASSERT_TRUE(std::filesystem::exists(p)) << p << " is not built";
    }
    std::filesystem::create_directories(daemon_.root());
  }
  std::string Socket() const { return daemon_.root() + "/control.sock"; }

  // Reads notifications until one has `key` (skipping none: the sequence is checked).
  NotifyReceiver::Notification Expect(NotifyReceiver& rx, std::string_view key) {
    std::optional<NotifyReceiver::Notification> n = rx.Next(kBound);
    EXPECT_TRUE(n.has_value()) << "no notification (expected " << key << ")";
    if (!n.has_value()) return {};
    EXPECT_EQ(Field(n->text, key), "1") << "expected " << key << "=1 in: " << n->text;
    EXPECT_EQ(n->pid, daemon_.pid()) << "sent by another process";
    return *n;
  }

  ScratchDir dir_;
  RunningDaemon daemon_{dir_.Sub("d")};
};

TEST_F(ServiceDaemonTest, NotifySequenceAcrossStartReloadsAndStop) {
  NotifyReceiver rx;
  ASSERT_TRUE(rx.Bind(UniqueAbstractName()).ok());
  DaemonConfig config;
  {
    ScopedNotifyEnv env(rx.address());
    absl::Status s = daemon_.Start(config);
    ASSERT_TRUE(s.ok()) << s;
  }
  // READY=1 comes once the listeners (and the control socket) are up: ringctl answers now.
  NotifyReceiver::Notification ready = Expect(rx, "READY");
  EXPECT_THAT(Field(ready.text, "STATUS").value_or(""), HasSubstr("generation 1"));
  EXPECT_FALSE(SendOne(daemon_.port()).empty());

  // ringctl config reload: RELOADING=1 with a current MONOTONIC_USEC, then READY=1.
  const uint64_t before_us = MonotonicMicros();
  RunResult r = Ringctl(Socket(), {"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  NotifyReceiver::Notification reloading = Expect(rx, "RELOADING");
  uint64_t usec = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Field(reloading.text, "MONOTONIC_USEC").value_or(""), &usec))
      << reloading.text;
  EXPECT_GE(usec, before_us);
  EXPECT_LE(usec, MonotonicMicros());
  EXPECT_THAT(Field(Expect(rx, "READY").text, "STATUS").value_or(""),
              HasSubstr("generation 2"));

  // A refused reload is still bracketed, and READY names the generation still running.
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config) + "no_such_key = 1\n")
                  .ok());
  r = Ringctl(Socket(), {"config", "reload"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  Expect(rx, "RELOADING");
  EXPECT_THAT(Field(Expect(rx, "READY").text, "STATUS").value_or(""),
              HasSubstr("generation 2"));

  // SIGHUP: the same sequence.
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config)).ok());
  daemon_.Signal(SIGHUP);
  Expect(rx, "RELOADING");
  EXPECT_THAT(Field(Expect(rx, "READY").text, "STATUS").value_or(""),
              HasSubstr("generation 3"));

  // SIGTERM: STOPPING=1 before the exit.
  daemon_.Signal(SIGTERM);
  Expect(rx, "STOPPING");
  std::optional<int> status = daemon_.WaitExit(kBound);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(DescribeWaitStatus(*status), "exit 0");
}

// Files of 60,000 Domain scopes each (~3 MB), to include: what keeps an IO worker busy for
// a second or more reading and checking them. (A FIFO named as a TLS file used to hold the
// worker for as long as a test liked; such files are refused at once since session 12.)
std::string BigDomainIncludes(const ScratchDir& dir, int files) {
  std::string includes;
  for (int f = 0; f < files; ++f) {
    std::string text;
    for (int i = 0; i < 60'000; ++i) {
      absl::StrAppend(&text, "Domain \"d", f, "-", i,
                      ".test\" { routes = \"[127.0.0.1]:9\" }\n");
    }
    const std::string path = dir.Sub(absl::StrCat("domains", f, ".conf"));
    EXPECT_TRUE(WriteFile(path, text).ok());
    absl::StrAppend(&includes, "include \"", path, "\"\n");
  }
  return includes;
}

// The IO pool's state, from `ringctl --json threadpool list`: whether `field` is `value`.
bool IoPoolHas(const std::string& socket, const std::string& field, int value) {
  return absl::StrContains(Ringctl(socket, {"--json", "threadpool", "list"}).out,
                           absl::StrCat("\"name\":\"IO\",", field, value));
}

// A reload reads and builds on an IO pool worker, never on the master loop: while a reload
// of a large configuration runs (RELOADING sent, no READY yet), the master still answers
// the control socket; READY follows when the reload ends.
TEST_F(ServiceDaemonTest, AReloadAtWorkLeavesTheMasterLoopAnswering) {
  NotifyReceiver rx;
  ASSERT_TRUE(rx.Bind(UniqueAbstractName()).ok());
  DaemonConfig config;
  config.global_extra = BigDomainIncludes(dir_, 2);
  {
    ScopedNotifyEnv env(rx.address());
    absl::Status s = daemon_.Start(config, Millis(60'000));
    ASSERT_TRUE(s.ok()) << s;
  }
  Expect(rx, "READY");

  RunResult reload;
  std::atomic<bool> reloaded{false};
  std::thread reloader([&] {
    reload = Ringctl(Socket(), {"config", "reload"});
    reloaded = true;
  });
  Expect(rx, "RELOADING");
  RunResult summary = Ringctl(Socket(), {"summary"});
  EXPECT_FALSE(summary.timed_out) << "the master loop is blocked by the reload";
  EXPECT_EQ(summary.exit_code, 0) << summary.out << summary.err;
  EXPECT_THAT(summary.out, HasSubstr("config generation"));
  // Answered while the reload was still at work on its worker.
  EXPECT_FALSE(reloaded.load()) << "the reload ended before the master was asked";
  reloader.join();
  EXPECT_EQ(reload.exit_code, 0) << reload.out << reload.err;
  EXPECT_THAT(Field(Expect(rx, "READY").text, "STATUS").value_or(""),
              HasSubstr("generation 2"));
}

// The IO pool full: a request that needs it is answered "busy" at once by the master,
// neither queued without bound nor read on the master. One worker and a backlog of one: a
// check of a large configuration holds the worker, a second waits in the backlog, and a
// third request finds the pool full; the first two are answered in the end.
TEST_F(ServiceDaemonTest, AFullIoPoolAnswersBusyAndTheMasterKeepsServing) {
  DaemonConfig config;
  config.global_extra = "ThreadPool \"IO\" { Concurrency = 1  Backlog = 1 }\n";
  absl::Status started = daemon_.Start(config);
  ASSERT_TRUE(started.ok()) << started;
  DaemonConfig big = config;
  big.global_extra += BigDomainIncludes(dir_, 2);
  const std::string big_path = dir_.Sub("big.conf");
  ASSERT_TRUE(WriteFile(big_path, daemon_.ConfigText(big)).ok());

  RunResult first, second;
  std::atomic<bool> first_done{false}, second_done{false};
  std::thread first_checker([&] {
    first = Ringctl(Socket(), {"config", "check", big_path});
    first_done = true;
  });
  ASSERT_TRUE(PollUntil(kBound, [&] {
    return IoPoolHas(Socket(), "\"concurrency\":1,\"busy\":", 1);
  }));
  std::thread second_checker([&] {
    second = Ringctl(Socket(), {"config", "check", big_path});
    second_done = true;
  });
  EXPECT_TRUE(PollUntil(kBound, [&] {
    return IoPoolHas(Socket(), "\"concurrency\":1,\"busy\":1,\"queued\":", 1);
  })) << "the second check never waited in the IO pool's backlog: "
      << Ringctl(Socket(), {"threadpool", "list"}).out;

  RunResult busy = Ringctl(Socket(), {"config", "check", daemon_.config_path()});
  EXPECT_FALSE(busy.timed_out);
  EXPECT_EQ(busy.exit_code, 1) << busy.out << busy.err;
  EXPECT_THAT(busy.out + busy.err, HasSubstr("IO thread pool is busy"));
  EXPECT_FALSE(first_done.load() && second_done.load())
      << "both checks ended before the third request: the pool was never full";
  RunResult summary = Ringctl(Socket(), {"summary"});
  EXPECT_EQ(summary.exit_code, 0) << summary.out << summary.err;

  first_checker.join();
  second_checker.join();
  for (const RunResult* r : {&first, &second}) {
    EXPECT_FALSE(r->timed_out);
    EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
    EXPECT_THAT(r->out, HasSubstr("configuration OK"));
  }
}

// The CPUs each thread of `pid` may run on (/proc/PID/task/*/status Cpus_allowed_list), by
// thread name.
std::vector<std::pair<std::string, std::string>> ThreadCpus(pid_t pid) {
  std::vector<std::pair<std::string, std::string>> out;
  std::error_code ec;
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  for (const auto& e : std::filesystem::directory_iterator(tasks, ec)) {
    absl::StatusOr<std::string> status = ReadFile(e.path().string() + "/status");
    if (!status.ok()) continue;
    std::string name, cpus;
    for (absl::string_view line : absl::StrSplit(*status, '\n')) {
      if (absl::ConsumePrefix(&line, "Name:")) name = std::string(absl::StripAsciiWhitespace(line));
      if (absl::ConsumePrefix(&line, "Cpus_allowed_list:")) {
        cpus = std::string(absl::StripAsciiWhitespace(line));
      }
    }
    out.emplace_back(name, cpus);
  }
  return out;
}

// pin_event_loops: by default every loop is on one CPU (`eventloop list` names it, and the
// thread's affinity says so); `pin_event_loops = false` leaves every thread on all CPUs.
TEST_F(ServiceDaemonTest, PinEventLoopsFalseLeavesLoopsToTheScheduler) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "one CPU: pinned looks like unpinned";
  const std::string all_cpus = ThreadCpus(getpid()).front().second;
  DaemonConfig config;
  ASSERT_TRUE(daemon_.Start(config).ok()) << daemon_.StderrText();
  RunResult pinned = Ringctl(Socket(), {"--json", "eventloop", "list"});
  ASSERT_EQ(pinned.exit_code, 0) << pinned.err;
  EXPECT_THAT(pinned.out, HasSubstr("\"cpu\":0"));
  EXPECT_THAT(pinned.out, Not(HasSubstr("\"cpu\":-1")));
  std::vector<std::pair<std::string, std::string>> threads = ThreadCpus(daemon_.pid());
  EXPECT_TRUE(std::any_of(threads.begin(), threads.end(), [&](const auto& t) {
    return t.second != all_cpus;
  })) << "no thread of the daemon is pinned";
  ASSERT_TRUE(daemon_.Stop().ok());

  config.global_extra = "pin_event_loops = false\n";
  ASSERT_TRUE(daemon_.Start(config).ok()) << daemon_.StderrText();
  RunResult unpinned = Ringctl(Socket(), {"--json", "eventloop", "list"});
  ASSERT_EQ(unpinned.exit_code, 0) << unpinned.err;
  EXPECT_THAT(unpinned.out, HasSubstr("\"cpu\":-1"));
  EXPECT_THAT(unpinned.out, Not(HasSubstr("\"cpu\":0")));
  EXPECT_FALSE(SendOne(daemon_.port()).empty());
  for (const auto& [name, cpus] : ThreadCpus(daemon_.pid())) {
    EXPECT_EQ(cpus, all_cpus) << "thread " << name;
  }
}

TEST_F(ServiceDaemonTest, UnusableNotifySocketIsAWarningNotAFailure) {
  absl::Status s;
  {
    ScopedNotifyEnv env("relative/path");
    s = daemon_.Start(DaemonConfig{});
  }
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(daemon_.StderrText(), HasSubstr("sd_notify disabled"));
  EXPECT_FALSE(SendOne(daemon_.port()).empty());
  absl::StatusOr<int> stopped = daemon_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(DescribeWaitStatus(*stopped), "exit 0");
}

TEST_F(ServiceDaemonTest, RootDropsToUserAfterBindingAndStillSpoolsMail) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (the CI suite runs as root)";
  std::optional<passwd> user = UnprivilegedUser();
  if (!user.has_value()) GTEST_SKIP() << "no unprivileged user in /etc/passwd";
  // The user must be able to reach its directories by path (segments roll over, logs
  // reopen): the scratch directory is 0700 root by default.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  NotifyReceiver rx;
  ASSERT_TRUE(rx.Bind(dir_.Sub("notify.sock")).ok());  // a path socket this time
  DaemonConfig config;
  config.global_extra = absl::StrCat("user = \"", user->pw_name, "\"\n");
  {
    ScopedNotifyEnv env(rx.address());
    absl::Status s = daemon_.Start(config);
    ASSERT_TRUE(s.ok()) << s;
  }
  Expect(rx, "READY");  // sent after the drop
  const std::string uid = absl::StrCat(user->pw_uid);
  const std::string gid = absl::StrCat(user->pw_gid);
  EXPECT_EQ(ProcStatusField(daemon_.pid(), "Uid"),
            absl::StrCat(uid, "\t", uid, "\t", uid, "\t", uid));
  EXPECT_EQ(ProcStatusField(daemon_.pid(), "Gid"),
            absl::StrCat(gid, "\t", gid, "\t", gid, "\t", gid));
  EXPECT_EQ(ProcStatusField(daemon_.pid(), "Groups"), gid);
  EXPECT_EQ(ProcStatusField(daemon_.pid(), "CapEff"), "0000000000000000");
  EXPECT_THAT(daemon_.StderrText(), HasSubstr(absl::StrCat("running as ", user->pw_name)));

  // Its files are its own; the control socket stays 0600.
  struct stat st;
  for (const std::string& p : {daemon_.spool_dir(), daemon_.log_dir(), Socket(),
                               daemon_.log_dir() + "/reception.log"}) {
    ASSERT_EQ(stat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_uid, user->pw_uid) << p;
  }
  ASSERT_EQ(stat(Socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Mail is still accepted and made durable; the control socket still answers (root).
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(SendOne(daemon_.port()));
  for (const std::string& id : ids) EXPECT_EQ(id.size(), 32u);
  RunResult r = Ringctl(Socket(), {"summary"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A reload as the user works (the config file is world-readable here).
  r = Ringctl(Socket(), {"config", "reload"});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  absl::StatusOr<int> stopped = daemon_.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(DescribeWaitStatus(*stopped), "exit 0");
  r = RunProgram({SpoolToolPath(), "list", daemon_.spool_dir()}, kBound);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> listed = ListedIds(r.out);
  for (const std::string& id : ids) {
    EXPECT_NE(std::find(listed.begin(), listed.end(), id), listed.end()) << id;
  }
}

TEST_F(ServiceDaemonTest, NonRootCannotBecomeAnotherUser) {
  DaemonConfig config;
  config.global_extra = "user = \"root\"\n";
  std::vector<std::string> argv = {RingmaildPath(), "--config", daemon_.config_path()};
  if (geteuid() == 0) {
    // Play the non-root operator: start it as nobody (setpriv, util-linux).
    std::optional<passwd> user = UnprivilegedUser();
    std::string setpriv = FindProgram({"setpriv"});
    if (!user.has_value() || setpriv.empty()) GTEST_SKIP() << "no setpriv or no user";
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    argv.insert(argv.begin(), {setpriv, absl::StrCat("--reuid=", user->pw_uid),
                               absl::StrCat("--regid=", user->pw_gid), "--clear-groups"});
  }
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config)).ok());
  RunResult r = RunProgram(argv, kBound);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("user = \"root\": ringmaild runs as"));
  EXPECT_THAT(r.err, HasSubstr("not root, so it cannot switch to root"));
  EXPECT_THAT(r.out, Not(HasSubstr("ready esmtp=")));

  config.global_extra = "user = \"no-such-user-ringmail\"\n";
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config)).ok());
  r = RunProgram(argv, kBound);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no-such-user-ringmail\": no such user"));
}

// The error is one line naming the spool and the fix, and nothing was started.
void ExpectRefusedWithOneLine(const RunResult& r, const std::string& what) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("ready esmtp=")));
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(r.err, '\n', absl::SkipEmpty())) {
    if (absl::StrContains(l, what)) lines.emplace_back(l);
  }
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_THAT(lines[0], HasSubstr("ringmaild: spool directory "));
  EXPECT_THAT(lines[0], HasSubstr("refusing to start"));
}

TEST_F(ServiceDaemonTest, WorldWritableSpoolIsRefused) {
  DaemonConfig config;
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config)).ok());
  std::filesystem::create_directories(daemon_.spool_dir());
  ASSERT_EQ(chmod(daemon_.spool_dir().c_str(), 0777), 0);
  RunResult r = RunProgram({RingmaildPath(), "--config", daemon_.config_path()}, kBound);
  ExpectRefusedWithOneLine(r, "world-writable");
  EXPECT_THAT(r.err, HasSubstr("mode 0777"));

  // Sticky does not make it safe either (anyone may still add files).
  ASSERT_EQ(chmod(daemon_.spool_dir().c_str(), 01777), 0);
  ExpectRefusedWithOneLine(
      RunProgram({RingmaildPath(), "--config", daemon_.config_path()}, kBound), "world-writable");

  // Group-writable by the daemon's own group is allowed.
  ASSERT_EQ(chown(daemon_.spool_dir().c_str(), static_cast<uid_t>(-1), getegid()), 0);
  ASSERT_EQ(chmod(daemon_.spool_dir().c_str(), 0770), 0);
  absl::Status s = daemon_.Start(config);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(daemon_.Stop().ok());
}

TEST_F(ServiceDaemonTest, SpoolWritableByAnotherGroupIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the spool to another group";
  std::optional<passwd> user = UnprivilegedUser();
  if (!user.has_value() || user->pw_gid == getegid()) GTEST_SKIP() << "no other group";
  DaemonConfig config;
  ASSERT_TRUE(WriteFile(daemon_.config_path(), daemon_.ConfigText(config)).ok());
  std::filesystem::create_directories(daemon_.spool_dir());
  ASSERT_EQ(chown(daemon_.spool_dir().c_str(), 0, user->pw_gid), 0);
  ASSERT_EQ(chmod(daemon_.spool_dir().c_str(), 0770), 0);
  RunResult r = RunProgram({RingmaildPath(), "--config", daemon_.config_path()}, kBound);
  ExpectRefusedWithOneLine(r, "writable by group");
  // Once the daemon itself runs as that user's group, the same directory is fine.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  config.global_extra = absl::StrCat("user = \"", user->pw_name, "\"\n");
  absl::Status s = daemon_.Start(config);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(daemon_.Stop().ok());
}

TEST_F(ServiceDaemonTest, ControlSocketIsOwnerOnlyAndNoTemporaryDirectoryIsLeft) {
  absl::Status s = daemon_.Start(DaemonConfig{});
  ASSERT_TRUE(s.ok()) << s;
  struct stat st;
  ASSERT_EQ(lstat(Socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  // The private directory it was bound in is gone.
  for (const auto& e : std::filesystem::directory_iterator(daemon_.root())) {
    EXPECT_FALSE(absl::StartsWith(e.path().filename().string(), ".ringmail-")) << e.path();
  }
  ASSERT_TRUE(daemon_.Stop().ok());
}

TEST_F(ServiceDaemonTest, RelayHostsDefaultIsLoopbackOnly) {
  // The harness config with its relay_hosts line removed: the schema default applies.
  DaemonConfig config;
  config.relay_domains = "( )";
  std::string text = daemon_.ConfigText(config);
  const size_t at = text.find("  relay_hosts = ");
  ASSERT_NE(at, std::string::npos);
  text.erase(at, text.find('\n', at) + 1 - at);
  absl::Status s = daemon_.StartWithText(text);
  ASSERT_TRUE(s.ok()) << s;
  RunResult r = Ringctl(Socket(), {"config", "show", "relay_hosts"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ESMTP_Listener.relay_hosts = ( \"127.0.0.0/8\" \"::1/128\" )\n");
  // A loopback client may relay to any domain (no relay_domains at all).
  EXPECT_EQ(SendOne(daemon_.port(), "someone@elsewhere.example").size(), 32u);
  ASSERT_TRUE(daemon_.Stop().ok());
}

TEST_F(ServiceDaemonTest, HttpListenerWithoutAuthTokenIsRefused) {
  DaemonConfig config;
  for (const char* address : {"0.0.0.0:0", "127.0.0.1:0"}) {
    const std::string text = absl::StrCat(daemon_.ConfigText(config),
                                          "HTTP_Listener {\n  Listen \"", address,
                                          "\" { }\n}\n");
    ASSERT_TRUE(WriteFile(daemon_.config_path(), text).ok());
    const int line = static_cast<int>(std::count(text.begin(), text.end(), '\n')) - 2;
    for (bool check : {true, false}) {
      std::vector<std::string> argv = {RingmaildPath(), "--config", daemon_.config_path()};
      if (check) argv.push_back("--check-config");
      RunResult r = RunProgram(argv, kBound);
      EXPECT_EQ(r.exit_code, 1) << address << " " << r.out;
      EXPECT_THAT(r.out, Not(HasSubstr("ready")));
      EXPECT_THAT(r.err, HasSubstr(absl::StrCat(daemon_.config_path(), ":", line, ":")))
          << r.err;
      EXPECT_THAT(r.err, HasSubstr("HTTP_Listener needs auth_token"));
    }
  }
}

}  // namespace
}  // namespace ringmail::integration
