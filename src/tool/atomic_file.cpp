// SPDX-License-Identifier: Apache-2.0
#include "tool/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "tool/tool_error.hpp"

namespace softmig::tool {

void write_file_atomically(const std::string& path, std::string_view content, mode_t mode) {
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  std::string tmp = fmt::format("{}/.{}.XXXXXX", dir, target.filename().string());
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) throw ToolError(kExitFailure, fmt::format("cannot write in {}: {}", dir, std::strerror(errno)));
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw ToolError(kExitFailure, fmt::format("cannot {} {}: {}", what, tmp, std::strerror(err)));
  };
  std::string_view rest = content;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write");
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fchmod(fd, mode) != 0) fail("set the mode of");
  if (::fsync(fd) != 0) fail("sync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw ToolError(kExitFailure, fmt::format("cannot write {}: {}", tmp, std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw ToolError(kExitFailure, fmt::format("cannot replace {}: {}", path, std::strerror(err)));
  }
  // Make the rename itself durable.
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace softmig::tool
