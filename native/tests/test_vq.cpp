#include <cstring>

#include "core/threadpool.h"
#include "cpu/vq.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {
// An int32 output with guard words on both sides.
struct GuardedI32 {
  static constexpr int64_t kGuard = 29;
  static constexpr int32_t kPattern = 0x5a5a1234;
  std::vector<int32_t> buf;
  int64_t n;
  explicit GuardedI32(int64_t n_, int32_t fill = -7) : buf(n_ + 2 * kGuard, kPattern), n(n_) {
    for (int64_t i = 0; i < n; ++i) buf[kGuard + i] = fill;
  }
  int32_t* data() { return buf.data() + kGuard; }
  bool intact() const {
    for (int64_t i = 0; i < kGuard; ++i)
      if (buf[i] != kPattern || buf[kGuard + n + i] != kPattern) return false;
    return true;
  }
};

void expect_codes(const std::string& tag, const int32_t* got, const int32_t* want, int64_t n) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i)
    if (got[i] != want[i] && bad++ == 0) first = i;
  if (bad)
    report_failure(tag + ": " + std::to_string(bad) + "/" + std::to_string(n) + " codes differ, first at " +
                   std::to_string(first) + ": got " + std::to_string(got[first]) + " want " +
                   std::to_string(want[first]));
}

// (n, K, C): 1, odd sizes, K around multiples of 16, and the preset shapes.
const int64_t kShapes[][3] = {{1, 1, 1},   {1, 1, 8},     {3, 5, 8},    {7, 15, 16},  {9, 16, 16},
                              {11, 17, 8}, {33, 31, 13},  {5, 33, 33},  {64, 64, 8},  {100, 512, 16},
                              {37, 4096, 32}, {300, 47, 7}};

// Codebook with near ties around z: many rows are z plus tiny perturbations,
// some rows are duplicates, some are exact mirror images, some permutations.
void fill_tricky(std::vector<float>& z, std::vector<float>& cb, int64_t n, int64_t K, int64_t C, Rand& rng) {
  rng.fill_normal(cb.data(), K * C);
  for (int64_t k = 1; k < K; k += 3) std::memcpy(&cb[k * C], &cb[(k - 1) * C], sizeof(float) * C);  // duplicates
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = rng.index(K);
    for (int64_t c = 0; c < C; ++c) z[i * C + c] = cb[k * C + c] + rng.normal(1e-3f);
    // a few perturbed copies of z (distances within a few ulp of each other)
    for (int j = 0; j < 2 && K > 4; ++j) {
      const int64_t kk = rng.index(K);
      for (int64_t c = 0; c < C; ++c) cb[kk * C + c] = z[i * C + c] + rng.normal(1e-6f);
    }
    // a permutation of another code's components around z (equal in exact arithmetic)
    if (K > 4 && C > 2) {
      const int64_t a = rng.index(K), b = rng.index(K);
      if (a != b)
        for (int64_t c = 0; c < C; ++c) {
          const float d = cb[a * C + c] - z[i * C + c];
          cb[a * C + c] = z[i * C + c] + d;
          cb[b * C + (c + 1) % C] = z[i * C + (c + 1) % C] + d;
        }
    }
  }
}
}  // namespace

