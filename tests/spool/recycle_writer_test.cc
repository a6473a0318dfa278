// Segment recycling, the live side: a SpoolWriter, a LiveIndex and an Unlinker on a real loop
// and real files, rolling over many small (1 MiB) segments while the messages of each round
// are marked done. With recycling the drained files come back as spares (the number of files
// stays bounded and fresh segments are rarely made), at most one per loop at a time, with no
// unwritten extent; what recovery reads afterwards is exactly the messages still live.
#include <dirent.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/thread_pool.h"
#include "gtest/gtest.h"
#include "spool/group_commit.h"
#include "spool/live_index.h"
#include "spool/segment_reader.h"
#include "spool/unlinker.h"
#include "tests/spool/spool_test_util.h"
#include "tests/spool/writer_test_harness.h"

namespace ringmail::spool::recycle_writer_test {
namespace {

using testing::Committer;
using testing::ExpectationOf;
using testing::Expected;
using testing::LoopThread;
using testing::NewMessage;
using testing::TempDir;

constexpr uint32_t kLoopIndex = 0;
constexpr uint64_t kSegmentBytes = 1ull << 20;
constexpr size_t kPerRound = 8;
constexpr size_t kBodyBytes = 60 * 1024;  // a round is ~half a segment

// Registers every committed message in the index, as the ledger does.
class IndexSink : public MessageSink {
 public:
  explicit IndexSink(LiveIndex* index) : index_(index) {}
  void Committed(CommittedMessage&& message) override { index_->AddMessage(message); }

 private:
  LiveIndex* index_;
};

// DONE records for a round; each durable one leaves the index (loop thread).
class DoneMarker {
 public:
  DoneMarker(size_t n, LiveIndex* index) : requests_(n), index_(index) {
    for (StateRequest& r : requests_) r.Bind<&DoneMarker::Done>(this);
  }
  StateRequest& at(size_t i) { return requests_[i]; }
  size_t failed() const { return failed_; }
  size_t done() const { return done_; }

 private:
  void Done(StateRequest& r) {
    ++done_;
    if (!r.status.ok()) {
      ++failed_;
      return;
    }
    index_->MarkDone(std::get<DoneMark>(r.record).id, r.segment);
  }
  std::vector<StateRequest> requests_;
  LiveIndex* index_;
  size_t done_ = 0;  // loop thread only
  size_t failed_ = 0;
};

size_t CountSegmentFiles(const std::string& dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (const dirent* e = ::readdir(d)) {
    if (ParseSegmentFileName(e->d_name).has_value()) ++n;
  }
  ::closedir(d);
  return n;
}

class RecycleWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(lt_.started()); }
  // The loop stops first (it waits for every op); then the owners of those ops go.
  void TearDown() override {
    lt_.Stop();
    unlinker_.reset();
    writer_.reset();
  }

  std::string SpoolDir() const { return dir_.path() + "/spool"; }
  std::string LoopDir() const { return LoopDirPath(SpoolDir(), kLoopIndex); }

  // `pool`: removals go through it instead of the ring (the fallback path).
  void Open(bool recycle, SegmentFill fill = SegmentFill::kZeros,
            core::ThreadPool* pool = nullptr) {
    lt_.Run([&] {
      SpoolWriterOptions o;
      o.spool_dir = SpoolDir();
      o.loop_index = kLoopIndex;
      o.segment_bytes = kSegmentBytes;
      o.recycle = recycle;
      o.fill = fill;
      auto w = SpoolWriter::Open(lt_.loop(), o, &sink_, &index_);
      ASSERT_TRUE(w.ok()) << w.status();
      writer_ = std::move(w).value();
      UnlinkerOptions uo;
      uo.spool_dir = SpoolDir();
      uo.loop_index = kLoopIndex;
      if (pool != nullptr) {
        uo.use_ring = false;
        uo.unlink_pool = pool;
        uo.batch_unlink_pool = pool;
      }
      auto u = Unlinker::Create(lt_.loop(), index_, *writer_, std::move(uo));
      ASSERT_TRUE(u.ok()) << u.status();
      unlinker_ = std::move(u).value();
    });
    ASSERT_NE(unlinker_, nullptr);
  }

