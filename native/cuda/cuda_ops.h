// The CUDA backend's operations: device memory, streams, timing, and the op
// families (one .cu file each, mirroring native/cpu/ semantics exactly).
//
// Every pointer an op takes is a device pointer; every op is enqueued on
// `stream` and returns without waiting. Every CUDA call is checked: a failure
// throws reca::Error(ErrorCode::Cuda, "<op>: <cuda error string>"), a failed
// allocation ErrorCode::OutOfMemory. Kernel faults surface at the next
// synchronising call (synchronize, copies to the host).
// This header needs no CUDA headers: Stream is the same type as cudaStream_t.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/adamw.h"  // AdamWConfig

struct CUstream_st;

namespace reca::cuda {

using Stream = CUstream_st*;  // == cudaStream_t; nullptr is the default stream

// ---- device, memory, streams -------------------------------------------------
void set_device(int index);
void* device_alloc(size_t bytes);             // never returns null for bytes > 0
void device_free(void* p) noexcept;           // null is fine; errors ignored
void copy_to_device(void* dst, const void* src, size_t bytes, Stream stream);  // blocks until done
void copy_to_host(void* dst, const void* src, size_t bytes, Stream stream);    // blocks until done
void copy_on_device(void* dst, const void* src, size_t bytes, Stream stream);  // async
void fill_bytes(void* dst, int byte, size_t bytes, Stream stream);            // async memset
Stream stream_create();
void stream_destroy(Stream stream) noexcept;
void synchronize(Stream stream);
void device_synchronize();

// Elapsed device time between two points of a stream (CUDA events).
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start(Stream stream);
  void stop(Stream stream);
  float elapsed_ms();  // waits for the stop event

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

// ---- matmul.cu ----------------------------------------------------------------
// C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]  (bias may be null)
// A is stored [M,K] (row-major) or, if trans_a, [K,M]; B is stored [K,N] or, if
// trans_b, [N,K]; densely packed; C does not alias A, B or bias. Same contract as
// reca::cpu::matmul.
//   Fp32: fp32 FFMA SGEMM (128×128 tiles, 8×8 per thread), fp32 accumulation in
//         a fixed order: deterministic, ~1e-6 relative error. Shapes with fewer
//         tiles than the GPU has block slots split K into 2..4 slices summed in
//         order (the split depends on the shape and the SM count only).
//   Tf32: tensor cores (mma.sync m16n8k8 TF32): inputs rounded to 10-bit
//         mantissas, fp32 accumulation: ~1e-4..1e-3 relative error. A documented
//         reduced-precision mode, off by default.
enum class MatmulPrecision { Fp32, Tf32 };
void matmul(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,
            int64_t K, bool trans_a, bool trans_b, bool accumulate, Stream stream,
            MatmulPrecision precision = MatmulPrecision::Fp32);

// ---- gelu.cu (reca::cpu::gelu_* semantics) -----------------------------------
//   forward   y = gelu(x + bias)                    x, y: [rows, cols], bias: [cols] or null
//   backward  g = dy * gelu'(x + bias); dx += g; dbias += Σ_rows g   (dbias may be null)
// dbias is reduced over fixed chunks of rows combined in chunk order: deterministic.
void gelu_forward(float* y, const float* x, const float* bias, int64_t rows, int64_t cols,
                  Stream stream);
void gelu_backward(float* dx, float* dbias, const float* x, const float* bias, const float* dy,
                   int64_t rows, int64_t cols, Stream stream);

// ---- layernorm.cu (reca::cpu::layernorm_* semantics, eps 1e-5) ------------------
//   forward   y = (x − mean)·rstd·w + b, two-pass statistics; mean, rstd: [rows] (may be null)
//   backward  dx += rstd·(gh − mean_C(gh) − xhat·mean_C(gh·xhat)), gh = dy·w
//             dw += Σ_rows dy·xhat; db += Σ_rows dy  (dx, dw, db may each be null)
// y may alias x. Reductions in a fixed order: deterministic.
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t rows, int64_t C, Stream stream);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t rows,
                        int64_t C, Stream stream);

// ---- adamw.cu (reca::cpu::adamw_step semantics) -----------------------------------
//   g' = g·grad_scale; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
//   p = p·(1 − lr·wd) if decay; p −= (lr/(1−β1ᵗ))·m/(√v/√(1−β2ᵗ) + eps);
//   ema = d·ema + (1−d)·p when ema != null.  p, m, v, g, ema: [n]; g overlaps nothing.
// The scalars are computed in double and rounded once, as on the CPU.
void adamw_step(float* p, float* m, float* v, float* ema, const float* g, int64_t n, bool decay,
                const cpu::AdamWConfig& cfg, Stream stream);

// ---- rng.cu (core/philox.h, bit-identical to the host) ---------------------------
// out[k] = reca::philox_uniform / philox_normal(seed, stream_id, offset + k)
void philox_fill_uniform(uint64_t seed, uint64_t stream_id, float* out, int64_t n,
                         uint64_t offset, Stream stream);
void philox_fill_normal(uint64_t seed, uint64_t stream_id, float* out, int64_t n,
                        uint64_t offset, Stream stream);
// out[r·n .. r·n+n) = reca::philox_permutation(seed, stream_id + r, n), r < count
void philox_permutations(uint64_t seed, uint64_t stream_id, int64_t n, int64_t count,
                         int32_t* out, Stream stream);

}  // namespace reca::cuda
