// fuzz/http_inject_fuzz.cc — libFuzzer target for the injection API's pure half: the JSON
// decoder (listeners/http/inject_request.h, simdjson), the plan that turns a request into
// messages (injection.h: address checks, relay policy, templates, raw content
// normalisation, MIME building) and the JSON answer.
//
// The input is the POST body; its last byte picks the decoder limits, the client's IP
// (relay host or not) and the size caps. Oracles: the body is unchanged after Decode (it
// is padded in place); every error is kInvalidArgument or kResourceExhausted with a
// message; every planned message has recipients, a Received: header, content within the
// caps, CRLF line endings only, no NUL, lines of at most 998 octets, a Date: and a
// Message-ID:; every request recipient is accounted for once (a message or a failure);
// the 200 answer is valid JSON (parsed back with simdjson).
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "base/check.h"
#include "core/message.h"
#include "listeners/esmtp/policy.h"
#include "listeners/http/inject_request.h"
#include "listeners/http/injection.h"

namespace ringmail::listeners::http {
namespace {

constexpr size_t kBodyBytesMax = 1 << 20;

const esmtp::Policy& RelayPolicy() {
  static const esmtp::Policy policy = [] {
    esmtp::PolicyOptions options;
    options.relay_hosts = {"192.0.2.0/24"};
    options.relay_domains = {"example.com"};
    return esmtp::Policy::Create(options).value();
  }();
  return policy;
}

void CheckError(const absl::Status& status) {
  RM_CHECK(status.code() == absl::StatusCode::kInvalidArgument ||
           status.code() == absl::StatusCode::kResourceExhausted)
      << status;
  RM_CHECK(!status.message().empty());
}

bool HasField(std::string_view header, std::string_view lower_name) {
  for (size_t pos = 0; pos < header.size();) {
    const size_t end = header.find("\r\n", pos);
    const std::string lower =
        absl::AsciiStrToLower(std::string(header.substr(pos, std::min(end, header.size()) - pos)));
    if (lower.rfind(std::string(lower_name) + ":", 0) == 0) return true;
    if (end == std::string_view::npos) break;
    pos = end + 2;
  }
  return false;
}

void CheckContent(const core::Message& m, const InjectContext& ctx) {
  RM_CHECK(!m.envelope.recipients.empty());
  RM_CHECK(m.received_header.rfind("Received: from ", 0) == 0);
  RM_CHECK(m.body.size() <= ctx.message_bytes_max) << m.body.size();
  const std::string body = m.body.ToString();
  RM_CHECK(body.size() >= 2 && body.compare(body.size() - 2, 2, "\r\n") == 0);
  size_t line = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    RM_CHECK(body[i] != '\0') << "NUL in a planned message";
    if (body[i] == '\r') {
      RM_CHECK(i + 1 < body.size() && body[i + 1] == '\n') << "bare CR in a planned message";
    } else if (body[i] == '\n') {
      RM_CHECK(i > 0 && body[i - 1] == '\r') << "bare LF in a planned message";
      line = 0;
    } else {
      RM_CHECK(++line <= kLineBytesMax) << "a line longer than 998 octets";
    }
  }
  const size_t blank = body.rfind("\r\n", 0) == 0 ? 0 : body.find("\r\n\r\n");
  const std::string_view header(body.data(), blank == std::string::npos ? body.size() : blank);
  RM_CHECK(HasField(header, "date") && HasField(header, "message-id")) << header;
}

void CheckPlan(const InjectRequest& request, const InjectionPlan& plan, const InjectContext& ctx) {
  size_t accounted = plan.failures.size();
  uint64_t bytes = 0;
  std::vector<std::string> ids;
  for (const auto& m : plan.messages) {
    CheckContent(*m, ctx);
    accounted += m->envelope.recipients.size();
    bytes += m->body.size();
    ids.push_back(m->id.ToHex());
  }
  RM_CHECK(accounted == request.recipients.size())
      << accounted << " recipients accounted for, " << request.recipients.size() << " given";
  RM_CHECK(bytes <= ctx.request_bytes_max);
  const std::string answer = InjectResultJson(accounted - plan.failures.size(), plan.failures, ids);
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  const simdjson::error_code error = parser.parse(answer).get(element);
  RM_CHECK(error == simdjson::SUCCESS) << "the answer is not JSON: " << answer;
}

}  // namespace
}  // namespace ringmail::listeners::http

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::listeners::http;  // NOLINT: the target's whole vocabulary
  if (size == 0 || size > kBodyBytesMax) return 0;
  static InjectDecoder decoder(kBodyBytesMax);
  const uint8_t mode = data[size - 1];
  std::string body(reinterpret_cast<const char*>(data), size - 1);
  const std::string original = body;
  DecodeLimits limits;
  if (mode & 1) limits.recipients_max = 3;
  absl::StatusOr<InjectRequest> request = decoder.Decode(body, limits);
  RM_CHECK(body == original) << "Decode changed the body";
  if (!request.ok()) {
    CheckError(request.status());
    return 0;
  }
  RM_CHECK(!request->recipients.empty() && request->recipients.size() <= limits.recipients_max);
  ringmail::core::MessageIdGenerator ids(5, 0xfeed);
  InjectContext ctx;
  ctx.policy = &RelayPolicy();
  ctx.peer = ringmail::listeners::esmtp::IpAddress::Parse((mode & 2) ? "192.0.2.7" : "203.0.113.9");
  ctx.peer_text = (mode & 2) ? "192.0.2.7:5000" : "203.0.113.9:5000";
  ctx.hostname = "mx.fuzz.example";
  ctx.now_ms = 1700000000000;
  for (size_t i = 0; i < request->recipients.size(); ++i) ctx.ids.push_back(ids.Next(ctx.now_ms));
  if (mode & 4) {
    ctx.message_bytes_max = 2048;
    ctx.request_bytes_max = 4096;
  }
  absl::StatusOr<InjectionPlan> plan = PlanInjection(*request, ctx);
  if (!plan.ok()) {
    CheckError(plan.status());
    return 0;
  }
  CheckPlan(*request, *plan, ctx);
  return 0;
}
