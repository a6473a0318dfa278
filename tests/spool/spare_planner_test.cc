// Tests for spool/spare_planner.h: when a recycling writer gives up waiting for a drained
// segment and makes a fresh spare.
#include "spool/spare_planner.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace ringmail::spool {
namespace {

constexpr uint64_t kCapacity = 64ull << 20;

// Appends `bytes_per_ms` every millisecond for `ms` milliseconds, from `*now_us` on.
void Feed(SparePlanner& t, uint64_t* now_us, uint64_t bytes_per_ms, uint64_t ms) {
  for (uint64_t i = 0; i < ms; ++i) {
    *now_us += 1000;
    t.Appended(bytes_per_ms, *now_us);
  }
}

// One fresh creation measured as taking `us`.
void Created(SparePlanner& t, uint64_t at_us, uint64_t us) {
  t.CreationStarted(at_us);
  t.CreationSucceeded(at_us + us);
}

TEST(SparePlannerTest, NothingMeasuredMeansHalfFullAsBefore) {
  SparePlanner t;
  EXPECT_FALSE(t.FreshSpareDue(0, kCapacity));
  EXPECT_FALSE(t.FreshSpareDue(kCapacity / 2 - 1, kCapacity));
  EXPECT_TRUE(t.FreshSpareDue(kCapacity / 2, kCapacity));
}

TEST(SparePlannerTest, TheFirstHalfIsAlwaysLeftToDrainedSegments) {
  SparePlanner t;
  uint64_t now = 1'000'000;
  Created(t, now, 500'000);  // a slow disk: half a second per creation
  Feed(t, &now, 1 << 20, 100);  // 1 MiB/ms: the segment fills in 64 ms
  EXPECT_FALSE(t.FreshSpareDue(kCapacity / 2 - 1, kCapacity));
  EXPECT_TRUE(t.FreshSpareDue(kCapacity / 2, kCapacity));  // no time to lose after that
}

TEST(SparePlannerTest, AQuickCreationAtASteadyRateWaitsUntilNearlyFull) {
  SparePlanner t;
  uint64_t now = 1'000'000;
  Created(t, now, 20'000);      // 20 ms per creation: due 3 x 20 + 100 = 160 ms from full
  Feed(t, &now, 64 << 10, 200);  // 64 KiB/ms: 160 ms of appends are 10 MiB
  EXPECT_NEAR(t.bytes_per_us(), 65.536, 0.01);
  EXPECT_FALSE(t.FreshSpareDue(kCapacity / 2, kCapacity));
  EXPECT_FALSE(t.FreshSpareDue(kCapacity - (12ull << 20), kCapacity));
  EXPECT_TRUE(t.FreshSpareDue(kCapacity - (10ull << 20), kCapacity));
}

TEST(SparePlannerTest, TheLastEighthIsDueWhateverTheFigures) {
  SparePlanner t;
  uint64_t now = 1'000'000;
  Created(t, now, 1'000);
  Feed(t, &now, 1, 100);  // a trickle: years to fill
  EXPECT_FALSE(t.FreshSpareDue(kCapacity - kCapacity / 8 - 1, kCapacity));
  EXPECT_TRUE(t.FreshSpareDue(kCapacity - kCapacity / 8, kCapacity));
  EXPECT_TRUE(t.FreshSpareDue(kCapacity, kCapacity));
}

TEST(SparePlannerTest, ABurstCountsAtOnceALullOnlyAnEighth) {
  SparePlanner t;
  uint64_t now = 1'000'000;
  Feed(t, &now, 1 << 10, 101);  // 1 KiB/ms; the first call opens the first window
  EXPECT_NEAR(t.bytes_per_us(), 1.024, 0.001);
  Feed(t, &now, 1 << 20, 20);  // one window of 1 MiB/ms
  EXPECT_NEAR(t.bytes_per_us(), 1048.576, 0.01);
  now += 10'000'000;
  t.Appended(0, now);  // ten quiet seconds are one window: an eighth down
  EXPECT_NEAR(t.bytes_per_us(), 1048.576 * SparePlanner::kDecay, 0.01);
  Feed(t, &now, 1 << 10, 21);  // a trickle after it
  EXPECT_NEAR(t.bytes_per_us(), 1048.576 * SparePlanner::kDecay * SparePlanner::kDecay, 0.01);
}

TEST(SparePlannerTest, ASlowerCreationCountsAtOnceAFasterOneHalfway) {
  SparePlanner t;
  Created(t, 1'000, 100'000);
  EXPECT_EQ(t.creation_us(), 100'000u);
  Created(t, 500'000, 300'000);
  EXPECT_EQ(t.creation_us(), 300'000u);
  Created(t, 2'000'000, 100'000);
  EXPECT_EQ(t.creation_us(), 200'000u);
  t.CreationSucceeded(9'000'000);  // no creation started: nothing to measure
  EXPECT_EQ(t.creation_us(), 200'000u);
}

TEST(SparePlannerTest, ZerosPayUntilBatchesAverageTheirLimit) {
  SparePlanner p;
  EXPECT_TRUE(p.ZeroFillPays());  // nothing seen yet: the measured-safe choice
  uint64_t now = 1'000'000;
  for (int i = 0; i < 64; ++i) p.Appended(100 << 10, now += 1000);  // one 100 KiB session
  EXPECT_TRUE(p.ZeroFillPays());
  for (int i = 0; i < 64; ++i) p.Appended(1 << 20, now += 1000);  // 100 sessions of 100 KiB
  EXPECT_FALSE(p.ZeroFillPays());
  EXPECT_GT(p.batch_bytes(), 0.9 * (1 << 20));
  for (int i = 0; i < 64; ++i) p.Appended(6 << 10, now += 1000);  // back to 1 KiB mail
  EXPECT_TRUE(p.ZeroFillPays());
}

}  // namespace
}  // namespace ringmail::spool
