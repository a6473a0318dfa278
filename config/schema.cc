// config/schema.cc — THE table of configuration keys and scopes, and name lookups.
//
// To add a key: add the field to the struct in config/config.h and one line below. The
// template checks at compile time that the field belongs to the scope's struct and that its
// C++ type fits the key's type; tests check that every default parses and lies in range.
#include "config/schema.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

// ---- binding a key to a struct field ------------------------------------------------------

template <auto kMember>
struct Member;
template <typename S, typename T, T S::*kMember>
struct Member<kMember> {
  using Struct = S;
  using Field = T;
};

template <ScopeKind>
struct ScopeStruct;
template <>
struct ScopeStruct<ScopeKind::kGlobal> {
  using Type = GlobalOptions;
};
template <>
struct ScopeStruct<ScopeKind::kEventLoop> {
  using Type = EventLoopPoolConfig;
};
template <>
struct ScopeStruct<ScopeKind::kThreadPool> {
  using Type = ThreadPoolConfig;
};
template <>
struct ScopeStruct<ScopeKind::kEsmtpListener> {
  using Type = EsmtpListenerConfig;
};
template <>
struct ScopeStruct<ScopeKind::kEsmtpListen> {
  using Type = ListenConfig;
};
template <>
struct ScopeStruct<ScopeKind::kHttpListener> {
  using Type = HttpListenerConfig;
};
template <>
struct ScopeStruct<ScopeKind::kHttpListen> {
  using Type = ListenConfig;
};
template <>
struct ScopeStruct<ScopeKind::kControlListener> {
  using Type = ControlListenerConfig;
};
template <>
struct ScopeStruct<ScopeKind::kDomain> {
  using Type = DomainConfig;
};

template <ValueType kType, typename T>
constexpr bool Fits() {
  switch (kType) {
    case ValueType::kString:
      return std::is_same_v<T, std::string>;
    case ValueType::kInt:
      return std::is_integral_v<T> && !std::is_same_v<T, bool>;
    case ValueType::kSize:
      return std::is_same_v<T, uint64_t>;
    case ValueType::kDuration:
      return std::is_same_v<T, absl::Duration>;
    case ValueType::kBool:
      return std::is_same_v<T, bool>;
    case ValueType::kPercentOrInt:
      return std::is_same_v<T, ConcurrencySpec>;
    case ValueType::kEnum:
      return std::is_enum_v<T>;
    case ValueType::kStringList:
    case ValueType::kDomainList:
      return std::is_same_v<T, std::vector<std::string>>;
    case ValueType::kCidrList:
      return std::is_same_v<T, CidrList>;
    case ValueType::kAddressList:
      return std::is_same_v<T, std::vector<NetAddress>>;
    case ValueType::kRouteList:
      return std::is_same_v<T, std::vector<RouteHost>>;
  }
  return false;
}

template <auto kMember>
void StoreField(void* object, TypedValue value) {
  using M = Member<kMember>;
  using T = typename M::Field;
  T& field = static_cast<typename M::Struct*>(object)->*kMember;
  if constexpr (std::is_same_v<T, bool>) {
    field = std::get<bool>(value);
  } else if constexpr (std::is_enum_v<T> || std::is_integral_v<T>) {
    field = static_cast<T>(std::get<int64_t>(value));
  } else if constexpr (std::is_same_v<T, absl::Duration>) {
    field = absl::Microseconds(std::get<int64_t>(value));
  } else {
    field = std::get<T>(std::move(value));
  }
}

template <auto kMember>
TypedValue LoadField(const void* object) {
  using M = Member<kMember>;
  using T = typename M::Field;
  const T& field = static_cast<const typename M::Struct*>(object)->*kMember;
  if constexpr (std::is_same_v<T, bool>) {
    return field;
  } else if constexpr (std::is_enum_v<T> || std::is_integral_v<T>) {
    return static_cast<int64_t>(field);
  } else if constexpr (std::is_same_v<T, absl::Duration>) {
    return absl::ToInt64Microseconds(field);
  } else {
    return field;
  }
}

