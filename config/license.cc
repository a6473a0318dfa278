// config/license.cc — see license.h for the format, the canonical text and the error modes.
#include "config/license.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
// wolfssl/options.h first: the other wolfSSL headers depend on the build's feature macros.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace ringmail::config {
namespace {

// The TEST key: its private half is committed at tests/testdata/license/test_key.private, so
// anyone can sign licenses for a binary built with it. Release builds set
// RINGMAIL_LICENSE_PUBKEY (CMake cache variable) to the vendor's key instead.
constexpr std::string_view kTestPublicKeyHex =
    "ae47fb0d407683ad734f0f415829673b29ad957a589589f73240f9d7b10ebd25";
#if defined(RINGMAIL_LICENSE_PUBKEY)
constexpr std::string_view kBuiltInPublicKeyHex = RINGMAIL_LICENSE_PUBKEY;
#else
constexpr std::string_view kBuiltInPublicKeyHex = kTestPublicKeyHex;
#endif

constexpr int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr bool IsKeyHex(std::string_view hex) {
  if (hex.size() != 2 * kLicenseKeyBytes) return false;
  for (char c : hex) {
    if (HexDigitValue(c) < 0) return false;
  }
  return true;
}

constexpr LicensePublicKey DecodeKeyHexOrZero(std::string_view hex) {
  LicensePublicKey key{};
  if (!IsKeyHex(hex)) return key;
  for (size_t i = 0; i < kLicenseKeyBytes; ++i) {
    key[i] = static_cast<uint8_t>(HexDigitValue(hex[2 * i]) * 16 + HexDigitValue(hex[2 * i + 1]));
  }
  return key;
}

static_assert(IsKeyHex(kTestPublicKeyHex));
static_assert(IsKeyHex(kBuiltInPublicKeyHex),
              "RINGMAIL_LICENSE_PUBKEY must be exactly 64 hex digits (an Ed25519 public key)");
constexpr LicensePublicKey kTestPublicKey = DecodeKeyHexOrZero(kTestPublicKeyHex);
constexpr LicensePublicKey kBuiltInPublicKey = DecodeKeyHexOrZero(kBuiltInPublicKeyHex);

constexpr std::string_view kCanonicalHeader = "ringmail license v1\n";
constexpr std::string_view kFieldNames[] = {"licensee", "issued", "expires", "max_event_loops",
                                            "signature"};
constexpr int kFieldCount = 5;
enum FieldIndex { kLicensee = 0, kIssued, kExpires, kMaxEventLoops, kSignature };
constexpr size_t kQuotedTextBytesMax = 40;

// An ed25519_key that is always freed (wc_ed25519_free also wipes the key material).
class Ed25519Key {
 public:
  Ed25519Key() : init_rc_(wc_ed25519_init(&key_)) {}
  ~Ed25519Key() {
    if (init_rc_ == 0) wc_ed25519_free(&key_);
  }
  Ed25519Key(const Ed25519Key&) = delete;
  Ed25519Key& operator=(const Ed25519Key&) = delete;
  bool ok() const { return init_rc_ == 0; }
  ed25519_key* get() { return &key_; }

 private:
  ed25519_key key_;
  int init_rc_;
};

// Debian's abseil is built with its own absl::string_view, distinct from std::string_view.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Echoes outside text in an error message: quoted, non-printables escaped, length capped.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kQuotedTextBytesMax; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (text.size() > kQuotedTextBytesMax) out += "...";
  out += "\"";
  return out;
}

absl::Status LineError(std::string_view source, int line, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Av(source), ":", line, ": ", message));
}

absl::Status FileError(std::string_view source, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Av(source), ": ", message));
}

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0 when it is malformed.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return n;
}

// Rejects control characters (tab allowed only when `allow_tab`) and malformed UTF-8.
absl::Status CheckText(std::string_view text, bool allow_tab) {
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && !(allow_tab && c == '\t')) || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "control character 0x%02x at column %d (not a text license file?)", c, i + 1));
    }
    size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "invalid UTF-8: byte 0x%02x at column %d (not a text license file?)", c, i + 1));
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::Status CheckLicensee(std::string_view licensee) {
  if (licensee.empty()) return absl::InvalidArgumentError("licensee is empty");
  if (licensee.size() > kLicenseeBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("licensee is longer than ", kLicenseeBytesMax, " bytes"));
  }
  if (licensee.find_first_of("\"\\") != std::string_view::npos) {
    return absl::InvalidArgumentError("licensee may not contain '\"' or '\\'");
  }
  if (licensee.front() == ' ' || licensee.back() == ' ') {
    return absl::InvalidArgumentError("licensee has leading or trailing spaces");
  }
  absl::Status text = CheckText(licensee, /*allow_tab=*/false);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("licensee: ", text.message()));
  return absl::OkStatus();
}

