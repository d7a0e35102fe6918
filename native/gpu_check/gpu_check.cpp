// reca_gpu_check: one program that, on a machine with an NVIDIA GPU,
//   1. prints the device (name, SMs, memory, driver);
//   2. measures the two ceilings: device-to-device copy bandwidth (bytes read +
//      written) and our SGEMM's GFLOP/s at 4096³ (fp32 and TF32);
//   3. checks every CUDA op against the CPU reference on fresh random inputs
//      (relative L2 error against a float64 reference, poisoned outputs, NaN
//      fails), Philox CPU vs GPU bit for bit, and run-to-run determinism;
//   4. every op of model/backend.h: the CUDA backend against cpu_backend() on the
//      same random inputs (odd sizes; bits where the arithmetic is the CPU's,
//      relative L2 otherwise; GPU run-to-run bits for the reductions), then a
//      tiny RecaModel: one Trainer step per mode × task and the tokenizer stage,
//      loss / grads / updated params / EMA CPU vs GPU, and the GPU twice (bits);
//   5. times each op at the `base` preset shapes (SPEC §1) with CUDA events
//      (warm-up, median of repeats, rotating input sets) and compares each
//      time with its floor: max(flops / compute ceiling, bytes / copy ceiling).
// Prints a table last; writes gpu_check.json and gpu_check.log to --out DIR
// (default $OUT). Exit status: 0 all checks passed, 1 a check failed, 2 no
// usable GPU or a CUDA error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "core/threadpool.h"
#include "cpu/adamw.h"
#include "cpu/gelu.h"
#include "cpu/layernorm.h"
#include "cuda/cuda_info.h"
#include "cuda/cuda_ops.h"
#include "model/backend.h"
#include "model/reca_model.h"
#include "model/trainer.h"

namespace {

using reca::cuda::Stream;

// ---------------------------------------------------------------- logging
std::string g_log;

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fputs(buf, stdout);
  std::fflush(stdout);
  g_log += buf;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (c == '\n') o += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

// ---------------------------------------------------------------- records
struct Check {
  std::string name, shape;
  double err, tol;
  bool pass;
};
struct Timing {
  std::string name, shape;
  double ms;         // median per call
  double flops;      // useful floating-point operations per call
  double bytes;      // fewest bytes a call must move (inputs read once, outputs written once)
  double floor_ms;   // max(flops / compute ceiling, bytes / copy ceiling), measured ceilings
  double spread;     // (p90 − p10) / median over the repeats
};
std::vector<Check> g_checks;
std::vector<Timing> g_timings;

void record_check(const std::string& name, const std::string& shape, double err, double tol) {
  const bool pass = std::isfinite(err) && err <= tol;
  g_checks.push_back({name, shape, err, tol, pass});
  say("  %-4s %-34s %-22s err %-10.3g tol %.1g\n", pass ? "ok" : "FAIL", name.c_str(),
      shape.c_str(), err, tol);
}

std::string shape_str(std::initializer_list<int64_t> d) {
  std::string s = "[";
  for (int64_t v : d) s += (s.size() > 1 ? "," : "") + std::to_string(v);
  return s + "]";
}

// ‖got − want‖ / ‖want‖ in double; any non-finite element of got gives +inf.
double rel_l2(const float* got, const double* want, int64_t n) {
  double num2 = 0, den2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = double(got[i]) - want[i];
    num2 += d * d;
    den2 += want[i] * want[i];
  }
  return den2 > 0 ? std::sqrt(num2 / den2) : std::sqrt(num2);
}

// ---------------------------------------------------------------- buffers
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  explicit DevBuf(size_t b) : p(reca::cuda::device_alloc(b)), bytes(b) {}
  ~DevBuf() { reca::cuda::device_free(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  float* f() const { return static_cast<float*>(p); }
  int32_t* i() const { return static_cast<int32_t*>(p); }
};

Stream g_stream = nullptr;
uint64_t g_seed = 0;
uint64_t g_stream_id = 0;  // a fresh Philox stream for every host input

std::vector<float> host_normal(int64_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  reca::philox_fill_normal(g_seed, ++g_stream_id, v.data(), n);
  if (scale != 1.0f)
    for (float& x : v) x *= scale;
  return v;
}
DevBuf to_dev(const std::vector<float>& v) {
  DevBuf d(v.size() * sizeof(float));
  reca::cuda::copy_to_device(d.p, v.data(), v.size() * sizeof(float), g_stream);
  return d;
}
std::vector<float> to_host(const DevBuf& d, int64_t n) {
  std::vector<float> v(n);
  reca::cuda::copy_to_host(v.data(), d.p, n * sizeof(float), g_stream);
  return v;
}
void poison(const DevBuf& d) { reca::cuda::fill_bytes(d.p, 0xFF, d.bytes, g_stream); }  // NaN
std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// ---------------------------------------------------------------- timing
// Median ms per call of fn(rep) over `reps` calls after `warmup` calls.
Timing time_op(const std::string& name, const std::string& shape, double flops, double bytes,
               const std::function<void(int)>& fn, int warmup = 3, int reps = 20) {
  for (int r = 0; r < warmup; ++r) fn(r);
  reca::cuda::synchronize(g_stream);
  std::vector<float> ms(reps);
  reca::cuda::EventTimer timer;
  for (int r = 0; r < reps; ++r) {
    timer.start(g_stream);
    fn(r);
    timer.stop(g_stream);
    ms[r] = timer.elapsed_ms();
  }
  std::sort(ms.begin(), ms.end());
  Timing t{name, shape, ms[reps / 2], flops, bytes, 0, 0};
  t.spread = (ms[reps * 9 / 10 < reps ? reps * 9 / 10 : reps - 1] - ms[reps / 10]) / t.ms;
  return t;
}

// ---------------------------------------------------------------- matmul reference
struct MatmulCase {
  int64_t M, N, K;
  bool ta, tb, acc, bias;
  int misalign;  // offset the A pointer by this many floats (forces the scalar path)
};

// Checks cuda::matmul on one case; rows: all when M ≤ 256, else 96 sampled.
void check_matmul(const MatmulCase& c, reca::cuda::MatmulPrecision prec, double tol) {
  const int64_t M = c.M, N = c.N, K = c.K;
  std::vector<float> A = host_normal(M * K + c.misalign), B = host_normal(K * N), bias = host_normal(N);
  std::vector<float> C0 = host_normal(M * N);
  DevBuf dA = to_dev(A), dB = to_dev(B), dbias = to_dev(bias), dC = to_dev(C0);
  if (!c.acc) poison(dC);
  reca::cuda::matmul(dC.f(), dA.f() + c.misalign, dB.f(), c.bias ? dbias.f() : nullptr, M, N, K, c.ta,
                     c.tb, c.acc, g_stream, prec);
  const std::vector<float> got = to_host(dC, M * N);
  std::vector<int64_t> rows;
  if (M <= 256) {
    for (int64_t r = 0; r < M; ++r) rows.push_back(r);
  } else {
    rows = {0, M - 1};
    for (int i = 0; i < 94; ++i) rows.push_back(int64_t(reca::philox_u32(g_seed, ++g_stream_id, 0) % M));
  }
  const float* a = A.data() + c.misalign;
  std::vector<double> want(rows.size() * N);
  std::vector<float> gotr(rows.size() * N);
  reca::parallel_for(int64_t(rows.size()), 1, [&](int64_t i0, int64_t i1) {
    std::vector<double> acc(N);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = rows[i];
      for (int64_t n = 0; n < N; ++n) acc[n] = (c.acc ? C0[r * N + n] : 0.0) + (c.bias ? bias[n] : 0.0);
      for (int64_t k = 0; k < K; ++k) {
        const double av = c.ta ? a[k * M + r] : a[r * K + k];
        if (c.tb)
          for (int64_t n = 0; n < N; ++n) acc[n] += av * B[n * K + k];
        else
          for (int64_t n = 0; n < N; ++n) acc[n] += av * B[k * N + n];
      }
      for (int64_t n = 0; n < N; ++n) {
        want[i * N + n] = acc[n];
        gotr[i * N + n] = got[r * N + n];
      }
    }
  });
  // Every element was written (poison gone) even outside the sampled rows.
  bool all_finite = true;
  for (float v : got) all_finite &= std::isfinite(v);
  double err = rel_l2(gotr.data(), want.data(), int64_t(want.size()));
  if (!all_finite) err = INFINITY;
  char name[96];
  std::snprintf(name, sizeof name, "matmul %s%s%s%s%s%s",
                prec == reca::cuda::MatmulPrecision::Tf32 ? "tf32" : "fp32", c.ta ? " ta" : "",
                c.tb ? " tb" : "", c.acc ? " acc" : "", c.bias ? " bias" : "",
                c.misalign ? " misaligned" : "");
  record_check(name, shape_str({M, N, K}), err, tol);
}

// Same inputs twice: the bits must agree (a moving result is a race).
void check_matmul_deterministic(int64_t M, int64_t N, int64_t K, reca::cuda::MatmulPrecision prec) {
  DevBuf dA = to_dev(host_normal(M * K)), dB = to_dev(host_normal(K * N)), dC(M * N * 4);
  reca::cuda::matmul(dC.f(), dA.f(), dB.f(), nullptr, M, N, K, false, true, false, g_stream, prec);
  const std::vector<float> first = to_host(dC, M * N);
  poison(dC);
  reca::cuda::matmul(dC.f(), dA.f(), dB.f(), nullptr, M, N, K, false, true, false, g_stream, prec);
  const std::vector<float> second = to_host(dC, M * N);
  const bool same = std::memcmp(first.data(), second.data(), M * N * 4) == 0;
  record_check(std::string("matmul ") + (prec == reca::cuda::MatmulPrecision::Tf32 ? "tf32" : "fp32") +
                   " run-to-run bits",
               shape_str({M, N, K}), same ? 0.0 : 1.0, 0.0);
}

// ---------------------------------------------------------------- op checks
void check_gelu(int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  std::vector<float> x = host_normal(n, 2.0f), bias = host_normal(cols), dy = host_normal(n);
  std::vector<float> dx0 = host_normal(n), db0 = host_normal(cols);
  DevBuf dx_ = to_dev(x), dbias = to_dev(bias), ddy = to_dev(dy), dy_out(n * 4), ddx = to_dev(dx0),
         ddb = to_dev(db0);
  poison(dy_out);
  reca::cuda::gelu_forward(dy_out.f(), dx_.f(), dbias.f(), rows, cols, g_stream);
  reca::cuda::gelu_backward(ddx.f(), ddb.f(), dx_.f(), dbias.f(), ddy.f(), rows, cols, g_stream);
  const std::vector<float> y = to_host(dy_out, n), dx = to_host(ddx, n), db = to_host(ddb, cols);
  std::vector<double> xd = to_double(x), bd = to_double(bias), dyd = to_double(dy);
  std::vector<double> yr(n), dxr = to_double(dx0), dbr = to_double(db0);
  reca::cpu::ref::gelu_forward(yr.data(), xd.data(), bd.data(), rows, cols);
  reca::cpu::ref::gelu_backward(dxr.data(), dbr.data(), xd.data(), bd.data(), dyd.data(), rows, cols);
  const std::string s = shape_str({rows, cols});
  record_check("gelu_forward y", s, rel_l2(y.data(), yr.data(), n), 1e-5);
  record_check("gelu_backward dx", s, rel_l2(dx.data(), dxr.data(), n), 1e-5);
  record_check("gelu_backward dbias", s, rel_l2(db.data(), dbr.data(), cols), 1e-5);
  // dbias is a reduction: the same inputs must give the same bits.
  reca::cuda::copy_to_device(ddb.p, db0.data(), cols * 4, g_stream);
  reca::cuda::gelu_backward(ddx.f(), ddb.f(), dx_.f(), dbias.f(), ddy.f(), rows, cols, g_stream);
  const std::vector<float> db2 = to_host(ddb, cols);
  record_check("gelu_backward dbias run-to-run", s,
               std::memcmp(db.data(), db2.data(), cols * 4) == 0 ? 0.0 : 1.0, 0.0);
}

