#!/usr/bin/env node
/**
 * reca: the engine's command line.
 *   reca info [--json]
 *   reca bench --suite kernels [--json FILE] [--threads N] [--filter S] [--min-seconds X] [--no-peer]
 *   reca bench --suite step [--preset P] [--mode M] [--task T] [--batch B] [--steps N] [--json FILE]
 *   reca debug-step --preset P --mode M --task T --seed S --out DIR [--batch B]
 * Exit codes: 0 ok, 1 engine error (`reca: E_CODE: message`), 2 usage error.
 */
import * as fs from 'fs';
import * as os from 'os';

import * as path from 'path';

import {
  bench,
  debugStep,
  getThreads,
  info,
  Model,
  RecaError,
  setThreads,
  Tensor,
  Trainer,
  type EngineInfo,
  type KernelBenchRecord,
  type Mode,
  type Preset,
  type Task,
} from './index';

class UsageError extends Error {}

const HELP: Record<string, string> = {
  main: `Usage: reca <command> [options]

Commands:
  info        versions, CPU SIMD level and threads, CUDA build and devices
  bench       run a benchmark suite and print a table
  debug-step  dump one training step (params, batch, grads, result) for checking

Options:
  -h, --help     show help (also: reca <command> --help)
  -v, --version  print the version

Environment: RECA_BACKEND=auto|cpu|cuda, RECA_CPU_ISA=scalar|avx2|avx512,
RECA_ADDON_PATH=<file.node> (load that addon only).`,
  info: `Usage: reca info [--json]

Prints the engine version, the CPU SIMD level in use and the one detected,
the kernel threads, and what CUDA this build and machine offer.

Options:
  --json      print the same as JSON`,
  bench: `Usage: reca bench --suite kernels|step [options]

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
  --steps N            timed steps after the warm-up (default 5)`,
  'debug-step': `Usage: reca debug-step --preset P --mode M --task T --seed S --out DIR [options]

One training step of a freshly initialised model, every random draw recorded,
written to DIR: params.safetensors, batch.safetensors, grads.safetensors,
params_after.safetensors and result.json (SPEC §9). Check it with
  python3 tools/reference/verify_step.py DIR

Options:
  --preset P           tiny | small | base (default tiny)
  --mode M             ar | mask | flow (default mask)
  --task T             reca | t2i | i2t | vq (vq: the tokenizer loss; default reca)
  --seed S             seed of the weights, the batch and the draws (default 0)
  --out DIR            output directory (created when missing)
  --batch B            images (default 4)
  --lr X               learning rate of the update (default 0.001)
  --cond-dropout P     CFG dropout probability (default 0.1)
  --freeze G,G         groups left frozen (default vq; 'none' trains all)
  --threads N          CPU threads (the result does not depend on it)`,
};

interface Parsed {
  flags: Map<string, string | true>;
  positional: string[];
}

/** Parses `--flag`, `--flag value` and `--flag=value`; `valued` lists flags that take a value. */
function parse(args: string[], valued: Set<string>, boolean: Set<string>): Parsed {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '-h') {
      flags.set('help', true);
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      if (valued.has(name)) {
        const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
        if (value === undefined) throw new UsageError(`option --${name} needs a value`);
        flags.set(name, value);
      } else if (boolean.has(name) && eq < 0) {
        flags.set(name, true);
      } else {
        throw new UsageError(`unknown option ${arg.split('=')[0]}`);
      }
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  return { flags, positional };
}

function number(flags: Map<string, string | true>, name: string, integer: boolean): number | undefined {
  const raw = flags.get(name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw === true || raw.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`option --${name} needs ${integer ? 'an integer' : 'a number'}, got '${String(raw)}'`);
  }
  return n;
}

function table(rows: string[][], rightAligned: boolean[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (rightAligned[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd())
    .join('\n');
}

function formatInfo(i: EngineInfo): string {
  const cpu = i.cpu;
  const lines = [
    `reca-engine ${i.version} (Node ${process.version}, N-API ${i.napiVersion})`,
    `addon    ${i.addonPath}`,
    `backend  ${i.backend}`,
    `cpu      ${os.cpus()[0]?.model ?? 'unknown'}`,
    `         isa ${cpu.isa} (detected ${cpu.detectedIsa}), ${cpu.threads} threads (${cpu.hardwareThreads} hardware)`,
  ];
  if (cpu.isaWarning) lines.push(`         warning: ${cpu.isaWarning}`);
  const cuda = i.cuda;
  if (!cuda.compiled) {
    lines.push(`cuda     not compiled in: ${cuda.reason}`);
  } else {
    lines.push(
      `cuda     compiled for ${cuda.architectures || '?'}, runtime ${cuda.runtimeVersion}, driver ${cuda.driverVersion || 'none'}`,
    );
    for (const d of cuda.devices) {
      lines.push(
        `         [${d.index}] ${d.name}, compute ${d.computeCapability}, ${d.multiprocessors} SMs, ` +
          `${(d.totalMemory / 2 ** 30).toFixed(1)} GiB`,
      );
    }
    if (cuda.devices.length === 0) lines.push(`         no devices: ${cuda.reason}`);
  }
  const variant = i.cudaArtifact;
  if (variant && !variant.used && variant.reason !== 'not installed') {
    lines.push(`         CUDA variant not used (${variant.reason}): ${variant.path}`);
  }
  return lines.join('\n');
}

function cmdInfo(args: string[]): void {
  const { flags, positional } = parse(args, new Set(), new Set(['json', 'help']));
  if (flags.has('help')) return void console.log(HELP.info);
  if (positional.length) throw new UsageError(`info takes no arguments, got '${positional[0]}'`);
  const i = info();
  console.log(flags.has('json') ? JSON.stringify(i, null, 2) : formatInfo(i));
}

function fixed(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

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

async function cmdBench(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['suite', 'json', 'threads', 'filter', 'min-seconds', 'preset', 'mode', 'task', 'batch', 'steps']),
    new Set(['help', 'no-peer']),
  );
  if (flags.has('help')) return void console.log(HELP.bench);
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

function choice<T extends string>(flags: Map<string, string | true>, name: string, allowed: readonly T[], def: T): T {
  const v = flags.get(name);
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`option --${name} must be one of ${allowed.join(', ')}, got '${String(v)}'`);
  }
  return v as T;
}

