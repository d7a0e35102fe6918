/**
 * The model jobs of the CLI: demo, pretrain, train, eval, sample, reconstruct
 * and embed. Progress goes to stderr (a bar on a terminal, plain lines
 * otherwise); results go to stdout, or as JSON with --json.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { getThreads, info, setThreads } from '../engine';
import { RecaError } from '../errors';
import { fixed, table } from '../format';
import { loadImageFolder, writeGrid, writePng } from '../images';
import { Model, Trainer, type Config, type Mode, type Preset, type Recipe, type SampleOptions, type StepResult } from '../model';
import { Progress } from '../progress';
import { writeSafetensors } from '../safetensors';
import { renderEvalImages, reportMarkdown, type EvalReport } from '../shapes/eval';
import { CATEGORIES, ShapesWorld } from '../shapes/world';
import {
  defaultSampler,
  evaluate,
  folderData,
  gridSelection,
  pathwayScores,
  posttrain,
  pretrain,
  PRETRAIN_DEFAULTS,
  shapesData,
  shippedBase,
  trainSteps,
  type DataSource,
  type Evaluation,
  type StepHook,
} from '../workflows';
import { choice, MODES, number, parse, PRESETS, UsageError, writeJson, type Flags } from './args';

const SAMPLER_HELP = `sampling:
  --sample-steps N     mask: MaskGIT steps (32); flow: Euler steps (32); ar: unused
  --cfg X              classifier-free guidance scale (3; 1 = off)
  --temperature X      discrete modes (1; 0 = greedy)
  --top-k K            discrete modes (0 = every code)
  --seed S             seed of the draws (0)`;

export const JOB_HELP: Record<string, string> = {
  demo: `Usage: reca demo [options]

The RecA experiment in miniature. Loads the shipped base model (pretrained on
the built-in shapes world with text-to-image and image-to-text), scores it with
ShapesEval (does each image show what its prompt asks: objects, counts, colors,
positions), post-trains it with RecA on uncaptioned images (the generator
regenerates each image from the model's own understanding embeddings plus
"describe the image"), scores it again and writes to --out:
report.json, report.md, before.png, after.png, reconstructions.png.

Options:
  --out DIR            output directory (default ./reca-demo)
  --quick              the tiny preset, fewer steps and samples (about a minute)
  --preset P           small (default) | tiny
  --mode M             mask (default) | ar | flow
  --recipe R           reca (default: und, conn, vq frozen) | reca+i2t
  --steps N            RecA steps (default 300; --quick 150)
  --batch B            images per step (default 16)
  --lr X               peak learning rate (default 3e-4; cosine to a tenth)
  --base FILE          start from this checkpoint instead of the shipped one
  --samples N          samples per ShapesEval prompt (default 2; --quick 1)
  --threads N          CPU threads (default: all)
  --json               print report.json instead of the table
${SAMPLER_HELP}`,
  pretrain: `Usage: reca pretrain --out FILE [options]

Trains a base model from scratch: the VQ tokenizer (discrete modes), then
text-to-image and image-to-text together on captioned images (default: the
shapes world's train prompts). The shipped base models were made with
  reca pretrain --preset small --mode mask --out models/small-mask.safetensors

Options:
  --out FILE           checkpoint to write (float16 parameters)
  --init FILE          continue from this checkpoint (its preset and mode) instead of a fresh model
  --preset P           tiny | small (default) | base
  --mode M             mask (default) | ar | flow
  --data D             shapes (default) | a folder of images with captions
  --tokenizer-steps N  (default ${PRETRAIN_DEFAULTS.tokenizerSteps}, with --init 0; flow has no tokenizer)
  --steps N            t2i + i2t steps (default ${PRETRAIN_DEFAULTS.steps})
  --batch B            images per step (default ${PRETRAIN_DEFAULTS.batch})
  --lr X               peak learning rate (default ${PRETRAIN_DEFAULTS.lr})
  --seed S             seed of the weights and the data (default 0)
  --threads N          CPU threads (default: all)
  --json               print a JSON summary`,
  train: `Usage: reca train --out FILE [options]

Trains a model (RecA post-training by default) and saves it with its optimizer
state, so that --resume continues exactly.

Options:
  --out FILE           checkpoint to write (also every --save-every steps)
  --model FILE         start from this checkpoint (default: the shipped base of --preset/--mode)
  --resume FILE        continue a run saved by train (parameters, Adam state, step)
  --preset P, --mode M the shipped base to start from (default small, mask)
  --recipe R           reca (default) | reca+i2t | tokenizer
  --data D             shapes (default) | a folder of images (captions optional for reca)
  --steps N            optimizer steps (default 300)
  --batch B            images per step (default 16)
  --lr X               peak learning rate (default 3e-4; cosine to a tenth)
  --save-every N       also save every N steps
  --seed S             seed of the draws (default 0)
  --threads N          CPU threads (default: all)
  --json               print a JSON summary`,
  eval: `Usage: reca eval [--model FILE] [options]

Scores a model with ShapesEval and prints the per-category table.

Options:
  --model FILE         checkpoint (default: the shipped base of --preset/--mode)
  --preset P, --mode M (default small, mask)
  --samples N          samples per prompt (default 2)
  --out DIR            also write eval.json, eval.md and samples.png there
  --threads N          CPU threads (default: all)
  --json               print the report as JSON
${SAMPLER_HELP}`,
  sample: `Usage: reca sample --prompt TEXT [--prompt TEXT ...] --out FILE.png [options]

Generates images from prompts and writes a labelled grid (and each image with --each).

Options:
  --model FILE         checkpoint (default: the shipped base of --preset/--mode)
  --preset P, --mode M (default small, mask)
  --prompt TEXT        a prompt (repeat the option for more)
  --n N                images per prompt (default 4)
  --out FILE           PNG grid to write
  --each DIR           also write one PNG per image to DIR
  --threads N          CPU threads (default: all)
  --json               print a JSON summary
${SAMPLER_HELP}`,
  reconstruct: `Usage: reca reconstruct --images DIR|shapes --out FILE.png [options]

Regenerates images from the model's own understanding embeddings plus the
template (what RecA trains), and writes originals beside reconstructions.

Options:
  --model FILE         checkpoint (default: the shipped base of --preset/--mode)
  --preset P, --mode M (default small, mask)
  --images D           a folder of images, or 'shapes' for shapes-world scenes
  --limit N            images at most (default 16)
  --template TEXT      the text beside the embeddings (default "describe the image")
  --out FILE           PNG grid to write
  --threads N          CPU threads (default: all)
  --json               print a JSON summary
${SAMPLER_HELP}`,
  embed: `Usage: reca embed --images DIR|shapes --out FILE.safetensors [options]

Writes the understanding embeddings of images (float32 [count, N_u, width],
key "embeddings") and their file names (metadata "files") as safetensors.

Options:
  --model FILE         checkpoint (default: the shipped base of --preset/--mode)
  --preset P, --mode M (default small, mask)
  --images D           a folder of images, or 'shapes' for shapes-world scenes
  --limit N            images at most (default: all; shapes: 64)
  --out FILE           safetensors file to write
  --threads N          CPU threads (default: all)
  --json               print a JSON summary`,
};

const SAMPLER_FLAGS = ['sample-steps', 'cfg', 'temperature', 'top-k', 'seed'];

function samplerFrom(flags: Flags, mode: Mode): SampleOptions {
  const s: SampleOptions = { ...defaultSampler(mode) };
  const steps = number(flags, 'sample-steps', true);
  const cfg = number(flags, 'cfg', false);
  const temperature = number(flags, 'temperature', false);
  const topK = number(flags, 'top-k', true);
  const seed = number(flags, 'seed', true);
  if (steps !== undefined) s.steps = positive(steps, 'sample-steps');
  if (cfg !== undefined) s.cfg = cfg;
  if (temperature !== undefined) s.temperature = temperature;
  if (topK !== undefined) s.topK = topK;
  if (seed !== undefined) s.seed = nonNegative(seed, 'seed');
  return s;
}

function positive(n: number, name: string): number {
  if (n < 1) throw new UsageError(`option --${name} needs a positive integer, got ${n}`);
  return n;
}

function nonNegative(n: number, name: string): number {
  if (n < 0) throw new UsageError(`option --${name} needs a non-negative integer, got ${n}`);
  return n;
}

function str(flags: Flags, name: string): string | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new UsageError(`option --${name} needs a value`);
  return v;
}

function required(flags: Flags, name: string, command: string, what: string): string {
  const v = str(flags, name);
  if (v === undefined) throw new UsageError(`${command} needs --${name} ${what}`);
  return v;
}

function noPositional(positional: string[], command: string): void {
  if (positional.length) throw new UsageError(`${command} takes no arguments, got '${positional[0]}'`);
}

function applyThreads(flags: Flags): void {
  const t = number(flags, 'threads', true);
  if (t !== undefined) setThreads(positive(t, 'threads'));
}

function mkdir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new RecaError('E_IO', `could not create ${dir}: ${(e as Error).message}`);
  }
}

function mkdirFor(file: string): void {
  mkdir(path.dirname(path.resolve(file)));
}

/** The model a command works on: --model FILE, else the shipped base of --preset/--mode. */
async function modelFrom(flags: Flags, fileFlag = 'model'): Promise<Model> {
  const file = str(flags, fileFlag);
  if (file !== undefined) {
    if (!fs.existsSync(file)) throw new RecaError('E_IO', `checkpoint ${file} does not exist`);
    return Model.load(file);
  }
  const preset = choice<Preset>(flags, 'preset', PRESETS, 'small');
  const mode = choice<Mode>(flags, 'mode', MODES, 'mask');
  const shipped = shippedBase(preset, mode);
  if (!shipped) {
    throw new RecaError(
      'E_IO',
      `no shipped base model for preset ${preset}, mode ${mode}: make one with ` +
        `'reca pretrain --preset ${preset} --mode ${mode} --out base.safetensors' and pass --${fileFlag} base.safetensors`,
    );
  }
  return Model.load(shipped);
}

