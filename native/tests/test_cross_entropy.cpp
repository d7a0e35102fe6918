#include <cstring>
#include <limits>

#include "core/threadpool.h"
#include "cpu/cross_entropy.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {

// Logits with a spread of scales, some rows shifted far from 0 (stability), and
// about a quarter of the targets ignored (−1 or another negative value).
void make_inputs(Rand& rng, int64_t rows, int64_t V, std::vector<float>& logits,
                 std::vector<int32_t>& targets) {
  logits.resize(rows * V);
  targets.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const float sd = r % 3 == 0 ? 0.5f : (r % 3 == 1 ? 3.0f : 8.0f);
    const float shift = r % 5 == 2 ? 1000.0f : (r % 5 == 3 ? -500.0f : 0.0f);
    for (int64_t c = 0; c < V; ++c) logits[r * V + c] = rng.normal(sd) + shift;
    const int64_t u = rng.index(8);
    targets[r] = u == 0 ? -1 : (u == 1 ? -100 : static_cast<int32_t>(rng.index(V)));
  }
  if (rows > 0) targets[0] = static_cast<int32_t>(V - 1);  // the last class at least once
}

}  // namespace

// Fast paths against the double reference on the same float inputs.
// Tolerances: loss sum rtol 1e-5 (+1e-4 abs), per-row losses rtol 1e-5 / atol 2e-5
// (values up to ~log V + spread), dlogits / probs rtol 2e-5 / atol 2e-7, log-softmax
// rtol 1e-6 / atol 2e-5.
RECA_TEST(cross_entropy_matches_reference) {
  Rand rng(201);
  const int64_t Vs[] = {1, 7, 15, 16, 17, 33, 263, 512, 4096};
  const int64_t Rs[] = {1, 5, 67};
  for (int64_t V : Vs)
    for (int64_t rows : Rs) {
      std::vector<float> logits, dl0(rows * V);
      std::vector<int32_t> targets;
      make_inputs(rng, rows, V, logits, targets);
      rng.fill_normal(dl0.data(), rows * V, 0.5f);
      const int64_t n = rows * V;
      const float scale = 0.37f;
      const std::vector<double> xd = to_double(logits.data(), n);
      std::vector<double> loss_d(rows), dl_d = to_double(dl0.data(), n), prob_d(n), logp_d(n);
      const double sum_d = cpu::ref::cross_entropy_forward(loss_d.data(), xd.data(), targets.data(), rows, V);
      cpu::ref::cross_entropy_backward(dl_d.data(), xd.data(), targets.data(), double(scale), rows, V);
      cpu::ref::softmax_forward(prob_d.data(), xd.data(), rows, V);
      cpu::ref::log_softmax_forward(logp_d.data(), xd.data(), rows, V);
      const std::string base = shape_str({rows, V});
      {  // the float reference itself
        std::vector<float> lf(rows), df = dl0;
        const double sf = cpu::ref::cross_entropy_forward(lf.data(), logits.data(), targets.data(), rows, V);
        cpu::ref::cross_entropy_backward(df.data(), logits.data(), targets.data(), scale, rows, V);
        expect_true(std::fabs(sf - sum_d) <= 1e-4 + 1e-5 * std::fabs(sum_d), "ce ref<float> sum " + base);
        expect_close("ce ref<float> losses " + base, lf.data(), loss_d.data(), rows, 1e-5, 2e-5);
        expect_close("ce ref<float> dlogits " + base, df.data(), dl_d.data(), n, 2e-5, 2e-7);
      }
      for_each_isa([&](Isa isa) {
        const std::string tag = std::string("ce ") + isa_name(isa) + " " + base;
        Guarded losses(rows, 9.0f), dl(n), losses2(rows, 9.0f), dl2(n), probs(n), logp(n);
        std::memcpy(dl.data(), dl0.data(), n * sizeof(float));
        std::memcpy(dl2.data(), dl0.data(), n * sizeof(float));
        const double sum = cpu::cross_entropy_forward(losses.data(), logits.data(), targets.data(), rows, V);
        expect_true(std::fabs(sum - sum_d) <= 1e-4 + 1e-5 * std::fabs(sum_d),
                    tag + " sum " + std::to_string(sum) + " vs " + std::to_string(sum_d));
        expect_close(tag + " losses", losses.data(), loss_d.data(), rows, 1e-5, 2e-5);
        const double sum_null = cpu::cross_entropy_forward(nullptr, logits.data(), targets.data(), rows, V);
        expect_true(sum_null == sum, tag + " sum without per-row losses");
        cpu::cross_entropy_backward(dl.data(), logits.data(), targets.data(), scale, rows, V);
        expect_close(tag + " dlogits", dl.data(), dl_d.data(), n, 2e-5, 2e-7);
        // Ignored rows keep their incoming gradient bit for bit.
        int touched = 0;
        for (int64_t r = 0; r < rows; ++r)
          if (targets[r] < 0) touched += std::memcmp(dl.data() + r * V, dl0.data() + r * V, V * 4) != 0;
        expect_true(touched == 0, tag + " ignored rows untouched");
        // The fused pass gives exactly what the two separate passes give.
        const double sum2 = cpu::cross_entropy_forward_backward(losses2.data(), dl2.data(), logits.data(),
                                                                targets.data(), scale, rows, V);
        expect_true(sum2 == sum, tag + " fused sum");
        expect_true(std::memcmp(losses2.data(), losses.data(), rows * 4) == 0, tag + " fused losses");
        expect_true(std::memcmp(dl2.data(), dl.data(), n * 4) == 0, tag + " fused dlogits");
        cpu::softmax_forward(probs.data(), logits.data(), rows, V);
        expect_close(tag + " softmax", probs.data(), prob_d.data(), n, 2e-5, 2e-7);
        cpu::log_softmax_forward(logp.data(), logits.data(), rows, V);
        expect_close(tag + " log_softmax", logp.data(), logp_d.data(), n, 1e-6, 2e-5);
        // In place.
        std::vector<float> inplace = logits;
        cpu::softmax_forward(inplace.data(), inplace.data(), rows, V);
        expect_true(std::memcmp(inplace.data(), probs.data(), n * 4) == 0, tag + " softmax in place");
        inplace = logits;
        cpu::log_softmax_forward(inplace.data(), inplace.data(), rows, V);
        expect_true(std::memcmp(inplace.data(), logp.data(), n * 4) == 0, tag + " log_softmax in place");
        for (Guarded* g : {&losses, &dl, &losses2, &dl2, &probs, &logp}) expect_guards(*g, tag);
      });
    }
}

