// Can the image be read back from the RecA condition by a linear map?
// (benchmarks/RESULTS.md, "Where reconstruction loses the shape").
//   [RECA_THREADS=N] node benchmarks/condition_readback.js MODEL [FIT_IMAGES] [JSON]
// Two inputs are compared: each understanding cell's pooled pixels (what the encoder is
// given, docs/SPEC.md §3) and the condition c_n at that cell (model.embed).
// 1. Read-back: ridge regressions fitted on FIT_IMAGES uncaptioned renders (default 4000;
//    every prompt's layouts, seed 1, as the RecA data) map (a) one cell's features to that
//    cell's full-resolution pixels and (b) every cell's features to the whole image (kernel
//    ridge on the first 2000). The ShapesEval eval renders (232 prompts × 2) are decoded and
//    scored against their own prompts, as the demo scores reconstructions. The decoders are
//    linear, so a score is a lower bound on what the input carries.
// 2. A lone object: 3000 renders of the single-object prompts (2200 fit, 800 held out), its
//    shape and colour classified from every cell's features at once (one-hot kernel ridge).
const fs = require('fs');
const { Model, Tensor, ops, setThreads } = require('../dist');
const { ShapesWorld, COLORS, SHAPES, Rng, allPrompts, layoutScene, renderScene } = require('../dist/shapes/world.js');
const { evalSet, renderEvalImages, scoreImages } = require('../dist/shapes/eval.js');
const { choleskyFactor, choleskySolve } = require('./linalg');

/** Per cell of a batch: the pooled input pixels, the full-resolution target pixels. */
function cellPixels(images, count, c) {
  const S = c.image_size, grid = c.und_image_size / c.und_patch, cell = S / grid;
  const f = S / c.und_image_size, P = c.und_patch;
  const pooled = new Float32Array(count * grid * grid * P * P * 3);
  const target = new Float32Array(count * grid * grid * cell * cell * 3);
  let pi = 0, ti = 0;
  for (let i = 0; i < count; i++) for (let gy = 0; gy < grid; gy++) for (let gx = 0; gx < grid; gx++) {
    for (let py = 0; py < P; py++) for (let px = 0; px < P; px++) for (let ch = 0; ch < 3; ch++) {
      let sum = 0;
      for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) sum += images[((i * S + (gy * P + py) * f + dy) * S + (gx * P + px) * f + dx) * 3 + ch];
      pooled[pi++] = sum / (f * f) / 255;
    }
    for (let y = 0; y < cell; y++) for (let x = 0; x < cell; x++) for (let ch = 0; ch < 3; ch++) target[ti++] = images[((i * S + gy * cell + y) * S + gx * cell + x) * 3 + ch];
  }
  return { pooled, target };
}

/** Ridge fit of target rows (K values) on feature rows (F values), features standardised, bias unpenalised. */
function fit(x, y, rows, F, K, lambda = 1e-3) {
  const mean = new Float64Array(F), scale = new Float64Array(F);
  for (let r = 0; r < rows; r++) for (let j = 0; j < F; j++) mean[j] += x[r * F + j] / rows;
  for (let r = 0; r < rows; r++) for (let j = 0; j < F; j++) scale[j] += (x[r * F + j] - mean[j]) ** 2 / rows;
  for (let j = 0; j < F; j++) scale[j] = 1 / (Math.sqrt(scale[j]) + 1e-6);
  const D = F + 1, a = new Float64Array(D * D), b = new Float64Array(D * K), row = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < F; j++) row[j] = (x[r * F + j] - mean[j]) * scale[j];
    row[F] = 1;
    for (let p = 0; p < D; p++) {
      const v = row[p];
      if (v === 0) continue;
      for (let q = 0; q <= p; q++) a[p * D + q] += v * row[q];
      for (let k = 0; k < K; k++) b[p * K + k] += v * y[r * K + k];
    }
  }
  for (let p = 0; p < D; p++) for (let q = p + 1; q < D; q++) a[p * D + q] = a[q * D + p];
  for (let p = 0; p < F; p++) a[p * D + p] += lambda * rows;
  const w = choleskySolve(a, b, D, K);
  return (xr, out) => {
    for (let j = 0; j < F; j++) row[j] = (xr[j] - mean[j]) * scale[j];
    row[F] = 1;
    for (let k = 0; k < K; k++) { let s = 0; for (let p = 0; p < D; p++) s += row[p] * w[p * K + k]; out[k] = s; }
  };
}

