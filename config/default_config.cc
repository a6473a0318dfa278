// config/default_config.cc — the embedded default configuration text.
#include "config/default_config.h"

#include "config/generation.h"

namespace ringmail::config {
namespace {

constexpr std::string_view kDefaultConfig = R"conf(# ringmail embedded default configuration.
# Safe to run as an ordinary user from the source tree: everything lives under ./var,
# SMTP listens on loopback only and only loopback clients may relay.

spool_dir = "./var/spool"
log_dir   = "./var/log"

retry_interval     = 1m
max_retry_interval = 1h
message_expiration = 5d

ESMTP_Listener {
  max_connections        = 1000
  max_processings        = 172
  max_connections_per_ip = 100
  max_message_size       = 20MB
  max_recipients         = 100
  max_errors             = 10
  relay_hosts            = ( "127.0.0.0/8" "::1" )
  relay_domains          = ( )
  Listen "127.0.0.1:2525" { tls = "none" }
}

Control_Listener {
  Listen "./var/run/ringmail.sock" { }
}
)conf";

}  // namespace

std::string_view DefaultConfigText() { return kDefaultConfig; }

absl::StatusOr<std::shared_ptr<const Config>> LoadDefaultConfig() {
  return LoadConfigString(kDefaultConfig, kDefaultConfigName);
}

}  // namespace ringmail::config
