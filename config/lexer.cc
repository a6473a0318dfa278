// config/lexer.cc — the configuration tokenizer.
#include "config/lexer.h"

#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

struct Unit {
  std::string_view name;  // lower case
  int64_t multiplier;
};

constexpr Unit kSizeUnits[] = {
    {"b", 1},           {"k", 1LL << 10},   {"kb", 1LL << 10},  {"kib", 1LL << 10},
    {"m", 1LL << 20},   {"mb", 1LL << 20},  {"mib", 1LL << 20}, {"g", 1LL << 30},
    {"gb", 1LL << 30},  {"gib", 1LL << 30}, {"t", 1LL << 40},   {"tb", 1LL << 40},
    {"tib", 1LL << 40},
};

constexpr int64_t kUsPerSecond = 1000 * 1000;
constexpr Unit kDurationUnits[] = {
    {"us", 1},
    {"ms", 1000},
    {"s", kUsPerSecond},
    {"m", 60 * kUsPerSecond},
    {"h", 3600 * kUsPerSecond},
    {"d", 86400 * kUsPerSecond},
    {"w", 7 * 86400 * kUsPerSecond},
};

constexpr std::string_view kUnitHelp =
    "sizes: B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB; durations: us, ms, s, m, h, d, w";

template <size_t N>
std::optional<int64_t> Lookup(const Unit (&units)[N], std::string_view lower) {
  for (const Unit& unit : units) {
    if (unit.name == lower) return unit.multiplier;
  }
  return std::nullopt;
}

// Characters that end a bare word.
bool IsDelimiter(char c) {
  switch (c) {
    case ' ':
    case '\t':
    case '\r':
    case '\n':
    case '\f':
    case '\v':
    case '{':
    case '}':
    case '(':
    case ')':
    case '=':
    case '#':
    case '"':
    case ',':
      return true;
    default:
      return false;
  }
}

