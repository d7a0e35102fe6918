#include "cpu/cross_entropy.h"

#include "core/threadpool.h"
#include "cpu/simd.h"

#if RECA_ISA_LEVEL == 2 && defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports its own _mm512_undefined_ps() placeholder (inside max/reduce
// intrinsics) as uninitialized once inlined into these loops; a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace reca::cpu::RECA_ISA_NS {
namespace {
// Rows per partial sum of the loss: fixed, so the sum's order never depends on
// the thread count.
constexpr int64_t kRowBlock = 64;

inline int64_t row_grain(int64_t V) { return imax(1, 16384 / imax(V, 1)); }

// The last n (< W) floats of a row as a full vector, padded with −∞ so the
// padding neither wins a max nor adds to a sum of exps.
inline Vec load_tail_neg_inf(const float* p, int n) {
  float buf[Vec::W];
  for (int k = 0; k < Vec::W; ++k) buf[k] = k < n ? p[k] : -INFINITY;
  return Vec::load(buf);
}

// max of x[0:V]
float row_max(const float* x, int64_t V) {
  Vec m0 = Vec::set1(-INFINITY), m1 = m0;
  int64_t c = 0;
  for (; c + 2 * Vec::W <= V; c += 2 * Vec::W) {
    m0 = vmax(m0, Vec::load(x + c));
    m1 = vmax(m1, Vec::load(x + c + Vec::W));
  }
  for (; c + Vec::W <= V; c += Vec::W) m0 = vmax(m0, Vec::load(x + c));
  if (c < V) m1 = vmax(m1, load_tail_neg_inf(x + c, static_cast<int>(V - c)));
  return hmax(vmax(m0, m1));
}

// Σ exp(x − m) over x[0:V]; the exps go to e[0:V] when e is non-null (e may be x).
float row_sum_exp(float* e, const float* x, int64_t V, float m) {
  const Vec vm = Vec::set1(m);
  Vec s0 = Vec::zero(), s1 = Vec::zero();
  int64_t c = 0;
  for (; c + 2 * Vec::W <= V; c += 2 * Vec::W) {
    const Vec e0 = vexp(Vec::load(x + c) - vm), e1 = vexp(Vec::load(x + c + Vec::W) - vm);
    s0 = s0 + e0;
    s1 = s1 + e1;
    if (e) {
      e0.store(e + c);
      e1.store(e + c + Vec::W);
    }
  }
  for (; c < V; c += Vec::W) {
    const int n = static_cast<int>(imin(Vec::W, V - c));
    const Vec ev = vexp(load_tail_neg_inf(x + c, n) - vm);
    s0 = s0 + ev;
    if (e) ev.store_tail(e + c, n);
  }
  return hsum(s0 + s1);
}

// CE of one row, in double: log Σ exp(x − m) + m − x[t].
inline double row_loss(const float* x, int64_t V, int32_t t, float* m_out, float* s_out) {
  const float m = row_max(x, V);
  const float s = row_sum_exp(nullptr, x, V, m);
  *m_out = m;
  *s_out = s;
  return log(static_cast<double>(s)) + (static_cast<double>(m) - static_cast<double>(x[t]));
}

// g[0:V] += scale·(exp(x − m)/s − onehot(t))
void row_grad(float* g, const float* x, int64_t V, int32_t t, float m, float s, float scale) {
  const Vec vm = Vec::set1(m), k = Vec::set1(scale / s);
  for (int64_t c = 0; c < V; c += Vec::W) {
    const int n = static_cast<int>(imin(Vec::W, V - c));
    const Vec p = vexp(Vec::load_tail(x + c, n) - vm);
    fmadd(p, k, Vec::load_tail(g + c, n)).store_tail(g + c, n);
  }
  g[t] -= scale;
}

}  // namespace

double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int64_t V) {
  return parallel_sum_blocks(rows, kRowBlock, [&](int64_t r0, int64_t r1) {
    double acc = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      if (t < 0) {
        if (losses) losses[r] = 0.0f;
        continue;
      }
      float m, s;
      const double l = row_loss(logits + r * V, V, t, &m, &s);
      if (losses) losses[r] = static_cast<float>(l);
      acc += l;
    }
    return acc;
  });
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int64_t V) {
  parallel_for(rows, row_grain(V), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      if (t < 0) continue;
      const float* x = logits + r * V;
      const float m = row_max(x, V);
      row_grad(dlogits + r * V, x, V, t, m, row_sum_exp(nullptr, x, V, m), scale);
    }
  });
}

double cross_entropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                      const int32_t* targets, float scale, int64_t rows,
                                      int64_t V) {
  return parallel_sum_blocks(rows, kRowBlock, [&](int64_t r0, int64_t r1) {
    double acc = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = targets[r];
      if (t < 0) {
        if (losses) losses[r] = 0.0f;
        continue;
      }
      const float* x = logits + r * V;
      float m, s;
      const double l = row_loss(x, V, t, &m, &s);
      if (losses) losses[r] = static_cast<float>(l);
      acc += l;
      row_grad(dlogits + r * V, x, V, t, m, s, scale);
    }
    return acc;
  });
}

