// The JSON module, config and trainer-option JSON, and model checkpoints:
// bitwise round trips, F16/BF16 storage, resume determinism (5 + 5 steps ==
// 10 steps, 1 thread == 2 threads), every kind of bad checkpoint rejected
// with the model and trainer in memory unchanged, and failed saves that keep
// the old file.
//
// With RECA_CHECKPOINT_SAMPLES=<dir> set, the round-trip tests also leave
// their files there for tools/reference/check_checkpoint.py.
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "core/threadpool.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "tests/alloc_probe.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

using Bytes = std::vector<uint8_t>;

// Runs fn; expects reca::Error `want` whose message contains `needle`.
void expect_error(ErrorCode want, const std::function<void()>& fn, const std::string& what,
                  const std::string& needle = "") {
  try {
    fn();
    report_failure(what + ": no error thrown");
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (e.code() != want)
      report_failure(what + ": threw " + error_code_name(e.code()) + " (want " +
                     error_code_name(want) + "): " + msg);
    else if (!needle.empty() && msg.find(needle) == std::string::npos)
      report_failure(what + ": message lacks \"" + needle + "\": " + msg);
  } catch (const std::exception& e) {
    report_failure(what + ": threw a non-reca exception: " + e.what());
  }
}

Bytes read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/reca_ckpt_XXXXXX";
    if (::mkdtemp(tmpl)) path = tmpl;
  }
  ~TempDir() {
    if (path.empty()) return;
    ::nftw(path.c_str(),
           [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
           FTW_DEPTH | FTW_PHYS);
  }
};

// Where samples for the independent reader go ("" when not requested).
std::string sample_dir() {
  const char* d = std::getenv("RECA_CHECKPOINT_SAMPLES");
  return d ? d : "";
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

std::vector<float> model_params(const RecaModel& m) {
  std::vector<float> p(static_cast<size_t>(m.param_floats()));
  m.get_params(p.data());
  return p;
}

// Host copies of a trainer's state buffers.
struct State {
  std::vector<float> m, v, ema;
  int64_t step = 0;
  bool operator==(const State& o) const {
    return same_bits(m, o.m) && same_bits(v, o.v) && same_bits(ema, o.ema) && step == o.step;
  }
};
State trainer_state(Trainer& t) {
  const int64_t n = t.model().param_floats();
  State s;
  s.m.resize(static_cast<size_t>(n));
  s.v.resize(static_cast<size_t>(n));
  t.model().backend().download(s.m.data(), t.exp_avg(), n * 4);
  t.model().backend().download(s.v.data(), t.exp_avg_sq(), n * 4);
  if (t.ema()) {
    s.ema.resize(static_cast<size_t>(n));
    t.model().backend().download(s.ema.data(), t.ema(), n * 4);
  }
  s.step = t.steps_done();
  return s;
}

// Random u8 images and PAD-filled captions for a batch of B.
struct Data {
  std::vector<uint8_t> images;
  std::vector<int32_t> captions;
  StepBatch batch(int64_t B) {
    StepBatch b;
    b.B = B;
    b.images = images.data();
    b.captions = captions.data();
    return b;
  }
};
Data make_data(const ModelConfig& c, int64_t B, uint64_t seed) {
  Rand r(seed);
  Data d;
  d.images.resize(static_cast<size_t>(B * c.image_size * c.image_size * 3));
  for (auto& x : d.images) x = static_cast<uint8_t>(r.index(256));
  d.captions.resize(static_cast<size_t>(B * c.max_text_len));
  const char* caps[] = {"a red square", "two blue circles on grey", "stripes", "a small dot"};
  for (int64_t b = 0; b < B; ++b)
    encode_text(caps[b % 4], c.max_text_len, d.captions.data() + b * c.max_text_len);
  return d;
}

// Options that make every piece of state matter on resume: EMA, warmup then
// cosine (the LR depends on the step), two tasks with CFG dropout, micro-batches.
TrainerOptions resume_options(uint64_t seed) {
  TrainerOptions o;
  o.weight_reca = 1.0;
  o.weight_t2i = 0.5;
  o.micro_batch = 3;
  o.lr = 3e-3;
  o.warmup = 3;
  o.total_steps = 12;
  o.schedule = Schedule::Cosine;
  o.min_lr = 1e-4;
  o.ema = 0.9;
  o.trainable = Trainable{false, true, false, true};
  o.seed = seed;
  return o;
}

void train(Trainer& t, Data& d, int64_t B, int steps, std::vector<double>* losses) {
  for (int i = 0; i < steps; ++i) {
    const StepStats st = t.step(d.batch(B));
    if (losses) losses->push_back(st.loss);
  }
}

// Rewrites checkpoint `src` into `dst` tensor by tensor; `edit` may change the
// list (names/dtypes/shapes/bytes) and the metadata before writing.
struct Tensor {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  Bytes bytes;
};
void rewrite(const std::string& src, const std::string& dst,
             const std::function<void(std::vector<Tensor>&, std::map<std::string, std::string>&)>& edit) {
  const SafetensorsFile f = SafetensorsFile::open(src);
  std::vector<Tensor> ts;
  for (const std::string& n : f.names()) {
    const SafetensorsEntry& e = f.get(n);
    ts.push_back({n, e.dtype, e.shape, Bytes(e.data, e.data + e.nbytes)});
  }
  std::map<std::string, std::string> meta = f.metadata();
  edit(ts, meta);
  SafetensorsWriter w;
  for (const Tensor& t : ts) w.add(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
  for (const auto& kv : meta) w.set_metadata(kv.first, kv.second);
  w.write_atomic(dst);
}

Tensor* find_tensor(std::vector<Tensor>& ts, const std::string& name) {
  for (Tensor& t : ts)
    if (t.name == name) return &t;
  report_failure("test setup: no tensor " + name);
  return &ts[0];
}

}  // namespace

// ---------------------------------------------------------------- JSON

// A flat object's members as written (key, value text), read with the strict reader.
std::vector<std::pair<std::string, std::string>> json_members(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  JsonReader r(text.data(), text.size(), ErrorCode::Internal, "test");
  r.read_object([&](std::string&& key) {
    const size_t at = r.pos();
    r.skip_value();
    out.emplace_back(std::move(key), text.substr(at, r.pos() - at));
  });
  return out;
}

std::string json_object(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string s = "{";
  for (size_t i = 0; i < members.size(); ++i)
    s += (i ? "," : "") + json_quote(members[i].first) + ":" + members[i].second;
  return s + "}";
}

// The flat object `json` with `field` set to the value text (appended when absent).
std::string json_with(const std::string& json, const std::string& field, const std::string& value) {
  auto ms = json_members(json);
  bool found = false;
  for (auto& m : ms)
    if (m.first == field) m.second = value, found = true;
  if (!found) ms.emplace_back(field, value);
  return json_object(ms);
}

std::string json_without(const std::string& json, const std::string& field) {
  std::vector<std::pair<std::string, std::string>> kept;
  for (auto& m : json_members(json))
    if (m.first != field) kept.push_back(m);
  return json_object(kept);
}

RECA_TEST(json_reader_values_and_writer) {
  const std::string doc =
      " {\"a\": [1, -2, 3.5, 1e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"], \"b\": {}, "
      "\"c\": 9223372036854775807, \"d\": -9223372036854775808, \"e\": 9223372036854775808, "
      "\"f\": 9007199254740993, \"g\": -0, \"h\": 0.1} ";
  json_validate(doc, ErrorCode::InvalidArgument);
  std::vector<JsonNumber> nums;
  std::vector<std::string> keys;
  std::string text;
  int bools = 0, nulls = 0;
  JsonReader r(doc.data(), doc.size(), ErrorCode::InvalidArgument, "doc");
  r.read_object([&](std::string&& key) {
    keys.push_back(key);
    JsonType t;
    r.peek_type(&t);
    if (t == JsonType::Number) {
      nums.push_back(r.read_number());
    } else if (t == JsonType::Array) {
      r.read_array("a", [&] {
        JsonType u;
        r.peek_type(&u);
        if (u == JsonType::Number) nums.push_back(r.read_number());
        else if (u == JsonType::Bool) bools += r.read_bool() ? 1 : 10;
        else if (u == JsonType::Null) r.read_null(), ++nulls;
        else text = r.read_string();
      });
    } else {
      r.skip_value();
    }
  });
  r.expect_end();
  expect_true(keys.size() == 8 && nums.size() == 10, "8 keys, 10 numbers");
  expect_true(nums[0].is_int && nums[0].i == 1 && nums[1].is_int && nums[1].i == -2, "1, -2 integers");
  expect_true(!nums[2].is_int && nums[2].d == 3.5, "3.5");
  expect_true(!nums[3].is_int && nums[3].d == 1000.0, "1e3 is a number, not an integer literal");
  expect_true(bools == 11 && nulls == 1, "true false null");
  expect_true(text == "x\xc3\xa9\xf0\x9f\x98\x80", "escapes decoded");
  expect_true(nums[4].is_int && nums[4].i == INT64_MAX, "INT64_MAX exact");
  expect_true(nums[5].is_int && nums[5].i == INT64_MIN, "INT64_MIN exact");
  expect_true(!nums[6].is_int && nums[6].d == 9223372036854775808.0, "beyond int64: a double");
  expect_true(nums[7].i == 9007199254740993LL, "2^53 + 1 exact");
  expect_true(nums[8].is_int && nums[8].i == 0, "-0");
  expect_true(nums[9].d == 0.1, "0.1 correctly rounded");

  // Doubles round-trip bit for bit through json_number.
  auto parse_double = [](const std::string& s) {
    JsonReader q(s.data(), s.size(), ErrorCode::Internal, "n");
    const double d = q.read_number().d;
    q.expect_end();
    return d;
  };
  Rand rng(7);
  for (int i = 0; i < 20000; ++i) {
    uint64_t bits = rng.gen();
    double x;
    std::memcpy(&x, &bits, 8);
    if (!std::isfinite(x)) continue;
    const double y = parse_double(json_number(x));
    if (std::memcmp(&x, &y, 8) != 0) {
      report_failure("json_number round trip: " + json_number(x));
      break;
    }
  }
  for (const double x : {0.0, -0.0, 1.0, 1e-300, 5e-324, DBL_MAX, -DBL_MIN, 1e21, 123456789.0}) {
    const double y = parse_double(json_number(x));
    expect_true(std::memcmp(&x, &y, 8) == 0, "json_number(" + json_number(x) + ")");
  }
  expect_error(ErrorCode::InvalidArgument, [] { json_number(NAN); }, "NaN has no JSON", "JSON");
  expect_error(ErrorCode::InvalidArgument, [] { JsonWriter().number(INFINITY); }, "inf has no JSON");

  // The writer: commas, nesting, escapes, exact integers, 17-digit doubles.
  JsonWriter w;
  w.begin_object();
  w.key("k").integer(INT64_MAX);
  w.key("s").string("q\"\n\x01");
  w.key("a").begin_array().number(0.5).null().begin_object().end_object().begin_array().end_array();
  w.number(0.1).end_array();
  w.key("b").boolean(false).key("r").raw("[1,2]");
  w.end_object();
  const std::string want =
      "{\"k\":9223372036854775807,\"s\":\"q\\\"\\n\\u0001\",\"a\":[0.5,null,{},[],"
      "0.10000000000000001],\"b\":false,\"r\":[1,2]}";
  expect_true(w.str() == want, "writer: " + w.str());
  json_validate(w.str(), ErrorCode::Internal);
}

