// delivery/body_reader.h — reading a message's content back from its spool segment on the
// ring, for the outbound SMTP client.
//
// BodyFiles: one per Engine (delivery loop), the segment files opened for reading, by path.
//   A file is opened once (O_RDONLY | O_CLOEXEC, a plain open(2) on the loop thread: a
//   local file's open is brief) and shared by every connection that sends a message from
//   it. Acquire() pins the file while a transaction reads it; unpinned files are closed
//   when more than `files_max` are open (least recently used first) and once they have
//   been idle for a while (CloseIdle: a drained segment the owner loop unlinked must not
//   keep its disk space through our descriptor). Closing goes through the ring when the
//   loop runs (no blocking on the last reference of a large unlinked file).
//
// BodyReader: embedded in one connection; streams [offset, offset + length) of a file with
//   IORING_OP_READ in chunks of kBodyChunkBytes into its buffer, and turns each chunk into
//   wire bytes: through a DotStuffer (DATA) or unchanged (BDAT). The connection asks for
//   the next chunk only when its send queue has room, so a large body never sits in memory
//   whole. Short reads continue where they stopped; EINTR/EAGAIN are read again; a read
//   error or an early end of file is a failure (the machine's BodyFailed()).
//
// Thread: the owning loop's only. Lifetimes: BodyFiles outlives every connection (the
// Engine owns both); a BodyReader's owner must wait until reading() is false before it
// dies (principle 3: cancel, then wait).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/loop.h"
#include "core/ring.h"
#include "delivery/client_machine.h"

namespace ringmail::delivery {

inline constexpr size_t kBodyChunkBytes = 64 * 1024;

class BodyFiles {
 public:
  struct File;  // opaque to users: an open segment file and its pin count

  BodyFiles(core::Loop* loop, size_t files_max);
  ~BodyFiles();  // every file must be released; closes what is open
  BodyFiles(const BodyFiles&) = delete;
  BodyFiles& operator=(const BodyFiles&) = delete;

  // Opens (or finds) `path` and pins it. kNotFound / kPermissionDenied / kUnavailable with
  // the errno text when it cannot be opened.
  absl::StatusOr<File*> Acquire(const std::string& path, uint64_t now_ms);
  // One more pin on a file already acquired (a body read in flight holds its own).
  void Pin(File* file);
  void Release(File* file, uint64_t now_ms);
  static int fd(const File* file);

  // The segment at `path` was removed (unlinked or recycled by its owner loop): its file is
  // closed now, or at its last Release if a read still pins it, so that an unlinked
  // segment's blocks return to the filesystem at once rather than at the idle sweep (on a
  // nearly full disk those blocks are what the next segment needs). A later Acquire of the
  // same path opens it again. Unknown paths are ignored.
  void Forget(const std::string& path);
  // Closes unpinned files idle for at least `idle_ms`.
  void CloseIdle(uint64_t now_ms, uint64_t idle_ms);
  // Closes every unpinned file (the loop is stopping).
  void CloseAllUnpinned();

  size_t open_files() const { return lru_.size(); }
  uint64_t forgotten() const { return forgotten_; }  // files closed early by Forget()
  uint64_t opens() const { return opens_; }

 private:
  void Close(std::list<File>::iterator it);
  void EvictBeyondLimit();

  core::Loop* loop_;  // null: close with close(2) (tests, or after the loop stopped)
  size_t files_max_;
  std::list<File> lru_;  // front: most recently used
  absl::flat_hash_map<std::string, std::list<File>::iterator> by_path_;
  uint64_t opens_ = 0;
  uint64_t forgotten_ = 0;
};

struct BodyFiles::File {
  std::string path;
  int fd = -1;
  uint32_t pins = 0;
  uint64_t last_used_ms = 0;
  bool forgotten = false;  // Forget() while pinned: no longer in by_path_, closed at 0 pins
};

class BodyReader {
 public:
  BodyReader();
  BodyReader(const BodyReader&) = delete;
  BodyReader& operator=(const BodyReader&) = delete;
  ~BodyReader();

  // `owner->Method()` runs after every read completion (chunk ready, finished or failed).
  template <auto Method, typename Owner>
  void Bind(Owner* owner) {
    owner_ = owner;
    handler_ = [](void* raw) { (static_cast<Owner*>(raw)->*Method)(); };
  }

  // Starts a body: `length` bytes of `fd` from `offset`, encoded as `encoding`.
  void Begin(int fd, uint64_t offset, uint64_t length, BodyEncoding encoding);
  // Submits the next chunk's read (no-op while one is in flight or when all is read).
  void ReadNext(core::Loop& loop);
  // Moves the wire bytes produced so far to the end of `out`; after the last chunk this
  // includes the DotStuffer's end ("\r\n.\r\n" as needed).
  void TakeEncoded(std::string* out);
  // Cancels an in-flight read (for closing); reading() turns false on its completion.
  void Cancel(core::Loop& loop);
  // Forgets the current body (after it finished or failed, or when the session ended).
  void Reset();

  bool active() const { return active_; }
  bool reading() const { return !read_op_.idle(); }
  bool finished() const { return active_ && done_ == length_ && !failed_; }
  bool failed() const { return failed_; }
  uint64_t encoded_pending() const { return encoded_.size(); }
  uint64_t bytes_read() const { return done_; }

 private:
  void ReadDone(core::Operation& op, core::IoResult result);

  core::Operation read_op_;
  void* owner_ = nullptr;
  void (*handler_)(void*) = nullptr;
  std::unique_ptr<char[]> buffer_;  // kBodyChunkBytes, made on the first body
  int fd_ = -1;
  uint64_t offset_ = 0;
  uint64_t length_ = 0;
  uint64_t done_ = 0;
  BodyEncoding encoding_ = BodyEncoding::kDotStuffed;
  DotStuffer stuffer_;
  std::string encoded_;
  bool active_ = false;
  bool failed_ = false;
  bool finish_emitted_ = false;
  bool cancelled_ = false;
};

}  // namespace ringmail::delivery
