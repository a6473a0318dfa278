// delivery/bounce.cc — RFC 3464 delivery status notifications.
#include "delivery/bounce.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "base/string_view.h"

namespace ringmail::delivery {
namespace {

constexpr char kCrlf[] = "\r\n";
constexpr size_t kLineBytesMax = 998;  // RFC 5322 §2.1.1, without CRLF
constexpr size_t kHostBytesMax = 255;

bool IsPrintableAscii(char c) { return c >= 0x20 && c < 0x7f; }

bool HasNonAscii(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// Printable ASCII only (controls and 8-bit bytes become '?'), at most `max` bytes.
std::string CleanText(std::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (char c : text) {
    if (out.size() == max) break;
    out.push_back(IsPrintableAscii(c) ? c : '?');
  }
  return out;
}

// A host name for Reporting-MTA / Remote-MTA: letters, digits and the punctuation of names
// and address literals, up to the first other byte.
std::string CleanHost(std::string_view host) {
  std::string out;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
    if (!ok || out.size() == kHostBytesMax) break;
    out.push_back(c);
  }
  return out.empty() ? std::string("localhost") : out;
}

// Decodes one UTF-8 sequence at text[*i]; U+FFFD (one byte consumed) when malformed.
uint32_t DecodeUtf8(std::string_view text, size_t* i) {
  unsigned char lead = static_cast<unsigned char>(text[*i]);
  int extra = lead >= 0xf0 && lead < 0xf5 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc2 ? 1 : -1;
  if (lead >= 0xf5) extra = -1;
  if (extra < 0 || *i + extra >= text.size()) {
    ++*i;
    return 0xfffd;
  }
  uint32_t cp = lead & (0x3f >> extra);
  for (int k = 1; k <= extra; ++k) {
    unsigned char c = static_cast<unsigned char>(text[*i + k]);
    if ((c & 0xc0) != 0x80) {
      ++*i;
      return 0xfffd;
    }
    cp = (cp << 6) | (c & 0x3f);
  }
  static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[extra] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
    ++*i;
    return 0xfffd;
  }
  *i += extra + 1;
  return cp;
}

// An address for a status field: "rfc822; a@b" when ASCII, else RFC 6533 "utf-8; " with
// every non-ASCII character (and '\', and any control) as \x{HEX}.
std::string StatusAddress(std::string_view address) {
  std::string_view capped = address.substr(0, kAddressBytesMax);
  bool ascii = !HasNonAscii(capped);
  std::string out = ascii ? "rfc822; " : "utf-8; ";
  // Escapes grow the text up to six-fold; the field line must still fit in 998 octets.
  constexpr size_t kFieldBytesMax = kLineBytesMax - 40;
  for (size_t i = 0; i < capped.size() && out.size() < kFieldBytesMax;) {
    char c = capped[i];
    if (IsPrintableAscii(c) && (ascii || c != '\\')) {
      out.push_back(c);
      ++i;
    } else if (static_cast<unsigned char>(c) < 0x80) {
      absl::StrAppend(&out, ascii ? "?" : absl::StrFormat("\\x{%02X}", static_cast<int>(c)));
      ++i;
    } else {
      absl::StrAppend(&out, absl::StrFormat("\\x{%04X}", DecodeUtf8(capped, &i)));
    }
  }
  return out;
}

// The address as people read it in the text part: controls become '?', UTF-8 stays.
std::string DisplayAddress(std::string_view address) {
  std::string out;
  for (char c : address.substr(0, kAddressBytesMax)) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  return out;
}

EnhancedStatus FailureStatus(EnhancedStatus status, bool delayed) {
  if (status.present() && status.klass != 2) return status;
  EnhancedStatus fallback;
  fallback.klass = delayed ? 4 : 5;
  return fallback;
}

// The original header section: up to the first empty line, at most
// kBounceOriginalBytesMax, complete lines only, each cut to 998 octets, CRLF endings,
// without NUL or stray CR.
std::string OriginalHeaders(std::string_view content) {
  content = content.substr(0, kBounceOriginalBytesMax);
  std::string out;
  while (!content.empty()) {
    size_t lf = content.find('\n');
    if (lf == std::string_view::npos) break;  // a partial last line: leave it out
    std::string_view line = content.substr(0, lf);
    content.remove_prefix(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    size_t start = out.size();
    for (char c : line) {
      if (c == '\0' || c == '\r') continue;
      if (out.size() - start == kLineBytesMax) break;
      out.push_back(c);
    }
    out.append(kCrlf);
  }
  return out;
}

std::string HumanPart(const BounceRequest& request, const std::string& host) {
  std::string out = absl::StrCat("This is the mail system at host ", host, ".", kCrlf, kCrlf);
  if (request.delayed) {
    absl::StrAppend(&out, "Your message could not be delivered yet to the recipients below.",
                    kCrlf, "It is still being retried", kCrlf);
    if (request.will_retry_until_ms != 0) {
      absl::StrAppend(&out, "until ", Rfc5322Date(request.will_retry_until_ms), kCrlf);
    }
    absl::StrAppend(&out, "You do not need to resend it.", kCrlf, kCrlf);
  } else {
    absl::StrAppend(&out, "Your message could not be delivered to the recipients below.",
                    kCrlf, "The headers of your message are attached.", kCrlf, kCrlf);
  }
  for (const BounceRecipient& r : request.recipients) {
    absl::StrAppend(&out, "<", DisplayAddress(r.address), ">:", kCrlf);
    if (r.remote && !r.remote_mta.empty()) {
      absl::StrAppend(&out, "    host ", CleanHost(r.remote_mta), " said:", kCrlf);
    }
    absl::StrAppend(&out, "    ", CleanText(r.diagnostic, kBounceDiagnosticBytesMax), kCrlf,
                    kCrlf);
  }
  return out;
}

std::string StatusPart(const BounceRequest& request, const std::string& host) {
  std::string out = absl::StrCat("Reporting-MTA: dns; ", host, kCrlf);
  absl::StrAppend(&out, "X-Ringmail-Queue-ID: ", request.original_id.ToHex(), kCrlf);
  if (request.arrival_ms != 0) {
    absl::StrAppend(&out, "Arrival-Date: ", Rfc5322Date(request.arrival_ms), kCrlf);
  }
  for (const BounceRecipient& r : request.recipients) {
    absl::StrAppend(&out, kCrlf, "Final-Recipient: ", StatusAddress(r.address), kCrlf);
    absl::StrAppend(&out, "Action: ", request.delayed ? "delayed" : "failed", kCrlf);
    absl::StrAppend(&out, "Status: ", FailureStatus(r.status, request.delayed).ToString(),
                    kCrlf);
    if (!r.remote_mta.empty()) {
      absl::StrAppend(&out, "Remote-MTA: dns; ", CleanHost(r.remote_mta), kCrlf);
    }
    std::string diagnostic = CleanText(r.diagnostic, kBounceDiagnosticBytesMax);
    if (!diagnostic.empty()) {
      absl::StrAppend(&out, "Diagnostic-Code: ", r.remote ? "smtp; " : "X-Ringmail; ",
                      diagnostic, kCrlf);
    }
    if (r.last_attempt_ms != 0) {
      absl::StrAppend(&out, "Last-Attempt-Date: ", Rfc5322Date(r.last_attempt_ms), kCrlf);
    }
    if (request.delayed && request.will_retry_until_ms != 0) {
      absl::StrAppend(&out, "Will-Retry-Until: ", Rfc5322Date(request.will_retry_until_ms),
                      kCrlf);
    }
  }
  return out;
}

// "=_" cannot occur in base64 and starts no quoted-printable soft break, and the id and
// time make a collision unlikely; still, the parts are searched and the boundary changed
// until it occurs in none of them.
std::string ChooseBoundary(const BounceRequest& request,
                           std::initializer_list<std::string_view> parts) {
  std::string boundary =
      absl::StrCat("=_ringmail_", request.original_id.ToHex(), "_", request.now_ms);
  for (int suffix = 0;; ++suffix) {
    std::string candidate = suffix == 0 ? boundary : absl::StrCat(boundary, "_", suffix);
    bool clash = std::any_of(parts.begin(), parts.end(), [&](std::string_view part) {
      return part.find(candidate) != std::string_view::npos;
    });
    if (!clash) return candidate;
  }
}

}  // namespace

std::string Rfc5322Date(uint64_t unix_ms) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000",
                          absl::FromUnixMillis(static_cast<int64_t>(unix_ms)),
                          absl::UTCTimeZone());
}

