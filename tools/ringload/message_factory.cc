#include "tools/ringload/message_factory.h"

#include <time.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace ringmail::ringload {
namespace {

constexpr size_t kLineBytes = 76;  // content bytes per body line, CRLF not counted

void AppendNumber(uint64_t v, std::string* out) {
  char buf[24];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out->append(p, static_cast<size_t>(end - p));
}

std::string RfcDate() {
  time_t now = time(nullptr);
  tm t{};
  gmtime_r(&now, &t);
  char buf[64];
  strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S +0000", &t);
  return buf;
}

}  // namespace

MessageFactory::MessageFactory(const SendOptions& options, uint64_t run_id)
    : from_(options.from),
      date_(RfcDate()),
      rcpts_(options.rcpts),
      domains_(options.domains) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(run_id));
  run_hex_ = hex;
  double total = 0;
  for (const SizeClass& sc : options.sizes) {
    Body b;
    b.target_bytes = sc.bytes;
    b.raw = RenderBody(sc.bytes);
    b.stuffed = DotStuff(b.raw);
    bodies_.push_back(std::move(b));
    total += sc.weight;
    cumulative_weight_.push_back(total);
  }
  for (double& w : cumulative_weight_) w /= total;
  // Split the recipient template into literal text and {n}/{d} fields once.
  std::string_view t = options.rcpt_template;
  while (!t.empty()) {
    size_t n = t.find("{n}");
    size_t d = t.find("{d}");
    size_t next = std::min(n, d);
    if (next == std::string_view::npos) {
      rcpt_pieces_.push_back({Piece::kLiteral, std::string(t)});
      break;
    }
    if (next > 0) rcpt_pieces_.push_back({Piece::kLiteral, std::string(t.substr(0, next))});
    rcpt_pieces_.push_back({next == n ? Piece::kNumber : Piece::kDomain, {}});
    t.remove_prefix(next + 3);
  }
}

size_t MessageFactory::PickSizeClass(double draw) const {
  for (size_t i = 0; i + 1 < cumulative_weight_.size(); ++i) {
    if (draw < cumulative_weight_[i]) return i;
  }
  return cumulative_weight_.size() - 1;
}

std::string MessageFactory::RenderBody(uint64_t bytes) const {
  // The header block is about kHeaderEstimate bytes; the body makes up the rest.
  uint64_t want = bytes > kHeaderEstimate ? bytes - kHeaderEstimate : 0;
  std::string out;
  out.reserve(want + kLineBytes + 2);
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_=+/";
  uint64_t line = 0;
  while (out.size() + 2 < want || line == 0) {
    size_t room = want > out.size() + 2 ? want - out.size() - 2 : 0;
    size_t len = std::min<size_t>(kLineBytes, room);
    if (line % 40 == 7) {
      out += ".";  // a lone dot: stuffed on the wire, must come back as "."
    } else {
      size_t start = out.size();
      if (line % 16 == 3) out += ".. leading dots ";
      for (size_t i = out.size() - start; i < len; ++i) {
        out += kAlphabet[(line * 7 + i) % (sizeof(kAlphabet) - 1)];
      }
    }
    out += "\r\n";
    ++line;
  }
  return out;
}

std::string MessageFactory::DotStuff(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() + raw.size() / 32 + 8);
  bool line_start = true;
  for (char c : raw) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  return out;
}

void MessageFactory::AppendMessageId(uint64_t seq, std::string* out) const {
  out->push_back('<');
  AppendNumber(seq, out);
  out->push_back('.');
  out->append(run_hex_);
  out->append("@ringload.test>");
}

void MessageFactory::AppendRecipient(uint64_t seq, uint32_t index, std::string* out) const {
  const uint64_t n = seq * rcpts_ + index;
  for (const Piece& p : rcpt_pieces_) {
    switch (p.kind) {
      case Piece::kLiteral:
        out->append(p.literal);
        break;
      case Piece::kNumber:
        AppendNumber(n, out);
        break;
      case Piece::kDomain:
        AppendNumber(n % domains_, out);
        break;
    }
  }
}

void MessageFactory::AppendHeaders(uint64_t seq, std::string* out) const {
  out->append("Date: ");
  out->append(date_);
  out->append("\r\nFrom: <");
  out->append(from_);
  out->append(">\r\nTo: <");
  AppendRecipient(seq, 0, out);
  out->append(">\r\nSubject: ringload test message ");
  AppendNumber(seq, out);
  out->append("\r\nMessage-ID: ");
  AppendMessageId(seq, out);
  out->append("\r\nX-Ringload-Seq: ");
  AppendNumber(seq, out);
  out->append("\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
              "Content-Transfer-Encoding: 7bit\r\n\r\n");
}

}  // namespace ringmail::ringload
