#include "spool/unlinker.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "core/log.h"

namespace ringmail::spool {
namespace {

bool Unsupported(int error) { return error == EINVAL || error == EOPNOTSUPP || error == ENOSYS; }

bool Retryable(int error) {
  return error == EINTR || error == EAGAIN || error == EBUSY || error == ENOMEM ||
         error == ECANCELED;
}

// Blocking: runs on a pool worker. Unlinks each path (ENOENT is fine), then fsyncs each
// directory that lost a file; a segment counts as removed only if its directory synced.
std::vector<std::pair<SegmentId, int>> UnlinkOnWorker(const std::string& spool_dir,
                                                      const std::vector<SegmentId>& ids) {
  std::vector<std::pair<SegmentId, int>> out;
  absl::flat_hash_map<uint32_t, int> dir_error;
  for (SegmentId id : ids) {
    std::string path = SegmentPath(spool_dir, id);
    int error = ::unlink(path.c_str()) == 0 || errno == ENOENT ? 0 : errno;
    out.emplace_back(id, error);
    if (error == 0) dir_error.try_emplace(id.loop, 0);
  }
  for (auto& [loop, error] : dir_error) {
    std::string dir = LoopDirPath(spool_dir, loop);
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) error = errno != 0 ? errno : EIO;
    if (fd >= 0) ::close(fd);
  }
  for (auto& [id, error] : out) {
    if (error == 0) error = dir_error[id.loop];
  }
  return out;
}

}  // namespace

struct Unlinker::UnlinkOp : core::Operation {
  SegmentId id;
  std::string name;  // the file name within its directory; alive until the completion
};

struct Unlinker::SyncOp : core::Operation {
  uint32_t loop = 0;
  int error = 0;
};

absl::StatusOr<std::unique_ptr<Unlinker>> Unlinker::Create(core::Loop& loop, LiveIndex& index,
                                                           const SpoolWriter& writer,
                                                           UnlinkerOptions options) {
  RM_CHECK(loop.IsCurrent()) << "Unlinker::Create off its loop";
  uint32_t own = options.loop_index;
  std::unique_ptr<Unlinker> u(new Unlinker(loop, index, writer, std::move(options)));
  RM_RETURN_IF_ERROR(u->AddDirectory(own));
  return u;
}

Unlinker::Unlinker(core::Loop& loop, LiveIndex& index, const SpoolWriter& writer,
                   UnlinkerOptions options)
    : loop_(loop), index_(index), writer_(writer), options_(std::move(options)) {
  if (options_.batch_max == 0) options_.batch_max = 1;
  ring_ok_ = options_.use_ring;
}

Unlinker::~Unlinker() {
  RM_CHECK(!running_) << "unlinker destroyed with ring ops in flight";
  RM_CHECK(!recycling_.has_value()) << "unlinker destroyed with a recycle in flight";
  for (auto& [loop, fd] : dir_fds_) ::close(fd);
}

absl::Status Unlinker::AddDirectory(uint32_t loop) {
  if (dir_fds_.contains(loop)) return absl::OkStatus();
  std::string dir = LoopDirPath(options_.spool_dir, loop);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("opening ", dir, ": ", std::strerror(errno)));
  }
  dir_fds_[loop] = fd;
  return absl::OkStatus();
}

int Unlinker::DirFd(uint32_t loop) const {
  auto it = dir_fds_.find(loop);
  return it == dir_fds_.end() ? -1 : it->second;
}

void Unlinker::Kick() {
  if (running_) {
    again_ = true;
    return;
  }
  if (kick_scheduled_) return;
  kick_scheduled_ = true;
  loop_.Defer([this] {
    kick_scheduled_ = false;
    Run();
  });
}

void Unlinker::RetryFailed() {
  failed_.clear();
  Kick();
}

std::vector<SegmentId> Unlinker::Pick() {
  std::optional<SegmentId> active = writer_.active_segment();
  std::vector<SegmentId> out;
  for (SegmentId id : index_.RemovableSegments()) {
    if (out.size() == options_.batch_max) break;
    if (active.has_value() && id == *active) continue;
    if (in_progress_.contains(id) || failed_.contains(id)) continue;
    if (options_.held && options_.held(id)) continue;
    out.push_back(id);
  }
  return out;
}

