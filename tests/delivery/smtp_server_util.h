// tests/delivery/smtp_server_util.h — a small, strict SMTP server for the engine tests, on
// 127.0.0.1 (port 0), with a thread per connection.
//
// It records every transaction byte for byte: the MAIL line, the accepted recipients, the
// DATA bytes exactly as they came over the wire (dot-stuffed) and the content unstuffed.
// Replies to RCPT and to the end of data can be scripted; greetings can be held back (a
// test then sees how many connections the client keeps open at once); it counts
// connections accepted and the most open at once. With a server TlsContext it offers
// STARTTLS and serves the rest of the session over TLS (tls::TlsSession on the blocking
// socket), or breaks the handshake on purpose. Await* wait on a condition variable
// with a bound (a hang fails the test instead of blocking it), never by sleeping.
//
// Test-thread object; the handlers run on the server's own threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "tls/context.h"

namespace ringmail::delivery::testing {

struct ServerTransaction {
  int connection = 0;       // 1-based number of the connection it came over
  std::string mail_line;    // "MAIL FROM:<a@b> SIZE=12 BODY=8BITMIME"
  std::string mail_from;    // the reverse-path, without brackets
  std::vector<std::string> recipients;  // accepted ones, without brackets
  std::string data_wire;    // between the 354 and the final ".\r\n", as sent (dot-stuffed);
                            // for BDAT the chunk bytes as sent
  std::string content;      // unstuffed
  std::string final_reply;  // what we answered after the data
  bool bdat = false;        // came with BDAT ... LAST
  bool tls = false;         // came over TLS (after STARTTLS)
};

struct ServerOptions {
  bool pipelining = true;
  bool eight_bit_mime = true;
  bool chunking = false;  // announce CHUNKING and take BDAT
  // Reply to RCPT TO:<address>; empty function: "250 2.1.5 ok".
  std::function<std::string(const std::string& address)> rcpt_reply;
  // Reply after the data, given the transaction so far; empty: "250 2.0.0 ok".
  std::function<std::string(const ServerTransaction& tx)> data_reply;
  bool hold_greetings = false;  // greet only after ReleaseGreetings()
  std::string greeting = "220 test.example ESMTP";  // e.g. "421 4.3.2 busy" to refuse
  // > 0: the greeting goes out one byte at a time, this long apart (a peer that dribbles).
  int greeting_byte_interval_ms = 0;
  // After the 354, read nothing more until the server stops: the client's sends stall.
  bool stall_in_data = false;
  // Server-role context: STARTTLS is offered (until TLS is on) and the session goes on
  // over TLS. Null: no STARTTLS.
  std::shared_ptr<const tls::TlsContext> tls;
  // Answer STARTTLS with 220, then send bytes that are no TLS record and hang up.
  bool break_tls_handshake = false;
  // After this many transactions on a connection (0: never), right after the reply to the
  // data, the server ends it as if its own idle timer fired: "421 4.4.2 ..." then a hang-up,
  // or (close_with_421 false) just a hang-up.
  int close_after_transactions = 0;
  bool close_with_421 = true;
};

class TestSmtpServer {
 public:
  static absl::StatusOr<std::unique_ptr<TestSmtpServer>> Start(ServerOptions options);
  ~TestSmtpServer();  // closes every connection and joins the threads
  TestSmtpServer(const TestSmtpServer&) = delete;
  TestSmtpServer& operator=(const TestSmtpServer&) = delete;

  uint16_t port() const { return port_; }

  // Each waits up to 20 s; false when the condition did not come true.
  bool AwaitTransactions(size_t n);
  bool AwaitConnections(int accepted);
  bool AwaitAllClosed();
  bool AwaitDataStarted();  // some connection got its 354
  bool AwaitQuits(int n);   // n QUIT commands received in all

  void ReleaseGreetings();
  std::vector<ServerTransaction> transactions() const;
  int connections_accepted() const;
  int max_open() const;
  int open() const;
  int quits() const;  // QUIT commands received
  int tls_handshakes() const;  // completed STARTTLS handshakes
  int tls_failures() const;    // failed ones (not counting break_tls_handshake)

 private:
  TestSmtpServer() = default;
  void AcceptLoop();
  void Serve(int fd, int number);

  ServerOptions options_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool greetings_released_ = false;
  std::vector<std::thread> workers_;
  std::vector<int> fds_;  // open connection fds (for shutdown at stop)
  std::vector<ServerTransaction> transactions_;
  int accepted_ = 0;
  int open_ = 0;
  int max_open_ = 0;
  int quits_ = 0;
  int tls_handshakes_ = 0;
  int tls_failures_ = 0;
  int data_started_ = 0;
};

}  // namespace ringmail::delivery::testing
