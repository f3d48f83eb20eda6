// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_replay.cpp
/// @brief A main() for the fuzz targets in builds without libFuzzer (the default gcc build):
///        runs LLVMFuzzerTestOneInput once on every file named, or in the directories named, so
///        that CTest replays the committed corpus, crash reproducers included, on every build.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

bool run_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot open %s\n", path.c_str());
    return false;
  }
  std::vector<std::uint8_t> bytes;
  std::uint8_t buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  std::fclose(f);
  LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned runs = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    struct stat st {};
    if (::stat(arg.c_str(), &st) != 0) {
      std::fprintf(stderr, "cannot stat %s\n", arg.c_str());
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (!run_file(arg)) return 1;
      ++runs;
      continue;
    }
    DIR* d = ::opendir(arg.c_str());
    if (d == nullptr) return 1;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      if (!run_file(arg + "/" + e->d_name)) return 1;
      ++runs;
    }
    ::closedir(d);
  }
  std::printf("replayed %u inputs: every property held\n", runs);
  return runs == 0 ? 1 : 0;
}