absl::Status CheckEventLoops(int max_event_loops) {
  if (max_event_loops < 1 || max_event_loops > kMaxEventLoopsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_event_loops must be a whole number from 1 to ", kMaxEventLoopsLimit));
  }
  return absl::OkStatus();
}

bool InDateRange(absl::CivilDay day) { return day.year() >= 2000 && day.year() <= 9999; }

absl::Status CheckDates(absl::CivilDay issued, absl::CivilDay expires) {
  if (!InDateRange(issued) || !InDateRange(expires)) {
    return absl::InvalidArgumentError("license dates must lie in the years 2000 to 9999");
  }
  if (issued >= expires) {
    return absl::InvalidArgumentError(absl::StrCat("issued date ", FormatLicenseDate(issued),
                                                   " is not before expires date ",
                                                   FormatLicenseDate(expires)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseLicenseeValue(std::string_view value) {
  if (value.size() < 2 || value.front() != '"' || value.back() != '"') {
    return absl::InvalidArgumentError(
        absl::StrCat("licensee must be a double-quoted string, found ", Quote(value)));
  }
  std::string_view inner = value.substr(1, value.size() - 2);
  RM_RETURN_IF_ERROR(CheckLicensee(inner));
  return std::string(inner);
}

absl::StatusOr<absl::CivilDay> ParseDateValue(std::string_view name, std::string_view value) {
  std::optional<absl::CivilDay> day = ParseLicenseDate(value);
  if (!day.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(Av(name), " is not a date: ", Quote(value),
                                                   " (expected YYYY-MM-DD, a real calendar date)"));
  }
  return *day;
}

absl::StatusOr<int> ParseEventLoopsValue(std::string_view value) {
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  bool digits = !value.empty() && value.size() <= 4 && value.front() != '0' &&
                std::all_of(value.begin(), value.end(), is_digit);
  int n = 0;
  if (digits) {
    for (char c : value) n = n * 10 + (c - '0');
  }
  if (!digits || n > kMaxEventLoopsLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_event_loops must be a whole number from 1 to ", kMaxEventLoopsLimit,
                     ", found ", Quote(value)));
  }
  return n;
}

absl::Status DecodeHex(std::string_view what, std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != 2 * out.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Av(what), " must be ", 2 * out.size(), " hex digits, found ", hex.size(), " characters"));
  }
  for (size_t i = 0; i < hex.size(); ++i) {
    if (HexDigitValue(hex[i]) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          Av(what), " has a non-hex character ", Quote(hex.substr(i, 1)), " at position ", i + 1));
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<uint8_t>(HexDigitValue(hex[2 * i]) * 16 + HexDigitValue(hex[2 * i + 1]));
  }
  return absl::OkStatus();
}

// One "key = value" line. `key` is empty for blank and comment lines.
struct LicenseLine {
  std::string_view key;
  std::string_view value;
};

absl::StatusOr<LicenseLine> SplitLine(std::string_view line) {
  RM_RETURN_IF_ERROR(CheckText(line, /*allow_tab=*/true));
  std::string_view trimmed = TrimBlanks(line);
  if (trimmed.empty() || trimmed.front() == '#') return LicenseLine{};
  size_t eq = trimmed.find('=');
  if (eq == std::string_view::npos) return absl::InvalidArgumentError("expected key = value");
  LicenseLine out{TrimBlanks(trimmed.substr(0, eq)), TrimBlanks(trimmed.substr(eq + 1))};
  if (out.key.empty()) return absl::InvalidArgumentError("missing field name before '='");
  return out;
}

int FieldIndexOf(std::string_view key) {
  for (int i = 0; i < kFieldCount; ++i) {
    if (kFieldNames[i] == key) return i;
  }
  return -1;
}

