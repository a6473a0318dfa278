// core/message.h — the message as it travels: id, envelope, recipients, body.
//
// A Message is owned by exactly one loop at a time and moves (never copies) between stages:
// the ESMTP session builds it, the spool's group commit writes it, the sink hands its
// metadata on. The body is a chain of fixed-size chunks written once by the receiver and
// then only read (the spool writes it with one WRITEV straight from the chunks), so a body
// is never copied between stages and never reallocated as it grows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringmail::core {

// The 32 hex digits of a MessageId in place, for the paths every message takes (its 250
// reply, its Received header, its reception log line), where a heap string would be one
// allocation each. view() is valid as long as this value lives.
struct MessageIdHex {
  char digits[32];
  std::string_view view() const { return std::string_view(digits, sizeof(digits)); }
};

// 128-bit message id: 48 bits of milliseconds since the epoch, 16 bits of loop index,
// 64 bits of per-loop sequence mixed with a per-process random salt. Unique across
// restarts and loops without coordination. Rendered as 32 lowercase hex digits.
struct MessageId {
  uint64_t hi = 0;
  uint64_t lo = 0;

  friend bool operator==(const MessageId&, const MessageId&) = default;
  bool IsZero() const { return hi == 0 && lo == 0; }
  std::string ToHex() const;
  MessageIdHex Hex() const;
  static bool FromHex(std::string_view hex, MessageId* out);
  template <typename H>
  friend H AbslHashValue(H h, const MessageId& id) {
    return H::combine(std::move(h), id.hi, id.lo);
  }
};

// Makes ids for one loop. Not thread-safe: one generator per loop.
class MessageIdGenerator {
 public:
  MessageIdGenerator(uint16_t loop_index, uint64_t salt);
  MessageId Next(uint64_t now_ms);

 private:
  uint16_t loop_index_;
  uint64_t salt_;
  uint64_t sequence_ = 0;
};

// Per-recipient delivery state, persisted by RECIPIENT records (STYLE.md principle 18).
enum class RecipientState : uint8_t {
  kPending = 0,
  kDelivered = 1,
  kDeferred = 2,  // with next_attempt_ms
  kFailed = 3,    // bounced
};

struct Recipient {
  std::string address;  // without angle brackets; "" never (RCPT TO:<> is refused)
  std::string params;   // ESMTP parameters after the address, verbatim (e.g. NOTIFY=...)
  RecipientState state = RecipientState::kPending;
  uint32_t attempts = 0;
  uint64_t next_attempt_ms = 0;
};

struct Envelope {
  std::string mail_from;  // "" is the null reverse-path <>
  std::string mail_params;  // ESMTP parameters of MAIL FROM, verbatim
  std::vector<Recipient> recipients;
  std::string helo;       // the client's EHLO/HELO argument
  std::string peer;       // "ip:port" of the client
};

// A chain of chunks. Append() fills the last chunk and starts a new one when it is full;
// the bytes never move once written. Chunks grow from 4 KiB to 64 KiB so a small message
// costs little memory and a large one few iovecs.
class Body {
 public:
  static constexpr size_t kFirstChunkBytes = 4 * 1024;
  static constexpr size_t kMaxChunkBytes = 64 * 1024;

  Body() = default;
  Body(Body&&) noexcept = default;
  Body& operator=(Body&&) noexcept = default;
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;

  void Append(std::string_view bytes);
  // Space to write into directly (at least 1 byte); Commit(n) after writing n bytes.
  std::span<char> WritableTail();
  void Commit(size_t n);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t chunk_count() const { return chunks_.size(); }
  std::string_view chunk(size_t i) const {
    return {chunks_[i].data.get(), chunks_[i].used};
  }
  std::string ToString() const;  // for tests and tools; copies
  void Clear();

 private:
  struct Chunk {
    std::unique_ptr<char[]> data;
    size_t used = 0;
    size_t capacity = 0;
  };
  std::vector<Chunk> chunks_;
  size_t size_ = 0;
};

struct Message {
  MessageId id;
  uint64_t received_ms = 0;
  Envelope envelope;
  // The trace header this MTA prepends (RFC 5321 §4.4), kept apart from the client's bytes
  // so the body chain holds exactly what was received.
  std::string received_header;
  Body body;

  // Bytes as delivered: received_header followed by body.
  size_t content_size() const { return received_header.size() + body.size(); }
};

}  // namespace ringmail::core
