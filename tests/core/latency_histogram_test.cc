// Tests for core/latency_histogram.h: fixed buckets, inclusive upper bounds, an overflow.
#include "core/latency_histogram.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

TEST(LatencyHistogramTest, EachDurationLandsInTheFirstBucketItFits) {
  LatencyHistogram h;
  h.Record(0);
  h.Record(25);  // bounds are inclusive
  h.Record(26);
  h.Record(1'000);
  h.Record(1'001);
  h.Record(1'000'000);
  h.Record(1'000'001);  // past the last bound: the overflow bucket
  h.Record(UINT32_MAX);
  EXPECT_EQ(h.bucket(0), 2u);  // <= 25 µs
  EXPECT_EQ(h.bucket(1), 1u);  // <= 50 µs
  EXPECT_EQ(h.bucket(5), 1u);  // <= 1 ms
  EXPECT_EQ(h.bucket(6), 1u);  // <= 2 ms
  EXPECT_EQ(h.bucket(LatencyHistogram::kBoundsUs.size() - 1), 1u);  // <= 1 s
  EXPECT_EQ(h.bucket(LatencyHistogram::kBoundsUs.size()), 2u);      // overflow
  EXPECT_EQ(h.count(), 8u);
  EXPECT_EQ(h.sum_us(), uint64_t{0} + 25 + 26 + 1'000 + 1'001 + 1'000'000 + 1'000'001 + UINT32_MAX);
  uint64_t total = 0;
  for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) total += h.bucket(i);
  EXPECT_EQ(total, h.count());
}

TEST(LatencyHistogramTest, BoundsRiseStrictly) {
  for (size_t i = 1; i < LatencyHistogram::kBoundsUs.size(); ++i) {
    EXPECT_LT(LatencyHistogram::kBoundsUs[i - 1], LatencyHistogram::kBoundsUs[i]);
  }
}

}  // namespace
}  // namespace ringmail::core
