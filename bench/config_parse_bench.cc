// Configuration parsing speed: lexing, parsing and a full typed load of the DESIGN.md example
// (tests/config/testdata/design_example.conf), a load of a large generated configuration
// (many Domain scopes, as a big smarthost setup has), and the cost of pinning a generation.
// Loads happen at start and on reload, so the point is to know they stay in the
// milliseconds; Pin happens once per SMTP transaction.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

#include "config/diagnostics.h"
#include "config/generation.h"
#include "config/lexer.h"
#include "config/parser.h"

namespace {

using ringmail::config::Config;

std::string ExampleText() {
  // The example lives in the source tree next to this file's folder.
  std::string here = __FILE__;
  std::string root = here.substr(0, here.rfind("/bench/"));
  std::ifstream in(root + "/tests/config/testdata/design_example.conf");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string LargeText(int domains) {
  std::string text = ExampleText();
  for (int i = 0; i < domains; ++i) {
    text += "Domain \"d" + std::to_string(i) +
            ".example.com\" {\n"
            "  routes = ( \"[10.0." +
            std::to_string(i % 250) +
            ".1]:25\" \"relay.example.net\" )\n"
            "  max_outbound_connections = 50\n  tls = \"required\"\n}\n";
  }
  return text;
}

void BM_LexExample(benchmark::State& state) {
  std::string text = ExampleText();
  if (text.empty()) state.SkipWithError("design_example.conf not found");
  for (auto _ : state) {
    ringmail::config::Lexer lexer(text, 0);
    int tokens = 0;
    while (lexer.Next().kind != ringmail::config::TokenKind::kEnd) ++tokens;
    benchmark::DoNotOptimize(tokens);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_LexExample);

void BM_ParseExample(benchmark::State& state) {
  std::string text = ExampleText();
  if (text.empty()) state.SkipWithError("design_example.conf not found");
  for (auto _ : state) {
    ringmail::config::Diagnostics diagnostics;
    auto nodes = ringmail::config::ParseConfigText(text, "example.conf", &diagnostics);
    benchmark::DoNotOptimize(nodes.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_ParseExample);

void BM_LoadExample(benchmark::State& state) {
  std::string text = ExampleText();
  if (text.empty()) state.SkipWithError("design_example.conf not found");
  for (auto _ : state) {
    auto config = ringmail::config::LoadConfigString(text, "example.conf");
    if (!config.ok()) state.SkipWithError("the example does not load");
    benchmark::DoNotOptimize(config);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_LoadExample);

void BM_LoadManyDomains(benchmark::State& state) {
  std::string text = LargeText(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto config = ringmail::config::LoadConfigString(text, "large.conf");
    if (!config.ok()) state.SkipWithError("the generated config does not load");
    benchmark::DoNotOptimize(config);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_LoadManyDomains)->Arg(100)->Arg(5000)->Unit(benchmark::kMillisecond);

ringmail::config::GenerationStore& Store() {
  static ringmail::config::GenerationStore store;
  static bool published = [] {
    store.Publish(ringmail::config::LoadConfigString(ExampleText(), "example.conf").value());
    return true;
  }();
  (void)published;
  return store;
}

void BM_Pin(benchmark::State& state) {
  ringmail::config::GenerationStore& store = Store();
  for (auto _ : state) {
    auto pinned = store.Pin();
    benchmark::DoNotOptimize(pinned.config.get());
  }
}
BENCHMARK(BM_Pin)->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
