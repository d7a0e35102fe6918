/**
 * reca-engine: a native engine for RecA post-training of small unified
 * multimodal models. This module is the public API: tensors, ops, engine
 * settings and benchmarks, all backed by reca.node. It only re-exports; the
 * code lives in the modules named here, which never import this file.
 */
export { RecaError, RECA_ERROR_CODES, isRecaError, type RecaErrorCode } from './errors';
export type { Backend, CudaArtifactStatus, LoadOptions } from './loader';
export type { CudaDeviceInfo, DType, Isa, KernelBenchRecord } from './native';
export {
  getIsa,
  getThreads,
  info,
  load,
  memory,
  setIsa,
  setThreads,
  type EngineInfo,
  type MemoryStats,
} from './engine';
export { Tensor, type ArrayFor, type TensorData } from './tensor';
export { ops, type MatmulOptions } from './ops';
export { bench, type KernelBenchOptions } from './bench/kernels';
export { debugStep, type DebugStepOptions, type DebugStepResult } from './debug_step';

export {
  Model,
  Trainer,
  localSamples,
  resolveTrainerOptions,
  type CaptionOptions,
  type CodesInput,
  type Config,
  type CreateOptions,
  type Device,
  type GenerateOptions,
  type ImageInput,
  type Mode,
  type ModelLoadOptions,
  type ModelMemory,
  type ParamGroup,
  type Preset,
  type Recipe,
  type ReconstructOptions,
  type SampleOptions,
  type SaveOptions,
  type StepBatch,
  type StepResult,
  type Task,
  type TrainerOptions,
} from './model';

export { abortRanks, launchedRank } from './distributed';

// The shapes world and ShapesEval, image files, and the training jobs.
export * from './shapes';
export {
  gridImage,
  loadImageFolder,
  readPng,
  writeGrid,
  writePng,
  type GridOptions,
  type ImageFolder,
  type ImageFolderOptions,
  type SkippedFile,
} from './images';
export {
  defaultSampler,
  evaluate,
  folderData,
  posttrain,
  pretrain,
  shapesData,
  shippedBase,
  trainSteps,
  PRETRAIN_DEFAULTS,
  type DataSource,
  type EvaluateOptions,
  type Evaluation,
  type PosttrainOptions,
  type PretrainOptions,
} from './workflows';
