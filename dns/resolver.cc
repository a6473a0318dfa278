#include "dns/resolver.h"

#include <ares.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/string_view.h"
#include "dns/name.h"

namespace ringmail::dns {
namespace {

constexpr size_t kDrainBatch = 1024;  // handlers per deferred run: no source starves another
constexpr size_t kInFlightMaxLimit = 100'000;
constexpr size_t kQueuedMaxLimit = 1'000'000;

using internal::RecordWaiter;

bool Done(const RecordWaiter& w) { return w.answer != nullptr && w.list == nullptr; }

AnswerPtr Cancelled(std::string_view what) {
  return ErrorAnswer(absl::CancelledError(
      absl::StrCat("DNS ", ToAbsl(what), ": resolver stopped before an answer")));
}

// The addresses of an A and an AAAA answer, or why there are none.
absl::Status CombineAddresses(const internal::LookupState& s, std::vector<IpAddress>* out) {
  const RecordAnswer* parts[2] = {s.a.answer.get(), s.aaaa.answer.get()};
  for (const RecordAnswer* p : parts) {
    if (p->kind == RecordAnswer::Kind::kData) {
      out->insert(out->end(), p->addresses.begin(), p->addresses.end());
    }
  }
  if (!out->empty()) return absl::OkStatus();
  for (const RecordAnswer* p : parts) {
    if (p->kind == RecordAnswer::Kind::kNxDomain) {
      return absl::NotFoundError(
          absl::StrCat("DNS: host ", s.name, " does not exist (NXDOMAIN)"));
    }
  }
  for (const RecordAnswer* p : parts) {
    if (p->kind == RecordAnswer::Kind::kError) return p->error;
  }
  return absl::NotFoundError(absl::StrCat("DNS: host ", s.name, " has no A or AAAA record"));
}

}  // namespace

// ---- intrusive waiter list ----

namespace internal {

void WaiterList::PushBack(RecordWaiter& w) {
  RM_DCHECK(w.list == nullptr);
  w.list = this;
  w.next = nullptr;
  w.prev = tail_;
  if (tail_ != nullptr) {
    tail_->next = &w;
  } else {
    head_ = &w;
  }
  tail_ = &w;
}

void WaiterList::Remove(RecordWaiter& w) {
  RM_DCHECK(w.list == this);
  if (w.prev != nullptr) {
    w.prev->next = w.next;
  } else {
    head_ = w.next;
  }
  if (w.next != nullptr) {
    w.next->prev = w.prev;
  } else {
    tail_ = w.prev;
  }
  w.prev = w.next = nullptr;
  w.list = nullptr;
}

RecordWaiter* WaiterList::PopFront() {
  RecordWaiter* w = head_;
  if (w != nullptr) Remove(*w);
  return w;
}

LookupState::LookupState(Kind k, void* o) : kind(k), outer(o) {
  mx.lookup = this;
  a.lookup = this;
  aaaa.lookup = this;
}

}  // namespace internal

MxLookup::~MxLookup() {
  if (state_.pending) state_.resolver->Cancel(*this);
}

HostLookup::~HostLookup() {
  if (state_.pending) state_.resolver->Cancel(*this);
}

// ---- the resolver ----

struct Resolver::RecordQuery {
  Resolver* resolver = nullptr;
  RecordType type = RecordType::kA;
  std::string name;
  bool started = false;
  internal::WaiterList waiters;
};

Resolver::Resolver(core::Loop& loop, ResolverOptions options, std::unique_ptr<Channel> channel)
    : loop_(loop),
      options_(std::move(options)),
      channel_(std::move(channel)),
      cache_(options_.cache) {
  uint64_t seed = options_.random_seed;
  if (seed == 0) {
    std::random_device device;
    seed = (static_cast<uint64_t>(device()) << 32) | device();
  }
  rng_.seed(seed);
}

absl::StatusOr<std::unique_ptr<Resolver>> Resolver::Create(core::Loop& loop,
                                                           ResolverOptions options) {
  RM_DCHECK(loop.IsCurrent());
  if (options.queries_in_flight_max < 1 || options.queries_in_flight_max > kInFlightMaxLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("DNS queries in flight must be 1..", kInFlightMaxLimit));
  }
  if (options.queries_queued_max > kQueuedMaxLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("DNS queries queued must be at most ", kQueuedMaxLimit));
  }
  absl::StatusOr<std::unique_ptr<Channel>> channel = Channel::Create(loop, options.channel);
  if (!channel.ok()) return channel.status();
  std::unique_ptr<Resolver> r(new Resolver(loop, std::move(options), std::move(*channel)));
  loop.OnStop([alive = std::weak_ptr<int>(r->alive_), raw = r.get()] {
    if (!alive.expired()) raw->Shutdown();
  });
  return r;
}

