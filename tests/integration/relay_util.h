// tests/integration/relay_util.h — helpers for the relay end-to-end tests
// (relay_daemon_test.cc): a `ringload sink` child on 127.0.0.1:0 that dumps what it
// receives, reading those dumps back (envelope + content), `ringctl summary --json` counters,
// and a bounded poll loop.
//
// Contract
// - Test-thread code only. Every wait has a deadline; polling re-checks a condition every
//   few tens of milliseconds until it holds or the deadline passes (no fixed sleeps).
// - A RelaySink owns its child through daemon_util's Subprocess: killed and reaped on
//   destruction.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tests/integration/daemon_util.h"

namespace ringmail::integration {

std::string RingloadPath();
std::string RingctlPath();

// `ringload sink --dump DIR` plus `extra` flags, on 127.0.0.1:0.
class RelaySink {
 public:
  absl::Status Start(const std::string& dump_dir, const std::vector<std::string>& extra);
  uint16_t port() const { return port_; }
  std::string route() const { return "[127.0.0.1]:" + std::to_string(port_); }
  const std::string& dump_dir() const { return dump_dir_; }
  // Files written into the dump directory so far.
  size_t DumpCount() const;
  void Kill() { process_.Kill(); }

 private:
  Subprocess process_;
  std::string dump_dir_;
  uint16_t port_ = 0;
};

// One dumped message: "MAIL FROM:<...>" / "RCPT TO:<...>" lines, a blank line, the content.
struct DumpedMessage {
  std::string file;
  std::string mail_from;
  std::vector<std::string> rcpts;
  std::string content;
};
std::vector<DumpedMessage> ReadDumps(const std::string& dir);

// `content` without a first header named Received (with its folded continuation lines);
// nullopt when the content does not start with one.
std::optional<std::string> StripFirstReceived(const std::string& content);

// The value of header `name` (first occurrence, unfolded, trimmed) in the header block.
std::string HeaderValue(const std::string& content, const std::string& name);

// `ringctl --socket SOCKET --json summary` as key → number (flat object); empty on failure.
std::map<std::string, uint64_t> Summary(const std::string& socket);

// The sum over every loop of one counter in `ringctl metrics` output (Prometheus text:
// `NAME{loop="..."} VALUE` lines); -1 when no line has that name.
int64_t MetricSum(const std::string& metrics, std::string_view name);
// `ringctl metrics` from the daemon on `socket`; empty when ringctl fails.
std::string Metrics(const std::string& socket);

// A dnsmasq (`dnsmasq`: its path, from FindProgram) answering on 127.0.0.1:`port` for the
// names under .test from `records` only (its --mx-host=, --address=, ... flags), in the
// foreground: the Subprocess stops it. Its stderr goes to `stderr_path`.
absl::StatusOr<Subprocess> StartTestDns(const std::string& dnsmasq, uint16_t port,
                                        const std::vector<std::string>& records,
                                        const std::string& stderr_path);

// A UDP port on 127.0.0.1 that was free a moment ago (bound, then closed), chosen below the
// kernel's ephemeral range; 0 on failure.
uint16_t PickFreeUdpPort();
// The same for TCP: a port to write into a config before the daemon binds it (a route back
// to the daemon itself).
uint16_t PickFreeTcpPort();

// Re-evaluates `done` every ~20 ms until it returns true or `timeout` passes.
bool PollUntil(Millis timeout, const std::function<bool()>& done);

}  // namespace ringmail::integration
