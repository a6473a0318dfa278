#include "listeners/http/mime.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "base/string_view.h"

namespace ringmail::listeners::http {
namespace {

constexpr size_t kFoldColumns = 78;     // RFC 5322 §2.1.1 "SHOULD"
constexpr size_t kEncodedLineMax = 76;  // RFC 2047 §2: lines with encoded-words
constexpr size_t kEncodedWordMax = 75;  // RFC 2047 §2
constexpr size_t kQpLineMax = 76;       // RFC 2045 §6.7 rule 5
constexpr size_t kBase64LineMax = 76;   // RFC 2045 §6.8
constexpr size_t kDisplayBytesMax = 256;
constexpr size_t kAddressBytesMax = 254;
constexpr std::string_view kWordPrefix = "=?UTF-8?B?";
constexpr std::string_view kWordSuffix = "?=";

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
std::string LowerCopy(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

void AppendHex(std::string* out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out->push_back(kHex[c >> 4]);
  out->push_back(kHex[c & 15]);
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 5322 atext plus space: a display name made only of these needs no quoting.
bool PlainPhrase(std::string_view s) {
  for (char c : s) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view(" !#$%&'*+-/=?^_`{|}~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return !s.empty();
}

// RFC 2045 token character.
bool TokenChar(char c) {
  return c > 32 && c < 127 &&
         std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

bool ValidMediaType(std::string_view type) {
  size_t slash = type.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == type.size()) return false;
  if (type.size() > 127) return false;
  for (size_t i = 0; i < type.size(); ++i) {
    if (i != slash && !TokenChar(type[i])) return false;
  }
  return true;
}

// Encoded-words of whole UTF-8 characters; the first fits `first_budget` columns.
std::vector<std::string> EncodeWords(std::string_view value, size_t first_budget) {
  std::vector<std::string> words;
  size_t pos = 0;
  while (pos < value.size() || words.empty()) {
    const size_t budget = words.empty() ? first_budget : kEncodedWordMax;
    const size_t overhead = kWordPrefix.size() + kWordSuffix.size();
    size_t max_bytes = budget > overhead + 4 ? (budget - overhead) / 4 * 3 : 3;
    size_t n = std::min(max_bytes, value.size() - pos);
    // Never split a UTF-8 sequence (RFC 2047 §5: each word holds whole characters).
    while (n > 0 && pos + n < value.size() &&
           (static_cast<unsigned char>(value[pos + n]) & 0xC0) == 0x80) {
      --n;
    }
    if (n == 0) n = std::min(max_bytes, value.size() - pos);  // broken UTF-8: cut anyway
    words.push_back(absl::StrCat(ToAbsl(kWordPrefix),
                                 absl::Base64Escape(ToAbsl(value.substr(pos, n))),
                                 ToAbsl(kWordSuffix)));
    pos += n;
    if (value.empty()) break;
  }
  return words;
}

// Joins space-separated tokens after "Name:" folding before a token that would pass
// `columns`; empty tokens (runs of spaces) never start a line.
std::string FoldTokens(std::string_view name, const std::vector<std::string_view>& tokens,
                       size_t columns) {
  std::string out = absl::StrCat(ToAbsl(name), ":");
  size_t line = out.size();
  for (std::string_view t : tokens) {
    if (!t.empty() && line + 1 + t.size() > columns && line > name.size() + 1) {
      out.append("\r\n");
      line = 0;
    }
    out.push_back(' ');
    out.append(t);
    line += 1 + t.size();
  }
  out.append("\r\n");
  return out;
}

std::vector<std::string_view> SplitSpaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == ' ') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// A display name as it goes before "<addr>": as is, quoted, or as encoded-words.
std::string FormatDisplay(std::string_view display) {
  if (!IsAscii(display)) {
    std::string out;
    for (const std::string& w : EncodeWords(display, kEncodedWordMax)) {
      if (!out.empty()) out.push_back(' ');
      out.append(w);
    }
    return out;
  }
  if (PlainPhrase(display)) return std::string(display);
  std::string out = "\"";
  for (char c : display) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// RFC 2231 parameter: `name="value"`, or `name*=UTF-8''%XX..` when quoting cannot carry it.
std::string FormatParameter(std::string_view param, std::string_view value) {
  if (value.empty()) return "";
  bool quotable = IsAscii(value);
  for (char c : value) quotable = quotable && c != '"' && c != '\\';
  if (quotable) return absl::StrCat(";\r\n ", ToAbsl(param), "=\"", ToAbsl(value), "\"");
  std::string out = absl::StrCat(";\r\n ", ToAbsl(param), "*=UTF-8''");
  for (char ch : value) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum || std::string_view("!#$&+-.^_`|~").find(ch) != std::string_view::npos) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      AppendHex(&out, c);
    }
  }
  return out;
}

absl::Status ValidAddress(std::string_view address, std::string_view field) {
  const size_t at = address.rfind('@');
  if (address.empty() || address.size() > kAddressBytesMax || at == std::string_view::npos ||
      at == 0 || at + 1 == address.size()) {
    return FieldError(field, absl::StrCat("'", ToAbsl(address), "' is not an address"));
  }
  for (char ch : address) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c <= ' ' || c == 127 ||
        std::string_view("<>(),;:\\\"[]").find(ch) != std::string_view::npos) {
      return FieldError(field, "address with a space, a control or a special character");
    }
  }
  return absl::OkStatus();
}

