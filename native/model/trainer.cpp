#include "model/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/philox.h"
#include "model/checkpoint.h"
#include "model/schema.h"
#include "model/templates.h"

namespace reca::model {

int64_t encode_text(const std::string& s, int64_t max_len, int32_t* out) {
  int64_t end = static_cast<int64_t>(s.size());
  int64_t cut = 0;
  if (end > max_len) {
    end = max_len;
    // Back up over continuation bytes so a multi-byte character is never split.
    while (end > 0 && (static_cast<uint8_t>(s[static_cast<size_t>(end)]) & 0xC0) == 0x80) --end;
    cut = static_cast<int64_t>(s.size()) - end;
  }
  for (int64_t i = 0; i < max_len; ++i)
    out[i] = i < end ? static_cast<uint8_t>(s[static_cast<size_t>(i)]) : tok::kPad;
  return cut;
}

void TrainerOptions::validate() const {
  check_fields(trainer_schema(), *this, ErrorCode::InvalidArgument);
  RECA_CHECK(tokenizer || weight_reca + weight_t2i + weight_i2t + align_weight > 0, InvalidArgument,
             "no task has a positive weight: set weightReca, weightT2i, weightI2t or alignWeight");
  RECA_CHECK(!tokenizer || align_weight == 0, InvalidArgument,
             "the tokenizer stage has no condition to align: leave alignWeight at 0");
  RECA_CHECK(schedule != Schedule::Cosine || total_steps > warmup, InvalidArgument,
             "a cosine schedule needs totalSteps > warmup (got %lld and %lld)",
             static_cast<long long>(total_steps), static_cast<long long>(warmup));
}

Trainer::Trainer(RecaModel& model, const TrainerOptions& opts, std::shared_ptr<Communicator> comm)
    : model_(model), opts_(opts), arena_(model.backend()), comm_(std::move(comm)) {
  opts_.validate();
  if (opts_.templates == Templates::Paraphrases)
    paraphrases_ = template_paraphrases(model.config().max_text_len);
  const int64_t N = ranks();
  shards_ = opts_.shards == 0 ? N : opts_.shards;
  RECA_CHECK(shards_ % N == 0, InvalidArgument,
             "shards (%lld) must be a multiple of the rank count (%lld): each rank computes "
             "shards/ranks of them",
             static_cast<long long>(shards_), static_cast<long long>(N));
  if (opts_.condition == Condition::Tokenizer) {
    const ModelConfig& c = model.config();
    RECA_CHECK(c.grid() % c.und_grid() == 0, InvalidArgument,
               "condition 'tokenizer' pools the %lldx%lld token grid onto the %lldx%lld "
               "understanding grid; this model's grids do not divide (use condition "
               "'understanding')",
               static_cast<long long>(c.grid()), static_cast<long long>(c.grid()),
               static_cast<long long>(c.und_grid()), static_cast<long long>(c.und_grid()));
  }
  if (opts_.tokenizer) {
    RECA_CHECK(model.config().discrete(), InvalidArgument,
               "the tokenizer stage needs a discrete mode (ar or mask); this model is '%s'",
               mode_name(model.config().mode));
    opts_.trainable = Trainable{false, false, true, false};
  }
  Backend& be = model.backend();
  const std::string no_precision = be.matmul_precision_unavailable(opts_.matmul_precision);
  RECA_CHECK(no_precision.empty(), Device, "matmulPrecision 'bf16' cannot run here: %s",
             no_precision.c_str());
  const int64_t bytes = model.layout().total() * 4;
  grads_ = static_cast<float*>(be.alloc(bytes));
  m_ = static_cast<float*>(be.alloc(bytes));
  v_ = static_cast<float*>(be.alloc(bytes));
  be.zero(grads_, bytes);
  be.zero(m_, bytes);
  be.zero(v_, bytes);
  if (opts_.ema > 0) {
    ema_ = static_cast<float*>(be.alloc(bytes));
    be.copy(ema_, model.params(), bytes);  // the EMA starts from the weights before step 1
  }
  // Only the span from the first to the last trainable tensor is summed (the
  // groups lie in order und, conn, vq, gen): frozen gradients are never read.
  for (const ParamInfo& p : model.layout().params()) {
    if (!trainable(p)) continue;
    if (span_end_ == 0) span_begin_ = p.offset;
    span_end_ = p.offset + p.numel;
  }
  if (shards_ > 1 && span_end_ > span_begin_)
    reducer_ = std::make_unique<ShardReducer>(be, comm_, span_end_ - span_begin_);
}

Trainer::~Trainer() {
  Backend& be = model_.backend();
  be.release(grads_);
  be.release(m_);
  be.release(v_);
  if (ema_) be.release(ema_);
}

int64_t Trainer::state_bytes() const {
  return model_.layout().total() * 4 * (ema_ ? 4 : 3) + (reducer_ ? reducer_->buffer_bytes() : 0);
}

std::vector<int64_t> Trainer::local_samples(int64_t local_batch) const {
  const int64_t N = ranks(), k = shards_ / N;
  RECA_CHECK(local_batch >= 1 && local_batch % k == 0, InvalidArgument,
             "a batch of %lld images per rank does not split into %lld equal shards: use a "
             "global batch that is a multiple of shards (%lld)",
             static_cast<long long>(local_batch), static_cast<long long>(k),
             static_cast<long long>(shards_));
  const int64_t per = local_batch / k;
  std::vector<int64_t> g(static_cast<size_t>(local_batch));
  // Local shard j is global shard j·N + rank (model/shard_reduce.h).
  for (int64_t i = 0; i < local_batch; ++i) g[i] = ((i / per) * N + rank()) * per + i % per;
  return g;
}

bool Trainer::trainable(const ParamInfo& p) const { return opts_.trainable.group(p.group()); }

double Trainer::lr_at(int64_t t) const {
  const TrainerOptions& o = opts_;
  if (o.warmup > 0 && t <= o.warmup) return o.lr * static_cast<double>(t) / o.warmup;
  if (o.schedule == Schedule::Cosine && o.total_steps > o.warmup) {
    if (t >= o.total_steps) return o.min_lr;
    const double prog = static_cast<double>(t - o.warmup) / static_cast<double>(o.total_steps - o.warmup);
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * prog));
  }
  return o.lr;
}

