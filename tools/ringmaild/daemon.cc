#include "tools/ringmaild/daemon.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "base/string_view.h"
#include "config/diff.h"
#include "core/run_on_loop.h"
#include "spool/recovery.h"
#include "tls/crypto_offload.h"

namespace ringmail::daemon {
namespace {

// How long SIGTERM waits for transactions in DATA to finish before stopping anyway.
constexpr uint64_t kDrainTimeoutMs = 30'000;

absl::Status MakeDir(const std::string& path, std::filesystem::perms perms) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", path, ": ", ec.message()));
  std::filesystem::permissions(path, perms, ec);
  return absl::OkStatus();
}

std::vector<core::ThreadPoolSpec> ThreadPoolSpecsFrom(const config::Config& c) {
  std::vector<core::ThreadPoolSpec> specs;
  for (const config::ThreadPoolConfig& tp : c.thread_pools) {
    core::ThreadPoolSpec s;
    s.name = tp.name;
    s.concurrency = static_cast<uint32_t>(tp.concurrency);
    s.backlog = static_cast<uint32_t>(tp.backlog);
    s.stack_size_bytes = tp.stack_size_bytes;
    specs.push_back(s);
  }
  return specs;
}

}  // namespace

Daemon::Daemon(std::shared_ptr<const config::Config> config)
    : config_(std::move(config)), started_config_(config_) {
  generations_.Publish(config_);
  signal_op_.Bind<&Daemon::SignalDone>(this, "signalfd.read");
  drain_timer_.Bind<&Daemon::DrainTimedOut>(this);
}

Daemon::~Daemon() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

// Connections are file descriptors: take every descriptor the hard limit allows, since a
// soft limit of 1024 would cap an MTA far below max_connections.
static void RaiseDescriptorLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void Daemon::ApplyLogLevel(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::kDebug: core::SetLogLevel(core::LogLevel::kDebug); return;
    case config::LogLevel::kInfo: core::SetLogLevel(core::LogLevel::kInfo); return;
    // Diagnostics have no notice level: "notice" keeps what is more severe than info.
    case config::LogLevel::kNotice:
    case config::LogLevel::kWarning: core::SetLogLevel(core::LogLevel::kWarning); return;
    case config::LogLevel::kError: core::SetLogLevel(core::LogLevel::kError); return;
  }
}

absl::Status Daemon::Prepare() {
  ApplyLogLevel(config_->global.log_level);
  RM_RETURN_IF_ERROR(core::ProbeKernel());
  RaiseDescriptorLimit();
  // Restart-only: before any TLS context exists; reloads keep the start-up choice.
  tls::SetCryptoOffload(config_->global.tls_crypto_offload);
  // Who to become, and whether the spool is safe, before anything is created or opened.
  RM_ASSIGN_OR_RETURN(run_as_, ResolveRunAs(config_->global.user, config_->global.group));
  RM_RETURN_IF_ERROR(CheckSpoolDirPermissions(config_->global.spool_dir, DaemonGid(run_as_)));
  license_ = config::EvaluateLicense(config_->global.license, absl::Now());
  if (!license_.valid) core::LogWarning("license: %s", license_.summary);
  cpus_ = core::AvailableCpus();
  RM_RETURN_IF_ERROR(config::ValidateConcurrency(*config_, cpus_,
                                                 license_.licensed_concurrency));
  RM_ASSIGN_OR_RETURN(thread_pools_,
                      core::ThreadPoolRegistry::Create(ThreadPoolSpecsFrom(*config_)));
  using std::filesystem::perms;
  RM_RETURN_IF_ERROR(MakeDir(config_->global.spool_dir, perms::owner_all));
  RM_RETURN_IF_ERROR(MakeDir(config_->global.log_dir, perms::owner_all | perms::group_read |
                                                          perms::group_exec));
  RM_ASSIGN_OR_RETURN(reception_log_,
                      core::EventLog::Open(config_->global.log_dir + "/reception.log"));
  // Recovery runs on the SpoolIn pool (blocking reads); listeners start once it is done so
  // new segments never race the scan of old ones.
  absl::StatusOr<spool::RecoveryResult> recovered = absl::UnknownError("not run");
  absl::Notification scanned;
  auto* pool = thread_pools_->Find(core::kSpoolInPool);
  RM_CHECK(pool != nullptr);
  pool->Submit([&] {
    recovered = spool::RecoverSpool(config_->global.spool_dir, spool::RecoveryOptions{});
    scanned.Notify();
  });
  scanned.WaitForNotification();
  if (!recovered.ok()) return recovered.status();
  core::LogInfo("spool recovery: %s", recovered->report.Summary());
  for (const auto& q : recovered->report.quarantined) {
    core::LogWarning("spool: quarantined %s: %s", q.path, q.reason);
  }
  for (const spool::LoopRecovery& lr : recovered->report.loops) {
    if (next_segment_seq_.size() <= lr.loop) next_segment_seq_.resize(lr.loop + 1, 1);
    next_segment_seq_[lr.loop] = lr.next_seq;
  }
  recovered_ = *std::move(recovered);
  RM_ASSIGN_OR_RETURN(delivery_log_,
                      core::EventLog::Open(config_->global.log_dir + "/delivery.log"));
  core::LoopSetOptions lo;
  for (const config::LoopCount& lc : config::ResolveLoopCounts(*config_, cpus_)) {
    lo.pools.push_back(core::LoopPoolSpec{lc.pool, lc.loops});
  }
  lo.available_cpus = cpus_;
  lo.pin = config_->global.pin_event_loops;
  lo.completion_wait_us = absl::ToInt64Microseconds(config_->global.completion_wait);
  loops_ = std::make_unique<core::LoopSet>(lo);
  return absl::OkStatus();
}