// Splits at commas outside quotes and angle brackets.
std::vector<std::string_view> SplitAddressItems(std::string_view value) {
  std::vector<std::string_view> items;
  bool quoted = false;
  bool angle = false;
  size_t start = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '<') {
      angle = true;
    } else if (c == '>') {
      angle = false;
    } else if (c == ',' && !angle) {
      items.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  items.push_back(value.substr(start));
  return items;
}

absl::StatusOr<Mailbox> ParseMailboxItem(std::string_view item, std::string_view field) {
  Mailbox m;
  const size_t lt = item.rfind('<');
  if (lt == std::string_view::npos) {
    if (item.size() > 1 && item.substr(item.size() - 2) == ":;" &&
        item.find('@') == std::string_view::npos && IsAscii(item)) {
      m.display = std::string(item);  // empty group: "undisclosed-recipients:;"
      return m;
    }
    RM_RETURN_IF_ERROR(ValidAddress(item, field));
    m.address = std::string(item);
    return m;
  }
  const size_t gt = item.find('>', lt);
  if (gt == std::string_view::npos || !Trim(item.substr(gt + 1)).empty()) {
    return FieldError(field, "unbalanced '<' in an address");
  }
  RM_RETURN_IF_ERROR(ValidAddress(item.substr(lt + 1, gt - lt - 1), field));
  m.address = std::string(item.substr(lt + 1, gt - lt - 1));
  std::string_view display = Trim(item.substr(0, lt));
  if (display.size() >= 2 && display.front() == '"' && display.back() == '"') {
    display = display.substr(1, display.size() - 2);
    for (size_t i = 0; i < display.size(); ++i) {
      if (display[i] == '\\' && i + 1 < display.size()) ++i;
      m.display.push_back(display[i]);
    }
  } else {
    m.display = std::string(display);
  }
  if (m.display.size() > kDisplayBytesMax) return FieldError(field, "display name too long");
  return m;
}

struct Entity {
  std::string headers;  // each line ends in CRLF
  std::string body;
};

Entity TextEntity(std::string_view subtype, std::string_view text) {
  return {absl::StrCat("Content-Type: text/", ToAbsl(subtype), "; charset=utf-8\r\n",
                       "Content-Transfer-Encoding: quoted-printable\r\n"),
          EncodeQuotedPrintable(text)};
}

Entity AttachmentEntity(const Attachment& a) {
  return {absl::StrCat("Content-Type: ", a.type, FormatParameter("name", a.name), "\r\n",
                       "Content-Disposition: attachment", FormatParameter("filename", a.name),
                       "\r\n", "Content-Transfer-Encoding: base64\r\n"),
          EncodeBase64Lines(a.data)};
}

// Each part's body is followed by CRLF "--boundary" (RFC 2046 §5.1.1: that CRLF belongs to
// the delimiter, so a part keeps exactly its own trailing line break).
Entity MultipartEntity(std::string_view subtype, const std::string& boundary,
                       std::vector<Entity> parts, bool preamble) {
  Entity e;
  e.headers = absl::StrCat("Content-Type: multipart/", ToAbsl(subtype), ";\r\n boundary=\"",
                           boundary, "\"\r\n");
  if (preamble) e.body = "This is a multi-part message in MIME format.\r\n";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) e.body.append("\r\n");
    absl::StrAppend(&e.body, "--", boundary, "\r\n", parts[i].headers, "\r\n", parts[i].body);
  }
  absl::StrAppend(&e.body, "\r\n--", boundary, "--\r\n");
  return e;
}