/** --data / --images: 'shapes' (the built-in world) or a folder. */
async function dataFrom(spec: string, imageSize: number, seed: number, progressLabel: string): Promise<DataSource> {
  if (spec === 'shapes') return shapesData(imageSize, seed);
  const bar = new Progress({ total: 1, label: progressLabel, unit: 'img', stream: process.stderr });
  const folder = await loadImageFolder(spec, { imageSize, onProgress: (done, total) => bar.update(done, total) });
  bar.done();
  reportSkipped(folder.skipped);
  return folderData(folder, seed);
}

function reportSkipped(skipped: { file: string; reason: string }[]): void {
  if (!skipped.length) return;
  process.stderr.write(`skipped ${skipped.length} unreadable file(s):\n`);
  for (const s of skipped.slice(0, 10)) process.stderr.write(`  ${s.file}: ${s.reason}\n`);
  if (skipped.length > 10) process.stderr.write(`  ... and ${skipped.length - 10} more\n`);
}

/** A progress hook for training loops: loss (mean of the last 20) and lr beside the bar. */
function trainingProgress(label: string, total: number): { hook: StepHook; bar: Progress; last: () => number } {
  const bar = new Progress({ total, label, unit: 'step', stream: process.stderr });
  const recent: number[] = [];
  const hook: StepHook = (_stage, _step, _total, r: StepResult) => {
    recent.push(r.loss);
    if (recent.length > 20) recent.shift();
    bar.tick(1, { loss: fixed(mean(recent), 4), lr: r.lr.toExponential(1) });
  };
  return { hook, bar, last: () => mean(recent) };
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

function categoryTable(before: EvalReport, after?: EvalReport): string {
  const head = after ? ['category', 'before', 'after', 'change'] : ['category', 'score'];
  const rows = [head];
  for (const c of CATEGORIES) {
    const b = before.categories[c];
    rows.push(after ? [c, fixed(b, 3), fixed(after.categories[c], 3), signed(after.categories[c] - b)] : [c, fixed(b, 3)]);
  }
  rows.push(after ? ['overall', fixed(before.overall, 3), fixed(after.overall, 3), signed(after.overall - before.overall)] : ['overall', fixed(before.overall, 3)]);
  return table(rows, head.map((_, i) => i > 0));
}

function beforeAfterMarkdown(before: EvalReport, after: EvalReport): string {
  const rows = ['| category | before | after | change |', '|---|---:|---:|---:|'];
  for (const c of CATEGORIES) {
    rows.push(`| ${c} | ${fixed(before.categories[c], 3)} | ${fixed(after.categories[c], 3)} | ${signed(after.categories[c] - before.categories[c])} |`);
  }
  rows.push(`| **overall** | **${fixed(before.overall, 3)}** | **${fixed(after.overall, 3)}** | **${signed(after.overall - before.overall)}** |`);
  return rows.join('\n');
}

type Pathways = Awaited<ReturnType<typeof pathwayScores>>;

/** The image pathway's own ShapesEval scores, on the world's renders of the eval prompts. */
function pathwayLines(before: Pathways, after: Pathways): string {
  const lines = [
    `RecA reconstruction of the eval renders (the task RecA trains): ${fixed(before.reconstruction.overall, 3)} -> ` +
      `${fixed(after.reconstruction.overall, 3)}`,
  ];
  if (before.tokenizer) {
    lines.push(`VQ tokenizer ceiling (decode(tokenize(render)), the best any generator of this model can score): ${fixed(before.tokenizer.overall, 3)}`);
  }
  return lines.join('\n');
}

function signed(x: number): string {
  return (x >= 0 ? '+' : '') + x.toFixed(3);
}

async function evalWithProgress(model: Model, label: string, samples: number | undefined, sampler: SampleOptions, perCategory?: number): Promise<Evaluation> {
  const bar = new Progress({ total: 1, label, unit: 'img', stream: process.stderr });
  const ev = await evaluate(model, { samplesPerPrompt: samples, perCategory, sampler, onProgress: (d, t) => bar.update(d, t) });
  bar.done({ overall: fixed(ev.report.overall, 3) });
  return ev;
}

/** A labelled grid of some eval items: prompt and whether ShapesEval counted it right. */
async function evalGrid(file: string, ev: Evaluation, S: number, title: string): Promise<void> {
  const picked = gridSelection(ev.items, 6);
  const frame = S * S * 3;
  const images = new Uint8Array(picked.length * frame);
  const labels: string[] = [];
  picked.forEach((idx, k) => {
    images.set(ev.images.subarray(idx * frame, (idx + 1) * frame), k * frame);
    labels.push(`${ev.report.samples[idx].correct ? '+' : '-'} ${ev.items[idx].prompt.text}`);
  });
  await writeGrid(file, images, picked.length, S, { columns: 6, scale: S <= 16 ? 8 : 4, labels, title });
}

/** Input i, then reconstruction i, for each of `count` images: the grid's cell order. */
function interleave(inputs: Uint8Array, recons: Uint8Array, count: number, S: number): Uint8Array {
  const frame = S * S * 3;
  const out = new Uint8Array(2 * count * frame);
  for (let i = 0; i < count; i++) {
    out.set(inputs.subarray(i * frame, (i + 1) * frame), 2 * i * frame);
    out.set(recons.subarray(i * frame, (i + 1) * frame), (2 * i + 1) * frame);
  }
  return out;
}

/** The preset a config was made from (by its sizes), or 'custom'. */
function presetOf(c: Config): string {
  const sizes: Record<string, [number, number, number]> = { tiny: [64, 2, 64], small: [256, 6, 512], base: [768, 12, 4096] };
  for (const [name, [width, depth, K]] of Object.entries(sizes)) {
    if (c.width === width && c.depth === depth && c.codebook_size === K) return name;
  }
  return 'custom';
}

// ---- demo -----------------------------------------------------------------------

export async function cmdDemo(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['out', 'preset', 'mode', 'recipe', 'steps', 'batch', 'lr', 'base', 'samples', 'threads', ...SAMPLER_FLAGS]),
    new Set(['help', 'quick', 'json']),
  );
  if (flags.has('help')) return void console.log(JOB_HELP.demo);
  noPositional(positional, 'demo');
  const quick = flags.has('quick');
  const preset = choice<Preset>(flags, 'preset', ['tiny', 'small'], quick ? 'tiny' : 'small');
  const mode = choice<Mode>(flags, 'mode', MODES, 'mask');
  const recipe = choice<Recipe>(flags, 'recipe', ['reca', 'reca+i2t'], 'reca') as 'reca' | 'reca+i2t';
  const steps = nonNegative(number(flags, 'steps', true) ?? (quick ? 150 : 300), 'steps');
  const batch = positive(number(flags, 'batch', true) ?? 16, 'batch');
  const lr = number(flags, 'lr', false) ?? 3e-4;
  const samples = positive(number(flags, 'samples', true) ?? (quick ? 1 : 2), 'samples');
  const out = str(flags, 'out') ?? 'reca-demo';
  applyThreads(flags);
  const t0 = Date.now();
  mkdir(out);

  const baseFile = str(flags, 'base');
  const base = baseFile ?? shippedBase(preset, mode);
  if (!base) {
    throw new RecaError(
      'E_IO',
      `no shipped base model for preset ${preset}, mode ${mode}: make one with ` +
        `'reca pretrain --preset ${preset} --mode ${mode} --out base.safetensors', then 'reca demo --base base.safetensors'`,
    );
  }
  if (!fs.existsSync(base)) throw new RecaError('E_IO', `checkpoint ${base} does not exist`);
  using model = await Model.load(base);
  const cfg = model.config;
  const S = cfg.image_size;
  const presetName = baseFile ? presetOf(cfg) : preset;
  const sampler = samplerFrom(flags, cfg.mode);
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  log(`reca demo: ${presetName}/${cfg.mode} base ${path.relative(process.cwd(), base) || base}, ${model.parameterCount} parameters, ` +
    `${getThreads()} threads, isa ${info().cpu.isa}`);

  const before = await evalWithProgress(model, 'ShapesEval before', samples, sampler);
  const pathBefore = await pathwayScores(model, { sampler });
  await evalGrid(path.join(out, 'before.png'), before, S, `before RecA: overall ${before.report.overall.toFixed(3)}`);

  const progress = trainingProgress(`RecA (${recipe})`, steps);
  const tTrain = Date.now();
  const results = await posttrain(model, { recipe, steps, batch, lr, seed: 0, onStep: progress.hook });
  progress.bar.done({ loss: fixed(progress.last(), 4) });
  const trainSeconds = (Date.now() - tTrain) / 1000;

  const after = await evalWithProgress(model, 'ShapesEval after', samples, sampler);
  // Both RecA recipes keep vq frozen: the tokenizer ceiling cannot move, so only the reconstruction is rescored.
  const pathAfter = await pathwayScores(model, { sampler, tokenizer: false });
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

  const seconds = (Date.now() - t0) / 1000;
  const summary = (r: EvalReport) => ({ overall: r.overall, categories: r.categories });
  const report = {
    preset: presetName,
    mode: cfg.mode,
    recipe,
    steps,
    seconds,
    before: summary(before.report),
    after: summary(after.report),
    reconstruction: { before: summary(pathBefore.reconstruction), after: summary(pathAfter.reconstruction) },
    tokenizer_ceiling: pathBefore.tokenizer ? summary(pathBefore.tokenizer) : null,
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
  };
  writeJson(path.join(out, 'report.json'), report);
  const md = [
    `# RecA demo: ${presetName} preset, ${cfg.mode} mode, recipe ${recipe}`,
    '',
    `${steps} RecA steps (batch ${batch}, lr ${lr}) on uncaptioned shapes-world images; ShapesEval with ` +
      `${before.items.length} images (${samples} per prompt), sampler ${JSON.stringify(sampler)}. ` +
      `Total ${seconds.toFixed(0)} s on ${getThreads()} threads (${report.machine.cpu}).`,
    '',
    beforeAfterMarkdown(before.report, after.report),
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
  if (flags.has('json')) {
    const { samples: _omit, ...brief } = report;
    console.log(JSON.stringify(brief, null, 2));
    return;
  }
  console.log(`\nShapesEval, ${presetName}/${cfg.mode}, ${steps} RecA steps (${recipe}):\n`);
  console.log(categoryTable(before.report, after.report));
  console.log(`\n${pathwayLines(pathBefore, pathAfter)}`);
  console.log(`\n${seconds.toFixed(0)} s. Wrote ${report.outputs.map((f) => path.join(out, f)).join(', ')}`);
}

