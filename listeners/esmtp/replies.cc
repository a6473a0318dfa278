#include "listeners/esmtp/replies.h"

#include <array>
#include <cstddef>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace ringmail::listeners::esmtp {
namespace {

using R = ReplyId;

// One row per ReplyId, in enum order (checked at compile time below). Texts are ours; codes
// follow RFC 5321 §4.2 / §4.5.3.1, RFC 3463, RFC 1870 (SIZE), RFC 3030 (CHUNKING),
// RFC 3207 (STARTTLS) and RFC 6531 (SMTPUTF8).
constexpr ReplySpec kReplies[] = {
    {R::kGreeting, 220, "", "{} ESMTP ringmail", false},
    {R::kBanner, 220, "", "{}", false},
    {R::kHelo, 250, "", "{}", false},
    {R::kOk, 250, "2.0.0", "Ok", false},
    {R::kMailOk, 250, "2.1.0", "Ok", false},
    {R::kRcptOk, 250, "2.1.5", "Ok", false},
    {R::kQueued, 250, "2.0.0", "Ok: queued as {}", false},
    {R::kChunkOk, 250, "2.0.0", "Ok: {} octets received", false},
    {R::kVrfy, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery",
     false},
    {R::kHelp, 214, "2.0.0",
     "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP", false},
    {R::kBye, 221, "2.0.0", "Bye", false},
    {R::kStartData, 354, "", "End data with <CR><LF>.<CR><LF>", false},
    {R::kStartTls, 220, "2.0.0", "Ready to start TLS", false},
    {R::kShutdown, 421, "4.3.2", "{} Service shutting down, closing transmission channel",
     false},
    {R::kTimeout, 421, "4.4.2", "{} Error: timeout exceeded", false},
    {R::kTooManyErrors, 421, "4.7.0", "{} Error: too many errors", false},
    {R::kTooManyMessages, 421, "4.7.0", "{} Error: too many messages in one connection", false},
    {R::kNonSmtpCommand, 421, "4.7.0", "{} Error: non-SMTP command received", true},
    {R::kRunawayLine, 421, "4.7.0", "{} Error: command line too long, closing", true},
    {R::kBadBdatSize, 421, "4.7.0", "{} Error: invalid BDAT chunk size, closing", true},
    {R::kTempFailure, 451, "4.3.0", "Error: temporary local problem, try again later", false},
    {R::kStorageFull, 452, "4.3.1", "Error: insufficient system storage", false},
    // Not a client error: a large mailing legitimately meets the recipient limit and
    // resends the rest; counting it would close sessions that behave.
    {R::kTooManyRecipients, 452, "4.5.3", "Error: too many recipients", false},
    {R::kTlsUnavailable, 454, "4.7.0", "TLS not available due to temporary reason", false},
    {R::kLineTooLong, 500, "5.5.6", "Error: line too long", true},
    {R::kUnknownCommand, 500, "5.5.2", "Error: command not recognized", true},
    {R::kBadCharacters, 501, "5.5.4", "Error: invalid characters in command", true},
    {R::kHeloSyntax, 501, "5.5.4", "Syntax: HELO/EHLO hostname", true},
    {R::kMailSyntax, 501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]", true},
    {R::kRcptSyntax, 501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]", true},
    {R::kBdatSyntax, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]", true},
    {R::kVrfySyntax, 501, "5.5.4", "Syntax: VRFY address", true},
    {R::kNoArguments, 501, "5.5.4", "Error: no arguments allowed", true},
    {R::kBadParameter, 501, "5.5.4", "Error: malformed or repeated parameter", true},
    {R::kBadSender, 501, "5.1.7", "Error: bad sender address syntax", true},
    {R::kBadRecipient, 501, "5.1.3", "Error: bad recipient address syntax", true},
    {R::kSenderPathTooLong, 501, "5.1.7", "Error: sender path too long", true},
    {R::kRecipientPathTooLong, 501, "5.1.3", "Error: recipient path too long", true},
    {R::kNotImplemented, 502, "5.5.1", "Error: command not implemented", true},
    {R::kNeedHelo, 503, "5.5.1", "Error: send HELO/EHLO first", true},
    {R::kNestedMail, 503, "5.5.1", "Error: nested MAIL command", true},
    {R::kNeedMail, 503, "5.5.1", "Error: need MAIL command", true},
    {R::kNeedRcpt, 503, "5.5.1", "Error: need RCPT command", true},
    {R::kDataAfterBdat, 503, "5.5.1", "Error: DATA and BDAT cannot be mixed", true},
    {R::kBinaryMimeData, 503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT", true},
    // The client pipelined it before it could see the failure (RFC 3030 §2): not counted.
    {R::kBdatAborted, 503, "5.5.1", "Error: transaction aborted by an earlier BDAT", false},
    {R::kBadSequence, 503, "5.5.1", "Error: bad sequence of commands", true},
    {R::kTlsActive, 503, "5.5.1", "Error: TLS already active", true},
    {R::kNeedStartTls, 530, "5.7.0", "Must issue a STARTTLS command first", true},
    {R::kRelayDenied, 550, "5.7.1", "Relaying denied", true},
    {R::kMessageTooBig, 552, "5.3.4", "Error: message exceeds fixed maximum message size",
     true},
    {R::kSenderTooLong, 553, "5.1.7", "Error: sender mailbox name too long", true},
    {R::kRecipientTooLong, 553, "5.1.3", "Error: recipient mailbox name too long", true},
    {R::kNonAsciiAddress, 553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8", true},
    {R::kBareLf, 554, "5.6.0", "Error: bare <LF> received", true},
    {R::kBareCr, 554, "5.6.0", "Error: bare <CR> received", true},
    {R::kNulByte, 554, "5.6.0", "Error: NUL character received", true},
    {R::kContentRejected, 554, "5.6.0", "Error: message content rejected", true},
    {R::kPolicyRejected, 554, "5.7.1", "Error: message rejected by policy", true},
    {R::kTransactionFailed, 554, "5.3.0", "Error: transaction failed", true},
    // An upstream relay passing on a looping message is not misbehaving: not counted.
    {R::kTooManyHops, 554, "5.4.6", "Error: too many hops, a mail loop", false},
    {R::kUnknownMailParameter, 555, "5.5.4", "Error: unsupported MAIL parameter", true},
    {R::kUnknownRcptParameter, 555, "5.5.4", "Error: unsupported RCPT parameter", true},
};

constexpr bool TableInEnumOrder() {
  if (std::size(kReplies) != static_cast<size_t>(ReplyId::kCount)) return false;
  for (size_t i = 0; i < std::size(kReplies); ++i) {
    if (static_cast<size_t>(kReplies[i].id) != i) return false;
  }
  return true;
}
static_assert(TableInEnumOrder(), "kReplies must list every ReplyId in enum order");

constexpr bool TableCodesConsistent() {
  for (const ReplySpec& r : kReplies) {
    if (r.code < 200 || r.code > 599) return false;
    // An enhanced code's class digit equals the reply code's first digit (RFC 3463 §3.1);
    // 214/220/221/250/252 map to class 2.
    if (!r.enhanced.empty() && r.enhanced[0] - '0' != r.code / 100) return false;
    // Only 4xx/5xx replies can blame the client.
    if (r.client_error && r.code < 400) return false;
  }
  return true;
}
static_assert(TableCodesConsistent(), "reply codes and enhanced codes disagree");

size_t PlaceholderPosition(std::string_view text) { return text.find("{}"); }

void AppendCodeAndEnhanced(const ReplySpec& r, char separator, std::string* out) {
  char code[4] = {static_cast<char>('0' + r.code / 100),
                  static_cast<char>('0' + r.code / 10 % 10),
                  static_cast<char>('0' + r.code % 10), separator};
  out->append(code, 4);
  if (!r.enhanced.empty()) {
    out->append(r.enhanced);
    out->push_back(' ');
  }
}

}  // namespace

const ReplySpec& GetReply(ReplyId id) {
  size_t index = static_cast<size_t>(id);
  RM_CHECK(index < std::size(kReplies)) << "bad ReplyId " << index;
  return kReplies[index];
}

void AppendReply(ReplyId id, std::string* out) {
  const ReplySpec& r = GetReply(id);
  RM_DCHECK(PlaceholderPosition(r.text) == std::string_view::npos) << "reply needs an arg";
  AppendCodeAndEnhanced(r, ' ', out);
  out->append(r.text);
  out->append("\r\n");
}

void AppendReply(ReplyId id, std::string_view arg, std::string* out) {
  const ReplySpec& r = GetReply(id);
  size_t at = PlaceholderPosition(r.text);
  RM_DCHECK(at != std::string_view::npos) << "reply takes no arg";
  AppendCodeAndEnhanced(r, ' ', out);
  if (at == std::string_view::npos) {
    out->append(r.text);
  } else {
    out->append(r.text.substr(0, at));
    out->append(arg);
    out->append(r.text.substr(at + 2));
  }
  out->append("\r\n");
}

void AppendEhloReply(std::string_view host, const EhloExtensions& extensions,
                     std::string* out) {
  // RFC 3030: BINARYMIME needs CHUNKING, which we always offer. SMTPUTF8 needs 8BITMIME
  // (RFC 6531 §3.1), also always offered.
  out->append("250-").append(host).append("\r\n");
  absl::StrAppend(out, "250-PIPELINING\r\n", "250-SIZE ", extensions.size_bytes_max, "\r\n");
  out->append(
      "250-8BITMIME\r\n"
      "250-ENHANCEDSTATUSCODES\r\n"
      "250-CHUNKING\r\n"
      "250-BINARYMIME\r\n");
  if (extensions.starttls) out->append("250-STARTTLS\r\n");
  out->append("250 SMTPUTF8\r\n");
}

ReplyId ReplyForCommitStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return ReplyId::kQueued;
    // "Try again later" (STYLE.md principle 11): the spool is full or briefly unable.
    case absl::StatusCode::kResourceExhausted:
      return ReplyId::kStorageFull;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
      return ReplyId::kTempFailure;
    // Definite refusals of this message.
    case absl::StatusCode::kInvalidArgument:
      return ReplyId::kContentRejected;
    case absl::StatusCode::kFailedPrecondition:
      return ReplyId::kTransactionFailed;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return ReplyId::kPolicyRejected;
    case absl::StatusCode::kOutOfRange:
      return ReplyId::kMessageTooBig;
    // Our own bugs and surprises (kInternal, kDataLoss, kUnknown, kNotFound, ...): a
    // temporary failure, so the client keeps the message instead of bouncing it.
    default:
      return ReplyId::kTempFailure;
  }
}

}  // namespace ringmail::listeners::esmtp
