/**
 * Analytic FLOP count of one training step (SPEC §3-§5), to put a measured
 * step beside the matmul peak. Only matmul-class work is counted: Linear
 * layers (2·M·in·out), attention scores QKᵀ and the weighted sum PV over the
 * full L×L (masked entries included: the kernels compute them), and the VQ
 * nearest-code distances. LayerNorm, GELU, softmax and the optimizer are left
 * out: they are memory-bound and small beside the matmuls.
 */
import type { Config, ParamGroup, Task } from '../model';

export interface StepFlops {
  /** Forward FLOPs of the parts that get gradients. */
  trainableForward: number;
  /** Their backward: twice the forward (input gradient + weight gradient; dQ/dK and dP/dV for attention). */
  backward: number;
  /** Forward FLOPs of the frozen parts (no backward). */
  frozenForward: number;
  /** trainableForward + backward + frozenForward. */
  total: number;
}

/** Sequence lengths of the generator's condition and target blocks (SPEC §4). */
export function blockLengths(config: Config, task: Task): { cond: number; target: number } {
  const Nu = (config.und_image_size / config.und_patch) ** 2;
  const N = (config.image_size / config.gen_patch) ** 2;
  const T = config.max_text_len;
  const cond = task === 'reca' ? 3 + Nu + T : task === 't2i' ? 1 + T : 3 + Nu;
  const target = task === 'i2t' ? 1 + T : config.mode === 'ar' ? N : N + 1;
  return { cond, target };
}

/** Forward FLOPs of `depth` pre-LN blocks over `rows` = B·L tokens of sequences of length L. */
function blocksForward(B: number, L: number, width: number, depth: number, mlpRatio: number): number {
  const rows = B * L;
  const linear = 2 * rows * width * (3 * width + width + 2 * mlpRatio * width);
  const attention = 2 * (2 * B * L * L * width); // QKᵀ and PV over every head
  return depth * (linear + attention);
}

/**
 * FLOPs of one step of `task` on `batch` images. `trainable`: the groups that
 * get gradients (default: the reca recipe, the generator only).
 */
export function stepFlops(config: Config, task: Task, batch: number, trainable: readonly ParamGroup[] = ['gen']): StepFlops {
  const B = batch;
  const Nu = (config.und_image_size / config.und_patch) ** 2;
  const N = (config.image_size / config.gen_patch) ** 2;
  const D = 3 * config.gen_patch ** 2;
  const Du = 3 * config.und_patch ** 2;
  const W = config.width;
  const Wu = config.und_width;
  const discrete = config.mode !== 'flow';
  const parts: Array<{ group: ParamGroup; flops: number }> = [];

  if (task !== 't2i') {
    const k = config.und_depth + 1 + config.und_select_layer; // und blocks actually run
    parts.push({
      group: 'und',
      flops: 2 * B * Nu * Du * Wu + blocksForward(B, Nu, Wu, k, config.mlp_ratio),
    });
    parts.push({ group: 'conn', flops: 2 * B * Nu * (Wu * W + W * W) });
  }
  if (task !== 'i2t') {
    if (discrete) {
      const K = config.codebook_size;
      const C = config.code_dim;
      parts.push({ group: 'vq', flops: 2 * B * N * D * C + 2 * B * N * K * C }); // enc + distances
    } else {
      // img_in on every latent; the time MLP once per sample
      parts.push({ group: 'gen', flops: 2 * B * N * D * W + 2 * B * (256 * W + W * W) });
    }
  }
  const { cond, target } = blockLengths(config, task);
  const outRows = task === 'i2t' ? 1 + config.max_text_len : N;
  const outDim = task === 'i2t' ? 263 : discrete ? config.codebook_size : D;
  parts.push({
    group: 'gen',
    flops: blocksForward(B, cond + target, W, config.depth, config.mlp_ratio) + 2 * B * outRows * W * outDim,
  });

  let trainableForward = 0;
  let frozenForward = 0;
  for (const p of parts) {
    if (trainable.includes(p.group)) trainableForward += p.flops;
    else frozenForward += p.flops;
  }
  const backward = 2 * trainableForward;
  return { trainableForward, backward, frozenForward, total: trainableForward + backward + frozenForward };
}
