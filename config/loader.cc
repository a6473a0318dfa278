// config/loader.cc — schema-driven construction of a Config from the parsed tree, then the
// checks that need the whole file (pool references, TLS pairs, listen address clashes).
#include "config/loader.h"

#include <unistd.h>

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/schema.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

bool ValidPoolName(std::string_view name) {
  if (name.empty() || name.size() > kMaxPoolNameBytes) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

std::string SystemHostname() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof(buffer) - 1) != 0 || buffer[0] == '\0') return "localhost";
  // Lower case like a configured hostname, so that rendering and reloading agree.
  return absl::AsciiStrToLower(buffer);
}

// A bound socket's identity for clash detection: two listeners may not bind the same port on
// the same address, nor on an address and the wildcard of its family.
struct ListenSite {
  NetAddress address;
  Position pos;
  std::string owner;
};

bool Clash(const NetAddress& a, const NetAddress& b) {
  if (a.port == 0 || b.port == 0 || a.port != b.port) return false;  // port 0: ephemeral
  if (a.ip.family != b.ip.family) return false;
  IpAddress any;
  any.family = a.ip.family;
  return a.ip == b.ip || a.ip == any || b.ip == any;
}

class Builder {
 public:
  explicit Builder(Diagnostics* diagnostics) : d_(diagnostics) {}

  std::shared_ptr<Config> Build(const std::vector<Node>& nodes, std::string source);

 private:
  void ApplyKeys(ScopeKind scope, const std::vector<Node>& statements, void* object,
                 const std::string& path);
  void BuildChildScopes(ScopeKind parent, const std::vector<Node>& statements,
                        const std::string& parent_path, void* parent_object);
  void BuildScope(const ScopeSpec& spec, const Node& node, const std::string& parent_path,
                  void* parent_object);
  // Checks the argument against the scope's ArgKind; returns it canonicalised.
  std::optional<std::string> Argument(const ScopeSpec& spec, const Node& node, bool* ok);
  // Records an instance path; false (with an error) when it was already defined.
  bool Claim(const ScopeSpec& spec, const Node& node, const std::string& path);
  void BuildThreadPool(const Node& node, const std::string& name, const std::string& path);
  void BuildListen(const ScopeSpec& spec, const Node& node, const std::string& argument,
                   const std::string& path, void* parent_object);

  void ResolveNames();
  void ResolvePool(const std::string& path, std::string* field);
  // Keys of `scope` with an `inherit` global key take its value unless set at `path`.
  void InheritDefaults(ScopeKind scope, void* object, const std::string& path);
  void CheckRetry();
  void CheckTls(const std::string& scope_path, const std::string& certificate,
                const std::string& key, bool require_tls, const std::vector<ListenConfig>& listen);
  void CheckHttp();
  void CheckListenClashes();

  Position SetAt(const std::string& path, Position fallback) const {
    auto it = set_at_.find(path);
    return it == set_at_.end() ? fallback : it->second;
  }

  Diagnostics* d_;
  Config config_;
  absl::flat_hash_map<std::string, Position> set_at_;    // key path -> value position
  absl::flat_hash_map<std::string, Position> scope_at_;  // lower-case scope path -> name pos
  std::vector<ListenSite> listen_sites_;
};

