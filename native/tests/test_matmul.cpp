#include <chrono>
#include <cstring>
#include <thread>

#include "core/threadpool.h"
#include "cpu/gelu.h"
#include "cpu/matmul.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {

// Tolerance of a float K-sum of products of N(0,1) values against the double
// reference: the rounding error grows with K.
double matmul_atol(int64_t K) { return 1e-6 * (8 + static_cast<double>(K) / 4); }
constexpr double kRtol = 1e-5;

struct Shape {
  int64_t M, N, K;
};

// Shapes around the tile sizes (AVX-512 14x32, AVX2 6x16, scalar 4x4), the
// 256-deep K blocks and the direct-path / threading thresholds.
const Shape kShapes[] = {
    {1, 1, 1},     {1, 1, 7},     {3, 5, 2},      {7, 9, 13},     {13, 31, 33},   {14, 32, 64},
    {15, 33, 65},  {6, 16, 300},  {5, 17, 257},   {29, 63, 31},   {28, 64, 256},  {43, 95, 129},
    {57, 17, 600}, {16, 129, 255}, {131, 97, 300}, {200, 161, 513}, {97, 300, 40}, {1, 300, 200},
    {300, 1, 200}, {64, 64, 1}};

}  // namespace

RECA_TEST(matmul_matches_reference) {
  Rand rng(21);
  for (const Shape& s : kShapes) {
    const int64_t M = s.M, N = s.N, K = s.K;
    std::vector<float> A(M * K), B(K * N), bias(N), C0(M * N);
    rng.fill_normal(A.data(), M * K);
    rng.fill_normal(B.data(), K * N);
    rng.fill_normal(bias.data(), N);
    rng.fill_normal(C0.data(), M * N);
    const std::vector<double> Ad = to_double(A.data(), M * K), Bd = to_double(B.data(), K * N),
                              biasd = to_double(bias.data(), N);
    for (int mode = 0; mode < 16; ++mode) {
      const bool ta = mode & 1, tb = mode & 2, acc = mode & 4, with_bias = mode & 8;
      // The same buffers serve as [M,K] or [K,M]: only the interpretation changes.
      std::vector<double> want = to_double(C0.data(), M * N);
      cpu::ref::matmul(want.data(), Ad.data(), Bd.data(), with_bias ? biasd.data() : nullptr, M, N, K,
                       ta, tb, acc);
      for_each_isa([&](Isa isa) {
        const std::string tag = std::string("matmul ") + isa_name(isa) + " " + shape_str({M, N, K}) +
                                (ta ? " ta" : "") + (tb ? " tb" : "") + (acc ? " acc" : "") +
                                (with_bias ? " bias" : "");
        Guarded C(M * N);
        std::memcpy(C.data(), C0.data(), sizeof(float) * M * N);
        cpu::matmul(C.data(), A.data(), B.data(), with_bias ? bias.data() : nullptr, M, N, K, ta, tb, acc);
        expect_close(tag, C.data(), want.data(), M * N, kRtol, matmul_atol(K));
        expect_guards(C, tag);
      });
    }
  }
}

RECA_TEST(matmul_zero_k_gives_bias) {
  const int64_t M = 3, N = 5;
  std::vector<float> bias = {1, 2, 3, 4, 5}, C0(M * N, 0.5f);
  for_each_isa([&](Isa isa) {
    for (bool acc : {false, true}) {
      Guarded C(M * N, 0.5f);
      cpu::matmul(C.data(), nullptr, nullptr, bias.data(), M, N, 0, false, false, acc);
      std::vector<float> want(M * N);
      for (int64_t i = 0; i < M * N; ++i) want[i] = (acc ? 0.5f : 0.0f) + bias[i % N];
      expect_close(std::string("matmul K=0 ") + isa_name(isa) + (acc ? " acc" : ""), C.data(),
                   want.data(), M * N, 0, 0);
      expect_guards(C, "matmul K=0");
    }
  });
}

