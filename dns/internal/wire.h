// dns/internal/wire.h — the few facts c-ares's parsers do not give us, read straight from
// a DNS message (RFC 1035 section 4): the TTL of the answer records of one type (there is
// no TTL in ares_parse_mx_reply) and the negative-caching TTL from the SOA record of the
// authority section (RFC 2308 section 5). Pure; the message is hostile input: every read is
// bounds-checked, compression pointers are never followed (names are only skipped), and
// the walk is bounded by the message length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace ringmail::dns::internal {

// The smallest TTL among answer-section records of `type`; nullopt if there is none or
// the message is malformed. TTLs with the top bit set read as 0 (RFC 2181 section 8).
std::optional<uint32_t> MinAnswerTtl(const uint8_t* msg, size_t len, uint16_t type);

// min(SOA TTL, SOA MINIMUM) of the first SOA in the authority section; nullopt if there is
// none or the message is malformed.
std::optional<uint32_t> SoaNegativeTtl(const uint8_t* msg, size_t len);

}  // namespace ringmail::dns::internal
