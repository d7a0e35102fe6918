/** `reca demo`: the RecA experiment in miniature (ShapesEval before and after RecA post-training). */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { getThreads, info } from '../engine';
import { RecaError } from '../errors';
import { fixed, mean, writeJson } from '../format';
import { writeGrid } from '../images';
import { Model, type Mode, type Preset } from '../model';
import { SCHEMA } from '../generated/schema';
import { renderEvalImages, reportMarkdown } from '../shapes/eval';
import { pairedIntervals, samplesForHalfWidth } from '../shapes/stats';
import { gridSelection, pathwayScores, posttrain, POSTTRAIN_DEFAULTS, shippedBase } from '../workflows';
import {
  applyThreads,
  beforeAfterMarkdown,
  categoryTable,
  deviceOf,
  evalGrid,
  evalWithProgress,
  INTERVALS,
  intervalsJson,
  interleave,
  mkdir,
  pathwayLines,
  presetOf,
  SAMPLE_TARGET,
  sampleSizeLine,
  samplerFrom,
  scoresOf,
  singleObjectLine,
  trainingProgress,
} from './common';
import { ABLATION_ARM_IDS, runAblation, WEAKER_ARM_ID } from './ablation';
import { CYCLE, cycleOf, DEVICE, JSON_FLAG, MODE_NAMES, num, parseCommand, renderHelp, SAMPLER_OPTIONS, str, THREADS, UsageError, type CommandSpec } from './options';

/**
 * Renders per category for the reconstruction and tokenizer scores (96 of the 232): they
 * are levels, not the paired headline, and the full set cost a quarter of the demo's time.
 */
export const RECON_PER_CATEGORY = 16;

/**
 * ShapesEval samples per prompt when --samples is not given, by the base's mode. The ar
 * sampler draws about 8x as many images per second as mask or flow (one cached row per
 * step against 24-32 full passes), so ar affords the 8 samples that bring the paired
 * change's 95% interval to about +-0.02 (+-0.04 at 2); mask and flow stay at 2 to keep
 * the demo within 10 minutes on a 2-core CPU.
 */
export const DEMO_SAMPLES: Readonly<Record<Mode, number>> = Object.freeze({ ar: 8, mask: 2, flow: 2 });

export const DEMO: CommandSpec = {
  name: 'demo',
  usage: '[options]',
  summary: 'the RecA experiment in miniature: ShapesEval before and after RecA post-training',
  description: `The RecA experiment in miniature. Loads the shipped base model (pretrained on
the built-in shapes world with text-to-image and image-to-text), scores it with
ShapesEval (does each image show what its prompt asks: objects, counts, colors,
positions), post-trains it with RecA on uncaptioned images (the generator
regenerates each image from the model's own understanding embeddings plus a
paraphrase of "describe the image"; per cycle, 4 such steps, then 1
image-to-text and 1 text-to-image step on captioned images, the understanding
side frozen),
scores it again and writes to --out:
report.json, report.md, before.png, after.png, reconstructions.png.`,
  options: [
    { name: 'out', kind: 'string', value: 'DIR', default: 'reca-demo', help: 'output directory' },
    { name: 'quick', kind: 'flag', help: 'the tiny preset, fewer steps and samples (about a minute)' },
    { name: 'preset', kind: 'choice', value: 'P', choices: ['tiny', 'small'], default: 'small', help: 'preset of the shipped base' },
    { name: 'mode', kind: 'choice', value: 'M', choices: MODE_NAMES, default: 'mask', help: 'generator family' },
    { name: 'recipe', kind: 'choice', value: 'R', choices: ['reca', 'reca+i2t'], default: 'reca', help: 'post-training recipe' },
    { name: 'steps', kind: 'int', value: 'N', min: 0, default: `${POSTTRAIN_DEFAULTS.steps}; --quick 150`, help: 'post-training steps (all kinds)' },
    CYCLE,
    { name: 'batch', kind: 'int', value: 'B', min: 1, default: POSTTRAIN_DEFAULTS.batch, help: 'images per step' },
    { name: 'lr', kind: 'number', value: 'X', default: POSTTRAIN_DEFAULTS.lr, help: 'peak learning rate (cosine to a tenth)' },
    { name: 'base', kind: 'string', value: 'FILE', help: 'start from this checkpoint instead of the shipped one' },
    { name: 'samples', kind: 'int', value: 'N', min: 1, default: '2, ar 8; --quick 1', help: 'samples per ShapesEval prompt' },
    { name: 'ablation', kind: 'flag', help: 'the same post-training with the condition changed (tokenizer codes, t2i steps), each scored against the base: writes ablation.json/md' },
    { name: 'full-res-base', kind: 'string', value: 'FILE', help: "--ablation: also the weaker-bottleneck arm, from this base (pretrained with --und-image-size equal to the image size)" },
    { name: 'arms', kind: 'string', value: 'A,B', help: `--ablation: only these arms (${ABLATION_ARM_IDS.join(', ')}; default all that the bases allow)` },
    DEVICE,
    THREADS,
    { ...JSON_FLAG, help: 'print report.json instead of the table' },
    ...SAMPLER_OPTIONS,
  ],
};

