#include <cmath>
#include <cstring>

#include "core/threadpool.h"
#include "cpu/adamw.h"
#include "cpu/grad_norm.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {
cpu::AdamWConfig config(double lr, int64_t step, double grad_scale) {
  cpu::AdamWConfig c;
  c.lr = lr;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = 0.02;
  c.step = step;
  c.grad_scale = grad_scale;
  c.ema_decay = 0.99;
  return c;
}

struct State {
  std::vector<float> p, g, m, v, ema;
  State(Rand& rng, int64_t n) : p(n), g(n), m(n), v(n), ema(n) {
    rng.fill_normal(p.data(), n);
    rng.fill_normal(g.data(), n);
    rng.fill_normal(m.data(), n, 0.1f);
    for (int64_t i = 0; i < n; ++i) v[i] = 0.05f * rng.normal() * rng.normal();
    for (int64_t i = 0; i < n; ++i) v[i] = v[i] < 0 ? -v[i] : v[i];
    for (int64_t i = 0; i < n; ++i) ema[i] = p[i] + rng.normal(0.01f);
  }
};
}  // namespace

// One step, fast vs float reference, for decay on/off and EMA on/off.
// Tolerances: p, ema rtol 1e-6 / atol 1e-7; m rtol 1e-6 / atol 1e-8 (β1·m and
// (1−β1)·g' can cancel, and the fast path may fuse them); v rtol 1e-6 / atol 1e-9.
RECA_TEST(adamw_step_matches_reference) {
  Rand rng(71);
  const int64_t sizes[] = {1, 2, 7, 15, 16, 17, 33, 1000, 40001};
  for (int64_t n : sizes) {
    const State s0(rng, n);
    for (bool decay : {false, true})
      for (bool with_ema : {false, true}) {
        const cpu::AdamWConfig cfg = config(1e-3, 3, 0.5);
        State r = s0;
        cpu::ref::adamw_step(r.p.data(), r.m.data(), r.v.data(), with_ema ? r.ema.data() : nullptr,
                             r.g.data(), n, decay, cfg);
        for_each_isa([&](Isa isa) {
          const std::string tag = std::string("adamw ") + isa_name(isa) + " n=" + std::to_string(n) +
                                  (decay ? " decay" : "") + (with_ema ? " ema" : "");
          Guarded p(n), m(n), v(n), ema(n);
          std::memcpy(p.data(), s0.p.data(), n * sizeof(float));
          std::memcpy(m.data(), s0.m.data(), n * sizeof(float));
          std::memcpy(v.data(), s0.v.data(), n * sizeof(float));
          std::memcpy(ema.data(), s0.ema.data(), n * sizeof(float));
          cpu::adamw_step(p.data(), m.data(), v.data(), with_ema ? ema.data() : nullptr, s0.g.data(), n,
                          decay, cfg);
          expect_close(tag + " p", p.data(), r.p.data(), n, 1e-6, 1e-7);
          expect_close(tag + " m", m.data(), r.m.data(), n, 1e-6, 1e-8);
          expect_close(tag + " v", v.data(), r.v.data(), n, 1e-6, 1e-9);
          expect_close(tag + " ema", ema.data(), (with_ema ? r.ema : s0.ema).data(), n, 1e-6, 1e-7);
          for (auto* b : {&p, &m, &v, &ema}) expect_guards(*b, tag);
        });
      }
  }
}

