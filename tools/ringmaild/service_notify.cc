#include "tools/ringmaild/service_notify.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/log.h"

namespace ringmail::daemon {
namespace {

// A STATUS text longer than this is cut: the whole datagram stays far below any limit.
constexpr size_t kStatusBytesMax = 512;

uint64_t MonotonicMicros() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace

std::string StatusLine(std::string_view text) {
  std::string out(text.substr(0, kStatusBytesMax));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

ServiceNotifier::~ServiceNotifier() {
  if (fd_ >= 0) close(fd_);
}

ServiceNotifier::ServiceNotifier(ServiceNotifier&& other) noexcept { *this = std::move(other); }

ServiceNotifier& ServiceNotifier::operator=(ServiceNotifier&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    address_ = std::move(other.address_);
    warned_ = other.warned_;
  }
  return *this;
}

absl::StatusOr<ServiceNotifier> ServiceNotifier::FromEnvironment() {
  const char* env = std::getenv("NOTIFY_SOCKET");
  if (env == nullptr || env[0] == '\0') return ServiceNotifier();
  return Connect(env);
}

absl::StatusOr<ServiceNotifier> ServiceNotifier::Connect(const std::string& address) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (address.size() < 2 || address.size() >= sizeof(addr.sun_path) ||
      (address[0] != '/' && address[0] != '@')) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET '", StatusLine(address),
                     "' is neither an absolute path nor an abstract name ('@...') that fits"));
  }
  std::memcpy(addr.sun_path, address.data(), address.size());
  // Abstract namespace: a leading NUL, and the length counts exactly the name's bytes.
  if (address[0] == '@') addr.sun_path[0] = '\0';
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                               address.size() + (address[0] == '/' ? 1 : 0));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to NOTIFY_SOCKET ",
                                               StatusLine(address), ": ", std::strerror(err)));
  }
  ServiceNotifier n;
  n.fd_ = fd;
  n.address_ = address;
  return n;
}

absl::Status ServiceNotifier::Send(std::string_view state) {
  if (fd_ < 0) return absl::OkStatus();
  for (;;) {
    ssize_t n = send(fd_, state.data(), state.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return absl::OkStatus();
    if (errno == EINTR) continue;
    return absl::UnavailableError(
        absl::StrCat("notify ", address_, ": ", std::strerror(errno)));
  }
}

void ServiceNotifier::SendOrWarn(const std::string& state) {
  absl::Status s = Send(state);
  if (s.ok() || warned_) return;
  warned_ = true;  // once: a service manager that went away must not flood the log
  core::LogWarning("sd_notify: %s", std::string(s.message()));
}

void ServiceNotifier::Ready(std::string_view status) {
  SendOrWarn(absl::StrCat("READY=1\nSTATUS=", StatusLine(status)));
}

void ServiceNotifier::Reloading(std::string_view status) {
  SendOrWarn(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=", MonotonicMicros(), "\nSTATUS=",
                          StatusLine(status)));
}

void ServiceNotifier::Stopping(std::string_view status) {
  SendOrWarn(absl::StrCat("STOPPING=1\nSTATUS=", StatusLine(status)));
}

void ServiceNotifier::Status(std::string_view status) {
  SendOrWarn(absl::StrCat("STATUS=", StatusLine(status)));
}

}  // namespace ringmail::daemon
