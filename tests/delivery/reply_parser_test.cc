// The SMTP reply parser: grammar, enhanced status codes, limits, hostile bytes, every split
// point, a seeded fuzz run, and the EHLO extension list.
#include "delivery/reply_parser.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

// Parses `input` (fed in pieces cut at `cuts`) into replies; stops at an error.
struct Parsed {
  std::vector<Reply> replies;
  ReplyError error = ReplyError::kNone;
  size_t buffered = 0;
};

Parsed ParseAll(std::string_view input, const std::vector<size_t>& cuts = {}) {
  Parsed out;
  ReplyParser parser;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    if (end < start) continue;
    std::string_view piece = input.substr(start, end - start);
    start = end;
    size_t pos = 0;
    while (pos < piece.size()) {
      ReplyParser::Status status = parser.Next(piece, &pos);
      if (status == ReplyParser::Status::kError) {
        out.error = parser.error();
        EXPECT_EQ(pos, piece.size()) << "an error consumes the rest";
        return out;
      }
      if (status == ReplyParser::Status::kNeedMore) {
        EXPECT_EQ(pos, piece.size());
        break;
      }
      out.replies.push_back(parser.TakeReply());
    }
  }
  out.buffered = parser.buffered_bytes();
  return out;
}

TEST(ReplyParserTest, SingleLine) {
  Parsed p = ParseAll("250 2.1.0 Sender ok\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].code, 250);
  EXPECT_EQ(p.replies[0].enhanced.ToString(), "2.1.0");
  ASSERT_EQ(p.replies[0].lines.size(), 1u);
  EXPECT_EQ(p.replies[0].lines[0], "Sender ok");
  EXPECT_TRUE(p.replies[0].positive());
  EXPECT_EQ(p.buffered, 0u);
}

TEST(ReplyParserTest, MultiLineAndSeveralReplies) {
  Parsed p = ParseAll("250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 100\r\n354 go\r\n");
  ASSERT_EQ(p.replies.size(), 2u);
  EXPECT_EQ(p.replies[0].lines, (std::vector<std::string>{"mx.example.com", "PIPELINING",
                                                          "SIZE 100"}));
  EXPECT_FALSE(p.replies[0].enhanced.present());
  EXPECT_EQ(p.replies[1].code, 354);
  EXPECT_TRUE(p.replies[1].intermediate());
}

struct GrammarCase {
  std::string input;
  int code;                   // 0: expect an error
  std::string enhanced;       // expected enhanced code text
  std::string first_line;     // expected first line text
  ReplyError error = ReplyError::kNone;
};

TEST(ReplyParserTest, GrammarTable) {
  const std::vector<GrammarCase> cases = {
      {"250\r\n", 250, "", ""},
      {"250 \r\n", 250, "", ""},
      {"250 ok\n", 250, "", "ok"},  // bare LF tolerated
      {"550 5.1.1 <x@y>: unknown\r\n", 550, "5.1.1", "<x@y>: unknown"},
      {"550 5.1.1\r\n", 550, "5.1.1", ""},
      {"451 4.7.1 greylisted\r\n", 451, "4.7.1", "greylisted"},
      {"550 4.1.1 class mismatch\r\n", 550, "", "4.1.1 class mismatch"},
      {"550 5.1234.1 too long\r\n", 550, "", "5.1234.1 too long"},
      {"550 5.1.1x no\r\n", 550, "", "5.1.1x no"},
      {"250 2.0.0. odd\r\n", 250, "", "2.0.0. odd"},
      {"554 5.999.999 max\r\n", 554, "5.999.999", "max"},
      {"250 caf\xc3\xa9\r\n", 250, "", "caf\xc3\xa9"},
      {"250 a\tb\r\n", 250, "", "a\tb"},
      {"abc\r\n", 0, "", "", ReplyError::kBadCode},
      {"25\r\n", 0, "", "", ReplyError::kBadCode},
      {"199 x\r\n", 0, "", "", ReplyError::kBadCode},
      {"600 x\r\n", 0, "", "", ReplyError::kBadCode},
      {"260 x\r\n", 0, "", "", ReplyError::kBadCode},
      {"25a x\r\n", 0, "", "", ReplyError::kBadCode},
      {"250x\r\n", 0, "", "", ReplyError::kBadCode},
      {"250-a\r\n251 b\r\n", 0, "", "", ReplyError::kCodeMismatch},
      {"250-a\r\n\r\n", 0, "", "", ReplyError::kBadCode},
      {std::string("250 a\0b\r\n", 9), 0, "", "", ReplyError::kNulByte},
      {"250 a\rb\r\n", 0, "", "", ReplyError::kBareCr},
      {"250 a\r\r\n", 0, "", "", ReplyError::kBareCr},
  };
  for (const GrammarCase& c : cases) {
    SCOPED_TRACE(c.input);
    Parsed p = ParseAll(c.input);
    if (c.code == 0) {
      EXPECT_EQ(p.replies.size(), 0u);
      EXPECT_STREQ(ReplyErrorName(p.error), ReplyErrorName(c.error));
      continue;
    }
    ASSERT_EQ(p.replies.size(), 1u) << ReplyErrorName(p.error);
    EXPECT_EQ(p.replies[0].code, c.code);
    EXPECT_EQ(p.replies[0].enhanced.ToString(), c.enhanced);
    EXPECT_EQ(p.replies[0].lines[0], c.first_line);
  }
}

TEST(ReplyParserTest, ErrorIsSticky) {
  ReplyParser parser;
  std::string bad = "xyz\r\n250 ok\r\n";
  size_t pos = 0;
  EXPECT_EQ(parser.Next(bad, &pos), ReplyParser::Status::kError);
  pos = 0;
  std::string good = "250 ok\r\n";
  EXPECT_EQ(parser.Next(good, &pos), ReplyParser::Status::kError);
  EXPECT_EQ(parser.error(), ReplyError::kBadCode);
}

TEST(ReplyParserTest, Limits) {
  // A line of exactly the maximum (with CRLF) passes; one more byte fails, before its LF.
  std::string longest = "250 " + std::string(kReplyLineBytesMax - 6, 'a') + "\r\n";
  ASSERT_EQ(longest.size(), kReplyLineBytesMax);
  EXPECT_EQ(ParseAll(longest).replies.size(), 1u);
  std::string too_long = "250 " + std::string(kReplyLineBytesMax - 5, 'a') + "\r\n";
  EXPECT_EQ(ParseAll(too_long).error, ReplyError::kLineTooLong);
  EXPECT_EQ(ParseAll(std::string(1 << 20, 'a')).error, ReplyError::kLineTooLong);

  std::string lines;
  for (size_t i = 0; i + 1 < kReplyLinesMax; ++i) lines += "250-x\r\n";
  EXPECT_EQ(ParseAll(lines + "250 x\r\n").replies.size(), 1u);
  EXPECT_EQ(ParseAll(lines + "250-x\r\n250 x\r\n").error, ReplyError::kTooManyLines);

  std::string big;
  std::string line = "250-" + std::string(1000, 'b') + "\r\n";
  while (big.size() + line.size() <= kReplyBytesMax) big += line;
  EXPECT_EQ(ParseAll(big + "250-" + std::string(1000, 'b') + "\r\n").error,
            ReplyError::kReplyTooLong);
}

TEST(ReplyParserTest, EverySplitPointGivesTheSameReplies) {
  const std::string input =
      "220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
      "550-5.1.1 one\r\n550 5.1.1 two\n354 go\r\n";
  Parsed whole = ParseAll(input);
  ASSERT_EQ(whole.replies.size(), 4u);
  for (size_t a = 0; a <= input.size(); ++a) {
    for (size_t b = a; b <= input.size(); b += 7) {
      Parsed split = ParseAll(input, {a, b});
      ASSERT_EQ(split.replies.size(), whole.replies.size()) << a << "," << b;
      for (size_t i = 0; i < whole.replies.size(); ++i) {
        EXPECT_EQ(split.replies[i].code, whole.replies[i].code);
        EXPECT_EQ(split.replies[i].lines, whole.replies[i].lines);
        EXPECT_EQ(split.replies[i].enhanced, whole.replies[i].enhanced);
      }
    }
  }
}

TEST(ReplyParserTest, PartialReplyIsBuffered) {
  Parsed p = ParseAll("250-a\r\n250 b");
  EXPECT_EQ(p.replies.size(), 0u);
  EXPECT_EQ(p.buffered, 7u + 5u);
}

// Seeded random inputs, built from reply-like fragments and raw noise: the parser never
// crashes, always consumes everything, and every reply it returns obeys the grammar.
TEST(ReplyParserTest, FuzzNeverCrashes) {
  std::mt19937_64 rng(20240605);
  const std::vector<std::string> fragments = {
      "250", "250-", "250 ", "550 5.1.1 ", "4.2.", "\r\n", "\n", "\r", std::string(1, '\0'),
      "PIPELINING", " ", "-", "999", "2", "5.", "\xff\xfe", "354 go\r\n", "421 bye\r\n"};
  size_t replies = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string input;
    int parts = static_cast<int>(rng() % 24);
    for (int i = 0; i < parts; ++i) {
      if (rng() % 4 == 0) {
        input.push_back(static_cast<char>(rng() & 0xff));
      } else {
        input += fragments[rng() % fragments.size()];
      }
    }
    if (rng() % 50 == 0) input += std::string(rng() % 5000, 'z');
    std::vector<size_t> cuts;
    for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i) {
      cuts.push_back(input.empty() ? 0 : rng() % (input.size() + 1));
    }
    std::sort(cuts.begin(), cuts.end());
    Parsed p = ParseAll(input, cuts);
    for (const Reply& r : p.replies) {
      ++replies;
      ASSERT_GE(r.code, 200);
      ASSERT_LT(r.code, 560);
      ASSERT_FALSE(r.lines.empty());
      ASSERT_LE(r.lines.size(), kReplyLinesMax);
      for (const std::string& line : r.lines) {
        ASSERT_EQ(line.find_first_of(std::string("\r\n\0", 3)), std::string::npos);
      }
      std::string summary = r.Summary(100);
      ASSERT_LE(summary.size(), 100u);
      for (char c : summary) ASSERT_TRUE(c >= 0x20 && c < 0x7f);
    }
    ASSERT_LE(p.buffered, kReplyBytesMax + kReplyLineBytesMax);
  }
  EXPECT_GT(replies, 1000u);  // the generator does produce valid replies
}

