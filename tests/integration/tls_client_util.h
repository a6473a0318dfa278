// tests/integration/tls_client_util.h — a blocking TLS client for tests, built on the
// project's own socket-free tls::TlsSession: it takes over a connected (non-blocking)
// socket, e.g. SmtpClient's after "220 Ready to start TLS" or at once for implicit TLS,
// moves ciphertext with poll()-bounded send/recv, and speaks SMTP lines over it.
//
// Contract: test-thread code; every wait is bounded by a timeout; the socket stays owned by
// whoever opened it (this class never closes it).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "tests/integration/daemon_util.h"
#include "tls/context.h"
#include "tls/session.h"

namespace ringmail::integration {

class TlsTestClient {
 public:
  // `ca_file`: trust anchors; `server_name`: SNI and the name the certificate must carry;
  // `resume`: a session saved from an earlier connection to offer (TLS 1.3 resumption).
  static absl::StatusOr<std::unique_ptr<TlsTestClient>> Create(
      int fd, const std::string& ca_file, const std::string& server_name,
      std::shared_ptr<const tls::SavedSession> resume = nullptr);

  absl::Status Handshake(Millis timeout = Millis(5'000));
  absl::Status Send(std::string_view plaintext, Millis timeout = Millis(5'000));
  std::optional<std::string> ReadLine(Millis timeout = Millis(5'000));
  SmtpClient::Reply ReadReply(Millis timeout = Millis(5'000));
  SmtpClient::Reply Command(std::string_view command, Millis timeout = Millis(5'000));
  // True once the server has closed (close_notify or EOF) within `timeout`.
  bool WaitForClose(Millis timeout);
  tls::TlsSession& session() { return *session_; }

 private:
  TlsTestClient(int fd, std::unique_ptr<tls::TlsSession> s) : fd_(fd), session_(std::move(s)) {}
  absl::Status Flush(std::chrono::steady_clock::time_point deadline);
  // Reads one batch of ciphertext into the session; false on EOF/error/timeout.
  bool Receive(std::chrono::steady_clock::time_point deadline);

  int fd_;
  std::unique_ptr<tls::TlsSession> session_;
  std::string plain_;
  bool eof_ = false;
};

}  // namespace ringmail::integration
