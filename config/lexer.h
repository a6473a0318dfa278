// config/lexer.h — tokens of the ringmail configuration language.
//
// The language (ecelerity.conf style):
//   # comment to end of line
//   key = value                    value: "quoted string" | bare_word | 42 | 20MB | 5m | 75%
//   key = ( "a" "b" c )            a list; commas between items are allowed and ignored
//   Name "arg" { ... }   Name { ... }
//   include "other.conf"
// Statements are not line-terminated: `ThreadPool "IO" { Concurrency = 8  Backlog = 100 }`
// is one line. Quoted strings take the escapes \" \\ \n \t \r and may not span lines.
// A bare number with a unit is one token: sizes take B, K/KB/KiB, M/MB/MiB, G/GB/GiB,
// T/TB/TiB (all binary: 1KB = 1024), durations take us, ms, s, m, h, d, w; units are
// case-insensitive. "m" is both MiB and minutes: the key's type decides, so the token
// carries both readings. Fractions ("1.5GB") are refused: write 1536MB.
//
// A leading UTF-8 byte order mark is skipped; CRLF line ends are fine.
//
// Pure and allocation-light: the lexer borrows the text, which must outlive it. Errors are
// returned in-band as kError tokens (the message in `text`) and the lexer resumes after the
// bad token, so the parser can report several errors in one pass. Single-threaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/diagnostics.h"

namespace ringmail::config {

// No token (quoted string contents or bare word) may be longer than this.
inline constexpr size_t kMaxTokenBytes = 4096;

enum class TokenKind : uint8_t {
  kEnd,         // end of the text (repeats)
  kWord,        // bare word: spool_dir, true, 127.0.0.1, [10.0.0.1]:25
  kString,      // "quoted": `text` holds the decoded contents
  kInteger,     // -?[0-9]+
  kUnitNumber,  // [0-9]+ followed by a size or duration unit
  kPercent,     // [0-9]+%
  kEquals,
  kLBrace,
  kRBrace,
  kLParen,
  kRParen,
  kError,  // `text` holds the message; `pos` points at the offending character
};

const char* TokenKindName(TokenKind kind);

// Text from a configuration (a string's decoded value, a bare word, a path built from one)
// made fit for an error message: messages are one line each (diagnostics.h), so line breaks
// and other control bytes are shown escaped (\n \r \t \xNN), as are '"' and '\\'.
std::string EscapeForMessage(std::string_view text);

struct Token {
  TokenKind kind = TokenKind::kEnd;
  Position pos;
  std::string text;    // as written (words, numbers), decoded (strings), or the error message
  int64_t number = 0;  // kInteger, kPercent, kUnitNumber: the numeric part
  std::optional<int64_t> size_bytes;   // kUnitNumber whose unit is a size unit
  std::optional<int64_t> duration_us;  // kUnitNumber whose unit is a duration unit

  bool is_scalar() const;
  // How the token is shown in messages: a string re-quoted, anything else as written.
  std::string Describe() const;
};

class Lexer {
 public:
  Lexer(std::string_view text, int file);

  Token Next();

 private:
  char Peek(size_t ahead = 0) const;
  void Advance();
  void SkipSpaceAndComments();
  Token Make(TokenKind kind, Position pos) const;
  Token Error(Position pos, std::string message) const;
  Token LexString();
  Token LexBare();

  std::string_view text_;
  int file_;
  size_t offset_ = 0;
  int line_ = 1;
  int column_ = 1;
};

// Whether `word` is the name of a size or duration unit ("MB", "s"), in any case.
bool IsUnitName(std::string_view word);

// Classifies one bare word (as the lexer does after reading it): integer, percent, number
// with a unit, a word, or an error (bad unit, overflow). Used for a quoted value given to a
// numeric key ("20MB", "75%"). `pos` is stamped on the result.
Token ClassifyBare(std::string_view word, Position pos);

}  // namespace ringmail::config
