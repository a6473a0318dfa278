#include "spool/recovery.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <compare>
#include <cstring>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace ringmail::spool {
namespace {

constexpr size_t kNoSegment = SIZE_MAX;
constexpr int kQuarantineNameTries = 1000;

bool IsFinal(core::RecipientState s) {
  return s == core::RecipientState::kDelivered || s == core::RecipientState::kFailed;
}

// Precedence of one recipient state over another (see recovery.h, "later wins").
struct UpdateKey {
  bool final = false;
  uint32_t attempts = 0;
  uint64_t changed_ms = 0;
  uint64_t order = 0;

  friend auto operator<=>(const UpdateKey&, const UpdateKey&) = default;
};

struct MessageState {
  CommittedMessage message;
  std::vector<UpdateKey> keys;        // one per recipient
  std::vector<SpoolLocation> copies;  // every MESSAGE record of this id, scan order
  uint64_t order = 0;
};

// A RECIPIENT or DONE record, kept until every MESSAGE record has been seen (a state change
// may be in a directory scanned before the message's own).
struct StateRecord {
  core::MessageId id;
  bool done = false;
  uint32_t index = 0;
  core::RecipientState state = core::RecipientState::kPending;
  uint32_t attempts = 0;
  uint64_t next_attempt_ms = 0;
  uint64_t changed_ms = 0;
  uint64_t order = 0;
  size_t segment = kNoSegment;  // index into report.segments
};

struct SegmentFile {
  uint64_t seq = 0;
  bool scanned_nonempty = false;  // false: empty or quarantined
  bool quarantined = false;
};

struct LoopListing {
  uint32_t loop = 0;
  std::vector<SegmentFile> segments;  // ascending seq
  std::vector<uint64_t> recycling;    // <seq>.recycle files: spares in the making
};

std::string Errno(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

bool IsDirectory(int dir_fd, const dirent* entry) {
  if (entry->d_type == DT_DIR) return true;
  if (entry->d_type != DT_UNKNOWN) return false;
  struct stat st;
  return ::fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

void SyncDirectory(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: the rename itself already happened
  ::close(fd);
}

// Zero-fills [offset, offset + length) of an open file without fallocate.
bool WriteZeros(int fd, uint64_t offset, uint64_t length) {
  static const std::string kZeros(64 * 1024, '\0');
  while (length > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length, kZeros.size()));
    ssize_t w = ::pwrite(fd, kZeros.data(), n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    offset += static_cast<uint64_t>(w);
    length -= static_cast<uint64_t>(w);
  }
  return true;
}

class Recovery {
 public:
  Recovery(const std::string& spool_dir, const RecoveryOptions& options)
      : dir_(spool_dir), options_(options) {}

  absl::StatusOr<RecoveryResult> Run();

 private:
  absl::Status List(std::vector<LoopListing>* loops);
  void ListLoop(int spool_fd, const char* name, uint32_t loop, LoopListing* out);
  void ScanLoop(LoopListing* listing);
  void DropRecycleLeftovers(const LoopListing& listing);
  void ScanSegment(SegmentId id, SegmentFile* file);
  void Collect(SegmentId id, ScannedRecord& rec, std::vector<MessageState>* messages,
               std::vector<StateRecord>* states);
  void AddMessage(MessageState&& state);
  void Quarantine(SegmentId id, const std::string& path, std::string reason, uint64_t dropped);
  std::string MoveToQuarantine(const std::string& path, SegmentId id, std::string* error);
  void Seal(SegmentReport* segment);
  void FinishLoop(const LoopListing& listing, size_t first_report);
  void ApplyUpdate(const StateRecord& s, MessageState* m);
  void Resolve();

  std::string dir_;
  const RecoveryOptions& options_;
  RecoveryResult result_;
  absl::flat_hash_map<core::MessageId, MessageState> messages_;
  absl::flat_hash_set<core::MessageId> done_;
  std::vector<StateRecord> states_;
  uint64_t order_ = 0;
};

absl::StatusOr<RecoveryResult> Recovery::Run() {
  std::vector<LoopListing> loops;
  absl::Status listed = List(&loops);
  if (!listed.ok()) return listed;
  for (LoopListing& listing : loops) ScanLoop(&listing);
  Resolve();
  return std::move(result_);
}

absl::Status Recovery::List(std::vector<LoopListing>* loops) {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    std::string message = absl::StrCat("spool directory ", dir_, ": ", std::strerror(errno));
    if (errno == ENOENT || errno == ENOTDIR) return absl::NotFoundError(message);
    if (errno == EACCES || errno == EPERM) return absl::PermissionDeniedError(message);
    return absl::UnavailableError(message);
  }
  while (const dirent* entry = ::readdir(d)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == ".." || name == kQuarantineDirName) continue;
    std::optional<uint32_t> loop = ParseLoopDirName(name);
    if (!loop || !IsDirectory(::dirfd(d), entry)) {
      result_.report.ignored.push_back(std::string(name));
      continue;
    }
    LoopListing listing;
    ListLoop(::dirfd(d), entry->d_name, *loop, &listing);
    loops->push_back(std::move(listing));
  }
  ::closedir(d);
  std::sort(loops->begin(), loops->end(),
            [](const LoopListing& a, const LoopListing& b) { return a.loop < b.loop; });
  return absl::OkStatus();
}

