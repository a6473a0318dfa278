#include "dns/answer.h"

#include <arpa/inet.h>
#include <ares.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/string_view.h"
#include "dns/internal/wire.h"
#include "dns/name.h"

namespace ringmail::dns {
namespace {

std::string What(RecordType type, std::string_view name) {
  return absl::StrCat(RecordTypeName(type), " ", ToAbsl(name));
}

AnswerPtr Negative(RecordAnswer::Kind kind, const uint8_t* abuf, int alen) {
  auto a = std::make_shared<RecordAnswer>();
  a->kind = kind;
  if (abuf != nullptr && alen > 0) {
    a->ttl_s = internal::SoaNegativeTtl(abuf, static_cast<size_t>(alen)).value_or(kTtlUnknown);
  }
  return a;
}

AnswerPtr Malformed(RecordType type, std::string_view name, int rc) {
  return ErrorAnswer(absl::UnavailableError(absl::StrCat(
      "DNS ", What(type, name), ": unusable answer (", ares_strerror(rc), ")")));
}

AnswerPtr ParseMx(std::string_view name, const uint8_t* abuf, int alen) {
  ares_mx_reply* replies = nullptr;
  int rc = ares_parse_mx_reply(abuf, alen, &replies);
  if (rc == ARES_ENODATA) return Negative(RecordAnswer::Kind::kNoData, abuf, alen);
  if (rc != ARES_SUCCESS) return Malformed(RecordType::kMx, name, rc);
  auto a = std::make_shared<RecordAnswer>();
  a->kind = RecordAnswer::Kind::kData;
  bool root_target = false;
  for (ares_mx_reply* r = replies; r != nullptr; r = r->next) {
    std::string_view host = r->host != nullptr ? r->host : "";
    if (host.empty() || host == ".") {
      root_target = true;  // RFC 7505 null MX
      continue;
    }
    absl::StatusOr<std::string> canonical = NormalizeName(host);
    if (!canonical.ok()) {
      ++a->dropped;
      continue;
    }
    a->mx.push_back(MxHost{r->priority, std::move(canonical).value()});
  }
  ares_free_data(replies);
  a->ttl_s = internal::MinAnswerTtl(abuf, static_cast<size_t>(alen), 15).value_or(0);
  if (a->mx.empty()) {
    if (root_target && a->dropped == 0) {
      a->null_mx = true;
      return a;
    }
    return ErrorAnswer(absl::UnavailableError(absl::StrCat(
        "DNS ", What(RecordType::kMx, name), ": no MX record holds a valid host name")));
  }
  // A "." next to real hosts breaks RFC 7505; the real hosts still say where mail goes.
  CanonicalizeMx(a->mx, kMxHostsMax);
  return a;
}

AnswerPtr ParseA(std::string_view name, const uint8_t* abuf, int alen) {
  ares_addrttl ttls[kAddressesMax];
  int n = static_cast<int>(kAddressesMax);
  int rc = ares_parse_a_reply(abuf, alen, nullptr, ttls, &n);
  if (rc == ARES_ENODATA) return Negative(RecordAnswer::Kind::kNoData, abuf, alen);
  if (rc != ARES_SUCCESS) return Malformed(RecordType::kA, name, rc);
  if (n <= 0) return Negative(RecordAnswer::Kind::kNoData, abuf, alen);
  auto a = std::make_shared<RecordAnswer>();
  a->kind = RecordAnswer::Kind::kData;
  a->ttl_s = kTtlUnknown;
  for (int i = 0; i < n && i < static_cast<int>(kAddressesMax); ++i) {
    a->addresses.push_back(IpAddress::V4(ttls[i].ipaddr));
    uint32_t ttl = ttls[i].ttl < 0 ? 0 : static_cast<uint32_t>(ttls[i].ttl);
    if (ttl < a->ttl_s) a->ttl_s = ttl;
  }
  return a;
}

AnswerPtr ParseAaaa(std::string_view name, const uint8_t* abuf, int alen) {
  ares_addr6ttl ttls[kAddressesMax];
  int n = static_cast<int>(kAddressesMax);
  int rc = ares_parse_aaaa_reply(abuf, alen, nullptr, ttls, &n);
  if (rc == ARES_ENODATA) return Negative(RecordAnswer::Kind::kNoData, abuf, alen);
  if (rc != ARES_SUCCESS) return Malformed(RecordType::kAaaa, name, rc);
  if (n <= 0) return Negative(RecordAnswer::Kind::kNoData, abuf, alen);
  auto a = std::make_shared<RecordAnswer>();
  a->kind = RecordAnswer::Kind::kData;
  a->ttl_s = kTtlUnknown;
  for (int i = 0; i < n && i < static_cast<int>(kAddressesMax); ++i) {
    in6_addr v6;
    static_assert(sizeof(v6) == sizeof(ttls[i].ip6addr));
    std::memcpy(&v6, &ttls[i].ip6addr, sizeof(v6));
    a->addresses.push_back(IpAddress::V6(v6));
    uint32_t ttl = ttls[i].ttl < 0 ? 0 : static_cast<uint32_t>(ttls[i].ttl);
    if (ttl < a->ttl_s) a->ttl_s = ttl;
  }
  return a;
}

}  // namespace

const char* RecordTypeName(RecordType type) {
  switch (type) {
    case RecordType::kA:
      return "A";
    case RecordType::kMx:
      return "MX";
    case RecordType::kAaaa:
      return "AAAA";
  }
  return "?";
}

IpAddress IpAddress::V4(const in_addr& a) {
  IpAddress ip;
  ip.family = AF_INET;
  std::memcpy(ip.bytes.data(), &a, 4);
  return ip;
}

IpAddress IpAddress::V6(const in6_addr& a) {
  IpAddress ip;
  ip.family = AF_INET6;
  std::memcpy(ip.bytes.data(), &a, 16);
  return ip;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  // inet_pton reads a C string: an embedded NUL would end the text early.
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) return V4(v4);
  in6_addr v6;
  if (inet_pton(AF_INET6, buf, &v6) == 1) return V6(v6);
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof(buf));
  return buf;
}

