/** One training step dumped for checking against another framework (SPEC §9). */
import { invalidArgument } from './errors';
import { SCHEMA } from './generated/schema';
import { addon } from './loader';
import type { Config } from './model';
import { ShapesWorld } from './shapes/world';

export interface DebugStepOptions {
  preset?: 'tiny' | 'small' | 'base';
  mode?: 'ar' | 'mask' | 'flow';
  /** reca | t2i | i2t, or vq (the tokenizer loss; discrete modes). */
  task?: 'reca' | 't2i' | 'i2t' | 'vq';
  seed?: number | bigint;
  /** Images in the batch (default 4, at most 4096): shapes-world scenes with their captions. */
  batch?: number;
  /** Output directory (must exist). */
  out: string;
  /** Learning rate of the update (default 1e-3). */
  lr?: number;
  condDropout?: number;
  condGradScale?: number;
  /** Groups left frozen (default: vq; the tokenizer task trains vq only). */
  freeze?: Array<'und' | 'conn' | 'vq' | 'gen'>;
  /** Products of the Linear layers: 'fp32' (default) or 'bf16' (see TrainerOptions.matmulPrecision). */
  matmulPrecision?: 'fp32' | 'bf16';
}

/** What `debugStep` writes to result.json (SPEC §9, plus a few extras). */
export interface DebugStepResult {
  preset: string;
  mode: string;
  task: string;
  seed: number;
  batch: number;
  loss: number;
  grad_norm: number;
  clip_scale: number;
  trainable: string[];
  cond_grad_scale: number;
  cond_dropout: number;
  matmul_precision: 'fp32' | 'bf16';
  optimizer: { lr: number; betas: [number, number]; eps: number; weight_decay: number; max_grad_norm: number };
  config: Record<string, unknown>;
  captions: string[];
  cut_bytes: number;
  seconds: number;
}

const MAX_BATCH = 4096;

/**
 * One training step of a fresh model with every draw recorded, written to
 * `out` as SPEC §9 describes (params, batch, grads, params_after, result.json),
 * for tools/reference/verify_step.py or any other framework to check. The
 * batch is the first `batch` scenes of the shapes world's train split (the
 * data training sees), seeded by `seed`, rendered here at the preset's size.
 */
export function debugStep(options: DebugStepOptions): Promise<DebugStepResult> {
  try {
    if (options === null || typeof options !== 'object') throw invalidArgument('debugStep needs an options object {out, ...}');
    const { batch = 4, ...rest } = options;
    if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) {
      throw invalidArgument(`debug-step batch must be an integer in [1, ${MAX_BATCH}], got ${String(batch)}`);
    }
    const a = addon();
    // The preset's image size from the engine's table (lib/generated/schema.ts).
    const preset = (SCHEMA.presets as Record<string, Config | undefined>)[options.preset ?? 'tiny'];
    if (!preset) throw invalidArgument(`unknown preset '${String(options.preset)}': use ${Object.keys(SCHEMA.presets).join(', ')}`);
    const world = new ShapesWorld({ imageSize: preset.image_size, split: 'train', seed: worldSeed(options.seed ?? 0) });
    const b = world.batch(batch, 0);
    return a
      .debugStep({ ...rest, images: { data: b.images, shape: b.shape }, captions: b.captions })
      .then((text) => JSON.parse(text) as DebugStepResult);
  } catch (e) {
    return Promise.reject(e);
  }
}

// The world mixes its seed as 32 bits (mix32); a BigInt seed gives its low 32.
// The engine still takes the whole seed for the weights and the draws.
function worldSeed(seed: number | bigint): number {
  return typeof seed === 'bigint' ? Number(BigInt.asUintN(32, seed)) : seed;
}
