// delivery/engine.cc — domain records, scheduler, results and reports of one delivery loop.
#include "delivery/engine.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/check.h"
#include "base/string_view.h"
#include "delivery/ledger.h"

namespace ringmail::delivery {
namespace {

constexpr uint64_t kPollMs = 10;         // brakes and the shared global limit
constexpr uint64_t kOutboxRetryMs = 5;   // a full owner inbox
constexpr uint64_t kSweepMs = 1000;      // idle segment files
constexpr uint64_t kFileIdleMs = 2000;

uint64_t WallMs() { return static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())); }

std::string NormalizeDomain(std::string_view domain) {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return absl::AsciiStrToLower(ToAbsl(domain));
}

// The reply a report and a log line carry: the server's words, or ours with a status.
std::string ReplyText(const RecipientResult& r) {
  if (r.remote) return r.diagnostic;
  std::string status = r.status.ToString();
  return status.empty() ? r.diagnostic : absl::StrCat(status, " ", r.diagnostic);
}

const char* EventName(core::RecipientState state) {
  switch (state) {
    case core::RecipientState::kDelivered: return "delivered";
    case core::RecipientState::kDeferred: return "deferred";
    case core::RecipientState::kFailed: return "failed";
    case core::RecipientState::kPending: break;
  }
  return "pending";
}

}  // namespace

core::PostResult PostReportsToLedger(const DeliveryTopology& topology, uint32_t owner_loop,
                                     std::vector<DeliveryReport>& batch) {
  if (owner_loop >= topology.owner_loops.size() || owner_loop >= topology.ledgers.size() ||
      topology.owner_loops[owner_loop] == nullptr || topology.ledgers[owner_loop] == nullptr) {
    RM_BUG("a delivery report for a loop that owns no spool");
    return core::PostResult::kStopped;
  }
  Ledger* ledger = topology.ledgers[owner_loop];
  // Loop::Post destroys a task it cannot queue: the batch travels in a box we keep a
  // reference to until the post succeeded.
  auto box = std::make_shared<std::vector<DeliveryReport>>(std::move(batch));
  core::PostResult r = topology.owner_loops[owner_loop]->Post([ledger, box] {
    for (DeliveryReport& report : *box) ledger->Report(std::move(report));
  });
  if (r != core::PostResult::kOk) batch = std::move(*box);
  return r;
}

absl::StatusOr<std::shared_ptr<const tls::TlsContext>> MakeOutboundTlsContext(
    const config::GlobalOptions& global) {
  tls::TlsContextOptions o;
  o.role = tls::TlsRole::kClient;
  o.ca_file = global.tls_ca_file;
  o.use_system_ca = true;
  return tls::TlsContext::Create(o);
}

std::function<bool(uint32_t)> BrakeFromTopology(const DeliveryTopology* topology) {
  return [topology](uint32_t owner_loop) {
    return owner_loop < topology->ledgers.size() && topology->ledgers[owner_loop] != nullptr &&
           topology->ledgers[owner_loop]->brake().load(std::memory_order_relaxed);
  };
}

struct Engine::Domain {
  Domain(Engine* e, std::string n) : engine(e), queue(std::move(n)) {
    timer.Bind<&Domain::TimerFired>(this);
  }
  void TimerFired(core::Timer&) { engine->DomainTimerFired(*this); }
  const std::string& name() const { return queue.domain(); }

  Engine* engine;
  DomainQueue queue;
  core::Timer timer;  // the earliest delayed Work
  const config::Config* config = nullptr;  // the generation `scope` and `route` came from
  const config::DomainConfig* scope = nullptr;
  absl::StatusOr<Route> route = absl::UnknownError("not routed yet");
  uint32_t connections = 0;
  std::vector<SmtpClient*> clients;
  bool wanting = false;
  bool suspended = false;
  std::string share_key;   // SessionShareKey of the current route; "" never shared
  // Its entry in wanting_by_key_ (while wanting with a key): the key it is listed under
  // (share_key may change on reload before it is unlisted) and where.
  bool listed = false;
  std::string listed_key;
  std::list<Domain*>::iterator listed_at;
};

// ---- construction and stop

