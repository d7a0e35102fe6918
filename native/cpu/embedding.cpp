#include "cpu/embedding.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {
// Columns per backward block: one cache line, so neighbouring tasks never share one.
constexpr int64_t kColBlock = 16;

inline int64_t row_grain(int64_t D) { return imax(1, 16384 / imax(D, 1)); }

// y[0:n] += x[0:n]
inline void add_row(float* y, const float* x, int64_t n) {
  for (int64_t c = 0; c < n; c += Vec::W) {
    const int m = static_cast<int>(imin(Vec::W, n - c));
    (Vec::load_tail(y + c, m) + Vec::load_tail(x + c, m)).store_tail(y + c, m);
  }
}
}  // namespace

void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t D) {
  parallel_for(N, row_grain(D), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      if (ids[n] >= 0) memcpy(out + n * D, table + ids[n] * D, static_cast<size_t>(D) * sizeof(float));
  });
}

// Each task owns whole columns of dtable and walks the rows in order.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D) {
  const int64_t blocks = (D + kColBlock - 1) / kColBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * kColBlock, c1 = imin(b1 * kColBlock, D);
    for (int64_t n = 0; n < N; ++n)
      if (ids[n] >= 0) add_row(dtable + ids[n] * D + c0, dout + n * D + c0, c1 - c0);
  });
}

void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L, int64_t D) {
  parallel_for(B * L, row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / L, i = r % L;
      add_row(x + (b * seq_len + i) * D, pos + i * D, D);
    }
  });
}

// Each task owns whole rows of dpos; samples are added in order b = 0..B-1.
void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len, int64_t L,
                      int64_t D) {
  parallel_for(L, imax(1, row_grain(D) / imax(B, 1)), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t b = 0; b < B; ++b) add_row(dpos + i * D, dout + (b * seq_len + i) * D, D);
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
namespace reca::cpu::ref {

template <class T>
void embedding_forward(T* out, const T* table, const int32_t* ids, int64_t N, int64_t D) {
  for (int64_t n = 0; n < N; ++n)
    if (ids[n] >= 0)
      for (int64_t c = 0; c < D; ++c) out[n * D + c] = table[ids[n] * D + c];
}

template <class T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t N, int64_t D) {
  for (int64_t n = 0; n < N; ++n)
    if (ids[n] >= 0)
      for (int64_t c = 0; c < D; ++c) dtable[ids[n] * D + c] += dout[n * D + c];
}

template <class T>
void pos_add_forward(T* x, const T* pos, int64_t B, int64_t seq_len, int64_t L, int64_t D) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t c = 0; c < D; ++c) x[(b * seq_len + i) * D + c] += pos[i * D + c];
}

template <class T>
void pos_add_backward(T* dpos, const T* dout, int64_t B, int64_t seq_len, int64_t L, int64_t D) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < L; ++i)
      for (int64_t c = 0; c < D; ++c) dpos[i * D + c] += dout[(b * seq_len + i) * D + c];
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_EMBEDDING_FNS)

namespace reca::cpu {
void embedding_forward(float* out, const float* table, const int32_t* ids, int64_t N, int64_t D) {
  RECA_DISPATCH(embedding_forward, out, table, ids, N, D);
}
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t D) {
  RECA_DISPATCH(embedding_backward, dtable, dout, ids, N, D);
}
void pos_add_forward(float* x, const float* pos, int64_t B, int64_t seq_len, int64_t L, int64_t D) {
  RECA_DISPATCH(pos_add_forward, x, pos, B, seq_len, L, D);
}
void pos_add_backward(float* dpos, const float* dout, int64_t B, int64_t seq_len, int64_t L,
                      int64_t D) {
  RECA_DISPATCH(pos_add_backward, dpos, dout, B, seq_len, L, D);
}
}  // namespace reca::cpu
#endif
