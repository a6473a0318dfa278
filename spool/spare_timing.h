// spool/spare_timing.h — when a spool writer that recycles segments should stop waiting for a
// drained segment and start making a fresh spare (spool/group_commit.h, "Recycling").
//
// Why: a recycled spare costs a rename and a header write; a fresh one writes the whole
// segment (zeros over fallocated space). The later the fresh spare starts, the more chances
// a drained segment has to arrive and be reused instead — but it must still be ready before
// the active segment fills, or the rollover waits for it (every commit of the loop stalls
// meanwhile). Session 6 started it at half full whatever the load; at a steady 10 KiB relay
// load one loop out of two then made 7 segments new and recycled 1.
//
// The rule: nothing during the first half of a segment (drained ones get that time), and
// then a fresh spare is due when the time the active segment has left at the recent peak
// append rate is under kCreationsAhead creations (as long as the last fresh creation took) plus
// kSlackUs, or when less than an eighth of it is left, whatever the figures say. Without a
// measured creation or rate yet, it is due at half full, as before.
//
// Loop thread only (one per SpoolWriter); plain arithmetic, no clock of its own: callers pass
// the loop's cached now_us(). Tested alone (tests/spool/spare_timing_test.cc).
#pragma once

#include <cstdint>

namespace ringmail::spool {

class SpareTiming {
 public:
  // A spare must be ready this many creations ahead of the segment filling, plus the slack:
  // a creation's duration moves with the disk's other work.
  static constexpr uint64_t kCreationsAhead = 3;
  static constexpr uint64_t kSlackUs = 100'000;
  // The append rate is measured over windows of at least this long; the estimate is the
  // peak window rate, lowered by kDecay per window.
  static constexpr uint64_t kWindowUs = 20'000;
  static constexpr double kDecay = 0.875;

  // A batch of `bytes` became durable at `now_us`.
  void Appended(uint64_t bytes, uint64_t now_us);
  // A fresh creation of a full-sized segment started / succeeded.
  void CreationStarted(uint64_t now_us) { creation_started_us_ = now_us; }
  void CreationSucceeded(uint64_t now_us);

  // Whether a fresh spare should start now, for an active segment with `used` of its
  // `capacity` bytes taken.
  bool FreshSpareDue(uint64_t used, uint64_t capacity) const;

  uint64_t creation_us() const { return creation_us_; }
  double bytes_per_us() const { return rate_; }

 private:
  uint64_t creation_started_us_ = 0;
  uint64_t creation_us_ = 0;  // 0: none measured yet
  uint64_t window_start_us_ = 0;
  uint64_t window_bytes_ = 0;
  double rate_ = 0;  // bytes per µs: the decaying peak
};

}  // namespace ringmail::spool
