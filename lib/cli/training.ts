/** `reca pretrain` (a base model from scratch) and `reca train` (post-training, resumable). */
import * as fs from 'fs';

import { RecaError } from '../errors';
import { fixed } from '../format';
import { SCHEMA } from '../generated/schema';
import { Model, type Config, type Mode, type ParamGroup, type Preset, type Recipe } from '../model';
import { posttrain, POSTTRAIN_DEFAULTS, pretrain, PRETRAIN_DEFAULTS, pretrainStateOf } from '../workflows';
import { applyThreads, dataFrom, deviceOf, mkdirFor, modelFrom, presetOf, trainingProgress } from './common';
import { launchedRank } from '../distributed';
import {
  DEVICE,
  DISTRIBUTED_OPTIONS,
  JSON_FLAG,
  MODE_NAMES,
  MODEL_OPTIONS,
  num,
  parseCommand,
  PRESET_NAMES,
  renderHelp,
  required,
  str,
  THREADS,
  UsageError,
  type CommandSpec,
  CYCLE,
  cycleOf,
  MATMUL_PRECISION,
  trainerFlagsOf,
  type Values,
} from './options';

export const PRETRAIN: CommandSpec = {
  name: 'pretrain',
  usage: '--out FILE [options]',
  summary: 'train a base model from scratch (tokenizer, then text-to-image + image-to-text)',
  description: `Trains a base model from scratch: the VQ tokenizer (discrete modes), then
text-to-image and image-to-text together on captioned images (default: the
shapes world's train prompts). The shipped base models began as
  reca pretrain --preset small --mode mask --out models/small-mask.safetensors
and were continued with --init (every command: benchmarks/RESULTS.md, "Base models").`,
  options: [
    { name: 'out', kind: 'string', value: 'FILE', help: 'checkpoint to write (float16 parameters)' },
    { name: 'init', kind: 'string', value: 'FILE', help: 'continue from this checkpoint (its preset and mode) instead of a fresh model' },
    { name: 'preset', kind: 'choice', value: 'P', choices: PRESET_NAMES, default: 'small', help: 'size preset' },
    { name: 'mode', kind: 'choice', value: 'M', choices: MODE_NAMES, default: 'mask', help: 'generator family' },
    { name: 'data', kind: 'string', value: 'D', default: 'shapes', help: "'shapes' or a folder of images with captions" },
    { name: 'tokenizer-steps', kind: 'int', value: 'N', min: 0, default: `${PRETRAIN_DEFAULTS.tokenizerSteps}, with --init 0; flow has none`, help: 'tokenizer stage steps' },
    { name: 'steps', kind: 'int', value: 'N', min: 0, default: PRETRAIN_DEFAULTS.steps, help: 't2i + i2t steps' },
    { name: 'batch', kind: 'int', value: 'B', min: 1, default: PRETRAIN_DEFAULTS.batch, help: 'images per step (all ranks together)' },
    { name: 'lr', kind: 'number', value: 'X', default: PRETRAIN_DEFAULTS.lr, help: 'peak learning rate' },
    { name: 'und-image-size', kind: 'int', value: 'N', min: 1, help: "understanding input side in pixels (default: the preset's; the image size itself gives the weaker-bottleneck base of `reca demo --ablation --full-res-base`)" },
    { name: 'gen-patch', kind: 'int', value: 'P', min: 1, help: "generator patch side in pixels (default: the preset's; flow: each token is a P×P pixel patch; must divide the image size)" },
    { name: 'cond-norm', kind: 'flag', help: "a LayerNorm at the connector's output (config cond_norm: the condition starts at its position rows' scale); with --init from a model without it, a fresh one is added" },
    { name: 'align-weight', kind: 'number', value: 'X', min: 0, default: 0, help: "weight of the condition-alignment loss in the t2i + i2t stage: each image's RecA condition against its caption's, contrasted over the batch (0: off)" },
    { name: 'seed', kind: 'int', value: 'S', min: 0, default: 0, help: 'seed of the weights and the data' },
    { name: 'save', kind: 'string', value: 'FILE', help: 'also keep a resumable checkpoint (float32 + optimizer state) here' },
    { name: 'save-every', kind: 'int', value: 'N', min: 1, help: 'write --save every N steps of a stage (and at its end)' },
    { name: 'resume', kind: 'string', value: 'FILE', help: 'continue a run saved with --save (give the options it was started with)' },
    { name: 'stop-at', kind: 'int', value: 'N', min: 1, help: 'stop after N steps of the whole run (tokenizer steps first), saving --save' },
    { name: 'curve', kind: 'string', value: 'FILE', help: 'append a JSON line per --eval-every point: step, images, loss, ShapesEval' },
    { name: 'eval-every', kind: 'int', value: 'N', min: 1, help: 'ShapesEval (1 sample per prompt) every N t2i+i2t steps, into --curve' },
    DEVICE,
    THREADS,
    MATMUL_PRECISION,
    ...DISTRIBUTED_OPTIONS,
    { ...JSON_FLAG, help: 'print a JSON summary' },
  ],
};