Engine::Engine(core::Loop& loop, EngineOptions options)
    : loop_(loop),
      options_(std::move(options)),
      config_(options_.config),
      files_(&loop, options_.body_files_max),
      rng_(options_.random_seed != 0 ? options_.random_seed : std::random_device{}()) {
  poll_timer_.Bind<&Engine::PollFired>(this);
  sweep_timer_.Bind<&Engine::SweepFired>(this);
  outbox_timer_.Bind<&Engine::OutboxTimerFired>(this);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(core::Loop& loop, EngineOptions options) {
  RM_CHECK(loop.IsCurrent()) << "Engine::Create off its loop";
  if (options.config == nullptr) return absl::InvalidArgumentError("engine: no config");
  if (options.transaction_recipients_max < 1 ||
      options.transaction_recipients_max > kTransactionRecipientsMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: transaction_recipients_max must be 1..", kTransactionRecipientsMax));
  }
  if (!options.report_sink && options.topology == nullptr) {
    return absl::InvalidArgumentError("engine: neither a report sink nor a topology");
  }
  if (options.addresses_max < 1) {
    return absl::InvalidArgumentError("engine: addresses_max must be at least 1");
  }
  std::unique_ptr<Engine> engine(new Engine(loop, std::move(options)));
  absl::Status s = engine->Init();
  if (!s.ok()) return s;
  return engine;
}

absl::Status Engine::Init() {
  absl::StatusOr<std::unique_ptr<dns::Resolver>> resolver =
      dns::Resolver::Create(loop_, options_.resolver);
  if (!resolver.ok()) return resolver.status();
  resolver_ = std::move(resolver).value();
  retry_ = RetryPolicy::FromConfig(config_->global, options_.retry_jitter);
  if (!options_.brake && options_.topology != nullptr) {
    options_.brake = BrakeFromTopology(options_.topology);
  }
  engine_count_ = options_.engine_count;
  if (engine_count_ == 0) {
    // The loops, not the engines: those may still be being made on the other loops.
    engine_count_ = options_.topology != nullptr && !options_.topology->delivery_loops.empty()
                        ? options_.topology->delivery_loops.size()
                        : 1;
  }
  loop_.OnStop([this] { Stop(); });
  loop_.timers().Arm(sweep_timer_, loop_.now_ms() + kSweepMs);
  return absl::OkStatus();
}

Engine::~Engine() {
  RM_CHECK(clients_.empty()) << "engine destroyed with connections (was its loop stopped?)";
  for (auto& [name, d] : domains_) RM_CHECK(!d->timer.armed());
  RM_CHECK(!poll_timer_.armed() && !sweep_timer_.armed() && !outbox_timer_.armed());
}

void Engine::Stop() {
  if (stopping_) return;
  stopping_ = true;
  for (auto& [name, d] : domains_) loop_.timers().Cancel(d->timer);
  loop_.timers().Cancel(poll_timer_);
  loop_.timers().Cancel(sweep_timer_);
  loop_.timers().Cancel(outbox_timer_);
  std::vector<SmtpClient*> clients;
  for (auto& [raw, entry] : clients_) clients.push_back(raw);
  for (SmtpClient* c : clients) c->Abort();  // may call ClientClosed at once
  FlushOutbox();  // one last try: deliveries that finished must reach their ledgers
  if (outbox_reports_ > 0) {
    core::LogWarning("delivery engine on %s: %u reports not handed to their owner loops at stop",
                     loop_.name(), outbox_reports_);
    stats_.reports_dropped += outbox_reports_;
    outbox_.clear();
    outbox_reports_ = 0;
  }
  if (clients_.empty()) files_.CloseAllUnpinned();
}

void Engine::SetConfig(std::shared_ptr<const config::Config> config) {
  RM_CHECK(config != nullptr);
  config_ = std::move(config);
  retry_ = RetryPolicy::FromConfig(config_->global, options_.retry_jitter);
  // Every domain points at the new generation before any is marked: marking may move a
  // connection to another domain of its route key (TakeSharedWork), whose limits it reads,
  // and the old generation may be gone once config_ was replaced.
  for (auto& [name, d] : domains_) RefreshDomain(*d);
  for (auto& [name, d] : domains_) MarkWanting(*d);
  // A hold turned off (0) ends the holds in progress; other values apply to the next one.
  std::vector<SmtpClient*> idle;
  for (SmtpClient* c : idle_) {
    const Domain& d = *static_cast<const Domain*>(c->tag);
    if (c->parked() && d.scope->outbound_idle_timeout <= absl::ZeroDuration()) idle.push_back(c);
  }
  for (SmtpClient* c : idle) {
    RemoveIdle(c);
    c->CloseIdle();
  }
}

void Engine::SetTlsClient(std::shared_ptr<const tls::TlsContext> context) {
  options_.tls_client = std::move(context);
  for (auto& [name, d] : domains_) UpdateShareKey(*d);
}

void Engine::SetSelfEndpoints(std::shared_ptr<const SelfEndpoints> self) {
  options_.self = std::move(self);
}

// ---- domain records

Engine::Domain* Engine::Find(std::string_view name) {
  auto it = domains_.find(ToAbsl(name));
  return it == domains_.end() ? nullptr : it->second.get();
}

Engine::Domain& Engine::FindOrCreate(std::string_view name) {
  if (Domain* d = Find(name)) {
    if (d->config != config_.get()) RefreshDomain(*d);
    return *d;
  }
  auto owned = std::make_unique<Domain>(this, std::string(name));
  Domain& d = *owned;
  domains_.emplace(std::string(name), std::move(owned));
  RefreshDomain(d);
  return d;
}

void Engine::RefreshDomain(Domain& d) {
  d.config = config_.get();
  d.scope = &config_->DomainFor(d.name());
  d.route = RouteForDomain(*d.scope, d.name());
  UpdateShareKey(d);
}

void Engine::UpdateShareKey(Domain& d) {
  std::string key;
  if (d.route.ok()) {
    SessionKeyInputs inputs;
    inputs.tls = d.scope->tls;
    inputs.tls_context = options_.tls_client.get();
    inputs.helo_name = config_->global.hostname;
    key = SessionShareKey(*d.route, inputs);
  }
  if (key == d.share_key) return;
  d.share_key = std::move(key);
  if (d.listed) {  // waiting under the old key: list it under the new one
    UnlistWanting(d);
    ListWanting(d);
  }
}

void Engine::MaybeRetire(Domain& d) {
  if (!d.queue.empty() || d.connections > 0 || d.suspended || d.wanting) return;
  RM_DCHECK(!d.listed && d.clients.empty());
  loop_.timers().Cancel(d.timer);
  domains_.erase(d.name());  // frees d
}

void Engine::RearmDomainTimer(Domain& d) {
  if (stopping_) return;
  uint64_t due = d.queue.NextDueMs();
  if (due == UINT64_MAX) {
    loop_.timers().Cancel(d.timer);
    return;
  }
  uint64_t now = WallMs();
  loop_.timers().Arm(d.timer, loop_.now_ms() + (due > now ? due - now : 0));
}

void Engine::DomainTimerFired(Domain& d) {
  if (stopping_) return;
  d.queue.PromoteDue(WallMs());
  RearmDomainTimer(d);
  MarkWanting(d);
}

// ---- submitting and operating

void Engine::SegmentsRemoved(const std::vector<std::string>& paths) {
  RM_DCHECK(loop_.IsCurrent());
  for (const std::string& path : paths) files_.Forget(path);
}

void Engine::Submit(DeliveryJob&& job) {
  RM_DCHECK(loop_.IsCurrent());
  if (stopping_ || job.recipients.empty()) return;
  ++stats_.jobs;
  stats_.recipients += job.recipients.size();
  Domain& d = FindOrCreate(NormalizeDomain(job.domain));
  uint64_t now = WallMs();
  std::vector<Work> works = MakeWorks(std::move(job), now, options_.transaction_recipients_max);
  if (!d.route.ok()) {
    // The domain itself cannot be routed (not a valid name or literal): nothing to retry.
    for (Work& w : works) {
      std::vector<RecipientResult> results(w.recipients.size());
      for (size_t i = 0; i < results.size(); ++i) {
        results[i].index = w.recipients[i].index;
        results[i].outcome = RecipientOutcome::kPermanent;
        results[i].status = EnhancedStatus{5, 1, 2};
        results[i].diagnostic = std::string(ToStd(d.route.status().message()));
      }
      Apply(d, std::move(w), results, "");
    }
    MaybeRetire(d);
    return;
  }
  for (Work& w : works) d.queue.File(std::move(w), now);
  RearmDomainTimer(d);
  MarkWanting(d);
}

std::vector<DomainSummary> Engine::QueueSummary() const {
  std::vector<DomainSummary> out;
  for (const auto& [name, d] : domains_) {
    DomainSummary s;
    s.domain = name;
    s.ready = d->queue.ready_recipients();
    s.delayed = d->queue.delayed_recipients();
    s.connections = d->connections;
    s.oldest_ms = d->queue.OldestReceivedMs();
    uint64_t next = d->queue.NextDueMs();
    s.next_attempt_ms = next == UINT64_MAX ? 0 : next;
    s.suspended = d->suspended;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const DomainSummary& a, const DomainSummary& b) { return a.domain < b.domain; });
  return out;
}

