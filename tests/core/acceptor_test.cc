// Acceptor tests on a real loop and real loopback sockets: connections reach the handler
// with their fd (and the bound per-socket context), Close() stops an armed multishot
// accept and silences the handler (also when called from the handler with more accepts in
// the same batch), a stopping loop is not re-armed into, and the EMFILE back-off re-arms
// once descriptors are free again.
#include "core/acceptor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <type_traits>
#include <vector>

#include "absl/base/internal/sysinfo.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

constexpr absl::Duration kWait = absl::Seconds(10);

int ListenLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd, 64), 0);
  socklen_t len = sizeof(a);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

// A blocking loopback connect: it returns once the connection sits in the listen backlog,
// whether or not anything has accepted it yet.
int ConnectTo(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

uint16_t LocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

uint16_t PeerPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

// The acceptor's owner: records what the handler hears (on the loop thread); the test
// thread awaits it under the mutex.
struct Sink {
  absl::Mutex mu;
  std::vector<int> fds ABSL_GUARDED_BY(mu);
  std::vector<int> errors ABSL_GUARDED_BY(mu);
  std::vector<int> tags ABSL_GUARDED_BY(mu);
  Acceptor* close_on_accept = nullptr;  // loop thread: Close() from inside the handler

  void Accept(Accepted a) {
    absl::MutexLock lock(&mu);
    if (a.fd >= 0) {
      fds.push_back(a.fd);
      if (close_on_accept != nullptr) close_on_accept->Close();
    } else {
      EXPECT_GT(a.error, 0);
      errors.push_back(a.error);
    }
  }
  // A handler bound with a per-socket context value.
  void AcceptTagged(int tag, Accepted a) {
    {
      absl::MutexLock lock(&mu);
      tags.push_back(tag);
    }
    Accept(a);
  }
  bool Await(const std::vector<int>* seen, size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [&] {
      mu.AssertHeld();
      return seen->size() >= n;
    };
    return mu.AwaitWithTimeout(absl::Condition(&enough), kWait);
  }
  bool AwaitFds(size_t n) { return Await(&fds, n); }
  bool AwaitErrors(size_t n) { return Await(&errors, n); }
  std::vector<int> Fds() {
    absl::MutexLock lock(&mu);
    return fds;
  }
  ~Sink() {
    absl::MutexLock lock(&mu);
    for (int fd : fds) close(fd);
  }
};

class AcceptorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
    LoopOptions o;
    o.name = "acceptor";
    loop_ = std::make_unique<Loop>(o);
    ASSERT_TRUE(loop_->Start().ok());
  }
  void TearDown() override {
    if (loop_ == nullptr) return;
    StopLoop();
    acceptor_.reset();  // after the loop: nothing in flight any more
    for (int fd : clients_) close(fd);
  }
  void StopLoop() {
    if (stopped_) return;
    stopped_ = true;
    loop_->RequestStop();
    loop_->Join();
  }

  // Runs `f` on the loop and returns its result.
  template <typename F>
  auto OnLoop(F f) {
    absl::Notification done;
    if constexpr (std::is_void_v<decltype(f())>) {
      loop_->Post([&] {
        f();
        done.Notify();
      });
      done.WaitForNotification();
    } else {
      decltype(f()) result{};
      loop_->Post([&] {
        result = f();
        done.Notify();
      });
      done.WaitForNotification();
      return result;
    }
  }

  // Creates and starts the acceptor on the loop, on a fresh loopback socket; with a `tag`,
  // the handler is bound with it as its per-socket context.
  void StartAcceptor(int tag = -1) {
    const int fd = ListenLoopback(&port_);
    OnLoop([&] {
      acceptor_ = std::make_unique<Acceptor>(*loop_, "test.accept");
      if (tag < 0) {
        acceptor_->Bind<&Sink::Accept>(&sink_);
      } else {
        acceptor_->Bind<&Sink::AcceptTagged>(&sink_, tag);
      }
      acceptor_->Start(fd);
    });
  }
  // Awaits the final completion of a closed acceptor's accept, one loop turn per check.
  bool AwaitIdle() {
    for (int i = 0; i < 100'000; ++i) {
      if (OnLoop([&] { return acceptor_->idle(); })) return true;
    }
    return false;
  }
  int Connect() {
    clients_.push_back(ConnectTo(port_));
    return clients_.back();
  }
  // Accepts, without the ring, `expected` connections from the listen backlog (each awaited
  // for up to kWait), then whatever else is there already; returns how many in all.
  int AcceptByHand(int expected) {
    int n = 0;
    for (;;) {
      pollfd p{acceptor_->fd(), POLLIN, 0};
      const int timeout_ms = n < expected ? static_cast<int>(absl::ToInt64Milliseconds(kWait)) : 0;
      if (poll(&p, 1, timeout_ms) != 1) return n;
      int fd = accept4(acceptor_->fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return n;
      close(fd);
      ++n;
    }
  }

  std::unique_ptr<Loop> loop_;
  bool stopped_ = false;
  Sink sink_;
  std::unique_ptr<Acceptor> acceptor_;
  uint16_t port_ = 0;
  std::vector<int> clients_;
};

