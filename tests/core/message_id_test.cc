// MessageId's renderings: the in-place digits (Hex, on every message's path) and the heap
// string (ToHex) spell the same 32 lowercase hex digits, and FromHex reads them back.
#include <string>

#include "core/message.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

TEST(MessageIdTest, HexInPlaceMatchesToHexAndReadsBack) {
  const MessageId id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(id.Hex().view(), "0123456789abcdeffedcba9876543210");
  EXPECT_EQ(id.ToHex(), id.Hex().view());
  MessageId back;
  ASSERT_TRUE(MessageId::FromHex(id.Hex().view(), &back));
  EXPECT_EQ(back, id);
  EXPECT_EQ(MessageId{}.Hex().view(), std::string(32, '0'));
}

}  // namespace
}  // namespace ringmail::core
