// The Ledger on a real loop with a real SpoolWriter in a temporary spool directory; the
// delivery engines are replaced by the dispatch seam, which collects the jobs, and the test
// feeds DeliveryReports back. What the spool holds is checked with RecoverSpool.
#include "delivery/ledger.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/thread_pool.h"
#include "core/thread_pool_registry.h"
#include "gtest/gtest.h"
#include "spool/segment_format.h"
#include "tests/delivery/ledger_test_util.h"

namespace ringmail::delivery {
namespace {

using core::RecipientState;
using testing::ContentOf;
using testing::FileExists;
using testing::LedgerNode;
using testing::ReadRange;
using testing::Recover;
using testing::TempDir;
using testing::TestMessage;

uint64_t LedgerNowMs() { return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())); }

DeliveryReport::Item Item(uint32_t index, RecipientState state, std::string reply = "",
                          std::string host = "", uint32_t attempts = 1, uint64_t next = 0) {
  DeliveryReport::Item item;
  item.index = index;
  item.state = state;
  item.attempts = attempts;
  item.next_attempt_ms = next;
  item.remote_host = std::move(host);
  item.reply = std::move(reply);
  return item;
}

DeliveryReport ReportOf(const core::MessageId& id, std::vector<DeliveryReport::Item> items) {
  DeliveryReport r;
  r.id = id;
  r.items = std::move(items);
  return r;
}

std::vector<std::unique_ptr<core::Message>> One(std::unique_ptr<core::Message> m) {
  std::vector<std::unique_ptr<core::Message>> v;
  v.push_back(std::move(m));
  return v;
}

const spool::RecoveredMessage* FindLive(const spool::RecoveryResult& r,
                                        const core::MessageId& id) {
  for (const spool::RecoveredMessage& m : r.live) {
    if (m.message.id == id) return &m;
  }
  return nullptr;
}

class LedgerTest : public ::testing::Test {
 protected:
  std::string SpoolDir() const { return dir_.path() + "/spool"; }

  LedgerNode::Setup DefaultSetup() {
    LedgerNode::Setup s;
    s.spool_dir = SpoolDir();
    s.options.hostname = "mx.test";
    s.options.postmaster = "postmaster@admin.test";
    return s;
  }

  LedgerNode& Start(LedgerNode::Setup setup) {
    node_ = std::make_unique<LedgerNode>(std::move(setup));
    EXPECT_TRUE(node_->lt().started());
    return *node_;
  }

  TempDir dir_;
  std::unique_ptr<LedgerNode> node_;
};

TEST_F(LedgerTest, SplitsRecipientsByDomainIntoJobs) {
  LedgerNode& n = Start(DefaultSetup());
  auto m = TestMessage(1, "sender@origin.test", {"a@x.test", "b@Y.TEST", "c@x.test", "d@z.test"},
                       500, "SIZE=900 body=8bitmime");
  std::string content = ContentOf(*m);
  const auto& committed = n.Commit(One(std::move(m)));
  const spool::SpoolLocation where = committed[0].location;
  ASSERT_TRUE(n.AwaitJobs(3));
  std::vector<DeliveryJob> jobs = n.TakeJobs();
  ASSERT_EQ(jobs.size(), 3u);
  std::map<std::string, std::vector<std::pair<uint32_t, std::string>>> by_domain;
  for (const DeliveryJob& j : jobs) {
    EXPECT_EQ(j.id, committed[0].id);
    EXPECT_EQ(j.mail_from, "sender@origin.test");
    EXPECT_TRUE(j.eight_bit);
    EXPECT_EQ(j.owner_loop, 0u);
    EXPECT_EQ(j.segment_path, spool::SegmentPath(SpoolDir(), where.segment));
    EXPECT_EQ(j.content_offset, where.content_offset);
    EXPECT_EQ(j.content_length, content.size());
    EXPECT_EQ(ReadRange(j.segment_path, j.content_offset, j.content_length), content);
    for (const auto& r : j.recipients) by_domain[j.domain].emplace_back(r.index, r.address);
  }
  using V = std::vector<std::pair<uint32_t, std::string>>;
  EXPECT_EQ(by_domain["x.test"], (V{{0, "a@x.test"}, {2, "c@x.test"}}));
  EXPECT_EQ(by_domain["y.test"], (V{{1, "b@Y.TEST"}}));
  EXPECT_EQ(by_domain["z.test"], (V{{3, "d@z.test"}}));
  EXPECT_EQ(n.Stats().jobs_dispatched, 3u);
}

