// DotStuffer: DATA wire encoding — a table, every split point, and a seeded property run
// checked against an independent strict decoder.
#include <random>
#include <string>
#include <vector>

#include "delivery/client_machine.h"
#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

std::string Encode(const std::vector<std::string_view>& chunks) {
  DotStuffer stuffer;
  std::string out;
  for (std::string_view chunk : chunks) stuffer.Encode(chunk, &out);
  stuffer.Finish(&out);
  return out;
}

// What a strict server would store: lines end in CRLF only (no bare CR or LF allowed on the
// wire), the data ends at the first "." line, one leading '.' is removed from other lines.
// Returns false when the wire form is not well-formed or has bytes after the end.
bool StrictDecode(const std::string& wire, std::string* content) {
  content->clear();
  size_t pos = 0;
  while (pos < wire.size()) {
    size_t cr = wire.find_first_of("\r\n", pos);
    if (cr == std::string::npos || wire[cr] != '\r' || cr + 1 >= wire.size() ||
        wire[cr + 1] != '\n') {
      return false;
    }
    std::string line = wire.substr(pos, cr - pos);
    pos = cr + 2;
    if (line == ".") return pos == wire.size();
    if (!line.empty() && line[0] == '.') line.erase(0, 1);
    *content += line + "\r\n";
  }
  return false;  // no terminator
}

// The content a correct encoder must deliver: bare CR / bare LF become CRLF, and a final
// CRLF is added when missing.
std::string Normalize(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\r') {
      out += "\r\n";
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else if (in[i] == '\n') {
      out += "\r\n";
    } else {
      out.push_back(in[i]);
    }
  }
  if (!out.empty() && (out.size() < 2 || out.substr(out.size() - 2) != "\r\n")) out += "\r\n";
  return out;
}

TEST(DotStufferTest, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ".\r\n"},
      {"a\r\n", "a\r\n.\r\n"},
      {"a", "a\r\n.\r\n"},
      {".", "..\r\n.\r\n"},
      {".\r\n", "..\r\n.\r\n"},
      {"..\r\n", "...\r\n.\r\n"},
      {"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},
      {"a.b\r\n", "a.b\r\n.\r\n"},
      {"a\r\n.", "a\r\n..\r\n.\r\n"},
      {"a\nb", "a\r\nb\r\n.\r\n"},
      {"a\rb", "a\r\nb\r\n.\r\n"},
      {"a\r", "a\r\n.\r\n"},
      {"\n.\n", "\r\n..\r\n.\r\n"},
      {"\r\n", "\r\n.\r\n"},
      // SMTP smuggling attempts stay body.
      {"x\r\n.\r\nMAIL FROM:<e@vil>\r\n", "x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n"},
      {"x\n.\r\nRSET\r\n", "x\r\n..\r\nRSET\r\n.\r\n"},
      {"x\r\n.\nRSET", "x\r\n..\r\nRSET\r\n.\r\n"},
      {"x\r.\r", "x\r\n..\r\n.\r\n"},
  };
  for (const auto& [in, want] : cases) {
    EXPECT_EQ(Encode({in}), want) << "input '" << in << "'";
  }
}

TEST(DotStufferTest, EverySplitPointMatchesWholeInput) {
  const std::string body =
      "From: a@b\r\n.\r\n..two\r\n.\r\nx\ny\rz\r\n\r\n.\r.\n.end.\r\n.";
  const std::string whole = Encode({body});
  for (size_t a = 0; a <= body.size(); ++a) {
    std::string_view v(body);
    EXPECT_EQ(Encode({v.substr(0, a), v.substr(a)}), whole) << "split at " << a;
    for (size_t b = a; b <= body.size(); ++b) {
      ASSERT_EQ(Encode({v.substr(0, a), v.substr(a, b - a), v.substr(b)}), whole)
          << "splits at " << a << "," << b;
    }
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < body.size(); ++i) bytes.push_back(std::string_view(body).substr(i, 1));
  EXPECT_EQ(Encode(bytes), whole);
}

TEST(DotStufferTest, RandomBodiesRoundTripThroughAStrictDecoder) {
  std::mt19937_64 rng(7);
  const char alphabet[] = {'.', '.', '\r', '\n', 'a', ' ', '\r', '\n'};
  for (int iteration = 0; iteration < 5000; ++iteration) {
    std::string body;
    size_t length = rng() % 64;
    for (size_t i = 0; i < length; ++i) body.push_back(alphabet[rng() % sizeof(alphabet)]);
    std::vector<std::string_view> chunks;
    std::string_view rest(body);
    while (!rest.empty()) {
      size_t take = 1 + rng() % rest.size();
      chunks.push_back(rest.substr(0, take));
      rest.remove_prefix(take);
    }
    std::string wire = Encode(chunks);
    std::string decoded;
    ASSERT_TRUE(StrictDecode(wire, &decoded)) << "body '" << body << "' wire '" << wire << "'";
    ASSERT_EQ(decoded, Normalize(body)) << "body '" << body << "'";
  }
}

TEST(DotStufferTest, ResetAndCounts) {
  DotStuffer stuffer;
  std::string out;
  stuffer.Encode("abc", &out);
  EXPECT_EQ(stuffer.input_bytes(), 3u);
  stuffer.Reset();
  EXPECT_EQ(stuffer.input_bytes(), 0u);
  out.clear();
  stuffer.Encode(".x\r\n", &out);
  stuffer.Finish(&out);
  EXPECT_EQ(out, "..x\r\n.\r\n");
}

}  // namespace
}  // namespace ringmail::delivery
