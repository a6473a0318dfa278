// Tests of config/generation (loading, semantic checks, loop counts, the generation store),
// config/default_config and config/render.
#include "config/generation.h"

#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "config/default_config.h"
#include "config/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TestData(const std::string& name) {
  return std::string(RINGMAIL_SOURCE_DIR) + "/tests/config/testdata/" + name;
}

std::vector<std::string> LoadErrors(std::string_view text) {
  std::vector<ConfigError> errors;
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigString(text, "t.conf", &errors);
  std::vector<std::string> out;
  for (const ConfigError& e : errors) out.push_back(e.ToString());
  EXPECT_EQ(config.ok(), out.empty());
  return out;
}

std::shared_ptr<const Config> LoadOk(std::string_view text) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigString(text, "t.conf");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : nullptr;
}

std::string SystemHostname() {
  char buffer[256] = {};
  gethostname(buffer, sizeof(buffer) - 1);
  std::string name = buffer;
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

IpAddress GenIp(const char* text) { return *IpAddress::Parse(text); }

TEST(LoadTest, EmptyFileGivesEveryDefault) {
  std::shared_ptr<const Config> c = LoadOk("");
  ASSERT_NE(c, nullptr);
  const GlobalOptions& g = c->global;
  EXPECT_EQ(g.spool_dir, "./var/spool");
  EXPECT_EQ(g.log_dir, "./var/log");
  EXPECT_EQ(g.license, "");
  EXPECT_EQ(g.user, "");
  EXPECT_EQ(g.hostname, SystemHostname());
  EXPECT_EQ(g.postmaster, "postmaster@" + SystemHostname());
  EXPECT_TRUE(g.resolvers.empty());
  EXPECT_EQ(g.retry_interval, absl::Minutes(1));
  EXPECT_EQ(g.max_retry_interval, absl::Hours(1));
  EXPECT_EQ(g.message_expiration, absl::Hours(24 * 5));
  EXPECT_EQ(g.completion_wait, absl::ZeroDuration());
  EXPECT_TRUE(g.pin_event_loops);
  EXPECT_EQ(g.delivery_pool, "");
  EXPECT_EQ(g.remote_smtp_port, 25);
  EXPECT_TRUE(g.default_route.empty());
  EXPECT_EQ(g.max_outbound_connections, 2000);
  EXPECT_EQ(g.max_deliveries_per_connection, 100);
  EXPECT_EQ(g.outbound_idle_timeout, absl::Seconds(2));
  EXPECT_EQ(g.spool_segment_size_bytes, uint64_t{64} << 20);
  EXPECT_TRUE(g.spool_segment_recycle);
  EXPECT_EQ(g.spool_segment_fill, SpoolSegmentFill::kAuto);
  EXPECT_EQ(g.log_level, LogLevel::kInfo);
  EXPECT_TRUE(c->eventloops.empty());
  EXPECT_FALSE(c->http.has_value());
  EXPECT_THAT(c->control.socket_paths, ElementsAre("./var/run/ringmail.sock"));
  EXPECT_TRUE(c->esmtp.listen.empty());
}

TEST(LoadTest, EsmtpDefaults) {
  std::shared_ptr<const Config> c = LoadOk("");
  ASSERT_NE(c, nullptr);
  const EsmtpListenerConfig& e = c->esmtp;
  EXPECT_EQ(e.max_connections, 1000);
  EXPECT_EQ(e.max_processings, 172);
  EXPECT_EQ(e.max_connections_per_ip, 100);
  EXPECT_EQ(e.max_message_size_bytes, uint64_t{20} << 20);
  EXPECT_EQ(e.max_recipients, 100);
  EXPECT_EQ(e.max_errors, 10);
  EXPECT_EQ(e.bare_lf, BareLf::kReject);
  EXPECT_EQ(e.command_timeout, absl::Minutes(5));
  EXPECT_EQ(e.data_init_timeout, absl::Minutes(2));
  EXPECT_EQ(e.data_block_timeout, absl::Minutes(3));
  EXPECT_EQ(e.data_term_timeout, absl::Minutes(10));
  EXPECT_EQ(e.hostname, SystemHostname());
  EXPECT_EQ(e.banner, SystemHostname() + " ESMTP ringmail");
  EXPECT_TRUE(e.relay_hosts.Contains(GenIp("127.0.0.1")));
  EXPECT_TRUE(e.relay_hosts.Contains(GenIp("127.255.0.9")));
  EXPECT_TRUE(e.relay_hosts.Contains(GenIp("::1")));
  EXPECT_TRUE(e.relay_hosts.Contains(GenIp("::ffff:127.0.0.1")));  // dual-stack peer
  EXPECT_FALSE(e.relay_hosts.Contains(GenIp("10.0.0.1")));
  EXPECT_FALSE(e.relay_hosts.Contains(GenIp("::2")));
}

TEST(LoadTest, StandardThreadPools) {
  std::shared_ptr<const Config> c = LoadOk("ThreadPool \"Mine\" { Concurrency = 3 }\n");
  ASSERT_NE(c, nullptr);
  struct Expected {
    const char* name;
    int64_t concurrency;
    int64_t backlog;
  } expected[] = {{"SwapOut", 5, 10000},      {"SwapIn", 5, 10000},  {"Unlink", 6, 100},
                  {"Batch_Unlink", 4, 10000}, {"Close", 0, 10000},   {"CPU", 4, 10000},
                  {"IO", 50, 10000},          {"SpoolIn", 1, 10000}, {"Mine", 3, 10000}};
  ASSERT_EQ(c->thread_pools.size(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    const ThreadPoolConfig& pool = c->thread_pools[i];
    EXPECT_EQ(pool.name, expected[i].name);
    EXPECT_EQ(pool.concurrency, expected[i].concurrency) << pool.name;
    EXPECT_EQ(pool.backlog, expected[i].backlog) << pool.name;
    EXPECT_EQ(pool.stack_size_bytes, 256u << 10) << pool.name;
    EXPECT_EQ(pool.standard, i < 8) << pool.name;
  }
}

TEST(LoadTest, DesignExampleParses) {
  absl::StatusOr<std::shared_ptr<const Config>> loaded =
      LoadConfigFile(TestData("design_example.conf"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = **loaded;
  EXPECT_EQ(c.global.spool_dir, "/var/spool/ringmail");
  EXPECT_EQ(c.global.license, "/etc/ringmail/license");
  EXPECT_EQ(c.global.user, "ringmail");
  ASSERT_EQ(c.global.resolvers.size(), 1u);
  EXPECT_EQ(c.global.resolvers[0].ToString(), "127.0.0.1:53");
  EXPECT_EQ(c.global.message_expiration, absl::Hours(120));
  ASSERT_EQ(c.eventloops.size(), 1u);
  EXPECT_EQ(c.eventloops[0].name, "events_pool");
  EXPECT_EQ(c.eventloops[0].concurrency, (ConcurrencySpec{ConcurrencySpec::Kind::kPercent, 75}));
  EXPECT_EQ(c.global.delivery_pool, "events_pool");
  EXPECT_EQ(c.global.maintainer_pool, "events_pool");
  EXPECT_EQ(c.FindThreadPool("unlink")->concurrency, 6);
  EXPECT_EQ(c.FindThreadPool("unlink")->backlog, 100);
  EXPECT_EQ(c.esmtp.event_loop, "events_pool");
  EXPECT_THAT(c.esmtp.relay_domains, ElementsAre("example.com"));
  ASSERT_EQ(c.esmtp.listen.size(), 1u);
  EXPECT_EQ(c.esmtp.listen[0].address.ToString(), "127.0.0.1:2525");
  ASSERT_TRUE(c.http.has_value());
  EXPECT_EQ(c.http->auth_token, "change-me");
  EXPECT_EQ(c.http->listen[0].address.port, 8025);
  EXPECT_THAT(c.control.socket_paths, ElementsAre("/run/ringmail/control.sock"));
  const DomainConfig& d = c.DomainFor("EXAMPLE.com");
  EXPECT_EQ(d.name, "example.com");
  ASSERT_EQ(d.routes.size(), 1u);
  EXPECT_TRUE(d.routes[0].literal);
  EXPECT_EQ(d.routes[0].host, "127.0.0.1");
  EXPECT_EQ(d.routes[0].port, 2526);
  EXPECT_EQ(d.max_outbound_connections, 20);
  EXPECT_EQ(d.max_deliveries_per_connection, 100);  // inherited from the global key
  EXPECT_EQ(d.outbound_idle_timeout, absl::Seconds(2));
  EXPECT_EQ(c.DomainFor("other.org").name, "");
  EXPECT_TRUE(c.DomainFor("other.org").routes.empty());
}

TEST(LoadTest, DefaultConfigLoads) {
  absl::StatusOr<std::shared_ptr<const Config>> loaded = LoadDefaultConfig();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Config& c = **loaded;
  EXPECT_EQ(c.source, "<default config>");
  EXPECT_EQ(c.global.spool_dir, "./var/spool");
  ASSERT_EQ(c.esmtp.listen.size(), 1u);
  EXPECT_EQ(c.esmtp.listen[0].address.ToString(), "127.0.0.1:2525");
  EXPECT_EQ(c.esmtp.listen[0].tls, ListenTls::kNone);
  EXPECT_TRUE(c.esmtp.relay_hosts.Contains(GenIp("127.0.0.1")));
  EXPECT_TRUE(c.esmtp.relay_hosts.Contains(GenIp("::1")));
  EXPECT_FALSE(c.esmtp.relay_hosts.Contains(GenIp("192.0.2.1")));
  EXPECT_TRUE(c.esmtp.relay_domains.empty());
  EXPECT_THAT(c.control.socket_paths, ElementsAre("./var/run/ringmail.sock"));
  EXPECT_EQ(TotalLoops(c, 64), 1);
  EXPECT_TRUE(ValidateConcurrency(c, 64, 1).ok());
  EXPECT_THAT(std::string(DefaultConfigText()), HasSubstr("Listen \"127.0.0.1:2525\""));
}

TEST(LoadTest, IncludesThroughLoadConfigFile) {
  absl::StatusOr<std::shared_ptr<const Config>> loaded =
      LoadConfigFile(TestData("include/main.conf"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->esmtp.max_connections, 77);
  EXPECT_EQ((*loaded)->DomainFor("example.org").max_outbound_connections, 3);
}

TEST(LoadTest, ErrorsInAnIncludedFileNameThatFile) {
  std::vector<ConfigError> errors;
  absl::StatusOr<std::shared_ptr<const Config>> loaded =
      LoadConfigFile(TestData("include/cycle_a.conf"), &errors);
  ASSERT_FALSE(loaded.ok());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].file, TestData("include/cycle_b.conf"));
  EXPECT_EQ(errors[0].line, 1);
  EXPECT_EQ(errors[0].column, 9);
  EXPECT_EQ(std::string(loaded.status().message()), errors[0].ToString());
}

TEST(SemanticTest, UnknownPoolReferenced) {
  EXPECT_THAT(LoadErrors("delivery_pool = \"nope\"\n"),
              ElementsAre("t.conf:1:17: delivery_pool names eventloop pool \"nope\", which does "
                          "not exist (no eventloop scope is defined)"));
  EXPECT_THAT(LoadErrors("eventloop \"a\" { }\neventloop \"b\" { }\n"
                         "ESMTP_Listener { event_loop = \"c\" }\n"),
              ElementsAre("t.conf:3:31: ESMTP_Listener.event_loop names eventloop pool \"c\", "
                          "which does not exist (defined: a, b)"));
}

TEST(SemanticTest, BadListenAddress) {
  EXPECT_THAT(LoadErrors("ESMTP_Listener {\n  Listen \"127.0.0.1\" { }\n}\n"),
              ElementsAre("t.conf:2:10: bad listen address: missing port in '127.0.0.1' "
                          "(expected IP:PORT, IPv6 as [::1]:PORT)"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener { Listen \"localhost:25\" { } }\n"),
              ElementsAre("t.conf:1:25: bad listen address: bad address 'localhost:25' "
                          "(expected IP:PORT, IPv6 as [::1]:PORT; no host names)"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener { Listen \"[::1]:99999\" { } }\n"),
              ElementsAre("t.conf:1:25: bad listen address: bad port '99999' in "
                          "'[::1]:99999' (expected 0..65535)"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener { Listen { } }\n"),
              ElementsAre("t.conf:1:18: Listen needs an argument: Listen \"IP:PORT\" { tls = "
                          "\"none\" }"));
}

TEST(SemanticTest, ListenAddressesAndIpv6) {
  // Two port-0 listens have the same name: the second is a duplicate scope.
  EXPECT_THAT(LoadErrors("ESMTP_Listener {\n"
                         "  Listen \"127.0.0.1:0\" { }\n"
                         "  Listen \"127.0.0.1:0\" { tls = implicit }\n"
                         "  tls_certificate = \"/c.pem\"  tls_key = \"/k.pem\"\n"
                         "}\n"),
              ElementsAre("t.conf:3:3: duplicate ESMTP_Listener.Listen \"127.0.0.1:0\" (first "
                          "defined at t.conf:2:3)"));
  std::shared_ptr<const Config> c =
      LoadOk("ESMTP_Listener { Listen \"[::1]:2525\" { } Listen \"127.0.0.1:0\" { } }\n");
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->esmtp.listen.size(), 2u);
  EXPECT_FALSE(c->esmtp.listen[0].address.ip.is_v4());
  EXPECT_EQ(c->esmtp.listen[0].address.port, 2525);
  EXPECT_EQ(c->esmtp.listen[1].address.port, 0);
}

TEST(SemanticTest, ListenClashes) {
  EXPECT_THAT(
      LoadErrors("ESMTP_Listener { Listen \"0.0.0.0:2525\" { } }\n"
                 "HTTP_Listener { auth_token = \"t\"\n  Listen \"127.0.0.1:2525\" { } }\n"),
      ElementsAre("t.conf:3:3: listen address 127.0.0.1:2525 clashes with ESMTP_Listener Listen "
                  "0.0.0.0:2525 at t.conf:1:18"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener {\n Listen \"127.0.0.1:25\" { }\n"
                         " Listen \"127.0.0.1:25\" { }\n}\n"),
              ElementsAre("t.conf:3:2: duplicate ESMTP_Listener.Listen \"127.0.0.1:25\" (first "
                          "defined at t.conf:2:2)"));
}

TEST(SemanticTest, DuplicateAndSingletonScopes) {
  EXPECT_THAT(LoadErrors("ESMTP_Listener { }\nESMTP_Listener { }\n"),
              ElementsAre("t.conf:2:1: only one ESMTP_Listener scope is allowed (first at "
                          "t.conf:1:1)"));
  EXPECT_THAT(LoadErrors("eventloop \"p\" { }\neventloop \"P\" { }\n"),
              ElementsAre("t.conf:2:1: duplicate eventloop \"P\" (first defined at t.conf:1:1)"));
  EXPECT_THAT(LoadErrors("Domain \"A.com\" { }\nDomain \"a.COM\" { }\n"),
              ElementsAre("t.conf:2:1: duplicate Domain \"a.com\" (first defined at t.conf:1:1)"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener \"x\" { }\n"),
              ElementsAre("t.conf:1:16: ESMTP_Listener takes no argument: ESMTP_Listener { ... "
                          "}"));
  EXPECT_THAT(LoadErrors("eventloop \"bad name!\" { }\n"),
              ElementsAre("t.conf:1:11: bad eventloop name \"bad name!\" (1..64 letters, digits, "
                          "'_', '-', '.')"));
}

TEST(SemanticTest, TlsAndHttpRequirements) {
  EXPECT_THAT(LoadErrors("ESMTP_Listener { require_tls = true }\n"),
              ElementsAre("t.conf:1:32: ESMTP_Listener: require_tls needs tls_certificate and "
                          "tls_key"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener { tls_key = \"/k\" }\n"),
              ElementsAre("t.conf:1:28: ESMTP_Listener: tls_key is set but tls_certificate is "
                          "not (set both or neither)"));
  EXPECT_THAT(LoadErrors("ESMTP_Listener {\n Listen \"127.0.0.1:465\" { tls = implicit }\n}\n"),
              ElementsAre("t.conf:2:33: ESMTP_Listener.Listen \"127.0.0.1:465\": tls = "
                          "\"implicit\" needs tls_certificate and tls_key in ESMTP_Listener"));
  EXPECT_THAT(LoadErrors("HTTP_Listener { }\n"),
              ElementsAre("t.conf:1:1: HTTP_Listener needs auth_token (the injection API is "
                          "never open)",
                          "t.conf:1:1: HTTP_Listener has no Listen scope: add Listen "
                          "\"IP:PORT\" { }"));
}

TEST(SemanticTest, RetryAndPostmaster) {
  EXPECT_THAT(LoadErrors("max_retry_interval = 30s\n"),
              ElementsAre("t.conf:1:22: max_retry_interval (30s) is shorter than retry_interval "
                          "(1m)"));
  EXPECT_THAT(LoadErrors("postmaster = \"nobody\"\n"),
              ElementsAre("t.conf:1:14: postmaster must be an address (local@domain), got "
                          "\"nobody\""));
  std::shared_ptr<const Config> c = LoadOk("hostname = \"MX1.Example.NET\"\n");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->global.hostname, "mx1.example.net");
  EXPECT_EQ(c->global.postmaster, "postmaster@mx1.example.net");
  EXPECT_EQ(c->esmtp.banner, "mx1.example.net ESMTP ringmail");
}

TEST(SemanticTest, ParseErrorsSkipSchemaChecks) {
  // The typo on line 2 is not reported while the file does not even parse.
  EXPECT_THAT(LoadErrors("a = = 1\nspool_dri = \"x\"\n"),
              ElementsAre("t.conf:1:5: expected a value, got '='"));
}

TEST(SemanticTest, SeveralSchemaErrorsAtOnce) {
  EXPECT_THAT(LoadErrors("spool_dri = \"/x\"\nESMTP_Listener {\n  max_errors = 0\n"
                         "  max_recipients = many\n}\n"),
              ElementsAre("t.conf:1:1: unknown global key 'spool_dri'; did you mean 'spool_dir'?",
                          "t.conf:3:16: max_errors = 0 is out of range (1..1000)",
                          "t.conf:4:20: max_recipients expects an integer, got 'many'"));
}

TEST(DomainTest, InheritanceAndOverrides) {
  std::shared_ptr<const Config> c = LoadOk(
      "domain_max_outbound_connections = 7\n"
      "outbound_tls = required\n"
      "default_route = ( \"smart.example.net:587\" )\n"
      "Domain \"a.example\" { tls = off  routes = ( \"[::1]:2526\" \"[10.0.0.1]\" ) }\n");
  ASSERT_NE(c, nullptr);
  const DomainConfig& a = c->DomainFor("a.example.");
  EXPECT_EQ(a.tls, OutboundTls::kOff);
  EXPECT_EQ(a.max_outbound_connections, 7);
  ASSERT_EQ(a.routes.size(), 2u);
  EXPECT_EQ(a.routes[0].ToString(), "[::1]:2526");
  EXPECT_EQ(a.routes[1].port, 0);
  const DomainConfig& other = c->DomainFor("b.example");
  EXPECT_EQ(other.tls, OutboundTls::kRequired);
  ASSERT_EQ(other.routes.size(), 1u);
  EXPECT_EQ(other.routes[0].host, "smart.example.net");
  EXPECT_FALSE(other.routes[0].literal);
  EXPECT_EQ(other.routes[0].port, 587);
}

TEST(LoopCountTest, ResolveLoopCounts) {
  std::shared_ptr<const Config> c = LoadOk(
      "eventloop \"a\" { concurrency = \"75%\" }\n"
      "eventloop \"b\" { concurrency = 3 }\n"
      "eventloop \"c\" { concurrency = 1% }\n");
  ASSERT_NE(c, nullptr);
  std::vector<LoopCount> two = ResolveLoopCounts(*c, 2);
  ASSERT_EQ(two.size(), 3u);
  EXPECT_EQ(two[0].pool, "a");
  EXPECT_EQ(two[0].loops, 1);  // 75% of 2 = 1.5 -> 1
  EXPECT_EQ(two[1].loops, 3);
  EXPECT_EQ(two[2].loops, 1);  // at least 1
  std::vector<LoopCount> eight = ResolveLoopCounts(*c, 8);
  EXPECT_EQ(eight[0].loops, 6);
  EXPECT_EQ(TotalLoops(*c, 8), 10);
  EXPECT_EQ(ResolveLoopCounts(*c, 0)[0].loops, 1);  // nonsense CPU count: treated as 1
}

TEST(LoopCountTest, ValidateConcurrency) {
  std::shared_ptr<const Config> c = LoadOk("eventloop \"events_pool\" { concurrency = 6 }\n");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(ValidateConcurrency(*c, 8, 6).ok());
  absl::Status unlicensed = ValidateConcurrency(*c, 8, 1);
  EXPECT_EQ(unlicensed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(unlicensed.message(),
            "eventloop pools ask for 6 loops (events_pool: 6 on 8 CPUs) but the license allows "
            "1 (no valid license, or a license for 1 loop)");
  EXPECT_EQ(ValidateConcurrency(*c, 8, 4).message(),
            "eventloop pools ask for 6 loops (events_pool: 6 on 8 CPUs) but the license allows "
            "4");
}

TEST(GenerationStoreTest, PublishAndPin) {
  GenerationStore store;
  EXPECT_EQ(store.Pin().config, nullptr);
  EXPECT_EQ(store.Pin().generation, 0u);
  std::shared_ptr<const Config> first = LoadOk("");
  EXPECT_EQ(store.Publish(first), 1u);
  GenerationStore::Pinned pinned = store.Pin();
  EXPECT_EQ(pinned.config, first);
  EXPECT_EQ(pinned.generation, 1u);
  std::shared_ptr<const Config> second = LoadOk("ESMTP_Listener { max_connections = 5 }");
  EXPECT_EQ(store.Publish(second), 2u);
  // A pinned generation stays valid and unchanged after a newer one is published.
  EXPECT_EQ(pinned.config->esmtp.max_connections, 1000);
  EXPECT_EQ(store.Pin().config->esmtp.max_connections, 5);
  EXPECT_EQ(store.generation(), 2u);
}

TEST(GenerationStoreTest, ReadersOnManyThreadsSeeConsistentGenerations) {
  GenerationStore store;
  constexpr int kGenerations = 200;
  std::vector<std::shared_ptr<const Config>> configs;
  for (int i = 1; i <= kGenerations; ++i) {
    configs.push_back(LoadOk("ESMTP_Listener { max_connections = " + std::to_string(i) + " }"));
    ASSERT_NE(configs.back(), nullptr);
  }
  store.Publish(configs[0]);
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      uint64_t last = 0;
      while (!done.load(std::memory_order_acquire)) {
        GenerationStore::Pinned p = store.Pin();
        // Generation n carries max_connections = n, and generations never go backwards.
        if (p.config->esmtp.max_connections != static_cast<int64_t>(p.generation)) ++bad;
        if (p.generation < last) ++bad;
        last = p.generation;
      }
    });
  }
  for (int i = 1; i < kGenerations; ++i) {
    EXPECT_EQ(store.Publish(configs[i]), static_cast<uint64_t>(i + 1));
  }
  configs.clear();  // the store and the readers' pins are now the only owners
  done.store(true, std::memory_order_release);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(store.Pin().config->esmtp.max_connections, kGenerations);
}

TEST(RenderTest, TextRoundTripsToAnEqualConfig) {
  absl::StatusOr<std::shared_ptr<const Config>> loaded =
      LoadConfigFile(TestData("design_example.conf"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::string text = RenderConfigText(**loaded);
  absl::StatusOr<std::shared_ptr<const Config>> again = LoadConfigString(text, "rendered");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << text;
  EXPECT_EQ(RenderConfigFlat(**again), RenderConfigFlat(**loaded));
  EXPECT_THAT(text, HasSubstr("  Listen \"127.0.0.1:2525\" {\n    tls = \"none\"\n  }\n"));
}

TEST(RenderTest, FlatLines) {
  std::shared_ptr<const Config> c = LoadOk(
      "ThreadPool \"Unlink\" { Backlog = 100 }\n"
      "ESMTP_Listener { max_message_size = 20MB  Listen \"[::1]:25\" { } }\n"
      "Domain \"x.org\" { routes = \"[127.0.0.1]:2526\" }\n");
  ASSERT_NE(c, nullptr);
  std::string flat = RenderConfigFlat(*c);
  EXPECT_EQ(flat.rfind("spool_dir = \"./var/spool\"\n", 0), 0u);
  EXPECT_THAT(flat, HasSubstr("\nretry_interval = 1m\n"));
  EXPECT_THAT(flat, HasSubstr("\nThreadPool \"Unlink\".Backlog = 100\n"));
  EXPECT_THAT(flat, HasSubstr("\nThreadPool \"IO\".Stack_Size = 256KB\n"));
  EXPECT_THAT(flat, HasSubstr("\nESMTP_Listener.max_message_size = 20MB\n"));
  EXPECT_THAT(flat, HasSubstr("\nESMTP_Listener.relay_hosts = ( \"127.0.0.0/8\" \"::1/128\" )\n"));
  EXPECT_THAT(flat, HasSubstr("\nESMTP_Listener.Listen \"[::1]:25\".tls = \"none\"\n"));
  EXPECT_THAT(flat, HasSubstr("\nDomain \"x.org\".routes = ( \"[127.0.0.1]:2526\" )\n"));
  EXPECT_THAT(flat, HasSubstr("\nDomain \"x.org\".max_outbound_connections = 20\n"));
}

}  // namespace
}  // namespace ringmail::config
