import { getIsa, getThreads, info, ops, setIsa, setThreads, Tensor, type Isa } from '../lib';
import { expectRecaError, randomArray, rng } from './helpers';

// Oracle: a plain triple loop in double precision.
// C[M,N] = op(A)[M,K]·op(B)[K,N] + bias[N]; A stored [M,K] ([K,M] if transA), B [K,N] ([N,K] if transB).
function matmulRef(
  a: Float32Array, b: Float32Array, bias: Float32Array | undefined,
  M: number, N: number, K: number, transA: boolean, transB: boolean,
): { c: Float64Array; scale: Float64Array } {
  const c = new Float64Array(M * N);
  const scale = new Float64Array(M * N); // Σ|a·b| + |bias|: what float32 rounding error scales with
  const [sai, sak] = transA ? [1, M] : [K, 1]; // element (i,k) of op(A) is a[i*sai + k*sak]
  const [sbk, sbj] = transB ? [1, K] : [N, 1]; // element (k,j) of op(B) is b[k*sbk + j*sbj]
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      let abs = Math.abs(s);
      for (let k = 0; k < K; k++) {
        const p = a[i * sai + k * sak] * b[k * sbk + j * sbj];
        s += p;
        abs += Math.abs(p);
      }
      c[i * N + j] = s;
      scale[i * N + j] = abs;
    }
  }
  return { c, scale };
}

// Tolerance: |ours - ref| <= 2e-5·(Σ|a_ik·b_kj| + |bias_j|) + 1e-6. float32 accumulation
// over K terms stays far inside this for the K used here; a dropped or doubled term
// (error ≈ Σ/K) does not.
const MATMUL_RTOL = 2e-5;
const MATMUL_ATOL = 1e-6;

function expectMatmulClose(got: Float32Array, ref: { c: Float64Array; scale: Float64Array }, tag: string): void {
  expect(got.length).toBe(ref.c.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const excess = Math.abs(got[i] - ref.c[i]) - (MATMUL_RTOL * ref.scale[i] + MATMUL_ATOL);
    if (!(excess <= worst)) worst = Number.isNaN(excess) ? Infinity : excess;
  }
  if (worst > 0) throw new Error(`${tag}: matmul differs from the oracle by ${worst} beyond tolerance`);
}

// GELU, tanh form, in double precision.
function geluRef(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}
// Tolerance: |ours - ref| <= 1e-5·|ref| + 1e-6 (the native tests' bound).
function expectGeluClose(got: Float32Array, x: Float32Array, bias: Float32Array | undefined, cols: number): void {
  for (let i = 0; i < x.length; i++) {
    const ref = geluRef(x[i] + (bias ? bias[i % cols] : 0));
    if (!(Math.abs(got[i] - ref) <= 1e-5 * Math.abs(ref) + 1e-6)) {
      throw new Error(`gelu[${i}] = ${got[i]}, oracle ${ref}`);
    }
  }
}

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 3], [5, 1, 9], [7, 5, 3], [16, 16, 16], [17, 15, 33], [31, 65, 47], [40, 33, 70],
];

interface Problem {
  a: Tensor<'float32'>; b: Tensor<'float32'>; bias?: Tensor<'float32'>;
  ref?: { c: Float64Array; scale: Float64Array };
  transA: boolean; transB: boolean; tag: string;
}

function problems(seed: number, withOracle = true): Problem[] {
  const rand = rng(seed);
  const out: Problem[] = [];
  for (const [M, N, K] of SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const withBias = (M + N + K + Number(transA) + 2 * Number(transB)) % 2 === 0;
        const a = randomArray(M * K, rand), b = randomArray(K * N, rand);
        const bias = withBias ? randomArray(N, rand) : undefined;
        out.push({
          a: Tensor.from(a, transA ? [K, M] : [M, K]),
          b: Tensor.from(b, transB ? [N, K] : [K, N]),
          bias: bias && Tensor.from(bias, [N]),
          ref: withOracle ? matmulRef(a, b, bias, M, N, K, transA, transB) : undefined,
          transA, transB,
          tag: `M=${M} N=${N} K=${K} transA=${transA} transB=${transB} bias=${withBias}`,
        });
      }
    }
  }
  return out;
}

function run(p: Problem): Float32Array {
  using c = ops.matmul(p.a, p.b, { transA: p.transA, transB: p.transB, bias: p.bias });
  return c.toArray();
}

function isasUpTo(best: Isa): Isa[] {
  const all: Isa[] = ['scalar', 'avx2', 'avx512'];
  return all.slice(0, all.indexOf(best) + 1);
}

