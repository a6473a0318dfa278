// spool/unlinker.h — removes segments that hold nothing live any more (DESIGN.md "Done and
// unlink", MODULES.md step 11).
//
// Contract
// - One per owner loop, created, used and destroyed on that loop (destroyed after the loop
//   stopped, or when !busy()). It owns O_DIRECTORY fds of the loop directories whose
//   segments it may remove: its own loop's, plus any AddDirectory()'d at start-up for
//   segments adopted from a loop that no longer exists.
// - Kick() (cheap, coalesced into one run per loop turn): a run takes
//   LiveIndex::RemovableSegments() — no live message, no pin on a segment still present, not
//   active — minus the writer's active segment, minus what the owner still `held` (a delivery
//   engine may read a message there that compaction moved), at most batch_max of them, and
//   removes them: IORING_OP_UNLINKAT each, then one ring FSYNC of each directory touched
//   (the directory is synced on segment remove, never per message). Only when that fsync
//   succeeded does LiveIndex::RemoveSegment run, so a pin is never released before the
//   removal it waited for is durable.
// - Recycling: when the writer has a recycler() (SpoolWriterOptions::recycle), each run first
//   offers one picked segment of this loop's own directory to it (SegmentRecycler); if taken,
//   that segment is not unlinked: its file becomes the writer's spare under a new number
//   (spool/segment_writer.h Recycle, crash-safe) and LiveIndex::RemoveSegment runs when the
//   recycle is complete, at which point the old name is durably gone. A recycle that fails,
//   and every segment the writer does not want (it keeps one spare at most), is unlinked as
//   below. Only segments picked here are offered, so only what may be unlinked now is
//   recycled.
//   Who may still read a recycled file's old bytes, and why that is safe: nothing live, no
//   pin and no hold (the delivery engine's compaction holds) remain in it; the delivery
//   engine's BodyFiles cache keeps fds by path, and no path of a drained segment is asked for
//   again (sequence numbers are never reused), so a cached fd only waits for its idle close;
//   a body read still in flight for a transaction already reported is discarded with that
//   transaction. An offline `ringmail-spool`/ringctl scan that races a recycle sees a
//   *.recycle name (ignored), or a header/name pair of one life, whose records validate only
//   under that life's key.
// - Fallback: UNLINKAT answered EINVAL/EOPNOTSUPP/ENOSYS (the op is unsupported: the ring is
//   not used again) or a retryable error (EINTR, EAGAIN, EBUSY, ENOMEM, a foreign cancel)
//   sends the segment to a thread pool: `Unlink` for one, `Batch_Unlink` for several, via
//   TrySubmit (never blocking). The job unlinks by path, fsyncs the directories and posts
//   the result back to the loop. A full backlog leaves the segment for a later run.
//   ENOENT counts as removed. Other errors (EACCES, EROFS, EIO) are logged, and that segment
//   is not tried again until RetryFailed() (the owner's periodic maintenance).
// - Pool jobs capture only paths and a ReservedPost on the loop (reserved when the job is
//   submitted, so a full inbox cannot drop the result); their result is a loop task that
//   runs only while the loop runs, so the Unlinker (which outlives its loop's run) is alive
//   when it does. The pools must be stopped before the Loop objects are destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "core/loop.h"
#include "core/ring.h"
#include "core/thread_pool.h"
#include "spool/group_commit.h"
#include "spool/live_index.h"
#include "spool/segment_format.h"