export async function cmdPretrain(args: string[]): Promise<void> {
  const { values, help } = parseCommand(PRETRAIN, args);
  if (help) return void console.log(renderHelp(PRETRAIN));
  const out = required(values, 'out', 'pretrain', 'FILE');
  const resume = str(values, 'resume');
  const save = str(values, 'save');
  const curve = str(values, 'curve');
  const evalEvery = num(values, 'eval-every');
  const stopAt = num(values, 'stop-at');
  if ((values['save-every'] !== undefined || stopAt !== undefined) && !save) throw new UsageError('--save-every and --stop-at need --save FILE (where the resumable state goes)');
  if ((curve === undefined) !== (evalEvery === undefined)) throw new UsageError('--curve and --eval-every go together');
  const init = str(values, 'init');
  if (resume && init) throw new UsageError('--resume continues a saved run: leave out --init (the run keeps the options it was started with)');
  const condNorm = values['cond-norm'] === true;
  if (condNorm && resume) throw new UsageError('--resume continues the model it saved, conn.norm or not: leave out --cond-norm');
  if (resume) {
    if (!fs.existsSync(resume)) throw new RecaError('E_IO', `checkpoint ${resume} does not exist`);
    pretrainStateOf(resume);  // a typed error now, before any work, when it holds no run
  }
  if (init && (values.preset !== undefined || values.mode !== undefined)) {
    throw new UsageError('--init takes its preset and mode from the checkpoint: leave out --preset and --mode');
  }
  let initConfig: Config | undefined;
  const configFrom = resume ?? init;
  if (configFrom) {
    if (!fs.existsSync(configFrom)) throw new RecaError('E_IO', `checkpoint ${configFrom} does not exist`);
    using m = await Model.load(configFrom);  // only its config is read
    initConfig = { ...m.config };
  }
  if (resume && (values.preset !== undefined || values.mode !== undefined)) {
    throw new UsageError('--resume takes its preset and mode from the checkpoint: leave out --preset and --mode');
  }
  const preset = (initConfig ? presetOf(initConfig, SCHEMA.presets) : (str(values, 'preset') ?? 'small')) as Preset;
  const mode = initConfig?.mode ?? ((str(values, 'mode') ?? 'mask') as Mode);
  const seed = num(values, 'seed') ?? 0;
  // A continued run keeps its tokenizer: retraining it would move the codes under the generator.
  const tokenizerSteps = num(values, 'tokenizer-steps') ?? (init ? 0 : PRETRAIN_DEFAULTS.tokenizerSteps);
  const steps = num(values, 'steps') ?? PRETRAIN_DEFAULTS.steps;
  const batch = num(values, 'batch') ?? PRETRAIN_DEFAULTS.batch;
  const lr = num(values, 'lr') ?? PRETRAIN_DEFAULTS.lr;
  applyThreads(values);
  mkdirFor(out);
  // Shapes captions run to 48 bytes; the tiny preset's 32 would cut position prompts.
  const undImageSize = num(values, 'und-image-size');
  if (undImageSize !== undefined && configFrom) throw new UsageError('--und-image-size shapes a new model: leave out --init and --resume');
  const genPatch = num(values, 'gen-patch');
  if (genPatch !== undefined && configFrom) throw new UsageError('--gen-patch shapes a new model: leave out --init and --resume');
  const config: Partial<Config> | undefined =
    preset === 'tiny' || undImageSize !== undefined || genPatch !== undefined
      ? {
          ...(preset === 'tiny' ? { max_text_len: 48 } : {}),
          ...(undImageSize !== undefined ? { und_image_size: undImageSize } : {}),
          ...(genPatch !== undefined ? { gen_patch: genPatch } : {}),
        }
      : undefined;
  const imageSize = initConfig?.image_size ?? (SCHEMA.presets[preset] as { image_size: number }).image_size;
  const data = await dataFrom(str(values, 'data') ?? 'shapes', imageSize, seed, 'loading images');
  const t0 = Date.now();
  const stages = mode === 'flow' ? [['t2i+i2t', steps]] : [['tokenizer', tokenizerSteps], ['t2i+i2t', steps]];
  const bars = new Map(stages.map(([name, n]) => [name as string, trainingProgress(`pretrain ${name}`, n as number)]));
  if (curve) mkdirFor(curve);
  const model = await pretrain({
    device: deviceOf(values), init, condNorm, preset, mode, config, seed, tokenizerSteps, steps, batch, lr, data,
    alignWeight: num(values, 'align-weight'),
    save, saveEvery: num(values, 'save-every'), resume, stopAt,
    evalEvery, evalOptions: { samplesPerPrompt: 1 },
    onEval: curve && launchedRank() === 0 ? (point) => fs.appendFileSync(curve, `${JSON.stringify({ ...point, seconds: (Date.now() - t0) / 1000, date: new Date().toISOString() })}\n`) : undefined,
    ...trainerFlagsOf(values),
    onStep: (stage, step, total, r) => {
      const p = bars.get(stage);
      p?.hook(stage, step, total, r);
      if (p && step === total) p.bar.done({ loss: fixed(p.last(), 4) });
    },
  });
  const totalSteps = stages.reduce((a, [, n]) => a + (n as number), 0);
  if (stopAt !== undefined && stopAt < totalSteps) {
    model.dispose();
    console.log(`stopped after step ${stopAt} of ${totalSteps}; state in ${save}: continue with --resume ${save} (and the same options)`);
    return;
  }
  try {
    // Every rank holds the same parameters: rank 0 writes them.
    if (launchedRank() !== 0) return;
    await model.save(out, { dtype: 'float16' });
    const summary = {
      out, init: init ?? null, condNorm: model.config.cond_norm, preset, mode, seed, tokenizerSteps: mode === 'flow' ? 0 : tokenizerSteps, steps, batch, lr,
      data: data.description, parameters: model.parameterCount, seconds: (Date.now() - t0) / 1000,
      command: `reca pretrain ${args.join(' ')}`,
    };
    console.log(values.json ? JSON.stringify(summary, null, 2) : `wrote ${out} (${summary.parameters} parameters, ${summary.seconds.toFixed(0)} s)`);
  } finally {
    model.dispose();
  }
}

