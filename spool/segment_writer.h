// spool/segment_writer.h — the slow, rare half of a loop's spool writer: making a segment
// file durable before anything is appended to it, and closing segments the writer is done
// with. The fast half, the group commit that appends records, is spool/group_commit.
//
// Contract
// - Loop thread only; owned by that loop's SpoolWriter, which also owns the loop directory's
//   fd (open for the creator's whole life). Every ring operation here goes through
//   loop.Prepare, so the loop's stop waits for it.
// - Create(seq, bytes): one creation at a time (busy() says whether one runs). Ring ops:
//     OPENAT  <dir>/<seq>.seg  O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, mode 0600
//     then linked chains, in rounds:  FALLOCATE(0, bytes) → WRITE(64 KiB of zeros) × up to
//                             64 per round, each round submitted when the one before it
//                             succeeded, the last one ending → WRITE(64-byte header at 0)
//                             → FSYNC(file) → FSYNC(loop directory)
//   so the file, its size, its header and its name are durable before the first record is
//   appended (DESIGN.md "Rollover": the directory is synced on create/remove only). A full
//   fsync (not datasync) of the file, because its size and extents are metadata.
//   Each chain is prepared whole after checking the SQ has room: a link never spans two
//   submissions (STYLE.md anti-patterns). Rounds bound a chain whatever the segment's size.
//   The zeros go in 64 KiB writes because a buffered write's length sets the page-cache folio
//   size of its range, which every later append into it pays for (segment_writer.cc).
//   A failed FALLOCATE does not cancel the ops linked after it (Linux runs them anyway);
//   harmless here: a round's result is read only when its whole chain is done, and a failure
//   removes the file.
// - SegmentFill says how the space is made (SpoolWriterOptions::fill):
//     kZeros     FALLOCATE, then zeros written over the whole file (the default). fallocate
//                alone leaves "unwritten" extents: the first append into each of them must
//                convert it, a metadata change that makes every RWF_DSYNC append wait for a
//                journal commit. Over written zeros an append is a pure data overwrite and its
//                sync only flushes the device: on this project's ext4 VMs a DSYNC append of
//                10 KiB fell from ~120 to ~80 us, of 100 KiB from ~240 to ~140 us
//                (bench/RESULTS.md). The price: each segment's size is written twice, once
//                ahead of time (the spare segment is made while the active one fills).
//                The zero writes go to io-wq (IOSQE_ASYNC): 64 MiB copied into the page cache
//                must never run on the loop thread.
//     kAllocate  FALLOCATE only (copy-on-write filesystems, where zeros buy nothing).
//     kNone      neither: the file grows with each append, which fdatasync covers since a
//                size change is needed to read the data back (tests use it to reach ENOSPC
//                on the append path).
//   A filesystem without fallocate (EOPNOTSUPP) gets the same chain without it, and later
//   segments skip it. tmpfs and ext4/xfs support it.
// - The result comes back through the `done` callback (owner, result) from the completion of
//   the last op; the creator is idle again when it runs, so the callback may Create again.
//   An op interrupted or cancelled from outside (the loop's stop cancels every op once) is
//   resubmitted, a few times at most.
//   On failure the half-made file (if OPENAT made one) is closed and unlinked first, so a
//   failed creation leaves no file behind — unless the unlink itself fails, and then recovery
//   reads the file as empty or as a clean segment with no record, both harmless.
// - Recycle(old, seq, bytes): instead of making a new file, reuses drained segment `old` (same
//   loop directory) as segment `seq` (> every sequence number ever used there): its blocks
//   are written already (zeros, then records), so appends to it stay pure overwrites and it
//   costs no zero fill. Ring ops:
//     OPENAT  <dir>/<old>.seg  O_WRONLY|O_CLOEXEC, then fstat: a regular file of exactly
//             `bytes` bytes, or no recycling (oversized segments, other configured sizes)
//     then three linked pairs, each submitted only after the pair before it succeeded:
//       (1) RENAMEAT <old>.seg → <seq>.recycle  (RENAME_NOREPLACE)
//       (2) FSYNC(loop directory)
//       (3) WRITE(64-byte header at 0: format 2, sequence `seq`, kSegmentFlagRecycled)
//       (4) FSYNC(file, DATASYNC): an overwrite inside the file's size: no metadata needed
//       (5) RENAMEAT <seq>.recycle → <seq>.seg  (RENAME_NOREPLACE)
//       (6) FSYNC(loop directory)
//   Not one chain: a failed RENAMEAT (or FALLOCATE, UNLINKAT, FSYNC) does not cancel the ops
//   linked after it — Linux runs them anyway (tests/spool/segment_creator_test.cc) — so a
//   refused (1) would have let (3) rewrite the old segment's header under its old name.
//   Crash points (what recovery finds, spool/recovery.h):
//     before (2) completes: <old>.seg with its old header and records, or <seq>.recycle.
//       <old>.seg is read as the drained segment it was: every message in it is done and
//       every segment holding their DONE/RECIPIENT records is pinned to it (LiveIndex), so
//       replaying it changes nothing — as for an unlink that was not yet durable.
//     after (2), before (6) completes: <seq>.recycle (header old, torn, or new), or
//       <seq>.seg with the new header and no record of its life (when (5) reached the disk).
//       A *.recycle file is a spare in the making: recovery removes it unread (never
//       quarantined; a torn header is only ever written under that name, which is why (2)
//       comes before (3)). <seq>.seg reads as an empty segment: the old records fail their
//       CRCs under the new life key (spool/record.h) and end the segment cleanly.
//     after (6): <seq>.seg, durable under its name, with its header durable before the
//       rename ((4) before (5)), so no acknowledged record of life `seq` can sit in a file
//       recovery would discard. The writer appends to it only after (6).
//   The old segment's records are unreadable from (2) on; the caller (the unlinker) counts
//   the old segment removed (LiveIndex::RemoveSegment) only on success. Failure: OPENAT or
//   fstat or (1) failing leaves <old>.seg as it was (result.recycle_old_present); a later
//   step failing unlinks whichever name the file has then (<seq>.recycle, or <seq>.seg when
//   only (6) failed: it holds no record). Either way the caller unlinks <old>.seg as usual
//   (ENOENT counts as removed, after a directory sync). No retries: the chain is not
//   idempotent, and a failed recycle costs only the zero fill it meant to save.
//   The fstat is a plain syscall on the loop thread: metadata of an inode just opened.
// - Close(fd): hands an fd the writer is done with to a ring CLOSE (no op may use it any more).
// - The owner must not destroy the creator while ops_in_flight() > 0 (checked).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/loop.h"
#include "core/ring.h"
#include "spool/segment_format.h"

