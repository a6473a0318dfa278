// The daemon's side of the control socket: one handler per `ringctl` command. Runs on the
// master loop; what lives on other loops is gathered by posting to each of them.
#include <filesystem>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/utf8.h"
#include "config/diff.h"
#include "config/render.h"
#include "core/log.h"
#include "delivery/routes.h"
#include "tools/ringmaild/daemon.h"

namespace ringmail::daemon {
namespace {

using control::Response;

Response Ok(std::string body) { return Response{true, std::move(body)}; }
// An error may quote what the client sent (an unknown command's words): shown escaped
// where it is not UTF-8 text, for the terminal and the --json reply it reaches.
Response Err(std::string body) {
  return Response{false, EscapeForDisplay(body, /*keep_newlines=*/true) + "\n"};
}

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
    if (dir == path || dir.empty()) continue;
    std::error_code ec;
    // A directory made here belongs to the daemon and goes to `user` with the socket.
    if (std::filesystem::create_directories(dir, ec)) control_dirs_created_.push_back(dir);
  }
  control_ = std::make_unique<control::ControlListener>(
      loops_->master(), o, [this](const control::Request& r, Reply reply) {
        HandleControl(r, std::move(reply));
      });
  return control_->Listen();
}

Daemon::LoopSnapshot Daemon::SnapshotOf(core::Loop& loop, bool with_domains) {
  LoopSnapshot s;
  s.name = loop.name();
  s.cpu = loop.options().cpu;
  s.loop = loop.stats();
  for (const auto& parts : parts_) {  // parts_ is fixed after start-up: read-only here
    if (parts->loop != &loop) continue;
    if (parts->esmtp) {
      s.esmtp_sessions = parts->esmtp->session_count();
      s.esmtp_waiting = parts->esmtp->waiting_for_slot();
      s.esmtp = parts->esmtp->counters();
    }
    if (parts->spool) s.spool = parts->spool->stats();
    if (parts->ledger) s.ledger = parts->ledger->stats();
  }
  for (size_t i = 0; i < topology_.delivery_loops.size(); ++i) {
    if (topology_.delivery_loops[i] != &loop || topology_.engines[i] == nullptr) continue;
    s.engine = topology_.engines[i]->stats();
    if (with_domains) s.domains = topology_.engines[i]->QueueSummary();
  }
  return s;
}

