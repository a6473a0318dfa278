#include "listeners/http/inject_budget.h"

#include <utility>

#include "base/check.h"

namespace ringmail::listeners::http {

bool InjectBudget::TryCharge(uint64_t bytes, uint64_t limit) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit || used > limit - bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void InjectBudget::Release(uint64_t bytes) {
  const uint64_t before = used_.fetch_sub(bytes, std::memory_order_relaxed);
  RM_CHECK(before >= bytes) << "inject budget released " << bytes << " of " << before;
}

BudgetCharge::BudgetCharge(BudgetCharge&& other) noexcept
    : budget_(std::move(other.budget_)), held_(std::exchange(other.held_, 0)) {}

BudgetCharge& BudgetCharge::operator=(BudgetCharge&& other) noexcept {
  if (this != &other) {
    Release(held_);
    budget_ = std::move(other.budget_);
    held_ = std::exchange(other.held_, 0);
  }
  return *this;
}

bool BudgetCharge::TryAdd(uint64_t bytes, uint64_t limit) {
  if (budget_ == nullptr) return true;
  if (!budget_->TryCharge(bytes, limit)) return false;
  held_ += bytes;
  return true;
}

void BudgetCharge::Release(uint64_t bytes) {
  if (budget_ == nullptr) return;  // holds nothing, as TryAdd took nothing
  RM_CHECK(bytes <= held_) << "released " << bytes << " of a charge of " << held_;
  if (bytes == 0) return;
  held_ -= bytes;
  budget_->Release(bytes);
}

}  // namespace ringmail::listeners::http