describe('ops', () => {
  const isa0 = getIsa();
  const threads0 = getThreads();
  afterEach(() => {
    setIsa(isa0);
    setThreads(threads0);
  });

  test('matmul matches the triple-loop oracle (transposes, bias, odd shapes)', () => {
    for (const p of problems(1)) {
      const c = ops.matmul(p.a, p.b, { transA: p.transA, transB: p.transB, bias: p.bias });
      const M = p.transA ? p.a.shape[1] : p.a.shape[0];
      const N = p.transB ? p.b.shape[0] : p.b.shape[1];
      expect(c.shape).toEqual([M, N]);
      expect(c.dtype).toBe('float32');
      expectMatmulClose(c.toArray(), p.ref!, p.tag);
      c.dispose();
    }
  });

  test('matmul with K = 0 gives the bias (or zeros); empty outputs are fine', () => {
    using a = Tensor.zeros([3, 0]);
    using b = Tensor.zeros([0, 2]);
    using bias = Tensor.from([1.5, -2], [2]);
    expect(Array.from(ops.matmul(a, b, { bias }).toArray())).toEqual([1.5, -2, 1.5, -2, 1.5, -2]);
    expect(Array.from(ops.matmul(a, b).toArray())).toEqual([0, 0, 0, 0, 0, 0]);
    using e = Tensor.zeros([0, 4]);
    using f = Tensor.zeros([4, 5]);
    expect(ops.matmul(e, f).shape).toEqual([0, 5]);
  });

  test('gelu matches the formula, with and without a bias', () => {
    const rand = rng(2);
    for (const [rows, cols] of [[1, 1], [3, 17], [8, 64], [5, 100]]) {
      const x = randomArray(rows * cols, () => 4 * rand());
      const bias = randomArray(cols, rand);
      using xt = Tensor.from(x, [rows, cols]);
      using bt = Tensor.from(bias, [cols]);
      using y = ops.gelu(xt);
      expect(y.shape).toEqual([rows, cols]);
      expectGeluClose(y.toArray(), x, undefined, cols);
      using yb = ops.gelu(xt, bt);
      expectGeluClose(yb.toArray(), x, bias, cols);
    }
    using x3 = Tensor.from(randomArray(24, rand), [2, 3, 4]);
    using y3 = ops.gelu(x3);
    expect(y3.shape).toEqual([2, 3, 4]);
  });

  test('shape and dtype mismatches are E_SHAPE / E_DTYPE naming both shapes', () => {
    using a = Tensor.zeros([2, 3]);
    using b = Tensor.zeros([4, 5]);
    const e = expectRecaError(() => ops.matmul(a, b), 'E_SHAPE');
    expect(e.message).toContain('[2, 3]');
    expect(e.message).toContain('[4, 5]');
    using b2 = Tensor.zeros([3, 5]);
    using badBias = Tensor.zeros([4]);
    expect(expectRecaError(() => ops.matmul(a, b2, { bias: badBias }), 'E_SHAPE').message).toMatch(/\[5\].*\[4\]/);
    expectRecaError(() => ops.matmul(a, b2, { transA: true }), 'E_SHAPE');
    using v = Tensor.zeros([3]);
    expectRecaError(() => ops.matmul(a, v), 'E_SHAPE');
    using ai = Tensor.zeros([2, 3], 'int32') as unknown as Tensor<'float32'>; // what an untyped caller could pass
    expect(expectRecaError(() => ops.matmul(ai, b2), 'E_DTYPE').message).toContain('int32');
    expectRecaError(() => ops.gelu(ai), 'E_DTYPE');
    expectRecaError(() => ops.gelu(a, badBias), 'E_SHAPE');
    expectRecaError(() => ops.matmul(a, {} as never), 'E_INVALID_ARGUMENT');
    expectRecaError(() => ops.matmul(a, b2, { transA: 'yes' as never }), 'E_INVALID_ARGUMENT');
    const gone = Tensor.zeros([3, 5]);
    gone.dispose();
    expectRecaError(() => ops.matmul(a, gone), 'E_DISPOSED');
  });

  test('1 and 2 threads give bitwise identical results', () => {
    const ps = problems(3, false);
    setThreads(1);
    expect(getThreads()).toBe(1);
    const one = ps.map(run);
    setThreads(2);
    const two = ps.map(run);
    const same = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
    ps.forEach((p, i) => expect([p.tag, same(one[i], two[i])]).toEqual([p.tag, true]));
    // a bigger one, so the pool really splits the work
    const rand = rng(4);
    using a = Tensor.from(randomArray(256 * 192, rand), [256, 192]);
    using b = Tensor.from(randomArray(192 * 160, rand), [192, 160]);
    setThreads(1);
    const c1 = ops.matmul(a, b).toArray();
    const g1 = ops.gelu(a).toArray();
    setThreads(2);
    expect(same(ops.matmul(a, b).toArray(), c1)).toBe(true);
    expect(same(ops.gelu(a).toArray(), g1)).toBe(true);
  });

  test('every ISA this CPU supports matches the oracle', () => {
    const levels = isasUpTo(info().cpu.detectedIsa);
    const ps = problems(5);
    const rand = rng(6);
    const x = randomArray(7 * 37, () => 3 * rand());
    using xt = Tensor.from(x, [7, 37]);
    for (const isa of levels) {
      setIsa(isa);
      expect(getIsa()).toBe(isa);
      for (const p of ps) expectMatmulClose(run(p), p.ref!, `${isa} ${p.tag}`);
      using y = ops.gelu(xt);
      expectGeluClose(y.toArray(), x, undefined, 37);
    }
  });

  test('setIsa / setThreads reject bad values', () => {
    expectRecaError(() => setIsa('avx9' as Isa), 'E_INVALID_ARGUMENT');
    expectRecaError(() => setThreads(1.5), 'E_INVALID_ARGUMENT');
    expectRecaError(() => setThreads(NaN), 'E_INVALID_ARGUMENT');
    expectRecaError(() => setThreads('2' as never), 'E_INVALID_ARGUMENT');
    expectRecaError(() => setThreads(0), 'E_INVALID_ARGUMENT');
    expectRecaError(() => setThreads(100000), 'E_INVALID_ARGUMENT');
    if (info().cpu.detectedIsa !== 'avx512') expectRecaError(() => setIsa('avx512'), 'E_INVALID_ARGUMENT');
  });
});
