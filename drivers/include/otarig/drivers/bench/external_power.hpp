#pragma once
// Power switched by external commands: a PDU's command line tool, uhubctl,
// a relay script. Each command runs in its own process group with a deadline;
// on timeout the whole group is killed. A non-zero exit is an error naming the
// command and its status.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "otarig/drivers/bench/io.hpp"
#include "otarig/drivers/bench/process.hpp"
#include "otarig/drivers/protocols.hpp"

namespace otarig::drivers::bench {

struct CommandPowerConfig {
  std::string device = "power";  ///< names the device in errors
  CommandSpec on;
  CommandSpec off;
  /// Optional: one command that cycles; otherwise off, wait, on.
  std::optional<CommandSpec> cycle;
  std::chrono::milliseconds timeout{10000};  ///< per command
  std::chrono::milliseconds off_time{1000};  ///< shortest off time in a cycle
  std::chrono::milliseconds settle{0};       ///< waited after switching on
};

/// PowerProtocol by external commands. Commands run one at a time in the
/// order they were asked for.
class CommandPower final : public PowerProtocol {
 public:
  CommandPower(std::shared_ptr<BenchIo> io, CommandPowerConfig config);
  ~CommandPower() override;
  CommandPower(const CommandPower&) = delete;
  CommandPower& operator=(const CommandPower&) = delete;

  void on() override;
  void off() override;
  void cycle(std::chrono::milliseconds off_time) override;
  bool is_on() const override;

  /// Asynchronous forms for the io thread. When nothing else is queued the
  /// command is spawned before the call returns.
  void async_on(Done done);
  void async_off(Done done);
  void async_cycle(std::chrono::milliseconds off_time, Done done);

  const CommandPowerConfig& config() const { return config_; }
  /// Output and duration of the last command that ran.
  CommandResult last_result() const;

 private:
  struct Impl;
  std::shared_ptr<BenchIo> io_;
  CommandPowerConfig config_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace otarig::drivers::bench
