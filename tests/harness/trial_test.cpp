// The trial state machine and the campaign runner on a small in-process board.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "otarig/core/crypto.hpp"
#include "otarig/harness/campaign.hpp"
#include "otarig/harness/journal.hpp"

using namespace otarig;
using namespace otarig::harness;

namespace {

std::string small_board(const std::string& name, const std::string& defects) {
  return "name: " + name + R"(
device:
  kind: virtual
  mode: ab
  flash: {slot_size: 64KiB, sector_size: 4KiB, program_align: 8}
  chunk_size: 4KiB
  defects: )" + defects + R"(
power: {driver: virtual}
console: {driver: virtual}
link: {driver: virtual}
observe:
  banner: 'otarig-vboard bootloader'
  status_command: "status\n"
  status: 'STATUS slot=(?P<slot>\w+) version=(?P<version>\S+) digest=(?P<digest>[0-9a-f]{64}) counter=(?P<counter>\d+) state=(?P<state>\w+) health=(?P<health>\w+)'
  boot_timeout: 2s
signing: {key: "test:small"}
releases:
  factory: {version: 1.0.0+1, security_counter: 1, payload_size: 65360}
  update:  {version: 1.1.0+2, security_counter: 2, payload_size: 65360}
  next:    {version: 1.2.0+3, security_counter: 3, payload_size: 65360}
)";
}

struct Fixture : ::testing::Test {
  std::filesystem::path dir;
  drivers::DriverRegistry registry;
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("otarig-trial-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    drivers::register_all_drivers(registry);
    std::ofstream(dir / "small-ab.yaml") << small_board("small-ab", "[]");
    std::ofstream(dir / "small-inplace.yaml") << small_board("small-inplace", "[inplace-overwrite]");
    std::ofstream(dir / "small-norollback.yaml") << small_board("small-norollback", "[no-rollback-check]");
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  CampaignResult run(const std::string& board, const std::string& scenario, std::uint64_t seed = 1,
                     const std::string& out = "out", TrialHooks hooks = {}) {
    CampaignOptions o;
    o.board = (dir / (board + ".yaml")).string();
    o.scenario = scenario;
    o.seed = seed;
    o.out = dir / out;
    o.hooks = std::move(hooks);
    return run_campaign(o, registry);
  }
};

std::set<std::string> broken_oracles(const CampaignResult& r, const std::string& scenario) {
  std::set<std::string> out;
  for (const auto& f : r.run["findings"])
    if (f["scenario"] == scenario)
      for (const auto& o : f["oracles"]) out.insert(o["oracle"].get<std::string>());
  return out;
}

}  // namespace

TEST_F(Fixture, ReferenceBoardPassesTheNightlyCatalog) {
  auto r = run("small-ab", "nightly");
  EXPECT_EQ(r.exit_code(), 0) << r.run["findings"].dump(1);
  EXPECT_EQ(r.findings, 0u);
  EXPECT_EQ(r.trials, r.run["planned"].get<std::uint64_t>());
  EXPECT_GT(r.run["ops_per_update"]["factory->update"].get<int>(), 16);
  EXPECT_TRUE(verify_journal(dir / "out" / "journal.jsonl").ok);
}

TEST_F(Fixture, InPlaceUpdaterBricksUnderPowerCuts) {
  auto r = run("small-inplace", "power-cut-sweep");
  EXPECT_EQ(r.exit_code(), 1);
  auto broken = broken_oracles(r, "power-cut-sweep");
  EXPECT_TRUE(broken.count("atomic"));
  EXPECT_TRUE(broken.count("recovered"));
}

TEST_F(Fixture, MissingCounterCheckIsARollbackFinding) {
  auto r = run("small-norollback", "replay-old");
  EXPECT_EQ(r.exit_code(), 1);
  EXPECT_EQ(broken_oracles(r, "replay-old"), std::set<std::string>{"no-rollback"});
}

