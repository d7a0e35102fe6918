// The bf16 matmuls (cpu/matmul_bf16.h) and the trainer's matmulPrecision 'bf16'.
//
// Kernel oracle: ref::matmul_bf16<double>, the same bf16-rounded operands summed
// in double. The kernel sums the K exact products (a bf16 x bf16 product fits in
// fp32) in fp32: one rounding per product added, one per K block folded into C,
// one for the bias. Recursive summation of n terms in fp32 is off by at most
// (n - 1)·u·Σ|term| (u = 2^-24, first order), so per element
//   |C - C_ref| <= (K + blocks + 2)·u·(Σ_k |â_k·b̂_k| + |C0| + |bias|),  blocks = ceil(K/512),
// taken x1.01 for the second-order term. The bound is a worst case, so it never
// fails by chance, yet it is tight enough that unrounded operands miss it (the
// fp32 kernel's result fails it: checked below); the rounding itself is checked
// bit for bit by bf16_rounding_matches_round_to_nearest_even.
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/threadpool.h"
#include "cpu/gelu.h"
#include "cpu/matmul.h"
#include "cpu/matmul_bf16.h"
#include "model/reca_model.h"
#include "model/trainer.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;
using namespace reca::model;

namespace {

// Tests that execute bf16 kernels run on CPUs with AVX512_BF16 (at the avx512
// level, whatever RECA_CPU_ISA says); elsewhere they say why they skip.
bool bf16_runs_here(const char* test) {
  if (cpu_has_avx512_bf16()) return true;
  std::printf("  skipped %s: this CPU has no AVX512_BF16\n", test);
  return false;
}

// The active ISA set to avx512 for the scope (the kernels exist only there).
struct Avx512Scope {
  Isa saved = active_isa();
  Avx512Scope() { set_active_isa(Isa::Avx512); }
  ~Avx512Scope() { set_active_isa(saved); }
};

constexpr double kU = 1.0 / (1 << 24);

// |got - want| <= bound elementwise, bound from the header comment; reports the
// worst element (as a fraction of its bound) on failure. Returns whether all fit.
bool within_fp32_sum_bound(const std::string& what, const float* got, const double* want, const double* mag,
                           int64_t n, int64_t K, bool report = true) {
  const double blocks = static_cast<double>((K + 511) / 512);
  const double factor = (static_cast<double>(K) + blocks + 2) * kU * 1.01;
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double ratio = err / (factor * mag[i] + 1e-300);
    if (!(ratio <= worst)) {  // NaN counts as the worst
      worst = ratio;
      at = i;
    }
  }
  const bool ok = at < 0 || worst <= 1.0;
  if (!ok && report) {
    char buf[256];
    std::snprintf(buf, sizeof buf, ": element %lld got %.9g want %.9g, %.3g x the bound", static_cast<long long>(at),
                  static_cast<double>(got[at]), want[at], worst);
    report_failure(what + buf);
  }
  return ok;
}

std::vector<float> absolute(const std::vector<float>& v) {
  std::vector<float> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

struct Shape {
  int64_t M, N, K;
};

}  // namespace

// The packing's rounding is vcvtne2ps2bf16's: nearest, ties to even, denormals to
// zero; checked bit for bit against round_to_bf16 through both operands and
// both layouts of each (x·1 and 1·x are exact in fp32; the fp32 sum starts at
// +0, so a -0 product comes out +0).
RECA_TEST(bf16_rounding_matches_round_to_nearest_even) {
  if (!bf16_runs_here("bf16_rounding_matches_round_to_nearest_even")) return;
  Avx512Scope isa;
  std::vector<float> v = {1.0f, -1.0f, 0.0f, -0.0f,
                          1.0f + 0x1p-8f,          // tie: down to even 1.0
                          1.0f + 3 * 0x1p-8f,      // tie: up to even 1 + 2^-6
                          1.0f + 0x1p-8f + 0x1p-20f,  // above the tie: up
                          -(1.0f + 0x1p-8f),       // negative tie
                          0x1p-126f,               // smallest normal: kept
                          0x1p-130f, -0x1p-140f,   // denormals: signed zero
                          3.0e38f,                 // rounds past the largest bf16: infinity
                          65504.0f, 1e-30f, 3.14159265f, -2.71828182f};
  Rand rng(31);
  for (int i = 0; i < 300; ++i) {  // random finite normal bit patterns, every low half
    const uint32_t bits = (static_cast<uint32_t>(rng.index(2)) << 31) |
                          (static_cast<uint32_t>(1 + rng.index(253)) << 23) |
                          static_cast<uint32_t>(rng.index(1 << 23));
    float x;
    std::memcpy(&x, &bits, 4);
    v.push_back(x);
  }
  const int64_t n = static_cast<int64_t>(v.size());
  std::vector<float> want(v.size());
  for (int64_t i = 0; i < n; ++i) want[i] = 0.0f + cpu::round_to_bf16(v[i]);
  const float one = 1.0f;
  for (int layout = 0; layout < 4; ++layout) {
    const bool x_is_a = layout & 1, trans = layout & 2;
    std::vector<float> C(v.size(), 7.0f);
    // x as A [n,1] (or [1,n] transposed) with B = [1]; or A = [1] with x as B [1,n] / [n,1].
    if (x_is_a) cpu::matmul_bf16(C.data(), v.data(), &one, nullptr, n, 1, 1, trans, false, false);
    else cpu::matmul_bf16(C.data(), &one, v.data(), nullptr, 1, n, 1, false, trans, false);
    int bad = 0;
    for (int64_t i = 0; i < n && bad < 5; ++i)
      if (std::memcmp(&C[i], &want[i], 4) != 0) {
        ++bad;
        char buf[160];
        std::snprintf(buf, sizeof buf, "bf16(%.9g) layout %d: got %.9g want %.9g", static_cast<double>(v[i]),
                      layout, static_cast<double>(C[i]), static_cast<double>(want[i]));
        report_failure(buf);
      }
  }
}

