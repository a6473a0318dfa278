#include "spool/segment_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
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

// Zeros for the segment fill: in .bss and never written, so reading it (the kernel copies from
// it) maps the shared zero page and costs no memory. Every zero WRITE points here.
//
// Why 64 KiB writes and not one big WRITEV: the length of a buffered write decides the size of
// the page-cache folios it creates (Linux 6.18 ext4, large folios), and those folios stay for
// the segment's life. Each later append of a record into a folio walks every 4 KiB block of it
// (write_begin, commit_write, and the writeback that builds the sync's bio), so over 1 MiB
// folios (what a 1 MiB write made) a small RWF_DSYNC append cost ~24 us of CPU and ~80 us of
// latency, over 64 KiB folios ~18 and ~68 (notes in bench/RESULTS.md, session 8).
constexpr size_t kZeroWriteBytes = 64u << 10;
alignas(4096) char zero_block[kZeroWriteBytes];

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

SegmentCreator::SegmentCreator(core::Loop& loop, uint32_t loop_index, int dir_fd, SegmentFill fill)
    : loop_(loop),
      loop_index_(loop_index),
      dir_fd_(dir_fd),
      fill_(fill),
      preallocate_(fill != SegmentFill::kNone),
      zero_fill_(fill == SegmentFill::kZeros || fill == SegmentFill::kAuto) {
  open_op_.Bind<&SegmentCreator::OpenDone>(this, "segment openat");
  for (ChainOp& c : chain_) c.op.Bind<&SegmentCreator::ChainDone>(this, "segment set-up");
  cleanup_close_op_.Bind<&SegmentCreator::CleanUpDone>(this, "segment close (failed create)");
  cleanup_unlink_op_.Bind<&SegmentCreator::CleanUpDone>(this, "segment unlink (failed create)");
}

SegmentCreator::~SegmentCreator() {
  RM_CHECK(ops_in_flight() == 0) << "segment creator destroyed with ring ops in flight";
}

size_t SegmentCreator::ops_in_flight() const {
  size_t n = closes_in_flight_;
  if (!open_op_.idle()) ++n;
  for (const ChainOp& c : chain_) n += c.op.idle() ? 0 : 1;  // idle when unused
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
  header_ = EncodeSegmentHeader(
      SegmentHeader{loop_index_, seq, WallClockMs(), bytes, kSegmentFormatVersion, 0});
  recycling_ = false;
  recycle_old_present_ = false;
  error_ = 0;
  retries_ = 0;
  stage_ = Stage::kOpen;
  SubmitOpen();
}

void SegmentCreator::Recycle(SegmentId old, uint64_t seq, uint64_t bytes) {
  RM_CHECK(stage_ == Stage::kIdle) << "two segment creations at once";
  RM_CHECK(done_ != nullptr);
  RM_CHECK(old.loop == loop_index_ && old.seq < seq) << old.ToString() << " as " << seq;
  RM_CHECK(bytes >= kMinSegmentBytes && bytes <= kMaxSegmentBytes) << bytes;
  file_ = SegmentFile{};
  file_.id = SegmentId{loop_index_, seq};
  file_.capacity = bytes;
  name_ = SegmentFileName(seq);
  old_name_ = SegmentFileName(old.seq);
  recycle_name_ = RecycleFileName(seq);
  header_ = EncodeSegmentHeader(SegmentHeader{loop_index_, seq, WallClockMs(), bytes,
                                              kSegmentFormatVersion, kSegmentFlagRecycled});
  recycling_ = true;
  recycle_old_ = old;
  recycle_old_present_ = true;
  error_ = 0;
  retries_ = 0;
  stage_ = Stage::kOpen;
  SubmitOpen();
}

void SegmentCreator::SubmitOpen() {
  io_uring_sqe* sqe = loop_.Prepare(open_op_);
  if (recycling_) {
    io_uring_prep_openat(sqe, dir_fd_, old_name_.c_str(), O_WRONLY | O_CLOEXEC, 0);
    return;
  }
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
  if (!recycling_) {
    SubmitSetUp();
    return;
  }
  struct stat st {};
  if (::fstat(file_.fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) != file_.capacity) {
    // Not a file of the configured size (an oversized segment, a changed configuration):
    // not for reuse. Nothing was changed.
    Close(std::exchange(file_.fd, -1));
    Finish(EINVAL);
    return;
  }
  SubmitRecycle();
}

// The recycle runs as three linked pairs, each submitted only once the one before it has
// completed in full: a failing RENAMEAT, FALLOCATE or UNLINKAT does not break an io_uring
// link (Linux 6.18 runs the linked ops after it regardless; only read/write/open-style
// failures cancel them — tests/spool/segment_creator_test.cc pins this), so a header WRITE linked
// after a refused rename would overwrite the old, still-named segment's header.
//   step 0: (1) RENAMEAT away, (2) FSYNC(dir)   — (2) is harmless whatever (1) did
//   step 1: (3) WRITE header,  (4) FSYNC(DATASYNC) — a failed write does cancel (4)
//   step 2: (5) RENAMEAT home, (6) FSYNC(dir)
void SegmentCreator::SubmitRecycle() {
  stage_ = Stage::kSetUp;
  recycle_step_ = 0;
  SubmitRecycleStep();
}