TEST_F(LedgerTest, FullInboxKeepsJobsAndRetries) {
  LedgerNode& n = Start(DefaultSetup());
  n.set_inbox_full(true);
  n.Commit(One(TestMessage(1, "s@o.test", {"a@x.test", "b@y.test"})));
  // The sink ran right after the commit's done: both jobs met the full inbox.
  EXPECT_EQ(n.Stats().dispatch_pending, 2u);
  EXPECT_TRUE(n.TakeJobs().empty());
  n.set_inbox_full(false);
  ASSERT_TRUE(n.AwaitJobs(2));
  EXPECT_EQ(n.Stats().dispatch_pending, 0u);
}

TEST_F(LedgerTest, BarePostmasterGoesToTheConfiguredOneAndNoDomainFails) {
  LedgerNode& n = Start(DefaultSetup());
  const auto& c = n.Commit(One(TestMessage(2, "s@origin.test", {"PostMaster", "nodomain"})));
  core::MessageId id = c[0].id;
  ASSERT_TRUE(n.AwaitJobs(1));
  std::vector<DeliveryJob> jobs = n.TakeJobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].domain, "admin.test");
  ASSERT_EQ(jobs[0].recipients.size(), 1u);
  EXPECT_EQ(jobs[0].recipients[0].index, 0u);
  EXPECT_EQ(jobs[0].recipients[0].address, "postmaster@admin.test");
  // "nodomain" failed here: delivering the other one finishes the message with a DSN.
  n.Report(ReportOf(id, {Item(0, RecipientState::kDelivered, "250 ok")}));
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.done_written == 1; }));
  EXPECT_EQ(n.Stats().bounces_sent, 1u);
}

TEST_F(LedgerTest, ReportsBecomeDurableRecordsThenDone) {
  TempDir logs;
  auto log = core::EventLog::Open(logs.path() + "/delivery.log");
  ASSERT_TRUE(log.ok());
  LedgerNode::Setup setup = DefaultSetup();
  setup.options.event_log = log->get();
  LedgerNode& n = Start(std::move(setup));
  const auto& c = n.Commit(One(TestMessage(3, "s@o.test", {"a@x.test", "b@x.test", "c@x.test"})));
  core::MessageId id = c[0].id;
  ASSERT_TRUE(n.AwaitJobs(1));
  uint64_t next = LedgerNowMs() + 3600 * 1000;
  n.Report(ReportOf(id, {Item(0, RecipientState::kDelivered, "250 2.0.0 ok", "mx[1.2.3.4]"),
                         Item(1, RecipientState::kDeferred, "451 4.3.0 later", "", 2, next)}));
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.recipient_records == 2; }));
  {
    spool::RecoveryResult r = Recover(SpoolDir());
    ASSERT_EQ(r.live.size(), 1u);
    const auto& rcpts = r.live[0].message.envelope.recipients;
    ASSERT_EQ(rcpts.size(), 3u);
    EXPECT_EQ(rcpts[0].state, RecipientState::kDelivered);
    EXPECT_EQ(rcpts[1].state, RecipientState::kDeferred);
    EXPECT_EQ(rcpts[1].attempts, 2u);
    EXPECT_EQ(rcpts[1].next_attempt_ms, next);
    EXPECT_EQ(rcpts[2].state, RecipientState::kPending);
  }
  auto view = std::optional<MessageView>();
  n.lt().Run([&] { view = n.ledger().MessageShow(id); });
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->envelope.recipients[0].state, RecipientState::kDelivered);
  EXPECT_EQ(view->recipients_out, 2u);  // the deferred one stays with its engine
  n.Report(ReportOf(id, {Item(1, RecipientState::kDelivered), Item(2, RecipientState::kDelivered),
                         Item(0, RecipientState::kDelivered)}));  // a duplicate: ignored
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.done_written == 1; }));
  LedgerStats s = n.Stats();
  EXPECT_EQ(s.live_messages, 0u);
  EXPECT_EQ(s.reports_ignored, 1u);
  EXPECT_EQ(s.bounces_sent, 0u);
  EXPECT_EQ(s.unlink_backlog, 0u);
  n.lt().Run([&] { view = n.ledger().MessageShow(id); });
  EXPECT_FALSE(view.has_value());
  EXPECT_TRUE(Recover(SpoolDir()).live.empty());
  n.Stop();
  (*log)->Flush();
  std::string lines = ReadRange(logs.path() + "/delivery.log", 0, 1 << 20);
  EXPECT_TRUE(absl::StrContains(lines, "\"event\":\"done\"")) << lines;
  EXPECT_TRUE(absl::StrContains(lines, id.ToHex())) << lines;
  EXPECT_TRUE(absl::StrContains(lines, "\"delivered\":3")) << lines;
}

