// config/config.h — the typed, immutable snapshot of a loaded configuration.
//
// What consumers read (ringmaild, listeners, delivery). Everything is resolved at load:
// defaults filled in, units converted (sizes in bytes as uint64_t, durations as
// absl::Duration), names checked, pool references canonicalised, addresses and CIDR blocks
// parsed, Domain values (and ESMTP_Listener's tls_handshake_timeout) inherited from the
// global ones. A Config is built once by the loader (config/generation.h), then shared
// read-only as std::shared_ptr<const Config> — any thread may read it without locking. The
// key names, types, defaults, ranges and live/restart rules are in the one schema table in
// config/schema.cc.
//
//   Config
//   |- global : GlobalOptions        spool_dir, log_dir, license, user, group, hostname,
//   |                                 postmaster, resolvers, dns_timeout, dns_cache_entries,
//   |                                 retry_interval, max_retry_interval, message_expiration,
//   |                                 completion_wait, pin_event_loops, delivery_pool,
//   |                                 maintainer_pool, remote_smtp_port, default_route,
//   |                                 max_outbound_connections, domain_max_outbound_connections,
//   |                                 max_deliveries_per_connection,
//   |                                 outbound_idle_timeout, outbound_tls,
//   |                                 tls_handshake_timeout (ESMTP_Listener inherits it),
//   |                                 smtp_*_timeout, spool_segment_size_bytes,
//   |                                 spool_segment_fill, spool_segment_recycle, log_level
//   |- eventloops   : vector<EventLoopPoolConfig>   `eventloop "NAME" { concurrency }`
//   |- thread_pools : vector<ThreadPoolConfig>      the 8 standard pools, then user pools
//   |- esmtp        : EsmtpListenerConfig           limits, relay rules, timeouts, TLS, listen[]
//   |- http         : optional<HttpListenerConfig>  present iff an HTTP_Listener scope exists
//   |- control      : ControlListenerConfig         control socket path(s)
//   |- domains      : map<domain, DomainConfig>     per-destination overrides (lower case)
//   `- default_domain : DomainConfig                what DomainFor() gives an unlisted domain
//
// The file may hold at most one ESMTP_Listener, one HTTP_Listener and one Control_Listener
// scope; each takes any number of `Listen` scopes. An ESMTP_Listener with no Listen (or no
// ESMTP_Listener at all) means no SMTP listener.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "config/address.h"

