// Retry policy: backoff growth and cap, jitter, expiry — table-driven.
#include "delivery/retry.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

constexpr uint64_t kMinute = 60 * 1000;
constexpr uint64_t kHour = 60 * kMinute;
constexpr uint64_t kDay = 24 * kHour;

RetryPolicy Policy(double jitter = 0.0) {
  RetryPolicy policy;
  policy.retry_interval = absl::Minutes(1);
  policy.max_retry_interval = absl::Hours(1);
  policy.message_expiration = absl::Hours(24 * 5);
  policy.jitter_fraction = jitter;
  return policy;
}

TEST(RetryTest, BackoffTable) {
  struct Row {
    uint32_t attempts;
    double jitter;
    double sample;
    uint64_t want_ms;
  };
  const std::vector<Row> rows = {
      {0, 0, 0, 1 * kMinute},  // treated as the first
      {1, 0, 0, 1 * kMinute},
      {2, 0, 0, 2 * kMinute},
      {3, 0, 0, 4 * kMinute},
      {4, 0, 0, 8 * kMinute},
      {6, 0, 0, 32 * kMinute},
      {7, 0, 0, 1 * kHour},  // 64 min capped
      {8, 0, 0, 1 * kHour},
      {64, 0, 0, 1 * kHour},
      {65, 0, 0, 1 * kHour},
      {std::numeric_limits<uint32_t>::max(), 0, 0, 1 * kHour},
      {1, 0.5, 0.0, 1 * kMinute},  // u = 0: no cut
      {1, 0.5, 0.5, 45 * 1000},    // cut by 0.5 * 0.5
      {3, 0.5, 1.0, 2 * kMinute},  // cut by half at most
      {7, 0.2, 0.5, 54 * kMinute},
      {1, 0.0, 0.9, 1 * kMinute},  // no jitter configured
      {2, 5.0, 0.5, 1 * kMinute},  // fraction clamped to 1
      {2, 1.0, 1.0, 1},            // never below 1 ms
      {2, 0.5, -3.0, 2 * kMinute}, // sample clamped to 0
  };
  for (const Row& row : rows) {
    EXPECT_EQ(BackoffMs(Policy(row.jitter), row.attempts, row.sample), row.want_ms)
        << "attempts " << row.attempts << " jitter " << row.jitter << " u " << row.sample;
  }
}

TEST(RetryTest, DecisionTable) {
  const uint64_t received = 1'700'000'000'000;
  const uint64_t expiry = received + 5 * kDay;
  struct Row {
    uint64_t now;
    uint32_t attempts;
    RetryDecision::Kind kind;
    uint64_t next;
  };
  const std::vector<Row> rows = {
      {received + 1000, 1, RetryDecision::Kind::kRetry, received + 1000 + kMinute},
      {received + kHour, 5, RetryDecision::Kind::kRetry, received + kHour + 16 * kMinute},
      {received + 2 * kDay, 40, RetryDecision::Kind::kRetry, received + 2 * kDay + kHour},
      // The last retry is pulled in to the expiry instant, not past it.
      {expiry - 10 * kMinute, 40, RetryDecision::Kind::kRetry, expiry},
      {expiry - 1, 40, RetryDecision::Kind::kRetry, expiry},
      {expiry, 41, RetryDecision::Kind::kExpire, 0},
      {expiry + kDay, 42, RetryDecision::Kind::kExpire, 0},
  };
  for (const Row& row : rows) {
    RetryDecision d = AfterTemporaryFailure(Policy(), received, row.now, row.attempts);
    EXPECT_EQ(d.kind, row.kind) << "now " << row.now;
    if (row.kind == RetryDecision::Kind::kRetry) {
      EXPECT_EQ(d.next_attempt_ms, row.next);
    }
  }
  EXPECT_FALSE(Expired(Policy(), received, expiry - 1));
  EXPECT_TRUE(Expired(Policy(), received, expiry));
  EXPECT_EQ(ExpiryMs(Policy(), received), expiry);
}

TEST(RetryTest, DegenerateDurationsStaySane) {
  RetryPolicy policy;
  policy.retry_interval = absl::ZeroDuration();
  policy.max_retry_interval = -absl::Seconds(5);
  policy.message_expiration = absl::InfiniteDuration();
  EXPECT_EQ(BackoffMs(policy, 1), 1u);
  EXPECT_EQ(BackoffMs(policy, 30), 1u);
  const uint64_t near_max = std::numeric_limits<uint64_t>::max() - 10;
  EXPECT_FALSE(Expired(policy, near_max, near_max));
  RetryDecision d = AfterTemporaryFailure(policy, near_max, near_max, 3);
  EXPECT_EQ(d.kind, RetryDecision::Kind::kRetry);
  EXPECT_GE(d.next_attempt_ms, near_max);

  policy.retry_interval = absl::Hours(2);  // larger than the cap: the cap rises to it
  policy.max_retry_interval = absl::Hours(1);
  EXPECT_EQ(BackoffMs(policy, 3), 2 * kHour);
}

TEST(RetryTest, FromConfig) {
  config::GlobalOptions global;
  global.retry_interval = absl::Minutes(2);
  global.max_retry_interval = absl::Hours(4);
  global.message_expiration = absl::Hours(24);
  RetryPolicy policy = RetryPolicy::FromConfig(global, 0.25);
  EXPECT_EQ(policy.retry_interval, absl::Minutes(2));
  EXPECT_EQ(policy.max_retry_interval, absl::Hours(4));
  EXPECT_EQ(policy.message_expiration, absl::Hours(24));
  EXPECT_DOUBLE_EQ(policy.jitter_fraction, 0.25);
  EXPECT_EQ(BackoffMs(policy, 2), 4 * kMinute);
}

}  // namespace
}  // namespace ringmail::delivery