std::shared_ptr<Config> Builder::Build(const std::vector<Node>& nodes, std::string source) {
  config_.source = std::move(source);
  ApplyDefaults(ScopeKind::kGlobal, &config_.global);
  ApplyDefaults(ScopeKind::kEsmtpListener, &config_.esmtp);
  ApplyDefaults(ScopeKind::kControlListener, &config_.control);
  for (const StandardThreadPool& standard : StandardThreadPools()) {
    ThreadPoolConfig pool;
    ApplyDefaults(ScopeKind::kThreadPool, &pool);
    pool.name = std::string(standard.name);
    pool.concurrency = standard.concurrency;
    if (standard.backlog > 0) pool.backlog = standard.backlog;
    pool.standard = true;
    config_.thread_pools.push_back(std::move(pool));
  }
  ApplyKeys(ScopeKind::kGlobal, nodes, &config_.global, "");
  BuildChildScopes(ScopeKind::kGlobal, nodes, "", nullptr);

  ResolveNames();
  for (auto& [name, domain] : config_.domains) {
    InheritDefaults(ScopeKind::kDomain, &domain, ScopePath("", "Domain", name));
  }
  InheritDefaults(ScopeKind::kDomain, &config_.default_domain, "");
  InheritDefaults(ScopeKind::kEsmtpListener, &config_.esmtp, "ESMTP_Listener");
  if (config_.control.socket_paths.empty()) {
    config_.control.socket_paths.emplace_back(kDefaultControlSocket);
  }
  CheckRetry();
  const EsmtpListenerConfig& smtp = config_.esmtp;
  CheckTls("ESMTP_Listener", smtp.tls_certificate, smtp.tls_key, smtp.require_tls, smtp.listen);
  CheckHttp();
  CheckListenClashes();
  return std::make_shared<Config>(std::move(config_));
}

void Builder::ApplyKeys(ScopeKind scope, const std::vector<Node>& statements, void* object,
                        const std::string& path) {
  for (const Node& node : statements) {
    if (node.kind != Node::Kind::kAssignment) continue;
    const KeySpec* key = FindKey(scope, node.name);
    if (key == nullptr) {
      // Built only while it can be kept: past the error cap it is dropped anyway.
      d_->Error(node.pos, d_->full() ? std::string() : UnknownKeyMessage(scope, node.name));
      continue;
    }
    std::string key_path = KeyPath(path, key->name);
    if (auto it = set_at_.find(key_path); it != set_at_.end()) {
      d_->Error(node.pos,
                Cat("duplicate key '", node.name, "' (first set at ", d_->Where(it->second), ")"));
      continue;
    }
    TypedValue value;
    Position error_at;
    std::string error;
    if (!ConvertValue(*key, node.value, &value, &error_at, &error)) {
      d_->Error(error_at, std::move(error));
      continue;
    }
    key->store(object, std::move(value));
    set_at_.emplace(std::move(key_path), node.value.pos);
  }
}

void Builder::BuildChildScopes(ScopeKind parent, const std::vector<Node>& statements,
                               const std::string& parent_path, void* parent_object) {
  for (const Node& node : statements) {
    if (node.kind != Node::Kind::kScope) continue;
    const ScopeSpec* spec = FindChildScope(parent, node.name);
    if (spec == nullptr) {
      d_->Error(node.pos, d_->full() ? std::string() : UnknownScopeMessage(parent, node.name));
      continue;
    }
    BuildScope(*spec, node, parent_path, parent_object);
  }
}

std::optional<std::string> Builder::Argument(const ScopeSpec& spec, const Node& node, bool* ok) {
  *ok = false;
  if (spec.arg == ArgKind::kNone) {
    if (node.argument) {
      d_->Error(node.argument->pos, Cat(spec.name, " takes no argument: ", spec.help));
      return std::nullopt;
    }
    *ok = true;
    return std::nullopt;
  }
  if (!node.argument) {
    d_->Error(node.pos, Cat(spec.name, " needs an argument: ", spec.help));
    return std::nullopt;
  }
  const Token& arg = *node.argument;
  std::string problem;
  std::string value = arg.text;
  switch (spec.arg) {
    case ArgKind::kName:
      if (!ValidPoolName(arg.text)) {
        problem = Cat("bad ", spec.name, " name ", arg.Describe(), " (1..", kMaxPoolNameBytes,
                      " letters, digits, '_', '-', '.')");
      }
      break;
    case ArgKind::kInetAddress: {
      absl::StatusOr<NetAddress> address = NetAddress::Parse(arg.text);
      if (address.ok())
        value = address->ToString();
      else
        problem = Cat("bad listen address: ", address.status().message());
      break;
    }
    case ArgKind::kPath:
      if (arg.text.empty() || arg.text.size() > kMaxSocketPathBytes) {
        problem = Cat("bad socket path ", arg.Describe(), " (1..", kMaxSocketPathBytes, " bytes)");
      }
      break;
    case ArgKind::kDomain: {
      absl::StatusOr<std::string> name = NormalizeDomainName(arg.text);
      if (name.ok())
        value = *name;
      else
        problem = Cat("bad domain: ", name.status().message());
      break;
    }
    case ArgKind::kNone:
      break;
  }
  if (!problem.empty()) {
    d_->Error(arg.pos, std::move(problem));
    return std::nullopt;
  }
  *ok = true;
  return value;
}