RECA_TEST(matmul_bf16_matches_reference_within_fp32_sum_bound) {
  if (!bf16_runs_here("matmul_bf16_matches_reference_within_fp32_sum_bound")) return;
  Avx512Scope isa;
  Rand rng(32);
  // Tile edges (14 x 32), odd K (a padded pair), K past one 512 block (1025:
  // 3 blocks of 342), N past one 1024-column panel, M past one 336-row block.
  const Shape shapes[] = {{1, 1, 1},    {3, 5, 2},     {7, 9, 13},    {13, 31, 33},  {14, 32, 64},
                          {15, 33, 65}, {29, 63, 31},  {43, 95, 129}, {57, 17, 600}, {131, 97, 301},
                          {90, 70, 1025}, {97, 300, 40}, {1, 300, 200}, {300, 1, 200}, {64, 64, 1},
                          {9, 1100, 35}, {350, 20, 31}};
  for (const Shape& s : shapes) {
    const int64_t M = s.M, N = s.N, K = s.K;
    std::vector<float> A(M * K), B(K * N), bias(N), C0(M * N);
    rng.fill_normal(A.data(), M * K);
    rng.fill_normal(B.data(), K * N);
    rng.fill_normal(bias.data(), N);
    rng.fill_normal(C0.data(), M * N);
    const std::vector<float> Aa = absolute(A), Ba = absolute(B);
    for (int mode = 0; mode < 16; ++mode) {
      const bool ta = mode & 1, tb = mode & 2, acc = mode & 4, with_bias = mode & 8;
      const std::string tag = "matmul_bf16 " + shape_str({M, N, K}) + (ta ? " ta" : "") + (tb ? " tb" : "") +
                              (acc ? " acc" : "") + (with_bias ? " bias" : "");
      std::vector<double> want = to_double(C0.data(), M * N), mag(M * N, 0.0);
      cpu::ref::matmul_bf16(want.data(), A.data(), B.data(), with_bias ? bias.data() : nullptr, M, N, K, ta, tb,
                            acc);
      cpu::ref::matmul_bf16(mag.data(), Aa.data(), Ba.data(), nullptr, M, N, K, ta, tb, false);
      for (int64_t i = 0; i < M * N; ++i)
        mag[i] += (acc ? std::fabs(C0[i]) : 0.0) + (with_bias ? std::fabs(bias[i % N]) : 0.0);
      Guarded C(M * N);
      std::memcpy(C.data(), C0.data(), sizeof(float) * M * N);
      cpu::matmul_bf16(C.data(), A.data(), B.data(), with_bias ? bias.data() : nullptr, M, N, K, ta, tb, acc);
      within_fp32_sum_bound(tag, C.data(), want.data(), mag.data(), M * N, K);
      expect_guards(C, tag);
    }
  }
}

