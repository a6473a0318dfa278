// delivery/retry.h — when to try a deferred recipient again, and when to give up.
//
// Pure policy: no clock reads, no RNG of its own. Called on the delivery loop that owns a
// recipient after a temporary failure (4xx, timeout, no MX answering); times are Unix
// milliseconds as core::Message keeps them (received_ms, next_attempt_ms), taken by the
// caller from its loop's cached time.
//
//   backoff(n)   = min(retry_interval * 2^(n-1), max_retry_interval)   n = attempts so far
//   jittered     = backoff(n) * (1 - jitter_fraction * u)               u in [0, 1) injected
//   expiry       = received + message_expiration
//   after a failure at `now`:  now >= expiry                  → kExpire (bounce, 4.4.7)
//                              otherwise next = now + jittered, but never past expiry:
//                              the last attempt happens at the expiry instant, so a
//                              message is neither bounced early nor retried late.
//
// Jitter only shortens the delay, so max_retry_interval stays a true bound and a burst of
// messages deferred together (a destination's outage) does not come back as one burst.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "config/config.h"

namespace ringmail::delivery {

struct RetryPolicy {
  absl::Duration retry_interval = absl::Minutes(1);
  absl::Duration max_retry_interval = absl::Hours(1);
  absl::Duration message_expiration = absl::Hours(24 * 5);
  double jitter_fraction = 0.0;  // 0..1; clamped

  // The three durations from the global options; jitter as given.
  static RetryPolicy FromConfig(const config::GlobalOptions& global,
                                double jitter_fraction = 0.0);
};

// The delay before attempt attempts+1, after `attempts` (>= 1) failed ones; `unit_sample`
// in [0, 1) (clamped) scales the jitter. Never below 1 ms, never above max_retry_interval.
uint64_t BackoffMs(const RetryPolicy& policy, uint32_t attempts, double unit_sample = 0.0);

// When the message (received at `received_ms`) must no longer be retried.
uint64_t ExpiryMs(const RetryPolicy& policy, uint64_t received_ms);
bool Expired(const RetryPolicy& policy, uint64_t received_ms, uint64_t now_ms);

struct RetryDecision {
  enum class Kind : uint8_t { kRetry, kExpire };
  Kind kind = Kind::kRetry;
  uint64_t next_attempt_ms = 0;  // kRetry only
};

// After the `attempts`-th attempt (counting the one that just failed) failed temporarily.
RetryDecision AfterTemporaryFailure(const RetryPolicy& policy, uint64_t received_ms,
                                    uint64_t now_ms, uint32_t attempts,
                                    double unit_sample = 0.0);

}  // namespace ringmail::delivery
