// ringload — the bundled SMTP load generator (`send`) and sink (`sink`) on io_uring.
//
// main parses flags (exit 2 with a message naming the flag on a usage error), starts one
// loop per thread, hands each loop a worker, then sits on the main thread: it prints the
// live progress line, watches SIGINT/SIGTERM (blocked in every thread, taken here with
// sigtimedwait), the hard timeout, and the end of the run; then it stops the loops, merges
// the per-loop stats and prints the summary. Exit 0 on success, 1 on errors beyond the
// allowed, 2 on a usage error.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/loop.h"
#include "core/loop_pool.h"
#include "core/ring.h"
#include "tools/ringload/message_factory.h"
#include "tools/ringload/options.h"
#include "tools/ringload/report.h"
#include "tools/ringload/run_state.h"
#include "tools/ringload/sender.h"
#include "tools/ringload/sink.h"

namespace ringmail::ringload {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitErrors = 1;
constexpr int kExitUsage = 2;
constexpr int64_t kTickMs = 100;
constexpr double kGraceS = 5.0;  // after Shutdown, how long workers get to close cleanly

int Usage(const char* mode, const std::string& why, const std::string& usage) {
  std::fprintf(stderr, "ringload %s: %s\n%s", mode, why.c_str(), usage.c_str());
  return kExitUsage;
}

// Blocks the stop signals in this thread and every thread started after; they are taken
// synchronously by PendingSignal().
void BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool PendingSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec zero{};
  return sigtimedwait(&set, nullptr, &zero) > 0;
}

double SecondsSince(uint64_t start_us) {
  return static_cast<double>(core::MonotonicUs() - start_us) / 1e6;
}