// ---- pretrain -------------------------------------------------------------------

export async function cmdPretrain(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['out', 'init', 'preset', 'mode', 'data', 'tokenizer-steps', 'steps', 'batch', 'lr', 'seed', 'threads']),
    new Set(['help', 'json']),
  );
  if (flags.has('help')) return void console.log(JOB_HELP.pretrain);
  noPositional(positional, 'pretrain');
  const out = required(flags, 'out', 'pretrain', 'FILE');
  const init = str(flags, 'init');
  if (init && (flags.has('preset') || flags.has('mode'))) throw new UsageError('--init takes its preset and mode from the checkpoint: leave out --preset and --mode');
  let initConfig: Config | undefined;
  if (init) {
    if (!fs.existsSync(init)) throw new RecaError('E_IO', `checkpoint ${init} does not exist`);
    using m = await Model.load(init);
    initConfig = { ...m.config };
  }
  const preset = init ? (presetOf(initConfig!) as Preset) : choice<Preset>(flags, 'preset', PRESETS, 'small');
  const mode = initConfig?.mode ?? choice<Mode>(flags, 'mode', MODES, 'mask');
  const seed = nonNegative(number(flags, 'seed', true) ?? 0, 'seed');
  // A continued run keeps its tokenizer: retraining it would move the codes under the generator.
  const tokenizerSteps = nonNegative(number(flags, 'tokenizer-steps', true) ?? (init ? 0 : PRETRAIN_DEFAULTS.tokenizerSteps), 'tokenizer-steps');
  const steps = nonNegative(number(flags, 'steps', true) ?? PRETRAIN_DEFAULTS.steps, 'steps');
  const batch = positive(number(flags, 'batch', true) ?? PRETRAIN_DEFAULTS.batch, 'batch');
  const lr = number(flags, 'lr', false) ?? PRETRAIN_DEFAULTS.lr;
  applyThreads(flags);
  mkdirFor(out);
  // Shapes captions run to 48 bytes; the tiny preset's 32 would cut position prompts.
  const config = preset === 'tiny' ? { max_text_len: 48 } : undefined;
  const imageSize = initConfig?.image_size ?? { tiny: 16, small: 32, base: 64 }[preset];
  const data = await dataFrom(str(flags, 'data') ?? 'shapes', imageSize, seed, 'loading images');
  const t0 = Date.now();
  const stages = mode === 'flow' ? [['t2i+i2t', steps]] : [['tokenizer', tokenizerSteps], ['t2i+i2t', steps]];
  const bars = new Map(stages.map(([name, n]) => [name as string, trainingProgress(`pretrain ${name}`, n as number)]));
  const model = await pretrain({
    init, preset, mode, config, seed, tokenizerSteps, steps, batch, lr, data,
    onStep: (stage, step, total, r) => {
      const p = bars.get(stage);
      p?.hook(stage, step, total, r);
      if (p && step === total) p.bar.done({ loss: fixed(p.last(), 4) });
    },
  });
  try {
    await model.save(out, { dtype: 'float16' });
    const summary = {
      out, init: init ?? null, preset, mode, seed, tokenizerSteps: mode === 'flow' ? 0 : tokenizerSteps, steps, batch, lr,
      data: data.description, parameters: model.parameterCount, seconds: (Date.now() - t0) / 1000,
      command: `reca pretrain ${args.join(' ')}`,
    };
    console.log(flags.has('json') ? JSON.stringify(summary, null, 2) : `wrote ${out} (${summary.parameters} parameters, ${summary.seconds.toFixed(0)} s)`);
  } finally {
    model.dispose();
  }
}

