#include <cstring>

#include "core/threadpool.h"
#include "cpu/residual.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {
const int64_t kSizes[] = {1, 2, 7, 15, 16, 17, 31, 33, 1000, 65536 + 3, 200001};
}  // namespace

// add and scale are exact (tolerance 0); axpy may fuse the multiply-add, so
// rtol 1e-6 / atol 1e-7 against the reference.
RECA_TEST(residual_match_reference) {
  Rand rng(31);
  for (int64_t n : kSizes) {
    std::vector<float> a(n), b(n), y0(n);
    rng.fill_normal(a.data(), n);
    rng.fill_normal(b.data(), n);
    rng.fill_normal(y0.data(), n);
    std::vector<float> add_ref(n), axpy_ref = y0, axpy1_ref = y0, scale_ref = a;
    cpu::ref::residual_add(add_ref.data(), a.data(), b.data(), n);
    cpu::ref::residual_axpy(axpy_ref.data(), 0.37f, a.data(), n);
    cpu::ref::residual_axpy(axpy1_ref.data(), 1.0f, a.data(), n);
    cpu::ref::residual_scale(scale_ref.data(), -1.75f, n);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("residual ") + isa_name(isa) + " n=" + std::to_string(n);
      Guarded out(n);
      cpu::residual_add(out.data(), a.data(), b.data(), n);
      expect_close(tag + " add", out.data(), add_ref.data(), n, 0, 0);
      expect_guards(out, tag + " add");

      Guarded inplace(n);  // out aliases a
      std::memcpy(inplace.data(), a.data(), n * sizeof(float));
      cpu::residual_add(inplace.data(), inplace.data(), b.data(), n);
      expect_close(tag + " add in place", inplace.data(), add_ref.data(), n, 0, 0);
      expect_guards(inplace, tag + " add in place");

      Guarded y(n), y1(n);
      std::memcpy(y.data(), y0.data(), n * sizeof(float));
      std::memcpy(y1.data(), y0.data(), n * sizeof(float));
      cpu::residual_axpy(y.data(), 0.37f, a.data(), n);
      cpu::residual_axpy(y1.data(), 1.0f, a.data(), n);
      expect_close(tag + " axpy", y.data(), axpy_ref.data(), n, 1e-6, 1e-7);
      expect_close(tag + " axpy alpha=1", y1.data(), axpy1_ref.data(), n, 0, 0);
      expect_guards(y, tag + " axpy");
      expect_guards(y1, tag + " axpy alpha=1");

      Guarded s(n);
      std::memcpy(s.data(), a.data(), n * sizeof(float));
      cpu::residual_scale(s.data(), -1.75f, n);
      expect_close(tag + " scale", s.data(), scale_ref.data(), n, 0, 0);
      expect_guards(s, tag + " scale");
    });
  }
}

// The backward of out = a + b is the identity: da += dout, db += dout, done by
// residual_axpy(·, 1, dout). Checked here by finite differences of
// loss = Σ w ⊙ (a + b) (h 1e-5; 1e-6 + 1e-4·|num|).
RECA_TEST(residual_add_backward_is_axpy_identity) {
  Rand rng(32);
  const int64_t n = 23;
  std::vector<float> a(n), b(n), w(n);
  rng.fill_normal(a.data(), n);
  rng.fill_normal(b.data(), n);
  rng.fill_normal(w.data(), n);
  const std::vector<double> wd = to_double(w.data(), n);
  for_each_isa([&](Isa isa) {
    std::vector<float> da(n, 0.0f), db(n, 0.0f);
    cpu::residual_axpy(da.data(), 1.0f, w.data(), n);
    cpu::residual_axpy(db.data(), 1.0f, w.data(), n);
    std::vector<double> ad = to_double(a.data(), n), bd = to_double(b.data(), n);
    auto loss = [&](const std::vector<double>& x, const std::vector<double>& y) {
      std::vector<double> o(n);
      cpu::ref::residual_add(o.data(), x.data(), y.data(), n);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += o[i] * wd[i];
      return s;
    };
    const std::string tag = std::string("residual fd ") + isa_name(isa);
    fd_check(tag + " da", ad, [&](const std::vector<double>& v) { return loss(v, bd); }, da.data(), 1000, rng);
    fd_check(tag + " db", bd, [&](const std::vector<double>& v) { return loss(ad, v); }, db.data(), 1000, rng);
  });
}

RECA_TEST(residual_deterministic_across_thread_counts) {
  Rand rng(33);
  const int64_t n = 200001;
  std::vector<float> a(n), b(n);
  rng.fill_normal(a.data(), n);
  rng.fill_normal(b.data(), n);
  for_each_isa([&](Isa isa) {
    expect_same_across_threads(std::string("residual ") + isa_name(isa), [&] {
      std::vector<float> out(n), y = b, s = a;
      cpu::residual_add(out.data(), a.data(), b.data(), n);
      cpu::residual_axpy(y.data(), 0.37f, a.data(), n);
      cpu::residual_scale(s.data(), 0.3f, n);
      out.insert(out.end(), y.begin(), y.end());
      out.insert(out.end(), s.begin(), s.end());
      return out;
    });
  });
}
