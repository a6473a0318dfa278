#include "spool/segment_format.h"

#include <cinttypes>
#include <cstdio>

#include "base/check.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"

namespace ringmail::spool {
namespace {

constexpr char kMagic[8] = {'R', 'M', 'S', 'P', 'O', 'O', 'L', 0x1A};
constexpr size_t kCrcOffset = 60;
constexpr size_t kFlagsOffset = 48;
constexpr size_t kReservedOffset = 52;

static_assert(kCrcOffset + 4 == kSegmentHeaderBytes);

// Parses 1..max_digits decimal digits into a value <= max; nothing else allowed.
std::optional<uint64_t> ParseDecimal(std::string_view s, size_t max_digits, uint64_t max) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (max - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

// The one spelling of a per-loop sequence-numbered file: the number zero-padded to 12 digits,
// then `suffix` (".seg", ".recycle"). Written into `buf`; returns its length.
size_t FormatSeqFileName(uint64_t seq, const char* suffix, char (&buf)[48]) {
  const int n = std::snprintf(buf, sizeof(buf), "%012" PRIu64 "%s", seq, suffix);
  RM_CHECK(n > 0 && static_cast<size_t>(n) < sizeof(buf));
  return static_cast<size_t>(n);
}

std::string SeqFileName(uint64_t seq, const char* suffix) {
  char buf[48];
  return std::string(buf, FormatSeqFileName(seq, suffix, buf));
}

// The inverse, and the only parser of such names: "<1..20 decimal digits><suffix>", the
// number at most UINT64_MAX. Accepts unpadded spellings ("7.seg"); callers that need the
// canonical one compare against SeqFileName (recovery does).
std::optional<uint64_t> ParseSeqFileName(std::string_view name, std::string_view suffix) {
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  name.remove_suffix(suffix.size());
  return ParseDecimal(name, 20, UINT64_MAX);
}

}  // namespace

std::string SegmentId::ToString() const { return LoopDirName(loop) + "/" + SegmentFileName(seq); }

std::string EncodeSegmentHeader(const SegmentHeader& header) {
  RM_CHECK(header.version == kSegmentFormatVersion1 || header.version == kSegmentFormatVersion2)
      << header.version;
  RM_CHECK(header.version == kSegmentFormatVersion2 || header.flags == 0);
  RM_CHECK((header.flags & ~kSegmentFlagRecycled) == 0) << header.flags;
  std::string out(kMagic, sizeof(kMagic));
  internal::PutU32(&out, header.version);
  internal::PutU32(&out, static_cast<uint32_t>(kSegmentHeaderBytes));
  internal::PutU32(&out, header.loop);
  internal::PutU32(&out, static_cast<uint32_t>(kRecordAlignBytes));
  internal::PutU64(&out, header.seq);
  internal::PutU64(&out, header.created_ms);
  internal::PutU64(&out, header.segment_bytes);
  internal::PutU32(&out, header.flags);
  out.append(kCrcOffset - kReservedOffset, '\0');
  RM_CHECK(out.size() == kCrcOffset);
  internal::PutU32(&out, Crc32c(out));
  RM_DCHECK(out.size() == kSegmentHeaderBytes);
#if defined(RINGMAIL_DEBUG_CHECKS)
  SegmentHeader check;
  RM_DCHECK(DecodeSegmentHeader(out, &check) == SegmentHeaderError::kNone);
  RM_DCHECK(check == header);
#endif
  return out;
}

SegmentHeaderError DecodeSegmentHeader(std::string_view bytes, SegmentHeader* out) {
  if (bytes.size() < kSegmentHeaderBytes) return SegmentHeaderError::kTruncated;
  bytes = bytes.substr(0, kSegmentHeaderBytes);
  if (bytes.find_first_not_of('\0') == std::string_view::npos) return SegmentHeaderError::kZero;
  if (bytes.substr(0, sizeof(kMagic)) != std::string_view(kMagic, sizeof(kMagic))) {
    return SegmentHeaderError::kBadMagic;
  }
  // The version is read before the CRC: a newer format may checksum differently, and "newer
  // version" is the more useful thing to tell the operator.
  const uint32_t version = internal::LoadU32(bytes.data() + 8);
  if (version != kSegmentFormatVersion1 && version != kSegmentFormatVersion2) {
    return SegmentHeaderError::kBadVersion;
  }
  if (internal::LoadU32(bytes.data() + kCrcOffset) != Crc32c(bytes.substr(0, kCrcOffset))) {
    return SegmentHeaderError::kBadCrc;
  }
  if (internal::LoadU32(bytes.data() + 12) != kSegmentHeaderBytes ||
      internal::LoadU32(bytes.data() + 20) != kRecordAlignBytes) {
    return SegmentHeaderError::kBadField;
  }
  std::string_view reserved = bytes.substr(kReservedOffset, kCrcOffset - kReservedOffset);
  if (reserved.find_first_not_of('\0') != std::string_view::npos) {
    return SegmentHeaderError::kBadField;
  }
  const uint32_t flags = internal::LoadU32(bytes.data() + kFlagsOffset);
  const uint32_t allowed = version == kSegmentFormatVersion2 ? kSegmentFlagRecycled : 0;
  if ((flags & ~allowed) != 0) return SegmentHeaderError::kBadField;
  out->loop = internal::LoadU32(bytes.data() + 16);
  out->seq = internal::LoadU64(bytes.data() + 24);
  out->created_ms = internal::LoadU64(bytes.data() + 32);
  out->segment_bytes = internal::LoadU64(bytes.data() + 40);
  out->version = version;
  out->flags = flags;
  return SegmentHeaderError::kNone;
}

std::string_view SegmentHeaderErrorName(SegmentHeaderError error) {
  switch (error) {
    case SegmentHeaderError::kNone: return "ok";
    case SegmentHeaderError::kTruncated: return "truncated header";
    case SegmentHeaderError::kZero: return "zero header";
    case SegmentHeaderError::kBadMagic: return "bad magic";
    case SegmentHeaderError::kBadVersion: return "unsupported format version";
    case SegmentHeaderError::kBadCrc: return "header CRC mismatch";
    case SegmentHeaderError::kBadField: return "invalid header field";
  }
  return "unknown";
}

std::string SegmentFileName(uint64_t seq) { return SeqFileName(seq, kSegmentSuffix); }

std::optional<uint64_t> ParseSegmentFileName(std::string_view name) {
  return ParseSeqFileName(name, kSegmentSuffix);
}

std::string RecycleFileName(uint64_t seq) { return SeqFileName(seq, kRecycleSuffix); }

std::optional<uint64_t> ParseRecycleFileName(std::string_view name) {
  return ParseSeqFileName(name, kRecycleSuffix);
}

std::string LoopDirName(uint32_t loop) { return std::to_string(loop); }

std::optional<uint32_t> ParseLoopDirName(std::string_view name) {
  // No leading zeros: "03" and "3" would otherwise name the same loop twice.
  if (name.size() > 1 && name[0] == '0') return std::nullopt;
  std::optional<uint64_t> v = ParseDecimal(name, 5, kMaxLoopIndex);
  if (!v) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

std::string LoopDirPath(std::string_view spool_dir, uint32_t loop) {
  std::string path(spool_dir);
  path += '/';
  path += LoopDirName(loop);
  return path;
}

namespace {

// <spool_dir>/<loop>/<seq><suffix> in one allocation: the delivery ledger builds a segment's
// path for every message it queues. (A loop's name fits a short string: no allocation.)
std::string SeqFilePath(std::string_view spool_dir, SegmentId id, const char* suffix) {
  char name[48];
  const size_t n = FormatSeqFileName(id.seq, suffix, name);
  const std::string loop = LoopDirName(id.loop);
  std::string path;
  path.reserve(spool_dir.size() + loop.size() + n + 2);
  path.append(spool_dir).append(1, '/').append(loop).append(1, '/').append(name, n);
  return path;
}

}  // namespace

std::string SegmentPath(std::string_view spool_dir, SegmentId id) {
  return SeqFilePath(spool_dir, id, kSegmentSuffix);
}

std::string RecyclePath(std::string_view spool_dir, SegmentId id) {
  return SeqFilePath(spool_dir, id, kRecycleSuffix);
}

std::string QuarantineDirPath(std::string_view spool_dir) {
  std::string path(spool_dir);
  path += '/';
  path += kQuarantineDirName;
  return path;
}

}  // namespace ringmail::spool
