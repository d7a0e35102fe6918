/**
 * Condition-pathway probe: does the RecA condition carry what is where?
 *
 * The generator sees an understanding token as `c_n + gen.pos_cond[n + 1]`
 * (docs/SPEC.md §4), normalised by the first block's LayerNorm. This module
 * measures, on held-out shapes-world renders:
 * - the scale of each part of a condition slot (|c|, |pos_cond|, |tok_embed|);
 * - how much of the first block's normalised input the slot position explains
 *   (between-position variance over total variance);
 * - linear probes (ridge regression on standardised features, one-hot targets):
 *   the token's own grid cell from the normalised input and from c alone, and
 *   the cell's colour (the dominant non-background colour, or background) from c.
 */
import { RecaError } from '../errors';
import type { Model } from '../model';
import { BACKGROUND, COLORS, ShapesWorld } from './world';

export interface ProbeResult {
  images: number;
  tokens: number;
  norms: { condition: number; posCond: number; textEmbed: number };
  /** Share of the block-0 LayerNorm output's variance explained by the slot position, in [0, 1]. */
  positionVarianceShare: number;
  /** Held-out accuracies in [0, 1], each with its chance or majority baseline. */
  positionFromInput: { accuracy: number; chance: number };
  positionFromCondition: { accuracy: number; chance: number };
  colourFromCondition: { accuracy: number; majority: number; classes: number };
}

/**
 * A linear probe: ridge regression of one-hot labels on standardised features
 * (statistics of the training rows), bias unpenalised; returns the accuracy of
 * its argmax on the held-out rows [train, n).
 */
export function ridgeProbe(x: Float32Array, labels: Int32Array, dim: number, classes: number, train: number, lambda = 1e-2): number {
  const n = labels.length;
  if (x.length !== n * dim) throw new RecaError('E_SHAPE', `features must be [${n}, ${dim}], got ${x.length} values`);
  if (!(train > 0 && train < n)) throw new RecaError('E_INVALID_ARGUMENT', `train rows must be in (0, ${n}), got ${train}`);
  const mean = new Float64Array(dim);
  const scale = new Float64Array(dim);
  for (let i = 0; i < train; i++) for (let j = 0; j < dim; j++) mean[j] += x[i * dim + j] / train;
  for (let i = 0; i < train; i++) for (let j = 0; j < dim; j++) scale[j] += (x[i * dim + j] - mean[j]) ** 2 / train;
  for (let j = 0; j < dim; j++) scale[j] = 1 / (Math.sqrt(scale[j]) + 1e-8);
  const D = dim + 1;
  const row = new Float64Array(D);
  const load = (i: number): void => {
    for (let j = 0; j < dim; j++) row[j] = (x[i * dim + j] - mean[j]) * scale[j];
    row[dim] = 1;
  };
  // Normal equations (XᵀX + λ·n·I) W = XᵀY, solved by Gauss-Jordan with partial pivoting.
  const a = new Float64Array(D * D);
  const w = new Float64Array(D * classes);
  for (let i = 0; i < train; i++) {
    load(i);
    for (let p = 0; p < D; p++) {
      const rp = row[p];
      for (let q = 0; q < D; q++) a[p * D + q] += rp * row[q];
      w[p * classes + labels[i]] += rp;
    }
  }
  for (let p = 0; p < dim; p++) a[p * D + p] += lambda * train;
  for (let c = 0; c < D; c++) {
    let pivot = c;
    for (let r = c + 1; r < D; r++) if (Math.abs(a[r * D + c]) > Math.abs(a[pivot * D + c])) pivot = r;
    if (pivot !== c) {
      for (let j = 0; j < D; j++) [a[c * D + j], a[pivot * D + j]] = [a[pivot * D + j], a[c * D + j]];
      for (let j = 0; j < classes; j++) [w[c * classes + j], w[pivot * classes + j]] = [w[pivot * classes + j], w[c * classes + j]];
    }
    const inv = 1 / a[c * D + c];
    for (let r = 0; r < D; r++) {
      const f = a[r * D + c] * inv;
      if (r === c || f === 0) continue;
      for (let j = c; j < D; j++) a[r * D + j] -= f * a[c * D + j];
      for (let j = 0; j < classes; j++) w[r * classes + j] -= f * w[c * classes + j];
    }
  }
  for (let c = 0; c < D; c++) for (let j = 0; j < classes; j++) w[c * classes + j] /= a[c * D + c];
  let correct = 0;
  for (let i = train; i < n; i++) {
    load(i);
    let best = 0;
    let bestScore = -Infinity;
    for (let k = 0; k < classes; k++) {
      let s = 0;
      for (let j = 0; j < D; j++) s += row[j] * w[j * classes + k];
      if (s > bestScore) [bestScore, best] = [s, k];
    }
    correct += best === labels[i] ? 1 : 0;
  }
  return correct / (n - train);
}

