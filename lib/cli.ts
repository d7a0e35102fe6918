#!/usr/bin/env node
/**
 * reca: the engine's command line.
 *   reca info [--json]
 *   reca bench --suite kernels [--json FILE] [--threads N] [--filter S] [--min-seconds X] [--no-peer]
 * Exit codes: 0 ok, 1 engine error (`reca: E_CODE: message`), 2 usage error.
 */
import * as fs from 'fs';
import * as os from 'os';

import { bench, info, RecaError, type EngineInfo, type KernelBenchRecord } from './index';

class UsageError extends Error {}

const HELP: Record<string, string> = {
  main: `Usage: reca <command> [options]

Commands:
  info     versions, CPU SIMD level and threads, CUDA build and devices
  bench    run a benchmark suite and print a table

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
  bench: `Usage: reca bench --suite kernels [options]

Times the CPU kernels at the shapes of the small preset, each matmul beside
OpenBLAS when it is installed, and prints a table.

Options:
  --suite NAME         benchmark suite (only: kernels; the default)
  --json FILE          also write {machine, records} as JSON to FILE
  --threads N          CPU threads (default: all hardware threads)
  --filter S           only kernels whose name contains S
  --min-seconds X      seconds of timed work per kernel (default 0.25)
  --no-peer            skip the OpenBLAS comparison`,
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
    new Set(['suite', 'json', 'threads', 'filter', 'min-seconds']),
    new Set(['help', 'no-peer']),
  );
  if (flags.has('help')) return void console.log(HELP.bench);
  if (positional.length) throw new UsageError(`bench takes no arguments, got '${positional[0]}'`);
  const suite = flags.get('suite') ?? 'kernels';
  if (suite !== 'kernels') throw new UsageError(`unknown suite '${String(suite)}' (available: kernels)`);
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
