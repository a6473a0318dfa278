// fuzz/smtp_parser_fuzz.cc — libFuzzer target for the ESMTP byte layer
// (listeners/esmtp/smtp_parser.h): CommandLineReader, the DATA scanner and BDAT chunks.
//
// Input: one mode byte, a 64-bit slicing seed, a 16-bit size cap (all taken from the END of
// the input by FuzzedDataProvider, so a seed file is mostly plain protocol text), and the
// payload. Oracles, beyond "no crash, no sanitizer report":
//   * the events and bodies do not depend on how the payload is sliced (one feed vs. many);
//   * they equal a slow byte-by-byte reference written from the header's contract;
//   * bounds: a command line never exceeds 512 octets, the reader buffers at most that much.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "base/check.h"
#include "core/message.h"
#include "fuzz/fuzz_util.h"
#include "listeners/esmtp/smtp_parser.h"

namespace ringmail::listeners::esmtp {
namespace {

using fuzz::Choices;
using fuzz::SliceInput;

// ---- command lines ----------------------------------------------------------------------

// "L:<line>" or "LONG" per line; runaway reports depend on slicing by design (a line with
// no LF yet is cut off once 64 KiB have arrived) so they are left out of the comparison.
std::vector<std::string> ReadLines(const std::vector<std::string_view>& pieces) {
  CommandLineReader reader;
  std::vector<std::string> events;
  for (std::string_view piece : pieces) {
    size_t pos = 0;
    do {
      const size_t before = pos;
      const CommandLineReader::Event e = reader.Next(piece, &pos);
      RM_CHECK(pos <= piece.size() && (pos > before || piece.empty()));
      RM_CHECK(reader.buffered_bytes() <= kCommandLineBytesMax);
      if (e.kind == CommandLineReader::Kind::kLine) {
        RM_CHECK(e.line.size() < kCommandLineBytesMax);
        RM_CHECK(e.line.find('\n') == std::string_view::npos);
        events.push_back("L:" + std::string(e.line) + (e.bare_lf ? "|lf" : "|crlf"));
      } else if (e.kind == CommandLineReader::Kind::kTooLong) {
        events.push_back("LONG");
      }
    } while (pos < piece.size());
  }
  return events;
}

std::vector<std::string> ReferenceLines(std::string_view input) {
  std::vector<std::string> events;
  size_t start = 0;
  for (size_t lf = input.find('\n'); lf != std::string_view::npos; lf = input.find('\n', start)) {
    std::string_view line = input.substr(start, lf - start);
    if (lf + 1 - start > kCommandLineBytesMax) {
      events.push_back("LONG");
    } else {
      const bool cr = !line.empty() && line.back() == '\r';
      if (cr) line.remove_suffix(1);
      events.push_back("L:" + std::string(line) + (cr ? "|crlf" : "|lf"));
    }
    start = lf + 1;
  }
  return events;
}

void FuzzCommandLines(std::string_view payload, Choices& choices) {
  const std::vector<std::string> whole = ReadLines({payload});
  RM_CHECK(whole == ReferenceLines(payload)) << "command reader differs from the reference";
  RM_CHECK(ReadLines(SliceInput(payload, choices)) == whole) << "slicing changed the lines";
}

// ---- bodies -------------------------------------------------------------------------------

struct BodyOutcome {
  bool done = false;
  size_t consumed = 0;  // of the whole payload
  std::string body;
  BodyDefect defect = BodyDefect::kNone;
  uint64_t body_bytes = 0;

