// tests/delivery/ledger_test_util.h — what the Ledger tests share: a temporary spool
// directory, a real core::Loop on its own thread, and a LedgerNode (loop + real SpoolWriter
// + Ledger) whose job dispatch is a fake engine that collects the jobs. The test thread
// waits on conditions over what the loop published (jobs, the ledger's stats), never sleeps.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/loop.h"
#include "core/message.h"
#include "delivery/job.h"
#include "delivery/ledger.h"
#include "spool/group_commit.h"
#include "spool/recovery.h"

namespace ringmail::delivery::testing {

// mkdtemp under /tmp; removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A started loop; Run() executes a closure on it and returns once it ran.
class LoopThread {
 public:
  explicit LoopThread(uint16_t index = 0);
  ~LoopThread() { Stop(); }
  core::Loop& loop() { return loop_; }
  bool started() const { return started_; }
  void Run(absl::FunctionRef<void()> f);
  void Stop();

 private:
  static core::LoopOptions Options(uint16_t index);
  core::Loop loop_;
  bool started_ = false;
  bool stopped_ = false;
};

// A message from `from` to `recipients`, whose content (Received: header, a small header
// section, then `body_bytes` of pattern) tells messages apart.
std::unique_ptr<core::Message> TestMessage(uint64_t n, std::string from,
                                           std::vector<std::string> recipients,
                                           size_t body_bytes = 200, std::string params = "");
std::string ContentOf(const core::Message& m);  // received header + body
std::string ReadRange(const std::string& path, uint64_t offset, uint64_t length);
bool FileExists(const std::string& path);
spool::RecoveryResult Recover(const std::string& spool_dir);

// Commits messages through a writer from the loop, and waits for their done callbacks.
class Committer {
 public:
  // Returns the commit requests (status, id, location), in the order given.
  const std::deque<spool::CommitRequest>& CommitAll(
      LoopThread& lt, spool::SpoolWriter& writer,
      std::vector<std::unique_ptr<core::Message>> messages);

 private:
  void Done(spool::CommitRequest&);
  std::deque<spool::CommitRequest> requests_;
  absl::Mutex mu_;
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;
};

// A loop with a SpoolWriter and a Ledger on it, wired as ringmaild does; jobs land in
// jobs(), the ledger's stats are published after every change it reports.
class LedgerNode {
 public:
  struct Setup {
    std::string spool_dir;
    uint16_t loop_index = 0;
    uint64_t segment_bytes = 4ull << 20;
    uint64_t first_sequence = 1;
    LedgerOptions options;  // dispatch and progress are set by the node
    bool with_ledger = true;  // false: a bare writer (to build spools for recovery tests)
  };

  explicit LedgerNode(Setup setup);
  ~LedgerNode() { Stop(); }

  LoopThread& lt() { return lt_; }
  spool::SpoolWriter& writer() { return *writer_; }
  Ledger& ledger() { return *ledger_; }

  void Adopt(LedgerAdoption adoption);
  const std::deque<spool::CommitRequest>& Commit(
      std::vector<std::unique_ptr<core::Message>> messages);
  void Report(DeliveryReport report);
  // Appends a state record with the bare writer and waits until it is durable.
  void AppendState(std::variant<spool::RecipientUpdate, spool::DoneMark> record);

  // Waits (up to a minute) until `pred` holds over the published stats / collected jobs.
  bool AwaitStats(absl::FunctionRef<bool(const LedgerStats&)> pred);
  bool AwaitJobs(size_t count);
  std::vector<DeliveryJob> TakeJobs();
  void set_inbox_full(bool full);
  LedgerStats Stats();

  // Stops the loop, then destroys the ledger and the writer (the ringmaild order).
  void Stop();

 private:
  void Published();
  core::PostResult Dispatch(DeliveryJob& job);

  LoopThread lt_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<spool::SpoolWriter> writer_;
  std::vector<std::unique_ptr<Committer>> committers_;
  absl::Mutex mu_;
  LedgerStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<DeliveryJob> jobs_ ABSL_GUARDED_BY(mu_);
  size_t jobs_seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool inbox_full_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ = false;
};

}  // namespace ringmail::delivery::testing
