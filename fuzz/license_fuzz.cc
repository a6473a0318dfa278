// fuzz/license_fuzz.cc — libFuzzer target for the license file parser and verifier
// (config/license.h ParseSignedLicense, ParseLicense, VerifyLicense, SignLicense).
//
// The input is a license file's text. Oracles: a parse error is kInvalidArgument whose
// message names the source; a parsed license passes ValidateLicenseFields, ParseLicense
// agrees with ParseSignedLicense, and signing it with a fixed fuzz key gives a file that
// parses and verifies to the very same license (so the canonical text is injective on
// everything the parser accepts); VerifyLicense against the test key never accepts what
// the parser refused.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "base/check.h"
#include "config/license.h"

namespace ringmail::config {
namespace {

struct FuzzKey {
  LicensePrivateKey private_key{};
  LicensePublicKey public_key{};
};

const FuzzKey& Key() {
  static const FuzzKey key = [] {
    FuzzKey k;
    k.private_key.fill(0x42);  // any fixed seed: the fuzz key signs only fuzz licenses
    absl::StatusOr<LicensePublicKey> pub = PublicKeyFromPrivate(k.private_key);
    RM_CHECK(pub.ok()) << pub.status();
    k.public_key = *pub;
    return k;
  }();
  return key;
}

absl::Time Noon(absl::CivilDay day) {
  return absl::FromCivil(absl::CivilSecond(day.year(), day.month(), day.day(), 12, 0, 0),
                         absl::UTCTimeZone());
}

void CheckSignRoundTrip(const License& license) {
  absl::StatusOr<std::string> file = SignLicense(license, Key().private_key);
  RM_CHECK(file.ok()) << "a parsed license cannot be signed: " << file.status();
  absl::StatusOr<License> back = VerifyLicense(*file, Key().public_key, Noon(license.issued));
  RM_CHECK(back.ok()) << "signed license does not verify: " << back.status() << "\n" << *file;
  RM_CHECK(*back == license) << "sign/verify round trip changed the license";
}

}  // namespace
}  // namespace ringmail::config

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::config;  // NOLINT: the target's whole vocabulary
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<SignedLicense> parsed = ParseSignedLicense(text, "fuzz");
  absl::StatusOr<License> plain = ParseLicense(text, "fuzz");
  RM_CHECK(parsed.ok() == plain.ok());
  const absl::Time now = absl::FromUnixSeconds(1800000000);  // 2027-01-15
  absl::StatusOr<License> verified = VerifyLicense(text, TestPublicKey(), now, "fuzz");
  if (!parsed.ok()) {
    RM_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument) << parsed.status();
    RM_CHECK(parsed.status().message().substr(0, 4) == "fuzz") << parsed.status();
    RM_CHECK(!verified.ok()) << "verified a license that does not parse";
    return 0;
  }
  RM_CHECK(plain.ok() && *plain == parsed->license);
  const absl::Status fields = ValidateLicenseFields(parsed->license);
  RM_CHECK(fields.ok()) << "parser accepted invalid fields: " << fields;
  RM_CHECK(CanonicalLicenseText(parsed->license).rfind("ringmail license v1\n", 0) == 0);
  if (verified.ok()) RM_CHECK(*verified == parsed->license);
  CheckSignRoundTrip(parsed->license);
  return 0;
}
