// dns/name.h — domain and host names as the resolver accepts them (pure functions).
//
// Names come from two hostile places: envelope recipients (the caller's domain) and DNS
// answers (MX targets). Both are checked here before they reach a query, a cache key, a log
// line or an SMTP command: total length ≤ 253 octets, labels of 1..63 octets, letters,
// digits, '-' and '_' only (c-ares escapes any other octet as "\DDD", so a backslash in an
// expanded name means the label held something no host name may hold). Names are
// compared and cached lower-cased, without the trailing dot. Any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ringmail::dns {

inline constexpr size_t kNameLengthMax = 253;  // RFC 1035 255 octets on the wire, in text
inline constexpr size_t kLabelLengthMax = 63;

// The canonical form of `name` (lower-cased, one trailing dot removed), or
// kInvalidArgument saying what is wrong with it.
absl::StatusOr<std::string> NormalizeName(std::string_view name);

// Whether `name` is a valid host name in canonical form (what NormalizeName returns).
bool IsCanonicalName(std::string_view name);

}  // namespace ringmail::dns
