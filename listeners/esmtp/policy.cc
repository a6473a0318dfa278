#include "listeners/esmtp/policy.h"

#include <arpa/inet.h>

#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/string_view.h"
#include "base/utf8.h"

namespace ringmail::listeners::esmtp {
namespace {

constexpr size_t kIpTextBytesMax = 64;  // INET6_ADDRSTRLEN (46) plus brackets and a zone

bool IsAlnum(unsigned char c) { return absl::ascii_isalnum(c); }

// RFC 5322 atext as RFC 5321 §4.1.2 uses it. Not strchr: it finds the terminating NUL, so
// a NUL octet counted as atext (found by fuzz/esmtp_policy_fuzz: "<a\0b@x>" was accepted).
bool IsAtext(unsigned char c) {
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return IsAlnum(c) || kSpecials.find(static_cast<char>(c)) != std::string_view::npos;
}

// Consumes one UTF-8 sequence at s[*i] if s[*i] >= 0x80; false if it is malformed.
bool ConsumeUtf8(std::string_view s, size_t* i, bool* non_ascii) {
  size_t n = Utf8SequenceLength(s, *i);
  if (n == 0) return false;
  *i += n;
  *non_ascii = true;
  return true;
}

// Dot-string = Atom *("." Atom), consumed from s[*i] up to the first octet that cannot
// continue it.
bool ParseDotString(std::string_view s, size_t* i, bool* non_ascii) {
  bool atom_open = false;  // at least one octet in the current atom
  while (*i < s.size()) {
    const auto c = static_cast<unsigned char>(s[*i]);
    if (c == '.') {
      if (!atom_open) return false;  // leading or doubled dot
      atom_open = false;
      ++*i;
    } else if (IsAtext(c)) {
      atom_open = true;
      ++*i;
    } else if (c >= 0x80) {
      if (!ConsumeUtf8(s, i, non_ascii)) return false;
      atom_open = true;
    } else {
      break;
    }
  }
  return atom_open;  // a trailing dot or an empty string is not a dot-string
}

// Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE, from s[*i] == '"'.
bool ParseQuotedString(std::string_view s, size_t* i, bool* non_ascii) {
  ++*i;
  while (*i < s.size()) {
    const auto c = static_cast<unsigned char>(s[*i]);
    if (c == '"') {
      ++*i;
      return true;
    }
    if (c == '\\') {
      if (*i + 1 >= s.size()) return false;
      const auto e = static_cast<unsigned char>(s[*i + 1]);
      if (e < 32 || e > 126) return false;
      *i += 2;
    } else if (c >= 0x80) {
      if (!ConsumeUtf8(s, i, non_ascii)) return false;
    } else if (c >= 32 && c <= 126) {
      ++*i;
    } else {
      return false;
    }
  }
  return false;
}

bool ValidAddressLiteral(std::string_view literal) {
  // literal is "[...]".
  if (literal.size() < 3 || literal.size() > kIpTextBytesMax) return false;
  std::string_view body = literal.substr(1, literal.size() - 2);
  // inet_pton reads a C string: a NUL would hide what follows it ("[10.0.0.1\0junk]" was
  // accepted; found by fuzz/esmtp_policy_fuzz).
  if (body.find('\0') != std::string_view::npos) return false;
  char text[kIpTextBytesMax + 1];
  unsigned char scratch[16];
  if (absl::StartsWithIgnoreCase(ToAbsl(body), "IPv6:")) {
    body.remove_prefix(5);
    std::memcpy(text, body.data(), body.size());
    text[body.size()] = '\0';
    return inet_pton(AF_INET6, text, scratch) == 1;
  }
  std::memcpy(text, body.data(), body.size());
  text[body.size()] = '\0';
  return inet_pton(AF_INET, text, scratch) == 1;
}

// Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]; U-labels allowed.
bool ValidDomain(std::string_view domain, bool* non_ascii) {
  if (domain.empty()) return false;
  if (domain.front() == '[') return domain.back() == ']' && ValidAddressLiteral(domain);
  size_t i = 0;
  while (true) {
    const size_t label_start = i;
    bool last_was_hyphen = false;
    while (i < domain.size() && domain[i] != '.') {
      const auto c = static_cast<unsigned char>(domain[i]);
      if (c >= 0x80) {
        if (!ConsumeUtf8(domain, &i, non_ascii)) return false;
        last_was_hyphen = false;
      } else if (IsAlnum(c)) {
        ++i;
        last_was_hyphen = false;
      } else if (c == '-' && i != label_start) {
        ++i;
        last_was_hyphen = true;
      } else {
        return false;
      }
    }
    const size_t label_bytes = i - label_start;
    if (label_bytes == 0 || label_bytes > 63 || last_was_hyphen) return false;
    if (i == domain.size()) return true;
    ++i;  // the dot; a trailing dot leaves an empty label, refused above
  }
}

// A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain; followed by ':'.
bool ValidSourceRoute(std::string_view route) {
  while (!route.empty()) {
    if (route.front() != '@') return false;
    size_t comma = route.find(',');
    std::string_view domain = route.substr(1, comma == std::string_view::npos
                                                  ? std::string_view::npos
                                                  : comma - 1);
    bool ignored = false;
    if (!ValidDomain(domain, &ignored)) return false;
    if (comma == std::string_view::npos) return true;
    route.remove_prefix(comma + 1);
  }
  return false;
}

struct PathReplies {
  ReplyId syntax;     // no brackets at all
  ReplyId bad;        // malformed address
  ReplyId path_long;  // > 256 octets
  ReplyId part_long;  // local part > 64 or domain > 255
};
constexpr PathReplies kMailReplies = {ReplyId::kMailSyntax, ReplyId::kBadSender,
                                      ReplyId::kSenderPathTooLong, ReplyId::kSenderTooLong};
constexpr PathReplies kRcptReplies = {ReplyId::kRcptSyntax, ReplyId::kBadRecipient,
                                      ReplyId::kRecipientPathTooLong,
                                      ReplyId::kRecipientTooLong};

// The index of the '>' closing the path that starts at s[0] == '<', honouring quoted
// local parts (which may contain '>'), or npos.
size_t FindPathEnd(std::string_view s) {
  bool quoted = false;
  for (size_t i = 1; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i;
    }
  }
  return std::string_view::npos;
}

// Parses "<path>" at the start of `s`; *rest receives what follows the '>'.
std::optional<ReplyId> ParsePath(std::string_view s, bool is_mail, Mailbox* out,
                                 std::string_view* rest) {
  const PathReplies& replies = is_mail ? kMailReplies : kRcptReplies;
  *out = Mailbox{};
  if (s.empty() || s.front() != '<') return replies.syntax;
  const size_t close = FindPathEnd(s);
  if (close == std::string_view::npos) return replies.bad;
  if (close + 1 > kPathBytesMax) return replies.path_long;
  *rest = s.substr(close + 1);
  std::string_view inner = s.substr(1, close - 1);
  if (inner.empty()) {
    if (is_mail) return std::nullopt;  // the null reverse-path <>
    return replies.bad;
  }
  if (!is_mail && absl::EqualsIgnoreCase(ToAbsl(inner), "postmaster")) {
    out->address = inner;
    out->local_part = inner;
    out->postmaster = true;
    return std::nullopt;
  }
  if (inner.front() == '@') {  // source route: accepted, then ignored (RFC 5321 §3.3)
    size_t colon = inner.find(':');
    if (colon == std::string_view::npos || !ValidSourceRoute(inner.substr(0, colon))) {
      return replies.bad;
    }
    inner.remove_prefix(colon + 1);
  }
  size_t i = 0;
  bool non_ascii = false;
  const bool local_ok = !inner.empty() && inner.front() == '"'
                            ? ParseQuotedString(inner, &i, &non_ascii)
                            : ParseDotString(inner, &i, &non_ascii);
  if (!local_ok || i >= inner.size() || inner[i] != '@') return replies.bad;
  std::string_view local = inner.substr(0, i);
  std::string_view domain = inner.substr(i + 1);
  if (local.size() > kLocalPartBytesMax || domain.size() > kDomainBytesMax) {
    return replies.part_long;
  }
  if (!ValidDomain(domain, &non_ascii)) return replies.bad;
  out->address = inner;
  out->local_part = local;
  out->domain = domain;
  out->non_ascii = non_ascii;
  return std::nullopt;
}

struct Parameter {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
};

// esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 §4.1.2; RFC 6531 adds UTF-8
// to values).
bool ParseParameter(std::string_view token, Parameter* out) {
  size_t eq = token.find('=');
  out->keyword = token.substr(0, eq);
  out->has_value = eq != std::string_view::npos;
  out->value = out->has_value ? token.substr(eq + 1) : std::string_view();
  if (out->keyword.empty() || !IsAlnum(static_cast<unsigned char>(out->keyword[0]))) {
    return false;
  }
  for (char c : out->keyword) {
    if (!IsAlnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  if (!out->has_value) return true;
  if (out->value.empty()) return false;
  for (size_t i = 0; i < out->value.size();) {
    const auto c = static_cast<unsigned char>(out->value[i]);
    if (c >= 0x80) {
      bool ignored = false;
      if (!ConsumeUtf8(out->value, &i, &ignored)) return false;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    } else {
      ++i;
    }
  }
  return true;
}

// Splits `text` (parameters separated by spaces) and calls handle(Parameter) for each;
// stops at the first refusal.
template <typename Handler>
std::optional<ReplyId> ForEachParameter(std::string_view text, Handler handle) {
  size_t count = 0;
  while (!text.empty()) {
    size_t space = text.find(' ');
    std::string_view token = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
    if (token.empty()) continue;  // several spaces in a row
    if (++count > kEsmtpParametersMax) return ReplyId::kBadParameter;
    Parameter parameter;
    if (!ParseParameter(token, &parameter)) return ReplyId::kBadParameter;
    if (std::optional<ReplyId> refusal = handle(parameter)) return refusal;
  }
  return std::nullopt;
}

// "FROM:" / "TO:" then optional spaces (a common, harmless deviation), then the path.
bool StripPrefix(std::string_view* argument, std::string_view prefix) {
  if (!absl::StartsWithIgnoreCase(ToAbsl(*argument), ToAbsl(prefix))) return false;
  argument->remove_prefix(prefix.size());
  while (!argument->empty() && argument->front() == ' ') argument->remove_prefix(1);
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

std::optional<ReplyId> HandleMailParameter(const Parameter& p, MailArguments* out) {
  if (absl::EqualsIgnoreCase(ToAbsl(p.keyword), "SIZE")) {
    if (out->size_given || !p.has_value || p.value.size() > 20) return ReplyId::kBadParameter;
    for (char c : p.value) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return ReplyId::kBadParameter;
    }
    // 20 digits may exceed 2^64: saturate, it is over any limit anyway.
    if (!absl::SimpleAtoi(ToAbsl(p.value), &out->size_bytes)) {
      out->size_bytes = std::numeric_limits<uint64_t>::max();
    }
    out->size_given = true;
    return std::nullopt;
  }
  if (absl::EqualsIgnoreCase(ToAbsl(p.keyword), "BODY")) {
    if (out->body != BodyType::kUnspecified || !p.has_value) return ReplyId::kBadParameter;
    if (absl::EqualsIgnoreCase(ToAbsl(p.value), "7BIT")) {
      out->body = BodyType::k7Bit;
    } else if (absl::EqualsIgnoreCase(ToAbsl(p.value), "8BITMIME")) {
      out->body = BodyType::k8BitMime;
    } else if (absl::EqualsIgnoreCase(ToAbsl(p.value), "BINARYMIME")) {
      out->body = BodyType::kBinaryMime;
    } else {
      return ReplyId::kBadParameter;
    }
    return std::nullopt;
  }
  if (absl::EqualsIgnoreCase(ToAbsl(p.keyword), "SMTPUTF8")) {
    if (out->smtputf8 || p.has_value) return ReplyId::kBadParameter;
    out->smtputf8 = true;
    return std::nullopt;
  }
  return ReplyId::kUnknownMailParameter;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Addresses and CIDRs

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (size_t zone = text.find('%'); zone != std::string_view::npos) text = text.substr(0, zone);
  if (text.empty() || text.size() > kIpTextBytesMax) return std::nullopt;
  if (text.find('\0') != std::string_view::npos) return std::nullopt;  // C string below
  char buffer[kIpTextBytesMax + 1];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress address;
  if (inet_pton(AF_INET, buffer, address.bytes.data()) == 1) return address;
  if (inet_pton(AF_INET6, buffer, address.bytes.data()) != 1) return std::nullopt;
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(address.bytes.data(), kMappedPrefix, 12) == 0) {
    std::memmove(address.bytes.data(), address.bytes.data() + 12, 4);
    std::memset(address.bytes.data() + 4, 0, 12);
    return address;
  }
  address.v6 = true;
  return address;
}

std::string IpAddress::ToString() const {
  char buffer[INET6_ADDRSTRLEN];
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buffer, sizeof(buffer)) == nullptr) {
    return "?";  // impossible for 4/16 valid bytes; keep the header well formed anyway
  }
  return buffer;
}

