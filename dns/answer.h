// dns/answer.h — what one DNS query taught us, in the form the cache keeps and the
// resolver combines: a positive answer (MX hosts or addresses, with its TTL), NODATA,
// NXDOMAIN (each with its negative-caching TTL), or an error Status.
//
// ParseAnswer() is pure: it takes the c-ares status and the raw reply of one query and
// treats the reply as hostile (c-ares does the parsing; names are re-validated here, lists
// are capped). Any thread. Answers are immutable once made and shared (cache + waiters).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "dns/mx_order.h"

namespace ringmail::dns {

enum class RecordType : uint16_t { kA = 1, kMx = 15, kAaaa = 28 };
const char* RecordTypeName(RecordType type);

// An IPv4 or IPv6 address in network byte order.
struct IpAddress {
  int family = AF_INET;             // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4

  static IpAddress V4(const in_addr& a);
  static IpAddress V6(const in6_addr& a);
  // Parses a literal ("192.0.2.1", "2001:db8::1"); nullopt if it is not one.
  static std::optional<IpAddress> Parse(std::string_view text);
  std::string ToString() const;
  // Fills `out` for connect() to this address and `port`; returns the address length.
  socklen_t ToSockaddr(uint16_t port, sockaddr_storage* out) const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

inline constexpr uint32_t kTtlUnknown = UINT32_MAX;
inline constexpr size_t kMxHostsMax = 32;     // MX hosts kept per domain (most preferred)
inline constexpr size_t kAddressesMax = 32;   // addresses kept per name and family

struct RecordAnswer {
  enum class Kind : uint8_t { kData, kNoData, kNxDomain, kError };
  Kind kind = Kind::kError;
  absl::Status error;       // kError: why (see resolver.h for the codes)
  uint32_t ttl_s = kTtlUnknown;  // kData: smallest record TTL; negatives: from the SOA
  bool null_mx = false;     // kData of an MX query whose only target is "." (RFC 7505)
  std::vector<MxHost> mx;   // kData of MX: canonical (CanonicalizeMx), never empty
  std::vector<IpAddress> addresses;  // kData of A / AAAA: in answer order, never empty
  uint32_t dropped = 0;     // records dropped as invalid (bad host names)
};
using AnswerPtr = std::shared_ptr<const RecordAnswer>;

// The answer to the query of `type` for `name` that c-ares completed with `ares_status`
// and reply `abuf` (may be null).
AnswerPtr ParseAnswer(RecordType type, std::string_view name, int ares_status,
                      const uint8_t* abuf, int alen);

AnswerPtr ErrorAnswer(absl::Status error);

// The Status a c-ares failure code means; `what` names the query ("MX example.com").
absl::Status StatusFromAres(int ares_status, std::string_view what);

}  // namespace ringmail::dns