// 25 steps of the full update path (norm -> clip factor -> AdamW with warmup
// LR, decay and EMA) in float against the same steps in double.
// Tolerances (float rounding of p accumulates over the steps; m can cancel):
// p rtol 2e-6 / atol 1e-7; ema rtol 1e-6 / atol 1e-7; m rtol 1e-5 / atol 1e-8; v rtol 1e-5 / atol 1e-11.
RECA_TEST(adamw_multi_step_matches_double_reference) {
  Rand rng(72);
  const int64_t n = 1003;
  const int steps = 25;
  State s(rng, n);
  std::fill(s.m.begin(), s.m.end(), 0.0f);
  std::fill(s.v.begin(), s.v.end(), 0.0f);
  std::vector<std::vector<float>> grads(steps, std::vector<float>(n));
  for (auto& g : grads) rng.fill_normal(g.data(), n, 0.05f);  // norm ~1.6: clipping is active
  std::vector<double> pd = to_double(s.p.data(), n), md(n, 0.0), vd(n, 0.0),
                      ed = to_double(s.ema.data(), n);
  for (int t = 1; t <= steps; ++t) {
    std::vector<double> gd = to_double(grads[t - 1].data(), n);
    const double norm = cpu::ref::grad_norm(gd.data(), n, nullptr);
    const double lr = 1e-3 * std::min(1.0, t / 10.0);
    cpu::ref::adamw_step(pd.data(), md.data(), vd.data(), ed.data(), gd.data(), n, true,
                         config(lr, t, cpu::ref::adamw_clip_factor(norm, 1.0)));
  }
  for_each_isa([&](Isa isa) {
    State f = s;
    for (int t = 1; t <= steps; ++t) {
      const float norm = cpu::grad_norm(grads[t - 1].data(), n, nullptr);
      const double lr = 1e-3 * std::min(1.0, t / 10.0);
      cpu::adamw_step(f.p.data(), f.m.data(), f.v.data(), f.ema.data(), grads[t - 1].data(), n, true,
                      config(lr, t, cpu::adamw_clip_factor(norm, 1.0f)));
    }
    const std::string tag = std::string("adamw 25 steps ") + isa_name(isa);
    expect_close(tag + " p", f.p.data(), pd.data(), n, 2e-6, 1e-7);
    expect_close(tag + " m", f.m.data(), md.data(), n, 1e-5, 1e-8);
    expect_close(tag + " v", f.v.data(), vd.data(), n, 1e-5, 1e-11);
    expect_close(tag + " ema", f.ema.data(), ed.data(), n, 1e-6, 1e-7);
  });
}

// Closed form: with a constant gradient c and m0 = v0 = 0, the bias-corrected
// moments are m̂ = c and v̂ = c² at every step, so each step is
//   p ← p·(1 − lr·wd) − lr·c/(|c| + eps)
// for any grad_scale s > 0 except through eps (g' = s·c gives c/(|c| + eps/s)).
// Step 1 by hand for p0 = 1, c = 0.5, s = 2, lr = 0.01, wd = 0.1:
// 0.999 − 0.01·0.5/0.500000005 = 0.9890000001.
// Tolerance rtol 1e-6 / atol 1e-8.
RECA_TEST(adamw_closed_form_constant_gradient) {
  const int64_t n = 5;
  const float c[n] = {0.5f, -2.0f, 1e-3f, 0.0f, 7.0f};
  const float p0[n] = {1.0f, -0.25f, 3.0f, 2.0f, 0.0f};
  cpu::AdamWConfig cfg = config(0.01, 1, 2.0);
  cfg.weight_decay = 0.1;
  cfg.ema_decay = 0.9;
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("adamw closed form ") + isa_name(isa);
    std::vector<float> p(p0, p0 + n), m(n, 0.0f), v(n, 0.0f), ema(p0, p0 + n);
    std::vector<double> want(p0, p0 + n), want_ema(p0, p0 + n);
    for (int t = 1; t <= 4; ++t) {
      cfg.step = t;
      cpu::adamw_step(p.data(), m.data(), v.data(), ema.data(), c, n, true, cfg);
      for (int64_t i = 0; i < n; ++i) {
        const double ci = c[i];
        want[i] = want[i] * (1.0 - 0.01 * 0.1) - (ci == 0 ? 0.0 : 0.01 * ci / (std::fabs(ci) + 1e-8 / 2.0));
        want_ema[i] = 0.9 * want_ema[i] + 0.1 * want[i];
      }
      if (t == 1) expect_close(tag + " step 1 by hand", &p[0], std::vector<double>{0.9890000001}.data(), 1, 1e-7, 0);
      expect_close(tag + " p step " + std::to_string(t), p.data(), want.data(), n, 1e-6, 1e-8);
      expect_close(tag + " ema step " + std::to_string(t), ema.data(), want_ema.data(), n, 1e-6, 1e-8);
    }
  });
}

