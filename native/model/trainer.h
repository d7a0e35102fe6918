// The RecA trainer (SPEC §5, §6): micro-batches per task, every random draw from
// Philox, gradient accumulation, global-norm clipping, fused AdamW with the
// decay mask, LR schedule and optional EMA. Grads, moments and EMA are flat
// buffers with the model's parameter layout.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model/communicator.h"
#include "model/reca_model.h"
#include "model/shard_reduce.h"

namespace reca::model {

enum class Schedule { Constant, Cosine };
// What a step whose loss, gradient or update is not finite does: raise
// E_NUMERIC, or count the step as done without an update (a skipped step).
enum class NonFinite { Error, Skip };
// The reca task's text: the `template_text` on every sample, or a paraphrase
// from the template bank (model/templates.h) drawn per sample.
enum class Templates { Fixed, Paraphrases };

struct TrainerOptions {
  // λ per task (SPEC §5); a task with λ = 0 is skipped. The tokenizer stage is
  // its own flag: it trains vq.* with the tokenizer loss only.
  double weight_reca = 1.0, weight_t2i = 0.0, weight_i2t = 0.0;
  bool tokenizer = false;
  int64_t micro_batch = 0;  // 0: the whole shard in one micro-batch per task
  // The global batch is cut into this many equal shards by sample index; each
  // shard's gradient is computed alone and the shards are summed in order
  // (model/shard_reduce.h), so N ranks with N dividing it give one process's
  // bytes. 0: one shard per rank (1 in one process).
  int64_t shards = 0;
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.02;
  int64_t warmup = 0, total_steps = 0;
  Schedule schedule = Schedule::Constant;
  double min_lr = 0.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  double ema = 0.0;            // EMA decay; 0: no EMA
  double cond_dropout = 0.1;
  double cond_grad_scale = 0.1;
  // λ of the condition-alignment loss (SPEC §5; 0 = off): on every
  // micro-batch, the images' reca condition blocks against their captions'
  // t2i ones. Needs captions.
  double align_weight = 0.0;
  // Tokenizer stage: every this many steps, codes no position of the step's
  // batch chose are re-seeded from random encoder outputs of that batch, and
  // their Adam moments cleared (dead-code restart, SPEC §3). 0 = off. It reads
  // only the current batch, so a resumed run restarts exactly as a straight one.
  int64_t code_restart_every = 0;
  NonFinite non_finite = NonFinite::Error;
  // Products of the Linear layers during a step: fp32, or bf16 operands with fp32
  // accumulation (CPU with AVX512_BF16). Parameters, gradients, optimizer state
  // and every other op stay fp32.
  MatmulPrecision matmul_precision = MatmulPrecision::Fp32;
  Trainable trainable;         // default: the generator only (und, conn, vq frozen)
  uint64_t seed = 0;
  std::string template_text = "describe the image";
  Templates templates = Templates::Fixed;
  // What the reca task's understanding slots hold (reca_model.h); the
  // tokenizer condition is the ablation that carries pixels, not understanding.
  Condition condition = Condition::Understanding;
  void validate() const;
};

// One step's data, host memory.
struct StepBatch {
  int64_t B = 0;
  const uint8_t* images = nullptr;    // [B, S, S, 3]
  const int32_t* captions = nullptr;  // [B, T] PAD-filled bytes; needed by t2i and i2t
  // λ of reca, t2i and i2t for this step only, in place of the options' (a
  // recipe that alternates tasks between steps); nullptr: the options'.
  const double* task_weights = nullptr;
};

// Every random draw of one task's micro-batches over the whole batch (what
// `debug-step` dumps and what a replay can supply).
struct TaskDraws {
  Task task = Task::Reca;
  std::vector<uint8_t> dropped;   // [B]
  std::vector<int32_t> text;      // [B, T] the text actually used (after dropout)
  std::vector<uint8_t> masked;    // [B, N] mask mode image tasks
  std::vector<float> t;           // [B] flow image tasks
  std::vector<float> noise;       // [B, N, 3P²] flow image tasks
};

struct StepStats {
  int64_t step = 0;
  double loss = 0;                       // Σ λ·L over micro-batches
  double loss_reca = NAN, loss_t2i = NAN, loss_i2t = NAN, loss_tokenizer = NAN, loss_align = NAN;
  double grad_norm = 0, clip_scale = 1, lr = 0;
  int64_t codes_used = -1;      // tokenizer steps: distinct codes the batch chose
  int64_t codes_restarted = 0;  // tokenizer steps: codes re-seeded after this update
  int64_t images = 0;  // of the global batch (every rank)
  double seconds = 0;
  int64_t ranks = 1;
  double comm_seconds = 0;  // in the ordered gradient sum (collectives and adds)
  int64_t comm_bytes = 0;   // this rank sent for it
  bool skipped = false;       // non_finite = Skip: this step made no update
  int64_t skipped_steps = 0;  // steps skipped so far by this trainer
  std::string skip_reason;    // why, when skipped
};

class Trainer {
 public:
  // `comm` (optional): the ranks of a data-parallel run; each step then takes
  // this rank's part of the global batch (local_samples()).
  Trainer(RecaModel& model, const TrainerOptions& opts,
          std::shared_ptr<Communicator> comm = nullptr);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One optimizer step. `replay` (optional, one entry per task in order reca,
  // t2i, i2t) supplies the draws instead of Philox; `used` (optional) receives
  // the draws that were used. When the loss, the gradient or the update is not
  // finite, parameters and optimizer state stay untouched and, as
  // options().non_finite says, E_NUMERIC is thrown or the step is counted as
  // skipped (the step count advances, so draws and schedules stay aligned).
  StepStats step(const StepBatch& batch, const std::vector<TaskDraws>* replay = nullptr,
                 std::vector<TaskDraws>* used = nullptr);

  const TrainerOptions& options() const { return opts_; }
  int64_t shards() const { return shards_; }  // options().shards, 0 resolved to ranks()
  int rank() const { return comm_ ? comm_->rank() : 0; }
  int ranks() const { return comm_ ? comm_->size() : 1; }
  Communicator* communicator() const { return comm_.get(); }  // null in one process
  // The global sample index of each of this rank's `local_batch` samples.
  std::vector<int64_t> local_samples(int64_t local_batch) const;
  int64_t steps_done() const { return step_; }
  void set_steps_done(int64_t s) {
    step_ = s;
    ranks_agree_ = false;  // a load changes the state: compare it again
  }
  double lr_at(int64_t t) const;  // t from 1
  // Flat buffers (model layout), device memory of the model's backend.
  float* grads() { return grads_; }
  float* exp_avg() { return m_; }
  float* exp_avg_sq() { return v_; }
  float* ema() { return ema_; }  // null without EMA
  const float* exp_avg() const { return m_; }
  const float* exp_avg_sq() const { return v_; }
  const float* ema() const { return ema_; }
  RecaModel& model() const { return model_; }
  bool trainable(const ParamInfo& p) const;
  int64_t activation_bytes() const { return arena_.peak(); }
  int64_t state_bytes() const;

 private:
  StepStats step_or_throw(const StepBatch& batch, const std::vector<TaskDraws>* replay,
                          std::vector<TaskDraws>* used);
  void draw(Task task, const StepBatch& batch, const std::vector<int64_t>& global, TaskDraws& d) const;
  // Several ranks: every rank must hold the same options, step count and
  // parameters before they sum gradients (E_INVALID_ARGUMENT otherwise).
  void check_ranks_agree();
  // Tokenizer steps on several ranks: every rank's codes and encoder outputs,
  // in global sample order (the code restart reads the whole global batch).
  void gather_codes(const std::vector<int64_t>& global, std::vector<int32_t>& codes,
                    std::vector<float>& z);
  void restart_codes(const std::vector<int32_t>& codes, const std::vector<float>& z, StepStats& st);
  // Whether the AdamW update `segs` would leave every parameter, moment and
  // EMA value finite; runs it on copies, chunk by chunk, changing nothing.
  bool update_is_finite(const std::vector<cpu::AdamWSegment<float>>& segs,
                        const cpu::AdamWConfig& ac);

  RecaModel& model_;
  TrainerOptions opts_;
  Arena arena_;
  float *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr, *ema_ = nullptr;
  std::shared_ptr<Communicator> comm_;
  int64_t shards_ = 1;
  bool ranks_agree_ = false;
  int64_t span_begin_ = 0, span_end_ = 0;  // trainable gradients, the part the shards sum
  std::unique_ptr<ShardReducer> reducer_;  // null with one shard in one process
  int64_t step_ = 0;
  int64_t skipped_steps_ = 0;
  std::vector<std::string> paraphrases_;  // templates = paraphrases: the bank for this T
};

// Encodes UTF-8 text as byte ids, cut at a UTF-8 boundary to max_len and
// PAD-filled; returns how many bytes were cut.
int64_t encode_text(const std::string& s, int64_t max_len, int32_t* out);

}  // namespace reca::model