void check_layernorm(int64_t rows, int64_t C) {
  const int64_t n = rows * C;
  std::vector<float> x = host_normal(n), w = host_normal(C), b = host_normal(C), dy = host_normal(n);
  for (int64_t i = 0; i < n; ++i) x[i] = 3.0f + 2.0f * x[i];  // an offset, as activations have
  std::vector<float> dx0 = host_normal(n), dw0 = host_normal(C), db0 = host_normal(C);
  DevBuf d_x = to_dev(x), d_w = to_dev(w), d_b = to_dev(b), d_dy = to_dev(dy), d_y(n * 4),
         d_mean(rows * 4), d_rstd(rows * 4), d_dx = to_dev(dx0), d_dw = to_dev(dw0), d_db = to_dev(db0);
  poison(d_y);
  poison(d_mean);
  poison(d_rstd);
  reca::cuda::layernorm_forward(d_y.f(), d_mean.f(), d_rstd.f(), d_x.f(), d_w.f(), d_b.f(), rows, C, g_stream);
  // The backward uses the CPU reference's float statistics, so it is checked on its own.
  std::vector<float> meanf(rows), rstdf(rows), yf(n);
  reca::cpu::ref::layernorm_forward(yf.data(), meanf.data(), rstdf.data(), x.data(), w.data(), b.data(), rows, C);
  DevBuf d_meanr = to_dev(meanf), d_rstdr = to_dev(rstdf);
  reca::cuda::layernorm_backward(d_dx.f(), d_dw.f(), d_db.f(), d_dy.f(), d_x.f(), d_w.f(), d_meanr.f(),
                                 d_rstdr.f(), rows, C, g_stream);
  const std::vector<float> y = to_host(d_y, n), mean = to_host(d_mean, rows), rstd = to_host(d_rstd, rows);
  const std::vector<float> dx = to_host(d_dx, n), dw = to_host(d_dw, C), db = to_host(d_db, C);
  std::vector<double> xd = to_double(x), wd = to_double(w), bd = to_double(b), dyd = to_double(dy);
  std::vector<double> yr(n), mr(rows), rr(rows);
  reca::cpu::ref::layernorm_forward(yr.data(), mr.data(), rr.data(), xd.data(), wd.data(), bd.data(), rows, C);
  std::vector<double> dxr = to_double(dx0), dwr = to_double(dw0), dbr = to_double(db0);
  std::vector<double> mfd = to_double(meanf), rfd = to_double(rstdf);
  reca::cpu::ref::layernorm_backward(dxr.data(), dwr.data(), dbr.data(), dyd.data(), xd.data(), wd.data(),
                                     mfd.data(), rfd.data(), rows, C);
  const std::string s = shape_str({rows, C});
  record_check("layernorm_forward y", s, rel_l2(y.data(), yr.data(), n), 1e-5);
  record_check("layernorm_forward mean", s, rel_l2(mean.data(), mr.data(), rows), 1e-5);
  record_check("layernorm_forward rstd", s, rel_l2(rstd.data(), rr.data(), rows), 1e-5);
  record_check("layernorm_backward dx", s, rel_l2(dx.data(), dxr.data(), n), 1e-5);
  record_check("layernorm_backward dw", s, rel_l2(dw.data(), dwr.data(), C), 1e-5);
  record_check("layernorm_backward db", s, rel_l2(db.data(), dbr.data(), C), 1e-5);
  // dw/db are reductions over rows: the same inputs must give the same bits (dx too).
  reca::cuda::copy_to_device(d_dx.p, dx0.data(), n * 4, g_stream);
  reca::cuda::copy_to_device(d_dw.p, dw0.data(), C * 4, g_stream);
  reca::cuda::copy_to_device(d_db.p, db0.data(), C * 4, g_stream);
  reca::cuda::layernorm_backward(d_dx.f(), d_dw.f(), d_db.f(), d_dy.f(), d_x.f(), d_w.f(), d_meanr.f(),
                                 d_rstdr.f(), rows, C, g_stream);
  const std::vector<float> dx2 = to_host(d_dx, n), dw2 = to_host(d_dw, C), db2 = to_host(d_db, C);
  const bool same = std::memcmp(dx.data(), dx2.data(), n * 4) == 0 &&
                    std::memcmp(dw.data(), dw2.data(), C * 4) == 0 &&
                    std::memcmp(db.data(), db2.data(), C * 4) == 0;
  record_check("layernorm_backward run-to-run bits", s, same ? 0.0 : 1.0, 0.0);
  // Only some gradients asked for: the others are left alone (null), the asked ones still right.
  std::vector<double> dwr2 = to_double(dw0);
  reca::cpu::ref::layernorm_backward(static_cast<double*>(nullptr), dwr2.data(), static_cast<double*>(nullptr),
                                     dyd.data(), xd.data(), wd.data(), mfd.data(), rfd.data(), rows, C);
  reca::cuda::copy_to_device(d_dw.p, dw0.data(), C * 4, g_stream);
  reca::cuda::layernorm_backward(nullptr, d_dw.f(), nullptr, d_dy.f(), d_x.f(), d_w.f(), d_meanr.f(),
                                 d_rstdr.f(), rows, C, g_stream);
  const std::vector<float> dw3 = to_host(d_dw, C);
  record_check("layernorm_backward dw only", s, rel_l2(dw3.data(), dwr2.data(), C), 1e-5);
}

void check_adamw(int64_t n, bool decay, bool ema, int misalign) {
  reca::cpu::AdamWConfig cfg{1e-2, 0.9, 0.95, 1e-8, 0.02, 7, 0.5, 0.999};
  std::vector<float> p = host_normal(n + misalign), g = host_normal(n + misalign, 0.1f);
  std::vector<float> m = host_normal(n + misalign, 0.01f), v = host_normal(n + misalign, 0.01f);
  for (float& x : v) x = x * x;  // second moments are non-negative
  std::vector<float> e = host_normal(n + misalign);
  DevBuf dp = to_dev(p), dg = to_dev(g), dm = to_dev(m), dv = to_dev(v), de = to_dev(e);
  reca::cuda::adamw_step(dp.f() + misalign, dm.f() + misalign, dv.f() + misalign,
                         ema ? de.f() + misalign : nullptr, dg.f() + misalign, n, decay, cfg, g_stream);
  const std::vector<float> po = to_host(dp, n + misalign), mo = to_host(dm, n + misalign),
                           vo = to_host(dv, n + misalign), eo = to_host(de, n + misalign);
  std::vector<double> pr(p.begin() + misalign, p.end()), gr(g.begin() + misalign, g.end());
  std::vector<double> mr(m.begin() + misalign, m.end()), vr(v.begin() + misalign, v.end());
  std::vector<double> er(e.begin() + misalign, e.end());
  reca::cpu::ref::adamw_step(pr.data(), mr.data(), vr.data(), ema ? er.data() : nullptr, gr.data(), n,
                             decay, cfg);
  // The update itself (p_out − p_in) is checked too: it is ~1e-2 of p.
  std::vector<float> dpo(n);
  std::vector<double> dpr(n);
  for (int64_t i = 0; i < n; ++i) {
    dpo[i] = po[misalign + i] - p[misalign + i];
    dpr[i] = pr[i] - p[misalign + i];
  }
  std::string s = shape_str({n});
  if (decay) s += " decay";
  if (ema) s += " ema";
  if (misalign) s += " misaligned";
  record_check("adamw p", s, rel_l2(po.data() + misalign, pr.data(), n), 1e-6);
  record_check("adamw update (p_out - p_in)", s, rel_l2(dpo.data(), dpr.data(), n), 1e-4);
  record_check("adamw m", s, rel_l2(mo.data() + misalign, mr.data(), n), 1e-6);
  record_check("adamw v", s, rel_l2(vo.data() + misalign, vr.data(), n), 1e-6);
  if (ema) record_check("adamw ema", s, rel_l2(eo.data() + misalign, er.data(), n), 1e-6);
}

void check_philox() {
  const uint64_t seed = g_seed ^ 0x5eedull;
  for (uint64_t offset : {0ull, 5ull}) {
    const int64_t n = (1 << 20) + 3;
    DevBuf du(n * 4), dz(n * 4);
    poison(du);
    poison(dz);
    reca::cuda::philox_fill_uniform(seed, 11, du.f(), n, offset, g_stream);
    reca::cuda::philox_fill_normal(seed, 12, dz.f(), n, offset, g_stream);
    const std::vector<float> u = to_host(du, n), z = to_host(dz, n);
    std::vector<float> hu(n), hz(n);
    reca::philox_fill_uniform(seed, 11, hu.data(), n, offset);
    reca::philox_fill_normal(seed, 12, hz.data(), n, offset);
    int64_t bad_u = 0, bad_z = 0;
    for (int64_t i = 0; i < n; ++i) {
      bad_u += std::memcmp(&u[i], &hu[i], 4) != 0;
      bad_z += std::memcmp(&z[i], &hz[i], 4) != 0;
    }
    const std::string s = shape_str({n}) + " offset " + std::to_string(offset);
    record_check("philox uniform CPU==GPU (bits differ)", s, double(bad_u), 0.0);
    record_check("philox normal CPU==GPU (bits differ)", s, double(bad_z), 0.0);
  }
  struct P { int64_t n, count; };
  for (P pc : {P{257, 64}, P{1, 3}, P{100003, 1}}) {
    DevBuf dperm(pc.n * pc.count * 4);
    reca::cuda::fill_bytes(dperm.p, 0xFF, dperm.bytes, g_stream);
    reca::cuda::philox_permutations(seed, 40, pc.n, pc.count, dperm.i(), g_stream);
    std::vector<int32_t> got(pc.n * pc.count), want(pc.n * pc.count);
    reca::cuda::copy_to_host(got.data(), dperm.p, got.size() * 4, g_stream);
    for (int64_t r = 0; r < pc.count; ++r) reca::philox_permutation(seed, 40 + r, pc.n, want.data() + r * pc.n);
    const bool same = std::memcmp(got.data(), want.data(), got.size() * 4) == 0;
    record_check("philox permutations CPU==GPU", shape_str({pc.count, pc.n}), same ? 0.0 : 1.0, 0.0);
  }
}

// ---------------------------------------------------------------- every Backend op: CPU vs CUDA
// In the spirit of ggml's test-backend-ops: each op of model/backend.h runs on
// cpu_backend() and on the CUDA backend with the same random inputs (odd sizes
// included); outputs are compared with a per-op tolerance: bits for integer
// outputs and for ops whose arithmetic is the CPU's exactly (elementwise, index
// ops, ordered scatters), relative L2 against the CPU result otherwise. Every
// op that reduces is also run twice on the GPU: the bits must agree.
using reca::model::Backend;
Backend* g_cpu = nullptr;
Backend* g_gpu = nullptr;
std::string g_section = "setup";

