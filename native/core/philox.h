// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy
// as 1, 2, 3", SC'11; the Random123 generator), header-only, identical on the
// host and on a CUDA device. Every draw is a pure function of
// (seed, stream, index), so a tensor can be filled in any order, by any number
// of threads or GPU blocks, and the bits come out the same.
//
//   philox_u32(seed, stream, i)      32 random bits; counter {i/4 lo, i/4 hi,
//                                    stream lo, stream hi}, key {seed lo, seed hi},
//                                    word i%4 of the block
//   philox_uniform(seed, stream, i)  ((x >> 9) + 0.5) · 2^-23, x = philox_u32(...):
//                                    a float in the open interval (0, 1), every value
//                                    exact (23 random bits; 24 would round the top
//                                    values up to 1.0f)
//   philox_normal(seed, stream, i)   Box–Muller on uniforms 2i and 2i+1:
//                                    sqrt(-2 ln u1) · cos(2π u2)
//   philox_permutation(...)          Fisher–Yates with Lemire's bounded integers
//
// Bit-identical normals: libm's and CUDA's logf/cosf differ, and nvcc fuses
// a*b+c into an FMA where g++ at baseline x86-64 does not. So log and cos are
// our own polynomials built from correctly rounded operations only (+ − × /
// sqrt, and fmaf, which is correctly rounded everywhere); every multiply-add
// is an explicit fmaf, no plain product ever feeds an addition (nothing for a
// compiler to contract), and on the device the remaining operations go through
// the __f*_rn intrinsics, which nvcc never contracts.
// Accuracy against double-precision libm (tested over the whole uniform grid):
// log within 1.6e-7 relative, cos(2πu) within 6e-8 absolute; normals within
// 2e-7 of Box–Muller in double (|z| ≤ 5.8). The same bits come out of g++ at
// -O0, -O2 and -O3 -mfma -ffp-contract=fast, and of nvcc.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define RECA_PHILOX_FN __host__ __device__ __forceinline__
#else
#define RECA_PHILOX_FN inline
#endif

// Correctly rounded float operations that no compiler may fuse.
#if defined(__CUDA_ARCH__)
#define RECA_FMUL(a, b) __fmul_rn((a), (b))
#define RECA_FADD(a, b) __fadd_rn((a), (b))
#define RECA_FSUB(a, b) __fsub_rn((a), (b))
#define RECA_FDIV(a, b) __fdiv_rn((a), (b))
#define RECA_FSQRT(a) __fsqrt_rn(a)
#define RECA_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#else
#define RECA_FMUL(a, b) ((a) * (b))
#define RECA_FADD(a, b) ((a) + (b))
#define RECA_FSUB(a, b) ((a) - (b))
#define RECA_FDIV(a, b) ((a) / (b))
#define RECA_FSQRT(a) sqrtf(a)
#define RECA_FMA(a, b, c) fmaf((a), (b), (c))
#endif

