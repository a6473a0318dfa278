// listeners/http/mime.h — builds a correct RFC 5322 / MIME message from structured content,
// and the encoders it needs. Pure: the date, the Message-ID and the boundary seed are
// given by the caller.
//
// Structure: text_body alone or html_body alone is a single text part; both are a
// multipart/alternative (text first, RFC 2046 §5.1.4); attachments wrap that in a
// multipart/mixed. Text is quoted-printable (UTF-8), attachments base64 in 76-column lines;
// header values with non-ASCII bytes (or too long to fold) become RFC 2047 encoded-words,
// attachment names RFC 2231 parameters. Date, Message-ID and MIME-Version are always set;
// every line ends in CRLF and none is longer than 998 octets (RFC 5322 §2.1.1).
//
// Header injection: no header name or value (subject, from, custom headers, addresses,
// attachment names and types) may hold CR, LF or other control bytes; such content is
// refused with kInvalidArgument. Every error message starts with the JSON field it is about
// ("content.subject: ...") so the HTTP answer can name it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmail::listeners::http {

inline constexpr size_t kLineBytesMax = 998;       // RFC 5322 §2.1.1, without CRLF
inline constexpr size_t kHeaderNameBytesMax = 76;  // so "Name: " fits a 78-column line
inline constexpr size_t kHeaderValueBytesMax = 16 * 1024;
inline constexpr size_t kCustomHeadersMax = 100;
inline constexpr size_t kAttachmentsMax = 100;
inline constexpr size_t kAttachmentNameBytesMax = 255;
inline constexpr size_t kAddressesPerHeaderMax = 1000;

struct Attachment {
  std::string name;  // file name, UTF-8
  std::string type;  // "type/subtype", lower case
  std::string data;  // decoded bytes
};

// One message's content before MIME encoding (templates already expanded).
struct MimeContent {
  std::string from;  // "Name <a@b>" or "a@b"
  std::string subject;
  std::optional<std::string> text_body;
  std::optional<std::string> html_body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra, as given
};

struct MimeOptions {
  std::string to;             // To: value when `headers` has none; empty: no To: header
  std::string message_id;     // "<...@...>"
  uint64_t date_ms = 0;       // Date:
  std::string boundary_seed;  // unique per message (the message id in hex)
};

// The whole message, CRLF line endings, ending in CRLF.
absl::StatusOr<std::string> BuildMime(const MimeContent& content,
                                      const std::vector<Attachment>& attachments,
                                      const MimeOptions& options);

// ---- encoders (public for tests) ----

// Text (any line endings: CRLF, LF or CR) as quoted-printable with CRLF line breaks and
// soft breaks keeping lines within 76 columns.
std::string EncodeQuotedPrintable(std::string_view text);
// Base64 in lines of 76 columns joined by CRLF (no CRLF after the last line).
std::string EncodeBase64Lines(std::string_view data);
// "Name: value" folded as one header field, ending in CRLF: plain ASCII folded at spaces,
// else RFC 2047 B encoded-words of whole UTF-8 characters, each line within 76 columns.
std::string FoldUnstructured(std::string_view name, std::string_view value);

struct Mailbox {
  std::string display;  // may be empty
  std::string address;  // addr-spec
};
// "a@b", "Name <a@b>", "\"Last, First\" <a@b>", comma separated; an empty group such as
// "undisclosed-recipients:;" is kept as a mailbox with an empty address and the group text
// as display. `field` prefixes error messages.
absl::StatusOr<std::vector<Mailbox>> ParseAddressList(std::string_view value,
                                                      std::string_view field);
// "Name: mailbox, mailbox" folded, display names quoted or encoded as needed.
std::string FormatAddressHeader(std::string_view name, const std::vector<Mailbox>& list);

// RFC 5322 date-time in UTC: "Tue, 01 Aug 2023 10:00:00 +0000".
std::string Rfc5322Date(uint64_t unix_ms);

// True if `s` has CR, LF, NUL or another control byte but TAB.
bool HasControlBytes(std::string_view s);
bool IsAscii(std::string_view s);
// RFC 5322 field-name: printable ASCII but ':', 1..kHeaderNameBytesMax bytes.
bool ValidHeaderName(std::string_view name);

// The field named at the start of an error message made by this module ("a.b: ..."), or "".
std::string ErrorField(const absl::Status& status);
absl::Status FieldError(std::string_view field, std::string_view message);

}  // namespace ringmail::listeners::http