// Fills one field of `out` from its value text.
absl::Status ParseFieldValue(int field, std::string_view value, SignedLicense& out) {
  if (value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Av(kFieldNames[field]), " has no value"));
  }
  switch (field) {
    case kLicensee: {
      RM_ASSIGN_OR_RETURN(out.license.licensee, ParseLicenseeValue(value));
      return absl::OkStatus();
    }
    case kIssued: {
      RM_ASSIGN_OR_RETURN(out.license.issued, ParseDateValue("issued", value));
      return absl::OkStatus();
    }
    case kExpires: {
      RM_ASSIGN_OR_RETURN(out.license.expires, ParseDateValue("expires", value));
      return absl::OkStatus();
    }
    case kMaxEventLoops: {
      RM_ASSIGN_OR_RETURN(out.license.max_event_loops, ParseEventLoopsValue(value));
      return absl::OkStatus();
    }
    default:
      return DecodeHex("signature", value, out.signature);
  }
}

// Splits `text` into at most kLicenseLinesMax lines, each without its "\n" / "\r\n".
absl::StatusOr<std::vector<std::string_view>> SplitLicenseLines(std::string_view text,
                                                                std::string_view source) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    if (static_cast<int>(lines.size()) == kLicenseLinesMax) {
      return LineError(
          source, kLicenseLinesMax + 1,
          absl::StrCat("too many lines (a license has at most ", kLicenseLinesMax, ")"));
    }
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kLicenseLineBytesMax) {
      return LineError(source, static_cast<int>(lines.size()) + 1,
                       absl::StrCat("line is longer than ", kLicenseLineBytesMax, " bytes"));
    }
    lines.push_back(line);
  }
  return lines;
}

absl::StatusOr<LicenseKeyPair> ExportKeyPair(ed25519_key* key) {
  LicenseKeyPair pair;
  word32 private_len = kLicenseKeyBytes;
  word32 public_len = kLicenseKeyBytes;
  if (wc_ed25519_export_private_only(key, pair.private_key.data(), &private_len) != 0 ||
      wc_ed25519_export_public(key, pair.public_key.data(), &public_len) != 0 ||
      private_len != kLicenseKeyBytes || public_len != kLicenseKeyBytes) {
    return absl::InternalError("cannot export the generated Ed25519 key");
  }
  return pair;
}

std::string KeyFingerprint(std::span<const uint8_t, kLicenseKeyBytes> key) {
  return LicenseHexEncode(key.first(8)) + "...";
}

absl::Status VerifySignature(const SignedLicense& signed_license,
                             std::span<const uint8_t, kLicenseKeyBytes> public_key) {
  Ed25519Key key;
  if (!key.ok()) return absl::InternalError("cannot initialise an Ed25519 key");
  if (wc_ed25519_import_public(public_key.data(), kLicenseKeyBytes, key.get()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "license public key ", KeyFingerprint(public_key), " is not a valid Ed25519 key"));
  }
  std::string message = CanonicalLicenseText(signed_license.license);
  int verified = 0;
  int rc = wc_ed25519_verify_msg(signed_license.signature.data(), kLicenseSignatureBytes,
                                 reinterpret_cast<const byte*>(message.data()),
                                 static_cast<word32>(message.size()), &verified, key.get());
  // Any failure, including a malformed signature wolfSSL refuses to evaluate, is the same
  // answer: this text was not signed by this key.
  if (rc != 0 || verified != 1) {
    return absl::UnauthenticatedError(absl::StrCat(
        "license signature does not verify: the file was altered or signed by another key "
        "(checked against public key ",
        KeyFingerprint(public_key), ")"));
  }
  return absl::OkStatus();
}

// The licensee is validated text here (no quotes, no control characters), so it is shown as
// is; raw input is echoed only through Quote().
absl::Status CheckValidOn(const License& license, absl::Time now) {
  absl::CivilDay today = absl::ToCivilDay(now, absl::UTCTimeZone());
  if (today >= license.expires) {
    return absl::FailedPreconditionError(absl::StrCat("license expired on ",
                                                      FormatLicenseDate(license.expires),
                                                      " (licensee \"", license.licensee, "\")"));
  }
  if (today < license.issued) {
    return absl::OutOfRangeError(
        absl::StrCat("license is not valid before ", FormatLicenseDate(license.issued),
                     " (today is ", FormatLicenseDate(today), " UTC; check the system clock)"));
  }
  return absl::OkStatus();
}

absl::Status OpenError(std::string_view what, const std::string& path, int err) {
  std::string prefix = absl::StrCat(Av(what), " ", path, ": ");
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(prefix + "not found");
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(prefix + "permission denied");
    default:
      return absl::FailedPreconditionError(prefix + std::strerror(err));
  }
}

