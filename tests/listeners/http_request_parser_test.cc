// Tests of listeners/http/request_parser: framing over http-parser with our limits, fed
// whole, byte by byte and at every split point; pipelining; errors and their statuses.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "listeners/http/request_parser.h"

namespace ringmail::listeners::http {
namespace {

// Feeds `input` in pieces of `step` bytes and collects every whole request; stops at an
// error (its status in *error).
std::vector<HttpRequest> ParseAll(std::string_view input, size_t step, int* error = nullptr,
                                  ParserLimits limits = {}) {
  RequestParser p(limits);
  std::vector<HttpRequest> out;
  std::string pending;
  size_t pos = 0;
  if (error != nullptr) *error = 0;
  while (pos < input.size() || !pending.empty()) {
    if (pos < input.size()) {
      const size_t n = std::min(step, input.size() - pos);
      pending.append(input.substr(pos, n));
      pos += n;
    }
    bool progressed = true;
    while (!pending.empty() && progressed) {
      RequestParser::Result r = p.Feed(pending);
      pending.erase(0, r.consumed);
      progressed = r.consumed > 0 || r.event == RequestParser::Event::kMessage ||
                   r.event == RequestParser::Event::kHeaders;
      if (r.event == RequestParser::Event::kMessage) {
        out.push_back(p.request());
        p.Next();
      } else if (r.event == RequestParser::Event::kError) {
        if (error != nullptr) *error = p.error_status();
        return out;
      } else if (r.event == RequestParser::Event::kNeedMore) {
        progressed = false;
      }
    }
    if (pos >= input.size()) break;
  }
  return out;
}

constexpr std::string_view kPost =
    "POST /api/inject/v1?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n"
    "Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n";

TEST(HttpRequestParserTest, ParsesOneRequestWhole) {
  std::vector<HttpRequest> r = ParseAll(kPost, kPost.size());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].method, Method::kPost);
  EXPECT_EQ(r[0].path, "/api/inject/v1");
  EXPECT_EQ(r[0].target, "/api/inject/v1?x=1");
  ASSERT_NE(r[0].Header("authorization"), nullptr);
  EXPECT_EQ(*r[0].Header("authorization"), "Bearer t");
  EXPECT_EQ(*r[0].Header("content-type"), "application/json");
  EXPECT_EQ(r[0].body, "{\"a\":\"bc\"}\n");
  EXPECT_TRUE(r[0].keep_alive);
  EXPECT_EQ(r[0].content_length, 11u);
}

TEST(HttpRequestParserTest, EverySplitPointGivesTheSameRequest) {
  for (size_t step = 1; step <= kPost.size(); ++step) {
    std::vector<HttpRequest> r = ParseAll(kPost, step);
    ASSERT_EQ(r.size(), 1u) << "step " << step;
    EXPECT_EQ(r[0].body, "{\"a\":\"bc\"}\n") << "step " << step;
    EXPECT_EQ(r[0].headers.size(), 4u) << "step " << step;
    EXPECT_EQ(r[0].target, "/api/inject/v1?x=1") << "step " << step;
  }
}

