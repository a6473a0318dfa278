// TLS engine costs, in memory (no sockets): what a TLS connection adds to the loop thread
// that serves it.
//   BM_ServerHandshake/<key>/<version>  server-side CPU of one full handshake (the client's
//                                       work is excluded with PauseTiming)
//   BM_ServerHandshakeResumed/<0|1>     server side of a TLS 1.3 handshake, full or resumed
//                                       with the client's saved ticket
//   BM_FullHandshake/<key>              both sides, TLS 1.3: handshakes/s of one core
//   BM_ServerMessage/<bytes>/<suite>    server side of one message over an established
//                                       session: decrypt `bytes` of DATA, encrypt a reply;
//                                       suite 0 = default choice, 1 = AES-128-GCM,
//                                       2 = ChaCha20-Poly1305
//   BM_ServerTransaction/<bytes>/<one>/<view>  server side of a whole non-pipelined
//                                       transaction (MAIL, RCPT, DATA, body, 4 replies):
//                                       body and ".\r\n" as one record or two; ReadView
//                                       or Read into a string
// Certificates come from a throwaway CA made with openssl at start (tests/tls/test_pki_util).
// RINGMAIL_TLS_OFFLOAD=0 in the environment turns the libcrypto crypto offload
// (tls/crypto_offload.h) off for the whole run: run twice for its A/B.
#include <cstdlib>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "tests/tls/test_pki_util.h"
#include "tls/context.h"
#include "tls/crypto_offload.h"
#include "tls/session.h"

