#include <cstring>

#include "core/threadpool.h"
#include "cpu/layernorm.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

// Tolerances (fast vs float reference, which sums in another order):
// y, dx rtol 1e-5 / atol 1e-5; mean, rstd rtol 1e-5 / atol 1e-6; dw, db 1e-4 / 1e-4.
RECA_TEST(layernorm_forward_backward_match_reference) {
  Rand rng(21);
  const int64_t shapes[][2] = {{1, 1},  {1, 2},   {3, 7},   {5, 15},  {5, 16},   {4, 17},
                               {2, 31}, {33, 64}, {70, 33}, {64, 256}, {9, 1025}, {100, 48}};
  for (auto& s : shapes) {
    const int64_t rows = s[0], C = s[1], n = rows * C;
    std::vector<float> x(n), w(C), b(C), dy(n);
    rng.fill_normal(x.data(), n, 2.0f);
    for (int64_t i = 0; i < n; ++i) x[i] += 3.0f;  // an offset, as real activations have
    rng.fill_normal(w.data(), C);
    rng.fill_normal(b.data(), C);
    rng.fill_normal(dy.data(), n);
    std::vector<float> y_ref(n), mean_ref(rows), rstd_ref(rows);
    cpu::ref::layernorm_forward(y_ref.data(), mean_ref.data(), rstd_ref.data(), x.data(), w.data(),
                                b.data(), rows, C);
    std::vector<float> dx_ref(n, 0.5f), dw_ref(C, 0.25f), db_ref(C, -0.125f);
    cpu::ref::layernorm_backward(dx_ref.data(), dw_ref.data(), db_ref.data(), dy.data(), x.data(),
                                 w.data(), mean_ref.data(), rstd_ref.data(), rows, C);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("layernorm ") + isa_name(isa) + " " + shape_str({rows, C});
      Guarded y(n), mean(rows), rstd(rows);
      cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, C);
      expect_close(tag + " y", y.data(), y_ref.data(), n, 1e-5, 1e-5);
      expect_close(tag + " mean", mean.data(), mean_ref.data(), rows, 1e-5, 1e-6);
      expect_close(tag + " rstd", rstd.data(), rstd_ref.data(), rows, 1e-5, 1e-6);
      expect_guards(y, tag + " y");
      expect_guards(mean, tag + " mean");
      expect_guards(rstd, tag + " rstd");

      // Null mean/rstd (inference): same y.
      Guarded y2(n);
      cpu::layernorm_forward(y2.data(), nullptr, nullptr, x.data(), w.data(), b.data(), rows, C);
      expect_true(std::memcmp(y2.data(), y.data(), n * sizeof(float)) == 0, tag + " y without stats");
      expect_guards(y2, tag + " y without stats");

      // In place (y aliases x).
      Guarded yi(n);
      std::memcpy(yi.data(), x.data(), n * sizeof(float));
      cpu::layernorm_forward(yi.data(), nullptr, nullptr, yi.data(), w.data(), b.data(), rows, C);
      expect_true(std::memcmp(yi.data(), y.data(), n * sizeof(float)) == 0, tag + " y in place");

      Guarded dx(n, 0.5f), dw(C, 0.25f), db(C, -0.125f);
      cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                              mean_ref.data(), rstd_ref.data(), rows, C);
      expect_close(tag + " dx", dx.data(), dx_ref.data(), n, 1e-5, 1e-5);
      expect_close(tag + " dw", dw.data(), dw_ref.data(), C, 1e-4, 1e-4);
      expect_close(tag + " db", db.data(), db_ref.data(), C, 1e-4, 1e-4);
      expect_guards(dx, tag + " dx");
      expect_guards(dw, tag + " dw");
      expect_guards(db, tag + " db");

      // Each gradient alone (the others null) gives the same bits.
      Guarded dx1(n, 0.5f), dw1(C, 0.25f), db1(C, -0.125f);
      cpu::layernorm_backward(dx1.data(), nullptr, nullptr, dy.data(), x.data(), w.data(),
                              mean_ref.data(), rstd_ref.data(), rows, C);
      cpu::layernorm_backward(nullptr, dw1.data(), nullptr, dy.data(), x.data(), w.data(),
                              mean_ref.data(), rstd_ref.data(), rows, C);
      cpu::layernorm_backward(nullptr, nullptr, db1.data(), dy.data(), x.data(), w.data(),
                              mean_ref.data(), rstd_ref.data(), rows, C);
      expect_true(std::memcmp(dx1.data(), dx.data(), n * sizeof(float)) == 0, tag + " dx alone");
      expect_true(std::memcmp(dw1.data(), dw.data(), C * sizeof(float)) == 0, tag + " dw alone");
      expect_true(std::memcmp(db1.data(), db.data(), C * sizeof(float)) == 0, tag + " db alone");
      expect_guards(dx1, tag + " dx alone");
      expect_guards(dw1, tag + " dw alone");
      expect_guards(db1, tag + " db alone");
    });
  }
}

