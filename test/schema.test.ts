/**
 * One definition per option: the engine's tables (native/model/schema.cpp)
 * are what the addon parses with, what info() exports, what
 * lib/generated/schema.ts was generated from and what the CLI help shows.
 */
import * as fs from 'fs';
import * as path from 'path';

import { info, Model, Trainer } from '../lib';
import { renderHelp } from '../lib/cli/options';
import { EVAL } from '../lib/cli/eval';
import { SCHEMA } from '../lib/generated/schema';
import { EVAL_STEPS } from '../lib/workflows';
import { root } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { renderSchemaTs } = require('../tools/gen-schema.js') as { renderSchemaTs: (schema: unknown) => string };

type Doc = typeof SCHEMA;
const clone = (): Doc => JSON.parse(JSON.stringify(info().schema)) as Doc;
const field = (fields: readonly { name: string; default: unknown }[], name: string) => fields.find((f) => f.name === name)!;

test('lib/generated/schema.ts is what the built engine exports (run `npm run gen:schema` when this fails)', () => {
  const committed = fs.readFileSync(path.join(root, 'lib', 'generated', 'schema.ts'), 'utf8');
  expect(committed).toBe(renderSchemaTs(info().schema));
  expect(info().schema).toEqual(JSON.parse(JSON.stringify(SCHEMA)));
});

test('the addon uses the table defaults: a trainer built with no options holds them', async () => {
  using model = await Model.create({ preset: 'tiny' });
  // The public API's recipe sets tasks, freeze and the reca templates (paraphrases unless a
  // template is given); every other option is the table's default.
  using trainer = new Trainer(model, {});
  const stored = trainer.options;
  expect(stored.templates).toBe('paraphrases');
  const recipeSet = new Set(['weightReca', 'weightT2i', 'weightI2t', 'trainUnd', 'trainConn', 'trainVq', 'trainGen', 'templates']);
  for (const f of info().schema.trainer) {
    if (recipeSet.has(f.name)) continue;
    expect([f.name, stored[f.name]]).toEqual([f.name, f.default]);
  }
  expect(Object.keys(stored).sort()).toEqual(info().schema.trainer.map((f) => f.name).sort());
  // Presets: a model made from a preset has the table's config.
  expect(model.config).toEqual(info().schema.presets.tiny);
});

test('a range from the table is enforced by the addon with the table name in the message', async () => {
  using model = await Model.create({ preset: 'tiny' });
  expect(() => new Trainer(model, { optimizer: { lr: 5 } })).toThrow(/trainer option lr must be a number in \(0, 1\] \(got 5\)/);
  expect(() => new Trainer(model, { maxGradNorm: -1 })).toThrow(/maxGradNorm must be a number in \[0, 1000000\]/);
  expect(() => new Trainer(model, { optimizer: { weightDecay: 1e30 } })).toThrow(/weightDecay must be a number in \[0, 1\]/);
  await expect(Model.create({ preset: 'tiny', config: { width: 0 } })).rejects.toThrow(/config width must be an integer in \[1, 1048576\]/);
  await expect(model.generate({ prompts: ['a'], steps: 0 })).rejects.toThrow(/sampling option steps must be an integer in \[1, 100000\]/);
});

test('a default changed in the table changes the TypeScript types and the CLI help together', () => {
  const doc = clone();
  (field(doc.sampler, 'steps') as { default: unknown }).default = 7;
  (field(doc.sampler, 'temperature') as { default: unknown }).default = 0.7;
  (field(doc.trainer, 'lr') as { default: unknown }).default = 0.0123;
  const ts = renderSchemaTs(doc);
  expect(ts).toMatch(/mask: MaskGIT steps; flow: Euler steps; ar: unused \(default 7;/);
  expect(ts).toMatch(/peak learning rate \(default 0\.0123;/);
  expect(renderHelp(EVAL, doc)).toMatch(/--temperature X\s+discrete modes \(0 = greedy\) \(default 0\.7\)/);
  // The evaluation sampler's steps are ShapesEval's own (EVAL_STEPS), not the table's generate() default.
  expect(renderHelp(EVAL, doc)).toMatch(new RegExp(`--sample-steps N\\s+mask: MaskGIT steps; flow: Euler steps; ar: unused \\(default ${EVAL_STEPS}\\)`));
  // ... and with the engine's own table, the help shows the engine's default.
  expect(renderHelp(EVAL)).toMatch(new RegExp(`--temperature X\\s+discrete modes \\(0 = greedy\\) \\(default ${String(field(info().schema.sampler, 'temperature').default)}\\)`));
});

test('the special token ids come from the table', () => {
  expect(info().schema.tokens).toMatchObject({ pad: 256, bos: 257, eos: 258, imgBegin: 259, imgEnd: 260, gen: 261, cap: 262, vocab: 263 });
});
