// bench/thread_pool_bench.cc — what a job costs to hand to a ThreadPool.
//
//   BM_SubmitAndRun/N     a producer pushes empty jobs through a pool of N workers (Submit, so
//                         the producer waits when the backlog of 1024 is full); per job.
//   BM_TrySubmitInline    concurrency 0 (the Close pool): lock, run on the caller, count.
//   BM_TrySubmitRejected  the braking path a loop takes when the backlog is full.
#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "benchmark/benchmark.h"
#include "core/thread_pool.h"

namespace ringmail::core {
namespace {

std::unique_ptr<ThreadPool> MakePool(uint32_t concurrency, uint32_t backlog) {
  auto pool = ThreadPool::Create({"bench", concurrency, backlog, 0});
  if (!pool.ok()) return nullptr;
  return *std::move(pool);
}

void BM_SubmitAndRun(benchmark::State& state) {
  auto pool = MakePool(static_cast<uint32_t>(state.range(0)), 1024);
  if (pool == nullptr) {
    state.SkipWithError("cannot create pool");
    return;
  }
  std::atomic<int64_t> ran{0};
  int64_t submitted = 0;
  for (auto _ : state) {
    pool->Submit([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
    ++submitted;
  }
  pool->Stop();  // drains: every submitted job has run when this returns
  if (ran.load() != submitted) state.SkipWithError("a job was lost");
  state.SetItemsProcessed(submitted);
}
BENCHMARK(BM_SubmitAndRun)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

void BM_TrySubmitInline(benchmark::State& state) {
  auto pool = MakePool(0, 1);
  int64_t ran = 0;
  for (auto _ : state) {
    pool->TrySubmit([&ran] { ++ran; });
  }
  benchmark::DoNotOptimize(ran);
  state.SetItemsProcessed(ran);
}
BENCHMARK(BM_TrySubmitInline);

void BM_TrySubmitRejected(benchmark::State& state) {
  auto pool = MakePool(1, 1);
  absl::Mutex mu;
  bool open = false;
  // Hold the only worker and fill the only slot, so every TrySubmit below is refused.
  absl::Notification started;
  pool->TrySubmit([&] {
    started.Notify();
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&open));
  });
  started.WaitForNotification();
  while (pool->TrySubmit([] {}) == SubmitResult::kAccepted) {
  }
  ThreadPool::Job job = [] {};
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool->TrySubmit(std::move(job)));
  }
  {
    absl::MutexLock lock(&mu);
    open = true;
  }
  pool->Stop();
}
BENCHMARK(BM_TrySubmitRejected);

}  // namespace
}  // namespace ringmail::core

BENCHMARK_MAIN();
