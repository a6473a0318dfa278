// dns/cache.h — a loop's DNS answer cache: (record type, name) → answer, with expiry.
//
// Positive answers live for their record TTL, capped at `ttl_max_s`; NODATA and NXDOMAIN
// live for the SOA's negative TTL (RFC 2308) capped at `negative_ttl_max_s`, or
// `negative_ttl_default_s` when the server sent no SOA; errors are never cached (a dead
// server must not be remembered as a dead domain). The entry count is bounded: inserting
// into a full cache evicts the least recently used entry.
//
// One per loop, owned by the Resolver and touched on that loop's thread only. Time is
// passed in (the loop's now_ms()), so the class is pure and tests control the clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "base/string_view.h"
#include "dns/answer.h"

namespace ringmail::dns {

struct CacheOptions {
  size_t entries_max = 10000;  // 0 disables caching
  uint32_t ttl_max_s = 3600;
  uint32_t negative_ttl_default_s = 60;
  uint32_t negative_ttl_max_s = 300;
};

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t inserts = 0;
  uint64_t evictions = 0;    // pushed out by the entry bound
  uint64_t expirations = 0;  // found stale and dropped
};

class Cache {
 public:
  explicit Cache(CacheOptions options) : options_(options) {}
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  // The answer for (type, name) if one is fresh at `now_ms`, else null. `name` canonical.
  AnswerPtr Find(RecordType type, std::string_view name, uint64_t now_ms);
  // Stores `answer` for the time its kind and TTL allow (maybe not at all); returns that
  // time in seconds.
  uint32_t Insert(RecordType type, std::string_view name, AnswerPtr answer, uint64_t now_ms);
  // How long `answer` may be kept, in seconds (0: not at all).
  uint32_t LifetimeSeconds(const RecordAnswer& answer) const;
  // When the entry for (type, name) expires, if there is one (expired or not).
  std::optional<uint64_t> ExpiryMs(RecordType type, std::string_view name) const;
  void Clear();

  size_t size() const { return index_.size(); }
  const CacheStats& stats() const { return stats_; }
  const CacheOptions& options() const { return options_; }

 private:
  struct Key {
    RecordType type;
    std::string name;
  };
  // The index maps views of the keys held by the LRU list's entries (list nodes never move,
  // so the views stay valid while their entry lives), and lookups need no std::string.
  struct KeyView {
    RecordType type;
    std::string_view name;
    friend bool operator==(const KeyView&, const KeyView&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const KeyView& k) {
      return H::combine(std::move(h), static_cast<uint16_t>(k.type), ToAbsl(k.name));
    }
  };
  struct Entry {
    Key key;
    AnswerPtr answer;
    uint64_t expires_ms = 0;
  };
  using Lru = std::list<Entry>;  // front: most recently used

  CacheOptions options_;
  Lru lru_;
  absl::flat_hash_map<KeyView, Lru::iterator> index_;
  CacheStats stats_;
};

}  // namespace ringmail::dns
