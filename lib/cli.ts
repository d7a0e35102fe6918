#!/usr/bin/env node
/**
 * reca: the engine's command line.
 *   reca info [--json]
 *   reca bench --suite kernels [--json FILE] [--threads N] [--filter S] [--min-seconds X] [--no-peer]
 *   reca bench --suite step [--preset P] [--mode M] [--task T] [--batch B] [--steps N] [--json FILE]
 *   reca bench --suite all [--quick] [--threads N] [--json FILE] [--out DIR]
 *   reca debug-step --preset P --mode M --task T --seed S --out DIR [--batch B]
 *   reca demo | pretrain | train | eval | sample | reconstruct | embed  (lib/cli/jobs.ts)
 * Exit codes: 0 ok, 1 engine error (`reca: E_CODE: message`), 2 usage error.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { debugStep, info, RecaError, setThreads, type EngineInfo, type Mode, type Preset } from './index';
import { choice, MODES, number, parse, PRESETS, UsageError } from './cli/args';
import { BENCH_HELP, cmdBench } from './cli/bench';
import { JOB_HELP, JOBS } from './cli/jobs';

export { benchTable } from './cli/bench';

const HELP: Record<string, string> = {
  ...JOB_HELP,
  bench: BENCH_HELP,
  main: `Usage: reca <command> [options]

Commands:
  demo         the RecA experiment in miniature: ShapesEval before and after RecA post-training
  pretrain     train a base model from scratch (tokenizer, then text-to-image + image-to-text)
  train        train a model (RecA post-training by default) and save a resumable checkpoint
  eval         score a model with ShapesEval
  sample       generate images from prompts into a labelled PNG grid
  reconstruct  regenerate images from the model's own embeddings (what RecA trains)
  embed        write the understanding embeddings of images (safetensors)
  info         versions, CPU SIMD level and threads, CUDA build and devices
  bench        run a benchmark suite and print a table
  debug-step   dump one training step (params, batch, grads, result) for checking

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
        if (Object.hasOwn(JOBS, command)) {
          await JOBS[command](rest);
          return 0;
        }
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
