#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/threadpool.h"
#include "cpu/sampling.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {
// A plain-data output with guard elements on both sides.
template <class E>
struct GuardedBuf {
  static constexpr int64_t kGuard = 31;
  std::vector<E> buf;
  E pattern;
  int64_t n;
  GuardedBuf(int64_t n_, E fill, E pattern_) : buf(n_ + 2 * kGuard, pattern_), pattern(pattern_), n(n_) {
    for (int64_t i = 0; i < n; ++i) buf[kGuard + i] = fill;
  }
  E* data() { return buf.data() + kGuard; }
  bool intact() const {
    for (int64_t i = 0; i < kGuard; ++i)
      if (buf[i] != pattern || buf[kGuard + n + i] != pattern) return false;
    return true;
  }
};
using GuardedI32 = GuardedBuf<int32_t>;
using GuardedU8 = GuardedBuf<uint8_t>;

// (rows, V): 1, odd, around multiples of 16, the text vocab and a large codebook.
const int64_t kShapes[][2] = {{1, 1}, {1, 2}, {3, 7}, {5, 15}, {4, 16}, {6, 17}, {2, 33}, {8, 263}, {3, 1000}, {4, 4096}};

// Logits: normal, with optional repeats (ties) and −inf entries.
std::vector<float> make_logits(int64_t rows, int64_t V, int variant, Rand& rng) {
  std::vector<float> x(rows * V);
  rng.fill_normal(x.data(), rows * V, 3.0f);
  if (variant >= 1)
    for (auto& v : x) v = std::round(v);  // many exact ties
  if (variant == 2)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 1; j < V; j += 3) x[r * V + j] = -INFINITY;  // j = 0 stays finite
  return x;
}

std::vector<float> make_uniforms(int64_t rows, Rand& rng) {
  std::vector<float> u(rows);
  for (auto& v : u) v = rng.uniform(1e-7f, 1.0f - 1e-7f);
  return u;
}
}  // namespace

RECA_TEST(sampling_probs_match_reference) {
  Rand rng(401);
  for (auto& s : kShapes) {
    const int64_t rows = s[0], V = s[1];
    for (int variant = 0; variant < 3; ++variant) {
      const std::vector<float> x = make_logits(rows, V, variant, rng);
      for (float temp : {0.0f, 0.5f, 1.0f, 2.0f}) {
        for (int64_t k : {int64_t(0), int64_t(1), int64_t(5), V - 1, V, V + 3}) {
          std::vector<float> want(rows * V);
          cpu::ref::sampling_probs(want.data(), x.data(), temp, k, rows, V);
          for_each_isa([&](Isa isa) {
            const std::string tag = std::string("sampling_probs ") + isa_name(isa) + " " + shape_str({rows, V}) +
                                    " v" + std::to_string(variant) + " t" + std::to_string(temp) + " k" +
                                    std::to_string(k);
            Guarded p(rows * V);
            cpu::sampling_probs(p.data(), x.data(), temp, k, rows, V);
            // vexp is ~2 ulp; sums over up to 4096 terms: rtol 2e-6, atol 1e-9.
            expect_close(tag, p.data(), want.data(), rows * V, 2e-6, 1e-9);
            // The top-k kept set is decided by exact comparisons: same zeros.
            int64_t diff = 0;
            for (int64_t i = 0; i < rows * V; ++i) diff += (p[i] == 0.0f) != (want[i] == 0.0f);
            expect_true(diff == 0, tag + ": filtered set differs at " + std::to_string(diff) + " entries");
            expect_guards(p, tag);
          });
        }
      }
    }
  }
}