// A tensor living on both backends (same bytes uploaded to each).
struct Twin {
  size_t bytes = 0;
  void* c = nullptr;
  void* g = nullptr;
  explicit Twin(size_t b) : bytes(b), c(g_cpu->alloc(int64_t(b))), g(g_gpu->alloc(int64_t(b))) {}
  ~Twin() {
    g_cpu->release(c);
    g_gpu->release(g);
  }
  Twin(const Twin&) = delete;
  Twin& operator=(const Twin&) = delete;
  void set(const void* host) {
    g_cpu->upload(c, host, int64_t(bytes));
    g_gpu->upload(g, host, int64_t(bytes));
  }
  float* cf() const { return static_cast<float*>(c); }
  float* gf() const { return static_cast<float*>(g); }
  int32_t* ci() const { return static_cast<int32_t*>(c); }
  int32_t* gi() const { return static_cast<int32_t*>(g); }
  uint8_t* cb() const { return static_cast<uint8_t*>(c); }
  uint8_t* gb() const { return static_cast<uint8_t*>(g); }
  template <class T>
  std::vector<T> cpu_out() const {
    std::vector<T> v(bytes / sizeof(T));
    g_cpu->download(v.data(), c, int64_t(bytes));
    return v;
  }
  template <class T>
  std::vector<T> gpu_out() const {
    std::vector<T> v(bytes / sizeof(T));
    g_gpu->download(v.data(), g, int64_t(bytes));
    return v;
  }
};
template <class T>
std::unique_ptr<Twin> twin(const std::vector<T>& host) {
  auto t = std::make_unique<Twin>(host.size() * sizeof(T));
  if (!host.empty()) t->set(host.data());
  return t;
}
std::vector<int32_t> host_ints(int64_t n, int32_t lo, int32_t hi) {  // uniform in [lo, hi)
  std::vector<int32_t> v(n);
  const uint64_t s = ++g_stream_id;
  for (int64_t i = 0; i < n; ++i) v[i] = lo + int32_t(reca::philox_u32(g_seed, s, uint64_t(i)) % uint32_t(hi - lo));
  return v;
}
std::vector<float> host_uniform(int64_t n, float lo, float hi) {
  std::vector<float> v(n);
  const uint64_t s = ++g_stream_id;
  for (int64_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * reca::philox_uniform(g_seed, s, uint64_t(i));
  return v;
}

void check_rel(const std::string& name, const std::string& shape, const std::vector<float>& gpu,
               const std::vector<float>& cpu, double tol) {
  record_check(g_section + ": " + name, shape, rel_l2(gpu.data(), to_double(cpu).data(), int64_t(cpu.size())), tol);
}
// Exact: the number of elements whose bytes differ (tolerance 0).
template <class T>
void check_bits(const std::string& name, const std::string& shape, const std::vector<T>& gpu, const std::vector<T>& cpu) {
  int64_t bad = 0;
  for (size_t i = 0; i < cpu.size(); ++i) bad += std::memcmp(&gpu[i], &cpu[i], sizeof(T)) != 0;
  record_check(g_section + ": " + name + " (elements differing)", shape, double(bad), 0.0);
}
void check_scalar(const std::string& name, const std::string& shape, double gpu, double cpu, double tol) {
  const double err = std::fabs(gpu - cpu) / std::max(std::fabs(cpu), 1e-30);
  record_check(g_section + ": " + name, shape, std::isfinite(gpu) ? err : INFINITY, tol);
}
void check_same_bits(const std::string& name, const std::string& shape, const void* a, const void* b, size_t bytes) {
  record_check(g_section + ": " + name + " GPU run-to-run bits", shape, std::memcmp(a, b, bytes) == 0 ? 0.0 : 1.0, 0.0);
}

void ops_memory() {
  g_section = "memory";
  for (int64_t n : {1, 3, 17, 4099}) {
    const auto host = host_normal(n);
    auto a = twin(host);
    Twin b(n * 4);
    g_gpu->copy(b.g, a->g, n * 4);
    g_cpu->copy(b.c, a->c, n * 4);
    check_bits("upload/copy/download", shape_str({n}), b.gpu_out<float>(), host);
    g_gpu->zero(b.g, n * 4);
    check_bits("zero", shape_str({n}), b.gpu_out<float>(), std::vector<float>(n, 0.0f));
  }
}

void ops_linear() {
  g_section = "linear";
  struct S { int64_t M, in, out; };
  for (S s : {S{1, 1, 1}, S{3, 17, 33}, S{17, 33, 3}, S{130, 64, 96}, S{33, 130, 263}, S{2, 256, 64}}) {
    const std::string sh = shape_str({s.M, s.in, s.out});
    auto x = twin(host_normal(s.M * s.in)), W = twin(host_normal(s.out * s.in, 0.1f)), b = twin(host_normal(s.out));
    Twin y(s.M * s.out * 4);
    g_cpu->linear_forward(y.cf(), x->cf(), W->cf(), b->cf(), s.M, s.in, s.out);
    g_gpu->linear_forward(y.gf(), x->gf(), W->gf(), b->gf(), s.M, s.in, s.out);
    check_rel("linear_forward y", sh, y.gpu_out<float>(), y.cpu_out<float>(), 1e-5);
    auto dy = twin(host_normal(s.M * s.out));
    auto dx = twin(host_normal(s.M * s.in, 1e-3f)), dW = twin(host_normal(s.out * s.in, 1e-3f)),
         db = twin(host_normal(s.out, 1e-3f));  // small: the comparison sees the increment
    const auto dW0 = dW->cpu_out<float>(), db0 = db->cpu_out<float>();
    g_cpu->linear_backward(dx->cf(), dW->cf(), db->cf(), dy->cf(), x->cf(), W->cf(), s.M, s.in, s.out);
    g_gpu->linear_backward(dx->gf(), dW->gf(), db->gf(), dy->gf(), x->gf(), W->gf(), s.M, s.in, s.out);
    check_rel("linear_backward dx (+=)", sh, dx->gpu_out<float>(), dx->cpu_out<float>(), 1e-5);
    check_rel("linear_backward dW (+=)", sh, dW->gpu_out<float>(), dW->cpu_out<float>(), 1e-5);
    check_rel("linear_backward db (+=)", sh, db->gpu_out<float>(), db->cpu_out<float>(), 1e-5);
    const auto dW1 = dW->gpu_out<float>(), db1 = db->gpu_out<float>();
    dW->set(dW0.data());
    db->set(db0.data());
    g_gpu->linear_backward(nullptr, dW->gf(), db->gf(), dy->gf(), x->gf(), W->gf(), s.M, s.in, s.out);
    const auto dW2 = dW->gpu_out<float>(), db2 = db->gpu_out<float>();
    check_same_bits("linear_backward dW", sh, dW1.data(), dW2.data(), dW1.size() * 4);
    check_same_bits("linear_backward db", sh, db1.data(), db2.data(), db1.size() * 4);
    // The fused MLP ops: f, gelu(f); gelu'(f) ⊙ dy·W (overwritten), dW and db (+=).
    Twin f(s.M * s.out * 4), g(s.M * s.out * 4), dxf(s.M * s.in * 4);
    g_cpu->linear_gelu_forward(f.cf(), g.cf(), x->cf(), W->cf(), b->cf(), s.M, s.in, s.out);
    g_gpu->linear_gelu_forward(f.gf(), g.gf(), x->gf(), W->gf(), b->gf(), s.M, s.in, s.out);
    check_rel("linear_gelu_forward f", sh, f.gpu_out<float>(), f.cpu_out<float>(), 1e-5);
    check_rel("linear_gelu_forward g", sh, g.gpu_out<float>(), g.cpu_out<float>(), 1e-5);
    auto fx = twin(host_normal(s.M * s.in));
    auto gW = twin(host_normal(s.out * s.in, 1e-3f)), gb = twin(host_normal(s.out, 1e-3f));
    g_cpu->linear_backward_gelu(dxf.cf(), gW->cf(), gb->cf(), dy->cf(), x->cf(), W->cf(), fx->cf(), s.M, s.in, s.out);
    g_gpu->linear_backward_gelu(dxf.gf(), gW->gf(), gb->gf(), dy->gf(), x->gf(), W->gf(), fx->gf(), s.M, s.in, s.out);
    check_rel("linear_backward_gelu dxf", sh, dxf.gpu_out<float>(), dxf.cpu_out<float>(), 1e-5);
    check_rel("linear_backward_gelu dW (+=)", sh, gW->gpu_out<float>(), gW->cpu_out<float>(), 1e-5);
    check_rel("linear_backward_gelu db (+=)", sh, gb->gpu_out<float>(), gb->cpu_out<float>(), 1e-5);
  }
}

void ops_layernorm_gelu() {
  g_section = "layernorm";
  struct S { int64_t rows, C; };
  for (S s : {S{1, 1}, S{3, 17}, S{33, 130}, S{130, 64}, S{17, 1027}}) {
    const std::string sh = shape_str({s.rows, s.C});
    std::vector<float> xh = host_normal(s.rows * s.C);
    for (float& v : xh) v = 2.0f + 1.5f * v;
    auto x = twin(xh), w = twin(host_normal(s.C)), b = twin(host_normal(s.C));
    Twin y(s.rows * s.C * 4), mean(s.rows * 4), rstd(s.rows * 4);
    g_cpu->layernorm_forward(y.cf(), mean.cf(), rstd.cf(), x->cf(), w->cf(), b->cf(), s.rows, s.C);
    g_gpu->layernorm_forward(y.gf(), mean.gf(), rstd.gf(), x->gf(), w->gf(), b->gf(), s.rows, s.C);
    check_rel("layernorm_forward y", sh, y.gpu_out<float>(), y.cpu_out<float>(), 1e-5);
    check_rel("layernorm_forward mean", sh, mean.gpu_out<float>(), mean.cpu_out<float>(), 1e-5);
    check_rel("layernorm_forward rstd", sh, rstd.gpu_out<float>(), rstd.cpu_out<float>(), 1e-5);
    // The backward on both from the CPU's statistics.
    const auto mc = mean.cpu_out<float>(), rc = rstd.cpu_out<float>();
    auto m2 = twin(mc), r2 = twin(rc), dy = twin(host_normal(s.rows * s.C));
    auto dx = twin(host_normal(s.rows * s.C, 1e-3f)), dw = twin(host_normal(s.C, 1e-3f)),
         db = twin(host_normal(s.C, 1e-3f));
    g_cpu->layernorm_backward(dx->cf(), dw->cf(), db->cf(), dy->cf(), x->cf(), w->cf(), m2->cf(), r2->cf(), s.rows, s.C);
    g_gpu->layernorm_backward(dx->gf(), dw->gf(), db->gf(), dy->gf(), x->gf(), w->gf(), m2->gf(), r2->gf(), s.rows, s.C);
    check_rel("layernorm_backward dx (+=)", sh, dx->gpu_out<float>(), dx->cpu_out<float>(), 1e-5);
    check_rel("layernorm_backward dw (+=)", sh, dw->gpu_out<float>(), dw->cpu_out<float>(), 1e-5);
    check_rel("layernorm_backward db (+=)", sh, db->gpu_out<float>(), db->cpu_out<float>(), 1e-5);
  }
  g_section = "gelu";
  for (S s : {S{1, 1}, S{3, 17}, S{33, 130}, S{17, 256}}) {
    const std::string sh = shape_str({s.rows, s.C});
    auto x = twin(host_normal(s.rows * s.C, 2.0f)), dy = twin(host_normal(s.rows * s.C));
    auto dx = twin(host_normal(s.rows * s.C, 1e-3f));
    Twin y(s.rows * s.C * 4);
    g_cpu->gelu_forward(y.cf(), x->cf(), s.rows, s.C);
    g_gpu->gelu_forward(y.gf(), x->gf(), s.rows, s.C);
    check_rel("gelu_forward", sh, y.gpu_out<float>(), y.cpu_out<float>(), 1e-6);
    g_cpu->gelu_backward(dx->cf(), x->cf(), dy->cf(), s.rows, s.C);
    g_gpu->gelu_backward(dx->gf(), x->gf(), dy->gf(), s.rows, s.C);
    check_rel("gelu_backward dx (+=)", sh, dx->gpu_out<float>(), dx->cpu_out<float>(), 1e-6);
  }
}

void ops_elementwise() {
  g_section = "elementwise";
  for (int64_t n : {1, 3, 17, 130, 4099, 100003}) {
    const std::string sh = shape_str({n});
    auto a = twin(host_normal(n)), b = twin(host_normal(n));
    Twin out(n * 4);
    g_cpu->add(out.cf(), a->cf(), b->cf(), n);
    g_gpu->add(out.gf(), a->gf(), b->gf(), n);
    check_bits("add", sh, out.gpu_out<float>(), out.cpu_out<float>());
    g_cpu->axpy(a->cf(), -0.37f, b->cf(), n);
    g_gpu->axpy(a->gf(), -0.37f, b->gf(), n);
    check_bits("axpy", sh, a->gpu_out<float>(), a->cpu_out<float>());
    g_cpu->scale(a->cf(), 1.7f, n);
    g_gpu->scale(a->gf(), 1.7f, n);
    check_bits("scale", sh, a->gpu_out<float>(), a->cpu_out<float>());
    std::vector<float> ch = host_normal(n, 2.0f);
    if (n > 2) ch[1] = NAN;
    auto c = twin(ch);
    g_cpu->clamp(c->cf(), -1.0f, 1.0f, n);
    g_gpu->clamp(c->gf(), -1.0f, 1.0f, n);
    check_bits("clamp (NaN kept)", sh, c->gpu_out<float>(), c->cpu_out<float>());
    auto cond = twin(host_normal(n)), unc = twin(host_normal(n));
    g_cpu->cfg_combine(out.cf(), cond->cf(), unc->cf(), 3.5f, n);
    g_gpu->cfg_combine(out.gf(), cond->gf(), unc->gf(), 3.5f, n);
    check_bits("cfg_combine", sh, out.gpu_out<float>(), out.cpu_out<float>());
    g_cpu->euler_step(cond->cf(), unc->cf(), 0.125f, n);
    g_gpu->euler_step(cond->gf(), unc->gf(), 0.125f, n);
    check_bits("euler_step", sh, cond->gpu_out<float>(), cond->cpu_out<float>());
  }
  for (auto s : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {5, 130}}) {
    const int64_t B = s.first, n = s.second;
    const std::string sh = shape_str({B, n});
    auto x0 = twin(host_normal(B * n)), eps = twin(host_normal(B * n)), t = twin(host_uniform(B, 0.01f, 0.99f));
    Twin zt(B * n * 4), v(B * n * 4);
    g_cpu->flow_noise(zt.cf(), v.cf(), x0->cf(), eps->cf(), t->cf(), B, n);
    g_gpu->flow_noise(zt.gf(), v.gf(), x0->gf(), eps->gf(), t->gf(), B, n);
    check_bits("flow_noise zt", sh, zt.gpu_out<float>(), zt.cpu_out<float>());
    check_bits("flow_noise v", sh, v.gpu_out<float>(), v.cpu_out<float>());
  }
  g_section = "rows";
  struct R { int64_t B, Ls, row0, Lb, D; };
  for (R r : {R{1, 1, 0, 1, 1}, R{3, 33, 2, 17, 5}, R{2, 130, 67, 63, 64}}) {
    const std::string sh = shape_str({r.B, r.Ls, r.row0, r.Lb, r.D});
    for (bool acc : {false, true}) {
      auto seq = twin(host_normal(r.B * r.Ls * r.D)), blk = twin(host_normal(r.B * r.Lb * r.D));
      g_cpu->rows_to_seq(seq->cf(), blk->cf(), r.B, r.Ls, r.row0, r.Lb, r.D, acc);
      g_gpu->rows_to_seq(seq->gf(), blk->gf(), r.B, r.Ls, r.row0, r.Lb, r.D, acc);
      check_bits(acc ? "rows_to_seq (+=)" : "rows_to_seq", sh, seq->gpu_out<float>(), seq->cpu_out<float>());
      auto blk2 = twin(host_normal(r.B * r.Lb * r.D));
      g_cpu->rows_from_seq(blk2->cf(), seq->cf(), r.B, r.Ls, r.row0, r.Lb, r.D, acc);
      g_gpu->rows_from_seq(blk2->gf(), seq->gf(), r.B, r.Ls, r.row0, r.Lb, r.D, acc);
      check_bits(acc ? "rows_from_seq (+=)" : "rows_from_seq", sh, blk2->gpu_out<float>(), blk2->cpu_out<float>());
    }
  }
}

