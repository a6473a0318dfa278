// Tests of listeners/http/settings: what the HTTP listener takes from a config generation,
// and what it refuses to start with (no token, above all on a non-loopback address; HTTPS
// without a readable certificate).
#include <memory>
#include <string>

#include "config/generation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "listeners/http/settings.h"

namespace ringmail::listeners::http {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const config::Config> Load(const std::string& text) {
  auto c = config::LoadConfigString(text, "test.conf");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

TEST(HttpSettingsTest, LimitsTimeoutsAndTheEsmtpRelayPolicy) {
  auto c = Load(
      "hostname = \"mx.test\"\n"
      "ESMTP_Listener { relay_hosts = ( \"10.0.0.0/8\" ) relay_domains = ( \"local.test\" )\n"
      "  max_recipients = 7 max_message_size = 5MB }\n"
      "HTTP_Listener { auth_token = \"t0ken\" max_body_size = 2MB max_header_size = 8KB\n"
      "  idle_timeout = 7s request_timeout = 9s max_connections = 12\n"
      "  Listen \"127.0.0.1:8025\" { } }\n");
  ASSERT_NE(c, nullptr);
  auto s = HttpSettings::FromConfig(c);
  ASSERT_TRUE(s.ok()) << s.status();
  const HttpSettings& h = **s;
  EXPECT_EQ(h.auth_token, "t0ken");
  EXPECT_EQ(h.hostname, "mx.test");
  EXPECT_EQ(h.parser.body_bytes_max, 2u << 20);
  EXPECT_EQ(h.parser.header_bytes_max, 8u << 10);
  EXPECT_EQ(h.idle_timeout_ms, 7000u);
  EXPECT_EQ(h.request_timeout_ms, 9000u);
  EXPECT_EQ(h.max_connections, 12);
  EXPECT_EQ(h.max_recipients, 7u);
  EXPECT_EQ(h.message_bytes_max, 5u << 20);
  EXPECT_TRUE(h.policy.DomainAllowed("local.test"));
  EXPECT_TRUE(h.policy.HostAllowed(*esmtp::IpAddress::Parse("10.9.8.7")));
  EXPECT_FALSE(h.policy.HostAllowed(*esmtp::IpAddress::Parse("127.0.0.1")));
}

TEST(HttpSettingsTest, RefusesNoTokenAndHttps) {
  // The loader already refuses an HTTP_Listener without auth_token; FromConfig checks again
  // (issue #9) in case a Config is built another way.
  auto c = Load("HTTP_Listener { auth_token = \"x\" Listen \"0.0.0.0:8025\" { } }\n");
  ASSERT_NE(c, nullptr);
  auto copy = std::make_shared<config::Config>(*c);
  copy->http->auth_token.clear();
  auto s = HttpSettings::FromConfig(copy);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("not a loopback address"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("without auth_token"));
  auto loopback = Load("HTTP_Listener { auth_token = \"x\" Listen \"[::1]:8025\" { } }\n");
  ASSERT_NE(loopback, nullptr);
  auto lcopy = std::make_shared<config::Config>(*loopback);
  lcopy->http->auth_token.clear();
  auto ls = HttpSettings::FromConfig(lcopy);
  ASSERT_FALSE(ls.ok()) << "never an open injection API, not even on loopback";
  EXPECT_THAT(std::string(ls.status().message()), Not(HasSubstr("not a loopback")));
  // The loader may refuse certificate paths that do not exist; then there is nothing to test.
  auto https = config::LoadConfigString(
      "HTTP_Listener { auth_token = \"x\" tls_certificate = \"/c.pem\" tls_key = \"/k.pem\"\n"
      "  Listen \"127.0.0.1:8443\" { tls = implicit } }\n",
      "https.conf");
  if (https.ok()) {
    // HTTPS is served, but only with a certificate that can be read.
    auto hs = HttpSettings::FromConfig(*https);
    ASSERT_FALSE(hs.ok());
    EXPECT_EQ(hs.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(hs.status().message()), HasSubstr("HTTP_Listener"));
  }
  auto none = Load("hostname = \"mx.test\"\n");
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(HttpSettings::FromConfig(none).ok());
}

}  // namespace
}  // namespace ringmail::listeners::http
