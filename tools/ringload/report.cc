#include "tools/ringload/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ringmail::ringload {
namespace {

double PerSecond(uint64_t n, double s) { return s > 0 ? static_cast<double>(n) / s : 0.0; }

std::string CodesText(const CodeCounts& c, bool json) {
  std::string out;
  for (size_t i = 0; i < c.counts.size(); ++i) {
    if (c.counts[i] == 0) continue;
    if (json) {
      absl::StrAppend(&out, out.empty() ? "" : ",", "\"", i == 0 ? std::string("none")
                                                                  : absl::StrFormat("%03d", i),
                      "\":", c.counts[i]);
    } else {
      absl::StrAppend(&out, out.empty() ? "" : " ",
                      i == 0 ? std::string("no-reply") : absl::StrFormat("%03d", i), "x",
                      c.counts[i]);
    }
  }
  return out;
}

std::string Ms(uint64_t us) { return absl::StrFormat("%.3f", static_cast<double>(us) / 1000); }

}  // namespace

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", c));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string ProgressLine(uint64_t ok, uint64_t failed, uint64_t errors, double elapsed_s,
                         double rate, double eta_s) {
  std::string line = absl::StrFormat("%llu ok  %llu failed  %.0f msg/s  %llu errors  %.1fs", ok,
                                     failed, rate, errors, elapsed_s);
  if (eta_s >= 0) absl::StrAppend(&line, absl::StrFormat("  ETA %.1fs", eta_s));
  return line;
}

void PrintSendSummary(FILE* out, const SendOptions& o, const SendStats& s, const SendOutcome& r) {
  const Histogram& h = s.latency;
  const double mps = PerSecond(s.ok, r.elapsed_s);
  const double bps = PerSecond(s.bytes, r.elapsed_s);
  if (o.common.json) {
    std::fprintf(
        out,
        "{\"mode\":\"send\",\"protocol\":\"%s\",\"target\":%s,\"connections\":%u,"
        "\"threads\":%u,"
        "\"pipelining\":%s,\"chunking\":%s,\"rate\":%.3f,\"elapsed_s\":%.6f,"
        "\"messages\":%llu,\"messages_per_s\":%.1f,\"bytes\":%llu,\"bytes_per_s\":%.1f,"
        "\"rejected_4xx\":%llu,\"rejected_5xx\":%llu,\"lost\":%llu,\"aborted\":%llu,"
        "\"rcpts_rejected\":%llu,\"quit_unanswered\":%llu,\"connections_opened\":%llu,"
        "\"connect_errors\":%llu,"
        "\"session_errors\":%llu,\"file_errors\":%llu,\"errors\":%llu,"
        "\"tls_handshakes\":%llu,\"tls_resumed\":%llu,"
        "\"latency_us\":{\"min\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,"
        "\"p999\":%llu,\"max\":%llu},\"codes\":{%s},\"timed_out\":%s,\"interrupted\":%s,"
        "\"incomplete\":%s,\"first_error\":%s}\n",
        o.http ? "http" : "smtp", JsonString(o.target.text).c_str(), o.connections, r.threads,
        o.pipelining ? "true" : "false", o.chunking ? "true" : "false", o.rate, r.elapsed_s,
        (unsigned long long)s.ok, mps, (unsigned long long)s.bytes, bps,
        (unsigned long long)s.rejected_4xx, (unsigned long long)s.rejected_5xx,
        (unsigned long long)s.lost, (unsigned long long)s.aborted,
        (unsigned long long)s.rcpts_rejected, (unsigned long long)s.quit_unanswered,
        (unsigned long long)s.connections,
        (unsigned long long)s.connect_errors, (unsigned long long)s.session_errors,
        (unsigned long long)s.file_errors, (unsigned long long)s.errors(),
        (unsigned long long)s.tls_handshakes, (unsigned long long)s.tls_resumed,
        (unsigned long long)h.min(), h.mean(), (unsigned long long)h.ValueAt(50),
        (unsigned long long)h.ValueAt(90), (unsigned long long)h.ValueAt(99),
        (unsigned long long)h.ValueAt(99.9), (unsigned long long)h.max(),
        CodesText(s.codes, true).c_str(), r.timed_out ? "true" : "false",
        r.interrupted ? "true" : "false", r.incomplete ? "true" : "false",
        JsonString(s.first_error).c_str());
    return;
  }
  std::fprintf(out, "ringload send: %llu messages accepted in %.3f s: %.1f msg/s, %.2f MB/s\n",
               (unsigned long long)s.ok, r.elapsed_s, mps, bps / 1e6);
  std::fprintf(out, "  target %s%s, %u connections on %u threads%s%s%s\n",
               o.target.text.c_str(), o.http ? " (HTTP injection)" : "", o.connections,
               r.threads, o.pipelining ? ", pipelining" : "",
               o.chunking ? ", chunking" : "",
               o.rate > 0 ? absl::StrFormat(", open loop at %.1f msg/s", o.rate).c_str() : "");
  std::fprintf(out, "  latency ms%s: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
               o.rate > 0 ? " (from schedule)" : "", Ms(h.ValueAt(50)).c_str(),
               Ms(h.ValueAt(90)).c_str(), Ms(h.ValueAt(99)).c_str(),
               Ms(h.ValueAt(99.9)).c_str(), Ms(h.max()).c_str());
  std::fprintf(out, "  replies: %s\n", CodesText(s.codes, false).c_str());
  std::fprintf(out,
               "  rejected 4xx %llu, 5xx %llu; lost %llu, aborted %llu; sessions %llu, "
               "connect errors %llu, session errors %llu; errors %llu (allowed %lld)\n",
               (unsigned long long)s.rejected_4xx, (unsigned long long)s.rejected_5xx,
               (unsigned long long)s.lost, (unsigned long long)s.aborted,
               (unsigned long long)s.connections, (unsigned long long)s.connect_errors,
               (unsigned long long)s.session_errors, (unsigned long long)s.errors(),
               (long long)o.max_errors);
  if (s.quit_unanswered > 0) {
    std::fprintf(out, "  note: %llu sessions were closed by the server without a 221 to QUIT\n",
                 (unsigned long long)s.quit_unanswered);
  }
  if (!s.first_error.empty()) std::fprintf(out, "  first error: %s\n", s.first_error.c_str());
  if (r.timed_out) std::fprintf(out, "  stopped by --timeout %.1f s\n", o.timeout_s);
  if (r.interrupted) std::fprintf(out, "  interrupted by a signal\n");
  if (r.incomplete) std::fprintf(out, "  not every message was sent\n");
}

