/** What several commands share: the model and data they work on, progress, result tables. */
import * as fs from 'fs';
import * as path from 'path';

import { launchedRank } from '../distributed';
import { setThreads } from '../engine';
import { RecaError } from '../errors';
import { fixed, mean, signed, table } from '../format';
import { loadImageFolder, writeGrid } from '../images';
import { Model, type Config, type Device, type Mode, type Preset, type SampleOptions, type StepResult } from '../model';
import { Progress } from '../progress';
import type { EvalReport } from '../shapes/eval';
import { BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, pairedIntervals, scoreIntervals, SINGLE_OBJECT, withInterval, type Interval, type SampleSizeAdvice } from '../shapes/stats';
import { CATEGORIES, ShapesWorld } from '../shapes/world';
import { defaultSampler, evaluate, folderData, gridSelection, pathwayScores, shapesData, shippedBase, type DataSource, type Evaluation, type StepHook } from '../workflows';
import { num, str, type Values } from './options';

export function applyThreads(values: Values): void {
  const t = num(values, 'threads');
  if (t !== undefined) setThreads(t);
}

export function mkdir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new RecaError('E_IO', `could not create ${dir}: ${(e as Error).message}`);
  }
}

export function mkdirFor(file: string): void {
  mkdir(path.dirname(path.resolve(file)));
}

/** The model a command works on: --model FILE (or `fileFlag`), else the shipped base of --preset/--mode. */
export async function modelFrom(values: Values, fileFlag = 'model'): Promise<Model> {
  const file = str(values, fileFlag);
  const device = deviceOf(values);
  if (file !== undefined) {
    if (!fs.existsSync(file)) throw new RecaError('E_IO', `checkpoint ${file} does not exist`);
    return Model.load(file, { device });
  }
  const preset = (str(values, 'preset') ?? 'small') as Preset;
  const mode = (str(values, 'mode') ?? 'mask') as Mode;
  const shipped = shippedBase(preset, mode);
  if (!shipped) {
    throw new RecaError(
      'E_IO',
      `no shipped base model for preset ${preset}, mode ${mode}: make one with ` +
        `'reca pretrain --preset ${preset} --mode ${mode} --out base.safetensors' and pass --${fileFlag} base.safetensors`,
    );
  }
  return Model.load(shipped, { device });
}

export function deviceOf(values: Values): Device {
  return (str(values, 'device') ?? 'cpu') as Device;
}

/** The sampler flags over the evaluation sampler of the mode. */
export function samplerFrom(values: Values, mode: Mode): SampleOptions {
  const s: SampleOptions = { ...defaultSampler(mode) };
  const steps = num(values, 'sample-steps');
  const cfg = num(values, 'cfg');
  const temperature = num(values, 'temperature');
  const topK = num(values, 'top-k');
  const choice = num(values, 'choice-temperature');
  const seed = num(values, 'seed');
  if (steps !== undefined) s.steps = steps;
  if (cfg !== undefined) s.cfg = cfg;
  if (temperature !== undefined) s.temperature = temperature;
  if (topK !== undefined) s.topK = topK;
  if (choice !== undefined) s.choiceTemperature = choice;
  if (seed !== undefined) s.seed = seed;
  return s;
}

/** --data / --images: 'shapes' (the built-in world) or a folder. */
export async function dataFrom(spec: string, imageSize: number, seed: number, progressLabel: string): Promise<DataSource> {
  if (spec === 'shapes') return shapesData(imageSize, seed);
  const bar = new Progress({ total: 1, label: progressLabel, unit: 'img', stream: process.stderr });
  const folder = await loadImageFolder(spec, { imageSize, onProgress: (done, total) => bar.update(done, total) });
  bar.done();
  reportSkipped(folder.skipped);
  return folderData(folder, seed);
}

export function reportSkipped(skipped: { file: string; reason: string }[]): void {
  if (!skipped.length) return;
  process.stderr.write(`skipped ${skipped.length} unreadable file(s):\n`);
  for (const s of skipped.slice(0, 10)) process.stderr.write(`  ${s.file}: ${s.reason}\n`);
  if (skipped.length > 10) process.stderr.write(`  ... and ${skipped.length - 10} more\n`);
}