  // Commits `count` messages numbered from `first` in one turn and waits for them.
  void CommitRound(uint64_t first, size_t count, size_t body_bytes = kBodyBytes) {
    auto c = std::make_unique<Committer>(count);
    std::vector<std::unique_ptr<core::Message>> messages;
    for (size_t i = 0; i < count; ++i) {
      messages.push_back(NewMessage(first + i, body_bytes));
      live_[messages.back()->id.ToHex()] = ExpectationOf(*messages.back());
    }
    lt_.Run([&] {
      for (size_t i = 0; i < count; ++i) {
        c->at(i).message = std::move(messages[i]);
        writer_->Commit(c->at(i));
      }
    });
    ASSERT_TRUE(c->WaitFor(count));
    for (size_t i = 0; i < count; ++i) ASSERT_TRUE(c->at(i).status.ok()) << c->at(i).status;
  }

  // Appends DONE for messages [first, first + count), then lets the unlinker run until
  // nothing removable is left.
  void FinishRound(uint64_t first, size_t count) {
    MarkDone(first, count);
    ASSERT_FALSE(HasFatalFailure());
    lt_.Run([&] { unlinker_->Kick(); });
    WaitUntilRemoved();
    max_files_ = std::max(max_files_, CountSegmentFiles(LoopDir()));
  }

  // Appends DONE for messages [first, first + count) and waits until each is durable.
  void MarkDone(uint64_t first, size_t count) {
    DoneMarker marker(count, &index_);
    lt_.Run([&] {
      for (size_t i = 0; i < count; ++i) {
        marker.at(i).record = DoneMark{testing::TestId(first + i), 1000};
        writer_->AppendState(marker.at(i));
      }
    });
    WaitOnLoop([&] { return marker.done() == count; });
    ASSERT_FALSE(HasFatalFailure());
    lt_.Run([&] { EXPECT_EQ(marker.failed(), 0u); });
    for (size_t i = 0; i < count; ++i) live_.erase(testing::TestId(first + i).ToHex());
  }

  // Waits until the unlinker is idle with nothing removable left but the active segment.
  void WaitUntilRemoved() {
    WaitOnLoop([&] {
      if (unlinker_->busy()) return false;
      std::optional<SegmentId> active = writer_->active_segment();
      for (SegmentId id : index_.RemovableSegments()) {
        if (!active.has_value() || id != *active) return false;
      }
      return true;
    });
  }

