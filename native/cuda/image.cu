// Image layout ops on the device (reca::cpu image semantics, NHWC, 3 channels):
// a thread per output element with the CPU's arithmetic, so the same bits.
#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

constexpr int kThreads = 256;

#define RECA_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void from_bytes_kernel(float* out, const uint8_t* in, int64_t n) {
  RECA_GRID_STRIDE(k, n) out[k] = __fsub_rn(__fdiv_rn(static_cast<float>(in[k]), 127.5f), 1.0f);
}

__global__ void to_bytes_kernel(uint8_t* out, const float* in, int64_t n) {
  RECA_GRID_STRIDE(k, n) {
    float v = __fmul_rn(__fadd_rn(in[k], 1.0f), 127.5f);
    v = v > 0.0f ? v : 0.0f;  // also NaN -> 0
    v = v < 255.0f ? v : 255.0f;
    out[k] = static_cast<uint8_t>(rintf(v));  // ties to even
  }
}

// Token element e of tokens [B, G², 3P²] ↔ its pixel of img [B, S, S, 3]:
// token (py, px) holds img[py·P + i][px·P + j][c] at (i·P + j)·3 + c.
__device__ __forceinline__ int64_t pixel_of_token_elem(int64_t e, int64_t S, int64_t P) {
  const int64_t G = S / P, D = 3 * P * P;
  const int64_t t = e / D, r = e - t * D;
  const int64_t i = r / (3 * P), j = (r / 3) % P, c = r % 3;
  const int64_t b = t / (G * G), py = (t / G) % G, px = t % G;
  return ((b * S + py * P + i) * S + px * P + j) * 3 + c;
}

__global__ void patchify_kernel(float* tokens, const float* img, int64_t n, int64_t S, int64_t P) {
  RECA_GRID_STRIDE(e, n) tokens[e] = img[pixel_of_token_elem(e, S, P)];
}
__global__ void unpatchify_kernel(float* img, const float* tokens, int64_t n, int64_t S, int64_t P) {
  RECA_GRID_STRIDE(e, n) img[pixel_of_token_elem(e, S, P)] = tokens[e];
}

// out [B, S/f, S/f, 3]: each f×f block summed row by row, left to right, / f².
__global__ void avgpool_kernel(float* out, const float* img, int64_t n, int64_t S, int64_t f) {
  const int64_t So = S / f;
  const float area = static_cast<float>(f * f);
  RECA_GRID_STRIDE(e, n) {
    const int64_t c = e % 3, ox = (e / 3) % So, oy = (e / (3 * So)) % So, b = e / (3 * So * So);
    float s = 0.0f;
    for (int64_t i = 0; i < f; ++i) {
      const float* row = img + ((b * S + oy * f + i) * S + ox * f) * 3 + c;
      for (int64_t j = 0; j < f; ++j) s = __fadd_rn(s, row[j * 3]);
    }
    out[e] = __fdiv_rn(s, area);
  }
}

}  // namespace

void image_from_bytes(float* out, const uint8_t* in, int64_t n, Stream stream) {
  if (n <= 0) return;
  from_bytes_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(out, in, n);
  RECA_CUDA_LAUNCHED("image_from_bytes");
}
void image_to_bytes(uint8_t* out, const float* in, int64_t n, Stream stream) {
  if (n <= 0) return;
  to_bytes_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(out, in, n);
  RECA_CUDA_LAUNCHED("image_to_bytes");
}
void patchify_forward(float* tokens, const float* img, int64_t B, int64_t S, int64_t P, Stream stream) {
  const int64_t n = B * S * S * 3;
  if (n <= 0 || P <= 0) return;
  patchify_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(tokens, img, n, S, P);
  RECA_CUDA_LAUNCHED("patchify_forward");
}
void unpatchify_forward(float* img, const float* tokens, int64_t B, int64_t S, int64_t P, Stream stream) {
  const int64_t n = B * S * S * 3;
  if (n <= 0 || P <= 0) return;
  unpatchify_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(img, tokens, n, S, P);
  RECA_CUDA_LAUNCHED("unpatchify_forward");
}
void avgpool_forward(float* out, const float* img, int64_t B, int64_t S, int64_t f, Stream stream) {
  const int64_t So = f > 0 ? S / f : 0, n = B * So * So * 3;
  if (n <= 0) return;
  avgpool_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(out, img, n, S, f);
  RECA_CUDA_LAUNCHED("avgpool_forward");
}

}  // namespace reca::cuda
