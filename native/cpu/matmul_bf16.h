// bf16 mixed-precision matrix multiply (training): the Linear layer's three
// products with both matrix operands rounded to bf16 (round to nearest even) as
// they are packed, products summed in fp32 by vdpbf16ps (AVX512_BF16). Inputs,
// outputs, bias, the bias gradient and the GELU epilogues stay fp32; so do the
// callers' parameters, gradients and optimizer state.
//
// Same entry points and semantics as cpu/matmul.h, with the operands replaced
// by their bf16 roundings:
//   matmul_bf16               C = (accumulate ? C : 0) + bf16(op(A))·bf16(op(B)) + bias
//   linear_forward_bf16       y = bf16(x)·bf16(W)ᵀ + b
//   linear_backward_bf16      dx += bf16(dy)·bf16(W) ; dW += bf16(dy)ᵀ·bf16(x) ; db += Σ_rows dy
//   linear_gelu_forward_bf16  f = bf16(x)·bf16(W)ᵀ + b ; g = gelu(f)
//   linear_backward_gelu_bf16 dxf = gelu'(f) ⊙ (bf16(dy)·bf16(W)) ; dW, db as above
// Results do not depend on the thread count (each element is one task's fixed-
// order sum, as in the fp32 path).
//
// Only the avx512 level has kernels, built for target avx512bf16 inside the
// avx512 library, so the library still runs on CPUs without it. The dispatching
// entry points throw E_DEVICE unless bf16_matmul_available().
#pragma once
#include <stdint.h>
#include <string.h>

#define RECA_MATMUL_BF16_FNS(PRE)                                                                           \
  PRE void matmul_bf16(float* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N,     \
                       int64_t K, bool trans_a, bool trans_b, bool accumulate);                               \
  PRE void linear_forward_bf16(float* y, const float* x, const float* W, const float* b, int64_t M,         \
                               int64_t in, int64_t out);                                                      \
  PRE void linear_backward_bf16(float* dx, float* dW, float* db, const float* dy, const float* x,           \
                                const float* W, int64_t M, int64_t in, int64_t out);                         \
  PRE void linear_gelu_forward_bf16(float* f, float* g, const float* x, const float* W, const float* b,     \
                                    int64_t M, int64_t in, int64_t out);                                     \
  PRE void linear_backward_gelu_bf16(float* dxf, float* dW, float* db, const float* dy, const float* x,     \
                                     const float* W, const float* f, int64_t M, int64_t in, int64_t out);

namespace reca::cpu {

// The active ISA is avx512 and the CPU has AVX512_BF16.
bool bf16_matmul_available();
// Why bf16 matmuls cannot run here, with what can (null when they can).
const char* bf16_matmul_unavailable_reason();

RECA_MATMUL_BF16_FNS()  // E_DEVICE when !bf16_matmul_available()
namespace isa_avx512 {
RECA_MATMUL_BF16_FNS()
}

// x rounded to the nearest bf16 (ties to even) and widened back: what
// vcvtne2ps2bf16 does, so a denormal becomes a signed zero and a NaN stays a
// (quiet) NaN; a value past the largest bf16 rounds to infinity. (static: the
// ISA-level builds must not share an out-of-line copy.)
static inline float round_to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
  else if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u;
  else u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

namespace ref {
// matmul (cpu/matmul.h) of the bf16-rounded operands, summed in T: the oracle of
// the kernels above (T = double: only the kernel's fp32 summation differs).
template <class T>
void matmul_bf16(T* C, const float* A, const float* B, const float* bias, int64_t M, int64_t N, int64_t K,
                 bool trans_a, bool trans_b, bool accumulate);
}  // namespace ref

}  // namespace reca::cpu
