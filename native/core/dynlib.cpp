#include "core/dynlib.h"

#include <dlfcn.h>

#include <cstdlib>

namespace reca {

DynLib open_first_library(std::vector<std::string> names, int flags, const char* override_env) {
  if (override_env)
    if (const char* v = std::getenv(override_env); v && *v) names = {v};
  DynLib lib;
  for (const std::string& name : names) {
    lib.handle = dlopen(name.c_str(), flags);
    if (lib.handle) {
      lib.name = name;
      lib.errors.clear();
      return lib;
    }
    const char* e = dlerror();
    lib.errors += std::string(lib.errors.empty() ? "" : "; ") + (e ? e : name.c_str());
  }
  return lib;
}

}  // namespace reca
