#pragma once
// The two sides of a board the console-command link drives, whatever their
// drivers: a power switch it can cut from another thread (the fault proxy's,
// the update server's) and that counts power-ons and cuts, and a console it
// can watch without taking bytes away from the harness.
//
// A process board's own drivers are both already (ProcessPower, PtyConsole).
// For any other board (power `command` or `gpio`, console `tty` or `serial`)
// the link's registration wraps the bound drivers in CountedPower and
// HeldConsole and puts the wrappers into the board's parts, so the harness
// switches and reads the board through the same objects the link uses.
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::process {

/// A power switch the update link can cut.
class CuttablePower : public PowerProtocol {
 public:
  /// Power off from any thread, recording why. Returns once the power is off
  /// (or the attempt failed; see CountedPower). Does nothing while off.
  virtual void cut(std::string cause) = 0;
  /// Power-ons so far (on() that switched on, and cycle()).
  virtual std::uint64_t power_ons() const = 0;
  /// Power-offs by cut() so far, and the last cause.
  virtual std::uint64_t cuts() const = 0;
  virtual std::string last_cut() const = 0;
};

/// A console the update link can watch.
class WatchedConsole : public ConsoleProtocol {
 public:
  /// Like read(), for a watcher: returns only bytes no peek() returned
  /// before, and keeps them for the next read(), so the harness's
  /// transcript misses nothing.
  virtual std::string peek(std::chrono::milliseconds timeout) = 0;
  /// The device closed the console for good (a process board's program
  /// ended). False for a console that outlives the device (a UART adapter).
  virtual bool at_eof() const { return false; }
};

/// Makes any power driver a CuttablePower. Switching is serialized: a cut
/// from the fault proxy's thread waits for a power-on the harness started,
/// and the harness's next switch waits for the cut. A cut that fails (the
/// PDU command failed) is recorded; the next on(), off() or cycle() throws
/// it as a BenchError, on the harness's thread.
class CountedPower final : public CuttablePower {
 public:
  /// `board` names the board in errors.
  CountedPower(std::shared_ptr<PowerProtocol> inner, std::string board);

  /// Switches on when off (as a process board's power: on twice does nothing).
  void on() override;
  /// Always asks the driver (the rig may not know the switch's state at start).
  void off() override;
  void cycle(std::chrono::milliseconds off_time) override;
  bool is_on() const override;

  void cut(std::string cause) override;
  std::uint64_t power_ons() const override;
  std::uint64_t cuts() const override;
  std::string last_cut() const override;

  /// The wrapped driver (GpioPower, CommandPower, ...).
  PowerProtocol& inner() const { return *inner_; }

 private:
  void rethrow_failed_cut();

  std::shared_ptr<PowerProtocol> inner_;
  std::string board_;
  std::mutex switch_mu_;  ///< held while the driver switches
  mutable std::mutex mu_;
  std::uint64_t power_ons_ = 0;
  std::uint64_t cuts_ = 0;
  std::string last_cut_;
  std::string failed_cut_;
};

/// Makes any console a WatchedConsole: peek() reads the console and keeps
/// the bytes; read() returns what is kept first.
class HeldConsole final : public WatchedConsole {
 public:
  explicit HeldConsole(std::shared_ptr<ConsoleProtocol> inner);

  void write(std::string_view bytes) override;
  std::string read(std::chrono::milliseconds timeout) override;
  std::string peek(std::chrono::milliseconds timeout) override;

  /// The wrapped driver (ConsoleReader, SerialConsole, ...).
  ConsoleProtocol& inner() const { return *inner_; }

 private:
  std::shared_ptr<ConsoleProtocol> inner_;
  std::mutex mu_;
  std::string held_;
};

}  // namespace otarig::drivers::process
