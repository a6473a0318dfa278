#include "tls/crypto_offload.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <dlfcn.h>
#include <errno.h>
#include <sys/random.h>

// wolfSSL after OpenSSL: Debian's wolfssl/options.h defines OPENSSL_NO_EC (for its own
// compatibility layer), which would empty openssl/ec.h. options.h first among wolfSSL's:
// the configure flags every wolfCrypt header reads (struct layouts).
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/cryptocb.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/wc_port.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <utility>

#include "base/check.h"

// The heap tag below is an address wolfSSL only passes around: a build with static memory
// would read it as a WOLFSSL_HEAP_HINT.
#ifdef WOLFSSL_STATIC_MEMORY
#error "tls/crypto_offload's heap tag needs a wolfSSL built without WOLFSSL_STATIC_MEMORY"
#endif

namespace ringmail::tls {
namespace {

// Any id other than INVALID_DEVID; wolfCrypt keeps a small table of registered devices.
constexpr int kDevId = 0x524d;  // "RM"

std::atomic<bool> g_enabled{true};

// CryptoOffloadHeapTag(): only its address is used.
char g_heap_tag = 0;

// The anonymous argument structs of wc_CryptoInfo, by name.
using GcmEncArgs = decltype(std::declval<wc_CryptoInfo&>().cipher.aesgcm_enc);
using GcmDecArgs = decltype(std::declval<wc_CryptoInfo&>().cipher.aesgcm_dec);
using EccKeyGenArgs = decltype(std::declval<wc_CryptoInfo&>().pk.eckg);
using EcdhArgs = decltype(std::declval<wc_CryptoInfo&>().pk.ecdh);
using EcdsaSignArgs = decltype(std::declval<wc_CryptoInfo&>().pk.eccsign);
using EcdsaVerifyArgs = decltype(std::declval<wc_CryptoInfo&>().pk.eccverify);
using X25519KeyGenArgs = decltype(std::declval<wc_CryptoInfo&>().pk.curve25519kg);
using X25519Args = decltype(std::declval<wc_CryptoInfo&>().pk.curve25519);

// One counter per cache line: every loop thread bumps them.
struct alignas(64) Counter {
  std::atomic<uint64_t> n{0};
  void Add() { n.fetch_add(1, std::memory_order_relaxed); }
  uint64_t Get() const { return n.load(std::memory_order_relaxed); }
};
struct Counters {
  Counter gcm_enc, gcm_dec, gcm_auth_fail, ecc_keygen, ecdh, ecdsa_sign, ecdsa_verify,
      x25519_keygen, x25519_shared, x25519_routed, x25519_zero_refused, sha256_finals,
      seeds, declined, errors;
};
Counters g_counts;

// ---- per-thread libcrypto state -------------------------------------------------------

struct CurveInfo {
  int wolf_id;  // ecc_curve_id
  int nid;
  int size;  // field and order size in bytes
  const char* group_name;
};
constexpr CurveInfo kCurves[] = {
    {ECC_SECP256R1, NID_X9_62_prime256v1, 32, "P-256"},
    {ECC_SECP384R1, NID_secp384r1, 48, "P-384"},
};
constexpr int kCurveCount = sizeof(kCurves) / sizeof(kCurves[0]);
constexpr int kMaxScalar = 48;
constexpr int kMaxPoint = 1 + 2 * kMaxScalar;  // uncompressed 04||X||Y

// The EC objects one thread reuses for one curve (created at its first use).
struct CurveState {
  EC_GROUP* group = nullptr;
  BIGNUM* d = nullptr;  // secret scalars: BN_FLG_CONSTTIME
  BIGNUM* x = nullptr;
  BIGNUM* y = nullptr;
  EC_POINT* q = nullptr;  // public points only; the ECDH result is per call (a secret)
};

// The last few ECDSA keys of this thread, found again by their bytes (see the header).
struct PkeyEntry {
  int curve = -1;
  size_t len = 0;
  unsigned char bytes[kMaxPoint] = {};  // the private scalar (sign) or public point (verify)
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = nullptr;  // initialised for sign or verify
};
constexpr int kSignCacheSize = 4;
constexpr int kVerifyCacheSize = 8;

// AES-GCM contexts: [decrypt/encrypt][128/192/256]; the cipher is fetched once per context,
// every call only sets key and IV.
struct GcmState {
  EVP_CIPHER_CTX* ctx[2][3] = {};
  int iv_len[2][3] = {};
};

struct ThreadState {
  GcmState gcm;
  BN_CTX* bn = nullptr;
  CurveState curves[kCurveCount];
  PkeyEntry sign[kSignCacheSize];
  PkeyEntry verify[kVerifyCacheSize];
  int sign_next = 0;
  int verify_next = 0;
  EVP_PKEY_CTX* x25519_import = nullptr;  // initialised for EVP_PKEY_fromdata
  EVP_PKEY* x25519_base = nullptr;        // the public key u = 9 (X25519 key generation)

