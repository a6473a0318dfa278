// The tidy test: the dependency direction of MODULES.md, `internal/` privacy, line length
// and function length, checked over the source tree (TigerBeetle's tidy.zig idea).
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace {

namespace fs = std::filesystem;

const fs::path kRoot = RINGMAIL_SOURCE_DIR;
constexpr size_t kMaxColumns = 100;
constexpr size_t kMaxFunctionLines = 80;  // "about 70", with room for a long switch

// Which top-level folders each folder may include from (besides itself).
const std::map<std::string, std::set<std::string>> kAllowed = {
    {"base", {}},
    {"core", {"base"}},
    {"config", {"base"}},
    {"tls", {"base"}},
    {"spool", {"core", "base"}},
    {"dns", {"core", "base"}},
    {"listeners", {"spool", "config", "tls", "core", "base"}},
    {"delivery", {"dns", "spool", "config", "tls", "core", "base"}},
};
const std::set<std::string> kProjectFolders = {"base", "core",      "config",   "tls",
                                               "spool", "dns", "listeners", "delivery",
                                               "tools"};

struct SourceFile {
  fs::path path;
  std::string folder;
  std::vector<std::string> lines;
};

std::vector<SourceFile> Sources(const std::vector<std::string>& folders) {
  std::vector<SourceFile> out;
  for (const std::string& folder : folders) {
    if (!fs::exists(kRoot / folder)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(kRoot / folder)) {
      const fs::path& p = entry.path();
      if (!entry.is_regular_file()) continue;
      if (p.extension() != ".h" && p.extension() != ".cc") continue;
      SourceFile f{p, folder, {}};
      std::ifstream in(p);
      for (std::string line; std::getline(in, line);) f.lines.push_back(line);
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::string Where(const SourceFile& f, size_t i) {
  return fs::relative(f.path, kRoot).string() + ":" + std::to_string(i + 1);
}

TEST(TidyTest, IncludesFollowTheDependencyDirection) {
  std::vector<std::string> bad;
  for (const SourceFile& f : Sources({"base", "core", "config", "tls", "spool", "dns", "listeners",
                                      "delivery"})) {
    const std::set<std::string>& allowed = kAllowed.at(f.folder);
    for (size_t i = 0; i < f.lines.size(); ++i) {
      const std::string& line = f.lines[i];
      if (line.rfind("#include \"", 0) != 0) continue;
      std::string target = line.substr(10, line.find('"', 10) - 10);
      std::string top = target.substr(0, target.find('/'));
      if (!kProjectFolders.count(top) || top == f.folder) continue;
      if (!allowed.count(top)) bad.push_back(Where(f, i) + ": " + f.folder + " -> " + target);
      if (target.find("/internal/") != std::string::npos) {
        bad.push_back(Where(f, i) + ": includes another folder's internal header " + target);
      }
    }
  }
  EXPECT_TRUE(bad.empty()) << ::testing::PrintToString(bad);
}

TEST(TidyTest, ListenersAndDeliveryNeverIncludeEachOther) {
  std::vector<std::string> bad;
  for (const SourceFile& f : Sources({"listeners", "delivery"})) {
    const std::string other = f.folder == "listeners" ? "delivery/" : "listeners/";
    for (size_t i = 0; i < f.lines.size(); ++i) {
      if (f.lines[i].find("#include \"" + other) == 0) bad.push_back(Where(f, i));
    }
  }
  EXPECT_TRUE(bad.empty()) << ::testing::PrintToString(bad);
}

TEST(TidyTest, LinesFitInOneHundredColumns) {
  std::vector<std::string> bad;
  for (const SourceFile& f : Sources({"base", "core", "config", "tls", "spool", "dns", "listeners",
                                      "delivery", "tools", "tests", "bench"})) {
    for (size_t i = 0; i < f.lines.size(); ++i) {
      if (f.lines[i].size() > kMaxColumns) bad.push_back(Where(f, i));
    }
  }
  EXPECT_TRUE(bad.empty()) << ::testing::PrintToString(bad);
}

// A function body: a line at column 0 that opens a brace and is not a namespace, type or
// initializer, up to the next line that is exactly "}".
TEST(TidyTest, FunctionsStayShort) {
  std::vector<std::string> bad;
  for (const SourceFile& f : Sources({"base", "core", "config", "tls", "spool", "dns", "listeners",
                                      "delivery", "tools"})) {
    if (f.path.extension() != ".cc") continue;
    for (size_t i = 0; i < f.lines.size(); ++i) {
      const std::string& line = f.lines[i];
      if (line.empty() || line[0] == ' ' || line[0] == '#' || line[0] == '/') continue;
      if (line.back() != '{' || line.find(')') == std::string::npos) continue;
      if (line.rfind("namespace", 0) == 0 || line.rfind("struct", 0) == 0 ||
          line.rfind("class", 0) == 0 || line.rfind("enum", 0) == 0 ||
          line.find(" = ") != std::string::npos) {
        continue;
      }
      size_t end = i + 1;
      while (end < f.lines.size() && f.lines[end] != "}") ++end;
      if (end - i - 1 > kMaxFunctionLines) {
        bad.push_back(Where(f, i) + " (" + std::to_string(end - i - 1) + " lines)");
      }
    }
  }
  EXPECT_TRUE(bad.empty()) << ::testing::PrintToString(bad);
}

// What blocks a thread: a loop thread must never run one (STYLE.md, "Blocking on a loop
// thread"), so they live only in the files below, each for a reason; a new one needs its
// reason here.
// This is what keeps "post to a loop, then wait for it" inside RunOnLoopAndWait, which
// refuses to wait on the caller's own loop.
const std::vector<std::string> kBlockingWaits = {
    "WaitForNotification", "absl::Notification", "condition_variable", "absl::CondVar",
    "std::future",         "std::promise",       "std::latch",         "std::barrier",
    "BlockingCounter",     "semaphore",          ".Await(",            ".wait(",
    "sleep_for",           "usleep(",            "nanosleep(",
};
const std::map<std::string, std::string> kMayBlock = {
    {"core/run_on_loop.cc", "RunOnLoopAndWait: a thread other than the target loop's waits"},
    {"core/thread_pool.h", "the pool's condition variables (workers and submitters)"},
    {"core/thread_pool.cc", "pool workers wait for jobs; Stop waits for the workers"},
    {"core/log.cc", "the log's writer thread parks between writes; Flush waits for it"},
    {"core/loop.cc", "Start waits for the new loop thread to set up, before it runs"},
    {"tools/ringmaild/daemon.cc", "start-up waits for spool recovery before any loop runs"},
    {"tools/ringload/main.cc", "ringload's main thread waits for its sender loops"},
    {"tools/ringload/run_state.h", "the notifications ringload's main thread waits on"},
};

TEST(TidyTest, BlockingWaitsOnlyWhereAllowed) {
  std::vector<std::string> bad;
  std::set<std::string> used;
  for (const SourceFile& f : Sources({"base", "core", "config", "tls", "spool", "dns", "listeners",
                                      "delivery", "tools"})) {
    const std::string rel = fs::relative(f.path, kRoot).string();
    for (size_t i = 0; i < f.lines.size(); ++i) {
      const std::string& line = f.lines[i];
      const size_t comment = line.find("//");
      for (const std::string& word : kBlockingWaits) {
        const size_t at = line.find(word);
        if (at == std::string::npos || at > comment) continue;
        if (kMayBlock.count(rel)) {
          used.insert(rel);
        } else {
          bad.push_back(Where(f, i) + ": " + word);
        }
      }
    }
  }
  EXPECT_TRUE(bad.empty()) << "blocking outside kMayBlock: " << ::testing::PrintToString(bad);
  for (const auto& [file, reason] : kMayBlock) {
    EXPECT_TRUE(used.count(file)) << file << " no longer blocks: drop it from kMayBlock";
  }
}

}  // namespace
