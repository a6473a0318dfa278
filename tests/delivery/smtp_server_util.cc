#include "tests/delivery/smtp_server_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tls/session.h"
#include "wolfssl/options.h"  // first: the build's configuration
#include "wolfssl/wolfcrypt/ecc.h"

namespace ringmail::delivery::testing {
namespace {

constexpr auto kServerAwait = std::chrono::seconds(20);

// A blocking socket, plain or (after StartTls) through a server TlsSession.
class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {}

  // Some bytes (plaintext when TLS is on); <= 0 at EOF or error.
  ssize_t Recv(char* buf, size_t size) {
    if (tls_ == nullptr) {
      for (;;) {
        ssize_t n = recv(fd_, buf, size, 0);
        if (n < 0 && errno == EINTR) continue;
        return n;
      }
    }
    std::string plain;
    for (;;) {
      tls::TlsResult r = tls_->Read(&plain, size);
      Flush();
      if (r == tls::TlsResult::kOk) break;
      if (r != tls::TlsResult::kWantRead || !FeedMore()) return -1;
    }
    std::memcpy(buf, plain.data(), plain.size());
    return static_cast<ssize_t>(plain.size());
  }

  bool Send(const std::string& bytes) {
    if (tls_ == nullptr) return SendRaw(bytes);
    size_t used = 0;
    std::string_view rest(bytes);
    while (!rest.empty()) {
      if (tls_->Write(rest, &used) == tls::TlsResult::kError) return false;
      rest.remove_prefix(used);
      if (!Flush()) return false;
    }
    return true;
  }

  // Server handshake over the socket; false when it failed (the session is then over).
  bool StartTls(std::shared_ptr<const tls::TlsContext> context) {
    auto session = tls::TlsSession::NewServer(std::move(context));
    if (!session.ok()) return false;
    tls_ = *std::move(session);
    for (;;) {
      tls::TlsResult r = tls_->Handshake();
      if (!Flush()) return false;
      if (r == tls::TlsResult::kOk) return true;
      if (r != tls::TlsResult::kWantRead || !FeedMore()) return false;
    }
  }