template <ScopeKind kScope, ValueType kType, auto kMember>
constexpr KeySpec Key(std::string_view name, std::string_view default_text, int64_t min,
                      int64_t max, Apply apply, std::string_view help,
                      std::string_view choices = {}, std::string_view inherit = {}) {
  using M = Member<kMember>;
  static_assert(std::is_same_v<typename M::Struct, typename ScopeStruct<kScope>::Type>,
                "key bound to a field of another scope's struct");
  static_assert(Fits<kType, typename M::Field>(), "field type does not fit the key type");
  return KeySpec{kScope,
                 name,
                 kType,
                 default_text,
                 min,
                 max,
                 apply,
                 choices,
                 inherit,
                 help,
                 &StoreField<kMember>,
                 &LoadField<kMember>};
}

// ---- units for ranges ----------------------------------------------------------------------

constexpr int64_t Ms(int64_t n) { return n * 1000; }
constexpr int64_t Sec(int64_t n) { return n * 1000 * 1000; }
constexpr int64_t Min(int64_t n) { return Sec(60 * n); }
constexpr int64_t Hours(int64_t n) { return Min(60 * n); }
constexpr int64_t Days(int64_t n) { return Hours(24 * n); }
constexpr int64_t KiB(int64_t n) { return n << 10; }
constexpr int64_t MiB(int64_t n) { return n << 20; }
constexpr int64_t GiB(int64_t n) { return n << 30; }

constexpr ScopeKind kG = ScopeKind::kGlobal;
constexpr ScopeKind kLoop = ScopeKind::kEventLoop;
constexpr ScopeKind kPool = ScopeKind::kThreadPool;
constexpr ScopeKind kSmtp = ScopeKind::kEsmtpListener;
constexpr ScopeKind kSmtpListen = ScopeKind::kEsmtpListen;
constexpr ScopeKind kHttp = ScopeKind::kHttpListener;
constexpr ScopeKind kHttpListen = ScopeKind::kHttpListen;
constexpr ScopeKind kCtl = ScopeKind::kControlListener;
constexpr ScopeKind kDom = ScopeKind::kDomain;
constexpr Apply kLive = Apply::kLive;
constexpr Apply kRestart = Apply::kRestart;
using VT = ValueType;
using G = GlobalOptions;
using E = EsmtpListenerConfig;
using H = HttpListenerConfig;
using D = DomainConfig;

constexpr std::string_view kTlsOut = "opportunistic|required|verify|off";
constexpr int64_t kBig = 1'000'000;