namespace {
// Philox stream of one purpose of one task in one step (and one sample, for
// per-sample permutations): independent of the batch split and thread count.
uint64_t stream_of(int64_t step, Task task, int purpose, int64_t sample = 0) {
  return ((static_cast<uint64_t>(step) * 8 + static_cast<uint64_t>(task)) * 8 + purpose) << 32 |
         static_cast<uint64_t>(sample);
}
// The alignment loss's template draws: task slot 3 (after reca 0, t2i 1, i2t 2), purpose 6.
uint64_t align_stream(int64_t step) { return ((static_cast<uint64_t>(step) * 8 + 3) * 8 + 6) << 32; }
}  // namespace

// Draws are keyed by each sample's global index, so they do not depend on the
// rank count.
void Trainer::draw(Task task, const StepBatch& batch, const std::vector<int64_t>& global,
                   TaskDraws& d) const {
  const ModelConfig& c = model_.config();
  const int64_t B = batch.B, T = c.max_text_len, N = c.num_image_tokens(), D = c.patch_dim();
  const int64_t step = step_ + 1;
  const uint64_t seed = opts_.seed;
  d.task = task;
  d.dropped.assign(static_cast<size_t>(B), 0);
  d.text.assign(static_cast<size_t>(B * T), tok::kPad);
  if (task == Task::Reca && opts_.templates == Templates::Paraphrases) {
    // One bank entry per sample (SPEC §5), from the task's purpose-6 stream.
    for (int64_t b = 0; b < B; ++b) {
      const uint32_t u =
          philox_u32(seed, stream_of(step, task, 6), static_cast<uint64_t>(global[b]));
      encode_text(paraphrases_[u % paraphrases_.size()], T, &d.text[b * T]);
    }
  } else if (task == Task::Reca) {
    std::vector<int32_t> tmpl(static_cast<size_t>(T));
    encode_text(opts_.template_text, T, tmpl.data());
    for (int64_t b = 0; b < B; ++b) std::memcpy(&d.text[b * T], tmpl.data(), T * 4);
  } else {
    RECA_CHECK(batch.captions != nullptr, InvalidArgument,
               "task '%s' needs captions: pass `captions` with the images", task_name(task));
    std::memcpy(d.text.data(), batch.captions, B * T * 4);
  }
  if (task != Task::I2t) {  // CFG dropout: the text becomes all PAD (SPEC §5)
    for (int64_t b = 0; b < B; ++b) {
      d.dropped[b] = philox_uniform(seed, stream_of(step, task, 1), global[b]) < opts_.cond_dropout;
      if (d.dropped[b])
        for (int64_t i = 0; i < T; ++i) d.text[b * T + i] = tok::kPad;
    }
  }
  if (task == Task::I2t) return;
  if (c.mode == Mode::Mask) {
    d.masked.assign(static_cast<size_t>(B * N), 0);
    std::vector<int32_t> perm(static_cast<size_t>(N));
    for (int64_t b = 0; b < B; ++b) {
      const double u = philox_uniform(seed, stream_of(step, task, 2), global[b]);
      const double r = std::cos(M_PI * u / 2);
      int64_t n = static_cast<int64_t>(std::ceil(r * static_cast<double>(N)));
      n = n < 1 ? 1 : n > N ? N : n;
      philox_permutation(seed, stream_of(step, task, 3, global[b]), N, perm.data());
      for (int64_t i = 0; i < n; ++i) d.masked[b * N + perm[i]] = 1;
    }
  } else if (c.mode == Mode::Flow) {
    d.t.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const double xi = philox_normal(seed, stream_of(step, task, 4), global[b]);
      d.t[b] = static_cast<float>(1.0 / (1.0 + std::exp(-xi)));
    }
    d.noise.resize(static_cast<size_t>(B * N * D));
    for (int64_t b = 0; b < B; ++b)
      philox_fill_normal(seed, stream_of(step, task, 5), d.noise.data() + b * N * D, N * D,
                         static_cast<uint64_t>(global[b] * N * D));
  }
}

