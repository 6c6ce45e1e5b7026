#pragma once
// A descriptor passed over a Unix socket (SCM_RIGHTS): the device child hands
// its seccomp listener to the rig, the rig hands it to the storage recorder.
#include <sys/types.h>

#include <cstddef>

#include "otarig/core/unique_fd.hpp"

namespace otarig {

/// Sends `len` bytes of `data` on `sock` with `fd` attached, or with none
/// when `fd` < 0; retries on EINTR, never raises SIGPIPE. Async-signal-safe
/// (a child between fork and exec may call it). The bytes sent, or -1.
ssize_t send_with_fd(int sock, const void* data, std::size_t len, int fd);

/// Receives up to `len` bytes into `data`; a descriptor that came with them
/// goes to `passed` (close-on-exec). Returns what recvmsg returned; at end of
/// file or on an error any descriptor that came is closed.
ssize_t receive_with_fd(int sock, void* data, std::size_t len, UniqueFd& passed);

}  // namespace otarig
