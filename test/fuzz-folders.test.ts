/**
 * Mutation fuzzing of what the TypeScript layer parses from untrusted files:
 * captions.jsonl and the image files of a folder (the native parsers have
 * libFuzzer targets in native/fuzz/). Seeded, bounded in count and time:
 * every mutant must load or fail with a RecaError, never hang, never throw
 * anything else, and a loaded folder must be self-consistent.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { RecaError } from '../lib';
import { loadImageFolder, writePng } from '../lib/images';
import { ShapesWorld } from '../lib/shapes/world';
import { rng } from './helpers';

const S = 16;
let dir: string;
let seedPng: Buffer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-fuzz-folders-'));
  const b = new ShapesWorld({ imageSize: S, split: 'train', seed: 3 }).batch(1, 0);
  const file = path.join(dir, 'seed.png');
  await writePng(file, b.images, S, S);
  seedPng = fs.readFileSync(file);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A few byte-level edits of `bytes`: flips, inserts, deletes, truncation, splices. */
function mutate(bytes: Buffer, rand: () => number): Buffer {
  let b = Buffer.from(bytes);
  const pick = (n: number) => Math.floor(((rand() + 1) / 2) * n);
  const edits = 1 + pick(4);
  for (let e = 0; e < edits; e++) {
    const at = pick(Math.max(1, b.length));
    switch (pick(5)) {
      case 0:
        if (b.length) b[at % b.length] ^= 1 << pick(8);
        break;
      case 1:
        b = Buffer.concat([b.subarray(0, at), Buffer.from([pick(256), pick(256)]), b.subarray(at)]);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + pick(16)))]);
        break;
      case 3:
        b = b.subarray(0, at);
        break;
      default:
        b = Buffer.concat([b.subarray(0, at), b.subarray(pick(Math.max(1, b.length)))]);
        break;
    }
  }
  return b;
}

async function loadsOrRefuses(folder: string): Promise<'loaded' | 'refused'> {
  try {
    const f = await loadImageFolder(folder, { imageSize: S });
    const [count, h, w, c] = f.shape;
    expect([h, w, c]).toEqual([S, S, 3]);
    expect(f.images.length).toBe(count * S * S * 3);
    expect(f.files).toHaveLength(count);
    if (f.captions) expect(f.captions).toHaveLength(count);
    return 'loaded';
  } catch (e) {
    if (!(e instanceof RecaError)) throw e;
    expect(['E_IO', 'E_INVALID_ARGUMENT', 'E_SHAPE']).toContain(e.code);
    return 'refused';
  }
}

test('200 mutated captions.jsonl files load or are refused with a RecaError', async () => {
  const rand = rng(41);
  const good = Buffer.from(
    [
      JSON.stringify({ file: 'a.png', caption: 'a red circle' }),
      JSON.stringify({ file: 'b.png', caption: 'two blue squares left of a green triangle' }),
      JSON.stringify({ file: 'c.png', caption: 'd\u00e9j\u00e0 vu \u{1F600}' }),
    ].join('\n') + '\n',
  );
  const outcomes = { loaded: 0, refused: 0 };
  for (let i = 0; i < 200; i++) {
    const d = path.join(dir, `jsonl-${i}`);
    fs.mkdirSync(d);
    for (const f of ['a.png', 'b.png', 'c.png']) fs.writeFileSync(path.join(d, f), seedPng);
    fs.writeFileSync(path.join(d, 'captions.jsonl'), mutate(good, rand));
    outcomes[await loadsOrRefuses(d)]++;
    fs.rmSync(d, { recursive: true, force: true });
  }
  // Both outcomes occur: the mutants exercise the reader's accept and refuse paths.
  expect(outcomes.loaded).toBeGreaterThan(0);
  expect(outcomes.refused).toBeGreaterThan(0);
}, 60000);

test('150 mutated PNG files are loaded or skipped by name, never fatal beside a good one', async () => {
  const rand = rng(43);
  const d = path.join(dir, 'png');
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, 'good.png'), seedPng);
  for (let i = 0; i < 150; i++) fs.writeFileSync(path.join(d, `m${String(i).padStart(3, '0')}.png`), mutate(seedPng, rand));
  const f = await loadImageFolder(d, { imageSize: S });
  expect(f.files).toContain('good.png');
  expect(f.files.length + f.skipped.length).toBe(151);
  for (const s of f.skipped) expect(s.reason.length).toBeGreaterThan(0);
}, 60000);
