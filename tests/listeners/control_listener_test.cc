// The control listener on a real loop and a real Unix socket: requests and replies, a
// deferred reply, garbage and over-long lines, a silent client cut at the idle timeout,
// the socket's mode, and a stale socket file replaced.
#include "listeners/control/control_listener.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <map>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace ringmail::control {
namespace {

class ControlListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!core::ProbeKernel().ok()) GTEST_SKIP() << "io_uring unavailable";
    dir_ = ::testing::TempDir() + "/ctl." + std::to_string(getpid());
    mkdir(dir_.c_str(), 0700);
    path_ = dir_ + "/c.sock";
    loop_ = std::make_unique<core::Loop>(core::LoopOptions{});
    ASSERT_TRUE(loop_->Start().ok());
  }
  void TearDown() override {
    if (loop_ == nullptr) return;
    loop_->RequestStop();
    loop_->Join();
    listener_.reset();
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  void StartListener(ControlListener::Options o) {
    o.socket_paths = {path_};
    absl::Notification ready;
    absl::Status status;
    loop_->Post([&] {
      listener_ = std::make_unique<ControlListener>(
          *loop_, o, [this](const Request& r, ControlListener::Reply reply) {
            if (r.words[0] == "later") {
              // Answer from a later turn, as a command that asks other loops would.
              loop_->Defer([reply = std::move(reply)]() mutable {
                std::move(reply)(Response{true, "done later\n"});
              });
              return;
            }
            std::string body = r.words[0] + (r.json ? " json" : "") + "\n";
            std::move(reply)(Response{r.words[0] != "fail", body});
          });
      status = listener_->Listen();
      ready.Notify();
    });
    ready.WaitForNotification();
    ASSERT_TRUE(status.ok()) << status;
  }
  int Connect() {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    return fd;
  }
  // Reads until one response frame is complete or the peer closes (bounded by timeout).
  // Frames that arrived together stay in the fd's decoder for the next call.
  std::string ReadFrame(int fd, bool* closed = nullptr) {
    ResponseDecoder& d = decoders_[fd];
    std::string raw;
    char buf[4096];
    if (auto r = d.Feed(""); r.ok() && r->has_value()) {
      return ((*r)->ok ? "OK:" : "ERR:") + (*r)->body;
    }
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 5000) <= 0) return raw + "<timeout>";
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        if (closed) *closed = true;
        return raw;
      }
      raw.append(buf, static_cast<size_t>(n));
      auto r = d.Feed(std::string_view(buf, static_cast<size_t>(n)));
      if (!r.ok()) return raw;
      if (r->has_value()) return ((*r)->ok ? "OK:" : "ERR:") + (*r)->body;
    }
  }

  std::map<int, ResponseDecoder> decoders_;
  std::string dir_, path_;
  std::unique_ptr<core::Loop> loop_;
  std::unique_ptr<ControlListener> listener_;
};

TEST_F(ControlListenerTest, AnswersRequestsInOrderOnOneConnection) {
  StartListener({});
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int fd = Connect();
  decoders_.erase(fd);
  std::string two = "summary\nfail --json\nlater\n";
  ASSERT_EQ(send(fd, two.data(), two.size(), 0), static_cast<ssize_t>(two.size()));
  EXPECT_EQ(ReadFrame(fd), "OK:summary\n");
  EXPECT_EQ(ReadFrame(fd), "ERR:fail json\n");
  EXPECT_EQ(ReadFrame(fd), "OK:done later\n");
  close(fd);
}

TEST_F(ControlListenerTest, GarbageGetsAnErrorAndTheListenerLivesOn) {
  StartListener({});
  int fd = Connect();
  std::string junk = std::string("\x01\x02garbage\n");
  send(fd, junk.data(), junk.size(), 0);
  EXPECT_EQ(ReadFrame(fd), "ERR:control characters are not allowed in a request\n");
  close(fd);
  int fd2 = Connect();
  std::string big(kRequestLineMax + 100, 'x');
  send(fd2, big.data(), big.size(), 0);
  bool closed = false;
  std::string r = ReadFrame(fd2, &closed);
  EXPECT_EQ(r.rfind("ERR:request longer than", 0), 0u) << r;
  close(fd2);
  int fd3 = Connect();
  send(fd3, "summary\n", 8, 0);
  EXPECT_EQ(ReadFrame(fd3), "OK:summary\n");
  close(fd3);
}

TEST_F(ControlListenerTest, SilentClientIsCutWithoutBlockingOthers) {
  ControlListener::Options o;
  o.idle_timeout_ms = 200;
  StartListener(o);
  int silent = Connect();
  int talker = Connect();
  send(talker, "summary\n", 8, 0);
  EXPECT_EQ(ReadFrame(talker), "OK:summary\n");
  bool closed = false;
  ReadFrame(silent, &closed);  // returns when the daemon side closes it
  EXPECT_TRUE(closed);
  close(silent);
  close(talker);
}

// A partial request does not renew the idle timer: a client sending one byte every 100 ms
// without a newline (idle timeout 300 ms) is cut at the timeout, not kept while it sends.
TEST_F(ControlListenerTest, ATrickledPartialRequestIsCutAtTheIdleTimeout) {
  ControlListener::Options o;
  o.idle_timeout_ms = 300;
  StartListener(o);
  int fd = Connect();
  bool closed = false;
  int sent = 0;
  for (; sent < 50 && !closed; ++sent) {  // plays a slow client: at most 5 s
    if (send(fd, "s", 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0) {
      char c;
      closed = recv(fd, &c, 1, 0) <= 0;
    }
  }
  EXPECT_TRUE(closed || sent < 50) << "still open after " << sent << " bytes";
  EXPECT_LT(sent, 20);
  close(fd);
}

TEST_F(ControlListenerTest, TooManyClientsAreRefused) {
  ControlListener::Options o;
  o.max_connections = 1;
  StartListener(o);
  int first = Connect();
  send(first, "summary\n", 8, 0);
  EXPECT_EQ(ReadFrame(first), "OK:summary\n");  // now surely accepted
  int second = Connect();
  EXPECT_EQ(ReadFrame(second), "ERR:too many control clients");
  close(first);
  close(second);
}

TEST_F(ControlListenerTest, RefusesToReplaceARegularFile) {
  int fd = open(path_.c_str(), O_CREAT | O_WRONLY, 0600);
  close(fd);
  ControlListener::Options o;
  o.socket_paths = {path_};
  absl::Notification ready;
  absl::Status status;
  loop_->Post([&] {
    listener_ = std::make_unique<ControlListener>(
        *loop_, o, [](const Request&, ControlListener::Reply r) { std::move(r)({}); });
    status = listener_->Listen();
    ready.Notify();
  });
  ready.WaitForNotification();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ringmail::control
