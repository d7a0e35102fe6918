/**
 * Trainer option matmulPrecision: 'bf16' runs the Linear layers' products with
 * bf16 operands and fp32 sums where the CPU has AVX512_BF16 (native tests:
 * test_matmul_bf16.cpp check the kernels against a scalar oracle); elsewhere it
 * is E_DEVICE saying what runs. The error is checked everywhere (by lowering the
 * ISA as RECA_CPU_ISA=avx2 would); the bf16 steps only where they can run.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

import { getIsa, info, Model, setIsa, Tensor, Trainer } from '../lib';
import { expectRecaError, rng, root } from './helpers';

function imageTensor(B: number, S: number, seed: number): Tensor<'uint8'> {
  const r = rng(seed);
  return Tensor.from(Uint8Array.from({ length: B * S * S * 3 }, () => Math.floor((r() + 1) * 128) & 255), [B, S, S, 3]);
}

describe('matmulPrecision', () => {
  const isa0 = getIsa();
  afterEach(() => setIsa(isa0));

  test('bf16 below the avx512 ISA (or without AVX512_BF16) is E_DEVICE naming what runs', async () => {
    using m = await Model.create({ preset: 'tiny', mode: 'mask', seed: 1 });
    setIsa(info().cpu.detectedIsa === 'scalar' ? 'scalar' : 'avx2');
    expect(info().cpu.bf16Matmul).toBe(false);
    expect(info().cpu.bf16MatmulReason).toMatch(/fp32/);
    const err = expectRecaError(() => new Trainer(m, { matmulPrecision: 'bf16' }), 'E_DEVICE');
    expect(err.message).toMatch(info().cpu.avx512Bf16 ? /avx512/ : /AVX512_BF16/);
    expect(err.message).toMatch(/matmulPrecision 'fp32'/);
    // fp32 (the default) runs at every level; an unknown precision is a bad argument.
    using t = new Trainer(m, { matmulPrecision: 'fp32' });
    expect(t.options.matmulPrecision).toBe('fp32');
    expectRecaError(() => new Trainer(m, { matmulPrecision: 'fp16' as never }), 'E_INVALID_ARGUMENT');
  });

  test('RECA_CPU_ISA=avx2 in the environment: info says why, and a bf16 trainer is E_DEVICE', () => {
    const script = `
      const { info, Model, Trainer } = require(${JSON.stringify(path.join(root, 'dist'))});
      (async () => {
        const m = await Model.create({ preset: 'tiny', mode: 'mask' });
        let error = null;
        try { new Trainer(m, { matmulPrecision: 'bf16' }); } catch (e) { error = { code: e.code, message: e.message }; }
        console.log(JSON.stringify({ cpu: info().cpu, error }));
        m.dispose();
      })();`;
    const out = execFileSync(process.execPath, ['-e', script], {
      cwd: root, encoding: 'utf8', env: { ...process.env, RECA_CPU_ISA: 'avx2' }, timeout: 60000,
    });
    const r = JSON.parse(out.trim().split('\n').pop() as string) as {
      cpu: { isa: string; bf16Matmul: boolean; bf16MatmulReason: string | null };
      error: { code: string; message: string } | null;
    };
    expect(r.cpu.isa).not.toBe('avx512');
    expect(r.cpu.bf16Matmul).toBe(false);
    expect(r.cpu.bf16MatmulReason).toMatch(/fp32/);
    expect(r.error?.code).toBe('E_DEVICE');
    expect(r.error?.message).toMatch(/matmulPrecision 'fp32'/);
  });

  const bf16 = info().cpu.avx512Bf16;
  if (!bf16) console.log('skipping the bf16 training steps: this CPU has no AVX512_BF16');
  (bf16 ? test : test.skip)('bf16 steps track fp32 from the same weights and draws (within u_bf16/4 = 0.1%)', async () => {
    setIsa('avx512');
    expect(info().cpu.bf16Matmul).toBe(true);
    const losses = async (matmulPrecision: 'fp32' | 'bf16'): Promise<number[]> => {
      using m = await Model.create({ preset: 'tiny', mode: 'mask', seed: 2 });
      using t = new Trainer(m, { seed: 3, optimizer: { lr: 1e-3 }, matmulPrecision });
      expect(t.options.matmulPrecision).toBe(matmulPrecision);
      using img = imageTensor(4, 16, 4);
      const out: number[] = [];
      for (let s = 0; s < 3; s++) out.push((await t.step({ images: img })).loss);
      return out;
    };
    const a = await losses('fp32');
    const b = await losses('bf16');
    for (let s = 0; s < 3; s++) {
      expect(Math.abs(b[s] - a[s]) / a[s]).toBeLessThan(0.25 / 256);
    }
    // bf16 really ran: the first loss is not fp32's to the bit.
    expect(b[0]).not.toBe(a[0]);
  });
});
