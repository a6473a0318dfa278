// Tests of tools/ringload: its histogram (unit tests on known data) and the built
// `ringload` binary run as subprocesses — send against sink with byte-exact comparison of
// what was sent and what arrived, injected reply ratios, open-loop rate scheduling, the
// sink's protocol limits over a raw socket, and usage errors.
//
// No sleeps for synchronisation: the sink's port is read from its "listening" line on a
// stdout pipe; processes are awaited through a pidfd with a bounded timeout and killed if
// they overstay. Everything binds and connects to 127.0.0.1 only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/ring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/ringload/histogram.h"
#include "tools/ringload/http_response.h"

extern char** environ;

namespace ringmail::ringload {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------
// Histogram

TEST(HistogramTest, ExactBelowTheSubBucketRange) {
  Histogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 1000u);
  EXPECT_DOUBLE_EQ(h.mean(), 500.5);
  EXPECT_EQ(h.ValueAt(50), 500u);
  EXPECT_EQ(h.ValueAt(90), 900u);
  EXPECT_EQ(h.ValueAt(99), 990u);
  EXPECT_EQ(h.ValueAt(99.9), 999u);
  EXPECT_EQ(h.ValueAt(100), 1000u);
  EXPECT_EQ(h.ValueAt(0), 1u);
}