absl::Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(absl::StrCat("--dump: cannot create ", dir, ": ",
                                                   std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Loops named `prefix/i`, started on their own threads (each makes its ring there).
absl::StatusOr<std::vector<std::unique_ptr<core::Loop>>> StartLoops(const char* prefix,
                                                                   uint32_t n, bool pin) {
  std::vector<std::unique_ptr<core::Loop>> loops;
  const int cpus = core::AvailableCpus();
  for (uint32_t i = 0; i < n; ++i) {
    core::LoopOptions lo;
    lo.name = absl::StrCat(prefix, "/", i);
    lo.index = static_cast<uint16_t>(i);
    lo.cpu = pin ? static_cast<int>(i % static_cast<uint32_t>(cpus)) : -1;
    loops.push_back(std::make_unique<core::Loop>(lo));
    if (absl::Status s = loops.back()->Start(); !s.ok()) {
      loops.pop_back();
      for (auto& l : loops) l->RequestStop();
      for (auto& l : loops) l->Join();
      return s;
    }
  }
  return loops;
}

void StopLoops(std::vector<std::unique_ptr<core::Loop>>& loops) {
  for (auto& l : loops) l->RequestStop();
  for (auto& l : loops) l->Join();
}

void PostOrDie(core::Loop& loop, core::Loop::Task task) {
  // The inbox holds 65536 tasks and we post a handful: kFull cannot happen here.
  RM_CHECK(loop.Post(std::move(task)) == core::PostResult::kOk) << "cannot post to a loop";
}

class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool enabled) : enabled_(enabled) {}
  ~ProgressPrinter() { Clear(); }
  void Show(const std::string& line) {
    if (!enabled_) return;
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void Clear() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool enabled_;
  bool shown_ = false;
};

uint64_t RandomRunId() {
  uint64_t id = 0;
  if (getrandom(&id, sizeof(id), 0) != sizeof(id)) {
    id = core::MonotonicUs() ^ (static_cast<uint64_t>(getpid()) << 32);
  }
  return id;
}

// ---------------------------------------------------------------------------------------
// send

struct SendRun {
  std::vector<std::unique_ptr<core::Loop>> loops;
  std::vector<std::unique_ptr<SendWorker>> workers;
};

void ShowSendProgress(const SendOptions& o, const SendRun& run, uint64_t start_us,
                      ProgressPrinter* printer) {
  uint64_t ok = 0, failed = 0, errors = 0;
  for (const auto& w : run.workers) {
    ok += w->live().messages.load(std::memory_order_relaxed);
    failed += w->live().failed.load(std::memory_order_relaxed);
    errors += w->live().errors.load(std::memory_order_relaxed);
  }
  const double elapsed = SecondsSince(start_us);
  const double rate = elapsed > 0 ? static_cast<double>(ok) / elapsed : 0;
  double eta = -1;
  if (o.messages > 0 && rate > 0) {
    eta = static_cast<double>(o.messages - std::min(o.messages, ok + failed)) / rate;
  } else if (o.duration_s > 0) {
    eta = std::max(0.0, o.duration_s - elapsed);
  }
  printer->Show(ProgressLine(ok, failed, errors, elapsed, rate, eta));
}

// Waits for the workers, handling signals and the hard timeout.
void SuperviseSend(const SendOptions& o, SendRun& run, RunControl& control, uint64_t start_us,
                   SendOutcome* outcome) {
  ProgressPrinter printer(isatty(STDERR_FILENO) && !o.common.quiet);
  uint64_t shutdown_at = 0;
  int tick = 0;
  while (!control.all_done().WaitForNotificationWithTimeout(absl::Milliseconds(kTickMs))) {
    const bool signalled = PendingSignal();
    const bool late = SecondsSince(start_us) > o.timeout_s;
    if (shutdown_at == 0 && (signalled || late)) {
      outcome->interrupted = signalled;
      outcome->timed_out = !signalled;
      shutdown_at = core::MonotonicUs();
      for (size_t i = 0; i < run.loops.size(); ++i) {
        SendWorker* w = run.workers[i].get();
        PostOrDie(*run.loops[i], [w] { w->Shutdown(); });
      }
    }
    if (shutdown_at != 0 && SecondsSince(shutdown_at) > kGraceS) break;  // forced stop
    if (++tick % 5 == 0) ShowSendProgress(o, run, start_us, &printer);
  }
}

int RunSend(const std::vector<absl::string_view>& args) {
  auto parsed = ParseSendOptions(args);
  if (!parsed.ok()) return Usage("send", std::string(parsed.status().message()), SendUsage());
  const SendOptions o = *std::move(parsed);
  if (absl::Status s = core::ProbeKernel(); !s.ok()) {
    std::fprintf(stderr, "ringload send: %s\n", std::string(s.message()).c_str());
    return kExitErrors;
  }
  if (!o.common.dump_dir.empty()) {
    if (absl::Status s = MakeDir(o.common.dump_dir); !s.ok()) {
      return Usage("send", std::string(s.message()), "");
    }
  }
  int record_fd = -1;
  if (!o.record_path.empty()) {
    record_fd = ::open(o.record_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                       0644);
    if (record_fd < 0) {
      return Usage("send", absl::StrCat("--record: cannot open ", o.record_path, ": ",
                                        std::strerror(errno)), "");
    }
  }
  uint32_t threads = o.common.threads != 0 ? o.common.threads
                                           : static_cast<uint32_t>(core::AvailableCpus());
  threads = std::min(threads, o.connections);
  if (o.messages > 0) threads = static_cast<uint32_t>(std::min<uint64_t>(threads, o.messages));
  const MessageFactory factory(o, RandomRunId());
  BlockSignals();
  RunControl control(static_cast<int>(threads));
  SendRun run;
  auto loops = StartLoops("send", threads, o.common.pin);
  if (!loops.ok()) {
    std::fprintf(stderr, "ringload send: %s\n", std::string(loops.status().message()).c_str());
    return kExitErrors;
  }
  run.loops = *std::move(loops);
  for (uint32_t i = 0; i < threads; ++i) {
    const uint32_t conns = o.connections / threads + (i < o.connections % threads ? 1 : 0);
    const uint64_t quota = o.messages == 0 ? UINT64_MAX
                                           : o.messages / threads + (i < o.messages % threads);
    run.workers.push_back(std::make_unique<SendWorker>(*run.loops[i], o, factory, control, i,
                                                       threads, conns, quota, record_fd));
  }
  const uint64_t start_us = core::MonotonicUs();
  for (uint32_t i = 0; i < threads; ++i) {
    SendWorker* w = run.workers[i].get();
    PostOrDie(*run.loops[i], [w, start_us] { w->Start(start_us); });
  }
  SendOutcome outcome;
  outcome.threads = threads;
  SuperviseSend(o, run, control, start_us, &outcome);
  StopLoops(run.loops);
  uint64_t finish_us = 0;
  SendStats total;
  uint64_t issued = 0;
  for (const auto& w : run.workers) {
    w->AfterJoin();
    total.Merge(w->stats());
    finish_us = std::max(finish_us, w->finish_us());
    issued += w->issued();
  }
  if (finish_us == 0) finish_us = core::MonotonicUs();
  outcome.elapsed_s = static_cast<double>(finish_us - start_us) / 1e6;
  outcome.incomplete = o.messages > 0 && issued < o.messages;
  run.workers.clear();
  run.loops.clear();
  if (record_fd >= 0) ::close(record_fd);
  PrintSendSummary(stdout, o, total, outcome);
  std::fflush(stdout);
  const bool failed = static_cast<int64_t>(total.errors()) > o.max_errors ||
                      outcome.timed_out || outcome.interrupted || outcome.incomplete;
  return failed ? kExitErrors : kExitOk;
}

// ---------------------------------------------------------------------------------------
// sink

// One SO_REUSEPORT socket per loop on the same address; with port 0 the first picks the
// port and the rest join it. TCP_NODELAY set here is inherited by accepted sockets.
absl::StatusOr<std::vector<int>> OpenListeners(const Endpoint& ep, uint32_t n, uint16_t* port) {
  std::vector<int> fds;
  sockaddr_storage addr = ep.addr;
  auto fail = [&](const char* what) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat("--listen ", ep.text, ": ", what, ": ", std::strerror(errno)));
    for (int fd : fds) ::close(fd);
    return s;
  };
  for (uint32_t i = 0; i < n; ++i) {
    int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    fds.push_back(fd);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      return fail("SO_REUSEPORT");
    }
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), ep.len) != 0) return fail("bind");
    if (::listen(fd, 4096) != 0) return fail("listen");
    if (i == 0) {
      socklen_t len = sizeof(addr);
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return fail("getsockname");
      }
    }
  }
  *port = addr.ss_family == AF_INET
              ? ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port)
              : ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return fds;
}

