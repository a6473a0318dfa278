// Tests of config/parser: the generic tree, includes, limits, and error recovery with exact
// positions.
#include "config/parser.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

using ::testing::ElementsAre;

std::string TestPath(const std::string& name) {
  return std::string(RINGMAIL_SOURCE_DIR) + "/tests/config/testdata/" + name;
}

std::vector<std::string> Errors(const Diagnostics& diagnostics) {
  std::vector<std::string> out;
  for (const ConfigError& error : diagnostics.errors()) out.push_back(error.ToString());
  return out;
}

std::vector<std::string> ParseErrors(std::string_view text) {
  Diagnostics diagnostics;
  ParseConfigText(text, "t.conf", &diagnostics);
  return Errors(diagnostics);
}

TEST(ParserTest, BuildsAssignmentsScopesAndLists) {
  Diagnostics d;
  std::vector<Node> nodes = ParseConfigText(
      "spool_dir = \"/x\"\n"
      "eventloop \"p\" { concurrency = \"75%\" }\n"
      "ESMTP_Listener {\n"
      "  relay_hosts = ( \"127.0.0.0/8\" \"::1\" )\n"
      "  Listen \"127.0.0.1:25\" { }\n"
      "}\n",
      "t.conf", &d);
  ASSERT_FALSE(d.has_errors()) << d.ToStatus();
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[0].kind, Node::Kind::kAssignment);
  EXPECT_EQ(nodes[0].name, "spool_dir");
  EXPECT_EQ(nodes[0].value.items[0].text, "/x");
  EXPECT_EQ(nodes[0].value.pos.column, 13);
  EXPECT_EQ(nodes[1].kind, Node::Kind::kScope);
  ASSERT_TRUE(nodes[1].argument.has_value());
  EXPECT_EQ(nodes[1].argument->text, "p");
  ASSERT_EQ(nodes[1].children.size(), 1u);
  EXPECT_EQ(nodes[1].children[0].name, "concurrency");
  const Node& smtp = nodes[2];
  EXPECT_FALSE(smtp.argument.has_value());
  ASSERT_EQ(smtp.children.size(), 2u);
  EXPECT_TRUE(smtp.children[0].value.is_list);
  EXPECT_EQ(smtp.children[0].value.items.size(), 2u);
  EXPECT_EQ(smtp.children[0].value.pos.line, 4);
  EXPECT_EQ(smtp.children[0].value.pos.column, 17);
  EXPECT_EQ(smtp.children[1].name, "Listen");
  EXPECT_EQ(smtp.children[1].pos.line, 5);
  EXPECT_EQ(smtp.children[1].pos.column, 3);
  EXPECT_TRUE(smtp.children[1].children.empty());
}

TEST(ParserTest, EmptyListAndBareScopeArgument) {
  Diagnostics d;
  std::vector<Node> nodes = ParseConfigText("a = ( )\nDomain example.com { }\n", "t.conf", &d);
  ASSERT_FALSE(d.has_errors()) << d.ToStatus();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_TRUE(nodes[0].value.is_list);
  EXPECT_TRUE(nodes[0].value.items.empty());
  EXPECT_EQ(nodes[1].argument->text, "example.com");
}

TEST(ParserTest, UnbalancedBraces) {
  EXPECT_THAT(ParseErrors("ESMTP_Listener {\n  max_errors = 3\n"),
              ElementsAre("t.conf:1:1: scope 'ESMTP_Listener' is never closed (missing '}')"));
  EXPECT_THAT(ParseErrors("a = 1\n}\nb = 2\n"),
              ElementsAre("t.conf:2:1: unexpected '}' (no scope is open)"));
}

TEST(ParserTest, MissingValueAndMissingBrace) {
  EXPECT_THAT(ParseErrors("spool_dir =\n"),
              ElementsAre("t.conf:2:1: expected a value, got end of file"));
  EXPECT_THAT(ParseErrors("max_errors = = 3\n"),
              ElementsAre("t.conf:1:14: expected a value, got '='"));
  EXPECT_THAT(ParseErrors("Domain \"x.com\" max = 3\n"),
              ElementsAre("t.conf:1:16: expected '{' after Domain \"x.com\", got 'max'"));
  EXPECT_THAT(ParseErrors("spool_dir \"/x\"\n"),
              ElementsAre("t.conf:2:1: expected '{' after spool_dir \"/x\", got end of file"));
  EXPECT_THAT(ParseErrors("spool_dir\n"),
              ElementsAre("t.conf:2:1: expected '=' or '{' after 'spool_dir', got end of file"));
  EXPECT_THAT(ParseErrors("\"loose\" = 1\n"),
              ElementsAre("t.conf:1:1: expected a key or a scope name, got \"loose\""));
}

TEST(ParserTest, ListErrors) {
  EXPECT_THAT(ParseErrors("a = ( \"x\"\nb = 2\n"),
              ElementsAre("t.conf:1:5: list is never closed (missing ')')"));
  EXPECT_THAT(ParseErrors("a = ( ( \"x\" ) )\n"),
              ElementsAre("t.conf:1:7: lists cannot be nested"));
}

TEST(ParserTest, RecoversAndReportsSeveralErrors) {
  std::vector<std::string> errors = ParseErrors(
      "a = = 1\n"
      "b = \"open\n"
      "c = 10XB\n"
      "ok = 1\n"
      "S { x = }\n"
      "d = 2\n");
  EXPECT_THAT(errors,
              ElementsAre("t.conf:1:5: expected a value, got '='",
                          "t.conf:2:5: unterminated string (a quoted string must end on its line)",
                          "t.conf:3:5: unknown unit 'XB' in '10XB' (sizes: B, K, KB, KiB, M, MB, "
                          "MiB, G, GB, GiB, T, TB, TiB; durations: us, ms, s, m, h, d, w)",
                          "t.conf:5:9: expected a value, got '}'"));
}

