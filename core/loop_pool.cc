#include "core/loop_pool.h"

#include <sched.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ringmail::core {

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? n : 1;
}

LoopSet::LoopSet(LoopSetOptions options) : options_(std::move(options)) {
  const int cpus = options_.available_cpus > 0 ? options_.available_cpus : 1;
  uint16_t index = 0;
  LoopOptions master_options;
  master_options.name = "master";
  master_options.index = index++;
  master_options.cpu = options_.pin ? 0 : -1;
  master_options.completion_wait_us = options_.completion_wait_us;
  master_ = std::make_unique<Loop>(master_options);
  master_pool_ = std::make_unique<LoopPool>("master", std::vector<Loop*>{master_.get()});
  int next_cpu = 1;
  for (const LoopPoolSpec& spec : options_.pools) {
    std::vector<Loop*> loops;
    for (int i = 0; i < spec.loops; ++i) {
      LoopOptions lo;
      lo.name = absl::StrCat(spec.name, "/", i);
      lo.index = index++;
      lo.cpu = options_.pin ? (next_cpu++ % cpus) : -1;
      lo.completion_wait_us = options_.completion_wait_us;
      owned_.push_back(std::make_unique<Loop>(lo));
      loops.push_back(owned_.back().get());
    }
    pools_.push_back(std::make_unique<LoopPool>(spec.name, std::move(loops)));
  }
}

LoopSet::~LoopSet() { StopAll(); }

absl::Status LoopSet::StartPools() {
  for (auto& loop : owned_) {
    absl::Status s = loop->Start();
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void LoopSet::StopAll() {
  for (auto& loop : owned_) loop->RequestStop();
  for (auto& loop : owned_) loop->Join();
  master_->RequestStop();
}

const LoopPool* LoopSet::pool(const std::string& name) const {
  if (name.empty() || pools_.empty()) return master_pool_.get();
  for (const auto& p : pools_) {
    if (absl::EqualsIgnoreCase(p->name(), name)) return p.get();
  }
  return nullptr;
}

std::vector<Loop*> LoopSet::all_loops() const {
  std::vector<Loop*> out{master_.get()};
  for (const auto& l : owned_) out.push_back(l.get());
  return out;
}

std::string LoopSet::CpuMap() const {
  std::string out;
  for (Loop* l : all_loops()) {
    absl::StrAppend(&out, out.empty() ? "" : " ", l->name(), ":",
                    l->options().cpu >= 0 ? absl::StrCat("cpu", l->options().cpu)
                                          : std::string("unpinned"));
  }
  return out;
}

}  // namespace ringmail::core
