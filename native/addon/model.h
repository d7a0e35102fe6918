// Model and Trainer handles (JS classes NativeModel, NativeTrainer).
//
// Ownership: a ModelState owns the RecaModel; a TrainerState owns a Trainer
// and shares its ModelState. The JS objects hold shared pointers, and so does
// every job while it is queued or running, so dispose() (or the GC) never frees
// memory under a running job: the handle turns E_DISPOSED at once and the
// memory goes when the last job holding it settles.
//
// Exclusion (JS thread only, no locks): jobs that read the parameters
// (sampling, embed, save) may queue together; a job that writes them (a
// training step, loading parameters) needs the model to itself. A call that
// cannot have what it needs is refused at once with E_BUSY, never queued
// behind, so steps and sampling are never interleaved.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "addon/handle.h"
#include "model/reca_model.h"
#include "model/trainer.h"

namespace reca::addon {

struct TrainerState;

struct ModelState {
  std::unique_ptr<model::RecaModel> model;
  // JS thread only.
  bool disposed = false;
  int readers = 0;
  bool writer = false;
  std::string running;  // what holds the model now, for E_BUSY messages
  std::vector<TrainerState*> trainers;
  // Written on the engine thread after a sampling job.
  std::atomic<int64_t> sampler_bytes{0};
};

struct TrainerState {
  std::shared_ptr<ModelState> model;  // declared first: destroyed after the trainer
  std::unique_ptr<model::Trainer> trainer;
  std::atomic<int64_t> activation_bytes{0};
  std::atomic<int64_t> steps_done{0};
  ~TrainerState();
};

// Holds a model for one job: acquired on the JS thread when the job is made
// (E_BUSY when it cannot be), released when the job is destroyed (also on the
// JS thread).
class ModelLease {
 public:
  enum Kind { Read, Write };
  ModelLease(std::shared_ptr<ModelState> state, Kind kind, const std::string& what);
  ~ModelLease();
  ModelLease(const ModelLease&) = delete;
  ModelLease& operator=(const ModelLease&) = delete;
  ModelState& state() const { return *state_; }
  model::RecaModel& model() const { return *state_->model; }

 private:
  std::shared_ptr<ModelState> state_;
  Kind kind_;
};

class ModelWrap : public Handle<ModelWrap, std::shared_ptr<ModelState>> {
 public:
  static Napi::Function Define(Napi::Env env);
  // A new JS NativeModel owning `state`.
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<ModelState> state);
  // The live state behind `value` (E_INVALID_ARGUMENT / E_DISPOSED).
  static std::shared_ptr<ModelState> From(Napi::Env env, const Napi::Value& value, const char* what);

  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  const std::shared_ptr<ModelState>& Live() const { return Held("model"); }

  Napi::Value GetConfig(const Napi::CallbackInfo& info);
  Napi::Value GetParameterCount(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value SequenceLength(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value Parameter(const Napi::CallbackInfo& info);
  Napi::Value ParameterNames(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value Reconstruct(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value GenerateRaw(const Napi::CallbackInfo& info);
  Napi::Value Caption(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value LoadParameters(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

class TrainerWrap : public Handle<TrainerWrap, std::shared_ptr<TrainerState>> {
 public:
  static Napi::Function Define(Napi::Env env);
  static std::shared_ptr<TrainerState> From(Napi::Env env, const Napi::Value& value, const char* what);

  // new NativeTrainer(model, options, distributed?): options as lib/native.ts
  // NativeTrainerOptions; distributed 'auto' (default: MPI when mpirun started
  // this process), 'mpi' or 'off'.
  explicit TrainerWrap(const Napi::CallbackInfo& info);

 private:
  const std::shared_ptr<TrainerState>& Live() const { return Held("trainer"); }

  Napi::Value GetSteps(const Napi::CallbackInfo& info);
  Napi::Value GetOptions(const Napi::CallbackInfo& info);
  Napi::Value GetRank(const Napi::CallbackInfo& info);
  Napi::Value GetRanks(const Napi::CallbackInfo& info);
  Napi::Value GetCommunicator(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

// Parses a config override object (SPEC §1 field names) onto `cfg`.
void apply_config_overrides(const Napi::Value& value, model::ModelConfig* cfg);

}  // namespace reca::addon
