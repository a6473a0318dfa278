#include "listeners/http/injection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "base/string_view.h"
#include "core/log.h"
#include "listeners/http/mime.h"

namespace ringmail::listeners::http {
namespace {

struct CheckedRecipient {
  size_t index = 0;  // in the request
  std::string local_part;
  std::string domain;
  bool postmaster = false;
  bool non_ascii = false;
};

// Characters that would let a JSON address smuggle extra SMTP syntax (brackets close the
// path early, a space starts parameters) or header lines.
bool UnsafeAddressBytes(std::string_view a) {
  for (char ch : a) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c <= ' ' || c == 127 || c == '<' || c == '>') return true;
  }
  return false;
}

absl::StatusOr<bool> CheckSender(const std::string& sender) {
  if (sender.empty()) return false;  // the null reverse-path
  if (UnsafeAddressBytes(sender)) {
    return FieldError("envelope_sender", "holds a space, a control byte or '<' '>'");
  }
  esmtp::MailArguments args;
  // SMTPUTF8 is always named so that a UTF-8 address parses; it is kept only if needed.
  const std::string line = absl::StrCat("FROM:<", sender, "> SMTPUTF8");
  if (esmtp::ParseMailArguments(line, &args).has_value() || args.sender.address.empty()) {
    return FieldError("envelope_sender", "not a valid address");
  }
  return args.sender.non_ascii;
}

absl::StatusOr<CheckedRecipient> CheckRecipient(const InjectRecipient& r, size_t index) {
  const std::string field = absl::StrCat("recipients[", index, "]");
  if (UnsafeAddressBytes(r.email)) {
    return FieldError(absl::StrCat(field, ".email"), "holds a space, a control byte or '<' '>'");
  }
  if (HasControlBytes(r.name)) {
    return FieldError(absl::StrCat(field, ".name"), "holds a line break or control byte");
  }
  esmtp::RcptArguments args;
  const std::string line = absl::StrCat("TO:<", r.email, ">");
  if (esmtp::ParseRcptArguments(line, true, &args).has_value() || args.recipient.address.empty()) {
    return FieldError(absl::StrCat(field, ".email"), "not a valid address");
  }
  CheckedRecipient c;
  c.index = index;
  c.local_part = std::string(args.recipient.local_part);
  c.domain = std::string(args.recipient.domain);
  c.postmaster = args.recipient.postmaster;
  c.non_ascii = args.recipient.non_ascii;
  return c;
}

// RFC 5321 §4.4 trace field; "with HTTP" names the door the message came in by.
std::string ReceivedHeader(const InjectContext& ctx, const core::MessageId& id,
                           const std::string* only_recipient) {
  const std::string literal = ctx.peer ? ctx.peer->ToLiteral() : std::string("unknown");
  std::string h = absl::StrCat("Received: from [", literal, "]\r\n\tby ", ctx.hostname,
                               " (ringmail) with HTTP id ", id.ToHex());
  if (only_recipient != nullptr) absl::StrAppend(&h, "\r\n\tfor <", *only_recipient, ">");
  absl::StrAppend(&h, ";\r\n\t", Rfc5322Date(ctx.now_ms), "\r\n");
  return h;
}

