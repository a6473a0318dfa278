// tls/session.h — one TLS connection as a pure engine: ciphertext bytes in, plaintext out,
// plaintext in, ciphertext bytes out. It never touches a socket, a clock or a thread.
//
// Contract
// - Owned by one connection object (inbound ESMTP session, outbound SMTP client, HTTP
//   connection, ringload) and used only on that owner's thread. It keeps its TlsContext
//   alive (shared_ptr), so a context replaced by a reload stays valid until the last
//   session using it is gone.
// - wolfSSL's I/O callbacks are pointed at this object's two in-memory buffers: the receive
//   callback reads ciphertext the owner fed (FeedCiphertext) and answers WANT_READ when it
//   has none; the send callback appends to the outbound buffer the owner drains
//   (TakeCiphertext) and sends through its ring. All socket I/O stays with the owner.
// - Limits: the inbound ciphertext buffer holds at most Limits::ciphertext_in_bytes_max
//   (FeedCiphertext takes fewer bytes when full: stop receiving, call Read, feed again).
//   The outbound buffer is bounded by Limits::ciphertext_out_bytes_max plus one record:
//   Write() encrypts no more while it is over the limit. Read() hands out at most the
//   plaintext the caller asks for. Nothing grows with what the peer sends.
// - Errors from the peer (garbage, bad certificate, alerts, truncation) are results, never
//   assertions: the method returns kError and error() says why. After kError or kClosed the
//   session is finished; the owner sends what TakeCiphertext() still holds (an alert) and
//   closes.
//
// Driving it (the owner's names on the left):
//   OnRecv(bytes):  tls.FeedCiphertext(bytes); Step();
//   Step():         if (!tls.established()) r = tls.Handshake();      // kOk once done
//                   else r = tls.Read(&plain, room);                  // app data
//                   if (tls.has_ciphertext_out()) Send(tls.TakeCiphertext());
//                   r == kWantRead: keep receiving; kError/kClosed: close.
//   Write(plain):   tls.Write(plain, &used); Send(tls.TakeCiphertext());
//   OnEof():        tls.FeedEof(); Step();  // Read/Handshake then report kClosed/kError
//
// Resumption (TLS 1.3 tickets, RFC 8446 §4.6.1): a server session issues one ticket after
// each full handshake (wolfSSL's default ticket callback; the key lives in the TlsContext,
// see tls/context.h). A client keeps SaveSession()'s result and passes it in
// ClientOptions::resume for its next connection to the same server; resumed() then says
// whether the server took it (a stale or foreign ticket just means a full handshake).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tls/context.h"

struct WOLFSSL;  // wolfssl/ssl.h
struct WOLFSSL_SESSION;
struct WOLFSSL_X509_STORE_CTX;

namespace ringmail::tls {

enum class TlsResult : uint8_t {
  kOk,         // progress: handshake complete / bytes read / bytes written
  kWantRead,   // needs more ciphertext from the peer (FeedCiphertext)
  kWantWrite,  // the outbound buffer is full: send TakeCiphertext(), then call again
  kClosed,     // the peer closed: close_notify, or end of stream after the handshake
  kError,      // fatal: error() says why; send any pending ciphertext (alert), then close
};
const char* TlsResultName(TlsResult r);

// How a client treats the server's certificate. Either way the result is recorded
// (verification(), verify_error()) for the delivery log.
enum class VerifyMode : uint8_t {
  kRecord,   // check chain and host name, record the outcome, continue regardless
  kRequire,  // a chain or host-name failure aborts the handshake (kError)
};

enum class Verification : uint8_t {
  kNotChecked,  // server sessions; or the handshake has not reached the certificate
  kOk,          // chain to a trust anchor and host name match
  kFailed,      // verify_error() says what failed
};
const char* VerificationName(Verification v);

struct TlsLimits {
  size_t ciphertext_in_bytes_max = 64 * 1024;
  size_t ciphertext_out_bytes_max = 64 * 1024;
};

// A client's copy of an established session (TLS 1.3: the server's ticket and the resumption
// secret), to offer the same server on a later connection so that handshake skips the
// certificate and its signature. Immutable once made (TlsSession::SaveSession copies it out
// of the connection); used by one thread at a time (wolfSSL reads it into each new session).
// Offer it only to the server that issued it, and drop it after a failed handshake: wolfSSL
// pins the client to the saved session's version, so a server that no longer speaks it
// fails the handshake instead of falling back.
class SavedSession {
 public:
  ~SavedSession();
  SavedSession(const SavedSession&) = delete;
  SavedSession& operator=(const SavedSession&) = delete;