RECA_TEST(linear_forward_backward_match_reference) {
  Rand rng(22);
  const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {17, 33, 15}, {64, 256, 768}, {132, 100, 257}, {33, 300, 65}};
  for (auto& sh : shapes) {
    const int64_t M = sh[0], in = sh[1], out = sh[2];
    std::vector<float> x(M * in), W(out * in), b(out), dy(M * out), dx0(M * in), dW0(out * in), db0(out);
    for (auto* v : {&x, &W, &b, &dy, &dx0, &dW0, &db0}) rng.fill_normal(v->data(), v->size());
    std::vector<double> y_ref(M * out), dx_ref = to_double(dx0.data(), M * in),
                                        dW_ref = to_double(dW0.data(), out * in), db_ref = to_double(db0.data(), out);
    const auto xd = to_double(x.data(), M * in), Wd = to_double(W.data(), out * in),
               bd = to_double(b.data(), out), dyd = to_double(dy.data(), M * out);
    cpu::ref::linear_forward(y_ref.data(), xd.data(), Wd.data(), bd.data(), M, in, out);
    cpu::ref::linear_backward(dx_ref.data(), dW_ref.data(), db_ref.data(), dyd.data(), xd.data(), Wd.data(), M,
                              in, out);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("linear ") + isa_name(isa) + " " + shape_str({M, in, out});
      Guarded y(M * out), dx(M * in), dW(out * in), db(out);
      std::memcpy(dx.data(), dx0.data(), sizeof(float) * M * in);
      std::memcpy(dW.data(), dW0.data(), sizeof(float) * out * in);
      std::memcpy(db.data(), db0.data(), sizeof(float) * out);
      cpu::linear_forward(y.data(), x.data(), W.data(), b.data(), M, in, out);
      cpu::linear_backward(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), M, in, out);
      expect_close(tag + " y", y.data(), y_ref.data(), M * out, kRtol, matmul_atol(in));
      expect_close(tag + " dx", dx.data(), dx_ref.data(), M * in, kRtol, matmul_atol(out));
      expect_close(tag + " dW", dW.data(), dW_ref.data(), out * in, kRtol, matmul_atol(M));
      expect_close(tag + " db", db.data(), db_ref.data(), out, kRtol, matmul_atol(M));
      for (auto* g : {&y, &dx, &dW, &db}) expect_guards(*g, tag);
      // Null gradients are skipped; the others are unchanged by that.
      Guarded dx2(M * in), db2(out);
      std::memcpy(dx2.data(), dx0.data(), sizeof(float) * M * in);
      std::memcpy(db2.data(), db0.data(), sizeof(float) * out);
      cpu::linear_backward(dx2.data(), nullptr, db2.data(), dy.data(), x.data(), W.data(), M, in, out);
      expect_true(std::memcmp(dx2.data(), dx.data(), sizeof(float) * M * in) == 0, tag + " dx with dW null");
      expect_true(std::memcmp(db2.data(), db.data(), sizeof(float) * out) == 0, tag + " db with dW null");
      expect_guards(dx2, tag);
      expect_guards(db2, tag);
    });
  }
}