  bool operator==(const BodyOutcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const BodyOutcome& r) {
  return os << "{done=" << r.done << " consumed=" << r.consumed
            << " defect=" << static_cast<int>(r.defect) << " body_bytes=" << r.body_bytes
            << " body=" << r.body.size() << " bytes}";
}

// What a body becomes by the rules of smtp_parser.h, one byte at a time: `data` selects
// DATA (dot-unstuffing, <CRLF>.<CRLF> ends it) or BDAT (verbatim). For DATA a CR at the very
// end of the input cannot be settled: the reference stops there (done = false).
BodyOutcome ReferenceBody(std::string_view in, const BodyOptions& options, bool data) {
  const bool normalize = options.bare_line_endings == BareLineEndings::kNormalize;
  const bool check = !options.binary;
  std::string body;
  bool nul = false, bare_lf = false, bare_cr = false, line_start = true;
  bool lf_line = false;  // normalize: this line was started by a bare LF
  BodyOutcome r;
  size_t i = 0;
  while (i < in.size()) {
    if (data && line_start && in[i] == '.') {
      if (in.substr(i, 3) == ".\r\n" && !lf_line) {
        r.done = true;
        r.consumed = i + 3;
        break;
      }
      // After a bare LF a lone dot is content (never the end); other dots are stuffing.
      if (lf_line && (in.substr(i, 3) == ".\r\n" || in.substr(i, 2) == ".\n")) body += '.';
      if (lf_line && i + 1 >= in.size()) break;  // undecidable without more input
      ++i;
      line_start = false;
      continue;
    }
    line_start = false;
    const char c = in[i];
    if (check && c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') {
      body += "\r\n";
      i += 2;
      line_start = true;
      lf_line = false;
      continue;
    }
    if (check && c == '\r' && data && i + 1 >= in.size()) break;
    if (check && (c == '\r' || c == '\n')) {
      body += normalize ? "\r\n" : std::string(1, c);
      (c == '\r' ? bare_cr : bare_lf) |= !normalize;
      if (c == '\n' && normalize && data) line_start = lf_line = true;
    } else {
      nul |= check && c == '\0';
      body += c;
    }
    ++i;
  }
  if (!data) {  // BDAT: every chunk is complete by construction
    r.consumed = in.size();
    r.done = true;
  }
  const bool too_big = options.size_bytes_max != 0 && body.size() > options.size_bytes_max;
  r.defect = too_big   ? BodyDefect::kTooBig
             : nul     ? BodyDefect::kNul
             : bare_lf ? BodyDefect::kBareLf
             : bare_cr ? BodyDefect::kBareCr
                       : BodyDefect::kNone;
  r.body_bytes = body.size();
  r.body = r.defect == BodyDefect::kNone ? body : "";
  return r;
}

BodyOutcome ScanData(const std::vector<std::string_view>& pieces, const BodyOptions& options) {
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, options);
  BodyOutcome r;
  for (std::string_view piece : pieces) {
    const BodyReader::Result step = reader.FeedData(piece);
    RM_CHECK(step.consumed <= piece.size());
    r.consumed += step.consumed;
    if (step.done) {
      r.done = true;
      break;
    }
    RM_CHECK(step.consumed == piece.size()) << "DATA stopped early without an end";
  }
  r.body = body.ToString();
  r.defect = reader.defect();
  r.body_bytes = reader.body_bytes();
  RM_CHECK(reader.storing() == (r.defect == BodyDefect::kNone)) << "stores a refused body";
  RM_CHECK(reader.storing() || r.body.empty()) << "a refused body keeps its bytes";
  if (options.size_bytes_max != 0) RM_CHECK(body.size() <= options.size_bytes_max);
  return r;
}

// BDAT: the payload is the concatenation of chunks whose sizes come from `sizes`; the last
// chunk takes whatever is left. Returns done when every chunk was complete.
BodyOutcome ScanChunks(std::vector<std::string_view> pieces, const std::vector<size_t>& sizes,
                       const BodyOptions& options) {
  pieces.push_back({});  // zero-size chunks at the very end still need one (empty) feed
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, options);
  BodyOutcome r;
  size_t chunk = 0;
  reader.BeginChunk(sizes[0]);
  for (std::string_view piece : pieces) {
    while (true) {
      const BodyReader::Result step = reader.FeedChunk(piece);
      RM_CHECK(step.consumed <= piece.size());
      r.consumed += step.consumed;
      piece.remove_prefix(step.consumed);
      if (!step.done) break;
      if (++chunk == sizes.size()) break;
      reader.BeginChunk(sizes[chunk]);
    }
    if (chunk == sizes.size()) break;
  }
  r.done = chunk == sizes.size();
  if (r.done) reader.FinishChunks();
  r.body = body.ToString();
  r.defect = reader.defect();
  r.body_bytes = reader.body_bytes();
  if (options.size_bytes_max != 0) RM_CHECK(body.size() <= options.size_bytes_max);
  return r;
}

void FuzzData(std::string_view payload, const BodyOptions& options, Choices& choices) {
  const BodyOutcome whole = ScanData({payload}, options);
  const BodyOutcome sliced = ScanData(SliceInput(payload, choices), options);
  RM_CHECK(whole == sliced) << "slicing changed the DATA scan: " << whole << " vs " << sliced;
  const BodyOutcome expected = ReferenceBody(payload, options, /*data=*/true);
  RM_CHECK(whole.done == expected.done) << "end of data differs from the reference";
  if (expected.done) {
    RM_CHECK(whole == expected) << "DATA scan differs from the reference: " << whole << " vs "
                                << expected;
  }
}

void FuzzChunks(std::string_view payload, const BodyOptions& options, Choices& choices) {
  std::vector<size_t> sizes;
  size_t left = payload.size();
  while (left > 0 && sizes.size() < 16) {
    const size_t n = choices.Below(left + 1);
    sizes.push_back(n);
    left -= n;
  }
  sizes.push_back(left);
  const BodyOutcome whole = ScanChunks({payload}, sizes, options);
  const BodyOutcome sliced = ScanChunks(SliceInput(payload, choices), sizes, options);
  RM_CHECK(whole == sliced) << "slicing changed the BDAT scan: " << whole << " vs " << sliced;
  RM_CHECK(whole.done) << "every chunk size adds up to the payload";
  const BodyOutcome expected = ReferenceBody(payload, options, /*data=*/false);
  RM_CHECK(whole == expected) << "BDAT scan differs from the reference: " << whole << " vs "
                              << expected;
}

}  // namespace
}  // namespace ringmail::listeners::esmtp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::listeners::esmtp;  // NOLINT: the target's whole vocabulary
  FuzzedDataProvider provider(data, size);
  const uint8_t mode = provider.ConsumeIntegral<uint8_t>();
  ringmail::fuzz::Choices choices(provider.ConsumeIntegral<uint64_t>());
  const uint16_t cap = provider.ConsumeIntegral<uint16_t>();
  const std::string payload = provider.ConsumeRemainingBytesAsString();
  BodyOptions options;
  options.bare_line_endings =
      (mode & 0x4) != 0 ? BareLineEndings::kNormalize : BareLineEndings::kReject;
  options.size_bytes_max = (mode & 0x8) != 0 ? cap : 0;
  switch (mode % 4) {
    case 0:
      FuzzCommandLines(payload, choices);
      break;
    case 1:
      FuzzData(payload, options, choices);
      break;
    default:
      options.binary = (mode & 0x10) != 0;
      FuzzChunks(payload, options, choices);
      break;
  }
  return 0;
}