absl::StatusOr<Entity> BodyEntity(const MimeContent& content,
                                  const std::vector<Attachment>& attachments,
                                  const std::string& seed) {
  std::vector<Entity> texts;
  if (content.text_body) texts.push_back(TextEntity("plain", *content.text_body));
  if (content.html_body) texts.push_back(TextEntity("html", *content.html_body));
  if (texts.empty() && attachments.empty()) {
    return FieldError("content", "needs text_body, html_body or attachments");
  }
  // "=_" never occurs in quoted-printable or base64 text, so no part can hold a boundary.
  Entity main;
  if (texts.size() == 2) {
    main = MultipartEntity("alternative", absl::StrCat("=_rm_alt_", seed), std::move(texts),
                           attachments.empty());
  } else if (texts.size() == 1) {
    main = std::move(texts[0]);
  }
  if (attachments.empty()) return main;
  std::vector<Entity> parts;
  if (!main.headers.empty()) parts.push_back(std::move(main));
  for (const Attachment& a : attachments) parts.push_back(AttachmentEntity(a));
  return MultipartEntity("mixed", absl::StrCat("=_rm_mix_", seed), std::move(parts), true);
}

struct HeaderFlags {
  bool date = false;
  bool message_id = false;
  bool to = false;
};

absl::Status AppendCustomHeader(std::string* out, std::string_view name, std::string_view value,
                                HeaderFlags* flags) {
  const std::string field = absl::StrCat("content.headers.", ToAbsl(name));
  if (!ValidHeaderName(name)) return FieldError(field, "not a valid header name");
  if (HasControlBytes(value)) return FieldError(field, "holds a line break or control byte");
  if (value.size() > kHeaderValueBytesMax) return FieldError(field, "value too long");
  const std::string lower = LowerCopy(name);
  if (lower == "mime-version" || lower.rfind("content-", 0) == 0) {
    return FieldError(field, "set by ringmail from the content; not allowed here");
  }
  if (lower == "from" || lower == "subject") {
    return FieldError(field, absl::StrCat("use content.", lower, " instead"));
  }
  if (lower == "bcc") return FieldError(field, "list blind copies in recipients instead");
  if (lower == "to" || lower == "cc" || lower == "reply-to" || lower == "sender") {
    RM_ASSIGN_OR_RETURN(std::vector<Mailbox> list, ParseAddressList(value, field));
    out->append(FormatAddressHeader(name, list));
  } else {
    out->append(FoldUnstructured(name, value));
  }
  flags->date |= lower == "date";
  flags->message_id |= lower == "message-id";
  flags->to |= lower == "to";
  return absl::OkStatus();
}

}  // namespace

absl::Status FieldError(std::string_view field, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(ToAbsl(field), ": ", ToAbsl(message)));
}

std::string ErrorField(const absl::Status& status) {
  std::string_view m = ToStd(status.message());
  const size_t colon = m.find(": ");
  if (colon == std::string_view::npos || m.substr(0, colon).find(' ') != std::string_view::npos) {
    return "";
  }
  return std::string(m.substr(0, colon));
}

bool HasControlBytes(std::string_view s) {
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c < 32 && c != '\t') || c == 127) return true;
  }
  return false;
}

bool IsAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 128) return false;
  }
  return true;
}

bool ValidHeaderName(std::string_view name) {
  if (name.empty() || name.size() > kHeaderNameBytesMax) return false;
  for (char c : name) {
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

std::string EncodeQuotedPrintable(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 16);
  size_t column = 0;
  auto emit = [&](std::string_view piece) {
    if (column + piece.size() > kQpLineMax - 1) {  // room for the soft break's '='
      out.append("=\r\n");
      column = 0;
    }
    out.append(piece);
    column += piece.size();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out.append("\r\n");  // a hard line break, whatever the client used
      column = 0;
      continue;
    }
    const bool line_end = i + 1 == text.size() || text[i + 1] == '\r' || text[i + 1] == '\n';
    if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !line_end)) {
      emit(std::string_view(&text[i], 1));
    } else {
      std::string esc = "=";
      AppendHex(&esc, c);
      emit(esc);
    }
  }
  return out;
}

std::string EncodeBase64Lines(std::string_view data) {
  const std::string flat = absl::Base64Escape(ToAbsl(data));
  std::string out;
  out.reserve(flat.size() + flat.size() / kBase64LineMax * 2 + 2);
  for (size_t pos = 0; pos < flat.size(); pos += kBase64LineMax) {
    if (pos > 0) out.append("\r\n");
    out.append(flat, pos, kBase64LineMax);
  }
  return out;
}

