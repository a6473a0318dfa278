// fuzz/fuzz_util.h — small helpers shared by the libFuzzer targets in fuzz/ (built only with
// -DRINGMAIL_BUILD_FUZZ=ON under clang; see fuzz/CMakeLists.txt and scripts/fuzz.sh).
//
// Header-only, single-threaded: each target calls these from LLVMFuzzerTestOneInput. Every
// decision a target makes (how to slice its input, which event to inject when) comes from
// the fuzz input itself, never from a clock or a global RNG, so a crash file replays
// exactly. Oracles use RM_CHECK (base/check.h): a failed property aborts with file:line,
// which libFuzzer reports as a crash and saves the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringmail::fuzz {

// A deterministic stream of choices seeded from fuzz bytes (xorshift64*): used where a
// target needs many small decisions (cut points) without spending many input bytes on them.
class Choices {
 public:
  explicit Choices(uint64_t seed) : state_(seed | 1) {}
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform enough in [0, bound) for slicing; bound must be > 0.
  size_t Below(size_t bound) { return static_cast<size_t>(Next() % bound); }

 private:
  uint64_t state_;
};

// Cuts `input` into pieces whose sizes follow `choices`: mostly short pieces (split points
// land next to every byte) with the occasional long one, so both the byte-at-a-time and the
// vector paths of a scanner see every kind of boundary. Empty pieces are included too: a
// reader must accept a zero-length feed.
inline std::vector<std::string_view> SliceInput(std::string_view input, Choices& choices) {
  std::vector<std::string_view> pieces;
  while (!input.empty()) {
    const uint64_t pick = choices.Next();
    size_t n;
    switch (pick % 8) {
      case 0:
        n = 0;
        break;
      case 1:
      case 2:
      case 3:
        n = 1 + (pick >> 8) % 4;
        break;
      case 4:
      case 5:
        n = 1 + (pick >> 8) % 40;
        break;
      default:
        n = 1 + (pick >> 8) % (input.size() + 1);
        break;
    }
    if (n > input.size()) n = input.size();
    pieces.push_back(input.substr(0, n));
    input.remove_prefix(n);
  }
  return pieces;
}

}  // namespace ringmail::fuzz
