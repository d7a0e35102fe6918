#include "addon/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>

#include "addon/addon.h"
#include "addon/errors.h"
#include "addon/inputs.h"
#include "addon/schema_js.h"
#include "core/error.h"
#include "core/mpi_loader.h"
#include "core/nccl_loader.h"
#include "cpu/image.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/communicator.h"
#include "model/sampler.h"

namespace reca::addon {

using model::ModelConfig;
using model::RecaModel;

namespace {

// A job made of two closures: `execute` on the engine thread, `result` on the
// JS thread. Whatever they capture (shared states, input copies) and the
// lease live until the job is destroyed, on the JS thread, after it settled.
class FnJob : public EngineWorker::Job {
 public:
  FnJob(std::unique_ptr<ModelLease> lease, std::function<void()> execute,
        std::function<Napi::Value(Napi::Env)> result)
      : lease_(std::move(lease)), execute_(std::move(execute)), result_(std::move(result)) {}
  void Execute() override { execute_(); }
  Napi::Value Result(Napi::Env env) override { return result_(env); }

 private:
  std::unique_ptr<ModelLease> lease_;
  std::function<void()> execute_;
  std::function<Napi::Value(Napi::Env)> result_;
};

Napi::Promise submit(Napi::Env env, const Napi::CallbackInfo& info, std::unique_ptr<ModelLease> lease,
                     std::function<void()> execute, std::function<Napi::Value(Napi::Env)> result) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  Napi::Object owner = info.This().IsObject() ? info.This().As<Napi::Object>() : Napi::Object();
  return addon->engine.Submit(
      env, std::make_unique<FnJob>(std::move(lease), std::move(execute), std::move(result)), owner);
}

// Bytes [n] of float images in [-1, 1] (SPEC §0), as a uint8 tensor of `shape`.
std::unique_ptr<HostTensor> image_bytes(const std::vector<float>& img, std::vector<int64_t> shape) {
  auto t = std::make_unique<HostTensor>(DType::Uint8, std::move(shape));
  cpu::image_to_bytes(static_cast<uint8_t*>(t->data()), img.data(), t->size());
  return t;
}

std::string path_arg(const Napi::Value& v, const char* what) {
  RECA_CHECK(v.IsString(), InvalidArgument, "%s must be a file path (a string)", what);
  std::string p = v.As<Napi::String>().Utf8Value();
  RECA_CHECK(!p.empty(), InvalidArgument, "%s is an empty path", what);
  RECA_CHECK(p.find('\0') == std::string::npos, InvalidArgument, "%s holds a NUL byte", what);
  return p;
}

model::SampleOptions sample_options(const Napi::Value& value, const std::string& what) {
  model::SampleOptions s;
  apply_js_options(value, model::sampler_schema(), &s, what, {"template"});
  s.validate();
  return s;
}

Napi::Value wrap_tensor(Napi::Env env, std::unique_ptr<HostTensor>& t) {
  return TensorWrap::Wrap(env, std::move(t));
}

// Runs produce(model, out, arena) on the engine thread into a new tensor of
// dtype/shape and resolves to it.
Napi::Promise submit_tensor(Napi::Env env, const Napi::CallbackInfo& info,
                            std::unique_ptr<ModelLease> lease, DType dtype, std::vector<int64_t> shape,
                            std::function<void(RecaModel&, void*, model::Arena&)> produce) {
  RecaModel* m = &lease->model();
  auto out = std::make_shared<std::unique_ptr<HostTensor>>();
  return submit(
      env, info, std::move(lease),
      [m, dtype, shape = std::move(shape), produce = std::move(produce), out] {
        *out = std::make_unique<HostTensor>(dtype, shape);
        model::Arena arena(m->backend());
        produce(*m, (*out)->data(), arena);
      },
      [out](Napi::Env e) { return wrap_tensor(e, *out); });
}

// Runs produce(img) on the engine thread, img being a float image batch
// [B, S, S, 3] in [-1, 1], and resolves to it as a uint8 Tensor.
Napi::Promise submit_images(Napi::Env env, const Napi::CallbackInfo& info,
                            std::unique_ptr<ModelLease> lease, int64_t B,
                            std::function<void(float* img)> produce) {
  const int64_t S = lease->model().config().image_size;
  auto out = std::make_shared<std::unique_ptr<HostTensor>>();
  return submit(
      env, info, std::move(lease),
      [B, S, produce = std::move(produce), out] {
        std::vector<float> img(static_cast<size_t>(B * S * S * 3));
        produce(img.data());
        *out = image_bytes(img, {B, S, S, 3});
      },
      [out](Napi::Env e) { return wrap_tensor(e, *out); });
}

}  // namespace