  ~ThreadState();
};

void ClearEntry(PkeyEntry& e) {
  EVP_PKEY_CTX_free(e.ctx);
  EVP_PKEY_free(e.pkey);
  OPENSSL_cleanse(e.bytes, sizeof(e.bytes));
  e = PkeyEntry{};
}

ThreadState::~ThreadState() {
  for (auto& dir : gcm.ctx) {
    for (EVP_CIPHER_CTX*& c : dir) EVP_CIPHER_CTX_free(c);
  }
  for (CurveState& c : curves) {
    EC_POINT_free(c.q);
    BN_clear_free(c.d);
    BN_free(c.x);
    BN_free(c.y);
    EC_GROUP_free(c.group);
  }
  for (PkeyEntry& e : sign) ClearEntry(e);
  for (PkeyEntry& e : verify) ClearEntry(e);
  EVP_PKEY_free(x25519_base);
  EVP_PKEY_CTX_free(x25519_import);
  BN_CTX_free(bn);
}

// The state lives behind a trivially destructible pointer, freed by a guard at thread exit;
// a call that comes after the guard ran (another thread_local's destructor using wolfSSL)
// is declined instead of touching freed memory.
thread_local ThreadState* tl_state = nullptr;
thread_local bool tl_state_gone = false;
struct ThreadStateGuard {
  bool armed = false;
  ~ThreadStateGuard() {
    delete tl_state;
    tl_state = nullptr;
    tl_state_gone = true;
  }
};
thread_local ThreadStateGuard tl_guard;

ThreadState* State() {
  if (tl_state != nullptr) return tl_state;
  if (tl_state_gone) return nullptr;
  tl_guard.armed = true;  // constructs the guard on this thread, so its destructor runs
  tl_state = new ThreadState();
  tl_state->bn = BN_CTX_new();
  if (tl_state->bn == nullptr) {
    delete tl_state;
    tl_state = nullptr;
  }
  return tl_state;
}

// ---- AES-GCM ---------------------------------------------------------------------------

EVP_CIPHER_CTX* GcmContext(ThreadState& st, bool enc, int key_len, int iv_len) {
  const int k = key_len == 16 ? 0 : key_len == 24 ? 1 : key_len == 32 ? 2 : -1;
  if (k < 0) return nullptr;
  EVP_CIPHER_CTX*& ctx = st.gcm.ctx[enc][k];
  if (ctx == nullptr) {
    const EVP_CIPHER* cipher = k == 0 ? EVP_aes_128_gcm() : k == 1 ? EVP_aes_192_gcm()
                                                                   : EVP_aes_256_gcm();
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == nullptr) return nullptr;
    if (EVP_CipherInit_ex(ctx, cipher, nullptr, nullptr, nullptr, enc) != 1) {
      EVP_CIPHER_CTX_free(ctx);
      ctx = nullptr;
      return nullptr;
    }
    st.gcm.iv_len[enc][k] = 12;
  }
  if (st.gcm.iv_len[enc][k] != iv_len) {
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, iv_len, nullptr) != 1) return nullptr;
    st.gcm.iv_len[enc][k] = iv_len;
  }
  return ctx;
}

// Keys the context and feeds the additional data; false: libcrypto refused.
bool GcmStart(EVP_CIPHER_CTX* ctx, const Aes* aes, const byte* iv, const byte* aad,
              word32 aad_len, bool enc) {
  const auto* key = reinterpret_cast<const unsigned char*>(aes->devKey);
  if (EVP_CipherInit_ex(ctx, nullptr, nullptr, key, iv, enc) != 1) return false;
  int n = 0;
  return aad_len == 0 || EVP_CipherUpdate(ctx, nullptr, &n, aad, static_cast<int>(aad_len)) == 1;
}

bool GcmArgsOk(const Aes* aes, word32 sz, word32 iv_len, word32 tag_len, word32 aad_len) {
  return aes->keylen > 0 && sz <= INT_MAX / 2 && aad_len <= INT_MAX / 2 && iv_len > 0 &&
         iv_len <= 64 && tag_len > 0 && tag_len <= 16;
}

// A libcrypto failure once output may have been written. Never a decline: TLS works in
// place (out == in), so wolfSSL's software would run over half-processed bytes — re-encrypting
// ciphertext back to plaintext (CTR is its own inverse) and sending it with a valid tag.
int GcmFailedMidway(byte* out, word32 sz) {
  if (sz > 0) OPENSSL_cleanse(out, sz);
  ERR_clear_error();
  g_counts.errors.Add();
  return WC_HW_E;
}

int GcmEncrypt(ThreadState& st, GcmEncArgs& a) {
  if (!GcmArgsOk(a.aes, a.sz, a.ivSz, a.authTagSz, a.authInSz)) return CRYPTOCB_UNAVAILABLE;
  EVP_CIPHER_CTX* ctx = GcmContext(st, true, static_cast<int>(a.aes->keylen),
                                   static_cast<int>(a.ivSz));
  if (ctx == nullptr || !GcmStart(ctx, a.aes, a.iv, a.authIn, a.authInSz, true)) {
    ERR_clear_error();
    return CRYPTOCB_UNAVAILABLE;  // nothing written yet: wolfSSL's software does it
  }
  int n = 0;
  int tail = 0;
  if ((a.sz > 0 && (EVP_CipherUpdate(ctx, a.out, &n, a.in, static_cast<int>(a.sz)) != 1 ||
                    n != static_cast<int>(a.sz))) ||
      EVP_CipherFinal_ex(ctx, a.out + n, &tail) != 1 || tail != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(a.authTagSz),
                          a.authTag) != 1) {
    OPENSSL_cleanse(a.authTag, a.authTagSz);
    return GcmFailedMidway(a.out, a.sz);
  }
  g_counts.gcm_enc.Add();
  return 0;
}

