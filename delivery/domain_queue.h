// delivery/domain_queue.h — the queues of one destination domain on its delivery loop.
//
// A pure data structure (no I/O, no clock reads, no timers): the Engine (delivery/engine.h)
// owns one DomainQueue per domain record, feeds it the loop's time and arms the domain's
// timer at NextDueMs(). Loop thread only.
//
// What is queued is Work: some recipients of one message, all in this domain, to be sent
// in one SMTP transaction. A DeliveryJob becomes one or more Works (MakeWorks): recipients
// due now form Works of at most `recipients_max` each; recipients deferred to a later time
// form Works grouped by that time. The message's metadata (sender, where its content is in
// the spool) is shared by its Works, never copied per recipient.
//
//   ready    FIFO of Works due now; the scheduler takes from the front (skipping, within a
//            bounded window, Works whose owner loop brakes).
//   delayed  Works ordered by due time (Unix ms); PromoteDue() moves the due ones to ready.
//
// Times are Unix milliseconds, like DeliveryJob's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "core/message.h"
#include "delivery/job.h"

namespace ringmail::delivery {

// What every Work of one message shares (immutable once made).
struct QueuedMessage {
  core::MessageId id;
  uint64_t received_ms = 0;
  std::string mail_from;
  std::string mail_params;
  std::string segment_path;
  uint64_t content_offset = 0;
  uint64_t content_length = 0;
  bool eight_bit = false;
  uint32_t owner_loop = 0;
};

struct Work {
  std::shared_ptr<const QueuedMessage> message;
  std::vector<DeliveryJob::Recipient> recipients;  // 1..recipients_max, one domain
  uint64_t due_ms = 0;                             // Unix ms; not before this
};

// Splits `job` into Works: due recipients (next_attempt_ms <= now_ms) in envelope order,
// at most `recipients_max` (>= 1) per Work; later ones grouped by next_attempt_ms.
std::vector<Work> MakeWorks(DeliveryJob&& job, uint64_t now_ms, size_t recipients_max);

// How far TakeReady() looks past braked Works for one it may start.
inline constexpr size_t kBrakeScanMax = 64;

class DomainQueue {
 public:
  explicit DomainQueue(std::string domain) : domain_(std::move(domain)) {}
  DomainQueue(const DomainQueue&) = delete;
  DomainQueue& operator=(const DomainQueue&) = delete;

  const std::string& domain() const { return domain_; }

  // Ready when work.due_ms <= now_ms, else delayed until work.due_ms.
  void File(Work work, uint64_t now_ms);
  // Delayed Works due at `now_ms` → ready (in due order); returns how many moved.
  size_t PromoteDue(uint64_t now_ms);
  // Every delayed Work → ready now (operator flush); returns how many moved.
  size_t FlushDelayed();
  // The first ready Work whose owner loop is not braked, looking at most kBrakeScanMax
  // Works deep; nullopt when none.
  std::optional<Work> TakeReady(absl::FunctionRef<bool(uint32_t owner_loop)> braked);
  // Every ready Work (the whole destination failed: DNS, no host reachable).
  std::vector<Work> TakeAllReady();

  bool has_ready() const { return !ready_.empty(); }
  bool empty() const { return ready_.empty() && delayed_.empty(); }
  size_t ready_works() const { return ready_.size(); }
  size_t delayed_works() const { return delayed_.size(); }
  uint64_t ready_recipients() const { return ready_recipients_; }
  uint64_t delayed_recipients() const { return delayed_recipients_; }
  // Earliest due time of a delayed Work; UINT64_MAX when none.
  uint64_t NextDueMs() const;
  // received_ms of the oldest queued message (ready or delayed); 0 when empty. O(n): for
  // operator summaries, not for the delivery path.
  uint64_t OldestReceivedMs() const;

 private:
  std::string domain_;
  std::deque<Work> ready_;
  std::multimap<uint64_t, Work> delayed_;
  uint64_t ready_recipients_ = 0;
  uint64_t delayed_recipients_ = 0;
};

}  // namespace ringmail::delivery