TEST_F(AcceptorTest, ConnectionsReachTheHandlerWithTheirFd) {
  StartAcceptor();
  std::vector<uint16_t> client_ports;
  for (int i = 0; i < 3; ++i) client_ports.push_back(LocalPort(Connect()));
  ASSERT_TRUE(sink_.AwaitFds(3));
  std::vector<uint16_t> peer_ports;
  for (int fd : sink_.Fds()) peer_ports.push_back(PeerPort(fd));
  std::sort(client_ports.begin(), client_ports.end());
  std::sort(peer_ports.begin(), peer_ports.end());
  EXPECT_EQ(peer_ports, client_ports);
  // The fd is the connection itself: bytes written on it reach the client.
  const int first = sink_.Fds()[0];
  ASSERT_EQ(write(first, "x", 1), 1);
  char c = 0;
  int client = -1;
  for (int fd : clients_) {
    if (LocalPort(fd) == PeerPort(first)) client = fd;
  }
  ASSERT_EQ(read(client, &c, 1), 1);
  EXPECT_EQ(c, 'x');
  AcceptorStats stats = OnLoop([&] { return acceptor_->stats(); });
  EXPECT_EQ(stats.accepted, 3u);
  EXPECT_EQ(stats.errors, 0u);
  EXPECT_FALSE(OnLoop([&] { return acceptor_->idle(); }));  // still armed
}

TEST_F(AcceptorTest, HandlerBoundWithAContextGetsItWithEveryConnection) {
  StartAcceptor(/*tag=*/42);
  Connect();
  Connect();
  ASSERT_TRUE(sink_.AwaitFds(2));
  absl::MutexLock lock(&sink_.mu);
  EXPECT_EQ(sink_.tags, (std::vector<int>{42, 42}));
}

TEST_F(AcceptorTest, CloseWithTheAcceptArmedStopsAccepting) {
  StartAcceptor();
  Connect();
  ASSERT_TRUE(sink_.AwaitFds(1));
  OnLoop([&] { acceptor_->Close(); });
  ASSERT_TRUE(AwaitIdle());
  // Nothing is armed now, so these can only wait in the backlog; the handler hears nothing.
  Connect();
  Connect();
  EXPECT_EQ(AcceptByHand(2), 2);
  StopLoop();
  EXPECT_EQ(sink_.Fds().size(), 1u);
  EXPECT_EQ(acceptor_->stats().accepted, 1u);
  EXPECT_EQ(acceptor_->stats().errors, 0u);  // the cancel is not an error to report
  EXPECT_TRUE(acceptor_->closed());
}

// StopListening (a drain) refuses what Close alone leaves waiting in the backlog: a client
// connecting afterwards is refused at once, and the handler hears nothing more.
TEST_F(AcceptorTest, StopListeningRefusesNewClientsInsteadOfQueueingThem) {
  StartAcceptor();
  Connect();
  ASSERT_TRUE(sink_.AwaitFds(1));
  OnLoop([&] { acceptor_->StopListening(); });
  ASSERT_TRUE(AwaitIdle());
  const int late = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(late, 0);
  clients_.push_back(late);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port_);
  EXPECT_NE(connect(late, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0)
      << "a client connected to a listener that stopped listening";
  EXPECT_EQ(errno, ECONNREFUSED);
  StopLoop();
  EXPECT_EQ(sink_.Fds().size(), 1u);
  EXPECT_TRUE(acceptor_->closed());
}

TEST_F(AcceptorTest, CloseFromTheHandlerDropsTheRestOfTheBatch) {
  StartAcceptor();
  constexpr int kClients = 4;
  // Hold the loop while the clients connect, so their accepts complete in one batch.
  absl::Notification connected;
  absl::Notification held;
  loop_->Post([&] {
    sink_.close_on_accept = acceptor_.get();
    held.Notify();
    connected.WaitForNotification();
  });
  held.WaitForNotification();
  for (int i = 0; i < kClients; ++i) Connect();
  connected.Notify();
  ASSERT_TRUE(sink_.AwaitFds(1));
  ASSERT_TRUE(AwaitIdle());
  const AcceptorStats stats = OnLoop([&] { return acceptor_->stats(); });
  const int left = AcceptByHand(kClients - 1 - static_cast<int>(stats.dropped));
  StopLoop();
  // One reached the handler, which closed the acceptor; every other connection was either
  // accepted in the same batch and closed by the acceptor, or never accepted.
  EXPECT_EQ(sink_.Fds().size(), 1u);
  EXPECT_EQ(stats.accepted, 1u);
  EXPECT_EQ(stats.dropped + static_cast<uint64_t>(left), static_cast<uint64_t>(kClients - 1));
}

