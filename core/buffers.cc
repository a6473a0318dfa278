#include "core/buffers.h"

#include <sys/mman.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringmail::core {

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::Create(Ring& ring, uint16_t group_id,
                                                               uint32_t count,
                                                               uint32_t buffer_bytes) {
  RM_CHECK(count > 0 && count <= 32768 && (count & (count - 1)) == 0)
      << "buffer ring size must be a power of two up to 32768";
  RM_CHECK(buffer_bytes > 0);
  std::unique_ptr<BufferRing> br(new BufferRing(ring, group_id, count, buffer_bytes));
  br->ring_bytes_ = count * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, br->ring_bytes_, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("buffer ring mmap: ", strerror(errno)));
  }
  br->br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br->br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(mem);
  reg.ring_entries = count;
  reg.bgid = group_id;
  int rc = io_uring_register_buf_ring(ring.raw(), &reg, 0);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(
        "provided buffer rings unavailable (", strerror(-rc), "); ringmail needs Linux 5.19+"));
  }
  br->registered_ = true;
  br->storage_ = std::make_unique_for_overwrite<char[]>(size_t{count} * buffer_bytes);
  const int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_buf_ring_add(br->br_, br->storage_.get() + size_t{i} * buffer_bytes, buffer_bytes,
                          static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br->br_, static_cast<int>(count));
  return br;
}

BufferRing::~BufferRing() {
  if (registered_) io_uring_unregister_buf_ring(ring_.raw(), group_id_);
  if (br_ != nullptr) munmap(br_, ring_bytes_);
}

std::string_view BufferRing::Take(uint16_t bid, uint32_t len) {
  RM_DCHECK(bid < count_);
  RM_DCHECK(len <= buffer_bytes_);
  ++outstanding_;
  return {storage_.get() + size_t{bid} * buffer_bytes_, len};
}

void BufferRing::Recycle(uint16_t bid) {
  RM_DCHECK(bid < count_);
  RM_DCHECK(outstanding_ > 0);
  --outstanding_;
  // Published at once: the tail update is one release store, and a buffer held back
  // until later in the turn could make a recv fail with ENOBUFS for nothing.
  io_uring_buf_ring_add(br_, storage_.get() + size_t{bid} * buffer_bytes_, buffer_bytes_, bid,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

}  // namespace ringmail::core
