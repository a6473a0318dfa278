// Tests of config/schema: the table's own invariants, and every schema error through a real
// load (unknown key with suggestion, wrong type, out of range, duplicate, bad list items),
// with exact positions.
#include "config/schema.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "config/generation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> LoadFails(std::string_view text) {
  std::vector<ConfigError> errors;
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigString(text, "t.conf", &errors);
  std::vector<std::string> out;
  for (const ConfigError& e : errors) out.push_back(e.ToString());
  EXPECT_EQ(config.ok(), out.empty());
  if (!config.ok()) {
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  }
  return out;
}

std::shared_ptr<const Config> Loaded(std::string_view text) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigString(text, "t.conf");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : nullptr;
}

// ---- the table -----------------------------------------------------------------------------

TEST(SchemaTableTest, EveryDefaultParsesAndLiesInRange) {
  for (const KeySpec& key : AllKeys()) {
    if (!key.inherit.empty()) continue;
    absl::StatusOr<Value> value = ParseValueText(key.default_text);
    ASSERT_TRUE(value.ok()) << key.name << ": " << value.status();
    TypedValue typed;
    Position at;
    std::string error;
    EXPECT_TRUE(ConvertValue(key, *value, &typed, &at, &error)) << key.name << ": " << error;
    // Rendering the default and converting it again gives the same value.
    absl::StatusOr<Value> again = ParseValueText(RenderValue(key, typed));
    ASSERT_TRUE(again.ok()) << key.name;
    TypedValue typed_again;
    ASSERT_TRUE(ConvertValue(key, *again, &typed_again, &at, &error)) << key.name << error;
    EXPECT_EQ(RenderValue(key, typed), RenderValue(key, typed_again)) << key.name;
  }
}

TEST(SchemaTableTest, InheritedKeysNameAGlobalKeyOfTheSameType) {
  int inherited = 0;
  for (const KeySpec& key : AllKeys()) {
    if (key.inherit.empty()) continue;
    ++inherited;
    const KeySpec* from = FindKey(ScopeKind::kGlobal, key.inherit);
    ASSERT_NE(from, nullptr) << key.name << " inherits unknown " << key.inherit;
    EXPECT_EQ(from->type, key.type) << key.name;
    EXPECT_EQ(from->choices, key.choices) << key.name;
  }
  EXPECT_EQ(inherited, 7);
}

TEST(SchemaTableTest, NamesAreUniquePerScopeIgnoringCase) {
  std::set<std::pair<int, std::string>> seen;
  for (const KeySpec& key : AllKeys()) {
    auto entry =
        std::make_pair(static_cast<int>(key.scope), absl::AsciiStrToLower(std::string(key.name)));
    EXPECT_TRUE(seen.insert(entry).second) << "duplicate key " << key.name;
    EXPECT_FALSE(key.help.empty()) << key.name;
    EXPECT_EQ(FindKey(key.scope, key.name), &key);
  }
  for (const ScopeSpec& scope : AllScopes()) {
    EXPECT_EQ(&GetScopeSpec(scope.kind), &scope);
  }
}

TEST(SchemaTableTest, LiveAndRestartFlagsForTheKeysDesignNames) {
  EXPECT_EQ(FindKey(ScopeKind::kEventLoop, "concurrency")->apply, Apply::kRestart);
  EXPECT_EQ(FindKey(ScopeKind::kThreadPool, "Backlog")->apply, Apply::kRestart);
  EXPECT_EQ(FindKey(ScopeKind::kThreadPool, "Stack_Size")->apply, Apply::kRestart);
  EXPECT_EQ(FindKey(ScopeKind::kThreadPool, "Concurrency")->apply, Apply::kLive);
  EXPECT_EQ(FindKey(ScopeKind::kGlobal, "spool_dir")->apply, Apply::kRestart);
  EXPECT_EQ(FindKey(ScopeKind::kGlobal, "user")->apply, Apply::kRestart);
  EXPECT_EQ(FindKey(ScopeKind::kGlobal, "retry_interval")->apply, Apply::kLive);
  EXPECT_EQ(FindKey(ScopeKind::kEsmtpListener, "max_connections")->apply, Apply::kLive);
}