void Unlinker::Run() {
  if (running_ || loop_.stopping()) return;
  std::vector<SegmentId> picked = Pick();
  if (picked.empty()) return;
  ++stats_.runs;
  std::vector<SegmentId> to_pool;
  std::vector<SegmentId> to_ring;
  bool offered = false;
  for (SegmentId id : picked) {
    in_progress_.insert(id);
    if (!offered && OfferForRecycling(id)) {
      offered = true;
      continue;
    }
    (ring_ok_ && DirFd(id.loop) >= 0 ? to_ring : to_pool).push_back(id);
  }
  if (!to_pool.empty()) SubmitToPool(std::move(to_pool));
  if (to_ring.empty()) return;
  running_ = true;
  unlinks_pending_ = to_ring.size();
  while (unlink_ops_.size() < to_ring.size()) {
    unlink_ops_.push_back(std::make_unique<UnlinkOp>());
    unlink_ops_.back()->Bind<&Unlinker::UnlinkDone>(this, "segment unlinkat");
  }
  for (size_t i = 0; i < to_ring.size(); ++i) {
    UnlinkOp& op = *unlink_ops_[i];
    op.id = to_ring[i];
    op.name = SegmentFileName(op.id.seq);
    io_uring_sqe* sqe = loop_.Prepare(op);
    io_uring_prep_unlinkat(sqe, DirFd(op.id.loop), op.name.c_str(), 0);
  }
}

void Unlinker::UnlinkDone(core::Operation& operation, core::IoResult r) {
  UnlinkOp& op = static_cast<UnlinkOp&>(operation);
  if (r.ok() || r.error() == ENOENT) {
    unlinked_.push_back(op.id);
  } else if (loop_.stopping()) {
    in_progress_.erase(op.id);
  } else if (Unsupported(r.error())) {
    if (ring_ok_) core::LogWarning("spool: IORING_OP_UNLINKAT unsupported; using the pools");
    ring_ok_ = false;
    stats_.ring_unsupported = true;
    fallback_.push_back(op.id);
  } else if (Retryable(r.error())) {
    fallback_.push_back(op.id);
  } else {
    Failed(op.id, r.error(), "unlink");
  }
  if (--unlinks_pending_ == 0) RingUnlinksDone();
}

void Unlinker::RingUnlinksDone() {
  if (!fallback_.empty()) SubmitToPool(std::exchange(fallback_, {}));
  std::vector<uint32_t> dirs;
  for (SegmentId id : unlinked_) {
    if (std::find(dirs.begin(), dirs.end(), id.loop) == dirs.end()) dirs.push_back(id.loop);
  }
  if (dirs.empty()) {
    running_ = false;
    if (std::exchange(again_, false)) Kick();
    return;
  }
  syncs_pending_ = dirs.size();
  syncs_used_ = dirs.size();
  while (sync_ops_.size() < dirs.size()) {
    sync_ops_.push_back(std::make_unique<SyncOp>());
    sync_ops_.back()->Bind<&Unlinker::SyncDone>(this, "spool directory fsync");
  }
  for (size_t i = 0; i < dirs.size(); ++i) {
    SyncOp& op = *sync_ops_[i];
    op.loop = dirs[i];
    op.error = 0;
    io_uring_sqe* sqe = loop_.Prepare(op);
    io_uring_prep_fsync(sqe, DirFd(op.loop), 0);
  }
}

void Unlinker::SyncDone(core::Operation& operation, core::IoResult r) {
  SyncOp& op = static_cast<SyncOp&>(operation);
  op.error = r.error();
  if (r.ok()) ++stats_.dir_syncs;
  if (--syncs_pending_ != 0) return;
  std::vector<SegmentId> removed;
  for (SegmentId id : unlinked_) {
    auto end = sync_ops_.begin() + static_cast<ptrdiff_t>(syncs_used_);
    auto sync = std::find_if(sync_ops_.begin(), end,
                             [&](const auto& s) { return s->loop == id.loop; });
    if ((*sync)->error == 0) {
      removed.push_back(id);
    } else {
      // The file is gone but its removal may not be durable: not yet removed for the
      // index. The next run finds it again, unlinks (ENOENT) and syncs again.
      in_progress_.erase(id);
      if (!loop_.stopping()) Failed(id, (*sync)->error, "directory fsync");
    }
  }
  unlinked_.clear();
  running_ = false;
  Removed(removed, /*via_ring=*/true);
  if (std::exchange(again_, false) || !removed.empty()) Kick();
}

