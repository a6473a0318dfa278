#include "tools/ringload/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ringmail::ringload {

Histogram::Histogram() : counts_(kBucketCount, 0) {}

// Bucket k ≥ 1 covers [kSubCount/2 · 2^k, kSubCount · 2^k) in kHalfCount buckets of width
// 2^k; below kSubCount every value has its own bucket.
size_t Histogram::IndexOf(uint64_t value) {
  if (value > kMaxValue) value = kMaxValue;
  if (value < kSubCount) return static_cast<size_t>(value);
  const int top = 63 - std::countl_zero(value);  // floor(log2 value) ≥ kSubBits
  const int shift = top - kSubBits + 1;
  return static_cast<size_t>(kSubCount + (shift - 1) * kHalfCount +
                             ((value >> shift) - kHalfCount));
}

uint64_t Histogram::LowestIn(size_t index) {
  if (index < kSubCount) return index;
  const uint64_t rest = index - kSubCount;
  const int shift = static_cast<int>(rest / kHalfCount) + 1;
  return (kHalfCount + rest % kHalfCount) << shift;
}

uint64_t Histogram::HighestIn(size_t index) {
  if (index < kSubCount) return index;
  const int shift = static_cast<int>((index - kSubCount) / kHalfCount) + 1;
  return LowestIn(index) + (uint64_t{1} << shift) - 1;
}

void Histogram::RecordN(uint64_t value_us, uint64_t n) {
  if (n == 0) return;
  if (value_us > kMaxValue) value_us = kMaxValue;
  counts_[IndexOf(value_us)] += n;
  count_ += n;
  sum_ += value_us * n;
  min_ = std::min(min_, value_us);
  max_ = std::max(max_, value_us);
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  sum_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
}

uint64_t Histogram::ValueAt(double percentile) const {
  if (count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The rank of the value we want, 1-based: ceil(p · n), at least the first value.
  // The small slack keeps 99.9% of 1000 at rank 999 despite binary rounding of 99.9.
  const double exact = percentile * static_cast<double>(count_) / 100.0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(exact - 1e-9 * (1.0 + exact)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(HighestIn(i), max_);
  }
  return max_;
}

}  // namespace ringmail::ringload