/** Images for reconstruct/embed: a folder, or shapes-world eval scenes. */
export async function imagesFrom(spec: string, S: number, limit: number | undefined): Promise<{ images: Uint8Array; count: number; names: string[] }> {
  if (spec === 'shapes') {
    const count = limit ?? 64;
    const b = new ShapesWorld({ imageSize: S, split: 'eval', seed: 0 }).batch(count, 0);
    return { images: b.images, count, names: b.captions };
  }
  const folder = await loadImageFolder(spec, { imageSize: S, limit });
  reportSkipped(folder.skipped);
  return { images: folder.images, count: folder.shape[0], names: folder.files };
}

/** A progress hook for training loops: loss (mean of the last 20) and lr beside the bar. */
export function trainingProgress(label: string, total: number): { hook: StepHook; bar: Progress; last: () => number } {
  // Of an mpirun job's ranks, rank 0 speaks for all (they see the same losses).
  const stream = launchedRank() === 0 ? process.stderr : { write: () => true };
  const bar = new Progress({ total, label, unit: 'step', stream });
  const recent: number[] = [];
  let first = true;
  const hook: StepHook = (_stage, step, _total, r: StepResult) => {
    // A resumed run's first step is the saved run's step + 1: the bar continues from there.
    if (first && step > 1) bar.resumeFrom(step - 1);
    first = false;
    recent.push(r.loss);
    if (recent.length > 20) recent.shift();
    bar.tick(1, { loss: fixed(mean(recent), 4), lr: r.lr.toExponential(1) });
  };
  return { hook, bar, last: () => mean(recent) };
}

export type Paired = ReturnType<typeof pairedIntervals>;

/** A report's scores without its per-sample outcomes, as report.json and eval.json write them. */
export function scoresOf(r: EvalReport): { overall: number; categories: EvalReport['categories'] } {
  return { overall: r.overall, categories: r.categories };
}

/** Bootstrap intervals as report.json and eval.json write them: how they were made, then the numbers. */
export function intervalsJson<T extends object>(values: T, paired: boolean): T & { method: string; level: number; resamples: number; seed: number } {
  return {
    method: paired
      ? 'percentile bootstrap over prompts, stratified by category, paired (the same resampled prompts before and after)'
      : 'percentile bootstrap over prompts, stratified by category',
    level: 0.95,
    resamples: BOOTSTRAP_RESAMPLES,
    seed: BOOTSTRAP_SEED,
    ...values,
  };
}

/** Bootstrap settings of every interval the CLI reports: the defaults, plus the single-object group. */
export const INTERVALS = { groups: { single_object: SINGLE_OBJECT } } as const;

/** Each score with its 95% interval; with `after`, the paired change with its interval too. */
export function categoryTable(before: EvalReport, after?: EvalReport, paired?: Paired): string {
  const head = after ? ['category', 'before', 'after', 'change'] : ['category', 'score'];
  const rows = [head];
  if (after) {
    const p = paired ?? pairedIntervals(before.samples, after.samples, INTERVALS);
    for (const c of CATEGORIES) rows.push([c, withInterval(p.before.categories[c]), withInterval(p.after.categories[c]), withInterval(p.change.categories[c], true)]);
    rows.push(['overall', withInterval(p.before.overall), withInterval(p.after.overall), withInterval(p.change.overall, true)]);
  } else {
    const one = scoreIntervals(before.samples);
    for (const c of CATEGORIES) rows.push([c, withInterval(one.categories[c])]);
    rows.push(['overall', withInterval(one.overall)]);
  }
  return table(rows, head.map((_, i) => i > 0)) + `\n${INTERVAL_NOTE}${after ? ' Changes are paired: the same prompts and seeds before and after.' : ''}`;
}

/** How the intervals are made, under every table that shows them. */
export const INTERVAL_NOTE = `[low, high]: 95% interval, bootstrap over prompts (${BOOTSTRAP_RESAMPLES} resamples, within each category).`;

