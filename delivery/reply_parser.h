// delivery/reply_parser.h — the pure byte layer of the outbound SMTP client: server replies
// in, parsed replies out, plus the EHLO extension list. No sockets, no clock, no threads.
//
// Used by ClientMachine (client_machine.h), one ReplyParser per connection, on the loop
// thread that owns the connection. Bytes arrive in arbitrary slices; the parser keeps only
// the reply being assembled (bounded below) and resumes at any split point.
//
// Grammar (RFC 5321 §4.2): every line is three digits, then '-' (more lines follow), or ' '
// or nothing (last line), then text, then CRLF. The first digit is 2..5 and the second 0..5
// (§4.2.1); every line of one reply carries the same code. A bare LF ends a line too (many
// servers and test tools send it, and for a client it can smuggle nothing); any other CR, and
// any NUL, is a protocol error. So are a line over kReplyLineBytesMax, a reply over
// kReplyLinesMax lines or kReplyBytesMax bytes, a malformed or mismatched code. After an
// error the parser stays failed: the client cannot trust anything else from that server and
// closes the connection.
//
// Enhanced status codes (RFC 3463, RFC 2034): when the first line's text starts with
// "class.subject.detail" whose class matches the reply's first digit, it is parsed into
// `Reply::enhanced` and removed from that line's text; otherwise it stays text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringmail::delivery {

// RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers exceed it (long EHLO
// keyword lists, verbose rejections), so we take four times that before calling it hostile.
inline constexpr size_t kReplyLineBytesMax = 2048;
inline constexpr size_t kReplyLinesMax = 100;
inline constexpr size_t kReplyBytesMax = 64 * 1024;
static_assert(kReplyLineBytesMax >= 512 + 2, "RFC 5321 reply lines must fit");
static_assert(kReplyBytesMax >= kReplyLineBytesMax);

// RFC 3463 "class.subject.detail"; klass == 0 means "none given".
struct EnhancedStatus {
  uint8_t klass = 0;    // 2, 4 or 5
  uint16_t subject = 0;  // 0..999
  uint16_t detail = 0;   // 0..999

  bool present() const { return klass != 0; }
  std::string ToString() const;  // "5.1.1", or "" when absent
  friend bool operator==(const EnhancedStatus&, const EnhancedStatus&) = default;
};

struct Reply {
  uint16_t code = 0;        // 200..559
  EnhancedStatus enhanced;  // from the first line, when present
  // The text of each line after "NNN-"/"NNN " (the first line without its enhanced code),
  // verbatim: it may hold any byte but NUL, CR and LF.
  std::vector<std::string> lines;

  bool positive() const { return code >= 200 && code < 300; }
  bool intermediate() const { return code >= 300 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  // The enhanced status, or one derived from the code ("4.0.0" / "5.0.0" / "2.0.0") when
  // the server gave none — what a DSN's Status: field needs.
  EnhancedStatus StatusOrDefault() const;
  // One line for logs and DSN Diagnostic-Code: "550 5.1.1 text / more text", every byte
  // outside printable ASCII replaced by '?', at most `max_bytes` long. Never holds CR/LF.
  std::string Summary(size_t max_bytes = 900) const;
};

enum class ReplyError : uint8_t {
  kNone,
  kLineTooLong,    // a line over kReplyLineBytesMax
  kTooManyLines,   // more than kReplyLinesMax lines
  kReplyTooLong,   // more than kReplyBytesMax bytes
  kBadCode,        // not three digits in range, or no ' '/'-' after them
  kCodeMismatch,   // a continuation line with a different code
  kNulByte,        // NUL anywhere
  kBareCr,         // CR not followed by LF
};
const char* ReplyErrorName(ReplyError error);

class ReplyParser {
 public:
  enum class Status : uint8_t {
    kNeedMore,  // every input byte was consumed; no complete reply yet
    kReply,     // a reply is complete: TakeReply()
    kError,     // protocol error: error() says which; stays failed
  };

  // Consumes input[*pos...] up to the end of the next complete reply (or all of it) and
  // advances *pos past what was consumed. Call again with the same input while it returns
  // kReply and *pos < input.size().
  Status Next(std::string_view input, size_t* pos);
  // The reply completed by the last Next() that returned kReply (moved out).
  Reply TakeReply();

  ReplyError error() const { return error_; }
  // Bytes of an incomplete reply held (STARTTLS: nothing may be buffered when the
  // handshake starts, or a man in the middle could inject a plaintext reply).
  size_t buffered_bytes() const { return reply_bytes_ + line_.size(); }

 private:
  Status Fail(ReplyError error);
  // Parses one complete line (terminator stripped); returns kReply on the last line.
  Status FinishLine();

  std::string line_;      // the partial line (at most kReplyLineBytesMax bytes)
  Reply reply_;           // the reply being assembled
  size_t reply_bytes_ = 0;
  bool reply_started_ = false;
  bool reply_ready_ = false;
  ReplyError error_ = ReplyError::kNone;
};

// The ESMTP extensions a server announced in its EHLO reply (RFC 5321 §4.1.1.1: first line
// the server's name, then one keyword with optional parameters per line, case-insensitive).
struct Extensions {
  bool pipelining = false;             // RFC 2920
  bool size = false;                   // RFC 1870
  uint64_t size_bytes_max = 0;         // "SIZE n"; 0: no fixed maximum announced
  bool eight_bit_mime = false;         // RFC 6152
  bool chunking = false;               // RFC 3030
  bool binary_mime = false;            // RFC 3030
  bool starttls = false;               // RFC 3207
  bool smtputf8 = false;               // RFC 6531
  bool enhanced_status_codes = false;  // RFC 2034
  bool dsn = false;                    // RFC 3461
  std::string server_name;             // first word of the first line, printable ASCII only
};

// Reads the extension keywords of a (positive) EHLO reply. Unknown keywords are ignored; a
// malformed SIZE argument leaves size_bytes_max at 0 (the server still limits; we will hear
// 552 if we exceed it), an oversized one saturates.
Extensions ParseEhloReply(const Reply& reply);

}  // namespace ringmail::delivery
