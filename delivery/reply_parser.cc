// delivery/reply_parser.cc — SMTP reply lines, enhanced status codes, EHLO keywords.
#include "delivery/reply_parser.h"

#include <cstring>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/string_view.h"

namespace ringmail::delivery {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads 1..3 digits at text[*i]; false when there are none or more than three.
bool ReadStatusNumber(std::string_view text, size_t* i, uint16_t* out) {
  size_t start = *i;
  uint16_t value = 0;
  while (*i < text.size() && IsDigit(text[*i])) {
    if (*i - start == 3) return false;
    value = static_cast<uint16_t>(value * 10 + (text[*i] - '0'));
    ++*i;
  }
  if (*i == start) return false;
  *out = value;
  return true;
}

// RFC 3463 status-code = class "." subject "." detail, followed by a space or the end.
// Returns the number of bytes it takes (with one following space), 0 if there is none.
size_t ParseEnhanced(std::string_view text, uint16_t code, EnhancedStatus* out) {
  if (text.size() < 5) return 0;
  char klass = text[0];
  if ((klass != '2' && klass != '4' && klass != '5') || klass - '0' != code / 100) return 0;
  if (text[1] != '.') return 0;
  size_t i = 2;
  EnhancedStatus status;
  status.klass = static_cast<uint8_t>(klass - '0');
  if (!ReadStatusNumber(text, &i, &status.subject)) return 0;
  if (i >= text.size() || text[i] != '.') return 0;
  ++i;
  if (!ReadStatusNumber(text, &i, &status.detail)) return 0;
  if (i < text.size()) {
    if (text[i] != ' ') return 0;
    ++i;
  }
  *out = status;
  return i;
}

void AppendPrintable(std::string_view text, std::string* out) {
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    out->push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
}

}  // namespace

std::string EnhancedStatus::ToString() const {
  if (!present()) return "";
  return absl::StrCat(klass, ".", subject, ".", detail);
}

EnhancedStatus Reply::StatusOrDefault() const {
  if (enhanced.present()) return enhanced;
  EnhancedStatus status;
  status.klass = static_cast<uint8_t>(code >= 500 ? 5 : code >= 400 ? 4 : 2);
  return status;
}

std::string Reply::Summary(size_t max_bytes) const {
  std::string out = absl::StrCat(code);
  std::string enhanced_text = enhanced.ToString();
  if (!enhanced_text.empty()) absl::StrAppend(&out, " ", enhanced_text);
  std::string repeated = absl::StrCat(enhanced_text, " ");
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    // Continuation lines usually repeat the enhanced code (RFC 2034 §4); say it once.
    if (i > 0 && !enhanced_text.empty() && line.substr(0, repeated.size()) == repeated) {
      line.remove_prefix(repeated.size());
    }
    if (line.empty()) continue;
    out.push_back(' ');
    AppendPrintable(line, &out);
    if (out.size() >= max_bytes) break;
  }
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

const char* ReplyErrorName(ReplyError error) {
  switch (error) {
    case ReplyError::kNone: return "none";
    case ReplyError::kLineTooLong: return "reply line too long";
    case ReplyError::kTooManyLines: return "too many reply lines";
    case ReplyError::kReplyTooLong: return "reply too long";
    case ReplyError::kBadCode: return "malformed reply code";
    case ReplyError::kCodeMismatch: return "reply code changes between lines";
    case ReplyError::kNulByte: return "NUL in reply";
    case ReplyError::kBareCr: return "bare CR in reply";
  }
  return "unknown";
}

ReplyParser::Status ReplyParser::Fail(ReplyError error) {
  error_ = error;
  line_.clear();
  reply_ = Reply();
  return Status::kError;
}

ReplyParser::Status ReplyParser::Next(std::string_view input, size_t* pos) {
  RM_DCHECK(!reply_ready_) << "TakeReply() was not called";
  if (error_ != ReplyError::kNone) {
    *pos = input.size();
    return Status::kError;
  }
  while (*pos < input.size()) {
    const char* start = input.data() + *pos;
    size_t available = input.size() - *pos;
    const void* lf = std::memchr(start, '\n', available);
    size_t take = lf == nullptr ? available : static_cast<const char*>(lf) - start;
    // The line with its LF must fit: content (CR included) + 1 <= kReplyLineBytesMax.
    if (line_.size() + take + 1 > kReplyLineBytesMax) {
      *pos = input.size();
      return Fail(ReplyError::kLineTooLong);
    }
    line_.append(start, take);
    if (lf == nullptr) {
      *pos = input.size();
      return Status::kNeedMore;
    }
    *pos += take + 1;
    Status status = FinishLine();
    if (status == Status::kError) *pos = input.size();  // nothing after an error is read
    if (status != Status::kNeedMore) return status;
  }
  return Status::kNeedMore;
}

