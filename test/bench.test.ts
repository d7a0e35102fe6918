import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { debugStep, type Config } from '../lib';
import { main } from '../lib/cli';
import { stepFlops } from '../lib/bench/flops';
import { linePlotSvg } from '../lib/bench/plot';
import { chainCurves, curvePlots, parseCurve } from '../lib/bench/curves';
import { readSafetensors } from '../lib/safetensors';
import type { SuiteDocument } from '../lib/bench/suite';
import { loadTf, readStepDump, TfjsRecaMini, tfjsLossOfDump } from '../lib/bench/tfjs_step';
import { cliPath, root } from './helpers';

// SPEC §1, the tiny column.
const TINY: Config = {
  mode: 'mask', image_size: 16, gen_patch: 4, und_image_size: 8, und_patch: 2, und_width: 32, und_depth: 2,
  und_heads: 2, und_select_layer: -1, width: 64, depth: 2, heads: 4, mlp_ratio: 4, codebook_size: 64, code_dim: 8,
  max_text_len: 32, cond_norm: false,
};

describe('step FLOP count', () => {
  // Counted by hand from SPEC §3-§4 for one tiny image: N = 16 image tokens (patch vector 48),
  // N_u = 16 understanding tokens (patch vector 12), reca sequence 51 + 17 = 68 tokens.
  const und =
    2 * 16 * 12 * 32 + // patch_embed
    2 * (2 * 16 * 32 * 96 + 2 * 16 * 32 * 32 + 2 * 16 * 32 * 128 * 2 + 2 * 2 * 16 * 16 * 32); // 2 blocks: qkv, proj, fc1+fc2, QK/PV
  const conn = 2 * 16 * 32 * 64 + 2 * 16 * 64 * 64;
  const vq = 2 * 16 * 48 * 8 + 2 * 16 * 64 * 8; // encoder + distances to 64 codes
  const genBlock = (L: number) => 2 * L * 64 * 192 + 2 * L * 64 * 64 + 2 * 2 * L * 64 * 256 + 2 * 2 * L * L * 64;
  const head = 2 * 16 * 64 * 64;

  it('matches a hand count for the tiny mask reca step (generator trainable)', () => {
    expect(und).toBe(864256);
    expect(genBlock(68)).toBe(7868416);
    const genForward = 2 * genBlock(68) + head;
    const f = stepFlops(TINY, 'reca', 1);
    expect(f.trainableForward).toBe(genForward);
    expect(f.backward).toBe(2 * genForward);
    expect(f.frozenForward).toBe(und + conn + vq);
    expect(f.total).toBe(48693248);
    expect(stepFlops(TINY, 'reca', 3).total).toBe(3 * 48693248);
  });

  it('matches a hand count for t2i (no understanding pass, 33 + 17 tokens)', () => {
    const genForward = 2 * genBlock(50) + head;
    expect(stepFlops(TINY, 't2i', 1).total).toBe(3 * genForward + vq);
    expect(stepFlops(TINY, 't2i', 1).total).toBe(33753088);
  });

  it('moves frozen work into the backward when more groups train', () => {
    const f = stepFlops(TINY, 'reca', 1, ['und', 'conn', 'gen']);
    expect(f.frozenForward).toBe(vq);
    expect(f.total).toBe(3 * (und + conn + 2 * genBlock(68) + head) + vq);
  });
});