namespace ringmail::spool {

struct UnlinkerOptions {
  std::string spool_dir;
  uint32_t loop_index = 0;
  core::ThreadPool* unlink_pool = nullptr;        // "Unlink": one segment per job
  core::ThreadPool* batch_unlink_pool = nullptr;  // "Batch_Unlink": several per job
  size_t batch_max = 64;                          // segments per run
  bool use_ring = true;  // false: always the pools (tests of the fallback path)
  // Segments the owner still needs although nothing is live in them. May be empty.
  absl::AnyInvocable<bool(SegmentId) const> held;
};

struct UnlinkerStats {
  uint64_t runs = 0;
  uint64_t unlinked = 0;       // segments removed: unlinked (unlink and directory sync
                               // durable), or recycled (the old name durably gone)
  uint64_t recycled = 0;       // of which the file was reused as the writer's spare
  uint64_t ring_unlinks = 0;   // of which through IORING_OP_UNLINKAT
  uint64_t pool_unlinks = 0;   // of which through a thread pool
  uint64_t pool_rejected = 0;  // TrySubmit answered "backlog full"
  uint64_t errors = 0;         // unlink or directory sync failures
  uint64_t dir_syncs = 0;
  bool ring_unsupported = false;
};

class Unlinker {
 public:
  // On the loop thread, at start-up: opens the loop's own directory (blocking open).
  static absl::StatusOr<std::unique_ptr<Unlinker>> Create(core::Loop& loop, LiveIndex& index,
                                                          const SpoolWriter& writer,
                                                          UnlinkerOptions options);
  ~Unlinker();  // not during a ring run (checked); closes the directory fds
  Unlinker(const Unlinker&) = delete;
  Unlinker& operator=(const Unlinker&) = delete;

  // Start-up only (blocking open): segments of loop directory `loop` may be removed too.
  absl::Status AddDirectory(uint32_t loop);
  // Something may have become removable.
  void Kick();
  // Segments whose removal failed with a hard error may be tried again.
  void RetryFailed();
  // Called on the loop with the segments just removed (unlinked, or recycled: the old name
  // durably gone), for the owner's stats and for readers that must drop their descriptors.
  // May be empty.
  using RemovedFn = void (*)(void* owner, const std::vector<SegmentId>& ids);
  void SetRemoved(RemovedFn fn, void* owner) {
    removed_fn_ = fn;
    removed_owner_ = owner;
  }

  bool busy() const {
    return running_ || pool_jobs_ > 0 || kick_scheduled_ || recycling_.has_value();
  }
  const UnlinkerStats& stats() const { return stats_; }

 private:
  struct UnlinkOp;
  struct SyncOp;
  using Result = std::pair<SegmentId, int>;  // errno, 0 = removed

  Unlinker(core::Loop& loop, LiveIndex& index, const SpoolWriter& writer,
           UnlinkerOptions options);
  void Run();
  std::vector<SegmentId> Pick();
  void UnlinkDone(core::Operation& op, core::IoResult r);
  void RingUnlinksDone();
  void SyncDone(core::Operation& op, core::IoResult r);
  void SubmitToPool(std::vector<SegmentId> ids);
  void PoolDone(std::vector<Result> results);
  void Removed(const std::vector<SegmentId>& ids, bool via_ring);
  void Failed(SegmentId id, int error, const char* what);
  bool OfferForRecycling(SegmentId id);
  static void RecycleDone(void* self, SegmentId old, bool recycled);
  int DirFd(uint32_t loop) const;

  core::Loop& loop_;
  LiveIndex& index_;
  const SpoolWriter& writer_;
  UnlinkerOptions options_;
  absl::flat_hash_map<uint32_t, int> dir_fds_;
  absl::flat_hash_set<SegmentId> in_progress_;  // in a ring run or a pool job
  absl::flat_hash_set<SegmentId> failed_;       // hard errors: skipped until RetryFailed
  absl::flat_hash_set<SegmentId> not_recycled_;  // refused by a failed recycle: unlink only
  std::optional<SegmentId> recycling_;          // offered and taken; the writer has it
  bool ring_ok_ = true;
  bool running_ = false;   // a ring run (unlinks, then directory syncs) is in flight
  bool again_ = false;     // kicked during a run
  bool kick_scheduled_ = false;
  size_t unlinks_pending_ = 0;
  size_t syncs_pending_ = 0;
  size_t syncs_used_ = 0;  // sync_ops_[0, syncs_used_) belong to this run
  size_t pool_jobs_ = 0;
  std::vector<std::unique_ptr<UnlinkOp>> unlink_ops_;
  std::vector<std::unique_ptr<SyncOp>> sync_ops_;
  std::vector<SegmentId> unlinked_;  // this run, waiting for their directory sync
  std::vector<SegmentId> fallback_;  // this run, for the pools
  UnlinkerStats stats_;
  RemovedFn removed_fn_ = nullptr;
  void* removed_owner_ = nullptr;
};

}  // namespace ringmail::spool
