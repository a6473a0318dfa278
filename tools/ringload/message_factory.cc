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
      domains_(options.domains),
      http_kind_(options.http_kind),
      http_template_(options.http_template) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(run_id));
  run_hex_ = hex;
  double total = 0;
  for (const SizeClass& sc : options.sizes) {
    Body b;
    b.target_bytes = sc.bytes;
    b.raw = RenderBody(sc.bytes);
    b.stuffed = DotStuff(b.raw);
    if (options.http) AppendJsonEscaped(b.raw, &b.json);
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

void MessageFactory::AppendJsonEscaped(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t plain = 0;  // start of the run of bytes that need no escape
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(text.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\r': out->append("\\r"); break;
      case '\n': out->append("\\n"); break;
      case '\t': out->append("\\t"); break;
      default: {
        const char u[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out->append(u, sizeof(u));
      }
    }
  }
  out->append(text.data() + plain, text.size() - plain);
}

size_t MessageFactory::AppendJsonPrefix(uint64_t seq, std::string* out) const {
  const bool structured = http_kind_ == SendOptions::HttpKind::kStructured;
  // Per loop thread, so rendering allocates nothing once it has grown.
  thread_local std::string scratch;
  out->append("{\"envelope_sender\":\"");
  AppendJsonEscaped(from_, out);
  out->append("\",\"recipients\":[");
  for (uint32_t i = 0; i < rcpts_; ++i) {
    if (i > 0) out->push_back(',');
    out->append("{\"email\":\"");
    scratch.clear();
    AppendRecipient(seq, i, &scratch);
    AppendJsonEscaped(scratch, out);
    out->push_back('"');
    if (http_template_) {
      out->append(",\"substitution_data\":{\"name\":\"User ");
      AppendNumber(seq * rcpts_ + i, out);
      out->append("\"}");
    }
    out->push_back('}');
  }
  out->append("],\"content\":");
  if (!structured) {
    out->push_back('"');
    scratch.clear();
    AppendHeaders(seq, &scratch);
    AppendJsonEscaped(scratch, out);
    return scratch.size();
  }
  out->append("{\"from\":\"");
  AppendJsonEscaped(from_, out);
  out->append("\",\"subject\":\"ringload test message ");
  AppendNumber(seq, out);
  if (http_template_) out->append(" for {{name}}");
  out->append("\",\"headers\":{\"Message-ID\":\"");
  AppendMessageId(seq, out);
  out->append("\",\"X-Ringload-Seq\":\"");
  AppendNumber(seq, out);
  out->append("\"},\"text_body\":\"");
  if (http_template_) out->append("Hello {{name}},\\r\\n\\r\\n");
  return 0;
}

std::string_view MessageFactory::json_tail() const {
  return http_kind_ == SendOptions::HttpKind::kStructured ? "\"}}" : "\"}";
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
