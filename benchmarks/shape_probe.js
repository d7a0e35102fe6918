// Does the RecA condition carry each object's shape? (benchmarks/RESULTS.md, "The
// connector-output LayerNorm in the model").
//   node benchmarks/shape_probe.js MODEL [IMAGES] [JSON]
// For every object of IMAGES eval-split scenes (default 600, seed 0), the understanding
// cell holding its centre gives three feature vectors: the condition c_n there
// (model.embed), the encoder's own input for that cell (the image average-pooled as the
// model pools it, one und_patch), and the cell's full-resolution pixels. A ridge probe
// (lib/shapes/probe.ts, the one `reca probe` uses; 70% of the images fit, 30% held out)
// predicts the object's shape (circle, square, triangle) from each.
const fs = require('fs');
const { Model } = require('../dist');
const { ridgeProbe } = require('../dist/shapes/probe.js');
const { ShapesWorld, SHAPES } = require('../dist/shapes/world.js');

async function main() {
  const [file, imagesArg, jsonOut] = process.argv.slice(2);
  if (!file) throw new Error('usage: node benchmarks/shape_probe.js MODEL [IMAGES] [JSON]');
  const images = Number(imagesArg ?? 600);
  const model = await Model.load(file);
  const c = model.config;
  const S = c.image_size, W = c.width, grid = c.und_image_size / c.und_patch, cell = S / grid;
  const f = S / c.und_image_size, P = c.und_patch;
  const world = new ShapesWorld({ imageSize: S, split: 'eval', seed: 0 });
  const batch = world.batch(images, 0);
  const cond = await model.embed({ data: batch.images, shape: batch.shape });
  const cv = cond.toArray();
  cond.dispose();
  model.dispose();
  const rows = { condition: [], pooled: [], pixels: [] };
  const labels = [];
  let trainRows = 0;
  const train = Math.floor(images * 0.7);
  for (let i = 0; i < images; i++) {
    if (i === train) trainRows = labels.length;
    for (const o of world.scene(i).objects) {
      const gx = Math.min(grid - 1, Math.floor(o.cx / cell)), gy = Math.min(grid - 1, Math.floor(o.cy / cell));
      const t = gy * grid + gx;
      rows.condition.push(cv.subarray((i * grid * grid + t) * W, (i * grid * grid + t + 1) * W));
      const pooled = [], pixels = [];
      for (let py = 0; py < P; py++) for (let px = 0; px < P; px++) for (let ch = 0; ch < 3; ch++) {
        let sum = 0;
        for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) {
          const y = (gy * P + py) * f + dy, x = (gx * P + px) * f + dx;
          sum += batch.images[((i * S + y) * S + x) * 3 + ch];
        }
        pooled.push(sum / (f * f));
      }
      for (let y = gy * cell; y < (gy + 1) * cell; y++) for (let x = gx * cell; x < (gx + 1) * cell; x++) for (let ch = 0; ch < 3; ch++) {
        pixels.push(batch.images[((i * S + y) * S + x) * 3 + ch]);
      }
      rows.pooled.push(pooled);
      rows.pixels.push(pixels);
      labels.push(SHAPES.indexOf(o.shape));
    }
  }
  const y = Int32Array.from(labels);
  const held = labels.slice(trainRows);
  const majority = Math.max(...SHAPES.map((_, k) => held.filter((v) => v === k).length)) / held.length;
  const result = { model: file, images, objects: labels.length, heldOut: held.length, majority, accuracy: {} };
  for (const [name, list] of Object.entries(rows)) {
    const dim = list[0].length;
    const x = new Float32Array(list.length * dim);
    list.forEach((r, k) => x.set(r, k * dim));
    result.accuracy[name] = { dim, accuracy: ridgeProbe(x, y, dim, SHAPES.length, trainRows) };
  }
  console.log(`${file}: ${result.objects} objects (${result.heldOut} held out), majority ${majority.toFixed(3)}`);
  for (const [name, r] of Object.entries(result.accuracy)) console.log(`  shape from ${name.padEnd(9)} (${String(r.dim).padStart(3)} features): ${r.accuracy.toFixed(3)}`);
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