// ---- train ----------------------------------------------------------------------

export async function cmdTrain(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['out', 'model', 'resume', 'preset', 'mode', 'recipe', 'data', 'steps', 'batch', 'lr', 'save-every', 'seed', 'threads']),
    new Set(['help', 'json']),
  );
  if (flags.has('help')) return void console.log(JOB_HELP.train);
  noPositional(positional, 'train');
  const out = required(flags, 'out', 'train', 'FILE');
  const recipe = choice<Recipe>(flags, 'recipe', ['reca', 'reca+i2t', 'tokenizer'], 'reca');
  const steps = nonNegative(number(flags, 'steps', true) ?? 300, 'steps');
  const batch = positive(number(flags, 'batch', true) ?? 16, 'batch');
  const lr = number(flags, 'lr', false) ?? 3e-4;
  const saveEvery = number(flags, 'save-every', true);
  const seed = nonNegative(number(flags, 'seed', true) ?? 0, 'seed');
  const resume = str(flags, 'resume');
  if (resume && flags.has('model')) throw new UsageError('use --resume or --model, not both');
  applyThreads(flags);
  mkdirFor(out);
  using model = resume ? await modelFrom(flags, 'resume') : await modelFrom(flags);
  const data = await dataFrom(str(flags, 'data') ?? 'shapes', model.config.image_size, seed + 1000, 'loading images');
  if (recipe === 'reca+i2t' && !data.captioned) throw new UsageError("recipe reca+i2t needs captions (i2t): use --recipe reca or a captioned folder");
  using trainer = new Trainer(model, {
    recipe,
    optimizer: { lr },
    schedule: { warmup: Math.min(20, Math.floor(steps / 10)), kind: 'cosine', totalSteps: steps, minLr: lr / 10 },
    seed,
  });
  if (resume) await trainer.load(resume);
  const startStep = trainer.steps;
  if (startStep >= steps) throw new UsageError(`the run in ${resume} already did ${startStep} of ${steps} steps: raise --steps`);
  const progress = trainingProgress(`train ${recipe}`, steps - startStep);
  const t0 = Date.now();
  let done = 0;
  while (done < steps - startStep) {
    const chunk = Math.min(saveEvery ?? steps, steps - startStep - done);
    await trainSteps(trainer, data, chunk, batch, recipe, progress.hook);
    done += chunk;
    await model.save(out, { trainer });
  }
  progress.bar.done({ loss: fixed(progress.last(), 4) });
  const summary = { out, recipe, steps: trainer.steps, batch, lr, data: data.description, loss: progress.last(), seconds: (Date.now() - t0) / 1000 };
  console.log(flags.has('json') ? JSON.stringify(summary, null, 2) : `wrote ${out} (step ${summary.steps}, loss ${fixed(summary.loss, 4)}, ${summary.seconds.toFixed(0)} s)`);
}

