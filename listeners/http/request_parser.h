// listeners/http/request_parser.h — HTTP/1.1 request framing over Debian's http-parser
// (nodejs/http-parser 2.9): bytes in, requests out, with our limits. Pure: no sockets, no
// clock; one parser per connection, used by that connection's loop only.
//
// Feed(bytes) consumes as much as it can and stops at the first event:
//   kNeedMore  every byte was consumed; more input is needed.
//   kHeaders   the request line and headers are complete (body not read yet). The caller
//              may decide early (401, 404, 413, 100 Continue) before calling Feed again.
//   kMessage   one whole request is ready in request(); bytes after it (pipelined
//              requests) are NOT consumed. Call Next() before feeding them.
//   kError     the request is malformed or breaks a limit: error_status() is the HTTP
//              status to answer (400, 413, 431) and the connection must then be closed.
// Limits (STYLE.md principle 9): request line + header bytes (→ 431), header count
// (→ 431), body bytes by Content-Length or as decoded chunks arrive (→ 413). The library's
// own header-size guard is raised once per process above any configurable limit, so ours
// is the one that answers.
#pragma once

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringmail::listeners::http {

inline constexpr size_t kHeaderCountMax = 100;
// The configurable max_header_size ranges up to 1 MiB; the library's guard sits above it.
inline constexpr uint32_t kLibraryHeaderBytesMax = 2u << 20;

struct ParserLimits {
  size_t header_bytes_max = 16 * 1024;
  size_t header_count_max = kHeaderCountMax;
  uint64_t body_bytes_max = 32ull << 20;
};

enum class Method : uint8_t { kGet, kHead, kPost, kOther };

struct HttpRequest {
  Method method = Method::kOther;
  std::string method_name;  // as sent, e.g. "PUT"
  std::string target;       // request-target as sent
  std::string path;         // target without query and fragment
  int version_major = 1;
  int version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  bool keep_alive = true;  // the client allows another request on this connection
  bool upgrade = false;    // Upgrade/CONNECT: we never switch; answer then close
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  std::string body;

  // First value of header `lower_name`, or nullptr.
  const std::string* Header(std::string_view lower_name) const;
  // A body follows the headers (Content-Length > 0 or chunked).
  bool body_expected() const { return chunked || (has_content_length && content_length > 0); }
};

class RequestParser {
 public:
  enum class Event : uint8_t { kNeedMore, kHeaders, kMessage, kError };
  struct Result {
    size_t consumed = 0;
    Event event = Event::kNeedMore;
  };

  explicit RequestParser(ParserLimits limits);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  Result Feed(std::string_view bytes);
  // After kMessage: forget the request and get ready for the next one.
  void Next();

  const HttpRequest& request() const { return request_; }
  HttpRequest& mutable_request() { return request_; }
  // True from the first byte of a request until Next(): the request timeout runs.
  bool in_message() const { return in_message_; }
  int error_status() const { return error_status_; }
  const std::string& error_text() const { return error_text_; }
  void set_limits(const ParserLimits& limits) { limits_ = limits; }

 private:
  static int OnMessageBegin(http_parser* p);
  static int OnUrl(http_parser* p, const char* at, size_t len);
  static int OnHeaderField(http_parser* p, const char* at, size_t len);
  static int OnHeaderValue(http_parser* p, const char* at, size_t len);
  static int OnHeadersComplete(http_parser* p);
  static int OnBody(http_parser* p, const char* at, size_t len);
  static int OnMessageComplete(http_parser* p);
  int Fail(int status, std::string text);
  bool HeaderBytesOver(const char* at, size_t len);
  int OnTrailerBytes(size_t len);
  void FinishHeaderPair();

  ParserLimits limits_;
  http_parser parser_{};
  http_parser_settings settings_{};
  HttpRequest request_;
  std::string field_;  // header name being assembled
  std::string value_;  // header value being assembled
  bool in_value_ = false;
  bool in_message_ = false;
  bool headers_done_ = false;
  bool message_done_ = false;
  bool dead_ = false;
  bool url_started_ = false;
  // Header bytes are counted on stream offsets: where the request line began, and where
  // the bytes of the current Feed call start.
  uint64_t stream_offset_ = 0;
  uint64_t header_base_ = 0;
  uint64_t trailer_bytes_ = 0;  // of the current request's trailer section (dropped)
  const char* chunk_start_ = nullptr;
  int pending_event_ = 0;  // 1: headers, 2: message (set by the callbacks that pause)
  int error_status_ = 0;
  std::string error_text_;
};

// Case-insensitive ASCII comparison (header names, tokens).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace ringmail::listeners::http