int GcmDecrypt(ThreadState& st, GcmDecArgs& a) {
  // wolfSSL 5.5.4's own decrypt takes any tag of 1..16 bytes (its encrypt refuses fewer than
  // WOLFSSL_MIN_AUTH_TAG_SZ): an error here, not a decline, or its software would accept a
  // tag forgeable in 2^8..2^88 tries. TLS's GCM tags are 16 bytes.
  if (a.authTagSz < WOLFSSL_MIN_AUTH_TAG_SZ) {
    g_counts.errors.Add();
    return BAD_FUNC_ARG;
  }
  if (!GcmArgsOk(a.aes, a.sz, a.ivSz, a.authTagSz, a.authInSz)) return CRYPTOCB_UNAVAILABLE;
  EVP_CIPHER_CTX* ctx = GcmContext(st, false, static_cast<int>(a.aes->keylen),
                                   static_cast<int>(a.ivSz));
  if (ctx == nullptr || !GcmStart(ctx, a.aes, a.iv, a.authIn, a.authInSz, false)) {
    ERR_clear_error();
    return CRYPTOCB_UNAVAILABLE;  // nothing written yet
  }
  int n = 0;
  if (a.sz > 0 && (EVP_CipherUpdate(ctx, a.out, &n, a.in, static_cast<int>(a.sz)) != 1 ||
                   n != static_cast<int>(a.sz))) {
    return GcmFailedMidway(a.out, a.sz);
  }
  // EVP compares the tag in constant time (CRYPTO_memcmp) inside Final.
  int tail = 0;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(a.authTagSz),
                          const_cast<byte*>(a.authTag)) != 1 ||
      EVP_CipherFinal_ex(ctx, a.out + n, &tail) != 1) {
    // Never leave unauthenticated plaintext behind.
    if (a.sz > 0) OPENSSL_cleanse(a.out, a.sz);
    ERR_clear_error();
    g_counts.gcm_dec.Add();
    g_counts.gcm_auth_fail.Add();
    return AES_GCM_AUTH_E;
  }
  g_counts.gcm_dec.Add();
  return 0;
}

int Cipher(ThreadState& st, wc_CryptoInfo* info) {
  if (info->cipher.type != WC_CIPHER_AES_GCM) return CRYPTOCB_UNAVAILABLE;
  return info->cipher.enc ? GcmEncrypt(st, info->cipher.aesgcm_enc)
                          : GcmDecrypt(st, info->cipher.aesgcm_dec);
}

// ---- ECC: shared helpers -----------------------------------------------------------------

int CurveIndex(int wolf_id) {
  for (int i = 0; i < kCurveCount; ++i) {
    if (kCurves[i].wolf_id == wolf_id) return i;
  }
  return -1;
}

int KeyCurve(const ecc_key* key) {
  return key == nullptr || key->dp == nullptr ? -1 : CurveIndex(key->dp->id);
}