// clang-format off
constexpr KeySpec kKeys[] = {
    // ---- global ----
    Key<kG, VT::kString, &G::spool_dir>("spool_dir", "\"./var/spool\"", 0, 0, kRestart,
        "folder of the spool segments"),
    Key<kG, VT::kString, &G::log_dir>("log_dir", "\"./var/log\"", 0, 0, kRestart,
        "folder of the JSON event logs"),
    Key<kG, VT::kString, &G::license>("license", "\"\"", 0, 0, kRestart,
        "license file; empty: unlicensed, one event loop"),
    Key<kG, VT::kString, &G::user>("user", "\"\"", 0, 0, kRestart,
        "user to run as after binding; empty: do not change"),
    Key<kG, VT::kString, &G::group>("group", "\"\"", 0, 0, kRestart,
        "group to run as; empty: the user's group"),
    Key<kG, VT::kString, &G::hostname>("hostname", "\"\"", 0, 0, kLive,
        "name used in greetings, Received: and bounces; empty: the system host name"),
    Key<kG, VT::kString, &G::postmaster>("postmaster", "\"\"", 0, 0, kLive,
        "sender of bounces; empty: postmaster@<hostname>"),
    Key<kG, VT::kAddressList, &G::resolvers>("resolvers", "( )", 0, 0, kRestart,
        "DNS servers IP[:PORT]; empty: /etc/resolv.conf"),
    Key<kG, VT::kDuration, &G::dns_timeout>("dns_timeout", "5s", Ms(100), Min(1), kRestart,
        "per DNS query attempt"),
    Key<kG, VT::kInt, &G::dns_cache_entries>("dns_cache_entries", "10000", 0, 10 * kBig,
        kRestart, "per-loop DNS cache capacity; 0: no cache"),
    Key<kG, VT::kDuration, &G::retry_interval>("retry_interval", "1m", Sec(1), Days(1), kLive,
        "first retry delay after a temporary failure; doubles each attempt"),
    Key<kG, VT::kDuration, &G::max_retry_interval>("max_retry_interval", "1h", Sec(1), Days(30),
        kLive, "cap of the growing retry delay"),
    Key<kG, VT::kDuration, &G::message_expiration>("message_expiration", "5d", Min(1), Days(90),
        kLive, "age at which undelivered recipients bounce"),
    Key<kG, VT::kDuration, &G::completion_wait>("completion_wait", "0", 0, Ms(100), kRestart,
        "per loop turn, extra wait for more completions to batch; 0: none"),
    Key<kG, VT::kBool, &G::pin_event_loops>("pin_event_loops", "true", 0, 0, kRestart,
        "pin each event loop thread to one CPU; false leaves loops, and the io-wq workers "
        "doing their spool writes and syncs (which share a pinned loop's CPU), to the "
        "scheduler"),
    Key<kG, VT::kString, &G::delivery_pool>("delivery_pool", "\"\"", 0, 0, kRestart,
        "eventloop pool owning domains and outbound sessions; empty: master loop"),
    Key<kG, VT::kString, &G::maintainer_pool>("maintainer_pool", "\"\"", 0, 0, kRestart,
        "names an eventloop pool (checked); selects nothing yet: queue maintenance (retries, "
        "compaction, unlink retries) runs on the loop that owns each queue and spool"),
    Key<kG, VT::kInt, &G::remote_smtp_port>("remote_smtp_port", "25", 1, 65535, kLive,
        "port of remote MTAs"),
    Key<kG, VT::kRouteList, &G::default_route>("default_route", "\"\"", 0, 0, kLive,
        "smarthost(s) for domains without routes; empty: MX"),
    Key<kG, VT::kInt, &G::max_outbound_connections>("max_outbound_connections", "2000", 1, kBig,
        kLive, "outbound connections, all domains together"),
    Key<kG, VT::kInt, &G::domain_max_outbound_connections>("domain_max_outbound_connections",
        "20", 1, 100000, kLive, "outbound connections per domain (Domain scopes may override)"),
    Key<kG, VT::kInt, &G::max_deliveries_per_connection>("max_deliveries_per_connection", "100",
        1, 100000, kLive, "messages sent over one outbound connection before it is closed"),
    Key<kG, VT::kDuration, &G::outbound_idle_timeout>("outbound_idle_timeout", "2s", 0, Min(5),
        kLive, "outbound connection with no work waits this long for more; 0: QUIT at once"),
    Key<kG, VT::kEnum, &G::outbound_tls>("outbound_tls", "opportunistic", 0, 0, kLive,
        "STARTTLS towards remote MTAs", kTlsOut),
    Key<kG, VT::kString, &G::tls_ca_file>("tls_ca_file", "\"\"", 0, 0, kLive,
        "outbound: PEM trust anchors besides the system CA store (tls = \"verify\")"),
    Key<kG, VT::kDuration, &G::tls_handshake_timeout>("tls_handshake_timeout", "1m", Sec(1),
        Min(10), kLive, "inbound: a TLS handshake (STARTTLS or implicit), start to end; "
        "bytes trickled in do not extend it (ESMTP_Listener may override)"),
    Key<kG, VT::kBool, &G::tls_crypto_offload>("tls_crypto_offload", "true", 0, 0, kRestart,
        "every TLS context (inbound, outbound, HTTPS) runs AES-GCM, P-256/P-384 ECDH and ECDSA "
        "and X25519 on OpenSSL's libcrypto (AES-NI, assembly) and prefers AES-GCM; false: "
        "wolfSSL's own code only, ChaCha20-Poly1305 first"),
    Key<kG, VT::kDuration, &G::smtp_connect_timeout>("smtp_connect_timeout", "30s", Sec(1),
        Min(10), kLive, "outbound TCP connect"),
    Key<kG, VT::kDuration, &G::smtp_greeting_timeout>("smtp_greeting_timeout", "5m", Sec(1),
        Hours(1), kLive, "outbound: wait for the 220 greeting (RFC 5321 4.5.3.2.1)"),
    Key<kG, VT::kDuration, &G::smtp_command_timeout>("smtp_command_timeout", "5m", Sec(1),
        Hours(1), kLive, "outbound: reply to EHLO/MAIL/RCPT (4.5.3.2.2-3)"),
    Key<kG, VT::kDuration, &G::smtp_data_init_timeout>("smtp_data_init_timeout", "2m", Sec(1),
        Hours(1), kLive, "outbound: 354 after DATA (4.5.3.2.4)"),
    Key<kG, VT::kDuration, &G::smtp_data_block_timeout>("smtp_data_block_timeout", "3m", Sec(1),
        Hours(1), kLive, "outbound: each send of the body (4.5.3.2.5)"),
    Key<kG, VT::kDuration, &G::smtp_data_term_timeout>("smtp_data_term_timeout", "10m", Sec(1),
        Hours(1), kLive, "outbound: reply to the final dot (4.5.3.2.6)"),
    Key<kG, VT::kSize, &G::spool_segment_size_bytes>("spool_segment_size", "64MB", MiB(1),
        GiB(4), kRestart, "preallocated size of one spool segment"),
    Key<kG, VT::kEnum, &G::spool_segment_fill>("spool_segment_fill", "auto", 0, 0, kRestart,
        "new segments: zeros over fallocated space (small appends sync fastest), fallocate "
        "only (copy-on-write filesystems), neither, or auto: zeros while recent batches "
        "average under 128 KiB, fallocate only above", "zeros|allocate|none|auto"),
    Key<kG, VT::kBool, &G::spool_segment_recycle>("spool_segment_recycle", "true", 0, 0,
        kRestart, "reuse a drained segment's file as the next segment instead of unlinking "
        "it and writing a new one"),
    Key<kG, VT::kEnum, &G::log_level>("log_level", "info", 0, 0, kLive,
        "least severe event logged", "debug|info|notice|warning|error"),

    // ---- eventloop "NAME" ----
    Key<kLoop, VT::kPercentOrInt, &EventLoopPoolConfig::concurrency>("concurrency", "1", 1, 1024,
        kRestart, "loops in the pool: a count, or \"P%\" of the available CPUs (at least 1)"),

    // ---- ThreadPool "NAME" ----
    Key<kPool, VT::kInt, &ThreadPoolConfig::concurrency>("Concurrency", "1", 0, 1024, kLive,
        "worker threads; 0: jobs run inline"),
    Key<kPool, VT::kInt, &ThreadPoolConfig::backlog>("Backlog", "10000", 1, 262144, kRestart,
        "jobs queued before producers brake"),
    Key<kPool, VT::kSize, &ThreadPoolConfig::stack_size_bytes>("Stack_Size", "256KB", KiB(64),
        GiB(1), kRestart, "worker thread stack"),

    // ---- ESMTP_Listener ----
    Key<kSmtp, VT::kString, &E::event_loop>("event_loop", "\"\"", 0, 0, kRestart,
        "eventloop pool whose loops accept; empty: the master loop"),
    Key<kSmtp, VT::kString, &E::hostname>("hostname", "\"\"", 0, 0, kLive,
        "name in the greeting and EHLO reply; empty: the global hostname"),
    Key<kSmtp, VT::kString, &E::banner>("banner", "\"\"", 0, 0, kLive,
        "greeting text after 220; empty: \"<hostname> ESMTP ringmail\""),
    Key<kSmtp, VT::kInt, &E::max_connections>("max_connections", "1000", 1, kBig, kLive,
        "connections at once; the excess gets 421 4.3.2"),
    Key<kSmtp, VT::kInt, &E::max_processings>("max_processings", "172", 1, kBig, kLive,
        "transactions in progress at once; the excess waits"),
    Key<kSmtp, VT::kInt, &E::max_connections_per_ip>("max_connections_per_ip", "100", 1, kBig,
        kLive, "connections at once from one client address"),
    Key<kSmtp, VT::kInt, &E::max_connection_rate_per_ip>("max_connection_rate_per_ip", "0", 0,
        kBig, kLive, "new connections per minute from one address; 0: unlimited"),
    // At most 960MB: a spool record holds 1GB with its envelope and trace (spool/record.h).
    Key<kSmtp, VT::kSize, &E::max_message_size_bytes>("max_message_size", "20MB", KiB(1),
        MiB(960), kLive, "SIZE limit; larger messages get 552"),
    Key<kSmtp, VT::kInt, &E::max_recipients>("max_recipients", "100", 1, 100000, kLive,
        "RCPT per transaction; the excess gets 452"),
    Key<kSmtp, VT::kInt, &E::max_errors>("max_errors", "10", 1, 1000, kLive,
        "error replies before the session is closed with 421"),
    Key<kSmtp, VT::kInt, &E::max_hops>("max_hops", "100", 10, 1000, kLive,
        "Received: fields a message may already carry; more is a mail loop: 554 5.4.6"),
    Key<kSmtp, VT::kInt, &E::max_messages_per_connection>("max_messages_per_connection", "0",
        0, kBig, kLive, "MAIL commands per session; then 421 4.7.0 and close; 0: unlimited"),
    Key<kSmtp, VT::kCidrList, &E::relay_hosts>("relay_hosts", "( \"127.0.0.0/8\" \"::1\" )", 0, 0,
        kLive, "clients allowed to relay to any domain"),
    Key<kSmtp, VT::kDomainList, &E::relay_domains>("relay_domains", "( )", 0, 0, kLive,
        "recipient domains accepted from anyone"),
    Key<kSmtp, VT::kEnum, &E::bare_lf>("bare_lf", "reject", 0, 0, kLive,
        "bare LF in DATA: refuse the message, or normalise to CRLF", "reject|normalize"),
    Key<kSmtp, VT::kDuration, &E::command_timeout>("command_timeout", "5m", Sec(1), Hours(1),
        kLive, "wait for the next command (RFC 5321 4.5.3.2.7)"),
    Key<kSmtp, VT::kDuration, &E::mail_timeout>("mail_timeout", "5m", Sec(1), Hours(1), kLive,
        "wait for MAIL after the greeting or a transaction"),
    Key<kSmtp, VT::kDuration, &E::rcpt_timeout>("rcpt_timeout", "5m", Sec(1), Hours(1), kLive,
        "wait for RCPT or DATA inside a transaction"),
    Key<kSmtp, VT::kDuration, &E::data_init_timeout>("data_init_timeout", "2m", Sec(1), Hours(1),
        kLive, "wait for the first body bytes after 354"),
    Key<kSmtp, VT::kDuration, &E::data_block_timeout>("data_block_timeout", "3m", Sec(1),
        Hours(1), kLive, "wait between body reads"),
    Key<kSmtp, VT::kDuration, &E::data_term_timeout>("data_term_timeout", "10m", Sec(1), Hours(1),
        kLive, "budget for a whole body up to the final dot"),
    Key<kSmtp, VT::kDuration, &E::connection_timeout>("connection_timeout", "1h", Min(1),
        Days(1), kLive, "cap on one session's lifetime"),
    Key<kSmtp, VT::kDuration, &E::tls_handshake_timeout>("tls_handshake_timeout", "", Sec(1),
        Min(10), kLive, "from STARTTLS (or accept, implicit TLS) to an established session",
        {}, "tls_handshake_timeout"),
    Key<kSmtp, VT::kBool, &E::require_tls>("require_tls", "false", 0, 0, kLive,
        "refuse MAIL before STARTTLS (530 5.7.0)"),
    Key<kSmtp, VT::kString, &E::tls_certificate>("tls_certificate", "\"\"", 0, 0, kLive,
        "PEM certificate chain for STARTTLS / implicit TLS; re-read on reload"),
    Key<kSmtp, VT::kString, &E::tls_key>("tls_key", "\"\"", 0, 0, kLive, "PEM private key"),
    Key<kSmtpListen, VT::kEnum, &ListenConfig::tls>("tls", "none", 0, 0, kRestart,
        "none: plain (STARTTLS if a certificate is set); implicit: TLS from the first byte",
        "none|implicit"),

    // ---- HTTP_Listener ----
    Key<kHttp, VT::kString, &H::event_loop>("event_loop", "\"\"", 0, 0, kRestart,
        "eventloop pool whose loops accept; empty: the master loop"),
    Key<kHttp, VT::kString, &H::auth_token>("auth_token", "\"\"", 0, 0, kLive,
        "bearer token required on every request (must be set)"),
    Key<kHttp, VT::kInt, &H::max_connections>("max_connections", "1000", 1, kBig, kLive,
        "connections at once"),
    Key<kHttp, VT::kSize, &H::max_body_size_bytes>("max_body_size", "32MB", KiB(1), GiB(2), kLive,
        "request body limit (413 above); also what one request's messages may total "
        "after templates, or max_message_size if larger"),
    Key<kHttp, VT::kSize, &H::max_header_size_bytes>("max_header_size", "16KB", KiB(1), MiB(1),
        kLive, "request line plus headers limit (431 above)"),
    Key<kHttp, VT::kDuration, &H::idle_timeout>("idle_timeout", "1m", Sec(1), Hours(1), kLive,
        "keep-alive wait for the next request"),
    Key<kHttp, VT::kDuration, &H::request_timeout>("request_timeout", "5m", Sec(1), Hours(1),
        kLive, "budget for reading one request"),
    Key<kHttp, VT::kString, &H::tls_certificate>("tls_certificate", "\"\"", 0, 0, kLive,
        "PEM certificate chain for implicit TLS"),
    Key<kHttp, VT::kString, &H::tls_key>("tls_key", "\"\"", 0, 0, kLive, "PEM private key"),
    Key<kHttpListen, VT::kEnum, &ListenConfig::tls>("tls", "none", 0, 0, kRestart,
        "none: plain HTTP; implicit: HTTPS", "none|implicit"),

    // ---- Control_Listener ----
    Key<kCtl, VT::kInt, &ControlListenerConfig::max_connections>("max_connections", "16", 1,
        1024, kLive, "ringctl connections at once"),

    // ---- Domain "NAME" (defaults inherited from the global keys named) ----
    Key<kDom, VT::kRouteList, &D::routes>("routes", "", 0, 0, kLive,
        "smarthost(s) for this domain; empty: default_route, else MX", {}, "default_route"),
    Key<kDom, VT::kInt, &D::max_outbound_connections>("max_outbound_connections", "", 1, 100000,
        kLive, "outbound connections to this domain", {}, "domain_max_outbound_connections"),
    Key<kDom, VT::kInt, &D::max_deliveries_per_connection>("max_deliveries_per_connection", "", 1,
        100000, kLive, "messages per outbound connection", {}, "max_deliveries_per_connection"),
    Key<kDom, VT::kDuration, &D::outbound_idle_timeout>("outbound_idle_timeout", "", 0, Min(5),
        kLive, "idle wait for more work to this domain", {}, "outbound_idle_timeout"),
    Key<kDom, VT::kInt, &D::remote_smtp_port>("remote_smtp_port", "", 1, 65535, kLive,
        "port of this domain's MTAs", {}, "remote_smtp_port"),
    Key<kDom, VT::kEnum, &D::tls>("tls", "", 0, 0, kLive, "STARTTLS towards this domain",
        kTlsOut, "outbound_tls"),
};

