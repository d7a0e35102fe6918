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

// One micro-batch of one task, host memory. All random draws are inputs.
struct MicroBatch {
  Task task = Task::Reca;
  int64_t B = 0;
  const uint8_t* images = nullptr;  // [B, S, S, 3]
  const int32_t* text = nullptr;    // [B, T]: template / caption (input or target), PAD-filled
  const uint8_t* masked = nullptr;  // [B, N]  mask mode image tasks (1 = masked)
  const float* t = nullptr;         // [B]     flow image tasks
  const float* noise = nullptr;     // [B, N, 3P²] flow image tasks
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
  // Tokenizer loss (SPEC §3): mse + codebook + 0.25·commit; grads into vq.* only.
  PassResult tokenizer_pass(const uint8_t* images, int64_t B, float* grads, float weight,
                            Arena& arena, int32_t* codes_out = nullptr);

  // Inference pieces (host in / host out).
  void embed(const uint8_t* images, int64_t B, float* c_out, Arena& arena);        // [B, N_u, W]
  void tokenize(const uint8_t* images, int64_t B, int32_t* codes, Arena& arena);   // [B, N]
  void decode(const int32_t* codes, int64_t B, float* img_out, Arena& arena);      // [B, S, S, 3]

 private:
  float* p(const std::string& name) const { return params_ + layout_.at(name).offset; }
  float* g(float* grads, const std::string& name, const Trainable& tr) const;

  // Understanding features + connector over float images [B,S,S,3] (device).
  struct CondCache;
  const float* condition_forward(const float* img, int64_t B, CondCache* cache, Arena& arena);
  void condition_backward(const CondCache& cache, const float* dc, int64_t B, float* grads,
                          const Trainable& tr, Arena& arena);
  // z = vq.enc(patchify(img)) and nearest codes (device); codes also copied to host.
  const float* vq_encode(const float* img, int64_t B, int32_t* codes_dev, Arena& arena,
                         float** patches_out = nullptr);

  ModelConfig cfg_;
  Backend& be_;
  ParamLayout layout_;
  float* params_ = nullptr;
};

}  // namespace reca::model
