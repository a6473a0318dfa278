#include "listeners/esmtp/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "listeners/net/listen_socket.h"
#include "listeners/esmtp/session.h"

namespace ringmail::listeners::esmtp {
namespace {

constexpr uint16_t kBufferGroup = 1;
constexpr uint32_t kRecvBuffers = 512;        // per loop; power of two
constexpr uint32_t kRecvBufferBytes = 16384;  // 8 MiB per loop in all
constexpr int kListenBacklog = 4096;

uint64_t RandomSalt() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}


}  // namespace

ListenerShared::Admit ListenerShared::TryAdmit(const std::string& ip, int64_t max_connections,
                                               int64_t max_per_ip, int64_t max_rate_per_ip,
                                               uint64_t now_ms) {
  if (connections_.fetch_add(1, std::memory_order_relaxed) >= max_connections) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
    return Admit::kTooManyConnections;
  }
  absl::MutexLock lock(&mu_);
  if (per_ip_.size() >= sweep_at_) SweepLocked(now_ms);
  auto [it, fresh] = per_ip_.try_emplace(ip);
  PerIp& e = it->second;
  if (fresh || now_ms - e.window_start_ms >= kRateWindowMs) {
    e.window_start_ms = now_ms;
    e.window_count = 0;
  }
  Admit refusal = Admit::kOk;
  if (max_per_ip > 0 && e.connections >= max_per_ip) {
    refusal = Admit::kTooManyFromIp;
  } else if (max_rate_per_ip > 0 && e.window_count >= max_rate_per_ip) {
    refusal = Admit::kTooFastFromIp;
  }
  if (refusal != Admit::kOk) {
    if (e.connections == 0 && e.window_count == 0) per_ip_.erase(it);
    connections_.fetch_sub(1, std::memory_order_relaxed);
    return refusal;
  }
  ++e.connections;
  if (max_rate_per_ip > 0) ++e.window_count;  // else nothing to remember past the close
  return Admit::kOk;
}

void ListenerShared::Release(const std::string& ip) {
  connections_.fetch_sub(1, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end() || --it->second.connections > 0) return;
  // Kept for its rate window (when a rate is counted), unless the table is at its bound.
  if (it->second.window_count == 0 || per_ip_.size() >= kIpTableMax) per_ip_.erase(it);
}

void ListenerShared::SweepLocked(uint64_t now_ms) {
  absl::erase_if(per_ip_, [now_ms](const auto& entry) {
    const PerIp& e = entry.second;
    return e.connections <= 0 && now_ms - e.window_start_ms >= kRateWindowMs;
  });
  sweep_at_ = std::max<size_t>(1024, 2 * per_ip_.size());
}

EsmtpListener::EsmtpListener(core::Loop& loop, ListenerShared& shared, spool::SpoolWriter& spool,
                             core::EventLog* log, std::shared_ptr<const Settings> settings)
    : loop_(loop),
      shared_(shared),
      spool_(spool),
      log_(log),
      settings_(std::move(settings)),
      ids_(loop.index(), RandomSalt()) {
  auto br = core::BufferRing::Create(loop.ring(), kBufferGroup, kRecvBuffers, kRecvBufferBytes);
  RM_CHECK(br.ok()) << "receive buffer ring: " << br.status();
  buffers_ = std::move(br).value();
  loop_.OnStop([this] {
    CloseAcceptors();
    for (auto& [s, owned] : sessions_) s->Abort();
  });
}

EsmtpListener::~EsmtpListener() {
  RM_CHECK(sessions_.empty()) << "listener destroyed with live sessions";
  // Each Acceptor checks that its accept is no longer in flight and closes its socket.
}

absl::Status EsmtpListener::Listen(const std::vector<config::NetAddress>& addresses) {
  const std::vector<config::ListenConfig>& configured = settings_->config->esmtp.listen;
  std::vector<config::ListenConfig> listens;
  for (size_t i = 0; i < addresses.size(); ++i) {
    config::ListenConfig l;
    l.address = addresses[i];
    if (configured.size() == addresses.size() && configured[i].address == addresses[i]) {
      l.tls = configured[i].tls;
    }
    listens.push_back(l);
  }
  return Listen(listens);
}