CurveState* Curve(ThreadState& st, int c) {
  CurveState& cs = st.curves[c];
  if (cs.q != nullptr) return &cs;  // the last piece made: all are there
  // After an allocation failure the next call makes only the missing pieces (no leak, and
  // never a half-made state handed out); what exists is freed at thread exit.
  if (cs.group == nullptr) cs.group = EC_GROUP_new_by_curve_name(kCurves[c].nid);
  if (cs.d == nullptr && (cs.d = BN_secure_new()) != nullptr) {
    BN_set_flags(cs.d, BN_FLG_CONSTTIME);
  }
  if (cs.x == nullptr) cs.x = BN_new();
  if (cs.y == nullptr) cs.y = BN_new();
  if (cs.group == nullptr || cs.d == nullptr || cs.x == nullptr || cs.y == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  cs.q = EC_POINT_new(cs.group);
  if (cs.q == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  return &cs;
}

// The private scalar of a wolfSSL key, big-endian, padded to the curve size.
bool PrivateScalar(ecc_key* key, int c, unsigned char* out) {
  word32 len = kMaxScalar;
  return wc_ecc_export_private_only(key, out, &len) == 0 &&
         static_cast<int>(len) == kCurves[c].size;
}

// Loads a scalar into cs.d; false unless 0 < d < n.
bool LoadScalar(CurveState& cs, const unsigned char* bytes, int len) {
  if (BN_bin2bn(bytes, len, cs.d) == nullptr || BN_is_zero(cs.d)) return false;
  return BN_cmp(cs.d, EC_GROUP_get0_order(cs.group)) < 0;
}

// ---- ECC key generation and ECDH -------------------------------------------------------

int EccKeyGen(ThreadState& st, EccKeyGenArgs& a) {
  int c = a.curveId > ECC_CURVE_DEF ? CurveIndex(a.curveId) : -1;
  if (a.curveId <= ECC_CURVE_DEF) {  // the default curve of that size
    for (int i = 0; i < kCurveCount; ++i) {
      if (kCurves[i].size == a.size) c = i;
    }
  }
  CurveState* cs = c < 0 ? nullptr : Curve(st, c);
  if (cs == nullptr) return CRYPTOCB_UNAVAILABLE;
  const int size = kCurves[c].size;
  unsigned char d[kMaxScalar], x[kMaxScalar], y[kMaxScalar];
  bool ok = true;
  do {  // uniform in [1, n-1]
    ok = BN_priv_rand_range(cs->d, EC_GROUP_get0_order(cs->group)) == 1;
  } while (ok && BN_is_zero(cs->d));
  ok = ok && EC_POINT_mul(cs->group, cs->q, cs->d, nullptr, nullptr, st.bn) == 1 &&
       EC_POINT_get_affine_coordinates(cs->group, cs->q, cs->x, cs->y, st.bn) == 1 &&
       BN_bn2binpad(cs->d, d, size) == size && BN_bn2binpad(cs->x, x, size) == size &&
       BN_bn2binpad(cs->y, y, size) == size;
  BN_clear(cs->d);
  int ret = CRYPTOCB_UNAVAILABLE;
  // wc_ecc_import_unsigned keeps the key's devId: its later ECDH comes back here.
  if (ok) ret = wc_ecc_import_unsigned(a.key, x, y, d, kCurves[c].wolf_id);
  OPENSSL_cleanse(d, sizeof(d));
  if (!ok) return CRYPTOCB_UNAVAILABLE;
  if (ret == 0) g_counts.ecc_keygen.Add();
  return ret;
}

int Ecdh(ThreadState& st, EcdhArgs& a) {
  const int c = KeyCurve(a.private_key);
  if (c < 0 || KeyCurve(a.public_key) != c) return CRYPTOCB_UNAVAILABLE;
  CurveState* cs = Curve(st, c);
  if (cs == nullptr) return CRYPTOCB_UNAVAILABLE;
  const int size = kCurves[c].size;
  if (*a.outlen < static_cast<word32>(size)) return BUFFER_E;
  unsigned char d[kMaxScalar], point[kMaxPoint];
  word32 point_len = sizeof(point);
  if (!PrivateScalar(a.private_key, c, d) ||
      wc_ecc_export_x963(a.public_key, point, &point_len) != 0) {
    OPENSSL_cleanse(d, sizeof(d));
    return CRYPTOCB_UNAVAILABLE;
  }
  const bool scalar_ok = LoadScalar(*cs, d, size);
  OPENSSL_cleanse(d, sizeof(d));
  if (!scalar_ok) {
    BN_clear(cs->d);
    return ECC_PRIV_KEY_E;
  }
  // oct2point refuses a point not on the curve; P-256/P-384 have cofactor 1.
  if (EC_POINT_oct2point(cs->group, cs->q, point, point_len, st.bn) != 1 ||
      EC_POINT_is_at_infinity(cs->group, cs->q)) {
    BN_clear(cs->d);
    ERR_clear_error();
    g_counts.errors.Add();
    return ECC_BAD_ARG_E;
  }
  // The shared point is the secret: its own object, cleared when freed.
  EC_POINT* r = EC_POINT_new(cs->group);
  const bool ok = r != nullptr && EC_POINT_mul(cs->group, r, nullptr, cs->q, cs->d, st.bn) == 1 &&
                  !EC_POINT_is_at_infinity(cs->group, r) &&
                  EC_POINT_get_affine_coordinates(cs->group, r, cs->x, nullptr, st.bn) == 1 &&
                  BN_bn2binpad(cs->x, a.out, size) == size;
  EC_POINT_clear_free(r);
  BN_clear(cs->d);
  BN_clear(cs->x);
  if (!ok) {
    ERR_clear_error();
    return CRYPTOCB_UNAVAILABLE;
  }
  *a.outlen = static_cast<word32>(size);
  g_counts.ecdh.Add();
  return 0;
}

// ---- ECDSA -------------------------------------------------------------------------------

// An EC EVP_PKEY from a public point and, for signing, its private scalar.
EVP_PKEY* MakeEcPkey(int c, const unsigned char* point, size_t point_len, const BIGNUM* d) {
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* pkey = nullptr;
  bool ok = bld != nullptr && ctx != nullptr &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            kCurves[c].group_name, 0) == 1 &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                             point_len) == 1 &&
            (d == nullptr || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) == 1);
  ok = ok && (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr &&
       EVP_PKEY_fromdata_init(ctx) == 1 &&
       EVP_PKEY_fromdata(ctx, &pkey, d == nullptr ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEYPAIR,
                         params) == 1;
  OSSL_PARAM_free(params);  // d came from the secure heap: its copy is cleared on free
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    EVP_PKEY_free(pkey);
    return nullptr;
  }
  return pkey;
}

// Finds or makes the cache entry for these key bytes; null if libcrypto refused the key.
PkeyEntry* CachedKey(PkeyEntry* cache, int size, int* next, int c, const unsigned char* bytes,
                     size_t len, bool sign, CurveState& cs, BN_CTX* bn) {
  for (int i = 0; i < size; ++i) {
    PkeyEntry& e = cache[i];
    if (e.ctx != nullptr && e.curve == c && e.len == len &&
        CRYPTO_memcmp(e.bytes, bytes, len) == 0) {
      return &e;
    }
  }
  unsigned char point[kMaxPoint];
  size_t point_len = len;
  if (sign) {  // the public point d*G, which the EVP key wants beside d
    if (!LoadScalar(cs, bytes, static_cast<int>(len)) ||
        EC_POINT_mul(cs.group, cs.q, cs.d, nullptr, nullptr, bn) != 1) {
      BN_clear(cs.d);
      return nullptr;
    }
    point_len = EC_POINT_point2oct(cs.group, cs.q, POINT_CONVERSION_UNCOMPRESSED, point,
                                   sizeof(point), bn);
  } else {
    std::memcpy(point, bytes, len);
  }
  EVP_PKEY* pkey = point_len == 0 ? nullptr
                                  : MakeEcPkey(c, point, point_len, sign ? cs.d : nullptr);
  BN_clear(cs.d);
  EVP_PKEY_CTX* ctx = pkey == nullptr ? nullptr : EVP_PKEY_CTX_new_from_pkey(nullptr, pkey,
                                                                             nullptr);
  if (ctx == nullptr || (sign ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) != 1) {
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return nullptr;
  }
  PkeyEntry& e = cache[*next];
  *next = (*next + 1) % size;
  ClearEntry(e);
  e.curve = c;
  e.len = len;
  std::memcpy(e.bytes, bytes, len);
  e.pkey = pkey;
  e.ctx = ctx;
  return &e;
}

