#include "otarig/reports/run_view.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

namespace otarig::reports {

namespace {

using nlohmann::json;

std::string dump(const json& value) { return value.dump(2, ' ', false, json::error_handler_t::replace); }

// `value` as dump(2) prints it nested `depth` levels deep.
void put_nested(std::ostream& out, const json& value, std::size_t depth) {
  const std::string text = dump(value);
  const std::string indent(2 * depth, ' ');
  std::size_t from = 0;
  for (auto nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', from)) {
    out.write(text.data() + from, static_cast<std::streamsize>(nl + 1 - from));
    out << indent;
    from = nl + 1;
  }
  out.write(text.data() + from, static_cast<std::streamsize>(text.size() - from));
}

void put_list(std::ostream& out, const RecordList& list) {
  if (list.empty()) {
    out << "[]";
    return;
  }
  out << "[\n";
  list.for_each([&](const json& record, std::size_t i) {
    out << "    ";
    put_nested(out, record, 2);
    out << (i + 1 < list.size() ? ",\n" : "\n");
  });
  out << "  ]";
}

// One open file that lines are read from by offset.
class LineFile {
 public:
  LineFile(std::filesystem::path file, std::size_t max_bytes) : file_(std::move(file)), max_(max_bytes) {
    fd_ = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(fmt::format("{}: cannot read: {}", file_.string(), std::strerror(errno)));
  }
  ~LineFile() { ::close(fd_); }
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;

  std::string line_at(std::uint64_t offset) {
    std::string line;
    char buf[1 << 16];
    for (;;) {
      const auto n = ::pread(fd_, buf, sizeof buf, static_cast<off_t>(offset + line.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        throw std::runtime_error(fmt::format("{}: cannot read at byte {}: {}", file_.string(), offset,
                                             std::strerror(errno)));
      if (n == 0) throw std::runtime_error(fmt::format("{}: the line at byte {} has no end", file_.string(), offset));
      const auto* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<std::size_t>(n)));
      line.append(buf, nl ? static_cast<std::size_t>(nl - buf) : static_cast<std::size_t>(n));
      if (line.size() > max_)
        throw std::runtime_error(fmt::format("{}: the line at byte {} is longer than {} bytes", file_.string(),
                                             offset, max_));
      if (nl) return line;
    }
  }
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  std::size_t max_;
  int fd_ = -1;
};

}  // namespace

RecordList RecordList::of_array(const json& array) {
  if (!array.is_array()) return {};
  return {array.size(), [&array](std::size_t i) { return array[i]; }};
}

RecordList RecordList::of_lines(const std::filesystem::path& file, std::vector<std::uint64_t> offsets,
                                Transform transform, std::size_t max_line_bytes) {
  auto source = std::make_shared<LineFile>(file, max_line_bytes);
  auto at = std::make_shared<const std::vector<std::uint64_t>>(std::move(offsets));
  const auto size = at->size();
  return {size, [source, at, transform = std::move(transform)](std::size_t i) {
            const auto offset = (*at)[i];
            auto record = json::parse(source->line_at(offset), nullptr, false);
            if (record.is_discarded())
              throw std::runtime_error(
                  fmt::format("{}: the line at byte {} is not JSON", source->file().string(), offset));
            return transform ? transform(std::move(record), i) : record;
          }};
}

std::vector<VerdictLine> verdict_lines(const std::filesystem::path& journal) {
  std::vector<VerdictLine> out;
  LineFile file(journal, RecordList::kMaxRecordBytes);  // names the file when it cannot be opened
  std::ifstream in(journal, std::ios::binary);
  std::string line;
  std::uint64_t offset = 0;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a last line without a newline is torn
    const auto at = offset;
    offset += line.size() + 1;
    if (line.find("\"type\":\"verdict\"") == std::string::npos) continue;
    auto ev = json::parse(line, nullptr, false);
    if (!ev.is_object() || ev.value("type", std::string()) != "verdict") continue;
    out.push_back({ev.value("index", std::uint64_t{0}), at, ev.value("verdict", std::string()) == "pass"});
  }
  if (in.bad()) throw std::runtime_error(fmt::format("{}: cannot read the journal", journal.string()));
  std::sort(out.begin(), out.end(), [](const VerdictLine& a, const VerdictLine& b) {
    return a.index != b.index ? a.index < b.index : a.offset < b.offset;
  });
  return out;
}

json trial_entry(json verdict) {
  for (const char* k : {"type", "seq", "time", "prev_sha256", "trial"}) verdict.erase(k);
  return verdict;
}

RecordList trials_of(const std::filesystem::path& journal, const std::vector<VerdictLine>& verdicts) {
  std::vector<std::uint64_t> offsets;
  offsets.reserve(verdicts.size());
  for (const auto& v : verdicts) offsets.push_back(v.offset);
  return RecordList::of_lines(journal, std::move(offsets), [](json v, std::size_t) { return trial_entry(std::move(v)); });
}

RunView RunView::of(const json& run) {
  RunView view;
  if (!run.is_object()) return view;
  for (const auto& [key, value] : run.items())
    if (key != "trials" && key != "findings") view.head[key] = value;
  if (auto t = run.find("trials"); t != run.end()) view.trials = RecordList::of_array(*t);
  if (auto f = run.find("findings"); f != run.end()) view.findings = RecordList::of_array(*f);
  return view;
}

json RunView::materialize() const {
  json run = head;
  json trial_list = json::array(), finding_list = json::array();
  trials.for_each([&](json t, std::size_t) { trial_list.push_back(std::move(t)); });
  findings.for_each([&](json f, std::size_t) { finding_list.push_back(std::move(f)); });
  run["trials"] = std::move(trial_list);
  run["findings"] = std::move(finding_list);
  return run;
}

void write_run_json(std::ostream& out, const RunView& run) {
  // nlohmann::json keeps an object's keys sorted: "findings" and "trials"
  // take their places among the head's keys.
  json keys = run.head;
  keys["findings"] = nullptr;
  keys["trials"] = nullptr;
  out << "{\n";
  std::size_t k = 0;
  for (const auto& [key, value] : keys.items()) {
    out << "  " << json(key).dump(-1, ' ', false, json::error_handler_t::replace) << ": ";
    if (key == "trials")
      put_list(out, run.trials);
    else if (key == "findings")
      put_list(out, run.findings);
    else
      put_nested(out, value, 1);
    out << (++k < keys.size() ? ",\n" : "\n");
  }
  out << "}\n";
}

}  // namespace otarig::reports
