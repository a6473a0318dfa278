// delivery/body_reader.cc — segment files opened for reading, and chunked ring reads.
#include "delivery/body_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/string_view.h"

namespace ringmail::delivery {
namespace {

absl::Status OpenError(int err, const std::string& path) {
  std::string message = absl::StrCat("cannot open spool segment ", path, ": ", strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::UnavailableError(message);  // EMFILE, ENFILE, EIO...: later
  }
}

}  // namespace

// ---- BodyFiles

BodyFiles::BodyFiles(core::Loop* loop, size_t files_max)
    : loop_(loop), files_max_(files_max < 1 ? 1 : files_max) {}

BodyFiles::~BodyFiles() {
  for (File& f : lru_) {
    RM_CHECK(f.pins == 0) << "segment file " << f.path << " still pinned at teardown";
    if (f.fd >= 0) ::close(f.fd);
  }
}

int BodyFiles::fd(const File* file) { return file->fd; }

absl::StatusOr<BodyFiles::File*> BodyFiles::Acquire(const std::string& path, uint64_t now_ms) {
  auto found = by_path_.find(path);
  if (found != by_path_.end()) {
    lru_.splice(lru_.begin(), lru_, found->second);
    File& f = *found->second;
    ++f.pins;
    f.last_used_ms = now_ms;
    return &f;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return OpenError(errno, path);
  ++opens_;
  lru_.push_front(File{path, fd, 1, now_ms});
  by_path_.emplace(path, lru_.begin());
  EvictBeyondLimit();
  return &lru_.front();
}

void BodyFiles::Pin(File* file) {
  RM_CHECK(file->pins > 0) << "segment file " << file->path << " pinned while not acquired";
  ++file->pins;
}

void BodyFiles::Release(File* file, uint64_t now_ms) {
  RM_CHECK(file->pins > 0) << "segment file " << file->path << " released twice";
  --file->pins;
  file->last_used_ms = now_ms;
  if (file->forgotten && file->pins == 0) {
    auto it = std::find_if(lru_.begin(), lru_.end(), [file](const File& f) { return &f == file; });
    RM_CHECK(it != lru_.end()) << "segment file " << file->path << " not in the cache";
    ++forgotten_;
    Close(it);
    return;
  }
  EvictBeyondLimit();
}

void BodyFiles::Forget(const std::string& path) {
  auto found = by_path_.find(path);
  if (found == by_path_.end()) return;
  auto it = found->second;
  if (it->pins == 0) {
    ++forgotten_;
    Close(it);
    return;
  }
  // A read in flight keeps its descriptor; nothing new joins it.
  it->forgotten = true;
  by_path_.erase(found);
}

void BodyFiles::EvictBeyondLimit() {
  // From the least recently used end; pinned files stay (the bound is exceeded only while
  // more than files_max files are being read at once).
  auto it = lru_.end();
  while (lru_.size() > files_max_ && it != lru_.begin()) {
    --it;
    if (it->pins > 0) continue;
    auto victim = it;
    ++it;
    Close(victim);
  }
}

void BodyFiles::Close(std::list<File>::iterator it) {
  RM_DCHECK(it->pins == 0);
  if (loop_ != nullptr && loop_->IsCurrent()) {
    // The last reference to an unlinked segment frees its blocks: not on this thread.
    io_uring_prep_close(loop_->ring().PrepareUntracked(), it->fd);
  } else {
    ::close(it->fd);
  }
  if (!it->forgotten) by_path_.erase(it->path);  // a forgotten file's path may be open anew
  lru_.erase(it);
}

void BodyFiles::CloseIdle(uint64_t now_ms, uint64_t idle_ms) {
  for (auto it = lru_.begin(); it != lru_.end();) {
    auto next = std::next(it);
    if (it->pins == 0 && now_ms >= it->last_used_ms + idle_ms) Close(it);
    it = next;
  }
}

void BodyFiles::CloseAllUnpinned() { CloseIdle(UINT64_MAX, 0); }

// ---- BodyReader

BodyReader::BodyReader() { read_op_.Bind<&BodyReader::ReadDone>(this, "delivery body read"); }

BodyReader::~BodyReader() {
  RM_CHECK(read_op_.idle()) << "body reader freed with a read in flight";
}

void BodyReader::Begin(int fd, uint64_t offset, uint64_t length, BodyEncoding encoding) {
  RM_CHECK(read_op_.idle()) << "body started while a read is in flight";
  if (!buffer_) buffer_ = std::make_unique<char[]>(kBodyChunkBytes);
  fd_ = fd;
  offset_ = offset;
  length_ = length;
  done_ = 0;
  encoding_ = encoding;
  stuffer_.Reset();
  encoded_.clear();
  active_ = true;
  failed_ = false;
  finish_emitted_ = false;
  cancelled_ = false;
  if (length_ == 0) TakeEncoded(nullptr);  // an empty content: only the terminator
}

void BodyReader::ReadNext(core::Loop& loop) {
  if (!active_ || failed_ || cancelled_ || !read_op_.idle() || done_ == length_) return;
  uint64_t want = std::min<uint64_t>(kBodyChunkBytes, length_ - done_);
  io_uring_sqe* sqe = loop.Prepare(read_op_);
  io_uring_prep_read(sqe, fd_, buffer_.get(), static_cast<unsigned>(want), offset_ + done_);
}

void BodyReader::ReadDone(core::Operation&, core::IoResult result) {
  if (cancelled_) {
    handler_(owner_);
    return;
  }
  if (!result.ok() && (result.error() == EINTR || result.error() == EAGAIN)) {
    handler_(owner_);  // the owner asks again (ReadNext)
    return;
  }
  if (!result.ok() || result.value() == 0) {
    failed_ = true;  // an I/O error, or the file ends before the record says it does
    handler_(owner_);
    return;
  }
  std::string_view chunk(buffer_.get(), result.value());
  done_ += result.value();
  if (encoding_ == BodyEncoding::kDotStuffed) {
    stuffer_.Encode(chunk, &encoded_);
  } else {
    encoded_.append(chunk);
  }
  if (done_ == length_) TakeEncoded(nullptr);  // appends the terminator once
  handler_(owner_);
}

void BodyReader::TakeEncoded(std::string* out) {
  if (active_ && !failed_ && done_ == length_ && !finish_emitted_) {
    if (encoding_ == BodyEncoding::kDotStuffed) stuffer_.Finish(&encoded_);
    finish_emitted_ = true;
  }
  if (out == nullptr) return;
  if (out->empty()) {
    out->swap(encoded_);
  } else {
    out->append(encoded_);
  }
  encoded_.clear();
}

void BodyReader::Cancel(core::Loop& loop) {
  cancelled_ = true;
  loop.ring().Cancel(read_op_);
}

void BodyReader::Reset() {
  active_ = false;
  failed_ = false;
  encoded_.clear();
  fd_ = -1;
}

}  // namespace ringmail::delivery
