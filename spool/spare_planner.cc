// spool/spare_planner.cc — see spare_planner.h for the rules and why.
#include "spool/spare_planner.h"

#include <algorithm>

namespace ringmail::spool {

void SparePlanner::Appended(uint64_t bytes, uint64_t now_us) {
  // The first batch sets the average; later ones move it by 1/16.
  batch_bytes_ = batches_++ == 0 ? static_cast<double>(bytes)
                                 : batch_bytes_ + (static_cast<double>(bytes) - batch_bytes_) / 16;
  if (window_start_us_ == 0 || now_us < window_start_us_) {
    window_start_us_ = now_us;  // the first window opens here: what came before is not in it
    window_bytes_ = 0;
    return;
  }
  window_bytes_ += bytes;
  const uint64_t elapsed = now_us - window_start_us_;
  if (elapsed < kWindowUs) return;
  const double window_rate = static_cast<double>(window_bytes_) / static_cast<double>(elapsed);
  // The peak, decaying slowly: a burst counts at once (the spare must be ready for it), and
  // a lull lowers the estimate by an eighth per window only — an idle spell is one window,
  // so the burst after it is still expected at the rate of the last one.
  rate_ = std::max(window_rate, rate_ * kDecay);
  window_start_us_ = now_us;
  window_bytes_ = 0;
}

void SparePlanner::CreationSucceeded(uint64_t now_us) {
  if (creation_started_us_ == 0 || now_us < creation_started_us_) return;
  const uint64_t took = std::max<uint64_t>(now_us - creation_started_us_, 1);
  // A slower creation counts at once, a faster one halfway: the disk's load varies.
  creation_us_ = took >= creation_us_ ? took : (creation_us_ + took) / 2;
  creation_started_us_ = 0;
}

bool SparePlanner::FreshSpareDue(uint64_t used, uint64_t capacity) const {
  if (capacity == 0 || used >= capacity) return true;
  if (used < capacity / 2) return false;
  const uint64_t left = capacity - used;
  if (left <= capacity / 8) return true;
  if (creation_us_ == 0 || rate_ <= 0) return true;  // nothing measured: half full, as before
  const double left_us = static_cast<double>(left) / rate_;
  const double needed_us = static_cast<double>(kCreationsAhead * creation_us_ + kSlackUs);
  return left_us <= needed_us;
}

}  // namespace ringmail::spool
