#include "model/reca_model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "model/alignment.h"

namespace reca::model {

struct RecaModel::CondCache {
  float* und_pixels = nullptr;       // patchify(avgpool(img)) [B·N_u, 3P_u²]
  float* h0 = nullptr;               // patch embed + positions [B·N_u, W_u]
  std::vector<BlockCache> blocks;    // und blocks used (k of them)
  StackShape shape;
  const float* u = nullptr;          // features [B·N_u, W_u]
  float *ln = nullptr, *mean = nullptr, *rstd = nullptr, *f1 = nullptr, *g1 = nullptr;
  float *f2 = nullptr, *mean2 = nullptr, *rstd2 = nullptr;  // conn.norm's input and stats (cond_norm)
};

namespace {

const ModelConfig& validated(const ModelConfig& cfg) {
  cfg.validate();
  return cfg;
}

// The parameter buffer of a validated config, sized from the measured layout
// (checked arithmetic; E_INVALID_ARGUMENT beyond ParamLayout::kMaxFloats,
// E_OUT_OF_MEMORY with the true size when the backend cannot provide it).
// Allocating before the table is built keeps a config the machine cannot hold
// (depth 2^20: 200 GB) from first spending gigabytes on its 12M-entry table.
float* alloc_params(const ModelConfig& cfg, Backend& be) {
  const LayoutSize s = ParamLayout::measure(cfg);
  ParamLayout::require_fits(s);
  const int64_t bytes = s.all.floats * 4;  // <= 2^59
  float* p = static_cast<float*>(be.alloc(bytes));
  be.zero(p, bytes);
  return p;
}

ParamLayout layout_or_release(const ModelConfig& cfg, Backend& be, float* params) {
  try {
    return ParamLayout(cfg);
  } catch (...) {
    be.release(params);
    throw;
  }
}

}  // namespace

RecaModel::RecaModel(const ModelConfig& cfg, Backend& be)
    : cfg_(validated(cfg)),
      be_(be),
      params_(alloc_params(cfg_, be_)),
      layout_(layout_or_release(cfg_, be_, params_)) {}

RecaModel::~RecaModel() { be_.release(params_); }

int64_t RecaModel::parameter_count() const {
  int64_t n = 0;
  for (const auto& pi : layout_.params()) n += pi.numel;
  return n;
}

void RecaModel::init(uint64_t seed) {
  std::vector<float> host(static_cast<size_t>(layout_.total()), 0.0f);
  init_params(layout_, seed, host.data());
  set_params(host.data());
}

void RecaModel::set_params(const float* host) { be_.upload(params_, host, layout_.total() * 4); }
void RecaModel::get_params(float* host) const { be_.download(host, params_, layout_.total() * 4); }

float* RecaModel::g(float* grads, const std::string& name, const Trainable& tr) const {
  if (!grads) return nullptr;
  const ParamInfo& pi = layout_.at(name);
  return tr.group(pi.group()) ? grads + pi.offset : nullptr;
}

// ---------------------------------------------------------------------------
// Understanding encoder + connector (SPEC §3)
// ---------------------------------------------------------------------------
const float* RecaModel::condition_forward(const float* img, int64_t B, CondCache* cache,
                                          Arena& arena) {
  const int64_t Nu = cfg_.num_und_tokens(), Wu = cfg_.und_width, W = cfg_.width;
  const int64_t Su = cfg_.und_image_size, R = B * Nu;
  CondCache local;
  CondCache& c = cache ? *cache : local;
  float* pooled = arena.floats(B * Su * Su * 3);
  be_.avgpool_forward(pooled, img, B, cfg_.image_size, cfg_.pool_factor());
  c.und_pixels = arena.floats(R * cfg_.und_patch_dim());
  be_.patchify_forward(c.und_pixels, pooled, B, Su, cfg_.und_patch);
  c.h0 = arena.floats(R * Wu);
  be_.linear_forward(c.h0, c.und_pixels, p("und.patch_embed.weight"), p("und.patch_embed.bias"),
                     R, cfg_.und_patch_dim(), Wu);
  be_.pos_add_forward(c.h0, p("und.pos_embed"), B, Nu, Nu, Wu);
  c.shape.B = B, c.shape.L = Nu, c.shape.width = Wu, c.shape.heads = cfg_.und_heads;
  c.shape.hidden = cfg_.mlp_ratio * Wu, c.shape.cond_len = Nu, c.shape.target_causal = false;
  const int64_t k = cfg_.und_feature_layer();
  const auto w = block_views(layout_, "und.blocks", cfg_.und_depth, params_);
  if (cache) c.blocks.assign(static_cast<size_t>(k), BlockCache{});
  c.u = stack_forward(be_, arena, w, k, c.shape, c.h0, cache ? c.blocks.data() : nullptr);
  // Connector: c = fc2(gelu(fc1(ln(u)))), then conn.norm when the config has it.
  c.ln = arena.floats(R * Wu), c.mean = arena.floats(R), c.rstd = arena.floats(R);
  be_.layernorm_forward(c.ln, c.mean, c.rstd, c.u, p("conn.ln.weight"), p("conn.ln.bias"), R, Wu);
  c.f1 = arena.floats(R * W), c.g1 = arena.floats(R * W);
  be_.linear_gelu_forward(c.f1, c.g1, c.ln, p("conn.fc1.weight"), p("conn.fc1.bias"), R, Wu, W);
  float* out = arena.floats(R * W);
  be_.linear_forward(out, c.g1, p("conn.fc2.weight"), p("conn.fc2.bias"), R, W, W);
  if (!cfg_.cond_norm) return out;
  c.f2 = out, c.mean2 = arena.floats(R), c.rstd2 = arena.floats(R);
  float* normed = arena.floats(R * W);
  be_.layernorm_forward(normed, c.mean2, c.rstd2, c.f2, p("conn.norm.weight"), p("conn.norm.bias"), R, W);
  return normed;
}

void RecaModel::condition_backward(const CondCache& c, const float* dc, int64_t B, float* grads,
                                   const Trainable& tr, Arena& arena) {
  const int64_t Nu = cfg_.num_und_tokens(), Wu = cfg_.und_width, W = cfg_.width, R = B * Nu;
  if (!tr.conn && !tr.und) return;
  if (cfg_.cond_norm) {  // back through conn.norm to fc2's output
    float* df2 = arena.zeros(R * W);
    be_.layernorm_backward(df2, g(grads, "conn.norm.weight", tr), g(grads, "conn.norm.bias", tr), dc,
                           c.f2, p("conn.norm.weight"), c.mean2, c.rstd2, R, W);
    dc = df2;
  }
  float* df1 = arena.floats(R * W);
  be_.linear_backward_gelu(df1, g(grads, "conn.fc2.weight", tr), g(grads, "conn.fc2.bias", tr), dc,
                           c.g1, p("conn.fc2.weight"), c.f1, R, W, W);
  float* dln = arena.zeros(R * Wu);
  be_.linear_backward(dln, g(grads, "conn.fc1.weight", tr), g(grads, "conn.fc1.bias", tr), df1,
                      c.ln, p("conn.fc1.weight"), R, Wu, W);
  if (!tr.und) {
    be_.layernorm_backward(nullptr, g(grads, "conn.ln.weight", tr), g(grads, "conn.ln.bias", tr),
                           dln, c.u, p("conn.ln.weight"), c.mean, c.rstd, R, Wu);
    return;
  }
  float* du = arena.zeros(R * Wu);
  be_.layernorm_backward(du, g(grads, "conn.ln.weight", tr), g(grads, "conn.ln.bias", tr), dln,
                         c.u, p("conn.ln.weight"), c.mean, c.rstd, R, Wu);
  const int64_t k = cfg_.und_feature_layer();
  const auto w = block_views(layout_, "und.blocks", cfg_.und_depth, params_);
  const auto gw = block_views(layout_, "und.blocks", cfg_.und_depth, grads);
  const float* dh0 = stack_backward(be_, arena, w, gw, k, c.shape, c.blocks.data(), du);
  be_.pos_add_backward(g(grads, "und.pos_embed", tr), dh0, B, Nu, Nu, Wu);
  be_.linear_backward(nullptr, g(grads, "und.patch_embed.weight", tr),
                      g(grads, "und.patch_embed.bias", tr), dh0, c.und_pixels,
                      p("und.patch_embed.weight"), R, cfg_.und_patch_dim(), Wu);
}

// The tokenizer condition (SPEC §5): each understanding slot n holds the mean
// of the generator's input embeddings of the image tokens in the g×g block of
// the token grid it covers, g = grid / und_grid. Pooled on the host in float64
// in a fixed order (every backend gives the same bytes for the same
// embeddings); no gradient flows back into it.
const float* RecaModel::tokenizer_condition(const float* img, int64_t B, Arena& arena) {
  const int64_t G = cfg_.grid(), Gu = cfg_.und_grid(), N = cfg_.num_image_tokens();
  const int64_t Nu = cfg_.num_und_tokens(), W = cfg_.width;
  RECA_CHECK(G % Gu == 0, InvalidArgument,
             "the tokenizer condition pools the %lldx%lld token grid onto the %lldx%lld "
             "understanding grid, which needs the first to be a multiple of the second",
             static_cast<long long>(G), static_cast<long long>(G), static_cast<long long>(Gu),
             static_cast<long long>(Gu));
  const int64_t g = G / Gu;
  float* emb = arena.floats(B * N * W);
  if (cfg_.discrete()) {
    int32_t* codes = arena.ints(B * N);
    vq_encode(img, B, codes, arena);
    be_.embedding_forward(emb, p("gen.img_embed"), codes, B * N, W);
  } else {
    const int64_t D = cfg_.patch_dim();
    float* x0 = arena.floats(B * N * D);
    be_.patchify_forward(x0, img, B, cfg_.image_size, cfg_.gen_patch);
    be_.linear_forward(emb, x0, p("gen.img_in.weight"), p("gen.img_in.bias"), B * N, D, W);
  }
  std::vector<float> tokens(static_cast<size_t>(B * N * W));
  be_.download(tokens.data(), emb, B * N * W * 4);
  std::vector<float> pooled(static_cast<size_t>(B * Nu * W));
  std::vector<double> acc(static_cast<size_t>(W));
  const double inv = 1.0 / static_cast<double>(g * g);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t n = 0; n < Nu; ++n) {
      const int64_t r0 = (n / Gu) * g, c0 = (n % Gu) * g;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t dr = 0; dr < g; ++dr) {
        for (int64_t dc = 0; dc < g; ++dc) {
          const float* row = tokens.data() + (b * N + (r0 + dr) * G + (c0 + dc)) * W;
          for (int64_t k = 0; k < W; ++k) acc[k] += row[k];
        }
      }
      float* out = pooled.data() + (b * Nu + n) * W;
      for (int64_t k = 0; k < W; ++k) out[k] = static_cast<float>(acc[k] * inv);
    }
  }
  float* cond = arena.floats(B * Nu * W);
  be_.upload(cond, pooled.data(), B * Nu * W * 4);
  return cond;
}

