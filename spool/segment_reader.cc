#include "spool/segment_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"

namespace ringmail::spool {
namespace {

// Reads up to n bytes at off, retrying on EINTR and short reads. Returns the bytes read (less
// than n only at end of file) or -errno.
int64_t PreadFull(int fd, char* buf, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, buf + done, n - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<int64_t>(done);
}

bool AllZero(std::string_view s) { return s.find_first_not_of('\0') == std::string_view::npos; }

// Cheap test of a would-be record header at p (24 bytes available): the fixed fields must be
// plausible before the header CRC is worth computing.
bool PlausibleHeader(const char* p, uint8_t version) {
  uint8_t type = static_cast<uint8_t>(p[8]);
  return type >= 1 && type <= 3 && static_cast<uint8_t>(p[9]) == version && p[10] == 0 &&
         p[11] == 0;
}

}  // namespace

std::string_view SegmentEndName(SegmentEnd end) {
  switch (end) {
    case SegmentEnd::kClean: return "clean end";
    case SegmentEnd::kTornTail: return "torn tail";
    case SegmentEnd::kCorrupt: return "corrupt";
    case SegmentEnd::kIoError: return "I/O error";
  }
  return "unknown";
}

SegmentReader::~SegmentReader() {
  if (fd_ >= 0) ::close(fd_);
}

SegmentOpenStatus SegmentReader::Open(const std::string& path) {
  RM_CHECK(fd_ < 0) << "SegmentReader opened twice";
  path_ = path;
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    return {SegmentOpenResult::kIoError, {}, absl::StrCat("open: ", std::strerror(errno))};
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    return {SegmentOpenResult::kIoError, {}, absl::StrCat("fstat: ", std::strerror(errno))};
  }
  if (!S_ISREG(st.st_mode)) return {SegmentOpenResult::kBadHeader, {}, "not a regular file"};
  file_size_ = static_cast<uint64_t>(st.st_size);
  std::string_view head;
  ReadResult r = View(0, std::min<uint64_t>(kSegmentHeaderBytes, file_size_), &head);
  if (r == ReadResult::kIoError) return {SegmentOpenResult::kIoError, {}, io_error_};
  SegmentHeaderError error = DecodeSegmentHeader(head, &header_);
  if (error == SegmentHeaderError::kNone) {
    life_ = LifeOf(header_);
    return {};
  }
  if (error == SegmentHeaderError::kZero || (error == SegmentHeaderError::kTruncated &&
                                             AllZero(head))) {
    // A segment whose header never reached the disk is empty, unless data follows: then its
    // records exist but cannot be trusted without the header.
    uint64_t first_nonzero = 0, next_valid = 0;
    if (!ScanRest(0, &first_nonzero, &next_valid, false)) {
      return {SegmentOpenResult::kIoError, {}, end_.detail};
    }
    if (first_nonzero == UINT64_MAX) return {SegmentOpenResult::kEmpty, error, ""};
    return {SegmentOpenResult::kBadHeader, error,
            absl::StrCat("zero header but data at offset ", first_nonzero)};
  }
  return {SegmentOpenResult::kBadHeader, error, std::string(SegmentHeaderErrorName(error))};
}

SegmentReader::ReadResult SegmentReader::View(uint64_t offset, size_t length,
                                              std::string_view* out) {
  if (offset > file_size_ || length > file_size_ - offset) return ReadResult::kPastEnd;
  if (offset >= window_start_ && offset + length <= window_start_ + window_length_) {
    *out = std::string_view(window_).substr(offset - window_start_, length);
    return ReadResult::kOk;
  }
  size_t want = static_cast<size_t>(
      std::min<uint64_t>(std::max(length, kWindowBytes), file_size_ - offset));
  if (window_.size() < want) window_.resize(want);
  if (window_.size() > 4 * kWindowBytes && want <= kWindowBytes) {
    // A large metadata section grew the window; give the memory back for ordinary reads.
    window_.resize(kWindowBytes);
    window_.shrink_to_fit();
  }
  window_length_ = 0;
  int64_t got = PreadFull(fd_, window_.data(), want, offset);
  if (got < 0) {
    io_error_ = absl::StrCat("read at ", offset, ": ", std::strerror(static_cast<int>(-got)));
    return ReadResult::kIoError;
  }
  if (static_cast<size_t>(got) < want) {
    io_error_ = absl::StrCat("file shrank while reading at ", offset);
    return ReadResult::kIoError;
  }
  window_start_ = offset;
  window_length_ = want;
  *out = std::string_view(window_).substr(0, length);
  return ReadResult::kOk;
}