RECA_TEST(vq_nearest_matches_reference) {
  Rand rng(301);
  for (auto& s : kShapes) {
    const int64_t n = s[0], K = s[1], C = s[2];
    for (int variant = 0; variant < 2; ++variant) {
      std::vector<float> z(n * C), cb(K * C);
      if (variant == 0) {
        rng.fill_normal(z.data(), n * C);
        rng.fill_uniform(cb.data(), K * C, -1.0f, 1.0f);
      } else {
        fill_tricky(z, cb, n, K, C, rng);
      }
      std::vector<int32_t> want(n), want_d(n);
      cpu::ref::vq_nearest(want.data(), z.data(), cb.data(), n, K, C);
      // The double reference decides on the same canonical distances.
      std::vector<double> zd = to_double(z.data(), n * C), cbd = to_double(cb.data(), K * C);
      cpu::ref::vq_nearest(want_d.data(), zd.data(), cbd.data(), n, K, C);
      const std::string base = shape_str({n, K, C}) + (variant ? " near-ties" : " random");
      expect_codes("vq_nearest ref float vs double " + base, want.data(), want_d.data(), n);
      for_each_isa([&](Isa isa) {
        GuardedI32 codes(n);
        cpu::vq_nearest(codes.data(), z.data(), cb.data(), n, K, C);
        const std::string tag = std::string("vq_nearest ") + isa_name(isa) + " " + base;
        expect_codes(tag, codes.data(), want.data(), n);
        expect_true(codes.intact(), tag + ": wrote outside its output");
      });
    }
  }
}

RECA_TEST(vq_nearest_ties_pick_lowest_code) {
  // Dyadic values: every distance is exact, so ties are exact ties.
  const int64_t C = 8, K = 6;
  std::vector<float> cb(K * C, 0.0f), z(2 * C, 0.5f);
  for (int64_t c = 0; c < C; ++c) {
    cb[0 * C + c] = 2.0f;                      // far
    cb[1 * C + c] = 0.25f;                     // distance 0.0625 per dim
    cb[2 * C + c] = 0.75f;                     // the same distance, mirrored
    cb[3 * C + c] = 0.25f;                     // duplicate of code 1
    cb[4 * C + c] = 0.5f + 0.25f * (c % 2 ? 1.0f : -1.0f);  // mixed, the same distance
    cb[5 * C + c] = 3.0f;
    z[C + c] = 2.0f;  // second row sits exactly on code 0
  }
  for_each_isa([&](Isa isa) {
    int32_t codes[2] = {-1, -1};
    cpu::vq_nearest(codes, z.data(), cb.data(), 2, K, C);
    expect_true(codes[0] == 1, std::string("vq tie ") + isa_name(isa) + ": got " + std::to_string(codes[0]) + ", want 1");
    expect_true(codes[1] == 0, std::string("vq exact hit ") + isa_name(isa) + ": got " + std::to_string(codes[1]));
  });
  // The duplicated winner listed first gets it too (reverse the order of 1..4).
  std::vector<float> cb2(cb);
  for (int64_t k = 1; k <= 4; ++k) std::memcpy(&cb2[k * C], &cb[(5 - k) * C], sizeof(float) * C);
  for_each_isa([&](Isa isa) {
    int32_t code = -1;
    cpu::vq_nearest(&code, z.data(), cb2.data(), 1, K, C);
    expect_true(code == 1, std::string("vq tie reversed ") + isa_name(isa) + ": got " + std::to_string(code));
  });
}

