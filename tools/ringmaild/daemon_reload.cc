// Configuration commands: show, check, and the live reload (`ringctl config reload`,
// SIGHUP): parse → validate → diff → publish the new generation and hand what changed to
// the loops. Sessions in progress keep the Settings (and so the generation) they started
// with; new connections get the new ones. Restart-only changes are reported, not applied.
#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/default_config.h"
#include "config/diff.h"
#include "config/render.h"
#include "core/log.h"
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
    if (topology.delivery_loops[i]->Post([engine, next, tls_client] {
          engine->SetConfig(next);
          engine->SetTlsClient(tls_client);
        }) != core::PostResult::kOk) {
      core::LogWarning("reload: delivery loop %s busy; it keeps its old settings",
                       topology.delivery_loops[i]->name());
    }
  }
}

}  // namespace

Response Daemon::ConfigShow(const std::vector<std::string>& w, bool json) {
  const std::string filter = w.size() > 2 ? absl::AsciiStrToLower(w[2]) : "";
  std::vector<std::string> lines;
  std::vector<std::string> items;
  for (const config::FlatEntry& e : config::FlattenConfig(*config_)) {
    if (!filter.empty() && !absl::StrContains(absl::AsciiStrToLower(e.path), filter)) continue;
    lines.push_back(absl::StrCat(e.path, " = ", e.value));
    items.push_back(absl::StrCat("{\"key\":", JsonStr(e.path), ",\"value\":", JsonStr(e.value),
                                 ",\"live\":", e.live ? "true" : "false", "}"));
  }
  if (lines.empty()) return Response{false, absl::StrCat("no key matches '", filter, "'\n")};
  if (json) return Response{true, absl::StrCat("[", absl::StrJoin(items, ","), "]\n")};
  return Response{true, absl::StrCat(absl::StrJoin(lines, "\n"), "\n")};
}

Response Daemon::ConfigCheck(const std::vector<std::string>& w) {
  if (w.size() != 3) return Response{false, "usage: config check FILE\n"};
  std::vector<config::ConfigError> errors;
  auto loaded = config::LoadConfigFile(w[2], &errors);
  if (!loaded.ok()) return Response{false, ErrorsText(loaded.status(), errors) + "\n"};
  absl::Status s = config::ValidateConcurrency(**loaded, cpus_, license_.licensed_concurrency);
  if (!s.ok()) return Response{false, absl::StrCat(w[2], ": ", s.message(), "\n")};
  return Response{true, absl::StrCat(w[2], ": configuration OK\n")};
}

Response Daemon::Reload(bool json) {
  if (config_->source == config::kDefaultConfigName) {
    return Response{false, "running on the embedded default configuration: there is no "
                           "file to reload (start with --config FILE)\n"};
  }
  // The service manager sees RELOADING=1 … READY=1 around every attempt (refused or not);
  // READY's STATUS names the generation that runs afterwards.
  notifier_.Reloading(absl::StrCat("reloading ", config_->source));
  absl::Cleanup ready = [this] {
    notifier_.Ready(absl::StrCat("accepting mail; config generation ",
                                 generations_.generation()));
  };
  std::vector<config::ConfigError> errors;
  auto loaded = config::LoadConfigFile(config_->source, &errors);
  if (!loaded.ok()) {
    return Response{false, absl::StrCat("reload refused, the running configuration is "
                                        "unchanged:\n", ErrorsText(loaded.status(), errors),
                                        "\n")};
  }
  std::shared_ptr<const config::Config> next = *std::move(loaded);
  absl::Status s = config::ValidateConcurrency(*next, cpus_, license_.licensed_concurrency);
  if (!s.ok()) return Response{false, absl::StrCat("reload refused: ", s.message(), "\n")};
  const std::vector<config::ConfigChange> changes = config::DiffConfigs(*config_, *next);
  const core::LoopPool* pool = loops_->pool(next->esmtp.event_loop);
  auto settings = listeners::esmtp::Settings::FromConfig(
      next, pool != nullptr ? static_cast<int>(pool->size()) : 1);
  if (!settings.ok()) return Response{false, absl::StrCat("reload refused: ",
                                                          settings.status().message(), "\n")};
  auto http_settings = HttpSettingsFor(next);
  if (!http_settings.ok()) {
    return Response{false,
                    absl::StrCat("reload refused: ", http_settings.status().message(), "\n")};
  }
  // Outbound TLS trust anchors are re-read here, on the master (blocking file reads).
  auto tls_client = delivery::MakeOutboundTlsContext(next->global);
  if (!tls_client.ok()) {
    return Response{false, absl::StrCat("reload refused: outbound TLS: ",
                                        tls_client.status().message(), "\n")};
  }
  // Live from here on: the new generation, the listeners' settings, pool concurrency.
  config_ = next;
  generations_.Publish(next);
  ++reloads_;
  esmtp_settings_ = *settings;
  for (auto& parts : parts_) {
    LoopParts* p = parts.get();
    auto st = esmtp_settings_;
    if (p->esmtp == nullptr) continue;
    if (p->loop->Post([p, st] { p->esmtp->UpdateSettings(st); }) != core::PostResult::kOk) {
      core::LogWarning("reload: loop %s busy; it keeps its old settings", p->loop->name());
    }
  }
  UpdateHttpSettings(*std::move(http_settings));
  UpdateEngines(engines_, topology_, next, *tls_client);
  for (const config::ThreadPoolConfig& tp : next->thread_pools) {
    (void)thread_pools_->SetConcurrency(tp.name, static_cast<uint32_t>(tp.concurrency));
  }
  std::vector<std::string> lines;
  std::vector<std::string> items;
  for (const config::ConfigChange& c : changes) {
    lines.push_back(absl::StrCat(c.path, ": ", c.old_value, " -> ", c.new_value,
                                 c.applies_live ? " (applied)" : " (needs restart)"));
    items.push_back(absl::StrCat("{\"key\":", JsonStr(c.path), ",\"old\":", JsonStr(c.old_value),
                                 ",\"new\":", JsonStr(c.new_value), ",\"applied\":",
                                 c.applies_live ? "true" : "false", "}"));
  }
  core::LogInfo("config reload: generation %d, %d change(s)", generations_.generation(),
                changes.size());
  if (json) {
    return Response{true, absl::StrCat("{\"generation\":", generations_.generation(),
                                       ",\"changes\":[", absl::StrJoin(items, ","), "]}\n")};
  }
  if (lines.empty()) return Response{true, "configuration reloaded: no changes\n"};
  return Response{true, absl::StrCat("configuration reloaded (generation ",
                                     generations_.generation(), "):\n",
                                     absl::StrJoin(lines, "\n"), "\n")};
}

}  // namespace ringmail::daemon
