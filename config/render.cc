// config/render.cc — Config back to text, generically through the schema table.
#include "config/render.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

void Add(std::vector<ScopeInstance>* out, ScopeKind kind, const std::string& parent_path,
         std::optional<std::string> argument, const void* object) {
  std::string path = ScopePath(parent_path, GetScopeSpec(kind).name, argument);
  out->push_back(ScopeInstance{kind, std::move(path), std::move(argument), object});
}

void AddListens(std::vector<ScopeInstance>* out, ScopeKind kind, const std::string& parent,
                const std::vector<ListenConfig>& listens) {
  for (const ListenConfig& listen : listens)
    Add(out, kind, parent, listen.address.ToString(), &listen);
}

// The keys of each scope kind, in table order: looked up once, not by a walk of the whole
// table per scope instance (with 180,000 Domain scopes that walk was most of a reload).
const std::vector<const KeySpec*>& KeysOf(ScopeKind kind) {
  static const auto* const by_kind = [] {
    auto* table = new std::vector<std::vector<const KeySpec*>>();
    for (const KeySpec& key : AllKeys()) {
      const size_t k = static_cast<size_t>(key.scope);
      if (table->size() <= k) table->resize(k + 1);
      (*table)[k].push_back(&key);
    }
    return table;
  }();
  static const std::vector<const KeySpec*> kNone;
  const size_t k = static_cast<size_t>(kind);
  return k < by_kind->size() ? (*by_kind)[k] : kNone;
}

}  // namespace

std::vector<ScopeInstance> ListScopeInstances(const Config& config) {
  std::vector<ScopeInstance> out;
  out.push_back(ScopeInstance{ScopeKind::kGlobal, "", std::nullopt, &config.global});
  for (const EventLoopPoolConfig& pool : config.eventloops) {
    Add(&out, ScopeKind::kEventLoop, "", pool.name, &pool);
  }
  for (const ThreadPoolConfig& pool : config.thread_pools) {
    Add(&out, ScopeKind::kThreadPool, "", pool.name, &pool);
  }
  Add(&out, ScopeKind::kEsmtpListener, "", std::nullopt, &config.esmtp);
  AddListens(&out, ScopeKind::kEsmtpListen, "ESMTP_Listener", config.esmtp.listen);
  if (config.http) {
    Add(&out, ScopeKind::kHttpListener, "", std::nullopt, &*config.http);
    AddListens(&out, ScopeKind::kHttpListen, "HTTP_Listener", config.http->listen);
  }
  Add(&out, ScopeKind::kControlListener, "", std::nullopt, &config.control);
  for (const std::string& path : config.control.socket_paths) {
    Add(&out, ScopeKind::kControlListen, "Control_Listener", path, nullptr);
  }
  for (const auto& [name, domain] : config.domains) {
    Add(&out, ScopeKind::kDomain, "", name, &domain);
  }
  return out;
}

std::vector<FlatEntry> FlattenConfig(const Config& config, KeyFilter filter) {
  std::vector<FlatEntry> entries;
  for (const ScopeInstance& instance : ListScopeInstances(config)) {
    if (instance.object == nullptr) continue;
    for (const KeySpec* key : KeysOf(instance.kind)) {
      const bool live = key->apply == Apply::kLive;
      if (live && filter == KeyFilter::kRestartOnly) continue;
      entries.push_back(FlatEntry{instance.path, KeyPath(instance.path, key->name),
                                  RenderValue(*key, key->load(instance.object)), live});
    }
  }
  return entries;
}

std::string RenderConfigFlat(const Config& config) {
  std::string out;
  for (const FlatEntry& entry : FlattenConfig(config)) {
    Append(&out, entry.path, " = ", entry.value, "\n");
  }
  return out;
}

std::string RenderConfigText(const Config& config) {
  std::string out =
      Cat("# ringmail configuration, every value explicit (from ", config.source, ")\n");
  int open = 0;  // braces open: 1 inside a top-level scope, 2 inside a Listen
  auto close_to = [&](int depth) {
    while (open > depth) {
      --open;
      Append(&out, std::string(2 * open, ' '), "}\n");
    }
  };
  for (const ScopeInstance& instance : ListScopeInstances(config)) {
    const ScopeSpec& spec = GetScopeSpec(instance.kind);
    int depth = 0;
    if (instance.kind != ScopeKind::kGlobal) {
      depth = spec.parent == ScopeKind::kGlobal ? 1 : 2;
      close_to(depth - 1);
      Append(&out, std::string(2 * (depth - 1), ' '), spec.name);
      if (instance.argument) Append(&out, " ", QuoteString(*instance.argument));
      Append(&out, " {\n");
      open = depth;
    }
    if (instance.object == nullptr) continue;
    for (const KeySpec& key : AllKeys()) {
      if (key.scope != instance.kind) continue;
      Append(&out, std::string(2 * depth, ' '), key.name, " = ",
             RenderValue(key, key.load(instance.object)), "\n");
    }
  }
  close_to(0);
  return out;
}

}  // namespace ringmail::config
