// core/buffers.h — a provided-buffer ring: the loop's pool of receive buffers.
//
// Multishot recv picks a buffer from this ring when data arrives, so an idle connection
// holds no receive buffer. The handler reads the bytes through View(bid) and gives the
// buffer back with Recycle(bid) as soon as they are parsed (published to the kernel at
// once).
// When every buffer is out, recv completes with -ENOBUFS: back-pressure, not an error.
//
// Set up by hand (liburing 2.3 has no io_uring_setup_buf_ring): mmap the ring,
// io_uring_buf_ring_init, io_uring_register_buf_ring. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/ring.h"

namespace ringmail::core {

class BufferRing {
 public:
  // `count` must be a power of two ≤ 32768; `buffer_bytes` > 0.
  static absl::StatusOr<std::unique_ptr<BufferRing>> Create(Ring& ring, uint16_t group_id,
                                                            uint32_t count,
                                                            uint32_t buffer_bytes);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group_id() const { return group_id_; }
  uint32_t buffer_bytes() const { return buffer_bytes_; }
  uint32_t count() const { return count_; }
  uint32_t outstanding() const { return outstanding_; }

  // The `len` bytes the kernel put in buffer `bid`; the buffer is now ours until Recycle.
  std::string_view Take(uint16_t bid, uint32_t len);
  void Recycle(uint16_t bid);

 private:
  BufferRing(Ring& ring, uint16_t group_id, uint32_t count, uint32_t buffer_bytes)
      : ring_(ring), group_id_(group_id), count_(count), buffer_bytes_(buffer_bytes) {}

  Ring& ring_;
  uint16_t group_id_;
  uint32_t count_;
  uint32_t buffer_bytes_;
  io_uring_buf_ring* br_ = nullptr;
  size_t ring_bytes_ = 0;
  std::unique_ptr<char[]> storage_;
  uint32_t outstanding_ = 0;
  bool registered_ = false;
};

}  // namespace ringmail::core