function writeJson(file: string, doc: unknown): void {
  try {
    fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  } catch (e) {
    throw new RecaError('E_IO', `could not write ${file}: ${(e as Error).message}`);
  }
}

const PRESETS = ['tiny', 'small', 'base'] as const;
const MODES = ['ar', 'mask', 'flow'] as const;

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

async function benchStep(flags: Map<string, string | true>): Promise<void> {
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

async function cmdDebugStep(args: string[]): Promise<void> {
  const { flags, positional } = parse(
    args,
    new Set(['preset', 'mode', 'task', 'seed', 'out', 'batch', 'lr', 'cond-dropout', 'freeze', 'threads']),
    new Set(['help']),
  );
  if (flags.has('help')) return void console.log(HELP['debug-step']);
  if (positional.length) throw new UsageError(`debug-step takes no arguments, got '${positional[0]}'`);
  const out = flags.get('out');
  if (typeof out !== 'string' || out === '') throw new UsageError('debug-step needs --out DIR');
  const preset = choice<Preset>(flags, 'preset', PRESETS, 'tiny');
  const mode = choice<Mode>(flags, 'mode', MODES, 'mask');
  const task = choice(flags, 'task', ['reca', 't2i', 'i2t', 'vq'] as const, 'reca');
  const seed = number(flags, 'seed', true) ?? 0;
  if (seed < 0) throw new UsageError('option --seed needs a non-negative integer');
  const batch = number(flags, 'batch', true);
  const lr = number(flags, 'lr', false);
  const condDropout = number(flags, 'cond-dropout', false);
  const threads = number(flags, 'threads', true);
  const rawFreeze = flags.get('freeze');
  const freeze =
    typeof rawFreeze === 'string'
      ? rawFreeze === 'none'
        ? []
        : (rawFreeze.split(',').map((g) => g.trim()) as Array<'und' | 'conn' | 'vq' | 'gen'>)
      : undefined;
  try {
    fs.mkdirSync(out, { recursive: true });
  } catch (e) {
    throw new RecaError('E_IO', `could not create ${out}: ${(e as Error).message}`);
  }
  if (threads !== undefined) setThreads(threads);
  const r = await debugStep({ preset, mode, task, seed, batch, out, lr, condDropout, freeze });
  console.log(`${r.preset}/${r.mode}/${r.task} seed ${r.seed} batch ${r.batch}: loss ${r.loss.toPrecision(9)}, ` +
    `grad norm ${r.grad_norm.toPrecision(6)}, lr ${r.optimizer.lr}, ${r.trainable.length} trainable tensors`);
  for (const f of ['params.safetensors', 'batch.safetensors', 'grads.safetensors', 'params_after.safetensors', 'result.json']) {
    console.log(`wrote ${path.join(out, f)}`);
  }
}

function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../package.json') as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const [command, ...rest] = argv;
    switch (command) {
      case undefined:
        process.stderr.write(`${HELP.main}\n`);
        return 2;
      case '-h':
      case '--help':
      case 'help':
        console.log(HELP.main);
        return 0;
      case '-v':
      case '--version':
        console.log(version());
        return 0;
      case 'info':
        cmdInfo(rest);
        return 0;
      case 'bench':
        await cmdBench(rest);
        return 0;
      case 'debug-step':
        await cmdDebugStep(rest);
        return 0;
      default:
        throw new UsageError(
          command.startsWith('-') ? `unknown option ${command}` : `unknown command '${command}'`,
        );
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`reca: ${e.message} (see reca --help)\n`);
      return 2;
    }
    if (e instanceof RecaError) {
      process.stderr.write(`reca: ${e.code}: ${e.message}\n`);
      return 1;
    }
    const err = e as Error;
    process.stderr.write(`reca: E_INTERNAL: ${err?.message ?? String(e)}\n`);
    if (process.env.RECA_DEBUG) process.stderr.write(`${err?.stack ?? ''}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