// Version edges (docs/scenarios.md): a reference takes what is newer and
// refuses what is older; a device comparing version texts is caught in both
// directions across 1.1.9 / 1.1.10, 1.9.0 / 1.10.0 and 9.0.0 / 10.0.0, and
// only there.
TEST_F(Fixture, VersionEdgesCatchATextComparisonAndPassTheReference) {
  auto ref = run("small-ab", "version-edges");
  EXPECT_EQ(ref.exit_code(), 0) << ref.run["findings"].dump(1);
  ASSERT_EQ(ref.trials, 9u);
  std::map<std::string, std::string> after;
  for (const auto& t : ref.run["trials"]) {
    const auto variant = t["fault"]["variant"].get<std::string>();
    for (const auto& o : t["observed"])
      if (o["step"] == "after-fault") after[variant] = o["version"].get<std::string>();
  }
  EXPECT_EQ(after["patch-digits-up"], "1.1.10+2");
  EXPECT_EQ(after["patch-digits-down"], "1.1.10+2");
  EXPECT_EQ(after["minor-digits-up"], "1.10.0+2");
  EXPECT_EQ(after["minor-digits-down"], "1.10.0+2");
  EXPECT_EQ(after["major-digits-up"], "10.0.0+2");
  EXPECT_EQ(after["major-digits-down"], "10.0.0+2");
  // Their retry is the retry release signed newer than the edge.
  std::map<std::string, std::string> retried;
  for (const auto& t : ref.run["trials"])
    for (const auto& o : t["observed"])
      if (o["step"] == "retry") retried[t["fault"]["variant"].get<std::string>()] = o["version"].get<std::string>();
  EXPECT_EQ(retried["minor-digits-up"], "1.11.0+2");
  EXPECT_EQ(retried["major-digits-down"], "11.0.0+2");
  EXPECT_EQ(retried["patch-digits-up"], "1.2.0+3");
  EXPECT_EQ(after["higher-version-equal-counter"], "1.1.1+2");
  EXPECT_EQ(after["lower-version-higher-counter"], "1.1.1+2");

  std::ofstream(dir / "small-textver.yaml") << small_board("small-textver", "[version-string-compare]");
  auto flawed = run("small-textver", "version-edges", 1, "out-flawed");
  EXPECT_EQ(flawed.exit_code(), 1);
  std::map<std::string, std::set<std::string>> broken;
  for (const auto& f : flawed.run["findings"])
    for (const auto& o : f["oracles"])
      broken[f["fault"]["variant"].get<std::string>()].insert(o["oracle"].get<std::string>());
  // Across a minor or major boundary the text comparison also refuses the
  // newer retry after it took the older edge (1.11.0 < 1.9.0 as text).
  EXPECT_EQ(broken, (std::map<std::string, std::set<std::string>>{
                        {"patch-digits-down", {"no-rollback"}},
                        {"patch-digits-up", {"still-updatable"}},
                        {"minor-digits-down", {"no-rollback", "still-updatable"}},
                        {"minor-digits-up", {"still-updatable"}},
                        {"major-digits-down", {"no-rollback", "still-updatable"}},
                        {"major-digits-up", {"still-updatable"}}}));
  // The same device passes every other image scenario: the shipped releases never show it.
  EXPECT_EQ(run("small-textver", "replay-old", 1, "out-replay").exit_code(), 0);
}

TEST_F(Fixture, VersionEdgesAboveTheRetryReleaseAreBadInputNamingTheScenario) {
  auto text = small_board("small-lowretry", "[]");
  const std::string next = "next:    {version: 1.2.0+3";
  text.replace(text.find(next), next.size(), "next:    {version: 1.1.5+3");
  std::ofstream(dir / "small-lowretry.yaml") << text;
  try {
    run("small-lowretry", "version-edges");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("version-edges.yaml:"), std::string::npos) << what;
    EXPECT_NE(what.find("must be newer than 1.1.10+2"), std::string::npos) << what;
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "run.json"));
}

TEST_F(Fixture, EveryTrialRecordsItsStateMachineAndTranscript) {
  auto r = run("small-ab", "self-test-fail");
  ASSERT_EQ(r.trials, 1u);
  auto id = r.run["trials"][0]["id"].get<std::string>();
  std::ifstream ev(dir / "out" / "trials" / id / "events.jsonl");
  std::string text((std::istreambuf_iterator<char>(ev)), std::istreambuf_iterator<char>());
  for (const char* step : {"prepare", "inject", "deliver", "recover", "observe", "retry", "judge", "record"})
    EXPECT_NE(text.find(std::string("\"step\":\"") + step + "\""), std::string::npos) << step;
  std::ifstream con(dir / "out" / "trials" / id / "console.log");
  std::string console((std::istreambuf_iterator<char>(con)), std::istreambuf_iterator<char>());
  EXPECT_NE(console.find("STATUS"), std::string::npos);
  // The failing image booted only as a trial and was reverted.
  const auto& observed = r.run["trials"][0]["observed"];
  EXPECT_EQ(observed[1]["step"], "after-fault");
  EXPECT_EQ(observed[1]["version"], "1.0.0+1");
}

TEST_F(Fixture, CustomOracleCanFailATrial) {
  TrialHooks hooks;
  hooks.oracles.push_back([](const TrialContext& ctx) {
    OracleResult r{"slot-b-never", true, ""};
    for (const auto& o : ctx.outcome.observations)
      if (o.booted && o.slot == "B") {
        r.held = false;
        r.detail = o.step + ": runs from slot B";
      }
    return r;
  });
  int steps = 0;
  hooks.steps.push_back([&](TrialContext&) { ++steps; });
  auto r = run("small-ab", "unsigned", 1, "out", hooks);
  EXPECT_EQ(steps, 1);
  EXPECT_EQ(r.exit_code(), 1) << "the retry runs from slot B";
  EXPECT_EQ(broken_oracles(r, "unsigned"), std::set<std::string>{"slot-b-never"});
}

