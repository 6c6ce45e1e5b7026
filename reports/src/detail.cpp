#include "detail.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <system_error>

#include "otarig/core/crypto.hpp"
#include "otarig/reports/attestation.hpp"

namespace otarig::reports::detail {

std::optional<std::string> read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return data;
}

void write_file(const std::filesystem::path& file, std::string_view text) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.flush();
    if (!f) throw std::runtime_error(fmt::format("{}: cannot write", tmp.string()));
  }
  std::filesystem::rename(tmp, file);
}

void write_stream(const std::filesystem::path& file, const std::function<void(std::ostream&)>& fill) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    fill(f);
    f.flush();
    if (!f) throw std::runtime_error(fmt::format("{}: cannot write", tmp.string()));
  }
  std::filesystem::rename(tmp, file);
}

std::string sha256_hex(std::string_view data) { return crypto::hex(crypto::sha256(data)); }

std::optional<std::string> sha256_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  crypto::Sha256 h;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = in.gcount();
    if (n > 0) h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
  }
  if (in.bad()) return std::nullopt;
  return crypto::hex(h.finish());
}

std::string text(const nlohmann::json& value, const char* key) {
  if (!value.is_object() || !value.contains(key) || value[key].is_null()) return "";
  const auto& v = value[key];
  return v.is_string() ? v.get<std::string>()
                       : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

const nlohmann::json& object_at(const nlohmann::json& value, const char* key) {
  static const nlohmann::json empty = nlohmann::json::object();
  return value.is_object() && value.contains(key) && value[key].is_object() ? value[key] : empty;
}

const nlohmann::json& array_at(const nlohmann::json& value, const char* key) {
  static const nlohmann::json empty = nlohmann::json::array();
  return value.is_object() && value.contains(key) && value[key].is_array() ? value[key] : empty;
}

std::vector<JournalLine> split_lines(const std::string& text, bool* torn) {
  std::vector<JournalLine> lines;
  std::size_t pos = 0;
  std::uint64_t n = 0;
  if (torn) *torn = false;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      lines.push_back({++n, text.substr(pos)});
      if (torn) *torn = true;
      break;
    }
    lines.push_back({++n, text.substr(pos, nl - pos)});
    pos = nl + 1;
  }
  return lines;
}

