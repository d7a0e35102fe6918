// Do an image's RecA condition and its caption look alike inside the generator?
// (benchmarks/RESULTS.md, "Is the RecA condition aligned with the caption?").
//   [RECA_THREADS=N] node benchmarks/condition_alignment.js MODEL [IMAGES] [JSON]
// RecA trains the generator on the condition block of docs/SPEC.md §4's `reca` layout
// (BOS, IMG_BEGIN, c_1..c_Nu, IMG_END, template); text-to-image reads the `t2i` layout
// (BOS, caption). A gain can carry over from one to the other only through what the two
// share. Condition queries see only condition keys (§4), so each block's hidden states
// are computed here on their own, from the checkpoint's weights, in plain JS with the
// engine's matmul. For IMAGES renders of every prompt (default 600; seed 3), each layout's
// hidden state after every generator block (layer 0 = the input embeddings) is averaged
// over its visible slots, and the two sets are compared per layer:
// - zero-shot retrieval: each image's `reca` vector, cosine against the `t2i` vectors of
//   every distinct caption in the set (each side centred on its own mean); top-1 = its own
//   caption. This is what "the same space" means: no map fitted.
// - fitted retrieval: the same after a ridge map from `reca` to `t2i` vectors fitted on
//   the other half of the images (two folds): the caption is in the condition, aligned or not.
// - linear CKA of the two sets (1 = the same geometry up to rotation and scale).
const fs = require('fs');
const { Model, Tensor, ops, setThreads } = require('../dist');
const { ShapesWorld } = require('../dist/shapes/world.js');
const { SCHEMA, fieldDefault } = require('../dist/generated/schema.js');
const { choleskySolve } = require('./linalg');

const { pad: PAD, bos: BOS, imgBegin: IMG_BEGIN, imgEnd: IMG_END } = SCHEMA.tokens;

function layerNorm(x, rows, W, gain, bias) {
  const out = new Float32Array(rows * W);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let j = 0; j < W; j++) mean += x[r * W + j];
    mean /= W;
    let variance = 0;
    for (let j = 0; j < W; j++) variance += (x[r * W + j] - mean) ** 2;
    const inv = 1 / Math.sqrt(variance / W + 1e-5);
    for (let j = 0; j < W; j++) out[r * W + j] = (x[r * W + j] - mean) * inv * gain[j] + bias[j];
  }
  return out;
}

function linear(x, rows, inW, weight, bias) {
  const xt = Tensor.from(x, [rows, inW]);
  const y = ops.matmul(xt, weight, { transB: true, bias });
  const v = y.toArray();
  xt.dispose(); y.dispose();
  return v;
}

/** Hidden states after each block of B condition sequences of L slots (`input` [B·L, W]); `visible[b·L+i]` marks non-PAD keys. */
function conditionLayers(p, cfg, input, visible, B, L) {
  const W = cfg.width, H = cfg.heads, hd = W / H, scale = 1 / Math.sqrt(hd), rows = B * L;
  let x = Float32Array.from(input);
  const layers = [Float32Array.from(x)];
  const scores = new Float64Array(L);
  for (let l = 0; l < cfg.depth; l++) {
    const g = (n) => p.values[`gen.blocks.${l}.${n}`], t = (n) => p.tensors[`gen.blocks.${l}.${n}`];
    const qkv = linear(layerNorm(x, rows, W, g('ln1.weight'), g('ln1.bias')), rows, W, t('attn.qkv.weight'), t('attn.qkv.bias'));
    const attended = new Float32Array(rows * W);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let q = 0; q < L; q++) {
      const qo = (b * L + q) * 3 * W + h * hd;
      let max = -Infinity;
      for (let k = 0; k < L; k++) {
        if (!visible[b * L + k]) { scores[k] = -Infinity; continue; }
        const ko = (b * L + k) * 3 * W + W + h * hd;
        let s = 0;
        for (let d = 0; d < hd; d++) s += qkv[qo + d] * qkv[ko + d];
        scores[k] = s * scale;
        if (scores[k] > max) max = scores[k];
      }
      let sum = 0;
      for (let k = 0; k < L; k++) { scores[k] = scores[k] === -Infinity ? 0 : Math.exp(scores[k] - max); sum += scores[k]; }
      const out = (b * L + q) * W + h * hd;
      for (let k = 0; k < L; k++) {
        if (scores[k] === 0) continue;
        const w = scores[k] / sum, vo = (b * L + k) * 3 * W + 2 * W + h * hd;
        for (let d = 0; d < hd; d++) attended[out + d] += w * qkv[vo + d];
      }
    }
    const proj = linear(attended, rows, W, t('attn.proj.weight'), t('attn.proj.bias'));
    for (let i = 0; i < x.length; i++) x[i] += proj[i];
    const hidden = linear(layerNorm(x, rows, W, g('ln2.weight'), g('ln2.bias')), rows, W, t('mlp.fc1.weight'), t('mlp.fc1.bias'));
    const ht = Tensor.from(hidden, [rows, hidden.length / rows]);
    const act = ops.gelu(ht);
    const mlp = ops.matmul(act, t('mlp.fc2.weight'), { transB: true, bias: t('mlp.fc2.bias') });
    const mv = mlp.toArray();
    [ht, act, mlp].forEach((t) => t.dispose());
    for (let i = 0; i < x.length; i++) x[i] += mv[i];
    layers.push(Float32Array.from(x));
  }
  return layers;
}

