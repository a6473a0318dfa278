// tools/ringmaild/service_notify.h — the systemd readiness protocol (sd_notify), written
// here so ringmaild needs no libsystemd.
//
// The service manager passes $NOTIFY_SOCKET: a Unix datagram socket path, or an abstract
// socket name when it starts with '@'. Each notification is one datagram of
// newline-separated KEY=VALUE lines ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...",
// "MONOTONIC_USEC=..."). Without $NOTIFY_SOCKET (not run by systemd) every call is a no-op.
//
// The socket is connected once, at start-up, while the daemon may still be root: after the
// privilege drop the connected socket keeps working even though the daemon's user could not
// open the path itself. A failed send is logged once and never stops the daemon —
// readiness is a courtesy to the service manager, not part of the mail path.
//
// Contract: created and used on the master loop's thread (one caller at a time). Sending a
// datagram to a local socket does not block (MSG_DONTWAIT); a full receiver drops it.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ringmail::daemon {

class ServiceNotifier {
 public:
  // A notifier that does nothing (no service manager).
  ServiceNotifier() = default;
  ~ServiceNotifier();
  ServiceNotifier(ServiceNotifier&& other) noexcept;
  ServiceNotifier& operator=(ServiceNotifier&& other) noexcept;
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // From $NOTIFY_SOCKET (disabled when unset or empty). An address that cannot be used
  // (too long, not absolute, connect fails) is an error the caller reports as a warning.
  static absl::StatusOr<ServiceNotifier> FromEnvironment();
  // For `address` in $NOTIFY_SOCKET's syntax.
  static absl::StatusOr<ServiceNotifier> Connect(const std::string& address);

  bool enabled() const { return fd_ >= 0; }

  // "READY=1" with a STATUS line: start-up finished, or a reload finished.
  void Ready(std::string_view status);
  // "RELOADING=1" with MONOTONIC_USEC (what systemd's notify-reload expects).
  void Reloading(std::string_view status);
  // "STOPPING=1": the daemon drains and exits.
  void Stopping(std::string_view status);
  // A STATUS line alone.
  void Status(std::string_view status);
  // Sends `state` as it is (newline-separated assignments).
  absl::Status Send(std::string_view state);

 private:
  void SendOrWarn(const std::string& state);

  int fd_ = -1;
  std::string address_;
  bool warned_ = false;
};

// STATUS values are one line: control characters become spaces, and the text is cut at a
// bound so a long error cannot make an oversized datagram.
std::string StatusLine(std::string_view text);

}  // namespace ringmail::daemon
