// config/address.cc — parsing and matching of addresses, blocks and routes.
#include "config/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

// Longest IPv6 text (with an embedded IPv4 tail) is 45 octets; anything longer is not an
// address, and the bound keeps the stack buffer for inet_pton fixed.
constexpr size_t kIpTextMax = 45;

bool IsV4Mapped(const IpAddress& a) {
  if (a.family != IpAddress::Family::kV6) return false;
  for (int i = 0; i < 10; ++i) {
    if (a.bytes[i] != 0) return false;
  }
  return a.bytes[10] == 0xff && a.bytes[11] == 0xff;
}

IpAddress MappedV6(const IpAddress& v4) {
  IpAddress out;
  out.family = IpAddress::Family::kV6;
  out.bytes[10] = 0xff;
  out.bytes[11] = 0xff;
  std::memcpy(&out.bytes[12], v4.bytes.data(), 4);
  return out;
}

// True when the first `prefix` bits of a and b are equal.
bool PrefixEqual(const uint8_t* a, const uint8_t* b, int prefix) {
  int full = prefix / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

bool HostBitsZero(const IpAddress& a, int prefix) {
  int total = a.is_v4() ? 32 : 128;
  for (int bit = prefix; bit < total; ++bit) {
    if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) return false;
  }
  return true;
}

absl::StatusOr<uint16_t> ParsePort(std::string_view text, std::string_view whole) {
  uint32_t port = 0;
  if (text.empty() || text.size() > 5 || !absl::SimpleAtoi(Av(text), &port) || port > 65535 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(text[0]))) {
    return absl::InvalidArgumentError(
        Cat("bad port '", text, "' in '", whole, "' (expected 0..65535)"));
  }
  return static_cast<uint16_t>(port);
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() > kIpTextMax) return std::nullopt;
  char buffer[kIpTextMax + 1];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress out;
  if (text.find(':') == std::string_view::npos) {
    out.family = Family::kV4;
    if (inet_pton(AF_INET, buffer, out.bytes.data()) != 1) return std::nullopt;
  } else {
    out.family = Family::kV6;
    if (inet_pton(AF_INET6, buffer, out.bytes.data()) != 1) return std::nullopt;
  }
  return out;
}

std::optional<IpAddress> IpAddress::FromSockaddr(const sockaddr* address, socklen_t length) {
  IpAddress out;
  if (address == nullptr) return std::nullopt;
  if (address->sa_family == AF_INET && length >= socklen_t{sizeof(sockaddr_in)}) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    out.family = Family::kV4;
    std::memcpy(out.bytes.data(), &in->sin_addr, 4);
    return out;
  }
  if (address->sa_family == AF_INET6 && length >= socklen_t{sizeof(sockaddr_in6)}) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    out.family = Family::kV6;
    std::memcpy(out.bytes.data(), &in6->sin6_addr, 16);
    return out;
  }
  return std::nullopt;
}

IpAddress IpAddress::Unmapped() const {
  if (!IsV4Mapped(*this)) return *this;
  IpAddress out;
  out.family = Family::kV4;
  std::memcpy(out.bytes.data(), &bytes[12], 4);
  return out;
}

std::string IpAddress::ToString() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes.data(), buffer, sizeof(buffer));
  return buffer;
}

absl::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  std::string_view address_text = text;
  std::optional<int> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    address_text = text.substr(0, slash);
    int value = 0;
    std::string_view prefix_text = text.substr(slash + 1);
    if (prefix_text.empty() || prefix_text.size() > 3 ||
        !absl::SimpleAtoi(Av(prefix_text), &value) ||
        !absl::ascii_isdigit(static_cast<unsigned char>(prefix_text[0]))) {
      return absl::InvalidArgumentError(Cat("bad prefix length in '", text, "'"));
    }
    prefix = value;
  }
  std::optional<IpAddress> address = IpAddress::Parse(address_text);
  if (!address) {
    return absl::InvalidArgumentError(
        Cat("bad CIDR block '", text, "' (expected ADDRESS or ADDRESS/PREFIX, e.g. 10.0.0.0/8)"));
  }
  int max_prefix = address->is_v4() ? 32 : 128;
  Cidr out{*address, prefix.value_or(max_prefix)};
  if (out.prefix_length < 0 || out.prefix_length > max_prefix) {
    return absl::InvalidArgumentError(
        Cat("prefix length in '", text, "' is out of range (0..", max_prefix, ")"));
  }
  if (!HostBitsZero(out.network, out.prefix_length)) {
    return absl::InvalidArgumentError(
        Cat("host bits are set in '", text, "' (address and prefix disagree)"));
  }
  return out;
}