void Recovery::ListLoop(int spool_fd, const char* name, uint32_t loop, LoopListing* out) {
  out->loop = loop;
  int fd = ::openat(spool_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
  if (d == nullptr) {
    if (fd >= 0) ::close(fd);
    result_.report.ignored.push_back(absl::StrCat(name, " (", Errno("cannot list"), ")"));
    return;
  }
  while (const dirent* entry = ::readdir(d)) {
    std::string_view file = entry->d_name;
    if (file == "." || file == "..") continue;
    std::optional<uint64_t> recycle = ParseRecycleFileName(file);
    if (recycle && *recycle != 0 && file == RecycleFileName(*recycle)) {
      out->recycling.push_back(*recycle);
      continue;
    }
    std::optional<uint64_t> seq = ParseSegmentFileName(file);
    // Only the canonical spelling: "7.seg" and "000000000007.seg" must not both be segment 7.
    if (!seq || *seq == 0 || file != SegmentFileName(*seq)) {
      result_.report.ignored.push_back(absl::StrCat(name, "/", entry->d_name));
      continue;
    }
    out->segments.push_back(SegmentFile{*seq});
  }
  ::closedir(d);
  std::sort(out->segments.begin(), out->segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.seq < b.seq; });
}

void Recovery::ScanLoop(LoopListing* listing) {
  DropRecycleLeftovers(*listing);
  size_t first_report = result_.report.segments.size();
  for (SegmentFile& file : listing->segments) {
    ScanSegment(SegmentId{listing->loop, file.seq}, &file);
  }
  FinishLoop(*listing, first_report);
}

// A recycle interrupted after its first rename (spool/segment_writer.h): the file is a drained
// segment's, under a name no reader uses; its header may be old, new or torn. Never read,
// never quarantined: removed (when the scan may write), its directory synced.
void Recovery::DropRecycleLeftovers(const LoopListing& listing) {
  bool removed = false;
  for (uint64_t seq : listing.recycling) {
    const SegmentId id{listing.loop, seq};
    std::string path = RecyclePath(dir_, id);
    RecycleLeftover leftover{id, path, false, ""};
    if (options_.remove_recycle_leftovers) {
      if (::unlink(path.c_str()) == 0 || errno == ENOENT) {
        leftover.removed = removed = true;
      } else {
        leftover.error = Errno("unlink");
      }
    }
    result_.report.recycle_leftovers.push_back(std::move(leftover));
  }
  if (removed) SyncDirectory(LoopDirPath(dir_, listing.loop));
}