void Engine::Suspend(std::string_view domain) {
  Domain& d = FindOrCreate(NormalizeDomain(domain));
  d.suspended = true;  // connections finish their transaction, then QUIT (NextWork)
  std::vector<SmtpClient*> clients = d.clients;  // CloseIdle never closes inline; a copy anyway
  for (SmtpClient* c : clients) {
    if (!c->parked()) continue;
    RemoveIdle(c);
    c->CloseIdle();
  }
}

bool Engine::Resume(std::string_view domain) {
  Domain* d = Find(NormalizeDomain(domain));
  if (d == nullptr) return false;
  d->suspended = false;
  MarkWanting(*d);
  MaybeRetire(*d);
  return true;
}

size_t Engine::Flush(std::string_view domain) {
  Domain* d = Find(NormalizeDomain(domain));
  if (d == nullptr) return 0;
  uint64_t before = d->queue.delayed_recipients();
  d->queue.FlushDelayed();
  RearmDomainTimer(*d);
  MarkWanting(*d);
  return before;
}

size_t Engine::FlushAll() {
  size_t moved = 0;
  for (auto& [name, d] : domains_) {
    moved += d->queue.delayed_recipients();
    d->queue.FlushDelayed();
    RearmDomainTimer(*d);
    MarkWanting(*d);
  }
  return moved;
}

