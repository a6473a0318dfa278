// config/generation.h — loading a configuration, and publishing generations of it.
//
// Load: LoadConfigFile / LoadConfigString lex, parse (with includes), type every key through
// the schema (config/schema.cc) and run the whole-file checks. On error the Status message is
// every error found, one per line, each `file:line:col: message` (first line = first error);
// `errors`, when given, receives them as a list. The Config fields are listed in
// config/config.h.
//
// Generations: a GenerationStore holds the current std::shared_ptr<const Config> and a
// number that grows by one per Publish. ringmaild publishes (at start and on each accepted
// `config reload`, after DiffConfigs said nothing needs a restart); loops and sessions Pin()
// — a session pins one generation at MAIL and keeps it to the end of the transaction, so a
// reload never changes the rules of a transaction in flight. Publish and Pin are safe from
// any thread; a Pin costs a mutex and a refcount increment (once per session, not per byte).
//
// Concurrency: eventloop pools ask for loop counts that depend on the machine, and the sum
// is capped by the license (config/license.h decides the cap; these functions only take it).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "config/diagnostics.h"

namespace ringmail::config {

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(
    const std::string& path, std::vector<ConfigError>* errors = nullptr);
// `name` is used in messages and as the base folder of relative includes.
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigString(
    std::string_view text, std::string_view name, std::vector<ConfigError>* errors = nullptr);

struct LoopCount {
  std::string pool;
  int loops = 1;
};
// Each eventloop pool's loop count on a machine with `available_cpus` CPUs: a count as
// given; a percentage of the CPUs rounded down, at least 1 ("75%" of 2 CPUs = 1). With no
// eventloop pool, the result is empty: the master loop does everything.
std::vector<LoopCount> ResolveLoopCounts(const Config& config, int available_cpus);
// Loops the configuration asks for in all (1 with no eventloop pool: the master loop).
int TotalLoops(const Config& config, int available_cpus);
// FailedPrecondition when the pools ask for more loops than `licensed_concurrency`, e.g.
// "eventloop pools ask for 6 loops (events_pool: 6 on 8 CPUs) but the license allows 1 (no
// valid license, or a license for 1 loop)".
absl::Status ValidateConcurrency(const Config& config, int available_cpus,
                                 int licensed_concurrency);

class GenerationStore {
 public:
  struct Pinned {
    std::shared_ptr<const Config> config;  // null before the first Publish
    uint64_t generation = 0;               // 0 before the first Publish, then 1, 2, ...
  };

  GenerationStore() = default;
  GenerationStore(const GenerationStore&) = delete;
  GenerationStore& operator=(const GenerationStore&) = delete;

  // Makes `config` current; returns its generation number. `config` must not be null.
  uint64_t Publish(std::shared_ptr<const Config> config);
  Pinned Pin() const;
  uint64_t generation() const;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Config> current_;  // guarded by mutex_
  uint64_t generation_ = 0;                // guarded by mutex_
};

}  // namespace ringmail::config
