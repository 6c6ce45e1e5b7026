#include "otarig/harness/detection.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "otarig/harness/campaign.hpp"
#include "otarig/harness/composition.hpp"
#include "otarig/harness/oracles.hpp"
#include "otarig/harness/profile.hpp"

namespace otarig::harness {
namespace {

bool under_flawed_folder(const std::filesystem::path& p) {
  for (const auto& part : p.parent_path())
    if (part == "flawed") return true;
  return false;
}

// Removes a temporary evidence folder however the run ends.
class TempDir {
 public:
  explicit TempDir(std::filesystem::path p) : path_(std::move(p)) {}
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

 private:
  std::filesystem::path path_;
};

DetectionRow describe(const std::filesystem::path& file) {
  const auto profile = load_profile(file);
  DetectionRow row;
  row.board = profile.name;
  row.profile = file;
  row.description = profile.description;
  const auto device = profile.root.at("device");
  row.mode = device.string_or("mode", "");
  if (auto d = device.find("defects"); d && !d->node().IsNull()) row.defects = d->as_string_list();
  row.flawed = !row.defects.empty() || under_flawed_folder(file);
  return row;
}

std::string cell(const DetectionRow& row, const std::string& oracle) {
  auto it = row.caught.find(oracle);
  if (it == row.caught.end()) return "";
  const auto& c = it->second;
  return fmt::format("`{}` {}{}", c.trial, c.scenario, c.trials > 1 ? fmt::format(" (+{})", c.trials - 1) : "");
}

}  // namespace

bool DetectionRow::as_expected() const {
  if (exit_code == 3 || !aborted.empty()) return false;
  return flawed ? findings > 0 : findings == 0;
}

bool DetectionTable::as_expected() const {
  return std::all_of(rows.begin(), rows.end(), [](const DetectionRow& r) { return r.as_expected(); });
}

std::vector<std::filesystem::path> detection_boards(const DetectionOptions& options) {
  std::vector<std::filesystem::path> files;
  for (const auto& given : options.boards) {
    // A folder or profile path resolves as --board does: the working folder
    // first, then the data folders (`otarig detect boards` anywhere).
    const auto b = find_data_path(given).value_or(given);
    if (std::filesystem::is_directory(b)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(b))
        if (e.is_regular_file() && e.path().extension() == ".yaml") files.push_back(e.path());
    } else {
      files.push_back(resolve_board(b.string()));
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  if (!options.kinds.empty()) {
    std::erase_if(files, [&](const std::filesystem::path& f) {
      const auto kind = load_profile(f).device_kind;
      return std::find(options.kinds.begin(), options.kinds.end(), kind) == options.kinds.end();
    });
  }
  return files;
}

DetectionTable run_detection(const DetectionOptions& options, const Registries& registries) {
  DetectionTable table;
  table.scenario = options.scenario;
  table.seed = options.seed;
  const auto files = detection_boards(options);
  if (files.empty()) throw InputError("otarig detect: no board profiles found");

  std::filesystem::path out = options.out;
  std::unique_ptr<TempDir> temp;
  if (out.empty()) {
    out = std::filesystem::temp_directory_path() / fmt::format("otarig-detect-{}", ::getpid());
    temp = std::make_unique<TempDir>(out);
  }
  std::set<std::string> names;
  for (const auto& file : files) {
    DetectionRow row = describe(file);
    // load_profile checks the name; checked again where it becomes a folder
    // that is removed and rewritten.
    if (!is_plain_name(row.board))
      throw InputError(fmt::format("{}: board name '{}' is not a plain file name", file.string(), row.board));
    std::string dir = row.board;
    for (int n = 2; !names.insert(dir).second; ++n) dir = fmt::format("{}-{}", row.board, n);
    CampaignOptions c;
    c.board = file.string();
    c.scenario = options.scenario;
    c.seed = options.seed;
    c.jobs = options.jobs;
    c.out = out / dir;
    use_registries(registries, c.hooks, c.bundle);
    std::filesystem::remove_all(c.out);
    const auto result = run_campaign(c, registries);
    row.exit_code = result.exit_code();
    row.trials = result.trials;
    row.findings = result.findings;
    row.aborted = result.aborted;
    // Findings come in trial order: the first one per oracle is the first catch.
    for (const auto& f : result.run.at("findings")) {
      for (const auto& o : f.at("oracles")) {
        auto& c2 = row.caught[o.at("oracle").get<std::string>()];
        if (c2.trials++ == 0) {
          c2.trial = f.at("trial").get<std::string>();
          c2.scenario = f.at("scenario").get<std::string>();
        }
      }
    }
    if (options.on_board)
      options.on_board(fmt::format("{}: {} trials, {} findings{}", row.board, row.trials, row.findings,
                                   row.as_expected() ? "" : " (NOT AS EXPECTED)"));
    table.rows.push_back(std::move(row));
  }
  return table;
}

std::string detection_markdown(const DetectionTable& t) {
  // The five oracles of DESIGN.md, then any other oracle a scenario added
  // (mutual-tls, server-authenticated) that broke on some board.
  std::vector<std::string> columns(std::begin(kOracleNames), std::end(kOracleNames));
  std::set<std::string> extra;
  for (const auto& r : t.rows)
    for (const auto& [oracle, c] : r.caught)
      if (std::find(columns.begin(), columns.end(), oracle) == columns.end()) extra.insert(oracle);
  columns.insert(columns.end(), extra.begin(), extra.end());
  std::string md = fmt::format("| board | mode | defect | trials | findings |");
  for (const auto& o : columns) md += fmt::format(" {} |", o);
  md += " result |\n|---|---|---|---:|---:|";
  for (std::size_t i = 0; i < columns.size(); ++i) md += "---|";
  md += "---|\n";
  for (const auto& r : t.rows) {
    std::string defects;
    for (const auto& d : r.defects) defects += (defects.empty() ? "" : ", ") + d;
    md += fmt::format("| `{}` | {} | {} | {} | {} |", r.board, r.mode.empty() ? "-" : r.mode,
                      defects.empty() ? "none (reference)" : defects, r.trials, r.findings);
    for (const auto& o : columns) md += fmt::format(" {} |", cell(r, o));
    std::string result;
    if (!r.aborted.empty()) result = "bench failure";
    else if (r.flawed) result = r.findings ? "caught" : "**missed**";
    else result = r.findings ? "**finding on a reference**" : "clean";
    md += fmt::format(" {} |\n", result);
  }
  md += fmt::format("\nScenario `{}`, seed {}. A cell names the first trial that broke the oracle, its scenario, "
                    "and (+N) how many more trials broke it.\n",
                    t.scenario, t.seed);
  return md;
}

nlohmann::json detection_json(const DetectionTable& table) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : table.rows) {
    nlohmann::json caught = nlohmann::json::object();
    for (const auto& [oracle, c] : r.caught)
      caught[oracle] = {{"trial", c.trial}, {"scenario", c.scenario}, {"trials", c.trials}};
    nlohmann::json row{{"board", r.board},
                       {"profile", r.profile.string()},
                       {"description", r.description},
                       {"flawed", r.flawed},
                       {"defects", r.defects},
                       {"exit_code", r.exit_code},
                       {"trials", r.trials},
                       {"findings", r.findings},
                       {"caught", std::move(caught)},
                       {"as_expected", r.as_expected()}};
    if (!r.mode.empty()) row["mode"] = r.mode;
    if (!r.aborted.empty()) row["aborted"] = r.aborted;
    rows.push_back(std::move(row));
  }
  return {{"scenario", table.scenario},
          {"seed", table.seed},
          {"as_expected", table.as_expected()},
          {"boards", std::move(rows)}};
}

int detection_main(const DetectionOptions& options, std::ostream& out, bool json) {
  const auto table = run_detection(options, builtin_registries());
  if (json)
    out << detection_json(table).dump(2) << "\n";
  else
    out << detection_markdown(table);
  for (const auto& r : table.rows)
    if (r.exit_code == 3 || !r.aborted.empty()) return 3;
  return table.as_expected() ? 0 : 1;
}

}  // namespace otarig::harness
