// Tests of the ESMTP listener's daemon-wide admission (listeners/esmtp/listener.h,
// ListenerShared): connection and per-address limits, the per-address connection rate in
// its one-minute window, and the bound on the addresses it remembers.
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "listeners/esmtp/listener.h"

namespace ringmail::listeners::esmtp {
namespace {

using Admit = ListenerShared::Admit;
constexpr int64_t kAny = 1'000'000;

TEST(ListenerSharedTest, ConnectionsAndPerAddressLimits) {
  ListenerShared shared;
  EXPECT_EQ(shared.TryAdmit("192.0.2.1", 2, 1, 0, 0), Admit::kOk);
  EXPECT_EQ(shared.TryAdmit("192.0.2.1", 2, 1, 0, 0), Admit::kTooManyFromIp);
  EXPECT_EQ(shared.TryAdmit("192.0.2.2", 2, 1, 0, 0), Admit::kOk);
  EXPECT_EQ(shared.TryAdmit("192.0.2.3", 2, 1, 0, 0), Admit::kTooManyConnections);
  EXPECT_EQ(shared.connections(), 2);
  shared.Release("192.0.2.1");
  EXPECT_EQ(shared.TryAdmit("192.0.2.1", 2, 1, 0, 0), Admit::kOk);
  // Without a rate limit nothing is remembered of an address once its last connection closes.
  shared.Release("192.0.2.1");
  shared.Release("192.0.2.2");
  EXPECT_EQ(shared.addresses(), 0u);
}

// The rate counts admitted connections in a window that starts at the first; closing them
// does not give the allowance back, the window's end does.
TEST(ListenerSharedTest, RateWindowOutlivesTheConnections) {
  ListenerShared shared;
  const uint64_t t0 = 1'000'000;
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(shared.TryAdmit("198.51.100.7", kAny, 0, 3, t0 + i), Admit::kOk);
    shared.Release("198.51.100.7");
  }
  EXPECT_EQ(shared.TryAdmit("198.51.100.7", kAny, 0, 3, t0 + 59'999), Admit::kTooFastFromIp);
  EXPECT_EQ(shared.TryAdmit("198.51.100.8", kAny, 0, 3, t0 + 59'999), Admit::kOk);
  EXPECT_EQ(shared.TryAdmit("198.51.100.7", kAny, 0, 3, t0 + 60'000), Admit::kOk);
  EXPECT_EQ(shared.connections(), 2);
}

// Addresses with nothing open are swept once their window is over: a client with many
// addresses does not grow the table past what the last minute brought.
TEST(ListenerSharedTest, ClosedAddressesAreSweptAfterTheirWindow) {
  ListenerShared shared;
  for (int i = 0; i < 5000; ++i) {
    const std::string ip = absl::StrCat("10.0.", i / 250, ".", i % 250);
    ASSERT_EQ(shared.TryAdmit(ip, kAny, 0, 10, 0), Admit::kOk);
    shared.Release(ip);
  }
  EXPECT_EQ(shared.addresses(), 5000u);  // remembered for their rate window
  for (int i = 0; i < 5000; ++i) {
    const std::string ip = absl::StrCat("10.1.", i / 250, ".", i % 250);
    ASSERT_EQ(shared.TryAdmit(ip, kAny, 0, 10, 120'000), Admit::kOk);
    shared.Release(ip);
  }
  EXPECT_LT(shared.addresses(), 5000u + 5000u);
  EXPECT_GE(shared.addresses(), 5000u);  // this minute's are all still there
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
