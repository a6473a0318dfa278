#include "core/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

std::string TempPath(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + "." + std::to_string(getpid());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(JsonLineTest, EscapesHostileBytesAndStaysOneLine) {
  std::string line = JsonLine()
                         .Str("event", "received")
                         .Str("from", "a\"b\\c\r\nd\x01")
                         .Str("utf8", "caf\xc3\xa9")
                         .Str("bad", "x\xff\xc3")
                         .Int("code", -5)
                         .Uint("size", 42)
                         .Bool("tls", false)
                         .Finish();
  EXPECT_EQ(line,
            "{\"event\":\"received\",\"from\":\"a\\\"b\\\\c\\u000d\\u000ad\\u0001\","
            "\"utf8\":\"caf\xc3\xa9\",\"bad\":\"x\\u00ff\\u00c3\",\"code\":-5,\"size\":42,"
            "\"tls\":false}\n");
}

// Bytes that look like UTF-8 but are not well-formed (RFC 3629 §4) are escaped too: an
// overlong '/', a UTF-16 surrogate, a code point above U+10FFFF. A JSON reader refuses them.
TEST(JsonLineTest, OverlongSurrogateAndOutOfRangeSequencesAreEscaped) {
  std::string line = JsonLine()
                         .Str("overlong", "\xc0\xaf")
                         .Str("surrogate", "\xed\xa0\x80")
                         .Str("too_high", "\xf4\x90\x80\x80")
                         .Str("ok", "\xf0\x9f\x98\x80")
                         .Finish();
  EXPECT_EQ(line,
            "{\"overlong\":\"\\u00c0\\u00af\",\"surrogate\":\"\\u00ed\\u00a0\\u0080\","
            "\"too_high\":\"\\u00f4\\u0090\\u0080\\u0080\",\"ok\":\"\xf0\x9f\x98\x80\"}\n");
}

TEST(EventLogTest, LinesFromManyThreadsAllWrittenWhole) {
  std::string path = TempPath("events.log");
  unlink(path.c_str());
  {
    auto log = EventLog::Open(path, 1 << 16);
    ASSERT_TRUE(log.ok()) << log.status();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 1000; ++i) {
          (*log)->Append(JsonLine().Int("t", t).Int("i", i).Finish());
        }
      });
    }
    for (auto& th : threads) th.join();
    (*log)->Flush();
    EXPECT_EQ((*log)->written(), 4000u);
    EXPECT_EQ((*log)->dropped(), 0u);
  }
  std::string text = ReadAll(path);
  size_t lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_EQ(lines, 4000u);
  unlink(path.c_str());
}

TEST(EventLogTest, FullQueueDropsAndCountsInsteadOfBlocking) {
  std::string path = TempPath("drop.log");
  auto log = EventLog::Open(path, 4);
  ASSERT_TRUE(log.ok());
  // Far more than the queue holds, faster than a writer thread can drain in one go.
  for (int i = 0; i < 100000; ++i) (*log)->Append("x\n");
  (*log)->Flush();
  EXPECT_EQ((*log)->written() + (*log)->dropped(), 100000u);
  unlink(path.c_str());
}

TEST(EventLogTest, ReopenFollowsRename) {
  std::string path = TempPath("rotate.log");
  std::string rotated = path + ".1";
  unlink(path.c_str());
  unlink(rotated.c_str());
  auto log = EventLog::Open(path);
  ASSERT_TRUE(log.ok());
  (*log)->Append("before\n");
  (*log)->Flush();
  ASSERT_EQ(rename(path.c_str(), rotated.c_str()), 0);
  (*log)->Reopen();
  (*log)->Append("after\n");
  (*log)->Flush();
  EXPECT_EQ(ReadAll(rotated), "before\n");
  EXPECT_EQ(ReadAll(path), "after\n");
  unlink(path.c_str());
  unlink(rotated.c_str());
}

// Waits (bounded) until the writer has parked: its state, polled, since parking is internal.
bool WaitParked(const EventLog& log) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!log.parked()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Like Flush, but bounded: a writer that never wakes fails the test instead of hanging it.
bool WaitWritten(const EventLog& log, uint64_t lines) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (log.written() < lines) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// An idle writer parks (no 5 ms polling for ever); an Append, a Reopen and the destructor
// each wake it, and nothing appended while it parks or wakes is lost.
TEST(EventLogTest, IdleWriterParksAndWakesForEachKindOfWork) {
  std::string path = TempPath("park.log");
  std::string rotated = path + ".1";
  unlink(path.c_str());
  unlink(rotated.c_str());
  {
    auto log = EventLog::Open(path);
    ASSERT_TRUE(log.ok());
    EventLog& l = **log;
    ASSERT_TRUE(WaitParked(l));
    l.Append("one\n");
    ASSERT_TRUE(WaitWritten(l, 1)) << "a parked writer did not wake for an Append";
    ASSERT_TRUE(WaitParked(l));
    ASSERT_EQ(rename(path.c_str(), rotated.c_str()), 0);
    l.Reopen();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::access(path.c_str(), F_OK) != 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(::access(path.c_str(), F_OK), 0) << "a parked writer did not reopen";
    ASSERT_TRUE(WaitParked(l));
    l.Append("two\n");
    ASSERT_TRUE(WaitWritten(l, 2)) << "a parked writer did not wake for an Append";
    ASSERT_TRUE(WaitParked(l));
  }  // the destructor wakes the parked writer and joins it (a hang here fails by timeout)
  EXPECT_EQ(ReadAll(rotated), "one\n");
  EXPECT_EQ(ReadAll(path), "two\n");
  unlink(path.c_str());
  unlink(rotated.c_str());
}

TEST(EventLogTest, UnwritablePathIsAnError) {
  auto log = EventLog::Open("/nonexistent-dir/x/y.log");
  EXPECT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("/nonexistent-dir/x/y.log"), std::string::npos);
}

}  // namespace
}  // namespace ringmail::core
