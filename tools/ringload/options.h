// tools/ringload/options.h — command-line options of `ringload send` and `ringload sink`.
//
// ParseSendOptions / ParseSinkOptions turn argv (after the subcommand) into a plain struct or
// an InvalidArgument status whose message names the offending flag; main prints it and exits
// 2. Every number from the command line is range-checked here, so the workers can trust
// them. Flags take `--name value` or `--name=value`. Main thread only.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "tls/context.h"

namespace ringmail::ringload {

// Limits on what the command line may ask for.
inline constexpr uint32_t kConnectionsMax = 100'000;
inline constexpr uint32_t kRcptsMax = 1000;
inline constexpr uint32_t kDomainsMax = 1'000'000;
inline constexpr uint32_t kThreadsMax = 256;
inline constexpr uint64_t kMessageBytesMax = 64ull << 20;
inline constexpr size_t kSizeClassesMax = 16;
inline constexpr size_t kReplyRulesMax = 16;
inline constexpr size_t kAddressBytesMax = 256;  // RFC 5321 path limit
inline constexpr double kDurationMax = 7 * 86400.0;
inline constexpr size_t kTokenBytesMax = 4096;
inline constexpr size_t kHttpPathBytesMax = 1024;

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "127.0.0.1:2525" as given (after normalisation)
};

// "127.0.0.1:25", "[::1]:25", "localhost:25" (IPv4 loopback). Numeric addresses only.
absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view flag, absl::string_view text);

struct SizeClass {
  uint64_t bytes = 0;
  double weight = 1.0;
};

// "1024", "10k", "1k:70,10k:25,100k:5" (weights need not add up to 100).
absl::StatusOr<std::vector<SizeClass>> ParseSizes(absl::string_view text);

struct ReplyRule {
  int code = 0;
  double fraction = 0.0;
};

// "451:0.1,550:0.05"; codes 400..599, fractions summing to at most 1.
absl::StatusOr<std::vector<ReplyRule>> ParseReplyRules(absl::string_view text);

struct CommonOptions {
  uint32_t threads = 0;  // 0: one per available CPU
  bool pin = false;
  bool json = false;
  bool quiet = false;  // no live progress line even on a terminal
  uint64_t seed = 1;
  std::string dump_dir;
};

struct SendOptions {
  CommonOptions common;
  Endpoint target;
  uint32_t connections = 1;
  uint64_t messages = 0;  // 0: bounded by duration instead
  double duration_s = 0;
  std::vector<SizeClass> sizes = {{1024, 1.0}};
  uint32_t rcpts = 1;
  uint32_t domains = 1;
  bool pipelining = false;
  bool chunking = false;  // BDAT instead of DATA when the server offers CHUNKING
  uint64_t messages_per_connection = 0;  // 0: reuse forever
  double rate = 0;  // messages/s over all connections; 0: closed loop
  std::string from = "ringload@ringload.test";
  std::string rcpt_template = "user{n}@domain{d}.test";
  std::string ehlo = "ringload.test";
  std::string record_path;
  double timeout_s = 0;      // hard overall bound; 0: derived from the workload
  double io_timeout_s = 30;  // per reply
  int64_t max_errors = 0;    // more errors than this: stop early and exit 1

  // --http: POST each message to ringmaild's injection API instead of speaking SMTP.
  enum class HttpKind : uint8_t { kRaw, kStructured };
  bool http = false;
  std::string http_token;  // Authorization: Bearer (empty: no header)
  std::string http_path = "/api/inject/v1";
  HttpKind http_kind = HttpKind::kRaw;
  bool http_template = false;  // per-recipient substitution_data ({{name}}, structured only)

  // --tls starttls|implicit: TLS through the project's engine (certificates not verified).
  // The client context is built while the options are parsed, before any loop runs.
  enum class Tls : uint8_t { kOff, kStartTls, kImplicit };
  Tls tls = Tls::kOff;
  std::shared_ptr<const tls::TlsContext> tls_client;
  // --tls-resume: each connection offers the session (TLS 1.3 ticket) its previous one got,
  // as an MTA's client-side TLS session cache does (Postfix's smtp_tls_session_cache).
  bool tls_resume = false;
  // --no-tls-offload: the client context runs wolfSSL's own crypto (tls/crypto_offload.h).
  bool tls_offload = true;
};

struct SinkOptions {
  CommonOptions common;
  Endpoint listen;
  std::vector<ReplyRule> replies;
  uint32_t delay_ms = 0;
  uint64_t expect = 0;  // 0: run until duration or signal
  double duration_s = 0;
  uint32_t max_line_bytes = 1000;  // RFC 5321 text line incl. CRLF; commands get 512+
  uint64_t max_message_bytes = 50ull << 20;
  uint32_t max_rcpts = 1000;
  uint32_t max_connections = 20'000;  // over all loops
  double idle_timeout_s = 300;
  std::string hostname = "ringload-sink.test";
  // --tls CERT KEY: STARTTLS offered (RFC 3207). The context is built while the options
  // are parsed (it reads the files), before any loop runs, and shared by every loop.
  std::string tls_certificate;
  std::string tls_key;
  std::shared_ptr<const tls::TlsContext> tls_context;
};

absl::StatusOr<SendOptions> ParseSendOptions(const std::vector<absl::string_view>& args);
absl::StatusOr<SinkOptions> ParseSinkOptions(const std::vector<absl::string_view>& args);

std::string SendUsage();
std::string SinkUsage();

}  // namespace ringmail::ringload
