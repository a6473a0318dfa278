// spool/group_commit.h — a loop's spool writer: appends records to the loop's active
// segment and makes them durable in batches (DESIGN.md "Spool", STYLE.md principle 16).
//
// Contract
// - One SpoolWriter per loop, opened and used on that loop's thread only; it owns the
//   loop's active segment file (the only writer of it) and rolls over to a fresh
//   preallocated segment when the active one is full. Segments are created with ring ops
//   (spool/segment_writer.h); the next one is made ahead of time (the "spare"), so a
//   rollover does not wait for fallocate and two fsyncs. A message bigger than a segment
//   gets a segment sized for it.
// - Commit(request): the caller (an ESMTP session, the HTTP injector, a bounce) embeds a
//   CommitRequest, fills `message` and binds `done`, and calls Commit. Every request
//   made before the loop turn ends joins the same batch (one loop.Defer() per turn): its
//   records are appended with one IORING_OP_WRITEV flagged RWF_DSYNC (write and data sync
//   in one request), or, past IOV_MAX iovecs, several linked WRITEVs covered by one linked
//   IORING_OP_FSYNC (DATASYNC). Only in the sync's completion is `done` called, with
//   `status` OK and `id`/`location` set — the message is durable then and not before.
//   While a batch is in flight, new requests gather for the next batch (adaptive group
//   commit: no timer delays a lone message). A batch holds
//   at most batch_messages_max records and batch_bytes_max bytes (one record bigger than
//   that goes alone); the rest waits for the next batch.
// - AppendState(request): a RECIPIENT or DONE record through the same batches, with the
//   same `done` contract (`segment`/`offset` say where it was written, for LiveIndex pins).
// - Records are appended in request order, without gaps; a batch is acknowledged only when
//   it and every earlier batch of its segment are durable (the contract in record.h).
// - `done` is never called from inside Commit/AppendState: always from a later loop task
//   or completion, so the caller is never re-entered. It may Commit again, or destroy
//   the request's owner: the writer never touches a request after its `done`.
// - Errors: a write or sync error (ENOSPC, EIO, ...; a WRITEV that writes less is
//   resubmitted for the rest first) fails every request of the batch with
//   kResourceExhausted (ENOSPC, EDQUOT) or kUnavailable (others) — the listener answers
//   452 4.3.1 — and nothing of that batch is ever acknowledged. The segment is then sealed
//   (closed, never appended to again: it may hold a torn tail) and the next batch goes to a
//   fresh segment. When a segment cannot be created (disk full), the requests waiting for it
//   fail the same way and the next request tries again, so accepting resumes by itself
//   once space returns. A message the record format refuses (a limit of record.h) fails
//   alone with kInvalidArgument (→ 5xx).
// - On success the writer releases `message` before `done` (its envelope moves into the
//   CommittedMessage handed to the MessageSink, if one was given, right after `done`); on
//   failure `message` is left to the caller untouched.
// - A request must stay alive until its `done` has run: the owner counts it as an
//   operation in flight (STYLE.md principle 3).
// - LiveIndex (optional): the writer registers each segment it starts appending to
//   (AddSegment, SetActiveSegment) and counts appended bytes (NoteAppended). Message-level
//   entries (AddMessage from the sink, UpdateRecipient/MarkDone from a state request's
//   `done`, Relocate) are left to their callers, who know what a record means.
// - Records are written in format 2 (spool/record.h): encoded unbound, and bound to the
//   active segment's life key when the batch is laid out (BuildIovecs), after any rollover.
// - Recycling (SpoolWriterOptions::recycle): the spare may be a drained segment's file,
//   offered by the unlinker of this loop through recycler() (SegmentRecycler below) and
//   reused by SegmentCreator::Recycle (the crash-safe steps are in spool/segment_writer.h).
//   At most one spare at a time, so the other drained segments are unlinked and disk use
//   shrinks after a burst. To give drained segments the chance, a fresh spare is not made at
//   once after a rollover but only when no recycled one came and the active segment is
//   nearly full — at its recent append rate, a few creations' time from full
//   (spool/spare_planner.h; at half full when nothing is measured yet). A rollover with no
//   spare waits for a creation, as before, and counts in stats().rollover_waits.
// - Start-up: SpoolWriterOptions.first_sequence is recovery's LoopRecovery.next_seq; the
//   writer always starts a fresh segment there, never appends to a recovered one.
// - Stop and destruction: the loop's stop lets requests finish: its one-shot cancel of every
//   op is answered by resubmitting what it caught (also EINTR/EAGAIN; bounded), and the
//   loop keeps turning until no op is in flight. The
//   owner destroys the writer after the loop stopped (from any thread then), or on the loop
//   thread when idle(); destroying it with work pending or in flight is a bug (checked).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/latency_histogram.h"
#include "core/loop.h"
#include "core/message.h"
#include "spool/live_index.h"
#include "spool/record.h"
#include "spool/segment_format.h"
#include "spool/segment_writer.h"
#include "spool/sink.h"

