// Randomised (deterministic seed) tests: the DATA scanner against a slow byte-by-byte
// reference, the command reader against a reference splitter, and whole sessions of random
// bytes fed in random slices, asserting that nothing crashes, that the invariants hold, and
// that the way bytes are sliced never changes what the machine does.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "listeners/esmtp/session_machine.h"
#include "listeners/esmtp/smtp_parser.h"

namespace ringmail::listeners::esmtp {
namespace {

using Rng = std::mt19937_64;
constexpr uint64_t kSeed = 0x5eed'2024'0003;
constexpr uint64_t kFuzzNowMs = 1700000000000;

size_t Uniform(Rng& rng, size_t lo, size_t hi) {  // inclusive
  return std::uniform_int_distribution<size_t>(lo, hi)(rng);
}

// Random cut points (sorted, within [0, size]).
std::vector<size_t> RandomCuts(Rng& rng, size_t size, size_t max_cuts) {
  std::vector<size_t> cuts(Uniform(rng, 0, max_cuts));
  for (size_t& c : cuts) c = Uniform(rng, 0, size);
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

std::vector<std::string_view> Slice(std::string_view input, const std::vector<size_t>& cuts) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  for (size_t cut : cuts) {
    pieces.push_back(input.substr(start, cut - start));
    start = cut;
  }
  pieces.push_back(input.substr(start));
  return pieces;
}

// ---------------------------------------------------------------------------------------
// DATA scanner vs. reference

struct DataResult {
  bool done = false;
  size_t consumed = 0;
  std::string body;
  BodyDefect defect = BodyDefect::kNone;
};

// The DATA rules written the slow, obvious way, one byte at a time.
DataResult ReferenceData(std::string_view in, const BodyOptions& options) {
  const bool normalize = options.bare_line_endings == BareLineEndings::kNormalize;
  std::string body;
  bool nul = false, bare_lf = false, bare_cr = false;
  bool line_start = true;
  bool lf_line = false;  // normalize: this line was started by a bare LF
  size_t i = 0;
  DataResult r;
  while (i < in.size()) {
    if (line_start && in[i] == '.') {
      if (in.substr(i, 3) == ".\r\n" && !lf_line) {
        r.done = true;
        r.consumed = i + 3;
        break;
      }
      if (lf_line && (in.substr(i, 3) == ".\r\n" || in.substr(i, 2) == ".\n")) {
        body += '.';  // a lone dot after a bare LF: content, never the end
      } else if (lf_line && i + 1 >= in.size()) {
        break;  // undecidable without more input
      }
      ++i;  // stuffing dot
      line_start = false;
      continue;
    }
    line_start = false;
    const char c = in[i];
    if (c == '\r') {
      if (i + 1 >= in.size()) break;  // undecidable without more input
      if (in[i + 1] == '\n') {
        body += "\r\n";
        i += 2;
        line_start = true;
        lf_line = false;
        continue;
      }
      body += normalize ? "\r\n" : "\r";
      bare_cr = bare_cr || !normalize;
      ++i;
      continue;
    }
    if (c == '\n') {
      body += normalize ? "\r\n" : "\n";
      bare_lf = bare_lf || !normalize;
      ++i;
      line_start = lf_line = normalize;  // normalize: a bare LF ends a line too
      continue;
    }
    if (c == '\0') nul = true;
    body += c;
    ++i;
  }
  const bool too_big = options.size_bytes_max != 0 && body.size() > options.size_bytes_max;
  r.defect = too_big   ? BodyDefect::kTooBig
             : nul     ? BodyDefect::kNul
             : bare_lf ? BodyDefect::kBareLf
             : bare_cr ? BodyDefect::kBareCr
                       : BodyDefect::kNone;
  r.body = r.defect == BodyDefect::kNone ? body : "";
  return r;
}

DataResult ScanSliced(std::string_view input, const std::vector<size_t>& cuts,
                      const BodyOptions& options) {
  core::Body body;
  BodyReader reader;
  reader.Begin(&body, options);
  DataResult r;
  size_t offset = 0;
  for (std::string_view piece : Slice(input, cuts)) {
    BodyReader::Result step = reader.FeedData(piece);
    if (step.done) {
      r.done = true;
      r.consumed = offset + step.consumed;
      break;
    }
    EXPECT_EQ(step.consumed, piece.size());
    offset += piece.size();
  }
  r.body = body.ToString();
  r.defect = reader.defect();
  return r;
}

std::string RandomBodyBytes(Rng& rng, size_t length) {
  // Heavy on the bytes that matter, with runs long enough for the vector path.
  static constexpr char kAlphabet[] = {'a', 'b', '.', '.', '\r', '\r', '\n', '\n', '\0', 'x'};
  std::string s;
  while (s.size() < length) {
    const size_t pick = Uniform(rng, 0, 12);
    if (pick < std::size(kAlphabet)) {
      s += kAlphabet[pick];
    } else if (pick == 10) {
      s += "\r\n.";
    } else if (pick == 11) {
      s += "\r\n..";
    } else {
      s += std::string(Uniform(rng, 1, 40), 'q');
    }
  }
  return s;
}

TEST(SmtpParserFuzzTest, DataScannerMatchesReferenceAtAnySlicing) {
  Rng rng(kSeed);
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string input = RandomBodyBytes(rng, Uniform(rng, 0, 300));
    if (Uniform(rng, 0, 3) != 0) input += "\r\n.\r\n";
    input += "TAIL";
    BodyOptions options;
    options.bare_line_endings =
        Uniform(rng, 0, 1) ? BareLineEndings::kNormalize : BareLineEndings::kReject;
    options.size_bytes_max = Uniform(rng, 0, 3) == 0 ? Uniform(rng, 1, 200) : 0;
    const DataResult expected = ReferenceData(input, options);
    const DataResult got = ScanSliced(input, RandomCuts(rng, input.size(), 6), options);
    ASSERT_EQ(got.done, expected.done) << "iteration " << iteration;
    if (!expected.done) continue;  // without an end the reference cannot settle a final CR
    ASSERT_EQ(got.consumed, expected.consumed) << "iteration " << iteration;
    ASSERT_EQ(got.defect, expected.defect) << "iteration " << iteration;
    ASSERT_EQ(got.body, expected.body) << "iteration " << iteration;
  }
}

// ---------------------------------------------------------------------------------------
// Command reader vs. reference

std::vector<std::string> ReferenceLines(std::string_view input) {
  std::vector<std::string> events;
  size_t start = 0;
  for (size_t lf = input.find('\n'); lf != std::string_view::npos;
       lf = input.find('\n', start)) {
    std::string_view line = input.substr(start, lf - start);
    if (lf + 1 - start > kCommandLineBytesMax) {
      events.push_back("LONG");
    } else {
      const bool cr = !line.empty() && line.back() == '\r';
      if (cr) line.remove_suffix(1);
      events.push_back("L:" + std::string(line));
    }
    start = lf + 1;
  }
  return events;
}

TEST(SmtpParserFuzzTest, CommandReaderMatchesReference) {
  Rng rng(kSeed + 1);
  for (int iteration = 0; iteration < 5000; ++iteration) {
    std::string input;
    const size_t lines = Uniform(rng, 0, 8);
    for (size_t i = 0; i < lines; ++i) {
      const size_t length = Uniform(rng, 0, 3) == 0 ? Uniform(rng, 500, 1500)
                                                     : Uniform(rng, 0, 40);
      for (size_t k = 0; k < length; ++k) input += static_cast<char>(Uniform(rng, 1, 255) % 256);
      input.erase(std::remove(input.end() - length, input.end(), '\n'), input.end());
      input += Uniform(rng, 0, 4) == 0 ? "\n" : "\r\n";
    }
    CommandLineReader reader;
    std::vector<std::string> events;
    for (std::string_view piece : Slice(input, RandomCuts(rng, input.size(), 10))) {
      size_t pos = 0;
      while (pos < piece.size()) {
        CommandLineReader::Event e = reader.Next(piece, &pos);
        if (e.kind == CommandLineReader::Kind::kLine) events.push_back("L:" + std::string(e.line));
        if (e.kind == CommandLineReader::Kind::kTooLong) events.push_back("LONG");
        ASSERT_NE(e.kind, CommandLineReader::Kind::kRunaway);
        ASSERT_LE(reader.buffered_bytes(), kCommandLineBytesMax);
      }
    }
    ASSERT_EQ(events, ReferenceLines(input)) << "iteration " << iteration;
  }
}

// ---------------------------------------------------------------------------------------
// Whole sessions

const char* const kFragments[] = {
    "EHLO client.example\r\n", "HELO h\r\n", "MAIL FROM:<a@b.example>\r\n",
    "MAIL FROM:<>\r\n", "MAIL FROM:<a@b.example> SIZE=50\r\n",
    "MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n", "MAIL FROM:<j\xc3\xb6@b.example> SMTPUTF8\r\n",
    "RCPT TO:<x@example.com>\r\n", "RCPT TO:<y@other.example>\r\n", "RCPT TO:<postmaster>\r\n",
    "RCPT TO:<x@example.com> NOTIFY=NEVER\r\n", "DATA\r\n", "RSET\r\n", "NOOP\r\n",
    "VRFY x\r\n", "HELP\r\n", "EXPN x\r\n", "STARTTLS\r\n", "QUIT\r\n", "BDAT 3\r\nabc",
    "BDAT 0 LAST\r\n", "BDAT 5 LAST\r\nhe\r\no", "BDAT 2\r\n\r\n", "BDAT zz\r\n",
    "hello world\r\n", ".\r\n", "..dot\r\n", "\r\n.\r\n", "\n.\n", "\r.\r", "\n", "\r",
    "line\n", "GET / HTTP/1.0\r\n", "\r\n", "FOO bar\r\n",
};

std::string RandomFragment(Rng& rng) {
  const size_t pick = Uniform(rng, 0, std::size(kFragments) + 1);
  if (pick < std::size(kFragments)) return kFragments[pick];
  if (pick == std::size(kFragments)) return std::string(Uniform(rng, 1, 700), 'L');
  std::string noise;
  for (size_t n = Uniform(rng, 1, 20); n > 0; --n) noise += static_cast<char>(rng() & 0xff);
  return noise;
}

// A plausible transaction (mostly valid, so that deep states are reached), to be mutated.
std::string RandomTransaction(Rng& rng) {
  std::string s = Uniform(rng, 0, 5) == 0 ? "MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"
                                          : "MAIL FROM:<a@b.example>\r\n";
  for (size_t n = Uniform(rng, 1, 3); n > 0; --n) {
    s += Uniform(rng, 0, 4) == 0 ? "RCPT TO:<y@other.example>\r\n" : "RCPT TO:<x@example.com>\r\n";
  }
  std::string body = RandomBodyBytes(rng, Uniform(rng, 0, 80));
  if (Uniform(rng, 0, 1) == 0) {
    s += "DATA\r\n" + body + "\r\n.\r\n";
    return s;
  }
  while (body.size() > 0) {  // BDAT chunks of random sizes
    const size_t n = Uniform(rng, 0, body.size());
    s += "BDAT " + std::to_string(n) + "\r\n" + body.substr(0, n);
    body.erase(0, n);
    if (Uniform(rng, 0, 3) == 0) break;
  }
  s += "BDAT " + std::to_string(body.size()) + " LAST\r\n" + body;
  return s;
}

std::string RandomSession(Rng& rng) {
  std::string s;
  if (Uniform(rng, 0, 3) == 0) {  // fragment soup
    for (size_t parts = Uniform(rng, 1, 30); parts > 0; --parts) s += RandomFragment(rng);
    return s;
  }
  s = Uniform(rng, 0, 5) == 0 ? "HELO h\r\n" : "EHLO client.example\r\n";
  for (size_t n = Uniform(rng, 1, 4); n > 0; --n) {
    std::string t = RandomTransaction(rng);
    if (Uniform(rng, 0, 2) == 0) {  // one mutation: insert, delete or flip a byte
      const size_t at = Uniform(rng, 0, t.size());
      switch (Uniform(rng, 0, 2)) {
        case 0: t.insert(at, RandomFragment(rng)); break;
        case 1: t.erase(at, Uniform(rng, 1, 8)); break;
        default: if (at < t.size()) t[at] = static_cast<char>(rng() & 0xff); break;
      }
    }
    s += t;
  }
  if (Uniform(rng, 0, 1) == 0) s += "QUIT\r\n";
  return s;
}

struct Outcome {
  std::string output;
  std::vector<std::string> bodies;
  bool closed = false;
};

// Drives one machine with synchronous slots and commits, checking invariants throughout.
class FuzzDriver {
 public:
  FuzzDriver(const SessionLimits& limits, const Policy& policy, Rng* rng)
      : limits_(limits), machine_(limits, policy, ids_), rng_(rng) {
    machine_.Start("192.0.2.9", 4000, "mx.fuzz");
    Pump();
  }

