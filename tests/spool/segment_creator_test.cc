// SegmentCreator on a real loop and a real directory: a recycle whose first rename is refused
// leaves the old segment exactly as it was. Linux (6.18 here) does not cancel the ops linked
// after a failed RENAMEAT, so a recycle submitted as one chain rewrote the old, still-named
// segment's header with the new sequence number (recovery then quarantined a drained file;
// found by FaultCampaign.ReadOnlySpoolDefersAndRecoversWhenWritable). The kernel behaviour
// itself is pinned too, so that the day it changes is seen.
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <liburing.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "core/loop.h"
#include "gtest/gtest.h"
#include "spool/segment_format.h"
#include "spool/segment_writer.h"
#include "tests/spool/spool_test_util.h"

namespace ringmail::spool {
namespace {

constexpr uint64_t kCreatorSegmentBytes = kMinSegmentBytes;

// Runs the creator's operations on a loop thread, one at a time.
class CreatorHarness {
 public:
  explicit CreatorHarness(const std::string& dir, SegmentFill fill = SegmentFill::kAllocate)
      : fill_(fill) {
    dir_fd_ = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    core::LoopOptions o;
    o.name = "creator";
    loop_ = std::make_unique<core::Loop>(o);
    started_ = loop_->Start().ok();
  }
  // The loop's stop waits for the creator's last ops (a CLOSE may still be in flight after
  // a result); the creator goes only then.
  ~CreatorHarness() {
    loop_->RequestStop();
    loop_->Join();
    creator_.reset();
    if (dir_fd_ >= 0) close(dir_fd_);
  }
  bool ok() const { return started_ && dir_fd_ >= 0; }

  // Runs `start(creator)` on the loop and waits for the creation's result.
  template <typename Start>
  SegmentCreateResult Run(Start start) {
    absl::Notification done;
    loop_->Post([&] {
      if (creator_ == nullptr) {
        creator_ = std::make_unique<SegmentCreator>(*loop_, 0, dir_fd_, fill_);
        creator_->Bind<&CreatorHarness::Done>(this);
      }
      done_ = &done;
      start(*creator_);
    });
    done.WaitForNotification();
    return result_;
  }

 private:
  void Done(SegmentCreateResult& r) {
    result_ = r;
    if (r.status.ok()) creator_->Close(r.file.fd);
    done_->Notify();
  }
  SegmentFill fill_;
  int dir_fd_ = -1;
  bool started_ = false;
  std::unique_ptr<core::Loop> loop_;
  std::unique_ptr<SegmentCreator> creator_;  // loop thread only, until the loop stopped
  absl::Notification* done_ = nullptr;
  SegmentCreateResult result_;
};

std::optional<SegmentHeader> ReadHeader(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  std::string bytes(kSegmentHeaderBytes, '\0');
  size_t n = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  SegmentHeader h;
  if (n != bytes.size() || DecodeSegmentHeader(bytes, &h) != SegmentHeaderError::kNone) {
    return std::nullopt;
  }
  return h;
}

// The file's extents over [0, bytes) from FIEMAP: how many bytes they map, and how many of
// those are still "unwritten" (fallocated, never written). nullopt where the filesystem
// cannot say.
struct ExtentBytes {
  uint64_t mapped = 0;
  uint64_t unwritten = 0;
};
std::optional<ExtentBytes> MappedExtents(const std::string& path, uint64_t bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr unsigned kExtentsMax = 512;
  auto* map = static_cast<fiemap*>(
      std::calloc(1, sizeof(fiemap) + kExtentsMax * sizeof(fiemap_extent)));
  map->fm_length = bytes;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kExtentsMax;
  std::optional<ExtentBytes> out;
  if (ioctl(fd, FS_IOC_FIEMAP, map) == 0 && map->fm_mapped_extents < kExtentsMax) {
    out.emplace();
    for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
      const fiemap_extent& e = map->fm_extents[i];
      out->mapped += e.fe_length;
      if (e.fe_flags & FIEMAP_EXTENT_UNWRITTEN) out->unwritten += e.fe_length;
    }
  }
  std::free(map);
  close(fd);
  return out;
}

class SegmentCreatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = core::ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
  }
  testing::TempDir tmp_;
};