// A unit after a space is named where it was written, and the next statement still parses
// (it used to be read as a scope named MB, with the error on the next line).
TEST(ParserTest, AUnitAfterASpaceIsNamedWhereItIs) {
  EXPECT_THAT(ParseErrors("S {\n  max_message_size = 10 MB\n}\nb = 30 s\nc = 1\n"),
              ElementsAre("t.conf:2:25: unit 'MB' must follow the number without a space: 10MB",
                          "t.conf:4:8: unit 's' must follow the number without a space: 30s"));
  EXPECT_THAT(ParseErrors("a = 10\nMB { }\nb = 2 c = 3\n"), ElementsAre());  // other lines
}

// Bytes that are not UTF-8 are escaped in messages; UTF-8 is shown as it is.
TEST(ParserTest, InvalidUtf8IsEscapedInMessages) {
  EXPECT_THAT(ParseErrors("caf\xc3\xa9 = = 1\n\xff\xfe\xc0\xaf = = 2\n"),
              ElementsAre("t.conf:1:9: expected a value, got '='",
                          "t.conf:2:8: expected a value, got '='"));
  EXPECT_THAT(ParseErrors("x\xff\xc3\xa9 {\n"),
              ElementsAre(::testing::HasSubstr("'x\\xff\xc3\xa9'")));
}

TEST(ParserTest, ErrorCountIsCapped) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "}\n";
  Diagnostics d;
  ParseConfigText(text, "t.conf", &d);
  EXPECT_EQ(d.errors().size(), Diagnostics::kMaxErrors);
  std::string message(d.ToStatus().message());
  EXPECT_NE(message.find("(too many errors; only the first 25 are shown)"), std::string::npos);
}

TEST(ParserTest, ScopeNestingLimit) {
  std::string text;
  for (int i = 0; i < kMaxScopeDepth; ++i) text += "S {\n";
  for (int i = 0; i < kMaxScopeDepth; ++i) text += "}\n";
  EXPECT_TRUE(ParseErrors(text).empty());
  std::string deeper = "S {\n" + text + "}\n";
  EXPECT_THAT(ParseErrors(deeper),
              ElementsAre("t.conf:9:1: scopes nested too deeply (more than 8 levels)"));
}

TEST(ParserTest, ListItemLimit) {
  std::string text = "a = (";
  for (size_t i = 0; i <= kMaxListItems; ++i) text += " x";
  text += " )\n";
  std::vector<std::string> errors = ParseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "t.conf:1:" + std::to_string(6 + 2 * kMaxListItems + 1) +
                           ": list has more than 4096 items");
}

TEST(ParserTest, FileSizeLimit) {
  std::string text(kMaxFileBytes + 1, '#');
  EXPECT_THAT(ParseErrors(text), ElementsAre("t.conf: file is larger than 4194304 bytes"));
}

TEST(ParserTest, IncludeIsRelativeToTheIncludingFile) {
  Diagnostics d;
  std::vector<Node> nodes = ParseConfigFile(TestPath("include/main.conf"), &d);
  ASSERT_FALSE(d.has_errors()) << d.ToStatus();
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[0].name, "spool_dir");
  EXPECT_EQ(nodes[1].name, "ESMTP_Listener");
  EXPECT_EQ(nodes[1].pos.file, 1);
  EXPECT_EQ(d.file_name(1), TestPath("include/listener.conf"));
  // An include inside a scope splices into that scope.
  ASSERT_EQ(nodes[2].children.size(), 1u);
  EXPECT_EQ(nodes[2].children[0].name, "max_outbound_connections");
}

TEST(ParserTest, IncludeMissing) {
  Diagnostics d;
  ParseConfigFile(TestPath("include/missing.conf"), &d);
  EXPECT_THAT(
      Errors(d),
      ElementsAre(TestPath("include/missing.conf") + ":2:9: cannot open include file '" +
                  TestPath("include/does_not_exist.conf") + "': No such file or directory"));
}

TEST(ParserTest, IncludeCycle) {
  Diagnostics d;
  ParseConfigFile(TestPath("include/cycle_a.conf"), &d);
  std::string a = TestPath("include/cycle_a.conf");
  std::string b = TestPath("include/cycle_b.conf");
  EXPECT_THAT(Errors(d), ElementsAre(b + ":1:9: include cycle: " + a + " -> " + b + " -> " + a));
}

TEST(ParserTest, IncludeDepthLimit) {
  Diagnostics ok;
  std::vector<Node> nodes = ParseConfigFile(TestPath("include/deep_2.conf"), &ok);
  EXPECT_FALSE(ok.has_errors()) << ok.ToStatus();  // 8 levels below the main file
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].value.items[0].text, "/deep");
  Diagnostics d;
  ParseConfigFile(TestPath("include/deep_0.conf"), &d);
  EXPECT_THAT(Errors(d), ElementsAre(TestPath("include/deep_8.conf") +
                                     ":2:9: includes nested too deeply (more than 8 levels)"));
}

TEST(ParserTest, UnreadableMainFile) {
  Diagnostics d;
  ParseConfigFile(TestPath("no_such.conf"), &d);
  EXPECT_THAT(Errors(d), ElementsAre(TestPath("no_such.conf") +
                                     ": cannot read config file: No such file or directory"));
}

TEST(ParserTest, ParseValueText) {
  absl::StatusOr<Value> v = ParseValueText("( \"a\" b 3 )");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->is_list);
  EXPECT_EQ(v->items.size(), 3u);
  EXPECT_FALSE(ParseValueText("1 2").ok());
  EXPECT_FALSE(ParseValueText("").ok());
}

}  // namespace
}  // namespace ringmail::config