namespace reca {

namespace philox_detail {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

RECA_PHILOX_FN uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

RECA_PHILOX_FN float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}
RECA_PHILOX_FN uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

// ln(x) for a normal, positive, finite float x (here x ≥ 2^-24). x = 2^e · m, m in
// [√½, √2); ln m = 2 atanh(s), s = (m−1)/(m+1), |s| ≤ 0.1716, odd series to
// s^13 (truncation < 1e-12 relative). m−1 is exact (Sterbenz).
RECA_PHILOX_FN float log_rn(float x) {
  const uint32_t bits = float_to_bits(x);
  int e = static_cast<int>((bits >> 23) & 0xFF) - 127;
  uint32_t mb = (bits & 0x007FFFFFu) | 0x3F800000u;  // m in [1, 2)
  if (mb > 0x3FB504F3u) {                             // m > √2: halve it
    mb -= 0x00800000u;
    ++e;
  }
  const float m = bits_to_float(mb);
  const float f = RECA_FSUB(m, 1.0f);
  const float s = RECA_FDIV(f, RECA_FADD(2.0f, f));
  const float s2 = RECA_FMUL(s, s);
  // 2·atanh(s) = 2s + s·s2·(2/3 + s2·(2/5 + s2·(2/7 + ...)))
  float p = 2.0f / 13.0f;
  p = RECA_FMA(p, s2, 2.0f / 11.0f);
  p = RECA_FMA(p, s2, 2.0f / 9.0f);
  p = RECA_FMA(p, s2, 2.0f / 7.0f);
  p = RECA_FMA(p, s2, 2.0f / 5.0f);
  p = RECA_FMA(p, s2, 2.0f / 3.0f);
  const float s3 = RECA_FMUL(s, s2);
  const float lm = RECA_FMA(s3, p, RECA_FADD(s, s));  // 2s + s³·p
  // e·ln2 with ln2 split in two: kLn2Hi has 17 significant bits, so e·kLn2Hi
  // is exact for |e| < 2^7.
  const float ef = static_cast<float>(e);
  const float kLn2Hi = 0.693145751953125f;
  const float kLn2Lo = 1.4286068202862268e-06f;  // ln2 − kLn2Hi
  return RECA_FMA(ef, kLn2Hi, RECA_FMA(ef, kLn2Lo, lm));
}

// sin(2πr) and cos(2πr) for |r| ≤ 1/8 (angle ≤ π/4): Taylor series in r,
// truncation below 1e-11.
RECA_PHILOX_FN float sin2pi_small(float r) {
  const float r2 = RECA_FMUL(r, r);
  float p = -15.094642576822984f;            // −(2π)^11/11!
  p = RECA_FMA(p, r2, 42.058693944897634f);   // (2π)^9/9!
  p = RECA_FMA(p, r2, -76.70585975306136f);   // −(2π)^7/7!
  p = RECA_FMA(p, r2, 81.60524927607504f);    // (2π)^5/5!
  p = RECA_FMA(p, r2, -41.341702240399755f);  // −(2π)^3/3!
  // 2π·r + r·r2·p, with 2π split so the leading term keeps full precision.
  const float kTwoPiHi = 6.28318548202514648f;   // float(2π)
  const float kTwoPiLo = -1.7484556025237907e-07f;  // 2π − kTwoPiHi
  const float r3 = RECA_FMUL(r, r2);
  return RECA_FMA(kTwoPiHi, r, RECA_FMA(kTwoPiLo, r, RECA_FMUL(r3, p)));
}
RECA_PHILOX_FN float cos2pi_small(float r) {
  const float r2 = RECA_FMUL(r, r);
  float p = 7.903536371318465f;              // (2π)^12/12!
  p = RECA_FMA(p, r2, -26.426256783374388f);  // −(2π)^10/10!
  p = RECA_FMA(p, r2, 60.24464137187664f);    // (2π)^8/8!
  p = RECA_FMA(p, r2, -85.45681720669371f);   // −(2π)^6/6!
  p = RECA_FMA(p, r2, 64.93939402266828f);    // (2π)^4/4!
  p = RECA_FMA(p, r2, -19.739208802178716f);  // −(2π)^2/2!
  return RECA_FMA(p, r2, 1.0f);
}

// cos(2πu) for u in (0, 1) a multiple of 2^-24: every reduction step below is
// exact, so the polynomial sees the true reduced argument.
RECA_PHILOX_FN float cos2pi_unit(float u) {
  float a = u > 0.5f ? RECA_FSUB(1.0f, u) : u;  // cos(2π(1−u)) = cos(2πu); a in (0, 0.5]
  if (a <= 0.125f) return cos2pi_small(a);
  if (a <= 0.375f) return sin2pi_small(RECA_FSUB(0.25f, a));  // cos(2πa) = sin(2π(¼−a))
  return -cos2pi_small(RECA_FSUB(0.5f, a));                    // cos(2πa) = −cos(2π(½−a))
}
}  // namespace philox_detail