/** --arms: known ids, at least one, the weaker arm only with its base. */
function armsOf(list: string | undefined, fullResBase: boolean): string[] | undefined {
  if (list === undefined) return undefined;
  const arms = list.split(',').map((a) => a.trim()).filter((a) => a !== '');
  if (arms.length === 0) throw new UsageError(`--arms needs at least one of ${ABLATION_ARM_IDS.join(', ')}`);
  for (const a of arms) {
    if (!ABLATION_ARM_IDS.includes(a)) throw new UsageError(`--arms: unknown arm '${a}'; the arms are ${ABLATION_ARM_IDS.join(', ')}`);
  }
  if (arms.includes(WEAKER_ARM_ID) && !fullResBase) throw new UsageError(`--arms ${WEAKER_ARM_ID} needs --full-res-base FILE (a base pretrained with --und-image-size equal to the image size)`);
  if (fullResBase && !arms.includes(WEAKER_ARM_ID)) throw new UsageError(`--full-res-base is the ${WEAKER_ARM_ID} arm's base: add ${WEAKER_ARM_ID} to --arms or leave out --full-res-base`);
  return arms;
}

export async function cmdDemo(args: string[]): Promise<void> {
  const { values, help } = parseCommand(DEMO, args);
  if (help) return void console.log(renderHelp(DEMO));
  const quick = values.quick === true;
  const preset = (str(values, 'preset') ?? (quick ? 'tiny' : 'small')) as Preset;
  const mode = (str(values, 'mode') ?? 'mask') as Mode;
  const recipe = (str(values, 'recipe') ?? 'reca') as 'reca' | 'reca+i2t';
  const steps = num(values, 'steps') ?? (quick ? 150 : POSTTRAIN_DEFAULTS.steps);
  const batch = num(values, 'batch') ?? POSTTRAIN_DEFAULTS.batch;
  const lr = num(values, 'lr') ?? POSTTRAIN_DEFAULTS.lr;
  const samplesFor = (m: Mode): number => num(values, 'samples') ?? (quick ? 1 : DEMO_SAMPLES[m]);
  const cycle = recipe === 'reca' ? (cycleOf(values) ?? POSTTRAIN_DEFAULTS.cycle) : undefined;
  const out = str(values, 'out') ?? 'reca-demo';
  applyThreads(values);
  const t0 = Date.now();
  mkdir(out);

  const baseFile = str(values, 'base');
  const base = baseFile ?? shippedBase(preset, mode);
  if (!base) {
    throw new RecaError(
      'E_IO',
      `no shipped base model for preset ${preset}, mode ${mode}: make one with ` +
        `'reca pretrain --preset ${preset} --mode ${mode} --out base.safetensors', then 'reca demo --base base.safetensors'`,
    );
  }
  if (!fs.existsSync(base)) throw new RecaError('E_IO', `checkpoint ${base} does not exist`);
  if (values['full-res-base'] !== undefined && values.ablation !== true) throw new UsageError('--full-res-base goes with --ablation');
  if (values.arms !== undefined && values.ablation !== true) throw new UsageError('--arms goes with --ablation');
  if (values.ablation === true) {
    if (recipe !== 'reca') throw new UsageError("--ablation compares conditions of recipe 'reca': leave out --recipe");
    const arms = armsOf(str(values, 'arms'), values['full-res-base'] !== undefined);
    return runAblation({
      base, fullResBase: str(values, 'full-res-base'), arms, device: deviceOf(values), steps, batch, lr,
      cycle: cycle ?? POSTTRAIN_DEFAULTS.cycle, samplesFor, samplerFor: (m) => samplerFrom(values, m), out, json: values.json === true,
    });
  }
  using model = await Model.load(base, { device: deviceOf(values) });
  const cfg = model.config;
  const S = cfg.image_size;
  const presetName = baseFile ? presetOf(cfg, SCHEMA.presets) : preset;
  const sampler = samplerFrom(values, cfg.mode);
  const samples = samplesFor(cfg.mode);
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  log(`reca demo: ${presetName}/${cfg.mode} base ${path.relative(process.cwd(), base) || base}, ${model.parameterCount} parameters, ` +
    `${getThreads()} threads, isa ${info().cpu.isa}`);

  const before = await evalWithProgress(model, 'ShapesEval before', samples, sampler);
  const pathBefore = await pathwayScores(model, { sampler, perCategory: RECON_PER_CATEGORY });
  await evalGrid(path.join(out, 'before.png'), before, S, `before RecA: overall ${before.report.overall.toFixed(3)}`);

  const progress = trainingProgress(`RecA (${recipe})`, steps);
  const tTrain = Date.now();
  const results = await posttrain(model, { recipe, steps, batch, lr, seed: 0, cycle, onStep: progress.hook });
  progress.bar.done({ loss: fixed(progress.last(), 4) });
  const trainSeconds = (Date.now() - tTrain) / 1000;

  const after = await evalWithProgress(model, 'ShapesEval after', samples, sampler);
  // Both RecA recipes keep vq frozen: the tokenizer ceiling cannot move, so only the reconstruction is rescored.
  const pathAfter = await pathwayScores(model, { sampler, tokenizer: false, perCategory: RECON_PER_CATEGORY });
  await evalGrid(path.join(out, 'after.png'), after, S, `after ${steps} RecA steps: overall ${after.report.overall.toFixed(3)}`);

  // Reconstructions: reference renders of some eval prompts beside what the model regenerates from their embeddings.
  const picked = gridSelection(before.items, 2).slice(0, 12);
  const count = picked.length;
  const originals = renderEvalImages(picked.map((i) => before.items[i]), S);
  using recon = await model.reconstruct({ data: originals, shape: [count, S, S, 3] }, { ...sampler, seed: 1 });
  const pair = interleave(originals, recon.toArray(), count, S);
  const labels = Array.from({ length: 2 * count }, (_, i) => (i % 2 ? 'reconstructed' : 'original'));
  await writeGrid(path.join(out, 'reconstructions.png'), pair, 2 * count, S, { columns: 6, scale: S <= 16 ? 8 : 4, labels, title: 'RecA reconstructions after post-training' });
  const checkpoint = path.join(out, 'model.safetensors');
  await model.save(checkpoint, { dtype: 'float16' });

  // Paired: evaluate() gives both runs the same items and seeds; pairedIntervals checks it.
  const paired = pairedIntervals(before.report.samples, after.report.samples, INTERVALS);
  const advice = samplesForHalfWidth(before.report.samples, after.report.samples, SAMPLE_TARGET);

  const seconds = (Date.now() - t0) / 1000;
  const report = {
    preset: presetName,
    mode: cfg.mode,
    recipe,
    steps,
    cycle: cycle ?? null,
    seconds,
    before: scoresOf(before.report),
    after: scoresOf(after.report),
    reconstruction: { before: scoresOf(pathBefore.reconstruction), after: scoresOf(pathAfter.reconstruction) },
    tokenizer_ceiling: pathBefore.tokenizer ? scoresOf(pathBefore.tokenizer) : null,
    reconstruction_images: pathBefore.reconstruction.samples.length,
    batch,
    lr,
    base,
    samples_per_prompt: samples,
    eval_images: before.items.length,
    sampler,
    timings: { eval_before_s: before.seconds, train_s: trainSeconds, eval_after_s: after.seconds },
    train_loss: { first: mean(results.slice(0, 20).map((r) => r.loss)), last: mean(results.slice(-20).map((r) => r.loss)) },
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, threads: getThreads(), isa: info().cpu.isa, node: process.version },
    engine: info().version,
    date: new Date().toISOString(),
    outputs: ['report.json', 'report.md', 'before.png', 'after.png', 'reconstructions.png', 'model.safetensors'],
    samples: { before: before.report.samples, after: after.report.samples },
    intervals: intervalsJson(paired, true),
    sample_size: {
      target_half_width: SAMPLE_TARGET,
      samples_per_prompt: advice.samples,
      lower_bound: advice.lowerBound,
      half_width_now: advice.halfWidth,
      variance_between_prompts: advice.between,
      variance_within_prompts: advice.within,
    },
  };
  writeJson(path.join(out, 'report.json'), report);
  const md = [
    `# RecA demo: ${presetName} preset, ${cfg.mode} mode, recipe ${recipe}`,
    '',
    `${steps} post-training steps (batch ${batch}, lr ${lr}${cycle ? `, per cycle ${cycle[0]} reca steps on uncaptioned shapes-world images then ${cycle[1]} image-to-text steps on captioned ones${cycle[2] ? ` then ${cycle[2]} text-to-image steps on captioned ones` : ''}` : ''}); ShapesEval with ` +
      `${before.items.length} images (${samples} per prompt), sampler ${JSON.stringify(sampler)}. ` +
      `Total ${seconds.toFixed(0)} s on ${getThreads()} threads (${report.machine.cpu}).`,
    '',
    beforeAfterMarkdown(before.report, after.report, paired),
    '',
    singleObjectLine(paired),
    '',
    sampleSizeLine(advice, samples),
    '',
    pathwayLines(pathBefore, pathAfter),
    '',
    reportMarkdown(before.report, 'Before RecA'),
    '',
    reportMarkdown(after.report, 'After RecA'),
    '',
    '![before](before.png) ![after](after.png) ![reconstructions](reconstructions.png)',
    '',
  ].join('\n');
  try {
    fs.writeFileSync(path.join(out, 'report.md'), md);
  } catch (e) {
    throw new RecaError('E_IO', `could not write ${path.join(out, 'report.md')}: ${(e as Error).message}`);
  }
  if (values.json === true) {
    const { samples: _omit, ...brief } = report;
    console.log(JSON.stringify(brief, null, 2));
    return;
  }
  console.log(`\nShapesEval, ${presetName}/${cfg.mode}, ${steps} RecA steps (${recipe}):\n`);
  console.log(categoryTable(before.report, after.report, paired));
  console.log(`\n${singleObjectLine(paired)}\n${sampleSizeLine(advice, samples)}`);
  console.log(`\n${pathwayLines(pathBefore, pathAfter)}`);
  console.log(`\n${seconds.toFixed(0)} s. Wrote ${report.outputs.map((f) => path.join(out, f)).join(', ')}`);
}