// Rows with −∞ entries (classes filtered out before sampling): those get
// probability 0 and −∞ log-probability; the rest matches the double reference
// (rtol 2e-5 / atol 2e-7, log-softmax rtol 1e-6 / atol 2e-5).
RECA_TEST(cross_entropy_softmax_with_neg_inf) {
  Rand rng(204);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t V : {1, 5, 16, 17, 263}) {
    const int64_t rows = 4, n = rows * V;
    std::vector<float> x(n);
    rng.fill_normal(x.data(), n, 2.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < V; ++c)
        if (c != r % V && rng.index(3) == 0) x[r * V + c] = ninf;  // keep one finite entry per row
    const std::vector<double> xd = to_double(x.data(), n);
    std::vector<double> p_d(n), lp_d(n);
    cpu::ref::softmax_forward(p_d.data(), xd.data(), rows, V);
    cpu::ref::log_softmax_forward(lp_d.data(), xd.data(), rows, V);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("softmax -inf ") + isa_name(isa) + " V" + std::to_string(V);
      Guarded p(n), lp(n);
      cpu::softmax_forward(p.data(), x.data(), rows, V);
      cpu::log_softmax_forward(lp.data(), x.data(), rows, V);
      expect_close(tag + " softmax", p.data(), p_d.data(), n, 2e-5, 2e-7);
      int bad = 0;
      for (int64_t k = 0; k < n; ++k) {
        if (std::isinf(lp_d[k])) bad += !(std::isinf(lp[k]) && lp[k] < 0);
        else bad += !(std::fabs(lp[k] - lp_d[k]) <= 2e-5 + 1e-6 * std::fabs(lp_d[k]));
      }
      expect_true(bad == 0, tag + " log_softmax: " + std::to_string(bad) + " bad");
      expect_guards(p, tag);
      expect_guards(lp, tag);
    });
  }
}