struct SinkRun {
  std::vector<std::unique_ptr<core::Loop>> loops;
  std::vector<std::unique_ptr<SinkWorker>> workers;
};

void SuperviseSink(const SinkOptions& o, SinkRun& run, RunControl& control, uint64_t start_us,
                   SinkOutcome* outcome) {
  ProgressPrinter printer(isatty(STDERR_FILENO) && !o.common.quiet);
  int tick = 0;
  while (!control.end().WaitForNotificationWithTimeout(absl::Milliseconds(kTickMs))) {
    if (PendingSignal()) {
      outcome->interrupted = true;
      break;
    }
    if (o.duration_s > 0 && SecondsSince(start_us) >= o.duration_s) break;
    if (++tick % 5 != 0) continue;
    uint64_t ok = 0, failed = 0;
    for (const auto& w : run.workers) {
      ok += w->live().messages.load(std::memory_order_relaxed);
      failed += w->live().failed.load(std::memory_order_relaxed);
    }
    const double elapsed = SecondsSince(start_us);
    double eta = o.duration_s > 0 ? std::max(0.0, o.duration_s - elapsed) : -1;
    printer.Show(ProgressLine(ok, failed, 0, elapsed, elapsed > 0 ? ok / elapsed : 0, eta));
  }
  printer.Clear();
  for (size_t i = 0; i < run.loops.size(); ++i) {
    SinkWorker* w = run.workers[i].get();
    PostOrDie(*run.loops[i], [w] { w->Shutdown(); });
  }
  control.all_done().WaitForNotificationWithTimeout(absl::Seconds(kGraceS));
}