RECA_TEST(sample_categorical_matches_reference) {
  Rand rng(402);
  int64_t draws = 0, boundary_flips = 0;
  for (auto& s : kShapes) {
    const int64_t rows = s[0] * 16, V = s[1];
    for (int variant = 0; variant < 3; ++variant) {
      const std::vector<float> x = make_logits(rows, V, variant, rng);
      const std::vector<float> u = make_uniforms(rows, rng);
      for (float temp : {0.0f, 0.7f, 1.0f, 1.5f}) {
        for (int64_t k : {int64_t(0), int64_t(1), int64_t(3), V - 1, V}) {
          std::vector<int32_t> want(rows);
          std::vector<float> want_p(rows);
          cpu::ref::sample_categorical(want.data(), want_p.data(), x.data(), u.data(), temp, k, rows, V);
          std::vector<double> pd(rows * V);  // the reference distribution, for boundary checks
          {
            std::vector<double> xd = to_double(x.data(), rows * V);
            cpu::ref::sampling_probs(pd.data(), xd.data(), static_cast<double>(temp), k, rows, V);
          }
          for_each_isa([&](Isa isa) {
            const std::string tag = std::string("sample_categorical ") + isa_name(isa) + " " +
                                    shape_str({rows, V}) + " v" + std::to_string(variant) + " t" +
                                    std::to_string(temp) + " k" + std::to_string(k);
            GuardedI32 ids(rows, -1, 0x7a7a7a7a);
            Guarded p(rows);
            cpu::sample_categorical(ids.data(), p.data(), x.data(), temp == 0.0f ? nullptr : u.data(), temp, k,
                                    rows, V);
            for (int64_t r = 0; r < rows; ++r) {
              ++draws;
              const int32_t got = ids.data()[r];
              if (got == want[r]) continue;
              // Allowed only when u sits within 1e-5 of a CDF boundary of the
              // fast id's interval (exp differs by ulps between the two).
              double lo = 0;
              for (int64_t j = 0; j < got && got >= 0 && got < V; ++j) lo += pd[r * V + j];
              const double hi = got >= 0 && got < V ? lo + pd[r * V + got] : -1;
              const bool near = temp > 0 && got >= 0 && got < V && pd[r * V + got] > 0 &&
                                u[r] >= lo - 1e-5 && u[r] <= hi + 1e-5;
              if (near) {
                ++boundary_flips;
              } else {
                report_failure(tag + ": row " + std::to_string(r) + " id " + std::to_string(got) + " want " +
                               std::to_string(want[r]) + " (u " + std::to_string(u[r]) + ")");
                break;
              }
            }
            // Probability of the drawn id: compare against the reference distribution.
            std::vector<double> pw(rows);
            for (int64_t r = 0; r < rows; ++r) {
              const int32_t id = ids.data()[r];
              pw[r] = (id >= 0 && id < V) ? pd[r * V + id] : -1.0;
              if (temp == 0.0f) {  // greedy reports τ = 1 probabilities
                std::vector<double> p1(V), xr = to_double(x.data() + r * V, V);
                cpu::ref::sampling_probs(p1.data(), xr.data(), 1.0, k, 1, V);
                pw[r] = p1[id];
              }
            }
            expect_close(tag + " prob", p.data(), pw.data(), rows, 5e-6, 1e-9);
            expect_true(ids.intact(), tag + ": ids written outside the output");
            expect_guards(p, tag + " probs");
          });
        }
      }
    }
  }
  // Boundary flips are possible but must be rare (random u, about 1e-6 wide windows).
  expect_true(boundary_flips * 1000 <= draws,
              "sample_categorical: " + std::to_string(boundary_flips) + " boundary flips in " + std::to_string(draws));
}

