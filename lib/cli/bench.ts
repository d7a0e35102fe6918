/** `reca bench`: kernel, whole-step and all-in-one benchmark suites. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { bench } from '../bench/kernels';
import { info } from '../engine';
import { RecaError } from '../errors';
import { fixed, table } from '../format';
import type { Mode, Preset, Task } from '../model';
import type { KernelBenchRecord } from '../native';
import { machineInfo, runStepBench } from '../bench/step';
import { runSampling, samplingTable } from '../bench/sampling';
import { runSuite } from '../bench/suite';
import { torchUnavailable } from '../bench/torch_peer';
import { fieldDefault } from '../generated/schema';
import { writeJson } from '../format';
import { MODE_NAMES, num, parseCommand, PRESET_NAMES, renderHelp, str, UsageError, type CommandSpec, type Values } from './options';

export const BENCH: CommandSpec = {
  name: 'bench',
  usage: '--suite kernels|step|sampling|all [options]',
  summary: 'run a benchmark suite and print a table',
  description: `--suite kernels (the default) times the CPU kernels at the shapes of the small
preset, each matmul beside OpenBLAS when it is installed, and prints a table.
--suite step times whole training steps of a model (median after one warm-up step).
--suite sampling times text-to-image sampling (model.generate) of the shipped base
of the preset in each mode (a fresh model where none ships), with and without guidance, alternated point by point with PyTorch's
samplers on the same weights (benchmarks/torch_sample.py), and checks that both
drew the same samples.
--suite all runs everything in one process: the memory-copy ceiling, the kernels
as fractions of the measured peaks, training steps (tiny, small; base when it
fits) in every mode, sampling, peak memory, cost growth with batch, image size,
width and threads, beside PyTorch (benchmarks/torch_step.py) and TF.js.`,
  options: [
    { name: 'suite', kind: 'choice', value: 'NAME', choices: ['kernels', 'step', 'sampling', 'all'], default: 'kernels', help: 'which suite' },
    { name: 'json', kind: 'string', value: 'FILE', help: 'also write the results as JSON to FILE' },
    { name: 'threads', kind: 'int', value: 'N', min: 1, help: 'CPU threads (default: all hardware threads)' },
    { name: 'filter', kind: 'string', value: 'S', help: 'kernels: only kernels whose name contains S' },
    { name: 'min-seconds', kind: 'number', value: 'X', default: 0.25, help: 'kernels: seconds of timed work per kernel' },
    { name: 'no-peer', kind: 'flag', help: 'kernels: skip the OpenBLAS comparison; sampling: skip PyTorch' },
    { name: 'preset', kind: 'choice', value: 'P', choices: PRESET_NAMES, default: 'small', help: 'step, sampling: size preset' },
    { name: 'mode', kind: 'choice', value: 'M', choices: MODE_NAMES, default: 'step: mask; sampling: every mode', help: 'step, sampling: generator family' },
    { name: 'task', kind: 'choice', value: 'T', choices: ['reca', 't2i', 'i2t'], default: 'reca', help: 'step: task' },
    { name: 'batch', kind: 'int', value: 'B', min: 1, default: 8, help: 'step: images per step; sampling: prompts per call' },
    { name: 'cfg', kind: 'number', value: 'X', default: '1 and 3', help: 'sampling: classifier-free guidance scale' },
    { name: 'sample-steps', kind: 'int', value: 'N', min: 1, default: (s) => fieldDefault(s.sampler, 'steps') as number, help: 'sampling: mask MaskGIT steps, flow Euler steps (ar: one per image token)' },
    { name: 'rounds', kind: 'int', value: 'N', min: 1, default: 3, help: 'sampling: timed calls per point, ours and PyTorch alternated' },
    { name: 'steps', kind: 'int', value: 'N', min: 1, default: 5, help: 'step: timed steps after the warm-up' },
    { name: 'quick', kind: 'flag', help: 'all: a smoke run (tiny preset, few points, one repeat)' },
    { name: 'out', kind: 'string', value: 'DIR', default: 'benchmarks/results', help: 'all: directory of the SVG plots (the JSON goes to --json FILE, default DIR/suite.json)' },
  ],
};

/** Options that belong to one suite only. */
const SUITE_OF: Record<string, readonly string[]> = {
  filter: ['kernels'], 'min-seconds': ['kernels'], 'no-peer': ['kernels', 'sampling'],
  preset: ['step', 'sampling'], mode: ['step', 'sampling'], task: ['step'], batch: ['step', 'sampling'], steps: ['step'],
  cfg: ['sampling'], 'sample-steps': ['sampling'], rounds: ['sampling'],
  quick: ['all'], out: ['all'],
};

export function benchTable(records: KernelBenchRecord[]): string {
  const rows = [['name', 'shape', 'isa', 'threads', 'ms', 'GFLOP/s', 'GB/s', 'peer GFLOP/s', 'ratio']];
  for (const r of records) {
    rows.push([
      r.name,
      r.shape.join('x'),
      r.isa,
      String(r.threads),
      fixed(r.seconds * 1e3, 3),
      fixed(r.gflops, 1),
      fixed(r.gbps, 1),
      r.peer ? fixed(r.peer.gflops, 1) : '-',
      r.ratio !== undefined && r.peer ? fixed(r.ratio, 2) : '-',
    ]);
  }
  return table(rows, [false, false, false, true, true, true, true, true, true]);
}

