// listeners/http/inject_request.h — the JSON body of POST /api/inject/v1, decoded with
// simdjson (DOM API, error codes only: no exceptions) into plain structs. Pure.
//
//   {
//     "envelope_sender": "bounces@example.com",          // required; "" is the null sender
//     "recipients": [ { "email": "a@x", "name": "Ann",     // required, at least one; a bare
//                       "substitution_data": {"k": "v"} } ],  //   string is taken as email
//     "substitution_data": { "k": "default" },             // optional, for every recipient
//     "content": "From: ...\r\n\r\nraw RFC 5322 message"   // either a string,
//     "content": { "from": "Name <a@b>" | {"email","name"}, "subject": "...",
//                  "text_body": "...", "html_body": "...", "headers": {"X-K": "v"},
//                  "attachments": [ {"name": "a.pdf", "type": "application/pdf",
//                                    "data": "<base64>"} ] }
//   }
// Unknown keys are refused (a typo must not silently drop a field). Every error is
// kInvalidArgument whose message starts with the field ("recipients[2].email: ...").
// Substitution values may be strings, numbers, booleans or null (→ ""), never objects.
//
// One InjectDecoder per loop: it keeps simdjson's parser (and its buffers) between requests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "listeners/http/mime.h"
#include "listeners/http/template.h"

namespace simdjson::dom {
class parser;
}

namespace ringmail::listeners::http {

inline constexpr size_t kSubstitutionKeysMax = 1000;  // per substitution_data object
inline constexpr size_t kJsonDepthMax = 32;

struct InjectRecipient {
  std::string email;
  std::string name;  // display name for a generated To:
  std::optional<SubstitutionValues> substitution;
};

struct InjectRequest {
  std::string envelope_sender;
  std::vector<InjectRecipient> recipients;
  std::optional<SubstitutionValues> global_substitution;
  bool raw = false;
  std::string raw_content;  // when raw
  MimeContent structured;   // when !raw: templates not yet expanded
  std::vector<Attachment> attachments;

  // One message per recipient: some recipient brings its own substitution_data.
  bool templated() const;
};

struct DecodeLimits {
  size_t recipients_max = 1000;
};

class InjectDecoder {
 public:
  // `body_bytes_max`: the largest body this decoder will be asked to parse.
  explicit InjectDecoder(size_t body_bytes_max);
  ~InjectDecoder();
  InjectDecoder(const InjectDecoder&) = delete;
  InjectDecoder& operator=(const InjectDecoder&) = delete;

  // `body` is padded in place for simdjson (and restored) so it is never copied.
  absl::StatusOr<InjectRequest> Decode(std::string& body, const DecodeLimits& limits);
  // What the parser holds (bytes of JSON it can take without growing): tests.
  size_t capacity() const;

 private:
  absl::StatusOr<InjectRequest> DecodeDocument(std::string& body, const DecodeLimits& limits);
  std::unique_ptr<simdjson::dom::parser> parser_;
};

}  // namespace ringmail::listeners::http
