// delivery/bounce.h — composes a delivery status notification (RFC 3464 DSN, RFC 6522
// multipart/report) telling a message's sender which recipients failed, or are delayed.
//
// Pure: bytes in, a core::Message out; no clock (the caller passes now_ms), no I/O. Called
// on the delivery loop that decided the failures; the caller gives the result an id and
// hands it to the spool like any received message (it re-enters at "make it durable").
//
// The DSN:
//   envelope   MAIL FROM:<> (so it can never cause another bounce), RCPT TO the original
//              sender; BODY=8BITMIME when any 8-bit byte made it in (original headers),
//              SMTPUTF8 when the sender's address is not ASCII
//   headers    Date, From: MAILER-DAEMON@<reporting_mta>, To, Subject, Message-ID,
//              Auto-Submitted: auto-replied (RFC 3834), MIME-Version, Content-Type:
//              multipart/report; report-type=delivery-status
//   part 1     text/plain: what happened, for people
//   part 2     message/delivery-status: Reporting-MTA, X-Ringmail-Queue-ID, Arrival-Date;
//              per recipient Final-Recipient, Action (failed | delayed), Status,
//              Remote-MTA, Diagnostic-Code (smtp; the reply, or X-Ringmail; our reason),
//              Last-Attempt-Date, Will-Retry-Until (delayed)
//   part 3     text/rfc822-headers: the original header section (never the body)
// Never for a null-sender original (FailedPrecondition): a bounce of a bounce loops.
//
// Safety: every inserted value is cleaned — CR, LF and other controls never reach a header
// or a status field (a remote reply cannot inject a header); non-ASCII addresses appear in
// the status part as RFC 6533 "utf-8" addresses with \x{HEX} escapes. Every line is CRLF-
// terminated and at most 998 octets (RFC 5322 §2.1.1): long original header lines are cut,
// values are capped. The MIME boundary is chosen so it occurs nowhere in the parts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/message.h"
#include "delivery/client_machine.h"
#include "delivery/reply_parser.h"

namespace ringmail::delivery {

// How much of the original content a DSN carries (its header section, cut here).
inline constexpr size_t kBounceOriginalBytesMax = 64 * 1024;
inline constexpr size_t kBounceRecipientsMax = 10000;
inline constexpr size_t kBounceDiagnosticBytesMax = 900;

struct BounceRecipient {
  std::string address;         // the original envelope recipient
  EnhancedStatus status;       // "5.1.1"; absent or 2.x.x becomes 5.0.0 (4.0.0 if delayed)
  std::string remote_mta;      // the host that answered; "" when decided locally
  std::string diagnostic;      // the reply Summary() when remote, else our reason
  bool remote = false;         // diagnostic is an SMTP reply (Diagnostic-Code: smtp;)
  uint64_t last_attempt_ms = 0;  // 0: not reported
};

// A result of ClientMachine's TransactionDone as a BounceRecipient.
BounceRecipient BounceRecipientFromResult(std::string_view address,
                                          const RecipientResult& result,
                                          std::string_view remote_mta, uint64_t attempt_ms);

struct BounceRequest {
  std::string reporting_mta;  // our host name (GlobalOptions::hostname)
  core::MessageId original_id;
  std::string original_sender;  // the original MAIL FROM; "" → no bounce
  uint64_t arrival_ms = 0;      // the original's received_ms
  // The start of the original content as stored (Received: header, headers, body); only
  // its header section, at most kBounceOriginalBytesMax, is used.
  std::string_view original_content;
  std::vector<BounceRecipient> recipients;  // 1..kBounceRecipientsMax
  uint64_t now_ms = 0;
  bool delayed = false;              // a "delayed" DSN (still retrying) instead of "failed"
  uint64_t will_retry_until_ms = 0;  // delayed only; 0: not reported
};

// The DSN as a message (id zero: the caller assigns one). Errors: FailedPrecondition for a
// null original sender; InvalidArgument for no recipients, too many, or an original
// sender that cannot be an address.
absl::StatusOr<core::Message> ComposeBounce(const BounceRequest& request);

// RFC 5322 date-time in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
std::string Rfc5322Date(uint64_t unix_ms);

}  // namespace ringmail::delivery
