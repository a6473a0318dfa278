// Runs the real ringmail-spool binary against spool directories built with real files.
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/spool/spool_test_util.h"

extern char** environ;

namespace ringmail::spool {
namespace {

using core::RecipientState;
using testing::FlipByte;
using testing::MakeMessage;
using testing::SegmentFileWriter;
using testing::TempDir;

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

const std::string& ToolPath() {
  static const std::string path =
      std::string(RINGMAIL_BINARY_DIR) + "/tools/spooltool/ringmail-spool";
  return path;
}

class SpoolToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(ToolPath().c_str(), X_OK), 0)
        << ToolPath() << " is missing: build the ringmail-spool target";
  }

  RunResult Run(std::vector<std::string> args) {
    std::string out_path = scratch_.path() + "/out", err_path = scratch_.path() + "/err";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    args.insert(args.begin(), ToolPath());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid;
    RunResult result;
    int rc = posix_spawn(&pid, ToolPath().c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0);
    if (rc != 0) return result;
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = testing::ReadFileBytes(out_path);
    result.err = testing::ReadFileBytes(err_path);
    return result;
  }

  // Loop 0: segment 1 with messages a (2 recipients, one delivered) and b (done);
  // segment 2 with message c.
  void BuildSpool() {
    SegmentFileWriter s1(spool_.path(), SegmentId{0, 1});
    s1.AppendMessage(a_);
    s1.AppendMessage(b_);
    s1.AppendRecipient(a_.id, 0, RecipientState::kDelivered, 1, 1700000001000ull,
                       "250 2.0.0 queued as X1");
    s1.AppendDone(b_.id);
    SegmentFileWriter s2(spool_.path(), SegmentId{0, 2});
    c_at_ = s2.AppendMessage(c_);
    last_at_ = s2.AppendRecipient(c_.id, 0, RecipientState::kDeferred, 1, 1700000002000ull,
                                  "451 4.3.0 busy");
  }

  TempDir spool_, scratch_;
  core::Message a_ = MakeMessage(1, 2, "Subject: first\r\nFrom: a@example.org\r\n\r\nbody one\r\n");
  core::Message b_ = MakeMessage(2, 1, "Subject: second\r\n\r\nbody two\r\n");
  core::Message c_ = MakeMessage(3, 1, "Subject: third\r\n\r\nsecret body three\r\n");
  uint64_t c_at_ = 0, last_at_ = 0;
};

