#include "tls/context.h"

// options.h first: it carries the configure flags the Debian library was built with, and
// every other wolfSSL header reads them (struct layouts depend on them).
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <string.h>  // explicit_bzero

#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"
#include "tls/crypto_offload.h"

namespace ringmail::tls {

absl::Status SelfTestServerContext(std::shared_ptr<const TlsContext> server);  // session.cc

namespace {

// A certificate chain or key is a few KB; a CA bundle (Debian's: ~220 KB) some hundreds.
constexpr size_t kTlsFileBytesMax = 1u << 20;
constexpr size_t kTlsCaFileBytesMax = 16u << 20;

void InitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { wolfSSL_Init(); });
}

WOLFSSL_METHOD* MethodFor(TlsRole role, TlsVersion min, TlsVersion max) {
  const bool server = role == TlsRole::kServer;
  if (max == TlsVersion::kTls12) {
    return server ? wolfTLSv1_2_server_method() : wolfTLSv1_2_client_method();
  }
  if (min == TlsVersion::kTls13) {
    return server ? wolfTLSv1_3_server_method() : wolfTLSv1_3_client_method();
  }
  // Highest version both sides have, never below the minimum set on the context.
  return server ? wolfTLS_server_method() : wolfTLS_client_method();
}

// What wolfSSL refused in a file it was given: its error text when it set one, else what
// the file must be (its *_buffer functions answer a bare WOLFSSL_FAILURE, 0, to a file
// that is not PEM at all).
absl::Status FileError(const char* what, const std::string& path, int code) {
  const std::string why =
      code == WOLFSSL_FAILURE ? "not PEM that wolfSSL can read" : WolfSslErrorText(code);
  return absl::FailedPreconditionError(absl::StrCat("TLS ", what, " '", path, "': ", why));
}

// A certificate, key or CA file, read here (base/small_file.h) rather than by wolfSSL's
// *_file functions: they fopen() whatever the path names, so a FIFO there blocked the
// reload's IO worker for good, and every later reload queued behind it (session 12's reload
// audit, F2). Errors name the file and the errno.
absl::StatusOr<std::string> ReadTlsFile(const char* what, const std::string& path,
                                        size_t max_bytes) {
  absl::StatusOr<std::string> data = ReadSmallFile(path, max_bytes);
  if (!data.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("TLS ", what, " '", path, "': ", data.status().message()));
  }
  return data;
}

const unsigned char* Bytes(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::Status LoadIdentity(WOLFSSL_CTX* ctx, const TlsContextOptions& o) {
  absl::StatusOr<std::string> chain =
      ReadTlsFile("certificate", o.certificate_chain_file, kTlsFileBytesMax);
  if (!chain.ok()) return chain.status();
  int r = wolfSSL_CTX_use_certificate_chain_buffer_format(
      ctx, Bytes(*chain), static_cast<long>(chain->size()), WOLFSSL_FILETYPE_PEM);
  if (r != WOLFSSL_SUCCESS) return FileError("certificate", o.certificate_chain_file, r);
  absl::StatusOr<std::string> key = ReadTlsFile("key", o.private_key_file, kTlsFileBytesMax);
  if (!key.ok()) return key.status();
  r = wolfSSL_CTX_use_PrivateKey_buffer(ctx, Bytes(*key), static_cast<long>(key->size()),
                                        WOLFSSL_FILETYPE_PEM);
  explicit_bzero(key->data(), key->size());  // no copy of the key left in freed memory
  if (r != WOLFSSL_SUCCESS) return FileError("key", o.private_key_file, r);
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
    return absl::FailedPreconditionError(
        absl::StrCat("TLS key '", o.private_key_file, "' does not match certificate '",
                     o.certificate_chain_file, "'"));
  }
  return absl::OkStatus();
}

// Loads what the client trusts; returns whether anything was loaded.
absl::StatusOr<bool> LoadTrustAnchors(WOLFSSL_CTX* ctx, const TlsContextOptions& o) {
  bool any = false;
  if (!o.ca_file.empty()) {
    absl::StatusOr<std::string> cas = ReadTlsFile("CA file", o.ca_file, kTlsCaFileBytesMax);
    if (!cas.ok()) return cas.status();
    int r = wolfSSL_CTX_load_verify_buffer(ctx, Bytes(*cas), static_cast<long>(cas->size()),
                                           WOLFSSL_FILETYPE_PEM);
    if (r != WOLFSSL_SUCCESS) return FileError("CA file", o.ca_file, r);
    any = true;
  }
  // A machine without a system store (containers) still gets a working context: each
  // verification then fails and says so, which only matters to `verify` destinations.
  if (o.use_system_ca && wolfSSL_CTX_load_system_CA_certs(ctx) == WOLFSSL_SUCCESS) any = true;
  return any;
}

