// spool/live_index.h — one loop's view of its spool: which messages are live, where their
// MESSAGE records are, their recipients' states, and per segment how many live bytes remain,
// so that the unlinker finds segments with nothing live and the compactor sparse ones.
//
// A plain single-threaded class, owned and touched by one loop only (no locks). Filled from
// recovery (AddRecoveredSegment + AddMessage per recovered message assigned to this loop) and
// then kept current by the loop's group commit: AddSegment at rollover, NoteAppended per batch,
// AddMessage per committed MESSAGE, UpdateRecipient / MarkDone when a RECIPIENT / DONE record is
// durable, Relocate when compaction re-appended a message.
//
// Removal safety ("pins"). A segment may hold RECIPIENT or DONE records about messages whose
// MESSAGE record sits in another segment. Unlinking it while that other segment still exists
// would lose a delivered state (→ a duplicate delivery) or resurrect a finished message at the
// next recovery. So a state record written to segment B about a message located in A (or with a
// stale copy in A) pins B to A; B is removable only once every segment it pins is gone, it has
// no live message and it is not the active segment. State records go to the writer's active
// segment, which is newer than the ones they refer to, so pins point from newer to older and
// removal proceeds oldest first.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/message.h"
#include "spool/recovery.h"
#include "spool/segment_format.h"
#include "spool/sink.h"

namespace ringmail::spool {

struct RecipientStatus {
  core::RecipientState state = core::RecipientState::kPending;
  uint32_t attempts = 0;
  uint64_t next_attempt_ms = 0;

  friend bool operator==(const RecipientStatus&, const RecipientStatus&) = default;
};

class LiveIndex {
 public:
  struct Entry {
    SpoolLocation location;
    std::vector<RecipientStatus> recipients;
    std::vector<SegmentId> stale_copies;  // older MESSAGE records of this id still on disk

    // Every recipient delivered or failed: time to write DONE.
    bool AllFinal() const;
  };

  struct SegmentStats {
    uint64_t written_bytes = 0;  // bytes of valid records appended
    uint64_t live_bytes = 0;     // record bytes of the live MESSAGE records in it
    uint32_t live_messages = 0;
    absl::flat_hash_map<SegmentId, uint32_t> pins;  // segment → state records pointing there
  };

  LiveIndex() = default;
  LiveIndex(const LiveIndex&) = delete;
  LiveIndex& operator=(const LiveIndex&) = delete;

  // --- segments ---
  // Registers a segment (new at rollover, or found by recovery). It must not be known yet.
  void AddSegment(SegmentId id, uint64_t written_bytes);
  // A recovered segment with its pins (SegmentReport::pins).
  void AddRecoveredSegment(const SegmentReport& report);
  void NoteAppended(SegmentId id, uint64_t bytes);
  // The segment being appended to; never offered for removal or compaction.
  void SetActiveSegment(SegmentId id);
  const SegmentStats* FindSegment(SegmentId id) const;
  // Not active, nothing live, no pin on a segment still present. Sorted.
  std::vector<SegmentId> RemovableSegments() const;
  // Not active, something live, live bytes at most `live_percent_max` % of written bytes.
  // Sparsest first.
  std::vector<SegmentId> CompactionCandidates(uint32_t live_percent_max) const;
  // The segment file is gone. It must have no live message and not be active.
  void RemoveSegment(SegmentId id);
  size_t segment_count() const { return segments_.size(); }

  // --- messages ---
  // A committed (or recovered) message; its segment must be registered. False when the id is
  // already live here (the caller committed it twice: a bug upstream, reported not fatal).
  bool AddMessage(const core::MessageId& id, const SpoolLocation& location,
                  std::vector<RecipientStatus> recipients);
  bool AddMessage(const CommittedMessage& message);
  bool AddMessage(const RecoveredMessage& message);
  // A durable RECIPIENT record in `written_to` (registered). False if the id is not live or
  // the index out of range.
  bool UpdateRecipient(const core::MessageId& id, uint32_t index, RecipientStatus status,
                       SegmentId written_to);
  // A durable DONE record in `written_to`: the message leaves the index. False if not live.
  bool MarkDone(const core::MessageId& id, SegmentId written_to);
  // Compaction re-appended the message at `to` (registered); the old record becomes a stale
  // copy. False if not live.
  bool Relocate(const core::MessageId& id, const SpoolLocation& to);
  const Entry* Find(const core::MessageId& id) const;
  size_t size() const { return messages_.size(); }

 private:
  SegmentStats& MustFind(SegmentId id);
  void Pin(SegmentId from, SegmentId to);

  absl::flat_hash_map<core::MessageId, Entry> messages_;
  absl::flat_hash_map<SegmentId, SegmentStats> segments_;
  SegmentId active_;
  bool has_active_ = false;
};

}  // namespace ringmail::spool
