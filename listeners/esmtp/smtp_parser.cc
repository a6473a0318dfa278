#include "listeners/esmtp/smtp_parser.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ringmail::listeners::esmtp {
namespace {

// The first CR, LF or NUL in [p, end), or end. These three bytes are the only ones that can
// change the meaning of body bytes, so everything between two of them is copied as one run.
inline const char* FindSpecial(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i nul = _mm_setzero_si128();
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                               _mm_cmpeq_epi8(v, nul));
    unsigned bits = static_cast<unsigned>(_mm_movemask_epi8(hit));
    if (bits != 0) return p + __builtin_ctz(bits);
    p += 16;
  }
#else
  // Portable vector compares (NEON, etc.): find the first all-ones byte of the mask.
  using Bytes16 = unsigned char __attribute__((vector_size(16)));
  while (end - p >= 16) {
    Bytes16 v;
    std::memcpy(&v, p, 16);
    auto hit = (v == '\r') | (v == '\n') | (v == 0);
    uint64_t halves[2];
    std::memcpy(halves, &hit, 16);
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "mask extraction assumes LE");
    if (halves[0] != 0) return p + __builtin_ctzll(halves[0]) / 8;
    if (halves[1] != 0) return p + 8 + __builtin_ctzll(halves[1]) / 8;
    p += 16;
  }
#endif
  // Fewer than 16 bytes left: reading past `end` could cross into an unmapped page.
  for (; p < end; ++p) {
    if (*p == '\r' || *p == '\n' || *p == '\0') return p;
  }
  return end;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// CommandLineReader

CommandLineReader::Event CommandLineReader::Next(std::string_view input, size_t* pos) {
  RM_DCHECK(*pos <= input.size());
  const char* start = input.data() + *pos;
  const size_t available = input.size() - *pos;
  const char* lf = static_cast<const char*>(std::memchr(start, '\n', available));
  if (lf == nullptr) {
    *pos = input.size();
    // Even if the LF came next, a line this long would exceed 512 octets: stop keeping it.
    if (discarded_ > 0 || length_ + available > kCommandLineBytesMax - 1) {
      discarded_ += length_ + available;
      length_ = 0;
      if (discarded_ >= kRunawayLineBytes && !runaway_reported_) {
        runaway_reported_ = true;
        return {Kind::kRunaway, {}, false};
      }
      return {};
    }
    std::memcpy(buffer_ + length_, start, available);
    length_ += available;
    return {};
  }
  const size_t before_lf = static_cast<size_t>(lf - start);
  *pos += before_lf + 1;
  if (discarded_ > 0) {
    discarded_ = 0;
    runaway_reported_ = false;
    return {Kind::kTooLong, {}, false};
  }
  if (length_ + before_lf + 1 > kCommandLineBytesMax) {
    length_ = 0;
    return {Kind::kTooLong, {}, false};
  }
  std::string_view line;
  if (length_ == 0) {
    line = std::string_view(start, before_lf);  // zero copy: the whole line was in `input`
  } else {
    std::memcpy(buffer_ + length_, start, before_lf);
    line = std::string_view(buffer_, length_ + before_lf);
    length_ = 0;
  }
  bool bare_lf = true;
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
    bare_lf = false;
  }
  return {Kind::kLine, line, bare_lf};
}

void CommandLineReader::Reset() {
  length_ = 0;
  discarded_ = 0;
  runaway_reported_ = false;
}

// ---------------------------------------------------------------------------------------
// BodyReader

void BodyReader::Begin(core::Body* body, const BodyOptions& options) {
  RM_CHECK(body != nullptr);
  body_ = body;
  options_ = options;
  scan_ = Scan::kLineStart;
  lf_line_ = false;
  storing_ = true;
  too_big_ = false;
  nul_ = false;
  bare_lf_ = false;
  bare_cr_ = false;
  body_bytes_ = 0;
  chunk_remaining_ = 0;
}

void BodyReader::StopStoring() {
  if (!storing_) return;
  storing_ = false;
  // The message is refused whatever follows: give its memory back now rather than at the
  // end of data (a 20 MB body of which byte 100 was bad must not stay resident).
  body_->Clear();
}

void BodyReader::Emit(const char* from, const char* to) {
  const size_t n = static_cast<size_t>(to - from);
  if (n == 0) return;
  body_bytes_ += n;
  if (options_.size_bytes_max != 0 && body_bytes_ > options_.size_bytes_max) {
    too_big_ = true;
    StopStoring();
  }
  if (!storing_) return;
  body_->Append(std::string_view(from, n));
}

void BodyReader::EmitLiteral(std::string_view bytes) {
  Emit(bytes.data(), bytes.data() + bytes.size());
}

void BodyReader::NoteBareLf() {
  if (options_.bare_line_endings == BareLineEndings::kNormalize) {
    EmitLiteral("\r");  // the LF itself follows in the next run
    return;
  }
  bare_lf_ = true;
  StopStoring();
}

void BodyReader::NoteBareCr() {
  if (options_.bare_line_endings == BareLineEndings::kNormalize) {
    EmitLiteral("\n");  // the CR itself has been emitted already
    return;
  }
  bare_cr_ = true;
  StopStoring();
}

void BodyReader::NoteNul() {
  nul_ = true;
  StopStoring();
}

