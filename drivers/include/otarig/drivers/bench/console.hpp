#pragma once
// A device console read asynchronously on the bench io_context: a serial
// adapter (serial.hpp), a tty path, or a pty the rig owns. Everything that
// arrives goes into a transcript whose lines carry a monotonic timestamp, and
// through pattern triggers (RE2, linear time) that fire as soon as the bytes
// that complete a match arrive. When the device vanishes (USB adapter
// unplugged, pty closed) the reader keeps what it read and reopens it.
#include <atomic>
#include <chrono>
#include <deque>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otarig/drivers/bench/io.hpp"
#include "otarig/core/clock.hpp"
#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::bench {

/// One transcript entry: a console line, or an event of the reader itself
/// (disconnected, reconnected, a trigger callback that failed).
using TranscriptEntry = ConsoleEntry;

/// What a console printed, line by line. Thread-safe. It holds at most
/// kConsolePendingMaxBytes of entries (text and kConsoleLineOverheadBytes
/// each): beyond that the oldest go, counted, and the next take_since()
/// reports them (ConsoleRecord::dropped_*), as the pty console does.
class Transcript {
 public:
  explicit Transcript(Clock::duration origin = Clock::duration{0}) : origin_(origin) {}

  /// Every entry; the line still arriving, if any, comes last with complete = false.
  std::vector<TranscriptEntry> entries() const;
  /// The console lines only, joined with '\n' (including the one still arriving).
  std::string text() const;
  /// "[    1.234567] text" per entry, relative to the origin; events as "[...] -- text".
  std::string format() const;
  std::size_t line_count() const;
  Clock::duration origin() const { return origin_; }
  void clear();

  /// The entries added after the first `next` ever added (clear() does not
  /// reset the count), and the line still arriving; `next` moves past them.
  /// The lines let go over the limit since the previous take are counted in
  /// the record (a transcript has one taker).
  ConsoleRecord take_since(std::uint64_t& next) const;

  void add_line(Clock::duration at, std::string text, bool complete = true);
  /// `event`: what happened, "disconnected", "reconnected", "trigger-failed".
  void add_event(Clock::duration at, std::string text, std::string event = {});
  void set_partial(std::optional<TranscriptEntry> partial);

 private:
  mutable std::mutex mutex_;
  Clock::duration origin_;
  std::uint64_t cleared_ = 0;  ///< entries dropped by clear() or over the limit
  std::deque<TranscriptEntry> entries_;
  std::size_t held_bytes_ = 0;  ///< of entries_, as the limit counts them
  mutable std::uint64_t dropped_lines_ = 0, dropped_bytes_ = 0;  ///< let go over the limit, not yet taken
  void add(TranscriptEntry entry);
  std::optional<TranscriptEntry> partial_;
};

/// A match of a console trigger.
struct TriggerMatch {
  std::string line;                           ///< the line (as far as it had arrived) that matched
  std::string text;                           ///< the matched text
  std::vector<std::string> captures;          ///< numbered groups, [0] = group 1
  std::map<std::string, std::string> groups;  ///< named groups
  Clock::duration at{0};                      ///< arrival of the bytes that completed the match
  std::uint64_t line_number = 0;              ///< 1-based
};
/// Runs on the io thread; may call asynchronous driver operations, never
/// synchronous ones.
using TriggerCallback = std::function<void(const TriggerMatch&)>;
using TriggerId = std::uint64_t;

/// An open console device. The reader reads and writes duplicates of fd().
class ConsoleConnection {
 public:
  virtual ~ConsoleConnection() = default;
  virtual int fd() const = 0;
};

/// Opens (and reopens) a console device.
class ConsoleSource {
 public:
  virtual ~ConsoleSource() = default;
  /// Throws (std::system_error, BenchError) when the device is not there.
  virtual std::unique_ptr<ConsoleConnection> open() = 0;
  /// "serial /dev/ttyACM0", "pty /tmp/board.pty", ...
  virtual std::string describe() const = 0;
  /// False when the device cannot come back once it is gone (an adopted fd).
  virtual bool reopenable() const { return true; }
};

