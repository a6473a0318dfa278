// spool/segment_format.h — what a segment file is: its name, its place in the spool directory,
// its self-describing header, and the constants of its size.
//
// Pure functions and value types, no I/O; usable from any thread. The segment writer (lead's
// spool/segment_writer) writes EncodeSegmentHeader() at offset 0 of a fresh preallocated file (or
// of a drained segment's file it recycles) and appends records (spool/record.h) from
// kSegmentHeaderBytes on; recovery and the tools decode.
//
// Directory layout:   <spool_dir>/<loop>/<seq>.seg      e.g. spool/3/000000000017.seg
//                     <spool_dir>/quarantine/<loop>-<seq>.seg[.N]   (segments recovery set aside)
//                     <spool_dir>/<loop>/<seq>.recycle   (a segment file being recycled)
// <loop> is the decimal loop index without padding; <seq> is the decimal sequence number
// zero-padded to 12 digits so names sort like numbers (parsing accepts 1..20 digits). Sequence
// numbers start at 1 and only grow within a loop directory.
//
// Segment header, 64 bytes, all integers little-endian:
//   offset size field
//   0      8    magic           "RMSPOOL" 0x1A (the ^Z catches text-mode mangling, as in PNG)
//   8      4    version         1 or 2 (kSegmentFormatVersion, what this build writes)
//   12     4    header_bytes    64
//   16     4    loop            loop index; must match the directory name
//   20     4    record_align    8: every record starts at a multiple of this
//   24     8    sequence        must match the file name
//   32     8    created_ms      milliseconds since the Unix epoch
//   40     8    segment_bytes   the size the file was preallocated to
//   48     4    flags           version 2: kSegmentFlagRecycled or 0; version 1: zero
//   52     8    reserved        zero
//   60     4    header_crc      CRC32C of bytes [0, 60)
//
// Versions. 1: records of record version 1, not bound to the segment. 2: records of record
// version 2, whose two CRCs are XORed with LifeKey(loop, seq) (spool/record.h RecordLife), so a
// record belongs to one life of one segment file. A file may be reused for a new segment
// (recycled: renamed to a new, larger sequence number and given a new header, see
// spool/segment_writer.h); its records of earlier lives stay in the file but fail their CRCs
// under the new key and read as the end of the segment. kSegmentFlagRecycled says the file
// may hold such bytes, so a reader does not take them for a torn write of this life. This
// build reads both versions and writes version 2.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ringmail::spool {

inline constexpr uint32_t kSegmentFormatVersion1 = 1;
inline constexpr uint32_t kSegmentFormatVersion2 = 2;
inline constexpr uint32_t kSegmentFormatVersion = kSegmentFormatVersion2;  // what is written
// The file held earlier lives (version 2 only): bytes past the last record may be theirs.
inline constexpr uint32_t kSegmentFlagRecycled = 1;
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
  // Version 1 by default, so that a header built by hand (tests, tools) describes records
  // built with the default RecordLife; the segment writer sets kSegmentFormatVersion.
  uint32_t version = kSegmentFormatVersion1;
  uint32_t flags = 0;  // version 2 only

  friend bool operator==(const SegmentHeader&, const SegmentHeader&) = default;
};

// Exactly kSegmentHeaderBytes bytes. version must be 1 or 2, flags 0 for version 1 (checked).
std::string EncodeSegmentHeader(const SegmentHeader& header);

enum class SegmentHeaderError : uint8_t {
  kNone = 0,
  kTruncated,    // fewer than kSegmentHeaderBytes bytes
  kZero,         // all zero: the file was created but its header never reached the disk
  kBadMagic,
  kBadVersion,   // a format this build cannot read (e.g. written by a newer ringmail)
  kBadCrc,
  kBadField,     // header_bytes, record_align, flags or reserved bytes out of place
};
std::string_view SegmentHeaderErrorName(SegmentHeaderError error);

// Decodes the first kSegmentHeaderBytes of `bytes` (which may be longer). Never trusts input.
SegmentHeaderError DecodeSegmentHeader(std::string_view bytes, SegmentHeader* out);

std::string SegmentFileName(uint64_t seq);                      // "000000000017.seg"
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);
// A segment file in the middle of being recycled into segment `seq` (spool/segment_writer.h):
// "000000000017.recycle". Recovery removes such files unread; nothing else opens them.
inline constexpr char kRecycleSuffix[] = ".recycle";
std::string RecycleFileName(uint64_t seq);
std::optional<uint64_t> ParseRecycleFileName(std::string_view name);
std::string LoopDirName(uint32_t loop);                         // "3"
std::optional<uint32_t> ParseLoopDirName(std::string_view name);  // at most kMaxLoopIndex
std::string LoopDirPath(std::string_view spool_dir, uint32_t loop);
std::string SegmentPath(std::string_view spool_dir, SegmentId id);
// <spool_dir>/<loop>/<seq>.recycle: where segment `id` stands while a recycle makes it.
std::string RecyclePath(std::string_view spool_dir, SegmentId id);
std::string QuarantineDirPath(std::string_view spool_dir);

// Rounds up to kRecordAlignBytes.
constexpr uint64_t AlignRecord(uint64_t n) {
  return (n + kRecordAlignBytes - 1) & ~(kRecordAlignBytes - 1);
}

}  // namespace ringmail::spool