constexpr ScopeSpec kScopes[] = {
    {ScopeKind::kGlobal, "global", kG, ArgKind::kNone, false, kRestart, "top level"},
    {kLoop, "eventloop", kG, ArgKind::kName, true, kRestart,
     "eventloop \"NAME\" { concurrency = N | \"P%\" }"},
    {kPool, "ThreadPool", kG, ArgKind::kName, true, kRestart,
     "ThreadPool \"NAME\" { Concurrency = N  Backlog = N  Stack_Size = SIZE }"},
    {kSmtp, "ESMTP_Listener", kG, ArgKind::kNone, false, kRestart, "ESMTP_Listener { ... }"},
    {kSmtpListen, "Listen", kSmtp, ArgKind::kInetAddress, true, kRestart,
     "Listen \"IP:PORT\" { tls = \"none\" }"},
    {kHttp, "HTTP_Listener", kG, ArgKind::kNone, false, kRestart, "HTTP_Listener { ... }"},
    {kHttpListen, "Listen", kHttp, ArgKind::kInetAddress, true, kRestart,
     "Listen \"IP:PORT\" { tls = \"none\" }"},
    {kCtl, "Control_Listener", kG, ArgKind::kNone, false, kRestart,
     "Control_Listener { Listen \"/path/to/socket\" { } }"},
    {ScopeKind::kControlListen, "Listen", kCtl, ArgKind::kPath, true, kRestart,
     "Listen \"/path/to/socket\" { }"},
    {kDom, "Domain", kG, ArgKind::kDomain, true, kLive, "Domain \"example.com\" { ... }"},
};

