#include "tls/session.h"

// options.h first: the Debian build's configure flags shape every other wolfSSL header.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfio.h>

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace ringmail::tls {
namespace {

// One TLS record's worth of plaintext: wolfSSL_write is fed at most this much at a time so
// the outbound buffer overshoots its limit by at most one record.
constexpr size_t kRecordPlaintextMax = 16384;

std::string VersionText(const char* v) {
  std::string s = v != nullptr ? v : "";
  if (s.rfind("TLSv", 0) == 0) s.erase(3, 1);  // "TLSv1.3" -> "TLS1.3"
  return s;
}

}  // namespace

absl::Status SelfTestServerContext(std::shared_ptr<const TlsContext> server) {
  TlsContextOptions o;
  o.role = TlsRole::kClient;
  o.use_system_ca = false;
  // wolfSSL's own code checks the server's signature: with the crypto offload on, each new
  // server context also proves that a device-made signature verifies in software.
  o.crypto_offload = false;
  absl::StatusOr<std::shared_ptr<const TlsContext>> client_ctx = TlsContext::Create(o);
  if (!client_ctx.ok()) return client_ctx.status();
  absl::StatusOr<std::unique_ptr<TlsSession>> s = TlsSession::NewServer(std::move(server));
  if (!s.ok()) return s.status();
  absl::StatusOr<std::unique_ptr<TlsSession>> c =
      TlsSession::NewClient(*std::move(client_ctx), ClientOptions{});
  if (!c.ok()) return c.status();
  TlsResult cr = (*c)->Handshake();
  TlsResult sr = TlsResult::kWantRead;
  // A handshake is at most a few flights each way.
  for (int i = 0; i < 8 && cr != TlsResult::kError && sr != TlsResult::kError; ++i) {
    (*s)->FeedCiphertext((*c)->TakeCiphertext());
    sr = (*s)->Handshake();
    (*c)->FeedCiphertext((*s)->TakeCiphertext());
    cr = (*c)->Handshake();
    if (cr == TlsResult::kOk && sr == TlsResult::kOk) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "TLS self-test handshake with this certificate and key failed: ",
      !(*c)->error().empty() ? (*c)->error() : (*s)->error()));
}

const char* TlsResultName(TlsResult r) {
  switch (r) {
    case TlsResult::kOk: return "ok";
    case TlsResult::kWantRead: return "want-read";
    case TlsResult::kWantWrite: return "want-write";
    case TlsResult::kClosed: return "closed";
    case TlsResult::kError: return "error";
  }
  return "?";
}

const char* VerificationName(Verification v) {
  switch (v) {
    case Verification::kNotChecked: return "not-checked";
    case Verification::kOk: return "ok";
    case Verification::kFailed: return "failed";
  }
  return "?";
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context, const TlsLimits& limits)
    : context_(std::move(context)), limits_(limits) {}

