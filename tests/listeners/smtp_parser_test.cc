// Tests of the pure byte layer: command lines and DATA / BDAT bodies, at every split point.
#include "listeners/esmtp/smtp_parser.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::listeners::esmtp {
namespace {

using Kind = CommandLineReader::Kind;

// Feeds `input` in slices of the given sizes (the last size repeats) and records events:
// "L:<line>" (with "|lf" for a bare LF), "LONG", "RUNAWAY".
std::vector<std::string> ReadLines(std::string_view input, std::vector<size_t> slices) {
  CommandLineReader reader;
  std::vector<std::string> events;
  size_t offset = 0;
  size_t slice_index = 0;
  while (offset < input.size()) {
    const size_t slice = slices[std::min(slice_index, slices.size() - 1)];
    const size_t n = std::min(slice, input.size() - offset);
    ++slice_index;
    std::string_view piece = input.substr(offset, n);
    offset += n;
    size_t pos = 0;
    while (pos < piece.size()) {
      CommandLineReader::Event e = reader.Next(piece, &pos);
      switch (e.kind) {
        case Kind::kNeedMore:
          EXPECT_EQ(pos, piece.size());
          break;
        case Kind::kLine:
          events.push_back("L:" + std::string(e.line) + (e.bare_lf ? "|lf" : ""));
          break;
        case Kind::kTooLong:
          events.push_back("LONG");
          break;
        case Kind::kRunaway:
          events.push_back("RUNAWAY");
          break;
      }
      EXPECT_LE(reader.buffered_bytes(), kCommandLineBytesMax);
    }
  }
  return events;
}

TEST(CommandLineReaderTest, SplitsCrlfLinesAndAcceptsBareLf) {
  const std::string input = "EHLO a\r\nMAIL FROM:<x@y>\r\nNOOP\nQUIT\r\n";
  const std::vector<std::string> expected = {"L:EHLO a", "L:MAIL FROM:<x@y>", "L:NOOP|lf",
                                             "L:QUIT"};
  EXPECT_EQ(ReadLines(input, {input.size()}), expected);
  for (size_t slice = 1; slice < input.size(); ++slice) {
    EXPECT_EQ(ReadLines(input, {slice}), expected) << "slice " << slice;
  }
}

TEST(CommandLineReaderTest, KeepsStrayCrAndNulForTheSessionToRefuse) {
  const std::string input = std::string("NO\rOP\r\nA\0B\r\n", 13);
  EXPECT_EQ(ReadLines(input, {3}),
            (std::vector<std::string>{"L:NO\rOP", std::string("L:A\0B", 5)}));
}

TEST(CommandLineReaderTest, LineOf512OctetsIsAcceptedAnd513IsTooLong) {
  const std::string ok = std::string(510, 'a') + "\r\n";  // 512 with CRLF
  const std::string long_line = std::string(511, 'b') + "\r\n";
  for (size_t slice : {1u, 7u, 100u, 600u}) {
    EXPECT_EQ(ReadLines(ok + long_line + "NOOP\r\n", {slice}),
              (std::vector<std::string>{"L:" + std::string(510, 'a'), "LONG", "L:NOOP"}))
        << "slice " << slice;
  }
}

TEST(CommandLineReaderTest, OverLongLineIsDiscardedUntilLf) {
  const std::string input = std::string(5000, 'x') + "\r\nQUIT\r\n";
  EXPECT_EQ(ReadLines(input, {64}), (std::vector<std::string>{"LONG", "L:QUIT"}));
}

TEST(CommandLineReaderTest, HundredMegabytesWithoutNewlineStayFlat) {
  CommandLineReader reader;
  const std::string slice(64 * 1024, 'z');
  int runaways = 0;
  size_t max_buffered = 0;
  for (size_t sent = 0; sent < 100u * 1024 * 1024; sent += slice.size()) {
    size_t pos = 0;
    CommandLineReader::Event e = reader.Next(slice, &pos);
    ASSERT_EQ(pos, slice.size());
    ASSERT_NE(e.kind, Kind::kLine);
    if (e.kind == Kind::kRunaway) ++runaways;
    max_buffered = std::max(max_buffered, reader.buffered_bytes());
  }
  EXPECT_EQ(runaways, 1);  // reported once, as soon as kRunawayLineBytes is passed
  EXPECT_LE(max_buffered, kCommandLineBytesMax);
  size_t pos = 0;
  EXPECT_EQ(reader.Next("\r\n", &pos).kind, Kind::kTooLong);
}

// ---------------------------------------------------------------------------------------
// DATA

struct DataOutcome {
  bool done = false;
  size_t consumed = 0;  // bytes of the whole input used by the body (incl. terminator)
  std::string body;
  BodyDefect defect = BodyDefect::kNone;
};

DataOutcome ScanData(std::string_view input, const std::vector<size_t>& cuts,
                     BodyOptions options = {}) {
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, options);
  DataOutcome out;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    if (end < start) continue;
    BodyReader::Result r = reader.FeedData(input.substr(start, end - start));
    out.consumed = start + r.consumed;
    if (r.done) {
      out.done = true;
      break;
    }
    EXPECT_EQ(r.consumed, end - start);
    start = end;
  }
  out.body = body.ToString();
  out.defect = reader.defect();
  return out;
}