RECA_TEST(json_rejects_malformed_documents) {
  // The caller picks the error code and the context.
  expect_error(ErrorCode::Checkpoint, [] { json_validate("{", ErrorCode::Checkpoint, "my doc"); },
               "caller's code and context", "my doc at byte 1");
  struct Bad {
    const char* text;
    const char* needle;
  };
  const Bad bad[] = {
      {"", "end of input"},
      {"   ", "end of input"},
      {"{\"a\":1,}", "string key"},
      {"[1,]", "expected a value"},
      {"[1 2]", "expected ',' or ']'"},
      {"{\"a\" 1}", "expected ':'"},
      {"{\"a\":1,\"a\":2}", "duplicate key"},
      {"{a:1}", "string key"},
      {"01", "leading zero"},
      {"-", "expected a number"},
      {"1.", "decimal point"},
      {".5", "expected a value"},
      {"1e", "exponent"},
      {"+1", "expected a value"},
      {"NaN", "expected a value"},
      {"Infinity", "expected a value"},
      {"1e400", "out of range"},
      {"tru", "true or false"},
      {"nul", "null"},
      {"\"abc", "unterminated"},
      {"\"a\nb\"", "control character"},
      {"\"\\x\"", "invalid escape"},
      {"\"\\ud800\"", "surrogate"},
      {"\"\xff\"", "UTF-8"},
      {"\"\xc0\xaf\"", "UTF-8"},
      {"{} {}", "after the document"},
      {"1 x", "after the document"},
      {"'a'", "expected a value"},
  };
  for (const Bad& b : bad)
    expect_error(ErrorCode::InvalidArgument, [&] { json_validate(b.text, ErrorCode::InvalidArgument); },
                 std::string("malformed ") + b.text, b.needle);
  // Depth and size limits.
  const std::string deep = std::string(65, '[') + std::string(65, ']');
  expect_error(ErrorCode::InvalidArgument, [&] { json_validate(deep, ErrorCode::InvalidArgument); },
               "65 levels", "nesting deeper than 64");
  const std::string ok64 = std::string(64, '[') + std::string(64, ']');
  json_validate(ok64, ErrorCode::InvalidArgument);
  const std::string huge = std::string(200000, '[');
  expect_error(ErrorCode::InvalidArgument, [&] { json_validate(huge, ErrorCode::InvalidArgument); },
               "200000 levels, no stack overflow", "nesting");
  expect_error(ErrorCode::Io, [] { json_validate("[1, 2, 3]", ErrorCode::Io, "small", 64, 8); },
               "size limit", "limit");
}

// ---------------------------------------------------------------- config JSON

