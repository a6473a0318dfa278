// fuzz/spool_fuzz_util.h — shared by the spool fuzz targets (spool_record_fuzz.cc,
// segment_reader_fuzz.cc): making fuzz bytes pass the CRCs so the fuzzer reaches the
// metadata decoder, and the "decode → encode gives the same bytes" pair check.
//
// Spool records carry a header CRC and a record CRC (spool/record.h); random bytes never
// match them, so without help the fuzzer would only ever test the CRC comparison. FixCrcs
// rewrites both CRC fields of the would-be record at the start of a buffer. Single-threaded,
// header-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "base/check.h"
#include "core/message.h"
#include "spool/crc32c.h"
#include "spool/record.h"

namespace ringmail::fuzz {

inline void StoreLe32(std::string* bytes, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*bytes)[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// Makes the header CRC of the record at `at` right and, when the header then decodes and the
// record fits, the record CRC too, both for `life` (format 2: keyed). Returns the record's
// padded length, or 0 when the header still does not decode (or the record does not fit) —
// the caller stops there.
inline uint64_t FixCrcs(std::string* bytes, size_t at, spool::RecordLife life = {}) {
  if (bytes->size() < at + spool::kRecordHeaderBytes) return 0;
  const std::string_view fields = std::string_view(*bytes).substr(at + 8, 16);
  const uint32_t header_crc = spool::Crc32c(fields);
  StoreLe32(bytes, at + 4, header_crc ^ life.key);
  spool::RecordHeader header;
  if (!spool::DecodeRecordHeader(std::string_view(*bytes).substr(at), &header, life).ok()) {
    return 0;
  }
  if (bytes->size() - at < header.padded_length()) return 0;
  // The record CRC covers the header CRC without the key (spool/record.h).
  std::string unkeyed(4, '\0');
  StoreLe32(&unkeyed, 0, header_crc);
  const std::string_view rest =
      std::string_view(*bytes).substr(at + 8, header.padded_length() - 8);
  StoreLe32(bytes, at, spool::Crc32cExtend(spool::Crc32c(unkeyed), rest) ^ life.key);
  return header.padded_length();
}

// Encoding a decoded record must give back exactly the bytes it came from: the format has
// one spelling for every record (reserved bytes, padding and trailing metadata are checked).
inline void CheckReencodes(const spool::DecodedRecord& record, std::string_view bytes,
                           spool::RecordLife life = {}) {
  const std::string_view original = bytes.substr(0, record.header.padded_length());
  std::string again;
  if (const auto* update = std::get_if<spool::RecipientUpdate>(&record.meta)) {
    again = spool::EncodeRecipient(*update, life);
  } else if (const auto* done = std::get_if<spool::DoneMark>(&record.meta)) {
    again = spool::EncodeDone(*done, life);
  } else {
    const auto& meta = std::get<spool::MessageMeta>(record.meta);
    core::Message message;
    message.id = meta.id;
    message.received_ms = meta.received_ms;
    message.envelope = meta.envelope;
    message.received_header = std::string(record.content.substr(0, meta.received_header_length));
    message.body.Append(record.content.substr(meta.received_header_length));
    absl::StatusOr<spool::EncodedRecord> encoded = spool::EncodeMessage(message, life);
    RM_CHECK(encoded.ok()) << "a decoded MESSAGE does not encode: " << encoded.status();
    again = encoded->Flatten();
  }
  RM_CHECK(again == original) << "decode/encode round trip changed the bytes";
}

}  // namespace ringmail::fuzz
