// spool/segment_format.h — what a segment file is: its name, its place in the spool directory,
// its self-describing header, and the constants of its size.
//
// Pure functions and value types, no I/O; usable from any thread. The segment writer (lead's
// spool/segment_writer) writes EncodeSegmentHeader() at offset 0 of a fresh preallocated file and
// appends records (spool/record.h) from kSegmentHeaderBytes on; recovery and the tools decode.
//
// Directory layout:   <spool_dir>/<loop>/<seq>.seg      e.g. spool/3/000000000017.seg
//                     <spool_dir>/quarantine/<loop>-<seq>.seg[.N]   (segments recovery set aside)
// <loop> is the decimal loop index without padding; <seq> is the decimal sequence number
// zero-padded to 12 digits so names sort like numbers (parsing accepts 1..20 digits). Sequence
// numbers start at 1 and only grow within a loop directory.
//
// Segment header, 64 bytes, all integers little-endian:
//   offset size field
//   0      8    magic           "RMSPOOL" 0x1A (the ^Z catches text-mode mangling, as in PNG)
//   8      4    version         kSegmentFormatVersion (1)
//   12     4    header_bytes    64
//   16     4    loop            loop index; must match the directory name
//   20     4    record_align    8: every record starts at a multiple of this
//   24     8    sequence        must match the file name
//   32     8    created_ms      milliseconds since the Unix epoch
//   40     8    segment_bytes   the size the file was preallocated to
//   48     12   reserved        zero
//   60     4    header_crc      CRC32C of bytes [0, 60)
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringmail::spool {

inline constexpr uint32_t kSegmentFormatVersion = 1;
inline constexpr uint64_t kSegmentHeaderBytes = 64;
inline constexpr uint64_t kRecordAlignBytes = 8;
inline constexpr uint64_t kDefaultSegmentBytes = 64ull << 20;
// Bounds for the configurable segment size: a segment must hold at least a few ordinary
// messages, and offsets stay far from any overflow.
inline constexpr uint64_t kMinSegmentBytes = 1ull << 20;
inline constexpr uint64_t kMaxSegmentBytes = 64ull << 30;
inline constexpr uint32_t kMaxLoopIndex = 65535;  // MessageId carries 16 bits of loop index
inline constexpr char kQuarantineDirName[] = "quarantine";
inline constexpr char kSegmentSuffix[] = ".seg";

static_assert(kSegmentHeaderBytes % kRecordAlignBytes == 0, "records start aligned");
static_assert(kMinSegmentBytes % kRecordAlignBytes == 0);

// Names one segment in the whole spool (a loop may adopt another loop directory's segments).
struct SegmentId {
  uint32_t loop = 0;
  uint64_t seq = 0;

  friend bool operator==(const SegmentId&, const SegmentId&) = default;
  friend auto operator<=>(const SegmentId&, const SegmentId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SegmentId& id) {
    return H::combine(std::move(h), id.loop, id.seq);
  }
  std::string ToString() const;  // "3/000000000017.seg"
};

// Where a MESSAGE record sits. content_* name the delivered bytes (Received: header then body)
// that delivery reads back; record_* the whole record, for live-bytes accounting.
struct SpoolLocation {
  SegmentId segment;
  uint64_t record_offset = 0;
  uint64_t record_bytes = 0;  // padded: the bytes the record occupies in the file
  uint64_t content_offset = 0;
  uint64_t content_length = 0;

  friend bool operator==(const SpoolLocation&, const SpoolLocation&) = default;
};

struct SegmentHeader {
  uint32_t loop = 0;
  uint64_t seq = 0;
  uint64_t created_ms = 0;
  uint64_t segment_bytes = 0;

  friend bool operator==(const SegmentHeader&, const SegmentHeader&) = default;
};

// Exactly kSegmentHeaderBytes bytes.
std::string EncodeSegmentHeader(const SegmentHeader& header);

enum class SegmentHeaderError : uint8_t {
  kNone = 0,
  kTruncated,    // fewer than kSegmentHeaderBytes bytes
  kZero,         // all zero: the file was created but its header never reached the disk
  kBadMagic,
  kBadVersion,   // a format this build cannot read (e.g. written by a newer ringmail)
  kBadCrc,
  kBadField,     // header_bytes, record_align or reserved bytes out of place
};
std::string_view SegmentHeaderErrorName(SegmentHeaderError error);

// Decodes the first kSegmentHeaderBytes of `bytes` (which may be longer). Never trusts input.
SegmentHeaderError DecodeSegmentHeader(std::string_view bytes, SegmentHeader* out);

std::string SegmentFileName(uint64_t seq);                      // "000000000017.seg"
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);
std::string LoopDirName(uint32_t loop);                         // "3"
std::optional<uint32_t> ParseLoopDirName(std::string_view name);  // at most kMaxLoopIndex
std::string LoopDirPath(std::string_view spool_dir, uint32_t loop);
std::string SegmentPath(std::string_view spool_dir, SegmentId id);
std::string QuarantineDirPath(std::string_view spool_dir);

// Rounds up to kRecordAlignBytes.
constexpr uint64_t AlignRecord(uint64_t n) {
  return (n + kRecordAlignBytes - 1) & ~(kRecordAlignBytes - 1);
}

}  // namespace ringmail::spool
