// tools/ringload/http_response.h — framing of HTTP/1.1 responses for `ringload send --http`,
// and the ids of an injection answer for --record. Pure (no I/O); one reader per connection,
// used by that connection's loop thread.
//
// The reader takes a status line, header lines and a Content-Length body; interim 1xx
// responses are skipped. Every size is bounded (head, header count, body) and anything else
// — chunked or unframed bodies, malformed lines — is an error the caller turns into a
// session error. It is small on purpose: ringmaild always frames answers by Content-Length.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ringmail::ringload {

// For --record: the "id" of a 200 answer's JSON, or its "ids" joined by ',', or "-". Ids are
// taken only as runs of [A-Za-z0-9._-] of at most 128 bytes, so the line stays one field.
void AppendHttpIds(std::string_view body, std::string* out);

// Frames HTTP/1.1 responses out of a byte stream. Pure; one per connection.
class HttpResponseReader {
 public:
  static constexpr size_t kHeadBytesMax = 16 << 10;
  static constexpr size_t kHeaderLinesMax = 100;
  static constexpr size_t kBodyBytesMax = 1 << 20;

  struct Response {
    int status = 0;
    bool close = false;     // "Connection: close": the server ends the connection after it
    std::string_view body;  // valid until the next Feed/Next/Clear
  };
  enum class Result { kResponse, kNeedMore, kError };

  // Appends bytes received; false when they overflow the bounds (the caller fails).
  bool Feed(std::string_view data);
  // The next complete response, if any. kError sets error().
  Result Next(Response* out);
  void Clear();
  const char* error() const { return error_; }

 private:
  Result ParseHead(std::string_view head);

  std::string in_;
  size_t consumed_ = 0;    // bytes of in_ belonging to responses already returned
  size_t head_bytes_ = 0;  // 0: the current response's head is not parsed yet
  size_t body_bytes_ = 0;
  int status_ = 0;
  bool close_ = false;
  const char* error_ = "";
};

}  // namespace ringmail::ringload
