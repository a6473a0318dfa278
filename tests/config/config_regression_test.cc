// Regression tests for inputs the config fuzz target (fuzz/config_fuzz.cc) found.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "config/diagnostics.h"
#include "config/generation.h"
#include "gtest/gtest.h"

namespace ringmail::config {
namespace {

std::vector<ConfigError> ErrorsOf(const std::string& text) {
  std::vector<ConfigError> errors;
  EXPECT_FALSE(LoadConfigString(text, "regression.conf", &errors).ok());
  return errors;
}

// Found by fuzzing: a string token decoded from "\n" was quoted raw in an error message, so
// one error spanned two lines of the Status (whose format is one error per line) and a
// config could forge extra "file:line:col:" lines. Tokens are now shown escaped.
TEST(ConfigRegressionTest, ErrorMessagesQuoteLineBreaksEscaped) {
  const std::vector<ConfigError> errors = ErrorsOf("delivery_pool * \"ev\\nts\\rpool\"\n");
  ASSERT_FALSE(errors.empty());
  bool quoted = false;
  for (const ConfigError& error : errors) {
    EXPECT_EQ(error.message.find_first_of("\r\n"), std::string::npos) << error.ToString();
    quoted = quoted || error.message.find("\"ev\\nts\\rpool\"") != std::string::npos;
  }
  EXPECT_TRUE(quoted) << errors[0].ToString();
}

// The same through the schema's type errors: a string where a number belongs.
TEST(ConfigRegressionTest, TypeErrorsQuoteEscapedValues) {
  const std::vector<ConfigError> errors =
      ErrorsOf("ESMTP_Listener {\n  max_errors = \"1\\r\\n2:3:4: forged\"\n}\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message.find_first_of("\r\n"), std::string::npos) << errors[0].ToString();
  EXPECT_NE(errors[0].message.find("\"1\\r\\n2:3:4: forged\""), std::string::npos)
      << errors[0].ToString();
}

// Found by fuzzing: an include path is built from a string token, and "cannot open include
// file '<path>'" quoted it raw (a CR in the path split the error).
TEST(ConfigRegressionTest, IncludeErrorsQuotePathsEscaped) {
  const std::vector<ConfigError> errors =
      ErrorsOf("include \"/nonexistent\\r\\ndir/x.conf\"\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message.find_first_of("\r\n"), std::string::npos) << errors[0].ToString();
  EXPECT_NE(errors[0].message.find("'/nonexistent\\r\\ndir/x.conf'"), std::string::npos)
      << errors[0].ToString();
}

// Found by fuzzing: the loader quotes raw values too ("resolvers: bad address '...'"); now
// every message is made one line where all of them pass (Diagnostics).
TEST(ConfigRegressionTest, LoaderErrorsStayOneLine) {
  const std::vector<ConfigError> errors =
      ErrorsOf("resolvers = ( \"127.0.0.1\\r\\n:53\" )\n");
  ASSERT_FALSE(errors.empty());
  for (const ConfigError& error : errors) {
    EXPECT_EQ(error.message.find_first_of("\r\n"), std::string::npos) << error.ToString();
  }
}

// Found in review: an include of a FIFO opened it blocking, so a reload waited forever for
// a writer. The open is now non-blocking and the path is refused as not a regular file.
TEST(ConfigRegressionTest, IncludeOfAFifoIsRefusedWithoutWaiting) {
  char dir_template[] = "/tmp/ringmail-fifo-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string fifo = dir + "/pipe.conf";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::vector<ConfigError> errors = ErrorsOf("include \"" + fifo + "\"\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message.find("not a regular file"), std::string::npos)
      << errors[0].ToString();
  unlink(fifo.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace ringmail::config
