// fuzz/control_protocol_fuzz.cc — libFuzzer target for the control socket's wire protocol
// (listeners/control/protocol.h): the daemon parses request lines from ringctl (or anything
// that can open the socket), ringctl decodes response frames from the daemon.
//
// The last input byte picks the half and a slicing seed; the rest is the bytes. Oracles:
//   requests   a parsed request has 1..kRequestWordsMax words and formats to one line that
//              parses back to the same request;
//   responses  the decoder's results do not depend on how the stream is sliced, each body
//              is within kResponseBytesMax, and every decoded frame re-encodes to a frame
//              that decodes to the same response.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/check.h"
#include "fuzz/fuzz_util.h"
#include "listeners/control/protocol.h"

namespace ringmail::control {
namespace {

void FuzzRequest(std::string_view line) {
  absl::StatusOr<Request> request = ParseRequestLine(line);
  if (!request.ok()) {
    RM_CHECK(!request.status().message().empty());
    return;
  }
  RM_CHECK(!request->words.empty() && request->words.size() <= kRequestWordsMax);
  const std::string formatted = FormatRequestLine(*request);
  RM_CHECK(!formatted.empty() && formatted.back() == '\n');
  RM_CHECK(formatted.find('\n') == formatted.size() - 1) << "a word holds a newline";
  absl::StatusOr<Request> again =
      ParseRequestLine(std::string_view(formatted).substr(0, formatted.size() - 1));
  RM_CHECK(again.ok()) << "formatted request does not parse: " << again.status();
  RM_CHECK(again->words == request->words && again->json == request->json)
      << "request round trip changed it: " << formatted;
}

// "OK:<body>" / "ERR:<body>" per response, then "FAIL" if the stream was refused.
std::vector<std::string> Decode(const std::vector<std::string_view>& pieces) {
  ResponseDecoder decoder;
  std::vector<std::string> out;
  auto drain = [&](std::string_view bytes) {
    for (int guard = 0; guard < 100000; ++guard) {
      absl::StatusOr<std::optional<Response>> r = decoder.Feed(bytes);
      bytes = {};
      if (!r.ok()) {
        out.push_back("FAIL");
        return false;
      }
      if (!r->has_value()) return true;
      RM_CHECK((*r)->body.size() <= kResponseBytesMax);
      out.push_back(((*r)->ok ? "OK:" : "ERR:") + (*r)->body);
    }
    RM_CHECK(false) << "decoder does not settle";
    return false;
  };
  for (std::string_view piece : pieces) {
    if (!drain(piece)) break;
  }
  return out;
}

void FuzzResponses(std::string_view stream, fuzz::Choices& choices) {
  const std::vector<std::string> whole = Decode({stream});
  const std::vector<std::string> sliced = Decode(fuzz::SliceInput(stream, choices));
  // A refusal may come earlier with more bytes in hand (a header line is judged once its
  // newline arrives) but every response decoded before it must agree.
  const size_t common = std::min(whole.size(), sliced.size());
  for (size_t i = 0; i < common; ++i) {
    RM_CHECK(whole[i] == sliced[i] || whole[i] == "FAIL" || sliced[i] == "FAIL")
        << "slicing changed response " << i;
  }
  for (const std::string& r : whole) {
    if (r == "FAIL") break;
    Response response;
    response.ok = r.rfind("OK:", 0) == 0;
    response.body = r.substr(response.ok ? 3 : 4);
    const std::vector<std::string> again = Decode({EncodeResponse(response)});
    RM_CHECK(again.size() == 1 && again[0] == r) << "response round trip";
  }
}

}  // namespace
}  // namespace ringmail::control

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[size - 1];
  const std::string input(reinterpret_cast<const char*>(data), size - 1);
  if ((mode & 1) == 0) {
    ringmail::control::FuzzRequest(input);
  } else {
    ringmail::fuzz::Choices choices(mode);
    ringmail::control::FuzzResponses(input, choices);
  }
  return 0;
}
