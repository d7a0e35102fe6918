import * as path from 'path';

import { RecaError } from '../lib';

export const root = path.join(__dirname, '..');
export const cliPath = path.join(root, 'dist', 'cli.js');

/** Seeded uniform numbers in [-1, 1) (mulberry32), so a failure can be replayed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

export function randomArray(n: number, rand: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand();
  return a;
}

/** Runs `fn`, expecting a RecaError with `code`; returns it. */
export function expectRecaError(fn: () => unknown, code: string): Error & { code: string } {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeDefined();
  const err = caught as Error & { code: string };
  expect(err).toBeInstanceOf(RecaError);
  expect(err.name).toBe('RecaError');
  expect(err.code).toBe(code);
  return err;
}

/** "Float32Array" etc., whichever realm made the array. */
export function tag(a: ArrayBufferView): string {
  return Object.prototype.toString.call(a).slice(8, -1);
}