RECA_TEST(sample_categorical_closed_form) {
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("closed form ") + isa_name(isa);
    int32_t id = -1;
    float p = -1;
    // Four equal weights: CDF boundaries exactly at 0.25, 0.5, 0.75 (exact arithmetic).
    const float zeros[4] = {0, 0, 0, 0};
    const float below = std::nextafter(0.5f, 0.0f), at = 0.5f;
    cpu::sample_categorical(&id, &p, zeros, &below, 1.0f, 0, 1, 4);
    expect_true(id == 1 && p == 0.25f, tag + ": u just below 0.5 should pick 1, got " + std::to_string(id));
    cpu::sample_categorical(&id, &p, zeros, &at, 1.0f, 0, 1, 4);
    expect_true(id == 2, tag + ": u = 0.5 should pick 2 (strict inverse CDF), got " + std::to_string(id));
    const float top = std::nextafter(1.0f, 0.0f), tiny = 1e-30f;
    cpu::sample_categorical(&id, &p, zeros, &top, 1.0f, 0, 1, 4);
    expect_true(id == 3, tag + ": u near 1 should pick the last id, got " + std::to_string(id));
    cpu::sample_categorical(&id, &p, zeros, &tiny, 1.0f, 0, 1, 4);
    expect_true(id == 0, tag + ": u near 0 should pick the first id, got " + std::to_string(id));
    // p = (0.1, 0.2, 0.3, 0.4): the boundary between ids 1 and 2 is at 0.3.
    const float lg[4] = {std::log(1.0f), std::log(2.0f), std::log(3.0f), std::log(4.0f)};
    for (float u : {0.2999f, 0.3001f}) {
      cpu::sample_categorical(&id, &p, lg, &u, 1.0f, 0, 1, 4);
      const int want = u < 0.3f ? 1 : 2;
      expect_true(id == want && std::fabs(p - 0.1f * (want + 1)) < 1e-6f,
                  tag + ": u " + std::to_string(u) + " picked " + std::to_string(id));
    }
    // Across a wide row, -inf entries are never drawn.
    std::vector<float> wide(300, -INFINITY);
    wide[123] = 2.0f;
    wide[7] = 2.0f;
    const float u3 = 0.75f;
    cpu::sample_categorical(&id, &p, wide.data(), &u3, 1.0f, 0, 1, 300);
    expect_true(id == 123 && p == 0.5f, tag + ": two finite logits, u 0.75 should pick 123, got " + std::to_string(id));
    // top-k = 1 equals argmax for distinct logits, at any temperature and u.
    Rand rng(403);
    for (int t = 0; t < 50; ++t) {
      std::vector<float> x(37);
      rng.fill_normal(x.data(), 37);
      const float u = rng.uniform(0.0001f, 0.9999f);
      const int64_t am = std::max_element(x.begin(), x.end()) - x.begin();
      cpu::sample_categorical(&id, &p, x.data(), &u, 0.3f + t * 0.1f, 1, 1, 37);
      expect_true(id == am && p == 1.0f, tag + ": top-1 should be argmax");
      cpu::sample_categorical(&id, &p, x.data(), nullptr, 0.0f, 0, 1, 37);
      expect_true(id == am, tag + ": greedy should be argmax");
    }
    // Ties at the k-th value are all kept: {1, 3, 3, 2} with k = 1 keeps both 3s.
    const float tie[4] = {1, 3, 3, 2};
    for (int64_t k : {1, 2}) {
      const float ua = 0.25f, ub = 0.75f;
      cpu::sample_categorical(&id, &p, tie, &ua, 1.0f, k, 1, 4);
      expect_true(id == 1 && p == 0.5f, tag + ": tie k=" + std::to_string(k) + " u .25 got " + std::to_string(id));
      cpu::sample_categorical(&id, &p, tie, &ub, 1.0f, k, 1, 4);
      expect_true(id == 2 && p == 0.5f, tag + ": tie k=" + std::to_string(k) + " u .75 got " + std::to_string(id));
    }
    float probs[4];
    cpu::sampling_probs(probs, tie, 1.0f, 3, 1, 4);
    expect_true(probs[0] == 0.0f && probs[3] > 0.0f, tag + ": k=3 keeps {3, 3, 2} only");
    // Greedy: lowest index among equal maxima; reported prob is the τ = 1 one.
    cpu::sample_categorical(&id, &p, tie, nullptr, 0.0f, 0, 1, 4);
    const double e1 = std::exp(-2.0), e2 = std::exp(-1.0), want_p = 1.0 / (2.0 + e1 + e2);
    expect_true(id == 1 && std::fabs(p - want_p) < 1e-6, tag + ": greedy tie got " + std::to_string(id));
  });
}

