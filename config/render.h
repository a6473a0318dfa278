// config/render.h — a loaded Config shown back as text (`ringctl config show`).
//
// Two forms, both driven by the schema table so that every key appears:
//   RenderConfigText: a complete configuration file with every value explicit (defaults and
//     inherited values included); loading it gives back an equal Config.
//   RenderConfigFlat: one `path = value` line per key, e.g.
//     `ESMTP_Listener.max_connections = 1000`, `ThreadPool "Unlink".Backlog = 100`.
// Values are in config syntax: sizes and durations with their largest exact unit.
// Pure functions of an immutable Config; any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/schema.h"

namespace ringmail::config {

// One scope instance of a Config, parents before their children.
struct ScopeInstance {
  ScopeKind kind;
  std::string path;  // "" for global; see ScopePath
  std::optional<std::string> argument;
  const void* object;  // the struct the scope's keys live in (nullptr: scope has no keys)
};
std::vector<ScopeInstance> ListScopeInstances(const Config& config);

struct FlatEntry {
  std::string scope_path;
  std::string path;   // KeyPath(scope_path, key name)
  std::string value;  // config syntax
  bool live = true;   // a change applies without restart
};
// Which keys a flattening or a diff (config/diff.h) looks at. kRestartOnly skips the live
// keys without rendering them: what a reload measures against the generation the daemon
// started with, cheap even with 100,000 Domain scopes (all of whose keys are live).
enum class KeyFilter : uint8_t { kAll, kRestartOnly };
std::vector<FlatEntry> FlattenConfig(const Config& config, KeyFilter filter = KeyFilter::kAll);

std::string RenderConfigText(const Config& config);
std::string RenderConfigFlat(const Config& config);

}  // namespace ringmail::config
