#include "delivery/self_endpoints.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ringmail::delivery {
namespace {

dns::IpAddress FromConfig(const config::IpAddress& a) {
  dns::IpAddress out;
  out.family = a.is_v4() ? AF_INET : AF_INET6;
  out.bytes = a.bytes;
  return out;
}

bool IsAnyAddress(const dns::IpAddress& a) {
  const size_t n = a.family == AF_INET ? 4 : 16;
  return std::all_of(a.bytes.begin(), a.bytes.begin() + static_cast<ptrdiff_t>(n),
                     [](uint8_t b) { return b == 0; });
}

bool IsLoopback(const dns::IpAddress& a) {
  if (a.family == AF_INET) return a.bytes[0] == 127;
  static constexpr std::array<uint8_t, 16> kV6Loopback = {0, 0, 0, 0, 0, 0, 0, 0,
                                                          0, 0, 0, 0, 0, 0, 0, 1};
  return a.bytes == kV6Loopback;
}

// The address a connect to `a` reaches: an IPv4-mapped IPv6 address (::ffff:a.b.c.d, from
// an AAAA record) reaches the IPv4 address it maps through an IPv6 socket, and connect()
// takes the unspecified addresses to mean this host (0.0.0.0 -> 127.0.0.1, :: -> ::1).
dns::IpAddress Destination(dns::IpAddress a) {
  static constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0,    0,
                                                              0, 0, 0, 0, 0xff, 0xff};
  if (a.family == AF_INET6 && std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(),
                                         a.bytes.begin())) {
    dns::IpAddress v4;
    v4.family = AF_INET;
    std::copy(a.bytes.begin() + 12, a.bytes.end(), v4.bytes.begin());
    a = v4;
  }
  if (IsAnyAddress(a)) {
    dns::IpAddress loopback;
    loopback.family = a.family;
    if (a.family == AF_INET) {
      loopback.bytes[0] = 127;
      loopback.bytes[3] = 1;
    } else {
      loopback.bytes[15] = 1;
    }
    return loopback;
  }
  return a;
}

}  // namespace

SelfEndpoints SelfEndpoints::Make(const std::vector<config::ListenConfig>& listen,
                                  const std::vector<dns::IpAddress>& local) {
  SelfEndpoints self;
  for (const config::ListenConfig& l : listen) {
    const dns::IpAddress address = FromConfig(l.address.ip);
    const uint16_t port = l.address.port;
    if (!IsAnyAddress(address)) {
      self.endpoints_.push_back(Endpoint{address, port});
      continue;
    }
    for (const dns::IpAddress& a : local) {
      if (a.family == address.family) self.endpoints_.push_back(Endpoint{a, port});
    }
    // Every loopback address, not only the interface's own (127.0.0.2 reaches lo too).
    dns::IpAddress family_only;
    family_only.family = address.family;
    self.endpoints_.push_back(Endpoint{family_only, port, /*any_loopback=*/true});
  }
  return self;
}

bool SelfEndpoints::Contains(const dns::IpAddress& next_hop, uint16_t port) const {
  const dns::IpAddress address = Destination(next_hop);
  for (const Endpoint& e : endpoints_) {
    if (e.port != port || e.address.family != address.family) continue;
    if (e.any_loopback ? IsLoopback(address) : e.address == address) return true;
  }
  return false;
}

absl::StatusOr<std::vector<dns::IpAddress>> LocalAddresses() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return absl::UnavailableError(absl::StrCat("getifaddrs: ", std::strerror(errno)));
  }
  std::vector<dns::IpAddress> out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      out.push_back(dns::IpAddress::V4(v4->sin_addr));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      out.push_back(dns::IpAddress::V6(v6->sin6_addr));
    }
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace ringmail::delivery
