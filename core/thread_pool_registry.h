// core/thread_pool_registry.h — the daemon's set of named thread pools.
//
// Contract:
//   - ringmaild builds the spec list: StandardThreadPoolSpecs(), then the config file's
//     `ThreadPool "NAME" { ... }` scopes through ApplyThreadPoolOverrides (it maps the config
//     structs to ThreadPoolOverride; core does not know config). The registry creates one
//     ThreadPool per spec and owns them.
//   - The set of pools is fixed at Create: lookups need no lock and a returned ThreadPool*
//     stays valid for the registry's lifetime. A pool added by a config reload therefore
//     needs a restart (like a Backlog change); Concurrency changes apply live.
//   - Names are matched case-insensitively ("unlink" finds "Unlink"); stats show them as
//     first spelled.
//   - Every method is thread-safe. StopAll (and the destructor) stops the pools one by one
//     in spec order, each draining by default (see ThreadPool::Stop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/thread_pool.h"

namespace ringmail::core {

// The standard pools, so that callers name them by constant rather than by string literal.
inline constexpr std::string_view kSwapOutPool = "SwapOut";
inline constexpr std::string_view kSwapInPool = "SwapIn";
inline constexpr std::string_view kUnlinkPool = "Unlink";
inline constexpr std::string_view kBatchUnlinkPool = "Batch_Unlink";
inline constexpr std::string_view kClosePool = "Close";
inline constexpr std::string_view kCpuPool = "CPU";
inline constexpr std::string_view kIoPool = "IO";
inline constexpr std::string_view kSpoolInPool = "SpoolIn";

// Backlog of a standard pool (other than Unlink) and of a new pool that names none.
inline constexpr uint32_t kThreadPoolBacklogDefault = 1024;
// Concurrency of a new (non-standard) pool that names none.
inline constexpr uint32_t kThreadPoolConcurrencyDefault = 1;
// How many pools a configuration may define, standard ones included.
inline constexpr size_t kThreadPoolCountMax = 64;

// SwapOut 5, SwapIn 5, Unlink 6 (Backlog 100), Batch_Unlink 4, Close 0 (inline), CPU 4,
// IO 50, SpoolIn 1; libc default stacks.
std::vector<ThreadPoolSpec> StandardThreadPoolSpecs();

// One `ThreadPool "NAME" { ... }` scope: fields left unset keep the base spec's value, or the
// defaults above for a name not in the base.
struct ThreadPoolOverride {
  std::string name;
  std::optional<uint32_t> concurrency;
  std::optional<uint32_t> backlog;
  std::optional<uint64_t> stack_size_bytes;
};

// Applies `overrides` in order onto `base` (matching names case-insensitively; a new name is
// appended). Every resulting spec is validated; InvalidArgument names the offending pool, or
// says that there would be more than kThreadPoolCountMax pools.
absl::StatusOr<std::vector<ThreadPoolSpec>> ApplyThreadPoolOverrides(
    std::vector<ThreadPoolSpec> base, absl::Span<const ThreadPoolOverride> overrides);

class ThreadPoolRegistry {
 public:
  // Creates every pool. InvalidArgument for a bad spec, a name given twice (ignoring case)
  // or more than kThreadPoolCountMax specs, all checked before any thread starts; otherwise
  // the first error from ThreadPool::Create (the pools already started are stopped again).
  static absl::StatusOr<std::unique_ptr<ThreadPoolRegistry>> Create(
      absl::Span<const ThreadPoolSpec> specs);

  ~ThreadPoolRegistry();  // StopAll(StopMode::kDrain)
  ThreadPoolRegistry(const ThreadPoolRegistry&) = delete;
  ThreadPoolRegistry& operator=(const ThreadPoolRegistry&) = delete;

  // nullptr if there is no pool of that name.
  ThreadPool* Find(std::string_view name) const;
  // NotFound (naming the pool) if there is no pool of that name.
  absl::StatusOr<ThreadPool*> Get(std::string_view name) const;

  // `ringctl threadpool set NAME concurrency N`: NotFound, or ThreadPool::SetConcurrency's.
  absl::Status SetConcurrency(std::string_view name, uint32_t concurrency);

  // `ringctl threadpool list`: one snapshot per pool, in spec order.
  std::vector<ThreadPoolStats> ListStats() const;

  void StopAll(StopMode mode = StopMode::kDrain);

  size_t size() const { return pools_.size(); }

 private:
  ThreadPoolRegistry() = default;

  std::vector<std::unique_ptr<ThreadPool>> pools_;         // spec order
  absl::flat_hash_map<std::string, ThreadPool*> by_name_;  // key: lower-case name
};

}  // namespace ringmail::core
