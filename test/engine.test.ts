import * as path from 'path';
import { Worker } from 'worker_threads';

import { bench, info, ops, RecaError, Tensor } from '../lib';
import type { NativeAddon } from '../lib/native';
import { root } from './helpers';

const dist = path.join(root, 'dist');

// Runs in a Worker: loads the addon there and does a matmul.
const workerCode = `
  const { parentPort, workerData } = require('worker_threads');
  const reca = require(workerData.dist);
  const n = workerData.n;
  const a = reca.Tensor.from(Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3), [n, n]);
  const b = reca.Tensor.from(Float32Array.from({ length: n * n }, (_, i) => (i % 5) - 2), [n, n]);
  const results = [];
  for (let r = 0; r < workerData.repeat; r++) {
    const c = reca.ops.matmul(a, b, { transB: true });
    results.push(Array.from(c.toArray()));
    c.dispose();
  }
  parentPort.postMessage({ results, info: reca.info().cpu.isa });
`;

function runWorker(n: number, repeat: number): Promise<{ results: number[][]; info: string }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerCode, { eval: true, workerData: { dist, n, repeat } });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

function expected(n: number): number[] {
  const a = Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3);
  const b = Float32Array.from({ length: n * n }, (_, i) => (i % 5) - 2);
  using at = Tensor.from(a, [n, n]);
  using bt = Tensor.from(b, [n, n]);
  using c = ops.matmul(at, bt, { transB: true });
  return Array.from(c.toArray());
}

describe('engine', () => {
  test('the addon loads and runs a matmul inside a Worker, and in two Workers at once', async () => {
    const one = await runWorker(24, 1);
    expect(one.results[0]).toEqual(expected(24));
    // two at once, while the main thread computes too
    const both = Promise.all([runWorker(48, 20), runWorker(48, 20)]);
    const mine = expected(48);
    const [w1, w2] = await both;
    for (const r of [...w1.results, ...w2.results]) expect(r).toEqual(mine);
  });

  test('a Worker ending in the middle of a benchmark shuts its engine down cleanly', async () => {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const reca = require(workerData.dist);
      reca.bench.kernels({ filter: 'attn.proj.fwd', minSeconds: 0.02, withPeer: false });
      parentPort.postMessage('started');
    `;
    const w = new Worker(code, { eval: true, workerData: { dist } });
    await new Promise((resolve) => w.once('message', resolve));
    const exitCode = await w.terminate();
    expect(typeof exitCode).toBe('number');
    // the main thread's addon is untouched
    using t = Tensor.from([1, 2], [2]);
    expect(Array.from(t.toArray())).toEqual([1, 2]);
  });

  test('benchKernels runs off the event loop (a timer keeps firing), and queued jobs all resolve', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const t0 = Date.now();
    // two at once: the second waits in the engine's queue
    const [records, none] = await Promise.all([
      bench.kernels({ filter: 'attn.proj', minSeconds: 0.05, withPeer: false }),
      bench.kernels({ filter: 'nothing-matches', minSeconds: 0.01 }),
    ]);
    const elapsed = Date.now() - t0;
    clearInterval(timer);
    expect(records.length).toBeGreaterThanOrEqual(1);
    for (const r of records) {
      expect(r.name).toContain('attn.proj');
      expect(r.peer).toBeUndefined();
      expect(r.seconds).toBeGreaterThan(0);
    }
    expect(none).toEqual([]);
    // Work on the loop would have let no timer run until it returned.
    expect(elapsed).toBeGreaterThan(100);
    expect(ticks).toBeGreaterThanOrEqual(5);
  });

  test('bad benchmark options reject with E_INVALID_ARGUMENT', async () => {
    await expect(bench.kernels({ threads: -1 })).rejects.toMatchObject({ name: 'RecaError', code: 'E_INVALID_ARGUMENT' });
    await expect(bench.kernels({ minSeconds: 0 })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(bench.kernels({ filter: 3 as never })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});

describe('two copies of the addon in one thread', () => {
  test('a second copy loads beside the first; each keeps its own state and errors', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('fs') as typeof import('fs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const os = require('os') as typeof import('os');
    const first = info();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-copy-'));
    const copyPath = path.join(dir, 'reca-copy.node');
    fs.copyFileSync(first.addonPath, copyPath);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const copy = require(copyPath) as NativeAddon;
    copy.init(RecaError, '0.0.0-copy');
    expect(copy.info().version).toBe('0.0.0-copy');
    expect(info().version).toBe(first.version);
    const a = new copy.Tensor('float32', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
    const b = new copy.Tensor('float32', [3, 1], Float32Array.from([1, 0, -1]));
    expect(Array.from(copy.matmul(a, b).toArray() as Float32Array)).toEqual([-2, -2]);
    // Errors from the copy are this realm's RecaError too.
    expect(() => copy.matmul(a, a)).toThrow(RecaError);
    // The first instance still works.
    const x = Tensor.from(Float32Array.from([1, 2, 3, 4]), [2, 2]);
    expect(Array.from(ops.matmul(x, x).toArray())).toEqual([7, 10, 15, 22]);
  });
});
