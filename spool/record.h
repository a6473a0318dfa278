// spool/record.h — pure encode/decode of spool records: MESSAGE, RECIPIENT, DONE.
//
// No I/O, no global state; callable from any thread. The group commit (loop thread) encodes;
// recovery and the tools (SpoolIn pool, offline) decode. Decoding takes bytes read from a file
// that may be torn or corrupt: every length is checked against the bytes present and against
// the limits below, and failures come back as a typed RecordStatus — never a crash, never an
// RM_CHECK. Encoding checks its input against the same limits, and in debug builds decodes
// what it produced (pair assertion).
//
// Record layout, versions 1 and 2 (the same fields). All integers little-endian. A record
// starts at a multiple of kRecordAlignBytes (8) within its segment and is followed by zero
// padding up to the next one.
//
//   offset      size  field
//   0           4     crc          CRC32C of bytes [4, padded_length): everything after this
//                                  field, padding included
//   4           4     header_crc   CRC32C of bytes [8, 24): lets a reader reject a damaged
//                                  length before trusting it, and scan for the next record
//   8           1     type         1 MESSAGE, 2 RECIPIENT, 3 DONE. 0 is never written, so the
//                                  zeroed (preallocated, unwritten) space reads as "no record"
//   9           1     version      the segment's RecordLife: 1 in format-1 segments, 2 in
//                                  format-2 segments (any other value: not of this segment)
//   10          2     flags        0 (any other value: a feature this build cannot read)
//   12          4     meta_length  bytes of the metadata section, <= kMetaBytesMax
//   16          8     length       unpadded record length = 24 + meta_length + content_length,
//                                  padded length <= kRecordBytesMax
//   24          meta_length        metadata, per type (below); must be consumed exactly
//   24+meta     content_length     content: MESSAGE only (0 for the others) — the Received:
//                                  header followed by the body, exactly the bytes delivered
//   length      0..7               zero padding
//
// Version 2 (bound to one life of one segment): both stored CRCs are XORed with the life key,
// LifeKey(loop, seq) of the segment the record is written to; the CRCs are computed exactly as
// in version 1. A record left in a recycled file by an earlier life (another seq, so another
// key; keys of one loop differ for any two seqs below 2^32, since CRC32C detects every error
// burst of up to 32 bits) fails its header CRC under the new key and reads as the end of the
// segment; a version-1 record there fails the version check. The key is applied by XOR so
// that the writer can encode before it knows the segment (rollover) and bind at the write
// (BindRecord).
//
// In the metadata, id = two u64 (hi, lo); str = u32 length + bytes; reserved bytes are zero.
//   MESSAGE    id, u64 received_ms, u32 received_header_length (a prefix of the content),
//              u32 recipient_count, str mail_from, str mail_params, str helo, str peer, then per
//              recipient: u8 state, u8 0, u16 0, u32 attempts, u64 next_attempt_ms,
//              str address, str params
//   RECIPIENT  id, u32 recipient_index, u8 state, u8 0, u16 0, u32 attempts,
//              u64 next_attempt_ms, u64 changed_ms, str reply (the remote server's reply text)
//   DONE       id, u64 done_ms
// state: 0 pending, 1 delivered, 2 deferred (until next_attempt_ms), 3 failed.
//
// Contract with the writer (what makes "stop at the first torn record" sound): a batch is
// acknowledged only when it and every earlier batch of the same segment are durable; the writer
// never leaves a gap; the unwritten part of a segment reads as zeros or, in a recycled segment
// (format 2, kSegmentFlagRecycled), as records of earlier lives, which never validate.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "core/message.h"
#include "spool/segment_format.h"

namespace ringmail::spool {

inline constexpr uint8_t kRecordVersion = 1;       // unbound: segment format 1
inline constexpr uint8_t kRecordVersionBound = 2;  // bound to a life: segment format 2
inline constexpr uint64_t kRecordHeaderBytes = 24;

// Which segment life records are encoded for / decoded in. The default is version 1 (no key):
// what the tools and tests that build records by hand use, and how format-1 segments read.
struct RecordLife {
  uint8_t version = kRecordVersion;
  uint32_t key = 0;  // XORed into both CRCs; 0 for version 1

