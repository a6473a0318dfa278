// Configuration commands: show, check, and the live reload (`ringctl config reload`,
// SIGHUP): parse → validate → diff → publish the new generation and hand what changed to
// the loops. Sessions in progress keep the Settings (and so the generation) they started
// with; new connections get the new ones. Restart-only changes are reported, not applied.
#include <malloc.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/default_config.h"
#include "config/diff.h"
#include "config/render.h"
#include "core/log.h"
#include "tls/context.h"
#include "tools/ringmaild/config_check.h"
#include "tools/ringmaild/daemon.h"

namespace ringmail::daemon {
namespace {

using control::Response;

std::string JsonStr(std::string_view s) {
  std::string out;
  core::AppendJsonString(&out, s);
  return out;
}

std::string ErrorsText(const absl::Status& status,
                       const std::vector<config::ConfigError>& errors) {
  if (errors.empty()) return std::string(status.message());
  std::vector<std::string> lines;
  for (const auto& e : errors) lines.push_back(e.ToString());
  return absl::StrJoin(lines, "\n");
}

// Delivery: the Domain scopes (routes, limits, tls policy) and the new TLS context reach
// each engine on its own loop; connections already open keep what they started with.
void UpdateEngines(const std::vector<std::unique_ptr<delivery::Engine>>& engines,
                   const delivery::DeliveryTopology& topology,
                   const std::shared_ptr<const config::Config>& next,
                   const std::shared_ptr<const tls::TlsContext>& tls_client) {
  for (size_t i = 0; i < engines.size() && i < topology.delivery_loops.size(); ++i) {
    delivery::Engine* engine = engines[i].get();
    if (engine == nullptr) continue;
    // Reserved, as every part of a reload: a busy loop runs it late, never not at all.
    (void)topology.delivery_loops[i]->Reserve().Post([engine, next, tls_client] {
      engine->SetConfig(next);
      engine->SetTlsClient(tls_client);
    });
  }
}

// What a reload of `next` changes: the live changes against the generation published now,
// and every restart-only difference against the one the daemon started with, which is what
// still runs of those (a restart-only change reported once used to be forgotten by the next
// reload, and `config show` claimed it ran: session 12's reload audit, F4).
std::vector<config::ConfigChange> ReloadChanges(const config::Config& started,
                                                const config::Config& current,
                                                const config::Config& next) {
  std::vector<config::ConfigChange> pending =
      config::DiffConfigs(started, next, config::KeyFilter::kRestartOnly);
  // A key of a scope that does not run until the restart (an HTTP_Listener added since the
  // start) is not applied by changing it either.
  std::vector<std::string> waiting_scopes;
  for (const config::ConfigChange& p : pending) waiting_scopes.push_back(p.path + ".");
  std::vector<config::ConfigChange> changes;
  for (config::ConfigChange& c : config::DiffConfigs(current, next)) {
    if (!c.applies_live) continue;
    for (const std::string& scope : waiting_scopes) {
      if (absl::StartsWith(c.path, scope)) c.applies_live = false;
    }
    changes.push_back(std::move(c));
  }
  for (config::ConfigChange& c : pending) changes.push_back(std::move(c));
  return changes;
}

}  // namespace

void Daemon::ConfigShow(const std::vector<std::string>& w, bool json, Reply reply) {
  std::string filter = w.size() > 2 ? absl::AsciiStrToLower(w[2]) : "";
  // Both generations are immutable and shared: the worker reads its own references.
  RunOffLoop([started = started_config_, current = config_, filter = std::move(filter), json,
              back = loops_->master().Reserve(), reply = std::move(reply)](bool accepted) mutable {
    if (!accepted) {  // still on the master
      std::move(reply)(Response{false, "config show: the IO thread pool is busy\n"});
      return;
    }
    Response r = RenderConfigShow(*started, *current, filter, json);
    (void)std::move(back).Post([reply = std::move(reply), r = std::move(r)]() mutable {
      std::move(reply)(std::move(r));
    });
  });
}

Response Daemon::RenderConfigShow(const config::Config& started, const config::Config& current,
                                  const std::string& filter, bool json) {
  const auto matches = [&](const std::string& path) {
    return filter.empty() || absl::StrContains(absl::AsciiStrToLower(path), filter);
  };
  // What the file says and does not run yet: a key shows the value that runs, and the one
  // waiting; a scope added or removed is listed after the keys.
  absl::flat_hash_map<std::string, config::ConfigChange> pending;
  for (config::ConfigChange& c :
       config::DiffConfigs(started, current, config::KeyFilter::kRestartOnly)) {
    pending.emplace(c.path, std::move(c));
  }
  std::vector<std::string> lines;
  std::vector<std::string> items;
  for (const config::FlatEntry& e : config::FlattenConfig(current)) {
    if (!matches(e.path)) continue;
    auto waiting = pending.find(e.path);
    if (waiting == pending.end()) {
      lines.push_back(absl::StrCat(e.path, " = ", e.value));
      items.push_back(absl::StrCat("{\"key\":", JsonStr(e.path), ",\"value\":", JsonStr(e.value),
                                   ",\"live\":", e.live ? "true" : "false", "}"));
      continue;
    }
    const std::string& running = waiting->second.old_value;
    lines.push_back(absl::StrCat(e.path, " = ", running, "  (needs restart for ", e.value, ")"));
    items.push_back(absl::StrCat("{\"key\":", JsonStr(e.path), ",\"value\":", JsonStr(running),
                                 ",\"live\":false,\"after_restart\":", JsonStr(e.value), "}"));
    pending.erase(waiting);
  }
  std::vector<std::string> scopes;
  for (const auto& [path, c] : pending) {
    if (matches(path)) scopes.push_back(path);
  }
  std::sort(scopes.begin(), scopes.end());
  for (const std::string& path : scopes) {
    const config::ConfigChange& c = pending.at(path);
    lines.push_back(absl::StrCat(path, ": ", c.old_value, " -> ", c.new_value, " (needs restart)"));
    items.push_back(absl::StrCat("{\"scope\":", JsonStr(path), ",\"running\":",
                                 JsonStr(c.old_value), ",\"after_restart\":",
                                 JsonStr(c.new_value), "}"));
  }
  if (lines.empty()) return Response{false, absl::StrCat("no key matches '", filter, "'\n")};
  if (json) return Response{true, absl::StrCat("[", absl::StrJoin(items, ","), "]\n")};
  return Response{true, absl::StrCat(absl::StrJoin(lines, "\n"), "\n")};
}

// A reload's or check's file reads, parsing and TLS contexts (certificates, keys, the CA
// store: milliseconds, or more on a slow disk) run on an IO pool worker, never on the master
// loop, which runs delivery and the control socket meanwhile. The job reads only what it is
// given: the master's state is touched again only by the result's task, on the master.
void Daemon::ConfigCheck(const std::vector<std::string>& w, Reply reply) {
  if (w.size() != 3) {
    std::move(reply)(Response{false, "usage: config check FILE\n"});
    return;
  }
  const int cpus = cpus_;
  const int licensed = license_.licensed_concurrency;
  // The answer comes back through a reserved post: a full master inbox cannot drop it.
  core::ReservedPost back = loops_->master().Reserve();
  RunOffLoop([path = w[2], cpus, licensed, back = std::move(back), reply = std::move(reply)](
                 bool accepted) mutable {
    if (!accepted) {  // still on the master
      std::move(reply)(Response{false, "config check: the IO thread pool is busy\n"});
      return;
    }
    std::vector<config::ConfigError> errors;
    Response r;
    auto loaded = config::LoadConfigFile(path, &errors);
    if (!loaded.ok()) {
      r = Response{false, ErrorsText(loaded.status(), errors) + "\n"};
    } else if (absl::Status s = config::ValidateConcurrency(**loaded, cpus, licensed); !s.ok()) {
      r = Response{false, absl::StrCat(path, ": ", s.message(), "\n")};
    } else if (absl::Status t = CheckListenersAndTls(*loaded); !t.ok()) {
      r = Response{false, absl::StrCat(path, ": ", t.message(), "\n")};
    } else {
      r = Response{true, absl::StrCat(path, ": configuration OK\n")};
    }
    // A stopping master drops the answer with its control connections.
    (void)std::move(back).Post([reply = std::move(reply), r = std::move(r)]() mutable {
      std::move(reply)(std::move(r));
    });
  });
}

// Runs `job(true)` on an IO pool worker, or `job(false)` here when the pool cannot take it
// (its backlog is full, or it is stopping): the job then answers "busy" instead of reading
// files on the master.
// A job parses a whole configuration (tens of MB with 150,000 Domain scopes) on whichever
// worker runs it, each with its own malloc arena: the memory it freed is given back to the
// system after it, else each check left ~30 MB resident up to ~500 MB (session 11's audit,
// F6). Rare, and a trim costs milliseconds.
void Daemon::RunOffLoop(OffLoopJob job) {
  auto holder = std::make_shared<OffLoopJob>(std::move(job));
  absl::AnyInvocable<void() &&> run = [holder] {
    std::move (*holder)(true);
    malloc_trim(0);
  };
  core::ThreadPool* pool = thread_pools_->Find(core::kIoPool);
  if (pool == nullptr || pool->TrySubmit(std::move(run)) != core::SubmitResult::kAccepted) {
    std::move (*holder)(false);
  }
}

// Everything a reload reads and builds before anything changes: made by PrepareReload on an
// IO pool worker from copies, applied by FinishReload on the master.
struct Daemon::ReloadPlan {
  std::string refusal;  // non-empty: refused, the running configuration stays
  std::shared_ptr<const config::Config> next;
  std::vector<config::ConfigChange> changes;
  std::shared_ptr<const listeners::esmtp::Settings> esmtp;
  std::shared_ptr<const listeners::http::HttpSettings> http;  // null: no HTTP listener
  std::shared_ptr<const tls::TlsContext> tls_client;
  // Read again on every reload (an address added to an interface since the start would
  // otherwise never count as this server's own).
  absl::StatusOr<std::vector<config::IpAddress>> local_addresses;
};

struct Daemon::ReloadInputs {
  std::shared_ptr<const config::Config> current;
  std::shared_ptr<const config::Config> started;
  int cpus = 1;
  int licensed = 1;
  bool http_running = false;
  const core::LoopSet* loops = nullptr;  // its pools are fixed after start: read-only here
};

Daemon::ReloadPlan Daemon::PrepareReload(const ReloadInputs& in) {
  ReloadPlan plan;
  std::vector<config::ConfigError> errors;
  auto loaded = config::LoadConfigFile(in.current->source, &errors);
  if (!loaded.ok()) {
    plan.refusal = absl::StrCat("reload refused, the running configuration is unchanged:\n",
                                ErrorsText(loaded.status(), errors), "\n");
    return plan;
  }
  std::shared_ptr<const config::Config> next = *std::move(loaded);
  absl::Status s = config::ValidateConcurrency(*next, in.cpus, in.licensed);
  if (!s.ok()) {
    plan.refusal = absl::StrCat("reload refused: ", s.message(), "\n");
    return plan;
  }
  // The listener's pool is the one it started on (event_loop needs a restart).
  const core::LoopPool* pool = in.loops->pool(in.started->esmtp.event_loop);
  auto esmtp = listeners::esmtp::Settings::FromConfig(
      next, pool != nullptr ? static_cast<int>(pool->size()) : 1);
  if (!esmtp.ok()) {
    plan.refusal = absl::StrCat("reload refused: ", esmtp.status().message(), "\n");
    return plan;
  }
  if (in.http_running && next->http.has_value()) {
    auto http = listeners::http::HttpSettings::FromConfig(next);
    if (!http.ok()) {
      plan.refusal = absl::StrCat("reload refused: ", http.status().message(), "\n");
      return plan;
    }
    plan.http = *std::move(http);
  }
  auto tls_client = delivery::MakeOutboundTlsContext(next->global);
  if (!tls_client.ok()) {
    plan.refusal = absl::StrCat("reload refused: outbound TLS: ",
                                tls_client.status().message(), "\n");
    return plan;
  }
  plan.changes = ReloadChanges(*in.started, *in.current, *next);
  plan.next = std::move(next);
  plan.esmtp = *std::move(esmtp);
  plan.tls_client = *std::move(tls_client);
  plan.local_addresses = delivery::LocalAddresses();  // getifaddrs: on this IO worker
  return plan;
}

void Daemon::Reload(bool json, Reply reply) {
  if (config_->source == config::kDefaultConfigName) {
    std::move(reply)(Response{false, "running on the embedded default configuration: there "
                                     "is no file to reload (start with --config FILE)\n"});
    return;
  }
  // One reload at a time; requests made while one runs share the next one, which reads the
  // file again (it may have changed since the running one read it).
  reload_waiting_.push_back(ReloadRequest{json, std::move(reply)});
  if (reload_running_.empty()) StartReload();
}

void Daemon::StartReload() {
  reload_running_ = std::move(reload_waiting_);
  reload_waiting_.clear();
  // The service manager sees RELOADING=1 … READY=1 around every attempt (refused or not);
  // READY's STATUS names the generation that runs afterwards.
  notifier_.Reloading(absl::StrCat("reloading ", config_->source));
  ReloadInputs in;
  in.current = config_;
  in.started = started_config_;
  in.cpus = cpus_;
  in.licensed = license_.licensed_concurrency;
  in.http_running = http_settings_ != nullptr;
  in.loops = loops_.get();
  // The plan comes back through a reserved post: dropped by a full master inbox, it would
  // leave reload_running_ set and every later reload waiting behind it.
  RunOffLoop([this, in, back = loops_->master().Reserve()](bool accepted) mutable {
    if (!accepted) {  // still on the master
      ReloadPlan refused;
      refused.refusal = "reload refused: the IO thread pool is busy; try again\n";
      FinishReload(std::move(refused));
      return;
    }
    ReloadPlan plan = PrepareReload(in);
    // Loading the new certificates' ECC keys filled this worker's ECC cache; the worker goes
    // on serving other jobs.
    tls::ReleaseThreadEccCache();
    // The Daemon outlives its loops and pools; a stopping master drops the reload.
    (void)std::move(back).Post([this, plan = std::move(plan)]() mutable {
      FinishReload(std::move(plan));
    });
  });
}

void Daemon::FinishReload(ReloadPlan plan) {
  std::vector<ReloadRequest> answered = std::move(reload_running_);
  reload_running_.clear();
  Response text;
  Response json;
  if (!plan.refusal.empty()) {
    text = json = Response{false, plan.refusal};
  } else {
    ApplyReload(plan);
    std::vector<std::string> lines;
    std::vector<std::string> items;
    for (const config::ConfigChange& c : plan.changes) {
      lines.push_back(absl::StrCat(c.path, ": ", c.old_value, " -> ", c.new_value,
                                   c.applies_live ? " (applied)" : " (needs restart)"));
      items.push_back(absl::StrCat("{\"key\":", JsonStr(c.path), ",\"old\":",
                                   JsonStr(c.old_value), ",\"new\":", JsonStr(c.new_value),
                                   ",\"applied\":", c.applies_live ? "true" : "false", "}"));
    }
    core::LogInfo("config reload: generation %d, %d change(s)", generations_.generation(),
                  plan.changes.size());
    json = Response{true, absl::StrCat("{\"generation\":", generations_.generation(),
                                       ",\"changes\":[", absl::StrJoin(items, ","), "]}\n")};
    text = lines.empty() ? Response{true, "configuration reloaded: no changes\n"}
                         : Response{true, absl::StrCat("configuration reloaded (generation ",
                                                       generations_.generation(), "):\n",
                                                       absl::StrJoin(lines, "\n"), "\n")};
  }
  notifier_.Ready(absl::StrCat("accepting mail; config generation ",
                               generations_.generation()));
  for (ReloadRequest& r : answered) std::move(r.reply)(r.json ? json : text);
  if (!reload_waiting_.empty()) StartReload();
}

// Live from here on: the new generation, the listeners' settings, pool concurrency.
void Daemon::ApplyReload(const ReloadPlan& plan) {
  config_ = plan.next;
  generations_.Publish(plan.next);
  ApplyLogLevel(config_->global.log_level);
  ++reloads_;
  esmtp_settings_ = plan.esmtp;
  for (auto& parts : parts_) {
    LoopParts* p = parts.get();
    auto st = esmtp_settings_;
    if (p->esmtp == nullptr) continue;
    // Reserved: a full inbox used to leave this loop on the old settings (with a warning in
    // the log) while the reload answered "applied".
    (void)p->loop->Reserve().Post([p, st] { p->esmtp->UpdateSettings(st); });
  }
  UpdateHttpSettings(plan.http);
  // The ledgers' copies of hostname and postmaster (bounces, a bare "postmaster"): they
  // used to keep the start-up values while the reload said "applied" (reload audit, F5).
  for (auto& parts : parts_) {
    LoopParts* p = parts.get();
    if (p->ledger == nullptr) continue;
    (void)p->loop->Reserve().Post([p, hostname = config_->global.hostname,
                                   postmaster = config_->global.postmaster]() mutable {
      p->ledger->SetIdentity(std::move(hostname), std::move(postmaster));
    });
  }
  if (control_ != nullptr) {  // on this (the master) loop, as the control listener
    const int64_t n = config_->control.max_connections;
    control_->SetMaxConnections(n > 0 ? n : control::ControlListener::Options{}.max_connections);
  }
  UpdateEngines(engines_, topology_, plan.next, plan.tls_client);
  ShareSelfEndpoints(plan.local_addresses, /*wait=*/false);
  for (const config::ThreadPoolConfig& tp : plan.next->thread_pools) {
    (void)thread_pools_->SetConcurrency(tp.name, static_cast<uint32_t>(tp.concurrency));
  }
}

}  // namespace ringmail::daemon