constexpr StandardThreadPool kStandardPools[] = {
    {"SwapOut", 5, 0}, {"SwapIn", 5, 0}, {"Unlink", 6, 100}, {"Batch_Unlink", 4, 0},
    {"Close", 0, 0},   {"CPU", 4, 0},    {"IO", 50, 0},      {"SpoolIn", 1, 0},
};
// clang-format on

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      bool same = absl::ascii_tolower(static_cast<unsigned char>(a[i - 1])) ==
                  absl::ascii_tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string ScopeLabel(ScopeKind kind) {
  const ScopeSpec& spec = GetScopeSpec(kind);
  if (kind == ScopeKind::kGlobal) return "global scope";
  if (spec.parent == ScopeKind::kGlobal) return std::string(spec.name);
  return Cat(Av(GetScopeSpec(spec.parent).name), ".", spec.name);
}

std::vector<std::string_view> KeyNames(ScopeKind scope) {
  std::vector<std::string_view> names;
  for (const KeySpec& key : kKeys) {
    if (key.scope == scope) names.push_back(key.name);
  }
  return names;
}

std::vector<std::string_view> ChildScopeNames(ScopeKind parent) {
  std::vector<std::string_view> names;
  for (const ScopeSpec& scope : kScopes) {
    if (scope.parent == parent && scope.kind != ScopeKind::kGlobal) names.push_back(scope.name);
  }
  return names;
}