EngineStats Engine::stats() const {
  EngineStats s = stats_;
  s.segment_files_released = files_.forgotten();
  SmtpClientStats c = closed_clients_;
  for (const auto& [raw, entry] : clients_) {
    c.connects += raw->stats().connects;
    c.connect_failures += raw->stats().connect_failures;
    c.sessions += raw->stats().sessions;
    c.transactions += raw->stats().transactions;
    c.bytes_sent += raw->stats().bytes_sent;
  }
  s.connects = c.connects;
  s.connect_failures = c.connect_failures;
  s.sessions = c.sessions;
  s.transactions = c.transactions;
  s.bytes_sent = c.bytes_sent;
  s.open_connections = open_;
  s.domains = domains_.size();
  for (const auto& [name, d] : domains_) {
    s.ready += d->queue.ready_recipients();
    s.delayed += d->queue.delayed_recipients();
  }
  s.outbox = outbox_reports_;
  return s;
}


// ---- the scheduler

bool Engine::Braked(uint32_t owner_loop) const {
  return options_.brake && options_.brake(owner_loop);
}

bool Engine::CanStart(const Domain& d) const {
  if (stopping_ || d.suspended || !d.queue.has_ready() || !d.route.ok()) return false;
  int64_t max = std::max<int64_t>(1, d.scope->max_outbound_connections);
  return d.connections < static_cast<uint64_t>(max);
}

bool Engine::GlobalSlotAvailable() const {
  int64_t max = std::max<int64_t>(1, config_->global.max_outbound_connections);
  if (options_.outbound_connections != nullptr) {
    return options_.outbound_connections->load(std::memory_order_relaxed) < max;
  }
  uint64_t share = (static_cast<uint64_t>(max) + engine_count_ - 1) / engine_count_;
  return open_ < std::max<uint64_t>(1, share);
}

void Engine::MarkWanting(Domain& d) {
  if (d.queue.has_ready()) WakeParked(d);
  // Then parked connections of other domains with its route key, before a new one.
  while (CanStart(d) && AdoptParked(d)) {
  }
  if (d.wanting || !CanStart(d)) return;
  d.wanting = true;
  wanting_.push_back(&d);
  ListWanting(d);
  ScheduleSoon();
}

void Engine::ScheduleSoon() {
  if (schedule_pending_ || stopping_) return;
  schedule_pending_ = true;
  loop_.Defer([this] {
    schedule_pending_ = false;
    Schedule();
  });
}

// Domains take turns: one new connection each per pass, until a limit stops it.
void Engine::Schedule() {
  if (stopping_) return;
  bool poll = false;
  while (!wanting_.empty()) {
    if (outbox_reports_ >= kOutboxReportsMax) break;  // the outbox timer schedules again
    // A connection of its route key parked since it was marked: no new slot needed. It
    // stays in front while it can take more.
    if (Domain& front = *wanting_.front(); CanStart(front) && AdoptParked(front)) continue;
    if (!GlobalSlotAvailable()) {
      EvictIdle(wanting_.size());
      // Our own connections closing schedule again; other engines' do not: poll.
      poll = options_.outbound_connections != nullptr;
      break;
    }
    Domain& d = *wanting_.front();
    wanting_.pop_front();
    d.wanting = false;
    UnlistWanting(d);
    if (!CanStart(d)) {
      MaybeRetire(d);
      continue;
    }
    std::optional<Work> work = d.queue.TakeReady([this](uint32_t o) { return Braked(o); });
    if (!work.has_value()) {
      poll = true;  // every Work in reach brakes: look again soon
      continue;
    }
    StartClient(d, std::move(*work));
    MarkWanting(d);  // to the back: the other domains' turn first
  }
  if (poll) ArmPoll();
}

