// spool/sink.h — "a committed message goes here": the one bridge between receiving and
// delivering (STYLE.md principle 15).
//
// listeners/ (through the group commit) and recovery produce CommittedMessage values;
// delivery/ implements MessageSink; ringmaild wires the two. spool/ knows nothing of delivery.
//
// Threading and ownership: Committed() is called on the loop that owns the segment holding
// the MESSAGE record — from the group-commit completion for a fresh message (after the data is
// durable, before or while the client hears 250), or from the recovery hand-off for a message
// found at start. The sink takes ownership of the value. It must not block and must not call
// back into the spool synchronously; to reach another loop it Post()s a copy of what it needs
// (bounded inbox — when full, the sink keeps the message for a later attempt; it is durable).
// Bodies are not in memory: delivery reads `location.content_*` from the segment file.
#pragma once

#include <cstdint>

#include "core/message.h"
#include "spool/segment_format.h"

namespace ringmail::spool {

struct CommittedMessage {
  core::MessageId id;
  uint64_t received_ms = 0;
  // Sender, parameters, HELO, peer, and every recipient with its current state: a recovered
  // message may already have delivered or failed recipients, which delivery must skip.
  core::Envelope envelope;
  // The content at `location` starts with the Received: header this MTA added (that many
  // bytes), followed by the body as received.
  uint32_t received_header_length = 0;
  // The segment (loop directory and sequence number) and the byte ranges within it. The loop
  // that owns location.segment is the one every RECIPIENT and DONE record for this message
  // must be posted to.
  SpoolLocation location;
  // True when found by start-up recovery rather than freshly received.
  bool recovered = false;
};

class MessageSink {
 public:
  virtual ~MessageSink() = default;

  // `message` is durable in the spool. Called on the owning loop's thread; see above.
  virtual void Committed(CommittedMessage&& message) = 0;
};

}  // namespace ringmail::spool
