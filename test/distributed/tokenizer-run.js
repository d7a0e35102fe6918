// One rank (or the single process) of the tokenizer-stage check: three steps
// of a global batch of 6 in 6 shards with a code restart every step, so the
// restart reads the whole global batch's codes. Writes the checkpoint (rank 0)
// and prints the step results (rank 0) as JSON.
const { Model, Trainer, shapesData, trainSteps } = require('../../dist');

async function run() {
  const [out, distributed] = process.argv.slice(2);
  const model = await Model.create({ preset: 'tiny', mode: 'ar', seed: 3 });
  const trainer = new Trainer(model, { recipe: 'tokenizer', codeRestart: 1, shards: 6, distributed, optimizer: { lr: 2e-3 } });
  const results = await trainSteps(trainer, shapesData(model.config.image_size, 5), 3, 6, 'tokenizer');
  await model.save(out, { trainer });
  if (trainer.rank === 0) {
    const keep = ['loss', 'gradNorm', 'codesUsed', 'codesRestarted', 'images', 'ranks'];
    console.log(JSON.stringify(results.map((r) => Object.fromEntries(keep.map((k) => [k, r[k]])))));
  }
  trainer.dispose();
  model.dispose();
}

run().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