// One Philox4x32 block: 10 rounds over counter ctr with key `key`.
RECA_PHILOX_FN void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  using namespace philox_detail;
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(kM0, c0, &hi0);
    const uint32_t lo1 = mulhilo(kM1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// The block holding draw `block` (= index / 4) of (seed, stream).
RECA_PHILOX_FN void philox_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
  const uint32_t ctr[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                           static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(ctr, key, out);
}

RECA_PHILOX_FN uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t out[4];
  philox_block(seed, stream, index >> 2, out);
  return out[index & 3];
}

// 32 random bits to a float in (0, 1): ((x >> 9) + 0.5) · 2^-23, exact.
RECA_PHILOX_FN float philox_bits_to_uniform(uint32_t x) {
  return RECA_FMUL(static_cast<float>(((x >> 9) << 1) | 1u), 5.9604644775390625e-08f);  // (2k+1)·2^-24
}

RECA_PHILOX_FN float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return philox_bits_to_uniform(philox_u32(seed, stream, index));
}

// Box–Muller from two uniforms (u1, u2 in (0, 1)): sqrt(−2 ln u1) · cos(2π u2).
RECA_PHILOX_FN float philox_box_muller(float u1, float u2) {
  using namespace philox_detail;
  const float radius = RECA_FSQRT(RECA_FMUL(-2.0f, log_rn(u1)));
  return RECA_FMUL(radius, cos2pi_unit(u2));
}

// Standard normal; uses uniforms 2·index and 2·index + 1 (index < 2^63).
RECA_PHILOX_FN float philox_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t out[4];
  philox_block(seed, stream, index >> 1, out);  // draws 2i and 2i+1 share one block
  const int w = static_cast<int>(index & 1) * 2;
  return philox_box_muller(philox_bits_to_uniform(out[w]), philox_bits_to_uniform(out[w + 1]));
}

// A uniform integer in [0, range) (1 ≤ range ≤ 2^32 − 1) from the draws
// `*next`, `*next + 1`, ... of (seed, stream); advances *next past the draws
// used. Lemire's multiply-shift with rejection: unbiased, integer-only.
RECA_PHILOX_FN uint32_t philox_bounded(uint64_t seed, uint64_t stream, uint64_t* next,
                                       uint32_t range) {
  uint64_t m = static_cast<uint64_t>(philox_u32(seed, stream, (*next)++)) * range;
  uint32_t low = static_cast<uint32_t>(m);
  if (low < range) {
    const uint32_t threshold = (0u - range) % range;  // 2^32 mod range
    while (low < threshold) {
      m = static_cast<uint64_t>(philox_u32(seed, stream, (*next)++)) * range;
      low = static_cast<uint32_t>(m);
    }
  }
  return static_cast<uint32_t>(m >> 32);
}

// out[0..n) = a uniformly random permutation of 0..n−1 (0 ≤ n < 2^31).
// Fisher–Yates from the top: for i = n−1 .. 1, swap out[i] with out[j],
// j uniform in [0, i], drawn with philox_bounded from draw 0 onwards.
RECA_PHILOX_FN void philox_permutation(uint64_t seed, uint64_t stream, int64_t n, int32_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(i);
  uint64_t next = 0;
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = philox_bounded(seed, stream, &next, static_cast<uint32_t>(i + 1));
    const int32_t t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
}

// Host bulk fills: out[k] = philox_uniform/normal(seed, stream, offset + k),
// threaded; each element depends only on its index, so the result does not
// depend on the thread count.
void philox_fill_uniform(uint64_t seed, uint64_t stream, float* out, int64_t n, uint64_t offset = 0);
void philox_fill_normal(uint64_t seed, uint64_t stream, float* out, int64_t n, uint64_t offset = 0);

}  // namespace reca
