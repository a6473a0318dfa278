// delivery/topology.h — who is where: the loops that own messages (Ledgers) and the loops
// that deliver (Engines), so either side can Post to the other.
//
// Built once by ringmaild on the master before any traffic, then only read (any thread):
// the pointers never change while loops run. Ledger and Engine objects outlive their loops'
// threads (ringmaild destroys them after the loops stopped).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "core/loop.h"

namespace ringmail::delivery {

class Ledger;
class Engine;

struct DeliveryTopology {
  // The delivery_pool: engines[i] lives on delivery_loops[i].
  std::vector<core::Loop*> delivery_loops;
  std::vector<Engine*> engines;
  // Indexed by core::Loop::index(); nullptr where a loop owns no spool segment.
  std::vector<core::Loop*> owner_loops;
  std::vector<Ledger*> ledgers;

  // The delivery shard of a (lower-case) domain: the same domain always lands on the same
  // engine, so a domain record lives on one loop only.
  size_t ShardFor(std::string_view domain) const {
    return absl::Hash<absl::string_view>{}(absl::string_view(domain.data(), domain.size())) %
           engines.size();
  }
};

}  // namespace ringmail::delivery