// ---- eval -----------------------------------------------------------------------

export async function cmdEval(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['model', 'preset', 'mode', 'samples', 'out', 'threads', ...SAMPLER_FLAGS]),
    new Set(['help', 'json']),
  );
  if (flags.has('help')) return void console.log(JOB_HELP.eval);
  noPositional(positional, 'eval');
  const samples = positive(number(flags, 'samples', true) ?? 2, 'samples');
  const out = str(flags, 'out');
  applyThreads(flags);
  using model = await modelFrom(flags);
  const sampler = samplerFrom(flags, model.config.mode);
  const ev = await evalWithProgress(model, 'ShapesEval', samples, sampler);
  if (out) {
    mkdir(out);
    writeJson(path.join(out, 'eval.json'), { ...ev.report, sampler, seconds: ev.seconds });
    fs.writeFileSync(path.join(out, 'eval.md'), reportMarkdown(ev.report, 'ShapesEval') + '\n');
    await evalGrid(path.join(out, 'samples.png'), ev, model.config.image_size, `ShapesEval overall ${ev.report.overall.toFixed(3)}`);
  }
  if (flags.has('json')) {
    const { samples: _omit, ...brief } = ev.report;
    console.log(JSON.stringify({ ...brief, sampler, seconds: ev.seconds }, null, 2));
  } else {
    console.log(categoryTable(ev.report));
  }
}

