// SpoolWriter on a real loop and a real directory: every acknowledged message must come back
// from recovery with its envelope and its exact bytes, batches must group, rollover and
// oversized records must work, and state records must take the same path.
#include "spool/group_commit.h"

#include <sys/stat.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "spool/live_index.h"
#include "spool/recovery.h"
#include "spool/segment_reader.h"
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
using testing::ReadFileBytes;
using testing::TempDir;

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(lt_.started()); }

  // The loop stops first (its stop waits for in-flight ops); the writer goes after it.
  void TearDown() override {
    lt_.Stop();
    writer_.reset();
  }

  SpoolWriterOptions Options() {
    SpoolWriterOptions o;
    o.spool_dir = dir_.path() + "/spool";
    o.loop_index = 3;
    o.segment_bytes = 4ull << 20;
    return o;
  }

  void Open(SpoolWriterOptions o, MessageSink* sink = nullptr, LiveIndex* index = nullptr) {
    lt_.Run([&] {
      auto w = SpoolWriter::Open(lt_.loop(), o, sink, index);
      ASSERT_TRUE(w.ok()) << w.status();
      writer_ = std::move(w).value();
    });
    ASSERT_NE(writer_, nullptr);
  }

  // Commits messages first..first+count-1 from one loop task (one turn) into committer
  // slots starting at `slot`, remembering what to expect.
  void CommitInOneTurn(Committer& c, size_t slot, uint64_t first, size_t count, size_t body_bytes) {
    std::vector<std::unique_ptr<core::Message>> messages;
    for (size_t i = 0; i < count; ++i) {
      messages.push_back(NewMessage(first + i, body_bytes));
      expected_[messages.back()->id.ToHex()] = ExpectationOf(*messages.back());
    }
    lt_.Run([&] {
      for (size_t i = 0; i < count; ++i) {
        c.at(slot + i).message = std::move(messages[i]);
        writer_->Commit(c.at(slot + i));
      }
    });
  }

  // Opens with `o`, commits one message, and checks that the first segment has its full size
  // and reads as zeros after the records (the contract "zeros mean no record"). Its path.
  std::string CommitOneAndCheckTheTail(const SpoolWriterOptions& o) {
    Open(o);
    Committer c(1);
    CommitInOneTurn(c, 0, 1, 1, 100);
    EXPECT_TRUE(c.WaitFor(1));
    const std::string path = SegmentPath(o.spool_dir, SegmentId{3, 1});
    const std::string bytes = ReadFileBytes(path);
    EXPECT_EQ(bytes.size(), o.segment_bytes);
    EXPECT_EQ(bytes.find_first_not_of('\0', kSegmentHeaderBytes + Stats().bytes),
              std::string::npos);
    return path;
  }

  SpoolWriterStats Stats() {
    SpoolWriterStats s;
    lt_.Run([&] { s = writer_->stats(); });
    return s;
  }

  std::map<std::string, SpoolLocation> LocationsOf(Committer& c) {
    std::map<std::string, SpoolLocation> out;
    for (size_t i = 0; i < c.size(); ++i) {
      if (c.at(i).status.ok()) out[c.at(i).id.ToHex()] = c.at(i).location;
    }
    return out;
  }

  TempDir dir_;
  LoopThread lt_;
  std::unique_ptr<SpoolWriter> writer_;
  std::map<std::string, Expected> expected_;
};

TEST_F(GroupCommitTest, OneTurnIsOneBatchAndRecovers) {
  Open(Options());
  Committer c(64);
  CommitInOneTurn(c, 0, 1, 64, 2000);
  ASSERT_TRUE(c.WaitFor(64));
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_TRUE(c.at(i).status.ok()) << c.at(i).status;
    EXPECT_EQ(c.at(i).message, nullptr);  // released by the writer on success
    EXPECT_EQ(c.at(i).location.segment, (SegmentId{3, 1}));
  }
  SpoolWriterStats s = Stats();
  EXPECT_EQ(s.messages, 64u);
  EXPECT_EQ(s.batches, 1u);
  EXPECT_EQ(s.fsyncs, 1u);
  EXPECT_EQ(s.largest_batch, 64u);
  EXPECT_EQ(s.requests_failed, 0u);
  ExpectRecovered(Options().spool_dir, expected_, LocationsOf(c));
}

