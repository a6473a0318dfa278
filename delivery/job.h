// delivery/job.h — what crosses between a message's owner loop and a delivery loop.
//
// Two sides (DESIGN.md "Queues and delivery", MODULES.md steps 7–11):
// - The owner loop of a message is the loop whose SpoolWriter wrote its MESSAGE record
//   (location.segment.loop). Its Ledger (delivery/ledger.h) is the spool's MessageSink: it
//   tracks every live message it owns, splits a committed message's pending recipients by
//   domain into DeliveryJobs, and Posts each to the domain's delivery loop
//   (DeliveryRouter::LoopForDomain). It alone appends RECIPIENT and DONE records for its
//   messages, unlinks drained segments, compacts, and injects bounces.
// - A delivery loop's Engine (delivery/engine.h) owns the domain records sharded to it:
//   queues, DNS, connections, retries. It reads the body from the segment file by
//   (path, offset, length) with ring reads and posts DeliveryReports back to the owner.
//
// Both travel by value through Loop::Post (moved, never shared). Times are Unix ms (they
// are persisted in RECIPIENT records and survive restarts).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/message.h"
#include "spool/segment_format.h"

namespace ringmail::delivery {

struct DeliveryJob {
  core::MessageId id;
  uint64_t received_ms = 0;
  std::string mail_from;    // "" for the null sender (bounces)
  std::string mail_params;  // verbatim ESMTP parameters of MAIL FROM
  std::string domain;       // lower-case recipient domain; all recipients below are in it
  struct Recipient {
    uint32_t index = 0;     // in the message's envelope: the RECIPIENT record's key
    std::string address;
    std::string params;
    uint32_t attempts = 0;
    uint64_t next_attempt_ms = 0;  // 0: now
  };
  std::vector<Recipient> recipients;
  // The content (Received: header + body, CRLF, not dot-stuffed) in the segment file.
  std::string segment_path;
  uint64_t content_offset = 0;
  uint64_t content_length = 0;
  bool eight_bit = false;   // MAIL had BODY=8BITMIME (or content has 8-bit bytes)
  uint32_t owner_loop = 0;  // where the DeliveryReport goes
};

struct DeliveryReport {
  core::MessageId id;
  struct Item {
    uint32_t index = 0;
    core::RecipientState state = core::RecipientState::kPending;  // delivered/deferred/failed
    uint32_t attempts = 0;
    uint64_t next_attempt_ms = 0;  // for kDeferred
    std::string remote_host;       // "mx1.example.com[127.0.0.1]:25"
    std::string reply;             // the remote reply or our own reason ("5.1.2 null MX")
  };
  std::vector<Item> items;
};

}  // namespace ringmail::delivery
