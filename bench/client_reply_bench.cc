// Outbound client costs that scale with traffic: parsing server replies (one pipelined
// group of RCPT replies, a long EHLO answer), one whole pipelined transaction through the
// client machine, and DATA encoding (dot-stuffing) bytes per second on a realistic body
// fed in 16 KiB slices the way spool reads arrive.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "delivery/client_machine.h"
#include "delivery/reply_parser.h"

namespace ringmail::delivery {
namespace {

constexpr size_t kSpoolReadBytes = 16 * 1024;

std::string RcptReplies(int recipients) {
  std::string s = "250 2.1.0 Ok\r\n";
  for (int i = 0; i < recipients; ++i) s += "250 2.1.5 Ok\r\n";
  return s + "354 End data with <CR><LF>.<CR><LF>\r\n";
}

void BM_ParsePipelinedReplies(benchmark::State& state) {
  const std::string input = RcptReplies(static_cast<int>(state.range(0)));
  size_t replies = 0;
  for (auto _ : state) {
    ReplyParser parser;
    size_t pos = 0;
    while (pos < input.size() && parser.Next(input, &pos) == ReplyParser::Status::kReply) {
      benchmark::DoNotOptimize(parser.TakeReply());
      ++replies;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(replies));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * input.size()));
}
BENCHMARK(BM_ParsePipelinedReplies)->Arg(1)->Arg(50);

void BM_ParseEhlo(benchmark::State& state) {
  const std::string input =
      "250-mx.example.com Hello client.example [192.0.2.1]\r\n250-PIPELINING\r\n"
      "250-SIZE 52428800\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
      "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
  for (auto _ : state) {
    ReplyParser parser;
    size_t pos = 0;
    parser.Next(input, &pos);
    benchmark::DoNotOptimize(ParseEhloReply(parser.TakeReply()));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseEhlo);

// MAIL + N RCPT + DATA in one group, body, final reply: the machine's per-message cost.
void BM_PipelinedTransaction(benchmark::State& state) {
  const int recipients = static_cast<int>(state.range(0));
  Transaction tx;
  tx.sender = "sender@example.com";
  for (int i = 0; i < recipients; ++i) {
    tx.recipients.push_back({static_cast<uint32_t>(i), absl::StrCat("user", i, "@example.net")});
  }
  tx.body_bytes = 10000;
  const std::string replies = RcptReplies(recipients);
  ClientOptions options;
  options.helo_name = "client.example";
  ClientMachine machine(options);
  machine.Start();
  machine.Feed("220 mx ESMTP\r\n");
  machine.Feed("250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
  (void)machine.TakeOutput();
  while (machine.TakeAction()) {
  }
  for (auto _ : state) {
    machine.Begin(tx);
    benchmark::DoNotOptimize(machine.TakeOutput());
    machine.Feed(replies);
    machine.BodySent();
    machine.Feed("250 2.0.0 Ok: queued\r\n");
    while (std::optional<ClientAction> action = machine.TakeAction()) {
      benchmark::DoNotOptimize(action);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_PipelinedTransaction)->Arg(1)->Arg(10)->Arg(100);

std::string RealisticBody(size_t size) {
  std::mt19937 rng(42);
  std::string s =
      "Received: from client.example by mx.example with ESMTP id abc\r\n"
      "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n"
      "Subject: quarterly figures\r\nMIME-Version: 1.0\r\n\r\n";
  while (s.size() < size) {
    std::string line = rng() % 40 == 0 ? "." : "";  // a leading dot every ~40 lines
    const size_t target = 40 + rng() % 39;
    while (line.size() < target) line += "delivery ring mail ";
    s += line + "\r\n";
  }
  return s;
}

void BM_DotStuff(benchmark::State& state) {
  const std::string body = RealisticBody(static_cast<size_t>(state.range(0)));
  std::string wire;
  wire.reserve(body.size() * 2);
  for (auto _ : state) {
    wire.clear();
    DotStuffer stuffer;
    for (size_t pos = 0; pos < body.size(); pos += kSpoolReadBytes) {
      stuffer.Encode(std::string_view(body).substr(pos, kSpoolReadBytes), &wire);
    }
    stuffer.Finish(&wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_DotStuff)->Arg(1024)->Arg(10 * 1024)->Arg(100 * 1024)->Arg(1024 * 1024);

}  // namespace
}  // namespace ringmail::delivery

BENCHMARK_MAIN();
