// RunView: run.json and the reports written from a run read one trial at a
// time are byte for byte those of the whole document; trials read from the
// journal's verdict lines are run.json's trials; a record read by offset is
// bounded and named when it is bad.
#include "otarig/reports/run_view.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "otarig/core/crypto.hpp"
#include "otarig/reports/bundle.hpp"
#include "otarig/reports/verify.hpp"
#include "sample_bundle.hpp"
#include "test_util.hpp"

using namespace otarig;
using namespace otarig::reports;
using namespace otarig::reports::testing;
using nlohmann::json;

namespace {

std::filesystem::path signing_key(const std::filesystem::path& dir) {
  std::array<std::uint8_t, 32> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(0x3C ^ (i * 5));
  auto file = dir / "signing.pem";
  crypto::Ed25519Key::from_seed(seed).save_pem(file);
  return file;
}

// The harness's part of a bundle (journal.jsonl, trials/) copied into `to`.
void copy_evidence(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  std::filesystem::copy_file(from / "journal.jsonl", to / "journal.jsonl");
  std::filesystem::copy(from / "trials", to / "trials", std::filesystem::copy_options::recursive);
}

const char* const kWritten[] = {"run.json",           "junit.xml",           "summary.md",         "report.html",
                                "manifest-sha256.txt", "attestation.dsse.json", "attestation.pub.pem"};

}  // namespace

TEST(RunView, AStreamedBundleIsByteForByteTheBundleOfTheWholeDocument) {
  TempDir d;
  SampleOptions o;
  o.signing_key = signing_key(d.path);
  const auto run = write_sample_bundle(d.path / "whole", o);
  copy_evidence(d.path / "whole", d.path / "streamed");
  BundleOptions b;
  b.signing_key = o.signing_key;
  write_bundle(d.path / "streamed", RunView::of(run), b);
  for (const char* f : kWritten) EXPECT_EQ(slurp(d.path / "streamed" / f), slurp(d.path / "whole" / f)) << f;
  // run.json is the document's own dump, and the reports' strings are the files.
  EXPECT_EQ(slurp(d.path / "streamed" / "run.json"), run.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  EXPECT_EQ(slurp(d.path / "streamed" / "junit.xml"), junit_xml(run));
  EXPECT_EQ(slurp(d.path / "streamed" / "summary.md"), summary_markdown(run));
  std::ostringstream streamed;
  write_run_json(streamed, RunView::of(run));
  EXPECT_EQ(streamed.str(), slurp(d.path / "whole" / "run.json"));
}

TEST(RunView, TrialsReadFromTheJournalAreRunJsonsTrials) {
  TempDir d;
  SampleOptions o;
  o.signing_key = signing_key(d.path);
  const auto run = write_sample_bundle(d.path / "whole", o);
  copy_evidence(d.path / "whole", d.path / "journaled");
  const auto journal = d.path / "journaled" / "journal.jsonl";
  const auto verdicts = verdict_lines(journal);
  ASSERT_EQ(verdicts.size(), run["trials"].size());
  std::size_t failed = 0;
  for (std::size_t i = 0; i < verdicts.size(); ++i) {
    EXPECT_EQ(verdicts[i].index, run["trials"][i]["index"]) << i;
    EXPECT_EQ(verdicts[i].passed, run["trials"][i]["verdict"] == "pass") << i;
    failed += !verdicts[i].passed;
  }
  EXPECT_EQ(failed, run["findings"].size());

  RunView view = RunView::of(run);
  view.trials = trials_of(journal, verdicts);
  EXPECT_EQ(view.materialize(), run);
  BundleOptions b;
  b.signing_key = o.signing_key;
  write_bundle(d.path / "journaled", view, b);
  for (const char* f : kWritten) EXPECT_EQ(slurp(d.path / "journaled" / f), slurp(d.path / "whole" / f)) << f;
  auto r = verify_bundle(d.path / "journaled");
  EXPECT_TRUE(r.ok()) << format_verify(r, d.path / "journaled");
}

TEST(RunView, ARecordReadByOffsetIsBoundedAndNamedWhenBad) {
  TempDir d;
  const auto file = d.path / "records.jsonl";
  std::ofstream(file) << "{\"a\":1}\n" << std::string(300, 'x') << "\nnot json\n{\"b\":2}";
  const auto list = RecordList::of_lines(file, {0, 8, 309, 318}, nullptr, 100);
  EXPECT_EQ(list.at(0), (json{{"a", 1}}));
  auto message = [&](std::size_t i) {
    try {
      (void)list.at(i);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message(1).find("records.jsonl: the line at byte 8 is longer than 100 bytes"), std::string::npos)
      << message(1);
  EXPECT_NE(message(2).find("records.jsonl: the line at byte 309 is not JSON"), std::string::npos) << message(2);
  EXPECT_NE(message(3).find("records.jsonl: the line at byte 318 has no end"), std::string::npos) << message(3);
  // A transform sees each record and its position.
  const auto numbered = RecordList::of_lines(file, {0, 0}, [](json r, std::size_t k) {
    r["k"] = k;
    return r;
  });
  EXPECT_EQ(numbered.at(1), (json{{"a", 1}, {"k", 1}}));
  EXPECT_THROW(RecordList::of_lines(d.path / "absent.jsonl", {}, nullptr), std::runtime_error);
}