bool Cidr::Contains(const IpAddress& address) const {
  IpAddress peer = address.Unmapped();
  if (network.is_v4()) {
    return peer.is_v4() && PrefixEqual(network.bytes.data(), peer.bytes.data(), prefix_length);
  }
  if (peer.is_v4()) peer = MappedV6(peer);
  return PrefixEqual(network.bytes.data(), peer.bytes.data(), prefix_length);
}

std::string Cidr::ToString() const { return Cat(network.ToString(), "/", prefix_length); }

bool CidrList::Contains(const IpAddress& address) const {
  for (const Cidr& block : blocks) {
    if (block.Contains(address)) return true;
  }
  return false;
}

absl::StatusOr<NetAddress> NetAddress::Parse(std::string_view text,
                                             std::optional<uint16_t> default_port) {
  std::string_view host = text;
  std::optional<std::string_view> port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(Cat("missing ']' in '", text, "'"));
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return absl::InvalidArgumentError(Cat("expected ':PORT' after ']' in '", text, "'"));
      }
      port_text = rest.substr(1);
    }
  } else if (size_t colon = text.find(':'); colon != std::string_view::npos &&
                                            text.find(':', colon + 1) == std::string_view::npos) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  std::optional<IpAddress> ip = IpAddress::Parse(host);
  if (!ip) {
    return absl::InvalidArgumentError(
        Cat("bad address '", text, "' (expected IP:PORT, IPv6 as [::1]:PORT; no host names)"));
  }
  NetAddress out{*ip, 0};
  if (port_text) {
    absl::StatusOr<uint16_t> port = ParsePort(*port_text, text);
    if (!port.ok()) return port.status();
    out.port = *port;
  } else if (default_port) {
    out.port = *default_port;
  } else {
    return absl::InvalidArgumentError(
        Cat("missing port in '", text, "' (expected IP:PORT, IPv6 as [::1]:PORT)"));
  }
  return out;
}

std::string NetAddress::ToString() const {
  if (ip.is_v4()) return Cat(ip.ToString(), ":", port);
  return Cat("[", ip.ToString(), "]:", port);
}

absl::StatusOr<RouteHost> RouteHost::Parse(std::string_view text) {
  RouteHost out;
  if (!text.empty() && text.front() == '[') {
    absl::StatusOr<NetAddress> address = NetAddress::Parse(text, uint16_t{0});
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          Cat("bad route '", text, "': ", address.status().message()));
    }
    out.literal = true;
    out.host = address->ip.ToString();
    out.port = address->port;
    return out;
  }
  std::string_view host = text;
  if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    absl::StatusOr<uint16_t> port = ParsePort(text.substr(colon + 1), text);
    if (!port.ok()) return port.status();
    out.port = *port;
    host = text.substr(0, colon);
  }
  absl::StatusOr<std::string> name = NormalizeDomainName(host);
  if (!name.ok()) {
    return absl::InvalidArgumentError(Cat(
        "bad route '", text, "' (expected HOST[:PORT] or [IP][:PORT]): ", name.status().message()));
  }
  out.host = *std::move(name);
  return out;
}

std::string RouteHost::ToString() const {
  std::string host_text = literal ? Cat("[", host, "]") : host;
  if (port == 0) return host_text;
  return Cat(host_text, ":", port);
}

absl::StatusOr<std::string> NormalizeDomainName(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty() || text.size() > 253) {
    return absl::InvalidArgumentError(Cat("bad name '", text, "' (1..253 octets)"));
  }
  size_t label_length = 0;
  for (char c : text) {
    if (c == '.') {
      if (label_length == 0) {
        return absl::InvalidArgumentError(Cat("empty label in name '", text, "'"));
      }
      label_length = 0;
      continue;
    }
    bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(Cat("bad character in name '", text, "'"));
    }
    if (++label_length > 63) {
      return absl::InvalidArgumentError(Cat("label longer than 63 in '", text, "'"));
    }
  }
  return absl::AsciiStrToLower(Av(text));
}

absl::StatusOr<std::string> NormalizeRelayDomain(std::string_view text) {
  const bool subdomains = !text.empty() && text.front() == '.';
  if (subdomains) text.remove_prefix(1);
  absl::StatusOr<std::string> name = NormalizeDomainName(text);
  if (!name.ok()) return name.status();
  for (absl::string_view label : absl::StrSplit(*name, '.')) {
    if (label.find('_') != absl::string_view::npos) {
      return absl::InvalidArgumentError(Cat("'_' in mail domain '", text, "'"));
    }
    if (label.front() == '-' || label.back() == '-') {
      return absl::InvalidArgumentError(
          Cat("a label of mail domain '", text, "' begins or ends with '-'"));
    }
  }
  return subdomains ? Cat(".", *name) : *std::move(name);
}

}  // namespace ringmail::config
