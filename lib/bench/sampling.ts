/**
 * Sampling speed (model.generate, SPEC §7) beside PyTorch's samplers on the same weights
 * (benchmarks/torch_sample.py over tools/reference/sampling_ref.py): `reca bench --suite
 * sampling`, and the sampling table of `--suite all`. Every point is timed our way and
 * PyTorch's way back to back, `rounds` times, because this machine's speed drifts by up to
 * 30% over minutes. Before timing, each side samples once untimed with seed 0; the codes of
 * that warm-up (discrete modes) are compared, so the table says whether the two computed the
 * same samples at the benchmarked size.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { getThreads, setThreads } from '../engine';
import { fixed, table } from '../format';
import { fieldDefault, SCHEMA } from '../generated/schema';
import { Model, type Mode, type Preset } from '../model';
import { benchPrompts, median } from './step';
import { JsonLinePeer, TORCH_SAMPLE_SCRIPT } from './torch_peer';

/** The sampler table's default steps (mask and flow; ar takes one step per image token). */
const MODELS_DIR = path.resolve(__dirname, '..', '..', 'models');

export const DEFAULT_SAMPLER_STEPS = fieldDefault(SCHEMA.sampler, 'steps') as number;

interface TorchSamplePoint {
  checkpoint: string;
  prompts: string[];
  cfg: number;
  steps: number;
  threads: number;
  seeds: number[];
  warmup_seed: number | null;
}

interface TorchSampleResult {
  peer: 'pytorch';
  torch: string;
  /** Absent when no seed was timed (a warm-up only). */
  seconds?: number;
  seconds_all: number[];
  images_per_s?: number;
  warmup_codes?: number[];
  warmup_images?: number[];
}

export interface SampleBenchResult {
  preset: Preset;
  mode: Mode;
  /** models/<preset>-<mode>.safetensors (the shipped base), or a fresh model's seed-0 init. */
  weights: string;
  cfg: number;
  batch: number;
  threads: number;
  /** Sampler steps: mask and flow the option's value; ar one per image token. */
  sampler_steps: number;
  /** Ours: median over the rounds of one timed model.generate each. */
  images_per_s: number;
  seconds: number;
  seconds_all: number[];
  /** PyTorch on the same point, same weights (absent when the peer is missing). */
  pytorch?: { torch: string; images_per_s: number; seconds: number; seconds_all: number[] };
  /** Median over the rounds of PyTorch's seconds / ours (> 1: ours is faster). */
  ratio?: number;
  /**
   * The seed-0 warm-up samples of both sides: the fraction of equal codes (discrete modes;
   * a draw decided within float32 rounding can flip and change the rest of the sample), or
   * in flow mode the largest |Δ| of the float images (the final latent, unpatchified).
   */
  agreement?: { codes_equal: number } | { latent_max_abs_diff: number };
}

export interface SamplingOptions {
  preset: Preset;
  modes: readonly Mode[];
  cfgs: readonly number[];
  batch: number;
  /** Thread counts, one point each. */
  threads: readonly number[];
  rounds: number;
  steps?: number;
  withPeer: boolean;
  log?: (line: string) => void;
}

