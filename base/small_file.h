// base/small_file.h — reading a whole small file that a configuration names (the config file
// and its includes, TLS certificates, keys and CA files), from any thread off the loops.
//
// The path is the operator's, and may name anything: O_NONBLOCK keeps a FIFO there from
// blocking the open (a reload's worker waited on one for good: session 12's reload audit),
// and anything but a regular file is then refused. Errors:
//   NotFound (the open's errno text), InvalidArgument "not a regular file",
//   Internal (fstat's or read's errno text), ResourceExhausted "file is larger than N bytes".
// Blocking I/O: never call it on a loop thread.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace ringmail {

inline absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return absl::NotFoundError(std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return absl::InternalError(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError("not a regular file");
  std::string out;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(std::strerror(errno));
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("file is larger than ", max_bytes,
                                                       " bytes"));
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace ringmail
