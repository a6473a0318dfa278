// ringmail-spool — inspect a spool directory offline: list its messages, show one (envelope,
// recipient states, history, content, like Postfix's postcat), verify every segment and record.
//
//   ringmail-spool list [--all] SPOOL_DIR
//   ringmail-spool show [--body] SPOOL_DIR MESSAGE_ID
//   ringmail-spool verify [--quiet] SPOOL_DIR
//
// Read-only: it never quarantines, seals or removes anything (it runs the recovery scan with
// ReadOnlyRecoveryOptions), so it is safe next to a running daemon — though a segment being
// appended to may then show a torn tail that is only a write in progress.
// Exit status: 0 fine; 1 not found, unreadable, or (verify) damage found; 2 usage error.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/message.h"
#include "spool/recovery.h"
#include "spool/segment_reader.h"

namespace ringmail::spool {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: ringmail-spool list [--all] SPOOL_DIR\n"
    "       ringmail-spool show [--body] SPOOL_DIR MESSAGE_ID\n"
    "       ringmail-spool verify [--quiet] SPOOL_DIR\n"
    "\n"
    "  list    live messages: id, received, size, recipients, state, sender\n"
    "          --all   include messages that are done but still on disk\n"
    "  show    envelope, recipient states, state history and message headers\n"
    "          --body  print the whole content (Received: header and body)\n"
    "  verify  check every segment and record; exit 1 on damage other than the\n"
    "          torn tail of a loop's newest segment (an interrupted, unacknowledged write);\n"
    "          interrupted recycles (<seq>.recycle files) are listed, not damage\n"
    "          --quiet print only problems and the summary\n";

int Usage(std::string_view error) {
  if (!error.empty()) std::fprintf(stderr, "ringmail-spool: %.*s\n", static_cast<int>(error.size()),
                                   error.data());
  std::fputs(kUsage, stderr);
  return kExitUsage;
}

struct Args {
  std::string command;
  std::vector<std::string> flags;
  std::vector<std::string> positional;

