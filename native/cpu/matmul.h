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

// A Linear weight packed once for many forward products with it (sampling runs
// the same weights on a few new rows per step, where packing W costs as much as
// the product). The panels are those linear_forward packs from W on every call,
// so the packed products give the same bits as the plain ones. W must stay
// alive and unchanged while the PackedWeight lives.
#define RECA_PACKED_LINEAR_FNS                                                                     \
  /* floats of the panels of W[out,in], and packing them (this ISA level's layout) */             \
  int64_t packed_weight_floats(int64_t in, int64_t out);                                         \
  void pack_weight(float* dst, const float* W, int64_t in, int64_t out);                         \
  /* linear_forward / linear_gelu_forward with W's panels in W_packed (W: small products) */     \
  void linear_forward_packed(float* y, const float* x, const float* W, const float* W_packed,    \
                             const float* b, int64_t M, int64_t in, int64_t out);                \
  void linear_gelu_forward_packed(float* f, float* g, const float* x, const float* W,            \
                                  const float* W_packed, const float* b, int64_t M, int64_t in,  \
                                  int64_t out);

namespace reca::cpu {
namespace isa_scalar { RECA_PACKED_LINEAR_FNS }
namespace isa_avx2 { RECA_PACKED_LINEAR_FNS }
namespace isa_avx512 { RECA_PACKED_LINEAR_FNS }

// W[out,in] packed at the ISA level active when constructed. Throws
// E_OUT_OF_MEMORY when the panels cannot be allocated.
class PackedWeight {
 public:
  PackedWeight(const float* W, int64_t in, int64_t out);
  ~PackedWeight();
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;
  const float* weight() const { return W_; }
  const float* panels() const { return panels_; }
  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  Isa isa() const { return isa_; }

 private:
  const float* W_;
  int64_t in_, out_;
  Isa isa_;
  float* panels_ = nullptr;
};

// linear_forward / linear_gelu_forward (same semantics, same bits) with a packed W.
void linear_forward(float* y, const float* x, const PackedWeight& W, const float* b, int64_t M);
void linear_gelu_forward(float* f, float* g, const float* x, const PackedWeight& W,
                         const float* b, int64_t M);
}  // namespace reca::cpu
