// delivery/retry.cc — exponential backoff with a cap, optional downward jitter, expiry.
#include "delivery/retry.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ringmail::delivery {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// A duration as whole milliseconds, clamped to [0, 2^63): config validation keeps these
// sane, but an infinite or negative one must still not wrap around.
uint64_t ClampMs(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  if (d == absl::InfiniteDuration()) {
    return static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  }
  return static_cast<uint64_t>(absl::ToInt64Milliseconds(d));
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) { return a > kU64Max - b ? kU64Max : a + b; }

}  // namespace

RetryPolicy RetryPolicy::FromConfig(const config::GlobalOptions& global,
                                    double jitter_fraction) {
  RetryPolicy policy;
  policy.retry_interval = global.retry_interval;
  policy.max_retry_interval = global.max_retry_interval;
  policy.message_expiration = global.message_expiration;
  policy.jitter_fraction = jitter_fraction;
  return policy;
}

uint64_t BackoffMs(const RetryPolicy& policy, uint32_t attempts, double unit_sample) {
  uint64_t base = std::max<uint64_t>(ClampMs(policy.retry_interval), 1);
  uint64_t cap = std::max(ClampMs(policy.max_retry_interval), base);
  uint32_t doublings = attempts > 1 ? attempts - 1 : 0;
  uint64_t delay = base;
  // Double until the cap: at most 64 steps, no overflow (delay < cap <= 2^63 before each).
  for (uint32_t i = 0; i < doublings && delay < cap; ++i) {
    delay = delay > cap / 2 ? cap : delay * 2;
  }
  delay = std::min(delay, cap);
  double fraction = std::clamp(policy.jitter_fraction, 0.0, 1.0);
  double u = std::isnan(unit_sample) ? 0.0 : std::clamp(unit_sample, 0.0, 1.0);
  if (fraction > 0.0 && u > 0.0) {
    double cut = static_cast<double>(delay) * fraction * u;
    uint64_t cut_ms = cut >= static_cast<double>(delay) ? delay : static_cast<uint64_t>(cut);
    delay -= cut_ms;
  }
  return std::max<uint64_t>(delay, 1);
}

uint64_t ExpiryMs(const RetryPolicy& policy, uint64_t received_ms) {
  return SaturatingAdd(received_ms, ClampMs(policy.message_expiration));
}

bool Expired(const RetryPolicy& policy, uint64_t received_ms, uint64_t now_ms) {
  return now_ms >= ExpiryMs(policy, received_ms);
}

RetryDecision AfterTemporaryFailure(const RetryPolicy& policy, uint64_t received_ms,
                                    uint64_t now_ms, uint32_t attempts, double unit_sample) {
  RetryDecision decision;
  uint64_t expiry = ExpiryMs(policy, received_ms);
  if (now_ms >= expiry) {
    decision.kind = RetryDecision::Kind::kExpire;
    return decision;
  }
  decision.kind = RetryDecision::Kind::kRetry;
  uint64_t next = SaturatingAdd(now_ms, BackoffMs(policy, attempts, unit_sample));
  decision.next_attempt_ms = std::min(next, expiry);
  return decision;
}

}  // namespace ringmail::delivery
