// config/parser.cc — recursive-descent parser with include handling and error recovery.
#include "config/parser.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/small_file.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

// One-token lookahead over a lexer. A lexer error is reported as it is met and stands in the
// token stream as an empty word, so `b = "unterminated` still parses as an assignment and
// the next line starts a fresh statement (the load fails anyway: the error is recorded).
class Stream {
 public:
  Stream(std::string_view text, int file, Diagnostics* diagnostics)
      : lexer_(text, file), diagnostics_(diagnostics) {}

  const Token& Peek() {
    if (!peeked_) {
      Token token = lexer_.Next();
      if (token.kind == TokenKind::kError) {
        diagnostics_->Error(token.pos, std::move(token.text));
        token.kind = TokenKind::kWord;
        token.text.clear();
      }
      peeked_ = std::move(token);
    }
    return *peeked_;
  }

  Token Take() {
    Peek();
    Token token = std::move(*peeked_);
    peeked_.reset();
    return token;
  }

 private:
  Lexer lexer_;
  Diagnostics* diagnostics_;
  std::optional<Token> peeked_;
};

std::string DirectoryOf(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return "";
  return std::string(path.substr(0, slash + 1));
}

std::string ErrnoText(int error) { return std::strerror(error); }

std::optional<std::string> RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return std::nullopt;
  std::string out(resolved);
  std::free(resolved);
  return out;
}

class Parser {
 public:
  explicit Parser(Diagnostics* diagnostics) : diagnostics_(diagnostics) {}

  // Parses one file's text into `out` at scope depth `depth`.
  void ParseFile(std::string_view text, int file, std::string canonical, std::vector<Node>* out,
                 int depth);

  void set_total_bytes(size_t bytes) { total_bytes_ = bytes; }

 private:
  // Statements until the end of the text, or until the '}' of `scope` (consumed).
  void ParseStatements(Stream& s, std::vector<Node>* out, int depth, const Node* scope);
  void ParseStatement(Stream& s, std::vector<Node>* out, int depth);
  bool SpacedUnit(Stream& s, const Value& value);
  void ParseScope(Stream& s, Node node, std::vector<Node>* out, int depth);
  void ParseInclude(Stream& s, std::vector<Node>* out, int depth);
  std::optional<std::string> CheckInclude(const Token& path_token, const std::string& resolved);
  // Skips the rest of the line of `where` (whole blocks included), stopping before a '}'.
  void Recover(Stream& s, Position where);
  void SkipBlock(Stream& s);

  Diagnostics* diagnostics_;
  struct OpenFile {
    int file;
    std::string canonical;
  };
  std::vector<OpenFile> open_files_;  // the include stack, outermost first
  int files_loaded_ = 1;
  size_t total_bytes_ = 0;
};

void Parser::ParseFile(std::string_view text, int file, std::string canonical,
                       std::vector<Node>* out, int depth) {
  open_files_.push_back(OpenFile{file, std::move(canonical)});
  Stream s(text, file, diagnostics_);
  ParseStatements(s, out, depth, nullptr);
  open_files_.pop_back();
}

void Parser::ParseStatements(Stream& s, std::vector<Node>* out, int depth, const Node* scope) {
  while (true) {
    const Token& token = s.Peek();
    switch (token.kind) {
      case TokenKind::kEnd:
        if (scope != nullptr) {
          diagnostics_->Error(scope->pos,
                              Cat("scope '", scope->name, "' is never closed (missing '}')"));
        }
        return;
      case TokenKind::kRBrace:
        if (scope != nullptr) {
          s.Take();
          return;
        }
        diagnostics_->Error(token.pos, "unexpected '}' (no scope is open)");
        s.Take();
        break;
      case TokenKind::kWord:
        ParseStatement(s, out, depth);
        break;
      default: {
        Position where = token.pos;
        diagnostics_->Error(where, Cat("expected a key or a scope name, got ", token.Describe()));
        Recover(s, where);
        break;
      }
    }
  }
}

