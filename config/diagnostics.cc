// config/diagnostics.cc — error formatting and capping.
#include "config/diagnostics.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/utf8.h"
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

namespace {

// Every error is one line (the Status lists them one per line): whatever raw text a message
// quotes — a value, a path, an address from the file — its line breaks and other control
// bytes are shown escaped here, in the one place all messages pass (found by
// fuzz/config_fuzz: "resolvers: bad address '127.0.0.1<CR>:53'" split its error). So are
// bytes that are not well-formed UTF-8 (a name from a binary file): the message goes on to
// terminals, logs and ringctl's JSON, and well-formed UTF-8 is shown as it is.
std::string OneLine(std::string message) {
  const bool plain = std::all_of(message.begin(), message.end(), [](char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u < 0x7f) || c == '\t';
  });
  return plain ? message : EscapeForDisplay(message, /*keep_newlines=*/false);
}

}  // namespace

void Diagnostics::Error(Position position, std::string message) {
  if (full()) {
    truncated_ = true;
    return;
  }
  std::string file = position.file >= 0 && position.file < file_count() ? files_[position.file]
                                                                        : std::string("<config>");
  errors_.push_back(
      ConfigError{std::move(file), position.line, position.column, OneLine(std::move(message))});
}

void Diagnostics::ErrorWithoutPosition(std::string file, std::string message) {
  if (full()) {
    truncated_ = true;
    return;
  }
  errors_.push_back(ConfigError{std::move(file), 0, 0, OneLine(std::move(message))});
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
