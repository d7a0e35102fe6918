#include <cstring>

#include "core/threadpool.h"
#include "cpu/time_embed.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

// Every ISA runs the same double-precision code, so it must equal the float
// reference bit for bit (tolerance 0), and the double reference to float
// rounding (atol 1e-7 on values in [-1, 1]).
RECA_TEST(time_embed_matches_reference) {
  Rand rng(51);
  for (int64_t B : {1, 2, 3, 17, 64}) {
    std::vector<float> t(B);
    rng.fill_uniform(t.data(), B, 0.0f, 1.0f);
    t[0] = B == 1 ? 0.5f : 0.0f;
    if (B > 1) t[B - 1] = 1.0f;
    const int64_t n = B * cpu::kTimeEmbedDim;
    std::vector<float> ref(n);
    cpu::ref::time_embed_forward(ref.data(), t.data(), B);
    std::vector<double> refd(n);
    const std::vector<double> td = to_double(t.data(), B);
    cpu::ref::time_embed_forward(refd.data(), td.data(), B);
    for_each_isa([&](Isa isa) {
      const std::string tag = std::string("time_embed ") + isa_name(isa) + " B=" + std::to_string(B);
      Guarded out(n);
      cpu::time_embed_forward(out.data(), t.data(), B);
      expect_close(tag, out.data(), ref.data(), n, 0, 0);
      expect_close(tag + " vs double", out.data(), refd.data(), n, 0, 1e-7);
      expect_guards(out, tag);
    });
  }
}

// Hand values, independent of the kernel's formula: t = 0 gives cos = 1,
// sin = 0; k = 0 has f = 1 (e = cos/sin(1000 t)); k = 127 has
// f = 10000^(−127/128) (atol 1e-6: pow vs exp differ in the last bits of f).
RECA_TEST(time_embed_known_values) {
  const float t[3] = {0.0f, 0.25f, 0.8125f};
  const int64_t D = cpu::kTimeEmbedDim, H = cpu::kTimeEmbedHalf;
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("time_embed known ") + isa_name(isa);
    std::vector<float> out(3 * D);
    cpu::time_embed_forward(out.data(), t, 3);
    for (int64_t k = 0; k < H; ++k)
      expect_true(out[k] == 1.0f && out[H + k] == 0.0f, tag + ": t=0 at k=" + std::to_string(k));
    for (int b = 1; b < 3; ++b) {
      const double s = 1000.0 * t[b], f127 = std::pow(10000.0, -127.0 / 128.0);
      const double want[4] = {std::cos(s), std::sin(s), std::cos(s * f127), std::sin(s * f127)};
      const float got[4] = {out[b * D + 0], out[b * D + H], out[b * D + 127], out[b * D + H + 127]};
      expect_close(tag + " b=" + std::to_string(b), got, want, 4, 0, 1e-6);
    }
  });
}

RECA_TEST(time_embed_deterministic_across_thread_counts) {
  Rand rng(52);
  const int64_t B = 257;
  std::vector<float> t(B);
  rng.fill_uniform(t.data(), B, 0.0f, 1.0f);
  for_each_isa([&](Isa isa) {
    expect_same_across_threads(std::string("time_embed ") + isa_name(isa), [&] {
      std::vector<float> out(B * cpu::kTimeEmbedDim);
      cpu::time_embed_forward(out.data(), t.data(), B);
      return out;
    });
  });
}