namespace ringmail::spool {

// The writer's intrusive queue link, shared by both kinds of request so that records are
// appended in the order they were asked for. Writer-private.
struct SpoolRequestLink {
  SpoolRequestLink* writer_next = nullptr;
  bool writer_queued = false;    // between Commit/AppendState and done: catches double use
  bool writer_is_state = false;  // StateRequest rather than CommitRequest
  uint64_t writer_enqueued_us = 0;  // the loop's clock at Commit/AppendState
};

struct CommitRequest : SpoolRequestLink {
  // Filled by the caller:
  std::unique_ptr<core::Message> message;  // id already assigned
  void (*done)(void* owner, CommitRequest& request) = nullptr;
  void* owner = nullptr;
  // Filled by the writer before `done`:
  absl::Status status;
  core::MessageId id;
  SpoolLocation location;
  // Writer-private: the encoded record, alive until the write completes.
  EncodedRecord writer_encoded;

  template <auto Method, typename Owner>
  void Bind(Owner* o) {
    owner = o;
    done = [](void* raw, CommitRequest& r) { (static_cast<Owner*>(raw)->*Method)(r); };
  }
};

struct StateRequest : SpoolRequestLink {
  // Filled by the caller: the record to append (recipient_index < kRecipientsMax).
  std::variant<RecipientUpdate, DoneMark> record;
  void (*done)(void* owner, StateRequest& request) = nullptr;
  void* owner = nullptr;
  // Filled by the writer before `done`:
  absl::Status status;
  SegmentId segment;    // where the record was written: LiveIndex's `written_to`
  uint64_t offset = 0;  // of the record within the segment
  // Writer-private: the encoded record, alive until the write completes.
  std::string writer_encoded;

  template <auto Method, typename Owner>
  void Bind(Owner* o) {
    owner = o;
    done = [](void* raw, StateRequest& r) { (static_cast<Owner*>(raw)->*Method)(r); };
  }
};

// The writer's half of recycling, used by the unlinker of the same loop (loop thread only).
class SegmentRecycler {
 public:
  // recycled: the old segment's file is now the writer's spare under a new number, and its
  // old records can never be read again (the old name is durably gone). !recycled: unlink
  // it as usual (its file may be gone already: ENOENT counts as removed).
  using Done = void (*)(void* owner, SegmentId old, bool recycled);

  // Offers drained segment `old` — one the unlinker may remove now: nothing live, no pin, not
  // active, not held — as the next spare. False: not wanted now (recycling off, another loop's
  // directory, a spare exists or is being made, the loop is stopping); the caller unlinks it.
  // True: `done` runs later on the loop, never from inside this call.
  virtual bool OfferForRecycling(SegmentId old, Done done, void* owner) = 0;

