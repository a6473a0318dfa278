#include "core/ring.h"

#include <sys/utsname.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ringmail::core {
namespace {

struct NamedOpcode {
  int opcode;
  const char* name;
};

constexpr NamedOpcode kRequiredOpcodes[] = {
    {IORING_OP_ACCEPT, "ACCEPT"},       {IORING_OP_RECV, "RECV"},
    {IORING_OP_SEND, "SEND"},           {IORING_OP_SENDMSG, "SENDMSG"},
    {IORING_OP_TIMEOUT, "TIMEOUT"},     {IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT"},
    {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"}, {IORING_OP_MSG_RING, "MSG_RING"},
    {IORING_OP_OPENAT, "OPENAT"},       {IORING_OP_WRITEV, "WRITEV"},
    {IORING_OP_WRITE, "WRITE"},         {IORING_OP_READ, "READ"},
    {IORING_OP_FSYNC, "FSYNC"},         {IORING_OP_UNLINKAT, "UNLINKAT"},
    {IORING_OP_CLOSE, "CLOSE"},         {IORING_OP_POLL_ADD, "POLL_ADD"},
    {IORING_OP_CONNECT, "CONNECT"},     {IORING_OP_FALLOCATE, "FALLOCATE"},
};

std::string ExplainSetupFailure(int err) {
  std::string why = absl::StrCat("io_uring is unavailable (", std::strerror(err), ")");
  FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r");
  int disabled = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%d", &disabled) != 1) disabled = 0;
    std::fclose(f);
  }
  if (disabled != 0) {
    return absl::StrCat(why, ": kernel.io_uring_disabled=", disabled,
                        "; run `sysctl -w kernel.io_uring_disabled=0` (or add the daemon's "
                        "group to kernel.io_uring_group) and start again");
  }
  if (err == EPERM || err == ENOSYS) {
    return absl::StrCat(why, ": a seccomp filter or container policy blocks io_uring_setup; "
                        "allow the io_uring_setup/io_uring_enter/io_uring_register syscalls");
  }
  if (err == EINVAL) {
    utsname u{};
    uname(&u);
    return absl::StrCat(why, ": kernel ", u.release, " lacks SINGLE_ISSUER/DEFER_TASKRUN; "
                        "ringmail needs Linux 6.1 or later");
  }
  if (err == ENOMEM) {
    return absl::StrCat(why, ": locked-memory limit too low; raise `ulimit -l` "
                        "(LimitMEMLOCK= in the systemd unit)");
  }
  return why;
}

}  // namespace

absl::Status ProbeKernel() {
  io_uring_probe* probe = io_uring_get_probe();
  if (probe == nullptr) {
    return absl::UnavailableError(ExplainSetupFailure(errno != 0 ? errno : ENOSYS));
  }
  std::vector<std::string> missing;
  for (const NamedOpcode& op : kRequiredOpcodes) {
    if (!io_uring_opcode_supported(probe, op.opcode)) missing.push_back(op.name);
  }
  io_uring_free_probe(probe);
  if (!missing.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "io_uring lacks opcodes ringmail needs: ", absl::StrJoin(missing, ", "),
        "; ringmail needs Linux 6.1 or later"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(const RingOptions& options) {
  std::unique_ptr<Ring> ring(new Ring());
  io_uring_params params{};
  params.cq_entries = options.cq_entries;
  // CQSIZE: a large CQ so bursts of multishot completions never overflow.
  // CLAMP: tolerate limits lower than asked rather than failing.
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
  if (options.defer_taskrun) {
    // SINGLE_ISSUER: only this thread submits, so the kernel skips its locking.
    // DEFER_TASKRUN: completion work runs when we enter to wait, not by IPI mid-handler.
    // TASKRUN_FLAG: the kernel flags pending deferred work so a non-waiting submit
    // still enters to run it.
    params.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                    IORING_SETUP_TASKRUN_FLAG;
  } else {
    params.flags |= IORING_SETUP_COOP_TASKRUN;
  }
  int rc = io_uring_queue_init_params(options.sq_entries, &ring->ring_, &params);
  if (rc < 0) return absl::UnavailableError(ExplainSetupFailure(-rc));
  // A registered ring fd saves an fdget/fdput per io_uring_enter; failure is harmless.
  (void)io_uring_register_ring_fd(&ring->ring_);
  return ring;
}

Ring::~Ring() { io_uring_queue_exit(&ring_); }

io_uring_sqe* Ring::GetSqeOrFlush() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    int rc = io_uring_submit(&ring_);
    RM_CHECK(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY)
        << "io_uring_submit failed: " << std::strerror(-rc);
    if (rc > 0) submitted_total_ += static_cast<uint64_t>(rc);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

io_uring_sqe* Ring::Prepare(Operation& op) {
  RM_CHECK(op.state == Operation::State::kIdle) << "operation " << op.name << " armed twice";
  RM_DCHECK(op.handler != nullptr);
  io_uring_sqe* sqe = GetSqeOrFlush();
  op.state = Operation::State::kSubmitted;
  io_uring_sqe_set_data(sqe, &op);
  return sqe;
}

io_uring_sqe* Ring::PrepareUntracked() {
  io_uring_sqe* sqe = GetSqeOrFlush();
  io_uring_sqe_set_data64(sqe, kUntracked);
  return sqe;
}

void Ring::Cancel(const Operation& op) {
  if (op.idle()) return;
  io_uring_prep_cancel64(PrepareUntracked(), reinterpret_cast<uint64_t>(&op), 0);
}

int Ring::SubmitAndWait(unsigned wait_nr, int64_t timeout_ns) {
  int rc;
  if (timeout_ns < 0) {
    rc = io_uring_submit_and_wait(&ring_, wait_nr);
  } else {
    __kernel_timespec ts{};
    ts.tv_sec = timeout_ns / 1'000'000'000;
    ts.tv_nsec = timeout_ns % 1'000'000'000;
    io_uring_cqe* cqe = nullptr;
    rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_nr, &ts, nullptr);
  }
  if (rc > 0) submitted_total_ += static_cast<uint64_t>(rc);
  return rc;
}

int Ring::Submit() {
  int rc = io_uring_submit(&ring_);
  if (rc > 0) submitted_total_ += static_cast<uint64_t>(rc);
  return rc;
}

unsigned Ring::Reap(io_uring_cqe* out, unsigned max) {
  unsigned head;
  unsigned n = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    if (n == max) break;
    out[n++] = *cqe;
  }
  io_uring_cq_advance(&ring_, n);
  return n;
}

}  // namespace ringmail::core