TlsSession::~TlsSession() {
  if (ssl_ != nullptr) wolfSSL_free(ssl_);
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::NewServer(
    std::shared_ptr<const TlsContext> context, const TlsLimits& limits) {
  if (context == nullptr || context->role() != TlsRole::kServer) {
    return absl::InvalidArgumentError("NewServer needs a server TlsContext");
  }
  std::unique_ptr<TlsSession> s(new TlsSession(std::move(context), limits));
  if (absl::Status st = s->Init(nullptr); !st.ok()) return st;
  return s;
}

absl::StatusOr<std::unique_ptr<TlsSession>> TlsSession::NewClient(
    std::shared_ptr<const TlsContext> context, const ClientOptions& options,
    const TlsLimits& limits) {
  if (context == nullptr || context->role() != TlsRole::kClient) {
    return absl::InvalidArgumentError("NewClient needs a client TlsContext");
  }
  std::unique_ptr<TlsSession> s(new TlsSession(std::move(context), limits));
  if (absl::Status st = s->Init(&options); !st.ok()) return st;
  return s;
}

absl::Status TlsSession::Init(const ClientOptions* client) {
  RM_CHECK(limits_.ciphertext_in_bytes_max > 0 && limits_.ciphertext_out_bytes_max > 0);
  ssl_ = wolfSSL_new(context_->raw());
  if (ssl_ == nullptr) return absl::ResourceExhaustedError("wolfSSL_new failed");
  wolfSSL_SSLSetIORecv(ssl_, &TlsSession::RecvCallback);
  wolfSSL_SSLSetIOSend(ssl_, &TlsSession::SendCallback);
  wolfSSL_SetIOReadCtx(ssl_, this);
  wolfSSL_SetIOWriteCtx(ssl_, this);
  if (client == nullptr) return absl::OkStatus();
  const std::string& name = client->server_name;
  if (!name.empty()) {
    if (name.size() > 253) return absl::InvalidArgumentError("TLS server name too long");
    if (wolfSSL_UseSNI(ssl_, WOLFSSL_SNI_HOST_NAME, name.data(),
                       static_cast<unsigned short>(name.size())) != WOLFSSL_SUCCESS ||
        wolfSSL_check_domain_name(ssl_, name.c_str()) != WOLFSSL_SUCCESS) {
      return absl::InternalError("wolfSSL refused the server name");
    }
    checks_host_ = true;
  }
  // Always verify, so the outcome can be logged; kRecord's callback then lets the handshake
  // go on whatever the outcome.
  wolfSSL_set_verify(ssl_, WOLFSSL_VERIFY_PEER, &TlsSession::VerifyCallback);
  wolfSSL_SetCertCbCtx(ssl_, this);
  record_only_ = client->verify == VerifyMode::kRecord;
  // wolfSSL copies the saved session in; one it refuses (expired, another version) only
  // means a full handshake, as does a ticket the server cannot decrypt.
  if (client->resume != nullptr) (void)wolfSSL_set_session(ssl_, client->resume->session_);
  return absl::OkStatus();
}

SavedSession::~SavedSession() { wolfSSL_SESSION_free(session_); }

bool TlsSession::resumed() const {
  return established_ && ssl_ != nullptr && wolfSSL_session_reused(ssl_) == 1;
}

std::shared_ptr<const SavedSession> TlsSession::SaveSession() const {
  if (role() != TlsRole::kClient || !established_ || failed_ || resumed()) return nullptr;
  WOLFSSL_SESSION* current = wolfSSL_get_session(ssl_);
  if (current == nullptr || wolfSSL_SESSION_is_resumable(current) != 1) return nullptr;
  // A copy: the connection's own session object changes when another ticket arrives.
  WOLFSSL_SESSION* copy = wolfSSL_SESSION_dup(current);
  if (copy == nullptr) return nullptr;
  return std::shared_ptr<const SavedSession>(new SavedSession(copy));
}

int TlsSession::VerifyCallback(int preverify, WOLFSSL_X509_STORE_CTX* store) {
  auto* self = static_cast<TlsSession*>(store->userCtx);
  if (self == nullptr) return preverify;
  if (preverify) return 1;
  if (self->verification_ != Verification::kFailed) {  // the first failure says the most
    self->verification_ = Verification::kFailed;
    self->verify_error_ = absl::StrCat(WolfSslErrorText(store->error), " at depth ",
                                       store->error_depth);
  }
  return self->record_only_ ? 1 : 0;
}

int TlsSession::RecvCallback(WOLFSSL*, char* buf, int size, void* ctx) {
  auto* self = static_cast<TlsSession*>(ctx);
  const size_t available = self->in_.size() - self->in_offset_;
  if (available == 0) {
    return self->eof_ ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  }
  const size_t n = std::min(available, static_cast<size_t>(std::max(size, 0)));
  std::memcpy(buf, self->in_.data() + self->in_offset_, n);
  self->in_offset_ += n;
  if (self->in_offset_ == self->in_.size()) {
    self->in_.clear();
    self->in_offset_ = 0;
  }
  return static_cast<int>(n);
}

int TlsSession::SendCallback(WOLFSSL*, char* buf, int size, void* ctx) {
  // Always taken: Write() keeps application data within the limit before it encrypts, and
  // handshake flights and alerts are bounded by wolfSSL itself (certificate chain size).
  auto* self = static_cast<TlsSession*>(ctx);
  self->out_.append(buf, static_cast<size_t>(std::max(size, 0)));
  return size;
}

size_t TlsSession::ciphertext_in_room() const {
  const size_t held = ciphertext_in_bytes();
  return held >= limits_.ciphertext_in_bytes_max ? 0 : limits_.ciphertext_in_bytes_max - held;
}

void TlsSession::CompactIn() {
  if (in_offset_ == 0) return;
  in_.erase(0, in_offset_);
  in_offset_ = 0;
}

size_t TlsSession::FeedCiphertext(std::string_view bytes) {
  const size_t take = std::min(bytes.size(), ciphertext_in_room());
  if (take == 0) return 0;
  if (in_offset_ > 0 && in_offset_ >= in_.size() / 2) CompactIn();
  in_.append(bytes.data(), take);
  return take;
}

TlsResult TlsSession::Fail(int ret, const char* during) {
  const int err = wolfSSL_get_error(ssl_, ret);
  failed_ = true;
  if (eof_ && ciphertext_in_bytes() == 0 &&
      (err == SOCKET_PEER_CLOSED_E || err == SOCKET_ERROR_E || err == WOLFSSL_ERROR_WANT_READ)) {
    error_ = absl::StrCat(during, ": the peer closed the connection");
  } else {
    error_ = absl::StrCat(during, ": ", WolfSslErrorText(err));
  }
  if (!record_only_ && verification_ == Verification::kFailed) {
    absl::StrAppend(&error_, "; certificate: ", verify_error_);
  }
  // wolfSSL also queues the error per thread; nothing reads that queue, so keep it empty.
  wolfSSL_ERR_clear_error();
  return TlsResult::kError;
}

TlsResult TlsSession::Handshake() {
  if (failed_) return TlsResult::kError;
  if (established_) return TlsResult::kOk;
  const int r = role() == TlsRole::kServer ? wolfSSL_accept(ssl_) : wolfSSL_connect(ssl_);
  if (r == WOLFSSL_SUCCESS) {
    Established();
    return TlsResult::kOk;
  }
  switch (wolfSSL_get_error(ssl_, r)) {
    case WOLFSSL_ERROR_WANT_READ:
      if (!eof_) return TlsResult::kWantRead;
      break;  // nothing more will come
    case WOLFSSL_ERROR_WANT_WRITE:
      return TlsResult::kWantWrite;
    default:
      break;
  }
  return Fail(r, "TLS handshake");
}

void TlsSession::Established() {
  established_ = true;
  version_ = VersionText(wolfSSL_get_version(ssl_));
  const int suite = wolfSSL_get_current_cipher_suite(ssl_);
  const char* iana = suite >= 0 ? wolfSSL_get_cipher_name_iana_from_suite(
                                      static_cast<unsigned char>((suite >> 8) & 0xff),
                                      static_cast<unsigned char>(suite & 0xff))
                                : nullptr;
  if (iana == nullptr || *iana == '\0' || std::strcmp(iana, "None") == 0) {
    iana = wolfSSL_get_cipher_name(ssl_);
  }
  cipher_ = iana != nullptr ? iana : "";
  if (role() == TlsRole::kClient && verification_ == Verification::kNotChecked) {
    verification_ = Verification::kOk;  // the callback saw no failure
  }
}

std::string TlsSession::Description() const {
  if (!established_) return "";
  return absl::StrCat(version_, " ", cipher_);
}

// A wolfSSL_read that returned `n` <= 0: records a close or a failure (closed_, failed_).
void TlsSession::ReadStopped(int n) {
  const int err = wolfSSL_get_error(ssl_, n);
  if (err == WOLFSSL_ERROR_WANT_READ && !eof_) return;
  if (err == WOLFSSL_ERROR_ZERO_RETURN || (eof_ && ciphertext_in_bytes() == 0)) {
    closed_ = true;  // close_notify, or the stream ended on a record boundary
    wolfSSL_ERR_clear_error();
  } else {
    Fail(n, "TLS read");
  }
}

TlsResult TlsSession::Read(std::string* out, size_t max_bytes) {
  RM_DCHECK(max_bytes > 0);
  if (failed_) return TlsResult::kError;
  if (closed_) return TlsResult::kClosed;
  if (!established_) {
    const TlsResult r = Handshake();
    if (r != TlsResult::kOk) return r;
  }
  char buf[kRecordPlaintextMax];
  size_t got = 0;
  while (got < max_bytes && !NothingToRead()) {
    const int want = static_cast<int>(std::min(sizeof(buf), max_bytes - got));
    const int n = wolfSSL_read(ssl_, buf, want);
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      got += static_cast<size_t>(n);
      continue;
    }
    ReadStopped(n);
    break;
  }
  if (got > 0) return TlsResult::kOk;  // a close or error is reported by the next call
  if (failed_) return TlsResult::kError;
  if (closed_) return TlsResult::kClosed;
  return TlsResult::kWantRead;
}

