// Tests of config/address: IP, CIDR, IP:PORT and route parsing, and CIDR matching.
#include "config/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

IpAddress Ip(const char* text) {
  std::optional<IpAddress> ip = IpAddress::Parse(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(IpAddress{});
}

TEST(IpAddressTest, ParseAndPrint) {
  EXPECT_TRUE(Ip("192.0.2.1").is_v4());
  EXPECT_EQ(Ip("192.0.2.1").ToString(), "192.0.2.1");
  EXPECT_FALSE(Ip("2001:db8::1").is_v4());
  EXPECT_EQ(Ip("2001:DB8:0::1").ToString(), "2001:db8::1");
  EXPECT_FALSE(IpAddress::Parse("").has_value());
  EXPECT_FALSE(IpAddress::Parse("256.0.0.1").has_value());
  EXPECT_FALSE(IpAddress::Parse("1.2.3").has_value());
  EXPECT_FALSE(IpAddress::Parse("[::1]").has_value());
  EXPECT_FALSE(IpAddress::Parse("fe80::1%eth0").has_value());
  EXPECT_FALSE(IpAddress::Parse(std::string(100, '1')).has_value());
  EXPECT_EQ(Ip("::ffff:10.1.2.3").Unmapped(), Ip("10.1.2.3"));
  EXPECT_EQ(Ip("::1").Unmapped(), Ip("::1"));
}

TEST(IpAddressTest, FromSockaddr) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  inet_pton(AF_INET, "198.51.100.7", &in.sin_addr);
  std::optional<IpAddress> v4 =
      IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&in), sizeof(in));
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(*v4, Ip("198.51.100.7"));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::1", &in6.sin6_addr);
  std::optional<IpAddress> v6 =
      IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&in6), sizeof(in6));
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(*v6, Ip("::1"));
  EXPECT_FALSE(IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&in6), 4).has_value());
  EXPECT_FALSE(IpAddress::FromSockaddr(nullptr, 0).has_value());
}

TEST(CidrTest, ParseAndContains) {
  Cidr loopback = Cidr::Parse("127.0.0.0/8").value();
  EXPECT_TRUE(loopback.Contains(Ip("127.0.0.1")));
  EXPECT_TRUE(loopback.Contains(Ip("127.255.255.255")));
  EXPECT_FALSE(loopback.Contains(Ip("128.0.0.1")));
  EXPECT_TRUE(loopback.Contains(Ip("::ffff:127.0.0.5")));
  EXPECT_FALSE(loopback.Contains(Ip("::1")));
  Cidr odd = Cidr::Parse("10.0.0.128/25").value();
  EXPECT_TRUE(odd.Contains(Ip("10.0.0.200")));
  EXPECT_FALSE(odd.Contains(Ip("10.0.0.127")));
  Cidr host6 = Cidr::Parse("::1").value();
  EXPECT_EQ(host6.prefix_length, 128);
  EXPECT_TRUE(host6.Contains(Ip("::1")));
  EXPECT_FALSE(host6.Contains(Ip("::2")));
  Cidr net6 = Cidr::Parse("2001:db8::/32").value();
  EXPECT_TRUE(net6.Contains(Ip("2001:db8:ffff::1")));
  EXPECT_FALSE(net6.Contains(Ip("2001:db9::1")));
  EXPECT_FALSE(net6.Contains(Ip("10.0.0.1")));
  Cidr mapped = Cidr::Parse("::ffff:0:0/96").value();
  EXPECT_TRUE(mapped.Contains(Ip("192.0.2.1")));
  Cidr all = Cidr::Parse("0.0.0.0/0").value();
  EXPECT_TRUE(all.Contains(Ip("203.0.113.9")));
  EXPECT_FALSE(all.Contains(Ip("2001:db8::1")));
  EXPECT_EQ(Cidr::Parse("192.0.2.7").value().ToString(), "192.0.2.7/32");
}

TEST(CidrTest, Errors) {
  EXPECT_EQ(Cidr::Parse("10.0.0.0/33").status().message(),
            "prefix length in '10.0.0.0/33' is out of range (0..32)");
  EXPECT_EQ(Cidr::Parse("::/129").status().message(),
            "prefix length in '::/129' is out of range (0..128)");
  EXPECT_EQ(Cidr::Parse("10.0.0.1/8").status().message(),
            "host bits are set in '10.0.0.1/8' (address and prefix disagree)");
  EXPECT_EQ(Cidr::Parse("10.0.0.0/").status().message(), "bad prefix length in '10.0.0.0/'");
  EXPECT_EQ(Cidr::Parse("10.0.0.0/-1").status().message(), "bad prefix length in '10.0.0.0/-1'");
  EXPECT_EQ(Cidr::Parse("example.com/8").status().message(),
            "bad CIDR block 'example.com/8' (expected ADDRESS or ADDRESS/PREFIX, e.g. "
            "10.0.0.0/8)");
}