// ---- states and leases -------------------------------------------------------

TrainerState::~TrainerState() {
  trainer.reset();  // before the model it points into
  if (model) {
    auto& v = model->trainers;
    v.erase(std::remove(v.begin(), v.end(), this), v.end());
  }
}

ModelLease::ModelLease(std::shared_ptr<ModelState> state, Kind kind, const std::string& what)
    : state_(std::move(state)), kind_(kind) {
  ModelState& s = *state_;
  RECA_CHECK(!s.disposed, Disposed, "%s: the model was disposed", what.c_str());
  if (kind == Write) {
    RECA_CHECK(!s.writer && s.readers == 0, Busy,
               "%s: the model is busy (%s is running); await it first: a training step never "
               "runs beside another job on the same model",
               what.c_str(), s.running.c_str());
    s.writer = true;
  } else {
    RECA_CHECK(!s.writer, Busy,
               "%s: the model is busy (%s is running); await it first: sampling never runs beside "
               "a training step on the same model",
               what.c_str(), s.running.c_str());
    ++s.readers;
  }
  s.running = what;
}

ModelLease::~ModelLease() {
  if (kind_ == Write) state_->writer = false;
  else --state_->readers;
}

// ---- config ----------------------------------------------------------------

void apply_config_overrides(const Napi::Value& value, ModelConfig* cfg) {
  apply_js_options(value, model::config_schema(), cfg, "config");
}

// The backend a model lives on: 'cpu' (default) or 'cuda' (E_DEVICE with the
// reason when this build or machine has no CUDA device).
model::Backend& backend_for(const std::string& device) {
  if (device == "cpu") return model::cpu_backend();
  if (device == "cuda") return model::cuda_backend();
  fail(ErrorCode::InvalidArgument, "device must be 'cpu' or 'cuda', got '%s'", device.substr(0, 40).c_str());
}

// createModel({preset, mode, config, seed, device}) -> Promise<NativeModel>
Napi::Value RecaAddon::CreateModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Options o(info[0], "Model.create options");
    const std::string preset = o.string("preset", "tiny");
    ModelConfig cfg = ModelConfig::preset(preset, model::Mode::Mask);
    apply_config_overrides(o.get("config"), &cfg);
    if (o.has("mode")) {
      model::Mode m;
      RECA_CHECK(model::parse_mode(o.string("mode", ""), &m), InvalidArgument,
                 "mode must be 'ar', 'mask' or 'flow', got '%s'", o.string("mode", "").c_str());
      RECA_CHECK(!o.has("config") || !o.get("config").As<Napi::Object>().Has("mode") ||
                     m == cfg.mode,
                 InvalidArgument, "mode '%s' and config.mode '%s' disagree", model::mode_name(m),
                 model::mode_name(cfg.mode));
      cfg.mode = m;
    }
    cfg.validate();
    const uint64_t seed = o.seed("seed", 0);
    model::Backend& backend = backend_for(o.string("device", "cpu"));
    auto state = std::make_shared<ModelState>();
    return engine.Submit(
        env,
        std::make_unique<FnJob>(
            nullptr,
            [state, cfg, seed, &backend] {
              state->model = std::make_unique<RecaModel>(cfg, backend);
              state->model->init(seed);
            },
            [state](Napi::Env e) -> Napi::Value { return ModelWrap::Wrap(e, state); }),
        Napi::Object());
  });
}

