// Native memory does not grow under create/dispose loops: a child node process
// (--expose-gc) runs each workload, warms it up, then measures RSS after GC
// before and after the main loop. The bound is 5% of the warmed-up RSS.
// (Before the tensor buffers left posix_memalign, 20,000 create/dispose of a
// 256x256 float tensor took RSS from 59 MB to 5 GB with no tensor alive.)
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { root } from './helpers';

const script = (ckpt: string) => `
  const { Model, Tensor } = require(${JSON.stringify(path.join(root, 'dist'))});
  // N-API finalizers of collected wrappers run from the event loop, not inside
  // gc(): yield after each collection, and every 500 iterations of a loop (as
  // any program that does I/O does), so RSS counts only what is still held.
  const tick = () => new Promise((r) => setImmediate(r));
  const rss = async () => {
    for (let k = 0; k < 3; k++) { global.gc(); await tick(); }
    return process.memoryUsage().rss;
  };
  const out = {};
  async function run(n, body) {
    for (let i = 0; i < n; i++) {
      await body(i);
      if (i % 500 === 499) await tick();
      if (i % 2000 === 1999) global.gc();  // a steady V8 heap, so RSS shows native memory
    }
  }
  async function measure(name, warmup, main, body) {
    await run(warmup, body);
    const before = await rss();
    await run(main, body);
    out[name] = { before, after: await rss() };
  }
  (async () => {
    const shapes = [[64, 64], [256, 256], [512, 512], [3, 100, 7], [2, 16, 16, 3]];
    await measure('tensors', 300, 20000, (i) => {
      const s = shapes[Math.floor(i / 1000) % shapes.length];  // runs of one size, as a loop makes
      Tensor.zeros(s, s.length === 4 ? 'uint8' : 'float32').dispose();
    });
    await measure('models', 20, 200, async () => (await Model.create({ preset: 'tiny', seed: 1 })).dispose());
    {
      const m = await Model.create({ preset: 'tiny', seed: 1 });
      await m.save(${JSON.stringify(ckpt)});
      m.dispose();
    }
    await measure('loads', 10, 50, async () => (await Model.load(${JSON.stringify(ckpt)})).dispose());
    {
      const m = await Model.create({ preset: 'tiny', seed: 1 });
      const img = Tensor.from(new Uint8Array(4 * 16 * 16 * 3).map((_, j) => (j * 37) & 255), [4, 16, 16, 3]);
      await measure('embed', 30, 300, async () => (await m.embed(img)).dispose());
      img.dispose();
      m.dispose();
    }
    console.log(JSON.stringify(out));
  })().catch((e) => { console.error(e); process.exit(1); });
`;

describe('native memory under create/dispose loops', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-leaks-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('RSS after GC stays within 5% of its warmed-up value', async () => {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        ['--expose-gc', '-e', script(path.join(tmp, 'm.safetensors'))],
        { encoding: 'utf8', timeout: 60000, maxBuffer: 1 << 20 },
        (err, out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(out)),
      ),
    );
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, { before: number; after: number }>;
    expect(Object.keys(r).sort()).toEqual(['embed', 'loads', 'models', 'tensors']);
    for (const [name, { before, after }] of Object.entries(r)) {
      const mb = (x: number) => `${(x / 1048576).toFixed(1)} MB`;
      expect(`${name}: ${mb(before)} -> ${mb(after)}: ${after <= before * 1.05 ? 'ok' : 'grew'}`).toBe(
        `${name}: ${mb(before)} -> ${mb(after)}: ok`,
      );
    }
  }, 60000);
});