// "ESMTP_Listener, HTTP_Listener" — the scopes other than `scope` that have key `name`.
std::string OtherScopesWithKey(ScopeKind scope, std::string_view name) {
  std::vector<std::string> where;
  for (const KeySpec& key : kKeys) {
    if (key.scope != scope && absl::EqualsIgnoreCase(Av(key.name), Av(name))) {
      std::string label = ScopeLabel(key.scope);
      if (std::find(where.begin(), where.end(), label) == where.end()) where.push_back(label);
    }
  }
  return absl::StrJoin(where, " or ");
}

}  // namespace

std::span<const KeySpec> AllKeys() { return kKeys; }
std::span<const ScopeSpec> AllScopes() { return kScopes; }
std::span<const StandardThreadPool> StandardThreadPools() { return kStandardPools; }

const ScopeSpec& GetScopeSpec(ScopeKind kind) {
  for (const ScopeSpec& spec : kScopes) {
    if (spec.kind == kind) return spec;
  }
  return kScopes[0];  // unreachable: every ScopeKind has a row (checked by schema_test)
}

const KeySpec* FindKey(ScopeKind scope, std::string_view name) {
  for (const KeySpec& key : kKeys) {
    if (key.scope == scope && absl::EqualsIgnoreCase(Av(key.name), Av(name))) return &key;
  }
  return nullptr;
}

