/**
 * The model jobs of the CLI (demo, pretrain, train, eval, sample, reconstruct,
 * embed) run end to end on a tiny model, and their user errors exit non-zero
 * with one line and no stack trace.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import sharp from 'sharp';

import { Model } from '../lib';
import { loadImageFolder, readPng } from '../lib/images';
import { readSafetensors, readSafetensorsMetadata } from '../lib/safetensors';
import { CATEGORIES } from '../lib/shapes/world';
import { DEMO_SAMPLES, RECON_PER_CATEGORY } from '../lib/cli/demo';
import { EVAL_STEPS, evaluate, pretrain } from '../lib/workflows';
import { cliPath, root } from './helpers';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function reca(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, ...args], { cwd: root, encoding: 'utf8', timeout: 120000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A user error: the exit code, one line on stderr, no stack trace. */
function expectUserError(r: Run, code: number, pattern: RegExp): void {
  expect(r.code).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^reca: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

let dir: string;
let tinyModel: string;
let folder: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reca-jobs-'));
  tinyModel = path.join(dir, 'tiny.safetensors');
  const model = await Model.create({ preset: 'tiny', mode: 'mask', seed: 3, config: { max_text_len: 48 } });
  await model.save(tinyModel);
  model.dispose();
  // A small folder: three images, one corrupt file.
  folder = path.join(dir, 'images');
  fs.mkdirSync(folder);
  const colors = [[200, 30, 30], [30, 200, 30], [30, 30, 200]];
  for (let i = 0; i < 3; i++) {
    const [r, g, b] = colors[i];
    await sharp({ create: { width: 24 + 8 * i, height: 20, channels: 3, background: { r, g, b } } }).png().toFile(path.join(folder, `img${i}.png`));
  }
  fs.writeFileSync(path.join(folder, 'broken.png'), Buffer.from('not a png at all'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('help', () => {
  test.each(['demo', 'pretrain', 'train', 'eval', 'sample', 'reconstruct', 'embed'])('reca %s --help', async (command) => {
    const r = await reca(command, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: reca ${command}`);
    expect(r.stderr).toBe('');
  });

  test('the main help lists every command', async () => {
    const r = await reca('--help');
    for (const c of ['info', 'demo', 'pretrain', 'train', 'eval', 'sample', 'reconstruct', 'embed', 'debug-step', 'bench']) {
      expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    }
  });
});

describe('user errors', () => {
  test('an unknown flag exits 2', async () => {
    expectUserError(await reca('demo', '--bogus'), 2, /unknown option --bogus/);
  });

  test('a bad value exits 2', async () => {
    expectUserError(await reca('demo', '--preset', 'huge'), 2, /--preset must be one of tiny, small/);
    expectUserError(await reca('eval', '--samples', '0'), 2, /--samples needs a positive integer/);
    expectUserError(await reca('train', '--out', 'x', '--steps', 'many'), 2, /--steps needs an integer/);
  });

  test('a missing required option exits 2', async () => {
    expectUserError(await reca('pretrain'), 2, /pretrain needs --out FILE/);
    expectUserError(await reca('sample', '--out', 'x.png'), 2, /sample needs at least one --prompt/);
    expectUserError(await reca('embed', '--out', 'x.safetensors'), 2, /embed needs --images/);
  });

  test('a missing image folder exits 1 with E_IO', async () => {
    const r = await reca('train', '--model', tinyModel, '--data', path.join(dir, 'nope'), '--out', path.join(dir, 'x.safetensors'));
    expectUserError(r, 1, /E_IO: .*nope.* does not exist/);
  });

  test('a missing or corrupt checkpoint exits 1', async () => {
    expectUserError(await reca('eval', '--model', path.join(dir, 'missing.safetensors')), 1, /E_IO: checkpoint .* does not exist/);
    const bad = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(bad, Buffer.alloc(100, 7));
    expectUserError(await reca('eval', '--model', bad), 1, /E_CHECKPOINT/);
  });

  test('a missing base model names the command that makes one', async () => {
    const r = await reca('demo', '--preset', 'tiny', '--mode', 'flow', '--base', path.join(dir, 'none.safetensors'));
    expectUserError(r, 1, /E_IO: checkpoint .*none\.safetensors does not exist/);
  });
});

describe('jobs on a tiny model', () => {
  test('embed writes the understanding embeddings of a folder, skipping the corrupt file', async () => {
    const out = path.join(dir, 'emb.safetensors');
    const r = await reca('embed', '--model', tinyModel, '--images', folder, '--out', out, '--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/skipped 1 unreadable file\(s\):\n\s+broken\.png: /);
    const st = readSafetensors(out);
    const emb = st.tensors.get('embeddings')!;
    const model = await Model.load(tinyModel);
    try {
      const { width } = model.config;
      expect(emb.shape).toEqual([3, 16, width]);
      expect(JSON.parse(st.metadata.files)).toEqual(['img0.png', 'img1.png', 'img2.png']);
      // The same images through the API give the same numbers.
      const loaded = await loadImageFolder(folder, { imageSize: model.config.image_size });
      const direct = await model.embed({ data: loaded.images, shape: loaded.shape });
      expect(Array.from(emb.data)).toEqual(Array.from(direct.toArray()));
    } finally {
      model.dispose();
    }
  });

  test('sample and reconstruct write PNG grids of the right size', async () => {
    const grid = path.join(dir, 'sample.png');
    const r = await reca('sample', '--model', tinyModel, '--prompt', 'a red circle', '--prompt', 'two blue squares', '--n', '2', '--out', grid);
    expect(r.code).toBe(0);
    const png = await readPng(grid);
    expect(png.width).toBeGreaterThan(2 * 16 * 8);
    const recon = path.join(dir, 'recon.png');
    const r2 = await reca('reconstruct', '--model', tinyModel, '--images', 'shapes', '--limit', '4', '--out', recon);
    expect(r2.code).toBe(0);
    expect(r2.stdout).toContain('4 images and their reconstructions');
    expect(fs.existsSync(recon)).toBe(true);
  });

  test('eval --baseline pairs two models: its scores are the separate evals, its change their difference', async () => {
    // Two shipped tiny bases of different modes: they score differently on the same prompts.
    const mask = path.join(root, 'models', 'tiny-mask.safetensors');
    const ar = path.join(root, 'models', 'tiny-ar.safetensors');
    const alone = await Promise.all([mask, ar].map((m) => reca('eval', '--model', m, '--samples', '1', '--threads', '1', '--json')));
    for (const r of alone) expect(r.code).toBe(0);
    const [maskAlone, arAlone] = alone.map((r) => JSON.parse(r.stdout));
    const out = path.join(dir, 'paired-eval');
    const [pairedRun, selfRun] = await Promise.all([
      reca('eval', '--model', ar, '--baseline', mask, '--samples', '1', '--threads', '1', '--json', '--out', out),
      reca('eval', '--model', mask, '--baseline', mask, '--samples', '1', '--threads', '1', '--json'),
    ]);
    expect(pairedRun.code).toBe(0);
    const p = JSON.parse(pairedRun.stdout);
    expect(p.baseline.overall).toBe(maskAlone.overall);
    expect(p.baseline.categories).toEqual(maskAlone.categories);
    expect(p.overall).toBe(arAlone.overall);
    const change = p.paired.change.overall;
    expect(change.estimate).toBeCloseTo(arAlone.overall - maskAlone.overall, 12);
    expect(change.lo).toBeLessThanOrEqual(change.estimate);
    expect(change.hi).toBeGreaterThanOrEqual(change.estimate);
    for (const c of CATEGORIES) expect(p.paired.change.categories[c].estimate).toBeCloseTo(arAlone.categories[c] - maskAlone.categories[c], 12);
    // --out keeps the per-sample outcomes of both, and the markdown shows the paired table.
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'eval.json'), 'utf8'));
    expect(saved.baseline_samples).toHaveLength(saved.samples.length);
    expect(fs.readFileSync(path.join(out, 'eval.md'), 'utf8')).toMatch(/\| \*\*overall\*\* \|.*\|.*\|.*\|/);
    // A model against itself: the same samples, so every change is exactly zero.
    expect(selfRun.code).toBe(0);
    const self = JSON.parse(selfRun.stdout).paired.change.overall;
    expect([self.estimate, self.lo, self.hi]).toEqual([0, 0, 0]);
    expectUserError(await reca('eval', '--model', mask, '--baseline', path.join(dir, 'absent.safetensors')), 1, /E_IO: checkpoint .*absent.* does not exist/);
  }, 240000);

  test('ShapesEval draws nest: more samples per prompt keep the fewer samples\' images and add new ones', async () => {
    const model = await Model.load(path.join(root, 'models', 'tiny-ar.safetensors'));
    try {
      const S = model.config.image_size;
      const frame = S * S * 3;
      // chunk 5 does not divide the 18 prompts, so chunks of each sample index end unevenly.
      const two = await evaluate(model, { samplesPerPrompt: 2, perCategory: 3, chunk: 5 });
      const three = await evaluate(model, { samplesPerPrompt: 3, perCategory: 3, chunk: 5 });
      const prompts = two.items.length / 2;
      expect(three.items).toHaveLength(3 * prompts);
      const image = (ev: typeof two, item: number) => Buffer.from(ev.images.subarray(item * frame, (item + 1) * frame));
      let differ = 0;
      for (let p = 0; p < prompts; p++) {
        for (let s = 0; s < 2; s++) {
          expect(three.items[3 * p + s].prompt.text).toBe(two.items[2 * p + s].prompt.text);
          expect(image(three, 3 * p + s).equals(image(two, 2 * p + s))).toBe(true);
        }
        if (!image(three, 3 * p).equals(image(three, 3 * p + 1))) differ++;
      }
      // A prompt's second sample is a new draw, not a copy of its first.
      expect(differ).toBeGreaterThan(prompts / 2);
    } finally {
      model.dispose();
    }
  }, 120000);

  test('pretrain then train (resumable) produce loadable checkpoints', async () => {
    const base = path.join(dir, 'pre.safetensors');
    const r = await reca('pretrain', '--preset', 'tiny', '--tokenizer-steps', '3', '--steps', '3', '--batch', '4', '--out', base, '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ preset: 'tiny', mode: 'mask', steps: 3, tokenizerSteps: 3 });
    const model = await Model.load(base);
    expect(model.config.max_text_len).toBe(48);
    model.dispose();
    const run = path.join(dir, 'run.safetensors');
    const t1 = await reca('train', '--model', base, '--steps', '2', '--batch', '4', '--out', run, '--json');
    expect(t1.code).toBe(0);
    expect(JSON.parse(t1.stdout).steps).toBe(2);
    const t2 = await reca('train', '--resume', run, '--steps', '4', '--batch', '4', '--out', run, '--json');
    expect(t2.code).toBe(0);
    expect(JSON.parse(t2.stdout).steps).toBe(4);

    // A run stopped at step 3 and resumed equals the same run straight through, bit for bit:
    // parameters, Adam moments and the data stream (the resumed run skips the batches already done).
    const straight = path.join(dir, 'straight.safetensors');
    const split = path.join(dir, 'split.safetensors');
    const common = ['--steps', '6', '--batch', '3', '--seed', '5'];
    expect((await reca('train', '--model', base, ...common, '--out', straight)).code).toBe(0);
    const half = await reca('train', '--model', base, ...common, '--stop-at', '3', '--out', split, '--json');
    expect(half.code).toBe(0);
    expect(JSON.parse(half.stdout)).toMatchObject({ steps: 3, of: 6 });
    expect((await reca('train', '--resume', split, ...common, '--out', split)).code).toBe(0);
    const b = readSafetensors(split);
    expect([...b.tensors.keys()].some((k) => k.startsWith('optim.m.'))).toBe(true);
    expect(b.metadata['reca.step']).toBe('6');
    // Same options, same step, same tensors: the two files are the same bytes.
    expect(fs.readFileSync(split).equals(fs.readFileSync(straight))).toBe(true);
  }, 90000);

  test('pretrain --gen-patch sets the generator patch of a new model, and only of a new one', async () => {
    const out = path.join(dir, 'p8.safetensors');
    const r = await reca('pretrain', '--preset', 'tiny', '--mode', 'flow', '--gen-patch', '8', '--steps', '2', '--batch', '2', '--out', out);
    expect(r.code).toBe(0);
    using model = await Model.load(out);
    expect(model.config.gen_patch).toBe(8);
    // 16 px / 8 px: 4 tokens, each a 3·8² velocity.
    const bytes = fs.readFileSync(out);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    expect(header['gen.head_img.weight'].shape).toEqual([3 * 8 * 8, model.config.width]);
    expectUserError(await reca('pretrain', '--preset', 'tiny', '--gen-patch', '5', '--steps', '1', '--out', path.join(dir, 'p5.safetensors')), 1, /E_INVALID_ARGUMENT: .*image_size \(16\) must be a multiple of gen_patch \(5\)/);
    expectUserError(await reca('pretrain', '--init', out, '--gen-patch', '4', '--out', path.join(dir, 'p4.safetensors')), 2, /--gen-patch shapes a new model/);
  }, 60000);

  test('pretrain --cond-norm: a model from --init gains conn.norm and keeps every other parameter; c becomes 0.02·LN(c)', async () => {
    const base = path.join(root, 'models', 'tiny-mask.safetensors');
    using old = await Model.load(base);
    using normed = await pretrain({ init: base, condNorm: true, tokenizerSteps: 0, steps: 0 });
    expect(old.config.cond_norm).toBe(false);
    expect(normed.config.cond_norm).toBe(true);
    expect(normed.parameterNames()).toEqual([...old.parameterNames().slice(0, old.parameterNames().indexOf('conn.fc2.bias') + 1), 'conn.norm.weight', 'conn.norm.bias',
      ...old.parameterNames().slice(old.parameterNames().indexOf('conn.fc2.bias') + 1)]);
    for (const name of old.parameterNames()) {
      using a = await old.parameter(name);
      using b = await normed.parameter(name);
      expect(Buffer.from(b.toArray().buffer).equals(Buffer.from(a.toArray().buffer))).toBe(true);
    }
    const GAIN = 0.02;  // SPEC §8: conn.norm.weight starts at 0.02, its bias at 0
    using gain = await normed.parameter('conn.norm.weight');
    using bias = await normed.parameter('conn.norm.bias');
    expect([...gain.toArray()].every((v) => v === Math.fround(GAIN))).toBe(true);
    expect([...bias.toArray()].every((v) => v === 0)).toBe(true);
    // The oracle: the old connector's output through a LayerNorm (eps 1e-5) with gain 0.02, bias 0, in float64.
    const S = old.config.image_size;
    const img = { data: Uint8Array.from({ length: 2 * S * S * 3 }, (_, i) => (i * 37 + 11) % 256), shape: [2, S, S, 3] };
    using before = await old.embed(img);
    using after = await normed.embed(img);
    const W = old.config.width, x = before.toArray(), y = after.toArray();
    let worst = 0;
    for (let r = 0; r < x.length / W; r++) {
      const row = x.subarray(r * W, (r + 1) * W);
      const mean = row.reduce((a, v) => a + v, 0) / W;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / W;
      for (let j = 0; j < W; j++) worst = Math.max(worst, Math.abs(y[r * W + j] - GAIN * (row[j] - mean) / Math.sqrt(variance + 1e-5)));
    }
    expect(worst).toBeLessThan(1e-6);
    // From the CLI: a fresh model with it, a continued one with it, and a resumed run may not change it.
    const fresh = path.join(dir, 'cn-fresh.safetensors');
    expect((await reca('pretrain', '--preset', 'tiny', '--cond-norm', '--tokenizer-steps', '1', '--steps', '1', '--batch', '2', '--out', fresh)).code).toBe(0);
    expect(JSON.parse(readSafetensorsMetadata(fresh)['reca.config']).cond_norm).toBe(true);
    const continued = path.join(dir, 'cn-init.safetensors');
    const r = await reca('pretrain', '--init', base, '--cond-norm', '--steps', '1', '--batch', '2', '--json', '--out', continued);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).condNorm).toBe(true);
    const bytes = fs.readFileSync(continued);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    expect(header['conn.norm.weight'].shape).toEqual([old.config.width]);
    expect(header['conn.norm.bias'].shape).toEqual([old.config.width]);
    expectUserError(await reca('pretrain', '--resume', continued, '--cond-norm', '--out', path.join(dir, 'cn-x.safetensors')), 2, /leave out --cond-norm/);
  }, 60000);

  test('pretrain stopped in each stage and resumed equals a straight run; the curve file gets a line per eval point', async () => {
    const common = ['--preset', 'tiny', '--mode', 'mask', '--tokenizer-steps', '4', '--steps', '6', '--batch', '3', '--seed', '2'];
    const straight = path.join(dir, 'pre-straight.safetensors');
    const state = path.join(dir, 'pre-state.safetensors');
    const split = path.join(dir, 'pre-split.safetensors');
    const curve = path.join(dir, 'curve.jsonl');
    expect((await reca('pretrain', ...common, '--out', straight)).code).toBe(0);
    // Stop inside the tokenizer stage (step 3 of 4), then inside t2i+i2t (step 7 = its 3rd), then finish.
    const first = await reca('pretrain', ...common, '--save', state, '--stop-at', '3', '--out', split);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/stopped after step 3 of 10/);
    expect(fs.existsSync(split)).toBe(false);
    expect(readSafetensorsMetadata(state)['reca.step']).toBe('3');
    const resumeCommon = ['--tokenizer-steps', '4', '--steps', '6', '--batch', '3', '--seed', '2'];
    expect((await reca('pretrain', ...resumeCommon, '--resume', state, '--save', state, '--stop-at', '7', '--out', split)).code).toBe(0);
    expect(readSafetensorsMetadata(state)['reca.step']).toBe('3');  // the t2i+i2t trainer's own step
    // Another schedule than the saved run's would not continue it: refused, naming what differs, the state untouched.
    const before = fs.readFileSync(state);
    expectUserError(await reca('pretrain', ...resumeCommon.slice(0, 2), '--steps', '8', '--batch', '3', '--seed', '2', '--resume', state, '--save', state, '--out', split), 1, /totalSteps 6.*this run has totalSteps 8/);
    expectUserError(await reca('pretrain', ...resumeCommon, '--lr', '0.5', '--resume', state, '--save', state, '--out', split), 1, /lr 0\.001.*this run has lr 0\.5/);
    expectUserError(await reca('pretrain', ...resumeCommon, '--align-weight', '0.1', '--resume', state, '--save', state, '--out', split), 1, /alignWeight 0.*this run has alignWeight 0\.1/);
    expect(fs.readFileSync(state).equals(before)).toBe(true);
    const last = await reca('pretrain', ...resumeCommon, '--resume', state, '--save', state, '--curve', curve, '--eval-every', '2', '--out', split);
    expect(last.code).toBe(0);
    expect(fs.readFileSync(split).equals(fs.readFileSync(straight))).toBe(true);
    const points = fs.readFileSync(curve, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(points.map((p) => p.step)).toEqual([4, 6]);
    for (const p of points) {
      expect(p.images).toBe(p.step * 3);
      expect(p.overall).toBeGreaterThanOrEqual(0);
      expect(Object.keys(p.categories).sort()).toEqual([...CATEGORIES].sort());
      expect(p.sampler).toMatchObject({ steps: EVAL_STEPS, cfg: 3 });
    }
    // A file without a run, and options that contradict it, are refused before any work.
    expectUserError(await reca('pretrain', ...resumeCommon, '--resume', straight, '--out', split), 1, /holds no trainer state/);
    expectUserError(await reca('pretrain', ...resumeCommon, '--resume', state, '--preset', 'tiny', '--out', split), 2, /leave out --preset and --mode/);
  }, 120000);

  test('demo writes the report with before and after scores for every category', async () => {
    const out = path.join(dir, 'demo');
    const r = await reca('demo', '--base', tinyModel, '--steps', '2', '--out', out, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    // No --samples: a mask base gets its mode's default (the ar test below gets 8).
    expect(report).toMatchObject({ preset: 'tiny', mode: 'mask', recipe: 'reca', steps: 2, samples_per_prompt: DEMO_SAMPLES.mask });
    expect(report.seconds).toBeGreaterThan(0);
    for (const side of ['before', 'after']) {
      expect(Object.keys(report[side].categories).sort()).toEqual([...CATEGORIES].sort());
      const cats = Object.values(report[side].categories) as number[];
      // overall is the mean of the six category scores.
      expect(report[side].overall).toBeCloseTo(cats.reduce((a, b) => a + b, 0) / cats.length, 12);
      expect(report.samples[side]).toHaveLength(report.eval_images);
    }
    for (const f of ['report.md', 'before.png', 'after.png', 'reconstructions.png', 'model.safetensors']) {
      expect(fs.existsSync(path.join(out, f))).toBe(true);
    }
    // Each score with its 95% interval, and the paired change with its own.
    const iv = '\\[[-+]?[01]\\.\\d{3}, [-+]?[01]\\.\\d{3}\\]';
    const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toMatch(new RegExp(`^\\| \\*\\*overall\\*\\* \\| \\*\\*[01]\\.\\d{3}\\*\\* ${iv} \\| \\*\\*[01]\\.\\d{3}\\*\\* ${iv} \\| \\*\\*[-+][01]\\.\\d{3}\\*\\* ${iv} \\|$`, 'm'));
    expect(md).toMatch(/^Single-object prompts .*: change single [-+]/m);
    expect(md).toMatch(/for ±0\.02, use --samples \d+|no number of samples gets it to ±0\.02/);
    // The intervals in report.json: around their estimates, which are the report's own scores.
    for (const side of ['before', 'after']) {
      const ci = report.intervals[side];
      expect(ci.overall.estimate).toBeCloseTo(report[side].overall, 12);
      for (const c of CATEGORIES) {
        expect(ci.categories[c].estimate).toBeCloseTo(report[side].categories[c], 12);
        expect(ci.categories[c].lo).toBeLessThanOrEqual(ci.categories[c].estimate);
        expect(ci.categories[c].hi).toBeGreaterThanOrEqual(ci.categories[c].estimate);
      }
    }
    // Paired: the same prompts and seeds before and after.
    expect(report.samples.after.map((s: { prompt: string; seed: number }) => `${s.prompt}#${s.seed}`)).toEqual(
      report.samples.before.map((s: { prompt: string; seed: number }) => `${s.prompt}#${s.seed}`),
    );
    expect(report.intervals.change.overall.estimate).toBeCloseTo(report.after.overall - report.before.overall, 12);
    expect(report.intervals.resamples).toBe(2000);
    expect(report.sample_size.target_half_width).toBe(0.02);
    // ShapesEval's sampler, and the reconstruction scored on RECON_PER_CATEGORY renders of each category.
    expect(report.sampler.steps).toBe(EVAL_STEPS);
    expect(report.reconstruction_images).toBe(RECON_PER_CATEGORY * CATEGORIES.length);
    expect(Object.keys(report.reconstruction.after.categories).sort()).toEqual([...CATEGORIES].sort());
  }, 60000);

  test('demo samples each prompt as often as its base mode affords when --samples is left out', async () => {
    expect(DEMO_SAMPLES).toEqual({ ar: 8, mask: 2, flow: 2 });
    const out = path.join(dir, 'demo-ar');
    const r = await reca('demo', '--preset', 'tiny', '--mode', 'ar', '--steps', '2', '--out', out, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report).toMatchObject({ mode: 'ar', samples_per_prompt: DEMO_SAMPLES.ar });
    for (const side of ['before', 'after']) {
      const counts = new Map<string, number>();
      for (const x of report.samples[side] as { category: string; prompt: string }[]) {
        counts.set(`${x.category}|${x.prompt}`, (counts.get(`${x.category}|${x.prompt}`) ?? 0) + 1);
      }
      expect(new Set(counts.values())).toEqual(new Set([DEMO_SAMPLES.ar]));
      expect(report.samples[side]).toHaveLength(counts.size * DEMO_SAMPLES.ar);
    }
  }, 60000);

  test('demo --ablation: every arm from the same base and before; its reca arm is the demo itself', async () => {
    const common = ['--base', tinyModel, '--steps', '3', '--samples', '1', '--json'];
    const wide = path.join(dir, 'wide.safetensors');
    const made = await reca('pretrain', '--preset', 'tiny', '--und-image-size', '16', '--tokenizer-steps', '2', '--steps', '2', '--batch', '2', '--out', wide);
    expect(made.code).toBe(0);
    using wideModel = await Model.load(wide);
    expect(wideModel.config.und_image_size).toBe(wideModel.config.image_size);
    const [demo, ablation, weakerOnly] = await Promise.all([
      reca('demo', ...common, '--out', path.join(dir, 'abl-demo')),
      reca('demo', ...common, '--ablation', '--full-res-base', wide, '--out', path.join(dir, 'ablation')),
      reca('demo', ...common, '--ablation', '--full-res-base', wide, '--arms', 'weaker', '--out', path.join(dir, 'abl-weaker')),
    ]);
    expect(demo.code).toBe(0);
    expect(ablation.code).toBe(0);
    expect(weakerOnly.code).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'abl-demo', 'report.json'), 'utf8'));
    const abl = JSON.parse(fs.readFileSync(path.join(dir, 'ablation', 'ablation.json'), 'utf8'));
    expect(abl.arms.map((a: { arm: string }) => a.arm)).toEqual(['reca', 'tokenizer condition', 't2i', 'weaker bottleneck']);
    expect(abl.arms[3].base).toBe(wide);
    for (const a of abl.arms.slice(0, 3)) {
      expect(a.before.overall).toBe(report.before.overall);
      expect(a.change.overall.estimate).toBeCloseTo(a.after.overall - a.before.overall, 12);
    }
    // The same training and evaluation as the demo: the same bits.
    expect(abl.arms[0].after).toEqual(report.after);
    expect(abl.not_run).toEqual([]);
    expect(fs.readFileSync(path.join(dir, 'ablation', 'ablation.md'), 'utf8')).toMatch(/^\| tokenizer condition \| /m);
    // --arms runs a subset: the same arm alone gives the same bits, and the rest are listed as not run.
    const weaker = JSON.parse(fs.readFileSync(path.join(dir, 'abl-weaker', 'ablation.json'), 'utf8'));
    expect(weaker.arms.map((a: { arm: string }) => a.arm)).toEqual(['weaker bottleneck']);
    expect(weaker.arms[0].before).toEqual(abl.arms[3].before);
    expect(weaker.arms[0].after).toEqual(abl.arms[3].after);
    expect(weaker.not_run).toEqual(['reca: left out by --arms', 'tokenizer condition: left out by --arms', 't2i: left out by --arms']);
    expectUserError(await reca('demo', ...common, '--ablation', '--arms', 'reca,vae', '--out', path.join(dir, 'abl4')), 2, /unknown arm 'vae'/);
    expectUserError(await reca('demo', ...common, '--ablation', '--arms', 'weaker', '--out', path.join(dir, 'abl5')), 2, /needs --full-res-base/);
    expectUserError(await reca('demo', ...common, '--ablation', '--arms', 'reca', '--full-res-base', wide, '--out', path.join(dir, 'abl6')), 2, /add weaker to --arms/);
    expectUserError(await reca('demo', ...common, '--arms', 'reca', '--out', path.join(dir, 'abl7')), 2, /--arms goes with --ablation/);
    // The weaker-bottleneck arm takes only a base whose understanding input is the full image.
    expectUserError(await reca('demo', ...common, '--ablation', '--full-res-base', tinyModel, '--out', path.join(dir, 'abl2')), 1, /und_image_size = image_size/);
    expectUserError(await reca('demo', ...common, '--full-res-base', tinyModel, '--out', path.join(dir, 'abl3')), 2, /--full-res-base goes with --ablation/);
  }, 120000);
});
