// debugStep(options) -> Promise<result>: one training step of a fresh model
// with every random draw recorded, dumped in the layout of SPEC §9 so any
// framework can check it (tools/reference/verify_step.py does):
//
//   params.safetensors        every parameter before the step (F32, SPEC names)
//   batch.safetensors         images u8 [B,S,S,3]; text i32 [B,T] as used (after
//                             dropout; the caption targets for i2t); dropped u8 [B];
//                             masked u8 [B,N] (mask mode image tasks); t f32 [B] and
//                             noise f32 [B,N,3P²] (flow mode image tasks)
//   grads.safetensors         the gradient before clipping, trainable parameters only
//   params_after.safetensors  every parameter after the update
//   result.json               {preset, mode, task, seed, batch, loss, grad_norm, trainable,
//                              cond_grad_scale, optimizer, config, ...}
//
// The batch comes from the caller (lib/debug_step.ts renders shapes-world
// scenes at the preset's image size, from the schema's preset table): images
// u8 [B,S,S,3] and one caption each, encoded and cut to max_text_len here.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "addon/addon.h"
#include "addon/errors.h"
#include "addon/inputs.h"
#include "core/error.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "model/backend.h"
#include "model/checkpoint.h"

namespace reca::addon {
namespace {

using model::ModelConfig;

// The preset's config for a mode given by name (E_INVALID_ARGUMENT for either unknown).
ModelConfig preset_config(const std::string& preset, const std::string& mode_name) {
  model::Mode mode;
  RECA_CHECK(model::parse_mode(mode_name, &mode), InvalidArgument,
             "mode must be 'ar', 'mask' or 'flow', got '%s'", mode_name.c_str());
  return ModelConfig::preset(preset, mode);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  RECA_CHECK(f && (f << text) && f.flush(), Io, "could not write %s: %s", path.c_str(),
             std::strerror(errno));
}

struct DebugStepJob : public EngineWorker::Job {
  std::string preset, task_name, out;
  ModelConfig cfg;
  uint64_t seed = 0;
  int64_t B = 0;
  std::vector<uint8_t> images;    // [B, S, S, 3]
  std::vector<int32_t> captions;  // [B, T] byte ids, cut and PAD-filled
  int64_t cut = 0;                // bytes the cut dropped over all captions
  model::TrainerOptions opts;
  std::string result;

  void Execute() override {
    model::Backend& be = model::cpu_backend();
    model::RecaModel m(cfg, be);
    m.init(seed);
    const int64_t S = cfg.image_size, T = cfg.max_text_len, P = m.param_floats();
    const model::ParamLayout& layout = m.layout();

    std::vector<float> before(static_cast<size_t>(P)), after(static_cast<size_t>(P)),
        grads(static_cast<size_t>(P));
    m.get_params(before.data());
    model::Trainer trainer(m, opts);
    model::StepBatch batch;
    batch.B = B;
    batch.images = images.data();
    batch.captions = captions.data();
    std::vector<model::TaskDraws> used;
    const model::StepStats st = trainer.step(batch, nullptr, &used);
    m.get_params(after.data());
    be.download(grads.data(), trainer.grads(), P * 4);

    const std::string config = cfg.to_json();
    auto params_file = [&](const std::vector<float>& x, const std::string& path) {
      SafetensorsWriter w;
      for (const model::ParamInfo& p : layout.params())
        w.add_view(p.name, StDtype::F32, p.shape, x.data() + p.offset,
                   static_cast<size_t>(p.numel) * 4);
      w.set_metadata("reca.config", config);
      w.write_atomic(path);
    };
    params_file(before, out + "/params.safetensors");
    params_file(after, out + "/params_after.safetensors");

    std::vector<std::string> trainable;
    {
      SafetensorsWriter w;
      for (const model::ParamInfo& p : layout.params()) {
        if (!trainer.trainable(p)) continue;
        w.add_view(p.name, StDtype::F32, p.shape, grads.data() + p.offset,
                   static_cast<size_t>(p.numel) * 4);
        trainable.push_back(p.name);
      }
      w.write_atomic(out + "/grads.safetensors");
    }
    {
      SafetensorsWriter w;
      w.add_view("images", StDtype::U8, {B, S, S, 3}, images.data(), images.size());
      if (!used.empty()) {
        const model::TaskDraws& d = used[0];
        const int64_t N = cfg.num_image_tokens(), D = cfg.patch_dim();
        w.add_view("text", StDtype::I32, {B, T}, d.text.data(), d.text.size() * 4);
        w.add_view("dropped", StDtype::U8, {B}, d.dropped.data(), d.dropped.size());
        if (!d.masked.empty())
          w.add_view("masked", StDtype::U8, {B, N}, d.masked.data(), d.masked.size());
        if (!d.t.empty()) {
          w.add_view("t", StDtype::F32, {B}, d.t.data(), d.t.size() * 4);
          w.add_view("noise", StDtype::F32, {B, N, D}, d.noise.data(), d.noise.size() * 4);
        }
      }
      w.write_atomic(out + "/batch.safetensors");
    }

    JsonWriter r;
    r.begin_object();
    r.key("preset").string(preset);
    r.key("mode").string(model::mode_name(cfg.mode));
    r.key("task").string(task_name);
    r.key("seed").integer(static_cast<int64_t>(seed));
    r.key("batch").integer(B);
    r.key("loss").number(st.loss);
    r.key("grad_norm").number(st.grad_norm);
    r.key("clip_scale").number(st.clip_scale);
    r.key("trainable").begin_array();
    for (const std::string& name : trainable) r.string(name);
    r.end_array();
    r.key("cond_grad_scale").number(opts.cond_grad_scale);
    r.key("cond_dropout").number(opts.cond_dropout);
    r.key("matmul_precision").string(opts.matmul_precision == model::MatmulPrecision::Bf16 ? "bf16" : "fp32");
    r.key("optimizer").begin_object();
    r.key("lr").number(st.lr);
    r.key("betas").begin_array().number(opts.beta1).number(opts.beta2).end_array();
    r.key("eps").number(opts.eps);
    r.key("weight_decay").number(opts.weight_decay);
    r.key("max_grad_norm").number(opts.max_grad_norm);
    r.end_object();
    r.key("config").raw(config);
    r.key("captions").begin_array();
    if (task_name == "t2i" || task_name == "i2t")
      for (int64_t b = 0; b < B; ++b) {
        std::string s;
        for (int64_t i = 0; i < T && captions[b * T + i] < 256; ++i)
          s.push_back(static_cast<char>(captions[b * T + i]));
        r.string(s);
      }
    r.end_array();
    r.key("cut_bytes").integer(task_name == "t2i" || task_name == "i2t" ? cut : 0);
    r.key("seconds").number(st.seconds);
    r.end_object();
    result = r.str();
    write_file(out + "/result.json", result + "\n");
  }

