#include "model/checkpoint.h"

#include <cmath>
#include <cstring>

#include "core/checked.h"
#include "core/error.h"
#include "core/half.h"
#include "core/json.h"
#include "model/schema.h"

namespace reca::model {

namespace {

bool is_float_storage(StDtype dt) {
  return dt == StDtype::F32 || dt == StDtype::F16 || dt == StDtype::BF16;
}

// Re-raises an error of validate() (E_INVALID_ARGUMENT) as E_CHECKPOINT.
template <class F>
void as_checkpoint_error(const std::string& prefix, F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::Checkpoint && e.code() != ErrorCode::InvalidArgument) throw;
    fail(ErrorCode::Checkpoint, "%s%s", prefix.c_str(), e.what());
  }
}

// "" when equal, else which field differs (the first in table order).
std::string config_difference(const ModelConfig& ckpt, const ModelConfig& have) {
  FieldDifference d;
  if (!first_difference(config_schema(), ckpt, have, &d)) return "";
  return "config." + d.name + " is " + d.a + " in the checkpoint but " + d.b + " here";
}

// The tensors with optimizer state: the trainable ones of these options
// (the tokenizer stage trains vq.* only, as the Trainer enforces).
Trainable effective_trainable(const TrainerOptions& o) {
  return o.tokenizer ? Trainable{false, false, true, false} : o.trainable;
}

// Bounds the work of a load by the file itself: the config's tensor count and
// data size are measured (O(1) in depth, checked arithmetic) and compared with
// the file's before the expected-tensor table is built. A config of depth 2^20
// in a 1 MB file otherwise builds a 12M-entry table (80 s, 5 GB) before
// finding a tensor missing. Small differences (up to kSlackTensors missing
// tensors, data up to twice the file's plus 1 MB: a few missing or reshaped
// tensors) pass on to the per-tensor checks, which name them. So the table is
// built only for at most file tensors + kSlackTensors entries, and the value
// buffers only after every expected tensor matched the file's by shape.
void check_size_against_file(const Checkpoint& c, const SafetensorsFile& f,
                             const std::string& where) {
  constexpr int64_t kSlackTensors = 64;
  const LayoutSize s = ParamLayout::measure(c.config);
  const Trainable tr = effective_trainable(c.trainer_options);
  const int64_t store = static_cast<int64_t>(st_dtype_size(c.storage));
  int64_t tensors = s.all.tensors, bytes = 0;
  bool overflow = s.overflow || !checked_mul(s.all.numel, store, &bytes);
  if (c.has_trainer) {
    const int64_t per_state = c.has_ema ? 3 : 2, state_bytes = c.has_ema ? 8 + store : 8;
    for (const char* g : {"und", "conn", "vq", "gen"}) {
      if (!tr.group(g)) continue;
      const ParamCounts& pc = s.group(g);
      int64_t t = 0, b = 0;
      overflow = overflow || !checked_mul(pc.tensors, per_state, &t) ||
                 !checked_add(tensors, t, &tensors) || !checked_mul(pc.numel, state_bytes, &b) ||
                 !checked_add(bytes, b, &bytes);
    }
  }
  const int64_t have_tensors = static_cast<int64_t>(f.size());
  const int64_t have_bytes = static_cast<int64_t>(f.buffer_bytes());  // <= file size
  RECA_CHECK(!overflow && tensors <= have_tensors + kSlackTensors &&
                 bytes / 2 <= have_bytes + (int64_t(1) << 20),
             Checkpoint,
             "%sreca.config (depth %lld, und_depth %lld, width %lld, und_width %lld, "
             "codebook_size %lld) describes %s tensors with %s bytes of data, but the file holds "
             "%lld tensors with %lld bytes",
             where.c_str(), static_cast<long long>(c.config.depth),
             static_cast<long long>(c.config.und_depth), static_cast<long long>(c.config.width),
             static_cast<long long>(c.config.und_width),
             static_cast<long long>(c.config.codebook_size),
             overflow ? "more than 2^63" : std::to_string(tensors).c_str(),
             overflow ? "more than 2^63" : std::to_string(bytes).c_str(),
             static_cast<long long>(have_tensors), static_cast<long long>(have_bytes));
}

}  // namespace

// ---------------------------------------------------------------- trainer options JSON

std::string trainer_options_to_json(const TrainerOptions& o) {
  return to_json(trainer_schema(), o);
}

