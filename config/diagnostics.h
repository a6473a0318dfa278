// config/diagnostics.h — source positions and the error list of one configuration load.
//
// A load (lexing, parsing, includes, schema checks, semantic checks) reports every error it
// can find, in source order of discovery, each as `file:line:col: message` (line and column
// 1-based, column counted in bytes, a tab counts as one). The list is capped so that a
// binary file fed as a config cannot produce megabytes of messages.
// One Diagnostics belongs to one load on one thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace ringmail::config {

// Where a token starts. `file` indexes Diagnostics::file_name().
struct Position {
  int file = 0;
  int line = 0;
  int column = 0;
};

struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;

  std::string ToString() const;  // "file:line:col: message"
};

class Diagnostics {
 public:
  // Errors kept; one more is recorded as "too many errors".
  static constexpr size_t kMaxErrors = 25;

  // Registers a source file (the main file, each include, or a string's name).
  int AddFile(std::string name);
  const std::string& file_name(int file) const { return files_[file]; }
  int file_count() const { return static_cast<int>(files_.size()); }

  void Error(Position position, std::string message);
  // An error with no position in a file (e.g. the main file cannot be read).
  void ErrorWithoutPosition(std::string file, std::string message);

  bool has_errors() const { return !errors_.empty(); }
  bool full() const { return errors_.size() >= kMaxErrors; }
  const std::vector<ConfigError>& errors() const { return errors_; }
  // InvalidArgument whose message is the errors, one per line (the first line is the first
  // error); OK when there are none.
  absl::Status ToStatus() const;
  // "file:line:col" for messages that point at another place ("first set at ...").
  std::string Where(Position position) const;

 private:
  std::vector<std::string> files_;
  std::vector<ConfigError> errors_;
  bool truncated_ = false;
};

}  // namespace ringmail::config