TEST_F(AcceptorTest, StoppingLoopCancelsAndDoesNotRearm) {
  StartAcceptor();
  Connect();
  ASSERT_TRUE(sink_.AwaitFds(1));
  // The owner did not Close(): the loop's stop cancels the accept, which must not re-arm
  // (Join would never return) nor report the cancel as an error.
  StopLoop();
  EXPECT_TRUE(acceptor_->idle());
  EXPECT_EQ(acceptor_->stats().errors, 0u);
}

// Lowers RLIMIT_NOFILE for this process until destroyed. Only the test's own threads run
// meanwhile (gtest runs one test at a time); the loop opens no descriptor while it turns,
// and the test thread's wake ring for Post exists before the limit is lowered.
class NofileLimit {
 public:
  explicit NofileLimit(rlim_t soft) {
    ok_ = getrlimit(RLIMIT_NOFILE, &saved_) == 0;
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    ok_ = ok_ && setrlimit(RLIMIT_NOFILE, &lowered) == 0;
  }
  ~NofileLimit() {
    if (ok_) setrlimit(RLIMIT_NOFILE, &saved_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

TEST_F(AcceptorTest, OutOfDescriptorsBacksOffThenRearms) {
  OnLoop([] {});  // creates this thread's wake ring before descriptors run out
  // Abseil reads /sys/devices/system/cpu/online once per process, the first time a Mutex
  // spins (its NumCPUs); on a loaded machine that happened on the loop thread between the
  // probe below and the filling, so the client was accepted instead of refused (strace
  // showed the transient descriptor). Done now, it cannot take a descriptor later.
  (void)absl::base_internal::NumCPUs();
  const int listen_fd = ListenLoopback(&port_);
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // connected later
  ASSERT_GE(client, 0);
  clients_.push_back(client);
  // A limit just above the next free descriptor. The kernel reads the limit when the
  // accept is armed, so it is lowered before Start().
  const int probe = dup(0);
  ASSERT_GE(probe, 0);
  close(probe);
  NofileLimit limit(static_cast<rlim_t>(probe) + 2);
  ASSERT_TRUE(limit.ok());
  OnLoop([&] {
    acceptor_ = std::make_unique<Acceptor>(*loop_, "test.accept");
    acceptor_->Bind<&Sink::Accept>(&sink_);
    acceptor_->Start(listen_fd);
  });
  // The accept is submitted at the end of that loop turn, and its first attempt holds the
  // lowest free descriptor for a moment (reserved, then put back on EAGAIN): a filling that
  // overlapped it stopped one short and left that descriptor for the client (strace: 3 in
  // 10 whole-binary runs under load). One more round trip runs after that submit.
  OnLoop([] {});
  // Every descriptor below the limit taken: the accept cannot get one for the client.
  std::vector<int> fillers;
  for (;;) {
    int fd = dup(listen_fd);
    if (fd < 0) {
      ASSERT_EQ(errno, EMFILE);
      break;
    }
    fillers.push_back(fd);
    ASSERT_LT(fillers.size(), 64u);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port_);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_TRUE(sink_.AwaitErrors(1))
      << "accepted " << sink_.Fds().size() << " with " << fillers.size() << " fillers from fd "
      << probe << ": the process opened a descriptor of its own meanwhile";
  {
    absl::MutexLock lock(&sink_.mu);
    EXPECT_EQ(sink_.errors[0], EMFILE);
    EXPECT_TRUE(sink_.fds.empty());
  }
  EXPECT_GE(OnLoop([&] { return acceptor_->stats().backoffs; }), 1u);
  for (int fd : fillers) close(fd);
  // The retry timer re-arms the accept, which now finds a descriptor for the client.
  ASSERT_TRUE(sink_.AwaitFds(1));
  EXPECT_EQ(PeerPort(sink_.Fds()[0]), LocalPort(client));
  const AcceptorStats stats = OnLoop([&] { return acceptor_->stats(); });
  EXPECT_EQ(stats.accepted, 1u);
  EXPECT_EQ(stats.errors, stats.backoffs);  // every error was EMFILE, every one backed off
  EXPECT_FALSE(OnLoop([&] { return acceptor_->idle(); }));  // armed again
}

}  // namespace
}  // namespace ringmail::core