// ---------------------------------------------------------------------------
// VQ tokenizer (SPEC §3)
// ---------------------------------------------------------------------------
const float* RecaModel::vq_encode(const float* img, int64_t B, int32_t* codes_dev, Arena& arena,
                                  float** patches_out) {
  const int64_t N = cfg_.num_image_tokens(), D = cfg_.patch_dim(), C = cfg_.code_dim;
  float* patches = arena.floats(B * N * D);
  be_.patchify_forward(patches, img, B, cfg_.image_size, cfg_.gen_patch);
  float* z = arena.floats(B * N * C);
  be_.linear_forward(z, patches, p("vq.enc.weight"), p("vq.enc.bias"), B * N, D, C);
  be_.vq_nearest(codes_dev, z, p("vq.codebook"), B * N, cfg_.codebook_size, C);
  if (patches_out) *patches_out = patches;
  return z;
}

PassResult RecaModel::tokenizer_pass(const uint8_t* images, int64_t B, float* grads, float weight,
                                     Arena& arena, int32_t* codes_out, float* z_out) {
  RECA_CHECK(cfg_.discrete(), InvalidArgument,
             "the VQ tokenizer exists only in the discrete modes (ar, mask), not in '%s'",
             mode_name(cfg_.mode));
  const int64_t S = cfg_.image_size, N = cfg_.num_image_tokens(), D = cfg_.patch_dim();
  const int64_t C = cfg_.code_dim, K = cfg_.codebook_size, n = B * N;
  uint8_t* bytes = arena.bytes(B * S * S * 3);
  be_.upload(bytes, images, B * S * S * 3);
  float* img = arena.floats(B * S * S * 3);
  be_.image_from_bytes(img, bytes, B * S * S * 3);
  int32_t* codes = arena.ints(n);
  float* patches = nullptr;
  const float* z = vq_encode(img, B, codes, arena, &patches);
  float* zq = arena.floats(n * C);
  be_.vq_gather(zq, codes, p("vq.codebook"), n, C);
  float* xhat = arena.floats(n * D);
  be_.linear_forward(xhat, zq, p("vq.dec.weight"), p("vq.dec.bias"), n, C, D);
  // The reconstruction term compares in patch space: unpatchify is a permutation.
  const float rec = be_.mse_forward(xhat, patches, n * D);
  float cb = 0, commit = 0;
  be_.vq_loss_forward(&cb, &commit, z, p("vq.codebook"), codes, n, C);
  PassResult r;
  r.loss = static_cast<double>(rec) + cb + commit;
  r.count = n;
  if (codes_out) be_.download(codes_out, codes, n * 4);
  if (z_out) be_.download(z_out, z, n * C * 4);
  if (!grads) return r;
  Trainable tr;
  tr.vq = true, tr.gen = false;
  float* dxhat = arena.zeros(n * D);
  be_.mse_backward(dxhat, xhat, patches, weight, n * D);
  float* dzq = arena.zeros(n * C);
  be_.linear_backward(dzq, g(grads, "vq.dec.weight", tr), g(grads, "vq.dec.bias", tr), dxhat, zq,
                      p("vq.dec.weight"), n, C, D);
  float* dz = arena.zeros(n * C);
  be_.vq_loss_backward(dz, g(grads, "vq.codebook", tr), dzq, z, p("vq.codebook"), codes, weight,
                       weight, n, K, C);
  be_.linear_backward(nullptr, g(grads, "vq.enc.weight", tr), g(grads, "vq.enc.bias", tr), dz,
                      patches, p("vq.enc.weight"), n, D, C);
  return r;
}

