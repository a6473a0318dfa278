// tools/ringload/tls_stream.h — the client end of TLS for `ringload send --tls`: a thin
// driver over tls::TlsSession (the project's socket-free engine) that a ClientConn puts
// between its ring I/O and its SMTP reply parser.
//
// Contract
// - One TlsClientStream per connection, made when the handshake is to start (after the
//   220 to STARTTLS, or at connect for implicit TLS), used on that connection's loop only,
//   dropped with the connection. It never touches the socket: Input() takes what recv
//   returned, Seal()/TakeWire() give bytes for the next send.
// - Certificates are not verified (a load tool measures; it does not judge the peer): the
//   context has no trust anchors and the session records the outcome only.
// - Bounded: Input() decrypts everything it is fed before returning, so the engine holds
//   less than one record plus one recv; a peer that overflows it is an error.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tls/context.h"
#include "tls/session.h"

namespace ringmail::ringload {

// The client context `send --tls` shares between its loops (built before they run);
// `crypto_offload` false (--no-tls-offload): wolfSSL's own crypto only (tls/context.h).
absl::StatusOr<std::shared_ptr<const tls::TlsContext>> MakeLoadClientContext(
    bool crypto_offload = true);

class TlsClientStream {
 public:
  enum class Event : uint8_t {
    kNone,         // more ciphertext needed (plaintext may have been appended)
    kEstablished,  // the handshake completed in this call (reported once)
    kEnded,        // closed or failed: error() says why; send TakeWire() (an alert), close
  };

  // Starts the handshake; its first flight is in TakeWire(). `resume`: a session saved
  // from this connection slot's previous connection (--tls-resume), or null.
  static absl::StatusOr<std::unique_ptr<TlsClientStream>> Start(
      std::shared_ptr<const tls::TlsContext> context, const std::string& server_name,
      std::shared_ptr<const tls::SavedSession> resume = nullptr);

  // Ciphertext from recv; decrypted application data is appended to `*plain`.
  Event Input(std::string_view ciphertext, std::string* plain);
  // Encrypts `a`, `b`, `c` in order (any may be empty) and appends the records (after any
  // pending handshake bytes) to `*wire`: as one stream, so records of up to 16 KiB span the
  // parts (a 10 KiB body and its ".\r\n" are one record, not two: each record costs the
  // server an AEAD setup, a MAC and a read call). False when the session has failed.
  bool Seal(std::string_view a, std::string_view b, std::string_view c, std::string* wire);
  // Pending handshake or alert bytes, appended to `*wire`.
  void TakeWire(std::string* wire);

  bool established() const { return session_->established(); }
  const std::string& error() const { return session_->error(); }
  std::string Description() const { return session_->Description(); }
  bool resumed() const { return session_->resumed(); }
  // The session to resume next time, once the server's ticket has been read; else null.
  std::shared_ptr<const tls::SavedSession> SaveSession() const {
    return session_->SaveSession();
  }

 private:
  explicit TlsClientStream(std::unique_ptr<tls::TlsSession> s) : session_(std::move(s)) {}
  std::unique_ptr<tls::TlsSession> session_;
};

}  // namespace ringmail::ringload