TrainerOptions trainer_options_from_json(const std::string& json) {
  // reca-engine 0.1.0 wrote these options with snake_case keys.
  RECA_CHECK(json.find("\"weight_reca\"") == std::string::npos, Checkpoint,
             "the optimizer state was written by an older reca-engine (snake_case trainer "
             "options): load the file with Model.load and start a new Trainer");
  TrainerOptions o =
      from_json(trainer_schema(), json, ErrorCode::Checkpoint, "trainer options JSON");
  as_checkpoint_error("trainer options: ", [&] { o.validate(); });
  return o;
}

// ---------------------------------------------------------------- save

void save_checkpoint(const std::string& path, const RecaModel& model, const Trainer* trainer,
                     StDtype storage, const std::map<std::string, std::string>& extra_metadata) {
  RECA_CHECK(is_float_storage(storage), InvalidArgument,
             "checkpoint parameters can be stored as F32, F16 or BF16, not %s",
             st_dtype_name(storage));
  static const char* const kReserved[] = {"reca.format", "reca.config", "reca.dtype",
                                          "reca.step",   "reca.seed",   "reca.trainer"};
  for (const auto& kv : extra_metadata)
    for (const char* r : kReserved)
      RECA_CHECK(kv.first != r, InvalidArgument,
                 "metadata key '%s' is written by the engine itself; choose another name", r);
  if (trainer)
    RECA_CHECK(&trainer->model() == &model, InvalidArgument,
               "save_checkpoint: the trainer belongs to another model");

  const ParamLayout& layout = model.layout();
  const int64_t n = layout.total();
  std::vector<float> params(static_cast<size_t>(n)), m, v, ema;
  model.get_params(params.data());
  if (trainer) {
    Backend& be = trainer->model().backend();
    m.resize(static_cast<size_t>(n));
    v.resize(static_cast<size_t>(n));
    be.download(m.data(), trainer->exp_avg(), n * 4);
    be.download(v.data(), trainer->exp_avg_sq(), n * 4);
    if (trainer->ema()) {
      ema.resize(static_cast<size_t>(n));
      be.download(ema.data(), trainer->ema(), n * 4);
    }
  }

  // A file that cannot be loaded back must not replace a good one.
  auto check_values = [&](const std::string& name, const float* x, int64_t count, StDtype dt) {
    for (int64_t i = 0; i < count; ++i) {
      RECA_CHECK(std::isfinite(x[i]), Numeric,
                 "cannot save '%s': tensor '%s' holds a non-finite value at index %lld; nothing "
                 "was written",
                 path.c_str(), name.c_str(), static_cast<long long>(i));
      RECA_CHECK(dt != StDtype::F16 || std::isfinite(f16_to_f32(f32_to_f16(x[i]))), Numeric,
                 "cannot save '%s': tensor '%s' holds %g at index %lld, beyond the F16 range "
                 "(65504); save as BF16 or F32",
                 path.c_str(), name.c_str(), static_cast<double>(x[i]), static_cast<long long>(i));
    }
  };
  SafetensorsWriter w;
  auto add = [&](const std::string& name, const ParamInfo& p, const float* x, StDtype dt) {
    check_values(name, x, p.numel, dt);
    if (dt == StDtype::F32) w.add_view(name, dt, p.shape, x, static_cast<size_t>(p.numel) * 4);
    else w.add_f32(name, p.shape, x, dt);
  };
  for (const ParamInfo& p : layout.params()) add(p.name, p, params.data() + p.offset, storage);
  if (trainer) {
    for (const ParamInfo& p : layout.params()) {
      if (!trainer->trainable(p)) continue;
      add("optim.m." + p.name, p, m.data() + p.offset, StDtype::F32);
      add("optim.v." + p.name, p, v.data() + p.offset, StDtype::F32);
      if (!ema.empty()) add("ema." + p.name, p, ema.data() + p.offset, storage);
    }
  }

  w.set_metadata("reca.format", kCheckpointFormat);
  w.set_metadata("reca.config", model.config().to_json());
  w.set_metadata("reca.dtype", st_dtype_name(storage));
  if (trainer) {
    const TrainerOptions& o = trainer->options();
    w.set_metadata("reca.step", std::to_string(trainer->steps_done()));
    w.set_metadata("reca.seed", std::to_string(o.seed));
    w.set_metadata("reca.trainer", trainer_options_to_json(o));
  }
  for (const auto& kv : extra_metadata) w.set_metadata(kv.first, kv.second);
  w.write_atomic(path);
}

