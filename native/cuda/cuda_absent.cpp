// Linked instead of the CUDA backend when the build had no nvcc: reports why.
#include <string>

#include "core/error.h"
#include "cuda/cuda_info.h"
#include "model/backend.h"

namespace reca::cuda {
namespace {
const char* const kNoCuda =
    "this build has no CUDA backend (nvcc was not found when it was compiled); "
    "rebuild with `npm run build:cmake` on a machine with the CUDA toolkit";
}  // namespace

CudaInfo query_cuda() {
  CudaInfo info;
  info.compiled = false;
  info.reason = kNoCuda;
  return info;
}

}  // namespace reca::cuda

namespace reca::model {

Backend* cuda_backend_or_null(std::string* why) {
  if (why) *why = reca::cuda::kNoCuda;
  return nullptr;
}

Backend& cuda_backend() { fail(ErrorCode::Device, "%s", reca::cuda::kNoCuda); }

}  // namespace reca::model
