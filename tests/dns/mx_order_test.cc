// mx_order: preference sort, uniform shuffle of equal preferences with an injected RNG,
// canonical form (duplicates, cap).
#include "dns/mx_order.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::dns {
namespace {

std::vector<std::string> Hosts(const std::vector<MxHost>& v) {
  std::vector<std::string> out;
  for (const MxHost& h : v) out.push_back(h.host);
  return out;
}

TEST(MxOrderTest, SortsByPreference) {
  std::vector<MxHost> hosts = {{30, "c"}, {10, "a"}, {20, "b"}, {0, "z"}};
  std::mt19937_64 rng(1);
  OrderMx(hosts, rng);
  EXPECT_EQ(Hosts(hosts), (std::vector<std::string>{"z", "a", "b", "c"}));
}

TEST(MxOrderTest, EveryPermutationOfEqualPreferencesAppearsOverSeeds) {
  const std::vector<MxHost> input = {{10, "a"}, {10, "b"}, {10, "c"}, {5, "first"},
                                     {20, "x"}, {20, "y"}};
  std::set<std::vector<std::string>> seen_tens;
  std::set<std::vector<std::string>> seen_twenties;
  for (uint64_t seed = 1; seed <= 600; ++seed) {
    std::vector<MxHost> hosts = input;
    std::mt19937_64 rng(seed);
    OrderMx(hosts, rng);
    ASSERT_EQ(hosts.size(), input.size());
    ASSERT_EQ(hosts[0].host, "first");
    for (size_t i = 1; i < hosts.size(); ++i) {
      ASSERT_LE(hosts[i - 1].preference, hosts[i].preference);
    }
    seen_tens.insert({hosts[1].host, hosts[2].host, hosts[3].host});
    seen_twenties.insert({hosts[4].host, hosts[5].host});
  }
  EXPECT_EQ(seen_tens.size(), 6u);  // 3! permutations
  EXPECT_EQ(seen_twenties.size(), 2u);
}

TEST(MxOrderTest, ShuffleIsRoughlyUniform) {
  // Which of four equal hosts comes first, over 8000 seeds: each about 2000 times.
  std::map<std::string, int> first;
  for (uint64_t seed = 1; seed <= 8000; ++seed) {
    std::vector<MxHost> hosts = {{1, "a"}, {1, "b"}, {1, "c"}, {1, "d"}};
    std::mt19937_64 rng(seed);
    OrderMx(hosts, rng);
    ++first[hosts[0].host];
  }
  ASSERT_EQ(first.size(), 4u);
  for (const auto& [host, n] : first) {
    EXPECT_GT(n, 1700) << host;
    EXPECT_LT(n, 2300) << host;
  }
}

TEST(MxOrderTest, SameSeedSameOrder) {
  std::vector<MxHost> a = {{1, "a"}, {1, "b"}, {1, "c"}, {1, "d"}, {1, "e"}};
  std::vector<MxHost> b = a;
  std::mt19937_64 r1(77);
  std::mt19937_64 r2(77);
  OrderMx(a, r1);
  OrderMx(b, r2);
  EXPECT_EQ(a, b);
}

TEST(MxOrderTest, EmptyAndSingle) {
  std::mt19937_64 rng(3);
  std::vector<MxHost> none;
  OrderMx(none, rng);
  EXPECT_TRUE(none.empty());
  std::vector<MxHost> one = {{7, "only"}};
  OrderMx(one, rng);
  EXPECT_EQ(one, (std::vector<MxHost>{{7, "only"}}));
}

TEST(MxOrderTest, CanonicalKeepsLowestPreferencePerHostAndCaps) {
  std::vector<MxHost> hosts = {{20, "b"}, {10, "a"}, {5, "b"}, {10, "a"}, {30, "c"}};
  CanonicalizeMx(hosts, 10);
  EXPECT_EQ(hosts, (std::vector<MxHost>{{5, "b"}, {10, "a"}, {30, "c"}}));
  CanonicalizeMx(hosts, 2);
  EXPECT_EQ(hosts, (std::vector<MxHost>{{5, "b"}, {10, "a"}}));
}

}  // namespace
}  // namespace ringmail::dns
