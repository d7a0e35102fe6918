/** `reca eval`: ShapesEval of a model. */
import * as fs from 'fs';
import * as path from 'path';

import { writeJson } from '../format';
import type { SampleOptions } from '../model';
import { reportMarkdown } from '../shapes/eval';
import { conditionProbe } from '../shapes/probe';
import { pairedIntervals, scoreIntervals } from '../shapes/stats';
import type { Evaluation } from '../workflows';
import { applyThreads, beforeAfterMarkdown, categoryTable, evalGrid, evalWithProgress, INTERVALS, intervalsJson, mkdir, modelFrom, samplerFrom, scoresOf, singleObjectLine } from './common';
import { JSON_FLAG, MODEL_OPTIONS, num, parseCommand, renderHelp, SAMPLER_OPTIONS, str, THREADS, type CommandSpec } from './options';

export const EVAL: CommandSpec = {
  name: 'eval',
  usage: '[--model FILE] [options]',
  summary: 'score a model with ShapesEval',
  description: `Scores a model with ShapesEval and prints the per-category table. With
--baseline, also scores that checkpoint on the same prompts and seeds and prints
the paired change (model minus baseline) with its 95% interval: how to judge a
\`reca train\` run against its base, as the demo does.`,
  options: [
    ...MODEL_OPTIONS,
    { name: 'baseline', kind: 'string', value: 'FILE', help: 'also score this checkpoint and report the paired change from it' },
    { name: 'samples', kind: 'int', value: 'N', min: 1, default: 2, help: 'samples per prompt' },
    { name: 'out', kind: 'string', value: 'DIR', help: 'also write eval.json, eval.md and samples.png there' },
    THREADS,
    { ...JSON_FLAG, help: 'print the report as JSON' },
    ...SAMPLER_OPTIONS,
  ],
};

export async function cmdEval(args: string[]): Promise<void> {
  const { values, help } = parseCommand(EVAL, args);
  if (help) return void console.log(renderHelp(EVAL));
  const samples = num(values, 'samples') ?? 2;
  const out = str(values, 'out');
  applyThreads(values);
  // Both checkpoints load before any sampling, so a bad file fails at once.
  using model = await modelFrom(values);
  const baselineFile = str(values, 'baseline');
  using baseline = baselineFile !== undefined ? await modelFrom(values, 'baseline') : undefined;
  // The baseline is scored first, as the demo's "before".
  let base: { ev: Evaluation; sampler: SampleOptions } | undefined;
  if (baseline) {
    const s = samplerFrom(values, baseline.config.mode);
    base = { ev: await evalWithProgress(baseline, 'ShapesEval baseline', samples, s), sampler: s };
  }
  const sampler = samplerFrom(values, model.config.mode);
  const ev = await evalWithProgress(model, 'ShapesEval', samples, sampler);
  const intervals = intervalsJson(scoreIntervals(ev.report.samples), false);
  // Paired: evaluate() gives both models the same items and seeds; pairedIntervals checks it.
  const cmp = base && { ...base, paired: pairedIntervals(base.ev.report.samples, ev.report.samples, INTERVALS) };
  const comparison = cmp
    ? { baseline: { file: baselineFile, ...scoresOf(cmp.ev.report), sampler: cmp.sampler, seconds: cmp.ev.seconds }, paired: intervalsJson(cmp.paired, true) }
    : {};
  if (out) {
    mkdir(out);
    writeJson(path.join(out, 'eval.json'), { ...ev.report, intervals, sampler, seconds: ev.seconds, ...comparison, ...(cmp ? { baseline_samples: cmp.ev.report.samples } : {}) });
    const md = cmp ? `${beforeAfterMarkdown(cmp.ev.report, ev.report, cmp.paired)}\n\n${reportMarkdown(ev.report, 'ShapesEval')}` : reportMarkdown(ev.report, 'ShapesEval');
    fs.writeFileSync(path.join(out, 'eval.md'), md + '\n');
    await evalGrid(path.join(out, 'samples.png'), ev, model.config.image_size, `ShapesEval overall ${ev.report.overall.toFixed(3)}`);
  }
  if (values.json) {
    const { samples: _omit, ...brief } = ev.report;
    console.log(JSON.stringify({ ...brief, intervals, sampler, seconds: ev.seconds, ...comparison }, null, 2));
  } else if (cmp) {
    console.log(`before: baseline ${baselineFile}; after: the model\n`);
    console.log(categoryTable(cmp.ev.report, ev.report, cmp.paired));
    console.log(`\n${singleObjectLine(cmp.paired)}`);
  } else {
    console.log(categoryTable(ev.report));
  }
}

export const PROBE: CommandSpec = {
  name: 'probe',
  usage: '[--model FILE] [options]',
  summary: 'measure what the RecA condition carries (norms, position share, linear probes)',
  description: `Measures the condition pathway on held-out shapes-world renders: the norms of
the understanding embeddings c, of the condition position rows and of the text
embeddings; the share of the generator's first normalised input that the slot
position explains; and linear probes (ridge, 70% of the images fit, 30% held
out) for a token's own grid cell and for its cell's colour.`,
  options: [
    ...MODEL_OPTIONS,
    { name: 'images', kind: 'int', value: 'N', min: 10, default: 300, help: 'eval renders to probe' },
    { name: 'seed', kind: 'int', value: 'S', min: 0, default: 0, help: 'seed of the renders' },
    THREADS,
    { ...JSON_FLAG, help: 'print the result as JSON' },
  ],
};

export async function cmdProbe(args: string[]): Promise<void> {
  const { values, help } = parseCommand(PROBE, args);
  if (help) return void console.log(renderHelp(PROBE));
  applyThreads(values);
  using model = await modelFrom(values);
  const r = await conditionProbe(model, { images: num(values, 'images') ?? 300, seed: num(values, 'seed') ?? 0 });
  if (values.json) return void console.log(JSON.stringify(r, null, 2));
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  console.log([
    `condition pathway of ${r.images} eval renders (${r.tokens} understanding tokens each)`,
    `norms: c ${r.norms.condition.toFixed(2)}, pos_cond ${r.norms.posCond.toFixed(3)}, text embedding ${r.norms.textEmbed.toFixed(3)}`,
    `position's share of the first block's normalised input: ${pct(r.positionVarianceShare)}`,
    `probe, grid cell from that input: ${pct(r.positionFromInput.accuracy)} (chance ${pct(r.positionFromInput.chance)})`,
    `probe, grid cell from c alone:   ${pct(r.positionFromCondition.accuracy)} (chance ${pct(r.positionFromCondition.chance)})`,
    `probe, cell colour from c:       ${pct(r.colourFromCondition.accuracy)} (majority ${pct(r.colourFromCondition.majority)}, ${r.colourFromCondition.classes} classes)`,
  ].join('\n'));
}