RECA_TEST(cfg_combine_and_euler_match_reference) {
  Rand rng(404);
  for (int64_t n : {1, 7, 15, 16, 17, 33, 1000, 40001}) {
    std::vector<float> c(n), u(n), v(n), z0(n);
    rng.fill_normal(c.data(), n);
    rng.fill_normal(u.data(), n);
    rng.fill_normal(v.data(), n);
    rng.fill_normal(z0.data(), n);
    for (float s : {0.0f, 1.0f, 1.5f, 4.0f}) {
      std::vector<float> want(n), zw(z0);
      cpu::ref::cfg_combine(want.data(), c.data(), u.data(), s, n);
      cpu::ref::euler_step(zw.data(), v.data(), 1.0f / 25.0f, n);
      for_each_isa([&](Isa isa) {
        const std::string tag = std::string("cfg/euler ") + isa_name(isa) + " n" + std::to_string(n) + " s" +
                                std::to_string(s);
        Guarded out(n), z(n);
        cpu::cfg_combine(out.data(), c.data(), u.data(), s, n);
        // One fused multiply-add vs two roundings: rtol 1e-6, atol 1e-6.
        expect_close(tag + " cfg", out.data(), want.data(), n, 1e-6, 1e-6);
        if (s == 0.0f) expect_close(tag + " cfg s=0 is uncond", out.data(), u.data(), n, 0.0, 0.0);
        std::memcpy(z.data(), z0.data(), sizeof(float) * n);
        cpu::euler_step(z.data(), v.data(), 1.0f / 25.0f, n);
        expect_close(tag + " euler", z.data(), zw.data(), n, 1e-6, 1e-7);
        expect_guards(out, tag);
        expect_guards(z, tag);
      });
    }
  }
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("cfg closed form ") + isa_name(isa);
    // s = 1 returns cond exactly when cond and uncond are within a factor 2
    // (cond − uncond is then exact); in place over cond.
    Rand r2(405);
    const int64_t n = 77;
    std::vector<float> c(n), u(n), out(n);
    r2.fill_uniform(c.data(), n, 1.0f, 2.0f);
    r2.fill_uniform(u.data(), n, 1.0f, 2.0f);
    cpu::cfg_combine(out.data(), c.data(), u.data(), 1.0f, n);
    expect_close(tag + " s=1", out.data(), c.data(), n, 0.0, 0.0);
    std::vector<float> c2(c);
    cpu::cfg_combine(c2.data(), c2.data(), u.data(), 3.0f, n);
    cpu::cfg_combine(out.data(), c.data(), u.data(), 3.0f, n);
    expect_close(tag + " aliasing", c2.data(), out.data(), n, 0.0, 0.0);
    // Euler: z = 1, v = 4, dt = 1/4 lands on 0 exactly; T steps of constant v move by v.
    float z1 = 1.0f;
    const float v1 = 4.0f;
    cpu::euler_step(&z1, &v1, 0.25f, 1);
    expect_true(z1 == 0.0f, tag + " euler exact");
  });
}

RECA_TEST(maskgit_remask_count_closed_form) {
  // T = 1: cos(π/2) in double is 6.1e-17, so N·cos floors to 0: all unmasked.
  for (int64_t N : {1, 16, 64, 256, 1024, 1 << 20}) {
    expect_true(cpu::maskgit_remask_count(N, 0, 1) == 0, "T=1 leaves masks, N " + std::to_string(N));
    for (int64_t T : {2, 3, 7, 12, 100})
      expect_true(cpu::maskgit_remask_count(N, T - 1, T) == 0, "last step leaves masks, N " + std::to_string(N));
  }
  expect_true(cpu::maskgit_remask_count(16, 0, 2) == 11, "16·cos(π/4) = 11.31 → 11");
  expect_true(cpu::maskgit_remask_count(16, 0, 3) == 13, "16·cos(π/6) = 13.86 → 13");
  expect_true(cpu::maskgit_remask_count(16, 1, 3) == 8, "16·cos(π/3) = 8.0000000000000018 → 8");
  expect_true(cpu::maskgit_remask_count(256, 3, 8) == 181, "256·cos(π/4) = 181.02 → 181");
}