void Recovery::ScanSegment(SegmentId id, SegmentFile* file) {
  std::string path = SegmentPath(dir_, id);
  SegmentReader reader;
  SegmentOpenStatus open = reader.Open(path);
  if (open.result == SegmentOpenResult::kIoError) {
    file->quarantined = true;
    return Quarantine(id, path, "cannot read: " + open.detail, 0);
  }
  if (open.result == SegmentOpenResult::kBadHeader) {
    file->quarantined = true;
    return Quarantine(id, path, "bad segment header: " + open.detail, 0);
  }
  SegmentReport report;
  report.id = id;
  report.path = path;
  report.file_bytes = reader.file_size();
  ++result_.report.segments_scanned;
  if (open.result == SegmentOpenResult::kEmpty) {
    report.empty = true;
    result_.report.segments.push_back(std::move(report));
    return;
  }
  if (reader.header().loop != id.loop || reader.header().seq != id.seq) {
    file->quarantined = true;
    SegmentId named{reader.header().loop, reader.header().seq};
    return Quarantine(id, path, "segment header names " + named.ToString(), 0);
  }
  std::vector<MessageState> messages;
  std::vector<StateRecord> states;
  ScannedRecord rec;
  while (reader.Next(&rec)) {
    ++report.records;
    if (options_.observer) options_.observer(id, rec);
    Collect(id, rec, &messages, &states);
  }
  report.end = reader.end();
  report.valid_bytes = reader.valid_end();
  result_.report.records += report.records;
  size_t segment_index = kNoSegment;
  if (report.end.kind == SegmentEnd::kIoError) {
    file->quarantined = true;
    Quarantine(id, path, "I/O error: " + report.end.detail, messages.size());
  } else {
    // The writer keeps a spare segment (header, no records) ahead of the active one: an
    // empty, cleanly ending segment must not count as the newest, or the active segment's
    // torn tail would be taken for damage in an older segment and never sealed.
    file->scanned_nonempty = report.records > 0 || report.end.kind != SegmentEnd::kClean;
    report.messages = messages.size();
    for (const StateRecord& s : states) ++(s.done ? report.dones : report.recipient_updates);
    segment_index = result_.report.segments.size();
    result_.report.segments.push_back(std::move(report));
    for (MessageState& m : messages) AddMessage(std::move(m));
  }
  for (StateRecord& s : states) {
    s.segment = segment_index;
    states_.push_back(s);
  }
}

void Recovery::Collect(SegmentId id, ScannedRecord& rec, std::vector<MessageState>* messages,
                       std::vector<StateRecord>* states) {
  uint64_t order = ++order_;
  if (auto* meta = std::get_if<MessageMeta>(&rec.meta)) {
    MessageState m;
    m.order = order;
    CommittedMessage& c = m.message;
    c.id = meta->id;
    c.received_ms = meta->received_ms;
    c.envelope = std::move(meta->envelope);
    c.received_header_length = meta->received_header_length;
    c.location = SpoolLocation{id, rec.offset, rec.header.padded_length(), rec.content_offset(),
                               rec.header.content_length()};
    c.recovered = true;
    for (const core::Recipient& r : c.envelope.recipients) {
      m.keys.push_back(UpdateKey{IsFinal(r.state), r.attempts, 0, order});
    }
    m.copies.push_back(c.location);
    messages->push_back(std::move(m));
  } else if (auto* update = std::get_if<RecipientUpdate>(&rec.meta)) {
    states->push_back(StateRecord{update->id, false, update->recipient_index, update->state,
                                  update->attempts, update->next_attempt_ms, update->changed_ms,
                                  order});
  } else if (auto* done = std::get_if<DoneMark>(&rec.meta)) {
    StateRecord s;
    s.id = done->id;
    s.done = true;
    s.changed_ms = done->done_ms;
    s.order = order;
    states->push_back(s);
  }
}

