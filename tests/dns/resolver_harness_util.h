// tests/dns/resolver_harness_util.h — a core::Loop on its own thread with a Resolver made on
// it, and blocking helpers for the test thread: run a closure on the loop and wait for it,
// or run one lookup and wait for its handler (bounded: a lookup that never completes
// fails the test instead of hanging it). Stop() stops and joins the loop (which shuts the
// resolver down), then destroys the resolver, as its contract asks.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "core/loop.h"
#include "dns/resolver.h"

namespace ringmail::dns::testing {

struct MxResult {
  absl::Status status;
  MxAnswer answer;
};

struct HostResult {
  absl::Status status;
  HostAnswer answer;
};

// A lookup record with a handler that records and signals; usable from any test code.
struct MxWaiter {
  MxWaiter() { lookup.Bind<&MxWaiter::Done>(this); }
  void Done(MxLookup&) {
    if (++calls == 1) done.Notify();  // a second call is a bug the test sees in `calls`
  }
  MxLookup lookup;
  int calls = 0;
  absl::Notification done;
};

struct HostWaiter {
  HostWaiter() { lookup.Bind<&HostWaiter::Done>(this); }
  void Done(HostLookup&) {
    if (++calls == 1) done.Notify();  // a second call is a bug the test sees in `calls`
  }
  HostLookup lookup;
  int calls = 0;
  absl::Notification done;
};

class ResolverHarness {
 public:
  ResolverHarness() = default;
  ~ResolverHarness() { Stop(); }
  ResolverHarness(const ResolverHarness&) = delete;
  ResolverHarness& operator=(const ResolverHarness&) = delete;

  // Starts the loop and creates the resolver on it.
  absl::Status Start(ResolverOptions options);
  // Runs `fn` on the loop thread and waits for it to return.
  void OnLoop(absl::AnyInvocable<void() &&> fn);
  MxResult Mx(const std::string& domain);
  HostResult Host(const std::string& host);
  // A copy of the resolver's counters, read on the loop.
  ResolverStats Stats();
  core::Loop& loop() { return *loop_; }
  Resolver& resolver() { return *resolver_; }  // loop thread only while running
  void Stop();

 private:
  std::unique_ptr<core::Loop> loop_;
  std::unique_ptr<Resolver> resolver_;
};

// A resolver configuration for tests: the given server only, short timeouts.
ResolverOptions TestOptions(const std::string& server);

}  // namespace ringmail::dns::testing
