// Tests of listeners/esmtp/trace_fields: counting Received: fields in the header section,
// across the body's chunk boundaries, for mail-loop detection.
#include "listeners/esmtp/trace_fields.h"

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace ringmail::listeners::esmtp {
namespace {

core::Body BodyOf(const std::string& text) {
  core::Body body;
  body.Append(text);
  return body;
}

TEST(TraceFieldsTest, CountsOnlyHeaderFieldsNamedReceived) {
  const std::string text =
      "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      "RECEIVED: from c\r\n"
      " by d; continuation, not a field\r\n"
      "X-Received: not this\r\n"
      "received:from e\r\n"
      "Receive: nor this\r\n"
      "Subject: Received: nor this\r\n"
      "\r\n"
      "Received: in the body, not counted\r\n";
  EXPECT_EQ(CountTraceFields(BodyOf(text), 1000), 3u);
}

TEST(TraceFieldsTest, StopsAtTheLimitAndAtTheEndOfTheHeader) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "Received: from x\r\n";
  EXPECT_EQ(CountTraceFields(BodyOf(text + "\r\nbody\r\n"), 1000), 50u);
  EXPECT_EQ(CountTraceFields(BodyOf(text), 10), 10u);
  EXPECT_EQ(CountTraceFields(BodyOf("\r\nReceived: x\r\n"), 1000), 0u);  // no header at all
  EXPECT_EQ(CountTraceFields(BodyOf(""), 1000), 0u);
  EXPECT_EQ(CountTraceFields(BodyOf("Received: x\n\nReceived: y\n"), 1000), 1u);  // bare LF
  EXPECT_EQ(CountTraceFields(BodyOf("\rReceived: x\r\nRec\nReceived: y\r\n"), 1000), 1u);
}

// The body's chunks grow from 4 KiB: a header section of ~20 KiB puts field names and line
// ends across chunk boundaries at every offset the appends happen to leave.
TEST(TraceFieldsTest, FieldsSplitAcrossChunksAreCounted) {
  for (size_t pad = 0; pad < 12; ++pad) {
    core::Body body;
    body.Append(std::string(pad, 'x') + ": y\r\n");
    std::string field = "Received: from relay.example by mx.example; Mon, 1 Jan 2024\r\n";
    for (int i = 0; i < 300; ++i) {
      // Appended a few bytes at a time, as a trickling client's data is.
      for (size_t at = 0; at < field.size(); at += 7) body.Append(field.substr(at, 7));
    }
    body.Append("\r\nReceived: body\r\n");
    ASSERT_GT(body.chunk_count(), 2u);
    EXPECT_EQ(CountTraceFields(body, 1000), 300u) << pad;
  }
}

// Against a plain reference (split into lines, stop at the first empty one) on random
// bytes drawn from the field name, line ends and a filler, appended in random pieces.
size_t ReferenceCount(const std::string& text) {
  size_t count = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t lf = text.find('\n', start);
    if (lf == std::string::npos) lf = text.size();
    std::string line = text.substr(start, lf - start);
    if (lf == text.size()) {  // an unfinished last line still counts if it has the name
      line = text.substr(start);
    } else if (line.empty() || line == "\r") {
      break;
    }
    if (line.size() >= 9 && absl::AsciiStrToLower(line.substr(0, 9)) == "received:") ++count;
    start = lf + 1;
  }
  return count;
}

TEST(TraceFieldsTest, MatchesAReferenceOnRandomBytes) {
  std::mt19937 rng(20261123);
  const std::string name = "Received:";
  const std::string filler = "ab :\rRx";
  for (int iteration = 0; iteration < 400; ++iteration) {
    // Lines of up to ~12 KiB in all (chunks hold 4 KiB, then more): some begin with the
    // name in random case, some with a part of it; few are empty.
    std::string text;
    const size_t length = rng() % 12000;
    while (text.size() < length) {
      if (rng() % 300 == 0) {
        text += "\r\n";
        continue;
      }
      if (rng() % 3 != 0) {
        const size_t n = rng() % 3 == 0 ? rng() % name.size() : name.size();
        for (size_t k = 0; k < n; ++k) {
          text += rng() % 2 ? name[k] : absl::ascii_toupper(static_cast<unsigned char>(name[k]));
        }
      }
      for (size_t k = rng() % 60; k > 0; --k) text += filler[rng() % filler.size()];
      text += rng() % 10 == 0 ? "\n" : "\r\n";
    }
    core::Body body;
    for (size_t at = 0; at < text.size();) {
      const size_t n = std::min<size_t>(text.size() - at, 1 + rng() % 700);
      body.Append(std::string_view(text).substr(at, n));
      at += n;
    }
    ASSERT_EQ(CountTraceFields(body, 1000000), ReferenceCount(text)) << iteration;
  }
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
