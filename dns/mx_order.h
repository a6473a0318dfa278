// dns/mx_order.h — the order in which a domain's mail exchangers are tried (pure).
//
// RFC 5321 section 5.1: lower preference first; hosts of equal preference are tried in a
// random order so that load spreads over them. The random source is injected so tests can
// seed it. Any thread; no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"

namespace ringmail::dns {

struct MxHost {
  uint16_t preference = 0;
  std::string host;  // canonical: lower-case, no trailing dot

  friend bool operator==(const MxHost&, const MxHost&) = default;
};

// Canonical list as cached: one entry per host (its lowest preference kept), sorted by
// preference then host name, at most `hosts_max` entries (the most preferred ones).
void CanonicalizeMx(std::vector<MxHost>& hosts, size_t hosts_max);

// Orders `hosts` for one delivery attempt: ascending preference, each run of equal
// preference shuffled uniformly with `rng`.
void OrderMx(std::vector<MxHost>& hosts, absl::BitGenRef rng);

}  // namespace ringmail::dns
