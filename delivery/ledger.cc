// delivery/ledger.cc — the Ledger's intake: start-up, adoption of recovered messages,
// committed messages, and dispatch of jobs to the engines (see ledger.h).
#include "delivery/ledger.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "base/string_view.h"
#include "delivery/internal/ledger_entry.h"

namespace ringmail::delivery {
namespace {

// Pending (message, domain) jobs retried per dispatch timer firing: a bounded batch.
constexpr size_t kDispatchRetryBatch = 1024;

// parked_ is a min-heap on the due time.
bool LaterDue(const std::pair<uint64_t, core::MessageId>& a,
              const std::pair<uint64_t, core::MessageId>& b) {
  return a.first > b.first;
}

// MAIL FROM ... BODY=8BITMIME (RFC 6152); parameters are case-insensitive.
bool EightBit(std::string_view params) {
  for (absl::string_view p : absl::StrSplit(ToAbsl(params), ' ', absl::SkipEmpty())) {
    if (absl::EqualsIgnoreCase(p, "BODY=8BITMIME")) return true;
  }
  return false;
}

// The delivery domain of a recipient, lower-case, and the address to give the engine.
// A bare "postmaster" (RFC 5321 §4.5.1) is the configured postmaster. False: no domain.
bool DestinationOf(std::string_view address, std::string_view postmaster, std::string* domain,
                   std::string* deliver_to) {
  if (address.find('@') == std::string_view::npos &&
      absl::EqualsIgnoreCase(ToAbsl(address), "postmaster")) {
    address = postmaster;
  }
  size_t at = address.rfind('@');
  if (at == std::string_view::npos || at + 1 == address.size() || at == 0) return false;
  *domain = AsciiLower(address.substr(at + 1));
  deliver_to->assign(address);
  return true;
}

}  // namespace

bool IsFinalState(core::RecipientState state) {
  return state == core::RecipientState::kDelivered || state == core::RecipientState::kFailed;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = absl::ascii_tolower(static_cast<unsigned char>(c));
  return out;
}

LedgerOptions LedgerOptionsFrom(const config::GlobalOptions& global,
                                const core::ThreadPoolRegistry* pools) {
  LedgerOptions o;
  o.spool_dir = global.spool_dir;
  o.hostname = global.hostname;
  o.postmaster = global.postmaster;
  if (pools != nullptr) {
    o.unlink_pool = pools->Find(core::kUnlinkPool);
    o.batch_unlink_pool = pools->Find(core::kBatchUnlinkPool);
    if (o.unlink_pool != nullptr) o.unlink_backlog = o.unlink_pool->Stats().backlog;
  }
  return o;
}

Ledger::Ledger(core::Loop& loop, LedgerOptions options)
    : loop_(loop), options_(std::move(options)) {
  RM_CHECK(options_.dispatch != nullptr) << "Ledger without a dispatch";
  dispatch_timer_.Bind<&Ledger::DispatchTimerFired>(this);
  retry_timer_.Bind<&Ledger::RetryTimerFired>(this);
  park_timer_.Bind<&Ledger::ParkTimerFired>(this);
  maintenance_timer_.Bind<&Ledger::MaintenanceTimerFired>(this);
}

Ledger::~Ledger() {
  // After the loop stopped every write, read and unlink completed (the loop waits for its
  // ops); the timers were cleared with it. On the loop, the owner checked idle().
  RM_CHECK(state_ops_in_flight_ == 0) << "ledger destroyed with state records in flight";
  RM_CHECK(bounces_in_flight_ == 0) << "ledger destroyed with a DSN in flight";
  for (core::Timer* t : {&dispatch_timer_, &retry_timer_, &park_timer_, &maintenance_timer_}) {
    if (t->armed()) loop_.timers().Cancel(*t);
  }
}

absl::Status Ledger::Start(spool::SpoolWriter& writer) {
  RM_CHECK(loop_.IsCurrent()) << "Ledger::Start off its loop";
  RM_CHECK(writer_ == nullptr) << "Ledger started twice";
  writer_ = &writer;
  spool::UnlinkerOptions uo;
  uo.spool_dir = options_.spool_dir;
  uo.loop_index = loop_.index();
  uo.unlink_pool = options_.unlink_pool;
  uo.batch_unlink_pool = options_.batch_unlink_pool;
  uo.use_ring = options_.unlink_with_ring;
  uo.held = [this](spool::SegmentId id) { return Held(id); };
  RM_ASSIGN_OR_RETURN(unlinker_, spool::Unlinker::Create(loop_, index_, writer, std::move(uo)));
  unlinker_->SetRemoved(&Ledger::SegmentsRemoved, this);
  spool::CompactorOptions co;
  co.spool_dir = options_.spool_dir;
  co.live_percent_max = options_.compaction_live_percent;
  co.run_messages_max = options_.compaction_run_messages_max;
  co.run_bytes_max = options_.compaction_run_bytes_max;
  spool::CompactionHost& host = *this;
  compactor_ = std::make_unique<spool::Compactor>(loop_, index_, writer, host, co);
  compactor_->SetRunDone(&Ledger::CompactionRunDone, this);
  loop_.timers().Arm(maintenance_timer_, loop_.now_ms() + options_.maintenance_interval_ms);
  return absl::OkStatus();
}

uint64_t Ledger::UnixNowMs() {
  if (options_.unix_now_ms) return options_.unix_now_ms();
  return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
}

void Ledger::Progress() {
  if (options_.progress) options_.progress();
}

// Registers a message the LiveIndex already has; returns its entry.
Ledger::Entry* Ledger::Track(spool::CommittedMessage&& message) {
  Entry e;
  e.received_ms = message.received_ms;
  e.envelope = std::move(message.envelope);
  e.received_header_length = message.received_header_length;
  e.location = message.location;
  e.tracks.resize(e.envelope.recipients.size());
  for (size_t i = 0; i < e.tracks.size(); ++i) {
    const core::Recipient& r = e.envelope.recipients[i];
    e.tracks[i].attempts = r.attempts;
    if (r.state == core::RecipientState::kDeferred) e.tracks[i].next_attempt_ms = r.next_attempt_ms;
    if (IsFinalState(r.state)) {
      e.tracks[i].final = e.tracks[i].reported_final = true;
      ++e.final_count;
    }
  }
  live_bytes_ += e.location.record_bytes;
  auto [it, inserted] = entries_.emplace(message.id, std::move(e));
  RM_CHECK(inserted);
  return &it->second;
}

void Ledger::Committed(spool::CommittedMessage&& message) {
  RM_DCHECK(loop_.IsCurrent());
  // A compaction copy of a message tracked here (the compactor relocated it already).
  if (entries_.contains(message.id)) return;
  if (index_.FindSegment(message.location.segment) == nullptr) {
    // A recovered message handed over without Adopt(): its segment's pins are unknown.
    core::LogWarning("ledger: %s in unregistered segment %s (use Adopt for recovery)",
                     message.id.ToHex(), message.location.segment.ToString());
    index_.AddSegment(message.location.segment,
                      message.location.record_offset + message.location.record_bytes);
  }
  if (!index_.AddMessage(message)) {
    RM_BUG("ledger: a message committed twice");
    return;
  }
  const core::MessageId id = message.id;
  Entry* entry = Track(std::move(message));
  if (entry->final_count == entry->tracks.size()) {
    MaybeFinish(id, *entry);
  } else {
    Dispatch(id, *entry);
  }
}

void Ledger::Adopt(LedgerAdoption adoption) {
  RM_CHECK(loop_.IsCurrent() && writer_ != nullptr) << "Adopt before Start or off the loop";
  for (const spool::SegmentReport& segment : adoption.segments) {
    if (index_.FindSegment(segment.id) != nullptr) continue;
    index_.AddRecoveredSegment(segment);
    if (segment.id.loop != loop_.index()) {
      absl::Status s = unlinker_->AddDirectory(segment.id.loop);
      if (!s.ok()) core::LogWarning("ledger: %s", s.ToString());
    }
  }
  std::vector<core::MessageId> adopted;
  adopted.reserve(adoption.messages.size());
  for (spool::RecoveredMessage& rm : adoption.messages) {
    spool::CommittedMessage& m = rm.message;
    if (entries_.contains(m.id)) continue;
    if (index_.FindSegment(m.location.segment) == nullptr) {
      core::LogWarning("ledger: adopted %s without its segment %s", m.id.ToHex(),
                       m.location.segment.ToString());
      index_.AddSegment(m.location.segment, m.location.record_offset + m.location.record_bytes);
    }
    if (!index_.AddMessage(rm)) continue;
    adopted.push_back(m.id);
    Track(std::move(m));
  }
  // Second pass, once every adopted id is known: a DSN that is itself live is not redone.
  for (const core::MessageId& id : adopted) {
    Entry& entry = entries_.find(id)->second;
    if (entry.final_count == entry.tracks.size()) {
      entry.skip_dsn = entries_.contains(DsnIdFor(id));
      MaybeFinish(id, entry);
    } else {
      Dispatch(id, entry);
    }
  }
  unlinker_->Kick();
  Progress();
}

// The jobs for the recipients of `entry` that are neither final, nor out, nor parked, one
// per domain (only `only_domain` when not empty). Recipients without a domain fail here.
std::vector<DeliveryJob> Ledger::BuildJobs(const core::MessageId& id, Entry& entry,
                                           std::string_view only_domain) {
  std::vector<DeliveryJob> jobs;
  absl::flat_hash_map<std::string, size_t> by_domain;
  std::string domain;
  std::string deliver_to;
  for (uint32_t i = 0; i < entry.tracks.size(); ++i) {
    const Entry::Track& t = entry.tracks[i];
    if (t.reported_final || t.out || t.parked) continue;
    const core::Recipient& r = entry.envelope.recipients[i];
    if (!DestinationOf(r.address, options_.postmaster, &domain, &deliver_to)) {
      FailLocally(id, entry, i, "5.1.3 the recipient address has no domain");
      continue;
    }
    if (!only_domain.empty() && domain != only_domain) continue;
    auto [it, inserted] = by_domain.try_emplace(domain, jobs.size());
    if (inserted) {
      DeliveryJob& job = jobs.emplace_back();
      job.id = id;
      job.received_ms = entry.received_ms;
      job.mail_from = entry.envelope.mail_from;
      job.mail_params = entry.envelope.mail_params;
      job.domain = domain;
      job.segment_path = spool::SegmentPath(options_.spool_dir, entry.location.segment);
      job.content_offset = entry.location.content_offset;
      job.content_length = entry.location.content_length;
      job.eight_bit = EightBit(entry.envelope.mail_params);
      job.owner_loop = loop_.index();
    }
    DeliveryJob::Recipient& jr = jobs[it->second].recipients.emplace_back();
    jr.index = i;
    jr.address = deliver_to;
    jr.params = r.params;
    jr.attempts = t.attempts;
    jr.next_attempt_ms = t.next_attempt_ms;
  }
  return jobs;
}

void Ledger::Dispatch(const core::MessageId& id, Entry& entry) {
  if (loop_.stopping()) return;  // the spool keeps it: the next start dispatches it
  for (DeliveryJob& job : BuildJobs(id, entry, {})) {
    // Behind older waiting jobs, so that a full engine is fed in arrival order.
    if (!pending_.empty() || !Post(id, entry, job)) {
      pending_.push_back(Pending{id, std::move(job.domain)});
      if (!dispatch_timer_.armed()) {
        loop_.timers().Arm(dispatch_timer_, loop_.now_ms() + options_.dispatch_retry_ms);
      }
    }
  }
}

// True when the job left (or was dropped because its engine's loop is gone).
bool Ledger::Post(const core::MessageId&, Entry& entry, DeliveryJob& job) {
  std::vector<uint32_t> indexes;
  indexes.reserve(job.recipients.size());
  for (const DeliveryJob::Recipient& r : job.recipients) indexes.push_back(r.index);
  core::PostResult r = options_.dispatch(job);
  if (r == core::PostResult::kFull) return false;
  if (r == core::PostResult::kStopped) return true;
  ++stats_.jobs_dispatched;
  for (uint32_t i : indexes) SetOut(entry, i, true);
  return true;
}

void Ledger::DispatchTimerFired(core::Timer&) {
  for (size_t n = 0; n < kDispatchRetryBatch && !pending_.empty(); ++n) {
    const Pending& p = pending_.front();
    auto it = entries_.find(p.id);
    if (it != entries_.end() && it->second.phase == Entry::Phase::kActive && !loop_.stopping()) {
      std::vector<DeliveryJob> jobs = BuildJobs(p.id, it->second, p.domain);
      if (!jobs.empty() && !Post(p.id, it->second, jobs.front())) break;
    }
    pending_.pop_front();
  }
  if (!pending_.empty() && !loop_.stopping()) {
    loop_.timers().Arm(dispatch_timer_, loop_.now_ms() + options_.dispatch_retry_ms);
  }
}

void Ledger::SetOut(Entry& entry, uint32_t index, bool out) {
  Entry::Track& t = entry.tracks[index];
  if (t.out == out) return;
  t.out = out;
  if (out) {
    t.out_segment = entry.location.segment;
    ++entry.out_count;
    ++holds_[t.out_segment];
    return;
  }
  --entry.out_count;
  auto it = holds_.find(t.out_segment);
  RM_CHECK(it != holds_.end() && it->second > 0);
  if (--it->second == 0) {
    holds_.erase(it);
    // The segment may have been waiting only for this job (compaction moved its message).
    if (entry.location.segment != t.out_segment) unlinker_->Kick();
  }
}

void Ledger::Park(const core::MessageId& id, uint64_t due_unix_ms) {
  parked_.emplace_back(due_unix_ms, id);
  std::push_heap(parked_.begin(), parked_.end(), LaterDue);
  ArmParkTimer();
}

void Ledger::ArmParkTimer() {
  if (parked_.empty() || loop_.stopping()) return;
  uint64_t now = UnixNowMs();
  uint64_t due = parked_.front().first;
  uint64_t deadline = loop_.now_ms() + (due > now ? due - now : 0);
  if (!park_timer_.armed() || park_timer_.deadline_ms > deadline) {
    loop_.timers().Arm(park_timer_, deadline);
  }
}

// Due parked recipients go out again (all of a message's parked ones: the job carries each
// one's next attempt, which the engine honours).
void Ledger::ParkTimerFired(core::Timer&) {
  uint64_t now = UnixNowMs();
  while (!parked_.empty() && parked_.front().first <= now && !loop_.stopping()) {
    std::pop_heap(parked_.begin(), parked_.end(), LaterDue);
    core::MessageId id = parked_.back().second;
    parked_.pop_back();
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    Entry& entry = it->second;
    bool any = false;
    for (Entry::Track& t : entry.tracks) {
      if (!t.parked) continue;
      t.parked = false;
      --parked_count_;
      any = true;
    }
    if (any && entry.phase == Entry::Phase::kActive) Dispatch(id, entry);
  }
  ArmParkTimer();
}

std::optional<MessageView> Ledger::MessageShow(const core::MessageId& id) const {
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  const Entry& e = it->second;
  MessageView v;
  v.id = id;
  v.received_ms = e.received_ms;
  v.envelope = e.envelope;
  v.location = e.location;
  v.phase = e.phase == Entry::Phase::kActive     ? "active"
            : e.phase == Entry::Phase::kBouncing ? "bouncing"
                                                 : "finishing";
  v.recipients_out = e.out_count;
  v.records_in_flight = e.records_in_flight;
  return v;
}

LedgerStats Ledger::stats() const {
  LedgerStats s = stats_;
  s.live_messages = entries_.size();
  s.live_bytes = live_bytes_;
  s.segments = index_.segment_count();
  s.unlink_backlog = backlog_delivered_ + backlog_finishing_;
  s.braking = brake_.load(std::memory_order_relaxed);
  s.dispatch_pending = pending_.size();
  s.parked = parked_count_;
  if (unlinker_ != nullptr) {
    s.segments_unlinked = unlinker_->stats().unlinked;
    s.unlink_errors = unlinker_->stats().errors;
  }
  if (compactor_ != nullptr) {
    s.compactions = compactor_->stats().runs;
    s.messages_compacted = compactor_->stats().messages_moved;
  }
  return s;
}

bool Ledger::idle() const {
  return state_ops_in_flight_ == 0 && bounces_in_flight_ == 0 && retry_.empty() &&
         bounce_retry_.empty() && (unlinker_ == nullptr || !unlinker_->busy()) &&
         (compactor_ == nullptr || !compactor_->busy());
}

}  // namespace ringmail::delivery