absl::Status EsmtpListener::Listen(const std::vector<config::ListenConfig>& listens) {
  for (const config::ListenConfig& listen : listens) {
    const bool implicit = listen.tls == config::ListenTls::kImplicit;
    if (implicit && settings_->tls_context == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ESMTP_Listener: Listen \"", listen.address.ToString(),
          "\" has tls = \"implicit\" but no tls_certificate/tls_key"));
    }
    uint16_t port = 0;
    absl::StatusOr<int> fd =
        OpenListenSocket(listen.address, kListenBacklog, "ESMTP_Listener", &port);
    if (!fd.ok()) return fd.status();
    auto a = std::make_unique<core::Acceptor>(loop_, "esmtp.accept");
    a->Bind<&EsmtpListener::AcceptDone>(this, implicit);
    bound_ports_.push_back(port);
    a->Start(*fd);
    acceptors_.push_back(std::move(a));
  }
  return absl::OkStatus();
}

void EsmtpListener::AcceptDone(bool implicit_tls, core::Accepted a) {
  if (a.fd < 0) {
    ++counters_.accept_errors;
    return;
  }
  const int fd = a.fd;
  std::string ip;
  uint16_t port = 0;
  if (!PeerOf(fd, &ip, &port)) {  // already gone
    close(fd);
    return;
  }
  ++counters_.accepted;
  auto session = std::make_unique<Session>(*this, fd, ip, port, settings_, implicit_tls);
  Session* s = session.get();
  sessions_.emplace(s, std::move(session));
  const Settings& st = *settings_;
  switch (shared_.TryAdmit(ip, st.max_connections, st.max_connections_per_ip,
                           st.max_connection_rate_per_ip, loop_.now_ms())) {
    case ListenerShared::Admit::kOk:
      s->set_admitted(true);
      s->Start();
      return;
    case ListenerShared::Admit::kTooManyConnections:
      ++counters_.refused_busy;
      s->Refuse(absl::StrCat("421 4.3.2 ", st.hostname, " Service too busy, try again later\r\n"));
      return;
    case ListenerShared::Admit::kTooManyFromIp:
      ++counters_.refused_ip;
      s->Refuse(absl::StrCat("421 4.7.0 ", st.hostname,
                             " Too many connections from your address\r\n"));
      return;
    case ListenerShared::Admit::kTooFastFromIp:
      ++counters_.refused_rate;
      s->Refuse(absl::StrCat("421 4.7.0 ", st.hostname,
                             " Too many connections from your address this minute, try again "
                             "later\r\n"));
      return;
  }
}

void EsmtpListener::UpdateSettings(std::shared_ptr<const Settings> settings) {
  settings_ = std::move(settings);
  // A raised max_processings lets in the transactions already waiting, in their order
  // (they used to wait for a slot to be released, and later sessions overtook them).
  GrantWaiting();
}

void EsmtpListener::GrantWaiting() {
  while (!slot_waiters_.empty() && slots_used_ < settings_->processings_per_loop) {
    Session* next = slot_waiters_.front();
    slot_waiters_.pop_front();
    ++slots_used_;
    next->SlotGranted();
  }
}

bool EsmtpListener::RequestSlot(Session* s) {
  if (slots_used_ < settings_->processings_per_loop) {
    ++slots_used_;
    return true;
  }
  slot_waiters_.push_back(s);
  return false;
}

void EsmtpListener::ReleaseSlot(Session* s, bool was_waiting) {
  if (was_waiting) {
    for (auto it = slot_waiters_.begin(); it != slot_waiters_.end(); ++it) {
      if (*it == s) {
        slot_waiters_.erase(it);
        return;
      }
    }
    return;
  }
  RM_DCHECK(slots_used_ > 0);
  --slots_used_;
  GrantWaiting();
}

void EsmtpListener::SessionClosed(Session* s) {
  if (s->admitted()) shared_.Release(s->peer_ip());
  sessions_.erase(s);
  MaybeDrained();
}

void EsmtpListener::CloseAcceptors() {
  for (auto& a : acceptors_) a->Close();
}

void EsmtpListener::Drain(std::function<void()> drained) {
  draining_ = true;
  drained_ = std::move(drained);
  // Not only stop accepting: a client connecting now would otherwise sit in the accept
  // queue, unanswered, until the daemon exits. Refused, it tries its next MX at once.
  for (auto& a : acceptors_) a->StopListening();
  std::vector<Session*> all;
  for (auto& [s, owned] : sessions_) all.push_back(s);
  for (Session* s : all) s->Shutdown();
  MaybeDrained();
}

void EsmtpListener::MaybeDrained() {
  if (!draining_ || !sessions_.empty() || !drained_) return;
  auto done = std::move(drained_);
  drained_ = nullptr;
  done();
}

}  // namespace ringmail::listeners::esmtp