describe('SVG plot writer', () => {
  const svg = linePlotSvg({
    title: 'images/s <vs> batch',
    xLabel: 'batch size',
    yLabel: 'images/s',
    logX: true,
    series: [
      { name: 'ours & co', points: [[1, 10], [2, 18], [4, 30], [8, 41]] },
      { name: 'PyTorch', points: [[1, 3], [2, 5], [4, Number.NaN], [8, 9], [0, 4]] },
    ],
  });

  it('is one well-formed svg element with every tag closed', () => {
    expect(svg.trimStart().startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    const stack: string[] = [];
    for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
      const [, closing, name, selfClosing] = m;
      if (selfClosing) continue;
      if (closing) expect(stack.pop()).toBe(name);
      else stack.push(name);
    }
    expect(stack).toEqual([]);
    expect(svg).not.toMatch(/<vs>|ours & co/); // text is escaped
    expect(svg).toContain('ours &amp; co');
  });

  it('draws one marker per finite point (NaN and x = 0 on a log axis left out), a legend and axis labels', () => {
    expect(svg.match(/<circle class="point"/g)).toHaveLength(4 + 3);
    expect(svg.match(/<g class="legend">/g)).toHaveLength(2);
    expect(svg).toContain('batch size (log scale)');
    expect(svg).toContain('>images/s</text>');
  });

  it('spaces 1, 2, 4, 8 evenly on the log x axis and puts larger y higher', () => {
    const first = svg.slice(0, svg.indexOf('data-name="PyTorch"'));
    const pts = [...first.matchAll(/<circle class="point" cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(pts).toHaveLength(4);
    const dx = pts.slice(1).map((p, i) => p[0] - pts[i][0]);
    for (const d of dx) expect(d).toBeCloseTo(dx[0], 0);
    for (let i = 1; i < pts.length; i++) expect(pts[i][1]).toBeLessThan(pts[i - 1][1]);
  });
});

let tfjsMissing: string | null = null;
try {
  require.resolve('@tensorflow/tfjs');
} catch (e) {
  tfjsMissing = (e as Error).message;
  console.warn(`SKIPPING the TF.js loss oracle: @tensorflow/tfjs cannot be loaded (${tfjsMissing})`);
}
const itTf = tfjsMissing ? it.skip : it;

describe('pretraining curves across runs', () => {
  const line = (step: number, overall: number, loss: number) =>
    JSON.stringify({ step, images: step * 24, loss, overall, categories: {}, evalSeconds: 1 });
  const run1 = parseCurve(`${line(750, 0.075, 0.64)}\n\n${line(1500, 0.165, 0.49)}\n`);
  const run2 = parseCurve(`${line(1000, 0.229, 0.48)}\n`);

  it('puts each run after the images seen before it', () => {
    const pts = chainCurves([{ points: run1, imagesBefore: 24000 }, { points: run2, imagesBefore: 60000 }]);
    expect(pts).toEqual([
      { images: 24000 + 18000, overall: 0.075, loss: 0.64 },
      { images: 24000 + 36000, overall: 0.165, loss: 0.49 },
      { images: 60000 + 24000, overall: 0.229, loss: 0.48 },
    ]);
  });

  it('refuses runs that overlap and lines that are not curve points', () => {
    expect(() => chainCurves([{ points: run1, imagesBefore: 24000 }, { points: run2, imagesBefore: 50000 }])).toThrow(/overlaps/);
    expect(() => chainCurves([{ points: run1, imagesBefore: -1 }])).toThrow(/imagesBefore/);
    expect(() => parseCurve('{"step":1}')).toThrow(/curve line 1/);
    expect(() => parseCurve('not json')).toThrow();
  });

  it('plots one series per base at the chained coordinates', () => {
    const { shapesEval, loss } = curvePlots({ 'small-ar': chainCurves([{ points: run1, imagesBefore: 24000 }]) });
    for (const svg of [shapesEval, loss]) {
      expect(svg.match(/<g class="series" data-name="small-ar">/g)).toHaveLength(1);
      expect(svg.match(/class="point"/g)).toHaveLength(2);
    }
  });
});

describe('TF.js peer against our step dump', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-bench-test-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const [mode, task] of [['mask', 'reca'], ['mask', 't2i'], ['ar', 'reca']] as const) {
    itTf(`computes our loss on the same weights and batch (tiny ${mode}/${task}, relative difference <= 1e-4)`, async () => {
      const out = path.join(dir, `${mode}-${task}`);
      fs.mkdirSync(out);
      await debugStep({ preset: 'tiny', mode, task, seed: 0, out });
      const t = await loadTf('cpu');
      const check = tfjsLossOfDump(t, readStepDump(out));
      const reference = JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8')).loss as number;
      expect(Number.isFinite(check.tfjs)).toBe(true);
      expect(Math.abs(check.tfjs - reference) / reference).toBeLessThanOrEqual(1e-4);
    });
  }

  itTf('computes our generator gradients (tiny mask/reca, relative L2 <= 1e-4 per tensor)', async () => {
    const out = path.join(dir, 'grads');
    fs.mkdirSync(out);
    await debugStep({ preset: 'tiny', mode: 'mask', task: 'reca', seed: 0, batch: 2, out });
    const t = await loadTf('cpu');
    const dump = readStepDump(out);
    const ours = readSafetensors(path.join(out, 'grads.safetensors')).tensors;
    const model = new TfjsRecaMini(t.tf, dump.config, dump.task, dump.params, (n) => n.startsWith('gen.'));
    try {
      const { value, grads } = t.tf.variableGrads(() => model.loss(dump.batch), model.trainable);
      value.dispose();
      let compared = 0;
      for (const [name, g] of Object.entries(grads)) {
        const a = g.dataSync() as Float32Array;
        const b = ours.get(name)!.data as Float32Array;
        let diff = 0;
        let norm = 0;
        for (let i = 0; i < a.length; i++) {
          diff += (a[i] - b[i]) ** 2;
          norm += b[i] ** 2;
        }
        expect(Math.sqrt(diff / Math.max(norm, 1e-30))).toBeLessThanOrEqual(1e-4);
        g.dispose();
        compared++;
      }
      expect(compared).toBeGreaterThan(30);
    } finally {
      model.dispose();
    }
  });
});