void ops_attention() {
  g_section = "attention";
  struct A { int64_t B, L, heads, width, cond_len; bool causal; int pad; };  // pad: 0 none, 1 some, 2 + a sample's condition all PAD
  const A cases[] = {{1, 1, 1, 4, 0, true, 0},    {1, 3, 1, 8, 1, false, 0},  {2, 17, 2, 16, 5, true, 1},
                     {3, 33, 4, 64, 33, false, 1}, {2, 130, 2, 64, 40, true, 2}, {2, 67, 3, 48, 0, true, 1},
                     {1, 40, 2, 96, 17, false, 2}};
  for (const A& a : cases) {
    const int64_t C3 = 3 * a.width, H = a.heads, L = a.L, B = a.B;
    const std::string sh = shape_str({B, L, H, a.width, a.cond_len}) + (a.causal ? " causal" : "") +
                           (a.pad ? " pad" : "");
    std::vector<uint8_t> padh(B * L, 0);
    if (a.pad) {
      const auto r = host_ints(B * L, 0, 4);
      for (int64_t i = 0; i < B * L; ++i) padh[i] = r[i] == 0;
      if (a.pad == 2)
        for (int64_t j = 0; j < std::min(a.cond_len, L); ++j) padh[j] = 1;  // sample 0: condition queries see nothing
    }
    auto qkv = twin(host_normal(B * L * C3)), pad = twin(padh);
    const uint8_t* pc = a.pad ? pad->cb() : nullptr;
    const uint8_t* pg = a.pad ? pad->gb() : nullptr;
    Twin out(B * L * a.width * 4), att(B * H * L * L * 4);
    g_cpu->attention_forward(out.cf(), att.cf(), qkv->cf(), pc, B, L, H, a.width, a.cond_len, a.causal);
    g_gpu->attention_forward(out.gf(), att.gf(), qkv->gf(), pg, B, L, H, a.width, a.cond_len, a.causal);
    check_rel("attention_forward out", sh, out.gpu_out<float>(), out.cpu_out<float>(), 1e-5);
    check_rel("attention_forward att", sh, att.gpu_out<float>(), att.cpu_out<float>(), 1e-5);
    // Backward from the CPU's att on both (isolates the backward).
    auto attc = twin(att.cpu_out<float>()), dout = twin(host_normal(B * L * a.width));
    auto dqkv = twin(host_normal(B * L * C3, 1e-3f));
    g_cpu->attention_backward(dqkv->cf(), dout->cf(), qkv->cf(), attc->cf(), pc, B, L, H, a.width, a.cond_len, a.causal);
    g_gpu->attention_backward(dqkv->gf(), dout->gf(), qkv->gf(), attc->gf(), pg, B, L, H, a.width, a.cond_len, a.causal);
    const auto g1 = dqkv->gpu_out<float>();
    check_rel("attention_backward dqkv (+=)", sh, g1, dqkv->cpu_out<float>(), 1e-5);
    // Run-to-run: the same backward again from the same start.
    auto dqkv2 = twin(host_normal(B * L * C3));
    auto dqkv3 = twin(dqkv2->gpu_out<float>());
    g_gpu->attention_backward(dqkv2->gf(), dout->gf(), qkv->gf(), attc->gf(), pg, B, L, H, a.width, a.cond_len, a.causal);
    g_gpu->attention_backward(dqkv3->gf(), dout->gf(), qkv->gf(), attc->gf(), pg, B, L, H, a.width, a.cond_len, a.causal);
    const auto r2 = dqkv2->gpu_out<float>(), r3 = dqkv3->gpu_out<float>();
    check_same_bits("attention_backward", sh, r2.data(), r3.data(), r2.size() * 4);
    // Cached: the condition block, then target rows in two pieces.
    const int64_t Lc = std::min(a.cond_len, L);
    const int64_t cuts[] = {0, Lc, Lc + (L - Lc) / 2, L};
    for (int k = 0; k < 3; ++k) {
      const int64_t row0 = cuts[k], Lq = cuts[k + 1] - cuts[k];
      if (Lq <= 0) continue;
      Twin o(B * Lq * a.width * 4);
      g_cpu->attention_cached(o.cf(), qkv->cf(), pc, B, L, row0, Lq, H, a.width, a.cond_len, a.causal);
      g_gpu->attention_cached(o.gf(), qkv->gf(), pg, B, L, row0, Lq, H, a.width, a.cond_len, a.causal);
      check_rel("attention_cached rows " + std::to_string(row0) + "+" + std::to_string(Lq), sh, o.gpu_out<float>(),
                o.cpu_out<float>(), 1e-5);
    }
  }
}

void ops_embedding() {
  g_section = "embedding";
  struct E { int64_t V, N, D; };
  for (E e : {E{1, 1, 1}, E{17, 33, 3}, E{5, 130, 64}, E{263, 130, 17}, E{3, 1000, 33}}) {
    const std::string sh = shape_str({e.V, e.N, e.D});
    auto table = twin(host_normal(e.V * e.D)), ids = twin(host_ints(e.N, -1, int32_t(e.V)));
    auto out = twin(host_normal(e.N * e.D));  // rows with id -1 stay as they are
    g_cpu->embedding_forward(out->cf(), table->cf(), ids->ci(), e.N, e.D);
    g_gpu->embedding_forward(out->gf(), table->gf(), ids->gi(), e.N, e.D);
    check_bits("embedding_forward", sh, out->gpu_out<float>(), out->cpu_out<float>());
    auto dtable = twin(host_normal(e.V * e.D)), dout = twin(host_normal(e.N * e.D));
    g_cpu->embedding_backward(dtable->cf(), dout->cf(), ids->ci(), e.N, e.D);
    g_gpu->embedding_backward(dtable->gf(), dout->gf(), ids->gi(), e.N, e.D);
    check_bits("embedding_backward (ordered +=)", sh, dtable->gpu_out<float>(), dtable->cpu_out<float>());
  }
  g_section = "pos_add";
  struct P { int64_t B, seq_len, L, D, row0; };
  for (P p : {P{1, 1, 1, 1, 0}, P{3, 33, 17, 5, 16}, P{2, 130, 63, 64, 67}}) {
    const std::string sh = shape_str({p.B, p.seq_len, p.L, p.D}) + " row0 " + std::to_string(p.row0);
    auto x = twin(host_normal(p.B * p.seq_len * p.D)), pos = twin(host_normal(p.L * p.D));
    g_cpu->pos_add_forward(x->cf() + p.row0 * p.D, pos->cf(), p.B, p.seq_len, p.L, p.D);
    g_gpu->pos_add_forward(x->gf() + p.row0 * p.D, pos->gf(), p.B, p.seq_len, p.L, p.D);
    check_bits("pos_add_forward", sh, x->gpu_out<float>(), x->cpu_out<float>());
    auto dpos = twin(host_normal(p.L * p.D));
    g_cpu->pos_add_backward(dpos->cf(), x->cf() + p.row0 * p.D, p.B, p.seq_len, p.L, p.D);
    g_gpu->pos_add_backward(dpos->gf(), x->gf() + p.row0 * p.D, p.B, p.seq_len, p.L, p.D);
    check_bits("pos_add_backward (ordered +=)", sh, dpos->gpu_out<float>(), dpos->cpu_out<float>());
  }
}

