#include "tools/ringload/http_response.h"

#include "tools/ringload/text.h"

namespace ringmail::ringload {
namespace {

constexpr size_t kIdBytesMax = 128;

bool IsIdByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

// The JSON string value starting at `at` (just past its opening quote) if it is an id.
std::string_view IdAt(std::string_view body, size_t at) {
  size_t end = at;
  while (end < body.size() && end - at <= kIdBytesMax && IsIdByte(body[end])) ++end;
  if (end == at || end >= body.size() || body[end] != '"' || end - at > kIdBytesMax) return {};
  return body.substr(at, end - at);
}

}  // namespace

void AppendHttpIds(std::string_view body, std::string* out) {
  const size_t start = out->size();
  if (size_t at = body.find("\"id\":\""); at != std::string_view::npos) {
    out->append(IdAt(body, at + 6));
  } else if (size_t list = body.find("\"ids\":["); list != std::string_view::npos) {
    size_t p = list + 7;
    const size_t end = body.find(']', p);
    while (end != std::string_view::npos && p < end) {
      const size_t q = body.find('"', p);
      if (q == std::string_view::npos || q > end) break;
      std::string_view id = IdAt(body, q + 1);
      if (id.empty()) break;
      if (out->size() > start) out->push_back(',');
      out->append(id);
      p = q + 1 + id.size() + 1;
    }
  }
  if (out->size() == start) out->push_back('-');
}

// ---------------------------------------------------------------------------------------
// HttpResponseReader

bool HttpResponseReader::Feed(std::string_view data) {
  if (consumed_ > 0) {
    in_.erase(0, consumed_);
    consumed_ = 0;
  }
  // At most one response being framed plus what follows it in the same segment.
  if (in_.size() + data.size() > kHeadBytesMax + kBodyBytesMax + (64 << 10)) {
    error_ = "response larger than allowed";
    return false;
  }
  in_.append(data);
  return true;
}

void HttpResponseReader::Clear() {
  in_.clear();
  consumed_ = head_bytes_ = body_bytes_ = 0;
}

HttpResponseReader::Result HttpResponseReader::Next(Response* out) {
  for (;;) {
    std::string_view rest = std::string_view(in_).substr(consumed_);
    if (head_bytes_ == 0) {
      const size_t end = rest.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (rest.size() > kHeadBytesMax) {
          error_ = "response head too large";
          return Result::kError;
        }
        return Result::kNeedMore;
      }
      if (end + 4 > kHeadBytesMax) {
        error_ = "response head too large";
        return Result::kError;
      }
      if (Result r = ParseHead(rest.substr(0, end + 2)); r != Result::kResponse) return r;
      head_bytes_ = end + 4;
      if (status_ < 200) {  // interim (100 Continue): no body, the real answer follows
        consumed_ += head_bytes_;
        head_bytes_ = 0;
        continue;
      }
    }
    if (rest.size() < head_bytes_ + body_bytes_) return Result::kNeedMore;
    out->status = status_;
    out->close = close_;
    out->body = rest.substr(head_bytes_, body_bytes_);
    consumed_ += head_bytes_ + body_bytes_;
    head_bytes_ = body_bytes_ = 0;
    return Result::kResponse;
  }
}

// `head`: the status line and header lines, each ending in CRLF.
HttpResponseReader::Result HttpResponseReader::ParseHead(std::string_view head) {
  auto fail = [this](const char* why) {
    error_ = why;
    return Result::kError;
  };
  // "HTTP/1.1 200 OK"
  if (head.size() < 12 || !StartsWithIgnoreCase(head, "HTTP/1.") || head[8] != ' ') {
    return fail("malformed status line");
  }
  uint64_t status = 0;
  if (!ParseDecimal(head.substr(9, 3), &status) || status < 100 || status > 599 ||
      (head[12] != ' ' && head[12] != '\r')) {
    return fail("malformed status code");
  }
  status_ = static_cast<int>(status);
  close_ = head[7] == '0';  // HTTP/1.0 closes unless told otherwise; we never ask
  bool has_length = false;
  body_bytes_ = 0;
  size_t lines = 0;
  size_t pos = head.find("\r\n") + 2;
  while (pos < head.size()) {
    const size_t eol = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (++lines > kHeaderLinesMax) return fail("too many response header lines");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail("malformed header line");
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!value.empty() && blank(value.front())) value.remove_prefix(1);
    while (!value.empty() && blank(value.back())) value.remove_suffix(1);
    if (EqualsIgnoreCase(name, "Content-Length")) {
      uint64_t n = 0;
      if (has_length || !ParseDecimal(value, &n)) return fail("bad Content-Length");
      if (n > kBodyBytesMax) return fail("response body larger than allowed");
      body_bytes_ = n;
      has_length = true;
    } else if (EqualsIgnoreCase(name, "Transfer-Encoding")) {
      return fail("Transfer-Encoding in a response is not supported");
    } else if (EqualsIgnoreCase(name, "Connection")) {
      close_ = EqualsIgnoreCase(value, "close");
    }
  }
  const bool bodiless = status_ < 200 || status_ == 204 || status_ == 304;
  if (!has_length && !bodiless) return fail("response without Content-Length");
  if (bodiless) body_bytes_ = 0;
  return Result::kResponse;
}

}  // namespace ringmail::ringload
