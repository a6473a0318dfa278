// config/diagnostics.cc — error formatting and capping.
#include "config/diagnostics.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "config/strings.h"

namespace ringmail::config {

std::string ConfigError::ToString() const {
  if (line <= 0) return Cat(file, ": ", message);
  return Cat(file, ":", line, ":", column, ": ", message);
}

int Diagnostics::AddFile(std::string name) {
  files_.push_back(std::move(name));
  return static_cast<int>(files_.size()) - 1;
}

void Diagnostics::Error(Position position, std::string message) {
  if (full()) {
    truncated_ = true;
    return;
  }
  std::string file = position.file >= 0 && position.file < file_count() ? files_[position.file]
                                                                        : std::string("<config>");
  errors_.push_back(
      ConfigError{std::move(file), position.line, position.column, std::move(message)});
}

void Diagnostics::ErrorWithoutPosition(std::string file, std::string message) {
  if (full()) {
    truncated_ = true;
    return;
  }
  errors_.push_back(ConfigError{std::move(file), 0, 0, std::move(message)});
}

absl::Status Diagnostics::ToStatus() const {
  if (errors_.empty()) return absl::OkStatus();
  std::string text;
  for (const ConfigError& error : errors_) {
    if (!text.empty()) text += '\n';
    text += error.ToString();
  }
  if (truncated_) {
    Append(&text, "\n(too many errors; only the first ", kMaxErrors, " are shown)");
  }
  return absl::InvalidArgumentError(text);
}

std::string Diagnostics::Where(Position position) const {
  std::string file =
      position.file >= 0 && position.file < file_count() ? files_[position.file] : "<config>";
  return Cat(file, ":", position.line, ":", position.column);
}

}  // namespace ringmail::config