// Segments: each segment's pointers and decay flag honoured, an unlisted
// (frozen) range untouched, null EMA per segment. Bitwise equal to one
// adamw_step per segment; close to the reference (rtol 1e-6 / atol 1e-7).
RECA_TEST(adamw_segments_match_single_steps) {
  Rand rng(73);
  const int64_t n = 70000;
  const State s0(rng, n);
  struct Piece { int64_t off, len; bool decay, ema; };
  const Piece pieces[] = {{0, 17, true, true}, {17, 1, false, true},  {100, 40000, true, false},
                          {40100, 0, true, true}, {40100, 29000, false, true}, {69100, 899, true, true}};
  // [18, 100) and [69999, 70000) are frozen: not listed.
  const cpu::AdamWConfig cfg = config(2e-3, 7, 0.8);
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("adamw segments ") + isa_name(isa);
    State a = s0, b = s0, r = s0;
    std::vector<cpu::AdamWSegment<float>> segs;
    std::vector<cpu::AdamWSegment<float>> rsegs;
    for (const Piece& pc : pieces) {
      segs.push_back({a.p.data() + pc.off, a.g.data() + pc.off, a.m.data() + pc.off, a.v.data() + pc.off,
                      pc.ema ? a.ema.data() + pc.off : nullptr, pc.len, pc.decay});
      rsegs.push_back({r.p.data() + pc.off, r.g.data() + pc.off, r.m.data() + pc.off, r.v.data() + pc.off,
                       pc.ema ? r.ema.data() + pc.off : nullptr, pc.len, pc.decay});
      cpu::adamw_step(b.p.data() + pc.off, b.m.data() + pc.off, b.v.data() + pc.off,
                      pc.ema ? b.ema.data() + pc.off : nullptr, b.g.data() + pc.off, pc.len, pc.decay, cfg);
    }
    cpu::adamw_step_segments(segs.data(), static_cast<int64_t>(segs.size()), cfg);
    cpu::ref::adamw_step_segments(rsegs.data(), static_cast<int64_t>(rsegs.size()), cfg);
    for (auto mem : {&State::p, &State::m, &State::v, &State::ema}) {
      expect_true(std::memcmp((a.*mem).data(), (b.*mem).data(), n * sizeof(float)) == 0,
                  tag + ": segments differ from per-segment steps");
      expect_close(tag + " vs reference", (a.*mem).data(), (r.*mem).data(), n, 1e-6, 1e-7);
      expect_true(std::memcmp((a.*mem).data() + 18, (s0.*mem).data() + 18, 82 * sizeof(float)) == 0 &&
                      (a.*mem)[n - 1] == (s0.*mem)[n - 1],
                  tag + ": a frozen range changed");
    }
    expect_true(std::memcmp(a.ema.data() + 100, s0.ema.data() + 100, 40000 * sizeof(float)) == 0,
                tag + ": EMA written for a segment without EMA");
    cpu::adamw_step_segments(segs.data(), 0, cfg);  // no segments: nothing to do
  });
}

// SPEC §6: factor = max_norm/(norm + 1e-6) only when norm > max_norm.
RECA_TEST(adamw_clip_factor_values) {
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("adamw clip ") + isa_name(isa);
    expect_true(cpu::adamw_clip_factor(0.5f, 1.0f) == 1.0f, tag + ": below max");
    expect_true(cpu::adamw_clip_factor(1.0f, 1.0f) == 1.0f, tag + ": at max");
    expect_true(cpu::adamw_clip_factor(0.0f, 1.0f) == 1.0f, tag + ": zero norm");
    expect_true(cpu::adamw_clip_factor(4.0f, 1.0f) == 1.0f / (4.0f + 1e-6f), tag + ": above max");
    expect_true(cpu::adamw_clip_factor(3.0f, 2.0f) == 2.0f / (3.0f + 1e-6f), tag + ": max 2");
    const float f = cpu::adamw_clip_factor(4.0f, 1.0f);
    expect_true(std::fabs(f - 0.25f) < 1e-7f, tag + ": 1/4");
  });
}

RECA_TEST(adamw_deterministic_across_thread_counts) {
  Rand rng(74);
  const int64_t n = 100003;
  const State s0(rng, n);
  const cpu::AdamWConfig cfg = config(1e-3, 2, 0.7);
  for_each_isa([&](Isa isa) {
    expect_same_across_threads(std::string("adamw ") + isa_name(isa), [&] {
      State a = s0, b = s0;
      cpu::adamw_step(a.p.data(), a.m.data(), a.v.data(), a.ema.data(), a.g.data(), n, true, cfg);
      const cpu::AdamWSegment<float> segs[2] = {
          {b.p.data(), b.g.data(), b.m.data(), b.v.data(), b.ema.data(), 50001, true},
          {b.p.data() + 50001, b.g.data() + 50001, b.m.data() + 50001, b.v.data() + 50001, nullptr,
           n - 50001, false}};
      cpu::adamw_step_segments(segs, 2, cfg);
      std::vector<float> out;
      for (auto* st : {&a, &b})
        for (auto* v : {&st->p, &st->m, &st->v, &st->ema}) out.insert(out.end(), v->begin(), v->end());
      return out;
    });
  });
}
