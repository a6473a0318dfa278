#include "tools/ringmaild/config_check.h"

#include "absl/strings/str_cat.h"
#include "delivery/engine.h"
#include "listeners/esmtp/settings.h"
#include "listeners/http/settings.h"
#include "tls/context.h"

namespace ringmail::daemon {

namespace {

absl::Status Build(const std::shared_ptr<const config::Config>& config) {
  // One loop: the pool's size only splits max_processings, which FromConfig does not refuse.
  auto esmtp = listeners::esmtp::Settings::FromConfig(config, 1);
  if (!esmtp.ok()) return esmtp.status();
  if (config->http.has_value()) {
    auto http = listeners::http::HttpSettings::FromConfig(config);
    if (!http.ok()) return http.status();
  }
  auto tls_client = delivery::MakeOutboundTlsContext(config->global);
  if (!tls_client.ok()) {
    return absl::Status(tls_client.status().code(),
                        absl::StrCat("outbound TLS: ", tls_client.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckListenersAndTls(const std::shared_ptr<const config::Config>& config) {
  absl::Status s = Build(config);
  // Loading the keys (and the self-test handshake) filled this thread's ECC cache, which
  // wolfSSL keeps per thread: freed here, as after a reload, not left to the thread's end.
  tls::ReleaseThreadEccCache();
  return s;
}

}  // namespace ringmail::daemon