TEST_F(LedgerTest, PartialFailureCommitsExactlyOneDsn) {
  LedgerNode& n = Start(DefaultSetup());
  const auto& c = n.Commit(One(TestMessage(4, "alice@origin.test",
                                           {"a@x.test", "b@x.test", "c@y.test"})));
  core::MessageId id = c[0].id;
  ASSERT_TRUE(n.AwaitJobs(2));
  n.TakeJobs();
  n.Report(ReportOf(id, {Item(0, RecipientState::kDelivered, "250 ok"),
                         Item(1, RecipientState::kFailed, "550 5.1.1 <b@x.test>: no such user",
                              "mx.x.test[127.0.0.1]:25")}));
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.recipient_records == 2; }));
  EXPECT_EQ(n.Stats().bounces_sent, 0u);  // c is not final yet
  n.Report(ReportOf(id, {Item(2, RecipientState::kFailed, "5.1.2 null MX")}));
  ASSERT_TRUE(n.AwaitStats(
      [](const LedgerStats& s) { return s.done_written == 1 && s.bounces_sent == 1; }));
  // The DSN is a message like any other: it was dispatched to the sender's domain.
  ASSERT_TRUE(n.AwaitJobs(1));
  std::vector<DeliveryJob> jobs = n.TakeJobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].mail_from, "");
  EXPECT_EQ(jobs[0].domain, "origin.test");
  EXPECT_EQ(jobs[0].id, DsnIdFor(id));
  spool::RecoveryResult r = Recover(SpoolDir());
  ASSERT_EQ(r.live.size(), 1u);
  const spool::CommittedMessage& dsn = r.live[0].message;
  EXPECT_EQ(dsn.id, DsnIdFor(id));
  EXPECT_EQ(dsn.envelope.mail_from, "");
  ASSERT_EQ(dsn.envelope.recipients.size(), 1u);
  EXPECT_EQ(dsn.envelope.recipients[0].address, "alice@origin.test");
  std::string body = ReadRange(spool::SegmentPath(SpoolDir(), dsn.location.segment),
                               dsn.location.content_offset, dsn.location.content_length);
  EXPECT_TRUE(absl::StrContains(body, "multipart/report")) << body;
  EXPECT_TRUE(absl::StrContains(body, "report-type=delivery-status"));
  EXPECT_TRUE(absl::StrContains(body, "b@x.test"));
  EXPECT_TRUE(absl::StrContains(body, "c@y.test"));
  EXPECT_TRUE(absl::StrContains(body, "5.1.1"));
  EXPECT_TRUE(absl::StrContains(body, "Subject: test message 4"));  // original headers
  EXPECT_FALSE(absl::StrContains(body, "Final-Recipient: rfc822;a@x.test"));
}