std::string FoldUnstructured(std::string_view name, std::string_view value) {
  std::vector<std::string_view> tokens = SplitSpaces(value);
  bool plain = IsAscii(value);
  for (std::string_view t : tokens) plain = plain && t.size() + 1 < kLineBytesMax;
  if (plain) return FoldTokens(name, tokens, kFoldColumns);
  // Encoded: the first word shares its line with "Name: ", unless the name leaves too
  // little room, in which case the words start on the next line.
  const size_t used = name.size() + 2;
  const size_t first = kEncodedLineMax > used + 20 ? kEncodedLineMax - used : kEncodedWordMax;
  std::vector<std::string> words = EncodeWords(value, first);
  std::vector<std::string_view> views(words.begin(), words.end());
  std::string out = absl::StrCat(ToAbsl(name), ":");
  for (size_t i = 0; i < views.size(); ++i) {
    if (i > 0 || first == kEncodedWordMax) out.append("\r\n");
    out.push_back(' ');
    out.append(views[i]);
  }
  out.append("\r\n");
  return out;
}

absl::StatusOr<std::vector<Mailbox>> ParseAddressList(std::string_view value,
                                                      std::string_view field) {
  if (HasControlBytes(value)) return FieldError(field, "holds a line break or control byte");
  std::vector<Mailbox> out;
  for (std::string_view item : SplitAddressItems(value)) {
    item = Trim(item);
    if (item.empty()) return FieldError(field, "empty address in the list");
    if (out.size() >= kAddressesPerHeaderMax) return FieldError(field, "too many addresses");
    RM_ASSIGN_OR_RETURN(Mailbox m, ParseMailboxItem(item, field));
    out.push_back(std::move(m));
  }
  return out;
}

std::string FormatAddressHeader(std::string_view name, const std::vector<Mailbox>& list) {
  std::string flat;
  for (size_t i = 0; i < list.size(); ++i) {
    const Mailbox& m = list[i];
    if (i > 0) flat.append(", ");
    if (m.address.empty()) {
      flat.append(m.display);  // empty group
    } else if (m.display.empty()) {
      flat.append(m.address);
    } else {
      absl::StrAppend(&flat, FormatDisplay(m.display), " <", m.address, ">");
    }
  }
  return FoldTokens(name, SplitSpaces(flat), kFoldColumns);
}

std::string Rfc5322Date(uint64_t unix_ms) {
  const absl::Time t = absl::FromUnixMillis(static_cast<int64_t>(unix_ms));
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", t, absl::UTCTimeZone());
}

absl::StatusOr<std::string> BuildMime(const MimeContent& content,
                                      const std::vector<Attachment>& attachments,
                                      const MimeOptions& options) {
  if (content.headers.size() > kCustomHeadersMax) {
    return FieldError("content.headers", "too many headers");
  }
  if (attachments.size() > kAttachmentsMax) {
    return FieldError("content.attachments", "too many attachments");
  }
  for (size_t i = 0; i < attachments.size(); ++i) {
    const std::string field = absl::StrCat("content.attachments[", i, "]");
    const Attachment& a = attachments[i];
    if (HasControlBytes(a.name) || a.name.size() > kAttachmentNameBytesMax) {
      return FieldError(absl::StrCat(field, ".name"), "control byte or too long");
    }
    if (!ValidMediaType(a.type))
      return FieldError(absl::StrCat(field, ".type"), "not type/subtype");
  }
  if (HasControlBytes(content.subject)) {
    return FieldError("content.subject", "holds a line break or control byte");
  }
  if (content.subject.size() > kHeaderValueBytesMax) {
    return FieldError("content.subject", "too long");
  }
  RM_ASSIGN_OR_RETURN(std::vector<Mailbox> from, ParseAddressList(content.from, "content.from"));
  for (const Mailbox& m : from) {
    if (m.address.empty()) return FieldError("content.from", "needs an address");
  }
  HeaderFlags flags;
  std::string custom;
  for (const auto& [name, value] : content.headers) {
    RM_RETURN_IF_ERROR(AppendCustomHeader(&custom, name, value, &flags));
  }
  RM_ASSIGN_OR_RETURN(Entity body, BodyEntity(content, attachments, options.boundary_seed));
  std::string out;
  if (!flags.date) absl::StrAppend(&out, "Date: ", Rfc5322Date(options.date_ms), "\r\n");
  out.append(FormatAddressHeader("From", from));
  if (!flags.to && !options.to.empty()) {
    RM_ASSIGN_OR_RETURN(std::vector<Mailbox> to, ParseAddressList(options.to, "recipients"));
    out.append(FormatAddressHeader("To", to));
  }
  if (!content.subject.empty()) out.append(FoldUnstructured("Subject", content.subject));
  if (!flags.message_id) absl::StrAppend(&out, "Message-ID: ", options.message_id, "\r\n");
  out.append("MIME-Version: 1.0\r\n");
  absl::StrAppend(&out, custom, body.headers, "\r\n", body.body);
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out.append("\r\n");
  return out;
}

}  // namespace ringmail::listeners::http