// Reads a whole regular file of at most `bytes_max` bytes. O_NONBLOCK keeps a FIFO planted
// at the path from blocking the open; the regular-file check then refuses it.
absl::StatusOr<std::string> ReadSmallFile(std::string_view what, const std::string& path,
                                          size_t bytes_max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return OpenError(what, path, errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return OpenError(what, path, errno);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(Av(what), " ", path, ": not a regular file"));
  }
  std::string data(bytes_max + 1, '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OpenError(what, path, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > bytes_max) {
    return absl::InvalidArgumentError(
        absl::StrCat(Av(what), " ", path, ": larger than ", bytes_max, " bytes"));
  }
  data.resize(got);
  return data;
}

std::string FormatLicenseFile(const License& license,
                              std::span<const uint8_t, kLicenseSignatureBytes> signature) {
  std::string text =
      "# ringmail license\n"
      "# Changing any value invalidates the signature; comments, blank lines\n"
      "# and spacing may change freely.\n";
  absl::StrAppend(&text, "licensee = \"", license.licensee, "\"\n");
  absl::StrAppend(&text, "issued = ", FormatLicenseDate(license.issued), "\n");
  absl::StrAppend(&text, "expires = ", FormatLicenseDate(license.expires), "\n");
  absl::StrAppend(&text, "max_event_loops = ", license.max_event_loops, "\n");
  absl::StrAppend(&text, "signature = ", LicenseHexEncode(signature), "\n");
  return text;
}

}  // namespace

// ---- format -------------------------------------------------------------------------------

std::string FormatLicenseDate(absl::CivilDay day) {
  return absl::StrFormat("%04d-%02d-%02d", day.year(), day.month(), day.day());
}

std::optional<absl::CivilDay> ParseLicenseDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  auto number = [&](size_t pos, size_t len, int* out) {
    *out = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      *out = *out * 10 + (text[i] - '0');
    }
    return true;
  };
  int year = 0, month = 0, day = 0;
  if (!number(0, 4, &year) || !number(5, 2, &month) || !number(8, 2, &day)) return std::nullopt;
  if (year < 2000 || month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  absl::CivilDay civil(year, month, day);
  // CivilDay normalises (Feb 30 becomes Mar 2): a real date survives unchanged.
  if (civil.year() != year || civil.month() != month || civil.day() != day) return std::nullopt;
  return civil;
}

absl::Status ValidateLicenseFields(const License& license) {
  RM_RETURN_IF_ERROR(CheckLicensee(license.licensee));
  RM_RETURN_IF_ERROR(CheckDates(license.issued, license.expires));
  return CheckEventLoops(license.max_event_loops);
}

std::string CanonicalLicenseText(const License& license) {
  return absl::StrCat(Av(kCanonicalHeader), "licensee=", license.licensee, "\n",
                      "issued=", FormatLicenseDate(license.issued), "\n",
                      "expires=", FormatLicenseDate(license.expires), "\n",
                      "max_event_loops=", license.max_event_loops, "\n");
}

absl::StatusOr<SignedLicense> ParseSignedLicense(std::string_view text,
                                                 std::string_view source_name) {
  if (text.size() > kLicenseFileBytesMax) {
    return FileError(source_name,
                     absl::StrCat("file is ", text.size(), " bytes; a license is at most ",
                                  kLicenseFileBytesMax));
  }
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return FileError(source_name, "file is empty");
  }
  RM_ASSIGN_OR_RETURN(std::vector<std::string_view> lines, SplitLicenseLines(text, source_name));
  SignedLicense out;
  int seen_on_line[kFieldCount] = {};
  for (size_t i = 0; i < lines.size(); ++i) {
    const int line_no = static_cast<int>(i) + 1;
    absl::StatusOr<LicenseLine> line = SplitLine(lines[i]);
    if (!line.ok()) return LineError(source_name, line_no, line.status().message());
    if (line->key.empty()) continue;
    int field = FieldIndexOf(line->key);
    if (field < 0) {
      return LineError(source_name, line_no, absl::StrCat("unknown field ", Quote(line->key)));
    }
    if (seen_on_line[field] != 0) {
      return LineError(source_name, line_no,
                       absl::StrCat("duplicate field \"", Av(kFieldNames[field]),
                                    "\" (first on line ", seen_on_line[field], ")"));
    }
    seen_on_line[field] = line_no;
    absl::Status value = ParseFieldValue(field, line->value, out);
    if (!value.ok()) return LineError(source_name, line_no, value.message());
  }
  std::vector<absl::string_view> missing;
  for (int field = 0; field < kFieldCount; ++field) {
    if (seen_on_line[field] == 0) missing.push_back(Av(kFieldNames[field]));
  }
  if (!missing.empty()) {
    return FileError(source_name,
                     absl::StrCat(missing.size() == 1 ? "missing field " : "missing fields ",
                                  absl::StrJoin(missing, ", ")));
  }
  absl::Status dates = CheckDates(out.license.issued, out.license.expires);
  if (!dates.ok()) return LineError(source_name, seen_on_line[kExpires], dates.message());
  return out;
}