// The bound separates bf16 operands from fp32 ones: the fp32 kernel misses it.
RECA_TEST(matmul_bf16_bound_rejects_unrounded_operands) {
  const int64_t M = 64, N = 64, K = 256;
  Rand rng(33);
  std::vector<float> A(M * K), B(K * N), C(M * N);
  rng.fill_normal(A.data(), M * K);
  rng.fill_normal(B.data(), K * N);
  std::vector<double> want(M * N), mag(M * N);
  cpu::ref::matmul_bf16(want.data(), A.data(), B.data(), nullptr, M, N, K, false, false, false);
  cpu::ref::matmul_bf16(mag.data(), absolute(A).data(), absolute(B).data(), nullptr, M, N, K, false, false, false);
  cpu::matmul(C.data(), A.data(), B.data(), nullptr, M, N, K, false, false, false);
  expect_true(!within_fp32_sum_bound("fp32 product", C.data(), want.data(), mag.data(), M * N, K, false),
              "the fp32 product fails the bf16 bound");
}

// The Linear entry points: each product against the oracle, the bias gradient
// and the GELU epilogues bit for bit equal to the fp32 kernels on the same sums.
RECA_TEST(linear_bf16_forward_backward_match_reference) {
  if (!bf16_runs_here("linear_bf16_forward_backward_match_reference")) return;
  Avx512Scope isa;
  Rand rng(34);
  const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {17, 33, 15}, {64, 256, 768}, {132, 100, 257}, {33, 300, 65}};
  for (auto& sh : shapes) {
    const int64_t M = sh[0], in = sh[1], out = sh[2];
    const std::string tag = "linear_bf16 " + shape_str({M, in, out});
    std::vector<float> x(M * in), W(out * in), b(out), dy(M * out), dx0(M * in), dW0(out * in), db0(out), f_in(M * in);
    for (auto* v : {&x, &W, &b, &dy, &dx0, &dW0, &db0, &f_in}) rng.fill_normal(v->data(), v->size());
    const std::vector<float> xa = absolute(x), Wa = absolute(W), dya = absolute(dy);
    // Oracles: y = x·Wᵀ + b ; dx = dx0 + dy·W ; dW = dW0 + dyᵀ·x.
    std::vector<double> y_ref(M * out), y_mag(M * out), dx_ref = to_double(dx0.data(), M * in), dx_mag(M * in),
        dW_ref = to_double(dW0.data(), out * in), dW_mag(out * in);
    cpu::ref::matmul_bf16(y_ref.data(), x.data(), W.data(), b.data(), M, out, in, false, true, false);
    cpu::ref::matmul_bf16(y_mag.data(), xa.data(), Wa.data(), nullptr, M, out, in, false, true, false);
    cpu::ref::matmul_bf16(dx_ref.data(), dy.data(), W.data(), nullptr, M, in, out, false, false, true);
    cpu::ref::matmul_bf16(dx_mag.data(), dya.data(), Wa.data(), nullptr, M, in, out, false, false, false);
    cpu::ref::matmul_bf16(dW_ref.data(), dy.data(), x.data(), nullptr, out, in, M, true, false, true);
    cpu::ref::matmul_bf16(dW_mag.data(), dya.data(), xa.data(), nullptr, out, in, M, true, false, false);
    for (int64_t i = 0; i < M * out; ++i) y_mag[i] += std::fabs(b[i % out]);
    for (int64_t i = 0; i < M * in; ++i) dx_mag[i] += std::fabs(dx0[i]);
    for (int64_t i = 0; i < out * in; ++i) dW_mag[i] += std::fabs(dW0[i]);

    Guarded y(M * out), dx(M * in), dW(out * in), db(out);
    std::memcpy(dx.data(), dx0.data(), sizeof(float) * M * in);
    std::memcpy(dW.data(), dW0.data(), sizeof(float) * out * in);
    std::memcpy(db.data(), db0.data(), sizeof(float) * out);
    cpu::linear_forward_bf16(y.data(), x.data(), W.data(), b.data(), M, in, out);
    cpu::linear_backward_bf16(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), M, in, out);
    within_fp32_sum_bound(tag + " y", y.data(), y_ref.data(), y_mag.data(), M * out, in);
    within_fp32_sum_bound(tag + " dx", dx.data(), dx_ref.data(), dx_mag.data(), M * in, out);
    within_fp32_sum_bound(tag + " dW", dW.data(), dW_ref.data(), dW_mag.data(), out * in, M);
    std::vector<float> db_fp32 = db0;
    cpu::linear_backward(nullptr, nullptr, db_fp32.data(), dy.data(), x.data(), W.data(), M, in, out);
    expect_true(std::memcmp(db.data(), db_fp32.data(), sizeof(float) * out) == 0, tag + " db == fp32 column sum");
    for (auto* g : {&y, &dx, &dW, &db}) expect_guards(*g, tag);

    // GELU fused: f as y; g = gelu(f) and dxf = gelu'(f_in) ⊙ (dy·W) through the
    // fp32 GELU kernels on the bf16 sums.
    Guarded f(M * out), g(M * out), dxf(M * in), dW2(out * in), db2(out);
    for (int64_t i = 0; i < M * in; ++i) dxf.data()[i] = 1e30f;  // overwritten, not accumulated
    std::memcpy(dW2.data(), dW0.data(), sizeof(float) * out * in);
    std::memcpy(db2.data(), db0.data(), sizeof(float) * out);
    cpu::linear_gelu_forward_bf16(f.data(), g.data(), x.data(), W.data(), b.data(), M, in, out);
    cpu::linear_backward_gelu_bf16(dxf.data(), dW2.data(), db2.data(), dy.data(), x.data(), W.data(), f_in.data(), M,
                                   in, out);
    expect_true(std::memcmp(f.data(), y.data(), sizeof(float) * M * out) == 0, tag + " f == y");
    std::vector<float> g2(M * out), dg(M * in), dxf2(M * in, 0.0f);
    cpu::gelu_forward(g2.data(), f.data(), nullptr, M, out);
    cpu::matmul_bf16(dg.data(), dy.data(), W.data(), nullptr, M, in, out, false, false, false);
    cpu::gelu_backward(dxf2.data(), nullptr, f_in.data(), nullptr, dg.data(), M, in);
    expect_true(std::memcmp(g.data(), g2.data(), sizeof(float) * M * out) == 0, tag + " g == gelu(f)");
    expect_true(std::memcmp(dxf.data(), dxf2.data(), sizeof(float) * M * in) == 0, tag + " dxf == gelu'(f)*dg");
    expect_true(std::memcmp(dW2.data(), dW.data(), sizeof(float) * out * in) == 0, tag + " gelu dW == dW");
    expect_true(std::memcmp(db2.data(), db.data(), sizeof(float) * out) == 0, tag + " gelu db == db");
    for (auto* t : {&f, &g, &dxf, &dW2, &db2}) expect_guards(*t, tag);
  }
}