TEST(BodyReaderDataTest, EndsAtCrlfDotCrlfAndUnstuffsDots) {
  const std::string input = "Subject: x\r\n\r\n..leading dot\r\n.\r\nMAIL FROM:<a@b>\r\n";
  DataOutcome out = ScanData(input, {});
  ASSERT_TRUE(out.done);
  EXPECT_EQ(out.body, "Subject: x\r\n\r\n.leading dot\r\n");
  EXPECT_EQ(input.substr(out.consumed), "MAIL FROM:<a@b>\r\n");
  EXPECT_EQ(out.defect, BodyDefect::kNone);
}

TEST(BodyReaderDataTest, EmptyBodyRightAfterData) {
  DataOutcome out = ScanData(".\r\nQUIT\r\n", {});
  ASSERT_TRUE(out.done);
  EXPECT_EQ(out.body, "");
  EXPECT_EQ(out.consumed, 3u);
}

TEST(BodyReaderDataTest, EveryTwoAndThreeWaySplitGivesTheSameResult) {
  const std::string input =
      "From: a\r\n\r\n.\r\r\n..x\r\n...\r\nline\r\n.a\r\n\r\n.\r\nRSET\r\n";
  const DataOutcome whole = ScanData(input, {});
  ASSERT_TRUE(whole.done);
  for (size_t i = 0; i <= input.size(); ++i) {
    DataOutcome split = ScanData(input, {i});
    ASSERT_TRUE(split.done) << i;
    EXPECT_EQ(split.body, whole.body) << "split at " << i;
    EXPECT_EQ(split.consumed, whole.consumed) << i;
    EXPECT_EQ(split.defect, whole.defect) << i;
    for (size_t j = i; j <= input.size(); ++j) {
      DataOutcome three = ScanData(input, {i, j});
      ASSERT_EQ(three.body, whole.body) << i << "," << j;
      ASSERT_EQ(three.consumed, whole.consumed) << i << "," << j;
    }
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < input.size(); ++i) every_byte.push_back(i);
  DataOutcome bytewise = ScanData(input, every_byte);
  EXPECT_EQ(bytewise.body, whole.body);
  EXPECT_EQ(bytewise.consumed, whole.consumed);
}

TEST(BodyReaderDataTest, TerminatorSplitAtEveryPointInLongBody) {
  // Long runs so that the vector path (16 bytes at a time) is crossed by every cut.
  std::string input;
  for (int i = 0; i < 20; ++i) input += std::string(37 + i, 'a' + i % 26) + "\r\n";
  input += ".\r\n";
  const size_t terminator_end = input.size();
  input += "QUIT\r\n";
  for (size_t i = 0; i <= input.size(); ++i) {
    DataOutcome out = ScanData(input, {i});
    ASSERT_TRUE(out.done) << i;
    ASSERT_EQ(out.consumed, terminator_end) << i;
    ASSERT_EQ(out.body.size(), terminator_end - 3) << i;
  }
}