Resolver::~Resolver() {
  RM_CHECK(idle()) << "dns resolver destroyed before its loop stopped (or before Shutdown() "
                      "and idle())";
}

ResolverStats Resolver::stats() const {
  ResolverStats s = stats_;
  s.queries_in_flight = started_;
  return s;
}

bool Resolver::idle() const {
  return stopping_ && channel_->shut_down() && channel_->idle() && ready_.empty() &&
         !drain_scheduled_;
}

void Resolver::ResolveMx(std::string_view domain, MxLookup& lookup) {
  RM_DCHECK(loop_.IsCurrent());
  RM_CHECK(!lookup.state_.pending) << "MxLookup started while pending";
  RM_CHECK(lookup.handler_ != nullptr) << "MxLookup started without a handler";
  ++stats_.mx_lookups;
  internal::LookupState& s = lookup.state_;
  s.resolver = this;
  s.pending = true;
  s.status = absl::OkStatus();
  lookup.answer_ = MxAnswer{};
  absl::StatusOr<std::string> name = NormalizeName(domain);
  if (!name.ok()) {
    s.name.clear();
    Ready(s.mx, ErrorAnswer(name.status()));
    return;
  }
  s.name = std::move(name).value();
  Await(s.mx, RecordType::kMx, s.name);
}

void Resolver::ResolveHost(std::string_view host, HostLookup& lookup) {
  RM_DCHECK(loop_.IsCurrent());
  RM_CHECK(!lookup.state_.pending) << "HostLookup started while pending";
  RM_CHECK(lookup.handler_ != nullptr) << "HostLookup started without a handler";
  ++stats_.host_lookups;
  internal::LookupState& s = lookup.state_;
  s.resolver = this;
  s.pending = true;
  s.status = absl::OkStatus();
  lookup.answer_ = HostAnswer{};
  absl::StatusOr<std::string> name = NormalizeName(host);
  if (!name.ok()) {
    s.name.clear();
    AnswerPtr error = ErrorAnswer(name.status());
    Ready(s.a, error);
    Ready(s.aaaa, error);
    return;
  }
  s.name = std::move(name).value();
  Await(s.a, RecordType::kA, s.name);
  Await(s.aaaa, RecordType::kAaaa, s.name);
}

void Resolver::Forget(internal::LookupState& s) {
  for (RecordWaiter* w : {&s.mx, &s.a, &s.aaaa}) {
    if (w->list != nullptr) w->list->Remove(*w);
    w->answer.reset();
  }
  s.pending = false;
}

void Resolver::Cancel(MxLookup& lookup) {
  RM_DCHECK(loop_.IsCurrent());
  if (lookup.state_.pending) Forget(lookup.state_);
}

void Resolver::Cancel(HostLookup& lookup) {
  RM_DCHECK(loop_.IsCurrent());
  if (lookup.state_.pending) Forget(lookup.state_);
}

void Resolver::Ready(RecordWaiter& w, AnswerPtr answer) {
  w.answer = std::move(answer);
  ready_.PushBack(w);
  ScheduleDrain();
}