int RunSink(const std::vector<absl::string_view>& args) {
  auto parsed = ParseSinkOptions(args);
  if (!parsed.ok()) return Usage("sink", std::string(parsed.status().message()), SinkUsage());
  const SinkOptions o = *std::move(parsed);
  if (absl::Status s = core::ProbeKernel(); !s.ok()) {
    std::fprintf(stderr, "ringload sink: %s\n", std::string(s.message()).c_str());
    return kExitErrors;
  }
  if (!o.common.dump_dir.empty()) {
    if (absl::Status s = MakeDir(o.common.dump_dir); !s.ok()) {
      return Usage("sink", std::string(s.message()), "");
    }
  }
  const uint32_t threads = o.common.threads != 0 ? o.common.threads
                                                 : static_cast<uint32_t>(core::AvailableCpus());
  uint16_t port = 0;
  auto fds = OpenListeners(o.listen, threads, &port);
  if (!fds.ok()) {
    std::fprintf(stderr, "ringload sink: %s\n", std::string(fds.status().message()).c_str());
    return kExitErrors;
  }
  BlockSignals();
  RunControl control(static_cast<int>(threads));
  SinkRun run;
  auto loops = StartLoops("sink", threads, o.common.pin);
  if (!loops.ok()) {
    for (int fd : *fds) ::close(fd);
    std::fprintf(stderr, "ringload sink: %s\n", std::string(loops.status().message()).c_str());
    return kExitErrors;
  }
  run.loops = *std::move(loops);
  const uint32_t per_loop = std::max<uint32_t>(1, (o.max_connections + threads - 1) / threads);
  for (uint32_t i = 0; i < threads; ++i) {
    run.workers.push_back(
        std::make_unique<SinkWorker>(*run.loops[i], o, control, i, (*fds)[i], per_loop));
  }
  const uint64_t start_us = core::MonotonicUs();
  for (uint32_t i = 0; i < threads; ++i) {
    SinkWorker* w = run.workers[i].get();
    PostOrDie(*run.loops[i], [w] { w->Start(); });
  }
  // Connections queue in the listen backlog until the accepts are armed: safe to announce.
  const std::string host = o.listen.text.substr(0, o.listen.text.rfind(':'));
  std::printf("listening %s:%u\n", host.c_str(), port);
  std::fflush(stdout);
  SinkOutcome outcome;
  outcome.threads = threads;
  outcome.port = port;
  SuperviseSink(o, run, control, start_us, &outcome);
  StopLoops(run.loops);
  outcome.elapsed_s = SecondsSince(start_us);
  SinkStats total;
  uint64_t first = UINT64_MAX, last = 0;
  for (const auto& w : run.workers) {
    total.Merge(w->stats());
    if (w->first_accept_us() != 0) first = std::min(first, w->first_accept_us());
    last = std::max(last, w->last_answer_us());
  }
  outcome.active_s = first != UINT64_MAX && last > first ? (last - first) / 1e6 : 0;
  outcome.expect_met = o.expect == 0 || total.messages + total.rejected >= o.expect;
  run.workers.clear();
  run.loops.clear();
  PrintSinkSummary(stdout, o, total, outcome);
  std::fflush(stdout);
  return outcome.expect_met && total.file_errors == 0 ? kExitOk : kExitErrors;
}

constexpr char kMainUsage[] =
    "usage: ringload send --target HOST:PORT (--messages N | --duration S) [flags]\n"
    "       ringload sink [--listen ADDR:PORT] [flags]\n"
    "       ringload (send|sink) --help\n";

}  // namespace
}  // namespace ringmail::ringload

int main(int argc, char** argv) {
  using namespace ringmail::ringload;
  if (argc < 2) {
    std::fprintf(stderr, "ringload: missing command\n%s", kMainUsage);
    return kExitUsage;
  }
  const std::string_view mode = argv[1];
  std::vector<absl::string_view> args(argv + 2, argv + argc);
  for (absl::string_view a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(mode == "sink" ? SinkUsage().c_str() : SendUsage().c_str(), stdout);
      return kExitOk;
    }
  }
  if (mode == "send") return RunSend(args);
  if (mode == "sink") return RunSink(args);
  if (mode == "--help" || mode == "-h" || mode == "help") {
    std::fputs(kMainUsage, stdout);
    return kExitOk;
  }
  std::fprintf(stderr, "ringload: unknown command '%s'\n%s", argv[1], kMainUsage);
  return kExitUsage;
}
