// config/license.h — the Ed25519-signed license: format, verification, licensed concurrency.
//
// Who calls it: ringmaild at start and on every config reload (EvaluateLicense, then
// CheckLicensedConcurrency against the configured event loops), the control listener for
// `ringctl license show` (the LicenseStatus it already holds), and tools/license_tool
// (key generation and signing). Every function is thread-safe and self-contained; the file
// functions do a small blocking read, so call them from the master loop at start/reload or
// from a worker, never from a busy loop. Nothing here is cached: each call re-reads.
//
// File format (UTF-8 text, at most kLicenseFileBytesMax bytes, kLicenseLinesMax lines, each
// at most kLicenseLineBytesMax bytes; "\n" or "\r\n" line ends):
//
//   # ringmail license                      <- '#' lines and blank lines are ignored
//   licensee = "Example Corp"               <- double-quoted; no '"', '\' or control chars
//   issued = 2026-11-01                     <- YYYY-MM-DD, a real calendar date, UTC
//   expires = 2027-11-01                    <- first UTC day on which the license is invalid
//   max_event_loops = 8                     <- decimal 1..kMaxEventLoopsLimit, no leading 0
//   signature = <128 hex digits>            <- Ed25519 signature of the canonical text
//
// Each of the five fields appears exactly once, in any order; any other key, a repeated key,
// a missing key or text after a value is an error naming the line. Spaces and tabs around
// '=' and at the line ends are ignored. The license is valid for the UTC days
// issued <= today < expires.
//
// The signature never covers the raw file. It is pure Ed25519 (RFC 8032, no context) over
// the canonical serialisation, exactly these bytes (each line ends in a single "\n"):
//
//   ringmail license v1
//   licensee=<licensee, verbatim UTF-8>
//   issued=<YYYY-MM-DD>
//   expires=<YYYY-MM-DD>
//   max_event_loops=<decimal, no sign, no leading zeros>
//
// Because every field is validated (the licensee cannot contain a newline, dates and the
// count have one spelling) the serialisation is injective, so comments, whitespace,
// field order and CRLF may change freely without touching the signature, while any change
// to a value breaks it. The first line separates these signatures from any other use of
// the key.
//
// Failure modes, each with its own status code and message:
//   malformed text       kInvalidArgument    "license:3: expected key = value"
//   signature mismatch   kUnauthenticated    "license signature does not verify: ..."
//   expired              kFailedPrecondition "license expired on 2026-01-01"
//   not yet valid        kOutOfRange         "license is not valid before ..."
//   missing file         kNotFound           "license file /x: not found"
// A license whose fields were edited after signing and one signed by a different key are
// indistinguishable: Ed25519 verification only says "this signature does not match this
// text under this key", so both get the same kUnauthenticated error.
//
// Keys are raw 32-byte Ed25519 keys (the private key is the RFC 8032 seed), stored as 64 hex
// digits. The daemon's built-in public key is the build's RINGMAIL_LICENSE_PUBKEY, or the
// TEST key (private half in tests/testdata/license/test_key.private) when that is empty.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace ringmail::config {

inline constexpr size_t kLicenseFileBytesMax = 16 * 1024;
inline constexpr int kLicenseLinesMax = 64;
inline constexpr size_t kLicenseLineBytesMax = 1024;
inline constexpr size_t kLicenseeBytesMax = 256;
inline constexpr int kMaxEventLoopsLimit = 4096;
inline constexpr size_t kKeyFileBytesMax = 4096;

inline constexpr size_t kLicenseKeyBytes = 32;  // public key and private seed alike
inline constexpr size_t kLicenseSignatureBytes = 64;

using LicensePublicKey = std::array<uint8_t, kLicenseKeyBytes>;
using LicensePrivateKey = std::array<uint8_t, kLicenseKeyBytes>;

struct License {
  std::string licensee;
  absl::CivilDay issued;
  absl::CivilDay expires;
  int max_event_loops = 1;

  friend bool operator==(const License&, const License&) = default;
};

// A parsed license together with the signature it carries (not yet checked).
struct SignedLicense {
  License license;
  std::array<uint8_t, kLicenseSignatureBytes> signature{};
};

// ---- format -------------------------------------------------------------------------------

// Checks the field rules above (licensee text, date range, issued < expires, count range).
absl::Status ValidateLicenseFields(const License& license);

