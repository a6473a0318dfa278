// delivery/engine.h — the delivery side of one delivery_pool loop: the domain records
// sharded to it, their queues, the scheduler, the outbound connections, and the reports
// back to the owner loops (DESIGN.md "Queues and delivery"; MODULES.md steps 8–10).
//
// Threads and lifetime. One Engine per delivery loop, made ON that loop (Create checks),
// used only there, destroyed after that loop stopped (Run returned / Join()ed). Other
// threads reach it by Loop::Post of a closure that calls it:
//   ledger (owner loop)  → LedgerOptions::dispatch: PostJobToLoop(*delivery_loops[i], job,
//                          [e](DeliveryJob&& j) { e->Submit(std::move(j)); })  (ledger.h)
//   control socket       → Post a closure calling QueueSummary / Suspend / Resume / Flush /
//                          stats and posting the answer back.
// When the loop stops (its OnStop), the Engine stops starting work, cancels its timers,
// aborts every connection (cancel, wait for the ring, close) and tries once more to post
// the reports it holds. Recipients whose delivery was cut short are not reported: they are
// pending in the spool and recovery queues them again at the next start. A report posted
// to an owner loop that stops before running it is lost the same way (the recipient is
// delivered again after a restart): stop the delivery loops first where they differ.
//
// Domain records. Made on first use (Submit, or Suspend of a domain not seen yet), freed
// when they hold nothing (no queued work, no connection, not suspended). Each holds the
// route (smarthost hops from Domain routes / default_route, a literal, or MX through the
// loop's Resolver and its TTL cache), a DomainQueue (ready + delayed), one Timer armed at
// the earliest delayed attempt, its connections and the suspended flag.
//
// Scheduler (once per loop turn, after whatever changed): domains with ready work take
// turns, one new connection each per pass, while
//   - the domain is not suspended and has fewer than its max_outbound_connections,
//   - the engine is under the global max_outbound_connections: a shared counter across
//     engines when EngineOptions::outbound_connections is given (checked and bumped once per
//     connection; engines racing may overshoot by at most engines-1), else this engine's
//     share ceil(max / engine_count),
//   - the Work's owner loop does not brake (EngineOptions::brake: its unlink backlog is
//     full) — braked Works stay queued, in-flight ones finish, a 10 ms timer looks again,
//   - fewer than kOutboxReportsMax reports wait for a full owner inbox.
// A connection starts with one Work (all due recipients of one message in the domain, at
// most transaction_recipients_max), then takes the next ready Work of the same domain (or
// of another domain with its route key: "Sharing by route" below) until
// max_deliveries_per_connection, then QUITs.
// Idle hold (Postfix's connection cache, KumoMTA's idle_timeout): a connection that finds
// no ready Work parks for up to its domain's outbound_idle_timeout (0: QUIT at once)
// instead of QUITting. When Work for a domain becomes ready, its own parked connections
// take it first. A parked connection still counts against both limits; when the global one
// is reached and domains wait, parked connections are closed for room (and none parks while
// domains wait) — after a waiting domain with their route key took one (below). With the
// shared counter an engine closes only its own parked connections, so none parks at the
// global limit. Suspend closes the domain's parked connections, a reload to 0 every parked
// connection it concerns; stop aborts them with every other connection.
// Sharing by route (Postfix keys its cache by next hop): connections are keyed by
// SessionShareKey (delivery/routes.h: the fixed hops with their ports, the effective TLS
// policy and client context, the EHLO name), computed for the domain when the connection
// opens and kept for its life. MX-routed domains have no key and never share (their host
// list is their own MX answer). A domain B with ready Work and a key, after its own parked
// connections, takes a parked connection of another domain A with the same key (an index
// key → parked connections) before a new connection is considered, and a connection whose
// domain has no ready Work left takes ready Work of a domain waiting for a connection with
// the connection's key (an index key → waiting domains) before it parks. Either way only
// when a Work of B could be taken (braked Work moves nothing), while B is not suspended,
// B's connections are under B's max_outbound_connections (a B at its limit takes none) and
// the socket's transaction count is under B's max_deliveries_per_connection. The connection
// then moves from A to B: A's and B's connection counts and client lists, its tag (so B's
// idle timeout, Suspend, reload-to-0 and site-failure rule apply), its transaction limit
// (B's; the count of the socket goes on: deliveries are per socket, not per domain); a
// parked one leaves the idle set and the parked index and begins the Work at once
// (SmtpClient::WakeWith). The global count does not change. Its timeouts and postmaster
// address stay those of the config generation it was opened under, as for a connection its
// own domain reuses; nothing in them is per domain. A after the move is retired later in
// the turn if it holds nothing. Sharing stays within this engine (a connection belongs to
// its loop): domains sharded to other delivery loops have their own.
//
// Results. Per Work attempt one DeliveryReport goes to the message's owner loop:
//   delivered → kDelivered; 5xx, null MX, NXDOMAIN, bad domain → kFailed (the ledger
//   bounces); 4xx, connection failures, DNS trouble → kDeferred with attempts + 1 and
//   next_attempt_ms from delivery/retry.h (jittered) — and the Engine itself keeps the
//   recipient in the domain's delayed queue until then; a temporary failure at or after
//   received_ms + message_expiration → kFailed ("4.4.7 ... expired"). A deferral longer
//   than hold_deferred_max_ms is handed back to the ledger instead (kDeferred then kPending
//   for the same recipient in one report; the ledger dispatches it again when due).
// When a whole destination fails (DNS, or no host answered) and no other connection to it
// is in session, every ready Work of the domain gets the same result at once (a dead site
// is not retried message by message).
// Reports are batched per owner loop per turn and handed to the report sink; a sink that
// answers kFull keeps the batch here and is retried on a 5 ms timer.
//
// Delivery log: one JSON line per recipient result (event "delivered", "deferred",
// "failed") with id, sender, recipient, domain, remote host, reply, attempts, queue time,
// and when the deciding connection used or tried TLS: tls_version, tls_cipher, tls_verify
// ("ok", "not-checked", "failed: why") and tls_note (a plaintext retry after a failed
// handshake).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "config/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/timers.h"
#include "delivery/body_reader.h"
#include "delivery/domain_queue.h"
#include "delivery/job.h"
#include "delivery/retry.h"
#include "delivery/routes.h"
#include "delivery/self_endpoints.h"
#include "delivery/smtp_client.h"
#include "delivery/topology.h"
#include "dns/resolver.h"