/** Times every mode × cfg × thread count; see the module comment. */
export async function runSampling(o: SamplingOptions): Promise<SampleBenchResult[]> {
  const log = o.log ?? (() => undefined);
  const steps = o.steps ?? DEFAULT_SAMPLER_STEPS;
  const threads0 = getThreads();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-sample-'));
  const peer = o.withPeer ? new JsonLinePeer<TorchSamplePoint, TorchSampleResult>(TORCH_SAMPLE_SCRIPT) : null;
  const out: SampleBenchResult[] = [];
  try {
    for (const mode of o.modes) {
      // The shipped base of the preset and mode when there is one (trained weights: peaked
      // distributions, as in use), else a fresh model written out for the peer.
      const shipped = path.join(MODELS_DIR, `${o.preset}-${mode}.safetensors`);
      const isShipped = fs.existsSync(shipped);
      using model = isShipped ? await Model.load(shipped) : await Model.create({ preset: o.preset, mode, seed: 0 });
      const checkpoint = isShipped ? shipped : path.join(dir, `${o.preset}-${mode}.safetensors`);
      if (peer && !isShipped) await model.save(checkpoint);
      const N = (model.config.image_size / model.config.gen_patch) ** 2;
      const prompts = benchPrompts(o.batch);
      for (const threads of o.threads) {
        for (const cfg of o.cfgs) {
          setThreads(threads);
          const options = { prompts, cfg, steps };
          // Both warm up (seed 0, untimed) before either is timed: the peer's first point
          // also imports torch and loads the weights, which must not overlap our timing.
          const warm = await model.generateRaw({ ...options, seed: 0 });
          const agreement = peer
            ? compareWarmup(warm, await peer.run({ checkpoint, prompts, cfg, steps, threads, seeds: [], warmup_seed: 0 }))
            : undefined;
          const ours: number[] = [];
          const theirs: TorchSampleResult[] = [];
          for (let r = 0; r < o.rounds; r++) {
            const t0 = process.hrtime.bigint();
            (await model.generate({ ...options, seed: r + 1 })).dispose();
            ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
            if (peer) theirs.push(await peer.run({ checkpoint, prompts, cfg, steps, threads, seeds: [r + 1], warmup_seed: null }));
          }
          warm.images.dispose();
          warm.codes?.dispose();
          const s = median(ours);
          const row: SampleBenchResult = {
            preset: o.preset, mode, weights: isShipped ? path.relative(path.dirname(MODELS_DIR), shipped) : 'fresh (seed 0)',
            cfg, batch: o.batch, threads, sampler_steps: mode === 'ar' ? N : steps,
            images_per_s: o.batch / s, seconds: s, seconds_all: ours,
          };
          if (theirs.length) {
            const ts = theirs.map((t) => t.seconds!);
            row.pytorch = { torch: theirs[0].torch, seconds: median(ts), images_per_s: o.batch / median(ts), seconds_all: ts };
            row.ratio = median(ts.map((t, i) => t / ours[i]));
            row.agreement = agreement;
          }
          out.push(row);
          log(`sampling ${o.preset} ${mode} cfg ${cfg} batch ${o.batch} threads ${threads}: ours ${fixed(row.images_per_s, 2)} images/s` +
            (row.pytorch ? `, PyTorch ${fixed(row.pytorch.images_per_s, 2)}, ours/PyTorch ${fixed(row.ratio, 2)}` : ''));
        }
      }
    }
    return out;
  } finally {
    peer?.close();
    setThreads(threads0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function compareWarmup(
  warm: { images: { toArray(): ArrayLike<number> }; codes: { toArray(): ArrayLike<number> } | null },
  p: TorchSampleResult,
): SampleBenchResult['agreement'] {
  if (warm.codes && p.warmup_codes) {
    const a = warm.codes.toArray();
    let same = 0;
    for (let i = 0; i < a.length; i++) same += a[i] === p.warmup_codes[i] ? 1 : 0;
    return { codes_equal: same / a.length };
  }
  if (p.warmup_images) {
    const a = warm.images.toArray();
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - p.warmup_images[i]));
    return { latent_max_abs_diff: d };
  }
  return undefined;
}

/** The sampling table (ours beside PyTorch). */
export function samplingTable(rows: readonly SampleBenchResult[]): string {
  return table(
    [['preset', 'mode', 'cfg', 'batch', 'threads', 'sampler steps', 'seconds', 'images/s', 'PyTorch images/s', 'ours/PyTorch', 'agreement'],
      ...rows.map((r) => [r.preset, r.mode, String(r.cfg), String(r.batch), String(r.threads), String(r.sampler_steps),
        fixed(r.seconds, 3), fixed(r.images_per_s, 2), fixed(r.pytorch?.images_per_s, 2), fixed(r.ratio, 2),
        agreementText(r.agreement)])],
    [false, false, true, true, true, true, true, true, true, true, true],
  );
}

function agreementText(a: SampleBenchResult['agreement']): string {
  if (!a) return '-';
  return 'codes_equal' in a ? `${fixed(100 * a.codes_equal, 1)}% codes` : `|Δ| ${a.latent_max_abs_diff.toExponential(1)}`;
}
