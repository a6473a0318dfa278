#include "listeners/http/responses.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/string_view.h"
#include "core/log.h"
#include "listeners/http/mime.h"

namespace ringmail::listeners::http {
namespace {

struct RouteEntry {
  std::string_view path;
  Endpoint endpoint;
  bool post;  // else GET/HEAD
};

constexpr RouteEntry kRoutes[] = {
    {"/healthz", Endpoint::kHealthz, false},
    {"/metrics", Endpoint::kMetrics, false},
    {"/api/v1/queues", Endpoint::kQueues, false},
    {"/api/inject/v1", Endpoint::kInject, true},
};

}  // namespace

Route RouteRequest(Method method, std::string_view path) {
  Route r;
  for (const RouteEntry& e : kRoutes) {
    if (e.path != path) continue;
    const bool ok =
        e.post ? method == Method::kPost : (method == Method::kGet || method == Method::kHead);
    if (ok) {
      r.endpoint = e.endpoint;
      return r;
    }
    r.error = JsonError(405, "method not allowed");
    r.error.headers.emplace_back("Allow", e.post ? "POST" : "GET, HEAD");
    return r;
  }
  r.error = JsonError(404, "no such endpoint");
  return r;
}

bool NeedsToken(Endpoint e) { return e != Endpoint::kHealthz; }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walks all of `b` (the secret) whatever `a` is; the length difference joins the result.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff = diff | (x ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

bool BearerMatches(const std::string* authorization, std::string_view token) {
  if (authorization == nullptr || token.empty()) return false;
  std::string_view v = *authorization;
  constexpr std::string_view kScheme = "bearer";
  if (v.size() <= kScheme.size() || !EqualsIgnoreCase(v.substr(0, kScheme.size()), kScheme) ||
      (v[kScheme.size()] != ' ' && v[kScheme.size()] != '\t')) {
    return false;
  }
  v.remove_prefix(kScheme.size());
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  return ConstantTimeEquals(v, token);
}

HttpResponse JsonError(int status, std::string_view message, std::string_view field) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = "{\"error\":";
  core::AppendJsonString(&r.body, message);
  if (!field.empty()) {
    r.body.append(",\"field\":");
    core::AppendJsonString(&r.body, field);
  }
  r.body.append("}\n");
  return r;
}

HttpResponse Unauthorized() {
  HttpResponse r = JsonError(401, "missing or wrong bearer token");
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"ringmail\"");
  return r;
}

HttpResponse ResponseForStatus(const absl::Status& status, ErrorStage stage) {
  const std::string message(status.message());
  const std::string field = ErrorField(status);
  const absl::StatusCode code = status.code();
  if (stage == ErrorStage::kRequest) {
    if (code == absl::StatusCode::kInvalidArgument) return JsonError(400, message, field);
    if (code == absl::StatusCode::kResourceExhausted) return JsonError(413, message, field);
    if (code == absl::StatusCode::kUnavailable) {  // the loop's inject budget: try again
      HttpResponse r = JsonError(503, message);
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    return JsonError(500, message);
  }
  if (code == absl::StatusCode::kResourceExhausted || code == absl::StatusCode::kUnavailable) {
    const bool full = code == absl::StatusCode::kResourceExhausted;
    HttpResponse r = JsonError(503, absl::StrCat("spool: ", message));
    r.headers.emplace_back("Retry-After",
                           absl::StrCat(full ? kRetryAfterDiskFullS : kRetryAfterUnavailableS));
    return r;
  }
  if (code == absl::StatusCode::kInvalidArgument) {
    return JsonError(413, absl::StrCat("spool: ", message));
  }
  return JsonError(500, absl::StrCat("spool: ", message));
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string HttpDate(uint64_t unix_ms) {
  const absl::Time t = absl::FromUnixMillis(static_cast<int64_t>(unix_ms));
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", t, absl::UTCTimeZone());
}

std::string SerializeResponse(const HttpResponse& response, Persistence persistence, bool head,
                              std::string_view date) {
  std::string out = absl::StrCat("HTTP/1.1 ", response.status, " ", ReasonPhrase(response.status),
                                 "\r\nServer: ringmail\r\nDate: ", ToAbsl(date), "\r\n");
  if (!response.content_type.empty()) {
    absl::StrAppend(&out, "Content-Type: ", response.content_type, "\r\n");
  }
  absl::StrAppend(&out, "Content-Length: ", response.body.size(), "\r\n");
  for (const auto& [name, value] : response.headers) {
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  if (persistence == Persistence::kClose || response.close) {
    out.append("Connection: close\r\n");
  } else if (persistence == Persistence::kKeepAliveHttp10) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  if (!head) out.append(response.body);
  return out;
}

}  // namespace ringmail::listeners::http