export async function cmdBench(args: string[]): Promise<void> {
  const { values, help } = parseCommand(BENCH, args);
  if (help) return void console.log(renderHelp(BENCH));
  const suite = str(values, 'suite') ?? 'kernels';
  for (const [name, owners] of Object.entries(SUITE_OF)) {
    if (values[name] !== undefined && !owners.includes(suite)) {
      throw new UsageError(`option --${name} belongs to --suite ${owners.join(' or ')}`);
    }
  }
  if (suite === 'step') return benchStep(values);
  if (suite === 'sampling') return benchSampling(values);
  if (suite === 'all') return benchAll(values);
  const threads = num(values, 'threads');
  const minSeconds = num(values, 'min-seconds');
  const filter = str(values, 'filter');
  const jsonFile = str(values, 'json');

  const records = await bench.kernels({
    threads,
    minSeconds,
    filter,
    withPeer: values['no-peer'] !== true,
  });
  const i = info();
  console.log(`# reca bench --suite kernels: ${os.cpus()[0]?.model ?? 'unknown cpu'}, isa ${i.cpu.isa}`);
  console.log(records.length ? benchTable(records) : '(no kernel matched the filter)');
  if (typeof jsonFile === 'string') {
    const machine = {
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      isa: i.cpu.isa,
      node: process.version,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    };
    const doc = { engine: i.version, date: new Date().toISOString(), machine, records };
    try {
      fs.writeFileSync(jsonFile, JSON.stringify(doc, null, 2) + '\n');
    } catch (e) {
      throw new RecaError('E_IO', `could not write ${jsonFile}: ${(e as Error).message}`);
    }
    console.log(`wrote ${jsonFile}`);
  }
}

async function benchStep(values: Values): Promise<void> {
  const preset = (str(values, 'preset') ?? 'small') as Preset;
  const mode = (str(values, 'mode') ?? 'mask') as Mode;
  const task = (str(values, 'task') ?? 'reca') as Task;
  const batch = num(values, 'batch') ?? 8;
  const steps = num(values, 'steps') ?? 5;
  const threads = num(values, 'threads');
  const jsonFile = str(values, 'json');
  const r = await runStepBench({ preset, mode, task, batch, steps, threads });
  const machine = { ...machineInfo(), threads: r.threads };
  const result = { ...r, machine, engine: machine.engine, date: new Date().toISOString() };
  console.log(
    `# reca bench --suite step: ${machine.cpuModel}, isa ${machine.isa}, ${r.threads} threads, load ${os.loadavg()[0].toFixed(1)}`,
  );
  console.log(
    table(
      [
        ['preset', 'mode', 'task', 'batch', 'seq', 'step ms', 'images/s', 'tokens/s', 'GFLOP/s', 'peak RSS MiB'],
        [
          preset, mode, task, String(batch), String(r.sequence_length), fixed(r.step_seconds * 1e3, 1), fixed(r.images_per_s, 2),
          fixed(r.tokens_per_s, 0), fixed(r.achieved_gflops, 1), fixed(r.peak_rss_bytes / 2 ** 20, 0),
        ],
      ],
      [false, false, false, true, true, true, true, true, true, true],
    ),
  );
  if (typeof jsonFile === 'string') {
    writeJson(jsonFile, result);
    console.log(`wrote ${jsonFile}`);
  }
}

async function benchSampling(values: Values): Promise<void> {
  const preset = (str(values, 'preset') ?? 'small') as Preset;
  const mode = str(values, 'mode') as Mode | undefined;
  const cfg = num(values, 'cfg');
  const threads = num(values, 'threads') ?? os.availableParallelism();
  const jsonFile = str(values, 'json');
  const noTorch = values['no-peer'] === true ? 'not asked for (--no-peer)' : torchUnavailable();
  const machine = { ...machineInfo(), threads };
  console.log(`# reca bench --suite sampling: ${machine.cpuModel}, isa ${machine.isa}, ${threads} threads, load ${os.loadavg()[0].toFixed(2)}`);
  if (noTorch) console.log(`PyTorch peer skipped: ${noTorch}`);
  const rows = await runSampling({
    preset,
    modes: mode ? [mode] : (MODE_NAMES as Mode[]),
    cfgs: cfg !== undefined ? [cfg] : [1, 3],
    batch: num(values, 'batch') ?? 8,
    threads: [threads],
    rounds: num(values, 'rounds') ?? 3,
    steps: num(values, 'sample-steps'),
    withPeer: !noTorch,
    log: (line) => console.log(line),
  });
  console.log(samplingTable(rows));
  console.log(`load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at the end`);
  if (typeof jsonFile === 'string') {
    writeJson(jsonFile, { suite: 'sampling', date: new Date().toISOString(), machine, engine: machine.engine, skipped: noTorch, results: rows });
    console.log(`wrote ${jsonFile}`);
  }
}

async function benchAll(values: Values): Promise<void> {
  const threads = num(values, 'threads');
  const json = str(values, 'json');
  const out = str(values, 'out');
  await runSuite({
    threads,
    quick: values.quick === true,
    out: typeof out === 'string' ? out : path.join('benchmarks', 'results'),
    json: typeof json === 'string' ? json : undefined,
  });
}
