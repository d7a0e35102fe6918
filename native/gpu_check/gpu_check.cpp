// reca_gpu_check: one program that, on a machine with an NVIDIA GPU,
//   1. prints the device (name, SMs, memory, driver);
//   2. measures the two ceilings: device-to-device copy bandwidth (bytes read +
//      written) and our SGEMM's GFLOP/s at 4096³ (fp32 and TF32);
//   3. checks every CUDA op against the CPU reference on fresh random inputs
//      (relative L2 error against a float64 reference, poisoned outputs, NaN
//      fails), Philox CPU vs GPU bit for bit, and run-to-run determinism;
//   4. times each op at the `base` preset shapes (SPEC §1) with CUDA events
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
#include <functional>
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
  int failed = 0;
  for (const Check& c : g_checks) failed += !c.pass;
  say("\nceilings: copy %.0f GB/s, SGEMM fp32 %.0f GFLOP/s, TF32 %.0f GFLOP/s (4096^3)\n", g_copy_gbps,
      g_sgemm_gflops, g_tf32_gflops);
  say("checks: %d passed, %d failed\n", int(g_checks.size()) - failed, failed);
  for (const Check& c : g_checks)
    if (!c.pass) say("  FAILED: %s %s err %.3g tol %.1g\n", c.name.c_str(), c.shape.c_str(), c.err, c.tol);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir = std::getenv("OUT") ? std::getenv("OUT") : "";
  bool skip_timing = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--checks-only")) skip_timing = true;
    else {
      std::fprintf(stderr, "usage: reca_gpu_check [--out DIR] [--checks-only]\n");
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
