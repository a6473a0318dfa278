// Tests of listeners/esmtp/settings: the TLS handshake deadline a config generation gives
// the ESMTP listener (tls_handshake_timeout: the global default, the listener's override,
// and a reload changing it).
#include <memory>
#include <string>

#include "config/generation.h"
#include "config/schema.h"
#include "gtest/gtest.h"
#include "listeners/esmtp/settings.h"

namespace ringmail::listeners::esmtp {
namespace {

std::shared_ptr<const Settings> SettingsFor(const std::string& text) {
  auto c = config::LoadConfigString(text, "test.conf");
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return nullptr;
  auto s = Settings::FromConfig(*c, 1);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : nullptr;
}

TEST(EsmtpSettingsTest, TlsHandshakeTimeoutDefaultsToOneMinute) {
  auto s = SettingsFor("ESMTP_Listener { Listen \"127.0.0.1:2525\" { } }\n");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->tls_handshake_timeout_ms, 60'000u);
  // Not tied to command_timeout any more.
  s = SettingsFor("ESMTP_Listener { command_timeout = 10s Listen \"127.0.0.1:2525\" { } }\n");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->tls_handshake_timeout_ms, 60'000u);
}

TEST(EsmtpSettingsTest, TlsHandshakeTimeoutGlobalAndListenerOverride) {
  auto global = SettingsFor(
      "tls_handshake_timeout = 20s\n"
      "ESMTP_Listener { Listen \"127.0.0.1:2525\" { } }\n");
  ASSERT_NE(global, nullptr);
  EXPECT_EQ(global->tls_handshake_timeout_ms, 20'000u);
  auto both = SettingsFor(
      "tls_handshake_timeout = 20s\n"
      "ESMTP_Listener { tls_handshake_timeout = 5s Listen \"127.0.0.1:2525\" { } }\n");
  ASSERT_NE(both, nullptr);
  EXPECT_EQ(both->tls_handshake_timeout_ms, 5'000u);
}

TEST(EsmtpSettingsTest, TlsHandshakeTimeoutOutOfRangeIsRefused) {
  for (const char* text : {"tls_handshake_timeout = 0s\n", "tls_handshake_timeout = 11m\n",
                           "ESMTP_Listener { tls_handshake_timeout = 500ms }\n"}) {
    EXPECT_FALSE(config::LoadConfigString(text, "test.conf").ok()) << text;
  }
}

TEST(EsmtpSettingsTest, TlsHandshakeTimeoutIsLive) {
  auto before = config::LoadConfigString(
      "ESMTP_Listener { tls_handshake_timeout = 5s Listen \"127.0.0.1:2525\" { } }\n", "a");
  auto after = config::LoadConfigString(
      "ESMTP_Listener { tls_handshake_timeout = 9s Listen \"127.0.0.1:2525\" { } }\n", "b");
  ASSERT_TRUE(before.ok() && after.ok());
  const config::KeySpec* key =
      config::FindKey(config::ScopeKind::kEsmtpListener, "tls_handshake_timeout");
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(key->apply, config::Apply::kLive);
  const config::KeySpec* global = config::FindKey(config::ScopeKind::kGlobal,
                                                  "tls_handshake_timeout");
  ASSERT_NE(global, nullptr);
  EXPECT_EQ(global->apply, config::Apply::kLive);
  auto s = Settings::FromConfig(*after, 1);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->tls_handshake_timeout_ms, 9'000u);
}

// Every ESMTP_Listener key reaches the listener's settings (session audit: banner, the
// per-wait timeouts, the per-connection and per-address limits once did not).
TEST(EsmtpSettingsTest, EveryListenerKeyIsCarried) {
  auto d = SettingsFor(
      "hostname = \"mx.local.test\"\nESMTP_Listener { Listen \"127.0.0.1:2525\" { } }\n");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->banner, "mx.local.test ESMTP ringmail");
  EXPECT_EQ(d->limits.max_messages_per_connection, 0u);
  EXPECT_EQ(d->max_connection_rate_per_ip, 0);
  auto s = SettingsFor(
      "ESMTP_Listener {\n"
      "  banner = \"mx.example ready\"\n"
      "  mail_timeout = 7s  rcpt_timeout = 8s  data_init_timeout = 9s\n"
      "  max_messages_per_connection = 5  max_connection_rate_per_ip = 6\n"
      "  Listen \"127.0.0.1:2525\" { }\n"
      "}\n");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->banner, "mx.example ready");
  EXPECT_EQ(s->mail_timeout_ms, 7'000u);
  EXPECT_EQ(s->rcpt_timeout_ms, 8'000u);
  EXPECT_EQ(s->data_init_timeout_ms, 9'000u);
  EXPECT_EQ(s->limits.max_messages_per_connection, 5u);
  EXPECT_EQ(s->max_connection_rate_per_ip, 6);
}

TEST(EsmtpSettingsTest, BannerMustBeOnePrintableLine) {
  std::vector<config::ConfigError> errors;
  // A CRLF (escaped in the config string) would let the banner forge a second reply.
  auto c = config::LoadConfigString(
      R"(ESMTP_Listener {
  banner = "mx.example\r\n250 forged"
  Listen "127.0.0.1:2525" { }
}
)",
      "test.conf", &errors);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("test.conf:2:"), std::string::npos)
      << c.status();
  EXPECT_NE(std::string(c.status().message()).find("banner"), std::string::npos) << c.status();
  c = config::LoadConfigString("ESMTP_Listener {\n  banner = \"" + std::string(600, 'x') +
                                   "\"\n  Listen \"127.0.0.1:2525\" { }\n}\n",
                               "test.conf", &errors);
  EXPECT_FALSE(c.ok());
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