namespace ringmail::spool {

// One segment file open for appending.
struct SegmentFile {
  SegmentId id;
  int fd = -1;
  uint64_t capacity = 0;                // bytes the segment may hold (its header's size)
  uint64_t tail = kSegmentHeaderBytes;  // where the next record goes

  uint64_t room() const { return capacity > tail ? capacity - tail : 0; }
};

// kAuto: kZeros or kAllocate, chosen by the writer per fresh segment (spool/spare_planner.h);
// the creator starts out zero-filling and follows set_zero_fill().
enum class SegmentFill : uint8_t { kZeros, kAllocate, kNone, kAuto };

struct SegmentCreateResult {
  absl::Status status;  // errno mapped: ENOSPC/EDQUOT → kResourceExhausted, EEXIST →
                        // kAlreadyExists, others → kUnavailable
  int error = 0;        // the errno behind a failure
  SegmentFile file;     // valid when status is OK
  // Recycle() only: the drained segment it reused, and (on failure) whether its file is
  // still there under its old name.
  bool recycled = false;
  SegmentId recycle_old;
  bool recycle_old_present = false;
};

class SegmentCreator {
 public:
  using Done = void (*)(void* owner, SegmentCreateResult& result);

  // `dir_fd` is the loop directory (O_DIRECTORY), owned by the caller and kept open.
  SegmentCreator(core::Loop& loop, uint32_t loop_index, int dir_fd, SegmentFill fill);
  ~SegmentCreator();
  SegmentCreator(const SegmentCreator&) = delete;
  SegmentCreator& operator=(const SegmentCreator&) = delete;

  template <auto Method, typename Owner>
  void Bind(Owner* o) {
    owner_ = o;
    done_ = [](void* raw, SegmentCreateResult& r) { (static_cast<Owner*>(raw)->*Method)(r); };
  }

  // Starts creating segment `seq` holding `bytes` (header included). Only when !busy().
  void Create(uint64_t seq, uint64_t bytes);
  // Starts reusing drained segment `old` (this loop directory) as `seq`. Only when !busy().
  void Recycle(SegmentId old, uint64_t seq, uint64_t bytes);
  void Close(int fd);
  // Close() for a segment whose last batch failed: first the bytes from `valid_end` on (a
  // torn record, or records nobody was told about) are punched out (they read as zeros and
  // give their blocks back, which a full disk needs) and that is made durable, so the sealed
  // segment ends cleanly; a torn tail in a segment that is not the newest then always means
  // damage (spool/recovery.h). One linked chain: fallocate, fdatasync, close (hard links:
  // the close runs even when the others fail; those failures are only logged).
  void CloseZeroingFrom(int fd, uint64_t valid_end);