RECA_TEST(checkpoint_config_json_round_trip) {
  for (const char* preset : {"tiny", "small", "base"})
    for (const Mode mode : {Mode::Ar, Mode::Mask, Mode::Flow}) {
      const ModelConfig c = ModelConfig::preset(preset, mode);
      const ModelConfig d = ModelConfig::from_json(c.to_json());
      const std::string tag = std::string(preset) + "/" + mode_name(mode);
      expect_true(d.to_json() == c.to_json() && d.mode == c.mode && d.width == c.width &&
                      d.und_select_layer == c.und_select_layer && d.codebook_size == c.codebook_size &&
                      d.max_text_len == c.max_text_len,
                  tag + ": round trip");
    }
  // Whitespace, another key order and the Python writer's spacing are fine.
  {
    ModelConfig c = ModelConfig::preset("tiny", Mode::Flow);
    c.und_select_layer = -2;
    const auto ms = json_members(c.to_json());
    std::string rev = "{ ";
    for (size_t i = ms.size(); i-- > 0;)
      rev += json_quote(ms[i].first) + ": " + ms[i].second + (i ? ", " : " }");
    expect_true(ModelConfig::from_json(rev).to_json() == c.to_json(), "reordered keys: " + rev);
  }
  const std::string good = ModelConfig::preset("tiny", Mode::Mask).to_json();
  // Replaces the field's value text as written (no re-formatting).
  auto with = [&](const std::string& field, const std::string& value) { return json_with(good, field, value); };
  auto without = [&](const std::string& field) { return json_without(good, field); };
  struct Bad {
    std::string json, needle, what;
  };
  const Bad bad[] = {
      {without("width"), "'width'", "missing width"},
      {without("mode"), "'mode'", "missing mode"},
      {with("colour", "1"), "unknown field 'colour'", "unknown field"},
      {with("width", "64.0"), "width must be an integer", "64.0"},
      {with("width", "6.4e1"), "width must be an integer", "6.4e1"},
      {with("depth", "2.5"), "depth must be an integer", "fraction"},
      {with("heads", "\"4\""), "heads must be an integer", "string"},
      {with("heads", "true"), "heads must be an integer", "bool"},
      {with("mode", "\"diffusion\""), "config mode must be one of ar|mask|flow", "bad mode"},
      {with("mode", "1"), "mode must be a string", "numeric mode"},
      {with("gen_patch", "3"), "gen_patch", "validate(): not a divisor"},
      {with("width", "0"), "config width must be an integer in [1, 1048576]", "zero"},
      {with("und_select_layer", "0"), "und_select_layer", "validate(): layer 0"},
      {with("width", "99999999999999999999"), "width must be an integer", "beyond int64"},
      {good.substr(0, good.size() - 1), "config JSON", "truncated"},
      {good + "x", "config JSON", "trailing garbage"},
      {"[1]", "expected '{'", "array"},
      {"{\"mode\":\"mask\",\"mode\":\"ar\"}", "duplicate field", "duplicate"},
  };
  for (const Bad& b : bad)
    expect_error(ErrorCode::Checkpoint, [&] { ModelConfig::from_json(b.json); }, "config " + b.what,
                 b.needle);
}

RECA_TEST(checkpoint_trainer_options_json_exact) {
  Rand r(11);
  for (int i = 0; i < 200; ++i) {
    TrainerOptions o;
    o.weight_reca = r.uniform(0, 2);
    o.weight_t2i = i % 3 ? 0.0 : std::ldexp(r.uniform(0.5f, 1.0f), -30);
    o.weight_i2t = 1.0 / 3.0;
    o.tokenizer = false;
    o.micro_batch = r.index(100);
    o.lr = std::ldexp(1.0 + r.uniform(0, 1) / 3.0, -1 - static_cast<int>(r.index(20)));
    o.beta1 = 0.9, o.beta2 = 0.95 + r.uniform(0, 0.01f) / 7.0;
    o.eps = 1e-8 * (1 + i);
    o.weight_decay = 0.02 / 3;
    o.warmup = r.index(10);
    o.total_steps = o.warmup + 1 + r.index(1000);
    o.schedule = i % 2 ? Schedule::Cosine : Schedule::Constant;
    o.min_lr = o.lr / 7;
    o.max_grad_norm = i % 5 ? 1.0 / 3.0 : 0.0;
    o.ema = i % 2 ? 0.999 : 0.0;
    o.cond_dropout = 0.1;
    o.cond_grad_scale = 0.1 / 3;
    o.code_restart_every = r.index(100);
    o.trainable = Trainable{i % 2 == 0, i % 3 == 0, i % 5 == 0, true};
    o.seed = r.gen();
    o.template_text = i % 2 ? "describe the image" : "d\xc3\xa9""cris \"l'image\"\n\t\\";
    o.templates = i % 3 ? Templates::Paraphrases : Templates::Fixed;
    o.matmul_precision = i % 4 ? MatmulPrecision::Fp32 : MatmulPrecision::Bf16;
    const std::string j = trainer_options_to_json(o);
    const TrainerOptions p = trainer_options_from_json(j);
    const bool same = std::memcmp(&o.weight_reca, &p.weight_reca, 8) == 0 &&
                      std::memcmp(&o.weight_t2i, &p.weight_t2i, 8) == 0 &&
                      std::memcmp(&o.weight_i2t, &p.weight_i2t, 8) == 0 &&
                      o.micro_batch == p.micro_batch && std::memcmp(&o.lr, &p.lr, 8) == 0 &&
                      std::memcmp(&o.beta2, &p.beta2, 8) == 0 && std::memcmp(&o.eps, &p.eps, 8) == 0 &&
                      std::memcmp(&o.weight_decay, &p.weight_decay, 8) == 0 &&
                      o.warmup == p.warmup && o.total_steps == p.total_steps &&
                      o.schedule == p.schedule && std::memcmp(&o.min_lr, &p.min_lr, 8) == 0 &&
                      std::memcmp(&o.max_grad_norm, &p.max_grad_norm, 8) == 0 && o.ema == p.ema &&
                      std::memcmp(&o.cond_grad_scale, &p.cond_grad_scale, 8) == 0 &&
                      o.trainable.und == p.trainable.und && o.trainable.conn == p.trainable.conn &&
                      o.trainable.vq == p.trainable.vq && o.trainable.gen == p.trainable.gen &&
                      o.seed == p.seed && o.template_text == p.template_text &&
                      o.templates == p.templates && o.matmul_precision == p.matmul_precision &&
                      o.tokenizer == p.tokenizer && o.code_restart_every == p.code_restart_every &&
                      trainer_options_to_json(p) == j;
    if (!same) {
      report_failure("trainer options round trip: " + j);
      break;
    }
  }
  const std::string good = trainer_options_to_json(TrainerOptions());
  auto with = [&](const std::string& field, const std::string& value) { return json_with(good, field, value); };
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("lr", "\"1e-4\"")); },
               "lr as a string", "lr must be a number");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("warmup", "1.5")); },
               "fractional warmup", "warmup must be an integer");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("seed", "12")); },
               "numeric seed", "seed");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("seed", "\"012\"")); },
               "leading zero seed", "seed");
  expect_error(ErrorCode::Checkpoint,
               [&] { trainer_options_from_json(with("seed", "\"18446744073709551616\"")); },
               "seed above UINT64_MAX", "seed");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("momentum", "1")); },
               "unknown option", "unknown field 'momentum'");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(json_without(good, "trainGen")); },
               "missing trainGen", "no field 'trainGen'");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("lr", "0")); },
               "lr 0", "lr must be a number in (0, 1]");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("maxGradNorm", "-1")); },
               "negative maxGradNorm", "maxGradNorm must be a number in [0, 1000000]");
  expect_error(ErrorCode::Checkpoint,
               [&] { trainer_options_from_json("{\"weight_reca\":1,\"lr\":0.001}"); },
               "the 0.1.0 snake_case form", "older reca-engine");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json(with("schedule", "\"step\"")); },
               "bad schedule", "schedule");
  expect_error(ErrorCode::Checkpoint, [&] { trainer_options_from_json("{}"); }, "empty object",
               "no field");
  const TrainerOptions big = [] {
    TrainerOptions o;
    o.seed = UINT64_MAX;
    return o;
  }();
  expect_true(trainer_options_from_json(trainer_options_to_json(big)).seed == UINT64_MAX,
              "seed UINT64_MAX exact");
}

