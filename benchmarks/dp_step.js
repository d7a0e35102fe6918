// Step time of data-parallel training against one process (benchmarks/RESULTS.md,
// "Data parallelism"). Runs `steps` steps of the reca task on the shapes world
// with a global batch of `batch`, after one warm-up step, and prints (rank 0) the
// medians: step seconds, seconds and bytes of the ordered gradient sum.
//   node benchmarks/dp_step.js PRESET MODE BATCH STEPS THREADS SHARDS
//   mpirun -np 2 node benchmarks/dp_step.js small mask 8 5 1 0
const { Model, Trainer, setThreads, shapesData, trainSteps } = require('../dist');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function run() {
  const [preset, mode, batch, steps, threads, shards] = process.argv.slice(2);
  setThreads(Number(threads));
  const model = await Model.create({ preset, mode, seed: 0 });
  const trainer = new Trainer(model, { shards: Number(shards), optimizer: { lr: 1e-4 } });
  const data = shapesData(model.config.image_size, 1);
  await trainSteps(trainer, data, 1, Number(batch), 'warm-up');
  const rs = await trainSteps(trainer, data, Number(steps), Number(batch), 'timed');
  if (trainer.rank === 0) {
    console.log(JSON.stringify({
      preset, mode, batch: Number(batch), ranks: trainer.ranks, threads: Number(threads),
      shards: trainer.options.shards || trainer.ranks, parameters: model.parameterCount,
      stepSeconds: median(rs.map((r) => r.seconds)),
      commSeconds: median(rs.map((r) => r.commSeconds)),
      commBytes: rs[0].commBytes,
      imagesPerSecond: Number(batch) / median(rs.map((r) => r.seconds)),
      communicator: trainer.communicator,
    }));
  }
  trainer.dispose();
  model.dispose();
}

run().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