void ops_image() {
  g_section = "image";
  for (int64_t n : {1, 17, 4099}) {
    std::vector<int32_t> r = host_ints(n, 0, 256);
    std::vector<uint8_t> bytes(r.begin(), r.end());
    auto in = twin(bytes);
    Twin out(n * 4);
    g_cpu->image_from_bytes(out.cf(), in->cb(), n);
    g_gpu->image_from_bytes(out.gf(), in->gb(), n);
    check_bits("image_from_bytes", shape_str({n}), out.gpu_out<float>(), out.cpu_out<float>());
    std::vector<float> f = host_uniform(n, -1.2f, 1.2f);
    for (int64_t i = 0; i < n; i += 7) f[i] = (float(i % 256) + 0.5f) / 127.5f - 1.0f;  // near ties
    if (n > 3) f[3] = NAN, f[2] = INFINITY;
    auto fin = twin(f);
    Twin bo(n);
    g_cpu->image_to_bytes(bo.cb(), fin->cf(), n);
    g_gpu->image_to_bytes(bo.gb(), fin->gf(), n);
    check_bits("image_to_bytes", shape_str({n}), bo.gpu_out<uint8_t>(), bo.cpu_out<uint8_t>());
  }
  struct I { int64_t B, S, P; };
  for (I im : {I{1, 1, 1}, I{3, 12, 3}, I{2, 16, 4}, I{1, 34, 17}}) {
    const std::string sh = shape_str({im.B, im.S, im.P});
    const int64_t n = im.B * im.S * im.S * 3;
    auto img = twin(host_normal(n));
    Twin tok(n * 4), back(n * 4);
    g_cpu->patchify_forward(tok.cf(), img->cf(), im.B, im.S, im.P);
    g_gpu->patchify_forward(tok.gf(), img->gf(), im.B, im.S, im.P);
    check_bits("patchify_forward", sh, tok.gpu_out<float>(), tok.cpu_out<float>());
    g_cpu->unpatchify_forward(back.cf(), tok.cf(), im.B, im.S, im.P);
    g_gpu->unpatchify_forward(back.gf(), tok.gf(), im.B, im.S, im.P);
    check_bits("unpatchify_forward", sh, back.gpu_out<float>(), back.cpu_out<float>());
    const int64_t So = im.S / im.P;
    Twin pooled(im.B * So * So * 3 * 4);
    g_cpu->avgpool_forward(pooled.cf(), img->cf(), im.B, im.S, im.P);
    g_gpu->avgpool_forward(pooled.gf(), img->gf(), im.B, im.S, im.P);
    check_rel("avgpool_forward (f = P)", sh, pooled.gpu_out<float>(), pooled.cpu_out<float>(), 1e-6);
  }
}

void ops_losses() {
  g_section = "cross_entropy";
  struct C { int64_t rows, V; };
  for (C c : {C{1, 1}, C{3, 17}, C{33, 263}, C{130, 64}, C{17, 1025}}) {
    const std::string sh = shape_str({c.rows, c.V});
    auto logits = twin(host_normal(c.rows * c.V, 3.0f));
    std::vector<int32_t> t = host_ints(c.rows, -1, int32_t(c.V));
    if (c.rows > 1) t[0] = int32_t(c.V - 1);
    auto tg = twin(t), dl = twin(host_normal(c.rows * c.V, 1e-4f));
    Twin losses(c.rows * 4);
    const float scale = 0.37f;
    const double sc = g_cpu->cross_entropy_forward_backward(losses.cf(), dl->cf(), logits->cf(), tg->ci(), scale, c.rows, c.V);
    const double sg = g_gpu->cross_entropy_forward_backward(losses.gf(), dl->gf(), logits->gf(), tg->gi(), scale, c.rows, c.V);
    check_scalar("cross_entropy_forward_backward sum", sh, sg, sc, 1e-6);
    check_rel("cross_entropy losses", sh, losses.gpu_out<float>(), losses.cpu_out<float>(), 1e-6);
    check_rel("cross_entropy dlogits (+=)", sh, dl->gpu_out<float>(), dl->cpu_out<float>(), 1e-5);
    const double fc = g_cpu->cross_entropy_forward(nullptr, logits->cf(), tg->ci(), c.rows, c.V);
    const double fg = g_gpu->cross_entropy_forward(nullptr, logits->gf(), tg->gi(), c.rows, c.V);
    const double fg2 = g_gpu->cross_entropy_forward(nullptr, logits->gf(), tg->gi(), c.rows, c.V);
    check_scalar("cross_entropy_forward sum", sh, fg, fc, 1e-6);
    check_same_bits("cross_entropy_forward sum", sh, &fg, &fg2, sizeof(double));
  }
  g_section = "mse";
  for (int64_t n : {1, 17, 4099, 70001}) {
    const std::string sh = shape_str({n});
    auto p = twin(host_normal(n)), t = twin(host_normal(n)), dp = twin(host_normal(n));
    const float fc = g_cpu->mse_forward(p->cf(), t->cf(), n);
    const float fg = g_gpu->mse_forward(p->gf(), t->gf(), n), fg2 = g_gpu->mse_forward(p->gf(), t->gf(), n);
    check_scalar("mse_forward", sh, fg, fc, 1e-6);
    check_same_bits("mse_forward", sh, &fg, &fg2, sizeof(float));
    g_cpu->mse_backward(dp->cf(), p->cf(), t->cf(), 0.7f, n);
    g_gpu->mse_backward(dp->gf(), p->gf(), t->gf(), 0.7f, n);
    check_bits("mse_backward (+=)", sh, dp->gpu_out<float>(), dp->cpu_out<float>());
  }
}

void ops_vq() {
  g_section = "vq";
  struct Q { int64_t n, K, C; };
  for (Q q : {Q{1, 1, 1}, Q{33, 17, 3}, Q{130, 64, 8}, Q{257, 130, 33}}) {
    const std::string sh = shape_str({q.n, q.K, q.C});
    std::vector<float> cb = host_normal(q.K * q.C, 0.5f);
    if (q.K > 3)  // a duplicate row and a near-duplicate: ties go to the lower index
      for (int64_t c = 0; c < q.C; ++c) cb[2 * q.C + c] = cb[c], cb[3 * q.C + c] = std::nextafter(cb[q.C + c], 1.0f);
    std::vector<float> z = host_normal(q.n * q.C, 0.5f);
    for (int64_t r = 0; r < q.n; r += 5)  // rows sitting on codebook rows (exact ties)
      for (int64_t c = 0; c < q.C; ++c) z[r * q.C + c] = cb[(r % q.K) * q.C + c];
    auto zt = twin(z), cbt = twin(cb);
    Twin codes(q.n * 4);
    g_cpu->vq_nearest(codes.ci(), zt->cf(), cbt->cf(), q.n, q.K, q.C);
    g_gpu->vq_nearest(codes.gi(), zt->gf(), cbt->gf(), q.n, q.K, q.C);
    const auto cc = codes.cpu_out<int32_t>();
    check_bits("vq_nearest codes", sh, codes.gpu_out<int32_t>(), cc);
    auto ct = twin(cc);  // both continue from the CPU's codes
    Twin zq(q.n * q.C * 4);
    g_cpu->vq_gather(zq.cf(), ct->ci(), cbt->cf(), q.n, q.C);
    g_gpu->vq_gather(zq.gf(), ct->gi(), cbt->gf(), q.n, q.C);
    check_bits("vq_gather", sh, zq.gpu_out<float>(), zq.cpu_out<float>());
    float lc = 0, lm = 0, gc = 0, gm = 0, gc2 = 0, gm2 = 0;
    g_cpu->vq_loss_forward(&lc, &lm, zt->cf(), cbt->cf(), ct->ci(), q.n, q.C);
    g_gpu->vq_loss_forward(&gc, &gm, zt->gf(), cbt->gf(), ct->gi(), q.n, q.C);
    g_gpu->vq_loss_forward(&gc2, &gm2, zt->gf(), cbt->gf(), ct->gi(), q.n, q.C);
    check_scalar("vq_loss_forward codebook", sh, gc, lc, 1e-6);
    check_scalar("vq_loss_forward commit", sh, gm, lm, 1e-6);
    check_same_bits("vq_loss_forward", sh, &gc, &gc2, sizeof(float));
    for (bool with_dzq : {true, false}) {
      auto dz = twin(host_normal(q.n * q.C, 0.01f)), dcb = twin(host_normal(q.K * q.C, 0.01f));
      auto dzq = twin(host_normal(q.n * q.C, 0.01f));
      g_cpu->vq_loss_backward(dz->cf(), dcb->cf(), with_dzq ? dzq->cf() : nullptr, zt->cf(), cbt->cf(), ct->ci(), 1.0f,
                              0.8f, q.n, q.K, q.C);
      g_gpu->vq_loss_backward(dz->gf(), dcb->gf(), with_dzq ? dzq->gf() : nullptr, zt->gf(), cbt->gf(), ct->gi(), 1.0f,
                              0.8f, q.n, q.K, q.C);
      const std::string tag = with_dzq ? "" : " (no dz_q)";
      check_bits("vq_loss_backward dz (+=)" + tag, sh, dz->gpu_out<float>(), dz->cpu_out<float>());
      check_bits("vq_loss_backward dcodebook (ordered +=)" + tag, sh, dcb->gpu_out<float>(), dcb->cpu_out<float>());
    }
  }
}