TEST(HttpRequestParserTest, PipelinedRequestsComeOutOneAtATimeInOrder) {
  std::string two = std::string(kPost) + "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n" +
                    "GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  RequestParser p({});
  RequestParser::Result r = p.Feed(two);
  EXPECT_EQ(r.event, RequestParser::Event::kHeaders);
  size_t used = r.consumed;
  r = p.Feed(std::string_view(two).substr(used));
  ASSERT_EQ(r.event, RequestParser::Event::kMessage);
  used += r.consumed;
  EXPECT_EQ(p.request().path, "/api/inject/v1");
  EXPECT_LT(used, two.size()) << "the next request must stay unconsumed";
  // Until Next(), the parser holds the request and takes nothing more.
  EXPECT_EQ(p.Feed(std::string_view(two).substr(used)).consumed, 0u);
  p.Next();
  std::vector<std::string> paths;
  std::vector<bool> keep;
  while (used < two.size()) {
    r = p.Feed(std::string_view(two).substr(used));
    used += r.consumed;
    if (r.event == RequestParser::Event::kMessage) {
      paths.push_back(p.request().path);
      keep.push_back(p.request().keep_alive);
      p.Next();
    }
    ASSERT_NE(r.event, RequestParser::Event::kError);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/healthz", "/metrics"}));
  EXPECT_EQ(keep, (std::vector<bool>{true, false}));
}

TEST(HttpRequestParserTest, ChunkedBodyIsDecoded) {
  const std::string req =
      "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
  for (size_t step : {size_t{1}, size_t{3}, req.size()}) {
    std::vector<HttpRequest> r = ParseAll(req, step);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0].chunked);
    EXPECT_EQ(r[0].body, "Wikipedia");
  }
}

TEST(HttpRequestParserTest, Http10ClosesUnlessKeepAliveAsked) {
  std::vector<HttpRequest> r = ParseAll("GET /healthz HTTP/1.0\r\n\r\n", 100);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].keep_alive);
  EXPECT_EQ(r[0].version_minor, 0);
  r = ParseAll("GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 100);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].keep_alive);
}

struct BadCase {
  const char* name;
  std::string input;
  int status;
};

// A declared Content-Length does not reserve the whole body before it comes: 32 MB declared
// and 1 byte sent hold a small buffer (idle clients could commit memory they never sent).
TEST(HttpRequestParserTest, ADeclaredBodyIsNotReservedWholeBeforeItComes) {
  ParserLimits limits;
  limits.body_bytes_max = 64 << 20;
  RequestParser p(limits);
  const std::string head =
      "POST /api/inject/v1 HTTP/1.1\r\nHost: h\r\nContent-Length: 33554432\r\n\r\nx";
  RequestParser::Result r = p.Feed(head);
  ASSERT_EQ(r.event, RequestParser::Event::kHeaders);
  EXPECT_LT(p.request().body.capacity(), size_t{1} << 20);
  r = p.Feed(std::string_view(head).substr(r.consumed));
  EXPECT_NE(r.event, RequestParser::Event::kError);
  EXPECT_LT(p.request().body.capacity(), size_t{1} << 20);
}

