#include "spool/group_commit.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "base/string_view.h"
#include "core/log.h"
#include "spool/segment_writer.h"
#include "spool/spare_planner.h"

namespace ringmail::spool {
namespace {

// The kernel takes at most IOV_MAX (UIO_MAXIOV) iovecs per WRITEV; a batch with more is
// written by several WRITEVs linked in one chain before its FSYNC.
constexpr size_t kIovPerWriteMax = 1024;
static_assert(kIovPerWriteMax <= IOV_MAX);
constexpr size_t kChainWritesMax = 64;
constexpr size_t kIovPerBatchMax = kIovPerWriteMax * kChainWritesMax;
// The largest record the format allows, in body chunks (they are at least this big once the
// body is large), plus head, Received: header, tail and the first, smaller chunks: one
// record always fits one chain.
static_assert(kRecordBytesMax / core::Body::kMaxChunkBytes + 16 <= kIovPerBatchMax);
static_assert(SpoolWriter::kBatchRecordsLimit <= kIovPerBatchMax);
// An oversized segment (one record bigger than segment_bytes) is rounded up to this.
constexpr uint64_t kOversizeAlignBytes = 4096;
// Records are encoded in format 2 with key 0 and bound to the active segment's life key in
// BuildIovecs, once the segment they go to is known.
constexpr RecordLife kUnboundLife{kRecordVersionBound, 0};
// A segment name already taken (EEXIST) is skipped this many times in a row at most.
constexpr int kNameTakenRetriesMax = 8;
// Resubmissions of one batch after an interrupted or foreign-cancelled op.
constexpr int kRetriesMax = 8;

uint64_t AlignUp(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

// mkdir -p with mode 0700; each directory it creates is made durable by syncing its parent.
absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("spool_dir is empty");
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) == 0) {
      size_t slash = prefix.find_last_of('/');
      std::string parent = slash == std::string::npos ? "." : prefix.substr(0, slash + 1);
      int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0 || ::fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0) ::close(fd);
        return SpoolIoError(err, absl::StrCat("syncing directory ", parent));
      }
      ::close(fd);
      continue;
    }
    if (errno == EEXIST) {
      struct stat st {};
      if (::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
      return absl::FailedPreconditionError(absl::StrCat(prefix, " exists and is not a directory"));
    }
    return SpoolIoError(errno, absl::StrCat("creating spool directory ", prefix));
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const SpoolWriterOptions& o) {
  if (o.spool_dir.empty()) return absl::InvalidArgumentError("spool writer: spool_dir is empty");
  if (o.loop_index > kMaxLoopIndex) {
    return absl::InvalidArgumentError(absl::StrCat("spool writer: loop ", o.loop_index));
  }
  if (o.segment_bytes < kMinSegmentBytes || o.segment_bytes > kMaxSegmentBytes) {
    return absl::InvalidArgumentError(absl::StrCat("spool writer: segment_bytes ", o.segment_bytes,
                                                   " outside [", kMinSegmentBytes, ", ",
                                                   kMaxSegmentBytes, "]"));
  }
  if (o.first_sequence == 0) {
    return absl::InvalidArgumentError("spool writer: sequence numbers start at 1");
  }
  if (o.batch_messages_max == 0 || o.batch_messages_max > SpoolWriter::kBatchRecordsLimit) {
    return absl::InvalidArgumentError(absl::StrCat("spool writer: batch_messages_max ",
                                                   o.batch_messages_max, " outside [1, ",
                                                   SpoolWriter::kBatchRecordsLimit, "]"));
  }
  if (o.batch_bytes_max < 4096) {
    return absl::InvalidArgumentError("spool writer: batch_bytes_max under 4096");
  }
  return absl::OkStatus();
}

// A FIFO of requests threaded through SpoolRequestLink::writer_next (no allocation).
class RequestQueue {
 public:
  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  SpoolRequestLink* front() const { return head_; }
  void Push(SpoolRequestLink* r) {
    r->writer_next = nullptr;
    (tail_ == nullptr ? head_ : tail_->writer_next) = r;
    tail_ = r;
    ++size_;
  }
  SpoolRequestLink* Pop() {
    SpoolRequestLink* r = head_;
    if (r == nullptr) return nullptr;
    head_ = r->writer_next;
    if (head_ == nullptr) tail_ = nullptr;
    r->writer_next = nullptr;
    --size_;
    return r;
  }
  // Moves everything out, leaving this queue empty (callbacks may refill it meanwhile).
  RequestQueue Take() { return std::exchange(*this, RequestQueue{}); }

