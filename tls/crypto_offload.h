// tls/crypto_offload.h — a wolfCrypt "crypto device" (WOLF_CRYPTO_CB) backed by OpenSSL's
// libcrypto, so wolfSSL's heaviest primitives run on libcrypto's assembly (AES-NI/VAES GCM,
// nistz256 P-256, x25519 asm) instead of Debian's portable-C wolfSSL build.
//
// Contract
// - Offloaded: AES-GCM encrypt/decrypt (128/192/256-bit keys, IVs to 64 bytes, tags of
//   12..16 bytes — a shorter decrypt tag is an error, though wolfSSL's software would take
//   it), ECC key generation, ECDH and ECDSA sign/verify on P-256 and P-384, X25519 key
//   generation and shared secret. Everything else the device is asked (hashes, HMAC, RNG,
//   RSA, other curves, the streaming AES-GCM API) returns CRYPTOCB_UNAVAILABLE and wolfSSL
//   runs its own code — SHA-256 itself comes to libcrypto another way (below).
// - Keys are never copied out of wolfSSL's objects for longer than one call, except the
//   ECDSA keys: each thread keeps a few libcrypto key objects for the last signing keys
//   (the server's certificate key, the same every handshake) and peer verification keys,
//   found again by their key bytes. Entries are wiped (OPENSSL_cleanse) when evicted and
//   when the thread ends.
// - Threads: the device is registered once per process (first CryptoOffloadDevId()) and its
//   callback runs on whichever thread calls wolfCrypt — every serving loop. It takes no lock:
//   the libcrypto objects it reuses (cipher contexts, EC groups, key caches) are per thread;
//   the counters are relaxed atomics.
// - Who decides: TlsContext::Create selects the device on a context when both
//   TlsContextOptions::crypto_offload and the process switch (SetCryptoOffload, set once at
//   start-up from the global `tls_crypto_offload` key) are on, and the device registered.
//   Sessions inherit it from their context; a context keeps what it was created with.
// - TLS 1.3 X25519 key shares: wolfSSL 5.5.4 makes them on keys with no device (src/tls.c
//   TLSX_KeyShare_GenX25519Key) and consults neither the device nor its PK callbacks. This
//   file therefore defines wc_curve25519_init_ex and wc_curve25519_shared_secret_ex itself
//   (libwolfssl.so calls them through its PLT; each forwards to wolfSSL's own): a key
//   initialised with an offloading context's heap hint (CryptoOffloadHeapTag, passed to
//   wolfSSL_CTX_new_ex by TlsContext::Create) and no device gets the device, so the key share
//   and its secret run on libcrypto with a fresh libcrypto-random key per handshake; and
//   every X25519 result is checked: an all-zero secret (a small-order peer point, RFC 8446
//   section 7.4.2) is an error, offload on or off, for every caller in the process.
// - SHA-256: likewise wc_Sha256Update and wc_Sha256Final, for every wc_Sha256 in the process
//   (TLS transcripts, HMAC/HKDF, the Hash-DRBG, certificates) while the process switch is on:
//   libcrypto's SHA-256 (SHA extensions/AVX2) continues wolfSSL's own hash state in place, so
//   the object stays exactly what wolfSSL's C would have left.
// - DRBG seeds: wc_GenerateSeed likewise, for every wolfSSL random generator in the process
//   (one per connection): getrandom(2) instead of opening, reading and closing /dev/urandom
//   (the same kernel generator, one system call), wolfSSL's own if getrandom fails.
#pragma once

#include <cstdint>

namespace ringmail::tls {

// The process-wide switch (default on). ringmaild sets it from `tls_crypto_offload` before
// it creates any TLS context; contexts made earlier keep their choice.
void SetCryptoOffload(bool enabled);
bool CryptoOffloadEnabled();

// The wolfCrypt device id of the libcrypto device, registering it on the first call
// (thread-safe; initialises wolfCrypt). Returns kNoCryptoDevice if registration failed
// (wolfSSL's device table full), which callers treat as "offload off".
inline constexpr int kNoCryptoDevice = -2;  // wolfCrypt's INVALID_DEVID
int CryptoOffloadDevId();

// The heap hint an offloading context is created with (wolfSSL_CTX_new_ex): it marks the
// context's own X25519 keys for the device (see the contract). Never dereferenced; wolfSSL
// built without WOLFSSL_STATIC_MEMORY only passes heap hints around.
void* CryptoOffloadHeapTag();

// How many operations the device did (and declined) since the process started, for tests,
// benchmarks and diagnostics. Monotonic; read without stopping the callers.
struct CryptoOffloadCounts {
  uint64_t aes_gcm_encrypt = 0;
  uint64_t aes_gcm_decrypt = 0;
  uint64_t aes_gcm_auth_failures = 0;  // decrypts whose tag did not verify
  uint64_t ecc_keygen = 0;
  uint64_t ecdh = 0;
  uint64_t ecdsa_sign = 0;
  uint64_t ecdsa_verify = 0;
  uint64_t x25519_keygen = 0;
  uint64_t x25519_shared = 0;
  uint64_t x25519_routed = 0;       // wolfSSL's device-less X25519 keys given the device
  uint64_t x25519_zero_refused = 0;  // X25519 results refused as all-zero (any caller)
  uint64_t sha256_finals = 0;        // SHA-256 hashes finished on libcrypto (any caller)
  uint64_t seeds = 0;                // DRBG seeds read with getrandom(2) (any caller)
  uint64_t declined = 0;  // calls answered CRYPTOCB_UNAVAILABLE (wolfSSL's software ran)
  uint64_t errors = 0;    // libcrypto failures reported to wolfSSL as errors
};
CryptoOffloadCounts GetCryptoOffloadCounts();

}  // namespace ringmail::tls