void softmax_forward(float* probs, const float* logits, int64_t rows, int64_t V) {
  parallel_for(rows, row_grain(V), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * V;
      float* p = probs + r * V;
      const float s = row_sum_exp(p, x, V, row_max(x, V));
      const Vec inv = Vec::set1(1.0f / s);
      for (int64_t c = 0; c < V; c += Vec::W) {
        const int n = static_cast<int>(imin(Vec::W, V - c));
        (Vec::load_tail(p + c, n) * inv).store_tail(p + c, n);
      }
    }
  });
}

void log_softmax_forward(float* logp, const float* logits, int64_t rows, int64_t V) {
  parallel_for(rows, row_grain(V), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * V;
      const float m = row_max(x, V);
      // (x − m) − log s: subtracting m first keeps rows far from 0 exact
      const Vec vm = Vec::set1(m), ls = Vec::set1(logf(row_sum_exp(nullptr, x, V, m)));
      float* o = logp + r * V;
      for (int64_t c = 0; c < V; c += Vec::W) {
        const int n = static_cast<int>(imin(Vec::W, V - c));
        ((Vec::load_tail(x + c, n) - vm) - ls).store_tail(o + c, n);
      }
    }
  });
}

}  // namespace reca::cpu::RECA_ISA_NS

#if RECA_ISA_LEVEL == 0
#include <cmath>

namespace reca::cpu::ref {
namespace {
template <class T>
void row_stats(const T* x, int64_t V, T* m, T* s) {
  *m = x[0];
  for (int64_t c = 1; c < V; ++c) *m = x[c] > *m ? x[c] : *m;
  *s = 0;
  for (int64_t c = 0; c < V; ++c) *s += std::exp(x[c] - *m);
}
}  // namespace

template <class T>
double cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, int64_t rows,
                             int64_t V) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = targets[r];
    T l = 0;
    if (t >= 0) {
      const T* x = logits + r * V;
      T m, s;
      row_stats(x, V, &m, &s);
      l = std::log(s) + m - x[t];
      total += static_cast<double>(l);
    }
    if (losses) losses[r] = l;
  }
  return total;
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, T scale,
                            int64_t rows, int64_t V) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t t = targets[r];
    if (t < 0) continue;
    const T* x = logits + r * V;
    T m, s;
    row_stats(x, V, &m, &s);
    for (int64_t c = 0; c < V; ++c)
      dlogits[r * V + c] += scale * (std::exp(x[c] - m) / s - (c == t ? T(1) : T(0)));
  }
}

template <class T>
double cross_entropy_forward_backward(T* losses, T* dlogits, const T* logits,
                                      const int32_t* targets, T scale, int64_t rows, int64_t V) {
  cross_entropy_backward(dlogits, logits, targets, scale, rows, V);
  return cross_entropy_forward(losses, logits, targets, rows, V);
}

template <class T>
void softmax_forward(T* probs, const T* logits, int64_t rows, int64_t V) {
  for (int64_t r = 0; r < rows; ++r) {
    T m, s;
    row_stats(logits + r * V, V, &m, &s);
    for (int64_t c = 0; c < V; ++c) probs[r * V + c] = std::exp(logits[r * V + c] - m) / s;
  }
}

template <class T>
void log_softmax_forward(T* logp, const T* logits, int64_t rows, int64_t V) {
  for (int64_t r = 0; r < rows; ++r) {
    T m, s;
    row_stats(logits + r * V, V, &m, &s);
    const T ls = std::log(s);
    for (int64_t c = 0; c < V; ++c) logp[r * V + c] = (logits[r * V + c] - m) - ls;
  }
}

}  // namespace reca::cpu::ref

RECA_INSTANTIATE_REF(RECA_CROSS_ENTROPY_FNS)

namespace reca::cpu {
double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int64_t V) {
  RECA_DISPATCH(cross_entropy_forward, losses, logits, targets, rows, V);
}
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int64_t V) {
  RECA_DISPATCH(cross_entropy_backward, dlogits, logits, targets, scale, rows, V);
}
double cross_entropy_forward_backward(float* losses, float* dlogits, const float* logits,
                                      const int32_t* targets, float scale, int64_t rows,
                                      int64_t V) {
  RECA_DISPATCH(cross_entropy_forward_backward, losses, dlogits, logits, targets, scale, rows, V);
}
void softmax_forward(float* probs, const float* logits, int64_t rows, int64_t V) {
  RECA_DISPATCH(softmax_forward, probs, logits, rows, V);
}
void log_softmax_forward(float* logp, const float* logits, int64_t rows, int64_t V) {
  RECA_DISPATCH(log_softmax_forward, logp, logits, rows, V);
}
}  // namespace reca::cpu
#endif
