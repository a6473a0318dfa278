// tools/ringload/message_factory.h — the messages `ringload send` sends.
//
// Bodies are rendered once per size class at start (raw for BDAT and dot-stuffed for DATA),
// so sending a message copies nothing but its ~300-byte header block: the body goes out
// straight from the shared read-only rendering. Each message is a valid RFC 5322 message
// with CRLF line endings and a unique Message-ID plus an X-Ringload-Seq header, so a receiver
// can check exactly-once delivery. The body has lines that begin with '.' (and one that is
// only "."), so the receiver's dot-unstuffing is exercised.
//
// Built on the main thread before the loops start, then shared read-only by every loop.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tools/ringload/options.h"

namespace ringmail::ringload {

class MessageFactory {
 public:
  struct Body {
    uint64_t target_bytes = 0;  // the size asked for (headers + body)
    std::string raw;            // content after the header block, CRLF lines
    std::string stuffed;        // the same, dot-stuffed for DATA
    std::string json;           // --http: `raw` escaped for a JSON string (no quotes)
  };

  // `run_id` makes Message-IDs unique across runs.
  MessageFactory(const SendOptions& options, uint64_t run_id);

  size_t size_classes() const { return bodies_.size(); }
  const Body& body(size_t size_class) const { return bodies_[size_class]; }
  // Picks a size class from a uniform `draw` in [0, 1).
  size_t PickSizeClass(double draw) const;

  // Appends the header block (ending with the blank line) of message `seq`. No allocation
  // once `out` has grown to its steady size.
  void AppendHeaders(uint64_t seq, std::string* out) const;
  // Appends recipient `index` (0-based, within message `seq`) as an address.
  void AppendRecipient(uint64_t seq, uint32_t index, std::string* out) const;
  // The Message-ID value of `seq`, "<seq.runid@ringload.test>".
  void AppendMessageId(uint64_t seq, std::string* out) const;

  // --http: the request body of message `seq` is AppendJsonPrefix(seq), then
  // body(size_class).json, then json_tail(). Raw kind: "content" is the header block and
  // the body; structured: from, subject, Message-ID and X-Ringload-Seq as "headers", the
  // body as "text_body" (with --template, {{name}} references and per-recipient values).
  // Returns the bytes of the message's header block (raw) or 0 (structured: the server
  // writes the headers), so the message size can be counted as in SMTP mode.
  size_t AppendJsonPrefix(uint64_t seq, std::string* out) const;
  std::string_view json_tail() const;

  const std::string& from() const { return from_; }
  uint32_t rcpts() const { return rcpts_; }

  // Dot-stuffs CRLF text: a '.' at the start of a line is doubled.
  static std::string DotStuff(std::string_view raw);
  // Appends `text` escaped for the inside of a JSON string: quote, backslash and control
  // bytes escaped; other bytes as they are.
  static void AppendJsonEscaped(std::string_view text, std::string* out);

 private:
  struct Piece {
    enum Kind { kLiteral, kNumber, kDomain } kind;
    std::string literal;
  };

  static constexpr size_t kHeaderEstimate = 330;

  std::string RenderBody(uint64_t bytes) const;

  std::vector<Body> bodies_;
  std::vector<double> cumulative_weight_;
  std::vector<Piece> rcpt_pieces_;
  std::string from_;
  std::string date_;
  std::string run_hex_;
  uint32_t rcpts_;
  uint32_t domains_;
  SendOptions::HttpKind http_kind_;
  bool http_template_;
};

}  // namespace ringmail::ringload
