#include "model/schema.h"

#include <cstring>

namespace reca::model {

// Field constructors: a name, a member and its range; the accessors are
// captureless lambdas, so a table is plain data built once.
#define RECA_INT(T, NAME, MEMBER, LO, HI, DOC)                                            \
  Field<T> {                                                                               \
    NAME, FieldKind::Integer, LO, HI, false, false, nullptr, DOC,                          \
        [](const T& o) { FieldValue v; v.number = static_cast<double>(o.MEMBER); return v; }, \
        [](T& o, const FieldValue& v) { o.MEMBER = static_cast<int64_t>(v.number); }       \
  }
#define RECA_NUM(T, NAME, MEMBER, LO, HI, LO_OPEN, HI_OPEN, DOC)                     \
  Field<T> {                                                                          \
    NAME, FieldKind::Number, LO, HI, LO_OPEN, HI_OPEN, nullptr, DOC,                  \
        [](const T& o) { FieldValue v; v.number = o.MEMBER; return v; },              \
        [](T& o, const FieldValue& v) { o.MEMBER = v.number; }                        \
  }
#define RECA_BOOL(T, NAME, MEMBER, DOC)                                   \
  Field<T> {                                                              \
    NAME, FieldKind::Boolean, 0, 0, false, false, nullptr, DOC,           \
        [](const T& o) { FieldValue v; v.boolean = o.MEMBER; return v; }, \
        [](T& o, const FieldValue& v) { o.MEMBER = v.boolean; }           \
  }
#define RECA_SEED(T, NAME, MEMBER, DOC)                                \
  Field<T> {                                                           \
    NAME, FieldKind::Seed, 0, 0, false, false, nullptr, DOC,           \
        [](const T& o) { FieldValue v; v.seed = o.MEMBER; return v; }, \
        [](T& o, const FieldValue& v) { o.MEMBER = v.seed; }           \
  }

namespace {
constexpr double kMaxDim = 1 << 20;        // any size or count of the config
constexpr double kMaxCount = 1099511627776.0;  // 2^40: steps, micro-batch sizes

template <class T>
Field<T> absent_is_default(Field<T> f) {
  f.absent_is_default = true;
  return f;
}
}  // namespace

const char* field_kind_name(FieldKind k) {
  switch (k) {
    case FieldKind::Integer: return "integer";
    case FieldKind::Number: return "number";
    case FieldKind::Boolean: return "boolean";
    case FieldKind::String: return "string";
    case FieldKind::Choice: return "choice";
    default: return "seed";
  }
}

bool field_choice_ok(const char* choices, const std::string& v) {
  if (v.empty()) return false;
  const char* p = choices;
  while (*p) {
    const char* bar = std::strchr(p, '|');
    const size_t n = bar ? static_cast<size_t>(bar - p) : std::strlen(p);
    if (n == v.size() && std::memcmp(p, v.data(), n) == 0) return true;
    if (!bar) break;
    p = bar + 1;
  }
  return false;
}

std::string field_range_text(FieldKind kind, double lo, double hi, bool lo_open, bool hi_open) {
  const char* noun = kind == FieldKind::Integer ? "an integer" : "a number";
  return std::string(noun) + " in " + (lo_open ? "(" : "[") + json_number(lo) + ", " +
         json_number(hi) + (hi_open ? ")" : "]");
}

// Decimal digits, no sign, no leading zero (except "0"), at most UINT64_MAX.
bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (const char ch : s) {
    if (ch < '0' || ch > '9') return false;
    const uint64_t d = static_cast<uint64_t>(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// ---- config (SPEC §1; names as stored in checkpoints) ------------------------------

const Schema<ModelConfig>& config_schema() {
  using C = ModelConfig;
  static const Schema<C> s{
      "config",
      {
          Field<C>{"mode", FieldKind::Choice, 0, 0, false, false, "ar|mask|flow",
                   "generator family: next-token (ar), masked-token (mask) or flow",
                   [](const C& o) { FieldValue v; v.text = mode_name(o.mode); return v; },
                   [](C& o, const FieldValue& v) { parse_mode(v.text, &o.mode); }},
          RECA_INT(C, "image_size", image_size, 1, kMaxDim, "generated image side S (pixels)"),
          RECA_INT(C, "gen_patch", gen_patch, 1, kMaxDim, "generator patch side P"),
          RECA_INT(C, "und_image_size", und_image_size, 1, kMaxDim,
                   "understanding input side (the image average-pooled to it)"),
          RECA_INT(C, "und_patch", und_patch, 1, kMaxDim, "understanding patch side"),
          RECA_INT(C, "und_width", und_width, 1, kMaxDim, "understanding encoder width"),
          RECA_INT(C, "und_depth", und_depth, 1, kMaxDim, "understanding encoder blocks"),
          RECA_INT(C, "und_heads", und_heads, 1, kMaxDim, "understanding encoder heads"),
          RECA_INT(C, "und_select_layer", und_select_layer, -kMaxDim, -1,
                   "encoder layer whose output feeds the connector (-1: the last)"),
          RECA_INT(C, "width", width, 1, kMaxDim, "generator width"),
          RECA_INT(C, "depth", depth, 1, kMaxDim, "generator blocks"),
          RECA_INT(C, "heads", heads, 1, kMaxDim, "generator heads"),
          RECA_INT(C, "mlp_ratio", mlp_ratio, 1, kMaxDim, "MLP hidden width / width"),
          RECA_INT(C, "codebook_size", codebook_size, 1, kMaxDim, "VQ codes K (discrete modes)"),
          RECA_INT(C, "code_dim", code_dim, 1, kMaxDim, "VQ code dimension (discrete modes)"),
          RECA_INT(C, "max_text_len", max_text_len, 1, kMaxDim, "text bytes T per caption or prompt"),
          // Absent in checkpoints written before it existed: those models have no conn.norm.
          absent_is_default(RECA_BOOL(C, "cond_norm", cond_norm,
                                      "LayerNorm at the connector's output (conn.norm, gain starting "
                                      "at 0.02): the condition starts at its position rows' scale")),
      }};
  return s;
}

// ---- trainer options ----------------------------------------------------------------

const Schema<TrainerOptions>& trainer_schema() {
  using T = TrainerOptions;
  static const Schema<T> s{
      "trainer option",
      {
          RECA_NUM(T, "weightReca", weight_reca, 0, 1e6, false, false,
                   "weight λ of the reca task (0: off)"),
          RECA_NUM(T, "weightT2i", weight_t2i, 0, 1e6, false, false,
                   "weight λ of the text-to-image task (0: off)"),
          RECA_NUM(T, "weightI2t", weight_i2t, 0, 1e6, false, false,
                   "weight λ of the image-to-text task (0: off)"),
          RECA_BOOL(T, "tokenizer", tokenizer,
                    "the tokenizer stage: vq.* with the tokenizer loss only (discrete modes)"),
          RECA_INT(T, "microBatch", micro_batch, 0, kMaxCount,
                   "images per micro-batch (0: the whole shard); gradients accumulate"),
          absent_is_default(RECA_INT(
              T, "shards", shards, 0, kMaxCount,
              "gradient shards of the global batch, summed in a fixed order (0: one per rank); "
              "a run on any rank count dividing it gives the same bytes")),
          RECA_NUM(T, "lr", lr, 0, 1, true, false, "peak learning rate"),
          RECA_NUM(T, "beta1", beta1, 0, 1, false, true, "AdamW β1"),
          RECA_NUM(T, "beta2", beta2, 0, 1, false, true, "AdamW β2"),
          RECA_NUM(T, "eps", eps, 0, 1, true, false, "AdamW ε"),
          RECA_NUM(T, "weightDecay", weight_decay, 0, 1, false, false,
                   "decoupled weight decay (matrices and embeddings only)"),
          RECA_INT(T, "warmup", warmup, 0, kMaxCount, "linear warmup steps"),
          RECA_INT(T, "totalSteps", total_steps, 0, kMaxCount,
                   "steps of the schedule (cosine decays to minLr at this step)"),
          Field<T>{"schedule", FieldKind::Choice, 0, 0, false, false, "constant|cosine",
                   "learning-rate schedule after warmup",
                   [](const T& o) {
                     FieldValue v;
                     v.text = o.schedule == Schedule::Cosine ? "cosine" : "constant";
                     return v;
                   },
                   [](T& o, const FieldValue& v) {
                     o.schedule = v.text == "cosine" ? Schedule::Cosine : Schedule::Constant;
                   }},
          RECA_NUM(T, "minLr", min_lr, 0, 1, false, false, "cosine floor of the learning rate"),
          RECA_NUM(T, "maxGradNorm", max_grad_norm, 0, 1e6, false, false,
                   "global gradient-norm clip (0: off)"),
          RECA_NUM(T, "ema", ema, 0, 1, false, true, "EMA decay of the weights (0: off)"),
          RECA_NUM(T, "condDropout", cond_dropout, 0, 1, false, false,
                   "probability of dropping the template or caption (CFG)"),
          RECA_NUM(T, "condGradScale", cond_grad_scale, 0, 1e6, false, false,
                   "scale of the gradient into the understanding embeddings on the reca task"),
          absent_is_default(RECA_NUM(
              T, "alignWeight", align_weight, 0, 1e6, false, false,
              "weight λ of the condition-alignment loss: each image's reca condition against "
              "its caption's t2i condition, contrasted over the micro-batch (0: off; needs "
              "captions)")),
          RECA_INT(T, "codeRestart", code_restart_every, 0, kMaxCount,
                   "tokenizer stage: re-seed unused codes every this many steps (0: off)"),
          Field<T>{"nonFinite", FieldKind::Choice, 0, 0, false, false, "error|skip",
                   "a step whose loss, gradient or update is not finite: raise E_NUMERIC, or "
                   "count it as skipped without an update (state unchanged either way)",
                   [](const T& o) {
                     FieldValue v;
                     v.text = o.non_finite == NonFinite::Skip ? "skip" : "error";
                     return v;
                   },
                   [](T& o, const FieldValue& v) {
                     o.non_finite = v.text == "skip" ? NonFinite::Skip : NonFinite::Error;
                   }},
          absent_is_default(Field<T>{
              "matmulPrecision", FieldKind::Choice, 0, 0, false, false, "fp32|bf16",
              "products of the Linear layers in a step: fp32, or bf16 operands summed in fp32 "
              "(CPU with AVX512_BF16; E_DEVICE elsewhere); weights, gradients and optimizer "
              "state stay fp32",
              [](const T& o) {
                FieldValue v;
                v.text = o.matmul_precision == MatmulPrecision::Bf16 ? "bf16" : "fp32";
                return v;
              },
              [](T& o, const FieldValue& v) {
                o.matmul_precision = v.text == "bf16" ? MatmulPrecision::Bf16 : MatmulPrecision::Fp32;
              }}),
          RECA_BOOL(T, "trainUnd", trainable.und, "the understanding encoder gets gradients"),
          RECA_BOOL(T, "trainConn", trainable.conn, "the connector gets gradients"),
          RECA_BOOL(T, "trainVq", trainable.vq, "the VQ tokenizer gets gradients"),
          RECA_BOOL(T, "trainGen", trainable.gen, "the generator gets gradients"),
          RECA_SEED(T, "seed", seed, "seed of every training draw"),
          Field<T>{"template", FieldKind::String, 0, 0, false, false, nullptr,
                   "the text beside the image embeddings on the reca task",
                   [](const T& o) { FieldValue v; v.text = o.template_text; return v; },
                   [](T& o, const FieldValue& v) { o.template_text = v.text; }},
          Field<T>{"templates", FieldKind::Choice, 0, 0, false, false, "fixed|paraphrases",
                   "reca text: `template` on every sample, or a paraphrase of it from the "
                   "built-in bank drawn per sample",
                   [](const T& o) {
                     FieldValue v;
                     v.text = o.templates == Templates::Paraphrases ? "paraphrases" : "fixed";
                     return v;
                   },
                   [](T& o, const FieldValue& v) {
                     o.templates = v.text == "paraphrases" ? Templates::Paraphrases : Templates::Fixed;
                   }},
          absent_is_default(Field<T>{
              "condition", FieldKind::Choice, 0, 0, false, false, "understanding|tokenizer",
              "what the reca task's image slots hold: the understanding embeddings (RecA), or "
              "the generator's own embeddings of the image's tokens pooled to the same grid "
              "(the tokenizer-condition ablation)",
              [](const T& o) {
                FieldValue v;
                v.text = o.condition == Condition::Tokenizer ? "tokenizer" : "understanding";
                return v;
              },
              [](T& o, const FieldValue& v) {
                o.condition = v.text == "tokenizer" ? Condition::Tokenizer : Condition::Understanding;
              }}),
      }};
  return s;
}

// ---- sampler options ----------------------------------------------------------------

const Schema<SampleOptions>& sampler_schema() {
  using S = SampleOptions;
  static const Schema<S> s{
      "sampling option",
      {
          RECA_INT(S, "steps", steps, 1, 100000, "mask: MaskGIT steps; flow: Euler steps; ar: unused"),
          RECA_NUM(S, "cfg", cfg, -1e6, 1e6, false, false,
                   "classifier-free guidance scale (1: conditional pass only)"),
          RECA_NUM(S, "temperature", temperature, 0, 1e6, false, false,
                   "discrete modes; 0: greedy"),
          RECA_INT(S, "topK", top_k, 0, 2147483647.0, "discrete modes; 0: every code"),
          RECA_NUM(S, "choiceTemperature", choice_temperature, 0, 1e6, false, false,
                   "mask: Gumbel noise of this scale, annealed to 0 over the steps, added to "
                   "each position's log-confidence before the most confident are kept (0: off)"),
          RECA_SEED(S, "seed", seed, "seed of the draws"),
      }};
  return s;
}

// ---- presets and token ids -------------------------------------------------------------

namespace {
ModelConfig make_preset(int64_t S, int64_t und_S, int64_t und_P, int64_t und_width, int64_t und_depth,
                        int64_t und_heads, int64_t width, int64_t depth, int64_t heads, int64_t K,
                        int64_t code_dim, int64_t T) {
  ModelConfig c;
  c.image_size = S, c.gen_patch = 4, c.und_image_size = und_S, c.und_patch = und_P;
  c.und_width = und_width, c.und_depth = und_depth, c.und_heads = und_heads;
  c.width = width, c.depth = depth, c.heads = heads;
  c.codebook_size = K, c.code_dim = code_dim, c.max_text_len = T;
  return c;
}
}  // namespace

const std::vector<PresetEntry>& presets() {
  //                                        S  und_S P  und_w d  h  width depth heads K     cd  T
  static const std::vector<PresetEntry> p{
      {"tiny", ModelConfig{}},  // ModelConfig's member defaults are the tiny preset
      {"small", make_preset(32, 16, 4, 128, 4, 4, 256, 6, 8, 512, 16, 48)},
      {"base", make_preset(64, 32, 4, 384, 6, 6, 768, 12, 12, 4096, 32, 64)},
  };
  return p;
}

const std::vector<TokenEntry>& special_tokens() {
  static const std::vector<TokenEntry> t{
      {"pad", tok::kPad}, {"bos", tok::kBos}, {"eos", tok::kEos},   {"imgBegin", tok::kImgBegin},
      {"imgEnd", tok::kImgEnd}, {"gen", tok::kGen}, {"cap", tok::kCap}, {"vocab", tok::kVocab},
  };
  return t;
}

// ---- export ---------------------------------------------------------------------------

namespace {
template <class T>
void write_schema(JsonWriter& w, const Schema<T>& s) {
  const T defaults{};
  w.begin_array();
  for (const Field<T>& f : s.fields) {
    w.begin_object();
    w.key("name").string(f.name);
    w.key("kind").string(field_kind_name(f.kind));
    w.key("default");
    write_field_value(w, f, f.get(defaults));
    if (f.kind == FieldKind::Integer || f.kind == FieldKind::Number) {
      w.key("min").number(f.lo).key("max").number(f.hi);
      w.key("minOpen").boolean(f.lo_open).key("maxOpen").boolean(f.hi_open);
    }
    if (f.kind == FieldKind::Choice) {
      w.key("choices").begin_array();
      std::string all = f.choices;
      for (size_t at = 0; at <= all.size();) {
        const size_t bar = std::min(all.find('|', at), all.size());
        w.string(all.substr(at, bar - at));
        at = bar + 1;
      }
      w.end_array();
    }
    w.key("doc").string(f.doc);
    w.end_object();
  }
  w.end_array();
}
}  // namespace

std::string schema_json() {
  JsonWriter w;
  w.begin_object();
  w.key("config");
  write_schema(w, config_schema());
  w.key("trainer");
  write_schema(w, trainer_schema());
  w.key("sampler");
  write_schema(w, sampler_schema());
  w.key("presets").begin_object();
  for (const PresetEntry& p : presets()) {
    w.key(p.name).raw(to_json(config_schema(), p.config));
  }
  w.end_object();
  w.key("tokens").begin_object();
  for (const TokenEntry& t : special_tokens()) w.key(t.name).integer(t.id);
  w.end_object();
  w.end_object();
  return w.str();
}

}  // namespace reca::model
