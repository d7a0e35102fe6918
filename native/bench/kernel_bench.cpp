#include "bench/kernel_bench.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <thread>

#include "bench/openblas_peer.h"
#include "core/cpu_features.h"
#include "core/threadpool.h"
#include "cpu/adamw.h"
#include "cpu/attention.h"
#include "cpu/cross_entropy.h"
#include "cpu/embedding.h"
#include "cpu/gelu.h"
#include "cpu/grad_norm.h"
#include "cpu/image.h"
#include "cpu/layernorm.h"
#include "cpu/matmul.h"
#include "cpu/matmul_bf16.h"
#include "cpu/mse.h"
#include "cpu/residual.h"
#include "cpu/sampling.h"
#include "cpu/time_embed.h"
#include "cpu/vq.h"

namespace reca::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Fresh random, non-zero inputs: |v| in [0.1, 1), random sign.
std::vector<float> random_buffer(int64_t n, uint64_t seed, bool positive = false) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> u(0.1f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = (positive || (gen() & 1)) ? u(gen) : -u(gen);
  return v;
}

// One benchmark: a name, a shape, the work it does, and an optional peer.
struct Case {
  std::string name;
  std::vector<int64_t> shape;
  double flops = 0;
  double bytes = 0;
  std::function<void()> run;
  // Builds the peer's call on its own inputs (empty when there is no peer).
  std::function<std::function<void()>()> peer;
  std::string note;
  // "openblas" (needs the library), or "separate": our own unfused passes.
  std::string peer_name = "openblas";
};

// The `small` preset (SPEC §1) at micro-batch 8: tokens per sample =
// condition (3 + 16 + 48) + image target (64 + 1) = 132.
constexpr int64_t kBatch = 8, kTokens = 132, kRows = kBatch * kTokens;
constexpr int64_t kWidth = 256, kMlp = 1024, kCodebook = 512;

