// core/thread_pool_registry.cc — see thread_pool_registry.h for the contract.
#include "core/thread_pool_registry.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ringmail::core {
namespace {

// Debian's abseil keeps its own absl::string_view (not an alias of std::string_view).
std::string LowerName(std::string_view name) {
  return absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
}

absl::Status TooManyPools() {
  return absl::InvalidArgumentError(
      absl::StrCat("more than ", kThreadPoolCountMax, " thread pools defined"));
}

}  // namespace

std::vector<ThreadPoolSpec> StandardThreadPoolSpecs() {
  auto spec = [](std::string_view name, uint32_t concurrency,
                 uint32_t backlog = kThreadPoolBacklogDefault) {
    return ThreadPoolSpec{std::string(name), concurrency, backlog, /*stack_size_bytes=*/0};
  };
  return {
      spec(kSwapOutPool, 5),     spec(kSwapInPool, 5),       spec(kUnlinkPool, 6, 100),
      spec(kBatchUnlinkPool, 4), spec(kClosePool, 0),        spec(kCpuPool, 4),
      spec(kIoPool, 50),         spec(kSpoolInPool, 1),
  };
}

absl::StatusOr<std::vector<ThreadPoolSpec>> ApplyThreadPoolOverrides(
    std::vector<ThreadPoolSpec> base, absl::Span<const ThreadPoolOverride> overrides) {
  for (const ThreadPoolOverride& change : overrides) {
    ThreadPoolSpec* target = nullptr;
    for (ThreadPoolSpec& spec : base) {
      if (absl::EqualsIgnoreCase(spec.name, change.name)) target = &spec;
    }
    if (target == nullptr) {
      if (base.size() >= kThreadPoolCountMax) return TooManyPools();
      base.push_back(ThreadPoolSpec{change.name, kThreadPoolConcurrencyDefault,
                                    kThreadPoolBacklogDefault, /*stack_size_bytes=*/0});
      target = &base.back();
    }
    if (change.concurrency.has_value()) target->concurrency = *change.concurrency;
    if (change.backlog.has_value()) target->backlog = *change.backlog;
    if (change.stack_size_bytes.has_value()) target->stack_size_bytes = *change.stack_size_bytes;
  }
  for (const ThreadPoolSpec& spec : base) {
    absl::Status status = ValidateThreadPoolSpec(spec);
    if (!status.ok()) return status;
  }
  return base;
}

absl::StatusOr<std::unique_ptr<ThreadPoolRegistry>> ThreadPoolRegistry::Create(
    absl::Span<const ThreadPoolSpec> specs) {
  // Validate everything before starting any thread, so a bad config starts nothing.
  if (specs.size() > kThreadPoolCountMax) return TooManyPools();
  absl::flat_hash_map<std::string, size_t> seen;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::Status status = ValidateThreadPoolSpec(specs[i]);
    if (!status.ok()) return status;
    if (!seen.emplace(LowerName(specs[i].name), i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("thread pool \"", specs[i].name, "\" is defined twice"));
    }
  }
  std::unique_ptr<ThreadPoolRegistry> registry(new ThreadPoolRegistry());
  registry->pools_.reserve(specs.size());
  for (const ThreadPoolSpec& spec : specs) {
    absl::StatusOr<std::unique_ptr<ThreadPool>> pool = ThreadPool::Create(spec);
    if (!pool.ok()) return pool.status();  // the registry's destructor stops the others
    registry->by_name_.emplace(LowerName(spec.name), pool->get());
    registry->pools_.push_back(*std::move(pool));
  }
  return registry;
}

ThreadPoolRegistry::~ThreadPoolRegistry() { StopAll(StopMode::kDrain); }

ThreadPool* ThreadPoolRegistry::Find(std::string_view name) const {
  if (name.size() > kThreadPoolNameLengthMax) return nullptr;  // a lookup key from outside
  auto it = by_name_.find(LowerName(name));
  return it == by_name_.end() ? nullptr : it->second;
}

absl::StatusOr<ThreadPool*> ThreadPoolRegistry::Get(std::string_view name) const {
  ThreadPool* pool = Find(name);
  if (pool == nullptr) {
    // Clip what we echo: the name may come from a control client.
    return absl::NotFoundError(absl::StrCat(
        "no thread pool named \"", std::string(name.substr(0, kThreadPoolNameLengthMax)), "\""));
  }
  return pool;
}

absl::Status ThreadPoolRegistry::SetConcurrency(std::string_view name, uint32_t concurrency) {
  absl::StatusOr<ThreadPool*> pool = Get(name);
  if (!pool.ok()) return pool.status();
  return (*pool)->SetConcurrency(concurrency);
}

std::vector<ThreadPoolStats> ThreadPoolRegistry::ListStats() const {
  std::vector<ThreadPoolStats> stats;
  stats.reserve(pools_.size());
  for (const auto& pool : pools_) stats.push_back(pool->Stats());
  return stats;
}

void ThreadPoolRegistry::StopAll(StopMode mode) {
  for (const auto& pool : pools_) pool->Stop(mode);
}

}  // namespace ringmail::core
