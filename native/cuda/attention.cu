// Multi-head attention over a fused qkv projection on the device
// (reca::cpu::attention_* semantics, SPEC §4 visibility). No atomics; every sum
// runs in a fixed order, so the same inputs give the same bits.
//   forward   a warp per query row (b, h, i): lane j-strided scores q·k_j/√hd
//             (each a serial dot over d) into the att row, warp max and sum
//             (butterfly), probabilities, then out[d] = Σ_j p_j v_j[d] with the
//             lanes over d and j in order. A query that sees no key gets zeros.
//   backward  (1) a warp per query row: dP_j = dO·v_j, r = Σ_j dP_j·P_j,
//             dS_j = P_j (dP_j − r)/√hd into a [B, heads, L, L] scratch, and
//             dQ += Σ_j dS_j k_j; (2) a warp per key row j: dK_j += Σ_i dS_ij q_i
//             and dV_j += Σ_i P_ij dO_i over the queries i that see j, in order.
//   cached    the forward's kernel over query rows [row0, row0 + Lq) of a
//             [B, Lmax, 3·width] cache, keys j < row0 + Lq.
#include <cmath>

#include "cuda/kernel_util.cuh"

namespace reca::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;

// Geometry of one launch. Query rows r < Lq are absolute positions i = row0 + r
// of sequences of Lmax rows (fused q|k|v, C3 = 3·width floats a row); keys are
// j < filled. Scores/att rows: [B, heads, Lq, filled].
struct Geom {
  int64_t B, Lmax, row0, Lq, filled, heads, width, hd, cond_len;
  bool causal;
  float scale;
};

// Keys query i may see lie in [0, key_end(i)) (PAD keys inside are not visible).
__device__ __forceinline__ int64_t key_end(const Geom& g, int64_t i) {
  const int64_t e = i < g.cond_len ? g.cond_len : (g.causal ? i + 1 : g.Lmax);
  return e < g.filled ? e : g.filled;
}

// out [B, Lq, width]; srows [B, heads, Lq, filled] (att or scratch).
__global__ void __launch_bounds__(kThreads)
    attn_forward_kernel(float* out, float* srows, const float* qkv, const uint8_t* key_pad, Geom g) {
  extern __shared__ float sq_all[];  // [kWarps][hd]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sq = sq_all + warp * g.hd;
  const int64_t C3 = 3 * g.width, total = g.B * g.heads * g.Lq;
  for (int64_t w = int64_t(blockIdx.x) * kWarps + warp; w < total; w += int64_t(gridDim.x) * kWarps) {
    const int64_t r = w % g.Lq, h = (w / g.Lq) % g.heads, b = w / (g.Lq * g.heads);
    const int64_t i = g.row0 + r;
    const float* base = qkv + b * g.Lmax * C3 + h * g.hd;  // row j: q at +j·C3, k +width, v +2·width
    const uint8_t* pad = key_pad ? key_pad + b * g.Lmax : nullptr;
    float* srow = srows + w * g.filled;  // w == (b·heads + h)·Lq + r
    float* o = out + (b * g.Lq + r) * g.width + h * g.hd;
    __syncwarp();
    for (int64_t d = lane; d < g.hd; d += 32) sq[d] = base[i * C3 + d];
    __syncwarp();
    const int64_t end = key_end(g, i);
    float m = -INFINITY;
    int cnt = 0;
    for (int64_t j = lane; j < end; j += 32) {
      if (pad && pad[j]) continue;
      const float* k = base + j * C3 + g.width;
      float dot = 0.0f;
      for (int64_t d = 0; d < g.hd; ++d) dot = fmaf(sq[d], k[d], dot);
      const float s = dot * g.scale;
      srow[j] = s;
      m = fmaxf(m, s);
      ++cnt;
    }
    m = detail::warp_max(m);
    cnt = detail::warp_sum_int(cnt);
    if (cnt == 0) {  // sees no key: zero output, zero att row
      for (int64_t d = lane; d < g.hd; d += 32) o[d] = 0.0f;
      for (int64_t j = lane; j < g.filled; j += 32) srow[j] = 0.0f;
      continue;
    }
    float sum = 0.0f;
    for (int64_t j = lane; j < g.filled; j += 32) {
      const bool vis = j < end && !(pad && pad[j]);
      const float e = vis ? expf(srow[j] - m) : 0.0f;
      srow[j] = e;
      sum += e;
    }
    const float inv = 1.0f / detail::warp_sum(sum);
    for (int64_t j = lane; j < g.filled; j += 32) srow[j] *= inv;
    __syncwarp();  // the row's probabilities, written by every lane, are read by every lane
    for (int64_t d = lane; d < g.hd; d += 32) {
      const float* v = base + 2 * g.width + d;
      float acc = 0.0f;
      for (int64_t j = 0; j < end; ++j) {
        if (pad && pad[j]) continue;
        acc = fmaf(srow[j], v[j * C3], acc);
      }
      o[d] = acc;
    }
  }
}

