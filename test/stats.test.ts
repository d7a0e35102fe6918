import { evalSet, type SampleScore } from '../lib/shapes/eval';
import { pairedIntervals, samplesForHalfWidth, scoreIntervals, SINGLE_OBJECT, withInterval } from '../lib/shapes/stats';
import { CATEGORIES, Rng, type Category } from '../lib/shapes/world';

/** `prompts` prompts of one category, `samples` seeds each; outcome(i, j) says whether sample j of prompt i is right. */
function scores(category: Category, prompts: number, samples: number, outcome: (i: number, j: number) => boolean): SampleScore[] {
  const out: SampleScore[] = [];
  for (let i = 0; i < prompts; i++) {
    for (let j = 0; j < samples; j++) out.push({ prompt: `p${i}`, category, seed: 1000 * i + j, correct: outcome(i, j), reason: '' });
  }
  return out;
}

/** Plug-in (divide by n) variance: what the bootstrap of a mean resamples. */
function plugInVar(xs: number[]): number {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return xs.reduce((a, x) => a + (x - m) ** 2, 0) / xs.length;
}

describe('bootstrap intervals over prompts', () => {
  test('all-equal outcomes give a zero-width interval at the estimate', () => {
    const all = CATEGORIES.flatMap((c) => scores(c, 10, 3, (i, j) => j === 0)); // every prompt 1 of 3 right
    const iv = scoreIntervals(all);
    for (const c of CATEGORIES) expect(iv.categories[c]).toEqual({ estimate: 1 / 3, lo: 1 / 3, hi: 1 / 3, se: 0 });
    expect(iv.overall.hi - iv.overall.lo).toBe(0);
    expect(iv.overall.estimate).toBeCloseTo(1 / 3, 15);
  });

  test('a Bernoulli category: the bootstrap SE approaches sqrt(p(1-p)/n), the interval p ± 1.96 SE', () => {
    const n = 400;
    const k = 120; // p = 0.3, one sample per prompt
    const iv = scoreIntervals(scores('two', n, 1, (i) => i < k), { resamples: 4000 }).categories.two;
    const p = k / n;
    const se = Math.sqrt((p * (1 - p)) / n);
    expect(iv.estimate).toBe(p);
    // Monte Carlo error of an SE from 4000 resamples is about 1.1%.
    expect(Math.abs(iv.se / se - 1)).toBeLessThan(0.05);
    expect(Math.abs(iv.lo - (p - 1.96 * se))).toBeLessThan(0.2 * se);
    expect(Math.abs(iv.hi - (p + 1.96 * se))).toBeLessThan(0.2 * se);
  });

  test('overall is stratified: its SE is sqrt(sum_c var_c / m_c) / C', () => {
    const rng = new Rng(7);
    const rates: Record<Category, number> = { single: 0.1, two: 0.5, counting: 0.3, colors: 0.8, position: 0.2, binding: 0.6 };
    const sizes: Record<Category, number> = { single: 24, two: 48, counting: 40, colors: 24, position: 48, binding: 48 };
    const all = CATEGORIES.flatMap((c) => scores(c, sizes[c], 2, () => rng.next() < rates[c]));
    const iv = scoreIntervals(all, { resamples: 4000 });
    let v = 0;
    for (const c of CATEGORIES) {
      const perPrompt = all.filter((s) => s.category === c && s.seed % 1000 === 0).map((s) => s.prompt);
      const means = perPrompt.map((p) => all.filter((s) => s.category === c && s.prompt === p).filter((s) => s.correct).length / 2);
      v += plugInVar(means) / sizes[c];
    }
    const se = Math.sqrt(v) / CATEGORIES.length;
    expect(Math.abs(iv.overall.se / se - 1)).toBeLessThan(0.05);
    // The point estimate is the mean of the category means.
    expect(iv.overall.estimate).toBeCloseTo(CATEGORIES.reduce((a, c) => a + iv.categories[c].estimate, 0) / 6, 14);
  });

  test('the paired change: zero-width when nothing changes, SE sqrt(var(d)/n) otherwise, far below the unpaired SE', () => {
    const rng = new Rng(11);
    const n = 300;
    const hard = Array.from({ length: n }, () => rng.next());
    const before = scores('counting', n, 1, (i) => hard[i] < 0.5);
    // After: the same outcomes, plus a fixed fifth of the wrong prompts turned right.
    const after = scores('counting', n, 1, (i) => hard[i] < 0.5 || (hard[i] < 0.6));
    const same = pairedIntervals(before, before).change.categories.counting;
    expect(same).toEqual({ estimate: 0, lo: 0, hi: 0, se: 0 });

    const r = pairedIntervals(before, after, { resamples: 4000 });
    const d = before.map((b, i) => Number(after[i].correct) - Number(b.correct));
    const se = Math.sqrt(plugInVar(d) / n);
    const ch = r.change.categories.counting;
    expect(ch.estimate).toBeCloseTo(d.reduce((a, b) => a + b, 0) / n, 14);
    expect(Math.abs(ch.se / se - 1)).toBeLessThan(0.05);
    const unpaired = Math.hypot(r.before.categories.counting.se, r.after.categories.counting.se);
    expect(ch.se).toBeLessThan(0.7 * unpaired);
  });

  test('deterministic, and one model gets the same intervals alone as in a pair', () => {
    const rng = new Rng(3);
    const items = evalSet({ samplesPerPrompt: 2 });
    const a = items.map((it): SampleScore => ({ prompt: it.prompt.text, category: it.prompt.category, seed: it.seed, correct: rng.next() < 0.4, reason: '' }));
    const b = a.map((s) => ({ ...s, correct: s.correct || rng.next() < 0.1 }));
    const r1 = pairedIntervals(a, b, { groups: { single_object: SINGLE_OBJECT } });
    const r2 = pairedIntervals(a, b, { groups: { single_object: SINGLE_OBJECT } });
    expect(r2).toEqual(r1);
    expect(scoreIntervals(a)).toEqual({ ...r1.before, groups: {} });
    expect(scoreIntervals(a, { seed: 1 })).not.toEqual(scoreIntervals(a));
    // A different seed moves the ends by Monte Carlo noise only.
    expect(Math.abs(scoreIntervals(a, { seed: 1 }).overall.lo - r1.before.overall.lo)).toBeLessThan(0.01);
    expect(r1.change.overall.lo).toBeLessThanOrEqual(r1.change.overall.estimate);
    expect(r1.change.overall.hi).toBeGreaterThanOrEqual(r1.change.overall.estimate);
    const so = r1.change.groups.single_object;
    expect(so.estimate).toBeCloseTo((r1.change.categories.single.estimate + r1.change.categories.colors.estimate) / 2, 14);
  });

  test('a paired comparison refuses lists of different items', () => {
    const a = scores('two', 5, 1, () => true);
    const b = a.map((s, i) => (i === 2 ? { ...s, seed: s.seed + 1 } : s));
    expect(() => pairedIntervals(a, b)).toThrow(/same prompts and seeds/);
    expect(() => pairedIntervals(a, a.slice(1))).toThrow(/same items/);
  });

  test('withInterval formats scores and signed changes', () => {
    expect(withInterval({ estimate: 0.4123, lo: 0.38, hi: 0.4451, se: 0 })).toBe('0.412 [0.380, 0.445]');
    expect(withInterval({ estimate: 0.031, lo: -0.012, hi: 0.074, se: 0 }, true)).toBe('+0.031 [-0.012, +0.074]');
    expect(withInterval({ estimate: -1e-17, lo: 0, hi: 0, se: 0 }, true)).toBe('+0.000 [+0.000, +0.000]');
    expect(withInterval({ estimate: NaN, lo: NaN, hi: NaN, se: NaN })).toBe('-');
  });
});