TEST_F(GroupCommitTest, RecordsAreContiguousInRequestOrder) {
  Open(Options());
  Committer c(10);
  CommitInOneTurn(c, 0, 1, 10, 777);
  ASSERT_TRUE(c.WaitFor(10));
  uint64_t offset = kSegmentHeaderBytes;
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_TRUE(c.at(i).status.ok());
    EXPECT_EQ(c.at(i).location.record_offset, offset) << i;  // no gap, request order
    offset += c.at(i).location.record_bytes;
  }
}

// A message committed from the previous one's done callback: each is its own batch, none
// waits for a timer, and re-entering the writer from `done` works.
class ChainedCommitter {
 public:
  ChainedCommitter(SpoolWriter& w, size_t total) : writer_(w), total_(total) {
    request_.Bind<&ChainedCommitter::Done>(this);
  }
  void Start() { Next(); }
  bool Wait() { return finished_.WaitForNotificationWithTimeout(absl::Seconds(120)); }
  std::vector<core::MessageId> ids;
  std::vector<Expected> expected;
  size_t failures = 0;

 private:
  void Next() {
    auto m = NewMessage(1000 + ids.size(), 300);
    expected.push_back(ExpectationOf(*m));
    ids.push_back(m->id);
    request_.message = std::move(m);
    writer_.Commit(request_);
  }
  void Done(CommitRequest& r) {
    if (!r.status.ok()) ++failures;
    if (ids.size() == total_) {
      finished_.Notify();
      return;
    }
    Next();
  }
  SpoolWriter& writer_;
  size_t total_;
  CommitRequest request_;
  absl::Notification finished_;
};

TEST_F(GroupCommitTest, CommitFromDoneCallbackMakesItsOwnBatch) {
  Open(Options());
  ChainedCommitter chain(*writer_, 20);
  lt_.Run([&] { chain.Start(); });
  ASSERT_TRUE(chain.Wait());
  EXPECT_EQ(chain.failures, 0u);
  SpoolWriterStats s = Stats();
  EXPECT_EQ(s.messages, 20u);
  EXPECT_EQ(s.batches, 20u);
  for (size_t i = 0; i < chain.ids.size(); ++i) expected_[chain.ids[i].ToHex()] = chain.expected[i];
  ExpectRecovered(Options().spool_dir, expected_);
}

TEST_F(GroupCommitTest, BatchLimitsSplitABatch) {
  SpoolWriterOptions o = Options();
  o.batch_messages_max = 4;
  Open(o);
  Committer c(20);
  CommitInOneTurn(c, 0, 1, 20, 100);
  ASSERT_TRUE(c.WaitFor(20));
  SpoolWriterStats s = Stats();
  EXPECT_EQ(s.batches, 5u);
  EXPECT_EQ(s.largest_batch, 4u);
  ExpectRecovered(o.spool_dir, expected_, LocationsOf(c));
}

TEST_F(GroupCommitTest, BatchBytesLimitSplitsButABigRecordGoesAlone) {
  SpoolWriterOptions o = Options();
  o.batch_bytes_max = 16 * 1024;
  Open(o);
  Committer c(11);
  CommitInOneTurn(c, 0, 1, 10, 6000);     // ~6.3 KiB records: at most 2 per 16 KiB batch
  CommitInOneTurn(c, 10, 100, 1, 40000);  // bigger than a batch: alone
  ASSERT_TRUE(c.WaitFor(11));
  for (size_t i = 0; i < c.size(); ++i) ASSERT_TRUE(c.at(i).status.ok()) << c.at(i).status;
  SpoolWriterStats s = Stats();
  EXPECT_GE(s.batches, 6u);
  EXPECT_LE(s.largest_batch, 2u);
  ExpectRecovered(o.spool_dir, expected_, LocationsOf(c));
}