// (1) Per query row of attention_backward: dS into ds [B, heads, L, L], dQ += dS·K.
__global__ void __launch_bounds__(kThreads)
    attn_backward_q_kernel(float* dqkv, float* ds, const float* dout, const float* qkv, const float* att,
                           const uint8_t* key_pad, Geom g) {
  extern __shared__ float sgo_all[];  // [kWarps][hd]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sgo = sgo_all + warp * g.hd;
  const int64_t L = g.Lmax, C3 = 3 * g.width, total = g.B * g.heads * L;
  for (int64_t w = int64_t(blockIdx.x) * kWarps + warp; w < total; w += int64_t(gridDim.x) * kWarps) {
    const int64_t i = w % L, h = (w / L) % g.heads, b = w / (L * g.heads);
    const float* base = qkv + b * L * C3 + h * g.hd;
    const uint8_t* pad = key_pad ? key_pad + b * L : nullptr;
    const float* a = att + w * L;
    float* dsr = ds + w * L;
    __syncwarp();
    for (int64_t d = lane; d < g.hd; d += 32) sgo[d] = dout[(b * L + i) * g.width + h * g.hd + d];
    __syncwarp();
    const int64_t end = key_end(g, i);
    float rr = 0.0f;
    for (int64_t j = lane; j < L; j += 32) {
      float dp = 0.0f;
      if (j < end && !(pad && pad[j])) {
        const float* v = base + j * C3 + 2 * g.width;
        for (int64_t d = 0; d < g.hd; ++d) dp = fmaf(sgo[d], v[d], dp);
        rr = fmaf(dp, a[j], rr);
      }
      dsr[j] = dp;
    }
    rr = detail::warp_sum(rr);
    for (int64_t j = lane; j < L; j += 32) {
      const bool vis = j < end && !(pad && pad[j]);
      dsr[j] = vis ? a[j] * (dsr[j] - rr) * g.scale : 0.0f;
    }
    __syncwarp();
    float* gq = dqkv + (b * L + i) * C3 + h * g.hd;
    for (int64_t d = lane; d < g.hd; d += 32) {
      const float* k = base + g.width + d;
      float acc = 0.0f;
      for (int64_t j = 0; j < end; ++j) {
        if (pad && pad[j]) continue;
        acc = fmaf(dsr[j], k[j * C3], acc);
      }
      gq[d] += acc;
    }
  }
}

// (2) Per key row j: dK_j += Σ_i dS_ij q_i, dV_j += Σ_i P_ij dO_i over the
// queries that see j (i >= 0 for a condition key; else i >= j when causal,
// i >= cond_len otherwise), in order of i.
__global__ void __launch_bounds__(kThreads)
    attn_backward_kv_kernel(float* dqkv, const float* ds, const float* dout, const float* qkv, const float* att,
                            const uint8_t* key_pad, Geom g) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t L = g.Lmax, C3 = 3 * g.width, total = g.B * g.heads * L;
  for (int64_t w = int64_t(blockIdx.x) * kWarps + warp; w < total; w += int64_t(gridDim.x) * kWarps) {
    const int64_t j = w % L, h = (w / L) % g.heads, b = w / (L * g.heads);
    if (key_pad && key_pad[b * L + j]) continue;  // no query sees a PAD key
    const int64_t i0 = j < g.cond_len ? 0 : (g.causal ? j : g.cond_len);
    const float* base = qkv + b * L * C3 + h * g.hd;
    const float* dsc = ds + (b * g.heads + h) * L * L + j;  // dS_ij at dsc[i·L]
    const float* ac = att + (b * g.heads + h) * L * L + j;
    float* gk = dqkv + (b * L + j) * C3 + g.width + h * g.hd;
    float* gv = gk + g.width;
    for (int64_t d = lane; d < g.hd; d += 32) {
      float acck = 0.0f, accv = 0.0f;
      for (int64_t i = i0; i < L; ++i) {
        acck = fmaf(dsc[i * L], base[i * C3 + d], acck);
        accv = fmaf(ac[i * L], dout[(b * L + i) * g.width + h * g.hd + d], accv);
      }
      gk[d] += acck;
      gv[d] += accv;
    }
  }
}

