#include "tools/ringload/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace ringmail::ringload {

void DumpWriter::Write(std::string path, std::string content) {
  if (queued_.size() >= kDumpQueueMax) {
    Fail(absl::StrCat(path, ": dump queue full, file not written"));
    return;
  }
  auto job = std::make_unique<Job>();
  job->writer = this;
  job->path = std::move(path);
  job->content = std::move(content);
  job->op.Bind<&Job::Step>(job.get(), "dump");
  if (in_flight_ >= kInFlightMax) {
    queued_.push_back(std::move(job));
    return;
  }
  Start(std::move(job));
}

void DumpWriter::Start(std::unique_ptr<Job> job) {
  ++in_flight_;
  io_uring_sqe* sqe = loop_.Prepare(job->op);
  // Written under a temporary name and renamed when complete, so whoever watches the
  // directory (a test waiting for N files) never reads a file still being written.
  job->part_path = job->path + ".part";
  io_uring_prep_openat(sqe, AT_FDCWD, job->part_path.c_str(),
                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  active_.push_back(std::move(job));
}

void DumpWriter::Job::Step(core::Operation&, core::IoResult r) {
  switch (stage) {
    case Stage::kOpen:
      if (!r.ok()) return writer->Finish(this, r.error());
      fd = r.res;
      stage = Stage::kWrite;
      break;
    case Stage::kWrite:
      if (!r.ok() || r.value() == 0) {
        error = r.ok() ? EIO : r.error();  // close anyway, then report the write error
        stage = Stage::kClose;
        break;
      }
      done += r.value();
      if (done >= content.size()) stage = Stage::kClose;
      break;
    case Stage::kClose:
      if (error == 0 && !r.ok()) error = r.error();
      if (error != 0) return writer->Finish(this, error);  // the .part file stays, as evidence
      stage = Stage::kRename;
      break;
    case Stage::kRename:
      return writer->Finish(this, r.ok() ? 0 : r.error());
  }
  io_uring_sqe* sqe = writer->loop_.Prepare(op);
  switch (stage) {
    case Stage::kWrite:
      io_uring_prep_write(sqe, fd, content.data() + done,
                          static_cast<unsigned>(std::min<size_t>(content.size() - done, 1 << 30)),
                          done);
      break;
    case Stage::kClose:
      io_uring_prep_close(sqe, fd);
      break;
    default:
      io_uring_prep_renameat(sqe, AT_FDCWD, part_path.c_str(), AT_FDCWD, path.c_str(), 0);
      break;
  }
}

void DumpWriter::Finish(Job* job, int error) {
  if (error != 0) {
    Fail(absl::StrCat(job->path, ": ", std::strerror(error)));
  } else {
    ++written_;
  }
  --in_flight_;
  for (auto it = active_.begin(); it != active_.end(); ++it) {
    if (it->get() == job) {
      // The job's op is idle now (its final completion is running): safe to free after the
      // handler returns, so hand it to the loop's deferred list.
      std::unique_ptr<Job> done = std::move(*it);
      active_.erase(it);
      loop_.Defer([done = std::move(done)]() mutable { done.reset(); });
      break;
    }
  }
  if (!queued_.empty() && in_flight_ < kInFlightMax) {
    std::unique_ptr<Job> next = std::move(queued_.front());
    queued_.pop_front();
    Start(std::move(next));
  }
}

void DumpWriter::Fail(const std::string& what) {
  if (failures_++ == 0) first_error_ = what;
}

void RecordLog::Flush() {
  // writing_ is non-empty here only after a cancelled write: DrainBlocking owns it then.
  if (!op_.idle() || pending_.empty() || !writing_.empty()) return;
  writing_.swap(pending_);
  pending_.clear();
  written_ = 0;
  io_uring_sqe* sqe = loop_.Prepare(op_);
  // Offset -1: the file position, which O_APPEND puts at the end for every write.
  io_uring_prep_write(sqe, fd_, writing_.data(), static_cast<unsigned>(writing_.size()),
                      static_cast<uint64_t>(-1));
}

void RecordLog::WriteDone(core::Operation&, core::IoResult r) {
  if (!r.ok() && r.error() == ECANCELED) return;  // the loop is stopping: DrainBlocking
  if (!r.ok() || r.value() == 0) {
    failures_ += static_cast<uint64_t>(std::count(writing_.begin() + static_cast<ptrdiff_t>(
                                                      written_), writing_.end(), '\n'));
    writing_.clear();
  } else {
    written_ += r.value();
    if (written_ < writing_.size()) {
      // A short write of a regular file (disk full, signal): finish the batch first so
      // lines stay whole.
      io_uring_sqe* sqe = loop_.Prepare(op_);
      io_uring_prep_write(sqe, fd_, writing_.data() + written_,
                          static_cast<unsigned>(writing_.size() - written_),
                          static_cast<uint64_t>(-1));
      return;
    }
    writing_.clear();
  }
  Flush();
}

uint64_t RecordLog::DrainBlocking() {
  RM_CHECK(op_.idle()) << "DrainBlocking with a ring write in flight";
  uint64_t lost = 0;
  for (std::string* text : {&writing_, &pending_}) {
    size_t done = text == &writing_ ? written_ : 0;
    while (done < text->size()) {
      ssize_t n = ::write(fd_, text->data() + done, text->size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        lost += static_cast<uint64_t>(std::count(text->begin() + static_cast<ptrdiff_t>(done),
                                                 text->end(), '\n'));
        break;
      }
      done += static_cast<size_t>(n);
    }
    text->clear();
  }
  written_ = 0;
  failures_ += lost;
  return lost;
}

}  // namespace ringmail::ringload