describe('samples per prompt for a target half-width', () => {
  test('pure sample noise: the closed form N = ceil(w / (m (t / 1.96)^2))', () => {
    // Every prompt: sample 0 improves, sample 1 does not, so d_i = 0.5 for all, w = var(1, 0) = 0.5 and no prompt-to-prompt part.
    const before = scores('position', 100, 2, () => false);
    const after = scores('position', 100, 2, (_, j) => j === 0);
    const adv = samplesForHalfWidth(before, after, 0.02);
    expect(adv.lowerBound).toBe(false);
    expect(adv.between).toBe(0);
    expect(adv.samples).toBe(Math.ceil(0.5 / (100 * (0.02 / 1.959963984540054) ** 2)));
    // Check the answer: with that N the half-width is within the target, with one fewer it is not.
    const hw = (N: number) => 1.959963984540054 * Math.sqrt(0.5 / N / 100);
    expect(hw(adv.samples!)).toBeLessThanOrEqual(0.02);
    expect(hw(adv.samples! - 1)).toBeGreaterThan(0.02);
  });

  test('prompt-to-prompt differences larger than the target: no number of samples suffices', () => {
    const before = scores('two', 100, 2, () => false);
    const after = scores('two', 100, 2, (i) => i % 2 === 0); // half the prompts always improve, half never
    const adv = samplesForHalfWidth(before, after, 0.02);
    expect(adv.samples).toBeNull();
    expect(adv.within).toBe(0);
    expect(adv.between).toBeCloseTo(0.25 / 100, 15);
    expect(adv.halfWidth).toBeCloseTo(1.959963984540054 * 0.05, 12);
  });

  test('one sample per prompt: all variance counts as sample noise, a lower bound', () => {
    const before = scores('binding', 200, 1, () => false);
    const after = scores('binding', 200, 1, (i) => i % 4 === 0);
    const adv = samplesForHalfWidth(before, after, 0.02);
    expect(adv.lowerBound).toBe(true);
    // N = s * (half-width now / target)^2.
    expect(adv.samples).toBe(Math.ceil((adv.halfWidth / 0.02) ** 2 - 1e-9));
    expect(adv.samples).toBeGreaterThan(1);
  });
});
