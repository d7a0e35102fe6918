/**
 * Trainer option matmulPrecision: 'bf16' runs the Linear layers' products with
 * bf16 operands and fp32 sums where the CPU has AVX512_BF16 (native tests:
 * test_matmul_bf16.cpp check the kernels against a scalar oracle); elsewhere it
 * is E_DEVICE saying what runs. The error is checked everywhere (by lowering the
 * ISA as RECA_CPU_ISA=avx2 would); the bf16 steps only where they can run.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { getIsa, info, Model, setIsa, Tensor, Trainer } from '../lib';
import { readSafetensors, readSafetensorsMetadata } from '../lib/safetensors';
import { cliPath, expectRecaError, rng, root } from './helpers';

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

  describe('--matmul-precision of pretrain and train', () => {
    let dir: string;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-bf16-'));
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
    const reca = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
      spawnSync(process.execPath, [cliPath, ...args], { cwd: root, encoding: 'utf8', env, timeout: 120000 });
    const pretrainArgs = ['pretrain', '--preset', 'tiny', '--mode', 'mask', '--tokenizer-steps', '2', '--steps', '3', '--batch', '3', '--threads', '1'];

    test('bf16 at the avx2 ISA: E_DEVICE on one line, nothing written', () => {
      const out = path.join(dir, 'refused.safetensors');
      const r = reca([...pretrainArgs, '--matmul-precision', 'bf16', '--out', out], { ...process.env, RECA_CPU_ISA: 'avx2' });
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n').pop()).toMatch(/^reca: E_DEVICE: matmulPrecision 'bf16' cannot run here/);
      expect(fs.existsSync(out)).toBe(false);
      const t = reca(['train', '--preset', 'tiny', '--steps', '1', '--batch', '2', '--matmul-precision', 'bf16', '--out', out], { ...process.env, RECA_CPU_ISA: 'avx2' });
      expect(t.status).toBe(1);
      expect(t.stderr).toMatch(/E_DEVICE/);
      expect(fs.existsSync(out)).toBe(false);
      const bad = reca([...pretrainArgs, '--matmul-precision', 'fp16', '--out', out]);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/--matmul-precision must be one of fp32, bf16/);
    });

    (bf16 ? test : test.skip)('pretrain and train run their steps in bf16: the saved trainer says so, the weights track fp32 and are not its bits', () => {
      const weights = (file: string) => readSafetensors(file).tensors;
      const run = (precision: string) => {
        const state = path.join(dir, `state-${precision}.safetensors`);
        const out = path.join(dir, `base-${precision}.safetensors`);
        const r = reca([...pretrainArgs, '--matmul-precision', precision, '--save', state, '--out', out]);
        expect(r.status).toBe(0);
        expect(JSON.parse(readSafetensorsMetadata(state)['reca.trainer']).matmulPrecision).toBe(precision);
        return { state, out };
      };
      const a = run('fp32');
      const b = run('bf16');
      // Where training started: the same run stopped after its tokenizer stage (the generator
      // untouched), whose trainer ran at the precision given too.
      const start = path.join(dir, 'start.safetensors');
      expect(reca([...pretrainArgs, '--matmul-precision', 'bf16', '--save', start, '--stop-at', '2', '--out', path.join(dir, 'unused.safetensors')]).status).toBe(0);
      expect(JSON.parse(readSafetensorsMetadata(start)['reca.trainer'])).toMatchObject({ tokenizer: true, matmulPrecision: 'bf16' });
      // bf16 operands perturb each gradient by about 1% (RESULTS, "bf16 matmuls"), so the two
      // runs part by a small fraction of what their 3 steps moved the generator (measured 0.047;
      // a product computed wrong would part them by about as much as they moved).
      let apart = 0, moved = 0;
      const w0 = weights(start), wa = weights(a.state), wb = weights(b.state);
      for (const [name, t] of wa) {
        if (!name.startsWith('gen.')) continue;
        const x0 = w0.get(name)!.data, xa = t.data, xb = wb.get(name)!.data;
        for (let i = 0; i < xa.length; i++) {
          apart += (xa[i] - xb[i]) ** 2;
          moved += (xa[i] - x0[i]) ** 2;
        }
      }
      expect(moved).toBeGreaterThan(0);
      expect(apart).toBeGreaterThan(0);
      expect(Math.sqrt(apart / moved)).toBeLessThan(0.1);
      // A run saved at one precision resumes at the other (the schedule is the same).
      const post = path.join(dir, 'post.safetensors');
      const t = reca(['train', '--model', b.out, '--steps', '2', '--batch', '2', '--stop-at', '1', '--matmul-precision', 'bf16', '--out', post]);
      expect(t.status).toBe(0);
      expect(JSON.parse(readSafetensorsMetadata(post)['reca.trainer']).matmulPrecision).toBe('bf16');
      const t2 = reca(['train', '--resume', post, '--steps', '2', '--batch', '2', '--out', post]);
      expect(t2.status).toBe(0);
      expect(readSafetensorsMetadata(post)['reca.step']).toBe('2');
      expect(JSON.parse(readSafetensorsMetadata(post)['reca.trainer']).matmulPrecision).toBe('fp32');
    }, 120000);
  });
});