// loadModel(path, {device}) -> Promise<NativeModel>
Napi::Value RecaAddon::LoadModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string path = path_arg(info[0], "Model.load path");
    model::Backend& backend = backend_for(Options(info[1], "Model.load options").string("device", "cpu"));
    auto state = std::make_shared<ModelState>();
    return engine.Submit(
        env,
        std::make_unique<FnJob>(
            nullptr,
            [state, path, &backend] {
              const model::Checkpoint c = model::load_checkpoint(path);
              state->model = std::make_unique<RecaModel>(c.config, backend);
              c.apply_to_model(*state->model);
            },
            [state](Napi::Env e) -> Napi::Value { return ModelWrap::Wrap(e, state); }),
        Napi::Object());
  });
}

// ---- ModelWrap ---------------------------------------------------------------

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceAccessor<&ModelWrap::GetConfig>("configJson"),
                         InstanceAccessor<&ModelWrap::GetParameterCount>("parameterCount"),
                         InstanceAccessor<&ModelWrap::GetDevice>("device"),
                         InstanceAccessor("disposed", &ModelWrap::GetDisposed, nullptr),
                         InstanceMethod<&ModelWrap::Memory>("memory"),
                         InstanceMethod<&ModelWrap::SequenceLength>("sequenceLength"),
                         InstanceMethod<&ModelWrap::Embed>("embed"),
                         InstanceMethod<&ModelWrap::Parameter>("parameter"),
                         InstanceMethod<&ModelWrap::ParameterNames>("parameterNames"),
                         InstanceMethod<&ModelWrap::Tokenize>("tokenize"),
                         InstanceMethod<&ModelWrap::Decode>("decode"),
                         InstanceMethod<&ModelWrap::Reconstruct>("reconstruct"),
                         InstanceMethod<&ModelWrap::Generate>("generate"),
                         InstanceMethod<&ModelWrap::GenerateRaw>("generateRaw"),
                         InstanceMethod<&ModelWrap::Caption>("caption"),
                         InstanceMethod<&ModelWrap::Save>("save"),
                         InstanceMethod<&ModelWrap::LoadParameters>("loadParameters"),
                         InstanceMethod<&ModelWrap::Dispose>("dispose"),
                     });
}

Napi::Object ModelWrap::Wrap(Napi::Env env, std::shared_ptr<ModelState> state) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  return Adopt(addon->model_class, addon->adopt_model, std::move(state));
}

std::shared_ptr<ModelState> ModelWrap::From(Napi::Env env, const Napi::Value& value,
                                            const char* what) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  return Of(value, addon->model_class, what, "Model")->Live();
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Handle(info) {
  Napi::Env env = info.Env();
  guarded(env, [&]() -> Napi::Value {
    RecaAddon* addon = env.GetInstanceData<RecaAddon>();
    RECA_CHECK(info.Length() == 0 && addon->adopt_model, InvalidArgument,
               "a Model is made by Model.create() or Model.load(), not by new");
    // Collected or disposed, the memory goes with the last holder: a running
    // job or a trainer may still share the state.
    const int64_t bytes = addon->adopt_model->model->param_floats() * 4;
    Hold(env, std::move(addon->adopt_model), bytes);
    return env.Undefined();
  });
}

Napi::Value ModelWrap::GetConfig(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), Live()->model->config().to_json());
  });
}

Napi::Value ModelWrap::GetParameterCount(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(Live()->model->parameter_count()));
  });
}

Napi::Value ModelWrap::GetDevice(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), Live()->model->backend().name());
  });
}

// {params, grads, optimizer, activations}: bytes held for this model and its
// trainers, in the memory of the model's device.
Napi::Value ModelWrap::Memory(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const ModelState& s = *Live();
    const int64_t params = s.model->param_floats() * 4;
    int64_t grads = 0, optimizer = 0, activations = s.sampler_bytes.load();
    for (const TrainerState* t : s.trainers) {
      if (!t->trainer) continue;
      grads += params;
      optimizer += t->trainer->state_bytes() - params;
      activations += t->activation_bytes.load();
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("params", Napi::Number::New(env, static_cast<double>(params)));
    out.Set("grads", Napi::Number::New(env, static_cast<double>(grads)));
    out.Set("optimizer", Napi::Number::New(env, static_cast<double>(optimizer)));
    out.Set("activations", Napi::Number::New(env, static_cast<double>(activations)));
    return out;
  });
}