RECA_TEST(maskgit_select_matches_reference) {
  Rand rng(406);
  const int64_t shapes[][2] = {{1, 1}, {1, 2}, {2, 7}, {3, 16}, {4, 17}, {2, 64}, {5, 256}, {2, 1000}};
  for (auto& s : shapes) {
    const int64_t B = s[0], N = s[1], n = B * N;
    for (int64_t T : {1, 2, 3, 8, 12}) {
      for (int64_t step = 0; step < T; ++step) {
        for (int variant = 0; variant < 3; ++variant) {
          std::vector<int32_t> tokens(n), sampled(n);
          std::vector<uint8_t> mask(n);
          std::vector<float> conf(n);
          for (int64_t i = 0; i < n; ++i) {
            tokens[i] = static_cast<int32_t>(rng.index(64));
            sampled[i] = static_cast<int32_t>(rng.index(64));
            mask[i] = variant == 0 ? 1 : static_cast<uint8_t>(rng.index(4) != 0);
            conf[i] = rng.uniform(0.0f, 1.0f);
            if (variant == 2) conf[i] = std::round(conf[i] * 4.0f) / 4.0f;  // heavy ties
            if (mask[i]) tokens[i] = 64;
          }
          std::vector<int32_t> want_t(n);
          std::vector<uint8_t> want_m(n);
          cpu::ref::maskgit_select(want_t.data(), want_m.data(), tokens.data(), mask.data(), sampled.data(),
                                   conf.data(), 64, step, T, B, N);
          for_each_isa([&](Isa isa) {
            const std::string tag = std::string("maskgit ") + isa_name(isa) + " " + shape_str({B, N}) + " T" +
                                    std::to_string(T) + " s" + std::to_string(step) + " v" + std::to_string(variant);
            GuardedI32 t(n, -1, 0x6b6b6b6b);
            GuardedU8 m(n, 7, 0xa5);
            cpu::maskgit_select(t.data(), m.data(), tokens.data(), mask.data(), sampled.data(), conf.data(), 64,
                                step, T, B, N);
            expect_true(std::memcmp(t.data(), want_t.data(), sizeof(int32_t) * n) == 0, tag + " tokens");
            expect_true(std::memcmp(m.data(), want_m.data(), n) == 0, tag + " mask");
            expect_true(t.intact() && m.intact(), tag + ": wrote outside its outputs");
            // In place gives the same.
            std::vector<int32_t> ti(tokens);
            std::vector<uint8_t> mi(mask);
            cpu::maskgit_select(ti.data(), mi.data(), ti.data(), mi.data(), sampled.data(), conf.data(), 64, step, T,
                                B, N);
            expect_true(ti == want_t && mi == want_m, tag + " in place");
          });
        }
      }
    }
  }
}

RECA_TEST(maskgit_select_closed_form) {
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("maskgit closed form ") + isa_name(isa);
    // Full schedule from all-MASK: after step s exactly floor(N·cos(π/2·(s+1)/T))
    // stay masked, unmasked tokens never change, the last step unmasks all.
    Rand rng(407);
    const int64_t B = 3, N = 64, T = 8, MASK = 512;
    std::vector<int32_t> tok(B * N, MASK), sampled(B * N);
    std::vector<uint8_t> mask(B * N, 1);
    std::vector<float> conf(B * N);
    for (int64_t s = 0; s < T; ++s) {
      for (int64_t i = 0; i < B * N; ++i) {
        sampled[i] = static_cast<int32_t>(rng.index(MASK));
        conf[i] = rng.uniform(0.0f, 1.0f);
      }
      const std::vector<int32_t> before(tok);
      const std::vector<uint8_t> mbefore(mask);
      cpu::maskgit_select(tok.data(), mask.data(), tok.data(), mask.data(), sampled.data(), conf.data(), MASK, s, T,
                          B, N);
      const int64_t want = static_cast<int64_t>(std::floor(N * std::cos(1.5707963267948966 * (double(s + 1) / T))));
      for (int64_t b = 0; b < B; ++b) {
        int64_t masked = 0;
        float min_kept = 2.0f, max_remasked = -1.0f;
        for (int64_t i = b * N; i < (b + 1) * N; ++i) {
          masked += mask[i];
          if (!mbefore[i]) expect_true(tok[i] == before[i] && !mask[i], tag + ": an unmasked token changed");
          if (mbefore[i] && !mask[i]) {
            expect_true(tok[i] == sampled[i], tag + ": kept position lost its sample");
            min_kept = std::min(min_kept, conf[i]);
          }
          if (mask[i]) {
            expect_true(tok[i] == MASK, tag + ": masked position without MASK id");
            max_remasked = std::max(max_remasked, conf[i]);
          }
        }
        expect_true(masked == want, tag + ": step " + std::to_string(s) + " left " + std::to_string(masked) +
                                        " masked, want " + std::to_string(want));
        expect_true(max_remasked <= min_kept, tag + ": a re-masked position was more confident than a kept one");
      }
    }
    for (auto m : mask) expect_true(m == 0, tag + ": masks left after the last step");
    // T = 1 unmasks everything in one step.
    std::vector<int32_t> t1(5, 9), s1 = {1, 2, 3, 4, 5};
    std::vector<uint8_t> m1(5, 1);
    const float c1[5] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
    cpu::maskgit_select(t1.data(), m1.data(), t1.data(), m1.data(), s1.data(), c1, 9, 0, 1, 1, 5);
    expect_true(t1 == s1 && m1 == std::vector<uint8_t>(5, 0), tag + ": T=1 should unmask all");
    // Equal confidences: the lower index is kept. N = 8, T = 3, step 1: R = floor(8·0.5) = 4.
    std::vector<int32_t> t2(8, 99), s2 = {10, 11, 12, 13, 14, 15, 16, 17};
    std::vector<uint8_t> m2(8, 1);
    const float c2[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    cpu::maskgit_select(t2.data(), m2.data(), t2.data(), m2.data(), s2.data(), c2, 99, 1, 3, 1, 8);
    const std::vector<int32_t> w2 = {10, 11, 12, 13, 99, 99, 99, 99};
    const std::vector<uint8_t> wm2 = {0, 0, 0, 0, 1, 1, 1, 1};
    expect_true(t2 == w2 && m2 == wm2, tag + ": ties should keep the lower indices");
    // Already-unmasked positions stay fixed and do not count in the ranking.
    std::vector<int32_t> t3 = {7, 99, 99, 99}, s3 = {0, 21, 22, 23};
    std::vector<uint8_t> m3 = {0, 1, 1, 1};
    const float c3[4] = {0.99f, 0.2f, 0.9f, 0.1f};
    // N = 4, T = 3, step 1: R = floor(4·0.5) = 2 of the 3 masked re-masked: keep position 2 only.
    cpu::maskgit_select(t3.data(), m3.data(), t3.data(), m3.data(), s3.data(), c3, 99, 1, 3, 1, 4);
    expect_true(t3 == std::vector<int32_t>({7, 99, 22, 99}) && m3 == std::vector<uint8_t>({0, 1, 0, 1}),
                tag + ": unmasked positions must stay fixed");
  });
}

