#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/philox.h"
#include "core/threadpool.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {
std::string hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}
}  // namespace

// Random123's kat_vectors for philox4x32 with 10 rounds.
RECA_TEST(philox_known_answers) {
  struct Kat {
    uint32_t ctr[4], key[2], want[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    uint32_t out[4];
    philox4x32_10(k.ctr, k.key, out);
    for (int i = 0; i < 4; ++i)
      expect_true(out[i] == k.want[i], "philox4x32_10 ctr " + hex(k.ctr[0]) + " word " +
                                           std::to_string(i) + ": got " + hex(out[i]) + " want " +
                                           hex(k.want[i]));
  }
}

// philox_u32's counter/key layout, spelled out once more by hand.
RECA_TEST(philox_u32_layout) {
  const uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
  for (uint64_t index : {0ull, 1ull, 3ull, 4ull, 7ull, 0x1234567890ull, ~0ull}) {
    const uint64_t blk = index / 4;
    const uint32_t ctr[4] = {uint32_t(blk), uint32_t(blk >> 32), uint32_t(stream), uint32_t(stream >> 32)};
    const uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    uint32_t out[4];
    philox4x32_10(ctr, key, out);
    expect_true(philox_u32(seed, stream, index) == out[index % 4],
                "philox_u32 layout at index " + std::to_string(index));
  }
}

// Uniforms: strictly inside (0, 1), on the grid (2k+1)·2^-24, moments of U(0,1).
RECA_TEST(philox_uniform_range_and_moments) {
  const int64_t n = 1 << 21;
  std::vector<float> u(n);
  philox_fill_uniform(42, 7, u.data(), n);
  double s = 0, s2 = 0;
  bool in_range = true, on_grid = true;
  for (float v : u) {
    in_range &= v > 0.0f && v < 1.0f;
    const double k = double(v) * 16777216.0;  // 2k+1, an odd integer
    on_grid &= k == std::floor(k) && std::fmod(k, 2.0) == 1.0;
    s += v;
    s2 += double(v) * v;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  expect_true(in_range, "uniform outside (0, 1)");
  expect_true(on_grid, "uniform not of the form (2k+1)·2^-24");
  // Standard errors: mean 0.29/√n = 2e-4, variance ~6e-5 (tolerances 5σ).
  expect_true(std::fabs(mean - 0.5) < 1e-3, "uniform mean " + std::to_string(mean));
  expect_true(std::fabs(var - 1.0 / 12) < 3e-4, "uniform variance " + std::to_string(var));
  // Extremes map as documented.
  expect_true(philox_bits_to_uniform(0) == 5.9604644775390625e-08f, "uniform of 0 bits");
  expect_true(philox_bits_to_uniform(0xffffffffu) == 1.0f - 5.9604644775390625e-08f,
              "uniform of all-ones bits");
}

// Our log and cos against double-precision libm over the whole uniform grid
// (sampled), plus the extremes.
RECA_TEST(philox_log_cos_accuracy) {
  double worst_log = 0, worst_cos = 0;
  auto check = [&](float u) {
    const double l = std::log(double(u));
    const double got = philox_detail::log_rn(u);
    worst_log = std::fmax(worst_log, std::fabs(got - l) / std::fabs(l == 0 ? 1 : l));
    const double c = std::cos(2 * M_PI * double(u));
    worst_cos = std::fmax(worst_cos, std::fabs(double(philox_detail::cos2pi_unit(u)) - c));
  };
  for (uint32_t k = 0; k < (1u << 23); k += 7) check(float(2 * k + 1) * 5.9604644775390625e-08f);
  for (uint32_t k = 0; k < 1000; ++k) {
    check(float(2 * k + 1) * 5.9604644775390625e-08f);
    check(float(2 * ((1u << 23) - 1 - k) + 1) * 5.9604644775390625e-08f);
  }
  // ln near 1 is tiny: the relative error there is the hard case (m − 1 exact
  // keeps it small). Tolerances: a few float ulps.
  expect_true(worst_log < 4e-7, "log_rn worst relative error " + std::to_string(worst_log));
  expect_true(worst_cos < 4e-7, "cos2pi_unit worst absolute error " + std::to_string(worst_cos));
  std::printf("  log_rn worst rel err %.3g, cos2pi_unit worst abs err %.3g\n", worst_log, worst_cos);
}

// Normals: moments of N(0,1) and agreement with Box–Muller in double on the
// same uniforms.
RECA_TEST(philox_normal_moments_and_accuracy) {
  const int64_t n = 1 << 21;
  std::vector<float> z(n);
  philox_fill_normal(1234, 5, z.data(), n);
  double s = 0, s2 = 0, s4 = 0, worst = 0;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const double v = z[i];
    finite &= std::isfinite(v);
    s += v;
    s2 += v * v;
    s4 += v * v * v * v;
    const double u1 = philox_uniform(1234, 5, 2 * uint64_t(i));
    const double u2 = philox_uniform(1234, 5, 2 * uint64_t(i) + 1);
    const double want = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    worst = std::fmax(worst, std::fabs(v - want) / std::fmax(1.0, std::fabs(want)));
  }
  const double mean = s / n, var = s2 / n - mean * mean, kurt = (s4 / n) / (var * var);
  expect_true(finite, "normal not finite");
  // Standard errors at n = 2^21: mean 7e-4, variance 1e-3, kurtosis ~0.017.
  expect_true(std::fabs(mean) < 4e-3, "normal mean " + std::to_string(mean));
  expect_true(std::fabs(var - 1) < 6e-3, "normal variance " + std::to_string(var));
  expect_true(std::fabs(kurt - 3) < 0.1, "normal kurtosis " + std::to_string(kurt));
  // Measured 1.9e-7; a coefficient off in its 3rd digit moves this past 1e-6.
  expect_true(worst < 1e-6, "normal vs double Box–Muller: worst error " + std::to_string(worst));
  std::printf("  normal: mean %.2e var %.5f kurtosis %.4f, worst err vs double %.3g\n", mean, var,
              kurt, worst);
}

RECA_TEST(philox_permutation_is_uniform) {
  // Every output is a permutation (sizes include 1, 2, odd and large ones).
  for (int64_t n : {0, 1, 2, 3, 17, 1000, 100003}) {
    std::vector<int32_t> p(n);
    philox_permutation(99, uint64_t(n), n, p.data());
    std::vector<char> seen(n, 0);
    bool ok = true;
    for (int32_t v : p) {
      ok &= v >= 0 && v < n && !seen[v];
      if (v >= 0 && v < n) seen[v] = 1;
    }
    expect_true(ok, "philox_permutation n=" + std::to_string(n) + " is not a permutation");
  }
  // Positions: count[i][pos] over many streams is uniform. n = 7 (not a power
  // of two: exercises the rejection path). Chi-square with (n−1)² = 36 degrees
  // of freedom: mean 36, sd 8.5; the bound is ~6 sd out.
  const int n = 7, trials = 70000;
  std::vector<double> count(n * n, 0);
  std::vector<int32_t> p(n);
  for (int t = 0; t < trials; ++t) {
    philox_permutation(2024, uint64_t(t), n, p.data());
    for (int pos = 0; pos < n; ++pos) count[p[pos] * n + pos] += 1;
  }
  const double expect = double(trials) / n;
  double chi2 = 0;
  for (double c : count) chi2 += (c - expect) * (c - expect) / expect;
  expect_true(chi2 < 90, "permutation positions chi-square " + std::to_string(chi2));
  // Bounded integers: small ranges hit every value about equally.
  uint64_t next = 0;
  std::vector<double> hist(5, 0);
  for (int i = 0; i < 50000; ++i) hist[philox_bounded(7, 8, &next, 5)] += 1;
  double chi2b = 0;
  for (double c : hist) chi2b += (c - 10000) * (c - 10000) / 10000;
  expect_true(chi2b < 30, "philox_bounded(5) chi-square " + std::to_string(chi2b));  // 4 dof
  std::printf("  permutation chi2 %.1f (36 dof), bounded chi2 %.1f (4 dof)\n", chi2, chi2b);
}

// Bulk fills equal per-index calls at any offset (odd ones included) and do
// not depend on the thread count.
RECA_TEST(philox_fill_matches_per_index_and_threads) {
  const int prev = num_threads();
  for (uint64_t offset : {0ull, 1ull, 3ull, 1000001ull}) {
    for (int64_t n : {1, 2, 5, 4097, 100001}) {
      std::vector<float> u1(n), u4(n), z1(n), z4(n);
      set_num_threads(1);
      philox_fill_uniform(3, 4, u1.data(), n, offset);
      philox_fill_normal(3, 4, z1.data(), n, offset);
      set_num_threads(4);
      philox_fill_uniform(3, 4, u4.data(), n, offset);
      philox_fill_normal(3, 4, z4.data(), n, offset);
      const std::string tag = "fill n=" + std::to_string(n) + " offset=" + std::to_string(offset);
      expect_true(std::memcmp(u1.data(), u4.data(), n * 4) == 0, tag + " uniform: threads 1 vs 4");
      expect_true(std::memcmp(z1.data(), z4.data(), n * 4) == 0, tag + " normal: threads 1 vs 4");
      bool same_u = true, same_z = true;
      for (int64_t k = 0; k < n; ++k) {
        const float u = philox_uniform(3, 4, offset + k), z = philox_normal(3, 4, offset + k);
        same_u &= std::memcmp(&u, &u1[k], 4) == 0;
        same_z &= std::memcmp(&z, &z1[k], 4) == 0;
      }
      expect_true(same_u, tag + " uniform differs from per-index calls");
      expect_true(same_z, tag + " normal differs from per-index calls");
    }
  }
  set_num_threads(prev);
}

// Pinned draws: any change to the counter layout, the uniform mapping, the
// log/cos polynomials or the permutation's draw order shows up here. Another
// implementation (the GPU, a PyTorch script) can check itself against these.
RECA_TEST(philox_pinned_values) {
  struct Pin {
    uint64_t index;
    uint32_t u_bits, z_bits;
  };
  const Pin pins[] = {{0, 0x3c24cdc0, 0x40082c1a},       {1, 0x3e0147a4, 0xbed108d7},
                      {2, 0x3e6da2c4, 0x40015d4b},       {3, 0x3f362c41, 0x3ea52dfb},
                      {1000001, 0x3f631faf, 0xbeda5bc8}};
  for (const Pin& p : pins) {
    const float u = philox_uniform(42, 1, p.index), z = philox_normal(42, 1, p.index);
    uint32_t ub, zb;
    std::memcpy(&ub, &u, 4);
    std::memcpy(&zb, &z, 4);
    expect_true(ub == p.u_bits, "philox_uniform(42, 1, " + std::to_string(p.index) + ") = " + hex(ub));
    expect_true(zb == p.z_bits, "philox_normal(42, 1, " + std::to_string(p.index) + ") = " + hex(zb));
  }
  int32_t perm[10];
  philox_permutation(42, 1, 10, perm);
  const int32_t want[10] = {7, 2, 3, 5, 6, 9, 4, 8, 1, 0};
  expect_true(std::memcmp(perm, want, sizeof want) == 0, "philox_permutation(42, 1, 10) changed");
}
