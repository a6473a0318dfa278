// base/string_view.h — bridges std::string_view and absl::string_view.
//
// Debian's abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view is
// its own type: absl::StrCat and friends do not take a std::string_view, and
// absl::Status::message() is not a std::string_view. Project code uses std::string_view
// and converts at the abseil boundary with these two functions.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace ringmail {

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace ringmail
