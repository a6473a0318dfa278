// tests/tls/test_pki_util.h — a throwaway PKI for tests: a CA and the certificates it
// issues, generated at run time with Debian's openssl CLI in a temporary directory that is
// removed when the TestPki is destroyed. No private key is ever committed.
//
// Contract
// - Test-thread code; each call runs openssl as a child process (argv, no shell) and waits.
// - Keys are ECDSA P-256 (fast to make and to sign with) unless Options::rsa_bits is set.
// - Reusable by other test folders: add tests/tls/test_pki_util.cc to their sources (it
//   links abseil only).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ringmail::tls_test {

struct TestCertificate {
  std::string cert_file;   // the leaf alone (PEM)
  std::string chain_file;  // leaf then the issuing CA: what a server serves
  std::string key_file;    // PEM, unencrypted
};

struct TestPkiOptions {
  int rsa_bits = 0;  // 0: ECDSA P-256
};

class TestPki {
 public:
  using Options = TestPkiOptions;
  // Makes a fresh CA ("CN=<ca_name>") in a new temporary directory.
  static absl::StatusOr<TestPki> Create(const std::string& ca_name = "ringmail test CA",
                                        const Options& options = {});
  TestPki(TestPki&& other) noexcept;
  TestPki& operator=(TestPki&&) = delete;
  TestPki(const TestPki&) = delete;
  ~TestPki();

  // A server certificate for `dns_names` (the first is also the CN) plus IP 127.0.0.1,
  // issued by this CA. `file_stem` names its files in dir() (e.g. "server", "server2").
  absl::StatusOr<TestCertificate> IssueServer(const std::string& file_stem,
                                              const std::vector<std::string>& dns_names);
  // A self-signed certificate no CA vouches for (for "untrusted" tests).
  absl::StatusOr<TestCertificate> SelfSigned(const std::string& file_stem,
                                             const std::string& dns_name);

  const std::string& dir() const { return dir_; }
  const std::string& ca_file() const { return ca_cert_; }

 private:
  TestPki(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {}
  std::vector<std::string> NewKeyArgs() const;
  absl::Status Run(const std::vector<std::string>& argv) const;

  std::string dir_;
  Options options_;
  std::string ca_cert_;
  std::string ca_key_;
  int serial_ = 1;
};

// SHA-256 fingerprint of a PEM certificate file, as openssl prints it (for comparing which
// certificate a server served); empty on error.
std::string CertificateFingerprint(const std::string& cert_file);

}  // namespace ringmail::tls_test
