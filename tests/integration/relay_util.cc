#include "tests/integration/relay_util.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/string_view.h"

namespace ringmail::integration {

std::string RingloadPath() { return ToolPath("ringload", "ringload"); }
std::string RingctlPath() { return ToolPath("ringctl", "ringctl"); }

absl::Status RelaySink::Start(const std::string& dump_dir,
                              const std::vector<std::string>& extra) {
  dump_dir_ = dump_dir;
  std::vector<std::string> argv = {RingloadPath(), "sink",    "--listen", "127.0.0.1:0",
                                   "--dump",       dump_dir, "--quiet"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Subprocess::Options options;
  options.stderr_path = dump_dir + ".stderr";
  absl::StatusOr<Subprocess> p = Subprocess::Start(argv, options);
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  std::optional<std::string> line = process_.ReadStdoutLine(Millis(10'000));
  if (!line.has_value() || !absl::StartsWith(*line, "listening 127.0.0.1:")) {
    return absl::InternalError(absl::StrCat("sink did not report its port: ",
                                            ReadFile(options.stderr_path).value_or("")));
  }
  int port = 0;
  if (!absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port) || port <= 0) {
    return absl::InternalError("bad listening line: " + *line);
  }
  port_ = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

size_t RelaySink::DumpCount() const {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dump_dir_, ec)) {
    if (e.path().extension() == ".eml") ++n;
  }
  return n;
}

std::vector<DumpedMessage> ReadDumps(const std::string& dir) {
  std::vector<DumpedMessage> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".eml") continue;
    absl::StatusOr<std::string> text = ReadFile(e.path().string());
    if (!text.ok()) continue;
    DumpedMessage m;
    m.file = e.path().string();
    size_t pos = 0;
    for (;;) {
      size_t eol = text->find("\r\n", pos);
      if (eol == std::string::npos) break;
      std::string line = text->substr(pos, eol - pos);
      pos = eol + 2;
      if (line.empty()) break;
      if (absl::StartsWith(line, "MAIL FROM:<")) {
        m.mail_from = line.substr(11, line.size() - 12);
      } else if (absl::StartsWith(line, "RCPT TO:<")) {
        m.rcpts.push_back(line.substr(9, line.size() - 10));
      }
    }
    m.content = text->substr(pos);
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<std::string> StripFirstReceived(const std::string& content) {
  if (!absl::StartsWithIgnoreCase(content, "Received:")) return std::nullopt;
  size_t pos = 0;
  for (;;) {
    size_t eol = content.find("\r\n", pos);
    if (eol == std::string::npos) return std::nullopt;
    pos = eol + 2;
    if (pos >= content.size() || (content[pos] != ' ' && content[pos] != '\t')) break;
  }
  return content.substr(pos);
}

std::string HeaderValue(const std::string& content, const std::string& name) {
  const std::string prefix = name + ":";
  size_t pos = 0;
  while (pos < content.size()) {
    size_t eol = content.find("\r\n", pos);
    if (eol == std::string::npos || eol == pos) break;  // end of the header block
    if (absl::StartsWithIgnoreCase(absl::string_view(content).substr(pos), prefix)) {
      std::string value = content.substr(pos + prefix.size(), eol - pos - prefix.size());
      // Unfold continuation lines.
      size_t next = eol + 2;
      while (next < content.size() && (content[next] == ' ' || content[next] == '\t')) {
        size_t e2 = content.find("\r\n", next);
        if (e2 == std::string::npos) break;
        value += content.substr(next, e2 - next);
        next = e2 + 2;
      }
      return std::string(absl::StripAsciiWhitespace(value));
    }
    pos = eol + 2;
  }
  return "";
}

int64_t MetricSum(const std::string& metrics, std::string_view name) {
  int64_t sum = -1;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(line, absl::StrCat(ToAbsl(name), "{"))) continue;
    int64_t value = 0;
    size_t space = line.rfind(' ');
    if (space == absl::string_view::npos || !absl::SimpleAtoi(line.substr(space + 1), &value)) {
      return -1;
    }
    sum = (sum < 0 ? 0 : sum) + value;
  }
  return sum;
}

std::string Metrics(const std::string& socket) {
  RunResult r = RunProgram({RingctlPath(), "--socket", socket, "metrics"}, Millis(10'000));
  return r.exit_code == 0 ? r.out : std::string();
}

std::map<std::string, uint64_t> Summary(const std::string& socket) {
  std::map<std::string, uint64_t> out;
  RunResult r = RunProgram({RingctlPath(), "--socket", socket, "--json", "summary"},
                           Millis(10'000));
  if (r.exit_code != 0) return out;
  std::string body(absl::StripAsciiWhitespace(r.out));
  if (body.size() < 2 || body.front() != '{' || body.back() != '}') return out;
  for (absl::string_view field : absl::StrSplit(body.substr(1, body.size() - 2), ',')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(field, absl::MaxSplits(':', 1));
    std::string key(absl::StripAsciiWhitespace(kv.first));
    if (key.size() >= 2 && key.front() == '"') key = key.substr(1, key.size() - 2);
    uint64_t value = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(kv.second), &value)) out[key] = value;
  }
  return out;
}

// Below the kernel's ephemeral range (32768 and up by default): a port from bind(0) can be
// handed out again as the source port of the daemon's own DNS queries, which then go to
// themselves (seen: a campaign whose resolver read its own queries as empty answers while
// the test server was not yet up) and keep the server from binding it later.
namespace {
uint16_t PickFreePort(int type) {
  static std::atomic<uint32_t> next{static_cast<uint32_t>(getpid()) * 7919u};
  for (int attempt = 0; attempt < 200; ++attempt) {
    const uint16_t port = static_cast<uint16_t>(20000 + next.fetch_add(1) % 12000);
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (free) return port;
  }
  return 0;
}
}  // namespace

uint16_t PickFreeUdpPort() { return PickFreePort(SOCK_DGRAM); }
uint16_t PickFreeTcpPort() { return PickFreePort(SOCK_STREAM); }

absl::StatusOr<Subprocess> StartTestDns(const std::string& dnsmasq, uint16_t port,
                                        const std::vector<std::string>& records,
                                        const std::string& stderr_path) {
  std::vector<std::string> argv = {dnsmasq,
                                   absl::StrCat("--port=", port),
                                   "--listen-address=127.0.0.1",
                                   "--bind-interfaces",
                                   "--no-resolv",
                                   "--no-hosts",
                                   "--no-daemon",
                                   "--conf-file=/dev/null",
                                   "--local=/test/",
                                   "--pid-file="};
  argv.insert(argv.end(), records.begin(), records.end());
  Subprocess::Options options;
  options.stderr_path = stderr_path;
  options.pipe_stdout = false;
  return Subprocess::Start(argv, options);
}

bool PollUntil(Millis timeout, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    poll(nullptr, 0, 20);  // re-check interval, not a synchronisation sleep
  }
}

}  // namespace ringmail::integration
