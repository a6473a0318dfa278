// ringmail-license — the vendor's key and license tool (DESIGN.md "License").
//
//   keygen --out PREFIX     a fresh Ed25519 key pair: PREFIX.private (0600) and PREFIX.public
//   sign ...                a signed license file from a private key and the fields
//   show FILE               the fields and whether the license verifies now
//
// Single-threaded, short-lived; all format and crypto work is config/license.h. Exit status:
// 0 success, 1 failure (invalid license, unreadable file, crypto error), 2 usage error.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "config/license.h"

namespace ringmail::license_tool {
namespace {

using config::License;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "ringmail-license: make keys and sign ringmail licenses; show and check a license.\n"
    "\n"
    "usage:\n"
    "  ringmail-license keygen --out PREFIX\n"
    "      Writes a new Ed25519 key pair as PREFIX.private (mode 0600; keep it secret) and\n"
    "      PREFIX.public (64 hex digits: build ringmaild with\n"
    "      -DRINGMAIL_LICENSE_PUBKEY=<that hex>). Never overwrites existing files.\n"
    "  ringmail-license sign --key PRIVATE_FILE --licensee NAME --expires YYYY-MM-DD\n"
    "                        --max-event-loops N [--issued YYYY-MM-DD] [--out FILE]\n"
    "      Prints the signed license, or writes it to FILE. --issued defaults to today\n"
    "      (UTC). The license is valid for the UTC days issued <= today < expires.\n"
    "  ringmail-license show FILE [--public-key PUBLIC_FILE]\n"
    "      Prints the license fields and whether it is valid now, checked against this\n"
    "      build's built-in public key or PUBLIC_FILE. Exit status 1 when invalid.\n"
    "  ringmail-license --help\n"
    "\n"
    "Flags take their value as the next argument or after '=' (--out=keys/vendor).\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

// A usage problem (exit 2) as opposed to an operational failure (exit 1).
struct UsageError {
  std::string message;
};

int Usage(const std::string& message) {
  std::fprintf(stderr, "ringmail-license: %s\nrun 'ringmail-license --help' for usage\n",
               message.c_str());
  return kExitUsage;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "ringmail-license: %s\n", std::string(status.message()).c_str());
  return kExitFailure;
}

struct Args {
  std::map<std::string, std::string> flags;
  std::vector<std::string> positional;
};

// Splits argv[2..] into --flag values (each allowed flag at most once) and positionals.
std::optional<UsageError> ParseArgs(const std::vector<std::string>& argv,
                                    const std::set<std::string>& allowed, Args* out) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      out->positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (allowed.count(name) == 0) return UsageError{"unknown flag --" + name};
    if (!value.has_value()) {
      if (i + 1 == argv.size()) return UsageError{"flag --" + name + " needs a value"};
      value = argv[++i];
    }
    if (!out->flags.emplace(name, *value).second) {
      return UsageError{"flag --" + name + " given twice"};
    }
  }
  return std::nullopt;
}

std::optional<UsageError> RequireFlags(const Args& args, const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (args.flags.count(name) == 0) return UsageError{"missing --" + name};
  }
  return std::nullopt;
}

std::string Flag(const Args& args, const std::string& name) {
  auto it = args.flags.find(name);
  return it == args.flags.end() ? std::string() : it->second;
}

absl::Status WriteAll(int fd, const std::string& path, const std::string& content) {
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(path + ": write failed: " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    return absl::UnavailableError(path + ": fsync failed: " + std::strerror(errno));
  }
  return absl::OkStatus();
}

// Writes `content` to `path` with `mode`; `exclusive` refuses an existing file (keys are
// never overwritten: losing a private key orphans every license signed with it).
absl::Status WriteFile(const std::string& path, const std::string& content, mode_t mode,
                       bool exclusive) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
  int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(path + ": already exists, not overwriting");
    }
    return absl::UnavailableError(path + ": " + std::strerror(errno));
  }
  absl::Status status = WriteAll(fd, path, content);
  if (status.ok() && ::fchmod(fd, mode) != 0) {
    status = absl::UnavailableError(path + ": chmod failed: " + std::strerror(errno));
  }
  ::close(fd);
  return status;
}

