#include "delivery/self_endpoints.h"

#include <ifaddrs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace ringmail::delivery {
namespace {

bool IsUnspecified(const config::IpAddress& a) {
  const size_t n = a.is_v4() ? 4 : 16;
  return std::all_of(a.bytes.begin(), a.bytes.begin() + static_cast<ptrdiff_t>(n),
                     [](uint8_t b) { return b == 0; });
}

config::Cidr Block(std::string_view text) {
  absl::StatusOr<config::Cidr> c = config::Cidr::Parse(text);
  RM_CHECK(c.ok()) << c.status();
  return *c;
}

config::Cidr Host(const config::IpAddress& a) {
  return config::Cidr{a, a.is_v4() ? 32 : 128};
}

// The address a connect to `hop` reaches, as the listeners' blocks are written: the client's
// address type converted, and the unspecified addresses taken as connect() takes them, for
// this host (0.0.0.0 -> 127.0.0.1, :: -> ::1; also when IPv4-mapped). An IPv4-mapped address
// is matched as the IPv4 address it maps by config::Cidr::Contains itself.
config::IpAddress Destination(const dns::IpAddress& hop) {
  config::IpAddress a;
  a.family = hop.family == AF_INET ? config::IpAddress::Family::kV4
                                   : config::IpAddress::Family::kV6;
  a.bytes = hop.bytes;
  a = a.Unmapped();
  if (!IsUnspecified(a)) return a;
  return *config::IpAddress::Parse(a.is_v4() ? "127.0.0.1" : "::1");
}

}  // namespace

SelfEndpoints SelfEndpoints::Make(const std::vector<config::ListenConfig>& listen,
                                  const std::vector<config::IpAddress>& local) {
  SelfEndpoints self;
  for (const config::ListenConfig& l : listen) {
    const config::IpAddress& address = l.address.ip;
    const uint16_t port = l.address.port;
    if (!IsUnspecified(address)) {
      self.endpoints_.push_back(Endpoint{Host(address), port});
      continue;
    }
    for (const config::IpAddress& a : local) {
      if (a.family == address.family) self.endpoints_.push_back(Endpoint{Host(a), port});
    }
    // Every loopback address, not only the interface's own (127.0.0.2 reaches lo too).
    self.endpoints_.push_back(
        Endpoint{address.is_v4() ? Block("127.0.0.0/8") : Block("::1/128"), port});
  }
  return self;
}

bool SelfEndpoints::Contains(const dns::IpAddress& next_hop, uint16_t port) const {
  const config::IpAddress address = Destination(next_hop);
  for (const Endpoint& e : endpoints_) {
    if (e.port == port && e.block.Contains(address)) return true;
  }
  return false;
}

absl::StatusOr<std::vector<config::IpAddress>> LocalAddresses() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return absl::UnavailableError(absl::StrCat("getifaddrs: ", std::strerror(errno)));
  }
  std::vector<config::IpAddress> out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    const socklen_t length = i->ifa_addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6)
                                                                : sizeof(sockaddr_in);
    std::optional<config::IpAddress> a = config::IpAddress::FromSockaddr(i->ifa_addr, length);
    if (a.has_value()) out.push_back(*a);
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace ringmail::delivery
