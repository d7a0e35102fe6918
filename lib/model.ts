/**
 * RecA-Mini models and their trainer. Every heavy call (create, load, save,
 * a training step, sampling) runs on the engine's own thread and returns a
 * Promise; the event loop stays free. A model runs one training step at a
 * time and never beside sampling: a call that would overlap is refused with
 * E_BUSY at once (await the running one first).
 */
import { RecaError } from './errors';
import { Tensor } from './tensor';
import { addon } from './loader';
import type {
  NativeArrayInput,
  NativeModel,
  NativeSampleOptions,
  NativeStepResult,
  NativeTensor,
  NativeTrainer,
  NativeTrainerOptions,
} from './native';
import type { Config, NativeSampleOptions as NativeSampleOptionsTable, Preset } from './generated/schema';

export type { Config, Preset } from './generated/schema';
export type Mode = Config['mode'];
export type Task = 'reca' | 't2i' | 'i2t';
/** Parameter groups: understanding encoder, connector, VQ tokenizer, generator. */
export type ParamGroup = 'und' | 'conn' | 'vq' | 'gen';
export type Recipe = 'reca' | 'reca+i2t' | 'tokenizer';

/**
 * A batch of images, NHWC [B, S, S, 3]: uint8 bytes, or float32 in [-1, 1]
 * (converted to bytes by round((x + 1)·127.5), SPEC §0). Copied at the call.
 */
export type ImageInput =
  | Tensor<'uint8'>
  | Tensor<'float32'>
  | { data: Uint8Array | Float32Array; shape: readonly number[] };

export type CodesInput = Tensor<'int32'> | { data: Int32Array; shape: readonly number[] };

export interface CreateOptions {
  /** Size preset (default tiny); `config` overrides single fields. */
  preset?: Preset;
  config?: Partial<Config>;
  /** Generator family (default mask). */
  mode?: Mode;
  /** Initialisation seed (default 0). */
  seed?: number | bigint;
  /** Where the model lives and runs: 'cpu' (default) or 'cuda' (E_DEVICE, with the reason, where there is none). */
  device?: Device;
}

export type Device = 'cpu' | 'cuda';

export interface ModelLoadOptions {
  /** Where the model lives and runs (default 'cpu'). */
  device?: Device;
}

export interface SaveOptions {
  /** Storage of the parameters (and EMA); optimizer moments are always float32. Default float32. */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /** Also store this trainer's optimizer state, step and options, to resume with trainer.load(). */
  trainer?: Trainer;
}

/** The sampler table's options (defaults and ranges: lib/generated/schema.ts). */
export type SampleOptions = NativeSampleOptionsTable;

export interface ReconstructOptions extends SampleOptions {
  /** The text beside the image's own embeddings (default "describe the image"). */
  template?: string;
}

export interface GenerateOptions extends SampleOptions {
  prompts: string[];
}

export interface CaptionOptions {
  /** Bytes at most (default and maximum: config.max_text_len). */
  maxLength?: number;
}

/** Bytes of host memory held for a model and its trainers. */
export interface ModelMemory {
  params: number;
  grads: number;
  /** Adam moments (and EMA). */
  optimizer: number;
  /** Peak activation arenas of the trainers and of the last sampling call. */
  activations: number;
}

function invalid(message: string): RecaError {
  return new RecaError('E_INVALID_ARGUMENT', message);
}

/** Runs `fn`, turning a synchronous throw into a rejected promise. */
function promised<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}

function arrayInput(x: unknown): NativeArrayInput {
  return x instanceof Tensor ? x.native : (x as NativeArrayInput);
}

function tensorOf<D extends 'float32' | 'int32' | 'uint8'>(p: Promise<NativeTensor>): Promise<Tensor<D>> {
  return p.then((t) => Tensor.fromNative<D>(t));
}

function sampleOptions(o: SampleOptions & { template?: string } = {}, what: string): NativeSampleOptions {
  if (o === null || typeof o !== 'object') throw invalid(`${what} options must be an object`);
  const { steps, cfg, temperature, topK, choiceTemperature, seed, template } = o;
  return { steps, cfg, temperature, topK, choiceTemperature, seed, template };
}

/** A RecA-Mini model (parameters in native memory). Free it with dispose() or `using`. */
export class Model {
  readonly #native: NativeModel;
  #config?: Readonly<Config>;

  private constructor(native: NativeModel) {
    this.#native = native;
  }