void SegmentCreator::SubmitRecycleStep() {
  static constexpr ChainKind kSteps[3][2] = {{ChainKind::kRenameAway, ChainKind::kDirSync},
                                             {ChainKind::kHeader, ChainKind::kDataSync},
                                             {ChainKind::kRenameHome, ChainKind::kDirSync}};
  chain_used_ = 0;
  for (ChainKind kind : kSteps[recycle_step_]) {
    ChainOp& c = chain_[chain_used_++];
    c.kind = kind;
    c.res = 0;
    c.offset = c.length = 0;
  }
  SubmitChain();
}

// One step of the recycle completed: the next step, done, or undone as far as it matters
// (see the header).
void SegmentCreator::RecycleFinished() {
  for (size_t i = 0; i < chain_used_; ++i) {
    const ChainOp& c = chain_[i];
    const bool short_header =
        c.kind == ChainKind::kHeader && c.res >= 0 && static_cast<size_t>(c.res) != header_.size();
    if (c.res >= 0 && !short_header) continue;
    const int error = short_header ? EIO : -c.res;
    if (recycle_step_ == 0 && i == 0) {  // the rename failed: the old file is untouched
      Close(std::exchange(file_.fd, -1));
      Finish(error);
      return;
    }
    recycle_old_present_ = false;
    // Only the last op (the directory sync) failing leaves the file at its new name.
    RecycleCleanUp(error, /*at_new_name=*/recycle_step_ == 2 && i == 1);
    return;
  }
  if (++recycle_step_ < 3) {
    SubmitRecycleStep();
    return;
  }
  recycle_old_present_ = false;
  Finish(0);
}

void SegmentCreator::RecycleCleanUp(int error, bool at_new_name) {
  if (!at_new_name) name_ = recycle_name_;  // CleanUp unlinks name_
  core::LogWarning("spool: recycling %s as %s failed: %s; the file is removed",
                   recycle_old_.ToString(), file_.id.ToString(), std::strerror(error));
  CleanUp(error);
}

void SegmentCreator::SubmitSetUp() {
  stage_ = Stage::kSetUp;
  zeros_next_ = zero_fill_ ? 0 : file_.capacity;
  SubmitSetUpRound(/*first=*/true);
}

// One round of the set-up: FALLOCATE (first round only), the next kZeroWritesPerRound zero
// writes, and once the zeros reach the end, header and both syncs. Rounds keep a chain within
// the SQ however large the segment; each is submitted when the one before it succeeded.
void SegmentCreator::SubmitSetUpRound(bool first) {
  chain_used_ = 0;
  auto add = [this](ChainKind kind, uint64_t offset = 0, uint64_t length = 0) {
    RM_CHECK(chain_used_ < kChainOpsMax);
    ChainOp& c = chain_[chain_used_++];
    c.kind = kind;
    c.res = 0;
    c.offset = offset;
    c.length = length;
  };
  if (first && preallocate_) add(ChainKind::kFallocate);
  for (size_t i = 0; i < kZeroWritesPerRound && zeros_next_ < file_.capacity; ++i) {
    const uint64_t length = std::min<uint64_t>(kZeroWriteBytes, file_.capacity - zeros_next_);
    add(ChainKind::kZeros, zeros_next_, length);
    zeros_next_ += length;
  }
  if (zeros_next_ == file_.capacity) {
    add(ChainKind::kHeader);
    add(ChainKind::kFileSync);
    add(ChainKind::kDirSync);
  }
  SubmitChain();
}

// Prepares chain_[0, chain_used_) as one linked chain, after making room for all of it in the
// SQ: a link never spans two submissions.
void SegmentCreator::SubmitChain() {
  ReserveSqes(loop_, static_cast<unsigned>(chain_used_));
  chain_pending_ = 0;
  for (size_t i = 0; i < chain_used_; ++i) {
    io_uring_sqe* sqe = loop_.Prepare(chain_[i].op);
    PrepareChainOp(chain_[i], sqe);
    if (i + 1 < chain_used_) sqe->flags |= IOSQE_IO_LINK;
    ++chain_pending_;
  }
}