TEST_F(GroupCommitTest, RolloverProducesSeveralRecoverableSegments) {
  SpoolWriterOptions o = Options();
  o.segment_bytes = kMinSegmentBytes;  // 1 MiB
  Open(o);
  Committer c(60);
  for (size_t turn = 0; turn < 6; ++turn) CommitInOneTurn(c, turn * 10, 1 + turn * 10, 10, 50000);
  ASSERT_TRUE(c.WaitFor(60));
  std::set<uint64_t> seqs;
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_TRUE(c.at(i).status.ok()) << c.at(i).status;
    const SpoolLocation& l = c.at(i).location;
    EXPECT_LE(l.record_offset + l.record_bytes, o.segment_bytes);
    seqs.insert(l.segment.seq);
  }
  EXPECT_GE(seqs.size(), 3u);  // ~3 MB of records in 1 MiB segments
  SpoolWriterStats s = Stats();
  EXPECT_GE(s.segments, seqs.size());
  // Recovery reads a spool at rest: with recycling on, the next spare is started once the
  // active segment is half full, so one may still be in the making (a 0-byte file) when the
  // last commit is acknowledged. The loop's stop lets it finish.
  lt_.Stop();
  RecoveryResult r = ExpectRecovered(o.spool_dir, expected_, LocationsOf(c));
  EXPECT_EQ(r.report.CountEnds(SegmentEnd::kTornTail), 0u);
  for (const SegmentReport& sr : r.report.segments) EXPECT_EQ(sr.file_bytes, o.segment_bytes);
}

TEST_F(GroupCommitTest, OversizedMessageGetsASegmentSizedForIt) {
  SpoolWriterOptions o = Options();
  o.segment_bytes = kMinSegmentBytes;
  Open(o);
  Committer c(3);
  CommitInOneTurn(c, 0, 1, 1, 1000);
  CommitInOneTurn(c, 1, 2, 1, 3 << 20);  // 3 MiB body, dozens of chunks
  CommitInOneTurn(c, 2, 3, 1, 1000);
  ASSERT_TRUE(c.WaitFor(3));
  for (size_t i = 0; i < c.size(); ++i) ASSERT_TRUE(c.at(i).status.ok()) << c.at(i).status;
  const SpoolLocation& big = c.at(1).location;
  EXPECT_NE(big.segment, c.at(0).location.segment);
  SegmentReader reader;
  ASSERT_EQ(reader.Open(SegmentPath(o.spool_dir, big.segment)).result, SegmentOpenResult::kOk);
  EXPECT_GE(reader.header().segment_bytes, big.record_offset + big.record_bytes);
  EXPECT_GT(reader.header().segment_bytes, o.segment_bytes);
  ExpectRecovered(o.spool_dir, expected_, LocationsOf(c));
}

// 100 MB in 64 KiB chunks is ~1600 iovecs: more than one WRITEV may take (IOV_MAX 1024).
TEST_F(GroupCommitTest, HundredMegabyteBodyBeyondIovMax) {
  Open(Options());
  auto m = NewMessage(7, 100u << 20);
  ASSERT_GT(m->body.chunk_count(), 1024u);
  expected_[m->id.ToHex()] = ExpectationOf(*m);
  Committer c(1);
  lt_.Run([&] {
    c.at(0).message = std::move(m);
    writer_->Commit(c.at(0));
  });
  ASSERT_TRUE(c.WaitFor(1));
  ASSERT_TRUE(c.at(0).status.ok()) << c.at(0).status;
  SpoolWriterStats s = Stats();
  EXPECT_EQ(s.batches, 1u);
  EXPECT_GE(s.writes, 2u);
  ExpectRecovered(Options().spool_dir, expected_, LocationsOf(c));
}

TEST_F(GroupCommitTest, ThousandsOfIovecsInOneBatchUseSeveralLinkedWrites) {
  SpoolWriterOptions o = Options();
  o.batch_messages_max = 4096;
  Open(o);
  Committer c(1500);
  CommitInOneTurn(c, 0, 1, 1500, 64);  // head, Received:, body, tail: ~6000 iovecs
  ASSERT_TRUE(c.WaitFor(1500));
  SpoolWriterStats s = Stats();
  EXPECT_EQ(s.batches, 1u);
  EXPECT_GE(s.writes, 5u);
  EXPECT_EQ(s.messages, 1500u);
  ExpectRecovered(o.spool_dir, expected_, LocationsOf(c));
}