StepStats Trainer::step(const StepBatch& batch, const std::vector<TaskDraws>* replay,
                        std::vector<TaskDraws>* used) {
  if (opts_.non_finite == NonFinite::Error) return step_or_throw(batch, replay, used);
  try {
    return step_or_throw(batch, replay, used);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::Numeric) throw;
    // Every finiteness check precedes the update, so nothing was committed.
    StepStats st;
    st.step = ++step_;
    st.images = batch.B * ranks();
    st.ranks = ranks();
    st.loss = NAN;
    st.lr = lr_at(st.step);
    st.skipped = true;
    st.skipped_steps = ++skipped_steps_;
    st.skip_reason = e.what();
    return st;
  }
}

StepStats Trainer::step_or_throw(const StepBatch& batch, const std::vector<TaskDraws>* replay,
                        std::vector<TaskDraws>* used) {
  const auto t0 = std::chrono::steady_clock::now();
  const LinearPrecisionScope precision(opts_.matmul_precision);
  const ModelConfig& c = model_.config();
  Backend& be = model_.backend();
  const ParamLayout& layout = model_.layout();
  RECA_CHECK(batch.B >= 1, InvalidArgument, "the batch is empty: pass at least one image");
  RECA_CHECK(batch.images != nullptr, InvalidArgument, "the batch has no images");
  if (batch.task_weights) {
    RECA_CHECK(!opts_.tokenizer, InvalidArgument,
               "a tokenizer-stage trainer has no tasks to weigh: leave out the step's tasks");
    double sum = 0;
    for (int k = 0; k < 3; ++k) {
      const double w = batch.task_weights[k];
      RECA_CHECK(std::isfinite(w) && w >= 0 && w <= 1e6, InvalidArgument,
                 "the step's weight of task '%s' must be a number in [0, 1e6] (got %g)",
                 task_name(static_cast<Task>(k)), w);
      sum += w;
    }
    RECA_CHECK(sum > 0, InvalidArgument,
               "the step's tasks all have weight 0: give reca, t2i or i2t a positive weight");
  }
  const int64_t B = batch.B, S = c.image_size, T = c.max_text_len, N = c.num_image_tokens();
  const int64_t D = c.patch_dim();
  const int64_t ranks_n = ranks(), k_shards = shards_ / ranks_n;
  const std::vector<int64_t> global = local_samples(B);
  const int64_t per = B / k_shards;  // images per shard
  const int64_t mb_size = opts_.micro_batch > 0 && opts_.micro_batch < per ? opts_.micro_batch : per;

  if (ranks_n > 1 && !ranks_agree_) check_ranks_agree();
  be.zero(grads_, layout.total() * 4);
  arena_.reset();
  if (reducer_) reducer_->reset_stats();
  StepStats st;
  st.step = step_ + 1;
  st.images = B * ranks_n;
  st.ranks = ranks_n;

  // Every task's draws over this rank's samples, before the shard loop.
  const Task tasks[] = {Task::Reca, Task::T2i, Task::I2t};
  const double option_weights[] = {opts_.weight_reca, opts_.weight_t2i, opts_.weight_i2t};
  const double* weights = batch.task_weights ? batch.task_weights : option_weights;
  std::vector<TaskDraws> drawn(3);
  const TaskDraws* draws[3] = {nullptr, nullptr, nullptr};
  if (!opts_.tokenizer) {
    size_t replay_at = 0;
    for (int k = 0; k < 3; ++k) {
      if (weights[k] <= 0) continue;
      const Task task = tasks[k];
      if (replay) {
        RECA_CHECK(replay_at < replay->size() && (*replay)[replay_at].task == task,
                   InvalidArgument, "replayed draws do not list task '%s' in order",
                   task_name(task));
        const TaskDraws* d = &(*replay)[replay_at++];
        RECA_CHECK(static_cast<int64_t>(d->text.size()) == B * T, Shape,
                   "replayed text must be [%lld, %lld]", (long long)B, (long long)T);
        if (task != Task::I2t && c.mode == Mode::Mask)
          RECA_CHECK(static_cast<int64_t>(d->masked.size()) == B * N, Shape,
                     "replayed mask must be [%lld, %lld]", (long long)B, (long long)N);
        if (task != Task::I2t && c.mode == Mode::Flow)
          RECA_CHECK(static_cast<int64_t>(d->t.size()) == B &&
                         static_cast<int64_t>(d->noise.size()) == B * N * D,
                     Shape, "replayed t must be [%lld] and noise [%lld, %lld, %lld]",
                     (long long)B, (long long)B, (long long)N, (long long)D);
        draws[k] = d;
      } else {
        draw(task, batch, global, drawn[k]);
        draws[k] = &drawn[k];
      }
    }
  }

  // The alignment loss's reca templates (task slot 3, purpose 6, as the reca
  // task's), never dropped; its captions are the batch's.
  std::vector<int32_t> align_text;
  if (opts_.align_weight > 0) {
    RECA_CHECK(batch.captions != nullptr, InvalidArgument,
               "alignWeight pairs each image with its caption: pass `captions` with the images");
    align_text.assign(static_cast<size_t>(B * T), tok::kPad);
    for (int64_t b = 0; b < B; ++b) {
      if (opts_.templates == Templates::Paraphrases) {
        const uint32_t u = philox_u32(opts_.seed, align_stream(st.step), static_cast<uint64_t>(global[b]));
        encode_text(paraphrases_[u % paraphrases_.size()], T, &align_text[b * T]);
      } else {
        encode_text(opts_.template_text, T, &align_text[b * T]);
      }
    }
  }

  // Tokenizer steps keep the batch's codes and encoder outputs for code upkeep.
  std::vector<int32_t> batch_codes;
  std::vector<float> batch_z;
  const int64_t C = c.code_dim;
  if (opts_.tokenizer) {
    batch_codes.resize(static_cast<size_t>(B * N));
    batch_z.resize(static_cast<size_t>(B * N * C));
  }
  // Per local shard: Σ λ·L of each task (reca, t2i, i2t, tokenizer, align) over its
  // micro-batches. Non-finite losses are judged after every rank has its sum,
  // so that all ranks raise (or skip) together.
  constexpr int kSlots = 5;  // reca, t2i, i2t, tokenizer, align
  std::vector<double> shard_loss(static_cast<size_t>(k_shards * kSlots), 0.0);
  for (int64_t j = 0; j < k_shards; ++j) {
    if (j > 0) be.zero(grads_, layout.total() * 4);
    const int64_t lo = j * per, hi = lo + per;
    if (opts_.tokenizer) {
      double& sum = shard_loss[j * kSlots + 3];
      for (int64_t b0 = lo; b0 < hi; b0 += mb_size) {
        const int64_t n = hi - b0 < mb_size ? hi - b0 : mb_size;
        const PassResult r = model_.tokenizer_pass(batch.images + b0 * S * S * 3, n, grads_, 1.0f,
                                                   arena_, &batch_codes[b0 * N], &batch_z[b0 * N * C]);
        sum += r.loss;
      }
    } else {
      for (int k = 0; k < 3; ++k) {
        if (!draws[k]) continue;
        const TaskDraws* d = draws[k];
        double& task_loss = shard_loss[j * kSlots + k];
        for (int64_t b0 = lo; b0 < hi; b0 += mb_size) {
          const int64_t n = hi - b0 < mb_size ? hi - b0 : mb_size;
          MicroBatch mb;
          mb.task = tasks[k];
          mb.B = n;
          mb.images = batch.images + b0 * S * S * 3;
          mb.text = d->text.data() + b0 * T;
          mb.condition = opts_.condition;
          if (!d->masked.empty()) mb.masked = d->masked.data() + b0 * N;
          if (!d->t.empty()) mb.t = d->t.data() + b0, mb.noise = d->noise.data() + b0 * N * D;
          const PassResult r =
              model_.generator_pass(mb, grads_, opts_.trainable, static_cast<float>(weights[k]),
                                    static_cast<float>(opts_.cond_grad_scale), arena_);
          task_loss += weights[k] * r.loss;
        }
      }
      if (opts_.align_weight > 0) {
        double& align_loss = shard_loss[j * kSlots + 4];
        for (int64_t b0 = lo; b0 < hi; b0 += mb_size) {
          const int64_t n = hi - b0 < mb_size ? hi - b0 : mb_size;
          AlignBatch ab;
          ab.B = n;
          ab.images = batch.images + b0 * S * S * 3;
          ab.templates = align_text.data() + b0 * T;
          ab.captions = batch.captions + b0 * T;
          const PassResult r = model_.align_pass(ab, grads_, opts_.trainable,
                                                 static_cast<float>(opts_.align_weight), arena_);
          align_loss += opts_.align_weight * r.loss;
        }
      }
    }
    if (reducer_) reducer_->add(j, grads_ + span_begin_);
  }
  if (reducer_) {
    reducer_->finish(grads_ + span_begin_);
    st.comm_seconds = reducer_->seconds();
    st.comm_bytes = reducer_->bytes_sent();
  }

  // Every rank's shard losses (with its batch size and step, which must agree),
  // summed in global shard order like the gradients.
  const int64_t S_all = shards_;
  std::vector<double> all_loss;
  if (ranks_n > 1) {
    std::vector<double> mine(static_cast<size_t>(2 + k_shards * kSlots));
    mine[0] = static_cast<double>(B);
    mine[1] = static_cast<double>(st.step);
    std::copy(shard_loss.begin(), shard_loss.end(), mine.begin() + 2);
    std::vector<double> all(mine.size() * static_cast<size_t>(ranks_n));
    comm_->allgather_bytes(mine.data(), static_cast<int64_t>(mine.size() * 8), all.data());
    const size_t stride = mine.size();
    for (int64_t r = 0; r < ranks_n; ++r) {
      RECA_CHECK(all[r * stride] == mine[0] && all[r * stride + 1] == mine[1], InvalidArgument,
                 "rank %lld is at step %lld with %lld images but rank %d at step %lld with %lld: "
                 "every rank must step together with the same batch size",
                 static_cast<long long>(r), static_cast<long long>(all[r * stride + 1]),
                 static_cast<long long>(all[r * stride]), rank(),
                 static_cast<long long>(st.step), static_cast<long long>(B));
    }
    all_loss.resize(static_cast<size_t>(S_all * kSlots));
    for (int64_t s = 0; s < S_all; ++s)  // global shard s = j·N + r
      for (int t = 0; t < kSlots; ++t)
        all_loss[s * kSlots + t] = all[(s % ranks_n) * stride + 2 + (s / ranks_n) * kSlots + t];
  } else {
    all_loss = shard_loss;
  }
  double totals[kSlots];
  for (int t = 0; t < kSlots; ++t) {
    totals[t] = all_loss[t];
    for (int64_t s = 1; s < S_all; ++s) totals[t] += all_loss[s * kSlots + t];
  }
  auto check_finite = [&](double loss, const char* what) {
    if (!std::isfinite(loss)) {
      be.zero(grads_, layout.total() * 4);
      fail(ErrorCode::Numeric,
           "the %s loss is not finite at step %lld; parameters and optimizer state are "
           "unchanged: lower the learning rate or check the inputs",
           what, static_cast<long long>(st.step));
    }
  };
  if (opts_.tokenizer) {
    check_finite(totals[3], "tokenizer");
    st.loss = st.loss_tokenizer = totals[3];
    if (ranks_n > 1) gather_codes(global, batch_codes, batch_z);
  } else {
    double* per_task[] = {&st.loss_reca, &st.loss_t2i, &st.loss_i2t};
    for (int k = 0; k < 3; ++k) {
      if (!draws[k]) continue;
      check_finite(totals[k], task_name(tasks[k]));
      *per_task[k] = totals[k] / weights[k];
      st.loss += totals[k];
    }
    if (opts_.align_weight > 0) {
      check_finite(totals[4], "align");
      st.loss_align = totals[4] / opts_.align_weight;
      st.loss += totals[4];
    }
    if (used)
      for (int k = 0; k < 3; ++k)
        if (draws[k]) used->push_back(draws[k] == &drawn[k] ? std::move(drawn[k]) : *draws[k]);
  }

  // Global norm over the trainable grads, clipping, AdamW (+ EMA), one pass each.
  std::vector<const float*> ptrs;
  std::vector<int64_t> sizes;
  std::vector<cpu::AdamWSegment<float>> segs;
  for (const ParamInfo& p : layout.params()) {
    if (!trainable(p)) continue;
    ptrs.push_back(grads_ + p.offset);
    sizes.push_back(p.numel);
    segs.push_back({model_.params() + p.offset, grads_ + p.offset, m_ + p.offset, v_ + p.offset,
                    ema_ ? ema_ + p.offset : nullptr, p.numel, p.decays()});
  }
  bool nonfinite = false;
  const float norm = be.grad_norm_segments(ptrs.data(), sizes.data(),
                                           static_cast<int64_t>(ptrs.size()), &nonfinite);
  if (nonfinite || !std::isfinite(norm)) {
    be.zero(grads_, layout.total() * 4);
    fail(ErrorCode::Numeric,
         "the gradient is not finite at step %lld; parameters and optimizer state are "
         "unchanged: lower the learning rate or check the inputs",
         static_cast<long long>(st.step));
  }
  st.grad_norm = norm;
  st.clip_scale = opts_.max_grad_norm > 0 && norm > opts_.max_grad_norm
                      ? opts_.max_grad_norm / (static_cast<double>(norm) + 1e-6)
                      : 1.0;
  st.lr = lr_at(st.step);
  cpu::AdamWConfig ac{st.lr, opts_.beta1, opts_.beta2, opts_.eps, opts_.weight_decay, st.step,
                      st.clip_scale, opts_.ema};
  // Finite loss and gradient do not make a finite update (weight_decay 1e38
  // makes 1 - lr*wd overflow; a large g' overflows v): commit only a finite one.
  if (!update_is_finite(segs, ac)) {
    be.zero(grads_, layout.total() * 4);
    fail(ErrorCode::Numeric,
         "the update of step %lld would make parameters or optimizer state non-finite "
         "(lr %g, weight_decay %g); parameters and optimizer state are unchanged: lower the "
         "learning rate or weight decay",
         static_cast<long long>(st.step), st.lr, opts_.weight_decay);
  }
  be.adamw_step_segments(segs.data(), static_cast<int64_t>(segs.size()), ac);
  step_ = st.step;
  st.skipped_steps = skipped_steps_;
  if (opts_.tokenizer) restart_codes(batch_codes, batch_z, st);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

bool Trainer::update_is_finite(const std::vector<cpu::AdamWSegment<float>>& segs,
                               const cpu::AdamWConfig& ac) {
  // Fixed-size scratch, so the check costs O(chunk) memory whatever the model;
  // the update is elementwise, so a chunk's result is the real update's.
  constexpr int64_t kChunk = int64_t(1) << 16;
  Backend& be = model_.backend();
  const int64_t nbuf = ema_ ? 4 : 3;
  float* scratch = arena_.floats(kChunk * nbuf);
  float* const sp = scratch;
  float* const sm = scratch + kChunk;
  float* const sv = scratch + 2 * kChunk;
  float* const se = ema_ ? scratch + 3 * kChunk : nullptr;
  std::vector<cpu::AdamWSegment<float>> part;
  int64_t used = 0;
  auto run_chunk = [&] {
    be.adamw_step_segments(part.data(), static_cast<int64_t>(part.size()), ac);
    const float* ptrs[] = {sp, sm, sv, se};
    const int64_t sizes[] = {used, used, used, used};
    bool nonfinite = false;
    be.grad_norm_segments(ptrs, sizes, nbuf, &nonfinite);
    part.clear();
    used = 0;
    return !nonfinite;
  };
  for (const cpu::AdamWSegment<float>& s : segs) {
    for (int64_t off = 0; off < s.n;) {
      const int64_t n = std::min(s.n - off, kChunk - used);
      be.copy(sp + used, s.p + off, n * 4);
      be.copy(sm + used, s.m + off, n * 4);
      be.copy(sv + used, s.v + off, n * 4);
      if (se) be.copy(se + used, s.ema + off, n * 4);
      part.push_back({sp + used, s.g + off, sm + used, sv + used, se ? se + used : nullptr, n,
                      s.decay});
      used += n;
      off += n;
      if (used == kChunk && !run_chunk()) return false;
    }
  }
  return used == 0 || run_chunk();
}

namespace {
uint64_t fnv1a(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}
}  // namespace

void Trainer::check_ranks_agree() {
  // Once per trainer and after each load: a rank started from another seed or
  // checkpoint would otherwise train on silently.
  const int64_t n = model_.layout().total();
  std::vector<float> host(static_cast<size_t>(n));
  model_.backend().download(host.data(), model_.params(), n * 4);
  const std::string opts = trainer_options_to_json(opts_);
  const uint64_t mine[3] = {fnv1a(host.data(), host.size() * 4), fnv1a(opts.data(), opts.size()),
                            static_cast<uint64_t>(step_)};
  std::vector<uint64_t> all(static_cast<size_t>(3 * ranks()));
  comm_->allgather_bytes(mine, sizeof mine, all.data());
  for (int r = 1; r < ranks(); ++r) {
    const uint64_t* o = &all[static_cast<size_t>(3 * r)];
    RECA_CHECK(o[1] == all[1], InvalidArgument,
               "rank %d has other trainer options than rank 0: start every rank with the same "
               "command and options", r);
    RECA_CHECK(o[2] == all[2], InvalidArgument,
               "rank %d has done %llu steps but rank 0 %llu: resume every rank from the same "
               "checkpoint", r, static_cast<unsigned long long>(o[2]),
               static_cast<unsigned long long>(all[2]));
    RECA_CHECK(o[0] == all[0], InvalidArgument,
               "rank %d holds other parameters than rank 0: start every rank from the same "
               "model (the same seed or checkpoint)", r);
  }
  ranks_agree_ = true;
}

void Trainer::gather_codes(const std::vector<int64_t>& global, std::vector<int32_t>& codes,
                           std::vector<float>& z) {
  const int64_t R = ranks(), B = static_cast<int64_t>(global.size());
  const int64_t per_code = static_cast<int64_t>(codes.size()) / B;  // image tokens per sample
  const int64_t per_z = static_cast<int64_t>(z.size()) / B;
  std::vector<int64_t> all_global(static_cast<size_t>(R * B));
  std::vector<int32_t> all_codes(codes.size() * static_cast<size_t>(R));
  std::vector<float> all_z(z.size() * static_cast<size_t>(R));
  comm_->allgather_bytes(global.data(), B * 8, all_global.data());
  comm_->allgather_bytes(codes.data(), static_cast<int64_t>(codes.size()) * 4, all_codes.data());
  comm_->allgather_bytes(z.data(), static_cast<int64_t>(z.size()) * 4, all_z.data());
  codes.assign(all_codes.size(), 0);
  z.assign(all_z.size(), 0.0f);
  for (int64_t i = 0; i < R * B; ++i) {
    const int64_t g = all_global[i];
    std::memcpy(&codes[g * per_code], &all_codes[i * per_code], per_code * 4);
    std::memcpy(&z[g * per_z], &all_z[i * per_z], per_z * 4);
  }
}

// Dead-code restart (SPEC §3): codes the batch did not choose take the value
// of a random encoder output of the batch, drawn from Philox so that it is the
// same on every backend and thread count; their moments (and EMA) restart too.
void Trainer::restart_codes(const std::vector<int32_t>& codes, const std::vector<float>& z,
                            StepStats& st) {
  const ModelConfig& c = model_.config();
  const int64_t K = c.codebook_size, C = c.code_dim, n = static_cast<int64_t>(codes.size());
  std::vector<uint8_t> used(static_cast<size_t>(K), 0);
  for (int32_t k : codes) used[static_cast<size_t>(k)] = 1;
  st.codes_used = 0;
  for (uint8_t u : used) st.codes_used += u;
  if (opts_.code_restart_every <= 0 || st.step % opts_.code_restart_every != 0) return;
  Backend& be = model_.backend();
  const ParamInfo& cb = *model_.layout().find("vq.codebook");
  const uint64_t stream = (static_cast<uint64_t>(st.step) * 8 + 7) << 32;  // apart from task draws
  for (int64_t k = 0; k < K; ++k) {
    if (used[static_cast<size_t>(k)]) continue;
    const int64_t j = static_cast<int64_t>(philox_u32(opts_.seed, stream, static_cast<uint64_t>(k)) %
                                           static_cast<uint64_t>(n));
    const int64_t at = cb.offset + k * C;
    be.upload(model_.params() + at, &z[j * C], C * 4);
    if (ema_) be.upload(ema_ + at, &z[j * C], C * 4);
    be.zero(m_ + at, C * 4);
    be.zero(v_ + at, C * 4);
    ++st.codes_restarted;
  }
}

}  // namespace reca::model
