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
#include "absl/status/statusor.h"
#include "config/config.h"
#include "config/generation.h"
#include "config/license.h"
#include "core/log.h"
#include "core/loop_pool.h"
#include "core/thread_pool_registry.h"
#include "delivery/engine.h"
#include "delivery/ledger.h"
#include "delivery/self_endpoints.h"
#include "delivery/topology.h"
#include "listeners/control/control_listener.h"
#include "listeners/esmtp/listener.h"
#include "listeners/http/listener.h"
#include "spool/group_commit.h"
#include "spool/recovery.h"
#include "tools/ringmaild/privileges.h"
#include "tools/ringmaild/service_notify.h"

namespace ringmail::daemon {

class Daemon {
 public:
  explicit Daemon(std::shared_ptr<const config::Config> config);
  ~Daemon();

  // Runs until stopped by a signal; returns the process exit status.
  int Run();

 private:
  // What one loop reports about itself for summary, eventloop list and metrics.
  struct LoopSnapshot {
    std::string name;
    int cpu = -1;
    core::LoopStats loop;
    size_t esmtp_sessions = 0;
    size_t esmtp_waiting = 0;  // transactions waiting for a max_processings slot
    listeners::esmtp::ListenerCounters esmtp;
    spool::SpoolWriterStats spool;
    delivery::EngineStats engine;
    delivery::LedgerStats ledger;
    std::vector<delivery::DomainSummary> domains;  // only when asked (queue summary)
  };

  // Destroyed after every loop stopped, members in reverse order: listener, writer, ledger.
  struct LoopParts {
    core::Loop* loop = nullptr;
    std::unique_ptr<delivery::Ledger> ledger;
    std::unique_ptr<spool::SpoolWriter> spool;
    std::unique_ptr<listeners::esmtp::EsmtpListener> esmtp;  // may be null
    std::unique_ptr<listeners::http::HttpListener> http;     // may be null
  };

  absl::Status Prepare();
  // log_level: the diagnostics written from now on (start-up, and each reload: it is live).
  static void ApplyLogLevel(config::LogLevel level);
  absl::Status SetUpOnLoop(LoopParts& parts, std::vector<config::NetAddress> addresses);
  absl::Status StartListeners();
  // ---- HTTP listener (the HTTP section at the end of daemon.cc) ----
  absl::Status StartHttpListeners();
  void AnswerHttpHook(listeners::http::HookReply reply, bool metrics);
  std::string QueuesJson(const std::vector<LoopSnapshot>& loops) const;
  // Reload: hands the next generation's HTTP settings to the listeners (null: none run).
  void UpdateHttpSettings(std::shared_ptr<const listeners::http::HttpSettings> settings);
  // ---- delivery (daemon_delivery.cc) ----
  absl::Status StartDelivery();  // engines on the delivery_pool loops
  // The ESMTP listeners' endpoints to every delivery engine (delivery/self_endpoints.h), with
  // `local` the host's interface addresses: at start (waiting until every engine has them)
  // and after each reload, whose job reads the interfaces again (addresses come and go).
  void ShareSelfEndpoints(absl::StatusOr<std::vector<config::IpAddress>> local, bool wait);
  absl::Status OpenLedgerAndSpool(LoopParts& parts);
  void AdoptRecovered();         // hands the start-up recovery result to the ledgers
  delivery::LedgerOptions LedgerOptionsFor(core::Loop& loop);
  void ArmSignalRead();
  void SignalDone(core::Operation& op, core::IoResult r);
  void BeginDrain();
  void DrainTimedOut(core::Timer& t);
  void StopEverything();
  std::string StartupSummary() const;
  // After every listener and the control socket are bound: hands the daemon's files to
  // `user` and drops root (privileges.h). Then tells the service manager READY=1.
  absl::Status DropPrivilegesAfterBinding();