void Recovery::AddMessage(MessageState&& state) {
  auto [it, inserted] = messages_.try_emplace(state.message.id);
  if (inserted) {
    it->second = std::move(state);
    return;
  }
  // A second copy (compaction): one message, found at the later copy; recipient states merged.
  ++result_.report.duplicate_messages;
  MessageState& kept = it->second;
  std::vector<SpoolLocation> copies = std::move(kept.copies);
  copies.push_back(state.message.location);
  size_t n = kept.message.envelope.recipients.size();
  if (n != state.message.envelope.recipients.size()) {
    ++result_.report.inconsistencies;  // the later copy wins outright
    kept = std::move(state);
  } else {
    for (size_t i = 0; i < n; ++i) {
      if (state.keys[i] < kept.keys[i]) {
        state.keys[i] = kept.keys[i];
        state.message.envelope.recipients[i] = std::move(kept.message.envelope.recipients[i]);
      }
    }
    kept = std::move(state);
  }
  kept.copies = std::move(copies);
}

void Recovery::Quarantine(SegmentId id, const std::string& path, std::string reason,
                          uint64_t dropped) {
  QuarantinedSegment q{id, path, "", std::move(reason), dropped};
  if (options_.quarantine) {
    std::string error;
    q.quarantine_path = MoveToQuarantine(path, id, &error);
    if (q.quarantine_path.empty()) q.reason += "; not moved: " + error;
  }
  result_.report.quarantined.push_back(std::move(q));
}

std::string Recovery::MoveToQuarantine(const std::string& path, SegmentId id,
                                       std::string* error) {
  std::string qdir = QuarantineDirPath(dir_);
  if (::mkdir(qdir.c_str(), 0700) != 0 && errno != EEXIST) {
    *error = Errno("mkdir quarantine");
    return "";
  }
  std::string base = qdir + "/" + LoopDirName(id.loop) + "-" + SegmentFileName(id.seq);
  for (int n = 0; n < kQuarantineNameTries; ++n) {
    std::string target = n == 0 ? base : absl::StrCat(base, ".", n);
    if (::renameat2(AT_FDCWD, path.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0) {
      SyncDirectory(qdir);
      SyncDirectory(LoopDirPath(dir_, id.loop));
      return target;
    }
    if (errno == EEXIST) continue;
    if (errno == EINVAL || errno == ENOSYS) {
      // No RENAME_NOREPLACE on this filesystem: check, then rename (recovery is alone here).
      struct stat st;
      if (::stat(target.c_str(), &st) == 0) continue;
      if (::rename(path.c_str(), target.c_str()) == 0) {
        SyncDirectory(qdir);
        SyncDirectory(LoopDirPath(dir_, id.loop));
        return target;
      }
    }
    *error = Errno("rename");
    return "";
  }
  *error = "too many quarantined files with this name";
  return "";
}

void Recovery::Seal(SegmentReport* segment) {
  uint64_t offset = segment->end.offset;
  uint64_t length = segment->file_bytes - offset;
  int fd = ::open(segment->path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    segment->seal_error = Errno("open");
    return;
  }
  bool zeroed = ::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            static_cast<off_t>(offset), static_cast<off_t>(length)) == 0;
  if (!zeroed && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
    zeroed = WriteZeros(fd, offset, length);
  }
  if (!zeroed) {
    segment->seal_error = Errno("zero the torn tail");
  } else if (::fdatasync(fd) != 0) {
    segment->seal_error = Errno("fdatasync");
  } else {
    segment->sealed = true;
  }
  ::close(fd);
}

void Recovery::FinishLoop(const LoopListing& listing, size_t first_report) {
  LoopRecovery loop;
  loop.loop = listing.loop;
  if (!listing.segments.empty()) loop.last_seq = listing.segments.back().seq;
  loop.next_seq = loop.last_seq + 1;
  // A number a recycle had taken is not used again either.
  for (uint64_t seq : listing.recycling) loop.next_seq = std::max(loop.next_seq, seq + 1);
  // The newest segment: the highest-numbered one that holds something (a quarantined file
  // counts, so that an older segment is never taken for the newest).
  const SegmentFile* newest = nullptr;
  for (auto it = listing.segments.rbegin(); it != listing.segments.rend(); ++it) {
    if (it->scanned_nonempty || it->quarantined) {
      newest = &*it;
      break;
    }
  }
  std::vector<SegmentReport>& reports = result_.report.segments;
  for (size_t i = first_report; newest != nullptr && i < reports.size(); ++i) {
    SegmentReport& r = reports[i];
    if (r.empty || r.id.seq != newest->seq) continue;
    r.newest_in_loop = true;
    if (r.end.kind == SegmentEnd::kTornTail && options_.seal_torn_tails) Seal(&r);
    if (newest->seq == loop.last_seq) {
      loop.append_offset = r.valid_bytes;
      loop.append_safe = r.end.kind == SegmentEnd::kClean || r.sealed;
    }
  }
  result_.report.loops.push_back(loop);
}

