#include "tests/dns/dns_packet_util.h"

#include <arpa/inet.h>

#include <cstring>

namespace ringmail::dns::testing {
namespace {

void Put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

void Put32(std::string& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v >> 16));
  Put16(out, static_cast<uint16_t>(v & 0xffff));
}

void PutRr(std::string& out, const Rr& rr) {
  out += EncodeName(rr.name);
  Put16(out, rr.type);
  Put16(out, 1);  // IN
  Put32(out, rr.ttl);
  Put16(out, static_cast<uint16_t>(rr.rdata.size()));
  out += rr.rdata;
}

}  // namespace

std::string EncodeName(std::string_view dotted) {
  std::string out;
  if (dotted == ".") dotted = "";
  while (!dotted.empty()) {
    size_t dot = dotted.find('.');
    std::string_view label = dotted.substr(0, dot);
    out.push_back(static_cast<char>(label.size()));
    out.append(label);
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
  out.push_back('\0');
  return out;
}

std::string MxRdata(uint16_t preference, std::string_view host) {
  std::string out;
  Put16(out, preference);
  out += EncodeName(host);
  return out;
}

std::string ARdata(std::string_view ipv4) {
  in_addr a{};
  inet_pton(AF_INET, std::string(ipv4).c_str(), &a);
  return std::string(reinterpret_cast<const char*>(&a), 4);
}

std::string AaaaRdata(std::string_view ipv6) {
  in6_addr a{};
  inet_pton(AF_INET6, std::string(ipv6).c_str(), &a);
  return std::string(reinterpret_cast<const char*>(&a), 16);
}

std::string SoaRdata(uint32_t serial, uint32_t minimum) {
  std::string out = EncodeName("ns.test") + EncodeName("hostmaster.test");
  Put32(out, serial);
  Put32(out, 3600);    // refresh
  Put32(out, 600);     // retry
  Put32(out, 86400);   // expire
  Put32(out, minimum);
  return out;
}

std::string Encode(const Message& m) {
  std::string out;
  Put16(out, m.id);
  Put16(out, static_cast<uint16_t>(0x8000 | 0x0100 | 0x0080 | (m.rcode & 0xf)));
  Put16(out, 1);
  Put16(out, static_cast<uint16_t>(m.ancount_override >= 0 ? m.ancount_override
                                                            : static_cast<int>(m.answers.size())));
  Put16(out, static_cast<uint16_t>(m.authority.size()));
  Put16(out, 0);
  out += EncodeName(m.qname);
  Put16(out, m.qtype);
  Put16(out, 1);
  for (const Rr& rr : m.answers) PutRr(out, rr);
  for (const Rr& rr : m.authority) PutRr(out, rr);
  return out;
}

std::optional<Question> ParseQuestion(std::string_view p) {
  if (p.size() < 12) return std::nullopt;
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(p[i]); };
  Question q;
  q.id = static_cast<uint16_t>((u8(0) << 8) | u8(1));
  size_t pos = 12;
  while (pos < p.size() && u8(pos) != 0) {
    size_t len = u8(pos);
    if (len > 63 || pos + 1 + len > p.size()) return std::nullopt;
    if (!q.name.empty()) q.name += '.';
    q.name.append(p.substr(pos + 1, len));
    pos += 1 + len;
  }
  if (pos + 5 > p.size()) return std::nullopt;
  q.type = static_cast<uint16_t>((u8(pos + 1) << 8) | u8(pos + 2));
  return q;
}

}  // namespace ringmail::dns::testing
