// Replays inputs through a fuzz target without libFuzzer: each argument is a
// file or a folder of files. Fails (exit 1) when one input takes longer than
// the time limit (RECA_FUZZ_TIMEOUT_MS, default 2000): hostile inputs must
// cost work bounded by their size. A crash or sanitizer report fails by itself.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "fuzz/fuzz_target.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  const char* env = std::getenv("RECA_FUZZ_TIMEOUT_MS");
  const double limit_ms = env ? std::atof(env) : 2000.0;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path p(argv[i]);
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    }
  }
  int slow = 0;
  for (const fs::path& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto t0 = std::chrono::steady_clock::now();
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ms > limit_ms) {
      std::printf("SLOW %s: %.0f ms (limit %.0f)\n", f.c_str(), ms, limit_ms);
      ++slow;
    }
  }
  std::printf("replayed %zu inputs, %d over the time limit\n", files.size(), slow);
  return files.empty() || slow ? 1 : 0;
}