// ---- sample ---------------------------------------------------------------------

export async function cmdSample(args: string[]): Promise<void> {
  const prompts: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--prompt') {
      if (args[i + 1] === undefined) throw new UsageError('option --prompt needs a value');
      prompts.push(args[++i]);
    } else if (args[i].startsWith('--prompt=')) prompts.push(args[i].slice(9));
    else rest.push(args[i]);
  }
  const { flags, positional } = parse(rest, new Set(['model', 'preset', 'mode', 'n', 'out', 'each', 'threads', ...SAMPLER_FLAGS]), new Set(['help', 'json']));
  if (flags.has('help')) return void console.log(JOB_HELP.sample);
  noPositional(positional, 'sample');
  if (!prompts.length) throw new UsageError('sample needs at least one --prompt TEXT');
  const out = required(flags, 'out', 'sample', 'FILE.png');
  const n = positive(number(flags, 'n', true) ?? 4, 'n');
  const each = str(flags, 'each');
  applyThreads(flags);
  mkdirFor(out);
  using model = await modelFrom(flags);
  const S = model.config.image_size;
  const all = prompts.flatMap((p) => Array.from({ length: n }, () => p));
  using images = await model.generate({ ...samplerFrom(flags, model.config.mode), prompts: all });
  const bytes = images.toArray();
  await writeGrid(out, bytes, all.length, S, { columns: n, scale: S <= 16 ? 8 : 4, labels: all });
  if (each) {
    mkdir(each);
    for (let i = 0; i < all.length; i++) {
      await writePng(path.join(each, `${String(i).padStart(4, '0')}.png`), bytes.subarray(i * S * S * 3, (i + 1) * S * S * 3), S, S);
    }
  }
  if (flags.has('json')) console.log(JSON.stringify({ out, each: each ?? null, images: all.length, prompts }, null, 2));
  else console.log(`wrote ${out}${each ? ` and ${all.length} images to ${each}` : ''}`);
}