// ---------------------------------------------------------------- round trips

RECA_TEST(checkpoint_round_trip_bitwise) {
  TempDir dir;
  const std::string samples = sample_dir();
  for (const Mode mode : {Mode::Ar, Mode::Mask, Mode::Flow}) {
    const std::string tag = mode_name(mode);
    const ModelConfig cfg = ModelConfig::preset("tiny", mode);
    RecaModel model(cfg, cpu_backend());
    model.init(5);
    TrainerOptions o = resume_options(99);
    o.trainable = Trainable{mode == Mode::Ar, true, false, true};
    Trainer trainer(model, o);
    Data d = make_data(cfg, 4, 3);
    train(trainer, d, 4, 3, nullptr);
    const std::string path = dir.path + "/" + tag + ".safetensors";
    save_checkpoint(path, model, &trainer, StDtype::F32, {{"note", "caf\xc3\xa9"}, {"epoch", "1"}});
    if (!samples.empty())
      save_checkpoint(samples + "/" + tag + "_f32.safetensors", model, &trainer, StDtype::F32,
                      {{"note", "caf\xc3\xa9"}});

    // The file itself: names, dtypes, metadata.
    const SafetensorsFile f = SafetensorsFile::open(path);
    size_t want_count = 0;
    for (const ParamInfo& p : model.layout().params()) {
      want_count += trainer.trainable(p) ? 4 : 1;
      const SafetensorsEntry* e = f.find(p.name);
      expect_true(e && e->dtype == StDtype::F32 && e->shape == p.shape, tag + ": " + p.name);
      expect_true((f.find("optim.m." + p.name) != nullptr) == trainer.trainable(p) &&
                      (f.find("optim.v." + p.name) != nullptr) == trainer.trainable(p) &&
                      (f.find("ema." + p.name) != nullptr) == trainer.trainable(p),
                  tag + ": state of " + p.name + " only when trainable");
    }
    expect_true(f.size() == want_count, tag + ": tensor count");
    const auto& md = f.metadata();
    expect_true(md.at("reca.format") == "reca-engine/1" && md.at("reca.config") == cfg.to_json() &&
                    md.at("reca.dtype") == "F32" && md.at("reca.step") == "3" &&
                    md.at("reca.seed") == "99" && md.at("note") == "caf\xc3\xa9" &&
                    md.at("epoch") == "1" &&
                    md.at("reca.trainer") == trainer_options_to_json(trainer.options()),
                tag + ": metadata");

    // Load into a fresh model and a fresh trainer built from the saved options.
    const Checkpoint ck = load_checkpoint(path);
    expect_true(ck.config.to_json() == cfg.to_json() && ck.has_trainer && ck.has_ema &&
                    ck.step == 3 && ck.seed == 99 && ck.storage == StDtype::F32,
                tag + ": loaded header");
    RecaModel fresh(ck.config, cpu_backend());
    fresh.init(12345);
    Trainer ft(fresh, ck.trainer_options);
    ck.apply(fresh, &ft);
    expect_true(same_bits(model_params(fresh), model_params(model)), tag + ": params bitwise");
    expect_true(trainer_state(ft) == trainer_state(trainer), tag + ": m, v, ema, step bitwise");
    expect_true(trainer_options_to_json(ft.options()) == trainer_options_to_json(trainer.options()),
                tag + ": options");

    // Without a trainer: parameters only, and no state to apply.
    const std::string p2 = dir.path + "/" + tag + "_params.safetensors";
    save_checkpoint(p2, model);
    const Checkpoint c2 = load_checkpoint(p2);
    expect_true(!c2.has_trainer && same_bits(c2.params, model_params(model)) &&
                    SafetensorsFile::open(p2).size() == model.layout().params().size() &&
                    !c2.metadata.count("reca.step"),
                tag + ": parameters-only checkpoint");
    const State before = trainer_state(ft);
    expect_error(ErrorCode::Checkpoint, [&] { c2.apply_to_trainer(ft); },
                 tag + ": no optimizer state", "no optimizer state");
    expect_true(trainer_state(ft) == before, tag + ": trainer unchanged");
  }
  // A frozen group in the tokenizer stage: state for vq.* only.
  {
    const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
    RecaModel model(cfg, cpu_backend());
    model.init(1);
    TrainerOptions o;
    o.tokenizer = true;
    o.lr = 1e-3;
    Trainer trainer(model, o);
    Data d = make_data(cfg, 2, 4);
    train(trainer, d, 2, 2, nullptr);
    const std::string path = dir.path + "/tok.safetensors";
    save_checkpoint(path, model, &trainer);
    const Checkpoint ck = load_checkpoint(path);
    RecaModel fresh(ck.config, cpu_backend());
    Trainer ft(fresh, ck.trainer_options);
    ck.apply(fresh, &ft);
    expect_true(same_bits(model_params(fresh), model_params(model)) &&
                    trainer_state(ft) == trainer_state(trainer),
                "tokenizer stage round trip");
    expect_true(SafetensorsFile::open(path).find("optim.m.vq.codebook") &&
                    !SafetensorsFile::open(path).find("optim.m.gen.head_img.weight"),
                "tokenizer stage: state for vq.* only");
  }
  // Reserved metadata keys and bad storage dtypes.
  {
    RecaModel model(ModelConfig::preset("tiny", Mode::Mask), cpu_backend());
    model.init(1);
    expect_error(ErrorCode::InvalidArgument,
                 [&] { save_checkpoint(dir.path + "/x", model, nullptr, StDtype::F32, {{"reca.step", "1"}}); },
                 "reserved metadata key", "reca.step");
    expect_error(ErrorCode::InvalidArgument,
                 [&] { save_checkpoint(dir.path + "/x", model, nullptr, StDtype::F64); },
                 "F64 storage", "F32, F16 or BF16");
    RecaModel other(ModelConfig::preset("tiny", Mode::Mask), cpu_backend());
    other.init(1);
    Trainer t(other, TrainerOptions());
    expect_error(ErrorCode::InvalidArgument, [&] { save_checkpoint(dir.path + "/x", model, &t); },
                 "trainer of another model", "another model");
    struct stat st;
    expect_true(::stat((dir.path + "/x").c_str(), &st) != 0, "nothing written on misuse");
  }
}

