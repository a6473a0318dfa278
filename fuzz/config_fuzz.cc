// fuzz/config_fuzz.cc — libFuzzer target for the whole configuration load path
// (config/generation.h LoadConfigString: lexer, parser, includes, schema, semantic checks)
// and for what is done with a configuration that loads (render, reload, diff).
//
// The input is the text of a configuration file named <tmp>/fuzz.conf. That folder holds
// two small files a relative `include` can reach (one valid scope, one that includes the
// main file back), so the include path, its cycle check and its error positions are
// exercised without touching the rest of the filesystem (an absolute include still may: the
// loader must refuse non-regular files and cap sizes on its own).
//
// Oracles: a failed load reports 1..kMaxErrors well-formed errors and its Status message
// starts with the first; a successful load reports none, renders to text that loads again
// to an equal configuration (flat renderings equal, no diff between the two).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/check.h"
#include "config/diagnostics.h"
#include "config/diff.h"
#include "config/generation.h"
#include "config/render.h"

namespace ringmail::config {
namespace {

void WriteFile(const std::string& path, std::string_view text) {
  FILE* f = std::fopen(path.c_str(), "w");
  RM_CHECK(f != nullptr) << path;
  RM_CHECK(std::fwrite(text.data(), 1, text.size(), f) == text.size());
  RM_CHECK(std::fclose(f) == 0);
}

// The folder fuzz.conf "lives" in, made once per process and removed at exit.
const std::string& MainFileName() {
  static const std::string name = [] {
    char dir[] = "/tmp/ringmail-config-fuzz-XXXXXX";
    RM_CHECK(mkdtemp(dir) != nullptr);
    static std::string folder = dir;
    WriteFile(folder + "/inc.conf",
              "Domain \"inc.example\" {\n  routes = \"[127.0.0.1]:2526\"\n}\n");
    WriteFile(folder + "/loop.conf", "include \"fuzz.conf\"\n");
    std::atexit([] {
      unlink((folder + "/inc.conf").c_str());
      unlink((folder + "/loop.conf").c_str());
      rmdir(folder.c_str());
    });
    return folder + "/fuzz.conf";
  }();
  return name;
}

void CheckFailedLoad(const absl::Status& status, const std::vector<ConfigError>& errors) {
  RM_CHECK(!errors.empty()) << "failed load without errors: " << status;
  RM_CHECK(errors.size() <= Diagnostics::kMaxErrors + 1) << errors.size();
  for (const ConfigError& error : errors) {
    RM_CHECK(!error.file.empty() && !error.message.empty()) << error.ToString();
    RM_CHECK(error.line >= 0 && error.column >= 0) << error.ToString();
    RM_CHECK(error.message.find_first_of("\r\n") == std::string::npos)
        << "an error message spans lines: " << error.ToString();
  }
  const std::string first = errors[0].ToString();
  RM_CHECK(std::string(status.message()).compare(0, first.size(), first) == 0)
      << "status does not start with the first error";
}

void CheckRoundTrip(const Config& loaded, std::string_view input) {
  const std::string rendered = RenderConfigText(loaded);
  absl::StatusOr<std::shared_ptr<const Config>> again = LoadConfigString(rendered, "again");
  RM_CHECK(again.ok()) << again.status() << "\ninput:\n" << input << "\nrendered:\n" << rendered;
  RM_CHECK(RenderConfigFlat(**again) == RenderConfigFlat(loaded)) << "render round trip";
  const std::vector<ConfigChange> changes = DiffConfigs(loaded, **again);
  RM_CHECK(changes.empty()) << FormatChanges(changes);
}

}  // namespace
}  // namespace ringmail::config

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ringmail::config;  // NOLINT: the target's whole vocabulary
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<ConfigError> errors;
  absl::StatusOr<std::shared_ptr<const Config>> loaded =
      LoadConfigString(text, MainFileName(), &errors);
  if (!loaded.ok()) {
    CheckFailedLoad(loaded.status(), errors);
    return 0;
  }
  RM_CHECK(errors.empty());
  CheckRoundTrip(**loaded, text);
  return 0;
}
