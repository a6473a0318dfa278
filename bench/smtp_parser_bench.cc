// ESMTP parser throughput: command lines per second (the line reader alone, and the whole
// session machine), and DATA scanning bytes per second on realistic 1 KiB / 10 KiB /
// 100 KiB bodies (text lines of 40–78 octets, a header block, now and then a line that
// starts with '.' and must be unstuffed), fed in 16 KiB slices the way recv buffers arrive.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "core/message.h"
#include "listeners/esmtp/session_machine.h"
#include "listeners/esmtp/smtp_parser.h"

namespace ringmail::listeners::esmtp {
namespace {

constexpr size_t kRecvSliceBytes = 16 * 1024;

// A dot-stuffed body of about `size` octets followed by the terminator.
std::string RealisticStuffedBody(size_t size) {
  std::mt19937 rng(42);
  std::string s =
      "Received: from client.example ([192.0.2.1]) by mx.example with ESMTP id abc\r\n"
      "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n"
      "Subject: quarterly figures and the usual notes\r\nMessage-ID: <1234@example.com>\r\n"
      "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n\r\n";
  static const char* const kWords[] = {"the", "mail", "transfer", "agent", "queue", "of",
                                       "delivery", "and", "relay", "message", "ring", "to"};
  while (s.size() < size) {
    std::string line;
    if (rng() % 40 == 0) line = "..";  // a stuffed leading dot every ~40 lines
    const size_t target = 40 + rng() % 39;
    while (line.size() < target) {
      line += kWords[rng() % std::size(kWords)];
      line += ' ';
    }
    s += line;
    s += "\r\n";
  }
  s += ".\r\n";
  return s;
}

void BM_DataScan(benchmark::State& state) {
  const std::string input = RealisticStuffedBody(static_cast<size_t>(state.range(0)));
  BodyOptions options;
  options.size_bytes_max = 64 * 1024 * 1024;
  BodyReader reader;
  size_t stored = 0;
  for (auto _ : state) {
    core::Body body;
    reader.Begin(&body, options);
    std::string_view rest = input;
    bool done = false;
    while (!done) {
      BodyReader::Result r = reader.FeedData(rest.substr(0, kRecvSliceBytes));
      rest.remove_prefix(r.consumed);
      done = r.done;
    }
    stored = body.size();
    benchmark::DoNotOptimize(body);
  }
  if (reader.defect() != BodyDefect::kNone || stored == 0) state.SkipWithError("bad body");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * input.size()));
}
BENCHMARK(BM_DataScan)->Arg(1024)->Arg(10 * 1024)->Arg(100 * 1024);

const char kCommandStream[] =
    "MAIL FROM:<alice.sender@example.com> SIZE=12345 BODY=8BITMIME\r\n"
    "RCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net> NOTIFY=NEVER\r\n"
    "RCPT TO:<dave.long-name@sub.example.net>\r\nRSET\r\nNOOP\r\n";
constexpr int kCommandsPerStream = 6;

void BM_CommandLineReader(benchmark::State& state) {
  std::string stream;
  for (int i = 0; i < 100; ++i) stream += kCommandStream;
  CommandLineReader reader;
  size_t lines = 0;
  for (auto _ : state) {
    for (size_t off = 0; off < stream.size(); off += kRecvSliceBytes) {
      std::string_view piece = std::string_view(stream).substr(off, kRecvSliceBytes);
      size_t pos = 0;
      while (pos < piece.size()) {
        CommandLineReader::Event e = reader.Next(piece, &pos);
        lines += e.kind == CommandLineReader::Kind::kLine;
        benchmark::DoNotOptimize(e);
      }
    }
  }
  benchmark::DoNotOptimize(lines);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 100 * kCommandsPerStream));
}
BENCHMARK(BM_CommandLineReader);

// Commands through the whole machine: parse, policy, replies, slot grant, transaction.
void BM_SessionCommands(benchmark::State& state) {
  PolicyOptions options;
  options.relay_domains = {"example.net", ".example.net"};
  const Policy policy = Policy::Create(options).value();
  core::MessageIdGenerator ids(1, 2);
  SessionLimits limits;
  limits.max_junk_commands = UINT32_MAX;  // a benchmark loop is all RSET/NOOP "junk"
  SessionMachine machine(limits, policy, ids);
  machine.Start("192.0.2.1", 1234, "mx.example");
  machine.Feed("EHLO client.example\r\n", 0);
  machine.TakeOutput();
  size_t reply_bytes = 0;
  for (auto _ : state) {
    std::string_view rest = kCommandStream;
    while (!rest.empty()) {
      rest.remove_prefix(machine.Feed(rest, 0));
      for (;;) {
        while (std::optional<Action> a = machine.TakeAction()) {
          if (a->kind == Action::Kind::kNeedTransactionSlot) machine.SlotGranted();
        }
        if (machine.CanContinue()) {
          machine.Continue(0);
          continue;
        }
        if (!machine.HasOutput()) break;
        reply_bytes += machine.TakeOutput().size();
      }
    }
  }
  benchmark::DoNotOptimize(reply_bytes);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kCommandsPerStream));
}
BENCHMARK(BM_SessionCommands);

// One whole transaction per iteration, the way a non-pipelining client sends it: MAIL, RCPT,
// DATA, a 1 KiB body, then the spool's CommitDone and the 250 — what the acceptance path
// costs in the machine per message (parse, policy, message build, Received header, replies).
// The wall clock advances a little per message, as it does on a loop.
void BM_SessionMessage(benchmark::State& state) {
  PolicyOptions options;
  options.relay_domains = {"example.net", ".example.net"};
  const Policy policy = Policy::Create(options).value();
  core::MessageIdGenerator ids(1, 2);
  SessionLimits limits;
  SessionMachine machine(limits, policy, ids);
  uint64_t now_ms = 1'700'000'000'000;
  machine.Start("192.0.2.1", 1234, "mx.example");
  machine.Feed("EHLO client.example\r\n", now_ms);
  machine.TakeOutput();
  const std::string body = RealisticStuffedBody(static_cast<size_t>(state.range(0)));
  const std::string_view steps[] = {"MAIL FROM:<alice@example.com> SIZE=2000\r\n",
                                    "RCPT TO:<bob@example.net>\r\n", "DATA\r\n", body};
  size_t reply_bytes = 0;
  for (auto _ : state) {
    for (std::string_view step : steps) {
      std::string_view rest = step;
      while (!rest.empty()) {
        rest.remove_prefix(machine.Feed(rest, now_ms));
        for (;;) {
          while (std::optional<Action> a = machine.TakeAction()) {
            if (a->kind == Action::Kind::kNeedTransactionSlot) machine.SlotGranted();
            if (a->kind == Action::Kind::kCommit) machine.CommitDone(absl::OkStatus());
          }
          if (machine.CanContinue()) {
            machine.Continue(now_ms);
            continue;
          }
          if (!machine.HasOutput()) break;
          reply_bytes += machine.TakeOutput().size();
        }
      }
    }
    now_ms += 1;
  }
  benchmark::DoNotOptimize(reply_bytes);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SessionMessage)->Arg(1024);
// A fixed count, for instructions per message under callgrind (--toggle-collect of this
// function; divide by 2000): the variable-count run above also runs its estimation rounds.
BENCHMARK(BM_SessionMessage)->Arg(1024)->Iterations(2000);

}  // namespace
}  // namespace ringmail::listeners::esmtp

BENCHMARK_MAIN();