RECA_TEST(matmul_bf16_deterministic_across_thread_counts) {
  if (!bf16_runs_here("matmul_bf16_deterministic_across_thread_counts")) return;
  Avx512Scope isa;
  Rand rng(35);
  const Shape shapes[] = {{333, 250, 700}, {40, 1000, 300}, {1000, 20, 301}, {256, 768, 1152}};
  for (const Shape& s : shapes) {
    std::vector<float> A(s.M * s.K), B(s.K * s.N), bias(s.N), C0(s.M * s.N);
    for (auto* v : {&A, &B, &bias, &C0}) rng.fill_normal(v->data(), v->size());
    for (int mode = 0; mode < 4; ++mode) {
      const bool ta = mode & 1, tb = mode & 2;
      expect_same_across_threads("matmul_bf16 " + shape_str({s.M, s.N, s.K}) + (ta ? " ta" : "") + (tb ? " tb" : ""),
                                 [&] {
                                   std::vector<float> C = C0;
                                   cpu::matmul_bf16(C.data(), A.data(), B.data(), bias.data(), s.M, s.N, s.K, ta, tb,
                                                    true);
                                   return C;
                                 });
    }
  }
  const int64_t M = 1056, in = 256, out = 300;
  std::vector<float> x(M * in), W(out * in), dy(M * out);
  for (auto* v : {&x, &W, &dy}) rng.fill_normal(v->data(), v->size());
  expect_same_across_threads("linear_backward_bf16", [&] {
    std::vector<float> dx(M * in, 0.5f), dW(out * in, 0.5f), db(out, 0.5f);
    cpu::linear_backward_bf16(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), M, in, out);
    std::vector<float> all = dx;
    all.insert(all.end(), dW.begin(), dW.end());
    all.insert(all.end(), db.begin(), db.end());
    return all;
  });
}

