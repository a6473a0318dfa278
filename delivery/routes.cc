// delivery/routes.cc — smarthost, address literal or MX.
#include "delivery/routes.h"

#include <cstdint>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/string_view.h"
#include "config/address.h"

namespace ringmail::delivery {
namespace {

constexpr std::string_view kIpv6Tag = "ipv6:";

// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3) → the address.
absl::StatusOr<config::IpAddress> ParseAddressLiteral(std::string_view literal) {
  std::string_view inner = literal.substr(1, literal.size() - 2);
  bool v6 = inner.size() > kIpv6Tag.size() &&
            absl::EqualsIgnoreCase(ToAbsl(inner.substr(0, kIpv6Tag.size())), ToAbsl(kIpv6Tag));
  if (v6) inner.remove_prefix(kIpv6Tag.size());
  std::optional<config::IpAddress> ip = config::IpAddress::Parse(inner);
  if (!ip.has_value() || ip->is_v4() == v6) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad address literal '", ToAbsl(literal), "'"));
  }
  return *ip;
}

}  // namespace

std::string RewritePostmaster(std::string_view recipient, const config::GlobalOptions& global) {
  if (absl::EqualsIgnoreCase(ToAbsl(recipient), "postmaster") && !global.postmaster.empty()) {
    return global.postmaster;
  }
  return std::string(recipient);
}

absl::StatusOr<std::string> RecipientDomain(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", ToAbsl(address), "' has no domain"));
  }
  std::string_view domain = address.substr(at + 1);
  if (domain.size() >= 2 && domain.front() == '[' && domain.back() == ']') {
    absl::StatusOr<config::IpAddress> ip = ParseAddressLiteral(domain);
    if (!ip.ok()) return ip.status();
    return ip->is_v4() ? absl::StrCat("[", ip->ToString(), "]")
                       : absl::StrCat("[IPv6:", ip->ToString(), "]");
  }
  absl::StatusOr<std::string> name = config::NormalizeDomainName(domain);
  if (!name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("address '", ToAbsl(address),
                                                   "': ", name.status().message()));
  }
  return name;
}

absl::StatusOr<Route> RouteForDomain(const config::DomainConfig& domain,
                                     std::string_view recipient_domain) {
  uint16_t port = domain.remote_smtp_port != 0 ? domain.remote_smtp_port : 25;
  Route route;
  if (!domain.routes.empty()) {
    route.kind = Route::Kind::kSmarthost;
    for (const config::RouteHost& host : domain.routes) {
      route.hops.push_back(RouteHop{host.host, host.literal, host.port != 0 ? host.port : port});
    }
    return route;
  }
  if (!recipient_domain.empty() && recipient_domain.front() == '[') {
    if (recipient_domain.back() != ']') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address literal '", ToAbsl(recipient_domain), "'"));
    }
    absl::StatusOr<config::IpAddress> ip = ParseAddressLiteral(recipient_domain);
    if (!ip.ok()) return ip.status();
    route.kind = Route::Kind::kLiteral;
    route.hops.push_back(RouteHop{ip->ToString(), true, port});
    return route;
  }
  absl::StatusOr<std::string> name = config::NormalizeDomainName(recipient_domain);
  if (!name.ok()) return absl::InvalidArgumentError(name.status().message());
  route.kind = Route::Kind::kMx;
  route.mx_domain = *std::move(name);
  route.port = port;
  return route;
}

std::string SessionShareKey(const Route& route, const SessionKeyInputs& inputs) {
  if (route.kind == Route::Kind::kMx || route.hops.empty()) return "";
  config::OutboundTls tls = inputs.tls;
  if (tls == config::OutboundTls::kOpportunistic && inputs.tls_context == nullptr) {
    tls = config::OutboundTls::kOff;  // what SmtpClient makes of it
  }
  // Length-prefixed fields: no host or EHLO name can make two different inputs collide.
  std::string key = absl::StrCat("tls=", static_cast<int>(tls));
  if (tls != config::OutboundTls::kOff) {
    absl::StrAppend(&key, ";ctx=", reinterpret_cast<uintptr_t>(inputs.tls_context));
  }
  absl::StrAppend(&key, ";helo=", inputs.helo_name.size(), ":", ToAbsl(inputs.helo_name));
  for (const RouteHop& hop : route.hops) {
    absl::StrAppend(&key, ";hop=", hop.literal ? "ip" : "name", ":", hop.port, ":",
                    hop.host.size(), ":", hop.host);
  }
  return key;
}

absl::StatusOr<Route> RouteForRecipient(const config::Config& config,
                                        std::string_view recipient,
                                        std::string* routed_address) {
  std::string address = RewritePostmaster(recipient, config.global);
  absl::StatusOr<std::string> domain = RecipientDomain(address);
  if (!domain.ok()) return domain.status();
  absl::StatusOr<Route> route = RouteForDomain(config.DomainFor(*domain), *domain);
  if (route.ok() && routed_address != nullptr) *routed_address = std::move(address);
  return route;
}

}  // namespace ringmail::delivery
