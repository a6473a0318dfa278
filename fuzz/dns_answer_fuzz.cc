// fuzz/dns_answer_fuzz.cc — libFuzzer target for what the resolver does with a DNS reply
// (dns/answer.h ParseAnswer: c-ares's record parsers, then our name checks, TTL walk over
// the raw message, SOA negative TTL, MX canonicalisation) and for dns/name.h NormalizeName
// and IpAddress::Parse.
//
// The first input byte chooses the query type (MX, A, AAAA) and the c-ares status the reply
// came with (success, NODATA, NXDOMAIN); the rest is the raw reply, exactly as a hostile
// server could send it. Oracles: an answer always comes back; kData answers hold what
// answer.h promises (MX: 1..kMxHostsMax canonical hosts sorted by preference then name, no
// duplicates; A/AAAA: 1..kAddressesMax addresses of the right family; null MX only with no
// host); errors carry a non-OK Status; names that normalise are canonical and stable.
#include <ares.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/check.h"
#include "dns/answer.h"
#include "dns/name.h"

namespace ringmail::dns {
namespace {

void CheckMx(const RecordAnswer& a) {
  if (a.null_mx) {
    RM_CHECK(a.mx.empty()) << "null MX with hosts";
    return;
  }
  RM_CHECK(!a.mx.empty() && a.mx.size() <= kMxHostsMax) << a.mx.size();
  for (size_t i = 0; i < a.mx.size(); ++i) {
    RM_CHECK(IsCanonicalName(a.mx[i].host)) << "MX host not canonical: " << a.mx[i].host;
    if (i == 0) continue;
    const MxHost& p = a.mx[i - 1];
    const MxHost& q = a.mx[i];
    RM_CHECK(p.preference < q.preference || (p.preference == q.preference && p.host < q.host))
        << "MX list not sorted or not unique";
  }
}

void CheckAnswer(RecordType type, const RecordAnswer& a) {
  switch (a.kind) {
    case RecordAnswer::Kind::kError:
      RM_CHECK(!a.error.ok());
      return;
    case RecordAnswer::Kind::kNoData:
    case RecordAnswer::Kind::kNxDomain:
      RM_CHECK(a.mx.empty() && a.addresses.empty());
      return;
    case RecordAnswer::Kind::kData:
      break;
  }
  if (type == RecordType::kMx) {
    CheckMx(a);
    RM_CHECK(a.addresses.empty());
    return;
  }
  RM_CHECK(a.mx.empty() && !a.null_mx);
  RM_CHECK(!a.addresses.empty() && a.addresses.size() <= kAddressesMax);
  const int family = type == RecordType::kA ? AF_INET : AF_INET6;
  for (const IpAddress& ip : a.addresses) RM_CHECK(ip.family == family);
}

void FuzzNames(std::string_view text) {
  absl::StatusOr<std::string> name = NormalizeName(text);
  if (name.ok()) {
    RM_CHECK(IsCanonicalName(*name)) << *name;
    RM_CHECK(name->size() <= kNameLengthMax);
    absl::StatusOr<std::string> again = NormalizeName(*name);
    RM_CHECK(again.ok() && *again == *name) << "NormalizeName is not idempotent";
  } else {
    RM_CHECK(!IsCanonicalName(text));
  }
  if (std::optional<IpAddress> ip = IpAddress::Parse(text)) {
    RM_CHECK(IpAddress::Parse(ip->ToString()) == ip) << "address round trip";
  }
}

}  // namespace
}  // namespace ringmail::dns

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::dns;            // NOLINT: the target's whole vocabulary
  if (size == 0 || size > 65535) return 0;  // a DNS message is at most 64 KiB (TCP)
  constexpr RecordType kTypes[4] = {RecordType::kMx, RecordType::kA, RecordType::kAaaa,
                                    RecordType::kMx};
  constexpr int kStatuses[4] = {ARES_SUCCESS, ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND};
  const RecordType type = kTypes[data[0] & 3];
  const int status = kStatuses[(data[0] >> 2) & 3];
  const uint8_t* message = data + 1;
  const int length = static_cast<int>(size - 1);
  AnswerPtr answer =
      ParseAnswer(type, "fuzz.example", status, length > 0 ? message : nullptr, length);
  RM_CHECK(answer != nullptr);
  CheckAnswer(type, *answer);
  FuzzNames(std::string_view(reinterpret_cast<const char*>(message), size - 1));
  return 0;
}
