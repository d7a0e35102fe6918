/** Whole training steps and sampling, timed on our engine (shared by `--suite step` and `--suite all`). */
import * as os from 'os';

import { getThreads, info, setThreads } from '../engine';
import { Model, Trainer, type Config, type Mode, type ModelMemory, type Preset, type Task } from '../model';
import { Tensor } from '../tensor';
import { stepFlops } from './flops';

/** Deterministic bench images: smooth gradients with a seeded offset per image. */
export function benchImages(B: number, S: number): Uint8Array {
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

const WORDS = ['a red circle', 'two blue squares on white', 'a green triangle', 'a small yellow star'];

/** A fixed batch of prompts (the t2i captions and the generate prompts). */
export function benchPrompts(n: number): string[] {
  return Array.from({ length: n }, (_, i) => WORDS[i % WORDS.length]);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export interface StepBenchOptions {
  preset: Preset;
  mode: Mode;
  task: Task;
  batch: number;
  /** Timed steps after the warm-up step. */
  steps: number;
  /** Kernel threads for this run (restored after); default: the current count. */
  threads?: number;
  /** Single config fields over the preset (e.g. width, heads, image_size). */
  config?: Partial<Config>;
}

export interface StepBenchResult {
  preset: Preset;
  mode: Mode;
  task: Task;
  batch: number;
  threads: number;
  config_overrides: Partial<Config>;
  images_per_s: number;
  tokens_per_s: number;
  step_seconds: number;
  step_seconds_all: number[];
  steps: number;
  sequence_length: number;
  parameters: number;
  /** Analytic matmul-class FLOPs of one step (lib/bench/flops.ts). */
  step_flops: number;
  /** step_flops / step_seconds / 1e9. */
  achieved_gflops: number;
  /** Bytes the engine holds for the model and its trainer (params, grads, optimizer, activations). */
  memory: ModelMemory;
  /** Peak resident set of this process so far. */
  peak_rss_bytes: number;
  /** Resident set when this benchmark started (the runtime's own share, in a fresh process). */
  rss_at_start_bytes: number;
}

/** Times `steps` training steps (median) after one warm-up step that lets the arenas reach their size. */
export async function runStepBench(o: StepBenchOptions): Promise<StepBenchResult> {
  const rssAtStart = process.memoryUsage.rss();
  const threads0 = getThreads();
  if (o.threads !== undefined) setThreads(o.threads);
  try {
    using model = await Model.create({ preset: o.preset, mode: o.mode, config: o.config, seed: 0 });
    using trainer = new Trainer(model, { tasks: { [o.task]: 1 }, freeze: ['und', 'conn', 'vq'], seed: 0 });
    const S = model.config.image_size;
    using images = Tensor.from(benchImages(o.batch, S), [o.batch, S, S, 3]);
    const captions = o.task === 'reca' ? undefined : benchPrompts(o.batch);
    await trainer.step({ images, captions });
    const seconds: number[] = [];
    for (let i = 0; i < o.steps; i++) seconds.push((await trainer.step({ images, captions })).seconds);
    const step = median(seconds);
    const seqLen = model.sequenceLength(o.task);
    const flops = stepFlops(model.config, o.task, o.batch, ['gen']).total;
    return {
      preset: o.preset,
      mode: o.mode,
      task: o.task,
      batch: o.batch,
      threads: getThreads(),
      config_overrides: o.config ?? {},
      images_per_s: o.batch / step,
      tokens_per_s: (o.batch * seqLen) / step,
      step_seconds: step,
      step_seconds_all: seconds,
      steps: o.steps,
      sequence_length: seqLen,
      parameters: model.parameterCount,
      step_flops: flops,
      achieved_gflops: flops / step / 1e9,
      memory: model.memory(),
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
      rss_at_start_bytes: rssAtStart,
    };
  } finally {
    if (o.threads !== undefined) setThreads(threads0);
  }
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  isa: string;
  detectedIsa: string;
  hardwareThreads: number;
  threads: number;
  loadAverage: number;
  totalMemoryBytes: number;
  node: string;
  os: string;
  engine: string;
}

/** The machine a figure was measured on (recorded beside every result). */
export function machineInfo(): MachineInfo {
  const i = info();
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    isa: i.cpu.isa,
    detectedIsa: i.cpu.detectedIsa,
    hardwareThreads: i.cpu.hardwareThreads,
    threads: getThreads(),
    loadAverage: os.loadavg()[0],
    totalMemoryBytes: os.totalmem(),
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    engine: i.version,
  };
}
