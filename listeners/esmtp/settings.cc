#include "listeners/esmtp/settings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace ringmail::listeners::esmtp {
namespace {

uint64_t Ms(absl::Duration d) {
  int64_t ms = absl::ToInt64Milliseconds(d);
  return ms > 0 ? static_cast<uint64_t>(ms) : 0;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Settings>> Settings::FromConfig(
    std::shared_ptr<const config::Config> config, int loops) {
  const config::EsmtpListenerConfig& e = config->esmtp;
  PolicyOptions po;
  for (const config::Cidr& c : e.relay_hosts.blocks) po.relay_hosts.push_back(c.ToString());
  po.relay_domains = e.relay_domains;
  po.bare_lf = e.bare_lf == config::BareLf::kNormalize ? BareLineEndings::kNormalize
                                                       : BareLineEndings::kReject;
  po.require_tls = e.require_tls;
  std::shared_ptr<const tls::TlsContext> tls_context;
  if (!e.tls_certificate.empty() || !e.tls_key.empty()) {
    tls::TlsContextOptions to;
    to.role = tls::TlsRole::kServer;
    to.certificate_chain_file = e.tls_certificate;
    to.private_key_file = e.tls_key;
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ctx = tls::TlsContext::Create(to);
    if (!ctx.ok()) {
      return absl::Status(ctx.status().code(),
                          absl::StrCat("ESMTP_Listener: ", ctx.status().message()));
    }
    tls_context = *std::move(ctx);
  }
  po.starttls_offered = tls_context != nullptr;
  RM_ASSIGN_OR_RETURN(Policy policy, Policy::Create(po));
  auto s = std::make_shared<Settings>(std::move(config), std::move(policy));
  s->tls_context = std::move(tls_context);
  const config::EsmtpListenerConfig& ec = s->config->esmtp;
  s->limits.max_message_size_bytes = ec.max_message_size_bytes;
  s->limits.max_recipients = static_cast<uint32_t>(std::max<int64_t>(ec.max_recipients, 1));
  s->limits.max_errors = static_cast<uint32_t>(std::max<int64_t>(ec.max_errors, 1));
  s->limits.max_hops = static_cast<uint32_t>(std::clamp<int64_t>(ec.max_hops, 1, UINT32_MAX));
  s->limits.max_messages_per_connection = static_cast<uint32_t>(
      std::clamp<int64_t>(ec.max_messages_per_connection, 0, UINT32_MAX));
  s->hostname = ec.hostname;
  s->banner = ec.banner;
  s->max_connections = ec.max_connections;
  s->max_connections_per_ip = ec.max_connections_per_ip;
  s->max_connection_rate_per_ip = ec.max_connection_rate_per_ip;
  const int64_t n = std::max(loops, 1);
  s->processings_per_loop = std::max<int64_t>(1, (ec.max_processings + n - 1) / n);
  s->command_timeout_ms = Ms(ec.command_timeout);
  s->mail_timeout_ms = Ms(ec.mail_timeout);
  s->rcpt_timeout_ms = Ms(ec.rcpt_timeout);
  s->data_init_timeout_ms = Ms(ec.data_init_timeout);
  s->data_block_timeout_ms = Ms(ec.data_block_timeout);
  s->data_term_timeout_ms = Ms(ec.data_term_timeout);
  s->server_timeout_ms = std::max<uint64_t>(Ms(ec.data_term_timeout), 60'000);
  s->connection_timeout_ms = Ms(ec.connection_timeout);
  s->tls_handshake_timeout_ms = Ms(ec.tls_handshake_timeout);
  return std::shared_ptr<const Settings>(std::move(s));
}

}  // namespace ringmail::listeners::esmtp
