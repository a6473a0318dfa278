// fuzz/spool_record_fuzz.cc — libFuzzer target for the pure spool decoders
// (spool/record.h DecodeRecordHeader / DecodeMeta / DecodeRecord, spool/segment_format.h
// DecodeSegmentHeader and the file-name parsers).
//
// The last input byte is a mode: bit 0 asks for the record's CRCs to be made right first
// (fuzz/spool_fuzz_util.h FixCrcs), so the metadata decoder gets hostile but CRC-valid
// bytes — what a buggy or malicious writer could leave on disk. Oracles: no crash and no
// over-allocation (ASan's rss and malloc limits); a decoded record's fields respect the
// limits of record.h; encoding it again gives exactly the same bytes. Every input is also
// decoded as a format-2 record of a segment life chosen by the mode's upper bits (made
// CRC-valid for that life under bit 0), with the same oracles, and a record valid for that
// life must not be valid for the next one (records of an earlier life never read back).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "base/check.h"
#include "fuzz/spool_fuzz_util.h"
#include "spool/record.h"
#include "spool/segment_format.h"

namespace ringmail::spool {
namespace {

void CheckLimits(const DecodedRecord& record, std::string_view bytes) {
  const RecordHeader& h = record.header;
  RM_CHECK(h.padded_length() <= bytes.size());
  RM_CHECK(h.length >= kRecordHeaderBytes + h.meta_length);
  RM_CHECK(record.content.size() == h.content_length());
  if (const auto* meta = std::get_if<MessageMeta>(&record.meta)) {
    RM_CHECK(h.type == RecordType::kMessage);
    RM_CHECK(meta->envelope.recipients.size() <= kRecipientsMax);
    RM_CHECK(meta->received_header_length <= meta->content_length);
    RM_CHECK(meta->content_length == record.content.size());
    for (const core::Recipient& r : meta->envelope.recipients) {
      RM_CHECK(r.address.size() <= kAddressBytesMax && r.params.size() <= kParamsBytesMax);
    }
  } else if (const auto* update = std::get_if<RecipientUpdate>(&record.meta)) {
    RM_CHECK(h.type == RecordType::kRecipient && record.content.empty());
    RM_CHECK(update->recipient_index < kRecipientsMax);
    RM_CHECK(update->reply.size() <= kReplyBytesMax);
  } else {
    RM_CHECK(h.type == RecordType::kDone && record.content.empty());
  }
}

void FuzzNames(std::string_view text) {
  if (std::optional<uint64_t> seq = ParseSegmentFileName(text)) {
    RM_CHECK(ParseSegmentFileName(SegmentFileName(*seq)) == seq) << "file name round trip";
  }
  if (std::optional<uint64_t> seq = ParseRecycleFileName(text)) {
    RM_CHECK(ParseRecycleFileName(RecycleFileName(*seq)) == seq) << "recycle name round trip";
  }
  if (std::optional<uint32_t> loop = ParseLoopDirName(text)) {
    RM_CHECK(*loop <= kMaxLoopIndex);
    RM_CHECK(ParseLoopDirName(LoopDirName(*loop)) == loop) << "loop name round trip";
  }
  SegmentHeader header;
  if (DecodeSegmentHeader(text, &header) == SegmentHeaderError::kNone) {
    RM_CHECK(EncodeSegmentHeader(header) == text.substr(0, kSegmentHeaderBytes))
        << "segment header round trip";
  }
}

// The same bytes as a record of a format-2 segment life.
void FuzzBound(std::string bytes, uint8_t mode) {
  const SegmentId id{static_cast<uint32_t>(mode >> 4), 1u + ((mode >> 1) & 7u)};
  const RecordLife life{kRecordVersionBound, LifeKey(id)};
  if ((mode & 1) != 0) ringmail::fuzz::FixCrcs(&bytes, 0, life);
  DecodedRecord record;
  const RecordStatus status = DecodeRecord(bytes, &record, life);
  if (!status.ok()) return;
  CheckLimits(record, bytes);
  ringmail::fuzz::CheckReencodes(record, bytes, life);
  const RecordLife next{kRecordVersionBound, LifeKey(SegmentId{id.loop, id.seq + 1})};
  DecodedRecord stale;
  RM_CHECK(!DecodeRecord(bytes, &stale, next).ok()) << "a record read under another life";
  RM_CHECK(!DecodeRecord(bytes, &stale).ok()) << "a format-2 record read as format 1";
}

}  // namespace
}  // namespace ringmail::spool

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::spool;  // NOLINT: the target's whole vocabulary
  if (size == 0) return 0;
  const uint8_t mode = data[size - 1];
  std::string bytes(reinterpret_cast<const char*>(data), size - 1);
  FuzzNames(bytes);
  FuzzBound(bytes, mode);
  if ((mode & 1) != 0) ringmail::fuzz::FixCrcs(&bytes, 0);
  RecordHeader header;
  const RecordStatus header_status = DecodeRecordHeader(bytes, &header);
  DecodedRecord record;
  const RecordStatus status = DecodeRecord(bytes, &record);
  RM_CHECK(header_status.ok() || !status.ok()) << "record decodes with a bad header";
  if (!status.ok()) {
    RM_CHECK(!RecordErrorName(status.error).empty() && status.detail != nullptr);
    return 0;
  }
  CheckLimits(record, bytes);
  ringmail::fuzz::CheckReencodes(record, bytes);
  return 0;
}