// The matmul cases: for each Linear of the small preset, forward, backward-data
// and backward-weight, each beside OpenBLAS on the identical sgemm.
void add_matmul_cases(std::vector<Case>& cases) {
  struct Layer {
    const char* name;
    int64_t in, out;
  };
  const Layer layers[] = {{"qkv", kWidth, 3 * kWidth},
                          {"attn.proj", kWidth, kWidth},
                          {"mlp.fc1", kWidth, kMlp},
                          {"mlp.fc2", kMlp, kWidth},
                          {"head_img", kWidth, kCodebook}};
  auto peer = [](int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool acc) {
    return [=] { return openblas_sgemm_runner(M, N, K, ta, tb, acc); };
  };
  uint64_t seed = 100;
  for (const Layer& l : layers) {
    const int64_t M = kRows, in = l.in, out = l.out;
    auto x = std::make_shared<std::vector<float>>(random_buffer(M * in, ++seed));
    auto W = std::make_shared<std::vector<float>>(random_buffer(out * in, ++seed));
    auto b = std::make_shared<std::vector<float>>(random_buffer(out, ++seed));
    auto dy = std::make_shared<std::vector<float>>(random_buffer(M * out, ++seed));
    auto y = std::make_shared<std::vector<float>>(M * out);
    auto dx = std::make_shared<std::vector<float>>(random_buffer(M * in, ++seed));
    auto dW = std::make_shared<std::vector<float>>(random_buffer(out * in, ++seed));
    const double flops = 2.0 * M * in * out;
    const std::string base = std::string("matmul.") + l.name;
    // y[M,out] = x[M,in]·Wᵀ + b: sgemm N,T
    cases.push_back({base + ".fwd", {M, in, out}, flops, 4.0 * (M * in + out * in + out + M * out),
                     [=] { cpu::linear_forward(y->data(), x->data(), W->data(), b->data(), M, in, out); },
                     peer(M, out, in, false, true, false), "peer without bias"});
    // dx[M,in] += dy[M,out]·W[out,in]: sgemm N,N beta 1
    cases.push_back({base + ".bwd_data", {M, in, out}, flops, 4.0 * (M * out + out * in + 2 * M * in),
                     [=] { cpu::matmul(dx->data(), dy->data(), W->data(), nullptr, M, in, out, false, false, true); },
                     peer(M, in, out, false, false, true), ""});
    // dW[out,in] += dyᵀ·x: sgemm T,N beta 1
    cases.push_back({base + ".bwd_weight", {M, in, out}, flops, 4.0 * (M * out + M * in + 2 * out * in),
                     [=] { cpu::matmul(dW->data(), dy->data(), x->data(), nullptr, out, in, M, true, false, true); },
                     peer(out, in, M, true, false, true), ""});
  }
  {
    // The MLP's GELU fused into the matmul store, beside the separate passes it
    // replaces (matmul, then GELU; the backward also zeroes two buffers).
    const int64_t M = kRows, in = kWidth, H = kMlp;
    auto x = std::make_shared<std::vector<float>>(random_buffer(M * in, ++seed));
    auto W1 = std::make_shared<std::vector<float>>(random_buffer(H * in, ++seed));
    auto b1 = std::make_shared<std::vector<float>>(random_buffer(H, ++seed));
    auto f = std::make_shared<std::vector<float>>(M * H), g = std::make_shared<std::vector<float>>(M * H);
    auto dg = std::make_shared<std::vector<float>>(M * H), df = std::make_shared<std::vector<float>>(M * H);
    auto W2 = std::make_shared<std::vector<float>>(random_buffer(in * H, ++seed));
    auto dy = std::make_shared<std::vector<float>>(random_buffer(M * in, ++seed));
    const double flops = 2.0 * M * in * H;
    Case fwd{"matmul.mlp.fc1_gelu.fwd", {M, in, H}, flops, 4.0 * (M * in + H * in + H + 2 * M * H),
             [=] { cpu::linear_gelu_forward(f->data(), g->data(), x->data(), W1->data(), b1->data(), M, in, H); },
             [=] {
               return std::function<void()>([=] {
                 cpu::linear_forward(f->data(), x->data(), W1->data(), b1->data(), M, in, H);
                 cpu::gelu_forward(g->data(), f->data(), nullptr, M, H);
               });
             },
             "fused bias+GELU store; peer: linear_forward then gelu_forward"};
    fwd.peer_name = "separate";
    cases.push_back(fwd);
    // df = gelu'(f) ⊙ (dy·W2): the data gradient of fc2 [H -> in] through the GELU.
    Case bwd{"matmul.mlp.fc2_gelu.bwd_data", {M, H, in}, flops, 4.0 * (M * in + in * H + 2 * M * H),
             [=] {
               cpu::linear_backward_gelu(df->data(), nullptr, nullptr, dy->data(), g->data(), W2->data(), f->data(),
                                         M, H, in);
             },
             [=] {
               return std::function<void()>([=] {
                 std::fill(dg->begin(), dg->end(), 0.0f);
                 cpu::matmul(dg->data(), dy->data(), W2->data(), nullptr, M, H, in, false, false, true);
                 std::fill(df->begin(), df->end(), 0.0f);
                 cpu::gelu_backward(df->data(), nullptr, f->data(), nullptr, dg->data(), M, H);
               });
             },
             "fused GELU-derivative store; peer: zero, matmul, zero, gelu_backward"};
    bwd.peer_name = "separate";
    cases.push_back(bwd);
  }
  const int64_t S = 1024;
  auto A = std::make_shared<std::vector<float>>(random_buffer(S * S, ++seed));
  auto B = std::make_shared<std::vector<float>>(random_buffer(S * S, ++seed));
  auto C = std::make_shared<std::vector<float>>(S * S);
  cases.push_back({"matmul.square", {S, S, S}, 2.0 * S * S * S, 4.0 * 3 * S * S,
                   [=] { cpu::matmul(C->data(), A->data(), B->data(), nullptr, S, S, S, false, false, false); },
                   peer(S, S, S, false, false, false), ""});
}

