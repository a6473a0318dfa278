// Outbound delivery wiring: an Engine on each loop of the delivery_pool, a Ledger beside
// each loop's SpoolWriter (the spool's MessageSink), the topology that lets them reach each
// other, and the hand-off of what start-up recovery found.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/log.h"
#include "core/run_on_loop.h"
#include "core/thread_pool_registry.h"
#include "spool/segment_format.h"
#include "tools/ringmaild/daemon.h"

namespace ringmail::daemon {

absl::Status Daemon::StartDelivery() {
  const core::LoopPool* pool = loops_->pool(config_->global.delivery_pool);
  if (pool == nullptr) return absl::NotFoundError("delivery_pool names an unknown eventloop");
  topology_.delivery_loops = pool->loops();
  topology_.engines.assign(pool->size(), nullptr);
  topology_.owner_loops.assign(loops_->all_loops().size(), nullptr);
  topology_.ledgers.assign(loops_->all_loops().size(), nullptr);
  engines_.resize(pool->size());
  // Read here on the master (blocking file reads), shared immutably by every engine.
  auto tls_client = delivery::MakeOutboundTlsContext(config_->global);
  if (!tls_client.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("outbound TLS: ", tls_client.status().message()));
  }
  for (size_t i = 0; i < pool->size(); ++i) {
    core::Loop& loop = pool->loop(i);
    RM_RETURN_IF_ERROR(core::RunOnLoopAndWait(loop, [&, i]() -> absl::Status {
      delivery::EngineOptions o;
      o.config = config_;
      o.topology = &topology_;
      o.delivery_log = delivery_log_.get();
      o.outbound_connections = &outbound_connections_;
      o.engine_count = pool->size();
      o.tls_client = *tls_client;
      for (const config::NetAddress& r : config_->global.resolvers) {
        o.resolver.channel.servers.push_back(r.ToString());
      }
      o.resolver.cache.entries_max = static_cast<size_t>(config_->global.dns_cache_entries);
      int64_t dns_ms = absl::ToInt64Milliseconds(config_->global.dns_timeout);
      if (dns_ms > 0) o.resolver.channel.timeout_ms = static_cast<uint32_t>(dns_ms);
      RM_ASSIGN_OR_RETURN(engines_[i], delivery::Engine::Create(loop, std::move(o)));
      topology_.engines[i] = engines_[i].get();
      return absl::OkStatus();
    }));
  }
  core::LogInfo("delivery: %d engine(s) on pool %s", pool->size(),
                config_->global.delivery_pool.empty() ? "master" : config_->global.delivery_pool);
  return absl::OkStatus();
}

void Daemon::ShareSelfEndpoints(absl::StatusOr<std::vector<config::IpAddress>> local,
                                bool wait) {
  if (local.ok()) {
    local_addresses_ = *std::move(local);
  } else {
    // Listeners on specific addresses are still known. Wildcards keep the addresses read
    // before (a reload that cannot read them must not forget them); at start that is none,
    // and they match loopback only.
    core::LogWarning("interface addresses unknown (%s): a wildcard listener's own addresses "
                     "are the %d read before, and loopback",
                     std::string(local.status().message()), local_addresses_.size());
  }
  auto self = std::make_shared<const delivery::SelfEndpoints>(
      delivery::SelfEndpoints::Make(esmtp_bound_, local_addresses_));
  for (size_t i = 0; i < engines_.size(); ++i) {
    delivery::Engine* engine = engines_[i].get();
    if (engine == nullptr) continue;
    core::Loop& loop = *topology_.delivery_loops[i];
    if (wait) {
      (void)core::RunOnLoopAndWait(loop, [engine, self] {
        engine->SetSelfEndpoints(self);
        return absl::OkStatus();
      });
    } else {
      (void)loop.Reserve().Post([engine, self] { engine->SetSelfEndpoints(self); });
    }
  }
}

