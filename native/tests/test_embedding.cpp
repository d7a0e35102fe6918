#include <algorithm>
#include <cstring>

#include "core/threadpool.h"
#include "cpu/embedding.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {

// Ids with many repeats and about one in six rows marked −1 (filled elsewhere).
std::vector<int32_t> make_ids(Rand& rng, int64_t N, int64_t vocab) {
  std::vector<int32_t> ids(N);
  for (int64_t n = 0; n < N; ++n)
    ids[n] = rng.index(6) == 0 ? -1 : static_cast<int32_t>(rng.index(vocab < 4 ? vocab : vocab / 4 + 1));
  if (N > 1) ids[N - 1] = static_cast<int32_t>(vocab - 1);  // the last row of the table too
  return ids;
}

}  // namespace

// Gathers and scatter-adds add the same numbers in the same order as the
// reference, so the fast paths must match it exactly (tolerance 0).
RECA_TEST(embedding_matches_reference) {
  Rand rng(301);
  const int64_t Ds[] = {1, 7, 15, 16, 17, 64, 263};
  const int64_t Ns[] = {1, 5, 100};
  const int64_t vocabs[] = {1, 3, 263};
  for (int64_t D : Ds)
    for (int64_t N : Ns)
      for (int64_t vocab : vocabs) {
        std::vector<float> table(vocab * D), dout(N * D), dt0(vocab * D);
        rng.fill_normal(table.data(), vocab * D);
        rng.fill_normal(dout.data(), N * D);
        rng.fill_normal(dt0.data(), vocab * D);
        const std::vector<int32_t> ids = make_ids(rng, N, vocab);
        std::vector<float> out_ref(N * D, 5.0f), dt_ref = dt0;
        cpu::ref::embedding_forward(out_ref.data(), table.data(), ids.data(), N, D);
        cpu::ref::embedding_backward(dt_ref.data(), dout.data(), ids.data(), N, D);
        int kept = 0;
        for (int64_t n = 0; n < N; ++n)
          if (ids[n] < 0) kept += out_ref[n * D] == 5.0f;
        expect_true(kept == std::count(ids.begin(), ids.end(), -1), "embedding ref keeps rows with id -1");
        for_each_isa([&](Isa isa) {
          const std::string tag = std::string("embedding ") + isa_name(isa) + " vocab" +
                                  std::to_string(vocab) + " " + shape_str({N, D});
          Guarded out(N * D, 5.0f), dt(vocab * D);
          std::memcpy(dt.data(), dt0.data(), vocab * D * sizeof(float));
          cpu::embedding_forward(out.data(), table.data(), ids.data(), N, D);
          expect_close(tag + " forward", out.data(), out_ref.data(), N * D, 0, 0);
          cpu::embedding_backward(dt.data(), dout.data(), ids.data(), N, D);
          expect_close(tag + " backward", dt.data(), dt_ref.data(), vocab * D, 0, 0);
          expect_guards(out, tag + " out");
          expect_guards(dt, tag + " dtable");
        });
      }
}

// Positional add on one block of a longer sequence (x viewed from row0): rows
// outside the block stay untouched. Exact against the reference (tolerance 0).
RECA_TEST(embedding_pos_add_matches_reference) {
  Rand rng(302);
  struct Case { int64_t B, seq_len, row0, L, D; };
  const Case cases[] = {{1, 1, 0, 1, 1},    {2, 7, 0, 7, 16},   {3, 20, 5, 9, 17},  {2, 67, 0, 23, 64},
                        {4, 132, 67, 65, 15}, {1, 40, 39, 1, 263}, {5, 33, 3, 30, 33}};
  for (const Case& c : cases) {
    const int64_t nx = c.B * c.seq_len * c.D, np = c.L * c.D;
    std::vector<float> x0(nx), pos(np), dout(nx), dp0(np);
    rng.fill_normal(x0.data(), nx);
    rng.fill_normal(pos.data(), np);
    rng.fill_normal(dout.data(), nx);
    rng.fill_normal(dp0.data(), np);
    std::vector<float> x_ref = x0, dp_ref = dp0;
    cpu::ref::pos_add_forward(x_ref.data() + c.row0 * c.D, pos.data(), c.B, c.seq_len, c.L, c.D);
    cpu::ref::pos_add_backward(dp_ref.data(), dout.data() + c.row0 * c.D, c.B, c.seq_len, c.L, c.D);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("pos_add ") + isa_name(isa) + " B" + std::to_string(c.B) +
                              " seq" + std::to_string(c.seq_len) + " row0 " + std::to_string(c.row0) +
                              " " + shape_str({c.L, c.D});
      Guarded x(nx), dp(np);
      std::memcpy(x.data(), x0.data(), nx * sizeof(float));
      std::memcpy(dp.data(), dp0.data(), np * sizeof(float));
      cpu::pos_add_forward(x.data() + c.row0 * c.D, pos.data(), c.B, c.seq_len, c.L, c.D);
      expect_close(tag + " forward", x.data(), x_ref.data(), nx, 0, 0);
      cpu::pos_add_backward(dp.data(), dout.data() + c.row0 * c.D, c.B, c.seq_len, c.L, c.D);
      expect_close(tag + " backward", dp.data(), dp_ref.data(), np, 0, 0);
      expect_guards(x, tag + " x");
      expect_guards(dp, tag + " dpos");
    });
  }
}

