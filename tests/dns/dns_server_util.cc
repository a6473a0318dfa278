#include "tests/dns/dns_server_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ringmail::dns::testing {
namespace {

constexpr auto kReadyDeadline = std::chrono::seconds(10);
constexpr int kLaunchAttempts = 5;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int BindUdp(uint16_t port, uint16_t* bound) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  *bound = ntohs(addr.sin_port);
  return fd;
}

// One probe query to 127.0.0.1:port; true if any reply with our id came back in 100 ms.
bool Probe(uint16_t port) {
  uint16_t unused;
  int fd = BindUdp(0, &unused);
  if (fd < 0) return false;
  timeval tv{0, 100 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  Message m;
  m.id = 0x5a5a;
  m.qname = "ready.probe.test";
  std::string query = Encode(m);
  query[2] = 0x01;  // a query: QR clear, RD set
  query[3] = 0x00;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof(buf), 0);
  close(fd);
  return n >= 12 && static_cast<uint8_t>(buf[0]) == 0x5a && static_cast<uint8_t>(buf[1]) == 0x5a;
}

}  // namespace

absl::StatusOr<uint16_t> PickFreeUdpPort() {
  uint16_t port = 0;
  int fd = BindUdp(0, &port);
  if (fd < 0) return absl::InternalError(std::string("bind: ") + std::strerror(errno));
  close(fd);
  return port;
}

absl::StatusOr<std::unique_ptr<Dnsmasq>> Dnsmasq::Start(const std::vector<std::string>& records) {
  if (access(kDnsmasqPath, X_OK) != 0) {
    return absl::FailedPreconditionError(std::string(kDnsmasqPath) + " is not installed");
  }
  std::unique_ptr<Dnsmasq> d(new Dnsmasq());
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/ringmail-dns-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  d->dir_ = templ;
  absl::Status last;
  // The free port may be taken between our check and dnsmasq's bind (UDP or TCP): retry.
  for (int attempt = 0; attempt < kLaunchAttempts; ++attempt) {
    last = d->Launch(records);
    if (last.ok()) last = d->AwaitReady();
    if (last.ok()) return d;
    d->Stop();
  }
  return last;
}

absl::Status Dnsmasq::Launch(const std::vector<std::string>& records) {
  absl::StatusOr<uint16_t> port = PickFreeUdpPort();
  if (!port.ok()) return port.status();
  port_ = *port;
  std::vector<std::string> args = {
      kDnsmasqPath, "--port=" + std::to_string(port_), "--listen-address=127.0.0.1",
      "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-daemon", "--conf-file=/dev/null",
      "--local-ttl=300", "--local=/test/", "--log-queries",
      "--log-facility=" + dir_ + "/queries.log", "--pid-file="};
  args.insert(args.end(), records.begin(), records.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string stderr_path = dir_ + "/stderr.log";
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int out = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null_in = open("/dev/null", O_RDONLY);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    if (null_in >= 0) dup2(null_in, 0);
    execv(kDnsmasqPath, argv.data());
    _exit(127);
  }
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status Dnsmasq::AwaitReady() {
  auto deadline = std::chrono::steady_clock::now() + kReadyDeadline;
  while (std::chrono::steady_clock::now() < deadline) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError("dnsmasq exited: " + ReadAll(dir_ + "/stderr.log"));
    }
    if (Probe(port_)) return absl::OkStatus();  // each probe waits up to 100 ms for a reply
  }
  return absl::DeadlineExceededError("dnsmasq did not answer within 10 s");
}

void Dnsmasq::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int wstatus = 0;
  while (waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

Dnsmasq::~Dnsmasq() {
  Stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int Dnsmasq::CountQueries(std::string_view type, std::string_view name) const {
  std::string needle = "query[" + std::string(type) + "] " + std::string(name) + " from ";
  std::string log = ReadAll(dir_ + "/queries.log");
  int count = 0;
  for (size_t pos = log.find(needle); pos != std::string::npos;
       pos = log.find(needle, pos + needle.size())) {
    ++count;
  }
  return count;
}

absl::StatusOr<std::unique_ptr<FakeDnsServer>> FakeDnsServer::Start(Responder responder) {
  std::unique_ptr<FakeDnsServer> s(new FakeDnsServer());
  s->responder_ = std::move(responder);
  s->fd_ = BindUdp(0, &s->port_);
  if (s->fd_ < 0) return absl::InternalError(std::string("bind: ") + std::strerror(errno));
  s->stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (s->stop_fd_ < 0) return absl::InternalError("eventfd failed");
  s->thread_ = std::thread([raw = s.get()] { raw->Serve(); });
  return s;
}

FakeDnsServer::~FakeDnsServer() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (fd_ >= 0) close(fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void FakeDnsServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    char buf[4096];
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    ssize_t n = recvfrom(fd_, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
                         &from_len);
    if (n <= 0) continue;
    std::optional<Question> q = ParseQuestion(std::string_view(buf, static_cast<size_t>(n)));
    if (!q.has_value()) continue;
    ++queries_;
    std::optional<std::string> reply = responder_(*q);
    if (!reply.has_value()) continue;
    sendto(fd_, reply->data(), reply->size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
  }
}

FakeDnsServer::Responder Silent() {
  return [](const Question&) -> std::optional<std::string> { return std::nullopt; };
}

FakeDnsServer::Responder Rcode(uint16_t rcode) {
  return [rcode](const Question& q) -> std::optional<std::string> {
    Message m;
    m.id = q.id;
    m.rcode = rcode;
    m.qname = q.name;
    m.qtype = q.type;
    return Encode(m);
  };
}

}  // namespace ringmail::dns::testing
