#include "core/timers.h"

#include <limits>

namespace ringmail::core {

bool TimerQueue::Less(const Timer* a, const Timer* b) const {
  if (a->deadline_ms != b->deadline_ms) return a->deadline_ms < b->deadline_ms;
  return a->sequence < b->sequence;
}

void TimerQueue::Place(size_t i, Timer* t) {
  heap_[i] = t;
  t->heap_index = i;
}

void TimerQueue::SiftUp(size_t i) {
  Timer* t = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!Less(t, heap_[parent])) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, t);
}

void TimerQueue::SiftDown(size_t i) {
  Timer* t = heap_[i];
  const size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && Less(heap_[child + 1], heap_[child])) ++child;
    if (!Less(heap_[child], t)) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, t);
}

void TimerQueue::RemoveAt(size_t i) {
  Timer* removed = heap_[i];
  Timer* last = heap_.back();
  heap_.pop_back();
  removed->heap_index = Timer::kNotArmed;
  if (i == heap_.size()) return;
  Place(i, last);
  SiftDown(i);
  SiftUp(last->heap_index);
}

void TimerQueue::Arm(Timer& timer, uint64_t deadline_ms) {
  RM_DCHECK(timer.handler != nullptr);
  if (timer.armed()) RemoveAt(timer.heap_index);
  timer.deadline_ms = deadline_ms;
  timer.sequence = next_sequence_++;
  heap_.push_back(&timer);
  timer.heap_index = heap_.size() - 1;
  SiftUp(timer.heap_index);
}

void TimerQueue::Cancel(Timer& timer) {
  if (!timer.armed()) return;
  RM_DCHECK(timer.heap_index < heap_.size() && heap_[timer.heap_index] == &timer);
  RemoveAt(timer.heap_index);
}

uint64_t TimerQueue::NextDeadline() const {
  return heap_.empty() ? std::numeric_limits<uint64_t>::max() : heap_.front()->deadline_ms;
}

void TimerQueue::Clear() {
  for (Timer* t : heap_) t->heap_index = Timer::kNotArmed;
  heap_.clear();
}

size_t TimerQueue::FireDue(uint64_t now_ms, size_t max) {
  size_t fired = 0;
  while (fired < max && !heap_.empty() && heap_.front()->deadline_ms <= now_ms) {
    Timer* t = heap_.front();
    RemoveAt(0);
    ++fired;
    t->handler(t->owner, *t);
  }
  return fired;
}

}  // namespace ringmail::core
