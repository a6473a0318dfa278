// listeners/esmtp/policy.h — pure decisions the ESMTP session asks about: may this client
// relay to this recipient, is this path well formed, which ESMTP parameters were given.
//
// Policy is built once per configuration generation from plain PolicyOptions (ringmaild
// fills them from the typed config; this file does not depend on config/) and is then
// immutable: sessions on any loop may share one `const Policy&` without locks. The parse
// functions are stateless and return string_views into the caller's argument.
//
// Relay rule (DESIGN.md, never an open relay by default): a recipient is accepted if the
// client's IP is inside a relay_hosts block (IPv4 or IPv6 CIDR; an IPv4-mapped IPv6 peer
// counts as its IPv4 address) or the recipient's domain is in relay_domains
// (case-insensitive; an entry ".example.com" also covers every subdomain) and its local
// part holds no routing ('%', '!', '@': see RelayAllowed). `RCPT
// TO:<postmaster>` (any case, no domain) is always accepted (RFC 5321 §4.5.1); the session
// checks that before asking.
//
// Paths (RFC 5321 §4.1.2): angle brackets required; a source route "@a,@b:" is accepted
// and dropped (§4.1.1.3 / Appendix C); the local part is a dot-string or a quoted string;
// the domain is a host name or an address literal ([1.2.3.4], [IPv6:...]). With SMTPUTF8
// (RFC 6531) atoms and labels may also hold well-formed UTF-8; without it a non-ASCII
// address is refused 553 5.6.7. Limits (§4.5.3.1): local part 64, domain 255, path 256
// octets including the brackets: an over-long path is 501, an over-long part 553.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "listeners/esmtp/replies.h"
#include "listeners/esmtp/smtp_parser.h"

namespace ringmail::listeners::esmtp {

inline constexpr size_t kLocalPartBytesMax = 64;
inline constexpr size_t kDomainBytesMax = 255;
inline constexpr size_t kPathBytesMax = 256;
inline constexpr size_t kEsmtpParametersMax = 16;  // per MAIL/RCPT; more is abuse
inline constexpr size_t kRelayEntriesMax = 100000;  // per relay_hosts / relay_domains list

// An IPv4 or IPv6 address; IPv4 uses the first 4 bytes. IPv4-mapped IPv6 text
// ("::ffff:1.2.3.4") parses as IPv4 so that dual-stack peers match IPv4 rules.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  // Dotted quad or IPv6 text; an optional "[...]" and an IPv6 zone ("%eth0") are ignored.
  static std::optional<IpAddress> Parse(std::string_view text);
  // "1.2.3.4" or "IPv6:2001:db8::1", the RFC 5321 address-literal body.
  std::string ToLiteral() const;
  std::string ToString() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

struct Cidr {
  IpAddress network;
  uint8_t prefix_bits = 0;

  // "10.0.0.0/8", "2001:db8::/32", or a bare address (a single host). Host bits set below
  // the prefix ("127.0.0.1/8") are refused: such a typo would silently widen a relay rule.
  static absl::StatusOr<Cidr> Parse(std::string_view text);
  bool Contains(const IpAddress& address) const;
};

struct PolicyOptions {
  std::vector<std::string> relay_hosts;    // CIDRs or single addresses
  std::vector<std::string> relay_domains;  // "example.com"; ".example.com" adds subdomains
  BareLineEndings bare_lf = BareLineEndings::kReject;  // config: bare_lf = reject|normalize
  // STARTTLS hook: the machine's side is complete; the I/O layer runs the handshake.
  bool starttls_offered = false;
  bool require_tls = false;  // refuse mail commands before STARTTLS (530 5.7.0)
};

class Policy {
 public:
  // Validates every entry; the error names the offending one.
  static absl::StatusOr<Policy> Create(const PolicyOptions& options);

  bool HostAllowed(const IpAddress& peer) const;
  bool DomainAllowed(std::string_view domain) const;
  // The relay decision for one recipient (`domain` "" for none). A client outside
  // relay_hosts may not route through us: a local part holding '%', '!' or '@' (the
  // percent hack, a bang path, a quoted "a@b") is refused even for a relay_domains domain,
  // since the next hop may forward on what follows (Postfix: allow_untrusted_routing=no).
  bool RelayAllowed(const std::optional<IpAddress>& peer, std::string_view local_part,
                    std::string_view domain) const;

  BareLineEndings bare_line_endings() const { return bare_lf_; }
  bool starttls_offered() const { return starttls_offered_; }
  bool require_tls() const { return require_tls_; }

 private:
  std::vector<Cidr> relay_hosts_;
  absl::flat_hash_set<std::string> exact_domains_;   // lower case
  absl::flat_hash_set<std::string> suffix_domains_;  // lower case, without the leading dot
  BareLineEndings bare_lf_ = BareLineEndings::kReject;
  bool starttls_offered_ = false;
  bool require_tls_ = false;
};

// ---------------------------------------------------------------------------------------
// MAIL / RCPT arguments. Views point into the argument passed in.

struct Mailbox {
  std::string_view address;     // "local@domain" without brackets or source route;
                                // "" for <>; "postmaster" for <postmaster>
  std::string_view local_part;
  std::string_view domain;      // "" for <> and <postmaster>
  bool non_ascii = false;       // needs SMTPUTF8
  bool postmaster = false;      // exactly <postmaster>, any case, no domain (RCPT only)
};

enum class BodyType : uint8_t { kUnspecified, k7Bit, k8BitMime, kBinaryMime };

struct MailArguments {
  Mailbox sender;
  bool size_given = false;
  uint64_t size_bytes = 0;  // SIZE=; saturates at UINT64_MAX
  BodyType body = BodyType::kUnspecified;
  bool smtputf8 = false;
  std::string_view parameters;  // everything after the path, verbatim (trimmed)
};

struct RcptArguments {
  Mailbox recipient;
  std::string_view parameters;  // always empty when accepted: no RCPT extension is offered
};

// `argument` is the text after "MAIL " / "RCPT ". Returns the refusal, or nullopt when the
// command is well formed (policy and limits are the session's business).
std::optional<ReplyId> ParseMailArguments(std::string_view argument, MailArguments* out);
std::optional<ReplyId> ParseRcptArguments(std::string_view argument, bool smtputf8,
                                          RcptArguments* out);

// HELO/EHLO argument: one word of 1..255 printable octets (UTF-8 allowed).
bool ValidHeloArgument(std::string_view argument);

// Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool ValidUtf8(std::string_view bytes);

}  // namespace ringmail::listeners::esmtp
