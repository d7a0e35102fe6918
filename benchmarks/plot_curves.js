// Plots the pretraining curves listed in benchmarks/curves/manifest.json: each base's
// runs chained on one axis (captioned images seen in all), ShapesEval and train loss.
//   node benchmarks/plot_curves.js [OUT_DIR]   (default benchmarks/results)
// writes OUT_DIR/pretrain-shapeseval.svg and OUT_DIR/pretrain-loss.svg, and prints a table.
const fs = require('fs');
const path = require('path');
const { chainCurves, parseCurve, curvePlots } = require('../dist/bench/curves');

const dir = path.join(__dirname, 'curves');
const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
const out = process.argv[2] ?? path.join(__dirname, 'results');
const bases = {};
for (const [name, runs] of Object.entries(manifest.bases)) {
  bases[name] = chainCurves(runs.map((r) => ({ points: parseCurve(fs.readFileSync(path.join(dir, r.file), 'utf8')), imagesBefore: r.imagesBefore })));
}
const plots = curvePlots(bases);
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'pretrain-shapeseval.svg'), plots.shapesEval);
fs.writeFileSync(path.join(out, 'pretrain-loss.svg'), plots.loss);
console.log('| base | captioned images seen | train loss | ShapesEval (1 sample per prompt) |\n|---|---:|---:|---:|');
for (const [name, pts] of Object.entries(bases)) {
  for (const p of pts) console.log(`| ${name} | ${p.images} | ${p.loss.toFixed(3)} | ${p.overall.toFixed(3)} |`);
}
console.log(`\nwrote ${path.join(out, 'pretrain-shapeseval.svg')} and pretrain-loss.svg`);