// "X25519:P-256" -> wolfSSL group ids (wolfSSL 5.5's set1_groups_list does not know the
// curve-25519/448 names).
absl::Status SetGroups(WOLFSSL_CTX* ctx, const std::string& list, bool tls13) {
  constexpr struct {
    const char* name;
    int id;
  } kGroups[] = {{"X25519", WOLFSSL_ECC_X25519},    {"X448", WOLFSSL_ECC_X448},
                 {"P-256", WOLFSSL_ECC_SECP256R1}, {"P-384", WOLFSSL_ECC_SECP384R1},
                 {"P-521", WOLFSSL_ECC_SECP521R1}};
  int ids[8];
  int count = 0;
  for (absl::string_view name : absl::StrSplit(list, ':')) {
    int id = 0;
    for (const auto& g : kGroups) {
      if (name == g.name) id = g.id;
    }
    if (id == 0 || count == 8) {
      return absl::InvalidArgumentError(absl::StrCat("TLS groups: bad list '", list, "'"));
    }
    ids[count++] = id;
  }
  if (!tls13) {  // set_groups is TLS 1.3's (it orders the key shares too)
    for (int i = 0; i < count; ++i) {
      if (wolfSSL_CTX_UseSupportedCurve(ctx, static_cast<word16>(ids[i])) != WOLFSSL_SUCCESS) {
        return absl::InvalidArgumentError(absl::StrCat("TLS groups refused: '", list, "'"));
      }
    }
    return absl::OkStatus();
  }
  if (wolfSSL_CTX_set_groups(ctx, ids, count) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("TLS groups refused: '", list, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const TlsContextOptions& o) {
  if (o.min_version == TlsVersion::kTls13 && o.max_version == TlsVersion::kTls12) {
    return absl::InvalidArgumentError("TLS min_version is above max_version");
  }
  const bool cert = !o.certificate_chain_file.empty();
  const bool key = !o.private_key_file.empty();
  if (cert != key) {
    return absl::InvalidArgumentError("TLS certificate and key must be given together");
  }
  if (o.role == TlsRole::kServer && !cert) {
    return absl::InvalidArgumentError("a TLS server needs a certificate and a key");
  }
  return absl::OkStatus();
}

}  // namespace

std::string WolfSslErrorText(int code) {
  char buf[WOLFSSL_MAX_ERROR_SZ] = {};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(code), buf, sizeof(buf));
  return absl::StrCat(buf, " (", code, ")");
}

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Create(
    const TlsContextOptions& options) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  InitOnce();
  // Decided first: it orders the default cipher list, and an offloading context is made
  // with the device's heap tag, which sends its TLS 1.3 X25519 key shares to the device
  // (tls/crypto_offload.h). The device id is set last, after the key is loaded, so loading
  // and checking the key stay wolfSSL's own.
  const int dev_id = options.crypto_offload && CryptoOffloadEnabled() ? CryptoOffloadDevId()
                                                                      : kNoCryptoDevice;
  WOLFSSL_CTX* raw =
      wolfSSL_CTX_new_ex(MethodFor(options.role, options.min_version, options.max_version),
                         dev_id != kNoCryptoDevice ? CryptoOffloadHeapTag() : nullptr);
  if (raw == nullptr) return absl::ResourceExhaustedError("wolfSSL_CTX_new failed");
  // Owned from here: every error path below frees it through the destructor.
  std::shared_ptr<TlsContext> ctx(new TlsContext(raw, options.role));
  const int min = options.min_version == TlsVersion::kTls13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
  if (wolfSSL_CTX_SetMinVersion(raw, min) != WOLFSSL_SUCCESS) {
    return absl::InternalError("wolfSSL_CTX_SetMinVersion failed");
  }
  const std::string ciphers = !options.cipher_list.empty()  ? options.cipher_list
                              : dev_id != kNoCryptoDevice ? kOffloadCipherList
                                                          : kDefaultCipherList;
  if (wolfSSL_CTX_set_cipher_list(raw, ciphers.c_str()) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrCat("TLS cipher list refused: '", ciphers, "'"));
  }
  const std::string groups = !options.groups.empty()            ? options.groups
                             : options.role == TlsRole::kClient ? kDefaultClientGroups
                                                                : "";
  if (!groups.empty()) {
    const bool tls13 = options.max_version == TlsVersion::kTls13;
    if (absl::Status s = SetGroups(raw, groups, tls13); !s.ok()) return s;
  }
  if (!options.certificate_chain_file.empty()) {
    if (absl::Status s = LoadIdentity(raw, options); !s.ok()) return s;
  }
  if (options.role == TlsRole::kClient) {
    absl::StatusOr<bool> any = LoadTrustAnchors(raw, options);
    if (!any.ok()) return any.status();
    ctx->has_trust_anchors_ = *any;
  }
  // Verification is chosen per session (TlsSession::Client); a server never asks for a
  // client certificate.
  wolfSSL_CTX_set_verify(raw, WOLFSSL_VERIFY_NONE, nullptr);
  if (dev_id != kNoCryptoDevice) {
    if (wolfSSL_CTX_SetDevId(raw, dev_id) != WOLFSSL_SUCCESS) {
      return absl::InternalError("wolfSSL_CTX_SetDevId failed");
    }
    ctx->crypto_offload_ = true;
  }
  std::shared_ptr<const TlsContext> result = std::move(ctx);
  if (options.role == TlsRole::kServer) {
    // wolfSSL_CTX_check_private_key does not catch every mismatch (two P-256 keys pass), so
    // the server proves its key signs for its certificate in one in-memory handshake.
    if (absl::Status s = SelfTestServerContext(result); !s.ok()) return s;
  }
  return result;
}

TlsContext::~TlsContext() { wolfSSL_CTX_free(ctx_); }

void ReleaseThreadEccCache() { wc_ecc_fp_free(); }

void ReleaseThreadEccCacheAtExit() {
  thread_local struct Release {
    ~Release() { ReleaseThreadEccCache(); }
  } release;
  (void)release;
}

}  // namespace ringmail::tls
