// fuzz/esmtp_policy_fuzz.cc — libFuzzer target for the ESMTP argument parsers and address
// helpers (listeners/esmtp/policy.h): MAIL FROM / RCPT TO arguments, HELO arguments, IP
// addresses and CIDR blocks, UTF-8 validation. They see every byte a client puts after a
// verb, and the HTTP injection door runs its JSON addresses through them too.
//
// The input is an argument line (the last byte picks SMTPUTF8 for RCPT). Oracles: a parsed
// path respects the RFC 5321 limits (local part 64, domain 255, path 256) and is well formed
// UTF-8 only when SMTPUTF8 allows it; the address parses back to itself when written as
// "<address>" again; parameters are a view into the input; addresses and CIDRs round-trip
// through their text forms and a CIDR contains its own network; ValidUtf8 agrees with a
// byte-by-byte reference decoder of RFC 3629.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/check.h"
#include "listeners/esmtp/policy.h"

namespace ringmail::listeners::esmtp {
namespace {

// RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF.
bool ReferenceUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    i += n;
  }
  return true;
}

void CheckMailbox(const Mailbox& box, bool smtputf8) {
  RM_CHECK(box.local_part.size() <= kLocalPartBytesMax) << box.local_part.size();
  RM_CHECK(box.domain.size() <= kDomainBytesMax) << box.domain.size();
  RM_CHECK(box.address.size() + 2 <= kPathBytesMax) << box.address.size();
  if (box.non_ascii) {
    RM_CHECK(smtputf8) << "non-ASCII address accepted without SMTPUTF8";
    RM_CHECK(ValidUtf8(box.address)) << "malformed UTF-8 accepted in an address";
  } else {
    for (char c : box.address) RM_CHECK(static_cast<unsigned char>(c) < 0x80);
  }
  // '<' and '>' may appear inside a quoted local part (RFC 5321 qtextSMTP), control bytes
  // never.
  for (char c : box.address) {
    RM_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) << "control byte in address";
  }
  if (box.local_part.empty() || box.local_part.front() != '"') {
    RM_CHECK(box.address.find_first_of("<>") == std::string_view::npos) << box.address;
  }
}

void FuzzMail(std::string_view argument) {
  MailArguments mail;
  if (ParseMailArguments(argument, &mail).has_value()) return;
  CheckMailbox(mail.sender, mail.smtputf8);
  RM_CHECK(mail.parameters.empty() ||
           (mail.parameters.data() >= argument.data() &&
            mail.parameters.data() + mail.parameters.size() <= argument.data() + argument.size()))
      << "parameters do not point into the argument";
  const std::string again =
      "FROM:<" + std::string(mail.sender.address) + ">" + (mail.smtputf8 ? " SMTPUTF8" : "");
  MailArguments reparsed;
  const std::optional<ReplyId> refusal = ParseMailArguments(again, &reparsed);
  RM_CHECK(!refusal.has_value()) << "accepted sender does not parse back: " << again;
  RM_CHECK(reparsed.sender.address == mail.sender.address) << again;
}

void FuzzRcpt(std::string_view argument, bool smtputf8) {
  RcptArguments rcpt;
  if (ParseRcptArguments(argument, smtputf8, &rcpt).has_value()) return;
  CheckMailbox(rcpt.recipient, smtputf8);
  RM_CHECK(!rcpt.recipient.address.empty()) << "RCPT TO:<> accepted";
  const std::string again = "TO:<" + std::string(rcpt.recipient.address) + ">";
  RcptArguments reparsed;
  const std::optional<ReplyId> refusal = ParseRcptArguments(again, smtputf8, &reparsed);
  RM_CHECK(!refusal.has_value()) << "accepted recipient does not parse back: " << again;
  RM_CHECK(reparsed.recipient.address == rcpt.recipient.address) << again;
  RM_CHECK(reparsed.recipient.postmaster == rcpt.recipient.postmaster);
}

void FuzzAddresses(std::string_view text) {
  if (std::optional<IpAddress> ip = IpAddress::Parse(text)) {
    const std::optional<IpAddress> again = IpAddress::Parse(ip->ToString());
    RM_CHECK(again.has_value() && *again == *ip) << "address round trip: " << ip->ToString();
  }
  absl::StatusOr<Cidr> cidr = Cidr::Parse(text);
  if (cidr.ok()) {
    RM_CHECK(cidr->prefix_bits <= (cidr->network.v6 ? 128 : 32));
    RM_CHECK(cidr->Contains(cidr->network)) << "a CIDR without its own network";
    const std::string written = cidr->network.ToString() + "/" + std::to_string(cidr->prefix_bits);
    absl::StatusOr<Cidr> again = Cidr::Parse(written);
    RM_CHECK(again.ok() && again->network == cidr->network &&
             again->prefix_bits == cidr->prefix_bits)
        << "CIDR round trip: " << written;
  }
}

}  // namespace
}  // namespace ringmail::listeners::esmtp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::listeners::esmtp;  // NOLINT: the target's whole vocabulary
  if (size == 0 || size > 4096) return 0;
  const bool smtputf8 = (data[size - 1] & 1) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size - 1);
  RM_CHECK(ValidUtf8(text) == ReferenceUtf8(text)) << "ValidUtf8 disagrees with RFC 3629";
  FuzzMail(text);
  FuzzRcpt(text, smtputf8);
  if (ValidHeloArgument(text)) {
    RM_CHECK(!text.empty() && text.size() <= 255 && text.find(' ') == std::string_view::npos);
  }
  FuzzAddresses(text);
  return 0;
}