  // ---- control socket (daemon_control.cc) ----
  using Reply = control::ControlListener::Reply;
  absl::Status StartControl();
  void HandleControl(const control::Request& request, Reply reply);
  // Asks every loop for its snapshot; `done` runs on the master with all of them.
  void GatherLoops(absl::AnyInvocable<void(std::vector<LoopSnapshot>)> done,
                   bool with_domains = false);
  LoopSnapshot SnapshotOf(core::Loop& loop, bool with_domains);
  void HandleDeliveryCommand(const control::Request& request, Reply reply);
  void MessageShow(const std::string& hex, Reply reply);  // asks each ledger in turn
  control::Response QueueSummary(const std::vector<LoopSnapshot>& loops,
                                 const std::string& domain, bool json);
  control::Response Summary(const std::vector<LoopSnapshot>& loops, bool json);
  control::Response EventLoopList(const std::vector<LoopSnapshot>& loops, bool json);
  control::Response Metrics(const std::vector<LoopSnapshot>& loops);
  // One Prometheus histogram, per loop, of the LatencyHistogram `field` picks.
  static void AppendLatencyHistogram(
      const char* name, const char* help, const std::vector<LoopSnapshot>& loops,
      const core::LatencyHistogram& (*field)(const LoopSnapshot&), std::string* out);
  // The gauges of the metrics page (open connections, queued pool jobs), appended to `out`.
  static void AppendMetricGauges(const std::vector<LoopSnapshot>& loops,
                                 const std::vector<core::ThreadPoolStats>& pools,
                                 std::string* out);
  control::Response ThreadPoolList(bool json);
  control::Response ThreadPoolSet(const std::vector<std::string>& words);
  control::Response LicenseShow(bool json);
  // `config show`: flattened (and compared with the started generation) on an IO worker,
  // as a reload is, since 100,000 Domain scopes take the master seconds.
  void ConfigShow(const std::vector<std::string>& words, bool json, Reply reply);
  static control::Response RenderConfigShow(const config::Config& started,
                                            const config::Config& current,
                                            const std::string& filter, bool json);
  // `config check FILE` and `config reload` (also SIGHUP): answered later, from the master,
  // once an IO pool worker has read and built everything (daemon_reload.cc).
  void ConfigCheck(const std::vector<std::string>& words, Reply reply);
  void Reload(bool json, Reply reply);
  using OffLoopJob = absl::AnyInvocable<void(bool accepted) &&>;
  void RunOffLoop(OffLoopJob job);
  struct ReloadInputs;
  struct ReloadPlan;
  struct ReloadRequest {
    bool json = false;
    Reply reply;
  };
  static ReloadPlan PrepareReload(const ReloadInputs& in);  // an IO pool worker
  void StartReload();
  void FinishReload(ReloadPlan plan);
  void ApplyReload(const ReloadPlan& plan);

  config::GenerationStore generations_;
  std::shared_ptr<const config::Config> config_;
  // The generation the daemon started with: what runs of every key and scope that needs a
  // restart. Reloads publish the file's values (config_), and measure what still waits for
  // a restart against this one, so that it is reported until the restart, and `config show`
  // names the value that runs.
  std::shared_ptr<const config::Config> started_config_;
  config::LicenseStatus license_;
  int cpus_ = 1;
  std::unique_ptr<core::ThreadPoolRegistry> thread_pools_;
  std::unique_ptr<core::LoopSet> loops_;
  std::unique_ptr<core::EventLog> reception_log_;
  listeners::esmtp::ListenerShared esmtp_shared_;
  std::vector<std::unique_ptr<LoopParts>> parts_;
  std::vector<uint64_t> next_segment_seq_;  // by loop index, from recovery
  std::optional<spool::RecoveryResult> recovered_;  // until AdoptRecovered()
  delivery::DeliveryTopology topology_;  // filled at start-up, then read-only
  std::atomic<int64_t> outbound_connections_{0};
  std::vector<std::unique_ptr<delivery::Engine>> engines_;
  std::unique_ptr<core::EventLog> delivery_log_;
  std::shared_ptr<const listeners::esmtp::Settings> esmtp_settings_;
  std::vector<config::ListenConfig> esmtp_bound_;  // Listen scopes with the ports bound
  std::vector<config::IpAddress> local_addresses_;  // the interfaces' last reading
  listeners::http::HttpShared http_shared_;
  std::shared_ptr<const listeners::http::HttpSettings> http_settings_;
  std::shared_ptr<const listeners::http::HttpHooks> http_hooks_;

  int signal_fd_ = -1;
  core::Operation signal_op_;
  core::Timer drain_timer_;
  char signal_buf_[128];
  bool draining_ = false;
  size_t listeners_draining_ = 0;
  int exit_status_ = 0;
  uint64_t started_ms_ = 0;
  uint64_t reloads_ = 0;
  std::vector<ReloadRequest> reload_running_;  // answered by the reload being prepared
  std::vector<ReloadRequest> reload_waiting_;  // made meanwhile: answered by the next one
  std::unique_ptr<control::ControlListener> control_;
  std::vector<std::string> control_dirs_created_;  // handed to `user` with the sockets
  RunAs run_as_;                                    // resolved in Prepare()
  std::vector<std::string> ready_lines_;  // "ready esmtp=..." lines, printed when all is up
  ServiceNotifier notifier_;                        // $NOTIFY_SOCKET; no-op without it
};

}  // namespace ringmail::daemon