Napi::Value ModelWrap::SequenceLength(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    model::Task task;
    RECA_CHECK(info[0].IsString() && model::parse_task(info[0].As<Napi::String>().Utf8Value(), &task),
               InvalidArgument, "task must be 'reca', 't2i' or 'i2t'");
    return Napi::Number::New(info.Env(),
                             static_cast<double>(Live()->model->config().seq_len(task)));
  });
}

Napi::Value ModelWrap::Embed(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.embed");
    const ModelConfig& c = lease->model().config();
    auto images = std::make_shared<ImageBatch>(read_images(env, info[0], c.image_size, "images"));
    std::vector<int64_t> shape{images->B, c.num_und_tokens(), c.width};
    return submit_tensor(env, info, std::move(lease), DType::Float32, std::move(shape),
                         [images](RecaModel& m, void* out, model::Arena& arena) {
                           m.embed(images->bytes.data(), images->B, static_cast<float*>(out), arena);
                         });
  });
}

// A copy of one parameter tensor as float32 (for probes and inspection; the
// model keeps its own), read on the engine thread like every other job.
Napi::Value ModelWrap::Parameter(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    RECA_CHECK(info.Length() >= 1 && info[0].IsString(), InvalidArgument,
               "parameter(name) takes a parameter name (see parameterNames())");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.parameter");
    const model::ParamInfo* p = lease->model().layout().find(name);
    RECA_CHECK(p != nullptr, InvalidArgument,
               "this model has no parameter '%s': parameterNames() lists them", name.c_str());
    const int64_t offset = p->offset, numel = p->numel;
    return submit_tensor(env, info, std::move(lease), DType::Float32, p->shape,
                         [offset, numel](RecaModel& m, void* out, model::Arena&) {
                           m.backend().download(out, m.params() + offset, numel * 4);
                         });
  });
}

Napi::Value ModelWrap::ParameterNames(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const auto& params = Live()->model->layout().params();
    Napi::Array out = Napi::Array::New(env, params.size());
    for (size_t i = 0; i < params.size(); ++i) out.Set(static_cast<uint32_t>(i), params[i].name);
    return out;
  });
}

Napi::Value ModelWrap::Tokenize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.tokenize");
    const ModelConfig& c = lease->model().config();
    RECA_CHECK(c.discrete(), InvalidArgument,
               "tokenize needs a discrete mode (ar or mask); this model is '%s'",
               model::mode_name(c.mode));
    auto images = std::make_shared<ImageBatch>(read_images(env, info[0], c.image_size, "images"));
    std::vector<int64_t> shape{images->B, c.num_image_tokens()};
    return submit_tensor(env, info, std::move(lease), DType::Int32, std::move(shape),
                         [images](RecaModel& m, void* out, model::Arena& arena) {
                           m.tokenize(images->bytes.data(), images->B, static_cast<int32_t*>(out), arena);
                         });
  });
}

Napi::Value ModelWrap::Decode(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.decode");
    const ModelConfig& c = lease->model().config();
    RECA_CHECK(c.discrete(), InvalidArgument,
               "decode needs a discrete mode (ar or mask); this model is '%s'",
               model::mode_name(c.mode));
    int64_t B = 0;
    auto codes = std::make_shared<std::vector<int32_t>>(
        read_codes(env, info[0], c.num_image_tokens(), c.codebook_size, &B));
    RecaModel* m = &lease->model();
    return submit_images(env, info, std::move(lease), B, [m, codes, B](float* img) {
      model::Arena arena(m->backend());
      m->decode(codes->data(), B, img, arena);
    });
  });
}

// reconstruct(images, {steps, cfg, temperature, topK, seed, template})
Napi::Value ModelWrap::Reconstruct(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.reconstruct");
    ModelState* st = &lease->state();
    const ModelConfig& c = lease->model().config();
    auto images = std::make_shared<ImageBatch>(read_images(env, info[0], c.image_size, "images"));
    const model::SampleOptions so = sample_options(info[1], "reconstruct options");
    const std::string tmpl =
        Options(info[1], "reconstruct options").string("template", model::TrainerOptions().template_text);
    return submit_images(env, info, std::move(lease), images->B,
                         [st, images, so, tmpl](float* img) {
                           model::Sampler sampler(*st->model);
                           sampler.reconstruct(images->bytes.data(), images->B, tmpl, so, img);
                           st->sampler_bytes.store(sampler.activation_bytes());
                         });
  });
}