void Daemon::GatherLoops(absl::AnyInvocable<void(std::vector<LoopSnapshot>)> done,
                         bool with_domains) {
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
      finish_one(i, SnapshotOf(master, with_domains));
      continue;
    }
    // The Daemon outlives every loop; a stopped or full loop reports an empty snapshot. The
    // way back is reserved now: a full master inbox cannot lose a snapshot (the gather
    // would never finish, and its command never be answered).
    core::PostResult posted = loop->Post([this, loop, i, g, back = master.Reserve(), finish_one,
                                          with_domains]() mutable {
      LoopSnapshot snap = SnapshotOf(*loop, with_domains);
      (void)std::move(back).Post([snap = std::move(snap), i, finish_one]() mutable {
        finish_one(i, std::move(snap));
      });
    });
    if (posted != core::PostResult::kOk) {
      LoopSnapshot empty;
      empty.name = loop->name();
      finish_one(i, std::move(empty));
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
  // Commands without arguments take none: `shutdown --nwo` must not drain as if it were
  // `shutdown`, and `summary foo` is a typo to point out, not to ignore.
  auto exactly = [&w, &is](std::initializer_list<const char*> words) {
    return w.size() == words.size() && is(words);
  };
  const bool shutdown_now = w.size() == 2 && w[0] == "shutdown" && w[1] == "--now";
  if (exactly({"summary"}) || exactly({"eventloop", "list"}) || exactly({"metrics"})) {
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
  if (exactly({"threadpool", "list"})) {
    r = ThreadPoolList(json);
  } else if (is({"threadpool", "set"})) {
    r = ThreadPoolSet(w);
  } else if (exactly({"license", "show"})) {
    r = LicenseShow(json);
  } else if (is({"config", "show"}) && w.size() <= 3) {
    ConfigShow(w, json, std::move(reply));
    return;
  } else if (is({"config", "check"})) {
    ConfigCheck(w, std::move(reply));
    return;
  } else if (exactly({"config", "reload"})) {
    Reload(json, std::move(reply));
    return;
  } else if (exactly({"log", "reopen"})) {
    reception_log_->Reopen();
    if (delivery_log_ != nullptr) delivery_log_->Reopen();
    r = Ok("log files reopened\n");
  } else if (exactly({"shutdown"}) || shutdown_now) {
    const bool now = shutdown_now;
    std::move(reply)(Ok(now ? "stopping now\n" : "draining, then stopping\n"));
    // After the reply has been queued: the listener stays until the loop stops.
    loops_->master().Defer([this, now] { now ? StopEverything() : BeginDrain(); });
    return;
  } else if (is({"queue"}) || is({"domain"}) || is({"message"})) {
    HandleDeliveryCommand(request, std::move(reply));
    return;
  } else {
    r = Err(absl::StrCat("unknown command '", absl::StrJoin(w, " "),
                         "'; try: summary, config show|check|reload, threadpool list|set, "
                         "eventloop list, license show, metrics, log reopen, "
                         "shutdown [--now]"));
  }
  std::move(reply)(std::move(r));
}

Response Daemon::Summary(const std::vector<LoopSnapshot>& loops, bool json) {
  uint64_t conns = 0, accepted = 0, messages = 0, bytes = 0, commit_errors = 0, batches = 0;
  uint64_t delivered = 0, deferred = 0, failed = 0, bounces = 0, live = 0, live_bytes = 0;
  uint64_t waiting = 0;
  for (const LoopSnapshot& s : loops) {
    waiting += s.esmtp_waiting;
    delivered += s.engine.delivered;
    deferred += s.engine.deferred;
    failed += s.engine.failed;
    bounces += s.ledger.bounces_sent;
    live += s.ledger.live_messages;
    live_bytes += s.ledger.live_bytes;
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
        ",\"transactions_waiting\":", waiting,
        ",\"connections_accepted\":", accepted, ",\"messages_received\":", messages,
        ",\"bytes_received\":", bytes, ",\"commit_errors\":", commit_errors,
        ",\"spool_batches\":", batches, ",\"recipients_delivered\":", delivered,
        ",\"recipients_deferred\":", deferred, ",\"recipients_failed\":", failed,
        ",\"bounces_sent\":", bounces, ",\"spool_live_messages\":", live,
        ",\"spool_live_bytes\":", live_bytes, ",\"config_generation\":",
        generations_.generation(),
        ",\"reloads\":", reloads_, "}\n"));
  }
  return Ok(control::FormatTable(
      {"what", "value"},
      {{"uptime", absl::StrCat(uptime_s, "s")},
       {"loops", absl::StrCat(loops.size())},
       {"connections", absl::StrCat(conns)},
       {"transactions waiting for a slot", absl::StrCat(waiting)},
       {"connections accepted", absl::StrCat(accepted)},
       {"messages received", absl::StrCat(messages)},
       {"bytes received", absl::StrCat(bytes)},
       {"spool commit errors", absl::StrCat(commit_errors)},
       {"spool batches", absl::StrCat(batches)},
       {"recipients delivered", absl::StrCat(delivered)},
       {"recipients deferred", absl::StrCat(deferred)},
       {"recipients failed", absl::StrCat(failed)},
       {"bounces sent", absl::StrCat(bounces)},
       {"spool live messages", absl::StrCat(live)},
       {"spool live bytes", absl::StrCat(live_bytes)},
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
          [](const LoopSnapshot& s) {
            return s.esmtp.refused_busy + s.esmtp.refused_ip + s.esmtp.refused_rate;
          });
  counter("ringmail_messages_received_total", "Messages made durable and acknowledged.",
          [](const LoopSnapshot& s) { return s.esmtp.messages; });
  counter("ringmail_message_bytes_received_total", "Bytes of received messages.",
          [](const LoopSnapshot& s) { return s.esmtp.message_bytes; });
  counter("ringmail_esmtp_tls_handshakes_total", "Inbound TLS handshakes completed.",
          [](const LoopSnapshot& s) { return s.esmtp.tls_handshakes; });
  counter("ringmail_esmtp_tls_resumed_total", "Of those, resumed with a session ticket.",
          [](const LoopSnapshot& s) { return s.esmtp.tls_resumed; });
  counter("ringmail_esmtp_tls_handshake_errors_total",
          "Inbound TLS handshakes failed (bad input, alert, peer closed).",
          [](const LoopSnapshot& s) { return s.esmtp.tls_handshake_errors; });
  counter("ringmail_esmtp_tls_handshake_timeouts_total",
          "Inbound TLS handshakes cut off at tls_handshake_timeout.",
          [](const LoopSnapshot& s) { return s.esmtp.tls_handshake_timeouts; });
  counter("ringmail_spool_commit_errors_total", "Messages whose spool commit failed.",
          [](const LoopSnapshot& s) { return s.esmtp.commit_errors; });
  counter("ringmail_spool_batches_total", "Group-commit batches (one fdatasync each).",
          [](const LoopSnapshot& s) { return s.spool.batches; });
  counter("ringmail_spool_segments_created_total",
          "Spool segments made new (preallocated; zero-filled as spool_segment_fill says).",
          [](const LoopSnapshot& s) { return s.spool.segments; });
  counter("ringmail_spool_rollover_waits_total",
          "Segment rollovers that found no spare ready and waited for one to be made.",
          [](const LoopSnapshot& s) { return s.spool.rollover_waits; });
  counter("ringmail_spool_segments_recycled_total",
          "Drained segments whose file was reused as the next segment (not unlinked).",
          [](const LoopSnapshot& s) { return s.spool.segments_recycled; });
  counter("ringmail_recipients_delivered_total", "Recipients delivered.",
          [](const LoopSnapshot& s) { return s.engine.delivered; });
  counter("ringmail_recipients_deferred_total", "Delivery attempts deferred (4xx).",
          [](const LoopSnapshot& s) { return s.engine.deferred; });
  counter("ringmail_recipients_failed_total", "Recipients failed (5xx, expiry).",
          [](const LoopSnapshot& s) { return s.engine.failed; });
  counter("ringmail_outbound_sessions_total", "Outbound SMTP sessions established.",
          [](const LoopSnapshot& s) { return s.engine.sessions; });
  counter("ringmail_outbound_idle_reuses_total",
          "Parked outbound connections woken for more Work of their domain.",
          [](const LoopSnapshot& s) { return s.engine.idle_reuses; });
  counter("ringmail_outbound_shared_reuses_total",
          "Parked outbound connections woken for another domain on the same route.",
          [](const LoopSnapshot& s) { return s.engine.shared_reuses; });
  counter("ringmail_outbound_shared_takes_total",
          "Outbound connections that went on with another domain's Work (same route).",
          [](const LoopSnapshot& s) { return s.engine.shared_takes; });
  counter("ringmail_bounces_sent_total", "DSNs generated.",
          [](const LoopSnapshot& s) { return s.ledger.bounces_sent; });
  counter("ringmail_spool_segments_unlinked_total", "Drained segments removed.",
          [](const LoopSnapshot& s) { return s.ledger.segments_unlinked; });
  counter("ringmail_delivery_segment_files_released_total",
          "Spool segments open for reading that delivery closed as soon as they were removed.",
          [](const LoopSnapshot& s) { return s.engine.segment_files_released; });
  counter("ringmail_loop_completions_total", "Ring completions handled.",
          [](const LoopSnapshot& s) { return s.loop.completions; });
  AppendMetricGauges(loops, thread_pools_->ListStats(), &out);
  AppendLatencyHistogram(
      "ringmail_spool_sync_seconds",
      "Spool batches: from the write's submission to the completion of its sync (the disk).",
      loops, [](const LoopSnapshot& s) -> const core::LatencyHistogram& {
        return s.spool.sync_latency;
      }, &out);
  AppendLatencyHistogram(
      "ringmail_spool_commit_seconds",
      "Messages: from the commit request to durable, what a 250 waits for the spool.",
      loops, [](const LoopSnapshot& s) -> const core::LatencyHistogram& {
        return s.spool.commit_latency;
      }, &out);
  return Ok(out);
}

void Daemon::AppendLatencyHistogram(
    const char* name, const char* help, const std::vector<LoopSnapshot>& loops,
    const core::LatencyHistogram& (*field)(const LoopSnapshot&), std::string* out) {
  using H = core::LatencyHistogram;
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  for (const LoopSnapshot& s : loops) {
    const H& h = field(s);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < H::kBuckets; ++i) {
      cumulative += h.bucket(i);
      const std::string le = i < H::kBoundsUs.size()
                                 ? absl::StrCat(static_cast<double>(H::kBoundsUs[i]) / 1e6)
                                 : std::string("+Inf");
      absl::StrAppend(out, name, "_bucket{loop=\"", s.name, "\",le=\"", le, "\"} ", cumulative,
                      "\n");
    }
    absl::StrAppend(out, name, "_sum{loop=\"", s.name, "\"} ",
                    static_cast<double>(h.sum_us()) / 1e6, "\n", name, "_count{loop=\"", s.name,
                    "\"} ", h.count(), "\n");
  }
}