void Engine::ArmPoll() {
  if (stopping_ || poll_timer_.armed()) return;
  loop_.timers().Arm(poll_timer_, loop_.now_ms() + kPollMs);
}

// New ready work: the domain's parked connections take it before a new one is opened.
void Engine::WakeParked(Domain& d) {
  if (stopping_ || d.suspended) return;
  // Wake() may report (WorkDone) but never closes inline (closing goes through the ring), so
  // d.clients stays as it is.
  for (size_t i = 0; i < d.clients.size() && d.queue.has_ready(); ++i) {
    SmtpClient* c = d.clients[i];
    if (!c->parked()) continue;
    c->Wake();
    if (c->parked()) {
      // Ready Work it may not take (its owner loop brakes, or the outbox is full): the
      // others would find nothing either. Look again soon, as Schedule() does.
      ArmPoll();
      break;
    }
    RemoveIdle(c);
    ++stats_.idle_reuses;
  }
}

// The global limit is reached while domains wait: parked connections (of domains with
// nothing ready) QUIT to make room, so holding idle connections never starves another
// destination. At most one per waiting domain is closing for room at a time.
void Engine::EvictIdle(size_t wanted) {
  if (idle_.empty() || evicting_.size() >= wanted) return;
  size_t n = wanted - evicting_.size();
  std::vector<SmtpClient*> victims;
  for (SmtpClient* c : idle_) {
    if (victims.size() >= n) break;
    if (c->parked()) victims.push_back(c);
  }
  for (SmtpClient* c : victims) {
    RemoveIdle(c);
    evicting_.insert(c);
    ++stats_.idle_evictions;
    c->CloseIdle();
  }
}

// ---- sharing by route key

void Engine::AddIdle(SmtpClient* client) {
  if (!idle_.insert(client).second) return;
  const std::string& key = clients_.at(client).share_key;
  if (!key.empty()) parked_by_key_[key].insert(client);
}

void Engine::RemoveIdle(SmtpClient* client) {
  if (idle_.erase(client) == 0) return;
  const std::string& key = clients_.at(client).share_key;
  auto it = parked_by_key_.find(key);
  if (it == parked_by_key_.end()) return;
  it->second.erase(client);
  if (it->second.empty()) parked_by_key_.erase(it);
}

void Engine::ListWanting(Domain& d) {
  if (d.listed || d.share_key.empty()) return;
  std::list<Domain*>& list = wanting_by_key_[d.share_key];
  d.listed_at = list.insert(list.end(), &d);
  d.listed_key = d.share_key;
  d.listed = true;
}

void Engine::UnlistWanting(Domain& d) {
  if (!d.listed) return;
  auto it = wanting_by_key_.find(d.listed_key);
  RM_CHECK(it != wanting_by_key_.end()) << "a listed domain not in its key's list";
  it->second.erase(d.listed_at);
  if (it->second.empty()) wanting_by_key_.erase(it);
  d.listed = false;
  d.listed_key.clear();
}

// The key's equality is the caller's to check; these are `to`'s own limits.
bool Engine::MayMoveTo(const SmtpClient& client, const Domain& to) const {
  return CanStart(to) && outbox_reports_ < kOutboxReportsMax &&
         client.deliveries() < DeliveriesMax(to);
}

// `d` has ready Work and room, and none of its own connections is parked with nothing to do
// (WakeParked ran): a parked connection another domain opened with d's key moves to d and
// takes one Work. False when there is none (or d's Work brakes).
bool Engine::AdoptParked(Domain& d) {
  if (d.share_key.empty() || stopping_) return false;
  auto it = parked_by_key_.find(d.share_key);
  if (it == parked_by_key_.end()) return false;
  SmtpClient* pick = nullptr;
  for (SmtpClient* c : it->second) {
    if (c->tag != &d && c->parked() && MayMoveTo(*c, d)) {
      pick = c;
      break;
    }
  }
  if (pick == nullptr) return false;
  std::optional<Work> work = d.queue.TakeReady([this](uint32_t o) { return Braked(o); });
  if (!work.has_value()) {
    ArmPoll();  // braked: looked at again when the poll marks the domains
    return false;
  }
  RemoveIdle(pick);
  MoveClient(*pick, *static_cast<Domain*>(pick->tag), d);
  ++stats_.shared_reuses;
  pick->WakeWith(std::move(*work));  // may report, never closes inline
  return true;
}

