#pragma once
// A file descriptor the rig owns: the bench family's ttys, pidfds and pipes,
// the process family's pty masters, flash files and sockets.
#include <utility>

namespace otarig {

/// Owns one file descriptor and closes it exactly once. Move-only.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives the descriptor up without closing it.
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor held (if any) and takes `fd`.
  void reset(int fd = -1) noexcept;
  /// A close-on-exec duplicate of `fd` (std::system_error on failure).
  static UniqueFd duplicate(int fd);

 private:
  int fd_ = -1;
};

}  // namespace otarig