bool Builder::Claim(const ScopeSpec& spec, const Node& node, const std::string& path) {
  std::string lower = absl::AsciiStrToLower(path);
  if (!spec.repeatable) {
    // Non-repeatable scopes have no argument, so their path is the same every time.
    if (auto it = scope_at_.find(lower); it != scope_at_.end()) {
      d_->Error(node.pos, Cat("only one ", spec.name, " scope is allowed (first at ",
                              d_->Where(it->second), ")"));
      return false;
    }
  } else if (auto it = scope_at_.find(lower); it != scope_at_.end()) {
    d_->Error(node.pos, Cat("duplicate ", path, " (first defined at ", d_->Where(it->second), ")"));
    return false;
  }
  scope_at_.emplace(std::move(lower), node.pos);
  return true;
}

void Builder::BuildScope(const ScopeSpec& spec, const Node& node, const std::string& parent_path,
                         void* parent_object) {
  bool ok = false;
  std::optional<std::string> argument = Argument(spec, node, &ok);
  if (!ok) return;
  std::string path = ScopePath(parent_path, spec.name, argument);
  if (!Claim(spec, node, path)) return;
  switch (spec.kind) {
    case ScopeKind::kEventLoop: {
      EventLoopPoolConfig pool;
      ApplyDefaults(spec.kind, &pool);
      pool.name = *argument;
      ApplyKeys(spec.kind, node.children, &pool, path);
      config_.eventloops.push_back(std::move(pool));
      break;
    }
    case ScopeKind::kThreadPool:
      BuildThreadPool(node, *argument, path);
      return;
    case ScopeKind::kEsmtpListener:
      ApplyKeys(spec.kind, node.children, &config_.esmtp, path);
      BuildChildScopes(spec.kind, node.children, path, &config_.esmtp.listen);
      return;
    case ScopeKind::kHttpListener:
      config_.http.emplace();
      ApplyDefaults(spec.kind, &*config_.http);
      ApplyKeys(spec.kind, node.children, &*config_.http, path);
      BuildChildScopes(spec.kind, node.children, path, &config_.http->listen);
      return;
    case ScopeKind::kControlListener:
      ApplyKeys(spec.kind, node.children, &config_.control, path);
      BuildChildScopes(spec.kind, node.children, path, nullptr);
      return;
    case ScopeKind::kEsmtpListen:
    case ScopeKind::kHttpListen:
    case ScopeKind::kControlListen:
      BuildListen(spec, node, *argument, path, parent_object);
      return;
    case ScopeKind::kDomain: {
      DomainConfig domain;
      ApplyDefaults(spec.kind, &domain);
      domain.name = *argument;
      ApplyKeys(spec.kind, node.children, &domain, path);
      config_.domains.emplace(domain.name, std::move(domain));
      break;
    }
    case ScopeKind::kGlobal:
      return;
  }
  // Scopes that hold only keys: any nested scope is an error.
  BuildChildScopes(spec.kind, node.children, path, nullptr);
}

void Builder::BuildThreadPool(const Node& node, const std::string& name, const std::string& path) {
  for (ThreadPoolConfig& pool : config_.thread_pools) {
    if (absl::EqualsIgnoreCase(pool.name, name)) {
      // A standard pool keeps its canonical spelling, so the path is re-made from it.
      ApplyKeys(ScopeKind::kThreadPool, node.children, &pool,
                ScopePath("", "ThreadPool", pool.name));
      BuildChildScopes(ScopeKind::kThreadPool, node.children, path, nullptr);
      return;
    }
  }
  ThreadPoolConfig pool;
  ApplyDefaults(ScopeKind::kThreadPool, &pool);
  pool.name = name;
  ApplyKeys(ScopeKind::kThreadPool, node.children, &pool, path);
  BuildChildScopes(ScopeKind::kThreadPool, node.children, path, nullptr);
  config_.thread_pools.push_back(std::move(pool));
}