namespace ringmail::config {

// `concurrency = 6` or `concurrency = "75%"` (of the CPUs available at start).
struct ConcurrencySpec {
  enum class Kind : uint8_t { kCount, kPercent };
  Kind kind = Kind::kCount;
  int value = 1;
  friend bool operator==(const ConcurrencySpec&, const ConcurrencySpec&) = default;
};

enum class LogLevel : uint8_t { kDebug, kInfo, kNotice, kWarning, kError };
// What a listener does with a bare LF line ending in DATA: refuse the message (554) or
// accept it, normalising to CRLF.
enum class BareLf : uint8_t { kReject, kNormalize };
// How a new spool segment's space is made: spool/segment_writer.h SegmentFill, same order.
enum class SpoolSegmentFill : uint8_t { kZeros, kAllocate, kNone, kAuto };
// TLS on a listening socket: plain (STARTTLS offered when a certificate is configured) or
// implicit TLS from the first byte (SMTPS, HTTPS).
enum class ListenTls : uint8_t { kNone, kImplicit };
// TLS towards a destination: try STARTTLS, require it, require it with a verified
// certificate, or never use it.
enum class OutboundTls : uint8_t { kOpportunistic, kRequired, kVerify, kOff };

struct GlobalOptions {
  std::string spool_dir;
  std::string log_dir;
  std::string license;  // path of the license file; empty: unlicensed (concurrency 1)
  std::string user;     // drop privileges to this user after binding; empty: stay
  std::string group;
  std::string hostname;    // resolved: the system host name when the file leaves it empty
  std::string postmaster;  // resolved: "postmaster@<hostname>" when empty
  std::vector<NetAddress> resolvers;  // empty: /etc/resolv.conf
  absl::Duration dns_timeout;
  int64_t dns_cache_entries = 0;
  absl::Duration retry_interval;
  absl::Duration max_retry_interval;
  absl::Duration message_expiration;
  absl::Duration completion_wait;  // per loop turn: extra wait for more completions
  bool pin_event_loops = true;      // each loop thread on one CPU (core/loop_pool.h)
  std::string delivery_pool;       // canonical eventloop pool name; empty: the master loop
  std::string maintainer_pool;
  uint16_t remote_smtp_port = 25;
  std::vector<RouteHost> default_route;         // empty: MX routing
  int64_t max_outbound_connections = 0;         // all domains together
  int64_t domain_max_outbound_connections = 0;  // per domain unless its scope says otherwise
  int64_t max_deliveries_per_connection = 0;
  absl::Duration outbound_idle_timeout;  // an outbound connection with no work waits for more
  OutboundTls outbound_tls = OutboundTls::kOpportunistic;
  std::string tls_ca_file;  // outbound trust anchors added to the system CA store
  absl::Duration tls_handshake_timeout;  // inbound TLS handshake; ESMTP_Listener inherits it
  bool tls_crypto_offload = true;  // TLS crypto on OpenSSL's libcrypto (tls/crypto_offload.h)
  absl::Duration smtp_connect_timeout;  // the outbound client's RFC 5321 §4.5.3.2 timeouts
  absl::Duration smtp_greeting_timeout;
  absl::Duration smtp_command_timeout;
  absl::Duration smtp_data_init_timeout;
  absl::Duration smtp_data_block_timeout;
  absl::Duration smtp_data_term_timeout;
  uint64_t spool_segment_size_bytes = 0;
  SpoolSegmentFill spool_segment_fill = SpoolSegmentFill::kAuto;
  bool spool_segment_recycle = true;  // reuse drained segments' files (spool/group_commit.h)
  LogLevel log_level = LogLevel::kInfo;
};

struct EventLoopPoolConfig {
  std::string name;
  ConcurrencySpec concurrency;
};

struct ThreadPoolConfig {
  std::string name;         // canonical spelling (the standard one, or as first written)
  int64_t concurrency = 0;  // 0: jobs run inline on the submitting thread
  int64_t backlog = 0;
  uint64_t stack_size_bytes = 0;
  bool standard = false;  // one of the built-in pools
};

struct ListenConfig {
  NetAddress address;
  ListenTls tls = ListenTls::kNone;
};

struct EsmtpListenerConfig {
  std::string event_loop;  // canonical pool name; empty: the master loop
  std::string hostname;    // resolved: GlobalOptions::hostname when empty
  std::string banner;      // resolved: "<hostname> ESMTP ringmail" when empty
  int64_t max_connections = 0;
  int64_t max_processings = 0;
  int64_t max_connections_per_ip = 0;
  int64_t max_connection_rate_per_ip = 0;  // connections per minute; 0: unlimited
  uint64_t max_message_size_bytes = 0;
  int64_t max_recipients = 0;
  int64_t max_errors = 0;
  int64_t max_messages_per_connection = 0;
  int64_t max_hops = 0;  // Received: fields allowed in a message before ours (RFC 5321 §6.3)
  CidrList relay_hosts;
  std::vector<std::string> relay_domains;  // lower case
  BareLf bare_lf = BareLf::kReject;
  absl::Duration command_timeout;
  absl::Duration mail_timeout;
  absl::Duration rcpt_timeout;
  absl::Duration data_init_timeout;
  absl::Duration data_block_timeout;
  absl::Duration data_term_timeout;
  absl::Duration connection_timeout;  // whole-session cap
  absl::Duration tls_handshake_timeout;  // inherited from the global key unless set here
  bool require_tls = false;
  std::string tls_certificate;  // PEM paths; both or neither
  std::string tls_key;
  std::vector<ListenConfig> listen;
};

struct HttpListenerConfig {
  std::string event_loop;
  std::string auth_token;  // bearer token; required (the injection API is never open)
  int64_t max_connections = 0;
  uint64_t max_body_size_bytes = 0;
  uint64_t max_header_size_bytes = 0;
  absl::Duration idle_timeout;
  absl::Duration request_timeout;
  std::string tls_certificate;
  std::string tls_key;
  std::vector<ListenConfig> listen;
};

struct ControlListenerConfig {
  int64_t max_connections = 0;
  std::vector<std::string> socket_paths;  // Unix sockets; at least one
};

struct DomainConfig {
  std::string name;               // lower case; empty for Config::default_domain
  std::vector<RouteHost> routes;  // empty: GlobalOptions::default_route, else MX
  int64_t max_outbound_connections = 0;
  int64_t max_deliveries_per_connection = 0;
  absl::Duration outbound_idle_timeout;  // 0: QUIT as soon as the domain has no work
  uint16_t remote_smtp_port = 25;
  OutboundTls tls = OutboundTls::kOpportunistic;
};

struct Config {
  std::string source;  // the file (or string name) it was loaded from
  GlobalOptions global;
  std::vector<EventLoopPoolConfig> eventloops;
  std::vector<ThreadPoolConfig> thread_pools;
  EsmtpListenerConfig esmtp;
  std::optional<HttpListenerConfig> http;
  ControlListenerConfig control;
  std::map<std::string, DomainConfig, std::less<>> domains;  // key: lower-case name
  DomainConfig default_domain;

  // The scope for `domain` (any case), or default_domain.
  const DomainConfig& DomainFor(std::string_view domain) const;
  // Case-insensitive lookups; nullptr when absent.
  const EventLoopPoolConfig* FindEventLoop(std::string_view name) const;
  const ThreadPoolConfig* FindThreadPool(std::string_view name) const;
};

}  // namespace ringmail::config