TlsResult TlsSession::ReadView(std::string_view* plain) {
  *plain = {};
  if (failed_) return TlsResult::kError;
  if (closed_) return TlsResult::kClosed;
  if (!established_) {
    const TlsResult r = Handshake();
    if (r != TlsResult::kOk) return r;
  }
  if (NothingToRead()) return TlsResult::kWantRead;
  // One record's plaintext at most; shared by the thread's sessions (see the header), so
  // an idle connection holds no plaintext buffer of its own.
  thread_local char buf[kRecordPlaintextMax];
  const int n = wolfSSL_read(ssl_, buf, static_cast<int>(sizeof(buf)));
  if (n > 0) {
    *plain = std::string_view(buf, static_cast<size_t>(n));
    return TlsResult::kOk;
  }
  ReadStopped(n);
  if (failed_) return TlsResult::kError;
  if (closed_) return TlsResult::kClosed;
  return TlsResult::kWantRead;
}

// wolfSSL (TLS, no read-ahead) asks the receive callback for exactly the bytes of the record
// it is reading, so it holds at most part of one record: with nothing in in_, no end of
// stream and no decrypted bytes pending, wolfSSL_read can only answer WANT_READ. Such an
// answer is not free in Debian's build (OPENSSL_EXTRA): WOLFSSL_ERROR_LINE takes the error
// queue's global mutex and formats a message for every WANT_READ, once per received batch on
// every connection, so Read and ReadView do not ask.
bool TlsSession::NothingToRead() const {
  return ciphertext_in_bytes() == 0 && !eof_ && wolfSSL_pending(ssl_) == 0;
}