std::string IpAddress::ToLiteral() const {
  return v6 ? absl::StrCat("IPv6:", ToString()) : ToString();
}

namespace {

absl::Status CidrError(std::string_view what, std::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat(ToAbsl(what), " \"", ToAbsl(text), "\""));
}

}  // namespace

absl::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  std::optional<IpAddress> address = IpAddress::Parse(address_text);
  if (!address.has_value()) {
    return CidrError("not an IP address:", text);
  }
  // "::ffff:10.0.0.0/104" names IPv4 space; Parse() already unmapped the address.
  const bool mapped = !address->v6 && address_text.find(':') != std::string_view::npos;
  const int width = address->v6 ? 128 : 32;
  int prefix = width;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 || !absl::SimpleAtoi(ToAbsl(digits), &prefix) ||
        !absl::ascii_isdigit(static_cast<unsigned char>(digits[0]))) {
      return CidrError("bad prefix length in", text);
    }
    if (mapped) {
      if (prefix < 96) {
        return CidrError("IPv4-mapped block shorter than /96:", text);
      }
      prefix -= 96;
    }
    if (prefix < 0 || prefix > width) {
      return CidrError("prefix out of range in", text);
    }
  }
  Cidr cidr;
  cidr.network = *address;
  cidr.prefix_bits = static_cast<uint8_t>(prefix);
  for (int bit = prefix; bit < width; ++bit) {
    if (cidr.network.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return CidrError("host bits set below the prefix in", text);
    }
  }
  return cidr;
}

