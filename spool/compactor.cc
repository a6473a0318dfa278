#include "spool/compactor.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "core/log.h"
#include "spool/record.h"

namespace ringmail::spool {
namespace {

// EINTR/EAGAIN on a file op are resubmitted, a few times (STYLE.md principle 4).
constexpr int kRetriesMax = 3;

bool Retryable(int error) { return error == EINTR || error == EAGAIN; }

absl::Status ReadError(int error, const std::string& what) {
  std::string text = absl::StrCat(what, ": ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(text);
  return absl::UnavailableError(text);
}

}  // namespace

// ---- SegmentRangeRead ----

SegmentRangeRead::~SegmentRangeRead() {
  RM_CHECK(!busy_) << "segment read of " << path_ << " destroyed while in flight";
}

void SegmentRangeRead::Start(core::Loop& loop, std::string path, uint64_t offset,
                             uint64_t length) {
  RM_CHECK(!busy_) << "segment read started twice";
  RM_CHECK(length <= kRecordBytesMax) << "segment read of " << length << " bytes";
  loop_ = &loop;
  path_ = std::move(path);
  offset_ = offset;
  got_ = 0;
  retries_ = 0;
  status = absl::OkStatus();
  data.assign(static_cast<size_t>(length), '\0');
  busy_ = true;
  open_op_.Bind<&SegmentRangeRead::OpenDone>(this, "segment read openat");
  read_op_.Bind<&SegmentRangeRead::ReadDone>(this, "segment read");
  close_op_.Bind<&SegmentRangeRead::CloseDone>(this, "segment read close");
  io_uring_sqe* sqe = loop.Prepare(open_op_);
  io_uring_prep_openat(sqe, AT_FDCWD, path_.c_str(), O_RDONLY | O_CLOEXEC, 0);
}

void SegmentRangeRead::OpenDone(core::Operation&, core::IoResult r) {
  if (!r.ok()) {
    if (Retryable(r.error()) && ++retries_ <= kRetriesMax) {
      io_uring_sqe* sqe = loop_->Prepare(open_op_);
      io_uring_prep_openat(sqe, AT_FDCWD, path_.c_str(), O_RDONLY | O_CLOEXEC, 0);
      return;
    }
    status = ReadError(r.error(), absl::StrCat("opening ", path_));
    return Finish();
  }
  fd_ = r.res;
  retries_ = 0;
  if (data.empty()) return Close();
  SubmitRead();
}

void SegmentRangeRead::SubmitRead() {
  uint64_t n = std::min<uint64_t>(data.size() - got_, kReadChunkBytes);
  io_uring_sqe* sqe = loop_->Prepare(read_op_);
  io_uring_prep_read(sqe, fd_, data.data() + got_, static_cast<unsigned>(n), offset_ + got_);
}

void SegmentRangeRead::ReadDone(core::Operation&, core::IoResult r) {
  if (!r.ok()) {
    if (Retryable(r.error()) && ++retries_ <= kRetriesMax) return SubmitRead();
    status = ReadError(r.error(), absl::StrCat("reading ", path_));
    return Close();
  }
  if (r.value() == 0) {
    status = absl::DataLossError(absl::StrCat(path_, " ends at ", offset_ + got_, ", before ",
                                              offset_ + data.size()));
    return Close();
  }
  got_ += r.value();
  retries_ = 0;
  if (got_ < data.size()) return SubmitRead();
  Close();
}

void SegmentRangeRead::Close() {
  io_uring_sqe* sqe = loop_->Prepare(close_op_);
  io_uring_prep_close(sqe, fd_);
  fd_ = -1;
}

void SegmentRangeRead::CloseDone(core::Operation&, core::IoResult) { Finish(); }

void SegmentRangeRead::Finish() {
  busy_ = false;
  if (!status.ok()) data.clear();
  // The callback may Start again (or let the owner go): nothing of this is touched after.
  done_(owner_, *this);
}

// ---- Compactor ----

struct Compactor::Copy : CommitRequest {
  core::MessageId message_id;
  SpoolLocation from;
  std::string record;  // the MESSAGE record read back, until rebuilt
  bool read_ok = false;
};

Compactor::Compactor(core::Loop& loop, LiveIndex& index, SpoolWriter& writer,
                     CompactionHost& host, CompactorOptions options)
    : loop_(loop), index_(index), writer_(writer), host_(host), options_(std::move(options)) {
  read_.Bind<&Compactor::ReadDone>(this);
}

Compactor::~Compactor() { RM_CHECK(!busy_) << "compactor destroyed during a run"; }

bool Compactor::RunOnce() {
  if (busy_ || loop_.stopping()) return false;
  std::vector<SegmentId> candidates = index_.CompactionCandidates(options_.live_percent_max);
  std::vector<core::MessageId> ids;
  size_t looked = 0;
  for (SegmentId candidate : candidates) {
    if (looked++ == options_.candidates_looked_at_max) break;
    ids.clear();
    host_.CompactionMovable(candidate, options_.run_messages_max, &ids);
    if (!ids.empty()) {
      segment_ = candidate;
      break;
    }
  }
  if (ids.empty()) return false;
  uint64_t bytes = 0;
  copies_.clear();
  for (const core::MessageId& id : ids) {
    const LiveIndex::Entry* entry = index_.Find(id);
    if (entry == nullptr || entry->location.segment != segment_) continue;
    if (!copies_.empty() && bytes + entry->location.record_bytes > options_.run_bytes_max) break;
    bytes += entry->location.record_bytes;
    auto copy = std::make_unique<Copy>();
    copy->message_id = id;
    copy->from = entry->location;
    copy->Bind<&Compactor::CommitDone>(this);
    copies_.push_back(std::move(copy));
    if (copies_.size() == options_.run_messages_max) break;
  }
  if (copies_.empty()) return false;
  busy_ = true;
  next_read_ = 0;
  ReadNext();
  return true;
}

void Compactor::ReadNext() {
  if (loop_.stopping()) {
    // Nothing committed yet: the run just ends (the records stay where they are).
    next_read_ = copies_.size();
    for (auto& c : copies_) c->read_ok = false;
  }
  if (next_read_ == copies_.size()) return CommitAll();
  const Copy& c = *copies_[next_read_];
  read_.Start(loop_, SegmentPath(options_.spool_dir, c.from.segment), c.from.record_offset,
              c.from.record_bytes);
}

void Compactor::ReadDone(SegmentRangeRead& read) {
  Copy& c = *copies_[next_read_];
  if (read.status.ok()) {
    c.record = std::move(read.data);
    c.read_ok = true;
  } else {
    ++stats_.read_errors;
    core::LogWarning("spool: compaction cannot read %s back from %s: %s", c.message_id.ToHex(),
                     c.from.segment.ToString(), read.status.ToString());
  }
  ++next_read_;
  ReadNext();
}

// Turns the record read back into a Message with the current recipient states.
bool Compactor::Rebuild(Copy& c) {
  DecodedRecord decoded;
  RecordStatus st =
      DecodeRecord(c.record, &decoded, LifeOfValidatedRecord(c.from.segment, c.record));
  auto* meta = st.ok() ? std::get_if<MessageMeta>(&decoded.meta) : nullptr;
  if (meta == nullptr || meta->id != c.message_id ||
      meta->received_header_length > decoded.content.size()) {
    ++stats_.read_errors;
    core::LogWarning("spool: compaction: the record of %s in %s does not validate (%s %s)",
                     c.message_id.ToHex(), c.from.segment.ToString(),
                     std::string(RecordErrorName(st.error)), st.detail);
    return false;
  }
  const LiveIndex::Entry* entry = index_.Find(c.message_id);
  if (entry == nullptr || !(entry->location == c.from) ||
      !host_.CompactionPrepare(c.message_id, &meta->envelope)) {
    ++stats_.skipped;
    return false;
  }
  auto m = std::make_unique<core::Message>();
  m->id = c.message_id;
  m->received_ms = meta->received_ms;
  m->envelope = std::move(meta->envelope);
  std::string_view content = decoded.content;
  m->received_header.assign(content.substr(0, meta->received_header_length));
  m->body.Append(content.substr(meta->received_header_length));
  c.message = std::move(m);
  return true;
}

// Every copy of the run is committed in this one loop turn: one group commit.
void Compactor::CommitAll() {
  for (auto& c : copies_) {
    if (c->read_ok && Rebuild(*c)) {
      ++commits_in_flight_;
      writer_.Commit(*c);
    }
    c->record = std::string();
  }
  MaybeFinishRun();
}

void Compactor::CommitDone(CommitRequest& request) {
  Copy& c = static_cast<Copy&>(request);
  --commits_in_flight_;
  if (!c.status.ok()) {
    ++stats_.commit_errors;
    core::LogWarning("spool: compaction copy of %s failed: %s", c.message_id.ToHex(),
                     c.status.ToString());
  } else if (index_.Relocate(c.message_id, c.location)) {
    ++stats_.messages_moved;
    stats_.bytes_moved += c.location.record_bytes;
    host_.CompactionRelocated(c.message_id, c.location);
  } else {
    // The host said it was live and not finishing, and a DONE appended later completes
    // later: this cannot happen unless the host broke its contract.
    RM_BUG("compaction copy of a message that is no longer live");
  }
  MaybeFinishRun();
}

void Compactor::MaybeFinishRun() {
  if (commits_in_flight_ != 0) return;
  busy_ = false;
  ++stats_.runs;
  // The writer never touches a request after its done: the copies may go now.
  copies_.clear();
  if (run_done_ != nullptr) run_done_(run_done_owner_);
}

}  // namespace ringmail::spool
