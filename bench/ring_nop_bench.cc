// Ring NOP submit→complete round trips, one at a time and batched, through the same Ring
// and Operation dispatch the loops use.
#include <benchmark/benchmark.h>

#include "core/ring.h"

namespace ringmail::core {
namespace {

struct Counter {
  Operation ops[256];
  uint64_t done = 0;
  void Done(Operation&, IoResult) { ++done; }
};

void Run(benchmark::State& state, unsigned batch) {
  auto ring_or = Ring::Create(RingOptions{});
  if (!ring_or.ok()) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  Ring& ring = **ring_or;
  Counter c;
  for (auto& op : c.ops) op.Bind<&Counter::Done>(&c, "nop");
  io_uring_cqe cqes[256];
  for (auto _ : state) {
    for (unsigned i = 0; i < batch; ++i) io_uring_prep_nop(ring.Prepare(c.ops[i]));
    ring.SubmitAndWait(batch, -1);
    unsigned got = 0;
    while (got < batch) {
      unsigned n = ring.Reap(cqes, 256);
      for (unsigned i = 0; i < n; ++i) {
        auto* op = reinterpret_cast<Operation*>(cqes[i].user_data);
        op->state = Operation::State::kIdle;
        op->handler(op->owner, *op, IoResult{cqes[i].res, cqes[i].flags});
      }
      got += n;
      if (got < batch) ring.SubmitAndWait(batch - got, -1);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}

void BM_RingNop(benchmark::State& state) { Run(state, static_cast<unsigned>(state.range(0))); }
BENCHMARK(BM_RingNop)->Arg(1)->Arg(8)->Arg(32)->Arg(128);

}  // namespace
}  // namespace ringmail::core

BENCHMARK_MAIN();
