#include "otarig/harness/console_log.hpp"

#include <fmt/format.h>

#include <system_error>

#include "otarig/core/errors.hpp"

namespace otarig::harness {

ConsoleLogFile::ConsoleLogFile(const std::filesystem::path& dir) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw BenchError(fmt::format("{}: cannot create: {}", dir_.string(), ec.message()));
  log_.open(dir_ / "console.log", std::ios::binary | std::ios::trunc);
  raw_.open(dir_ / "console.raw", std::ios::binary | std::ios::trunc);
  if (!log_ || !raw_) throw BenchError(fmt::format("{}: cannot write console.log", dir_.string()));
}

ConsoleLogFile::~ConsoleLogFile() {
  try {
    close();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor reports nothing; finish() does
  }
}

void ConsoleLogFile::write(const TranscriptLine& line) {
  if (!open_) return;
  std::string raw;
  bool escaped = false;
  log_ << console_log_line(line, &raw, &escaped);
  raw_ << raw;
  escaped_ = escaped_ || escaped;
  log_.flush();
  raw_.flush();
  ++written_;
}

void ConsoleLogFile::finish(const std::vector<TranscriptLine>& lines) {
  for (std::size_t i = written_; i < lines.size(); ++i) write(lines[i]);
  const bool ok = log_.good() && raw_.good();
  close();
  if (!ok) throw BenchError(fmt::format("{}: cannot write console.log", dir_.string()));
}

void ConsoleLogFile::close() {
  if (!open_) return;
  open_ = false;
  log_.close();
  raw_.close();
  std::error_code ignored;
  if (!escaped_) std::filesystem::remove(dir_ / "console.raw", ignored);
}

}  // namespace otarig::harness