socklen_t IpAddress::ToSockaddr(uint16_t port, sockaddr_storage* out) const {
  std::memset(out, 0, sizeof(*out));
  if (family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, bytes.data(), 16);
    return sizeof(sockaddr_in6);
  }
  auto* sin = reinterpret_cast<sockaddr_in*>(out);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  std::memcpy(&sin->sin_addr, bytes.data(), 4);
  return sizeof(sockaddr_in);
}

AnswerPtr ErrorAnswer(absl::Status error) {
  auto a = std::make_shared<RecordAnswer>();
  a->kind = RecordAnswer::Kind::kError;
  a->error = std::move(error);
  return a;
}

absl::Status StatusFromAres(int ares_status, std::string_view what) {
  std::string message = absl::StrCat("DNS ", ToAbsl(what), ": ", ares_strerror(ares_status));
  switch (ares_status) {
    case ARES_ETIMEOUT:
      return absl::DeadlineExceededError(message);
    case ARES_ENOTFOUND:
      return absl::NotFoundError(message);
    case ARES_EBADNAME:
      return absl::InvalidArgumentError(message);
    case ARES_ENOMEM:
      return absl::ResourceExhaustedError(message);
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
      return absl::CancelledError(message);
    default:
      // SERVFAIL, REFUSED, FORMERR, NOTIMP, connection refused, malformed replies: the
      // server or the path is broken now, which may heal: defer, never bounce.
      return absl::UnavailableError(message);
  }
}

AnswerPtr ParseAnswer(RecordType type, std::string_view name, int ares_status,
                      const uint8_t* abuf, int alen) {
  // A packet without the QR bit (RFC 1035 §4.1.1) is a query, not an answer: our own query
  // echoed back (a resolver socket whose local port is the server's port on loopback), or
  // something forged. c-ares takes it for an empty answer (NODATA), which would bounce the
  // mail; a broken path is a temporary error instead.
  if (abuf != nullptr && alen >= 3 && (abuf[2] & 0x80) == 0) {
    return Malformed(type, name, ARES_EBADRESP);
  }
  if (ares_status == ARES_ENOTFOUND) {
    return Negative(RecordAnswer::Kind::kNxDomain, abuf, alen);
  }
  if (ares_status == ARES_ENODATA) return Negative(RecordAnswer::Kind::kNoData, abuf, alen);
  if (ares_status != ARES_SUCCESS) {
    return ErrorAnswer(StatusFromAres(ares_status, What(type, name)));
  }
  if (abuf == nullptr || alen <= 0) return Malformed(type, name, ARES_EBADRESP);
  switch (type) {
    case RecordType::kMx:
      return ParseMx(name, abuf, alen);
    case RecordType::kA:
      return ParseA(name, abuf, alen);
    case RecordType::kAaaa:
      return ParseAaaa(name, abuf, alen);
  }
  return Malformed(type, name, ARES_EBADQUERY);
}

}  // namespace ringmail::dns
