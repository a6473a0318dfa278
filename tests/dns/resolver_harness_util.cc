#include "tests/dns/resolver_harness_util.h"

#include "gtest/gtest.h"

namespace ringmail::dns::testing {
namespace {

constexpr absl::Duration kLookupDeadline = absl::Seconds(30);

}  // namespace

ResolverOptions TestOptions(const std::string& server) {
  ResolverOptions o;
  o.channel.servers = {server};
  o.channel.timeout_ms = 1000;
  o.channel.tries = 2;
  o.random_seed = 42;
  return o;
}

absl::Status ResolverHarness::Start(ResolverOptions options) {
  core::LoopOptions lo;
  lo.name = "dns-test";
  lo.inbox_capacity = 1 << 10;
  loop_ = std::make_unique<core::Loop>(lo);
  absl::Status s = loop_->Start();
  if (!s.ok()) {
    loop_.reset();
    return s;
  }
  absl::Status created;
  OnLoop([&] {
    absl::StatusOr<std::unique_ptr<Resolver>> r = Resolver::Create(*loop_, std::move(options));
    if (r.ok()) {
      resolver_ = std::move(r).value();
    } else {
      created = r.status();
    }
  });
  return created;
}

void ResolverHarness::OnLoop(absl::AnyInvocable<void() &&> fn) {
  absl::Notification done;
  core::PostResult r = loop_->Post([&] {
    std::move(fn)();
    done.Notify();
  });
  ASSERT_EQ(r, core::PostResult::kOk);
  done.WaitForNotification();
}

MxResult ResolverHarness::Mx(const std::string& domain) {
  MxWaiter w;
  OnLoop([&] { resolver_->ResolveMx(domain, w.lookup); });
  if (!w.done.WaitForNotificationWithTimeout(kLookupDeadline)) {
    OnLoop([&] { resolver_->Cancel(w.lookup); });
    ADD_FAILURE() << "MX lookup of " << domain << " did not complete";
    return {absl::DeadlineExceededError("test deadline"), {}};
  }
  return {w.lookup.status(), w.lookup.answer()};
}

HostResult ResolverHarness::Host(const std::string& host) {
  HostWaiter w;
  OnLoop([&] { resolver_->ResolveHost(host, w.lookup); });
  if (!w.done.WaitForNotificationWithTimeout(kLookupDeadline)) {
    OnLoop([&] { resolver_->Cancel(w.lookup); });
    ADD_FAILURE() << "host lookup of " << host << " did not complete";
    return {absl::DeadlineExceededError("test deadline"), {}};
  }
  return {w.lookup.status(), w.lookup.answer()};
}

ResolverStats ResolverHarness::Stats() {
  ResolverStats s;
  OnLoop([&] { s = resolver_->stats(); });
  return s;
}

void ResolverHarness::Stop() {
  if (loop_ == nullptr) return;
  loop_->RequestStop();
  loop_->Join();
  resolver_.reset();  // after the loop stopped: shut down and idle
  loop_.reset();
}

}  // namespace ringmail::dns::testing
