// tools/ringload/report.h — what ringload prints: the live progress line (stderr, only on a
// terminal) and the final summary (stdout; human text, or one JSON object with --json).
// Main thread only; the inputs are merged stats read after the loops have been joined.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "tools/ringload/options.h"
#include "tools/ringload/sender.h"
#include "tools/ringload/sink.h"

namespace ringmail::ringload {

struct SendOutcome {
  double elapsed_s = 0;
  uint32_t threads = 0;
  bool timed_out = false;
  bool interrupted = false;
  bool incomplete = false;  // --messages not all attempted
};

struct SinkOutcome {
  double elapsed_s = 0;  // whole run
  double active_s = 0;   // first connection to last answer
  uint32_t threads = 0;
  uint16_t port = 0;
  bool expect_met = true;
  bool interrupted = false;
};

void PrintSendSummary(FILE* out, const SendOptions& o, const SendStats& s, const SendOutcome& r);
void PrintSinkSummary(FILE* out, const SinkOptions& o, const SinkStats& s, const SinkOutcome& r);

// One progress line, without newline: "12345 ok  4321/s  0 errors  3.2s  ETA 1.5s".
std::string ProgressLine(uint64_t ok, uint64_t failed, uint64_t errors, double elapsed_s,
                         double rate, double eta_s);

// JSON string literal with quotes and escapes.
std::string JsonString(const std::string& s);

}  // namespace ringmail::ringload
