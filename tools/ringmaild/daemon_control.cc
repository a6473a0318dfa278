// The daemon's side of the control socket: one handler per `ringctl` command. Runs on the
// master loop; what lives on other loops is gathered by posting to each of them.
#include <filesystem>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "config/diff.h"
#include "config/render.h"
#include "core/log.h"
#include "tools/ringmaild/daemon.h"

namespace ringmail::daemon {
namespace {

using control::Response;

Response Ok(std::string body) { return Response{true, std::move(body)}; }
Response Err(std::string body) { return Response{false, std::move(body) + "\n"}; }

std::string Json(std::string_view s) {
  std::string out;
  core::AppendJsonString(&out, s);
  return out;
}

}  // namespace

absl::Status Daemon::StartControl() {
  control::ControlListener::Options o;
  o.socket_paths = config_->control.socket_paths;
  if (o.socket_paths.empty()) return absl::OkStatus();
  if (config_->control.max_connections > 0) o.max_connections = config_->control.max_connections;
  for (const std::string& path : o.socket_paths) {
    std::string dir = path.substr(0, path.rfind('/'));
    if (dir != path && !dir.empty()) std::filesystem::create_directories(dir);
  }
  control_ = std::make_unique<control::ControlListener>(
      loops_->master(), o, [this](const control::Request& r, Reply reply) {
        HandleControl(r, std::move(reply));
      });
  return control_->Listen();
}

Daemon::LoopSnapshot Daemon::SnapshotOf(core::Loop& loop) {
  LoopSnapshot s;
  s.name = loop.name();
  s.cpu = loop.options().cpu;
  s.loop = loop.stats();
  for (const auto& parts : parts_) {  // parts_ is fixed after start-up: read-only here
    if (parts->loop != &loop) continue;
    if (parts->esmtp) {
      s.esmtp_sessions = parts->esmtp->session_count();
      s.esmtp = parts->esmtp->counters();
    }
    if (parts->spool) s.spool = parts->spool->stats();
  }
  return s;
}

void Daemon::GatherLoops(absl::AnyInvocable<void(std::vector<LoopSnapshot>)> done) {
  struct Gather {
    std::vector<LoopSnapshot> snapshots;
    size_t left = 0;
    absl::AnyInvocable<void(std::vector<LoopSnapshot>)> done;
  };
  std::vector<core::Loop*> loops = loops_->all_loops();
  auto g = std::make_shared<Gather>();
  g->snapshots.resize(loops.size());
  g->left = loops.size();
  g->done = std::move(done);
  core::Loop& master = loops_->master();
  for (size_t i = 0; i < loops.size(); ++i) {
    core::Loop* loop = loops[i];
    auto finish_one = [g](size_t index, LoopSnapshot snap) {
      g->snapshots[index] = std::move(snap);
      if (--g->left == 0) g->done(std::move(g->snapshots));
    };
    if (loop == &master) {
      finish_one(i, SnapshotOf(master));
      continue;
    }
    // The Daemon outlives every loop; a stopped or full loop reports an empty snapshot.
    core::PostResult posted = loop->Post([this, loop, i, g, &master, finish_one] {
      LoopSnapshot snap = SnapshotOf(*loop);
      if (master.Post([snap = std::move(snap), i, finish_one]() mutable {
            finish_one(i, std::move(snap));
          }) != core::PostResult::kOk) {
        core::LogWarning("control: master inbox full; a snapshot was lost");
      }
    });
    if (posted != core::PostResult::kOk) {
      finish_one(i, LoopSnapshot{loop->name(), -1, {}, 0, {}, {}});
    }
  }
}

void Daemon::HandleControl(const control::Request& request, Reply reply) {
  const std::vector<std::string>& w = request.words;
  const bool json = request.json;
  auto is = [&w](std::initializer_list<const char*> words) {
    if (w.size() < words.size()) return false;
    size_t i = 0;
    for (const char* word : words) {
      if (w[i++] != word) return false;
    }
    return true;
  };
  if (is({"summary"}) || is({"eventloop", "list"}) || is({"metrics"})) {
    const std::string what = w[0];
    GatherLoops([this, what, json, reply = std::move(reply)](
                    std::vector<LoopSnapshot> loops) mutable {
      if (what == "summary") std::move(reply)(Summary(loops, json));
      else if (what == "eventloop") std::move(reply)(EventLoopList(loops, json));
      else std::move(reply)(Metrics(loops));
    });
    return;
  }
  Response r;
  if (is({"threadpool", "list"})) {
    r = ThreadPoolList(json);
  } else if (is({"threadpool", "set"})) {
    r = ThreadPoolSet(w);
  } else if (is({"license", "show"})) {
    r = LicenseShow(json);
  } else if (is({"config", "show"})) {
    r = ConfigShow(w, json);
  } else if (is({"config", "check"})) {
    r = ConfigCheck(w);
  } else if (is({"config", "reload"})) {
    r = Reload(json);
  } else if (is({"log", "reopen"})) {
    reception_log_->Reopen();
    r = Ok("log files reopened\n");
  } else if (is({"shutdown"})) {
    const bool now = w.size() > 1 && w[1] == "--now";
    std::move(reply)(Ok(now ? "stopping now\n" : "draining, then stopping\n"));
    // After the reply has been queued: the listener stays until the loop stops.
    loops_->master().Defer([this, now] { now ? StopEverything() : BeginDrain(); });
    return;
  } else if (is({"queue"}) || is({"domain"}) || is({"message"})) {
    r = Err(absl::StrCat("'", w[0], "' needs outbound delivery, which is not running "
                         "in this build yet"));
  } else {
    r = Err(absl::StrCat("unknown command '", absl::StrJoin(w, " "),
                         "'; try: summary, config show|check|reload, threadpool list|set, "
                         "eventloop list, license show, metrics, log reopen, shutdown"));
  }
  std::move(reply)(std::move(r));
}

Response Daemon::Summary(const std::vector<LoopSnapshot>& loops, bool json) {
  uint64_t conns = 0, accepted = 0, messages = 0, bytes = 0, commit_errors = 0, batches = 0;
  for (const LoopSnapshot& s : loops) {
    conns += s.esmtp_sessions;
    accepted += s.esmtp.accepted;
    messages += s.esmtp.messages;
    bytes += s.esmtp.message_bytes;
    commit_errors += s.esmtp.commit_errors;
    batches += s.spool.batches;
  }
  const uint64_t uptime_s = (loops_->master().now_ms() - started_ms_) / 1000;
  if (json) {
    return Ok(absl::StrCat(
        "{\"uptime_s\":", uptime_s, ",\"loops\":", loops.size(), ",\"connections\":", conns,
        ",\"connections_accepted\":", accepted, ",\"messages_received\":", messages,
        ",\"bytes_received\":", bytes, ",\"commit_errors\":", commit_errors,
        ",\"spool_batches\":", batches, ",\"messages_delivered\":0,\"messages_deferred\":0,"
        "\"messages_bounced\":0,\"config_generation\":", generations_.generation(),
        ",\"reloads\":", reloads_, "}\n"));
  }
  return Ok(control::FormatTable(
      {"what", "value"},
      {{"uptime", absl::StrCat(uptime_s, "s")},
       {"loops", absl::StrCat(loops.size())},
       {"connections", absl::StrCat(conns)},
       {"connections accepted", absl::StrCat(accepted)},
       {"messages received", absl::StrCat(messages)},
       {"bytes received", absl::StrCat(bytes)},
       {"spool commit errors", absl::StrCat(commit_errors)},
       {"spool batches", absl::StrCat(batches)},
       {"config generation", absl::StrCat(generations_.generation())}}));
}

Response Daemon::EventLoopList(const std::vector<LoopSnapshot>& loops, bool json) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> items;
  for (const LoopSnapshot& s : loops) {
    rows.push_back({s.name, s.cpu >= 0 ? absl::StrCat(s.cpu) : "-",
                    absl::StrCat(s.esmtp_sessions), absl::StrCat(s.loop.turns),
                    absl::StrCat(s.loop.completions), absl::StrCat(s.loop.sqes_submitted),
                    absl::StrCat(s.loop.in_flight)});
    items.push_back(absl::StrCat("{\"name\":", Json(s.name), ",\"cpu\":", s.cpu,
                                 ",\"connections\":", s.esmtp_sessions, ",\"turns\":",
                                 s.loop.turns, ",\"completions\":", s.loop.completions,
                                 ",\"sqes\":", s.loop.sqes_submitted, ",\"in_flight\":",
                                 s.loop.in_flight, "}"));
  }
  if (json) return Ok(absl::StrCat("[", absl::StrJoin(items, ","), "]\n"));
  return Ok(control::FormatTable(
      {"loop", "cpu", "connections", "turns", "completions", "sqes", "in_flight"}, rows));
}

