// dns/resolver.h — MX and address lookups for delivery, answered on the caller's loop.
//
// One Resolver per loop (made on it with Create), owning that loop's c-ares Channel and
// answer Cache. Lookups are caller-owned records (MxLookup, HostLookup) embedded in the
// caller, like core::Operation: Bind the handler once, start with ResolveMx/ResolveHost,
// and the handler runs exactly once on the loop thread — never from inside the Resolve
// call (a cache hit is delivered later in the same turn) — unless the lookup is
// cancelled first (Cancel, or destroying the record, which cancels it). Results stay in
// the record until it is started again.
//
//   ResolveMx(domain): MX hosts in delivery order — preference ascending, equal
//     preferences shuffled per lookup. No MX record (NODATA) → the implicit MX (RFC 5321
//     section 5.1): the domain itself at preference 0, provided it has an A or AAAA record.
//   ResolveHost(host): its A then AAAA addresses (one family failing temporarily while the
//     other answers still gives the addresses found).
//
// Status codes (what delivery does with them):
//   OK
//   kNotFound           permanent: NXDOMAIN; or no MX and no address; or a host with no
//                       A/AAAA record
//   kFailedPrecondition permanent: null MX (RFC 7505) — the domain accepts no mail
//   kInvalidArgument    permanent: the name is not a valid domain name (length ≤ 253,
//                       labels ≤ 63, letters digits '-' '_')
//   kUnavailable        temporary: SERVFAIL, REFUSED, connection refused, malformed answer,
//                       an MX set with no valid host name
//   kDeadlineExceeded   temporary: no answer within the channel's timeout × tries
//   kResourceExhausted  temporary: more queries waiting than queries_queued_max
//   kCancelled          the resolver stopped (loop stop or Shutdown) before an answer
//
// Every (type, name) query is shared: lookups that need the same record while its query is
// in flight wait for that one query (coalescing), and answers are cached per loop
// (dns/cache.h). At most queries_in_flight_max queries are outstanding; more wait in FIFO
// order, up to queries_queued_max.
//
// Thread: the loop's only. Lifetime: the Resolver outlives its lookups' pending state and
// is destroyed after its loop stopped (its stop handler calls Shutdown(), which completes
// every pending lookup with kCancelled), or after Shutdown() once idle(). Handlers must
// not retry on kCancelled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/loop.h"
#include "dns/answer.h"
#include "dns/cache.h"
#include "dns/channel.h"
#include "dns/mx_order.h"

namespace ringmail::dns {

struct ResolverOptions {
  ChannelOptions channel;
  CacheOptions cache;
  size_t queries_in_flight_max = 1000;  // c-ares queries outstanding at once (1..100000)
  size_t queries_queued_max = 10000;    // waiting for a slot; more: kResourceExhausted
  uint64_t random_seed = 0;             // MX shuffle; 0: seeded from the OS
};

struct ResolverStats {
  uint64_t mx_lookups = 0;
  uint64_t host_lookups = 0;
  uint64_t cache_hits = 0;        // record answers taken from the cache
  uint64_t coalesced = 0;         // record waits that joined a query already in flight
  uint64_t queries_sent = 0;      // queries handed to c-ares
  uint64_t queries_queued = 0;    // queries that had to wait for a slot
  uint64_t queries_rejected = 0;  // queue full: kResourceExhausted
  uint64_t query_failures = 0;    // queries that ended in an error (not NXDOMAIN/NODATA)
  uint64_t queries_in_flight = 0;
  uint64_t queries_in_flight_peak = 0;
};

struct MxAnswer {
  std::vector<MxHost> hosts;  // delivery order; never empty when the status is OK
  bool implicit = false;      // no MX record: hosts is {0, the domain itself}
};

struct HostAnswer {
  std::vector<IpAddress> addresses;  // A records, then AAAA; never empty when OK
};

class Resolver;

namespace internal {

class WaiterList;
struct LookupState;

// One lookup's wait for one record answer; linked into the query it waits on, then into
// the resolver's ready list.
struct RecordWaiter {
  RecordWaiter* prev = nullptr;
  RecordWaiter* next = nullptr;
  WaiterList* list = nullptr;  // where it is linked, if anywhere
  AnswerPtr answer;            // set when the answer is known
  LookupState* lookup = nullptr;
};

class WaiterList {
 public:
  bool empty() const { return head_ == nullptr; }
  void PushBack(RecordWaiter& w);
  void Remove(RecordWaiter& w);
  RecordWaiter* PopFront();

 private:
  RecordWaiter* head_ = nullptr;
  RecordWaiter* tail_ = nullptr;
};

struct LookupState {
  enum class Kind : uint8_t { kMx, kHost };
  LookupState(Kind k, void* o);
  LookupState(const LookupState&) = delete;
  LookupState& operator=(const LookupState&) = delete;

