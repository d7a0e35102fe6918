// The Linear layer on the device (reca::cpu::linear_* semantics) over the fp32
// SGEMM of matmul.cu, and the deterministic column sum its bias gradient needs.
#include "cuda/column_sums.cuh"
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

constexpr int kThreads = 256;

// part[chunk, c] = Σ x[r, c] over the chunk's rows, in row order. grid
// (ceil(cols/256), chunks); one thread per column.
__global__ void __launch_bounds__(kThreads)
    column_chunk_sums(float* part, const float* x, int64_t rows, int64_t cols, int64_t chunk) {
  const int64_t c = blockIdx.x * int64_t(kThreads) + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = int64_t(blockIdx.y) * chunk;
  const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
  float s = 0.0f;
  for (int64_t r = r0; r < r1; ++r) s += x[r * cols + c];
  part[int64_t(blockIdx.y) * cols + c] = s;
}

// out[c] += Σ_k part[k, c] (fixed order: see column_sums.cuh).
__global__ void __launch_bounds__(kThreads)
    add_partials(float* out, const float* part, int64_t nk, int64_t cols) {
  detail::add_column_partials<kThreads / 32>(out, part, nk, cols);
}

}  // namespace

void column_sums_add(float* out, const float* x, int64_t rows, int64_t cols, Stream stream) {
  if (rows <= 0 || cols <= 0) return;
  // Row chunks of 32 (more when that would need over 65535 chunks: grid.y).
  int64_t chunk = 32;
  if ((rows + chunk - 1) / chunk > 65535) chunk = (rows + 65534) / 65535;
  const int64_t chunks = (rows + chunk - 1) / chunk;
  RECA_CHECK((cols + kThreads - 1) / kThreads <= 0x7fffffffLL, InvalidArgument,
             "column_sums_add: %lld columns is over the limit", static_cast<long long>(cols));
  detail::Scratch part(size_t(chunks) * size_t(cols) * sizeof(float), stream, "column_sums_add");
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  column_chunk_sums<<<grid, kThreads, 0, stream>>>(part.as<float>(), x, rows, cols, chunk);
  RECA_CUDA_LAUNCHED("column_sums_add");
  add_partials<<<static_cast<unsigned>((cols + 31) / 32), kThreads, 0, stream>>>(out, part.as<float>(),
                                                                                chunks, cols);
  RECA_CUDA_LAUNCHED("column_sums_add");
}

void linear_forward(float* y, const float* x, const float* W, const float* b, int64_t M,
                    int64_t in, int64_t out, Stream stream) {
  matmul(y, x, W, b, M, out, in, false, true, false, stream);
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int64_t M, int64_t in, int64_t out, Stream stream) {
  if (M <= 0) return;  // every gradient += 0
  if (dx) matmul(dx, dy, W, nullptr, M, in, out, false, false, true, stream);  // [M,out]·[out,in]
  if (dW) matmul(dW, dy, x, nullptr, out, in, M, true, false, true, stream);   // dyᵀ [out,M]·x [M,in]
  if (db) column_sums_add(db, dy, M, out, stream);
}

}  // namespace reca::cuda