/** Share of the rows' total variance explained by their group means (groups = labels). */
export function betweenGroupShare(x: Float32Array, labels: Int32Array, dim: number, groups: number): number {
  const n = labels.length;
  const mean = new Float64Array(dim);
  const groupMean = new Float64Array(groups * dim);
  const count = new Float64Array(groups);
  for (let i = 0; i < n; i++) {
    count[labels[i]]++;
    for (let j = 0; j < dim; j++) {
      mean[j] += x[i * dim + j] / n;
      groupMean[labels[i] * dim + j] += x[i * dim + j];
    }
  }
  let total = 0;
  let between = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) total += (x[i * dim + j] - mean[j]) ** 2;
  for (let g = 0; g < groups; g++) {
    if (count[g] === 0) continue;
    for (let j = 0; j < dim; j++) between += count[g] * (groupMean[g * dim + j] / count[g] - mean[j]) ** 2;
  }
  return total > 0 ? between / total : 0;
}

function meanRowNorm(x: Float32Array, rows: number[], dim: number): number {
  let sum = 0;
  for (const r of rows) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j] ** 2;
    sum += Math.sqrt(s);
  }
  return sum / rows.length;
}

const BACKGROUND_KEY = (BACKGROUND[0] << 16) | (BACKGROUND[1] << 8) | BACKGROUND[2];
const COLOUR_KEYS = COLORS.map((c) => (c.rgb[0] << 16) | (c.rgb[1] << 8) | c.rgb[2]);

/** Class of one understanding cell: 1 + the colour index covering at least a quarter of it, else 0. */
function cellColour(images: Uint8Array, image: number, size: number, cell: number, cx: number, cy: number): number {
  const counts = new Map<number, number>();
  for (let y = cy * cell; y < (cy + 1) * cell; y++) {
    for (let x = cx * cell; x < (cx + 1) * cell; x++) {
      const o = ((image * size + y) * size + x) * 3;
      const key = (images[o] << 16) | (images[o + 1] << 8) | images[o + 2];
      if (key !== BACKGROUND_KEY) counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  let best = 0;
  let bestCount = 0;
  for (const [key, count] of counts) if (count > bestCount) [best, bestCount] = [COLOUR_KEYS.indexOf(key) + 1, count];
  return bestCount * 4 >= cell * cell ? best : 0;
}

/** Runs the probe on `images` renders of the shapes world's eval split (70% fit, 30% held out). */
export async function conditionProbe(model: Model, options: { images?: number; seed?: number } = {}): Promise<ProbeResult> {
  const images = options.images ?? 300;
  if (!Number.isInteger(images) || images < 10) throw new RecaError('E_INVALID_ARGUMENT', `images must be an integer ≥ 10, got ${String(images)}`);
  const c = model.config;
  const S = c.image_size;
  const W = c.width;
  const grid = c.und_image_size / c.und_patch;
  const Nu = grid * grid;
  const cell = S / grid;
  const batch = new ShapesWorld({ imageSize: S, split: 'eval', seed: options.seed ?? 0 }).batch(images, 0);
  const [cond, pos, tok, lnW, lnB] = await Promise.all([
    model.embed({ data: batch.images, shape: batch.shape }),
    model.parameter('gen.pos_cond'),
    model.parameter('gen.tok_embed'),
    model.parameter('gen.blocks.0.ln1.weight'),
    model.parameter('gen.blocks.0.ln1.bias'),
  ]);
  const cv = cond.toArray();
  const pv = pos.toArray();
  const tv = tok.toArray();
  const gamma = lnW.toArray();
  const beta = lnB.toArray();
  for (const t of [cond, pos, tok, lnW, lnB]) t.dispose();

  const n = images * Nu;
  const input = new Float32Array(n * W);
  const position = new Int32Array(n);
  const colour = new Int32Array(n);
  for (let i = 0; i < images; i++) {
    for (let t = 0; t < Nu; t++) {
      const r = i * Nu + t;
      const slot = t + 2;  // BOS, IMG_BEGIN, then c_1..c_Nu (SPEC §4)
      let mean = 0;
      for (let j = 0; j < W; j++) mean += (input[r * W + j] = cv[r * W + j] + pv[slot * W + j]) / W;
      let variance = 0;
      for (let j = 0; j < W; j++) variance += (input[r * W + j] - mean) ** 2 / W;
      const rstd = 1 / Math.sqrt(variance + 1e-5);
      for (let j = 0; j < W; j++) input[r * W + j] = (input[r * W + j] - mean) * rstd * gamma[j] + beta[j];
      position[r] = t;
      colour[r] = cellColour(batch.images, i, S, cell, t % grid, Math.floor(t / grid));
    }
  }
  const train = Math.floor(images * 0.7) * Nu;
  const classes = COLORS.length + 1;
  const heldOut = Array.from(colour.subarray(train));
  const majority = Math.max(...Array.from({ length: classes }, (_, k) => heldOut.filter((v) => v === k).length)) / heldOut.length;
  return {
    images,
    tokens: Nu,
    norms: {
      condition: meanRowNorm(cv, Array.from({ length: n }, (_, r) => r), W),
      posCond: meanRowNorm(pv, Array.from({ length: Nu }, (_, t) => t + 2), W),
      textEmbed: meanRowNorm(tv, Array.from({ length: 256 }, (_, b) => b), W),
    },
    positionVarianceShare: betweenGroupShare(input, position, W, Nu),
    positionFromInput: { accuracy: ridgeProbe(input, position, W, Nu, train), chance: 1 / Nu },
    positionFromCondition: { accuracy: ridgeProbe(cv, position, W, Nu, train), chance: 1 / Nu },
    colourFromCondition: { accuracy: ridgeProbe(cv, colour, W, classes, train), majority, classes },
  };
}
