// The libcrypto crypto device (tls/crypto_offload.h) at the wolfCrypt level: AES-GCM
// known-answer vectors (McGrew & Viega's GCM spec test cases, as NIST's GCMVS uses) through
// the device; device against wolfSSL's software for TLS 1.2/1.3 record shapes, byte for byte
// and decrypting across; tampered tags, ciphertext and AAD; ECDH, ECDSA and X25519 between a
// device key and a software key. Counters prove which side did the work.
#include "tls/crypto_offload.h"

// libcrypto before wolfSSL: Debian's wolfssl/options.h defines OPENSSL_NO_EC.
#include <openssl/evp.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/tls/test_pki_util.h"
#include "tls/session.h"

namespace ringmail::tls {
namespace {

using Bytes = std::vector<byte>;

Bytes Hex(const char* hex) {
  const std::string s = absl::HexStringToBytes(hex);
  return Bytes(s.begin(), s.end());
}

Bytes Random(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  Bytes b(n);
  for (byte& x : b) x = static_cast<byte>(gen());
  return b;
}

// An Aes keyed for GCM on the device (dev) or in wolfSSL's software (INVALID_DEVID).
class GcmKey {
 public:
  GcmKey(const Bytes& key, int dev) {
    EXPECT_EQ(wc_AesInit(&aes_, nullptr, dev), 0);
    EXPECT_EQ(wc_AesGcmSetKey(&aes_, key.data(), static_cast<word32>(key.size())), 0);
  }
  ~GcmKey() { wc_AesFree(&aes_); }
  GcmKey(const GcmKey&) = delete;
  GcmKey& operator=(const GcmKey&) = delete;

  int Encrypt(const Bytes& iv, const Bytes& aad, const Bytes& plain, Bytes* cipher,
              Bytes* tag, size_t tag_len = 16) {
    cipher->assign(plain.size(), 0);
    tag->assign(tag_len, 0);
    return wc_AesGcmEncrypt(&aes_, cipher->data(), plain.data(),
                            static_cast<word32>(plain.size()), iv.data(),
                            static_cast<word32>(iv.size()), tag->data(),
                            static_cast<word32>(tag_len), aad.data(),
                            static_cast<word32>(aad.size()));
  }
  int Decrypt(const Bytes& iv, const Bytes& aad, const Bytes& cipher, const Bytes& tag,
              Bytes* plain) {
    plain->assign(cipher.size(), 0xAA);
    return wc_AesGcmDecrypt(&aes_, plain->data(), cipher.data(),
                            static_cast<word32>(cipher.size()), iv.data(),
                            static_cast<word32>(iv.size()), tag.data(),
                            static_cast<word32>(tag.size()), aad.data(),
                            static_cast<word32>(aad.size()));
  }
  Aes* raw() { return &aes_; }

 private:
  Aes aes_{};
};

class CryptoOffloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dev_ = CryptoOffloadDevId();
    ASSERT_NE(dev_, kNoCryptoDevice) << "the libcrypto device did not register";
    ASSERT_EQ(wc_InitRng(&rng_), 0);
  }
  void TearDown() override { wc_FreeRng(&rng_); }

  // Every small-order peer value against a fresh key on `dev` (the device or software).
  void X25519RefusesAllZeroSecrets(int dev);

  int dev_ = kNoCryptoDevice;
  WC_RNG rng_{};
};

struct GcmVector {
  const char* key;
  const char* iv;
  const char* aad;
  const char* plain;
  const char* cipher;
  const char* tag;
};