TEST_F(LedgerTest, NullSenderFailureGetsNoDsn) {
  LedgerNode& n = Start(DefaultSetup());
  const auto& c = n.Commit(One(TestMessage(5, "", {"a@x.test"})));
  ASSERT_TRUE(n.AwaitJobs(1));
  n.TakeJobs();
  n.Report(ReportOf(c[0].id, {Item(0, RecipientState::kFailed, "550 5.1.1 unknown", "mx")}));
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.done_written == 1; }));
  LedgerStats s = n.Stats();
  EXPECT_EQ(s.bounces_sent, 0u);
  EXPECT_EQ(s.bounces_dropped, 1u);
  EXPECT_TRUE(n.TakeJobs().empty());
  EXPECT_TRUE(Recover(SpoolDir()).live.empty());
}

// Twelve 200 KiB messages over 1 MiB segments: several segments fill and roll over; once
// every message is done, every segment but the active one is removed.
void DeliverAllAndExpectUnlinked(LedgerNode& n, const std::string& spool_dir) {
  std::vector<std::unique_ptr<core::Message>> messages;
  for (uint64_t i = 0; i < 12; ++i) {
    messages.push_back(TestMessage(100 + i, "s@o.test", {"a@x.test"}, 200 * 1024));
  }
  const auto& c = n.Commit(std::move(messages));
  std::set<spool::SegmentId> used;
  for (const auto& r : c) used.insert(r.location.segment);
  ASSERT_GE(used.size(), 3u);
  ASSERT_TRUE(n.AwaitJobs(12));
  for (const auto& r : c) n.Report(ReportOf(r.id, {Item(0, RecipientState::kDelivered)}));
  std::optional<spool::SegmentId> active;
  n.lt().Run([&] { active = n.writer().active_segment(); });
  ASSERT_TRUE(active.has_value());
  size_t expect_gone = used.size() - used.count(*active);
  ASSERT_TRUE(n.AwaitStats([&](const LedgerStats& s) {
    return s.done_written == 12 && s.segments_unlinked >= expect_gone;
  }));
  spool::RecoveryResult r = Recover(spool_dir);
  EXPECT_TRUE(r.live.empty());
  for (spool::SegmentId id : used) {
    if (id == *active) continue;
    EXPECT_FALSE(FileExists(spool::SegmentPath(spool_dir, id))) << id.ToString();
    for (const auto& seg : r.report.segments) EXPECT_NE(seg.id, id);
  }
}

TEST_F(LedgerTest, DrainedSegmentsAreUnlinked) {
  LedgerNode::Setup setup = DefaultSetup();
  setup.segment_bytes = spool::kMinSegmentBytes;
  LedgerNode& n = Start(std::move(setup));
  DeliverAllAndExpectUnlinked(n, SpoolDir());
}

TEST_F(LedgerTest, DrainedSegmentsAreUnlinkedThroughThePools) {
  auto unlink = core::ThreadPool::Create({"Unlink", 2, 4, 0});
  auto batch = core::ThreadPool::Create({"Batch_Unlink", 1, 4, 0});
  ASSERT_TRUE(unlink.ok() && batch.ok());
  LedgerNode::Setup setup = DefaultSetup();
  setup.segment_bytes = spool::kMinSegmentBytes;
  setup.options.unlink_with_ring = false;
  setup.options.unlink_pool = unlink->get();
  setup.options.batch_unlink_pool = batch->get();
  LedgerNode& n = Start(std::move(setup));
  DeliverAllAndExpectUnlinked(n, SpoolDir());
  n.Stop();
  // A job counts as completed once it has returned, which can be after the loop ran the
  // result it posted: Stop() waits for every job to be over, then the counts are final.
  (*unlink)->Stop();
  (*batch)->Stop();
  EXPECT_GE((*unlink)->Stats().completed + (*batch)->Stats().completed, 1u);
}