 protected:
  ~SegmentRecycler() = default;
};

struct SpoolWriterOptions {
  std::string spool_dir;
  uint32_t loop_index = 0;                 // <= kMaxLoopIndex
  uint64_t segment_bytes = 64ull << 20;    // kMinSegmentBytes..kMaxSegmentBytes
  uint64_t first_sequence = 1;             // from recovery: LoopRecovery::next_seq
  size_t batch_messages_max = 1024;        // records per batch, 1..kBatchRecordsLimit
  uint64_t batch_bytes_max = 16ull << 20;  // bytes per batch (>= 4 KiB)
  // How a segment's space is made before its first record (spool/segment_writer.h): zeros
  // written over fallocated space, since an overwrite of written blocks syncs faster than an
  // append into unwritten or new ones — while batches are small; kAuto (config "auto", the
  // daemon's default) drops the zeros for segments made while batches are big, where they
  // only double the bytes written (spool/spare_planner.h). kAllocate for copy-on-write
  // filesystems; tests use kNone to reach ENOSPC on the write path.
  SegmentFill fill = SegmentFill::kZeros;
  // Reuse drained segments of segment_bytes as spares instead of unlinking them and making
  // new ones (config spool_segment_recycle).
  bool recycle = true;
};

struct SpoolWriterStats {
  uint64_t batches = 0;          // batches made durable
  uint64_t messages = 0;         // MESSAGE records made durable
  uint64_t state_records = 0;    // RECIPIENT and DONE records made durable
  uint64_t bytes = 0;            // record bytes made durable
  uint64_t writes = 0;           // WRITEV ops submitted
  uint64_t fsyncs = 0;           // batch syncs that succeeded (RWF_DSYNC write or FSYNC)
  uint64_t short_writes = 0;     // WRITEVs that wrote less than asked (rest resubmitted)
  uint64_t retries = 0;          // chains resubmitted after EINTR/EAGAIN/a foreign cancel
  uint64_t errors = 0;           // batches failed by a write or sync error
  uint64_t requests_failed = 0;  // requests answered with an error (any cause)
  uint64_t segments = 0;         // segments created
  uint64_t segment_errors = 0;   // segment creations that failed
  uint64_t segments_recycled = 0;  // spares made by reusing a drained segment's file
  uint64_t recycle_failures = 0;   // recycles that failed (the file is unlinked instead); a
                                   // file not of the configured size is not one
  uint64_t largest_batch = 0;    // most records in one batch
  uint64_t rollover_waits = 0;   // rollovers that found no spare and waited for a creation
  uint64_t segments_unfilled = 0;  // kAuto: creations started without zeros (big batches)
  // Per batch made durable: from its first WRITEV's submission to the sync's completion
  // (what the disk takes). Per MESSAGE record made durable: from Commit() to `done` (what the
  // client's 250 waits for: a batch ahead of it, a segment to roll over to, the sync).
  // Both on the loop's cached clock (turn granularity).
  core::LatencyHistogram sync_latency;
  core::LatencyHistogram commit_latency;
};

class SpoolWriter {
 public:
  // Records in one batch at most: the iovecs of a chain stay within kChainWritesMax WRITEVs.
  static constexpr size_t kBatchRecordsLimit = 16384;

  // On the loop thread. Creates <spool_dir>/<loop>/ (mode 0700) if missing — blocking,
  // start-up only — opens it, and starts creating segment first_sequence with ring ops.
  // kInvalidArgument for options out of range; the mkdir/open errors otherwise.
  static absl::StatusOr<std::unique_ptr<SpoolWriter>> Open(core::Loop& loop,
                                                           SpoolWriterOptions options,
                                                           MessageSink* sink,
                                                           LiveIndex* index = nullptr);
  ~SpoolWriter();
  SpoolWriter(const SpoolWriter&) = delete;
  SpoolWriter& operator=(const SpoolWriter&) = delete;

  void Commit(CommitRequest& request);
  void AppendState(StateRequest& request);

  const SpoolWriterStats& stats() const;
  // The segment batches go to now, if one is open (tests, ringctl).
  std::optional<SegmentId> active_segment() const;
  // Nothing queued, nothing in flight.
  bool idle() const;
  // The recycling port for this loop's unlinker; nullptr when recycling is off. A const
  // method because the unlinker holds the writer const (it only reads active_segment()).
  SegmentRecycler* recycler() const;

 private:
  class Impl;
  explicit SpoolWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringmail::spool