void ops_flow_optim() {
  g_section = "time_embed";
  for (int64_t B : {1, 3, 17}) {
    std::vector<float> t = host_uniform(B, 0.0f, 1.0f);
    t[0] = 0.0f;
    if (B > 2) t[2] = 1.0f;
    auto tt = twin(t);
    Twin out(B * 256 * 4);
    g_cpu->time_embed_forward(out.cf(), tt->cf(), B);
    g_gpu->time_embed_forward(out.gf(), tt->gf(), B);
    check_rel("time_embed_forward", shape_str({B}), out.gpu_out<float>(), out.cpu_out<float>(), 1e-6);
  }
  g_section = "grad_norm";
  const std::vector<int64_t> sizes = {0, 1, 4097, 17, 10000, 130};
  std::vector<std::unique_ptr<Twin>> segs;
  std::vector<const float*> pc, pg;
  for (int64_t n : sizes) {
    segs.push_back(twin(host_normal(n, 0.01f)));
    pc.push_back(segs.back()->cf());
    pg.push_back(segs.back()->gf());
  }
  bool nc = true, ng = true, ng2 = true;
  const float nrc = g_cpu->grad_norm_segments(pc.data(), sizes.data(), int64_t(sizes.size()), &nc);
  const float nrg = g_gpu->grad_norm_segments(pg.data(), sizes.data(), int64_t(sizes.size()), &ng);
  const float nrg2 = g_gpu->grad_norm_segments(pg.data(), sizes.data(), int64_t(sizes.size()), &ng2);
  const std::string sh = "6 segments, 14245";
  check_scalar("grad_norm_segments", sh, nrg, nrc, 1e-6);
  record_check(g_section + ": grad_norm_segments nonfinite flag (finite input)", sh, (nc || ng) ? 1.0 : 0.0, 0.0);
  check_same_bits("grad_norm_segments", sh, &nrg, &nrg2, sizeof(float));
  for (float bad : {NAN, INFINITY}) {
    std::vector<float> h = host_normal(10000, 0.01f);
    h[4321] = bad;
    segs[4]->set(h.data());
    g_cpu->grad_norm_segments(pc.data(), sizes.data(), int64_t(sizes.size()), &nc);
    const float r = g_gpu->grad_norm_segments(pg.data(), sizes.data(), int64_t(sizes.size()), &ng);
    record_check(g_section + std::string(": nonfinite flag with a ") + (bad != bad ? "NaN" : "+Inf"), sh,
                 (nc && ng && std::isnan(r)) ? 0.0 : 1.0, 0.0);
  }
  g_section = "adamw";
  {
    const std::vector<int64_t> ns = {1, 4099, 17, 0, 70000};
    std::vector<std::unique_ptr<Twin>> p, g, m, v, e;
    std::vector<reca::AdamWSegment<float>> sc, sg;
    for (size_t i = 0; i < ns.size(); ++i) {
      const int64_t n = ns[i];
      p.push_back(twin(host_normal(n)));
      g.push_back(twin(host_normal(n, 0.1f)));
      m.push_back(twin(host_normal(n, 0.01f)));
      std::vector<float> vh = host_normal(n, 0.01f);
      for (float& x : vh) x = x * x;
      v.push_back(twin(vh));
      e.push_back(twin(host_normal(n)));
      const bool ema = i % 2 == 0, decay = i % 3 != 1;
      sc.push_back({p[i]->cf(), g[i]->cf(), m[i]->cf(), v[i]->cf(), ema ? e[i]->cf() : nullptr, n, decay});
      sg.push_back({p[i]->gf(), g[i]->gf(), m[i]->gf(), v[i]->gf(), ema ? e[i]->gf() : nullptr, n, decay});
    }
    const reca::AdamWConfig cfg{1e-2, 0.9, 0.95, 1e-8, 0.02, 7, 0.5, 0.999};
    g_cpu->adamw_step_segments(sc.data(), int64_t(sc.size()), cfg);
    g_gpu->adamw_step_segments(sg.data(), int64_t(sg.size()), cfg);
    for (size_t i = 0; i < ns.size(); ++i) {
      if (ns[i] == 0) continue;
      const std::string s2 = shape_str({ns[i]}) + " segment " + std::to_string(i);
      check_rel("adamw_step_segments p", s2, p[i]->gpu_out<float>(), p[i]->cpu_out<float>(), 1e-6);
      check_rel("adamw_step_segments m", s2, m[i]->gpu_out<float>(), m[i]->cpu_out<float>(), 1e-6);
      check_rel("adamw_step_segments v", s2, v[i]->gpu_out<float>(), v[i]->cpu_out<float>(), 1e-6);
      check_rel("adamw_step_segments ema", s2, e[i]->gpu_out<float>(), e[i]->cpu_out<float>(), 1e-6);
    }
  }
}

void ops_sampling() {
  g_section = "sampling";
  struct S { int64_t rows, V; };
  for (S s : {S{1, 1}, S{33, 17}, S{17, 263}, S{5, 1025}}) {
    std::vector<float> lg = host_normal(s.rows * s.V, 2.0f);
    for (int64_t r = 0; r < s.rows; r += 3)  // repeated maxima: the lowest index wins
      if (s.V > 4) lg[r * s.V + 4] = lg[r * s.V + 1] = 50.0f;
    auto logits = twin(lg), u = twin(host_uniform(s.rows, 0.001f, 0.999f));
    for (float temp : {0.0f, 0.7f, 1.0f})
      for (int64_t k : {int64_t(0), int64_t(1), int64_t(5), s.V}) {
        const std::string sh = shape_str({s.rows, s.V}) + " T " + num(temp) + " k " + std::to_string(k);
        Twin ids(s.rows * 4), probs(s.rows * 4);
        g_cpu->sample_categorical(ids.ci(), probs.cf(), logits->cf(), u->cf(), temp, k, s.rows, s.V);
        g_gpu->sample_categorical(ids.gi(), probs.gf(), logits->gf(), u->gf(), temp, k, s.rows, s.V);
        check_bits("sample_categorical ids", sh, ids.gpu_out<int32_t>(), ids.cpu_out<int32_t>());
        check_rel("sample_categorical probs", sh, probs.gpu_out<float>(), probs.cpu_out<float>(), 1e-5);
      }
  }
  g_section = "maskgit";
  struct M { int64_t B, N, step, total; };
  for (M m : {M{1, 1, 0, 1}, M{3, 17, 0, 8}, M{2, 130, 3, 8}, M{4, 256, 7, 8}, M{2, 33, 5, 12}}) {
    const std::string sh = shape_str({m.B, m.N}) + " step " + std::to_string(m.step) + "/" + std::to_string(m.total);
    std::vector<int32_t> mk = host_ints(m.B * m.N, 0, 3);
    std::vector<uint8_t> maskh(m.B * m.N);
    for (int64_t i = 0; i < m.B * m.N; ++i) maskh[i] = mk[i] != 0;
    std::vector<float> conf = host_uniform(m.B * m.N, 0.0f, 1.0f);
    for (int64_t i = 0; i < m.B * m.N; i += 4) conf[i] = 0.5f;  // ties: lower index first
    auto tokens = twin(host_ints(m.B * m.N, 0, 64)), mask = twin(maskh), sampled = twin(host_ints(m.B * m.N, 0, 64));
    auto cf = twin(conf);
    Twin to(m.B * m.N * 4), mo(m.B * m.N);
    g_cpu->maskgit_select(to.ci(), mo.cb(), tokens->ci(), mask->cb(), sampled->ci(), cf->cf(), 64, m.step, m.total, m.B, m.N);
    g_gpu->maskgit_select(to.gi(), mo.gb(), tokens->gi(), mask->gb(), sampled->gi(), cf->gf(), 64, m.step, m.total, m.B, m.N);
    check_bits("maskgit_select tokens", sh, to.gpu_out<int32_t>(), to.cpu_out<int32_t>());
    check_bits("maskgit_select mask", sh, mo.gpu_out<uint8_t>(), mo.cpu_out<uint8_t>());
    // In place (tokens_out = tokens, mask_out = mask), as the sampler calls it.
    g_cpu->maskgit_select(tokens->ci(), mask->cb(), tokens->ci(), mask->cb(), sampled->ci(), cf->cf(), 64, m.step, m.total, m.B, m.N);
    g_gpu->maskgit_select(tokens->gi(), mask->gb(), tokens->gi(), mask->gb(), sampled->gi(), cf->gf(), 64, m.step, m.total, m.B, m.N);
    check_bits("maskgit_select in place tokens", sh, tokens->gpu_out<int32_t>(), tokens->cpu_out<int32_t>());
    check_bits("maskgit_select in place mask", sh, mask->gpu_out<uint8_t>(), mask->cpu_out<uint8_t>());
  }
}

// ---------------------------------------------------------------- whole-model parity
// A tiny RecaModel on each backend from the same seed; one Trainer step per mode
// × task (and the tokenizer stage) with every group trainable and an EMA: the
// loss, the gradient, the updated parameters and EMA, CPU vs GPU; and the GPU
// twice: the bits must agree.
struct StepResult {
  double loss = 0, grad_norm = 0;
  std::vector<float> grads, params, ema;
};

StepResult run_step(Backend& be, reca::model::Mode mode, int task, const std::vector<uint8_t>& images,
                    const std::vector<int32_t>& captions, int64_t B) {
  using namespace reca::model;
  RecaModel model(ModelConfig::preset("tiny", mode), be);
  model.init(1234);
  TrainerOptions o;
  o.weight_reca = task == 0 ? 1.0 : 0.0;
  o.weight_t2i = task == 1 ? 1.0 : 0.0;
  o.weight_i2t = task == 2 ? 1.0 : 0.0;
  o.tokenizer = task == 3;
  o.trainable = Trainable{true, true, true, true};
  o.lr = 1e-3;
  o.ema = 0.99;
  o.seed = 77;
  Trainer tr(model, o);
  StepBatch batch;
  batch.B = B;
  batch.images = images.data();
  batch.captions = captions.data();
  const StepStats st = tr.step(batch);
  StepResult r;
  r.loss = st.loss;
  r.grad_norm = st.grad_norm;
  const int64_t n = model.param_floats();
  r.grads.resize(n), r.params.resize(n), r.ema.resize(n);
  be.download(r.grads.data(), tr.grads(), n * 4);
  model.get_params(r.params.data());
  be.download(r.ema.data(), tr.ema(), n * 4);
  return r;
}

void model_parity() {
  using namespace reca::model;
  g_section = "model";
  const int64_t B = 3;
  const ModelConfig tiny = ModelConfig::preset("tiny", Mode::Ar);
  const int64_t S = tiny.image_size, T = tiny.max_text_len;
  std::vector<uint8_t> images(B * S * S * 3);
  {
    const auto r = host_ints(int64_t(images.size()), 0, 256);
    for (size_t i = 0; i < images.size(); ++i) images[i] = uint8_t(r[i]);
  }
  std::vector<int32_t> captions(B * T);
  const char* texts[] = {"a red square on blue", "two dots", "a long caption that is cut at the max text length of the tiny preset"};
  for (int64_t b = 0; b < B; ++b) encode_text(texts[b % 3], T, captions.data() + b * T);
  const char* task_names[] = {"reca", "t2i", "i2t", "tokenizer"};
  for (Mode mode : {Mode::Ar, Mode::Mask, Mode::Flow})
    for (int task = 0; task < 4; ++task) {
      if (task == 3 && mode == Mode::Flow) continue;  // no tokenizer in the flow mode
      const std::string sh = std::string(mode_name(mode)) + " " + task_names[task] + " B=3 tiny";
      try {
        const StepResult c = run_step(*g_cpu, mode, task, images, captions, B);
        const StepResult g1 = run_step(*g_gpu, mode, task, images, captions, B);
        const StepResult g2 = run_step(*g_gpu, mode, task, images, captions, B);
        check_scalar("loss CPU vs GPU", sh, g1.loss, c.loss, 1e-5);
        check_scalar("grad norm CPU vs GPU", sh, g1.grad_norm, c.grad_norm, 1e-4);
        check_rel("grads CPU vs GPU (rel L2, whole buffer)", sh, g1.grads, c.grads, 1e-4);
        // The first AdamW step moves each parameter by about ±lr (m̂/√v̂ = g/|g|): an element
        // whose gradient is within rounding of 0 may move the other way on the other
        // backend, hence a looser bound than the gradients' relative error suggests.
        check_rel("params after the step CPU vs GPU", sh, g1.params, c.params, 1e-4);
        check_rel("ema after the step CPU vs GPU", sh, g1.ema, c.ema, 1e-5);
        const bool same = std::memcmp(&g1.loss, &g2.loss, sizeof(double)) == 0 &&
                          std::memcmp(&g1.grad_norm, &g2.grad_norm, sizeof(double)) == 0 &&
                          std::memcmp(g1.grads.data(), g2.grads.data(), g1.grads.size() * 4) == 0 &&
                          std::memcmp(g1.params.data(), g2.params.data(), g1.params.size() * 4) == 0 &&
                          std::memcmp(g1.ema.data(), g2.ema.data(), g1.ema.size() * 4) == 0;
        record_check(g_section + ": step GPU run-to-run bits (loss, grads, params, ema)", sh, same ? 0.0 : 1.0, 0.0);
      } catch (const reca::Error& e) {
        say("  FAIL %s: %s: %s\n", sh.c_str(), reca::error_code_name(e.code()), e.what());
        record_check(g_section + ": step raised " + std::string(reca::error_code_name(e.code())), sh, INFINITY, 0.0);
      }
    }
}

