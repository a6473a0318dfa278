// The per-loop answer cache: TTLs and caps, negative entries, errors never cached, LRU bound.
#include "dns/cache.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace ringmail::dns {
namespace {

AnswerPtr Data(uint32_t ttl_s) {
  auto a = std::make_shared<RecordAnswer>();
  a->kind = RecordAnswer::Kind::kData;
  a->ttl_s = ttl_s;
  a->addresses = {*IpAddress::Parse("192.0.2.1")};
  return a;
}

AnswerPtr Negative(RecordAnswer::Kind kind, uint32_t ttl_s) {
  auto a = std::make_shared<RecordAnswer>();
  a->kind = kind;
  a->ttl_s = ttl_s;
  return a;
}

TEST(CacheTest, PositiveAnswerLivesForItsTtl) {
  Cache cache(CacheOptions{});
  AnswerPtr a = Data(30);
  EXPECT_EQ(cache.Insert(RecordType::kA, "h.test", a, 1000), 30u);
  EXPECT_EQ(cache.Find(RecordType::kA, "h.test", 1000), a);
  EXPECT_EQ(cache.Find(RecordType::kA, "h.test", 30999), a);
  EXPECT_EQ(cache.Find(RecordType::kA, "h.test", 31000), nullptr);  // expired, dropped
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.stats().expirations, 1u);
}

TEST(CacheTest, KeyIncludesType) {
  Cache cache(CacheOptions{});
  cache.Insert(RecordType::kA, "h.test", Data(30), 0);
  EXPECT_EQ(cache.Find(RecordType::kAaaa, "h.test", 0), nullptr);
  EXPECT_EQ(cache.Find(RecordType::kMx, "h.test", 0), nullptr);
  EXPECT_NE(cache.Find(RecordType::kA, "h.test", 0), nullptr);
}

TEST(CacheTest, TtlIsCapped) {
  CacheOptions o;
  o.ttl_max_s = 3600;
  Cache cache(o);
  EXPECT_EQ(cache.Insert(RecordType::kA, "h.test", Data(86400 * 7), 0), 3600u);
  EXPECT_EQ(*cache.ExpiryMs(RecordType::kA, "h.test"), 3600u * 1000);
}

TEST(CacheTest, ZeroTtlAndErrorsAreNotCached) {
  Cache cache(CacheOptions{});
  EXPECT_EQ(cache.Insert(RecordType::kA, "zero.test", Data(0), 0), 0u);
  EXPECT_EQ(cache.Insert(RecordType::kA, "err.test",
                         ErrorAnswer(absl::UnavailableError("SERVFAIL")), 0), 0u);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.Find(RecordType::kA, "err.test", 0), nullptr);
}

TEST(CacheTest, NegativeAnswersUseSoaTtlOrDefaultAndAreCapped) {
  CacheOptions o;
  o.negative_ttl_default_s = 60;
  o.negative_ttl_max_s = 300;
  Cache cache(o);
  EXPECT_EQ(cache.Insert(RecordType::kMx, "nx.test",
                         Negative(RecordAnswer::Kind::kNxDomain, kTtlUnknown), 0), 60u);
  EXPECT_EQ(cache.Insert(RecordType::kMx, "soa.test",
                         Negative(RecordAnswer::Kind::kNoData, 7), 0), 7u);
  EXPECT_EQ(cache.Insert(RecordType::kMx, "long.test",
                         Negative(RecordAnswer::Kind::kNxDomain, 86400), 0), 300u);
  EXPECT_NE(cache.Find(RecordType::kMx, "soa.test", 6999), nullptr);
  EXPECT_EQ(cache.Find(RecordType::kMx, "soa.test", 7000), nullptr);
}

TEST(CacheTest, BoundedWithLeastRecentlyUsedEviction) {
  CacheOptions o;
  o.entries_max = 3;
  Cache cache(o);
  cache.Insert(RecordType::kA, "a.test", Data(100), 0);
  cache.Insert(RecordType::kA, "b.test", Data(100), 0);
  cache.Insert(RecordType::kA, "c.test", Data(100), 0);
  ASSERT_NE(cache.Find(RecordType::kA, "a.test", 1), nullptr);  // a is now most recent
  cache.Insert(RecordType::kA, "d.test", Data(100), 1);         // evicts b
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_NE(cache.Find(RecordType::kA, "a.test", 2), nullptr);
  EXPECT_EQ(cache.Find(RecordType::kA, "b.test", 2), nullptr);
  EXPECT_NE(cache.Find(RecordType::kA, "c.test", 2), nullptr);
  EXPECT_NE(cache.Find(RecordType::kA, "d.test", 2), nullptr);
  for (int i = 0; i < 1000; ++i) {
    cache.Insert(RecordType::kA, "n" + std::to_string(i) + ".test", Data(100), 3);
  }
  EXPECT_EQ(cache.size(), 3u);
}

TEST(CacheTest, ReinsertReplacesAndRefreshes) {
  Cache cache(CacheOptions{});
  cache.Insert(RecordType::kA, "h.test", Data(10), 0);
  AnswerPtr fresh = Data(20);
  cache.Insert(RecordType::kA, "h.test", fresh, 5000);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.Find(RecordType::kA, "h.test", 24999), fresh);
}

TEST(CacheTest, ZeroEntriesDisablesCaching) {
  CacheOptions o;
  o.entries_max = 0;
  Cache cache(o);
  EXPECT_EQ(cache.Insert(RecordType::kA, "h.test", Data(100), 0), 0u);
  EXPECT_EQ(cache.Find(RecordType::kA, "h.test", 0), nullptr);
}

}  // namespace
}  // namespace ringmail::dns