TEST_F(LedgerTest, BrakeEngagesAtTheBacklogBoundAndReleases) {
  LedgerNode::Setup setup = DefaultSetup();
  setup.options.unlink_backlog = 4;
  LedgerNode& n = Start(std::move(setup));
  std::vector<std::unique_ptr<core::Message>> messages;
  for (uint64_t i = 0; i < 8; ++i) messages.push_back(TestMessage(200 + i, "s@o.test", {"a@x"}));
  const auto& c = n.Commit(std::move(messages));
  ASSERT_TRUE(n.AwaitJobs(8));
  bool braking_before = true;
  bool braking_after = false;
  n.lt().Run([&] {
    braking_before = n.ledger().brake().load();
    // Eight deliveries reported in one turn: their records are not durable before the
    // turn ends, so the backlog holds all eight.
    for (const auto& r : c) {
      n.ledger().Report(ReportOf(r.id, {Item(0, RecipientState::kDelivered)}));
    }
    braking_after = n.ledger().brake().load();
  });
  EXPECT_FALSE(braking_before);
  EXPECT_TRUE(braking_after);
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.done_written == 8; }));
  LedgerStats s = n.Stats();
  EXPECT_FALSE(s.braking);
  EXPECT_EQ(s.unlink_backlog, 0u);
  EXPECT_EQ(s.brake_engaged, 1u);
  bool braking_end = true;
  n.lt().Run([&] { braking_end = n.ledger().brake().load(); });
  EXPECT_FALSE(braking_end);
}