TEST(HistogramTest, LargeValuesWithinRelativeErrorAndNeverBelow) {
  Histogram h;
  // 1 ms .. 10 s in 1 ms steps: the k-th smallest value is k ms.
  for (uint64_t ms = 1; ms <= 10'000; ++ms) h.Record(ms * 1000);
  for (double p : {10.0, 50.0, 90.0, 99.0, 99.9}) {
    const uint64_t exact = static_cast<uint64_t>(p * 100 + 0.5) * 1000;  // p% of 10000 ms
    const uint64_t got = h.ValueAt(p);
    EXPECT_GE(got, exact) << "p" << p;
    EXPECT_LE(static_cast<double>(got), exact * 1.002 + 1) << "p" << p;
  }
  EXPECT_EQ(h.ValueAt(100), 10'000'000u);
  EXPECT_EQ(h.max(), 10'000'000u);
}

TEST(HistogramTest, BucketsTileTheRangeInOrder) {
  uint64_t previous_high = 0;
  for (size_t i = 1; i < Histogram::kBucketCount; ++i) {
    ASSERT_EQ(Histogram::LowestIn(i), previous_high + 1) << i;
    ASSERT_GE(Histogram::HighestIn(i), Histogram::LowestIn(i)) << i;
    ASSERT_EQ(Histogram::IndexOf(Histogram::LowestIn(i)), i);
    ASSERT_EQ(Histogram::IndexOf(Histogram::HighestIn(i)), i);
    previous_high = Histogram::HighestIn(i);
  }
  EXPECT_EQ(previous_high, Histogram::kMaxValue);
  EXPECT_EQ(Histogram::IndexOf(UINT64_MAX), Histogram::kBucketCount - 1);
}

TEST(HistogramTest, MergeAddsAndEmptyIsZero) {
  Histogram a, b, empty;
  EXPECT_EQ(empty.ValueAt(50), 0u);
  EXPECT_EQ(empty.min(), 0u);
  for (uint64_t v = 1; v <= 500; ++v) a.Record(v);
  for (uint64_t v = 501; v <= 1000; ++v) b.Record(v);
  a.Merge(b);
  a.Merge(empty);
  EXPECT_EQ(a.count(), 1000u);
  EXPECT_EQ(a.ValueAt(50), 500u);
  EXPECT_EQ(a.ValueAt(99), 990u);
  EXPECT_EQ(a.min(), 1u);
  EXPECT_EQ(a.max(), 1000u);
  a.RecordN(5'000'000, 1000);  // half the values now sit at 5 s
  EXPECT_GE(a.ValueAt(75), 5'000'000u);
  EXPECT_LE(a.ValueAt(75), 5'010'000u);
}

// ---------------------------------------------------------------------------------------
// HttpResponseReader and the --record ids of --http

std::string Ok(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nServer: ringmail\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

TEST(HttpResponseReaderTest, FramesPipelinedResponsesFedByteByByte) {
  const std::string stream = "HTTP/1.1 100 Continue\r\n\r\n" + Ok("{\"id\":\"a1\"}") +
                             Ok("", "Connection: keep-alive\r\n") +
                             "HTTP/1.1 204 No Content\r\n\r\n" +
                             Ok("bye", "connection: Close\r\n");
  HttpResponseReader reader;
  std::vector<std::pair<int, std::string>> got;
  std::vector<bool> closes;
  for (char c : stream) {
    ASSERT_TRUE(reader.Feed(std::string_view(&c, 1)));
    HttpResponseReader::Response r;
    HttpResponseReader::Result result;
    while ((result = reader.Next(&r)) == HttpResponseReader::Result::kResponse) {
      got.emplace_back(r.status, std::string(r.body));
      closes.push_back(r.close);
    }
    ASSERT_EQ(result, HttpResponseReader::Result::kNeedMore) << reader.error();
  }
  EXPECT_EQ(got, (std::vector<std::pair<int, std::string>>{
                     {200, "{\"id\":\"a1\"}"}, {200, ""}, {204, ""}, {200, "bye"}}));
  EXPECT_EQ(closes, (std::vector<bool>{false, false, false, true}));
}

TEST(HttpResponseReaderTest, FramesSeveralResponsesFromOneSegment) {
  HttpResponseReader reader;
  ASSERT_TRUE(reader.Feed(Ok("one") + Ok("two") + "HTTP/1.0 503 Busy\r\nContent-Length: 0\r\n"));
  HttpResponseReader::Response r;
  ASSERT_EQ(reader.Next(&r), HttpResponseReader::Result::kResponse);
  EXPECT_EQ(r.body, "one");
  ASSERT_EQ(reader.Next(&r), HttpResponseReader::Result::kResponse);
  EXPECT_EQ(r.body, "two");
  EXPECT_EQ(reader.Next(&r), HttpResponseReader::Result::kNeedMore);
  ASSERT_TRUE(reader.Feed("\r\n"));
  ASSERT_EQ(reader.Next(&r), HttpResponseReader::Result::kResponse);
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(r.close) << "HTTP/1.0 without keep-alive closes";
}

TEST(HttpResponseReaderTest, RefusesWhatItCannotFrameOrWhatIsTooLarge) {
  const std::string big_head = "HTTP/1.1 200 OK\r\nX: " + std::string(20'000, 'x') + "\r\n";
  std::string many_lines = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 101; ++i) many_lines += "X-A: b\r\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding"},
      {"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "without Content-Length"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", "Content"},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "larger"},
      {"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "status"},
      {"SMTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "status line"},
      {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"},
      {many_lines + "\r\n", "too many"},
      {big_head, "too large"},
  };
  for (const auto& [input, needle] : cases) {
    HttpResponseReader reader;
    HttpResponseReader::Response r;
    ASSERT_TRUE(reader.Feed(input));
    EXPECT_EQ(reader.Next(&r), HttpResponseReader::Result::kError) << input.substr(0, 60);
    EXPECT_THAT(reader.error(), HasSubstr(needle)) << input.substr(0, 60);
  }
  HttpResponseReader reader;
  EXPECT_FALSE(reader.Feed(std::string(HttpResponseReader::kBodyBytesMax + (200 << 10), 'x')))
      << "input beyond one bounded response is refused before it is buffered";
}

TEST(HttpResponseReaderTest, RecordIdsOfInjectionAnswers) {
  auto ids = [](const std::string& body) {
    std::string out = "x ";
    AppendHttpIds(body, &out);
    return out;
  };
  EXPECT_EQ(ids("{\"success_count\":1,\"failure_count\":0,\"failures\":[],"
                "\"id\":\"01a2ff\"}\n"),
            "x 01a2ff");
  EXPECT_EQ(ids("{\"success_count\":2,\"ids\":[\"aa\",\"bb\", \"cc\"]}"), "x aa,bb,cc");
  EXPECT_EQ(ids("{\"success_count\":0}"), "x -");
  EXPECT_EQ(ids("{\"id\":\"has space\"}"), "x -") << "an id is one field";
  EXPECT_EQ(ids("{\"id\":\"" + std::string(200, 'a') + "\"}"), "x -") << "bounded";
  EXPECT_EQ(ids("{\"ids\":[\"aa\",\"b b\"]}"), "x aa");
  EXPECT_EQ(ids("{\"id\":\"abc"), "x -") << "unterminated";
}

// ---------------------------------------------------------------------------------------
// Subprocesses

std::string RingloadBinary() {
  return std::string(RINGMAIL_BINARY_DIR) + "/tools/ringload/ringload";
}

// A child process with its stdout and stderr on pipes. The destructor kills and reaps a
// child that is still running, so no test leaves a process behind.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    if (pid_ > 0) pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
    for (int fd : {out_fd_, err_fd_, pidfd_}) {
      if (fd >= 0) close(fd);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0 && pidfd_ >= 0; }

  // One line from stdout, waiting at most `timeout_ms` for it.
  std::optional<std::string> ReadLine(int timeout_ms) {
    for (;;) {
      size_t nl = out_.find('\n');
      if (nl != std::string::npos) {
        std::string line = out_.substr(0, nl);
        out_.erase(0, nl + 1);
        return line;
      }
      pollfd p{out_fd_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
      if (!ReadSome(out_fd_, &out_)) return std::nullopt;
    }
  }

  // Waits for the exit (killing the child after `timeout_ms`), collecting its output.
  // Returns the exit code, or -1 if it had to be killed or died of a signal.
  int Wait(int timeout_ms) {
    pollfd fds[3] = {{pidfd_, POLLIN, 0}, {out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    bool out_open = true, err_open = true, gone = false;
    const int64_t deadline = NowMs() + timeout_ms;
    while (!gone || out_open || err_open) {
      const int64_t left = deadline - NowMs();
      if (left <= 0) break;
      fds[1].fd = out_open ? out_fd_ : -1;
      fds[2].fd = err_open ? err_fd_ : -1;
      fds[0].fd = gone ? -1 : pidfd_;
      if (poll(fds, 3, static_cast<int>(left)) <= 0) break;
      if (fds[0].revents != 0) gone = true;
      if (fds[1].revents != 0) out_open = ReadSome(out_fd_, &out_);
      if (fds[2].revents != 0) err_open = ReadSome(err_fd_, &err_);
    }
    if (!gone) {
      ADD_FAILURE() << "process did not exit in " << timeout_ms << " ms; killed";
      kill(pid_, SIGKILL);
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) && gone ? WEXITSTATUS(status) : -1;
  }

  void Signal(int sig) { kill(pid_, sig); }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  static int64_t NowMs() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000;
  }
  static bool ReadSome(int fd, std::string* to) {
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    to->append(buf, static_cast<size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool exited_ = false;
  std::string out_;
  std::string err_;
};

constexpr int kWaitMs = 60'000;

// A started `ringload sink` and the port it announced.
struct Sink {
  std::unique_ptr<Child> child;
  int port = 0;
};

Sink StartSink(std::vector<std::string> flags) {
  std::vector<std::string> args = {RingloadBinary(), "sink", "--json", "--quiet"};
  args.insert(args.end(), flags.begin(), flags.end());
  Sink sink;
  sink.child = std::make_unique<Child>(args);
  if (!sink.child->started()) return sink;
  std::optional<std::string> line = sink.child->ReadLine(kWaitMs);
  if (!line.has_value()) return sink;
  const std::string prefix = "listening 127.0.0.1:";
  if (line->rfind(prefix, 0) == 0) sink.port = std::atoi(line->c_str() + prefix.size());
  return sink;
}

struct SendResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

SendResult RunSend(int port, std::vector<std::string> flags) {
  std::vector<std::string> args = {RingloadBinary(), "send", "--target",
                                   "127.0.0.1:" + std::to_string(port), "--quiet"};
  args.insert(args.end(), flags.begin(), flags.end());
  Child child(args);
  SendResult r;
  if (!child.started()) return r;
  r.exit_code = child.Wait(kWaitMs);
  r.out = child.out();
  r.err = child.err();
  return r;
}

// The number after "key": in a flat JSON summary (-1 when absent).
double JsonNumberOf(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtod(json.c_str() + at + needle.size(), nullptr);
}

std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TempDir {
 public:
  TempDir() {
    std::string templ = ::testing::TempDir() + "ringload_test_XXXXXX";
    if (mkdtemp(templ.data()) != nullptr) path_ = templ;
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class RingloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!core::ProbeKernel().ok()) GTEST_SKIP() << "io_uring unavailable";
    ASSERT_TRUE(std::filesystem::exists(RingloadBinary())) << RingloadBinary();
  }
};

// ---------------------------------------------------------------------------------------
// send ↔ sink

struct ExchangeMode {
  bool pipelining;
  bool chunking;
  const char* name;
};

class ExchangeTest : public RingloadTest, public ::testing::WithParamInterface<ExchangeMode> {};

// The value of header `name` in `content` (first occurrence), without CRLF.
std::string Header(const std::string& content, const std::string& name) {
  const std::string needle = "\r\n" + name + ": ";
  size_t at = content.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  return content.substr(at, content.find("\r\n", at) - at);
}

TEST_P(ExchangeTest, ExactlyNMessagesWithTheRightBytesAndEnvelopes) {
  constexpr int kMessages = 150;
  TempDir tmp;
  Sink sink = StartSink({"--expect", std::to_string(kMessages), "--dump", tmp.Sub("got"),
                         "--threads", "2"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  std::vector<std::string> flags = {
      "--messages", std::to_string(kMessages), "--connections", "5", "--threads", "2",
      "--size", "1k:40,10k:40,100k:20", "--rcpts", "3", "--domains", "2", "--dump",
      tmp.Sub("sent"), "--record", tmp.Sub("record"), "--json"};
  if (GetParam().pipelining) flags.push_back("--pipelining");
  if (GetParam().chunking) flags.push_back("--chunking");
  SendResult r = RunSend(sink.port, flags);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumberOf(r.out, "messages"), kMessages) << r.out;
  EXPECT_EQ(JsonNumberOf(r.out, "errors"), 0) << r.out;
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "messages"), kMessages) << sink.child->out();

  // Every message arrived once, byte for byte as sent, with its envelope.
  std::map<uint64_t, std::string> queue_id_of_seq;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.Sub("got"))) {
    const std::string got = ReadWholeFile(entry.path());
    const std::string seq_text = Header(got, "X-Ringload-Seq");
    ASSERT_FALSE(seq_text.empty()) << entry.path();
    const uint64_t seq = std::stoull(seq_text);
    ASSERT_TRUE(queue_id_of_seq.emplace(seq, entry.path().stem().string()).second)
        << "message " << seq << " arrived twice";
    const std::string sent = ReadWholeFile(tmp.Sub("sent") + "/" + seq_text + ".eml");
    ASSERT_FALSE(sent.empty()) << "message " << seq << " was not sent";
    EXPECT_TRUE(got == sent) << "message " << seq << " differs: " << got.size() << " bytes vs "
                             << sent.size();
    // Independent of the sender's dump: envelope, CRLF only, dot-unstuffing.
    EXPECT_EQ(got.rfind("MAIL FROM:<ringload@ringload.test>\r\nRCPT TO:<user", 0), 0u);
    EXPECT_THAT(got, HasSubstr("@domain0.test>\r\n"));
    EXPECT_THAT(got, HasSubstr("@domain1.test>\r\n"));
    EXPECT_THAT(got, HasSubstr("\r\n.\r\n")) << "a lone-dot line must come back unstuffed";
    EXPECT_THAT(got, HasSubstr("\r\n.. leading dots"));
    for (size_t i = got.find('\n'); i != std::string::npos; i = got.find('\n', i + 1)) {
      ASSERT_TRUE(i > 0 && got[i - 1] == '\r') << "bare LF in message " << seq;
    }
  }
  ASSERT_EQ(queue_id_of_seq.size(), static_cast<size_t>(kMessages));
  EXPECT_EQ(queue_id_of_seq.begin()->first, 0u);
  EXPECT_EQ(queue_id_of_seq.rbegin()->first, static_cast<uint64_t>(kMessages - 1));

  // --record: one line per accepted message with the sink's queue id.
  std::istringstream record(ReadWholeFile(tmp.Sub("record")));
  std::string line;
  std::set<uint64_t> recorded;
  while (std::getline(record, line)) {
    std::istringstream fields(line);
    uint64_t seq;
    std::string message_id, queue_id;
    ASSERT_TRUE(fields >> seq >> message_id >> queue_id) << line;
    EXPECT_TRUE(recorded.insert(seq).second) << line;
    EXPECT_EQ(queue_id, queue_id_of_seq[seq]) << line;
    EXPECT_EQ(message_id.rfind("<" + std::to_string(seq) + ".", 0), 0u) << line;
  }
  EXPECT_EQ(recorded.size(), static_cast<size_t>(kMessages));
}

INSTANTIATE_TEST_SUITE_P(Modes, ExchangeTest,
                         ::testing::Values(ExchangeMode{false, false, "Plain"},
                                           ExchangeMode{true, false, "Pipelining"},
                                           ExchangeMode{false, true, "Chunking"},
                                           ExchangeMode{true, true, "PipeliningChunking"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(RingloadTest, ReplyRatiosHoldWithinTolerance) {
  Sink sink = StartSink({"--expect", "1000", "--reply", "451:0.1,550:0.05", "--seed", "7"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  SendResult r = RunSend(sink.port, {"--messages", "1000", "--connections", "8", "--pipelining",
                                     "--max-errors", "1000", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const double ok = JsonNumberOf(r.out, "messages");
  const double n451 = JsonNumberOf(r.out, "451");
  const double n550 = JsonNumberOf(r.out, "550");
  EXPECT_GE(n451, 60);
  EXPECT_LE(n451, 140);
  EXPECT_GE(n550, 20);
  EXPECT_LE(n550, 80);
  EXPECT_EQ(ok + n451 + n550, 1000) << r.out;
  EXPECT_EQ(JsonNumberOf(r.out, "rejected_4xx"), n451);
  EXPECT_EQ(JsonNumberOf(r.out, "rejected_5xx"), n550);
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "451"), n451) << sink.child->out();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "550"), n550) << sink.child->out();
}

TEST_F(RingloadTest, ErrorsBeyondTheAllowedStopTheRunAndExitOne) {
  Sink sink = StartSink({"--reply", "550:1", "--duration", "60"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  SendResult r = RunSend(sink.port, {"--messages", "1000", "--connections", "2", "--threads",
                                     "1", "--max-errors", "3", "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const double rejected = JsonNumberOf(r.out, "rejected_5xx");
  EXPECT_GE(rejected, 4) << r.out;
  EXPECT_LE(rejected, 10) << "the run should stop soon after the 4th error: " << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"incomplete\":true"));
  sink.child->Signal(SIGTERM);
  EXPECT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
}

TEST_F(RingloadTest, RateSchedulesMessagesOpenLoop) {
  Sink sink = StartSink({"--duration", "60"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  SendResult r = RunSend(sink.port, {"--rate", "200", "--duration", "1", "--connections", "4",
                                     "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // Message k is due at k × 5 ms; those due before 1 s are exactly 200.
  EXPECT_EQ(JsonNumberOf(r.out, "messages"), 200) << r.out;
  EXPECT_GE(JsonNumberOf(r.out, "elapsed_s"), 0.99) << r.out;
  EXPECT_LE(JsonNumberOf(r.out, "elapsed_s"), 1.5) << r.out;
  EXPECT_LT(JsonNumberOf(r.out, "p50"), 50'000) << "an idle sink answers fast: " << r.out;
  sink.child->Signal(SIGTERM);
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "messages"), 200) << sink.child->out();
}

TEST_F(RingloadTest, RateLatencyCountsFromTheScheduleNotTheSend) {
  // One connection and a 20 ms reply delay serve at most 50 msg/s; 100 are scheduled in
  // 1 s, so message k waits about 10·k ms. Measured from the send, every latency would be
  // ~20 ms (coordinated omission); measured from the schedule they grow to ~1 s.
  Sink sink = StartSink({"--delay", "20", "--expect", "100"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  SendResult r = RunSend(sink.port, {"--rate", "100", "--messages", "100", "--connections", "1",
                                     "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumberOf(r.out, "messages"), 100) << r.out;
  // A loaded machine only makes the sink slower and the latencies longer: the lower bounds
  // are fixed, the upper one is the run's own length (no latency can exceed it).
  const double elapsed_us = JsonNumberOf(r.out, "elapsed_s") * 1e6;
  EXPECT_GE(elapsed_us, 1.9e6) << r.out;
  EXPECT_GE(JsonNumberOf(r.out, "p50"), 300'000) << r.out;
  EXPECT_LE(JsonNumberOf(r.out, "p50"), JsonNumberOf(r.out, "max")) << r.out;
  EXPECT_GE(JsonNumberOf(r.out, "max"), 800'000) << r.out;
  EXPECT_LE(JsonNumberOf(r.out, "max"), elapsed_us) << r.out;
  EXPECT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
}

TEST_F(RingloadTest, HardTimeoutBoundsTheRun) {
  Sink sink = StartSink({"--delay", "60000", "--duration", "120"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  SendResult r = RunSend(sink.port, {"--messages", "5", "--timeout", "1", "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"timed_out\":true"));
  EXPECT_EQ(JsonNumberOf(r.out, "aborted"), 1) << r.out;
  EXPECT_LT(JsonNumberOf(r.out, "elapsed_s"), 10) << r.out;
  sink.child->Signal(SIGTERM);
  EXPECT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
}

TEST_F(RingloadTest, ReplyTimeoutIsASessionError) {
  Sink sink = StartSink({"--delay", "60000", "--duration", "120"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  SendResult r = RunSend(sink.port, {"--messages", "1", "--io-timeout", "0.3", "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(JsonNumberOf(r.out, "lost"), 1) << r.out;
  EXPECT_EQ(JsonNumberOf(r.out, "session_errors"), 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("timed out waiting for a reply"));
  sink.child->Signal(SIGTERM);
  EXPECT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
}

TEST_F(RingloadTest, RefusedConnectionsAreErrors) {
  // A bound socket that never listens: connecting to its port is refused.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  SendResult r = RunSend(ntohs(addr.sin_port), {"--messages", "10", "--json", "--timeout", "20"});
  close(fd);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_GE(JsonNumberOf(r.out, "connect_errors"), 1) << r.out;
  EXPECT_EQ(JsonNumberOf(r.out, "messages"), 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Connection refused"));
}

// ---------------------------------------------------------------------------------------
// --record when the run ends early (the crash campaign's view)

// Waits (bounded) until `dir` holds at least `n` files.
bool WaitForFiles(const std::string& dir, size_t n, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    std::error_code ec;
    size_t count = 0;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++count;
    }
    if (count >= n) return true;
    usleep(10'000);  // polling a directory for a condition, not sleeping for ordering
  }
  return false;
}

struct RecordLine {
  uint64_t seq = 0;
  std::string message_id;
};

// --record lines by queue id; a malformed or repeated line fails the test.
std::map<std::string, RecordLine> ReadRecord(const std::string& path) {
  std::map<std::string, RecordLine> out;
  std::istringstream in(ReadWholeFile(path));
  std::string line;
  std::set<std::string> message_ids;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    RecordLine r;
    std::string queue_id, extra;
    EXPECT_TRUE(fields >> r.seq >> r.message_id >> queue_id) << line;
    EXPECT_FALSE(fields >> extra) << "more than three fields: " << line;
    EXPECT_TRUE(message_ids.insert(r.message_id).second) << "Message-ID twice: " << line;
    EXPECT_TRUE(out.emplace(queue_id, r).second) << "queue id twice: " << line;
  }
  return out;
}

// Every recorded message is one the sink accepted (its dump, named by the queue id the
// sink replied with, carries the recorded Message-ID), and nothing accepted is recorded
// twice. The sink may hold a few more: accepted, but the connection died before the 250.
void ExpectRecordMatchesSink(const std::map<std::string, RecordLine>& record,
                             const std::string& dump_dir) {
  size_t dumped = 0;
  std::map<std::string, std::string> message_id_by_queue_id;
  for (const auto& entry : std::filesystem::directory_iterator(dump_dir)) {
    message_id_by_queue_id[entry.path().stem().string()] =
        Header(ReadWholeFile(entry.path()), "Message-ID");
    ++dumped;
  }
  for (const auto& [queue_id, r] : record) {
    auto it = message_id_by_queue_id.find(queue_id);
    ASSERT_NE(it, message_id_by_queue_id.end()) << "recorded but never accepted: " << queue_id;
    EXPECT_EQ(it->second, r.message_id) << queue_id;
    EXPECT_EQ(r.message_id.rfind("<" + std::to_string(r.seq) + ".", 0), 0u) << r.message_id;
  }
  EXPECT_GE(dumped, record.size());
  EXPECT_LE(dumped, record.size() + 8) << "more acceptances unrecorded than in flight";
}

TEST_F(RingloadTest, RecordStaysExactWhenTheTargetDiesMidRun) {
  TempDir tmp;
  Sink sink = StartSink({"--threads", "1", "--delay", "2", "--dump", tmp.Sub("got")});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  Child send({RingloadBinary(), "send", "--target", "127.0.0.1:" + std::to_string(sink.port),
              "--quiet", "--json", "--messages", "1000000", "--connections", "4", "--threads",
              "2", "--pipelining", "--record", tmp.Sub("record")});
  ASSERT_TRUE(send.started());
  ASSERT_TRUE(WaitForFiles(tmp.Sub("got"), 100, kWaitMs));
  // The target goes away mid-run: sessions break, reconnects are refused.
  sink.child->Signal(SIGTERM);
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  const int64_t t0 = static_cast<int64_t>(time(nullptr));
  EXPECT_EQ(send.Wait(kWaitMs), 1) << send.out() << send.err();
  EXPECT_LE(static_cast<int64_t>(time(nullptr)) - t0, 15) << "the sender should end promptly";
  EXPECT_GE(JsonNumberOf(send.out(), "errors"), 1) << send.out();
  EXPECT_EQ(JsonNumberOf(send.out(), "file_errors"), 0) << send.out();
  const auto record = ReadRecord(tmp.Sub("record"));
  EXPECT_EQ(static_cast<double>(record.size()), JsonNumberOf(send.out(), "messages"))
      << send.out();
  EXPECT_GE(record.size(), 90u);  // 100 were accepted; a few may be unanswered at the stop
  ExpectRecordMatchesSink(record, tmp.Sub("got"));
}

TEST_F(RingloadTest, RecordIsFlushedWhenTheSenderIsTerminated) {
  TempDir tmp;
  Sink sink = StartSink({"--threads", "1", "--delay", "2", "--dump", tmp.Sub("got")});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  Child send({RingloadBinary(), "send", "--target", "127.0.0.1:" + std::to_string(sink.port),
              "--quiet", "--json", "--messages", "1000000", "--connections", "4", "--threads",
              "2", "--record", tmp.Sub("record")});
  ASSERT_TRUE(send.started());
  ASSERT_TRUE(WaitForFiles(tmp.Sub("got"), 100, kWaitMs));
  send.Signal(SIGTERM);
  EXPECT_EQ(send.Wait(kWaitMs), 1) << send.out() << send.err();
  EXPECT_THAT(send.out(), HasSubstr("\"interrupted\":true"));
  sink.child->Signal(SIGTERM);
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  const auto record = ReadRecord(tmp.Sub("record"));
  EXPECT_EQ(static_cast<double>(record.size()), JsonNumberOf(send.out(), "messages"))
      << send.out();
  EXPECT_GE(record.size(), 90u);  // 100 were accepted; a few may be unanswered at the stop
  ExpectRecordMatchesSink(record, tmp.Sub("got"));
}

// ---------------------------------------------------------------------------------------
// The sink over a raw socket

// A blocking SMTP client with bounded waits (SO_RCVTIMEO), for protocol tests.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() { close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // One complete reply (all its lines), or "" on timeout or EOF.
  std::string Reply() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::string reply;
    for (;;) {
      size_t nl = in_.find('\n');
      if (nl == std::string::npos) {
        char buf[4096];
        ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        // A signal or a spurious wake-up is not the end of the reply: only EOF, an error or
        // the SO_RCVTIMEO deadline (10 s, reported as EAGAIN once it passed) are.
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            std::chrono::steady_clock::now() < deadline) {
          continue;
        }
        if (n <= 0) {
          ADD_FAILURE() << "no complete reply: "
                        << (n == 0 ? std::string("EOF") : std::string(std::strerror(errno)))
                        << "; partial: " << in_;
          return "";
        }
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      std::string line = in_.substr(0, nl + 1);
      in_.erase(0, nl + 1);
      reply += line;
      if (line.size() < 4 || line[3] != '-') return reply;
    }
  }
  bool AtEof() {
    char c;
    return recv(fd_, &c, 1, 0) == 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string in_;
};

TEST_F(RingloadTest, SinkSpeaksEsmtpAndEnforcesLimits) {
  Sink sink = StartSink({"--max-message-size", "4096", "--max-line-length", "600", "--threads",
                         "1"});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  {
    RawClient c(sink.port);
    ASSERT_TRUE(c.connected());
    EXPECT_EQ(c.Reply().substr(0, 4), "220 ");
    c.Send("EHLO client.test\r\n");
    const std::string ehlo = c.Reply();
    for (const char* ext : {"PIPELINING", "SIZE 4096", "8BITMIME", "CHUNKING"}) {
      EXPECT_THAT(ehlo, HasSubstr(ext));
    }
    c.Send("NOOP\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "250 ");
    c.Send("DATA\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "503 ");
    c.Send("MAIL FROM:<a@b.test> SIZE=999999\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "552 ");
    // A line longer than --max-line-length inside DATA: read to the end, then refused.
    c.Send("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "250 ");
    EXPECT_EQ(c.Reply().substr(0, 4), "250 ");
    EXPECT_EQ(c.Reply().substr(0, 4), "354 ");
    c.Send("x\r\n" + std::string(700, 'y') + "\r\n.\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "550 ");
    // Larger than --max-message-size: refused after the end of data.
    c.Send("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    c.Reply();
    c.Reply();
    EXPECT_EQ(c.Reply().substr(0, 4), "354 ");
    std::string big;
    while (big.size() < 5000) big += std::string(70, 'z') + "\r\n";
    c.Send(big + ".\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "552 ");
    // An over-long command line, then the session goes on.
    c.Send(std::string(700, 'q') + "\r\nNOOP\r\nFROB\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "500 ");
    EXPECT_EQ(c.Reply().substr(0, 4), "250 ");
    EXPECT_EQ(c.Reply().substr(0, 4), "500 ");
    c.Send("QUIT\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "221 ");
    EXPECT_TRUE(c.AtEof());
  }
  sink.child->Signal(SIGTERM);
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "messages"), 0) << sink.child->out();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "rejected"), 2) << sink.child->out();
}

TEST_F(RingloadTest, SinkDumpsUnstuffedDataAndPipelinedBdat) {
  TempDir tmp;
  Sink sink = StartSink({"--threads", "1", "--dump", tmp.Sub("got")});
  ASSERT_GT(sink.port, 0) << sink.child->err();
  {
    RawClient c(sink.port);
    ASSERT_TRUE(c.connected());
    EXPECT_EQ(c.Reply().substr(0, 4), "220 ");
    c.Send("EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    c.Reply();
    c.Reply();
    c.Reply();
    EXPECT_EQ(c.Reply().substr(0, 4), "354 ");
    c.Send("Subject: one\r\n\r\n..dot\r\n.\r\n");
    EXPECT_THAT(c.Reply(), HasSubstr("250 2.0.0 Ok: queued as "));
    c.Send("RSET\r\nMAIL FROM:<e@f.test>\r\nRCPT TO:<g@h.test>\r\nRCPT TO:<i@j.test>\r\n"
           "BDAT 17\r\nSubject: two\r\n\r\nhBDAT 12 LAST\r\nello world\r\n");
    for (int i = 0; i < 5; ++i) EXPECT_EQ(c.Reply().substr(0, 4), "250 ") << i;
    EXPECT_THAT(c.Reply(), HasSubstr("queued as"));
    c.Send("QUIT\r\n");
    EXPECT_EQ(c.Reply().substr(0, 4), "221 ");
  }
  sink.child->Signal(SIGTERM);
  ASSERT_EQ(sink.child->Wait(kWaitMs), 0) << sink.child->err();
  EXPECT_EQ(JsonNumberOf(sink.child->out(), "messages"), 2) << sink.child->out();
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.Sub("got"))) {
    files.insert(ReadWholeFile(entry.path()));
  }
  EXPECT_EQ(files, (std::set<std::string>{
                       "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n\r\n"
                       "Subject: one\r\n\r\n.dot\r\n",
                       "MAIL FROM:<e@f.test>\r\nRCPT TO:<g@h.test>\r\nRCPT TO:<i@j.test>\r\n\r\n"
                       "Subject: two\r\n\r\nhello world\r\n"}));
}

// ---------------------------------------------------------------------------------------
// Usage errors

TEST_F(RingloadTest, UsageErrorsExitTwoAndNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::string t = "127.0.0.1:25";
  const std::vector<Case> cases = {
      {{"send", "--target", t, "--messages", "10", "--connections", "abc"}, "--connections"},
      {{"send", "--target", t}, "--messages"},
      {{"send", "--messages", "5"}, "--target"},
      {{"send", "--target", t, "--messages", "5", "--bogus"}, "--bogus"},
      {{"send", "--target", "mail.example.com:25", "--messages", "5"}, "--target"},
      {{"send", "--target", t, "--messages", "5", "--size", "1x"}, "--size"},
      {{"send", "--target", t, "--messages", "5", "--rcpts", "0"}, "--rcpts"},
      {{"send", "--target", t, "--messages", "5", "--rate", "-3"}, "--rate"},
      {{"send", "--target", t, "--messages", "5", "--rcpt-template", "u{x}@d"}, "--rcpt-template"},
      {{"send", "--target", t, "--messages", "5", "--token", "x"}, "--http"},
      {{"send", "--target", t, "--messages", "5", "--http", "--template"}, "--template"},
      {{"send", "--target", t, "--messages", "5", "--http", "--kind", "mime"}, "--kind"},
      {{"send", "--target", t, "--messages", "5", "--http", "--path", "api"}, "--path"},
      {{"send", "--target", t, "--messages", "5", "--http", "--chunking"}, "--chunking"},
      {{"sink", "--reply", "451:2"}, "--reply"},
      {{"sink", "--reply", "200:0.1"}, "--reply"},
      {{"sink", "--listen", "nonsense"}, "--listen"},
      {{"sink", "--delay"}, "--delay"},
      {{"frobnicate"}, "unknown command"},
      {{}, "missing command"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {RingloadBinary()};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Child child(args);
    ASSERT_TRUE(child.started());
    EXPECT_EQ(child.Wait(kWaitMs), 2) << c.needle << ": " << child.err();
    EXPECT_THAT(child.err(), HasSubstr(c.needle));
  }
}

}  // namespace
}  // namespace ringmail::ringload