TEST(CidrListTest, Contains) {
  CidrList list{{Cidr::Parse("10.0.0.0/8").value(), Cidr::Parse("::1").value()}};
  EXPECT_TRUE(list.Contains(Ip("10.9.9.9")));
  EXPECT_TRUE(list.Contains(Ip("::1")));
  EXPECT_FALSE(list.Contains(Ip("11.0.0.1")));
  EXPECT_FALSE(CidrList{}.Contains(Ip("10.0.0.1")));
}

TEST(NetAddressTest, Parse) {
  NetAddress v4 = NetAddress::Parse("127.0.0.1:2525").value();
  EXPECT_EQ(v4.port, 2525);
  EXPECT_EQ(v4.ToString(), "127.0.0.1:2525");
  NetAddress v6 = NetAddress::Parse("[::1]:25").value();
  EXPECT_EQ(v6.ToString(), "[::1]:25");
  EXPECT_EQ(NetAddress::Parse("[::1]", uint16_t{53}).value().port, 53);
  EXPECT_EQ(NetAddress::Parse("::1", uint16_t{53}).value().ToString(), "[::1]:53");
  EXPECT_EQ(NetAddress::Parse("10.0.0.1", uint16_t{53}).value().ToString(), "10.0.0.1:53");
  EXPECT_EQ(NetAddress::Parse("127.0.0.1:0").value().port, 0);
  EXPECT_EQ(NetAddress::Parse("127.0.0.1").status().message(),
            "missing port in '127.0.0.1' (expected IP:PORT, IPv6 as [::1]:PORT)");
  EXPECT_EQ(NetAddress::Parse("[::1:25").status().message(), "missing ']' in '[::1:25'");
  EXPECT_EQ(NetAddress::Parse("[::1]25").status().message(),
            "expected ':PORT' after ']' in '[::1]25'");
  EXPECT_EQ(NetAddress::Parse("1.2.3.4:+5").status().message(),
            "bad port '+5' in '1.2.3.4:+5' (expected 0..65535)");
  EXPECT_EQ(NetAddress::Parse("1.2.3.4:65536").status().message(),
            "bad port '65536' in '1.2.3.4:65536' (expected 0..65535)");
  EXPECT_FALSE(NetAddress::Parse("mx.example:25").ok());
}

TEST(RouteHostTest, Parse) {
  RouteHost literal = RouteHost::Parse("[127.0.0.1]:2526").value();
  EXPECT_TRUE(literal.literal);
  EXPECT_EQ(literal.host, "127.0.0.1");
  EXPECT_EQ(literal.port, 2526);
  EXPECT_EQ(literal.ToString(), "[127.0.0.1]:2526");
  RouteHost v6 = RouteHost::Parse("[::1]").value();
  EXPECT_TRUE(v6.literal);
  EXPECT_EQ(v6.port, 0);
  EXPECT_EQ(v6.ToString(), "[::1]");
  RouteHost name = RouteHost::Parse("Relay.Example.NET:587").value();
  EXPECT_FALSE(name.literal);
  EXPECT_EQ(name.host, "relay.example.net");
  EXPECT_EQ(name.ToString(), "relay.example.net:587");
  EXPECT_EQ(RouteHost::Parse("relay.example.net").value().port, 0);
  EXPECT_FALSE(RouteHost::Parse("[mx.example]:25").ok());
  EXPECT_FALSE(RouteHost::Parse("bad host:25").ok());
  EXPECT_FALSE(RouteHost::Parse("").ok());
}

TEST(DomainNameTest, Normalize) {
  EXPECT_EQ(NormalizeDomainName("Example.COM.").value(), "example.com");
  EXPECT_EQ(NormalizeDomainName("a_b-c.example").value(), "a_b-c.example");
  EXPECT_EQ(NormalizeDomainName("a..b").status().message(), "empty label in name 'a..b'");
  EXPECT_EQ(NormalizeDomainName(std::string(64, 'a') + ".com").status().message(),
            "label longer than 63 in '" + std::string(64, 'a') + ".com'");
  EXPECT_FALSE(NormalizeDomainName(std::string(254, 'a')).ok());
  EXPECT_FALSE(NormalizeDomainName("").ok());
  EXPECT_FALSE(NormalizeDomainName(".").ok());
}

}  // namespace
}  // namespace ringmail::config
