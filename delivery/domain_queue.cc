// delivery/domain_queue.cc — ready and delayed Works of one domain.
#include "delivery/domain_queue.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace ringmail::delivery {

std::vector<Work> MakeWorks(DeliveryJob&& job, uint64_t now_ms, size_t recipients_max) {
  RM_CHECK(recipients_max >= 1);
  auto message = std::make_shared<QueuedMessage>();
  message->id = job.id;
  message->received_ms = job.received_ms;
  message->mail_from = std::move(job.mail_from);
  message->mail_params = std::move(job.mail_params);
  message->segment_path = std::move(job.segment_path);
  message->content_offset = job.content_offset;
  message->content_length = job.content_length;
  message->eight_bit = job.eight_bit;
  message->owner_loop = job.owner_loop;
  std::shared_ptr<const QueuedMessage> shared = std::move(message);
  auto due_of = [now_ms](const DeliveryJob::Recipient& r) {
    return r.next_attempt_ms <= now_ms ? 0 : r.next_attempt_ms;
  };

  // Every message that has just been accepted: its recipients all due at once and within one
  // transaction. Its recipient list becomes the one Work as it is, without the grouping below
  // (which costs a map node and a vector per message).
  std::vector<Work> works;
  const std::vector<DeliveryJob::Recipient>& all = job.recipients;
  if (!all.empty() && all.size() <= recipients_max &&
      std::all_of(all.begin(), all.end(), [&](const DeliveryJob::Recipient& r) {
        return due_of(r) == due_of(all.front());
      })) {
    Work& w = works.emplace_back();
    w.message = std::move(shared);
    w.due_ms = due_of(all.front());
    w.recipients = std::move(job.recipients);
    return works;
  }

  // Group by due time (0 and past times mean now), keeping envelope order within a group.
  std::map<uint64_t, std::vector<DeliveryJob::Recipient>> by_due;
  for (DeliveryJob::Recipient& r : job.recipients) {
    by_due[due_of(r)].push_back(std::move(r));
  }
  for (auto& [due, recipients] : by_due) {
    for (size_t first = 0; first < recipients.size(); first += recipients_max) {
      size_t last = std::min(recipients.size(), first + recipients_max);
      Work w;
      w.message = shared;
      w.due_ms = due;
      w.recipients.assign(std::make_move_iterator(recipients.begin() + first),
                          std::make_move_iterator(recipients.begin() + last));
      works.push_back(std::move(w));
    }
  }
  return works;
}

void DomainQueue::File(Work work, uint64_t now_ms) {
  RM_DCHECK(!work.recipients.empty());
  if (work.due_ms <= now_ms) {
    ready_recipients_ += work.recipients.size();
    ready_.push_back(std::move(work));
  } else {
    delayed_recipients_ += work.recipients.size();
    uint64_t due = work.due_ms;
    delayed_.emplace(due, std::move(work));
  }
}

size_t DomainQueue::PromoteDue(uint64_t now_ms) {
  size_t moved = 0;
  while (!delayed_.empty() && delayed_.begin()->first <= now_ms) {
    Work w = std::move(delayed_.begin()->second);
    delayed_.erase(delayed_.begin());
    delayed_recipients_ -= w.recipients.size();
    ready_recipients_ += w.recipients.size();
    ready_.push_back(std::move(w));
    ++moved;
  }
  return moved;
}

size_t DomainQueue::FlushDelayed() { return PromoteDue(UINT64_MAX); }

std::optional<Work> DomainQueue::TakeReady(
    absl::FunctionRef<bool(uint32_t owner_loop)> braked) {
  size_t window = std::min(ready_.size(), kBrakeScanMax);
  for (size_t i = 0; i < window; ++i) {
    if (braked(ready_[i].message->owner_loop)) continue;
    Work w = std::move(ready_[i]);
    ready_.erase(ready_.begin() + static_cast<std::ptrdiff_t>(i));
    ready_recipients_ -= w.recipients.size();
    return w;
  }
  return std::nullopt;
}

std::vector<Work> DomainQueue::TakeAllReady() {
  std::vector<Work> out(std::make_move_iterator(ready_.begin()),
                        std::make_move_iterator(ready_.end()));
  ready_.clear();
  ready_recipients_ = 0;
  return out;
}

uint64_t DomainQueue::NextDueMs() const {
  return delayed_.empty() ? UINT64_MAX : delayed_.begin()->first;
}

uint64_t DomainQueue::OldestReceivedMs() const {
  uint64_t oldest = UINT64_MAX;
  for (const Work& w : ready_) oldest = std::min(oldest, w.message->received_ms);
  for (const auto& [due, w] : delayed_) oldest = std::min(oldest, w.message->received_ms);
  return oldest == UINT64_MAX ? 0 : oldest;
}

}  // namespace ringmail::delivery
