// tls/context.h — an immutable wolfSSL context (WOLFSSL_CTX) for one role: a server
// (certificate chain + private key, for STARTTLS, SMTPS, HTTPS) or a client (trust anchors
// for verifying servers, optionally its own certificate).
//
// Contract
// - Create() reads files (certificate, key, CA store): it BLOCKS. Call it off the serving
//   loops (start-up, config reload on the master, a thread pool), never per connection.
// - The result is shared immutably (shared_ptr<const TlsContext>) by any number of loops:
//   wolfSSL guards the context's reference count and ticket key with its own mutexes, and
//   nothing else in it changes after Create(). A certificate reload builds a NEW context;
//   sessions already running keep the one they started with (TlsSession holds a shared_ptr),
//   new handshakes use the new one.
// - Session tickets (servers, TLS 1.3): wolfSSL's default ticket callback issues one ticket
//   per full handshake, encrypted under a key of this context's own (made at the first
//   ticket, rotated by wolfSSL within the context). So a reload (a new context) stops
//   accepting the old context's tickets: those clients make one full handshake and get a
//   new ticket. tests/tls/tls_resumption_test.cc checks both, and two threads minting and
//   redeeming tickets on one context at once.
// - Protocol versions: TLS 1.2 and TLS 1.3 only (SSLv3/TLS 1.0/1.1 are refused).
// - Crypto offload (tls/crypto_offload.h): unless TlsContextOptions::crypto_offload or the
//   process switch (`tls_crypto_offload`) is off, the context selects the libcrypto device,
//   so AES-GCM, P-256/P-384 ECDH/ECDSA and X25519 of all its sessions run on OpenSSL's
//   assembly (TLS 1.3's X25519 key share through the heap hint the context is made with),
//   and so does every SHA-256 of the process; wolfSSL's own C code runs the rest.
// - Cipher default: AEAD suites with forward secrecy only — TLS 1.3's three suites; for
//   TLS 1.2 ECDHE (and DHE for old MTAs) with AES-GCM or ChaCha20-Poly1305. The server picks
//   in its own order (wolfSSL's default), the client offers in it. With the offload on
//   (kOffloadCipherList) AES-128-GCM comes first: AES-NI GCM through libcrypto beats
//   wolfSSL's portable-C ChaCha20-Poly1305 several times over. Without it
//   (kDefaultCipherList) ChaCha20-Poly1305 comes first: Debian's wolfSSL is built without
//   AES-NI, and bench/tls_bench measured ChaCha20-Poly1305 at ~210 MB/s against ~80 MB/s
//   for its C AES-GCM on one core (BM_ServerMessage).
// - The wolfSSL library is initialised once per process by the first Create().
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct WOLFSSL_CTX;  // wolfssl/ssl.h; kept out of this header so users need not include it

namespace ringmail::tls {

enum class TlsRole : uint8_t { kServer, kClient };
enum class TlsVersion : uint8_t { kTls12, kTls13 };

inline constexpr char kDefaultCipherList[] =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES256-GCM-SHA384:TLS13-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256";

// The same suites, AES-GCM first (the offloaded AEAD), AES-128 before AES-256 (four fewer
// rounds; TLS 1.3's mandatory suite).
inline constexpr char kOffloadCipherList[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256";

// X25519 first: with Debian's wolfSSL (no SP-ECC assembly) a server-side TLS 1.3 handshake
// costs ~0.5 ms of CPU with an X25519 key share against ~1.3 ms with P-256 (bench/tls_bench,
// BM_ServerHandshake client:3 vs client:4); OpenSSL clients lead with X25519 as well.
// With the crypto offload on, X25519 stays first: its key share runs on libcrypto too
// (tls/crypto_offload.h), and it is the cheaper share for OpenSSL peers (63 vs 109 us per
// ECDH here, `openssl speed`).
inline constexpr char kDefaultClientGroups[] = "X25519:P-256:P-384";

struct TlsContextOptions {
  TlsRole role = TlsRole::kServer;
  // PEM files. Server: both required (the chain: leaf first, then intermediates). Client:
  // both empty (no client certificate) or both set.
  std::string certificate_chain_file;
  std::string private_key_file;
  // Client trust anchors for verification: a PEM bundle file and/or the system store
  // (/etc/ssl/certs, wolfSSL_CTX_load_system_CA_certs). A client context with neither can
  // still handshake; every verification then reports "no trust anchors".
  std::string ca_file;
  bool use_system_ca = true;  // client only
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  // Empty: kOffloadCipherList when the crypto offload is on, else kDefaultCipherList
  // (wolfSSL/OpenSSL syntax).
  std::string cipher_list;
  // Key-exchange groups in preference order ("X25519:P-256"; known: X25519, X448, P-256,
  // P-384, P-521). Empty: kDefaultClientGroups for a client (its TLS 1.3 key share is the
  // first), wolfSSL's default for a server (it takes the share the client sent).
  std::string groups;
  // Run the heavy primitives on libcrypto (tls/crypto_offload.h); ANDed with the process
  // switch SetCryptoOffload. Off: wolfSSL's own code only.
  bool crypto_offload = true;
};

class TlsContext {
 public:
  // Blocking (file reads). Errors name the file and wolfSSL's reason: kInvalidArgument for
  // bad options, kFailedPrecondition for unreadable/invalid files or a key that does not
  // match its certificate.
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Create(
      const TlsContextOptions& options);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  TlsRole role() const { return role_; }
  // How many trust anchors a client context loaded (0: verification always fails).
  bool has_trust_anchors() const { return has_trust_anchors_; }
  // Whether this context's sessions use the libcrypto device.
  bool crypto_offload() const { return crypto_offload_; }
  // For tls/session only: wolfSSL_new() takes a reference of its own on the context.
  WOLFSSL_CTX* raw() const { return ctx_; }

 private:
  TlsContext(WOLFSSL_CTX* ctx, TlsRole role) : ctx_(ctx), role_(role) {}

  WOLFSSL_CTX* ctx_;
  TlsRole role_;
  bool has_trust_anchors_ = false;
  bool crypto_offload_ = false;
};

// wolfSSL's text for an error code (negative wolfSSL/wolfCrypt codes), for messages.
std::string WolfSslErrorText(int code);

// Frees the calling thread's wolfSSL fixed-point ECC cache. Debian's wolfSSL keeps one per
// thread (FP_ECC with thread-local storage) that only this call on that thread releases: a
// pool thread that built a context (loading an ECC key fills it) and then does other work, or
// ends, calls it; otherwise its memory stays until exit (LeakSanitizer reports it).
void ReleaseThreadEccCache();
// Arranges ReleaseThreadEccCache() for when the calling thread ends (once per thread; later
// calls do nothing): what a loop thread that handshakes calls, so no cache outlives its loop.
void ReleaseThreadEccCacheAtExit();

}  // namespace ringmail::tls
