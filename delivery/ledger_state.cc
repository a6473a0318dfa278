// delivery/ledger_state.cc — the Ledger's records: reports from engines become RECIPIENT
// records; a message whose recipients are all final gets its DSN (if due) and its DONE; the
// unlink backlog and the brake (see ledger.h).
#include <algorithm>
#include <cctype>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "delivery/bounce.h"
#include "delivery/internal/ledger_entry.h"
#include "delivery/ledger.h"

namespace ringmail::delivery {
namespace {

bool Digit(char c) { return c >= '0' && c <= '9'; }

// The RFC 3463 code in a reply text: "550 5.1.1 text", "550-5.1.1 text" or our own
// "5.1.2 null MX". Absent when there is none (the DSN then says 5.0.0).
EnhancedStatus EnhancedOf(std::string_view reply) {
  size_t i = 0;
  if (reply.size() >= 4 && Digit(reply[0]) && Digit(reply[1]) && Digit(reply[2]) &&
      (reply[3] == ' ' || reply[3] == '-')) {
    i = 4;
  }
  EnhancedStatus out;
  if (i >= reply.size() || (reply[i] != '2' && reply[i] != '4' && reply[i] != '5')) return out;
  uint32_t parts[3] = {static_cast<uint32_t>(reply[i] - '0'), 0, 0};
  ++i;
  for (int p = 1; p < 3; ++p) {
    if (i >= reply.size() || reply[i] != '.') return out;
    ++i;
    size_t digits = 0;
    while (i < reply.size() && Digit(reply[i]) && digits < 3) {
      parts[p] = parts[p] * 10 + static_cast<uint32_t>(reply[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0) return out;
  }
  if (i < reply.size() && reply[i] != ' ') return out;
  out.klass = static_cast<uint8_t>(parts[0]);
  out.subject = static_cast<uint16_t>(parts[1]);
  out.detail = static_cast<uint16_t>(parts[2]);
  return out;
}

bool StartsWithCode(std::string_view reply) {
  return reply.size() >= 3 && Digit(reply[0]) && Digit(reply[1]) && Digit(reply[2]);
}

}  // namespace

void Ledger::Report(DeliveryReport&& report) {
  RM_DCHECK(loop_.IsCurrent());
  auto it = entries_.find(report.id);
  if (it == entries_.end()) {
    stats_.reports_ignored += report.items.size();
    return;
  }
  for (DeliveryReport::Item& item : report.items) ApplyItem(report.id, it->second, item);
  UpdateBrake();
}

void Ledger::ApplyItem(const core::MessageId& id, Entry& entry, DeliveryReport::Item& item) {
  if (item.index >= entry.tracks.size() || entry.tracks[item.index].reported_final) {
    ++stats_.reports_ignored;  // out of range, or final already: an engine's duplicate
    return;
  }
  Entry::Track& t = entry.tracks[item.index];
  spool::RecipientStatus status{item.state, item.attempts, 0};
  if (item.state == core::RecipientState::kDeferred ||
      item.state == core::RecipientState::kPending) {
    t.attempts = std::max(t.attempts, item.attempts);
    t.next_attempt_ms = item.next_attempt_ms;
  }
  switch (item.state) {
    case core::RecipientState::kPending:
      // Handed back: dispatched again when due (no record: nothing durable changed).
      // A parked one handed back again takes the new time (the earlier wins).
      SetOut(entry, item.index, false);
      if (item.next_attempt_ms > UnixNowMs()) {
        if (!t.parked) ++parked_count_;
        t.parked = true;
        Park(id, item.next_attempt_ms);
      } else {
        if (t.parked) --parked_count_;
        t.parked = false;
        Dispatch(id, entry);
      }
      return;
    case core::RecipientState::kDeferred:
      status.next_attempt_ms = item.next_attempt_ms;
      break;
    case core::RecipientState::kDelivered:
      t.reported_final = true;
      SetOut(entry, item.index, false);
      ++backlog_delivered_;
      break;
    case core::RecipientState::kFailed:
      t.reported_final = true;
      SetOut(entry, item.index, false);
      entry.failures.push_back(
          Entry::Failure{item.index, std::move(item.remote_host), item.reply, UnixNowMs()});
      break;
  }
  AppendRecipient(id, entry, item.index, status, std::move(item.reply));
}

void Ledger::FailLocally(const core::MessageId& id, Entry& entry, uint32_t index,
                         std::string reason) {
  entry.tracks[index].reported_final = true;
  entry.failures.push_back(Entry::Failure{index, "", reason, UnixNowMs()});
  spool::RecipientStatus status{core::RecipientState::kFailed,
                                entry.envelope.recipients[index].attempts, 0};
  AppendRecipient(id, entry, index, status, std::move(reason));
}

Ledger::StateOp* Ledger::NewStateOp() {
  if (free_state_ops_.empty()) {
    state_pool_.push_back(std::make_unique<StateOp>());
    StateOp* op = state_pool_.back().get();
    op->Bind<&Ledger::StateDone>(this);
    return op;
  }
  StateOp* op = free_state_ops_.back();
  free_state_ops_.pop_back();
  return op;
}

void Ledger::FreeStateOp(StateOp* op) {
  op->record = spool::DoneMark{};  // lets the reply string go
  free_state_ops_.push_back(op);
}

void Ledger::AppendRecipient(const core::MessageId& id, Entry& entry, uint32_t index,
                             const spool::RecipientStatus& status, std::string reply) {
  StateOp* op = NewStateOp();
  spool::RecipientUpdate u;
  u.id = id;
  u.recipient_index = index;
  u.state = status.state;
  u.attempts = status.attempts;
  u.next_attempt_ms = status.next_attempt_ms;
  u.changed_ms = UnixNowMs();
  u.reply = std::move(reply);
  op->record = std::move(u);
  ++entry.records_in_flight;
  ++entry.tracks[index].in_flight;
  Append(op);
}

void Ledger::AppendDone(const core::MessageId& id, Entry& entry) {
  entry.phase = Entry::Phase::kFinishing;
  StateOp* op = NewStateOp();
  op->record = spool::DoneMark{id, UnixNowMs()};
  Append(op);
}

void Ledger::Append(StateOp* op) {
  ++state_ops_in_flight_;
  writer_->AppendState(*op);
}

void Ledger::StateDone(spool::StateRequest& request) {
  StateOp* op = static_cast<StateOp*>(&request);
  --state_ops_in_flight_;
  if (!op->status.ok() && !loop_.stopping()) {
    // Written again later: a recipient is final only once its record is durable.
    ++stats_.write_retries;
    retry_.push_back(op);
    if (!retry_timer_.armed()) {
      loop_.timers().Arm(retry_timer_, loop_.now_ms() + options_.state_retry_ms);
    }
    return;
  }
  if (std::holds_alternative<spool::DoneMark>(op->record)) {
    DoneDurable(*op);
  } else {
    RecipientDurable(*op);
  }
  FreeStateOp(op);
  UpdateBrake();
  Progress();
}

// Also runs for a record that failed while the loop stops: its counts are released, and
// the message stays live for the next start (the state it carried is lost: at worst one
// more delivery attempt of that recipient).
void Ledger::RecipientDurable(StateOp& op) {
  const spool::RecipientUpdate& u = std::get<spool::RecipientUpdate>(op.record);
  auto it = entries_.find(u.id);
  RM_CHECK(it != entries_.end()) << "RECIPIENT record of an unknown message";
  Entry& entry = it->second;
  Entry::Track& t = entry.tracks[u.recipient_index];
  --entry.records_in_flight;
  --t.in_flight;
  if (u.state == core::RecipientState::kDelivered) --backlog_delivered_;
  if (!op.status.ok()) {
    if (IsFinalState(u.state) && !t.final) t.reported_final = false;
    return;
  }
  ++stats_.recipient_records;
  if (!t.final) {
    core::Recipient& r = entry.envelope.recipients[u.recipient_index];
    r.state = u.state;
    r.attempts = u.attempts;
    r.next_attempt_ms = u.next_attempt_ms;
    if (IsFinalState(u.state)) {
      t.final = true;
      ++entry.final_count;
    }
  }
  spool::RecipientStatus s{u.state, u.attempts, u.next_attempt_ms};
  index_.UpdateRecipient(u.id, u.recipient_index, s, op.segment);
  MaybeFinish(u.id, entry);
}

void Ledger::DoneDurable(StateOp& op) {
  const core::MessageId id = std::get<spool::DoneMark>(op.record).id;
  auto it = entries_.find(id);
  RM_CHECK(it != entries_.end()) << "DONE record of an unknown message";
  Entry& entry = it->second;
  --backlog_finishing_;
  if (!op.status.ok()) return;  // stopping: the next start writes it
  const spool::SegmentId segment = entry.location.segment;
  index_.MarkDone(id, op.segment);
  ++stats_.done_written;
  LogDone(id, entry);
  live_bytes_ -= entry.location.record_bytes;
  RM_DCHECK(entry.out_count == 0);
  entries_.erase(it);
  const spool::LiveIndex::SegmentStats* s = index_.FindSegment(segment);
  if (s != nullptr && s->live_messages == 0) unlinker_->Kick();
}

void Ledger::RetryTimerFired(core::Timer&) {
  if (loop_.stopping()) return;
  for (StateOp* op : std::exchange(retry_, {})) Append(op);
  for (BounceOp* op : std::exchange(bounce_retry_, {})) {
    ++bounces_in_flight_;
    writer_->Commit(op->commit);
  }
}

void Ledger::MaybeFinish(const core::MessageId& id, Entry& entry) {
  if (entry.phase != Entry::Phase::kActive || entry.final_count < entry.tracks.size() ||
      entry.records_in_flight > 0 || loop_.stopping()) {
    return;
  }
  ++backlog_finishing_;
  bool failed = std::any_of(entry.envelope.recipients.begin(), entry.envelope.recipients.end(),
                            [](const core::Recipient& r) {
                              return r.state == core::RecipientState::kFailed;
                            });
  if (failed && entry.envelope.mail_from.empty()) {
    // A bounce is never bounced (RFC 3464 §2): the failure ends here, with a log line.
    ++stats_.bounces_dropped;
    core::LogInfo("ledger: %s from <> failed; no DSN for the null sender", id.ToHex());
  }
  if (failed && !entry.envelope.mail_from.empty() && !entry.skip_dsn) {
    entry.phase = Entry::Phase::kBouncing;
    StartBounce(id, entry);
  } else {
    AppendDone(id, entry);
  }
  UpdateBrake();
}

void Ledger::StartBounce(const core::MessageId& id, Entry& entry) {
  if (entry.bounce == nullptr) entry.bounce = std::make_unique<BounceOp>(this, id);
  ++bounces_in_flight_;
  uint64_t length = std::min<uint64_t>(entry.location.content_length, kBounceOriginalBytesMax);
  entry.bounce->read.Start(loop_, spool::SegmentPath(options_.spool_dir, entry.location.segment),
                           entry.location.content_offset, length);
}

void Ledger::BounceReadDone(BounceOp& op) {
  Entry& entry = entries_.find(op.original)->second;
  if (loop_.stopping()) {
    --bounces_in_flight_;  // the next start bounces it (it is all final, still live)
    return;
  }
  if (!op.read.status.ok()) {
    core::LogWarning("ledger: DSN for %s without the original headers: %s",
                     op.original.ToHex(), op.read.status.ToString());
  }
  BounceRequest request;
  request.reporting_mta = options_.hostname;
  request.original_id = op.original;
  request.original_sender = entry.envelope.mail_from;
  request.arrival_ms = entry.received_ms;
  request.original_content = op.read.data;
  request.now_ms = UnixNowMs();
  for (uint32_t i = 0; i < entry.tracks.size(); ++i) {
    const core::Recipient& r = entry.envelope.recipients[i];
    if (r.state != core::RecipientState::kFailed) continue;
    if (request.recipients.size() == kBounceRecipientsMax) break;
    BounceRecipient& b = request.recipients.emplace_back();
    b.address = r.address;
    auto f = std::find_if(entry.failures.rbegin(), entry.failures.rend(),
                          [i](const Entry::Failure& x) { return x.index == i; });
    if (f == entry.failures.rend()) {
      b.diagnostic = "failed (recorded before a restart)";
      continue;
    }
    b.status = EnhancedOf(f->reply);
    b.remote_mta = f->remote_host;
    b.remote = !f->remote_host.empty() && StartsWithCode(f->reply);
    b.diagnostic = f->reply;
    b.last_attempt_ms = f->at_ms;
  }
  absl::StatusOr<core::Message> dsn = ComposeBounce(request);
  op.read.data = std::string();
  if (!dsn.ok()) {
    --bounces_in_flight_;
    ++stats_.bounces_dropped;
    core::LogWarning("ledger: no DSN for %s: %s", op.original.ToHex(), dsn.status().ToString());
    return AppendDone(op.original, entry);
  }
  dsn->id = DsnIdFor(op.original);
  dsn->received_ms = request.now_ms;
  op.commit.message = std::make_unique<core::Message>(std::move(dsn).value());
  writer_->Commit(op.commit);
}

void Ledger::BounceCommitDone(BounceOp& op) {
  --bounces_in_flight_;
  if (!op.commit.status.ok()) {
    if (loop_.stopping()) return;  // the next start bounces it
    ++stats_.write_retries;
    bounce_retry_.push_back(&op);  // the writer left the message in the request
    if (!retry_timer_.armed()) {
      loop_.timers().Arm(retry_timer_, loop_.now_ms() + options_.state_retry_ms);
    }
    return;
  }
  Entry& entry = entries_.find(op.original)->second;
  ++stats_.bounces_sent;
  if (options_.event_log != nullptr) {
    core::JsonLine line;
    line.Str("event", "bounce")
        .Str("id", op.original.ToHex())
        .Str("dsn_id", op.commit.id.ToHex())
        .Str("to", entry.envelope.mail_from)
        .Uint("failed", static_cast<uint64_t>(std::count_if(
                            entry.envelope.recipients.begin(), entry.envelope.recipients.end(),
                            [](const core::Recipient& r) {
                              return r.state == core::RecipientState::kFailed;
                            })));
    options_.event_log->Append(line.Finish());
  }
  AppendDone(op.original, entry);
  Progress();
}

void Ledger::UpdateBrake() {
  uint64_t backlog = backlog_delivered_ + backlog_finishing_;
  uint64_t bound = std::max<uint64_t>(1, options_.unlink_backlog);
  bool on = brake_.load(std::memory_order_relaxed);
  if (!on && backlog >= bound) {
    brake_.store(true, std::memory_order_relaxed);
    ++stats_.brake_engaged;
    Progress();
  } else if (on && backlog <= bound / 2) {
    brake_.store(false, std::memory_order_relaxed);
    Progress();
  }
}

void Ledger::LogDone(const core::MessageId& id, const Entry& entry) {
  if (options_.event_log == nullptr) return;
  uint64_t delivered = 0;
  uint64_t failed = 0;
  for (const core::Recipient& r : entry.envelope.recipients) {
    delivered += r.state == core::RecipientState::kDelivered;
    failed += r.state == core::RecipientState::kFailed;
  }
  uint64_t now = UnixNowMs();
  core::JsonLine line;
  line.Str("event", "done")
      .Str("id", id.ToHex())
      .Str("from", entry.envelope.mail_from)
      .Uint("recipients", entry.envelope.recipients.size())
      .Uint("delivered", delivered)
      .Uint("failed", failed)
      .Uint("queue_ms", now > entry.received_ms ? now - entry.received_ms : 0);
  options_.event_log->Append(line.Finish());
}

}  // namespace ringmail::delivery
