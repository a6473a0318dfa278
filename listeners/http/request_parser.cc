#include "listeners/http/request_parser.h"

#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ringmail::listeners::http {
namespace {

// What a declared Content-Length reserves before any body byte came; the rest as it comes.
constexpr uint64_t kBodyReserveMax = 64 * 1024;

// The library's header guard is one process-wide variable; it is raised once, before any
// parser runs (call_once orders the write before every later reader).
void RaiseLibraryHeaderGuard() {
  static std::once_flag once;
  std::call_once(once, [] { http_parser_set_max_header_size(kLibraryHeaderBytesMax); });
}

RequestParser* Self(http_parser* p) { return static_cast<RequestParser*>(p->data); }

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// RFC 9110 token.
bool ValidFieldName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

void TrimTrailingSpace(std::string* s) {
  while (!s->empty() && (s->back() == ' ' || s->back() == '\t')) s->pop_back();
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

const std::string* HttpRequest::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

RequestParser::RequestParser(ParserLimits limits) : limits_(limits) {
  RaiseLibraryHeaderGuard();
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &RequestParser::OnMessageBegin;
  settings_.on_url = &RequestParser::OnUrl;
  settings_.on_header_field = &RequestParser::OnHeaderField;
  settings_.on_header_value = &RequestParser::OnHeaderValue;
  settings_.on_headers_complete = &RequestParser::OnHeadersComplete;
  settings_.on_body = &RequestParser::OnBody;
  settings_.on_message_complete = &RequestParser::OnMessageComplete;
}

RequestParser::Result RequestParser::Feed(std::string_view bytes) {
  if (dead_) return {0, Event::kError};
  if (message_done_) return {0, Event::kMessage};   // Next() first
  if (bytes.empty()) return {0, Event::kNeedMore};  // 0 bytes would mean EOF to the library
  if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) http_parser_pause(&parser_, 0);
  chunk_start_ = bytes.data();
  pending_event_ = 0;
  size_t n = http_parser_execute(&parser_, &settings_, bytes.data(), bytes.size());
  stream_offset_ += n;
  const http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_PAUSED) {
    return {n, pending_event_ == 2 ? Event::kMessage : Event::kHeaders};
  }
  if (err != HPE_OK) {
    dead_ = true;
    if (error_status_ == 0) {
      if (err == HPE_HEADER_OVERFLOW) {
        error_status_ = 431;
        error_text_ = "request header section too large";
      } else {
        error_status_ = 400;
        error_text_ = absl::StrCat("malformed request: ", http_errno_description(err));
      }
    }
    return {n, Event::kError};
  }
  return {n, Event::kNeedMore};
}

void RequestParser::Next() {
  request_ = HttpRequest{};
  trailer_bytes_ = 0;
  field_.clear();
  value_.clear();
  in_value_ = false;
  in_message_ = false;
  headers_done_ = false;
  message_done_ = false;
}

int RequestParser::Fail(int status, std::string text) {
  error_status_ = status;
  error_text_ = std::move(text);
  // Stops the library with an HPE_CB_* error. Not 1 or 2: from on_headers_complete those
  // mean "skip the body" / "upgrade", not "fail".
  return -1;
}

bool RequestParser::HeaderBytesOver(const char* at, size_t len) {
  const uint64_t end = stream_offset_ + static_cast<uint64_t>(at - chunk_start_) + len;
  return end - header_base_ > limits_.header_bytes_max;
}

int RequestParser::OnMessageBegin(http_parser* p) {
  RequestParser* self = Self(p);
  self->in_message_ = true;
  self->url_started_ = false;
  return 0;
}

int RequestParser::OnUrl(http_parser* p, const char* at, size_t len) {
  RequestParser* self = Self(p);
  if (!self->url_started_) {
    self->url_started_ = true;
    // The method and its space came just before the first URL byte.
    const uint64_t url_offset =
        self->stream_offset_ + static_cast<uint64_t>(at - self->chunk_start_);
    const uint64_t method_bytes =
        std::char_traits<char>::length(http_method_str(static_cast<http_method>(p->method))) + 1;
    self->header_base_ = url_offset >= method_bytes ? url_offset - method_bytes : 0;
  }
  if (self->HeaderBytesOver(at, len)) return self->Fail(431, "request line too long");
  self->request_.target.append(at, len);
  return 0;
}

void RequestParser::FinishHeaderPair() {
  TrimTrailingSpace(&value_);
  for (char& c : field_) c = Lower(c);
  request_.headers.emplace_back(std::move(field_), std::move(value_));
  field_.clear();
  value_.clear();
}

int RequestParser::OnHeaderField(http_parser* p, const char* at, size_t len) {
  RequestParser* self = Self(p);
  if (self->headers_done_) return self->OnTrailerBytes(len);
  if (self->HeaderBytesOver(at, len)) return self->Fail(431, "request header section too large");
  if (self->in_value_) {
    self->FinishHeaderPair();
    self->in_value_ = false;
  }
  if (self->field_.empty() && self->request_.headers.size() >= self->limits_.header_count_max) {
    return self->Fail(431,
                      absl::StrCat("more than ", self->limits_.header_count_max, " header fields"));
  }
  self->field_.append(at, len);
  return 0;
}

