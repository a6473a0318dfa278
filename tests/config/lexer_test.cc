// Tests of config/lexer: token kinds, positions, units, and every lexical error.
#include "config/lexer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

std::vector<Token> LexAll(std::string_view text) {
  Lexer lexer(text, 0);
  std::vector<Token> tokens;
  while (true) {
    Token token = lexer.Next();
    if (token.kind == TokenKind::kEnd) break;
    tokens.push_back(std::move(token));
    if (tokens.size() > 1000) break;  // a lexer that never ends fails the test, not the run
  }
  return tokens;
}

Token LexOne(std::string_view text) {
  std::vector<Token> tokens = LexAll(text);
  EXPECT_EQ(tokens.size(), 1u) << text;
  return tokens.empty() ? Token{} : tokens[0];
}

TEST(LexerTest, PunctuationWordsAndPositions) {
  std::vector<Token> t = LexAll("key = value\n  Scope \"arg\" {\n\tx = ( a, b )\n}\n");
  ASSERT_EQ(t.size(), 13u);
  EXPECT_EQ(t[0].kind, TokenKind::kWord);
  EXPECT_EQ(t[0].text, "key");
  EXPECT_EQ(t[0].pos.line, 1);
  EXPECT_EQ(t[0].pos.column, 1);
  EXPECT_EQ(t[1].kind, TokenKind::kEquals);
  EXPECT_EQ(t[1].pos.column, 5);
  EXPECT_EQ(t[2].text, "value");
  EXPECT_EQ(t[2].pos.column, 7);
  EXPECT_EQ(t[3].text, "Scope");
  EXPECT_EQ(t[3].pos.line, 2);
  EXPECT_EQ(t[3].pos.column, 3);
  EXPECT_EQ(t[4].kind, TokenKind::kString);
  EXPECT_EQ(t[4].text, "arg");
  EXPECT_EQ(t[4].pos.column, 9);
  EXPECT_EQ(t[5].kind, TokenKind::kLBrace);
  EXPECT_EQ(t[6].text, "x");  // after a tab: a tab is one column
  EXPECT_EQ(t[6].pos.line, 3);
  EXPECT_EQ(t[6].pos.column, 2);
  EXPECT_EQ(t[8].kind, TokenKind::kLParen);
  EXPECT_EQ(t[9].text, "a");  // the comma separates and is dropped
  EXPECT_EQ(t[10].text, "b");
  EXPECT_EQ(t[10].pos.column, 11);
  EXPECT_EQ(t[11].kind, TokenKind::kRParen);
  EXPECT_EQ(t[12].kind, TokenKind::kRBrace);
  EXPECT_EQ(t[12].pos.line, 4);
}

TEST(LexerTest, CommentsAreSkipped) {
  std::vector<Token> t = LexAll("# whole line\nkey = 1 # trailing\n#last");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].pos.line, 2);
  EXPECT_EQ(t[2].kind, TokenKind::kInteger);
  EXPECT_EQ(t[2].number, 1);
}

TEST(LexerTest, ByteOrderMarkAndCrLf) {
  std::vector<Token> t = LexAll("\xEF\xBB\xBFkey = 1\r\nnext = \"x\"\r\n");
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[0].text, "key");
  EXPECT_EQ(t[0].pos.column, 1);
  EXPECT_EQ(t[3].text, "next");
  EXPECT_EQ(t[3].pos.line, 2);
  EXPECT_EQ(t[5].text, "x");
}

TEST(LexerTest, StringEscapes) {
  Token t = LexOne(R"("a\"b\\c\nd\te\rf")");
  EXPECT_EQ(t.kind, TokenKind::kString);
  EXPECT_EQ(t.text, "a\"b\\c\nd\te\rf");
  EXPECT_EQ(LexOne("\"\"").text, "");
  EXPECT_EQ(LexOne("\"# not a comment\"").text, "# not a comment");
}

TEST(LexerTest, UnterminatedStringPointsAtTheQuoteAndResumesNextLine) {
  std::vector<Token> t = LexAll("a = \"open\nb = 2");
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[2].kind, TokenKind::kError);
  EXPECT_EQ(t[2].pos.line, 1);
  EXPECT_EQ(t[2].pos.column, 5);
  EXPECT_EQ(t[2].text, "unterminated string (a quoted string must end on its line)");
  EXPECT_EQ(t[3].text, "b");
  EXPECT_EQ(t[3].pos.line, 2);
  Token at_end = LexOne("\"never closed");
  EXPECT_EQ(at_end.kind, TokenKind::kError);
  EXPECT_EQ(at_end.pos.column, 1);
}

TEST(LexerTest, UnknownEscapeIsAnErrorAtTheBackslash) {
  Token t = LexOne(R"("ab\qc")");
  EXPECT_EQ(t.kind, TokenKind::kError);
  EXPECT_EQ(t.pos.column, 4);
  EXPECT_EQ(t.text, "unknown escape '\\q' in string (use \\\" \\\\ \\n \\t \\r)");
}