Geom make_geom(int64_t B, int64_t Lmax, int64_t row0, int64_t Lq, int64_t heads, int64_t width,
               int64_t cond_len, bool causal) {
  RECA_CHECK(heads >= 1 && width % heads == 0 && width > 0, InvalidArgument,
             "attention: width %lld is not a multiple of heads %lld", static_cast<long long>(width),
             static_cast<long long>(heads));
  Geom g;
  g.B = B, g.Lmax = Lmax, g.row0 = row0, g.Lq = Lq, g.filled = row0 + Lq, g.heads = heads;
  g.width = width, g.hd = width / heads, g.cond_len = cond_len, g.causal = causal;
  g.scale = 1.0f / sqrtf(static_cast<float>(g.hd));
  RECA_CHECK(size_t(kWarps) * size_t(g.hd) * sizeof(float) <= 48 * 1024, InvalidArgument,
             "attention: head size %lld is over the limit %d", static_cast<long long>(g.hd),
             48 * 1024 / kWarps / 4);
  return g;
}

void launch_forward(float* out, float* srows, const float* qkv, const uint8_t* key_pad, const Geom& g,
                    Stream stream, const char* op) {
  const int64_t rows = g.B * g.heads * g.Lq;
  attn_forward_kernel<<<detail::grid_for(rows, kWarps), kThreads, kWarps * g.hd * sizeof(float), stream>>>(
      out, srows, qkv, key_pad, g);
  RECA_CUDA_LAUNCHED(op);
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, const uint8_t* key_pad, int64_t B,
                       int64_t L, int64_t heads, int64_t width, int64_t cond_len,
                       bool target_causal, Stream stream) {
  if (B <= 0 || L <= 0) return;
  const Geom g = make_geom(B, L, 0, L, heads, width, cond_len, target_causal);
  if (att) return launch_forward(out, att, qkv, key_pad, g, stream, "attention_forward");
  detail::Scratch s(size_t(B * heads) * size_t(L) * size_t(L) * sizeof(float), stream, "attention_forward");
  launch_forward(out, s.as<float>(), qkv, key_pad, g, stream, "attention_forward");
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* key_pad, int64_t B, int64_t L, int64_t heads,
                        int64_t width, int64_t cond_len, bool target_causal, Stream stream) {
  if (B <= 0 || L <= 0) return;
  const Geom g = make_geom(B, L, 0, L, heads, width, cond_len, target_causal);
  detail::Scratch ds(size_t(B * heads) * size_t(L) * size_t(L) * sizeof(float), stream, "attention_backward");
  const int64_t rows = B * heads * L;
  attn_backward_q_kernel<<<detail::grid_for(rows, kWarps), kThreads, kWarps * g.hd * sizeof(float), stream>>>(
      dqkv, ds.as<float>(), dout, qkv, att, key_pad, g);
  RECA_CUDA_LAUNCHED("attention_backward");
  attn_backward_kv_kernel<<<detail::grid_for(rows, kWarps), kThreads, 0, stream>>>(dqkv, ds.as<float>(), dout, qkv,
                                                                                  att, key_pad, g);
  RECA_CUDA_LAUNCHED("attention_backward");
}

void attention_cached(float* out, const float* qkv, const uint8_t* key_pad, int64_t B,
                      int64_t Lmax, int64_t row0, int64_t Lq, int64_t heads, int64_t width,
                      int64_t cond_len, bool target_causal, Stream stream) {
  if (B <= 0 || Lq <= 0) return;
  const Geom g = make_geom(B, Lmax, row0, Lq, heads, width, cond_len, target_causal);
  detail::Scratch s(size_t(B * heads) * size_t(Lq) * size_t(g.filled) * sizeof(float), stream, "attention_cached");
  launch_forward(out, s.as<float>(), qkv, key_pad, g, stream, "attention_cached");
}

}  // namespace reca::cuda
