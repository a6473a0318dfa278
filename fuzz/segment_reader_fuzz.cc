// fuzz/segment_reader_fuzz.cc — libFuzzer target for spool/segment_reader.h: a whole
// segment file read back the way recovery reads it (Open, Next until the end, ReadAt).
//
// The file lives in a memfd (no disk traffic per run; SEEK_DATA works on it) opened by its
// /proc/self/fd path, as SegmentReader takes a path. The last input byte is a mode:
//   bit 0  prepend a valid 64-byte segment header (else the input starts the file);
//   bit 1  make every record's CRCs right, walking the records from the first (FixCrcs);
//   bit 2  append 4 KiB of zeros (the unwritten, preallocated tail of a live segment);
//   bit 3  where the (fixed) records stop, leave a hole of 1 MiB + 8 * (mode >> 4) bytes
//          and go on with the rest of the input (and its records) after it.
//   bits 4-5 (with bit 0, without bit 3): the header's format: 0 format 1; 1 format 2;
//          2 format 2 recycled, the records fixed for an earlier life (seq 16) and then the
//          first one for this life (seq 17): one record of this life, then an earlier
//          life's bytes; 3 the same with every record of the earlier life.
// Oracles: no crash; every record the reader returns is exactly what the pure decoder
// (DecodeRecord) finds at that offset, in order, with nothing skipped; ReadAt returns the
// content the decoder saw; the end (clean / torn tail / corrupt, offset, next valid record)
// is the one a slow reference computes by trying DecodeRecord at every 8-byte offset.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>

#include "base/check.h"
#include "fuzz/spool_fuzz_util.h"
#include "spool/crc32c.h"
#include "spool/record.h"
#include "spool/segment_format.h"
#include "spool/segment_reader.h"