  void Feed(std::string_view bytes, bool allow_events) {
    if (allow_events && rng_ != nullptr && Uniform(*rng_, 0, 200) == 0) {
      if (Uniform(*rng_, 0, 1)) {
        machine_.Timeout();
      } else {
        machine_.Shutdown();
      }
      Pump();
    }
    while (!bytes.empty()) {
      const bool was_closed = machine_.closed();
      const size_t used = machine_.Feed(bytes, kFuzzNowMs);
      ASSERT_LE(used, bytes.size());
      if (was_closed) {
        ASSERT_EQ(used, bytes.size());
        ASSERT_FALSE(machine_.HasOutput());
      }
      Pump();
      ASSERT_LE(machine_.buffered_input_bytes(),
                limits_.pending_input_bytes_max + kCommandLineBytesMax);
      ASSERT_GT(used, 0u) << "with synchronous actions input must always progress";
      bytes.remove_prefix(used);
    }
  }

  void Pump() {
    for (int guard = 0; guard < 100000; ++guard) {
      while (std::optional<Action> a = machine_.TakeAction()) Execute(std::move(*a));
      if (machine_.CanContinue()) {
        machine_.Continue(kFuzzNowMs);
        continue;
      }
      if (!machine_.HasOutput()) return;
      const std::string out = machine_.TakeOutput();
      CheckReplies(out);
      outcome_.output += out;
    }
    FAIL() << "pump does not settle";
  }

