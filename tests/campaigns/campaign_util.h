// tests/campaigns/campaign_util.h — the pieces the crash, fault and overload campaigns
// (issue #9 items 1-3) share: their scale (a short CI run by default, the full campaign with
// RINGMAIL_CAMPAIGN=full), a printed seed, `ringload send --record` runs as subprocesses,
// the record file and the sink's dumps read back by Message-ID, a sink that can come back on
// its old port, a private mount namespace for a tmpfs spool, the immutable attribute for a
// read-only one, and a raised fd limit.
//
// Contract
// - Test-thread code only. Every wait has a deadline (through daemon_util's Subprocess and
//   relay_util's PollUntil); every child is killed and reaped on destruction.
// - Environment: RINGMAIL_CAMPAIGN=full (full scale), RINGMAIL_CAMPAIGN_<NAME>=N (override
//   one figure: ROUNDS, ATTEMPTS, MAX_CONNECTIONS, SLOWLORIS, GARBAGE_SESSIONS,
//   SINK_CYCLES, DISK_FULL_MESSAGES), RINGMAIL_CAMPAIGN_SEED=N (replay a run; the seed is
//   always printed).
// - Figures are printed as one "CAMPAIGN name key=value ..." line per campaign, which
//   bench/campaigns.sh collects for bench/RESULTS.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/integration/daemon_util.h"
#include "tests/integration/relay_util.h"

namespace ringmail::campaigns {

using integration::Millis;

// True when RINGMAIL_CAMPAIGN=full.
bool FullScale();
// `ci` or `full` by FullScale(); RINGMAIL_CAMPAIGN_<name> (a positive integer) overrides.
int64_t Scaled(const char* name, int64_t ci, int64_t full);
// RINGMAIL_CAMPAIGN_SEED, else a random one; printed either way with `campaign`.
uint64_t CampaignSeed(const char* campaign);
// Prints "CAMPAIGN <name> <fields>" on stdout (and flushes).
void PrintFigures(const std::string& name, const std::string& fields);

// Raises RLIMIT_NOFILE's soft limit to `want` (or the hard limit, if lower); the limit
// reached.
uint64_t RaiseFdLimit(uint64_t want);

// One line of `ringload send --record`: "SEQ <MESSAGE-ID> QUEUE-ID".
struct RecordLine {
  uint64_t seq = 0;
  std::string message_id;
  std::string queue_id;
};
// The lines of a record file; a malformed line is an error (a truncated last line written
// by a killed ringload is not: ringload is always stopped with SIGTERM, which flushes).
absl::StatusOr<std::vector<RecordLine>> ReadRecord(const std::string& path);

// Dump files of a sink (`ringload sink --dump DIR`) counted by the Message-ID header of the
// message (after the relay's Received: header), in `dump_dir` and its subdirectories. Only
// the first 64 KiB of a file is read: the header block is at its start.
std::map<std::string, int> ArrivalsByMessageId(const std::string& dump_dir);

// What a `ringload send --json` run reported.
struct SendReport {
  bool finished = false;  // exited (0 or 1) and printed its JSON summary
  int exit_code = -1;
  uint64_t ok = 0;  // messages accepted (2xx at end of data)
  uint64_t p50_us = 0, p99_us = 0, max_us = 0;  // latency of accepted messages
  std::map<std::string, uint64_t> codes;  // "250" → n, "452" → n, "none" → n
  std::string json;
  uint64_t Code(const std::string& code) const {
    auto it = codes.find(code);
    return it == codes.end() ? 0 : it->second;
  }
};

// `ringload send --json --quiet --record FILE` against 127.0.0.1:`port` in the background.
class LoadRun {
 public:
  absl::Status Start(uint16_t port, const std::string& record_path,
                     const std::vector<std::string>& flags, const std::string& stderr_path);
  bool running() const { return process_.running(); }
  pid_t pid() const { return process_.pid(); }
  // Waits for the run to end by itself (up to `timeout`), else SIGTERM (which flushes the
  // record and prints the summary), else SIGKILL.
  SendReport Finish(Millis timeout);
  // SIGTERM now, then Finish.
  SendReport Stop();

 private:
  integration::Subprocess process_;
};

// Runs `ringload send` to completion (bounded by `timeout`).
SendReport RunLoad(uint16_t port, const std::string& record_path,
                   const std::vector<std::string>& flags, const std::string& stderr_path,
                   Millis timeout);

// A `ringload sink --dump` that may be stopped and started again on the port it got the
// first time (so the daemon's route to it stays valid).
class RestartableSink {
 public:
  // First start: port 0; later starts: the same port. Start number n dumps into
  // `dump_dir`/n: a restarted sink numbers its files from 0 again.
  absl::Status Start(const std::string& dump_dir, const std::vector<std::string>& extra);
  void Kill() { process_.Kill(); }
  bool running() const { return process_.running(); }
  uint16_t port() const { return port_; }
  std::string route() const { return "[127.0.0.1]:" + std::to_string(port_); }

 private:
  integration::Subprocess process_;
  uint16_t port_ = 0;
  int starts_ = 0;
};

// Moves this thread into a private mount namespace whose mounts do not propagate back (so a
// tmpfs mounted here disappears with the process), once per process; children started
// afterwards from this thread share it. Unavailable (not root, no CAP_SYS_ADMIN, seccomp):
// an error to GTEST_SKIP on.
absl::Status EnterPrivateMountNamespace();
// Mounts a tmpfs of `bytes` on `dir` (which must exist).
absl::Status MountTmpfs(const std::string& dir, uint64_t bytes);
// Sets or clears the immutable attribute (chattr +i) of directory `dir`: no file can be
// created in it, renamed or unlinked, even by root and even through a directory fd the
// daemon opened earlier. This is how the fault campaign makes a live spool read-only: a
// read-only remount (of the filesystem or of a bind mount) fails with EBUSY while the
// daemon holds segments open for writing, and a bind mount laid over the path afterwards
// does not reach the daemon's openat/unlinkat on its directory fds. Unsupported by the
// filesystem → an error to GTEST_SKIP on.
absl::Status SetImmutable(const std::string& dir, bool immutable);
// Lazily unmounts `dir` (the bind or tmpfs on it).
absl::Status Unmount(const std::string& dir);

// `ringmail-spool verify DIR` and `ringmail-spool list DIR` after the daemon stopped.
struct SpoolCheck {
  bool verify_ok = false;
  std::string verify_output;
  std::vector<std::string> live_ids;
};
SpoolCheck CheckSpool(const std::string& spool_dir);

// A named counter of `ringctl summary --json`; nullopt when the daemon did not answer.
std::optional<uint64_t> Counter(const std::string& control_socket, const std::string& key);

}  // namespace ringmail::campaigns
