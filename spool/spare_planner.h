// spool/spare_planner.h — a spool writer's plan for its next fresh segment: when to start it
// (recycling on: how long to wait for a drained segment instead) and whether to write zeros over
// its space (spool_segment_fill = "auto") (spool/group_commit.h, "Recycling").
//
// When. A recycled spare costs a rename and a header write; a fresh one writes the whole
// segment (zeros over fallocated space). The later the fresh spare starts, the more chances
// a drained segment has to arrive and be reused instead — but it must still be ready before
// the active segment fills, or the rollover waits for it (every commit of the loop stalls
// meanwhile). Session 6 started it at half full whatever the load; at a steady 10 KiB relay
// load one loop out of two then made 7 segments new and recycled 1.
//
// So nothing during the first half of a segment (drained ones get that time), and
// then a fresh spare is due when the time the active segment has left at the recent peak
// append rate is under kCreationsAhead creations (as long as the last fresh creation took) plus
// kSlackUs, or when less than an eighth of it is left, whatever the figures say. Without a
// measured creation or rate yet, it is due at half full, as before.
//
// Zeros or not: zeros over fallocated space make every append a pure overwrite, whose sync
// only flushes the device; without them the first append into each unwritten extent converts
// it, a metadata write per sync. Zeros pay while batches are small (many syncs per byte) and
// cost twice the bytes written while they are big (the disk's bandwidth is the limit then).
// Measured on this project's ext4 VMs with 2 loops (bench/RESULTS.md, session 7): fallocate
// only was 1.33x / 1.43x faster at 100 KiB x 10 / 100 sessions (218 KiB / 999 KiB a batch),
// and no faster at 1 or 10 KiB or one 100 KiB session (6-100 KiB a batch). So zeros while the
// recent batches average under kZeroFillBatchBytesMax, fallocate only from there on.
//
// Loop thread only (one per SpoolWriter); plain arithmetic, no clock of its own: callers pass
// the loop's cached now_us(). Tested alone (tests/spool/spare_planner_test.cc).
#pragma once

#include <cstdint>

namespace ringmail::spool {

class SparePlanner {
 public:
  // A spare must be ready this many creations ahead of the segment filling, plus the slack:
  // a creation's duration moves with the disk's other work.
  static constexpr uint64_t kCreationsAhead = 3;
  static constexpr uint64_t kSlackUs = 100'000;
  // The append rate is measured over windows of at least this long; the estimate is the
  // peak window rate, lowered by kDecay per window.
  static constexpr uint64_t kWindowUs = 20'000;
  static constexpr double kDecay = 0.875;
  // Zero-fill the next fresh segment while recent batches average fewer bytes than this.
  static constexpr uint64_t kZeroFillBatchBytesMax = 128 << 10;

  // A batch of `bytes` became durable at `now_us`.
  void Appended(uint64_t bytes, uint64_t now_us);
  // A fresh creation of a full-sized segment started / succeeded.
  void CreationStarted(uint64_t now_us) { creation_started_us_ = now_us; }
  void CreationSucceeded(uint64_t now_us);

  // Whether a fresh spare should start now, for an active segment with `used` of its
  // `capacity` bytes taken.
  bool FreshSpareDue(uint64_t used, uint64_t capacity) const;
  // Whether zeros over the next fresh segment's space pay (see above); yes before any batch.
  bool ZeroFillPays() const { return batch_bytes_ < kZeroFillBatchBytesMax; }

  uint64_t creation_us() const { return creation_us_; }
  double bytes_per_us() const { return rate_; }
  double batch_bytes() const { return batch_bytes_; }

 private:
  uint64_t creation_started_us_ = 0;
  uint64_t creation_us_ = 0;  // 0: none measured yet
  uint64_t window_start_us_ = 0;
  uint64_t window_bytes_ = 0;
  double rate_ = 0;  // bytes per µs: the decaying peak
  double batch_bytes_ = 0;  // bytes per batch, moving average over the last ~16 batches
  uint64_t batches_ = 0;
};

}  // namespace ringmail::spool