void SegmentCreator::PrepareChainOp(ChainOp& c, io_uring_sqe* sqe) {
  switch (c.kind) {
    case ChainKind::kFallocate:
      io_uring_prep_fallocate(sqe, file_.fd, 0, 0, static_cast<off_t>(file_.capacity));
      break;
    case ChainKind::kZeros:
      io_uring_prep_write(sqe, file_.fd, zero_block, static_cast<unsigned>(c.length), c.offset);
      sqe->flags |= IOSQE_ASYNC;
      break;
    case ChainKind::kHeader:
      io_uring_prep_write(sqe, file_.fd, header_.data(), static_cast<unsigned>(header_.size()),
                          0);
      break;
    case ChainKind::kFileSync:
      io_uring_prep_fsync(sqe, file_.fd, 0);
      break;
    case ChainKind::kDataSync:
      io_uring_prep_fsync(sqe, file_.fd, IORING_FSYNC_DATASYNC);
      break;
    case ChainKind::kRenameAway:
      io_uring_prep_renameat(sqe, dir_fd_, old_name_.c_str(), dir_fd_, recycle_name_.c_str(),
                             RENAME_NOREPLACE);
      break;
    case ChainKind::kRenameHome:
      io_uring_prep_renameat(sqe, dir_fd_, recycle_name_.c_str(), dir_fd_, name_.c_str(),
                             RENAME_NOREPLACE);
      break;
    case ChainKind::kDirSync:
      io_uring_prep_fsync(sqe, dir_fd_, 0);
      break;
  }
}

void SegmentCreator::ChainDone(core::Operation& op, core::IoResult result) {
  RM_DCHECK(stage_ == Stage::kSetUp);
  for (size_t i = 0; i < chain_used_; ++i) {
    if (&chain_[i].op == &op) chain_[i].res = result.res;
  }
  RM_DCHECK(chain_pending_ > 0);
  if (--chain_pending_ == 0) {
    if (recycling_) {
      RecycleFinished();
    } else {
      SetUpFinished();
    }
  }
}

void SegmentCreator::SetUpFinished() {
  const ChainOp& first = chain_[0];
  if (first.kind == ChainKind::kFallocate && first.res == -EOPNOTSUPP) {
    // The filesystem cannot preallocate: the same chain without it, now and from now on.
    preallocate_ = false;
    SubmitSetUp();
    return;
  }
  for (size_t i = 0; i < chain_used_; ++i) {
    const ChainOp& c = chain_[i];
    if (c.res >= 0) continue;
    // The first failure is the cause; the ops linked after it only report -ECANCELED. A
    // first failure that is itself ECANCELED came from outside (the loop's stop): again.
    if (Retryable(-c.res) && ++retries_ <= kRetriesMax) {
      SubmitSetUp();
    } else {
      CleanUp(-c.res);
    }
    return;
  }
  for (size_t i = 0; i < chain_used_; ++i) {
    const ChainOp& c = chain_[i];
    const uint64_t want = c.kind == ChainKind::kZeros    ? c.length
                          : c.kind == ChainKind::kHeader ? header_.size()
                                                          : 0;
    // A short write (a link breaks there, so nothing after it ran): the device failing, or
    // a signal; the whole set-up is idempotent, so run it again a few times.
    if (want != 0 && static_cast<uint64_t>(c.res) != want) {
      if (++retries_ <= kRetriesMax) {
        SubmitSetUp();
      } else {
        CleanUp(EIO);
      }
      return;
    }
  }
  if (chain_[chain_used_ - 1].kind != ChainKind::kDirSync) {  // zeros left for a next round
    SubmitSetUpRound(/*first=*/false);
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
  if (recycling_) {
    result.recycled = error == 0;
    result.recycle_old = recycle_old_;
    result.recycle_old_present = recycle_old_present_;
  }
  if (error != 0) {
    result.status = SpoolIoError(
        error, recycling_ ? absl::StrCat("recycling spool segment ", recycle_old_.ToString(),
                                         " as ", file_.id.ToString())
                          : absl::StrCat("creating spool segment ", file_.id.ToString()));
  } else {
    result.file = file_;
  }
  file_ = SegmentFile{};
  stage_ = Stage::kIdle;  // before the callback: it may start the next creation
  done_(owner_, result);
}

void SegmentCreator::CloseZeroingFrom(int fd, uint64_t valid_end) {
  RM_CHECK(fd >= 0);
  // Past the end of the file a punch does nothing: one length covers any segment.
  constexpr uint64_t kToTheEnd = uint64_t{1} << 40;
  core::Ring& ring = loop_.ring();
  // The three must go in one submission, or the links would not hold.
  if (io_uring_sq_space_left(ring.raw()) < 3) ring.Submit();
  io_uring_sqe* punch = ring.PrepareUntracked();
  io_uring_prep_fallocate(punch, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          valid_end, kToTheEnd);
  punch->flags |= IOSQE_IO_HARDLINK;
  io_uring_sqe* sync = ring.PrepareUntracked();
  io_uring_prep_fsync(sync, fd, IORING_FSYNC_DATASYNC);
  sync->flags |= IOSQE_IO_HARDLINK;
  Close(fd);  // the chain's last link: the next SQE
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
