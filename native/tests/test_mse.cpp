#include <cstring>

#include "core/threadpool.h"
#include "cpu/mse.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

// Forward vs the reference (double sum): rtol 1e-6. Backward: rtol 1e-6 / atol 1e-8
// (the fast path may fuse the multiply-add).
RECA_TEST(mse_forward_backward_match_reference) {
  Rand rng(41);
  const int64_t sizes[] = {1, 2, 7, 15, 16, 17, 255, 256, 257, 4095, 4096, 4097, 10000, 100003};
  for (int64_t n : sizes) {
    std::vector<float> pred(n), target(n), d0(n);
    rng.fill_normal(pred.data(), n);
    rng.fill_normal(target.data(), n);
    rng.fill_normal(d0.data(), n, 0.01f);
    const float loss_ref = cpu::ref::mse_forward(pred.data(), target.data(), n);
    std::vector<float> dref = d0;
    cpu::ref::mse_backward(dref.data(), pred.data(), target.data(), 0.7f, n);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("mse ") + isa_name(isa) + " n=" + std::to_string(n);
      const float loss = cpu::mse_forward(pred.data(), target.data(), n);
      expect_close(tag + " loss", &loss, &loss_ref, 1, 1e-6, 0);
      Guarded d(n);
      std::memcpy(d.data(), d0.data(), n * sizeof(float));
      cpu::mse_backward(d.data(), pred.data(), target.data(), 0.7f, n);
      expect_close(tag + " dpred", d.data(), dref.data(), n, 1e-6, 1e-8);
      expect_guards(d, tag + " dpred");
    });
  }
}

// Hand values: pred = target + 0.5 everywhere -> loss 0.25 exactly; n = 0 -> 0.
RECA_TEST(mse_known_values) {
  const int64_t n = 1001;
  std::vector<float> target(n), pred(n);
  // Small integers + 0.5: every difference is exactly 0.5 in float.
  for (int64_t i = 0; i < n; ++i) target[i] = static_cast<float>(i % 7), pred[i] = target[i] + 0.5f;
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("mse known ") + isa_name(isa);
    const float loss = cpu::mse_forward(pred.data(), target.data(), n);
    expect_true(loss == 0.25f, tag + ": loss " + std::to_string(loss) + " != 0.25");
    expect_true(cpu::mse_forward(pred.data(), target.data(), 0) == 0.0f, tag + ": n=0 loss != 0");
    std::vector<float> d(n, 0.0f);
    cpu::mse_backward(d.data(), pred.data(), target.data(), 2.0f, n);
    // 2 · 2 · 0.5 / 1001
    const float want = static_cast<float>(2.0 / 1001.0);
    expect_close(tag + " dpred", d.data(), std::vector<float>(n, want).data(), n, 1e-6, 0);
  });
}

// Finite differences of λ · mse(pred, target) through the double reference
// (h 1e-5; 1e-6 + 1e-4·|num|).
RECA_TEST(mse_backward_finite_differences) {
  Rand rng(42);
  const int64_t n = 37;
  const float lambda = 0.6f;
  std::vector<float> pred(n), target(n);
  rng.fill_normal(pred.data(), n);
  rng.fill_normal(target.data(), n);
  const std::vector<double> td = to_double(target.data(), n);
  for_each_isa([&](Isa isa) {
    std::vector<float> d(n, 0.0f);
    cpu::mse_backward(d.data(), pred.data(), target.data(), lambda, n);
    std::vector<double> pd = to_double(pred.data(), n);
    fd_check(std::string("mse fd ") + isa_name(isa) + " dpred", pd,
             [&](const std::vector<double>& v) {
               return static_cast<double>(lambda) * cpu::ref::mse_forward(v.data(), td.data(), n);
             },
             d.data(), 1000, rng);
  });
}

RECA_TEST(mse_deterministic_across_thread_counts) {
  Rand rng(43);
  const int64_t n = 300007;
  std::vector<float> pred(n), target(n);
  rng.fill_normal(pred.data(), n);
  rng.fill_normal(target.data(), n);
  for_each_isa([&](Isa isa) {
    expect_same_across_threads(std::string("mse ") + isa_name(isa), [&] {
      std::vector<float> d(n, 0.0f);
      cpu::mse_backward(d.data(), pred.data(), target.data(), 0.5f, n);
      d.push_back(cpu::mse_forward(pred.data(), target.data(), n));
      return d;
    });
  });
}
