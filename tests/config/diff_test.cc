// Tests of config/diff: which changes apply live and which need a restart.
#include "config/diff.h"

#include <string>
#include <vector>

#include "config/default_config.h"
#include "config/generation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

using ::testing::ElementsAre;
using ::testing::FieldsAre;
using ::testing::IsEmpty;

std::shared_ptr<const Config> Load(std::string_view text) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigString(text, "t.conf");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : LoadConfigString("", "empty").value();
}

std::vector<ConfigChange> Diff(std::string_view old_text, std::string_view new_text) {
  return DiffConfigs(*Load(old_text), *Load(new_text));
}

TEST(DiffTest, IdenticalConfigsHaveNoChanges) {
  std::shared_ptr<const Config> a = LoadDefaultConfig().value();
  std::shared_ptr<const Config> b = LoadDefaultConfig().value();
  EXPECT_THAT(DiffConfigs(*a, *b), IsEmpty());
  // Spelling, case, order and explicit defaults do not count as changes.
  EXPECT_THAT(Diff("ESMTP_Listener { max_connections = 1000 }\nspool_dir = \"./var/spool\"\n",
                   "SPOOL_DIR = \"./var/spool\"\nesmtp_listener { }\n"),
              IsEmpty());
}

TEST(DiffTest, LiveKeyChange) {
  std::vector<ConfigChange> changes = Diff("ESMTP_Listener { max_connections = 1000 }",
                                           "ESMTP_Listener { max_connections = 2000 }");
  EXPECT_THAT(changes,
              ElementsAre(FieldsAre("ESMTP_Listener.max_connections", "1000", "2000", true)));
  EXPECT_TRUE(AllChangesLive(changes));
  EXPECT_EQ(FormatChanges(changes), "ESMTP_Listener.max_connections: 1000 -> 2000 (live)\n");
}

TEST(DiffTest, RestartOnlyKeys) {
  EXPECT_THAT(
      Diff("eventloop \"p\" { concurrency = 2 }", "eventloop \"p\" { concurrency = \"50%\" }"),
      ElementsAre(FieldsAre("eventloop \"p\".concurrency", "2", "\"50%\"", false)));
  EXPECT_THAT(Diff("", "ThreadPool \"Unlink\" { Backlog = 200  Concurrency = 8 }"),
              ElementsAre(FieldsAre("ThreadPool \"Unlink\".Concurrency", "6", "8", true),
                          FieldsAre("ThreadPool \"Unlink\".Backlog", "100", "200", false)));
  EXPECT_THAT(Diff("", "ThreadPool \"IO\" { Stack_Size = 1MB }"),
              ElementsAre(FieldsAre("ThreadPool \"IO\".Stack_Size", "256KB", "1MB", false)));
  std::vector<ConfigChange> changes = Diff("", "spool_dir = \"/s\"\nuser = \"mail\"\n");
  EXPECT_THAT(changes, ElementsAre(FieldsAre("spool_dir", "\"./var/spool\"", "\"/s\"", false),
                                   FieldsAre("user", "\"\"", "\"mail\"", false)));
  EXPECT_FALSE(AllChangesLive(changes));
  EXPECT_EQ(FormatChanges(changes),
            "spool_dir: \"./var/spool\" -> \"/s\" (needs restart)\n"
            "user: \"\" -> \"mail\" (needs restart)\n");
}

TEST(DiffTest, ScopesAddedAndRemoved) {
  EXPECT_THAT(Diff("", "Domain \"x.com\" { max_outbound_connections = 3 }"),
              ElementsAre(FieldsAre("Domain \"x.com\"", "(absent)", "(defined)", true)));
  EXPECT_THAT(Diff("Domain \"x.com\" { }", ""),
              ElementsAre(FieldsAre("Domain \"x.com\"", "(defined)", "(absent)", true)));
  EXPECT_THAT(
      Diff("ESMTP_Listener { Listen \"127.0.0.1:25\" { } }",
           "ESMTP_Listener { Listen \"127.0.0.1:26\" { } }"),
      ElementsAre(
          FieldsAre("ESMTP_Listener.Listen \"127.0.0.1:26\"", "(absent)", "(defined)", false),
          FieldsAre("ESMTP_Listener.Listen \"127.0.0.1:25\"", "(defined)", "(absent)", false)));
  std::vector<ConfigChange> http =
      Diff("", "HTTP_Listener { auth_token = \"t\"  Listen \"127.0.0.1:8025\" { } }");
  ASSERT_EQ(http.size(), 2u);
  EXPECT_EQ(http[0].path, "HTTP_Listener");
  EXPECT_FALSE(http[0].applies_live);
  EXPECT_EQ(http[1].path, "HTTP_Listener.Listen \"127.0.0.1:8025\"");
  EXPECT_THAT(Diff("", "eventloop \"p\" { }"),
              ElementsAre(FieldsAre("eventloop \"p\"", "(absent)", "(defined)", false)));
}

TEST(DiffTest, InheritedValuesFollowTheGlobalKey) {
  EXPECT_THAT(
      Diff("Domain \"x.com\" { }", "domain_max_outbound_connections = 5\nDomain \"x.com\" { }"),
      ElementsAre(FieldsAre("domain_max_outbound_connections", "20", "5", true),
                  FieldsAre("Domain \"x.com\".max_outbound_connections", "20", "5", true)));
}

TEST(DiffTest, ListsAndDurations) {
  EXPECT_THAT(Diff("retry_interval = 1m", "retry_interval = 90s"),
              ElementsAre(FieldsAre("retry_interval", "1m", "90s", true)));
  EXPECT_THAT(Diff("", "ESMTP_Listener { relay_hosts = ( \"10.0.0.0/8\" ) }"),
              ElementsAre(FieldsAre("ESMTP_Listener.relay_hosts", "( \"127.0.0.0/8\" \"::1/128\" )",
                                    "( \"10.0.0.0/8\" )", true)));
}

}  // namespace
}  // namespace ringmail::config