void Resolver::Await(RecordWaiter& w, RecordType type, const std::string& name) {
  w.answer.reset();
  if (stopping_) return Ready(w, Cancelled(absl::StrCat(RecordTypeName(type), " ", name)));
  if (AnswerPtr hit = cache_.Find(type, name, loop_.now_ms())) {
    ++stats_.cache_hits;
    return Ready(w, std::move(hit));
  }
  QueryKey key{type, name};
  if (auto it = queries_.find(key); it != queries_.end()) {
    ++stats_.coalesced;
    it->second->waiters.PushBack(w);
    return;
  }
  bool can_start = started_ < options_.queries_in_flight_max;
  if (!can_start && queued_.size() >= options_.queries_queued_max) {
    ++stats_.queries_rejected;
    return Ready(w, ErrorAnswer(absl::ResourceExhaustedError(absl::StrCat(
                        "DNS ", RecordTypeName(type), " ", name, ": too many queries waiting (",
                        options_.queries_queued_max, ")"))));
  }
  auto owned = std::make_unique<RecordQuery>();
  RecordQuery& q = *owned;
  q.resolver = this;
  q.type = type;
  q.name = name;
  q.waiters.PushBack(w);  // before Start: c-ares may answer before ares_query returns
  queries_.emplace(std::move(key), std::move(owned));
  if (can_start) {
    Start(q);  // may complete and free `q`
  } else {
    ++stats_.queries_queued;
    queued_.push_back(&q);
  }
}

void Resolver::Start(RecordQuery& q) {
  q.started = true;
  ++started_;
  ++stats_.queries_sent;
  if (started_ > stats_.queries_in_flight_peak) stats_.queries_in_flight_peak = started_;
  channel_->Query(q.name, q.type, &Resolver::QueryDoneThunk, &q);
}

void Resolver::StartQueued() {
  while (started_ < options_.queries_in_flight_max && !queued_.empty()) {
    RecordQuery* q = queued_.front();
    queued_.pop_front();
    if (q->waiters.empty()) {  // every lookup that wanted it was cancelled
      queries_.erase(QueryKey{q->type, q->name});
      continue;
    }
    Start(*q);
  }
}

void Resolver::QueryDoneThunk(void* arg, int status, int /*timeouts*/, unsigned char* abuf,
                              int alen) {
  auto* q = static_cast<RecordQuery*>(arg);
  q->resolver->QueryDone(*q, status, abuf, alen);
}

void Resolver::QueryDone(RecordQuery& q, int status, const uint8_t* abuf, int alen) {
  // Runs inside c-ares (ares_process_fd, ares_query or ares_destroy): record the answer
  // and hand the waiters to the ready list; no handler and no ares call from here.
  AnswerPtr answer = stopping_ ? Cancelled(absl::StrCat(RecordTypeName(q.type), " ", q.name))
                               : ParseAnswer(q.type, q.name, status, abuf, alen);
  if (answer->kind == RecordAnswer::Kind::kError) ++stats_.query_failures;
  cache_.Insert(q.type, q.name, answer, loop_.now_ms());
  while (RecordWaiter* w = q.waiters.PopFront()) {
    w->answer = answer;
    ready_.PushBack(*w);
  }
  RM_DCHECK(started_ > 0);
  --started_;
  queries_.erase(QueryKey{q.type, q.name});  // frees `q`
  ScheduleDrain();
}

void Resolver::ScheduleDrain() {
  if (drain_scheduled_) return;
  drain_scheduled_ = true;
  loop_.Defer([alive = std::weak_ptr<int>(alive_), this] {
    if (!alive.expired()) Drain();
  });
}

void Resolver::Drain() {
  StartQueued();
  for (size_t n = 0; n < kDrainBatch; ++n) {
    RecordWaiter* w = ready_.PopFront();
    if (w == nullptr) break;
    Step(*w);  // may run a handler, which may start, cancel or destroy lookups
  }
  drain_scheduled_ = false;
  bool startable = !queued_.empty() && started_ < options_.queries_in_flight_max;
  if (!ready_.empty() || startable) ScheduleDrain();
}