namespace ringmail::delivery {

// Reports waiting for full owner inboxes beyond which no new delivery starts.
inline constexpr size_t kOutboxReportsMax = 65536;

// Hands a batch of reports to owner loop `owner_loop`; called on the Engine's loop.
// kOk: it took the batch (moved from it). kFull: the batch must stay intact; the Engine
// keeps it and calls again later. kStopped: the owner is gone; the Engine drops the batch
// (the spool still has the messages: a restart delivers the undecided ones again).
using ReportSink = absl::AnyInvocable<core::PostResult(uint32_t owner_loop,
                                                       std::vector<DeliveryReport>& batch)>;

// The production sink: Posts to topology.owner_loops[owner] a task that calls
// topology.ledgers[owner]->Report(std::move(report)) for each report of the batch.
core::PostResult PostReportsToLedger(const DeliveryTopology& topology, uint32_t owner_loop,
                                     std::vector<DeliveryReport>& batch);

// "Owner loop o brakes": topology->ledgers[o]->brake(), a relaxed atomic load.
std::function<bool(uint32_t owner_loop)> BrakeFromTopology(const DeliveryTopology* topology);

struct EngineOptions {
  std::shared_ptr<const config::Config> config;  // required
  // Where reports go when report_sink is empty (PostReportsToLedger), and engine_count.
  const DeliveryTopology* topology = nullptr;
  ReportSink report_sink;  // tests (and anything else that wants the reports); see above
  dns::ResolverOptions resolver;
  core::EventLog* delivery_log = nullptr;  // may be null: no delivery log
  // "Owner loop `owner_loop` brakes: start no new delivery of its messages" (its unlink
  // backlog is full). Called on this loop, often: it must be a cheap thread-safe read (an
  // atomic load). Empty: BrakeFromTopology(topology), or never without a topology.
  std::function<bool(uint32_t owner_loop)> brake;
  // Open outbound connections of every engine together, for the global
  // max_outbound_connections; owned by the caller, outlives the engines. Null: each engine
  // keeps to its share, ceil(max / engine_count).
  std::atomic<int64_t>* outbound_connections = nullptr;
  size_t engine_count = 0;  // 0: topology->delivery_loops.size(), or 1 without a topology
  size_t transaction_recipients_max = 100;  // 1..kTransactionRecipientsMax
  size_t body_files_max = 64;               // segment files kept open for reading
  uint32_t addresses_max = 10;              // connect attempts per connection's hosts
  double retry_jitter = 0.1;                // RetryPolicy::jitter_fraction
  // A recipient deferred for longer than this is handed back to its ledger (a kPending
  // item after its kDeferred one) instead of waiting here: engine memory stays bounded by
  // the near future, and the ledger may compact the message meanwhile. 0: keep them all.
  uint64_t hold_deferred_max_ms = 15 * 60 * 1000;
  uint64_t random_seed = 0;                 // jitter; 0: from the OS
  bool prefer_chunking = false;             // BDAT when the server offers CHUNKING
  EightBitPolicy eight_bit = EightBitPolicy::kBounce;
  // Outbound STARTTLS's client context (MakeOutboundTlsContext, made off this loop); null:
  // no TLS (opportunistic destinations get plaintext, required ones are deferred).
  std::shared_ptr<const tls::TlsContext> tls_client;
  // This daemon's own ESMTP endpoints: a next hop among them is never connected to
  // (delivery/self_endpoints.h). Null: no check (tests that route to themselves on purpose).
  std::shared_ptr<const SelfEndpoints> self;
};

// The client context for outbound STARTTLS: the system CA store plus global.tls_ca_file.
// Blocking (reads the CA files): call it at start-up or reload, off the delivery loops.
absl::StatusOr<std::shared_ptr<const tls::TlsContext>> MakeOutboundTlsContext(
    const config::GlobalOptions& global);

struct DomainSummary {
  std::string domain;
  uint64_t ready = 0;            // recipients due now (not yet in a connection)
  uint64_t delayed = 0;          // recipients waiting for their next attempt
  uint32_t connections = 0;      // open (or opening) outbound connections
  uint64_t oldest_ms = 0;        // received_ms (Unix) of the oldest queued message; 0: none
  uint64_t next_attempt_ms = 0;  // earliest delayed attempt (Unix ms); 0: none
  bool suspended = false;
};

struct EngineStats {
  uint64_t jobs = 0;            // Submit() calls
  uint64_t recipients = 0;      // recipients submitted
  uint64_t connections = 0;     // clients started (each may try several addresses)
  uint64_t connects = 0;        // connect attempts
  uint64_t connect_failures = 0;
  uint64_t sessions = 0;        // connects that succeeded
  uint64_t transactions = 0;
  uint64_t delivered = 0;       // recipients
  uint64_t deferred = 0;
  uint64_t failed = 0;          // including expired
  uint64_t expired = 0;
  uint64_t handed_back = 0;     // long deferrals given back to their ledger
  uint64_t bytes_sent = 0;      // commands and bodies
  uint64_t reports = 0;         // DeliveryReports handed to the sink
  uint64_t report_retries = 0;  // sink answered kFull
  uint64_t reports_dropped = 0; // sink answered kStopped, or left at stop
  uint64_t idle_reuses = 0;     // parked connections woken that took Work
  uint64_t idle_evictions = 0;  // parked connections closed to make room for other domains
  uint64_t shared_reuses = 0;   // parked connections of another domain (same key) woken
  uint64_t shared_takes = 0;    // connections that went on with another domain's Work
  uint64_t segment_files_released = 0;  // body files closed because their segment was removed
  // Gauges.
  uint64_t open_connections = 0;
  uint64_t domains = 0;
  uint64_t ready = 0;
  uint64_t delayed = 0;
  uint64_t outbox = 0;
};

class Engine final : private SmtpClient::Owner {
 public:
  // On `loop`'s thread. kInvalidArgument for bad options; the Resolver's errors.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(core::Loop& loop,
                                                        EngineOptions options);
  ~Engine();  // after the loop stopped
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // ---- loop thread only