 private:
  SpoolRequestLink* head_ = nullptr;
  SpoolRequestLink* tail_ = nullptr;
  size_t size_ = 0;
};

CommitRequest& AsCommit(SpoolRequestLink& r) {
  RM_DCHECK(!r.writer_is_state);
  return static_cast<CommitRequest&>(r);
}
StateRequest& AsState(SpoolRequestLink& r) {
  RM_DCHECK(r.writer_is_state);
  return static_cast<StateRequest&>(r);
}

bool IsEncoded(SpoolRequestLink& r) {
  return r.writer_is_state ? !AsState(r).writer_encoded.empty()
                           : !AsCommit(r).writer_encoded.head.empty();
}

uint64_t RecordBytes(SpoolRequestLink& r) {
  return r.writer_is_state ? AsState(r).writer_encoded.size() : AsCommit(r).writer_encoded.size();
}

size_t RecordIovecs(SpoolRequestLink& r) {
  if (r.writer_is_state) return 1;
  const EncodedRecord& e = AsCommit(r).writer_encoded;
  return 1 + e.body_parts.size() + (e.tail.empty() ? 0 : 1);
}

}  // namespace

class SpoolWriter::Impl final : public SegmentRecycler {
 public:
  Impl(core::Loop& loop, SpoolWriterOptions options, MessageSink* sink, LiveIndex* index,
       int dir_fd);
  ~Impl();

  void Start();
  void Commit(CommitRequest& request);
  void AppendState(StateRequest& request);
  const SpoolWriterStats& stats() const { return stats_; }
  std::optional<SegmentId> active_segment() const;
  bool idle() const;
  bool OfferForRecycling(SegmentId old, Done done, void* owner) override;
  bool recycles() const { return options_.recycle; }

 private:
  // One WRITEV of the batch chain, with what it was asked to write and what it did.
  struct WriteSlot {
    core::Operation op;
    uint64_t expected = 0;
    int32_t res = 0;
  };
  // The batch in flight: its requests in append order, their iovecs, and how far the
  // write has come (a short write is resumed from `written`).
  struct Batch {
    bool in_flight = false;
    RequestQueue requests;
    size_t messages = 0;
    size_t states = 0;
    uint64_t bytes = 0;
    uint64_t offset = 0;  // in the active segment
    std::vector<iovec> iov;
    size_t iov_next = 0;  // first iovec not completely written
    uint64_t written = 0;
    size_t chain_writes = 0;
    size_t chain_pending = 0;
    int32_t fsync_res = 0;
    int retries = 0;  // resubmissions after EINTR/EAGAIN/ECANCELED
    uint64_t submitted_us = 0;  // the loop's clock when its first WRITEV was prepared
  };

  void Enqueue(SpoolRequestLink& request);
  void ScheduleFlush();
  void Flush();
  bool Encode(SpoolRequestLink& request);
  bool EnsureRoom(uint64_t need);
  void Gather();
  void BuildIovecs();
  void SubmitChain();
  void WriteDone(core::Operation& op, core::IoResult result);
  void FsyncDone(core::Operation& op, core::IoResult result);
  void ChainFinished();
  void AdvanceIovecs(uint64_t n);
  void CompleteBatch();
  void CompleteMessage(CommitRequest& request);
  void FailBatch(int error);
  void FailRequest(SpoolRequestLink& request, const absl::Status& status);
  void FailAll(RequestQueue queue, const absl::Status& status);
  void StartCreate(uint64_t bytes, bool for_batch);
  void SegmentCreated(SegmentCreateResult& result);
  void RecycleCreated(SegmentCreateResult& result);
  void MaybeStartSpare();
  void Activate(const SegmentFile& file);
  void SealActive();

  core::Loop& loop_;
  const SpoolWriterOptions options_;
  MessageSink* const sink_;
  LiveIndex* const index_;
  const int dir_fd_;
  SegmentCreator creator_;