// d(scale·Σ CE)/d logits by finite differences of the double reference, against
// the fast backward and the fused pass. Tolerance |num − ana| <= 1e-6 + 1e-4·|num|.
RECA_TEST(cross_entropy_backward_finite_differences) {
  Rand rng(202);
  const int64_t Vs[] = {1, 7, 33, 263};
  for (int64_t V : Vs) {
    const int64_t rows = 6, n = rows * V;
    std::vector<float> logits(n);
    rng.fill_normal(logits.data(), n, 2.0f);
    std::vector<int32_t> targets = {0, -1, static_cast<int32_t>(V - 1), static_cast<int32_t>(V / 2), -7,
                                    static_cast<int32_t>(rng.index(V))};
    const float scale = 0.6f;
    auto loss = [&](const std::vector<double>& x) {
      return double(scale) * cpu::ref::cross_entropy_forward(static_cast<double*>(nullptr), x.data(),
                                                             targets.data(), rows, V);
    };
    for_each_isa([&](Isa isa) {
      std::vector<float> dl(n, 0.0f), dl2(n, 0.0f);
      cpu::cross_entropy_backward(dl.data(), logits.data(), targets.data(), scale, rows, V);
      cpu::cross_entropy_forward_backward(nullptr, dl2.data(), logits.data(), targets.data(), scale, rows, V);
      std::vector<double> x = to_double(logits.data(), n);
      const std::string tag = std::string("ce fd ") + isa_name(isa) + " V" + std::to_string(V);
      fd_check(tag + " backward", x, loss, dl.data(), 300, rng, 1e-5, 1e-4, 1e-6);
      fd_check(tag + " fused", x, loss, dl2.data(), 300, rng, 1e-5, 1e-4, 1e-6);
    });
  }
}

// Bitwise identical results for 1, 2 and 3 threads (the loss sum crosses
// several 64-row blocks).
RECA_TEST(cross_entropy_thread_count_determinism) {
  Rand rng(203);
  const int64_t rows = 301, V = 263, n = rows * V;
  std::vector<float> logits;
  std::vector<int32_t> targets;
  make_inputs(rng, rows, V, logits, targets);
  const int saved = num_threads();
  for_each_isa([&](Isa isa) {
    double sums[3];
    std::vector<float> losses[3], dl[3], probs[3];
    for (int t = 0; t < 3; ++t) {
      set_num_threads(t + 1);
      losses[t].assign(rows, 0.0f);
      dl[t].assign(n, 0.25f);
      probs[t].assign(n, 0.0f);
      sums[t] = cpu::cross_entropy_forward_backward(losses[t].data(), dl[t].data(), logits.data(),
                                                    targets.data(), 0.5f, rows, V);
      cpu::softmax_forward(probs[t].data(), logits.data(), rows, V);
    }
    const std::string tag = std::string("ce determinism ") + isa_name(isa);
    for (int t = 1; t < 3; ++t) {
      expect_true(std::memcmp(&sums[0], &sums[t], sizeof(double)) == 0, tag + " sum");
      expect_true(std::memcmp(losses[0].data(), losses[t].data(), rows * 4) == 0, tag + " losses");
      expect_true(std::memcmp(dl[0].data(), dl[t].data(), n * 4) == 0, tag + " dlogits");
      expect_true(std::memcmp(probs[0].data(), probs[t].data(), n * 4) == 0, tag + " softmax");
    }
  });
  set_num_threads(saved);
}