bool Cidr::Contains(const IpAddress& address) const {
  if (address.v6 != network.v6) return false;
  const size_t whole = prefix_bits / 8;
  if (std::memcmp(address.bytes.data(), network.bytes.data(), whole) != 0) return false;
  const unsigned rest = prefix_bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (address.bytes[whole] & mask) == (network.bytes[whole] & mask);
}

// ---------------------------------------------------------------------------------------
// Policy

absl::StatusOr<Policy> Policy::Create(const PolicyOptions& options) {
  if (options.relay_hosts.size() > kRelayEntriesMax ||
      options.relay_domains.size() > kRelayEntriesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("relay lists are limited to ", kRelayEntriesMax, " entries"));
  }
  Policy policy;
  for (const std::string& text : options.relay_hosts) {
    absl::StatusOr<Cidr> cidr = Cidr::Parse(text);
    if (!cidr.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("relay_hosts: ", cidr.status().message()));
    }
    policy.relay_hosts_.push_back(*cidr);
  }
  for (const std::string& text : options.relay_domains) {
    std::string domain = absl::AsciiStrToLower(text);
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    const bool suffix = !domain.empty() && domain.front() == '.';
    if (suffix) domain.erase(0, 1);
    bool ignored = false;
    if (domain.size() > kDomainBytesMax || !ValidDomain(domain, &ignored)) {
      return absl::InvalidArgumentError(
          absl::StrCat("relay_domains: not a domain: \"", text, "\""));
    }
    (suffix ? policy.suffix_domains_ : policy.exact_domains_).insert(std::move(domain));
  }
  policy.bare_lf_ = options.bare_lf;
  policy.starttls_offered_ = options.starttls_offered;
  policy.require_tls_ = options.require_tls;
  return policy;
}

