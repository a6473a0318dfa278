// listeners/esmtp/listener.h — the ESMTP front door on one loop.
//
// Contract
// - One EsmtpListener per loop of the listener's pool, created, used and destroyed on that
//   loop's thread. Each has its own SO_REUSEPORT socket per Listen address with one
//   multishot accept, so an accepted fd never crosses loops; its sessions read through the
//   loop's provided-buffer ring (an idle connection holds no receive buffer).
// - Limits: max_connections, max_connections_per_ip and max_connection_rate_per_ip are
//   daemon-wide, kept in
//   ListenerShared (touched once per connection, never per byte); the excess connection
//   hears `421 4.3.2` and is closed. max_processings is split into per-loop quotas: a
//   session that wants to start a transaction past the quota waits its turn in a FIFO
//   without holding the loop (it stops reading until granted).
// - A session is owned by its listener and freed only after its last ring operation has
//   completed (STYLE.md principle 3).
// - Drain() (SIGTERM): stop accepting; sessions answer new commands with 421 and close,
//   transactions in DATA finish. `drained` is called once no session is left.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "config/address.h"
#include "core/acceptor.h"
#include "core/buffers.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/message.h"
#include "listeners/esmtp/settings.h"
#include "spool/group_commit.h"

namespace ringmail::listeners::esmtp {

class Session;

// Daemon-wide connection accounting, shared by every loop's listener. Thread-safe.
//
// The rate limit (max_connection_rate_per_ip) counts the connections admitted from one
// address in a fixed one-minute window that starts at the first of them (Postfix's anvil
// counts the same way): the window's count outlives the address's connections, so an
// address with nothing open may still be remembered (only while a rate is configured).
// Those entries are swept once the table has doubled since the last sweep; past
// kIpTableMax addresses, one whose last connection closes is forgotten at once (the limit
// fails open for it; memory stays bounded however many addresses a client has).
class ListenerShared {
 public:
  static constexpr size_t kIpTableMax = 1 << 18;
  static constexpr uint64_t kRateWindowMs = 60'000;

  // Admits a connection from `ip` or says which limit refused it.
  enum class Admit { kOk, kTooManyConnections, kTooManyFromIp, kTooFastFromIp };
  Admit TryAdmit(const std::string& ip, int64_t max_connections, int64_t max_per_ip,
                 int64_t max_rate_per_ip, uint64_t now_ms);
  void Release(const std::string& ip);
  int64_t connections() const { return connections_.load(std::memory_order_relaxed); }
  size_t addresses() const {
    absl::MutexLock lock(&mu_);
    return per_ip_.size();
  }

 private:
  struct PerIp {
    int64_t connections = 0;
    uint64_t window_start_ms = 0;
    int64_t window_count = 0;  // admitted since window_start_ms
  };
  void SweepLocked(uint64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<int64_t> connections_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, PerIp> per_ip_ ABSL_GUARDED_BY(mu_);
  size_t sweep_at_ ABSL_GUARDED_BY(mu_) = 1024;
};

struct ListenerCounters {
  uint64_t accepted = 0;
  uint64_t refused_busy = 0;
  uint64_t refused_ip = 0;
  uint64_t refused_rate = 0;
  uint64_t messages = 0;
  uint64_t message_bytes = 0;
  uint64_t commit_errors = 0;
  uint64_t accept_errors = 0;
  uint64_t tls_handshakes = 0;        // completed (STARTTLS and implicit)
  uint64_t tls_resumed = 0;           // of those, resumed with a client's ticket
  uint64_t tls_handshake_errors = 0;  // failed: bad input, alert, peer closed
  uint64_t tls_handshake_timeouts = 0;
};

class EsmtpListener {
 public:
  EsmtpListener(core::Loop& loop, ListenerShared& shared, spool::SpoolWriter& spool,
                core::EventLog* log, std::shared_ptr<const Settings> settings);
  ~EsmtpListener();
  EsmtpListener(const EsmtpListener&) = delete;
  EsmtpListener& operator=(const EsmtpListener&) = delete;

  // Opens the sockets (SO_REUSEPORT) and arms their multishot accepts. A listen with
  // tls = implicit speaks TLS from the first byte (SMTPS); it needs the settings' TLS context.
  absl::Status Listen(const std::vector<config::ListenConfig>& listens);
  // The same for addresses taken in order from the settings' ESMTP_Listener Listen scopes
  // (ringmaild's form): address i gets the tls mode of Listen scope i when the counts match,
  // plain otherwise.
  absl::Status Listen(const std::vector<config::NetAddress>& addresses);
  // The ports actually bound (for port 0 in tests), in Listen order.
  const std::vector<uint16_t>& bound_ports() const { return bound_ports_; }
  // New connections use these settings; existing sessions keep theirs.
  void UpdateSettings(std::shared_ptr<const Settings> settings);
  void Drain(std::function<void()> drained);
  size_t session_count() const { return sessions_.size(); }
  // Transactions waiting for a max_processings slot on this loop.
  size_t waiting_for_slot() const { return slot_waiters_.size(); }
  const ListenerCounters& counters() const { return counters_; }

  // ---- for Session (same loop) ----
  core::Loop& loop() { return loop_; }
  core::BufferRing& buffers() { return *buffers_; }
  spool::SpoolWriter& spool() { return spool_; }
  core::MessageIdGenerator& ids() { return ids_; }
  core::EventLog* log() { return log_; }
  ListenerCounters& mutable_counters() { return counters_; }
  bool draining() const { return draining_; }
  // True when granted at once; otherwise the session waits and Session::SlotGranted()
  // is called when its turn comes.
  bool RequestSlot(Session* s);
  // Gives back a held slot, or withdraws a waiting request.
  void ReleaseSlot(Session* s, bool was_waiting);
  void SessionClosed(Session* s);

 private:
  // The handler of every Listen address's core::Acceptor (which owns the socket and backs
  // off on EMFILE and friends); `implicit_tls` is that address's.
  void AcceptDone(bool implicit_tls, core::Accepted a);
  void CloseAcceptors();
  void MaybeDrained();
  void GrantWaiting();  // slots to waiting sessions, oldest first, while any is free

  core::Loop& loop_;
  ListenerShared& shared_;
  spool::SpoolWriter& spool_;
  core::EventLog* log_;
  std::shared_ptr<const Settings> settings_;
  std::unique_ptr<core::BufferRing> buffers_;
  core::MessageIdGenerator ids_;
  std::vector<std::unique_ptr<core::Acceptor>> acceptors_;
  std::vector<uint16_t> bound_ports_;
  absl::flat_hash_map<Session*, std::unique_ptr<Session>> sessions_;
  int64_t slots_used_ = 0;
  std::deque<Session*> slot_waiters_;
  bool draining_ = false;
  std::function<void()> drained_;
  ListenerCounters counters_;
};

}  // namespace ringmail::listeners::esmtp
