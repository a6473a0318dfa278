// The spool writer on a full disk: a small tmpfs mounted for the test (we run as root; the
// test is skipped where mounting is not allowed). Commits go on until the disk is full; the
// failing batch must get kResourceExhausted, nothing crashes, recovery must show exactly the
// acknowledged messages, and once space is freed commits must succeed again by themselves.
//
// Two paths to ENOSPC:
// - preallocated segments (the default): appends never run out of space, since fallocate
//   reserved it; the failure comes when the next segment cannot be created;
// - no preallocation: the WRITEV itself runs out (a short write, then ENOSPC), and the
//   segment, which may now end in a torn record, must be sealed.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "spool/group_commit.h"
#include "spool/recovery.h"
#include "tests/spool/spool_test_util.h"
#include "tests/spool/writer_test_harness.h"

namespace ringmail::spool {
namespace {

using testing::Committer;
using testing::ExpectationOf;
using testing::Expected;
using testing::ExpectRecovered;
using testing::LoopThread;
using testing::NewMessage;
using testing::TempDir;

constexpr size_t kBodyBytes = 64 * 1024;
constexpr size_t kCommitsMax = 200;  // far more than the tmpfs can hold

class DiskFullTest : public ::testing::Test {
 protected:
  // Mounts a tmpfs of `size_kib` and fills `ballast_kib` of it with a file to delete later.
  void Mount(size_t size_kib, size_t ballast_kib) {
    mnt_ = dir_.path() + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0700), 0);
    std::string opts = "size=" + std::to_string(size_kib) + "k,mode=0700";
    if (::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      int err = errno;
      if (err == EPERM || err == EACCES || err == ENODEV || err == ENOSYS) {
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(err);
      }
      FAIL() << "mount tmpfs: " << std::strerror(err);
    }
    mounted_ = true;
    ballast_ = mnt_ + "/ballast";
    int fd = ::open(ballast_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::string block(1024, 'b');
    for (size_t i = 0; i < ballast_kib; ++i) {
      ASSERT_EQ(::write(fd, block.data(), block.size()), 1024);
    }
    ::close(fd);
  }

  void TearDown() override {
    lt_.Stop();
    writer_.reset();  // closes the segment fds: the umount must not find them busy
    if (mounted_ && ::umount(mnt_.c_str()) != 0) {
      ADD_FAILURE() << "umount: " << std::strerror(errno);
      ::umount2(mnt_.c_str(), MNT_DETACH);
    }
  }

  void Open(bool preallocate) {
    options_.spool_dir = mnt_ + "/spool";
    options_.loop_index = 0;
    options_.segment_bytes = kMinSegmentBytes;
    options_.fill = preallocate ? SegmentFill::kZeros : SegmentFill::kNone;
    lt_.Run([&] {
      auto w = SpoolWriter::Open(lt_.loop(), options_, nullptr);
      ASSERT_TRUE(w.ok()) << w.status();
      writer_ = std::move(w).value();
    });
    ASSERT_NE(writer_, nullptr);
  }

  // Commits message `n` alone and waits for its answer.
  absl::Status CommitOne(uint64_t n, SpoolLocation* location = nullptr) {
    auto m = NewMessage(n, kBodyBytes);
    Expected e = ExpectationOf(*m);
    std::string id = m->id.ToHex();
    Committer c(1);
    lt_.Run([&] {
      c.at(0).message = std::move(m);
      writer_->Commit(c.at(0));
    });
    EXPECT_TRUE(c.WaitFor(1));
    if (c.at(0).status.ok()) {
      acknowledged_[id] = std::move(e);
      if (location != nullptr) *location = c.at(0).location;
    } else {
      EXPECT_NE(c.at(0).message, nullptr);  // left to the caller
    }
    return c.at(0).status;
  }

