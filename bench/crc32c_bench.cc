// CRC32C throughput: the dispatched implementation (SSE4.2 three-way when available) against
// the portable slicing-by-8 tables, over record-sized buffers (a RECIPIENT record, a typical
// message, a large one). The encoder runs it over every body on the loop thread, and recovery
// over every byte of the spool.
#include <string>

#include "benchmark/benchmark.h"
#include "spool/crc32c.h"

namespace {

std::string Buffer(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + 7);
  return s;
}

void BM_Crc32cDispatch(benchmark::State& state) {
  std::string data = Buffer(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(ringmail::spool::Crc32c(data));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  state.SetLabel(ringmail::spool::Crc32cUsesHardware() ? "sse4.2" : "portable");
}

void BM_Crc32cPortable(benchmark::State& state) {
  std::string data = Buffer(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(ringmail::spool::Crc32cExtendPortable(0, data.data(), data.size()));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

BENCHMARK(BM_Crc32cDispatch)->Arg(64)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20);
BENCHMARK(BM_Crc32cPortable)->Arg(64)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