// Runs every section; an engine error inside one fails it and moves on.
void backend_checks(bool with_model) {
  std::string why;
  g_cpu = &reca::model::cpu_backend();
  g_gpu = reca::model::cuda_backend_or_null(&why);
  if (!g_gpu) {
    say("  no CUDA backend: %s\n", why.c_str());
    record_check("cuda backend available", why, INFINITY, 0.0);
    return;
  }
  const std::pair<const char*, void (*)()> sections[] = {
      {"memory", ops_memory},         {"linear", ops_linear},     {"layernorm/gelu", ops_layernorm_gelu},
      {"elementwise", ops_elementwise}, {"attention", ops_attention}, {"embedding", ops_embedding},
      {"image", ops_image},           {"losses", ops_losses},     {"vq", ops_vq},
      {"flow/optim", ops_flow_optim}, {"sampling", ops_sampling},
  };
  for (const auto& [name, fn] : sections) {
    say("\n== backend ops: %s (CUDA backend vs cpu_backend)\n", name);
    try {
      fn();
    } catch (const reca::Error& e) {
      say("  FAIL section %s: %s: %s\n", name, reca::error_code_name(e.code()), e.what());
      record_check(std::string(name) + ": raised " + reca::error_code_name(e.code()), e.what(), INFINITY, 0.0);
      if (e.code() == reca::ErrorCode::Cuda) throw;  // a sticky device error: nothing after it is meaningful
    }
  }
  if (with_model) {
    say("\n== whole model: one Trainer step per mode x task, CPU vs GPU, and GPU twice (bits)\n");
    model_parity();
  }
}

// ---------------------------------------------------------------- ceilings
double g_copy_gbps = 0, g_sgemm_gflops = 0, g_tf32_gflops = 0;

void measure_ceilings() {
  const size_t bytes = size_t(1) << 30;  // 1 GiB each way: far beyond L2
  DevBuf src(bytes), dst(bytes);
  reca::cuda::fill_bytes(src.p, 0x3c, bytes, g_stream);
  Timing t = time_op("copy d2d", "1 GiB", 0, 2.0 * bytes, [&](int) {
    reca::cuda::copy_on_device(dst.p, src.p, bytes, g_stream);
  }, 2, 15);
  g_copy_gbps = 2.0 * bytes / (t.ms * 1e-3) / 1e9;
  say("  copy ceiling: %.0f GB/s (read + write, median of 15 copies of 1 GiB, spread %.1f%%)\n",
      g_copy_gbps, 100 * t.spread);
  g_timings.push_back(t);

  const int64_t S = 4096;
  const double flops = 2.0 * S * S * S;
  // Two input sets (64 MiB a matrix), used in turn, so repeats do not run from L2.
  std::vector<DevBuf> As, Bs;
  for (int i = 0; i < 2; ++i) {
    As.push_back(to_dev(host_normal(S * S)));
    Bs.push_back(to_dev(host_normal(S * S)));
  }
  DevBuf C(S * S * 4);
  for (auto prec : {reca::cuda::MatmulPrecision::Fp32, reca::cuda::MatmulPrecision::Tf32}) {
    const bool tf = prec == reca::cuda::MatmulPrecision::Tf32;
    Timing g = time_op(tf ? "sgemm tf32 4096^3" : "sgemm fp32 4096^3", shape_str({S, S, S}), flops,
                       3.0 * S * S * 4, [&](int r) {
      reca::cuda::matmul(C.f(), As[r % 2].f(), Bs[r % 2].f(), nullptr, S, S, S, false, false, false,
                         g_stream, prec);
    }, 2, 10);
    const double gf = flops / (g.ms * 1e-3) / 1e9;
    (tf ? g_tf32_gflops : g_sgemm_gflops) = gf;
    say("  %s ceiling: %.0f GFLOP/s (%.3f ms, spread %.1f%%)\n", tf ? "TF32 matmul" : "fp32 SGEMM", gf,
        g.ms, 100 * g.spread);
    g_timings.push_back(g);
  }
}

// ---------------------------------------------------------------- base-preset timings
void time_base_ops() {
  // SPEC §1 `base`: width 768, mlp 3072; M = batch 8 × (3 + N_u 64 + max_text_len 64 + N+1 257).
  const int64_t M = 8 * (3 + 64 + 64 + 257), W = 768, H = 3072;
  const int kSets = 3;  // rotating input sets
  struct MM { const char* name; int64_t m, n, k; bool ta, tb; };
  const MM mms[] = {
      {"qkv   x.W^T", M, 3 * W, W, false, true},
      {"proj  x.W^T", M, W, W, false, true},
      {"fc1   x.W^T", M, H, W, false, true},
      {"fc2   x.W^T", M, W, H, false, true},
      {"fc2 dx = dy.W", M, H, W, false, false},
      {"fc2 dW = dy^T.x", W, H, M, true, false},
  };
  for (const MM& mm : mms) {
    std::vector<DevBuf> As, Bs;
    for (int i = 0; i < kSets; ++i) {
      As.push_back(to_dev(host_normal(mm.m * mm.k)));
      Bs.push_back(to_dev(host_normal(mm.k * mm.n)));
    }
    DevBuf bias = to_dev(host_normal(mm.n)), C(mm.m * mm.n * 4);
    const double flops = 2.0 * mm.m * mm.n * mm.k;
    const double bytes = 4.0 * (mm.m * mm.k + mm.k * mm.n + mm.m * mm.n + mm.n);
    for (auto prec : {reca::cuda::MatmulPrecision::Fp32, reca::cuda::MatmulPrecision::Tf32}) {
      const bool tf = prec == reca::cuda::MatmulPrecision::Tf32;
      Timing t = time_op(std::string("matmul ") + (tf ? "tf32 " : "fp32 ") + mm.name,
                         shape_str({mm.m, mm.n, mm.k}), flops, bytes, [&](int r) {
        reca::cuda::matmul(C.f(), As[r % kSets].f(), Bs[r % kSets].f(), bias.f(), mm.m, mm.n, mm.k,
                           mm.ta, mm.tb, false, g_stream, prec);
      });
      t.floor_ms = std::max(flops / ((tf ? g_tf32_gflops : g_sgemm_gflops) * 1e9),
                            bytes / (g_copy_gbps * 1e9)) * 1e3;
      g_timings.push_back(t);
    }
  }

  auto add = [&](Timing t) {
    t.floor_ms = std::max(t.flops / (g_sgemm_gflops * 1e9), t.bytes / (g_copy_gbps * 1e9)) * 1e3;
    g_timings.push_back(t);
  };
  {  // GELU on the MLP hidden [M, 3072], bias fused.
    const int64_t n = M * H;
    std::vector<DevBuf> xs, dys;
    for (int i = 0; i < kSets; ++i) {
      xs.push_back(to_dev(host_normal(n)));
      dys.push_back(to_dev(host_normal(n)));
    }
    DevBuf bias = to_dev(host_normal(H)), y(n * 4), dx = to_dev(host_normal(n)), db = to_dev(host_normal(H));
    add(time_op("gelu_forward (+bias)", shape_str({M, H}), 20.0 * n, 4.0 * (2 * n + H), [&](int r) {
      reca::cuda::gelu_forward(y.f(), xs[r % kSets].f(), bias.f(), M, H, g_stream);
    }));
    add(time_op("gelu_backward (+dbias)", shape_str({M, H}), 30.0 * n, 4.0 * (4 * n + 3 * H), [&](int r) {
      reca::cuda::gelu_backward(dx.f(), db.f(), xs[r % kSets].f(), bias.f(), dys[r % kSets].f(), M, H, g_stream);
    }));
  }
  {  // LayerNorm [M, 768].
    const int64_t n = M * W;
    std::vector<DevBuf> xs, dys;
    for (int i = 0; i < kSets; ++i) {
      xs.push_back(to_dev(host_normal(n)));
      dys.push_back(to_dev(host_normal(n)));
    }
    DevBuf w = to_dev(host_normal(W)), b = to_dev(host_normal(W)), y(n * 4), mean(M * 4), rstd(M * 4);
    DevBuf dx = to_dev(host_normal(n)), dw = to_dev(host_normal(W)), db = to_dev(host_normal(W));
    reca::cuda::layernorm_forward(y.f(), mean.f(), rstd.f(), xs[0].f(), w.f(), b.f(), M, W, g_stream);
    add(time_op("layernorm_forward", shape_str({M, W}), 8.0 * n, 4.0 * (2 * n + 2 * W + 2 * M), [&](int r) {
      reca::cuda::layernorm_forward(y.f(), mean.f(), rstd.f(), xs[r % kSets].f(), w.f(), b.f(), M, W, g_stream);
    }));
    add(time_op("layernorm_backward", shape_str({M, W}), 14.0 * n, 4.0 * (4 * n + 5 * W + 2 * M), [&](int r) {
      reca::cuda::layernorm_backward(dx.f(), dw.f(), db.f(), dys[r % kSets].f(), xs[r % kSets].f(), w.f(),
                                     mean.f(), rstd.f(), M, W, g_stream);
    }));
  }
  {  // AdamW over [M, 768] parameters (p, m, v, g, ema).
    const int64_t n = M * W;
    DevBuf p = to_dev(host_normal(n)), g = to_dev(host_normal(n, 0.01f)), m = to_dev(host_normal(n, 0.01f));
    DevBuf v(n * 4), e = to_dev(host_normal(n));
    reca::cuda::fill_bytes(v.p, 0, v.bytes, g_stream);
    reca::cpu::AdamWConfig cfg{1e-4, 0.9, 0.95, 1e-8, 0.02, 1, 1.0, 0.999};
    add(time_op("adamw_step (+ema)", shape_str({n}), 20.0 * n, 4.0 * 9 * n, [&](int r) {
      cfg.step = 1 + r;
      reca::cuda::adamw_step(p.f(), m.f(), v.f(), e.f(), g.f(), n, true, cfg, g_stream);
    }));
  }
  {  // Philox fills [M, 768].
    const int64_t n = M * W;
    DevBuf out(n * 4);
    add(time_op("philox_fill_uniform", shape_str({M, W}), 0, 4.0 * n, [&](int r) {
      reca::cuda::philox_fill_uniform(1, r, out.f(), n, 0, g_stream);
    }));
    add(time_op("philox_fill_normal", shape_str({M, W}), 0, 4.0 * n, [&](int r) {
      reca::cuda::philox_fill_normal(1, r, out.f(), n, 0, g_stream);
    }));
  }
}

