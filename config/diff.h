// config/diff.h — what a `config reload` would change, key by key.
//
// DiffConfigs compares two generations through the schema table: every key whose rendered
// value differs, and every scope instance added or removed (a Domain, a Listen, a
// ThreadPool...), each marked applies_live or needs-restart from the table (eventloop
// concurrency, ThreadPool Backlog/Stack_Size, spool_dir, user, listen sockets... need a
// restart). ringmaild's reload applies the live changes and reports the restart-only ones,
// measured against the generation it started with until it restarts
// (tools/ringmaild/daemon_reload.cc).
// Pure; any thread.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "config/render.h"

namespace ringmail::config {

struct ConfigChange {
  std::string path;       // "ESMTP_Listener.max_connections", "Domain \"example.com\""
  std::string old_value;  // config syntax; "(absent)" for a scope that was not there
  std::string new_value;  // config syntax; "(absent)" for a scope that is gone
  bool applies_live = true;
};

// Added scopes, then changed keys (in the new configuration's order), then removed scopes.
// kRestartOnly: only the changes that need a restart (keys and scope instances).
std::vector<ConfigChange> DiffConfigs(const Config& old_config, const Config& new_config,
                                      KeyFilter filter = KeyFilter::kAll);
bool AllChangesLive(const std::vector<ConfigChange>& changes);
// One line per change: `path: old -> new (live)` or `(needs restart)`.
std::string FormatChanges(const std::vector<ConfigChange>& changes);

}  // namespace ringmail::config
