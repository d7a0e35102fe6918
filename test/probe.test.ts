import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Model } from '../lib/model';
import { readSafetensors } from '../lib/safetensors';
import { betweenGroupShare, conditionProbe, ridgeProbe } from '../lib/shapes/probe';
import { Rng } from '../lib/shapes/world';

/** n rows of dim features: label-dependent mean (signal) plus Gaussian noise. */
function gaussianRows(n: number, dim: number, classes: number, signal: number, rng: Rng): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  for (let i = 0; i < n; i++) {
    y[i] = rng.int(classes);
    for (let j = 0; j < dim; j++) x[i * dim + j] = normal() + (j === y[i] ? signal : 0);
  }
  return { x, y };
}

describe('linear probe', () => {
  test('separable classes are recovered, noise is at chance', () => {
    const rng = new Rng(5);
    const easy = gaussianRows(2000, 16, 8, 12, rng);
    expect(ridgeProbe(easy.x, easy.y, 16, 8, 1400)).toBe(1);
    const noise = gaussianRows(4000, 16, 8, 0, rng);
    const acc = ridgeProbe(noise.x, noise.y, 16, 8, 2800);
    // Chance is 1/8; 1200 held-out rows give SE ≈ 0.0095.
    expect(Math.abs(acc - 1 / 8)).toBeLessThan(0.04);
  });

  test('a small offset along a direction the noise does not use is still found (standardised features)', () => {
    // Feature 0 carries the label at 1% of the other features' scale: scale-free probes find it.
    const rng = new Rng(9);
    const n = 1000;
    const x = new Float32Array(n * 4);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = rng.int(2);
      x[i * 4] = y[i] * 0.01;
      for (let j = 1; j < 4; j++) x[i * 4 + j] = 100 * (rng.next() - 0.5);
    }
    expect(ridgeProbe(x, y, 4, 2, 700)).toBe(1);
  });

  test('bad shapes are typed errors', () => {
    expect(() => ridgeProbe(new Float32Array(10), new Int32Array(4), 3, 2, 2)).toThrow(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => ridgeProbe(new Float32Array(12), new Int32Array(4), 3, 2, 4)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});

describe('between-group variance share', () => {
  test('closed form: group means ±a, within-group values ±b give a²/(a²+b²)', () => {
    // Group g has mean (2g-1)·a; each group holds the values mean ± b equally often.
    const a = 3;
    const b = 4;
    const x = Float32Array.from([-a - b, -a + b, a - b, a + b]);
    const y = Int32Array.from([0, 0, 1, 1]);
    expect(betweenGroupShare(x, y, 1, 2)).toBeCloseTo((a * a) / (a * a + b * b), 12);
    expect(betweenGroupShare(Float32Array.from([1, 1, 1, 1]), y, 1, 2)).toBe(0);
  });
});

describe('parameters and the probe on a model', () => {
  test('parameter() returns the stored tensor; unknown names and disposed models are typed errors', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-probe-'));
    const model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 3 });
    const file = path.join(dir, 'm.safetensors');
    await model.save(file);
    const stored = readSafetensors(file).tensors;
    const names = model.parameterNames();
    expect(names).toEqual(expect.arrayContaining(['gen.pos_cond', 'conn.fc2.weight', 'vq.codebook']));
    for (const name of ['gen.pos_cond', 'conn.fc2.weight', 'vq.codebook']) {
      const t = await model.parameter(name);
      const want = stored.get(name)!;
      expect(t.shape).toEqual(want.shape);
      expect(Buffer.from(t.toArray().buffer).equals(Buffer.from((want.data as Float32Array).buffer))).toBe(true);
      t.dispose();
    }
    await expect(model.parameter('gen.nothing')).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    model.dispose();
    await expect(Promise.resolve().then(() => model.parameter('gen.pos_cond'))).rejects.toMatchObject({ code: 'E_DISPOSED' });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the probe of a fresh tiny model: its parts and ranges', async () => {
    using model = await Model.create({ preset: 'tiny', mode: 'flow', seed: 1 });
    const r = await conditionProbe(model, { images: 40 });
    expect(r.tokens).toBe(16);
    for (const v of [r.positionVarianceShare, r.positionFromInput.accuracy, r.positionFromCondition.accuracy, r.colourFromCondition.accuracy]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    // Independent check of the norm of pos_cond over the image slots.
    const pos = await model.parameter('gen.pos_cond');
    const pv = pos.toArray();
    const W = model.config.width;
    let sum = 0;
    for (let t = 0; t < 16; t++) sum += Math.hypot(...pv.subarray((t + 2) * W, (t + 3) * W));
    expect(r.norms.posCond).toBeCloseTo(sum / 16, 5);
    pos.dispose();
    await expect(conditionProbe(model, { images: 3 })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});
