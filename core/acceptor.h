// core/acceptor.h — one multishot accept on one listening socket, on one loop.
//
// Every listener (ESMTP, HTTP, control) owns one Acceptor per listening socket; the
// listener keeps what differs between them (implicit TLS, a socket path, which counters
// to bump) and hears each new connection through one bound handler call.
//
// Contract
// - Loop thread only: created, started, closed and destroyed on the thread of `loop`. The
//   destructor may also run after that loop has stopped and been joined.
// - Start(fd) hands the listening fd to the Acceptor: it owns it from then on and closes it
//   in its destructor, never earlier — an accept may still be in flight naming it after
//   Close(). StopListening() is Close() plus shutdown() of that socket, so that
//   connections waiting in the backlog are refused rather than left hanging (a drain).
// - The handler is `void Owner::Method(Accepted)`, bound with Bind<&Owner::Method>(owner),
//   or `void Owner::Method(Context, Accepted)`, bound with Bind<&Owner::Method>(owner, c)
//   where `c` is a small copyable value the owner keeps per socket (ESMTP and HTTP: whether
//   the socket speaks TLS from the first byte). A plain function pointer plus the owner
//   pointer, like Operation and Timer: no allocation, one indirect call per connection.
//   It hears
//     Accepted{fd >= 0, 0}: a new connection (SOCK_CLOEXEC); the owner owns `fd` now.
//     Accepted{-1, errno}: the multishot accept ended with that error (never reported
//       after Close() nor on a stopping loop, where the end is the expected cancel).
//       Nothing to do but count it: the Acceptor has already chosen to re-arm or back off.
//   The handler may call Close(); it must not destroy the Acceptor.
// - Back-off: EMFILE, ENFILE, ENOMEM and ENOBUFS (out of descriptors or memory) re-arm
//   after `retry_ms` on the loop's timer queue instead of spinning on the error; any other
//   error re-arms at once. A multishot ending without an error (the kernel may end one, e.g.
//   on CQ overflow) is re-armed silently.
// - Close() stops accepting for good: it cancels the back-off timer and the armed accept.
//   No handler runs after Close() returns: a connection the kernel accepted before the
//   cancel took effect is closed here (counted in stats().dropped). The accept may still be
//   in flight when Close() returns; idle() tells when its final completion has arrived (a
//   stopping loop waits for it). Destroying an Acceptor that is not idle is a bug (checked).
// - A stopping loop (Loop::stopping()) is never re-armed into; owners still call Close()
//   from their Loop::OnStop handler so that nothing is delivered while sessions are torn
//   down.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/loop.h"
#include "core/ring.h"
#include "core/timers.h"

namespace ringmail::core {

// What an Acceptor tells its owner; see the contract above.
struct Accepted {
  int fd = -1;    // >= 0: a new connection, now owned by the handler's owner
  int error = 0;  // > 0 (fd == -1): the errno that ended the multishot accept
};

struct AcceptorStats {
  uint64_t accepted = 0;  // handed to the owner
  uint64_t errors = 0;    // multishot ends with an error (reported to the owner)
  uint64_t backoffs = 0;  // of those, resource errors that armed the retry timer
  uint64_t dropped = 0;   // accepted by the kernel after Close(), closed here
};

class Acceptor {
 public:
  // Resource errors wait this long before the accept is armed again.
  static constexpr uint64_t kDefaultRetryMs = 100;

  // `name` names the ring operation in diagnostics ("esmtp.accept"); it must outlive the
  // Acceptor (a string literal).
  Acceptor(Loop& loop, const char* name, uint64_t retry_ms = kDefaultRetryMs);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  template <auto Method, typename Owner>
  void Bind(Owner* owner) {
    owner_ = owner;
    handler_ = [](void* raw, uintptr_t, Accepted a) { (static_cast<Owner*>(raw)->*Method)(a); };
  }
  template <auto Method, typename Owner, typename Context>
  void Bind(Owner* owner, Context context) {
    static_assert(std::is_trivially_copyable_v<Context> && sizeof(Context) <= sizeof(uintptr_t),
                  "the per-socket context is a small value kept inside the Acceptor");
    owner_ = owner;
    std::memcpy(&context_, &context, sizeof(Context));
    handler_ = [](void* raw, uintptr_t stored, Accepted a) {
      Context c;
      std::memcpy(&c, &stored, sizeof(Context));
      (static_cast<Owner*>(raw)->*Method)(c, a);
    };
  }

  // Takes ownership of the listening socket `listen_fd` and arms the multishot accept.
  // Once per Acceptor, after Bind().
  void Start(int listen_fd);
  // Stops accepting; see the contract. Idempotent.
  void Close();
  // Close(), and shuts the listening socket down as well: clients waiting in the backlog
  // and any that connect later are refused at once instead of waiting, unanswered, until
  // the socket is closed with the Acceptor (a draining listener: they try another MX or
  // node). Idempotent.
  void StopListening();

  int fd() const { return fd_; }
  bool closed() const { return closed_; }
  // No accept is in flight (before Start, between a resource error and its retry, and
  // after Close() once the cancelled accept has completed).
  bool idle() const { return op_.idle(); }
  bool backing_off() const { return retry_.armed(); }
  const AcceptorStats& stats() const { return stats_; }

 private:
  using Handler = void (*)(void* owner, uintptr_t context, Accepted accepted);

  void Arm();
  void AcceptDone(Operation& op, IoResult result);
  void RetryFired(Timer& timer);

  Loop& loop_;
  const uint64_t retry_ms_;
  int fd_ = -1;
  bool closed_ = false;
  Handler handler_ = nullptr;
  void* owner_ = nullptr;
  uintptr_t context_ = 0;
  Operation op_;
  Timer retry_;
  AcceptorStats stats_;
};

}  // namespace ringmail::core
