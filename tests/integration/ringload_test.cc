// Tests of tools/ringload: its histogram (unit tests on known data) and the built
// `ringload` binary run as subprocesses — send against sink with byte-exact comparison of
// what was sent and what arrived, injected reply ratios, open-loop rate scheduling, the
// sink's protocol limits over a raw socket, and usage errors.
//
// No sleeps for synchronisation: the sink's port is read from its "listening" line on a
// stdout pipe; processes are awaited through a pidfd with a bounded timeout and killed if
// they overstay. Everything binds and connects to 127.0.0.1 only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/ring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/ringload/histogram.h"

extern char** environ;

namespace ringmail::ringload {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------
// Histogram

TEST(HistogramTest, ExactBelowTheSubBucketRange) {
  Histogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 1000u);
  EXPECT_DOUBLE_EQ(h.mean(), 500.5);
  EXPECT_EQ(h.ValueAt(50), 500u);
  EXPECT_EQ(h.ValueAt(90), 900u);
  EXPECT_EQ(h.ValueAt(99), 990u);
  EXPECT_EQ(h.ValueAt(99.9), 999u);
  EXPECT_EQ(h.ValueAt(100), 1000u);
  EXPECT_EQ(h.ValueAt(0), 1u);
}

TEST(HistogramTest, LargeValuesWithinRelativeErrorAndNeverBelow) {
  Histogram h;
  // 1 ms .. 10 s in 1 ms steps: the k-th smallest value is k ms.
  for (uint64_t ms = 1; ms <= 10'000; ++ms) h.Record(ms * 1000);
  for (double p : {10.0, 50.0, 90.0, 99.0, 99.9}) {
    const uint64_t exact = static_cast<uint64_t>(p * 100 + 0.5) * 1000;  // p% of 10000 ms
    const uint64_t got = h.ValueAt(p);
    EXPECT_GE(got, exact) << "p" << p;
    EXPECT_LE(static_cast<double>(got), exact * 1.002 + 1) << "p" << p;
  }
  EXPECT_EQ(h.ValueAt(100), 10'000'000u);
  EXPECT_EQ(h.max(), 10'000'000u);
}

TEST(HistogramTest, BucketsTileTheRangeInOrder) {
  uint64_t previous_high = 0;
  for (size_t i = 1; i < Histogram::kBucketCount; ++i) {
    ASSERT_EQ(Histogram::LowestIn(i), previous_high + 1) << i;
    ASSERT_GE(Histogram::HighestIn(i), Histogram::LowestIn(i)) << i;
    ASSERT_EQ(Histogram::IndexOf(Histogram::LowestIn(i)), i);
    ASSERT_EQ(Histogram::IndexOf(Histogram::HighestIn(i)), i);
    previous_high = Histogram::HighestIn(i);
  }
  EXPECT_EQ(previous_high, Histogram::kMaxValue);
  EXPECT_EQ(Histogram::IndexOf(UINT64_MAX), Histogram::kBucketCount - 1);
}

TEST(HistogramTest, MergeAddsAndEmptyIsZero) {
  Histogram a, b, empty;
  EXPECT_EQ(empty.ValueAt(50), 0u);
  EXPECT_EQ(empty.min(), 0u);
  for (uint64_t v = 1; v <= 500; ++v) a.Record(v);
  for (uint64_t v = 501; v <= 1000; ++v) b.Record(v);
  a.Merge(b);
  a.Merge(empty);
  EXPECT_EQ(a.count(), 1000u);
  EXPECT_EQ(a.ValueAt(50), 500u);
  EXPECT_EQ(a.ValueAt(99), 990u);
  EXPECT_EQ(a.min(), 1u);
  EXPECT_EQ(a.max(), 1000u);
  a.RecordN(5'000'000, 1000);  // half the values now sit at 5 s
  EXPECT_GE(a.ValueAt(75), 5'000'000u);
  EXPECT_LE(a.ValueAt(75), 5'010'000u);
}