namespace {
// The arguments of generate and generateRaw: (prompts, {steps, cfg, temperature, topK, seed}).
struct GenerateRequest {
  std::shared_ptr<std::vector<int32_t>> prompts;  // [B, max_text_len] token ids
  int64_t B = 0;
  model::SampleOptions options;
};
GenerateRequest read_generate_request(const Napi::CallbackInfo& info, const ModelConfig& c) {
  GenerateRequest rq;
  rq.prompts = std::make_shared<std::vector<int32_t>>();
  read_texts(info[0], -1, c.max_text_len, rq.prompts.get(), "prompts", &rq.B);
  rq.options = sample_options(info[1], "generate options");
  return rq;
}
}  // namespace

// generate(prompts, {steps, cfg, temperature, topK, seed})
Napi::Value ModelWrap::Generate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.generate");
    ModelState* st = &lease->state();
    const ModelConfig& c = lease->model().config();
    const GenerateRequest rq = read_generate_request(info, c);
    return submit_images(env, info, std::move(lease), rq.B, [st, rq](float* img) {
      model::Sampler sampler(*st->model);
      sampler.generate(rq.prompts->data(), rq.B, rq.options, img);
      st->sampler_bytes.store(sampler.activation_bytes());
    });
  });
}

// generateRaw(prompts, {steps, cfg, temperature, topK, seed}) -> Promise<{images, codes}>:
// the sampler's own output before bytes: images float32 [B, S, S, 3] in [-1, 1] and,
// in the discrete modes, the sampled codes int32 [B, N] (null in flow mode).
Napi::Value ModelWrap::GenerateRaw(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.generateRaw");
    ModelState* st = &lease->state();
    const ModelConfig& c = lease->model().config();
    const GenerateRequest rq = read_generate_request(info, c);
    const int64_t S = c.image_size, N = c.num_image_tokens();
    const bool discrete = c.discrete();
    auto images = std::make_shared<std::unique_ptr<HostTensor>>();
    auto codes = std::make_shared<std::unique_ptr<HostTensor>>();
    return submit(
        env, info, std::move(lease),
        [st, rq, S, N, discrete, images, codes] {
          *images = std::make_unique<HostTensor>(DType::Float32, std::vector<int64_t>{rq.B, S, S, 3});
          if (discrete) *codes = std::make_unique<HostTensor>(DType::Int32, std::vector<int64_t>{rq.B, N});
          model::Sampler sampler(*st->model);
          sampler.generate(rq.prompts->data(), rq.B, rq.options, static_cast<float*>((*images)->data()),
                           discrete ? static_cast<int32_t*>((*codes)->data()) : nullptr);
          st->sampler_bytes.store(sampler.activation_bytes());
        },
        [images, codes](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("images", wrap_tensor(e, *images));
          o.Set("codes", *codes ? wrap_tensor(e, *codes) : e.Null());
          return o;
        });
  });
}

// caption(images, {maxLength}) -> Promise<string[]>
Napi::Value ModelWrap::Caption(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.caption");
    ModelState* st = &lease->state();
    const ModelConfig& c = lease->model().config();
    auto images = std::make_shared<ImageBatch>(read_images(env, info[0], c.image_size, "images"));
    Options o(info[1], "caption options");
    const int64_t T = c.max_text_len;
    const int64_t max_len = o.integer("maxLength", T, 1, T);
    auto out = std::make_shared<std::vector<std::string>>();
    return submit(
        env, info, std::move(lease),
        [st, images, max_len, T, out] {
          model::Sampler sampler(*st->model);
          std::vector<int32_t> ids(static_cast<size_t>(images->B * T));
          sampler.caption(images->bytes.data(), images->B, max_len, ids.data());
          st->sampler_bytes.store(sampler.activation_bytes());
          for (int64_t b = 0; b < images->B; ++b) {
            std::string s;
            for (int64_t i = 0; i < T && ids[b * T + i] < 256; ++i)
              s.push_back(static_cast<char>(ids[b * T + i]));
            out->push_back(std::move(s));
          }
        },
        [out](Napi::Env e) -> Napi::Value {
          Napi::Array a = Napi::Array::New(e, out->size());
          // Invalid UTF-8 from an untrained model becomes U+FFFD.
          for (size_t i = 0; i < out->size(); ++i)
            a.Set(static_cast<uint32_t>(i), Napi::String::New(e, (*out)[i]));
          return a;
        });
  });
}