  // Files the job's recipients in its domain's record (job.domain: lower case; every
  // recipient in it). Ignored once the loop is stopping.
  void Submit(DeliveryJob&& job);
  // A reloaded configuration: routes, limits, timeouts and retry policy of new work.
  void SetConfig(std::shared_ptr<const config::Config> config);
  // A new outbound TLS context (after a reload); connections already open keep theirs.
  // Changes the route keys: connections opened before are not shared with new ones.
  void SetTlsClient(std::shared_ptr<const tls::TlsContext> context);
  // This daemon's own endpoints, once its listeners are bound (ports chosen at bind time).
  void SetSelfEndpoints(std::shared_ptr<const SelfEndpoints> self);
  // Spool segments an owner loop has just removed (their paths): their descriptors are
  // closed now, or when the read that pins one ends (BodyFiles::Forget).
  void SegmentsRemoved(const std::vector<std::string>& paths);

  // Operator hooks. Domain names in any case, trailing dot allowed.
  std::vector<DomainSummary> QueueSummary() const;  // sorted by domain
  void Suspend(std::string_view domain);            // no new connections; ready work stays
  bool Resume(std::string_view domain);             // false: no such domain record
  size_t Flush(std::string_view domain);            // delayed → ready now; recipients moved
  size_t FlushAll();
  EngineStats stats() const;