bool TlsSession::HasBufferedInput() const {
  if (failed_ || closed_) return false;
  return ciphertext_in_bytes() > 0 || (ssl_ != nullptr && wolfSSL_pending(ssl_) > 0);
}

TlsResult TlsSession::Write(std::string_view plaintext, size_t* consumed) {
  return WriteGather({plaintext}, consumed);
}

TlsResult TlsSession::WriteGather(std::initializer_list<std::string_view> parts,
                                  size_t* consumed) {
  *consumed = 0;
  if (failed_) return TlsResult::kError;
  if (!established_ || shutdown_sent_) {
    failed_ = true;
    error_ = established_ ? "TLS write after shutdown" : "TLS write before the handshake";
    return TlsResult::kError;
  }
  size_t total = 0;
  for (std::string_view p : parts) total += p.size();
  char stage[kRecordPlaintextMax];
  while (*consumed < total && out_.size() < limits_.ciphertext_out_bytes_max) {
    // Where *consumed falls: the part and the offset in it (a handful of parts at most).
    const std::string_view* part = parts.begin();
    size_t off = *consumed;
    while (off >= part->size()) off -= (part++)->size();
    const size_t record = std::min(kRecordPlaintextMax, total - *consumed);
    const char* data = part->data() + off;
    if (part->size() - off < record) {  // the record spans parts: gather it
      size_t staged = 0;
      for (; staged < record; ++part, off = 0) {
        const size_t take = std::min(part->size() - off, record - staged);
        if (take > 0) std::memcpy(stage + staged, part->data() + off, take);  // data() may be null
        staged += take;
      }
      data = stage;
    }
    const int n = wolfSSL_write(ssl_, data, static_cast<int>(record));
    if (n <= 0) return Fail(n, "TLS write");
    *consumed += static_cast<size_t>(n);
  }
  if (*consumed == 0 && total > 0) return TlsResult::kWantWrite;
  return TlsResult::kOk;
}

void TlsSession::Shutdown() {
  if (shutdown_sent_ || ssl_ == nullptr || !established_ || failed_) return;
  shutdown_sent_ = true;
  (void)wolfSSL_shutdown(ssl_);  // queues close_notify; the peer's is not awaited
  wolfSSL_ERR_clear_error();
}

std::string TlsSession::TakeCiphertext() {
  std::string bytes;
  bytes.swap(out_);
  return bytes;
}

}  // namespace ringmail::tls