// ---------------------------------------------------------------------------
// Generator sequences (SPEC §4): the pieces training and sampling share
// ---------------------------------------------------------------------------
void RecaModel::sequence_ids(Task task, int64_t B, const int32_t* text, int32_t* ids,
                             uint8_t* pad) const {
  const int64_t T = cfg_.max_text_len, Nu = cfg_.num_und_tokens();
  const int64_t Lc = cfg_.cond_len(task), L = cfg_.seq_len(task);
  for (int64_t b = 0; b < B; ++b) {
    int32_t* r = ids + b * L;
    for (int64_t i = 0; i < L; ++i) r[i] = -1;
    const int32_t* tb = text ? text + b * T : nullptr;
    auto text_at = [&](int64_t i) { return tb ? tb[i] : tok::kPad; };
    r[0] = tok::kBos;
    if (task == Task::T2i) {
      for (int64_t i = 0; i < T; ++i) r[1 + i] = text_at(i);
    } else {
      r[1] = tok::kImgBegin;
      r[2 + Nu] = tok::kImgEnd;
      if (task == Task::Reca)
        for (int64_t i = 0; i < T; ++i) r[3 + Nu + i] = text_at(i);
    }
    if (task == Task::I2t) {
      r[Lc] = tok::kCap;
      for (int64_t i = 0; i < T; ++i) r[Lc + 1 + i] = text_at(i);
    } else {
      r[Lc] = tok::kGen;
    }
    for (int64_t i = 0; i < L; ++i) pad[b * L + i] = r[i] == tok::kPad;
  }
}

