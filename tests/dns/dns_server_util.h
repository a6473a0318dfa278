// tests/dns/dns_server_util.h — real DNS servers for the resolver tests, on 127.0.0.1 only.
//
// - Dnsmasq: the real dnsmasq (/usr/sbin/dnsmasq) started as a child on a free port with
//   the records a test gives, answering only from them (--no-resolv --no-hosts, --local for
//   the test zones: unknown names are NXDOMAIN, nothing is forwarded anywhere). Its query
//   log goes to a file the test can count lines of. Ready means it answered a probe query
//   (retried with a bounded deadline); stopped means SIGTERM and reaped. RAII: the child is
//   killed and reaped on destruction, and gets PR_SET_PDEATHSIG so it dies with the test.
// - FakeDnsServer: a UDP responder on its own thread for what dnsmasq will not say:
//   SERVFAIL, REFUSED, silence (timeouts), hostile or malformed answers, SOA negative TTLs.
//
// Test-thread objects; the fake server's responder runs on its thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/dns/dns_packet_util.h"

namespace ringmail::dns::testing {

inline constexpr char kDnsmasqPath[] = "/usr/sbin/dnsmasq";

// A UDP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed).
absl::StatusOr<uint16_t> PickFreeUdpPort();

class Dnsmasq {
 public:
  // Starts dnsmasq with `records` (e.g. "--mx-host=example.test,mx1.example.test,10") and
  // waits until it answers. Fails if dnsmasq is missing, exits, or stays silent.
  static absl::StatusOr<std::unique_ptr<Dnsmasq>> Start(const std::vector<std::string>& records);
  ~Dnsmasq();
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;

  uint16_t port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  // How many queries of `type` ("MX", "A", "AAAA") for `name` dnsmasq has logged.
  int CountQueries(std::string_view type, std::string_view name) const;
  // SIGTERM and reap; the port stops answering.
  void Stop();

 private:
  Dnsmasq() = default;
  absl::Status Launch(const std::vector<std::string>& records);
  absl::Status AwaitReady();

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

class FakeDnsServer {
 public:
  // Returns the reply to send, or nullopt to stay silent.
  using Responder = std::function<std::optional<std::string>(const Question&)>;

  static absl::StatusOr<std::unique_ptr<FakeDnsServer>> Start(Responder responder);
  ~FakeDnsServer();
  FakeDnsServer(const FakeDnsServer&) = delete;
  FakeDnsServer& operator=(const FakeDnsServer&) = delete;

  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  int queries() const { return queries_.load(); }

 private:
  FakeDnsServer() = default;
  void Serve();

  Responder responder_;
  int fd_ = -1;
  int stop_fd_ = -1;  // eventfd
  uint16_t port_ = 0;
  std::atomic<int> queries_{0};
  std::thread thread_;
};

// Responders.
FakeDnsServer::Responder Silent();
FakeDnsServer::Responder Rcode(uint16_t rcode);

}  // namespace ringmail::dns::testing
