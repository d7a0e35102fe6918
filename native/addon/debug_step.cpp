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
// The batch is made from the seed: shapes scenes (a colored circle, square or
// triangle on a plain background, with a little Philox noise) and captions
// that describe them, some longer than max_text_len so the UTF-8 cut shows.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "addon/addon.h"
#include "addon/errors.h"
#include "addon/inputs.h"
#include "core/error.h"
#include "core/json.h"
#include "core/philox.h"
#include "core/safetensors.h"
#include "model/backend.h"
#include "model/checkpoint.h"

namespace reca::addon {
namespace {

using model::ModelConfig;

struct Color {
  const char* name;
  uint8_t rgb[3];
};
constexpr Color kPalette[] = {
    {"red", {220, 40, 40}},    {"green", {40, 180, 60}},   {"blue", {40, 70, 220}},
    {"yellow", {235, 215, 50}}, {"white", {245, 245, 245}}, {"black", {15, 15, 15}},
    {"orange", {240, 140, 30}}, {"purple", {140, 60, 180}},
};
constexpr int kColors = sizeof kPalette / sizeof kPalette[0];
const char* const kShapes[] = {"circle", "square", "triangle"};
constexpr uint64_t kSceneStream = 0x5CE;

// Scene b of a seed: images [S, S, 3] and its caption.
std::string draw_scene(uint64_t seed, int64_t b, int64_t S, uint8_t* img) {
  const uint64_t stream = kSceneStream << 32 | static_cast<uint64_t>(b);
  auto u = [&](uint64_t i) { return philox_uniform(seed, stream, i); };
  const int bg = static_cast<int>(u(0) * kColors) % kColors;
  int fg = static_cast<int>(u(1) * (kColors - 1)) % (kColors - 1);
  if (fg >= bg) ++fg;
  const int shape = static_cast<int>(u(2) * 3) % 3;
  const double r = S * (0.18 + 0.15 * u(3));
  const double cx = r + (S - 2 * r) * u(4), cy = r + (S - 2 * r) * u(5);
  for (int64_t y = 0; y < S; ++y)
    for (int64_t x = 0; x < S; ++x) {
      const double px = x + 0.5 - cx, py = y + 0.5 - cy;
      bool in = false;
      if (shape == 0) in = px * px + py * py <= r * r;
      else if (shape == 1) in = std::fabs(px) <= r && std::fabs(py) <= r;
      else in = py >= -r && py <= r && std::fabs(px) <= (py + r) / 2;
      const uint8_t* c = kPalette[in ? fg : bg].rgb;
      for (int k = 0; k < 3; ++k) {
        const uint64_t i = 16 + static_cast<uint64_t>((y * S + x) * 3 + k);
        const int v = c[k] + static_cast<int>(std::lround(16.0 * (u(i) - 0.5)));
        img[(y * S + x) * 3 + k] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  std::string cap = std::string("a ") + kPalette[fg].name + " " + kShapes[shape];
  switch (b % 4) {
    case 1: return cap + " on " + kPalette[bg].name;
    case 2: return cap + " near the café";  // multi-byte UTF-8
    case 3: return cap + " on a " + kPalette[bg].name + " background, slightly off center";
    default: return cap;
  }
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  RECA_CHECK(f && (f << text) && f.flush(), Io, "could not write %s: %s", path.c_str(),
             std::strerror(errno));
}

struct DebugStepJob : public EngineWorker::Job {
  std::string preset, task_name, out;
  model::Mode mode = model::Mode::Mask;
  uint64_t seed = 0;
  int64_t B = 4;
  model::TrainerOptions opts;
  std::string result;

  void Execute() override {
    const ModelConfig cfg = ModelConfig::preset(preset, mode);
    model::Backend& be = model::cpu_backend();
    model::RecaModel m(cfg, be);
    m.init(seed);
    const int64_t S = cfg.image_size, T = cfg.max_text_len, P = m.param_floats();
    const model::ParamLayout& layout = m.layout();

    // The batch.
    std::vector<uint8_t> images(static_cast<size_t>(B * S * S * 3));
    std::vector<int32_t> captions(static_cast<size_t>(B * T));
    int64_t cut = 0;
    for (int64_t b = 0; b < B; ++b) {
      const std::string cap = draw_scene(seed, b, S, images.data() + b * S * S * 3);
      cut += model::encode_text(cap, T, captions.data() + b * T);
    }

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
    r.key("mode").string(model::mode_name(mode));
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

// debugStep({preset, mode, task, seed, batch, out, lr?, condDropout?, freeze?})
//   -> Promise<string> (result.json's text)
Napi::Value RecaAddon::DebugStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Options o(info[0], "debug-step options");
    auto job = std::make_unique<DebugStepJob>();
    job->preset = o.string("preset", "tiny");
    RECA_CHECK(model::parse_mode(o.string("mode", "mask"), &job->mode), InvalidArgument,
               "mode must be 'ar', 'mask' or 'flow', got '%s'", o.string("mode", "").c_str());
    ModelConfig::preset(job->preset, job->mode);  // E_INVALID_ARGUMENT for an unknown preset
    job->task_name = o.string("task", "reca");
    job->seed = o.seed("seed", 0);
    job->B = o.integer("batch", 4, 1, 4096);
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
    t.weight_reca = t.weight_t2i = t.weight_i2t = 0;
    if (job->task_name == "reca") t.weight_reca = 1;
    else if (job->task_name == "t2i") t.weight_t2i = 1;
    else if (job->task_name == "i2t") t.weight_i2t = 1;
    else if (job->task_name == "vq") t.tokenizer = true;
    else
      fail(ErrorCode::InvalidArgument, "task must be 'reca', 't2i', 'i2t' or 'vq', got '%s'",
           job->task_name.c_str());
    RECA_CHECK(!t.tokenizer || job->mode != model::Mode::Flow, InvalidArgument,
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
    return engine.Submit(env, std::move(job), Napi::Object());
  });
}

}  // namespace reca::addon