  friend bool operator==(const RecordLife&, const RecordLife&) = default;
};
// The key of segment `id`'s life (a CRC32C of loop and seq, never depending on anything else).
uint32_t LifeKey(SegmentId id);
// The life of the records of a segment with this header: version 1 → {1, 0}; version 2 →
// {2, LifeKey(loop, seq)}.
RecordLife LifeOf(const SegmentHeader& header);
// Re-keys an encoded record (its first 8 bytes, version 2) from life key `from` to `to`: the
// writer encodes with key 0 and binds when it knows the segment. `record_head` holds at least
// kRecordHeaderBytes.
void BindRecord(char* record_head, uint32_t from, uint32_t to);
// The life of a record at a location the LiveIndex vouches for (recovery or the writer
// validated it there): its own version byte says which format its segment has. Never use it
// to scan a file: a stale record would pick its own life.
RecordLife LifeOfValidatedRecord(SegmentId id, std::string_view record);

// Limits on what a record may hold. Encoding refuses more; decoding reports more as
// kLimitExceeded. Generous against RFC 5321 (path <= 256 octets, line <= 1000) because the
// listener enforces the tighter, configured limits; these only bound what a file can make us
// allocate.
inline constexpr uint64_t kRecordBytesMax = 1ull << 30;
inline constexpr uint32_t kMetaBytesMax = 64u << 20;
inline constexpr uint32_t kRecipientsMax = 100000;
inline constexpr size_t kAddressBytesMax = 1024;
inline constexpr size_t kParamsBytesMax = 2048;
inline constexpr size_t kHeloBytesMax = 1024;
inline constexpr size_t kPeerBytesMax = 256;
inline constexpr size_t kReceivedHeaderBytesMax = 16 * 1024;
inline constexpr size_t kReplyBytesMax = 8 * 1024;

// The metadata as a whole is bounded by kMetaBytesMax too (it is read into memory in one
// piece): 100000 recipients of ordinary length fit, 100000 at the field limits do not.
static_assert(kRecordHeaderBytes % kRecordAlignBytes == 0);
static_assert(kMetaBytesMax < kRecordBytesMax);
static_assert(uint64_t{kRecipientsMax} * (16 + 8 + 256 + 256) < kMetaBytesMax);

enum class RecordType : uint8_t { kMessage = 1, kRecipient = 2, kDone = 3 };
std::string_view RecordTypeName(RecordType type);

// What is wrong with bytes that were supposed to be a record.
enum class RecordError : uint8_t {
  kNone = 0,
  kTruncated,       // the bytes end before the record does
  kZeroHeader,      // 24 zero bytes: unwritten space, the normal end of a segment
  kBadHeaderCrc,
  kBadType,
  kBadVersion,
  kBadFlags,
  kBadLength,       // lengths inconsistent (length < header + meta, content on a non-MESSAGE)
  kLimitExceeded,   // a length or count over the limits above
  kBadCrc,          // the record CRC does not match its bytes
  kBadMeta,         // CRC-valid but the metadata does not parse (a writer bug, not a torn write)
};
std::string_view RecordErrorName(RecordError error);

// A small typed result: the error kind plus a static description of the field at fault.
struct RecordStatus {
  RecordError error = RecordError::kNone;
  const char* detail = "";

  bool ok() const { return error == RecordError::kNone; }
};

struct RecordHeader {
  uint32_t crc = 0;
  RecordType type = RecordType::kMessage;
  uint32_t meta_length = 0;
  uint64_t length = 0;  // unpadded

