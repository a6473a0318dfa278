// delivery/ledger.h — the owner side of delivery: the spool's MessageSink on each loop that
// has a SpoolWriter (DESIGN.md "Spool: Done and unlink, Compaction, Recovery", MODULES.md
// steps 7, 10, 11; the other side is delivery/engine.h, see delivery/job.h).
//
// What it does
// - Committed(): records a durable message (id → envelope, recipient states, location),
//   adds it to the loop's LiveIndex, splits its recipients that are not final by domain
//   (lower-case; a bare "postmaster" goes to the configured postmaster address, RFC 5321
//   §4.5.1) into DeliveryJobs and hands each to `dispatch`. A full inbox keeps the job's
//   (message, domain) in a pending list retried on a timer: the message is durable, waiting
//   loses nothing. The list is bounded by the live set itself (one entry per message and
//   domain at most, rebuilt from the ledger's state when retried).
// - Report(): per item appends a RECIPIENT record through the loop's SpoolWriter. A
//   recipient is final only once its record is durable. When every recipient is final: if
//   some failed and the sender is not null, one DSN (delivery/bounce.h) naming all failed
//   recipients is committed through the same writer as a new message (its id derived from
//   the original's, see DsnIdFor); then a DONE record; when DONE is durable the message
//   leaves the LiveIndex and memory. A failed message with the null sender gets no DSN
//   (a log line says so). A state or DSN write that fails is retried on a timer.
// - Report items with state kPending mean "the engine gives these recipients back" (it
//   will not try them): the ledger dispatches them again, at their next_attempt_ms (held
//   here until then), with the message's current location. Engines may use this to hand
//   back long-deferred recipients, which is what lets compaction move their messages.
// - Unlink backlog and brake (issue #5 item 7): the backlog is (a) recipients reported
//   delivered whose RECIPIENT record is not durable yet, plus (b) messages whose recipients
//   are all final but whose DONE is not durable yet (bounce being written included). When it
//   reaches `unlink_backlog` (the Unlink pool's Backlog) brake() turns true; engines read it
//   (relaxed) before starting a delivery and start none while it is set; in-flight ones
//   finish. It turns false once the backlog is back to half the bound.
//   Why this bounds duplicates after a power failure: a delivery is repeated after a
//   restart only if its "delivered" RECIPIENT record was not durable; every such delivery
//   is in (a), or still in flight at an engine, or in a report on its way here. (a) cannot
//   grow past the bound while deliveries keep completing, because no new delivery starts;
//   so the duplicates are at most unlink_backlog + the deliveries in flight (bounded by the
//   engines' connection limits). (b) bounds the work a restart redoes for messages already
//   finished: their recipients are durable, so it costs DONE records (and, for a message
//   whose DSN was not yet durable, that DSN), not deliveries.
// - Unlinker (spool/unlinker.h) removes segments with nothing live, never one an engine may
//   still read (a message moved by compaction whose old job is still out: "held"); the
//   Compactor (spool/compactor.h) re-appends the live messages of sparse segments. Both
//   run from a maintenance timer (every maintenance_interval_ms) and when a segment drains.
//   Compaction moves only messages with no job out at an engine, no state record in flight
//   and not finishing; a message an engine holds (deferred) stays until it is handed back.
// - Recovery: Adopt() takes the segments and messages RecoverSpool found for this ledger
//   (SplitRecovery below decides which ledger gets what). A recovered message whose
//   recipients are all final gets its DONE (and, if some failed, the sender is not null and
//   no DSN with its derived id is live, its DSN: a crash between the last failure and the
//   DSN's commit must not lose the bounce). The rest is dispatched like a fresh message,
//   with the recipients' recovered states (attempts, next attempt). State records for
//   adopted messages go to THIS loop's writer, whatever directory the message is in;
//   recovery merges records by message id across directories, and the LiveIndex pins keep
//   the segments in the right order.
//
// Threading and lifetime: created, used and destroyed on its loop — except the destructor,
// which runs after the loop stopped (or on the loop when idle()). Everything here is
// single-threaded except brake(), which engines read from their loops. Report() runs on
// this loop: engines Post it here (topology.owner_loops[job.owner_loop]).
//
// Order of construction (ringmaild, on the loop):
//   auto ledger = std::make_unique<Ledger>(loop, std::move(options));
//   writer = SpoolWriter::Open(loop, so, /*sink=*/ledger.get(), &ledger->live_index());
//   ledger->Start(*writer);               // opens directories, arms timers
//   ledger->Adopt(std::move(adoption));   // the recovered part of this loop
// The writer and the ledger are destroyed after the loop stopped, in either order.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/message.h"
#include "core/thread_pool.h"
#include "core/thread_pool_registry.h"
#include "core/timers.h"
#include "delivery/job.h"
#include "spool/compactor.h"
#include "spool/group_commit.h"
#include "spool/live_index.h"
#include "spool/recovery.h"
#include "spool/sink.h"
#include "spool/unlinker.h"

