// delivery/routes.h — where a recipient's mail goes: configured hosts (smarthost), the
// address literal it names, or the MX hosts of its domain.
//
// Pure functions of the configuration and the address; no DNS, no I/O. Called on the
// delivery loop when a recipient is filed into a domain queue (and again when a config
// reload changes the domain's routes). The Config is read-only and outlives the call.
//
// The order of decisions:
//   1. "postmaster" with no domain (RFC 5321 §4.5.1, any case) is the configured
//      GlobalOptions::postmaster address — RewritePostmaster().
//   2. The domain's scope (Config::DomainFor) has routes → kSmarthost: those hosts in
//      their configured order, a port of 0 replaced by the domain's remote_smtp_port.
//      DomainConfig::routes already holds the inherited global default_route (the config
//      loader resolves inheritance), so a domain that sets `routes = ""` to opt out of a
//      default_route gets MX here — its explicit setting wins.
//   3. The domain is an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") → kLiteral:
//      that address, remote_smtp_port, no MX lookup (RFC 5321 §5.1 applies to names).
//   4. Otherwise kMx: look up MX for the (lower-case, dot-less) domain; connect on the
//      domain's remote_smtp_port.
// Errors (no '@', empty or malformed domain, non-ASCII domain: we do not convert IDNs to
// A-labels) are kInvalidArgument: the address can never be delivered, so they bounce
// (5.1.2 / 5.1.3) through the single Status → reply mapping.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace ringmail::delivery {

struct RouteHop {
  std::string host;      // lower-case host name (resolve A/AAAA), or an IP address's text
  bool literal = false;  // `host` is an IP address: connect to it as is
  uint16_t port = 25;    // never 0
  friend bool operator==(const RouteHop&, const RouteHop&) = default;
};

struct Route {
  enum class Kind : uint8_t { kSmarthost, kLiteral, kMx };
  Kind kind = Kind::kMx;
  std::vector<RouteHop> hops;  // kSmarthost (in order) and kLiteral (one); empty for kMx
  std::string mx_domain;       // kMx: the domain whose MX records to look up
  uint16_t port = 25;          // kMx: the port of every MX host
};

// "postmaster" (any case, no '@') → global.postmaster; any other address unchanged.
std::string RewritePostmaster(std::string_view recipient, const config::GlobalOptions& global);

// The routing key of an address: the part after the last '@', lower case, without a
// trailing dot; an address literal is kept in brackets with "IPv6:" normalised.
absl::StatusOr<std::string> RecipientDomain(std::string_view address);

// Steps 2–4 for a domain as RecipientDomain() returns it.
absl::StatusOr<Route> RouteForDomain(const config::DomainConfig& domain,
                                     std::string_view recipient_domain);

// What makes two outbound sessions interchangeable for the Engine's connection sharing
// (delivery/engine.h, "Sharing by route"): a connection opened for one domain may carry
// another domain's mail only when the two keys are equal. The key holds the route's hops in
// order (host, literal or name, port: where the session may have connected and, for TLS
// verify, the names its certificate was checked against), the TLS policy the session ran
// under (kOpportunistic without a client context is kOff: no handshake is offered), the
// client context's identity when TLS may be used (a reload's new context, new CA files,
// makes a new key), and the EHLO name. Nothing else in a session depends on the domain.
// Empty (never shared) for kMx: the host list is the domain's own MX answer.
struct SessionKeyInputs {
  config::OutboundTls tls = config::OutboundTls::kOpportunistic;
  const void* tls_context = nullptr;  // identity only, never dereferenced
  std::string_view helo_name;
};
std::string SessionShareKey(const Route& route, const SessionKeyInputs& inputs);

// Steps 1–4: postmaster rewrite, domain, scope lookup, decision. `*routed_address` (may be
// null) receives the address to put in RCPT TO (the rewritten one for postmaster).
absl::StatusOr<Route> RouteForRecipient(const config::Config& config,
                                        std::string_view recipient,
                                        std::string* routed_address = nullptr);

}  // namespace ringmail::delivery