export const TRAIN: CommandSpec = {
  name: 'train',
  usage: '--out FILE [options]',
  summary: 'train a model (RecA post-training by default) and save a resumable checkpoint',
  description: `Trains a model (RecA post-training by default) and saves it with its optimizer
state, so that --resume continues exactly: the same parameters, optimizer state
and batches as one run straight through (same --steps, --batch, --seed, --data).`,
  options: [
    { name: 'out', kind: 'string', value: 'FILE', help: 'checkpoint to write (also every --save-every steps)' },
    ...MODEL_OPTIONS,
    { name: 'resume', kind: 'string', value: 'FILE', help: 'continue a run saved by train (parameters, Adam state, step, data position)' },
    { name: 'recipe', kind: 'choice', value: 'R', choices: ['reca', 'reca+i2t', 'tokenizer'], default: 'reca', help: 'training recipe' },
    { name: 'data', kind: 'string', value: 'D', default: 'shapes', help: "'shapes' (uncaptioned renders) or a folder of images (captions optional for reca)" },
    { name: 'caption-data', kind: 'string', value: 'D', default: "shapes with --data shapes, else none", help: "recipe reca: captioned images for the image-to-text steps ('shapes', a folder, or 'none')" },
    CYCLE,
    { name: 'steps', kind: 'int', value: 'N', min: 0, default: POSTTRAIN_DEFAULTS.steps, help: 'optimizer steps of the whole run' },
    { name: 'batch', kind: 'int', value: 'B', min: 1, default: POSTTRAIN_DEFAULTS.batch, help: 'images per step (all ranks together)' },
    { name: 'lr', kind: 'number', value: 'X', default: POSTTRAIN_DEFAULTS.lr, help: 'peak learning rate (cosine to a tenth)' },
    { name: 'save-every', kind: 'int', value: 'N', min: 1, help: 'also save every N steps' },
    { name: 'stop-at', kind: 'int', value: 'N', min: 1, help: 'stop and save after step N (resume later with --resume)' },
    { name: 'seed', kind: 'int', value: 'S', min: 0, default: 0, help: 'seed of the draws and the data' },
    { name: 'freeze', kind: 'string', value: 'GROUPS', default: "the recipe's: reca und,conn,vq; reca+i2t vq", help: "parameter groups that stay fixed, comma-separated (und, conn, vq, gen), or 'none'" },
    { name: 'cond-grad-scale', kind: 'number', value: 'X', min: 0, default: 0.1, help: 'scale of the reca gradient into the understanding embeddings (matters only when conn or und trains)' },
    THREADS,
    MATMUL_PRECISION,
    ...DISTRIBUTED_OPTIONS,
    { ...JSON_FLAG, help: 'print a JSON summary' },
  ],
};