delivery::LedgerOptions Daemon::LedgerOptionsFor(core::Loop&) {
  delivery::LedgerOptions o;
  o.spool_dir = config_->global.spool_dir;
  o.hostname = config_->global.hostname;
  o.postmaster = config_->global.postmaster;
  if (const config::ThreadPoolConfig* tp = config_->FindThreadPool("Unlink")) {
    o.unlink_backlog = static_cast<uint32_t>(tp->backlog);
  }
  o.unlink_pool = thread_pools_->Find(core::kUnlinkPool);
  o.batch_unlink_pool = thread_pools_->Find(core::kBatchUnlinkPool);
  o.event_log = delivery_log_.get();
  const delivery::DeliveryTopology* topology = &topology_;
  o.dispatch = [topology](delivery::DeliveryJob& job) {
    size_t shard = topology->ShardFor(job.domain);
    delivery::Engine* engine = topology->engines[shard];
    return delivery::PostJobToLoop(*topology->delivery_loops[shard], job,
                                   [engine](delivery::DeliveryJob&& j) {
                                     engine->Submit(std::move(j));
                                   });
  };
  // Every engine may hold a removed segment open for reading: each is told (a full inbox
  // only delays the close to the engine's idle sweep).
  o.segments_removed = [topology, dir = o.spool_dir](const std::vector<spool::SegmentId>& ids) {
    auto paths = std::make_shared<std::vector<std::string>>();
    for (spool::SegmentId id : ids) paths->push_back(spool::SegmentPath(dir, id));
    for (size_t i = 0; i < topology->engines.size(); ++i) {
      delivery::Engine* engine = topology->engines[i];
      if (engine == nullptr) continue;
      topology->delivery_loops[i]->Post([engine, paths] { engine->SegmentsRemoved(*paths); });
    }
  };
  return o;
}

// On the owner loop: the Ledger first (the writer's sink and index), then the writer.
absl::Status Daemon::OpenLedgerAndSpool(LoopParts& parts) {
  core::Loop& loop = *parts.loop;
  parts.ledger = std::make_unique<delivery::Ledger>(loop, LedgerOptionsFor(loop));
  spool::SpoolWriterOptions so;
  so.spool_dir = config_->global.spool_dir;
  so.loop_index = loop.index();
  so.segment_bytes = config_->global.spool_segment_size_bytes;
  static_assert(static_cast<int>(config::SpoolSegmentFill::kZeros) ==
                    static_cast<int>(spool::SegmentFill::kZeros) &&
                static_cast<int>(config::SpoolSegmentFill::kNone) ==
                    static_cast<int>(spool::SegmentFill::kNone) &&
                static_cast<int>(config::SpoolSegmentFill::kAuto) ==
                    static_cast<int>(spool::SegmentFill::kAuto));
  so.fill = static_cast<spool::SegmentFill>(config_->global.spool_segment_fill);
  so.recycle = config_->global.spool_segment_recycle;
  so.first_sequence =
      loop.index() < next_segment_seq_.size() ? next_segment_seq_[loop.index()] : 1;
  RM_ASSIGN_OR_RETURN(parts.spool, spool::SpoolWriter::Open(loop, so, parts.ledger.get(),
                                                            &parts.ledger->live_index()));
  RM_RETURN_IF_ERROR(parts.ledger->Start(*parts.spool));
  topology_.owner_loops[loop.index()] = &loop;
  topology_.ledgers[loop.index()] = parts.ledger.get();
  return absl::OkStatus();
}

void Daemon::AdoptRecovered() {
  if (!recovered_.has_value()) return;
  std::vector<bool> owner(topology_.ledgers.size(), false);
  for (size_t i = 0; i < owner.size(); ++i) owner[i] = topology_.ledgers[i] != nullptr;
  size_t live = recovered_->live.size();
  auto split = delivery::SplitRecovery(*std::move(recovered_), owner);
  recovered_.reset();
  if (!split.ok()) {
    // Nothing is lost: the messages stay in the spool for the next start with a listener.
    core::LogWarning("spool: %d recovered message(s) not adopted: %s", live,
                     split.status().ToString());
    return;
  }
  for (size_t i = 0; i < split->size(); ++i) {
    if (topology_.ledgers[i] == nullptr) continue;
    delivery::Ledger* ledger = topology_.ledgers[i];
    auto adoption = std::make_shared<delivery::LedgerAdoption>(std::move((*split)[i]));
    absl::Status s = core::RunOnLoopAndWait(*topology_.owner_loops[i], [ledger, adoption] {
      ledger->Adopt(std::move(*adoption));
      return absl::OkStatus();
    });
    if (!s.ok()) core::LogWarning("spool: adoption on loop %d: %s", i, s.ToString());
  }
  if (live > 0) core::LogInfo("spool: %d recovered message(s) queued for delivery", live);
}

}  // namespace ringmail::daemon