const ScopeSpec* FindChildScope(ScopeKind parent, std::string_view name) {
  for (const ScopeSpec& spec : kScopes) {
    if (spec.kind != ScopeKind::kGlobal && spec.parent == parent &&
        absl::EqualsIgnoreCase(Av(spec.name), Av(name))) {
      return &spec;
    }
  }
  return nullptr;
}

std::string ScopePath(std::string_view parent_path, std::string_view scope_name,
                      const std::optional<std::string>& argument) {
  std::string path =
      parent_path.empty() ? std::string(scope_name) : Cat(parent_path, ".", scope_name);
  if (argument) Append(&path, " ", QuoteString(*argument));
  return path;
}

std::string KeyPath(std::string_view scope_path, std::string_view key) {
  if (scope_path.empty()) return std::string(key);
  return Cat(scope_path, ".", key);
}

std::string ClosestName(std::string_view name, std::span<const std::string_view> candidates) {
  // Allow about one typo per four characters, at least one, at most three.
  size_t allowed = std::clamp<size_t>(name.size() / 4, 1, 3);
  std::string_view best;
  size_t best_distance = allowed + 1;
  for (std::string_view candidate : candidates) {
    // The lengths' difference is a lower bound of the distance: a 4 KB unknown name is not
    // compared letter by letter with every key (session 11's audit: 5 s of CPU for a 4 MB
    // file of such names, through `ringctl config check` too).
    const size_t gap = name.size() > candidate.size() ? name.size() - candidate.size()
                                                      : candidate.size() - name.size();
    if (gap >= best_distance) continue;
    size_t distance = EditDistance(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return std::string(best);
}

std::string UnknownKeyMessage(ScopeKind scope, std::string_view name) {
  if (FindChildScope(scope, name) != nullptr) {
    return Cat("'", name, "' is a scope, not a key: write ", name, " \"...\" { }");
  }
  // A key that exists verbatim elsewhere was put in the wrong scope: say where it goes.
  std::string elsewhere = OtherScopesWithKey(scope, name);
  if (!elsewhere.empty()) {
    return Cat("'", name, "' is not a key of ", ScopeLabel(scope), "; it belongs in ", elsewhere);
  }
  std::string unknown = scope == ScopeKind::kGlobal
                            ? Cat("unknown global key '", name, "'")
                            : Cat("unknown key '", name, "' in ", ScopeLabel(scope));
  std::string suggestion = ClosestName(name, KeyNames(scope));
  if (suggestion.empty()) return unknown;
  return Cat(unknown, "; did you mean '", suggestion, "'?");
}

std::string UnknownScopeMessage(ScopeKind parent, std::string_view name) {
  if (FindKey(parent, name) != nullptr) {
    return Cat("'", name, "' is a key, not a scope: write ", name, " = VALUE");
  }
  std::string where = parent == ScopeKind::kGlobal ? std::string("at global scope")
                                                   : Cat("in ", ScopeLabel(parent));
  std::string suggestion = ClosestName(name, ChildScopeNames(parent));
  if (!suggestion.empty()) {
    return Cat("unknown scope '", name, "' ", where, "; did you mean '", suggestion, "'?");
  }
  std::vector<std::string> homes;
  for (const ScopeSpec& spec : kScopes) {
    if (spec.kind != ScopeKind::kGlobal && absl::EqualsIgnoreCase(Av(spec.name), Av(name))) {
      homes.push_back(ScopeLabel(spec.parent));
    }
  }
  if (!homes.empty()) {
    return Cat("scope '", name, "' is not allowed ", where, "; it belongs in ",
               absl::StrJoin(homes, " or "));
  }
  return Cat("unknown scope '", name, "' ", where);
}

}  // namespace ringmail::config
