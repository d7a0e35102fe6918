#include <cstring>
#include <limits>

#include "core/threadpool.h"
#include "cpu/image.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::test;

namespace {

// A byte buffer with guard bytes on both sides.
struct GuardedBytes {
  static constexpr int64_t kGuard = 19;
  std::vector<uint8_t> buf;
  int64_t n;
  explicit GuardedBytes(int64_t n_) : buf(n_ + 2 * kGuard, 0xA5), n(n_) {}
  uint8_t* data() { return buf.data() + kGuard; }
  bool intact() const {
    for (int64_t i = 0; i < kGuard; ++i)
      if (buf[i] != 0xA5 || buf[kGuard + n + i] != 0xA5) return false;
    return true;
  }
};

struct Layout { int64_t B, S, P; };
const Layout kPatchCases[] = {{1, 1, 1}, {2, 4, 1}, {2, 4, 4}, {3, 16, 4}, {2, 12, 3},
                              {1, 32, 4}, {2, 64, 4}, {1, 10, 5}, {2, 8, 8}, {1, 14, 2}};
const Layout kPoolCases[] = {{1, 1, 1}, {2, 4, 2}, {3, 16, 2}, {2, 32, 2}, {1, 12, 3},
                             {2, 15, 5}, {1, 64, 4}, {2, 8, 8}, {1, 7, 1}, {2, 33, 11}};

std::string layout_str(const char* what, const Layout& c) {
  return std::string(what) + " B" + std::to_string(c.B) + " S" + std::to_string(c.S) + " " +
         std::to_string(c.P);
}

}  // namespace

// Pure data movement: exact against the reference (tolerance 0), and the SPEC
// §0 token layout checked by hand on a 4×4 image with 2×2 patches.
RECA_TEST(image_patchify_matches_reference) {
  Rand rng(401);
  {
    std::vector<float> img(4 * 4 * 3), tok(4 * 12);
    for (size_t k = 0; k < img.size(); ++k) img[k] = static_cast<float>(k);
    for_each_isa([&](Isa isa) {
      cpu::patchify_forward(tok.data(), img.data(), 1, 4, 2);
      const std::string tag = std::string("patchify layout ") + isa_name(isa);
      // token 1 = (py 0, px 1): element (i 0, j 0, c 0) is pixel (y 0, x 2, c 0)
      expect_true(tok[12 + 0] == img[(0 * 4 + 2) * 3 + 0], tag + " token 1 first element");
      // token 1, (i 1, j 0, c 2) -> pixel (y 1, x 2, c 2)
      expect_true(tok[12 + (1 * 2 + 0) * 3 + 2] == img[(1 * 4 + 2) * 3 + 2], tag + " token 1 (1,0,2)");
      // token 2 = (py 1, px 0), (i 0, j 1, c 1) -> pixel (y 2, x 1, c 1)
      expect_true(tok[24 + (0 * 2 + 1) * 3 + 1] == img[(2 * 4 + 1) * 3 + 1], tag + " token 2 (0,1,1)");
    });
  }
  for (const Layout& c : kPatchCases) {
    const int64_t n = c.B * c.S * c.S * 3;
    std::vector<float> img(n), tok(n), dimg0(n), dtok0(n);
    rng.fill_uniform(img.data(), n, -1.0f, 1.0f);
    rng.fill_normal(tok.data(), n);
    rng.fill_normal(dimg0.data(), n);
    rng.fill_normal(dtok0.data(), n);
    std::vector<float> tok_ref(n), img_ref(n), dimg_ref = dimg0, dtok_ref = dtok0;
    cpu::ref::patchify_forward(tok_ref.data(), img.data(), c.B, c.S, c.P);
    cpu::ref::unpatchify_forward(img_ref.data(), tok.data(), c.B, c.S, c.P);
    cpu::ref::patchify_backward(dimg_ref.data(), tok.data(), c.B, c.S, c.P);
    cpu::ref::unpatchify_backward(dtok_ref.data(), img.data(), c.B, c.S, c.P);
    for_each_isa([&](Isa isa) {
      const std::string tag = layout_str(isa_name(isa), c);
      Guarded t(n, 3.0f), im(n, 3.0f), di(n), dt(n), back(n);
      std::memcpy(di.data(), dimg0.data(), n * 4);
      std::memcpy(dt.data(), dtok0.data(), n * 4);
      cpu::patchify_forward(t.data(), img.data(), c.B, c.S, c.P);
      expect_close("patchify " + tag, t.data(), tok_ref.data(), n, 0, 0);
      cpu::unpatchify_forward(im.data(), tok.data(), c.B, c.S, c.P);
      expect_close("unpatchify " + tag, im.data(), img_ref.data(), n, 0, 0);
      cpu::patchify_backward(di.data(), tok.data(), c.B, c.S, c.P);
      expect_close("patchify backward " + tag, di.data(), dimg_ref.data(), n, 0, 0);
      cpu::unpatchify_backward(dt.data(), img.data(), c.B, c.S, c.P);
      expect_close("unpatchify backward " + tag, dt.data(), dtok_ref.data(), n, 0, 0);
      cpu::unpatchify_forward(back.data(), t.data(), c.B, c.S, c.P);
      expect_close("unpatchify(patchify) round trip " + tag, back.data(), img.data(), n, 0, 0);
      for (Guarded* g : {&t, &im, &di, &dt, &back}) expect_guards(*g, "patch " + tag);
    });
  }
}