// `client`'s domain has no ready Work: Work of a domain waiting for a connection with the
// client's key, taken before the client parks (or QUITs at the global limit).
std::optional<Work> Engine::TakeSharedWork(SmtpClient& client, Domain& from) {
  const std::string& key = clients_.at(&client).share_key;
  if (key.empty()) return std::nullopt;
  auto it = wanting_by_key_.find(key);
  if (it == wanting_by_key_.end()) return std::nullopt;
  for (Domain* to : it->second) {  // nothing below changes the list
    if (to == &from || !MayMoveTo(client, *to)) continue;
    std::optional<Work> work = to->queue.TakeReady([this](uint32_t o) { return Braked(o); });
    if (!work.has_value()) continue;
    MoveClient(client, from, *to);
    ++stats_.shared_takes;
    return work;
  }
  return std::nullopt;
}

void Engine::MoveClient(SmtpClient& client, Domain& from, Domain& to) {
  RM_CHECK(client.tag == &from && &from != &to);
  auto at = std::find(from.clients.begin(), from.clients.end(), &client);
  RM_CHECK(at != from.clients.end()) << "a client missing from its domain";
  from.clients.erase(at);
  --from.connections;
  to.clients.push_back(&client);
  ++to.connections;
  client.tag = &to;
  client.set_deliveries_max(DeliveriesMax(to));
  RetireSoon(from);
}

// Later in the turn: the caller may be inside a loop over domains_ or over from's clients.
void Engine::RetireSoon(Domain& d) {
  loop_.Defer([this, name = d.name()] {
    if (Domain* d = Find(name)) MaybeRetire(*d);
  });
}

void Engine::PollFired(core::Timer&) {
  for (auto& [name, d] : domains_) MarkWanting(*d);
  ScheduleSoon();  // domains still marked from the pass that stopped need a pass too
}

void Engine::SweepFired(core::Timer&) {
  if (stopping_) return;
  files_.CloseIdle(loop_.now_ms(), kFileIdleMs);
  loop_.timers().Arm(sweep_timer_, loop_.now_ms() + kSweepMs);
}

uint32_t Engine::DeliveriesMax(const Domain& d) const {
  return static_cast<uint32_t>(std::clamp<int64_t>(d.scope->max_deliveries_per_connection, 1,
                                                   static_cast<int64_t>(UINT32_MAX)));
}

void Engine::StartClient(Domain& d, Work work) {
  SmtpClientSettings settings;
  settings.machine.helo_name = config_->global.hostname;
  settings.machine.tls = d.scope->tls;  // the Domain's, else the global outbound_tls
  settings.tls_client = options_.tls_client;
  settings.machine.prefer_chunking = options_.prefer_chunking;
  settings.machine.eight_bit = options_.eight_bit;
  settings.config = config_;
  settings.deliveries_max = DeliveriesMax(d);
  settings.addresses_max = options_.addresses_max;
  settings.self = options_.self;
  SmtpClient::Owner& owner = *this;  // a private base: converted here, where it is visible
  auto client = std::make_unique<SmtpClient>(loop_, *resolver_, files_, owner, *d.route,
                                             std::move(settings), std::move(work));
  SmtpClient* raw = client.get();
  raw->tag = &d;
  clients_.emplace(raw, ClientEntry{std::move(client), d.share_key});
  d.clients.push_back(raw);
  ++d.connections;
  ++open_;
  ++stats_.connections;
  if (options_.outbound_connections != nullptr) {
    options_.outbound_connections->fetch_add(1, std::memory_order_relaxed);
  }
  raw->Start();
}

// ---- SmtpClient::Owner

std::optional<Work> Engine::NextWork(SmtpClient& client) {
  Domain& d = *static_cast<Domain*>(client.tag);
  if (stopping_ || d.suspended || outbox_reports_ >= kOutboxReportsMax) return std::nullopt;
  std::optional<Work> work = d.queue.TakeReady([this](uint32_t o) { return Braked(o); });
  // Braked Work of its own keeps the connection here (it is woken when they release).
  if (work.has_value() || d.queue.has_ready()) return work;
  return TakeSharedWork(client, d);
}

uint64_t Engine::IdleMs(SmtpClient& client) {
  Domain& d = *static_cast<Domain*>(client.tag);
  if (stopping_ || d.suspended) return 0;
  // At the global limit a parked connection may starve another domain: not when one of
  // ours already waits, and never with the shared counter (another engine's waiting domain
  // cannot close our parked connections; EvictIdle only closes this engine's).
  if (!GlobalSlotAvailable() &&
      (!wanting_.empty() || options_.outbound_connections != nullptr)) {
    return 0;
  }
  int64_t ms = absl::ToInt64Milliseconds(d.scope->outbound_idle_timeout);
  if (ms <= 0) return 0;
  // Ready Work NextWork() would not give (brakes): nothing else wakes us when they release.
  if (d.queue.has_ready()) ArmPoll();
  AddIdle(&client);
  return static_cast<uint64_t>(ms);
}

