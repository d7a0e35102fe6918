/**
 * The engine's jobs, as functions the CLI and applications share: pretraining
 * a base model on the shapes world, ShapesEval scoring, RecA post-training and
 * the before/after demo. Every heavy step runs on the engine thread (Model and
 * Trainer calls), so these functions keep the event loop free.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { RecaError } from './errors';
import { fieldDefault, SCHEMA } from './generated/schema';
import type { ImageFolder } from './images';
import { Model, Trainer, type Config, type Device, type Mode, type Preset, type Recipe, type SampleOptions, type StepResult, type TrainerOptions } from './model';
import { readSafetensors, readSafetensorsMetadata, writeSafetensors } from './safetensors';
import { evalSet, renderEvalImages, scoreImages, type EvalItem, type EvalReport } from './shapes/eval';
import { CATEGORIES, renderScene, Rng, ShapesWorld, type Category } from './shapes/world';

// ---- data ---------------------------------------------------------------------

/** A stream of training batches. */
export interface DataSource {
  /** What the data is, for logs and reports. */
  readonly description: string;
  readonly imageSize: number;
  /** Whether batches carry captions (the t2i and i2t tasks need them). */
  readonly captioned: boolean;
  /**
   * The next global batch of `batchSize`; with `pick` (indices into that batch,
   * one rank's samples), only those images, in that order: the stream still
   * advances by the whole batch, and images outside `pick` are not produced.
   */
  next(batchSize: number, pick?: readonly number[]): { images: Uint8Array; shape: [number, number, number, number]; captions?: string[] };
  /** Moves past `batches` batches of `batchSize` without reading them (an exact resume). */
  skip(batches: number, batchSize: number): void;
}

/** Batches of the built-in shapes world (train prompts only), batch k of a seed always the same. */
export function shapesData(imageSize: number, seed = 0): DataSource {
  const world = new ShapesWorld({ imageSize, split: 'train', seed });
  let index = 0;
  return {
    description: `shapes world (train split, seed ${seed})`,
    imageSize,
    captioned: true,
    next(batchSize, pick) {
      if (!pick) {
        const b = world.batch(batchSize, index++);
        return { images: b.images, shape: b.shape, captions: b.captions };
      }
      // Scene n of the stream is batch n / batchSize's image n % batchSize.
      const frame = imageSize * imageSize * 3;
      const images = new Uint8Array(pick.length * frame);
      const captions = pick.map((i, k) => {
        const scene = world.scene(index * batchSize + i);
        renderScene(scene, imageSize, images, k * frame);
        return scene.prompt.text;
      });
      index++;
      return { images, shape: [pick.length, imageSize, imageSize, 3], captions };
    },
    skip(batches) {
      index += batches;
    },
  };
}

/**
 * Uncaptioned renders of the shapes world: the layouts of every category,
 * single objects included (RecA's data: images without text, so no prompt
 * text of either split reaches training through them).
 */
export function shapesImages(imageSize: number, seed = 0): DataSource {
  const world = new ShapesWorld({ imageSize, split: 'all', seed });
  let index = 0;
  return {
    description: `shapes world images (every category, no captions, seed ${seed})`,
    imageSize,
    captioned: false,
    next(batchSize, pick) {
      if (!pick) {
        const b = world.batch(batchSize, index++);
        return { images: b.images, shape: b.shape };
      }
      const frame = imageSize * imageSize * 3;
      const images = new Uint8Array(pick.length * frame);
      pick.forEach((i, k) => renderScene(world.scene(index * batchSize + i), imageSize, images, k * frame));
      index++;
      return { images, shape: [pick.length, imageSize, imageSize, 3] };
    },
    skip(batches) {
      index += batches;
    },
  };
}

