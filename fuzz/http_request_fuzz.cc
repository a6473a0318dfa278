// fuzz/http_request_fuzz.cc — libFuzzer target for the HTTP/1.1 request framing
// (listeners/http/request_parser.h: Debian's http-parser plus our limits and checks), fed
// the way listeners/http/connection feeds it: arbitrary slices, Next() after each request.
//
// The last input byte picks the limits (tiny ones, so that every limit is hit) and the
// slicing seed; the rest is the client's byte stream. Oracles: no crash; the requests, the
// pause at each header section and whether it ends in an error do not depend on slicing; every
// request respects the limits (header count, body size; a body as long as Content-Length
// except after CONNECT, whose body is never read), has lower-case token header names
// and values without CR/LF/NUL, a path that is a prefix of its target; an error is 400, 413,
// 431, 501 (a transfer coding other than chunked) or 505 and the parser stays failed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "fuzz/fuzz_util.h"
#include "listeners/http/request_parser.h"

namespace ringmail::listeners::http {
namespace {

ParserLimits LimitsFor(uint8_t mode) {
  ParserLimits limits;
  if (mode & 1) limits.header_bytes_max = 200;
  if (mode & 2) limits.header_count_max = 3;
  if (mode & 4) limits.body_bytes_max = 16;
  return limits;
}

void CheckRequest(const HttpRequest& r, const ParserLimits& limits) {
  RM_CHECK(r.headers.size() <= limits.header_count_max) << r.headers.size();
  RM_CHECK(r.body.size() <= limits.body_bytes_max) << r.body.size();
  RM_CHECK(r.version_major == 1);
  RM_CHECK(r.target.compare(0, r.path.size(), r.path) == 0) << "path is not the target's";
  // CONNECT (an upgrade) ends at its header section whatever Content-Length says: the
  // connection answers it and closes without reading a body (request_parser.h `upgrade`).
  if (r.has_content_length && !r.chunked && !r.upgrade) {
    RM_CHECK(r.body.size() == r.content_length);
  }
  for (const auto& [name, value] : r.headers) {
    RM_CHECK(!name.empty());
    for (char c : name) RM_CHECK(!(c >= 'A' && c <= 'Z') && c > ' ' && c != ':') << name;
    RM_CHECK(value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
  }
}

std::string Describe(const HttpRequest& r) {
  std::string s = absl::StrCat(r.method_name, " ", r.target, " ", r.version_major, ".",
                               r.version_minor, " ka=", r.keep_alive, " up=", r.upgrade,
                               " ch=", r.chunked, " cl=", r.content_length, "\n");
  for (const auto& [name, value] : r.headers) absl::StrAppend(&s, name, ": ", value, "\n");
  absl::StrAppend(&s, "body ", r.body.size(), ": ", r.body);
  return s;
}

// One string per event: "H:..." at each header section, "M:..." per request, "E:<status>".
std::vector<std::string> Run(const std::vector<std::string_view>& pieces,
                             const ParserLimits& limits) {
  RequestParser parser(limits);
  std::vector<std::string> events;
  for (std::string_view piece : pieces) {
    for (int guard = 0; !piece.empty(); ++guard) {
      RM_CHECK(guard < 100000) << "parser does not progress";
      const RequestParser::Result r = parser.Feed(piece);
      RM_CHECK(r.consumed <= piece.size());
      piece.remove_prefix(r.consumed);
      switch (r.event) {
        case RequestParser::Event::kNeedMore:
          RM_CHECK(piece.empty()) << "kNeedMore with bytes left";
          break;
        case RequestParser::Event::kHeaders:
          RM_CHECK(parser.in_message());
          events.push_back("H:" + parser.request().target);
          break;
        case RequestParser::Event::kMessage:
          CheckRequest(parser.request(), limits);
          events.push_back("M:" + Describe(parser.request()));
          parser.Next();
          break;
        case RequestParser::Event::kError: {
          const int status = parser.error_status();
          RM_CHECK(status == 400 || status == 413 || status == 431 || status == 501 ||
                   status == 505)
              << status;
          RM_CHECK(!parser.error_text().empty());
          RM_CHECK(parser.Feed("GET / HTTP/1.1\r\n\r\n").event == RequestParser::Event::kError);
          // Not the status: a request that is both malformed and over a limit gets 400 or
          // 431 depending on where the library's lazy callbacks fall, and either is right.
          events.push_back("E");
          return events;
        }
      }
    }
  }
  return events;
}

}  // namespace
}  // namespace ringmail::listeners::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::listeners::http;  // NOLINT: the target's whole vocabulary
  if (size == 0) return 0;
  const uint8_t mode = data[size - 1];
  const std::string_view stream(reinterpret_cast<const char*>(data), size - 1);
  const ParserLimits limits = LimitsFor(mode);
  const std::vector<std::string> whole = Run({stream}, limits);
  ringmail::fuzz::Choices choices(mode >> 3);
  const std::vector<std::string> sliced = Run(ringmail::fuzz::SliceInput(stream, choices), limits);
  RM_CHECK(whole == sliced) << "slicing changed the requests: " << whole.size() << " vs "
                            << sliced.size() << " events; last "
                            << (whole.empty() ? "" : whole.back()) << " vs "
                            << (sliced.empty() ? "" : sliced.back());
  return 0;
}
