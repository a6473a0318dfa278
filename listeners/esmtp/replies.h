// listeners/esmtp/replies.h — every reply the ESMTP server sends, in one table.
//
// Each ReplyId names one reply: its RFC 5321 code, its RFC 3463 enhanced status code (none
// for the greeting, the HELO/EHLO answer and 354, as RFC 2034 §3 allows), its fixed text, and
// whether it blames the client (counted against max_errors). A "{}" in the text is replaced
// by one argument chosen by the server (host name, message id, octet count); no reply ever
// echoes client bytes, so no reply can carry a smuggled CR/LF.
//
// ReplyForCommitStatus() is the single place where an absl::Status (from the spool) becomes
// an SMTP reply (STYLE.md principle 11): kUnavailable / kResourceExhausted and every error
// that is our fault are 4xx (the client keeps the message and retries); kInvalidArgument /
// kFailedPrecondition / kPermissionDenied / kOutOfRange are 5xx.
//
// Pure functions and constant data; callable from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace ringmail::listeners::esmtp {

enum class ReplyId : uint8_t {
  kGreeting,           // 220 {host} ESMTP ringmail
  kBanner,             // 220 {banner}: the configured greeting text
  kHelo,               // 250 {host}
  kOk,                 // 250 2.0.0 (RSET, NOOP)
  kMailOk,             // 250 2.1.0
  kRcptOk,             // 250 2.1.5
  kQueued,             // 250 2.0.0 Ok: queued as {id}
  kChunkOk,            // 250 2.0.0 {n} octets received
  kVrfy,               // 252 2.0.0
  kHelp,               // 214 2.0.0
  kBye,                // 221 2.0.0
  kStartData,          // 354
  kStartTls,           // 220 2.0.0 Ready to start TLS
  kShutdown,           // 421 4.3.2
  kTimeout,            // 421 4.4.2
  kTooManyErrors,      // 421 4.7.0
  kTooManyMessages,    // 421 4.7.0 (max_messages_per_connection)
  kNonSmtpCommand,     // 421 4.7.0 (HTTP request line and the like)
  kRunawayLine,        // 421 4.7.0 (a command line that never ends)
  kBadBdatSize,        // 421 4.7.0 (unparseable BDAT size: the byte stream cannot be resynced)
  kTempFailure,        // 451 4.3.0
  kStorageFull,        // 452 4.3.1
  kTooManyRecipients,  // 452 4.5.3
  kTlsUnavailable,     // 454 4.7.0
  kLineTooLong,        // 500 5.5.6
  kUnknownCommand,     // 500 5.5.2
  kBadCharacters,      // 501 5.5.4
  kHeloSyntax,         // 501 5.5.4
  kMailSyntax,         // 501 5.5.4
  kRcptSyntax,         // 501 5.5.4
  kBdatSyntax,         // 501 5.5.4 (BDAT size parsed but the rest is malformed)
  kVrfySyntax,         // 501 5.5.4
  kNoArguments,        // 501 5.5.4
  kBadParameter,       // 501 5.5.4 (malformed or duplicate ESMTP parameter)
  kBadSender,          // 501 5.1.7
  kBadRecipient,       // 501 5.1.3
  kSenderPathTooLong,  // 501 5.1.7
  kRecipientPathTooLong,  // 501 5.1.3
  kNotImplemented,     // 502 5.5.1
  kNeedHelo,           // 503 5.5.1
  kNestedMail,         // 503 5.5.1
  kNeedMail,           // 503 5.5.1
  kNeedRcpt,           // 503 5.5.1
  kDataAfterBdat,      // 503 5.5.1
  kBinaryMimeData,     // 503 5.5.1
  kBdatAborted,        // 503 5.5.1 (a pipelined BDAT after a failed one)
  kBadSequence,        // 503 5.5.1 (e.g. STARTTLS inside a transaction)
  kTlsActive,          // 503 5.5.1 (STARTTLS again, on a session already in TLS)
  kNeedStartTls,       // 530 5.7.0
  kRelayDenied,        // 550 5.7.1 Relaying denied
  kMessageTooBig,      // 552 5.3.4
  kSenderTooLong,      // 553 5.1.7 (local part > 64 or domain > 255 octets)
  kRecipientTooLong,   // 553 5.1.3
  kNonAsciiAddress,    // 553 5.6.7 (RFC 6531)
  kBareLf,             // 554 5.6.0
  kBareCr,             // 554 5.6.0
  kNulByte,            // 554 5.6.0
  kContentRejected,    // 554 5.6.0
  kPolicyRejected,     // 554 5.7.1
  kTransactionFailed,  // 554 5.3.0
  kTooManyHops,        // 554 5.4.6 (a mail loop: too many Received: fields)
  kUnknownMailParameter,  // 555 5.5.4
  kUnknownRcptParameter,  // 555 5.5.4
  kCount,
};

struct ReplySpec {
  ReplyId id;
  uint16_t code;              // RFC 5321 reply code
  std::string_view enhanced;  // RFC 3463 "class.subject.detail", or "" for none
  std::string_view text;      // may contain one "{}" placeholder
  bool client_error;          // counts toward max_errors
};

const ReplySpec& GetReply(ReplyId id);

// Appends "<code> <enhanced> <text>\r\n"; `arg` replaces the "{}" placeholder if the text
// has one (RM_DCHECKs that an argument is given exactly when the text wants one).
void AppendReply(ReplyId id, std::string* out);
void AppendReply(ReplyId id, std::string_view arg, std::string* out);

// The extensions a given session advertises after EHLO.
struct EhloExtensions {
  uint64_t size_bytes_max = 0;  // advertised as "SIZE n"; 0 means no fixed maximum
  bool starttls = false;        // offered only before TLS is active
};

// The multi-line EHLO answer: "250-{host}" then one line per extension, the last "250 ".
void AppendEhloReply(std::string_view host, const EhloExtensions& extensions,
                     std::string* out);

// The reply for the spool's answer to Commit (STYLE.md principle 11). OK → kQueued.
ReplyId ReplyForCommitStatus(const absl::Status& status);

}  // namespace ringmail::listeners::esmtp
