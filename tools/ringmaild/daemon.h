// tools/ringmaild/daemon.h — wires every library into the running daemon.
//
// Start-up (main thread): probe io_uring, evaluate the license, check the config's
// concurrency against it, create the thread pools, recover the spool, build the loop set.
// Then the master loop runs on the main thread; in its first turn it sets up, on each loop
// of the ESMTP listener's pool, that loop's SpoolWriter and EsmtpListener, and starts
// taking signals (signalfd read through the ring). SIGTERM/SIGINT drain the listeners
// (new commands get 421, transactions in DATA finish) and stop every loop; SIGHUP reloads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "config/config.h"
#include "config/generation.h"
#include "config/license.h"
#include "core/log.h"
#include "core/loop_pool.h"
#include "core/thread_pool_registry.h"
#include "listeners/esmtp/listener.h"
#include "spool/group_commit.h"

namespace ringmail::daemon {

class Daemon {
 public:
  explicit Daemon(std::shared_ptr<const config::Config> config);
  ~Daemon();

  // Runs until stopped by a signal; returns the process exit status.
  int Run();

 private:
  struct LoopParts {
    core::Loop* loop = nullptr;
    std::unique_ptr<spool::SpoolWriter> spool;
    std::unique_ptr<listeners::esmtp::EsmtpListener> esmtp;
  };

  absl::Status Prepare();
  absl::Status SetUpOnLoop(LoopParts& parts, std::vector<config::NetAddress> addresses);
  absl::Status StartListeners();
  void ArmSignalRead();
  void SignalDone(core::Operation& op, core::IoResult r);
  void BeginDrain();
  void DrainTimedOut(core::Timer& t);
  void StopEverything();
  std::string StartupSummary() const;

  config::GenerationStore generations_;
  std::shared_ptr<const config::Config> config_;
  config::LicenseStatus license_;
  int cpus_ = 1;
  std::unique_ptr<core::ThreadPoolRegistry> thread_pools_;
  std::unique_ptr<core::LoopSet> loops_;
  std::unique_ptr<core::EventLog> reception_log_;
  listeners::esmtp::ListenerShared esmtp_shared_;
  std::vector<std::unique_ptr<LoopParts>> parts_;
  std::vector<uint64_t> next_segment_seq_;  // by loop index, from recovery
  std::shared_ptr<const listeners::esmtp::Settings> esmtp_settings_;

  int signal_fd_ = -1;
  core::Operation signal_op_;
  core::Timer drain_timer_;
  char signal_buf_[128];
  bool draining_ = false;
  size_t listeners_draining_ = 0;
  int exit_status_ = 0;
};

}  // namespace ringmail::daemon
