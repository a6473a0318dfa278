// base/utf8.h's EscapeForDisplay: what config errors and control replies show of raw text.
#include <string>

#include "base/utf8.h"
#include "gtest/gtest.h"

namespace ringmail {
namespace {

TEST(EscapeForDisplayTest, KeepsTextAndUtf8AndEscapesWhatATerminalWouldObey) {
  EXPECT_EQ(EscapeForDisplay("plain text\twith a tab", false), "plain text\twith a tab");
  EXPECT_EQ(EscapeForDisplay("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa8", false),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa8");
  // Not UTF-8: a lone continuation byte, an overlong '/', a surrogate, a cut sequence.
  EXPECT_EQ(EscapeForDisplay("a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe2\x82", false),
            "a\\x80b\\xc0\\xafc\\xed\\xa0\\x80d\\xe2\\x82");
  EXPECT_EQ(EscapeForDisplay(std::string("\x1b[31m\x7f\0x", 8), false),
            "\\x1b[31m\\x7f\\x00x");
  EXPECT_EQ(EscapeForDisplay("one\r\ntwo\n", false), "one\\r\\ntwo\\n");
  EXPECT_EQ(EscapeForDisplay("one\r\ntwo\n", true), "one\\r\ntwo\n");
  // C1 controls (U+009B is CSI to a terminal) and bidi overrides and isolates.
  EXPECT_EQ(EscapeForDisplay("x\xc2\x9b" "31m\xc2\x85y", false), "x\\u009b31m\\u0085y");
  EXPECT_EQ(EscapeForDisplay("\xe2\x80\xae" "cba\xe2\x81\xa6" "d\xe2\x81\xa9", false),
            "\\u202ecba\\u2066d\\u2069");
  EXPECT_EQ(EscapeForDisplay("\xc2\xa0\xe2\x80\xa9\xe2\x81\xa5", false),  // their neighbours
            "\xc2\xa0\xe2\x80\xa9\xe2\x81\xa5");
}

}  // namespace
}  // namespace ringmail