  std::optional<SegmentFile> active_;
  std::optional<SegmentFile> spare_;  // created ahead so that a rollover never waits
  uint64_t next_seq_;
  bool create_for_batch_ = false;  // the creation running is the one a batch needs
  uint64_t create_bytes_ = 0;
  int name_taken_retries_ = 0;
  uint64_t failures_logged_at_ = 0;   // stats_.segment_errors when the last streak ended
  bool waiting_for_segment_ = false;  // the head of pending_ waits for a creation
  SegmentRecycler::Done recycle_done_ = nullptr;  // set while a recycle runs
  void* recycle_owner_ = nullptr;
  SparePlanner planner_;  // when the next fresh segment starts, and whether it gets zeros

  RequestQueue pending_;
  bool flush_scheduled_ = false;
  Batch batch_;
  std::vector<std::unique_ptr<WriteSlot>> writes_;
  core::Operation fsync_op_;
  SpoolWriterStats stats_;
};

SpoolWriter::Impl::Impl(core::Loop& loop, SpoolWriterOptions options, MessageSink* sink,
                        LiveIndex* index, int dir_fd)
    : loop_(loop),
      options_(std::move(options)),
      sink_(sink),
      index_(index),
      dir_fd_(dir_fd),
      creator_(loop, options_.loop_index, dir_fd, options_.fill),
      next_seq_(options_.first_sequence) {
  creator_.Bind<&Impl::SegmentCreated>(this);
  fsync_op_.Bind<&Impl::FsyncDone>(this, "spool batch fdatasync");
}

SpoolWriter::Impl::~Impl() {
  RM_CHECK(pending_.empty() && !batch_.in_flight) << "spool writer destroyed with requests";
  RM_CHECK(!flush_scheduled_) << "spool writer destroyed with a flush scheduled";
  RM_CHECK(creator_.ops_in_flight() == 0) << "spool writer destroyed with ring ops in flight";
  // Every byte acknowledged was synced; these closes lose nothing.
  if (active_.has_value()) ::close(active_->fd);
  if (spare_.has_value()) ::close(spare_->fd);
  ::close(dir_fd_);
}

void SpoolWriter::Impl::Start() { StartCreate(options_.segment_bytes, /*for_batch=*/true); }

std::optional<SegmentId> SpoolWriter::Impl::active_segment() const {
  if (!active_.has_value()) return std::nullopt;
  return active_->id;
}

bool SpoolWriter::Impl::idle() const {
  return pending_.empty() && !batch_.in_flight && !flush_scheduled_ &&
         creator_.ops_in_flight() == 0;
}

void SpoolWriter::Impl::Commit(CommitRequest& request) {
  RM_CHECK(request.message != nullptr) << "commit without a message";
  RM_CHECK(request.done != nullptr) << "commit without a done callback";
  RM_CHECK(!request.message->id.IsZero()) << "commit of a message without an id";
  request.writer_is_state = false;
  request.writer_encoded = EncodedRecord{};
  request.id = request.message->id;
  request.location = SpoolLocation{};
  Enqueue(request);
}

void SpoolWriter::Impl::AppendState(StateRequest& request) {
  RM_CHECK(request.done != nullptr) << "state record without a done callback";
  request.writer_is_state = true;
  request.writer_encoded.clear();
  request.segment = SegmentId{};
  request.offset = 0;
  Enqueue(request);
}

void SpoolWriter::Impl::Enqueue(SpoolRequestLink& request) {
  RM_DCHECK(loop_.IsCurrent());
  RM_CHECK(!request.writer_queued) << "spool request submitted again before its done";
  request.writer_queued = true;
  request.writer_enqueued_us = loop_.now_us();
  pending_.Push(&request);
  ScheduleFlush();
}

void SpoolWriter::Impl::ScheduleFlush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  // End of this turn: every request made until then joins the batch (group commit).
  loop_.Defer([this] { Flush(); });
}

void SpoolWriter::Impl::Flush() {
  flush_scheduled_ = false;
  // One batch in flight at a time: the rest gathers and goes when it completes.
  while (!batch_.in_flight && !waiting_for_segment_ && !pending_.empty()) {
    SpoolRequestLink& head = *pending_.front();
    if (!Encode(head)) continue;                 // refused by the record format: failed alone
    if (!EnsureRoom(RecordBytes(head))) return;  // the segment's creation flushes again
    Gather();
    BuildIovecs();
    SubmitChain();
  }
}