// Storage in F16/BF16: parameters and EMA within half an ulp of the format
// (round to nearest even), moments still F32 and bitwise.
// Bounds are the unit roundoff: BF16 (8 significant bits) |x' - x| <= 2^-8 |x|;
// F16 (11 bits) |x' - x| <= 2^-11 |x| + 2^-25 (half its smallest subnormal).
RECA_TEST(checkpoint_half_storage) {
  TempDir dir;
  const std::string samples = sample_dir();
  for (const StDtype dt : {StDtype::BF16, StDtype::F16}) {
    const std::string tag = st_dtype_name(dt);
    const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Flow);
    RecaModel model(cfg, cpu_backend());
    model.init(8);
    Trainer trainer(model, resume_options(4));
    Data d = make_data(cfg, 4, 5);
    train(trainer, d, 4, 2, nullptr);
    const std::string path = dir.path + "/h.safetensors";
    save_checkpoint(path, model, &trainer, dt);
    if (!samples.empty()) {
      const std::string stem = samples + "/flow_" + (dt == StDtype::BF16 ? "bf16" : "f16");
      save_checkpoint(stem + ".safetensors", model, &trainer, dt);
      save_checkpoint(stem + "_ref_f32.safetensors", model, &trainer, StDtype::F32);
    }
    const SafetensorsFile f = SafetensorsFile::open(path);
    expect_true(f.metadata().at("reca.dtype") == tag && f.get("gen.ln_f.weight").dtype == dt &&
                    f.get("ema.gen.ln_f.weight").dtype == dt &&
                    f.get("optim.m.gen.ln_f.weight").dtype == StDtype::F32 &&
                    f.get("optim.v.gen.ln_f.weight").dtype == StDtype::F32,
                tag + ": dtypes");
    const Checkpoint ck = load_checkpoint(path);
    expect_true(ck.storage == dt, tag + ": storage reported");
    const double rel = dt == StDtype::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    const double abs = dt == StDtype::BF16 ? 0.0 : std::ldexp(1.0, -25);
    const std::vector<float> p = model_params(model);
    const State s = trainer_state(trainer);
    int bad = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      if (!(std::fabs(ck.params[i] - p[i]) <= rel * std::fabs(p[i]) + abs) && bad++ < 3)
        report_failure(tag + ": param " + std::to_string(i) + " " + std::to_string(ck.params[i]) +
                       " vs " + std::to_string(p[i]));
      if (!(std::fabs(ck.ema[i] - s.ema[i]) <= rel * std::fabs(s.ema[i]) + abs) && bad++ < 3)
        report_failure(tag + ": ema " + std::to_string(i));
    }
    expect_true(same_bits(ck.exp_avg, s.m) && same_bits(ck.exp_avg_sq, s.v), tag + ": moments bitwise");
    // Exactly the format's rounding: a second save/load of the loaded values is lossless.
    RecaModel m2(ck.config, cpu_backend());
    ck.apply_to_model(m2);
    save_checkpoint(path, m2, nullptr, dt);
    expect_true(same_bits(load_checkpoint(path).params, ck.params), tag + ": idempotent");
  }
  // A value beyond the F16 range is refused (it would load back as inf).
  {
    const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
    RecaModel model(cfg, cpu_backend());
    model.init(1);
    const std::string path = dir.path + "/range.safetensors";
    save_checkpoint(path, model);
    const Bytes old = read_file_bytes(path);
    std::vector<float> p = model_params(model);
    p[model.layout().at("gen.tok_embed").offset + 5] = 70000.0f;
    model.set_params(p.data());
    expect_error(ErrorCode::Numeric, [&] { save_checkpoint(path, model, nullptr, StDtype::F16); },
                 "70000 in F16", "gen.tok_embed");
    save_checkpoint(dir.path + "/range_bf16.safetensors", model, nullptr, StDtype::BF16);  // fits BF16
    p[model.layout().at("gen.ln_f.bias").offset] = NAN;
    model.set_params(p.data());
    expect_error(ErrorCode::Numeric, [&] { save_checkpoint(path, model); }, "NaN parameter",
                 "gen.ln_f.bias");
    expect_true(read_file_bytes(path) == old, "refused saves leave the old file");
  }
}

// ---------------------------------------------------------------- resume

// 10 steps in one go == 5 steps, save, load into a fresh model + trainer, 5
// more: the losses of steps 6..10 and the final parameters and state, bitwise.
// And the 10 losses are the same with 1 and 2 threads.
RECA_TEST(checkpoint_resume_is_bitwise_identical) {
  TempDir dir;
  const int saved_threads = reca::num_threads();
  for (const Mode mode : {Mode::Mask, Mode::Flow, Mode::Ar}) {
    const std::string tag = mode_name(mode);
    const ModelConfig cfg = ModelConfig::preset("tiny", mode);
    const int64_t B = 5;
    std::vector<double> per_threads[2];
    std::vector<float> final_params;
    State final_state;
    for (const int threads : {1, 2}) {
      reca::set_num_threads(threads);
      Data d = make_data(cfg, B, 21);
      RecaModel model(cfg, cpu_backend());
      model.init(77);
      Trainer trainer(model, resume_options(1234));
      train(trainer, d, B, 10, &per_threads[threads - 1]);
      if (threads == 1) {
        final_params = model_params(model);
        final_state = trainer_state(trainer);
      }
    }
    expect_true(per_threads[0].size() == 10 &&
                    std::memcmp(per_threads[0].data(), per_threads[1].data(), 10 * 8) == 0,
                tag + ": 10 losses identical with 1 and 2 threads");

    reca::set_num_threads(2);
    Data d = make_data(cfg, B, 21);
    std::vector<double> resumed;
    const std::string path = dir.path + "/" + tag + ".safetensors";
    {
      RecaModel model(cfg, cpu_backend());
      model.init(77);
      Trainer trainer(model, resume_options(1234));
      train(trainer, d, B, 5, &resumed);
      save_checkpoint(path, model, &trainer);
    }  // everything in memory is gone
    const Checkpoint ck = load_checkpoint(path);
    RecaModel model(ck.config, cpu_backend());
    model.init(1);  // different weights, overwritten by the checkpoint
    Trainer trainer(model, ck.trainer_options);
    ck.apply(model, &trainer);
    train(trainer, d, B, 5, &resumed);
    bool same = resumed.size() == 10;
    for (size_t i = 0; same && i < 10; ++i)
      same = std::memcmp(&resumed[i], &per_threads[0][i], 8) == 0;
    expect_true(same, tag + ": losses of steps 1..10 bitwise equal after resuming at 5 (step 10: " +
                          json_number(resumed.back()) + " vs " + json_number(per_threads[0].back()) + ")");
    expect_true(same_bits(model_params(model), final_params), tag + ": final parameters bitwise");
    expect_true(trainer_state(trainer) == final_state, tag + ": final m, v, ema, step bitwise");
  }
  reca::set_num_threads(saved_threads);
}

// ---------------------------------------------------------------- bad checkpoints

