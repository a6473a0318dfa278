// listeners/esmtp/settings.h — what an ESMTP listener needs from one config generation,
// built once per generation (not per connection) and shared read-only by every loop.
//
// A session pins the Settings it started with for its whole life (DESIGN.md "Config": a
// session keeps the generation it started with); a reload builds a new Settings and hands it
// to every loop of the pool, where new connections pick it up.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "listeners/esmtp/policy.h"
#include "listeners/esmtp/session_machine.h"
#include "tls/context.h"

namespace ringmail::listeners::esmtp {

struct Settings {
  Settings(std::shared_ptr<const config::Config> c, Policy p)
      : config(std::move(c)), policy(std::move(p)) {}

  std::shared_ptr<const config::Config> config;  // the generation this came from
  SessionLimits limits;
  Policy policy;
  std::string hostname;
  std::string banner;                  // the greeting's text after "220 "
  int64_t max_connections = 0;         // whole daemon (all loops)
  int64_t max_connections_per_ip = 0;  // whole daemon
  int64_t max_connection_rate_per_ip = 0;  // new connections a minute, whole daemon; 0: any
  int64_t processings_per_loop = 0;    // max_processings spread over the pool's loops
  uint64_t command_timeout_ms = 0;    // awaiting HELO/EHLO or the next BDAT
  uint64_t mail_timeout_ms = 0;       // awaiting MAIL
  uint64_t rcpt_timeout_ms = 0;       // awaiting RCPT or DATA/BDAT in a transaction
  uint64_t data_init_timeout_ms = 0;  // after 354, until the first body byte
  uint64_t data_block_timeout_ms = 0;
  uint64_t data_term_timeout_ms = 0;  // a whole DATA body (or BDAT chunk), however it trickles
  uint64_t server_timeout_ms = 0;      // waiting on us (slot, spool): bounds a stuck commit
  uint64_t connection_timeout_ms = 0;  // whole session; 0: none
  // TLS: the server context built from tls_certificate/tls_key (null: no TLS; STARTTLS is
  // then not offered). Built by FromConfig — which therefore reads files: call it where
  // the config file itself is read, never per connection. A reload builds a new one.
  std::shared_ptr<const tls::TlsContext> tls_context;
  // From STARTTLS (or accept, for implicit TLS) to an established session, fixed when the
  // handshake starts (trickled bytes do not extend it): ESMTP_Listener's
  // tls_handshake_timeout, inherited from the global key (default 1m). Live: a reload's
  // Settings apply to handshakes of connections accepted after it.
  uint64_t tls_handshake_timeout_ms = 0;

  // `loops` is how many loops serve the listener (max_processings is split over them).
  static absl::StatusOr<std::shared_ptr<const Settings>> FromConfig(
      std::shared_ptr<const config::Config> config, int loops);
};

}  // namespace ringmail::listeners::esmtp