export function beforeAfterMarkdown(before: EvalReport, after: EvalReport, paired?: Paired): string {
  const p = paired ?? pairedIntervals(before.samples, after.samples, INTERVALS);
  const rows = ['| category | before | after | change |', '|---|---:|---:|---:|'];
  for (const c of CATEGORIES) {
    rows.push(`| ${c} | ${withInterval(p.before.categories[c])} | ${withInterval(p.after.categories[c])} | ${withInterval(p.change.categories[c], true)} |`);
  }
  const bold = (iv: Interval, sign = false) => withInterval(iv, sign).replace(/^(\S+)/, '**$1**');
  rows.push(`| **overall** | ${bold(p.before.overall)} | ${bold(p.after.overall)} | ${bold(p.change.overall, true)} |`);
  return rows.join('\n') + `\n\n${INTERVAL_NOTE} Changes are paired: the same prompts and seeds before and after.`;
}

/** The prompts post-training never showed: single-object scenes (its images all hold two or more objects). */
export function singleObjectLine(p: Paired): string {
  const g = p.change.groups.single_object;
  if (g === undefined) return '';
  return (
    'Single-object prompts (no training caption describes one object alone): change ' +
    `single ${withInterval(p.change.categories.single, true)}, colors ${withInterval(p.change.categories.colors, true)}, ` +
    `both ${withInterval(g, true)} (${withInterval(p.before.groups.single_object)} -> ${withInterval(p.after.groups.single_object)}).`
  );
}

/** How many samples per prompt would make the overall change precise to ±target. */
export function sampleSizeLine(advice: SampleSizeAdvice, samples: number, target = SAMPLE_TARGET): string {
  const now = `With ${samples} sample${samples === 1 ? '' : 's'} per prompt the overall change is known to ±${advice.halfWidth.toFixed(4)} (95%, normal approximation)`;
  if (advice.samples === null) {
    return `${now}; no number of samples gets it to ±${target}: the prompts themselves differ by more (more prompts would).`;
  }
  const bound = advice.lowerBound ? ' at least (one sample per prompt cannot tell prompt-to-prompt from sample-to-sample variance; rerun with --samples 2 for a firmer number)' : '';
  return `${now}; for ±${target}, use --samples ${advice.samples}${bound}.`;
}

/** The half-width the sample-size advice aims at. */
export const SAMPLE_TARGET = 0.02;

export type Pathways = Awaited<ReturnType<typeof pathwayScores>>;

/** The image pathway's own ShapesEval scores, on the world's renders of the eval prompts. */
export function pathwayLines(before: Pathways, after: Pathways): string {
  const lines = [
    `RecA reconstruction of ${before.reconstruction.samples.length} eval renders (the task RecA trains): ${fixed(before.reconstruction.overall, 3)} -> ` +
      `${fixed(after.reconstruction.overall, 3)}`,
  ];
  if (before.tokenizer) {
    lines.push(`VQ tokenizer ceiling (decode(tokenize(render)), the best any generator of this model can score): ${fixed(before.tokenizer.overall, 3)}`);
  }
  return lines.join('\n');
}

export async function evalWithProgress(model: Model, label: string, samples: number | undefined, sampler: SampleOptions, perCategory?: number): Promise<Evaluation> {
  const bar = new Progress({ total: 1, label, unit: 'img', stream: process.stderr });
  const ev = await evaluate(model, { samplesPerPrompt: samples, perCategory, sampler, onProgress: (d, t) => bar.update(d, t) });
  bar.done({ overall: fixed(ev.report.overall, 3) });
  return ev;
}

/** A labelled grid of some eval items: prompt and whether ShapesEval counted it right. */
export async function evalGrid(file: string, ev: Evaluation, S: number, title: string): Promise<void> {
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
export function interleave(inputs: Uint8Array, recons: Uint8Array, count: number, S: number): Uint8Array {
  const frame = S * S * 3;
  const out = new Uint8Array(2 * count * frame);
  for (let i = 0; i < count; i++) {
    out.set(inputs.subarray(i * frame, (i + 1) * frame), 2 * i * frame);
    out.set(recons.subarray(i * frame, (i + 1) * frame), (2 * i + 1) * frame);
  }
  return out;
}

/** The preset a config was made from (by its sizes: width, depth, codebook), or 'custom'. */
export function presetOf(c: Config, presets: Record<string, { width: number; depth: number; codebook_size: number }>): string {
  for (const [name, p] of Object.entries(presets)) {
    if (c.width === p.width && c.depth === p.depth && c.codebook_size === p.codebook_size) return name;
  }
  return 'custom';
}