RECA_TEST(vq_gather_loss_backward_match_reference) {
  Rand rng(302);
  for (auto& s : kShapes) {
    const int64_t n = s[0], K = s[1], C = s[2];
    std::vector<float> z(n * C), cb(K * C), dzq(n * C);
    rng.fill_normal(z.data(), n * C);
    rng.fill_uniform(cb.data(), K * C, -1.0f, 1.0f);
    rng.fill_normal(dzq.data(), n * C);
    std::vector<int32_t> codes(n);
    for (auto& c : codes) c = static_cast<int32_t>(rng.index(K));
    const float s_cb = 0.7f, s_commit = 1.3f;
    std::vector<float> g_ref(n * C);
    cpu::ref::vq_gather(g_ref.data(), codes.data(), cb.data(), n, C);
    float lcb_ref, lcm_ref;
    cpu::ref::vq_loss_forward(&lcb_ref, &lcm_ref, z.data(), cb.data(), codes.data(), n, C);
    for (int with_dzq = 0; with_dzq < 2; ++with_dzq) {
      const float* dq = with_dzq ? dzq.data() : nullptr;
      std::vector<float> dz_ref(n * C, 0.5f), dcb_ref(K * C, -0.25f);
      cpu::ref::vq_loss_backward(dz_ref.data(), dcb_ref.data(), dq, z.data(), cb.data(), codes.data(), s_cb,
                                 s_commit, n, K, C);
      for_each_isa([&](Isa isa) {
        const std::string tag = std::string("vq ") + isa_name(isa) + " " + shape_str({n, K, C}) +
                                (with_dzq ? " dz_q" : "");
        Guarded g(n * C), dz(n * C, 0.5f), dcb(K * C, -0.25f), lcb(1), lcm(1);
        cpu::vq_gather(g.data(), codes.data(), cb.data(), n, C);
        expect_close(tag + " gather", g.data(), g_ref.data(), n * C, 0.0, 0.0);
        cpu::vq_loss_forward(lcb.data(), lcm.data(), z.data(), cb.data(), codes.data(), n, C);
        expect_close(tag + " loss_codebook", lcb.data(), &lcb_ref, 1, 1e-5, 0.0);
        expect_close(tag + " loss_commit", lcm.data(), &lcm_ref, 1, 1e-5, 0.0);
        cpu::vq_loss_backward(dz.data(), dcb.data(), dq, z.data(), cb.data(), codes.data(), s_cb, s_commit, n, K, C);
        expect_close(tag + " dz", dz.data(), dz_ref.data(), n * C, 1e-5, 1e-7);
        expect_close(tag + " dcodebook", dcb.data(), dcb_ref.data(), K * C, 1e-5, 1e-6);
        for (const Guarded* b : {&g, &dz, &dcb, &lcb, &lcm}) expect_guards(*b, tag);
        // Null gradient outputs are skipped (frozen codebook / frozen encoder).
        Guarded dz2(n * C, 0.5f), dcb2(K * C, -0.25f);
        cpu::vq_loss_backward(dz2.data(), nullptr, dq, z.data(), cb.data(), codes.data(), s_cb, s_commit, n, K, C);
        cpu::vq_loss_backward(nullptr, dcb2.data(), dq, z.data(), cb.data(), codes.data(), s_cb, s_commit, n, K, C);
        expect_true(std::memcmp(dz2.data(), dz.data(), sizeof(float) * n * C) == 0, tag + " dz alone differs");
        expect_true(std::memcmp(dcb2.data(), dcb.data(), sizeof(float) * K * C) == 0, tag + " dcodebook alone differs");
      });
    }
  }
}

RECA_TEST(vq_backward_finite_differences) {
  Rand rng(303);
  const int64_t n = 6, K = 5, C = 7;
  std::vector<float> z(n * C), cb(K * C), dzq(n * C);
  rng.fill_normal(z.data(), n * C);
  rng.fill_normal(cb.data(), K * C);
  rng.fill_normal(dzq.data(), n * C);
  std::vector<int32_t> codes(n);
  cpu::ref::vq_nearest(codes.data(), z.data(), cb.data(), n, K, C);
  codes[0] = codes[1];  // one code used twice, so its gradient sums rows
  const double s_cb = 0.7, s_commit = 1.3;
  const std::vector<double> zd0 = to_double(z.data(), n * C), cbd0 = to_double(cb.data(), K * C);
  const std::vector<double> dzqd = to_double(dzq.data(), n * C);
  // Codes are held fixed (the argmin is piecewise constant). Stop-gradients:
  // the codebook term moves e only, the commitment term moves z only, and the
  // straight-through input z + sg(e − z) moves z with slope 1.
  auto loss_e = [&](const std::vector<double>& cbd) {
    double lcb, lcm;
    cpu::ref::vq_loss_forward(&lcb, &lcm, zd0.data(), cbd.data(), codes.data(), n, C);
    return s_cb * lcb;
  };
  auto loss_z = [&](const std::vector<double>& zd) {
    double lcb, lcm;
    cpu::ref::vq_loss_forward(&lcb, &lcm, zd.data(), cbd0.data(), codes.data(), n, C);
    double st = 0;  // Σ dz_q ⊙ (z + const)
    for (int64_t i = 0; i < n * C; ++i) st += dzqd[i] * (zd[i] + (cbd0[codes[i / C] * C + i % C] - zd0[i]));
    return s_commit * lcm + st;
  };
  for_each_isa([&](Isa isa) {
    std::vector<float> dz(n * C, 0.0f), dcb(K * C, 0.0f);
    cpu::vq_loss_backward(dz.data(), dcb.data(), dzq.data(), z.data(), cb.data(), codes.data(),
                          static_cast<float>(s_cb), static_cast<float>(s_commit), n, K, C);
    std::vector<double> zd = zd0, cbd = cbd0;
    const std::string tag = std::string("vq fd ") + isa_name(isa);
    // rtol 1e-4 / atol 1e-6: central differences of a quadratic are exact up to rounding.
    fd_check(tag + " dz", zd, loss_z, dz.data(), 1000, rng);
    fd_check(tag + " dcodebook", cbd, loss_e, dcb.data(), 1000, rng);
  });
}

