// tests/delivery/engine_harness_util.h — an Engine on a real loop thread for the tests, with
// its reports collected, a real spool segment file to deliver from, and a config builder.
//
// - EngineHarness: starts a core::Loop, creates the Engine on it (EngineOptions as the test
//   made them; the report sink is the harness's own: it records every report and can
//   answer kFull a given number of times), and offers blocking helpers for the test
//   thread: Submit (posted), OnLoop (run and wait), AwaitReports (bounded wait on a
//   condition variable). Stop() stops the loop (the engine's stop path runs on it), joins
//   it, then destroys the engine.
// - SpoolFile: a segment file made with the spool's own encoders (segment header + MESSAGE
//   records) under a temporary directory; Add() returns the DeliveryJob of a message.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "core/loop.h"
#include "delivery/engine.h"
#include "delivery/job.h"

namespace ringmail::delivery::testing {

// A config for the tests: `text` loaded, then short retry and timeout values set directly
// (the schema's minimums are for operators, not tests).
absl::StatusOr<std::shared_ptr<config::Config>> TestConfig(const std::string& text);

// Resolver options pointing at `server` ("127.0.0.1:port"), short timeouts.
dns::ResolverOptions TestResolver(const std::string& server);

class EngineHarness {
 public:
  EngineHarness() = default;
  ~EngineHarness() { Stop(); }
  EngineHarness(const EngineHarness&) = delete;
  EngineHarness& operator=(const EngineHarness&) = delete;

  // `options.report_sink` is replaced by the harness's, unless `production_reports`:
  // then the reports take the production path (options.topology → the ledgers) and
  // reports() stays empty.
  absl::Status Start(EngineOptions options, bool production_reports = false);
  void Submit(DeliveryJob job);
  void OnLoop(absl::AnyInvocable<void(Engine&) &&> fn);
  std::vector<DomainSummary> Summary();
  EngineStats Stats();

  // Waits (up to 20 s) until `done(reports so far)` holds; false on timeout.
  bool AwaitReports(const std::function<bool(const std::vector<DeliveryReport>&)>& done);
  // Waits until `n` report items in all have the given state.
  bool AwaitItems(core::RecipientState state, size_t n);
  std::vector<DeliveryReport> reports() const;
  // The next `n` sink calls answer kFull (the engine must keep and retry the batch).
  void RefuseNextBatches(int n);
  int refused_batches() const;

  core::Loop& loop() { return *loop_; }
  void Stop();

 private:
  std::unique_ptr<core::Loop> loop_;
  std::unique_ptr<Engine> engine_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DeliveryReport> reports_;
  int refuse_ = 0;
  int refused_ = 0;
};

class SpoolFile {
 public:
  SpoolFile();
  ~SpoolFile();
  SpoolFile(const SpoolFile&) = delete;
  SpoolFile& operator=(const SpoolFile&) = delete;

  // Appends a MESSAGE record for `content` (a Received: header is part of it) and returns
  // its job for `domain` with one recipient per address (indices 0..n-1).
  DeliveryJob Add(const std::string& from, const std::vector<std::string>& recipients,
                  const std::string& domain, std::string_view body, bool eight_bit = false);
  // The exact bytes the job's content names (Received: header + body).
  static std::string ContentOf(const DeliveryJob& job);

  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  uint64_t next_id_ = 1;
};

}  // namespace ringmail::delivery::testing