// The same Linear products with bf16 operands and fp32 accumulation, each beside
// our fp32 kernel on the identical inputs (ratio = fp32 time / bf16 time). Only
// where they run (AVX512_BF16 at the avx512 level).
void add_matmul_bf16_cases(std::vector<Case>& cases) {
  if (!cpu::bf16_matmul_available()) return;
  struct Layer {
    const char* name;
    int64_t in, out;
  };
  const Layer layers[] = {{"qkv", kWidth, 3 * kWidth},
                          {"attn.proj", kWidth, kWidth},
                          {"mlp.fc1", kWidth, kMlp},
                          {"mlp.fc2", kMlp, kWidth},
                          {"head_img", kWidth, kCodebook}};
  uint64_t seed = 300;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double flops, double bytes,
                 std::function<void()> bf16, std::function<void()> fp32) {
    Case c{name, std::move(shape), flops, bytes, std::move(bf16),
           [fp32] { return fp32; }, "peer: the fp32 kernel on the same inputs"};
    c.peer_name = "fp32";
    cases.push_back(c);
  };
  for (const Layer& l : layers) {
    const int64_t M = kRows, in = l.in, out = l.out;
    auto x = std::make_shared<std::vector<float>>(random_buffer(M * in, ++seed));
    auto W = std::make_shared<std::vector<float>>(random_buffer(out * in, ++seed));
    auto b = std::make_shared<std::vector<float>>(random_buffer(out, ++seed));
    auto dy = std::make_shared<std::vector<float>>(random_buffer(M * out, ++seed));
    auto y = std::make_shared<std::vector<float>>(M * out);
    auto dx = std::make_shared<std::vector<float>>(random_buffer(M * in, ++seed));
    auto dW = std::make_shared<std::vector<float>>(random_buffer(out * in, ++seed));
    const double flops = 2.0 * M * in * out;
    const std::string base = std::string("matmul_bf16.") + l.name;
    add(base + ".fwd", {M, in, out}, flops, 4.0 * (M * in + out * in + out + M * out),
        [=] { cpu::linear_forward_bf16(y->data(), x->data(), W->data(), b->data(), M, in, out); },
        [=] { cpu::linear_forward(y->data(), x->data(), W->data(), b->data(), M, in, out); });
    add(base + ".bwd_data", {M, in, out}, flops, 4.0 * (M * out + out * in + 2 * M * in),
        [=] { cpu::matmul_bf16(dx->data(), dy->data(), W->data(), nullptr, M, in, out, false, false, true); },
        [=] { cpu::matmul(dx->data(), dy->data(), W->data(), nullptr, M, in, out, false, false, true); });
    add(base + ".bwd_weight", {M, in, out}, flops, 4.0 * (M * out + M * in + 2 * out * in),
        [=] { cpu::matmul_bf16(dW->data(), dy->data(), x->data(), nullptr, out, in, M, true, false, true); },
        [=] { cpu::matmul(dW->data(), dy->data(), x->data(), nullptr, out, in, M, true, false, true); });
  }
  const int64_t S = 1024;
  auto A = std::make_shared<std::vector<float>>(random_buffer(S * S, ++seed));
  auto B = std::make_shared<std::vector<float>>(random_buffer(S * S, ++seed));
  auto C = std::make_shared<std::vector<float>>(S * S);
  add("matmul_bf16.square", {S, S, S}, 2.0 * S * S * S, 4.0 * 3 * S * S,
      [=] { cpu::matmul_bf16(C->data(), A->data(), B->data(), nullptr, S, S, S, false, false, false); },
      [=] { cpu::matmul(C->data(), A->data(), B->data(), nullptr, S, S, S, false, false, false); });
}

