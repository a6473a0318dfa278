#include "tests/integration/daemon_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/string_view.h"

namespace ringmail::integration {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kLineBytesMax = 1 << 20;  // a reply line longer than this is garbage

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT32_MAX ? INT32_MAX : static_cast<int>(left);
}

// poll() one fd until `events` or the deadline; EINTR restarts with the time left.
int PollFd(int fd, short events, Clock::time_point deadline, short* revents) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, RemainingMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (revents != nullptr) *revents = p.revents;
    return n;
  }
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// Opens `path` for the child before fork, so the child only dup2()s (async-signal-safe).
int OpenForChild(const std::string& path, int flags) {
  return open(path.empty() ? "/dev/null" : path.c_str(), flags | O_CLOEXEC, 0600);
}

}  // namespace

std::string ToolPath(std::string_view dir, std::string_view name) {
  return absl::StrCat(RINGMAIL_BINARY_DIR, "/tools/", ToAbsl(dir), "/", ToAbsl(name));
}
std::string RingmaildPath() { return ToolPath("ringmaild", "ringmaild"); }
std::string SpoolToolPath() { return ToolPath("spooltool", "ringmail-spool"); }
std::string ClientScriptPath(std::string_view script) {
  return absl::StrCat(RINGMAIL_SOURCE_DIR, "/tests/integration/clients/", ToAbsl(script));
}

std::string TestLicensePath() {
  return absl::StrCat(RINGMAIL_SOURCE_DIR, "/tests/testdata/license/valid.license");
}

std::string FindProgram(const std::vector<std::string>& candidates) {
  for (const std::string& c : candidates) {
    if (c.find('/') != std::string::npos) {
      if (IsExecutable(c)) return c;
      continue;
    }
    for (absl::string_view dir : absl::StrSplit(Env("PATH"), ':', absl::SkipEmpty())) {
      std::string path = absl::StrCat(dir, "/", c);
      if (IsExecutable(path)) return path;
    }
  }
  return "";
}

// ---------------------------------------------------------------------------------------
// Files

ScratchDir::ScratchDir() {
  std::string base = Env("TMPDIR");
  if (base.empty()) base = "/tmp";
  std::string templ = base + "/ringmail-it-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    std::fprintf(stderr, "mkdtemp(%s): %s\n", templ.c_str(), strerror(errno));
    std::abort();  // tests cannot run without scratch space
  }
  path_ = templ;
}