// ---------------------------------------------------------------- load

Checkpoint load_checkpoint(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  const std::string where = "checkpoint '" + path + "': ";
  Checkpoint c;
  c.path = path;
  c.metadata = f.metadata();
  const auto meta = [&](const char* key) -> const std::string* {
    auto it = c.metadata.find(key);
    return it == c.metadata.end() ? nullptr : &it->second;
  };

  const std::string* config = meta("reca.config");
  RECA_CHECK(config != nullptr, Checkpoint,
             "checkpoint '%s' is not a reca-engine checkpoint: its metadata has no reca.config "
             "(a safetensors file from another program?)",
             path.c_str());
  // Without reca.format the file is read as a plain parameter file (what
  // other tools write with the config alone); with it, the version must match.
  if (const std::string* format = meta("reca.format"))
    RECA_CHECK(*format == kCheckpointFormat, Checkpoint,
               "checkpoint '%s' has format '%s'; this engine reads '%s'", path.c_str(),
               format->substr(0, 60).c_str(), kCheckpointFormat);
  as_checkpoint_error(where + "reca.config: ", [&] { c.config = ModelConfig::from_json(*config); });
  if (const std::string* dt = meta("reca.dtype"))
    RECA_CHECK(st_dtype_from_name(*dt, &c.storage) && is_float_storage(c.storage), Checkpoint,
               "%sreca.dtype '%s' is not F32, F16 or BF16", where.c_str(), dt->substr(0, 20).c_str());

  if (const std::string* tj = meta("reca.trainer")) {
    c.has_trainer = true;
    as_checkpoint_error(where + "reca.trainer: ",
                        [&] { c.trainer_options = trainer_options_from_json(*tj); });
    const std::string* step = meta("reca.step");
    const std::string* seed = meta("reca.seed");
    uint64_t s = 0;
    RECA_CHECK(step && parse_u64(*step, &s) && s <= static_cast<uint64_t>(INT64_MAX), Checkpoint,
               "%sreca.step must be a non-negative integer", where.c_str());
    c.step = static_cast<int64_t>(s);
    RECA_CHECK(seed && parse_u64(*seed, &c.seed), Checkpoint,
               "%sreca.seed must be an unsigned 64-bit integer", where.c_str());
    RECA_CHECK(c.seed == c.trainer_options.seed, Checkpoint,
               "%sreca.seed (%s) differs from the seed in reca.trainer", where.c_str(),
               seed->c_str());
    c.has_ema = c.trainer_options.ema > 0;
  }

  check_size_against_file(c, f, where);

  // Every tensor the file must hold, with its shape and dtype.
  struct Want {
    const ParamInfo* p;
    StDtype dtype;
    std::vector<float>* dst;
  };
  const ParamLayout layout(c.config);
  const Trainable tr = effective_trainable(c.trainer_options);
  std::map<std::string, Want> want;
  for (const ParamInfo& p : layout.params()) {
    want[p.name] = {&p, c.storage, &c.params};
    if (!c.has_trainer || !tr.group(p.group())) continue;
    want["optim.m." + p.name] = {&p, StDtype::F32, &c.exp_avg};
    want["optim.v." + p.name] = {&p, StDtype::F32, &c.exp_avg_sq};
    if (c.has_ema) want["ema." + p.name] = {&p, c.storage, &c.ema};
  }
  for (const std::string& name : f.names()) {
    auto it = want.find(name);
    if (it == want.end()) {
      const bool state = name.rfind("optim.", 0) == 0 || name.rfind("ema.", 0) == 0;
      fail(ErrorCode::Checkpoint, "%sunexpected tensor '%s'%s", where.c_str(),
           name.substr(0, 120).c_str(),
           !state              ? " (not a parameter of this config)"
           : !c.has_trainer    ? " (optimizer state without reca.trainer metadata)"
                               : " (no optimizer state is expected for it: frozen, or EMA off)");
    }
    const SafetensorsEntry& e = f.get(name);
    const Want& w = it->second;
    RECA_CHECK(e.shape == w.p->shape, Checkpoint, "%stensor '%s' has shape %s, expected %s",
               where.c_str(), name.c_str(), st_shape_str(e.shape).c_str(),
               st_shape_str(w.p->shape).c_str());
    RECA_CHECK(e.dtype == w.dtype, Checkpoint, "%stensor '%s' is %s, expected %s", where.c_str(),
               name.c_str(), st_dtype_name(e.dtype), st_dtype_name(w.dtype));
  }
  for (const auto& kv : want)
    RECA_CHECK(f.find(kv.first) != nullptr, Checkpoint, "%stensor '%s' is missing", where.c_str(),
               kv.first.c_str());

  // Values.
  const size_t n = static_cast<size_t>(layout.total());
  c.params.assign(n, 0.0f);
  if (c.has_trainer) {
    c.exp_avg.assign(n, 0.0f);
    c.exp_avg_sq.assign(n, 0.0f);
  }
  if (c.has_ema) c.ema = c.params;  // frozen ranges are filled from params below
  for (const auto& kv : want) {
    const Want& w = kv.second;
    float* dst = w.dst->data() + w.p->offset;
    f.read_f32(kv.first, w.p->shape, dst);
    for (int64_t i = 0; i < w.p->numel; ++i)
      RECA_CHECK(std::isfinite(dst[i]), Checkpoint,
                 "%stensor '%s' holds a non-finite value at index %lld", where.c_str(),
                 kv.first.c_str(), static_cast<long long>(i));
    if (w.dst == &c.exp_avg_sq)
      for (int64_t i = 0; i < w.p->numel; ++i)
        RECA_CHECK(dst[i] >= 0, Checkpoint, "%stensor '%s' holds a negative value at index %lld",
                   where.c_str(), kv.first.c_str(), static_cast<long long>(i));
  }
  // The EMA of a frozen tensor is the tensor itself (it never moves).
  if (c.has_ema)
    for (const ParamInfo& p : layout.params())
      if (!tr.group(p.group()))
        std::memcpy(c.ema.data() + p.offset, c.params.data() + p.offset,
                    static_cast<size_t>(p.numel) * 4);
  return c;
}