// The GELU epilogues: against the double reference, and bit for bit equal to the
// separate passes (matmul, then the GELU kernel) of the same ISA.
RECA_TEST(linear_gelu_fused_matches_reference_and_separate_passes) {
  Rand rng(23);
  // Direct path, edge tiles, several K blocks (1056 = 5 x ~212), the threaded split.
  const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {17, 33, 15}, {43, 95, 129}, {64, 256, 1024}, {132, 1056, 100}, {200, 161, 513}};
  for (auto& sh : shapes) {
    const int64_t M = sh[0], in = sh[1], out = sh[2];
    std::vector<float> x(M * in), W(out * in), b(out), dy(M * out), f_in(M * in), dW0(out * in), db0(out);
    for (auto* v : {&x, &W, &b, &dy, &f_in, &dW0, &db0}) rng.fill_normal(v->data(), v->size());
    const auto xd = to_double(x.data(), M * in), Wd = to_double(W.data(), out * in), bd = to_double(b.data(), out),
               dyd = to_double(dy.data(), M * out), fd = to_double(f_in.data(), M * in);
    std::vector<double> f_ref(M * out), g_ref(M * out), dxf_ref(M * in), dW_ref = to_double(dW0.data(), out * in),
                        db_ref = to_double(db0.data(), out);
    cpu::ref::linear_gelu_forward(f_ref.data(), g_ref.data(), xd.data(), Wd.data(), bd.data(), M, in, out);
    cpu::ref::linear_backward_gelu(dxf_ref.data(), dW_ref.data(), db_ref.data(), dyd.data(), xd.data(), Wd.data(),
                                   fd.data(), M, in, out);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("linear_gelu ") + isa_name(isa) + " " + shape_str({M, in, out});
      Guarded f(M * out), g(M * out), dxf(M * in), dW(out * in), db(out);
      std::memcpy(dW.data(), dW0.data(), sizeof(float) * out * in);
      std::memcpy(db.data(), db0.data(), sizeof(float) * out);
      for (int64_t i = 0; i < M * in; ++i) dxf.data()[i] = 1e30f;  // overwritten, not accumulated
      cpu::linear_gelu_forward(f.data(), g.data(), x.data(), W.data(), b.data(), M, in, out);
      cpu::linear_backward_gelu(dxf.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), f_in.data(), M,
                                in, out);
      expect_close(tag + " f", f.data(), f_ref.data(), M * out, kRtol, matmul_atol(in));
      expect_close(tag + " g", g.data(), g_ref.data(), M * out, kRtol, 2 * matmul_atol(in));
      expect_close(tag + " dxf", dxf.data(), dxf_ref.data(), M * in, kRtol, 2 * matmul_atol(out));
      expect_close(tag + " dW", dW.data(), dW_ref.data(), out * in, kRtol, matmul_atol(M));
      expect_close(tag + " db", db.data(), db_ref.data(), out, kRtol, matmul_atol(M));
      for (auto* t : {&f, &g, &dxf, &dW, &db}) expect_guards(*t, tag);
      // The separate passes.
      std::vector<float> f2(M * out), g2(M * out), dg(M * in, 0.0f), dxf2(M * in, 0.0f);
      cpu::linear_forward(f2.data(), x.data(), W.data(), b.data(), M, in, out);
      cpu::gelu_forward(g2.data(), f2.data(), nullptr, M, out);
      cpu::matmul(dg.data(), dy.data(), W.data(), nullptr, M, in, out, false, false, true);
      cpu::gelu_backward(dxf2.data(), nullptr, f_in.data(), nullptr, dg.data(), M, in);
      expect_true(std::memcmp(f.data(), f2.data(), sizeof(float) * M * out) == 0, tag + " f == separate");
      expect_true(std::memcmp(g.data(), g2.data(), sizeof(float) * M * out) == 0, tag + " g == separate");
      expect_true(std::memcmp(dxf.data(), dxf2.data(), sizeof(float) * M * in) == 0, tag + " dxf == separate");
    });
  }
}

RECA_TEST(linear_backward_finite_differences) {
  Rand rng(23);
  const int64_t M = 6, in = 19, out = 35;
  std::vector<float> x(M * in), W(out * in), b(out), dy(M * out);
  for (auto* v : {&x, &W, &b, &dy}) rng.fill_normal(v->data(), v->size());
  const std::vector<double> dyd = to_double(dy.data(), M * out);
  // loss = Σ dy ⊙ linear(x, W, b), in double through the reference.
  auto loss = [&](const std::vector<double>& xd, const std::vector<double>& Wd, const std::vector<double>& bd) {
    std::vector<double> y(M * out);
    cpu::ref::linear_forward(y.data(), xd.data(), Wd.data(), bd.data(), M, in, out);
    double s = 0;
    for (int64_t i = 0; i < M * out; ++i) s += y[i] * dyd[i];
    return s;
  };
  for_each_isa([&](Isa isa) {
    std::vector<float> dx(M * in, 0.0f), dW(out * in, 0.0f), db(out, 0.0f);
    cpu::linear_backward(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), M, in, out);
    std::vector<double> xd = to_double(x.data(), M * in), Wd = to_double(W.data(), out * in),
                        bd = to_double(b.data(), out);
    const std::string tag = std::string("linear fd ") + isa_name(isa);
    fd_check(tag + " dx", xd, [&](const std::vector<double>& v) { return loss(v, Wd, bd); }, dx.data(), 200, rng);
    fd_check(tag + " dW", Wd, [&](const std::vector<double>& v) { return loss(xd, v, bd); }, dW.data(), 200, rng);
    fd_check(tag + " db", bd, [&](const std::vector<double>& v) { return loss(xd, Wd, v); }, db.data(), 200, rng);
  });
}