  Napi::Value Result(Napi::Env env) override { return Napi::String::New(env, result); }
};

}  // namespace

// debugStep({preset, mode, task, seed, out, images, captions, lr?, condDropout?,
// condGradScale?, freeze?}) -> Promise<string> (result.json's text)
Napi::Value RecaAddon::DebugStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Options o(info[0], "debug-step options");
    auto job = std::make_unique<DebugStepJob>();
    job->preset = o.string("preset", "tiny");
    job->cfg = preset_config(job->preset, o.string("mode", "mask"));
    job->task_name = o.string("task", "reca");
    job->seed = o.seed("seed", 0);
    job->out = o.string("out", "");
    RECA_CHECK(!job->out.empty(), InvalidArgument, "debug-step needs an output directory (out)");
    struct stat sb;
    RECA_CHECK(stat(job->out.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode), Io,
               "output directory %s does not exist", job->out.c_str());

    model::TrainerOptions& t = job->opts;
    t.seed = job->seed;
    t.lr = o.number("lr", 1e-3);
    t.cond_dropout = o.number("condDropout", t.cond_dropout);
    t.cond_grad_scale = o.number("condGradScale", t.cond_grad_scale);
    const std::string precision = o.string("matmulPrecision", "fp32");
    RECA_CHECK(precision == "fp32" || precision == "bf16", InvalidArgument,
               "matmulPrecision must be 'fp32' or 'bf16', got '%s'", precision.c_str());
    t.matmul_precision = precision == "bf16" ? model::MatmulPrecision::Bf16 : model::MatmulPrecision::Fp32;
    t.weight_reca = t.weight_t2i = t.weight_i2t = 0;
    if (job->task_name == "reca") t.weight_reca = 1;
    else if (job->task_name == "t2i") t.weight_t2i = 1;
    else if (job->task_name == "i2t") t.weight_i2t = 1;
    else if (job->task_name == "vq") t.tokenizer = true;
    else
      fail(ErrorCode::InvalidArgument, "task must be 'reca', 't2i', 'i2t' or 'vq', got '%s'",
           job->task_name.c_str());
    RECA_CHECK(!t.tokenizer || job->cfg.mode != model::Mode::Flow, InvalidArgument,
               "task 'vq' (the tokenizer loss) needs a discrete mode (ar or mask)");
    // Everything the task reaches trains, so the dump checks every backward
    // path (vq.* gets no gradient from generator tasks: frozen by default).
    t.trainable = model::Trainable{true, true, false, true};
    if (o.has("freeze")) {
      Napi::Value f = o.get("freeze");
      RECA_CHECK(f.IsArray(), InvalidArgument, "freeze must be an array of group names");
      Napi::Array a = f.As<Napi::Array>();
      t.trainable = model::Trainable{true, true, true, true};
      for (uint32_t i = 0; i < a.Length(); ++i) {
        const std::string g = a.Get(i).ToString().Utf8Value();
        if (g == "und") t.trainable.und = false;
        else if (g == "conn") t.trainable.conn = false;
        else if (g == "vq") t.trainable.vq = false;
        else if (g == "gen") t.trainable.gen = false;
        else fail(ErrorCode::InvalidArgument, "freeze: unknown group '%s' (und, conn, vq, gen)", g.c_str());
      }
    }
    t.validate();
    ImageBatch batch = read_images(env, o.get("images"), job->cfg.image_size, "debug-step images");
    job->B = batch.B;
    job->images = std::move(batch.bytes);
    job->cut = read_texts(o.get("captions"), job->B, job->cfg.max_text_len, &job->captions,
                          "debug-step captions");
    return engine.Submit(env, std::move(job), Napi::Object());
  });
}

}  // namespace reca::addon
