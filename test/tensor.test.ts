import * as v8 from 'v8';
import * as vm from 'vm';

import { memory, Tensor, type DType } from '../lib';
import { expectRecaError, tag } from './helpers';

describe('Tensor', () => {
  const cases: Array<[DType, Float32Array | Int32Array | Uint8Array]> = [
    ['float32', new Float32Array([1.5, -2, 3.25, 0, -0.125, 1e30])],
    ['int32', new Int32Array([1, -2, 2147483647, -2147483648, 0, 7])],
    ['uint8', new Uint8Array([0, 1, 127, 128, 254, 255])],
  ];

  test.each(cases)('%s: shape, dtype, size and a toArray round trip', (dtype, data) => {
    const t = Tensor.from(data, [2, 3]);
    expect(t.dtype).toBe(dtype);
    expect(t.shape).toEqual([2, 3]);
    expect(t.size).toBe(6);
    expect(t.byteLength).toBe(data.byteLength);
    const out = t.toArray();
    expect(tag(out)).toBe(tag(data)); // arrays made by the addon belong to Node's realm, not jest's
    expect(Array.from(out)).toEqual(Array.from(data));
    // a copy both ways: changing either side leaves the other alone
    out[0] = 99;
    data[1] = 42;
    expect(t.toArray()[0]).not.toBe(99);
    expect(t.toArray()[1]).not.toBe(42);
    t.dispose();
  });

  test('plain number arrays, zeros, empty and scalar shapes', () => {
    const a = Tensor.from([1, 2, 3, 4], [4]);
    expect(a.dtype).toBe('float32');
    expect(Array.from(a.toArray())).toEqual([1, 2, 3, 4]);
    const b = Tensor.from([1, 2], [2], 'int32');
    expect(tag(b.toArray())).toBe('Int32Array');
    const z = Tensor.zeros([3, 0, 2]);
    expect(z.size).toBe(0);
    expect(z.toArray().length).toBe(0);
    const s = Tensor.from(new Float32Array([7]), []);
    expect(s.shape).toEqual([]);
    expect(s.size).toBe(1);
    const zs = Tensor.zeros([2, 2], 'uint8');
    expect(Array.from(zs.toArray())).toEqual([0, 0, 0, 0]);
    // a view into a larger buffer copies only the view
    const big = new Float32Array([9, 1, 2, 9]);
    const v = Tensor.from(big.subarray(1, 3), [2]);
    expect(Array.from(v.toArray())).toEqual([1, 2]);
    for (const t of [a, b, z, s, zs, v]) t.dispose();
  });

  test('data length that does not match the shape is E_SHAPE', () => {
    const e = expectRecaError(() => Tensor.from(new Float32Array(5), [2, 3]), 'E_SHAPE');
    expect(e.message).toMatch(/5 elements.*\[2, 3\].*6/);
    expectRecaError(() => Tensor.from(new Int32Array(0), [1]), 'E_SHAPE');
  });

  test('a TypedArray of the wrong kind is E_DTYPE', () => {
    expectRecaError(() => Tensor.from(new Float64Array(4) as unknown as Float32Array, [4]), 'E_DTYPE');
    expectRecaError(() => Tensor.from(new Float32Array(4), [4], 'int32' as never), 'E_DTYPE');
    expectRecaError(() => Tensor.from(new Uint8ClampedArray(4) as unknown as Uint8Array, [4]), 'E_DTYPE');
    expectRecaError(() => Tensor.zeros([2], 'float64' as never), 'E_DTYPE');
  });

  test('bad shapes are E_INVALID_ARGUMENT, absurd ones E_INVALID_ARGUMENT or E_OUT_OF_MEMORY, and the process survives', () => {
    for (const shape of [[-1], [2.5], [NaN], [Infinity], ['3'], [2 ** 53]]) {
      expectRecaError(() => Tensor.zeros(shape as number[]), 'E_INVALID_ARGUMENT');
    }
    expectRecaError(() => Tensor.zeros('3' as never), 'E_INVALID_ARGUMENT');
    expectRecaError(() => Tensor.zeros(new Array(17).fill(1)), 'E_INVALID_ARGUMENT');
    // over the 1 TiB cap: refused before any allocation
    expectRecaError(() => Tensor.zeros([1e9, 1e9]), 'E_INVALID_ARGUMENT');
    expectRecaError(() => Tensor.zeros([2 ** 26, 2 ** 26, 2 ** 26]), 'E_INVALID_ARGUMENT');
    // under the cap but more than this machine holds
    const e = expectRecaError(() => Tensor.zeros([1 << 20, 1 << 18]), 'E_OUT_OF_MEMORY');
    expect(e.message).toMatch(/GiB/);
    // still alive and working
    const t = Tensor.from([1, 2], [2]);
    expect(Array.from(t.toArray())).toEqual([1, 2]);
    t.dispose();
  });

  test('dispose is idempotent and every use after it is E_DISPOSED', () => {
    const t = Tensor.from(new Float32Array([1, 2, 3]), [3]);
    expect(t.disposed).toBe(false);
    t.dispose();
    t.dispose();
    t[Symbol.dispose]();
    expect(t.disposed).toBe(true);
    expectRecaError(() => t.shape, 'E_DISPOSED');
    expectRecaError(() => t.dtype, 'E_DISPOSED');
    expectRecaError(() => t.size, 'E_DISPOSED');
    expectRecaError(() => t.byteLength, 'E_DISPOSED');
    expectRecaError(() => t.toArray(), 'E_DISPOSED');
    expect(String(t)).toBe('Tensor(disposed)');
  });

  test('`using` disposes at the end of the block', () => {
    let kept: Tensor | undefined;
    {
      using t = Tensor.from([1, 2, 3], [3]);
      kept = t;
      expect(t.disposed).toBe(false);
    }
    expect(kept.disposed).toBe(true);
    expectRecaError(() => kept!.toArray(), 'E_DISPOSED');
  });

  test('native memory is returned by dispose(), and by the GC finalizer when dispose never came', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((resolve) => setImmediate(resolve)); // finalizers run after the GC
      }
    };
    const MiB = 1 << 20;
    await settle();
    const base = memory();
    const kept = Array.from({ length: 8 }, () => Tensor.zeros([MiB / 4]));
    expect(memory().hostTensors - base.hostTensors).toBe(8);
    expect(memory().hostBytes - base.hostBytes).toBe(8 * MiB);
    for (const t of kept.splice(0, 4)) t.dispose();
    expect(memory().hostBytes - base.hostBytes).toBe(4 * MiB);
    kept.length = 0; // the other 4 are never disposed: only the finalizer can free them
    (function dropped() {
      for (let i = 0; i < 4; i++) Tensor.zeros([MiB / 4]);
    })();
    await settle();
    expect(memory()).toEqual(base);
  });
});
