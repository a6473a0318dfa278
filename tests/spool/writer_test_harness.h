// tests/spool/writer_test_harness.h — what the SpoolWriter tests share: a real core::Loop on
// its own thread with a writer opened on it, requests whose `done` the test thread awaits
// (notifications, never sleeps), message factories with content that tells messages apart,
// and the check that a spool directory recovers to exactly the acknowledged messages.
// Header-only, test code only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "core/loop.h"
#include "gtest/gtest.h"
#include "spool/group_commit.h"
#include "spool/recovery.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool::testing {

// A started loop; Run() executes a closure on it and returns when it has run.
class LoopThread {
 public:
  LoopThread() : loop_(Options()) {
    absl::Status s = loop_.Start();
    started_ = s.ok();
    EXPECT_TRUE(started_) << s;
  }
  ~LoopThread() { Stop(); }

  core::Loop& loop() { return loop_; }
  bool started() const { return started_; }

  template <typename F>
  void Run(F&& f) {
    absl::Notification ran;
    core::PostResult r = loop_.Post([&] {
      f();
      ran.Notify();
    });
    ASSERT_EQ(r, core::PostResult::kOk);
    ran.WaitForNotification();
  }

  void Stop() {
    if (!started_ || stopped_) return;
    stopped_ = true;
    loop_.RequestStop();
    loop_.Join();
  }

 private:
  static core::LoopOptions Options() {
    core::LoopOptions o;
    o.name = "spool-test";
    return o;
  }
  core::Loop loop_;
  bool started_ = false;
  bool stopped_ = false;
};

// Deterministic bytes that differ per message and per position, so a record read back from
// the wrong place or with shifted bytes cannot compare equal.
inline std::string PatternBody(uint64_t n, size_t bytes) {
  std::string s(bytes, '\0');
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>('!' + (x % 90));
  }
  return s;
}

inline std::unique_ptr<core::Message> NewMessage(uint64_t n, size_t body_bytes,
                                                 size_t recipients = 2) {
  return std::make_unique<core::Message>(MakeMessage(n, recipients, PatternBody(n, body_bytes)));
}

// What the test keeps of a message to check it after recovery (the writer frees it).
struct Expected {
  core::Envelope envelope;
  std::string content;  // received header + body
  uint32_t received_header_length = 0;
};

inline Expected ExpectationOf(const core::Message& m) {
  Expected e;
  e.envelope = m.envelope;
  e.content = m.received_header + m.body.ToString();
  e.received_header_length = static_cast<uint32_t>(m.received_header.size());
  return e;
}

// N commit requests and the count of their done callbacks (run on the loop thread).
class Committer {
 public:
  explicit Committer(size_t n) : requests_(n) {
    for (CommitRequest& r : requests_) r.Bind<&Committer::Done>(this);
  }

  CommitRequest& at(size_t i) { return requests_[i]; }
  size_t size() const { return requests_.size(); }
  // Waits until `count` callbacks have run since the last Reset. A broken writer fails the
  // test after a minute rather than hanging the suite.
  bool WaitFor(size_t count) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done_ >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(120));
  }
  size_t done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }

 private:
  void Done(CommitRequest&) {
    absl::MutexLock lock(&mu_);
    ++done_;
  }

  std::vector<CommitRequest> requests_;
  absl::Mutex mu_;
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;
};

inline std::string ReadRange(const std::string& path, uint64_t offset, uint64_t length) {
  std::string out(length, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return "";
  size_t got = 0;
  while (got < length) {
    ssize_t n = ::pread(fd, out.data() + got, length - got, static_cast<off_t>(offset + got));
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

// Recovers `spool_dir` read-only and checks that the live messages are exactly `expected`
// (by id), with their envelopes, locations (when given) and content bytes read back.
inline RecoveryResult ExpectRecovered(const std::string& spool_dir,
                                      const std::map<std::string, Expected>& expected,
                                      const std::map<std::string, SpoolLocation>& locations = {}) {
  absl::StatusOr<RecoveryResult> r = RecoverSpool(spool_dir, ReadOnlyRecoveryOptions());
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return {};
  EXPECT_EQ(r->live.size(), expected.size());
  EXPECT_EQ(r->report.CountEnds(SegmentEnd::kCorrupt), 0u) << r->report.Summary();
  for (const RecoveredMessage& rm : r->live) {
    const CommittedMessage& m = rm.message;
    auto it = expected.find(m.id.ToHex());
    if (it == expected.end()) {
      ADD_FAILURE() << "recovered a message that was never acknowledged: " << m.id.ToHex();
      continue;
    }
    const Expected& e = it->second;
    EXPECT_EQ(m.envelope.mail_from, e.envelope.mail_from);
    EXPECT_EQ(m.envelope.mail_params, e.envelope.mail_params);
    EXPECT_EQ(m.envelope.helo, e.envelope.helo);
    EXPECT_EQ(m.envelope.peer, e.envelope.peer);
    EXPECT_EQ(m.envelope.recipients.size(), e.envelope.recipients.size());
    for (size_t i = 0; i < std::min(m.envelope.recipients.size(), e.envelope.recipients.size());
         ++i) {
      EXPECT_EQ(m.envelope.recipients[i].address, e.envelope.recipients[i].address);
      EXPECT_EQ(m.envelope.recipients[i].params, e.envelope.recipients[i].params);
    }
    EXPECT_EQ(m.received_header_length, e.received_header_length);
    auto loc = locations.find(m.id.ToHex());
    if (loc != locations.end()) {
      EXPECT_EQ(m.location, loc->second);
    }
    EXPECT_EQ(m.location.content_length, e.content.size());
    std::string content = ReadRange(SegmentPath(spool_dir, m.location.segment),
                                    m.location.content_offset, m.location.content_length);
    EXPECT_TRUE(content == e.content) << "content of " << m.id.ToHex() << " differs";
  }
  return std::move(r).value();
}

}  // namespace ringmail::spool::testing