// ---- reconstruct / embed ------------------------------------------------------------

/** Images for reconstruct/embed: a folder, or shapes-world eval scenes. */
async function imagesFrom(spec: string, S: number, limit: number | undefined): Promise<{ images: Uint8Array; count: number; names: string[] }> {
  if (spec === 'shapes') {
    const count = limit ?? 64;
    const b = new ShapesWorld({ imageSize: S, split: 'eval', seed: 0 }).batch(count, 0);
    return { images: b.images, count, names: b.captions };
  }
  const folder = await loadImageFolder(spec, { imageSize: S, limit });
  reportSkipped(folder.skipped);
  return { images: folder.images, count: folder.shape[0], names: folder.files };
}

export async function cmdReconstruct(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['model', 'preset', 'mode', 'images', 'limit', 'template', 'out', 'threads', ...SAMPLER_FLAGS]),
    new Set(['help', 'json']),
  );
  if (flags.has('help')) return void console.log(JOB_HELP.reconstruct);
  noPositional(positional, 'reconstruct');
  const spec = required(flags, 'images', 'reconstruct', 'DIR (or shapes)');
  const out = required(flags, 'out', 'reconstruct', 'FILE.png');
  const limit = positive(number(flags, 'limit', true) ?? 16, 'limit');
  applyThreads(flags);
  mkdirFor(out);
  using model = await modelFrom(flags);
  const S = model.config.image_size;
  const { images, count } = await imagesFrom(spec, S, limit);
  using recon = await model.reconstruct({ data: images, shape: [count, S, S, 3] }, { ...samplerFrom(flags, model.config.mode), template: str(flags, 'template') });
  const pair = interleave(images, recon.toArray(), count, S);
  await writeGrid(out, pair, 2 * count, S, { columns: 8, scale: S <= 16 ? 8 : 4, labels: Array.from({ length: 2 * count }, (_, i) => (i % 2 ? 'recon' : 'input')) });
  if (flags.has('json')) console.log(JSON.stringify({ out, images: count }, null, 2));
  else console.log(`wrote ${out} (${count} images and their reconstructions)`);
}