// Always on: below avx512 (RECA_CPU_ISA=avx2 or setIsa) or without AVX512_BF16,
// bf16 is E_DEVICE saying what runs, at the kernel and when a trainer asks for it.
RECA_TEST(bf16_unavailable_is_a_typed_device_error) {
  const Isa saved = active_isa();
  const Isa lower = detected_isa() >= Isa::Avx2 ? Isa::Avx2 : Isa::Scalar;
  set_active_isa(lower);
  auto expect_device = [&](const std::function<void()>& fn, const std::string& what) {
    try {
      fn();
      report_failure(what + ": no error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      expect_true(e.code() == ErrorCode::Device, what + ": code E_DEVICE (" + msg + ")");
      expect_true(msg.find(cpu_has_avx512_bf16() ? "avx512" : "AVX512_BF16") != std::string::npos &&
                      msg.find("fp32") != std::string::npos,
                  what + ": the message says what runs: " + msg);
    }
  };
  expect_true(!cpu::bf16_matmul_available(), "unavailable below avx512");
  float a = 1, b = 2, c = 0;
  expect_device([&] { cpu::matmul_bf16(&c, &a, &b, nullptr, 1, 1, 1, false, false, false); }, "matmul_bf16");
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  RecaModel model(cfg, cpu_backend());
  TrainerOptions o;
  o.matmul_precision = MatmulPrecision::Bf16;
  expect_device([&] { Trainer t(model, o); }, "Trainer with matmulPrecision bf16");
  o.matmul_precision = MatmulPrecision::Fp32;
  Trainer fine(model, o);  // fp32 runs everywhere
  set_active_isa(saved);
}

// A tiny-preset step, fp32 vs bf16 from the same weights and draws.
// Tolerances from bf16's 8 significant bits (unit roundoff u = 2^-8 = 0.39%): rounding leaves
// each operand off by a relative error spread over [-u, u] (RMS u/√3), so
// a product of two rounded operands is off by RMS √(2/3)·u ≈ 0.32%, and a dot
// product of many such terms with independent errors by about the same in L2.
// A step chains ~12 Linear products (2 blocks x 4 Linears, the head, the
// embeddings; forward and backward); errors that add in quadrature give
// ~√12·0.32% ≈ 1.1%. Allowed: the whole gradient within 4·u = 1.6% (L2), the loss
// (a mean over every token, whose errors average out) within u/4 ≈ 0.1% over a
// 6-step curve. bf16 must also differ from fp32 (> 1e-4), or the option ran fp32.
RECA_TEST(trainer_bf16_step_close_to_fp32) {
  if (!bf16_runs_here("trainer_bf16_step_close_to_fp32")) return;
  Avx512Scope isa;
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  const int64_t B = 4, S = cfg.image_size;
  Rand r(36);
  std::vector<uint8_t> images(static_cast<size_t>(B * S * S * 3));
  for (auto& x : images) x = static_cast<uint8_t>(r.index(256));
  StepBatch batch;
  batch.B = B;
  batch.images = images.data();
  struct Run {
    std::vector<double> losses;
    std::vector<float> grads;  // after step 1
  };
  auto run = [&](MatmulPrecision p) {
    RecaModel model(cfg, cpu_backend());
    model.init(7);
    TrainerOptions o;
    o.lr = 1e-3;
    o.seed = 11;
    o.matmul_precision = p;
    Trainer t(model, o);
    Run out;
    for (int s = 0; s < 6; ++s) {
      out.losses.push_back(t.step(batch).loss);
      if (s == 0) {
        out.grads.resize(static_cast<size_t>(model.param_floats()));
        model.backend().download(out.grads.data(), t.grads(), model.param_floats() * 4);
      }
    }
    return out;
  };
  const Run fp32 = run(MatmulPrecision::Fp32), bf16 = run(MatmulPrecision::Bf16);
  double diff2 = 0, norm2 = 0;
  for (size_t i = 0; i < fp32.grads.size(); ++i) {
    const double d = static_cast<double>(bf16.grads[i]) - fp32.grads[i];
    diff2 += d * d;
    norm2 += static_cast<double>(fp32.grads[i]) * fp32.grads[i];
  }
  const double grad_rel = std::sqrt(diff2 / norm2);
  std::printf("  tiny/mask step 1: loss fp32 %.6f bf16 %.6f; gradient rel. L2 difference %.4g\n", fp32.losses[0],
              bf16.losses[0], grad_rel);
  expect_true(norm2 > 0 && grad_rel < 4.0 / 256, "gradient within 4·u_bf16 (L2): " + std::to_string(grad_rel));
  expect_true(grad_rel > 1e-4, "bf16 differs from fp32 (the bf16 path ran): " + std::to_string(grad_rel));
  for (size_t s = 0; s < fp32.losses.size(); ++s) {
    const double rel = std::fabs(bf16.losses[s] - fp32.losses[s]) / std::fabs(fp32.losses[s]);
    std::printf("  step %zu: loss fp32 %.6f bf16 %.6f (rel %.3g)\n", s + 1, fp32.losses[s], bf16.losses[s], rel);
    expect_true(rel < 0.25 / 256, "loss of step " + std::to_string(s + 1) + " within u_bf16/4: " + std::to_string(rel));
  }
}
