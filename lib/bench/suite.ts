/**
 * `reca bench --suite all`: every benchmark in one process and one run, each
 * beside its peer or ceiling measured in the same run — kernels vs the
 * OpenBLAS SGEMM peak and the memory-copy bandwidth, whole steps and sampling,
 * memory against the engine's own accounting, cost growth with batch, image
 * size, width and threads, PyTorch (the reference model) and TF.js (the same
 * step) — written as tables, one JSON document and two SVG plots.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { getThreads, setThreads } from '../engine';
import { RecaError } from '../errors';
import { fixed, table } from '../format';
import { Model, type Config, type Mode, type ModelMemory, type Preset, type Task } from '../model';
import type { KernelBenchRecord } from '../native';
import { stepFlops } from './flops';
import { bench } from './kernels';
import { measureMemcopy, type MemcopyResult } from './memcopy';
import { linePlotSvg, type Series } from './plot';
import { runSampling, samplingTable, type SampleBenchResult } from './sampling';
import { machineInfo, median, type MachineInfo, runStepBench, type StepBenchResult, type StepBenchOptions } from './step';
import { TorchPeer, torchUnavailable, type TorchResult } from './torch_peer';
import { benchTfjsStep, loadTf, type TfjsBackend, type TfjsStepResult } from './tfjs_step';

export interface SuiteOptions {
  /** Kernel threads for every section (default: all hardware threads). */
  threads?: number;
  /** A smoke run: tiny preset, few points, one repeat (under a minute). */
  quick?: boolean;
  /** Directory of the SVG plots (and of suite.json when `json` is not given). */
  out: string;
  /** The JSON document's path (default: OUT/suite.json). */
  json?: string;
  /** Where progress and tables go (default console.log). */
  log?: (line: string) => void;
}

const MODES: readonly Mode[] = ['ar', 'mask', 'flow'];
const STEP_TASKS: readonly Task[] = ['reca', 't2i'];
/** A combination (warm-up + timed steps) estimated to take longer than this is skipped. */
const STEP_BUDGET_SECONDS = 60;
const CLI_PATH = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');

export interface KernelRecordWithPeak extends KernelBenchRecord {
  /** Roofline side: FLOPs per byte above the machine balance (peak / copy bandwidth) is compute-bound. */
  bound: 'compute' | 'memory';
  /** GFLOP/s over the matmul peak (compute-bound) or GB/s over the copy bandwidth (memory-bound). */
  fraction_of_peak: number;
}

/** Our step and PyTorch's timed back to back, `rounds` times; ratio = median of PyTorch / ours per round. */
export interface Paired {
  rounds: number;
  ours_step_seconds: number[];
  pytorch_step_seconds: number[];
  ratio: number;
}

export interface GrowthPoint {
  axis: 'batch' | 'image_size' | 'width' | 'threads';
  x: number;
  ours: StepBenchResult;
  pytorch?: TorchResult;
  paired?: Paired;
}

export type { TorchResult } from './torch_peer';

export interface SuiteDocument {
  suite: 'all';
  quick: boolean;
  date: string;
  seconds: number;
  machine: MachineInfo;
  threads: number;
  peers: { pytorch: string | null; tfjs: string | null; openblas: boolean; skipped: string[] };
  memcopy: MemcopyResult[];
  peak: { matmul_gflops: number; matmul_source: string; copy_gbps: number };
  kernels: KernelRecordWithPeak[];
  /**
   * The kernels again on the AVX2 path (RECA_CPU_ISA=avx2, its own process, OpenBLAS on its
   * AVX2 kernels) when the native path is wider; null when the native path is AVX2 or lower.
   */
  kernels_avx2: KernelBenchRecord[] | null;
  steps: Array<StepBenchResult & { fraction_of_matmul_peak: number; pytorch?: TorchResult; paired?: Paired }>;
  inference: SampleBenchResult[];
  memory: Array<{
    preset: Preset;
    peak_rss_bytes: number;
    /** RSS before the model existed: the runtime and the addon. */
    rss_at_start_bytes: number;
    theoretical_bytes: number;
    memory: ModelMemory;
    /** (peak RSS − RSS at start) / theoretical bytes. */
    growth_over_theoretical: number;
    /** PyTorch on the same step in its own process (null when the peer is missing). */
    pytorch: { peak_rss_bytes: number; rss_at_start_bytes: number } | null;
  }>;
  growth: GrowthPoint[];
  tfjs: Array<TfjsStepResult & { ours_images_per_s?: number }>;
  plots: string[];
  notes: string[];
}