int EcdsaSign(ThreadState& st, EcdsaSignArgs& a) {
  const int c = KeyCurve(a.key);
  CurveState* cs = c < 0 ? nullptr : Curve(st, c);
  if (cs == nullptr) return CRYPTOCB_UNAVAILABLE;
  unsigned char d[kMaxScalar];
  PkeyEntry* e = nullptr;
  if (PrivateScalar(a.key, c, d)) {
    e = CachedKey(st.sign, kSignCacheSize, &st.sign_next, c, d,
                  static_cast<size_t>(kCurves[c].size), true, *cs, st.bn);
  }
  OPENSSL_cleanse(d, sizeof(d));
  size_t sig_len = *a.outlen;
  if (e == nullptr || EVP_PKEY_sign(e->ctx, a.out, &sig_len, a.in, a.inlen) != 1) {
    ERR_clear_error();  // e.g. an output buffer below the DER maximum: wolfSSL signs
    return CRYPTOCB_UNAVAILABLE;
  }
  *a.outlen = static_cast<word32>(sig_len);
  g_counts.ecdsa_sign.Add();
  return 0;
}

int EcdsaVerify(ThreadState& st, EcdsaVerifyArgs& a) {
  const int c = KeyCurve(a.key);
  CurveState* cs = c < 0 ? nullptr : Curve(st, c);
  if (cs == nullptr) return CRYPTOCB_UNAVAILABLE;
  unsigned char point[kMaxPoint];
  word32 point_len = sizeof(point);
  if (wc_ecc_export_x963(a.key, point, &point_len) != 0) return CRYPTOCB_UNAVAILABLE;
  PkeyEntry* e = CachedKey(st.verify, kVerifyCacheSize, &st.verify_next, c, point, point_len,
                           false, *cs, st.bn);
  if (e == nullptr) {  // not a point on the curve, or libcrypto failed: let wolfSSL judge
    ERR_clear_error();
    return CRYPTOCB_UNAVAILABLE;
  }
  // 1: valid; 0: a well-formed signature that does not verify; <0: malformed DER.
  const int r = EVP_PKEY_verify(e->ctx, a.sig, a.siglen, a.hash, a.hashlen);
  if (r != 1) ERR_clear_error();
  *a.res = r == 1 ? 1 : 0;
  g_counts.ecdsa_verify.Add();
  return 0;
}

// ---- X25519 ------------------------------------------------------------------------------
//
// libcrypto 3.0 computes an X25519 public key it is not given (EVP_PKEY_new_raw_private_key,
// EVP_PKEY_keygen) with portable C (~77-97 us here), no faster than wolfSSL's (~97 us), but
// its derive runs the x86-64 assembly ladder (~60 us). The public key is X25519(k, 9)
// (RFC 7748 section 6.1), so keys are made with a derive against the base point; every EVP
// key is imported with both halves, so libcrypto never recomputes one.

constexpr size_t kX25519 = 32;
constexpr unsigned char kX25519Base[kX25519] = {9};  // u = 9, little-endian

// An X25519 EVP key from a public key and, for a key pair, its private key, through this
// thread's import context (made once: fetching the key manager per call costs ~4 us). A
// derive reads only the private half.
EVP_PKEY* MakeX25519Pkey(ThreadState& st, const unsigned char* priv, const unsigned char* pub) {
  if (st.x25519_import == nullptr) {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr);
    if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx) != 1) {
      EVP_PKEY_CTX_free(ctx);
      return nullptr;
    }
    st.x25519_import = ctx;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                        const_cast<unsigned char*>(pub), kX25519),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY,
                                        const_cast<unsigned char*>(priv), kX25519),
      OSSL_PARAM_construct_end()};
  if (priv == nullptr) params[1] = OSSL_PARAM_construct_end();
  EVP_PKEY* pkey = nullptr;
  if (EVP_PKEY_fromdata(st.x25519_import, &pkey,
                        priv == nullptr ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEYPAIR,
                        params) != 1) {
    pkey = nullptr;
  }
  return pkey;
}

// The base point as a libcrypto peer key, made once per thread.
EVP_PKEY* X25519Base(ThreadState& st) {
  if (st.x25519_base == nullptr) st.x25519_base = MakeX25519Pkey(st, nullptr, kX25519Base);
  return st.x25519_base;
}

// A derive context of `mine` with peer `theirs`; null if libcrypto refused. The peer is not
// "validated": for X25519 libcrypto's check only asks that a public key be present.
EVP_PKEY_CTX* X25519DeriveContext(EVP_PKEY* mine, EVP_PKEY* theirs) {
  EVP_PKEY_CTX* ctx = mine == nullptr || theirs == nullptr
                          ? nullptr
                          : EVP_PKEY_CTX_new_from_pkey(nullptr, mine, nullptr);
  if (ctx != nullptr && (EVP_PKEY_derive_init(ctx) != 1 ||
                         EVP_PKEY_derive_set_peer_ex(ctx, theirs, 0) != 1)) {
    EVP_PKEY_CTX_free(ctx);
    ctx = nullptr;
  }
  return ctx;
}