/** --freeze: 'none' or comma-separated groups (the trainer rejects unknown ones with E_INVALID_ARGUMENT). */
function freezeOf(values: Values): ParamGroup[] | undefined {
  const spec = str(values, 'freeze');
  if (spec === undefined) return undefined;
  if (spec === 'none') return [];
  return spec.split(',').map((g) => g.trim()) as ParamGroup[];
}

export async function cmdTrain(args: string[]): Promise<void> {
  const { values, help } = parseCommand(TRAIN, args);
  if (help) return void console.log(renderHelp(TRAIN));
  const out = required(values, 'out', 'train', 'FILE');
  const recipe = (str(values, 'recipe') ?? 'reca') as Recipe;
  const steps = num(values, 'steps') ?? POSTTRAIN_DEFAULTS.steps;
  const batch = num(values, 'batch') ?? POSTTRAIN_DEFAULTS.batch;
  const lr = num(values, 'lr') ?? POSTTRAIN_DEFAULTS.lr;
  const seed = num(values, 'seed') ?? 0;
  const resume = str(values, 'resume');
  if (resume && values.model !== undefined) throw new UsageError('use --resume or --model, not both');
  applyThreads(values);
  mkdirFor(out);
  using model = resume ? await modelFrom(values, 'resume') : await modelFrom(values);
  const dataSpec = str(values, 'data') ?? 'shapes';
  const S = model.config.image_size;
  // The shapes world's RecA images are uncaptioned renders of every category (posttrain's default).
  const data = dataSpec === 'shapes' ? (recipe === 'reca' ? undefined : await dataFrom('shapes', S, seed + 1000, '')) : await dataFrom(dataSpec, S, seed + 1000, 'loading images');
  if (recipe === 'reca+i2t' && data && !data.captioned) throw new UsageError('recipe reca+i2t needs captions (i2t): use --recipe reca or a captioned folder');
  const captionSpec = str(values, 'caption-data') ?? (dataSpec === 'shapes' ? 'shapes' : 'none');
  const captionData = recipe !== 'reca' || captionSpec === 'none' ? null : await dataFrom(captionSpec, S, seed + 2000, 'loading caption images');
  if (captionData && !captionData.captioned) throw new UsageError(`--caption-data ${captionSpec} has no captions (captions.jsonl): the image-to-text steps need them`);
  const progress = trainingProgress(`train ${recipe}`, steps);
  const t0 = Date.now();
  const results = await posttrain(model, { recipe, steps, batch, lr, seed, data, captionData, cycle: cycleOf(values), resume, save: out, saveEvery: num(values, 'save-every'), stopAt: num(values, 'stop-at'), onStep: progress.hook, trainer: { ...trainerFlagsOf(values), freeze: freezeOf(values), condGradScale: num(values, 'cond-grad-scale') } });
  progress.bar.done({ loss: fixed(progress.last(), 4) });
  const done = results.length ? results[results.length - 1].step : steps;
  const summary = { out, recipe, steps: done, of: steps, batch, lr, data: data?.description ?? 'shapes world images (every category, no captions)', captionData: captionData?.description ?? null, loss: progress.last(), seconds: (Date.now() - t0) / 1000 };
  if (launchedRank() !== 0) return;
  console.log(values.json ? JSON.stringify(summary, null, 2) : `wrote ${out} (step ${done} of ${steps}, loss ${fixed(summary.loss, 4)}, ${summary.seconds.toFixed(0)} s)`);
}