  // Commits until the first failure; returns it.
  // The failed batch's segment is sealed by a ring chain (punch, sync, close) that runs after
  // the batch's requests were answered: recovery reads the files once the writer has
  // nothing in flight. Polled with a pause (a bounded wait for several ring ops).
  void AwaitWriterIdle() {
    bool idle = false;
    for (int i = 0; i < 10'000 && !idle; ++i) {
      lt_.Run([&] { idle = writer_->idle(); });
      if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(idle) << "the spool writer stayed busy for 10 s";
  }

  absl::Status FillUntilFailure() {
    for (uint64_t n = 1; n <= kCommitsMax; ++n) {
      absl::Status s = CommitOne(next_++);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  SpoolWriterStats Stats() {
    SpoolWriterStats s;
    lt_.Run([&] { s = writer_->stats(); });
    return s;
  }

  TempDir dir_;
  std::string mnt_;
  std::string ballast_;
  bool mounted_ = false;
  LoopThread lt_;
  SpoolWriterOptions options_;
  std::unique_ptr<SpoolWriter> writer_;
  std::map<std::string, Expected> acknowledged_;
  uint64_t next_ = 1;
};

TEST_F(DiskFullTest, SegmentCreationRunsOutThenRecoversWhenSpaceReturns) {
  // 4 MiB: 1.5 MiB of ballast, two preallocated 1 MiB segments, no room for a third.
  ASSERT_NO_FATAL_FAILURE(Mount(4096, 1536));
  if (IsSkipped()) return;
  ASSERT_NO_FATAL_FAILURE(Open(/*preallocate=*/true));
  absl::Status failure = FillUntilFailure();
  ASSERT_EQ(failure.code(), absl::StatusCode::kResourceExhausted) << failure;
  EXPECT_GE(acknowledged_.size(), 20u);  // two segments' worth went through
  // Still full: the next commit tries again, and fails the same way.
  EXPECT_EQ(CommitOne(next_++).code(), absl::StatusCode::kResourceExhausted);
  SpoolWriterStats s = Stats();
  EXPECT_GE(s.segment_errors, 2u);
  EXPECT_EQ(s.errors, 0u);  // no append failed: the space was reserved
  ExpectRecovered(options_.spool_dir, acknowledged_);

  ASSERT_EQ(::unlink(ballast_.c_str()), 0);
  SpoolLocation at;
  EXPECT_TRUE(CommitOne(next_++, &at).ok());
  EXPECT_TRUE(CommitOne(next_++).ok());
  ExpectRecovered(options_.spool_dir, acknowledged_);
}

TEST_F(DiskFullTest, WriteRunsOutSealsTheSegmentAndNothingTornIsAcknowledged) {
  // 2 MiB: 1.25 MiB of ballast leaves less than one 1 MiB segment can hold.
  ASSERT_NO_FATAL_FAILURE(Mount(2048, 1280));
  if (IsSkipped()) return;
  ASSERT_NO_FATAL_FAILURE(Open(/*preallocate=*/false));
  absl::Status failure = FillUntilFailure();
  ASSERT_EQ(failure.code(), absl::StatusCode::kResourceExhausted) << failure;
  EXPECT_GE(acknowledged_.size(), 5u);
  SpoolWriterStats s = Stats();
  EXPECT_EQ(s.errors, 1u);  // the WRITEV failed, not a creation
  RecordProperty("short_writes", static_cast<int>(s.short_writes));
  // The failed segment is sealed: the next commit needs a fresh segment, which cannot be
  // made while the disk is full.
  std::optional<SegmentId> active;
  lt_.Run([&] { active = writer_->active_segment(); });
  EXPECT_FALSE(active.has_value() && active->seq == 1);
  EXPECT_EQ(CommitOne(next_++).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_NO_FATAL_FAILURE(AwaitWriterIdle());
  RecoveryResult r = ExpectRecovered(options_.spool_dir, acknowledged_);
  // The failed batch's bytes were punched out of the sealed segment: it ends cleanly,
  // nothing torn and nothing corrupt, though it is where the disk ran out.
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kCorrupt), 0u);
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kTornTail), 0u) << r.report.Summary();

  ASSERT_EQ(::unlink(ballast_.c_str()), 0);
  SpoolLocation at;
  ASSERT_TRUE(CommitOne(next_++, &at).ok());
  EXPECT_NE(at.segment.seq, 1u);  // never appended to the sealed segment again
  EXPECT_TRUE(CommitOne(next_++).ok());
  // The sealed segment is no longer the newest: a torn tail there would read as damage.
  ASSERT_NO_FATAL_FAILURE(AwaitWriterIdle());
  r = ExpectRecovered(options_.spool_dir, acknowledged_);
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kTornTail), 0u) << r.report.Summary();
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kCorrupt), 0u) << r.report.Summary();
}

}  // namespace
}  // namespace ringmail::spool
