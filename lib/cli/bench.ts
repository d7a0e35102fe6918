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
import { runSuite } from '../bench/suite';
import { choice, MODES, number, parse, PRESETS, UsageError, writeJson, type Flags } from './args';

export const BENCH_HELP = `Usage: reca bench --suite kernels|step|all [options]

--suite kernels (the default) times the CPU kernels at the shapes of the small
preset, each matmul beside OpenBLAS when it is installed, and prints a table.
--suite step times whole training steps of a model (median after one warm-up step).
--suite all runs everything in one process: the memory-copy ceiling, the kernels
as fractions of the measured peaks, training steps (tiny, small; base when it
fits) in every mode, sampling, peak memory, cost growth with batch, image size,
width and threads, beside PyTorch (benchmarks/torch_step.py) and TF.js.

Options:
  --suite NAME         kernels | step | all
  --json FILE          also write the results as JSON to FILE
  --threads N          CPU threads (default: all hardware threads)
kernels:
  --filter S           only kernels whose name contains S
  --min-seconds X      seconds of timed work per kernel (default 0.25)
  --no-peer            skip the OpenBLAS comparison
step:
  --preset P           tiny | small | base (default small)
  --mode M             ar | mask | flow (default mask)
  --task T             reca | t2i | i2t (default reca)
  --batch B            images per step (default 8)
  --steps N            timed steps after the warm-up (default 5)
all:
  --quick              a smoke run: tiny preset, few points, one repeat
  --out DIR            directory of the SVG plots (default benchmarks/results)
                       (the JSON goes to --json FILE, default DIR/suite.json)`;

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
  const { flags, positional } = parse(
    args,
    new Set(['suite', 'json', 'threads', 'filter', 'min-seconds', 'preset', 'mode', 'task', 'batch', 'steps', 'out']),
    new Set(['help', 'no-peer', 'quick']),
  );
  if (flags.has('help')) return void console.log(BENCH_HELP);
  if (positional.length) throw new UsageError(`bench takes no arguments, got '${positional[0]}'`);
  const suite = flags.get('suite') ?? 'kernels';
  if (suite === 'step') return benchStep(flags);
  if (suite === 'all') return benchAll(flags);
  if (suite !== 'kernels') throw new UsageError(`unknown suite '${String(suite)}' (available: kernels, step, all)`);
  for (const f of ['preset', 'mode', 'task', 'batch', 'steps']) {
    if (flags.has(f)) throw new UsageError(`option --${f} belongs to --suite step`);
  }
  for (const f of ['quick', 'out']) {
    if (flags.has(f)) throw new UsageError(`option --${f} belongs to --suite all`);
  }
  const threads = number(flags, 'threads', true);
  const minSeconds = number(flags, 'min-seconds', false);
  const filter = flags.get('filter');
  const jsonFile = flags.get('json');

  const records = await bench.kernels({
    threads,
    minSeconds,
    filter: typeof filter === 'string' ? filter : undefined,
    withPeer: !flags.has('no-peer'),
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

async function benchStep(flags: Flags): Promise<void> {
  for (const f of ['filter', 'min-seconds', 'no-peer', 'quick', 'out']) {
    if (flags.has(f)) throw new UsageError(`option --${f} belongs to another suite`);
  }
  const preset = choice<Preset>(flags, 'preset', PRESETS, 'small');
  const mode = choice<Mode>(flags, 'mode', MODES, 'mask');
  const task = choice<Task>(flags, 'task', ['reca', 't2i', 'i2t'], 'reca');
  const batch = number(flags, 'batch', true) ?? 8;
  const steps = number(flags, 'steps', true) ?? 5;
  const threads = number(flags, 'threads', true);
  if (batch < 1) throw new UsageError('option --batch needs at least 1');
  if (steps < 1) throw new UsageError('option --steps needs at least 1');
  const jsonFile = flags.get('json');
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

async function benchAll(flags: Flags): Promise<void> {
  for (const f of ['filter', 'min-seconds', 'no-peer', 'preset', 'mode', 'task', 'batch', 'steps']) {
    if (flags.has(f)) throw new UsageError(`option --${f} does not apply to --suite all`);
  }
  const threads = number(flags, 'threads', true);
  if (threads !== undefined && threads < 1) throw new UsageError('option --threads needs at least 1');
  const json = flags.get('json');
  const out = flags.get('out');
  await runSuite({
    threads,
    quick: flags.has('quick'),
    out: typeof out === 'string' ? out : path.join('benchmarks', 'results'),
    json: typeof json === 'string' ? json : undefined,
  });
}