using Buf = std::shared_ptr<std::vector<float>>;
Buf rnd(int64_t n, uint64_t seed, bool positive = false) {
  return std::make_shared<std::vector<float>>(random_buffer(n, seed, positive));
}
Buf zeros(int64_t n) { return std::make_shared<std::vector<float>>(static_cast<size_t>(n), 0.0f); }
template <class T>
std::shared_ptr<std::vector<T>> ints(int64_t n, int64_t lo, int64_t hi, uint64_t seed) {
  std::mt19937_64 gen(seed);
  auto v = std::make_shared<std::vector<T>>(static_cast<size_t>(n));
  for (auto& x : *v) x = static_cast<T>(lo + static_cast<int64_t>(gen() % static_cast<uint64_t>(hi - lo)));
  return v;
}

// One record per other kernel family (forward and backward where there is one) at
// the small preset's shapes. flops are nominal arithmetic counts (0 where the op is
// pure data movement); for these memory-bound ops GB/s is the figure to read.
void add_family_cases(std::vector<Case>& cases) {
  const int64_t R = kRows, D = kWidth, H = kMlp;
  constexpr int64_t kHeads = 8, kCond = 3 + 16 + 48, kImg = 64, kPatch = 4, kImgSize = 32;
  constexpr int64_t kTok = 3 * kPatch * kPatch, kCodeDim = 16, kParams = 5000000;
  uint64_t seed = 1000;
  const double f4 = 4.0;
  {  // gelu with bias on the MLP hidden [R, H]
    auto x = rnd(R * H, ++seed), b = rnd(H, ++seed), y = zeros(R * H), dy = rnd(R * H, ++seed), dx = zeros(R * H),
         db = zeros(H);
    cases.push_back({"gelu.fwd", {R, H}, 20.0 * R * H, f4 * (2 * R * H + H),
                     [=] { cpu::gelu_forward(y->data(), x->data(), b->data(), R, H); }, nullptr, ""});
    cases.push_back({"gelu.bwd", {R, H}, 30.0 * R * H, f4 * (4 * R * H + 2 * H),
                     [=] { cpu::gelu_backward(dx->data(), db->data(), x->data(), b->data(), dy->data(), R, H); },
                     nullptr, ""});
  }
  {  // layernorm [R, D]
    auto x = rnd(R * D, ++seed), w = rnd(D, ++seed), b = rnd(D, ++seed), y = zeros(R * D), mean = zeros(R),
         rstd = zeros(R), dy = rnd(R * D, ++seed), dx = zeros(R * D), dw = zeros(D), db = zeros(D);
    cpu::layernorm_forward(y->data(), mean->data(), rstd->data(), x->data(), w->data(), b->data(), R, D);
    cases.push_back({"layernorm.fwd", {R, D}, 8.0 * R * D, f4 * (2 * R * D + 2 * D + 2 * R),
                     [=] { cpu::layernorm_forward(y->data(), mean->data(), rstd->data(), x->data(), w->data(), b->data(), R, D); },
                     nullptr, ""});
    cases.push_back({"layernorm.bwd", {R, D}, 12.0 * R * D, f4 * (4 * R * D + 5 * D + 2 * R),
                     [=] { cpu::layernorm_backward(dx->data(), dw->data(), db->data(), dy->data(), x->data(), w->data(),
                                                   mean->data(), rstd->data(), R, D); },
                     nullptr, ""});
  }
  {  // residual add (forward) and axpy (the backward's gradient accumulation) on [R, D]
    auto a = rnd(R * D, ++seed), b = rnd(R * D, ++seed), out = zeros(R * D);
    cases.push_back({"residual.add", {R, D}, 1.0 * R * D, f4 * 3 * R * D,
                     [=] { cpu::residual_add(out->data(), a->data(), b->data(), R * D); }, nullptr, ""});
    cases.push_back({"residual.axpy", {R, D}, 2.0 * R * D, f4 * 3 * R * D,
                     [=] { cpu::residual_axpy(out->data(), 1.0f, a->data(), R * D); }, nullptr, ""});
  }
  {  // attention, mask mode: condition block of 67 (template tail PAD), 65 target tokens
    const int64_t L = kTokens, hd = D / kHeads;
    auto qkv = rnd(kBatch * L * 3 * D, ++seed), out = zeros(kBatch * L * D), att = zeros(kBatch * kHeads * L * L),
         dout = rnd(kBatch * L * D, ++seed), dqkv = zeros(kBatch * L * 3 * D);
    auto pad = std::make_shared<std::vector<uint8_t>>(kBatch * L, 0);
    for (int64_t b = 0; b < kBatch; ++b)
      for (int64_t i = 3 + 16 + 20; i < kCond; ++i) (*pad)[b * L + i] = 1;  // 20 template bytes, then PAD
    const double mm = 2.0 * kBatch * kHeads * L * L * hd;
    cases.push_back({"attention.fwd", {kBatch, L, kHeads, D}, 2 * mm,
                     f4 * (kBatch * L * 3 * D + kBatch * L * D + kBatch * kHeads * L * L),
                     [=] { cpu::attention_forward(out->data(), att->data(), qkv->data(), pad->data(), kBatch, L, kHeads,
                                                  D, kCond, false); },
                     nullptr, ""});
    cases.push_back({"attention.bwd", {kBatch, L, kHeads, D}, 4 * mm,
                     f4 * (2 * kBatch * L * 3 * D + kBatch * L * D + kBatch * kHeads * L * L),
                     [=] { cpu::attention_backward(dqkv->data(), dout->data(), qkv->data(), att->data(), pad->data(),
                                                   kBatch, L, kHeads, D, kCond, false); },
                     nullptr, ""});
  }
  {  // cross-entropy over the image head: [8 x 65, 512], about half the positions masked
    const int64_t rows = kBatch * (kImg + 1), V = kCodebook;
    auto logits = rnd(rows * V, ++seed), dlogits = zeros(rows * V), losses = zeros(rows);
    auto targets = ints<int32_t>(rows, -V, V, ++seed);
    for (auto& t : *targets) t = t < 0 ? -1 : t;
    cases.push_back({"cross_entropy.fwd", {rows, V}, 3.0 * rows * V, f4 * (rows * V + 2 * rows),
                     [=] { cpu::cross_entropy_forward(losses->data(), logits->data(), targets->data(), rows, V); },
                     nullptr, ""});
    cases.push_back({"cross_entropy.fwd_bwd", {rows, V}, 5.0 * rows * V, f4 * (3 * rows * V + 2 * rows),
                     [=] { cpu::cross_entropy_forward_backward(losses->data(), dlogits->data(), logits->data(),
                                                               targets->data(), 1.0f / rows, rows, V); },
                     nullptr, ""});
  }
  {  // mse, flow target [8, 64, 48]
    const int64_t n = kBatch * kImg * kTok;
    auto pred = rnd(n, ++seed), target = rnd(n, ++seed), dpred = zeros(n);
    cases.push_back({"mse.fwd", {kBatch, kImg, kTok}, 3.0 * n, f4 * 2 * n,
                     [=] { (void)cpu::mse_forward(pred->data(), target->data(), n); }, nullptr, ""});
    cases.push_back({"mse.bwd", {kBatch, kImg, kTok}, 3.0 * n, f4 * 4 * n,
                     [=] { cpu::mse_backward(dpred->data(), pred->data(), target->data(), 1.0f, n); }, nullptr, ""});
  }
  {  // time embedding, B = 8 (forward only)
    auto t = rnd(kBatch, ++seed, true), out = zeros(kBatch * cpu::kTimeEmbedDim);
    cases.push_back({"time_embed.fwd", {kBatch, cpu::kTimeEmbedDim}, 2.0 * kBatch * cpu::kTimeEmbedDim,
                     f4 * (kBatch + kBatch * cpu::kTimeEmbedDim),
                     [=] { cpu::time_embed_forward(out->data(), t->data(), kBatch); }, nullptr, ""});
  }
  {  // global grad norm and the fused AdamW step over 5M parameters
    auto g = rnd(kParams, ++seed), p = rnd(kParams, ++seed), m = zeros(kParams), v = zeros(kParams);
    cases.push_back({"grad_norm.global", {kParams}, 2.0 * kParams, f4 * kParams,
                     [=] { bool nf = false; (void)cpu::grad_norm(g->data(), kParams, &nf); }, nullptr, ""});
    cases.push_back({"adamw.step", {kParams}, 12.0 * kParams, f4 * 7 * kParams,
                     [=] {
                       const cpu::AdamWConfig cfg{1e-4, 0.9, 0.95, 1e-8, 0.02, 10, 1.0, 0.0};
                       cpu::adamw_step(p->data(), m->data(), v->data(), nullptr, g->data(), kParams, true, cfg);
                     },
                     nullptr, "no ema"});
  }
  {  // embeddings: token table gather/scatter for the condition rows, pos tables
    const int64_t vocab = 263, n = kBatch * kCond;
    auto table = rnd(vocab * D, ++seed), out = zeros(n * D), dtable = zeros(vocab * D), dout = rnd(n * D, ++seed);
    auto ids = ints<int32_t>(n, 0, vocab, ++seed);
    auto x = rnd(R * D, ++seed), pos = rnd(kTokens * D, ++seed), dpos = zeros(kTokens * D);
    cases.push_back({"embedding.fwd", {n, D}, 0, f4 * 2 * n * D + 4.0 * n,
                     [=] { cpu::embedding_forward(out->data(), table->data(), ids->data(), n, D); }, nullptr, ""});
    cases.push_back({"embedding.bwd", {n, D}, 1.0 * n * D, f4 * 3 * n * D + 4.0 * n,
                     [=] { cpu::embedding_backward(dtable->data(), dout->data(), ids->data(), n, D); }, nullptr, ""});
    cases.push_back({"pos_add.fwd", {kBatch, kTokens, D}, 1.0 * R * D, f4 * (2 * R * D + kTokens * D),
                     [=] { cpu::pos_add_forward(x->data(), pos->data(), kBatch, kTokens, kTokens, D); }, nullptr, ""});
    cases.push_back({"pos_add.bwd", {kBatch, kTokens, D}, 1.0 * R * D, f4 * (R * D + 2 * kTokens * D),
                     [=] { cpu::pos_add_backward(dpos->data(), x->data(), kBatch, kTokens, kTokens, D); }, nullptr, ""});
  }
  {  // image ops: patchify 32x32 by 4, avgpool by 2 (understanding input 16x16)
    const int64_t S = kImgSize, n = kBatch * S * S * 3, f = 2;
    auto img = rnd(n, ++seed), tokens = zeros(n), dimg = zeros(n), dtok = rnd(n, ++seed);
    auto pooled = zeros(n / (f * f)), dpooled = rnd(n / (f * f), ++seed);
    cases.push_back({"patchify.fwd", {kBatch, S, kPatch}, 0, f4 * 2 * n,
                     [=] { cpu::patchify_forward(tokens->data(), img->data(), kBatch, S, kPatch); }, nullptr, ""});
    cases.push_back({"patchify.bwd", {kBatch, S, kPatch}, 1.0 * n, f4 * 3 * n,
                     [=] { cpu::patchify_backward(dimg->data(), dtok->data(), kBatch, S, kPatch); }, nullptr, ""});
    cases.push_back({"avgpool.fwd", {kBatch, S, f}, 1.0 * n, f4 * (n + n / (f * f)),
                     [=] { cpu::avgpool_forward(pooled->data(), img->data(), kBatch, S, f); }, nullptr, ""});
    cases.push_back({"avgpool.bwd", {kBatch, S, f}, 1.0 * n, f4 * (2 * n + n / (f * f)),
                     [=] { cpu::avgpool_backward(dimg->data(), dpooled->data(), kBatch, S, f); }, nullptr, ""});
  }
  {  // VQ: nearest code for 8 x 64 tokens, K = 512, C = 16; loss forward/backward
    const int64_t n = kBatch * kImg, K = kCodebook, C = kCodeDim;
    auto z = rnd(n * C, ++seed), codebook = rnd(K * C, ++seed), dz = zeros(n * C), dcb = zeros(K * C),
         dzq = rnd(n * C, ++seed), lc = zeros(1), lm = zeros(1);
    auto codes = ints<int32_t>(n, 0, K, ++seed);
    cases.push_back({"vq.nearest", {n, K, C}, 3.0 * n * K * C, f4 * (n * C + K * C + n),
                     [=] { cpu::vq_nearest(codes->data(), z->data(), codebook->data(), n, K, C); }, nullptr, ""});
    cases.push_back({"vq.loss_fwd", {n, K, C}, 4.0 * n * C, f4 * (2 * n * C + n),
                     [=] { cpu::vq_loss_forward(lc->data(), lm->data(), z->data(), codebook->data(), codes->data(), n, C); },
                     nullptr, ""});
    cases.push_back({"vq.loss_bwd", {n, K, C}, 6.0 * n * C, f4 * (6 * n * C + n),
                     [=] { cpu::vq_loss_backward(dz->data(), dcb->data(), dzq->data(), z->data(), codebook->data(),
                                                 codes->data(), 1.0f, 1.0f, n, K, C); },
                     nullptr, ""});
  }
  {  // sampling: categorical over the image head [8 x 64, 512]; CFG combine
    const int64_t rows = kBatch * kImg, V = kCodebook;
    auto logits = rnd(rows * V, ++seed), u = rnd(rows, ++seed, true), probs = zeros(rows), uncond = rnd(rows * V, ++seed),
         out = zeros(rows * V);
    auto ids = std::make_shared<std::vector<int32_t>>(rows);
    cases.push_back({"sampling.categorical", {rows, V}, 4.0 * rows * V, f4 * (rows * V + 3 * rows),
                     [=] { cpu::sample_categorical(ids->data(), probs->data(), logits->data(), u->data(), 1.0f, 0, rows, V); },
                     nullptr, "temperature 1, no top-k"});
    cases.push_back({"sampling.cfg_combine", {rows, V}, 2.0 * rows * V, f4 * 3 * rows * V,
                     [=] { cpu::cfg_combine(out->data(), logits->data(), uncond->data(), 3.0f, rows * V); }, nullptr, ""});
  }
}

