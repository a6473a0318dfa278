// spool/crc32c.h — CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
// spool record and segment header.
//
// Pure functions, callable from any thread. On x86-64 CPUs with SSE4.2 the `crc32` instruction
// is used (three interleaved streams for long buffers, recombined with precomputed shift
// tables, because one stream is latency-bound at ~8 bytes per 3 cycles); elsewhere a portable
// slicing-by-8 table implementation. The choice is made once, at first use, with
// __builtin_cpu_supports. Both paths give identical results (tests compare them).
//
// Convention: Crc32c("") == 0 and Crc32cExtend(Crc32c(a), b) == Crc32c(a + b), so a record's
// checksum can be computed incrementally over its header, its body chunks and its padding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringmail::spool {

// The CRC32C of `crc`'s message followed by `size` bytes at `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32cExtend(uint32_t crc, std::string_view bytes) {
  return Crc32cExtend(crc, bytes.data(), bytes.size());
}

inline uint32_t Crc32c(std::string_view bytes) { return Crc32cExtend(0, bytes); }

// Whether Crc32cExtend uses the SSE4.2 instruction on this machine.
bool Crc32cUsesHardware();

// The two implementations, exposed for tests and benchmarks. Crc32cExtendHardware may be
// called only when Crc32cUsesHardware() is true.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t size);
uint32_t Crc32cExtendHardware(uint32_t crc, const void* data, size_t size);

}  // namespace ringmail::spool