// Finite differences of Σ w ⊙ f(params), evaluated by the double reference,
// against the fast backward kernels. Tolerance |num − ana| <= 1e-6 + 1e-5·|num|.
RECA_TEST(embedding_backward_finite_differences) {
  Rand rng(303);
  const int64_t vocab = 9, N = 23, D = 19, B = 3, seq_len = 11, row0 = 2, L = 7;
  std::vector<float> table(vocab * D), w(N * D), pos(L * D), wx(B * seq_len * D);
  rng.fill_normal(table.data(), vocab * D);
  rng.fill_normal(w.data(), N * D);
  rng.fill_normal(pos.data(), L * D);
  rng.fill_normal(wx.data(), B * seq_len * D);
  const std::vector<int32_t> ids = make_ids(rng, N, vocab);
  const std::vector<double> wd = to_double(w.data(), N * D), wxd = to_double(wx.data(), B * seq_len * D);
  auto emb_loss = [&](const std::vector<double>& t) {
    std::vector<double> out(N * D, 0.0);
    cpu::ref::embedding_forward(out.data(), t.data(), ids.data(), N, D);
    double s = 0;
    for (int64_t i = 0; i < N * D; ++i) s += out[i] * wd[i];
    return s;
  };
  auto pos_loss = [&](const std::vector<double>& p) {
    std::vector<double> x(B * seq_len * D, 0.0);
    cpu::ref::pos_add_forward(x.data() + row0 * D, p.data(), B, seq_len, L, D);
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += x[i] * wxd[i];
    return s;
  };
  for_each_isa([&](Isa isa) {
    std::vector<float> dt(vocab * D, 0.0f), dp(L * D, 0.0f);
    cpu::embedding_backward(dt.data(), w.data(), ids.data(), N, D);
    cpu::pos_add_backward(dp.data(), wx.data() + row0 * D, B, seq_len, L, D);
    std::vector<double> td = to_double(table.data(), vocab * D), pd = to_double(pos.data(), L * D);
    const std::string tag = std::string("embedding fd ") + isa_name(isa);
    fd_check(tag + " dtable", td, emb_loss, dt.data(), 1000, rng, 1e-5, 1e-5, 1e-6);
    fd_check(tag + " dpos", pd, pos_loss, dp.data(), 1000, rng, 1e-5, 1e-5, 1e-6);
  });
}

// Bitwise identical results for 1, 2 and 3 threads, with heavily repeated ids.
RECA_TEST(embedding_thread_count_determinism) {
  Rand rng(304);
  const int64_t vocab = 40, N = 777, D = 100, B = 6, seq_len = 50, L = 37;
  std::vector<float> dout(N * D), table(vocab * D), dx(B * seq_len * D);
  rng.fill_normal(dout.data(), N * D);
  rng.fill_normal(table.data(), vocab * D);
  rng.fill_normal(dx.data(), B * seq_len * D);
  const std::vector<int32_t> ids = make_ids(rng, N, vocab);
  const int saved = num_threads();
  for_each_isa([&](Isa isa) {
    std::vector<float> dt[3], out[3], dp[3];
    for (int t = 0; t < 3; ++t) {
      set_num_threads(t + 1);
      dt[t].assign(vocab * D, 0.125f);
      out[t].assign(N * D, 0.0f);
      dp[t].assign(L * D, 0.5f);
      cpu::embedding_forward(out[t].data(), table.data(), ids.data(), N, D);
      cpu::embedding_backward(dt[t].data(), dout.data(), ids.data(), N, D);
      cpu::pos_add_backward(dp[t].data(), dx.data(), B, seq_len, L, D);
    }
    const std::string tag = std::string("embedding determinism ") + isa_name(isa);
    for (int t = 1; t < 3; ++t) {
      expect_true(std::memcmp(out[0].data(), out[t].data(), N * D * 4) == 0, tag + " forward");
      expect_true(std::memcmp(dt[0].data(), dt[t].data(), vocab * D * 4) == 0, tag + " dtable");
      expect_true(std::memcmp(dp[0].data(), dp[t].data(), L * D * 4) == 0, tag + " dpos");
    }
  });
  set_num_threads(saved);
}