/** Mean over each sequence's visible slots: [B, W] per layer. */
function pool(layers, visible, B, L, W) {
  return layers.map((h) => {
    const out = new Float64Array(B * W);
    for (let b = 0; b < B; b++) {
      let n = 0;
      for (let i = 0; i < L; i++) {
        if (!visible[b * L + i]) continue;
        n++;
        for (let j = 0; j < W; j++) out[b * W + j] += h[(b * L + i) * W + j];
      }
      for (let j = 0; j < W; j++) out[b * W + j] /= n;
    }
    return out;
  });
}

function textRow(text, T) {
  const bytes = Buffer.from(text, 'utf8');
  const row = new Int32Array(T).fill(PAD);
  for (let t = 0; t < Math.min(T, bytes.length); t++) row[t] = bytes[t];
  return row;
}

/** Input embeddings of the `reca` (c given) or `t2i` (c null) condition block for one sample. */
function conditionInput(p, cfg, text, c, nu) {
  const W = cfg.width, T = cfg.max_text_len, tok = p.values['gen.tok_embed'], pos = p.values['gen.pos_cond'];
  const ids = c ? [BOS, IMG_BEGIN, ...new Array(nu).fill(-1), IMG_END, ...textRow(text, T)] : [BOS, ...textRow(text, T)];
  const L = ids.length, x = new Float32Array(L * W), visible = new Uint8Array(L);
  for (let i = 0; i < L; i++) {
    visible[i] = ids[i] === PAD ? 0 : 1;
    for (let j = 0; j < W; j++) x[i * W + j] = (ids[i] >= 0 ? tok[ids[i] * W + j] : c[(i - 2) * W + j]) + pos[i * W + j];
  }
  return { x, visible, L };
}

function meanRow(rows, n, W) {
  const mean = new Float64Array(W);
  for (let r = 0; r < n; r++) for (let j = 0; j < W; j++) mean[j] += rows[r * W + j] / n;
  return mean;
}

function centre(rows, n, W, mean = meanRow(rows, n, W)) {
  const out = new Float64Array(n * W);
  for (let r = 0; r < n; r++) for (let j = 0; j < W; j++) out[r * W + j] = rows[r * W + j] - mean[j];
  return out;
}

function unit(rows, n, W) {
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let j = 0; j < W; j++) s += rows[r * W + j] ** 2;
    s = 1 / (Math.sqrt(s) + 1e-12);
    for (let j = 0; j < W; j++) rows[r * W + j] *= s;
  }
  return rows;
}

/** Top-1: for each query row i, is the best-scoring key (cosine) key[own[i]]? */
function top1(query, keys, own, n, K, W) {
  let hits = 0;
  for (let i = 0; i < n; i++) {
    let best = -Infinity, arg = -1;
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = 0; j < W; j++) s += query[i * W + j] * keys[k * W + j];
      if (s > best) { best = s; arg = k; }
    }
    if (arg === own[i]) hits++;
  }
  return hits / n;
}

function cka(x, y, n, W) {
  const a = centre(x, n, W), b = centre(y, n, W);
  const cross = (u, v) => {
    let s = 0;
    for (let p = 0; p < W; p++) for (let q = 0; q < W; q++) {
      let d = 0;
      for (let r = 0; r < n; r++) d += u[r * W + p] * v[r * W + q];
      s += d * d;
    }
    return s;
  };
  return cross(a, b) / Math.sqrt(cross(a, a) * cross(b, b));
}

/** Ridge map rows of x → rows of y (both [n, W]) on the rows in `fitRows`, applied to `rows`. */
function ridgeMap(x, y, W, fitRows, rows, lambda) {
  const D = W + 1, a = new Float64Array(D * D), rhs = new Float64Array(D * W), row = new Float64Array(D);
  for (const r of fitRows) {
    for (let j = 0; j < W; j++) row[j] = x[r * W + j];
    row[W] = 1;
    for (let p = 0; p < D; p++) {
      for (let q = 0; q <= p; q++) a[p * D + q] += row[p] * row[q];
      for (let k = 0; k < W; k++) rhs[p * W + k] += row[p] * y[r * W + k];
    }
  }
  let trace = 0;
  for (let p = 0; p < W; p++) trace += a[p * D + p];
  for (let p = 0; p < D; p++) for (let q = p + 1; q < D; q++) a[p * D + q] = a[q * D + p];
  for (let p = 0; p < W; p++) a[p * D + p] += lambda * trace / W;
  choleskySolve(a, rhs, D, W);
  const out = new Float64Array(rows.length * W);
  rows.forEach((r, o) => {
    for (let k = 0; k < W; k++) {
      let s = rhs[W * W + k];
      for (let p = 0; p < W; p++) s += x[r * W + p] * rhs[p * W + k];
      out[o * W + k] = s;
    }
  });
  return out;
}