// A spool left by a loop that no longer exists (5), with some recipients already final, is
// adopted by loop 0: only pending recipients become jobs, finished messages get their DONE
// (and their DSN unless it is already live), and the old directory's segments go away.
TEST_F(LedgerTest, AdoptsARecoveredSpool) {
  uint64_t next = LedgerNowMs() + 3600 * 1000;
  std::vector<core::MessageId> ids;
  core::MessageId dsn4;
  {
    LedgerNode::Setup s = DefaultSetup();
    s.loop_index = 5;
    s.with_ledger = false;
    LedgerNode old(std::move(s));
    std::vector<std::unique_ptr<core::Message>> ms;
    ms.push_back(TestMessage(11, "s@o.test", {"a@x.test", "b@x.test", "c@x.test"}));
    ms.push_back(TestMessage(12, "s@o.test", {"a@x.test", "b@x.test"}));
    ms.push_back(TestMessage(13, "bob@origin.test", {"a@x.test", "b@x.test"}));
    ms.push_back(TestMessage(14, "carol@origin.test", {"a@x.test"}));
    for (const auto& m : ms) ids.push_back(m->id);
    dsn4 = DsnIdFor(ids[3]);
    ms.push_back(TestMessage(15, "", {"carol@origin.test"}));
    ms.back()->id = dsn4;  // the DSN of message 14, already committed before the crash
    old.Commit(std::move(ms));
    auto update = [&](size_t m, uint32_t i, RecipientState st, uint32_t attempts = 1,
                      uint64_t next_ms = 0) {
      old.AppendState(spool::RecipientUpdate{ids[m], i, st, attempts, next_ms, LedgerNowMs(), "x"});
    };
    update(0, 0, RecipientState::kDelivered);
    update(0, 1, RecipientState::kDeferred, 2, next);
    update(1, 0, RecipientState::kDelivered);
    update(1, 1, RecipientState::kDelivered);
    update(2, 0, RecipientState::kFailed);
    update(2, 1, RecipientState::kDelivered);
    update(3, 0, RecipientState::kFailed);
  }
  absl::StatusOr<spool::RecoveryResult> recovered =
      spool::RecoverSpool(SpoolDir(), spool::RecoveryOptions{});
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  ASSERT_EQ(recovered->live.size(), 5u);
  size_t old_segments = recovered->report.segments.size();
  auto split = SplitRecovery(std::move(recovered).value(), {true});
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_EQ(split->size(), 1u);
  LedgerNode& n = Start(DefaultSetup());
  n.Adopt(std::move((*split)[0]));
  ASSERT_TRUE(n.AwaitStats(
      [](const LedgerStats& s) { return s.done_written == 3 && s.bounces_sent == 1; }));
  ASSERT_TRUE(n.AwaitJobs(3));
  std::vector<DeliveryJob> jobs = n.TakeJobs();
  ASSERT_EQ(jobs.size(), 3u);
  std::map<core::MessageId, const DeliveryJob*, bool (*)(const core::MessageId&,
                                                          const core::MessageId&)>
      by_id([](const core::MessageId& a, const core::MessageId& b) {
        return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
      });
  for (const DeliveryJob& j : jobs) by_id[j.id] = &j;
  ASSERT_TRUE(by_id.count(ids[0]) && by_id.count(dsn4) && by_id.count(DsnIdFor(ids[2])));
  const DeliveryJob& m1 = *by_id[ids[0]];
  ASSERT_EQ(m1.recipients.size(), 2u);
  EXPECT_EQ(m1.recipients[0].index, 1u);
  EXPECT_EQ(m1.recipients[0].attempts, 2u);
  EXPECT_EQ(m1.recipients[0].next_attempt_ms, next);
  EXPECT_EQ(m1.recipients[1].index, 2u);
  EXPECT_EQ(m1.recipients[1].next_attempt_ms, 0u);
  EXPECT_EQ(m1.segment_path, spool::SegmentPath(SpoolDir(), {5, 1}));
  EXPECT_EQ(by_id[DsnIdFor(ids[2])]->mail_from, "");
  EXPECT_EQ(by_id[DsnIdFor(ids[2])]->domain, "origin.test");
  n.Report(ReportOf(ids[0], {Item(1, RecipientState::kDelivered),
                             Item(2, RecipientState::kDelivered)}));
  n.Report(ReportOf(dsn4, {Item(0, RecipientState::kDelivered)}));
  n.Report(ReportOf(DsnIdFor(ids[2]), {Item(0, RecipientState::kDelivered)}));
  ASSERT_TRUE(n.AwaitStats([&](const LedgerStats& s) {
    return s.done_written == 6 && s.segments_unlinked >= old_segments;
  }));
  EXPECT_FALSE(FileExists(spool::SegmentPath(SpoolDir(), {5, 1})));
  spool::RecoveryResult r = Recover(SpoolDir());
  EXPECT_TRUE(r.live.empty());
  for (const auto& seg : r.report.segments) EXPECT_EQ(seg.id.loop, 0u) << seg.id.ToString();
}