RECA_TEST(matmul_deterministic_across_thread_counts) {
  Rand rng(24);
  const int saved = num_threads();
  const Shape shapes[] = {{1056, 768, 256}, {333, 250, 700}, {40, 1000, 300}, {1000, 20, 300}};
  struct Input {
    Shape s;
    std::vector<float> A, B, bias, C0;
  };
  std::vector<Input> inputs;
  for (const Shape& s : shapes) {
    Input in{s, std::vector<float>(s.M * s.K), std::vector<float>(s.K * s.N), std::vector<float>(s.N),
             std::vector<float>(s.M * s.N)};
    for (auto* v : {&in.A, &in.B, &in.bias, &in.C0}) rng.fill_normal(v->data(), v->size());
    inputs.push_back(std::move(in));
  }
  const int64_t M = 1056, in = 256, out = 300;
  std::vector<float> x(M * in), W(out * in), dy(M * out);
  for (auto* v : {&x, &W, &dy}) rng.fill_normal(v->data(), v->size());
  // Every result at 1 thread, then compared bitwise at 2 and 3.
  std::vector<std::vector<float>> first;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    size_t idx = 0;
    auto check = [&](std::vector<float>&& got, const std::string& what) {
      if (threads == 1) {
        first.push_back(std::move(got));
      } else {
        const std::vector<float>& want = first[idx];
        expect_true(want.size() == got.size() && std::memcmp(want.data(), got.data(), sizeof(float) * got.size()) == 0,
                    what + " bitwise at " + std::to_string(threads) + " threads");
      }
      ++idx;
    };
    for_each_isa([&](Isa isa) {
      for (const Input& p : inputs)
        for (int mode = 0; mode < 4; ++mode) {
          const bool ta = mode & 1, tb = mode & 2;
          std::vector<float> C = p.C0;
          cpu::matmul(C.data(), p.A.data(), p.B.data(), p.bias.data(), p.s.M, p.s.N, p.s.K, ta, tb, true);
          check(std::move(C), std::string("matmul ") + isa_name(isa) + " " + shape_str({p.s.M, p.s.N, p.s.K}) +
                                  (ta ? " ta" : "") + (tb ? " tb" : ""));
        }
      // linear_backward's bias reduction as well.
      std::vector<float> dx(M * in, 0.5f), dW(out * in, 0.5f), db(out, 0.5f);
      cpu::linear_backward(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), M, in, out);
      const std::string tag = std::string("linear_backward ") + isa_name(isa);
      check(std::move(dx), tag + " dx");
      check(std::move(dW), tag + " dW");
      check(std::move(db), tag + " db");
    });
  }
  set_num_threads(saved);
}