 private:
  friend class TlsSession;
  explicit SavedSession(WOLFSSL_SESSION* session) : session_(session) {}
  WOLFSSL_SESSION* session_;  // owned (a wolfSSL_SESSION_dup copy)
};

struct ClientOptions {
  // Sent as SNI and, when not empty, matched against the certificate (SAN/CN). Empty: no
  // SNI and no host-name check (the chain is still checked).
  std::string server_name;
  VerifyMode verify = VerifyMode::kRecord;
  // Offered for resumption (null: a full handshake). The server decides; resumed() tells.
  std::shared_ptr<const SavedSession> resume;
};

class TlsSession {
 public:
  // `context` must have the matching role (kInvalidArgument otherwise).
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewServer(
      std::shared_ptr<const TlsContext> context, const TlsLimits& limits = {});
  static absl::StatusOr<std::unique_ptr<TlsSession>> NewClient(
      std::shared_ptr<const TlsContext> context, const ClientOptions& options,
      const TlsLimits& limits = {});
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // ---- ciphertext from the peer
  // Returns how many bytes were taken (fewer than given once the inbound buffer is full).
  size_t FeedCiphertext(std::string_view bytes);
  size_t ciphertext_in_room() const;
  size_t ciphertext_in_bytes() const { return in_.size() - in_offset_; }
  // The peer's TCP stream ended: what is buffered is all there will be.
  void FeedEof() { eof_ = true; }

  // ---- the engine
  // Runs the handshake as far as the buffered ciphertext allows. kOk once established
  // (also when called again afterwards).
  TlsResult Handshake();
  // Appends at most `max_bytes` (> 0) of decrypted application data to `out`. kOk when at
  // least one byte was appended; kWantRead when no complete record is buffered.
  TlsResult Read(std::string* out, size_t max_bytes);
  // Like Read, without a copy: decrypts at most one record and points *plain at its
  // application data in a buffer of this thread's, valid until the next ReadView/Read on
  // any session of the thread (consume or copy it first). kOk with a non-empty *plain.
  TlsResult ReadView(std::string_view* plain);
  // Whether decrypted bytes or ciphertext are buffered that Read() could turn into output
  // without new input.
  bool HasBufferedInput() const;
  // Encrypts a prefix of `plaintext` (*consumed says how much; all of it unless the
  // outbound buffer filled). kWantWrite when it took nothing because the buffer is full.
  TlsResult Write(std::string_view plaintext, size_t* consumed);
  // Encrypts the concatenation of `parts` as if it were one string: records of up to 16 KiB
  // span part boundaries, so "BDAT n LAST" + body or body + ".\r\n" cost one record rather
  // than one each (every record costs a MAC, a header and an AEAD setup on both sides).
  // *consumed counts bytes of the concatenation; the rest is the caller's to offer again.
  TlsResult WriteGather(std::initializer_list<std::string_view> parts, size_t* consumed);
  // Queues close_notify (once). Does not wait for the peer's.
  void Shutdown();

  // ---- ciphertext to the peer
  bool has_ciphertext_out() const { return !out_.empty(); }
  size_t ciphertext_out_bytes() const { return out_.size(); }
  std::string TakeCiphertext();

  // ---- observers (after the handshake)
  bool established() const { return established_; }
  bool failed() const { return failed_; }
  const std::string& version() const { return version_; }  // "TLS1.2", "TLS1.3"
  const std::string& cipher() const { return cipher_; }    // IANA, "TLS_AES_256_GCM_SHA384"
  // "TLS1.3 TLS_AES_256_GCM_SHA384" for Received headers and logs; empty before.
  std::string Description() const;
  Verification verification() const { return verification_; }
  const std::string& verify_error() const { return verify_error_; }
  const std::string& error() const { return error_; }
  TlsRole role() const { return context_->role(); }
  // Whether this handshake resumed an earlier session (ClientOptions::resume on a client;
  // a client's ticket accepted, on a server).
  bool resumed() const;
  // Client, established: a copy of this session to resume later, or null when the server
  // has issued nothing to resume with (no ticket yet: TLS 1.3 tickets arrive after the
  // handshake, with the first records the client reads) — and null after a resumed
  // handshake: keep the session of the full one. wolfSSL 5.5.4's session after a
  // resumption makes PSK binders that OpenSSL servers reject ("binder does not verify",
  // Postfix 3.7 with OpenSSL 3.0), though wolfSSL servers take them.
  std::shared_ptr<const SavedSession> SaveSession() const;

 private:
  TlsSession(std::shared_ptr<const TlsContext> context, const TlsLimits& limits);
  absl::Status Init(const ClientOptions* client);
  TlsResult Fail(int ret, const char* during);
  void ReadStopped(int n);
  void Established();
  void CompactIn();
  bool NothingToRead() const;  // wolfSSL_read could only answer WANT_READ

  static int RecvCallback(WOLFSSL* ssl, char* buf, int size, void* self);
  static int SendCallback(WOLFSSL* ssl, char* buf, int size, void* self);
  static int VerifyCallback(int preverify, ::WOLFSSL_X509_STORE_CTX* store);

  std::shared_ptr<const TlsContext> context_;
  TlsLimits limits_;
  WOLFSSL* ssl_ = nullptr;
  std::string in_;
  size_t in_offset_ = 0;
  std::string out_;
  bool eof_ = false;
  bool established_ = false;
  bool failed_ = false;
  bool closed_ = false;
  bool shutdown_sent_ = false;
  bool checks_host_ = false;
  bool record_only_ = true;  // client: VerifyMode::kRecord
  std::string version_;
  std::string cipher_;
  Verification verification_ = Verification::kNotChecked;
  std::string verify_error_;
  std::string error_;
};

}  // namespace ringmail::tls