struct SmugglingCase {
  const char* name;
  const char* sequence;
  BodyDefect defect;
};

TEST(BodyReaderDataTest, SmugglingSequencesNeverEndData) {
  const SmugglingCase cases[] = {
      {"lf-dot-lf", "\n.\n", BodyDefect::kBareLf},
      {"cr-dot-cr", "\r.\r", BodyDefect::kBareCr},
      {"lf-dot-crlf", "\n.\r\n", BodyDefect::kBareLf},
      {"crlf-dot-lf", "\r\n.\n", BodyDefect::kBareLf},
      {"cr-dot-crlf", "\r.\r\n", BodyDefect::kBareCr},
      {"crlf-dot-cr", "\r\n.\rX", BodyDefect::kBareCr},
  };
  for (const SmugglingCase& c : cases) {
    const std::string smuggled = "MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n";
    const std::string input = std::string("hello") + c.sequence + smuggled + "\r\n.\r\nNEXT";
    for (size_t i = 0; i <= input.size(); ++i) {
      DataOutcome out = ScanData(input, {i});
      ASSERT_TRUE(out.done) << c.name << " split " << i;
      // The data ends only at the real terminator, after the smuggled commands.
      ASSERT_EQ(input.substr(out.consumed), "NEXT") << c.name << " split " << i;
      ASSERT_EQ(out.defect, c.defect) << c.name;
      ASSERT_EQ(out.body, "") << "a refused body is not kept: " << c.name;
    }
  }
}

TEST(BodyReaderDataTest, NormalizeStoresBareLineEndsAsCrlf) {
  BodyOptions options;
  options.bare_line_endings = BareLineEndings::kNormalize;
  const std::string input = "a\nb\rc\r\n.\nd\r\r\n\n.\n\r\n.\r\n";
  for (size_t i = 0; i <= input.size(); ++i) {
    DataOutcome out = ScanData(input, {i}, options);
    ASSERT_TRUE(out.done) << i;
    EXPECT_EQ(out.defect, BodyDefect::kNone);
    // ".\n" after CRLF: the dot is unstuffed, the LF normalised. "\n.\n" keeps its dot (a
    // lone dot after a bare LF is content) and is stored as CRLF . CRLF inside the body.
    ASSERT_EQ(out.body, "a\r\nb\r\nc\r\n\r\nd\r\n\r\n\r\n.\r\n\r\n") << i;
  }
}

// A bare LF ends a line in normalize mode, so the next line's leading dot is stuffing as
// after CRLF ("..x" is ".x", ".x" is "x": a client that ends lines with LF stuffs them
// too), but "<LF>.<CRLF>" and "<LF>.<LF>" never end the data and their dot is kept.
TEST(BodyReaderDataTest, NormalizeUnstuffsLinesAfterABareLf) {
  BodyOptions options;
  options.bare_line_endings = BareLineEndings::kNormalize;
  const std::string input = "a\n..b\n.c\n.\r\nQUIT\r\n.\nd\r\n..e\r\n.\r\n";
  for (size_t i = 0; i <= input.size(); ++i) {
    DataOutcome out = ScanData(input, {i}, options);
    ASSERT_TRUE(out.done) << i;
    EXPECT_EQ(out.consumed, input.size()) << i;
    EXPECT_EQ(out.defect, BodyDefect::kNone);
    ASSERT_EQ(out.body, "a\r\n.b\r\nc\r\n.\r\nQUIT\r\n\r\nd\r\n.e\r\n") << i;
  }
}

TEST(BodyReaderDataTest, NulIsAlwaysADefect) {
  BodyOptions options;
  options.bare_line_endings = BareLineEndings::kNormalize;
  const std::string input = std::string("ab\0cd\r\n.\r\n", 10);
  DataOutcome out = ScanData(input, {}, options);
  ASSERT_TRUE(out.done);
  EXPECT_EQ(out.defect, BodyDefect::kNul);
  EXPECT_EQ(out.body, "");
}