RECA_TEST(checkpoint_rejects_bad_files_and_changes_nothing) {
  TempDir dir;
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  // The source checkpoint.
  const std::string good = dir.path + "/good.safetensors";
  {
    RecaModel src(cfg, cpu_backend());
    src.init(3);
    Trainer t(src, resume_options(5));
    Data d = make_data(cfg, 3, 1);
    train(t, d, 3, 2, nullptr);
    save_checkpoint(good, src, &t);
  }
  // The victim: a model and trainer with other values that must survive every failure.
  RecaModel model(cfg, cpu_backend());
  model.init(42);
  Trainer trainer(model, resume_options(5));
  {
    Data d = make_data(cfg, 3, 2);
    train(trainer, d, 3, 1, nullptr);
  }
  const std::vector<float> p0 = model_params(model);
  const State s0 = trainer_state(trainer);
  int case_no = 0;
  auto expect_rejected = [&](const std::string& path, const std::string& what,
                             const std::string& needle) {
    expect_error(ErrorCode::Checkpoint,
                 [&] {
                   const Checkpoint ck = load_checkpoint(path);
                   ck.apply(model, &trainer);
                 },
                 what, needle);
    expect_true(same_bits(model_params(model), p0), what + ": model unchanged");
    expect_true(trainer_state(trainer) == s0, what + ": trainer unchanged");
  };
  auto variant = [&](const std::function<void(std::vector<Tensor>&, std::map<std::string, std::string>&)>& e) {
    const std::string p = dir.path + "/bad" + std::to_string(case_no++) + ".safetensors";
    rewrite(good, p, e);
    return p;
  };
  using Ts = std::vector<Tensor>;
  using Md = std::map<std::string, std::string>;

  // Sanity: the unmodified copy loads.
  const Checkpoint ok = load_checkpoint(variant([](Ts&, Md&) {}));
  expect_true(ok.has_trainer && ok.step == 2, "unmodified copy loads");

  // Corrupt and truncated files.
  const Bytes bytes = read_file_bytes(good);
  for (const size_t cut : {size_t(0), size_t(5), size_t(8), size_t(100), bytes.size() / 2, bytes.size() - 1}) {
    const std::string p = dir.path + "/cut.safetensors";
    write_file_bytes(p, Bytes(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
    expect_rejected(p, "truncated to " + std::to_string(cut) + " bytes", "");
  }
  {
    Bytes b = bytes;
    b[20] = '!';  // inside the JSON header
    const std::string p = dir.path + "/corrupt.safetensors";
    write_file_bytes(p, b);
    expect_rejected(p, "corrupt header", "invalid safetensors header");
  }
  expect_error(ErrorCode::Io, [&] { load_checkpoint(dir.path + "/none.safetensors"); }, "missing file",
               "No such file");

  // Tensors.
  expect_rejected(variant([](Ts& ts, Md&) {
                    ts.erase(ts.begin() + static_cast<long>(ts.size() / 2));
                  }),
                  "missing tensor", "is missing");
  expect_rejected(variant([](Ts& ts, Md&) {
                    for (size_t i = 0; i < ts.size(); ++i)
                      if (ts[i].name == "optim.v.gen.head_img.weight") ts.erase(ts.begin() + static_cast<long>(i));
                  }),
                  "missing moment", "tensor 'optim.v.gen.head_img.weight' is missing");
  expect_rejected(variant([](Ts& ts, Md&) {
                    ts.push_back({"gen.extra", StDtype::F32, {2}, Bytes(8, 0)});
                  }),
                  "extra tensor", "unexpected tensor 'gen.extra'");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor t = *find_tensor(ts, "und.pos_embed");
                    t.name = "optim.m.und.pos_embed";  // und is frozen: no state for it
                    ts.push_back(t);
                  }),
                  "state of a frozen tensor", "unexpected tensor 'optim.m.und.pos_embed'");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor* t = find_tensor(ts, "gen.ln_f.weight");
                    t->shape = {t->shape[0] / 2, 2};
                  }),
                  "wrong shape", "tensor 'gen.ln_f.weight' has shape");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor* t = find_tensor(ts, "gen.ln_f.bias");
                    t->dtype = StDtype::I32;  // same size, other type
                  }),
                  "wrong dtype", "tensor 'gen.ln_f.bias' is I32, expected F32");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor* t = find_tensor(ts, "optim.m.gen.ln_f.bias");
                    Bytes h(t->bytes.size() / 2, 0);
                    t->bytes = h;
                    t->dtype = StDtype::BF16;
                  }),
                  "BF16 moment", "tensor 'optim.m.gen.ln_f.bias' is BF16, expected F32");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor* t = find_tensor(ts, "conn.fc1.weight");
                    const float nan = NAN;
                    std::memcpy(t->bytes.data() + 4 * 7, &nan, 4);
                  }),
                  "NaN in a parameter", "tensor 'conn.fc1.weight' holds a non-finite value at index 7");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor* t = find_tensor(ts, "ema.gen.pos_img");
                    const float inf = -INFINITY;
                    std::memcpy(t->bytes.data(), &inf, 4);
                  }),
                  "inf in the EMA", "tensor 'ema.gen.pos_img' holds a non-finite value");
  expect_rejected(variant([](Ts& ts, Md&) {
                    Tensor* t = find_tensor(ts, "optim.v.gen.pos_img");
                    const float neg = -1.0f;
                    std::memcpy(t->bytes.data(), &neg, 4);
                  }),
                  "negative second moment", "negative");

  // Metadata.
  expect_rejected(variant([](Ts&, Md& md) { md.clear(); }), "foreign file (no metadata)",
                  "not a reca-engine checkpoint");
  expect_rejected(variant([](Ts&, Md& md) { md.erase("reca.config"); }), "no reca.config",
                  "not a reca-engine checkpoint");
  expect_rejected(variant([](Ts&, Md& md) { md["reca.format"] = "reca-engine/2"; }), "newer format",
                  "reca-engine/2");
  expect_rejected(variant([](Ts&, Md& md) { md["reca.config"] = "{\"mode\":"; }), "broken config JSON",
                  "reca.config");
  expect_rejected(variant([](Ts&, Md& md) {
                    md["reca.config"].replace(md["reca.config"].find("\"width\":64"), 10, "\"width\":64.5");
                  }),
                  "fractional width", "width must be an integer");
  expect_rejected(variant([](Ts&, Md& md) { md["reca.dtype"] = "F64"; }), "bad reca.dtype",
                  "reca.dtype");
  expect_rejected(variant([](Ts&, Md& md) { md["reca.step"] = "-1"; }), "negative step", "reca.step");
  expect_rejected(variant([](Ts&, Md& md) { md["reca.seed"] = "6"; }), "seed mismatch", "reca.seed");
  expect_rejected(variant([](Ts&, Md& md) { md["reca.trainer"] = "{}"; }), "empty trainer options",
                  "reca.trainer");
  expect_rejected(variant([](Ts&, Md& md) { md.erase("reca.trainer"); }),
                  "optimizer state without trainer options", "without reca.trainer");

  // A checkpoint of another mode / config, and a trainer of another shape.
  {
    const std::string p = dir.path + "/ar.safetensors";
    RecaModel ar(ModelConfig::preset("tiny", Mode::Ar), cpu_backend());
    ar.init(1);
    save_checkpoint(p, ar);
    expect_error(ErrorCode::Checkpoint, [&] { load_checkpoint(p).apply_to_model(model); },
                 "another mode", "config.mode is \"ar\" in the checkpoint but \"mask\" here");
    ModelConfig wide = cfg;
    wide.width = 128;
    RecaModel w(wide, cpu_backend());
    w.init(1);
    save_checkpoint(p, w);
    expect_error(ErrorCode::Checkpoint, [&] { load_checkpoint(p).apply(model, &trainer); },
                 "another width", "config.width is 128 in the checkpoint but 64 here");
    expect_true(same_bits(model_params(model), p0) && trainer_state(trainer) == s0,
                "other configs: unchanged");

    const Checkpoint ck = load_checkpoint(good);
    TrainerOptions o = resume_options(5);
    o.trainable.und = true;
    RecaModel m2(cfg, cpu_backend());
    m2.init(42);
    const std::vector<float> q0 = model_params(m2);
    Trainer t2(m2, o);
    const State t0 = trainer_state(t2);
    expect_error(ErrorCode::Checkpoint, [&] { ck.apply(m2, &t2); }, "other trainable set",
                 "is trainable in this trainer but frozen in the checkpoint");
    expect_true(same_bits(model_params(m2), q0) && trainer_state(t2) == t0,
                "trainable mismatch: model and trainer unchanged (checks run before any copy)");
    o = resume_options(5);
    o.ema = 0;
    Trainer t3(m2, o);
    expect_error(ErrorCode::Checkpoint, [&] { ck.apply_to_trainer(t3); }, "EMA off here", "EMA");
    expect_true(same_bits(model_params(m2), q0), "EMA mismatch: model unchanged");
  }
}