/**
 * Whole-image read-back: kernel ridge regression (dual form) of every pixel of the image on
 * the features of every cell at once, features standardised over the fit rows. Products run
 * through the engine's matmul; the n×n Cholesky factor and its inverse in float64 here.
 */
function fitWhole(x, y, n, F, K, lambda = 1e-2) {
  const mean = new Float64Array(F), scale = new Float64Array(F);
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) mean[j] += x[r * F + j] / n;
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) scale[j] += (x[r * F + j] - mean[j]) ** 2 / n;
  for (let j = 0; j < F; j++) scale[j] = 1 / (Math.sqrt(scale[j]) + 1e-6);
  const standardise = (src, rows) => {
    const out = new Float32Array(rows * F);
    for (let r = 0; r < rows; r++) for (let j = 0; j < F; j++) out[r * F + j] = (src[r * F + j] - mean[j]) * scale[j];
    return Tensor.from(out, [rows, F]);
  };
  const xf = standardise(x, n);
  const gram = ops.matmul(xf, xf, { transB: true });
  const g = Float64Array.from(gram.toArray());
  gram.dispose();
  for (let i = 0; i < n; i++) g[i * n + i] += lambda * F;
  choleskyFactor(g, n); // g = L Lᵀ
  const inv = new Float64Array(n * n); // L⁻¹, lower triangular
  for (let c = 0; c < n; c++) {
    inv[c * n + c] = 1 / g[c * n + c];
    for (let i = c + 1; i < n; i++) {
      let t = 0;
      for (let k = c; k < i; k++) t -= g[i * n + k] * inv[k * n + c];
      inv[i * n + c] = t / g[i * n + i];
    }
  }
  const linv = Tensor.from(Float32Array.from(inv), [n, n]);
  const yMean = new Float64Array(K);
  for (let r = 0; r < n; r++) for (let k = 0; k < K; k++) yMean[k] += y[r * K + k] / n;
  const yc = new Float32Array(n * K);
  for (let r = 0; r < n; r++) for (let k = 0; k < K; k++) yc[r * K + k] = y[r * K + k] - yMean[k];
  const yt = Tensor.from(yc, [n, K]);
  const z = ops.matmul(linv, yt); // L⁻¹ Y
  const alpha = ops.matmul(linv, z, { transA: true }); // L⁻ᵀ L⁻¹ Y = (G + λI)⁻¹ Y
  [linv, yt, z].forEach((t) => t.dispose());
  return (xe, rows) => {
    const xs = standardise(xe, rows);
    const k = ops.matmul(xs, xf, { transB: true });
    const out = ops.matmul(k, alpha);
    const v = out.toArray();
    [xs, k, out].forEach((t) => t.dispose());
    for (let r = 0; r < rows; r++) for (let j = 0; j < K; j++) v[r * K + j] += yMean[j];
    return v;
  };
}

async function features(model, images, count) {
  const c = model.config, S = c.image_size, chunk = 256, N = (c.und_image_size / c.und_patch) ** 2;
  const out = new Float32Array(count * N * c.width);
  for (let at = 0; at < count; at += chunk) {
    const n = Math.min(chunk, count - at);
    const t = await model.embed({ data: images.subarray(at * S * S * 3, (at + n) * S * S * 3), shape: [n, S, S, 3] });
    out.set(t.toArray(), at * N * c.width);
    t.dispose();
  }
  return out;
}

