// core/loop_pool.h — named pools of event loops and the process's set of them.
//
// `eventloop "NAME" { concurrency = N }` becomes one LoopPool of N loops, each pinned to a
// CPU. CPUs are handed out round-robin over every loop of every pool in declaration
// order, after the master loop (which runs on the main thread, on CPU 0). LoopFor(hash)
// shards work (domain records) over a pool's loops.
//
// Thread: built, started and stopped by the main thread; loops are then reached only
// through Loop::Post. The LoopSet outlives every loop's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/loop.h"

namespace ringmail::core {

struct LoopPoolSpec {
  std::string name;
  int loops = 1;
};

class LoopPool {
 public:
  LoopPool(std::string name, std::vector<Loop*> loops)
      : name_(std::move(name)), loops_(std::move(loops)) {}
  const std::string& name() const { return name_; }
  size_t size() const { return loops_.size(); }
  Loop& loop(size_t i) const { return *loops_[i]; }
  Loop& LoopFor(uint64_t hash) const { return *loops_[hash % loops_.size()]; }
  const std::vector<Loop*>& loops() const { return loops_; }

 private:
  std::string name_;
  std::vector<Loop*> loops_;
};

struct LoopSetOptions {
  std::vector<LoopPoolSpec> pools;  // empty: the master loop does everything
  int available_cpus = 1;
  bool pin = true;
  int64_t completion_wait_us = 0;
};

class LoopSet {
 public:
  explicit LoopSet(LoopSetOptions options);
  ~LoopSet();

  // The master loop: runs on the calling (main) thread via master().RunHere().
  Loop& master() { return *master_; }
  // Starts every pool loop on its own pinned thread.
  absl::Status StartPools();
  // Asks every loop, master included, to stop, and joins the pool threads.
  void StopAll();

  // The pool of that name (case-insensitive); the master "pool" when the name is empty or
  // no pools are configured. nullptr if unknown.
  const LoopPool* pool(const std::string& name) const;
  const std::vector<std::unique_ptr<LoopPool>>& pools() const { return pools_; }
  std::vector<Loop*> all_loops() const;
  // "master:cpu0 events_pool/0:cpu1 ..." for the start-up log.
  std::string CpuMap() const;

 private:
  LoopSetOptions options_;
  std::unique_ptr<Loop> master_;
  std::vector<std::unique_ptr<Loop>> owned_;
  std::unique_ptr<LoopPool> master_pool_;
  std::vector<std::unique_ptr<LoopPool>> pools_;
};

// CPUs this process may run on (sched_getaffinity), at least 1.
int AvailableCpus();

}  // namespace ringmail::core