TEST(HttpRequestParserTest, MalformedAndOverLimitRequestsGetTheirStatus) {
  ParserLimits limits;
  limits.header_bytes_max = 1024;
  limits.header_count_max = 10;
  limits.body_bytes_max = 100;
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 11; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  const std::vector<BadCase> cases = {
      {"garbage request line", "HELLO\r\n\r\n", 400},
      {"no version", "GET /\r\n\r\n", 400},
      {"bad version", "GET / HTTP/9.x\r\n\r\n", 400},
      {"HTTP/2 over HTTP/1 framing", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"space in header name", "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", 400},
      {"long url", "GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n\r\n", 431},
      {"long header", "GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", 431},
      {"too many headers", many, 431},
      {"content-length over the limit", "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413},
      {"chunks over the limit",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + std::string(64, 'a') +
           "\r\n40\r\n" + std::string(64, 'a') + "\r\n0\r\n\r\n",
       413},
      {"content-length and chunked (smuggling)",
       "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"two content-lengths",
       "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      // RFC 9112 §3.2 and §6.1 (session 11's audit, F10).
      {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"a coding before chunked",
       "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
      {"two transfer-encoding lines",
       "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       501},
      {"chunked in HTTP/1.0",
       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
  };
  for (const BadCase& c : cases) {
    for (size_t step : {size_t{1}, size_t{7}, c.input.size()}) {
      int error = 0;
      std::vector<HttpRequest> r = ParseAll(c.input, step, &error, limits);
      EXPECT_TRUE(r.empty()) << c.name;
      EXPECT_EQ(error, c.status) << c.name << " step " << step;
    }
  }
}

TEST(HttpRequestParserTest, HeaderLimitCountsTheWholeSectionNotOneCall) {
  ParserLimits limits;
  limits.header_bytes_max = 200;
  // Many small headers, each fine, together over the limit.
  std::string req = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 20; ++i) req += "H" + std::to_string(i) + ": 0123456789\r\n";
  req += "\r\n";
  int error = 0;
  ParseAll(req, 5, &error, limits);
  EXPECT_EQ(error, 431);
  // Just under: passes.
  limits.header_bytes_max = req.size() + 10;
  std::vector<HttpRequest> ok = ParseAll(req, 5, &error, limits);
  EXPECT_EQ(error, 0);
  EXPECT_EQ(ok.size(), 1u);
}

TEST(HttpRequestParserTest, HeaderLimitIsPerRequestOnAKeptAliveConnection) {
  ParserLimits limits;
  limits.header_bytes_max = 100;
  std::string one = "GET /healthz HTTP/1.1\r\nHost: h\r\nX-Pad: 0123456789\r\n\r\n";
  std::string many;
  for (int i = 0; i < 50; ++i) many += one;
  int error = 0;
  std::vector<HttpRequest> r = ParseAll(many, 13, &error, limits);
  EXPECT_EQ(error, 0);
  EXPECT_EQ(r.size(), 50u);
}

TEST(HttpRequestParserTest, UpgradeRequestIsFlagged) {
  std::vector<HttpRequest> r = ParseAll(
      "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 100);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].upgrade);
}

// CONNECT is an upgrade: the request ends at its header section whatever Content-Length
// says, its body is never read (the connection answers and closes: body_expected() makes it
// refuse without reading), and nothing after it is parsed as another request. Found by the
// http_request fuzzer, whose oracle expected a body as long as Content-Length.
TEST(HttpRequestParserTest, ConnectEndsAtItsHeadersWhateverContentLengthSays) {
  for (size_t step : {size_t{1}, size_t{7}, size_t{200}}) {
    SCOPED_TRACE(step);
    std::vector<HttpRequest> r = ParseAll(
        "CONNECT i/inject/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        step);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].method, Method::kOther);
    EXPECT_EQ(r[0].method_name, "CONNECT");
    EXPECT_TRUE(r[0].upgrade);
    EXPECT_TRUE(r[0].has_content_length);
    EXPECT_EQ(r[0].content_length, 2u);
    EXPECT_EQ(r[0].body, "");
    EXPECT_TRUE(r[0].body_expected());
  }
}

TEST(HttpRequestParserTest, TrailingSpacesOfValuesAreTrimmed) {
  std::vector<HttpRequest> r =
      ParseAll("GET / HTTP/1.1\r\nHost:   h  \r\nExpect: 100-continue \r\n\r\n", 3);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(*r[0].Header("host"), "h");
  EXPECT_EQ(*r[0].Header("expect"), "100-continue");
}

TEST(HttpRequestParserTest, ObsoleteLineFoldingIsUnfolded) {
  // RFC 9112 §5.2: a server either refuses obs-fold or replaces it with spaces; the library
  // unfolds, and no CR or LF ever reaches a header value.
  std::vector<HttpRequest> r = ParseAll("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 1);
  ASSERT_EQ(r.size(), 1u);
  ASSERT_NE(r[0].Header("x"), nullptr);
  EXPECT_EQ(r[0].Header("x")->find_first_of("\r\n"), std::string::npos) << *r[0].Header("x");
}

TEST(HttpRequestParserTest, EqualsIgnoreCase) {
  EXPECT_TRUE(EqualsIgnoreCase("Bearer", "bEARER"));
  EXPECT_FALSE(EqualsIgnoreCase("Bearer", "Bearer "));
  EXPECT_FALSE(EqualsIgnoreCase("a", "b"));
}

}  // namespace
}  // namespace ringmail::listeners::http