namespace ringmail::delivery {

// Hands a job to its engine. Returns kOk when the job was taken (moved from), kFull when
// the target inbox is full (the job must be left intact: the ledger retries it later), and
// kStopped when the target loop is gone (dropped; the message stays in the spool).
// Production (ringmaild) posts to the topology with PostJobToLoop below:
//   options.dispatch = [topology](DeliveryJob& job) {
//     size_t shard = topology->ShardFor(job.domain);
//     Engine* engine = topology->engines[shard];
//     return PostJobToLoop(*topology->delivery_loops[shard], job,
//                          [engine](DeliveryJob&& j) { engine->Submit(std::move(j)); });
//   };
// Tests collect the jobs instead.
using JobDispatch = absl::AnyInvocable<core::PostResult(DeliveryJob& job)>;

struct LedgerOptions {
  std::string spool_dir;
  std::string hostname;    // the DSN's Reporting-MTA (GlobalOptions::hostname)
  std::string postmaster;  // GlobalOptions::postmaster: where a bare "postmaster" goes
  // The brake bound: the Unlink pool's Backlog (ThreadPool "Unlink" { Backlog }).
  uint32_t unlink_backlog = 100;
  core::ThreadPool* unlink_pool = nullptr;        // fallback when the ring cannot unlink
  core::ThreadPool* batch_unlink_pool = nullptr;
  core::EventLog* event_log = nullptr;  // "bounce" and "done" lines; may be null
  JobDispatch dispatch;                 // required
  uint64_t dispatch_retry_ms = 20;      // a full engine inbox is tried again after this
  uint64_t state_retry_ms = 1000;       // a failed state or DSN write is retried after this
  uint64_t maintenance_interval_ms = 10000;  // unlink retries + one compaction run
  uint32_t compaction_live_percent = 25;     // compact at or under this share of live bytes
  size_t compaction_run_messages_max = 256;
  uint64_t compaction_run_bytes_max = 32ull << 20;
  bool unlink_with_ring = true;  // false: always the pools (tests of the fallback)
  // Wall clock in Unix ms (RECIPIENT/DONE times, DSN dates); empty: absl::Now().
  absl::AnyInvocable<uint64_t()> unix_now_ms;
  // Called on the loop with segments just removed (unlinked or recycled). ringmaild tells
  // the delivery engines, whose open descriptors would otherwise keep an unlinked segment's
  // disk space until their idle sweep. May be empty.
  absl::AnyInvocable<void(const std::vector<spool::SegmentId>&)> segments_removed;
  // Called on the loop after something the ledger tracks changed (a state record durable,
  // a message done, a DSN committed, segments unlinked, a compaction run ended, the brake
  // flipped). Tests await on it; production leaves it empty.
  absl::AnyInvocable<void()> progress;
};

// The options that come from the configuration and the daemon's pools: spool_dir, hostname,
// postmaster, the Unlink/Batch_Unlink pools and the brake bound (the Unlink pool's Backlog).
// The caller adds `dispatch` (and `event_log`). `pools` may be null (no pool fallback).
LedgerOptions LedgerOptionsFrom(const config::GlobalOptions& global,
                                const core::ThreadPoolRegistry* pools);

// What RecoverSpool found that one ledger takes over.
struct LedgerAdoption {
  std::vector<spool::SegmentReport> segments;    // registered in its LiveIndex, with pins
  std::vector<spool::RecoveredMessage> messages;
};

// Splits a recovery result between the owner loops. `owner` is indexed by loop index
// (core::Loop::index()); true where a loop has a SpoolWriter and a Ledger. A segment goes to
// the ledger of its directory's loop, and everything tied to it by a pin or a stale copy
// goes with it, so that one LiveIndex sees every dependency; a group that spans several
// directories, or whose directory has no owner any more (the daemon runs fewer loops than
// before), goes to the lowest-numbered owner. A message goes with its segment.
// The result has owner.size() entries (empty for non-owners). InvalidArgument when no loop
// is an owner while there is something to adopt.
absl::StatusOr<std::vector<LedgerAdoption>> SplitRecovery(spool::RecoveryResult result,
                                                         const std::vector<bool>& owner);

// The id of the DSN for `original`: derived, so that a restart can tell whether the DSN of
// a message already exists (same 48-bit time and loop bits, the rest mixed).
core::MessageId DsnIdFor(const core::MessageId& original);

// Posts `deliver(std::move(job))` to `loop`. On kOk `job` was moved into the task; on
// kFull/kStopped it is left intact. (Loop::Post destroys a task it cannot queue, so the job
// travels in a box the caller keeps a reference to until the post succeeded.)
template <typename Deliver>
core::PostResult PostJobToLoop(core::Loop& loop, DeliveryJob& job, Deliver deliver) {
  auto box = std::make_shared<DeliveryJob>(std::move(job));
  core::PostResult r = loop.Post([box, deliver = std::move(deliver)]() mutable {
    deliver(std::move(*box));
  });
  if (r != core::PostResult::kOk) job = std::move(*box);
  return r;
}

// `ringctl` "message show": one message as the ledger knows it.
struct MessageView {
  core::MessageId id;
  uint64_t received_ms = 0;
  core::Envelope envelope;  // recipients with their durable states
  spool::SpoolLocation location;
  std::string phase;             // "active", "bouncing", "finishing"
  uint32_t recipients_out = 0;   // held by an engine now
  uint32_t records_in_flight = 0;
};

struct LedgerStats {
  uint64_t live_messages = 0;
  uint64_t live_bytes = 0;    // record bytes of the live messages
  uint64_t segments = 0;      // known to the LiveIndex
  uint64_t unlink_backlog = 0;
  bool braking = false;
  uint64_t brake_engaged = 0;        // times the brake turned on
  uint64_t jobs_dispatched = 0;
  uint64_t dispatch_pending = 0;     // (message, domain) waiting for a full inbox
  uint64_t parked = 0;               // recipients handed back, waiting for their time
  uint64_t recipient_records = 0;    // RECIPIENT records durable
  uint64_t done_written = 0;         // DONE records durable
  uint64_t bounces_sent = 0;         // DSNs committed
  uint64_t bounces_dropped = 0;      // failures of null-sender messages
  uint64_t write_retries = 0;        // state/DSN writes retried after an error
  uint64_t reports_ignored = 0;      // items for unknown messages or final recipients
  uint64_t segments_unlinked = 0;
  uint64_t unlink_errors = 0;
  uint64_t compactions = 0;          // compaction runs
  uint64_t messages_compacted = 0;
};

class Ledger final : public spool::MessageSink, private spool::CompactionHost {
 public:
  Ledger(core::Loop& loop, LedgerOptions options);
  ~Ledger() override;
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // The index the SpoolWriter of this loop must be opened with.
  spool::LiveIndex& live_index() { return index_; }
  // After the writer was opened with this ledger as sink and live_index() as index.
  // Opens the loop directory for the unlinker (blocking; start-up) and arms the timers.
  absl::Status Start(spool::SpoolWriter& writer);
  // Start-up, after Start(): the part of the recovery result that is this ledger's.
  void Adopt(LedgerAdoption adoption);