// Rows with a large offset and a small spread: a one-pass E[x²] − E[x]² in float
// would lose the variance entirely here. Against the double reference:
// y rtol 1e-3 / atol 1e-3 (the float input itself carries ~3e-5 of the spread).
RECA_TEST(layernorm_large_offset_rows) {
  Rand rng(22);
  const int64_t rows = 6, C = 200, n = rows * C;
  std::vector<float> x(n), w(C, 1.0f), b(C, 0.0f);
  for (int64_t i = 0; i < n; ++i) x[i] = 1000.0f + rng.normal(0.05f);
  std::vector<double> yd(n), md(rows), rd(rows);
  const std::vector<double> xd = to_double(x.data(), n), wd = to_double(w.data(), C),
                            bd = to_double(b.data(), C);
  cpu::ref::layernorm_forward(yd.data(), md.data(), rd.data(), xd.data(), wd.data(), bd.data(), rows, C);
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("layernorm offset ") + isa_name(isa);
    Guarded y(n), mean(rows), rstd(rows);
    cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, C);
    expect_close(tag + " y", y.data(), yd.data(), n, 1e-3, 1e-3);
    expect_close(tag + " rstd", rstd.data(), rd.data(), rows, 1e-3, 0.0);
  });
}

// Finite differences of loss = Σ dy ⊙ LN(x; w, b), the loss in double through
// the reference forward (h 1e-5; |num − ana| <= 1e-6 + 1e-4·|num|).
RECA_TEST(layernorm_backward_finite_differences) {
  Rand rng(23);
  const int64_t rows = 5, C = 13, n = rows * C;
  std::vector<float> x(n), w(C), b(C), dy(n);
  rng.fill_normal(x.data(), n, 1.5f);
  rng.fill_normal(w.data(), C);
  rng.fill_normal(b.data(), C);
  rng.fill_normal(dy.data(), n);
  const std::vector<double> dyd = to_double(dy.data(), n);
  auto loss_of = [&](const std::vector<double>& xd, const std::vector<double>& wd,
                     const std::vector<double>& bd) {
    std::vector<double> y(n);
    cpu::ref::layernorm_forward<double>(y.data(), nullptr, nullptr, xd.data(), wd.data(), bd.data(),
                                        rows, C);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += y[i] * dyd[i];
    return s;
  };
  for_each_isa([&](Isa isa) {
    std::vector<float> y(n), mean(rows), rstd(rows), dx(n, 0.0f), dw(C, 0.0f), db(C, 0.0f);
    cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, C);
    cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                            mean.data(), rstd.data(), rows, C);
    std::vector<double> xd = to_double(x.data(), n), wd = to_double(w.data(), C),
                        bd = to_double(b.data(), C);
    const std::string tag = std::string("layernorm fd ") + isa_name(isa);
    fd_check(tag + " dx", xd, [&](const std::vector<double>& v) { return loss_of(v, wd, bd); },
             dx.data(), 1000, rng);
    fd_check(tag + " dw", wd, [&](const std::vector<double>& v) { return loss_of(xd, v, bd); },
             dw.data(), 1000, rng);
    fd_check(tag + " db", bd, [&](const std::vector<double>& v) { return loss_of(xd, wd, v); },
             db.data(), 1000, rng);
  });
}

// Bitwise identical at 1, 2 and 3 threads (several row blocks and column ranges).
RECA_TEST(layernorm_deterministic_across_thread_counts) {
  Rand rng(24);
  const int64_t rows = 203, C = 333, n = rows * C;
  std::vector<float> x(n), w(C), b(C), dy(n);
  rng.fill_normal(x.data(), n);
  rng.fill_normal(w.data(), C);
  rng.fill_normal(b.data(), C);
  rng.fill_normal(dy.data(), n);
  for_each_isa([&](Isa isa) {
    expect_same_across_threads(std::string("layernorm ") + isa_name(isa), [&] {
      std::vector<float> y(n), mean(rows), rstd(rows), dx(n, 0.5f), dw(C, 0.25f), db(C, 0.0f);
      cpu::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), rows, C);
      cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(),
                              mean.data(), rstd.data(), rows, C);
      std::vector<float> all = y;
      for (auto* v : {&mean, &rstd, &dx, &dw, &db}) all.insert(all.end(), v->begin(), v->end());
      return all;
    });
  });
}
