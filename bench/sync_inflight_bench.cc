// Durable 4 KiB writes to one zero-filled file through io_uring, with 1 to 4 in flight:
// whether a spool writer would gain from a second batch syncing while the first does.
//
//   build/bench/sync_inflight_bench [--benchmark_repetitions=3]   (run from the spool's file
//   system: the file is made in the current directory, 16 MiB, removed at the end)
//
// Two ways to make a write durable, as the spool writer could (spool/group_commit.h):
// - DsyncWrite: one WRITEV flagged RWF_DSYNC, what the writer does today. io_uring hands
//   buffered writes to one file to its io-wq workers one after the other (they are hashed by
//   inode), so a second one in flight waits for the first: expect the same syncs/s.
// - WriteThenFsync: a WRITEV linked to an FSYNC(DATASYNC) of its own range; the syncs are
//   not serialised, so several can be at the device at once.
// - DirectDsyncWrite: the file opened O_DIRECT, each write whole aligned blocks with
//   RWF_DSYNC. io_uring issues it from the submitting thread (no io-wq), and writes to
//   distinct blocks run side by side; the kernel's flush after each is what makes it durable
//   (Linux 6.18 on this VM: one device flush per write, /proc/diskstats).
// Counters: syncs/s, and the mean latency of one (in flight / rate). Session 11's figures
// and why neither buffered way pays for a second batch in flight: bench/RESULTS.md,
// "Session 11"; O_DIRECT's: "Session 12".
#include <fcntl.h>
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr size_t kBlock = 4096;
constexpr uint64_t kBlocks = 4096;  // 16 MiB of written zeros, reused round robin

// A zero-filled file (written blocks: an overwrite, like a zero-filled spool segment).
int MakeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  std::vector<char> zeros(1 << 20, 0);
  for (uint64_t off = 0; off < kBlocks * kBlock; off += zeros.size()) {
    if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) < 0) {
      ::close(fd);
      return -1;
    }
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

enum class Mode { kDsync, kWriteThenFsync, kDirectDsync };

void Run(benchmark::State& state, Mode mode) {
  const bool separate_fsync = mode == Mode::kWriteThenFsync;
  const int in_flight = static_cast<int>(state.range(0));
  const std::string path = "sync_inflight_bench." + std::to_string(::getpid());
  int fd = MakeFile(path);
  if (fd >= 0 && mode == Mode::kDirectDsync) {
    ::close(fd);
    fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  }
  if (fd < 0) {
    ::unlink(path.c_str());
    state.SkipWithError("cannot make the file in the current directory");
    return;
  }
  io_uring ring;
  if (io_uring_queue_init(64, &ring, 0) != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    state.SkipWithError("io_uring unavailable");
    return;
  }
  alignas(kBlock) static char block[kBlock];  // O_DIRECT: an aligned buffer
  for (char& c : block) c = 'x';
  iovec iov{block, kBlock};
  uint64_t next = 0;
  int pending = 0;
  bool failed = false;
  auto submit = [&] {
    const uint64_t off = (next++ % kBlocks) * kBlock;
    io_uring_sqe* w = io_uring_get_sqe(&ring);
    io_uring_prep_writev(w, fd, &iov, 1, off);
    if (!separate_fsync) {
      w->rw_flags = RWF_DSYNC;
      io_uring_sqe_set_data64(w, 1);
    } else {
      w->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(w, 0);  // the write's completion is not the sync
      io_uring_sqe* f = io_uring_get_sqe(&ring);
      io_uring_prep_fsync(f, fd, IORING_FSYNC_DATASYNC);
      f->off = off;
      f->len = kBlock;
      io_uring_sqe_set_data64(f, 1);
    }
    ++pending;
  };
  const auto started = std::chrono::steady_clock::now();
  for (auto _ : state) {  // one iteration: one durable write completed, `in_flight` kept going
    while (pending < in_flight) submit();
    bool synced = false;
    while (!synced && !failed) {
      io_uring_submit_and_wait(&ring, 1);
      io_uring_cqe* cqe;
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        if (cqe->res < 0) failed = true;
        if (cqe->user_data == 1) {
          --pending;
          synced = true;
        }
      }
      io_uring_cq_advance(&ring, seen);
    }
    if (failed) {
      state.SkipWithError("a write or sync failed");
      break;
    }
  }
  // Let what is still in flight finish before the file goes.
  while (pending > 0) {
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe(&ring, &cqe) != 0) break;
    if (cqe->user_data == 1) --pending;
    io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
  ::close(fd);
  ::unlink(path.c_str());
  state.counters["syncs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (state.iterations() > 0) {
    state.counters["latency_us"] =
        static_cast<double>(in_flight) * seconds * 1e6 / static_cast<double>(state.iterations());
  }
}

void BM_DsyncWrite(benchmark::State& state) { Run(state, Mode::kDsync); }
void BM_WriteThenFsync(benchmark::State& state) { Run(state, Mode::kWriteThenFsync); }
void BM_DirectDsyncWrite(benchmark::State& state) { Run(state, Mode::kDirectDsync); }

BENCHMARK(BM_DsyncWrite)->DenseRange(1, 4)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_WriteThenFsync)->DenseRange(1, 4)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_DirectDsyncWrite)->DenseRange(1, 4)->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