TEST_F(Fixture, BenchFailureIsExit3AndKeepsCompletedTrials) {
  // A profile whose prepare can never succeed: the status pattern never matches.
  auto text = small_board("small-mute", "[]");
  auto pos = text.find("STATUS slot=");
  text.replace(pos, 6, "NOPE__");
  std::ofstream(dir / "small-mute.yaml") << text;
  auto r = run("small-mute", "unsigned");
  EXPECT_EQ(r.exit_code(), 3);
  EXPECT_NE(r.aborted.find("prepare"), std::string::npos) << r.aborted;
  // The error carries what the device said when it did not come up.
  EXPECT_NE(r.aborted.find("the last lines of its console:\n  | "), std::string::npos) << r.aborted;
  EXPECT_NE(r.aborted.find("STATUS slot="), std::string::npos) << r.aborted;
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "run.json"));
  // ... and the failed trial's folder keeps its console and the failure.
  ASSERT_TRUE(r.run.contains("aborted_evidence")) << r.run.dump();
  const auto folder = dir / "out" / r.run["aborted_evidence"].get<std::string>();
  std::ifstream con(folder / "console.log");
  std::string console((std::istreambuf_iterator<char>(con)), std::istreambuf_iterator<char>());
  EXPECT_NE(console.find("STATUS slot="), std::string::npos) << console;
  std::ifstream failure_file(folder / "bench-failure.json");
  ASSERT_TRUE(failure_file.good()) << folder;
  const auto failure = nlohmann::json::parse(failure_file);
  EXPECT_EQ(failure["step"], "prepare");
  EXPECT_EQ(failure["release"], "factory");
  EXPECT_TRUE(failure["device_exit"].is_null()) << "an in-process board cannot tell";
  EXPECT_FALSE(std::filesystem::exists(folder / "verdict.json"));
}

TEST(EraseRuns, GroupsEqualCountsAndLeavesOutUnerasedSectors) {
  EXPECT_EQ(erase_runs({0, 0, 1, 1, 1, 2, 0, 1}).dump(),
            R"([{"erases":1,"sectors":[2,4]},{"erases":2,"sectors":[5,5]},{"erases":1,"sectors":[7,7]}])");
  EXPECT_EQ(erase_runs({0, 0}).dump(), "[]");
  EXPECT_EQ(erase_runs({}).dump(), "[]");
}

