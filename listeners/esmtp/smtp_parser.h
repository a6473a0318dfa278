// listeners/esmtp/smtp_parser.h — the pure byte layer of the ESMTP server: command lines,
// DATA bodies and BDAT chunks. No sockets, no clock, no threads.
//
// Used by SessionMachine (session_machine.h), one CommandLineReader and one BodyReader per
// session, on the session's loop thread. Bytes arrive in arbitrary slices; every class here
// keeps exactly the state needed to resume at any split point and buffers at most a bounded
// amount (a partial command line, <= kCommandLineBytesMax bytes). Body bytes are written
// straight into the core::Body the caller owns; nothing else is copied.
//
// Command lines (RFC 5321 §2.3.8, §4.5.3.1.4): a line ends at LF. A CR right before the LF
// is stripped. A line ending in a bare LF is accepted, as Postfix does: many scripts send
// it, and it cannot smuggle anything because the end of DATA below is strict. Any other CR,
// or a NUL, stays in the line for the session to refuse. A line longer than 512 octets
// (terminator included) is discarded without being buffered and reported as kTooLong when
// its LF arrives; one still without LF after kRunawayLineBytes is reported as kRunaway at
// once, so a client streaming megabytes without a newline is cut off with memory flat.
//
// DATA (RFC 5321 §4.1.1.4, §4.5.2): the body ends only at <CRLF>.<CRLF>, where the first
// CRLF may be the one ending the DATA command. Bare LF and bare CR never end it (SMTP
// smuggling: <LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF> are all body). A line that
// begins with '.' after a CRLF loses that '.' (dot-unstuffing); only a real CRLF starts a
// line, so a '.' after a bare LF is kept. Bare LF / bare CR are defects: kReject records
// them (the session answers 554 5.6.0 after the end of data); kNormalize stores them as
// CRLF. NUL is always a defect. The scan looks for CR/LF/NUL 16 bytes at a time with
// portable vector compares, never byte by byte, and copies runs between events with one
// memcpy each. Once the body exceeds its cap, or a rejecting defect is seen, the body is
// cleared and nothing more is stored, but the scan goes on to find the end.
//
// BDAT (RFC 3030): exactly N octets, no dot-unstuffing, no terminator. Unless the
// transaction is BODY=BINARYMIME the same defect checks apply, with the state carried
// across chunks (a CRLF may straddle two chunks); FinishChunks() settles a CR left at the
// very end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/message.h"

namespace ringmail::listeners::esmtp {

// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including its CRLF.
inline constexpr size_t kCommandLineBytesMax = 512;
// A line with no LF after this many octets is hopeless: report it without waiting for LF.
inline constexpr size_t kRunawayLineBytes = 64 * 1024;
static_assert(kRunawayLineBytes > kCommandLineBytesMax);

class CommandLineReader {
 public:
  enum class Kind : uint8_t {
    kNeedMore,  // every input byte was consumed (buffered or discarded); feed more
    kLine,      // `line` holds one command, terminator stripped
    kTooLong,   // an over-long line ended (its bytes were discarded): answer 500 5.5.6
    kRunaway,   // kRunawayLineBytes without LF: cut the client off
  };
  struct Event {
    Kind kind = Kind::kNeedMore;
    // Valid until the next call on this reader or until `input` dies, whichever is first:
    // it points into `input` when the whole line was there, else into the reader's buffer.
    std::string_view line;
    bool bare_lf = false;  // the line ended in LF without CR
  };

  // Consumes input[*pos...] up to and including the next complete line (or all of it) and
  // advances *pos past what was consumed.
  Event Next(std::string_view input, size_t* pos);

  // Drops a partial line (STARTTLS: plaintext sent before the handshake must not survive).
  void Reset();
  size_t buffered_bytes() const { return length_; }

 private:
  char buffer_[kCommandLineBytesMax];
  size_t length_ = 0;       // bytes of a partial line held in buffer_
  size_t discarded_ = 0;    // > 0 while skipping an over-long line
  bool runaway_reported_ = false;
};

enum class BareLineEndings : uint8_t {
  kReject,     // default: the message is refused with 554 5.6.0
  kNormalize,  // bare CR or bare LF is stored as CRLF
};

// What was wrong with a body, worst first; the session turns it into one reply.
enum class BodyDefect : uint8_t { kNone, kTooBig, kNul, kBareLf, kBareCr };

struct BodyOptions {
  uint64_t size_bytes_max = 0;  // stored octets allowed; 0 = no limit
  BareLineEndings bare_line_endings = BareLineEndings::kReject;
  bool binary = false;  // BODY=BINARYMIME (BDAT only): no CR/LF/NUL checks at all
};

class BodyReader {
 public:
  struct Result {
    size_t consumed = 0;  // input bytes used; the rest belongs to the command stream
    bool done = false;    // end of data seen (DATA) / chunk complete (BDAT)
  };

  // Starts a message body written into *body (owned by the caller, outliving the reads).
  void Begin(core::Body* body, const BodyOptions& options);

  // DATA: scans for <CRLF>.<CRLF>; the CRLF before the '.' belongs to the body.
  Result FeedData(std::string_view input);

  // BDAT: BeginChunk(n) then FeedChunk until done; FinishChunks() after BDAT ... LAST.
  void BeginChunk(uint64_t size_bytes);
  Result FeedChunk(std::string_view input);
  void FinishChunks();
  uint64_t chunk_remaining() const { return chunk_remaining_; }

  BodyDefect defect() const;
  // Octets of body seen (after unstuffing / normalising), stored or not.
  uint64_t body_bytes() const { return body_bytes_; }
  bool storing() const { return storing_; }

 private:
  enum class Scan : uint8_t {
    kLineStart,  // just after CRLF (or at the start of DATA)
    kMid,        // inside a line
    kCr,         // the last byte was a CR (already stored) whose LF is not yet seen
    kDot,        // at line start a '.' was seen (and dropped)
    kDotCr,      // ".\r" at line start (the CR not stored yet): LF next ends the data
  };

  void Emit(const char* from, const char* to);
  void EmitLiteral(std::string_view bytes);
  void NoteBareLf();
  void NoteBareCr();
  void NoteNul();
  void StopStoring();
  const char* ScanMid(const char* p, const char* end, const char** span);
  void CheckRaw(const char* p, const char* end);

  core::Body* body_ = nullptr;
  BodyOptions options_;
  Scan scan_ = Scan::kLineStart;
  // bare_lf = "normalize": the line at hand was started by a bare LF. Its leading dot is
  // unstuffed as after CRLF (a client that ends lines with LF stuffs them too), but it never
  // ends the data (only <CRLF>.<CRLF> does: SMTP smuggling), and a lone "." on it is kept.
  bool lf_line_ = false;
  bool storing_ = true;
  bool too_big_ = false;
  bool nul_ = false;
  bool bare_lf_ = false;
  bool bare_cr_ = false;
  uint64_t body_bytes_ = 0;
  uint64_t chunk_remaining_ = 0;
};

}  // namespace ringmail::listeners::esmtp
