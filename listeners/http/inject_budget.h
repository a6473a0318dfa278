// listeners/http/inject_budget.h — the bytes of built injection messages one loop may hold
// until the spool has answered for them.
//
// Why: templates multiply a small request into many messages, and a request's messages are
// built on the daemon's IO pool, many at once. A check made only before building lets a
// burst of concurrent requests through together (each sees the budget still empty), so the
// messages charge the budget as they are built, on whichever thread builds them.
//
// Contract
// - One InjectBudget per HTTP listener loop, shared (std::shared_ptr) with that loop's build
//   jobs, which may outlive a connection. Used from the loop and the pool: the count is
//   atomic, and nothing else is shared.
// - A BudgetCharge is what one request holds: TryAdd charges a built message (all of it or
//   nothing, and only while the total stays within `limit`); the request gives back each
//   message as the spool answers for it (Release), and whatever it still holds when the
//   charge is destroyed (a plan dropped, a request refused after building).
// - A charge without a budget (tests, the fuzzer) holds nothing, never refuses, and takes
//   any Release as a no-op.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace ringmail::listeners::http {

class InjectBudget {
 public:
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  // Adds `bytes` when the total stays ≤ limit; false (nothing added) otherwise.
  bool TryCharge(uint64_t bytes, uint64_t limit);
  void Release(uint64_t bytes);

 private:
  std::atomic<uint64_t> used_{0};
};

class BudgetCharge {
 public:
  BudgetCharge() = default;
  explicit BudgetCharge(std::shared_ptr<InjectBudget> budget) : budget_(std::move(budget)) {}
  BudgetCharge(BudgetCharge&& other) noexcept;
  BudgetCharge& operator=(BudgetCharge&& other) noexcept;
  BudgetCharge(const BudgetCharge&) = delete;
  BudgetCharge& operator=(const BudgetCharge&) = delete;
  ~BudgetCharge() { Release(held_); }

  bool TryAdd(uint64_t bytes, uint64_t limit);
  void Release(uint64_t bytes);  // at most what is held
  uint64_t held() const { return held_; }

 private:
  std::shared_ptr<InjectBudget> budget_;
  uint64_t held_ = 0;
};

}  // namespace ringmail::listeners::http