/** Batches of a loaded image folder: a seeded shuffle per epoch. */
export function folderData(folder: ImageFolder, seed = 0): DataSource {
  const [count, S] = folder.shape;
  const rng = new Rng(seed);
  let order: number[] = [];
  let at = 0;
  const frame = S * S * 3;
  // The next image's index: a fresh seeded shuffle at each epoch.
  const nextIndex = (): number => {
    if (at === order.length) {
      order = Array.from({ length: count }, (_, k) => k);
      for (let k = count - 1; k > 0; k--) {
        const j = rng.int(k + 1);
        [order[k], order[j]] = [order[j], order[k]];
      }
      at = 0;
    }
    return order[at++];
  };
  return {
    description: `image folder (${count} images${folder.captions ? ', captioned' : ''})`,
    imageSize: S,
    captioned: folder.captions !== undefined,
    next(batchSize, pick) {
      // The shuffle order advances by the whole global batch on every rank.
      const sources = Array.from({ length: batchSize }, () => nextIndex());
      const chosen = pick ? pick.map((i) => sources[i]) : sources;
      const images = new Uint8Array(chosen.length * frame);
      const captions: string[] = [];
      chosen.forEach((src, i) => {
        images.set(folder.images.subarray(src * frame, (src + 1) * frame), i * frame);
        if (folder.captions) captions.push(folder.captions[src]);
      });
      return { images, shape: [chosen.length, S, S, 3], captions: folder.captions ? captions : undefined };
    },
    skip(batches, batchSize) {
      for (let i = 0; i < batches * batchSize; i++) nextIndex();
    },
  };
}

// ---- training ---------------------------------------------------------------

/** The next global batch of `batch` images, or on several ranks this rank's part of it. */
export function nextBatch(trainer: Trainer, data: DataSource, batch: number): ReturnType<DataSource['next']> {
  const pick = trainer.ranks > 1 ? trainer.localSamples(batch) : undefined;
  const b = data.next(batch, pick);
  if (pick && b.shape[0] !== pick.length) {
    throw new RecaError('E_INVALID_ARGUMENT', `data source "${data.description}" ignored this rank's sample indices: a DataSource used on several ranks must honour next(batchSize, pick)`);
  }
  return b;
}

export type StepHook = (stage: string, step: number, total: number, result: StepResult) => void;

/** Runs `steps` optimizer steps of `trainer` on `data`; returns the results. */
export async function trainSteps(
  trainer: Trainer,
  data: DataSource,
  steps: number,
  batch: number,
  stage: string,
  onStep?: StepHook,
): Promise<StepResult[]> {
  const results: StepResult[] = [];
  for (let i = 0; i < steps; i++) {
    const b = nextBatch(trainer, data, batch);
    const r = await trainer.step({ images: { data: b.images, shape: b.shape }, captions: b.captions });
    results.push(r);
    onStep?.(stage, i + 1, steps, r);
  }
  return results;
}

export interface PretrainOptions {
  /** Where the model lives and runs (default 'cpu'). */
  device?: Device;
  /** Continue from this checkpoint's parameters (preset, mode and config come from it). */
  init?: string;
  /**
   * Give the model conn.norm (config `cond_norm`, SPEC §3). With `init` from a checkpoint
   * without it, the loaded model gains a fresh conn.norm (gain 0.02, bias 0) and keeps
   * every other parameter.
   */
  condNorm?: boolean;
  preset?: Preset;
  mode?: Mode;
  config?: Partial<Config>;
  seed?: number;
  /** Tokenizer stage (discrete modes): steps, batch and learning rate. */
  tokenizerSteps?: number;
  tokenizerBatch?: number;
  tokenizerLr?: number;
  /** Generation + understanding stage (t2i + i2t, everything but vq trainable). */
  steps?: number;
  batch?: number;
  lr?: number;
  data?: DataSource;
  onStep?: StepHook;
  /** Data parallelism (Trainer option `distributed`; default 'auto'): `batch` sizes are global. */
  distributed?: 'auto' | 'mpi' | 'off';
  /** Gradient shards of each global batch (Trainer option `shards`; default: one per rank). */
  shards?: number;
  /**
   * Trainer option matmulPrecision of both stages. Not part of the schedule: a run
   * saved at one precision may resume at the other (the step's arithmetic changes,
   * not its draws or learning rates).
   */
  matmulPrecision?: 'fp32' | 'bf16';
  /** Trainer option alignWeight of the t2i+i2t stage (default 0: off). */
  alignWeight?: number;
  /** Write a resumable checkpoint (float32, with the stage's trainer) here every `saveEvery` steps and at each stage's end. */
  save?: string;
  saveEvery?: number;
  /** Continue the run saved (with `save`) in this checkpoint: its stage, step, optimizer state and data position. */
  resume?: string;
  /** Stop, after saving, once this many steps of the whole run (tokenizer steps first) are done. */
  stopAt?: number;
  /** Every this many t2i+i2t steps and at that stage's end: ShapesEval of the model, passed to onEval. */
  evalEvery?: number;
  evalOptions?: EvaluateOptions;
  onEval?: (point: CurvePoint) => void | Promise<void>;
}