namespace {

std::optional<nlohmann::json> parse_event(const std::string& line) {
  try {
    auto ev = nlohmann::json::parse(line);
    if (ev.is_object()) return ev;
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

}  // namespace

ChainBreak check_chain(const std::vector<JournalLine>& lines, bool torn) {
  std::string prev;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    if (torn && i + 1 == lines.size()) return {line.number, "the last line has no newline (torn write)"};
    auto ev = parse_event(line.text);
    if (!ev) return {line.number, "not a JSON object"};
    if (!ev->contains("seq") || !(*ev)["seq"].is_number_unsigned() || (*ev)["seq"].get<std::uint64_t>() != i)
      return {line.number, fmt::format("seq is {}, expected {} (a line was removed, inserted or edited)",
                                       ev->contains("seq") ? (*ev)["seq"].dump() : "missing", i)};
    if (!ev->contains("prev_sha256") || !(*ev)["prev_sha256"].is_string())
      return {line.number, "no prev_sha256"};
    if ((*ev)["prev_sha256"].get<std::string>() != prev) {
      if (i == 0) return {line.number, "the first line's prev_sha256 must be empty"};
      // The line before was changed if this line still chains to the next one.
      bool next_chains = false;
      if (i + 1 < lines.size()) {
        auto next = parse_event(lines[i + 1].text);
        next_chains = next && text(*next, "prev_sha256") == sha256_hex(line.text);
      }
      if (next_chains || i + 1 == lines.size())
        return {
            lines[i - 1].number,
            fmt::format("changed: its SHA-256 does not match prev_sha256 recorded in line {}", line.number)};
      return {line.number, "prev_sha256 does not match the SHA-256 of the line before"};
    }
    prev = sha256_hex(line.text);
  }
  return {};
}

LineReader::LineReader(const std::filesystem::path& file, std::size_t max_bytes)
    : in_(file, std::ios::binary), max_(max_bytes), buf_(1 << 16) {}

bool LineReader::fill() {
  in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  pos_ = 0;
  end_ = static_cast<std::size_t>(in_.gcount());
  return end_ > 0;
}

std::optional<JournalLine> LineReader::next() {
  if (!in_ && !in_.eof()) return std::nullopt;
  JournalLine line;
  offset_ = read_;
  cut_ = false;
  bool any = false;
  for (;;) {
    if (pos_ == end_ && !fill()) {
      if (!any) return std::nullopt;
      torn_ = true;
      break;
    }
    any = true;
    const char* from = buf_.data() + pos_;
    const auto* nl = static_cast<const char*>(std::memchr(from, '\n', end_ - pos_));
    const std::size_t n = nl ? static_cast<std::size_t>(nl - from) : end_ - pos_;
    const std::size_t room = max_ > line.text.size() ? max_ - line.text.size() : 0;
    if (n > room) cut_ = true;
    line.text.append(from, std::min(n, room));
    pos_ += n + (nl ? 1 : 0);
    read_ += n + (nl ? 1 : 0);
    if (nl) {
      torn_ = false;
      break;
    }
  }
  line.number = ++number_;
  return line;
}

ChainBreak check_chain(LineReader& reader, const std::function<void(const JournalLine&, const nlohmann::json&)>& each,
                       std::uint64_t* lines) {
  std::string prev;            // SHA-256 of the line before
  std::uint64_t prev_number = 0;
  ChainBreak brk;
  std::uint64_t i = 0;
  auto line = reader.next();
  for (; line && !brk.line; ++i) {
    if (reader.torn()) {
      brk = {line->number, "the last line has no newline (torn write)"};
      break;
    }
    if (reader.cut()) {
      brk = {line->number, "longer than the longest line a journal has"};
      break;
    }
    auto ev = parse_event(line->text);
    if (!ev) {
      brk = {line->number, "not a JSON object"};
      break;
    }
    if (!ev->contains("seq") || !(*ev)["seq"].is_number_unsigned() || (*ev)["seq"].get<std::uint64_t>() != i) {
      brk = {line->number, fmt::format("seq is {}, expected {} (a line was removed, inserted or edited)",
                                       ev->contains("seq") ? (*ev)["seq"].dump() : "missing", i)};
      break;
    }
    if (!ev->contains("prev_sha256") || !(*ev)["prev_sha256"].is_string()) {
      brk = {line->number, "no prev_sha256"};
      break;
    }
    const auto sha = sha256_hex(line->text);
    if ((*ev)["prev_sha256"].get<std::string>() != prev) {
      if (i == 0) {
        brk = {line->number, "the first line's prev_sha256 must be empty"};
        break;
      }
      // The line before was changed if this line still chains to the next one.
      const auto number = line->number;
      auto after = reader.next();
      std::optional<nlohmann::json> parsed = after ? parse_event(after->text) : std::nullopt;
      const bool next_chains = parsed && text(*parsed, "prev_sha256") == sha;
      if (next_chains || !after)
        brk = {prev_number, fmt::format("changed: its SHA-256 does not match prev_sha256 recorded in line {}", number)};
      else
        brk = {number, "prev_sha256 does not match the SHA-256 of the line before"};
      break;
    }
    each(*line, *ev);
    prev = sha;
    prev_number = line->number;
    line = reader.next();
  }
  while (reader.next()) {
  }
  if (lines) *lines = reader.count();
  return brk;
}

nlohmann::json trial_from_verdict(nlohmann::json verdict) {
  for (const char* k : {"type", "seq", "time", "prev_sha256", "trial"}) verdict.erase(k);
  return verdict;
}

bool outside_manifest(const std::string& relative_path) {
  return relative_path == kManifestFile || relative_path == kAttestationFile ||
         relative_path == kPublicKeyFile;
}

std::vector<std::string> list_files(const std::filesystem::path& dir, std::vector<std::string>* others) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    auto rel = it->path().lexically_relative(dir).generic_string();
    auto status = it->symlink_status();
    if (std::filesystem::is_directory(status)) continue;
    if (std::filesystem::is_regular_file(status)) {
      files.push_back(rel);
    } else if (others) {
      others->push_back(rel);
    }
  }
  if (ec) throw std::runtime_error(fmt::format("{}: cannot list: {}", dir.string(), ec.message()));
  std::sort(files.begin(), files.end());
  if (others) std::sort(others->begin(), others->end());
  return files;
}

}  // namespace otarig::reports::detail
