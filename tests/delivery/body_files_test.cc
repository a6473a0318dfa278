// BodyFiles: one descriptor per segment path, pins, the LRU bound (pinned files are never
// closed), idle closing, open errors. No loop: closes go through close(2).
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "delivery/body_reader.h"
#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

class BodyFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = "/tmp/ringmail-bodyfiles-XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    for (int i = 0; i < 4; ++i) {
      paths_.push_back(dir_ + "/" + std::to_string(i) + ".seg");
      int fd = open(paths_.back().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      ASSERT_GE(fd, 0);
      close(fd);
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

  std::string dir_;
  std::vector<std::string> paths_;
};

TEST_F(BodyFilesTest, SharesOneDescriptorPerPath) {
  BodyFiles files(nullptr, 8);
  auto a = files.Acquire(paths_[0], 1);
  auto b = files.Acquire(paths_[0], 2);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(files.opens(), 1u);
  EXPECT_EQ(files.open_files(), 1u);
  files.Release(*a, 3);
  files.Release(*b, 3);
}

TEST_F(BodyFilesTest, EvictsLeastRecentlyUsedButNeverAPinnedFile) {
  BodyFiles files(nullptr, 2);
  std::vector<BodyFiles::File*> held;
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) {
    auto f = files.Acquire(paths_[i], 10 + i);
    ASSERT_TRUE(f.ok());
    held.push_back(*f);
    fds.push_back(BodyFiles::fd(*f));
  }
  EXPECT_EQ(files.open_files(), 3u);  // all pinned: over the bound, none closed
  for (int fd : fds) EXPECT_TRUE(IsOpen(fd));
  files.Release(held[1], 20);  // the only unpinned one: evicted at once
  EXPECT_EQ(files.open_files(), 2u);
  EXPECT_FALSE(IsOpen(fds[1]));
  EXPECT_TRUE(IsOpen(fds[0]));
  files.Release(held[0], 21);
  files.Release(held[2], 22);
  EXPECT_EQ(files.open_files(), 2u);
  // 0 was used least recently: a new file pushes it out.
  auto f = files.Acquire(paths_[3], 30);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(IsOpen(fds[0]));
  EXPECT_TRUE(IsOpen(fds[2]));
  files.Release(*f, 31);
}

TEST_F(BodyFilesTest, ClosesIdleFiles) {
  BodyFiles files(nullptr, 8);
  auto a = files.Acquire(paths_[0], 100);
  auto b = files.Acquire(paths_[1], 100);
  ASSERT_TRUE(a.ok() && b.ok());
  int fd_a = BodyFiles::fd(*a);
  files.Release(*a, 100);
  files.CloseIdle(1099, 1000);
  EXPECT_EQ(files.open_files(), 2u);  // not idle long enough yet
  files.CloseIdle(1100, 1000);
  EXPECT_EQ(files.open_files(), 1u);  // b is pinned: kept
  EXPECT_FALSE(IsOpen(fd_a));
  files.Release(*b, 2000);
  files.CloseAllUnpinned();
  EXPECT_EQ(files.open_files(), 0u);
}

TEST_F(BodyFilesTest, ForgetClosesARemovedSegmentNowOrAtItsLastRelease) {
  BodyFiles files(nullptr, 8);
  auto idle = files.Acquire(paths_[0], 1);
  auto read = files.Acquire(paths_[1], 1);
  ASSERT_TRUE(idle.ok() && read.ok());
  const int fd_idle = BodyFiles::fd(*idle);
  const int fd_read = BodyFiles::fd(*read);
  files.Release(*idle, 2);
  files.Pin(*read);  // a body read in flight holds its own pin
  files.Forget(paths_[0]);
  EXPECT_FALSE(IsOpen(fd_idle)) << "an unpinned removed segment is closed at once";
  EXPECT_EQ(files.forgotten(), 1u);
  files.Forget(paths_[1]);
  EXPECT_TRUE(IsOpen(fd_read)) << "a pinned one stays open for the reads that hold it";
  // Nothing new joins the forgotten file: the same path is opened anew.
  auto again = files.Acquire(paths_[1], 3);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(BodyFiles::fd(*again), fd_read);
  EXPECT_EQ(files.opens(), 3u);
  EXPECT_EQ(files.open_files(), 2u);
  files.Release(*read, 4);
  EXPECT_TRUE(IsOpen(fd_read));
  files.Release(*read, 5);
  EXPECT_FALSE(IsOpen(fd_read)) << "closed at its last release";
  EXPECT_EQ(files.forgotten(), 2u);
  EXPECT_EQ(files.open_files(), 1u);
  files.Forget(dir_ + "/never-opened.seg");  // unknown: ignored
  EXPECT_EQ(files.open_files(), 1u);
  files.Release(*again, 6);
  files.CloseAllUnpinned();
  EXPECT_EQ(files.open_files(), 0u);
}

TEST_F(BodyFilesTest, MissingFileIsNotFound) {
  BodyFiles files(nullptr, 8);
  auto f = files.Acquire(dir_ + "/gone.seg", 1);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound) << f.status();
  EXPECT_EQ(files.open_files(), 0u);
}

}  // namespace
}  // namespace ringmail::delivery
