// Tests of listeners/esmtp/trace_fields: counting Received: fields in the header section,
// across the body's chunk boundaries, for mail-loop detection.
#include "listeners/esmtp/trace_fields.h"

#include <string>

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

}  // namespace
}  // namespace ringmail::listeners::esmtp