absl::Status Daemon::DropPrivilegesAfterBinding() {
  if (run_as_.change) {
    RM_RETURN_IF_ERROR(GiveOwnership(run_as_, config_->global.spool_dir,
                                     config_->global.log_dir, config_->control.socket_paths,
                                     control_dirs_created_));
    RM_RETURN_IF_ERROR(DropPrivileges(run_as_));
    core::LogInfo("running as %s (uid %d, gid %d)", run_as_.user, run_as_.uid, run_as_.gid);
  } else if (geteuid() == 0) {
    core::LogWarning("running as root: set `user` so ringmaild drops root after binding");
  }
  // One line per listener ("ready esmtp=ADDR,...", "ready http=ADDR,..."), then a bare
  // "ready" that ends the set, so a script knows it has read them all.
  for (const std::string& line : ready_lines_) std::printf("%s\n", line.c_str());
  std::printf("ready\n");
  std::fflush(stdout);
  notifier_.Ready(absl::StrCat("accepting mail; config generation ", generations_.generation(),
                               ", ", loops_->all_loops().size(), " loop(s)"));
  return absl::OkStatus();
}

std::string Daemon::StartupSummary() const {
  std::vector<std::string> pools;
  for (const auto& p : loops_->pools()) pools.push_back(absl::StrCat(p->name(), "=", p->size()));
  std::vector<std::string> tps;
  for (const core::ThreadPoolStats& s : thread_pools_->ListStats()) {
    tps.push_back(absl::StrCat(s.name, ":", s.concurrency, "/", s.backlog));
  }
  return absl::StrCat("ringmaild ", RINGMAIL_VERSION, ": cpus=", cpus_, " licensed_concurrency=",
                      license_.licensed_concurrency, " loops=", loops_->all_loops().size(),
                      " pools=[", absl::StrJoin(pools, " "), "] cpu_map=[", loops_->CpuMap(),
                      "] thread_pools=[", absl::StrJoin(tps, " "), "]");
}

absl::Status Daemon::SetUpOnLoop(LoopParts& parts, std::vector<config::NetAddress> addresses) {
  core::Loop& loop = *parts.loop;
  RM_RETURN_IF_ERROR(OpenLedgerAndSpool(parts));
  parts.esmtp = std::make_unique<listeners::esmtp::EsmtpListener>(
      loop, esmtp_shared_, *parts.spool, reception_log_.get(), esmtp_settings_);
  return parts.esmtp->Listen(addresses);
}

