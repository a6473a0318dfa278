#include "spool/live_index.h"

#include <algorithm>

#include "base/check.h"

namespace ringmail::spool {
namespace {

bool IsFinal(core::RecipientState s) {
  return s == core::RecipientState::kDelivered || s == core::RecipientState::kFailed;
}

std::vector<RecipientStatus> StatusesOf(const core::Envelope& envelope) {
  std::vector<RecipientStatus> out;
  out.reserve(envelope.recipients.size());
  for (const core::Recipient& r : envelope.recipients) {
    out.push_back(RecipientStatus{r.state, r.attempts, r.next_attempt_ms});
  }
  return out;
}

}  // namespace

bool LiveIndex::Entry::AllFinal() const {
  return std::all_of(recipients.begin(), recipients.end(),
                     [](const RecipientStatus& r) { return IsFinal(r.state); });
}

LiveIndex::SegmentStats& LiveIndex::MustFind(SegmentId id) {
  auto it = segments_.find(id);
  RM_CHECK(it != segments_.end()) << "segment " << id.ToString() << " not registered";
  return it->second;
}

void LiveIndex::AddSegment(SegmentId id, uint64_t written_bytes) {
  auto [it, inserted] = segments_.try_emplace(id);
  RM_CHECK(inserted) << "segment " << id.ToString() << " registered twice";
  it->second.written_bytes = written_bytes;
}

void LiveIndex::AddRecoveredSegment(const SegmentReport& report) {
  AddSegment(report.id, report.valid_bytes);
  for (SegmentId to : report.pins) Pin(report.id, to);
}

void LiveIndex::NoteAppended(SegmentId id, uint64_t bytes) { MustFind(id).written_bytes += bytes; }

void LiveIndex::SetActiveSegment(SegmentId id) {
  MustFind(id);
  active_ = id;
  has_active_ = true;
}

const LiveIndex::SegmentStats* LiveIndex::FindSegment(SegmentId id) const {
  auto it = segments_.find(id);
  return it == segments_.end() ? nullptr : &it->second;
}

void LiveIndex::Pin(SegmentId from, SegmentId to) {
  if (from == to) return;
  ++MustFind(from).pins[to];
}

std::vector<SegmentId> LiveIndex::RemovableSegments() const {
  std::vector<SegmentId> out;
  for (const auto& [id, stats] : segments_) {
    if ((has_active_ && id == active_) || stats.live_messages != 0) continue;
    bool pinned = std::any_of(stats.pins.begin(), stats.pins.end(),
                              [this](const auto& pin) { return segments_.contains(pin.first); });
    if (!pinned) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<SegmentId> LiveIndex::CompactionCandidates(uint32_t live_percent_max) const {
  std::vector<std::pair<double, SegmentId>> found;
  for (const auto& [id, stats] : segments_) {
    if ((has_active_ && id == active_) || stats.live_messages == 0) continue;
    if (stats.written_bytes == 0) continue;
    if (stats.live_bytes * 100 > stats.written_bytes * uint64_t{live_percent_max}) continue;
    found.emplace_back(static_cast<double>(stats.live_bytes) /
                           static_cast<double>(stats.written_bytes), id);
  }
  std::sort(found.begin(), found.end());
  std::vector<SegmentId> out;
  out.reserve(found.size());
  for (const auto& f : found) out.push_back(f.second);
  return out;
}

void LiveIndex::RemoveSegment(SegmentId id) {
  auto it = segments_.find(id);
  RM_CHECK(it != segments_.end()) << "segment " << id.ToString() << " not registered";
  RM_CHECK(it->second.live_messages == 0) << "removing " << id.ToString() << " with "
                                          << it->second.live_messages << " live messages";
  RM_CHECK(!(has_active_ && id == active_)) << "removing the active segment";
  segments_.erase(it);
  for (auto& [other, stats] : segments_) stats.pins.erase(id);
}

bool LiveIndex::AddMessage(const core::MessageId& id, const SpoolLocation& location,
                           std::vector<RecipientStatus> recipients) {
  SegmentStats& segment = MustFind(location.segment);
  auto [it, inserted] = messages_.try_emplace(id);
  if (!inserted) return false;
  it->second.location = location;
  it->second.recipients = std::move(recipients);
  segment.live_bytes += location.record_bytes;
  ++segment.live_messages;
  return true;
}

bool LiveIndex::AddMessage(const CommittedMessage& message) {
  return AddMessage(message.id, message.location, StatusesOf(message.envelope));
}

bool LiveIndex::AddMessage(const RecoveredMessage& recovered) {
  if (!AddMessage(recovered.message)) return false;
  Entry& entry = messages_.find(recovered.message.id)->second;
  for (const SpoolLocation& copy : recovered.stale_copies) {
    entry.stale_copies.push_back(copy.segment);
  }
  return true;
}

bool LiveIndex::UpdateRecipient(const core::MessageId& id, uint32_t index,
                                RecipientStatus status, SegmentId written_to) {
  auto it = messages_.find(id);
  if (it == messages_.end()) return false;
  Entry& entry = it->second;
  RM_DCHECK(index < entry.recipients.size());
  if (index >= entry.recipients.size()) return false;
  entry.recipients[index] = status;
  Pin(written_to, entry.location.segment);
  return true;
}

bool LiveIndex::MarkDone(const core::MessageId& id, SegmentId written_to) {
  auto it = messages_.find(id);
  if (it == messages_.end()) return false;
  const Entry& entry = it->second;
  SegmentStats& segment = MustFind(entry.location.segment);
  RM_CHECK(segment.live_messages > 0 && segment.live_bytes >= entry.location.record_bytes);
  segment.live_bytes -= entry.location.record_bytes;
  --segment.live_messages;
  // The DONE record must outlive every MESSAGE record of this id still on disk.
  Pin(written_to, entry.location.segment);
  for (SegmentId copy : entry.stale_copies) {
    if (segments_.contains(copy)) Pin(written_to, copy);
  }
  messages_.erase(it);
  return true;
}

bool LiveIndex::Relocate(const core::MessageId& id, const SpoolLocation& to) {
  auto it = messages_.find(id);
  if (it == messages_.end()) return false;
  Entry& entry = it->second;
  SegmentStats& target = MustFind(to.segment);
  SegmentStats& source = MustFind(entry.location.segment);
  RM_CHECK(source.live_messages > 0 && source.live_bytes >= entry.location.record_bytes);
  source.live_bytes -= entry.location.record_bytes;
  --source.live_messages;
  target.live_bytes += to.record_bytes;
  ++target.live_messages;
  if (entry.location.segment != to.segment) entry.stale_copies.push_back(entry.location.segment);
  entry.location = to;
  return true;
}

const LiveIndex::Entry* LiveIndex::Find(const core::MessageId& id) const {
  auto it = messages_.find(id);
  return it == messages_.end() ? nullptr : &it->second;
}

}  // namespace ringmail::spool