ScratchDir::~ScratchDir() {
  if (!Env("RINGMAIL_KEEP_TEST_DIRS").empty()) {
    std::fprintf(stderr, "kept %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

absl::Status WriteFile(const std::string& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------
// Subprocess

absl::StatusOr<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                             const Options& options) {
  if (argv.empty()) return absl::InvalidArgumentError("empty argv");
  // Everything the child needs is prepared before fork: after it, only async-signal-safe
  // calls (this process has threads).
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int in_fd = OpenForChild(options.stdin_path, O_RDONLY);
  int err_fd = OpenForChild(options.stderr_path, O_WRONLY | O_CREAT | O_APPEND);
  int out_pipe[2] = {-1, -1};
  if (options.pipe_stdout && pipe2(out_pipe, O_CLOEXEC) != 0) out_pipe[0] = out_pipe[1] = -1;
  auto close_all = [&] {
    for (int fd : {in_fd, err_fd, out_pipe[0], out_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
  };
  if (in_fd < 0 || err_fd < 0 || (options.pipe_stdout && out_pipe[0] < 0)) {
    int e = errno;
    close_all();
    return absl::UnavailableError(absl::StrCat("cannot set up child I/O: ", strerror(e)));
  }
  const pid_t parent = getpid();
  const char* dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close_all();
    return absl::UnavailableError(absl::StrCat("fork: ", strerror(e)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // A test process may have signals blocked in some threads; the child starts clean.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int out_fd = options.pipe_stdout ? out_pipe[1] : err_fd;
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) _exit(127);
    if (dir != nullptr && chdir(dir) != 0) _exit(127);
    execv(args[0], args.data());
    _exit(127);
  }
  Subprocess p;
  p.pid_ = pid;
  p.pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (options.pipe_stdout) {
    close(out_pipe[1]);
    out_pipe[1] = -1;
    p.stdout_fd_ = out_pipe[0];
  }
  close(in_fd);
  close(err_fd);
  if (p.pidfd_ < 0) {
    int e = errno;
    p.Kill();
    return absl::UnavailableError(absl::StrCat("pidfd_open: ", strerror(e)));
  }
  return p;
}

Subprocess::Subprocess(Subprocess&& other) noexcept { *this = std::move(other); }

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    Kill();
    Reset();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    stdout_fd_ = std::exchange(other.stdout_fd_, -1);
    stdout_buffer_ = std::move(other.stdout_buffer_);
  }
  return *this;
}

Subprocess::~Subprocess() {
  Kill();
  Reset();
}

void Subprocess::Reset() {
  if (pidfd_ >= 0) close(pidfd_);
  if (stdout_fd_ >= 0) close(stdout_fd_);
  pidfd_ = stdout_fd_ = -1;
}

std::optional<std::string> Subprocess::ReadStdoutLine(Millis timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    size_t nl = stdout_buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = stdout_buffer_.substr(0, nl);
      stdout_buffer_.erase(0, nl + 1);
      return line;
    }
    if (stdout_fd_ < 0 || stdout_buffer_.size() > kLineBytesMax) return std::nullopt;
    if (PollFd(stdout_fd_, POLLIN, deadline, nullptr) <= 0) return std::nullopt;
    char buf[4096];
    ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    stdout_buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::string Subprocess::ReadAllStdout(Millis timeout, size_t max_bytes) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::string out = std::move(stdout_buffer_);
  stdout_buffer_.clear();
  while (stdout_fd_ >= 0 && out.size() < max_bytes) {
    if (PollFd(stdout_fd_, POLLIN, deadline, nullptr) <= 0) break;
    char buf[65536];
    ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::optional<int> Subprocess::Wait(Millis timeout) {
  if (pid_ <= 0) return std::nullopt;
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (r < 0 && errno != EINTR) {  // not our child any more: nothing to reap
      pid_ = -1;
      return std::nullopt;
    }
    if (r == 0 && PollFd(pidfd_, POLLIN, deadline, nullptr) <= 0) {
      // Timed out, unless it exited right at the deadline.
      r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      return std::nullopt;
    }
  }
}

void Subprocess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

void Subprocess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

bool TestLicenseAccepted() {
  ScratchDir dir;
  RunningDaemon daemon(dir.path());
  DaemonConfig config;
  config.esmtp_loops = 2;
  if (!WriteFile(daemon.config_path(), daemon.ConfigText(config)).ok()) return false;
  RunResult r =
      RunProgram({RingmaildPath(), "--check-config", "--config", daemon.config_path()},
                 Millis(20'000));
  return r.exit_code == 0;
}

RunResult RunProgram(const std::vector<std::string>& argv, Millis timeout,
                     const std::string& stdin_text) {
  RunResult result;
  ScratchDir io;
  Subprocess::Options options;
  options.stderr_path = io.Sub("stderr");
  if (!stdin_text.empty()) {
    options.stdin_path = io.Sub("stdin");
    if (!WriteFile(options.stdin_path, stdin_text).ok()) return result;
  }
  absl::StatusOr<Subprocess> p = Subprocess::Start(argv, options);
  if (!p.ok()) {
    result.err = std::string(p.status().message());
    return result;
  }
  const Clock::time_point deadline = Clock::now() + timeout;
  // Drain stdout while it runs so a chatty child never blocks on a full pipe.
  result.out = p->ReadAllStdout(timeout);
  std::optional<int> status = p->Wait(std::chrono::duration_cast<Millis>(
      std::max(deadline - Clock::now(), Clock::duration::zero())));
  if (!status.has_value()) {
    result.timed_out = true;
    p->Kill();
  } else if (WIFEXITED(*status)) {
    result.exit_code = WEXITSTATUS(*status);
  } else if (WIFSIGNALED(*status)) {
    result.signal = WTERMSIG(*status);
  }
  result.err = ReadFile(options.stderr_path).value_or("");
  return result;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("status ", status);
}

// ---------------------------------------------------------------------------------------
// The daemon

RunningDaemon::RunningDaemon(std::string root) : root_(std::move(root)) {
  refused_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  if (refused_fd_ >= 0 && bind(refused_fd_, reinterpret_cast<sockaddr*>(&sin), len) == 0 &&
      getsockname(refused_fd_, reinterpret_cast<sockaddr*>(&sin), &len) == 0) {
    refused_port_ = ntohs(sin.sin_port);
  }
}

RunningDaemon::~RunningDaemon() {
  process_.Kill();
  if (refused_fd_ >= 0) close(refused_fd_);
}

std::string RunningDaemon::ConfigText(const DaemonConfig& c) const {
  std::string loops;
  std::string esmtp_loop;
  if (c.esmtp_loops > 0) {
    loops = absl::StrCat("license = \"", TestLicensePath(), "\"\n", "eventloop \"esmtp\" { ",
                         "concurrency = ", c.esmtp_loops, " }\n");
    esmtp_loop = "  event_loop = \"esmtp\"\n";
  }
  return absl::StrCat(
      "# written by tests/integration/daemon_util\n",
      "spool_dir = \"", spool_dir(), "\"\n",
      "log_dir = \"", log_dir(), "\"\n",
      "hostname = \"mx.test\"\n",
      "spool_segment_size = ", c.spool_segment_size, "\n",
      "default_route = \"",
      c.default_route.empty() ? absl::StrCat("[127.0.0.1]:", refused_port_) : c.default_route,
      "\"\n",
      loops, c.global_extra, "\n",
      "ESMTP_Listener {\n", esmtp_loop,
      "  relay_hosts = ", c.relay_hosts, "\n",
      "  relay_domains = ", c.relay_domains, "\n",
      c.esmtp_extra, "\n",
      "  Listen \"127.0.0.1:0\" { }\n",
      "}\n",
      "Control_Listener {\n",
      "  Listen \"", root_, "/control.sock\" { }\n",
      "}\n");
}

absl::Status RunningDaemon::Start(const DaemonConfig& config, Millis timeout) {
  return StartWithText(ConfigText(config), timeout);
}

absl::Status RunningDaemon::StartWithText(const std::string& config_text, Millis timeout) {
  if (process_.running()) return absl::FailedPreconditionError("daemon already running");
  if (absl::Status s = WriteFile(config_path(), config_text); !s.ok()) return s;
  Subprocess::Options options;
  options.stderr_path = stderr_path();
  options.working_dir = root_;
  absl::StatusOr<Subprocess> p =
      Subprocess::Start({RingmaildPath(), "--config", config_path()}, options);
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  port_ = 0;
  http_port_ = 0;
  // The ready lines come together once everything is up: one per listener, then a bare
  // "ready" that ends them.
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    std::optional<std::string> line = process_.ReadStdoutLine(
        std::chrono::duration_cast<Millis>(
            std::max(deadline - Clock::now(), Clock::duration::zero())));
    if (!line.has_value()) break;
    if (*line == "ready") return absl::OkStatus();
    uint16_t* slot = absl::StartsWith(*line, "ready esmtp=")  ? &port_
                     : absl::StartsWith(*line, "ready http=") ? &http_port_
                                                               : nullptr;
    if (slot == nullptr) continue;
    std::string first = line->substr(line->find('=') + 1);
    first = first.substr(0, first.find(','));
    uint32_t port = 0;
    size_t colon = first.rfind(':');
    if (colon == std::string::npos || !absl::SimpleAtoi(first.substr(colon + 1), &port) ||
        port == 0 || port > 65535) {
      process_.Kill();
      return absl::InternalError(absl::StrCat("bad ready line: ", *line));
    }
    *slot = static_cast<uint16_t>(port);
  }
  // No ready line: it exited (say why) or hangs (kill it).
  std::optional<int> status = process_.Wait(Millis(2'000));
  std::string why = status ? DescribeWaitStatus(*status) : "no ready line in time; killed";
  process_.Kill();
  return absl::UnavailableError(
      absl::StrCat("ringmaild did not become ready (", why, "); stderr:\n", StderrText()));
}

absl::StatusOr<int> RunningDaemon::Stop(Millis timeout) {
  if (!process_.running()) return absl::FailedPreconditionError("daemon not running");
  process_.Signal(SIGTERM);
  std::optional<int> status = process_.Wait(timeout);
  if (status.has_value()) return *status;
  process_.Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("ringmaild did not stop within ", timeout.count(), " ms of SIGTERM; killed"));
}

void RunningDaemon::Crash() { process_.Kill(); }

std::string RunningDaemon::StderrText() const { return ReadFile(stderr_path()).value_or(""); }

int64_t RunningDaemon::RssKib() const { return StatusKib("VmRSS:"); }
int64_t RunningDaemon::PeakRssKib() const { return StatusKib("VmHWM:"); }

int64_t RunningDaemon::StatusKib(std::string_view field) const {
  if (!process_.running()) return -1;
  absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", pid(), "/status"));
  if (!status.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, ToAbsl(field))) continue;
    absl::string_view rest = absl::StripAsciiWhitespace(line);
    int64_t kib = 0;
    if (absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &kib)) return kib;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------
// SMTP client

std::string SmtpClient::Reply::text() const {
  std::string out;
  for (const std::string& l : lines) absl::StrAppend(&out, out.empty() ? "" : "\n", l);
  return out;
}

SmtpClient::~SmtpClient() { Close(); }

void SmtpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buffer_.clear();
}

absl::Status SmtpClient::Connect(uint16_t port, Millis timeout) {
  Close();
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0) {
    return absl::OkStatus();
  }
  if (errno != EINPROGRESS) {
    int e = errno;
    Close();
    return absl::UnavailableError(absl::StrCat("connect: ", strerror(e)));
  }
  short revents = 0;
  if (PollFd(fd_, POLLOUT, Clock::now() + timeout, &revents) <= 0) {
    Close();
    return absl::DeadlineExceededError("connect timed out");
  }
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    Close();
    return absl::UnavailableError(absl::StrCat("connect: ", strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status SmtpClient::Send(std::string_view bytes, Millis timeout) {
  if (fd_ < 0) return absl::FailedPreconditionError("not connected");
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (PollFd(fd_, POLLOUT, deadline, nullptr) <= 0) {
        return absl::DeadlineExceededError("send timed out (peer not reading)");
      }
      continue;
    }
    return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
  }
  return absl::OkStatus();
}

SmtpClient::Fill SmtpClient::FillBuffer(Clock::time_point deadline) {
  if (fd_ < 0) return Fill::kError;
  for (;;) {
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      return Fill::kData;
    }
    if (n == 0) return Fill::kEof;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Fill::kError;
    if (PollFd(fd_, POLLIN, deadline, nullptr) <= 0) return Fill::kTimeout;
  }
}

std::optional<std::string> SmtpClient::ReadLine(Millis timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (buffer_.size() > kLineBytesMax) return std::nullopt;
    if (FillBuffer(deadline) != Fill::kData) return std::nullopt;
  }
}

SmtpClient::Reply SmtpClient::ReadReply(Millis timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  Reply reply;
  for (;;) {
    std::optional<std::string> line = ReadLine(std::chrono::duration_cast<Millis>(
        std::max(deadline - Clock::now(), Clock::duration::zero())));
    if (!line.has_value()) return Reply{0, std::move(reply.lines)};
    reply.lines.push_back(*line);
    int code = 0;
    if (line->size() < 3 || !absl::SimpleAtoi(line->substr(0, 3), &code) || code < 100 ||
        code > 599) {
      return Reply{0, std::move(reply.lines)};
    }
    if (line->size() > 3 && (*line)[3] == '-') continue;
    reply.code = code;
    return reply;
  }
}

SmtpClient::Reply SmtpClient::Command(std::string_view command, Millis timeout) {
  if (!Send(absl::StrCat(ToAbsl(command), "\r\n"), timeout).ok()) return Reply{};
  return ReadReply(timeout);
}

bool SmtpClient::WaitForClose(Millis timeout, size_t* discarded) {
  const Clock::time_point deadline = Clock::now() + timeout;
  size_t dropped = buffer_.size();
  buffer_.clear();
  bool closed = false;
  for (;;) {
    Fill f = FillBuffer(deadline);
    dropped += buffer_.size();
    buffer_.clear();
    if (f == Fill::kData) continue;
    closed = f == Fill::kEof || f == Fill::kError;
    break;
  }
  if (discarded != nullptr) *discarded = dropped;
  return closed;
}

bool SmtpClient::Hello(std::string_view name) {
  if (ReadReply().code != 220) return false;
  return Command(absl::StrCat("EHLO ", ToAbsl(name))).code == 250;
}

// ---------------------------------------------------------------------------------------
// Output parsing

namespace {
bool IsHex32(std::string_view s) {
  if (s.size() < 32) return false;
  for (size_t i = 0; i < 32; ++i) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return s.size() == 32 || !absl::ascii_isxdigit(static_cast<unsigned char>(s[32]));
}
}  // namespace

std::string QueuedId(std::string_view reply_line) {
  constexpr std::string_view kQueuedAs = "queued as ";
  size_t at = reply_line.find(kQueuedAs);
  if (at == std::string_view::npos) return "";
  std::string_view rest = reply_line.substr(at + kQueuedAs.size());
  return IsHex32(rest) ? std::string(rest.substr(0, 32)) : "";
}

std::vector<std::string> ListedIds(std::string_view list_output) {
  std::vector<std::string> ids;
  for (absl::string_view absl_line : absl::StrSplit(ToAbsl(list_output), '\n')) {
    std::string_view line = ToStd(absl_line);
    if (IsHex32(line) && line.size() > 32 && line[32] == ' ') {
      ids.emplace_back(line.substr(0, 32));
    }
  }
  return ids;
}

std::optional<std::string> JsonField(std::string_view json, std::string_view key) {
  const std::string needle = absl::StrCat("\"", ToAbsl(key), "\":");
  size_t at = json.find(needle);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = json.substr(at + needle.size());
  if (rest.empty()) return std::nullopt;
  if (rest[0] != '"') {
    size_t end = rest.find_first_of(",}");
    return std::string(absl::StripAsciiWhitespace(ToAbsl(rest.substr(0, end))));
  }
  std::string value;
  for (size_t i = 1; i < rest.size(); ++i) {
    if (rest[i] == '\\' && i + 1 < rest.size()) {
      value.push_back(rest[i]);
      value.push_back(rest[++i]);
    } else if (rest[i] == '"') {
      return value;
    } else {
      value.push_back(rest[i]);
    }
  }
  return std::nullopt;
}

}  // namespace ringmail::integration