absl::Status Daemon::StartListeners() {
  const config::EsmtpListenerConfig& ec = config_->esmtp;
  const core::LoopPool* pool = loops_->pool(ec.event_loop);
  if (pool == nullptr) return absl::NotFoundError("ESMTP_Listener: unknown event_loop pool");
  RM_ASSIGN_OR_RETURN(esmtp_settings_, listeners::esmtp::Settings::FromConfig(
                                           config_, static_cast<int>(pool->size())));
  if (ec.listen.empty()) return absl::OkStatus();
  std::vector<config::NetAddress> addresses;
  for (const config::ListenConfig& l : ec.listen) addresses.push_back(l.address);
  for (core::Loop* loop : pool->loops()) {
    auto parts = std::make_unique<LoopParts>();
    parts->loop = loop;
    // Start-up only: the master waits for each loop to set itself up.
    RM_RETURN_IF_ERROR(core::RunOnLoopAndWait(*loop, [&] {
      return SetUpOnLoop(*parts, addresses);
    }));
    // Port 0 (tests): every loop listens on the port the first one got.
    const std::vector<uint16_t>& ports = parts->esmtp->bound_ports();
    for (size_t i = 0; i < addresses.size(); ++i) addresses[i].port = ports[i];
    parts_.push_back(std::move(parts));
  }
  esmtp_bound_ = ec.listen;
  for (size_t i = 0; i < addresses.size(); ++i) esmtp_bound_[i].address = addresses[i];
  std::vector<std::string> shown;
  for (const config::NetAddress& a : addresses) shown.push_back(a.ToString());
  core::LogInfo("esmtp listening on %s (%d loops)", absl::StrJoin(shown, " "), pool->size());
  // A machine-readable line for scripts and tests that start the daemon on port 0; printed
  // once everything is up (DropPrivilegesAfterBinding), so "ready" means ringctl works too.
  ready_lines_.push_back(absl::StrCat("ready esmtp=", absl::StrJoin(shown, ",")));
  return absl::OkStatus();
}

void Daemon::ArmSignalRead() {
  io_uring_sqe* sqe = loops_->master().Prepare(signal_op_);
  io_uring_prep_read(sqe, signal_fd_, signal_buf_, sizeof(signalfd_siginfo), 0);
}

void Daemon::SignalDone(core::Operation&, core::IoResult r) {
  core::Loop& master = loops_->master();
  if (master.stopping()) return;
  if (r.ok() && r.value() == sizeof(signalfd_siginfo)) {
    signalfd_siginfo info;
    std::memcpy(&info, signal_buf_, sizeof(info));
    switch (info.ssi_signo) {
      case SIGTERM:
      case SIGINT:
        core::LogInfo("signal %d: draining and stopping", static_cast<int>(info.ssi_signo));
        BeginDrain();
        break;
      case SIGUSR1:  // logrotate: both event logs follow their renamed files
        reception_log_->Reopen();
        if (delivery_log_ != nullptr) delivery_log_->Reopen();
        break;
      case SIGHUP:
        Reload(false, [](control::Response r) {
          (r.ok ? core::LogLine(core::LogLevel::kInfo, r.body)
                : core::LogLine(core::LogLevel::kWarning, r.body));
        });
        break;
      default:
        break;
    }
  }
  ArmSignalRead();
}

void Daemon::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  notifier_.Stopping("draining: finishing transactions in progress, then stopping");
  core::Loop& master = loops_->master();
  master.timers().Arm(drain_timer_, master.now_ms() + kDrainTimeoutMs);
  listeners_draining_ = 0;
  for (auto& parts : parts_) listeners_draining_ += (parts->esmtp ? 1 : 0) + (parts->http ? 1 : 0);
  if (listeners_draining_ == 0) {
    StopEverything();
    return;
  }
  // The Daemon outlives every loop (Run joins them), so `this` and the parts stay valid.
  // Both ways are reserved posts: a full inbox must not lose a drain order or its answer,
  // which would leave the daemon waiting for the drain timeout.
  for (auto& parts : parts_) {
    LoopParts* p = parts.get();
    auto answer = [this](core::ReservedPost back) {
      return [this, back = std::make_shared<core::ReservedPost>(std::move(back))] {
        (void)std::move(*back).Post([this] {
          if (--listeners_draining_ == 0) StopEverything();
        });
      };
    };
    auto esmtp_done = answer(master.Reserve());
    auto http_done = answer(master.Reserve());
    (void)p->loop->Reserve().Post([p, esmtp_done, http_done] {
      if (p->esmtp) p->esmtp->Drain(esmtp_done);
      if (p->http) p->http->Drain(http_done);
    });
  }
}

void Daemon::DrainTimedOut(core::Timer&) {
  core::LogWarning("drain took longer than %d s: stopping anyway", kDrainTimeoutMs / 1000);
  StopEverything();
}

