// ringmaild's command line and start-up refusals, run as a subprocess: --check-config on the
// embedded default and on broken files (errors name file:line:col), --version, --help, an
// unknown flag, and a config that asks for more event loops than the license allows.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemon_util.h"

namespace ringmail::integration {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr Millis kTimeout(20'000);

class CheckConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(RingmaildPath()))
        << RingmaildPath() << " is not built (build the ringmaild target)";
  }

  RunResult Ringmaild(std::vector<std::string> args) {
    args.insert(args.begin(), RingmaildPath());
    RunResult r = RunProgram(args, kTimeout);
    EXPECT_FALSE(r.timed_out);
    return r;
  }

  // Writes `text` as a config file in the scratch directory and returns its path.
  std::string ConfigFile(const std::string& text, const std::string& name = "test.conf") {
    std::string path = dir_.Sub(name);
    EXPECT_TRUE(WriteFile(path, text).ok());
    return path;
  }

  ScratchDir dir_;
};

TEST_F(CheckConfigTest, EmbeddedDefaultIsValid) {
  RunResult r = Ringmaild({"--check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("configuration OK"));
}

TEST_F(CheckConfigTest, HarnessConfigIsValid) {
  RunningDaemon daemon(dir_.path());
  const std::string path = ConfigFile(daemon.ConfigText(DaemonConfig{}));
  RunResult r = Ringmaild({"--check-config", "--config", path});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  RunResult eq = Ringmaild({"--check-config", "--config=" + path});
  EXPECT_EQ(eq.exit_code, 0) << eq.out << eq.err;
}

TEST_F(CheckConfigTest, UnknownKeyIsReportedWithFileLineAndColumn) {
  const std::string path = ConfigFile(
      "spool_dir = \"/tmp/x\"\n"
      "ESMTP_Listener {\n"
      "  max_recipient = 10\n"
      "}\n");
  RunResult r = Ringmaild({"--check-config", "--config", path});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(path + ":3:3:"));
  EXPECT_THAT(r.err, HasSubstr("max_recipient"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("configuration OK")));
}

TEST_F(CheckConfigTest, BadValueIsReportedWithFileLineAndColumn) {
  const std::string path = ConfigFile(
      "# a comment line\n"
      "ESMTP_Listener {\n"
      "  max_connections = 10\n"
      "  max_recipients = banana\n"
      "}\n");
  RunResult r = Ringmaild({"--check-config", "--config", path});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, ContainsRegex(path + ":4:[0-9]+:"));
}

TEST_F(CheckConfigTest, OutOfRangeAndSyntaxErrorsAreReported) {
  const std::string range = ConfigFile("ESMTP_Listener {\n  command_timeout = 0s\n}\n", "r.conf");
  RunResult r = Ringmaild({"--check-config", "--config", range});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, ContainsRegex(range + ":2:[0-9]+:"));
  const std::string syntax = ConfigFile("ESMTP_Listener {\n  max_errors = 3\n", "s.conf");
  r = Ringmaild({"--check-config", "--config", syntax});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, ContainsRegex(syntax + ":[0-9]+:[0-9]+:"));
}

TEST_F(CheckConfigTest, MissingFileFails) {
  RunResult r = Ringmaild({"--check-config", "--config", dir_.Sub("absent.conf")});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("absent.conf"));
}

TEST_F(CheckConfigTest, VersionAndHelp) {
  RunResult v = Ringmaild({"--version"});
  EXPECT_EQ(v.exit_code, 0) << v.err;
  EXPECT_THAT(v.out, ContainsRegex("^ringmaild [0-9]+\\.[0-9]+"));
  RunResult h = Ringmaild({"--help"});
  EXPECT_EQ(h.exit_code, 0) << h.err;
  EXPECT_THAT(h.out, HasSubstr("usage: ringmaild"));
  EXPECT_THAT(h.out, HasSubstr("--check-config"));
}

TEST_F(CheckConfigTest, UnknownFlagIsAUsageError) {
  RunResult r = Ringmaild({"--frobnicate"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--frobnicate"));
  EXPECT_THAT(r.err, HasSubstr("usage:"));
  RunResult missing = Ringmaild({"--config"});  // no FILE after it
  EXPECT_EQ(missing.exit_code, 2) << missing.out << missing.err;
}

TEST_F(CheckConfigTest, MoreEventLoopsThanLicensedIsRefusedAtStart) {
  RunningDaemon daemon(dir_.path());
  DaemonConfig config;
  config.global_extra = "eventloop \"p\" { concurrency = 4 }\n";
  config.esmtp_extra = "event_loop = \"p\"\n";
  absl::Status s = daemon.Start(config);
  ASSERT_FALSE(s.ok()) << "ringmaild started with 4 loops and no license";
  EXPECT_FALSE(daemon.running());
  const std::string err = daemon.StderrText();
  EXPECT_THAT(err, ContainsRegex("[Ll]icen[cs]"));
  EXPECT_THAT(err, HasSubstr("4"));
  // And the exit status is 1, not a crash.
  RunResult r = Ringmaild({"--config", daemon.config_path()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.signal, 0);
  // --check-config refuses what the daemon would refuse.
  RunResult check = Ringmaild({"--check-config", "--config", daemon.config_path()});
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  EXPECT_THAT(check.err, ContainsRegex("[Ll]icen[cs]"));
  EXPECT_THAT(check.out, ::testing::Not(HasSubstr("configuration OK")));
}

TEST_F(CheckConfigTest, LicensedEventLoopsPassTheCheck) {
  RunningDaemon daemon(dir_.path());
  DaemonConfig config;
  config.esmtp_loops = 4;  // the test license allows 8
  const std::string path = ConfigFile(daemon.ConfigText(config));
  RunResult r = Ringmaild({"--check-config", "--config", path});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err
                            << "(a build with a vendor license key refuses the test license)";
}

}  // namespace
}  // namespace ringmail::integration
