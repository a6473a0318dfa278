// tests/delivery/engine_fixture_util.h — the GoogleTest fixture the Engine tests share: one
// in-test SMTP server (started by the test, with its options), a spool segment file to
// deliver from, and an Engine on a real loop (engine_harness_util.h). Skips the test when
// the kernel has no io_uring. Members are destroyed engine first, then spool, then server.
#pragma once

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "core/ring.h"
#include "gtest/gtest.h"
#include "tests/delivery/engine_harness_util.h"
#include "tests/delivery/smtp_server_util.h"

namespace ringmail::delivery::testing {

class EngineFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status probe = core::ProbeKernel();
    if (!probe.ok()) GTEST_SKIP() << probe;
  }

  void StartServer(ServerOptions options = {}) {
    auto s = TestSmtpServer::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
  }

  std::unique_ptr<TestSmtpServer> server_;
  SpoolFile spool_;
  EngineHarness engine_;
};

}  // namespace ringmail::delivery::testing