TEST_F(SegmentCreatorTest, ARefusedRecycleRenameLeavesTheOldSegmentUntouched) {
  CreatorHarness h(tmp_.path());
  ASSERT_TRUE(h.ok());
  SegmentCreateResult made = h.Run([](SegmentCreator& c) { c.Create(2, kCreatorSegmentBytes); });
  ASSERT_TRUE(made.status.ok()) << made.status;
  const std::string old_path = tmp_.path() + "/" + SegmentFileName(2);
  ASSERT_EQ(ReadHeader(old_path)->seq, 2u);

  // Something already has the in-between name: RENAME_NOREPLACE refuses the first step.
  const std::string squatter = tmp_.path() + "/" + RecycleFileName(4);
  FILE* f = std::fopen(squatter.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  SegmentCreateResult r = h.Run([](SegmentCreator& c) {
    c.Recycle(SegmentId{0, 2}, 4, kCreatorSegmentBytes);
  });
  EXPECT_FALSE(r.status.ok());
  EXPECT_FALSE(r.recycled);
  EXPECT_TRUE(r.recycle_old_present);
  std::optional<SegmentHeader> header = ReadHeader(old_path);
  ASSERT_TRUE(header.has_value()) << "the old segment's header was damaged";
  EXPECT_EQ(header->seq, 2u) << "the old segment's header was rewritten by a refused recycle";
  EXPECT_NE(access((tmp_.path() + "/" + SegmentFileName(4)).c_str(), F_OK), 0);

  // With the name free, the same recycle goes through: 2.seg becomes 4.seg.
  ASSERT_EQ(unlink(squatter.c_str()), 0);
  r = h.Run([](SegmentCreator& c) { c.Recycle(SegmentId{0, 2}, 4, kCreatorSegmentBytes); });
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_TRUE(r.recycled);
  EXPECT_NE(access(old_path.c_str(), F_OK), 0);
  header = ReadHeader(tmp_.path() + "/" + SegmentFileName(4));
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(header->seq, 4u);
  EXPECT_EQ(header->flags, kSegmentFlagRecycled);
}

// The kernel fact the recycle steps are built around: a failed RENAMEAT does not cancel the
// op linked after it (a failed WRITE does). If a kernel starts cancelling, the steps are
// merely more careful than they need to be; this test then says so.
TEST_F(SegmentCreatorTest, AFailedRenameDoesNotBreakAnIoUringLink) {
  io_uring ring;
  ASSERT_EQ(io_uring_queue_init(4, &ring, 0), 0);
  const std::string file = tmp_.path() + "/target";
  int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  int dir = open(tmp_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_renameat(sqe, dir, "no-such-file", dir, "elsewhere", 0);
  sqe->flags |= IOSQE_IO_LINK;
  sqe->user_data = 1;
  sqe = io_uring_get_sqe(&ring);
  io_uring_prep_write(sqe, fd, "x", 1, 0);
  sqe->user_data = 2;
  ASSERT_EQ(io_uring_submit_and_wait(&ring, 2), 2);
  int results[3] = {0, 0, 0};
  for (int i = 0; i < 2; ++i) {
    io_uring_cqe* cqe = nullptr;
    ASSERT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
    results[cqe->user_data] = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
  close(fd);
  close(dir);
  EXPECT_EQ(results[1], -ENOENT);
  if (results[2] == -ECANCELED) {
    GTEST_SKIP() << "this kernel cancels after a failed RENAMEAT; the recycle steps stay safe";
  }
  EXPECT_EQ(results[2], 1);
}

// A zero-filled segment is set up in rounds of 64 KiB writes (a round is one linked chain);
// one whose size needs several rounds and ends in a partial write is written over its whole
// length: no byte is left an unwritten extent, which is what would make each append's sync
// wait for a journal commit. The fallocate-only segment beside it is the control: its extents
// stay unwritten, so the check below can tell.
TEST_F(SegmentCreatorTest, AZeroFilledSegmentIsWrittenToItsEndAcrossRounds) {
  constexpr uint64_t kBytes = 2 * (4ull << 20) + (64u << 10) + 1000;  // three rounds
  CreatorHarness zeros(tmp_.path(), SegmentFill::kZeros);
  ASSERT_TRUE(zeros.ok());
  SegmentCreateResult made = zeros.Run([](SegmentCreator& c) { c.Create(3, kBytes); });
  ASSERT_TRUE(made.status.ok()) << made.status;
  EXPECT_EQ(made.file.capacity, kBytes);
  const std::string path = tmp_.path() + "/" + SegmentFileName(3);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kBytes);
  std::optional<SegmentHeader> header = ReadHeader(path);
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(header->seq, 3u);
  EXPECT_EQ(header->segment_bytes, kBytes);

  CreatorHarness allocate(tmp_.path(), SegmentFill::kAllocate);
  ASSERT_TRUE(allocate.ok());
  made = allocate.Run([](SegmentCreator& c) { c.Create(4, kBytes); });
  ASSERT_TRUE(made.status.ok()) << made.status;

  std::optional<ExtentBytes> zeroed = MappedExtents(path, kBytes);
  std::optional<ExtentBytes> allocated =
      MappedExtents(tmp_.path() + "/" + SegmentFileName(4), kBytes);
  if (!zeroed || !allocated || allocated->unwritten == 0) {
    GTEST_SKIP() << "this filesystem does not report unwritten extents through FIEMAP";
  }
  EXPECT_GE(zeroed->mapped, kBytes);
  EXPECT_EQ(zeroed->unwritten, 0u) << "part of the segment was left unwritten";
}

}  // namespace
}  // namespace ringmail::spool
