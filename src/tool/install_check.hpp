// SPDX-License-Identifier: Apache-2.0
/// @file install_check.hpp
/// @brief Checks of installed files that `softmig doctor` and `softmig install-preload` share:
///        is a file an ELF shared object for this machine, does it load (tried in a child
///        process, so a library that crashes or hangs cannot take the tool with it), and what
///        the driver and NVML answer (also in a child).
#pragma once

#include <string>
#include <vector>

namespace softmig::tool {

/// Library directories below a root, in the order they are searched for libsoftmig.so.
std::vector<std::string> library_locations();

/// The first library_locations() entry that exists under `root` (the path as seen from inside
/// the root, e.g. "/usr/lib/x86_64-linux-gnu/softmig/libsoftmig.so"), or empty.
std::string find_installed_library(const std::string& root);

/// Empty if `path` is a 64-bit ELF shared object for this machine; else what is wrong.
std::string elf_problem(const std::string& path);

/// What a child process reported.
struct ChildReport {
  bool ok = false;
  std::string text;  ///< the child's message (one line per item), or why it failed
};

/// dlopen(path, RTLD_NOW | RTLD_LOCAL) in a child process, bounded by `timeout_ms`.
ChildReport try_dlopen(const std::string& path, int timeout_ms);

/// dlopen("libcuda.so.1") and cuInit(0) in a child: text is the device count.
ChildReport probe_driver(int timeout_ms);

/// dlopen("libnvidia-ml.so.1"), nvmlInit_v2 and every device's name in a child: text holds one
/// name per line.
ChildReport probe_nvml(int timeout_ms);

}  // namespace softmig::tool
