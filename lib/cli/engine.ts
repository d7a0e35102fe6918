/** `reca info` (versions, SIMD level, CUDA) and `reca debug-step` (one step dumped for checking). */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { debugStep } from '../debug_step';
import { launchedRanks } from '../distributed';
import { info, setThreads, type EngineInfo } from '../engine';
import { RecaError } from '../errors';
import type { Mode, Preset } from '../model';
import { JSON_FLAG, MODE_NAMES, num, parseCommand, PRESET_NAMES, renderHelp, required, str, type CommandSpec } from './options';

export const INFO: CommandSpec = {
  name: 'info',
  usage: '[--json]',
  summary: 'versions, CPU SIMD level and threads, CUDA build and devices',
  description: `Prints the engine version, the CPU SIMD level in use and the one detected,
the kernel threads, and what CUDA this build and machine offer. --json adds
every option table with its defaults (schema).`,
  options: [{ ...JSON_FLAG, help: 'print the same as JSON' }],
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
  lines.push(
    cpu.bf16Matmul
      ? '         bf16 matmuls available (AVX512_BF16): trainer matmulPrecision bf16'
      : `         bf16 matmuls unavailable: ${cpu.bf16MatmulReason}`,
  );
  const cuda = i.cuda;
  if (!cuda.compiled) {
    lines.push(`cuda     not compiled in: ${cuda.reason}`);
  } else {
    lines.push(`cuda     compiled for ${cuda.architectures || '?'}, runtime ${cuda.runtimeVersion}, driver ${cuda.driverVersion || 'none'}`);
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
  const mpi = i.distributed.mpi;
  lines.push(mpi.available
    ? `mpi      ${mpi.library}${mpi.launched ? `, started by mpirun (${launchedRanks()} ranks)` : ''}: mpirun -np N reca train ...`
    : `mpi      not available (${mpi.error}): one process only`);
  const nccl = i.distributed.nccl;
  lines.push(nccl.available
    ? `nccl     ${nccl.library} (${nccl.version}): CUDA models of several ranks reduce on the GPUs`
    : `nccl     not available (${nccl.error}): CUDA models of several ranks reduce through host memory`);
  return lines.join('\n');
}

export function cmdInfo(args: string[]): void {
  const { values, help } = parseCommand(INFO, args);
  if (help) return void console.log(renderHelp(INFO));
  const i = info();
  console.log(values.json ? JSON.stringify(i, null, 2) : formatInfo(i));
}

export const DEBUG_STEP: CommandSpec = {
  name: 'debug-step',
  usage: '--out DIR [options]',
  summary: 'dump one training step (params, batch, grads, result) for checking',
  description: `One training step of a freshly initialised model, every random draw recorded,
written to DIR: params.safetensors, batch.safetensors, grads.safetensors,
params_after.safetensors and result.json (SPEC §9). Check it with
  python3 tools/reference/verify_step.py DIR`,
  options: [
    { name: 'preset', kind: 'choice', value: 'P', choices: PRESET_NAMES, default: 'tiny', help: 'size preset' },
    { name: 'mode', kind: 'choice', value: 'M', choices: MODE_NAMES, default: 'mask', help: 'generator family' },
    { name: 'task', kind: 'choice', value: 'T', choices: ['reca', 't2i', 'i2t', 'vq'], default: 'reca', help: 'task (vq: the tokenizer loss)' },
    { name: 'seed', kind: 'int', value: 'S', min: 0, default: 0, help: 'seed of the weights, the batch and the draws' },
    { name: 'out', kind: 'string', value: 'DIR', help: 'output directory (created when missing)' },
    { name: 'batch', kind: 'int', value: 'B', min: 1, default: 4, help: 'images' },
    { name: 'lr', kind: 'number', value: 'X', default: 0.001, help: 'learning rate of the update' },
    { name: 'cond-dropout', kind: 'number', value: 'P', default: 0.1, help: 'CFG dropout probability' },
    { name: 'freeze', kind: 'string', value: 'G,G', default: "vq; 'none' trains all", help: 'groups left frozen' },
    { name: 'threads', kind: 'int', value: 'N', min: 1, help: 'CPU threads (the result does not depend on it)' },
  ],
};

export async function cmdDebugStep(args: string[]): Promise<void> {
  const { values, help } = parseCommand(DEBUG_STEP, args);
  if (help) return void console.log(renderHelp(DEBUG_STEP));
  const out = required(values, 'out', 'debug-step', 'DIR');
  const rawFreeze = str(values, 'freeze');
  const freeze =
    rawFreeze === undefined ? undefined : rawFreeze === 'none' ? [] : (rawFreeze.split(',').map((g) => g.trim()) as Array<'und' | 'conn' | 'vq' | 'gen'>);
  try {
    fs.mkdirSync(out, { recursive: true });
  } catch (e) {
    throw new RecaError('E_IO', `could not create ${out}: ${(e as Error).message}`);
  }
  const threads = num(values, 'threads');
  if (threads !== undefined) setThreads(threads);
  const r = await debugStep({
    preset: (str(values, 'preset') ?? 'tiny') as Preset,
    mode: (str(values, 'mode') ?? 'mask') as Mode,
    task: (str(values, 'task') ?? 'reca') as 'reca' | 't2i' | 'i2t' | 'vq',
    seed: num(values, 'seed') ?? 0,
    batch: num(values, 'batch'),
    out,
    lr: num(values, 'lr'),
    condDropout: num(values, 'cond-dropout'),
    freeze,
  });
  console.log(`${r.preset}/${r.mode}/${r.task} seed ${r.seed} batch ${r.batch}: loss ${r.loss.toPrecision(9)}, ` +
    `grad norm ${r.grad_norm.toPrecision(6)}, lr ${r.optimizer.lr}, ${r.trainable.length} trainable tensors`);
  for (const f of ['params.safetensors', 'batch.safetensors', 'grads.safetensors', 'params_after.safetensors', 'result.json']) {
    console.log(`wrote ${path.join(out, f)}`);
  }
}