/** The result of the round whose step time is the median of the rounds. */
function medianRound<T extends { step_seconds: number }>(rs: T[]): T {
  const sorted = [...rs].sort((x, y) => x.step_seconds - y.step_seconds);
  return sorted[(sorted.length - 1) >> 1];
}

/**
 * Our step and PyTorch's on the same point, alternated `rounds` times (one PyTorch
 * process per thread count, started on first use). PyTorch's step time swings by up
 * to 2x from step to step here (0.29-0.59 s for small mask/reca), so it gets at
 * least 8 timed steps per round where ours get `o.steps`.
 */
async function pairedStep(
  o: StepBenchOptions & { threads: number },
  rounds: number,
  peers: Map<number, TorchPeer> | null,
  peerSteps: number,
): Promise<{ ours: StepBenchResult; pytorch?: TorchResult; paired?: Paired }> {
  const ours: StepBenchResult[] = [];
  const theirs: TorchResult[] = [];
  for (let r = 0; r < rounds; ++r) {
    ours.push(await runStepBench(o));
    if (peers) {
      let peer = peers.get(o.threads);
      if (!peer) peers.set(o.threads, (peer = new TorchPeer()));
      theirs.push(await peer.run({
        preset: o.preset, mode: o.mode, task: o.task, batch: o.batch, threads: o.threads, steps: peerSteps, config: o.config,
      }));
    }
  }
  if (!theirs.length) return { ours: medianRound(ours) };
  return {
    ours: medianRound(ours),
    pytorch: medianRound(theirs),
    paired: {
      rounds,
      ours_step_seconds: ours.map((x) => x.step_seconds),
      pytorch_step_seconds: theirs.map((x) => x.step_seconds),
      ratio: median(theirs.map((t, i) => t.step_seconds / ours[i].step_seconds)),
    },
  };
}

/** PyTorch's peak RSS growth on the same step, in a peer process of its own so peaks do not mix. */
async function torchMemory(preset: Preset, threads: number): Promise<{ peak_rss_bytes: number; rss_at_start_bytes: number } | null> {
  const peer = new TorchPeer();
  try {
    const p = await peer.run({ preset, mode: 'mask', task: 'reca', batch: 8, threads, steps: 1 });
    return p.peak_rss_bytes && p.rss_at_start_bytes ? { peak_rss_bytes: p.peak_rss_bytes, rss_at_start_bytes: p.rss_at_start_bytes } : null;
  } catch {
    return null;
  } finally {
    peer.close();
  }
}

/**
 * The kernel suite on the AVX2 path in a fresh process: RECA_CPU_ISA picks the path at
 * start-up, and the OpenBLAS peer, which chooses its kernel set once when it loads,
 * then loads its AVX2 (Haswell) set to match (native/bench/openblas_peer.h).
 */