ReplyParser::Status ReplyParser::FinishLine() {
  size_t wire_bytes = line_.size() + 1;  // with the LF
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find('\0') != std::string_view::npos) return Fail(ReplyError::kNulByte);
  if (line.find('\r') != std::string_view::npos) return Fail(ReplyError::kBareCr);
  reply_bytes_ += wire_bytes;
  if (reply_bytes_ > kReplyBytesMax) return Fail(ReplyError::kReplyTooLong);
  if (reply_.lines.size() == kReplyLinesMax) return Fail(ReplyError::kTooManyLines);

  if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
      !IsDigit(line[2])) {
    return Fail(ReplyError::kBadCode);
  }
  bool last = line.size() == 3 || line[3] == ' ';
  if (!last && line[3] != '-') return Fail(ReplyError::kBadCode);
  uint16_t code = static_cast<uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 +
                                        (line[2] - '0'));
  if (reply_started_ && code != reply_.code) return Fail(ReplyError::kCodeMismatch);
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  if (!reply_started_) {
    reply_started_ = true;
    reply_.code = code;
    text.remove_prefix(ParseEnhanced(text, code, &reply_.enhanced));
  }
  reply_.lines.emplace_back(text);
  line_.clear();
  if (!last) return Status::kNeedMore;
  reply_ready_ = true;
  return Status::kReply;
}

Reply ReplyParser::TakeReply() {
  RM_DCHECK(reply_ready_);
  Reply out = std::move(reply_);
  reply_ = Reply();
  reply_bytes_ = 0;
  reply_started_ = false;
  reply_ready_ = false;
  return out;
}

namespace {

// Saturating decimal; false when `text` is not all digits.
bool ParseSize(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (!IsDigit(c)) return false;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      value = std::numeric_limits<uint64_t>::max();
    } else {
      value = value * 10 + digit;
    }
  }
  *out = value;
  return true;
}

// Splits off the first space-separated word of *text.
std::string_view NextWord(std::string_view* text) {
  size_t begin = text->find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    *text = {};
    return {};
  }
  text->remove_prefix(begin);
  size_t end = text->find(' ');
  std::string_view word = text->substr(0, end);
  text->remove_prefix(end == std::string_view::npos ? text->size() : end);
  return word;
}

void ApplyKeyword(std::string_view keyword, std::string_view params, Extensions* ext) {
  auto is = [keyword](std::string_view name) {
    return absl::EqualsIgnoreCase(ToAbsl(keyword), ToAbsl(name));
  };
  if (is("PIPELINING")) {
    ext->pipelining = true;
  } else if (is("SIZE")) {
    ext->size = true;
    uint64_t value = 0;
    if (ParseSize(NextWord(&params), &value)) ext->size_bytes_max = value;
  } else if (is("8BITMIME")) {
    ext->eight_bit_mime = true;
  } else if (is("CHUNKING")) {
    ext->chunking = true;
  } else if (is("BINARYMIME")) {
    ext->binary_mime = true;
  } else if (is("STARTTLS")) {
    ext->starttls = true;
  } else if (is("SMTPUTF8")) {
    ext->smtputf8 = true;
  } else if (is("ENHANCEDSTATUSCODES")) {
    ext->enhanced_status_codes = true;
  } else if (is("DSN")) {
    ext->dsn = true;
  }
}

}  // namespace

Extensions ParseEhloReply(const Reply& reply) {
  Extensions ext;
  if (reply.lines.empty()) return ext;
  std::string_view first = reply.lines[0];
  AppendPrintable(NextWord(&first).substr(0, 255), &ext.server_name);
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::string_view rest = reply.lines[i];
    std::string_view keyword = NextWord(&rest);
    if (!keyword.empty()) ApplyKeyword(keyword, rest, &ext);
  }
  return ext;
}

}  // namespace ringmail::delivery
