#include "dns/mx_order.h"

#include <algorithm>
#include <utility>

#include "absl/random/distributions.h"

namespace ringmail::dns {

void CanonicalizeMx(std::vector<MxHost>& hosts, size_t hosts_max) {
  // Host first so that duplicates are adjacent with the lowest preference leading.
  std::sort(hosts.begin(), hosts.end(), [](const MxHost& a, const MxHost& b) {
    if (a.host != b.host) return a.host < b.host;
    return a.preference < b.preference;
  });
  hosts.erase(std::unique(hosts.begin(), hosts.end(),
                          [](const MxHost& a, const MxHost& b) { return a.host == b.host; }),
              hosts.end());
  std::sort(hosts.begin(), hosts.end(), [](const MxHost& a, const MxHost& b) {
    if (a.preference != b.preference) return a.preference < b.preference;
    return a.host < b.host;
  });
  if (hosts.size() > hosts_max) hosts.resize(hosts_max);
}

void OrderMx(std::vector<MxHost>& hosts, absl::BitGenRef rng) {
  std::stable_sort(hosts.begin(), hosts.end(), [](const MxHost& a, const MxHost& b) {
    return a.preference < b.preference;
  });
  size_t begin = 0;
  while (begin < hosts.size()) {
    size_t end = begin + 1;
    while (end < hosts.size() && hosts[end].preference == hosts[begin].preference) ++end;
    // Fisher-Yates over [begin, end): every permutation equally likely.
    for (size_t i = end - 1; i > begin; --i) {
      size_t j = absl::Uniform<size_t>(absl::IntervalClosedClosed, rng, begin, i);
      if (j != i) std::swap(hosts[i], hosts[j]);
    }
    begin = end;
  }
}

}  // namespace ringmail::dns
