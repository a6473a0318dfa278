// core/latency_histogram.h — a fixed-bucket histogram of durations in microseconds, for the
// latency metrics a loop keeps about its own work (e.g. how long a spool batch takes to be
// durable) and the metrics page shows as a Prometheus histogram.
//
// Contract: a plain value (no allocation, no lock), owned and written by one thread — the loop
// whose work it measures; others see it only through a copy the loop hands them (a snapshot
// taken on that loop). Record() is a few compares and adds: fit for a per-message hot path.
// The bucket bounds are fixed (kBoundsUs), so every loop's histogram can be summed or
// compared with another's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ringmail::core {

class LatencyHistogram {
 public:
  // Upper bounds, inclusive, in µs: from what a loopback round trip costs to what a stalled
  // disk does. Durations above the last fall into the overflow bucket (Prometheus's +Inf).
  static constexpr std::array<uint64_t, 15> kBoundsUs = {
      25,    50,    100,    200,    500,     1'000,   2'000,  5'000,
      10'000, 20'000, 50'000, 100'000, 200'000, 500'000, 1'000'000};
  static constexpr size_t kBuckets = kBoundsUs.size() + 1;  // + overflow

  void Record(uint64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    ++counts_[i];
    ++count_;
    sum_us_ += us;
  }

  // Observations in bucket i alone (not cumulative); i == kBoundsUs.size() is the overflow.
  uint64_t bucket(size_t i) const { return counts_[i]; }
  uint64_t count() const { return count_; }
  uint64_t sum_us() const { return sum_us_; }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_us_ = 0;
};

}  // namespace ringmail::core