void RecaModel::image_target_ids(const int32_t* codes, const uint8_t* masked, int64_t B,
                                 int32_t* img_ids) const {
  const int64_t N = cfg_.num_image_tokens(), Lt = cfg_.target_len(Task::T2i);
  const int32_t K = static_cast<int32_t>(cfg_.codebook_size);
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* cb = codes + b * N;
    int32_t* r = img_ids + b * Lt;
    r[0] = -1;  // GEN comes from gen.tok_embed
    if (cfg_.mode == Mode::Ar) {
      for (int64_t j = 1; j < N; ++j) r[j] = cb[j - 1];  // GEN, x_1..x_{N-1}
    } else {
      const uint8_t* m = masked ? masked + b * N : nullptr;
      for (int64_t j = 0; j < N; ++j) r[1 + j] = m && m[j] ? K : cb[j];
    }
  }
}

float* RecaModel::embed_sequence(const SeqInput& in, SeqSaved* saved, Arena& arena) {
  const ModelConfig& c = cfg_;
  const Task task = in.task;
  const int64_t B = in.B, W = c.width, N = c.num_image_tokens(), Nu = c.num_und_tokens();
  const int64_t D = c.patch_dim(), Lc = c.cond_len(task), Lt = c.target_len(task), L = Lc + Lt;
  const bool image_target = task != Task::I2t;
  float* x = arena.zeros(B * L * W);
  be_.embedding_forward(x, p("gen.tok_embed"), in.ids, B * L, W);
  if (task != Task::T2i) be_.rows_to_seq(x, in.cond, B, L, 2, Nu, W, false);
  if (image_target && c.discrete()) {
    float* emb = arena.zeros(B * Lt * W);
    be_.embedding_forward(emb, p("gen.img_embed"), in.img_ids, B * Lt, W);
    be_.rows_to_seq(x, emb, B, L, Lc, Lt, W, true);
  }
  if (image_target && !c.discrete()) {
    float* body = arena.floats(B * N * W);
    be_.linear_forward(body, in.zt, p("gen.img_in.weight"), p("gen.img_in.bias"), B * N, D, W);
    be_.rows_to_seq(x, body, B, L, Lc + 1, N, W, true);
    // τ(t) on every target row: gather row b of τ [B, W] for each target row of sample b.
    SeqSaved local;
    SeqSaved& sv = saved ? *saved : local;
    sv.tau_in = arena.floats(B * 256);
    be_.time_embed_forward(sv.tau_in, in.t, B);
    sv.tau_h = arena.floats(B * W), sv.tau_g = arena.floats(B * W);
    float* tau = arena.floats(B * W);
    be_.linear_forward(sv.tau_h, sv.tau_in, p("gen.t_embed.fc1.weight"),
                       p("gen.t_embed.fc1.bias"), B, 256, W);
    be_.gelu_forward(sv.tau_g, sv.tau_h, B, W);
    be_.linear_forward(tau, sv.tau_g, p("gen.t_embed.fc2.weight"), p("gen.t_embed.fc2.bias"), B,
                       W, W);
    std::vector<int32_t> sample_ids(static_cast<size_t>(B * Lt));
    for (int64_t i = 0; i < B * Lt; ++i) sample_ids[i] = static_cast<int32_t>(i / Lt);
    sv.sample_ids = arena.ints(B * Lt);
    be_.upload(sv.sample_ids, sample_ids.data(), B * Lt * 4);
    float* tau_rows = arena.floats(B * Lt * W);
    be_.embedding_forward(tau_rows, tau, sv.sample_ids, B * Lt, W);
    be_.rows_to_seq(x, tau_rows, B, L, Lc, Lt, W, true);
  }
  be_.pos_add_forward(x, p("gen.pos_cond"), B, L, Lc, W);
  be_.pos_add_forward(x + Lc * W, p(image_target ? "gen.pos_img" : "gen.pos_txt"), B, L, Lt, W);
  return x;
}

StackShape RecaModel::generator_shape(Task task, int64_t B, const uint8_t* pad_dev) const {
  StackShape s;
  s.B = B, s.L = cfg_.seq_len(task), s.width = cfg_.width, s.heads = cfg_.heads;
  s.hidden = cfg_.mlp_ratio * cfg_.width;
  s.cond_len = cfg_.cond_len(task);
  s.target_causal = task == Task::I2t || cfg_.mode == Mode::Ar;
  s.key_pad = pad_dev;
  return s;
}

std::unique_ptr<PreparedLinear> RecaModel::prepare_head(bool text_head) {
  const int64_t V = text_head ? tok::kVocab : cfg_.img_out_dim();
  return be_.prepare_linear(p(text_head ? "gen.head_txt.weight" : "gen.head_img.weight"),
                            cfg_.width, V);
}