// The GCM specification's test cases 1-4 (AES-128) and 13-16 (AES-256).
constexpr char kP64[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr char kP60[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
constexpr char kK128[] = "feffe9928665731c6d6a8f9467308308";
constexpr char kK256[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr char kIv[] = "cafebabefacedbaddecaf888";
constexpr char kAad[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
const GcmVector kVectors[] = {
    {"00000000000000000000000000000000", "000000000000000000000000", "", "", "",
     "58e2fccefa7e3061367f1d57a4e7455a"},
    {"00000000000000000000000000000000", "000000000000000000000000", "",
     "00000000000000000000000000000000", "0388dace60b6a392f328c2b971b2fe78",
     "ab6e47d42cec13bdf53a67b21257bddf"},
    {kK128, kIv, "", kP64,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {kK128, kIv, kAad, kP60,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "00000000000000000000000000000000",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {kK256, kIv, "", kP64,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {kK256, kIv, kAad, kP60,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

TEST_F(CryptoOffloadTest, AesGcmKnownAnswersThroughTheDevice) {
  for (const GcmVector& v : kVectors) {
    SCOPED_TRACE(v.key);
    SCOPED_TRACE(v.plain);
    const CryptoOffloadCounts before = GetCryptoOffloadCounts();
    GcmKey key(Hex(v.key), dev_);
    Bytes cipher, tag, plain;
    ASSERT_EQ(key.Encrypt(Hex(v.iv), Hex(v.aad), Hex(v.plain), &cipher, &tag), 0);
    EXPECT_EQ(absl::BytesToHexString(std::string(cipher.begin(), cipher.end())), v.cipher);
    EXPECT_EQ(absl::BytesToHexString(std::string(tag.begin(), tag.end())), v.tag);
    ASSERT_EQ(key.Decrypt(Hex(v.iv), Hex(v.aad), Hex(v.cipher), Hex(v.tag), &plain), 0);
    EXPECT_EQ(plain, Hex(v.plain));
    const CryptoOffloadCounts after = GetCryptoOffloadCounts();
    EXPECT_EQ(after.aes_gcm_encrypt, before.aes_gcm_encrypt + 1);
    EXPECT_EQ(after.aes_gcm_decrypt, before.aes_gcm_decrypt + 1);
  }
}

// TLS records: 1.2 has 13 bytes of AAD (seq, type, version, length), 1.3 has 5 (the record
// header) and up to 2^14 + 1 bytes of inner plaintext (+ padding); 12-byte nonces, 16-byte tags.
TEST_F(CryptoOffloadTest, AesGcmMatchesWolfSslSoftwareByteForByte) {
  const size_t kSizes[] = {0, 1, 15, 16, 17, 255, 1024, 10240, 16384, 16385, 16640};
  uint32_t seed = 1;
  for (size_t key_len : {16u, 32u}) {
    const Bytes key_bytes = Random(key_len, seed++);
    GcmKey device(key_bytes, dev_);
    GcmKey software(key_bytes, INVALID_DEVID);
    for (size_t aad_len : {13u, 5u}) {
      for (size_t size : kSizes) {
        SCOPED_TRACE(testing::Message() << key_len << "-byte key, " << size << " bytes, aad "
                                        << aad_len);
        const Bytes iv = Random(12, seed++), aad = Random(aad_len, seed++);
        const Bytes plain = Random(size, seed++);
        Bytes c_dev, t_dev, c_sw, t_sw, back;
        ASSERT_EQ(device.Encrypt(iv, aad, plain, &c_dev, &t_dev), 0);
        ASSERT_EQ(software.Encrypt(iv, aad, plain, &c_sw, &t_sw), 0);
        EXPECT_EQ(c_dev, c_sw);
        EXPECT_EQ(t_dev, t_sw);
        ASSERT_EQ(software.Decrypt(iv, aad, c_dev, t_dev, &back), 0);  // device -> software
        EXPECT_EQ(back, plain);
        ASSERT_EQ(device.Decrypt(iv, aad, c_sw, t_sw, &back), 0);  // software -> device
        EXPECT_EQ(back, plain);
      }
    }
  }
}

TEST_F(CryptoOffloadTest, AesGcmInPlaceAndOddIvAndTagLengths) {
  const Bytes key_bytes = Random(16, 77);
  GcmKey device(key_bytes, dev_);
  GcmKey software(key_bytes, INVALID_DEVID);
  // TLS encrypts in place (out == in).
  const Bytes aad = Random(13, 78), iv = Random(12, 79), plain = Random(5000, 80);
  Bytes buf = plain, tag(16), c_sw, t_sw;
  ASSERT_EQ(wc_AesGcmEncrypt(device.raw(), buf.data(), buf.data(), 5000, iv.data(), 12,
                             tag.data(), 16, aad.data(), 13),
            0);
  ASSERT_EQ(software.Encrypt(iv, aad, plain, &c_sw, &t_sw), 0);
  EXPECT_EQ(buf, c_sw);
  EXPECT_EQ(tag, t_sw);
  ASSERT_EQ(wc_AesGcmDecrypt(device.raw(), buf.data(), buf.data(), 5000, iv.data(), 12,
                             tag.data(), 16, aad.data(), 13),
            0);
  EXPECT_EQ(buf, plain);
  // A 60-byte IV (GHASHed into the counter) and a 12-byte tag, then back to 12/16 on the
  // same thread's context.
  for (size_t iv_len : {60u, 8u, 12u}) {
    for (size_t tag_len : {12u, 16u}) {
      SCOPED_TRACE(testing::Message() << "iv " << iv_len << " tag " << tag_len);
      const Bytes odd_iv = Random(iv_len, static_cast<uint32_t>(iv_len));
      Bytes c_dev, t_dev, back;
      ASSERT_EQ(device.Encrypt(odd_iv, aad, plain, &c_dev, &t_dev, tag_len), 0);
      ASSERT_EQ(software.Encrypt(odd_iv, aad, plain, &c_sw, &t_sw, tag_len), 0);
      EXPECT_EQ(c_dev, c_sw);
      EXPECT_EQ(t_dev, t_sw);
      ASSERT_EQ(device.Decrypt(odd_iv, aad, c_sw, t_sw, &back), 0);
      EXPECT_EQ(back, plain);
    }
  }
}

TEST_F(CryptoOffloadTest, AesGcmTamperingFailsAndLeavesNoPlaintext) {
  const Bytes key_bytes = Random(32, 5);
  GcmKey device(key_bytes, dev_);
  const Bytes iv = Random(12, 6), aad = Random(13, 7), plain = Random(1000, 8);
  Bytes cipher, tag, out;
  ASSERT_EQ(device.Encrypt(iv, aad, plain, &cipher, &tag), 0);
  const uint64_t failures = GetCryptoOffloadCounts().aes_gcm_auth_failures;
  Bytes bad_tag = tag;
  bad_tag[15] ^= 0x01;
  EXPECT_EQ(device.Decrypt(iv, aad, cipher, bad_tag, &out), AES_GCM_AUTH_E);
  EXPECT_EQ(out, Bytes(plain.size(), 0)) << "unauthenticated plaintext left in the output";
  Bytes bad_cipher = cipher;
  bad_cipher[500] ^= 0x80;
  EXPECT_EQ(device.Decrypt(iv, aad, bad_cipher, tag, &out), AES_GCM_AUTH_E);
  Bytes bad_aad = aad;
  bad_aad[0] ^= 0x01;
  EXPECT_EQ(device.Decrypt(iv, bad_aad, cipher, tag, &out), AES_GCM_AUTH_E);
  Bytes bad_iv = iv;
  bad_iv[11] ^= 0x01;
  EXPECT_EQ(device.Decrypt(bad_iv, aad, cipher, tag, &out), AES_GCM_AUTH_E);
  EXPECT_EQ(GetCryptoOffloadCounts().aes_gcm_auth_failures, failures + 4);
  // The context is fine afterwards.
  ASSERT_EQ(device.Decrypt(iv, aad, cipher, tag, &out), 0);
  EXPECT_EQ(out, plain);
}

// wolfSSL 5.5.4's own decrypt takes any tag of 1..16 bytes, though its encrypt refuses
// tags below WOLFSSL_MIN_AUTH_TAG_SZ (12): a 1-byte tag is forged in 256 tries. TLS's GCM
// tags are 16 bytes; the device refuses a decrypt tag shorter than wolfSSL would make.
TEST_F(CryptoOffloadTest, AesGcmDecryptRefusesTruncatedTags) {
  const Bytes key_bytes = Random(16, 91);
  GcmKey device(key_bytes, dev_);
  const Bytes iv = Random(12, 92), aad = Random(13, 93), plain = Random(100, 94);
  Bytes cipher, tag, out;
  ASSERT_EQ(device.Encrypt(iv, aad, plain, &cipher, &tag), 0);
  for (size_t len : {1u, 4u, 8u, 11u}) {
    SCOPED_TRACE(testing::Message() << len << "-byte tag");
    const Bytes truncated(tag.begin(), tag.begin() + len);  // the right prefix
    EXPECT_NE(device.Decrypt(iv, aad, cipher, truncated, &out), 0);
    EXPECT_NE(out, plain) << "plaintext released under a truncated tag";
  }
  for (size_t len : {12u, 16u}) {  // what wolfSSL's encrypt makes: still accepted
    Bytes c, t;
    ASSERT_EQ(device.Encrypt(iv, aad, plain, &c, &t, len), 0);
    ASSERT_EQ(device.Decrypt(iv, aad, c, t, &out), 0);
    EXPECT_EQ(out, plain);
  }
}

// A call the device declines (an IV above its 64 bytes) runs in wolfSSL's software on the
// same Aes: the software key schedule must be there too, byte for byte, in place as well.
TEST_F(CryptoOffloadTest, AesGcmDeclinedCallsRunInSoftwareCorrectly) {
  const Bytes key_bytes = Random(32, 95);
  GcmKey device(key_bytes, dev_);
  GcmKey software(key_bytes, INVALID_DEVID);
  const Bytes iv = Random(100, 96), aad = Random(13, 97), plain = Random(3000, 98);
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  Bytes c_dev, t_dev, c_sw, t_sw, back;
  ASSERT_EQ(device.Encrypt(iv, aad, plain, &c_dev, &t_dev), 0);
  ASSERT_EQ(software.Encrypt(iv, aad, plain, &c_sw, &t_sw), 0);
  EXPECT_EQ(c_dev, c_sw);
  EXPECT_EQ(t_dev, t_sw);
  ASSERT_EQ(device.Decrypt(iv, aad, c_sw, t_sw, &back), 0);
  EXPECT_EQ(back, plain);
  Bytes bad = t_sw;
  bad[0] ^= 0x40;
  EXPECT_EQ(device.Decrypt(iv, aad, c_sw, bad, &back), AES_GCM_AUTH_E);
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  EXPECT_EQ(after.aes_gcm_encrypt, before.aes_gcm_encrypt);
  EXPECT_EQ(after.aes_gcm_decrypt, before.aes_gcm_decrypt);
  EXPECT_GE(after.declined, before.declined + 3);
}

// ---- ECC -----------------------------------------------------------------------------------

struct EccKey {
  EccKey(int dev) { EXPECT_EQ(wc_ecc_init_ex(&key, nullptr, dev), 0); }
  ~EccKey() { wc_ecc_free(&key); }
  EccKey(const EccKey&) = delete;
  EccKey& operator=(const EccKey&) = delete;
  ecc_key key{};
};

// Copies a software key's private and public parts into a key on `dev`.
void CopyEccKey(ecc_key* from, int curve, ecc_key* to) {
  byte x[48], y[48], d[48];
  word32 xl = sizeof(x), yl = sizeof(y), dl = sizeof(d);
  ASSERT_EQ(wc_ecc_export_private_raw(from, x, &xl, y, &yl, d, &dl), 0);
  ASSERT_EQ(wc_ecc_import_unsigned(to, x, y, d, curve), 0);
}

class EccOffloadTest : public CryptoOffloadTest,
                       public ::testing::WithParamInterface<std::pair<int, int>> {};

TEST_P(EccOffloadTest, EcdhAgreesBetweenDeviceAndSoftwareKeys) {
  const auto [curve, size] = GetParam();
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  EccKey device(dev_), software(INVALID_DEVID);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &device.key, curve), 0);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &software.key, curve), 0);
  // wolfSSL's timing-resistant ECDH blinds with an RNG of the key's own.
  ASSERT_EQ(wc_ecc_set_rng(&software.key, &rng_), 0);
  EXPECT_EQ(GetCryptoOffloadCounts().ecc_keygen, before.ecc_keygen + 1);
  EXPECT_EQ(wc_ecc_check_key(&device.key), 0) << "the device's key is not a valid key pair";
  byte a[48], b[48];
  word32 al = sizeof(a), bl = sizeof(b);
  ASSERT_EQ(wc_ecc_shared_secret(&device.key, &software.key, a, &al), 0);
  ASSERT_EQ(wc_ecc_shared_secret(&software.key, &device.key, b, &bl), 0);
  ASSERT_EQ(al, static_cast<word32>(size));
  ASSERT_EQ(bl, static_cast<word32>(size));
  EXPECT_EQ(Bytes(a, a + al), Bytes(b, b + bl));
  EXPECT_EQ(GetCryptoOffloadCounts().ecdh, before.ecdh + 1);
}

TEST_P(EccOffloadTest, EcdsaSignaturesVerifyAcross) {
  const auto [curve, size] = GetParam();
  EccKey software(INVALID_DEVID), device(dev_);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &software.key, curve), 0);
  CopyEccKey(&software.key, curve, &device.key);
  const Bytes hash = Random(size, 42);  // a digest of the curve's size
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  for (int round = 0; round < 2; ++round) {  // the second one finds the cached key
    byte sig[128];
    word32 sig_len = sizeof(sig);
    ASSERT_EQ(wc_ecc_sign_hash(hash.data(), static_cast<word32>(hash.size()), sig, &sig_len,
                               &rng_, &device.key),
              0);
    int ok = -1;
    ASSERT_EQ(wc_ecc_verify_hash(sig, sig_len, hash.data(), static_cast<word32>(hash.size()),
                                 &ok, &software.key),
              0);
    EXPECT_EQ(ok, 1) << "a device signature does not verify in software";
  }
  byte sig[128];
  word32 sig_len = sizeof(sig);
  ASSERT_EQ(wc_ecc_sign_hash(hash.data(), static_cast<word32>(hash.size()), sig, &sig_len,
                             &rng_, &software.key),
            0);
  int ok = -1;
  ASSERT_EQ(wc_ecc_verify_hash(sig, sig_len, hash.data(), static_cast<word32>(hash.size()), &ok,
                               &device.key),
            0);
  EXPECT_EQ(ok, 1) << "a software signature does not verify on the device";
  Bytes other = hash;
  other[0] ^= 0x01;
  ok = -1;
  ASSERT_EQ(wc_ecc_verify_hash(sig, sig_len, other.data(), static_cast<word32>(other.size()),
                               &ok, &device.key),
            0);
  EXPECT_EQ(ok, 0) << "the device accepted a signature over another hash";
  sig[sig_len - 1] ^= 0x01;
  ok = -1;
  wc_ecc_verify_hash(sig, sig_len, hash.data(), static_cast<word32>(hash.size()), &ok,
                     &device.key);
  EXPECT_EQ(ok, 0) << "the device accepted a tampered signature";
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  EXPECT_EQ(after.ecdsa_sign, before.ecdsa_sign + 2);
  EXPECT_EQ(after.ecdsa_verify, before.ecdsa_verify + 3);
}

TEST_P(EccOffloadTest, EcdhRefusesAPointOffTheCurve) {
  const auto [curve, size] = GetParam();
  EccKey device(dev_), bogus(INVALID_DEVID);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &device.key, curve), 0);
  Bytes x(size, 0), y(size, 0);
  x[size - 1] = 1;
  y[size - 1] = 1;  // (1, 1) is on neither curve
  ASSERT_EQ(wc_ecc_import_unsigned(&bogus.key, x.data(), y.data(), nullptr, curve), 0);
  byte out[48];
  word32 out_len = sizeof(out);
  EXPECT_NE(wc_ecc_shared_secret(&device.key, &bogus.key, out, &out_len), 0);
}

TEST_P(EccOffloadTest, EcdhOutputIsTheXCoordinateAndBoundedByTheBuffer) {
  const auto [curve, size] = GetParam();
  EccKey device(dev_), software(INVALID_DEVID);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &device.key, curve), 0);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &software.key, curve), 0);
  ASSERT_EQ(wc_ecc_set_rng(&software.key, &rng_), 0);
  std::vector<byte> out(size + 16, 0x5A);
  word32 out_len = static_cast<word32>(size - 1);  // one byte short
  EXPECT_NE(wc_ecc_shared_secret(&device.key, &software.key, out.data(), &out_len), 0);
  EXPECT_EQ(out, std::vector<byte>(size + 16, 0x5A)) << "written past a short buffer";
  out_len = static_cast<word32>(out.size());  // larger than needed: exactly `size` written
  ASSERT_EQ(wc_ecc_shared_secret(&device.key, &software.key, out.data(), &out_len), 0);
  ASSERT_EQ(out_len, static_cast<word32>(size));
  EXPECT_EQ(Bytes(out.begin() + size, out.end()), Bytes(16, 0x5A));
  byte ref[48];
  word32 ref_len = sizeof(ref);
  ASSERT_EQ(wc_ecc_shared_secret(&software.key, &device.key, ref, &ref_len), 0);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + size), Bytes(ref, ref + ref_len));
}

