#include "tests/integration/tls_client_util.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace ringmail::integration {
namespace {

using Clock = std::chrono::steady_clock;

// poll() for `events` until `deadline`; >0 ready, 0 timeout, <0 error.
int WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0) return 0;
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsTestClient>> TlsTestClient::Create(
    int fd, const std::string& ca_file, const std::string& server_name,
    std::shared_ptr<const tls::SavedSession> resume) {
  tls::TlsContextOptions o;
  o.role = tls::TlsRole::kClient;
  o.ca_file = ca_file;
  o.use_system_ca = false;
  absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ctx = tls::TlsContext::Create(o);
  if (!ctx.ok()) return ctx.status();
  tls::ClientOptions co;
  co.server_name = server_name;
  co.verify = tls::VerifyMode::kRequire;
  co.resume = std::move(resume);
  absl::StatusOr<std::unique_ptr<tls::TlsSession>> s = tls::TlsSession::NewClient(*ctx, co);
  if (!s.ok()) return s.status();
  return std::unique_ptr<TlsTestClient>(new TlsTestClient(fd, *std::move(s)));
}

absl::Status TlsTestClient::Flush(Clock::time_point deadline) {
  std::string out = session_->TakeCiphertext();
  size_t sent = 0;
  while (sent < out.size()) {
    const ssize_t n = send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (WaitFor(fd_, POLLOUT, deadline) <= 0) return absl::DeadlineExceededError("send");
      continue;
    }
    return absl::UnavailableError(absl::StrCat("send: errno ", errno));
  }
  return absl::OkStatus();
}

bool TlsTestClient::Receive(Clock::time_point deadline) {
  if (eof_) return false;
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      session_->FeedCiphertext(std::string_view(buf, static_cast<size_t>(n)));
      return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      eof_ = true;
      session_->FeedEof();
      return true;  // the session reports the close
    }
    if (WaitFor(fd_, POLLIN, deadline) <= 0) return false;
  }
}

absl::Status TlsTestClient::Handshake(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const tls::TlsResult r = session_->Handshake();
    if (absl::Status s = Flush(deadline); !s.ok()) return s;
    if (r == tls::TlsResult::kOk) return absl::OkStatus();
    if (r != tls::TlsResult::kWantRead) {
      return absl::UnavailableError(absl::StrCat("handshake: ", session_->error()));
    }
    if (!Receive(deadline)) return absl::DeadlineExceededError("handshake timed out");
  }
}

absl::Status TlsTestClient::Send(std::string_view plaintext, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!plaintext.empty()) {
    size_t used = 0;
    const tls::TlsResult r = session_->Write(plaintext, &used);
    if (r == tls::TlsResult::kError) return absl::UnavailableError(session_->error());
    plaintext.remove_prefix(used);
    if (absl::Status s = Flush(deadline); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::optional<std::string> TlsTestClient::ReadLine(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const size_t eol = plain_.find("\r\n");
    if (eol != std::string::npos) {
      std::string line = plain_.substr(0, eol);
      plain_.erase(0, eol + 2);
      return line;
    }
    const tls::TlsResult r = session_->Read(&plain_, 16384);
    (void)Flush(deadline);
    if (r == tls::TlsResult::kOk) continue;
    if (r != tls::TlsResult::kWantRead) return std::nullopt;
    if (!Receive(deadline)) return std::nullopt;
  }
}

SmtpClient::Reply TlsTestClient::ReadReply(Millis timeout) {
  SmtpClient::Reply reply;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    std::optional<std::string> line = ReadLine(left);
    if (!line.has_value() || line->size() < 3) return SmtpClient::Reply{};
    reply.lines.push_back(*line);
    if (line->size() == 3 || (*line)[3] == ' ') {
      reply.code = std::atoi(line->substr(0, 3).c_str());
      return reply;
    }
  }
}

SmtpClient::Reply TlsTestClient::Command(std::string_view command, Millis timeout) {
  if (!Send(absl::StrCat(std::string(command), "\r\n"), timeout).ok()) return {};
  return ReadReply(timeout);
}

bool TlsTestClient::WaitForClose(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const tls::TlsResult r = session_->Read(&plain_, 16384);
    if (r == tls::TlsResult::kClosed || r == tls::TlsResult::kError) return true;
    if (r == tls::TlsResult::kOk) continue;
    if (!Receive(deadline)) return false;
  }
}

}  // namespace ringmail::integration