// Encodes the request at the head of pending_ if not done yet. On refusal the request is
// removed and answered with the error.
bool SpoolWriter::Impl::Encode(SpoolRequestLink& request) {
  RM_DCHECK(pending_.front() == &request);
  if (IsEncoded(request)) return true;
  absl::Status status;
  if (request.writer_is_state) {
    StateRequest& s = AsState(request);
    if (const auto* update = std::get_if<RecipientUpdate>(&s.record)) {
      if (update->recipient_index < kRecipientsMax) {
        s.writer_encoded = EncodeRecipient(*update, kUnboundLife);
      } else {
        status = absl::InvalidArgumentError(
            absl::StrCat("spool record: recipient index ", update->recipient_index));
      }
    } else {
      s.writer_encoded = EncodeDone(std::get<DoneMark>(s.record), kUnboundLife);
    }
  } else {
    CommitRequest& c = AsCommit(request);
    absl::StatusOr<EncodedRecord> encoded = EncodeMessage(*c.message, kUnboundLife);
    if (encoded.ok()) {
      c.writer_encoded = std::move(encoded).value();
    } else {
      status = encoded.status();
    }
  }
  if (status.ok()) return true;
  pending_.Pop();
  FailRequest(request, status);
  return false;
}

// Makes sure the active segment can take a record of `need` bytes: rolls over to the spare,
// or starts creating a segment (sized for the record if it is bigger than a segment) and
// returns false; the creation's completion flushes again.
bool SpoolWriter::Impl::EnsureRoom(uint64_t need) {
  if (active_.has_value() && active_->room() >= need) return true;
  uint64_t bytes = options_.segment_bytes;
  if (need <= options_.segment_bytes - kSegmentHeaderBytes) {
    if (spare_.has_value()) {
      Activate(*std::exchange(spare_, std::nullopt));
      MaybeStartSpare();
      return true;
    }
    if (active_.has_value() && !waiting_for_segment_) ++stats_.rollover_waits;
  } else {
    bytes = AlignUp(kSegmentHeaderBytes + need, kOversizeAlignBytes);
  }
  waiting_for_segment_ = true;
  // A creation already running (the spare) completes first and flushes again.
  if (!creator_.busy()) StartCreate(bytes, /*for_batch=*/true);
  return false;
}

// Moves requests from pending_ into the batch, within the batch limits and the room left in
// the active segment. The head has been encoded and fits (EnsureRoom).
void SpoolWriter::Impl::Gather() {
  RM_DCHECK(!batch_.in_flight && batch_.requests.empty());
  const uint64_t room = active_->room();
  const uint64_t bytes_max = std::min(options_.batch_bytes_max, room);
  size_t iovs = 0;
  batch_.messages = batch_.states = 0;
  batch_.bytes = 0;
  while (!pending_.empty()) {
    SpoolRequestLink& r = *pending_.front();
    if (!Encode(r)) continue;
    const uint64_t size = RecordBytes(r);
    const size_t n = RecordIovecs(r);
    if (!batch_.requests.empty()) {
      if (batch_.requests.size() + 1 > options_.batch_messages_max) break;
      if (batch_.bytes + size > bytes_max || iovs + n > kIovPerBatchMax) break;
    }
    RM_CHECK(size <= room) << "record of " << size << " bytes in a segment with " << room;
    pending_.Pop();
    batch_.requests.Push(&r);
    batch_.bytes += size;
    iovs += n;
    ++(r.writer_is_state ? batch_.states : batch_.messages);
  }
  batch_.offset = active_->tail;
}

