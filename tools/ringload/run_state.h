// tools/ringload/run_state.h — what the main thread and the workers on the loops share.
//
// LiveCounters are written by one loop thread (plain relaxed load+store, no read-modify-
// write, each on its own cache line) and read by the main thread for the progress line.
// RunControl is the handful of atomics that cross threads rarely: a worker says it has
// finished, errors are added when they happen (errors are rare; successes never touch it).
// Everything else a worker owns is read by the main thread only after the loops joined.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/synchronization/notification.h"

namespace ringmail::ringload {

struct alignas(64) LiveCounters {
  std::atomic<uint64_t> messages{0};  // send: accepted; sink: answered
  std::atomic<uint64_t> failed{0};    // send: rejected or lost; sink: rejected
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> errors{0};

  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

class RunControl {
 public:
  explicit RunControl(int workers) : running_(workers) {}

  void WorkerDone() {
    if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) all_done_.Notify();
  }
  absl::Notification& all_done() { return all_done_; }

  // Returns the total after adding.
  int64_t AddErrors(int64_t n) { return errors_.fetch_add(n, std::memory_order_relaxed) + n; }
  int64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  // Counted by the sink when --expect is set; returns the total after adding.
  uint64_t AddAnswered(uint64_t n) {
    return answered_.fetch_add(n, std::memory_order_relaxed) + n;
  }
  // Set by a worker (e.g. --expect reached) to ask the main thread to stop the run.
  void RequestEnd() {
    if (!end_requested_.exchange(true)) end_.Notify();
  }
  absl::Notification& end() { return end_; }

 private:
  std::atomic<int> running_;
  std::atomic<int64_t> errors_{0};
  std::atomic<uint64_t> answered_{0};
  std::atomic<bool> end_requested_{false};
  absl::Notification all_done_;
  absl::Notification end_;
};

// Reply codes seen, by code (000..599; 0 stands for "no reply: connection lost").
struct CodeCounts {
  std::array<uint64_t, 600> counts{};
  void Add(int code) {
    if (code >= 0 && code < 600) ++counts[static_cast<size_t>(code)];
  }
  void Merge(const CodeCounts& o) {
    for (size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
  }
};

}  // namespace ringmail::ringload
