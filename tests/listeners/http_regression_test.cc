// Regression tests for inputs the HTTP fuzz targets (fuzz/http_request_fuzz.cc) found.
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "listeners/http/request_parser.h"

namespace ringmail::listeners::http {
namespace {

// Feeds `bytes` until a whole request or an error; returns the last event.
RequestParser::Event FeedAll(RequestParser& parser, std::string_view bytes) {
  while (true) {
    const RequestParser::Result r = parser.Feed(bytes);
    bytes.remove_prefix(r.consumed);
    if (r.event == RequestParser::Event::kHeaders) continue;
    if (r.event != RequestParser::Event::kNeedMore || bytes.empty()) return r.event;
  }
}

constexpr std::string_view kChunkedHead =
    "POST /api/inject/v1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

// Found by fuzzing: trailer fields after a chunked body were appended to the request's
// headers without the header section's checks (a name with a space got through), and a
// client could add a header (Content-Type, Authorization) after the body.
TEST(HttpRegressionTest, TrailerFieldsAreDroppedNotMergedIntoHeaders) {
  RequestParser parser(ParserLimits{});
  const std::string request = std::string(kChunkedHead) +
                              "5\r\nhello\r\n0\r\nBad Name: x\r\nContent-Type: text/evil\r\n"
                              "Authorization: Bearer stolen\r\n\r\n";
  ASSERT_EQ(FeedAll(parser, request), RequestParser::Event::kMessage) << parser.error_text();
  const HttpRequest& r = parser.request();
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.Header("content-type"), nullptr);
  EXPECT_EQ(r.Header("authorization"), nullptr);
  for (const auto& [name, value] : r.headers) {
    EXPECT_EQ(name.find(' '), std::string::npos) << name;
  }
  ASSERT_EQ(r.headers.size(), 2u);  // host, transfer-encoding
}

// Trailers are bounded by header_bytes_max on their own, whatever the body's size (before,
// the count ran from the request line, so any trailer after a body of 16 KiB was a 431).
TEST(HttpRegressionTest, TrailerSectionHasItsOwnByteLimit) {
  ParserLimits limits;
  limits.header_bytes_max = 200;
  {
    RequestParser parser(limits);
    const std::string body(1000, 'b');
    const std::string request = std::string(kChunkedHead) + "3e8\r\n" + body +
                                "\r\n0\r\nX-Checksum: abc\r\n\r\n";
    ASSERT_EQ(FeedAll(parser, request), RequestParser::Event::kMessage) << parser.error_text();
    EXPECT_EQ(parser.request().body, body);
  }
  {
    RequestParser parser(limits);
    const std::string request = std::string(kChunkedHead) + "1\r\nb\r\n0\r\nX-Big: " +
                                std::string(300, 'v') + "\r\n\r\n";
    ASSERT_EQ(FeedAll(parser, request), RequestParser::Event::kError);
    EXPECT_EQ(parser.error_status(), 431);
  }
}

}  // namespace
}  // namespace ringmail::listeners::http