/** One point of a pretraining curve. */
export interface CurvePoint {
  step: number;
  /** Captioned images the t2i+i2t stage has seen so far. */
  images: number;
  /** Mean loss of the steps since the previous point (of this process). */
  loss: number;
  overall: number;
  categories: Record<string, number>;
  evalSeconds: number;
  /** The sampler of this point's ShapesEval (curves written before EVAL_STEPS sampled at 32 steps and have none). */
  sampler: SampleOptions;
}

/** Defaults of `reca pretrain` (the shipped base models were made with these). */
export const PRETRAIN_DEFAULTS = {
  tokenizerSteps: 1500,
  tokenizerBatch: 64,
  tokenizerLr: 2e-3,
  steps: 1500,
  batch: 24,
  lr: 1e-3,
} as const;

/** Which stage and step a checkpoint written by pretrain's `save` stopped at. */
export function pretrainStateOf(file: string): { stage: 'tokenizer' | 't2i+i2t'; step: number; trainer: Record<string, unknown> } {
  const meta = readSafetensorsMetadata(file);
  const trainer = meta['reca.trainer'];
  if (trainer === undefined || meta['reca.step'] === undefined) {
    throw new RecaError('E_CHECKPOINT', `${file} holds no trainer state: resume takes a checkpoint written by pretrain's save (--save)`);
  }
  let options: Record<string, unknown>;
  try {
    options = JSON.parse(trainer) as Record<string, unknown>;
  } catch {
    throw new RecaError('E_CHECKPOINT', `${file}: reca.trainer is not JSON`);
  }
  return { stage: options.tokenizer === true ? 'tokenizer' : 't2i+i2t', step: Number(meta['reca.step']), trainer: options };
}

/**
 * A resumed pretraining stage must run the schedule it was saved with, or the run
 * would silently differ from a straight one: the learning rate, its warm-up and
 * cosine span, the seed and the alignment weight, as stored in the checkpoint's
 * trainer options.
 */
function checkSameSchedule(file: string, saved: Record<string, unknown>, options: TrainerOptions): void {
  const wanted: Record<string, unknown> = {
    lr: options.optimizer?.lr, warmup: options.schedule?.warmup, totalSteps: options.schedule?.totalSteps,
    minLr: options.schedule?.minLr, seed: options.seed === undefined ? undefined : String(options.seed),
    alignWeight: options.alignWeight ?? 0,
  };
  const differ = Object.entries(wanted).filter(([k, v]) => v !== undefined && saved[k] !== undefined && String(saved[k]) !== String(v));
  if (differ.length > 0) {
    throw new RecaError(
      'E_INVALID_ARGUMENT',
      `${file} was saved by a run with ${differ.map(([k]) => `${k} ${String(saved[k])}`).join(', ')}, but this run has ` +
        `${differ.map(([k, v]) => `${k} ${String(v)}`).join(', ')}: resume with the options it was started with (--steps, --tokenizer-steps, --lr, --seed, --align-weight)`,
    );
  }
}

/**
 * `init`'s model, given conn.norm when `condNorm` asks for it and the checkpoint has
 * none: every stored parameter kept, conn.norm as the engine initialises it (SPEC §8).
 */
