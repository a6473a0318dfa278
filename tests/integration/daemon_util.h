// tests/integration/daemon_util.h — the harness the integration tests use to drive the real
// programs: a scratch directory, a subprocess that is always reaped, ringmaild started on
// port 0 with its own config, spool and log directories, and a small raw-socket SMTP client
// for the malformed cases no well-behaved client library will send.
//
// Contract
// - Test-thread code (the SMTP client may be used from any one thread at a time).
// - Everything is bounded: every wait takes a timeout; nothing sleeps to synchronise. The
//   daemon's readiness is its `ready esmtp=IP:PORT` / `ready http=IP:PORT` lines and the bare
//   `ready` after them, read from a stdout pipe with poll();
//   exits are awaited through a pidfd with poll(); a process that overstays is SIGKILLed.
// - RAII: a Subprocess (and so a RunningDaemon) that is still running when destroyed is
//   SIGKILLed and reaped, so a failing ASSERT never leaks a daemon. A ScratchDir removes its
//   tree when destroyed (kept when RINGMAIL_KEEP_TEST_DIRS is set, for post-mortems).
// - Children get PR_SET_PDEATHSIG(SIGKILL): if the test binary itself dies, they die too.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmail::integration {

using Millis = std::chrono::milliseconds;

// Where the build put a program: RINGMAIL_BINARY_DIR/tools/<dir>/<name>.
std::string ToolPath(std::string_view dir, std::string_view name);
std::string RingmaildPath();
std::string SpoolToolPath();
// RINGMAIL_SOURCE_DIR/tests/integration/clients/<script>.
std::string ClientScriptPath(std::string_view script);
// The sample license signed with the test key (8 event loops): valid for builds without a
// vendor RINGMAIL_LICENSE_PUBKEY.
std::string TestLicensePath();
// Whether this ringmaild build accepts TestLicensePath() (it does unless built with a vendor
// key); asks `ringmaild --check-config` about a config with two loops.
bool TestLicenseAccepted();
// The first of `candidates` found executable on PATH (or as an absolute path); empty if none.
std::string FindProgram(const std::vector<std::string>& candidates);

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

absl::Status WriteFile(const std::string& path, std::string_view contents);
absl::StatusOr<std::string> ReadFile(const std::string& path);

// One child process. stdout may be a pipe the parent reads; stdin and stderr go to files or
// /dev/null. Reaped on destruction (SIGKILL first if still running).
class Subprocess {
 public:
  struct Options {
    std::string stdin_path;   // empty: /dev/null
    std::string stderr_path;  // empty: /dev/null
    bool pipe_stdout = true;  // else stdout goes where stderr goes
    std::string working_dir;  // empty: inherit
  };
  static absl::StatusOr<Subprocess> Start(const std::vector<std::string>& argv,
                                          const Options& options);
  Subprocess() = default;
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // Reads one line (without its '\n') from the stdout pipe; nullopt on EOF or timeout.
  std::optional<std::string> ReadStdoutLine(Millis timeout);
  // Reads stdout to EOF (bounded by `timeout` and by `max_bytes`).
  std::string ReadAllStdout(Millis timeout, size_t max_bytes = 16 << 20);
  // Waits for the exit; returns the wait status (as from waitpid), or nullopt on timeout.
  std::optional<int> Wait(Millis timeout);
  void Signal(int sig);
  // SIGKILL and reap (no-op when already reaped).
  void Kill();

 private:
  void Reset();
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdout_fd_ = -1;
  std::string stdout_buffer_;
};

// A program run to completion with its output captured.
struct RunResult {
  bool timed_out = false;
  int exit_code = -1;  // -1: killed by a signal (or timed out)
  int signal = 0;
  std::string out;
  std::string err;
};
RunResult RunProgram(const std::vector<std::string>& argv, Millis timeout,
                     const std::string& stdin_text = "");

// The decoded exit of a wait status: "exit 0", "signal 9".
std::string DescribeWaitStatus(int status);

// The ringmaild configuration a test runs with: every path inside its own directory, ESMTP on
// 127.0.0.1:0, hostname "mx.test". Extra lines go into the global scope and the
// ESMTP_Listener scope as written.
struct DaemonConfig {
  // Small segments: start-up preallocates less and `ringmail-spool` scans less.
  std::string spool_segment_size = "1MB";
  std::string global_extra;  // e.g. "eventloop \"p\" { concurrency = 2 }\n"
  std::string esmtp_extra;   // e.g. "max_recipients = 3\n"
  std::string relay_hosts = "( \"127.0.0.0/8\" )";
  std::string relay_domains = "( \"local.test\" )";
  // Where delivery sends everything. Empty: a loopback port the harness holds bound but not
  // listening, so every attempt is refused and every message stays queued (deferred) for
  // the test to inspect; no DNS query leaves the machine.
  std::string default_route;
  // > 0: the listener runs on an eventloop pool "esmtp" of this many loops, licensed by
  // TestLicensePath() (without a license the daemon allows 1 loop).
  int esmtp_loops = 0;
};

