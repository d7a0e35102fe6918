import { execFile } from 'child_process';
import { Worker } from 'worker_threads';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { debugStep, getThreads, info, Model, setThreads, ShapesWorld, Tensor, Trainer, type Mode, type StepResult, type TrainerOptions } from '../lib';
import { main } from '../lib/cli';
import { cliPath, root, rng } from './helpers';
import { f32, readSafetensors, specParameters } from './safetensors-header';

/** Seeded bytes [B, S, S, 3]. */
function images(B: number, S: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: B * S * S * 3 }, () => Math.floor((r() + 1) * 128) & 255);
}

function imageTensor(B: number, S: number, seed: number): Tensor<'uint8'> {
  return Tensor.from(images(B, S, seed), [B, S, S, 3]);
}

async function rejects(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeDefined();
  const err = caught as Error & { code: string };
  expect(err.name).toBe('RecaError');
  expect([err.code, err.message]).toEqual([code, expect.any(String)]);
  return err;
}

const CAPTIONS = ['a red circle', 'two blue squares', 'a café sign in green'];

describe('Model and Trainer', () => {
  let tmp: string;
  const threads0 = getThreads();
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-model-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  afterEach(() => setThreads(threads0));
  const file = (name: string) => path.join(tmp, name);

  test('create gives the preset config, the SPEC parameter count and memory figures', async () => {
    using m = await Model.create({ preset: 'tiny', mode: 'flow', seed: 1 });
    expect(m.config).toMatchObject({ mode: 'flow', image_size: 16, width: 64, max_text_len: 32 });
    const spec = specParameters(m.config);
    const count = [...spec.values()].reduce((s, shape) => s + shape.reduce((p, d) => p * d, 1), 0);
    expect(m.parameterCount).toBe(count);
    // The flat buffer pads each tensor to an aligned offset: a little above 4 bytes each.
    const mem = m.memory();
    expect(mem).toMatchObject({ grads: 0, optimizer: 0, activations: 0 });
    expect(mem.params).toBeGreaterThanOrEqual(4 * count);
    expect(mem.params).toBeLessThan(4 * count + 64 * spec.size);
    using t = new Trainer(m, { ema: 0.99 });
    expect(m.memory()).toMatchObject({ grads: mem.params, optimizer: 3 * mem.params });
    using img = imageTensor(1, 16, 1);
    await t.step({ images: img });
    expect(m.memory().activations).toBeGreaterThan(0);
    expect(m.sequenceLength('reca')).toBe(3 + 16 + 32 + 17);
    expect(t.options).toMatchObject({ trainUnd: false, trainConn: false, trainVq: false, trainGen: true, weightReca: 1 });
    using c = await Model.create({ preset: 'tiny', config: { width: 32, heads: 2, mode: 'ar' } });
    expect(c.config).toMatchObject({ width: 32, heads: 2, mode: 'ar' });
    await rejects(Model.create({ preset: 'huge' as never }), 'E_INVALID_ARGUMENT');
    await rejects(Model.create({ config: { widht: 3 } as never }), 'E_INVALID_ARGUMENT');
    await rejects(Model.create({ config: { width: 65 } }), 'E_INVALID_ARGUMENT'); // not divisible by heads
  });

  test('save / load round trip is bitwise, and the file is plain safetensors with every SPEC name', async () => {
    using m = await Model.create({ preset: 'tiny', mode: 'mask', seed: 3 });
    using t = new Trainer(m, { recipe: 'reca+i2t', seed: 4 });
    using img = imageTensor(3, 16, 5);
    await t.step({ images: img, captions: CAPTIONS });
    await m.save(file('a.safetensors'));
    await m.save(file('a-trainer.safetensors'), { trainer: t });
    using back = await Model.load(file('a.safetensors'));
    expect(back.config).toEqual(m.config);
    await back.save(file('b.safetensors'));
    expect(fs.readFileSync(file('b.safetensors')).equals(fs.readFileSync(file('a.safetensors')))).toBe(true);

    const spec = specParameters(m.config);
    const plain = readSafetensors(file('a.safetensors'));
    expect(JSON.parse(plain.metadata['reca.config'])).toEqual(m.config);
    expect(Object.keys(plain.tensors).sort()).toEqual([...spec.keys()].sort());
    for (const [name, shape] of spec) expect([name, plain.tensors[name].dtype, plain.tensors[name].shape]).toEqual([name, 'F32', shape]);

    const full = readSafetensors(file('a-trainer.safetensors'));
    expect(full.metadata['reca.step']).toBe('1');
    const trainable = [...spec.keys()].filter((n) => !n.startsWith('vq.'));
    const want = [...spec.keys(), ...trainable.map((n) => `optim.m.${n}`), ...trainable.map((n) => `optim.v.${n}`)];
    expect(Object.keys(full.tensors).sort()).toEqual(want.sort());

    // half-precision storage reads back to the nearest halves
    await m.save(file('a-bf16.safetensors'), { dtype: 'bfloat16' });
    const bf = readSafetensors(file('a-bf16.safetensors'));
    expect(bf.tensors['gen.head_txt.weight'].dtype).toBe('BF16');
    using half = await Model.load(file('a-bf16.safetensors'));
    expect(half.parameterCount).toBe(m.parameterCount);
    await rejects(m.save(file('x.safetensors'), { dtype: 'float64' as never }), 'E_INVALID_ARGUMENT');
  });

  test('a checkpoint of another mode or a truncated file is E_CHECKPOINT and leaves the model as it was', async () => {
    using m = await Model.create({ preset: 'tiny', mode: 'mask', seed: 1 });
    using other = await Model.create({ preset: 'tiny', mode: 'flow', seed: 1 });
    await m.save(file('m.safetensors'));
    await other.save(file('flow.safetensors'));
    const e = await rejects(m.loadParameters(file('flow.safetensors')), 'E_CHECKPOINT');
    expect(e.message).toMatch(/mode/);
    const whole = fs.readFileSync(file('m.safetensors'));
    fs.writeFileSync(file('cut.safetensors'), whole.subarray(0, whole.length - 100));
    await rejects(m.loadParameters(file('cut.safetensors')), 'E_CHECKPOINT');
    await rejects(Model.load(file('cut.safetensors')), 'E_CHECKPOINT');
    fs.writeFileSync(file('junk.safetensors'), 'not a checkpoint at all');
    await rejects(Model.load(file('junk.safetensors')), 'E_CHECKPOINT');
    await rejects(Model.load(file('missing.safetensors')), 'E_IO');
    await m.save(file('m2.safetensors'));
    expect(fs.readFileSync(file('m2.safetensors')).equals(whole)).toBe(true);
    // a trainer checkpoint needs optimizer state of the same trainable set
    using t = new Trainer(m, {});
    await rejects(t.load(file('m.safetensors')), 'E_CHECKPOINT'); // saved without a trainer
    using t2 = new Trainer(m, { recipe: 'reca+i2t' });
    await m.save(file('t2.safetensors'), { trainer: t2 });
    expect((await rejects(t.load(file('t2.safetensors')), 'E_CHECKPOINT')).message).toMatch(/trainable|frozen/);
  });

  test('the event loop keeps running during a step of a small model', async () => {
    using m = await Model.create({ preset: 'small', mode: 'mask', seed: 2 });
    using t = new Trainer(m, { seed: 1 });
    const S = m.config.image_size;
    using img = imageTensor(2, S, 1);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const t0 = Date.now();
    const r = await t.step({ images: img });
    const elapsed = Date.now() - t0;
    clearInterval(timer);
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(r.seconds).toBeGreaterThan(0.02);
    // A step on the loop would have let no timer fire until it returned.
    expect(ticks).toBeGreaterThanOrEqual(Math.min(5, Math.floor(elapsed / 20)));
    expect(ticks).toBeGreaterThanOrEqual(3);
  });

  test('a second step, or sampling, while a step runs is E_BUSY; the first completes', async () => {
    using m = await Model.create({ preset: 'tiny', mode: 'ar', seed: 1 });
    using t = new Trainer(m, { seed: 1 });
    using t2 = new Trainer(m, { seed: 2 });
    using img = imageTensor(2, 16, 2);
    const first = t.step({ images: img });
    const busy = await rejects(t.step({ images: img }), 'E_BUSY');
    expect(busy.message).toMatch(/await it first/);
    await rejects(t2.step({ images: img }), 'E_BUSY');
    await rejects(m.generate({ prompts: ['x'] }), 'E_BUSY');
    await rejects(m.save(file('busy.safetensors')), 'E_BUSY');
    expect((await first).step).toBe(1);
    // sampling first: a step is refused until it is done; sampling calls may queue together
    const s1 = m.reconstruct(img, { seed: 1 });
    const s2 = m.caption(img);
    await rejects(t.step({ images: img }), 'E_BUSY');
    expect((await s1).shape).toEqual([2, 16, 16, 3]);
    expect((await s2).length).toBe(2);
    expect((await t.step({ images: img })).step).toBe(2);
    expect(t.steps).toBe(2);
  });

  test('bad inputs are typed errors and never reach the engine', async () => {
    using m = await Model.create({ preset: 'tiny', mode: 'mask', seed: 1 });
    using t = new Trainer(m, { tasks: { reca: 1, t2i: 0.5 } });
    using wrongSize = imageTensor(2, 32, 1);
    const e = await rejects(t.step({ images: wrongSize }), 'E_SHAPE');
    expect(e.message).toContain('[B, 16, 16, 3]');
    expect(e.message).toContain('[2, 32, 32, 3]');
    using ints = Tensor.zeros([2, 16, 16, 3], 'int32');
    await rejects(t.step({ images: ints as never }), 'E_DTYPE');
    await rejects(t.step({ images: { data: new Float64Array(16 * 16 * 3) as never, shape: [1, 16, 16, 3] } }), 'E_DTYPE');
    await rejects(t.step({ images: { data: new Uint8Array(10), shape: [1, 16, 16, 3] } }), 'E_SHAPE');
    await rejects(t.step({ images: { data: new Uint8Array(0), shape: [0, 16, 16, 3] } }), 'E_INVALID_ARGUMENT');
    using img = imageTensor(2, 16, 1);
    expect((await rejects(t.step({ images: img }), 'E_INVALID_ARGUMENT')).message).toMatch(/captions/);
    expect((await rejects(t.step({ images: img, captions: ['one'] }), 'E_INVALID_ARGUMENT')).message).toMatch(/1 entries.*2 images/);
    await rejects(t.step({ images: img, captions: ['a', 3 as never] }), 'E_INVALID_ARGUMENT');
    const nan = new Float32Array(2 * 16 * 16 * 3);
    nan[700] = NaN;
    expect((await rejects(t.step({ images: { data: nan, shape: [2, 16, 16, 3] }, captions: ['a', 'b'] }), 'E_NUMERIC')).message).toContain('[700]');
    const big = new Float32Array(16 * 16 * 3);
    big[5] = 3;
    await rejects(m.embed({ data: big, shape: [1, 16, 16, 3] }), 'E_INVALID_ARGUMENT');
    await rejects(t.step(img as never), 'E_INVALID_ARGUMENT');
    await rejects(m.decode({ data: new Int32Array(16).fill(64), shape: [1, 16] }), 'E_INVALID_ARGUMENT');
    expect(t.steps).toBe(0); // nothing ran
    expect(() => new Trainer(m, { lr: 1 } as never)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => new Trainer(m, { freeze: ['gen', 'brain'] as never })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => new Trainer(m, { optimizer: { lr: -1 } })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => new Trainer(m, { tasks: {} })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    using flow = await Model.create({ mode: 'flow' });
    expect(() => new Trainer(flow, { recipe: 'tokenizer' })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    await rejects(flow.tokenize(img), 'E_INVALID_ARGUMENT');
  });

  test('float32 images in [-1, 1] train exactly like their bytes', async () => {
    const bytes = images(2, 16, 9);
    const floats = Float32Array.from(bytes, (u) => u / 127.5 - 1);
    const run = async (input: { data: Uint8Array | Float32Array; shape: number[] }) => {
      using m = await Model.create({ seed: 1 });
      using t = new Trainer(m, { seed: 2 });
      return (await t.step({ images: input })).loss;
    };
    expect(await run({ data: floats, shape: [2, 16, 16, 3] })).toBe(await run({ data: bytes, shape: [2, 16, 16, 3] }));
  });

  test('dispose is idempotent; every use after it is E_DISPOSED; a running job still settles', async () => {
    const m = await Model.create({ seed: 1 });
    const t = new Trainer(m, {});
    using img = imageTensor(1, 16, 3);
    const running = t.step({ images: img });
    m.dispose();
    m.dispose();
    m[Symbol.dispose]();
    expect(m.disposed).toBe(true);
    expect((await running).step).toBe(1); // its memory was kept until it finished
    expect(() => m.config).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => m.memory()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    await rejects(m.generate({ prompts: ['a'] }), 'E_DISPOSED');
    await rejects(t.step({ images: img }), 'E_DISPOSED'); // its model is gone
    expect(() => new Trainer(m, {})).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    await rejects(t.step({ images: img }), 'E_DISPOSED');
    expect(String(m)).toBe('Model(disposed)');
  });

  test('determinism: same seed, same losses; 1 thread and 2 threads agree bitwise', async () => {
    const run = async (threads: number) => {
      setThreads(threads);
      using m = await Model.create({ mode: 'mask', seed: 21 });
      using t = new Trainer(m, { recipe: 'reca+i2t', seed: 22, optimizer: { lr: 1e-3 } });
      const out: number[] = [];
      for (let s = 0; s < 3; s++) {
        using img = imageTensor(3, 16, 100 + s);
        const r = await t.step({ images: img, captions: CAPTIONS });
        out.push(r.loss, r.gradNorm, r.losses.reca!, r.losses.i2t!);
      }
      return out;
    };
    const a = await run(2);
    const b = await run(2);
    const c = await run(1);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(a.every(Number.isFinite)).toBe(true);
  });

  test('stop, save, load and continue equals training straight through (2 + 2 steps, bitwise)', async () => {
    const opts: TrainerOptions = {
      recipe: 'reca+i2t',
      seed: 31,
      optimizer: { lr: 2e-3 },
      schedule: { warmup: 2, kind: 'cosine', totalSteps: 10 },
      ema: 0.9,
    };
    const batch = (s: number) => ({ images: { data: images(2, 16, 200 + s), shape: [2, 16, 16, 3] }, captions: CAPTIONS.slice(0, 2) });
    const straight: StepResult[] = [];
    {
      using m = await Model.create({ mode: 'flow', seed: 30 });
      using t = new Trainer(m, opts);
      for (let s = 0; s < 4; s++) straight.push(await t.step(batch(s)));
      await m.save(file('straight.safetensors'));
    }
    {
      using m = await Model.create({ mode: 'flow', seed: 30 });
      using t = new Trainer(m, opts);
      for (let s = 0; s < 2; s++) await t.step(batch(s));
      await m.save(file('half.safetensors'), { trainer: t });
    }
    using m = await Model.load(file('half.safetensors'));
    using t = new Trainer(m, opts);
    await t.load(file('half.safetensors'));
    expect(t.steps).toBe(2);
    const resumed = [await t.step(batch(2)), await t.step(batch(3))];
    expect(resumed.map((r) => [r.step, r.loss, r.gradNorm, r.lr])).toEqual(straight.slice(2).map((r) => [r.step, r.loss, r.gradNorm, r.lr]));
    await m.save(file('resumed.safetensors'));
    expect(fs.readFileSync(file('resumed.safetensors')).equals(fs.readFileSync(file('straight.safetensors')))).toBe(true);
  });

  test('a non-finite loss is E_NUMERIC and changes nothing', async () => {
    using m = await Model.create({ mode: 'mask', seed: 5 });
    await m.save(file('ok.safetensors'));
    // The same checkpoint with an absurd output layer: its logits overflow.
    const f = readSafetensors(file('ok.safetensors'));
    const raw = fs.readFileSync(file('ok.safetensors'));
    const [b, end] = f.tensors['gen.head_img.weight'].data_offsets;
    const start = raw.length - f.buffer.length + b;
    const huge = Buffer.from(new Float32Array((end - b) / 4).fill(3e38).buffer);
    huge.copy(raw, start);
    fs.writeFileSync(file('huge.safetensors'), raw);
    await m.loadParameters(file('huge.safetensors'));
    using t = new Trainer(m, { seed: 1 });
    using img = imageTensor(2, 16, 4);
    const e = await rejects(t.step({ images: img }), 'E_NUMERIC');
    expect(e.message).toMatch(/not finite.*unchanged/);
    expect(t.steps).toBe(0);
    await m.save(file('after.safetensors'));
    expect(fs.readFileSync(file('after.safetensors')).equals(raw)).toBe(true);
    expect(f32(readSafetensors(file('after.safetensors')), 'gen.head_img.weight')[0]).toBe(Math.fround(3e38));
  });

  test('captions longer than max_text_len are cut at a UTF-8 boundary and reported', async () => {
    using m = await Model.create({ seed: 1 });
    using t = new Trainer(m, { tasks: { t2i: 1 } });
    using img = imageTensor(2, 16, 1);
    // 31 ASCII bytes + 'é' (2 bytes) crosses 32: both bytes of é are cut; 40 ASCII: 8 cut.
    const r = await t.step({ images: img, captions: ['a'.repeat(31) + 'é', 'b'.repeat(40)] });
    expect(r.cutBytes).toBe(2 + 8);
    expect(Object.keys(r.losses)).toEqual(['t2i']);
  });

  test('recipes: tokenizer trains vq.* with the tokenizer loss; reca+i2t trains the understanding side', async () => {
    using m = await Model.create({ mode: 'ar', seed: 1 });
    using tok = new Trainer(m, { recipe: 'tokenizer', optimizer: { lr: 1e-3 } });
    using img = imageTensor(2, 16, 1);
    const r = await tok.step({ images: img });
    expect(Object.keys(r.losses)).toEqual(['tokenizer']);
    expect(tok.options).toMatchObject({ tokenizer: true });
    using both = new Trainer(m, { recipe: 'reca+i2t', microBatch: 1 });
    expect(both.options).toMatchObject({ trainUnd: true, trainConn: true, trainVq: false, trainGen: true, weightI2t: 1 });
    const r2 = await both.step({ images: img, captions: ['x', 'y'] });
    expect(Object.keys(r2.losses).sort()).toEqual(['i2t', 'reca']);
    expect(() => new Trainer(m, { recipe: 'tokenizer', tasks: { reca: 1 } })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  test('alignWeight adds the condition-alignment loss, with the t2i task or alone; it needs captions', async () => {
    using m = await Model.create({ mode: 'mask', seed: 2 });
    using img = imageTensor(3, 16, 4);
    using both = new Trainer(m, { recipe: 'reca+i2t', tasks: { t2i: 1 }, alignWeight: 0.5, seed: 1 });
    expect(both.options).toMatchObject({ alignWeight: 0.5, weightT2i: 1 });
    const r = await both.step({ images: img, captions: CAPTIONS });
    expect(Object.keys(r.losses).sort()).toEqual(['align', 't2i']);
    // B = 3 distinct captions: the loss starts near ln 3 (cosines of an untrained model are close).
    expect(r.losses.align).toBeGreaterThan(0.5 * Math.log(3));
    expect(r.losses.align).toBeLessThan(2 * Math.log(3));
    expect(r.loss).toBeCloseTo(r.losses.t2i! + 0.5 * r.losses.align!, 6);
    using alone = new Trainer(m, { recipe: 'reca+i2t', tasks: {}, alignWeight: 1 });
    const r2 = await alone.step({ images: img, captions: CAPTIONS });
    expect(Object.keys(r2.losses)).toEqual(['align']);
    expect((await rejects(alone.step({ images: img }), 'E_INVALID_ARGUMENT')).message).toMatch(/captions/);
    expect(() => new Trainer(m, { recipe: 'reca+i2t', alignWeight: -1 })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  test.each<Mode>(['ar', 'mask', 'flow'])('%s: sampling gives uint8 [B, S, S, 3]; caption gives strings', async (mode) => {
    using m = await Model.create({ mode, seed: 4 });
    using img = imageTensor(2, 16, 6);
    const opts = { steps: 3, cfg: 2, temperature: 1, topK: 8, seed: 5 };
    using rec = await m.reconstruct(img, { ...opts, template: 'describe the image' });
    using gen = await m.generate({ prompts: ['a red circle', 'a blue square', 'x'], ...opts });
    expect([rec.dtype, rec.shape]).toEqual(['uint8', [2, 16, 16, 3]]);
    expect([gen.dtype, gen.shape]).toEqual(['uint8', [3, 16, 16, 3]]);
    using again = await m.generate({ prompts: ['a red circle', 'a blue square', 'x'], ...opts });
    expect(Buffer.from(again.toArray()).equals(Buffer.from(gen.toArray()))).toBe(true);
    const caps = await m.caption(img, { maxLength: 5 });
    expect(caps).toHaveLength(2);
    for (const c of caps) expect(typeof c).toBe('string');
    using c = await m.embed(img);
    expect(c.shape).toEqual([2, 16, 64]);
    if (mode !== 'flow') {
      using codes = await m.tokenize(img);
      expect([codes.dtype, codes.shape]).toEqual(['int32', [2, 16]]);
      using dec = await m.decode(codes);
      expect([dec.dtype, dec.shape]).toEqual(['uint8', [2, 16, 16, 3]]);
    }
  });
});

describe('Model in a Worker', () => {
  test('a Worker trains, and ending it in the middle of a step shuts down cleanly', async () => {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const reca = require(workerData.dist);
      (async () => {
        const m = await reca.Model.create({ preset: workerData.preset, seed: 1 });
        const t = new reca.Trainer(m, { seed: 1 });
        const S = m.config.image_size;
        const images = { data: new Uint8Array(2 * S * S * 3).fill(7), shape: [2, S, S, 3] };
        const r = await t.step({ images });
        t.step({ images }); // left running
        parentPort.postMessage(r.loss);
      })();
    `;
    const run = (preset: string) => {
      const w = new Worker(code, { eval: true, workerData: { dist: path.join(root, 'dist'), preset } });
      return { w, loss: new Promise<number>((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }) };
    };
    const a = run('tiny');
    const b = run('small');
    const [la, lb] = await Promise.all([a.loss, b.loss]);
    expect(Number.isFinite(la) && Number.isFinite(lb)).toBe(true);
    expect(typeof (await b.w.terminate())).toBe('number');
    await a.w.terminate(); // may have exited by itself: its last step was short
    // the main thread's engine is untouched
    using m = await Model.create({ seed: 1 });
    expect(m.parameterCount).toBeGreaterThan(0);
  });
});

describe('CLI: debug-step and bench --suite step', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-debug-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('`reca debug-step` writes the SPEC §9 files and result.json fields', async () => {
    const out = path.join(tmp, 'flow-t2i');
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [cliPath, 'debug-step', '--preset', 'tiny', '--mode', 'flow', '--task', 't2i', '--seed', '3', '--out', out, '--batch', '3'],
        { cwd: root, encoding: 'utf8', timeout: 60000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
      );
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const res = JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8'));
    expect(res).toMatchObject({ preset: 'tiny', mode: 'flow', task: 't2i', seed: 3, batch: 3, cond_grad_scale: 0.1 });
    expect(res.optimizer).toEqual({ lr: 0.001, betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.02, max_grad_norm: 1 });
    expect(Number.isFinite(res.loss) && Number.isFinite(res.grad_norm)).toBe(true);
    const spec = specParameters(res.config);
    for (const f of ['params', 'params_after']) {
      const p = readSafetensors(path.join(out, `${f}.safetensors`));
      expect(Object.keys(p.tensors).sort()).toEqual([...spec.keys()].sort());
    }
    const grads = readSafetensors(path.join(out, 'grads.safetensors'));
    expect(Object.keys(grads.tensors).sort()).toEqual([...res.trainable].sort());
    expect(res.trainable.some((n: string) => n.startsWith('und.'))).toBe(true);
    const batch = readSafetensors(path.join(out, 'batch.safetensors'));
    const shapes = Object.fromEntries(Object.entries(batch.tensors).map(([k, v]) => [k, [v.dtype, v.shape]]));
    expect(shapes).toEqual({
      images: ['U8', [3, 16, 16, 3]],
      text: ['I32', [3, 32]],
      dropped: ['U8', [3]],
      t: ['F32', [3]],
      noise: ['F32', [3, 16, 48]],
    });
    // the engine is deterministic: the same command gives the same files
    const again = path.join(tmp, 'again');
    const log = jest.spyOn(console, 'log').mockImplementation(() => {});
    try {
      expect(await main(['debug-step', '--mode', 'flow', '--task', 't2i', '--seed', '3', '--out', again, '--batch', '3'])).toBe(0);
    } finally {
      log.mockRestore();
    }
    for (const f of ['params', 'batch', 'grads', 'params_after']) {
      expect(fs.readFileSync(path.join(again, `${f}.safetensors`)).equals(fs.readFileSync(path.join(out, `${f}.safetensors`)))).toBe(true);
    }
  });

  test('debugStep steps on the shapes world batch of its seed (images as rendered, captions cut to max_text_len)', async () => {
    const out = path.join(tmp, 'world-batch');
    fs.mkdirSync(out);
    const r = await debugStep({ preset: 'tiny', mode: 'ar', task: 'i2t', seed: 7, batch: 5, out });
    const world = new ShapesWorld({ imageSize: 16, split: 'train', seed: 7 }).batch(5, 0);
    const batch = readSafetensors(path.join(out, 'batch.safetensors'));
    const [b, e] = batch.tensors.images.data_offsets;
    expect(batch.tensors.images.shape).toEqual([5, 16, 16, 3]);
    expect(batch.buffer.subarray(b, e).equals(Buffer.from(world.images))).toBe(true);
    // the shapes world's captions are ASCII: a cut keeps the first 32 characters
    expect(r.captions).toEqual(world.captions.map((c) => c.slice(0, 32)));
    expect(r.cut_bytes).toBe(world.captions.reduce((n, c) => n + Math.max(0, c.length - 32), 0));
    expect(r.cut_bytes).toBeGreaterThan(0);
  });

  test('debugStep refuses a batch size outside [1, 4096] before any work', async () => {
    for (const batch of [0, 4097, 1.5]) {
      const err = await rejects(debugStep({ preset: 'tiny', mode: 'mask', task: 'reca', batch, out: tmp }), 'E_INVALID_ARGUMENT');
      expect(err.message).toMatch(/batch must be an integer in \[1, 4096\]/);
    }
  });

  test('`reca bench --suite step --json` writes the throughput record', async () => {
    const json = path.join(tmp, 'step.json');
    const log = jest.spyOn(console, 'log').mockImplementation(() => {});
    let code: number;
    try {
      code = await main(['bench', '--suite', 'step', '--preset', 'tiny', '--mode', 'ar', '--task', 'i2t', '--batch', '2', '--steps', '2', '--json', json]);
    } finally {
      log.mockRestore();
    }
    expect(code).toBe(0);
    const doc = JSON.parse(fs.readFileSync(json, 'utf8'));
    expect(doc).toMatchObject({ preset: 'tiny', mode: 'ar', task: 'i2t', batch: 2 });
    for (const k of ['images_per_s', 'tokens_per_s', 'step_seconds', 'peak_rss_bytes']) expect(doc[k]).toBeGreaterThan(0);
    expect(doc.tokens_per_s / doc.images_per_s).toBeCloseTo(3 + 16 + 1 + 32, 6);
  });
});

describe('device', () => {
  test("models live on the CPU by default; 'cuda' without a CUDA device is E_DEVICE with the reason", async () => {
    using m = await Model.create({ preset: 'tiny' });
    expect(m.device).toBe('cpu');
    if (info().cuda.devices.length > 0 && info().cuda.compiled) return; // a GPU machine: the GPU check covers it
    const err = await Model.create({ preset: 'tiny', device: 'cuda' }).then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    expect(err).not.toBeNull();
    expect(err!.code).toBe('E_DEVICE');
    expect(err!.message).toMatch(/CUDA/i);
    await expect(Model.create({ preset: 'tiny', device: 'tpu' as 'cpu' })).rejects.toThrow(/device must be 'cpu' or 'cuda'/);
    expect(info().backend).toBe('cpu');
  });
});
