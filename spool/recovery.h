// spool/recovery.h — the start-up scan: every segment of every loop directory, in order,
// every CRC checked; rebuilds the live set (metadata only) and reports what it found.
//
// Blocking file I/O (pread, rename, fallocate, fsync): runs on the SpoolIn thread pool, or in
// the offline tool — never on a loop. RecoverSpool() is self-contained (no shared state);
// the result is a value the caller owns and hands to the loops (LiveIndex, MessageSink).
//
// What it does:
//  - Lists <spool_dir>/<loop>/ directories and their <seq>.seg files; anything else is left
//    alone and named in report.ignored. Segments are read loop by loop, in sequence order.
//  - A segment whose header cannot be read (bad magic, version, CRC, header that disagrees
//    with its path) or that cannot be read at all (I/O error) is quarantined: moved to
//    <spool_dir>/quarantine/<loop>-<seq>.seg (".N" appended on a name clash), with the reason
//    in the report for the caller to log. MESSAGE records read from it before an I/O error
//    are dropped with it (they stay in the quarantined file); its RECIPIENT/DONE records are
//    kept, since forgetting a DONE would deliver a message twice.
//  - <seq>.recycle files are segment files caught in the middle of being recycled (spool/
//    segment_writer.h Recycle): never read, never quarantined, removed (when
//    remove_recycle_leftovers) and listed in report.recycle_leftovers; their numbers are
//    not handed out again (next_seq).
//  - Records are read until the first one that does not validate (SegmentReader); how the
//    segment ends — clean, torn tail, corrupt — is in its SegmentReport.
//  - Live set: a message is live unless a DONE record for its id exists anywhere. Recipient
//    states come from the MESSAGE record and then RECIPIENT records, "later wins", where later
//    means: a final state (delivered, failed) beats a non-final one; then more attempts; then
//    a later change time; then later in scan order. (So the order of loop directories, which a
//    reconfigured daemon may have mixed, does not matter.) A MESSAGE record seen twice (a
//    compaction copy whose source segment was not yet removed) is one message, located at
//    the later copy; the older copies are reported as stale_copies.
//  - Torn tails: with seal_torn_tails, the torn tail of each loop's newest segment is zeroed
//    (fallocate ZERO_RANGE, else written zeros; then fdatasync) so that the segment ends
//    cleanly and a torn tail seen later always means new damage. Only the newest segment is
//    touched, and only for a torn tail, never for kCorrupt (acknowledged data may follow).
//
// Where the writer continues (LoopRecovery): the recommended and simplest policy is to start
// a fresh segment at next_seq. append_offset is where valid data ends in the newest segment;
// appending there is safe only when append_safe (clean end, or torn tail sealed).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "spool/segment_format.h"
#include "spool/segment_reader.h"
#include "spool/sink.h"

namespace ringmail::spool {

struct RecoveryOptions {
  // Move unreadable segments to <spool_dir>/quarantine/ (off: only report them).
  bool quarantine = true;
  // Zero the torn tail of each loop's newest segment (off: read-only scan).
  bool seal_torn_tails = true;
  // Remove <seq>.recycle files (off: read-only scan).
  bool remove_recycle_leftovers = true;
  // Also return the messages that are done (tools).
  bool keep_done = false;
  // Called with every valid record, in scan order (tools: the history of one message).
  std::function<void(SegmentId, const ScannedRecord&)> observer;
};

// A read-only scan: what `ringmail-spool` uses.
inline RecoveryOptions ReadOnlyRecoveryOptions() {
  RecoveryOptions options;
  options.quarantine = false;
  options.seal_torn_tails = false;
  options.remove_recycle_leftovers = false;
  return options;
}

struct SegmentReport {
  SegmentId id;
  std::string path;
  uint64_t file_bytes = 0;
  uint64_t valid_bytes = 0;  // end of the last valid record
  uint64_t records = 0;
  uint64_t messages = 0;
  uint64_t recipient_updates = 0;
  uint64_t dones = 0;
  SegmentEndInfo end;
  bool empty = false;           // header never written; holds nothing
  bool newest_in_loop = false;  // the highest-numbered non-empty segment of its directory
  bool sealed = false;          // its torn tail was zeroed
  std::string seal_error;       // why sealing failed, if it did
  // Segments holding MESSAGE records that this segment's RECIPIENT/DONE records refer to:
  // removing this segment before them could resurrect a message or forget a delivery.
  std::vector<SegmentId> pins;
};

struct QuarantinedSegment {
  SegmentId id;
  std::string path;
  std::string quarantine_path;  // empty when not moved (quarantine off, or the move failed)
  std::string reason;
  uint64_t messages_dropped = 0;
};

struct RecycleLeftover {
  SegmentId id;  // the number the interrupted recycle was giving it
  std::string path;
  bool removed = false;
  std::string error;  // why it could not be removed
};

struct LoopRecovery {
  uint32_t loop = 0;
  uint64_t last_seq = 0;  // highest segment number present (0: none)
  uint64_t next_seq = 1;  // the number for the next segment of this directory
  uint64_t append_offset = 0;
  bool append_safe = false;
};

struct RecoveryReport {
  uint64_t segments_scanned = 0;
  uint64_t records = 0;
  uint64_t live_messages = 0;
  uint64_t done_messages = 0;
  uint64_t duplicate_messages = 0;  // extra MESSAGE copies of the same id
  uint64_t orphan_records = 0;      // RECIPIENT/DONE for a message with no MESSAGE record left
  uint64_t inconsistencies = 0;     // RECIPIENT index out of range, copies that disagree
  std::vector<SegmentReport> segments;  // every segment read (not quarantined), scan order
  std::vector<QuarantinedSegment> quarantined;
  std::vector<RecycleLeftover> recycle_leftovers;
  std::vector<LoopRecovery> loops;
  std::vector<std::string> ignored;  // directory entries that are not spool files

  size_t CountEnds(SegmentEnd kind) const;
  std::string Summary() const;  // one line for the log
};

struct RecoveredMessage {
  CommittedMessage message;  // recovered == true; envelope with merged recipient states
  std::vector<SpoolLocation> stale_copies;
};

struct RecoveryResult {
  RecoveryReport report;
  std::vector<RecoveredMessage> live;  // in the scan order of their MESSAGE records
  std::vector<RecoveredMessage> done;  // only with RecoveryOptions::keep_done
};

// Scans `spool_dir`. Errors only when the directory itself cannot be listed (kNotFound,
// kPermissionDenied, kUnavailable); everything wrong inside it is in the report.
absl::StatusOr<RecoveryResult> RecoverSpool(const std::string& spool_dir,
                                            const RecoveryOptions& options);

}  // namespace ringmail::spool