int RequestParser::OnHeaderValue(http_parser* p, const char* at, size_t len) {
  RequestParser* self = Self(p);
  if (self->headers_done_) return self->OnTrailerBytes(len);
  if (self->HeaderBytesOver(at, len)) return self->Fail(431, "request header section too large");
  self->in_value_ = true;
  self->value_.append(at, len);
  return 0;
}

// Trailer fields (after a chunked body) are read and dropped: RFC 9110 §6.5.1 forbids
// merging them into the header section, and they would skip the checks the header section
// gets (found by fuzz/http_request_fuzz: "Bad Name: x" as a trailer reached `headers`).
// Their bytes count against header_bytes_max, from the first trailer byte.
int RequestParser::OnTrailerBytes(size_t len) {
  trailer_bytes_ += len;
  if (trailer_bytes_ > limits_.header_bytes_max) {
    return Fail(431, "request trailer section too large");
  }
  return 0;
}

int RequestParser::OnHeadersComplete(http_parser* p) {
  RequestParser* self = Self(p);
  if (self->in_value_ || !self->field_.empty()) self->FinishHeaderPair();
  self->in_value_ = false;
  HttpRequest& r = self->request_;
  if (p->http_major != 1) {  // HTTP/0.9 ("GET /") is a malformed request line for us
    return p->http_major >= 2 ? self->Fail(505, "only HTTP/1.x is spoken here")
                              : self->Fail(400, "malformed request line (no HTTP version)");
  }
  int hosts = 0;
  int transfer_encodings = 0;
  const std::string* transfer_encoding = nullptr;
  for (const auto& [name, value] : r.headers) {
    // The library is lenient about names (spaces); we are not (RFC 9112 §5.1). It joins
    // obs-fold continuation lines into the value, which §5.2 lets a server accept.
    if (!ValidFieldName(name)) return self->Fail(400, "malformed header field name");
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return self->Fail(400, "header value with a line break or NUL");
    }
    if (name == "host") ++hosts;
    if (name == "transfer-encoding") {
      ++transfer_encodings;
      transfer_encoding = &value;
    }
  }
  // RFC 9112 §3.2: more than one Host is a 400. §6.1: a transfer coding we do not know is a
  // 501 (we know only chunked, and only alone: "gzip, chunked" would be read as plain
  // chunks), and Transfer-Encoding in HTTP/1.0 is faulty framing.
  if (hosts > 1) return self->Fail(400, "more than one Host header");
  if (transfer_encoding != nullptr) {
    if (p->http_minor == 0) return self->Fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (transfer_encodings > 1 ||
        !absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(*transfer_encoding), "chunked")) {
      return self->Fail(501, "only the chunked transfer coding is understood");
    }
  }
  r.method_name = http_method_str(static_cast<http_method>(p->method));
  switch (static_cast<http_method>(p->method)) {
    case HTTP_GET:
      r.method = Method::kGet;
      break;
    case HTTP_HEAD:
      r.method = Method::kHead;
      break;
    case HTTP_POST:
      r.method = Method::kPost;
      break;
    default:
      r.method = Method::kOther;
      break;
  }
  r.path = r.target.substr(0, r.target.find_first_of("?#"));
  r.version_major = p->http_major;
  r.version_minor = p->http_minor;
  r.keep_alive = http_should_keep_alive(p) != 0;
  r.upgrade = p->upgrade != 0;
  r.chunked = (p->flags & F_CHUNKED) != 0;
  r.has_content_length = (p->flags & F_CONTENTLENGTH) != 0;
  r.content_length = r.has_content_length ? p->content_length : 0;
  if (r.has_content_length && r.content_length > self->limits_.body_bytes_max) {
    return self->Fail(
        413, absl::StrCat("request body larger than ", self->limits_.body_bytes_max, " bytes"));
  }
  // The body grows as it comes: reserving all of a declared 32 MB at once let idle clients
  // commit memory they never sent (session 11's audit, F4).
  if (r.has_content_length) r.body.reserve(std::min<uint64_t>(r.content_length, kBodyReserveMax));
  self->headers_done_ = true;
  self->pending_event_ = 1;
  http_parser_pause(p, 1);
  return 0;
}

int RequestParser::OnBody(http_parser* p, const char* at, size_t len) {
  RequestParser* self = Self(p);
  if (self->request_.body.size() + len > self->limits_.body_bytes_max) {
    return self->Fail(
        413, absl::StrCat("request body larger than ", self->limits_.body_bytes_max, " bytes"));
  }
  self->request_.body.append(at, len);
  return 0;
}

int RequestParser::OnMessageComplete(http_parser* p) {
  RequestParser* self = Self(p);
  self->message_done_ = true;
  self->pending_event_ = 2;
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace ringmail::listeners::http