namespace ringmail::tls {
namespace {

using tls_test::TestCertificate;
using tls_test::TestPki;

// Before any context is made (static initialisation, before main).
const bool kOffloadFromEnv = [] {
  const char* e = std::getenv("RINGMAIL_TLS_OFFLOAD");
  if (e != nullptr && e[0] == '0') SetCryptoOffload(false);
  return CryptoOffloadEnabled();
}();

struct Pki {
  std::unique_ptr<TestPki> pki;
  std::shared_ptr<const TlsContext> server;
  std::shared_ptr<const TlsContext> server12;
};

// 0: ECDSA P-256, 1: RSA 2048. Made once per process.
const Pki& PkiFor(int key) {
  static Pki pkis[2];
  Pki& p = pkis[key];
  if (p.pki != nullptr) return p;
  TestPki::Options o;
  o.rsa_bits = key == 1 ? 2048 : 0;
  auto made = TestPki::Create("bench CA", o);
  if (!made.ok()) std::abort();
  p.pki = std::make_unique<TestPki>(std::move(*made));
  auto cert = p.pki->IssueServer("server", {"mx.test"});
  if (!cert.ok()) std::abort();
  TlsContextOptions so;
  so.certificate_chain_file = cert->chain_file;
  so.private_key_file = cert->key_file;
  p.server = TlsContext::Create(so).value();
  so.max_version = TlsVersion::kTls12;
  p.server12 = TlsContext::Create(so).value();
  return p;
}

// The client's offer decides the suite and the key exchange (0: the defaults; 1: AES-128-GCM
// only; 2: ChaCha20-Poly1305 only; 3: X25519 only; 4: P-256 only).
std::shared_ptr<const TlsContext> ClientContext(int suite = 0) {
  static std::shared_ptr<const TlsContext> ctx[5];
  if (ctx[suite] == nullptr) {
    TlsContextOptions o;
    o.role = TlsRole::kClient;
    o.use_system_ca = false;
    if (suite == 1) o.cipher_list = "TLS13-AES128-GCM-SHA256";
    if (suite == 2) o.cipher_list = "TLS13-CHACHA20-POLY1305-SHA256";
    if (suite == 3) o.groups = "X25519";
    if (suite == 4) o.groups = "P-256";
    ctx[suite] = TlsContext::Create(o).value();
  }
  return ctx[suite];
}

// Runs one handshake; client work is untimed when `server_only`.
void Handshake(benchmark::State& state, TlsSession& client, TlsSession& server,
               bool server_only) {
  auto untimed = [&](auto f) {
    if (server_only) state.PauseTiming();
    f();
    if (server_only) state.ResumeTiming();
  };
  TlsResult cr = TlsResult::kWantRead, sr = TlsResult::kWantRead;
  untimed([&] { cr = client.Handshake(); });
  for (int i = 0; i < 8 && !(cr == TlsResult::kOk && sr == TlsResult::kOk); ++i) {
    untimed([&] { server.FeedCiphertext(client.TakeCiphertext()); });
    sr = server.Handshake();
    std::string flight = server.TakeCiphertext();
    untimed([&] {
      client.FeedCiphertext(flight);
      cr = client.Handshake();
    });
  }
  if (cr != TlsResult::kOk || sr != TlsResult::kOk) state.SkipWithError("handshake failed");
}

void BM_ServerHandshake(benchmark::State& state) {
  const Pki& p = PkiFor(static_cast<int>(state.range(0)));
  const auto& server_ctx = state.range(1) == 12 ? p.server12 : p.server;
  for (auto _ : state) {
    state.PauseTiming();
    auto client =
        TlsSession::NewClient(ClientContext(static_cast<int>(state.range(2))), ClientOptions{})
            .value();
    state.ResumeTiming();
    auto server = TlsSession::NewServer(server_ctx).value();
    Handshake(state, *client, *server, /*server_only=*/true);
  }
  state.counters["handshakes_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ServerHandshake)
    ->ArgNames({"rsa", "tls", "client"})
    ->Args({0, 13, 0})
    ->Args({0, 13, 3})
    ->Args({0, 13, 4})
    ->Args({0, 12, 0})
    ->Args({1, 13, 0})
    ->Args({1, 12, 0})
    ->Unit(benchmark::kMicrosecond);

// Server-side CPU of a TLS 1.3 handshake that resumes with a ticket (PSK with an X25519
// key share: no certificate, no signature), against a full one with the same client.
void BM_ServerHandshakeResumed(benchmark::State& state) {
  const Pki& p = PkiFor(0);
  // One full handshake; the client reads the ticket the server sent behind its flight.
  auto first = TlsSession::NewClient(ClientContext(), ClientOptions{}).value();
  auto first_server = TlsSession::NewServer(p.server).value();
  Handshake(state, *first, *first_server, false);
  size_t used = 0;
  first_server->Write("220 ready\r\n", &used);
  first->FeedCiphertext(first_server->TakeCiphertext());
  std::string greeting;
  first->Read(&greeting, 100);
  ClientOptions resume;
  resume.resume = first->SaveSession();
  if (resume.resume == nullptr) state.SkipWithError("no ticket");
  const bool resumed = state.range(0) == 1;
  int64_t reused = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto client =
        TlsSession::NewClient(ClientContext(), resumed ? resume : ClientOptions{}).value();
    state.ResumeTiming();
    auto server = TlsSession::NewServer(p.server).value();
    Handshake(state, *client, *server, /*server_only=*/true);
    reused += server->resumed() ? 1 : 0;
  }
  if (resumed && reused != static_cast<int64_t>(state.iterations())) {
    state.SkipWithError("a handshake did not resume");
  }
  state.counters["handshakes_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ServerHandshakeResumed)->ArgName("resumed")->Arg(0)->Arg(1)->Unit(
    benchmark::kMicrosecond);

void BM_FullHandshake(benchmark::State& state) {
  const Pki& p = PkiFor(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto client = TlsSession::NewClient(ClientContext(), ClientOptions{}).value();
    auto server = TlsSession::NewServer(p.server).value();
    Handshake(state, *client, *server, /*server_only=*/false);
  }
  state.counters["handshakes_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FullHandshake)->ArgName("rsa")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_ServerMessage(benchmark::State& state) {
  const Pki& p = PkiFor(0);
  auto client =
      TlsSession::NewClient(ClientContext(static_cast<int>(state.range(1))), ClientOptions{})
          .value();
  auto server = TlsSession::NewServer(p.server).value();
  Handshake(state, *client, *server, false);
  state.SetLabel(server->cipher());
  const std::string body(static_cast<size_t>(state.range(0)), 'x');
  std::string plain;
  std::string reply;
  for (auto _ : state) {
    state.PauseTiming();
    size_t used = 0;
    std::string wire;
    for (std::string_view rest = body; !rest.empty(); rest.remove_prefix(used)) {
      if (client->Write(rest, &used) != TlsResult::kOk) state.SkipWithError("client write");
      wire += client->TakeCiphertext();
    }
    state.ResumeTiming();
    // Server: take the ciphertext, decrypt it, encrypt the 250 reply.
    plain.clear();
    for (std::string_view rest = wire; !rest.empty();) {
      rest.remove_prefix(server->FeedCiphertext(rest));
      while (server->Read(&plain, 65536) == TlsResult::kOk) {
      }
    }
    server->Write("250 2.0.0 Ok: queued as 0123456789abcdef0123456789abcdef\r\n", &used);
    std::string out = server->TakeCiphertext();
    benchmark::DoNotOptimize(out.data());
    state.PauseTiming();
    client->FeedCiphertext(out);
    reply.clear();
    while (client->Read(&reply, 65536) == TlsResult::kOk) {
    }
    if (plain.size() != body.size()) state.SkipWithError("short read");
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ServerMessage)
    ->ArgNames({"bytes", "suite"})
    ->ArgsProduct({{1024, 10 * 1024, 100 * 1024}, {0, 1, 2}});

// One non-pipelined SMTP transaction over an established session, as ringload sends it and
// Session serves it: the client's MAIL, RCPT and DATA each in its own record, then the body
// (`bytes`) and ".\r\n" — in one record when range(1) is 1, as two records (body, then
// terminator) when 0; the server answers each command with a small record. Timed: the
// server's side only, through the calls Session makes: FeedCiphertext, then per record
// ReadView (range(2) = 1, as Session does now) or Read into a new string (0, as it did
// before), Write per reply, TakeCiphertext. {0, 0} vs {1, 1}: the change's A/B.
void BM_ServerTransaction(benchmark::State& state) {
  const Pki& p = PkiFor(0);
  auto client = TlsSession::NewClient(ClientContext(), ClientOptions{}).value();
  auto server = TlsSession::NewServer(p.server).value();
  Handshake(state, *client, *server, false);
  const std::string body(static_cast<size_t>(state.range(0)), 'x');
  const bool one_record = state.range(1) == 1;
  const bool view = state.range(2) == 1;
  const std::string mail = "MAIL FROM:<ringload@ringload.test>\r\n";
  const std::string rcpt = "RCPT TO:<rcpt1@bench.test>\r\n";
  const std::string data = "DATA\r\n";
  auto seal = [&](std::initializer_list<std::string_view> records) {
    std::string wire;
    for (std::string_view r : records) {
      size_t used = 0;
      for (std::string_view rest = r; !rest.empty(); rest.remove_prefix(used)) {
        if (client->Write(rest, &used) != TlsResult::kOk) state.SkipWithError("client write");
      }
    }
    wire += client->TakeCiphertext();
    return wire;
  };
  const std::string replies[4] = {"250 2.1.0 Ok\r\n", "250 2.1.5 Ok\r\n",
                                  "354 End data with <CR><LF>.<CR><LF>\r\n",
                                  "250 2.0.0 Ok: queued as 0123456789abcdef0123456789abcdef\r\n"};
  const std::string body_and_dot = body + ".\r\n";
  size_t plain_bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();  // the client's records are fresh each time (sequence numbers)
    const std::string in[4] = {seal({mail}), seal({rcpt}), seal({data}),
                               one_record ? seal({body_and_dot}) : seal({body, ".\r\n"})};
    state.ResumeTiming();
    plain_bytes = 0;
    for (int step = 0; step < 4; ++step) {
      for (std::string_view rest = in[step]; !rest.empty();) {
        rest.remove_prefix(server->FeedCiphertext(rest));
        for (;;) {
          if (view) {
            std::string_view plain;
            if (server->ReadView(&plain) != TlsResult::kOk) break;
            benchmark::DoNotOptimize(plain.data());
            plain_bytes += plain.size();
          } else {
            std::string plain;  // Session::PullPlaintext before ReadView: a string per read
            if (server->Read(&plain, 16384) != TlsResult::kOk) break;
            plain_bytes += plain.size();
          }
        }
      }
      size_t used = 0;
      server->Write(replies[step], &used);
      std::string out = server->TakeCiphertext();
      benchmark::DoNotOptimize(out.data());
    }
  }
  if (plain_bytes != mail.size() + rcpt.size() + data.size() + body.size() + 3) {
    state.SkipWithError("short read");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ServerTransaction)
    ->ArgNames({"bytes", "one_record", "view"})
    ->ArgsProduct({{10 * 1024}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ringmail::tls

BENCHMARK_MAIN();