void Resolver::Step(RecordWaiter& w) {
  internal::LookupState& s = *w.lookup;
  if (s.kind == internal::LookupState::Kind::kMx) {
    MxStep(*static_cast<MxLookup*>(s.outer), w);
  } else {
    HostStep(*static_cast<HostLookup*>(s.outer));
  }
}

void Resolver::MxStep(MxLookup& lookup, RecordWaiter& w) {
  internal::LookupState& s = lookup.state_;
  if (&w == &s.mx) {
    const RecordAnswer& a = *w.answer;
    switch (a.kind) {
      case RecordAnswer::Kind::kData:
        if (a.null_mx) {
          return FinishMx(lookup, absl::FailedPreconditionError(absl::StrCat(
                                      "DNS: domain ", s.name,
                                      " accepts no mail (null MX, RFC 7505)")));
        }
        lookup.answer_.hosts = a.mx;
        OrderMx(lookup.answer_.hosts, rng_);
        return FinishMx(lookup, absl::OkStatus());
      case RecordAnswer::Kind::kNoData:
        // RFC 5321 section 5.1: no MX, so the domain itself is the mail host, if it has
        // an address.
        Await(s.a, RecordType::kA, s.name);
        Await(s.aaaa, RecordType::kAaaa, s.name);
        return;
      case RecordAnswer::Kind::kNxDomain:
        return FinishMx(lookup, absl::NotFoundError(absl::StrCat(
                                    "DNS: domain ", s.name, " does not exist (NXDOMAIN)")));
      case RecordAnswer::Kind::kError:
        return FinishMx(lookup, a.error);
    }
    return;
  }
  if (!Done(s.a) || !Done(s.aaaa)) return;
  std::vector<IpAddress> addresses;
  absl::Status status = CombineAddresses(s, &addresses);
  if (status.ok()) {
    lookup.answer_.hosts = {MxHost{0, s.name}};
    lookup.answer_.implicit = true;
  } else if (status.code() == absl::StatusCode::kNotFound) {
    status = absl::NotFoundError(
        absl::StrCat("DNS: domain ", s.name, " has no MX, A or AAAA record"));
  }
  FinishMx(lookup, std::move(status));
}

void Resolver::HostStep(HostLookup& lookup) {
  internal::LookupState& s = lookup.state_;
  if (!Done(s.a) || !Done(s.aaaa)) return;
  std::vector<IpAddress> addresses;
  absl::Status status = CombineAddresses(s, &addresses);
  if (status.ok()) lookup.answer_.addresses = std::move(addresses);
  FinishHost(lookup, std::move(status));
}

void Resolver::FinishMx(MxLookup& lookup, absl::Status status) {
  internal::LookupState& s = lookup.state_;
  Forget(s);
  if (!status.ok()) lookup.answer_ = MxAnswer{};
  s.status = std::move(status);
  lookup.handler_(s.owner, lookup);  // may restart or destroy `lookup`: nothing after this
}

void Resolver::FinishHost(HostLookup& lookup, absl::Status status) {
  internal::LookupState& s = lookup.state_;
  Forget(s);
  if (!status.ok()) lookup.answer_ = HostAnswer{};
  s.status = std::move(status);
  lookup.handler_(s.owner, lookup);
}

void Resolver::Shutdown() {
  RM_DCHECK(loop_.IsCurrent());
  if (stopping_) return;
  stopping_ = true;
  // Queries still queued never reached c-ares: their waiters are answered here.
  for (RecordQuery* q : queued_) {
    AnswerPtr answer = Cancelled(absl::StrCat(RecordTypeName(q->type), " ", q->name));
    while (RecordWaiter* w = q->waiters.PopFront()) {
      w->answer = answer;
      ready_.PushBack(*w);
    }
    queries_.erase(QueryKey{q->type, q->name});
  }
  queued_.clear();
  channel_->Shutdown();  // the started ones: QueryDone with ARES_EDESTRUCTION
  RM_DCHECK(queries_.empty());
  ScheduleDrain();
}

}  // namespace ringmail::dns
