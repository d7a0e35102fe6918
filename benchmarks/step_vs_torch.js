// A training step of ours beside PyTorch's (benchmarks/torch_step.py, the reference
// model) on the same preset, mode, task, batch and threads, alternated point by
// point (ours, PyTorch, ours, PyTorch, ...) so that a change of load hits both
// sides of a pair. With --isa avx2 both sides are held to AVX2: ours through
// RECA_CPU_ISA's level (setIsa), PyTorch through ATEN_CPU_CAPABILITY=avx2 and
// OpenBLAS's Haswell kernels. Prints a table and writes JSON
// (benchmarks/RESULTS.md, "Small reca step beside PyTorch").
//   node benchmarks/step_vs_torch.js [--isa avx2|native] [--preset small] [--modes ar,mask,flow]
//        [--task reca] [--batch 8] [--threads 2] [--steps 3] [--rounds 3] [--json FILE]
const fs = require('fs');
const os = require('os');
const { getIsa, info, setIsa } = require('../dist');
const { runStepBench } = require('../dist/bench/step');
const { AVX2_PEER_ENV, TorchPeer, torchUnavailable } = require('../dist/bench/torch_peer');

function options(argv) {
  const o = { isa: 'native', preset: 'small', modes: 'ar,mask,flow', task: 'reca', batch: 8, threads: 2, steps: 3, rounds: 3, json: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in o) || argv[i + 1] === undefined) throw new Error(`unknown or valueless option ${argv[i]}`);
    o[key] = typeof o[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return o;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const o = options(process.argv.slice(2));
  const why = torchUnavailable();
  if (why) throw new Error(`the PyTorch peer cannot run: ${why}`);
  if (o.isa === 'avx2') setIsa('avx2');
  const peer = new TorchPeer(o.isa === 'avx2' ? AVX2_PEER_ENV : {});
  const rows = [];
  try {
    for (const mode of o.modes.split(',')) {
      for (let round = 1; round <= o.rounds; round++) {
        const point = { preset: o.preset, mode, task: o.task, batch: o.batch, threads: o.threads, steps: o.steps };
        const ours = await runStepBench(point);
        const torch = await peer.run(point);
        const row = {
          mode, round, isa: getIsa(), ours_step_s: ours.step_seconds, torch_step_s: torch.step_seconds,
          ours_gflops: ours.achieved_gflops, ratio: torch.step_seconds / ours.step_seconds, load: os.loadavg()[0],
        };
        rows.push(row);
        console.log(`${mode.padEnd(5)} round ${round}  ours ${(row.ours_step_s * 1e3).toFixed(0).padStart(5)} ms  ` +
          `PyTorch ${(row.torch_step_s * 1e3).toFixed(0).padStart(5)} ms  ours/PyTorch ${row.ratio.toFixed(2)}x  load ${row.load.toFixed(1)}`);
      }
    }
  } finally {
    peer.close();
  }
  console.log('\nmedian ours/PyTorch per mode:');
  const summary = {};
  for (const mode of o.modes.split(',')) {
    const r = rows.filter((x) => x.mode === mode).map((x) => x.ratio);
    summary[mode] = { median: median(r), min: Math.min(...r), max: Math.max(...r) };
    console.log(`  ${mode}: ${summary[mode].median.toFixed(2)}x (rounds ${r.map((x) => x.toFixed(2)).join(', ')})`);
  }
  if (o.json) {
    const cpu = info().cpu;
    fs.writeFileSync(o.json, JSON.stringify({ options: o, machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, isa: cpu.isa, detected: cpu.detectedIsa }, date: new Date().toISOString(), rows, summary }, null, 2));
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exitCode = 1;
});