TEST(SchemaTableTest, ClosestName) {
  std::vector<std::string_view> names = {"max_connections", "max_processings", "max_errors"};
  EXPECT_EQ(ClosestName("max_conections", names), "max_connections");
  EXPECT_EQ(ClosestName("MAX_ERORS", names), "max_errors");
  EXPECT_EQ(ClosestName("totally_different", names), "");
}

// ---- errors through a load ------------------------------------------------------------------

TEST(SchemaErrorsTest, UnknownKeyWithSuggestion) {
  EXPECT_THAT(LoadFails("spool_dri = \"/x\"\n"),
              ElementsAre("t.conf:1:1: unknown global key 'spool_dri'; did you mean "
                          "'spool_dir'?"));
  EXPECT_THAT(LoadFails("ESMTP_Listener {\n  max_conections = 5\n}\n"),
              ElementsAre("t.conf:2:3: unknown key 'max_conections' in ESMTP_Listener; did you "
                          "mean 'max_connections'?"));
  EXPECT_THAT(LoadFails("frobnicate = 1\n"),
              ElementsAre("t.conf:1:1: unknown global key 'frobnicate'"));
}

TEST(SchemaErrorsTest, KeyInTheWrongScope) {
  EXPECT_THAT(LoadFails("relay_hosts = ( \"10.0.0.0/8\" )\n"),
              ElementsAre("t.conf:1:1: 'relay_hosts' is not a key of global scope; it belongs "
                          "in ESMTP_Listener"));
  EXPECT_THAT(LoadFails("Domain \"a.com\" { spool_dir = \"/x\" }\n"),
              ElementsAre("t.conf:1:18: 'spool_dir' is not a key of Domain; it belongs in "
                          "global scope"));
}

