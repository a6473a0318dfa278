// config/config.cc — lookups on a loaded configuration.
#include "config/config.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "config/strings.h"

namespace ringmail::config {

const DomainConfig& Config::DomainFor(std::string_view domain) const {
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  // Domains are at most 253 octets; a longer name cannot be configured, so it cannot match.
  if (domain.size() > 253) return default_domain;
  auto it = domains.find(absl::AsciiStrToLower(Av(domain)));
  return it == domains.end() ? default_domain : it->second;
}

const EventLoopPoolConfig* Config::FindEventLoop(std::string_view name) const {
  for (const EventLoopPoolConfig& pool : eventloops) {
    if (absl::EqualsIgnoreCase(pool.name, Av(name))) return &pool;
  }
  return nullptr;
}

const ThreadPoolConfig* Config::FindThreadPool(std::string_view name) const {
  for (const ThreadPoolConfig& pool : thread_pools) {
    if (absl::EqualsIgnoreCase(pool.name, Av(name))) return &pool;
  }
  return nullptr;
}

}  // namespace ringmail::config