  Outcome Finish() {
    outcome_.closed = machine_.closed();
    if (outcome_.closed) {
      EXPECT_EQ(slots_, 0);
    }
    EXPECT_LE(slots_, 1);
    return outcome_;
  }

 private:
  static void CheckReplies(std::string_view out) {
    ASSERT_GE(out.size(), 5u);
    ASSERT_EQ(out.substr(out.size() - 2), "\r\n");
    size_t start = 0;
    while (start < out.size()) {
      const size_t end = out.find("\r\n", start);
      ASSERT_NE(end, std::string_view::npos);
      const std::string_view line = out.substr(start, end - start);
      ASSERT_GE(line.size(), 4u);
      ASSERT_TRUE(line[0] >= '2' && line[0] <= '5') << line;
      ASSERT_TRUE(line[3] == ' ' || line[3] == '-') << line;
      ASSERT_LE(line.size(), 512u);
      for (char c : line) ASSERT_TRUE(c >= 0x20 && c < 0x7f) << "reply echoes raw bytes";
      start = end + 2;
    }
  }

  void Execute(Action action) {
    switch (action.kind) {
      case Action::Kind::kNeedTransactionSlot:
        ASSERT_EQ(slots_, 0);
        ++slots_;
        machine_.SlotGranted();
        break;
      case Action::Kind::kReleaseTransactionSlot:
        --slots_;
        ASSERT_GE(slots_, 0);
        break;
      case Action::Kind::kCommit: {
        ASSERT_EQ(slots_, 1);
        const core::Message& m = *action.message;
        ASSERT_FALSE(m.envelope.recipients.empty());
        ASSERT_LE(m.body.size(), limits_.max_message_size_bytes);
        ASSERT_EQ(m.received_header.rfind("Received: from ", 0), 0u);
        if (m.envelope.mail_params.find("BINARYMIME") == std::string::npos) {
          const std::string body = m.body.ToString();
          for (size_t i = 0; i < body.size(); ++i) {  // canonical CRLF, no NUL
            ASSERT_NE(body[i], '\0');
            if (body[i] == '\n') {
              ASSERT_TRUE(i > 0 && body[i - 1] == '\r');
            }
            if (body[i] == '\r') {
              ASSERT_TRUE(i + 1 < body.size() && body[i + 1] == '\n');
            }
          }
        }
        outcome_.bodies.push_back(m.body.ToString());
        machine_.CommitDone(outcome_.bodies.size() % 7 == 0 ? absl::UnavailableError("x")
                                                           : absl::OkStatus());
        break;
      }
      case Action::Kind::kStartTls:
        machine_.TlsEstablished();
        break;
      case Action::Kind::kClose:
        ASSERT_TRUE(machine_.closed());
        break;
      case Action::Kind::kRefused:
        ASSERT_NE(action.message, nullptr);
        ASSERT_TRUE(action.message->body.empty());
        ASSERT_GE(GetReply(action.refusal).code, 500);
        break;
    }
  }