Response Daemon::Metrics(const std::vector<LoopSnapshot>& loops) {
  std::string out;
  auto counter = [&](const char* name, const char* help, auto field) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n");
    for (const LoopSnapshot& s : loops) {
      absl::StrAppend(&out, name, "{loop=\"", s.name, "\"} ", field(s), "\n");
    }
  };
  counter("ringmail_esmtp_connections_accepted_total", "Inbound connections accepted.",
          [](const LoopSnapshot& s) { return s.esmtp.accepted; });
  counter("ringmail_esmtp_connections_refused_total", "Connections refused by limits.",
          [](const LoopSnapshot& s) { return s.esmtp.refused_busy + s.esmtp.refused_ip; });
  counter("ringmail_messages_received_total", "Messages made durable and acknowledged.",
          [](const LoopSnapshot& s) { return s.esmtp.messages; });
  counter("ringmail_message_bytes_received_total", "Bytes of received messages.",
          [](const LoopSnapshot& s) { return s.esmtp.message_bytes; });
  counter("ringmail_spool_commit_errors_total", "Messages whose spool commit failed.",
          [](const LoopSnapshot& s) { return s.esmtp.commit_errors; });
  counter("ringmail_spool_batches_total", "Group-commit batches (one fdatasync each).",
          [](const LoopSnapshot& s) { return s.spool.batches; });
  counter("ringmail_loop_completions_total", "Ring completions handled.",
          [](const LoopSnapshot& s) { return s.loop.completions; });
  absl::StrAppend(&out, "# HELP ringmail_esmtp_connections Open inbound connections.\n",
                  "# TYPE ringmail_esmtp_connections gauge\n");
  for (const LoopSnapshot& s : loops) {
    absl::StrAppend(&out, "ringmail_esmtp_connections{loop=\"", s.name, "\"} ",
                    s.esmtp_sessions, "\n");
  }
  absl::StrAppend(&out, "# HELP ringmail_threadpool_queued Jobs waiting in a thread pool.\n",
                  "# TYPE ringmail_threadpool_queued gauge\n");
  for (const core::ThreadPoolStats& t : thread_pools_->ListStats()) {
    absl::StrAppend(&out, "ringmail_threadpool_queued{pool=\"", t.name, "\"} ", t.queued, "\n");
  }
  return Ok(out);
}

