#include "spool/record.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"

namespace ringmail::spool {
namespace {

using internal::ByteReader;

constexpr char kZeros[kRecordAlignBytes] = {};
constexpr size_t kCrcOffset = 0;
constexpr size_t kHeaderCrcOffset = 4;
constexpr size_t kHeaderFieldsOffset = 8;
// Smallest possible encoding of one recipient: state word, attempts, next attempt, two empty
// strings. Used to reject a recipient count the metadata cannot possibly hold before
// allocating for it.
constexpr size_t kRecipientBytesMin = 4 + 4 + 8 + 4 + 4;

void PutId(std::string* out, const core::MessageId& id) {
  internal::PutU64(out, id.hi);
  internal::PutU64(out, id.lo);
}

void PutString(std::string* out, std::string_view s) {
  internal::PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// Fills header bytes [8, 24) and header_crc of a record whose head (header + metadata) is
// already in `head`, and returns the CRC-so-far over [4, head.size()).
uint32_t FillHeader(std::string* head, RecordType type, uint32_t meta_length, uint64_t length,
                    uint8_t version) {
  std::string fields;
  internal::PutU8(&fields, static_cast<uint8_t>(type));
  internal::PutU8(&fields, version);
  internal::PutU16(&fields, 0);
  internal::PutU32(&fields, meta_length);
  internal::PutU64(&fields, length);
  RM_DCHECK(fields.size() == kRecordHeaderBytes - kHeaderFieldsOffset);
  head->replace(kHeaderFieldsOffset, fields.size(), fields);
  internal::StoreU32At(head, kHeaderCrcOffset, Crc32c(fields));
  return Crc32c(std::string_view(*head).substr(kHeaderCrcOffset));
}

// Encodes a record without content (RECIPIENT, DONE) whose metadata follows the header
// placeholder in `record`.
std::string FinishSmallRecord(std::string record, RecordType type, RecordLife life) {
  uint64_t meta_length = record.size() - kRecordHeaderBytes;
  RM_CHECK(meta_length <= kMetaBytesMax);
  uint64_t length = record.size();
  uint32_t crc =
      FillHeader(&record, type, static_cast<uint32_t>(meta_length), length, life.version);
  std::string_view padding(kZeros, AlignRecord(length) - length);
  record.append(padding);
  internal::StoreU32At(&record, kCrcOffset, Crc32cExtend(crc, padding));
  BindRecord(record.data(), 0, life.key);
#if defined(RINGMAIL_DEBUG_CHECKS)
  DecodedRecord check;
  RM_DCHECK(DecodeRecord(record, &check, life).ok());
  RM_DCHECK(check.header.type == type);
#endif
  return record;
}

absl::Status CheckField(const char* name, size_t size, size_t limit) {
  if (size <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("spool record: ", name, " is ", size, " bytes, limit ", limit));
}

absl::Status CheckMessageLimits(const core::Message& m) {
  const core::Envelope& env = m.envelope;
  if (env.recipients.size() > kRecipientsMax) {
    return absl::InvalidArgumentError(absl::StrCat("spool record: ", env.recipients.size(),
                                                   " recipients, limit ", kRecipientsMax));
  }
  absl::Status s = CheckField("sender", env.mail_from.size(), kAddressBytesMax);
  if (s.ok()) s = CheckField("MAIL parameters", env.mail_params.size(), kParamsBytesMax);
  if (s.ok()) s = CheckField("HELO", env.helo.size(), kHeloBytesMax);
  if (s.ok()) s = CheckField("peer", env.peer.size(), kPeerBytesMax);
  if (s.ok()) s = CheckField("Received header", m.received_header.size(), kReceivedHeaderBytesMax);
  for (const core::Recipient& r : env.recipients) {
    if (s.ok()) s = CheckField("recipient", r.address.size(), kAddressBytesMax);
    if (s.ok()) s = CheckField("RCPT parameters", r.params.size(), kParamsBytesMax);
  }
  return s;
}

void PutMessageMeta(std::string* out, const core::Message& m) {
  const core::Envelope& env = m.envelope;
  PutId(out, m.id);
  internal::PutU64(out, m.received_ms);
  internal::PutU32(out, static_cast<uint32_t>(m.received_header.size()));
  internal::PutU32(out, static_cast<uint32_t>(env.recipients.size()));
  PutString(out, env.mail_from);
  PutString(out, env.mail_params);
  PutString(out, env.helo);
  PutString(out, env.peer);
  for (const core::Recipient& r : env.recipients) {
    RM_DCHECK(static_cast<uint8_t>(r.state) <= static_cast<uint8_t>(core::RecipientState::kFailed));
    internal::PutU8(out, static_cast<uint8_t>(r.state));
    internal::PutU8(out, 0);
    internal::PutU16(out, 0);
    internal::PutU32(out, r.attempts);
    internal::PutU64(out, r.next_attempt_ms);
    PutString(out, r.address);
    PutString(out, r.params);
  }
}

// The exact number of bytes PutMessageMeta appends, so that a record's head is allocated
// once instead of growing through each of the envelope's fields.
size_t MessageMetaBytes(const core::Message& m) {
  constexpr size_t kPrefix = 4;  // PutString's length
  const core::Envelope& env = m.envelope;
  size_t n = 16 + 8 + 4 + 4 + 4 * kPrefix;  // id, received_ms, two counts, four strings
  n += env.mail_from.size() + env.mail_params.size() + env.helo.size() + env.peer.size();
  for (const core::Recipient& r : env.recipients) {
    n += 16 + 2 * kPrefix + r.address.size() + r.params.size();
  }
  return n;
}

RecordStatus Fail(RecordError error, const char* detail) { return RecordStatus{error, detail}; }

// Turns a failed reader into the right error: a length over its limit, or bytes missing.
RecordStatus ReaderFailure(const ByteReader& r, const char* field) {
  return Fail(r.limit_exceeded() ? RecordError::kLimitExceeded : RecordError::kBadMeta, field);
}

bool ReadState(ByteReader& r, core::RecipientState* state) {
  uint8_t raw = r.U8();
  uint8_t reserved8 = r.U8();
  uint16_t reserved16 = r.U16();
  if (!r.ok() || reserved8 != 0 || reserved16 != 0) return false;
  if (raw > static_cast<uint8_t>(core::RecipientState::kFailed)) return false;
  *state = static_cast<core::RecipientState>(raw);
  return true;
}

RecordStatus DecodeRecipients(ByteReader& r, uint32_t count, core::Envelope* env) {
  if (count > kRecipientsMax) return Fail(RecordError::kLimitExceeded, "recipient count");
  if (uint64_t{count} * kRecipientBytesMin > r.remaining()) {
    return Fail(RecordError::kBadMeta, "recipient count exceeds metadata");
  }
  env->recipients.resize(count);
  for (core::Recipient& rcpt : env->recipients) {
    if (!ReadState(r, &rcpt.state)) {
      return r.ok() ? Fail(RecordError::kBadMeta, "recipient state")
                    : ReaderFailure(r, "recipient state");
    }
    rcpt.attempts = r.U32();
    rcpt.next_attempt_ms = r.U64();
    rcpt.address = r.String(kAddressBytesMax);
    if (!r.ok()) return ReaderFailure(r, "recipient address");
    rcpt.params = r.String(kParamsBytesMax);
    if (!r.ok()) return ReaderFailure(r, "recipient parameters");
  }
  return {};
}

RecordStatus DecodeMessageMeta(const RecordHeader& header, std::string_view meta,
                               MessageMeta* out) {
  ByteReader r(meta);
  out->id.hi = r.U64();
  out->id.lo = r.U64();
  out->received_ms = r.U64();
  out->received_header_length = r.U32();
  uint32_t count = r.U32();
  out->content_length = header.content_length();
  if (!r.ok()) return Fail(RecordError::kBadMeta, "message fixed fields");
  if (out->received_header_length > kReceivedHeaderBytesMax) {
    return Fail(RecordError::kLimitExceeded, "Received header length");
  }
  if (out->received_header_length > out->content_length) {
    return Fail(RecordError::kBadMeta, "Received header longer than content");
  }
  core::Envelope& env = out->envelope;
  env.mail_from = r.String(kAddressBytesMax);
  if (!r.ok()) return ReaderFailure(r, "sender");
  env.mail_params = r.String(kParamsBytesMax);
  if (!r.ok()) return ReaderFailure(r, "MAIL parameters");
  env.helo = r.String(kHeloBytesMax);
  if (!r.ok()) return ReaderFailure(r, "HELO");
  env.peer = r.String(kPeerBytesMax);
  if (!r.ok()) return ReaderFailure(r, "peer");
  RecordStatus s = DecodeRecipients(r, count, &env);
  if (!s.ok()) return s;
  if (r.remaining() != 0) return Fail(RecordError::kBadMeta, "trailing metadata bytes");
  return {};
}

RecordStatus DecodeRecipientMeta(std::string_view meta, RecipientUpdate* out) {
  ByteReader r(meta);
  out->id.hi = r.U64();
  out->id.lo = r.U64();
  out->recipient_index = r.U32();
  if (!ReadState(r, &out->state)) {
    return r.ok() ? Fail(RecordError::kBadMeta, "recipient state")
                  : Fail(RecordError::kBadMeta, "recipient fixed fields");
  }
  out->attempts = r.U32();
  out->next_attempt_ms = r.U64();
  out->changed_ms = r.U64();
  out->reply = r.String(kReplyBytesMax);
  if (!r.ok()) return ReaderFailure(r, "reply");
  if (out->recipient_index >= kRecipientsMax) {
    return Fail(RecordError::kLimitExceeded, "recipient index");
  }
  if (r.remaining() != 0) return Fail(RecordError::kBadMeta, "trailing metadata bytes");
  return {};
}

RecordStatus DecodeDoneMeta(std::string_view meta, DoneMark* out) {
  ByteReader r(meta);
  out->id.hi = r.U64();
  out->id.lo = r.U64();
  out->done_ms = r.U64();
  if (!r.ok()) return Fail(RecordError::kBadMeta, "done fixed fields");
  if (r.remaining() != 0) return Fail(RecordError::kBadMeta, "trailing metadata bytes");
  return {};
}

}  // namespace

uint32_t LifeKey(SegmentId id) {
  std::string seed = "RMLIFE";
  internal::PutU32(&seed, id.loop);
  internal::PutU64(&seed, id.seq);
  return Crc32c(seed);
}

RecordLife LifeOf(const SegmentHeader& header) {
  if (header.version == kSegmentFormatVersion1) return RecordLife{};
  return RecordLife{kRecordVersionBound, LifeKey(SegmentId{header.loop, header.seq})};
}

void BindRecord(char* record_head, uint32_t from, uint32_t to) {
  const uint32_t x = from ^ to;
  for (size_t at : {kCrcOffset, kHeaderCrcOffset}) {
    uint32_t v = internal::LoadU32(record_head + at) ^ x;
    for (int i = 0; i < 4; ++i) record_head[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
}

RecordLife LifeOfValidatedRecord(SegmentId id, std::string_view record) {
  if (record.size() > 9 && static_cast<uint8_t>(record[9]) == kRecordVersionBound) {
    return RecordLife{kRecordVersionBound, LifeKey(id)};
  }
  return RecordLife{};
}

std::string_view RecordTypeName(RecordType type) {
  switch (type) {
    case RecordType::kMessage: return "MESSAGE";
    case RecordType::kRecipient: return "RECIPIENT";
    case RecordType::kDone: return "DONE";
  }
  return "UNKNOWN";
}

std::string_view RecordErrorName(RecordError error) {
  switch (error) {
    case RecordError::kNone: return "ok";
    case RecordError::kTruncated: return "truncated record";
    case RecordError::kZeroHeader: return "zero header";
    case RecordError::kBadHeaderCrc: return "header CRC mismatch";
    case RecordError::kBadType: return "unknown record type";
    case RecordError::kBadVersion: return "unsupported record version";
    case RecordError::kBadFlags: return "unknown record flags";
    case RecordError::kBadLength: return "inconsistent record length";
    case RecordError::kLimitExceeded: return "limit exceeded";
    case RecordError::kBadCrc: return "record CRC mismatch";
    case RecordError::kBadMeta: return "invalid metadata";
  }
  return "unknown";
}

void EncodedRecord::AppendIovecs(std::vector<iovec>* out) const {
  auto add = [out](std::string_view s) {
    if (!s.empty()) out->push_back(iovec{const_cast<char*>(s.data()), s.size()});
  };
  add(head);
  for (std::string_view part : body_parts) add(part);
  add(tail);
}

std::string EncodedRecord::Flatten() const {
  std::string out;
  out.reserve(size());
  out.append(head);
  for (std::string_view part : body_parts) out.append(part);
  out.append(tail);
  return out;
}

absl::StatusOr<EncodedRecord> EncodeMessage(const core::Message& message, RecordLife life) {
  absl::Status limits = CheckMessageLimits(message);
  if (!limits.ok()) return limits;
  EncodedRecord rec;
  const size_t meta_bytes = MessageMetaBytes(message);
  rec.head.reserve(kRecordHeaderBytes + meta_bytes);
  rec.head.assign(kRecordHeaderBytes, '\0');
  PutMessageMeta(&rec.head, message);
  RM_DCHECK(rec.head.size() == kRecordHeaderBytes + meta_bytes) << rec.head.size();
  uint64_t meta_length = rec.head.size() - kRecordHeaderBytes;
  if (meta_length > kMetaBytesMax) {
    return absl::InvalidArgumentError(absl::StrCat("spool record: envelope is ", meta_length,
                                                   " bytes, limit ", kMetaBytesMax));
  }
  rec.content_length = message.content_size();
  uint64_t length = rec.head.size() + rec.content_length;
  if (AlignRecord(length) > kRecordBytesMax) {  // OutOfRange: "552 5.3.4" to the client
    return absl::OutOfRangeError(
        absl::StrCat("spool record: message is ", length, " bytes, limit ", kRecordBytesMax));
  }
  rec.tail = std::string_view(kZeros, AlignRecord(length) - length);
  uint32_t crc = FillHeader(&rec.head, RecordType::kMessage, static_cast<uint32_t>(meta_length),
                            length, life.version);
  if (!message.received_header.empty()) rec.body_parts.push_back(message.received_header);
  for (size_t i = 0; i < message.body.chunk_count(); ++i) {
    std::string_view chunk = message.body.chunk(i);
    if (!chunk.empty()) rec.body_parts.push_back(chunk);
  }
  for (std::string_view part : rec.body_parts) crc = Crc32cExtend(crc, part);
  crc = Crc32cExtend(crc, rec.tail);
  internal::StoreU32At(&rec.head, kCrcOffset, crc);
  BindRecord(rec.head.data(), 0, life.key);
#if defined(RINGMAIL_DEBUG_CHECKS)
  std::string flat = rec.Flatten();
  DecodedRecord check;
  RM_DCHECK(DecodeRecord(flat, &check, life).ok());
  RM_DCHECK(std::get<MessageMeta>(check.meta).id == message.id);
  RM_DCHECK(check.content.size() == message.content_size());
#endif
  return rec;
}

std::string EncodeRecipient(const RecipientUpdate& update, RecordLife life) {
  RM_CHECK(update.recipient_index < kRecipientsMax) << "index " << update.recipient_index;
  std::string record(kRecordHeaderBytes, '\0');
  PutId(&record, update.id);
  internal::PutU32(&record, update.recipient_index);
  internal::PutU8(&record, static_cast<uint8_t>(update.state));
  internal::PutU8(&record, 0);
  internal::PutU16(&record, 0);
  internal::PutU32(&record, update.attempts);
  internal::PutU64(&record, update.next_attempt_ms);
  internal::PutU64(&record, update.changed_ms);
  std::string_view reply = update.reply;
  PutString(&record, reply.substr(0, std::min(reply.size(), kReplyBytesMax)));
  return FinishSmallRecord(std::move(record), RecordType::kRecipient, life);
}

std::string EncodeDone(const DoneMark& done, RecordLife life) {
  std::string record(kRecordHeaderBytes, '\0');
  PutId(&record, done.id);
  internal::PutU64(&record, done.done_ms);
  return FinishSmallRecord(std::move(record), RecordType::kDone, life);
}

RecordStatus DecodeRecordHeader(std::string_view bytes, RecordHeader* out, RecordLife life) {
  if (bytes.size() < kRecordHeaderBytes) return Fail(RecordError::kTruncated, "header");
  bytes = bytes.substr(0, kRecordHeaderBytes);
  if (bytes.find_first_not_of('\0') == std::string_view::npos) {
    return Fail(RecordError::kZeroHeader, "");
  }
  const char* p = bytes.data();
  if ((internal::LoadU32(p + kHeaderCrcOffset) ^ life.key) !=
      Crc32c(bytes.substr(kHeaderFieldsOffset))) {
    return Fail(RecordError::kBadHeaderCrc, "");
  }
  uint8_t type = static_cast<uint8_t>(p[8]);
  if (type < 1 || type > 3) return Fail(RecordError::kBadType, "");
  if (static_cast<uint8_t>(p[9]) != life.version) return Fail(RecordError::kBadVersion, "");
  if (p[10] != 0 || p[11] != 0) return Fail(RecordError::kBadFlags, "");
  out->crc = internal::LoadU32(p + kCrcOffset) ^ life.key;
  out->type = static_cast<RecordType>(type);
  out->meta_length = internal::LoadU32(p + 12);
  out->length = internal::LoadU64(p + 16);
  if (out->meta_length > kMetaBytesMax) return Fail(RecordError::kLimitExceeded, "meta_length");
  if (out->length > kRecordBytesMax || AlignRecord(out->length) > kRecordBytesMax) {
    return Fail(RecordError::kLimitExceeded, "length");
  }
  if (out->length < kRecordHeaderBytes + out->meta_length) {
    return Fail(RecordError::kBadLength, "length shorter than header and metadata");
  }
  if (out->type != RecordType::kMessage && out->content_length() != 0) {
    return Fail(RecordError::kBadLength, "content on a record that has none");
  }
  return {};
}

uint32_t RecordCrcOfHeader(std::string_view header_bytes, RecordLife life) {
  RM_DCHECK(header_bytes.size() >= kRecordHeaderBytes);
  // The record CRC covers the header CRC as version 1 stores it (without the life key).
  std::string unkeyed;
  const uint32_t stored = internal::LoadU32(header_bytes.data() + kHeaderCrcOffset);
  internal::PutU32(&unkeyed, stored ^ life.key);
  const std::string_view fields =
      header_bytes.substr(kHeaderFieldsOffset, kRecordHeaderBytes - kHeaderFieldsOffset);
  return Crc32cExtend(Crc32c(unkeyed), fields);
}

RecordStatus DecodeMeta(const RecordHeader& header, std::string_view meta, RecordMeta* out) {
  if (meta.size() != header.meta_length) return Fail(RecordError::kBadLength, "meta size");
  switch (header.type) {
    case RecordType::kMessage:
      return DecodeMessageMeta(header, meta, &out->emplace<MessageMeta>());
    case RecordType::kRecipient:
      return DecodeRecipientMeta(meta, &out->emplace<RecipientUpdate>());
    case RecordType::kDone:
      return DecodeDoneMeta(meta, &out->emplace<DoneMark>());
  }
  return Fail(RecordError::kBadType, "");
}

RecordStatus DecodeRecord(std::string_view bytes, DecodedRecord* out, RecordLife life) {
  RecordStatus s = DecodeRecordHeader(bytes, &out->header, life);
  if (!s.ok()) return s;
  const RecordHeader& h = out->header;
  if (bytes.size() < h.padded_length()) return Fail(RecordError::kTruncated, "record");
  std::string_view body = bytes.substr(kRecordHeaderBytes, h.padded_length() - kRecordHeaderBytes);
  uint32_t crc = Crc32cExtend(RecordCrcOfHeader(bytes, life), body);
  if (crc != h.crc) return Fail(RecordError::kBadCrc, "");
  std::string_view padding = bytes.substr(h.length, h.padded_length() - h.length);
  if (padding.find_first_not_of('\0') != std::string_view::npos) {
    return Fail(RecordError::kBadMeta, "non-zero padding");
  }
  s = DecodeMeta(h, bytes.substr(kRecordHeaderBytes, h.meta_length), &out->meta);
  if (!s.ok()) return s;
  out->content = bytes.substr(kRecordHeaderBytes + h.meta_length, h.content_length());
  return {};
}

}  // namespace ringmail::spool