// One iovec array for the whole batch (heads, body chunks straight from the messages, tails)
// and each request's place in the segment.
void SpoolWriter::Impl::BuildIovecs() {
  batch_.iov.clear();
  batch_.iov_next = 0;
  batch_.written = 0;
  batch_.retries = 0;
  batch_.submitted_us = loop_.now_us();
  uint64_t offset = batch_.offset;
  // Each record is bound here exactly once: a batch is laid out once (a failed one is
  // answered, never laid out again).
  const uint32_t key = LifeKey(active_->id);
  for (SpoolRequestLink* r = batch_.requests.front(); r != nullptr; r = r->writer_next) {
    if (r->writer_is_state) {
      StateRequest& s = AsState(*r);
      BindRecord(s.writer_encoded.data(), 0, key);
      batch_.iov.push_back(iovec{s.writer_encoded.data(), s.writer_encoded.size()});
      s.segment = active_->id;
      s.offset = offset;
      offset += s.writer_encoded.size();
      continue;
    }
    CommitRequest& c = AsCommit(*r);
    EncodedRecord& e = c.writer_encoded;
    BindRecord(e.head.data(), 0, key);
    e.AppendIovecs(&batch_.iov);
    c.location.segment = active_->id;
    c.location.record_offset = offset;
    c.location.record_bytes = e.size();
    c.location.content_offset = offset + e.content_offset();
    c.location.content_length = e.content_length;
    offset += e.size();
  }
  RM_DCHECK(offset == batch_.offset + batch_.bytes);
  batch_.in_flight = true;
}

// Submits the unwritten rest of the batch: WRITEVs of at most kIovPerWriteMax iovecs at
// consecutive offsets, linked to one another and to a final FSYNC(DATASYNC), prepared in
// one submission. A failing or short WRITEV cancels what is linked after it. (With
// everything written and only the sync to redo, the chain is the FSYNC alone.)
// A batch that fits one WRITEV (all but the largest) is that WRITEV alone with RWF_DSYNC:
// it returns only once its range is written and synced (the kernel's fdatasync of the
// range), and every earlier batch was durable before this one started, so the durability is
// the FSYNC's. Why: ext4 cannot do a buffered write without blocking, so io_uring hands every
// spool WRITEV to an io-wq worker, and the linked FSYNC was a second hand-off; one request
// instead of two halves the worker wake-ups per batch.
void SpoolWriter::Impl::SubmitChain() {
  const size_t remaining = batch_.iov.size() - batch_.iov_next;
  const size_t writes = (remaining + kIovPerWriteMax - 1) / kIovPerWriteMax;
  RM_CHECK(writes <= kChainWritesMax) << writes << " WRITEVs in one chain";
  const bool dsync_write = writes == 1;
  while (writes_.size() < writes) {
    writes_.push_back(std::make_unique<WriteSlot>());
    writes_.back()->op.Bind<&Impl::WriteDone>(this, "spool batch writev");
  }
  ReserveSqes(loop_, static_cast<unsigned>(writes + 1));
  uint64_t offset = batch_.offset + batch_.written;
  for (size_t k = 0; k < writes; ++k) {
    const size_t first = batch_.iov_next + k * kIovPerWriteMax;
    const size_t count = std::min(kIovPerWriteMax, batch_.iov.size() - first);
    WriteSlot& slot = *writes_[k];
    slot.expected = 0;
    for (size_t i = first; i < first + count; ++i) slot.expected += batch_.iov[i].iov_len;
    slot.res = 0;
    io_uring_sqe* sqe = loop_.Prepare(slot.op);
    io_uring_prep_writev(sqe, active_->fd, &batch_.iov[first], static_cast<unsigned>(count),
                         offset);
    if (dsync_write) {
      sqe->rw_flags = RWF_DSYNC;
    } else {
      sqe->flags |= IOSQE_IO_LINK;
    }
    offset += slot.expected;
  }
  batch_.fsync_res = 0;
  if (!dsync_write) {
    io_uring_sqe* sqe = loop_.Prepare(fsync_op_);
    io_uring_prep_fsync(sqe, active_->fd, IORING_FSYNC_DATASYNC);
  }
  batch_.chain_writes = writes;
  batch_.chain_pending = writes + (dsync_write ? 0 : 1);
  stats_.writes += writes;
}

void SpoolWriter::Impl::WriteDone(core::Operation& op, core::IoResult result) {
  for (size_t k = 0; k < batch_.chain_writes; ++k) {
    if (&writes_[k]->op == &op) writes_[k]->res = result.res;
  }
  RM_DCHECK(batch_.chain_pending > 0);
  if (--batch_.chain_pending == 0) ChainFinished();
}

void SpoolWriter::Impl::FsyncDone(core::Operation&, core::IoResult result) {
  batch_.fsync_res = result.res;
  RM_DCHECK(batch_.chain_pending > 0);
  if (--batch_.chain_pending == 0) ChainFinished();
}