/// A tty or pty by path, opened with open(2) and set to raw mode (no
/// libserialport): ptys the rig or a process board created, /dev/ttyS*.
class TtyPathSource final : public ConsoleSource {
 public:
  /// `baud` = 0 keeps the speed the tty has.
  explicit TtyPathSource(std::filesystem::path path, unsigned baud = 0);
  std::unique_ptr<ConsoleConnection> open() override;
  std::string describe() const override;

 private:
  std::filesystem::path path_;
  unsigned baud_;
};

/// An already open descriptor handed over by its owner (say, the master side
/// of a pty a process board writes to). It cannot be reopened.
class FdSource final : public ConsoleSource {
 public:
  FdSource(UniqueFd fd, std::string name);
  std::unique_ptr<ConsoleConnection> open() override;
  std::string describe() const override;
  bool reopenable() const override { return false; }

 private:
  UniqueFd fd_;
  std::string name_;
};

struct ConsoleReaderOptions {
  std::string device = "console";  ///< names the device in errors
  /// How often a vanished device is looked for again.
  std::chrono::milliseconds reconnect_interval{250};
  /// Deadline of write(); a write waits this long for a vanished device.
  std::chrono::milliseconds write_timeout{2000};
  /// Longer lines are cut into pieces of this size.
  std::size_t max_line = 4096;
  /// Bytes kept for read() when nobody reads; the oldest go first.
  std::size_t pending_limit = std::size_t{1} << 20;
};

/// Reads a console asynchronously; ConsoleProtocol on top, and its arrival
/// stamps as StampedConsoleProtocol.
class ConsoleReader final : public ConsoleProtocol, public StampedConsoleProtocol {
 public:
  /// `clock` stamps the transcript (a steady clock when null; it must outlive the reader).
  ConsoleReader(std::shared_ptr<BenchIo> io, std::unique_ptr<ConsoleSource> source,
                ConsoleReaderOptions options = {}, const Clock* clock = nullptr);
  ~ConsoleReader() override;
  ConsoleReader(const ConsoleReader&) = delete;
  ConsoleReader& operator=(const ConsoleReader&) = delete;

  /// Opens the device and starts reading. BenchError naming the device when
  /// it cannot be opened.
  void start();
  /// Stops reading and closes the device; the transcript stays.
  void stop();

  /// Calls `callback` for every match of `pattern` (RE2 syntax) in the console
  /// output, or only for the first when `once`. Lines are matched while they
  /// arrive, without their '\r'; a finished line is matched with its '\n', so
  /// a pattern ending in "\n" waits for the end of the line. InputError when
  /// the pattern does not compile. Callable from any thread.
  TriggerId add_trigger(std::string_view pattern, TriggerCallback callback, bool once = false);
  void remove_trigger(TriggerId id);

  // ConsoleProtocol
  void write(std::string_view bytes) override;
  std::string read(std::chrono::milliseconds timeout) override;

  // StampedConsoleProtocol: the transcript's entries since the last call.
  ConsoleRecord take_record() override;

  /// Asynchronous write for the io thread.
  void async_write(std::string bytes, Done done);

  const Transcript& transcript() const;
  bool connected() const;
  /// How many times the device came back after vanishing.
  std::uint64_t reconnects() const;
  std::string describe() const;

  /// Runs `fn` on the io thread with the open connection, or fails with a
  /// BenchError while the device is gone. For device-specific controls
  /// (DTR, RTS, break on a serial port); `fn` may keep the connection open
  /// until it calls its Done.
  void with_connection(std::string_view what, std::chrono::milliseconds limit,
                       std::function<void(std::shared_ptr<ConsoleConnection>, Done)> fn);

 private:
  struct Impl;
  std::shared_ptr<BenchIo> io_;
  std::shared_ptr<Impl> impl_;
  std::mutex taken_mutex_;
  std::uint64_t taken_ = 0;  ///< transcript entries take_record() returned
};

}  // namespace otarig::drivers::bench