  bool SendRaw(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  bool tls() const { return tls_ != nullptr; }

 private:
  bool FeedMore() {
    char chunk[16384];
    ssize_t n;
    do {
      n = recv(fd_, chunk, sizeof(chunk), 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    return tls_->FeedCiphertext(std::string_view(chunk, static_cast<size_t>(n))) ==
           static_cast<size_t>(n);
  }
  bool Flush() { return !tls_->has_ciphertext_out() || SendRaw(tls_->TakeCiphertext()); }

  int fd_;
  std::unique_ptr<tls::TlsSession> tls_;
};

// Buffered line reader over a Conn.
class Lines {
 public:
  explicit Lines(Conn* conn) : conn_(conn) {}
  // One line with its CRLF; false at EOF or error.
  bool Next(std::string* line) {
    for (;;) {
      size_t eol = buffer_.find("\r\n");
      if (eol != std::string::npos) {
        *line = buffer_.substr(0, eol + 2);
        buffer_.erase(0, eol + 2);
        return true;
      }
      char chunk[4096];
      ssize_t n = conn_->Recv(chunk, sizeof(chunk));
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Exactly `n` more bytes (BDAT); false at EOF or error.
  bool Raw(size_t n, std::string* out) {
    while (buffer_.size() < n) {
      char chunk[65536];
      ssize_t got = conn_->Recv(chunk, sizeof(chunk));
      if (got <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(got));
    }
    *out = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return true;
  }

  size_t buffered() const { return buffer_.size(); }

 private:
  Conn* conn_;
  std::string buffer_;
};

// "<addr> PARAMS" after "MAIL FROM:" / "RCPT TO:" → addr.
std::string PathOf(const std::string& rest) {
  size_t open = rest.find('<');
  size_t close = rest.find('>');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return rest.substr(open + 1, close - open - 1);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestSmtpServer>> TestSmtpServer::Start(ServerOptions options) {
  std::unique_ptr<TestSmtpServer> s(new TestSmtpServer());
  s->options_ = std::move(options);
  s->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(s->listen_fd_, 128) != 0 ||
      getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("bind/listen: ", strerror(errno)));
  }
  s->port_ = ntohs(addr.sin_port);
  s->acceptor_ = std::thread([raw = s.get()] { raw->AcceptLoop(); });
  return s;
}

TestSmtpServer::~TestSmtpServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    greetings_released_ = true;
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }
  cv_.notify_all();
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  if (acceptor_.joinable()) acceptor_.join();
  close(listen_fd_);
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
}

void TestSmtpServer::AcceptLoop() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    int number = ++accepted_;
    ++open_;
    max_open_ = std::max(max_open_, open_);
    fds_.push_back(fd);
    workers_.emplace_back([this, fd, number] { Serve(fd, number); });
    cv_.notify_all();
  }
}

void TestSmtpServer::Serve(int fd, int number) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (options_.hold_greetings) cv_.wait(lock, [this] { return greetings_released_; });
  }
  Conn conn(fd);
  Lines lines(&conn);
  auto SendAll = [&conn](int, const std::string& bytes) { return conn.Send(bytes); };
  std::string line;
  ServerTransaction tx;
  bool in_tx = false;
  bool counted_closed = false;
  int done_here = 0;  // transactions on this connection
  bool ok = true;
  const std::string greeting = options_.greeting + "\r\n";
  if (options_.greeting_byte_interval_ms > 0) {
    for (size_t i = 0; ok && i < greeting.size(); ++i) {
      // Simulates a slow peer (not a synchronisation): the client's timer is under test.
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.greeting_byte_interval_ms));
      ok = SendAll(fd, greeting.substr(i, 1));
    }
  } else {
    ok = SendAll(fd, greeting);
  }
  if (options_.greeting[0] != '2') ok = false;  // refused: hang up after saying so
  while (ok && lines.Next(&line)) {
    std::string upper = absl::AsciiStrToUpper(line.substr(0, 10));
    std::string reply;
    if (absl::StartsWith(upper, "EHLO")) {
      reply = "250-test.example\r\n";
      if (options_.pipelining) reply += "250-PIPELINING\r\n";
      if (options_.eight_bit_mime) reply += "250-8BITMIME\r\n";
      if (options_.chunking) reply += "250-CHUNKING\r\n";
      if (options_.tls != nullptr && !conn.tls()) reply += "250-STARTTLS\r\n";
      reply += "250-SIZE 100000000\r\n250 ENHANCEDSTATUSCODES\r\n";
    } else if (absl::StartsWith(upper, "HELO")) {
      reply = "250 test.example\r\n";
    } else if (absl::StartsWith(upper, "MAIL FROM:")) {
      tx = ServerTransaction();
      tx.connection = number;
      tx.tls = conn.tls();
      tx.mail_line = line.substr(0, line.size() - 2);
      tx.mail_from = PathOf(line.substr(10));
      in_tx = true;
      reply = "250 2.1.0 ok\r\n";
    } else if (absl::StartsWith(upper, "RCPT TO:")) {
      std::string address = PathOf(line.substr(8));
      reply = options_.rcpt_reply ? options_.rcpt_reply(address) : "250 2.1.5 ok";
      if (reply[0] == '2' && in_tx) tx.recipients.push_back(address);
      reply += "\r\n";
    } else if (absl::StartsWith(upper, "DATA")) {
      if (!in_tx || tx.recipients.empty()) {
        reply = "554 5.5.1 no valid recipients\r\n";
      } else {
        ok = SendAll(fd, "354 go ahead\r\n");
        {
          std::unique_lock<std::mutex> lock(mu_);
          ++data_started_;
          cv_.notify_all();
          if (options_.stall_in_data) cv_.wait(lock, [this] { return stopping_; });
        }
        while (ok && (ok = lines.Next(&line))) {
          if (line == ".\r\n") break;
          tx.data_wire += line;
          tx.content += line[0] == '.' ? line.substr(1) : line;
        }
        if (!ok) break;
        reply = options_.data_reply ? options_.data_reply(tx) : "250 2.0.0 ok";
        tx.final_reply = reply;
        reply += "\r\n";
        {
          std::lock_guard<std::mutex> lock(mu_);
          transactions_.push_back(tx);
        }
        cv_.notify_all();
        in_tx = false;
        if (++done_here == options_.close_after_transactions) {
          ok = SendAll(fd, reply);
          if (ok && options_.close_with_421) SendAll(fd, "421 4.4.2 idle, closing\r\n");
          break;
        }
      }
    } else if (options_.chunking && absl::StartsWith(upper, "BDAT ")) {
      // Only "BDAT <n> LAST" (what a client sends for a whole message in one chunk).
      size_t n = std::strtoull(line.c_str() + 5, nullptr, 10);
      if (!lines.Raw(n, &tx.data_wire)) break;
      tx.content = tx.data_wire;
      tx.bdat = true;
      reply = options_.data_reply ? options_.data_reply(tx) : "250 2.0.0 ok";
      tx.final_reply = reply;
      reply += "\r\n";
      {
        std::lock_guard<std::mutex> lock(mu_);
        transactions_.push_back(tx);
      }
      cv_.notify_all();
      in_tx = false;
    } else if (options_.tls != nullptr && !conn.tls() && absl::StartsWith(upper, "STARTTLS")) {
      if (lines.buffered() > 0) break;  // pipelined after STARTTLS: refuse to go on
      if (!SendAll(fd, "220 2.0.0 ready to start TLS\r\n")) break;
      if (options_.break_tls_handshake) {
        // After the client's hello, so that the 220 and the garbage never share a read.
        char hello[4096];
        if (recv(fd, hello, sizeof(hello), 0) <= 0) break;
        conn.SendRaw("this is not a TLS record\r\n");
        break;
      }
      bool up = conn.StartTls(options_.tls);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++(up ? tls_handshakes_ : tls_failures_);
      }
      cv_.notify_all();
      if (!up) break;
      continue;  // the client speaks first (EHLO)
    } else if (absl::StartsWith(upper, "RSET")) {
      in_tx = false;
      reply = "250 2.0.0 reset\r\n";
    } else if (absl::StartsWith(upper, "NOOP")) {
      reply = "250 2.0.0 ok\r\n";
    } else if (absl::StartsWith(upper, "QUIT")) {
      // Counted closed before the 221: a client that reconnects after reading it must
      // never be seen as one connection too many.
      {
        std::lock_guard<std::mutex> lock(mu_);
        --open_;
        ++quits_;
        counted_closed = true;
      }
      SendAll(fd, "221 2.0.0 bye\r\n");
      break;
    } else {
      reply = "500 5.5.2 unknown command\r\n";
    }
    ok = SendAll(fd, reply);
  }
  // wolfSSL's fixed-point ECC cache (FP_ECC, thread-local in Debian's build) lives until
  // its thread frees it: this connection's thread is about to end.
  if (conn.tls()) wc_ecc_fp_free();
  std::lock_guard<std::mutex> lock(mu_);
  fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
  close(fd);
  if (!counted_closed) --open_;
  cv_.notify_all();
}

bool TestSmtpServer::AwaitTransactions(size_t n) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerAwait, [&] { return transactions_.size() >= n; });
}

bool TestSmtpServer::AwaitConnections(int accepted) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerAwait, [&] { return accepted_ >= accepted; });
}

bool TestSmtpServer::AwaitDataStarted() {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerAwait, [&] { return data_started_ > 0; });
}

bool TestSmtpServer::AwaitQuits(int n) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerAwait, [&] { return quits_ >= n; });
}

bool TestSmtpServer::AwaitAllClosed() {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kServerAwait, [&] { return open_ == 0; });
}

void TestSmtpServer::ReleaseGreetings() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    greetings_released_ = true;
  }
  cv_.notify_all();
}

std::vector<ServerTransaction> TestSmtpServer::transactions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return transactions_;
}

int TestSmtpServer::connections_accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return accepted_;
}

int TestSmtpServer::max_open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_open_;
}

int TestSmtpServer::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

int TestSmtpServer::tls_handshakes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tls_handshakes_;
}

int TestSmtpServer::tls_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tls_failures_;
}

int TestSmtpServer::quits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return quits_;
}

}  // namespace ringmail::delivery::testing
