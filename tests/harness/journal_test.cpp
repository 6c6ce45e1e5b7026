#include "otarig/harness/journal.hpp"

#include "otarig/core/errors.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

using namespace otarig::harness;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("otarig-journal-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void trial_block(Journal& j, std::uint64_t index) {
  std::vector<nlohmann::json> block;
  block.push_back({{"type", "step"}, {"trial", index}, {"step", "prepare"}});
  block.push_back({{"type", "verdict"}, {"trial", index}, {"index", index}, {"verdict", "pass"}});
  j.append_block(block);
}

}  // namespace

TEST(Journal, ChainsEveryLine) {
  TempDir d;
  auto f = d.path / "journal.jsonl";
  {
    Journal j(f, false);
    j.append({{"type", "campaign-start"}, {"seed", 1}});
    trial_block(j, 0);
    trial_block(j, 1);
  }
  EXPECT_TRUE(verify_journal(f).ok);
  auto text = slurp(f);
  auto first = nlohmann::json::parse(text.substr(0, text.find('\n')));
  EXPECT_EQ(first["seq"], 0);
  EXPECT_EQ(first["prev_sha256"], "");
  EXPECT_EQ(first["type"], "campaign-start");
  EXPECT_TRUE(first.contains("time"));
}

TEST(Journal, VerifyNamesTheFirstChangedLine) {
  TempDir d;
  auto f = d.path / "journal.jsonl";
  {
    Journal j(f, false);
    j.append({{"type", "campaign-start"}});
    trial_block(j, 0);
    trial_block(j, 1);
  }
  auto text = slurp(f);
  auto pos = text.find("\"pass\"");  // the first verdict, line 3
  text.replace(pos, 6, "\"fail\"");
  std::ofstream(f, std::ios::binary | std::ios::trunc) << text;
  auto c = verify_journal(f);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.bad_line, 4u) << "the line after the edited one no longer chains: " << c.reason;
}

TEST(Journal, RefusesToOverwriteWithoutResume) {
  TempDir d;
  auto f = d.path / "journal.jsonl";
  { Journal j(f, false); }
  EXPECT_THROW(Journal(f, false), otarig::InputError);
}

TEST(Journal, ResumeDropsTornLineAndUnfinishedBlock) {
  TempDir d;
  auto f = d.path / "journal.jsonl";
  {
    Journal j(f, false);
    j.append({{"type", "campaign-start"}, {"seed", 3}});
    trial_block(j, 0);
    // An unfinished block: a step without a verdict, then a torn line.
    j.append({{"type", "step"}, {"trial", 1}, {"step", "prepare"}});
  }
  { std::ofstream(f, std::ios::binary | std::ios::app) << "{\"seq\": 5, \"type\": \"ste"; }
  Journal j(f, true);
  EXPECT_EQ(j.state().completed_trials, (std::set<std::uint64_t>{0}));
  EXPECT_EQ(j.state().dropped_lines, 1u) << "the step line of the unfinished trial";
  EXPECT_EQ(j.state().campaign.value("seed", 0), 3);
  trial_block(j, 1);
  EXPECT_TRUE(verify_journal(f).ok) << verify_journal(f).reason;
  EXPECT_EQ(j.state().completed_trials, (std::set<std::uint64_t>{0, 1}));
}