// save(path, {dtype, trainer}) -> Promise<void>
Napi::Value ModelWrap::Save(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string path = path_arg(info[0], "save path");
    Options o(info[1], "save options");
    const std::string dt = o.string("dtype", "float32");
    StDtype storage;
    if (dt == "float32") storage = StDtype::F32;
    else if (dt == "float16") storage = StDtype::F16;
    else if (dt == "bfloat16") storage = StDtype::BF16;
    else fail(ErrorCode::InvalidArgument, "save dtype must be 'float32', 'float16' or 'bfloat16', got '%s'", dt.c_str());
    std::shared_ptr<TrainerState> trainer;
    if (o.has("trainer")) {
      trainer = TrainerWrap::From(env, o.get("trainer"), "save options.trainer");
      RECA_CHECK(trainer->model == Live(), InvalidArgument,
                 "save options.trainer trains another model: save it with that model");
    }
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Read, "model.save");
    ModelState* st = &lease->state();
    return submit(
        env, info, std::move(lease),
        [st, trainer, path, storage] {
          // On several ranks every one holds the same state: rank 0 writes, the
          // others wait until the file is complete.
          model::Trainer* tr = trainer ? trainer->trainer.get() : nullptr;
          model::Communicator* comm = tr ? tr->communicator() : nullptr;
          if (!comm || comm->size() == 1) {
            model::save_checkpoint(path, *st->model, tr, storage);
            return;
          }
          std::exception_ptr failed;
          if (comm->rank() == 0) {
            try {
              model::save_checkpoint(path, *st->model, tr, storage);
            } catch (...) {
              failed = std::current_exception();
            }
          }
          // Doubles as the barrier, and tells every rank whether the write failed.
          const uint8_t ok = failed ? 0 : 1;
          std::vector<uint8_t> all(static_cast<size_t>(comm->size()));
          comm->allgather_bytes(&ok, 1, all.data());
          if (failed) std::rethrow_exception(failed);
          RECA_CHECK(all[0] == 1, Io, "rank 0 could not write the checkpoint '%s' (see its error)",
                     path.c_str());
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
  });
}

// loadParameters(path): the parameters of a checkpoint of this very config;
// anything else is E_CHECKPOINT and the model is left as it was.
Napi::Value ModelWrap::LoadParameters(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string path = path_arg(info[0], "loadParameters path");
    auto lease = std::make_unique<ModelLease>(Live(), ModelLease::Write, "model.loadParameters");
    ModelState* st = &lease->state();
    return submit(
        env, info, std::move(lease),
        [st, path] { model::load_checkpoint(path).apply_to_model(*st->model); },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
  });
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  if (Holds()) Live()->disposed = true;  // its trainers turn E_DISPOSED too
  Release(info.Env());                   // idempotent
  return info.Env().Undefined();
}

// ---- TrainerWrap -------------------------------------------------------------

Napi::Function TrainerWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeTrainer",
                     {
                         InstanceAccessor<&TrainerWrap::GetSteps>("steps"),
                         InstanceAccessor("disposed", &TrainerWrap::GetDisposed, nullptr),
                         InstanceAccessor<&TrainerWrap::GetOptions>("optionsJson"),
                         InstanceAccessor<&TrainerWrap::GetRank>("rank"),
                         InstanceAccessor<&TrainerWrap::GetRanks>("ranks"),
                         InstanceAccessor<&TrainerWrap::GetCommunicator>("communicator"),
                         InstanceMethod<&TrainerWrap::Step>("step"),
                         InstanceMethod<&TrainerWrap::Load>("load"),
                         InstanceMethod<&TrainerWrap::Dispose>("dispose"),
                     });
}