  Kind kind;
  void* outer;  // the MxLookup or HostLookup this is part of
  Resolver* resolver = nullptr;
  bool pending = false;
  std::string name;  // canonical
  absl::Status status;
  void* owner = nullptr;
  RecordWaiter mx;  // MX lookups only
  RecordWaiter a;
  RecordWaiter aaaa;
};

}  // namespace internal

class MxLookup {
 public:
  MxLookup() : state_(internal::LookupState::Kind::kMx, this) {}
  ~MxLookup();  // cancels a pending lookup: its handler will not run
  MxLookup(const MxLookup&) = delete;
  MxLookup& operator=(const MxLookup&) = delete;

  // The handler: `owner->Method(lookup)` on the loop thread.
  template <auto Method, typename Owner>
  void Bind(Owner* owner) {
    state_.owner = owner;
    handler_ = [](void* raw, MxLookup& l) { (static_cast<Owner*>(raw)->*Method)(l); };
  }
  bool pending() const { return state_.pending; }
  const std::string& domain() const { return state_.name; }
  const absl::Status& status() const { return state_.status; }
  const MxAnswer& answer() const { return answer_; }  // meaningful when status() is OK

 private:
  friend class Resolver;
  internal::LookupState state_;
  void (*handler_)(void*, MxLookup&) = nullptr;
  MxAnswer answer_;
};

class HostLookup {
 public:
  HostLookup() : state_(internal::LookupState::Kind::kHost, this) {}
  ~HostLookup();  // cancels a pending lookup: its handler will not run
  HostLookup(const HostLookup&) = delete;
  HostLookup& operator=(const HostLookup&) = delete;

  template <auto Method, typename Owner>
  void Bind(Owner* owner) {
    state_.owner = owner;
    handler_ = [](void* raw, HostLookup& l) { (static_cast<Owner*>(raw)->*Method)(l); };
  }
  bool pending() const { return state_.pending; }
  const std::string& host() const { return state_.name; }
  const absl::Status& status() const { return state_.status; }
  const HostAnswer& answer() const { return answer_; }

 private:
  friend class Resolver;
  internal::LookupState state_;
  void (*handler_)(void*, HostLookup&) = nullptr;
  HostAnswer answer_;
};

class Resolver {
 public:
  // On the loop's thread. Fails on bad options (kInvalidArgument) or if c-ares cannot
  // make a channel.
  static absl::StatusOr<std::unique_ptr<Resolver>> Create(core::Loop& loop,
                                                          ResolverOptions options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // `lookup` must be bound and not pending.
  void ResolveMx(std::string_view domain, MxLookup& lookup);
  void ResolveHost(std::string_view host, HostLookup& lookup);
  // Forgets a pending lookup (no handler call); a query it started still fills the cache.
  void Cancel(MxLookup& lookup);
  void Cancel(HostLookup& lookup);

  // Stops resolving: every pending lookup completes with kCancelled (later in this turn),
  // and so does every lookup started afterwards. Idempotent; the loop's stop calls it.
  void Shutdown();
  // Safe to destroy: shut down, no poll in flight, no handler left to run.
  bool idle() const;

  ResolverStats stats() const;
  const Cache& cache() const { return cache_; }
  const Channel& channel() const { return *channel_; }

 private:
  struct RecordQuery;
  using QueryKey = std::pair<RecordType, std::string>;

  Resolver(core::Loop& loop, ResolverOptions options, std::unique_ptr<Channel> channel);
  void Await(internal::RecordWaiter& w, RecordType type, const std::string& name);
  void Ready(internal::RecordWaiter& w, AnswerPtr answer);
  void Start(RecordQuery& q);
  void StartQueued();
  static void QueryDoneThunk(void* arg, int status, int timeouts, unsigned char* abuf,
                             int alen);
  void QueryDone(RecordQuery& q, int status, const uint8_t* abuf, int alen);
  void ScheduleDrain();
  void Drain();
  void Step(internal::RecordWaiter& w);
  void MxStep(MxLookup& lookup, internal::RecordWaiter& w);
  void HostStep(HostLookup& lookup);
  void FinishMx(MxLookup& lookup, absl::Status status);
  void FinishHost(HostLookup& lookup, absl::Status status);
  void Forget(internal::LookupState& state);

  core::Loop& loop_;
  ResolverOptions options_;
  std::unique_ptr<Channel> channel_;
  Cache cache_;
  std::mt19937_64 rng_;
  absl::flat_hash_map<QueryKey, std::unique_ptr<RecordQuery>> queries_;
  std::deque<RecordQuery*> queued_;
  internal::WaiterList ready_;
  size_t started_ = 0;
  bool drain_scheduled_ = false;
  bool stopping_ = false;
  ResolverStats stats_;
  // Loop callbacks hold a weak copy: a resolver destroyed after Shutdown() is skipped.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace ringmail::dns
