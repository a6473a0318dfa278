// Provided-buffer ring with multishot recv: data lands in ring buffers, an exhausted ring
// gives ENOBUFS (back-pressure), recycled buffers let reading resume.
#include "core/buffers.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/synchronization/notification.h"
#include "core/loop.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

struct Reader {
  Loop* loop;
  BufferRing* buffers = nullptr;
  int fd;
  Operation recv;
  std::string got;
  int enobufs = 0;
  std::vector<uint16_t> held;
  bool hold = true;
  absl::Notification* enough;
  size_t want;

  void Arm() {
    recv.Bind<&Reader::Done>(this, "recv");
    recv.multishot = true;
    io_uring_sqe* sqe = loop->Prepare(recv);
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffers->group_id();
  }
  void Done(Operation&, IoResult r) {
    if (r.ok() && r.has_buffer()) {
      got.append(buffers->Take(r.buffer_id(), r.value()));
      if (hold) {
        held.push_back(r.buffer_id());
      } else {
        buffers->Recycle(r.buffer_id());
      }
    } else if (r.error() == ENOBUFS) {
      ++enobufs;
      hold = false;  // give every buffer back and read again
      for (uint16_t b : held) buffers->Recycle(b);
      held.clear();
    }
    if (got.size() >= want) {
      if (!enough->HasBeenNotified()) enough->Notify();
      return;
    }
    if (!r.more() && !loop->stopping()) Arm();
  }
};

TEST(BufferRingTest, MultishotRecvUsesRingAndRecoversFromEnobufs) {
  if (!ProbeKernel().ok()) GTEST_SKIP() << "io_uring unavailable";
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Loop loop(LoopOptions{});
  ASSERT_TRUE(loop.Start().ok());
  std::unique_ptr<BufferRing> ring_buffers;
  absl::Notification enough;
  const std::string payload(64 * 1024, 'x');
  Reader reader{&loop, nullptr, sv[0], {}, {}, 0, {}, true, &enough, payload.size()};
  absl::Notification armed;
  loop.Post([&] {
    auto br = BufferRing::Create(loop.ring(), 7, 4, 1024);  // 4 KiB in all: will run out
    ASSERT_TRUE(br.ok()) << br.status();
    ring_buffers = std::move(br).value();
    reader.buffers = ring_buffers.get();
    reader.Arm();
    // The buffer ring is unregistered by the loop thread (the ring's single issuer).
    loop.OnStop([&] { ring_buffers.reset(); });
    armed.Notify();
  });
  armed.WaitForNotification();
  size_t off = 0;
  while (off < payload.size()) {
    ssize_t n = write(sv[1], payload.data() + off, payload.size() - off);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
  enough.WaitForNotification();
  loop.RequestStop();
  loop.Join();
  EXPECT_EQ(reader.got, payload);
  EXPECT_GE(reader.enobufs, 1);
  EXPECT_EQ(ring_buffers, nullptr);
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace ringmail::core
