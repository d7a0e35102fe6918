// Gradient shards (model/shard_reduce.h) in one process: the sum is taken in
// shard order, a −0.0 survives, the sample split and the option's checks. The
// multi-rank runs are test/distributed.test.ts (mpirun).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/checkpoint.h"
#include "model/schema.h"
#include "model/shard_reduce.h"
#include "model/trainer.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

RECA_TEST(shard_reducer_sums_in_shard_order) {
  Backend& be = cpu_backend();
  // Element 0 depends on the order: (1e8 + 1) − 1e8 = 0 in float, 1e8 − 1e8 + 1 = 1.
  // Element 1 is −0.0 in every shard: the sum must stay −0.0 (0.0 + −0.0 = +0.0).
  const std::vector<std::vector<float>> shards = {
      {1e8f, -0.0f, 3.5f}, {1.0f, -0.0f, 0.25f}, {-1e8f, -0.0f, -1.0f}};
  const int64_t n = 3;
  float* g = static_cast<float*>(be.alloc(n * 4));
  ShardReducer red(be, nullptr, n);
  for (size_t j = 0; j < shards.size(); ++j) {
    be.upload(g, shards[j].data(), n * 4);
    red.add(static_cast<int64_t>(j), g);
    be.zero(g, n * 4);  // the trainer computes the next shard into a zeroed buffer
  }
  red.finish(g);
  std::vector<float> got(static_cast<size_t>(n));
  be.download(got.data(), g, n * 4);
  be.release(g);
  expect_true(got[0] == (1e8f + 1.0f) + -1e8f && got[0] == 0.0f, "shard order: (g0 + g1) + g2");
  expect_true(got[1] == 0.0f && std::signbit(got[1]), "-0.0 stays -0.0");
  expect_true(got[2] == (3.5f + 0.25f) + -1.0f, "plain sum");
}

RECA_TEST(trainer_shards_split_and_checks) {
  RecaModel model(ModelConfig::preset("tiny", Mode::Mask), cpu_backend());
  model.init(1);
  TrainerOptions o;
  o.shards = 3;
  Trainer t(model, o);
  const std::vector<int64_t> g = t.local_samples(6);
  expect_true(g == std::vector<int64_t>({0, 1, 2, 3, 4, 5}), "one process takes every sample in order");
  expect_true(t.shards() == 3 && t.ranks() == 1 && t.rank() == 0, "one rank");
  expect_true(throws(ErrorCode::InvalidArgument, [&] { t.local_samples(4); }),
              "a batch that does not split into equal shards is E_INVALID_ARGUMENT");
  TrainerOptions dflt;
  Trainer one(model, dflt);
  expect_true(one.options().shards == 0 && one.shards() == 1, "shards 0 resolves to one per rank");
}

RECA_TEST(trainer_options_json_without_shards_loads) {
  // Checkpoints written before the option existed summed one shard.
  TrainerOptions o;
  o.shards = 4;
  std::string json = trainer_options_to_json(o);
  const std::string field = "\"shards\":4,";
  const size_t at = json.find(field);
  expect_true(at != std::string::npos, "shards is written");
  json.erase(at, field.size());
  expect_true(trainer_options_from_json(json).shards == 0, "absent shards reads as the default");
}