void resize_pool(int n) {
  if (n != num_threads()) set_num_threads(n);
}

// Restores the engine's thread count on scope exit.
struct ThreadCountGuard {
  int saved = num_threads();
  ~ThreadCountGuard() { resize_pool(saved); }
};

}  // namespace

namespace {
// Warm-up, then the calls per batch that make a batch last about batch_target.
int64_t calibrate_reps(const std::function<void()>& fn, double batch_target) {
  fn();  // warm-up: caches, page faults, pool wake-up
  int64_t reps = 1;
  for (;;) {
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < reps; ++i) fn();
    const double dt = seconds_since(t0);
    if (dt >= batch_target || reps >= (int64_t(1) << 30)) return reps;
    reps = dt <= 0 ? reps * 16 : std::max(reps + 1, static_cast<int64_t>(reps * batch_target / dt * 1.2));
  }
}

double batch_seconds_per_call(const std::function<void()>& fn, int64_t reps) {
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < reps; ++i) fn();
  return seconds_since(t0) / reps;
}

// The q-quantile (0..1) of v, nearest rank; sorts v.
double quantile(std::vector<double>& v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
}
}  // namespace

PairedTiming paired_seconds_per_call(const std::function<void()>& ours, const std::function<void()>& peer,
                                     double min_seconds, double settle_seconds) {
  const double batch_target = std::max(min_seconds / 8, 1e-4);
  const int64_t reps_ours = calibrate_reps(ours, batch_target);
  const int64_t reps_peer = calibrate_reps(peer, batch_target);
  std::vector<double> t_ours, t_peer, ratios;
  double total = 0;
  while (ratios.size() < 7 || (total < 2 * min_seconds && ratios.size() < 400)) {
    const double a = batch_seconds_per_call(ours, reps_ours);
    const double b = batch_seconds_per_call(peer, reps_peer);
    if (settle_seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(settle_seconds));
    total += a * reps_ours + b * reps_peer;
    t_ours.push_back(a);
    t_peer.push_back(b);
    ratios.push_back(b / a);
  }
  PairedTiming r;
  r.ours_seconds = quantile(t_ours, 0.5);
  r.peer_seconds = quantile(t_peer, 0.5);
  r.ratio = quantile(ratios, 0.5);
  r.ratio_lo = quantile(ratios, 0.25);
  r.ratio_hi = quantile(ratios, 0.75);
  return r;
}

