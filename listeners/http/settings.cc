#include "listeners/http/settings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace ringmail::listeners::http {
namespace {

uint64_t Ms(absl::Duration d) {
  int64_t ms = absl::ToInt64Milliseconds(d);
  return ms > 0 ? static_cast<uint64_t>(ms) : 0;
}

bool Loopback(const config::NetAddress& a) {
  if (a.ip.is_v4()) return a.ip.bytes[0] == 127;
  for (size_t i = 0; i < 15; ++i) {
    if (a.ip.bytes[i] != 0) return false;
  }
  return a.ip.bytes[15] == 1;  // ::1
}

}  // namespace

absl::StatusOr<std::shared_ptr<const HttpSettings>> HttpSettings::FromConfig(
    std::shared_ptr<const config::Config> config) {
  if (!config->http) return absl::FailedPreconditionError("no HTTP_Listener in the config");
  const config::HttpListenerConfig& h = *config->http;
  for (const config::ListenConfig& l : h.listen) {
    if (h.auth_token.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "HTTP_Listener: refusing to listen on ", l.address.ToString(),
          Loopback(l.address) ? "" : " (not a loopback address)", " without auth_token"));
    }
    if (l.tls == config::ListenTls::kImplicit &&
        (h.tls_certificate.empty() || h.tls_key.empty())) {
      return absl::FailedPreconditionError(
          absl::StrCat("HTTP_Listener: Listen ", l.address.ToString(),
                       " { tls = implicit } needs tls_certificate and tls_key"));
    }
  }
  std::shared_ptr<const tls::TlsContext> tls_server;
  if (!h.tls_certificate.empty() || !h.tls_key.empty()) {
    tls::TlsContextOptions to;
    to.role = tls::TlsRole::kServer;
    to.certificate_chain_file = h.tls_certificate;
    to.private_key_file = h.tls_key;
    auto ctx = tls::TlsContext::Create(to);
    if (!ctx.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("HTTP_Listener: ", ctx.status().message()));
    }
    tls_server = *std::move(ctx);
  }
  const config::EsmtpListenerConfig& e = config->esmtp;
  esmtp::PolicyOptions po;
  for (const config::Cidr& c : e.relay_hosts.blocks) po.relay_hosts.push_back(c.ToString());
  po.relay_domains = e.relay_domains;
  RM_ASSIGN_OR_RETURN(esmtp::Policy policy, esmtp::Policy::Create(po));
  auto s = std::make_shared<HttpSettings>(config, std::move(policy));
  s->auth_token = h.auth_token;
  s->hostname = e.hostname.empty() ? config->global.hostname : e.hostname;
  s->parser.header_bytes_max = h.max_header_size_bytes;
  s->parser.header_count_max = kHeaderCountMax;
  s->parser.body_bytes_max = h.max_body_size_bytes;
  s->max_connections = h.max_connections;
  s->idle_timeout_ms = Ms(h.idle_timeout);
  s->request_timeout_ms = Ms(h.request_timeout);
  s->tls_handshake_timeout_ms = Ms(config->global.tls_handshake_timeout);
  s->max_recipients = static_cast<size_t>(std::max<int64_t>(e.max_recipients, 1));
  s->message_bytes_max =
      e.max_message_size_bytes > 0 ? e.max_message_size_bytes : h.max_body_size_bytes * 2;
  s->request_bytes_max = std::max(s->parser.body_bytes_max, s->message_bytes_max);
  s->tls_server = std::move(tls_server);
  for (const config::ListenConfig& l : h.listen) {
    s->listen_tls.push_back(l.tls == config::ListenTls::kImplicit);
  }
  return std::shared_ptr<const HttpSettings>(std::move(s));
}

}  // namespace ringmail::listeners::http