  uint64_t padded_length() const { return AlignRecord(length); }
  uint64_t content_length() const { return length - kRecordHeaderBytes - meta_length; }
};

// The metadata of a MESSAGE record (everything but the content).
struct MessageMeta {
  core::MessageId id;
  uint64_t received_ms = 0;
  core::Envelope envelope;  // recipients with the state they had when this record was written
  uint32_t received_header_length = 0;
  uint64_t content_length = 0;  // received header + body
};

// A RECIPIENT record: one recipient's state changed.
struct RecipientUpdate {
  core::MessageId id;
  uint32_t recipient_index = 0;
  core::RecipientState state = core::RecipientState::kPending;
  uint32_t attempts = 0;
  uint64_t next_attempt_ms = 0;  // meaningful for kDeferred
  uint64_t changed_ms = 0;
  std::string reply;  // what the remote server said; may be empty

  friend bool operator==(const RecipientUpdate&, const RecipientUpdate&) = default;
};

// A DONE record: every recipient is final; the message is no longer live.
struct DoneMark {
  core::MessageId id;
  uint64_t done_ms = 0;

  friend bool operator==(const DoneMark&, const DoneMark&) = default;
};

using RecordMeta = std::variant<MessageMeta, RecipientUpdate, DoneMark>;

// An encoded MESSAGE record, ready for one WRITEV: head, then body_parts, then tail.
// body_parts are views into the Message (its received_header and body chunks): the Message
// must stay alive and unmodified until the write completes. head holds the record header and
// the metadata; tail the zero padding (static storage).
struct EncodedRecord {
  std::string head;
  std::vector<std::string_view> body_parts;
  std::string_view tail;
  uint64_t content_length = 0;

  // Bytes the record occupies in the segment (a multiple of kRecordAlignBytes).
  uint64_t size() const { return head.size() + content_length + tail.size(); }
  // Where the content starts, relative to the start of the record.
  uint64_t content_offset() const { return head.size(); }
  // Appends one iovec per non-empty piece, in order.
  void AppendIovecs(std::vector<iovec>* out) const;
  // head + body_parts + tail in one string (tests and tools; copies the body).
  std::string Flatten() const;
};

// Encodes a MESSAGE record of `message` with its current recipient states. The CRC covers the
// body, computed incrementally over the chunks; nothing of the body is copied.
// Errors: kInvalidArgument when a field or count exceeds the limits above.
absl::StatusOr<EncodedRecord> EncodeMessage(const core::Message& message,
                                            RecordLife life = {});

// Encodes a RECIPIENT record (padded, CRC'd). reply longer than kReplyBytesMax is cut there
// (it comes from a remote server). recipient_index must be < kRecipientsMax.
std::string EncodeRecipient(const RecipientUpdate& update, RecordLife life = {});

// Encodes a DONE record (padded, CRC'd).
std::string EncodeDone(const DoneMark& done, RecordLife life = {});

// Decodes the kRecordHeaderBytes at the start of `bytes` as a record of `life` and checks the
// lengths against the limits (not against the bytes present: the rest may still be on disk).
// out->crc is the stored CRC with the life key removed.
RecordStatus DecodeRecordHeader(std::string_view bytes, RecordHeader* out, RecordLife life = {});

// The record CRC over the header's bytes [4, 24), to be extended over metadata, content and
// padding by Crc32cExtend and compared with RecordHeader::crc. The stored header CRC in bytes
// [4, 8) is first un-keyed with `life`.
uint32_t RecordCrcOfHeader(std::string_view header_bytes, RecordLife life = {});

// Decodes a metadata section whose CRC the caller has already verified.
RecordStatus DecodeMeta(const RecordHeader& header, std::string_view meta, RecordMeta* out);

// A whole record decoded from memory; content views into the input.
struct DecodedRecord {
  RecordHeader header;
  RecordMeta meta;
  std::string_view content;
};

// Decodes the record at the start of `bytes` (which may continue with further records):
// header, lengths, CRC, padding and metadata. kTruncated if `bytes` ends inside the record.
RecordStatus DecodeRecord(std::string_view bytes, DecodedRecord* out, RecordLife life = {});

}  // namespace ringmail::spool