// The exact bytes that are signed (see the header comment). `license` must be valid.
std::string CanonicalLicenseText(const License& license);

// Parses the file format only; no signature or date check. Errors are kInvalidArgument and
// start with "<source_name>:<line>: " (or "<source_name>: " for whole-file problems).
absl::StatusOr<SignedLicense> ParseSignedLicense(std::string_view text,
                                                 std::string_view source_name = "license");
absl::StatusOr<License> ParseLicense(std::string_view text,
                                     std::string_view source_name = "license");

// ---- verification -------------------------------------------------------------------------

// Parse, then check the signature against `public_key`, then the dates against `now` (UTC).
absl::StatusOr<License> VerifyLicense(std::string_view text,
                                      std::span<const uint8_t, kLicenseKeyBytes> public_key,
                                      absl::Time now, std::string_view source_name = "license");

// Reads `path` (a regular file, at most kLicenseFileBytesMax bytes) and verifies it against
// the built-in key or the given one. Parse errors are prefixed with the path.
absl::StatusOr<License> LoadLicenseFile(const std::string& path, absl::Time now);
absl::StatusOr<License> LoadLicenseFile(const std::string& path,
                                        std::span<const uint8_t, kLicenseKeyBytes> public_key,
                                        absl::Time now);

// Reads a whole small file with a byte limit; errors name the path (kNotFound when absent).
absl::StatusOr<std::string> ReadLicenseFileText(const std::string& path, size_t bytes_max);

// The public key this binary verifies licenses against, and whether it is the TEST key.
std::span<const uint8_t, kLicenseKeyBytes> BuiltInPublicKey();
bool BuiltInPublicKeyIsTestKey();
// The committed test key pair's public half (tests/testdata/license/test_key.public).
std::span<const uint8_t, kLicenseKeyBytes> TestPublicKey();

// ---- what the daemon uses -----------------------------------------------------------------

struct LicenseStatus {
  bool valid = false;
  int licensed_concurrency = 1;  // max_event_loops when valid, else 1
  std::string summary;           // one line for logs and `ringctl license show`
  std::string error;             // why it is not valid; empty when valid
  absl::StatusCode code = absl::StatusCode::kOk;
  std::optional<License> license;  // set when valid
};

// Never fails: an empty path ("no license configured") or any error gives concurrency 1
// with the reason in `error` and `summary`.
LicenseStatus EvaluateLicense(const std::string& path, absl::Time now);
LicenseStatus EvaluateLicense(const std::string& path,
                              std::span<const uint8_t, kLicenseKeyBytes> public_key,
                              absl::Time now);

// OK when `requested_event_loops` fits the licensed concurrency; otherwise
// kFailedPrecondition saying what was asked, what is allowed and why.
absl::Status CheckLicensedConcurrency(int requested_event_loops, const LicenseStatus& status);

// ---- keys and signing (the license tool) --------------------------------------------------

struct LicenseKeyPair {
  LicensePrivateKey private_key{};
  LicensePublicKey public_key{};
};

// A fresh key pair from wolfSSL's DRBG (seeded from the OS).
absl::StatusOr<LicenseKeyPair> GenerateKeyPair();
absl::StatusOr<LicensePublicKey> PublicKeyFromPrivate(
    std::span<const uint8_t, kLicenseKeyBytes> private_key);

// The complete license file text for `license`, signed with `private_key`. Refuses fields
// that ValidateLicenseFields rejects. Does not check dates against the clock.
absl::StatusOr<std::string> SignLicense(const License& license,
                                        std::span<const uint8_t, kLicenseKeyBytes> private_key);

// Lowercase hex of any bytes; and the parse of a key (64 hex digits, either case).
std::string LicenseHexEncode(std::span<const uint8_t> bytes);
absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> ParseLicenseKeyHex(std::string_view hex);

// A key file: '#' comment lines, blank lines, and exactly one line of 64 hex digits.
absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> ParseLicenseKeyFile(std::string_view text);
absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> ReadLicenseKeyFile(const std::string& path);

// "YYYY-MM-DD" for a day, and its strict parse (a real date, years 2000..9999).
std::string FormatLicenseDate(absl::CivilDay day);
std::optional<absl::CivilDay> ParseLicenseDate(std::string_view text);

}  // namespace ringmail::config