async function main() {
  const [file, fitArg, jsonOut] = process.argv.slice(2);
  if (!file) throw new Error('usage: node benchmarks/condition_readback.js MODEL [FIT_IMAGES] [JSON]');
  if (process.env.RECA_THREADS) setThreads(Number(process.env.RECA_THREADS));
  const fitImages = Number(fitArg ?? 4000);
  const model = await Model.load(file);
  const c = model.config, S = c.image_size, grid = c.und_image_size / c.und_patch, cell = S / grid, N = grid * grid;
  const fitBatch = new ShapesWorld({ imageSize: S, split: 'all', seed: 1 }).batch(fitImages, 0);
  const items = evalSet({ samplesPerPrompt: 2 });
  const evalImages = renderEvalImages(items, S);
  const fitCells = cellPixels(fitBatch.images, fitImages, c), evalCells = cellPixels(evalImages, items.length, c);
  const fitCond = await features(model, fitBatch.images, fitImages), evalCond = await features(model, evalImages, items.length);
  // A lone object's shape and colour from every cell at once.
  const singles = allPrompts().filter((p) => p.category === 'single');
  const lone = 3000, loneFit = 2200, loneImages = new Uint8Array(lone * S * S * 3), shape = [], colour = [];
  const rng = new Rng(11);
  for (let i = 0; i < lone; i++) {
    const scene = layoutScene(singles[rng.int(singles.length)], S, rng);
    renderScene(scene, S, loneImages, i * S * S * 3);
    shape.push(SHAPES.indexOf(scene.objects[0].shape));
    colour.push(COLORS.findIndex((k) => k.name === scene.objects[0].color));
  }
  const loneCond = await features(model, loneImages, lone);
  model.dispose();
  const K = cell * cell * 3, rows = fitImages * N;
  const inputs = { 'pooled input': [fitCells.pooled, evalCells.pooled, c.und_patch ** 2 * 3], condition: [fitCond, evalCond, c.width] };
  const result = { model: file, fitImages, wholeFitImages: Math.min(fitImages, 2000), evalImages: items.length, rows: [] };
  console.log(`${file}: linear read-back fitted on ${fitImages} renders (whole image: ${result.wholeFitImages}), scored on ${items.length}`);
  const report = (name, decoder, F, images) => {
    let absErr = 0;
    for (let i = 0; i < images.length; i++) absErr += Math.abs(images[i] - evalImages[i]);
    const r = scoreImages(items, images, S);
    result.rows.push({ input: name, decoder, features: F, shapesEval: r.overall, categories: r.categories, meanAbsPixelError: absErr / images.length });
    console.log(`  ${name.padEnd(12)} ${decoder.padEnd(28)} (${String(F).padStart(4)} features): ShapesEval ${r.overall.toFixed(3)}, mean |pixel error| ${(absErr / images.length).toFixed(1)} ` +
      `(${Object.entries(r.categories).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')})`);
  };
  const toBytes = (v) => Math.max(0, Math.min(255, Math.round(v)));
  for (const [name, [xf, xe, F]] of Object.entries(inputs)) {
    // One cell's features -> that cell's pixels.
    const decode = fit(xf, fitCells.target, rows, F, K);
    const images = new Uint8Array(evalImages.length), out = new Float64Array(K);
    for (let i = 0; i < items.length; i++) for (let t = 0; t < N; t++) {
      decode(xe.subarray((i * N + t) * F, (i * N + t + 1) * F), out);
      const gy = Math.floor(t / grid), gx = t % grid;
      for (let y = 0; y < cell; y++) for (let x = 0; x < cell; x++) for (let ch = 0; ch < 3; ch++) {
        images[((i * S + gy * cell + y) * S + gx * cell + x) * 3 + ch] = toBytes(out[(y * cell + x) * 3 + ch]);
      }
    }
    report(name, 'cell -> its pixels', F, images);
    // Every cell's features -> the whole image.
    const n = result.wholeFitImages, frame = S * S * 3;
    const target = new Float32Array(n * frame);
    for (let i = 0; i < n * frame; i++) target[i] = fitBatch.images[i];
    const decodeWhole = fitWhole(xf.subarray(0, n * N * F), target, n, N * F, frame);
    const v = decodeWhole(xe, items.length);
    report(name, 'all cells -> whole image', N * F, Uint8Array.from(v, toBytes));
  }
  // A lone object's shape and colour from every cell at once.
  const lonePooled = cellPixels(loneImages, lone, c).pooled;
  result.loneObject = { images: lone, fit: loneFit, accuracy: {} };
  for (const [name, x, F] of [['pooled input', lonePooled, N * c.und_patch ** 2 * 3], ['condition', loneCond, N * c.width]]) {
    for (const [label, y, K] of [['shape', shape, SHAPES.length], ['colour', colour, COLORS.length]]) {
      const onehot = new Float32Array(loneFit * K);
      for (let i = 0; i < loneFit; i++) onehot[i * K + y[i]] = 1;
      const scores = fitWhole(x.subarray(0, loneFit * F), onehot, loneFit, F, K)(x.subarray(loneFit * F), lone - loneFit);
      let right = 0;
      for (let i = 0; i < lone - loneFit; i++) {
        let best = 0;
        for (let k = 1; k < K; k++) if (scores[i * K + k] > scores[i * K + best]) best = k;
        if (best === y[loneFit + i]) right++;
      }
      result.loneObject.accuracy[`${label} from ${name}`] = right / (lone - loneFit);
    }
  }
  console.log(`  a lone object (${lone - loneFit} held out; chance: shape 1/${SHAPES.length}, colour 1/${COLORS.length}): ` +
    Object.entries(result.loneObject.accuracy).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', '));
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
