// The RecA template bank and its per-sample draw (SPEC §5), and per-step task
// weights: the draws a trainer reports against the bank and the options.
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/reca_model.h"
#include "model/templates.h"
#include "model/trainer.h"
#include "tests/testing.h"

using namespace reca;
using namespace reca::model;
using namespace reca::test;

namespace {

std::string decode_row(const int32_t* row, int64_t T) {
  std::string s;
  for (int64_t i = 0; i < T && row[i] != tok::kPad; ++i) s.push_back(static_cast<char>(row[i]));
  return s;
}

std::vector<TaskDraws> draws_of_step(int64_t B, const TrainerOptions& o, const double* weights = nullptr) {
  RecaModel model(ModelConfig::preset("tiny", Mode::Mask), cpu_backend());
  const ModelConfig& c = model.config();
  std::vector<uint8_t> images(static_cast<size_t>(B * c.image_size * c.image_size * 3), 100);
  std::vector<int32_t> captions(static_cast<size_t>(B * c.max_text_len), tok::kPad);
  for (int64_t b = 0; b < B; ++b) captions[b * c.max_text_len] = 'a';
  Trainer trainer(model, o);
  StepBatch batch;
  batch.B = B;
  batch.images = images.data();
  batch.captions = captions.data();
  batch.task_weights = weights;
  std::vector<TaskDraws> used;
  trainer.step(batch, nullptr, &used);
  return used;
}

}  // namespace

RECA_TEST(template_bank_entries_fit_and_are_distinct) {
  const std::vector<std::string> bank = template_paraphrases(48);
  expect_true(bank.size() >= 300, "the bank holds several hundred paraphrases");
  expect_true(bank[0] == "describe the image", "entry 0 is the default template");
  expect_true(std::set<std::string>(bank.begin(), bank.end()).size() == bank.size(), "entries are distinct");
  for (int64_t T : {16, 24, 32}) {
    const std::vector<std::string> cut = template_paraphrases(T);
    bool fits = !cut.empty();
    for (const std::string& s : cut) fits = fits && static_cast<int64_t>(s.size()) <= T;
    expect_true(fits, "every entry fits T = " + std::to_string(T));
    expect_true(cut.size() < bank.size(), "a shorter T keeps fewer entries");
  }
}

RECA_TEST(template_paraphrases_are_drawn_per_sample_keyed_by_sample) {
  TrainerOptions o;
  o.templates = Templates::Paraphrases;
  o.cond_dropout = 0;
  o.seed = 11;
  const int64_t T = ModelConfig::preset("tiny", Mode::Mask).max_text_len;
  const std::vector<std::string> bank = template_paraphrases(T);
  const std::set<std::string> in_bank(bank.begin(), bank.end());
  const std::vector<TaskDraws> eight = draws_of_step(8, o);
  const std::vector<TaskDraws> four = draws_of_step(4, o);
  std::set<std::string> seen;
  for (int64_t b = 0; b < 8; ++b) {
    const std::string s = decode_row(&eight[0].text[b * T], T);
    expect_true(in_bank.count(s) == 1, "sample " + std::to_string(b) + " draws a bank entry: '" + s + "'");
    seen.insert(s);
    if (b < 4) expect_true(s == decode_row(&four[0].text[b * T], T), "the draw of a sample does not depend on B");
  }
  expect_true(seen.size() >= 5, "8 samples draw several different paraphrases");
  o.templates = Templates::Fixed;
  const std::vector<TaskDraws> fixed = draws_of_step(3, o);
  for (int64_t b = 0; b < 3; ++b)
    expect_true(decode_row(&fixed[0].text[b * T], T) == o.template_text, "fixed: the template on every sample");
}

RECA_TEST(step_task_weights_replace_the_options_for_one_step) {
  TrainerOptions o;  // options: reca only
  const double i2t_only[] = {0, 0, 1};
  const std::vector<TaskDraws> used = draws_of_step(2, o, i2t_only);
  expect_true(used.size() == 1 && used[0].task == Task::I2t, "weights {0,0,1}: the step runs i2t alone");
  const std::vector<TaskDraws> both = draws_of_step(2, o, std::vector<double>{1, 1, 0}.data());
  expect_true(both.size() == 2 && both[0].task == Task::Reca && both[1].task == Task::T2i,
              "weights {1,1,0}: reca then t2i");
  for (const std::vector<double>& bad : {std::vector<double>{0, 0, 0}, {-1, 0, 1}, {NAN, 1, 0}}) {
    bool typed = false;
    try {
      draws_of_step(2, o, bad.data());
    } catch (const Error& e) {
      typed = e.code() == ErrorCode::InvalidArgument;
    }
    expect_true(typed, "bad step weights are E_INVALID_ARGUMENT");
  }
}