int Keygen(const std::vector<std::string>& argv) {
  Args args;
  if (auto error = ParseArgs(argv, {"out"}, &args)) return Usage(error->message);
  if (auto error = RequireFlags(args, {"out"})) return Usage(error->message);
  if (!args.positional.empty()) return Usage("keygen takes no arguments besides --out");
  const std::string prefix = Flag(args, "out");
  if (prefix.empty()) return Usage("--out needs a non-empty PREFIX");
  absl::StatusOr<config::LicenseKeyPair> pair = config::GenerateKeyPair();
  if (!pair.ok()) return Fail(pair.status());
  const std::string public_hex = config::LicenseHexEncode(pair->public_key);
  const std::string private_path = prefix + ".private";
  const std::string public_path = prefix + ".public";
  std::string private_text = absl::StrCat(
      "# ringmail license signing key (PRIVATE): keep it secret; it signs licenses.\n",
      "# public key: ", public_hex, "\n", config::LicenseHexEncode(pair->private_key), "\n");
  absl::Status status = WriteFile(private_path, private_text, 0600, /*exclusive=*/true);
  std::fill(private_text.begin(), private_text.end(), '\0');
  pair->private_key.fill(0);
  if (!status.ok()) return Fail(status);
  std::string public_text = absl::StrCat(
      "# ringmail license public key: build with -DRINGMAIL_LICENSE_PUBKEY=<the line below>\n",
      public_hex, "\n");
  status = WriteFile(public_path, public_text, 0644, /*exclusive=*/true);
  if (!status.ok()) {
    ::unlink(private_path.c_str());  // ours, just made: leave no half pair behind
    return Fail(status);
  }
  std::printf("wrote %s (keep secret) and %s\npublic key: %s\n", private_path.c_str(),
              public_path.c_str(), public_hex.c_str());
  return kExitOk;
}

// Builds the License from sign's flags; a bad value is a usage error.
std::optional<UsageError> LicenseFromFlags(const Args& args, absl::Time now, License* out) {
  out->licensee = Flag(args, "licensee");
  std::optional<absl::CivilDay> expires = config::ParseLicenseDate(Flag(args, "expires"));
  if (!expires) return UsageError{"--expires must be a date YYYY-MM-DD"};
  out->expires = *expires;
  out->issued = absl::ToCivilDay(now, absl::UTCTimeZone());
  if (args.flags.count("issued") != 0) {
    std::optional<absl::CivilDay> issued = config::ParseLicenseDate(Flag(args, "issued"));
    if (!issued) return UsageError{"--issued must be a date YYYY-MM-DD"};
    out->issued = *issued;
  }
  const std::string count = Flag(args, "max-event-loops");
  out->max_event_loops = 0;
  if (count.empty() || count.size() > 4 ||
      count.find_first_not_of("0123456789") != std::string::npos) {
    return UsageError{"--max-event-loops must be a whole number"};
  }
  for (char c : count) out->max_event_loops = out->max_event_loops * 10 + (c - '0');
  if (absl::Status valid = config::ValidateLicenseFields(*out); !valid.ok()) {
    return UsageError{std::string(valid.message())};
  }
  return std::nullopt;
}

