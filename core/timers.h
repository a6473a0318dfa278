// core/timers.h — a loop's deadlines: an intrusive min-heap of Timer records.
//
// Thousands of session deadlines are not thousands of SQEs: the loop asks this queue for
// the earliest deadline and passes it as the wait timeout of io_uring_enter, then fires
// what is due after reaping. A Timer is embedded in its owner (like Operation); arming,
// re-arming and cancelling cost O(log n) and allocate nothing once the heap has grown.
//
// Thread: the owning loop's only. An owner must Cancel() its timer before it dies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/check.h"

namespace ringmail::core {

struct Timer;
using TimerHandler = void (*)(void* owner, Timer& timer);

struct Timer {
  static constexpr size_t kNotArmed = static_cast<size_t>(-1);

  uint64_t deadline_ms = 0;
  size_t heap_index = kNotArmed;
  uint64_t sequence = 0;  // FIFO among equal deadlines
  TimerHandler handler = nullptr;
  void* owner = nullptr;

  Timer() = default;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool armed() const { return heap_index != kNotArmed; }

  template <auto Method, typename Owner>
  void Bind(Owner* o) {
    owner = o;
    handler = [](void* raw, Timer& t) { (static_cast<Owner*>(raw)->*Method)(t); };
  }
};

class TimerQueue {
 public:
  // Arms (or re-arms) `timer` to fire at `deadline_ms` on the loop's clock.
  void Arm(Timer& timer, uint64_t deadline_ms);
  void Cancel(Timer& timer);
  // Earliest deadline, or UINT64_MAX when nothing is armed.
  uint64_t NextDeadline() const;
  // Fires every timer due at `now_ms`, at most `max` of them (a bounded batch per turn);
  // returns how many fired. A handler may re-arm or cancel any timer.
  size_t FireDue(uint64_t now_ms, size_t max);
  size_t size() const { return heap_.size(); }
  // Disarms every timer without firing it (the loop is gone).
  void Clear();

 private:
  bool Less(const Timer* a, const Timer* b) const;
  void SiftUp(size_t i);
  void SiftDown(size_t i);
  void Place(size_t i, Timer* t);
  void RemoveAt(size_t i);

  std::vector<Timer*> heap_;
  uint64_t next_sequence_ = 0;
};

}  // namespace ringmail::core
