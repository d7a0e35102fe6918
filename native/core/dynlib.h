// Libraries loaded at run time (OpenBLAS as the benchmark peer, OpenMPI, NCCL):
// the first of several names that dlopen accepts, so no build links them.
#pragma once
#include <string>
#include <vector>

namespace reca {

struct DynLib {
  void* handle = nullptr;  // null when no name opened
  std::string name;        // the name that opened
  std::string errors;      // every dlerror, "; "-joined, when none did
};

// Tries `names` in order with dlopen(name, flags); the env variable `override_env`,
// when set and not empty, replaces the list with its value.
DynLib open_first_library(std::vector<std::string> names, int flags,
                          const char* override_env = nullptr);

}  // namespace reca
