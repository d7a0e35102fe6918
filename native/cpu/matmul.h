// Matrix multiply (SGEMM) and the Linear layer built on it.
//
//   matmul          C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]
//   linear_forward  y[M,out] = x[M,in] · W[out,in]ᵀ + b[out]          (SPEC §0 layout)
//   linear_backward dx += dy·W ; dW += dyᵀ·x ; db += Σ_rows dy
// and the MLP's GELU fused into the matmul (applied to each finished block of C
// while it is still in L2: no separate pass from memory; the same bits as the
// separate GELU kernels):
//   linear_gelu_forward   f = x·Wᵀ + b ; g = gelu(f)
//   linear_backward_gelu  dxf = gelu'(f) ⊙ (dy·W) ; dW += dyᵀ·x ; db += Σ_rows dy
//                         (x = gelu(f) fed this Linear; dxf is overwritten)
//
// Preconditions: every size >= 0; row-major, densely packed operands (leading
// dimension = row length); outputs do not alias inputs. K == 0 gives
// C = (accumulate ? C : 0) + bias. Results do not depend on the thread count.
#pragma once
#include "cpu/kernel_family.h"

#define RECA_MATMUL_FNS(PRE, T) \
  /* C[M,N] = (accumulate ? C : 0) + op(A)[M,K] · op(B)[K,N] + bias[N]   (bias may be null)      */ \
  /* A is stored [M,K] (row-major) or, if trans_a, [K,M]; B is stored [K,N] or, if trans_b, [N,K] */ \
  PRE void matmul(T* C, const T* A, const T* B, const T* bias, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, bool accumulate); \
  /* Linear layer (PyTorch layout, SPEC §0): y[M,out] = x[M,in] · W[out,in]ᵀ + b[out] */ \
  PRE void linear_forward(T* y, const T* x, const T* W, const T* b, int64_t M, int64_t in, int64_t out); \
  /* dx[M,in] += dy·W ; dW[out,in] += dyᵀ·x ; db[out] += Σ_rows dy   (any of dx, dW, db may be null) */ \
  PRE void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t M, int64_t in, int64_t out); \
  /* f[M,out] = x·W[out,in]ᵀ + b ; g[M,out] = gelu(f)   (b may be null) */ \
  PRE void linear_gelu_forward(T* f, T* g, const T* x, const T* W, const T* b, int64_t M, int64_t in, int64_t out); \
  /* dxf[M,in] = gelu'(f) ⊙ (dy·W) (overwritten) ; dW += dyᵀ·x ; db += Σ_rows dy   (dW, db may be null) */ \
  PRE void linear_backward_gelu(T* dxf, T* dW, T* db, const T* dy, const T* x, const T* W, const T* f, int64_t M, int64_t in, int64_t out);
RECA_DECLARE_KERNEL_FAMILY(RECA_MATMUL_FNS)