// ---------------------------------------------------------------- apply

void Checkpoint::check_model(const RecaModel& model) const {
  const std::string diff = config_difference(config, model.config());
  RECA_CHECK(diff.empty(), Checkpoint, "checkpoint '%s' does not fit this model: %s", path.c_str(),
             diff.c_str());
  RECA_CHECK(static_cast<int64_t>(params.size()) == model.param_floats(), Internal,
             "checkpoint '%s': parameter buffer size differs from the model's", path.c_str());
}

void Checkpoint::check_trainer(const Trainer& trainer) const {
  check_model(trainer.model());
  RECA_CHECK(has_trainer, Checkpoint,
             "checkpoint '%s' holds no optimizer state (it was saved without a trainer)",
             path.c_str());
  const Trainable tr = effective_trainable(trainer_options);
  for (const ParamInfo& p : trainer.model().layout().params()) {
    const bool here = trainer.trainable(p), there = tr.group(p.group());
    RECA_CHECK(here == there, Checkpoint,
               "checkpoint '%s': tensor '%s' is %s in this trainer but %s in the checkpoint "
               "(build the trainer from the checkpoint's trainer options)",
               path.c_str(), p.name.c_str(), here ? "trainable" : "frozen",
               there ? "trainable" : "frozen");
  }
  RECA_CHECK((trainer.ema() != nullptr) == has_ema, Checkpoint,
             "checkpoint '%s': EMA is %s in the checkpoint but %s in this trainer", path.c_str(),
             has_ema ? "on" : "off", trainer.ema() ? "on" : "off");
}

void Checkpoint::apply_to_model(RecaModel& model) const {
  check_model(model);
  model.set_params(params.data());
}

void Checkpoint::apply_to_trainer(Trainer& trainer) const {
  check_trainer(trainer);
  Backend& be = trainer.model().backend();
  const int64_t bytes = static_cast<int64_t>(exp_avg.size()) * 4;
  be.upload(trainer.exp_avg(), exp_avg.data(), bytes);
  be.upload(trainer.exp_avg_sq(), exp_avg_sq.data(), bytes);
  if (has_ema) be.upload(trainer.ema(), ema.data(), bytes);
  trainer.set_steps_done(step);
}

void Checkpoint::apply(RecaModel& model, Trainer* trainer) const {
  check_model(model);
  if (trainer) {
    RECA_CHECK(&trainer->model() == &model, InvalidArgument,
               "checkpoint apply: the trainer belongs to another model");
    check_trainer(*trainer);
  }
  apply_to_model(model);
  if (trainer) apply_to_trainer(*trainer);
}

}  // namespace reca::model