  // spool::MessageSink. Fresh messages from the writer; recovered ones belong in Adopt()
  // (which registers their segments first). A copy made by compaction (an id already
  // tracked) is recognised and ignored.
  void Committed(spool::CommittedMessage&& message) override;

  // Delivery results from an engine (posted to this loop).
  void Report(DeliveryReport&& report);

  // A reload's hostname (the DSNs' Reporting-MTA) and postmaster (where a bare "postmaster"
  // goes): for messages committed and bounces made from now on. On this loop.
  void SetIdentity(std::string hostname, std::string postmaster) {
    options_.hostname = std::move(hostname);
    options_.postmaster = std::move(postmaster);
  }

  // Engines: no new delivery while true (relaxed loads are enough: it is a hint that
  // bounds, not a lock).
  const std::atomic<bool>& brake() const { return brake_; }

  std::optional<MessageView> MessageShow(const core::MessageId& id) const;
  LedgerStats stats() const;
  // One maintenance pass now (ringctl, tests): retry failed unlinks, one compaction run.
  void RunMaintenance();
  // No write, read, unlink or compaction of the ledger's in flight.
  bool idle() const;

 private:
  struct Entry;
  struct StateOp;
  struct BounceOp;
  struct Pending {
    core::MessageId id;
    std::string domain;
  };