bool Policy::HostAllowed(const IpAddress& peer) const {
  for (const Cidr& cidr : relay_hosts_) {
    if (cidr.Contains(peer)) return true;
  }
  return false;
}

bool Policy::DomainAllowed(std::string_view domain) const {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  if (domain.empty() || domain.size() > kDomainBytesMax) return false;
  char lower[kDomainBytesMax];
  for (size_t i = 0; i < domain.size(); ++i) {
    lower[i] = absl::ascii_tolower(static_cast<unsigned char>(domain[i]));
  }
  std::string_view key(lower, domain.size());
  if (exact_domains_.contains(ToAbsl(key))) return true;
  if (suffix_domains_.empty()) return false;
  // ".example.com" covers a.example.com and a.b.example.com, not example.com itself.
  for (size_t dot = key.find('.'); dot != std::string_view::npos;
       dot = key.find('.', dot + 1)) {
    if (suffix_domains_.contains(ToAbsl(key.substr(dot + 1)))) return true;
  }
  return false;
}

bool Policy::RelayAllowed(const std::optional<IpAddress>& peer, std::string_view local_part,
                          std::string_view domain) const {
  if (peer.has_value() && HostAllowed(*peer)) return true;
  if (local_part.find_first_of("%!@") != std::string_view::npos) return false;
  return DomainAllowed(domain);
}