// Exact against ref<float> (same summation order, same division), and within
// rtol 1e-6 / atol 1e-7 of the double reference.
RECA_TEST(image_avgpool_matches_reference) {
  Rand rng(402);
  for (const Layout& c : kPoolCases) {
    const int64_t f = c.P, So = c.S / f, n = c.B * c.S * c.S * 3, no = c.B * So * So * 3;
    std::vector<float> img(n), dout(no), dimg0(n);
    rng.fill_uniform(img.data(), n, -1.0f, 1.0f);
    rng.fill_normal(dout.data(), no);
    rng.fill_normal(dimg0.data(), n);
    std::vector<float> out_ref(no), dimg_ref = dimg0;
    cpu::ref::avgpool_forward(out_ref.data(), img.data(), c.B, c.S, f);
    cpu::ref::avgpool_backward(dimg_ref.data(), dout.data(), c.B, c.S, f);
    std::vector<double> imgd = to_double(img.data(), n), out_d(no);
    cpu::ref::avgpool_forward(out_d.data(), imgd.data(), c.B, c.S, f);
    for_each_isa([&](Isa isa) {
      const std::string tag = layout_str(isa_name(isa), c);
      Guarded out(no, 3.0f), di(n);
      std::memcpy(di.data(), dimg0.data(), n * 4);
      cpu::avgpool_forward(out.data(), img.data(), c.B, c.S, f);
      expect_close("avgpool " + tag, out.data(), out_ref.data(), no, 0, 0);
      expect_close("avgpool vs double " + tag, out.data(), out_d.data(), no, 1e-6, 1e-7);
      cpu::avgpool_backward(di.data(), dout.data(), c.B, c.S, f);
      expect_close("avgpool backward " + tag, di.data(), dimg_ref.data(), n, 0, 0);
      expect_guards(out, "avgpool " + tag);
      expect_guards(di, "avgpool backward " + tag);
    });
  }
}

// Bytes <-> floats: exact against the reference, every byte survives the round
// trip, exact ties round to even, out-of-range values and NaN clamp.
RECA_TEST(image_bytes_conversion) {
  Rand rng(403);
  const int64_t n = 1031;
  std::vector<uint8_t> bytes(n);
  for (int64_t k = 0; k < n; ++k) bytes[k] = static_cast<uint8_t>(k < 256 ? k : rng.index(256));
  std::vector<float> x(n);
  rng.fill_uniform(x.data(), n, -1.3f, 1.3f);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const float special[] = {-1.0f, 1.0f, 0.0f, -0.0f, nan, inf, -inf, 7.0f, -7.0f, 1.0f + 1e-6f};
  const uint8_t special_want[] = {0, 255, 128, 128, 0, 255, 0, 255, 0, 255};
  for (int k = 0; k < 10; ++k) x[k] = special[k];
  // Exact ties v = k + 0.5 (those representable through x = v/127.5 − 1 in float).
  std::vector<std::pair<int64_t, uint8_t>> ties;
  for (int k = 0; k < 255; ++k) {
    const float xv = static_cast<float>((k + 0.5) / 127.5 - 1.0);
    if ((xv + 1.0f) * 127.5f == k + 0.5f) {
      const int64_t at = 10 + static_cast<int64_t>(ties.size());
      x[at] = xv;
      ties.push_back({at, static_cast<uint8_t>(k % 2 == 0 ? k : k + 1)});
    }
  }
  expect_true(ties.size() >= 2, "image_to_bytes: some exact ties exercised");
  std::vector<float> f_ref(n);
  std::vector<uint8_t> b_ref(n);
  cpu::ref::image_from_bytes(f_ref.data(), bytes.data(), n);
  cpu::ref::image_to_bytes(b_ref.data(), x.data(), n);
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("image bytes ") + isa_name(isa);
    Guarded f(n);
    cpu::image_from_bytes(f.data(), bytes.data(), n);
    expect_close(tag + " from_bytes", f.data(), f_ref.data(), n, 0, 0);
    expect_true(f[0] == -1.0f && f[255] == 1.0f, tag + " 0 -> -1, 255 -> 1");
    expect_guards(f, tag + " from_bytes");
    GuardedBytes b(n), rt(n);
    cpu::image_to_bytes(b.data(), x.data(), n);
    expect_true(std::memcmp(b.data(), b_ref.data(), n) == 0, tag + " to_bytes equals reference");
    for (int k = 0; k < 10; ++k)
      expect_true(b.data()[k] == special_want[k], tag + " special value " + std::to_string(k) + " -> " +
                                                      std::to_string(b.data()[k]));
    for (auto& t : ties)
      expect_true(b.data()[t.first] == t.second, tag + " tie at " + std::to_string(t.first) + " -> " +
                                                     std::to_string(b.data()[t.first]));
    cpu::image_to_bytes(rt.data(), f.data(), n);
    expect_true(std::memcmp(rt.data(), bytes.data(), n) == 0, tag + " bytes round trip");
    expect_true(b.intact() && rt.intact(), tag + " to_bytes wrote outside its output");
  });
}