void PrintSinkSummary(FILE* out, const SinkOptions& o, const SinkStats& s, const SinkOutcome& r) {
  const double mps = PerSecond(s.messages, r.active_s);
  const double bps = PerSecond(s.bytes, r.active_s);
  if (o.common.json) {
    std::fprintf(out,
                 "{\"mode\":\"sink\",\"port\":%u,\"threads\":%u,\"elapsed_s\":%.6f,"
                 "\"active_s\":%.6f,\"messages\":%llu,\"messages_per_s\":%.1f,\"bytes\":%llu,"
                 "\"bytes_per_s\":%.1f,\"rejected\":%llu,\"connections\":%llu,\"refused\":%llu,"
                 "\"command_errors\":%llu,\"accept_errors\":%llu,\"file_errors\":%llu,"
                 "\"codes\":{%s},\"expect_met\":%s,\"interrupted\":%s,\"first_error\":%s}\n",
                 r.port, r.threads, r.elapsed_s, r.active_s, (unsigned long long)s.messages, mps,
                 (unsigned long long)s.bytes, bps, (unsigned long long)s.rejected,
                 (unsigned long long)s.connections, (unsigned long long)s.refused,
                 (unsigned long long)s.command_errors, (unsigned long long)s.accept_errors,
                 (unsigned long long)s.file_errors, CodesText(s.codes, true).c_str(),
                 r.expect_met ? "true" : "false", r.interrupted ? "true" : "false",
                 JsonString(s.first_error).c_str());
    return;
  }
  std::fprintf(out,
               "ringload sink: %llu messages accepted, %llu rejected in %.3f s active "
               "(%.3f s in all): %.1f msg/s, %.2f MB/s\n",
               (unsigned long long)s.messages, (unsigned long long)s.rejected, r.active_s,
               r.elapsed_s, mps, bps / 1e6);
  std::fprintf(out, "  replies: %s\n", CodesText(s.codes, false).c_str());
  std::fprintf(out,
               "  sessions %llu, refused %llu, command errors %llu, accept errors %llu, "
               "file errors %llu\n",
               (unsigned long long)s.connections, (unsigned long long)s.refused,
               (unsigned long long)s.command_errors, (unsigned long long)s.accept_errors,
               (unsigned long long)s.file_errors);
  if (!s.first_error.empty()) std::fprintf(out, "  first error: %s\n", s.first_error.c_str());
  if (!r.expect_met) {
    std::fprintf(out, "  expected %llu messages, got fewer\n", (unsigned long long)o.expect);
  }
}

}  // namespace ringmail::ringload
