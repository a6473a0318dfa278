// base/utf8.h — the length of a well-formed UTF-8 sequence (RFC 3629), for code that must
// tell valid UTF-8 from bytes that only look like it: SMTPUTF8 addresses (listeners/esmtp/
// policy.cc) and the JSON lines and documents the daemon writes (core/log.cc).
//
// Well-formed means what RFC 3629 §4 allows: no overlong forms (C0, C1, E0 80..9F,
// F0 80..8F), no UTF-16 surrogates (ED A0..BF), nothing above U+10FFFF (F4 90.., F5..FF).
#pragma once

#include <cstddef>
#include <string_view>

namespace ringmail {

// Length (2..4) of the well-formed UTF-8 sequence starting at s[i] (s[i] >= 0x80), or 0.
inline size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // no overlongs
    if (c == 0xed) hi = 0x9f;  // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;  // <= U+10FFFF
  } else {
    return 0;
  }
  if (s.size() - i < n) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return n;
}

}  // namespace ringmail
