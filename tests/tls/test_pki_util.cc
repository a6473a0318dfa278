#include "tests/tls/test_pki_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace ringmail::tls_test {
namespace {

// Runs argv[0] from PATH; its stdout goes to `stdout_path` (or /dev/null), stderr to
// `stderr_path`. Returns the exit status.
absl::StatusOr<int> Spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                          const std::string& stderr_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, stdout_path.empty() ? "/dev/null" : stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int r = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0) return absl::InternalError(absl::StrCat("cannot run ", argv[0], ": errno ", r));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError("waitpid failed");
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

TestPki::TestPki(TestPki&& other) noexcept
    : dir_(std::exchange(other.dir_, std::string())),
      options_(other.options_),
      ca_cert_(std::move(other.ca_cert_)),
      ca_key_(std::move(other.ca_key_)),
      serial_(other.serial_) {}

TestPki::~TestPki() {
  if (dir_.empty() || getenv("RINGMAIL_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::vector<std::string> TestPki::NewKeyArgs() const {
  if (options_.rsa_bits > 0) return {"-newkey", absl::StrCat("rsa:", options_.rsa_bits)};
  return {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"};
}

absl::Status TestPki::Run(const std::vector<std::string>& argv) const {
  const std::string log = dir_ + "/openssl.log";
  absl::StatusOr<int> code = Spawn(argv, "", log);
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(absl::StrCat("'", absl::StrJoin(argv, " "), "' exited ", *code,
                                            ": ", Slurp(log)));
  }
  return absl::OkStatus();
}

absl::StatusOr<TestPki> TestPki::Create(const std::string& ca_name, const Options& options) {
  const char* tmp = getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/ringmail-pki-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  TestPki pki(templ, options);
  pki.ca_cert_ = pki.dir_ + "/ca.pem";
  pki.ca_key_ = pki.dir_ + "/ca.key";
  std::vector<std::string> argv = {"openssl", "req", "-x509", "-nodes", "-days", "2",
                                   "-subj", "/CN=" + ca_name, "-keyout", pki.ca_key_,
                                   "-out", pki.ca_cert_,
                                   "-addext", "basicConstraints=critical,CA:TRUE",
                                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"};
  const std::vector<std::string> key = pki.NewKeyArgs();
  argv.insert(argv.begin() + 3, key.begin(), key.end());
  if (absl::Status s = pki.Run(argv); !s.ok()) return s;
  return pki;
}

absl::StatusOr<TestCertificate> TestPki::IssueServer(const std::string& file_stem,
                                                     const std::vector<std::string>& dns_names) {
  if (dns_names.empty()) return absl::InvalidArgumentError("IssueServer needs a name");
  TestCertificate c;
  const std::string base = dir_ + "/" + file_stem;
  c.cert_file = base + ".pem";
  c.key_file = base + ".key";
  c.chain_file = base + "-chain.pem";
  const std::string csr = base + ".csr";
  const std::string ext = base + ".ext";
  std::vector<std::string> sans;
  for (const std::string& n : dns_names) sans.push_back("DNS:" + n);
  sans.push_back("IP:127.0.0.1");
  if (absl::Status s = WriteText(ext, absl::StrCat("subjectAltName=", absl::StrJoin(sans, ","),
                                                   "\nbasicConstraints=CA:FALSE\n"
                                                   "extendedKeyUsage=serverAuth\n"));
      !s.ok()) {
    return s;
  }
  std::vector<std::string> req = {"openssl", "req", "-new", "-nodes", "-subj",
                                  "/CN=" + dns_names[0], "-keyout", c.key_file, "-out", csr};
  const std::vector<std::string> key = NewKeyArgs();
  req.insert(req.begin() + 3, key.begin(), key.end());
  if (absl::Status s = Run(req); !s.ok()) return s;
  if (absl::Status s = Run({"openssl", "x509", "-req", "-in", csr, "-CA", ca_cert_, "-CAkey",
                            ca_key_, "-set_serial", absl::StrCat(++serial_), "-days", "2",
                            "-sha256", "-extfile", ext, "-out", c.cert_file});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteText(c.chain_file, Slurp(c.cert_file) + Slurp(ca_cert_)); !s.ok()) {
    return s;
  }
  return c;
}

absl::StatusOr<TestCertificate> TestPki::SelfSigned(const std::string& file_stem,
                                                    const std::string& dns_name) {
  TestCertificate c;
  const std::string base = dir_ + "/" + file_stem;
  c.cert_file = base + ".pem";
  c.chain_file = c.cert_file;
  c.key_file = base + ".key";
  std::vector<std::string> argv = {"openssl", "req", "-x509", "-nodes", "-days", "2",
                                   "-subj", "/CN=" + dns_name, "-keyout", c.key_file,
                                   "-out", c.cert_file,
                                   "-addext", "subjectAltName=DNS:" + dns_name};
  const std::vector<std::string> key = NewKeyArgs();
  argv.insert(argv.begin() + 3, key.begin(), key.end());
  if (absl::Status s = Run(argv); !s.ok()) return s;
  return c;
}

std::string CertificateFingerprint(const std::string& cert_file) {
  const std::string out = cert_file + ".fp";
  absl::StatusOr<int> code = Spawn({"openssl", "x509", "-noout", "-fingerprint", "-sha256",
                                    "-in", cert_file}, out, "/dev/null");
  if (!code.ok() || *code != 0) return "";
  std::string text = Slurp(out);
  const size_t eq = text.find('=');
  if (eq == std::string::npos) return "";
  text = text.substr(eq + 1);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace ringmail::tls_test
