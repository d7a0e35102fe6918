import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Model, resolveTrainerOptions, Trainer } from '../lib/model';
import { ShapesWorld } from '../lib/shapes/world';
import { posttrain, recaStepsOf, shapesData, shapesImages } from '../lib/workflows';

describe('the RecA recipe', () => {
  test('recaStepsOf counts the reca steps of a cycle (brute force)', () => {
    for (const cycle of [[2, 2], [1, 0], [3, 1], [1, 4], [2, 1, 1], [1, 0, 2], [3, 2, 0]] as const) {
      const period = cycle.reduce<number>((a, n) => a + n, 0);
      let count = 0;
      for (let s = 0; s <= 30; s++) {
        expect(recaStepsOf(s, cycle)).toBe(count);
        if (s % period < cycle[0]) count++;
      }
    }
  });

  test('a default post-training cycles 4 reca steps on uncaptioned images, 1 image-to-text and 1 text-to-image step', async () => {
    using model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 2 });
    const results = await posttrain(model, { steps: 8, batch: 2 });
    expect(results.map((r) => Object.keys(r.losses).join('+'))).toEqual(['reca', 'reca', 'reca', 'reca', 'i2t', 't2i', 'reca', 'reca']);
    // No caption data: reca alone.
    using other = await Model.create({ preset: 'tiny', mode: 'mask', seed: 2 });
    const only = await posttrain(other, { steps: 3, batch: 2, captionData: null });
    expect(only.map((r) => Object.keys(r.losses).join('+'))).toEqual(['reca', 'reca', 'reca']);
    // Caption data without captions is refused.
    await expect(posttrain(other, { steps: 1, batch: 2, captionData: shapesImages(16) })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(posttrain(other, { steps: 1, batch: 2, captionData: shapesData(16), cycle: [0, 2] })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    // A step's own tasks: unknown names and all-zero weights are typed errors.
    using trainer = new Trainer(other, {});
    const b = shapesData(16).next(2);
    const images = { data: b.images, shape: b.shape };
    await expect(trainer.step({ images, tasks: { draw: 1 } as never })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(trainer.step({ images, tasks: { reca: 0 } })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(trainer.step({ images, tasks: { i2t: 1 } })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });  // no captions
    const r = await trainer.step({ images, captions: b.captions, tasks: { i2t: 1 } });
    expect(Object.keys(r.losses)).toEqual(['i2t']);
  });

  test("RecA's images are uncaptioned and include single-object scenes", () => {
    const data = shapesImages(32, 5);
    expect(data.captioned).toBe(false);
    const b = data.next(4);
    expect(b.captions).toBeUndefined();
    expect(b.images.length).toBe(4 * 32 * 32 * 3);
    const world = new ShapesWorld({ imageSize: 32, split: 'all', seed: 5 });
    const categories = new Set(Array.from({ length: 200 }, (_, n) => world.scene(n).prompt.category));
    expect(categories).toEqual(new Set(['single', 'two', 'counting', 'colors', 'position', 'binding']));
    // The train split alone has no single-object scenes.
    const train = new ShapesWorld({ imageSize: 32, split: 'train', seed: 5 });
    expect(Array.from({ length: 200 }, (_, n) => train.scene(n).prompt.category)).not.toContain('single');
  });

  test('templates: paraphrases unless a template is given', () => {
    expect(resolveTrainerOptions({}).templates).toBe('paraphrases');
    expect(resolveTrainerOptions({ template: 'draw it' }).templates).toBe('fixed');
    expect(resolveTrainerOptions({ template: 'draw it', templates: 'paraphrases' }).templates).toBe('paraphrases');
    expect(resolveTrainerOptions({ recipe: 'tokenizer' }).templates).toBeUndefined();
  });

  test("condition 'tokenizer' changes only the reca task's image slots", async () => {
    const b = shapesData(16, 3).next(3);
    const images = { data: b.images, shape: b.shape };
    const losses = async (condition: 'understanding' | 'tokenizer') => {
      using model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 4 });
      using trainer = new Trainer(model, { condition, tasks: { reca: 1, t2i: 1, i2t: 1 }, seed: 9 });
      return (await trainer.step({ images, captions: b.captions })).losses;
    };
    const und = await losses('understanding');
    const tok = await losses('tokenizer');
    // Same draws: the text tasks see no condition slots of reca, so their losses are the same bits.
    expect(tok.t2i).toBe(und.t2i);
    expect(tok.i2t).toBe(und.i2t);
    expect(tok.reca).not.toBe(und.reca);
    expect(Number.isFinite(tok.reca)).toBe(true);
    using model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 4 });
    expect(() => new Trainer(model, { condition: 'pixels' as never })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  test('a third cycle count adds text-to-image steps on the caption data; a run stopped and resumed equals a straight one', async () => {
    using model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 2 });
    const results = await posttrain(model, { steps: 9, batch: 2, cycle: [2, 1, 2] });
    expect(results.map((r) => Object.keys(r.losses).join('+'))).toEqual(['reca', 'reca', 'i2t', 't2i', 't2i', 'reca', 'reca', 'i2t', 't2i']);
    // The i2t and t2i steps read one caption stream in order: stopped after a t2i step and resumed, the same bits.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-cycle-'));
    try {
      const file = path.join(dir, 'run.safetensors');
      using split = await Model.create({ preset: 'tiny', mode: 'mask', seed: 2 });
      const first = await posttrain(split, { steps: 9, batch: 2, cycle: [2, 1, 2], save: file, stopAt: 4 });
      using resumed = await Model.load(file);
      const rest = await posttrain(resumed, { steps: 9, batch: 2, cycle: [2, 1, 2], resume: file });
      expect([...first, ...rest].map((r) => r.loss)).toEqual(results.map((r) => r.loss));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // A cycle of reca steps only is the same run written either way.
    const recaOnly = async (cycle: [number, number] | [number, number, number]) => {
      using m = await Model.create({ preset: 'tiny', mode: 'mask', seed: 3 });
      const opts = { steps: 3, batch: 2, cycle, data: shapesData(16, 1), captionData: shapesData(16, 2), trainer: { tasks: { reca: 1, t2i: 1 } } };
      return (await posttrain(m, opts)).map((r) => [Object.keys(r.losses).join('+'), r.loss]);
    };
    const pair = await recaOnly([2, 0]);
    expect(pair.map(([t]) => t)).toEqual(['reca+t2i', 'reca+t2i', 'reca+t2i']);
    expect(await recaOnly([2, 0, 0])).toEqual(pair);
    await expect(posttrain(model, { steps: 1, batch: 2, cycle: [2, 1, -1] as never })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(posttrain(model, { steps: 1, batch: 2, cycle: [2, 1, 1, 1] as never })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });

  test("stepTask 't2i' trains text-to-image in the cycle's first steps, on captioned data only", async () => {
    using model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 2 });
    const results = await posttrain(model, { steps: 4, batch: 2, stepTask: 't2i', cycle: [2, 2] });
    expect(results.map((r) => Object.keys(r.losses).join('+'))).toEqual(['t2i', 't2i', 'i2t', 'i2t']);
    await expect(posttrain(model, { steps: 1, batch: 2, stepTask: 't2i', data: shapesImages(16) })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(posttrain(model, { steps: 1, batch: 2, stepTask: 't2i', recipe: 'reca+i2t' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});