class RecordingSink : public MessageSink {
 public:
  explicit RecordingSink(Committer* c) : committer_(c) {}
  void Committed(CommittedMessage&& m) override {
    absl::MutexLock lock(&mu_);
    // The request's done ran first: the client hears 250 no later than delivery starts.
    done_before_.push_back(committer_->done() > received_.size());
    received_.push_back(std::move(m));
  }
  std::vector<CommittedMessage> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  std::vector<bool> done_before() {
    absl::MutexLock lock(&mu_);
    return done_before_;
  }

 private:
  Committer* committer_;
  absl::Mutex mu_;
  std::vector<CommittedMessage> received_;
  std::vector<bool> done_before_;
};

TEST_F(GroupCommitTest, SinkReceivesCommittedMessagesWithLocations) {
  Committer c(5);
  RecordingSink sink(&c);
  Open(Options(), &sink);
  CommitInOneTurn(c, 0, 1, 5, 4000);
  ASSERT_TRUE(c.WaitFor(5));
  lt_.Run([] {});  // the sink is called right after the last done, on the loop
  std::vector<CommittedMessage> got = sink.received();
  ASSERT_EQ(got.size(), 5u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(sink.done_before()[i]);
    EXPECT_EQ(got[i].id, c.at(i).id);
    EXPECT_FALSE(got[i].recovered);
    EXPECT_EQ(got[i].location, c.at(i).location);
    const Expected& e = expected_[got[i].id.ToHex()];
    EXPECT_EQ(got[i].envelope.mail_from, e.envelope.mail_from);
    EXPECT_EQ(got[i].envelope.recipients.size(), e.envelope.recipients.size());
    EXPECT_EQ(got[i].received_header_length, e.received_header_length);
    std::string content =
        testing::ReadRange(SegmentPath(Options().spool_dir, got[i].location.segment),
                           got[i].location.content_offset, got[i].location.content_length);
    EXPECT_TRUE(content == e.content);
  }
}

class StateWaiter {
 public:
  explicit StateWaiter(size_t n) : requests(n) {
    for (StateRequest& r : requests) r.Bind<&StateWaiter::Done>(this);
  }
  bool Wait(size_t n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60));
  }
  std::vector<StateRequest> requests;

 private:
  void Done(StateRequest&) {
    absl::MutexLock lock(&mu_);
    ++done_;
  }
  absl::Mutex mu_;
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(GroupCommitTest, RecipientAndDoneRecordsGoThroughTheSameBatches) {
  Open(Options());
  Committer c(3);
  CommitInOneTurn(c, 0, 1, 3, 500);
  ASSERT_TRUE(c.WaitFor(3));
  StateWaiter w(3);
  RecipientUpdate delivered;
  delivered.id = c.at(0).id;
  delivered.recipient_index = 0;
  delivered.state = core::RecipientState::kDelivered;
  delivered.attempts = 1;
  delivered.changed_ms = 5000;
  delivered.reply = "250 2.0.0 ok";
  RecipientUpdate failed = delivered;
  failed.recipient_index = 1;
  failed.state = core::RecipientState::kFailed;
  failed.reply = "550 5.1.1 no such user";
  w.requests[0].record = delivered;
  w.requests[1].record = failed;
  w.requests[2].record = DoneMark{c.at(1).id, 6000};
  lt_.Run([&] {
    for (StateRequest& r : w.requests) writer_->AppendState(r);
  });
  ASSERT_TRUE(w.Wait(3));
  for (const StateRequest& r : w.requests) {
    ASSERT_TRUE(r.status.ok()) << r.status;
    EXPECT_EQ(r.segment, (SegmentId{3, 1}));
    EXPECT_GT(r.offset, c.at(2).location.record_offset);
  }
  EXPECT_EQ(Stats().state_records, 3u);
  EXPECT_EQ(Stats().batches, 2u);
  expected_.erase(c.at(1).id.ToHex());  // DONE: no longer live
  RecoveryResult r = ExpectRecovered(Options().spool_dir, expected_);
  for (const RecoveredMessage& m : r.live) {
    if (m.message.id != c.at(0).id) continue;
    EXPECT_EQ(m.message.envelope.recipients[0].state, core::RecipientState::kDelivered);
    EXPECT_EQ(m.message.envelope.recipients[1].state, core::RecipientState::kFailed);
  }
}