  /** A freshly initialised model (SPEC §8 init from `seed`). */
  static create(options: CreateOptions = {}): Promise<Model> {
    return promised(async () => {
      if (options === null || typeof options !== 'object') throw invalid('Model.create options must be an object');
      const { preset, config, mode, seed, device } = options;
      return new Model(await addon().createModel({ preset, config: config as Record<string, unknown>, mode, seed, device }));
    });
  }

  /** A model from a checkpoint written by save() (E_CHECKPOINT when the file is not a valid one). */
  static load(path: string, options: ModelLoadOptions = {}): Promise<Model> {
    return promised(async () => {
      if (options === null || typeof options !== 'object') throw invalid('Model.load options must be an object');
      return new Model(await addon().loadModel(path, { device: options.device }));
    });
  }

  /** @internal the native handle (E_DISPOSED after dispose). */
  get native(): NativeModel {
    if (this.#native.disposed) throw new RecaError('E_DISPOSED', 'this model was disposed');
    return this.#native;
  }

  get config(): Readonly<Config> {
    if (!this.#config) this.#config = Object.freeze(JSON.parse(this.native.configJson) as Config);
    return this.#config;
  }

  get parameterCount(): number {
    return this.native.parameterCount;
  }

  /** Where the model lives and runs. */
  get device(): Device {
    return this.native.device as Device;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  memory(): ModelMemory {
    return this.native.memory();
  }

  /** Tokens in one generator sequence of `task` (condition block + target block, SPEC §4). */
  sequenceLength(task: Task): number {
    return this.native.sequenceLength(task);
  }

  /** The understanding embeddings c of the images: float32 [B, N_u, width]. */
  embed(images: ImageInput): Promise<Tensor<'float32'>> {
    return promised(() => tensorOf<'float32'>(this.native.embed(arrayInput(images))));
  }

  /** A float32 copy of one parameter tensor (names: parameterNames()). */
  parameter(name: string): Promise<Tensor<'float32'>> {
    return promised(() => tensorOf<'float32'>(this.native.parameter(name)));
  }

  /** Every parameter's name, in checkpoint order. */
  parameterNames(): string[] {
    return this.native.parameterNames();
  }

  /** VQ codes (discrete modes): int32 [B, N]. */
  tokenize(images: ImageInput): Promise<Tensor<'int32'>> {
    return promised(() => tensorOf<'int32'>(this.native.tokenize(arrayInput(images))));
  }

  /** Images of VQ codes (discrete modes): uint8 [B, S, S, 3]. */
  decode(codes: CodesInput): Promise<Tensor<'uint8'>> {
    return promised(() => tensorOf<'uint8'>(this.native.decode(arrayInput(codes))));
  }

  /** RecA reconstruction: regenerates each image from its own embeddings and the template. uint8 [B, S, S, 3]. */
  reconstruct(images: ImageInput, options: ReconstructOptions = {}): Promise<Tensor<'uint8'>> {
    return promised(() =>
      tensorOf<'uint8'>(this.native.reconstruct(arrayInput(images), sampleOptions(options, 'reconstruct'))),
    );
  }

  /** Text-to-image, one image per prompt: uint8 [B, S, S, 3]. */
  generate(options: GenerateOptions): Promise<Tensor<'uint8'>> {
    return promised(() => {
      if (options === null || typeof options !== 'object') throw invalid('generate needs {prompts, ...}');
      return tensorOf<'uint8'>(this.native.generate(options.prompts, sampleOptions(options, 'generate')));
    });
  }

  /**
   * Text-to-image as generate(), but the sampler's own output before bytes: images float32
   * [B, S, S, 3] in [-1, 1] and, in the discrete modes, the sampled VQ codes int32 [B, N]
   * (null in flow mode).
   */
  generateRaw(options: GenerateOptions): Promise<{ images: Tensor<'float32'>; codes: Tensor<'int32'> | null }> {
    return promised(async () => {
      if (options === null || typeof options !== 'object') throw invalid('generateRaw needs {prompts, ...}');
      const r = await this.native.generateRaw(options.prompts, sampleOptions(options, 'generateRaw'));
      return {
        images: Tensor.fromNative<'float32'>(r.images),
        codes: r.codes ? Tensor.fromNative<'int32'>(r.codes) : null,
      };
    });
  }

  /** Greedy captions of the images. */
  caption(images: ImageInput, options: CaptionOptions = {}): Promise<string[]> {
    return promised(() => this.native.caption(arrayInput(images), options));
  }

  /**
   * Writes a safetensors checkpoint atomically (a temporary file renamed over
   * `path`: a failure leaves the old file whole).
   */
  save(path: string, options: SaveOptions = {}): Promise<void> {
    return promised(() => {
      if (options === null || typeof options !== 'object') throw invalid('save options must be an object');
      const { dtype, trainer } = options;
      if (trainer !== undefined && !(trainer instanceof Trainer)) throw invalid('save options.trainer must be a Trainer');
      return this.native.save(path, { dtype, trainer: trainer?.native });
    });
  }

  /**
   * Replaces the parameters with a checkpoint's. A checkpoint of another
   * config or mode is E_CHECKPOINT, and the model is left as it was.
   */
  loadParameters(path: string): Promise<void> {
    return promised(() => this.native.loadParameters(path));
  }

  /**
   * Frees the model now (idempotent). A job already running keeps what it
   * uses until it settles; trainers of this model turn E_DISPOSED.
   */
  dispose(): void {
    this.#native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return this.disposed ? 'Model(disposed)' : `Model(${this.config.mode}, ${this.parameterCount} parameters)`;
  }
}

// ---- Trainer -----------------------------------------------------------------

export interface TrainerOptions {
  /**
   * Task weights λ (SPEC §5); a task left out is off. Default from the recipe:
   * reca {reca: 1}; reca+i2t {reca: 1, i2t: 1}.
   */
  tasks?: { reca?: number; t2i?: number; i2t?: number };
  /**
   * reca (default): the RecA task, und/conn/vq frozen. reca+i2t: reca and
   * captioning with the understanding side (und, conn) trainable. tokenizer:
   * the VQ tokenizer loss, vq.* only (discrete modes).
   */
  recipe?: Recipe;
  /** Images per micro-batch (default: the whole shard); gradients accumulate over them. */
  microBatch?: number;
  /**
   * Gradient shards of the global batch (default 0: one per rank). Each shard's
   * gradient is computed alone and the shards are summed in a fixed order, so
   * every rank count that divides `shards` gives the same bytes.
   */
  shards?: number;
  /**
   * 'auto' (default): data-parallel over MPI when `mpirun` started this
   * process; 'mpi': always (E_DEVICE saying what to install when OpenMPI is
   * missing); 'off': one process. On N ranks, step() takes this rank's
   * samples of the global batch: see `localSamples`.
   */
  distributed?: 'auto' | 'mpi' | 'off';
  optimizer?: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number };
  schedule?: { warmup?: number; kind?: 'constant' | 'cosine'; totalSteps?: number; minLr?: number };
  /** Global-norm clipping (default 1; 0 = off). */
  maxGradNorm?: number;
  /** EMA decay of the weights (default 0 = off). */
  ema?: number;
  /** CFG dropout probability of the template / caption (default 0.1). */
  condDropout?: number;
  /** Scale of the gradient into the understanding embeddings on the reca task (default 0.1). */
  condGradScale?: number;
  /**
   * Weight of the condition-alignment loss (SPEC §5; default 0 = off): each
   * image's reca condition block against its caption's t2i one, contrasted over
   * the micro-batch. Needs captions.
   */
  alignWeight?: number;
  /** Groups that get no gradient (default from the recipe). */
  freeze?: ParamGroup[];
  /** Seed of every training draw (default 0). */
  seed?: number | bigint;
  /**
   * A step whose loss, gradient or update is not finite: 'error' (default)
   * rejects with E_NUMERIC; 'skip' resolves with `skipped: true` and counts it.
   * Parameters and optimizer state are unchanged either way.
   */
  nonFinite?: 'error' | 'skip';
  /** The reca template (default "describe the image"). */
  template?: string;
  /**
   * The reca task's text per sample: 'fixed' (the template on every sample) or
   * 'paraphrases' (a paraphrase of "describe the image" from the built-in bank,
   * drawn per sample). Default: 'fixed' when `template` is given, else 'paraphrases'.
   */
  templates?: 'fixed' | 'paraphrases';
  /**
   * What the reca task's image slots hold: 'understanding' (default, RecA: the
   * model's own understanding embeddings) or 'tokenizer' (the generator's own
   * embeddings of the image's tokens pooled to the same grid, no gradient: the
   * ablation whose condition carries the pixels but not the understanding).
   */
  condition?: 'understanding' | 'tokenizer';
  /**
   * Recipe tokenizer: every this many steps, codes the batch did not choose
   * are re-seeded from its encoder outputs (dead-code restart; default 50, 0 = off).
   */
  codeRestart?: number;
  /**
   * Products of the Linear layers during a step: 'fp32' (default), or 'bf16':
   * operands rounded to bf16, products summed in fp32 (CPU with AVX512_BF16,
   * see info().cpu.bf16Matmul; E_DEVICE elsewhere). Weights, gradients and
   * optimizer state stay fp32.
   */
  matmulPrecision?: 'fp32' | 'bf16';
}

export interface StepBatch {
  images: ImageInput;
  /** One per image; needed by the t2i and i2t tasks. Longer than max_text_len bytes: cut at a UTF-8 boundary. */
  captions?: string[];
  /**
   * Task weights for this step only, in place of the trainer's `tasks` (a
   * recipe that alternates tasks between steps). Tasks left out are off.
   */
  tasks?: { reca?: number; t2i?: number; i2t?: number };
}

/** What a training step reports. */
export type StepResult = NativeStepResult;

const GROUPS: readonly ParamGroup[] = ['und', 'conn', 'vq', 'gen'];
const TRAINER_KEYS = new Set([
  'tasks', 'recipe', 'microBatch', 'optimizer', 'schedule', 'maxGradNorm', 'ema', 'condDropout',
  'condGradScale', 'freeze', 'seed', 'template', 'templates', 'codeRestart', 'nonFinite', 'shards', 'distributed',
  'condition', 'matmulPrecision', 'alignWeight',
]);

function checkKeys(o: object, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw invalid(`${what} has an unknown option '${k}' (options: ${allowed.join(', ')})`);
  }
}

function objectOr(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid(`${what} must be an object`);
  return v as Record<string, unknown>;
}

/** Recipe + options -> the addon's flat options. */
export function resolveTrainerOptions(options: TrainerOptions): NativeTrainerOptions {
  const o = objectOr(options, 'trainer options') as TrainerOptions;
  checkKeys(o, [...TRAINER_KEYS], 'trainer options');
  const recipe = o.recipe ?? 'reca';
  if (!['reca', 'reca+i2t', 'tokenizer'].includes(recipe)) {
    throw invalid(`recipe must be 'reca', 'reca+i2t' or 'tokenizer', got '${String(recipe)}'`);
  }
  const out: NativeTrainerOptions = {};
  if (recipe === 'tokenizer') {
    if (o.tasks !== undefined || o.freeze !== undefined) {
      throw invalid("recipe 'tokenizer' trains vq.* with the tokenizer loss only: leave out tasks and freeze");
    }
    out.tokenizer = true;
    out.codeRestart = o.codeRestart ?? 50;
  } else {
    if (o.codeRestart !== undefined) throw invalid("codeRestart belongs to recipe 'tokenizer'");
    const tasks = o.tasks === undefined ? (recipe === 'reca' ? { reca: 1 } : { reca: 1, i2t: 1 }) : objectOr(o.tasks, 'tasks');
    checkKeys(tasks, ['reca', 't2i', 'i2t'], 'tasks');
    const t = tasks as { reca?: number; t2i?: number; i2t?: number };
    out.weightReca = t.reca ?? 0;
    out.weightT2i = t.t2i ?? 0;
    out.weightI2t = t.i2t ?? 0;
    const freeze = o.freeze ?? (recipe === 'reca' ? ['und', 'conn', 'vq'] : ['vq']);
    if (!Array.isArray(freeze)) throw invalid('freeze must be an array of groups (und, conn, vq, gen)');
    for (const g of freeze) {
      if (!GROUPS.includes(g)) throw invalid(`freeze: unknown group '${String(g)}' (groups: ${GROUPS.join(', ')})`);
    }
    out.trainUnd = !freeze.includes('und');
    out.trainConn = !freeze.includes('conn');
    out.trainVq = !freeze.includes('vq');
    out.trainGen = !freeze.includes('gen');
  }
  const opt = objectOr(o.optimizer, 'optimizer');
  checkKeys(opt, ['lr', 'betas', 'eps', 'weightDecay'], 'optimizer');
  out.lr = opt.lr as number | undefined;
  if (opt.betas !== undefined) {
    const b = opt.betas as unknown[];
    if (!Array.isArray(b) || b.length !== 2) throw invalid('optimizer.betas must be [beta1, beta2]');
    [out.beta1, out.beta2] = b as [number, number];
  }
  out.eps = opt.eps as number | undefined;
  out.weightDecay = opt.weightDecay as number | undefined;
  const sch = objectOr(o.schedule, 'schedule');
  checkKeys(sch, ['warmup', 'kind', 'totalSteps', 'minLr'], 'schedule');
  out.warmup = sch.warmup as number | undefined;
  out.schedule = sch.kind as NativeTrainerOptions['schedule'];
  out.totalSteps = sch.totalSteps as number | undefined;
  out.minLr = sch.minLr as number | undefined;
  out.microBatch = o.microBatch;
  out.shards = o.shards;
  out.maxGradNorm = o.maxGradNorm;
  out.ema = o.ema;
  out.condDropout = o.condDropout;
  out.condGradScale = o.condGradScale;
  out.alignWeight = o.alignWeight;
  out.seed = o.seed;
  out.template = o.template;
  if (recipe !== 'tokenizer') out.templates = o.templates ?? (o.template !== undefined ? 'fixed' : 'paraphrases');
  out.nonFinite = o.nonFinite;
  out.condition = o.condition;
  out.matmulPrecision = o.matmulPrecision;
  return out;
}

/** See Trainer.localSamples. */
export function localSamples(globalBatch: number, shards: number, rank: number, ranks: number): number[] {
  if (!Number.isInteger(globalBatch) || globalBatch < 1 || globalBatch % shards !== 0) {
    throw invalid(`the global batch (${globalBatch}) must be a positive multiple of shards (${shards}), so that every shard has the same size`);
  }
  const per = globalBatch / shards;
  const out: number[] = [];
  for (let s = rank; s < shards; s += ranks) {
    for (let i = 0; i < per; i++) out.push(s * per + i);
  }
  return out;
}

/**
 * Trains a model (SPEC §5, §6): draws, micro-batches, clipping, AdamW, EMA.
 * Holds grads and Adam moments in native memory; free with dispose().
 */
export class Trainer {
  readonly model: Model;
  readonly #native: NativeTrainer;

