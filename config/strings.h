// config/strings.h — bridging std::string_view and absl::string_view inside config/.
//
// Debian's abseil 20220623 is built with its own absl::string_view (ABSL_OPTION_USE_STD_
// STRING_VIEW 0), which does not convert to or from std::string_view. config/'s public API
// speaks std::string_view; its .cc files build messages with Cat()/Append() (absl::StrCat /
// StrAppend that also take std::string_view) and wrap values with Av() for other absl
// functions (SimpleAtoi, EqualsIgnoreCase, ...), Sv() the other way. Internal to config/.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ringmail::config {

inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view Sv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

namespace strings_internal {
inline absl::string_view Arg(std::string_view s) { return Av(s); }
template <typename T>
const T& Arg(const T& value) {
  return value;
}
}  // namespace strings_internal

template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(strings_internal::Arg(args)...);
}

template <typename... Args>
void Append(std::string* out, const Args&... args) {
  absl::StrAppend(out, strings_internal::Arg(args)...);
}

}  // namespace ringmail::config