std::shared_ptr<TrainerState> TrainerWrap::From(Napi::Env env, const Napi::Value& value,
                                                const char* what) {
  RecaAddon* addon = env.GetInstanceData<RecaAddon>();
  return Of(value, addon->trainer_class, what, "Trainer")->Live();
}

TrainerWrap::TrainerWrap(const Napi::CallbackInfo& info) : Handle(info) {
  Napi::Env env = info.Env();
  guarded(env, [&]() -> Napi::Value {
    std::shared_ptr<ModelState> ms = ModelWrap::From(env, info[0], "the trainer's model");
    model::TrainerOptions t;
    apply_js_options(info[1], model::trainer_schema(), &t, "trainer options");
    t.validate();
    const std::string mode =
        info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : std::string("auto");
    RECA_CHECK(mode == "auto" || mode == "mpi" || mode == "off", InvalidArgument,
               "distributed must be 'auto', 'mpi' or 'off', got '%s'", mode.substr(0, 40).c_str());
    std::shared_ptr<model::Communicator> comm;
    if (mode == "mpi" || (mode == "auto" && mpi::launched())) {
      // MPI starts, and is later called, on the engine thread only.
      RecaAddon* addon = env.GetInstanceData<RecaAddon>();
      model::Backend& be = ms->model->backend();
      addon->engine.RunSync(env, [&comm, &be] {
        comm = model::mpi_world();
        // One GPU per rank: NCCL moves the device buffers when it is installed;
        // otherwise they go through host memory and MPI.
        if (comm->size() > 1 && std::strcmp(be.name(), "cuda") == 0 && nccl::probe().available)
          comm = model::nccl_world(comm, be.native_stream());
      });
    }
    // The EMA starts from the parameters: they must not be changing now.
    ModelLease lease(ms, ModelLease::Write, "new Trainer");
    auto state = std::make_shared<TrainerState>();
    state->model = ms;
    state->trainer = std::make_unique<model::Trainer>(*ms->model, t, comm);
    ms->trainers.push_back(state.get());
    const int64_t bytes = state->trainer->state_bytes();
    Hold(env, std::move(state), bytes);
    return env.Undefined();
  });
}

Napi::Value TrainerWrap::GetSteps(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(Live()->steps_done.load()));
  });
}

Napi::Value TrainerWrap::GetOptions(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(),
                             model::trainer_options_to_json(Live()->trainer->options()));
  });
}

Napi::Value TrainerWrap::GetRank(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), Live()->trainer->rank());
  });
}

Napi::Value TrainerWrap::GetRanks(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), Live()->trainer->ranks());
  });
}

Napi::Value TrainerWrap::GetCommunicator(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const model::Communicator* c = Live()->trainer->communicator();
    return c ? Napi::Value(Napi::String::New(info.Env(), c->describe())) : info.Env().Null();
  });
}