// ---------------------------------------------------------------- failed saves

// A small file whose reca.config describes an enormous model fails at once:
// the work and memory of a load are bounded by the file, not by the config.
// (Before the bound, depth 2^20 in this 700 KB file took 80 s and 5 GB.)
RECA_TEST(checkpoint_huge_config_in_small_file_fails_fast) {
  TempDir dir;
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  const std::string plain = dir.path + "/plain.safetensors", full = dir.path + "/full.safetensors";
  {
    RecaModel src(cfg, cpu_backend());
    src.init(3);
    save_checkpoint(plain, src);
    Trainer t(src, resume_options(5));
    save_checkpoint(full, src, &t);
  }
  struct Case {
    const char* what;
    std::function<void(ModelConfig&)> edit;
  };
  const Case cases[] = {
      {"depth 2^20", [](ModelConfig& c) { c.depth = 1 << 20; }},
      {"und_depth 2^20", [](ModelConfig& c) { c.und_depth = 1 << 20; }},
      {"width 2^20", [](ModelConfig& c) { c.width = 1 << 20; }},
      {"codebook_size 2^20", [](ModelConfig& c) { c.codebook_size = 1 << 20; }},
      // Sizes beyond int64: depth · mlp_ratio · width² wraps without checks.
      {"every size at its maximum", [](ModelConfig& c) {
         c.depth = c.und_depth = c.mlp_ratio = c.codebook_size = c.code_dim = 1 << 20;
         c.width = c.und_width = 1 << 20;
       }},
  };
  for (const std::string& src : {plain, full}) {
    for (const Case& k : cases) {
      const std::string what = k.what + std::string(src == full ? " (with trainer state)" : "");
      ModelConfig bad = cfg;
      k.edit(bad);
      const std::string p = dir.path + "/huge.safetensors";
      rewrite(src, p, [&](std::vector<Tensor>&, std::map<std::string, std::string>& md) {
        md["reca.config"] = bad.to_json();
      });
      const int64_t bytes0 = allocated_bytes();
      const auto t0 = std::chrono::steady_clock::now();
      expect_error(ErrorCode::Checkpoint, [&] { load_checkpoint(p); }, what, "describes");
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int64_t allocated = allocated_bytes() - bytes0;
      expect_true(secs < 1.0, what + ": rejected in " + std::to_string(secs) + " s (< 1 s)");
      // The file (~700 KB) is read once; the rest is its header and small tables.
      expect_true(allocated < (int64_t(8) << 20),
                  what + ": allocated " + std::to_string(allocated) + " bytes (< 8 MB)");
    }
  }
}

RECA_TEST(checkpoint_failed_save_keeps_old_file) {
  TempDir dir;
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  RecaModel model(cfg, cpu_backend());
  model.init(2);
  Trainer trainer(model, resume_options(3));
  const std::string path = dir.path + "/model.safetensors";
  save_checkpoint(path, model, &trainer);
  const Bytes old = read_file_bytes(path);
  model.init(9);  // new values, so a partial new file would differ

  expect_error(ErrorCode::Io, [&] { save_checkpoint(dir.path + "/missing/m.safetensors", model); },
               "missing directory", "No such file");
  expect_error(ErrorCode::Io, [&] { save_checkpoint(path + "/m.safetensors", model); },
               "parent is a file", "Not a directory");
  ::mkdir((dir.path + "/taken").c_str(), 0755);
  write_file_bytes(dir.path + "/taken/inner", Bytes{1});
  expect_error(ErrorCode::Io, [&] { save_checkpoint(dir.path + "/taken", model); },
               "target is a non-empty directory", "rename");
  {
    // The write fails halfway (file size limit below the checkpoint's size).
    struct rlimit saved;
    getrlimit(RLIMIT_FSIZE, &saved);
    struct rlimit lim = saved;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    expect_error(ErrorCode::Io, [&] { save_checkpoint(path, model, &trainer); },
                 "write past the size limit", "too large");
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
  }
  expect_true(read_file_bytes(path) == old, "old checkpoint intact after failed saves");
  const Checkpoint ck = load_checkpoint(path);
  expect_true(ck.has_trainer, "old checkpoint still loads");
  // No temporary files left behind.
  const int found = ::nftw(
      dir.path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return std::strstr(p, ".tmp-") ? 1 : 0; },
      8, FTW_PHYS);
  expect_true(found == 0, "no temporary file left behind");
}

// A save removes the temporaries of its path left by dead writers (killed
// mid-save) and nothing else: not a live process's, not another path's.
RECA_TEST(checkpoint_save_removes_stale_temps) {
  TempDir dir;
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  RecaModel model(cfg, cpu_backend());
  model.init(2);
  const std::string path = dir.path + "/m.safetensors";
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);  // reaped: its pid names no process now
  const std::string hex = "-0123456789abcdef";
  const std::string stale_dead = path + ".tmp-" + std::to_string(dead) + hex;
  const std::string stale_self = path + ".tmp-" + std::to_string(::getpid()) + hex;  // pid reused
  const std::string live = path + ".tmp-" + std::to_string(::getppid()) + hex;
  const std::string other = dir.path + "/n.safetensors.tmp-" + std::to_string(dead) + hex;
  const std::string odd = path + ".tmp-" + std::to_string(dead) + "-notours";
  for (const std::string& p : {stale_dead, stale_self, live, other, odd}) write_file_bytes(p, Bytes{1, 2});
  save_checkpoint(path, model);
  auto exists = [](const std::string& p) { return ::access(p.c_str(), F_OK) == 0; };
  expect_true(!exists(stale_dead), "a dead writer's temp is removed");
  expect_true(!exists(stale_self), "a temp with our pid that no save owns is removed");
  expect_true(exists(live), "a live process's temp is kept");
  expect_true(exists(other), "another path's temp is kept");
  expect_true(exists(odd), "a file not named like a temp is kept");
  expect_true(load_checkpoint(path).params.size() > 0, "the save itself succeeded");
}