void Daemon::AppendMetricGauges(const std::vector<LoopSnapshot>& loops,
                                const std::vector<core::ThreadPoolStats>& pools,
                                std::string* out) {
  absl::StrAppend(out, "# HELP ringmail_esmtp_connections Open inbound connections.\n",
                  "# TYPE ringmail_esmtp_connections gauge\n");
  for (const LoopSnapshot& s : loops) {
    absl::StrAppend(out, "ringmail_esmtp_connections{loop=\"", s.name, "\"} ",
                    s.esmtp_sessions, "\n");
  }
  absl::StrAppend(out,
                  "# HELP ringmail_esmtp_transactions_waiting Transactions waiting for a "
                  "max_processings slot.\n",
                  "# TYPE ringmail_esmtp_transactions_waiting gauge\n");
  for (const LoopSnapshot& s : loops) {
    absl::StrAppend(out, "ringmail_esmtp_transactions_waiting{loop=\"", s.name, "\"} ",
                    s.esmtp_waiting, "\n");
  }
  absl::StrAppend(out, "# HELP ringmail_outbound_connections Open outbound connections.\n",
                  "# TYPE ringmail_outbound_connections gauge\n");
  for (const LoopSnapshot& s : loops) {
    absl::StrAppend(out, "ringmail_outbound_connections{loop=\"", s.name, "\"} ",
                    s.engine.open_connections, "\n");
  }
  absl::StrAppend(out, "# HELP ringmail_threadpool_queued Jobs waiting in a thread pool.\n",
                  "# TYPE ringmail_threadpool_queued gauge\n");
  for (const core::ThreadPoolStats& t : pools) {
    absl::StrAppend(out, "ringmail_threadpool_queued{pool=\"", t.name, "\"} ", t.queued, "\n");
  }
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

namespace ringmail::daemon {

// queue summary|flush, domain suspend|resume, message show: each reaches the engine or
// ledger that owns the thing asked about, on its loop.
void Daemon::HandleDeliveryCommand(const control::Request& request, Reply reply) {
  const std::vector<std::string>& w = request.words;
  const bool json = request.json;
  std::string arg = w.size() > 2 ? absl::AsciiStrToLower(w[2]) : "";
  // A DOMAIN argument is a mail domain or an address literal, normalised as the engines key
  // their queues: anything else would make a domain record of its own and keep it
  // (session 11's audit: 20,000 junk names suspended took 170 MB, and their bytes broke
  // `queue summary --json`).
  const bool takes_domain = w.size() >= 2 && ((w[0] == "queue" && (w[1] == "summary" ||
                                                                     w[1] == "flush")) ||
                                              w[0] == "domain");
  if (takes_domain && w.size() > 2) {  // an empty word too: `queue flush ""` is not "all"
    absl::StatusOr<std::string> domain = delivery::RecipientDomain(absl::StrCat("x@", arg));
    if (!domain.ok()) {
      std::move(reply)(Err(absl::StrCat("not a domain: ", domain.status().message())));
      return;
    }
    arg = *std::move(domain);
  }
  if (w.size() >= 2 && w[0] == "queue" && w[1] == "summary") {
    GatherLoops([this, arg, json, reply = std::move(reply)](
                    std::vector<LoopSnapshot> loops) mutable {
      std::move(reply)(QueueSummary(loops, arg, json));
    }, /*with_domains=*/true);
    return;
  }
  if (topology_.engines.empty()) {
    std::move(reply)(Err("delivery is not running"));
    return;
  }
  core::Loop& master = loops_->master();
  auto on_engine = [&](size_t shard, absl::AnyInvocable<std::string(delivery::Engine&)> fn) {
    auto shared_reply = std::make_shared<Reply>(std::move(reply));
    delivery::Engine* engine = topology_.engines[shard];
    auto shared_fn = std::make_shared<decltype(fn)>(std::move(fn));
    if (topology_.delivery_loops[shard]->Post(
            [engine, shared_fn, shared_reply, back = master.Reserve()]() mutable {
              std::string text = (*shared_fn)(*engine);
              (void)std::move(back).Post(
                  [shared_reply, text] { std::move(*shared_reply)(Ok(text)); });
            }) != core::PostResult::kOk) {
      std::move(*shared_reply)(Err("the delivery loop is busy; try again"));
    }
  };
  if (w.size() == 3 && w[0] == "domain" && (w[1] == "suspend" || w[1] == "resume")) {
    const bool suspend = w[1] == "suspend";
    on_engine(topology_.ShardFor(arg), [arg, suspend](delivery::Engine& e) {
      if (suspend) {
        e.Suspend(arg);
        return absl::StrCat("domain ", arg, " suspended\n");
      }
      return e.Resume(arg) ? absl::StrCat("domain ", arg, " resumed\n")
                           : absl::StrCat("domain ", arg, " has no queue (nothing to resume)\n");
    });
    return;
  }
  if (w.size() >= 2 && w[0] == "queue" && w[1] == "flush") {
    if (!arg.empty()) {
      on_engine(topology_.ShardFor(arg), [arg](delivery::Engine& e) {
        return absl::StrCat(e.Flush(arg), " recipient(s) of ", arg, " due now\n");
      });
      return;
    }
    for (size_t i = 1; i < topology_.engines.size(); ++i) {
      delivery::Engine* e = topology_.engines[i];
      (void)topology_.delivery_loops[i]->Reserve().Post([e] { e->FlushAll(); });  // never dropped
    }
    on_engine(0, [](delivery::Engine& e) {
      return absl::StrCat("queues flushed (", e.FlushAll(), " recipient(s) on the first loop)\n");
    });
    return;
  }
  if (w.size() == 3 && w[0] == "message" && w[1] == "show") {
    MessageShow(w[2], std::move(reply));
    return;
  }
  std::move(reply)(Err("usage: queue summary [DOMAIN] | queue flush [DOMAIN] | "
                       "domain suspend|resume DOMAIN | message show ID"));
}

void Daemon::MessageShow(const std::string& hex, Reply reply) {
  core::Loop& master = loops_->master();
  const bool json = false;
  {
    core::MessageId id;
    if (!core::MessageId::FromHex(hex, &id)) {
      std::move(reply)(Err("message show: ID must be 32 hex digits"));
      return;
    }
    // Ask the ledgers one after another on their loops; the first that knows it answers.
    struct Ask {
      std::vector<std::pair<core::Loop*, delivery::Ledger*>> ledgers;
      size_t next = 0;
    };
    auto ask = std::make_shared<Ask>();
    for (size_t i = 0; i < topology_.ledgers.size(); ++i) {
      if (topology_.ledgers[i] != nullptr) {
        ask->ledgers.push_back({topology_.owner_loops[i], topology_.ledgers[i]});
      }
    }
    auto shared_reply = std::make_shared<Reply>(std::move(reply));
    auto step = std::make_shared<std::function<void()>>();
    *step = [ask, shared_reply, step, id, json, &master] {
      if (ask->next == ask->ledgers.size()) {
        std::move(*shared_reply)(Err("no live message with that id"));
        *step = nullptr;  // break the self-reference
        return;
      }
      // Named copies, not a structured binding: clang 14 cannot capture those.
      core::Loop* loop = ask->ledgers[ask->next].first;
      delivery::Ledger* ledger = ask->ledgers[ask->next].second;
      ++ask->next;
      const core::PostResult posted = loop->Post([ledger, shared_reply, step, id, json,
                                                  back = master.Reserve()]() mutable {
        std::optional<delivery::MessageView> v = ledger->MessageShow(id);
        std::string text;
        if (v.has_value()) {
          std::vector<std::vector<std::string>> rows;
          for (size_t r = 0; r < v->envelope.recipients.size(); ++r) {
            const core::Recipient& rc = v->envelope.recipients[r];
            rows.push_back({absl::StrCat(r), rc.address,
                            absl::StrCat(static_cast<int>(rc.state)),
                            absl::StrCat(rc.attempts)});
          }
          text = absl::StrCat("id ", v->id.ToHex(), "\nfrom <", v->envelope.mail_from,
                              ">\nphase ", v->phase, "\n",
                              control::FormatTable({"#", "recipient", "state", "attempts"},
                                                   rows));
          (void)json;
        }
        (void)std::move(back).Post([shared_reply, step, text, found = v.has_value()] {
          if (found) {
            std::move(*shared_reply)(Ok(text));
            *step = nullptr;
          } else {
            (*step)();
          }
        });
      });
      if (posted != core::PostResult::kOk) {
        std::move(*shared_reply)(Err("an owner loop is busy; try again"));
        *step = nullptr;
      }
    };
    (*step)();
  }
}

Response Daemon::QueueSummary(const std::vector<LoopSnapshot>& loops, const std::string& domain,
                              bool json) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> items;
  for (const LoopSnapshot& s : loops) {
    for (const delivery::DomainSummary& d : s.domains) {
      if (!domain.empty() && d.domain != domain) continue;
      rows.push_back({d.domain, absl::StrCat(d.ready), absl::StrCat(d.delayed),
                      absl::StrCat(d.connections), absl::StrCat(d.oldest_ms),
                      absl::StrCat(d.next_attempt_ms), d.suspended ? "yes" : "no"});
      items.push_back(absl::StrCat("{\"domain\":", Json(d.domain), ",\"ready\":", d.ready,
                                   ",\"delayed\":", d.delayed, ",\"connections\":",
                                   d.connections, ",\"oldest_ms\":", d.oldest_ms,
                                   ",\"next_attempt_ms\":", d.next_attempt_ms,
                                   ",\"suspended\":", d.suspended ? "true" : "false", "}"));
    }
  }
  if (json) return Ok(absl::StrCat("[", absl::StrJoin(items, ","), "]\n"));
  return Ok(control::FormatTable({"domain", "ready", "delayed", "connections", "oldest_ms",
                                  "next_attempt_ms", "suspended"},
                                 rows));
}

}  // namespace ringmail::daemon
