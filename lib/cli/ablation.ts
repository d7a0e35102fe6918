/**
 * `reca demo --ablation`: the paper's ablation in miniature. The same
 * post-training (steps, batch, learning rate, cycle with image-to-text steps)
 * from the same base, with only the condition changed, each scored with the
 * same ShapesEval prompts and seeds as the base (paired intervals):
 * - reca: the model's own understanding embeddings (RecA);
 * - tokenizer condition: the generator's own embeddings of the image's tokens,
 *   pooled to the same grid: the condition carries the pixels but none of the
 *   understanding, the paper's VAE-latent row (it found no text-to-image gain);
 * - t2i: text-to-image on captioned images in place of the reca steps, the
 *   supervised reference;
 * - weaker bottleneck (with --full-res-base): RecA from a base whose
 *   understanding encoder sees the full-resolution image (more, finer tokens),
 *   scored against that base's own before.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { getThreads, info } from '../engine';
import { RecaError } from '../errors';
import { fixed, table, writeJson } from '../format';
import { Model, type Device, type Mode, type SampleOptions } from '../model';
import type { EvalReport } from '../shapes/eval';
import { pairedIntervals, withInterval } from '../shapes/stats';
import { CATEGORIES } from '../shapes/world';
import { posttrain, type PosttrainCycle, type PosttrainOptions } from '../workflows';
import { evalWithProgress, INTERVAL_NOTE, INTERVALS, trainingProgress, type Paired } from './common';

export interface AblationArm {
  /** What --arms calls it. */
  id: string;
  name: string;
  /** What changes against the RecA arm. */
  what: string;
  train: Partial<PosttrainOptions>;
}

export const ABLATION_ARMS: readonly AblationArm[] = [
  { id: 'reca', name: 'reca', what: "RecA: the model's own understanding embeddings plus a template", train: {} },
  {
    id: 'tokenizer',
    name: 'tokenizer condition',
    what: "the generator's own embeddings of the image's tokens (pooled to the same grid) in place of the understanding embeddings",
    train: { trainer: { condition: 'tokenizer' } },
  },
  { id: 't2i', name: 't2i', what: 'text-to-image steps on captioned images in place of the reca steps', train: { stepTask: 't2i' } },
];
/** The arm from --full-res-base. */
export const WEAKER_ARM_ID = 'weaker';
export const ABLATION_ARM_IDS: readonly string[] = [...ABLATION_ARMS.map((a) => a.id), WEAKER_ARM_ID];

export interface AblationSettings {
  base: string;
  fullResBase?: string;
  /** Which arms to run (ids of ABLATION_ARM_IDS); default every one the bases allow. */
  arms?: readonly string[];
  device: Device;
  steps: number;
  batch: number;
  lr: number;
  cycle: PosttrainCycle;
  /** ShapesEval samples per prompt for a mode (the base's mode is known once it is loaded). */
  samplesFor: (mode: Mode) => number;
  /** The sampler of a mode (the base's mode is known once it is loaded). */
  samplerFor: (mode: Mode) => SampleOptions;
  out: string;
  json: boolean;
}

interface ArmResult {
  arm: string;
  what: string;
  base: string;
  before: EvalReport;
  after: EvalReport;
  paired: Paired;
  trainSeconds: number;
  sampler: SampleOptions;
  samples: number;
}

const log = (s: string): void => void process.stderr.write(`${s}\n`);

async function runArm(arm: AblationArm, baseFile: string, before: EvalReport, s: AblationSettings, sampler: SampleOptions, samples: number): Promise<ArmResult> {
  using model = await Model.load(baseFile, { device: s.device });
  const progress = trainingProgress(`${arm.name}`, s.steps);
  const t0 = Date.now();
  await posttrain(model, { steps: s.steps, batch: s.batch, lr: s.lr, seed: 0, cycle: s.cycle, onStep: progress.hook, ...arm.train });
  progress.bar.done({ loss: fixed(progress.last(), 4) });
  const trainSeconds = (Date.now() - t0) / 1000;
  const after = await evalWithProgress(model, `ShapesEval after (${arm.name})`, samples, sampler);
  return { arm: arm.name, what: arm.what, base: baseFile, before, after: after.report, paired: pairedIntervals(before.samples, after.report.samples, INTERVALS), trainSeconds, sampler, samples };
}

/** The full-resolution base's image size, refused before any work unless its understanding input is the whole image. */
async function checkFullResBase(file: string): Promise<number> {
  if (!fs.existsSync(file)) throw new RecaError('E_IO', `checkpoint ${file} does not exist`);
  using wide = await Model.load(file);
  const c = wide.config;
  if (c.und_image_size !== c.image_size) {
    throw new RecaError(
      'E_INVALID_ARGUMENT',
      `--full-res-base needs a base whose understanding input is the full image (und_image_size = image_size = ${c.image_size}), ` +
        `got und_image_size ${c.und_image_size}: pretrain one with 'reca pretrain --und-image-size ${c.image_size}'`,
    );
  }
  return c.image_size;
}