// ---------------------------------------------------------------- output
void write_outputs(const std::string& dir, const reca::cuda::CudaInfo& info, double seconds, int status) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // best effort: a failure shows as "cannot write" below
  std::string j = "{\n";
  j += "  \"status\": " + std::to_string(status) + ",\n";
  j += "  \"seed\": " + std::to_string(g_seed) + ",\n";
  j += "  \"seconds\": " + num(seconds) + ",\n";
  j += "  \"cuda\": {\"architectures\": \"" + json_escape(info.architectures) +
       "\", \"runtime_version\": " + std::to_string(info.runtime_version) +
       ", \"driver_version\": " + std::to_string(info.driver_version) + ", \"reason\": \"" +
       json_escape(info.reason) + "\", \"devices\": [";
  for (size_t i = 0; i < info.devices.size(); ++i) {
    const auto& d = info.devices[i];
    j += std::string(i ? ", " : "") + "{\"name\": \"" + json_escape(d.name) + "\", \"cc\": \"" +
         std::to_string(d.major) + "." + std::to_string(d.minor) +
         "\", \"sms\": " + std::to_string(d.multiprocessors) +
         ", \"memory_bytes\": " + std::to_string(d.total_memory) + "}";
  }
  j += "]},\n";
  j += "  \"ceilings\": {\"copy_gbps\": " + num(g_copy_gbps) + ", \"sgemm_fp32_gflops\": " +
       num(g_sgemm_gflops) + ", \"matmul_tf32_gflops\": " + num(g_tf32_gflops) + "},\n";
  j += "  \"checks\": [\n";
  for (size_t i = 0; i < g_checks.size(); ++i) {
    const Check& c = g_checks[i];
    j += "    {\"name\": \"" + json_escape(c.name) + "\", \"shape\": \"" + json_escape(c.shape) +
         "\", \"err\": " + num(c.err) + ", \"tol\": " + num(c.tol) +
         ", \"pass\": " + (c.pass ? "true" : "false") + "}" + (i + 1 < g_checks.size() ? ",\n" : "\n");
  }
  j += "  ],\n  \"timings\": [\n";
  for (size_t i = 0; i < g_timings.size(); ++i) {
    const Timing& t = g_timings[i];
    j += "    {\"name\": \"" + json_escape(t.name) + "\", \"shape\": \"" + json_escape(t.shape) +
         "\", \"ms\": " + num(t.ms) + ", \"flops\": " + num(t.flops) + ", \"bytes\": " + num(t.bytes) +
         ", \"floor_ms\": " + num(t.floor_ms) + ", \"spread\": " + num(t.spread) + "}" +
         (i + 1 < g_timings.size() ? ",\n" : "\n");
  }
  j += "  ]\n}\n";
  for (const auto& [name, text] : {std::pair<std::string, const std::string*>{"gpu_check.json", &j},
                                   std::pair<std::string, const std::string*>{"gpu_check.log", &g_log}}) {
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "reca_gpu_check: cannot write %s\n", path.c_str());
      continue;
    }
    std::fwrite(text->data(), 1, text->size(), f);
    std::fclose(f);
  }
}

void print_table() {
  say("\n%-34s %-18s %10s %10s %9s %9s %8s\n", "op (base preset)", "shape", "ms", "floor ms",
      "GFLOP/s", "GB/s", "floor/t");
  for (const Timing& t : g_timings) {
    const double s = t.ms * 1e-3;
    say("%-34s %-18s %10.4f %10.4f %9.0f %9.0f %7.0f%%\n", t.name.c_str(), t.shape.c_str(), t.ms,
        t.floor_ms, t.flops / s / 1e9, t.bytes / s / 1e9, t.floor_ms > 0 ? 100 * t.floor_ms / t.ms : 0.0);
  }
  // PASS/FAIL by section (the part of a check's name before ':' or its first word).
  std::map<std::string, std::pair<int, int>> by;  // section -> (passed, failed)
  std::vector<std::string> order;
  for (const Check& c : g_checks) {
    size_t cut = c.name.find(':');
    if (cut == std::string::npos) cut = c.name.find(' ');
    const std::string sec = c.name.substr(0, cut);
    if (!by.count(sec)) order.push_back(sec);
    (c.pass ? by[sec].first : by[sec].second) += 1;
  }
  say("\n%-28s %7s %7s  %s\n", "checks by section", "passed", "failed", "result");
  for (const std::string& sec : order)
    say("%-28s %7d %7d  %s\n", sec.c_str(), by[sec].first, by[sec].second, by[sec].second ? "FAIL" : "PASS");
  int failed = 0;
  for (const Check& c : g_checks) failed += !c.pass;
  say("\nceilings: copy %.0f GB/s, SGEMM fp32 %.0f GFLOP/s, TF32 %.0f GFLOP/s (4096^3)\n", g_copy_gbps,
      g_sgemm_gflops, g_tf32_gflops);
  say("checks: %d passed, %d failed: %s\n", int(g_checks.size()) - failed, failed, failed ? "FAIL" : "PASS");
  for (const Check& c : g_checks)
    if (!c.pass) say("  FAILED: %s %s err %.3g tol %.1g\n", c.name.c_str(), c.shape.c_str(), c.err, c.tol);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir = std::getenv("OUT") ? std::getenv("OUT") : "";
  bool skip_timing = false, skip_backend = false, skip_model = false, skip_kernels = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--checks-only")) skip_timing = true;
    else if (!std::strcmp(argv[i], "--no-backend")) skip_backend = true;
    else if (!std::strcmp(argv[i], "--no-model")) skip_model = true;
    else if (!std::strcmp(argv[i], "--no-kernels")) skip_kernels = true;
    else {
      std::fprintf(stderr, "usage: reca_gpu_check [--out DIR] [--checks-only] [--no-backend] [--no-model] [--no-kernels]\n"
                           "  --checks-only  no ceilings / timings\n"
                           "  --no-backend   skip the every-op CUDA-backend-vs-CPU section and the model parity\n"
                           "  --no-model     skip the whole-model parity only\n"
                           "  --no-kernels   skip the cuda:: kernel checks against the float64 references\n");
      return 2;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  g_seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  const reca::cuda::CudaInfo info = reca::cuda::query_cuda();
  say("reca_gpu_check: CUDA runtime %d, driver %d, built for %s; %d CPU threads; input seed %llu\n",
      info.runtime_version, info.driver_version, info.architectures.c_str(), reca::num_threads(),
      static_cast<unsigned long long>(g_seed));
  if (info.devices.empty()) {
    say("no usable GPU: %s\n", info.reason.c_str());
    write_outputs(out_dir, info, elapsed(), 2);
    return 2;
  }
  for (const auto& d : info.devices)
    say("device %d: %s, compute capability %d.%d, %d SMs, %.1f GiB\n", d.index, d.name.c_str(), d.major,
        d.minor, d.multiprocessors, d.total_memory / 1073741824.0);

  int status = 0;
  try {
    reca::cuda::set_device(0);
    g_stream = reca::cuda::stream_create();
    using P = reca::cuda::MatmulPrecision;

    if (!skip_kernels) {
      say("\n== correctness: matmul (fp32 tol 1e-5 for K <= 1024, else 3e-5; tf32 tol 1e-3)\n");
      const MatmulCase cases[] = {
          {1, 1, 1, false, false, false, false, 0},   {3, 5, 7, false, false, true, true, 0},
          {17, 33, 9, true, false, false, true, 0},   {17, 33, 9, false, true, true, false, 0},
          {31, 63, 200, true, true, false, true, 0},  {127, 129, 65, false, false, false, true, 0},
          {128, 128, 128, false, true, false, false, 0}, {128, 128, 128, true, false, true, true, 0},
          {255, 257, 31, true, true, true, true, 0},  {64, 263, 768, false, true, false, true, 0},
          {64, 48, 16, false, true, false, true, 0},  {200, 96, 100, false, false, false, true, 1},
          {200, 96, 100, true, true, true, false, 1}, {129, 3, 0, false, false, true, true, 0},
          {3104, 2304, 768, false, true, false, true, 0}, {3104, 768, 3072, false, true, true, true, 0},
          {3104, 3072, 768, false, false, false, false, 0}, {768, 3072, 3104, true, false, true, false, 0},
          {260, 132, 68, true, true, false, true, 0},   {132, 260, 36, false, false, true, true, 0},
      };
      for (const MatmulCase& c : cases) check_matmul(c, P::Fp32, c.K <= 1024 ? 1e-5 : 3e-5);
      for (const MatmulCase& c : cases) check_matmul(c, P::Tf32, 1e-3);
      check_matmul_deterministic(3104, 768, 3072, P::Fp32);
      check_matmul_deterministic(3104, 768, 3072, P::Tf32);

      say("\n== correctness: gelu, layernorm, adamw (fp32 vs float64 reference)\n");
      for (auto s : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {17, 33}, {33, 1027}, {3104, 3072},
                     {1001, 768}, {5, 4}})
        check_gelu(s.first, s.second);
      // C covers the fused backward (float4: 64, 300, 768, 1024; scalar: 1, 7, 130)
      // and the wide-row path (258 scalar, 1027, 1028); rows not a multiple of 16.
      for (auto s : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {17, 64}, {33, 1027}, {3104, 768},
                     {1000, 768}, {45, 300}, {19, 130}, {21, 258}, {50, 1024}, {9, 1028}})
        check_layernorm(s.first, s.second);
      for (int64_t n : {1, 7, 4099, 1 << 20}) {
        check_adamw(n, true, true, 0);
        check_adamw(n, false, false, 0);
      }
      check_adamw(4099, true, true, 1);

      say("\n== correctness: Philox, CPU vs GPU bit for bit\n");
      check_philox();
      reca::cuda::device_synchronize();
      say("  (checks took %.1f s so far)\n", elapsed());
    }

    if (!skip_backend) {
      backend_checks(!skip_model);
      reca::cuda::device_synchronize();
      say("  (checks took %.1f s so far)\n", elapsed());
    }

    if (!skip_timing) {
      say("\n== ceilings\n");
      measure_ceilings();
      say("\n== timing at the base preset shapes (median of 20 after 3 warm-ups, 3 rotating input sets)\n");
      time_base_ops();
    }
    reca::cuda::device_synchronize();
  } catch (const reca::Error& e) {
    say("\nCUDA/engine error (%s): %s\n", reca::error_code_name(e.code()), e.what());
    status = 2;
  } catch (const std::exception& e) {
    say("\nerror: %s\n", e.what());
    status = 2;
  }
  print_table();
  for (const Check& c : g_checks)
    if (!c.pass && status == 0) status = 1;
  say("finished in %.1f s, status %d\n", elapsed(), status);
  write_outputs(out_dir, info, elapsed(), status);
  reca::cuda::stream_destroy(g_stream);
  return status;
}