  // Asks `done` on the loop thread until it holds, a minute at most. The condition spans
  // several ops (writes, unlinks, directory syncs, a recycle), so it is polled, with a pause
  // between asks: back-to-back asks (they used to be separated by a bare yield) kept this
  // thread and the loop waking each other so fast that, on a PREEMPT_NONE kernel under
  // load, the io-wq worker the loop waits for (and kernel threads) were starved for the
  // whole minute (an RCU stall report in CI). On failure the loop is stopped first, so that
  // nothing in flight outlives the requests of the caller's frame.
  template <typename F>
  void WaitOnLoop(F done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool held = false;
    while (!held && std::chrono::steady_clock::now() < deadline) {
      lt_.Run([&] { held = done(); });
      if (!held) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (held) return;
    lt_.Stop();
    FAIL() << "the loop did not get there within a minute";
  }

  void Rounds(size_t rounds) {
    for (size_t r = 0; r < rounds; ++r) {
      const uint64_t first = 1 + r * kPerRound;
      CommitRound(first, kPerRound);
      ASSERT_FALSE(HasFatalFailure());
      FinishRound(first, kPerRound);
      ASSERT_FALSE(HasFatalFailure());
    }
  }

  SpoolWriterStats WriterStats() {
    SpoolWriterStats s;
    lt_.Run([&] { s = writer_->stats(); });
    return s;
  }
  UnlinkerStats UnlinkStats() {
    UnlinkerStats s;
    lt_.Run([&] { s = unlinker_->stats(); });
    return s;
  }

  TempDir dir_;
  LoopThread lt_;
  LiveIndex index_;
  IndexSink sink_{&index_};
  std::unique_ptr<SpoolWriter> writer_;
  std::unique_ptr<Unlinker> unlinker_;
  std::map<std::string, Expected> live_;
  size_t max_files_ = 0;
};

// A pool worker's unlink result comes back however full the loop's inbox is when the
// worker finishes: the removed segments leave the index and none stays in progress. (It
// used to retry the full inbox for 10 s with sleeps, holding the pool's worker, then drop
// the result, which left the unlinker busy and those segments in progress until a restart.)
TEST_F(RecycleWriterTest, PoolResultsComeBackThroughAFullInbox) {
  auto pool = core::ThreadPool::Create({"Unlink", 1, 16, 0});
  ASSERT_TRUE(pool.ok()) << pool.status();
  Open(/*recycle=*/false, SegmentFill::kZeros, pool->get());
  constexpr size_t kRounds = 3;  // more than one segment's worth
  for (size_t r = 0; r < kRounds; ++r) {
    CommitRound(1 + r * kPerRound, kPerRound);
    ASSERT_FALSE(HasFatalFailure());
  }
  ASSERT_GE(WriterStats().segments, 2u);
  // The pool's only worker waits until the loop's inbox is full.
  absl::Notification pool_gate;
  ASSERT_EQ((*pool)->TrySubmit([&] { pool_gate.WaitForNotification(); }),
            core::SubmitResult::kAccepted);
  MarkDone(1, kRounds * kPerRound);
  ASSERT_FALSE(HasFatalFailure());
  lt_.Run([&] { unlinker_->Kick(); });
  // The kicked run goes at the end of that turn: it has handed the unlink job to the pool.
  WaitOnLoop([&] { return (*pool)->Stats().queued == 1; });
  ASSERT_FALSE(HasFatalFailure());
  // Hold the loop in a task and fill its inbox behind it.
  absl::Notification loop_gate, loop_held;
  ASSERT_EQ(lt_.loop().Post([&] {
    loop_held.Notify();
    loop_gate.WaitForNotification();
  }), core::PostResult::kOk);
  loop_held.WaitForNotification();
  size_t filler = 0;
  while (lt_.loop().Post([] {}) == core::PostResult::kOk) ++filler;
  EXPECT_GT(filler, 0u);
  pool_gate.Notify();
  (*pool)->Stop();  // runs the unlink job; its result is posted, not retried
  loop_gate.Notify();
  absl::Notification drained;  // the filler has run once this has
  while (lt_.loop().Post([&] { drained.Notify(); }) != core::PostResult::kOk) {
    std::this_thread::yield();
  }
  drained.WaitForNotification();
  WaitUntilRemoved();
  ASSERT_FALSE(HasFatalFailure());
  const UnlinkerStats us = UnlinkStats();
  EXPECT_GE(us.pool_unlinks, 1u);
  EXPECT_EQ(us.ring_unlinks, 0u);
  EXPECT_EQ(us.errors, 0u);
  EXPECT_GE(us.unlinked, 1u);
}

TEST_F(RecycleWriterTest, RolloversReuseDrainedFilesAndTheirNumberStaysBounded) {
  Open(/*recycle=*/true);
  Rounds(40);  // ~20 MiB through 1 MiB segments
  ASSERT_FALSE(HasFatalFailure());
  const SpoolWriterStats ws = WriterStats();
  const UnlinkerStats us = UnlinkStats();
  RecordProperty("created", static_cast<int>(ws.segments));
  RecordProperty("recycled", static_cast<int>(ws.segments_recycled));
  EXPECT_GE(ws.segments + ws.segments_recycled, 15u);  // it did roll over many times
  EXPECT_GE(ws.segments_recycled, 10u);
  EXPECT_LE(ws.segments, 5u) << "fresh segments made although drained ones were there";
  EXPECT_EQ(us.recycled, ws.segments_recycled);
  EXPECT_EQ(ws.recycle_failures, 0u);
  EXPECT_LE(max_files_, 4u);
  EXPECT_EQ(ws.errors, 0u);

  // The active segment is a recycled file by now: format 2, flagged, no unwritten extent.
  std::optional<SegmentId> active;
  lt_.Run([&] { active = writer_->active_segment(); });
  ASSERT_TRUE(active.has_value());
  const std::string path = SegmentPath(SpoolDir(), *active);
  SegmentReader reader;
  ASSERT_EQ(reader.Open(path).result, SegmentOpenResult::kOk);
  EXPECT_EQ(reader.header().version, kSegmentFormatVersion2);
  EXPECT_EQ(reader.header().flags, kSegmentFlagRecycled);
  std::optional<testing::FileExtents> extents = testing::CountFileExtents(path);
  if (extents.has_value()) {
    EXPECT_EQ(extents->unwritten, 0u) << "of " << extents->extents << " extents";
  } else {
    RecordProperty("fiemap", "unsupported");
  }

  // Messages still live when the loop stops come back, exactly, and nothing else.
  CommitRound(10000, 5, 3000);
  ASSERT_FALSE(HasFatalFailure());
  lt_.Stop();
  RecoveryResult r = testing::ExpectRecovered(SpoolDir(), live_);
  EXPECT_TRUE(r.report.quarantined.empty()) << r.report.Summary();
  EXPECT_TRUE(r.report.recycle_leftovers.empty());
}

// A burst: six segments drain at once. One becomes the spare (at most one per loop), the rest
// are unlinked, so the disk use shrinks back.
TEST_F(RecycleWriterTest, ABurstKeepsOneSpareAndUnlinksTheRest) {
  Open(/*recycle=*/true);
  CommitRound(1, 96);  // ~6 MiB
  ASSERT_FALSE(HasFatalFailure());
  const size_t files_before = CountSegmentFiles(LoopDir());
  EXPECT_GE(files_before, 6u);
  const uint64_t recycled_before = WriterStats().segments_recycled;
  FinishRound(1, 96);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_LE(WriterStats().segments_recycled, recycled_before + 1);
  EXPECT_LE(CountSegmentFiles(LoopDir()), 3u);
  EXPECT_GE(UnlinkStats().unlinked - UnlinkStats().recycled, 4u);
}

// The contrast, and the switch: with recycling off every rollover makes a fresh segment.
TEST_F(RecycleWriterTest, OffMeansEveryRolloverCreates) {
  Open(/*recycle=*/false);
  Rounds(20);
  ASSERT_FALSE(HasFatalFailure());
  const SpoolWriterStats ws = WriterStats();
  EXPECT_EQ(ws.segments_recycled, 0u);
  EXPECT_EQ(UnlinkStats().recycled, 0u);
  EXPECT_GE(ws.segments, 8u);
  EXPECT_LE(max_files_, 4u);
}

// An oversized segment (one message bigger than a segment) is never reused: unlinked as
// before, and the writer goes on.
TEST_F(RecycleWriterTest, OversizedSegmentsAreUnlinkedNotReused) {
  Open(/*recycle=*/true);
  CommitRound(1, 1, kSegmentBytes + 4096);
  ASSERT_FALSE(HasFatalFailure());
  CommitRound(2, 1, 100);  // rolls over from the oversized segment
  ASSERT_FALSE(HasFatalFailure());
  FinishRound(1, 2);
  ASSERT_FALSE(HasFatalFailure());
  Rounds(6);
  ASSERT_FALSE(HasFatalFailure());
  lt_.Run([&] {
    // Nothing of the oversized segment's size is around any more.
    for (SegmentId id : index_.RemovableSegments()) ADD_FAILURE() << id.ToString();
  });
  EXPECT_EQ(WriterStats().recycle_failures, 0u);
  EXPECT_GE(UnlinkStats().unlinked - UnlinkStats().recycled, 1u);
}

// A burst of more than a segment in one turn: the fresh spare starts once the first batch has
// taken the segment past half (nothing drained can come in time), cannot be ready for the
// rollover that follows in the same turn, and that wait is counted
// (ringmail_spool_rollover_waits_total). Every message still becomes durable.
TEST_F(RecycleWriterTest, ARolloverWithNoSpareReadyIsCountedAsAWait) {
  Open(/*recycle=*/true);
  CommitRound(1, 3 * kSegmentBytes / (2 * kBodyBytes));  // 1.5 segments at once
  ASSERT_FALSE(HasFatalFailure());
  const SpoolWriterStats ws = WriterStats();
  EXPECT_EQ(ws.rollover_waits, 1u);
  EXPECT_EQ(ws.segments_recycled, 0u);
  EXPECT_EQ(ws.errors, 0u);
}

// spool_segment_fill = "auto" (spool/spare_planner.h): segments made once batches average
// 128 KiB or more get no zeros (they would double the bytes written); the first ones, made
// before any batch, do. Every message is still durable and recovered.
TEST_F(RecycleWriterTest, AutoFillDropsZerosWhileBatchesAreBig) {
  Open(/*recycle=*/false, SegmentFill::kAuto);
  for (uint64_t r = 0; r < 6; ++r) {
    CommitRound(1 + r * 8, 8);  // 8 x 60 KiB in one turn: ~480 KiB a batch
    ASSERT_FALSE(HasFatalFailure());
  }
  // The last rollover started the next spare in the background: segments_unfilled counts it
  // when it starts, segments when it is made. Under load the two rounds after that rollover
  // can be durable before it is made (seen: 3 segments, 2 unfilled), so wait for it.
  WaitOnLoop([&] { return writer_->idle(); });
  ASSERT_FALSE(HasFatalFailure());
  const SpoolWriterStats ws = WriterStats();
  EXPECT_GE(ws.segments_unfilled, 1u);
  EXPECT_LE(ws.segments_unfilled + 2, ws.segments);  // the first segment and spare: zeros
  EXPECT_EQ(ws.errors, 0u);
  lt_.Stop();
  RecoveryResult r = testing::ExpectRecovered(SpoolDir(), live_);
  EXPECT_TRUE(r.report.quarantined.empty()) << r.report.Summary();
}

// The contrast: small batches keep the zeros on every segment. The third segment is the spare
// made in the background after the first rollover: batches go on until it exists (it must by
// the second rollover, which waits for it), not for a fixed count that a slow creation loses.
TEST_F(RecycleWriterTest, AutoFillKeepsZerosWhileBatchesAreSmall) {
  Open(/*recycle=*/false, SegmentFill::kAuto);
  constexpr uint64_t kRoundsMax = 800;  // ~3.3 MiB: past the second rollover
  uint64_t rounds = 0;
  SpoolWriterStats ws;
  do {
    CommitRound(1 + rounds, 1, 4096);  // one 4 KiB message a batch: 1 MiB segments roll over
    ASSERT_FALSE(HasFatalFailure());
    ws = WriterStats();
  } while (++rounds < kRoundsMax && ws.segments < 3);
  EXPECT_GE(ws.segments, 3u);
  EXPECT_EQ(ws.segments_unfilled, 0u);
  EXPECT_EQ(ws.errors, 0u);
}

}  // namespace
}  // namespace ringmail::spool::recycle_writer_test
