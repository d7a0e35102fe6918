// Trainer option matmulPrecision 'bf16' against 'fp32' (benchmarks/RESULTS.md, "bf16 matmuls").
//   node benchmarks/bf16_step.js speed    PRESET MODE BATCH THREADS STEPS [JSON]
//     Two models from one seed, one trainer each; after a warm-up step each, the
//     trainers alternate (fp32, bf16, fp32, ...) on the same batches, so a load
//     change hits both; prints the median step time and images/s of each.
//   node benchmarks/bf16_step.js accuracy PRESET MODE BATCH THREADS STEPS [JSON]
//     The same two runs for STEPS steps (loss curves side by side), and one
//     debugStep of each precision from the same weights and draws: the relative
//     L2 difference of the whole gradient and of the worst tensor.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Model, Trainer, debugStep, info, setThreads, shapesData, trainSteps } = require('../dist');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Every F32 tensor of a safetensors file, by name.
function readF32(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = new Map();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'F32') continue;
    const [a, b] = t.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    out.set(name, new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)));
  }
  return out;
}

async function pair(preset, mode) {
  const runs = {};
  for (const p of ['fp32', 'bf16']) {
    const model = await Model.create({ preset, mode, seed: 0 });
    const trainer = new Trainer(model, { seed: 1, optimizer: { lr: 3e-4 }, matmulPrecision: p });
    runs[p] = { model, trainer, data: shapesData(model.config.image_size, 1) };
  }
  return runs;
}

async function speed(preset, mode, batch, steps) {
  const runs = await pair(preset, mode);
  const secs = { fp32: [], bf16: [] };
  for (const p of ['fp32', 'bf16']) await trainSteps(runs[p].trainer, runs[p].data, 1, batch, 'warm-up');
  for (let i = 0; i < steps; i++)
    for (const p of ['fp32', 'bf16']) secs[p].push((await trainSteps(runs[p].trainer, runs[p].data, 1, batch, 'timed'))[0].seconds);
  const out = {};
  for (const p of ['fp32', 'bf16']) {
    out[p] = { stepSeconds: median(secs[p]), imagesPerSecond: batch / median(secs[p]), steps: secs[p] };
    runs[p].trainer.dispose();
    runs[p].model.dispose();
  }
  out.speedup = out.fp32.stepSeconds / out.bf16.stepSeconds;
  out.pairRatios = secs.fp32.map((s, i) => s / secs.bf16[i]);
  console.log(`step ms: fp32 ${(out.fp32.stepSeconds * 1e3).toFixed(1)}, bf16 ${(out.bf16.stepSeconds * 1e3).toFixed(1)}; ` +
    `images/s: fp32 ${out.fp32.imagesPerSecond.toFixed(2)}, bf16 ${out.bf16.imagesPerSecond.toFixed(2)}; ` +
    `fp32/bf16 time ${out.speedup.toFixed(3)} (per pair ${out.pairRatios.map((r) => r.toFixed(2)).join(' ')})`);
  return out;
}

async function accuracy(preset, mode, batch, steps) {
  const runs = await pair(preset, mode);
  const losses = {};
  for (const p of ['fp32', 'bf16']) {
    losses[p] = (await trainSteps(runs[p].trainer, runs[p].data, steps, batch, 'train')).map((r) => r.loss);
    runs[p].trainer.dispose();
    runs[p].model.dispose();
  }
  const rel = losses.fp32.map((l, i) => Math.abs(losses.bf16[i] - l) / Math.abs(l));
  const tail = (xs) => xs.slice(-10).reduce((a, b) => a + b, 0) / Math.min(10, xs.length);
  // One step's gradient, same weights and draws (debugStep: a fresh model of seed 0).
  const grads = {};
  for (const p of ['fp32', 'bf16']) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bf16-grad-${p}-`));
    await debugStep({ preset, mode, task: 'reca', seed: 0, batch, out: dir, matmulPrecision: p });
    grads[p] = readF32(path.join(dir, 'grads.safetensors'));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  let d2 = 0, n2 = 0, worst = { name: '', rel: 0 };
  for (const [name, g] of grads.fp32) {
    const h = grads.bf16.get(name);
    let td = 0, tn = 0;
    for (let i = 0; i < g.length; i++) {
      td += (h[i] - g[i]) ** 2;
      tn += g[i] ** 2;
    }
    d2 += td;
    n2 += tn;
    if (tn > 0 && Math.sqrt(td / tn) > worst.rel) worst = { name, rel: Math.sqrt(td / tn) };
  }
  const out = {
    losses,
    lossRelDiffAtEnd: rel[rel.length - 1],
    lossRelDiffMax: Math.max(...rel),
    lossTail10: { fp32: tail(losses.fp32), bf16: tail(losses.bf16) },
    gradRelL2: Math.sqrt(d2 / n2),
    gradWorstTensor: worst,
  };
  console.log(`loss after ${steps} steps: fp32 ${losses.fp32[steps - 1].toFixed(5)}, bf16 ${losses.bf16[steps - 1].toFixed(5)} ` +
    `(rel ${out.lossRelDiffAtEnd.toExponential(2)}; max over the curve ${out.lossRelDiffMax.toExponential(2)}; ` +
    `mean of the last 10: ${out.lossTail10.fp32.toFixed(5)} vs ${out.lossTail10.bf16.toFixed(5)})`);
  console.log(`one step's gradient: rel. L2 difference ${out.gradRelL2.toExponential(3)}; worst tensor ${worst.name} ${worst.rel.toExponential(3)}`);
  return out;
}

async function run() {
  const [what, preset, mode, batch, threads, steps, json] = process.argv.slice(2);
  setThreads(Number(threads));
  const i = info();
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`${what} ${preset}/${mode} batch ${batch}, ${threads} threads, isa ${i.cpu.isa}, bf16 ${i.cpu.bf16Matmul}, ` +
    `cpu ${os.cpus()[0].model}, load ${load}`);
  const result = what === 'speed'
    ? await speed(preset, mode, Number(batch), Number(steps))
    : await accuracy(preset, mode, Number(batch), Number(steps));
  const record = { what, preset, mode, batch: Number(batch), threads: Number(threads), steps: Number(steps),
    isa: i.cpu.isa, cpu: os.cpus()[0].model, loadBefore: load, loadAfter: os.loadavg().map((x) => x.toFixed(2)).join(' '), ...result };
  if (json) fs.writeFileSync(json, JSON.stringify(record, null, 1) + '\n');
}

run().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