double median_seconds_per_call(const std::function<void()>& fn, double min_seconds) {
  // Calls per batch: enough for a batch to last about min_seconds / 8.
  const double batch_target = std::max(min_seconds / 8, 1e-4);
  const int64_t reps = calibrate_reps(fn, batch_target);
  std::vector<double> per_call;
  double total = 0;
  while (per_call.size() < 5 || (total < min_seconds && per_call.size() < 1000)) {
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < reps; ++i) fn();
    const double dt = seconds_since(t0);
    total += dt;
    per_call.push_back(dt / reps);
  }
  std::sort(per_call.begin(), per_call.end());
  const size_t n = per_call.size();
  return n % 2 ? per_call[n / 2] : 0.5 * (per_call[n / 2 - 1] + per_call[n / 2]);
}

std::vector<KernelBenchRecord> run_kernel_bench(const KernelBenchOptions& opts) {
  ThreadCountGuard guard;
  if (opts.threads > 0) resize_pool(opts.threads);
  const int threads = num_threads();

  std::vector<Case> cases;
  add_matmul_cases(cases);
  add_matmul_bf16_cases(cases);
  add_family_cases(cases);

  const bool peer_ok = opts.with_peer && openblas_peer().available;
  std::vector<KernelBenchRecord> out;
  for (const Case& c : cases) {
    if (!opts.filter.empty() && c.name.find(opts.filter) == std::string::npos) continue;
    KernelBenchRecord r;
    r.name = c.name;
    r.shape = c.shape;
    r.isa = isa_name(active_isa());
    r.threads = threads;
    r.note = c.note;
    // Our own peers (separate passes) always run; the fp32 kernel beside bf16
    // only when peers were asked for.
    const bool own_peer = c.peer && c.peer_name != "openblas" && (c.peer_name != "fp32" || opts.with_peer);
    if (c.peer && (peer_ok || own_peer)) {
      if (!own_peer) openblas_set_threads(threads);
      // OpenBLAS workers spin for a while after a call; let them settle so they
      // do not steal cycles from our next batch.
      const PairedTiming t =
          paired_seconds_per_call(c.run, c.peer(), opts.min_seconds, threads > 1 && !own_peer ? 0.1 : 0);
      r.seconds = t.ours_seconds;
      r.peer_name = c.peer_name;
      r.peer_gflops = c.flops / t.peer_seconds * 1e-9;
      r.ratio = t.ratio;
      r.ratio_lo = t.ratio_lo;
      r.ratio_hi = t.ratio_hi;
    } else {
      r.seconds = median_seconds_per_call(c.run, opts.min_seconds);
      if (c.peer && opts.with_peer)
        r.note += std::string(r.note.empty() ? "" : "; ") + "no peer: " + openblas_peer().error;
    }
    r.gflops = c.flops / r.seconds * 1e-9;
    r.gbps = c.bytes / r.seconds * 1e-9;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace reca::bench
