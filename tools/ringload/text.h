// tools/ringload/text.h — small string helpers for ringload.
//
// Debian's abseil 20220623 has its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0) that does not convert to or from std::string_view; ringload speaks std::string_view
// and crosses into abseil only through Absl()/Std(). Header-only, any thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"

namespace ringmail::ringload {

inline absl::string_view Absl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view Std(absl::string_view s) { return {s.data(), s.size()}; }

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) !=
        absl::ascii_tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

inline bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

// Decimal digits only (no sign, no spaces), at most 19 of them: never overflows.
inline bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace ringmail::ringload
