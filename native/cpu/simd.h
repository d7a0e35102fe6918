// A thin SIMD layer: one `Vec` of W float lanes per ISA level, so each kernel is
// written once and compiled three times (scalar, AVX2, AVX-512).
//
// Every file in native/cpu/ is compiled with RECA_ISA_LEVEL = 0, 1 and 2 (see
// CMakeLists.txt / binding.gyp); the code lands in namespace reca::cpu::isa_scalar,
// isa_avx2 or isa_avx512. Rules for code compiled at levels 1 and 2:
//  - no std:: templates (containers, algorithms, std::min/max): an out-of-line
//    copy built with AVX-512 could be picked by the linker for the scalar path;
//    use the helpers below (internal linkage) and raw buffers;
//  - level-0-only code (the reference and the dispatchers) sits under
//    `#if RECA_ISA_LEVEL == 0` and may use anything.
#pragma once
#include <stdint.h>
#include <string.h>
#include <math.h>

#ifndef RECA_ISA_LEVEL
#error "RECA_ISA_LEVEL must be defined (0 scalar, 1 avx2, 2 avx512)"
#endif

#if RECA_ISA_LEVEL == 2
#define RECA_ISA_NS isa_avx512
#elif RECA_ISA_LEVEL == 1
#define RECA_ISA_NS isa_avx2
#else
#define RECA_ISA_NS isa_scalar
#endif

#if RECA_ISA_LEVEL >= 1
#include <immintrin.h>
#endif

namespace reca::cpu::RECA_ISA_NS {
namespace {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline float fminf_(float a, float b) { return a < b ? a : b; }
inline float fmaxf_(float a, float b) { return a > b ? a : b; }

#if RECA_ISA_LEVEL == 2
struct Vec {
  static constexpr int W = 16;
  __m512 v;
  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  // First n lanes from p (0 <= n <= W); the rest are zero. Reads only n floats.
  static Vec load_tail(const float* p, int n) {
    return {_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p)};
  }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_tail(float* p, int n) const {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  }
};
inline Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec operator/(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
inline Vec fmadd(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a*b+c
inline Vec fnmadd(Vec a, Vec b, Vec c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }  // c-a*b
inline Vec vmax(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Vec vmin(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
inline Vec vsqrt(Vec a) { return {_mm512_sqrt_ps(a.v)}; }
inline Vec vabs(Vec a) { return {_mm512_abs_ps(a.v)}; }
inline float hsum(Vec a) { return _mm512_reduce_add_ps(a.v); }
inline float hmax(Vec a) { return _mm512_reduce_max_ps(a.v); }
// Lanes where a < b take x, others y.
inline Vec select_lt(Vec a, Vec b, Vec x, Vec y) {
  return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), y.v, x.v)};
}
// 2^n for integral-valued float n in [-126, 127].
inline Vec pow2i(Vec n) {
  __m512i i = _mm512_cvtps_epi32(n.v);
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23))};
}
inline Vec vround(Vec a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }

#elif RECA_ISA_LEVEL == 1
struct Vec {
  static constexpr int W = 8;
  __m256 v;
  static __m256i tail_mask(int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
  }
  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec set1(float x) { return {_mm256_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static Vec load_tail(const float* p, int n) {
    return {n >= W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(n))};
  }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  // Plain 16/8/4-byte stores, not vmaskmovps: AMD cores up to Zen 4 run a masked
  // store as a slow microcoded sequence (it made the A packing of a 6-row matmul
  // panel cost a quarter of the multiply itself).
  void store_tail(float* p, int n) const {
    if (n >= W) return store(p);
    __m128 x = _mm256_castps256_ps128(v);
    if (n & 4) {
      _mm_storeu_ps(p, x);
      x = _mm256_extractf128_ps(v, 1);
      p += 4;
    }
    if (n & 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
      x = _mm_movehl_ps(x, x);
      p += 2;
    }
    if (n & 1) _mm_store_ss(p, x);
  }
};
inline Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec operator/(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vec fmadd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec fnmadd(Vec a, Vec b, Vec c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
inline Vec vmax(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vec vmin(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
inline Vec vsqrt(Vec a) { return {_mm256_sqrt_ps(a.v)}; }
inline Vec vabs(Vec a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline float hsum(Vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(Vec a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline Vec select_lt(Vec a, Vec b, Vec x, Vec y) {
  return {_mm256_blendv_ps(y.v, x.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ))};
}
inline Vec pow2i(Vec n) {
  __m256i i = _mm256_cvtps_epi32(n.v);
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23))};
}
inline Vec vround(Vec a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }

#else
struct Vec {
  static constexpr int W = 1;
  float v;
  static Vec zero() { return {0.0f}; }
  static Vec set1(float x) { return {x}; }
  static Vec load(const float* p) { return {*p}; }
  static Vec load_tail(const float* p, int n) { return {n > 0 ? *p : 0.0f}; }
  void store(float* p) const { *p = v; }
  void store_tail(float* p, int n) const {
    if (n > 0) *p = v;
  }
};
inline Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
inline Vec operator-(Vec a, Vec b) { return {a.v - b.v}; }
inline Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
inline Vec operator/(Vec a, Vec b) { return {a.v / b.v}; }
inline Vec fmadd(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
inline Vec fnmadd(Vec a, Vec b, Vec c) { return {c.v - a.v * b.v}; }
inline Vec vmax(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
inline Vec vmin(Vec a, Vec b) { return {a.v < b.v ? a.v : b.v}; }
inline Vec vsqrt(Vec a) { return {sqrtf(a.v)}; }
inline Vec vabs(Vec a) { return {fabsf(a.v)}; }
inline float hsum(Vec a) { return a.v; }
inline float hmax(Vec a) { return a.v; }
inline Vec select_lt(Vec a, Vec b, Vec x, Vec y) { return a.v < b.v ? x : y; }
inline Vec vround(Vec a) { return {nearbyintf(a.v)}; }
#endif

#if RECA_ISA_LEVEL >= 1
// e^r for y = n·ln2 + r: Cody-Waite reduction, then a degree-6 polynomial for e^r,
// about 2 ulp. Returns e^r and sets n; the caller scales by 2^n as its range needs.
inline Vec exp_reduced(Vec y, Vec& n) {
  n = vround(y * Vec::set1(1.44269504088896341f));
  Vec r = fnmadd(n, Vec::set1(0.693359375f), y);
  r = fnmadd(n, Vec::set1(-2.12194440e-4f), r);
  Vec p = Vec::set1(1.9875691500e-4f);
  p = fmadd(p, r, Vec::set1(1.3981999507e-3f));
  p = fmadd(p, r, Vec::set1(8.3334519073e-3f));
  p = fmadd(p, r, Vec::set1(4.1665795894e-2f));
  p = fmadd(p, r, Vec::set1(1.6666665459e-1f));
  p = fmadd(p, r, Vec::set1(5.0000001201e-1f));
  return fmadd(p * r, r, r) + Vec::set1(1.0f);
}

// exp(x), about 2 ulp. exp(x) = 0 below -87.3 (so exp(-inf) == 0).
inline Vec vexp(Vec x) {
  const Vec hi = Vec::set1(88.3762626647949f), lo = Vec::set1(-87.3365447504f);
  Vec n;
  const Vec p = exp_reduced(vmax(vmin(x, hi), lo), n);
  // 2^n in two halves so n = 128 (x near the top of the range) does not overflow.
  const Vec half_n = vround(n * Vec::set1(0.5f));
  return select_lt(x, lo, Vec::zero(), p * pow2i(half_n) * pow2i(n - half_n));
}
#else
inline Vec vexp(Vec x) { return {expf(x.v)}; }
#endif

// In-register transpose of a W x W block: r[i] lane j  ->  r[j] lane i.
#if RECA_ISA_LEVEL == 2
// GCC 12's unpack/shuffle intrinsics start from an "undefined" register it then
// warns about.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
inline void transpose(Vec* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i].v, r[i + 1].v);
    t[i + 1] = _mm512_unpackhi_ps(r[i].v, r[i + 1].v);
  }
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(u[h + i], u[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(u[h + i], u[h + i + 4], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i].v = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8].v = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}
#pragma GCC diagnostic pop
#elif RECA_ISA_LEVEL == 1
inline void transpose(Vec* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i].v, r[i + 1].v);
    t[i + 1] = _mm256_unpackhi_ps(r[i].v, r[i + 1].v);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i].v = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4].v = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#else
inline void transpose(Vec*) {}  // one lane: already transposed
#endif

// tanh(x) = 1 - 2 / (1 + e^(2x)), x clamped to [-9, 9] where float tanh is already
// ±1 to the last bit, so e^(2x) stays in [1.5e-8, 6.6e7]: a single 2^n scale, no
// overflow handling, no sign select (about 2/3 of the instructions of vexp). The
// absolute error stays near 1 ulp of 1, which is what 0.5·x·(1 + tanh) in GELU needs.
inline Vec vtanh(Vec x) {
#if RECA_ISA_LEVEL >= 1
  Vec n;
  const Vec p = exp_reduced(Vec::set1(2.0f) * vmax(vmin(x, Vec::set1(9.0f)), Vec::set1(-9.0f)), n);
  return Vec::set1(1.0f) - Vec::set1(2.0f) / (Vec::set1(1.0f) + p * pow2i(n));
#else
  return {tanhf(x.v)};
#endif
}

}  // namespace
}  // namespace reca::cpu::RECA_ISA_NS
