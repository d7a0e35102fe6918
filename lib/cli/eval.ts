/** `reca eval`: ShapesEval of a model. */
import * as fs from 'fs';
import * as path from 'path';

import { writeJson } from '../format';
import { reportMarkdown } from '../shapes/eval';
import { BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, scoreIntervals } from '../shapes/stats';
import { applyThreads, categoryTable, evalGrid, evalWithProgress, mkdir, modelFrom, samplerFrom } from './common';
import { JSON_FLAG, MODEL_OPTIONS, num, parseCommand, renderHelp, SAMPLER_OPTIONS, str, THREADS, type CommandSpec } from './options';

export const EVAL: CommandSpec = {
  name: 'eval',
  usage: '[--model FILE] [options]',
  summary: 'score a model with ShapesEval',
  description: 'Scores a model with ShapesEval and prints the per-category table.',
  options: [
    ...MODEL_OPTIONS,
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
  using model = await modelFrom(values);
  const sampler = samplerFrom(values, model.config.mode);
  const ev = await evalWithProgress(model, 'ShapesEval', samples, sampler);
  const intervals = { method: 'percentile bootstrap over prompts, stratified by category', level: 0.95, resamples: BOOTSTRAP_RESAMPLES, seed: BOOTSTRAP_SEED, ...scoreIntervals(ev.report.samples) };
  if (out) {
    mkdir(out);
    writeJson(path.join(out, 'eval.json'), { ...ev.report, intervals, sampler, seconds: ev.seconds });
    fs.writeFileSync(path.join(out, 'eval.md'), reportMarkdown(ev.report, 'ShapesEval') + '\n');
    await evalGrid(path.join(out, 'samples.png'), ev, model.config.image_size, `ShapesEval overall ${ev.report.overall.toFixed(3)}`);
  }
  if (values.json) {
    const { samples: _omit, ...brief } = ev.report;
    console.log(JSON.stringify({ ...brief, intervals, sampler, seconds: ev.seconds }, null, 2));
  } else {
    console.log(categoryTable(ev.report));
  }
}
