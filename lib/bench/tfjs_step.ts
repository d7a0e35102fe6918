/**
 * The TF.js peer: the same RecA-Mini training step written with
 * @tensorflow/tfjs (SPEC §3-§6: understanding ViT on the average-pooled image,
 * connector, generator over condition block + target block, masked-token or
 * next-token CE, global-norm clipping, AdamW). Discrete modes (ar, mask),
 * tasks reca and t2i. It loads the weights and the batch of an engine step
 * dump (`reca debug-step`), so its loss can be checked against ours before
 * its step is timed.
 *
 * TF.js is a development dependency: it is loaded on demand, and a missing
 * package is reported, not thrown at import.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import type * as TF from '@tensorflow/tfjs';

import { debugStep } from '../debug_step';
import type { Config, Mode, Task } from '../model';
import { SCHEMA } from '../generated/schema';
import { readSafetensors, type StoredTensor } from '../safetensors';
import { median } from './step';

type Tf = typeof TF;
export type TfjsBackend = 'cpu' | 'wasm';

const { pad: PAD, bos: BOS, imgBegin: IMG_BEGIN, imgEnd: IMG_END, gen: GEN } = SCHEMA.tokens;

export interface LoadedTf {
  tf: Tf;
  backend: TfjsBackend;
  version: string;
  /** wasm only: threads the backend runs (1 when Node offers it no threads). */
  threads: number;
}

/** Loads TF.js on `backend`; throws a plain Error that says what is missing. */
export async function loadTf(backend: TfjsBackend, threads?: number): Promise<LoadedTf> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tf = require('@tensorflow/tfjs') as Tf;
  tf.env().set('PROD', true); // no debug checks, no "install tfjs-node" banner
  let count = 1;
  if (backend === 'wasm') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const wasm = require('@tensorflow/tfjs-backend-wasm') as {
      setThreadsCount(n: number): void;
      getThreadsCount(): number;
    };
    if (threads !== undefined) wasm.setThreadsCount(threads);
    if (!(await tf.setBackend('wasm'))) throw new Error('the TF.js wasm backend did not initialise');
    count = wasm.getThreadsCount();
  } else if (!(await tf.setBackend('cpu'))) {
    throw new Error('the TF.js cpu backend did not initialise');
  }
  await tf.ready();
  return { tf, backend, version: tf.version.tfjs, threads: count };
}

export interface StepBatch {
  images: Uint8Array;
  /** [B, max_text_len] bytes or PAD, as used (after dropout). */
  text: Int32Array;
  /** mask mode: [B, N], 1 = masked. */
  masked?: Uint8Array;
  batch: number;
}

/** The model of one step dump, on TF.js. Trainable tensors are tf.Variables; the rest constants. */
export class TfjsRecaMini {
  readonly tf: Tf;
  readonly config: Config;
  readonly task: Task;
  readonly params = new Map<string, TF.Tensor>();
  readonly trainable: TF.Variable[] = [];
  readonly #codebook: Float32Array;
  #m = new Map<string, TF.Variable>();
  #v = new Map<string, TF.Variable>();
  #t = 0;

  constructor(tf: Tf, config: Config, task: Task, params: Map<string, StoredTensor>, trainable: (name: string) => boolean) {
    if (config.mode === 'flow') throw new Error('the TF.js peer covers the discrete modes (ar, mask)');
    this.tf = tf;
    this.config = config;
    this.task = task;
    for (const [name, t] of params) {
      if (t.dtype !== 'F32') throw new Error(`parameter ${name} is ${t.dtype}, expected F32`);
      const data = t.data as Float32Array;
      if (trainable(name)) {
        const init = tf.tensor(data, t.shape, 'float32');
        const v = tf.variable(init, true, name);
        init.dispose(); // the variable holds its own reference to the data
        this.trainable.push(v);
        this.params.set(name, v);
      } else {
        this.params.set(name, tf.tensor(data, t.shape, 'float32'));
      }
    }
    this.#codebook = params.get('vq.codebook')!.data as Float32Array;
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const t of [...this.#m.values(), ...this.#v.values()]) t.dispose();
  }

  #p(name: string): TF.Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`missing parameter ${name}`);
    return t;
  }

