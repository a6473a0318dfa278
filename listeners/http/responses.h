// listeners/http/responses.h — the pure decisions around one HTTP request: which endpoint,
// is the bearer token right, which status a Status becomes, and the bytes of a response.
//
// Endpoints (GET endpoints also answer HEAD):
//   GET  /healthz          "ok"; no token needed (load balancers, systemd checks)
//   GET  /metrics          Prometheus text from the daemon; bearer token
//   GET  /api/v1/queues    JSON queue summary from the daemon; bearer token
//   POST /api/inject/v1    message injection; bearer token
// An unknown path is 404; a known path with the wrong method 405 with Allow.
//
// Status mapping (the one place, STYLE.md principle 11), by where the error came from:
//   request (decode, plan): kInvalidArgument → 400, kResourceExhausted → 413, else 500;
//   spool commit: kResourceExhausted (disk full) → 503 + Retry-After 60, kUnavailable →
//   503 + Retry-After 5, kInvalidArgument (a record limit) → 413, else 500.
// Errors are JSON: {"error": "<text>", "field": "<json field>"} (field only when known).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "listeners/http/request_parser.h"

namespace ringmail::listeners::http {

inline constexpr uint32_t kRetryAfterDiskFullS = 60;
inline constexpr uint32_t kRetryAfterUnavailableS = 5;

struct HttpResponse {
  int status = 200;
  std::string content_type;  // empty with an empty body
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Allow, Retry-After, ...
  bool close = false;                                        // this response ends the connection
};

enum class Endpoint : uint8_t { kHealthz, kMetrics, kQueues, kInject };

// The endpoint for (method, path), or the 404/405 response.
struct Route {
  std::optional<Endpoint> endpoint;
  HttpResponse error;
};
Route RouteRequest(Method method, std::string_view path);
bool NeedsToken(Endpoint e);

// `authorization` is the Authorization header (nullptr when absent). The comparison takes
// time that depends only on the expected token's length, never on where they differ.
bool BearerMatches(const std::string* authorization, std::string_view token);
bool ConstantTimeEquals(std::string_view a, std::string_view b);

enum class ErrorStage : uint8_t { kRequest, kSpool };
HttpResponse ResponseForStatus(const absl::Status& status, ErrorStage stage);

HttpResponse JsonError(int status, std::string_view message, std::string_view field = "");
HttpResponse Unauthorized();
const char* ReasonPhrase(int status);

// How the connection goes on after a response.
enum class Persistence : uint8_t {
  kClose,            // "Connection: close"
  kKeepAlive,        // HTTP/1.1 default: nothing to say
  kKeepAliveHttp10,  // an HTTP/1.0 client asked for keep-alive: "Connection: keep-alive"
};
// The response bytes. `head` omits the body but keeps its Content-Length. `date` is an
// RFC 9110 IMF-fixdate. response.close forces kClose.
std::string SerializeResponse(const HttpResponse& response, Persistence persistence, bool head,
                              std::string_view date);
std::string HttpDate(uint64_t unix_ms);

}  // namespace ringmail::listeners::http