std::string DisplayAddress(const InjectRecipient& r) {
  if (r.name.empty()) return r.email;
  std::string quoted = "\"";
  for (char c : r.name) {
    if (c == '"' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  return absl::StrCat(quoted, "\" <", r.email, ">");
}

absl::StatusOr<std::string> Expand(const std::string& text, const TemplateScope& scope,
                                   TemplateEscape escape, uint64_t limit) {
  if (scope.recipient == nullptr && scope.global == nullptr) return text;
  return ExpandTemplate(text, scope, escape, limit);
}

absl::StatusOr<MimeContent> ExpandContent(const MimeContent& t, const TemplateScope& scope,
                                          uint64_t limit) {
  MimeContent c;
  RM_ASSIGN_OR_RETURN(c.from, Expand(t.from, scope, TemplateEscape::kNone, limit));
  RM_ASSIGN_OR_RETURN(c.subject, Expand(t.subject, scope, TemplateEscape::kNone, limit));
  if (t.text_body) {
    RM_ASSIGN_OR_RETURN(c.text_body, Expand(*t.text_body, scope, TemplateEscape::kNone, limit));
  }
  if (t.html_body) {
    RM_ASSIGN_OR_RETURN(c.html_body, Expand(*t.html_body, scope, TemplateEscape::kHtml, limit));
  }
  for (const auto& [name, value] : t.headers) {
    RM_ASSIGN_OR_RETURN(std::string v, Expand(value, scope, TemplateEscape::kNone, limit));
    c.headers.emplace_back(name, std::move(v));
  }
  return c;
}

struct Builder {
  const InjectRequest& request;
  const InjectContext& ctx;
  bool sender_non_ascii = false;
  BudgetCharge& charge;
  uint64_t bytes = 0;
  size_t ids_used = 0;

  // One message for `recipients` (indices into the checked list).
  absl::StatusOr<std::unique_ptr<core::Message>> Make(
      const std::vector<const CheckedRecipient*>& recipients, const TemplateScope& scope);
};

absl::StatusOr<std::unique_ptr<core::Message>> Builder::Make(
    const std::vector<const CheckedRecipient*>& recipients, const TemplateScope& scope) {
  auto m = std::make_unique<core::Message>();
  if (ids_used == ctx.ids.size()) {
    return absl::InternalError("injection: fewer message ids drawn than messages");
  }
  m->id = ctx.ids[ids_used++];
  m->received_ms = ctx.now_ms;
  const std::string message_id = absl::StrCat("<", m->id.ToHex(), "@", ctx.hostname, ">");
  std::string content;
  bool eight_bit = false;
  if (request.raw) {
    RM_ASSIGN_OR_RETURN(content, NormalizeRawMessage(request.raw_content, message_id,
                                                     Rfc5322Date(ctx.now_ms), &eight_bit));
  } else {
    RM_ASSIGN_OR_RETURN(MimeContent expanded,
                        ExpandContent(request.structured, scope, ctx.message_bytes_max));
    MimeOptions o;
    std::vector<std::string> to;
    for (const CheckedRecipient* r : recipients) {
      to.push_back(DisplayAddress(request.recipients[r->index]));
    }
    o.to = absl::StrJoin(to, ", ");
    o.message_id = message_id;
    o.date_ms = ctx.now_ms;
    o.boundary_seed = m->id.ToHex();
    RM_ASSIGN_OR_RETURN(content, BuildMime(expanded, request.attachments, o));
  }
  bytes += content.size();
  if (content.size() > ctx.message_bytes_max || bytes > ctx.request_bytes_max) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "content: the messages would be larger than ",
        content.size() > ctx.message_bytes_max ? ctx.message_bytes_max : ctx.request_bytes_max,
        " bytes"));
  }
  bool utf8 = sender_non_ascii;
  for (const CheckedRecipient* r : recipients) {
    utf8 = utf8 || r->non_ascii;
    core::Recipient rcpt;
    rcpt.address = request.recipients[r->index].email;
    m->envelope.recipients.push_back(std::move(rcpt));
  }
  m->envelope.mail_from = request.envelope_sender;
  std::vector<std::string> params;
  if (eight_bit) params.push_back("BODY=8BITMIME");
  if (utf8) params.push_back("SMTPUTF8");
  m->envelope.mail_params = absl::StrJoin(params, " ");
  m->envelope.peer = ctx.peer_text;
  m->received_header = ReceivedHeader(
      ctx, m->id, recipients.size() == 1 ? &m->envelope.recipients[0].address : nullptr);
  m->body.Append(content);
  if (!charge.TryAdd(m->content_size(), ctx.budget_limit)) {
    return absl::UnavailableError("too many messages are waiting for the spool; try again");
  }
  return m;
}

// Whether line `line` of a raw message's header section is acceptable.
bool HeaderLineOk(std::string_view line, bool first) {
  if (line.empty()) return true;
  if (line.front() == ' ' || line.front() == '\t') return !first;  // folded continuation
  const size_t colon = line.find(':');
  return colon != std::string_view::npos && ValidHeaderName(line.substr(0, colon));
}

bool HasHeader(std::string_view header, std::string_view lower_name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find("\r\n", pos);
    if (end == std::string_view::npos) end = header.size();
    std::string_view line = header.substr(pos, end - pos);
    if (line.size() > lower_name.size() && line[lower_name.size()] == ':' &&
        absl::EqualsIgnoreCase(ToAbsl(line.substr(0, lower_name.size())), ToAbsl(lower_name))) {
      return true;
    }
    pos = end + 2;
  }
  return false;
}

}  // namespace

std::string InjectResultJson(size_t success_count, const std::vector<RecipientFailure>& failures,
                             const std::vector<std::string>& ids) {
  std::string out = absl::StrCat("{\"success_count\":", success_count,
                                 ",\"failure_count\":", failures.size(), ",\"failures\":[");
  for (size_t i = 0; i < failures.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append("{\"email\":");
    core::AppendJsonString(&out, failures[i].email);
    out.append(",\"reason\":");
    core::AppendJsonString(&out, failures[i].reason);
    out.push_back('}');
  }
  out.append("],");
  if (ids.size() == 1) {
    absl::StrAppend(&out, "\"id\":\"", ids[0], "\"}\n");
    return out;
  }
  out.append("\"ids\":[");
  for (size_t i = 0; i < ids.size(); ++i) {
    absl::StrAppend(&out, i > 0 ? "," : "", "\"", ids[i], "\"");
  }
  out.append("]}\n");
  return out;
}

