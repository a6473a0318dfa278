// spool/compactor.h — compaction of sparse segments (DESIGN.md "Compaction"), and the ring
// read it (and the owner's bounce path) uses to get bytes back from a segment file.
//
// SegmentRangeRead: reads [offset, offset + length) of one segment file with ring ops only
// (OPENAT, READ until complete, CLOSE): no blocking call on the loop. One read at a time per
// object; `done` runs from a completion, never from inside Start(). The owner keeps the
// object alive until `done` ran (the loop's stop cancels the ops; `done` then reports an
// error), so it counts as an operation in flight of its owner (STYLE.md principle 3).
//
// Compactor: one per owner loop, created, used and destroyed on that loop (destroyed after
// the loop stopped, or when !busy()). A run (RunOnce, called from the owner's periodic
// maintenance timer) takes the sparsest LiveIndex::CompactionCandidates segment that has
// messages the host lets it move, reads their MESSAGE records back (whole records: the CRC
// is checked again, so damage since the write is never laundered into a fresh record),
// rebuilds each message with the host's current recipient states, and commits all of them
// through the loop's SpoolWriter in one loop turn (one group commit). In each commit's
// completion it calls LiveIndex::Relocate and tells the host. The old segment then has
// nothing live and goes the way of every drained segment (the unlinker), once the pins of
// LiveIndex allow it. Work per run is bounded (messages and bytes).
//
// The copies pass through the writer like any commit, so the MessageSink (the host) also
// sees them in Committed(): the host must recognise an id it already tracks as a copy.
//
// What makes a copy safe to write (the host's CompactionMovable): no state record of the
// message in flight (the copy's states are then exactly the durable ones, so no RECIPIENT
// record can be orphaned by the old segment's removal), and the message not finishing (its
// DONE would otherwise race the copy). The host checks it twice: when choosing, and again
// after the read, right before the commit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/loop.h"
#include "core/message.h"
#include "core/ring.h"
#include "spool/group_commit.h"
#include "spool/live_index.h"
#include "spool/segment_format.h"

namespace ringmail::spool {

class SegmentRangeRead {
 public:
  // One READ op asks for at most this much; longer ranges take several.
  static constexpr uint64_t kReadChunkBytes = 16ull << 20;

  SegmentRangeRead() = default;
  SegmentRangeRead(const SegmentRangeRead&) = delete;
  SegmentRangeRead& operator=(const SegmentRangeRead&) = delete;
  ~SegmentRangeRead();  // must not be busy

  template <auto Method, typename Owner>
  void Bind(Owner* o) {
    owner_ = o;
    done_ = [](void* raw, SegmentRangeRead& r) { (static_cast<Owner*>(raw)->*Method)(r); };
  }

  // Loop thread; not busy. `length` <= kRecordBytesMax (record.h).
  void Start(core::Loop& loop, std::string path, uint64_t offset, uint64_t length);
  bool busy() const { return busy_; }

  // After `done`: OK and `data` holding exactly the range, or the error (kNotFound when the
  // file is gone, kDataLoss when it ends before the range does, kUnavailable otherwise).
  absl::Status status;
  std::string data;

 private:
  void SubmitRead();
  void Close();
  void Finish();
  void OpenDone(core::Operation& op, core::IoResult r);
  void ReadDone(core::Operation& op, core::IoResult r);
  void CloseDone(core::Operation& op, core::IoResult r);

  core::Loop* loop_ = nullptr;
  std::string path_;
  uint64_t offset_ = 0;
  uint64_t got_ = 0;
  int fd_ = -1;
  int retries_ = 0;
  bool busy_ = false;
  core::Operation open_op_;
  core::Operation read_op_;
  core::Operation close_op_;
  void* owner_ = nullptr;
  void (*done_)(void* owner, SegmentRangeRead& read) = nullptr;
};

// Implemented by the owner of the messages (delivery's Ledger): spool/ cannot know what
// "in flight at a delivery engine" means, so it asks.
class CompactionHost {
 public:
  virtual ~CompactionHost() = default;
  // The live messages whose MESSAGE record is in `segment` and that may be moved now (see
  // the contract above), at most `max` of them, in any order.
  virtual void CompactionMovable(SegmentId segment, size_t max,
                                 std::vector<core::MessageId>* out) = 0;
  // Still movable (the second check, right before the commit)? If so, overwrite the
  // recipient states in `envelope` (read back from the old record) with the current ones.
  virtual bool CompactionPrepare(const core::MessageId& id, core::Envelope* envelope) = 0;
  // The copy at `to` is durable and LiveIndex::Relocate has run.
  virtual void CompactionRelocated(const core::MessageId& id, const SpoolLocation& to) = 0;
};

struct CompactorOptions {
  std::string spool_dir;
  uint32_t live_percent_max = 25;      // a segment at or under this share of live bytes
  size_t run_messages_max = 256;       // messages moved per run
  uint64_t run_bytes_max = 32ull << 20;  // record bytes read per run (one record may exceed)
  size_t candidates_looked_at_max = 8;   // segments examined per run for movable messages
};

struct CompactorStats {
  uint64_t runs = 0;            // runs that found something to move
  uint64_t messages_moved = 0;  // copies durable and relocated
  uint64_t bytes_moved = 0;     // record bytes of those copies
  uint64_t read_errors = 0;     // records that could not be read back or did not validate
  uint64_t commit_errors = 0;   // copies the writer failed
  uint64_t skipped = 0;         // no longer movable after the read
};

class Compactor {
 public:
  Compactor(core::Loop& loop, LiveIndex& index, SpoolWriter& writer, CompactionHost& host,
            CompactorOptions options);
  ~Compactor();  // must not be busy (checked)
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  // Starts one bounded run unless one is running or the loop is stopping. Returns true if
  // it started one; its end is signalled through SetRunDone's callback.
  bool RunOnce();
  bool busy() const { return busy_; }
  const CompactorStats& stats() const { return stats_; }

  // Called on the loop when a run finished (copies durable or failed). May be empty.
  void SetRunDone(void (*fn)(void* owner), void* owner) {
    run_done_ = fn;
    run_done_owner_ = owner;
  }

 private:
  struct Copy;

  void ReadNext();
  void ReadDone(SegmentRangeRead& read);
  bool Rebuild(Copy& copy);
  void CommitAll();
  void CommitDone(CommitRequest& request);
  void MaybeFinishRun();

  core::Loop& loop_;
  LiveIndex& index_;
  SpoolWriter& writer_;
  CompactionHost& host_;
  const CompactorOptions options_;
  bool busy_ = false;
  SegmentId segment_;
  std::vector<std::unique_ptr<Copy>> copies_;
  size_t next_read_ = 0;
  size_t commits_in_flight_ = 0;
  SegmentRangeRead read_;
  CompactorStats stats_;
  void (*run_done_)(void* owner) = nullptr;
  void* run_done_owner_ = nullptr;
};

}  // namespace ringmail::spool
