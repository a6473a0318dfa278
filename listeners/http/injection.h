// listeners/http/injection.h — turns a decoded injection request into the messages to
// commit: envelope checks, the relay policy, templates, MIME or raw content, trace header.
// Pure (the clock, the ids and the peer are given); the HTTP connection commits the result.
//
// Rules
// - Addresses go through the ESMTP path parser (listeners/esmtp/policy.h), so the HTTP door
//   accepts exactly the envelopes SMTP would: a bad address is 400 naming the field.
// - Relay: a recipient is accepted when the HTTP client's IP is in relay_hosts or the
//   recipient's domain in relay_domains (the ESMTP_Listener's lists); others are failures
//   in the response ("relay not permitted"), never errors for the whole request.
// - One message per recipient when templated (some recipient has substitution_data),
//   otherwise one message for every accepted recipient. Templates need structured content.
// - Raw content: line endings become CRLF, lines over 998 octets and NUL bytes are refused,
//   the header section must be header fields; Date: and Message-ID: are added when missing
//   (RFC 6409 §8.2, §8.3). 8-bit content is flagged BODY=8BITMIME in the envelope.
// - Sizes: each message's content ≤ message_bytes_max, all of them together ≤
//   request_bytes_max (templates multiply a body): past that, kResourceExhausted (→ 413).
// - Budget: each message built is charged to the loop's InjectBudget (context.budget, up to
//   context.budget_limit) in the plan's charge; when other requests hold too much of it,
//   kUnavailable (→ 503 with Retry-After) and what was charged is given back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/message.h"
#include "listeners/esmtp/policy.h"
#include "listeners/http/inject_budget.h"
#include "listeners/http/inject_request.h"

namespace ringmail::listeners::http {

struct InjectContext {
  const esmtp::Policy* policy = nullptr;
  std::optional<esmtp::IpAddress> peer;  // nullopt: unknown (never relays by IP)
  std::string peer_text;                 // "ip:port" for the envelope
  std::string hostname;                  // Message-ID domain and Received: "by"
  uint64_t now_ms = 0;
  // Message ids, taken in order: drawn beforehand from the generator of the loop that owns
  // the request, so that the plan can be made on another thread. One per recipient of the
  // request is always enough (a message has one recipient at least).
  std::vector<core::MessageId> ids;
  uint64_t message_bytes_max = 64ull << 20;
  uint64_t request_bytes_max = 256ull << 20;
  std::shared_ptr<InjectBudget> budget;  // null: no budget (tests, the fuzzer)
  uint64_t budget_limit = 0;
};

struct RecipientFailure {
  std::string email;
  std::string reason;
};

struct InjectionPlan {
  std::vector<std::unique_ptr<core::Message>> messages;
  std::vector<RecipientFailure> failures;
  BudgetCharge charge;  // holds every message's content_size() until the spool answers
};

absl::StatusOr<InjectionPlan> PlanInjection(const InjectRequest& request,
                                            const InjectContext& context);

// The 200 answer: {"success_count":N,"failure_count":M,"failures":[{"email","reason"}],
// "id":"<hex>"} for one message, "ids":[...] for none or several.
std::string InjectResultJson(size_t success_count, const std::vector<RecipientFailure>& failures,
                             const std::vector<std::string>& ids);

// Raw RFC 5322 content made fit for the spool (see the rules above). `message_id` and
// `date` are added when the header lacks them. Sets *eight_bit when a byte ≥ 0x80 occurs.
absl::StatusOr<std::string> NormalizeRawMessage(std::string_view raw, std::string_view message_id,
                                                std::string_view date, bool* eight_bit);

}  // namespace ringmail::listeners::http
