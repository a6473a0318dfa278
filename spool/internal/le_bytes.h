// spool/internal/le_bytes.h — little-endian field writing and bounds-checked reading for the
// spool's on-disk formats. Internal to spool/: not included from other folders.
//
// ByteWriter appends to a std::string it does not own. ByteReader walks untrusted bytes: every
// read checks the remaining length first and turns the reader "failed" instead of reading
// past the end, so decoders can read a whole structure and test ok() once.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace ringmail::spool::internal {

inline void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }

inline void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutU16(std::string* out, uint16_t v) { PutLe(out, v, 2); }
inline void PutU32(std::string* out, uint32_t v) { PutLe(out, v, 4); }
inline void PutU64(std::string* out, uint64_t v) { PutLe(out, v, 8); }

// Overwrites 4 bytes at `pos` (which must already exist).
inline void StoreU32At(std::string* out, size_t pos, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*out)[pos + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

inline uint64_t LoadLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint32_t LoadU32(const char* p) { return static_cast<uint32_t>(LoadLe(p, 4)); }
inline uint64_t LoadU64(const char* p) { return LoadLe(p, 8); }

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : rest_(bytes) {}

  bool ok() const { return ok_; }
  // Whether the failure was a length over its limit (rather than bytes running out).
  bool limit_exceeded() const { return limit_exceeded_; }
  size_t remaining() const { return rest_.size(); }

  uint8_t U8() { return static_cast<uint8_t>(Fixed(1)); }
  uint16_t U16() { return static_cast<uint16_t>(Fixed(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Fixed(4)); }
  uint64_t U64() { return Fixed(8); }

  // A u32 length followed by that many bytes; fails if the length exceeds `max_bytes` or the
  // bytes that remain.
  std::string_view String(size_t max_bytes) {
    uint32_t n = U32();
    if (!ok_) return {};
    if (n > max_bytes || n > rest_.size()) {
      limit_exceeded_ = n > max_bytes;
      ok_ = false;
      return {};
    }
    std::string_view s = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return s;
  }

 private:
  uint64_t Fixed(int bytes) {
    if (!ok_ || rest_.size() < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t v = LoadLe(rest_.data(), bytes);
    rest_.remove_prefix(bytes);
    return v;
  }

  std::string_view rest_;
  bool ok_ = true;
  bool limit_exceeded_ = false;
};

}  // namespace ringmail::spool::internal
