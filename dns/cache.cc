#include "dns/cache.h"

#include <algorithm>
#include <utility>

namespace ringmail::dns {

uint32_t Cache::LifetimeSeconds(const RecordAnswer& answer) const {
  switch (answer.kind) {
    case RecordAnswer::Kind::kData:
      return answer.ttl_s == kTtlUnknown ? 0 : std::min(answer.ttl_s, options_.ttl_max_s);
    case RecordAnswer::Kind::kNoData:
    case RecordAnswer::Kind::kNxDomain:
      if (answer.ttl_s == kTtlUnknown) {
        return std::min(options_.negative_ttl_default_s, options_.negative_ttl_max_s);
      }
      return std::min(answer.ttl_s, options_.negative_ttl_max_s);
    case RecordAnswer::Kind::kError:
      return 0;
  }
  return 0;
}

AnswerPtr Cache::Find(RecordType type, std::string_view name, uint64_t now_ms) {
  auto it = index_.find(KeyView{type, name});
  if (it == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  Lru::iterator entry = it->second;
  if (entry->expires_ms <= now_ms) {
    ++stats_.expirations;
    ++stats_.misses;
    index_.erase(it);
    lru_.erase(entry);
    return nullptr;
  }
  ++stats_.hits;
  lru_.splice(lru_.begin(), lru_, entry);
  return entry->answer;
}

uint32_t Cache::Insert(RecordType type, std::string_view name, AnswerPtr answer,
                       uint64_t now_ms) {
  uint32_t lifetime_s = answer ? LifetimeSeconds(*answer) : 0;
  if (lifetime_s == 0 || options_.entries_max == 0) return 0;
  uint64_t expires_ms = now_ms + static_cast<uint64_t>(lifetime_s) * 1000;
  auto it = index_.find(KeyView{type, name});
  if (it != index_.end()) {
    it->second->answer = std::move(answer);
    it->second->expires_ms = expires_ms;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.inserts;
    return lifetime_s;
  }
  while (index_.size() >= options_.entries_max) {
    const Key& oldest = lru_.back().key;
    index_.erase(KeyView{oldest.type, oldest.name});
    lru_.pop_back();
    ++stats_.evictions;
  }
  lru_.push_front(Entry{Key{type, std::string(name)}, std::move(answer), expires_ms});
  const Key& stored = lru_.front().key;
  index_.emplace(KeyView{stored.type, stored.name}, lru_.begin());
  ++stats_.inserts;
  return lifetime_s;
}

std::optional<uint64_t> Cache::ExpiryMs(RecordType type, std::string_view name) const {
  auto it = index_.find(KeyView{type, name});
  if (it == index_.end()) return std::nullopt;
  return it->second->expires_ms;
}

void Cache::Clear() {
  index_.clear();
  lru_.clear();
}

}  // namespace ringmail::dns
