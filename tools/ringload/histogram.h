// tools/ringload/histogram.h — a log-linear (HDR-style) latency histogram in microseconds.
//
// Values below 2^kSubBits are counted exactly; above, every power-of-two range is split
// into 2^(kSubBits-1) equal buckets, so a reported percentile is within 1/2^(kSubBits-1)
// (0.2%) of the true value, and is never below it: ValueAt returns the highest value the
// bucket holds, clamped to the largest value recorded. Values past kMaxValue are clamped.
//
// Recording is a few shifts and one increment, with no allocation (the counts array is
// allocated once by the constructor). One histogram per loop, touched by that loop's thread
// only; Merge() adds them up on the main thread after the loops have stopped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringmail::ringload {

class Histogram {
 public:
  static constexpr int kSubBits = 10;
  static constexpr uint64_t kSubCount = uint64_t{1} << kSubBits;  // exact below this
  static constexpr uint64_t kHalfCount = kSubCount / 2;
  static constexpr int kMaxShift = 32;                             // ~50 days in us
  static constexpr uint64_t kMaxValue = (kSubCount << kMaxShift) - 1;

  Histogram();

  void Record(uint64_t value_us) { RecordN(value_us, 1); }
  void RecordN(uint64_t value_us, uint64_t n);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }
  // The smallest recorded-bucket value v such that at least `percentile`% of the values
  // are ≤ v (reported as the bucket's upper bound, clamped to max()). 0 when empty.
  uint64_t ValueAt(double percentile) const;

  // Bucket arithmetic, public for the tests.
  static size_t IndexOf(uint64_t value);
  static uint64_t HighestIn(size_t index);
  static uint64_t LowestIn(size_t index);
  static constexpr size_t kBucketCount = kSubCount + kMaxShift * kHalfCount;

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace ringmail::ringload
