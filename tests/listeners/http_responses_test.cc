// Tests of listeners/http/responses: routes (404/405 with Allow), the bearer check, the one
// Status → HTTP mapping, and response serialisation.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "listeners/http/mime.h"
#include "listeners/http/responses.h"

namespace ringmail::listeners::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(HttpRoutesTest, EndpointsMethodsAndUnknownPaths) {
  EXPECT_EQ(RouteRequest(Method::kGet, "/healthz").endpoint, Endpoint::kHealthz);
  EXPECT_EQ(RouteRequest(Method::kHead, "/metrics").endpoint, Endpoint::kMetrics);
  EXPECT_EQ(RouteRequest(Method::kGet, "/api/v1/queues").endpoint, Endpoint::kQueues);
  EXPECT_EQ(RouteRequest(Method::kPost, "/api/inject/v1").endpoint, Endpoint::kInject);
  Route r = RouteRequest(Method::kGet, "/api/inject/v1");
  EXPECT_FALSE(r.endpoint);
  EXPECT_EQ(r.error.status, 405);
  EXPECT_EQ(r.error.headers, (decltype(r.error.headers){{"Allow", "POST"}}));
  r = RouteRequest(Method::kPost, "/metrics");
  EXPECT_EQ(r.error.status, 405);
  EXPECT_EQ(r.error.headers[0].second, "GET, HEAD");
  EXPECT_EQ(RouteRequest(Method::kOther, "/healthz").error.status, 405);
  for (const char* p : {"/", "/healthz/", "/HEALTHZ", "/api/inject/v2", ""}) {
    EXPECT_EQ(RouteRequest(Method::kGet, p).error.status, 404) << p;
  }
  EXPECT_FALSE(NeedsToken(Endpoint::kHealthz));
  EXPECT_TRUE(NeedsToken(Endpoint::kMetrics));
  EXPECT_TRUE(NeedsToken(Endpoint::kQueues));
  EXPECT_TRUE(NeedsToken(Endpoint::kInject));
}

TEST(HttpAuthTest, BearerToken) {
  const std::string token = "s3cret-token";
  auto check = [&](const char* header) {
    std::string h = header;
    return BearerMatches(&h, token);
  };
  EXPECT_TRUE(check("Bearer s3cret-token"));
  EXPECT_TRUE(check("bearer  s3cret-token"));
  EXPECT_FALSE(check("Bearer s3cret-toke"));
  EXPECT_FALSE(check("Bearer s3cret-token2"));
  EXPECT_FALSE(check("Bearer S3cret-token"));
  EXPECT_FALSE(check("Bearers3cret-token"));
  EXPECT_FALSE(check("Basic s3cret-token"));
  EXPECT_FALSE(check("Bearer "));
  EXPECT_FALSE(check("s3cret-token"));
  EXPECT_FALSE(BearerMatches(nullptr, token));
  std::string h = "Bearer ";
  EXPECT_FALSE(BearerMatches(&h, "")) << "an empty token never matches";
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", ""));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

struct MapCase {
  absl::Status status;
  ErrorStage stage;
  int http;
  const char* retry_after;  // nullptr: none
};

TEST(HttpStatusMappingTest, OneTable) {
  const std::vector<MapCase> cases = {
      {FieldError("recipients[0].email", "bad"), ErrorStage::kRequest, 400, nullptr},
      {absl::ResourceExhaustedError("content: too big"), ErrorStage::kRequest, 413, nullptr},
      {absl::InternalError("x"), ErrorStage::kRequest, 500, nullptr},
      {absl::ResourceExhaustedError("ENOSPC"), ErrorStage::kSpool, 503, "60"},
      {absl::UnavailableError("EIO"), ErrorStage::kSpool, 503, "5"},
      {absl::InvalidArgumentError("record too large"), ErrorStage::kSpool, 413, nullptr},
      {absl::FailedPreconditionError("x"), ErrorStage::kSpool, 500, nullptr},
  };
  for (const MapCase& c : cases) {
    HttpResponse r = ResponseForStatus(c.status, c.stage);
    EXPECT_EQ(r.status, c.http) << c.status;
    EXPECT_EQ(r.content_type, "application/json");
    std::string retry;
    for (const auto& [n, v] : r.headers) {
      if (n == "Retry-After") retry = v;
    }
    EXPECT_EQ(retry, c.retry_after ? c.retry_after : "") << c.status;
  }
  HttpResponse field =
      ResponseForStatus(FieldError("content.subject", "has CR"), ErrorStage::kRequest);
  EXPECT_EQ(field.body, "{\"error\":\"content.subject: has CR\",\"field\":\"content.subject\"}\n");
}

TEST(HttpSerializeTest, StatusLineHeadersAndBody) {
  HttpResponse r = JsonError(405, "method not allowed");
  r.headers.emplace_back("Allow", "POST");
  const std::string date = HttpDate(0);
  EXPECT_EQ(date, "Thu, 01 Jan 1970 00:00:00 GMT");
  std::string s = SerializeResponse(r, Persistence::kKeepAlive, false, date);
  EXPECT_THAT(s, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_THAT(s, HasSubstr("\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
  EXPECT_THAT(s, HasSubstr("\r\nContent-Type: application/json\r\n"));
  EXPECT_THAT(s, HasSubstr("\r\nAllow: POST\r\n"));
  EXPECT_THAT(s, HasSubstr(absl::StrCat("\r\nContent-Length: ", r.body.size(), "\r\n")));
  EXPECT_EQ(s.find("Connection:"), std::string::npos);
  EXPECT_EQ(s.substr(s.size() - r.body.size()), r.body);
  s = SerializeResponse(r, Persistence::kClose, false, date);
  EXPECT_THAT(s, HasSubstr("\r\nConnection: close\r\n"));
  s = SerializeResponse(r, Persistence::kKeepAliveHttp10, true, date);
  EXPECT_THAT(s, HasSubstr("\r\nConnection: keep-alive\r\n"));
  EXPECT_TRUE(absl::EndsWith(s, "\r\n\r\n")) << "HEAD: no body";
  r.close = true;
  s = SerializeResponse(r, Persistence::kKeepAlive, false, date);
  EXPECT_THAT(s, HasSubstr("\r\nConnection: close\r\n"));
  EXPECT_EQ(Unauthorized().status, 401);
  EXPECT_EQ(Unauthorized().headers[0].first, "WWW-Authenticate");
  for (int code : {200, 400, 401, 404, 405, 408, 413, 417, 431, 500, 503}) {
    EXPECT_STRNE(ReasonPhrase(code), "Unknown") << code;
  }
}

}  // namespace
}  // namespace ringmail::listeners::http
