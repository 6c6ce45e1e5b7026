#include "otarig/harness/journal.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <fstream>
#include <system_error>

#include "otarig/core/crypto.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::harness {
namespace {

std::string sha_hex(std::string_view line) { return crypto::hex(crypto::sha256(line)); }

struct Line {
  std::string text;
  std::uint64_t end_offset;  // byte offset just after its newline
};

// Reads complete lines; a last line without a newline is torn and left out.
std::vector<Line> read_lines(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<Line> out;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) break;
    out.push_back({text.substr(pos, nl - pos), nl + 1});
    pos = nl + 1;
  }
  return out;
}

void write_all(int fd, const std::string& data, const std::filesystem::path& file) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw BenchError(fmt::format("{}: write failed: {}", file.string(), std::strerror(errno)));
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::string iso_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto t = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, ms);
}

ChainCheck verify_journal(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {false, 0, "cannot read " + file.string()};
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string prev;
  std::uint64_t n = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    ++n;
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) return {false, n, "last line has no newline (torn write)"};
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    nlohmann::json ev;
    try {
      ev = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      return {false, n, fmt::format("not JSON: {}", e.what())};
    }
    if (!ev.is_object() || !ev.contains("prev_sha256") || !ev["prev_sha256"].is_string())
      return {false, n, "no prev_sha256"};
    if (ev["prev_sha256"].get<std::string>() != prev)
      return {false, n, "prev_sha256 does not match the SHA-256 of the line before"};
    if (!ev.contains("seq") || ev["seq"] != n - 1) return {false, n, "seq out of order"};
    prev = sha_hex(line);
  }
  return {};
}

JournaledCampaign read_journaled_campaign(const std::filesystem::path& file) {
  JournaledCampaign out;
  out.calibration = nlohmann::json::object();
  std::ifstream in(file, std::ios::binary);
  if (!in) return out;
  std::string line, prev;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a last line without a newline is torn
    nlohmann::json ev;
    try {
      ev = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      break;
    }
    if (!ev.is_object() || ev.value("prev_sha256", std::string("?")) != prev) break;
    prev = sha_hex(line);
    const auto type = ev.value("type", std::string());
    if (type == "campaign-start" && out.start.is_null()) out.start = ev;
    if (type != "campaign-start" && type != "campaign-resume") continue;
    // The first value journaled for a pair is the one every trial used.
    if (auto c = ev.find("calibration"); c != ev.end() && c->is_object())
      for (const auto& [what, values] : c->items())
        if (values.is_object())
          for (const auto& [key, value] : values.items())
            if (!out.calibration[what].contains(key)) out.calibration[what][key] = value;
  }
  return out;
}

std::vector<nlohmann::json> read_verdicts(const std::filesystem::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw BenchError(fmt::format("{}: cannot read the journal", file.string()));
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a last line without a newline is torn
    if (line.find("\"type\":\"verdict\"") == std::string::npos) continue;
    auto ev = nlohmann::json::parse(line, nullptr, false);
    if (ev.is_object() && ev.value("type", std::string()) == "verdict") out.push_back(std::move(ev));
  }
  if (in.bad()) throw BenchError(fmt::format("{}: cannot read the journal", file.string()));
  return out;
}

Journal::Journal(const std::filesystem::path& file, bool resume) : file_(file) {
  bool exists = std::filesystem::exists(file);
  if (exists && !resume)
    throw InputError(fmt::format("{}: a journal already exists; use --resume to continue it or another --out",
                                 file.string()));
  if (resume && exists) {
    auto lines = read_lines(file);
    // Keep the longest prefix that chains, then cut back to the last verdict
    // (or the last non-trial event) so no half-written trial block remains.
    std::string prev;
    std::size_t good = 0;
    for (; good < lines.size(); ++good) {
      nlohmann::json ev;
      try {
        ev = nlohmann::json::parse(lines[good].text);
      } catch (const std::exception&) {
        break;
      }
      if (!ev.is_object() || ev.value("prev_sha256", std::string("?")) != prev) break;
      prev = sha_hex(lines[good].text);
    }
    std::size_t keep = 0;
    for (std::size_t i = 0; i < good; ++i) {
      auto ev = nlohmann::json::parse(lines[i].text);
      auto type = ev.value("type", std::string());
      bool in_block = ev.contains("trial") && !ev["trial"].is_null() && type != "verdict";
      if (!in_block) keep = i + 1;
    }
    state_.dropped_lines = lines.size() - keep;
    std::uint64_t end = keep ? lines[keep - 1].end_offset : 0;
    if (::truncate(file.c_str(), static_cast<off_t>(end)) != 0)
      throw BenchError(fmt::format("{}: cannot truncate: {}", file.string(), std::strerror(errno)));
    prev_sha_.clear();
    for (std::size_t i = 0; i < keep; ++i) {
      auto ev = nlohmann::json::parse(lines[i].text);
      if (ev.value("type", std::string()) == "verdict") {
        state_.completed_trials.insert(ev.value("index", std::uint64_t{0}));
        if (ev.value("verdict", std::string()) == "fail") ++state_.failed_trials;
      }
      if (ev.value("type", std::string()) == "campaign-start" && state_.campaign.is_null()) state_.campaign = ev;
      prev_sha_ = sha_hex(lines[i].text);
    }
    seq_ = keep;
    state_.lines = keep;
  }
  fd_ = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw BenchError(fmt::format("{}: cannot open journal: {}", file.string(), std::strerror(errno)));
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::append(nlohmann::json event) {
  std::vector<nlohmann::json> one;
  one.push_back(std::move(event));
  append_block(std::move(one));
}

void Journal::append_block(std::vector<nlohmann::json> events) {
  std::lock_guard lock(mutex_);
  write_locked(events);
}

void Journal::write_locked(std::vector<nlohmann::json>& events) {
  std::string block;
  for (auto& ev : events) {
    nlohmann::ordered_json line = nlohmann::ordered_json::object();
    line["seq"] = seq_++;
    line["time"] = ev.contains("time") ? ev["time"] : nlohmann::json(iso_now());
    line["type"] = ev.value("type", std::string("event"));
    line["trial"] = ev.contains("trial") ? ev["trial"] : nlohmann::json(nullptr);
    for (auto& [k, v] : ev.items())
      if (k != "seq" && k != "time" && k != "type" && k != "trial" && k != "prev_sha256") line[k] = v;
    line["prev_sha256"] = prev_sha_;
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    prev_sha_ = sha_hex(text);
    block += text;
    block += '\n';
    if (line["type"] == "verdict") {
      state_.completed_trials.insert(line.value("index", std::uint64_t{0}));
      if (line.value("verdict", std::string()) == "fail") ++state_.failed_trials;
    }
    ++state_.lines;
  }
  write_all(fd_, block, file_);
  if (::fdatasync(fd_) != 0)
    throw BenchError(fmt::format("{}: fdatasync failed: {}", file_.string(), std::strerror(errno)));
}

}  // namespace otarig::harness
