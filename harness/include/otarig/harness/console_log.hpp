#pragma once
// A trial's console.log (and console.raw), written as the rig reads the
// device's console (docs/evidence.md): a rig killed in the middle of a trial
// leaves what the device had printed so far.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "otarig/harness/bench.hpp"

namespace otarig::harness {

class ConsoleLogFile {
 public:
  /// Creates `dir` and starts console.log (and console.raw) afresh there.
  /// BenchError naming the file when it cannot be written.
  explicit ConsoleLogFile(const std::filesystem::path& dir);
  ~ConsoleLogFile();
  ConsoleLogFile(const ConsoleLogFile&) = delete;
  ConsoleLogFile& operator=(const ConsoleLogFile&) = delete;

  /// Appends one line and flushes it to the file.
  void write(const TranscriptLine& line);
  /// Lines written so far.
  std::size_t written() const { return written_; }
  /// Writes `lines` from index written() on (the transcript's gap marker and
  /// tail, which a BoundedTranscript holds back until its end), then closes;
  /// console.raw stays only when a line needed escaping. BenchError when a
  /// write failed on the way.
  void finish(const std::vector<TranscriptLine>& lines);

 private:
  void close();
  std::filesystem::path dir_;
  std::ofstream log_, raw_;
  std::size_t written_ = 0;
  bool escaped_ = false, open_ = true;
};

}  // namespace otarig::harness
