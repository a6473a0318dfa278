// config/generation.cc — loading entry points, loop counts, the generation store.
#include "config/generation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/check.h"
#include "config/loader.h"
#include "config/parser.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

absl::StatusOr<std::shared_ptr<const Config>> Finish(const std::vector<Node>& nodes,
                                                     std::string source, Diagnostics* diagnostics,
                                                     std::vector<ConfigError>* errors) {
  std::shared_ptr<Config> config;
  // A file that did not parse is not typed: its half-tree would only add noise.
  if (!diagnostics->has_errors()) config = BuildConfig(nodes, std::move(source), diagnostics);
  if (errors != nullptr) *errors = diagnostics->errors();
  if (diagnostics->has_errors()) return diagnostics->ToStatus();
  return std::shared_ptr<const Config>(std::move(config));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path,
                                                             std::vector<ConfigError>* errors) {
  Diagnostics diagnostics;
  std::vector<Node> nodes = ParseConfigFile(path, &diagnostics);
  return Finish(nodes, path, &diagnostics, errors);
}

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigString(std::string_view text,
                                                               std::string_view name,
                                                               std::vector<ConfigError>* errors) {
  Diagnostics diagnostics;
  std::vector<Node> nodes = ParseConfigText(text, name, &diagnostics);
  return Finish(nodes, std::string(name), &diagnostics, errors);
}

std::vector<LoopCount> ResolveLoopCounts(const Config& config, int available_cpus) {
  int cpus = std::max(available_cpus, 1);
  std::vector<LoopCount> counts;
  for (const EventLoopPoolConfig& pool : config.eventloops) {
    int loops = pool.concurrency.value;
    if (pool.concurrency.kind == ConcurrencySpec::Kind::kPercent) {
      loops = static_cast<int>(static_cast<int64_t>(cpus) * pool.concurrency.value / 100);
    }
    counts.push_back(LoopCount{pool.name, std::max(loops, 1)});
  }
  return counts;
}

int TotalLoops(const Config& config, int available_cpus) {
  std::vector<LoopCount> counts = ResolveLoopCounts(config, available_cpus);
  if (counts.empty()) return 1;
  int total = 0;
  for (const LoopCount& count : counts) total += count.loops;
  return total;
}

absl::Status ValidateConcurrency(const Config& config, int available_cpus,
                                 int licensed_concurrency) {
  std::vector<LoopCount> counts = ResolveLoopCounts(config, available_cpus);
  int total = TotalLoops(config, available_cpus);
  int allowed = std::max(licensed_concurrency, 1);
  if (total <= allowed) return absl::OkStatus();
  std::vector<std::string> parts;
  for (const LoopCount& count : counts) parts.push_back(Cat(count.pool, ": ", count.loops));
  return absl::FailedPreconditionError(
      Cat("eventloop pools ask for ", total, " loops (", absl::StrJoin(parts, ", "), " on ",
          std::max(available_cpus, 1), " CPUs) but the license allows ", allowed,
          allowed == 1 ? " (no valid license, or a license for 1 loop)" : ""));
}

uint64_t GenerationStore::Publish(std::shared_ptr<const Config> config) {
  RM_CHECK(config != nullptr) << "publishing a null configuration";
  // Declared before the lock: if ours was the last reference to the old generation, it is
  // destroyed after the mutex is released, so readers never wait on a Config destructor.
  std::shared_ptr<const Config> previous;
  std::lock_guard<std::mutex> lock(mutex_);
  previous = std::exchange(current_, std::move(config));
  return ++generation_;
}

GenerationStore::Pinned GenerationStore::Pin() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return Pinned{current_, generation_};
}

uint64_t GenerationStore::generation() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return generation_;
}

}  // namespace ringmail::config