function kernelsOnAvx2(threads: number, minSeconds: number): KernelBenchRecord[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-avx2-'));
  try {
    const file = path.join(dir, 'kernels.json');
    const r = spawnSync(
      process.execPath,
      [CLI_PATH, 'bench', '--suite', 'kernels', '--threads', String(threads), '--min-seconds', String(minSeconds), '--json', file],
      { encoding: 'utf8', timeout: 1800e3, env: { ...process.env, RECA_CPU_ISA: 'avx2' } },
    );
    if (r.status !== 0 || !fs.existsSync(file)) {
      throw new RecaError('E_IO', `the AVX2 kernel run failed: ${(r.stderr || r.error?.message || '').trim()}`);
    }
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { records: KernelBenchRecord[] }).records;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Peak RSS and the engine's accounting of one preset's step, in a fresh process so peaks do not mix. */
async function memoryOfPreset(preset: Preset, threads: number, withTorch: boolean): Promise<SuiteDocument['memory'][number]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-mem-'));
  try {
    const file = path.join(dir, 'step.json');
    const r = spawnSync(
      process.execPath,
      [CLI_PATH, 'bench', '--suite', 'step', '--preset', preset, '--mode', 'mask', '--task', 'reca', '--batch', '8',
        '--steps', '1', '--threads', String(threads), '--json', file],
      { encoding: 'utf8', timeout: 1800e3 },
    );
    if (r.status !== 0 || !fs.existsSync(file)) {
      throw new RecaError('E_IO', `the memory run of preset ${preset} failed: ${(r.stderr || r.error?.message || '').trim()}`);
    }
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as StepBenchResult;
    const m = s.memory;
    const theoretical = m.params + m.grads + m.optimizer + m.activations;
    return {
      preset,
      peak_rss_bytes: s.peak_rss_bytes,
      rss_at_start_bytes: s.rss_at_start_bytes,
      theoretical_bytes: theoretical,
      memory: m,
      growth_over_theoretical: (s.peak_rss_bytes - s.rss_at_start_bytes) / theoretical,
      pytorch: withTorch ? await torchMemory(preset, threads) : null,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const MiB = 2 ** 20;

export async function runSuite(o: SuiteOptions): Promise<SuiteDocument> {
  const log = o.log ?? ((line: string) => console.log(line));
  const quick = o.quick ?? false;
  const threads = o.threads ?? os.availableParallelism();
  const t0 = Date.now();
  const notes: string[] = [];
  const skipped: string[] = [];
  const threads0 = getThreads();
  let peers: Map<number, TorchPeer> | null = null;
  setThreads(threads);
  try {
    const machine = machineInfo();
    log(`# reca bench --suite all${quick ? ' --quick' : ''}: ${machine.cpuModel}, isa ${machine.isa}, ` +
      `${threads} threads, load ${os.loadavg()[0].toFixed(1)}`);
    if (os.loadavg()[0] > 0.5) {
      notes.push(`load average ${os.loadavg()[0].toFixed(1)} at the start: other work shared the CPUs, figures are not clean`);
    }

    // -- memory-copy ceiling
    const copyBytes = quick ? 32 * MiB : 256 * MiB;
    const copyRounds = quick ? 1 : 5;
    const memcopy: MemcopyResult[] = [await measureMemcopy(1, copyBytes, copyRounds)];
    if (threads > 1) memcopy.push(await measureMemcopy(threads, copyBytes, copyRounds));
    log('\n## memory copy (TypedArray.set, read + write bytes)');
    log(table([['threads', 'MiB', 'GB/s'], ...memcopy.map((m) => [String(m.threads), fixed(m.bytes / MiB, 0), fixed(m.gbps, 1)])],
      [true, true, true]));
    const copyGbps = Math.max(...memcopy.map((m) => m.gbps));

    // -- kernels, each as a fraction of the measured peak
    const records = await bench.kernels({ threads, minSeconds: quick ? 0.005 : 0.25, withPeer: true });
    const blas = records.filter((r) => r.peer?.name === 'openblas').map((r) => r.peer!.gflops);
    // fp32 SGEMMs only: the bf16 records (matmul_bf16.*) count bf16 multiply-adds.
    const ourMatmul = records.filter((r) => r.name.startsWith('matmul.')).map((r) => r.gflops);
    const peakGflops = blas.length ? Math.max(...blas) : Math.max(0, ...ourMatmul);
    const peakSource = blas.length ? 'best OpenBLAS SGEMM of this run' : 'best of our matmuls (OpenBLAS not found)';
    if (!blas.length) skipped.push('OpenBLAS: not installed, the matmul peak is our own best matmul');
    const balance = peakGflops / copyGbps;
    const kernels: KernelRecordWithPeak[] = records.map((r) => {
      const intensity = r.gbps > 0 ? r.gflops / r.gbps : Infinity;
      const bound = intensity >= balance ? 'compute' : 'memory';
      return { ...r, bound, fraction_of_peak: bound === 'compute' ? r.gflops / peakGflops : r.gbps / copyGbps };
    });
    log(`\n## kernels (peak: ${fixed(peakGflops, 1)} GFLOP/s, ${peakSource}; copy ${fixed(copyGbps, 1)} GB/s)`);
    log(table(
      [['name', 'shape', 'ms', 'GFLOP/s', 'GB/s', 'peer GFLOP/s', 'ratio', 'bound', 'of peak'],
        ...kernels.map((r) => [r.name, r.shape.join('x'), fixed(r.seconds * 1e3, 3), fixed(r.gflops, 1), fixed(r.gbps, 1),
          r.peer ? fixed(r.peer.gflops, 1) : '-', r.ratio !== undefined && r.peer ? fixed(r.ratio, 2) : '-', r.bound,
          fixed(r.fraction_of_peak, 2)])],
      [false, false, true, true, true, true, true, false, true],
    ));

    // -- the same kernels on the AVX2 path, when the native one is wider
    const kernelsAvx2 = machine.isa === 'avx512' ? kernelsOnAvx2(threads, quick ? 0.005 : 0.25) : null;
    if (kernelsAvx2) {
      log('\n## kernels on the AVX2 path (RECA_CPU_ISA=avx2, own process; OpenBLAS on its AVX2 kernels; ratio = median of alternated pairs [quartiles])');
      log(table(
        [['name', 'shape', 'ms', 'GFLOP/s', 'peer', 'peer GFLOP/s', 'ratio', 'spread'],
          ...kernelsAvx2.map((r) => [r.name, r.shape.join('x'), fixed(r.seconds * 1e3, 3), fixed(r.gflops, 1), r.peer?.name ?? '-',
            r.peer ? fixed(r.peer.gflops, 1) : '-', r.ratio !== undefined && r.peer ? fixed(r.ratio, 2) : '-',
            r.ratioSpread ? `${fixed(r.ratioSpread[0], 2)}–${fixed(r.ratioSpread[1], 2)}` : '-'])],
        [false, false, true, true, false, true, true, false],
      ));
    }

    // -- whole training steps, each beside PyTorch's (alternated, see pairedStep)
    const stepCount = quick ? 1 : 5;
    const batch = quick ? 2 : 8;
    const rounds = quick ? 1 : 3;
    const peerSteps = quick ? 1 : 8;
    const presets: Preset[] = quick ? ['tiny'] : ['tiny', 'small'];
    const noTorch = torchUnavailable();
    if (noTorch) {
      skipped.push(`PyTorch: ${noTorch}`);
      log(`PyTorch peer skipped: ${noTorch}`);
    }
    peers = noTorch ? null : new Map<number, TorchPeer>();
    const steps: SuiteDocument['steps'] = [];
    let torchVersion: string | null = null;
    for (const preset of presets) {
      for (const mode of MODES) {
        for (const task of STEP_TASKS) {
          const r = await pairedStep({ preset, mode, task, batch, steps: stepCount, threads }, rounds, peers, peerSteps);
          torchVersion = r.pytorch?.torch ?? torchVersion;
          steps.push({ ...r.ours, fraction_of_matmul_peak: r.ours.achieved_gflops / peakGflops, pytorch: r.pytorch, paired: r.paired });
        }
      }
    }
    if (!quick) {
      // base: only when a combination would fit the budget at the small preset's achieved rate
      const smallRate = Math.min(...steps.filter((s) => s.preset === 'small').map((s) => s.achieved_gflops));
      using base = await Model.create({ preset: 'base', mode: 'mask' });
      const seconds = stepFlops(base.config, 'reca', batch).total / (smallRate * 1e9);
      if (seconds * (stepCount + 1) > STEP_BUDGET_SECONDS) {
        skipped.push(`preset base: a step would take about ${fixed(seconds, 1)} s here, over the ${STEP_BUDGET_SECONDS} s budget per combination`);
      } else {
        for (const mode of MODES) {
          for (const task of STEP_TASKS) {
            const r = await runStepBench({ preset: 'base', mode, task, batch, steps: stepCount, threads });
            steps.push({ ...r, fraction_of_matmul_peak: r.achieved_gflops / peakGflops });
          }
        }
      }
    }

    // -- sampling, each point beside PyTorch's samplers on the same weights (alternated)
    const inference: SampleBenchResult[] = await runSampling({
      preset: quick ? 'tiny' : 'small', modes: MODES, cfgs: [1, 3], batch, threads: [threads], rounds: quick ? 1 : 3,
      steps: quick ? 8 : undefined, withPeer: peers !== null,
    });
    if (inference.some((r) => r.pytorch)) torchVersion = torchVersion ?? inference.find((r) => r.pytorch)!.pytorch!.torch;

    // -- memory, one fresh process per preset
    const memory: SuiteDocument['memory'] = [];
    for (const p of new Set(steps.map((s) => s.preset))) memory.push(await memoryOfPreset(p, threads, peers !== null));

    // -- cost growth (ours now; PyTorch at the same points below)
    const growthPreset: Preset = quick ? 'tiny' : 'small';
    const growthSteps = quick ? 1 : 3;
    const axes: Array<{ axis: GrowthPoint['axis']; x: number; batch: number; threads: number; config?: Partial<Config> }> = [];
    for (const b of quick ? [1, 2] : [1, 2, 4, 8, 16, 32]) axes.push({ axis: 'batch', x: b, batch: b, threads });
    for (const s of quick ? [16] : [16, 32, 64]) {
      axes.push({ axis: 'image_size', x: s, batch, threads, config: { image_size: s, und_image_size: s / 2 } });
    }
    for (const w of quick ? [32, 64] : [64, 128, 256, 384]) {
      axes.push({ axis: 'width', x: w, batch, threads, config: { width: w, heads: w / 32 } });
    }
    for (const n of [...new Set([1, Math.min(2, threads)])]) axes.push({ axis: 'threads', x: n, batch, threads: n });
    const growth: GrowthPoint[] = [];
    for (const a of axes) {
      const r = await pairedStep({
        preset: growthPreset, mode: 'mask', task: 'reca', batch: a.batch, steps: growthSteps, threads: a.threads, config: a.config,
      }, quick ? 1 : 2, peers, peerSteps);
      growth.push({ axis: a.axis, x: a.x, ...r });
    }
    if (steps.some((s) => s.preset === 'base')) {
      skipped.push('PyTorch at preset base: not run (the reference takes minutes per base step on a CPU)');
    }

    log(`\n## training steps (${threads} threads, median of ${stepCount} after a warm-up, median of ${rounds} rounds alternated with PyTorch's; of peak = achieved / matmul peak; ours/PyTorch = median of the rounds' ratios)`);
    log(table(
      [['preset', 'mode', 'task', 'batch', 'step ms', 'images/s', 'tokens/s', 'GFLOP/s', 'of peak', 'PyTorch images/s', 'ours/PyTorch'],
        ...steps.map((s) => [s.preset, s.mode, s.task, String(s.batch), fixed(s.step_seconds * 1e3, 1), fixed(s.images_per_s, 1),
          fixed(s.tokens_per_s, 0), fixed(s.achieved_gflops, 1), fixed(s.fraction_of_matmul_peak, 2),
          fixed(s.pytorch?.images_per_s, 1), s.paired ? fixed(s.paired.ratio, 2) : '-'])],
      [false, false, false, true, true, true, true, true, true, true, true],
    ));
    log(`\n## sampling (model.generate beside PyTorch's samplers on the same weights, ${quick ? 1 : 3} alternated rounds; ours/PyTorch = median of the rounds' PyTorch seconds / ours; agreement = the seed-0 samples compared)`);
    log(samplingTable(inference));
    log('\n## memory (mask/reca step, batch 8, fresh process per preset)');
    log(table(
      [['preset', 'params MiB', 'grads MiB', 'optimizer MiB', 'activations MiB', 'sum MiB', 'RSS at start MiB', 'peak RSS MiB',
        '(peak-start)/sum', 'PyTorch peak-start MiB'],
        ...memory.map((m) => [m.preset, fixed(m.memory.params / MiB, 1), fixed(m.memory.grads / MiB, 1),
          fixed(m.memory.optimizer / MiB, 1), fixed(m.memory.activations / MiB, 1), fixed(m.theoretical_bytes / MiB, 1),
          fixed(m.rss_at_start_bytes / MiB, 1), fixed(m.peak_rss_bytes / MiB, 1), fixed(m.growth_over_theoretical, 2),
          m.pytorch ? fixed((m.pytorch.peak_rss_bytes - m.pytorch.rss_at_start_bytes) / MiB, 1) : '-'])],
      [false, true, true, true, true, true, true, true, true, true],
    ));
    log(`\n## cost growth (${growthPreset} mask/reca step)`);
    log(table(
      [['axis', 'x', 'batch', 'threads', 'ours images/s', 'PyTorch images/s', 'ours/PyTorch'],
        ...growth.map((g) => [g.axis, String(g.x), String(g.ours.batch), String(g.ours.threads), fixed(g.ours.images_per_s, 1),
          fixed(g.pytorch?.images_per_s, 1), g.paired ? fixed(g.paired.ratio, 2) : '-'])],
      [false, true, true, true, true, true, true],
    ));

    // -- TF.js: the same step (tiny preset), loss checked against ours first
    const tfjs: SuiteDocument['tfjs'] = [];
    let tfjsVersion: string | null = null;
    const backends: TfjsBackend[] = quick ? ['cpu'] : ['cpu', 'wasm'];
    const tfjsCases: Array<{ mode: Mode; task: Task }> = quick
      ? [{ mode: 'mask', task: 'reca' }]
      : [{ mode: 'mask', task: 'reca' }, { mode: 'mask', task: 't2i' }, { mode: 'ar', task: 'reca' }];
    for (const backend of backends) {
      try {
        const t = await loadTf(backend, threads);
        tfjsVersion = t.version;
        for (const c of tfjsCases) {
          const r = await benchTfjsStep(t, { ...c, batch, steps: stepCount });
          const ours = steps.find((s) => s.preset === 'tiny' && s.mode === c.mode && s.task === c.task && s.batch === batch);
          tfjs.push({ ...r, ours_images_per_s: ours?.images_per_s });
          if (r.loss_check.relativeDifference > 1e-4) {
            notes.push(`TF.js ${backend} ${c.mode}/${c.task}: loss ${r.loss_check.tfjs} differs from ours ${r.loss_check.ours}`);
          }
        }
      } catch (e) {
        skipped.push(`TF.js ${backend}: ${(e as Error).message}`);
      }
    }
    log('\n## TF.js peer (tiny preset; loss on the same weights and batch as ours, then the step timed)');
    log(table(
      [['backend', 'threads', 'mode', 'task', 'batch', 'loss ours', 'loss TF.js', 'rel diff', 'step ms', 'images/s', 'ours/TF.js'],
        ...tfjs.map((r) => [r.backend, String(r.threads), r.mode, r.task, String(r.batch), r.loss_check.ours.toPrecision(8),
          r.loss_check.tfjs.toPrecision(8), r.loss_check.relativeDifference.toExponential(1), fixed(r.step_seconds * 1e3, 1),
          fixed(r.images_per_s, 1), r.ours_images_per_s ? fixed(r.ours_images_per_s / r.images_per_s, 1) : '-'])],
      [false, true, false, false, true, true, true, true, true, true, true],
    ));

    // -- plots
    fs.mkdirSync(o.out, { recursive: true });
    const plotOf = (axis: GrowthPoint['axis']): Series[] => {
      const pts = growth.filter((g) => g.axis === axis);
      const series: Series[] = [{ name: 'reca-engine', points: pts.map((g) => [g.x, g.ours.images_per_s]) }];
      if (pts.some((g) => g.pytorch)) {
        series.push({ name: `PyTorch ${torchVersion ?? ''}`.trim(), points: pts.filter((g) => g.pytorch).map((g) => [g.x, g.pytorch!.images_per_s]) });
      }
      return series;
    };
    const plots = [
      { file: 'growth-batch.svg', axis: 'batch' as const, xLabel: 'batch size (images per step)' },
      { file: 'growth-width.svg', axis: 'width' as const, xLabel: 'generator width (heads = width / 32)' },
    ].map((p) => {
      const file = path.join(o.out, p.file);
      const svg = linePlotSvg({
        title: `${growthPreset} mask/reca training step, ${threads} threads`,
        xLabel: p.xLabel,
        yLabel: 'images/s',
        logX: true,
        series: plotOf(p.axis),
      });
      writeFile(file, svg);
      return file;
    });

    const doc: SuiteDocument = {
      suite: 'all',
      quick,
      date: new Date().toISOString(),
      seconds: (Date.now() - t0) / 1e3,
      machine: { ...machine, threads },
      threads,
      peers: { pytorch: torchVersion, tfjs: tfjsVersion, openblas: blas.length > 0, skipped },
      memcopy,
      peak: { matmul_gflops: peakGflops, matmul_source: peakSource, copy_gbps: copyGbps },
      kernels,
      kernels_avx2: kernelsAvx2,
      steps,
      inference,
      memory,
      growth,
      tfjs,
      plots,
      notes,
    };
    const jsonFile = o.json ?? path.join(o.out, 'suite.json');
    writeFile(jsonFile, JSON.stringify(doc, null, 2) + '\n');
    for (const s of skipped) log(`skipped: ${s}`);
    for (const n of notes) log(`note: ${n}`);
    log(`\nwrote ${jsonFile}, ${plots.join(', ')} (${fixed(doc.seconds, 1)} s)`);
    return doc;
  } finally {
    for (const peer of peers?.values() ?? []) peer.close();
    setThreads(threads0);
  }
}

function writeFile(file: string, text: string): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  } catch (e) {
    throw new RecaError('E_IO', `could not write ${file}: ${(e as Error).message}`);
  }
}