  /**
   * Rows of an embedding table. The wasm backend has no gradient for gather
   * (UnsortedSegmentSum), so there it is a one-hot matmul.
   */
  #gather(table: string, ids: Int32Array, shape: [number, number]): TF.Tensor {
    const tf = this.tf;
    const t = this.#p(table) as TF.Tensor2D;
    const idx = tf.tensor(ids, [ids.length], 'int32');
    const rows = tf.getBackend() === 'wasm' ? tf.matMul(tf.oneHot(idx, t.shape[0]), t) : tf.gather(t, idx);
    return rows.reshape([...shape, t.shape[1]]);
  }

  #linear(name: string, x: TF.Tensor): TF.Tensor {
    const tf = this.tf;
    const w = this.#p(`${name}.weight`) as TF.Tensor2D;
    const shape = x.shape;
    const x2 = x.reshape([-1, shape[shape.length - 1]]) as TF.Tensor2D;
    const y = tf.add(tf.matMul(x2, w, false, true), this.#p(`${name}.bias`));
    return y.reshape([...shape.slice(0, -1), w.shape[0]]);
  }

  #layerNorm(name: string, x: TF.Tensor): TF.Tensor {
    const tf = this.tf;
    const { mean, variance } = tf.moments(x, -1, true);
    const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5)));
    return tf.add(tf.mul(xhat, this.#p(`${name}.weight`)), this.#p(`${name}.bias`));
  }

  #gelu(x: TF.Tensor): TF.Tensor {
    const tf = this.tf;
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.mul(x, x)))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  }

  /** Pre-LN block; `bias` [B,1,L,L] holds 0 or −∞ (null: full attention). */
  #block(prefix: string, x: TF.Tensor, heads: number, bias: TF.Tensor | null): TF.Tensor {
    const tf = this.tf;
    const [B, L, W] = x.shape;
    const hd = W / heads;
    const qkv = this.#linear(`${prefix}.attn.qkv`, this.#layerNorm(`${prefix}.ln1`, x));
    const [q, k, v] = tf.split(qkv, 3, -1).map((t) => tf.transpose(t.reshape([B, L, heads, hd]), [0, 2, 1, 3]));
    let scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd));
    if (bias) scores = tf.add(scores, bias);
    const o = tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]).reshape([B, L, W]);
    const x1 = tf.add(x, this.#linear(`${prefix}.attn.proj`, o));
    const h = this.#gelu(this.#linear(`${prefix}.mlp.fc1`, this.#layerNorm(`${prefix}.ln2`, x1)));
    return tf.add(x1, this.#linear(`${prefix}.mlp.fc2`, h));
  }

  #patchify(x: TF.Tensor, P: number): TF.Tensor {
    const [B, S, , C] = x.shape;
    const G = S / P;
    return this.tf.transpose(x.reshape([B, G, P, G, P, C]), [0, 1, 3, 2, 4, 5]).reshape([B, G * G, P * P * C]);
  }

  /** VQ codes: argmin over the codebook, distances in float64 (ties to the lowest index), as the engine does. */
  #codes(img: TF.Tensor): Int32Array {
    const { codebook_size: K, code_dim: C } = this.config;
    const z = this.#linear('vq.enc', this.#patchify(img, this.config.gen_patch)).dataSync() as Float32Array;
    const e = this.#codebook;
    const rows = z.length / C;
    const codes = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      let best = Infinity;
      for (let k = 0; k < K; k++) {
        let d = 0;
        for (let c = 0; c < C; c++) {
          const diff = z[r * C + c] - e[k * C + c];
          d += diff * diff;
        }
        if (d < best) [best, codes[r]] = [d, k];
      }
    }
    return codes;
  }

  /** The loss of the batch (a scalar tensor), SPEC §4-§5. */
  loss(b: StepBatch): TF.Scalar {
    const tf = this.tf;
    const cfg = this.config;
    const B = b.batch;
    const S = cfg.image_size;
    const T = cfg.max_text_len;
    const Nu = (cfg.und_image_size / cfg.und_patch) ** 2;
    const N = (S / cfg.gen_patch) ** 2;
    const K = cfg.codebook_size;
    const img = tf.sub(tf.div(tf.tensor(b.images, [B, S, S, 3], 'float32'), 127.5), 1);

    // condition block: ids (c slots hold a placeholder id, replaced by c below)
    const withImage = this.task === 'reca';
    const Lc = withImage ? 3 + Nu + T : 1 + T;
    const ids = new Int32Array(B * Lc);
    const condPad = new Uint8Array(B * Lc);
    for (let i = 0; i < B; i++) {
      const row = i * Lc;
      ids[row] = BOS;
      let at = 1;
      if (withImage) {
        ids[row + 1] = IMG_BEGIN;
        ids[row + 2 + Nu] = IMG_END;
        at = 3 + Nu;
      }
      for (let t = 0; t < T; t++) {
        ids[row + at + t] = b.text[i * T + t];
        condPad[row + at + t] = b.text[i * T + t] === PAD ? 1 : 0;
      }
    }
    let xc = this.#gather('gen.tok_embed', ids, [B, Lc]);
    if (withImage) {
      const f = S / cfg.und_image_size;
      const pooled = tf.mean(img.reshape([B, S / f, f, S / f, f, 3]), [2, 4]);
      let h = tf.add(this.#linear('und.patch_embed', this.#patchify(pooled, cfg.und_patch)), this.#p('und.pos_embed'));
      const k = cfg.und_depth + 1 + cfg.und_select_layer;
      for (let l = 0; l < k; l++) h = this.#block(`und.blocks.${l}`, h, cfg.und_heads, null);
      const f2 = this.#linear('conn.fc2', this.#gelu(this.#linear('conn.fc1', this.#layerNorm('conn.ln', h))));
      const c = cfg.cond_norm ? this.#layerNorm('conn.norm', f2) : f2;
      xc = tf.concat([xc.slice([0, 0, 0], [B, 2, -1]), c, xc.slice([0, 2 + Nu, 0], [B, -1, -1])], 1);
    }
    xc = tf.add(xc, this.#p('gen.pos_cond').slice([0, 0], [Lc, -1]));

    // target block
    const codes = this.#codes(img);
    const ar = cfg.mode === 'ar';
    const Lt = ar ? N : N + 1;
    const body = new Int32Array(B * (Lt - 1));
    for (let i = 0; i < B; i++) {
      for (let j = 0; j < Lt - 1; j++) {
        const code = codes[i * N + j];
        body[i * (Lt - 1) + j] = !ar && b.masked![i * N + j] ? K : code;
      }
    }
    const W = cfg.width;
    const genRow = tf.broadcastTo(this.#p('gen.tok_embed').slice([GEN, 0], [1, W]).reshape([1, 1, W]), [B, 1, W]);
    const xt = tf.add(
      tf.concat([genRow, this.#gather('gen.img_embed', body, [B, Lt - 1])], 1),
      this.#p('gen.pos_img').slice([0, 0], [Lt, -1]),
    );

    // visibility (SPEC §4) as an additive bias: never a PAD key; condition queries see condition keys only
    const L = Lc + Lt;
    const bias = new Float32Array(B * L * L);
    for (let i = 0; i < B; i++) {
      for (let q = 0; q < L; q++) {
        for (let k = 0; k < L; k++) {
          const visible = k < Lc ? !condPad[i * Lc + k] : q >= Lc && (!ar || k <= q);
          if (!visible) bias[(i * L + q) * L + k] = -Infinity;
        }
      }
    }
    const biasT = tf.tensor(bias, [B, 1, L, L], 'float32');
    let x = tf.concat([xc, xt], 1);
    for (let l = 0; l < cfg.depth; l++) x = this.#block(`gen.blocks.${l}`, x, cfg.heads, biasT);
    const h = this.#layerNorm('gen.ln_f', x);

    // CE: ar predicts x_{j+1} at target position j (all N); mask predicts x_j at position j ≥ 1 where masked
    const from = ar ? Lc : Lc + 1;
    const logits = this.#linear('gen.head_img', h.slice([0, from, 0], [B, N, -1])).reshape([B * N, K]);
    const picked = tf.sum(tf.mul(logits, tf.oneHot(tf.tensor(codes, [B * N], 'int32'), K)), -1);
    const ce = tf.sub(tf.logSumExp(logits, -1), picked);
    if (ar) return tf.mean(ce) as TF.Scalar;
    const weight = Float32Array.from(b.masked!);
    const count = weight.reduce((s, v) => s + v, 0);
    return tf.div(tf.sum(tf.mul(ce, tf.tensor(weight, [B * N], 'float32'))), count) as TF.Scalar;
  }

  /**
   * One training step: loss and gradients of the trainable tensors
   * (tf.variableGrads), global-norm clipping, AdamW (SPEC §6). Returns the loss.
   */
  step(b: StepBatch, o = { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.02, maxGradNorm: 1 }): number {
    const tf = this.tf;
    const { value, grads } = tf.variableGrads(() => this.loss(b), this.trainable);
    // A trainable tensor the loss does not reach (head_txt here) gets a zero gradient, as in SPEC §6's reference.
    for (const p of this.trainable) grads[p.name] ??= tf.zerosLike(p);
    const loss = value.dataSync()[0];
    value.dispose();
    this.#t++;
    const bc1 = 1 - o.beta1 ** this.#t;
    const bc2 = 1 - o.beta2 ** this.#t;
    tf.tidy(() => {
      const sq = tf.addN(this.trainable.map((p) => grads[p.name]).map((g) => tf.sum(tf.square(g))));
      const n = Math.sqrt(sq.dataSync()[0]);
      const scale = o.maxGradNorm > 0 && n > o.maxGradNorm ? o.maxGradNorm / (n + 1e-6) : 1;
      for (const p of this.trainable) {
        const g = scale === 1 ? grads[p.name] : tf.mul(grads[p.name], scale);
        let m = this.#m.get(p.name);
        let v = this.#v.get(p.name);
        if (!m || !v) {
          m = tf.variable(tf.zerosLike(p), false);
          v = tf.variable(tf.zerosLike(p), false);
          this.#m.set(p.name, m);
          this.#v.set(p.name, v);
        }
        m.assign(tf.add(tf.mul(o.beta1, m), tf.mul(1 - o.beta1, g)));
        v.assign(tf.add(tf.mul(o.beta2, v), tf.mul(1 - o.beta2, tf.square(g))));
        const decays = p.name.endsWith('.weight') && p.shape.length === 2;
        const decayed = decays ? tf.mul(p, 1 - o.lr * o.weightDecay) : p;
        const update = tf.div(tf.div(m, bc1), tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), o.eps));
        p.assign(tf.sub(decayed, tf.mul(o.lr, update)));
      }
    });
    for (const g of Object.values(grads)) g.dispose();
    return loss;
  }
}

export interface StepDump {
  dir: string;
  config: Config;
  task: Task;
  loss: number;
  params: Map<string, StoredTensor>;
  batch: StepBatch;
}

/** Reads a `reca debug-step` directory (params.safetensors, batch.safetensors, result.json). */
export function readStepDump(dir: string): StepDump {
  const result = JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8')) as {
    config: Config;
    task: Task;
    loss: number;
    batch: number;
  };
  const params = readSafetensors(path.join(dir, 'params.safetensors')).tensors;
  const b = readSafetensors(path.join(dir, 'batch.safetensors')).tensors;
  const batch: StepBatch = {
    images: b.get('images')!.data as Uint8Array,
    text: b.get('text')!.data as Int32Array,
    masked: b.get('masked')?.data as Uint8Array | undefined,
    batch: result.batch,
  };
  return { dir, config: result.config, task: result.task, loss: result.loss, params, batch };
}

export interface TfjsLossCheck {
  backend: TfjsBackend;
  ours: number;
  tfjs: number;
  relativeDifference: number;
}

/** The TF.js loss of a dump's weights and batch, beside the engine's. */
export function tfjsLossOfDump(t: LoadedTf, dump: StepDump): TfjsLossCheck {
  const model = new TfjsRecaMini(t.tf, dump.config, dump.task, dump.params, () => false);
  try {
    const tfjs = t.tf.tidy(() => model.loss(dump.batch).dataSync()[0]);
    return { backend: t.backend, ours: dump.loss, tfjs, relativeDifference: Math.abs(tfjs - dump.loss) / Math.abs(dump.loss) };
  } finally {
    model.dispose();
  }
}

export interface TfjsStepResult {
  peer: 'tfjs';
  backend: TfjsBackend;
  tfjs: string;
  threads: number;
  preset: 'tiny';
  mode: Mode;
  task: Task;
  batch: number;
  step_seconds: number;
  step_seconds_all: number[];
  images_per_s: number;
  tokens_per_s: number;
  loss_check: TfjsLossCheck;
}

/**
 * Dumps a tiny-preset step of our engine, checks the TF.js loss against it,
 * then times TF.js steps (generator trainable: the reca recipe) on that batch.
 */
export async function benchTfjsStep(
  t: LoadedTf,
  o: { mode: Mode; task: Task; batch: number; steps: number },
): Promise<TfjsStepResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-tfjs-'));
  try {
    await debugStep({ preset: 'tiny', mode: o.mode, task: o.task, batch: o.batch, seed: 0, out: dir, freeze: ['und', 'conn', 'vq'] });
    const dump = readStepDump(dir);
    const check = tfjsLossOfDump(t, dump);
    const model = new TfjsRecaMini(t.tf, dump.config, dump.task, dump.params, (n) => n.startsWith('gen.'));
    try {
      model.step(dump.batch); // warm-up
      const seconds: number[] = [];
      for (let i = 0; i < o.steps; i++) {
        const t0 = process.hrtime.bigint();
        model.step(dump.batch);
        seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
      }
      const step = median(seconds);
      const cfg = dump.config;
      const Nu = (cfg.und_image_size / cfg.und_patch) ** 2;
      const N = (cfg.image_size / cfg.gen_patch) ** 2;
      const seq = (o.task === 'reca' ? 3 + Nu : 1) + cfg.max_text_len + (o.mode === 'ar' ? N : N + 1);
      return {
        peer: 'tfjs', backend: t.backend, tfjs: t.version, threads: t.threads, preset: 'tiny', mode: o.mode,
        task: o.task, batch: o.batch, step_seconds: step, step_seconds_all: seconds, images_per_s: o.batch / step,
        tokens_per_s: (o.batch * seq) / step, loss_check: check,
      };
    } finally {
      model.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