// Every op of the chain has completed: acknowledge, fail, or resume a short write.
void SpoolWriter::Impl::ChainFinished() {
  uint64_t progress = 0;
  int error = 0;
  bool short_write = false;
  // In order: the first WRITEV that failed or fell short decides; the ones linked after it
  // were cancelled and wrote nothing.
  for (size_t k = 0; k < batch_.chain_writes && error == 0 && !short_write; ++k) {
    const WriteSlot& slot = *writes_[k];
    if (slot.res < 0) {
      error = -slot.res;
    } else {
      progress += static_cast<uint64_t>(slot.res);
      short_write = static_cast<uint64_t>(slot.res) < slot.expected;
      if (short_write && slot.res == 0) error = EIO;  // no progress: never loop on it
    }
  }
  if (error == 0 && !short_write && batch_.fsync_res < 0) error = -batch_.fsync_res;
  batch_.written += progress;
  // An interrupted op, or one cancelled by someone else (the loop's stop cancels every op
  // once, and the first failing op of the chain is not a link casualty): go again.
  const bool retry = error == EINTR || error == EAGAIN || error == ECANCELED;
  if (error != 0 && !(retry && ++batch_.retries <= kRetriesMax)) {
    FailBatch(error);
    return;
  }
  if (short_write || error != 0) {
    // The bytes written stay; the rest goes again, and the sync only after it.
    ++(error != 0 ? stats_.retries : stats_.short_writes);
    AdvanceIovecs(progress);
    SubmitChain();
    return;
  }
  RM_DCHECK(batch_.written == batch_.bytes);
  CompleteBatch();
}

void SpoolWriter::Impl::AdvanceIovecs(uint64_t n) {
  while (n > 0) {
    RM_CHECK(batch_.iov_next < batch_.iov.size());
    iovec& v = batch_.iov[batch_.iov_next];
    if (n >= v.iov_len) {
      n -= v.iov_len;
      ++batch_.iov_next;
    } else {
      v.iov_base = static_cast<char*>(v.iov_base) + n;
      v.iov_len -= n;
      n = 0;
    }
  }
}

void SpoolWriter::Impl::CompleteBatch() {
  active_->tail += batch_.bytes;
  ++stats_.batches;
  ++stats_.fsyncs;
  stats_.messages += batch_.messages;
  stats_.state_records += batch_.states;
  stats_.bytes += batch_.bytes;
  stats_.largest_batch = std::max<uint64_t>(stats_.largest_batch, batch_.requests.size());
  const uint64_t now_us = loop_.now_us();
  stats_.sync_latency.Record(now_us - std::min(now_us, batch_.submitted_us));
  if (index_ != nullptr) index_->NoteAppended(active_->id, batch_.bytes);
  planner_.Appended(batch_.bytes, now_us);
  // With recycling the fresh spare waited (spool/spare_planner.h); not while creations fail (a
  // full disk is retried by the batch that needs a segment, not by every batch).
  if (options_.recycle && stats_.segment_errors == failures_logged_at_) MaybeStartSpare();
  RequestQueue done = batch_.requests.Take();
  batch_.in_flight = false;
  batch_.iov.clear();
  // Callbacks may commit again (queued for the next flush) or free their request: each
  // request is unlinked before its callback and never touched after it.
  while (SpoolRequestLink* r = done.Pop()) {
    r->writer_queued = false;
    if (r->writer_is_state) {
      StateRequest& s = AsState(*r);
      s.status = absl::OkStatus();
      s.writer_encoded = std::string();
      s.done(s.owner, s);
    } else {
      stats_.commit_latency.Record(now_us - std::min(now_us, r->writer_enqueued_us));
      CompleteMessage(AsCommit(*r));
    }
  }
  if (!pending_.empty()) ScheduleFlush();
}

void SpoolWriter::Impl::CompleteMessage(CommitRequest& c) {
  c.status = absl::OkStatus();
  c.writer_encoded = EncodedRecord{};
  CommittedMessage committed;
  if (sink_ != nullptr) {
    committed.id = c.id;
    committed.received_ms = c.message->received_ms;
    committed.envelope = std::move(c.message->envelope);
    committed.received_header_length = static_cast<uint32_t>(c.message->received_header.size());
    committed.location = c.location;
  }
  c.message.reset();  // the body was only needed for the write
  c.done(c.owner, c);
  if (sink_ != nullptr) sink_->Committed(std::move(committed));
}

