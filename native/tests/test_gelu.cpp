#include "cpu/gelu.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

RECA_TEST(gelu_forward_backward_match_reference) {
  Rand rng(11);
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 16}, {17, 33}, {64, 256}, {9, 1025}};
  for (auto& s : shapes) {
    const int64_t rows = s[0], cols = s[1], n = rows * cols;
    std::vector<float> x(n), bias(cols), dy(n);
    rng.fill_normal(x.data(), n, 2.0f);
    rng.fill_normal(bias.data(), cols);
    rng.fill_normal(dy.data(), n);
    for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
      std::vector<float> y_ref(n), dx_ref(n, 0.5f), db_ref(cols, 0.25f);
      cpu::ref::gelu_forward(y_ref.data(), x.data(), b, rows, cols);
      cpu::ref::gelu_backward(dx_ref.data(), db_ref.data(), x.data(), b, dy.data(), rows, cols);
      for_each_isa([&](Isa isa) {
        const std::string tag = std::string("gelu ") + isa_name(isa) + " " + shape_str({rows, cols}) +
                                (b ? " bias" : "");
        Guarded y(n), dx(n, 0.5f), db(cols, 0.25f);
        cpu::gelu_forward(y.data(), x.data(), b, rows, cols);
        expect_close(tag + " forward", y.data(), y_ref.data(), n, 1e-5, 1e-6);
        cpu::gelu_backward(dx.data(), db.data(), x.data(), b, dy.data(), rows, cols);
        expect_close(tag + " dx", dx.data(), dx_ref.data(), n, 1e-5, 1e-5);
        expect_close(tag + " dbias", db.data(), db_ref.data(), cols, 1e-4, 1e-4);
        expect_guards(y, tag + " y");
        expect_guards(dx, tag + " dx");
        expect_guards(db, tag + " dbias");
      });
    }
  }
}

RECA_TEST(gelu_backward_finite_differences) {
  Rand rng(12);
  const int64_t rows = 4, cols = 13, n = rows * cols;
  std::vector<float> x(n), bias(cols), dy(n);
  rng.fill_normal(x.data(), n, 1.5f);
  rng.fill_normal(bias.data(), cols);
  rng.fill_normal(dy.data(), n);
  const std::vector<double> dyd = to_double(dy.data(), n);
  // loss = Σ dy ⊙ gelu(x + b), evaluated in double by the reference.
  auto loss_of = [&](const std::vector<double>& xd, const std::vector<double>& bd) {
    std::vector<double> y(n);
    cpu::ref::gelu_forward(y.data(), xd.data(), bd.data(), rows, cols);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += y[i] * dyd[i];
    return s;
  };
  for_each_isa([&](Isa isa) {
    std::vector<float> dx(n, 0.0f), db(cols, 0.0f);
    cpu::gelu_backward(dx.data(), db.data(), x.data(), bias.data(), dy.data(), rows, cols);
    std::vector<double> xd = to_double(x.data(), n), bd = to_double(bias.data(), cols);
    const std::string tag = std::string("gelu fd ") + isa_name(isa);
    fd_check(tag + " dx", xd, [&](const std::vector<double>& v) { return loss_of(v, bd); }, dx.data(), 1000, rng);
    fd_check(tag + " dbias", bd, [&](const std::vector<double>& v) { return loss_of(xd, v); }, db.data(), 1000, rng);
  });
}
