// listeners/control/protocol.h — the control socket's wire protocol, shared by the daemon's
// control listener and `ringctl` (which links only this file).
//
// A client sends one request per line: words separated by spaces, a word may be quoted
// with "..." (backslash escapes \" and \\), `--json` anywhere asks for a JSON body.
// The daemon answers each request with a frame:
//     "OK <length>\n" <length bytes of body>      or      "ERR <length>\n" <body>
// and then reads the next request. Bodies are human text (aligned tables) by default,
// one JSON value with --json. Limits: a request line is at most kRequestLineMax bytes and
// kRequestWordsMax words; a response body at most kResponseBytesMax.
// Pure functions, any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ringmail::control {

inline constexpr size_t kRequestLineMax = 4096;
inline constexpr size_t kRequestWordsMax = 64;
inline constexpr size_t kResponseBytesMax = 16 << 20;

struct Request {
  std::vector<std::string> words;  // without --json
  bool json = false;
};

// Parses one request line (without its '\n'). Errors say what is wrong in plain words.
absl::StatusOr<Request> ParseRequestLine(std::string_view line);
// The line a client sends for `request` (quoting words that need it), with '\n'.
std::string FormatRequestLine(const Request& request);

struct Response {
  bool ok = true;
  std::string body;
};

std::string EncodeResponse(const Response& response);

// Incremental decoding of response frames on the client side.
class ResponseDecoder {
 public:
  // Consumes bytes; returns a complete response when one is there (the rest is kept).
  // An error means the stream is not a control protocol stream (or exceeds the limits).
  absl::StatusOr<std::optional<Response>> Feed(std::string_view bytes);

 private:
  std::string buffer_;
};

// Aligned text table: a header row and data rows, columns separated by two spaces.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

}  // namespace ringmail::control
