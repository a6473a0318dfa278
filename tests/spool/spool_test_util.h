// tests/spool/spool_test_util.h — helpers for the spool tests: a per-test temporary directory,
// message factories, and a segment file writer that uses plain write()/pwrite() (so tests build
// real spool directories without the ring-based writer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/message.h"
#include "spool/record.h"
#include "spool/segment_format.h"

namespace ringmail::spool::testing {

// mkdtemp under /tmp; removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

core::MessageId TestId(uint64_t n);

// A message with `recipients` recipients rcpt<i>@example.com, all pending, and `body`.
core::Message MakeMessage(uint64_t n, size_t recipients, std::string_view body);

// Creates <spool_dir>/<loop>/<seq>.seg with a valid header, extended with zeros to
// `file_bytes` (like the preallocated files of the real writer), and appends records.
class SegmentFileWriter {
 public:
  SegmentFileWriter(const std::string& spool_dir, SegmentId id,
                    uint64_t file_bytes = 256 * 1024);
  ~SegmentFileWriter();
  SegmentFileWriter(const SegmentFileWriter&) = delete;
  SegmentFileWriter& operator=(const SegmentFileWriter&) = delete;

  // Each returns the offset the record was written at.
  uint64_t Append(std::string_view bytes);
  uint64_t AppendMessage(const core::Message& message);
  uint64_t AppendRecipient(const core::MessageId& id, uint32_t index, core::RecipientState state,
                           uint32_t attempts, uint64_t changed_ms, std::string reply = "");
  uint64_t AppendDone(const core::MessageId& id, uint64_t done_ms = 1000);

  const std::string& path() const { return path_; }
  uint64_t offset() const { return offset_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t offset_ = kSegmentHeaderBytes;
};

// A record built byte by byte with correct CRCs around whatever fields the test chooses, so
// that decoding gets past the checksums to the check under test.
std::string CraftRecord(uint8_t type, std::string_view meta, std::string_view content,
                        uint8_t version = kRecordVersion, uint16_t flags = 0,
                        uint64_t length_override = 0);

std::string ReadFileBytes(const std::string& path);
void WriteFileBytes(const std::string& path, std::string_view bytes);
void OverwriteAt(const std::string& path, uint64_t offset, std::string_view bytes);
void FlipByte(const std::string& path, uint64_t offset);
bool FileExists(const std::string& path);
void MakeDirs(const std::string& path);

// The extents of a file as FIEMAP reports them (after syncing it): how many there are and how
// many are still "unwritten" (allocated by fallocate, never written). Looks at the first 512.
struct FileExtents {
  size_t extents = 0;
  size_t unwritten = 0;
};
// nullopt where the filesystem cannot tell: the file does not open, FIEMAP fails, or it maps
// no extent at all (tests then skip or record "unsupported" rather than pass vacuously).
std::optional<FileExtents> CountFileExtents(const std::string& path);

}  // namespace ringmail::spool::testing