TEST_F(Fixture, TrialEvidenceCarriesTheEraseCyclesPerSector) {
  auto r = run("small-ab", "unsigned");
  ASSERT_EQ(r.trials, 1u);
  const auto& t = r.run["trials"][0];
  // Per-sector counts since provisioning add up to the trial's total.
  std::uint64_t from_runs = 0;
  for (const auto& run : t["erases"]["per_sector"]) {
    const auto first = run["sectors"][0].get<std::uint64_t>(), last = run["sectors"][1].get<std::uint64_t>();
    ASSERT_LE(first, last);
    from_runs += (last - first + 1) * run["erases"].get<std::uint64_t>();
  }
  EXPECT_GT(t["erases"]["total"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(from_runs, t["erases"]["total"].get<std::uint64_t>());
  // Each delivery's wear event says what that update cost, sector by sector:
  // the clean retry erases the whole 64 KiB slot B (16 sectors of 4 KiB) at least once.
  std::ifstream ev(dir / "out" / "trials" / t["id"].get<std::string>() / "events.jsonl");
  std::string line;
  bool saw_retry = false;
  while (std::getline(ev, line)) {
    auto e = nlohmann::json::parse(line);
    if (e["type"] != "wear" || e["step"] != "retry") continue;
    saw_retry = true;
    std::uint64_t sectors = 0, erases = 0;
    for (const auto& run : e["per_sector"]) {
      const auto n = run["sectors"][1].get<std::uint64_t>() - run["sectors"][0].get<std::uint64_t>() + 1;
      sectors += n;
      erases += n * run["erases"].get<std::uint64_t>();
    }
    EXPECT_GE(sectors, 16u);
    EXPECT_EQ(erases, e["erases"].get<std::uint64_t>());
  }
  EXPECT_TRUE(saw_retry);
}

namespace {

// A console driver that records its own lines, as the bench's console reader
// does, over the virtual board's console: line n is stamped n seconds into
// the board's clock (an arrival stamp only it knows), and its first record
// tells of a disconnect and a reconnect.
class StampingConsole final : public drivers::ConsoleProtocol, public drivers::StampedConsoleProtocol {
 public:
  StampingConsole(std::shared_ptr<drivers::ConsoleProtocol> inner, const Clock& clock)
      : inner_(std::move(inner)), clock_(clock) {}
  void write(std::string_view bytes) override { inner_->write(bytes); }
  std::string read(std::chrono::milliseconds timeout) override {
    auto bytes = inner_->read(timeout);
    for (char c : bytes) {
      if (c != '\n') {
        line_ += c;
        continue;
      }
      ++lines_;
      record_.entries.emplace_back(std::chrono::seconds(lines_), drivers::ConsoleEntry::Kind::line,
                                   std::exchange(line_, {}));
    }
    return bytes;
  }
  drivers::ConsoleRecord take_record() override {
    auto record = std::exchange(record_, {});
    if (!told_) {
      told_ = true;
      using Kind = drivers::ConsoleEntry::Kind;
      const auto now = clock_.now();
      record.entries.insert(
          record.entries.begin(),
          {{now, Kind::event, "console disconnected: Input/output error", true, "disconnected"},
           {now, Kind::event, "console reconnected: tty /dev/ttyBOARD", true, "reconnected"}});
    }
    return record;
  }

 private:
  std::shared_ptr<drivers::ConsoleProtocol> inner_;
  const Clock& clock_;
  std::string line_;
  std::uint64_t lines_ = 0;
  drivers::ConsoleRecord record_;
  bool told_ = false;
};

}  // namespace

TEST_F(Fixture, ConsoleLogTakesTheDriversStampsAndEventsShowTheConsoleGap) {
  registry.add_console("stamping",
                       [](const Config&, const drivers::BindContext& ctx, drivers::BoardParts& parts) {
                         if (ctx.validate_only) return;
                         auto console = std::make_shared<StampingConsole>(parts.console, *ctx.clock);
                         parts.console = console;
                         parts.console_stamps = console;
                       });
  auto text = small_board("small-stamped", "[]");
  text.replace(text.find("console: {driver: virtual}"), 26, "console: {driver: stamping}");
  std::ofstream(dir / "small-stamped.yaml") << text;
  auto r = run("small-stamped", "unsigned");
  ASSERT_EQ(r.trials, 1u);
  EXPECT_EQ(r.exit_code(), 0) << r.run["findings"].dump(1);
  const auto trial = dir / "out" / "trials" / r.run["trials"][0]["id"].get<std::string>();

  // console.log: the driver's stamps, one second apart, not the reading times.
  std::ifstream con(trial / "console.log");
  std::vector<double> stamps;
  for (std::string line; std::getline(con, line);) {
    ASSERT_EQ(line.rfind("[", 0), 0u) << line;
    stamps.push_back(std::stod(line.substr(1, line.find(" ms]") - 1)));
  }
  ASSERT_GE(stamps.size(), 3u);
  for (std::size_t i = 1; i < stamps.size(); ++i) EXPECT_NEAR(stamps[i] - stamps[i - 1], 1000.0, 0.002) << i;

  // events.jsonl: the disconnect and the reconnect, as they came.
  std::ifstream ev(trial / "events.jsonl");
  std::vector<nlohmann::json> console_events;
  for (std::string line; std::getline(ev, line);)
    if (auto e = nlohmann::json::parse(line); e["type"] == "console") console_events.push_back(e);
  ASSERT_EQ(console_events.size(), 2u);
  EXPECT_EQ(console_events[0]["event"], "disconnected");
  EXPECT_EQ(console_events[0]["detail"], "console disconnected: Input/output error");
  EXPECT_EQ(console_events[1]["event"], "reconnected");
  EXPECT_TRUE(console_events[0].contains("t_ms") && console_events[0].contains("console_ms"));
}

// ---- A fault kind defined here, in the test, and nowhere else: registered
// beside the built-in ones, named by a scenario file the test writes, planned,
// injected and described end to end through the same campaign path.
namespace {

struct DoubleDeliveryOptions final : FaultOptions {
  std::uint64_t times = 2;
};

struct DoubleDeliveryPoint final : FaultPoint {
  std::uint64_t times = 2;
  nlohmann::json json() const override { return {{"times", times}}; }
  std::string label() const override { return "double-delivery x" + std::to_string(times); }
};

// Delivers the release `times` times in a row without a reboot in between
// (an operator who presses "update" twice): the device must end up on it.
class DoubleDeliveryRun final : public FaultRun {
 public:
  explicit DoubleDeliveryRun(std::uint64_t times) : times_(times) {}
  std::string inject(TrialPort& port) override {
    port.note("double-delivery", {{"times", times_}});
    return "the release delivered " + std::to_string(times_) + " times";
  }
  void deliver(TrialPort& port, const std::string& step) override {
    for (std::uint64_t i = 0; i < times_; ++i) (void)port.deliver(port.image(), i ? "again" : step);
  }

 private:
  std::uint64_t times_;
};

class DoubleDeliveryKind final : public FaultKind {
 public:
  std::string_view name() const override { return "double-delivery"; }
  std::string_view where() const override { return "image"; }
  std::string_view summary() const override { return "deliver the release several times in a row"; }
  std::vector<std::string_view> keys() const override { return {"times"}; }
  std::shared_ptr<const FaultOptions> parse(const otarig::Config& c, const FaultParseContext&) const override {
    auto o = std::make_shared<DoubleDeliveryOptions>();
    o->times = c.size_or("times", 2);
    if (o->times < 1 || o->times > 4) c.at("times").fail("times must be 1..4");
    return o;
  }
  void plan(PlanContext& ctx) const override {
    auto p = std::make_shared<DoubleDeliveryPoint>();
    p->times = ctx.scenario().fault.as<DoubleDeliveryOptions>().times;
    ctx.add().point = std::move(p);
  }
  std::unique_ptr<FaultRun> start(const TrialSpec& spec) const override {
    return std::make_unique<DoubleDeliveryRun>(spec.point_as<DoubleDeliveryPoint>().times);
  }
};

}  // namespace

namespace {

// A device that writes terminal escape sequences (a window title, clear
// screen, an 8-bit CSI, a byte that is not UTF-8) around its boot banner.
class HostileConsole final : public drivers::ConsoleProtocol {
 public:
  explicit HostileConsole(std::shared_ptr<drivers::ConsoleProtocol> inner) : inner_(std::move(inner)) {}
  void write(std::string_view bytes) override { inner_->write(bytes); }
  std::string read(std::chrono::milliseconds timeout) override {
    auto bytes = inner_->read(timeout);
    static const std::string banner = "otarig-vboard bootloader";
    for (auto at = bytes.find(banner); at != std::string::npos; at = bytes.find(banner, at + kHostile.size() + 1))
      bytes.insert(at, kHostile);
    return bytes;
  }
  static inline const std::string kHostile = "\x1b]0;owned\x07\x1b[2J\xc2\x9b\xff\x7f caf\xc3\xa9 ";

 private:
  std::shared_ptr<drivers::ConsoleProtocol> inner_;
};

}  // namespace

TEST_F(Fixture, AFaultKindDefinedInATestRunsEndToEnd) {
  auto registries = make_registries();
  registries.faults.add(std::make_shared<DoubleDeliveryKind>());
  std::ofstream(dir / "double-delivery.yaml") << R"yaml(name: double-delivery
classes: [S6]
requirements: ["CRA Annex I Part I (2)(c)"]
start: factory
deliver: update
fault: {kind: double-delivery, times: 3}
retry: next
)yaml";
  CampaignOptions o;
  o.board = (dir / "small-ab.yaml").string();
  o.scenario = (dir / "double-delivery.yaml").string();
  o.out = dir / "out";
  const auto r = run_campaign(o, registries);
  ASSERT_EQ(r.trials, 1u) << r.aborted;
  EXPECT_EQ(r.exit_code(), 0) << r.run["findings"].dump(1);
  const auto& trial = r.run["trials"][0];
  EXPECT_EQ(trial["fault"]["kind"], "double-delivery");
  EXPECT_EQ(trial["fault"]["times"], 3);
  EXPECT_EQ(trial["fault"]["label"], "double-delivery x3");
  EXPECT_EQ(trial["fault"]["detail"], "the release delivered 3 times");
  std::ifstream ev(dir / "out" / "trials" / "00000" / "events.jsonl");
  std::string text((std::istreambuf_iterator<char>(ev)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"type\":\"double-delivery\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"step\":\"again\""), std::string::npos) << text;
  std::ifstream junit(dir / "out" / "junit.xml");
  std::string xml((std::istreambuf_iterator<char>(junit)), std::istreambuf_iterator<char>());
  EXPECT_NE(xml.find("fault_point: double-delivery x3"), std::string::npos);

  // The built-in registries do not know it: the same scenario is bad input at its line.
  o.out = dir / "out2";
  try {
    (void)run_campaign(o, builtin_registries());
    FAIL() << "expected an InputError";
  } catch (const otarig::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("double-delivery.yaml:6"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unknown fault kind 'double-delivery'"), std::string::npos) << e.what();
  }
}

TEST_F(Fixture, AnOracleAndAReportWriterRegisteredInACopyOfTheRegistriesAreUsed) {
  auto registries = make_registries();
  // An oracle of this lab's own, which holds only while the device has never
  // booted the delivered image: it breaks once an update takes.
  registries.oracles.add({"never-updates", [](const OracleInput& in) {
                            OracleResult r{"never-updates", true, ""};
                            for (const auto& o : in.history)
                              if (o.booted && o.digest == in.delivered_digest) {
                                r.held = false;
                                r.detail = o.step + ": the delivered image runs";
                              }
                            return r;
                          }});
  // A report format of its own: one line per trial.
  registries.reports.add({"verdicts.txt", [](const nlohmann::json& run, const reports::ReportContext& c) {
                            std::string text = "signed by " + c.signer_keyid + "\n";
                            for (const auto& t : run.at("trials"))
                              text += t.at("id").get<std::string>() + " " + t.at("verdict").get<std::string>() + "\n";
                            return text;
                          }});
  EXPECT_FALSE(builtin_registries().oracles.find("never-updates"));
  EXPECT_EQ(builtin_registries().reports.all().size(), 3u);

  CampaignOptions o;
  o.board = (dir / "small-ab.yaml").string();
  o.scenario = "power-cut-sweep";
  o.trials = 6;
  o.out = dir / "out";
  use_registries(registries, o.hooks, o.bundle);
  const auto r = run_campaign(o, registries);
  ASSERT_EQ(r.trials, 6u) << r.aborted;
  for (const auto& t : r.run["trials"]) {
    ASSERT_TRUE(t["oracles"].contains("never-updates")) << t.dump(1);
    for (const char* name : kOracleNames) EXPECT_TRUE(t["oracles"].contains(name)) << name;
    // Every trial's clean retry installs an update: the lab's oracle breaks, and only it.
    EXPECT_FALSE(t["oracles"]["never-updates"].get<bool>()) << t.dump(1);
    ASSERT_EQ(t["broken"].size(), 1u) << t.dump(1);
    EXPECT_EQ(t["broken"][0]["oracle"], "never-updates");
  }
  EXPECT_EQ(r.exit_code(), 1);
  std::ifstream in(dir / "out" / "verdicts.txt");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& t : r.run["trials"])
    EXPECT_NE(text.find(t["id"].get<std::string>() + " fail\n"), std::string::npos) << text;
  std::ifstream manifest(dir / "out" / "manifest-sha256.txt");
  std::string listed((std::istreambuf_iterator<char>(manifest)), std::istreambuf_iterator<char>());
  EXPECT_NE(listed.find("verdicts.txt"), std::string::npos) << listed;
  EXPECT_NE(listed.find("junit.xml"), std::string::npos) << listed;

  // The built-ins judge by the five and write the three formats only.
  o.out = dir / "out2";
  use_registries(builtin_registries(), o.hooks, o.bundle);
  const auto plain = run_campaign(o, builtin_registries());
  EXPECT_EQ(plain.exit_code(), 0) << plain.run["findings"].dump(1);
  EXPECT_FALSE(plain.run["trials"][0]["oracles"].contains("never-updates"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out2" / "verdicts.txt"));
  EXPECT_TRUE(std::filesystem::exists(dir / "out2" / "report.html"));
}

TEST(Registries, RefuseAnOracleOrAReportFileTwiceAndFilesTheBundleWritesItself) {
  auto registries = make_registries();
  EXPECT_THROW(registries.oracles.add({"atomic", [](const OracleInput&) { return OracleResult{}; }}),
               std::logic_error);
  auto text = [](const nlohmann::json&, const reports::ReportContext&) { return std::string(); };
  EXPECT_THROW(registries.reports.add({"junit.xml", text}), std::logic_error);
  EXPECT_THROW(registries.reports.add({"run.json", text}), std::logic_error);
  EXPECT_THROW(registries.reports.add({"manifest-sha256.txt", text}), std::logic_error);
  EXPECT_THROW(registries.reports.add({"../escape.txt", text}), std::logic_error);
  std::vector<std::string> names;
  for (const auto& oracle : registries.oracles.all()) names.push_back(oracle.name);
  EXPECT_EQ(names, std::vector<std::string>(std::begin(kOracleNames), std::end(kOracleNames)));
}

TEST_F(Fixture, ConsoleLogShowsControlBytesEscapedAndConsoleRawKeepsThem) {
  registry.add_console("hostile", [](const Config&, const drivers::BindContext& ctx, drivers::BoardParts& parts) {
    if (ctx.validate_only) return;
    parts.console = std::make_shared<HostileConsole>(parts.console);
  });
  auto text = small_board("small-hostile", "[]");
  text.replace(text.find("console: {driver: virtual}"), 26, "console: {driver: hostile}");
  std::ofstream(dir / "small-hostile.yaml") << text;
  auto r = run("small-hostile", "unsigned");
  ASSERT_EQ(r.trials, 1u);
  EXPECT_EQ(r.exit_code(), 0) << r.run["findings"].dump(1);
  const auto trial = dir / "out" / "trials" / r.run["trials"][0]["id"].get<std::string>();
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const auto log = slurp(trial / "console.log");
  EXPECT_NE(log.find("\\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b\\xff\\x7f caf\xc3\xa9 otarig-vboard bootloader"),
            std::string::npos)
      << log;
  for (char c : log) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(c == '\n' || c == '\t' || (u >= 0x20 && u != 0x7f && u != 0xff && u != 0x9b)) << int(u);
  }
  const auto raw = slurp(trial / "console.raw");
  EXPECT_NE(raw.find(HostileConsole::kHostile + "otarig-vboard bootloader"), std::string::npos);
  EXPECT_EQ(std::count(raw.begin(), raw.end(), '\n'), std::count(log.begin(), log.end(), '\n'));
}

TEST(PrintableConsoleText, EscapesControlsAndBytesThatAreNotUtf8) {
  struct Case {
    std::string raw, shown;
    bool escaped;
  };
  const Case cases[] = {
      {"plain text\twith tab", "plain text\twith tab", false},
      {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", false},
      {"\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", true},
      {std::string("nul\0bell\a", 9), "nul\\x00bell\\x07", true},
      {"del\x7f", "del\\x7f", true},
      {"csi\xc2\x9b" "2J", "csi\\xc2\\x9b2J", true},
      {"bad\xff\xfe", "bad\\xff\\xfe", true},
      {"overlong\xc0\xaf", "overlong\\xc0\\xaf", true},
      {"surrogate\xed\xa0\x80", "surrogate\\xed\\xa0\\x80", true},
      {"cut\xe2\x82", "cut\\xe2\\x82", true},
      {"cr\r", "cr\\x0d", true},
  };
  for (const auto& c : cases) {
    bool escaped = false;
    EXPECT_EQ(reports::printable_console_text(c.raw, &escaped), c.shown) << c.shown;
    EXPECT_EQ(escaped, c.escaped) << c.shown;
  }
}

// --- --resume continues only the campaign its journal began ------------------

namespace {

std::vector<std::string> lines_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Rewrites a journal with `edit` applied to its first event, chained again
// (what an older otarig, or another campaign, would have written).
void rewrite_first_event(const std::filesystem::path& file,
                         const std::function<void(nlohmann::ordered_json&)>& edit) {
  std::string prev, text;
  bool first = true;
  for (const auto& line : lines_of(file)) {
    auto ev = nlohmann::ordered_json::parse(line);
    if (first) edit(ev);
    first = false;
    ev["prev_sha256"] = prev;
    const auto dumped = ev.dump();
    prev = crypto::hex(crypto::sha256(dumped));
    text += dumped + "\n";
  }
  std::ofstream(file, std::ios::trunc) << text;
}

struct ResumeFixture : Fixture {
  CampaignOptions options(const std::string& scenario, const std::string& out = "out") {
    CampaignOptions o;
    o.board = (dir / "small-ab.yaml").string();
    o.scenario = scenario;
    o.out = dir / out;
    o.jobs = 1;
    return o;
  }
  // The InputError a resume with `o` ends in ("" when it runs), and that the
  // journal was left as it was.
  std::string refusal(CampaignOptions o) {
    o.resume = true;
    const auto before = lines_of(o.out / "journal.jsonl");
    try {
      (void)run_campaign(o, registry);
    } catch (const otarig::InputError& e) {
      EXPECT_EQ(lines_of(o.out / "journal.jsonl"), before) << "a refused resume changes nothing";
      return e.what();
    }
    return "";
  }
};

std::filesystem::path catalog_scenario(const std::string& name) {
  for (const auto& p : catalog_scenarios())
    if (p.stem() == name) return p;
  throw std::runtime_error("no catalog scenario " + name);
}

}  // namespace

TEST_F(ResumeFixture, AResumeWithAnotherShardIsRefusedNamingBoth) {
  auto o = options("tampered-image");
  o.shard = 0;
  o.shards = 2;
  ASSERT_EQ(run_campaign(o, registry).exit_code(), 0);
  o.shard = 1;
  const auto why = refusal(o);
  EXPECT_NE(why.find("journal.jsonl: --resume: the shard (--shard) differs"), std::string::npos) << why;
  EXPECT_NE(why.find("the journaled campaign has 0/2, this run has 1/2"), std::string::npos) << why;
  o.shards = 1;
  o.shard = 0;
  EXPECT_NE(refusal(o).find("has 0/2, this run has 0/1"), std::string::npos);
}

TEST_F(ResumeFixture, AResumeAfterTheProfileChangedIsRefused) {
  auto o = options("unsigned");
  (void)run_campaign(o, registry);
  const auto was = load_profile(dir / "small-ab.yaml").sha256;
  std::ofstream(dir / "small-ab.yaml", std::ios::app) << "# edited after the campaign began\n";
  const auto now = load_profile(dir / "small-ab.yaml").sha256;
  const auto why = refusal(o);
  EXPECT_NE(why.find("the board profile's SHA-256 differs: the journaled campaign has " + was + ", this run has " +
                     now),
            std::string::npos)
      << why;
}

TEST_F(ResumeFixture, AResumeAfterTheScenarioChangedIsRefused) {
  const auto copy = dir / "tampered-image.yaml";
  std::filesystem::copy_file(catalog_scenario("tampered-image"), copy);
  auto o = options(copy.string());
  (void)run_campaign(o, registry);
  const auto was = load_scenario(copy.string()).sha256;
  std::ofstream(copy, std::ios::app) << "# edited after the campaign began\n";
  const auto why = refusal(o);
  EXPECT_NE(why.find("the scenario's SHA-256 differs: the journaled campaign has " + was + ", this run has " +
                     load_scenario(copy.string()).sha256),
            std::string::npos)
      << why;
}

TEST_F(ResumeFixture, AResumeWithAnotherTrialSelectionIsRefused) {
  auto o = options("tampered-image");
  o.trials = 3;
  (void)run_campaign(o, registry);
  auto other = o;
  other.trials = 4;
  auto why = refusal(other);
  EXPECT_NE(why.find("the trial selection (--trials, --trial) differs: the journaled campaign has --trials 3, this "
                     "run has --trials 4"),
            std::string::npos)
      << why;
  other.trials.reset();
  EXPECT_NE(refusal(other).find("has --trials 3, this run has every trial of the plan"), std::string::npos);
  other.only = 2;
  EXPECT_NE(refusal(other).find("has --trials 3, this run has --trial 00002"), std::string::npos);
}

TEST_F(ResumeFixture, AResumeWithAnotherSeedOrVersionIsRefused) {
  auto o = options("unsigned");
  (void)run_campaign(o, registry);
  auto other = o;
  other.seed = 2;
  EXPECT_NE(refusal(other).find("the seed differs: the journaled campaign has 1, this run has 2"), std::string::npos);
  rewrite_first_event(o.out / "journal.jsonl", [](auto& ev) { ev["otarig"] = "0.0.1-older"; });
  const auto why = refusal(o);
  EXPECT_NE(why.find(fmt::format("the otarig version differs: the journaled campaign has 0.0.1-older, this run has {}",
                                 version_string())),
            std::string::npos)
      << why;
}

TEST_F(ResumeFixture, AJournalFromBeforeTheChecksIsRefusedNamingWhatItLacks) {
  auto o = options("unsigned");
  (void)run_campaign(o, registry);
  rewrite_first_event(o.out / "journal.jsonl", [](auto& ev) {
    for (const char* k : {"scenario_sha256", "selection", "calibration"}) ev.erase(k);
  });
  const auto why = refusal(o);
  EXPECT_NE(why.find("--resume: the journal records no scenario's SHA-256 (written by otarig"), std::string::npos)
      << why;
  EXPECT_NE(why.find("start it again in another --out"), std::string::npos) << why;
}

TEST_F(ResumeFixture, AMatchingResumeFinishesTheCampaign) {
  auto o = options("tampered-image", "whole");
  o.trials = 6;  // of the 7 variants: at least two of the odd trial indexes stay
  o.shard = 1;
  o.shards = 2;
  const auto whole = run_campaign(o, registry);
  ASSERT_GE(whole.trials, 2u);
  // Killed after its first trial: the journal up to the first verdict.
  std::filesystem::create_directories(dir / "killed");
  std::string kept;
  for (const auto& line : lines_of(dir / "whole" / "journal.jsonl")) {
    kept += line + "\n";
    if (line.find("\"type\":\"verdict\"") != std::string::npos) break;
  }
  std::ofstream(dir / "killed" / "journal.jsonl") << kept;
  o.out = dir / "killed";
  o.resume = true;
  const auto resumed = run_campaign(o, registry);
  EXPECT_EQ(resumed.trials, whole.trials);
  auto table = [](const nlohmann::json& run) {
    std::vector<std::string> rows;
    for (const auto& t : run["trials"]) rows.push_back(t["id"].dump() + t["fault"].dump() + t["verdict"].dump());
    return rows;
  };
  EXPECT_EQ(table(resumed.run), table(whole.run));
  const auto journal = lines_of(dir / "killed" / "journal.jsonl");
  EXPECT_EQ(std::count_if(journal.begin(), journal.end(),
                          [](const auto& l) { return l.find("\"type\":\"campaign-resume\"") != std::string::npos; }),
            1);
  EXPECT_TRUE(verify_journal(dir / "killed" / "journal.jsonl").ok);
}

// --- the calibration of cuts placed by time ------------------------------------

TEST_F(ResumeFixture, TheCalibrationOfAnEarlierRunIsReadFromItsJournalOrRunJson) {
  const auto profile = load_profile(dir / "small-ab.yaml");
  auto o = options("unsigned");
  (void)run_campaign(o, registry);
  // A campaign without time cuts records an empty calibration, in both files.
  EXPECT_EQ(load_calibration(o.out, profile), nlohmann::json::object());
  EXPECT_EQ(load_calibration(o.out / "run.json", profile), nlohmann::json::object());
  EXPECT_EQ(load_calibration(o.out / "journal.jsonl", profile), nlohmann::json::object());

  // run.json of an older otarig kept the timings as update_ms.
  std::filesystem::create_directories(dir / "older");
  const nlohmann::json older{{"board", {{"name", "small-ab"}, {"profile_sha256", profile.sha256}}},
                             {"update_ms", {{"factory->update", 812}}}};
  std::ofstream(dir / "older" / "run.json") << older.dump();
  EXPECT_EQ(load_calibration(dir / "older", profile), (nlohmann::json{{"factory->update", 812}}));

  auto refused = [&](const std::filesystem::path& from) -> std::string {
    try {
      (void)load_calibration(from, profile);
    } catch (const otarig::InputError& e) {
      return e.what();
    }
    return "";
  };
  auto other = older;
  other["board"]["profile_sha256"] = std::string(64, '0');
  std::ofstream(dir / "older" / "run.json", std::ios::trunc) << other.dump();
  EXPECT_NE(refused(dir / "older").find("it was measured on board small-ab (profile SHA-256 000"), std::string::npos)
      << refused(dir / "older");
  other = older;
  other["update_ms"]["factory->update"] = -3;
  std::ofstream(dir / "older" / "run.json", std::ios::trunc) << other.dump();
  EXPECT_NE(refused(dir / "older").find("not a whole number of milliseconds"), std::string::npos);
  other.erase("update_ms");
  std::ofstream(dir / "older" / "run.json", std::ios::trunc) << other.dump();
  EXPECT_NE(refused(dir / "older").find("records no calibration"), std::string::npos);
  EXPECT_NE(refused(dir / "nowhere").find("not an evidence folder"), std::string::npos);
  // A journal from before calibrations were journaled, with no run.json beside it.
  std::filesystem::remove(o.out / "run.json");
  rewrite_first_event(o.out / "journal.jsonl", [](auto& ev) { ev.erase("calibration"); });
  EXPECT_NE(refused(o.out).find("records no calibration"), std::string::npos) << refused(o.out);
}

TEST(ReplayCommand, NamesTheCalibrationWhenTheCampaignPlacedCutsByTime) {
  CampaignOptions o;
  o.board = "vboard-ab";
  o.scenario = "brown-out";
  o.seed = 7;
  o.out = "nightly out";
  EXPECT_EQ(replay_command(o, "00003"),
            "otarig run --board vboard-ab --scenario brown-out --seed 7 --trial 00003 --out 'nightly out-replay-00003'");
  EXPECT_EQ(replay_command(o, "00003", true),
            "otarig run --board vboard-ab --scenario brown-out --seed 7 --trial 00003 --calibration 'nightly out' "
            "--out 'nightly out-replay-00003'");
}