void Builder::BuildListen(const ScopeSpec& spec, const Node& node, const std::string& argument,
                          const std::string& path, void* parent_object) {
  if (spec.kind == ScopeKind::kControlListen) {
    ApplyKeys(spec.kind, node.children, nullptr, path);  // no keys: each one is reported
    BuildChildScopes(spec.kind, node.children, path, nullptr);
    config_.control.socket_paths.push_back(argument);
    return;
  }
  ListenConfig listen;
  ApplyDefaults(spec.kind, &listen);
  absl::StatusOr<NetAddress> address = NetAddress::Parse(argument);
  if (!address.ok()) return;  // not reached: Argument() made this text from a parsed address
  listen.address = *address;
  ApplyKeys(spec.kind, node.children, &listen, path);
  BuildChildScopes(spec.kind, node.children, path, nullptr);
  std::string owner(GetScopeSpec(spec.parent).name);
  listen_sites_.push_back(ListenSite{listen.address, node.pos, owner});
  static_cast<std::vector<ListenConfig>*>(parent_object)->push_back(std::move(listen));
}

// The greeting goes on the wire after "220 ": one reply line of printable ASCII (RFC 5321
// §4.2: a reply line is at most 512 octets with its code and CRLF).
std::string BannerProblem(std::string_view banner) {
  constexpr size_t kBannerBytesMax = 512 - 6;  // "220 " and CRLF
  if (banner.size() > kBannerBytesMax) {
    return Cat("longer than ", kBannerBytesMax, " characters (one reply line)");
  }
  for (char c : banner) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) return "only printable ASCII may go in the greeting";
  }
  return "";
}

void Builder::ResolveNames() {
  GlobalOptions& global = config_.global;
  Position nowhere{0, 1, 1};
  if (global.hostname.empty()) {
    global.hostname = SystemHostname();
  } else if (absl::StatusOr<std::string> name = NormalizeDomainName(global.hostname); name.ok()) {
    global.hostname = *name;
  } else {
    d_->Error(SetAt("hostname", nowhere), Cat("hostname: ", name.status().message()));
  }
  if (global.postmaster.empty()) {
    global.postmaster = Cat("postmaster@", global.hostname);
  } else if (size_t at = global.postmaster.rfind('@');
             at == std::string::npos || at == 0 || at + 1 == global.postmaster.size()) {
    d_->Error(
        SetAt("postmaster", nowhere),
        Cat("postmaster must be an address (local@domain), got ", QuoteString(global.postmaster)));
  }
  EsmtpListenerConfig& smtp = config_.esmtp;
  if (smtp.hostname.empty()) smtp.hostname = global.hostname;
  if (smtp.banner.empty()) {
    smtp.banner = Cat(smtp.hostname, " ESMTP ringmail");
  } else if (std::string why = BannerProblem(smtp.banner); !why.empty()) {
    d_->Error(SetAt("ESMTP_Listener.banner", nowhere), Cat("ESMTP_Listener.banner: ", why));
  }
  ResolvePool("delivery_pool", &global.delivery_pool);
  ResolvePool("maintainer_pool", &global.maintainer_pool);
  ResolvePool("ESMTP_Listener.event_loop", &smtp.event_loop);
  if (config_.http) ResolvePool("HTTP_Listener.event_loop", &config_.http->event_loop);
}

void Builder::ResolvePool(const std::string& path, std::string* field) {
  if (field->empty()) return;
  if (const EventLoopPoolConfig* pool = config_.FindEventLoop(*field)) {
    *field = pool->name;
    return;
  }
  std::vector<std::string> names;
  for (const EventLoopPoolConfig& pool : config_.eventloops) names.push_back(pool.name);
  std::string defined = names.empty() ? std::string("no eventloop scope is defined")
                                      : Cat("defined: ", absl::StrJoin(names, ", "));
  d_->Error(SetAt(path, Position{0, 1, 1}), Cat(path, " names eventloop pool ", QuoteString(*field),
                                                ", which does not exist (", defined, ")"));
}

