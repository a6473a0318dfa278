// delivery/ledger_maintenance.cc — the Ledger's housekeeping: the maintenance timer, the
// unlinker's "held" question, the compactor's host, and the split of a recovery result
// between the owner loops (see ledger.h).
#include <algorithm>
#include <numeric>
#include <utility>

#include "base/check.h"
#include "delivery/internal/ledger_entry.h"
#include "delivery/ledger.h"

namespace ringmail::delivery {
namespace {

// splitmix64 (a bijection), for the DSN id.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Union-find over segment indexes.
class Groups {
 public:
  explicit Groups(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), 0); }
  size_t Find(size_t i) {
    while (parent_[i] != i) i = parent_[i] = parent_[parent_[i]];
    return i;
  }
  void Join(size_t a, size_t b) { parent_[Find(a)] = Find(b); }

 private:
  std::vector<size_t> parent_;
};

}  // namespace

core::MessageId DsnIdFor(const core::MessageId& original) {
  return core::MessageId{original.hi, Mix(original.lo ^ 0x44534e2d52494e47ULL)};  // "DSN-RING"
}

void Ledger::MaintenanceTimerFired(core::Timer&) {
  if (loop_.stopping()) return;
  RunMaintenance();
  loop_.timers().Arm(maintenance_timer_, loop_.now_ms() + options_.maintenance_interval_ms);
}

void Ledger::RunMaintenance() {
  if (unlinker_ == nullptr || loop_.stopping()) return;
  unlinker_->RetryFailed();
  compactor_->RunOnce();
}

void Ledger::SegmentsRemoved(void* raw, const std::vector<spool::SegmentId>& ids) {
  Ledger* self = static_cast<Ledger*>(raw);
  if (self->options_.segments_removed) self->options_.segments_removed(ids);
  self->Progress();
}

void Ledger::CompactionRunDone(void* self) {
  Ledger* ledger = static_cast<Ledger*>(self);
  ledger->unlinker_->Kick();
  ledger->Progress();
}

bool Ledger::Held(spool::SegmentId segment) const { return holds_.contains(segment); }

// Safe to copy now: see spool/compactor.h. No job out (an engine would read the old place,
// and holding it would waste the copy), no record in flight (the copy carries exactly the
// durable states), not finishing (its DONE must not race the copy).
bool Ledger::Movable(const Entry& entry) const {
  return entry.phase == Entry::Phase::kActive && entry.out_count == 0 &&
         entry.records_in_flight == 0 && entry.final_count < entry.tracks.size();
}

void Ledger::CompactionMovable(spool::SegmentId segment, size_t max,
                               std::vector<core::MessageId>* out) {
  // A scan of the live set, once per maintenance run: cheaper than keeping a per-segment
  // list current on every commit and DONE.
  for (const auto& [id, entry] : entries_) {
    if (out->size() == max) return;
    if (entry.location.segment == segment && Movable(entry)) out->push_back(id);
  }
}

bool Ledger::CompactionPrepare(const core::MessageId& id, core::Envelope* envelope) {
  auto it = entries_.find(id);
  if (it == entries_.end() || !Movable(it->second)) return false;
  const std::vector<core::Recipient>& ours = it->second.envelope.recipients;
  if (envelope->recipients.size() != ours.size()) return false;
  for (size_t i = 0; i < ours.size(); ++i) {
    if (envelope->recipients[i].address != ours[i].address) return false;
    envelope->recipients[i].state = ours[i].state;
    envelope->recipients[i].attempts = ours[i].attempts;
    envelope->recipients[i].next_attempt_ms = ours[i].next_attempt_ms;
  }
  return true;
}

void Ledger::CompactionRelocated(const core::MessageId& id, const spool::SpoolLocation& to) {
  auto it = entries_.find(id);
  RM_CHECK(it != entries_.end());
  live_bytes_ = live_bytes_ - it->second.location.record_bytes + to.record_bytes;
  it->second.location = to;
}

absl::StatusOr<std::vector<LedgerAdoption>> SplitRecovery(spool::RecoveryResult result,
                                                         const std::vector<bool>& owner) {
  std::vector<LedgerAdoption> out(owner.size());
  std::vector<spool::SegmentReport>& segments = result.report.segments;
  auto first = std::find(owner.begin(), owner.end(), true);
  if (first == owner.end()) {
    if (segments.empty() && result.live.empty()) return out;
    return absl::InvalidArgumentError("no loop owns a spool writer to adopt recovered segments");
  }
  const uint32_t fallback = static_cast<uint32_t>(first - owner.begin());
  absl::flat_hash_map<spool::SegmentId, size_t> index;
  for (size_t i = 0; i < segments.size(); ++i) index.emplace(segments[i].id, i);
  Groups groups(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    for (spool::SegmentId pin : segments[i].pins) {
      auto it = index.find(pin);
      if (it != index.end()) groups.Join(i, it->second);
    }
  }
  for (const spool::RecoveredMessage& m : result.live) {
    auto at = index.find(m.message.location.segment);
    if (at == index.end()) continue;
    for (const spool::SpoolLocation& copy : m.stale_copies) {
      auto it = index.find(copy.segment);
      if (it != index.end()) groups.Join(at->second, it->second);
    }
  }
  // A group's ledger: its directory's loop if that is the only one and it owns a writer.
  constexpr uint32_t kMixed = UINT32_MAX;
  absl::flat_hash_map<size_t, uint32_t> group_loop;
  for (size_t i = 0; i < segments.size(); ++i) {
    auto [it, inserted] = group_loop.try_emplace(groups.Find(i), segments[i].id.loop);
    if (!inserted && it->second != segments[i].id.loop) it->second = kMixed;
  }
  auto target_of = [&](spool::SegmentId id) -> uint32_t {
    auto at = index.find(id);
    uint32_t loop = at == index.end() ? id.loop : group_loop[groups.Find(at->second)];
    return loop < owner.size() && owner[loop] ? loop : fallback;
  };
  for (spool::SegmentReport& s : segments) {
    uint32_t t = target_of(s.id);
    out[t].segments.push_back(std::move(s));
  }
  for (spool::RecoveredMessage& m : result.live) {
    uint32_t t = target_of(m.message.location.segment);
    out[t].messages.push_back(std::move(m));
  }
  return out;
}

}  // namespace ringmail::delivery
