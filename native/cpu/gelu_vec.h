// GELU (tanh form, SPEC §0) on one Vec: shared by the GELU kernels and the matmul
// epilogues that fuse them, so fused and separate passes give the same bits.
#pragma once
#include "cpu/simd.h"

namespace reca::cpu::RECA_ISA_NS {
namespace {

constexpr float kGeluSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// 0.5 v (1 + tanh(k0 (v + k1 v³)))
inline Vec gelu_vec(Vec v) {
  const Vec inner = Vec::set1(kGeluSqrt2OverPi) * fmadd(Vec::set1(kGeluCubic) * v * v, v, v);
  return Vec::set1(0.5f) * v * (Vec::set1(1.0f) + vtanh(inner));
}

// d/dv [0.5 v (1 + t)] = 0.5 (1 + t) + 0.5 v (1 - t²) k0 (1 + 3 k1 v²)
inline Vec gelu_grad_vec(Vec v) {
  const Vec one = Vec::set1(1.0f), k0 = Vec::set1(kGeluSqrt2OverPi);
  const Vec t = vtanh(k0 * fmadd(Vec::set1(kGeluCubic) * v * v, v, v));
  const Vec dt = (one - t * t) * k0 * fmadd(Vec::set1(3.0f * kGeluCubic), v * v, one);
  return Vec::set1(0.5f) * fmadd(v, dt, one + t);
}

}  // namespace
}  // namespace reca::cpu::RECA_ISA_NS