  constructor(model: Model, options: TrainerOptions = {}) {
    if (!(model instanceof Model)) throw invalid('new Trainer(model, options): model must be a Model');
    const a = addon();
    const distributed = objectOr(options, 'trainer options').distributed ?? 'auto';
    if (!['auto', 'mpi', 'off'].includes(distributed as string)) {
      throw invalid(`distributed must be 'auto', 'mpi' or 'off', got '${String(distributed)}'`);
    }
    this.#native = new a.Trainer(model.native, resolveTrainerOptions(options), distributed as 'auto' | 'mpi' | 'off');
    this.model = model;
  }

  /** @internal */
  get native(): NativeTrainer {
    if (this.#native.disposed) throw new RecaError('E_DISPOSED', 'this trainer was disposed');
    return this.#native;
  }

  /** Optimizer steps done (restored by load()). */
  get steps(): number {
    return this.native.steps;
  }

  /** The options in force (SPEC names, as stored in checkpoints). */
  get options(): Record<string, unknown> {
    return JSON.parse(this.native.optionsJson) as Record<string, unknown>;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  /** This process's rank (0 in one process). */
  get rank(): number {
    return this.native.rank;
  }

  /** Ranks of the run (1 in one process). */
  get ranks(): number {
    return this.native.ranks;
  }

  /** What connects the ranks ('mpi (Open MPI v4.1.4 ...)'), or null in one process. */
  get communicator(): string | null {
    return this.native.communicator;
  }

  /**
   * The indices, within a global batch of `globalBatch` images, of the ones
   * this rank's step() takes, in order: shard s of the global batch is images
   * [s·G/S, (s+1)·G/S), and rank r computes shards r, N + r, 2N + r, ...
   */
  localSamples(globalBatch: number): number[] {
    // shards 0: one per rank.
    return localSamples(globalBatch, (this.options.shards as number) || this.ranks, this.rank, this.ranks);
  }

  /**
   * One optimizer step over the batch. E_BUSY when this model is already
   * stepping or sampling; E_NUMERIC when the loss or gradient is not finite
   * (parameters and optimizer state are then unchanged).
   */
  step(batch: StepBatch): Promise<StepResult> {
    return promised(() => {
      if (batch === null || typeof batch !== 'object' || batch instanceof Tensor) {
        throw invalid('trainer.step needs {images, captions?}');
      }
      let weights: [number, number, number] | undefined;
      if (batch.tasks !== undefined) {
        const t = objectOr(batch.tasks, 'step tasks');
        checkKeys(t, ['reca', 't2i', 'i2t'], 'step tasks');
        weights = [t.reca ?? 0, t.t2i ?? 0, t.i2t ?? 0] as [number, number, number];
      }
      return this.native.step(arrayInput(batch.images), batch.captions, weights) as Promise<NativeStepResult>;
    });
  }

  /**
   * Resumes from a checkpoint saved with `model.save(path, {trainer})`:
   * parameters, Adam moments, EMA and step count. The config and the
   * trainable groups must match (E_CHECKPOINT otherwise; nothing changes).
   */
  load(path: string): Promise<void> {
    return promised(() => this.native.load(path));
  }

  dispose(): void {
    this.#native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