TEST_F(GroupCommitTest, RefusedMessageFailsAloneWithInvalidArgument) {
  Open(Options());
  auto bad = NewMessage(50, 100);
  bad->received_header = std::string(kReceivedHeaderBytesMax + 1, 'x');
  Committer c(3);
  CommitInOneTurn(c, 0, 1, 1, 100);
  lt_.Run([&] {
    c.at(1).message = std::move(bad);
    writer_->Commit(c.at(1));
  });
  CommitInOneTurn(c, 2, 2, 1, 100);
  ASSERT_TRUE(c.WaitFor(3));
  EXPECT_TRUE(c.at(0).status.ok());
  EXPECT_EQ(c.at(1).status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.at(1).message, nullptr);  // left to the caller on failure
  EXPECT_TRUE(c.at(2).status.ok());
  ExpectRecovered(Options().spool_dir, expected_, LocationsOf(c));
}

TEST_F(GroupCommitTest, LiveIndexSeesSegmentsAndAppendedBytes) {
  SpoolWriterOptions o = Options();
  o.segment_bytes = kMinSegmentBytes;
  LiveIndex index;  // touched on the loop only; read below through Run
  Open(o, nullptr, &index);
  Committer c(30);
  for (size_t turn = 0; turn < 3; ++turn) CommitInOneTurn(c, turn * 10, 1 + turn * 10, 10, 60000);
  ASSERT_TRUE(c.WaitFor(30));
  std::map<SegmentId, uint64_t> bytes;
  for (size_t i = 0; i < c.size(); ++i)
    bytes[c.at(i).location.segment] += c.at(i).location.record_bytes;
  lt_.Run([&] {
    EXPECT_EQ(index.segment_count(), bytes.size());
    for (const auto& [id, n] : bytes) {
      const LiveIndex::SegmentStats* s = index.FindSegment(id);
      ASSERT_NE(s, nullptr);
      EXPECT_EQ(s->written_bytes, kSegmentHeaderBytes + n);
    }
    ASSERT_TRUE(writer_->active_segment().has_value());
    // The active segment is never offered for removal; the full ones (nothing live in the
    // index, since AddMessage is the sink's job) are.
    std::vector<SegmentId> removable = index.RemovableSegments();
    EXPECT_EQ(removable.size(), bytes.size() - 1);
    for (SegmentId id : removable) EXPECT_NE(id, *writer_->active_segment());
  });
}

TEST_F(GroupCommitTest, StartsAFreshSegmentAtRecoveryNextSequence) {
  SpoolWriterOptions o = Options();
  core::Message old = testing::MakeMessage(900, 1, "Subject: old\r\n\r\nold\r\n");
  {
    testing::SegmentFileWriter seg(o.spool_dir, SegmentId{3, 7});
    seg.AppendMessage(old);
  }
  expected_[old.id.ToHex()] = ExpectationOf(old);
  absl::StatusOr<RecoveryResult> rec = RecoverSpool(o.spool_dir, {});
  ASSERT_TRUE(rec.ok());
  ASSERT_EQ(rec->report.loops.size(), 1u);
  o.first_sequence = rec->report.loops[0].next_seq;
  EXPECT_EQ(o.first_sequence, 8u);
  Open(o);
  Committer c(1);
  CommitInOneTurn(c, 0, 1, 1, 100);
  ASSERT_TRUE(c.WaitFor(1));
  ASSERT_TRUE(c.at(0).status.ok());
  EXPECT_EQ(c.at(0).location.segment, (SegmentId{3, 8}));
  ExpectRecovered(o.spool_dir, expected_);
}