// ---------------------------------------------------------------- numeric guard

// A finite loss and gradient can still make a non-finite update (weight_decay
// 1e38 with lr 9: 1 - lr*wd overflows). The step must throw E_NUMERIC naming
// it and commit nothing: parameters, moments and EMA bitwise as before.
RECA_TEST(trainer_step_never_commits_nonfinite_state) {
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  for (const double ema : {0.0, 0.9}) {
    const std::string what = ema > 0 ? "with EMA" : "without EMA";
    RecaModel model(cfg, cpu_backend());
    model.init(4);
    TrainerOptions o;
    o.lr = 1;  // the largest rate the option table allows
    o.ema = ema;
    Trainer trainer(model, o);
    // Options within their ranges cannot overflow an update from sane state, so
    // plant a moment the next update turns into an infinite weight: m huge, v zero.
    for (const ParamInfo& p : model.layout().params())
      if (trainer.trainable(p)) {
        trainer.exp_avg()[p.offset] = 3e38f;
        trainer.exp_avg_sq()[p.offset] = 0.0f;
        break;
      }
    Data d = make_data(cfg, 2, 3);
    const std::vector<float> p0 = model_params(model);
    const State s0 = trainer_state(trainer);
    expect_error(ErrorCode::Numeric, [&] { trainer.step(d.batch(2)); }, what + ": step 1",
                 "step 1 would make");
    expect_true(same_bits(model_params(model), p0), what + ": parameters unchanged");
    expect_true(trainer_state(trainer) == s0, what + ": moments, EMA and step count unchanged");
    bool finite = true;
    for (float x : model_params(model)) finite = finite && std::isfinite(x);
    expect_true(finite, what + ": parameters finite");
    // The same again: still refused, still unchanged (no state leaked into step 2).
    expect_error(ErrorCode::Numeric, [&] { trainer.step(d.batch(2)); }, what + ": retry",
                 "step 1 would make");
    expect_true(same_bits(model_params(model), p0), what + ": parameters unchanged after retry");
  }
}

// nonFinite = skip: the same refused update is counted as a skipped step; the
// state is unchanged but for the step count, and the next step proceeds.
RECA_TEST(trainer_skip_policy_counts_nonfinite_steps) {
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  RecaModel model(cfg, cpu_backend());
  model.init(4);
  TrainerOptions o;
  o.lr = 1;
  o.non_finite = NonFinite::Skip;
  Trainer trainer(model, o);
  const ParamInfo* planted = nullptr;
  for (const ParamInfo& p : model.layout().params())
    if (!planted && trainer.trainable(p)) planted = &p;
  trainer.exp_avg()[planted->offset] = 3e38f;
  trainer.exp_avg_sq()[planted->offset] = 0.0f;
  Data d = make_data(cfg, 2, 3);
  const std::vector<float> p0 = model_params(model);
  const StepStats s1 = trainer.step(d.batch(2));
  expect_true(s1.skipped && s1.skipped_steps == 1 && s1.step == 1 && trainer.steps_done() == 1,
              "step 1 skipped and counted");
  expect_true(s1.skip_reason.find("non-finite") != std::string::npos, "reason: " + s1.skip_reason);
  expect_true(same_bits(model_params(model), p0), "parameters unchanged by the skipped step");
  // Clear the planted moment: the next step updates and reports the running count.
  trainer.exp_avg()[planted->offset] = 0.0f;
  const StepStats s2 = trainer.step(d.batch(2));
  expect_true(!s2.skipped && s2.skipped_steps == 1 && s2.step == 2 && std::isfinite(s2.loss),
              "step 2 updates");
  expect_true(!same_bits(model_params(model), p0), "step 2 changed the parameters");
}

// ---------------------------------------------------------------- code upkeep

// Dead-code restart of the tokenizer stage: on a restart step, exactly the codes
// the step's batch did not choose (found here with the pre-update parameters)
// take the value of one of that batch's encoder outputs, their Adam moments are
// zero, and the result is the same at 1 and 2 threads; other steps restart nothing.
RECA_TEST(tokenizer_code_restart_reseeds_unused_codes) {
  const int saved_threads = reca::num_threads();
  const ModelConfig cfg = ModelConfig::preset("tiny", Mode::Mask);
  const int64_t B = 5, K = cfg.codebook_size, C = cfg.code_dim, n = B * cfg.num_image_tokens();
  std::vector<float> codebooks[2];
  for (const int threads : {1, 2}) {
    reca::set_num_threads(threads);
    Data d = make_data(cfg, B, 5);
    RecaModel model(cfg, cpu_backend());
    model.init(3);
    TrainerOptions o;
    o.tokenizer = true;
    o.lr = 1e-3;
    o.code_restart_every = 2;
    Trainer trainer(model, o);
    const StepStats s1 = trainer.step(d.batch(B));
    expect_true(s1.codes_restarted == 0 && s1.codes_used > 0 && s1.codes_used <= K,
                "step 1 restarts nothing and reports the codes it used");
    // The batch's codes and encoder outputs under the parameters step 2 sees.
    std::vector<int32_t> codes(static_cast<size_t>(n));
    std::vector<float> z(static_cast<size_t>(n * C));
    Arena arena(model.backend());
    model.tokenizer_pass(d.images.data(), B, nullptr, 1.0f, arena, codes.data(), z.data());
    std::vector<uint8_t> used(static_cast<size_t>(K), 0);
    for (int32_t k : codes) used[static_cast<size_t>(k)] = 1;
    int64_t unused = 0;
    for (uint8_t u : used) unused += !u;
    expect_true(unused > 0, "the random tiny batch leaves some codes unused (the test needs some)");
    const StepStats s2 = trainer.step(d.batch(B));
    expect_true(s2.codes_used == K - unused, "codes_used counts the batch's distinct codes");
    expect_true(s2.codes_restarted == unused,
                "every unused code restarted (" + std::to_string(s2.codes_restarted) + " vs " +
                    std::to_string(unused) + ")");
    const std::vector<float> params = model_params(model);
    const State st = trainer_state(trainer);
    const ParamInfo& cb = *model.layout().find("vq.codebook");
    bool rows_ok = true, moments_ok = true;
    for (int64_t k = 0; k < K; ++k) {
      if (used[static_cast<size_t>(k)]) continue;
      const float* row = &params[cb.offset + k * C];
      bool found = false;
      for (int64_t j = 0; j < n && !found; ++j) found = std::memcmp(row, &z[j * C], C * 4) == 0;
      rows_ok = rows_ok && found;
      for (int64_t c = 0; c < C; ++c)
        moments_ok = moments_ok && st.m[cb.offset + k * C + c] == 0 && st.v[cb.offset + k * C + c] == 0;
    }
    expect_true(rows_ok, "each restarted code equals one of the batch's encoder outputs");
    expect_true(moments_ok, "restarted codes have zero Adam moments");
    codebooks[threads - 1].assign(params.begin() + cb.offset, params.begin() + cb.offset + K * C);
  }
  expect_true(same_bits(codebooks[0], codebooks[1]), "restarts identical at 1 and 2 threads");
  reca::set_num_threads(saved_threads);
}