absl::StatusOr<License> ParseLicense(std::string_view text, std::string_view source_name) {
  RM_ASSIGN_OR_RETURN(SignedLicense parsed, ParseSignedLicense(text, source_name));
  return std::move(parsed.license);
}

// ---- verification -------------------------------------------------------------------------

absl::StatusOr<License> VerifyLicense(std::string_view text,
                                      std::span<const uint8_t, kLicenseKeyBytes> public_key,
                                      absl::Time now, std::string_view source_name) {
  RM_ASSIGN_OR_RETURN(SignedLicense parsed, ParseSignedLicense(text, source_name));
  // Authenticity first: dates of a forged file are not worth reporting.
  RM_RETURN_IF_ERROR(VerifySignature(parsed, public_key));
  RM_RETURN_IF_ERROR(CheckValidOn(parsed.license, now));
  return std::move(parsed.license);
}

absl::StatusOr<std::string> ReadLicenseFileText(const std::string& path, size_t bytes_max) {
  return ReadSmallFile("license file", path, bytes_max);
}

absl::StatusOr<License> LoadLicenseFile(const std::string& path, absl::Time now) {
  return LoadLicenseFile(path, BuiltInPublicKey(), now);
}

absl::StatusOr<License> LoadLicenseFile(const std::string& path,
                                        std::span<const uint8_t, kLicenseKeyBytes> public_key,
                                        absl::Time now) {
  RM_ASSIGN_OR_RETURN(std::string text, ReadLicenseFileText(path, kLicenseFileBytesMax));
  return VerifyLicense(text, public_key, now, path);
}

std::span<const uint8_t, kLicenseKeyBytes> BuiltInPublicKey() { return kBuiltInPublicKey; }

bool BuiltInPublicKeyIsTestKey() { return kBuiltInPublicKey == kTestPublicKey; }

std::span<const uint8_t, kLicenseKeyBytes> TestPublicKey() { return kTestPublicKey; }

// ---- what the daemon uses -----------------------------------------------------------------

LicenseStatus EvaluateLicense(const std::string& path, absl::Time now) {
  LicenseStatus status = EvaluateLicense(path, BuiltInPublicKey(), now);
  if (BuiltInPublicKeyIsTestKey()) status.summary += " [built with the TEST license key]";
  return status;
}

LicenseStatus EvaluateLicense(const std::string& path,
                              std::span<const uint8_t, kLicenseKeyBytes> public_key,
                              absl::Time now) {
  LicenseStatus status;
  absl::StatusOr<License> license = path.empty() ? absl::NotFoundError("no license file configured")
                                                 : LoadLicenseFile(path, public_key, now);
  if (!license.ok()) {
    status.error = std::string(license.status().message());
    status.code = license.status().code();
    status.summary = absl::StrCat("unlicensed, limited to 1 event loop: ", status.error);
    return status;
  }
  const int days_left =
      static_cast<int>(license->expires - absl::ToCivilDay(now, absl::UTCTimeZone()));
  status.valid = true;
  status.licensed_concurrency = license->max_event_loops;
  status.summary = absl::StrCat("licensed to \"", license->licensee, "\" until ",
                                FormatLicenseDate(license->expires), " (", days_left,
                                days_left == 1 ? " day" : " days", " left): up to ",
                                license->max_event_loops, " event loops");
  status.license = *std::move(license);
  return status;
}