RECA_TEST(sampling_deterministic_across_thread_counts) {
  Rand rng(408);
  const int64_t rows = 257, V = 513, B = 33, N = 256, n = 70001;
  const std::vector<float> x = make_logits(rows, V, 1, rng);
  const std::vector<float> u = make_uniforms(rows, rng);
  std::vector<float> conf(B * N), c(n), un(n), v(n);
  std::vector<int32_t> sampled(B * N), tokens(B * N, 512);
  std::vector<uint8_t> mask(B * N, 1);
  for (int64_t i = 0; i < B * N; ++i) {
    conf[i] = std::round(rng.uniform(0.0f, 8.0f)) / 8.0f;
    sampled[i] = static_cast<int32_t>(rng.index(512));
  }
  rng.fill_normal(c.data(), n);
  rng.fill_normal(un.data(), n);
  rng.fill_normal(v.data(), n);
  const int saved = num_threads();
  struct Out {
    std::vector<float> probs, p, cfg, z;
    std::vector<int32_t> ids, tok;
    std::vector<uint8_t> m;
  };
  auto run = [&](int threads) {
    set_num_threads(threads);
    Out o{std::vector<float>(rows * V), std::vector<float>(rows), std::vector<float>(n), c,
          std::vector<int32_t>(rows), std::vector<int32_t>(B * N), std::vector<uint8_t>(B * N)};
    cpu::sampling_probs(o.probs.data(), x.data(), 0.8f, 40, rows, V);
    cpu::sample_categorical(o.ids.data(), o.p.data(), x.data(), u.data(), 0.8f, 40, rows, V);
    cpu::cfg_combine(o.cfg.data(), c.data(), un.data(), 3.0f, n);
    cpu::euler_step(o.z.data(), v.data(), 0.1f, n);
    cpu::maskgit_select(o.tok.data(), o.m.data(), tokens.data(), mask.data(), sampled.data(), conf.data(), 512, 2, 8,
                        B, N);
    return o;
  };
  for_each_isa([&](Isa isa) {
    const Out a = run(1), b = run(2), d = run(5);
    for (const Out* o : {&b, &d}) {
      const std::string tag = std::string("sampling determinism ") + isa_name(isa);
      expect_true(std::memcmp(a.probs.data(), o->probs.data(), sizeof(float) * rows * V) == 0, tag + " probs");
      expect_true(a.ids == o->ids, tag + " ids");
      expect_true(std::memcmp(a.p.data(), o->p.data(), sizeof(float) * rows) == 0, tag + " p");
      expect_true(std::memcmp(a.cfg.data(), o->cfg.data(), sizeof(float) * n) == 0, tag + " cfg");
      expect_true(std::memcmp(a.z.data(), o->z.data(), sizeof(float) * n) == 0, tag + " euler");
      expect_true(a.tok == o->tok && a.m == o->m, tag + " maskgit");
    }
  });
  set_num_threads(saved);
}