TEST(LexerTest, NumbersPercentagesAndWords) {
  Token n = LexOne("42");
  EXPECT_EQ(n.kind, TokenKind::kInteger);
  EXPECT_EQ(n.number, 42);
  Token neg = LexOne("-7");
  EXPECT_EQ(neg.kind, TokenKind::kInteger);
  EXPECT_EQ(neg.number, -7);
  Token p = LexOne("75%");
  EXPECT_EQ(p.kind, TokenKind::kPercent);
  EXPECT_EQ(p.number, 75);
  EXPECT_EQ(LexOne("127.0.0.1").kind, TokenKind::kWord);
  EXPECT_EQ(LexOne("[127.0.0.1]:2526").kind, TokenKind::kWord);
  EXPECT_EQ(LexOne("events_pool").kind, TokenKind::kWord);
  EXPECT_EQ(LexOne("-").kind, TokenKind::kWord);
}

TEST(LexerTest, SizesAreBinaryBytes) {
  struct Case {
    const char* text;
    int64_t bytes;
  } cases[] = {
      {"10B", 10},
      {"512k", 512 << 10},
      {"512K", 512 << 10},
      {"16KB", 16 << 10},
      {"16KiB", 16 << 10},
      {"10MB", 10 << 20},
      {"10mib", 10 << 20},
      {"1GiB", int64_t{1} << 30},
      {"2G", int64_t{2} << 30},
      {"1TB", int64_t{1} << 40},
  };
  for (const Case& c : cases) {
    Token t = LexOne(c.text);
    ASSERT_EQ(t.kind, TokenKind::kUnitNumber) << c.text;
    ASSERT_TRUE(t.size_bytes.has_value()) << c.text;
    EXPECT_EQ(*t.size_bytes, c.bytes) << c.text;
  }
}

TEST(LexerTest, DurationsInMicroseconds) {
  struct Case {
    const char* text;
    int64_t us;
  } cases[] = {
      {"250us", 250},
      {"250ms", 250000},
      {"30s", 30000000},
      {"5m", 300000000},
      {"1h", int64_t{3600000000}},
      {"5d", int64_t{432000000000}},
      {"1w", int64_t{604800000000}},
      {"30S", 30000000},
  };
  for (const Case& c : cases) {
    Token t = LexOne(c.text);
    ASSERT_EQ(t.kind, TokenKind::kUnitNumber) << c.text;
    ASSERT_TRUE(t.duration_us.has_value()) << c.text;
    EXPECT_EQ(*t.duration_us, c.us) << c.text;
  }
  // "m" reads both ways; the key's type decides.
  Token m = LexOne("5m");
  EXPECT_EQ(*m.size_bytes, 5 << 20);
  EXPECT_FALSE(LexOne("5s").size_bytes.has_value());
  EXPECT_FALSE(LexOne("5MB").duration_us.has_value());
}

TEST(LexerTest, BadUnitSuffix) {
  Token t = LexOne("10XB");
  EXPECT_EQ(t.kind, TokenKind::kError);
  EXPECT_EQ(t.pos.column, 1);
  EXPECT_EQ(t.text,
            "unknown unit 'XB' in '10XB' (sizes: B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, "
            "TiB; durations: us, ms, s, m, h, d, w)");
}

TEST(LexerTest, FractionsAndOverflowAreErrors) {
  Token f = LexOne("1.5GB");
  EXPECT_EQ(f.kind, TokenKind::kError);
  EXPECT_EQ(f.text, "fractional number '1.5GB' is not supported; use a smaller unit");
  Token big = LexOne("99999999999999999999");
  EXPECT_EQ(big.kind, TokenKind::kError);
  EXPECT_EQ(big.text, "number '99999999999999999999' is too large");
  Token big_unit = LexOne("9999999999999TB");
  EXPECT_EQ(big_unit.kind, TokenKind::kError);
  EXPECT_EQ(big_unit.text, "number '9999999999999TB' is too large");
}

TEST(LexerTest, ControlCharacterAndNul) {
  std::vector<Token> t = LexAll(std::string_view("a \x01 b", 5));
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[1].kind, TokenKind::kError);
  EXPECT_EQ(t[1].pos.column, 3);
  EXPECT_EQ(t[1].text, "unexpected control character 0x01");
  Token nul = LexOne(std::string_view("\"a\0b\"", 5));
  EXPECT_EQ(nul.kind, TokenKind::kError);
  EXPECT_EQ(nul.text, "NUL byte in string");
  EXPECT_EQ(nul.pos.column, 3);
}

TEST(LexerTest, TokenLengthLimit) {
  std::string long_word(kMaxTokenBytes + 1, 'a');
  Token w = LexOne(long_word);
  EXPECT_EQ(w.kind, TokenKind::kError);
  EXPECT_EQ(w.text, "word longer than 4096 bytes");
  std::string at_limit(kMaxTokenBytes, 'a');
  EXPECT_EQ(LexOne(at_limit).kind, TokenKind::kWord);
  Token s = LexOne("\"" + long_word + "\"");
  EXPECT_EQ(s.kind, TokenKind::kError);
  EXPECT_EQ(s.text, "string longer than 4096 bytes");
  EXPECT_EQ(LexOne("\"" + at_limit + "\"").kind, TokenKind::kString);
}

TEST(LexerTest, ClassifyBareMatchesTheLexer) {
  Position pos{0, 3, 9};
  Token t = ClassifyBare("75%", pos);
  EXPECT_EQ(t.kind, TokenKind::kPercent);
  EXPECT_EQ(t.pos.line, 3);
  EXPECT_EQ(t.pos.column, 9);
  EXPECT_EQ(ClassifyBare("20MB", pos).size_bytes, int64_t{20} << 20);
  EXPECT_EQ(ClassifyBare("abc", pos).kind, TokenKind::kWord);
}

}  // namespace
}  // namespace ringmail::config