int Sign(const std::vector<std::string>& argv, absl::Time now) {
  Args args;
  if (auto error = ParseArgs(
          argv, {"key", "licensee", "expires", "max-event-loops", "issued", "out"}, &args)) {
    return Usage(error->message);
  }
  if (auto error = RequireFlags(args, {"key", "licensee", "expires", "max-event-loops"})) {
    return Usage(error->message);
  }
  if (!args.positional.empty()) return Usage("sign takes no arguments besides its flags");
  License license;
  if (auto error = LicenseFromFlags(args, now, &license)) return Usage(error->message);
  absl::StatusOr<config::LicensePrivateKey> key = config::ReadLicenseKeyFile(Flag(args, "key"));
  if (!key.ok()) return Fail(key.status());
  absl::StatusOr<std::string> text = config::SignLicense(license, *key);
  key->fill(0);
  if (!text.ok()) return Fail(text.status());
  if (license.expires <= absl::ToCivilDay(now, absl::UTCTimeZone())) {
    std::fprintf(stderr, "ringmail-license: warning: this license is already expired\n");
  }
  if (args.flags.count("out") == 0) {
    std::fputs(text->c_str(), stdout);
    return kExitOk;
  }
  absl::Status status = WriteFile(Flag(args, "out"), *text, 0644, /*exclusive=*/false);
  if (!status.ok()) return Fail(status);
  std::printf("wrote %s\n", Flag(args, "out").c_str());
  return kExitOk;
}

void PrintFields(const std::string& path, const License& license) {
  std::printf("file:            %s\n", path.c_str());
  std::printf("licensee:        \"%s\"\n", license.licensee.c_str());
  std::printf("issued:          %s\n", config::FormatLicenseDate(license.issued).c_str());
  std::printf("expires:         %s\n", config::FormatLicenseDate(license.expires).c_str());
  std::printf("max_event_loops: %d\n", license.max_event_loops);
}

int Show(const std::vector<std::string>& argv, absl::Time now) {
  Args args;
  if (auto error = ParseArgs(argv, {"public-key"}, &args)) return Usage(error->message);
  if (args.positional.size() != 1) return Usage("show takes exactly one license FILE");
  const std::string& path = args.positional[0];
  config::LicensePublicKey key;
  std::string key_origin;
  if (args.flags.count("public-key") != 0) {
    absl::StatusOr<config::LicensePublicKey> read =
        config::ReadLicenseKeyFile(Flag(args, "public-key"));
    if (!read.ok()) return Fail(read.status());
    key = *read;
    key_origin = "from " + Flag(args, "public-key");
  } else {
    std::copy(config::BuiltInPublicKey().begin(), config::BuiltInPublicKey().end(), key.begin());
    key_origin = config::BuiltInPublicKeyIsTestKey() ? "built in, the TEST key" : "built in";
  }
  absl::StatusOr<std::string> text =
      config::ReadLicenseFileText(path, config::kLicenseFileBytesMax);
  if (!text.ok()) return Fail(text.status());
  absl::StatusOr<License> fields = config::ParseLicense(*text, path);
  if (!fields.ok()) return Fail(fields.status());
  PrintFields(path, *fields);
  std::printf("public key:      %s (%s)\n", config::LicenseHexEncode(key).c_str(),
              key_origin.c_str());
  absl::StatusOr<License> verified = config::VerifyLicense(*text, key, now, path);
  if (!verified.ok()) {
    std::printf("status:          INVALID: %s\n", std::string(verified.status().message()).c_str());
    return kExitFailure;
  }
  const int64_t days_left = verified->expires - absl::ToCivilDay(now, absl::UTCTimeZone());
  std::printf("status:          valid (%lld days left)\n", static_cast<long long>(days_left));
  return kExitOk;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  if (args.empty()) return Usage("missing command (keygen, sign or show)");
  const std::string command = args[0];
  args.erase(args.begin());
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  const absl::Time now = absl::Now();
  if (command == "keygen") return Keygen(args);
  if (command == "sign") return Sign(args, now);
  if (command == "show") return Show(args, now);
  return Usage("unknown command \"" + command + "\" (expected keygen, sign or show)");
}

}  // namespace
}  // namespace ringmail::license_tool

int main(int argc, char** argv) { return ringmail::license_tool::Main(argc, argv); }