  SessionLimits limits_;
  core::MessageIdGenerator ids_{3, 99};
  SessionMachine machine_;
  Rng* rng_;
  int slots_ = 0;
  Outcome outcome_;
};

TEST(SmtpParserFuzzTest, RandomSessionsKeepInvariantsAndIgnoreSlicing) {
  PolicyOptions options;
  options.relay_domains = {"example.com"};
  const Policy policy = Policy::Create(options).value();
  // Bytes after STARTTLS that arrive in a later read are (in real life) TLS records, so
  // slicing legitimately matters there: STARTTLS is exercised in the third run only.
  options.starttls_offered = true;
  const Policy tls_policy = Policy::Create(options).value();
  SessionLimits limits;
  limits.max_message_size_bytes = 64;
  limits.max_recipients = 2;
  limits.max_errors = 1000;  // let sessions run long
  limits.pending_input_bytes_max = 256;
  Rng rng(kSeed + 2);
  size_t commits = 0;
  size_t closed = 0;
  for (int iteration = 0; iteration < 5000; ++iteration) {
    const std::string session = RandomSession(rng);
    Outcome whole;
    {
      FuzzDriver driver(limits, policy, nullptr);
      driver.Feed(session, false);
      whole = driver.Finish();
    }
    Outcome sliced;
    {
      FuzzDriver driver(limits, policy, nullptr);
      for (std::string_view piece : Slice(session, RandomCuts(rng, session.size(), 12))) {
        driver.Feed(piece, false);
      }
      sliced = driver.Finish();
    }
    ASSERT_EQ(sliced.output, whole.output) << "iteration " << iteration;
    ASSERT_EQ(sliced.bodies, whole.bodies) << "iteration " << iteration;
    ASSERT_EQ(sliced.closed, whole.closed) << "iteration " << iteration;
    commits += whole.bodies.size();
    closed += whole.closed;
    {  // Same bytes with timeouts and shutdowns injected: only the invariants must hold.
      FuzzDriver driver(limits, tls_policy, &rng);
      for (std::string_view piece : Slice(session, RandomCuts(rng, session.size(), 12))) {
        driver.Feed(piece, true);
      }
      driver.Finish();
    }
  }
  // The generator must reach deep states, not only bounce off syntax errors.
  std::printf("fuzz: %zu messages committed, %zu sessions closed\n", commits, closed);
  EXPECT_GT(commits, 500u);
  EXPECT_GT(closed, 500u);
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