  core::Loop& loop() { return loop_; }

 private:
  struct Domain;

  Engine(core::Loop& loop, EngineOptions options);
  absl::Status Init();
  void Stop();

  Domain& FindOrCreate(std::string_view name);
  Domain* Find(std::string_view name);
  void RefreshDomain(Domain& d);
  void MaybeRetire(Domain& d);
  void DomainTimerFired(Domain& d);
  void RearmDomainTimer(Domain& d);

  void MarkWanting(Domain& d);
  bool CanStart(const Domain& d) const;
  bool GlobalSlotAvailable() const;
  bool Braked(uint32_t owner_loop) const;
  void ScheduleSoon();
  void Schedule();
  void StartClient(Domain& d, Work work);
  uint32_t DeliveriesMax(const Domain& d) const;
  void WakeParked(Domain& d);
  // Sharing by route key (see "Sharing by route" above).
  void UpdateShareKey(Domain& d);
  void ListWanting(Domain& d);
  void UnlistWanting(Domain& d);
  bool MayMoveTo(const SmtpClient& client, const Domain& to) const;
  bool AdoptParked(Domain& d);
  std::optional<Work> TakeSharedWork(SmtpClient& client, Domain& from);
  void MoveClient(SmtpClient& client, Domain& from, Domain& to);
  void RetireSoon(Domain& d);
  void AddIdle(SmtpClient* client);
  void RemoveIdle(SmtpClient* client);
  void EvictIdle(size_t wanted);
  void ArmPoll();
  void PollFired(core::Timer& timer);
  void SweepFired(core::Timer& timer);

  // SmtpClient::Owner
  std::optional<Work> NextWork(SmtpClient& client) override;
  uint64_t IdleMs(SmtpClient& client) override;
  void WorkDone(SmtpClient& client, Work work, AttemptResult result) override;
  void ClientClosed(SmtpClient& client) override;

  // One attempt's results → report items, log lines, delayed Works.
  void Apply(Domain& d, Work work, const std::vector<RecipientResult>& results,
             const std::string& remote_host, const TlsSummary* tls = nullptr);
  void Log(std::string_view event, const Domain& d, const QueuedMessage& message,
           const DeliveryJob::Recipient& recipient, const DeliveryReport::Item& item,
           uint64_t now_ms, const TlsSummary* tls);
  void Enqueue(uint32_t owner_loop, DeliveryReport report);
  void FlushOutboxSoon();
  void FlushOutbox();
  void OutboxTimerFired(core::Timer& timer);

  core::Loop& loop_;
  EngineOptions options_;
  std::shared_ptr<const config::Config> config_;
  RetryPolicy retry_;
  size_t engine_count_ = 1;
  std::unique_ptr<dns::Resolver> resolver_;
  BodyFiles files_;
  std::mt19937_64 rng_;
  bool stopping_ = false;

  absl::flat_hash_map<std::string, std::unique_ptr<Domain>> domains_;
  std::deque<Domain*> wanting_;  // domains that may start a connection
  bool schedule_pending_ = false;
  core::Timer poll_timer_;   // brakes and the shared global limit are polled
  core::Timer sweep_timer_;  // closes idle segment files
  struct ClientEntry {
    std::unique_ptr<SmtpClient> client;
    std::string share_key;  // of its first domain when it opened; "" never shared
  };
  absl::flat_hash_map<SmtpClient*, ClientEntry> clients_;
  uint64_t open_ = 0;
  absl::flat_hash_set<SmtpClient*> idle_;      // parked since they last took Work
  absl::flat_hash_set<SmtpClient*> evicting_;  // parked ones told to QUIT for room
  // The idle_ members with a share key, by key (entries erased when empty).
  absl::flat_hash_map<std::string, absl::flat_hash_set<SmtpClient*>> parked_by_key_;
  // The wanting_ members with a share key, by key, in wanting_'s order (FIFO turns).
  absl::flat_hash_map<std::string, std::list<Domain*>> wanting_by_key_;

  std::vector<std::vector<DeliveryReport>> outbox_;  // by owner loop
  size_t outbox_reports_ = 0;
  bool outbox_flush_pending_ = false;
  core::Timer outbox_timer_;

  EngineStats stats_;
  SmtpClientStats closed_clients_;  // summed over clients already freed
};

}  // namespace ringmail::delivery