int X25519KeyGen(ThreadState& st, X25519KeyGenArgs& a) {
  if (a.size != static_cast<int>(kX25519)) return CRYPTOCB_UNAVAILABLE;
  EVP_PKEY* base = X25519Base(st);
  unsigned char priv[kX25519], pub[kX25519];
  EVP_PKEY* pkey = nullptr;
  if (base != nullptr && RAND_priv_bytes(priv, sizeof(priv)) == 1) {
    // RFC 7748 clamping, as wolfSSL stores its own private keys.
    priv[0] &= 248;
    priv[31] &= 127;
    priv[31] |= 64;
    pkey = MakeX25519Pkey(st, priv, kX25519Base);  // the public half is made below
  }
  EVP_PKEY_CTX* ctx = X25519DeriveContext(pkey, base);
  size_t pub_len = sizeof(pub);
  const bool ok = ctx != nullptr && EVP_PKEY_derive(ctx, pub, &pub_len) == 1 &&
                  pub_len == kX25519;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  int ret = CRYPTOCB_UNAVAILABLE;
  if (ok) {
    ret = wc_curve25519_import_private_raw_ex(priv, sizeof(priv), pub, sizeof(pub), a.key,
                                              EC25519_LITTLE_ENDIAN);
  } else {
    ERR_clear_error();
  }
  OPENSSL_cleanse(priv, sizeof(priv));
  if (ret == 0) g_counts.x25519_keygen.Add();
  return ret;
}

int X25519Shared(ThreadState& st, X25519Args& a) {
  if (*a.outlen < kX25519) return BUFFER_E;
  unsigned char priv[kX25519], pub[kX25519], peer[kX25519];
  word32 priv_len = kX25519, pub_len = kX25519, peer_len = kX25519;
  if (wc_curve25519_export_private_raw_ex(a.private_key, priv, &priv_len,
                                          EC25519_LITTLE_ENDIAN) != 0 ||
      wc_curve25519_export_public_ex(a.private_key, pub, &pub_len, EC25519_LITTLE_ENDIAN) !=
          0 ||
      wc_curve25519_export_public_ex(a.public_key, peer, &peer_len, EC25519_LITTLE_ENDIAN) !=
          0) {
    OPENSSL_cleanse(priv, sizeof(priv));
    return CRYPTOCB_UNAVAILABLE;
  }
  EVP_PKEY* mine = MakeX25519Pkey(st, priv, pub);
  OPENSSL_cleanse(priv, sizeof(priv));
  EVP_PKEY* theirs = MakeX25519Pkey(st, nullptr, peer);
  EVP_PKEY_CTX* ctx = X25519DeriveContext(mine, theirs);
  const bool ready = ctx != nullptr;
  size_t out_len = *a.outlen;
  // libcrypto refuses an all-zero secret (a small-order peer point): an error, not a retry.
  const bool derived = ready && EVP_PKEY_derive(ctx, a.out, &out_len) == 1 &&
                       out_len == kX25519;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(theirs);
  EVP_PKEY_free(mine);
  if (!ready) {
    ERR_clear_error();
    return CRYPTOCB_UNAVAILABLE;
  }
  if (!derived) {
    OPENSSL_cleanse(a.out, kX25519);
    ERR_clear_error();
    g_counts.errors.Add();
    return ECC_BAD_ARG_E;
  }
  if (a.endian == EC25519_BIG_ENDIAN) std::reverse(a.out, a.out + kX25519);
  *a.outlen = static_cast<word32>(kX25519);
  g_counts.x25519_shared.Add();
  return 0;
}

// ---- dispatch ----------------------------------------------------------------------------

int PublicKey(ThreadState& st, wc_CryptoInfo* info) {
  switch (info->pk.type) {
    case WC_PK_TYPE_EC_KEYGEN:
      return EccKeyGen(st, info->pk.eckg);
    case WC_PK_TYPE_ECDH:
      return Ecdh(st, info->pk.ecdh);
    case WC_PK_TYPE_ECDSA_SIGN:
      return EcdsaSign(st, info->pk.eccsign);
    case WC_PK_TYPE_ECDSA_VERIFY:
      return EcdsaVerify(st, info->pk.eccverify);
    case WC_PK_TYPE_CURVE25519_KEYGEN:
      return X25519KeyGen(st, info->pk.curve25519kg);
    case WC_PK_TYPE_CURVE25519:
      return X25519Shared(st, info->pk.curve25519);
    default:
      return CRYPTOCB_UNAVAILABLE;
  }
}

int Callback(int dev_id, wc_CryptoInfo* info, void* /*ctx*/) {
  if (dev_id != kDevId || info == nullptr) return CRYPTOCB_UNAVAILABLE;
  int ret = CRYPTOCB_UNAVAILABLE;
  if (info->algo_type == WC_ALGO_TYPE_CIPHER || info->algo_type == WC_ALGO_TYPE_PK) {
    ThreadState* st = State();
    if (st != nullptr) {
      ret = info->algo_type == WC_ALGO_TYPE_CIPHER ? Cipher(*st, info) : PublicKey(*st, info);
    }
  }
  if (ret == CRYPTOCB_UNAVAILABLE) g_counts.declined.Add();
  return ret;
}

}  // namespace

void SetCryptoOffload(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }
bool CryptoOffloadEnabled() { return g_enabled.load(std::memory_order_relaxed); }

int CryptoOffloadDevId() {
  static const int dev_id = [] {
    // wolfCrypt_Init (reference counted) clears the device table on its first call, so it
    // must come before the registration.
    if (wolfCrypt_Init() != 0) return kNoCryptoDevice;
    return wc_CryptoCb_RegisterDevice(kDevId, Callback, nullptr) == 0 ? kDevId
                                                                      : kNoCryptoDevice;
  }();
  return dev_id;
}

