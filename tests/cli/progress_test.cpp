// The progress line of long commands (cli/progress.hpp): shown only on a terminal and without
// --quiet, rewritten in place, cleared at the end; and, end to end, `strata simulate` on a
// pseudo-terminal shows it while stderr to a file stays clean.
#include "cli/args.hpp"
#include "cli/progress.hpp"
#include "common/error.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace strata::cli {
namespace {

TEST(Progress, ShownOnlyWhereAskedAndClearedAtTheEnd) {
  std::ostringstream out;
  {
    Progress p("simulate", out, /*shown=*/true);
    p.phase("lowering the specs to a Plan");
    p.fraction("simulating", 4096, 293000);
    p.fraction("simulating", 293000, 293000);  // the last is always shown
  }
  const std::string s = out.str();
  EXPECT_EQ(s.find("\rstrata simulate: lowering the specs to a Plan"), 0u) << s;
  EXPECT_NE(s.find("simulating: 100% of the tasks (293,000 of 293,000)"), std::string::npos) << s;
  // Cleared: the text ends with spaces over the last line and a carriage return.
  EXPECT_EQ(s.back(), '\r');
  std::ostringstream silent;
  {
    Progress p("simulate", silent, /*shown=*/false);
    p.phase("lowering");
    p.fraction("simulating", 1, 2);
  }
  EXPECT_TRUE(silent.str().empty());
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Progress, SimulateShowsItOnATerminalOnly) {
  const std::string dir = ::testing::TempDir();
  const std::string cmd = std::string(STRATA_EXE) +
                          " simulate --model gpt3-175b --cluster dgx-a100-128n --strategy "
                          "gpt3-175b-tp8-pp8-dp16";
  // stderr to a file: no progress at all.
  const std::string err = dir + "/progress-err.txt";
  ASSERT_EQ(std::system((cmd + " > /dev/null 2> " + err).c_str()), 0);
  EXPECT_EQ(read_all(err), "");
  // On a pseudo-terminal (script(1)): the phases and the share of tasks done.
  const std::string typescript = dir + "/progress-tty.txt";
  ASSERT_EQ(std::system(("script -qfec '" + cmd + " > /dev/null' " + typescript).c_str()), 0);
  const std::string tty = read_all(typescript);
  EXPECT_NE(tty.find("strata simulate: lowering the specs to a Plan"), std::string::npos) << tty;
  EXPECT_NE(tty.find("strata simulate: simulating: 100% of the tasks"), std::string::npos) << tty;
  // And --quiet silences it there too.
  ASSERT_EQ(std::system(("script -qfec '" + cmd + " --quiet > /dev/null' " + typescript).c_str()), 0);
  EXPECT_EQ(read_all(typescript).find("strata simulate:"), std::string::npos);
}

// The results folder of sweep and validate, replaced as a whole: "DIR/" is DIR (its staging
// folder DIR.partial beside it, not inside), and ".", "/" or "" are refused.
TEST(ResultsDirectory, ATrailingSlashNamesTheFolderAndItsParentIsNeverReplaced) {
  EXPECT_EQ(results_directory("--out", "runs/a/"), "runs/a");
  EXPECT_EQ(results_directory("--out", "runs/a//"), "runs/a");
  EXPECT_EQ(results_directory("--out", "/tmp/x/"), "/tmp/x");
  EXPECT_EQ(results_directory("--out", "./b"), "b");
  for (const char* bad : {".", "./", "..", "/", "", "a/.."}) {
    try {
      results_directory("--out", bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("name a folder of its own"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace strata::cli
