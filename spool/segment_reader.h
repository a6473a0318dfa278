// spool/segment_reader.h — reads one segment file with blocking pread: validates its header,
// then yields its records one by one, checking every CRC, and says how the segment ends.
//
// Blocking file I/O: runs on the SpoolIn thread pool (recovery) or in offline tools, never on
// a loop thread. One reader is used by one thread at a time; it owns its file descriptor and a
// read window (1 MiB, grown temporarily to hold a large metadata section). Bodies are streamed
// through the CRC and never kept. Records are read as the header's format says (spool/record.h
// RecordLife: version 1 unbound, version 2 bound to the segment's sequence number).
//
// How a segment ends (SegmentEnd), decided at the first record that does not validate:
//   kClean     zeros (unwritten preallocated space) or end of file from there on; in a
//              recycled segment (kSegmentFlagRecycled) also bytes that no record of this
//              life starts with (an earlier life's records; detail says where they start);
//   kTornTail  damaged bytes and nothing valid after them: an interrupted write, which was
//              never acknowledged (see the writer contract in record.h); in a recycled
//              segment only a record whose header is of this life;
//   kCorrupt   a valid record further on (so acknowledged data was damaged), or a CRC-valid
//              record whose metadata does not parse (a writer bug);
//   kIoError   the file could not be read.
// The search for "anything valid after the bad spot" walks the rest of the file at every
// 8-byte offset; holes and unwritten extents are skipped with SEEK_DATA, so a mostly empty
// preallocated segment costs little.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "spool/record.h"
#include "spool/segment_format.h"

namespace ringmail::spool {

enum class SegmentEnd : uint8_t { kClean, kTornTail, kCorrupt, kIoError };
std::string_view SegmentEndName(SegmentEnd end);

struct SegmentEndInfo {
  SegmentEnd kind = SegmentEnd::kClean;
  uint64_t offset = 0;             // end of the last valid record: where the stop happened
  RecordStatus cause;              // why the bytes at `offset` are not a record
  uint64_t next_valid_offset = 0;  // kCorrupt: a valid record found after `offset`, if any
  std::string detail;              // human-readable: I/O error text, position of stray data
};

struct ScannedRecord {
  uint64_t offset = 0;  // of the record within the file
  RecordHeader header;
  RecordMeta meta;

  uint64_t content_offset() const { return offset + kRecordHeaderBytes + header.meta_length; }
};

enum class SegmentOpenResult : uint8_t {
  kOk,
  kEmpty,      // zero-length or all zeros: created, header never written; holds nothing
  kBadHeader,  // unreadable header (see header_error): the segment must be set aside
  kIoError,
};

struct SegmentOpenStatus {
  SegmentOpenResult result = SegmentOpenResult::kOk;
  SegmentHeaderError header_error = SegmentHeaderError::kNone;
  std::string detail;
};

class SegmentReader {
 public:
  static constexpr size_t kWindowBytes = 1 << 20;

  SegmentReader() = default;
  ~SegmentReader();
  SegmentReader(const SegmentReader&) = delete;
  SegmentReader& operator=(const SegmentReader&) = delete;

  // Opens `path` read-only and validates its header. Records can be read only after kOk.
  SegmentOpenStatus Open(const std::string& path);

  const SegmentHeader& header() const { return header_; }
  const RecordLife& life() const { return life_; }
  uint64_t file_size() const { return file_size_; }

  // Reads the next valid record into *out. Returns false at the end; end() then says how the
  // segment ends. Never crashes on any file content.
  bool Next(ScannedRecord* out);
  const SegmentEndInfo& end() const { return end_; }
  // End of the last valid record read so far (kSegmentHeaderBytes before the first).
  uint64_t valid_end() const { return pos_; }

  // Reads `length` bytes at `offset` (tools: show a message's content). Errors: kOutOfRange
  // past the end of file, kDataLoss/kUnavailable on I/O errors.
  absl::Status ReadAt(uint64_t offset, uint64_t length, std::string* out);

 private:
  enum class ReadResult : uint8_t { kOk, kPastEnd, kIoError };
  enum class RecordResult : uint8_t { kValid, kInvalid, kIoError };

  ReadResult View(uint64_t offset, size_t length, std::string_view* out);
  RecordResult ReadRecordAt(uint64_t pos, ScannedRecord* out, RecordStatus* status,
                            bool* crc_valid);
  RecordResult CheckCrc(uint64_t pos, const RecordHeader& header, RecordStatus* status);
  void Classify(uint64_t pos, RecordStatus cause, bool crc_valid);
  bool OfThisLife(uint64_t pos, RecordStatus cause) const;
  // Looks at [from, file end): the first non-zero byte and the first valid record strictly
  // after `from` (0 when none). Returns false on an I/O error (end_ is then set).
  bool ScanRest(uint64_t from, uint64_t* first_nonzero, uint64_t* next_valid,
                bool want_valid);
  uint64_t NextDataOffset(uint64_t from);
  void FinishIoError(uint64_t pos, const std::string& what);

  int fd_ = -1;
  std::string path_;
  uint64_t file_size_ = 0;
  SegmentHeader header_;
  RecordLife life_;
  uint64_t pos_ = kSegmentHeaderBytes;
  bool done_ = false;
  bool seek_data_works_ = true;
  SegmentEndInfo end_;
  std::string window_;
  uint64_t window_start_ = 0;
  size_t window_length_ = 0;
  std::string meta_;
  std::string io_error_;
};

}  // namespace ringmail::spool