// step(images, captions?) -> Promise<StepResult>
Napi::Value TrainerWrap::Step(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    std::shared_ptr<TrainerState> ts = Live();
    auto lease = std::make_unique<ModelLease>(ts->model, ModelLease::Write, "trainer.step");
    const ModelConfig& c = lease->model().config();
    const model::TrainerOptions& opt = ts->trainer->options();
    auto images = std::make_shared<ImageBatch>(read_images(env, info[0], c.image_size, "images"));
    auto captions = std::make_shared<std::vector<int32_t>>();
    // Optional [reca, t2i, i2t] weights for this step (checked by the trainer).
    auto weights = std::make_shared<std::vector<double>>();
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      RECA_CHECK(info[2].IsArray() && info[2].As<Napi::Array>().Length() == 3, InvalidArgument,
                 "the step's task weights must be [reca, t2i, i2t]");
      Napi::Array a = info[2].As<Napi::Array>();
      for (uint32_t k = 0; k < 3; ++k) {
        Napi::Value v = a.Get(k);
        RECA_CHECK(v.IsNumber(), InvalidArgument, "the step's task weights must be numbers");
        weights->push_back(v.As<Napi::Number>().DoubleValue());
      }
    }
    const double w_t2i = weights->empty() ? opt.weight_t2i : (*weights)[1];
    const double w_i2t = weights->empty() ? opt.weight_i2t : (*weights)[2];
    const bool need = !opt.tokenizer && (w_t2i > 0 || w_i2t > 0 || opt.align_weight > 0);
    int64_t cut = 0;
    if (!info[1].IsUndefined() && !info[1].IsNull()) {
      cut = read_texts(info[1], images->B, c.max_text_len, captions.get(), "captions");
    } else {
      RECA_CHECK(!need, InvalidArgument,
                 "this trainer's tasks include %s, which need captions: pass {images, captions} "
                 "with one caption per image",
                 w_t2i > 0 ? "t2i" : w_i2t > 0 ? "i2t" : "the alignment loss (alignWeight)");
    }
    if (!need) captions->clear();
    auto stats = std::make_shared<model::StepStats>();
    return submit(
        env, info, std::move(lease),
        [ts, images, captions, weights, stats] {
          model::StepBatch b;
          b.task_weights = weights->empty() ? nullptr : weights->data();
          b.B = images->B;
          b.images = images->bytes.data();
          b.captions = captions->empty() ? nullptr : captions->data();
          *stats = ts->trainer->step(b);
          ts->activation_bytes.store(ts->trainer->activation_bytes());
          ts->steps_done.store(ts->trainer->steps_done());
        },
        [stats, cut](Napi::Env e) -> Napi::Value {
          const model::StepStats& s = *stats;
          auto num = [&](double v) { return Napi::Number::New(e, v); };
          Napi::Object r = Napi::Object::New(e);
          r.Set("step", num(static_cast<double>(s.step)));
          r.Set("loss", num(s.loss));
          Napi::Object losses = Napi::Object::New(e);
          if (!std::isnan(s.loss_reca)) losses.Set("reca", num(s.loss_reca));
          if (!std::isnan(s.loss_t2i)) losses.Set("t2i", num(s.loss_t2i));
          if (!std::isnan(s.loss_i2t)) losses.Set("i2t", num(s.loss_i2t));
          if (!std::isnan(s.loss_align)) losses.Set("align", num(s.loss_align));
          if (!std::isnan(s.loss_tokenizer)) losses.Set("tokenizer", num(s.loss_tokenizer));
          r.Set("losses", losses);
          r.Set("gradNorm", num(s.grad_norm));
          r.Set("clipScale", num(s.clip_scale));
          r.Set("lr", num(s.lr));
          r.Set("images", num(static_cast<double>(s.images)));
          r.Set("ranks", num(static_cast<double>(s.ranks)));
          r.Set("commSeconds", num(s.comm_seconds));
          r.Set("commBytes", num(static_cast<double>(s.comm_bytes)));
          r.Set("seconds", num(s.seconds));
          r.Set("cutBytes", num(static_cast<double>(cut)));
          r.Set("skipped", Napi::Boolean::New(e, s.skipped));
          r.Set("skippedSteps", num(static_cast<double>(s.skipped_steps)));
          if (s.skipped) r.Set("skipReason", Napi::String::New(e, s.skip_reason));
          if (s.codes_used >= 0) {
            r.Set("codesUsed", num(static_cast<double>(s.codes_used)));
            r.Set("codesRestarted", num(static_cast<double>(s.codes_restarted)));
          }
          return r;
        });
  });
}

// load(path): parameters, moments, EMA and step count from a checkpoint saved
// with a trainer of the same config and trainable set; on any mismatch
// E_CHECKPOINT and nothing changes.
Napi::Value TrainerWrap::Load(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    std::shared_ptr<TrainerState> ts = Live();
    const std::string path = path_arg(info[0], "trainer.load path");
    auto lease = std::make_unique<ModelLease>(ts->model, ModelLease::Write, "trainer.load");
    return submit(
        env, info, std::move(lease),
        [ts, path] {
          model::load_checkpoint(path).apply(*ts->model->model, ts->trainer.get());
          ts->steps_done.store(ts->trainer->steps_done());
        },
        [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
  });
}

Napi::Value TrainerWrap::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace reca::addon
