// How much of ShapesEval survives the understanding input's average pooling?
// (benchmarks/RESULTS.md, "Where reconstruction loses the shape").
//   node benchmarks/pooling_ceiling.js [SAMPLES_PER_PROMPT] [JSON]
// Each ShapesEval eval scene (232 prompts × SAMPLES_PER_PROMPT, default 1) is rendered at
// 32 px, average-pooled to a side of 16 or 8 pixels as the understanding input is
// (docs/SPEC.md §3), read back to 32 px by a fixed decoder with nothing learned (nearest
// or bilinear upsampling) and scored against its own prompt. A score here is a lower bound
// on what a generator conditioned on that pooled input could reconstruct: if it is high,
// the pooling is not what keeps the reconstruction score down.
const fs = require('fs');
const { evalSet, renderEvalImages, scoreImages } = require('../dist/shapes/eval.js');

const S = 32;

/** Average-pool one S×S RGB image to side×side (floats). */
function pool(images, offset, side) {
  const f = S / side;
  const out = new Float32Array(side * side * 3);
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let ch = 0; ch < 3; ch++) {
    out[(Math.floor(y / f) * side + Math.floor(x / f)) * 3 + ch] += images[offset + (y * S + x) * 3 + ch] / (f * f);
  }
  return out;
}

/** Back to S×S bytes: each pixel its cell's value (nearest) or the bilinear mix of the four nearest cell centres. */
function upsample(pooled, side, kind, out, offset) {
  const f = S / side;
  const at = (y, x, ch) => pooled[(y * side + x) * 3 + ch];
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) for (let ch = 0; ch < 3; ch++) {
    let v;
    if (kind === 'nearest') {
      v = at(Math.floor(y / f), Math.floor(x / f), ch);
    } else {
      const sy = Math.min(side - 1, Math.max(0, (y + 0.5) / f - 0.5));
      const sx = Math.min(side - 1, Math.max(0, (x + 0.5) / f - 0.5));
      const y0 = Math.floor(sy), x0 = Math.floor(sx);
      const y1 = Math.min(side - 1, y0 + 1), x1 = Math.min(side - 1, x0 + 1);
      const ay = sy - y0, ax = sx - x0;
      v = (1 - ay) * ((1 - ax) * at(y0, x0, ch) + ax * at(y0, x1, ch)) + ay * ((1 - ax) * at(y1, x0, ch) + ax * at(y1, x1, ch));
    }
    out[offset + (y * S + x) * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
  }
}

function main() {
  const [samplesArg, jsonOut] = process.argv.slice(2);
  const items = evalSet({ samplesPerPrompt: Number(samplesArg ?? 1) });
  const images = renderEvalImages(items, S);
  const frame = S * S * 3;
  const rows = [{ side: S, decoder: 'none', report: scoreImages(items, images, S) }];
  for (const side of [16, 8]) {
    for (const decoder of ['nearest', 'bilinear']) {
      const out = new Uint8Array(images.length);
      for (let i = 0; i < items.length; i++) upsample(pool(images, i * frame, side), side, decoder, out, i * frame);
      rows.push({ side, decoder, report: scoreImages(items, out, S) });
    }
  }
  const cats = Object.keys(rows[0].report.categories);
  console.log(`ShapesEval of ${items.length} eval renders pooled and read back to ${S} px`);
  console.log(`| pooled side | decoder | ${cats.join(' | ')} | overall |`);
  console.log(`|---:|---|${cats.map(() => '---:|').join('')}---:|`);
  for (const r of rows) {
    console.log(`| ${r.side} | ${r.decoder} | ${cats.map((c) => r.report.categories[c].toFixed(3)).join(' | ')} | **${r.report.overall.toFixed(3)}** |`);
  }
  if (jsonOut) {
    const json = rows.map((r) => ({ side: r.side, decoder: r.decoder, overall: r.report.overall, categories: r.report.categories }));
    fs.writeFileSync(jsonOut, JSON.stringify({ images: items.length, imageSize: S, rows: json }, null, 2) + '\n');
  }
}

main();
