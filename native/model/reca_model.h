// "SPEC §n" in native/ and lib/ comments means section n of docs/SPEC.md.
// The RecA-Mini graph (SPEC §3–§5): understanding encoder, connector, VQ
// tokenizer, generator sequences for every task and mode, their losses and the
// backward pass. Holds the parameters; the trainer owns grads and optimizer
// state (same flat layout).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/arena.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/params.h"
#include "model/transformer.h"

namespace reca::model {

// Which parameter groups get gradients.
struct Trainable {
  bool und = false, conn = false, vq = false, gen = true;
  bool group(const std::string& g) const {
    return g == "und" ? und : g == "conn" ? conn : g == "vq" ? vq : gen;
  }
};

// What fills the understanding slots of the reca task (SPEC §5): the
// understanding embeddings c (RecA), or the generator's own embeddings of the
// image's tokens pooled to the understanding grid (the tokenizer-condition
// ablation: a condition that carries the pixels but not the understanding).
enum class Condition { Understanding, Tokenizer };

// One micro-batch of one task, host memory. All random draws are inputs.
struct MicroBatch {
  Task task = Task::Reca;
  int64_t B = 0;
  const uint8_t* images = nullptr;  // [B, S, S, 3]
  const int32_t* text = nullptr;    // [B, T]: template / caption (input or target), PAD-filled
  const uint8_t* masked = nullptr;  // [B, N]  mask mode image tasks (1 = masked)
  const float* t = nullptr;         // [B]     flow image tasks
  const float* noise = nullptr;     // [B, N, 3P²] flow image tasks
  Condition condition = Condition::Understanding;  // reca task only
};

// One micro-batch of the condition-alignment loss (SPEC §5).
struct AlignBatch {
  int64_t B = 0;
  const uint8_t* images = nullptr;    // [B, S, S, 3]
  const int32_t* templates = nullptr; // [B, T]: each image's reca template text
  const int32_t* captions = nullptr;  // [B, T]: each image's caption
};

struct PassResult {
  double loss = 0;     // the task's loss (a mean, SPEC §5)
  int64_t count = 0;   // predictions it averages over
};

class RecaModel {
 public:
  RecaModel(const ModelConfig& cfg, Backend& be);
  ~RecaModel();
  RecaModel(const RecaModel&) = delete;
  RecaModel& operator=(const RecaModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() { return be_; }
  float* params() { return params_; }
  const float* params() const { return params_; }
  int64_t param_floats() const { return layout_.total(); }
  int64_t parameter_count() const;

  void init(uint64_t seed);
  // Copies a whole flat parameter buffer from / to host memory.
  void set_params(const float* host);
  void get_params(float* host) const;

  // Loss of one generator micro-batch; when grads is non-null, its gradient
  // times `weight` accumulates into grads (the flat buffer of the trainer) for
  // the trainable groups. cond_grad_scale multiplies the gradient flowing into
  // the understanding embeddings c on the reca task (SPEC §5).
  PassResult generator_pass(const MicroBatch& mb, float* grads, const Trainable& tr,
                            float weight, float cond_grad_scale, Arena& arena);
  // Condition alignment (SPEC §5): the images' `reca` condition blocks (with
  // their template texts) and their captions' `t2i` condition blocks run
  // through the generator alone; at every block's output the states are
  // pooled over the visible slots and paired by a symmetric InfoNCE, the loss
  // being the mean over blocks. With grads non-null its gradient times
  // `weight` accumulates into the trainable groups (gen; conn/und through c,
  // unscaled).
  PassResult align_pass(const AlignBatch& ab, float* grads, const Trainable& tr, float weight,
                        Arena& arena);
  // Tokenizer loss (SPEC §3): mse + codebook + 0.25·commit; grads into vq.* only.
  // codes_out [B·N] and z_out [B·N, C] (host, optional) receive the nearest
  // codes and the encoder outputs (what code restarts re-seed from).
  PassResult tokenizer_pass(const uint8_t* images, int64_t B, float* grads, float weight,
                            Arena& arena, int32_t* codes_out = nullptr, float* z_out = nullptr);

  // Inference pieces (host in / host out).
  void embed(const uint8_t* images, int64_t B, float* c_out, Arena& arena);        // [B, N_u, W]
  // The understanding embeddings c of byte images [B, S, S, 3] (host), on the
  // device (arena memory): [B, N_u, W].
  const float* understanding(const uint8_t* images, int64_t B, Arena& arena);
  void tokenize(const uint8_t* images, int64_t B, int32_t* codes, Arena& arena);   // [B, N]
  void decode(const int32_t* codes, int64_t B, float* img_out, Arena& arena);      // [B, S, S, 3]
  // decode on the device: codes [B, N] (device) → images [B, S, S, 3] (arena), unclamped.
  float* decode_device(const int32_t* codes_dev, int64_t B, Arena& arena);

  // ---- Generator sequence pieces (SPEC §4), shared by training and sampling ----
  // Token ids of whole sequences of `task` on the host, ids [B, L] and PAD flags
  // pad [B, L]. text [B, T]: the template (reca), caption (t2i) or caption target
  // (i2t), PAD-filled; null = all PAD. An id of -1 marks a row filled by
  // something other than gen.tok_embed (understanding embeddings, image tokens).
  void sequence_ids(Task task, int64_t B, const int32_t* text, int32_t* ids,
                    uint8_t* pad) const;
  // gen.img_embed ids of a discrete image target block, host [B, Lt]: ar: GEN,
  // x_1..x_{N-1} from codes [B, N]; mask: GEN, x̃_1..x̃_N where masked[b, j] = 1
  // (masked may be null) or codes[b, j] == K give the MASK id K. GEN row: -1.
  void image_target_ids(const int32_t* codes, const uint8_t* masked, int64_t B,
                        int32_t* img_ids) const;
  // Everything one batch of generator sequences is built from (device memory).
  struct SeqInput {
    Task task = Task::Reca;
    int64_t B = 0;
    const int32_t* ids = nullptr;      // [B, L] from sequence_ids
    const float* cond = nullptr;       // [B, N_u, W] understanding embeddings (reca, i2t)
    const int32_t* img_ids = nullptr;  // [B, Lt] discrete image target, from image_target_ids
    const float* zt = nullptr;         // [B, N, 3P²] flow image target latents
    const float* t = nullptr;          // [B] flow times
  };
  // What the backward of embed_sequence needs (flow: the τ(t) MLP).
  struct SeqSaved {
    float *tau_in = nullptr, *tau_h = nullptr, *tau_g = nullptr;
    int32_t* sample_ids = nullptr;  // [B, Lt]: row → sample
  };
  // Input embeddings x [B, L, W] of the sequences (arena memory).
  float* embed_sequence(const SeqInput& in, SeqSaved* saved, Arena& arena);
  // Geometry and visibility of the generator stack over [B, L] sequences of `task`.
  StackShape generator_shape(Task task, int64_t B, const uint8_t* pad_dev) const;
  // Activations the backward of head_forward needs.
  struct HeadSaved {
    float *rows = nullptr, *normed = nullptr, *mean = nullptr, *rstd = nullptr;
  };
  // gen.ln_f then gen.head_txt (text_head) or gen.head_img over rows
  // [row0, row0 + n) of every sample of hidden [B, Ls, W]: out [B·n, V] (arena).
  // prepared: that head's weight from prepare_head, or null.
  float* head_forward(const float* hidden, int64_t B, int64_t Ls, int64_t row0, int64_t n,
                      bool text_head, HeadSaved* saved, Arena& arena,
                      const PreparedLinear* prepared = nullptr);
  // The head's weight prepared for many head_forward calls (Backend::prepare_linear).
  std::unique_ptr<PreparedLinear> prepare_head(bool text_head);

 private:
  float* p(const std::string& name) const { return params_ + layout_.at(name).offset; }
  float* g(float* grads, const std::string& name, const Trainable& tr) const;

  // Understanding features + connector over float images [B,S,S,3] (device).
  struct CondCache;
  const float* condition_forward(const float* img, int64_t B, CondCache* cache, Arena& arena);
  void condition_backward(const CondCache& cache, const float* dc, int64_t B, float* grads,
                          const Trainable& tr, Arena& arena);
  // The tokenizer condition of float images [B,S,S,3] (device): [B, N_u, W]
  // (arena), a constant of the step (SPEC §5).
  const float* tokenizer_condition(const float* img, int64_t B, Arena& arena);
  // z = vq.enc(patchify(img)) and nearest codes (device); codes also copied to host.
  const float* vq_encode(const float* img, int64_t B, int32_t* codes_dev, Arena& arena,
                         float** patches_out = nullptr);

  // params_ before layout_: the buffer is allocated (or refused with its true
  // size) before the table is built; see the constructor.
  ModelConfig cfg_;
  Backend& be_;
  float* params_ = nullptr;
  ParamLayout layout_;
};

}  // namespace reca::model