void Daemon::StopEverything() {
  core::Loop& master = loops_->master();
  if (master.stopping()) return;
  master.timers().Cancel(drain_timer_);
  notifier_.Stopping("stopping");
  // StopAll asks every pool loop to stop, then joins them from this (master) loop. A stop
  // request made on a loop sends its MSG_RING wake-up with that loop's next submit, which
  // never comes while we block in the join: ask first and submit, so the wake-ups leave.
  for (core::Loop* loop : loops_->all_loops()) {
    if (loop != &master) loop->RequestStop();
  }
  master.ring().Submit();
  loops_->StopAll();  // joins the pool loops, then asks the master to stop
}

int Daemon::Run() {
  // Connected now, while possibly still root: the socket stays usable after the drop.
  absl::StatusOr<ServiceNotifier> notifier = ServiceNotifier::FromEnvironment();
  if (notifier.ok()) {
    notifier_ = *std::move(notifier);
  } else {
    core::LogWarning("sd_notify disabled: %s", std::string(notifier.status().message()));
  }
  absl::Status s = Prepare();
  if (!s.ok()) {
    std::fprintf(stderr, "ringmaild: %s\n", std::string(s.message()).c_str());
    notifier_.Status(absl::StrCat("start failed: ", s.message()));
    return 1;
  }
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, sig);
  signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    std::fprintf(stderr, "ringmaild: signalfd: %s\n", strerror(errno));
    return 1;
  }
  core::LogInfo("%s", StartupSummary());
  s = loops_->StartPools();
  if (!s.ok()) {
    std::fprintf(stderr, "ringmaild: %s\n", std::string(s.message()).c_str());
    loops_->StopAll();
    return 1;
  }
  core::Loop& master = loops_->master();
  s = master.RunHere([&] {
    started_ms_ = master.now_ms();
    ArmSignalRead();
    absl::Status started = StartDelivery();
    if (started.ok()) started = StartListeners();
    // getifaddrs: a netlink dump, here on the master at start-up, never on a delivery loop.
    if (started.ok()) ShareSelfEndpoints(delivery::LocalAddresses(), /*wait=*/true);
    if (started.ok()) started = StartHttpListeners();
    if (started.ok()) AdoptRecovered();
    if (started.ok()) started = StartControl();
    if (started.ok()) started = DropPrivilegesAfterBinding();
    if (!started.ok()) {
      std::fprintf(stderr, "ringmaild: %s\n", std::string(started.message()).c_str());
      notifier_.Status(absl::StrCat("start failed: ", started.message()));
      exit_status_ = 1;
      StopEverything();
    }
  });
  if (!s.ok()) {
    std::fprintf(stderr, "ringmaild: %s\n", std::string(s.message()).c_str());
    loops_->StopAll();
    return 1;
  }
  parts_.clear();  // every loop has stopped: nothing is in flight
  engines_.clear();
  control_.reset();
  delivery_log_.reset();
  reception_log_.reset();
  thread_pools_->StopAll();
  core::LogInfo("stopped");
  return exit_status_;
}

// =========================================================================================
// HTTP listener (listeners/http): start-up on the HTTP_Listener's pool, the hooks behind
// GET /metrics and GET /api/v1/queues, and settings on reload. Each loop of the pool gets
// an HttpListener beside (or instead of) the ESMTP one, sharing that loop's SpoolWriter;
// a loop that serves no ESMTP gets its own ledger and writer here.