async function main() {
  const [modelPath, imagesArg, jsonPath] = process.argv.slice(2);
  if (!modelPath) throw new Error('usage: node benchmarks/condition_alignment.js MODEL [IMAGES] [JSON]');
  setThreads(Number(process.env.RECA_THREADS ?? 1));
  const n = Number(imagesArg ?? 600);
  const model = await Model.load(modelPath);
  const cfg = model.config, W = cfg.width, S = cfg.image_size, nu = (cfg.und_image_size / cfg.und_patch) ** 2;
  // The generator's weights: values for the JS parts, tensors for the engine's matmul.
  const p = { values: {}, tensors: {} };
  for (const name of model.parameterNames()) if (name.startsWith('gen.')) {
    const t = await model.parameter(name);
    p.values[name] = t.toArray();
    p.tensors[name] = t;
  }
  const world = new ShapesWorld({ imageSize: S, split: 'all', seed: 3 });
  const batch = world.batch(n, 0);
  const c = (await model.embed({ data: batch.images, shape: batch.shape })).toArray();
  const template = fieldDefault(SCHEMA.trainer, 'template');
  const distinct = [...new Set(batch.captions)];
  const own = batch.captions.map((t) => distinct.indexOf(t));
  const chunk = 50, recaPooled = [], t2iPooled = [];
  const run = (texts, withC, sink) => {
    for (let s = 0; s < texts.length; s += chunk) {
      const B = Math.min(chunk, texts.length - s);
      const parts = [];
      for (let b = 0; b < B; b++) parts.push(conditionInput(p, cfg, texts[s + b], withC ? c.subarray((s + b) * nu * W, (s + b + 1) * nu * W) : null, nu));
      const L = parts[0].L, input = new Float32Array(B * L * W), visible = new Uint8Array(B * L);
      parts.forEach((part, b) => { input.set(part.x, b * L * W); visible.set(part.visible, b * L); });
      pool(conditionLayers(p, cfg, input, visible, B, L), visible, B, L, W).forEach((v, l) => { (sink[l] ??= []).push(v); });
    }
  };
  const started = Date.now();
  run(batch.captions.map(() => template), true, recaPooled);
  run(distinct, false, t2iPooled);
  const cat = (list) => { const out = new Float64Array(list.reduce((s, a) => s + a.length, 0)); let o = 0; for (const a of list) { out.set(a, o); o += a.length; } return out; };
  const layers = [];
  const half = [[], []];
  for (let i = 0; i < n; i++) half[i % 2].push(i);
  for (let l = 0; l <= cfg.depth; l++) {
    const x = cat(recaPooled[l]), yDistinct = cat(t2iPooled[l]);
    const y = new Float64Array(n * W);
    for (let i = 0; i < n; i++) y.set(yDistinct.subarray(own[i] * W, (own[i] + 1) * W), i * W);
    // The captions' vectors, centred on their mean and unit length: the keys of both retrievals.
    const keyMean = meanRow(yDistinct, distinct.length, W);
    const keys = unit(centre(yDistinct, distinct.length, W, keyMean), distinct.length, W);
    const zeroShot = top1(unit(centre(x, n, W), n, W), keys, own, n, distinct.length, W);
    let fittedHits = 0;
    for (let fold = 0; fold < 2; fold++) {
      const test = half[1 - fold], mapped = ridgeMap(x, y, W, half[fold], test, 1e-3);
      for (let o = 0; o < test.length; o++) for (let j = 0; j < W; j++) mapped[o * W + j] -= keyMean[j];
      fittedHits += top1(unit(mapped, test.length, W), keys, test.map((i) => own[i]), test.length, distinct.length, W) * test.length;
    }
    const row = { layer: l, zeroShotTop1: zeroShot, fittedTop1: fittedHits / n, cka: cka(x, y, n, W) };
    layers.push(row);
    console.log(`layer ${l}: zero-shot top-1 ${row.zeroShotTop1.toFixed(3)}  fitted top-1 ${row.fittedTop1.toFixed(3)}  CKA ${row.cka.toFixed(3)}`);
  }
  const result = { model: modelPath, images: n, distinctCaptions: distinct.length, chance: 1 / distinct.length, template, layers, seconds: (Date.now() - started) / 1000 };
  console.log(`${n} images, ${distinct.length} distinct captions (chance ${(1 / distinct.length).toFixed(4)}), ${result.seconds.toFixed(0)} s`);
  if (jsonPath) fs.writeFileSync(jsonPath, JSON.stringify(result, null, 2) + '\n');
  for (const t of Object.values(p.tensors)) t.dispose();
  model.dispose();
}

main().catch((e) => { console.error(e); process.exit(1); });