float* RecaModel::head_forward(const float* hidden, int64_t B, int64_t Ls, int64_t row0,
                               int64_t n, bool text_head, HeadSaved* saved, Arena& arena,
                               const PreparedLinear* prepared) {
  const int64_t W = cfg_.width, R = B * n;
  const int64_t V = text_head ? tok::kVocab : cfg_.img_out_dim();
  const std::string head = text_head ? "gen.head_txt" : "gen.head_img";
  HeadSaved local;
  HeadSaved& sv = saved ? *saved : local;
  sv.rows = arena.floats(R * W);
  be_.rows_from_seq(sv.rows, hidden, B, Ls, row0, n, W, false);
  sv.normed = arena.floats(R * W), sv.mean = arena.floats(R), sv.rstd = arena.floats(R);
  be_.layernorm_forward(sv.normed, sv.mean, sv.rstd, sv.rows, p("gen.ln_f.weight"),
                        p("gen.ln_f.bias"), R, W);
  float* out = arena.floats(R * V);
  if (prepared) be_.linear_forward_prepared(out, sv.normed, *prepared, p(head + ".bias"), R);
  else be_.linear_forward(out, sv.normed, p(head + ".weight"), p(head + ".bias"), R, W, V);
  return out;
}

// ---------------------------------------------------------------------------
// Generator training pass (SPEC §4, §5)
// ---------------------------------------------------------------------------
PassResult RecaModel::generator_pass(const MicroBatch& mb, float* grads, const Trainable& tr,
                                     float weight, float cond_grad_scale, Arena& arena) {
  const ModelConfig& c = cfg_;
  const Task task = mb.task;
  const int64_t B = mb.B, S = c.image_size, W = c.width, T = c.max_text_len;
  const int64_t N = c.num_image_tokens(), Nu = c.num_und_tokens(), D = c.patch_dim();
  const int64_t Lc = c.cond_len(task), Lt = c.target_len(task), L = Lc + Lt;
  const bool uses_image_target = task != Task::I2t;
  const bool uses_und = task != Task::T2i;
  const bool discrete_target = uses_image_target && c.discrete();
  const bool flow_target = uses_image_target && !c.discrete();

  // ---- inputs on the device ----
  float* img = nullptr;
  if (uses_und || uses_image_target) {
    uint8_t* bytes = arena.bytes(B * S * S * 3);
    be_.upload(bytes, mb.images, B * S * S * 3);
    img = arena.floats(B * S * S * 3);
    be_.image_from_bytes(img, bytes, B * S * S * 3);
  }

  // ---- token ids of the whole sequence (host) ----
  std::vector<int32_t> ids(static_cast<size_t>(B * L));
  std::vector<uint8_t> pad(static_cast<size_t>(B * L));
  sequence_ids(task, B, mb.text, ids.data(), pad.data());
  int32_t* ids_dev = arena.ints(B * L);
  be_.upload(ids_dev, ids.data(), B * L * 4);
  uint8_t* pad_dev = arena.bytes(B * L);
  be_.upload(pad_dev, pad.data(), B * L);

  SeqInput in;
  in.task = task, in.B = B, in.ids = ids_dev;
  CondCache cond;
  const bool tokenizer_cond = task == Task::Reca && mb.condition == Condition::Tokenizer;
  // Gradient reaches und/conn only through understanding embeddings.
  const bool cond_trainable = uses_und && !tokenizer_cond && (tr.und || tr.conn);
  if (tokenizer_cond) {
    in.cond = tokenizer_condition(img, B, arena);
  } else if (uses_und) {
    in.cond = condition_forward(img, B, grads ? &cond : nullptr, arena);
  }
  // Image target block and loss targets per head row (-1 = none).
  std::vector<int32_t> targets;
  int32_t* img_ids_dev = nullptr;
  float *zt = nullptr, *v = nullptr;
  if (discrete_target) {
    int32_t* codes_dev = arena.ints(B * N);
    vq_encode(img, B, codes_dev, arena);
    std::vector<int32_t> codes(static_cast<size_t>(B * N));
    be_.download(codes.data(), codes_dev, B * N * 4);
    std::vector<int32_t> img_ids(static_cast<size_t>(B * Lt));
    image_target_ids(codes.data(), c.mode == Mode::Mask ? mb.masked : nullptr, B,
                     img_ids.data());
    targets.assign(static_cast<size_t>(B * N), -1);
    for (int64_t i = 0; i < B * N; ++i)  // ar: row j predicts x_{j+1}; mask: masked rows only
      targets[i] = c.mode == Mode::Ar || mb.masked[i] ? codes[i] : -1;
    img_ids_dev = arena.ints(B * Lt);
    be_.upload(img_ids_dev, img_ids.data(), B * Lt * 4);
    in.img_ids = img_ids_dev;
  }
  if (flow_target) {
    float* x0 = arena.floats(B * N * D);
    be_.patchify_forward(x0, img, B, S, c.gen_patch);
    float* eps = arena.floats(B * N * D);
    be_.upload(eps, mb.noise, B * N * D * 4);
    float* t_dev = arena.floats(B);
    be_.upload(t_dev, mb.t, B * 4);
    zt = arena.floats(B * N * D), v = arena.floats(B * N * D);
    be_.flow_noise(zt, v, x0, eps, t_dev, B, N * D);
    in.zt = zt, in.t = t_dev;
  }
  if (task == Task::I2t) {
    // Caption targets: row j predicts y_{j+1}; y_{m+1} = EOS; no loss after it.
    targets.assign(static_cast<size_t>(B * Lt), -1);
    for (int64_t b = 0; b < B; ++b) {
      const int32_t* text = mb.text + b * T;
      int64_t m = 0;
      while (m < T && text[m] != tok::kPad) ++m;
      for (int64_t j = 0; j < m; ++j) targets[b * Lt + j] = text[j];
      targets[b * Lt + m] = tok::kEos;
    }
  }
  SeqSaved seq;
  float* x = embed_sequence(in, &seq, arena);
  const char* pos_target = task == Task::I2t ? "gen.pos_txt" : "gen.pos_img";

  // ---- transformer ----
  const StackShape s = generator_shape(task, B, pad_dev);
  const auto w = block_views(layout_, "gen.blocks", c.depth, params_);
  std::vector<BlockCache> caches(grads ? static_cast<size_t>(c.depth) : 0);
  const float* hidden = stack_forward(be_, arena, w, c.depth, s, x, grads ? caches.data() : nullptr);

  // ---- heads on the rows that predict ----
  const int64_t row0 = task == Task::I2t ? Lc : (c.mode == Mode::Ar ? Lc : Lc + 1);
  const int64_t rows_per = task == Task::I2t ? Lt : N;
  const int64_t R = B * rows_per;
  const bool text_head = task == Task::I2t;
  const int64_t V = text_head ? tok::kVocab : c.img_out_dim();
  const std::string head = text_head ? "gen.head_txt" : "gen.head_img";
  HeadSaved hs;
  float* out = head_forward(hidden, B, L, row0, rows_per, text_head, &hs, arena);

  // ---- loss (and its gradient at the head output) ----
  PassResult res;
  float* dout = grads ? arena.zeros(R * V) : nullptr;
  if (flow_target) {
    res.count = R * V;
    res.loss = be_.mse_forward(out, v, R * V);
    if (grads) be_.mse_backward(dout, out, v, weight, R * V);
  } else {
    int64_t count = 0;
    for (int32_t t : targets) count += t >= 0;
    RECA_CHECK(count > 0, InvalidArgument,
               "the micro-batch has no prediction targets (mask mode needs at least one masked "
               "position)");
    int32_t* tgt_dev = arena.ints(R);
    be_.upload(tgt_dev, targets.data(), R * 4);
    const float scale = weight / static_cast<float>(count);
    const double sum = grads ? be_.cross_entropy_forward_backward(nullptr, dout, out, tgt_dev,
                                                                  scale, R, V)
                             : be_.cross_entropy_forward(nullptr, out, tgt_dev, R, V);
    res.count = count;
    res.loss = sum / static_cast<double>(count);
  }
  if (!grads) return res;

  // ---- backward ----
  float* dhn = arena.zeros(R * W);
  be_.linear_backward(dhn, g(grads, head + ".weight", tr), g(grads, head + ".bias", tr), dout,
                      hs.normed, p(head + ".weight"), R, W, V);
  float* dhrows = arena.zeros(R * W);
  be_.layernorm_backward(dhrows, g(grads, "gen.ln_f.weight", tr), g(grads, "gen.ln_f.bias", tr),
                         dhn, hs.rows, p("gen.ln_f.weight"), hs.mean, hs.rstd, R, W);
  float* dhidden = arena.zeros(B * L * W);
  be_.rows_to_seq(dhidden, dhrows, B, L, row0, rows_per, W, false);
  const bool need_dx = tr.gen || cond_trainable;
  if (!need_dx) return res;
  const auto gw = block_views(layout_, "gen.blocks", c.depth, tr.gen ? grads : nullptr);
  const float* dx = stack_backward(be_, arena, w, gw, c.depth, s, caches.data(), dhidden);

  if (tr.gen) {
    be_.pos_add_backward(g(grads, "gen.pos_cond", tr), dx, B, L, Lc, W);
    be_.pos_add_backward(g(grads, pos_target, tr), dx + Lc * W, B, L, Lt, W);
    be_.embedding_backward(g(grads, "gen.tok_embed", tr), dx, ids_dev, B * L, W);
    if (discrete_target) {
      float* demb = arena.floats(B * Lt * W);
      be_.rows_from_seq(demb, dx, B, L, Lc, Lt, W, false);
      be_.embedding_backward(g(grads, "gen.img_embed", tr), demb, img_ids_dev, B * Lt, W);
    }
    if (flow_target) {
      float* dbody = arena.floats(B * N * W);
      be_.rows_from_seq(dbody, dx, B, L, Lc + 1, N, W, false);
      be_.linear_backward(nullptr, g(grads, "gen.img_in.weight", tr),
                          g(grads, "gen.img_in.bias", tr), dbody, zt, p("gen.img_in.weight"),
                          B * N, D, W);
      float* dtau_rows = arena.floats(B * Lt * W);
      be_.rows_from_seq(dtau_rows, dx, B, L, Lc, Lt, W, false);
      float* dtau = arena.zeros(B * W);
      be_.embedding_backward(dtau, dtau_rows, seq.sample_ids, B * Lt, W);
      float* dtau_g = arena.zeros(B * W);
      be_.linear_backward(dtau_g, g(grads, "gen.t_embed.fc2.weight", tr),
                          g(grads, "gen.t_embed.fc2.bias", tr), dtau, seq.tau_g,
                          p("gen.t_embed.fc2.weight"), B, W, W);
      float* dtau_h = arena.zeros(B * W);
      be_.gelu_backward(dtau_h, seq.tau_h, dtau_g, B, W);
      be_.linear_backward(nullptr, g(grads, "gen.t_embed.fc1.weight", tr),
                          g(grads, "gen.t_embed.fc1.bias", tr), dtau_h, seq.tau_in,
                          p("gen.t_embed.fc1.weight"), B, 256, W);
    }
  }
  if (cond_trainable) {
    float* dc = arena.floats(B * Nu * W);
    be_.rows_from_seq(dc, dx, B, L, 2, Nu, W, false);
    if (task == Task::Reca && cond_grad_scale != 1.0f) be_.scale(dc, cond_grad_scale, B * Nu * W);
    condition_backward(cond, dc, B, grads, tr, arena);
  }
  return res;
}