namespace ringmail::spool {
namespace {

int FileDescriptor() {
  static const int fd = memfd_create("segment-fuzz", MFD_CLOEXEC);
  RM_CHECK(fd >= 0);
  return fd;
}

// Writes `file`, leaving [hole_at, hole_at + hole_bytes) unwritten (a real hole: the
// reader's SEEK_DATA skips it, as it skips the unwritten extents of a preallocated segment).
void WriteFile(std::string_view file, size_t hole_at, size_t hole_bytes) {
  const int fd = FileDescriptor();
  RM_CHECK(ftruncate(fd, 0) == 0);
  RM_CHECK(ftruncate(fd, static_cast<off_t>(file.size())) == 0);
  const std::string_view before = file.substr(0, hole_at);
  const std::string_view after = file.substr(hole_at + hole_bytes);
  RM_CHECK(pwrite(fd, before.data(), before.size(), 0) == static_cast<ssize_t>(before.size()));
  RM_CHECK(pwrite(fd, after.data(), after.size(), static_cast<off_t>(hole_at + hole_bytes)) ==
           static_cast<ssize_t>(after.size()));
}

// Makes the CRCs of the records from `at` on right for `life`; returns where the walk stopped.
size_t FixRecords(std::string* file, size_t at, RecordLife life) {
  while (const uint64_t n = fuzz::FixCrcs(file, at, life)) at += n;
  return at;
}

constexpr SegmentId kFuzzSegment{3, 17};
constexpr SegmentId kEarlierLife{3, 16};

struct BuiltFile {
  std::string bytes;
  size_t hole_at = 0;
  size_t hole_bytes = 0;
};

BuiltFile BuildFile(std::string_view input, uint8_t mode) {
  BuiltFile f;
  const uint8_t format = (mode & 8) != 0 ? 0 : (mode >> 4) & 3;
  SegmentHeader header{kFuzzSegment.loop, kFuzzSegment.seq, 1700000000000, kMinSegmentBytes};
  if (format != 0) header.version = kSegmentFormatVersion2;
  if (format >= 2) header.flags = kSegmentFlagRecycled;
  if ((mode & 1) != 0) f.bytes = EncodeSegmentHeader(header);
  f.bytes.append(input);
  if (f.bytes.size() < kSegmentHeaderBytes) return f;
  SegmentHeader decoded;
  const RecordLife life = DecodeSegmentHeader(f.bytes, &decoded) == SegmentHeaderError::kNone
                              ? LifeOf(decoded)
                              : RecordLife{};
  size_t stop = kSegmentHeaderBytes;
  if ((mode & 2) != 0 && (mode & 1) != 0 && format >= 2) {
    const RecordLife earlier = LifeOf(SegmentHeader{kEarlierLife.loop, kEarlierLife.seq, 0,
                                                    kMinSegmentBytes, kSegmentFormatVersion2});
    FixRecords(&f.bytes, kSegmentHeaderBytes, earlier);
    if (format == 2) fuzz::FixCrcs(&f.bytes, kSegmentHeaderBytes, life);
    return f;
  }
  if ((mode & 2) != 0) stop = FixRecords(&f.bytes, kSegmentHeaderBytes, life);
  if ((mode & 8) != 0) {  // a hole larger than the reader's window where the records stop
    f.hole_at = stop;
    f.hole_bytes = SegmentReader::kWindowBytes + kRecordAlignBytes * (mode >> 4);
    f.bytes.insert(stop, f.hole_bytes, '\0');
    if ((mode & 2) != 0) FixRecords(&f.bytes, stop + f.hole_bytes, life);
  }
  if ((mode & 4) != 0) f.bytes.append(4096, '\0');
  return f;
}

// Whether the bytes at `at` are a record whose CRC and padding are right but whose metadata
// does not parse (the reader calls that corrupt, never a torn tail).
bool CrcValidButBad(std::string_view file, uint64_t at, RecordLife life) {
  RecordHeader h;
  if (!DecodeRecordHeader(file.substr(at), &h, life).ok()) return false;
  if (file.size() - at < h.padded_length()) return false;
  const std::string_view record = file.substr(at, h.padded_length());
  const uint32_t crc =
      Crc32cExtend(RecordCrcOfHeader(record, life), record.substr(kRecordHeaderBytes));
  if (crc != h.crc) return false;
  if (record.substr(h.length).find_first_not_of('\0') != std::string_view::npos) return false;
  RecordMeta meta;
  return !DecodeMeta(h, record.substr(kRecordHeaderBytes, h.meta_length), &meta).ok();
}

// The end the reader must report when the records stop at `pos`.
// The first 8-byte-aligned group at or after `from` that is not all zeros (or npos). Whole
// words at a time: a 1 MiB hole must not cost a million traced byte compares per run.
size_t NextNonZero(std::string_view file, size_t from) {
  size_t q = from;
  for (; q + 8 <= file.size(); q += 8) {
    uint64_t word;
    std::memcpy(&word, file.data() + q, 8);
    if (word != 0) return q;
  }
  for (size_t i = q; i < file.size(); ++i) {
    if (file[i] != '\0') return q;
  }
  return std::string_view::npos;
}

// In a recycled segment: whether the bytes at `pos` start with a record header of this life
// (a torn write of this life) rather than with anything else (an earlier life's bytes).
bool HeaderOfThisLife(std::string_view file, uint64_t pos, RecordLife life) {
  RecordHeader h;
  const RecordError e = DecodeRecordHeader(file.substr(pos), &h, life).error;
  if (e == RecordError::kZeroHeader || e == RecordError::kBadHeaderCrc) return false;
  return e != RecordError::kTruncated || pos + kRecordHeaderBytes <= file.size();
}

SegmentEndInfo ReferenceEnd(std::string_view file, uint64_t pos, const SegmentHeader& header) {
  const RecordLife life = LifeOf(header);
  SegmentEndInfo end;
  end.offset = pos;
  if (pos == file.size()) return end;
  uint64_t next_valid = 0;
  for (size_t q = NextNonZero(file, pos + kRecordAlignBytes);
       q != std::string_view::npos && q + kRecordHeaderBytes <= file.size();
       q = NextNonZero(file, q + kRecordAlignBytes)) {
    DecodedRecord probe;
    if (DecodeRecord(file.substr(q), &probe, life).ok()) {
      next_valid = q;
      break;
    }
  }
  const bool recycled = (header.flags & kSegmentFlagRecycled) != 0;
  if (CrcValidButBad(file, pos, life) || next_valid != 0) {
    end.kind = SegmentEnd::kCorrupt;
    end.next_valid_offset = next_valid;
  } else if (NextNonZero(file, pos) != std::string_view::npos &&
             (!recycled || HeaderOfThisLife(file, pos, life))) {
    end.kind = SegmentEnd::kTornTail;
  }
  return end;
}

void ReadRecords(SegmentReader& reader, std::string_view file, const SegmentHeader& header) {
  const RecordLife life = LifeOf(header);
  uint64_t pos = kSegmentHeaderBytes;
  ScannedRecord scanned;
  for (size_t count = 0; reader.Next(&scanned); ++count) {
    RM_CHECK(count <= file.size() / kRecordAlignBytes) << "more records than room";
    RM_CHECK(scanned.offset == pos) << "a record was skipped";
    DecodedRecord expected;
    RM_CHECK(DecodeRecord(file.substr(pos), &expected, life).ok())
        << "reader accepts a bad record";
    RM_CHECK(scanned.header.padded_length() == expected.header.padded_length());
    RM_CHECK(scanned.meta.index() == expected.meta.index());
    fuzz::CheckReencodes(expected, file.substr(pos), life);
    std::string content;
    RM_CHECK(
        reader.ReadAt(scanned.content_offset(), scanned.header.content_length(), &content).ok());
    RM_CHECK(content == expected.content) << "ReadAt differs from the record's content";
    pos += scanned.header.padded_length();
    RM_CHECK(reader.valid_end() == pos);
  }
  DecodedRecord next;
  RM_CHECK(!DecodeRecord(file.substr(pos), &next, life).ok())
      << "reader stopped at a good record";
  const SegmentEndInfo expected = ReferenceEnd(file, pos, header);
  const SegmentEndInfo& end = reader.end();
  RM_CHECK(end.kind == expected.kind)
      << SegmentEndName(end.kind) << " vs " << SegmentEndName(expected.kind) << " at " << pos;
  RM_CHECK(end.offset == pos) << end.offset << " vs " << pos;
  if (end.kind == SegmentEnd::kCorrupt)
    RM_CHECK(end.next_valid_offset == expected.next_valid_offset);
}

}  // namespace
}  // namespace ringmail::spool

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::spool;  // NOLINT: the target's whole vocabulary
  if (size == 0) return 0;
  const BuiltFile built =
      BuildFile(std::string_view(reinterpret_cast<const char*>(data), size - 1), data[size - 1]);
  const std::string& file = built.bytes;
  WriteFile(file, built.hole_at, built.hole_bytes);
  SegmentReader reader;
  const SegmentOpenStatus open = reader.Open("/proc/self/fd/" + std::to_string(FileDescriptor()));
  RM_CHECK(open.result != SegmentOpenResult::kIoError) << open.detail;
  SegmentHeader header;
  const SegmentHeaderError header_error = DecodeSegmentHeader(file, &header);
  if (open.result != SegmentOpenResult::kOk) {
    RM_CHECK(header_error != SegmentHeaderError::kNone) << "a good header refused";
    if (open.result == SegmentOpenResult::kEmpty) {
      RM_CHECK(NextNonZero(file, 0) == std::string_view::npos) << "data called empty";
    }
    return 0;
  }
  RM_CHECK(header_error == SegmentHeaderError::kNone && reader.header() == header);
  RM_CHECK(reader.file_size() == file.size());
  ReadRecords(reader, file, header);
  return 0;
}