  // Committing and dispatching (ledger.cc).
  Entry* Track(spool::CommittedMessage&& message);
  std::vector<DeliveryJob> BuildJobs(const core::MessageId& id, Entry& entry,
                                     std::string_view only_domain);
  void Dispatch(const core::MessageId& id, Entry& entry);
  bool Post(const core::MessageId& id, Entry& entry, DeliveryJob& job);
  void DispatchTimerFired(core::Timer& timer);
  void ParkTimerFired(core::Timer& timer);
  void Park(const core::MessageId& id, uint64_t due_unix_ms);
  void ArmParkTimer();
  void FailLocally(const core::MessageId& id, Entry& entry, uint32_t index, std::string reason);

  // Recording (ledger_state.cc).
  void ApplyItem(const core::MessageId& id, Entry& entry, DeliveryReport::Item& item);
  void AppendRecipient(const core::MessageId& id, Entry& entry, uint32_t index,
                       const spool::RecipientStatus& status, std::string reply);
  void AppendDone(const core::MessageId& id, Entry& entry);
  void Append(StateOp* op);
  void StateDone(spool::StateRequest& request);
  void RecipientDurable(StateOp& op);
  void DoneDurable(StateOp& op);
  void RetryTimerFired(core::Timer& timer);
  void MaybeFinish(const core::MessageId& id, Entry& entry);
  void StartBounce(const core::MessageId& id, Entry& entry);
  void BounceReadDone(BounceOp& op);
  void BounceCommitDone(BounceOp& op);
  void SetOut(Entry& entry, uint32_t index, bool out);
  void UpdateBrake();
  void LogDone(const core::MessageId& id, const Entry& entry);
  StateOp* NewStateOp();
  void FreeStateOp(StateOp* op);

  // Maintenance (ledger_maintenance.cc).
  void MaintenanceTimerFired(core::Timer& timer);
  static void SegmentsRemoved(void* self, const std::vector<spool::SegmentId>& ids);
  static void CompactionRunDone(void* self);
  bool Held(spool::SegmentId segment) const;
  void CompactionMovable(spool::SegmentId segment, size_t max,
                         std::vector<core::MessageId>* out) override;
  bool CompactionPrepare(const core::MessageId& id, core::Envelope* envelope) override;
  void CompactionRelocated(const core::MessageId& id, const spool::SpoolLocation& to) override;
  bool Movable(const Entry& entry) const;

  uint64_t UnixNowMs();
  void Progress();

  core::Loop& loop_;
  LedgerOptions options_;
  spool::LiveIndex index_;
  spool::SpoolWriter* writer_ = nullptr;
  std::unique_ptr<spool::Unlinker> unlinker_;
  std::unique_ptr<spool::Compactor> compactor_;

  absl::flat_hash_map<core::MessageId, Entry> entries_;
  // Recipients out at engines, per segment their job reads: such a segment is not unlinked.
  absl::flat_hash_map<spool::SegmentId, uint32_t> holds_;
  std::deque<Pending> pending_;  // jobs that met a full inbox, oldest first
  // Recipients handed back, by the Unix ms they are due (a min-heap).
  std::vector<std::pair<uint64_t, core::MessageId>> parked_;
  std::vector<StateOp*> retry_;           // state writes that failed, to append again
  std::vector<BounceOp*> bounce_retry_;    // DSN commits that failed, to commit again
  std::vector<std::unique_ptr<StateOp>> state_pool_;  // every StateOp ever made
  std::vector<StateOp*> free_state_ops_;
  size_t state_ops_in_flight_ = 0;
  size_t bounces_in_flight_ = 0;   // DSN reads and commits
  size_t parked_count_ = 0;

  uint64_t backlog_delivered_ = 0;  // (a) above
  uint64_t backlog_finishing_ = 0;  // (b) above
  uint64_t live_bytes_ = 0;
  std::atomic<bool> brake_{false};

  core::Timer dispatch_timer_;
  core::Timer retry_timer_;
  core::Timer park_timer_;
  core::Timer maintenance_timer_;
  LedgerStats stats_;
};

}  // namespace ringmail::delivery