TEST_P(EccOffloadTest, EcdsaSignBoundedByTheBufferAndMalformedSignaturesAreInvalid) {
  const auto [curve, size] = GetParam();
  EccKey software(INVALID_DEVID), device(dev_);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &software.key, curve), 0);
  CopyEccKey(&software.key, curve, &device.key);
  const Bytes hash = Random(size, 43);
  std::vector<byte> sig(16 + 32, 0x33);
  word32 sig_len = 16;  // far below any DER signature
  EXPECT_NE(wc_ecc_sign_hash(hash.data(), static_cast<word32>(hash.size()), sig.data(),
                             &sig_len, &rng_, &device.key),
            0);
  EXPECT_EQ(Bytes(sig.begin() + 16, sig.end()), Bytes(32, 0x33)) << "written past the buffer";
  // Garbage, an empty SEQUENCE, r = 0 and s = 0: never "valid", whatever the return code.
  const std::vector<Bytes> malformed = {Bytes(8, 0xFF), Hex("3000"), Hex("3006020100020100"),
                                        Hex("300602010102010130")};
  for (const Bytes& m : malformed) {
    int ok = -1;
    wc_ecc_verify_hash(m.data(), static_cast<word32>(m.size()), hash.data(),
                       static_cast<word32>(hash.size()), &ok, &device.key);
    EXPECT_EQ(ok, 0) << absl::BytesToHexString(std::string(m.begin(), m.end()));
  }
}

