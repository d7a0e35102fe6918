/** `reca bench`: kernel and whole-step benchmarks. */
import * as fs from 'fs';
import * as os from 'os';

import {
  bench,
  getThreads,
  info,
  Model,
  RecaError,
  setThreads,
  Tensor,
  Trainer,
  type KernelBenchRecord,
  type Mode,
  type Preset,
  type Task,
} from '../index';
import { choice, fixed, MODES, number, parse, PRESETS, table, UsageError, writeJson, type Flags } from './args';

export const BENCH_HELP = `Usage: reca bench --suite kernels|step [options]

--suite kernels (the default) times the CPU kernels at the shapes of the small
preset, each matmul beside OpenBLAS when it is installed, and prints a table.
--suite step times whole training steps of a model (median after one warm-up step).

Options:
  --suite NAME         kernels | step
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
  --steps N            timed steps after the warm-up (default 5)`;

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
    new Set(['suite', 'json', 'threads', 'filter', 'min-seconds', 'preset', 'mode', 'task', 'batch', 'steps']),
    new Set(['help', 'no-peer']),
  );
  if (flags.has('help')) return void console.log(BENCH_HELP);
  if (positional.length) throw new UsageError(`bench takes no arguments, got '${positional[0]}'`);
  const suite = flags.get('suite') ?? 'kernels';
  if (suite === 'step') return benchStep(flags);
  if (suite !== 'kernels') throw new UsageError(`unknown suite '${String(suite)}' (available: kernels, step)`);
  for (const f of ['preset', 'mode', 'task', 'batch', 'steps']) {
    if (flags.has(f)) throw new UsageError(`option --${f} belongs to --suite step`);
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

/** Deterministic bench images: smooth gradients with a seeded offset per image. */
function benchImages(B: number, S: number): Uint8Array {
  const out = new Uint8Array(B * S * S * 3);
  for (let b = 0; b < B; b++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const i = ((b * S + y) * S + x) * 3;
        out[i] = (x * 255) / S + b * 37;
        out[i + 1] = (y * 255) / S + b * 53;
        out[i + 2] = ((x + y) * 127) / S + b * 91;
      }
    }
  }
  return out;
}

async function benchStep(flags: Flags): Promise<void> {
  for (const f of ['filter', 'min-seconds', 'no-peer']) {
    if (flags.has(f)) throw new UsageError(`option --${f} belongs to --suite kernels`);
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
  const threads0 = getThreads();
  if (threads !== undefined) setThreads(threads);
  try {
    using model = await Model.create({ preset, mode, seed: 0 });
    using trainer = new Trainer(model, { tasks: { [task]: 1 }, freeze: ['und', 'conn', 'vq'], seed: 0 });
    const S = model.config.image_size;
    using images = Tensor.from(benchImages(batch, S), [batch, S, S, 3]);
    const words = ['a red circle', 'two blue squares on white', 'a green triangle', 'a small yellow star'];
    const captions = task === 'reca' ? undefined : Array.from({ length: batch }, (_, i) => words[i % words.length]);
    await trainer.step({ images, captions }); // warm-up: arenas reach their size
    const seconds: number[] = [];
    for (let i = 0; i < steps; i++) seconds.push((await trainer.step({ images, captions })).seconds);
    seconds.sort((a, b) => a - b);
    const mid = seconds.length >> 1;
    const median = seconds.length % 2 ? seconds[mid] : (seconds[mid - 1] + seconds[mid]) / 2;
    const seqLen = model.sequenceLength(task);
    const i = info();
    const result = {
      preset,
      mode,
      task,
      batch,
      images_per_s: batch / median,
      tokens_per_s: (batch * seqLen) / median,
      step_seconds: median,
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
      steps,
      sequence_length: seqLen,
      parameters: model.parameterCount,
      step_seconds_all: seconds,
      machine: {
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        cores: os.cpus().length,
        isa: i.cpu.isa,
        threads: getThreads(),
        loadAverage: os.loadavg()[0],
        node: process.version,
      },
      engine: i.version,
      date: new Date().toISOString(),
    };
    console.log(
      `# reca bench --suite step: ${result.machine.cpuModel}, isa ${i.cpu.isa}, ${getThreads()} threads, load ${os.loadavg()[0].toFixed(1)}`,
    );
    console.log(
      table(
        [
          ['preset', 'mode', 'task', 'batch', 'seq', 'step ms', 'images/s', 'tokens/s', 'peak RSS MiB'],
          [
            preset, mode, task, String(batch), String(seqLen), fixed(median * 1e3, 1), fixed(result.images_per_s, 2),
            fixed(result.tokens_per_s, 0), fixed(result.peak_rss_bytes / 2 ** 20, 0),
          ],
        ],
        [false, false, false, true, true, true, true, true, true],
      ),
    );
    if (typeof jsonFile === 'string') {
      writeJson(jsonFile, result);
      console.log(`wrote ${jsonFile}`);
    }
  } finally {
    if (threads !== undefined) setThreads(threads0);
  }
}

