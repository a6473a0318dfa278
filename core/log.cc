#include "core/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/string_view.h"
#include "base/utf8.h"

namespace ringmail::core {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

constexpr const char* kLevelNames[] = {"debug", "info", "warning", "error"};

// The writer thread wakes this often when idle: lines reach the file within a few
// milliseconds without the loops ever paying for a futex wake per line.
constexpr auto kWriterIdle = std::chrono::milliseconds(5);
constexpr int kIdleRoundsBeforePark = 40;

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // a full or broken log disk must not stop mail; the count shows it
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void LogLine(LogLevel level, std::string_view text) {
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
      kLevelNames[static_cast<int>(level)], " ", ToAbsl(text), "\n");
  WriteAll(STDERR_FILENO, line);
}

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xf]);
      ++i;
    } else if (c < 0x80) {
      out->push_back(static_cast<char>(c));
      ++i;
    } else {
      // Copy a well-formed UTF-8 sequence; escape a stray byte as \u00XX. Overlong forms
      // and surrogates are stray bytes too: a JSON reader refuses them (session 11's audit
      // saw `queue summary --json` made unreadable by a suspended domain's name).
      const size_t len = Utf8SequenceLength(s, i);
      if (len > 0) {
        out->append(s.substr(i, len));
        i += len;
      } else {
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
        ++i;
      }
    }
  }
  out->push_back('"');
}

JsonLine::JsonLine() { out_.reserve(256); out_.push_back('{'); }

void JsonLine::Key(std::string_view key) {
  if (!first_) out_.push_back(',');
  first_ = false;
  AppendJsonString(&out_, key);
  out_.push_back(':');
}

JsonLine& JsonLine::Str(std::string_view key, std::string_view value) {
  Key(key);
  AppendJsonString(&out_, value);
  return *this;
}
JsonLine& JsonLine::Int(std::string_view key, int64_t value) {
  Key(key);
  absl::StrAppend(&out_, value);
  return *this;
}
JsonLine& JsonLine::Uint(std::string_view key, uint64_t value) {
  Key(key);
  absl::StrAppend(&out_, value);
  return *this;
}
JsonLine& JsonLine::Bool(std::string_view key, bool value) {
  Key(key);
  out_.append(value ? "true" : "false");
  return *this;
}
JsonLine& JsonLine::Raw(std::string_view key, std::string_view json) {
  Key(key);
  out_.append(json);
  return *this;
}
std::string JsonLine::Finish() {
  out_.append("}\n");
  return std::move(out_);
}

EventLog::EventLog(std::string path, size_t capacity)
    : path_(std::move(path)), queue_(capacity) {}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(std::string path, size_t capacity) {
  std::unique_ptr<EventLog> log(new EventLog(std::move(path), capacity));
  absl::Status s = log->OpenFile();
  if (!s.ok()) return s;
  log->writer_ = std::thread([l = log.get()] { l->WriterMain(); });
  return log;
}

absl::Status EventLog::OpenFile() {
  if (path_.empty() || path_ == "-") {
    fd_ = STDOUT_FILENO;
    return absl::OkStatus();
  }
  int fd = open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open log ", path_, ": ",
                                               std::strerror(errno)));
  }
  if (fd_ > STDERR_FILENO) close(fd_);
  fd_ = fd;
  return absl::OkStatus();
}

EventLog::~EventLog() {
  stop_.store(true, std::memory_order_seq_cst);
  Wake();
  if (writer_.joinable()) writer_.join();
  if (fd_ > STDERR_FILENO) close(fd_);
}

void EventLog::Append(std::string line) {
  if (!queue_.TryPush(std::move(line))) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // seq_cst with Park's store of parked_ then load of appended_: either the writer sees
  // this line before it parks, or this load sees it parked and wakes it.
  appended_.fetch_add(1, std::memory_order_seq_cst);
  if (parked_.load(std::memory_order_seq_cst)) Wake();
}

void EventLog::Wake() {
  wake_.fetch_add(1, std::memory_order_seq_cst);
  wake_.notify_one();
}

// Writer thread, after kIdleRoundsBeforePark empty polls. Returns when there may be work.
void EventLog::Park() {
  const uint32_t seen = wake_.load(std::memory_order_seq_cst);
  parked_.store(true, std::memory_order_seq_cst);
  // Lines counted before the store above are seen here; any later Append sees parked_.
  // Reopen and the destructor wake unconditionally (their markers are not counted).
  const bool work = appended_.load(std::memory_order_seq_cst) !=
                        written_.load(std::memory_order_acquire) ||
                    stop_.load(std::memory_order_seq_cst) ||
                    reopen_.load(std::memory_order_acquire);
  if (!work) wake_.wait(seen, std::memory_order_seq_cst);
  parked_.store(false, std::memory_order_release);
}

void EventLog::Reopen() {
  // An empty line is the in-order marker: lines appended before the call go to the old
  // file, lines after it to the new one. With the queue full, reopen at the next drain.
  if (!queue_.TryPush(std::string())) reopen_.store(true, std::memory_order_release);
  Wake();
}

void EventLog::Flush() {
  // Sleeps on written_ (the writer notifies after each batch) rather than spinning with
  // sched_yield, which on a loaded PREEMPT_NONE kernel can starve the very thread it waits
  // for (see tests/spool/recycle_writer_test.cc WaitOnLoop).
  const uint64_t target = appended_.load(std::memory_order_acquire);
  for (uint64_t w = written_.load(std::memory_order_acquire); w < target;
       w = written_.load(std::memory_order_acquire)) {
    written_.wait(w, std::memory_order_acquire);
  }
}

size_t EventLog::DrainOnce(std::string* batch) {
  batch->clear();
  size_t n = 0;
  while (n < 4096) {
    std::optional<std::string> line = queue_.TryPop();
    if (!line.has_value()) break;
    if (line->empty()) {  // reopen marker
      if (!batch->empty()) WriteAll(fd_, *batch);
      batch->clear();
      absl::Status s = OpenFile();
      if (!s.ok()) LogLine(LogLevel::kError, ToStd(s.message()));
      continue;
    }
    batch->append(*line);
    ++n;
  }
  if (n > 0) {
    if (!batch->empty()) WriteAll(fd_, *batch);
    written_.fetch_add(n, std::memory_order_release);
    written_.notify_all();  // Flush(); no syscall when nobody waits
  }
  return n;
}

void EventLog::WriterMain() {
  std::string batch;
  int idle_rounds = 0;
  for (;;) {
    if (reopen_.exchange(false, std::memory_order_acq_rel)) {
      absl::Status s = OpenFile();
      if (!s.ok()) LogLine(LogLevel::kError, ToStd(s.message()));
    }
    size_t n = DrainOnce(&batch);
    if (n != 0) {
      idle_rounds = 0;
      continue;
    }
    if (stop_.load(std::memory_order_acquire)) {
      DrainOnce(&batch);
      return;
    }
    if (++idle_rounds < kIdleRoundsBeforePark) {
      std::this_thread::sleep_for(kWriterIdle);
    } else {
      Park();
      idle_rounds = 0;
    }
  }
}

}  // namespace ringmail::core