TEST_F(SpoolToolTest, UsageErrors) {
  EXPECT_EQ(Run({}).exit_code, 2);
  RunResult r = Run({"frobnicate", spool_.path()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("usage:"), std::string::npos);
  EXPECT_EQ(Run({"list"}).exit_code, 2);
  EXPECT_EQ(Run({"list", "--bogus", spool_.path()}).exit_code, 2);
  EXPECT_EQ(Run({"show", spool_.path()}).exit_code, 2);
  r = Run({"show", spool_.path(), "xyz"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not a message id"), std::string::npos) << r.err;
  EXPECT_EQ(Run({"--help"}).exit_code, 0);
  r = Run({"list", spool_.path() + "/missing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
}

TEST_F(SpoolToolTest, ListShowsLiveMessages) {
  BuildSpool();
  RunResult r = Run({"list", spool_.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(a_.id.ToHex()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(c_.id.ToHex()), std::string::npos);
  EXPECT_EQ(r.out.find(b_.id.ToHex()), std::string::npos);
  EXPECT_NE(r.out.find("<sender1@example.org>"), std::string::npos);
  EXPECT_NE(r.out.find("queued 1/2 final"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("deferred 0/1 final"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2023-11-14 22:13:20"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 live messages"), std::string::npos);

  r = Run({"list", "--all", spool_.path()});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find(b_.id.ToHex()), std::string::npos);
  EXPECT_NE(r.out.find("done"), std::string::npos);
}

TEST_F(SpoolToolTest, ShowPrintsEnvelopeHistoryAndContent) {
  BuildSpool();
  RunResult r = Run({"show", spool_.path(), a_.id.ToHex()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sender: <sender1@example.org>"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recipient 0: <rcpt0@example.com> delivered attempts=1"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recipient 1: <rcpt1@example.com> pending"), std::string::npos);
  EXPECT_NE(r.out.find("RECIPIENT 0 delivered attempts=1: 250 2.0.0 queued as X1"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Received: from client.example.org"), std::string::npos);
  EXPECT_NE(r.out.find("Subject: first"), std::string::npos);
  EXPECT_EQ(r.out.find("body one"), std::string::npos) << "body printed without --body";
  EXPECT_NE(r.out.find("--body prints it"), std::string::npos);

  r = Run({"show", "--body", spool_.path(), c_.id.ToHex()});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("secret body three"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("451 4.3.0 busy"), std::string::npos);

  r = Run({"show", spool_.path(), b_.id.ToHex()});  // done, still on disk
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("state: done"), std::string::npos);
  EXPECT_NE(r.out.find("DONE"), std::string::npos);

  r = Run({"show", spool_.path(), std::string(32, 'f')});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not found"), std::string::npos);
}

TEST_F(SpoolToolTest, VerifyCleanAndTornNewest) {
  BuildSpool();
  RunResult r = Run({"verify", spool_.path()});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("OK"), std::string::npos);
  // The newest segment's last record was being written when the power went.
  FlipByte(SegmentPath(spool_.path(), SegmentId{0, 2}), last_at_ + 30);
  r = Run({"verify", spool_.path()});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("torn tail"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("never acknowledged"), std::string::npos) << r.out;
}

TEST_F(SpoolToolTest, VerifyFindsCorruption) {
  BuildSpool();
  // Damage in the middle of segment 2: a valid record follows.
  FlipByte(SegmentPath(spool_.path(), SegmentId{0, 2}), c_at_ + 50);
  RunResult r = Run({"verify", "--quiet", spool_.path()});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("PROBLEM"), std::string::npos);
  EXPECT_NE(r.out.find("corrupt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DAMAGED"), std::string::npos);
}

TEST_F(SpoolToolTest, VerifyFindsTornTailOfAnOlderSegmentAndBadFiles) {
  BuildSpool();
  std::string s1 = SegmentPath(spool_.path(), SegmentId{0, 1});
  std::string bytes = testing::ReadFileBytes(s1);
  size_t last_record_end = bytes.find_last_not_of('\0');
  FlipByte(s1, last_record_end - 3);  // inside segment 1's last record (the DONE)
  RunResult r = Run({"verify", spool_.path()});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("not the newest segment"), std::string::npos) << r.out;

  TempDir other;
  const std::string garbage = SegmentPath(other.path(), SegmentId{0, 1});
  testing::MakeDirs(LoopDirPath(other.path(), 0));
  testing::WriteFileBytes(garbage, "garbage, not a segment");
  r = Run({"verify", other.path()});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("would be quarantined"), std::string::npos) << r.out;
  EXPECT_TRUE(testing::FileExists(garbage));  // read-only
}

// A recycle interrupted by a stop (spool/segment_writer.h Recycle): a drained segment renamed
// to 0/000000000004.recycle, here still holding its old life's records — including a message
// never marked done, which no reader may replay. verify names the file and what it would have
// become, calls it neither damage nor messages, and leaves it in place; list ignores it.
TEST_F(SpoolToolTest, VerifyListsInterruptedRecyclesWithoutCallingThemDamage) {
  BuildSpool();
  const core::Message stale = MakeMessage(9, 1, "Subject: old life\r\n\r\nnever replayed\r\n");
  {
    SegmentFileWriter drained(spool_.path(), SegmentId{0, 3});
    drained.AppendMessage(stale);
  }
  const std::string recycle = RecyclePath(spool_.path(), SegmentId{0, 4});
  ASSERT_EQ(::rename(SegmentPath(spool_.path(), SegmentId{0, 3}).c_str(), recycle.c_str()), 0);

  RunResult r = Run({"verify", spool_.path()});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("1 interrupted recycle(s): " + recycle +
                       " (would become segment 0/000000000004.seg)"),
            std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("PROBLEM"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("DAMAGED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("000000000004.recycle (not a spool file)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nOK\n"), std::string::npos) << r.out;
  EXPECT_TRUE(testing::FileExists(recycle)) << "a read-only scan removed it";

  r = Run({"verify", "--quiet", spool_.path()});  // part of the summary: printed when quiet
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("1 interrupted recycle(s): " + recycle), std::string::npos) << r.out;

  r = Run({"list", "--all", spool_.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find(stale.id.ToHex()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 live messages"), std::string::npos) << r.out;

  // Damage elsewhere still fails verify; the leftover adds no problem to the count.
  FlipByte(SegmentPath(spool_.path(), SegmentId{0, 2}), c_at_ + 50);
  r = Run({"verify", spool_.path()});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("DAMAGED: 1 problem(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 interrupted recycle(s)"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ringmail::spool
