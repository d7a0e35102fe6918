/**
 * The memory-copy ceiling, measured from JS: TypedArray.set of buffers far
 * larger than the caches, on 1 and N worker threads. Each worker copies its
 * own buffers; a shared counter starts every round on all workers at once.
 * Bandwidth counts read + write bytes (2 × the copied size), the same
 * convention as the kernels' GB/s.
 */
import { Worker } from 'worker_threads';

export interface MemcopyResult {
  threads: number;
  /** Bytes copied per round by all threads together. */
  bytes: number;
  /** Best round: 2 · bytes / (last end − first start). */
  gbps: number;
  gbps_all: number[];
}

// Runs in each worker: first-touch both buffers (page faults stay out of the
// timing), report ready, then copy once per round when the counter moves.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
const { ctrl, bytes, rounds } = workerData;
const counter = new Int32Array(ctrl);
const src = new Uint8Array(bytes).fill(1);
const dst = new Uint8Array(bytes).fill(2);
parentPort.postMessage({ ready: true });
for (let r = 1; r <= rounds; r++) {
  while (Atomics.load(counter, 0) < r) Atomics.wait(counter, 0, r - 1);
  const t0 = performance.timeOrigin + performance.now();
  dst.set(src);
  const t1 = performance.timeOrigin + performance.now();
  parentPort.postMessage({ round: r, t0, t1 });
}
`;

interface Timing {
  round: number;
  t0: number;
  t1: number;
}

/** Copy bandwidth with `threads` workers, `totalBytes` split evenly among them; best of `rounds`. */
export async function measureMemcopy(threads: number, totalBytes: number, rounds: number): Promise<MemcopyResult> {
  const per = Math.floor(totalBytes / threads / 64) * 64;
  const ctrl = new SharedArrayBuffer(4);
  const counter = new Int32Array(ctrl);
  const workers: Worker[] = [];
  const timings: Timing[][] = Array.from({ length: rounds }, () => []);
  let ready = 0;
  let signalReady!: () => void;
  const allReady = new Promise<void>((r) => (signalReady = r));
  const roundWaiters: Array<() => void> = [];
  const failures: Error[] = [];
  try {
    const exited = Promise.all(
      Array.from({ length: threads }, () => {
        const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { ctrl, bytes: per, rounds } });
        workers.push(w);
        w.on('message', (m: { ready?: boolean } & Timing) => {
          if (m.ready) {
            if (++ready === threads) signalReady();
          } else {
            timings[m.round - 1].push(m);
            if (timings[m.round - 1].length === threads) roundWaiters[m.round - 1]?.();
          }
        });
        return new Promise<void>((resolve) => {
          w.on('error', (e) => {
            failures.push(e);
            signalReady();
            for (const f of roundWaiters) f();
            resolve();
          });
          w.on('exit', () => resolve());
        });
      }),
    );
    await allReady;
    const gbps: number[] = [];
    for (let r = 1; r <= rounds && failures.length === 0; r++) {
      const done = new Promise<void>((resolve) => (roundWaiters[r - 1] = resolve));
      Atomics.store(counter, 0, r);
      Atomics.notify(counter, 0);
      await done;
      if (failures.length) break;
      const t = timings[r - 1];
      const span = Math.max(...t.map((x) => x.t1)) - Math.min(...t.map((x) => x.t0));
      gbps.push((2 * per * threads) / (span / 1e3) / 1e9);
    }
    if (failures.length) throw failures[0];
    await exited;
    return { threads, bytes: per * threads, gbps: Math.max(...gbps), gbps_all: gbps };
  } finally {
    for (const w of workers) void w.terminate();
  }
}
