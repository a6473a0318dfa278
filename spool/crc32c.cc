#include "spool/crc32c.h"

#include <array>
#include <bit>
#include <cstring>

#include "base/check.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ringmail::spool {
namespace {

// Reflected CRC32C polynomial. In the reflected representation bit 31 is the coefficient of
// x^0 and bit 0 that of x^31.
constexpr uint32_t kPoly = 0x82F63B78u;

// Slicing-by-8 tables: kTables[0] is the classic byte table; kTables[k][b] is the register
// after feeding byte b followed by k zero bytes.
constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t prev = t[k - 1][b];
      t[k][b] = (prev >> 8) ^ t[0][prev & 0xff];
    }
  }
  return t;
}

constexpr auto kTables = MakeTables();

uint32_t PortableBytes(uint32_t c, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) c = (c >> 8) ^ kTables[0][(c ^ p[i]) & 0xff];
  return c;
}

// Operates on the raw register (pre/post inversion done by the caller).
uint32_t PortableRaw(uint32_t c, const uint8_t* p, size_t n) {
  if constexpr (std::endian::native != std::endian::little) {
    return PortableBytes(c, p, n);
  }
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    word ^= c;
    c = kTables[7][word & 0xff] ^ kTables[6][(word >> 8) & 0xff] ^
        kTables[5][(word >> 16) & 0xff] ^ kTables[4][(word >> 24) & 0xff] ^
        kTables[3][(word >> 32) & 0xff] ^ kTables[2][(word >> 40) & 0xff] ^
        kTables[1][(word >> 48) & 0xff] ^ kTables[0][word >> 56];
    p += 8;
    n -= 8;
  }
  return PortableBytes(c, p, n);
}

#if defined(__x86_64__)

// (a * b) mod P over GF(2), reflected representation.
uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
    if (a & m) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

// Advancing a raw register over `bytes` zero bytes multiplies it by x^(8*bytes) mod P; this
// table does that multiplication for a fixed byte count with four lookups. It is what lets
// three independently computed streams be stitched back into one CRC.
struct ShiftTable {
  std::array<std::array<uint32_t, 256>, 4> t;

  explicit ShiftTable(size_t bytes) {
    uint32_t x_pow = 1u << 31;  // x^0
    for (size_t i = 0; i < 8 * bytes; ++i) x_pow = (x_pow & 1) ? (x_pow >> 1) ^ kPoly : x_pow >> 1;
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) t[k][b] = MultiplyModP(b << (8 * k), x_pow);
    }
  }
  uint32_t Shift(uint32_t c) const {
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
  }
};

// Stream lengths of the two interleaved tiers: long buffers (bodies) use the first, medium
// ones (headers and metadata) the second; anything shorter runs one stream.
constexpr size_t kLongStreamBytes = 4096;
constexpr size_t kShortStreamBytes = 256;

const ShiftTable& LongShift() {
  static const ShiftTable table(kLongStreamBytes);
  return table;
}
const ShiftTable& ShortShift() {
  static const ShiftTable table(kShortStreamBytes);
  return table;
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Three streams of `stream` bytes each; returns the raw register after all 3*stream bytes.
__attribute__((target("sse4.2"))) inline uint32_t ThreeWay(uint32_t c, const uint8_t* p,
                                                            size_t stream,
                                                            const ShiftTable& shift) {
  uint64_t a = c, b = 0, d = 0;
  const uint8_t* p1 = p + stream;
  const uint8_t* p2 = p + 2 * stream;
  for (size_t i = 0; i < stream; i += 8) {
    a = _mm_crc32_u64(a, Load64(p + i));
    b = _mm_crc32_u64(b, Load64(p1 + i));
    d = _mm_crc32_u64(d, Load64(p2 + i));
  }
  // crc(A|B|C) = shift(shift(crc(A)) ^ crc0(B)) ^ crc0(C), by linearity of the register.
  uint32_t r = shift.Shift(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b);
  return shift.Shift(r) ^ static_cast<uint32_t>(d);
}

__attribute__((target("sse4.2"))) uint32_t HardwareRaw(uint32_t c, const uint8_t* p, size_t n) {
  if (n >= 3 * kLongStreamBytes) {
    const ShiftTable& shift = LongShift();
    while (n >= 3 * kLongStreamBytes) {
      c = ThreeWay(c, p, kLongStreamBytes, shift);
      p += 3 * kLongStreamBytes;
      n -= 3 * kLongStreamBytes;
    }
  }
  if (n >= 3 * kShortStreamBytes) {
    const ShiftTable& shift = ShortShift();
    while (n >= 3 * kShortStreamBytes) {
      c = ThreeWay(c, p, kShortStreamBytes, shift);
      p += 3 * kShortStreamBytes;
      n -= 3 * kShortStreamBytes;
    }
  }
  uint64_t c64 = c;
  while (n >= 8) {
    c64 = _mm_crc32_u64(c64, Load64(p));
    p += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n > 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  return c;
}

bool DetectHardware() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

#endif  // __x86_64__

using ExtendFn = uint32_t (*)(uint32_t, const void*, size_t);

ExtendFn ChooseImplementation() {
  return Crc32cUsesHardware() ? &Crc32cExtendHardware : &Crc32cExtendPortable;
}

}  // namespace

uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t size) {
  return ~PortableRaw(~crc, static_cast<const uint8_t*>(data), size);
}

uint32_t Crc32cExtendHardware(uint32_t crc, const void* data, size_t size) {
#if defined(__x86_64__)
  RM_DCHECK(Crc32cUsesHardware());
  return ~HardwareRaw(~crc, static_cast<const uint8_t*>(data), size);
#else
  RM_CHECK(false) << "no CRC32C instruction on this architecture";
  return crc;
#endif
}

bool Crc32cUsesHardware() {
#if defined(__x86_64__)
  static const bool available = DetectHardware();
  return available;
#else
  return false;
#endif
}

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size) {
  static const ExtendFn extend = ChooseImplementation();
  return extend(crc, data, size);
}

}  // namespace ringmail::spool