absl::Status Daemon::StartHttpListeners() {
  if (!config_->http.has_value() || config_->http->listen.empty()) return absl::OkStatus();
  const config::HttpListenerConfig& hc = *config_->http;
  const core::LoopPool* pool = loops_->pool(hc.event_loop);
  if (pool == nullptr) return absl::NotFoundError("HTTP_Listener: unknown event_loop pool");
  RM_ASSIGN_OR_RETURN(http_settings_, listeners::http::HttpSettings::FromConfig(config_));
  auto hooks = std::make_shared<listeners::http::HttpHooks>();
  hooks->metrics = [this](listeners::http::HookReply r) { AnswerHttpHook(std::move(r), true); };
  hooks->queues = [this](listeners::http::HookReply r) { AnswerHttpHook(std::move(r), false); };
  // Injections' messages are built on the IO pool (a loop thread calls this: the pool's
  // TrySubmit is thread-safe, and the pool outlives the loops); a full backlog builds them
  // on the loop instead.
  core::ThreadPool* io = thread_pools_->Find(core::kIoPool);
  hooks->run_off_loop = [io](absl::AnyInvocable<void() &&> job) {
    return io != nullptr && io->TrySubmit(std::move(job)) == core::SubmitResult::kAccepted;
  };
  http_hooks_ = std::move(hooks);
  std::vector<config::NetAddress> addresses;
  for (const config::ListenConfig& l : hc.listen) addresses.push_back(l.address);
  for (core::Loop* loop : pool->loops()) {
    LoopParts* parts = nullptr;
    for (auto& p : parts_) parts = p->loop == loop ? p.get() : parts;
    if (parts == nullptr) {  // kept even if set-up fails: freed only after the loops stop
      parts_.push_back(std::make_unique<LoopParts>());
      parts = parts_.back().get();
      parts->loop = loop;
    }
    RM_RETURN_IF_ERROR(core::RunOnLoopAndWait(*loop, [&]() -> absl::Status {
      if (parts->spool == nullptr) RM_RETURN_IF_ERROR(OpenLedgerAndSpool(*parts));
      parts->http = std::make_unique<listeners::http::HttpListener>(
          *loop, http_shared_, *parts->spool, reception_log_.get(), http_settings_, http_hooks_);
      return parts->http->Listen(addresses);
    }));
    // Port 0 (tests): every loop listens on the port the first one got.
    const std::vector<uint16_t>& ports = parts->http->bound_ports();
    for (size_t i = 0; i < addresses.size(); ++i) addresses[i].port = ports[i];
  }
  std::vector<std::string> shown;
  for (const config::NetAddress& a : addresses) shown.push_back(a.ToString());
  core::LogInfo("http listening on %s (%d loops)", absl::StrJoin(shown, " "), pool->size());
  ready_lines_.push_back(absl::StrCat("ready http=", absl::StrJoin(shown, ",")));
  return absl::OkStatus();
}

// On an HTTP loop: hop to the master, gather every loop's snapshot there, answer. The reply
// posts itself back to the HTTP loop; a full master inbox answers 503 at once.
void Daemon::AnswerHttpHook(listeners::http::HookReply reply, bool metrics) {
  auto shared_reply = std::make_shared<listeners::http::HookReply>(std::move(reply));
  core::Loop& master = loops_->master();
  const core::PostResult posted = master.Post([this, shared_reply, metrics] {
    GatherLoops([this, shared_reply, metrics](std::vector<LoopSnapshot> loops) {
      listeners::http::HookResponse r;
      if (metrics) {
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = Metrics(loops).body;
      } else {
        r.content_type = "application/json";
        r.body = QueuesJson(loops);
      }
      std::move(*shared_reply)(std::move(r));
    });
  });
  if (posted != core::PostResult::kOk) {
    std::move(*shared_reply)(listeners::http::HookResponse{
        503, "application/json", "{\"error\":\"the daemon is busy; try again\"}\n"});
  }
}

std::string Daemon::QueuesJson(const std::vector<LoopSnapshot>& loops) const {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t errors = 0;
  std::vector<std::string> items;
  for (const LoopSnapshot& s : loops) {
    messages += s.spool.messages;
    bytes += s.spool.bytes;
    errors += s.spool.requests_failed;
    std::string name;
    core::AppendJsonString(&name, s.name);
    items.push_back(absl::StrCat("{\"loop\":", name, ",\"messages_spooled\":", s.spool.messages,
                                 ",\"spool_batches\":", s.spool.batches, "}"));
  }
  return absl::StrCat("{\"delivery\":\"", engines_.empty() ? "not running" : "running",
                      "\",\"messages_spooled\":", messages, ",\"bytes_spooled\":", bytes,
                      ",\"spool_errors\":", errors, ",\"loops\":[", absl::StrJoin(items, ","),
                      "]}\n");
}

void Daemon::UpdateHttpSettings(std::shared_ptr<const listeners::http::HttpSettings> settings) {
  if (settings == nullptr) return;
  http_settings_ = settings;
  for (auto& parts : parts_) {
    LoopParts* p = parts.get();
    if (p->http == nullptr) continue;
    // Reserved: a full inbox must not leave one loop on the old settings after a reload
    // that answered "applied". Only a loop that has stopped misses it.
    (void)p->loop->Reserve().Post([p, settings] { p->http->UpdateSettings(settings); });
  }
}

}  // namespace ringmail::daemon
