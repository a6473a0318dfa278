#include "spool/segment_writer.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/string_view.h"
#include "core/log.h"

namespace ringmail::spool {
namespace {

// Interrupted, or cancelled by the loop's stop (which cancels every op once): try again.
constexpr int kRetriesMax = 8;
bool Retryable(int error) { return error == EINTR || error == EAGAIN || error == ECANCELED; }

uint64_t WallClockMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

}  // namespace

absl::Status SpoolIoError(int error, std::string_view what) {
  std::string message = absl::StrCat(ToAbsl(what), ": ", std::strerror(error));
  switch (error) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    default:
      return absl::UnavailableError(message);
  }
}

void ReserveSqes(core::Loop& loop, unsigned count) {
  io_uring* ring = loop.ring().raw();
  RM_CHECK(count <= ring->sq.ring_entries) << "chain of " << count << " SQEs cannot fit";
  // Bounded: each submit consumes the queued SQEs unless the kernel is busy flushing its CQ.
  for (int attempt = 0; io_uring_sq_space_left(ring) < count; ++attempt) {
    int rc = loop.ring().Submit();
    RM_CHECK(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
        << "io_uring_submit failed: " << std::strerror(-rc);
    RM_CHECK(attempt < 1000) << "the SQ stays full";
  }
}

SegmentCreator::SegmentCreator(core::Loop& loop, uint32_t loop_index, int dir_fd, bool preallocate)
    : loop_(loop), loop_index_(loop_index), dir_fd_(dir_fd), preallocate_(preallocate) {
  open_op_.Bind<&SegmentCreator::OpenDone>(this, "segment openat");
  static constexpr const char* kNames[kChainOps] = {"segment fallocate", "segment header write",
                                                    "segment fsync", "spool dir fsync"};
  for (size_t i = 0; i < kChainOps; ++i) {
    chain_[i].op.Bind<&SegmentCreator::ChainDone>(this, kNames[i]);
  }
  cleanup_close_op_.Bind<&SegmentCreator::CleanUpDone>(this, "segment close (failed create)");
  cleanup_unlink_op_.Bind<&SegmentCreator::CleanUpDone>(this, "segment unlink (failed create)");
}

SegmentCreator::~SegmentCreator() {
  RM_CHECK(ops_in_flight() == 0) << "segment creator destroyed with ring ops in flight";
}

size_t SegmentCreator::ops_in_flight() const {
  size_t n = closes_in_flight_;
  if (!open_op_.idle()) ++n;
  for (const ChainOp& c : chain_) n += c.op.idle() ? 0 : 1;
  if (!cleanup_close_op_.idle()) ++n;
  if (!cleanup_unlink_op_.idle()) ++n;
  return n;
}

void SegmentCreator::Create(uint64_t seq, uint64_t bytes) {
  RM_CHECK(stage_ == Stage::kIdle) << "two segment creations at once";
  RM_CHECK(done_ != nullptr);
  RM_CHECK(bytes >= kSegmentHeaderBytes && bytes <= kMaxSegmentBytes) << bytes;
  file_ = SegmentFile{};
  file_.id = SegmentId{loop_index_, seq};
  file_.capacity = bytes;
  name_ = SegmentFileName(seq);
  header_ = EncodeSegmentHeader(SegmentHeader{loop_index_, seq, WallClockMs(), bytes});
  error_ = 0;
  retries_ = 0;
  stage_ = Stage::kOpen;
  SubmitOpen();
}

void SegmentCreator::SubmitOpen() {
  io_uring_sqe* sqe = loop_.Prepare(open_op_);
  io_uring_prep_openat(sqe, dir_fd_, name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

void SegmentCreator::OpenDone(core::Operation&, core::IoResult result) {
  RM_DCHECK(stage_ == Stage::kOpen);
  if (!result.ok() && Retryable(result.error()) && ++retries_ <= kRetriesMax) {
    SubmitOpen();
    return;
  }
  if (!result.ok()) {
    // Nothing was created (EEXIST: the name belongs to someone else; never unlink it).
    Finish(result.error());
    return;
  }
  file_.fd = result.res;
  SubmitSetUp();
}

void SegmentCreator::SubmitSetUp() {
  stage_ = Stage::kSetUp;
  for (ChainOp& c : chain_) {
    c.res = 0;
    c.used = false;
  }
  const size_t first = preallocate_ ? kFallocate : kHeader;
  ReserveSqes(loop_, static_cast<unsigned>(kChainOps - first));
  chain_pending_ = 0;
  for (size_t i = first; i < kChainOps; ++i) {
    ChainOp& c = chain_[i];
    io_uring_sqe* sqe = loop_.Prepare(c.op);
    switch (i) {
      case kFallocate:
        io_uring_prep_fallocate(sqe, file_.fd, 0, 0, static_cast<off_t>(file_.capacity));
        break;
      case kHeader:
        io_uring_prep_write(sqe, file_.fd, header_.data(), static_cast<unsigned>(header_.size()),
                            0);
        break;
      case kFileSync:
        io_uring_prep_fsync(sqe, file_.fd, 0);
        break;
      case kDirSync:
        io_uring_prep_fsync(sqe, dir_fd_, 0);
        break;
    }
    if (i + 1 < kChainOps) sqe->flags |= IOSQE_IO_LINK;
    c.used = true;
    ++chain_pending_;
  }
}

void SegmentCreator::ChainDone(core::Operation& op, core::IoResult result) {
  RM_DCHECK(stage_ == Stage::kSetUp);
  for (ChainOp& c : chain_) {
    if (&c.op == &op) c.res = result.res;
  }
  RM_DCHECK(chain_pending_ > 0);
  if (--chain_pending_ == 0) SetUpFinished();
}

void SegmentCreator::SetUpFinished() {
  if (chain_[kFallocate].used && chain_[kFallocate].res == -EOPNOTSUPP) {
    // The filesystem cannot preallocate: the same chain without it, now and from now on.
    preallocate_ = false;
    SubmitSetUp();
    return;
  }
  for (const ChainOp& c : chain_) {
    if (!c.used || c.res >= 0) continue;
    // The first failure is the cause; the ops linked after it only report -ECANCELED. A
    // first failure that is itself ECANCELED came from outside (the loop's stop): again.
    if (Retryable(-c.res) && ++retries_ <= kRetriesMax) {
      SubmitSetUp();
    } else {
      CleanUp(-c.res);
    }
    return;
  }
  if (static_cast<size_t>(chain_[kHeader].res) != header_.size()) {
    CleanUp(EIO);  // a short write of 64 bytes: treat as the device failing
    return;
  }
  Finish(0);
}

void SegmentCreator::CleanUp(int error) {
  error_ = error;
  stage_ = Stage::kCleanUp;
  // Not linked: the unlink must happen even if the close reports an error.
  io_uring_sqe* sqe = loop_.Prepare(cleanup_close_op_);
  io_uring_prep_close(sqe, file_.fd);
  file_.fd = -1;
  sqe = loop_.Prepare(cleanup_unlink_op_);
  io_uring_prep_unlinkat(sqe, dir_fd_, name_.c_str(), 0);
  cleanup_pending_ = 2;
}

void SegmentCreator::CleanUpDone(core::Operation& op, core::IoResult result) {
  RM_DCHECK(stage_ == Stage::kCleanUp);
  if (!result.ok() && &op == &cleanup_unlink_op_ && result.error() != ENOENT) {
    core::LogWarning("spool: cannot remove failed segment %s: %s", file_.id.ToString(),
                     std::strerror(result.error()));
  }
  if (--cleanup_pending_ == 0) Finish(error_);
}

void SegmentCreator::Finish(int error) {
  SegmentCreateResult result;
  result.error = error;
  if (error != 0) {
    result.status =
        SpoolIoError(error, absl::StrCat("creating spool segment ", file_.id.ToString()));
  } else {
    result.file = file_;
  }
  file_ = SegmentFile{};
  stage_ = Stage::kIdle;  // before the callback: it may start the next creation
  done_(owner_, result);
}

void SegmentCreator::Close(int fd) {
  RM_CHECK(fd >= 0);
  CloseSlot* slot = nullptr;
  for (auto& s : closes_) {
    if (s->op.idle()) {
      slot = s.get();
      break;
    }
  }
  if (slot == nullptr) {
    // Rare (one per rollover or failed batch): a slot is kept for reuse.
    closes_.push_back(std::make_unique<CloseSlot>());
    slot = closes_.back().get();
    slot->op.Bind<&SegmentCreator::CloseDone>(this, "segment close");
  }
  slot->fd = fd;
  io_uring_sqe* sqe = loop_.Prepare(slot->op);
  io_uring_prep_close(sqe, fd);
  ++closes_in_flight_;
}

void SegmentCreator::CloseDone(core::Operation& op, core::IoResult result) {
  RM_DCHECK(closes_in_flight_ > 0);
  --closes_in_flight_;
  if (result.canceled()) {
    // The loop's stop caught it before it ran: close here rather than leak the fd.
    for (auto& s : closes_) {
      if (&s->op == &op) ::close(s->fd);
    }
    return;
  }
  // Every byte that matters was fsynced before: a failed close loses nothing.
  if (!result.ok() && !result.canceled()) {
    core::LogWarning("spool: closing a segment failed: %s", std::strerror(result.error()));
  }
}

}  // namespace ringmail::spool