TEST_F(GroupCommitTest, SegmentFilesAreOwnerOnlyAndPreallocated) {
  Open(Options());
  Committer c(1);
  CommitInOneTurn(c, 0, 1, 1, 100);
  ASSERT_TRUE(c.WaitFor(1));
  struct stat st {};
  ASSERT_EQ(::stat(SegmentPath(Options().spool_dir, SegmentId{3, 1}).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), Options().segment_bytes);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, Options().segment_bytes);
  ASSERT_EQ(::stat(LoopDirPath(Options().spool_dir, 3).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

// The default fill writes zeros over the whole segment, so that no append has to convert an
// unwritten extent (a journal commit per sync); kAllocate leaves them unwritten. Every byte
// after the header reads as zero either way: recovery's "zeros mean no record" holds.
TEST_F(GroupCommitTest, ZeroFilledSegmentsHaveNoUnwrittenExtent) {
  SpoolWriterOptions o = Options();
  o.segment_bytes = (2u << 20) + 4096;  // not whole MiB: the last zero write is short
  ASSERT_EQ(o.fill, SegmentFill::kZeros);  // the default
  const std::string path = CommitOneAndCheckTheTail(o);
  ASSERT_FALSE(HasFatalFailure());
  std::optional<testing::FileExtents> extents = testing::CountFileExtents(path);
  if (!extents.has_value()) GTEST_SKIP() << "FIEMAP does not describe " << path;
  EXPECT_EQ(extents->unwritten, 0u) << "of " << extents->extents << " extents";
}

// The contrast, which shows the test above can fail: fallocate alone leaves the space
// unwritten (on filesystems that say so through FIEMAP).
TEST_F(GroupCommitTest, AllocateOnlySegmentsKeepUnwrittenExtents) {
  SpoolWriterOptions o = Options();
  o.fill = SegmentFill::kAllocate;
  const std::string path = CommitOneAndCheckTheTail(o);
  ASSERT_FALSE(HasFatalFailure());
  std::optional<testing::FileExtents> extents = testing::CountFileExtents(path);
  if (!extents.has_value() || extents->unwritten == 0) {
    GTEST_SKIP() << "the filesystem of " << path << " does not report unwritten extents";
  }
  EXPECT_GT(extents->unwritten, 0u);
}

// Stop requested while a batch (and maybe the first segment's creation) is in flight: the
// loop's stop cancels every op once; the writer resubmits what was caught, so the batch
// still completes before the loop's Run returns, and all of it is on disk.
TEST_F(GroupCommitTest, StopWithABatchInFlight) {
  Open(Options());
  Committer c(50);
  std::vector<std::unique_ptr<core::Message>> messages;
  for (size_t i = 0; i < 50; ++i) {
    messages.push_back(NewMessage(i + 1, 20000));
    expected_[messages.back()->id.ToHex()] = ExpectationOf(*messages.back());
  }
  lt_.Run([&] {
    for (size_t i = 0; i < 50; ++i) {
      c.at(i).message = std::move(messages[i]);
      writer_->Commit(c.at(i));
    }
    lt_.loop().RequestStop();
  });
  lt_.Stop();
  EXPECT_EQ(c.done(), 50u);
  EXPECT_TRUE(writer_->idle());
  for (size_t i = 0; i < c.size(); ++i) EXPECT_TRUE(c.at(i).status.ok()) << c.at(i).status;
  EXPECT_EQ(writer_->stats().errors, 0u);
  RecordProperty("retries", static_cast<int>(writer_->stats().retries));
  ExpectRecovered(Options().spool_dir, expected_, LocationsOf(c));
}

TEST_F(GroupCommitTest, RejectsOptionsOutOfRange) {
  SpoolWriterOptions o = Options();
  o.segment_bytes = kMinSegmentBytes - 1;
  lt_.Run([&] {
    EXPECT_EQ(SpoolWriter::Open(lt_.loop(), o, nullptr).status().code(),
              absl::StatusCode::kInvalidArgument);
    SpoolWriterOptions z = Options();
    z.batch_messages_max = 0;
    EXPECT_EQ(SpoolWriter::Open(lt_.loop(), z, nullptr).status().code(),
              absl::StatusCode::kInvalidArgument);
  });
}

}  // namespace
}  // namespace ringmail::spool
