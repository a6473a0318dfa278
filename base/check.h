// base/check.h — the three tiers of assertion (STYLE.md principle 10).
//
//   RM_CHECK(cond) << "msg"   always on: an internal invariant whose violation makes going on
//                             unsafe; prints file:line, the condition and the message, aborts.
//   RM_DCHECK(cond)           debug and sanitizer builds only (RINGMAIL_DEBUG_CHECKS).
//   RM_BUG(msg)               debug: abort; release: log once per call site to stderr and
//                             bump a process-wide counter, then the caller takes its safe path.
//
// Never assert on what a peer, a disk or a config file controls: that is error handling.
// Usable from any thread; header-only so that core and config (layer 0) can share it.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace ringmail::base {

// Collects the streamed message of a failed check and aborts when destroyed.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition)
      : file_(file), line_(line), condition_(condition) {}
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  [[noreturn]] ~CheckFailure() {
    std::fprintf(stderr, "%s:%d: check failed: %s %s\n", file_, line_, condition_,
                 stream_.str().c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  const char* file_;
  int line_;
  const char* condition_;
  std::ostringstream stream_;
};

// Swallows the stream of a check that passed (or is compiled out).
struct Voidify {
  void operator&(std::ostream&) {}
};

inline std::atomic<long>& BugCount() {
  static std::atomic<long> count{0};
  return count;
}

inline void ReportBug(const char* file, int line, const char* message, std::atomic<bool>& once) {
  BugCount().fetch_add(1, std::memory_order_relaxed);
  if (!once.exchange(true, std::memory_order_relaxed)) {
    std::fprintf(stderr, "%s:%d: internal bug: %s (further reports from here suppressed)\n",
                 file, line, message);
  }
}

}  // namespace ringmail::base

#define RM_CHECK(cond)                                                   \
  (__builtin_expect(static_cast<bool>(cond), 1))                         \
      ? (void)0                                                          \
      : ::ringmail::base::Voidify() &                                    \
            ::ringmail::base::CheckFailure(__FILE__, __LINE__, #cond).stream()

#if defined(RINGMAIL_DEBUG_CHECKS)
#define RM_DCHECK(cond) RM_CHECK(cond)
#define RM_BUG(message)                                                            \
  do {                                                                             \
    std::fprintf(stderr, "%s:%d: internal bug: %s\n", __FILE__, __LINE__, message); \
    std::abort();                                                                  \
  } while (0)
#else
#define RM_DCHECK(cond) \
  while (false) RM_CHECK(cond)
#define RM_BUG(message)                                             \
  do {                                                              \
    static std::atomic<bool> rm_bug_once_{false};                   \
    ::ringmail::base::ReportBug(__FILE__, __LINE__, message, rm_bug_once_); \
  } while (0)
#endif
