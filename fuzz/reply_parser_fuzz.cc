// fuzz/reply_parser_fuzz.cc — libFuzzer target for the outbound SMTP client's byte layer
// (delivery/reply_parser.h): ReplyParser on a hostile server's byte stream, ParseEhloReply
// and Reply::Summary on whatever it accepts.
//
// The last 8 input bytes seed the slicing; the rest is what the "server" sends. Oracles:
// the replies and the final error do not depend on slicing; every reply respects the
// grammar's bounds (code 200..559, 1..kReplyLinesMax lines, no CR/LF/NUL in the text);
// writing a reply back to the wire and parsing it again gives the same reply; Summary() is
// printable, without CR/LF, within its limit; the EHLO server name is printable ASCII.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "delivery/reply_parser.h"
#include "fuzz/fuzz_util.h"

namespace ringmail::delivery {
namespace {

struct Parsed {
  std::vector<Reply> replies;
  ReplyError error = ReplyError::kNone;
};

bool SameReply(const Reply& a, const Reply& b) {
  return a.code == b.code && a.enhanced == b.enhanced && a.lines == b.lines;
}

Parsed Parse(const std::vector<std::string_view>& pieces) {
  ReplyParser parser;
  Parsed out;
  for (std::string_view piece : pieces) {
    size_t pos = 0;
    do {
      const size_t before = pos;
      const ReplyParser::Status status = parser.Next(piece, &pos);
      RM_CHECK(pos <= piece.size() &&
               (pos > before || piece.empty() || status == ReplyParser::Status::kError));
      RM_CHECK(parser.buffered_bytes() <= kReplyBytesMax + kReplyLineBytesMax);
      if (status == ReplyParser::Status::kReply) out.replies.push_back(parser.TakeReply());
      if (status == ReplyParser::Status::kError) {
        RM_CHECK(parser.error() != ReplyError::kNone && pos == piece.size());
        out.error = parser.error();
        return out;
      }
    } while (pos < piece.size());
  }
  return out;
}

std::string ToWire(const Reply& reply) {
  std::string wire;
  for (size_t i = 0; i < reply.lines.size(); ++i) {
    absl::StrAppend(&wire, reply.code, i + 1 < reply.lines.size() ? "-" : " ");
    if (i == 0 && reply.enhanced.present()) absl::StrAppend(&wire, reply.enhanced.ToString(), " ");
    // A line the parser took with a bare LF (which it accepts) may be kReplyLineBytesMax long
    // with its LF: CRLF would make the same line one byte too long, so it keeps the LF.
    const size_t line_start = wire.rfind('\n') == std::string::npos ? 0 : wire.rfind('\n') + 1;
    absl::StrAppend(&wire, reply.lines[i]);
    absl::StrAppend(&wire, wire.size() - line_start + 2 > kReplyLineBytesMax ? "\n" : "\r\n");
  }
  return wire;
}

void CheckReply(const Reply& reply) {
  RM_CHECK(reply.code >= 200 && reply.code <= 559) << reply.code;
  RM_CHECK(!reply.lines.empty() && reply.lines.size() <= kReplyLinesMax);
  for (const std::string& line : reply.lines) {
    RM_CHECK(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
  }
  if (reply.enhanced.present()) {
    RM_CHECK(reply.enhanced.klass == reply.code / 100);
    RM_CHECK(reply.enhanced.subject <= 999 && reply.enhanced.detail <= 999);
  }
  for (size_t limit : {size_t{0}, size_t{20}, size_t{900}}) {
    const std::string summary = reply.Summary(limit);
    RM_CHECK(summary.size() <= limit) << summary;
    for (char c : summary) RM_CHECK(c >= 0x20 && c < 0x7f) << "unprintable summary";
  }
  const Extensions ext = ParseEhloReply(reply);
  RM_CHECK(ext.server_name.size() <= 255);
  for (char c : ext.server_name) RM_CHECK(c > 0x20 && c < 0x7f) << "unprintable server name";
  if (!ext.size) RM_CHECK(ext.size_bytes_max == 0);
  const Parsed again = Parse({ToWire(reply)});
  RM_CHECK(again.error == ReplyError::kNone && again.replies.size() == 1)
      << ReplyErrorName(again.error) << " on " << ToWire(reply);
  RM_CHECK(SameReply(again.replies[0], reply)) << "wire round trip changed " << ToWire(reply);
}

}  // namespace
}  // namespace ringmail::delivery

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::delivery;  // NOLINT: the target's whole vocabulary
  uint64_t seed = 0;
  const size_t seed_bytes = size < 8 ? size : 8;
  std::memcpy(&seed, data + size - seed_bytes, seed_bytes);
  const std::string_view stream(reinterpret_cast<const char*>(data), size - seed_bytes);
  const Parsed whole = Parse({stream});
  ringmail::fuzz::Choices choices(seed);
  const Parsed sliced = Parse(ringmail::fuzz::SliceInput(stream, choices));
  RM_CHECK(whole.error == sliced.error && whole.replies.size() == sliced.replies.size())
      << "slicing changed the replies";
  for (size_t i = 0; i < whole.replies.size(); ++i) {
    RM_CHECK(SameReply(whole.replies[i], sliced.replies[i])) << "slicing changed reply " << i;
    CheckReply(whole.replies[i]);
  }
  return 0;
}