class RunningDaemon {
 public:
  // Uses `root` for spool/, log/, control.sock, ringmaild.conf and ringmaild.stderr.
  explicit RunningDaemon(std::string root);
  ~RunningDaemon();  // SIGKILLs and reaps a daemon still running
  RunningDaemon(const RunningDaemon&) = delete;
  RunningDaemon& operator=(const RunningDaemon&) = delete;

  std::string ConfigText(const DaemonConfig& config) const;
  // Writes the config file and starts ringmaild; waits up to `timeout` for the ready lines.
  absl::Status Start(const DaemonConfig& config, Millis timeout = Millis(10'000));
  // Starts with a config text written verbatim.
  absl::Status StartWithText(const std::string& config_text, Millis timeout = Millis(10'000));
  // SIGTERM, then wait up to `timeout`; SIGKILL after that. Returns the wait status, or an
  // error when the daemon had to be killed.
  absl::StatusOr<int> Stop(Millis timeout = Millis(10'000));
  // kill -9 and reap.
  void Crash();
  void Signal(int sig) { process_.Signal(sig); }
  // Waits for the daemon to exit on its own.
  std::optional<int> WaitExit(Millis timeout) { return process_.Wait(timeout); }

  bool running() const { return process_.running(); }
  pid_t pid() const { return process_.pid(); }
  uint16_t port() const { return port_; }
  // The HTTP listener's port when the config has an HTTP_Listener (its `ready http=` line).
  uint16_t http_port() const { return http_port_; }
  const std::string& root() const { return root_; }
  std::string spool_dir() const { return root_ + "/spool"; }
  std::string log_dir() const { return root_ + "/log"; }
  std::string config_path() const { return root_ + "/ringmaild.conf"; }
  std::string stderr_path() const { return root_ + "/ringmaild.stderr"; }
  // Everything the daemon wrote to stderr so far (for diagnostics and log lines).
  std::string StderrText() const;
  // VmRSS of the running daemon in KiB, or -1.
  int64_t RssKib() const;
  // VmHWM: the highest VmRSS the daemon has had so far, in KiB, or -1.
  int64_t PeakRssKib() const;

 private:
  int64_t StatusKib(std::string_view field) const;  // a "Vm...: N kB" line of its status
  std::string root_;
  Subprocess process_;
  uint16_t port_ = 0;
  uint16_t http_port_ = 0;
  int refused_fd_ = -1;  // bound, never listening: connections to it are refused
  uint16_t refused_port_ = 0;
};

// A blocking TCP client with poll()-bounded reads and writes, for speaking SMTP by hand.
class SmtpClient {
 public:
  struct Reply {
    int code = 0;                    // 0: no complete reply (EOF, timeout, garbage)
    std::vector<std::string> lines;  // every line, CRLF stripped
    std::string text() const;        // the lines joined by '\n'
    std::string last() const { return lines.empty() ? "" : lines.back(); }
  };

  SmtpClient() = default;
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  absl::Status Connect(uint16_t port, Millis timeout = Millis(5'000));
  bool connected() const { return fd_ >= 0; }
  void Close();
  // Sends everything or fails (timeout, reset). MSG_NOSIGNAL: a closed peer is an error.
  absl::Status Send(std::string_view bytes, Millis timeout = Millis(5'000));
  // One line without its CRLF; nullopt on EOF, error or timeout.
  std::optional<std::string> ReadLine(Millis timeout = Millis(5'000));
  // One (possibly multi-line) reply.
  Reply ReadReply(Millis timeout = Millis(5'000));
  // Sends `command` + CRLF and reads the reply.
  Reply Command(std::string_view command, Millis timeout = Millis(5'000));
  // True once the peer has closed (EOF or reset) within `timeout`; bytes that arrive first
  // are discarded and counted in *discarded when given.
  bool WaitForClose(Millis timeout, size_t* discarded = nullptr);
  // Greeting + EHLO; false when either is not a success.
  bool Hello(std::string_view name = "client.test");
  int fd() const { return fd_; }

 private:
  enum class Fill { kData, kEof, kTimeout, kError };
  Fill FillBuffer(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  std::string buffer_;
};

// The 32-hex-digit id in "250 2.0.0 Ok: queued as <id>", or empty.
std::string QueuedId(std::string_view reply_line);

// Live message ids in `ringmail-spool list` output.
std::vector<std::string> ListedIds(std::string_view list_output);

// A flat JSON object's string or number field ("id", "code"...): the raw value text with
// quotes removed and escapes left as they are; nullopt if absent.
std::optional<std::string> JsonField(std::string_view json, std::string_view key);

}  // namespace ringmail::integration
