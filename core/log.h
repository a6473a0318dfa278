// core/log.h — diagnostics and the JSON event log, written off the loop threads.
//
// Two streams:
// - Diagnostics (LogInfo/LogWarning/LogError): human text lines to stderr, for start-up,
//   configuration and internal trouble. Rare; any thread.
// - Events (EventLog): one JSON object per line per reception, delivery, transient
//   failure or bounce. Loops build the line (JsonLine) and hand it to EventLog::Append,
//   which never blocks and never takes a lock: a bounded MPSC queue drained by one writer
//   thread that appends batches to the file with one write() each. A full queue drops the
//   line and counts it (the loop must not stall behind a slow disk).
//
// Reopen() (SIGUSR1 / `ringctl log reopen`) makes the writer reopen the file for
// logrotate. Flush() waits until every line appended before the call is written (tests).
//
// The writer polls the queue every 5 ms while lines come (no wake-up syscall on the loops'
// path), and after kIdleRoundsBeforePark empty polls (~200 ms) parks on a futex until the
// next Append: an idle daemon's log threads do not wake 200 times a second. Append then
// pays one futex wake, once per idle period.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "core/mpsc_queue.h"

namespace ringmail::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view text);

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (LogEnabled(LogLevel::kInfo)) LogLine(LogLevel::kInfo, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (LogEnabled(LogLevel::kWarning)) {
    LogLine(LogLevel::kWarning, absl::StrFormat(fmt, args...));
  }
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  LogLine(LogLevel::kError, absl::StrFormat(fmt, args...));
}

// Builds one JSON object: JsonLine().Str("event","received").Int("size",n).Finish().
class JsonLine {
 public:
  JsonLine();
  JsonLine& Str(std::string_view key, std::string_view value);
  JsonLine& Int(std::string_view key, int64_t value);
  JsonLine& Uint(std::string_view key, uint64_t value);
  JsonLine& Bool(std::string_view key, bool value);
  JsonLine& Raw(std::string_view key, std::string_view json);  // value already JSON
  std::string Finish();  // closes the object and adds '\n'

 private:
  void Key(std::string_view key);
  std::string out_;
  bool first_ = true;
};

// Appends `s` to `out` as a JSON string literal (quotes, escapes, control bytes as \u00XX;
// invalid UTF-8 bytes are escaped too, so the log stays valid JSON whatever a peer sent).
void AppendJsonString(std::string* out, std::string_view s);

class EventLog {
 public:
  // Opens (appending, creating) `path`; "" or "-" writes to stdout.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(std::string path,
                                                        size_t queue_capacity = 1 << 16);
  ~EventLog();  // writes what is queued, then stops the writer
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void Append(std::string line);  // any thread; never blocks; `line` ends in '\n'

  void Reopen();                  // any thread
  void Flush();                   // any non-loop thread; waits
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  bool parked() const { return parked_.load(std::memory_order_acquire); }  // tests

 private:
  EventLog(std::string path, size_t capacity);
  absl::Status OpenFile();
  void WriterMain();
  size_t DrainOnce(std::string* batch);
  void Park();
  void Wake();

  std::string path_;
  int fd_ = -1;
  MpscQueue<std::string> queue_;
  std::atomic<uint64_t> appended_{0};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<bool> reopen_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> parked_{false};    // the writer waits on wake_ (or is about to)
  std::atomic<uint32_t> wake_{0};      // bumped to wake a parked writer
  std::thread writer_;
};

}  // namespace ringmail::core