export async function cmdEmbed(args: string[]): Promise<void> {
  const { flags, positional } = parse(args, new Set(['model', 'preset', 'mode', 'images', 'limit', 'out', 'threads']), new Set(['help', 'json']));
  if (flags.has('help')) return void console.log(JOB_HELP.embed);
  noPositional(positional, 'embed');
  const spec = required(flags, 'images', 'embed', 'DIR (or shapes)');
  const out = required(flags, 'out', 'embed', 'FILE.safetensors');
  const limitFlag = number(flags, 'limit', true);
  const limit = limitFlag === undefined ? undefined : positive(limitFlag, 'limit');
  applyThreads(flags);
  mkdirFor(out);
  using model = await modelFrom(flags);
  const S = model.config.image_size;
  const { images, count, names } = await imagesFrom(spec, S, limit);
  using emb = await model.embed({ data: images, shape: [count, S, S, 3] });
  const shape = emb.shape;
  await writeSafetensors(out, { embeddings: { dtype: 'F32', shape, data: emb.toArray() } }, { files: JSON.stringify(names), 'reca.config': JSON.stringify(model.config) });
  const summary = { out, count, shape };
  console.log(flags.has('json') ? JSON.stringify(summary, null, 2) : `wrote ${out}: embeddings float32 [${shape.join(', ')}]`);
}

export const JOBS: Record<string, (args: string[]) => Promise<void>> = {
  demo: cmdDemo,
  pretrain: cmdPretrain,
  train: cmdTrain,
  eval: cmdEval,
  sample: cmdSample,
  reconstruct: cmdReconstruct,
  embed: cmdEmbed,
};
