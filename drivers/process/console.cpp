// Console kind `pty`: reads the pty master of the power driver's current run,
// following it across power cycles.
#include <fmt/format.h>

#include <algorithm>

#include "otarig/drivers/process/board.hpp"

namespace otarig::drivers::process {
namespace {

using Steady = std::chrono::steady_clock;

std::chrono::milliseconds left_until(Steady::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Steady::now());
  return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

// How long one poll of the current pty may block before the console looks
// again whether the power driver started a newer run.
constexpr std::chrono::milliseconds kRecheck{50};
// How long a killed run's pty may stay open and silent before the console
// moves on to the next run.
constexpr std::chrono::milliseconds kKilledGrace{200};

}  // namespace

PtyConsole::PtyConsole(std::shared_ptr<ProcessPower> power, Clock* clock)
    : clock_(clock), power_(std::move(power)) {}

void PtyConsole::stamp(std::string_view bytes) {
  if (!clock_) return;
  const auto now = clock_->now();
  while (!bytes.empty()) {
    if (!line_) line_ = ConsoleEntry(now, ConsoleEntry::Kind::line, {}, false);
    const auto nl = bytes.find('\n');
    const auto part = bytes.substr(0, nl);
    // A line keeps its first kConsoleLineMaxBytes; the rest is counted.
    const auto room = kConsoleLineMaxBytes - std::min(kConsoleLineMaxBytes, line_->text.size());
    line_->text.append(part.substr(0, room));
    if (part.size() > room) line_->cut += part.size() - room;
    if (nl == std::string_view::npos) break;
    end_line(true);
    bytes.remove_prefix(nl + 1);
  }
}

void PtyConsole::end_line(bool complete) {
  if (!line_) return;
  if (!line_->text.empty() && line_->text.back() == '\r') line_->text.pop_back();
  line_->complete = complete;
  pending_bytes_ += line_->text.size() + kConsoleLineOverheadBytes;
  entries_.push_back(std::move(*line_));
  line_.reset();
  // Nobody took the record for a while and the device floods: let the
  // oldest lines go, counted, so what waits stays bounded.
  if (pending_bytes_ > kConsolePendingMaxBytes) {
    std::size_t drop = 0;
    while (drop < entries_.size() && pending_bytes_ > kConsolePendingMaxBytes / 2) {
      const auto& e = entries_[drop++];
      pending_bytes_ -= e.text.size() + kConsoleLineOverheadBytes;
      ++dropped_lines_;
      dropped_bytes_ += e.text.size() + e.cut;
    }
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(drop));
  }
}

ConsoleRecord PtyConsole::take_record() {
  std::lock_guard lock(mu_);
  ConsoleRecord r;
  r.entries = std::exchange(entries_, {});
  r.arriving = line_;
  r.dropped_lines = std::exchange(dropped_lines_, 0);
  r.dropped_bytes = std::exchange(dropped_bytes_, 0);
  pending_bytes_ = 0;
  return r;
}

void PtyConsole::write(std::string_view bytes) {
  auto s = power_->session();
  if (!s || bytes.empty()) return;  // no device: the bytes go nowhere, as on an unpowered UART
  write_all(s->master(), bytes, std::chrono::milliseconds(1000));
}

std::string PtyConsole::fetch(std::chrono::milliseconds timeout) {
  const auto deadline = Steady::now() + timeout;
  while (true) {
    // Runs are read in order: once the run being read has nothing more to
    // say, move to the next one the power driver started.
    if (!reading_ || eof_) {
      if (auto next = power_->session_after(done_, std::chrono::milliseconds(0))) {
        reading_ = std::move(next);
        eof_ = false;
      }
    }
    if (reading_ && !eof_) {
      auto r = read_available(reading_->master());
      if (r.eof) {
        eof_ = true;
      } else if (r.bytes.empty() && reading_->killed()) {
        // A killed run hangs up at once, unless something that left its
        // process group still holds the pty: give up on it after a grace.
        if (!quiet_since_)
          quiet_since_ = Steady::now();
        else if (Steady::now() - *quiet_since_ >= kKilledGrace)
          eof_ = true;
      } else {
        quiet_since_.reset();
      }
      stamp(r.bytes);
      if (eof_) {
        done_ = reading_->number();
        quiet_since_.reset();
        end_line(false);  // the run ended inside a line
      }
      if (!r.bytes.empty()) return std::move(r.bytes);
      if (!eof_) {
        const auto left = left_until(deadline);
        if (left.count() == 0) return {};
        // A hang-up (power cut, exit) wakes the poll at once.
        wait_readable(reading_->master(), std::min(left, kRecheck));
        continue;
      }
    }
    // Nothing to read from: wait for the next power-on, up to the deadline.
    const auto left = left_until(deadline);
    if (left.count() == 0) return {};
    if (!power_->session_after(done_, left)) return {};
  }
}

std::string PtyConsole::read(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  if (!held_.empty()) return std::exchange(held_, {});
  return fetch(timeout);
}

std::string PtyConsole::peek(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  auto bytes = fetch(timeout);
  held_ += bytes;
  // A reader that does not read while the device floods: keep the newest
  // bytes from a line start, so its status lines still come whole.
  if (held_.size() > kConsoleHeldMaxBytes) {
    auto from = held_.find('\n', held_.size() - kConsoleHeldMaxBytes / 2);
    held_.erase(0, from == std::string::npos ? held_.size() - kConsoleHeldMaxBytes / 2 : from + 1);
  }
  return bytes;
}

bool PtyConsole::at_eof() const {
  std::lock_guard lock(mu_);
  return eof_;
}

}  // namespace otarig::drivers::process
