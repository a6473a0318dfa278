// tools/ringload/file_io.h — files written through a loop's ring: the --dump directory
// (one file per message) and the --record log (lines appended in batches).
//
// Neither blocks the loop: opens, writes and closes are ring operations. Both live on one
// loop and are used by that loop's thread only; the owner (a sender or sink worker) keeps
// them alive until idle() and must not finish before that (STYLE.md principle 3).
// --dump is a test and debugging aid: each file costs one allocation; the number of files
// queued at once is capped (kDumpQueueMax) and the excess is counted as failed, not kept.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "core/loop.h"

namespace ringmail::ringload {

class DumpWriter {
 public:
  static constexpr size_t kInFlightMax = 32;
  static constexpr size_t kDumpQueueMax = 100'000;

  explicit DumpWriter(core::Loop& loop) : loop_(loop) {}
  DumpWriter(const DumpWriter&) = delete;
  DumpWriter& operator=(const DumpWriter&) = delete;

  // Creates (or replaces) `path` with `content`; the file appears only when complete.
  void Write(std::string path, std::string content);
  bool idle() const { return in_flight_ == 0 && queued_.empty(); }
  uint64_t files_written() const { return written_; }
  uint64_t failures() const { return failures_; }
  const std::string& first_error() const { return first_error_; }

 private:
  struct Job {
    DumpWriter* writer = nullptr;
    core::Operation op;
    std::string path;
    std::string part_path;  // written here, renamed to `path` when complete
    std::string content;
    int fd = -1;
    size_t done = 0;
    int error = 0;  // a write error, reported after the close
    enum class Stage { kOpen, kWrite, kClose, kRename } stage = Stage::kOpen;
    void Step(core::Operation& op, core::IoResult r);
  };

  void Start(std::unique_ptr<Job> job);
  void Finish(Job* job, int error);
  void Fail(const std::string& what);

  core::Loop& loop_;
  std::deque<std::unique_ptr<Job>> queued_;
  std::deque<std::unique_ptr<Job>> active_;
  size_t in_flight_ = 0;
  uint64_t written_ = 0;
  uint64_t failures_ = 0;
  std::string first_error_;
};

// Appends whole lines to an O_APPEND file shared by every loop: each ring write carries
// complete lines, so lines of different loops never interleave mid-line. One write in
// flight per loop; what arrives meanwhile is batched into the next. A write cancelled by a
// forced loop stop keeps its lines: after the loop has been joined, the main thread calls
// DrainBlocking() to write whatever is left, so no acknowledged message goes unrecorded.
class RecordLog {
 public:
  static constexpr size_t kPendingMax = 16 << 20;  // beyond this, lines are dropped (counted)

  RecordLog(core::Loop& loop, int fd) : loop_(loop), fd_(fd) {
    op_.Bind<&RecordLog::WriteDone>(this, "record-write");
  }
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;

  // The line to append (without newline) is built by the caller in place.
  std::string* pending() { return &pending_; }
  // Submits what is pending if no write is in flight.
  void Flush();
  bool idle() const { return op_.idle() && pending_.empty() && writing_.empty(); }
  uint64_t failures() const { return failures_; }
  // Main thread, only after the loop has been joined: writes what the ring did not (a
  // batch cancelled by the loop's stop, lines still pending) with plain write(2). Returns
  // the number of lines it could not write (counted in failures() too).
  uint64_t DrainBlocking();

 private:
  void WriteDone(core::Operation& op, core::IoResult r);

  core::Loop& loop_;
  int fd_;
  core::Operation op_;
  std::string pending_;
  std::string writing_;
  size_t written_ = 0;
  uint64_t failures_ = 0;
};

}  // namespace ringmail::ringload