async function loadInit(init: string, condNorm: boolean, device: Device | undefined): Promise<Model> {
  const model = await Model.load(init, { device });
  if (!condNorm || model.config.cond_norm) return model;
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-cond-norm-'));
  try {
    const plain = path.join(tmpDir, 'plain.safetensors');
    await model.save(plain, { dtype: 'float32' });
    const config = { ...model.config, cond_norm: true };
    model.dispose();
    const { metadata, tensors } = readSafetensors(plain);
    // The layer's starting values come from the engine's own init of that config.
    const fresh: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    {
      using blank = await Model.create({ preset: 'tiny', config });
      for (const name of ['conn.norm.weight', 'conn.norm.bias']) {
        using t = await blank.parameter(name);
        fresh[name] = { dtype: 'F32', shape: t.shape, data: t.toArray() };
      }
    }
    const out: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of tensors) {
      out[name] = t as { dtype: 'F32'; shape: number[]; data: Float32Array };
      if (name === 'conn.fc2.bias') Object.assign(out, fresh);  // layout order: conn.norm follows conn.fc2
    }
    const normed = path.join(tmpDir, 'cond-norm.safetensors');
    await writeSafetensors(normed, out, { ...metadata, 'reca.config': JSON.stringify(config) });
    return await Model.load(normed, { device });
  } finally {
    if (!model.disposed) model.dispose();
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/**
 * A base model from scratch: the VQ tokenizer alone (discrete modes), then
 * text-to-image and image-to-text together (the understanding side learns
 * from captions, so its embeddings carry what the captions say). With `save`
 * and `resume` a long run continues across processes: a run stopped and
 * resumed equals a straight one bit for bit (same options).
 */
export async function pretrain(options: PretrainOptions = {}): Promise<Model> {
  const o = { ...PRETRAIN_DEFAULTS, ...stripUndefined(options) };
  const resumed = o.resume ? pretrainStateOf(o.resume) : undefined;
  const model = o.resume
    ? await Model.load(o.resume, { device: o.device })
    : o.init
      ? await loadInit(o.init, o.condNorm === true, o.device)
      : await Model.create({
          preset: o.preset ?? 'small', mode: o.mode ?? 'mask', seed: o.seed ?? 0, device: o.device,
          config: o.condNorm ? { ...o.config, cond_norm: true } : o.config,
        });
  try {
    const data = o.data ?? shapesData(model.config.image_size, o.seed ?? 0);
    if (!data.captioned) throw new RecaError('E_INVALID_ARGUMENT', 'pretraining needs captions (t2i + i2t): use the shapes world or a captioned image folder');
    if (data.imageSize !== model.config.image_size) {
      throw new RecaError('E_SHAPE', `data images are ${data.imageSize}px but the model generates ${model.config.image_size}px`);
    }
    const stages: { name: 'tokenizer' | 't2i+i2t'; steps: number; batch: number; trainer: TrainerOptions }[] = [];
    const bothStages = { distributed: o.distributed, shards: o.shards, matmulPrecision: o.matmulPrecision };
    if (model.config.mode !== 'flow' && o.tokenizerSteps > 0) {
      stages.push({
        name: 'tokenizer', steps: o.tokenizerSteps, batch: o.tokenizerBatch,
        trainer: {
          recipe: 'tokenizer',
          optimizer: { lr: o.tokenizerLr, weightDecay: 0 },
          schedule: { warmup: Math.min(100, Math.floor(o.tokenizerSteps / 5)), kind: 'cosine', totalSteps: o.tokenizerSteps, minLr: o.tokenizerLr / 10 },
          seed: o.seed ?? 0,
          ...bothStages,
        },
      });
    }
    if (o.steps > 0) {
      stages.push({
        name: 't2i+i2t', steps: o.steps, batch: o.batch,
        trainer: {
          recipe: 'reca+i2t',
          tasks: { t2i: 1, i2t: 1 },
          freeze: ['vq'],
          optimizer: { lr: o.lr },
          schedule: { warmup: Math.min(200, Math.floor(o.steps / 5)), kind: 'cosine', totalSteps: o.steps, minLr: o.lr / 10 },
          seed: (o.seed ?? 0) + 1,
          alignWeight: o.alignWeight,
          ...bothStages,
        },
      });
    }
    if (resumed && !stages.some((st) => st.name === resumed.stage)) {
      throw new RecaError('E_INVALID_ARGUMENT', `${o.resume} stopped in the ${resumed.stage} stage, which this run does not have: resume with the options it was started with`);
    }
    const stopAt = o.stopAt ?? Infinity;
    let done = 0;
    let skipping = resumed !== undefined;
    for (const stage of stages) {
      if (skipping && stage.name !== resumed!.stage) {
        // A stage the saved run had finished: its batches were read.
        data.skip(stage.steps, stage.batch);
        done += stage.steps;
        continue;
      }
      using trainer = new Trainer(model, stage.trainer);
      if (skipping) {
        checkSameSchedule(o.resume!, resumed!.trainer, stage.trainer);
        await trainer.load(o.resume!);
        data.skip(trainer.steps, stage.batch);
        done += trainer.steps;
        skipping = false;
      }
      let losses: number[] = [];
      while (trainer.steps < stage.steps && done < stopAt) {
        const b = nextBatch(trainer, data, stage.batch);
        const r = await trainer.step({ images: { data: b.images, shape: b.shape }, captions: b.captions });
        done++;
        losses.push(r.loss);
        o.onStep?.(stage.name, trainer.steps, stage.steps, r);
        const last = trainer.steps === stage.steps || done === stopAt;
        if (o.save && (last || (o.saveEvery !== undefined && trainer.steps % o.saveEvery === 0))) {
          await model.save(o.save, { trainer });
        }
        if (stage.name === 't2i+i2t' && o.evalEvery && o.onEval && (trainer.steps % o.evalEvery === 0 || trainer.steps === stage.steps)) {
          const ev = await evaluate(model, o.evalOptions);
          await o.onEval({
            step: trainer.steps,
            images: trainer.steps * stage.batch,
            loss: losses.reduce((a, x) => a + x, 0) / losses.length,
            overall: ev.report.overall,
            categories: Object.fromEntries(Object.entries(ev.report.categories).map(([k, v]) => [k, v])),
            evalSeconds: ev.seconds,
            sampler: ev.sampler,
          });
          losses = [];
        }
      }
      if (done >= stopAt) break;
    }
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

export interface PosttrainOptions {
  recipe?: Recipe;
  steps?: number;
  batch?: number;
  lr?: number;
  seed?: number;
  /** RecA's images (captions, if any, are not used by the reca task). Default: shapesImages(). */
  data?: DataSource;
  /**
   * Captioned images for the image-to-text steps of recipe 'reca' (the
   * generator's blocks also caption, so RecA alone would drift them). Default:
   * the shapes world's train split when `data` is the default too; null: none.
   */
  captionData?: DataSource | null;
  /**
   * Recipe 'reca' with caption data: reca steps, then i2t steps, per cycle; a third
   * count adds that many text-to-image steps on the caption data (replay of the
   * base's own task) at the end of each cycle. Default [4, 1, 1].
   */
  cycle?: PosttrainCycle;
  /**
   * The task of each cycle's first steps: 'reca' (default), or 't2i' on
   * captioned `data` (default: the shapes world's train split), the reference
   * the paper compares RecA with. Recipe 'reca' only.
   */
  stepTask?: 'reca' | 't2i';
  trainer?: TrainerOptions;
  onStep?: StepHook;
  /** Continue the run saved in this checkpoint (written with its trainer): exact, batches included. */
  resume?: string;
  /** Save the model with its trainer here, at the end and every `saveEvery` steps. */
  save?: string;
  saveEvery?: number;
  /** Stop (and save) after this step, to be resumed later; the schedule still spans `steps`. */
  stopAt?: number;
}

/** Defaults of RecA post-training (`reca train`, `reca demo`, posttrain()). */
export const POSTTRAIN_DEFAULTS = {
  steps: 300,
  batch: 16,
  lr: 2e-5,
  cycle: [4, 1, 1] as const,
  ema: 0.999,
} as const;

/** Steps per cycle: reca, then image-to-text, then (optionally) text-to-image replay. */
export type PosttrainCycle = readonly [number, number] | readonly [number, number, number];

/** How many of the first `steps` steps of a cycle are reca steps (the rest read the caption data). */
export function recaStepsOf(steps: number, cycle: PosttrainCycle): number {
  const r = cycle[0];
  const period = cycle.reduce((a, n) => a + n, 0);
  return Math.floor(steps / period) * r + Math.min(steps % period, r);
}

/** The task of step `done` (0-based) of a cycle. */
function cycleTask(done: number, cycle: PosttrainCycle): 'reca' | 'i2t' | 't2i' {
  const at = done % cycle.reduce((a, n) => a + n, 0);
  return at < cycle[0] ? 'reca' : at < cycle[0] + cycle[1] ? 'i2t' : 't2i';
}

/**
 * RecA post-training (or any recipe): the generator regenerates uncaptioned
 * images from their own embeddings and a paraphrase of "describe the image".
 * Recipe 'reca' with caption data alternates, per cycle, reca steps on `data`
 * with image-to-text steps on `captionData` (the generator's blocks also
 * caption), the understanding side frozen. With `resume`, the trainer's state
 * and both data streams continue where the saved run stopped, so a run
 * stopped and resumed equals a straight one bit for bit.
 */
export async function posttrain(model: Model, options: PosttrainOptions = {}): Promise<StepResult[]> {
  const steps = options.steps ?? POSTTRAIN_DEFAULTS.steps;
  const lr = options.lr ?? POSTTRAIN_DEFAULTS.lr;
  const batch = options.batch ?? POSTTRAIN_DEFAULTS.batch;
  const seed = options.seed ?? 0;
  const S = model.config.image_size;
  const recipe = options.recipe ?? 'reca';
  const stepTask = options.stepTask ?? 'reca';
  if (stepTask !== 'reca' && stepTask !== 't2i') throw new RecaError('E_INVALID_ARGUMENT', `stepTask must be 'reca' or 't2i', got ${String(stepTask)}`);
  if (stepTask === 't2i' && recipe !== 'reca') throw new RecaError('E_INVALID_ARGUMENT', "stepTask 't2i' goes with recipe 'reca' (the cycle's first steps train text-to-image)");
  const data = options.data ?? (stepTask === 't2i' ? shapesData(S, seed + 1000) : shapesImages(S, seed + 1000));
  if (stepTask === 't2i' && !data.captioned) throw new RecaError('E_INVALID_ARGUMENT', "stepTask 't2i' needs captioned data");
  if (recipe === 'reca+i2t' && !data.captioned) {
    throw new RecaError('E_INVALID_ARGUMENT', "recipe 'reca+i2t' needs captions for the i2t task: use recipe reca or a captioned folder");
  }
  const captionData = recipe !== 'reca' ? null : options.captionData !== undefined ? options.captionData : options.data ? null : shapesData(S, seed + 2000);
  if (captionData && !captionData.captioned) throw new RecaError('E_INVALID_ARGUMENT', 'captionData must carry captions (its steps train image-to-text)');
  if (captionData && captionData.imageSize !== S) throw new RecaError('E_SHAPE', `captionData images are ${captionData.imageSize}px but the model's are ${S}px`);
  const cycle = captionData ? (options.cycle ?? POSTTRAIN_DEFAULTS.cycle) : ([1, 0] as const);
  if (!((cycle.length === 2 || cycle.length === 3) && cycle.every((n) => Number.isInteger(n) && n >= 0) && cycle[0] >= 1)) {
    throw new RecaError('E_INVALID_ARGUMENT', `cycle must be [reca steps ≥ 1, i2t steps ≥ 0] or [reca ≥ 1, i2t ≥ 0, t2i ≥ 0], got [${cycle.join(', ')}]`);
  }
  using trainer = new Trainer(model, {
    recipe,
    optimizer: { lr },
    schedule: { warmup: Math.min(20, Math.floor(steps / 10)), kind: 'cosine', totalSteps: steps, minLr: lr / 10 },
    ema: recipe === 'tokenizer' ? 0 : POSTTRAIN_DEFAULTS.ema,
    seed,
    ...options.trainer,
  });
  if (options.resume) {
    await trainer.load(options.resume);
    if (trainer.steps >= steps) {
      throw new RecaError('E_INVALID_ARGUMENT', `the run in ${options.resume} already did ${trainer.steps} of ${steps} steps: raise steps`);
    }
    const recaDone = recaStepsOf(trainer.steps, cycle);
    data.skip(recaDone, batch);
    captionData?.skip(trainer.steps - recaDone, batch);
  }
  const results: StepResult[] = [];
  const every = options.saveEvery ?? steps;
  const end = Math.min(steps, options.stopAt ?? steps);
  // A cycle of reca steps only leaves each step's tasks to the trainer's recipe.
  const recaOnly = cycle.slice(1).every((n) => n === 0);
  while (trainer.steps < end) {
    const done = trainer.steps;
    const task = cycleTask(done, cycle);
    const reca = task === 'reca';
    const b = nextBatch(trainer, reca ? data : captionData!, batch);
    const r = await trainer.step({
      images: { data: b.images, shape: b.shape },
      captions: b.captions,
      tasks: reca ? (stepTask === 't2i' ? { t2i: 1 } : recaOnly ? undefined : { reca: 1 }) : task === 'i2t' ? { i2t: 1 } : { t2i: 1 },
    });
    results.push(r);
    options.onStep?.(recipe, done + 1, steps, r);
    if (options.save && (trainer.steps % every === 0 || trainer.steps === end)) await model.save(options.save, { trainer });
  }
  return results;
}

// ---- ShapesEval ---------------------------------------------------------------

export interface EvaluateOptions {
  samplesPerPrompt?: number;
  perCategory?: number;
  sampler?: SampleOptions;
  /** Prompts per generate call. */
  chunk?: number;
  onProgress?: (done: number, total: number) => void;
}

/** ShapesEval and the demo guide with CFG 3 (CFG keeps the image embeddings, SPEC §7). */
export const EVAL_CFG = 3;

/**
 * MaskGIT / Euler steps of ShapesEval and the demo. MaskGIT at 12 steps left objects in
 * pieces (0.03 on an early small base, 0.09 at 32); on the shipped mask base 24 steps
 * score as 32 do (0.181 against 0.178) and the demo's paired gain holds (benchmarks/
 * RESULTS.md, "The demo's time, cut to fit"), at about four fifths of the sampling time.
 */
export const EVAL_STEPS = 24;

/** Sampler settings per mode used by eval and the demo: EVAL_STEPS, guided with EVAL_CFG, the table's temperature. */
export function defaultSampler(mode: Mode): SampleOptions {
  const steps = EVAL_STEPS;
  const temperature = fieldDefault(SCHEMA.sampler, 'temperature') as number;
  return mode === 'flow' ? { steps, cfg: EVAL_CFG, seed: 0 } : mode === 'mask' ? { steps, cfg: EVAL_CFG, temperature, seed: 0 } : { cfg: EVAL_CFG, temperature, seed: 0 };
}


export interface Evaluation {
  report: EvalReport;
  items: EvalItem[];
  /** The generated images, NHWC, one per item. */
  images: Uint8Array;
  seconds: number;
  /** The sampler settings used (the mode's defaults with the caller's overrides). */
  sampler: SampleOptions;
}

/** Generates every ShapesEval item with the model and scores it. */
export async function evaluate(model: Model, options: EvaluateOptions = {}): Promise<Evaluation> {
  const t0 = Date.now();
  const items = evalSet({ samplesPerPrompt: options.samplesPerPrompt, perCategory: options.perCategory });
  const S = model.config.image_size;
  const frame = S * S * 3;
  const images = new Uint8Array(items.length * frame);
  const sampler = { ...defaultSampler(model.config.mode), ...stripUndefined(options.sampler ?? {}) };
  const chunk = options.chunk ?? 48;
  // Generate one sample index at a time, the prompts in chunks, so that an image depends on
  // its prompt's place, its sample index and the sampler seed only: --samples 8 draws
  // --samples 2's images and six more, and a before/after pair shares every draw.
  let done = 0;
  for (let s = 0; done < items.length; s++) {
    const layer = items.flatMap((it, i) => (it.sample === s ? [i] : []));
    for (let at = 0; at < layer.length; at += chunk) {
      const rows = layer.slice(at, at + chunk);
      // One seed per chunk, from its first item's own seed (which names category, text and sample).
      const seed = BigInt(sampler.seed ?? 0) * 1000003n + BigInt(items[rows[0]].seed) * 7919n + BigInt(at);
      using out = await model.generate({ ...sampler, prompts: rows.map((i) => items[i].prompt.text), seed });
      const drawn = out.toArray();
      rows.forEach((i, r) => images.set(drawn.subarray(r * frame, (r + 1) * frame), i * frame));
      done += rows.length;
      options.onProgress?.(done, items.length);
    }
  }
  const report = scoreImages(items, images, S);
  return { report, items, images, seconds: (Date.now() - t0) / 1000, sampler };
}

/**
 * ShapesEval of what the image pathway alone can do, on the world's own
 * renders of the eval items (one sample per prompt):
 * - `tokenizer` (discrete modes): decode(tokenize(render)), the ceiling any
 *   generator of this model can reach, since it emits VQ codes;
 * - `reconstruction`: the RecA task itself, each render regenerated from its
 *   own understanding embeddings plus the template.
 * `perCategory` caps the renders of each category (evalSet's spread subset).
 */
export async function pathwayScores(
  model: Model,
  options: { sampler?: SampleOptions; chunk?: number; tokenizer?: boolean; perCategory?: number } = {},
): Promise<{ tokenizer?: EvalReport; reconstruction: EvalReport }> {
  const items = evalSet({ samplesPerPrompt: 1, perCategory: options.perCategory });
  const S = model.config.image_size;
  const frame = S * S * 3;
  const renders = renderEvalImages(items, S);
  let tokenizer: EvalReport | undefined;
  if (model.config.mode !== 'flow' && options.tokenizer !== false) {
    using codes = await model.tokenize({ data: renders, shape: [items.length, S, S, 3] });
    using decoded = await model.decode(codes);
    tokenizer = scoreImages(items, decoded.toArray(), S);
  }
  const sampler = { ...defaultSampler(model.config.mode), ...stripUndefined(options.sampler ?? {}) };
  const recon = new Uint8Array(items.length * frame);
  const chunk = options.chunk ?? 48;
  for (let at = 0; at < items.length; at += chunk) {
    const n = Math.min(chunk, items.length - at);
    using out = await model.reconstruct({ data: renders.subarray(at * frame, (at + n) * frame), shape: [n, S, S, 3] }, { ...sampler, seed: BigInt(sampler.seed ?? 0) + BigInt(at) });
    recon.set(out.toArray(), at * frame);
  }
  return { tokenizer, reconstruction: scoreImages(items, recon, S) };
}

/** A few items of each category, for picture grids. */
export function gridSelection(items: EvalItem[], perCategory: number): number[] {
  const picked: number[] = [];
  for (const c of CATEGORIES as readonly Category[]) {
    let n = 0;
    for (let i = 0; i < items.length && n < perCategory; i++) {
      if (items[i].prompt.category === c && (i === 0 || items[i - 1].prompt.text !== items[i].prompt.text)) {
        picked.push(i);
        n++;
      }
    }
  }
  return picked;
}

// ---- shipped base models --------------------------------------------------------

/** Where the package keeps its pretrained base models. */
export const MODELS_DIR = path.join(__dirname, '..', 'models');

export function shippedBase(preset: Preset, mode: Mode): string | undefined {
  const file = path.join(MODELS_DIR, `${preset}-${mode}.safetensors`);
  return fs.existsSync(file) ? file : undefined;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