// A weight packed once (cpu::PackedWeight) gives the plain linear_forward /
// linear_gelu_forward bits: odd shapes around the tiles, several K blocks (257: a
// thinner last one), more than one NC column block, column splits across threads
// (panels read at a column offset), the direct path, K = 0;
// every ISA level, 1 to 3 threads; and panels packed at one level used at another.
RECA_TEST(packed_linear_equals_plain_bit_for_bit) {
  Rand rng(25);
  const int saved = num_threads();
  struct LinearShape {
    int64_t M, in, out;
  };
  const LinearShape shapes[] = {{1, 1, 1},     {1, 130, 390},  {2, 256, 768},   {3, 257, 33},
                                {7, 600, 129}, {16, 128, 512}, {15, 513, 97},   {29, 40, 300},
                                {5, 70, 1100}, {57, 300, 161}, {200, 130, 385}, {2, 0, 5},
                                {4, 9, 7},     {5, 257, 1100}, {200, 257, 385}};
  auto same = [](const Guarded& got, const Guarded& want, const std::string& what) {
    expect_true(std::memcmp(got.data(), want.data(), sizeof(float) * got.size()) == 0, what + " bitwise");
    expect_guards(got, what);
  };
  for (const LinearShape& s : shapes) {
    std::vector<float> x(s.M * s.in), W(s.out * s.in), b(s.out);
    for (auto* v : {&x, &W, &b}) rng.fill_normal(v->data(), v->size());
    const std::string shape = "M " + std::to_string(s.M) + " in " + std::to_string(s.in) + " out " +
                              std::to_string(s.out);
    const cpu::PackedWeight at_detected(W.data(), s.in, s.out);
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      for_each_isa([&](Isa isa) {
        const cpu::PackedWeight here(W.data(), s.in, s.out);
        const std::string tag = shape + " " + isa_name(isa) + " " + std::to_string(threads) + "t";
        for (const float* bias : {static_cast<const float*>(b.data()), static_cast<const float*>(nullptr)}) {
          const std::string what = tag + (bias ? "" : " no bias");
          Guarded want(s.M * s.out, 9.0f), got(s.M * s.out, 9.0f), other(s.M * s.out, 9.0f);
          cpu::linear_forward(want.data(), x.data(), W.data(), bias, s.M, s.in, s.out);
          cpu::linear_forward(got.data(), x.data(), here, bias, s.M);
          cpu::linear_forward(other.data(), x.data(), at_detected, bias, s.M);
          same(got, want, "packed linear_forward " + what);
          same(other, want, "linear_forward packed at " + std::string(isa_name(at_detected.isa())) + " " + what);
          Guarded f0(s.M * s.out, 9.0f), g0(s.M * s.out, 9.0f), f1(s.M * s.out, 9.0f), g1(s.M * s.out, 9.0f);
          cpu::linear_gelu_forward(f0.data(), g0.data(), x.data(), W.data(), bias, s.M, s.in, s.out);
          cpu::linear_gelu_forward(f1.data(), g1.data(), x.data(), here, bias, s.M);
          same(f1, f0, "packed linear_gelu_forward f " + what);
          same(g1, g0, "packed linear_gelu_forward g " + what);
        }
        // The oracle of the plain path itself: the double reference.
        std::vector<double> xd(x.begin(), x.end()), Wd(W.begin(), W.end()), bd(b.begin(), b.end()),
            yd(s.M * s.out);
        cpu::ref::linear_forward(yd.data(), xd.data(), Wd.data(), bd.data(), s.M, s.in, s.out);
        Guarded y(s.M * s.out);
        cpu::linear_forward(y.data(), x.data(), here, b.data(), s.M);
        expect_close("packed linear_forward vs reference " + tag, y.data(), yd.data(), s.M * s.out, kRtol,
                     matmul_atol(s.in));
      });
    }
  }
  set_num_threads(saved);
}

// Below the packing threshold each C element is one float sum over k in order:
// exactly the float reference's (== , so only the sign of a zero may differ),
// whichever columns the direct path computes side by side.
RECA_TEST(matmul_direct_path_equals_sequential_float_sum) {
  Rand rng(26);
  const Shape shapes[] = {{1, 1, 1}, {1, 37, 32}, {1, 32, 120}, {3, 19, 33}, {2, 64, 100}, {5, 23, 7}};
  for (const Shape& s : shapes)
    for (int mode = 0; mode < 8; ++mode) {
      const bool ta = mode & 1, tb = mode & 2, acc = mode & 4;
      std::vector<float> A(s.M * s.K), B(s.K * s.N), bias(s.N), C0(s.M * s.N);
      for (auto* v : {&A, &B, &bias, &C0}) rng.fill_normal(v->data(), v->size());
      std::vector<float> want = C0;
      cpu::ref::matmul(want.data(), A.data(), B.data(), bias.data(), s.M, s.N, s.K, ta, tb, acc);
      for_each_isa([&](Isa isa) {
        std::vector<float> got = C0;
        cpu::matmul(got.data(), A.data(), B.data(), bias.data(), s.M, s.N, s.K, ta, tb, acc);
        bool equal = true;
        for (size_t i = 0; i < got.size(); ++i) equal = equal && got[i] == want[i];
        expect_true(equal, std::string("direct matmul ") + isa_name(isa) + " " + shape_str({s.M, s.N, s.K}) +
                               (ta ? " ta" : "") + (tb ? " tb" : "") + (acc ? " acc" : ""));
      });
    }
}