// One live message left in a sparse segment is moved into the active one, and the old
// segment is removed — but only once no engine holds a job that reads it.
TEST_F(LedgerTest, CompactionMovesTheLastLiveMessageAndRemovesTheSegment) {
  LedgerNode::Setup setup = DefaultSetup();
  setup.segment_bytes = spool::kMinSegmentBytes;
  LedgerNode& n = Start(std::move(setup));
  std::vector<std::unique_ptr<core::Message>> ms;
  for (uint64_t i = 0; i < 5; ++i) ms.push_back(TestMessage(30 + i, "s@o.test", {"a@x.test"},
                                                            150 * 1024));
  ms.push_back(TestMessage(35, "s@o.test", {"a@x.test"}, 300 * 1024));
  std::string content = ContentOf(*ms[0]);
  const auto& c = n.Commit(std::move(ms));
  const spool::SegmentId sparse{0, 1};
  for (size_t i = 0; i < 5; ++i) ASSERT_EQ(c[i].location.segment, sparse);
  ASSERT_NE(c[5].location.segment, sparse);
  ASSERT_TRUE(n.AwaitJobs(6));
  n.TakeJobs();
  for (size_t i = 1; i < 6; ++i) {
    n.Report(ReportOf(c[i].id, {Item(0, RecipientState::kDelivered)}));
  }
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.done_written == 5; }));
  // Its job is out: an engine may still read it where it is. Nothing moves.
  n.lt().Run([&] { n.ledger().RunMaintenance(); });
  EXPECT_EQ(n.Stats().messages_compacted, 0u);
  EXPECT_TRUE(FileExists(spool::SegmentPath(SpoolDir(), sparse)));
  // Deferred for long and handed back (what an engine does): once its record is durable,
  // it may move.
  uint64_t later = LedgerNowMs() + 3600 * 1000;
  n.Report(ReportOf(c[0].id, {Item(0, RecipientState::kDeferred, "451 later", "", 1, later),
                              Item(0, RecipientState::kPending, "", "", 1, later)}));
  EXPECT_EQ(n.Stats().parked, 1u);
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.recipient_records == 6; }));
  n.lt().Run([&] { n.ledger().RunMaintenance(); });
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) {
    return s.messages_compacted == 1 && s.segments_unlinked >= 1;
  }));
  EXPECT_FALSE(FileExists(spool::SegmentPath(SpoolDir(), sparse)));
  spool::RecoveryResult r = Recover(SpoolDir());
  ASSERT_EQ(r.live.size(), 1u);
  const spool::RecoveredMessage* m = FindLive(r, c[0].id);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->stale_copies.empty());
  EXPECT_NE(m->message.location.segment, sparse);
  EXPECT_EQ(m->message.envelope.recipients[0].state, RecipientState::kDeferred);
  EXPECT_EQ(m->message.envelope.recipients[0].next_attempt_ms, later);
  EXPECT_EQ(m->message.envelope.recipients[0].attempts, 1u);
  EXPECT_EQ(ReadRange(spool::SegmentPath(SpoolDir(), m->message.location.segment),
                      m->message.location.content_offset, m->message.location.content_length),
            content);
  // Due now: it goes out again, from its new place.
  n.Report(ReportOf(c[0].id, {Item(0, RecipientState::kPending)}));
  ASSERT_TRUE(n.AwaitJobs(1));
  std::vector<DeliveryJob> jobs = n.TakeJobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].segment_path, spool::SegmentPath(SpoolDir(), m->message.location.segment));
  ASSERT_EQ(jobs[0].recipients.size(), 1u);
  EXPECT_EQ(jobs[0].recipients[0].attempts, 1u);
  EXPECT_EQ(jobs[0].recipients[0].next_attempt_ms, 0u);  // handed back as due now
  EXPECT_EQ(ReadRange(jobs[0].segment_path, jobs[0].content_offset, jobs[0].content_length),
            content);
  n.Report(ReportOf(c[0].id, {Item(0, RecipientState::kDelivered)}));
  ASSERT_TRUE(n.AwaitStats([](const LedgerStats& s) { return s.done_written == 6; }));
  EXPECT_TRUE(Recover(SpoolDir()).live.empty());
}

spool::SegmentReport Segment(uint32_t loop, uint64_t seq, std::vector<spool::SegmentId> pins) {
  spool::SegmentReport s;
  s.id = {loop, seq};
  s.pins = std::move(pins);
  return s;
}

spool::RecoveredMessage Live(uint64_t n, spool::SegmentId at,
                             std::vector<spool::SegmentId> stale = {}) {
  spool::RecoveredMessage m;
  m.message.id = core::MessageId{n, n};
  m.message.location.segment = at;
  for (spool::SegmentId s : stale) m.stale_copies.push_back(spool::SpoolLocation{s});
  return m;
}

