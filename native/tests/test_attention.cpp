#include <cstring>

#include "core/threadpool.h"
#include "cpu/attention.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {

enum class Pad { None, CondTail, CondAll, TargetTail, Random, Head };

struct AttnCase {
  int64_t B, L, heads, hd, cond_len;
  bool causal;
  Pad pad;
};

std::vector<uint8_t> make_pad(const AttnCase& c, Rand& rng) {
  std::vector<uint8_t> pad(c.B * c.L, 0);
  for (int64_t b = 0; b < c.B; ++b) {
    uint8_t* p = pad.data() + b * c.L;
    // Samples differ in how much is padded, as real batches do.
    switch (c.pad) {
      case Pad::None: break;
      case Pad::CondTail:  // a template padded at the end of the condition block
        for (int64_t j = c.cond_len - 1 - b % 3; j < c.cond_len; ++j)
          if (j >= 1) p[j] = 1;
        break;
      case Pad::CondAll:  // every condition key PAD: condition queries see nothing
        for (int64_t j = 0; j < c.cond_len; ++j) p[j] = 1;
        break;
      case Pad::TargetTail:  // a caption padded at its end
        for (int64_t j = c.L - 1 - (b + 1) % 4; j < c.L; ++j)
          if (j > c.cond_len) p[j] = 1;
        break;
      case Pad::Random:
        for (int64_t j = 0; j < c.L; ++j) p[j] = rng.index(4) == 0;
        break;
      case Pad::Head:
        for (int64_t j = 0; j < 1 + b % 2 && j < c.L; ++j) p[j] = 1;
        break;
    }
  }
  return pad;
}

std::string case_str(const AttnCase& c) {
  static const char* pads[] = {"none", "cond-tail", "cond-all", "target-tail", "random", "head"};
  return "B" + std::to_string(c.B) + " L" + std::to_string(c.L) + " H" + std::to_string(c.heads) +
         " hd" + std::to_string(c.hd) + " Lc" + std::to_string(c.cond_len) +
         (c.causal ? " causal" : " full") + " pad-" + pads[static_cast<int>(c.pad)];
}

const AttnCase kCases[] = {
    {1, 1, 1, 8, 1, false, Pad::None},        {1, 1, 1, 8, 0, true, Pad::None},
    {2, 7, 2, 8, 0, true, Pad::None},         {2, 7, 2, 8, 7, false, Pad::None},
    {2, 9, 3, 16, 4, true, Pad::CondTail},    {3, 13, 2, 16, 5, false, Pad::CondTail},
    {2, 11, 2, 8, 4, true, Pad::CondAll},     {2, 17, 2, 32, 6, true, Pad::TargetTail},
    {3, 15, 4, 16, 15, false, Pad::Random},   {2, 31, 2, 64, 10, true, Pad::Random},
    {2, 33, 1, 64, 0, false, Pad::Head},      {1, 65, 2, 32, 20, true, Pad::TargetTail},
    {2, 63, 3, 8, 30, false, Pad::Random},    {1, 47, 2, 24, 47, false, Pad::None},
    {2, 133, 2, 16, 67, false, Pad::CondTail}, {1, 132, 2, 32, 67, true, Pad::TargetTail},
    {1, 97, 1, 5, 11, true, Pad::Random},
};

}  // namespace

