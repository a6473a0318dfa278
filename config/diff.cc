// config/diff.cc — generation-to-generation changes via the flattened views.
#include "config/diff.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "config/render.h"
#include "config/schema.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

constexpr std::string_view kAbsent = "(absent)";
constexpr std::string_view kPresent = "(defined)";

}  // namespace

std::vector<ConfigChange> DiffConfigs(const Config& old_config, const Config& new_config,
                                      KeyFilter filter) {
  const bool restart_only = filter == KeyFilter::kRestartOnly;
  std::vector<ScopeInstance> old_scopes = ListScopeInstances(old_config);
  std::vector<ScopeInstance> new_scopes = ListScopeInstances(new_config);
  absl::flat_hash_map<std::string, const ScopeInstance*> old_by_path, new_by_path;
  for (const ScopeInstance& s : old_scopes) old_by_path.emplace(s.path, &s);
  for (const ScopeInstance& s : new_scopes) new_by_path.emplace(s.path, &s);

  std::vector<ConfigChange> changes;
  for (const ScopeInstance& s : new_scopes) {
    if (old_by_path.contains(s.path)) continue;
    bool live = GetScopeSpec(s.kind).add_remove == Apply::kLive;
    if (live && restart_only) continue;
    changes.push_back(ConfigChange{s.path, std::string(kAbsent), std::string(kPresent), live});
  }
  std::vector<FlatEntry> old_entries = FlattenConfig(old_config, filter);
  absl::flat_hash_map<std::string, const FlatEntry*> old_values;
  for (const FlatEntry& e : old_entries) old_values.emplace(e.path, &e);
  for (const FlatEntry& e : FlattenConfig(new_config, filter)) {
    auto it = old_values.find(e.path);
    // Keys of an added scope are part of the scope's own change above.
    if (it == old_values.end() || it->second->value == e.value) continue;
    changes.push_back(ConfigChange{e.path, it->second->value, e.value, e.live});
  }
  for (const ScopeInstance& s : old_scopes) {
    if (new_by_path.contains(s.path)) continue;
    bool live = GetScopeSpec(s.kind).add_remove == Apply::kLive;
    if (live && restart_only) continue;
    changes.push_back(ConfigChange{s.path, std::string(kPresent), std::string(kAbsent), live});
  }
  return changes;
}

bool AllChangesLive(const std::vector<ConfigChange>& changes) {
  for (const ConfigChange& change : changes) {
    if (!change.applies_live) return false;
  }
  return true;
}

std::string FormatChanges(const std::vector<ConfigChange>& changes) {
  std::string out;
  for (const ConfigChange& c : changes) {
    Append(&out, c.path, ": ", c.old_value, " -> ", c.new_value,
           c.applies_live ? " (live)\n" : " (needs restart)\n");
  }
  return out;
}

}  // namespace ringmail::config
