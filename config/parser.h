// config/parser.h — builds the generic tree of a configuration text, following includes.
//
// The tree knows nothing of the schema: it is assignments (`key = value`) and scopes
// (`Name "arg" { ... }`) with the position of every name and value. `include "path"` is
// replaced by the statements of that file (path relative to the including file's folder),
// in place, at the same scope level.
//
// Limits (every one of them is input from outside): a file of at most kMaxFileBytes,
// scopes nested at most kMaxScopeDepth deep, includes nested at most kMaxIncludeDepth deep
// (and no cycles), at most kMaxIncludedFiles files and kMaxTotalBytes bytes per load, at
// most kMaxListItems items in one list.
//
// Errors go to the Diagnostics with their exact position; after an error the parser skips
// to the next line (or past the current block) and goes on, so one pass reports several
// mistakes. Single-threaded; the tree owns its strings.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/diagnostics.h"
#include "config/lexer.h"

namespace ringmail::config {

inline constexpr size_t kMaxFileBytes = 4 << 20;
inline constexpr size_t kMaxTotalBytes = 16 << 20;
inline constexpr int kMaxScopeDepth = 8;
inline constexpr int kMaxIncludeDepth = 8;
inline constexpr int kMaxIncludedFiles = 64;
inline constexpr size_t kMaxListItems = 4096;

// The right-hand side of an assignment: one scalar token, or a parenthesised list of them.
struct Value {
  Position pos;  // of the scalar, or of the '('
  bool is_list = false;
  std::vector<Token> items;
};

struct Node {
  enum class Kind : uint8_t { kAssignment, kScope };
  Kind kind = Kind::kAssignment;
  std::string name;               // as written
  Position pos;                   // of the name
  Value value;                    // kAssignment
  std::optional<Token> argument;  // kScope: the "arg" of `Name "arg" { }`, if any
  std::vector<Node> children;     // kScope
};

// Parses `text` (registered in `diagnostics` under `name`). Includes are resolved relative
// to the folder of `name`. Returns the statements parsed; check diagnostics->has_errors().
std::vector<Node> ParseConfigText(std::string_view text, std::string_view name,
                                  Diagnostics* diagnostics);

// Reads and parses `path`; a file that cannot be read is reported without a position.
std::vector<Node> ParseConfigFile(const std::string& path, Diagnostics* diagnostics);

// Parses a lone value in config syntax ("1m", "( \"a\" \"b\" )") — the schema's default
// texts go through this so that defaults and files share one parser.
absl::StatusOr<Value> ParseValueText(std::string_view text);

// Reads a whole regular file of at most `max_bytes`.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);

}  // namespace ringmail::config
