#include "listeners/control/protocol.h"

#include "gtest/gtest.h"

namespace ringmail::control {
namespace {

TEST(ControlProtocolTest, ParsesWordsQuotesAndJson) {
  auto r = ParseRequestLine("threadpool set \"Batch Unlink\" concurrency 3 --json");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->words, (std::vector<std::string>{"threadpool", "set", "Batch Unlink",
                                                "concurrency", "3"}));
  EXPECT_TRUE(r->json);
  auto again = ParseRequestLine(FormatRequestLine(*r).substr(0, FormatRequestLine(*r).size() - 1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->words, r->words);
  EXPECT_TRUE(again->json);
}

TEST(ControlProtocolTest, RejectsBadRequests) {
  EXPECT_FALSE(ParseRequestLine("").ok());
  EXPECT_FALSE(ParseRequestLine("   ").ok());
  EXPECT_FALSE(ParseRequestLine("summary \"unterminated").ok());
  EXPECT_FALSE(ParseRequestLine(std::string("sum\x01mary")).ok());
  EXPECT_FALSE(ParseRequestLine(std::string(kRequestLineMax + 1, 'a')).ok());
  std::string many;
  for (size_t i = 0; i <= kRequestWordsMax; ++i) many += "w ";
  EXPECT_FALSE(ParseRequestLine(many).ok());
}

TEST(ControlProtocolTest, ResponseFramesSurviveAnySplit) {
  std::string wire = EncodeResponse({true, "hello\nworld\n"}) + EncodeResponse({false, "bad"});
  for (size_t split = 0; split <= wire.size(); ++split) {
    ResponseDecoder d;
    std::vector<Response> got;
    for (std::string_view part : {std::string_view(wire).substr(0, split),
                                  std::string_view(wire).substr(split)}) {
      auto r = d.Feed(part);
      ASSERT_TRUE(r.ok());
      while (r->has_value()) {
        got.push_back(std::move(**r));
        r = d.Feed("");
        ASSERT_TRUE(r.ok());
      }
    }
    ASSERT_EQ(got.size(), 2u) << split;
    EXPECT_TRUE(got[0].ok);
    EXPECT_EQ(got[0].body, "hello\nworld\n");
    EXPECT_FALSE(got[1].ok);
    EXPECT_EQ(got[1].body, "bad");
  }
}

TEST(ControlProtocolTest, GarbageResponseIsAnError) {
  ResponseDecoder d;
  EXPECT_FALSE(d.Feed("HTTP/1.1 200 OK\r\n").ok());
  ResponseDecoder d2;
  EXPECT_FALSE(d2.Feed("OK 99999999999\n").ok());
}

TEST(ControlProtocolTest, TablesAlign) {
  EXPECT_EQ(FormatTable({"name", "n"}, {{"Unlink", "6"}, {"IO", "50"}}),
            "name    n\nUnlink  6\nIO      50\n");
}

}  // namespace
}  // namespace ringmail::control