void Recovery::ApplyUpdate(const StateRecord& s, MessageState* m) {
  std::vector<core::Recipient>& rcpts = m->message.envelope.recipients;
  if (s.index >= rcpts.size()) {
    ++result_.report.inconsistencies;
    return;
  }
  UpdateKey key{IsFinal(s.state), s.attempts, s.changed_ms, s.order};
  if (key < m->keys[s.index]) return;
  m->keys[s.index] = key;
  rcpts[s.index].state = s.state;
  rcpts[s.index].attempts = s.attempts;
  rcpts[s.index].next_attempt_ms = s.next_attempt_ms;
}

void Recovery::Resolve() {
  RecoveryReport& report = result_.report;
  for (const StateRecord& s : states_) {
    if (s.done) done_.insert(s.id);
    auto it = messages_.find(s.id);
    if (it == messages_.end()) {
      ++report.orphan_records;
      continue;
    }
    if (s.segment != kNoSegment) {
      SegmentReport& from = report.segments[s.segment];
      for (const SpoolLocation& copy : it->second.copies) {
        if (copy.segment != from.id) from.pins.push_back(copy.segment);
      }
    }
    if (!s.done) ApplyUpdate(s, &it->second);
  }
  for (SegmentReport& segment : report.segments) {
    std::sort(segment.pins.begin(), segment.pins.end());
    segment.pins.erase(std::unique(segment.pins.begin(), segment.pins.end()),
                       segment.pins.end());
  }
  std::vector<MessageState*> ordered;
  ordered.reserve(messages_.size());
  for (auto& [id, state] : messages_) ordered.push_back(&state);
  std::sort(ordered.begin(), ordered.end(),
            [](const MessageState* a, const MessageState* b) { return a->order < b->order; });
  for (MessageState* m : ordered) {
    RecoveredMessage out{std::move(m->message), {}};
    m->copies.pop_back();  // the last copy is where the message is
    out.stale_copies = std::move(m->copies);
    if (done_.contains(out.message.id)) {
      ++report.done_messages;
      if (options_.keep_done) result_.done.push_back(std::move(out));
    } else {
      ++report.live_messages;
      result_.live.push_back(std::move(out));
    }
  }
}

}  // namespace

size_t RecoveryReport::CountEnds(SegmentEnd kind) const {
  return static_cast<size_t>(std::count_if(segments.begin(), segments.end(),
                                           [kind](const SegmentReport& s) {
                                             return !s.empty && s.end.kind == kind;
                                           }));
}

std::string RecoveryReport::Summary() const {
  return absl::StrCat("spool recovery: ", segments_scanned, " segments, ", records, " records, ",
                      live_messages, " live, ", done_messages, " done, ",
                      CountEnds(SegmentEnd::kTornTail), " torn tails, ",
                      CountEnds(SegmentEnd::kCorrupt), " corrupt, ", quarantined.size(),
                      " quarantined, ", orphan_records, " orphan records, ", inconsistencies,
                      " inconsistencies",
                      recycle_leftovers.empty()
                          ? ""
                          : absl::StrCat(", ", recycle_leftovers.size(), " interrupted recycles"));
}

absl::StatusOr<RecoveryResult> RecoverSpool(const std::string& spool_dir,
                                            const RecoveryOptions& options) {
  return Recovery(spool_dir, options).Run();
}

}  // namespace ringmail::spool
