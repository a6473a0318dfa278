// delivery/internal/ledger_entry.h — the Ledger's private records, shared by its .cc files
// (ledger.cc: commit and dispatch; ledger_state.cc: reports, state records, bounces, DONE;
// ledger_maintenance.cc: unlink, compaction, recovery split). Not for other files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.h"
#include "delivery/ledger.h"
#include "spool/compactor.h"
#include "spool/group_commit.h"
#include "spool/segment_format.h"

namespace ringmail::delivery {

struct Ledger::Entry {
  enum class Phase : uint8_t {
    kActive,     // recipients not all final yet
    kBouncing,   // all final; the DSN is being read/composed/committed
    kFinishing,  // DONE appended, not durable yet
  };
  // Per recipient, beside its durable state in envelope.recipients[i].
  struct Track {
    bool final = false;           // a delivered/failed RECIPIENT record is durable
    bool reported_final = false;  // a delivered/failed report was accepted (record queued)
    bool out = false;             // a job for it is at an engine
    bool parked = false;          // handed back, waiting here for its next attempt
    uint16_t in_flight = 0;       // RECIPIENT records appended, not durable yet
    // The latest attempt count and next attempt known (reported, maybe not durable yet):
    // what a job carries, so a re-dispatch never goes back to older values.
    uint32_t attempts = 0;
    uint64_t next_attempt_ms = 0;
    spool::SegmentId out_segment;  // the segment its job reads (held while out)
  };
  // What a failure said, for the DSN.
  struct Failure {
    uint32_t index = 0;
    std::string remote_host;
    std::string reply;
    uint64_t at_ms = 0;
  };

  uint64_t received_ms = 0;
  core::Envelope envelope;  // recipients carry their durable states
  uint32_t received_header_length = 0;
  spool::SpoolLocation location;
  std::vector<Track> tracks;
  std::vector<Failure> failures;
  uint32_t final_count = 0;
  uint32_t out_count = 0;
  uint32_t records_in_flight = 0;  // RECIPIENT records of this message not durable yet
  Phase phase = Phase::kActive;
  bool skip_dsn = false;  // recovered, and its DSN is already live
  std::unique_ptr<BounceOp> bounce;
};

// A RECIPIENT or DONE write. `record` says which; its id names the message.
struct Ledger::StateOp : spool::StateRequest {};

// The DSN of one message: read the original's header section back, compose, commit.
struct Ledger::BounceOp {
  BounceOp(Ledger* l, const core::MessageId& id) : ledger(l), original(id) {
    read.Bind<&BounceOp::ReadDone>(this);
    commit.Bind<&BounceOp::CommitDone>(this);
  }
  void ReadDone(spool::SegmentRangeRead&) { ledger->BounceReadDone(*this); }
  void CommitDone(spool::CommitRequest&) { ledger->BounceCommitDone(*this); }

  Ledger* ledger;
  core::MessageId original;
  spool::SegmentRangeRead read;
  spool::CommitRequest commit;
};

// Helpers shared by the ledger's files.
bool IsFinalState(core::RecipientState state);
std::string AsciiLower(std::string_view s);

}  // namespace ringmail::delivery