// A WRITEV or the FSYNC failed: nothing of the batch is acknowledged, and the segment, which
// may now end in a torn record, is sealed: the next batch goes to a fresh one.
void SpoolWriter::Impl::FailBatch(int error) {
  ++stats_.errors;
  const SegmentId id = active_->id;
  absl::Status status =
      error == ECANCELED ? absl::UnavailableError(absl::StrCat("spool write to ", id.ToString(),
                                                               " cancelled: the loop is stopping"))
                         : SpoolIoError(error, absl::StrCat("spool write to ", id.ToString()));
  core::LogWarning("spool: %s; segment sealed", status.ToString());
  if (active_.has_value()) {
    creator_.CloseZeroingFrom(active_->fd, batch_.offset);  // the batch's bytes go
    active_.reset();
  }
  RequestQueue failed = batch_.requests.Take();
  batch_.in_flight = false;
  batch_.iov.clear();
  FailAll(std::move(failed), status);
  if (!pending_.empty()) ScheduleFlush();
}

void SpoolWriter::Impl::FailRequest(SpoolRequestLink& request, const absl::Status& status) {
  request.writer_queued = false;
  ++stats_.requests_failed;
  if (request.writer_is_state) {
    StateRequest& s = AsState(request);
    s.status = status;
    s.writer_encoded = std::string();
    s.done(s.owner, s);
  } else {
    CommitRequest& c = AsCommit(request);
    c.status = status;
    c.writer_encoded = EncodedRecord{};
    c.done(c.owner, c);
  }
}

void SpoolWriter::Impl::FailAll(RequestQueue queue, const absl::Status& status) {
  while (SpoolRequestLink* r = queue.Pop()) FailRequest(*r, status);
}

void SpoolWriter::Impl::StartCreate(uint64_t bytes, bool for_batch) {
  create_for_batch_ = for_batch;
  create_bytes_ = bytes;
  if (options_.fill == SegmentFill::kAuto) {
    creator_.set_zero_fill(planner_.ZeroFillPays());
    if (!creator_.zero_filling()) ++stats_.segments_unfilled;
  }
  if (bytes == options_.segment_bytes) planner_.CreationStarted(loop_.now_us());
  creator_.Create(next_seq_++, bytes);
}

void SpoolWriter::Impl::SegmentCreated(SegmentCreateResult& result) {
  if (recycle_done_ != nullptr) return RecycleCreated(result);
  const bool for_batch = create_for_batch_;
  if (result.status.ok()) {
    ++stats_.segments;
    name_taken_retries_ = 0;
    if (create_bytes_ == options_.segment_bytes) planner_.CreationSucceeded(loop_.now_us());
    if (stats_.segment_errors != failures_logged_at_) {
      core::LogInfo("spool: segment %s created after %d failed attempts", result.file.id.ToString(),
                    stats_.segment_errors - failures_logged_at_);
      failures_logged_at_ = stats_.segment_errors;
    }
    if (for_batch) {
      Activate(result.file);
    } else {
      spare_ = result.file;
    }
  } else {
    // One line per streak of failures (a full disk fails every attempt until freed).
    if (stats_.segment_errors++ == failures_logged_at_) {
      core::LogWarning("spool: %s; requests fail with it until a segment can be created",
                       result.status.ToString());
    }
    if (result.error == EEXIST && ++name_taken_retries_ <= kNameTakenRetriesMax) {
      StartCreate(create_bytes_, for_batch);  // that name is taken: the next number
      return;
    }
    name_taken_retries_ = 0;
    if (for_batch && waiting_for_segment_) {
      // The requests waiting for this segment fail; the next request tries again.
      waiting_for_segment_ = false;
      FailAll(pending_.Take(), result.status);
    }
  }
  if (waiting_for_segment_) {
    waiting_for_segment_ = false;
    Flush();  // a spare finished (made or not) while a batch waited: look again
  }
  // Only after a success: a failing disk is retried by the next batch, not in a loop here.
  if (result.status.ok()) MaybeStartSpare();
}