void Engine::WorkDone(SmtpClient& client, Work work, AttemptResult result) {
  Domain& d = *static_cast<Domain*>(client.tag);
  Apply(d, std::move(work), result.recipients, result.remote_host, &result.tls);
  if (!result.site_failure || stopping_ || result.recipients.empty()) return;
  for (SmtpClient* other : d.clients) {
    if (other != &client && other->in_session()) return;  // the site still works for others
  }
  // The destination failed as a whole: what waits for it now shares the verdict.
  const RecipientResult& verdict = result.recipients.front();
  for (Work& w : d.queue.TakeAllReady()) {
    std::vector<RecipientResult> results(w.recipients.size(), verdict);
    for (size_t i = 0; i < results.size(); ++i) results[i].index = w.recipients[i].index;
    Apply(d, std::move(w), results, result.remote_host, &result.tls);
  }
}

void Engine::ClientClosed(SmtpClient& client) {
  Domain& d = *static_cast<Domain*>(client.tag);
  auto it = clients_.find(&client);
  RM_CHECK(it != clients_.end()) << "unknown client closed";
  const SmtpClientStats& cs = client.stats();
  closed_clients_.connects += cs.connects;
  closed_clients_.connect_failures += cs.connect_failures;
  closed_clients_.sessions += cs.sessions;
  closed_clients_.transactions += cs.transactions;
  closed_clients_.bytes_sent += cs.bytes_sent;
  RemoveIdle(&client);  // needs its entry (the key)
  // Freed after the current handler: the client's own completion is still on the stack.
  loop_.Defer([owned = std::move(it->second.client)]() mutable { owned.reset(); });
  clients_.erase(it);
  evicting_.erase(&client);
  d.clients.erase(std::find(d.clients.begin(), d.clients.end(), &client));
  --d.connections;
  --open_;
  if (options_.outbound_connections != nullptr) {
    options_.outbound_connections->fetch_sub(1, std::memory_order_relaxed);
  }
  if (stopping_) {
    if (clients_.empty()) files_.CloseAllUnpinned();
    return;
  }
  // A freed slot: this domain, or any other waiting for the global limit.
  MarkWanting(d);
  if (!wanting_.empty()) ScheduleSoon();
  MaybeRetire(d);
}

// ---- results