void* CryptoOffloadHeapTag() { return &g_heap_tag; }

CryptoOffloadCounts GetCryptoOffloadCounts() {
  CryptoOffloadCounts c;
  c.aes_gcm_encrypt = g_counts.gcm_enc.Get();
  c.aes_gcm_decrypt = g_counts.gcm_dec.Get();
  c.aes_gcm_auth_failures = g_counts.gcm_auth_fail.Get();
  c.ecc_keygen = g_counts.ecc_keygen.Get();
  c.ecdh = g_counts.ecdh.Get();
  c.ecdsa_sign = g_counts.ecdsa_sign.Get();
  c.ecdsa_verify = g_counts.ecdsa_verify.Get();
  c.x25519_keygen = g_counts.x25519_keygen.Get();
  c.x25519_shared = g_counts.x25519_shared.Get();
  c.x25519_routed = g_counts.x25519_routed.Get();
  c.x25519_zero_refused = g_counts.x25519_zero_refused.Get();
  c.sha256_finals = g_counts.sha256_finals.Get();
  c.seeds = g_counts.seeds.Get();
  c.declined = g_counts.declined.Get();
  c.errors = g_counts.errors.Get();
  return c;
}

}  // namespace ringmail::tls

// ---- wolfSSL's TLS 1.3 X25519 key shares ---------------------------------------------------
//
// wolfSSL 5.5.4 makes a TLS 1.3 X25519 key share in src/tls.c TLSX_KeyShare_GenX25519Key,
// which initialises the key with INVALID_DEVID (line 6799, not the context's device id) and
// calls wc_curve25519_make_key; TLSX_KeyShare_ProcessX25519 then computes the secret with
// that key (line 7644). Neither the device nor the PK callbacks (internal.c X25519MakeKey /
// X25519SharedSecret, TLS 1.2 only) are consulted. libwolfssl.so calls both functions below
// through its PLT, so the executable's definitions take the calls; each forwards to
// wolfSSL's own (dlsym RTLD_NEXT). tests/tls/crypto_offload_test.cc fails if a wolfSSL
// build stops routing the calls here (a handshake's X25519 counters stay still).

namespace ringmail::tls {
namespace {

using Curve25519InitEx = int (*)(curve25519_key*, void*, int);
using Curve25519SharedEx = int (*)(curve25519_key*, curve25519_key*, byte*, word32*, int);

template <typename Fn>
Fn WolfSslOwn(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  RM_CHECK(f != nullptr) << name << " not found after the executable (" << dlerror()
                         << "): wolfSSL must be linked as a shared library";
  return reinterpret_cast<Fn>(f);
}

}  // namespace
}  // namespace ringmail::tls

// A key initialised with the heap tag of an offloading context and no device (wolfSSL's
// TLS 1.3 key share: the context's heap, INVALID_DEVID) gets the device's id, so its
// make_key and shared_secret come to X25519KeyGen / X25519Shared above. Every other key is
// initialised exactly as asked.
extern "C" int wc_curve25519_init_ex(curve25519_key* key, void* heap, int devId) {
  using namespace ringmail::tls;
  static const Curve25519InitEx own = WolfSslOwn<Curve25519InitEx>("wc_curve25519_init_ex");
  if (heap == &g_heap_tag && devId == INVALID_DEVID) {
    devId = kDevId;
    g_counts.x25519_routed.Add();
  }
  return own(key, heap, devId);
}

// RFC 8446 section 7.4.2 / RFC 7748 section 6.1: an all-zero X25519 result (the peer sent a
// small-order point) is an error. wolfSSL 5.5.4's software returns it (Debian's build lacks
// WOLFSSL_ECDHX_SHARED_NOT_ZERO, and wc_curve25519_check_public lets the two order-8 points
// through); the device already refuses it. Checked for every caller, offload on or off.
extern "C" int wc_curve25519_shared_secret_ex(curve25519_key* private_key,
                                              curve25519_key* public_key, byte* out,
                                              word32* outlen, int endian) {
  using namespace ringmail::tls;
  static const Curve25519SharedEx own =
      WolfSslOwn<Curve25519SharedEx>("wc_curve25519_shared_secret_ex");
  const int ret = own(private_key, public_key, out, outlen, endian);
  if (ret != 0) return ret;
  byte any = 0;  // constant time: the result is a secret
  for (word32 i = 0; i < *outlen; ++i) any |= out[i];
  if (any == 0) {
    OPENSSL_cleanse(out, *outlen);
    g_counts.x25519_zero_refused.Add();
    return ECC_OUT_OF_RANGE_E;
  }
  return 0;
}

// ---- SHA-256 ---------------------------------------------------------------------------
//
// wolfSSL's SHA-256 compression is portable C (Debian builds it without USE_INTEL_SPEEDUP):
// 9% of ringmaild's CPU in the new-connection bench, for the TLS 1.3 transcript and key
// schedule (HMAC, HKDF) and its Hash-DRBG. libcrypto's uses the CPU's SHA extensions or
// AVX2. wolfSSL keeps a hash in progress as the state words, the pending bytes of the block
// and the byte count (lo/hi words); libcrypto's SHA256_CTX as the state words, the pending
// bytes and the bit count (SHA256_Update/Final: deprecated in 3.0, still the only libcrypto
// API that continues a hash from a state). The two convert exactly, so the functions below
// leave every wc_Sha256 as wolfSSL's own would (Copy, GetHash, FinalRaw and wolfSSL's code
// keep working on it), and either library can continue the other's hash.

