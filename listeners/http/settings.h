// listeners/http/settings.h — what the HTTP listener needs from one config generation,
// built once per generation and shared read-only by every loop of the listener's pool.
// A connection keeps the settings it was accepted with; a reload hands new ones to the
// listeners (new connections pick them up).
//
// The relay policy is the ESMTP_Listener's (relay_hosts, relay_domains): injecting over
// HTTP never relays where SMTP would not. FromConfig refuses what the listener must not
// start with: no HTTP_Listener scope, an empty auth_token (issue #9: never an open
// injection API, above all on a non-loopback address), or implicit TLS without a usable
// certificate and key. FromConfig reads those files (blocking: the master calls it at start
// and on reload, never a loop); connections accepted afterwards handshake with the new
// certificate, those already open keep theirs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "config/config.h"
#include "listeners/esmtp/policy.h"
#include "listeners/http/request_parser.h"
#include "tls/context.h"

namespace ringmail::listeners::http {

// The bytes of built messages one loop's connections may hold at once, waiting for the
// spool, in requests' worth (request_bytes_max): beyond it a request gets 503 and
// Retry-After (listeners/http/inject_budget.h).
inline constexpr uint64_t kInFlightRequestsPerLoop = 4;

struct HttpSettings {
  HttpSettings(std::shared_ptr<const config::Config> c, esmtp::Policy p)
      : config(std::move(c)), policy(std::move(p)) {}

  std::shared_ptr<const config::Config> config;  // the generation this came from
  esmtp::Policy policy;
  std::string auth_token;
  std::string hostname;
  ParserLimits parser;
  int64_t max_connections = 0;  // whole daemon
  uint64_t idle_timeout_ms = 0;
  uint64_t request_timeout_ms = 0;
  uint64_t tls_handshake_timeout_ms = 0;  // HTTPS: from accept to the handshake's end
  size_t max_recipients = 0;       // per request (the ESMTP_Listener's max_recipients)
  uint64_t message_bytes_max = 0;  // per built message (the ESMTP max_message_size)
  // All messages of one request (templates multiply a body): what one request or one
  // message may be anyway, max(max_body_size, max_message_size), so that a small templated
  // request cannot make more than a large plain one (session 11's audit: 56 KB with 100
  // templated recipients made 500 MB of messages). A bigger batch is several requests.
  uint64_t request_bytes_max = 0;
  // HTTPS: the server context (tls_certificate + tls_key), null when none is configured,
  // and for each Listen entry, in the config's order (the order HttpListener::Listen gets
  // the addresses in), whether it speaks TLS from the first byte.
  std::shared_ptr<const tls::TlsContext> tls_server;
  std::vector<bool> listen_tls;

  static absl::StatusOr<std::shared_ptr<const HttpSettings>> FromConfig(
      std::shared_ptr<const config::Config> config);
};

}  // namespace ringmail::listeners::http
