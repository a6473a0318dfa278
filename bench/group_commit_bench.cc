// The spool's group commit on a real filesystem (a directory under /var/tmp, or
// $RINGMAIL_BENCH_DIR; never tmpfs: the point is a real fdatasync). One iteration is one loop
// turn in which `committers` requests are committed at once (what that many sessions finishing
// DATA in the same turn produce); it ends when every one of them is durable. Reported:
// messages made durable per second (items/s), bytes/s, and messages per fsync (the batching
// the group commit achieved). `fill` is the segment fill (0 zeros, the default; 1 fallocate
// only): the zero writes of the spare segment made during the run are part of the cost.
//
//   group_commit_bench --benchmark_filter=GroupCommit
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/loop.h"
#include "core/message.h"
#include "spool/group_commit.h"

namespace ringmail::spool {
namespace {

std::string MakeBenchDir() {
  const char* base = std::getenv("RINGMAIL_BENCH_DIR");
  std::string templ = std::string(base != nullptr ? base : "/var/tmp") + "/ringmail-gc-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) return "";
  return templ;
}

// Counts done callbacks; the benchmark thread waits for a round to finish.
class Round {
 public:
  explicit Round(size_t n) : requests_(n) {
    for (CommitRequest& r : requests_) r.Bind<&Round::Done>(this);
  }
  CommitRequest& at(size_t i) { return requests_[i]; }
  void Reset() {
    absl::MutexLock lock(&mu_);
    done_ = 0;
    failed_ = 0;
  }
  // Returns the number of failed requests once `n` have completed.
  size_t Wait(size_t n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done_ >= n; };
    mu_.Await(absl::Condition(&reached));
    return failed_;
  }

 private:
  void Done(CommitRequest& r) {
    absl::MutexLock lock(&mu_);
    ++done_;
    if (!r.status.ok()) ++failed_;
  }
  std::vector<CommitRequest> requests_;
  absl::Mutex mu_;
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;
  size_t failed_ ABSL_GUARDED_BY(mu_) = 0;
};

std::unique_ptr<core::Message> BenchMessage(core::MessageIdGenerator& ids, uint64_t now_ms,
                                            const std::string& body) {
  auto m = std::make_unique<core::Message>();
  m->id = ids.Next(now_ms);
  m->received_ms = now_ms;
  m->envelope.mail_from = "sender@example.org";
  m->envelope.helo = "client.example.org";
  m->envelope.peer = "127.0.0.1:40000";
  m->envelope.recipients.push_back(core::Recipient{"rcpt@example.com", "", {}, 0, 0});
  m->received_header = "Received: from client.example.org ([127.0.0.1])\r\n\tby bench\r\n";
  m->body.Append(body);
  return m;
}

template <typename F>
void RunOn(core::Loop& loop, F&& f) {
  absl::Notification ran;
  loop.Post([&] {
    f();
    ran.Notify();
  });
  ran.WaitForNotification();
}

void BM_GroupCommit(benchmark::State& state) {
  const size_t committers = static_cast<size_t>(state.range(0));
  const std::string body(static_cast<size_t>(state.range(1)), 'x');
  const std::string dir = MakeBenchDir();
  if (dir.empty()) {
    state.SkipWithError("cannot make a directory under /var/tmp");
    return;
  }
  core::LoopOptions lo;
  lo.name = "gc-bench";
  core::Loop loop(lo);
  if (!loop.Start().ok()) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  std::unique_ptr<SpoolWriter> writer;
  SpoolWriterOptions so;
  so.spool_dir = dir;
  so.fill = state.range(2) == 0 ? SegmentFill::kZeros : SegmentFill::kAllocate;
  RunOn(loop, [&] {
    auto w = SpoolWriter::Open(loop, so, nullptr);
    if (w.ok()) writer = std::move(w).value();
  });
  if (writer == nullptr) {
    state.SkipWithError("SpoolWriter::Open failed");
  } else {
    core::MessageIdGenerator ids(0, 0x5eed);
    Round round(committers);
    std::vector<std::unique_ptr<core::Message>> messages(committers);
    size_t failures = 0;
    for (auto _ : state) {
      state.PauseTiming();  // the receiver built these while reading DATA
      for (auto& m : messages) m = BenchMessage(ids, core::MonotonicMs(), body);
      round.Reset();
      state.ResumeTiming();
      loop.Post([&] {
        for (size_t i = 0; i < committers; ++i) {
          round.at(i).message = std::move(messages[i]);
          writer->Commit(round.at(i));
        }
      });
      failures += round.Wait(committers);
    }
    SpoolWriterStats s;
    RunOn(loop, [&] { s = writer->stats(); });
    if (failures != 0) state.SkipWithError("commits failed");
    state.SetItemsProcessed(static_cast<int64_t>(s.messages));
    state.SetBytesProcessed(static_cast<int64_t>(s.bytes));
    state.counters["msgs_per_fsync"] =
        s.fsyncs != 0 ? static_cast<double>(s.messages) / static_cast<double>(s.fsyncs) : 0;
    state.counters["fsyncs_per_s"] =
        benchmark::Counter(static_cast<double>(s.fsyncs), benchmark::Counter::kIsRate);
    state.counters["segments"] = static_cast<double>(s.segments);
  }
  loop.RequestStop();
  loop.Join();
  writer.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

BENCHMARK(BM_GroupCommit)
    ->ArgNames({"committers", "body", "fill"})
    ->ArgsProduct({{1, 8, 64, 256}, {1024, 10 * 1024, 100 * 1024}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ringmail::spool

BENCHMARK_MAIN();