namespace ringmail::tls {
namespace {

using Sha256UpdateFn = int (*)(wc_Sha256*, const byte*, word32);
using Sha256FinalFn = int (*)(wc_Sha256*, byte*);

static_assert(sizeof(wc_Sha256::buffer) == WC_SHA256_BLOCK_SIZE &&
              sizeof(SHA256_CTX::data) == WC_SHA256_BLOCK_SIZE &&
              sizeof(wc_Sha256::digest) == sizeof(SHA256_CTX::h));

// Through libcrypto unless the process switch is off or the hash belongs to another device
// (wolfSSL's own then asks that device first). A buffer wolfSSL would refuse goes to it.
bool LibcryptoSha256(const wc_Sha256* sha) {
  return CryptoOffloadEnabled() && (sha->devId == INVALID_DEVID || sha->devId == kDevId) &&
         sha->buffLen < WC_SHA256_BLOCK_SIZE;
}

void ToLibcrypto(const wc_Sha256& w, SHA256_CTX* c) {
  std::memcpy(c->h, w.digest, sizeof(c->h));
  c->Nl = w.loLen << 3;
  c->Nh = (w.hiLen << 3) | (w.loLen >> 29);
  std::memcpy(c->data, w.buffer, w.buffLen);
  c->num = w.buffLen;
  c->md_len = SHA256_DIGEST_LENGTH;
}

void FromLibcrypto(const SHA256_CTX& c, wc_Sha256* w) {
  std::memcpy(w->digest, c.h, sizeof(w->digest));
  w->loLen = (c.Nl >> 3) | (c.Nh << 29);
  w->hiLen = c.Nh >> 3;
  std::memcpy(w->buffer, c.data, c.num);
  w->buffLen = c.num;
}

// What wolfSSL's wc_Sha256Final leaves (its InitSha256): the initial state, no flags, the
// default device; the heap kept. The block buffer is wiped too (HMAC key material).
void ResetSha256(wc_Sha256* w) {
  static constexpr word32 kInitial[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                                         0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};
  std::memcpy(w->digest, kInitial, sizeof(w->digest));
  OPENSSL_cleanse(w->buffer, sizeof(w->buffer));
  w->buffLen = 0;
  w->loLen = 0;
  w->hiLen = 0;
#ifdef WOLFSSL_HASH_FLAGS
  w->flags = 0;
#endif
  w->devId = wc_CryptoCb_DefaultDevID();
}

}  // namespace
}  // namespace ringmail::tls

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

extern "C" int wc_Sha256Update(wc_Sha256* sha256, const byte* data, word32 len) {
  using namespace ringmail::tls;
  static const Sha256UpdateFn own = WolfSslOwn<Sha256UpdateFn>("wc_Sha256Update");
  if (sha256 == nullptr || data == nullptr || len == 0 || !LibcryptoSha256(sha256)) {
    return own(sha256, data, len);  // its answers to bad arguments, or its own code
  }
  SHA256_CTX c;
  ToLibcrypto(*sha256, &c);
  SHA256_Update(&c, data, len);  // always 1
  FromLibcrypto(c, sha256);
  OPENSSL_cleanse(&c, sizeof(c));
  return 0;
}

extern "C" int wc_Sha256Final(wc_Sha256* sha256, byte* hash) {
  using namespace ringmail::tls;
  static const Sha256FinalFn own = WolfSslOwn<Sha256FinalFn>("wc_Sha256Final");
  if (sha256 == nullptr || hash == nullptr || !LibcryptoSha256(sha256)) {
    return own(sha256, hash);
  }
  SHA256_CTX c;
  ToLibcrypto(*sha256, &c);
  SHA256_Final(hash, &c);  // always 1; the digest big-endian, as wolfSSL writes it
  OPENSSL_cleanse(&c, sizeof(c));
  ResetSha256(sha256);
  g_counts.sha256_finals.Add();
  return 0;
}

#pragma GCC diagnostic pop

// ---- DRBG seeds ------------------------------------------------------------------------
//
// wolfSSL instantiates a Hash-DRBG for every WOLFSSL object (so for every connection, on
// both ends) and seeds it from wc_GenerateSeed, which in Debian's build opens /dev/urandom,
// reads and closes it: three system calls per instantiation (two instantiations per
// connection in a TLS 1.3 client). getrandom(2) reads the same kernel generator in one
// call, without a file descriptor (and, unlike the device, waits for the generator's first
// seeding at boot). libwolfssl.so calls wc_GenerateSeed through its PLT; on any failure of
// getrandom wolfSSL's own source runs.

namespace ringmail::tls {
namespace {
using GenerateSeedFn = int (*)(OS_Seed*, byte*, word32);
}  // namespace
}  // namespace ringmail::tls

extern "C" int wc_GenerateSeed(OS_Seed* os, byte* output, word32 sz) {
  using namespace ringmail::tls;
  static const GenerateSeedFn own = WolfSslOwn<GenerateSeedFn>("wc_GenerateSeed");
  if (output == nullptr) return own(os, output, sz);
  word32 done = 0;
  while (done < sz) {
    const ssize_t n = getrandom(output + done, sz - done, 0);
    if (n > 0) {
      done += static_cast<word32>(n);
    } else if (n < 0 && errno != EINTR) {
      return own(os, output, sz);  // no getrandom (ENOSYS, a seccomp filter): the device
    }
  }
  g_counts.seeds.Add();
  return 0;
}
