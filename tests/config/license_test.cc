// Tests for config/license.h and the ringmail-license tool.
//
// Samples in tests/testdata/license/ were signed by make_samples.py (Python `cryptography`,
// not wolfSSL), so passing here means the C++ code agrees with the documented format. Time
// is always passed in (kNow), so expiry results never depend on when the tests run, except
// in the tool tests, whose licenses expire in 2099.
#include "config/license.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace ringmail::config {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow =
    absl::FromCivil(absl::CivilSecond(2026, 6, 1, 12, 0, 0), absl::UTCTimeZone());

std::string TestFile(const std::string& name) {
  return std::string(RINGMAIL_SOURCE_DIR) + "/tests/testdata/license/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFileOrDie(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

LicensePrivateKey KeyFromFile(const std::string& name) {
  absl::StatusOr<LicensePrivateKey> key = ReadLicenseKeyFile(TestFile(name));
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *key : LicensePrivateKey{};
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

License ExampleLicense() {
  return License{"Example Corp", absl::CivilDay(2026, 1, 1), absl::CivilDay(2036, 1, 1), 8};
}

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = ::testing::TempDir() + "license_test_XXXXXX";
    char* made = ::mkdtemp(templ.data());
    EXPECT_NE(made, nullptr);
    path_ = templ;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ---- format ------------------------------------------------------------------------------

TEST(LicenseFormat, CanonicalTextIsExactlyTheDocumentedBytes) {
  EXPECT_EQ(CanonicalLicenseText(ExampleLicense()),
            "ringmail license v1\n"
            "licensee=Example Corp\n"
            "issued=2026-01-01\n"
            "expires=2036-01-01\n"
            "max_event_loops=8\n");
}

TEST(LicenseFormat, ParsesTheCommittedSample) {
  absl::StatusOr<License> license = ParseLicense(ReadFile(TestFile("valid.license")));
  ASSERT_TRUE(license.ok()) << license.status();
  EXPECT_EQ(*license, ExampleLicense());
}

TEST(LicenseFormat, DatesAreStrict) {
  EXPECT_EQ(ParseLicenseDate("2028-02-29"), absl::CivilDay(2028, 2, 29));
  EXPECT_FALSE(ParseLicenseDate("2027-02-29").has_value());
  EXPECT_FALSE(ParseLicenseDate("2026-13-01").has_value());
  EXPECT_FALSE(ParseLicenseDate("2026-1-01").has_value());
  EXPECT_FALSE(ParseLicenseDate("1999-12-31").has_value());
  EXPECT_FALSE(ParseLicenseDate("2026-01-01 ").has_value());
  EXPECT_FALSE(ParseLicenseDate("+026-01-01").has_value());
  EXPECT_EQ(FormatLicenseDate(absl::CivilDay(2026, 3, 7)), "2026-03-07");
}

// ---- verification ------------------------------------------------------------------------

TEST(LicenseVerify, ValidSamplesVerify) {
  for (const char* name : {"valid.license", "reformatted.license"}) {
    absl::StatusOr<License> license =
        VerifyLicense(ReadFile(TestFile(name)), TestPublicKey(), kNow);
    ASSERT_TRUE(license.ok()) << name << ": " << license.status();
    EXPECT_EQ(*license, ExampleLicense()) << name;
  }
}

TEST(LicenseVerify, NonAsciiLicenseeVerifies) {
  absl::StatusOr<License> license =
      VerifyLicense(ReadFile(TestFile("unicode.license")), TestPublicKey(), kNow);
  ASSERT_TRUE(license.ok()) << license.status();
  EXPECT_EQ(license->licensee,
            "Soci\xc3\xa9t\xc3\xa9 G\xc3\xa9n\xc3\xa9rale \xce\xa9mega "
            "\xe6\x9d\xb1\xe4\xba\xac");
  EXPECT_EQ(license->max_event_loops, 16);
}

TEST(LicenseVerify, TamperedSampleFails) {
  absl::StatusOr<License> license =
      VerifyLicense(ReadFile(TestFile("tampered.license")), TestPublicKey(), kNow);
  EXPECT_EQ(license.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(license.status().message(),
              HasSubstr("license signature does not verify: the file was altered or signed by "
                        "another key"));
}

TEST(LicenseVerify, EditingAnyValueAfterSigningFails) {
  absl::StatusOr<std::string> text = SignLicense(ExampleLicense(), KeyFromFile("test_key.private"));
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_TRUE(VerifyLicense(*text, TestPublicKey(), kNow).ok());
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"\"Example Corp\"", "\"Example Corq\""},
      {"\"Example Corp\"", "\"Example Corp Inc\""},
      {"issued = 2026-01-01", "issued = 2025-01-01"},
      {"expires = 2036-01-01", "expires = 2046-01-01"},
      {"max_event_loops = 8", "max_event_loops = 80"},
  };
  for (const auto& [from, to] : edits) {
    absl::StatusOr<License> license =
        VerifyLicense(Replace(*text, from, to), TestPublicKey(), kNow);
    EXPECT_EQ(license.status().code(), absl::StatusCode::kUnauthenticated) << to;
  }
}

TEST(LicenseVerify, FlippedSignatureBitFails) {
  std::string text = ReadFile(TestFile("valid.license"));
  size_t pos = text.find("signature = ") + std::string("signature = ").size();
  text[pos + 10] = text[pos + 10] == '0' ? '1' : '0';
  EXPECT_EQ(VerifyLicense(text, TestPublicKey(), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
}

// A wrong key and a tampered file are cryptographically the same answer; this checks that
// the committed other-key license fails only because of the key.
TEST(LicenseVerify, WrongKeyFails) {
  const std::string text = ReadFile(TestFile("wrong_key.license"));
  absl::StatusOr<License> with_test_key = VerifyLicense(text, TestPublicKey(), kNow);
  EXPECT_EQ(with_test_key.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(with_test_key.status().message(), HasSubstr("signature does not verify"));
  absl::StatusOr<LicensePublicKey> other = ReadLicenseKeyFile(TestFile("other_key.public"));
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<License> with_other_key = VerifyLicense(text, *other, kNow);
  ASSERT_TRUE(with_other_key.ok()) << with_other_key.status();
  EXPECT_EQ(*with_other_key, ExampleLicense());
}

TEST(LicenseVerify, ExpiredFailsWithTheDate) {
  absl::StatusOr<License> license =
      VerifyLicense(ReadFile(TestFile("expired.license")), TestPublicKey(), kNow);
  EXPECT_EQ(license.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(license.status().message(), HasSubstr("license expired on 2026-01-01"));
}

TEST(LicenseVerify, ExpiresDayIsTheFirstInvalidUtcDay) {
  const std::string text = ReadFile(TestFile("valid.license"));
  const absl::TimeZone utc = absl::UTCTimeZone();
  absl::Time last_second = absl::FromCivil(absl::CivilSecond(2035, 12, 31, 23, 59, 59), utc);
  EXPECT_TRUE(VerifyLicense(text, TestPublicKey(), last_second).ok());
  absl::Time expiry = absl::FromCivil(absl::CivilSecond(2036, 1, 1, 0, 0, 0), utc);
  absl::StatusOr<License> expired = VerifyLicense(text, TestPublicKey(), expiry);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(expired.status().message(), HasSubstr("license expired on 2036-01-01"));
}

TEST(LicenseVerify, NotYetValidFails) {
  absl::Time before =
      absl::FromCivil(absl::CivilSecond(2025, 12, 31, 23, 59, 59), absl::UTCTimeZone());
  absl::StatusOr<License> license =
      VerifyLicense(ReadFile(TestFile("valid.license")), TestPublicKey(), before);
  EXPECT_EQ(license.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(license.status().message(), HasSubstr("not valid before 2026-01-01"));
  EXPECT_THAT(license.status().message(), HasSubstr("today is 2025-12-31 UTC"));
}

TEST(LicenseVerify, SignatureIsCheckedBeforeDates) {
  std::string text =
      Replace(ReadFile(TestFile("expired.license")), "max_event_loops = 4", "max_event_loops = 5");
  EXPECT_EQ(VerifyLicense(text, TestPublicKey(), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
}

// ---- malformed text ----------------------------------------------------------------------

struct MalformedCase {
  std::string name;
  std::string text;
  std::string message;  // expected substring of the error
};

// Whole-file and line-level problems: size, lines, bytes, structure.
std::vector<MalformedCase> MalformedStructureCases(const std::string& good) {
  std::string garbage(
      "\x7f"
      "ELF\x02\x01\x01\x00\x00\x00\x00",
      11);
  return {
      {"empty", "", "license: file is empty"},
      {"blank", " \n\t\r\n\n", "license: file is empty"},
      {"missing field", Replace(good, "expires = 2036-01-01\n", ""),
       "license: missing field expires"},
      {"only comments", "# nothing here\n",
       "license: missing fields licensee, issued, expires, max_event_loops, signature"},
      {"duplicate", good + "issued = 2026-01-01\n",
       "license:7: duplicate field \"issued\" (first on line 3)"},
      {"unknown field", Replace(good, "issued", "owner = \"me\"\nissued"),
       "license:3: unknown field \"owner\""},
      {"no equals", Replace(good, "licensee = ", "licensee "), "license:2: expected key = value"},
      {"no key", Replace(good, "licensee = ", "= "), "license:2: missing field name before '='"},
      {"no value", Replace(good, "expires = 2036-01-01", "expires ="),
       "license:4: expires has no value"},
      {"oversized", good + std::string(kLicenseFileBytesMax, '#'),
       "license: file is " + std::to_string(good.size() + kLicenseFileBytesMax) +
           " bytes; a license is at most 16384"},
      {"garbage bytes", garbage,
       "license:1: control character 0x7f at column 1 (not a text license file?)"},
      {"NUL byte", Replace(good, "Example Corp", std::string("Exa\0mple", 8)),
       "license:2: control character 0x00 at column 16"},
      {"invalid UTF-8", Replace(good, "Example Corp", "Example \xc3\x28orp"),
       "license:2: invalid UTF-8: byte 0xc3 at column 21"},
      {"overlong UTF-8", Replace(good, "Example Corp", "Example \xc0\xaforp"),
       "license:2: invalid UTF-8: byte 0xc0 at column 21"},
      {"overlong 3-byte UTF-8",
       Replace(good, "Example Corp",
               "Example \xe0\x80\xaf"
               "Corp"),
       "license:2: invalid UTF-8: byte 0xe0 at column 21"},
      {"UTF-8 surrogate",
       Replace(good, "Example Corp",
               "Example \xed\xa0\x80"
               "Corp"),
       "license:2: invalid UTF-8: byte 0xed at column 21"},
      {"UTF-8 above U+10FFFF", Replace(good, "Example Corp", "Example \xf4\x90\x80\x80"),
       "license:2: invalid UTF-8: byte 0xf4 at column 21"},
      {"truncated UTF-8", Replace(good, "Example Corp\"", "Example \xe6\x9d"),
       "license:2: invalid UTF-8: byte 0xe6 at column 21"},
      {"too many lines", std::string(kLicenseLinesMax, '\n') + good,
       "license:65: too many lines (a license has at most 64)"},
      {"long line", "# " + std::string(kLicenseLineBytesMax, 'x') + "\n" + good,
       "license:1: line is longer than 1024 bytes"},
  };
}

// Well-formed lines with a bad value.
std::vector<MalformedCase> MalformedValueCases(const std::string& good) {
  const std::string sig_line = good.substr(good.find("signature = "));
  const std::string signature = sig_line.substr(12, 128);
  return {
      {"impossible date", Replace(good, "2026-01-01", "2026-02-30"),
       "license:3: issued is not a date: \"2026-02-30\" (expected YYYY-MM-DD"},
      {"sloppy date", Replace(good, "2036-01-01", "2036-1-1"),
       "license:4: expires is not a date: \"2036-1-1\""},
      {"issued after expires", Replace(good, "issued = 2026-01-01", "issued = 2037-01-01"),
       "license:4: issued date 2037-01-01 is not before expires date 2036-01-01"},
      {"bad hex", Replace(good, "signature = " + signature.substr(0, 2), "signature = zz"),
       "license:6: signature has a non-hex character \"z\" at position 1"},
      {"short signature", Replace(good, signature, signature.substr(1)),
       "license:6: signature must be 128 hex digits, found 127 characters"},
      {"unquoted licensee", Replace(good, "\"Example Corp\"", "Example Corp"),
       "license:2: licensee must be a double-quoted string, found \"Example Corp\""},
      {"quote in licensee", Replace(good, "\"Example Corp\"", "\"Example \"Corp\""),
       "license:2: licensee may not contain '\"' or '\\'"},
      {"empty licensee", Replace(good, "\"Example Corp\"", "\"\""), "license:2: licensee is empty"},
      {"long licensee", Replace(good, "Example Corp", std::string(257, 'x')),
       "license:2: licensee is longer than 256 bytes"},
      {"zero loops", Replace(good, "max_event_loops = 8", "max_event_loops = 0"),
       "license:5: max_event_loops must be a whole number from 1 to 4096, found \"0\""},
      {"too many loops", Replace(good, "max_event_loops = 8", "max_event_loops = 4097"),
       "max_event_loops must be a whole number from 1 to 4096, found \"4097\""},
      {"leading zero", Replace(good, "max_event_loops = 8", "max_event_loops = 08"),
       "found \"08\""},
      {"negative loops", Replace(good, "max_event_loops = 8", "max_event_loops = -8"),
       "found \"-8\""},
      {"trailing comment", Replace(good, "max_event_loops = 8", "max_event_loops = 8 # x"),
       "found \"8 # x\""},
  };
}

std::vector<MalformedCase> MalformedCases() {
  const std::string good = ReadFile(TestFile("valid.license"));
  std::vector<MalformedCase> cases = MalformedStructureCases(good);
  for (MalformedCase& c : MalformedValueCases(good)) cases.push_back(std::move(c));
  return cases;
}

TEST(LicenseMalformed, EachFailsWithItsOwnMessage) {
  std::set<std::string> messages;
  for (const MalformedCase& c : MalformedCases()) {
    absl::StatusOr<License> parsed = ParseLicense(c.text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.name;
    // The whole path reports the same error: format problems come before the signature.
    absl::StatusOr<License> verified = VerifyLicense(c.text, TestPublicKey(), kNow);
    EXPECT_EQ(verified.status(), parsed.status()) << c.name;
    messages.insert(std::string(parsed.status().message()));
  }
  // Every case is told apart by its message ("empty" and "blank" share it on purpose).
  EXPECT_EQ(messages.size(), MalformedCases().size() - 1);
}

TEST(LicenseMalformed, SourceNameLeadsTheMessage) {
  absl::StatusOr<License> parsed = ParseLicense("licensee\n", "/etc/ringmail/license");
  EXPECT_EQ(parsed.status().message(), "/etc/ringmail/license:1: expected key = value");
}

// ---- files -------------------------------------------------------------------------------

TEST(LicenseFile, MissingFileIsNotFound) {
  TempDir dir;
  absl::StatusOr<License> license = LoadLicenseFile(dir.File("nope"), TestPublicKey(), kNow);
  EXPECT_EQ(license.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(license.status().message(), "license file " + dir.File("nope") + ": not found");
}

TEST(LicenseFile, DirectoryIsNotALicense) {
  TempDir dir;
  absl::StatusOr<License> license = LoadLicenseFile(dir.File(""), TestPublicKey(), kNow);
  EXPECT_EQ(license.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(license.status().message(), HasSubstr("not a regular file"));
}

TEST(LicenseFile, OversizedFileIsRefusedWithoutReadingItAll) {
  TempDir dir;
  WriteFileOrDie(dir.File("big"), std::string(1 << 20, '#'));
  absl::StatusOr<License> license = LoadLicenseFile(dir.File("big"), TestPublicKey(), kNow);
  EXPECT_EQ(license.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(license.status().message(), HasSubstr("larger than 16384 bytes"));
}

TEST(LicenseFile, ParseErrorsNameThePath) {
  TempDir dir;
  WriteFileOrDie(dir.File("bad"), "# x\nlicensee: me\n");
  absl::StatusOr<License> license = LoadLicenseFile(dir.File("bad"), TestPublicKey(), kNow);
  EXPECT_EQ(license.status().message(), dir.File("bad") + ":2: expected key = value");
}

TEST(LicenseFile, KeyFilesParseStrictly) {
  EXPECT_TRUE(ParseLicenseKeyFile("# c\n\n" + std::string(64, 'a') + "\r\n").ok());
  EXPECT_THAT(ParseLicenseKeyFile("# only a comment\n").status().message(),
              HasSubstr("holds no key"));
  EXPECT_THAT(
      ParseLicenseKeyFile(std::string(64, 'a') + "\n" + std::string(64, 'b')).status().message(),
      HasSubstr("second key line (line 2)"));
  EXPECT_THAT(ParseLicenseKeyHex(std::string(63, 'a')).status().message(),
              HasSubstr("key must be 64 hex digits, found 63 characters"));
  EXPECT_THAT(ParseLicenseKeyHex(std::string(63, 'a') + "g").status().message(),
              HasSubstr("non-hex character \"g\" at position 64"));
}

// ---- what the daemon uses ----------------------------------------------------------------

TEST(LicenseEvaluate, NoLicenseMeansOneLoop) {
  LicenseStatus status = EvaluateLicense("", TestPublicKey(), kNow);
  EXPECT_FALSE(status.valid);
  EXPECT_EQ(status.licensed_concurrency, 1);
  EXPECT_EQ(status.error, "no license file configured");
  EXPECT_THAT(status.summary, HasSubstr("limited to 1 event loop"));
  EXPECT_FALSE(status.license.has_value());
}

TEST(LicenseEvaluate, InvalidLicenseMeansOneLoopWithTheReason) {
  const std::vector<std::pair<std::string, absl::StatusCode>> cases = {
      {"expired.license", absl::StatusCode::kFailedPrecondition},
      {"tampered.license", absl::StatusCode::kUnauthenticated},
      {"wrong_key.license", absl::StatusCode::kUnauthenticated},
      {"absent.license", absl::StatusCode::kNotFound},
      {"make_samples.py", absl::StatusCode::kInvalidArgument},
  };
  for (const auto& [name, code] : cases) {
    LicenseStatus status = EvaluateLicense(TestFile(name), TestPublicKey(), kNow);
    EXPECT_FALSE(status.valid) << name;
    EXPECT_EQ(status.licensed_concurrency, 1) << name;
    EXPECT_EQ(status.code, code) << name;
    EXPECT_FALSE(status.error.empty()) << name;
    EXPECT_THAT(status.summary, HasSubstr(status.error)) << name;
  }
  EXPECT_THAT(EvaluateLicense(TestFile("expired.license"), TestPublicKey(), kNow).error,
              HasSubstr("expired on 2026-01-01"));
}

TEST(LicenseEvaluate, ValidLicenseGrantsMaxEventLoops) {
  LicenseStatus status = EvaluateLicense(TestFile("valid.license"), TestPublicKey(), kNow);
  ASSERT_TRUE(status.valid) << status.error;
  EXPECT_EQ(status.licensed_concurrency, 8);
  EXPECT_EQ(status.code, absl::StatusCode::kOk);
  EXPECT_TRUE(status.error.empty());
  EXPECT_EQ(status.summary,
            "licensed to \"Example Corp\" until 2036-01-01 (3501 days left): up to 8 event loops");
  ASSERT_TRUE(status.license.has_value());
  EXPECT_EQ(*status.license, ExampleLicense());
  EXPECT_EQ(
      EvaluateLicense(TestFile("unicode.license"), TestPublicKey(), kNow).licensed_concurrency, 16);
}

TEST(LicenseEvaluate, ConcurrencyCapIsEnforced) {
  LicenseStatus valid = EvaluateLicense(TestFile("valid.license"), TestPublicKey(), kNow);
  EXPECT_TRUE(CheckLicensedConcurrency(1, valid).ok());
  EXPECT_TRUE(CheckLicensedConcurrency(8, valid).ok());
  absl::Status over = CheckLicensedConcurrency(9, valid);
  EXPECT_EQ(over.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(over.message(), HasSubstr("asks for 9 event loops but the license allows 8"));

  LicenseStatus none = EvaluateLicense(TestFile("expired.license"), TestPublicKey(), kNow);
  EXPECT_TRUE(CheckLicensedConcurrency(1, none).ok());
  absl::Status unlicensed = CheckLicensedConcurrency(2, none);
  EXPECT_EQ(unlicensed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(unlicensed.message(),
              HasSubstr("without a valid license only 1 is allowed (license expired on"));
  EXPECT_EQ(CheckLicensedConcurrency(0, valid).code(), absl::StatusCode::kInvalidArgument);
}

// ---- keys and signing --------------------------------------------------------------------

TEST(LicenseKeys, TestKeyPairIsConsistentAndCompiledIn) {
  absl::StatusOr<LicensePublicKey> file_key = ReadLicenseKeyFile(TestFile("test_key.public"));
  ASSERT_TRUE(file_key.ok()) << file_key.status();
  EXPECT_EQ(LicenseHexEncode(TestPublicKey()), LicenseHexEncode(*file_key));
  absl::StatusOr<LicensePublicKey> derived = PublicKeyFromPrivate(KeyFromFile("test_key.private"));
  ASSERT_TRUE(derived.ok()) << derived.status();
  EXPECT_EQ(*derived, *file_key);
}

TEST(LicenseKeys, BuiltInPublicKeyIsTheTestKeyUnlessAVendorKeyWasConfigured) {
  absl::StatusOr<LicensePublicKey> file_key = ReadLicenseKeyFile(TestFile("test_key.public"));
  ASSERT_TRUE(file_key.ok()) << file_key.status();
  const bool same = LicenseHexEncode(BuiltInPublicKey()) == LicenseHexEncode(*file_key);
#if defined(RINGMAIL_LICENSE_VENDOR_KEY)
  EXPECT_FALSE(BuiltInPublicKeyIsTestKey());
  EXPECT_FALSE(same);
#else
  EXPECT_TRUE(BuiltInPublicKeyIsTestKey());
  EXPECT_TRUE(same);
  absl::StatusOr<License> loaded = LoadLicenseFile(TestFile("valid.license"), kNow);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  LicenseStatus status = EvaluateLicense(TestFile("valid.license"), kNow);
  EXPECT_EQ(status.licensed_concurrency, 8);
  EXPECT_THAT(status.summary, HasSubstr("[built with the TEST license key]"));
#endif
}

// Ed25519 is deterministic, so wolfSSL must reproduce the Python-made signature exactly.
TEST(LicenseKeys, SigningReproducesTheIndependentlyMadeSample) {
  absl::StatusOr<std::string> text = SignLicense(ExampleLicense(), KeyFromFile("test_key.private"));
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<SignedLicense> ours = ParseSignedLicense(*text);
  absl::StatusOr<SignedLicense> sample = ParseSignedLicense(ReadFile(TestFile("valid.license")));
  ASSERT_TRUE(ours.ok() && sample.ok());
  EXPECT_EQ(ours->signature, sample->signature);
}

TEST(LicenseKeys, GenerateSignVerifyRoundTrip) {
  absl::StatusOr<LicenseKeyPair> a = GenerateKeyPair();
  absl::StatusOr<LicenseKeyPair> b = GenerateKeyPair();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->private_key, b->private_key);
  EXPECT_NE(a->public_key, b->public_key);
  absl::StatusOr<LicensePublicKey> derived = PublicKeyFromPrivate(a->private_key);
  ASSERT_TRUE(derived.ok());
  EXPECT_EQ(*derived, a->public_key);

  License license{"Round Trip Ltd", absl::CivilDay(2026, 5, 1), absl::CivilDay(2027, 5, 1), 3};
  absl::StatusOr<std::string> text = SignLicense(license, a->private_key);
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<License> verified = VerifyLicense(*text, a->public_key, kNow);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, license);
  EXPECT_EQ(VerifyLicense(*text, b->public_key, kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(VerifyLicense(*text, TestPublicKey(), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(LicenseKeys, SigningRefusesInvalidFields) {
  const LicensePrivateKey key = KeyFromFile("test_key.private");
  std::vector<License> bad(6, ExampleLicense());
  bad[0].licensee = "";
  bad[1].licensee = "two\nlines";
  bad[2].licensee = "say \"hi\"";
  bad[3].issued = bad[3].expires;
  bad[4].max_event_loops = 0;
  bad[5].max_event_loops = kMaxEventLoopsLimit + 1;
  for (const License& license : bad) {
    EXPECT_EQ(SignLicense(license, key).status().code(), absl::StatusCode::kInvalidArgument)
        << license.licensee << " " << license.max_event_loops;
  }
}

// ---- the ringmail-license tool -----------------------------------------------------------

struct ToolResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

class LicenseToolTest : public ::testing::Test {
 protected:
  static std::string ToolPath() {
    return std::string(RINGMAIL_BINARY_DIR) + "/tools/license_tool/ringmail-license";
  }

  void SetUp() override {
    // Not a skip: a missing tool is a build problem this test must report.
    ASSERT_EQ(::access(ToolPath().c_str(), X_OK), 0)
        << ToolPath() << " is not built; build the ringmail-license target";
  }

  ToolResult Run(const std::vector<std::string>& args) {
    const std::string out_path = dir_.File("tool_output." + std::to_string(runs_++));
    std::vector<std::string> argv_storage = {ToolPath()};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ToolResult result;
    if (rc != 0) return result;
    int status = 0;
    if (::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    }
    result.output = ReadFile(out_path);
    return result;
  }

  TempDir dir_;
  int runs_ = 0;
};

TEST_F(LicenseToolTest, HelpAndUsageErrors) {
  ToolResult help = Run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("ringmail-license keygen --out PREFIX"));
  const std::vector<std::pair<std::vector<std::string>, std::string>> usage_errors = {
      {{}, "missing command"},
      {{"frobnicate"}, "unknown command \"frobnicate\""},
      {{"keygen"}, "missing --out"},
      {{"keygen", "--out"}, "flag --out needs a value"},
      {{"keygen", "--out", "a", "--out", "b"}, "flag --out given twice"},
      {{"sign", "--key", "k", "--expires", "2030-01-01", "--max-event-loops", "2"},
       "missing --licensee"},
      {{"sign", "--key", "k", "--licensee", "X", "--expires", "2030-02-30", "--max-event-loops",
        "2"},
       "--expires must be a date YYYY-MM-DD"},
      {{"sign", "--key", "k", "--licensee", "X", "--expires", "2030-01-01", "--max-event-loops",
        "lots"},
       "--max-event-loops must be a whole number"},
      {{"sign", "--key", "k", "--licensee", "X", "--expires", "2030-01-01", "--issued",
        "2031-01-01", "--max-event-loops", "2"},
       "issued date 2031-01-01 is not before expires date 2030-01-01"},
      {{"show"}, "show takes exactly one license FILE"},
      {{"show", "f", "--colour"}, "unknown flag --colour"},
  };
  for (const auto& [args, message] : usage_errors) {
    ToolResult result = Run(args);
    EXPECT_EQ(result.exit_code, 2) << message;
    EXPECT_THAT(result.output, HasSubstr(message));
  }
}

TEST_F(LicenseToolTest, KeygenWritesAPrivateKeyOnlyTheOwnerCanRead) {
  const std::string prefix = dir_.File("vendor");
  ToolResult made = Run({"keygen", "--out", prefix});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  struct stat st;
  ASSERT_EQ(::stat((prefix + ".private").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<LicensePrivateKey> private_key = ReadLicenseKeyFile(prefix + ".private");
  absl::StatusOr<LicensePublicKey> public_key = ReadLicenseKeyFile(prefix + ".public");
  ASSERT_TRUE(private_key.ok() && public_key.ok());
  EXPECT_EQ(*PublicKeyFromPrivate(*private_key), *public_key);
  EXPECT_THAT(made.output, HasSubstr(LicenseHexEncode(*public_key)));

  const std::string before = ReadFile(prefix + ".private");
  ToolResult again = Run({"keygen", "--out", prefix});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.output, HasSubstr("already exists, not overwriting"));
  EXPECT_EQ(ReadFile(prefix + ".private"), before);
}

TEST_F(LicenseToolTest, SignThenShowWithTheMatchingKey) {
  const std::string prefix = dir_.File("vendor");
  ASSERT_EQ(Run({"keygen", "--out=" + prefix}).exit_code, 0);
  const std::string license = dir_.File("license");
  ToolResult signed_result =
      Run({"sign", "--key", prefix + ".private", "--licensee", "Tool Test GmbH", "--expires",
           "2099-01-01", "--max-event-loops", "6", "--out", license});
  ASSERT_EQ(signed_result.exit_code, 0) << signed_result.output;

  ToolResult shown = Run({"show", license, "--public-key", prefix + ".public"});
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_THAT(shown.output, HasSubstr("licensee:        \"Tool Test GmbH\""));
  EXPECT_THAT(shown.output, HasSubstr("max_event_loops: 6"));
  EXPECT_THAT(shown.output, HasSubstr("status:          valid"));

  // The built-in key did not sign it.
  ToolResult built_in = Run({"show", license});
  EXPECT_EQ(built_in.exit_code, 1);
  EXPECT_THAT(built_in.output, HasSubstr("INVALID: license signature does not verify"));

  absl::StatusOr<LicensePublicKey> public_key = ReadLicenseKeyFile(prefix + ".public");
  ASSERT_TRUE(public_key.ok());
  absl::StatusOr<License> loaded = LoadLicenseFile(license, *public_key, absl::Now());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->max_event_loops, 6);
  EXPECT_EQ(loaded->issued, absl::ToCivilDay(absl::Now(), absl::UTCTimeZone()));
}

TEST_F(LicenseToolTest, SignToStdoutAndShowAgainstTheBuiltInKey) {
  ToolResult signed_result =
      Run({"sign", "--key", TestFile("test_key.private"), "--licensee", "Stdout Ltd", "--issued",
           "2026-01-01", "--expires", "2099-01-01", "--max-event-loops", "2"});
  ASSERT_EQ(signed_result.exit_code, 0) << signed_result.output;
  absl::StatusOr<License> parsed = ParseLicense(signed_result.output);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->licensee, "Stdout Ltd");
  const std::string license = dir_.File("stdout.license");
  WriteFileOrDie(license, signed_result.output);
  ToolResult shown = Run({"show", license});
#if defined(RINGMAIL_LICENSE_VENDOR_KEY)
  EXPECT_EQ(shown.exit_code, 1) << shown.output;
#else
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_THAT(shown.output, HasSubstr("(built in, the TEST key)"));
#endif
}

TEST_F(LicenseToolTest, ShowReportsInvalidLicensesWithExitOne) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {TestFile("tampered.license"), "INVALID: license signature does not verify"},
      {TestFile("make_samples.py"), "expected key = value"},
      {dir_.File("absent"), "not found"},
  };
  for (const auto& [path, message] : cases) {
    ToolResult shown = Run({"show", path});
    EXPECT_EQ(shown.exit_code, 1) << path;
    EXPECT_THAT(shown.output, HasSubstr(message)) << path;
  }
  ToolResult expired =
      Run({"show", TestFile("expired.license"), "--public-key", TestFile("test_key.public")});
  EXPECT_EQ(expired.exit_code, 1);
  EXPECT_THAT(expired.output, HasSubstr("INVALID: license expired on 2026-01-01"));
  ToolResult other =
      Run({"show", TestFile("wrong_key.license"), "--public-key", TestFile("other_key.public")});
  EXPECT_EQ(other.exit_code, 0) << other.output;
}

}  // namespace
}  // namespace ringmail::config