// More signing keys than the per-thread cache holds, used in turns: every signature is made
// by the key asked for (verifies under its own public key, under no other).
TEST_P(EccOffloadTest, EcdsaKeyCacheNeverSignsWithAnotherKey) {
  const auto [curve, size] = GetParam();
  constexpr int kKeys = 7;
  std::vector<std::unique_ptr<EccKey>> sw, dev;
  for (int i = 0; i < kKeys; ++i) {
    sw.push_back(std::make_unique<EccKey>(INVALID_DEVID));
    dev.push_back(std::make_unique<EccKey>(dev_));
    ASSERT_EQ(wc_ecc_make_key_ex(&rng_, size, &sw[i]->key, curve), 0);
    CopyEccKey(&sw[i]->key, curve, &dev[i]->key);
  }
  const Bytes hash = Random(size, 44);
  for (int round = 0; round < 3 * kKeys; ++round) {
    const int i = (round * 3) % kKeys;
    byte sig[128];
    word32 sig_len = sizeof(sig);
    ASSERT_EQ(wc_ecc_sign_hash(hash.data(), static_cast<word32>(hash.size()), sig, &sig_len,
                               &rng_, &dev[i]->key),
              0);
    for (int j = 0; j < kKeys; ++j) {
      int ok = -1;
      ASSERT_EQ(wc_ecc_verify_hash(sig, sig_len, hash.data(), static_cast<word32>(hash.size()),
                                   &ok, &sw[j]->key),
                0);
      EXPECT_EQ(ok, i == j ? 1 : 0) << "signed with key " << i << ", checked with " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Curves, EccOffloadTest,
                         ::testing::Values(std::make_pair(int{ECC_SECP256R1}, 32),
                                           std::make_pair(int{ECC_SECP384R1}, 48)),
                         [](const auto& info) {
                           return info.param.second == 32 ? std::string("P256")
                                                          : std::string("P384");
                         });

TEST_F(CryptoOffloadTest, OtherCurvesFallBackToSoftware) {
  EccKey device(dev_), software(INVALID_DEVID);
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, 66, &device.key, ECC_SECP521R1), 0);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, 66, &software.key, ECC_SECP521R1), 0);
  ASSERT_EQ(wc_ecc_set_rng(&device.key, &rng_), 0);
  ASSERT_EQ(wc_ecc_set_rng(&software.key, &rng_), 0);
  byte a[66], b[66];
  word32 al = sizeof(a), bl = sizeof(b);
  ASSERT_EQ(wc_ecc_shared_secret(&device.key, &software.key, a, &al), 0);
  ASSERT_EQ(wc_ecc_shared_secret(&software.key, &device.key, b, &bl), 0);
  EXPECT_EQ(Bytes(a, a + al), Bytes(b, b + bl));
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  EXPECT_EQ(after.ecc_keygen, before.ecc_keygen);
  EXPECT_EQ(after.ecdh, before.ecdh);
  EXPECT_GE(after.declined, before.declined + 2);
}

// ---- X25519 --------------------------------------------------------------------------------

struct X25519Key {
  X25519Key(int dev) { EXPECT_EQ(wc_curve25519_init_ex(&key, nullptr, dev), 0); }
  ~X25519Key() { wc_curve25519_free(&key); }
  X25519Key(const X25519Key&) = delete;
  X25519Key& operator=(const X25519Key&) = delete;
  curve25519_key key{};
};

TEST_F(CryptoOffloadTest, X25519AgreesBetweenDeviceAndSoftwareKeys) {
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  X25519Key device(dev_), software(INVALID_DEVID);
  ASSERT_EQ(wc_curve25519_make_key(&rng_, 32, &device.key), 0);
  ASSERT_EQ(wc_curve25519_make_key(&rng_, 32, &software.key), 0);
  for (int endian : {EC25519_LITTLE_ENDIAN, EC25519_BIG_ENDIAN}) {
    byte a[32], b[32];
    word32 al = sizeof(a), bl = sizeof(b);
    ASSERT_EQ(wc_curve25519_shared_secret_ex(&device.key, &software.key, a, &al, endian), 0);
    ASSERT_EQ(wc_curve25519_shared_secret_ex(&software.key, &device.key, b, &bl, endian), 0);
    EXPECT_EQ(Bytes(a, a + al), Bytes(b, b + bl)) << "endian " << endian;
  }
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  EXPECT_EQ(after.x25519_keygen, before.x25519_keygen + 1);
  EXPECT_EQ(after.x25519_shared, before.x25519_shared + 2);
}

// RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret.
TEST_F(CryptoOffloadTest, X25519KnownAnswerThroughTheDevice) {
  const Bytes alice_priv =
      Hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const Bytes alice_pub = Hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  X25519Key alice(dev_);
  // wolfSSL stores private keys clamped; RFC 7748's scalars are clamped by the function.
  Bytes clamped = alice_priv;
  clamped[0] &= 248;
  clamped[31] &= 127;
  clamped[31] |= 64;
  ASSERT_EQ(wc_curve25519_import_private_raw_ex(clamped.data(), 32, alice_pub.data(), 32,
                                                &alice.key, EC25519_LITTLE_ENDIAN),
            0);
  X25519Key bob(INVALID_DEVID);
  const Bytes bob_public =
      Hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  ASSERT_EQ(wc_curve25519_import_public_ex(bob_public.data(), 32, &bob.key,
                                           EC25519_LITTLE_ENDIAN),
            0);
  byte out[32];
  word32 out_len = sizeof(out);
  const uint64_t shared = GetCryptoOffloadCounts().x25519_shared;
  ASSERT_EQ(wc_curve25519_shared_secret_ex(&alice.key, &bob.key, out, &out_len,
                                           EC25519_LITTLE_ENDIAN),
            0);
  EXPECT_EQ(absl::BytesToHexString(std::string(out, out + out_len)),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  EXPECT_EQ(GetCryptoOffloadCounts().x25519_shared, shared + 1);
}

// wolfSSL's TLS 1.3 key share initialises its key with the context's heap and no device:
// with an offloading context's heap tag the key is made and used on the device. Its key
// bytes are what wolfSSL's software makes of the same private key (little-endian, clamped:
// the public key recomputed in software from the exported private key, byte for byte), and
// its secrets equal the software's both ways, in both byte orders.
TEST_F(CryptoOffloadTest, X25519KeysInitialisedWithTheHeapTagRunOnTheDevice) {
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE(round);
    const CryptoOffloadCounts before = GetCryptoOffloadCounts();
    curve25519_key tagged;
    ASSERT_EQ(wc_curve25519_init_ex(&tagged, CryptoOffloadHeapTag(), INVALID_DEVID), 0);
    EXPECT_EQ(tagged.devId, dev_);
    ASSERT_EQ(wc_curve25519_make_key(&rng_, 32, &tagged), 0);
    byte priv[32], pub[32], soft_pub[32];
    word32 priv_len = 32, pub_len = 32;
    ASSERT_EQ(wc_curve25519_export_private_raw_ex(&tagged, priv, &priv_len,
                                                  EC25519_LITTLE_ENDIAN),
              0);
    ASSERT_EQ(wc_curve25519_export_public_ex(&tagged, pub, &pub_len, EC25519_LITTLE_ENDIAN), 0);
    EXPECT_EQ(priv[0] & 7, 0);  // clamped as wolfSSL's own keys are
    EXPECT_EQ(priv[31] & 0xC0, 0x40);
    ASSERT_EQ(wc_curve25519_make_pub(32, soft_pub, 32, priv), 0);
    EXPECT_EQ(Bytes(pub, pub + 32), Bytes(soft_pub, soft_pub + 32));
    // Big-endian export is the reverse of little-endian (the classic trap, both ways).
    byte pub_be[32];
    word32 pub_be_len = 32;
    ASSERT_EQ(wc_curve25519_export_public_ex(&tagged, pub_be, &pub_be_len, EC25519_BIG_ENDIAN),
              0);
    EXPECT_EQ(Bytes(pub_be, pub_be + 32), Bytes(std::make_reverse_iterator(pub + 32),
                                                 std::make_reverse_iterator(pub)));
    X25519Key software(INVALID_DEVID);
    ASSERT_EQ(wc_curve25519_make_key(&rng_, 32, &software.key), 0);
    for (int endian : {EC25519_LITTLE_ENDIAN, EC25519_BIG_ENDIAN}) {
      byte a[32], b[32];
      word32 al = sizeof(a), bl = sizeof(b);
      ASSERT_EQ(wc_curve25519_shared_secret_ex(&tagged, &software.key, a, &al, endian), 0);
      ASSERT_EQ(wc_curve25519_shared_secret_ex(&software.key, &tagged, b, &bl, endian), 0);
      EXPECT_EQ(Bytes(a, a + al), Bytes(b, b + bl)) << "endian " << endian;
    }
    wc_curve25519_free(&tagged);
    std::memset(priv, 0, sizeof(priv));
    const CryptoOffloadCounts after = GetCryptoOffloadCounts();
    EXPECT_EQ(after.x25519_routed, before.x25519_routed + 1);
    EXPECT_EQ(after.x25519_keygen, before.x25519_keygen + 1);
    EXPECT_EQ(after.x25519_shared, before.x25519_shared + 2);  // the tagged key's two
  }
}

// Only a key with the heap tag AND no device is rerouted: no heap (wolfSSL's peer keys,
// other callers) or another heap stays in software; an explicit device id is kept.
TEST_F(CryptoOffloadTest, X25519KeysWithoutTheHeapTagAreInitialisedAsAsked) {
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  int other_heap = 0;
  curve25519_key k;
  ASSERT_EQ(wc_curve25519_init_ex(&k, nullptr, INVALID_DEVID), 0);
  EXPECT_EQ(k.devId, INVALID_DEVID);
  ASSERT_EQ(wc_curve25519_make_key(&rng_, 32, &k), 0);
  wc_curve25519_free(&k);
  ASSERT_EQ(wc_curve25519_init_ex(&k, &other_heap, INVALID_DEVID), 0);
  EXPECT_EQ(k.devId, INVALID_DEVID);
  wc_curve25519_free(&k);
  ASSERT_EQ(wc_curve25519_init(&k), 0);
  EXPECT_EQ(k.devId, INVALID_DEVID);
  wc_curve25519_free(&k);
  ASSERT_EQ(wc_curve25519_init_ex(&k, CryptoOffloadHeapTag(), 0x1234), 0);
  EXPECT_EQ(k.devId, 0x1234);
  wc_curve25519_free(&k);
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  EXPECT_EQ(after.x25519_routed, before.x25519_routed);
  EXPECT_EQ(after.x25519_keygen, before.x25519_keygen);
}

// RFC 7748 section 6.1 / RFC 8446 section 7.4.2: an X25519 exchange whose result is all
// zeros (a small-order or non-canonical peer value) must fail, never hand back zeros.
TEST_F(CryptoOffloadTest, X25519RefusesPeerValuesThatGiveAnAllZeroSecret) {
  for (bool on_device : {true, false}) {
    SCOPED_TRACE(on_device ? "device key" : "software key");
    X25519RefusesAllZeroSecrets(on_device ? dev_ : INVALID_DEVID);
  }
}

void CryptoOffloadTest::X25519RefusesAllZeroSecrets(int dev) {
  X25519Key device(dev);
  ASSERT_EQ(wc_curve25519_make_key(&rng_, 32, &device.key), 0);
  const char* kSmallOrder[] = {
      "0000000000000000000000000000000000000000000000000000000000000000",  // 0
      "0100000000000000000000000000000000000000000000000000000000000000",  // 1
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  // order 8
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  // order 8
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p - 1: order 2
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p, i.e. 0
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p + 1, i.e. 1
  };
  for (const char* hex : kSmallOrder) {
    SCOPED_TRACE(hex);
    X25519Key peer(INVALID_DEVID);
    const Bytes point = Hex(hex);
    if (wc_curve25519_import_public_ex(point.data(), 32, &peer.key, EC25519_LITTLE_ENDIAN) !=
        0) {
      continue;  // wolfSSL refused it already
    }
    byte out[32];
    std::memset(out, 0x77, sizeof(out));
    word32 out_len = sizeof(out);
    const int ret = wc_curve25519_shared_secret_ex(&device.key, &peer.key, out, &out_len,
                                                   EC25519_LITTLE_ENDIAN);
    EXPECT_NE(ret, 0) << "an all-zero X25519 secret was accepted";
    if (ret == 0) {
      EXPECT_NE(Bytes(out, out + 32), Bytes(32, 0));
    }
  }
}

// ---- SHA-256 -------------------------------------------------------------------------------