TEST(SplitRecoveryTest, GroupsFollowPinsAndCopiesAndOrphansGoToTheFirstOwner) {
  spool::RecoveryResult r;
  r.report.segments = {Segment(0, 1, {}),       Segment(3, 1, {{0, 1}}), Segment(7, 1, {}),
                       Segment(3, 2, {}),       Segment(7, 2, {}),       Segment(3, 3, {}),
                       Segment(3, 4, {{3, 3}})};
  r.live = {Live(1, {0, 1}), Live(2, {3, 1}), Live(3, {7, 1}), Live(4, {7, 2}, {{3, 2}}),
            Live(5, {3, 3}), Live(6, {3, 4})};
  auto split = SplitRecovery(std::move(r), {true, false, false, true});
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_EQ(split->size(), 4u);
  auto ids_of = [](const LedgerAdoption& a) {
    std::vector<std::string> out;
    for (const auto& s : a.segments) out.push_back(s.id.ToString());
    return out;
  };
  auto msgs_of = [](const LedgerAdoption& a) {
    std::vector<uint64_t> out;
    for (const auto& m : a.messages) out.push_back(m.message.id.hi);
    return out;
  };
  using S = std::vector<std::string>;
  EXPECT_EQ(ids_of((*split)[0]), (S{"0/000000000001.seg", "3/000000000001.seg",
                                     "7/000000000001.seg", "3/000000000002.seg",
                                     "7/000000000002.seg"}));
  EXPECT_EQ(ids_of((*split)[3]), (S{"3/000000000003.seg", "3/000000000004.seg"}));
  EXPECT_EQ(msgs_of((*split)[0]), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(msgs_of((*split)[3]), (std::vector<uint64_t>{5, 6}));
  EXPECT_TRUE((*split)[1].segments.empty() && (*split)[2].messages.empty());
}

TEST(SplitRecoveryTest, NoOwnerIsAnErrorOnlyWithSomethingToAdopt) {
  EXPECT_TRUE(SplitRecovery(spool::RecoveryResult{}, {false}).ok());
  spool::RecoveryResult r;
  r.report.segments = {Segment(0, 1, {})};
  EXPECT_EQ(SplitRecovery(std::move(r), {false}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LedgerOptionsTest, FromConfigAndPools) {
  config::GlobalOptions g;
  g.spool_dir = "/var/spool/ringmail";
  g.hostname = "mx.example.com";
  g.postmaster = "hostmaster@example.com";
  std::vector<core::ThreadPoolSpec> specs = {{"Unlink", 1, 37, 0}, {"Batch_Unlink", 1, 5, 0}};
  auto pools = core::ThreadPoolRegistry::Create(specs);
  ASSERT_TRUE(pools.ok()) << pools.status();
  LedgerOptions o = LedgerOptionsFrom(g, pools->get());
  EXPECT_EQ(o.spool_dir, g.spool_dir);
  EXPECT_EQ(o.hostname, g.hostname);
  EXPECT_EQ(o.postmaster, g.postmaster);
  EXPECT_EQ(o.unlink_backlog, 37u);
  EXPECT_EQ(o.unlink_pool, (*pools)->Find("Unlink"));
  EXPECT_EQ(o.batch_unlink_pool, (*pools)->Find("Batch_Unlink"));
  EXPECT_EQ(LedgerOptionsFrom(g, nullptr).unlink_backlog, 100u);
}

TEST(DsnIdTest, DerivedStablyAndDistinct) {
  core::MessageId a{0x0123456789ab0001ull, 42};
  core::MessageId b{0x0123456789ab0001ull, 43};
  EXPECT_EQ(DsnIdFor(a), DsnIdFor(a));
  EXPECT_NE(DsnIdFor(a), a);
  EXPECT_NE(DsnIdFor(a), DsnIdFor(b));
  EXPECT_EQ(DsnIdFor(a).hi, a.hi);
}

}  // namespace
}  // namespace ringmail::delivery