// ---------------------------------------------------------------------------
// Condition alignment (SPEC §5): the two condition blocks, read alike
// ---------------------------------------------------------------------------
PassResult RecaModel::align_pass(const AlignBatch& ab, float* grads, const Trainable& tr,
                                 float weight, Arena& arena) {
  const ModelConfig& c = cfg_;
  const int64_t B = ab.B, S = c.image_size, W = c.width, Nu = c.num_und_tokens();
  const int64_t T = c.max_text_len, depth = c.depth;
  RECA_CHECK(B >= 2, InvalidArgument,
             "the alignment loss contrasts each image with the others of its micro-batch: "
             "use micro-batches of at least 2 images");
  uint8_t* bytes = arena.bytes(B * S * S * 3);
  be_.upload(bytes, ab.images, B * S * S * 3);
  float* img = arena.floats(B * S * S * 3);
  be_.image_from_bytes(img, bytes, B * S * S * 3);
  const bool cond_trainable = grads && (tr.und || tr.conn);
  CondCache cond;
  const float* cvec = condition_forward(img, B, cond_trainable ? &cond : nullptr, arena);

  // The condition block of each side: its ids, pad flags, embeddings, states.
  struct Side {
    Task task;
    int64_t L = 0;
    std::vector<uint8_t> pad;
    int32_t* ids_dev = nullptr;
    uint8_t* pad_dev = nullptr;
    StackShape shape;
    std::vector<BlockCache> caches;
    std::vector<std::vector<double>> pooled;  // per block [B, W]
    std::vector<int64_t> count;
  };
  Side sides[2];
  sides[0].task = Task::Reca;
  sides[1].task = Task::T2i;
  const auto w = block_views(layout_, "gen.blocks", depth, params_);
  for (int k = 0; k < 2; ++k) {
    Side& sd = sides[k];
    const int64_t L = c.cond_len(sd.task), Lfull = c.seq_len(sd.task);
    sd.L = L;
    std::vector<int32_t> ids(static_cast<size_t>(B * Lfull));
    std::vector<uint8_t> pad(static_cast<size_t>(B * Lfull));
    sequence_ids(sd.task, B, k == 0 ? ab.templates : ab.captions, ids.data(), pad.data());
    std::vector<int32_t> cond_ids(static_cast<size_t>(B * L));
    sd.pad.resize(static_cast<size_t>(B * L));
    for (int64_t b = 0; b < B; ++b)  // the condition block only: the first L slots
      for (int64_t i = 0; i < L; ++i) {
        cond_ids[b * L + i] = ids[b * Lfull + i];
        sd.pad[b * L + i] = pad[b * Lfull + i];
      }
    sd.ids_dev = arena.ints(B * L);
    be_.upload(sd.ids_dev, cond_ids.data(), B * L * 4);
    sd.pad_dev = arena.bytes(B * L);
    be_.upload(sd.pad_dev, sd.pad.data(), B * L);
    float* x = arena.zeros(B * L * W);
    be_.embedding_forward(x, p("gen.tok_embed"), sd.ids_dev, B * L, W);
    if (sd.task == Task::Reca) be_.rows_to_seq(x, cvec, B, L, 2, Nu, W, false);
    be_.pos_add_forward(x, p("gen.pos_cond"), B, L, L, W);
    sd.shape = generator_shape(sd.task, B, sd.pad_dev);
    sd.shape.L = L;  // no target block: every query is a condition query
    sd.caches.resize(static_cast<size_t>(depth));
    stack_forward(be_, arena, w, depth, sd.shape, x, sd.caches.data());
    std::vector<float> states(static_cast<size_t>(B * L * W));
    sd.pooled.assign(static_cast<size_t>(depth), std::vector<double>(static_cast<size_t>(B * W)));
    sd.count.resize(static_cast<size_t>(B));
    for (int64_t l = 0; l < depth; ++l) {
      be_.download(states.data(), sd.caches[l].out, B * L * W * 4);
      pool_visible(states.data(), sd.pad.data(), B, L, W, sd.pooled[l].data(), sd.count.data());
    }
  }
  std::vector<uint8_t> same(static_cast<size_t>(B * B));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j)
      same[i * B + j] = std::equal(ab.captions + i * T, ab.captions + (i + 1) * T, ab.captions + j * T);
  PassResult res;
  res.count = B;
  std::vector<std::vector<double>> dpooled[2];
  for (int k = 0; k < 2; ++k)
    dpooled[k].assign(static_cast<size_t>(depth), std::vector<double>(static_cast<size_t>(B * W)));
  double sum = 0;
  for (int64_t l = 0; l < depth; ++l)
    sum += info_nce(sides[0].pooled[l].data(), sides[1].pooled[l].data(), same.data(), B, W,
                    dpooled[0][l].data(), dpooled[1][l].data());
  res.loss = sum / static_cast<double>(depth);
  if (!grads || (!tr.gen && !cond_trainable)) return res;

  // Backward: the loss's gradient at every block's output, then down each side.
  const float scale = weight / static_cast<float>(depth);
  const auto gw = block_views(layout_, "gen.blocks", depth, tr.gen ? grads : nullptr);
  for (int k = 0; k < 2; ++k) {
    Side& sd = sides[k];
    const int64_t L = sd.L;
    std::vector<float> host(static_cast<size_t>(B * L * W));
    std::vector<float*> d_out(static_cast<size_t>(depth));
    for (int64_t l = 0; l < depth; ++l) {
      unpool_visible(dpooled[k][l].data(), sd.pad.data(), sd.count.data(), B, L, W, scale,
                     host.data());
      d_out[l] = arena.floats(B * L * W);
      be_.upload(d_out[l], host.data(), B * L * W * 4);
    }
    float* dy = d_out[depth - 1];
    d_out[depth - 1] = nullptr;
    std::vector<const float*> extra(d_out.begin(), d_out.end());
    const float* dx = stack_backward(be_, arena, w, gw, depth, sd.shape, sd.caches.data(), dy,
                                     extra.data());
    if (tr.gen) {
      be_.pos_add_backward(g(grads, "gen.pos_cond", tr), dx, B, L, L, W);
      be_.embedding_backward(g(grads, "gen.tok_embed", tr), dx, sd.ids_dev, B * L, W);
    }
    if (sd.task == Task::Reca && cond_trainable) {
      float* dc = arena.floats(B * Nu * W);
      be_.rows_from_seq(dc, dx, B, L, 2, Nu, W, false);
      condition_backward(cond, dc, B, grads, tr, arena);
    }
  }
  return res;
}

