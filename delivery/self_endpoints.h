// delivery/self_endpoints.h — the addresses and ports this daemon's ESMTP listeners answer
// on. A next hop among them is this server: mail sent there comes straight back ("mail for
// example.com loops back to myself", as Postfix says), each pass adding a Received: field
// until max_hops refuses it a hundred passes later.
//
// The SMTP client (delivery/smtp_client.h) asks Contains() before each connect:
//   - an MX host that is this server ends the walk of the MX list: the hosts after it are
//     no more preferred than this server (RFC 5321 §5.1: a host that finds itself in the
//     list must not deliver to hosts of equal or lower preference). As a backup MX, mail
//     waits for the more preferred hosts; as the best MX, nothing can take it — 5.4.6.
//   - a route host (smarthost or address literal) that is this server is skipped; when no
//     other host is left, 5.4.6 as well.
// A listener on a specific address matches that address and port. A wildcard listener
// (0.0.0.0 or ::) matches its port on every address of the host's interfaces, taken when
// the set is made, and on every loopback address (127.0.0.0/8, ::1). IPv6 listening sockets
// are IPv6-only (listeners/net/listen_socket.cc), so :: never matches an IPv4 address.
//
// Immutable once made; shared by every client of every delivery loop (shared_ptr<const>).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "config/address.h"
#include "config/config.h"
#include "dns/answer.h"

namespace ringmail::delivery {

class SelfEndpoints {
 public:
  // `listen`: the ESMTP listeners' Listen scopes; `local`: the host's interface addresses
  // (LocalAddresses()), read only for wildcard listeners.
  static SelfEndpoints Make(const std::vector<config::ListenConfig>& listen,
                            const std::vector<config::IpAddress>& local);

  // Whether a connect to `next_hop`:`port` reaches one of the listeners. An IPv4-mapped
  // IPv6 address counts as the IPv4 address it maps; 0.0.0.0 and :: as loopback (connect()
  // takes them to mean this host).
  bool Contains(const dns::IpAddress& next_hop, uint16_t port) const;

 private:
  struct Endpoint {
    config::Cidr block;  // one address, or all of loopback for a wildcard listener
    uint16_t port = 0;
  };
  std::vector<Endpoint> endpoints_;  // wildcards already expanded
};

// The addresses of the host's interfaces (getifaddrs). Blocking (a netlink dump): call it at
// start-up, off the delivery loops.
absl::StatusOr<std::vector<config::IpAddress>> LocalAddresses();

}  // namespace ringmail::delivery
