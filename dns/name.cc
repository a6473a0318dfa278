#include "dns/name.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/string_view.h"

namespace ringmail::dns {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Why `name` (already lower-cased, no trailing dot) is not a host name; empty when it is.
const char* Problem(std::string_view name) {
  if (name.empty()) return "is empty";
  if (name.size() > kNameLengthMax) return "is longer than 253 octets";
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return "has an empty label";
      label = 0;
      continue;
    }
    if (!IsNameChar(c)) return "holds a character not allowed in a host name";
    if (++label > kLabelLengthMax) return "has a label longer than 63 octets";
  }
  if (label == 0) return "has an empty label";
  return nullptr;
}

}  // namespace

absl::StatusOr<std::string> NormalizeName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  // Checked before copying so that a huge input costs nothing.
  if (name.size() > kNameLengthMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("domain name is longer than ", kNameLengthMax, " octets"));
  }
  std::string out(name.size(), '\0');
  for (size_t i = 0; i < name.size(); ++i) out[i] = Lower(name[i]);
  if (const char* problem = Problem(out)) {
    // The name itself is hostile input: quote at most a bounded, printable prefix.
    std::string shown;
    for (char c : name.substr(0, 64)) shown += (c >= 0x21 && c <= 0x7e) ? c : '?';
    return absl::InvalidArgumentError(absl::StrCat("domain name \"", shown, "\" ", problem));
  }
  return out;
}

bool IsCanonicalName(std::string_view name) { return Problem(name) == nullptr; }

}  // namespace ringmail::dns
