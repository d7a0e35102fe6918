// Shared helpers of the op families (see kernel_util.cuh).
#include <string>

#include "core/error.h"
#include "cuda/kernel_util.cuh"

namespace reca::cuda::detail {

Scratch::Scratch(size_t bytes, Stream stream, const char* op) : stream_(stream) {
  malloc_async(&p_, bytes == 0 ? 16 : bytes, stream, op);
}

Scratch::~Scratch() {
  if (p_) cudaFreeAsync(p_, stream_);  // errors surface at the next checked call
}

void upload_async(void* dst, const void* host, size_t bytes, Stream stream, const char* op) {
  if (bytes == 0) return;
  RECA_CUDA_CALL(op, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream));
}

namespace {
__global__ void sum_doubles_kernel(double* out, const double* x, int64_t n) {
  __shared__ double sh[kBlock];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kBlock) s += x[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) *out = s;
}
}  // namespace

double sum_doubles(const double* x, int64_t n, Stream stream, const char* op) {
  Scratch out(sizeof(double), stream, op);
  sum_doubles_kernel<<<1, kBlock, 0, stream>>>(out.as<double>(), x, n);
  RECA_CUDA_LAUNCHED(op);
  double host = 0.0;
  RECA_CUDA_CALL(op, cudaMemcpyAsync(&host, out.as<double>(), sizeof(double), cudaMemcpyDeviceToHost, stream));
  RECA_CUDA_CALL(op, cudaStreamSynchronize(stream));
  return host;
}

}  // namespace reca::cuda::detail
