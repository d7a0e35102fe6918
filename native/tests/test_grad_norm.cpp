#include <cmath>
#include <cstring>
#include <limits>

#include "core/threadpool.h"
#include "cpu/grad_norm.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

// Against the reference (one double sum): rtol 1e-6.
RECA_TEST(grad_norm_matches_reference) {
  Rand rng(61);
  const int64_t sizes[] = {0, 1, 2, 7, 15, 16, 17, 255, 256, 257, 4095, 4096, 4097, 100003, 1000000};
  for (int64_t n : sizes) {
    std::vector<float> x(n);
    rng.fill_normal(x.data(), n, 0.01f);
    bool ref_bad = true;
    const float want = cpu::ref::grad_norm(x.data(), n, &ref_bad);
    expect_true(!ref_bad, "grad_norm reference flags finite input");
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("grad_norm ") + isa_name(isa) + " n=" + std::to_string(n);
      bool bad = true;
      const float got = cpu::grad_norm(x.data(), n, &bad);
      expect_close(tag, &got, &want, 1, 1e-6, 0);
      expect_true(!bad, tag + ": finite input flagged non-finite");
      expect_true(cpu::grad_norm(x.data(), n, nullptr) == got, tag + ": null flag changes the norm");
    });
  }
}

// Hand value: 10000 elements of 3 (then -3) -> norm 300 exactly.
RECA_TEST(grad_norm_known_value) {
  std::vector<float> x(10000, 3.0f);
  for (int64_t i = 0; i < 10000; i += 2) x[i] = -3.0f;
  for_each_isa([&](Isa isa) {
    const float got = cpu::grad_norm(x.data(), 10000, nullptr);
    expect_true(got == 300.0f, std::string("grad_norm known ") + isa_name(isa) + ": " + std::to_string(got));
  });
}

// A single NaN, +Inf or -Inf anywhere (block starts, tails, the last element)
// sets the flag; the norm is then NaN.
RECA_TEST(grad_norm_detects_nonfinite) {
  Rand rng(62);
  const float bad_values[3] = {std::numeric_limits<float>::quiet_NaN(),
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
  for (int64_t n : {1, 17, 4097, 9000}) {
    std::vector<float> x(n);
    rng.fill_normal(x.data(), n);
    for (int64_t pos : {int64_t(0), n / 2, n - 1, int64_t(4096)}) {
      if (pos >= n) continue;
      for (float v : bad_values) {
        std::vector<float> y = x;
        y[pos] = v;
        bool rbad = false;
        cpu::ref::grad_norm(y.data(), n, &rbad);
        expect_true(rbad, "grad_norm reference misses a non-finite value");
        for_each_isa([&](Isa isa) {
          const std::string tag = std::string("grad_norm nonfinite ") + isa_name(isa) + " n=" +
                                  std::to_string(n) + " pos=" + std::to_string(pos) + " v=" + std::to_string(v);
          bool bad = false;
          const float got = cpu::grad_norm(y.data(), n, &bad);
          expect_true(bad, tag + ": not flagged");
          expect_true(std::isnan(got), tag + ": norm not NaN");
          const float* p = y.data();
          bad = false;
          cpu::grad_norm_segments(&p, &n, 1, &bad);
          expect_true(bad, tag + ": not flagged (segments)");
        });
      }
    }
  }
}

// Segments from separate buffers, empty ones included; against the reference
// (rtol 1e-6) and against the norm of the concatenation (rtol 1e-6: other
// block boundaries, same value to rounding).
RECA_TEST(grad_norm_segments_match_reference) {
  Rand rng(63);
  const int64_t sizes[] = {0, 1, 5000, 17, 0, 4096, 8193, 3, 300000};
  const int64_t count = 9;
  std::vector<std::vector<float>> bufs;
  std::vector<float> flat;
  for (int64_t s : sizes) {
    bufs.emplace_back(s);
    rng.fill_normal(bufs.back().data(), s, 0.1f);
    flat.insert(flat.end(), bufs.back().begin(), bufs.back().end());
  }
  std::vector<const float*> ptrs;
  for (auto& b : bufs) ptrs.push_back(b.data());
  const float want = cpu::ref::grad_norm_segments(ptrs.data(), sizes, count, nullptr);
  const float want_flat = cpu::ref::grad_norm(flat.data(), static_cast<int64_t>(flat.size()), nullptr);
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("grad_norm segments ") + isa_name(isa);
    bool bad = true;
    const float got = cpu::grad_norm_segments(ptrs.data(), sizes, count, &bad);
    expect_close(tag, &got, &want, 1, 1e-6, 0);
    expect_close(tag + " vs flat", &got, &want_flat, 1, 1e-6, 0);
    expect_true(!bad, tag + ": finite input flagged");
    for (int64_t c : {int64_t(0), int64_t(1), int64_t(5)}) {  // prefixes, incl. none and only-empty
      const float g = cpu::grad_norm_segments(ptrs.data(), sizes, c, nullptr);
      const float w = cpu::ref::grad_norm_segments(ptrs.data(), sizes, c, nullptr);
      expect_close(tag + " first " + std::to_string(c), &g, &w, 1, 1e-6, 0);
    }
  });
}

RECA_TEST(grad_norm_deterministic_across_thread_counts) {
  Rand rng(64);
  const int64_t n = 1000003;
  std::vector<float> x(n);
  rng.fill_normal(x.data(), n);
  const int64_t sizes[4] = {70001, 5, 0, 900000};
  const float* ptrs[4] = {x.data(), x.data() + 70001, x.data(), x.data() + 100000};
  for_each_isa([&](Isa isa) {
    expect_same_across_threads(std::string("grad_norm ") + isa_name(isa), [&] {
      return std::vector<float>{cpu::grad_norm(x.data(), n, nullptr),
                                cpu::grad_norm_segments(ptrs, sizes, 4, nullptr)};
    });
  });
}
