// config/address.h — the network values a configuration names: IP addresses, CIDR blocks,
// listen/resolver addresses (IP:PORT) and delivery routes.
//
// Pure value types and parsers with no I/O; every parser takes untrusted text (the config
// file, a control command) and returns an error naming what is wrong, never asserts.
// Callers: the config schema (to type keys), listeners (relay_hosts.Contains(peer)),
// delivery (routes), ringmaild (listen sockets, resolvers). Thread-compatible values.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ringmail::config {

// An IPv4 or IPv6 address. IPv4 keeps its 4 bytes at the front of `bytes`, the rest zero.
struct IpAddress {
  enum class Family : uint8_t { kV4, kV6 };
  Family family = Family::kV4;
  std::array<uint8_t, 16> bytes{};

  // Dotted quad or RFC 4291 text ("::1", "::ffff:1.2.3.4"); no brackets, no zone index.
  static std::optional<IpAddress> Parse(std::string_view text);
  // From an accepted socket's peer address; nullopt for a family other than AF_INET(6).
  static std::optional<IpAddress> FromSockaddr(const sockaddr* address, socklen_t length);

  bool is_v4() const { return family == Family::kV4; }
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an
  // IPv4 peer) as the IPv4 address it maps; any other address unchanged.
  IpAddress Unmapped() const;
  std::string ToString() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// A network block: "10.0.0.0/8", "::1/128"; a bare address means a single host.
struct Cidr {
  IpAddress network;
  int prefix_length = 0;  // 0..32 (IPv4) or 0..128 (IPv6)

  // Rejects host bits set below the prefix ("127.0.0.1/8"): that is almost always a typo
  // for a narrower or a different block, and silently masking it would widen a relay rule.
  static absl::StatusOr<Cidr> Parse(std::string_view text);
  // IPv4-mapped IPv6 peers match IPv4 blocks; IPv4 peers match ::ffff:0:0/96-style blocks.
  bool Contains(const IpAddress& address) const;
  std::string ToString() const;  // canonical, prefix always shown
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// A list of blocks, e.g. relay_hosts. Linear scan: lists are short and it is consulted once
// per connection, not per command.
struct CidrList {
  std::vector<Cidr> blocks;

  bool Contains(const IpAddress& address) const;
  friend bool operator==(const CidrList&, const CidrList&) = default;
};

// An IP address and port: a listen address or a DNS resolver.
struct NetAddress {
  IpAddress ip;
  uint16_t port = 0;

  // "1.2.3.4:25", "[::1]:25"; when default_port is given the port may be left out
  // ("1.2.3.4", "[::1]" or a bare "::1"). Port 0 is accepted (tests bind ephemeral ports).
  static absl::StatusOr<NetAddress> Parse(std::string_view text,
                                          std::optional<uint16_t> default_port = std::nullopt);
  std::string ToString() const;  // "1.2.3.4:25" or "[::1]:25"
  friend bool operator==(const NetAddress&, const NetAddress&) = default;
};

// One delivery route (smarthost). "[1.2.3.4]:2526" or "[::1]" is a literal address, used as
// is (no MX lookup, the Postfix convention); "relay.example.net:2526" or "relay.example.net"
// is a host name resolved by A/AAAA. port 0 means "the domain's remote_smtp_port".
struct RouteHost {
  std::string host;  // lower-case host name, or the address text for a literal
  bool literal = false;
  uint16_t port = 0;

  static absl::StatusOr<RouteHost> Parse(std::string_view text);
  std::string ToString() const;
  friend bool operator==(const RouteHost&, const RouteHost&) = default;
};

// A DNS host or domain name: labels of letters, digits, '-' and '_', 1..63 octets each,
// 253 in all; one trailing dot allowed. Returns the name in lower case without the dot.
absl::StatusOr<std::string> NormalizeDomainName(std::string_view text);
// A relay_domains entry: a mail domain (RFC 5321 §4.1.2: letters, digits, inner hyphens;
// no '_'), or ".domain" for every subdomain of it. Lower case; the leading dot is kept.
absl::StatusOr<std::string> NormalizeRelayDomain(std::string_view text);

}  // namespace ringmail::config