// Turns the process switch off for a scope (wolfSSL's own SHA-256), on again after.
class OffloadOff {
 public:
  OffloadOff() { SetCryptoOffload(false); }
  ~OffloadOff() { SetCryptoOffload(true); }
  OffloadOff(const OffloadOff&) = delete;
  OffloadOff& operator=(const OffloadOff&) = delete;
};

std::string Sha256Hex(const std::vector<Bytes>& parts) {
  wc_Sha256 sha;
  EXPECT_EQ(wc_InitSha256_ex(&sha, nullptr, INVALID_DEVID), 0);
  for (const Bytes& p : parts) {
    EXPECT_EQ(wc_Sha256Update(&sha, p.data(), static_cast<word32>(p.size())), 0);
  }
  byte out[WC_SHA256_DIGEST_SIZE];
  EXPECT_EQ(wc_Sha256Final(&sha, out), 0);
  wc_Sha256Free(&sha);
  return absl::BytesToHexString(std::string(out, out + sizeof(out)));
}

Bytes Text(const std::string& s) { return Bytes(s.begin(), s.end()); }

// FIPS 180-2's examples and the million 'a's, through wolfSSL's API on libcrypto.
TEST_F(CryptoOffloadTest, Sha256KnownAnswersOnLibcrypto) {
  const uint64_t finals = GetCryptoOffloadCounts().sha256_finals;
  EXPECT_EQ(Sha256Hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex({Text("abc")}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex({Text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")}),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::vector<Bytes> million(1000, Bytes(1000, 'a'));
  EXPECT_EQ(Sha256Hex(million),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(GetCryptoOffloadCounts().sha256_finals, finals + 4);
  OffloadOff off;  // and wolfSSL's own code, for the record
  EXPECT_EQ(Sha256Hex({Text("abc")}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(GetCryptoOffloadCounts().sha256_finals, finals + 4);
}

// Random messages cut at random points, hashed on libcrypto, in wolfSSL's C, and switching
// between the two after every piece (each continues the other's state): the same digests,
// the same state words and counts left behind, GetHash and Copy mid-way included.
TEST_F(CryptoOffloadTest, Sha256StateIsWolfSslsOwnByteForByte) {
  std::mt19937 gen(2026);
  for (int round = 0; round < 200; ++round) {
    SCOPED_TRACE(round);
    const size_t size = round < 150 ? gen() % 300 : gen() % 20000;
    const Bytes msg = Random(size, static_cast<uint32_t>(round));
    std::vector<size_t> cuts = {0, size};
    for (int i = gen() % 6; i > 0; --i) cuts.push_back(size == 0 ? 0 : gen() % size);
    std::sort(cuts.begin(), cuts.end());
    wc_Sha256 lib, own, mixed;
    ASSERT_EQ(wc_InitSha256_ex(&lib, nullptr, INVALID_DEVID), 0);
    ASSERT_EQ(wc_InitSha256_ex(&own, nullptr, INVALID_DEVID), 0);
    ASSERT_EQ(wc_InitSha256_ex(&mixed, nullptr, dev_), 0);  // the device's: libcrypto too
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      const byte* piece = msg.data() + cuts[i];
      const word32 n = static_cast<word32>(cuts[i + 1] - cuts[i]);
      ASSERT_EQ(wc_Sha256Update(&lib, piece, n), 0);
      {
        OffloadOff off;
        ASSERT_EQ(wc_Sha256Update(&own, piece, n), 0);
      }
      if (i % 2 == 1) SetCryptoOffload(false);
      ASSERT_EQ(wc_Sha256Update(&mixed, piece, n), 0);
      SetCryptoOffload(true);
      ASSERT_EQ(std::memcmp(lib.digest, own.digest, sizeof(own.digest)), 0);
      ASSERT_EQ(lib.buffLen, own.buffLen);
      ASSERT_EQ(std::memcmp(lib.buffer, own.buffer, own.buffLen), 0);
      ASSERT_EQ(lib.loLen, own.loLen);
      ASSERT_EQ(lib.hiLen, own.hiLen);
      byte a[32], b[32];
      ASSERT_EQ(wc_Sha256GetHash(&lib, a), 0);
      {
        OffloadOff off;
        ASSERT_EQ(wc_Sha256GetHash(&own, b), 0);
      }
      ASSERT_EQ(Bytes(a, a + 32), Bytes(b, b + 32));
    }
    wc_Sha256 copy;
    ASSERT_EQ(wc_Sha256Copy(&lib, &copy), 0);
    byte d_lib[32], d_own[32], d_mixed[32], d_copy[32];
    ASSERT_EQ(wc_Sha256Final(&lib, d_lib), 0);
    {
      OffloadOff off;
      ASSERT_EQ(wc_Sha256Final(&own, d_own), 0);
      ASSERT_EQ(wc_Sha256Final(&copy, d_copy), 0);  // wolfSSL finishes libcrypto's state
    }
    ASSERT_EQ(wc_Sha256Final(&mixed, d_mixed), 0);
    EXPECT_EQ(Bytes(d_lib, d_lib + 32), Bytes(d_own, d_own + 32));
    EXPECT_EQ(Bytes(d_mixed, d_mixed + 32), Bytes(d_own, d_own + 32));
    EXPECT_EQ(Bytes(d_copy, d_copy + 32), Bytes(d_own, d_own + 32));
    unsigned int ref_len = 0;
    byte ref[32];
    ASSERT_EQ(EVP_Digest(msg.data(), msg.size(), ref, &ref_len, EVP_sha256(), nullptr), 1);
    EXPECT_EQ(Bytes(d_lib, d_lib + 32), Bytes(ref, ref + 32)) << "against libcrypto's EVP";
    // Final resets as wolfSSL's does: initial state, no device, no flags; reusable.
    for (wc_Sha256* s : {&lib, &mixed}) {
      EXPECT_EQ(std::memcmp(s->digest, own.digest, sizeof(own.digest)), 0);
      EXPECT_EQ(s->buffLen, own.buffLen);
      EXPECT_EQ(s->loLen, own.loLen);
      EXPECT_EQ(s->hiLen, own.hiLen);
      EXPECT_EQ(s->devId, own.devId);
      EXPECT_EQ(s->flags, own.flags);
    }
    ASSERT_EQ(wc_Sha256Update(&lib, msg.data(), static_cast<word32>(msg.size())), 0);
    ASSERT_EQ(wc_Sha256Final(&lib, d_lib), 0);
    EXPECT_EQ(Bytes(d_lib, d_lib + 32), Bytes(ref, ref + 32));
    wc_Sha256Free(&lib);
    wc_Sha256Free(&own);
    wc_Sha256Free(&mixed);
    wc_Sha256Free(&copy);
  }
}

TEST_F(CryptoOffloadTest, Sha256BadArgumentsGetWolfSslsAnswers) {
  wc_Sha256 sha;
  ASSERT_EQ(wc_InitSha256_ex(&sha, nullptr, INVALID_DEVID), 0);
  EXPECT_EQ(wc_Sha256Update(nullptr, Random(4, 1).data(), 4), BAD_FUNC_ARG);
  EXPECT_EQ(wc_Sha256Update(&sha, nullptr, 4), BAD_FUNC_ARG);
  EXPECT_EQ(wc_Sha256Update(&sha, nullptr, 0), 0);
  EXPECT_EQ(wc_Sha256Final(&sha, nullptr), BAD_FUNC_ARG);
  sha.buffLen = WC_SHA256_BLOCK_SIZE;  // a corrupt object: refused, nothing read past it
  EXPECT_EQ(wc_Sha256Update(&sha, Random(4, 1).data(), 4), BUFFER_E);
  wc_Sha256Free(&sha);
}

// HMAC (RFC 4231 cases 1 and 2) and HKDF (RFC 5869 A.1) ride on SHA-256 inside wolfSSL.
TEST_F(CryptoOffloadTest, HmacAndHkdfKnownAnswersOverLibcryptoSha256) {
  const uint64_t finals = GetCryptoOffloadCounts().sha256_finals;
  struct Case {
    Bytes key, data;
    const char* mac;
  };
  const Case cases[] = {
      {Bytes(20, 0x0b), Text("Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {Text("Jefe"), Text("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"}};
  for (const Case& c : cases) {
    Hmac hmac;
    ASSERT_EQ(wc_HmacInit(&hmac, nullptr, INVALID_DEVID), 0);
    ASSERT_EQ(wc_HmacSetKey(&hmac, WC_SHA256, c.key.data(), static_cast<word32>(c.key.size())),
              0);
    ASSERT_EQ(wc_HmacUpdate(&hmac, c.data.data(), static_cast<word32>(c.data.size())), 0);
    byte mac[32];
    ASSERT_EQ(wc_HmacFinal(&hmac, mac), 0);
    wc_HmacFree(&hmac);
    EXPECT_EQ(absl::BytesToHexString(std::string(mac, mac + 32)), c.mac);
  }
  const Bytes ikm(22, 0x0b);
  const Bytes salt = Hex("000102030405060708090a0b0c");
  const Bytes info = Hex("f0f1f2f3f4f5f6f7f8f9");
  byte okm[42];
  ASSERT_EQ(wc_HKDF(WC_SHA256, ikm.data(), 22, salt.data(), 13, info.data(), 10, okm, 42), 0);
  EXPECT_EQ(absl::BytesToHexString(std::string(okm, okm + 42)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
            "34007208d5b887185865");
  EXPECT_GE(GetCryptoOffloadCounts().sha256_finals, finals + 2 * 2 + 2);
}

// Every loop thread runs the device at once: per-thread contexts and key caches, freed at
// thread exit (ASan/LSan see a leak or use after free there; TSan a shared object).
TEST_F(CryptoOffloadTest, ManyThreadsAtOnce) {
  constexpr int kThreads = 6;
  EccKey signer_sw(INVALID_DEVID);
  ASSERT_EQ(wc_ecc_make_key_ex(&rng_, 32, &signer_sw.key, ECC_SECP256R1), 0);
  byte x[32], y[32], d[32];
  word32 xl = 32, yl = 32, dl = 32;
  ASSERT_EQ(wc_ecc_export_private_raw(&signer_sw.key, x, &xl, y, &yl, d, &dl), 0);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      WC_RNG rng;
      if (wc_InitRng(&rng) != 0) {
        failures.fetch_add(1);
        return;
      }
      EccKey signer(dev_);  // the same key on every thread: each caches its own copy
      if (wc_ecc_import_unsigned(&signer.key, x, y, d, ECC_SECP256R1) != 0) {
        failures.fetch_add(1);
      }
      const Bytes key_bytes = Random(16 + 16 * (t % 2), 200 + t);
      GcmKey device(key_bytes, dev_);
      GcmKey software(key_bytes, INVALID_DEVID);
      for (int i = 0; i < 40; ++i) {
        const Bytes iv = Random(12, 1000 * t + i), aad = Random(13, 7);
        const Bytes plain = Random(1 + 97 * i, 31 * t + i);
        Bytes c, tag, back;
        if (device.Encrypt(iv, aad, plain, &c, &tag) != 0 ||
            software.Decrypt(iv, aad, c, tag, &back) != 0 || back != plain) {
          failures.fetch_add(1);
        }
        const Bytes hash = Random(32, i);
        byte sig[80];
        word32 sig_len = sizeof(sig);
        int ok = 0;
        if (wc_ecc_sign_hash(hash.data(), 32, sig, &sig_len, &rng, &signer.key) != 0 ||
            wc_ecc_verify_hash(sig, sig_len, hash.data(), 32, &ok, &signer.key) != 0 ||
            ok != 1) {
          failures.fetch_add(1);
        }
      }
      wc_FreeRng(&rng);
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

// RFC 8446 section 7.4.2: a TLS 1.3 X25519 exchange whose secret is all zeros MUST abort.
// wolfSSL 5.5.4's software takes the order-8 point below (wc_curve25519_check_public only
// refuses 0, 1 and values from p - 1 up) and returns the zero secret (Debian's build lacks
// WOLFSSL_ECDHX_SHARED_NOT_ZERO): the server used to answer with a ServerHello keyed by it,
// offload on or off. The device refuses it with the offload on (the key share comes to it),
// tls/crypto_offload's shared-secret check with it off.
TEST(CryptoOffloadTls13Test, SmallOrderX25519KeyShareIsRefused) {
  absl::StatusOr<tls_test::TestPki> pki = tls_test::TestPki::Create();
  ASSERT_TRUE(pki.ok()) << pki.status();
  absl::StatusOr<tls_test::TestCertificate> cert = pki->IssueServer("server", {"mx.test"});
  ASSERT_TRUE(cert.ok()) << cert.status();
  for (bool offload : {true, false}) {
    SCOPED_TRACE(offload ? "offload on" : "offload off");
    TlsContextOptions so;
    so.role = TlsRole::kServer;
    so.certificate_chain_file = cert->chain_file;
    so.private_key_file = cert->key_file;
    so.crypto_offload = offload;
    auto server_ctx = TlsContext::Create(so);
    ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
    TlsContextOptions co;
    co.role = TlsRole::kClient;
    co.use_system_ca = false;
    co.groups = "X25519";
    auto client_ctx = TlsContext::Create(co);
    ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
    ClientOptions opt;
    opt.server_name = "mx.test";
    opt.verify = VerifyMode::kRecord;
    auto client = TlsSession::NewClient(*client_ctx, opt);
    ASSERT_TRUE(client.ok()) << client.status();
    (*client)->Handshake();
    std::string hello = (*client)->TakeCiphertext();
    // The key_share entry: group x25519 (0x001d), 32 bytes; swapped for an order-8 point.
    const size_t at = hello.find(std::string("\x00\x1d\x00\x20", 4));
    ASSERT_NE(at, std::string::npos);
    const Bytes point = Hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    hello.replace(at + 4, 32, std::string(point.begin(), point.end()));
    auto server = TlsSession::NewServer(*server_ctx);
    ASSERT_TRUE(server.ok()) << server.status();
    const CryptoOffloadCounts before = GetCryptoOffloadCounts();
    ASSERT_EQ((*server)->FeedCiphertext(hello), hello.size());
    EXPECT_EQ((*server)->Handshake(), TlsResult::kError)
        << "a TLS 1.3 handshake went on with an all-zero X25519 secret";
    EXPECT_EQ((*server)->TakeCiphertext().find('\x16'), std::string::npos)
        << "the server sent handshake records (a ServerHello) after the all-zero secret";
    const CryptoOffloadCounts after = GetCryptoOffloadCounts();
    // Who refused: the device (offload on: libcrypto's derive fails on zero) or the check
    // on wolfSSL's software result.
    EXPECT_EQ(after.x25519_routed - before.x25519_routed, offload ? 1u : 0u);
    EXPECT_EQ(after.errors - before.errors, offload ? 1u : 0u);
    EXPECT_EQ(after.x25519_zero_refused - before.x25519_zero_refused, offload ? 0u : 1u);
  }
}

// ---- a real OpenSSL client ------------------------------------------------------------------

using SClientClock = std::chrono::steady_clock;

int SClientMsLeft(SClientClock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - SClientClock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool SClientPoll(int fd, short events, SClientClock::time_point deadline) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, SClientMsLeft(deadline)) == 1;
}

// A listening TCP socket on 127.0.0.1, port chosen by the kernel; -1 on failure.
int SClientListen(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(fd, 1) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// Starts argv with stdin and stdout on /dev/null and stderr into *err_fd; the pid or -1.
pid_t SClientSpawn(const std::vector<std::string>& argv, int* err_fd) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  close(pipe_fds[1]);
  *err_fd = pipe_fds[0];
  if (pid < 0) close(pipe_fds[0]);
  return pid;
}

// Runs the server's handshake over the socket: feeds what arrives, sends what it makes.
TlsResult SClientServe(TlsSession& server, int fd, SClientClock::time_point deadline) {
  TlsResult r = TlsResult::kWantRead;
  char buf[16384];
  while (r == TlsResult::kWantRead && SClientPoll(fd, POLLIN, deadline)) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return TlsResult::kError;
    if (server.FeedCiphertext(std::string_view(buf, static_cast<size_t>(n))) !=
        static_cast<size_t>(n)) {
      return TlsResult::kError;
    }
    r = server.Handshake();
    const std::string out = server.TakeCiphertext();
    if (!out.empty() && write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
      return TlsResult::kError;
    }
  }
  return r;
}

// openssl s_client, TLS 1.3 with an X25519 key share, against a TlsSession on a loopback
// socket: the counters prove the server's key share and secret (through the heap tag) and
// its SHA-256 ran on libcrypto in a handshake with another TLS implementation.
TEST(CryptoOffloadSClientTest, OpensslClientHandshakeRunsOnLibcrypto) {
  if (access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "no openssl command";
  absl::StatusOr<tls_test::TestPki> pki = tls_test::TestPki::Create();
  ASSERT_TRUE(pki.ok()) << pki.status();
  absl::StatusOr<tls_test::TestCertificate> cert = pki->IssueServer("server", {"mx.test"});
  ASSERT_TRUE(cert.ok()) << cert.status();
  TlsContextOptions so;
  so.role = TlsRole::kServer;
  so.certificate_chain_file = cert->chain_file;
  so.private_key_file = cert->key_file;
  auto server_ctx = TlsContext::Create(so);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  int port = 0;
  const int listen_fd = SClientListen(&port);
  ASSERT_GE(listen_fd, 0);
  int err_fd = -1;
  const pid_t pid = SClientSpawn(
      {"openssl", "s_client", "-connect", absl::StrCat("127.0.0.1:", port), "-tls1_3",
       "-groups", "X25519", "-CAfile", pki->ca_file(), "-servername", "mx.test",
       "-verify_hostname", "mx.test", "-verify_return_error", "-brief"},
      &err_fd);
  ASSERT_GT(pid, 0);
  const auto deadline = SClientClock::now() + std::chrono::seconds(20);
  const int fd = SClientPoll(listen_fd, POLLIN, deadline) ? accept4(listen_fd, nullptr, nullptr,
                                                                    SOCK_CLOEXEC)
                                                          : -1;
  close(listen_fd);
  const CryptoOffloadCounts before = GetCryptoOffloadCounts();
  TlsResult r = TlsResult::kError;
  if (fd >= 0) {
    auto server = TlsSession::NewServer(*server_ctx);
    ASSERT_TRUE(server.ok()) << server.status();
    r = SClientServe(**server, fd, deadline);
    char sink[4096];  // until s_client (stdin at its end) closes
    while (SClientPoll(fd, POLLIN, deadline) && read(fd, sink, sizeof(sink)) > 0) {
    }
    close(fd);
  }
  const CryptoOffloadCounts after = GetCryptoOffloadCounts();
  std::string err;
  char chunk[4096];
  ssize_t n = 0;
  while (SClientPoll(err_fd, POLLIN, deadline) && (n = read(err_fd, chunk, sizeof(chunk))) > 0) {
    err.append(chunk, static_cast<size_t>(n));
  }
  close(err_fd);
  if (SClientMsLeft(deadline) == 0) kill(pid, SIGKILL);  // ours, stuck: never outlives us
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_GE(fd, 0) << "s_client never connected: " << err;
  EXPECT_EQ(r, TlsResult::kOk) << err;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << err;
  EXPECT_NE(err.find("Protocol version: TLSv1.3"), std::string::npos) << err;
  EXPECT_NE(err.find("Server Temp Key: X25519"), std::string::npos) << err;
  EXPECT_NE(err.find("Verification: OK"), std::string::npos) << err;
  EXPECT_EQ(after.x25519_routed - before.x25519_routed, 1u);
  EXPECT_EQ(after.x25519_keygen - before.x25519_keygen, 1u);
  EXPECT_EQ(after.x25519_shared - before.x25519_shared, 1u);
  EXPECT_GE(after.sha256_finals - before.sha256_finals, 10u);  // transcript, HKDF, HMAC
  EXPECT_GE(after.ecdsa_sign - before.ecdsa_sign, 1u);
}

// wolfSSL seeds every DRBG through wc_GenerateSeed, which this process answers with
// getrandom(2): a generator made by wolfSSL counts a seed, and the seeds are not constant.
TEST(CryptoOffloadSeedTest, WolfSslDrbgsAreSeededWithGetrandom) {
  const uint64_t before = GetCryptoOffloadCounts().seeds;
  WC_RNG rng;
  ASSERT_EQ(wc_InitRng(&rng), 0);
  byte block[32] = {};
  EXPECT_EQ(wc_RNG_GenerateBlock(&rng, block, sizeof(block)), 0);
  EXPECT_EQ(wc_FreeRng(&rng), 0);
  EXPECT_GE(GetCryptoOffloadCounts().seeds, before + 1);
  byte a[64] = {};
  byte b[64] = {};
  OS_Seed os = {};
  ASSERT_EQ(wc_GenerateSeed(&os, a, sizeof(a)), 0);
  ASSERT_EQ(wc_GenerateSeed(&os, b, sizeof(b)), 0);
  EXPECT_NE(std::memcmp(a, b, sizeof(a)), 0);
  EXPECT_GE(GetCryptoOffloadCounts().seeds, before + 3);
}

}  // namespace
}  // namespace ringmail::tls