// Inside a line: skips ordinary bytes and ordinary CRLFs at vector speed and returns where
// the byte-level states below must take over (or `end`). *span is the first byte not yet
// emitted; it moves only when a byte must be dropped or replaced.
const char* BodyReader::ScanMid(const char* p, const char* end, const char** span) {
  for (;;) {
    const char* q = FindSpecial(p, end);
    if (q == end) return end;
    if (*q == '\r') {
      if (end - q >= 3 && q[1] == '\n' && q[2] != '.') {
        p = q + 2;  // the common case: CRLF and a next line that needs no unstuffing
        continue;
      }
      if (end - q >= 2 && q[1] == '\n') {
        scan_ = Scan::kLineStart;
        lf_line_ = false;
        return q + 2;
      }
      scan_ = Scan::kCr;  // a CR at the end of input, or a bare CR; decided by kCr
      return q + 1;
    }
    if (*q == '\n') {  // an LF without CR before it (a CRLF never reaches here)
      Emit(*span, q);
      *span = q;
      NoteBareLf();
      if (options_.bare_line_endings == BareLineEndings::kNormalize) {
        scan_ = Scan::kLineStart;  // it ends a line: a leading dot next is stuffing
        lf_line_ = true;
      }
      return q + 1;
    }
    NoteNul();
    return q + 1;
  }
}

BodyReader::Result BodyReader::FeedData(std::string_view input) {
  RM_DCHECK(body_ != nullptr);
  const char* p = input.data();
  const char* const end = p + input.size();
  const char* span = p;
  while (p < end) {
    switch (scan_) {
      case Scan::kMid:
        p = ScanMid(p, end, &span);
        break;
      case Scan::kCr:
        if (*p == '\n') {
          ++p;
          scan_ = Scan::kLineStart;
          lf_line_ = false;
        } else {
          Emit(span, p);  // through the CR, if it is in this input
          span = p;
          NoteBareCr();
          scan_ = Scan::kMid;
        }
        break;
      case Scan::kLineStart:
        if (*p == '.') {
          Emit(span, p);
          span = ++p;  // drop the dot: stuffing, or the start of the terminator
          scan_ = Scan::kDot;
        } else {
          scan_ = Scan::kMid;
        }
        break;
      case Scan::kDot:
        if (*p == '\r') {
          span = ++p;  // withhold the CR until we know whether LF follows
          scan_ = Scan::kDotCr;
        } else {
          if (lf_line_ && *p == '\n') EmitLiteral(".");  // a lone dot after a bare LF stays
          scan_ = Scan::kMid;  // the dot was stuffing; this byte is an ordinary one
        }
        break;
      case Scan::kDotCr:
        if (*p == '\n' && lf_line_) {
          // "<LF>.<CRLF>": not the end of the data (smuggling); the lone dot is content.
          EmitLiteral(".\r");
          span = p++;
          scan_ = Scan::kLineStart;
          lf_line_ = false;
          break;
        }
        if (*p == '\n') {
          RM_DCHECK(span == p);
          scan_ = Scan::kLineStart;
          return {static_cast<size_t>(p + 1 - input.data()), true};
        }
        EmitLiteral("\r");  // ".\r" + not LF: the dot was stuffing and the CR is bare
        NoteBareCr();
        scan_ = Scan::kMid;
        break;
    }
  }
  Emit(span, end);
  return {input.size(), false};
}

void BodyReader::BeginChunk(uint64_t size_bytes) {
  RM_DCHECK(body_ != nullptr);
  RM_DCHECK(chunk_remaining_ == 0);
  chunk_remaining_ = size_bytes;
}

// BDAT bytes: only the CR/LF/NUL checks, state carried across calls and chunks.
void BodyReader::CheckRaw(const char* p, const char* end) {
  const char* span = p;
  if (scan_ != Scan::kCr) scan_ = Scan::kMid;
  while (p < end) {
    if (scan_ == Scan::kCr) {
      scan_ = Scan::kMid;
      if (*p == '\n') {
        ++p;
        continue;
      }
      Emit(span, p);
      span = p;
      NoteBareCr();
      continue;
    }
    const char* q = FindSpecial(p, end);
    if (q == end) break;
    if (*q == '\r') {
      if (end - q >= 2 && q[1] == '\n') {
        p = q + 2;
      } else {
        p = q + 1;
        scan_ = Scan::kCr;
      }
    } else if (*q == '\n') {
      Emit(span, q);
      span = q;
      NoteBareLf();
      p = q + 1;
    } else {
      NoteNul();
      p = q + 1;
    }
  }
  Emit(span, end);
}

BodyReader::Result BodyReader::FeedChunk(std::string_view input) {
  RM_DCHECK(body_ != nullptr);
  const size_t n =
      static_cast<size_t>(std::min<uint64_t>(chunk_remaining_, input.size()));
  if (options_.binary) {
    Emit(input.data(), input.data() + n);
  } else {
    CheckRaw(input.data(), input.data() + n);
  }
  chunk_remaining_ -= n;
  return {n, chunk_remaining_ == 0};
}

void BodyReader::FinishChunks() {
  RM_DCHECK(chunk_remaining_ == 0);
  if (!options_.binary && scan_ == Scan::kCr) NoteBareCr();  // a CR was the last octet
  scan_ = Scan::kMid;
}

BodyDefect BodyReader::defect() const {
  if (too_big_) return BodyDefect::kTooBig;
  if (nul_) return BodyDefect::kNul;
  if (bare_lf_) return BodyDefect::kBareLf;
  if (bare_cr_) return BodyDefect::kBareCr;
  return BodyDefect::kNone;
}

}  // namespace ringmail::listeners::esmtp