bool ParseValue(Stream& s, Value* value, Diagnostics* diagnostics, Position* error_at) {
  const Token& first = s.Peek();
  value->pos = first.pos;
  if (first.is_scalar()) {
    value->items.push_back(s.Take());
    return true;
  }
  if (first.kind != TokenKind::kLParen) {
    *error_at = first.pos;
    diagnostics->Error(first.pos, Cat("expected a value, got ", first.Describe()));
    return false;
  }
  value->is_list = true;
  s.Take();
  while (true) {
    const Token& item = s.Peek();
    if (item.kind == TokenKind::kRParen) {
      s.Take();
      return true;
    }
    if (!item.is_scalar()) {
      *error_at = item.pos;
      if (item.kind == TokenKind::kLParen) {
        diagnostics->Error(item.pos, "lists cannot be nested");
      } else {
        diagnostics->Error(value->pos, "list is never closed (missing ')')");
      }
      return false;
    }
    if (value->items.size() == kMaxListItems) {
      diagnostics->Error(item.pos, Cat("list has more than ", kMaxListItems, " items"));
    }
    Token taken = s.Take();
    if (value->items.size() < kMaxListItems) value->items.push_back(std::move(taken));
  }
}

// `size = 10 MB`: a unit after a space would otherwise be read as the name of the next
// statement, and the error would point past it. Named here, where it was written.
bool Parser::SpacedUnit(Stream& s, const Value& value) {
  const Token& next = s.Peek();
  if (value.is_list || value.items.size() != 1 || next.kind != TokenKind::kWord) return false;
  const Token& number = value.items[0];
  if (number.kind != TokenKind::kInteger || next.pos.line != number.pos.line ||
      next.pos.file != number.pos.file || !IsUnitName(next.text)) {
    return false;
  }
  diagnostics_->Error(next.pos, Cat("unit '", EscapeForMessage(next.text),
                                    "' must follow the number without a space: ", number.text,
                                    EscapeForMessage(next.text)));
  s.Take();
  return true;
}

void Parser::ParseStatement(Stream& s, std::vector<Node>* out, int depth) {
  Token name = s.Take();
  const Token& next = s.Peek();
  if (absl::EqualsIgnoreCase(name.text, "include") &&
      (next.kind == TokenKind::kString || next.kind == TokenKind::kWord)) {
    ParseInclude(s, out, depth);
    return;
  }
  Node node;
  node.name = std::move(name.text);
  node.pos = name.pos;
  if (next.kind == TokenKind::kEquals) {
    node.kind = Node::Kind::kAssignment;
    s.Take();
    Position error_at;
    if (!ParseValue(s, &node.value, diagnostics_, &error_at)) {
      Recover(s, error_at);
      return;
    }
    if (SpacedUnit(s, node.value)) return;
    out->push_back(std::move(node));
    return;
  }
  node.kind = Node::Kind::kScope;
  if (next.is_scalar()) node.argument = s.Take();
  if (s.Peek().kind != TokenKind::kLBrace) {
    const Token& bad = s.Peek();
    Position where = bad.pos;
    std::string after =
        node.argument ? Cat(node.name, " ", node.argument->Describe()) : Cat("'", node.name, "'");
    diagnostics_->Error(where, Cat("expected ", node.argument ? "'{'" : "'=' or '{'", " after ",
                                   after, ", got ", bad.Describe()));
    Recover(s, where);
    return;
  }
  ParseScope(s, std::move(node), out, depth);
}

void Parser::ParseScope(Stream& s, Node node, std::vector<Node>* out, int depth) {
  s.Take();  // '{'
  if (depth >= kMaxScopeDepth) {
    diagnostics_->Error(node.pos,
                        Cat("scopes nested too deeply (more than ", kMaxScopeDepth, " levels)"));
    SkipBlock(s);
    return;
  }
  ParseStatements(s, &node.children, depth + 1, &node);
  out->push_back(std::move(node));
}

std::optional<std::string> Parser::CheckInclude(const Token& path_token,
                                                const std::string& resolved) {
  if (static_cast<int>(open_files_.size()) > kMaxIncludeDepth) {
    diagnostics_->Error(path_token.pos, Cat("includes nested too deeply (more than ",
                                            kMaxIncludeDepth, " levels)"));
    return std::nullopt;
  }
  if (files_loaded_ >= kMaxIncludedFiles) {
    diagnostics_->Error(path_token.pos,
                        Cat("too many included files (at most ", kMaxIncludedFiles, ")"));
    return std::nullopt;
  }
  std::optional<std::string> canonical = RealPath(resolved);
  if (!canonical) {
    const int error = errno;
    diagnostics_->Error(path_token.pos, Cat("cannot open include file '",
                                            EscapeForMessage(resolved), "': ", ErrnoText(error)));
    return std::nullopt;
  }
  for (size_t i = 0; i < open_files_.size(); ++i) {
    if (open_files_[i].canonical != *canonical) continue;
    std::vector<std::string> chain;
    for (size_t j = i; j < open_files_.size(); ++j) {
      chain.push_back(diagnostics_->file_name(open_files_[j].file));
    }
    chain.push_back(EscapeForMessage(resolved));
    diagnostics_->Error(path_token.pos, Cat("include cycle: ", absl::StrJoin(chain, " -> ")));
    return std::nullopt;
  }
  return canonical;
}