TEST(BodyReaderDataTest, SizeCapStopsStoringButFindsTheEnd) {
  BodyOptions options;
  options.size_bytes_max = 1000;
  std::string input;
  for (int i = 0; i < 100; ++i) input += std::string(98, 'x') + "\r\n";  // 10000 bytes
  input += ".\r\nQUIT\r\n";
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, options);
  size_t offset = 0;
  BodyReader::Result r;
  while (true) {
    r = reader.FeedData(std::string_view(input).substr(offset, 333));
    offset += r.consumed;
    EXPECT_LE(body.size(), 1000u);  // never more than the cap resident
    if (r.done) break;
  }
  EXPECT_EQ(input.substr(offset), "QUIT\r\n");
  EXPECT_EQ(reader.defect(), BodyDefect::kTooBig);
  EXPECT_EQ(reader.body_bytes(), 10000u);
  EXPECT_EQ(body.size(), 0u);
}

TEST(BodyReaderDataTest, ExactlyAtTheCapIsAccepted) {
  BodyOptions options;
  options.size_bytes_max = 12;
  DataOutcome out = ScanData("0123456789\r\n.\r\n", {5}, options);
  ASSERT_TRUE(out.done);
  EXPECT_EQ(out.defect, BodyDefect::kNone);
  EXPECT_EQ(out.body, "0123456789\r\n");
}

// ---------------------------------------------------------------------------------------
// BDAT

TEST(BodyReaderChunkTest, TakesExactlyNOctetsWithoutUnstuffing) {
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, {});
  reader.BeginChunk(9);
  BodyReader::Result r = reader.FeedChunk("..\r\n.\r\nabMAIL");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, 9u);
  reader.BeginChunk(0);
  r = reader.FeedChunk("x");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, 0u);
  reader.FinishChunks();
  EXPECT_EQ(body.ToString(), "..\r\n.\r\nab");
  EXPECT_EQ(reader.defect(), BodyDefect::kNone);
}

TEST(BodyReaderChunkTest, CrlfStraddlingChunksIsFineAndTrailingCrIsBare) {
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, {});
  reader.BeginChunk(2);
  EXPECT_TRUE(reader.FeedChunk("a\r").done);
  reader.BeginChunk(3);
  EXPECT_TRUE(reader.FeedChunk("\nb\r").done);
  EXPECT_EQ(reader.defect(), BodyDefect::kNone);
  reader.FinishChunks();
  EXPECT_EQ(reader.defect(), BodyDefect::kBareCr);
}

TEST(BodyReaderChunkTest, BinaryMimeSkipsChecks) {
  core::Body body;
  BodyReader reader;
  BodyOptions options;
  options.binary = true;
  reader.Begin(&body, options);
  const std::string bytes("\0\n\r.\n", 5);
  reader.BeginChunk(bytes.size());
  EXPECT_TRUE(reader.FeedChunk(bytes).done);
  reader.FinishChunks();
  EXPECT_EQ(reader.defect(), BodyDefect::kNone);
  EXPECT_EQ(body.ToString(), bytes);
}

TEST(BodyReaderChunkTest, BareLfInChunkIsRejectedOrNormalized) {
  for (BareLineEndings mode : {BareLineEndings::kReject, BareLineEndings::kNormalize}) {
    core::Body body;
    BodyReader reader;
    BodyOptions options;
    options.bare_line_endings = mode;
    reader.Begin(&body, options);
    reader.BeginChunk(4);
    for (char c : std::string("a\nb\n")) {
      EXPECT_EQ(reader.FeedChunk(std::string(1, c)).consumed, 1u);
    }
    reader.FinishChunks();
    if (mode == BareLineEndings::kReject) {
      EXPECT_EQ(reader.defect(), BodyDefect::kBareLf);
    } else {
      EXPECT_EQ(reader.defect(), BodyDefect::kNone);
      EXPECT_EQ(body.ToString(), "a\r\nb\r\n");
    }
  }
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
