#include "listeners/http/inject_request.h"

#include <simdjson.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "base/string_view.h"
#include "core/log.h"

namespace ringmail::listeners::http {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

constexpr size_t kInitialCapacity = 64 * 1024;
// The parser keeps its buffers between requests up to this capacity (a few MB of memory);
// one bigger document grows them to its size (about 14 bytes of memory per byte of JSON),
// and they are given back after it: else one 32 MB body pinned ~450 MB on its loop for good
// (session 11's audit, F3).
constexpr size_t kRetainedCapacity = 256 * 1024;

std::string Sub(std::string_view field, std::string_view key) {
  return absl::StrCat(ToAbsl(field), ".", ToAbsl(key));
}
std::string Index(std::string_view field, size_t i) {
  return absl::StrCat(ToAbsl(field), "[", i, "]");
}

absl::Status Unknown(std::string_view field, std::string_view key) {
  return FieldError(Sub(field, key), "unknown field");
}

absl::StatusOr<std::string> String(element e, std::string_view field) {
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) return FieldError(field, "must be a string");
  return std::string(s);
}

absl::StatusOr<object> Object(element e, std::string_view field) {
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) return FieldError(field, "must be an object");
  return o;
}

absl::StatusOr<array> Array(element e, std::string_view field) {
  array a;
  if (e.get_array().get(a) != simdjson::SUCCESS) return FieldError(field, "must be an array");
  return a;
}

absl::StatusOr<SubstitutionValues> Substitutions(element e, std::string_view field) {
  RM_ASSIGN_OR_RETURN(object o, Object(e, field));
  SubstitutionValues values;
  for (simdjson::dom::key_value_pair kv : o) {
    if (values.size() >= kSubstitutionKeysMax) return FieldError(field, "too many keys");
    const std::string key(kv.key);
    switch (kv.value.type()) {
      case element_type::STRING:
        values[key] = std::string(kv.value.get_string().value_unsafe());
        break;
      case element_type::INT64:
      case element_type::UINT64:
      case element_type::DOUBLE:
        values[key] = simdjson::minify(kv.value);
        break;
      case element_type::BOOL:
        values[key] = kv.value.get_bool().value_unsafe() ? "true" : "false";
        break;
      case element_type::NULL_VALUE:
        values[key] = "";
        break;
      default:
        return FieldError(Sub(field, kv.key), "must be a string, number, boolean or null");
    }
  }
  return values;
}

absl::StatusOr<InjectRecipient> Recipient(element e, std::string_view field) {
  InjectRecipient r;
  if (e.type() == element_type::STRING) {
    r.email = std::string(e.get_string().value_unsafe());
    return r;
  }
  RM_ASSIGN_OR_RETURN(object o, Object(e, field));
  bool have_email = false;
  for (simdjson::dom::key_value_pair kv : o) {
    if (kv.key == "email") {
      RM_ASSIGN_OR_RETURN(r.email, String(kv.value, Sub(field, kv.key)));
      have_email = true;
    } else if (kv.key == "name") {
      RM_ASSIGN_OR_RETURN(r.name, String(kv.value, Sub(field, kv.key)));
    } else if (kv.key == "substitution_data") {
      RM_ASSIGN_OR_RETURN(r.substitution, Substitutions(kv.value, Sub(field, kv.key)));
    } else {
      return Unknown(field, kv.key);
    }
  }
  if (!have_email) return FieldError(Sub(field, "email"), "missing");
  return r;
}

absl::Status Recipients(element e, const DecodeLimits& limits, InjectRequest* out) {
  RM_ASSIGN_OR_RETURN(array a, Array(e, "recipients"));
  for (element item : a) {
    if (out->recipients.size() >= limits.recipients_max) {
      return FieldError("recipients", absl::StrCat("more than ", limits.recipients_max));
    }
    RM_ASSIGN_OR_RETURN(InjectRecipient r,
                        Recipient(item, Index("recipients", out->recipients.size())));
    out->recipients.push_back(std::move(r));
  }
  if (out->recipients.empty()) return FieldError("recipients", "empty");
  return absl::OkStatus();
}