TEST(ReplyTest, SummaryJoinsLinesAndCleans) {
  Parsed p = ParseAll(
      "550-5.7.1 Message rejected\r\n550-5.7.1 see\x01 http://x.test/\r\n"
      "550 5.7.1 \xc3\xa9t\xc3\xa9\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].Summary(), "550 5.7.1 Message rejected see? http://x.test/ ??t??");
  EXPECT_EQ(p.replies[0].Summary(12), "550 5.7.1 Me");
  Reply bare;
  bare.code = 451;
  bare.lines = {""};
  EXPECT_EQ(bare.Summary(), "451");
  EXPECT_EQ(bare.StatusOrDefault().ToString(), "4.0.0");
  bare.code = 554;
  EXPECT_EQ(bare.StatusOrDefault().ToString(), "5.0.0");
  bare.code = 250;
  EXPECT_EQ(bare.StatusOrDefault().ToString(), "2.0.0");
}

TEST(EhloTest, ParsesExtensions) {
  Parsed p = ParseAll(
      "250-mx.example.com Hello client [192.0.2.1]\r\n250-pipelining\r\n250-SIZE 35882577\r\n"
      "250-8BITMIME\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n"
      "250-BINARYMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 DSN\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  Extensions e = ParseEhloReply(p.replies[0]);
  EXPECT_EQ(e.server_name, "mx.example.com");
  EXPECT_TRUE(e.pipelining);
  EXPECT_TRUE(e.size);
  EXPECT_EQ(e.size_bytes_max, 35882577u);
  EXPECT_TRUE(e.eight_bit_mime);
  EXPECT_TRUE(e.starttls);
  EXPECT_TRUE(e.enhanced_status_codes);
  EXPECT_TRUE(e.chunking);
  EXPECT_TRUE(e.binary_mime);
  EXPECT_TRUE(e.smtputf8);
  EXPECT_TRUE(e.dsn);
}

TEST(EhloTest, SizeVariantsAndKeywordsOnFirstLineIgnored) {
  auto ext = [](std::string input) {
    Parsed p = ParseAll(input);
    EXPECT_EQ(p.replies.size(), 1u);
    return p.replies.empty() ? Extensions() : ParseEhloReply(p.replies[0]);
  };
  EXPECT_EQ(ext("250-mx\r\n250 SIZE\r\n").size_bytes_max, 0u);
  EXPECT_TRUE(ext("250-mx\r\n250 SIZE\r\n").size);
  EXPECT_EQ(ext("250-mx\r\n250 SIZE 0\r\n").size_bytes_max, 0u);
  EXPECT_EQ(ext("250-mx\r\n250 SIZE abc\r\n").size_bytes_max, 0u);
  EXPECT_EQ(ext("250-mx\r\n250 SIZE 99999999999999999999999\r\n").size_bytes_max,
            UINT64_MAX);
  EXPECT_FALSE(ext("250 mx PIPELINING\r\n").pipelining);  // the greeting line is not a keyword
  EXPECT_FALSE(ext("250-mx\r\n250 PIPELININGX\r\n").pipelining);
  EXPECT_EQ(ext("250 \x01mx\xff\r\n").server_name, "?mx?");
}

}  // namespace
}  // namespace ringmail::delivery