void SpoolWriter::Impl::MaybeStartSpare() {
  if (spare_.has_value() || creator_.busy() || !active_.has_value() || loop_.stopping()) return;
  // Recycling: a drained segment may still come; wait while there is time to make one.
  if (options_.recycle &&
      !planner_.FreshSpareDue(active_->tail - kSegmentHeaderBytes,
                              active_->capacity - kSegmentHeaderBytes)) {
    return;
  }
  StartCreate(options_.segment_bytes, /*for_batch=*/false);
}

bool SpoolWriter::Impl::OfferForRecycling(SegmentId old, Done done, void* owner) {
  RM_DCHECK(loop_.IsCurrent());
  RM_CHECK(done != nullptr);
  if (!options_.recycle || old.loop != options_.loop_index || old.seq >= next_seq_ ||
      spare_.has_value() || creator_.busy() || !active_.has_value() || loop_.stopping() ||
      (active_.has_value() && old == active_->id)) {
    return false;
  }
  recycle_done_ = done;
  recycle_owner_ = owner;
  create_for_batch_ = false;
  creator_.Recycle(old, next_seq_++, options_.segment_bytes);
  return true;
}

void SpoolWriter::Impl::RecycleCreated(SegmentCreateResult& result) {
  const SegmentRecycler::Done done = std::exchange(recycle_done_, nullptr);
  void* owner = std::exchange(recycle_owner_, nullptr);
  if (result.status.ok()) {
    ++stats_.segments_recycled;
    spare_ = result.file;
  } else if (result.error != EINVAL) {  // EINVAL: not of the configured size; nothing wrong
    ++stats_.recycle_failures;
    core::LogWarning("spool: %s; unlinked instead", result.status.ToString());
  }
  done(owner, result.recycle_old, result.status.ok());
  if (waiting_for_segment_) {
    waiting_for_segment_ = false;
    Flush();  // a batch waited while the recycle ran: the spare is there, or a creation starts
  }
  MaybeStartSpare();
}

void SpoolWriter::Impl::Activate(const SegmentFile& file) {
  RM_DCHECK(!batch_.in_flight);
  SealActive();
  active_ = file;
  if (index_ != nullptr) {
    index_->AddSegment(file.id, kSegmentHeaderBytes);
    index_->SetActiveSegment(file.id);
  }
}

void SpoolWriter::Impl::SealActive() {
  if (!active_.has_value()) return;
  creator_.Close(active_->fd);
  active_.reset();
}

// ---- SpoolWriter ----

absl::StatusOr<std::unique_ptr<SpoolWriter>> SpoolWriter::Open(core::Loop& loop,
                                                               SpoolWriterOptions options,
                                                               MessageSink* sink,
                                                               LiveIndex* index) {
  RM_CHECK(loop.IsCurrent()) << "SpoolWriter::Open off its loop's thread";
  RM_RETURN_IF_ERROR(CheckOptions(options));
  // A chain of WRITEVs and its FSYNC must fit the SQ in one submission.
  RM_CHECK(loop.ring().raw()->sq.ring_entries >= kChainWritesMax + 1) << "SQ too small";
  const std::string dir = LoopDirPath(options.spool_dir, options.loop_index);
  RM_RETURN_IF_ERROR(MakeDirs(dir));
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return SpoolIoError(errno, absl::StrCat("opening spool directory ", dir));
  if (::faccessat(dir_fd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
    int err = errno;
    ::close(dir_fd);
    return absl::PermissionDeniedError(
        absl::StrCat("spool directory ", dir, " is not writable: ", std::strerror(err)));
  }
  auto impl = std::make_unique<Impl>(loop, std::move(options), sink, index, dir_fd);
  impl->Start();
  return std::unique_ptr<SpoolWriter>(new SpoolWriter(std::move(impl)));
}

SpoolWriter::SpoolWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SpoolWriter::~SpoolWriter() = default;

void SpoolWriter::Commit(CommitRequest& request) { impl_->Commit(request); }
void SpoolWriter::AppendState(StateRequest& request) { impl_->AppendState(request); }
const SpoolWriterStats& SpoolWriter::stats() const { return impl_->stats(); }
std::optional<SegmentId> SpoolWriter::active_segment() const { return impl_->active_segment(); }
bool SpoolWriter::idle() const { return impl_->idle(); }
SegmentRecycler* SpoolWriter::recycler() const {
  return impl_->recycles() ? impl_.get() : nullptr;
}

}  // namespace ringmail::spool