absl::StatusOr<std::string> FromField(element e) {
  if (e.type() == element_type::STRING) return String(e, "content.from");
  RM_ASSIGN_OR_RETURN(object o, Object(e, "content.from"));
  std::string email;
  std::string name;
  for (simdjson::dom::key_value_pair kv : o) {
    if (kv.key == "email") {
      RM_ASSIGN_OR_RETURN(email, String(kv.value, "content.from.email"));
    } else if (kv.key == "name") {
      RM_ASSIGN_OR_RETURN(name, String(kv.value, "content.from.name"));
    } else {
      return Unknown("content.from", kv.key);
    }
  }
  if (email.empty()) return FieldError("content.from.email", "missing");
  if (name.empty()) return email;
  std::string quoted = "\"";  // a display name is always quoted here; BuildMime re-encodes
  for (char c : name) {
    if (c == '"' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  return absl::StrCat(quoted, "\" <", email, ">");
}

absl::Status Attachments(element e, InjectRequest* out) {
  RM_ASSIGN_OR_RETURN(array a, Array(e, "content.attachments"));
  for (element item : a) {
    const std::string field = Index("content.attachments", out->attachments.size());
    if (out->attachments.size() >= kAttachmentsMax) {
      return FieldError("content.attachments", "too many attachments");
    }
    RM_ASSIGN_OR_RETURN(object o, Object(item, field));
    Attachment att;
    att.type = "application/octet-stream";
    bool have_data = false;
    for (simdjson::dom::key_value_pair kv : o) {
      if (kv.key == "name") {
        RM_ASSIGN_OR_RETURN(att.name, String(kv.value, Sub(field, kv.key)));
      } else if (kv.key == "type") {
        RM_ASSIGN_OR_RETURN(att.type, String(kv.value, Sub(field, kv.key)));
        for (char& c : att.type) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
      } else if (kv.key == "data") {
        RM_ASSIGN_OR_RETURN(std::string b64, String(kv.value, Sub(field, kv.key)));
        if (!absl::Base64Unescape(b64, &att.data)) {
          return FieldError(Sub(field, kv.key), "not valid base64");
        }
        have_data = true;
      } else {
        return Unknown(field, kv.key);
      }
    }
    if (!have_data) return FieldError(Sub(field, "data"), "missing");
    out->attachments.push_back(std::move(att));
  }
  return absl::OkStatus();
}

absl::Status Headers(element e, MimeContent* content) {
  RM_ASSIGN_OR_RETURN(object o, Object(e, "content.headers"));
  for (simdjson::dom::key_value_pair kv : o) {
    if (content->headers.size() >= kCustomHeadersMax) {
      return FieldError("content.headers", "too many headers");
    }
    RM_ASSIGN_OR_RETURN(std::string value, String(kv.value, Sub("content.headers", kv.key)));
    content->headers.emplace_back(std::string(kv.key), std::move(value));
  }
  return absl::OkStatus();
}

absl::Status Structured(object o, InjectRequest* out) {
  MimeContent& c = out->structured;
  bool have_from = false;
  for (simdjson::dom::key_value_pair kv : o) {
    const std::string field = Sub("content", kv.key);
    if (kv.key == "from") {
      RM_ASSIGN_OR_RETURN(c.from, FromField(kv.value));
      have_from = true;
    } else if (kv.key == "subject") {
      RM_ASSIGN_OR_RETURN(c.subject, String(kv.value, field));
    } else if (kv.key == "text_body") {
      RM_ASSIGN_OR_RETURN(c.text_body, String(kv.value, field));
    } else if (kv.key == "html_body") {
      RM_ASSIGN_OR_RETURN(c.html_body, String(kv.value, field));
    } else if (kv.key == "headers") {
      RM_RETURN_IF_ERROR(Headers(kv.value, &c));
    } else if (kv.key == "attachments") {
      RM_RETURN_IF_ERROR(Attachments(kv.value, out));
    } else {
      return Unknown("content", kv.key);
    }
  }
  if (!have_from) return FieldError("content.from", "missing");
  if (!c.text_body && !c.html_body && out->attachments.empty()) {
    return FieldError("content", "needs text_body, html_body or attachments");
  }
  return absl::OkStatus();
}

absl::Status Content(element e, InjectRequest* out) {
  if (e.type() == element_type::STRING) {
    out->raw = true;
    out->raw_content = std::string(e.get_string().value_unsafe());
    if (out->raw_content.empty()) return FieldError("content", "empty message");
    return absl::OkStatus();
  }
  object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) {
    return FieldError("content", "must be a string (RFC 5322 message) or an object");
  }
  return Structured(o, out);
}

absl::Status Root(object root, const DecodeLimits& limits, InjectRequest* out) {
  bool have_sender = false;
  bool have_recipients = false;
  bool have_content = false;
  for (simdjson::dom::key_value_pair kv : root) {
    if (kv.key == "envelope_sender") {
      RM_ASSIGN_OR_RETURN(out->envelope_sender, String(kv.value, kv.key));
      have_sender = true;
    } else if (kv.key == "recipients") {
      RM_RETURN_IF_ERROR(Recipients(kv.value, limits, out));
      have_recipients = true;
    } else if (kv.key == "content") {
      RM_RETURN_IF_ERROR(Content(kv.value, out));
      have_content = true;
    } else if (kv.key == "substitution_data") {
      RM_ASSIGN_OR_RETURN(out->global_substitution, Substitutions(kv.value, kv.key));
    } else {
      return FieldError(kv.key, "unknown field");
    }
  }
  if (!have_sender) return FieldError("envelope_sender", "missing");
  if (!have_recipients) return FieldError("recipients", "missing");
  if (!have_content) return FieldError("content", "missing");
  return absl::OkStatus();
}

}  // namespace

