#include "listeners/esmtp/trace_fields.h"

#include <cstring>
#include <string_view>

#include "absl/strings/ascii.h"

namespace ringmail::listeners::esmtp {

// Runs once per message over its header section, so the inside of a line is skipped with
// memchr; only a line's first bytes are looked at one by one.
size_t CountTraceFields(const core::Body& body, size_t stop_at) {
  static constexpr std::string_view kName = "received:";
  size_t count = 0;
  bool line_start = true;  // the next byte begins a line
  bool skipping = false;   // inside a line that is not (or no longer may be) a field
  size_t matched = 0;      // bytes of kName matched at the start of this line
  bool only_cr = false;    // this line holds nothing but a CR so far
  for (size_t i = 0; i < body.chunk_count(); ++i) {
    const std::string_view chunk = body.chunk(i);
    const char* p = chunk.data();
    const char* const end = p + chunk.size();
    while (p < end) {
      if (skipping) {
        const void* lf = std::memchr(p, '\n', static_cast<size_t>(end - p));
        if (lf == nullptr) break;  // the line goes on in the next chunk
        p = static_cast<const char*>(lf) + 1;
        skipping = false;
        line_start = true;
        continue;
      }
      const char c = *p++;
      if (line_start) {
        if (c == '\n') return count;  // an empty line: the header section is over
        line_start = false;
        matched = 0;
        if (c == '\r') {
          only_cr = true;  // "\r\n" alone would end the header section
          continue;
        }
      } else if (only_cr) {
        if (c == '\n') return count;  // "\r\n" alone: the header section is over
        only_cr = false;
        skipping = true;  // a line that begins with a bare CR is no field
        continue;
      } else if (c == '\n') {
        line_start = true;
        continue;
      }
      if (absl::ascii_tolower(static_cast<unsigned char>(c)) != kName[matched]) {
        skipping = true;
        continue;
      }
      if (++matched == kName.size()) {
        if (++count >= stop_at) return count;
        skipping = true;
      }
    }
  }
  return count;
}

}  // namespace ringmail::listeners::esmtp
