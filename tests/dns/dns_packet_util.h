// tests/dns/dns_packet_util.h — builds and reads raw DNS messages for tests: crafted
// answers for the pure parser tests and for the fake server's replies (hostile names,
// SOA negative TTLs, truncated records), and the question of an incoming query.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ringmail::dns::testing {

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypeMx = 15;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kRcodeNoError = 0;
inline constexpr uint16_t kRcodeServFail = 2;
inline constexpr uint16_t kRcodeNxDomain = 3;
inline constexpr uint16_t kRcodeRefused = 5;

// Wire form of a dotted name; labels may hold any octet but '.'. "" and "." are the root.
std::string EncodeName(std::string_view dotted);
std::string MxRdata(uint16_t preference, std::string_view host);
std::string ARdata(std::string_view ipv4);
std::string AaaaRdata(std::string_view ipv6);
std::string SoaRdata(uint32_t serial, uint32_t minimum);

struct Rr {
  std::string name;
  uint16_t type = 0;
  uint32_t ttl = 0;
  std::string rdata;
};

struct Message {
  uint16_t id = 0;
  uint16_t rcode = kRcodeNoError;
  std::string qname;
  uint16_t qtype = kTypeA;
  std::vector<Rr> answers;
  std::vector<Rr> authority;
  int ancount_override = -1;  // >= 0: claim this many answers whatever follows
};

// A response (QR, RD, RA set) carrying `m`.
std::string Encode(const Message& m);

struct Question {
  uint16_t id = 0;
  std::string name;  // dotted, as sent
  uint16_t type = 0;
};
std::optional<Question> ParseQuestion(std::string_view packet);

}  // namespace ringmail::dns::testing