  bool busy() const { return stage_ != Stage::kIdle; }
  size_t ops_in_flight() const;
  bool preallocating() const { return preallocate_; }
  // Whether later creations write zeros over their space (as kZeros or as kAllocate from
  // here on); nothing for a kNone creator, which never makes space ahead.
  void set_zero_fill(bool on) { zero_fill_ = on && fill_ != SegmentFill::kNone; }
  bool zero_filling() const { return zero_fill_; }

 private:
  enum class Stage : uint8_t { kIdle, kOpen, kSetUp, kCleanUp };
  // One op of the set-up chain, with the result it came back with.
  enum class ChainKind : uint8_t {
    kFallocate, kZeros, kHeader, kFileSync, kDirSync, kDataSync, kRenameAway, kRenameHome
  };
  struct ChainOp {
    core::Operation op;
    ChainKind kind = ChainKind::kHeader;
    int32_t res = 0;
    uint64_t offset = 0;  // kZeros: the range this op writes
    uint64_t length = 0;
  };
  struct CloseSlot {
    core::Operation op;
    int fd = -1;
  };
  // A set-up round: FALLOCATE (the first round), up to kZeroWritesPerRound zero writes of
  // 64 KiB (4 MiB a round), and in the last round header and two FSYNCs.
  static constexpr size_t kZeroWritesPerRound = 64;
  static constexpr size_t kChainOpsMax = kZeroWritesPerRound + 4;
  static_assert(kChainOpsMax >= 6, "the recycle chain");

  void SubmitOpen();
  void OpenDone(core::Operation& op, core::IoResult result);
  void SubmitSetUp();
  void SubmitSetUpRound(bool first);
  void SubmitRecycle();
  void SubmitRecycleStep();
  void RecycleFinished();
  void RecycleCleanUp(int error, bool at_new_name);
  void SubmitChain();
  void PrepareChainOp(ChainOp& c, io_uring_sqe* sqe);
  void ChainDone(core::Operation& op, core::IoResult result);
  void SetUpFinished();
  void CleanUp(int error);
  void CleanUpDone(core::Operation& op, core::IoResult result);
  void CloseDone(core::Operation& op, core::IoResult result);
  void Finish(int error);

  core::Loop& loop_;
  uint32_t loop_index_;
  int dir_fd_;
  const SegmentFill fill_;
  bool preallocate_;
  bool zero_fill_;
  Done done_ = nullptr;
  void* owner_ = nullptr;

  Stage stage_ = Stage::kIdle;
  SegmentFile file_;    // the segment being made
  std::string name_;    // its file name, alive while OPENAT/UNLINKAT/RENAMEAT may read it
  bool recycling_ = false;
  int recycle_step_ = 0;  // 0 rename away, 1 header, 2 rename home (SubmitRecycle)
  bool recycle_old_present_ = false;
  SegmentId recycle_old_;
  std::string old_name_;      // Recycle: <old>.seg
  std::string recycle_name_;  // Recycle: <seq>.recycle
  std::string header_;  // its header bytes, alive while the WRITE may read them
  uint64_t zeros_next_ = 0;  // set-up: where the next round's zero writes start
  core::Operation open_op_;
  ChainOp chain_[kChainOpsMax];
  size_t chain_used_ = 0;  // ops of the current chain, from chain_[0]
  size_t chain_pending_ = 0;
  core::Operation cleanup_close_op_;
  core::Operation cleanup_unlink_op_;
  size_t cleanup_pending_ = 0;
  int error_ = 0;
  int retries_ = 0;  // resubmissions after EINTR/EAGAIN/a foreign cancel
  std::vector<std::unique_ptr<CloseSlot>> closes_;
  size_t closes_in_flight_ = 0;
};

// ENOSPC/EDQUOT → kResourceExhausted ("try again later", the disk is full), EEXIST →
// kAlreadyExists, anything else → kUnavailable. `what` names the operation and the file.
absl::Status SpoolIoError(int error, std::string_view what);

// Makes sure at least `count` SQEs are free so that a linked chain is prepared in one
// submission: submits what is queued when the SQ is too full.
void ReserveSqes(core::Loop& loop, unsigned count);

}  // namespace ringmail::spool