bool IsControl(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

size_t DigitRun(std::string_view s, size_t from) {
  size_t i = from;
  while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i;
  return i - from;
}

bool AllAlpha(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalpha(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

Token ErrorToken(Position pos, std::string message) {
  Token token;
  token.kind = TokenKind::kError;
  token.pos = pos;
  token.text = std::move(message);
  return token;
}

// `word` = sign? digits unit; fills the unit readings or returns an error token.
Token ClassifyUnitNumber(std::string_view word, size_t digits_end, int64_t number, Position pos) {
  std::string unit = absl::AsciiStrToLower(Av(word.substr(digits_end)));
  std::optional<int64_t> size = Lookup(kSizeUnits, unit);
  std::optional<int64_t> duration = Lookup(kDurationUnits, unit);
  if (!size && !duration) {
    return ErrorToken(
        pos, Cat("unknown unit '", word.substr(digits_end), "' in '", word, "' (", kUnitHelp, ")"));
  }
  Token token;
  token.kind = TokenKind::kUnitNumber;
  token.pos = pos;
  token.text = std::string(word);
  token.number = number;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  // A product that overflows is not an error yet: it is only when the key wants that
  // reading (a 10 TB duration is meaningless, not too big).
  if (size && (number >= 0 ? number <= kMax / *size : number >= -kMax / *size)) {
    token.size_bytes = number * *size;
  }
  if (duration && (number >= 0 ? number <= kMax / *duration : number >= -kMax / *duration)) {
    token.duration_us = number * *duration;
  }
  if (!token.size_bytes && !token.duration_us) {
    return ErrorToken(pos, Cat("number '", word, "' is too large"));
  }
  return token;
}

}  // namespace

const char* TokenKindName(TokenKind kind) {
  switch (kind) {
    case TokenKind::kEnd:
      return "end of file";
    case TokenKind::kWord:
      return "word";
    case TokenKind::kString:
      return "string";
    case TokenKind::kInteger:
      return "integer";
    case TokenKind::kUnitNumber:
      return "number with unit";
    case TokenKind::kPercent:
      return "percentage";
    case TokenKind::kEquals:
      return "'='";
    case TokenKind::kLBrace:
      return "'{'";
    case TokenKind::kRBrace:
      return "'}'";
    case TokenKind::kLParen:
      return "'('";
    case TokenKind::kRParen:
      return "')'";
    case TokenKind::kError:
      return "error";
  }
  return "token";
}

bool Token::is_scalar() const {
  switch (kind) {
    case TokenKind::kWord:
    case TokenKind::kString:
    case TokenKind::kInteger:
    case TokenKind::kUnitNumber:
    case TokenKind::kPercent:
      return true;
    default:
      return false;
  }
}

std::string EscapeForMessage(std::string_view text) {
  std::string out;
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      Append(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  return out;
}

std::string Token::Describe() const {
  if (kind == TokenKind::kString) return Cat("\"", EscapeForMessage(text), "\"");
  if (kind == TokenKind::kEnd || kind == TokenKind::kError) return TokenKindName(kind);
  if (is_scalar()) return Cat("'", EscapeForMessage(text), "'");
  return TokenKindName(kind);
}

bool IsUnitName(std::string_view word) {
  const std::string lower = absl::AsciiStrToLower(Av(word));
  return Lookup(kSizeUnits, lower).has_value() || Lookup(kDurationUnits, lower).has_value();
}

Token ClassifyBare(std::string_view word, Position pos) {
  Token token;
  token.kind = TokenKind::kWord;
  token.pos = pos;
  token.text = std::string(word);
  size_t start = (!word.empty() && word[0] == '-') ? 1 : 0;
  size_t digits = DigitRun(word, start);
  if (digits == 0) return token;
  size_t digits_end = start + digits;
  std::string_view rest = word.substr(digits_end);
  if (!rest.empty() && rest != "%" && !AllAlpha(rest)) {
    // "1.5GB": a fraction with a unit is a mistake worth naming; "127.0.0.1" is a word.
    size_t dot_digits = rest.size() > 1 && rest[0] == '.' ? DigitRun(rest, 1) : 0;
    if (dot_digits > 0 && AllAlpha(rest.substr(1 + dot_digits))) {
      return ErrorToken(pos,
                        Cat("fractional number '", word, "' is not supported; use a smaller unit"));
    }
    return token;
  }
  if (!absl::SimpleAtoi(Av(word.substr(0, digits_end)), &token.number)) {
    return ErrorToken(pos, Cat("number '", word, "' is too large"));
  }
  if (!rest.empty() && rest != "%") return ClassifyUnitNumber(word, digits_end, token.number, pos);
  token.kind = rest.empty() ? TokenKind::kInteger : TokenKind::kPercent;
  return token;
}

Lexer::Lexer(std::string_view text, int file) : text_(text), file_(file) {
  // Editors on some systems save a UTF-8 byte order mark; it is not part of the first key.
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (text_.substr(0, kBom.size()) == kBom) text_.remove_prefix(kBom.size());
}

char Lexer::Peek(size_t ahead) const {
  return offset_ + ahead < text_.size() ? text_[offset_ + ahead] : '\0';
}

void Lexer::Advance() {
  if (offset_ >= text_.size()) return;
  if (text_[offset_] == '\n') {
    ++line_;
    column_ = 1;
  } else {
    ++column_;
  }
  ++offset_;
}

void Lexer::SkipSpaceAndComments() {
  while (offset_ < text_.size()) {
    char c = text_[offset_];
    if (c == '#') {
      while (offset_ < text_.size() && text_[offset_] != '\n') Advance();
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' ||
               c == ',') {
      // Commas are accepted between list items and otherwise meaningless.
      Advance();
    } else {
      return;
    }
  }
}

Token Lexer::Make(TokenKind kind, Position pos) const {
  Token token;
  token.kind = kind;
  token.pos = pos;
  return token;
}

Token Lexer::Error(Position pos, std::string message) const {
  return ErrorToken(pos, std::move(message));
}

Token Lexer::Next() {
  SkipSpaceAndComments();
  Position pos{file_, line_, column_};
  if (offset_ >= text_.size()) return Make(TokenKind::kEnd, pos);
  char c = text_[offset_];
  TokenKind single = TokenKind::kEnd;
  switch (c) {
    case '=':
      single = TokenKind::kEquals;
      break;
    case '{':
      single = TokenKind::kLBrace;
      break;
    case '}':
      single = TokenKind::kRBrace;
      break;
    case '(':
      single = TokenKind::kLParen;
      break;
    case ')':
      single = TokenKind::kRParen;
      break;
    case '"':
      return LexString();
    default:
      break;
  }
  if (single != TokenKind::kEnd) {
    Advance();
    return Make(single, pos);
  }
  if (IsControl(c)) {
    Advance();
    return Error(pos, Cat("unexpected control character 0x",
                          absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2)));
  }
  return LexBare();
}

Token Lexer::LexString() {
  Position open{file_, line_, column_};
  Advance();  // the opening quote
  Token token = Make(TokenKind::kString, open);
  std::optional<Token> error;
  while (true) {
    char c = Peek();
    if (offset_ >= text_.size() || c == '\n') {
      // Resume on the next line: the rest of this one is the unterminated string.
      return Error(open, "unterminated string (a quoted string must end on its line)");
    }
    Position here{file_, line_, column_};
    Advance();
    if (c == '"') break;
    if (c == '\\') {
      char e = Peek();
      if (offset_ >= text_.size() || e == '\n') continue;  // reported as unterminated
      Advance();
      switch (e) {
        case '"':
          c = '"';
          break;
        case '\\':
          c = '\\';
          break;
        case 'n':
          c = '\n';
          break;
        case 't':
          c = '\t';
          break;
        case 'r':
          c = '\r';
          break;
        default:
          if (!error) {
            error = Error(here, Cat("unknown escape '\\", absl::string_view(&e, 1),
                                    "' in string (use \\\" \\\\ \\n \\t \\r)"));
          }
          continue;
      }
    } else if (c == '\0') {
      if (!error) error = Error(here, "NUL byte in string");
      continue;
    }
    if (token.text.size() >= kMaxTokenBytes) {
      if (!error) error = Error(open, Cat("string longer than ", kMaxTokenBytes, " bytes"));
      continue;
    }
    token.text.push_back(c);
  }
  if (error) return *std::move(error);
  return token;
}

Token Lexer::LexBare() {
  Position pos{file_, line_, column_};
  size_t start = offset_;
  while (offset_ < text_.size() && !IsDelimiter(text_[offset_]) && !IsControl(text_[offset_])) {
    Advance();
  }
  std::string_view word = text_.substr(start, offset_ - start);
  if (word.size() > kMaxTokenBytes) {
    return Error(pos, Cat("word longer than ", kMaxTokenBytes, " bytes"));
  }
  return ClassifyBare(word, pos);
}

}  // namespace ringmail::config