// ---------------------------------------------------------------------------------------
// MAIL / RCPT / HELO arguments

std::optional<ReplyId> ParseMailArguments(std::string_view argument, MailArguments* out) {
  *out = MailArguments{};
  if (!StripPrefix(&argument, "FROM:")) return ReplyId::kMailSyntax;
  std::string_view rest;
  if (std::optional<ReplyId> refusal = ParsePath(argument, true, &out->sender, &rest)) {
    return refusal;
  }
  if (!rest.empty() && rest.front() != ' ') return ReplyId::kMailSyntax;
  out->parameters = TrimSpaces(rest);
  std::optional<ReplyId> refusal = ForEachParameter(
      out->parameters, [out](const Parameter& p) { return HandleMailParameter(p, out); });
  if (refusal.has_value()) return refusal;
  if (out->sender.non_ascii && !out->smtputf8) return ReplyId::kNonAsciiAddress;
  return std::nullopt;
}

std::optional<ReplyId> ParseRcptArguments(std::string_view argument, bool smtputf8,
                                          RcptArguments* out) {
  *out = RcptArguments{};
  if (!StripPrefix(&argument, "TO:")) return ReplyId::kRcptSyntax;
  std::string_view rest;
  if (std::optional<ReplyId> refusal = ParsePath(argument, false, &out->recipient, &rest)) {
    return refusal;
  }
  if (!rest.empty() && rest.front() != ' ') return ReplyId::kRcptSyntax;
  out->parameters = TrimSpaces(rest);
  // No RCPT extension is offered (DSN, RFC 3461, is not: its NOTIFY= and ORCPT= would be
  // promises the bounce logic does not keep), so any parameter is refused 555 (RFC 5321
  // §4.1.1.11), after the syntax check.
  std::optional<ReplyId> refusal = ForEachParameter(
      out->parameters,
      [](const Parameter&) -> std::optional<ReplyId> { return ReplyId::kUnknownRcptParameter; });
  if (refusal.has_value()) return refusal;
  if (out->recipient.non_ascii && !smtputf8) return ReplyId::kNonAsciiAddress;
  return std::nullopt;
}

bool ValidUtf8(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    if (static_cast<unsigned char>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = Utf8SequenceLength(bytes, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool ValidHeloArgument(std::string_view argument) {
  if (argument.empty() || argument.size() > kDomainBytesMax) return false;
  for (char c : argument) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;  // one word, no controls: it goes in Received
  }
  return ValidUtf8(argument);
}

}  // namespace ringmail::listeners::esmtp