BounceRecipient BounceRecipientFromResult(std::string_view address,
                                          const RecipientResult& result,
                                          std::string_view remote_mta, uint64_t attempt_ms) {
  BounceRecipient out;
  out.address = std::string(address);
  out.status = result.status;
  out.remote = result.remote;
  if (result.remote) out.remote_mta = std::string(remote_mta);
  out.diagnostic = result.diagnostic;
  out.last_attempt_ms = attempt_ms;
  return out;
}

absl::StatusOr<core::Message> ComposeBounce(const BounceRequest& request) {
  if (request.original_sender.empty()) {
    return absl::FailedPreconditionError("no DSN for a message with a null sender");
  }
  if (request.recipients.empty() || request.recipients.size() > kBounceRecipientsMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("a DSN needs 1..", kBounceRecipientsMax, " recipients, got ",
                     request.recipients.size()));
  }
  const std::string& sender = request.original_sender;
  bool sender_ok = sender.size() <= kAddressBytesMax &&
                   std::none_of(sender.begin(), sender.end(), [](char c) {
                     unsigned char u = static_cast<unsigned char>(c);
                     return u < 0x20 || u == 0x7f || c == '<' || c == '>';
                   });
  if (!sender_ok) {
    return absl::InvalidArgumentError("the original sender cannot be addressed");
  }
  std::string host = CleanHost(request.reporting_mta);
  std::string human = HumanPart(request, host);
  std::string status = StatusPart(request, host);
  std::string headers = OriginalHeaders(request.original_content);
  std::string boundary = ChooseBoundary(request, {human, status, headers});
  std::string text_charset = HasNonAscii(human) ? "utf-8" : "us-ascii";

  std::string out;
  absl::StrAppend(&out, "Date: ", Rfc5322Date(request.now_ms), kCrlf);
  absl::StrAppend(&out, "From: Mail Delivery System <MAILER-DAEMON@", host, ">", kCrlf);
  absl::StrAppend(&out, "To: <", sender, ">", kCrlf);
  absl::StrAppend(&out, "Subject: ",
                  request.delayed ? "Delayed Mail (still being retried)"
                                  : "Undelivered Mail Returned to Sender",
                  kCrlf);
  absl::StrAppend(&out, "Message-ID: <", request.original_id.ToHex(), ".", request.now_ms,
                  ".dsn@", host, ">", kCrlf);
  absl::StrAppend(&out, "Auto-Submitted: auto-replied", kCrlf, "MIME-Version: 1.0", kCrlf);
  absl::StrAppend(&out, "Content-Type: multipart/report; report-type=delivery-status;", kCrlf,
                  "\tboundary=\"", boundary, "\"", kCrlf, kCrlf);
  absl::StrAppend(&out, "This is a MIME-encapsulated message.", kCrlf, kCrlf);
  absl::StrAppend(&out, "--", boundary, kCrlf, "Content-Description: Notification", kCrlf,
                  "Content-Type: text/plain; charset=", text_charset, kCrlf, kCrlf, human);
  absl::StrAppend(&out, "--", boundary, kCrlf, "Content-Description: Delivery report", kCrlf,
                  "Content-Type: message/delivery-status", kCrlf, kCrlf, status);
  absl::StrAppend(&out, "--", boundary, kCrlf,
                  "Content-Description: Undelivered Message Headers", kCrlf,
                  "Content-Type: text/rfc822-headers", kCrlf, kCrlf, headers);
  absl::StrAppend(&out, "--", boundary, "--", kCrlf);

  core::Message message;
  message.received_ms = request.now_ms;
  message.envelope.mail_from = "";
  if (HasNonAscii(out)) message.envelope.mail_params = "BODY=8BITMIME";
  if (HasNonAscii(sender)) {
    absl::StrAppend(&message.envelope.mail_params,
                    message.envelope.mail_params.empty() ? "" : " ", "SMTPUTF8");
  }
  core::Recipient recipient;
  recipient.address = sender;
  message.envelope.recipients.push_back(std::move(recipient));
  message.envelope.helo = host;
  message.body.Append(out);
  return message;
}

}  // namespace ringmail::delivery
