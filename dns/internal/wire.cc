#include "dns/internal/wire.h"

namespace ringmail::dns::internal {
namespace {

constexpr size_t kHeaderBytes = 12;
constexpr uint16_t kTypeSoa = 6;
constexpr uint32_t kTtlTopBit = 0x80000000u;

uint16_t Read16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t Read32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
uint32_t SaneTtl(uint32_t ttl) { return (ttl & kTtlTopBit) ? 0 : ttl; }

// Advances `pos` past one encoded name; false if it runs off the message.
bool SkipName(const uint8_t* msg, size_t len, size_t& pos) {
  while (pos < len) {
    uint8_t b = msg[pos];
    if (b == 0) {
      ++pos;
      return true;
    }
    if ((b & 0xC0) == 0xC0) {  // a compression pointer ends the name
      if (pos + 2 > len) return false;
      pos += 2;
      return true;
    }
    if ((b & 0xC0) != 0) return false;  // reserved label types
    pos += 1 + b;
  }
  return false;
}

struct Record {
  uint16_t type = 0;
  uint32_t ttl = 0;
  size_t rdata = 0;  // offset of the record data
  uint16_t rdlength = 0;
};

// Reads the record at `pos` and advances past it.
bool ReadRecord(const uint8_t* msg, size_t len, size_t& pos, Record& r) {
  if (!SkipName(msg, len, pos)) return false;
  if (pos + 10 > len) return false;
  r.type = Read16(msg + pos);
  r.ttl = SaneTtl(Read32(msg + pos + 4));
  r.rdlength = Read16(msg + pos + 8);
  r.rdata = pos + 10;
  if (r.rdata + r.rdlength > len) return false;
  pos = r.rdata + r.rdlength;
  return true;
}

// Positions `pos` after the question section; returns the answer and authority counts.
bool SkipQuestions(const uint8_t* msg, size_t len, size_t& pos, uint16_t& ancount,
                   uint16_t& nscount) {
  if (len < kHeaderBytes) return false;
  uint16_t qdcount = Read16(msg + 4);
  ancount = Read16(msg + 6);
  nscount = Read16(msg + 8);
  pos = kHeaderBytes;
  for (uint16_t i = 0; i < qdcount; ++i) {
    if (!SkipName(msg, len, pos) || pos + 4 > len) return false;
    pos += 4;
  }
  return true;
}

}  // namespace

std::optional<uint32_t> MinAnswerTtl(const uint8_t* msg, size_t len, uint16_t type) {
  size_t pos = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  if (!SkipQuestions(msg, len, pos, ancount, nscount)) return std::nullopt;
  std::optional<uint32_t> ttl;
  for (uint16_t i = 0; i < ancount; ++i) {
    Record r;
    if (!ReadRecord(msg, len, pos, r)) return std::nullopt;
    if (r.type == type && (!ttl.has_value() || r.ttl < *ttl)) ttl = r.ttl;
  }
  return ttl;
}

std::optional<uint32_t> SoaNegativeTtl(const uint8_t* msg, size_t len) {
  size_t pos = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  if (!SkipQuestions(msg, len, pos, ancount, nscount)) return std::nullopt;
  Record r;
  for (uint16_t i = 0; i < ancount; ++i) {
    if (!ReadRecord(msg, len, pos, r)) return std::nullopt;
  }
  for (uint16_t i = 0; i < nscount; ++i) {
    if (!ReadRecord(msg, len, pos, r)) return std::nullopt;
    if (r.type != kTypeSoa) continue;
    // RDATA: MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM (5 x 32 bits).
    size_t end = r.rdata + r.rdlength;
    size_t field = r.rdata;
    if (!SkipName(msg, end, field) || !SkipName(msg, end, field)) return std::nullopt;
    if (field + 20 != end) return std::nullopt;
    uint32_t minimum = SaneTtl(Read32(msg + end - 4));
    return minimum < r.ttl ? minimum : r.ttl;
  }
  return std::nullopt;
}

}  // namespace ringmail::dns::internal
