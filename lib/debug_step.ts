/** One training step dumped for checking against another framework (SPEC §9). */
import { addon } from './loader';

export interface DebugStepOptions {
  preset?: 'tiny' | 'small' | 'base';
  mode?: 'ar' | 'mask' | 'flow';
  /** reca | t2i | i2t, or vq (the tokenizer loss; discrete modes). */
  task?: 'reca' | 't2i' | 'i2t' | 'vq';
  seed?: number | bigint;
  /** Images in the batch (default 4). */
  batch?: number;
  /** Output directory (must exist). */
  out: string;
  /** Learning rate of the update (default 1e-3). */
  lr?: number;
  condDropout?: number;
  condGradScale?: number;
  /** Groups left frozen (default: vq; the tokenizer task trains vq only). */
  freeze?: Array<'und' | 'conn' | 'vq' | 'gen'>;
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
  optimizer: { lr: number; betas: [number, number]; eps: number; weight_decay: number; max_grad_norm: number };
  config: Record<string, unknown>;
  captions: string[];
  cut_bytes: number;
  seconds: number;
}

/**
 * One training step of a fresh model with every draw recorded, written to
 * `out` as SPEC §9 describes (params, batch, grads, params_after, result.json),
 * for tools/reference/verify_step.py or any other framework to check.
 */
export function debugStep(options: DebugStepOptions): Promise<DebugStepResult> {
  try {
    return addon()
      .debugStep(options)
      .then((text) => JSON.parse(text) as DebugStepResult);
  } catch (e) {
    return Promise.reject(e);
  }
}