absl::StatusOr<std::string> NormalizeRawMessage(std::string_view raw, std::string_view message_id,
                                                std::string_view date, bool* eight_bit) {
  std::string out;
  out.reserve(raw.size() + raw.size() / 32 + 256);
  size_t line_bytes = 0;
  size_t line_number = 1;
  *eight_bit = false;
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '\0') return FieldError("content", absl::StrCat("NUL byte on line ", line_number));
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      out.append("\r\n");  // CRLF whatever the client used (RFC 5322 §2.1)
      line_bytes = 0;
      ++line_number;
      continue;
    }
    *eight_bit = *eight_bit || static_cast<unsigned char>(c) >= 0x80;
    out.push_back(c);
    if (++line_bytes > kLineBytesMax) {
      return FieldError("content", absl::StrCat("line ", line_number, " is longer than ",
                                                kLineBytesMax, " octets"));
    }
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out.append("\r\n");
  // The header section ends at the first empty line (or is the whole message).
  const size_t blank = out.rfind("\r\n", 0) == 0 ? 0 : out.find("\r\n\r\n");
  const size_t header_end = blank == 0 ? 0 : (blank == std::string::npos ? out.size() : blank + 2);
  const std::string_view header(out.data(), header_end);
  size_t pos = 0;
  for (size_t n = 1; pos < header.size(); ++n) {
    const size_t end = header.find("\r\n", pos);
    if (!HeaderLineOk(header.substr(pos, end - pos), n == 1)) {
      return FieldError("content", absl::StrCat("line ", n,
                                                " is not a header field (the "
                                                "header section must come first, then a "
                                                "blank line, then the body)"));
    }
    pos = end + 2;
  }
  std::string added;
  if (!HasHeader(header, "date")) absl::StrAppend(&added, "Date: ", ToAbsl(date), "\r\n");
  if (!HasHeader(header, "message-id")) {
    absl::StrAppend(&added, "Message-ID: ", ToAbsl(message_id), "\r\n");
  }
  if (!added.empty()) out.insert(0, added);
  return out;
}

absl::StatusOr<InjectionPlan> PlanInjection(const InjectRequest& request,
                                            const InjectContext& ctx) {
  RM_ASSIGN_OR_RETURN(bool sender_non_ascii, CheckSender(request.envelope_sender));
  const bool templated = request.templated();
  if (request.raw && templated) {
    return FieldError("content", "templates (substitution_data) need structured content");
  }
  InjectionPlan plan;
  plan.charge = BudgetCharge(ctx.budget);
  std::vector<CheckedRecipient> accepted;
  for (size_t i = 0; i < request.recipients.size(); ++i) {
    RM_ASSIGN_OR_RETURN(CheckedRecipient c, CheckRecipient(request.recipients[i], i));
    if (!c.postmaster && !ctx.policy->RelayAllowed(ctx.peer, c.local_part, c.domain)) {
      plan.failures.push_back({request.recipients[i].email, "relay not permitted"});
      continue;
    }
    accepted.push_back(std::move(c));
  }
  if (accepted.empty()) return plan;
  Builder builder{request, ctx, sender_non_ascii, plan.charge};
  const SubstitutionValues* global =
      request.global_substitution ? &*request.global_substitution : nullptr;
  if (!templated) {
    std::vector<const CheckedRecipient*> all;
    for (const CheckedRecipient& c : accepted) all.push_back(&c);
    RM_ASSIGN_OR_RETURN(auto m, builder.Make(all, TemplateScope{nullptr, global}));
    plan.messages.push_back(std::move(m));
    return plan;
  }
  for (const CheckedRecipient& c : accepted) {
    const InjectRecipient& r = request.recipients[c.index];
    const TemplateScope scope{r.substitution ? &*r.substitution : nullptr, global};
    absl::StatusOr<std::unique_ptr<core::Message>> m = builder.Make({&c}, scope);
    if (!m.ok()) {
      if (absl::IsUnavailable(m.status())) return m.status();  // the budget: not this recipient
      return absl::Status(m.status().code(),
                          absl::StrCat(m.status().message(), " (after substitution for recipients[",
                                       c.index, "])"));
    }
    plan.messages.push_back(*std::move(m));
  }
  return plan;
}

}  // namespace ringmail::listeners::http
