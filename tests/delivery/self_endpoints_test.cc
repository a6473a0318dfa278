// SelfEndpoints: which next hops are this daemon's own listeners (delivery/self_endpoints.h).
#include "delivery/self_endpoints.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

config::ListenConfig Listen(const std::string& text) {
  absl::StatusOr<config::NetAddress> a = config::NetAddress::Parse(text);
  EXPECT_TRUE(a.ok()) << text;
  config::ListenConfig l;
  l.address = a.value_or(config::NetAddress{});
  return l;
}

// A next hop, as the SMTP client has it.
dns::IpAddress Ip(const std::string& text) {
  std::optional<dns::IpAddress> a = dns::IpAddress::Parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(dns::IpAddress{});
}

// An interface address, as LocalAddresses() gives it.
config::IpAddress Local(const std::string& text) {
  std::optional<config::IpAddress> a = config::IpAddress::Parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(config::IpAddress{});
}

TEST(SelfEndpointsTest, ASpecificListenerIsItsAddressAndPortOnly) {
  SelfEndpoints self = SelfEndpoints::Make({Listen("127.0.0.1:2525"), Listen("[::1]:2526")}, {});
  EXPECT_TRUE(self.Contains(Ip("127.0.0.1"), 2525));
  EXPECT_TRUE(self.Contains(Ip("::1"), 2526));
  EXPECT_FALSE(self.Contains(Ip("127.0.0.1"), 25)) << "another port is another server";
  EXPECT_FALSE(self.Contains(Ip("127.0.0.2"), 2525)) << "a specific listener binds one address";
  EXPECT_FALSE(self.Contains(Ip("::1"), 2525));
  EXPECT_FALSE(self.Contains(Ip("192.0.2.1"), 2525));
}

TEST(SelfEndpointsTest, AWildcardListenerIsEveryLocalAddressAndAllOfLoopback) {
  const std::vector<config::IpAddress> local = {Local("192.0.2.7"), Local("2001:db8::7"),
                                                Local("127.0.0.1")};
  SelfEndpoints self = SelfEndpoints::Make({Listen("0.0.0.0:25")}, local);
  EXPECT_TRUE(self.Contains(Ip("192.0.2.7"), 25));
  EXPECT_TRUE(self.Contains(Ip("127.0.0.1"), 25));
  EXPECT_TRUE(self.Contains(Ip("127.3.2.1"), 25)) << "all of 127.0.0.0/8 reaches lo";
  EXPECT_FALSE(self.Contains(Ip("192.0.2.8"), 25)) << "not an address of this host";
  EXPECT_FALSE(self.Contains(Ip("192.0.2.7"), 587));
  // IPv6 listening sockets are IPv6-only, and 0.0.0.0 is IPv4 only.
  EXPECT_FALSE(self.Contains(Ip("2001:db8::7"), 25));
  EXPECT_FALSE(self.Contains(Ip("::1"), 25));
}

TEST(SelfEndpointsTest, AnIpv6WildcardIsEveryLocalIpv6AddressAndTheLoopback) {
  const std::vector<config::IpAddress> local = {Local("192.0.2.7"), Local("2001:db8::7")};
  SelfEndpoints self = SelfEndpoints::Make({Listen("[::]:25")}, local);
  EXPECT_TRUE(self.Contains(Ip("2001:db8::7"), 25));
  EXPECT_TRUE(self.Contains(Ip("::1"), 25));
  EXPECT_FALSE(self.Contains(Ip("192.0.2.7"), 25));
  EXPECT_FALSE(self.Contains(Ip("127.0.0.1"), 25));
  EXPECT_FALSE(self.Contains(Ip("2001:db8::8"), 25));
}

// Addresses that reach the listener by another spelling: an AAAA record of ::ffff:127.0.0.1
// connects through an IPv6 socket to the IPv4 listener; 0.0.0.0 is this host to connect().
TEST(SelfEndpointsTest, MappedAndUnspecifiedAddressesAreSeenThrough) {
  SelfEndpoints wildcard = SelfEndpoints::Make({Listen("0.0.0.0:25")}, {Local("192.0.2.7")});
  EXPECT_TRUE(wildcard.Contains(Ip("::ffff:127.0.0.1"), 25));
  EXPECT_TRUE(wildcard.Contains(Ip("::ffff:192.0.2.7"), 25));
  EXPECT_TRUE(wildcard.Contains(Ip("0.0.0.0"), 25));
  EXPECT_FALSE(wildcard.Contains(Ip("::ffff:192.0.2.8"), 25));
  SelfEndpoints specific = SelfEndpoints::Make({Listen("127.0.0.1:2525")}, {});
  EXPECT_TRUE(specific.Contains(Ip("::ffff:127.0.0.1"), 2525));
  EXPECT_TRUE(specific.Contains(Ip("0.0.0.0"), 2525)) << "connect(0.0.0.0) reaches 127.0.0.1";
  EXPECT_TRUE(specific.Contains(Ip("::ffff:0.0.0.0"), 2525));
  SelfEndpoints v6 = SelfEndpoints::Make({Listen("[::]:25")}, {});
  EXPECT_TRUE(v6.Contains(Ip("::"), 25));
}

TEST(SelfEndpointsTest, NoListenerNoSelf) {
  SelfEndpoints self = SelfEndpoints::Make({}, {Local("127.0.0.1")});
  EXPECT_FALSE(self.Contains(Ip("127.0.0.1"), 25));
}

TEST(SelfEndpointsTest, LocalAddressesIncludeTheLoopback) {
  absl::StatusOr<std::vector<config::IpAddress>> local = LocalAddresses();
  ASSERT_TRUE(local.ok()) << local.status();
  bool loopback = false;
  for (const config::IpAddress& a : *local) loopback = loopback || a == Local("127.0.0.1");
  EXPECT_TRUE(loopback);
}

}  // namespace
}  // namespace ringmail::delivery