export async function runAblation(s: AblationSettings): Promise<void> {
  const t0 = Date.now();
  const fullRes = s.fullResBase ? await checkFullResBase(s.fullResBase) : undefined;
  const arms: ArmResult[] = [];
  // The base is scored once, then freed: every arm loads its own copy.
  const scoreBase = async (file: string, label: string): Promise<{ before: EvalReport; sampler: SampleOptions; samples: number }> => {
    using base = await Model.load(file, { device: s.device });
    const sampler = s.samplerFor(base.config.mode);
    const samples = s.samplesFor(base.config.mode);
    return { before: (await evalWithProgress(base, label, samples, sampler)).report, sampler, samples };
  };
  log(`reca demo --ablation: base ${s.base}, ${getThreads()} threads, isa ${info().cpu.isa}`);
  const selected = s.arms ?? ABLATION_ARM_IDS.filter((id) => id !== WEAKER_ARM_ID || s.fullResBase);
  const baseArms = ABLATION_ARMS.filter((a) => selected.includes(a.id));
  if (baseArms.length > 0) {
    const { before, sampler, samples } = await scoreBase(s.base, 'ShapesEval before');
    for (const arm of baseArms) arms.push(await runArm(arm, s.base, before, s, sampler, samples));
  }
  if (s.fullResBase && fullRes !== undefined && selected.includes(WEAKER_ARM_ID)) {
    const wide = await scoreBase(s.fullResBase, 'ShapesEval before (full-resolution base)');
    const arm = { id: WEAKER_ARM_ID, name: 'weaker bottleneck', what: `RecA from a base whose understanding encoder sees the full ${fullRes}px image`, train: {} };
    arms.push(await runArm(arm, s.fullResBase, wide.before, s, wide.sampler, wide.samples));
  }
  const seconds = (Date.now() - t0) / 1000;

  const head = ['arm', 'before', 'after', 'change', ...CATEGORIES.map((c) => `${c} change`)];
  const rows = arms.map((a) => [
    a.arm,
    fixed(a.before.overall, 3),
    fixed(a.after.overall, 3),
    withInterval(a.paired.change.overall, true),
    ...CATEGORIES.map((c) => withInterval(a.paired.change.categories[c], true)),
  ]);
  const report = {
    base: s.base,
    full_res_base: s.fullResBase ?? null,
    steps: s.steps,
    batch: s.batch,
    lr: s.lr,
    cycle: s.cycle,
    samples_per_prompt: arms[0]?.samples ?? null,
    sampler: arms[0]?.sampler ?? null,
    seconds,
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, threads: getThreads(), isa: info().cpu.isa, node: process.version },
    date: new Date().toISOString(),
    arms: arms.map((a) => ({
      arm: a.arm,
      what: a.what,
      base: a.base,
      train_seconds: a.trainSeconds,
      before: { overall: a.before.overall, categories: a.before.categories },
      after: { overall: a.after.overall, categories: a.after.categories },
      change: a.paired.change,
    })),
    not_run: [
      ...ABLATION_ARMS.filter((a) => !selected.includes(a.id)).map((a) => `${a.name}: left out by --arms`),
      ...(!s.fullResBase
        ? ['weaker bottleneck: needs --full-res-base, a base pretrained with und_image_size = image_size']
        : selected.includes(WEAKER_ARM_ID) ? [] : ['weaker bottleneck: left out by --arms']),
    ],
  };
  writeJson(path.join(s.out, 'ablation.json'), report);
  const md = [
    `# RecA ablation: ${s.steps} steps (batch ${s.batch}, lr ${s.lr}, cycle ${s.cycle.join('+')}) from ${s.base}`,
    '',
    '| ' + head.join(' | ') + ' |',
    '|' + head.map((_, i) => (i ? '---:' : '---')).join('|') + '|',
    ...rows.map((r) => '| ' + r.join(' | ') + ' |'),
    '',
    ...arms.map((a) => `- **${a.arm}**: ${a.what}.`),
    ...report.not_run.map((n) => `- not run: ${n}.`),
    '',
    `${INTERVAL_NOTE} Changes are paired: the same prompts and seeds before and after. ${seconds.toFixed(0)} s on ${getThreads()} threads.`,
    '',
  ].join('\n');
  try {
    fs.writeFileSync(path.join(s.out, 'ablation.md'), md);
  } catch (e) {
    throw new RecaError('E_IO', `could not write ${path.join(s.out, 'ablation.md')}: ${(e as Error).message}`);
  }
  if (s.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log(`\nShapesEval after the same post-training with the condition changed:\n`);
  console.log(table([head, ...rows], head.map((_, i) => i > 0)));
  for (const n of report.not_run) console.log(`not run: ${n}`);
  console.log(`\n${INTERVAL_NOTE}\n${seconds.toFixed(0)} s. Wrote ${path.join(s.out, 'ablation.json')}, ${path.join(s.out, 'ablation.md')}`);
}