bool InjectRequest::templated() const {
  for (const InjectRecipient& r : recipients) {
    if (r.substitution.has_value()) return true;
  }
  return false;
}

InjectDecoder::InjectDecoder(size_t body_bytes_max)
    : parser_(std::make_unique<simdjson::dom::parser>(body_bytes_max)) {
  // Depth is fixed here; later growth of the capacity keeps it.
  const simdjson::error_code e =
      parser_->allocate(std::min(kInitialCapacity, body_bytes_max), kJsonDepthMax);
  RM_CHECK(e == simdjson::SUCCESS) << "simdjson parser: " << simdjson::error_message(e);
}

InjectDecoder::~InjectDecoder() = default;

size_t InjectDecoder::capacity() const { return parser_->capacity(); }

absl::StatusOr<InjectRequest> InjectDecoder::Decode(std::string& body, const DecodeLimits& limits) {
  absl::StatusOr<InjectRequest> result = DecodeDocument(body, limits);
  if (parser_->capacity() > kRetainedCapacity) {
    // Fails only without memory; the next parse then allocates what it needs, as it does.
    const simdjson::error_code shrunk = parser_->allocate(kInitialCapacity, kJsonDepthMax);
    if (shrunk != simdjson::SUCCESS) core::LogWarning("json parser: cannot shrink its buffers");
  }
  return result;
}

absl::StatusOr<InjectRequest> InjectDecoder::DecodeDocument(std::string& body,
                                                            const DecodeLimits& limits) {
  const size_t size = body.size();
  body.resize(size + simdjson::SIMDJSON_PADDING, '\0');  // simdjson reads past the end
  element doc;
  simdjson::error_code err = parser_->parse(body.data(), size, false).get(doc);
  body.resize(size);
  if (err != simdjson::SUCCESS) {
    return FieldError("body", absl::StrCat("not valid JSON (", simdjson::error_message(err), ")"));
  }
  object root;
  if (doc.get_object().get(root) != simdjson::SUCCESS) {
    return FieldError("body", "must be a JSON object");
  }
  InjectRequest out;
  RM_RETURN_IF_ERROR(Root(root, limits, &out));
  return out;
}

}  // namespace ringmail::listeners::http