  bool Has(std::string_view flag) const {
    for (const std::string& f : flags) {
      if (f == flag) return true;
    }
    return false;
  }
};

std::string FormatTime(uint64_t ms) {
  if (ms == 0) return "-";
  time_t seconds = static_cast<time_t>(ms / 1000);
  struct tm tm;
  if (gmtime_r(&seconds, &tm) == nullptr) return absl::StrCat(ms, "ms");
  return absl::StrFormat("%04d-%02d-%02d %02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         static_cast<int>(ms % 1000));
}

std::string_view StateName(core::RecipientState s) {
  switch (s) {
    case core::RecipientState::kPending: return "pending";
    case core::RecipientState::kDelivered: return "delivered";
    case core::RecipientState::kDeferred: return "deferred";
    case core::RecipientState::kFailed: return "failed";
  }
  return "unknown";
}

// "done", or "queued"/"deferred" with how many recipients are final.
std::string MessageState(const core::Envelope& env, bool done) {
  if (done) return "done";
  size_t final = 0, deferred = 0;
  for (const core::Recipient& r : env.recipients) {
    if (r.state == core::RecipientState::kDelivered || r.state == core::RecipientState::kFailed) {
      ++final;
    } else if (r.state == core::RecipientState::kDeferred) {
      ++deferred;
    }
  }
  return absl::StrCat(deferred > 0 ? "deferred" : "queued", " ", final, "/",
                      env.recipients.size(), " final");
}

std::string Angle(std::string_view address) { return "<" + std::string(address) + ">"; }

absl::StatusOr<RecoveryResult> Scan(const std::string& dir, bool keep_done,
                                    std::function<void(SegmentId, const ScannedRecord&)> obs) {
  RecoveryOptions options = ReadOnlyRecoveryOptions();
  options.keep_done = keep_done;
  options.observer = std::move(obs);
  return RecoverSpool(dir, options);
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "ringmail-spool: %s\n", std::string(status.message()).c_str());
  return kExitFailure;
}

void PrintListRow(const RecoveredMessage& m, bool done) {
  const CommittedMessage& c = m.message;
  std::printf("%s  %-24s %10llu %6zu  %-20s %s\n", c.id.ToHex().c_str(),
              FormatTime(c.received_ms).c_str(),
              static_cast<unsigned long long>(c.location.content_length),
              c.envelope.recipients.size(), MessageState(c.envelope, done).c_str(),
              Angle(c.envelope.mail_from).c_str());
}

int List(const Args& args) {
  if (args.positional.size() != 1) return Usage("list takes one SPOOL_DIR");
  bool all = args.Has("--all");
  absl::StatusOr<RecoveryResult> r = Scan(args.positional[0], all, nullptr);
  if (!r.ok()) return Fail(r.status());
  std::printf("%-32s  %-24s %10s %6s  %-20s %s\n", "ID", "RECEIVED (UTC)", "SIZE", "RCPTS",
              "STATE", "SENDER");
  for (const RecoveredMessage& m : r->live) PrintListRow(m, false);
  for (const RecoveredMessage& m : r->done) PrintListRow(m, true);
  std::printf("-- %zu live message%s", r->live.size(), r->live.size() == 1 ? "" : "s");
  if (all) std::printf(", %zu done", r->done.size());
  std::printf("\n");
  return kExitOk;
}

struct HistoryLine {
  SegmentId segment;
  ScannedRecord record;
};

void PrintEnvelope(const CommittedMessage& c, bool done) {
  const SpoolLocation& at = c.location;
  std::printf("*** ENVELOPE ***\n");
  std::printf("message_id: %s\n", c.id.ToHex().c_str());
  std::printf("state: %s\n", MessageState(c.envelope, done).c_str());
  std::printf("received: %s\n", FormatTime(c.received_ms).c_str());
  std::printf("location: %s record at %llu (%llu bytes), content at %llu (%llu bytes)\n",
              at.segment.ToString().c_str(), static_cast<unsigned long long>(at.record_offset),
              static_cast<unsigned long long>(at.record_bytes),
              static_cast<unsigned long long>(at.content_offset),
              static_cast<unsigned long long>(at.content_length));
  std::printf("sender: %s\n", Angle(c.envelope.mail_from).c_str());
  if (!c.envelope.mail_params.empty()) {
    std::printf("sender_params: %s\n", c.envelope.mail_params.c_str());
  }
  std::printf("helo: %s\n", c.envelope.helo.c_str());
  std::printf("peer: %s\n", c.envelope.peer.c_str());
  for (size_t i = 0; i < c.envelope.recipients.size(); ++i) {
    const core::Recipient& r = c.envelope.recipients[i];
    std::printf("recipient %zu: %s %s attempts=%u", i, Angle(r.address).c_str(),
                std::string(StateName(r.state)).c_str(), r.attempts);
    if (r.state == core::RecipientState::kDeferred) {
      std::printf(" next=%s", FormatTime(r.next_attempt_ms).c_str());
    }
    if (!r.params.empty()) std::printf(" params=%s", r.params.c_str());
    std::printf("\n");
  }
}

void PrintHistory(const std::vector<HistoryLine>& history) {
  std::printf("*** HISTORY ***\n");
  for (const HistoryLine& h : history) {
    std::string where = absl::StrCat(h.segment.ToString(), "@", h.record.offset);
    if (const auto* u = std::get_if<RecipientUpdate>(&h.record.meta)) {
      std::printf("%s %s RECIPIENT %u %s attempts=%u%s%s\n", FormatTime(u->changed_ms).c_str(),
                  where.c_str(), u->recipient_index, std::string(StateName(u->state)).c_str(),
                  u->attempts, u->reply.empty() ? "" : ": ", u->reply.c_str());
    } else if (const auto* d = std::get_if<DoneMark>(&h.record.meta)) {
      std::printf("%s %s DONE\n", FormatTime(d->done_ms).c_str(), where.c_str());
    } else if (const auto* m = std::get_if<MessageMeta>(&h.record.meta)) {
      std::printf("%s %s MESSAGE\n", FormatTime(m->received_ms).c_str(), where.c_str());
    }
  }
}

// The header section: everything up to and including the first empty line.
std::string_view HeaderSection(std::string_view content) {
  size_t crlf = content.find("\r\n\r\n");
  size_t lf = content.find("\n\n");
  size_t end = std::min(crlf == std::string_view::npos ? content.size() : crlf + 4,
                        lf == std::string_view::npos ? content.size() : lf + 2);
  return content.substr(0, end);
}

int PrintContent(const std::string& dir, const CommittedMessage& c, bool body) {
  SegmentReader reader;
  SegmentOpenStatus open = reader.Open(SegmentPath(dir, c.location.segment));
  if (open.result != SegmentOpenResult::kOk) {
    return Fail(absl::DataLossError("cannot reopen segment: " + open.detail));
  }
  std::string content;
  absl::Status read =
      reader.ReadAt(c.location.content_offset, c.location.content_length, &content);
  if (!read.ok()) return Fail(read);
  std::printf("*** MESSAGE CONTENTS ***\n");
  std::string_view shown = body ? std::string_view(content) : HeaderSection(content);
  std::fwrite(shown.data(), 1, shown.size(), stdout);
  if (!shown.empty() && shown.back() != '\n') std::printf("\n");
  if (shown.size() < content.size()) {
    std::printf("[body: %zu bytes; --body prints it]\n", content.size() - shown.size());
  }
  std::printf("*** END OF MESSAGE ***\n");
  return kExitOk;
}

int Show(const Args& args) {
  if (args.positional.size() != 2) return Usage("show takes SPOOL_DIR and MESSAGE_ID");
  core::MessageId id;
  if (!core::MessageId::FromHex(args.positional[1], &id)) {
    return Usage(absl::StrCat("not a message id (32 hex digits): ", args.positional[1]));
  }
  const std::string& dir = args.positional[0];
  std::vector<HistoryLine> history;
  absl::StatusOr<RecoveryResult> r =
      Scan(dir, true, [&history, id](SegmentId segment, const ScannedRecord& rec) {
        const core::MessageId* about = nullptr;
        if (const auto* m = std::get_if<MessageMeta>(&rec.meta)) about = &m->id;
        if (const auto* u = std::get_if<RecipientUpdate>(&rec.meta)) about = &u->id;
        if (const auto* d = std::get_if<DoneMark>(&rec.meta)) about = &d->id;
        if (about != nullptr && *about == id) history.push_back(HistoryLine{segment, rec});
      });
  if (!r.ok()) return Fail(r.status());
  const RecoveredMessage* found = nullptr;
  bool done = false;
  for (const RecoveredMessage& m : r->live) {
    if (m.message.id == id) found = &m;
  }
  for (const RecoveredMessage& m : r->done) {
    if (m.message.id == id) found = &m, done = true;
  }
  if (found == nullptr) {
    std::fprintf(stderr, "ringmail-spool: message %s not found in %s\n", id.ToHex().c_str(),
                 dir.c_str());
    return kExitFailure;
  }
  PrintEnvelope(found->message, done);
  PrintHistory(history);
  return PrintContent(dir, found->message, args.Has("--body"));
}

// Prints one segment's line; returns whether it is a problem.
bool ReportSegment(const SegmentReport& s, bool quiet) {
  const SegmentEndInfo& end = s.end;
  bool problem = false;
  std::string what;
  if (s.empty) {
    what = "empty (header never written)";
  } else if (end.kind == SegmentEnd::kClean) {
    what = "clean end";
  } else {
    what = absl::StrCat(std::string(SegmentEndName(end.kind)), " at offset ", end.offset);
    if (end.cause.error != RecordError::kNone) {
      absl::StrAppend(&what, " (", std::string(RecordErrorName(end.cause.error)),
                      *end.cause.detail ? ": " : "", end.cause.detail, ")");
    }
    if (!end.detail.empty()) absl::StrAppend(&what, "; ", end.detail);
    if (end.kind == SegmentEnd::kTornTail && s.newest_in_loop) {
      absl::StrAppend(&what, " — interrupted write of the newest segment, never acknowledged");
    } else {
      problem = true;
      if (end.kind == SegmentEnd::kTornTail) absl::StrAppend(&what, " — not the newest segment");
    }
  }
  if (!quiet || problem) {
    std::printf("%s%s: %llu records, %llu of %llu bytes valid, %s\n", problem ? "PROBLEM " : "",
                s.path.c_str(), static_cast<unsigned long long>(s.records),
                static_cast<unsigned long long>(s.valid_bytes),
                static_cast<unsigned long long>(s.file_bytes), what.c_str());
  }
  return problem;
}

// <seq>.recycle files: a drained segment caught while it was being turned into the spare
// segment <seq> (spool/segment_writer.h Recycle). Neither damage nor messages: the daemon's
// recovery removes them unread; this read-only scan only names them. Part of the summary, so
// printed with --quiet too.
void ReportRecycleLeftovers(const std::vector<RecycleLeftover>& leftovers) {
  if (leftovers.empty()) return;
  std::string line = absl::StrCat(leftovers.size(), " interrupted recycle(s): ");
  for (size_t i = 0; i < leftovers.size(); ++i) {
    absl::StrAppend(&line, i == 0 ? "" : ", ", leftovers[i].path, " (would become segment ",
                    leftovers[i].id.ToString(), ")");
  }
  line += " — not damage, no messages; the daemon's recovery removes them";
  std::printf("%s\n", line.c_str());
}

int Verify(const Args& args) {
  if (args.positional.size() != 1) return Usage("verify takes one SPOOL_DIR");
  bool quiet = args.Has("--quiet");
  absl::StatusOr<RecoveryResult> r = Scan(args.positional[0], false, nullptr);
  if (!r.ok()) return Fail(r.status());
  const RecoveryReport& report = r->report;
  size_t problems = 0;
  for (const SegmentReport& s : report.segments) problems += ReportSegment(s, quiet);
  for (const QuarantinedSegment& q : report.quarantined) {
    std::printf("PROBLEM %s: unreadable, would be quarantined: %s\n", q.path.c_str(),
                q.reason.c_str());
    ++problems;
  }
  if (report.inconsistencies > 0) {
    std::printf("PROBLEM %llu inconsistent records (recipient index out of range, or copies "
                "of a message that disagree)\n",
                static_cast<unsigned long long>(report.inconsistencies));
    ++problems;
  }
  for (const std::string& name : report.ignored) {
    if (!quiet) std::printf("note: ignored %s (not a spool file)\n", name.c_str());
  }
  ReportRecycleLeftovers(report.recycle_leftovers);
  std::printf("%s\n", report.Summary().c_str());
  std::printf("%s\n", problems == 0 ? "OK" : absl::StrCat("DAMAGED: ", problems,
                                                          " problem(s)").c_str());
  return problems == 0 ? kExitOk : kExitFailure;
}

int Main(int argc, char** argv) {
  if (argc < 2) return Usage("missing command");
  Args args;
  args.command = argv[1];
  if (args.command == "-h" || args.command == "--help" || args.command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    (a.size() > 1 && a[0] == '-' ? args.flags : args.positional).emplace_back(std::string(a));
  }
  std::vector<std::string_view> allowed;
  if (args.command == "list") allowed = {"--all"};
  else if (args.command == "show") allowed = {"--body"};
  else if (args.command == "verify") allowed = {"--quiet"};
  else return Usage(absl::StrCat("unknown command: ", args.command));
  for (const std::string& f : args.flags) {
    if (std::find(allowed.begin(), allowed.end(), f) == allowed.end()) {
      return Usage(absl::StrCat("unknown option for ", args.command, ": ", f));
    }
  }
  if (args.command == "list") return List(args);
  if (args.command == "show") return Show(args);
  return Verify(args);
}

}  // namespace
}  // namespace ringmail::spool

int main(int argc, char** argv) { return ringmail::spool::Main(argc, argv); }
