// base/utf8.h — the length of a well-formed UTF-8 sequence (RFC 3629), for code that must
// tell valid UTF-8 from bytes that only look like it: SMTPUTF8 addresses (listeners/esmtp/
// policy.cc) and the JSON lines and documents the daemon writes (core/log.cc); and text quoted
// in messages for people (config errors, control replies).
//
// Well-formed means what RFC 3629 §4 allows: no overlong forms (C0, C1, E0 80..9F,
// F0 80..8F), no UTF-16 surrogates (ED A0..BF), nothing above U+10FFFF (F4 90.., F5..FF).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
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

// `text` made fit to show in a message that reaches terminals, logs and JSON: bytes that are
// not well-formed UTF-8, control bytes and DEL become \xNN, CR becomes \r and LF \n (or
// stays a line break when `keep_newlines`); the C1 controls (U+0080..U+009F: a terminal
// takes U+009B as CSI) and the bidi embeddings, overrides and isolates (U+202A..U+202E,
// U+2066..U+2069: they reorder what follows on screen) become \uXXXX; tab and the rest of
// well-formed UTF-8 stay as they are.
inline std::string EscapeForDisplay(std::string_view text, bool keep_newlines) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    const size_t n = u >= 0x80 ? Utf8SequenceLength(text, i) : 0;
    const auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
    uint32_t hidden = 0;  // a code point shown escaped (0: none)
    if (n == 2 && u == 0xc2 && b(1) <= 0x9f) hidden = b(1);
    if (n == 3 && u == 0xe2 && b(1) == 0x80 && b(2) >= 0xaa && b(2) <= 0xae) {
      hidden = 0x2000 | (b(2) & 0x3f);
    }
    if (n == 3 && u == 0xe2 && b(1) == 0x81 && b(2) >= 0xa6 && b(2) <= 0xa9) {
      hidden = 0x2040 | (b(2) & 0x3f);
    }
    if (hidden != 0) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(hidden >> shift) & 0xf];
      i += n - 1;
    } else if (n > 0) {
      out.append(text.substr(i, n));
      i += n - 1;
    } else if (c == '\n') {
      out += keep_newlines ? "\n" : "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((u < 0x20 && c != '\t') || u >= 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace ringmail
