#pragma once
// Error types shared by every otarig layer. Each maps to one exit status of the
// command line: InputError -> 2 (bad input), BenchError -> 3 (the bench failed).
#include <stdexcept>
#include <string>

namespace otarig {

/// Bad input: a profile, scenario, image, manifest or argument. The message
/// names the file and line (or the image and field).
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The bench itself failed: a device unreachable, a driver error, a tool that
/// died. The message names the device and the step.
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A deadline passed while waiting for a device or peer.
class TimeoutError : public BenchError {
 public:
  using BenchError::BenchError;
};

}  // namespace otarig
