// config/schema.h — the one declarative table of every configuration key and scope.
//
// Each key states its scope, name, type, default (as config text, parsed by the same code
// as a file), range, whether a change applies live or needs a restart, and the Config field
// it fills. The loader, the renderer (`config show`) and the differ (`config reload`) are all
// driven by this table, so a key exists in exactly one place (config/schema.cc).
//
// Callers: the loader (config/generation.cc), render/diff, and tests. The table is static
// and immutable; every function here is thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config.h"
#include "config/parser.h"

namespace ringmail::config {

enum class ValueType : uint8_t {
  kString,
  kInt,
  kSize,          // bytes; bare integer = bytes
  kDuration,      // bare integer = seconds
  kBool,          // true/false, yes/no, on/off, 1/0
  kPercentOrInt,  // 6 or "75%"
  kEnum,          // one of KeySpec::choices
  kStringList,
  kDomainList,  // DNS names, lower-cased
  kCidrList,
  kAddressList,  // IP[:PORT], default port 53 (resolvers)
  kRouteList,    // [IP][:PORT] or HOST[:PORT]; a lone string is a list of one, "" is empty
};

enum class ScopeKind : uint8_t {
  kGlobal,
  kEventLoop,
  kThreadPool,
  kEsmtpListener,
  kEsmtpListen,
  kHttpListener,
  kHttpListen,
  kControlListener,
  kControlListen,
  kDomain,
};

enum class Apply : uint8_t { kLive, kRestart };

// What a scope's argument is: none (`ESMTP_Listener { }`), a pool name, IP:PORT, a socket
// path, a domain.
enum class ArgKind : uint8_t { kNone, kName, kInetAddress, kPath, kDomain };

// One key's typed value while loading. Integers, sizes (bytes), durations (microseconds) and
// enum choices (index) are int64_t.
using TypedValue =
    std::variant<int64_t, bool, std::string, std::vector<std::string>, ConcurrencySpec, CidrList,
                 std::vector<NetAddress>, std::vector<RouteHost>>;

struct KeySpec {
  ScopeKind scope;
  std::string_view name;  // canonical spelling; matched case-insensitively
  ValueType type;
  std::string_view default_text;  // config syntax; ignored when `inherit` is set
  // Inclusive range of kInt, kSize (bytes), kDuration (microseconds) and the count form of
  // kPercentOrInt (its percent form is always 1..100); unused for other types.
  int64_t min;
  int64_t max;
  Apply apply;
  std::string_view choices;  // kEnum: "reject|normalize" (index = enum value)
  std::string_view inherit;  // a global key whose value is this key's default
  std::string_view help;
  // Field access on the scope's struct (GlobalOptions for kGlobal, ...).
  void (*store)(void* object, TypedValue value);
  TypedValue (*load)(const void* object);
};

struct ScopeSpec {
  ScopeKind kind;
  std::string_view name;  // as written in files; matched case-insensitively
  ScopeKind parent;       // kGlobal for top-level scopes (and for kGlobal itself)
  ArgKind arg;
  bool repeatable;   // may appear several times (with different arguments)
  Apply add_remove;  // adding or removing an instance on reload
  std::string_view help;
};

std::span<const KeySpec> AllKeys();
std::span<const ScopeSpec> AllScopes();
const ScopeSpec& GetScopeSpec(ScopeKind kind);
// Case-insensitive lookups; nullptr when absent.
const KeySpec* FindKey(ScopeKind scope, std::string_view name);
const ScopeSpec* FindChildScope(ScopeKind parent, std::string_view name);

// The closest candidate within a small edit distance (case-insensitive), or "".
std::string ClosestName(std::string_view name, std::span<const std::string_view> candidates);
// The message for an unknown key: "unknown key 'x' in ESMTP_Listener; did you mean 'y'?",
// or "'relay_hosts' is not a global key (it belongs in ESMTP_Listener)".
std::string UnknownKeyMessage(ScopeKind scope, std::string_view name);
std::string UnknownScopeMessage(ScopeKind parent, std::string_view name);

// Converts a parsed value for `key`, checking type and range. On error returns false with
// the message and the position of the offending token.
bool ConvertValue(const KeySpec& key, const Value& value, TypedValue* out, Position* error_at,
                  std::string* error);
// The value in config syntax (sizes and durations with their largest exact unit).
std::string RenderValue(const KeySpec& key, const TypedValue& value);
// Sets every key of `scope` on `object` to its default (inherited keys are left alone).
void ApplyDefaults(ScopeKind scope, void* object);

// The built-in thread pools: SwapOut 5, SwapIn 5, Unlink 6 (Backlog 100), Batch_Unlink 4,
// Close 0 (inline), CPU 4, IO 50, SpoolIn 1; other fields take the ThreadPool defaults.
struct StandardThreadPool {
  std::string_view name;
  int64_t concurrency;
  int64_t backlog;  // 0: the table default
};
std::span<const StandardThreadPool> StandardThreadPools();

// Quoted config string with escapes: "a\"b".
std::string QuoteString(std::string_view text);

// The path naming one scope instance in messages, `config show` and diffs: "ESMTP_Listener",
// "ThreadPool \"Unlink\"", "ESMTP_Listener.Listen \"[::1]:25\"" ("" is the global scope).
std::string ScopePath(std::string_view parent_path, std::string_view scope_name,
                      const std::optional<std::string>& argument);
// "spool_dir" at global scope, "ESMTP_Listener.max_connections" inside one.
std::string KeyPath(std::string_view scope_path, std::string_view key);

}  // namespace ringmail::config
