#include "listeners/esmtp/trace_fields.h"

#include <string_view>

#include "absl/strings/ascii.h"

namespace ringmail::listeners::esmtp {

size_t CountTraceFields(const core::Body& body, size_t stop_at) {
  static constexpr std::string_view kName = "received:";
  size_t count = 0;
  bool line_start = true;  // the next byte begins a line
  size_t matched = 0;      // bytes of kName matched at the start of this line
  bool matching = false;   // this line may still be a Received: field
  bool only_cr = false;    // this line holds nothing but a CR so far
  for (size_t i = 0; i < body.chunk_count(); ++i) {
    for (char c : body.chunk(i)) {
      if (line_start) {
        if (c == '\n') return count;  // an empty line: the header section is over
        line_start = false;
        matching = true;
        matched = 0;
        only_cr = c == '\r';
      } else if (c == '\n') {
        if (only_cr) return count;  // "\r\n" alone: the header section is over
        line_start = true;
        continue;
      } else {
        only_cr = false;
      }
      if (!matching) continue;
      if (absl::ascii_tolower(static_cast<unsigned char>(c)) != kName[matched]) {
        matching = false;
        continue;
      }
      if (++matched == kName.size()) {
        matching = false;
        if (++count >= stop_at) return count;
      }
    }
  }
  return count;
}

}  // namespace ringmail::listeners::esmtp