absl::Status CheckLicensedConcurrency(int requested_event_loops, const LicenseStatus& status) {
  if (requested_event_loops < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("requested event loop count ", requested_event_loops, " is below 1"));
  }
  if (requested_event_loops <= status.licensed_concurrency) return absl::OkStatus();
  if (status.valid) {
    return absl::FailedPreconditionError(
        absl::StrCat("the configuration asks for ", requested_event_loops,
                     " event loops but the license allows ", status.licensed_concurrency, " (",
                     status.summary, ")"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the configuration asks for ", requested_event_loops,
                   " event loops but without a valid license only ", status.licensed_concurrency,
                   " is allowed (", status.error, ")"));
}

// ---- keys and signing ---------------------------------------------------------------------

absl::StatusOr<LicenseKeyPair> GenerateKeyPair() {
  WC_RNG rng;
  if (wc_InitRng(&rng) != 0) return absl::InternalError("cannot initialise wolfSSL's RNG");
  Ed25519Key key;
  absl::StatusOr<LicenseKeyPair> pair = absl::InternalError("cannot initialise an Ed25519 key");
  if (key.ok()) {
    pair = wc_ed25519_make_key(&rng, ED25519_KEY_SIZE, key.get()) == 0
               ? ExportKeyPair(key.get())
               : absl::InternalError("Ed25519 key generation failed");
  }
  wc_FreeRng(&rng);
  return pair;
}

absl::StatusOr<LicensePublicKey> PublicKeyFromPrivate(
    std::span<const uint8_t, kLicenseKeyBytes> private_key) {
  Ed25519Key key;
  LicensePublicKey public_key{};
  if (!key.ok() ||
      wc_ed25519_import_private_only(private_key.data(), kLicenseKeyBytes, key.get()) != 0 ||
      wc_ed25519_make_public(key.get(), public_key.data(), kLicenseKeyBytes) != 0) {
    return absl::InvalidArgumentError("not a usable Ed25519 private key");
  }
  return public_key;
}

absl::StatusOr<std::string> SignLicense(const License& license,
                                        std::span<const uint8_t, kLicenseKeyBytes> private_key) {
  RM_RETURN_IF_ERROR(ValidateLicenseFields(license));
  RM_ASSIGN_OR_RETURN(LicensePublicKey public_key, PublicKeyFromPrivate(private_key));
  Ed25519Key key;
  if (!key.ok() ||
      wc_ed25519_import_private_key(private_key.data(), kLicenseKeyBytes, public_key.data(),
                                    kLicenseKeyBytes, key.get()) != 0) {
    return absl::InvalidArgumentError("not a usable Ed25519 private key");
  }
  SignedLicense signed_license{license, {}};
  std::string message = CanonicalLicenseText(license);
  word32 signature_len = kLicenseSignatureBytes;
  if (wc_ed25519_sign_msg(reinterpret_cast<const byte*>(message.data()),
                          static_cast<word32>(message.size()), signed_license.signature.data(),
                          &signature_len, key.get()) != 0 ||
      signature_len != kLicenseSignatureBytes) {
    return absl::InternalError("Ed25519 signing failed");
  }
  // Sign-then-verify: a license this tool hands out must be one the daemon accepts.
  absl::Status check = VerifySignature(signed_license, public_key);
  if (!check.ok()) return absl::InternalError(absl::StrCat("fresh signature: ", check.message()));
  return FormatLicenseFile(license, signed_license.signature);
}

std::string LicenseHexEncode(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> ParseLicenseKeyHex(std::string_view hex) {
  std::array<uint8_t, kLicenseKeyBytes> key{};
  RM_RETURN_IF_ERROR(DecodeHex("key", hex, key));
  return key;
}

absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> ParseLicenseKeyFile(std::string_view text) {
  if (text.size() > kKeyFileBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file is larger than ", kKeyFileBytesMax, " bytes"));
  }
  std::string_view key_line;
  int line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line = TrimBlanks(line);
    if (!line.empty() && line.back() == '\r') line = TrimBlanks(line.substr(0, line.size() - 1));
    if (line.empty() || line.front() == '#') continue;
    if (!key_line.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key file has a second key line (line ", line_no, ")"));
    }
    key_line = line;
  }
  if (key_line.empty()) return absl::InvalidArgumentError("key file holds no key");
  return ParseLicenseKeyHex(key_line);
}

absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> ReadLicenseKeyFile(const std::string& path) {
  RM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile("key file", path, kKeyFileBytesMax));
  absl::StatusOr<std::array<uint8_t, kLicenseKeyBytes>> key = ParseLicenseKeyFile(text);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key.status().message()));
  }
  return key;
}

}  // namespace ringmail::config