describe('TF.js peer: one AdamW update', () => {
  itTf('moves the generator weights as our update does (clipping and AdamW, relative L2 of the change <= 1e-3)', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-bench-test-'));
    try {
      await debugStep({ preset: 'tiny', mode: 'mask', task: 'reca', seed: 0, batch: 2, out, freeze: ['und', 'conn', 'vq'] });
      const t = await loadTf('cpu');
      const dump = readStepDump(out);
      const r = JSON.parse(fs.readFileSync(path.join(out, 'result.json'), 'utf8'));
      const after = readSafetensors(path.join(out, 'params_after.safetensors')).tensors;
      const model = new TfjsRecaMini(t.tf, dump.config, dump.task, dump.params, (n) => n.startsWith('gen.'));
      try {
        const o = r.optimizer;
        model.step(dump.batch, {
          lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weight_decay, maxGradNorm: o.max_grad_norm,
        });
        for (const v of model.trainable) {
          const before = dump.params.get(v.name)!.data as Float32Array;
          const ours = after.get(v.name)!.data as Float32Array;
          const tfjs = v.dataSync() as Float32Array;
          let diff = 0;
          let change = 0;
          for (let i = 0; i < before.length; i++) {
            diff += (tfjs[i] - ours[i]) ** 2;
            change += (ours[i] - before[i]) ** 2;
          }
          expect({ name: v.name, rel: Math.sqrt(diff / Math.max(change, 1e-30)) <= 1e-3 }).toEqual({ name: v.name, rel: true });
        }
      } finally {
        model.dispose();
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});

/** Rebuilds dist/ when a lib/ source (any folder) is newer than its output: the suite runs `node dist/cli.js`. */
function ensureDistFresh(): void {
  const stale = (dir: string): boolean =>
    fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return stale(full);
      if (!e.name.endsWith('.ts')) return false;
      const out = path.join(root, 'dist', path.relative(path.join(root, 'lib'), full)).replace(/\.ts$/, '.js');
      return !fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(full).mtimeMs;
    });
  if (stale(path.join(root, 'lib'))) {
    try {
      execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')]);
    } catch {
      // tsc still emits when some other file has a type error; the run below shows whether dist works
    }
  }
}

describe('reca bench --suite all --quick', () => {
  it('refuses options of the other suites and bad thread counts with a usage error (exit 2)', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const args of [['--preset', 'tiny'], ['--filter', 'gelu'], ['--threads', '0'], ['--threads', 'x']]) {
        expect([args.join(' '), await main(['bench', '--suite', 'all', ...args])]).toEqual([args.join(' '), 2]);
      }
      expect(await main(['bench', '--suite', 'kernels', '--quick'])).toBe(2);
    } finally {
      err.mockRestore();
    }
  });

  it('runs and writes the JSON with every section and the two plots', async () => {
    ensureDistFresh();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-suite-'));
    try {
      const json = path.join(dir, 'suite.json');
      const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [cliPath, 'bench', '--suite', 'all', '--quick', '--out', dir, '--json', json],
          { cwd: root, encoding: 'utf8', timeout: 120e3 },
          (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        );
      });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      for (const section of ['memory copy', 'kernels', 'training steps', 'sampling', 'memory (', 'cost growth', 'TF.js peer']) {
        expect(run.stdout).toContain(`## ${section}`);
      }
      const doc = JSON.parse(fs.readFileSync(json, 'utf8')) as SuiteDocument;
      expect(doc.quick).toBe(true);
      expect(doc.machine.cpuModel).toEqual(expect.any(String));
      expect(doc.machine.node).toBe(process.version);
      expect(doc.memcopy.length).toBeGreaterThanOrEqual(1);
      for (const m of doc.memcopy) expect(m.gbps).toBeGreaterThan(0);
      expect(doc.kernels.length).toBeGreaterThan(10);
      for (const k of doc.kernels) {
        expect(['compute', 'memory']).toContain(k.bound);
        expect(k.fraction_of_peak).toBeGreaterThan(0);
        if (k.ratio !== undefined) {
          expect(k.ratioSpread![0]).toBeLessThanOrEqual(k.ratio);
          expect(k.ratioSpread![1]).toBeGreaterThanOrEqual(k.ratio);
        }
      }
      // The AVX2 path is measured too wherever the native path is wider.
      if (doc.machine.isa === 'avx512') {
        expect(run.stdout).toContain('## kernels on the AVX2 path');
        // bf16 records (matmul_bf16.*) need the avx512 level: the AVX2 pass has the others.
        expect(doc.kernels_avx2!.map((k) => k.name)).toEqual(doc.kernels.filter((k) => !k.name.startsWith('matmul_bf16.')).map((k) => k.name));
        for (const k of doc.kernels_avx2!) expect(k.isa).toBe('avx2');
      } else {
        expect(doc.kernels_avx2).toBeNull();
      }
      // every mode × both tasks, each step's images/s consistent with its median time
      expect(doc.steps.map((s) => `${s.mode}/${s.task}`).sort()).toEqual(
        ['ar/reca', 'ar/t2i', 'flow/reca', 'flow/t2i', 'mask/reca', 'mask/t2i'],
      );
      for (const s of doc.steps) {
        expect(s.images_per_s * s.step_seconds).toBeCloseTo(s.batch, 6);
        expect(s.step_flops).toBe(stepFlops(tinyConfig(s.mode), s.task, s.batch).total);
      }
      expect(doc.inference.map((r) => `${r.mode}/${r.cfg}`).sort()).toEqual(['ar/1', 'ar/3', 'flow/1', 'flow/3', 'mask/1', 'mask/3']);
      for (const r of doc.inference) {
        expect(r.images_per_s * r.seconds).toBeCloseTo(r.batch, 6);
        expect(r.sampler_steps).toBe(r.mode === 'ar' ? 16 : 8);
        if (!doc.peers.pytorch) continue;
        // beside PyTorch's samplers: one round in --quick, the seed-0 samples compared
        expect(r.ratio).toBeCloseTo(r.pytorch!.seconds / r.seconds, 12);
        expect(r.agreement).toEqual(r.mode === 'flow' ? { latent_max_abs_diff: expect.any(Number) } : { codes_equal: expect.any(Number) });
      }
      expect(doc.memory.map((m) => m.preset)).toEqual(['tiny']);
      expect(doc.memory[0].peak_rss_bytes).toBeGreaterThan(doc.memory[0].theoretical_bytes);
      expect(new Set(doc.growth.map((g) => g.axis))).toEqual(new Set(['batch', 'image_size', 'width', 'threads']));
      if (doc.peers.pytorch) {
        expect(doc.growth.every((g) => g.pytorch !== undefined)).toBe(true);
        // Each step point was paired with PyTorch's: one round in --quick, so the ratio
        // is exactly PyTorch's step time over ours, and the rounds are the results kept.
        for (const p of [...doc.steps, ...doc.growth.map((g) => ({ ...g.ours, pytorch: g.pytorch, paired: g.paired }))]) {
          expect(p.paired?.rounds).toBe(1);
          expect(p.paired!.ours_step_seconds).toEqual([p.step_seconds]);
          expect(p.paired!.pytorch_step_seconds).toEqual([p.pytorch!.step_seconds]);
          expect(p.paired!.ratio).toBeCloseTo(p.pytorch!.step_seconds / p.step_seconds, 12);
          expect(p.pytorch!.threads).toBe(p.threads);
        }
      } else {
        expect(doc.peers.skipped.some((s) => s.startsWith('PyTorch'))).toBe(true);
      }
      if (!tfjsMissing) {
        expect(doc.tfjs.length).toBeGreaterThanOrEqual(1);
        expect(doc.tfjs[0].loss_check.relativeDifference).toBeLessThanOrEqual(1e-4);
      }
      expect(doc.plots.map((p) => path.basename(p)).sort()).toEqual(['growth-batch.svg', 'growth-width.svg']);
      const batchPoints = doc.growth.filter((g) => g.axis === 'batch');
      const series = doc.peers.pytorch ? 2 : 1;
      const svg = fs.readFileSync(path.join(dir, 'growth-batch.svg'), 'utf8');
      expect(svg.match(/<circle class="point"/g)).toHaveLength(batchPoints.length * series);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 150e3);
});