// Fast paths against the double reference run on the same float inputs; the
// backward gets the same att for both sides so it is checked by itself.
// Tolerances: out rtol 1e-4 / atol 2e-6, att atol 1e-6, dqkv rtol 1e-4 / atol 1e-5
// (float accumulation over up to L keys and the ~2 ulp vector exp).
RECA_TEST(attention_forward_backward_match_reference) {
  Rand rng(101);
  for (const AttnCase& c : kCases) {
    const int64_t width = c.heads * c.hd, nqkv = c.B * c.L * 3 * width, nout = c.B * c.L * width;
    const int64_t natt = c.B * c.heads * c.L * c.L;
    std::vector<float> qkv(nqkv), dout(nout), dqkv0(nqkv);
    rng.fill_normal(qkv.data(), nqkv, 1.5f);
    rng.fill_normal(dout.data(), nout);
    rng.fill_normal(dqkv0.data(), nqkv, 0.5f);
    const std::vector<uint8_t> pad = make_pad(c, rng);
    for (const uint8_t* kp : {static_cast<const uint8_t*>(nullptr), pad.data()}) {
      std::vector<double> qd = to_double(qkv.data(), nqkv), out_d(nout), att_d(natt);
      cpu::ref::attention_forward(out_d.data(), att_d.data(), qd.data(), kp, c.B, c.L, c.heads, width,
                                  c.cond_len, c.causal);
      // Backward oracle from a float att (what the fast forward hands over).
      std::vector<float> att_f = to_float(att_d.data(), natt);
      std::vector<double> att_fd = to_double(att_f.data(), natt), dq_d = to_double(dqkv0.data(), nqkv);
      std::vector<double> dod = to_double(dout.data(), nout);
      cpu::ref::attention_backward(dq_d.data(), dod.data(), qd.data(), att_fd.data(), kp, c.B, c.L,
                                   c.heads, width, c.cond_len, c.causal);
      // The float reference must agree too (it is what other backends are checked against).
      std::vector<float> out_rf(nout), att_rf(natt), dq_rf = dqkv0;
      cpu::ref::attention_forward(out_rf.data(), att_rf.data(), qkv.data(), kp, c.B, c.L, c.heads,
                                  width, c.cond_len, c.causal);
      cpu::ref::attention_backward(dq_rf.data(), dout.data(), qkv.data(), att_f.data(), kp, c.B, c.L,
                                   c.heads, width, c.cond_len, c.causal);
      const std::string base = case_str(c) + (kp ? " key_pad" : "");
      expect_close("attention ref<float> out " + base, out_rf.data(), out_d.data(), nout, 1e-4, 2e-6);
      expect_close("attention ref<float> dqkv " + base, dq_rf.data(), dq_d.data(), nqkv, 1e-4, 1e-5);
      for_each_isa([&](Isa isa) {
        const std::string tag = std::string("attention ") + isa_name(isa) + " " + base;
        Guarded out(nout, 7.0f), att(natt, 7.0f), dq(nqkv);
        std::memcpy(dq.data(), dqkv0.data(), nqkv * sizeof(float));
        cpu::attention_forward(out.data(), att.data(), qkv.data(), kp, c.B, c.L, c.heads, width,
                               c.cond_len, c.causal);
        expect_close(tag + " out", out.data(), out_d.data(), nout, 1e-4, 2e-6);
        expect_close(tag + " att", att.data(), att_d.data(), natt, 1e-4, 1e-6);
        cpu::attention_backward(dq.data(), dout.data(), qkv.data(), att_f.data(), kp, c.B, c.L,
                                c.heads, width, c.cond_len, c.causal);
        expect_close(tag + " dqkv", dq.data(), dq_d.data(), nqkv, 1e-4, 1e-5);
        expect_guards(out, tag + " out");
        expect_guards(att, tag + " att");
        expect_guards(dq, tag + " dqkv");
        // Inference form: no att buffer, same output.
        Guarded out2(nout, 7.0f);
        cpu::attention_forward(out2.data(), nullptr, qkv.data(), kp, c.B, c.L, c.heads, width,
                               c.cond_len, c.causal);
        expect_true(std::memcmp(out2.data(), out.data(), nout * sizeof(float)) == 0,
                    tag + " out without att differs from out with att");
        expect_guards(out2, tag + " out (no att)");
      });
    }
  }
}