void Parser::ParseInclude(Stream& s, std::vector<Node>* out, int depth) {
  Token path_token = s.Take();
  const std::string& including = diagnostics_->file_name(open_files_.back().file);
  std::string resolved = absl::StartsWith(path_token.text, "/")
                             ? path_token.text
                             : Cat(DirectoryOf(including), path_token.text);
  std::optional<std::string> canonical = CheckInclude(path_token, resolved);
  if (!canonical) return;
  absl::StatusOr<std::string> text = ReadSmallFile(*canonical, kMaxFileBytes);
  if (!text.ok()) {
    diagnostics_->Error(path_token.pos, Cat("cannot read include file '",
                                            EscapeForMessage(resolved), "': ",
                                            text.status().message()));
    return;
  }
  total_bytes_ += text->size();
  if (total_bytes_ > kMaxTotalBytes) {
    diagnostics_->Error(path_token.pos,
                        Cat("included files exceed ", kMaxTotalBytes, " bytes in all"));
    return;
  }
  ++files_loaded_;
  int file = diagnostics_->AddFile(resolved);
  ParseFile(*text, file, *std::move(canonical), out, depth);
}

void Parser::Recover(Stream& s, Position where) {
  while (true) {
    const Token& token = s.Peek();
    if (token.kind == TokenKind::kEnd || token.kind == TokenKind::kRBrace) return;
    if (token.pos.line != where.line) return;
    Token taken = s.Take();
    if (taken.kind == TokenKind::kLBrace) SkipBlock(s);
  }
}

void Parser::SkipBlock(Stream& s) {
  int open = 1;
  while (open > 0) {
    Token token = s.Take();
    if (token.kind == TokenKind::kEnd) return;
    if (token.kind == TokenKind::kLBrace) ++open;
    if (token.kind == TokenKind::kRBrace) --open;
  }
}

}  // namespace

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  return ringmail::ReadSmallFile(path, max_bytes);  // base/small_file.h, shared with tls/
}

std::vector<Node> ParseConfigText(std::string_view text, std::string_view name,
                                  Diagnostics* diagnostics) {
  std::vector<Node> nodes;
  int file = diagnostics->AddFile(std::string(name));
  if (text.size() > kMaxFileBytes) {
    diagnostics->ErrorWithoutPosition(std::string(name),
                                      Cat("file is larger than ", kMaxFileBytes, " bytes"));
    return nodes;
  }
  Parser parser(diagnostics);
  parser.set_total_bytes(text.size());
  // The canonical path lets an include of the main file itself be caught as a cycle.
  parser.ParseFile(text, file, RealPath(std::string(name)).value_or(std::string(name)), &nodes, 0);
  return nodes;
}

std::vector<Node> ParseConfigFile(const std::string& path, Diagnostics* diagnostics) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxFileBytes);
  if (!text.ok()) {
    diagnostics->ErrorWithoutPosition(path,
                                      Cat("cannot read config file: ", text.status().message()));
    return {};
  }
  return ParseConfigText(*text, path, diagnostics);
}

absl::StatusOr<Value> ParseValueText(std::string_view text) {
  Diagnostics diagnostics;
  int file = diagnostics.AddFile("<value>");
  Stream s(text, file, &diagnostics);
  Value value;
  Position error_at;
  if (ParseValue(s, &value, &diagnostics, &error_at) && s.Peek().kind != TokenKind::kEnd) {
    diagnostics.Error(s.Peek().pos, "unexpected text after the value");
  }
  if (diagnostics.has_errors()) return diagnostics.ToStatus();
  return value;
}

}  // namespace ringmail::config