// One offer per run, of the oldest candidate of our own directory; the writer keeps at most
// one spare, so the rest are unlinked.
bool Unlinker::OfferForRecycling(SegmentId id) {
  SegmentRecycler* recycler = writer_.recycler();
  if (recycler == nullptr || recycling_.has_value() || id.loop != options_.loop_index ||
      not_recycled_.contains(id)) {
    return false;
  }
  if (!recycler->OfferForRecycling(id, &Unlinker::RecycleDone, this)) return false;
  recycling_ = id;
  return true;
}

void Unlinker::RecycleDone(void* raw, SegmentId old, bool recycled) {
  Unlinker* self = static_cast<Unlinker*>(raw);
  RM_CHECK(self->recycling_.has_value() && *self->recycling_ == old) << old.ToString();
  self->recycling_.reset();
  if (recycled) {
    // The old name is durably gone and its records unreadable: removed for the index.
    self->in_progress_.erase(old);
    const LiveIndex::SegmentStats* s = self->index_.FindSegment(old);
    // Offered with nothing live; nothing is ever added to a segment that is not active.
    RM_CHECK(s != nullptr && s->live_messages == 0) << "recycled " << old.ToString();
    self->index_.RemoveSegment(old);
    ++self->stats_.recycled;
    ++self->stats_.unlinked;
    if (self->removed_fn_ != nullptr) self->removed_fn_(self->removed_owner_, {old});
  } else {
    self->in_progress_.erase(old);
    self->not_recycled_.insert(old);
  }
  self->Kick();
}

void Unlinker::SubmitToPool(std::vector<SegmentId> ids) {
  core::ThreadPool* pool = ids.size() == 1 ? options_.unlink_pool : options_.batch_unlink_pool;
  if (pool == nullptr) pool = options_.unlink_pool ? options_.unlink_pool
                                                   : options_.batch_unlink_pool;
  if (pool == nullptr) {
    for (SegmentId id : ids) Failed(id, EOPNOTSUPP, "unlink (no pool configured)");
    return;
  }
  // The result comes back through a reserved post: a full inbox cannot drop it (a dropped
  // result would leave its segments in_progress_ until a restart). A stopped loop drops it
  // with everything else.
  auto job = core::JobWithDone(
      [dir = options_.spool_dir, ids] { return UnlinkOnWorker(dir, ids); },
      [reply = loop_.Reserve(), self = this](std::vector<Result> results) mutable {
        (void)std::move(reply).Post(
            [self, results = std::move(results)]() mutable { self->PoolDone(std::move(results)); });
      });
  core::SubmitResult s = pool->TrySubmit(std::move(job));
  if (s == core::SubmitResult::kAccepted) {
    ++pool_jobs_;
    return;
  }
  if (s == core::SubmitResult::kBacklogFull) ++stats_.pool_rejected;
  // Left for a later run: the segments are still removable then.
  for (SegmentId id : ids) in_progress_.erase(id);
}

void Unlinker::PoolDone(std::vector<Result> results) {
  --pool_jobs_;
  std::vector<SegmentId> removed;
  for (const auto& [id, error] : results) {
    if (error == 0) {
      removed.push_back(id);
    } else {
      in_progress_.erase(id);
      Failed(id, error, "unlink (pool)");
    }
  }
  Removed(removed, /*via_ring=*/false);
  if (!removed.empty()) Kick();
}

void Unlinker::Removed(const std::vector<SegmentId>& ids, bool via_ring) {
  for (SegmentId id : ids) {
    in_progress_.erase(id);
    not_recycled_.erase(id);
    const LiveIndex::SegmentStats* s = index_.FindSegment(id);
    // Picked with nothing live; nothing is ever added to a segment that is not active.
    RM_CHECK(s != nullptr && s->live_messages == 0) << "unlinked " << id.ToString();
    index_.RemoveSegment(id);
    ++stats_.unlinked;
    ++(via_ring ? stats_.ring_unlinks : stats_.pool_unlinks);
  }
  if (!ids.empty() && removed_fn_ != nullptr) removed_fn_(removed_owner_, ids);
}

void Unlinker::Failed(SegmentId id, int error, const char* what) {
  ++stats_.errors;
  failed_.insert(id);
  in_progress_.erase(id);
  core::LogWarning("spool: %s of %s failed: %s; retried later", what,
                   SegmentPath(options_.spool_dir, id), std::strerror(error));
}

}  // namespace ringmail::spool