// ---------------------------------------------------------------------------
// Inference pieces
// ---------------------------------------------------------------------------
const float* RecaModel::understanding(const uint8_t* images, int64_t B, Arena& arena) {
  const int64_t S = cfg_.image_size;
  uint8_t* bytes = arena.bytes(B * S * S * 3);
  be_.upload(bytes, images, B * S * S * 3);
  float* img = arena.floats(B * S * S * 3);
  be_.image_from_bytes(img, bytes, B * S * S * 3);
  return condition_forward(img, B, nullptr, arena);
}

void RecaModel::embed(const uint8_t* images, int64_t B, float* c_out, Arena& arena) {
  const float* c = understanding(images, B, arena);
  be_.download(c_out, c, B * cfg_.num_und_tokens() * cfg_.width * 4);
}

void RecaModel::tokenize(const uint8_t* images, int64_t B, int32_t* codes, Arena& arena) {
  RECA_CHECK(cfg_.discrete(), InvalidArgument,
             "tokenize needs a discrete mode (ar or mask); this model is '%s'",
             mode_name(cfg_.mode));
  const int64_t S = cfg_.image_size;
  uint8_t* bytes = arena.bytes(B * S * S * 3);
  be_.upload(bytes, images, B * S * S * 3);
  float* img = arena.floats(B * S * S * 3);
  be_.image_from_bytes(img, bytes, B * S * S * 3);
  int32_t* codes_dev = arena.ints(B * cfg_.num_image_tokens());
  vq_encode(img, B, codes_dev, arena);
  be_.download(codes, codes_dev, B * cfg_.num_image_tokens() * 4);
}

