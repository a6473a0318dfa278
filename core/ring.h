// core/ring.h — the kernel boundary: one io_uring, its set-up flags, the opcode probe,
// SQE acquisition and completion decoding.
//
// Contract
// - A Ring is created on, and used only by, the thread that runs its loop (the kernel's
//   SINGLE_ISSUER rule: the creating task is the only one allowed to submit).
// - Every ring operation is described by an `Operation` embedded in its owner (STYLE.md
//   principle 1): user_data is the Operation's address, the handler is a plain function
//   pointer plus the owner pointer. No per-operation allocation.
// - An Operation is idle → submitted → idle; arming a submitted one is a bug (checked).
//   A multishot operation stays submitted while its completions carry IORING_CQE_F_MORE.
// - The owner of an Operation must not be destroyed while the Operation is submitted
//   (STYLE.md principle 3): cancel, wait for the final completion, then free.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/check.h"

namespace ringmail::core {

// The kernel's answer to one operation, decoded at the boundary. `res` < 0 is an error;
// callers read it through error() as a positive errno, never as a raw negative number.
struct IoResult {
  int32_t res = 0;
  uint32_t flags = 0;

  bool ok() const { return res >= 0; }
  int error() const { return res < 0 ? -res : 0; }
  uint32_t value() const { return res >= 0 ? static_cast<uint32_t>(res) : 0; }
  // A multishot operation will complete again (it is still armed).
  bool more() const { return (flags & IORING_CQE_F_MORE) != 0; }
  bool has_buffer() const { return (flags & IORING_CQE_F_BUFFER) != 0; }
  uint16_t buffer_id() const { return static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT); }
  bool is_notification() const { return (flags & IORING_CQE_F_NOTIF) != 0; }
  bool canceled() const { return res == -ECANCELED; }
};

struct Operation;
using OperationHandler = void (*)(void* owner, Operation& op, IoResult result);

struct Operation {
  enum class State : uint8_t { kIdle, kSubmitted };

  State state = State::kIdle;
  bool multishot = false;
  OperationHandler handler = nullptr;
  void* owner = nullptr;
  const char* name = "op";  // for diagnostics when an impossible error arrives

  Operation() = default;
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  bool idle() const { return state == State::kIdle; }

  // Binds the handler `Method` of `owner`: op completions call owner->Method(op, result).
  template <auto Method, typename Owner>
  void Bind(Owner* o, const char* op_name) {
    owner = o;
    name = op_name;
    handler = [](void* raw, Operation& op, IoResult r) {
      (static_cast<Owner*>(raw)->*Method)(op, r);
    };
  }
};

struct RingOptions {
  unsigned sq_entries = 1024;
  unsigned cq_entries = 16384;
  // DEFER_TASKRUN needs SINGLE_ISSUER; both need the ring made on its own thread.
  bool defer_taskrun = true;
};

// Opcodes ringmail relies on; Probe() checks them all and names the missing ones.
absl::Status ProbeKernel();

class Ring {
 public:
  // Creates the ring for the calling thread. The error message says in one line why
  // io_uring is unusable (kernel.io_uring_disabled, seccomp, old kernel) and what to do.
  static absl::StatusOr<std::unique_ptr<Ring>> Create(const RingOptions& options);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // An SQE for `op`; when the SQ is full, submits what is queued and retries (never null).
  // The caller prepares the SQE (io_uring_prep_*) and must not fail between the two steps.
  io_uring_sqe* Prepare(Operation& op);
  // An SQE whose completion is ignored (fire-and-forget: cancels, MSG_RING wakes).
  io_uring_sqe* PrepareUntracked();
  // Asks the kernel to cancel `op` if it is in flight, matched by its user_data (the fd it
  // uses may already be another socket's). Fire-and-forget: `op`'s own completion still
  // arrives (-ECANCELED, or its result if it finished first). Nothing when `op` is idle.
  void Cancel(const Operation& op);

  // Submits queued SQEs and waits for at least `wait_nr` completions or `timeout_ns`
  // (negative: no timeout). Returns the number submitted, or a negative errno
  // (-ETIME, -EINTR are normal).
  int SubmitAndWait(unsigned wait_nr, int64_t timeout_ns);
  int Submit();

  // Copies up to `max` CQEs into `out` and advances the CQ once (reap first, run later).
  unsigned Reap(io_uring_cqe* out, unsigned max);
  unsigned ready() const { return io_uring_cq_ready(&ring_); }
  unsigned sq_pending() const { return io_uring_sq_ready(&ring_); }

  int fd() const { return ring_.ring_fd; }
  io_uring* raw() { return &ring_; }
  uint64_t submitted_total() const { return submitted_total_; }

  // user_data values that are not Operations.
  static constexpr uint64_t kUntracked = 0;
  static constexpr uint64_t kWake = 1;

 private:
  Ring() = default;
  io_uring_sqe* GetSqeOrFlush();

  io_uring ring_{};
  uint64_t submitted_total_ = 0;
};

}  // namespace ringmail::core
