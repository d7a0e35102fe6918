// What the CUDA side of this build can do: compiled in or not, for which
// architectures, and which devices the driver reports (or why none).
#pragma once
#include <string>
#include <vector>

namespace reca::cuda {

struct CudaDevice {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;        // compute capability
  int multiprocessors = 0;
  unsigned long long total_memory = 0;  // bytes
};

struct CudaInfo {
  bool compiled = false;
  std::string architectures;       // e.g. "80-real,90-real,90-virtual"
  int runtime_version = 0;         // CUDART_VERSION of the build
  int driver_version = 0;          // 0 when no driver answered
  std::vector<CudaDevice> devices;
  std::string reason;              // why there are no devices (empty when there are)
};

// Never throws; asks the driver each call (cheap), the loader caches it.
CudaInfo query_cuda();

}  // namespace reca::cuda