void RecaModel::decode(const int32_t* codes, int64_t B, float* img_out, Arena& arena) {
  RECA_CHECK(cfg_.discrete(), InvalidArgument,
             "decode needs a discrete mode (ar or mask); this model is '%s'", mode_name(cfg_.mode));
  const int64_t S = cfg_.image_size, n = B * cfg_.num_image_tokens();
  int32_t* codes_dev = arena.ints(n);
  be_.upload(codes_dev, codes, n * 4);
  be_.download(img_out, decode_device(codes_dev, B, arena), B * S * S * 3 * 4);
}

float* RecaModel::decode_device(const int32_t* codes_dev, int64_t B, Arena& arena) {
  RECA_CHECK(cfg_.discrete(), InvalidArgument,
             "decode needs a discrete mode (ar or mask); this model is '%s'", mode_name(cfg_.mode));
  const int64_t N = cfg_.num_image_tokens(), C = cfg_.code_dim, D = cfg_.patch_dim();
  const int64_t S = cfg_.image_size, n = B * N;
  float* zq = arena.floats(n * C);
  be_.vq_gather(zq, codes_dev, p("vq.codebook"), n, C);
  float* xhat = arena.floats(n * D);
  be_.linear_forward(xhat, zq, p("vq.dec.weight"), p("vq.dec.bias"), n, C, D);
  float* img = arena.floats(B * S * S * 3);
  be_.unpatchify_forward(img, xhat, B, S, cfg_.gen_patch);
  return img;
}

}  // namespace reca::model