Response Daemon::ThreadPoolList(bool json) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> items;
  for (const core::ThreadPoolStats& t : thread_pools_->ListStats()) {
    rows.push_back({t.name, absl::StrCat(t.concurrency), absl::StrCat(t.busy),
                    absl::StrCat(t.queued), absl::StrCat(t.backlog), absl::StrCat(t.completed)});
    items.push_back(absl::StrCat("{\"name\":", Json(t.name), ",\"concurrency\":", t.concurrency,
                                 ",\"busy\":", t.busy, ",\"queued\":", t.queued,
                                 ",\"backlog\":", t.backlog, ",\"completed\":", t.completed,
                                 "}"));
  }
  if (json) return Ok(absl::StrCat("[", absl::StrJoin(items, ","), "]\n"));
  return Ok(control::FormatTable(
      {"pool", "concurrency", "busy", "queued", "backlog", "completed"}, rows));
}

Response Daemon::ThreadPoolSet(const std::vector<std::string>& w) {
  uint32_t n = 0;
  if (w.size() != 5 || w[3] != "concurrency" || !absl::SimpleAtoi(w[4], &n)) {
    return Err("usage: threadpool set NAME concurrency N");
  }
  absl::Status s = thread_pools_->SetConcurrency(w[2], n);
  if (!s.ok()) return Err(std::string(s.message()));
  return Ok(absl::StrCat("thread pool ", w[2], ": concurrency ", n, "\n"));
}

Response Daemon::LicenseShow(bool json) {
  if (json) {
    return Ok(absl::StrCat("{\"valid\":", license_.valid ? "true" : "false",
                           ",\"licensed_concurrency\":", license_.licensed_concurrency,
                           ",\"summary\":", Json(license_.summary), ",\"error\":",
                           Json(license_.error), "}\n"));
  }
  return Ok(absl::StrCat(license_.summary, "\n"));
}

}  // namespace ringmail::daemon