// The visibility rule itself, read off the saved probabilities: an entry is
// nonzero exactly where SPEC §4 makes the key visible, rows sum to 1, and a query
// with no visible key has a zero output, a zero att row and passes no gradient.
RECA_TEST(attention_mask_rule_and_empty_rows) {
  Rand rng(102);
  const AttnCase cases[] = {{2, 11, 2, 8, 4, true, Pad::CondAll}, {2, 13, 1, 16, 5, false, Pad::Random},
                            {1, 9, 2, 8, 0, true, Pad::Head},     {2, 12, 2, 8, 12, false, Pad::CondTail}};
  for (const AttnCase& c : cases) {
    const int64_t width = c.heads * c.hd, nqkv = c.B * c.L * 3 * width, nout = c.B * c.L * width;
    std::vector<float> qkv(nqkv), dout(nout);
    rng.fill_normal(qkv.data(), nqkv);
    rng.fill_normal(dout.data(), nout);
    const std::vector<uint8_t> pad = make_pad(c, rng);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("attention mask ") + isa_name(isa) + " " + case_str(c);
      std::vector<float> out(nout), att(c.B * c.heads * c.L * c.L), dq(nqkv, 0.0f);
      cpu::attention_forward(out.data(), att.data(), qkv.data(), pad.data(), c.B, c.L, c.heads, width,
                             c.cond_len, c.causal);
      cpu::attention_backward(dq.data(), dout.data(), qkv.data(), att.data(), pad.data(), c.B, c.L,
                              c.heads, width, c.cond_len, c.causal);
      int bad_mask = 0, bad_sum = 0, bad_empty = 0, empty_rows = 0;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t h = 0; h < c.heads; ++h)
          for (int64_t i = 0; i < c.L; ++i) {
            const float* a = att.data() + ((b * c.heads + h) * c.L + i) * c.L;
            int nvis = 0;
            double sum = 0;
            for (int64_t j = 0; j < c.L; ++j) {
              const bool vis = !pad[b * c.L + j] &&
                               (i < c.cond_len ? j < c.cond_len
                                               : (j < c.cond_len || !c.causal || j <= i));
              nvis += vis;
              sum += a[j];
              if (!vis && a[j] != 0.0f) ++bad_mask;
              if (vis && !(a[j] > 0.0f)) ++bad_mask;  // inputs are mild: no underflow to 0
            }
            if (nvis > 0 && std::fabs(sum - 1.0) > 1e-5) ++bad_sum;
            if (nvis == 0) {
              ++empty_rows;
              const float* o = out.data() + (b * c.L + i) * width + h * c.hd;
              const float* g = dq.data() + (b * c.L + i) * 3 * width + h * c.hd;  // dQ of this query
              for (int64_t d = 0; d < c.hd; ++d) bad_empty += (o[d] != 0.0f) + (g[d] != 0.0f);
            }
          }
      // PAD keys receive no gradient through k or v.
      int bad_pad_grad = 0;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t j = 0; j < c.L; ++j)
          if (pad[b * c.L + j])
            for (int64_t d = width; d < 3 * width; ++d)
              bad_pad_grad += dq[(b * c.L + j) * 3 * width + d] != 0.0f;
      expect_true(bad_mask == 0, tag + ": att nonzero exactly on visible keys (" + std::to_string(bad_mask) + " bad)");
      expect_true(bad_sum == 0, tag + ": att rows sum to 1");
      expect_true(bad_empty == 0, tag + ": rows with no visible key have zero output and dQ");
      expect_true(bad_pad_grad == 0, tag + ": PAD keys get no dK/dV");
      if (c.pad == Pad::CondAll) expect_true(empty_rows == c.B * c.heads * c.cond_len, tag + ": empty rows counted");
    });
  }
}

