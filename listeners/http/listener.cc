#include "listeners/http/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "listeners/net/listen_socket.h"
#include "absl/time/clock.h"
#include "listeners/http/connection.h"

namespace ringmail::listeners::http {
namespace {

constexpr uint32_t kRecvBuffers = 256;        // per loop; power of two
constexpr uint32_t kRecvBufferBytes = 16384;  // 4 MiB per loop in all
constexpr int kListenBacklog = 4096;

uint64_t RandomSalt() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}


void Series(std::string* out, const char* name, const char* type, const char* help,
            uint64_t value) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                  value, "\n");
}

}  // namespace

bool HttpShared::TryAdmit(int64_t max_connections) {
  if (connections_.fetch_add(1, std::memory_order_relaxed) >= max_connections) {
    connections_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void HttpShared::Release() { connections_.fetch_sub(1, std::memory_order_relaxed); }

std::string HttpShared::MetricsText() const {
  const HttpCounters& c = counters_;
  auto v = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  std::string out;
  Series(&out, "ringmail_http_connections", "gauge", "Open HTTP connections.",
         static_cast<uint64_t>(std::max<int64_t>(connections(), 0)));
  Series(&out, "ringmail_http_connections_accepted_total", "counter", "HTTP connections accepted.",
         v(c.connections_accepted));
  Series(&out, "ringmail_http_connections_refused_total", "counter",
         "HTTP connections refused by max_connections.", v(c.connections_refused));
  absl::StrAppend(&out,
                  "# HELP ringmail_http_responses_total HTTP responses by status class.\n"
                  "# TYPE ringmail_http_responses_total counter\n",
                  "ringmail_http_responses_total{class=\"2xx\"} ", v(c.responses_2xx), "\n",
                  "ringmail_http_responses_total{class=\"4xx\"} ", v(c.responses_4xx), "\n",
                  "ringmail_http_responses_total{class=\"5xx\"} ", v(c.responses_5xx), "\n");
  Series(&out, "ringmail_http_messages_injected_total", "counter",
         "Messages made durable through the injection API.", v(c.messages));
  Series(&out, "ringmail_http_recipients_injected_total", "counter",
         "Recipients of messages injected over HTTP.", v(c.recipients));
  Series(&out, "ringmail_http_message_bytes_injected_total", "counter",
         "Bytes of messages injected over HTTP.", v(c.message_bytes));
  Series(&out, "ringmail_http_commit_errors_total", "counter",
         "Injected messages whose spool commit failed.", v(c.commit_errors));
  return out;
}

HttpListener::HttpListener(core::Loop& loop, HttpShared& shared, spool::SpoolWriter& spool,
                           core::EventLog* log, std::shared_ptr<const HttpSettings> settings,
                           std::shared_ptr<const HttpHooks> hooks)
    : loop_(loop),
      shared_(shared),
      spool_(spool),
      log_(log),
      settings_(std::move(settings)),
      hooks_(std::move(hooks)),
      ids_(loop.index(), RandomSalt()) {
  auto br = core::BufferRing::Create(loop.ring(), kBufferGroup, kRecvBuffers, kRecvBufferBytes);
  RM_CHECK(br.ok()) << "http receive buffer ring: " << br.status();
  buffers_ = std::move(br).value();
  loop_.OnStop([this] {
    CloseAcceptors();
    std::vector<Connection*> all;
    for (auto& [id, c] : connections_) all.push_back(c.get());
    for (Connection* c : all) c->Abort();
  });
}

HttpListener::~HttpListener() {
  RM_CHECK(connections_.empty()) << "http listener destroyed with live connections";
  // Each Acceptor checks that its accept is no longer in flight and closes its socket.
}

absl::Status HttpListener::Listen(const std::vector<config::NetAddress>& addresses) {
  for (const config::NetAddress& address : addresses) {
    uint16_t port = 0;
    absl::StatusOr<int> fd = OpenListenSocket(address, kListenBacklog, "HTTP_Listener", &port);
    if (!fd.ok()) return fd.status();
    // Addresses come in the order of the config's Listen entries (HttpSettings::listen_tls).
    size_t index = acceptors_.size();
    const bool tls = index < settings_->listen_tls.size() && settings_->listen_tls[index];
    if (tls && settings_->tls_server == nullptr) {
      close(*fd);
      return absl::FailedPreconditionError(absl::StrCat(
          "HTTP_Listener: ", address.ToString(), " { tls = implicit } without a certificate"));
    }
    auto a = std::make_unique<core::Acceptor>(loop_, "http.accept");
    a->Bind<&HttpListener::AcceptDone>(this, tls);
    bound_ports_.push_back(port);
    a->Start(*fd);
    acceptors_.push_back(std::move(a));
  }
  return absl::OkStatus();
}

void HttpListener::AcceptDone(bool tls, core::Accepted a) {
  if (a.fd < 0) return;  // accept errors are not counted here
  const int fd = a.fd;
  std::string ip;
  uint16_t port = 0;
  if (!PeerOf(fd, &ip, &port)) {  // already gone
    close(fd);
    return;
  }
  const uint64_t id = next_connection_id_++;
  auto owned = std::make_unique<Connection>(*this, id, fd, ip, port, settings_, tls);
  Connection* c = owned.get();
  connections_.emplace(id, std::move(owned));
  if (shared_.TryAdmit(settings_->max_connections)) {
    shared_.counters().connections_accepted.fetch_add(1, std::memory_order_relaxed);
    c->set_admitted(true);
    c->Start();
    return;
  }
  shared_.counters().connections_refused.fetch_add(1, std::memory_order_relaxed);
  HttpResponse busy = JsonError(503, "too many connections; try again later");
  busy.headers.emplace_back("Retry-After", "1");
  c->Refuse(busy);
}

void HttpListener::UpdateSettings(std::shared_ptr<const HttpSettings> settings) {
  settings_ = std::move(settings);
}

InjectDecoder& HttpListener::decoder(uint64_t body_bytes_max) {
  if (decoder_ == nullptr || decoder_capacity_ < body_bytes_max) {
    decoder_ = std::make_unique<InjectDecoder>(body_bytes_max);
    decoder_capacity_ = body_bytes_max;
  }
  return *decoder_;
}

const std::string& HttpListener::DateHeader() {
  const absl::Time now = absl::Now();
  const uint64_t second = static_cast<uint64_t>(absl::ToUnixSeconds(now));
  if (second != date_second_ || date_.empty()) {
    date_second_ = second;
    date_ = HttpDate(second * 1000);
  }
  return date_;
}

void HttpListener::CallHook(Endpoint endpoint, uint64_t connection_id, uint64_t seq) {
  const bool metrics = endpoint == Endpoint::kMetrics;
  const std::function<void(HookReply)>* hook = nullptr;
  if (hooks_ != nullptr) hook = metrics ? &hooks_->metrics : &hooks_->queues;
  // The answer always comes back through this loop, never re-entering the caller, by a
  // post reserved now: a full inbox cannot drop it and leave the request unanswered.
  // The listener outlives its loop's last task (it is destroyed after the loop stopped, and
  // tasks still queued then are dropped unrun), so the raw pointer is safe.
  HttpListener* self = this;
  HttpShared* shared = &shared_;
  HookReply reply = [self, back = loop_.Reserve(), shared, metrics, connection_id,
                     seq](HookResponse r) mutable {
    if (metrics && r.status == 200) r.body.append(shared->MetricsText());
    (void)std::move(back).Post([self, connection_id, seq, r = std::move(r)]() mutable {
      self->HookAnswered(connection_id, seq, std::move(r));
    });
  };
  if (hook == nullptr || !*hook) {
    std::move(reply)(HookResponse{503, "application/json", "{\"error\":\"not available\"}\n"});
    return;
  }
  (*hook)(std::move(reply));
}

bool HttpListener::PlanOffLoop(InjectRequest& request, InjectContext& context,
                               std::shared_ptr<const HttpSettings> settings,
                               uint64_t connection_id, uint64_t seq) {
  if (hooks_ == nullptr || !hooks_->run_off_loop) return false;
  // What the job reads; handed back to the caller if the pool refuses the job.
  struct Input {
    InjectRequest request;
    InjectContext context;
    std::shared_ptr<const HttpSettings> settings;  // keeps the policy context points at
  };
  auto input = std::make_shared<Input>(
      Input{std::move(request), std::move(context), std::move(settings)});
  // As for hooks: the answer comes back by a post reserved now, and the listener outlives
  // its loop's last task.
  HttpListener* self = this;
  auto job = [self, back = loop_.Reserve(), input, connection_id, seq]() mutable {
    absl::StatusOr<InjectionPlan> plan = PlanInjection(input->request, input->context);
    (void)std::move(back).Post([self, connection_id, seq, plan = std::move(plan)]() mutable {
      self->PlanAnswered(connection_id, seq, std::move(plan));
    });
  };
  if (!hooks_->run_off_loop(std::move(job))) {
    request = std::move(input->request);
    context = std::move(input->context);
    return false;
  }
  return true;
}

void HttpListener::PlanAnswered(uint64_t connection_id, uint64_t seq,
                                absl::StatusOr<InjectionPlan> plan) {
  auto it = connections_.find(connection_id);
  if (it == connections_.end()) return;  // the connection has gone: the messages go too
  it->second->PlanDone(seq, std::move(plan));
}

void HttpListener::HookAnswered(uint64_t connection_id, uint64_t seq, HookResponse response) {
  auto it = connections_.find(connection_id);
  if (it == connections_.end()) return;  // the connection has gone
  it->second->HookDone(seq, std::move(response));
}

void HttpListener::ConnectionClosed(Connection* c) {
  if (c->admitted()) shared_.Release();
  connections_.erase(c->id());
  MaybeDrained();
}

void HttpListener::CloseAcceptors() {
  for (auto& a : acceptors_) a->Close();
}

void HttpListener::Drain(std::function<void()> drained) {
  draining_ = true;
  drained_ = std::move(drained);
  // Not only stop accepting: a client connecting now would sit in the accept queue,
  // unanswered, until the daemon exits; refused, it tries another node (or its load
  // balancer marks this one down) at once.
  for (auto& a : acceptors_) a->StopListening();
  std::vector<Connection*> all;
  for (auto& [id, c] : connections_) all.push_back(c.get());
  for (Connection* c : all) c->Shutdown();
  MaybeDrained();
}

void HttpListener::MaybeDrained() {
  if (!draining_ || !connections_.empty() || !drained_) return;
  auto done = std::move(drained_);
  drained_ = nullptr;
  done();
}

}  // namespace ringmail::listeners::http
