// core/mpsc_queue.h — a bounded multi-producer single-consumer queue (the loop inbox).
//
// A ring of cells each carrying a sequence number (Vyukov's bounded queue design): a
// producer claims a slot with one CAS on the tail, the consumer needs no atomic RMW at all.
// TryPush never blocks and never grows: it returns false when full, and the caller brakes
// (STYLE.md principle 7). Producers: any thread. Consumer: the owning loop only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "base/check.h"

namespace ringmail::core {

template <typename T>
class MpscQueue {
 public:
  explicit MpscQueue(size_t capacity_pow2) : mask_(capacity_pow2 - 1) {
    RM_CHECK(capacity_pow2 >= 2 && (capacity_pow2 & mask_) == 0)
        << "capacity must be a power of two";
    cells_ = std::make_unique<Cell[]>(capacity_pow2);
    for (size_t i = 0; i < capacity_pow2; ++i) {
      cells_[i].sequence.store(i, std::memory_order_relaxed);
    }
  }
  ~MpscQueue() {
    while (TryPop().has_value()) {
    }
  }
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;

  size_t capacity() const { return mask_ + 1; }

  bool TryPush(T&& value) {
    size_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos & mask_];
      size_t seq = cell.sequence.load(std::memory_order_acquire);
      intptr_t diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          new (&cell.storage) T(std::move(value));
          cell.sequence.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (diff < 0) {
        return false;  // full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  std::optional<T> TryPop() {
    Cell& cell = cells_[head_ & mask_];
    size_t seq = cell.sequence.load(std::memory_order_acquire);
    if (static_cast<intptr_t>(seq) - static_cast<intptr_t>(head_ + 1) < 0) return std::nullopt;
    T* item = std::launder(reinterpret_cast<T*>(&cell.storage));
    std::optional<T> out(std::move(*item));
    item->~T();
    cell.sequence.store(head_ + mask_ + 1, std::memory_order_release);
    ++head_;
    return out;
  }

 private:
  struct Cell {
    std::atomic<size_t> sequence;
    alignas(T) unsigned char storage[sizeof(T)];
  };

  const size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<size_t> tail_{0};  // producers
  alignas(64) size_t head_ = 0;              // consumer only
};

}  // namespace ringmail::core
