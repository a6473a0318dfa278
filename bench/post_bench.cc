// Cross-loop posting: throughput of tasks posted from one loop to another (MPSC inbox +
// MSG_RING wake), and round-trip latency of a ping-pong between two loops.
#include <benchmark/benchmark.h>

#include <atomic>

#include "absl/synchronization/notification.h"
#include "core/loop.h"

namespace ringmail::core {
namespace {

std::unique_ptr<Loop> Make(const char* name, int cpu) {
  LoopOptions o;
  o.name = name;
  o.cpu = cpu;
  o.inbox_capacity = 1 << 16;
  auto l = std::make_unique<Loop>(o);
  if (!l->Start().ok()) return nullptr;
  return l;
}

// Loop A posts `n` tasks to loop B, braking (deferring to its next turn) when B is full.
struct Producer {
  Loop* a;
  Loop* b;
  int64_t remaining = 0;
  std::atomic<int64_t>* consumed;
  void Run() {
    while (remaining > 0) {
      if (b->Post([c = consumed] { c->fetch_add(1, std::memory_order_relaxed); }) !=
          PostResult::kOk) {
        a->Defer([this] { Run(); });
        return;
      }
      --remaining;
    }
  }
};

void BM_CrossLoopPostThroughput(benchmark::State& state) {
  auto a = Make("bench-a", 0);
  auto b = Make("bench-b", 1);
  if (!a || !b) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  const int64_t n = state.range(0);
  for (auto _ : state) {
    std::atomic<int64_t> consumed{0};
    Producer p{a.get(), b.get(), n, &consumed};
    a->Post([&p] { p.Run(); });
    while (consumed.load(std::memory_order_relaxed) < n) {
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
  a->RequestStop();
  b->RequestStop();
  a->Join();
  b->Join();
}
BENCHMARK(BM_CrossLoopPostThroughput)->Arg(100000)->UseRealTime();

struct PingPong {
  Loop* a;
  Loop* b;
  int64_t left = 0;
  absl::Notification* done;
  void PingFromA() {
    if (left-- == 0) {
      done->Notify();
      return;
    }
    b->Post([this] { a->Post([this] { PingFromA(); }); });
  }
};

void BM_CrossLoopRoundTrip(benchmark::State& state) {
  auto a = Make("rt-a", 0);
  auto b = Make("rt-b", 1);
  if (!a || !b) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  const int64_t n = 10000;
  for (auto _ : state) {
    absl::Notification done;
    PingPong pp{a.get(), b.get(), n, &done};
    a->Post([&pp] { pp.PingFromA(); });
    done.WaitForNotification();
  }
  state.SetItemsProcessed(state.iterations() * n);  // items = round trips
  a->RequestStop();
  b->RequestStop();
  a->Join();
  b->Join();
}
BENCHMARK(BM_CrossLoopRoundTrip)->UseRealTime();

}  // namespace
}  // namespace ringmail::core

BENCHMARK_MAIN();
