#include "listeners/control/protocol.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/str_cat.h"

namespace ringmail::control {
namespace {

bool NeedsQuotes(std::string_view w) {
  if (w.empty()) return true;
  for (char c : w) {
    if (c == ' ' || c == '"' || c == '\\' || c == '\t') return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<Request> ParseRequestLine(std::string_view line) {
  if (line.size() > kRequestLineMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("request longer than ", kRequestLineMax, " bytes"));
  }
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  for (char c : line) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
      return absl::InvalidArgumentError("control characters are not allowed in a request");
    }
  }
  Request request;
  size_t i = 0;
  while (i < line.size()) {
    char c = line[i];
    if (c == ' ' || c == '\t') {
      ++i;
      continue;
    }
    std::string word;
    if (c == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        char d = line[i++];
        if (d == '"') {
          closed = true;
          break;
        }
        if (d == '\\' && i < line.size()) d = line[i++];
        word.push_back(d);
      }
      if (!closed) return absl::InvalidArgumentError("unterminated quoted word");
    } else {
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') word.push_back(line[i++]);
    }
    if (word == "--json") {
      request.json = true;
      continue;
    }
    if (request.words.size() == kRequestWordsMax) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", kRequestWordsMax, " words"));
    }
    request.words.push_back(std::move(word));
  }
  if (request.words.empty()) return absl::InvalidArgumentError("empty request");
  return request;
}

std::string FormatRequestLine(const Request& request) {
  std::string out;
  for (const std::string& w : request.words) {
    if (!out.empty()) out.push_back(' ');
    if (!NeedsQuotes(w)) {
      out.append(w);
      continue;
    }
    out.push_back('"');
    for (char c : w) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  if (request.json) out.append(" --json");
  out.push_back('\n');
  return out;
}

std::string EncodeResponse(const Response& response) {
  std::string body = response.body.size() > kResponseBytesMax
                         ? response.body.substr(0, kResponseBytesMax)
                         : response.body;
  return absl::StrCat(response.ok ? "OK " : "ERR ", body.size(), "\n", body);
}

absl::StatusOr<std::optional<Response>> ResponseDecoder::Feed(std::string_view bytes) {
  buffer_.append(bytes);
  size_t nl = buffer_.find('\n');
  if (nl == std::string::npos) {
    if (buffer_.size() > 32) return absl::DataLossError("malformed response header");
    return std::optional<Response>();
  }
  std::string_view head(buffer_.data(), nl);
  Response r;
  std::string_view num;
  if (head.substr(0, 3) == "OK ") {
    num = head.substr(3);
  } else if (head.substr(0, 4) == "ERR ") {
    r.ok = false;
    num = head.substr(4);
  } else {
    return absl::DataLossError("malformed response header");
  }
  size_t length = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), length);
  if (ec != std::errc() || p != num.data() + num.size() || length > kResponseBytesMax) {
    return absl::DataLossError("malformed response length");
  }
  if (buffer_.size() - nl - 1 < length) return std::optional<Response>();
  r.body = buffer_.substr(nl + 1, length);
  buffer_.erase(0, nl + 1 + length);
  return std::optional<Response>(std::move(r));
}

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < width.size(); ++c) {
      std::string cell = c < row.size() ? row[c] : "";
      line.append(cell);
      if (c + 1 < width.size()) line.append(width[c] - cell.size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out.append(line).push_back('\n');
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

}  // namespace ringmail::control