TEST(SchemaErrorsTest, UnknownScopeAndScopeKeyConfusion) {
  EXPECT_THAT(LoadFails("ESMTP_Listner { }\n"),
              ElementsAre("t.conf:1:1: unknown scope 'ESMTP_Listner' at global scope; did you "
                          "mean 'ESMTP_Listener'?"));
  EXPECT_THAT(LoadFails("Listen \"127.0.0.1:25\" { }\n"),
              ElementsAre("t.conf:1:1: scope 'Listen' is not allowed at global scope; it "
                          "belongs in ESMTP_Listener or HTTP_Listener or Control_Listener"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { Listen = \"127.0.0.1:25\" }\n"),
              ElementsAre("t.conf:1:18: 'Listen' is a scope, not a key: write Listen \"...\" "
                          "{ }"));
  EXPECT_THAT(LoadFails("spool_dir { }\n"),
              ElementsAre("t.conf:1:1: 'spool_dir' is a key, not a scope: write spool_dir = "
                          "VALUE"));
}

TEST(SchemaErrorsTest, WrongType) {
  EXPECT_THAT(LoadFails("ESMTP_Listener {\n  max_connections = \"many\"\n}\n"),
              ElementsAre("t.conf:2:21: max_connections expects an integer, got \"many\""));
  EXPECT_THAT(LoadFails("retry_interval = 10MB\n"),
              ElementsAre("t.conf:1:18: retry_interval expects a duration (e.g. 250ms, 30s, 5m, "
                          "1h, 5d), got '10MB'"));
  EXPECT_THAT(LoadFails("spool_segment_size = 30s\n"),
              ElementsAre("t.conf:1:22: spool_segment_size expects a size (e.g. 512KB, 20MB, "
                          "1GB), got '30s'"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { require_tls = maybe }\n"),
              ElementsAre("t.conf:1:32: require_tls expects true or false, got 'maybe'"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { banner = \"hi\\r\\n250 injected\" }\n"),
              ElementsAre("t.conf:1:27: banner must not contain control characters"));
  EXPECT_THAT(LoadFails("spool_dir = ( \"/a\" \"/b\" )\n"),
              ElementsAre("t.conf:1:13: spool_dir takes a single value, not a list"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { bare_lf = \"drop\" }\n"),
              ElementsAre("t.conf:1:28: bare_lf must be one of \"reject\", \"normalize\"; got "
                          "\"drop\""));
  EXPECT_THAT(LoadFails("spool_segment_fill = sparse\n"),
              ElementsAre("t.conf:1:22: spool_segment_fill must be one of \"zeros\", "
                          "\"allocate\", \"none\", \"auto\"; got 'sparse'"));
  EXPECT_THAT(LoadFails("spool_segment_size = \"12XB\"\n"),
              ElementsAre("t.conf:1:22: spool_segment_size: unknown unit 'XB' in '12XB' (sizes: "
                          "B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB; durations: us, ms, "
                          "s, m, h, d, w)"));
}

TEST(SchemaErrorsTest, OutOfRange) {
  EXPECT_THAT(LoadFails("ESMTP_Listener { max_connections = 0 }\n"),
              ElementsAre("t.conf:1:36: max_connections = 0 is out of range (1..1000000)"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { max_message_size = 3GB }\n"),
              ElementsAre("t.conf:1:37: max_message_size = 3GB is out of range (1KB..960MB)"));
  EXPECT_THAT(LoadFails("retry_interval = 500ms\n"),
              ElementsAre("t.conf:1:18: retry_interval = 500ms is out of range (1s..1d)"));
  EXPECT_THAT(LoadFails("remote_smtp_port = 70000\n"),
              ElementsAre("t.conf:1:20: remote_smtp_port = 70000 is out of range (1..65535)"));
  EXPECT_THAT(LoadFails("ThreadPool \"IO\" { Stack_Size = 16KB }\n"),
              ElementsAre("t.conf:1:32: Stack_Size = 16KB is out of range (64KB..1GB)"));
}

TEST(SchemaErrorsTest, PercentOutOfRange) {
  EXPECT_THAT(LoadFails("eventloop \"p\" { concurrency = \"150%\" }\n"),
              ElementsAre("t.conf:1:31: concurrency = 150% is out of range (1%..100%)"));
  EXPECT_THAT(LoadFails("eventloop \"p\" { concurrency = 0% }\n"),
              ElementsAre("t.conf:1:31: concurrency = 0% is out of range (1%..100%)"));
  EXPECT_THAT(LoadFails("eventloop \"p\" { concurrency = 2000 }\n"),
              ElementsAre("t.conf:1:31: concurrency = 2000 is out of range (1..1024)"));
}

TEST(SchemaErrorsTest, DuplicateKey) {
  EXPECT_THAT(LoadFails("spool_dir = \"/a\"\nSPOOL_DIR = \"/b\"\n"),
              ElementsAre("t.conf:2:1: duplicate key 'SPOOL_DIR' (first set at t.conf:1:13)"));
  // The same key in two instances of a scope is not a duplicate.
  EXPECT_TRUE(LoadFails("Domain \"a.com\" { tls = \"off\" }\nDomain \"b.com\" { tls = \"off\" }\n")
                  .empty());
}

TEST(SchemaErrorsTest, BadCidr) {
  EXPECT_THAT(LoadFails("ESMTP_Listener {\n"
                         "  relay_hosts = ( \"10.0.0.0/8\" \"10.0.0.300/8\" )\n}"),
              ElementsAre("t.conf:2:32: relay_hosts: bad CIDR block '10.0.0.300/8' (expected "
                          "ADDRESS or ADDRESS/PREFIX, e.g. 10.0.0.0/8)"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { relay_hosts = \"10.0.0.0/33\" }"),
              ElementsAre("t.conf:1:32: relay_hosts: prefix length in '10.0.0.0/33' is out of "
                          "range (0..32)"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { relay_hosts = \"127.0.0.1/8\" }"),
              ElementsAre("t.conf:1:32: relay_hosts: host bits are set in '127.0.0.1/8' "
                          "(address and prefix disagree)"));
}

TEST(SchemaErrorsTest, BadListItems) {
  EXPECT_THAT(LoadFails("resolvers = ( \"dns.example\" )\n"),
              ElementsAre("t.conf:1:15: resolvers: bad address 'dns.example' (expected IP:PORT, "
                          "IPv6 as [::1]:PORT; no host names)"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { relay_domains = ( \"bad domain\" ) }"),
              ElementsAre("t.conf:1:36: relay_domains: bad character in name 'bad domain'"));
  // What the listener's policy would refuse is refused here, at its place in the file.
  EXPECT_THAT(LoadFails("ESMTP_Listener { relay_domains = ( \"a_b.example\" ) }"),
              ElementsAre("t.conf:1:36: relay_domains: '_' in mail domain 'a_b.example'"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { relay_domains = ( \"-a.example\" ) }"),
              ElementsAre("t.conf:1:36: relay_domains: a label of mail domain '-a.example' "
                          "begins or ends with '-'"));
  EXPECT_THAT(LoadFails("ESMTP_Listener { relay_domains = ( \"..example\" ) }"),
              ElementsAre("t.conf:1:36: relay_domains: empty label in name '.example'"));
  EXPECT_THAT(LoadFails("default_route = \"relay.example:99999\"\n"),
              ElementsAre("t.conf:1:17: default_route: bad port '99999' in "
                          "'relay.example:99999' (expected 0..65535)"));
}

// ---- accepted forms ----------------------------------------------------------------------------

TEST(SchemaValuesTest, CaseInsensitiveKeysAndScopes) {
  std::shared_ptr<const Config> c = Loaded(
      "SPOOL_DIR = \"/s\"\n"
      "esmtp_listener { MAX_CONNECTIONS = 7  listen \"127.0.0.1:2525\" { TLS = NONE } }\n"
      "threadpool \"unlink\" { concurrency = 9 }\n"
      "EVENTLOOP \"Main\" { Concurrency = 2 }\n"
      "delivery_pool = \"MAIN\"\n");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->global.spool_dir, "/s");
  EXPECT_EQ(c->esmtp.max_connections, 7);
  ASSERT_EQ(c->esmtp.listen.size(), 1u);
  EXPECT_EQ(c->FindThreadPool("Unlink")->concurrency, 9);
  EXPECT_EQ(c->FindThreadPool("Unlink")->name, "Unlink");  // canonical spelling kept
  EXPECT_EQ(c->global.delivery_pool, "Main");              // canonicalised to the pool's name
}

TEST(SchemaValuesTest, QuotedNumbersBoolsAndLoneListItems) {
  std::shared_ptr<const Config> c = Loaded(
      "spool_segment_size = \"128MB\"\n"
      "spool_segment_fill = allocate\n"
      "spool_segment_recycle = no\n"
      "retry_interval = 90\n"  // bare integer: seconds
      "completion_wait = 250us\n"
      "pin_event_loops = off\n"
      "resolvers = \"[::1]\"\n"
      "ESMTP_Listener { require_tls = no\n"
      "  relay_domains = ( \"Example.COM.\" \".Sub.Example\" ) }\n");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->global.spool_segment_size_bytes, uint64_t{128} << 20);
  EXPECT_EQ(c->global.spool_segment_fill, SpoolSegmentFill::kAllocate);
  EXPECT_FALSE(c->global.spool_segment_recycle);
  EXPECT_EQ(c->global.retry_interval, absl::Seconds(90));
  EXPECT_EQ(c->global.completion_wait, absl::Microseconds(250));
  EXPECT_FALSE(c->global.pin_event_loops);
  ASSERT_EQ(c->global.resolvers.size(), 1u);
  EXPECT_EQ(c->global.resolvers[0].ToString(), "[::1]:53");
  EXPECT_FALSE(c->esmtp.require_tls);
  EXPECT_THAT(c->esmtp.relay_domains, ElementsAre("example.com", ".sub.example"));
}

}  // namespace
}  // namespace ringmail::config