describe('reca bench --suite sampling', () => {
  it('refuses options of other suites (exit 2)', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const args of [['--task', 'reca'], ['--steps', '3'], ['--quick'], ['--cfg', 'x'], ['--rounds', '0']]) {
        expect([args.join(' '), await main(['bench', '--suite', 'sampling', ...args])]).toEqual([args.join(' '), 2]);
      }
      expect(await main(['bench', '--suite', 'step', '--cfg', '3'])).toBe(2);
    } finally {
      err.mockRestore();
    }
  });

  it('times one mode beside PyTorch and finds the same samples', async () => {
    ensureDistFresh();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-sampling-'));
    try {
      const json = path.join(dir, 'sampling.json');
      const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [cliPath, 'bench', '--suite', 'sampling', '--preset', 'tiny', '--mode', 'mask', '--batch', '2', '--rounds', '1',
            '--sample-steps', '4', '--threads', '1', '--json', json],
          { cwd: root, encoding: 'utf8', timeout: 120e3 },
          (e, stdout, stderr) => resolve({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr }),
        );
      });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const doc = JSON.parse(fs.readFileSync(json, 'utf8')) as {
        skipped: string | null;
        results: Array<import('../lib/bench/sampling').SampleBenchResult>;
      };
      expect(doc.results.map((r) => [r.mode, r.cfg, r.batch, r.threads, r.sampler_steps, r.weights])).toEqual([
        ['mask', 1, 2, 1, 4, 'models/tiny-mask.safetensors'], ['mask', 3, 2, 1, 4, 'models/tiny-mask.safetensors'],
      ]);
      for (const r of doc.results) {
        expect(r.images_per_s * r.seconds).toBeCloseTo(2, 6);
        if (doc.skipped) continue;
        expect(r.pytorch!.seconds_all).toHaveLength(1);
        expect(r.ratio).toBeCloseTo(r.pytorch!.seconds / r.seconds, 12);
        // the shipped tiny model, 2 prompts, 4 steps: every code the same as PyTorch's
        expect(r.agreement).toEqual({ codes_equal: 1 });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 150e3);
});

function tinyConfig(mode: Config['mode']): Config {
  return { ...TINY, mode };
}
