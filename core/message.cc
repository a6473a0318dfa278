#include "core/message.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"

namespace ringmail::core {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void PutHex64(uint64_t v, char* out) {
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[v & 0xf];
    v >>= 4;
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// splitmix64: a bijective mixer, so distinct sequences give distinct ids.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

MessageIdHex MessageId::Hex() const {
  MessageIdHex out;
  PutHex64(hi, out.digits);
  PutHex64(lo, out.digits + 16);
  return out;
}

std::string MessageId::ToHex() const { return std::string(Hex().view()); }

bool MessageId::FromHex(std::string_view hex, MessageId* out) {
  if (hex.size() != 32) return false;
  uint64_t parts[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    int v = HexValue(hex[i]);
    if (v < 0) return false;
    parts[i / 16] = (parts[i / 16] << 4) | static_cast<uint64_t>(v);
  }
  out->hi = parts[0];
  out->lo = parts[1];
  return true;
}

MessageIdGenerator::MessageIdGenerator(uint16_t loop_index, uint64_t salt)
    : loop_index_(loop_index), salt_(salt) {}

MessageId MessageIdGenerator::Next(uint64_t now_ms) {
  MessageId id;
  id.hi = ((now_ms & 0xffffffffffffULL) << 16) | loop_index_;
  id.lo = Mix(salt_ ^ Mix(++sequence_));
  return id;
}

void Body::Append(std::string_view bytes) {
  while (!bytes.empty()) {
    std::span<char> tail = WritableTail();
    size_t n = std::min(tail.size(), bytes.size());
    std::memcpy(tail.data(), bytes.data(), n);
    Commit(n);
    bytes.remove_prefix(n);
  }
}

std::span<char> Body::WritableTail() {
  if (chunks_.empty() || chunks_.back().used == chunks_.back().capacity) {
    size_t capacity = chunks_.empty()
                          ? kFirstChunkBytes
                          : std::min(chunks_.back().capacity * 2, kMaxChunkBytes);
    chunks_.push_back(Chunk{std::make_unique_for_overwrite<char[]>(capacity), 0, capacity});
  }
  Chunk& last = chunks_.back();
  return {last.data.get() + last.used, last.capacity - last.used};
}

void Body::Commit(size_t n) {
  RM_DCHECK(!chunks_.empty());
  RM_DCHECK(chunks_.back().used + n <= chunks_.back().capacity);
  chunks_.back().used += n;
  size_ += n;
}

std::string Body::ToString() const {
  std::string out;
  out.reserve(size_);
  for (const Chunk& c : chunks_) out.append(c.data.get(), c.used);
  return out;
}

void Body::Clear() {
  chunks_.clear();
  size_ = 0;
}

}  // namespace ringmail::core