bool SegmentReader::Next(ScannedRecord* out) {
  if (done_) return false;
  RM_CHECK(fd_ >= 0) << "Next() before a successful Open()";
  RecordStatus status;
  bool crc_valid = false;
  switch (ReadRecordAt(pos_, out, &status, &crc_valid)) {
    case RecordResult::kValid:
      pos_ += out->header.padded_length();
      return true;
    case RecordResult::kInvalid:
      Classify(pos_, status, crc_valid);
      return false;
    case RecordResult::kIoError:
      FinishIoError(pos_, io_error_);
      return false;
  }
  return false;
}

SegmentReader::RecordResult SegmentReader::ReadRecordAt(uint64_t pos, ScannedRecord* out,
                                                        RecordStatus* status,
                                                        bool* crc_valid) {
  *crc_valid = false;
  std::string_view head;
  ReadResult r = View(pos, kRecordHeaderBytes, &head);
  if (r == ReadResult::kIoError) return RecordResult::kIoError;
  if (r == ReadResult::kPastEnd) {
    *status = {RecordError::kTruncated, "header past end of file"};
    return RecordResult::kInvalid;
  }
  out->offset = pos;
  *status = DecodeRecordHeader(head, &out->header, life_);
  if (!status->ok()) return RecordResult::kInvalid;
  const RecordHeader& h = out->header;
  if (h.padded_length() > file_size_ - pos) {
    *status = {RecordError::kTruncated, "record past end of file"};
    return RecordResult::kInvalid;
  }
  RecordResult crc = CheckCrc(pos, h, status);
  if (crc != RecordResult::kValid) return crc;
  *crc_valid = true;
  *status = DecodeMeta(h, meta_, &out->meta);
  return status->ok() ? RecordResult::kValid : RecordResult::kInvalid;
}

// Verifies the record CRC and padding, leaving the metadata in meta_.
SegmentReader::RecordResult SegmentReader::CheckCrc(uint64_t pos, const RecordHeader& h,
                                                    RecordStatus* status) {
  std::string_view bytes;
  if (View(pos, kRecordHeaderBytes, &bytes) != ReadResult::kOk) return RecordResult::kIoError;
  uint32_t crc = RecordCrcOfHeader(bytes, life_);
  if (View(pos + kRecordHeaderBytes, h.meta_length, &bytes) != ReadResult::kOk) {
    return RecordResult::kIoError;
  }
  meta_.assign(bytes);  // copied: streaming the content below moves the window
  crc = Crc32cExtend(crc, meta_);
  uint64_t off = pos + kRecordHeaderBytes + h.meta_length;
  uint64_t rest = h.padded_length() - kRecordHeaderBytes - h.meta_length;
  while (rest > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(rest, kWindowBytes));
    if (View(off, n, &bytes) != ReadResult::kOk) return RecordResult::kIoError;
    crc = Crc32cExtend(crc, bytes);
    off += n;
    rest -= n;
  }
  if (crc != h.crc) {
    *status = {RecordError::kBadCrc, ""};
    return RecordResult::kInvalid;
  }
  if (View(pos + h.length, h.padded_length() - h.length, &bytes) != ReadResult::kOk) {
    return RecordResult::kIoError;
  }
  if (!AllZero(bytes)) {
    *status = {RecordError::kBadMeta, "non-zero padding"};
    return RecordResult::kInvalid;
  }
  return RecordResult::kValid;
}

void SegmentReader::Classify(uint64_t pos, RecordStatus cause, bool crc_valid) {
  done_ = true;
  end_.offset = pos;
  end_.cause = cause;
  if (pos == file_size_) {
    end_.kind = SegmentEnd::kClean;
    end_.cause = {};
    return;
  }
  uint64_t first_nonzero = 0, next_valid = 0;
  if (!ScanRest(pos, &first_nonzero, &next_valid, true)) return;
  const bool recycled = (header_.flags & kSegmentFlagRecycled) != 0;
  if (crc_valid) {
    end_.kind = SegmentEnd::kCorrupt;
    end_.next_valid_offset = next_valid;
    end_.detail = absl::StrCat("CRC-valid record does not parse (", cause.detail, ")");
  } else if (next_valid != 0) {
    end_.kind = SegmentEnd::kCorrupt;
    end_.next_valid_offset = next_valid;
    end_.detail = absl::StrCat("valid record at offset ", next_valid, " after the damage");
  } else if (first_nonzero != UINT64_MAX && recycled && !OfThisLife(pos, cause)) {
    // Bytes no record of this life starts with: an earlier life's, expected in a recycled
    // file (a write of this life torn inside its first 24 bytes looks the same, and was
    // never acknowledged either).
    end_.kind = SegmentEnd::kClean;
    end_.cause = {};
    end_.detail = absl::StrCat("bytes of an earlier life from offset ", first_nonzero);
  } else if (first_nonzero != UINT64_MAX) {
    end_.kind = SegmentEnd::kTornTail;
    if (cause.error == RecordError::kZeroHeader) {
      end_.detail = absl::StrCat("zero header but data at offset ", first_nonzero);
    }
  } else {
    end_.kind = SegmentEnd::kClean;
    end_.cause = {};
  }
}