RECA_TEST(vq_count_codes_accumulates) {
  const int32_t codes[] = {3, 0, 3, 3, 1};
  std::vector<int64_t> counts(6, 0);
  counts[5] = 2;
  cpu::vq_count_codes(counts.data(), codes, 5);
  cpu::vq_count_codes(counts.data(), codes, 2);
  const int64_t want[6] = {2, 1, 0, 4, 0, 2};
  for (int k = 0; k < 6; ++k)
    expect_true(counts[k] == want[k], "vq_count_codes[" + std::to_string(k) + "] = " + std::to_string(counts[k]) +
                                          ", want " + std::to_string(want[k]));
}

RECA_TEST(vq_deterministic_across_thread_counts) {
  Rand rng(304);
  const int64_t n = 3001, K = 512, C = 16;
  std::vector<float> z(n * C), cb(K * C), dzq(n * C);
  fill_tricky(z, cb, 64, K, C, rng);  // near ties in the first rows
  rng.fill_normal(z.data() + 64 * C, (n - 64) * C);
  rng.fill_normal(dzq.data(), n * C);
  const int saved = num_threads();
  struct Out {
    std::vector<int32_t> codes;
    std::vector<float> dz, dcb;
    float l[2];
  };
  auto run = [&](int threads) {
    set_num_threads(threads);
    Out o{std::vector<int32_t>(n), std::vector<float>(n * C, 0.0f), std::vector<float>(K * C, 0.0f), {0, 0}};
    cpu::vq_nearest(o.codes.data(), z.data(), cb.data(), n, K, C);
    cpu::vq_loss_forward(&o.l[0], &o.l[1], z.data(), cb.data(), o.codes.data(), n, C);
    cpu::vq_loss_backward(o.dz.data(), o.dcb.data(), dzq.data(), z.data(), cb.data(), o.codes.data(), 1.0f, 1.0f,
                          n, K, C);
    return o;
  };
  for_each_isa([&](Isa isa) {
    const Out a = run(1), b = run(2), c = run(7);
    for (const Out* o : {&b, &c}) {
      const std::string tag = std::string("vq determinism ") + isa_name(isa);
      expect_true(std::memcmp(a.codes.data(), o->codes.data(), sizeof(int32_t) * n) == 0, tag + " codes");
      expect_true(std::memcmp(a.l, o->l, sizeof a.l) == 0, tag + " loss");
      expect_true(std::memcmp(a.dz.data(), o->dz.data(), sizeof(float) * n * C) == 0, tag + " dz");
      expect_true(std::memcmp(a.dcb.data(), o->dcb.data(), sizeof(float) * K * C) == 0, tag + " dcodebook");
    }
  });
  set_num_threads(saved);
}