// Finite differences of Σ dout ⊙ attention(qkv), evaluated by the double
// reference, against the fast backward (att from the fast forward).
// Tolerance: |num − ana| <= 2e-5 + 1e-3·|num| (float analytic gradient).
RECA_TEST(attention_backward_finite_differences) {
  Rand rng(103);
  const AttnCase cases[] = {{2, 7, 2, 8, 3, true, Pad::CondTail},  {1, 9, 1, 16, 0, true, Pad::None},
                            {2, 8, 2, 8, 8, false, Pad::Random},   {2, 11, 1, 8, 4, true, Pad::CondAll},
                            {1, 10, 2, 16, 4, false, Pad::TargetTail}, {1, 5, 1, 32, 2, true, Pad::Head},
                            {1, 6, 1, 64, 3, false, Pad::None}};
  for (const AttnCase& c : cases) {
    const int64_t width = c.heads * c.hd, nqkv = c.B * c.L * 3 * width, nout = c.B * c.L * width;
    std::vector<float> qkv(nqkv), dout(nout);
    rng.fill_normal(qkv.data(), nqkv);
    rng.fill_normal(dout.data(), nout);
    const std::vector<uint8_t> pad = make_pad(c, rng);
    const std::vector<double> dod = to_double(dout.data(), nout);
    auto loss = [&](const std::vector<double>& x) {
      std::vector<double> out(nout);
      cpu::ref::attention_forward(out.data(), static_cast<double*>(nullptr), x.data(), pad.data(), c.B,
                                  c.L, c.heads, width, c.cond_len, c.causal);
      double s = 0;
      for (int64_t i = 0; i < nout; ++i) s += out[i] * dod[i];
      return s;
    };
    for_each_isa([&](Isa isa) {
      std::vector<float> out(nout), att(c.B * c.heads * c.L * c.L), dq(nqkv, 0.0f);
      cpu::attention_forward(out.data(), att.data(), qkv.data(), pad.data(), c.B, c.L, c.heads, width,
                             c.cond_len, c.causal);
      cpu::attention_backward(dq.data(), dout.data(), qkv.data(), att.data(), pad.data(), c.B, c.L,
                              c.heads, width, c.cond_len, c.causal);
      std::vector<double> x = to_double(qkv.data(), nqkv);
      fd_check(std::string("attention fd ") + isa_name(isa) + " " + case_str(c), x, loss, dq.data(),
               400, rng, 1e-5, 1e-3, 2e-5);
    });
  }
}

// Bitwise identical results for 1, 2 and 3 threads, and backward accumulates.
RECA_TEST(attention_thread_count_determinism) {
  Rand rng(104);
  const AttnCase c = {3, 77, 4, 16, 30, true, Pad::Random};
  const int64_t width = c.heads * c.hd, nqkv = c.B * c.L * 3 * width, nout = c.B * c.L * width;
  const int64_t natt = c.B * c.heads * c.L * c.L;
  std::vector<float> qkv(nqkv), dout(nout), dq0(nqkv);
  rng.fill_normal(qkv.data(), nqkv);
  rng.fill_normal(dout.data(), nout);
  rng.fill_normal(dq0.data(), nqkv);
  const std::vector<uint8_t> pad = make_pad(c, rng);
  const int saved = num_threads();
  for_each_isa([&](Isa isa) {
    std::vector<float> out[3], att[3], dq[3];
    for (int t = 0; t < 3; ++t) {
      set_num_threads(t + 1);
      out[t].resize(nout);
      att[t].resize(natt);
      dq[t] = dq0;
      cpu::attention_forward(out[t].data(), att[t].data(), qkv.data(), pad.data(), c.B, c.L, c.heads,
                             width, c.cond_len, c.causal);
      cpu::attention_backward(dq[t].data(), dout.data(), qkv.data(), att[t].data(), pad.data(), c.B,
                              c.L, c.heads, width, c.cond_len, c.causal);
    }
    const std::string tag = std::string("attention determinism ") + isa_name(isa);
    for (int t = 1; t < 3; ++t) {
      expect_true(std::memcmp(out[0].data(), out[t].data(), nout * 4) == 0, tag + " out");
      expect_true(std::memcmp(att[0].data(), att[t].data(), natt * 4) == 0, tag + " att");
      expect_true(std::memcmp(dq[0].data(), dq[t].data(), nqkv * 4) == 0, tag + " dqkv");
    }
    // Accumulation: running the backward from zero and adding dq0 afterwards matches.
    std::vector<float> dz(nqkv, 0.0f);
    cpu::attention_backward(dz.data(), dout.data(), qkv.data(), att[0].data(), pad.data(), c.B, c.L,
                            c.heads, width, c.cond_len, c.causal);
    for (int64_t i = 0; i < nqkv; ++i) dz[i] += dq0[i];
    expect_close(tag + " accumulates", dq[0].data(), dz.data(), nqkv, 1e-6, 1e-6);
  });
  set_num_threads(saved);
}