// Whether the record header at `pos` validated under this segment's life, so the failure is
// in a record of this life (a torn or damaged write) rather than in bytes of an earlier one.
bool SegmentReader::OfThisLife(uint64_t pos, RecordStatus cause) const {
  switch (cause.error) {
    case RecordError::kZeroHeader:
    case RecordError::kBadHeaderCrc:
      return false;
    case RecordError::kTruncated:
      return pos + kRecordHeaderBytes <= file_size_;  // the header itself was read
    default:
      return true;
  }
}

uint64_t SegmentReader::NextDataOffset(uint64_t from) {
  if (!seek_data_works_) return from;
  off_t data = ::lseek(fd_, static_cast<off_t>(from), SEEK_DATA);
  if (data >= 0) return std::max<uint64_t>(from, static_cast<uint64_t>(data) & ~uint64_t{7});
  if (errno == ENXIO) return file_size_;  // nothing but holes (zeros) up to the end
  seek_data_works_ = false;               // not supported here: read everything
  return from;
}

bool SegmentReader::ScanRest(uint64_t from, uint64_t* first_nonzero, uint64_t* next_valid,
                             bool want_valid) {
  *first_nonzero = UINT64_MAX;
  *next_valid = 0;
  RM_DCHECK(from % kRecordAlignBytes == 0);
  uint64_t q = from;
  while (q < file_size_) {
    q = NextDataOffset(q);
    if (q >= file_size_) break;
    size_t n = static_cast<size_t>(std::min<uint64_t>(kWindowBytes, file_size_ - q));
    std::string_view chunk;
    if (View(q, n, &chunk) != ReadResult::kOk) {
      FinishIoError(q, io_error_);
      return false;
    }
    uint64_t candidate = 0;
    for (size_t i = 0; i < chunk.size(); i += kRecordAlignBytes) {
      std::string_view bytes = chunk.substr(i, kRecordAlignBytes);
      if (AllZero(bytes)) continue;
      if (*first_nonzero == UINT64_MAX) *first_nonzero = q + i + bytes.find_first_not_of('\0');
      if (!want_valid) return true;
      uint64_t at = q + i;
      if (at == from || at + kRecordHeaderBytes > file_size_) continue;
      // A header that crosses the end of the chunk cannot be pre-filtered here; check it fully.
      if (i + kRecordHeaderBytes <= chunk.size() &&
          !PlausibleHeader(chunk.data() + i, life_.version)) {
        continue;
      }
      candidate = at;
      break;
    }
    if (candidate == 0) {
      q += n;
      continue;
    }
    // The window moves while the candidate is checked; resume after it either way.
    ScannedRecord probe;
    RecordStatus status;
    bool crc_valid = false;
    RecordResult r = ReadRecordAt(candidate, &probe, &status, &crc_valid);
    if (r == RecordResult::kIoError) {
      FinishIoError(candidate, io_error_);
      return false;
    }
    if (r == RecordResult::kValid) {
      *next_valid = candidate;
      return true;
    }
    q = candidate + kRecordAlignBytes;
  }
  return true;
}

void SegmentReader::FinishIoError(uint64_t pos, const std::string& what) {
  done_ = true;
  end_.kind = SegmentEnd::kIoError;
  end_.offset = pos_;
  end_.detail = absl::StrCat(what, " (at offset ", pos, ")");
}

absl::Status SegmentReader::ReadAt(uint64_t offset, uint64_t length, std::string* out) {
  RM_CHECK(fd_ >= 0) << "ReadAt() before Open()";
  if (offset > file_size_ || length > file_size_ - offset) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": ", length, " bytes at ", offset,
                                              " past the end of the file"));
  }
  out->resize(length);
  int64_t got = PreadFull(fd_, out->data(), length, offset);
  if (got < 0) {
    return absl::UnavailableError(
        absl::StrCat(path_, ": read: ", std::strerror(static_cast<int>(-got))));
  }
  if (static_cast<uint64_t>(got) != length) {
    return absl::DataLossError(absl::StrCat(path_, ": file shrank while reading"));
  }
  return absl::OkStatus();
}

}  // namespace ringmail::spool
