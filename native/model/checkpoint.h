// RecA-Mini checkpoints (SPEC §1, §8): one safetensors file holding
//
//   <param name>        every parameter, F32 (or F16/BF16 on request)
//   optim.m.<name>      Adam first moment  (F32)  } trainable tensors only,
//   optim.v.<name>      Adam second moment (F32)  } when saved with a trainer
//   ema.<name>          EMA weights, the parameters' dtype, when EMA is on
//
//   __metadata__:
//     reca.format   "reca-engine/1"
//     reca.config   the ModelConfig JSON
//     reca.dtype    "F32" | "F16" | "BF16": storage of the parameters and EMA
//     reca.step     optimizer steps done         } with a trainer
//     reca.seed     the trainer's Philox seed     }
//     reca.trainer  the TrainerOptions JSON       }
//     ...           the caller's extra entries
//
// Saving writes a temporary file and renames it over the target, so a crash
// or an error mid-save leaves the old file whole (E_IO names the OS error).
//
// Loading validates the whole file before anything is returned: the config,
// every expected tensor (missing, unexpected extra, wrong shape, wrong dtype,
// non-finite values) -> E_CHECKPOINT naming the tensor. Applying it to a model
// or trainer checks the config (E_CHECKPOINT naming the first field that
// differs) and the trainer's trainable set and EMA before changing anything,
// so a failed load leaves the model and trainer in memory as they were.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "model/config.h"
#include "model/reca_model.h"
#include "model/trainer.h"

namespace reca::model {

constexpr const char* kCheckpointFormat = "reca-engine/1";

// TrainerOptions as one JSON object (snake_case field names as in the struct;
// doubles with 17 significant digits, so parsing gives the same bits; the
// seed as a decimal string, exact in every language).
std::string trainer_options_to_json(const TrainerOptions& o);
// Strict inverse: every field required, unknown fields rejected, integers
// where integers are meant; then TrainerOptions::validate(). E_CHECKPOINT
// naming the field.
TrainerOptions trainer_options_from_json(const std::string& json);

// Writes `model` (and, when trainer is non-null, its optimizer state; the
// trainer must belong to the model) to `path`. storage: F32, F16 or BF16 for
// the parameters and EMA (moments are always F32). extra_metadata entries are
// added to __metadata__; the keys written above are reserved.
// E_INVALID_ARGUMENT for a bad storage dtype, a reserved or non-UTF-8 key, a
// trainer of another model; E_NUMERIC when a value is not finite (or does not
// fit F16), naming the tensor, and nothing is written; E_IO when writing fails.
void save_checkpoint(const std::string& path, const RecaModel& model,
                     const Trainer* trainer = nullptr, StDtype storage = StDtype::F32,
                     const std::map<std::string, std::string>& extra_metadata = {});

// A validated checkpoint in host memory. Flat buffers use ParamLayout(config).
struct Checkpoint {
  std::string path;
  ModelConfig config;
  StDtype storage = StDtype::F32;                // dtype the parameters were stored in
  std::map<std::string, std::string> metadata;  // the whole __metadata__
  std::vector<float> params;

  bool has_trainer = false;        // saved with a trainer (optimizer state present)
  TrainerOptions trainer_options;  // as saved; build the resumed Trainer from these
  int64_t step = 0;
  uint64_t seed = 0;
  bool has_ema = false;
  std::vector<float> exp_avg, exp_avg_sq;  // zero outside the trainable tensors
  std::vector<float> ema;                  // frozen tensors hold their parameters

  // Throw E_CHECKPOINT when the checkpoint does not fit; change nothing.
  void check_model(const RecaModel& model) const;
  void check_trainer(const Trainer& trainer) const;
  // check_*, then copy in. apply_to_trainer restores moments, EMA and the
  // step count (the trainer's options are its own; see trainer_options).
  void apply_to_model(RecaModel& model) const;
  void apply_to_trainer(Trainer& trainer) const;
  // Both checks first, then both copies (trainer may be null).
  void apply(RecaModel& model, Trainer* trainer) const;
};

// E_IO when the file cannot be read; E_CHECKPOINT when it is not a valid
// safetensors file, not a reca-engine checkpoint (no reca.config), of another
// format version, or inconsistent (see the top of this header).
Checkpoint load_checkpoint(const std::string& path);

}  // namespace reca::model
