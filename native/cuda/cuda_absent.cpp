// Linked instead of the CUDA backend when the build had no nvcc: reports why.
#include "cuda/cuda_info.h"

namespace reca::cuda {

CudaInfo query_cuda() {
  CudaInfo info;
  info.compiled = false;
  info.reason = "this build has no CUDA backend (nvcc was not found when it was compiled); "
                "rebuild with `npm run build:cmake` on a machine with the CUDA toolkit";
  return info;
}

}  // namespace reca::cuda