// Finite differences of Σ w ⊙ f(x) through the double reference, against the
// fast backward kernels. Tolerance |num − ana| <= 1e-6 + 1e-5·|num|.
RECA_TEST(image_backward_finite_differences) {
  Rand rng(404);
  const int64_t B = 2, S = 6, P = 3, f = 2, n = B * S * S * 3, no = B * (S / f) * (S / f) * 3;
  std::vector<float> x(n), w(n), wo(no);
  rng.fill_uniform(x.data(), n, -1.0f, 1.0f);
  rng.fill_normal(w.data(), n);
  rng.fill_normal(wo.data(), no);
  const std::vector<double> wd = to_double(w.data(), n), wod = to_double(wo.data(), no);
  using Fwd = void (*)(double*, const double*, int64_t, int64_t, int64_t);
  auto loss_of = [&](Fwd fwd, int64_t k, int64_t nout, const std::vector<double>& wt) {
    return [=, &wt](const std::vector<double>& v) {
      std::vector<double> y(nout);
      fwd(y.data(), v.data(), B, S, k);
      double s = 0;
      for (int64_t i = 0; i < nout; ++i) s += y[i] * wt[i];
      return s;
    };
  };
  for_each_isa([&](Isa isa) {
    const std::string tag = std::string("image fd ") + isa_name(isa);
    std::vector<float> g1(n, 0.0f), g2(n, 0.0f), g3(n, 0.0f);
    cpu::patchify_backward(g1.data(), w.data(), B, S, P);
    cpu::unpatchify_backward(g2.data(), w.data(), B, S, P);
    cpu::avgpool_backward(g3.data(), wo.data(), B, S, f);
    std::vector<double> xd = to_double(x.data(), n);
    fd_check(tag + " patchify", xd, loss_of(&cpu::ref::patchify_forward<double>, P, n, wd), g1.data(), 1000, rng,
             1e-5, 1e-5, 1e-6);
    fd_check(tag + " unpatchify", xd, loss_of(&cpu::ref::unpatchify_forward<double>, P, n, wd), g2.data(), 1000,
             rng, 1e-5, 1e-5, 1e-6);
    fd_check(tag + " avgpool", xd, loss_of(&cpu::ref::avgpool_forward<double>, f, no, wod), g3.data(), 1000, rng,
             1e-5, 1e-5, 1e-6);
  });
}

// Bitwise identical results for 1, 2 and 3 threads.
RECA_TEST(image_thread_count_determinism) {
  Rand rng(405);
  const int64_t B = 5, S = 64, P = 4, f = 4, n = B * S * S * 3, no = B * (S / f) * (S / f) * 3;
  std::vector<float> x(n), g(n), go(no);
  rng.fill_uniform(x.data(), n, -1.2f, 1.2f);
  rng.fill_normal(g.data(), n);
  rng.fill_normal(go.data(), no);
  const int saved = num_threads();
  for_each_isa([&](Isa isa) {
    std::vector<float> r[3][6];
    std::vector<uint8_t> bytes[3];
    for (int t = 0; t < 3; ++t) {
      set_num_threads(t + 1);
      for (auto& v : r[t]) v.assign(n, 0.5f);
      bytes[t].assign(n, 0);
      cpu::patchify_forward(r[t][0].data(), x.data(), B, S, P);
      cpu::patchify_backward(r[t][1].data(), g.data(), B, S, P);
      cpu::unpatchify_forward(r[t][2].data(), x.data(), B, S, P);
      cpu::unpatchify_backward(r[t][3].data(), g.data(), B, S, P);
      cpu::avgpool_forward(r[t][4].data(), x.data(), B, S, f);
      cpu::avgpool_backward(r[t][5].data(), go.data(), B, S, f);
      cpu::image_to_bytes(bytes[t].data(), x.data(), n);
    }
    const std::string tag = std::string("image determinism ") + isa_name(isa);
    for (int t = 1; t < 3; ++t) {
      for (int k = 0; k < 6; ++k)
        expect_true(std::memcmp(r[0][k].data(), r[t][k].data(), n * 4) == 0, tag + " op " + std::to_string(k));
      expect_true(std::memcmp(bytes[0].data(), bytes[t].data(), n) == 0, tag + " to_bytes");
    }
  });
  set_num_threads(saved);
}