void Engine::Apply(Domain& d, Work work, const std::vector<RecipientResult>& results,
                   const std::string& remote_host, const TlsSummary* tls) {
  RM_CHECK(results.size() == work.recipients.size());
  const QueuedMessage& message = *work.message;
  uint64_t now = WallMs();
  DeliveryReport report;
  report.id = message.id;
  std::map<uint64_t, std::vector<DeliveryJob::Recipient>> deferred;  // by next attempt
  for (size_t i = 0; i < results.size(); ++i) {
    const RecipientResult& r = results[i];
    DeliveryJob::Recipient& recipient = work.recipients[i];
    DeliveryReport::Item item;
    item.index = recipient.index;
    item.attempts = recipient.attempts + 1;
    item.remote_host = remote_host;
    item.reply = ReplyText(r);
    if (r.outcome == RecipientOutcome::kDelivered) {
      item.state = core::RecipientState::kDelivered;
      ++stats_.delivered;
    } else if (r.outcome == RecipientOutcome::kPermanent) {
      item.state = core::RecipientState::kFailed;
      ++stats_.failed;
    } else if (stopping_) {
      continue;  // cut short by our own stop: not an attempt; pending in the spool
    } else {
      RetryDecision next = AfterTemporaryFailure(
          retry_, message.received_ms, now, item.attempts,
          std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
      if (next.kind == RetryDecision::Kind::kExpire) {
        item.state = core::RecipientState::kFailed;
        item.reply = absl::StrCat("4.4.7 delivery time expired after ", item.attempts,
                                  " attempts; last error: ", item.reply);
        ++stats_.failed;
        ++stats_.expired;
      } else {
        item.state = core::RecipientState::kDeferred;
        item.next_attempt_ms = next.next_attempt_ms;
        recipient.attempts = item.attempts;
        recipient.next_attempt_ms = next.next_attempt_ms;
        ++stats_.deferred;
      }
    }
    Log(EventName(item.state), d, message, recipient, item, now, tls);
    bool deferred_here = item.state == core::RecipientState::kDeferred;
    bool hand_back = deferred_here && options_.hold_deferred_max_ms != 0 &&
                     item.next_attempt_ms > now + options_.hold_deferred_max_ms;
    if (hand_back) {
      // A long wait: the ledger keeps it (and may compact its message meanwhile); the
      // kPending item after the kDeferred one gives it back (delivery/ledger.h).
      DeliveryReport::Item back;
      back.index = item.index;
      back.state = core::RecipientState::kPending;
      back.attempts = item.attempts;
      back.next_attempt_ms = item.next_attempt_ms;
      report.items.push_back(std::move(item));
      report.items.push_back(std::move(back));
      ++stats_.handed_back;
      continue;
    }
    if (deferred_here) deferred[item.next_attempt_ms].push_back(std::move(recipient));
    report.items.push_back(std::move(item));
  }
  for (auto& [due, recipients] : deferred) {
    d.queue.File(Work{work.message, std::move(recipients), due}, now);
  }
  if (!deferred.empty()) RearmDomainTimer(d);
  if (!report.items.empty()) Enqueue(message.owner_loop, std::move(report));
}

void Engine::Log(std::string_view event, const Domain& d, const QueuedMessage& message,
                 const DeliveryJob::Recipient& recipient, const DeliveryReport::Item& item,
                 uint64_t now_ms, const TlsSummary* tls) {
  if (options_.delivery_log == nullptr) return;
  core::JsonLine line;
  line.Str("event", event)
      .Str("id", message.id.ToHex())
      .Str("from", message.mail_from)
      .Str("rcpt", recipient.address)
      .Str("domain", d.name())
      .Str("remote", item.remote_host)
      .Str("reply", item.reply)
      .Uint("attempts", item.attempts)
      .Uint("queue_ms", now_ms > message.received_ms ? now_ms - message.received_ms : 0);
  if (item.state == core::RecipientState::kDeferred) {
    line.Uint("next_attempt_ms", item.next_attempt_ms);
  }
  if (tls != nullptr) {
    if (!tls->version.empty()) line.Str("tls_version", tls->version);
    if (!tls->cipher.empty()) line.Str("tls_cipher", tls->cipher);
    if (!tls->verification.empty()) line.Str("tls_verify", tls->verification);
    if (!tls->note.empty()) line.Str("tls_note", tls->note);
  }
  options_.delivery_log->Append(line.Finish());
}

// ---- reports to the owner loops

void Engine::Enqueue(uint32_t owner_loop, DeliveryReport report) {
  RM_CHECK(owner_loop <= spool::kMaxLoopIndex) << "owner loop " << owner_loop;
  if (outbox_.size() <= owner_loop) outbox_.resize(owner_loop + 1);
  outbox_[owner_loop].push_back(std::move(report));
  ++outbox_reports_;
  FlushOutboxSoon();
}

void Engine::FlushOutboxSoon() {
  if (outbox_flush_pending_ || outbox_timer_.armed()) return;
  outbox_flush_pending_ = true;
  loop_.Defer([this] {
    outbox_flush_pending_ = false;
    FlushOutbox();
  });
}

void Engine::FlushOutbox() {
  bool full = false;
  for (uint32_t owner = 0; owner < outbox_.size(); ++owner) {
    std::vector<DeliveryReport>& batch = outbox_[owner];
    if (batch.empty()) continue;
    size_t n = batch.size();
    core::PostResult r = options_.report_sink
                             ? options_.report_sink(owner, batch)
                             : PostReportsToLedger(*options_.topology, owner, batch);
    if (r == core::PostResult::kFull) {
      ++stats_.report_retries;
      full = true;
      continue;
    }
    if (r == core::PostResult::kOk) {
      stats_.reports += n;
    } else {
      stats_.reports_dropped += n;
      core::LogWarning("delivery engine on %s: owner loop %u stopped; %u reports dropped",
                       loop_.name(), owner, n);
    }
    batch.clear();
    outbox_reports_ -= n;
  }
  if (full && !stopping_) loop_.timers().Arm(outbox_timer_, loop_.now_ms() + kOutboxRetryMs);
}

void Engine::OutboxTimerFired(core::Timer&) {
  if (stopping_) return;
  bool was_braking = outbox_reports_ >= kOutboxReportsMax;
  FlushOutbox();
  if (was_braking && outbox_reports_ < kOutboxReportsMax) {
    for (auto& [name, d] : domains_) MarkWanting(*d);
    ScheduleSoon();
  }
}

}  // namespace ringmail::delivery
