// Hostile-input tests of the whole load path: deterministic random mutations of real
// configurations must never crash (run under ASan/UBSan in CI), must fail with well-formed,
// capped error lists, and whatever still loads must survive a render/reload round trip.
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "config/default_config.h"
#include "config/generation.h"
#include "config/render.h"
#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

std::string ReadTestData(const std::string& name) {
  std::ifstream in(std::string(RINGMAIL_SOURCE_DIR) + "/tests/config/testdata/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Bytes that matter to the grammar come up far more often than chance would bring them.
char RandomByte(std::mt19937& rng) {
  static constexpr char kSyntax[] = "{}()=\"#\\%\n ,:[]/.0123456789smkMBG-";
  if (rng() % 4 != 0) return kSyntax[rng() % (sizeof(kSyntax) - 1)];
  return static_cast<char>(rng() % 256);
}

std::string Mutate(std::string text, std::mt19937& rng) {
  int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits && !text.empty(); ++i) {
    size_t at = rng() % text.size();
    switch (rng() % 5) {
      case 0:
        text[at] = RandomByte(rng);
        break;
      case 1:
        text.insert(at, 1, RandomByte(rng));
        break;
      case 2:
        text.erase(at, 1 + rng() % 8);
        break;
      case 3:
        text.resize(at);  // truncation: a file cut short by a full disk
        break;
      default:
        text.insert(at, text.substr(rng() % text.size(), rng() % 40));  // duplicated chunk
        break;
    }
  }
  return text;
}

void CheckOne(const std::string& text) {
  std::vector<ConfigError> errors;
  absl::StatusOr<std::shared_ptr<const Config>> loaded =
      LoadConfigString(text, "fuzz.conf", &errors);
  if (!loaded.ok()) {
    ASSERT_FALSE(errors.empty());
    ASSERT_LE(errors.size(), Diagnostics::kMaxErrors);
    for (const ConfigError& error : errors) {
      ASSERT_FALSE(error.file.empty());
      ASSERT_FALSE(error.message.empty());
      ASSERT_GE(error.line, 0);
    }
    std::string first = errors[0].ToString();
    ASSERT_EQ(std::string(loaded.status().message()).substr(0, first.size()), first);
    return;
  }
  ASSERT_TRUE(errors.empty());
  std::string rendered = RenderConfigText(**loaded);
  absl::StatusOr<std::shared_ptr<const Config>> again = LoadConfigString(rendered, "again");
  ASSERT_TRUE(again.ok()) << again.status() << "\nfrom:\n" << text << "\nrendered:\n" << rendered;
  ASSERT_EQ(RenderConfigFlat(**again), RenderConfigFlat(**loaded)) << text;
}

TEST(RobustnessTest, MutatedConfigurationsNeverCrash) {
  std::vector<std::string> seeds = {ReadTestData("design_example.conf"),
                                    std::string(DefaultConfigText()),
                                    ReadTestData("include/listener.conf")};
  ASSERT_FALSE(seeds[0].empty());
  std::mt19937 rng(20240611);  // fixed: a failure reproduces
  int loaded = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = Mutate(seeds[i % seeds.size()], rng);
    CheckOne(text);
    if (::testing::Test::HasFatalFailure()) {
      ADD_FAILURE() << "iteration " << i << " input:\n" << text;
      return;
    }
    if (LoadConfigString(text, "fuzz.conf").ok()) ++loaded;
  }
  // Both outcomes must be exercised, or the mutations are too weak or too strong.
  EXPECT_GT(loaded, 50);
  EXPECT_LT(loaded, 2900);
}

TEST(RobustnessTest, RandomBytes) {
  std::mt19937 rng(7);
  for (int i = 0; i < 500; ++i) {
    std::string text(rng() % 2000, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    CheckOne(text);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace ringmail::config
