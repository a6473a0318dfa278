#include "tools/ringload/tls_stream.h"

#include <algorithm>
#include <utility>

#include "tls/context.h"

namespace ringmail::ringload {
namespace {

constexpr size_t kPlainChunkBytes = 64 * 1024;  // decrypted per TlsSession::Read

}  // namespace

absl::StatusOr<std::shared_ptr<const tls::TlsContext>> MakeLoadClientContext(
    bool crypto_offload) {
  tls::TlsContextOptions o;
  o.role = tls::TlsRole::kClient;
  o.use_system_ca = false;  // nothing is verified: no need to read the CA store
  o.crypto_offload = crypto_offload;
  return tls::TlsContext::Create(o);
}

absl::StatusOr<std::unique_ptr<TlsClientStream>> TlsClientStream::Start(
    std::shared_ptr<const tls::TlsContext> context, const std::string& server_name,
    std::shared_ptr<const tls::SavedSession> resume) {
  tls::ClientOptions o;
  o.server_name = server_name;
  o.verify = tls::VerifyMode::kRecord;
  o.resume = std::move(resume);
  auto session = tls::TlsSession::NewClient(std::move(context), o);
  if (!session.ok()) return session.status();
  tls::ReleaseThreadEccCacheAtExit();
  std::unique_ptr<TlsClientStream> s(new TlsClientStream(*std::move(session)));
  tls::TlsResult r = s->session_->Handshake();  // the ClientHello
  if (r == tls::TlsResult::kError || r == tls::TlsResult::kClosed) {
    return absl::InternalError(s->session_->error());
  }
  return s;
}

TlsClientStream::Event TlsClientStream::Input(std::string_view ciphertext, std::string* plain) {
  if (session_->FeedCiphertext(ciphertext) < ciphertext.size()) return Event::kEnded;
  Event event = Event::kNone;
  if (!session_->established()) {
    tls::TlsResult r = session_->Handshake();
    if (r == tls::TlsResult::kError || r == tls::TlsResult::kClosed) return Event::kEnded;
    if (r != tls::TlsResult::kOk) return Event::kNone;
    event = Event::kEstablished;
  }
  for (;;) {
    tls::TlsResult r = session_->Read(plain, kPlainChunkBytes);
    if (r == tls::TlsResult::kOk) continue;
    if (r == tls::TlsResult::kClosed || r == tls::TlsResult::kError) return Event::kEnded;
    return event;
  }
}

bool TlsClientStream::Seal(std::string_view a, std::string_view b, std::string_view c,
                           std::string* wire) {
  TakeWire(wire);
  const size_t total = a.size() + b.size() + c.size();
  for (size_t done = 0; done < total;) {
    // What is left of a, b, c after `done` bytes (the engine stops at its outbound limit).
    std::string_view parts[3] = {a, b, c};
    size_t skip = done;
    for (std::string_view& p : parts) {
      const size_t k = std::min(skip, p.size());
      p.remove_prefix(k);
      skip -= k;
    }
    size_t used = 0;
    tls::TlsResult r = session_->WriteGather({parts[0], parts[1], parts[2]}, &used);
    done += used;
    TakeWire(wire);  // empties the engine's buffer, so the next write has room
    if (r == tls::TlsResult::kError || r == tls::TlsResult::kClosed) return false;
    if (used == 0 && r != tls::TlsResult::kOk) return false;
  }
  return true;
}

void TlsClientStream::TakeWire(std::string* wire) {
  if (session_->has_ciphertext_out()) wire->append(session_->TakeCiphertext());
}

}  // namespace ringmail::ringload