void Builder::InheritDefaults(ScopeKind scope, void* object, const std::string& path) {
  for (const KeySpec& key : AllKeys()) {
    if (key.scope != scope || key.inherit.empty()) continue;
    if (!path.empty() && set_at_.contains(KeyPath(path, key.name))) continue;
    const KeySpec* from = FindKey(ScopeKind::kGlobal, key.inherit);
    if (from == nullptr) continue;  // schema_test checks every inherit names a global key
    key.store(object, from->load(&config_.global));
  }
}

void Builder::CheckRetry() {
  const GlobalOptions& global = config_.global;
  if (global.max_retry_interval >= global.retry_interval) return;
  Position at = SetAt("max_retry_interval", SetAt("retry_interval", Position{0, 1, 1}));
  d_->Error(at, Cat("max_retry_interval (", absl::FormatDuration(global.max_retry_interval),
                    ") is shorter than retry_interval (",
                    absl::FormatDuration(global.retry_interval), ")"));
}

void Builder::CheckTls(const std::string& scope_path, const std::string& certificate,
                       const std::string& key, bool require_tls,
                       const std::vector<ListenConfig>& listen) {
  Position scope_pos = Position{0, 1, 1};
  if (auto it = scope_at_.find(absl::AsciiStrToLower(scope_path)); it != scope_at_.end()) {
    scope_pos = it->second;
  }
  if (certificate.empty() != key.empty()) {
    std::string set = certificate.empty() ? "tls_key" : "tls_certificate";
    std::string unset = certificate.empty() ? "tls_certificate" : "tls_key";
    d_->Error(SetAt(KeyPath(scope_path, set), scope_pos),
              Cat(scope_path, ": ", set, " is set but ", unset, " is not (set both or neither)"));
    return;
  }
  if (!certificate.empty()) return;
  if (require_tls) {
    d_->Error(SetAt(KeyPath(scope_path, "require_tls"), scope_pos),
              Cat(scope_path, ": require_tls needs tls_certificate and tls_key"));
  }
  for (const ListenConfig& l : listen) {
    if (l.tls != ListenTls::kImplicit) continue;
    std::string path = ScopePath(scope_path, "Listen", l.address.ToString());
    d_->Error(SetAt(KeyPath(path, "tls"), scope_pos),
              Cat(path, ": tls = \"implicit\" needs tls_certificate and tls_key in ", scope_path));
  }
}

void Builder::CheckHttp() {
  if (!config_.http) return;
  const HttpListenerConfig& http = *config_.http;
  auto scope = scope_at_.find("http_listener");
  Position at = scope == scope_at_.end() ? Position{0, 1, 1} : scope->second;
  if (http.auth_token.empty()) {
    d_->Error(at, "HTTP_Listener needs auth_token (the injection API is never open)");
  }
  if (http.listen.empty()) {
    d_->Error(at, "HTTP_Listener has no Listen scope: add Listen \"IP:PORT\" { }");
  }
  CheckTls("HTTP_Listener", http.tls_certificate, http.tls_key, false, http.listen);
}

void Builder::CheckListenClashes() {
  for (size_t i = 0; i < listen_sites_.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (!Clash(listen_sites_[i].address, listen_sites_[j].address)) continue;
      d_->Error(listen_sites_[i].pos,
                Cat("listen address ", listen_sites_[i].address.ToString(), " clashes with ",
                    listen_sites_[j].owner, " Listen ", listen_sites_[j].address.ToString(), " at ",
                    d_->Where(listen_sites_[j].pos)));
      break;
    }
  }
}

}  // namespace

std::shared_ptr<Config> BuildConfig(const std::vector<Node>& nodes, std::string source,
                                    Diagnostics* diagnostics) {
  Builder builder(diagnostics);
  return builder.Build(nodes, std::move(source));
}

}  // namespace ringmail::config
